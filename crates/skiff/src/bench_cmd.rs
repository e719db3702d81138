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
    /// The scheduler: its pure core on a synthetic cluster (pods/s, nodes
    /// used against the lower bound and First-Fit-Decreasing) and, with
    /// --kubeconfig, end to end through a running `skiff server --no-agent`
    /// with hollow nodes started by this command.
    Scheduler {
        /// Nodes (4 cpu, 16Gi, 110 pods each).
        #[arg(long, default_value_t = 5_000)]
        nodes: usize,
        /// Pods of mixed sizes.
        #[arg(long, default_value_t = 50_000)]
        pods: usize,
        /// Seed of the pod mix.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Admin kubeconfig of a server to also measure end to end.
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
    /// The API server over HTTPS: create pods with concurrent clients, list
    /// them, and time watchers that each wait for one update.
    Apiserver {
        /// Admin kubeconfig of the server to measure.
        #[arg(long, default_value = "/var/lib/skiff/admin.kubeconfig")]
        kubeconfig: PathBuf,
        /// Pods to create.
        #[arg(long, default_value_t = 10_000)]
        pods: usize,
        /// Concurrent creating clients.
        #[arg(long, default_value_t = 50)]
        clients: usize,
        /// Watchers that each wait for one update.
        #[arg(long, default_value_t = 1_000)]
        watchers: usize,
        /// The server's pid, to report its resident memory.
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// Drive any etcd v3 endpoint (Skiff's `--etcd-listen`, or a real etcd)
    /// with concurrent gRPC clients: puts, then linearizable gets.
    Etcd {
        /// `host:port` of the etcd API.
        #[arg(long, default_value = "127.0.0.1:2379")]
        endpoint: String,
        /// Concurrent clients; repeat for several rows.
        #[arg(long, default_values_t = [1usize, 16, 256])]
        clients: Vec<usize>,
        /// Operations per phase.
        #[arg(long, default_value_t = 5000)]
        ops: usize,
        /// Value size in bytes.
        #[arg(long, default_value_t = 1024)]
        value_size: usize,
    },
    /// Pod startup latency on one real node (creation → Running through a
    /// watch, p50/p99) and the agent's resident memory.
    Startup {
        /// Admin kubeconfig of the server.
        #[arg(long, default_value = "/var/lib/skiff/admin.kubeconfig")]
        kubeconfig: PathBuf,
        /// Pods to create.
        #[arg(long, default_value_t = 100)]
        pods: usize,
        /// Creations per second.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        /// Pods left running when the agent's memory is read.
        #[arg(long, default_value_t = 50)]
        rss_pods: usize,
        /// The agent's pid (a separate `skiff agent`), for its memory.
        #[arg(long)]
        agent_pid: Option<u32>,
    },
    /// The service proxy: rule sync time (render + `nft -f -`, full and
    /// after a one-service endpoint change) for N Services x M endpoints, in
    /// a network namespace of its own; with `--throughput`, one TCP stream
    /// and short connections through a ClusterIP vs the pod IP, in three.
    Proxy {
        /// Services (with `--throughput`: filler in the router's table).
        #[arg(long, default_value_t = 1_000)]
        services: usize,
        /// Endpoints per Service.
        #[arg(long, default_value_t = 10)]
        endpoints: usize,
        /// Repetitions (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Measure TCP throughput through a ClusterIP instead of sync time.
        #[arg(long)]
        throughput: bool,
        /// With `--throughput`: seconds per measurement.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
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
        BenchCommand::Scheduler {
            nodes,
            pods,
            seed,
            kubeconfig,
        } => {
            println!("{}", skiff_scheduler::bench_core(nodes, pods, seed));
            if let Some(kubeconfig) = kubeconfig {
                bench_scheduler_end_to_end(&kubeconfig, nodes, pods, seed).await?;
            }
            Ok(())
        }
        BenchCommand::Apiserver {
            kubeconfig,
            pods,
            clients,
            watchers,
            server_pid,
        } => {
            let (url, ca_pem, token) = read_kubeconfig(&kubeconfig)?;
            let config = skiff_apiserver::bench::BenchConfig {
                pods,
                clients,
                watchers,
                server_pid,
                keep_namespace: false,
            };
            let table = skiff_apiserver::bench::bench_api(&url, &ca_pem, &token, &config).await?;
            println!("{table}");
            Ok(())
        }
        BenchCommand::Etcd {
            endpoint,
            clients,
            ops,
            value_size,
        } => {
            for c in clients {
                let result = skiff_store::etcd::drive_etcd_api(&endpoint, c, ops, value_size)
                    .await
                    .with_context(|| format!("driving {endpoint}"))?;
                println!("{result}");
            }
            Ok(())
        }
        BenchCommand::Startup {
            kubeconfig,
            pods,
            rate,
            rss_pods,
            agent_pid,
        } => {
            let (url, ca_pem, token) = read_kubeconfig(&kubeconfig)?;
            let client = crate::bench_startup::client(&url, &ca_pem, &token)?;
            let cfg = crate::bench_startup::StartupBench {
                pods,
                rate,
                rss_pods,
                agent_pid,
            };
            println!("{}", crate::bench_startup::run(client, &cfg).await?);
            Ok(())
        }
        BenchCommand::Store {
            dir,
            value_size,
            ops,
            runs,
        } => bench_store(dir, value_size, ops, runs.max(1)).await,
        BenchCommand::Proxy {
            services,
            endpoints,
            runs,
            throughput: false,
            ..
        } => {
            let report = skiff_agent::net::bench::bench_proxy(services, endpoints, runs).await;
            println!("{}", report.context("proxy sync bench")?);
            Ok(())
        }
        BenchCommand::Proxy {
            services,
            endpoints,
            runs,
            throughput: true,
            seconds,
        } => {
            let bench = skiff_agent::net::bench_tcp::ThroughputBench {
                services,
                endpoints,
                runs,
                seconds,
            };
            let report = skiff_agent::net::bench_tcp::bench_throughput(&bench).await;
            println!("{}", report.context("proxy throughput bench")?);
            Ok(())
        }
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

/// The server URL, CA (PEM) and bearer token of a kubeconfig's current
/// context, as `skiff server` writes it.
fn read_kubeconfig(path: &std::path::Path) -> anyhow::Result<(String, String, String)> {
    use base64::Engine;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).with_context(|| format!("{} is not YAML", path.display()))?;
    let field = |section: &str, key: &str| -> anyhow::Result<String> {
        doc[section][0][section.trim_end_matches('s')][key]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("{}: no {section}[0].{key}", path.display()))
    };
    let url = field("clusters", "server")?;
    let ca = base64::engine::general_purpose::STANDARD
        .decode(field("clusters", "certificate-authority-data")?)
        .context("certificate-authority-data is not base64")?;
    let token = field("users", "token")?;
    Ok((
        url,
        String::from_utf8(ca).context("CA is not PEM text")?,
        token,
    ))
}

/// Starts `nodes` hollow nodes against the server of `kubeconfig`, waits
/// until they are registered, then creates `pods` pods and times them until
/// bound.
async fn bench_scheduler_end_to_end(
    kubeconfig: &std::path::Path,
    nodes: usize,
    pods: usize,
    seed: u64,
) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Node;
    use kube::api::{Api, ListParams};
    let (url, ca_pem, token) = read_kubeconfig(kubeconfig)?;
    let client = skiff_client::kube_client(&url, &ca_pem, &token)?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let hollow = tokio::spawn(skiff_agent::hollow::run_hollow_nodes(
        client.clone(),
        nodes,
        "hollow-",
        async move {
            let _ = stop_rx.await;
        },
    ));
    let started = Instant::now();
    let api: Api<Node> = Api::all(client.clone());
    loop {
        let registered = api
            .list(&ListParams::default().labels(skiff_agent::hollow::HOLLOW_LABEL))
            .await?
            .items
            .iter()
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.allocatable.as_ref())
                    .is_some()
            })
            .count();
        if registered >= nodes {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "hollow nodes not registered after 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("{nodes} hollow nodes registered in {:?}", started.elapsed());
    let table =
        skiff_scheduler::bench_end_to_end(client, nodes, pods, seed, Duration::from_secs(1800))
            .await;
    let _ = stop_tx.send(());
    let _ = hollow.await;
    println!("{}", table?);
    Ok(())
}
