//! The service proxy's rules: a pure function from service ports (with their
//! endpoints) and the cluster's pod CIDRs to nftables chains, sets and maps.
//! kube-proxy's nftables mode is the model, with its chain roles and names
//! shortened.
//!
//! ```text
//!  prerouting/output (nat, dstnat)
//!    └─ services: ip daddr . proto . port vmap @service-ips ──► svc-<key>
//!                 (local daddr) proto . port vmap @service-nodeports ──► ext-<key>
//!  ext-<key>   NodePort / LoadBalancer: mark for masquerade (Cluster policy),
//!              or only this node's endpoints, unmasqueraded (Local policy)
//!  svc-<key>   masquerade off-cluster sources; then one rule:
//!              dnat ip addr . port to numgen random mod N map { i : ip . port }
//!  with sessionAffinity: ClientIP, per endpoint instead (kube-proxy's layout):
//!    svc-<key>   affinity lookups; numgen random mod N vmap ──► sep-…
//!    sep-<key>__<ip>/<port>   affinity update; dnat
//!  postrouting (nat, srcnat): masquerade marked packets and hairpin
//!              (ip saddr . ip daddr @hairpin after DNAT); masquerade pod
//!              traffic leaving the pod network (like flannel's ipMasq)
//!  forward/output (filter): reject service ports without endpoints
//! ```
//!
//! Load is spread with `numgen random mod N` (each new connection picks an
//! endpoint uniformly; conntrack keeps the choice for the connection's life).
//! Without affinity the pick is a map lookup inside one DNAT rule, so a
//! service costs one chain of two rules whatever its endpoint count: the
//! whole table and every delta stay small (a per-endpoint chain layout
//! made 1,000 × 10 services 11,000 chains). Hairpin traffic (a pod reaching
//! itself through its service) is then recognised after DNAT, in
//! postrouting, by source equal to destination (the `@hairpin` set of
//! `ip . ip` pairs of every endpoint).
//! `sessionAffinity: ClientIP` keeps one dynamic set per endpoint holding the
//! client addresses recently sent there (`update @aff… { ip saddr }`, with the
//! Service's timeout), checked before the random pick; this needs a chain per
//! endpoint.

use std::net::Ipv4Addr;

use super::model::{Endpoint, Ipv4Cidr, ServicePort};
use super::ruleset::Ruleset;

/// Packet mark bit meaning "masquerade this in postrouting" (kube-proxy's
/// `0x4000`, so the two never disagree on a node that has both).
pub const MASQUERADE_MARK: u32 = 0x4000;

/// Names of the shared chains, sets and maps.
pub mod names {
    /// nat prerouting base chain.
    pub const NAT_PREROUTING: &str = "nat-prerouting";
    /// nat output base chain (host processes reaching services).
    pub const NAT_OUTPUT: &str = "nat-output";
    /// nat postrouting base chain.
    pub const NAT_POSTROUTING: &str = "nat-postrouting";
    /// Dispatch to services (jumped to from prerouting and output).
    pub const SERVICES: &str = "services";
    /// Sets the masquerade mark.
    pub const MARK_FOR_MASQUERADE: &str = "mark-for-masquerade";
    /// filter forward base chain (services without endpoints, policy).
    pub const FILTER_FORWARD: &str = "filter-forward";
    /// filter output base chain (services without endpoints).
    pub const FILTER_OUTPUT: &str = "filter-output";
    /// filter input base chain (NodePorts without endpoints).
    pub const FILTER_INPUT: &str = "filter-input";
    /// Set of every node's pod CIDR.
    pub const POD_CIDRS: &str = "pod-cidrs";
    /// Map `ip . proto . port : verdict` for ClusterIPs and LB IPs.
    pub const SERVICE_IPS: &str = "service-ips";
    /// Map `proto . port : verdict` for NodePorts.
    pub const SERVICE_NODEPORTS: &str = "service-nodeports";
    /// Set of ClusterIP ports with no endpoints (rejected).
    pub const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
    /// Set of NodePorts with no endpoints (rejected).
    pub const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
    /// Set of `ip . ip` pairs, one per endpoint address: a DNATed packet
    /// whose source equals its destination is hairpin traffic.
    pub const HAIRPIN: &str = "hairpin";
}

use names::*;

/// What the proxy renders from.
#[derive(Debug, Clone, Copy)]
pub struct ProxyInput<'a> {
    /// This node's name (for `externalTrafficPolicy: Local`).
    pub node_name: &'a str,
    /// This node's CNI bridge: pod traffic leaving through any other
    /// interface to a non-pod address is masqueraded.
    pub bridge: &'a str,
    /// Every node's pod CIDR (the cluster's pod network).
    pub pod_cidrs: &'a [Ipv4Cidr],
    /// The service ports to program.
    pub services: &'a [ServicePort],
}

/// Adds the proxy's chains, sets and maps to `rs`.
pub fn render(input: &ProxyInput<'_>, rs: &mut Ruleset) {
    base(input, rs);
    for sp in input.services {
        service(input, sp, rs);
    }
    // Endpoints shared by services appear once.
    if let Some(hairpin) = rs.sets.get_mut(HAIRPIN) {
        hairpin.elements.sort();
        hairpin.elements.dedup();
    }
}

fn base(input: &ProxyInput<'_>, rs: &mut Ruleset) {
    rs.declare(
        POD_CIDRS,
        false,
        "type ipv4_addr; flags interval; auto-merge;",
        false,
    );
    for c in input.pod_cidrs {
        rs.element(POD_CIDRS, c.to_string());
    }
    rs.declare(
        SERVICE_IPS,
        true,
        "type ipv4_addr . inet_proto . inet_service : verdict;",
        false,
    );
    rs.declare(
        SERVICE_NODEPORTS,
        true,
        "type inet_proto . inet_service : verdict;",
        false,
    );
    rs.declare(
        NO_ENDPOINT_SERVICES,
        false,
        "type ipv4_addr . inet_proto . inet_service;",
        false,
    );
    rs.declare(
        NO_ENDPOINT_NODEPORTS,
        false,
        "type inet_proto . inet_service;",
        false,
    );
    rs.declare(HAIRPIN, false, "type ipv4_addr . ipv4_addr;", false);

    rs.base_chain(
        NAT_PREROUTING,
        "type nat hook prerouting priority dstnat; policy accept;",
    )
    .rules
    .push(format!("jump {SERVICES}"));
    rs.base_chain(
        NAT_OUTPUT,
        "type nat hook output priority -100; policy accept;",
    )
    .rules
    .push(format!("jump {SERVICES}"));
    let svc = rs.chain(SERVICES);
    svc.rules.push(format!(
        "ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}"
    ));
    // NodePorts answer on the node's own addresses (not loopback: DNAT of
    // 127.0.0.1 would need route_localnet).
    svc.rules.push(format!(
        "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @{SERVICE_NODEPORTS}"
    ));
    rs.chain(MARK_FOR_MASQUERADE)
        .rules
        .push(format!("meta mark set meta mark | {MASQUERADE_MARK:#x}"));
    let post = rs.base_chain(
        NAT_POSTROUTING,
        "type nat hook postrouting priority srcnat; policy accept;",
    );
    post.rules.push(format!(
        "meta mark & {MASQUERADE_MARK:#x} == {MASQUERADE_MARK:#x} meta mark set meta mark ^ {MASQUERADE_MARK:#x} masquerade fully-random"
    ));
    // Hairpin: a pod reaching itself through its service must see a source
    // other than its own address, or its reply would skip conntrack's
    // reverse NAT.
    post.rules.push(format!(
        "ct status dnat ip saddr . ip daddr @{HAIRPIN} masquerade fully-random"
    ));
    post.rules.push(format!(
        "ip saddr @{POD_CIDRS} ip daddr != @{POD_CIDRS} oifname != \"{}\" masquerade fully-random",
        input.bridge
    ));

    let fwd = rs.base_chain(
        FILTER_FORWARD,
        "type filter hook forward priority filter; policy accept;",
    );
    fwd.rules.push("ct state established,related accept".into());
    fwd.rules.push(format!(
        "ip daddr . meta l4proto . th dport @{NO_ENDPOINT_SERVICES} reject"
    ));
    rs.base_chain(
        FILTER_OUTPUT,
        "type filter hook output priority filter; policy accept;",
    )
    .rules
    .push(format!(
        "ip daddr . meta l4proto . th dport @{NO_ENDPOINT_SERVICES} reject"
    ));
    rs.base_chain(
        FILTER_INPUT,
        "type filter hook input priority filter; policy accept;",
    )
    .rules
    .push(format!(
        "fib daddr type local meta l4proto . th dport @{NO_ENDPOINT_NODEPORTS} reject"
    ));
}

/// `svc-<key>`: the cluster-wide chain of a service port.
pub fn svc_chain(sp: &ServicePort) -> String {
    format!("svc-{}", sp.key())
}

/// `ext-<key>`: the chain for NodePort and load-balancer traffic.
pub fn ext_chain(sp: &ServicePort) -> String {
    format!("ext-{}", sp.key())
}

/// `sep-<key>__<ip>/<port>`: one endpoint's DNAT chain (affinity services
/// only; the others DNAT in their `svc-` chain).
pub fn sep_chain(sp: &ServicePort, ep: &Endpoint) -> String {
    format!("sep-{}__{}/{}", sp.key(), ep.ip, ep.port)
}

/// `aff-<key>__<ip>/<port>`: the clients recently sent to one endpoint.
pub fn affinity_set(sp: &ServicePort, ep: &Endpoint) -> String {
    format!("aff-{}__{}/{}", sp.key(), ep.ip, ep.port)
}

fn service(input: &ProxyInput<'_>, sp: &ServicePort, rs: &mut Ruleset) {
    let proto = sp.protocol.nft();
    if sp.endpoints.is_empty() {
        // kube-proxy answers with an ICMP reject rather than letting the
        // client time out.
        rs.element(
            NO_ENDPOINT_SERVICES,
            format!("{} . {proto} . {}", sp.cluster_ip, sp.port),
        );
        for ip in &sp.load_balancer_ips {
            rs.element(
                NO_ENDPOINT_SERVICES,
                format!("{ip} . {proto} . {}", sp.port),
            );
        }
        if let Some(np) = sp.node_port {
            rs.element(NO_ENDPOINT_NODEPORTS, format!("{proto} . {np}"));
        }
        return;
    }
    let svc = svc_chain(sp);
    rs.element(
        SERVICE_IPS,
        format!("{} . {proto} . {} : goto {svc}", sp.cluster_ip, sp.port),
    );

    for ep in &sp.endpoints {
        rs.element(HAIRPIN, format!("{} . {}", ep.ip, ep.ip));
        let Some(timeout) = sp.affinity_timeout else {
            continue;
        };
        let set = affinity_set(sp, ep);
        rs.declare(
            &set,
            false,
            &format!("type ipv4_addr; flags dynamic,timeout; timeout {timeout}s;"),
            true,
        );
        rs.chain(&sep_chain(sp, ep)).rules = vec![
            format!("update @{set} {{ ip saddr }}"),
            format!("meta l4proto {proto} dnat to {}:{}", ep.ip, ep.port),
        ];
    }

    let mut rules = vec![
        // Traffic from outside the pod network (the node itself, other
        // hosts) is masqueraded so replies come back through this node.
        format!("ip saddr != @{POD_CIDRS} jump {MARK_FOR_MASQUERADE}"),
    ];
    pick_endpoint(sp, sp.endpoints.iter(), &mut rules);
    rs.chain(&svc).rules = rules;

    let external = sp.node_port.is_some() || !sp.load_balancer_ips.is_empty();
    if !external {
        return;
    }
    let ext = ext_chain(sp);
    if let Some(np) = sp.node_port {
        rs.element(SERVICE_NODEPORTS, format!("{proto} . {np} : goto {ext}"));
    }
    for ip in &sp.load_balancer_ips {
        rs.element(
            SERVICE_IPS,
            format!("{ip} . {proto} . {} : goto {ext}", sp.port),
        );
    }
    let mut rules = Vec::new();
    if sp.external_local {
        // Pods and the node itself use the cluster-wide chain (kube-proxy's
        // short-circuit); only traffic from outside is kept on this node.
        rules.push(format!("ip saddr @{POD_CIDRS} goto {svc}"));
        rules.push(format!("fib saddr type local jump {MARK_FOR_MASQUERADE}"));
        rules.push(format!("fib saddr type local goto {svc}"));
        let local: Vec<&Endpoint> = sp
            .endpoints
            .iter()
            .filter(|e| e.node.as_deref() == Some(input.node_name))
            .collect();
        if local.is_empty() {
            rules.push("drop".into());
        } else {
            pick_endpoint(sp, local.into_iter(), &mut rules);
        }
    } else {
        rules.push(format!("jump {MARK_FOR_MASQUERADE}"));
        rules.push(format!("goto {svc}"));
    }
    rs.chain(&ext).rules = rules;
}

/// A uniform random pick among `eps`: one DNAT rule, or with affinity the
/// affinity lookups and a jump to the chosen endpoint's chain.
fn pick_endpoint<'a>(
    sp: &ServicePort,
    eps: impl Iterator<Item = &'a Endpoint> + Clone,
    rules: &mut Vec<String>,
) {
    let proto = sp.protocol.nft();
    if sp.affinity_timeout.is_none() {
        let targets: Vec<&Endpoint> = eps.collect();
        match targets.as_slice() {
            [] => rules.push("drop".into()),
            [one] => rules.push(format!(
                "meta l4proto {proto} dnat to {}:{}",
                one.ip, one.port
            )),
            many => {
                let arms: Vec<String> = many
                    .iter()
                    .enumerate()
                    .map(|(i, ep)| format!("{i} : {} . {}", ep.ip, ep.port))
                    .collect();
                rules.push(format!(
                    "meta l4proto {proto} dnat ip addr . port to numgen random mod {} map {{ {} }}",
                    many.len(),
                    arms.join(", ")
                ));
            }
        }
        return;
    }
    for ep in eps.clone() {
        rules.push(format!(
            "ip saddr @{} goto {}",
            affinity_set(sp, ep),
            sep_chain(sp, ep)
        ));
    }
    let chains: Vec<String> = eps.map(|ep| sep_chain(sp, ep)).collect();
    match chains.as_slice() {
        [] => rules.push("drop".into()),
        [one] => rules.push(format!("goto {one}")),
        many => {
            let arms: Vec<String> = many
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{i} : goto {c}"))
                .collect();
            rules.push(format!(
                "numgen random mod {} vmap {{ {} }}",
                many.len(),
                arms.join(", ")
            ));
        }
    }
}

/// The pod CIDRs of `nodes` that parse as IPv4 (sorted, deduplicated).
pub fn pod_cidrs<'a>(cidrs: impl Iterator<Item = &'a str>) -> Vec<Ipv4Cidr> {
    let mut out: Vec<Ipv4Cidr> = cidrs.filter_map(Ipv4Cidr::parse).collect();
    out.sort();
    out.dedup();
    out
}

/// Whether `ip` is in one of `cidrs`.
pub fn in_any(cidrs: &[Ipv4Cidr], ip: Ipv4Addr) -> bool {
    cidrs.iter().any(|c| c.contains(ip))
}

#[cfg(test)]
#[path = "proxy_test.rs"]
mod tests;
