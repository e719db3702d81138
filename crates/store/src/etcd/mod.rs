//! The etcd v3 gRPC API, served over the store, so that etcdctl and other
//! etcd clients (v3.4 wire protocol) work against Skiff unchanged.
//!
//! ```text
//!  etcdctl ── gRPC (h2c) ──► tonic Server
//!                              ├─ etcdserverpb.KV           kv.rs          ─► Kv::range/put/…
//!                              ├─ etcdserverpb.Watch        watch.rs       ─► Kv::watch (one task per watch)
//!                              ├─ etcdserverpb.Lease        lease.rs       ─► Lease::lease_*
//!                              └─ etcdserverpb.Maintenance  maintenance.rs ─► Store::status
//!  errors: StoreError ─► tonic::Status with etcd's codes and messages (status.rs)
//! ```
//!
//! The messages are Skiff's own `proto/etcd/*.proto` (etcd's field numbers,
//! only the fields served). Range is linearizable unless `serializable`
//! is set (then it is served from this server's applied state, possibly
//! stale on a follower). Not served: sorting by anything but key order is
//! done in memory after the read; nested txns, range compares, `ignore_value`
//! and `ignore_lease` are refused with `Unimplemented`; the Auth, Cluster and
//! most Maintenance RPCs are absent (`Unimplemented`).

mod bench;
mod convert;
mod kv;
mod lease;
mod maintenance;
pub mod pb;
pub(crate) mod status;
mod watch;

use std::future::Future;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use crate::error::StoreError;
use crate::Store;
use pb::etcdserverpb::kv_server::KvServer;
use pb::etcdserverpb::lease_server::LeaseServer;
use pb::etcdserverpb::maintenance_server::MaintenanceServer;
use pb::etcdserverpb::watch_server::WatchServer;

pub use bench::{drive_etcd_api, quantile_f64, BenchPhase, BenchResult, EtcdLoad};
pub use status::to_status;

/// The version reported by `Status` (and so by `etcdctl endpoint status`):
/// the etcd API version Skiff speaks. A plain semantic version, because etcd
/// clients parse it (clientv3's version checks split it on dots).
pub const ETCD_API_VERSION: &str = "3.4.0";

/// Largest gRPC message accepted: etcd's default `--max-request-bytes`
/// (1.5 MiB) plus the 512 KiB it adds for gRPC overhead.
pub const MAX_GRPC_REQUEST_BYTES: usize = 1536 * 1024 + 512 * 1024;

/// The handle every service holds.
#[derive(Clone)]
pub(crate) struct EtcdApi {
    pub(crate) store: Store,
    /// Turns true when the server shuts down; stream tasks end on it (tonic's
    /// graceful shutdown otherwise waits for every open watch forever).
    pub(crate) stop: tokio::sync::watch::Receiver<bool>,
}

impl EtcdApi {
    /// Resolves once the server is shutting down.
    pub(crate) fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stop = self.stop.clone();
        async move {
            // An error means the sender is gone: the server is over too.
            let _ = stop.wait_for(|s| *s).await;
        }
    }
}

/// Serve the etcd v3 API (KV, Watch, Lease, Maintenance) for `store` on
/// `listener` (plain HTTP/2, no TLS: bind it to localhost) until `shutdown`
/// completes. Open watch and keep-alive streams end at shutdown.
pub async fn serve_etcd_api(
    store: Store,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StoreError> {
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let api = EtcdApi { store, stop };
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    // TCP_NODELAY on every accepted connection: `Server::tcp_nodelay` only
    // applies to listeners tonic binds itself, and without it Nagle's
    // algorithm holds back the small last frame of a response until the
    // client's delayed ACK (~40 ms per request).
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(KvServer::new(api.clone()).max_decoding_message_size(MAX_GRPC_REQUEST_BYTES))
        .add_service(WatchServer::new(api.clone()))
        .add_service(LeaseServer::new(api.clone()))
        .add_service(MaintenanceServer::new(api))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| StoreError::Transport(format!("etcd API server: {e}")))
}
