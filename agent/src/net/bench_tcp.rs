//! `skiff bench proxy --throughput`: what a ClusterIP costs a TCP flow
//! compared with the pod IP directly — one bulk stream (Gbit/s) and many
//! short request/response connections (connections/s) — on three network
//! namespaces of its own, so no cluster is needed.
//!
//! ```text
//!  sknp-c-<pid>              sknp-r-<pid>                 sknp-b-<pid>
//!  client ── 10.195.1.0/24 ── router (forwarding; the ── 10.195.2.0/24 ── sink :8080
//!  10.195.1.2 (direct)        proxy's table, like a node)   10.195.2.2/.3  echo :8081
//!  10.195.1.3 (ClusterIP)
//!
//!  direct:    client → 10.195.2.2:8080 / :8081
//!  ClusterIP: client → 10.195.128.1:80 / :81, DNAT in the router's prerouting
//!             to one of the two endpoints 10.195.2.2 and 10.195.2.3
//! ```
//!
//! Before measuring, the backend calls itself through a third service port
//! whose one endpoint it is: hairpin traffic must be masqueraded, or the
//! connection fails and so does the benchmark.
//!
//! The router holds the table the real renderer makes for the bench
//! services plus a filler of synthetic services (1,000 × 10 by default), so
//! lookups run against a realistically sized map; both paths cross the same
//! router, hooks and conntrack, and differ only in the DNAT. The client and
//! the servers are threads of this process moved into their namespaces
//! (`setns`), with tokio runtimes of their own. Each run measures the pod
//! IP and the ClusterIP back to back; rates are medians over runs, the
//! overhead the median of the per-run ratios (many short runs, e.g.
//! `--runs 15 --seconds 0.5`, cancel a drifting machine load best). Nothing
//! is asserted.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::bench::{render, synthetic_services, BenchError, Netns};
use super::model::{Endpoint, Protocol, ServicePort};
use super::nft;
use super::ruleset::Ruleset;

/// The backend pod's address (the pod IP of the direct path).
const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 195, 2, 2);
/// A second address of the backend, so the service has two endpoints and
/// the ClusterIP path does the random pick of real services.
const BACKEND_2: Ipv4Addr = Ipv4Addr::new(10, 195, 2, 3);
/// The bench service's ClusterIP.
const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 195, 128, 1);
/// Backend ports: a sink for the bulk stream, and a one-reply server.
const SINK_PORT: u16 = 8080;
const ECHO_PORT: u16 = 8081;
/// A service port whose one endpoint is the backend itself, which calls it
/// before measuring: hairpin traffic must come back masqueraded.
const HAIRPIN_PORT: u16 = 82;
/// The client's source address for direct connections, and for
/// connections through the ClusterIP. Two addresses, because the echo
/// server closes first and so keeps each connection in TIME_WAIT: a client
/// port reused through the ClusterIP would meet the TIME_WAIT of a direct
/// connection with the same 4-tuple at the backend, whose timestamps and
/// sequence numbers come from another (client, destination) pair, and its
/// SYN would be dropped until a 1 s retransmit — a cost of mixing the two
/// paths in one bench, not of the ClusterIP.
const CLIENT_DIRECT: Ipv4Addr = Ipv4Addr::new(10, 195, 1, 2);
const CLIENT_VIA_SERVICE: Ipv4Addr = Ipv4Addr::new(10, 195, 1, 3);
/// Concurrent clients in the short-connection test.
const SHORT_CONNECTION_CLIENTS: usize = 16;
/// Write size of the bulk stream.
const STREAM_CHUNK_BYTES: usize = 256 * 1024;

/// What to measure.
#[derive(Debug, Clone, Copy)]
pub struct ThroughputBench {
    /// Filler services in the router's table.
    pub services: usize,
    /// Endpoints per filler service.
    pub endpoints: usize,
    /// Repetitions (medians reported).
    pub runs: usize,
    /// Length of each measurement.
    pub seconds: f64,
}

/// The three namespaces, removed (with their veths, rules and sockets) on drop.
struct Topology {
    client: Netns,
    router: Netns,
    backend: Netns,
}

impl Topology {
    fn build() -> Result<Topology, BenchError> {
        let pid = std::process::id();
        let topo = Topology {
            client: Netns::add(&format!("sknp-c-{pid}"))?,
            router: Netns::add(&format!("sknp-r-{pid}"))?,
            backend: Netns::add(&format!("sknp-b-{pid}"))?,
        };
        let (c, r, b) = (&topo.client.0, &topo.router.0, &topo.backend.0);
        // Device names stay under IFNAMSIZ (15): sknp + side + pid.
        let (cr, rc, rb, br) = (
            format!("sknpcr{pid}"),
            format!("sknprc{pid}"),
            format!("sknprb{pid}"),
            format!("sknpbr{pid}"),
        );
        super::bench::command(
            "ip",
            &[
                "link", "add", &cr, "netns", c, "type", "veth", "peer", "name", &rc, "netns", r,
            ],
        )?;
        super::bench::command(
            "ip",
            &[
                "link", "add", &rb, "netns", r, "type", "veth", "peer", "name", &br, "netns", b,
            ],
        )?;
        for (ns, dev, addr) in [
            (&topo.client, &cr, "10.195.1.2/24"),
            (&topo.router, &rc, "10.195.1.1/24"),
            (&topo.router, &rb, "10.195.2.1/24"),
            (&topo.backend, &br, "10.195.2.2/24"),
        ] {
            ns.ip(&["addr", "add", addr, "dev", dev])?;
            ns.ip(&["link", "set", dev, "up"])?;
        }
        for ns in [&topo.client, &topo.router, &topo.backend] {
            ns.ip(&["link", "set", "lo", "up"])?;
        }
        topo.backend
            .ip(&["addr", "add", "10.195.2.3/24", "dev", &br])?;
        topo.client
            .ip(&["addr", "add", "10.195.1.3/24", "dev", &cr])?;
        topo.client
            .ip(&["route", "add", "default", "via", "10.195.1.1"])?;
        topo.backend
            .ip(&["route", "add", "default", "via", "10.195.2.1"])?;
        topo.router.sysctl("net.ipv4.ip_forward=1")?;
        // Short connections come fast; give the client room for ports.
        topo.client
            .sysctl("net.ipv4.ip_local_port_range=10000 65000")?;
        Ok(topo)
    }
}

/// The two bench services (bulk on :80, short connections on :81) on
/// top of `filler` synthetic ones, rendered as a node would.
fn rules(bench: &ThroughputBench) -> Ruleset {
    let mut services = synthetic_services(bench.services, bench.endpoints);
    for (port, target) in [(80, SINK_PORT), (81, ECHO_PORT), (HAIRPIN_PORT, ECHO_PORT)] {
        let endpoints: &[Ipv4Addr] = if port == HAIRPIN_PORT {
            &[BACKEND]
        } else {
            &[BACKEND, BACKEND_2]
        };
        services.push(ServicePort {
            namespace: "bench".into(),
            name: "throughput".into(),
            port_name: format!("p{port}"),
            protocol: Protocol::Tcp,
            cluster_ip: CLUSTER_IP,
            port,
            node_port: None,
            load_balancer_ips: Vec::new(),
            external_local: false,
            affinity_timeout: None,
            endpoints: endpoints
                .iter()
                .map(|&ip| Endpoint {
                    ip,
                    port: target,
                    node: Some("node-0".into()),
                })
                .collect(),
        });
    }
    // Client and backend are pods (no masquerade between them), as for
    // pod-to-pod traffic through a ClusterIP.
    render(&services, &["10.195.1.0/24", "10.195.2.0/24"])
}

/// Runs the benchmark and returns the report.
pub async fn bench_throughput(bench: &ThroughputBench) -> Result<String, BenchError> {
    let topo = Topology::build()?;
    let rs = rules(bench);
    nft::rewrite_table(Some(&topo.router.0), "skiff-bench", None, &rs).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = spawn_in(&topo.backend, {
        let stop = stop.clone();
        move || serve(stop)
    });
    // Let the listeners come up before the first connection.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let hairpin = spawn_in(&topo.backend, || async {
        let to = SocketAddr::from((CLUSTER_IP, HAIRPIN_PORT));
        tokio::time::timeout(Duration::from_secs(10), request(to, None))
            .await
            .map_err(|_| BenchError::Setup("timed out".into()))?
    })
    .join()
    .map_err(|_| BenchError::Setup("hairpin thread panicked".into()))
    .and_then(|r| r)
    .map_err(|e| {
        BenchError::Setup(format!(
            "hairpin: the backend could not reach itself through {CLUSTER_IP}:{HAIRPIN_PORT}: {e}"
        ))
    });

    let duration = Duration::from_secs_f64(bench.seconds.max(0.1));
    let direct_stream = SocketAddr::from((BACKEND, SINK_PORT));
    let direct_echo = SocketAddr::from((BACKEND, ECHO_PORT));
    let cluster_stream = SocketAddr::from((CLUSTER_IP, 80));
    let cluster_echo = SocketAddr::from((CLUSTER_IP, 81));
    let mut rows: [(&str, Vec<f64>); 4] = [
        ("one stream, pod IP (Gbit/s)", vec![]),
        ("one stream, ClusterIP (Gbit/s)", vec![]),
        ("short connections, pod IP (conn/s)", vec![]),
        ("short connections, ClusterIP (conn/s)", vec![]),
    ];
    let mut result = hairpin;
    for _ in 0..bench.runs.max(1) {
        if result.is_err() {
            break;
        }
        let measured = (|| {
            let a = in_client(&topo, move || stream(direct_stream, duration))?;
            let b = in_client(&topo, move || stream(cluster_stream, duration))?;
            let c = in_client(&topo, move || {
                short_connections(direct_echo, CLIENT_DIRECT, duration)
            })?;
            let d = in_client(&topo, move || {
                short_connections(cluster_echo, CLIENT_VIA_SERVICE, duration)
            })?;
            Ok::<_, BenchError>([a, b, c, d])
        })();
        match measured {
            Ok(values) => {
                for (row, v) in rows.iter_mut().zip(values) {
                    row.1.push(v);
                }
            }
            Err(e) => result = Err(e),
        }
    }
    stop.store(true, Ordering::Relaxed);
    // A server that never started explains the clients' errors best.
    let served = server
        .join()
        .map_err(|_| BenchError::Setup("server thread panicked".into()))?;
    drop(topo);
    served?;
    result?;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "ClusterIP vs pod IP through a forwarding namespace holding the proxy's table ({} rules: {} services x {} endpoints + 3); hairpin ok; {:.1} s per measurement, median of {}",
        rs.rule_count(),
        bench.services,
        bench.endpoints,
        duration.as_secs_f64(),
        bench.runs.max(1)
    );
    let medians: Vec<f64> = rows.iter().map(|(_, v)| median_f64(v.clone())).collect();
    for ((name, _), m) in rows.iter().zip(&medians) {
        let _ = writeln!(out, "{name:<40} {m:>10.2}");
    }
    // Paired per run (the two paths measured back to back), so a machine
    // whose load drifts between runs does not pass for proxy overhead.
    for (what, direct, cluster) in [
        ("one stream", &rows[0].1, &rows[1].1),
        ("short connections", &rows[2].1, &rows[3].1),
    ] {
        let ratios: Vec<f64> = direct
            .iter()
            .zip(cluster)
            .map(|(d, c)| (d / c - 1.0) * 100.0)
            .collect();
        let _ = writeln!(
            out,
            "ClusterIP overhead, {what:<19} {:>+9.1}% (median of per-run pairs)",
            median_f64(ratios)
        );
    }
    Ok(out)
}

fn median_f64(v: Vec<f64>) -> f64 {
    let mut v = v;
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Runs `f` on a new thread inside `ns`, on a current-thread runtime of
/// its own (`setns` moves only the calling thread; sockets it opens live
/// in `ns`).
fn spawn_in<F, Fut, T>(ns: &Netns, f: F) -> std::thread::JoinHandle<Result<T, BenchError>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, BenchError>>,
    T: Send + 'static,
{
    let path = format!("/run/netns/{}", ns.0);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).map_err(|e| BenchError::Io("opening netns", e))?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| BenchError::Io("entering netns", e.into()))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| BenchError::Io("tokio runtime", e))?;
        rt.block_on(f())
    })
}

/// One measurement on a client thread.
fn in_client<F, Fut>(topo: &Topology, f: F) -> Result<f64, BenchError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<f64, BenchError>>,
{
    spawn_in(&topo.client, f)
        .join()
        .map_err(|_| BenchError::Setup("client thread panicked".into()))?
}

/// The backend: a sink that counts nothing and an echo that answers each
/// connection's first bytes with `ok` and closes; until `stop`.
async fn serve(stop: Arc<AtomicBool>) -> Result<(), BenchError> {
    let bind = |port| TcpListener::bind((Ipv4Addr::UNSPECIFIED, port));
    let sink = bind(SINK_PORT)
        .await
        .map_err(|e| BenchError::Io("binding the sink", e))?;
    let echo = bind(ECHO_PORT)
        .await
        .map_err(|e| BenchError::Io("binding the echo server", e))?;
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            Ok((mut s, _)) = sink.accept() => {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; STREAM_CHUNK_BYTES];
                    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                });
            }
            Ok((mut s, _)) = echo.accept() => {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    if matches!(s.read(&mut buf).await, Ok(n) if n > 0) {
                        let _ = s.write_all(b"ok").await;
                    }
                });
            }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    Ok(())
}

/// One TCP stream to `to` for `duration`: Gbit/s delivered (the sink has
/// read everything when it closes in answer to our FIN).
async fn stream(to: SocketAddr, duration: Duration) -> Result<f64, BenchError> {
    let mut s = TcpStream::connect(to)
        .await
        .map_err(|e| BenchError::Io("connecting the stream", e))?;
    let chunk = vec![0x5au8; STREAM_CHUNK_BYTES];
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < duration {
        s.write_all(&chunk)
            .await
            .map_err(|e| BenchError::Io("writing the stream", e))?;
        sent += chunk.len() as u64;
    }
    s.shutdown()
        .await
        .map_err(|e| BenchError::Io("closing the stream", e))?;
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)
        .await
        .map_err(|e| BenchError::Io("waiting for the sink", e))?;
    Ok(sent as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e9)
}

/// [`SHORT_CONNECTION_CLIENTS`] loops of connect, one request, one reply,
/// close, for `duration`: connections per second.
async fn short_connections(
    to: SocketAddr,
    from: Ipv4Addr,
    duration: Duration,
) -> Result<f64, BenchError> {
    let start = Instant::now();
    let mut tasks: tokio::task::JoinSet<Result<u64, BenchError>> = tokio::task::JoinSet::new();
    for _ in 0..SHORT_CONNECTION_CLIENTS {
        tasks.spawn(async move {
            let mut done = 0u64;
            while start.elapsed() < duration {
                request(to, Some(from)).await?;
                done += 1;
            }
            Ok(done)
        });
    }
    let mut total = 0;
    while let Some(joined) = tasks.join_next().await {
        total += joined.map_err(|e| BenchError::Setup(format!("client task: {e}")))??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// One short connection (from `from`, if given): connect, send a byte,
/// read the whole reply, which must be `ok`.
async fn request(to: SocketAddr, from: Option<Ipv4Addr>) -> Result<(), BenchError> {
    let mut s = match from {
        None => TcpStream::connect(to).await,
        Some(ip) => {
            let socket =
                tokio::net::TcpSocket::new_v4().map_err(|e| BenchError::Io("a socket", e))?;
            socket
                .bind(SocketAddr::from((ip, 0)))
                .map_err(|e| BenchError::Io("binding the client address", e))?;
            socket.connect(to).await
        }
    }
    .map_err(|e| BenchError::Io("connecting", e))?;
    s.set_nodelay(true)
        .map_err(|e| BenchError::Io("TCP_NODELAY", e))?;
    s.write_all(b"x")
        .await
        .map_err(|e| BenchError::Io("sending the request", e))?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)
        .await
        .map_err(|e| BenchError::Io("reading the reply", e))?;
    if reply == b"ok" {
        Ok(())
    } else {
        Err(BenchError::Setup(format!(
            "unexpected reply {reply:?} from {to}"
        )))
    }
}
