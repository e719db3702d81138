//! `skiff server`: the store, the API server, the scheduler and (unless
//! `--no-agent`) a local node agent, in one process. With
//! `--datastore-endpoint` the API server keeps its state in an external etcd
//! cluster ([`skiff_store::RemoteStore`]) instead of the embedded store, and
//! the etcd v3 API and cluster flags do not apply.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use tokio::sync::watch;

use crate::agent_cmd::AgentOptions;

/// The embedded store's page cache (`--store-cache-mib`). 16 rather than
/// the store's own 32 MiB default: with 10,000 pods the server's resident
/// set was ~15 MiB smaller and creates no slower (NOTES.md, issue #4); 8
/// and 4 MiB saved nothing more.
const DEFAULT_STORE_CACHE_MIB: u64 = 16;

/// Flags of `skiff server`.
#[derive(Args)]
pub struct ServerArgs {
    /// Where the server keeps its state (store, certificates, kubeconfig).
    #[arg(long, default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// Address the Kubernetes API listens on (HTTPS).
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Address of the etcd v3 gRPC API (plain HTTP/2, no TLS: keep it on
    /// loopback). `etcdctl --endpoints=127.0.0.1:2379` talks to it.
    #[arg(long, default_value = "127.0.0.1:2379")]
    etcd_listen: SocketAddr,
    /// Do not serve the etcd v3 API.
    #[arg(long)]
    no_etcd_api: bool,
    /// Keep the cluster's state in this external etcd (v3 API, plain HTTP:
    /// `http://HOST:2379`, or several URLs separated by commas) instead of
    /// the embedded store.
    #[arg(long, value_name = "URL")]
    datastore_endpoint: Option<String>,
    /// Extra names or IPs for the serving certificate.
    #[arg(long = "tls-san")]
    tls_san: Vec<String>,
    /// Do not run a node agent in this process.
    #[arg(long)]
    no_agent: bool,
    /// sled's page cache for the embedded store, in MiB. Lists and watches
    /// are served from the API server's watch cache, so the store's own
    /// cache mostly holds recent writes.
    #[arg(long, default_value_t = DEFAULT_STORE_CACHE_MIB)]
    store_cache_mib: u64,
    /// How often to return freed heap memory to the OS (`malloc_trim`), in
    /// milliseconds; 0 never.
    #[arg(long, default_value_t = crate::memory::DEFAULT_TRIM_INTERVAL.as_millis() as u64)]
    malloc_trim_interval_ms: u64,
    /// Do not run the controllers in this process (tests that run their own
    /// controller set, with shorter timings, use it).
    #[arg(long)]
    no_controllers: bool,
    /// Pod addresses of the whole cluster; each node gets a slice of it in
    /// `spec.podCIDR` (empty: leave podCIDR to the nodes).
    #[arg(long, default_value = skiff_controllers::config::DEFAULT_CLUSTER_CIDR)]
    cluster_cidr: String,
    /// Prefix length of each node's pod CIDR.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
    /// Finished pods (Succeeded/Failed) kept before the pod garbage
    /// collector deletes the oldest; 0 keeps them all.
    #[arg(long, default_value_t = 12_500)]
    terminated_pod_gc_threshold: usize,
    /// Where Services' cluster IPs come from.
    #[arg(long, default_value = skiff_apiserver::service_ranges::DEFAULT_SERVICE_CIDR)]
    service_cidr: String,
    /// How long Events live after their last write (kube-apiserver's
    /// `--event-ttl`: e.g. 1h, 30m, 90s; 0 keeps them).
    #[arg(long, default_value = "1h", value_parser = skiff_apiserver::event_ttl::parse_duration)]
    event_ttl: std::time::Duration,
    #[command(flatten)]
    agent: AgentOptions,
    #[command(flatten)]
    cluster: crate::cluster_cmd::ClusterArgs,
    #[command(subcommand)]
    action: Option<crate::cluster_cmd::ServerAction>,
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    if let Some(action) = args.action {
        return crate::cluster_cmd::run_action(action).await;
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let store = open_datastore(&args).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let etcd_api = match &store {
        Datastore::Embedded(store) if !args.no_etcd_api => {
            let listener = tokio::net::TcpListener::bind(args.etcd_listen)
                .await
                .with_context(|| {
                    format!(
                        "etcd API: listen on {} (or pass --no-etcd-api)",
                        args.etcd_listen
                    )
                })?;
            println!("etcd v3 API at {}", listener.local_addr()?);
            Some(spawn_logged(
                "etcd API",
                skiff_store::serve_etcd_api(store.clone(), listener, stopped(stop_rx.clone())),
            ))
        }
        _ => None,
    };

    let config = skiff_apiserver::ApiServerConfig {
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        extra_sans: args.tls_san.clone(),
        service_ranges: skiff_apiserver::service_ranges::ServiceRanges {
            cluster_ips: skiff_apiserver::service_ranges::Ipv4Net::parse(&args.service_cidr)
                .map_err(|e| anyhow::anyhow!("--service-cidr: {e}"))?,
            ..Default::default()
        },
        event_ttl: args.event_ttl,
        service_account_admission: true,
    };
    let api = skiff_apiserver::ApiServer::start(config, store.storage())
        .await
        .context("starting the API server")?;
    let url = api.url().to_string();
    println!("skiff server is up at {url}");
    println!("kubeconfig: {}", api.kubeconfig_path().display());
    println!(
        "try: KUBECONFIG={} kubectl get nodes",
        api.kubeconfig_path().display()
    );

    // The scheduler and the controllers reach the API server in memory.
    let version = env!("CARGO_PKG_VERSION");
    let scheduler = spawn_logged(
        "scheduler",
        skiff_scheduler::run(
            api.local_client(&format!("skiff-scheduler/{version}"))?,
            stopped(stop_rx.clone()),
        ),
    );
    let client = api.local_client(&format!("skiff-controller-manager/{version}"))?;
    let controllers = (!args.no_controllers).then(|| {
        spawn_logged(
            "controllers",
            skiff_controllers::run_controllers_when_leading(
                client,
                skiff_controllers::ControllersConfig {
                    cluster_cidr: Some(args.cluster_cidr.clone()).filter(|c| !c.is_empty()),
                    node_cidr_mask_size: args.node_cidr_mask_size,
                    terminated_pod_gc_threshold: args.terminated_pod_gc_threshold,
                    root_ca_pem: Some(api.ca_pem().to_string()),
                    ..Default::default()
                },
                skiff_client::leader::default_identity(),
                stopped(stop_rx.clone()),
            ),
        )
    });

    let trimmer = (args.malloc_trim_interval_ms > 0).then(|| {
        tokio::spawn(crate::memory::trim_periodically(
            std::time::Duration::from_millis(args.malloc_trim_interval_ms),
            stopped(stop_rx.clone()),
        ))
    });

    let agent = if args.no_agent {
        None
    } else {
        let config = args.agent.into_config(
            url.clone(),
            api.node_token().to_string(),
            Some(api.ca_pem().to_string()),
            args.data_dir.join("agent"),
        )?;
        Some(spawn_logged(
            "agent",
            skiff_agent::run(config, stopped(stop_rx.clone())),
        ))
    };

    crate::shutdown_signal().await;
    let _ = stop_tx.send(true);
    // Each task logs its own error when it ends; here we only wait for them.
    for task in [agent, Some(scheduler), controllers, etcd_api, trimmer]
        .into_iter()
        .flatten()
    {
        let _ = task.await;
    }
    api.shutdown().await;
    store.shutdown().await;
    Ok(())
}

/// Where the server keeps the cluster's state.
enum Datastore {
    /// The embedded raft store in `DATA/store`.
    Embedded(skiff_store::Store),
    /// An external etcd (`--datastore-endpoint`).
    Remote(skiff_store::RemoteStore),
}

impl Datastore {
    fn storage(&self) -> Arc<dyn skiff_store::Storage> {
        match self {
            Datastore::Embedded(s) => Arc::new(s.clone()),
            Datastore::Remote(s) => Arc::new(s.clone()),
        }
    }

    async fn shutdown(&self) {
        match self {
            Datastore::Embedded(s) => s.shutdown().await,
            Datastore::Remote(s) => s.shutdown().await,
        }
    }
}

async fn open_datastore(args: &ServerArgs) -> anyhow::Result<Datastore> {
    let cluster = crate::cluster_cmd::store_cluster_config(&args.cluster, &args.data_dir)?;
    if let Some(endpoint) = &args.datastore_endpoint {
        anyhow::ensure!(
            cluster.is_none(),
            "--datastore-endpoint replaces the embedded store: the raft peer flags \
             (--join, --peer-listen, DATA/peer.json) do not apply"
        );
        let remote = skiff_store::RemoteStore::connect(endpoint)
            .await
            .with_context(|| format!("connecting to the datastore at {endpoint}"))?;
        println!("datastore: external etcd at {endpoint}");
        return Ok(Datastore::Remote(remote));
    }
    let mut store_config = skiff_store::StoreConfig::new(args.data_dir.join("store"));
    store_config.cluster = cluster;
    store_config.cache_capacity_bytes = args.store_cache_mib << 20;
    crate::cluster_cmd::tune_store(&args.cluster, &mut store_config);
    let store = skiff_store::Store::open(store_config)
        .await
        .context("opening the store")?;
    crate::cluster_cmd::announce(&store, &args.data_dir).await?;
    Ok(Datastore::Embedded(store))
}

/// Spawns a component and logs, when it ends, the error it ended with, so a
/// failing component (say, the agent finding no containerd) is reported at
/// once rather than at shutdown.
fn spawn_logged<E: std::fmt::Display>(
    component: &'static str,
    task: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = task.await {
            tracing::error!(component, error = %e, "stopped with an error");
        }
    })
}
