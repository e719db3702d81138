//! Starting and stopping the whole agent.
//!
//! ```text
//! run(config, shutdown)
//!   1. dirs under data_dir; API client from the node token (bootstrap)
//!   2. containerd: the given socket, or a private ManagedContainerd
//!   3. CRI client; built-in images (pause, busybox) + <data_dir>/images/*.tar
//!   4. HTTPS server (logs, healthz) on listen_port
//!   5. register the Node (its status carries the server's real port)
//!   6. CNI config for node.spec.podCIDR (waiting up to pod_cidr_wait for
//!      the server to assign it, else config.pod_cidr); cluster DNS on the
//!      CIDR's gateway :53 (skiff_dns)
//!   7. lease + node status loops; networking (net::run); the relist
//!      (pod::pleg) and the pod manager,
//!      until `shutdown`
//!   8. stop the server and our containerd; pods keep running
//! ```
//!
//! As with kubelet, stopping the agent does not stop pods: their shims
//! outlive containerd, and the next agent adopts them through CRI labels.
//! Test harnesses call [`cleanup_all_pods`] before stopping containerd.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{FutureExt, Shared};

use k8s_openapi::jiff::Timestamp;
use tracing::{info, warn};

use crate::bootstrap::{self, BootstrapError};
use crate::cni::{self, CniNetwork};
use crate::config::AgentConfig;
use crate::containerd::{ContainerdError, ContainerdOptions, ManagedContainerd};
use crate::cri::{Cri, CriError, RemoteRuntime, RuntimeService};
use crate::images::{self, ImageError};
use crate::node::{self, HostFacts, NodeError, NodeParams, RuntimeHealth};
use crate::pod::{PodManager, PodManagerError, WorkerContext};
use crate::server::{AgentServer, ServerError, ServerState};
use crate::tls::{self, TlsError};

/// Where Debian's `containernetworking-plugins` puts the CNI plugins.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";
/// Name of the CNI network (and of its conflist file).
pub const CNI_NETWORK_NAME: &str = "skiff";
/// Pause between attempts to reach a server that is not up yet (kubelet
/// likewise retries registration until the API server answers).
pub const JOIN_RETRY_PERIOD: Duration = Duration::from_secs(2);

type Shutdown<'a> = Shared<Pin<Box<dyn Future<Output = ()> + Send + 'a>>>;

/// Runs `attempt` until it succeeds, fails for good, or `shutdown` fires
/// (then `None`). Errors for which `retryable` holds are logged and retried.
async fn retry_until_shutdown<T, E: std::fmt::Display, F: Future<Output = Result<T, E>>>(
    what: &str,
    shutdown: &Shutdown<'_>,
    mut attempt: impl FnMut() -> F,
    retryable: impl Fn(&E) -> bool,
) -> Option<Result<T, E>> {
    loop {
        let result = tokio::select! {
            r = attempt() => r,
            _ = shutdown.clone() => return None,
        };
        match result {
            Err(e) if retryable(&e) => {
                warn!("{what}: {e}; retrying in {JOIN_RETRY_PERIOD:?}");
                tokio::select! {
                    _ = tokio::time::sleep(JOIN_RETRY_PERIOD) => {}
                    _ = shutdown.clone() => return None,
                }
            }
            other => return Some(other),
        }
    }
}

/// Why the agent stopped with an error. Everything before the pod manager
/// runs is a startup failure; the caller may retry the whole `run`.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A directory or file under the data dir could not be made.
    #[error("{what} {path}: {source}")]
    Io {
        /// What it was for.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Joining the cluster failed (token, CA, URL).
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    /// The private containerd did not start.
    #[error(transparent)]
    Containerd(#[from] ContainerdError),
    /// The CRI socket did not answer.
    #[error(transparent)]
    Cri(#[from] CriError),
    /// Importing images failed.
    #[error(transparent)]
    Images(#[from] ImageError),
    /// The serving certificate failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The HTTPS server did not start.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// Registering the node failed.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The pod watch ended.
    #[error(transparent)]
    Pods(#[from] PodManagerError),
}

fn mkdir(what: &'static str, path: &Path) -> Result<(), AgentError> {
    std::fs::create_dir_all(path).map_err(|source| AgentError::Io {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Runs the agent until `shutdown` resolves. Waits (retrying) for a server
/// that is not reachable yet; other startup failures are returned.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    let data = config.data_dir.clone();
    for (what, dir) in [
        ("data dir", data.clone()),
        ("pod log dir", data.join("pods")),
        ("image dir", data.join("images")),
        ("CNI config dir", data.join("cni/net.d")),
        ("CNI IPAM dir", data.join("cni/ipam")),
        ("work dir", data.join("tmp")),
    ] {
        mkdir(what, &dir)?;
    }
    let shutdown: Shutdown<'_> =
        (Box::pin(shutdown) as Pin<Box<dyn Future<Output = ()> + Send + '_>>).shared();
    let client = match retry_until_shutdown(
        "joining the cluster",
        &shutdown,
        || bootstrap::connect(&config.server_url, &config.token, config.ca_pem.as_deref()),
        |e| matches!(e, BootstrapError::Fetch { .. }),
    )
    .await
    {
        None => return Ok(()),
        Some(client) => client?,
    };

    let managed = match &config.containerd_socket {
        Some(_) => None,
        None => Some(
            ManagedContainerd::start(ContainerdOptions {
                state_dir: data.join("containerd"),
                sandbox_image: images::PAUSE_IMAGE.into(),
                cni_bin_dir: CNI_BIN_DIR.into(),
                cni_conf_dir: data.join("cni/net.d"),
                log_level: "info".into(),
            })
            .await?,
        ),
    };
    let socket = match (&config.containerd_socket, &managed) {
        (Some(s), _) => s.clone(),
        (None, Some(m)) => m.socket().to_path_buf(),
        // Unreachable: `managed` is Some exactly when no socket was given.
        (None, None) => return Ok(()),
    };
    let result = run_with_runtime(&config, client, &socket, shutdown).await;
    if let Some(m) = managed {
        m.stop().await;
    }
    result
}

async fn run_with_runtime(
    config: &AgentConfig,
    client: kube::Client,
    socket: &Path,
    shutdown: Shutdown<'_>,
) -> Result<(), AgentError> {
    let data = &config.data_dir;
    let remote = RemoteRuntime::connect(socket).await?;
    let version = remote.version().await?;
    info!(runtime = %version.runtime_name, version = %version.runtime_version, "CRI connected");
    let cri: Arc<dyn Cri> = Arc::new(remote);

    images::ensure_builtin_images(socket, &data.join("tmp")).await?;
    let imported = images::import_dir(socket, &data.join("images")).await?;
    if !imported.is_empty() {
        info!(?imported, "images imported");
    }

    let node_ip = config.effective_node_ip();
    let tls = tls::server_config(&data.join("pki"), &config.node_name, node_ip)?;
    let server = AgentServer::start(
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), config.listen_port),
        tls,
        Arc::new(ServerState {
            cri: cri.clone(),
            token: config.token.clone(),
            data_dir: data.clone(),
            node_name: config.node_name.clone(),
            stats: Default::default(),
        }),
    )
    .await?;
    info!(addr = %server.local_addr, "agent HTTPS server listening");

    let params = NodeParams {
        node_name: config.node_name.clone(),
        node_ip,
        kubelet_port: server.local_addr.port(),
        data_dir: data.clone(),
    };
    let health = RuntimeHealth::Up {
        version: format!("{}://{}", version.runtime_name, version.runtime_version),
    };
    let status = node::node_status(
        &params,
        &HostFacts::read(data),
        &health,
        node::PressureState::default(),
        None,
        Timestamp::now(),
    );
    let result = async {
        let registered = retry_until_shutdown(
            "registering the node",
            &shutdown,
            || node::register(&client, &params, &status),
            // Kubelet retries registration forever; a 4xx other than a
            // conflict means a real problem (e.g. a bad token) and stops.
            |e| match e {
                NodeError::Api {
                    source: kube::Error::Api(s),
                    ..
                } => s.code >= 500 || s.code == 429,
                NodeError::Api { .. } => true,
                NodeError::Json(_) => false,
            },
        )
        .await;
        let node_obj = match registered {
            None => return Ok(()),
            Some(r) => r?,
        };
        let pod_cidr = match wait_for_pod_cidr(&client, &node_obj, config.pod_cidr_wait).await {
            Some(c) => c,
            None => {
                warn!(fallback = %config.pod_cidr, "the server assigned no spec.podCIDR; using --pod-cidr");
                config.pod_cidr.clone()
            }
        };
        let net = CniNetwork {
            name: CNI_NETWORK_NAME.into(),
            bridge: config.cni_bridge.clone(),
            pod_cidr,
            ipam_data_dir: data.join("cni/ipam"),
            mtu: None,
        };
        let conf_dir = data.join("cni/net.d");
        let written = cni::write_config(&conf_dir, &net).map_err(|source| AgentError::Io {
            what: "CNI config in",
            path: conf_dir.clone(),
            source,
        })?;
        info!(file = %written.display(), cidr = %net.pod_cidr, "CNI config written");

        // The node-local cluster DNS on the bridge gateway (skiff_dns doc).
        let mut dns = None;
        let cluster_dns = match cni::parse_cidr(&net.pod_cidr) {
            Ok(c) if config.cluster_dns && c.addr.is_ipv4() => {
                let gw = gateway(&c);
                match skiff_dns::start(client.clone(), SocketAddr::new(gw, 53), &config.cluster_domain).await {
                    Ok(d) => {
                        dns = Some(d);
                        Some(crate::pod::dns::ClusterDns { server: gw, domain: config.cluster_domain.clone() })
                    }
                    Err(e) => {
                        warn!(error = %e, "cluster DNS did not start; pods get the host's resolv.conf");
                        None
                    }
                }
            }
            _ => None,
        };
        let network = tokio::spawn(crate::net::run(
            client.clone(),
            crate::net::NetConfig::new(&config.node_name, &net, &conf_dir),
            std::future::pending::<()>(),
        ));
        let lease = tokio::spawn(node::lease::lease_loop(
            client.clone(),
            config.node_name.clone(),
            Some(node_obj),
        ));
        let (pressure_tx, pressure_rx) = tokio::sync::watch::channel(node::PressureState::default());
        let (evict_tx, evict_rx) = tokio::sync::mpsc::channel(16);
        let eviction = tokio::spawn(node::evict::eviction_loop(
            client.clone(),
            cri.clone(),
            node::evict::EvictionParams {
                node_name: config.node_name.clone(),
                data_dir: data.clone(),
                thresholds: [&config.eviction_hard[..], &config.eviction_soft[..]].concat(),
                max_pod_grace_period_seconds: config.eviction_max_pod_grace_period_seconds,
                transition: config.eviction_pressure_transition_period,
            },
            pressure_tx,
            evict_tx,
        ));
        let image_gc = tokio::spawn(node::image_gc::image_gc_loop(
            cri.clone(),
            node::image_gc::ImageGcParams {
                data_dir: data.clone(),
                node_name: config.node_name.clone(),
                policy: config.image_gc,
            },
        ));
        let node_status = tokio::spawn(node::status_loop(
            client.clone(),
            cri.clone(),
            params.clone(),
            status,
            pressure_rx,
        ));
        let sweeper = tokio::spawn(crate::local_path::sweep_loop(
            client.clone(),
            crate::local_path::root(data),
        ));
        let pod_events = (!crate::pod::pleg::disabled_by_env())
            .then(|| Arc::new(crate::pod::pleg::PodEvents::default()));
        let relist = pod_events.clone().map(|events| {
            tokio::spawn(crate::pod::pleg::relist_loop(
                cri.clone(),
                config.node_name.clone(),
                events,
            ))
        });
        let ctx = Arc::new(WorkerContext {
            cri: cri.clone(),
            client: client.clone(),
            data_dir: data.clone(),
            host_ip: node_ip.to_string(),
            node_name: config.node_name.clone(),
            cluster_dns,
            pod_starts: Arc::new(tokio::sync::Semaphore::new(
                config.max_parallel_pod_starts.max(1),
            )),
            pod_events,
        });
        let pods = PodManager::new(ctx)
            .with_evictions(evict_rx)
            .run(shutdown)
            .await;
        if let Some((server, watches)) = dns {
            server.stop();
            watches.abort();
        }
        lease.abort();
        if let Some(relist) = relist {
            relist.abort();
        }
        eviction.abort();
        image_gc.abort();
        sweeper.abort();
        node_status.abort();
        network.abort();
        pods.map_err(AgentError::from)
    }
    .await;
    server.stop();
    info!("agent stopped; pods keep running");
    result
}

/// The bridge gateway of a pod CIDR: its first address (the CNI bridge
/// plugin's default gateway).
fn gateway(c: &cni::Cidr) -> IpAddr {
    match c.addr {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) + 1)),
        v6 => v6,
    }
}

/// The node's `spec.podCIDR`, waiting up to `wait` for the server's node
/// IPAM controller to assign it when registration returned none.
async fn wait_for_pod_cidr(
    client: &kube::Client,
    node: &k8s_openapi::api::core::v1::Node,
    wait: Duration,
) -> Option<String> {
    let of = |n: &k8s_openapi::api::core::v1::Node| {
        n.spec
            .as_ref()
            .and_then(|s| s.pod_cidr.clone())
            .filter(|c| !c.is_empty())
    };
    if let Some(c) = of(node) {
        return Some(c);
    }
    let name = node.metadata.name.clone()?;
    let api: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Ok(n) = api.get(&name).await {
            if let Some(c) = of(&n) {
                return Some(c);
            }
        }
    }
    None
}

/// Stops and removes every sandbox and container known to the CRI runtime
/// at `socket`. For test harnesses, before stopping containerd.
pub async fn cleanup_all_pods(socket: &Path) -> Result<(), CriError> {
    let rt = RemoteRuntime::connect(socket).await?;
    let r = crate::pod::teardown_everything(&rt).await;
    if let Err(e) = &r {
        warn!("cleanup_all_pods: {e}");
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn run_future_is_send_so_it_can_be_spawned() {
        let config = AgentConfig::new("https://127.0.0.1:6443", "t", "/nonexistent");
        let fut = run(config, async {});
        assert_send(&fut);
    }

    #[tokio::test]
    async fn bad_token_fails_fast_and_shutdown_stops_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let config = AgentConfig::new("https://127.0.0.1:1", "not-a-token", dir.path());
        let err = run(config, std::future::pending()).await.unwrap_err();
        assert!(
            matches!(
                err,
                AgentError::Bootstrap(BootstrapError::MalformedToken(_))
            ),
            "{err}"
        );

        // A server that is not up: the agent waits until told to stop.
        let token = format!("SK10{}::node:x", "ab".repeat(32));
        let config = AgentConfig::new("https://127.0.0.1:1", token, dir.path());
        let stop = tokio::time::sleep(Duration::from_millis(300));
        assert!(run(config, stop).await.is_ok());
    }
}
