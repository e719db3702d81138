//! The proxy renderer and the transaction, checked as text.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use super::*;
use crate::net::model::{service_ports, Protocol};
use crate::net::ruleset::{transaction, Ruleset};

fn svc(v: serde_json::Value) -> Service {
    serde_json::from_value(v).unwrap()
}

fn slice(v: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(v).unwrap()
}

fn web_service(extra: serde_json::Value) -> Service {
    let mut v = json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"clusterIP": "10.43.0.10", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    });
    merge(&mut v["spec"], extra);
    svc(v)
}

fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    if let (Some(a), serde_json::Value::Object(b)) = (a.as_object_mut(), b) {
        for (k, v) in b {
            a.insert(k, v);
        }
    }
}

fn web_slice() -> EndpointSlice {
    slice(json!({
        "metadata": {"name": "web-abc", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.42.1.5"], "conditions": {"ready": true}, "nodeName": "b"},
            {"addresses": ["10.42.0.7"], "conditions": {"ready": true}, "nodeName": "a"},
            {"addresses": ["10.42.0.9"], "conditions": {"ready": false, "serving": true, "terminating": true}, "nodeName": "a"}
        ]
    }))
}

fn cidrs() -> Vec<Ipv4Cidr> {
    pod_cidrs(["10.42.0.0/24", "10.42.1.0/24"].into_iter())
}

fn render_one(svc: &Service, slices: &[&EndpointSlice]) -> Ruleset {
    let ports = service_ports(svc, slices);
    let cidrs = cidrs();
    let mut rs = Ruleset::default();
    render(
        &ProxyInput {
            node_name: "a",
            bridge: "skiff0",
            pod_cidrs: &cidrs,
            services: &ports,
        },
        &mut rs,
    );
    rs
}

#[test]
fn endpoints_are_ready_ones_sorted_and_terminating_only_as_fallback() {
    let s = web_slice();
    let ports = service_ports(&web_service(json!({})), &[&s]);
    assert_eq!(ports.len(), 1);
    let p = &ports[0];
    assert_eq!(
        (p.port, p.protocol, p.cluster_ip),
        (80, Protocol::Tcp, Ipv4Addr::new(10, 43, 0, 10))
    );
    let ips: Vec<String> = p
        .endpoints
        .iter()
        .map(|e| format!("{}:{}", e.ip, e.port))
        .collect();
    assert_eq!(ips, ["10.42.0.7:8080", "10.42.1.5:8080"]);

    let only_terminating = slice(json!({
        "metadata": {"name": "x", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [
            {"addresses": ["10.42.0.9"], "conditions": {"ready": false, "serving": true, "terminating": true}},
            {"addresses": ["10.42.0.8"], "conditions": {"ready": false, "serving": false, "terminating": true}}
        ]
    }));
    let p = &service_ports(&web_service(json!({})), &[&only_terminating])[0];
    assert_eq!(p.endpoints.len(), 1);
    assert_eq!(p.endpoints[0].ip, Ipv4Addr::new(10, 42, 0, 9));
}

#[test]
fn headless_external_name_and_foreign_slices_get_nothing() {
    let s = web_slice();
    assert!(service_ports(&web_service(json!({"clusterIP": "None"})), &[&s]).is_empty());
    assert!(service_ports(
        &web_service(json!({"type": "ExternalName", "clusterIP": null})),
        &[&s]
    )
    .is_empty());
    let mut other = web_slice();
    other.metadata.namespace = Some("other".into());
    let p = &service_ports(&web_service(json!({})), &[&other])[0];
    assert!(p.endpoints.is_empty());
}

#[test]
fn cluster_ip_spreads_over_endpoints_with_hairpin_masquerade() {
    let s = web_slice();
    let rs = render_one(&web_service(json!({})), &[&s]);
    let sip = &rs.sets[names::SERVICE_IPS].elements;
    assert_eq!(
        sip,
        &["10.43.0.10 . tcp . 80 : goto svc-default/web/tcp/80"]
    );
    assert_eq!(
        rs.chains["svc-default/web/tcp/80"].rules,
        [
            "ip saddr != @pod-cidrs jump mark-for-masquerade",
            "meta l4proto tcp dnat ip addr . port to numgen random mod 2 map { 0 : 10.42.0.7 . 8080, 1 : 10.42.1.5 . 8080 }",
        ]
    );
    // No per-endpoint chains without affinity; hairpin is matched after DNAT.
    assert!(!rs
        .chains
        .keys()
        .any(|k| k.starts_with("ext-") || k.starts_with("sep-")));
    assert_eq!(
        rs.sets[names::HAIRPIN].elements,
        ["10.42.0.7 . 10.42.0.7", "10.42.1.5 . 10.42.1.5"]
    );
    assert!(rs.chains[names::NAT_POSTROUTING].rules.contains(
        &"ct status dnat ip saddr . ip daddr @hairpin masquerade fully-random".to_string()
    ));
    assert_eq!(
        rs.sets[names::POD_CIDRS].elements,
        ["10.42.0.0/24", "10.42.1.0/24"]
    );
}

#[test]
fn no_endpoints_rejects_instead_of_dnat() {
    let rs = render_one(
        &web_service(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]})),
        &[],
    );
    assert!(rs.sets[names::SERVICE_IPS].elements.is_empty());
    assert_eq!(
        rs.sets[names::NO_ENDPOINT_SERVICES].elements,
        ["10.43.0.10 . tcp . 80"]
    );
    assert_eq!(
        rs.sets[names::NO_ENDPOINT_NODEPORTS].elements,
        ["tcp . 30080"]
    );
}

#[test]
fn node_port_cluster_policy_masquerades_and_local_policy_keeps_local_endpoints() {
    let s = web_slice();
    let np =
        json!({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]});
    let rs = render_one(&web_service(np.clone()), &[&s]);
    assert_eq!(
        rs.sets[names::SERVICE_NODEPORTS].elements,
        ["tcp . 30080 : goto ext-default/web/tcp/80"]
    );
    assert_eq!(
        rs.chains["ext-default/web/tcp/80"].rules,
        ["jump mark-for-masquerade", "goto svc-default/web/tcp/80"]
    );

    let mut local = np;
    merge(&mut local, json!({"externalTrafficPolicy": "Local"}));
    let rs = render_one(&web_service(local), &[&s]);
    assert_eq!(
        rs.chains["ext-default/web/tcp/80"].rules,
        [
            "ip saddr @pod-cidrs goto svc-default/web/tcp/80",
            "fib saddr type local jump mark-for-masquerade",
            "fib saddr type local goto svc-default/web/tcp/80",
            // Node "a" runs only 10.42.0.7 (10.42.0.9 is terminating).
            "meta l4proto tcp dnat to 10.42.0.7:8080",
        ]
    );
}

#[test]
fn load_balancer_ingress_ips_dispatch_to_the_external_chain() {
    let s = web_slice();
    let mut v = json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.10",
                 "ports": [{"name": "http", "port": 80, "nodePort": 30080}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.2"}]}}
    });
    let rs = render_one(&svc(v.take()), &[&s]);
    let sip = &rs.sets[names::SERVICE_IPS].elements;
    assert!(
        sip.contains(&"192.168.1.2 . tcp . 80 : goto ext-default/web/tcp/80".to_string()),
        "{sip:?}"
    );
}

#[test]
fn client_ip_affinity_uses_kept_timeout_sets() {
    let s = web_slice();
    let rs = render_one(
        &web_service(
            json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}),
        ),
        &[&s],
    );
    let set = &rs.sets["aff-default/web/tcp/80__10.42.0.7/8080"];
    assert!(set.keep);
    assert_eq!(
        set.decl,
        "type ipv4_addr; flags dynamic,timeout; timeout 60s;"
    );
    let svc_rules = &rs.chains["svc-default/web/tcp/80"].rules;
    assert_eq!(
        svc_rules[1],
        "ip saddr @aff-default/web/tcp/80__10.42.0.7/8080 goto sep-default/web/tcp/80__10.42.0.7/8080"
    );
    assert_eq!(
        rs.chains["sep-default/web/tcp/80__10.42.0.7/8080"].rules,
        [
            "update @aff-default/web/tcp/80__10.42.0.7/8080 { ip saddr }",
            "meta l4proto tcp dnat to 10.42.0.7:8080"
        ]
    );
}

#[test]
fn first_transaction_recreates_the_table_later_ones_flush_and_delete_stale() {
    let s = web_slice();
    let with = render_one(&web_service(json!({"sessionAffinity": "ClientIP"})), &[&s]);
    let without = render_one(&web_service(json!({})), &[]);

    let first = transaction("skiff", None, &with);
    assert!(
        first.starts_with("add table ip skiff\ndelete table ip skiff\nadd table ip skiff\n"),
        "{first}"
    );
    assert!(first.contains("add chain ip skiff nat-prerouting { type nat hook prerouting priority dstnat; policy accept; }"));
    assert!(first.contains(
        "add element ip skiff service-ips { 10.43.0.10 . tcp . 80 : goto svc-default/web/tcp/80 }"
    ));
    // Chains come before the maps that name them, sets before the rules.
    let chain_at = first
        .find("add chain ip skiff svc-default/web/tcp/80")
        .unwrap();
    let map_at = first.find("add map ip skiff service-ips").unwrap();
    let rule_at = first.find("add rule ip skiff services").unwrap();
    assert!(chain_at < map_at && map_at < rule_at);

    let next = transaction("skiff", Some(&with), &without);
    assert!(
        next.starts_with("add table ip skiff\nflush table ip skiff\n"),
        "{next}"
    );
    assert!(next.contains("flush map ip skiff service-ips\n"));
    assert!(next.contains("delete chain ip skiff svc-default/web/tcp/80\n"));
    assert!(next.contains("delete set ip skiff aff-default/web/tcp/80__10.42.0.7/8080\n"));
    assert!(!next.contains("delete table"));

    // Kept (affinity) sets are neither flushed nor deleted when they stay.
    let again = transaction("skiff", Some(&with), &with);
    assert!(!again.contains("flush set ip skiff aff-"), "{again}");
    assert!(!again.contains("delete "));
}
