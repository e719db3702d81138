//! Host-gateway routing: a route to every other node's pod CIDR through that
//! node's InternalIP, so pods on different nodes reach each other by address
//! without NAT or encapsulation (flannel's `host-gw` backend, which needs the
//! nodes on one L2 segment).
//!
//! ```text
//!  nodes (API) ──► desired_routes ──┐
//!                                   ├─► plan ──► ip route replace/del … proto 83
//!  ip route show proto 83 ──► parse ┘
//! ```
//!
//! Every route Skiff adds carries its own routing-protocol number
//! ([`ROUTE_PROTOCOL`]), so the agent lists and removes exactly its own
//! routes and never touches others. Syncs are idempotent (`replace`).

use std::net::Ipv4Addr;
use std::process::Stdio;

use super::model::{Ipv4Cidr, NodeInfo};

/// The `proto` number tagging Skiff's routes (83 = 'S'; unassigned in
/// iproute2's `rt_protos`, which names 0–4 and routing daemons up to 192).
pub const ROUTE_PROTOCOL: u8 = 83;

/// One pod-network route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    /// The other node's pod CIDR.
    pub dst: Ipv4Cidr,
    /// The other node's address.
    pub via: Ipv4Addr,
}

/// A change to the routing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOp {
    /// `ip route replace DST via VIA proto 83`.
    Replace(Route),
    /// `ip route del DST proto 83`.
    Delete(Ipv4Cidr),
}

/// The routes this node needs: one per other node that has a pod CIDR and an
/// InternalIP. A node's own CIDR is on its bridge and needs no route; a CIDR
/// claimed twice keeps the first node by name (the API should never do that).
pub fn desired_routes(me: &str, nodes: &[NodeInfo]) -> Vec<Route> {
    let mine: Option<Ipv4Cidr> = nodes
        .iter()
        .find(|n| n.name == me)
        .and_then(|n| n.pod_cidr.as_deref())
        .and_then(Ipv4Cidr::parse);
    let mut sorted: Vec<&NodeInfo> = nodes.iter().filter(|n| n.name != me).collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out: Vec<Route> = Vec::new();
    for n in sorted {
        let (Some(dst), Some(via)) = (
            n.pod_cidr.as_deref().and_then(Ipv4Cidr::parse),
            n.internal_ip,
        ) else {
            continue;
        };
        if Some(dst) == mine || out.iter().any(|r| r.dst == dst) {
            continue;
        }
        out.push(Route { dst, via });
    }
    out.sort();
    out
}

/// Parses `ip -4 route show proto 83` output (`10.42.1.0/24 via 10.0.0.3 dev eth0 …`).
pub fn parse_routes(text: &str) -> Vec<Route> {
    let mut out: Vec<Route> = text
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let dst = Ipv4Cidr::parse(words.next()?)?;
            let mut via = None;
            while let Some(w) = words.next() {
                if w == "via" {
                    via = words.next().and_then(|v| v.parse().ok());
                }
            }
            Some(Route { dst, via: via? })
        })
        .collect();
    out.sort();
    out
}

/// The operations that turn `current` (our routes in the kernel) into `desired`.
pub fn plan(current: &[Route], desired: &[Route]) -> Vec<RouteOp> {
    let mut ops = Vec::new();
    for r in current {
        if !desired.iter().any(|d| d.dst == r.dst) {
            ops.push(RouteOp::Delete(r.dst));
        }
    }
    for d in desired {
        if !current.contains(d) {
            ops.push(RouteOp::Replace(*d));
        }
    }
    ops
}

/// Errors from the `ip` command.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// `ip` could not be run. Retryable only after installing iproute2.
    #[error("running ip: {0}")]
    Spawn(#[source] std::io::Error),
    /// `ip` failed (e.g. the gateway is not on a connected network yet).
    /// Retried at the next sync.
    #[error("ip {args}: {stderr}")]
    Failed {
        /// The arguments.
        args: String,
        /// What it printed.
        stderr: String,
    },
}

async fn ip(args: &[String]) -> Result<String, RouteError> {
    let out = tokio::process::Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(RouteError::Spawn)?;
    if !out.status.success() {
        return Err(RouteError::Failed {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Reads our routes from the kernel.
pub async fn current_routes() -> Result<Vec<Route>, RouteError> {
    let proto = ROUTE_PROTOCOL.to_string();
    let text = ip(&[
        "-4".into(),
        "route".into(),
        "show".into(),
        "proto".into(),
        proto,
    ])
    .await?;
    Ok(parse_routes(&text))
}

/// Applies `ops`; every op is attempted, the first error is returned.
pub async fn apply(ops: &[RouteOp]) -> Result<(), RouteError> {
    let proto = ROUTE_PROTOCOL.to_string();
    let mut first_err = None;
    for op in ops {
        let args: Vec<String> = match op {
            RouteOp::Replace(r) => vec![
                "route".into(),
                "replace".into(),
                r.dst.to_string(),
                "via".into(),
                r.via.to_string(),
                "proto".into(),
                proto.clone(),
            ],
            RouteOp::Delete(dst) => vec![
                "route".into(),
                "del".into(),
                dst.to_string(),
                "proto".into(),
                proto.clone(),
            ],
        };
        if let Err(e) = ip(&args).await {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Syncs our routes to `desired` and returns what changed.
pub async fn sync(desired: &[Route]) -> Result<Vec<RouteOp>, RouteError> {
    let current = current_routes().await?;
    let ops = plan(&current, desired);
    apply(&ops).await?;
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ip: Option<&str>, cidr: Option<&str>) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            internal_ip: ip.map(|i| i.parse().unwrap()),
            pod_cidr: cidr.map(str::to_string),
            ready: true,
        }
    }

    fn route(dst: &str, via: &str) -> Route {
        Route {
            dst: Ipv4Cidr::parse(dst).unwrap(),
            via: via.parse().unwrap(),
        }
    }

    #[test]
    fn routes_to_other_nodes_with_cidr_and_address() {
        let nodes = [
            node("a", Some("10.0.0.1"), Some("10.42.0.0/24")),
            node("b", Some("10.0.0.2"), Some("10.42.1.0/24")),
            node("c", None, Some("10.42.2.0/24")),
            node("d", Some("10.0.0.4"), None),
            node("e", Some("10.0.0.5"), Some("10.42.0.0/24")),
        ];
        assert_eq!(
            desired_routes("a", &nodes),
            [route("10.42.1.0/24", "10.0.0.2")]
        );
    }

    #[test]
    fn parse_and_plan_are_idempotent() {
        let text = "10.42.1.0/24 via 10.0.0.2 dev eth0 proto 83 \n10.42.2.0/24 via 10.0.0.9 dev eth0 proto 83\n";
        let current = parse_routes(text);
        assert_eq!(
            current,
            [
                route("10.42.1.0/24", "10.0.0.2"),
                route("10.42.2.0/24", "10.0.0.9")
            ]
        );
        let desired = [
            route("10.42.1.0/24", "10.0.0.2"),
            route("10.42.2.0/24", "10.0.0.3"),
            route("10.42.3.0/24", "10.0.0.4"),
        ];
        assert_eq!(
            plan(&current, &desired),
            [RouteOp::Replace(desired[1]), RouteOp::Replace(desired[2])]
        );
        assert_eq!(plan(&desired, &desired), []);
        assert_eq!(
            plan(&current, &[]),
            [
                RouteOp::Delete(current[0].dst),
                RouteOp::Delete(current[1].dst)
            ]
        );
    }
}
