//! The DNS server's sockets: one UDP socket and one TCP listener on the
//! same address, each query answered from the [`Cluster`] or forwarded.
//!
//! The sockets are bound with `IP_FREEBIND`, so the agent can bind the pod
//! bridge's gateway address before the CNI bridge plugin has created the
//! bridge and put the address on it (the first pod sandbox does that).

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

use crate::cluster::{Cluster, Resolution};
use crate::forward::{forward_tcp, forward_udp};
use crate::wire::{self, Rcode, CLASS_IN};

/// The largest UDP answer without EDNS0 (RFC 1035 §4.2.1).
pub const UDP_LIMIT: usize = 512;
/// The largest UDP answer with EDNS0 (the 2020 DNS flag day's 1232 bytes).
pub const EDNS_LIMIT: usize = 1232;
/// How long an idle TCP client may keep its connection.
pub const TCP_IDLE: Duration = Duration::from_secs(10);
/// At most this many queries are in flight at once (forwarding holds a
/// task per query; the bound keeps memory flat under a flood).
pub const MAX_IN_FLIGHT: usize = 256;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// Binding a socket failed (address in use, no permission for :53).
    #[error("DNS: binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What the server does with one query.
#[derive(Debug, PartialEq, Eq)]
pub enum Handled {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Not a cluster name: forward the raw query.
    Forward,
}

/// Answers one raw query from `cluster` (pure; `limit` is the transport's
/// size limit, UDP answers over it are truncated with TC).
pub fn handle(cluster: &Cluster, raw: &[u8], udp: bool) -> Handled {
    let q = match wire::parse_query(raw) {
        Ok(q) => q,
        Err(_) => return Handled::Reply(wire::error_response(raw, None, Rcode::FormErr)),
    };
    if q.opcode != 0 {
        return Handled::Reply(wire::error_response(raw, Some(&q), Rcode::NotImp));
    }
    let limit = match (udp, q.edns_udp_size) {
        (false, _) => usize::from(u16::MAX),
        (true, None) => UDP_LIMIT,
        (true, Some(n)) => usize::from(n).clamp(UDP_LIMIT, EDNS_LIMIT),
    };
    if q.qclass != CLASS_IN {
        return Handled::Forward;
    }
    match cluster.resolve(&q.name, q.qtype) {
        Resolution::Forward => Handled::Forward,
        Resolution::NxDomain => {
            let a = wire::Answer {
                authority: vec![cluster.soa()],
                ..Default::default()
            };
            Handled::Reply(wire::build_response(&q, Rcode::NxDomain, &a, limit))
        }
        Resolution::Answer(a) => {
            Handled::Reply(wire::build_response(&q, Rcode::NoError, &a, limit))
        }
    }
}

fn freebind_socket(addr: SocketAddr, ty: socket2::Type) -> std::io::Result<socket2::Socket> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, ty, None)?;
    if addr.is_ipv4() {
        s.set_freebind_v4(true)?;
    } else {
        s.set_freebind_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}

/// Binds UDP and TCP on `listen`. With port 0, TCP takes the port the
/// kernel picked for UDP, so both answer alike; another process may hold
/// that TCP port, so a few picks are tried before giving up.
fn bind_pair(listen: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    const PICKS: usize = 16;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let udp = freebind_socket(listen, socket2::Type::DGRAM)?;
        let udp = UdpSocket::from_std(udp.into())?;
        let tcp_listen = SocketAddr::new(listen.ip(), udp.local_addr()?.port());
        let tcp = freebind_socket(tcp_listen, socket2::Type::STREAM).and_then(|tcp| {
            tcp.listen(128)?;
            TcpListener::from_std(tcp.into())
        });
        match tcp {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && listen.port() == 0
                    && attempt < PICKS => {}
            Err(e) => return Err(e),
        }
    }
}

/// A running DNS server.
pub struct DnsServer {
    udp_addr: SocketAddr,
    tcp_addr: SocketAddr,
    tasks: JoinSet<()>,
}

impl DnsServer {
    /// Binds `listen` (UDP and TCP; port 0 picks one port free for both)
    /// and serves `cluster`, forwarding other
    /// names to `upstreams`.
    pub async fn start(
        listen: SocketAddr,
        cluster: Arc<RwLock<Cluster>>,
        upstreams: Vec<SocketAddr>,
    ) -> Result<DnsServer, DnsError> {
        let bind_err = |source| DnsError::Bind {
            addr: listen,
            source,
        };
        let (udp, tcp) = bind_pair(listen).map_err(bind_err)?;
        let udp_addr = udp.local_addr().map_err(bind_err)?;
        let tcp_addr = tcp.local_addr().map_err(bind_err)?;
        let upstreams = Arc::new(upstreams);
        let mut tasks = JoinSet::new();
        tasks.spawn(serve_udp(Arc::new(udp), cluster.clone(), upstreams.clone()));
        tasks.spawn(serve_tcp(tcp, cluster, upstreams));
        tracing::info!(%udp_addr, "cluster DNS listening (UDP and TCP)");
        Ok(DnsServer {
            udp_addr,
            tcp_addr,
            tasks,
        })
    }

    /// The bound UDP address.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// The bound TCP address.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// Stops serving.
    pub fn stop(mut self) {
        self.tasks.abort_all();
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

async fn serve_udp(
    sock: Arc<UdpSocket>,
    cluster: Arc<RwLock<Cluster>>,
    upstreams: Arc<Vec<SocketAddr>>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "DNS recv failed");
                continue;
            }
        };
        let raw = &buf[..n];
        let handled = {
            let c = cluster.read().unwrap_or_else(|e| e.into_inner());
            handle(&c, raw, true)
        };
        match handled {
            Handled::Reply(r) => {
                let _ = sock.send_to(&r, peer).await;
            }
            Handled::Forward => {
                // Over the bound: drop the query, the client retries.
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    continue;
                };
                let (sock, ups, raw) = (sock.clone(), upstreams.clone(), raw.to_vec());
                tokio::spawn(async move {
                    let reply = forward_udp(&ups, &raw)
                        .await
                        .unwrap_or_else(|| servfail(&raw));
                    let _ = sock.send_to(&reply, peer).await;
                    drop(permit);
                });
            }
        }
    }
}

fn servfail(raw: &[u8]) -> Vec<u8> {
    let q = wire::parse_query(raw).ok();
    wire::error_response(raw, q.as_ref(), Rcode::ServFail)
}

async fn serve_tcp(
    listener: TcpListener,
    cluster: Arc<RwLock<Cluster>>,
    upstreams: Arc<Vec<SocketAddr>>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue;
        };
        let (cluster, ups) = (cluster.clone(), upstreams.clone());
        tokio::spawn(async move {
            let _ = tokio::time::timeout(TCP_IDLE * 6, tcp_conn(stream, cluster, ups)).await;
            drop(permit);
        });
    }
}

async fn tcp_conn(mut s: TcpStream, cluster: Arc<RwLock<Cluster>>, ups: Arc<Vec<SocketAddr>>) {
    loop {
        let Ok(Ok(len)) = tokio::time::timeout(TCP_IDLE, s.read_u16()).await else {
            return;
        };
        let mut raw = vec![0u8; usize::from(len)];
        if s.read_exact(&mut raw).await.is_err() {
            return;
        }
        let handled = {
            let c = cluster.read().unwrap_or_else(|e| e.into_inner());
            handle(&c, &raw, false)
        };
        let reply = match handled {
            Handled::Reply(r) => r,
            Handled::Forward => forward_tcp(&ups, &raw)
                .await
                .unwrap_or_else(|| servfail(&raw)),
        };
        let mut msg = (reply.len() as u16).to_be_bytes().to_vec();
        msg.extend_from_slice(&reply);
        if s.write_all(&msg).await.is_err() {
            return;
        }
    }
}
