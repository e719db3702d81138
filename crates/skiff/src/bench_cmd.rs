//! `skiff bench`: measurements that print tables. Never part of the tests:
//! timing depends on the machine, so figures are reported, not asserted.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use skiff_store::{Kv, PutRequest, RangeRequest, Store, StoreConfig};

/// Flags of `skiff bench`.
#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// The embedded store, in process: sequential and concurrent puts,
    /// linearizable gets (single node).
    Store {
        /// Directory for the store's data (default: a temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Value size in bytes.
        #[arg(long, default_value_t = 1024)]
        value_size: usize,
        /// Writes per measurement.
        #[arg(long, default_value_t = 5000)]
        ops: usize,
        /// How many times to repeat each measurement (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Store {
            dir,
            value_size,
            ops,
            runs,
        } => bench_store(dir, value_size, ops, runs.max(1)).await,
    }
}

struct Measurement {
    name: String,
    ops_per_sec: Vec<f64>,
    latencies: Vec<Duration>,
}

impl Measurement {
    fn row(&mut self) -> String {
        self.ops_per_sec.sort_by(f64::total_cmp);
        self.latencies.sort();
        let median = self.ops_per_sec[self.ops_per_sec.len() / 2];
        let pct = |p: f64| {
            let i = ((self.latencies.len() as f64 * p) as usize)
                .min(self.latencies.len().saturating_sub(1));
            self.latencies
                .get(i)
                .map(|d| d.as_secs_f64() * 1000.0)
                .unwrap_or(0.0)
        };
        format!(
            "| {:<28} | {:>10.0} | {:>8.2} | {:>8.2} |",
            self.name,
            median,
            pct(0.5),
            pct(0.99)
        )
    }
}

async fn bench_store(
    dir: Option<PathBuf>,
    value_size: usize,
    ops: usize,
    runs: usize,
) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("skiff-bench-")
        .tempdir_in("/var/tmp")?;
    let dir = dir.unwrap_or_else(|| tmp.path().join("store"));
    let store = Store::open(StoreConfig::new(&dir))
        .await
        .context("opening the store")?;
    let value = vec![b'x'; value_size];
    let mut results = Vec::new();
    for clients in [1usize, 16, 256] {
        let mut m = Measurement {
            name: format!("put, {clients} clients"),
            ops_per_sec: vec![],
            latencies: vec![],
        };
        for run in 0..runs {
            let (rate, lat) = puts(
                &store,
                &value,
                ops,
                clients,
                &format!("/bench/{clients}/{run}/"),
            )
            .await?;
            m.ops_per_sec.push(rate);
            m.latencies.extend(lat);
        }
        results.push(m);
    }
    let mut m = Measurement {
        name: "get (linearizable), 1 client".into(),
        ops_per_sec: vec![],
        latencies: vec![],
    };
    for _ in 0..runs {
        let start = Instant::now();
        for i in 0..ops {
            let t = Instant::now();
            store
                .range(RangeRequest {
                    key: format!("/bench/1/0/{i}").into_bytes(),
                    ..Default::default()
                })
                .await?;
            m.latencies.push(t.elapsed());
        }
        m.ops_per_sec
            .push(ops as f64 / start.elapsed().as_secs_f64());
    }
    results.push(m);
    store.shutdown().await;
    println!("embedded store, single node, {value_size}-byte values, {ops} ops per run, median of {runs} runs");
    println!(
        "| {:<28} | {:>10} | {:>8} | {:>8} |",
        "workload", "ops/s", "p50 ms", "p99 ms"
    );
    println!(
        "|{}|{}|{}|{}|",
        "-".repeat(30),
        "-".repeat(12),
        "-".repeat(10),
        "-".repeat(10)
    );
    for mut m in results {
        println!("{}", m.row());
    }
    Ok(())
}

/// `ops` puts spread over `clients` concurrent tasks; returns ops/s and
/// every latency.
async fn puts(
    store: &Store,
    value: &[u8],
    ops: usize,
    clients: usize,
    prefix: &str,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let store = store.clone();
        let value = value.to_vec();
        let prefix = prefix.to_string();
        let n = ops / clients + usize::from(c < ops % clients);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n);
            for i in 0..n {
                let t = Instant::now();
                store
                    .put(PutRequest {
                        key: format!("{prefix}{c}/{i}").into_bytes(),
                        value: value.clone(),
                        ..Default::default()
                    })
                    .await?;
                lat.push(t.elapsed());
            }
            Ok::<_, skiff_store::StoreError>(lat)
        }));
    }
    let mut all = Vec::with_capacity(ops);
    for t in tasks {
        all.extend(t.await.context("bench task")??);
    }
    Ok((ops as f64 / start.elapsed().as_secs_f64(), all))
}
