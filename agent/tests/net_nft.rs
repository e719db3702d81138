//! The rendered rules against the real `nft` (Debian's nftables) in a
//! private network namespace: the transactions parse and commit, the table
//! holds what was rendered, a second sync keeps affinity set elements and
//! drops stale chains, and the delete transaction removes the table. The
//! incremental path: a delta applied to the previous table leaves the kernel
//! with the same table as a full load of the next ruleset, and a delta
//! against a missing table falls back to a full rewrite.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use skiff_agent::net::bench::synthetic_services;
use skiff_agent::net::delta::delta;
use skiff_agent::net::model::{Endpoint, Ipv4Cidr, PodInfo, Protocol, ServicePort};
use skiff_agent::net::nft::{self, Applied};
use skiff_agent::net::policy::{self, PolicyInput};
use skiff_agent::net::proxy::{self, ProxyInput};
use skiff_agent::net::ruleset::{delete_transaction, transaction, Ruleset};

struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("sknp-nft-{tag}-{}", std::process::id());
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip netns add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Netns(name)
    }

    fn nft(&self, stdin: &str, args: &[&str]) -> Result<String, String> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0, "nft"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ip netns exec nft (apt-get install nftables)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn services(affinity: bool, n: u8) -> Vec<ServicePort> {
    (0..n)
        .map(|i| ServicePort {
            namespace: "default".into(),
            name: format!("svc{i}"),
            port_name: "http".into(),
            protocol: if i % 2 == 0 {
                Protocol::Tcp
            } else {
                Protocol::Udp
            },
            cluster_ip: format!("10.43.0.{}", i + 1).parse().unwrap(),
            port: 80,
            node_port: (i == 0).then_some(30080),
            load_balancer_ips: if i == 1 {
                vec!["192.168.7.1".parse().unwrap()]
            } else {
                vec![]
            },
            external_local: i == 2,
            affinity_timeout: affinity.then_some(60),
            endpoints: if i == 3 {
                vec![]
            } else {
                vec![
                    Endpoint {
                        ip: "10.42.0.5".parse().unwrap(),
                        port: 8080,
                        node: Some("a".into()),
                    },
                    Endpoint {
                        ip: format!("10.42.1.{}", i + 2).parse().unwrap(),
                        port: 8080,
                        node: Some("b".into()),
                    },
                ]
            },
        })
        .collect()
}

fn ruleset(svcs: &[ServicePort]) -> Ruleset {
    let cidrs = proxy::pod_cidrs(["10.42.0.0/24", "10.42.1.0/24"].into_iter());
    let mut rs = Ruleset::default();
    proxy::render(
        &ProxyInput {
            node_name: "a",
            bridge: "skn0",
            pod_cidrs: &cidrs,
            services: svcs,
        },
        &mut rs,
    );
    let pods = vec![PodInfo {
        namespace: "default".into(),
        name: "web".into(),
        ip: "10.42.0.5".parse().unwrap(),
        labels: [("app".to_string(), "web".to_string())].into(),
        ports: vec![],
    }];
    let policy: k8s_openapi::api::networking::v1::NetworkPolicy = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                 "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.9.0.0/16"]}}], "ports": [{"port": 8080}]}],
                 "egress": [{"to": [{"podSelector": {}}]}]}
    }))
    .unwrap();
    policy::render(
        &PolicyInput {
            local_cidr: Ipv4Cidr::parse("10.42.0.0/24"),
            pods: &pods,
            namespaces: &Default::default(),
            policies: &[policy],
        },
        &mut rs,
    );
    rs
}

#[test]
fn rendered_rules_commit_in_the_kernel_and_resync_keeps_affinity() {
    let ns = Netns::new("resync");
    let first = ruleset(&services(true, 5));
    ns.nft(&transaction("skiff-t", None, &first), &["-f", "-"])
        .unwrap_or_else(|e| panic!("first transaction rejected:\n{e}"));
    let listed = ns.nft("", &["list", "table", "ip", "skiff-t"]).unwrap();
    for needle in [
        "chain svc-default/svc0/tcp/80",
        "numgen random mod 2",
        "dnat to 10.42.0.5:8080",
        "tcp . 30080 : goto ext-default/svc0/tcp/80",
        "192.168.7.1 . udp . 80 : goto ext-default/svc1/udp/80",
        "10.43.0.4 . udp . 80",
        "chain in-10.42.0.5",
        "timeout 1m",
    ] {
        assert!(listed.contains(needle), "missing {needle:?} in:\n{listed}");
    }

    // The packet path fills affinity sets; simulate one client.
    let aff = "aff-default/svc0/tcp/80__10.42.0.5/8080";
    ns.nft(
        &format!("add element ip skiff-t {aff} {{ 10.42.1.9 }}\n"),
        &["-f", "-"],
    )
    .unwrap();

    // Second sync: one service fewer, the rest unchanged.
    let second = ruleset(&services(true, 4));
    ns.nft(&transaction("skiff-t", Some(&first), &second), &["-f", "-"])
        .unwrap_or_else(|e| panic!("second transaction rejected:\n{e}"));
    let listed = ns.nft("", &["list", "table", "ip", "skiff-t"]).unwrap();
    assert!(!listed.contains("svc4"), "stale service left:\n{listed}");
    let set = ns.nft("", &["list", "set", "ip", "skiff-t", aff]).unwrap();
    assert!(
        set.contains("10.42.1.9"),
        "affinity lost across the sync:\n{set}"
    );

    // Turning affinity off deletes its sets.
    let third = ruleset(&services(false, 4));
    ns.nft(&transaction("skiff-t", Some(&second), &third), &["-f", "-"])
        .unwrap_or_else(|e| panic!("third transaction rejected:\n{e}"));
    let listed = ns.nft("", &["list", "table", "ip", "skiff-t"]).unwrap();
    assert!(!listed.contains("aff-"), "{listed}");

    ns.nft(&delete_transaction("skiff-t"), &["-f", "-"])
        .unwrap();
    assert!(ns.nft("", &["list", "tables"]).unwrap().trim().is_empty());
}

impl Netns {
    /// The table as the kernel holds it, in a form that does not depend on
    /// the order objects were created in: handles dropped, chains and sets
    /// by name, set elements sorted, rules in chain order.
    fn table(&self, table: &str) -> BTreeMap<String, serde_json::Value> {
        let json = self.nft("", &["-j", "list", "table", "ip", table]).unwrap();
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        let mut out: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        for obj in json["nftables"].as_array().unwrap() {
            let (kind, body) = obj.as_object().unwrap().iter().next().unwrap();
            let mut body = body.clone();
            strip_handles(&mut body);
            match kind.as_str() {
                "chain" | "set" | "map" => {
                    if let Some(elem) = body.get_mut("elem").and_then(|e| e.as_array_mut()) {
                        elem.sort_by_key(|e| e.to_string());
                    }
                    out.insert(format!("{kind} {}", body["name"]), body);
                }
                "rule" => {
                    let rules = out
                        .entry(format!("rules of {}", body["chain"]))
                        .or_insert_with(|| serde_json::json!([]));
                    rules.as_array_mut().unwrap().push(body["expr"].clone());
                }
                _ => {}
            }
        }
        out
    }
}

fn strip_handles(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.remove("handle");
            m.values_mut().for_each(strip_handles);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_handles),
        _ => {}
    }
}

/// A sequence of clusters, each a small edit of the one before: endpoints
/// changed, services added and removed, affinity on and off, an endpoint
/// lost, pod CIDRs grown.
fn edits() -> Vec<Ruleset> {
    let base = synthetic_services(30, 3);
    let mut steps = vec![base.clone()];
    let mut s = base.clone();
    s[4].endpoints[1].ip = "10.42.200.1".parse().unwrap();
    steps.push(s.clone());
    s.truncate(25);
    s.extend(services(false, 4).into_iter().map(|mut sp| {
        // Clear of the synthetic services' ClusterIPs.
        sp.cluster_ip = format!("10.43.1.{}", sp.cluster_ip.octets()[3])
            .parse()
            .unwrap();
        sp
    }));
    steps.push(s.clone());
    s[7].affinity_timeout = Some(30);
    s[8].endpoints.clear();
    steps.push(s.clone());
    s[7].affinity_timeout = None;
    s[7].endpoints.pop();
    s[9].node_port = Some(31999);
    steps.push(s.clone());
    let mut rulesets: Vec<Ruleset> = steps.iter().map(|svcs| ruleset(svcs)).collect();
    let mut wider = rulesets.last().unwrap().clone();
    wider
        .sets
        .get_mut("pod-cidrs")
        .unwrap()
        .elements
        .push("10.42.9.0/24".into());
    rulesets.push(wider);
    rulesets
}

#[test]
fn a_delta_gives_the_kernel_the_same_table_as_a_full_load() {
    let ns = Netns::new("delta");
    let full = Netns::new("full");
    let steps = edits();
    ns.nft(&transaction("skiff-d", None, &steps[0]), &["-f", "-"])
        .unwrap();
    for (i, pair) in steps.windows(2).enumerate() {
        let (prev, next) = (&pair[0], &pair[1]);
        let d = delta(prev, next).expect("a small edit is a delta");
        assert!(!d.is_empty(), "step {i} changed nothing");
        let text = d.transaction("skiff-d", prev, next);
        ns.nft(&text, &["-f", "-"])
            .unwrap_or_else(|e| panic!("delta {i} rejected:\n{e}\n{text}"));
        full.nft(&transaction("skiff-d", None, next), &["-f", "-"])
            .unwrap_or_else(|e| panic!("full load {i} rejected:\n{e}"));
        let (got, want) = (ns.table("skiff-d"), full.table("skiff-d"));
        for key in got.keys().chain(want.keys()) {
            assert_eq!(
                got.get(key),
                want.get(key),
                "step {i}: {key} differs after the delta:\n{text}"
            );
        }
    }
}

#[test]
fn a_delta_against_a_missing_table_falls_back_to_a_full_rewrite() {
    let ns = Netns::new("fallback");
    let steps = edits();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sync = |prev: Option<&Ruleset>, next: &Ruleset| {
        rt.block_on(nft::sync_table(Some(&ns.0), "skiff-f", prev, next))
            .unwrap()
    };
    assert!(matches!(sync(None, &steps[0]), Applied::Full(_)));
    assert!(matches!(
        sync(Some(&steps[0]), &steps[1]),
        Applied::Delta(_)
    ));
    assert_eq!(sync(Some(&steps[1]), &steps[1]), Applied::Unchanged);
    // Someone deletes the table behind the agent's back.
    ns.nft(&delete_transaction("skiff-f"), &["-f", "-"])
        .unwrap();
    assert!(matches!(
        sync(Some(&steps[1]), &steps[2]),
        Applied::FullAfterRejectedDelta(_)
    ));
    let listed = ns.nft("", &["list", "table", "ip", "skiff-f"]).unwrap();
    assert!(listed.contains("chain svc-default/svc0/tcp/80"), "{listed}");
}
