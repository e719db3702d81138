//! A load driver for any etcd v3 endpoint (Skiff's or a real etcd's), for
//! the comparison table of `skiff bench`: N concurrent gRPC clients, each on
//! its own HTTP/2 connection, first writing then reading single keys.

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
    /// Operations done.
    pub ops: usize,
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
            "{:<6} {:>8} {:>10} {:>10} {:>10}",
            "op", "ops", "ops/s", "p50 ms", "p99 ms"
        )?;
        for p in &self.phases {
            writeln!(
                f,
                "{:<6} {:>8} {:>10.0} {:>10.3} {:>10.3}",
                p.op,
                p.ops,
                p.ops_per_sec,
                p.p50.as_secs_f64() * 1e3,
                p.p99.as_secs_f64() * 1e3
            )?;
        }
        Ok(())
    }
}

fn transport(e: impl fmt::Display) -> StoreError {
    StoreError::Transport(e.to_string())
}

/// The latency at quantile `q` of sorted `lat`.
fn quantile(lat: &[Duration], q: f64) -> Duration {
    if lat.is_empty() {
        return Duration::ZERO;
    }
    let i = ((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1;
    lat[i]
}

fn phase(op: &'static str, elapsed: Duration, mut lat: Vec<Duration>) -> BenchPhase {
    lat.sort_unstable();
    BenchPhase {
        op,
        ops: lat.len(),
        elapsed,
        ops_per_sec: lat.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        p50: quantile(&lat, 0.50),
        p99: quantile(&lat, 0.99),
    }
}

/// Run `per_client` operations on every client at once; `op(client, i)`
/// does one. Returns the phase's wall time and every latency.
async fn run_phase<F, Fut>(
    clients: &[KvClient<Channel>],
    per_client: usize,
    op: F,
) -> Result<(Duration, Vec<Duration>), StoreError>
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
            let mut lat = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let t = Instant::now();
                op(client.clone(), c, i).await?;
                lat.push(t.elapsed());
            }
            Ok::<_, tonic::Status>(lat)
        }));
    }
    let mut all = Vec::with_capacity(clients.len() * per_client);
    for t in tasks {
        all.extend(t.await.map_err(transport)?.map_err(transport)?);
    }
    Ok((start.elapsed(), all))
}

/// Drive the etcd v3 API at `endpoint` (`host:port` or a URL) with
/// `clients` concurrent clients: `ops` puts of `value_size`-byte values
/// spread over them (keys `/skiff-bench/<client>/<i>`), then `ops`
/// linearizable single-key ranges of those keys. The keys are left behind.
pub async fn drive_etcd_api(
    endpoint: &str,
    clients: usize,
    ops: usize,
    value_size: usize,
) -> Result<BenchResult, StoreError> {
    let url = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    };
    let clients = clients.max(1);
    let per_client = ops.div_ceil(clients);
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        let channel = Endpoint::from_shared(url.clone())
            .map_err(transport)?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(transport)?;
        conns.push(KvClient::new(channel));
    }
    let value = vec![b'v'; value_size];
    let key = |c: usize, i: usize| format!("/skiff-bench/{c}/{i}").into_bytes();

    let (put_time, put_lat) = run_phase(&conns, per_client, move |mut kv, c, i| {
        let req = PutRequest {
            key: key(c, i),
            value: value.clone(),
            ..Default::default()
        };
        async move { kv.put(req).await.map(|_| ()) }
    })
    .await?;
    let (range_time, range_lat) = run_phase(&conns, per_client, move |mut kv, c, i| {
        let req = RangeRequest {
            key: key(c, i),
            ..Default::default()
        };
        async move { kv.range(req).await.map(|_| ()) }
    })
    .await?;
    Ok(BenchResult {
        endpoint: endpoint.to_string(),
        clients,
        value_size,
        phases: vec![
            phase("put", put_time, put_lat),
            phase("range", range_time, range_lat),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let lat: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&lat, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&lat, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
