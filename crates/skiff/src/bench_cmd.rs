//! `skiff bench`: measurements that print tables. Never part of the tests:
//! timing depends on the machine, so figures are reported, not asserted.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};

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
        /// Leave the namespace and its pods in place afterwards (to inspect
        /// the server's memory, or time requests by hand).
        #[arg(long)]
        keep_namespace: bool,
    },
    /// Drive any etcd v3 endpoint (Skiff's `--etcd-listen`, or a real etcd)
    /// with concurrent gRPC clients: puts, then linearizable gets.
    Etcd {
        /// `host:port` of the etcd API (several separated by commas: the
        /// clients are spread over them).
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
    /// The Deployment and ReplicaSet controllers on hollow nodes: a
    /// Deployment scaled 0 → N until all pods are Running, a rolling update
    /// of all N, the scale back to 0, with the server's CPU and memory.
    Controllers {
        /// Hollow nodes (4 cpu, 16Gi, 110 pods each), run in this process.
        #[arg(long, default_value_t = 1_000)]
        nodes: usize,
        /// Replicas of the Deployment (pods request 1m cpu).
        #[arg(long, default_value_t = 10_000)]
        replicas: usize,
        /// Repetitions (each is printed, then the medians).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Seconds one phase may take before the run is abandoned.
        #[arg(long, default_value_t = 1800)]
        timeout: u64,
        /// Admin kubeconfig of a running `skiff server --no-agent` to
        /// measure (default: start one on a temporary data directory).
        #[arg(long, requires = "server_pid")]
        kubeconfig: Option<PathBuf>,
        /// That server's pid, for its CPU and memory.
        #[arg(long, requires = "kubeconfig")]
        server_pid: Option<u32>,
    },
    /// Skiff's store against etcd 3.4: 3 `skiff server`s and 3 etcd
    /// members on loopback, driven through the etcd API with N concurrent
    /// clients (writes/s, p50/p99, gets/s, memory, disk bytes per write).
    Store {
        /// Directory for the servers' data, kept afterwards (default: a
        /// temporary directory under /var/tmp, removed).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Concurrent clients; one row each.
        #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 256])]
        clients: Vec<usize>,
        /// Value size in bytes.
        #[arg(long, default_value_t = 1024)]
        value_size: usize,
        /// Puts (then gets) per row.
        #[arg(long, default_value_t = 5000)]
        ops: usize,
        /// How many times to repeat everything (medians are reported).
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
            keep_namespace,
        } => {
            let (url, ca_pem, token) = read_kubeconfig(&kubeconfig)?;
            let config = skiff_apiserver::bench::BenchConfig {
                pods,
                clients,
                watchers,
                server_pid,
                keep_namespace,
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
        BenchCommand::Controllers {
            nodes,
            replicas,
            runs,
            timeout,
            kubeconfig,
            server_pid,
        } => {
            crate::bench_controllers::run(crate::bench_controllers::ControllersBench {
                nodes,
                replicas,
                runs: runs.max(1),
                phase_timeout: Duration::from_secs(timeout),
                server: kubeconfig.zip(server_pid),
            })
            .await
        }
        BenchCommand::Store {
            dir,
            clients,
            value_size,
            ops,
            runs,
        } => {
            crate::bench_store::run(crate::bench_store::StoreBench {
                clients,
                ops,
                value_size,
                runs: runs.max(1),
                dir,
            })
            .await
        }
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

/// The server URL, CA (PEM) and bearer token of a kubeconfig's current
/// context, as `skiff server` writes it.
pub(crate) fn read_kubeconfig(path: &std::path::Path) -> anyhow::Result<(String, String, String)> {
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
    let (url, ca_pem, token) = read_kubeconfig(kubeconfig)?;
    let client = skiff_client::kube_client(&url, &ca_pem, &token)?;
    let hollow = HollowNodes::start(client.clone(), nodes, "hollow-").await?;
    let table =
        skiff_scheduler::bench_end_to_end(client, nodes, pods, seed, Duration::from_secs(1800))
            .await;
    hollow.stop().await;
    println!("{}", table?);
    Ok(())
}

/// Hollow nodes run in this process (`skiff_agent::hollow`), so their CPU
/// is not the server's.
pub(crate) struct HollowNodes {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), skiff_agent::hollow::HollowError>>,
}

impl HollowNodes {
    /// Starts `nodes` hollow nodes named `<prefix>00000`… and waits until
    /// every one is registered with its allocatable resources.
    pub(crate) async fn start(
        client: kube::Client,
        nodes: usize,
        prefix: &str,
    ) -> anyhow::Result<HollowNodes> {
        use k8s_openapi::api::core::v1::Node;
        use kube::api::{Api, ListParams};
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (c, p) = (client.clone(), prefix.to_string());
        let mut task = tokio::spawn(async move {
            skiff_agent::hollow::run_hollow_nodes(c, nodes, &p, async move {
                let _ = stop_rx.await;
            })
            .await
        });
        let started = Instant::now();
        let api: Api<Node> = Api::all(client);
        loop {
            let registered = api
                .list(&ListParams::default().labels(skiff_agent::hollow::HOLLOW_LABEL))
                .await?
                .items
                .iter()
                .filter(|n| {
                    n.metadata
                        .name
                        .as_deref()
                        .is_some_and(|name| name.starts_with(prefix))
                        && n.status
                            .as_ref()
                            .and_then(|s| s.allocatable.as_ref())
                            .is_some()
                })
                .count();
            if registered >= nodes {
                break;
            }
            if task.is_finished() {
                let ended = (&mut task).await;
                anyhow::bail!("hollow nodes stopped while registering: {ended:?}");
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(300),
                "hollow nodes not registered after 5 minutes"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        eprintln!("{nodes} hollow nodes registered in {:?}", started.elapsed());
        Ok(HollowNodes { stop, task })
    }

    /// Stops them (they stay registered, as a stopped kubelet's node does).
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
