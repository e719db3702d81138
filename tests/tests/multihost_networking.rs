//! Service networking across two hosts (issue #8), on the multi-host rig
//! (`tests/src/rig.rs`): a server and two agents, each host a network
//! namespace with its own containerd.
//!
//! One cluster, checked in order (one rig keeps the file's wall time low):
//! 1. each node got its own pod CIDR and a host-gateway route to the other's;
//! 2. pods on different nodes reach each other by IP, and the server sees the
//!    client's pod IP (no NAT);
//! 3. a client pod on node 0 fetching `http://web.default.svc.cluster.local`
//!    gets answers from backends on both nodes; scaling the Deployment
//!    changes the answers;
//! 4. a deleted backend leaves the rotation while its container still serves
//!    (busybox httpd ignores SIGTERM, so it runs out its grace period);
//! 5. from outside the cluster, the NodePort answers on both nodes' addresses
//!    with backends of both nodes (`externalTrafficPolicy: Local`: only the
//!    node's own, seeing the client's address), and a LoadBalancer Service on
//!    its ingress IPs (the nodes');
//! 6. a NetworkPolicy blocks the client, a second one lets it in again;
//!    egress policies limit the client to web pods, then an ipBlock adds the
//!    API server;
//! 7. cluster DNS answers SRV for the named port; the `kubernetes` Service
//!    leads to the API server;
//! 8. the rig's faults: Services keep working while the API server is
//!    killed and restarted, or cut off (and the agents follow changes made
//!    after the link heals); a cut link isolates a host until restored; a killed
//!    host's pods stop answering, and answer again after it restarts (in new
//!    sandboxes; the dead ones' addresses are freed).
//!
//! Fetches use `timeout N wget`, not `wget -T N`: Debian's busybox 1.35
//! `wget -T` segfaults.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;
use skiff_tests::rig::{Rig, RigOptions, API_PORT};
use skiff_tests::wait_until;

const NET: u8 = 96;
const NODE_PORT: u16 = 30096;
/// The NodePort of `web-local` (`externalTrafficPolicy: Local`).
const LOCAL_NODE_PORT: u16 = 30097;

/// Backends answer their pod name on `/` and the caller's address on
/// `/cgi-bin/ip` (busybox httpd's CGI sets `REMOTE_ADDR`). Two replicas
/// spread one per node.
const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      # httpd as PID 1 ignores SIGTERM: a deleted pod keeps serving for the
      # whole grace period, the window in which it must be out of rotation.
      terminationGracePeriodSeconds: 60
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: DoNotSchedule
        labelSelector:
          matchLabels: {app: web}
      containers:
      - name: httpd
        image: skiff.local/busybox:1
        command:
        - sh
        - -c
        - |
          mkdir -p /www/cgi-bin
          hostname > /www/index.html
          printf '#!/bin/sh\necho Content-Type: text/plain\necho\necho $REMOTE_ADDR\n' > /www/cgi-bin/ip
          chmod +x /www/cgi-bin/ip
          exec httpd -f -p 8080 -h /www
        ports:
        - name: http
          containerPort: 8080
        readinessProbe:
          httpGet: {path: /, port: http}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - name: http
    port: 80
    targetPort: http
    nodePort: 30096
---
apiVersion: v1
kind: Service
metadata:
  name: web-local
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {app: web}
  ports:
  - name: http
    port: 80
    targetPort: http
    nodePort: 30097
---
apiVersion: v1
kind: Service
metadata:
  name: web-lb
spec:
  type: LoadBalancer
  selector: {app: web}
  ports:
  - name: http
    port: 8000
    targetPort: http
---
apiVersion: v1
kind: Service
metadata:
  name: web-sticky
spec:
  sessionAffinity: ClientIP
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
---
apiVersion: v1
kind: Service
metadata:
  name: web-headless
spec:
  clusterIP: None
  selector: {app: web}
  ports:
  - {name: http, port: 8080}
"#;

const CLIENT: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: client
  labels: {role: client}
spec:
  nodeName: skmh96-h0
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: skiff.local/busybox:1
    command: ["sleep", "3600"]
"#;

const DENY_WEB: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-deny-all
spec:
  podSelector:
    matchLabels: {app: web}
  policyTypes: [Ingress]
"#;

const ALLOW_CLIENT: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-allow-client
spec:
  podSelector:
    matchLabels: {app: web}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector:
        matchLabels: {role: client}
    ports:
    - {protocol: TCP, port: 8080}
"#;

/// The client may only talk to web pods (on any node)...
const CLIENT_EGRESS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: client-egress-web
spec:
  podSelector:
    matchLabels: {role: client}
  policyTypes: [Egress]
  egress:
  - to:
    - podSelector:
        matchLabels: {app: web}
    ports:
    - {protocol: TCP, port: http}
"#;

/// ...and, with this one too, to the API server (not a pod: an ipBlock).
fn client_egress_api(server_ip: &str) -> String {
    format!(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: client-egress-api
spec:
  podSelector:
    matchLabels: {{role: client}}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock: {{cidr: {server_ip}/32}}
    ports:
    - {{protocol: TCP, port: {API_PORT}}}
"#
    )
}

/// How many requests one sampling of the Service makes. With 4 backends
/// chosen at random, missing one in 40 tries has probability 4·0.75⁴⁰ ≈ 4e-5.
const SAMPLES: usize = 40;
/// How long the server's link stays cut (longer than the agents' lease
/// renewal, shorter than the node monitor's grace period).
const SERVER_CUT: Duration = Duration::from_secs(15);
/// The Service by its cluster DNS name.
const SERVICE_URL: &str = "http://web.default.svc.cluster.local/";
/// One fetch with a deadline (`wget -T` segfaults in busybox 1.35).
const WGET: &str = "timeout 5 wget -qO-";
/// The same with the machine's busybox, whose applets are not on PATH.
const HOST_WGET: &str = "busybox timeout 5 busybox wget -qO-";

/// A web pod as the test sees it.
#[derive(Debug, Clone)]
struct Backend {
    name: String,
    ip: String,
    node: String,
}

#[test]
fn services_across_two_hosts() -> anyhow::Result<()> {
    let mut rig = Rig::start(RigOptions {
        net: NET,
        hosts: 2,
        cluster_cidr: "10.199.96.0/22".into(),
        service_cidr: "10.198.96.0/24".into(),
    })?;
    let result = run(&mut rig);
    if result.is_err() {
        eprintln!("{}", rig.logs());
    }
    result
}

fn run(rig: &mut Rig) -> anyhow::Result<()> {
    let cidrs = pod_cidrs_and_routes(rig)?;
    rig.kube.apply(WEB)?;
    rig.kube.apply(CLIENT)?;
    let backends = wait_backends(rig, 2)?;
    let nodes: BTreeSet<&str> = backends.iter().map(|b| b.node.as_str()).collect();
    assert_eq!(nodes.len(), 2, "one backend per node: {backends:?}");
    wait_until(Duration::from_secs(120), || {
        let p = rig.kube.json(&["get", "pod", "client"])?;
        Ok(p["status"]["phase"] == "Running")
    })?;
    let client_ip = pod_ip(rig, "client")?;
    assert!(
        client_ip.starts_with(&cidrs[0]),
        "client {client_ip} not in {}",
        cidrs[0]
    );

    pods_reach_each_other_without_nat(rig, &backends, &client_ip)?;
    expect_answers(rig, &backends)?;
    rig.kube
        .ok(&["scale", "deployment", "web", "--replicas=4"])?;
    let backends = wait_backends(rig, 4)?;
    expect_answers(rig, &backends)?;
    hairpin(rig, &backends[0])?;
    affinity_and_headless(rig, &backends)?;
    deleted_pod_leaves_rotation_first(rig, &backends[0])?;
    let backends = wait_backends(rig, 4)?;
    node_port_from_outside(rig, &backends)?;
    node_port_local_policy(rig, &backends)?;
    load_balancer_from_outside(rig, &backends)?;
    network_policy_blocks_then_allows(rig, &backends)?;
    dns_srv_for_named_port(rig)?;
    rig_faults(rig, &backends)
}

/// (Step 2) A pod reaches pods on both nodes by IP, and they see its own address
/// (host-gateway routing, no NAT); through the ClusterIP too.
fn pods_reach_each_other_without_nat(
    rig: &Rig,
    backends: &[Backend],
    client_ip: &str,
) -> anyhow::Result<()> {
    for b in backends {
        let url = format!("http://{}:8080/cgi-bin/ip", b.ip);
        let seen = exec(rig, "client", &format!("{WGET} {url}"))?;
        assert_eq!(peer(&seen), client_ip, "source address seen by {b:?}");
    }
    let seen = fetch_n(rig, "client", &format!("{SERVICE_URL}cgi-bin/ip"), 10)?;
    let want = BTreeSet::from([format!("[::ffff:{client_ip}]")]);
    assert_eq!(seen, want, "source addresses seen through the ClusterIP");
    Ok(())
}

/// busybox httpd listens on IPv6 and shows IPv4 peers mapped:
/// `[::ffff:a.b.c.d]`.
fn peer(remote_addr: &str) -> &str {
    remote_addr
        .trim()
        .trim_start_matches("[::ffff:")
        .trim_end_matches(']')
}

/// A backend reaching its own Service can land on itself (hairpin).
fn hairpin(rig: &Rig, backend: &Backend) -> anyhow::Result<()> {
    wait_until(Duration::from_secs(30), || {
        Ok(fetch_n(rig, &backend.name, SERVICE_URL, SAMPLES)?.contains(&backend.name))
    })
    .map_err(|e| anyhow::anyhow!("{} never reached itself via the Service: {e}", backend.name))
}

/// (Step 3b) `sessionAffinity: ClientIP` keeps the client on one backend;
/// a headless Service's name resolves to every backend's address.
fn affinity_and_headless(rig: &Rig, backends: &[Backend]) -> anyhow::Result<()> {
    let sticky = fetch_n(rig, "client", "http://web-sticky/", 20)?;
    assert_eq!(sticky.len(), 1, "ClientIP affinity answered by {sticky:?}");
    let mut out = String::new();
    wait_until(Duration::from_secs(30), || {
        out = exec(
            rig,
            "client",
            "nslookup web-headless.default.svc.cluster.local",
        )?;
        Ok(backends
            .iter()
            .all(|b| out.contains(&format!("Address: {}", b.ip))))
    })
    .map_err(|e| anyhow::anyhow!("headless name: {out}; want {backends:?}: {e}"))
}

/// (Step 4) A deleted pod is out of rotation while its container still serves.
fn deleted_pod_leaves_rotation_first(rig: &Rig, victim: &Backend) -> anyhow::Result<()> {
    let deleted = Instant::now();
    rig.kube
        .ok(&["delete", "pod", &victim.name, "--wait=false"])?;
    wait_until(Duration::from_secs(30), || {
        Ok(!sample(rig)?.contains(&victim.name))
    })?;
    let out_of_rotation = deleted.elapsed();
    let direct = exec(rig, "client", &format!("{WGET} http://{}:8080/", victim.ip))?;
    assert_eq!(
        direct.trim(),
        victim.name,
        "the deleted pod should still serve"
    );
    eprintln!("deleted pod out of rotation after {out_of_rotation:?}, still serving");
    Ok(())
}

/// (Step 5) From outside the cluster, each node's NodePort reaches the backends
/// of both nodes (`externalTrafficPolicy: Cluster` masquerades, so replies
/// come back through the node that was asked).
fn node_port_from_outside(rig: &Rig, backends: &[Backend]) -> anyhow::Result<()> {
    let names: BTreeSet<String> = backends.iter().map(|b| b.name.clone()).collect();
    for host in &rig.hosts {
        let url = format!("http://{}:{NODE_PORT}/", host.ip);
        let mut got = BTreeSet::new();
        wait_until(Duration::from_secs(30), || {
            got = fetch_outside(rig, &url, SAMPLES)?;
            Ok(got == names)
        })
        .map_err(|e| anyhow::anyhow!("NodePort {url} answered by {got:?}, want {names:?}: {e}"))?;
    }
    // From a node itself: its own NodePort, the other node's, the ClusterIP.
    let svc = rig.kube.json(&["get", "service", "web"])?;
    let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap_or_default();
    for url in [
        format!("http://{}:{NODE_PORT}/", rig.hosts[0].ip),
        format!("http://{}:{NODE_PORT}/", rig.hosts[1].ip),
        format!("http://{cluster_ip}/"),
    ] {
        let script = fetch_loop(HOST_WGET, &url, 3);
        let got = answers(&rig.on_host(0, "busybox", &["sh", "-c", &script])?);
        assert!(
            !got.is_empty() && got.is_subset(&names),
            "{url} from {}: {got:?}",
            rig.hosts[0].name
        );
    }
    Ok(())
}

/// (Step 5b) With `externalTrafficPolicy: Local` a node's NodePort reaches only
/// that node's backends, and they see the outside client's own address.
fn node_port_local_policy(rig: &Rig, backends: &[Backend]) -> anyhow::Result<()> {
    let outside_ip = rig.outside_ip().to_string();
    for host in &rig.hosts {
        let local: BTreeSet<String> = backends
            .iter()
            .filter(|b| b.node == host.name)
            .map(|b| b.name.clone())
            .collect();
        let url = format!("http://{}:{LOCAL_NODE_PORT}/", host.ip);
        let mut got = BTreeSet::new();
        wait_until(Duration::from_secs(30), || {
            got = fetch_outside(rig, &url, SAMPLES)?;
            Ok(got == local)
        })
        .map_err(|e| {
            anyhow::anyhow!("Local NodePort {url} answered by {got:?}, want {local:?}: {e}")
        })?;
        let seen = fetch_outside(rig, &format!("{url}cgi-bin/ip"), 3)?;
        let seen: BTreeSet<&str> = seen.iter().map(|s| peer(s)).collect();
        assert_eq!(
            seen,
            BTreeSet::from([outside_ip.as_str()]),
            "client address behind {url}"
        );
    }
    Ok(())
}

/// (Step 5c) A LoadBalancer Service gets the nodes' addresses as its ingress IPs
/// (k3s's service load balancer) and answers there on its port.
fn load_balancer_from_outside(rig: &Rig, backends: &[Backend]) -> anyhow::Result<()> {
    let names: BTreeSet<String> = backends.iter().map(|b| b.name.clone()).collect();
    let want: BTreeSet<String> = rig.hosts.iter().map(|h| h.ip.to_string()).collect();
    let mut ingress = BTreeSet::new();
    wait_until(Duration::from_secs(30), || {
        let svc = rig.kube.json(&["get", "service", "web-lb"])?;
        ingress = svc["status"]["loadBalancer"]["ingress"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["ip"].as_str().map(str::to_string))
            .collect();
        Ok(ingress == want)
    })
    .map_err(|e| anyhow::anyhow!("LoadBalancer ingress {ingress:?}, want {want:?}: {e}"))?;
    for ip in &ingress {
        let url = format!("http://{ip}:8000/");
        let got = fetch_outside(rig, &url, 3)?;
        assert!(
            !got.is_empty() && got.is_subset(&names),
            "LoadBalancer {url}: {got:?}"
        );
    }
    Ok(())
}

/// (Step 6) NetworkPolicy: deny all ingress to web, then allow the client;
/// restrict the client's egress to web pods, then add an ipBlock.
fn network_policy_blocks_then_allows(rig: &Rig, backends: &[Backend]) -> anyhow::Result<()> {
    let names: BTreeSet<String> = backends.iter().map(|b| b.name.clone()).collect();
    rig.kube.apply(DENY_WEB)?;
    let started = Instant::now();
    // Blocked connections hang: a short deadline per fetch.
    let blocked_loop = fetch_loop("timeout 2 wget -qO-", SERVICE_URL, 3);
    wait_until(Duration::from_secs(30), || {
        Ok(answers(&exec(rig, "client", &blocked_loop)?).is_empty())
    })?;
    eprintln!("deny policy enforced after {:?}", started.elapsed());
    rig.kube.apply(ALLOW_CLIENT)?;
    let started = Instant::now();
    wait_until(Duration::from_secs(30), || Ok(sample(rig)? == names))?;
    eprintln!("allow policy enforced after {:?}", started.elapsed());
    rig.kube.ok(&[
        "delete",
        "networkpolicy",
        "web-deny-all",
        "web-allow-client",
    ])?;

    // Egress: the client may reach web pods on both nodes (by a named port)
    // and nothing else, until an ipBlock lets it reach the API server.
    let api = "echo | timeout 3 nc kubernetes.default.svc.cluster.local 443";
    exec(rig, "client", api).context("the API server before any egress policy")?;
    rig.kube.apply(CLIENT_EGRESS)?;
    wait_until(Duration::from_secs(30), || {
        Ok(exec(rig, "client", api).is_err())
    })
    .context("egress to the API server still allowed")?;
    assert_eq!(sample(rig)?, names, "egress to web pods");
    rig.kube
        .apply(&client_egress_api(&rig.server_ip().to_string()))?;
    wait_until(Duration::from_secs(30), || {
        Ok(exec(rig, "client", api).is_ok())
    })
    .context("ipBlock egress to the API server")?;
    rig.kube.ok(&[
        "delete",
        "networkpolicy",
        "client-egress-web",
        "client-egress-api",
    ])?;
    Ok(())
}

/// (Step 7) Cluster DNS answers SRV for the Service's named port, and the
/// `kubernetes` Service reaches the API server.
fn dns_srv_for_named_port(rig: &Rig) -> anyhow::Result<()> {
    let srv = exec(
        rig,
        "client",
        "nslookup -type=srv _http._tcp.web.default.svc.cluster.local",
    )?;
    assert!(
        srv.contains("80 web.default.svc.cluster.local"),
        "SRV answer: {srv}"
    );
    // The `kubernetes` Service leads to the API server, in its own namespace.
    exec(
        rig,
        "client",
        "echo | timeout 5 nc kubernetes.default.svc.cluster.local 443",
    )
    .context("connecting to the kubernetes Service")?;
    Ok(())
}

/// (Step 8) The rig's faults: with the server killed or cut off, Services
/// still work, and the agents follow changes once it is back;
/// a cut link isolates host 1 until it is restored; a
/// killed host's pods stop answering, and answer again once it restarts.
fn rig_faults(rig: &mut Rig, backends: &[Backend]) -> anyhow::Result<()> {
    // The data plane does not need the control plane: with the API server
    // down, the NodePort still spreads over every backend.
    let names: BTreeSet<String> = backends.iter().map(|b| b.name.clone()).collect();
    let url = format!("http://{}:{NODE_PORT}/", rig.hosts[0].ip);
    rig.kill_server();
    let during_outage = fetch_outside(rig, &url, SAMPLES)?;
    rig.restart_server()?;
    assert_eq!(
        during_outage, names,
        "NodePort answers with the API server down"
    );
    // Cut off from the server for a while, then back: the agents' watches
    // recover, so changes made after the link heals reach the kernel.
    rig.cut_server_link()?;
    let during_cut = fetch_outside(rig, &url, SAMPLES)?;
    std::thread::sleep(SERVER_CUT);
    rig.restore_server_link()?;
    assert_eq!(
        during_cut, names,
        "NodePort answers with the server cut off"
    );
    let healed = Instant::now();
    rig.kube
        .ok(&["scale", "deployment", "web", "--replicas=3"])?;
    expect_answers(rig, &wait_backends(rig, 3)?)?;
    eprintln!(
        "server link healed: a scale-down in rotation after {:?}",
        healed.elapsed()
    );
    // From two per node, one went: each node still has a backend.
    let backends = wait_backends(rig, 3)?;

    let remote = backends
        .iter()
        .find(|b| b.node == rig.hosts[1].name)
        .context("a backend on host 1")?
        .clone();
    let fetch_remote = format!("{WGET} http://{}:8080/", remote.ip);
    rig.cut_link(1)?;
    assert!(
        exec(rig, "client", &fetch_remote).is_err(),
        "host 1 reachable over a cut link"
    );
    rig.restore_link(1)?;
    wait_until(Duration::from_secs(30), || {
        Ok(exec(rig, "client", &fetch_remote).is_ok())
    })?;
    rig.kill_host(1)?;
    assert!(
        exec(rig, "client", &fetch_remote).is_err(),
        "a pod of a killed host answered"
    );
    // The host boots again: its agent restarts the pods it is bound to, in
    // new sandboxes with new addresses (as kubelet does).
    let started = Instant::now();
    rig.start_agent(1)?;
    rig.wait_nodes_ready(Duration::from_secs(120))?;
    wait_until(Duration::from_secs(120), || {
        let ip = pod_ip(rig, &remote.name)?;
        let fetch = format!("{WGET} http://{ip}:8080/");
        Ok(ip != remote.ip
            && exec(rig, "client", &fetch).is_ok_and(|body| body.trim() == remote.name))
    })?;
    eprintln!(
        "killed host serving again {:?} after its restart",
        started.elapsed()
    );
    // The sandboxes that died with the host were stopped (CNI DEL), so the
    // host's IPAM holds exactly the addresses of its pods again.
    let ipam = rig.hosts[1].data_dir().join("cni/ipam/skiff");
    let mut held = BTreeSet::new();
    let mut want = BTreeSet::new();
    wait_until(Duration::from_secs(30), || {
        held = std::fs::read_dir(&ipam)?
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|f| f.parse::<std::net::Ipv4Addr>().is_ok())
            .collect();
        want = pod_ips_on(rig, &rig.hosts[1].name)?;
        Ok(held == want)
    })
    .map_err(|e| anyhow::anyhow!("IPAM of host 1 holds {held:?}, its pods {want:?}: {e}"))?;
    // A node that leaves takes its route with it.
    rig.kill_host(1)?;
    rig.kube.ok(&["delete", "node", &rig.hosts[1].name])?;
    wait_until(Duration::from_secs(30), || {
        Ok(rig
            .on_host(0, "ip", &["-4", "route", "show", "proto", "83"])?
            .trim()
            .is_empty())
    })
    .context("host 0 still routes to the deleted node's pod CIDR")?;
    Ok(())
}

/// Checks that each node has a distinct /24 of the cluster CIDR and that
/// every host routes the other's CIDR through it. Returns the CIDRs' prefixes
/// (`10.199.9x.`) by host.
fn pod_cidrs_and_routes(rig: &Rig) -> anyhow::Result<Vec<String>> {
    let mut cidrs = Vec::new();
    for host in &rig.hosts {
        let node = rig.kube.json(&["get", "node", &host.name])?;
        let cidr = node["spec"]["podCIDR"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            cidr.starts_with("10.199.9") && cidr.ends_with(".0/24"),
            "{cidr}"
        );
        cidrs.push(cidr);
    }
    assert_ne!(cidrs[0], cidrs[1]);
    for (i, host) in rig.hosts.iter().enumerate() {
        let (other, other_cidr) = (&rig.hosts[1 - i], &cidrs[1 - i]);
        let want = format!("{other_cidr} via {}", other.ip);
        wait_until(Duration::from_secs(30), || {
            Ok(rig
                .on_host(i, "ip", &["-4", "route", "show", "proto", "83"])?
                .contains(&want))
        })
        .map_err(|e| anyhow::anyhow!("{}: no route {want}: {e}", host.name))?;
    }
    Ok(cidrs
        .iter()
        .map(|c| c.trim_end_matches("0/24").to_string())
        .collect())
}

/// Waits for `n` ready web pods not being deleted, and returns them.
fn wait_backends(rig: &Rig, n: usize) -> anyhow::Result<Vec<Backend>> {
    let mut found = Vec::new();
    wait_until(Duration::from_secs(120), || {
        found = backends(rig)?;
        Ok(found.len() == n)
    })
    .map_err(|e| anyhow::anyhow!("{n} ready web pods: {e}; have {found:?}"))?;
    Ok(found)
}

fn backends(rig: &Rig) -> anyhow::Result<Vec<Backend>> {
    let list = rig.kube.json(&["get", "pods", "-l", "app=web"])?;
    let ready = |p: &Value| {
        p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    };
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null() && ready(p))
        .filter_map(|p| {
            Some(Backend {
                name: p["metadata"]["name"].as_str()?.to_string(),
                ip: p["status"]["podIP"].as_str()?.to_string(),
                node: p["spec"]["nodeName"].as_str()?.to_string(),
            })
        })
        .collect())
}

fn pod_ip(rig: &Rig, pod: &str) -> anyhow::Result<String> {
    let p = rig.kube.json(&["get", "pod", pod])?;
    Ok(p["status"]["podIP"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// The addresses of the pods bound to `node`.
fn pod_ips_on(rig: &Rig, node: &str) -> anyhow::Result<BTreeSet<String>> {
    let field = format!("spec.nodeName={node}");
    let list = rig
        .kube
        .json(&["get", "pods", "--field-selector", &field])?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_string))
        .collect())
}

/// Runs a shell command in a pod through `kubectl exec`.
fn exec(rig: &Rig, pod: &str, script: &str) -> anyhow::Result<String> {
    rig.kube.ok(&["exec", pod, "--", "sh", "-c", script])
}

/// A shell loop fetching `url` `n` times with `wget` (a command line),
/// printing each body, or `FAILED`.
fn fetch_loop(wget: &str, url: &str, n: usize) -> String {
    format!("for i in $(seq {n}); do {wget} {url} || echo FAILED; done")
}

/// The distinct non-empty bodies of a fetch loop's output.
fn answers(out: &str) -> BTreeSet<String> {
    out.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "FAILED")
        .map(str::to_string)
        .collect()
}

/// The answers to `n` fetches of `url` from inside `pod`.
fn fetch_n(rig: &Rig, pod: &str, url: &str, n: usize) -> anyhow::Result<BTreeSet<String>> {
    Ok(answers(&exec(rig, pod, &fetch_loop(WGET, url, n))?))
}

/// The answers to `n` fetches of `url` from the outside namespace.
fn fetch_outside(rig: &Rig, url: &str, n: usize) -> anyhow::Result<BTreeSet<String>> {
    let script = fetch_loop(HOST_WGET, url, n);
    let out = rig.outside_cmd("busybox", &["sh", "-c", &script])?;
    Ok(answers(&String::from_utf8_lossy(&out.stdout)))
}

/// The pod names answering `n` fetches of the Service by its DNS name from
/// the client.
fn sample_n(rig: &Rig, n: usize) -> anyhow::Result<BTreeSet<String>> {
    fetch_n(rig, "client", SERVICE_URL, n)
}

fn sample(rig: &Rig) -> anyhow::Result<BTreeSet<String>> {
    sample_n(rig, SAMPLES)
}

/// Waits until sampling the Service gives exactly the backends' names (the
/// proxy may lag the API by up to a second).
fn expect_answers(rig: &Rig, backends: &[Backend]) -> anyhow::Result<()> {
    let want: BTreeSet<String> = backends.iter().map(|b| b.name.clone()).collect();
    let mut got = BTreeSet::new();
    let started = Instant::now();
    wait_until(Duration::from_secs(30), || {
        got = sample(rig)?;
        Ok(got == want)
    })
    .map_err(|e| anyhow::anyhow!("service answers {got:?}, want {want:?}: {e}"))?;
    eprintln!(
        "service answered by all {} backends after {:?}",
        want.len(),
        started.elapsed()
    );
    Ok(())
}
