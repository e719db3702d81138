//! The node's networking: host-gateway routes between nodes' pod CIDRs, the
//! service proxy and NetworkPolicy, all programmed from the API by one loop.
//!
//! ```text
//!   API (watch) ─► sync.rs ─┬─► routes.rs  ip route replace/del … proto 83
//!                           │
//!                           ├─► model.rs   Service+EndpointSlice → ServicePort
//!                           ├─► proxy.rs   ServicePort → chains/maps  ┐ pure
//!                           ├─► policy.rs  NetworkPolicy → chains     ┘
//!                           └─► ruleset.rs the table as data
//!                                 └─► delta.rs old → new ─► nft.rs (nft -f -)
//! ```
//!
//! | module | role |
//! | --- | --- |
//! | [`model`] | plain data taken from API objects (kube-proxy's endpoint rules) |
//! | [`proxy`] | ClusterIP, NodePort, LoadBalancer, affinity, hairpin, masquerade |
//! | [`policy`] | NetworkPolicy ingress/egress chains per local pod |
//! | [`ruleset`] | the table as data; the full-rewrite transaction |
//! | [`delta`] | what changed between two rulesets; the incremental transaction |
//! | [`nft`] | runs `nft -f -`: a delta, or the whole table when it must |
//! | [`routes`] | host-gateway routes to other nodes' pod CIDRs |
//! | [`sync`] | the watch → render → apply loop, LoadBalancer status |
//! | [`bench`](mod@bench) | `skiff bench proxy`: sync time, full and delta |
//! | [`bench_tcp`] | `skiff bench proxy --throughput`: ClusterIP vs pod IP |
//!
//! # Contracts
//! - Skiff owns the nftables table `ip skiff` (`ip skiff-<bridge>` for a
//!   non-default CNI bridge, so test clusters sharing a namespace stay apart)
//!   and nothing else; every sync changes it in one `nft -f -` transaction
//!   (the whole table at start, only the changes after). Its routes carry
//!   `proto 83` ([`routes::ROUTE_PROTOCOL`]); no other route is touched.
//! - Services: ClusterIP (`spec.clusterIP`), NodePort on the node's own
//!   addresses, `status.loadBalancer.ingress[].ip` on the service port,
//!   endpoints from `discovery.k8s.io/v1` EndpointSlices labelled
//!   `kubernetes.io/service-name`.
//! - The agent sets `net.ipv4.ip_forward=1` and
//!   `net.bridge.bridge-nf-call-iptables=1` in its network namespace.
//!
//! # Caveats (what kube-proxy and CNI plugins do that Skiff does not, yet)
//! - IPv4 only; no `externalIPs`, `internalTrafficPolicy`, topology hints,
//!   `healthCheckNodePort`, or the legacy Endpoints API.
//! - Host-gateway routing needs every node on one L2 segment (no overlay).
//! - NodePorts answer on the node's addresses, not on 127.0.0.1.
//! - Pod traffic to a non-pod address leaving through a non-bridge
//!   interface is masqueraded (flannel's `ipMasq`), so a pod reaching another
//!   node's NodePort with `externalTrafficPolicy: Local` shows the node's
//!   address, not the pod's.
//! - Deltas are computed per chain and per set element; a changed chain is
//!   flushed and refilled whole (kube-proxy does the same). A table edited
//!   by hand is repaired at the next failed delta or the hourly full sync.
//! - The table and routes stay when the agent stops.

pub mod bench;
pub mod bench_tcp;
pub mod delta;
pub mod model;
pub mod nft;
pub mod policy;
pub mod proxy;
pub mod routes;
pub mod ruleset;
pub mod sync;
mod sysctl;

pub use sync::{run, NetConfig};
