//! The rendered rules against the real `nft` (Debian's nftables) in a
//! private network namespace: the transactions parse and commit, the table
//! holds what was rendered, a second sync keeps affinity set elements and
//! drops stale chains, and the delete transaction removes the table.

use std::io::Write;
use std::process::{Command, Stdio};

use skiff_agent::net::model::{Endpoint, Ipv4Cidr, PodInfo, Protocol, ServicePort};
use skiff_agent::net::policy::{self, PolicyInput};
use skiff_agent::net::proxy::{self, ProxyInput};
use skiff_agent::net::ruleset::{delete_transaction, transaction, Ruleset};

struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("skn-nft-{}", std::process::id());
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
    let ns = Netns::new();
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
