//! Services end to end (issue #8, server side): a Deployment behind a
//! Service gets a cluster IP and an EndpointSlice with the ready pod IPs;
//! scaling changes the slice; a pod being deleted leaves the ready set
//! before its container stops; a busybox pod resolves the Service through
//! the node-local cluster DNS (A and SRV).

use std::time::Duration;

use serde_json::Value;
use skiff_tests::{wait_until, Cluster, ClusterOptions};

const SUBNET: u8 = 50;

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
      # busybox httpd ignores SIGTERM: deletion takes the whole grace
      # period, which is the window in which the slice must already show
      # the pod as not ready.
      terminationGracePeriodSeconds: 30
      containers:
      - name: httpd
        image: skiff.local/busybox:1
        command: ["sh", "-c", "mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports:
        - name: http
          containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - name: http
    port: 80
    targetPort: http
"#;

const CLIENT: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: skiff.local/busybox:1
    command: ["sh", "-c", "cat /etc/resolv.conf; nslookup web.default.svc.cluster.local; nslookup -type=srv _http._tcp.web.default.svc.cluster.local; echo done"]
"#;

fn json(cluster: &Cluster, args: &[&str]) -> anyhow::Result<Value> {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    Ok(serde_json::from_str(&cluster.kubectl_ok(&a)?)?)
}

/// (ready IPs, not-ready IPs with terminating=true) of the Service's slices.
fn slice_ips(cluster: &Cluster) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let list = json(
        cluster,
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
        ],
    )?;
    let (mut ready, mut terminating) = (Vec::new(), Vec::new());
    for s in list["items"].as_array().into_iter().flatten() {
        assert_eq!(
            s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
            "endpointslice-controller.skiff.dev"
        );
        for e in s["endpoints"].as_array().into_iter().flatten() {
            let ip = e["addresses"][0].as_str().unwrap_or_default().to_string();
            if e["conditions"]["ready"] == true {
                ready.push(ip);
            } else if e["conditions"]["terminating"] == true {
                terminating.push(ip);
            }
        }
    }
    ready.sort();
    terminating.sort();
    Ok((ready, terminating))
}

/// IPs of running, ready web pods not being deleted.
fn ready_pod_ips(cluster: &Cluster) -> anyhow::Result<Vec<String>> {
    let list = json(cluster, &["get", "pods", "-l", "app=web"])?;
    let mut ips: Vec<String> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| {
            p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_string))
        .collect();
    ips.sort();
    Ok(ips)
}

fn wait_slice_matches_pods(cluster: &Cluster, n: usize) -> anyhow::Result<Vec<String>> {
    wait_until(Duration::from_secs(120), || {
        let pods = ready_pod_ips(cluster)?;
        Ok(pods.len() == n && slice_ips(cluster)?.0 == pods)
    })?;
    ready_pod_ips(cluster)
}

#[test]
fn deployment_service_endpoints_and_dns() -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterOptions { subnet: SUBNET })?;
    let result = run(&cluster);
    cluster.log_failure(result, 150)
}

fn run(cluster: &Cluster) -> anyhow::Result<()> {
    // Node IPAM gave the node the test's pod CIDR.
    let node = json(cluster, &["get", "node", &cluster.node_name()])?;
    assert_eq!(node["spec"]["podCIDR"], format!("10.199.{SUBNET}.0/24"));
    // The kubernetes Service has the first IP of the service range.
    let k = json(cluster, &["get", "service", "kubernetes"])?;
    assert_eq!(k["spec"]["clusterIP"], format!("10.198.{SUBNET}.1"));

    let manifest = cluster.dir.path().join("web.yaml");
    std::fs::write(&manifest, WEB)?;
    cluster.kubectl_ok(&["apply", "-f", manifest.to_str().unwrap_or_default()])?;
    let svc = json(cluster, &["get", "service", "web"])?;
    let ip = svc["spec"]["clusterIP"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        ip.starts_with(&format!("10.198.{SUBNET}.")),
        "clusterIP {ip:?}"
    );
    // A second Service asking for the same IP: 422 naming spec.clusterIPs.
    let dup = format!("apiVersion: v1\nkind: Service\nmetadata: {{name: dup}}\nspec:\n  clusterIP: {ip}\n  ports: [{{port: 80}}]\n");
    let out = cluster.kubectl_stdin(&["apply", "-f", "-"], &dup)?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("spec.clusterIPs[0]")
            && err.contains("provided IP is already allocated"),
        "{err}"
    );

    wait_slice_matches_pods(cluster, 2)?;
    cluster.kubectl_ok(&["scale", "deployment", "web", "--replicas=3"])?;
    let pods = wait_slice_matches_pods(cluster, 3)?;

    // Delete one pod: it leaves the ready set (terminating) while its
    // container still runs out its 30 s grace period.
    let list = json(cluster, &["get", "pods", "-l", "app=web"])?;
    let victim = list["items"]
        .as_array()
        .and_then(|i| {
            i.iter()
                .find(|p| p["status"]["podIP"].as_str() == Some(pods[0].as_str()))
        })
        .and_then(|p| p["metadata"]["name"].as_str())
        .unwrap_or_default()
        .to_string();
    cluster.kubectl_ok(&["delete", "pod", &victim, "--wait=false"])?;
    wait_until(Duration::from_secs(20), || {
        let (ready, terminating) = slice_ips(cluster)?;
        Ok(!ready.contains(&pods[0]) && terminating.contains(&pods[0]))
    })?;
    let still = json(cluster, &["get", "pod", &victim])?;
    let running = still["status"]["containerStatuses"][0]["state"]["running"].is_object();
    assert!(
        running,
        "the container should still run during its grace period: {still}"
    );

    // DNS from a pod: A and SRV through the node-local server.
    let client = cluster.dir.path().join("client.yaml");
    std::fs::write(&client, CLIENT)?;
    cluster.kubectl_ok(&["apply", "-f", client.to_str().unwrap_or_default()])?;
    wait_until(Duration::from_secs(120), || {
        let p = json(cluster, &["get", "pod", "client"])?;
        Ok(p["status"]["phase"] == "Succeeded" || p["status"]["phase"] == "Failed")
    })?;
    let logs = cluster.kubectl_ok(&["logs", "client"])?;
    assert!(
        logs.contains(&format!("nameserver 10.199.{SUBNET}.1")),
        "{logs}"
    );
    assert!(
        logs.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{logs}"
    );
    assert!(
        logs.contains(&format!("Address: {ip}")),
        "A record missing: {logs}"
    );
    assert!(
        logs.contains("web.default.svc.cluster.local") && logs.contains(" 80 "),
        "SRV missing: {logs}"
    );
    Ok(())
}
