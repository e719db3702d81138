//! A load driver for any etcd v3 endpoint (Skiff's or a real etcd's), for
//! `skiff bench etcd` and the comparison table of `skiff bench store`: N
//! concurrent gRPC clients, each on its own HTTP/2 connection, first
//! writing then reading single keys. The one code path both benchmarks use
//! to drive the etcd API.

use std::fmt;
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};

use super::pb::etcdserverpb::kv_client::KvClient;
use super::pb::etcdserverpb::{PutRequest, RangeRequest};
use crate::error::StoreError;

/// The numbers of one phase (all puts, or all ranges).
#[derive(Clone, Debug, PartialEq)]
pub struct BenchPhase {
    /// "put" or "range".
    pub op: &'static str,
    /// Operations that succeeded (the rates and latencies count only
    /// these).
    pub ops: usize,
    /// Operations that failed (say, "no leader" during an election); the
    /// phase goes on without them, as a retrying client would.
    pub errors: usize,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Wall time of the phase.
    pub elapsed: Duration,
    /// Operations per second over the phase.
    pub ops_per_sec: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
}

/// What [`drive_etcd_api`] measured.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchResult {
    /// The endpoint driven.
    pub endpoint: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Bytes per value.
    pub value_size: usize,
    /// Puts, then linearizable single-key ranges.
    pub phases: Vec<BenchPhase>,
}

impl fmt::Display for BenchResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "etcd API at {} ({} clients, {} B values)",
            self.endpoint, self.clients, self.value_size
        )?;
        writeln!(
            f,
            "{:<6} {:>8} {:>10} {:>10} {:>10} {:>8}",
            "op", "ops", "ops/s", "p50 ms", "p99 ms", "errors"
        )?;
        for p in &self.phases {
            writeln!(
                f,
                "{:<6} {:>8} {:>10.0} {:>10.3} {:>10.3} {:>8}",
                p.op,
                p.ops,
                p.ops_per_sec,
                p.p50.as_secs_f64() * 1e3,
                p.p99.as_secs_f64() * 1e3,
                p.errors
            )?;
            if let Some(e) = &p.first_error {
                writeln!(f, "  first {} error: {e}", p.op)?;
            }
        }
        Ok(())
    }
}

fn transport(e: impl fmt::Display) -> StoreError {
    StoreError::Transport(e.to_string())
}

/// The element at quantile `q` of sorted `xs` (the nearest-rank method),
/// `zero` if there is none.
fn quantile<T: Copy>(xs: &[T], q: f64, zero: T) -> T {
    if xs.is_empty() {
        return zero;
    }
    xs[((xs.len() as f64 * q).ceil() as usize).clamp(1, xs.len()) - 1]
}

fn phase(op: &'static str, run: PhaseRun) -> BenchPhase {
    let PhaseRun {
        elapsed,
        mut lat,
        errors,
        first_error,
    } = run;
    lat.sort_unstable();
    BenchPhase {
        op,
        ops: lat.len(),
        errors,
        first_error,
        elapsed,
        ops_per_sec: lat.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        p50: quantile(&lat, 0.50, Duration::ZERO),
        p99: quantile(&lat, 0.99, Duration::ZERO),
    }
}

/// Quantile `q` of `xs` (sorted in place); 0 for none. Used for medians of
/// several runs too.
pub fn quantile_f64(xs: &mut [f64], q: f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    quantile(xs, q, 0.0)
}

/// What [`run_phase`] saw.
#[derive(Default)]
struct PhaseRun {
    elapsed: Duration,
    /// Latencies of the operations that succeeded.
    lat: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
}

/// Run `per_client` operations on every client at once; `op(client, i)`
/// does one. A failed operation is counted and skipped.
async fn run_phase<F, Fut>(
    clients: &[KvClient<Channel>],
    per_client: usize,
    op: F,
) -> Result<PhaseRun, StoreError>
where
    F: Fn(KvClient<Channel>, usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), tonic::Status>> + Send,
{
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients.len());
    for (c, client) in clients.iter().enumerate() {
        let client = client.clone();
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut run = PhaseRun {
                lat: Vec::with_capacity(per_client),
                ..Default::default()
            };
            for i in 0..per_client {
                let t = Instant::now();
                match op(client.clone(), c, i).await {
                    Ok(()) => run.lat.push(t.elapsed()),
                    Err(e) => {
                        run.errors += 1;
                        run.first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            run
        }));
    }
    let mut all = PhaseRun {
        lat: Vec::with_capacity(clients.len() * per_client),
        ..Default::default()
    };
    for t in tasks {
        let run = t.await.map_err(transport)?;
        all.lat.extend(run.lat);
        all.errors += run.errors;
        if all.first_error.is_none() {
            all.first_error = run.first_error;
        }
    }
    all.elapsed = start.elapsed();
    Ok(all)
}

/// `clients` concurrent etcd clients, each on its own HTTP/2 connection,
/// spread round-robin over the endpoints (as etcd's own `benchmark` tool
/// spreads its connections over `--endpoints`).
pub struct EtcdLoad {
    conns: Vec<KvClient<Channel>>,
}

impl EtcdLoad {
    /// Connect `clients` clients to `endpoints` (`host:port` or URLs).
    pub async fn connect(endpoints: &[String], clients: usize) -> Result<EtcdLoad, StoreError> {
        if endpoints.is_empty() {
            return Err(StoreError::InvalidRequest("no endpoint to drive".into()));
        }
        let clients = clients.max(1);
        let mut conns = Vec::with_capacity(clients);
        for c in 0..clients {
            let endpoint = &endpoints[c % endpoints.len()];
            let url = if endpoint.contains("://") {
                endpoint.to_string()
            } else {
                format!("http://{endpoint}")
            };
            let channel = Endpoint::from_shared(url)
                .map_err(transport)?
                .connect_timeout(Duration::from_secs(5))
                .connect()
                .await
                .map_err(transport)?;
            conns.push(KvClient::new(channel));
        }
        Ok(EtcdLoad { conns })
    }

    /// Concurrent clients.
    pub fn clients(&self) -> usize {
        self.conns.len()
    }

    fn per_client(&self, ops: usize) -> usize {
        ops.div_ceil(self.conns.len())
    }

    /// `ops` puts of `value_size`-byte values spread over the clients, at
    /// keys `<prefix><client>/<i>` (left behind).
    pub async fn puts(
        &self,
        prefix: &str,
        ops: usize,
        value_size: usize,
    ) -> Result<BenchPhase, StoreError> {
        let value = vec![b'v'; value_size];
        let prefix = prefix.to_string();
        let run = run_phase(&self.conns, self.per_client(ops), move |mut kv, c, i| {
            let req = PutRequest {
                key: format!("{prefix}{c}/{i}").into_bytes(),
                value: value.clone(),
                ..Default::default()
            };
            async move { kv.put(req).await.map(|_| ()) }
        })
        .await?;
        Ok(phase("put", run))
    }

    /// `ops` linearizable single-key ranges of the keys [`EtcdLoad::puts`]
    /// wrote with the same prefix and `ops`.
    pub async fn ranges(&self, prefix: &str, ops: usize) -> Result<BenchPhase, StoreError> {
        let prefix = prefix.to_string();
        let run = run_phase(&self.conns, self.per_client(ops), move |mut kv, c, i| {
            let req = RangeRequest {
                key: format!("{prefix}{c}/{i}").into_bytes(),
                ..Default::default()
            };
            async move { kv.range(req).await.map(|_| ()) }
        })
        .await?;
        Ok(phase("range", run))
    }
}

/// Drive the etcd v3 API at `endpoint` (`host:port` or a URL; several
/// separated by commas) with `clients` concurrent clients: `ops` puts of
/// `value_size`-byte values spread over them (keys
/// `/skiff-bench/<client>/<i>`), then `ops` linearizable single-key ranges
/// of those keys. The keys are left behind.
pub async fn drive_etcd_api(
    endpoint: &str,
    clients: usize,
    ops: usize,
    value_size: usize,
) -> Result<BenchResult, StoreError> {
    let endpoints: Vec<String> = endpoint.split(',').map(str::to_string).collect();
    let load = EtcdLoad::connect(&endpoints, clients).await?;
    let prefix = "/skiff-bench/";
    let put = load.puts(prefix, ops, value_size).await?;
    let range = load.ranges(prefix, ops).await?;
    Ok(BenchResult {
        endpoint: endpoint.to_string(),
        clients: load.clients(),
        value_size,
        phases: vec![put, range],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let lat: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(
            quantile(&lat, 0.5, Duration::ZERO),
            Duration::from_millis(50)
        );
        assert_eq!(
            quantile(&lat, 0.99, Duration::ZERO),
            Duration::from_millis(99)
        );
        assert_eq!(quantile(&[], 0.5, Duration::ZERO), Duration::ZERO);
        assert_eq!(quantile_f64(&mut [3.0, 1.0, 2.0], 0.5), 2.0);
    }
}
