//! Helpers shared by the store's integration tests, and the two backends
//! the behaviour tests run against: the embedded [`Store`] and a real etcd
//! (Debian's `etcd-server`) through [`RemoteStore`].
#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use skiff_store::etcd_process::EtcdCluster;
use skiff_store::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, Kv, Lease, PutRequest, RangeRequest,
    RemoteStore, Store, StoreConfig,
};

/// Which implementation of the store contract a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Skiff's embedded store ([`Store`]).
    Embedded,
    /// A one-member etcd started for the test, through [`RemoteStore`].
    Etcd,
}

/// Both traits, so one handle serves every test.
pub trait KvLease: Kv + Lease {}
impl<T: Kv + Lease> KvLease for T {}

enum Owner {
    Embedded(Store),
    /// The etcd process lives as long as the last clone of the handle (or
    /// until `shutdown`); dropping it kills etcd.
    Etcd(RemoteStore, Mutex<Option<EtcdCluster>>),
}

/// A store under test: derefs to the [`Kv`] and [`Lease`] contracts.
#[derive(Clone)]
pub struct Subject {
    kv: Arc<dyn KvLease>,
    owner: Arc<Owner>,
}

impl std::ops::Deref for Subject {
    type Target = dyn KvLease;
    fn deref(&self) -> &Self::Target {
        &*self.kv
    }
}

impl Subject {
    /// Stop the store: the embedded one shuts down; for etcd, the client
    /// ends its watches, then etcd is stopped (SIGTERM), keeping its data.
    pub async fn shutdown(&self) {
        match &*self.owner {
            Owner::Embedded(s) => s.shutdown().await,
            Owner::Etcd(remote, etcd) => {
                remote.shutdown().await;
                let cluster = etcd.lock().unwrap().take();
                if let Some(mut cluster) = cluster {
                    tokio::task::spawn_blocking(move || {
                        for m in &mut cluster.members {
                            m.stop();
                        }
                    })
                    .await
                    .unwrap();
                }
            }
        }
    }
}

/// Open a store of kind `backend` in `dir` with default settings (again:
/// a second open of the same `dir` finds the data of the first).
pub async fn open(backend: Backend, dir: &Path) -> Subject {
    match backend {
        Backend::Embedded => embedded(StoreConfig::new(dir)).await,
        Backend::Etcd => {
            let cluster = EtcdCluster::start(&dir.join("etcd"), 1)
                .await
                .unwrap_or_else(|e| panic!("starting etcd for the test: {e}"));
            let remote = RemoteStore::connect(&cluster.endpoints())
                .await
                .expect("connect to etcd");
            Subject {
                kv: Arc::new(remote.clone()),
                owner: Arc::new(Owner::Etcd(remote, Mutex::new(Some(cluster)))),
            }
        }
    }
}

/// Open the embedded store in `dir` (for tests of the embedded store
/// alone: durability, restarts).
pub async fn open_store(dir: &Path) -> Store {
    Store::open(StoreConfig::new(dir))
        .await
        .expect("open store")
}

/// Anything the helpers below can write through.
pub trait AsKv {
    /// The key-value contract.
    fn as_kv(&self) -> &dyn Kv;
}

impl AsKv for Store {
    fn as_kv(&self) -> &dyn Kv {
        self
    }
}

impl AsKv for Subject {
    fn as_kv(&self) -> &dyn Kv {
        &*self.kv
    }
}

/// Open the embedded store with `config`.
pub async fn embedded(config: StoreConfig) -> Subject {
    let s = Store::open(config).await.expect("open store");
    Subject {
        kv: Arc::new(s.clone()),
        owner: Arc::new(Owner::Embedded(s)),
    }
}

/// Run each named `async fn name(backend: Backend)` as two tests,
/// `embedded::name` and `etcd::name`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Embedded).await
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Etcd).await
                }
            )*
        }
    };
}

pub fn put_req(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        ..Default::default()
    }
}

pub async fn put(s: &impl AsKv, key: &str, value: &str) -> i64 {
    s.as_kv()
        .put(put_req(key, value))
        .await
        .expect("put")
        .revision
}

pub fn get_req(key: &str) -> RangeRequest {
    RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    }
}

pub fn prefix_req(prefix: &str) -> RangeRequest {
    RangeRequest {
        key: prefix.as_bytes().to_vec(),
        range_end: skiff_store::prefix_end(prefix.as_bytes()),
        ..Default::default()
    }
}

pub fn del_req(key: &str) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    }
}

pub fn cmp(key: &str, result: CompareResult, target: CompareTarget) -> Compare {
    Compare {
        key: key.as_bytes().to_vec(),
        result,
        target,
    }
}

pub fn value_of(s: &[u8]) -> String {
    String::from_utf8_lossy(s).into_owned()
}
