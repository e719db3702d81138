//! The listening server: TLS (rustls, ALPN `h2` and `http/1.1`; kubectl
//! speaks HTTP/2) in front of hyper-util's auto HTTP/1+2 connection
//! builder, one task per connection, every request through
//! [`dispatch::serve`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use skiff_store::{Kv, Storage};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::auth::{Admission, AllowAll, Authorizer, NoAdmission, TokenAuthenticator};
use crate::dispatch::{self, ApiState};
use crate::event_ttl::EventLeases;
use crate::pki::{self, Pki, PkiError};
use crate::rbac_authorizer::RbacAuthorizer;
use crate::registry::Registry;
use crate::resources::find;
use crate::serviceaccount_token::TokenSigner;
use crate::watchcache::{WatchCache, WatchCacheConfig};

/// The port kube-apiserver listens on by default.
pub const DEFAULT_PORT: u16 = 6443;

/// How long a client may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest [`ApiServer::shutdown`] waits for in-flight requests and
/// watches to let go of the store.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);

/// How often the bootstrap retries creating the system namespaces while
/// the store is not ready (e.g. no raft leader yet).
const BOOTSTRAP_RETRY: Duration = Duration::from_secs(1);

/// The namespaces every cluster has (kube-apiserver's
/// `SystemNamespaces` plus `default`).
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// How to run the API server.
#[derive(Clone, Debug)]
pub struct ApiServerConfig {
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Where the PKI, tokens and admin kubeconfig live.
    pub data_dir: PathBuf,
    /// Extra subject alternative names for the serving certificate.
    pub extra_sans: Vec<String>,
    /// `--service-cidr` and the node port range.
    pub service_ranges: crate::service_ranges::ServiceRanges,
    /// How long Events live after their last write (`--event-ttl`); zero
    /// keeps them until deleted.
    pub event_ttl: Duration,
    /// Run the ServiceAccount admission plugin on pod creation (default
    /// account, token volume; [`crate::serviceaccount_admission`]). It
    /// refuses pods whose account does not exist, so it needs the
    /// controllers that create each namespace's `default` account: `skiff
    /// server` turns it on; `new` leaves it off for embedders without them.
    pub service_account_admission: bool,
}

impl ApiServerConfig {
    /// Listens on `127.0.0.1:6443` with data under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ApiServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            data_dir: data_dir.into(),
            extra_sans: Vec::new(),
            service_ranges: Default::default(),
            event_ttl: crate::event_ttl::DEFAULT_EVENT_TTL,
            service_account_admission: false,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiServerError {
    /// Creating or loading certificates and tokens failed.
    #[error("pki: {0}")]
    Pki(#[from] PkiError),
    /// The ServiceAccount token signing key could not be loaded.
    #[error("service account key: {0}")]
    ServiceAccountKey(String),
    /// The serving certificate or key could not be loaded into rustls.
    #[error("tls: {0}")]
    Tls(String),
    /// Binding the listen address failed.
    #[error("listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// An in-process client could not be made ([`ApiServer::local_client`]).
    #[error("in-process client: {0}")]
    Local(String),
}

/// The request pipeline's pluggable stages (authorization, admission).
#[derive(Clone)]
pub struct Hooks {
    /// Decides who may do what; `None` for RBAC over the server's own
    /// store ([`RbacAuthorizer`]), e.g. `Some(Arc::new(AllowAll))` for none.
    pub authorizer: Option<Arc<dyn Authorizer>>,
    /// Mutates and validates objects before they are stored.
    pub admission: Arc<dyn Admission>,
}

impl Default for Hooks {
    /// RBAC; no admission plugins.
    fn default() -> Self {
        Hooks {
            authorizer: None,
            admission: Arc::new(NoAdmission),
        }
    }
}

impl Hooks {
    /// Every authenticated request allowed (no RBAC); no admission plugins.
    pub fn allow_all() -> Self {
        Hooks {
            authorizer: Some(Arc::new(AllowAll)),
            ..Hooks::default()
        }
    }
}

/// A running API server. Stop it with [`ApiServer::shutdown`]; dropping it
/// also stops it (without waiting).
pub struct ApiServer {
    local_addr: SocketAddr,
    url: String,
    pki: Pki,
    kubeconfig_path: PathBuf,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    /// The watch cache's reflector (holds the store until it ends).
    cache_task: Option<JoinHandle<()>>,
    crd_task: Option<JoinHandle<()>>,
    /// Alive while any request or watch still runs; shutdown waits for it
    /// so that the caller can close the store right after.
    state: Weak<ApiState>,
}

fn tls_config(pki: &Pki) -> Result<rustls::ServerConfig, ApiServerError> {
    let certs = rustls_pemfile::certs(&mut pki.server_cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiServerError::Tls(format!("serving certificate: {e}")))?;
    let key = rustls_pemfile::private_key(&mut pki.server_key_pem.as_bytes())
        .map_err(|e| ApiServerError::Tls(format!("serving key: {e}")))?
        .ok_or_else(|| ApiServerError::Tls("serving key: no key in PEM".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ApiServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ApiServerError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Creates the system namespaces, the default RBAC policy and the
/// `kubernetes` Service if missing;
/// `false` if the store failed.
async fn bootstrap(state: &ApiState) -> bool {
    let registry = &state.registry;
    let Some(namespaces) = find("", "v1", "namespaces") else {
        return true;
    };
    for ns in SYSTEM_NAMESPACES {
        let mut obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}, "spec": {"finalizers": ["kubernetes"]}});
        crate::strategy::prepare_for_create(namespaces, &mut obj, chrono::Utc::now());
        if let Err(e) = registry.ensure(namespaces, None, ns, obj).await {
            tracing::warn!(namespace = ns, error = %e, "creating system namespace failed; will retry");
            return false;
        }
    }
    if let Err(e) = crate::rbac_bootstrap::ensure(registry).await {
        tracing::warn!(error = %e, "creating the default RBAC policy failed; will retry");
        return false;
    }
    let ranges = &state.service_ranges;
    if let Err(e) =
        crate::services::ensure_kubernetes_service(registry, ranges, &state.server_address).await
    {
        tracing::warn!(error = %e, "creating the kubernetes Service failed; will retry");
        return false;
    }
    true
}

impl ApiServer {
    /// Loads or creates the PKI, binds, writes the admin kubeconfig, creates
    /// the system namespaces and starts serving in the background.
    pub async fn start(
        config: ApiServerConfig,
        store: Arc<dyn Storage>,
    ) -> Result<ApiServer, ApiServerError> {
        Self::start_with_hooks(config, store, Hooks::default()).await
    }

    /// [`ApiServer::start`] with a chosen authorizer and admission chain.
    pub async fn start_with_hooks(
        config: ApiServerConfig,
        store: Arc<dyn Storage>,
        hooks: Hooks,
    ) -> Result<ApiServer, ApiServerError> {
        Self::start_with_cache(config, store, hooks, WatchCacheConfig::default()).await
    }

    /// [`ApiServer::start_with_hooks`] with chosen watch cache sizes.
    pub async fn start_with_cache(
        config: ApiServerConfig,
        store: Arc<dyn Storage>,
        hooks: Hooks,
        cache: WatchCacheConfig,
    ) -> Result<ApiServer, ApiServerError> {
        let kv: Arc<dyn Kv> = store.clone();
        let pki = pki::load_or_create(&config.data_dir, &config.extra_sans)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(&pki)?));
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ApiServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ApiServerError::Bind {
                addr: config.listen,
                source,
            })?;
        // Clients reach an unspecified address (0.0.0.0, ::) via loopback.
        let reach = if local_addr.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], local_addr.port()))
        } else {
            local_addr
        };
        let url = format!("https://{reach}");
        let kubeconfig_path = config.data_dir.join("admin.kubeconfig");
        pki::write_atomic(
            &kubeconfig_path,
            pki::kubeconfig(&url, &pki.ca_pem, &pki.admin_token).as_bytes(),
            0o600,
        )?;

        let (stop, stop_rx) = watch::channel(false);
        // The cache loads in the background; until it is ready, lists and
        // watches go to the store.
        let watch_cache = WatchCache::new(kv.clone(), cache);
        let cache_task = watch_cache.spawn(stop_rx.clone());
        let crds = crate::crd_registry::CrdRegistry::new(Some(watch_cache.clone()));
        let crd_task = crds.spawn(kv.clone(), stop_rx.clone());
        let mut registry = Registry::with_cache(kv, watch_cache);
        if !config.event_ttl.is_zero() {
            registry =
                registry.with_event_leases(Arc::new(EventLeases::new(store, config.event_ttl)));
        }
        let signer = TokenSigner::from_pem(&pki.service_account_key_pem)
            .map_err(ApiServerError::ServiceAccountKey)?;
        let authz = match hooks.authorizer {
            Some(a) => a,
            None => Arc::new(RbacAuthorizer::new(registry.clone())),
        };
        let state = Arc::new(ApiState {
            registry,
            authn: TokenAuthenticator::new(&pki.admin_token, &pki.node_token)
                .with_service_accounts(Arc::new(signer)),
            authz,
            admission: hooks.admission,
            node_token: pki.node_token.clone(),
            ca_pem: pki.ca_pem.clone(),
            server_address: reach.to_string(),
            stopping: stop_rx.clone(),
            service_ranges: config.service_ranges,
            crds,
            service_account_admission: config.service_account_admission,
        });

        if !bootstrap(&state).await {
            let mut stop_rx = stop_rx.clone();
            let state = state.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop_rx.changed() => return,
                        _ = tokio::time::sleep(BOOTSTRAP_RETRY) => {
                            if bootstrap(&state).await {
                                return;
                            }
                        }
                    }
                }
            });
        }
        let weak_state = Arc::downgrade(&state);
        let task = tokio::spawn(accept_loop(listener, acceptor, state, stop_rx));
        tracing::info!(%url, "API server listening");
        Ok(ApiServer {
            local_addr,
            url,
            pki,
            kubeconfig_path,
            stop,
            task: Some(task),
            cache_task: Some(cache_task),
            crd_task: Some(crd_task),
            state: weak_state,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `https://host:port` clients use.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The cluster CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.pki.ca_pem
    }

    /// The admin bearer token.
    pub fn admin_token(&self) -> &str {
        &self.pki.admin_token
    }

    /// The node token agents join with.
    pub fn node_token(&self) -> &str {
        &self.pki.node_token
    }

    /// An admin client for components in this process (the scheduler, the
    /// controllers): same handler as over HTTPS, reached through memory
    /// instead of TLS over loopback ([`crate::local`]). `user_agent` names
    /// the component, as kube-scheduler's names it: the default field
    /// manager of its writes and the client in the server's logs.
    pub fn local_client(&self, user_agent: &str) -> Result<kube::Client, ApiServerError> {
        let state = self
            .state
            .upgrade()
            .ok_or_else(|| ApiServerError::Local("the API server stopped".into()))?;
        crate::local::client(&state, &self.pki.admin_token, user_agent)
            .map_err(ApiServerError::Local)
    }

    /// Path of the admin kubeconfig.
    pub fn kubeconfig_path(&self) -> &std::path::Path {
        &self.kubeconfig_path
    }

    /// Stops accepting, closes every connection, ends every watch, and
    /// waits (up to [`SHUTDOWN_DRAIN`]) until no task holds the store.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        for task in [self.cache_task.take(), self.crd_task.take()]
            .into_iter()
            .flatten()
        {
            let _ = task.await;
        }
        // HTTP/2 stream tasks and watch tasks finish just after their
        // connection closes.
        let deadline = tokio::time::Instant::now() + SHUTDOWN_DRAIN;
        while self.state.strong_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
        for task in [self.cache_task.take(), self.crd_task.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<ApiState>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // E.g. out of file descriptors: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let state = state.clone();
                conns.spawn(async move {
                    let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let svc = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(dispatch::serve(state, req).await) }
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    // Closing every connection also ends their watches and log streams.
    conns.shutdown().await;
}
