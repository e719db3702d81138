//! Skiff's cluster DNS: answers `<svc>.<ns>.svc.cluster.local` and the
//! other Kubernetes DNS names from Services and EndpointSlices, and
//! forwards every other name to the host's resolvers.
//!
//! ```text
//!  pod ──UDP/TCP :53──> DnsServer (server.rs, on the node's bridge gateway)
//!                          │ parse (wire.rs)
//!                          ├─ cluster name ─> Cluster::resolve (cluster.rs, pure)
//!                          └─ other name ───> host resolvers (forward.rs)
//!  API server ──watch Services, EndpointSlices──> watch.rs ──> Cluster
//! ```
//!
//! # Design
//! - **Node-local, inside the agent.** Each agent runs one server bound to
//!   its pod bridge's gateway (the `.1` of the node's pod CIDR), port 53,
//!   and hands that address to pods through the CRI sandbox `DNSConfig`
//!   (search `<ns>.svc.<domain> svc.<domain> <domain>`, `ndots:5`) for
//!   `dnsPolicy: ClusterFirst`. Pods reach it over their own bridge, so
//!   DNS works without a service proxy and without a `kube-dns` Service,
//!   and a node's lookups never leave it (like NodeLocal DNSCache). No
//!   `kube-system/kube-dns` Service is created: there is no single DNS
//!   address to publish, since every node answers on its own gateway.
//! - **Its own codec, not hickory.** The server needs a question parser
//!   and five record types; a few hundred lines ([`wire`]) keep the agent
//!   small. Answers are authoritative (AA), TTL 5 s, negative answers
//!   carry an SOA (RFC 2308).
//! - **Memory** is one small entry per Service and per EndpointSlice
//!   (names, IPs, named ports), not the full objects; forwarding holds at
//!   most [`server::MAX_IN_FLIGHT`] queries.
//!
//! # Caveats (what CoreDNS does that Skiff does not)
//! - IPv4 only (AAAA answers are empty); no PTR records for cluster IPs
//!   (reverse lookups are forwarded); no wildcard queries; pod records are
//!   answered for any well-formed `a-b-c-d` name (`pods insecure`).
//! - No answer cache for forwarded names, no DNSSEC, no zone transfers.
//! - Loopback upstreams (systemd-resolved's stub) are used as is: the
//!   server runs in the host's network namespace where they answer; only
//!   the server's own address is skipped.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod cluster;
pub mod forward;
pub mod server;
pub mod watch;
pub mod wire;

pub use cluster::Cluster;
pub use server::{DnsError, DnsServer};

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

/// Starts a DNS server on `listen` for `domain`, fed by watches through
/// `client`, forwarding to the resolvers of `/etc/resolv.conf`. The
/// watches stop when the returned server is dropped or stopped.
pub async fn start(
    client: kube::Client,
    listen: SocketAddr,
    domain: &str,
) -> Result<(DnsServer, tokio::task::JoinHandle<()>), DnsError> {
    let cluster = Arc::new(RwLock::new(Cluster::new(domain)));
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let upstreams = forward::upstreams_from_resolv_conf(&resolv, listen.ip());
    let server = DnsServer::start(listen, cluster.clone(), upstreams).await?;
    let watches = tokio::spawn(watch::watch_cluster(client, cluster));
    Ok((server, watches))
}
