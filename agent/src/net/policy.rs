//! NetworkPolicy (networking.k8s.io/v1) as nftables rules: a pure function
//! from pods, namespaces and policies to per-pod filter chains.
//!
//! ```text
//!  filter forward
//!    ct state established,related accept          (replies always pass)
//!    ip saddr vmap @policy-egress  ──► out-<pod ip>   (local pods selected for Egress)
//!    ip daddr vmap @policy-ingress ──► in-<pod ip>    (local pods selected for Ingress)
//!  in-<ip> / out-<ip>:  <peer> <port> return   … one line per allowed (peer, port)
//!                       drop
//! ```
//!
//! Each node enforces ingress for the pods it runs and egress for the pods it
//! runs, so a packet between two nodes is checked for egress at the source
//! and for ingress at the destination. Allowed traffic `return`s (rather than
//! `accept`s) so a same-node packet still meets the other direction's check.
//!
//! Semantics follow the API reference:
//! - a pod is isolated for a direction once any policy in its namespace selects
//!   it with that `policyTypes` entry (default: `Ingress`, plus `Egress` if the
//!   policy has egress rules); until then all traffic is allowed;
//! - allowed traffic is the union over the selecting policies' rules; a rule
//!   with no peers allows every peer, with no ports every port;
//! - peers: `podSelector` (in the policy's namespace), `namespaceSelector`
//!   (every pod in matching namespaces), both (matching pods in matching
//!   namespaces), or `ipBlock` with `except`;
//! - ports: number, `endPort` ranges and named ports (for ingress, resolved on
//!   the selected pod; for egress, on each peer pod).
//!
//! Caveats: traffic between a pod and its own node (it does not pass the
//! forward hook) is never filtered, which Kubernetes requires for ingress and
//! leaves open for egress. IPv4 only.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::model::{Ipv4Cidr, PodInfo, Protocol};
use super::proxy::names::FILTER_FORWARD;
use super::ruleset::Ruleset;

/// Map from a local pod's IP to its ingress chain.
pub const POLICY_INGRESS: &str = "policy-ingress";
/// Map from a local pod's IP to its egress chain.
pub const POLICY_EGRESS: &str = "policy-egress";
/// Label every namespace carries with its own name (set by the API server
/// in Kubernetes; added here when missing so selectors on it work).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// What the policy renderer reads.
#[derive(Debug, Clone, Copy)]
pub struct PolicyInput<'a> {
    /// This node's pod CIDR: pods in it are the ones this node enforces for.
    pub local_cidr: Option<Ipv4Cidr>,
    /// Every pod in the cluster with an address.
    pub pods: &'a [PodInfo],
    /// Namespace labels by namespace name.
    pub namespaces: &'a BTreeMap<String, BTreeMap<String, String>>,
    /// Every NetworkPolicy.
    pub policies: &'a [NetworkPolicy],
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    /// The address of the other side of the connection.
    fn peer_field(self) -> &'static str {
        match self {
            Direction::Ingress => "ip saddr",
            Direction::Egress => "ip daddr",
        }
    }
}

/// Adds the policy chains and maps to `rs` (after [`super::proxy::render`],
/// which declares the forward chain).
pub fn render(input: &PolicyInput<'_>, rs: &mut Ruleset) {
    rs.declare(POLICY_INGRESS, true, "type ipv4_addr : verdict;", false);
    rs.declare(POLICY_EGRESS, true, "type ipv4_addr : verdict;", false);
    let fwd = rs.chain(FILTER_FORWARD);
    fwd.rules.push(format!("ip saddr vmap @{POLICY_EGRESS}"));
    fwd.rules.push(format!("ip daddr vmap @{POLICY_INGRESS}"));
    let Some(local) = input.local_cidr else {
        return;
    };
    let mut pods: Vec<&PodInfo> = input.pods.iter().filter(|p| local.contains(p.ip)).collect();
    pods.sort_by_key(|p| p.ip);
    pods.dedup_by_key(|p| p.ip);
    for pod in pods {
        for dir in [Direction::Ingress, Direction::Egress] {
            let selecting: Vec<&NetworkPolicy> = input
                .policies
                .iter()
                .filter(|np| selects(np, pod) && has_type(np, dir))
                .collect();
            if selecting.is_empty() {
                continue;
            }
            let mut rules = Vec::new();
            for np in selecting {
                pod_rules(input, np, pod, dir, &mut rules);
            }
            rules.push("drop".into());
            let (chain, map) = match dir {
                Direction::Ingress => (format!("in-{}", pod.ip), POLICY_INGRESS),
                Direction::Egress => (format!("out-{}", pod.ip), POLICY_EGRESS),
            };
            rs.element(map, format!("{} : jump {chain}", pod.ip));
            rs.chain(&chain).rules = rules;
        }
    }
}

fn selects(np: &NetworkPolicy, pod: &PodInfo) -> bool {
    np.metadata.namespace.as_deref() == Some(pod.namespace.as_str())
        && np.spec.as_ref().is_some_and(|s| {
            s.pod_selector
                .as_ref()
                .is_none_or(|sel| selector_matches(sel, &pod.labels))
        })
}

fn has_type(np: &NetworkPolicy, dir: Direction) -> bool {
    let Some(spec) = &np.spec else {
        return false;
    };
    match &spec.policy_types {
        Some(types) => types.iter().any(|t| match dir {
            Direction::Ingress => t == "Ingress",
            Direction::Egress => t == "Egress",
        }),
        None => match dir {
            Direction::Ingress => true,
            Direction::Egress => spec.egress.is_some(),
        },
    }
}

/// Whether `labels` satisfy a LabelSelector (an empty selector matches all;
/// an unknown operator matches nothing, as the API server would reject it).
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let have = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// One rule's peers and ports.
type RulePair<'a> = (
    Option<&'a Vec<NetworkPolicyPeer>>,
    Option<&'a Vec<NetworkPolicyPort>>,
);

enum Peer<'a> {
    Any,
    Block { cidr: String, except: Vec<String> },
    Pods(Vec<&'a PodInfo>),
}

enum PortSpec {
    Number(Protocol, u16, Option<u16>),
    Named(Protocol, String),
}

fn pod_rules(
    input: &PolicyInput<'_>,
    np: &NetworkPolicy,
    pod: &PodInfo,
    dir: Direction,
    out: &mut Vec<String>,
) {
    let Some(spec) = &np.spec else {
        return;
    };
    let ns = np.metadata.namespace.as_deref().unwrap_or_default();
    let rules: Vec<RulePair<'_>> = match dir {
        Direction::Ingress => spec
            .ingress
            .iter()
            .flatten()
            .map(|r| (r.from.as_ref(), r.ports.as_ref()))
            .collect(),
        Direction::Egress => spec
            .egress
            .iter()
            .flatten()
            .map(|r| (r.to.as_ref(), r.ports.as_ref()))
            .collect(),
    };
    for (peers, ports) in rules {
        let peers: Vec<Peer<'_>> = match peers {
            None => vec![Peer::Any],
            Some(p) if p.is_empty() => vec![Peer::Any],
            Some(p) => p.iter().filter_map(|p| peer(input, ns, p)).collect(),
        };
        let ports: Vec<PortSpec> = ports.into_iter().flatten().filter_map(port_spec).collect();
        let field = dir.peer_field();
        for peer in &peers {
            if ports.is_empty() {
                if let Some(m) = peer_match(field, peer) {
                    out.push(join(&[&m, "return"]));
                }
                continue;
            }
            for port in &ports {
                match (port, dir) {
                    (PortSpec::Number(proto, p, end), _) => {
                        if let Some(m) = peer_match(field, peer) {
                            out.push(join(&[&m, &port_match(*proto, *p, *end), "return"]));
                        }
                    }
                    (PortSpec::Named(proto, name), Direction::Ingress) => {
                        // Resolved on the selected pod itself.
                        if let (Some(n), Some(m)) =
                            (named(pod, *proto, name), peer_match(field, peer))
                        {
                            out.push(join(&[&m, &port_match(*proto, n, None), "return"]));
                        }
                    }
                    (PortSpec::Named(proto, name), Direction::Egress) => {
                        // Resolved on each destination pod; an ipBlock has no
                        // pods to name ports on.
                        let candidates: Vec<&PodInfo> = match peer {
                            Peer::Any => input.pods.iter().collect(),
                            Peer::Pods(p) => p.clone(),
                            Peer::Block { .. } => Vec::new(),
                        };
                        for c in candidates {
                            if let Some(n) = named(c, *proto, name) {
                                out.push(join(&[
                                    &format!("{field} {}", c.ip),
                                    &port_match(*proto, n, None),
                                    "return",
                                ]));
                            }
                        }
                    }
                }
            }
        }
    }
}

fn join(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

fn named(pod: &PodInfo, proto: Protocol, name: &str) -> Option<u16> {
    pod.ports
        .iter()
        .find(|p| p.name == name && p.protocol == proto)
        .map(|p| p.port)
}

/// The match for a peer; `None` when it can match nothing (no pods).
fn peer_match(field: &str, peer: &Peer<'_>) -> Option<String> {
    match peer {
        Peer::Any => Some(String::new()),
        Peer::Block { cidr, except } if except.is_empty() => Some(format!("{field} {cidr}")),
        Peer::Block { cidr, except } => Some(format!(
            "{field} {cidr} {field} != {{ {} }}",
            except.join(", ")
        )),
        Peer::Pods(pods) if pods.is_empty() => None,
        Peer::Pods(pods) => {
            let mut ips: Vec<Ipv4Addr> = pods.iter().map(|p| p.ip).collect();
            ips.sort();
            ips.dedup();
            let ips: Vec<String> = ips.iter().map(Ipv4Addr::to_string).collect();
            Some(format!("{field} {{ {} }}", ips.join(", ")))
        }
    }
}

fn port_match(proto: Protocol, port: u16, end: Option<u16>) -> String {
    match end {
        Some(end) if end > port => format!("meta l4proto {} th dport {port}-{end}", proto.nft()),
        _ => format!("meta l4proto {} th dport {port}", proto.nft()),
    }
}

fn port_spec(p: &NetworkPolicyPort) -> Option<PortSpec> {
    let proto = Protocol::from_api(p.protocol.as_deref())?;
    Some(match &p.port {
        // A port entry with only a protocol: every port of that protocol.
        None => PortSpec::Number(proto, 0, Some(u16::MAX)),
        Some(IntOrString::Int(n)) => PortSpec::Number(
            proto,
            u16::try_from(*n).ok()?,
            p.end_port.and_then(|e| u16::try_from(e).ok()),
        ),
        Some(IntOrString::String(s)) => match s.parse::<u16>() {
            Ok(n) => PortSpec::Number(proto, n, None),
            Err(_) => PortSpec::Named(proto, s.clone()),
        },
    })
}

fn peer<'a>(input: &PolicyInput<'a>, ns: &str, p: &NetworkPolicyPeer) -> Option<Peer<'a>> {
    if let Some(block) = &p.ip_block {
        let cidr = Ipv4Cidr::parse(&block.cidr)?;
        let except = block
            .except
            .iter()
            .flatten()
            .filter_map(|e| Ipv4Cidr::parse(e))
            .map(|c| c.to_string())
            .collect();
        return Some(Peer::Block {
            cidr: cidr.to_string(),
            except,
        });
    }
    let empty = BTreeMap::new();
    let pods = input
        .pods
        .iter()
        .filter(|pod| {
            let ns_ok = match &p.namespace_selector {
                None => pod.namespace == ns,
                Some(sel) => {
                    let mut labels = input
                        .namespaces
                        .get(&pod.namespace)
                        .unwrap_or(&empty)
                        .clone();
                    labels
                        .entry(NAMESPACE_NAME_LABEL.to_string())
                        .or_insert_with(|| pod.namespace.clone());
                    selector_matches(sel, &labels)
                }
            };
            let pod_ok = p
                .pod_selector
                .as_ref()
                .is_none_or(|sel| selector_matches(sel, &pod.labels));
            ns_ok && pod_ok
        })
        .collect();
    Some(Peer::Pods(pods))
}

#[cfg(test)]
#[path = "policy_test.rs"]
mod tests;
