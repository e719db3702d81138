//! NetworkPolicy rendering, checked as text.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::net::model::NamedPort;

fn pod(ns: &str, name: &str, ip: &str, labels: &[(&str, &str)]) -> PodInfo {
    PodInfo {
        namespace: ns.into(),
        name: name.into(),
        ip: ip.parse().unwrap(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ports: vec![NamedPort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 8080,
        }],
    }
}

fn np(v: serde_json::Value) -> NetworkPolicy {
    serde_json::from_value(v).unwrap()
}

fn pods() -> Vec<PodInfo> {
    vec![
        pod("default", "web", "10.42.0.5", &[("app", "web")]),
        pod("default", "client", "10.42.1.6", &[("app", "client")]),
        pod("other", "probe", "10.42.1.7", &[("app", "client")]),
    ]
}

fn render_with(policies: &[NetworkPolicy]) -> Ruleset {
    let pods = pods();
    let mut namespaces = BTreeMap::new();
    namespaces.insert(
        "other".to_string(),
        BTreeMap::from([("team".to_string(), "ops".to_string())]),
    );
    let mut rs = Ruleset::default();
    render(
        &PolicyInput {
            local_cidr: Ipv4Cidr::parse("10.42.0.0/24"),
            pods: &pods,
            namespaces: &namespaces,
            policies,
        },
        &mut rs,
    );
    rs
}

#[test]
fn no_policy_means_no_isolation() {
    let rs = render_with(&[]);
    assert!(rs.sets[POLICY_INGRESS].elements.is_empty());
    assert!(rs.sets[POLICY_EGRESS].elements.is_empty());
    assert_eq!(
        rs.chains[FILTER_FORWARD].rules,
        [
            "ip saddr vmap @policy-egress",
            "ip daddr vmap @policy-ingress"
        ]
    );
}

#[test]
fn deny_all_ingress_isolates_only_selected_local_pods() {
    let rs = render_with(&[np(json!({
        "metadata": {"name": "deny", "namespace": "default"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}
    }))]);
    // 10.42.1.6 is selected too, but runs on another node.
    assert_eq!(
        rs.sets[POLICY_INGRESS].elements,
        ["10.42.0.5 : jump in-10.42.0.5"]
    );
    assert_eq!(rs.chains["in-10.42.0.5"].rules, ["drop"]);
    assert!(rs.sets[POLICY_EGRESS].elements.is_empty());
}

#[test]
fn pod_and_namespace_selectors_with_named_ports() {
    let rs = render_with(&[np(json!({
        "metadata": {"name": "allow", "namespace": "default"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": "http"}]},
                {"from": [{"namespaceSelector": {"matchLabels": {"team": "ops"}}}]},
                {"from": [{"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["default"]}]},
                           "podSelector": {"matchLabels": {"app": "nobody"}}}]}
            ]
        }
    }))]);
    assert_eq!(
        rs.chains["in-10.42.0.5"].rules,
        [
            // Only the client in the policy's own namespace; "http" is 8080 on the web pod.
            "ip saddr { 10.42.1.6 } meta l4proto tcp th dport 8080 return",
            // Every pod of the namespaces labelled team=ops.
            "ip saddr { 10.42.1.7 } return",
            // The third peer matches no pod: no rule.
            "drop",
        ]
    );
}

#[test]
fn egress_with_ip_block_except_and_port_range() {
    let rs = render_with(&[np(json!({
        "metadata": {"name": "out", "namespace": "default"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "web"}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.42.1.0/24"]}}],
                        "ports": [{"protocol": "UDP", "port": 53, "endPort": 60}]}]
        }
    }))]);
    assert_eq!(
        rs.sets[POLICY_EGRESS].elements,
        ["10.42.0.5 : jump out-10.42.0.5"]
    );
    assert_eq!(
        rs.chains["out-10.42.0.5"].rules,
        [
            "ip daddr 10.0.0.0/8 ip daddr != { 10.42.1.0/24 } meta l4proto udp th dport 53-60 return",
            "drop",
        ]
    );
    assert!(rs.sets[POLICY_INGRESS].elements.is_empty());
}

#[test]
fn allow_all_rule_and_selector_operators() {
    let rs = render_with(&[np(json!({
        "metadata": {"name": "open", "namespace": "default"},
        "spec": {"podSelector": {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["client"]}]},
                 "ingress": [{}]}
    }))]);
    assert_eq!(rs.chains["in-10.42.0.5"].rules, ["return", "drop"]);
}
