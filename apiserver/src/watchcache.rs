//! The watch cache: lists and watches served from memory, fed by one
//! store watch (kube-apiserver's `pkg/storage/cacher`).
//!
//! ```text
//!  store ──range /registry/ at R (chunked)──► CacheState::replace
//!        ──watch every key from R+1────────► decode (outside the lock)
//!                                             └► CacheState::apply ─► rings
//!                                                  │                 └► watcher buffers (bounded)
//!  lists  ─ wait until revision ≥ wanted ─► CacheState::list
//!  watches ─ register (snapshot or ring replay + live) ─► watch.rs
//! ```
//!
//! Contracts:
//! - One cache per server over every key (`\0`..): the store bumps its
//!   revision only for writes that produce events, so watching the whole
//!   keyspace makes the cache's revision reach the store's exactly, and a
//!   consistent list can wait for it (KEP-2340, "consistent reads from
//!   cache"). Only keys under a prefix of [`RESOURCES`] are kept; one bucket
//!   per storage prefix, so the resource table can grow freely. Custom
//!   resources' prefixes are added at run time ([`WatchCache::cache_prefix`],
//!   called by [`crate::crd_registry`]): the cache's task reads the prefix
//!   at its own revision between two store batches.
//! - Each object is held once, as its JSON with `resourceVersion` set plus
//!   the labels and field-selector values of its kind
//!   ([`crate::cached_object`]); lists and watch events copy those bytes,
//!   and selectors read the recorded values without decoding.
//! - The store watch is opened without `prev_kv`: the cache already holds
//!   each object's previous state, so a second copy per event would only
//!   cost memory.
//! - If the store watch ends (compaction while lagging, store restart,
//!   error), the cache relists and rewatches after [`RELIST_BACKOFF_MIN`];
//!   every watcher is closed then, and its client rewatches.
//! - Until the first list is loaded the cache is not ready and callers use
//!   the store directly.
//!
//! Caveats: watchers are not indexed (each change is tested against every
//! watcher of its resource; kube-apiserver indexes by namespace, name and
//! `spec.nodeName`); the ring is a fixed number of events per resource
//! ([`WatchCacheConfig::events_per_resource`]), not kube-apiserver's
//! time-sized one.
//!
//! [`RESOURCES`]: crate::resources::RESOURCES

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use futures::StreamExt;
use skiff_store::{prefix_end, EventType, Kv, RangeRequest, Revision, StoreError, WatchRequest};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use crate::error::ApiError;
use crate::resources::{ResourceInfo, RESOURCES};
use crate::watchcache_state::{storage_prefix_of, CacheState, Change};
pub use crate::watchcache_state::{
    CachedEvent, CachedObject, CachedPage, EventKind, Initial, Obj, RegisterError, SharedEvent,
    WatchFilter, WatchItem, WatchStart,
};

/// How long a read waits for the cache to reach the revision it needs
/// before giving up (kube-apiserver's `blockTimeout` for
/// `waitUntilFreshAndBlock`, 3 s).
pub const FRESHNESS_TIMEOUT: Duration = Duration::from_secs(3);

/// First wait before relisting after the store watch broke; doubles up to
/// [`RELIST_BACKOFF_MAX`] while relisting keeps failing.
pub const RELIST_BACKOFF_MIN: Duration = Duration::from_millis(100);

/// Longest wait between relist attempts.
pub const RELIST_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Keys read per step of the initial list, so that loading 10,000 pods
/// never holds them all twice (raw and decoded) at once.
const LIST_CHUNK_KEYS: i64 = 500;

/// How big the cache's buffers are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchCacheConfig {
    /// Events kept per resource for watch resumption; a watch from an older
    /// resourceVersion gets 410 Expired.
    pub events_per_resource: usize,
    /// Events buffered per watcher; a watcher further behind is closed.
    pub watcher_buffer: usize,
}

impl Default for WatchCacheConfig {
    /// 4,096 events per resource (a few minutes of a busy edge cluster,
    /// within kube-apiserver's 100..102,400 range) and 1,024 per watcher.
    fn default() -> Self {
        WatchCacheConfig {
            events_per_resource: 4096,
            watcher_buffer: 1024,
        }
    }
}

/// Why the cache cannot serve a watch.
#[derive(Debug, thiserror::Error)]
pub enum WatchCacheError {
    /// The resourceVersion is older than the ring (or was compacted in the
    /// store): 410 Expired, the client relists.
    #[error("too old resource version: {requested} ({oldest})")]
    TooOld {
        /// The revision asked for.
        requested: Revision,
        /// The oldest revision a watch can start after.
        oldest: Revision,
    },
    /// The cache did not reach the revision in time: 504, retryable.
    #[error("too large resource version: {requested}, current: {current}")]
    TooLarge {
        /// The revision asked for.
        requested: Revision,
        /// The cache's revision.
        current: Revision,
    },
    /// The cache is not loaded (starting, or relisting). Retryable; callers
    /// fall back to the store.
    #[error("the watch cache is not ready")]
    NotReady,
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<WatchCacheError> for ApiError {
    fn from(e: WatchCacheError) -> Self {
        match e {
            WatchCacheError::TooOld { .. } => ApiError::Gone(e.to_string()),
            WatchCacheError::TooLarge { requested, current } => {
                ApiError::TooLargeResourceVersion { requested, current }
            }
            WatchCacheError::NotReady => {
                ApiError::Unavailable("the watch cache is not ready yet".into())
            }
            WatchCacheError::Store(s) => s.into(),
        }
    }
}

/// A registered cached watch. Dropping it unregisters the watcher.
pub struct CacheWatch {
    /// The revision the snapshot shows or the replay reaches.
    pub revision: Revision,
    /// The snapshot (as ADDED) or the replayed events.
    pub initial: Initial,
    /// Live events; `None` once the cache closed this watcher (too slow,
    /// or a relist).
    pub events: mpsc::Receiver<WatchItem>,
    cache: Arc<WatchCache>,
    bucket: usize,
    id: u64,
}

impl Drop for CacheWatch {
    fn drop(&mut self) {
        self.cache.write().unregister(self.bucket, self.id);
    }
}

/// The server's watch cache. See the module doc.
pub struct WatchCache {
    kv: Arc<dyn Kv>,
    config: WatchCacheConfig,
    state: RwLock<CacheState>,
    ready: AtomicBool,
    revision: watch::Sender<Revision>,
    /// Storage prefixes to start caching (custom resources), and the
    /// signal that there are some.
    wanted: Mutex<Vec<String>>,
    wanted_signal: Notify,
    /// The kind stored under each built-in storage prefix: it decides which
    /// field-selector values a cached object records. Custom objects use
    /// their own `kind`.
    kinds: HashMap<String, &'static str>,
}

impl WatchCache {
    /// An empty cache over `kv` for every resource in [`RESOURCES`]; it
    /// fills once [`WatchCache::spawn`] runs.
    pub fn new(kv: Arc<dyn Kv>, config: WatchCacheConfig) -> Arc<WatchCache> {
        let prefixes: Vec<String> = RESOURCES.iter().map(|r| r.storage_prefix()).collect();
        let state = CacheState::new(
            prefixes.iter().map(String::as_str),
            config.events_per_resource,
        );
        let mut kinds = HashMap::new();
        for (prefix, r) in prefixes.into_iter().zip(RESOURCES.iter()) {
            kinds.entry(prefix).or_insert(r.kind);
        }
        Arc::new(WatchCache {
            kv,
            config,
            state: RwLock::new(state),
            ready: AtomicBool::new(false),
            revision: watch::channel(0).0,
            wanted: Mutex::new(Vec::new()),
            wanted_signal: Notify::new(),
            kinds,
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, CacheState> {
        // A panic while holding the lock leaves consistent data (every
        // mutation is a plain insert/remove), so poisoning is ignored.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, CacheState> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The buffer sizes.
    pub fn config(&self) -> WatchCacheConfig {
        self.config
    }

    /// Whether the cache holds a list and follows the store.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Every store event up to this revision is in the cache.
    pub fn revision(&self) -> Revision {
        self.read().revision()
    }

    /// Number of cached objects.
    pub fn object_count(&self) -> usize {
        self.read().object_count()
    }

    /// Number of registered watchers.
    pub fn watcher_count(&self) -> usize {
        self.read().watcher_count()
    }

    /// Waits until the cache has reached `revision`; `false` after
    /// `timeout` or if the cache is not ready.
    pub async fn wait_for(&self, revision: Revision, timeout: Duration) -> bool {
        let mut rx = self.revision.subscribe();
        let reached =
            tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision && self.is_ready())).await;
        matches!(reached, Ok(Ok(_)))
    }

    /// Waits until the cache has caught up with the store's current
    /// revision (a consistent read from cache); `false` on timeout.
    pub async fn wait_fresh(&self) -> Result<bool, StoreError> {
        let current = self.kv.current_revision().await?;
        Ok(self.wait_for(current, FRESHNESS_TIMEOUT).await)
    }

    /// Asks the cache to start caching a storage prefix (a custom
    /// resource's). The cache's own task reads the prefix at the cache's
    /// revision between two store batches, so no change is missed or
    /// applied twice; until then lists and watches of it use the store.
    pub fn cache_prefix(&self, prefix: &str) {
        if self.read().bucket(prefix).is_some() {
            return;
        }
        self.wanted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(prefix.to_string());
        self.wanted_signal.notify_one();
    }

    /// Adds the buckets [`WatchCache::cache_prefix`] asked for. Runs in the
    /// cache's task, so the state's revision cannot move meanwhile.
    async fn add_wanted(&self) -> Result<(), StoreError> {
        let wanted = std::mem::take(&mut *self.wanted.lock().unwrap_or_else(|p| p.into_inner()));
        for (i, prefix) in wanted.iter().enumerate() {
            if self.read().bucket(prefix).is_some() {
                continue;
            }
            let at = self.read().revision();
            match self
                .list_range(prefix.as_bytes().to_vec(), at, |_| true)
                .await
            {
                Ok((objects, _)) => self.write().add_bucket(prefix, objects),
                Err(e) => {
                    // Ask again after the relist this error causes.
                    self.wanted
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .extend(wanted[i..].iter().cloned());
                    self.wanted_signal.notify_one();
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn bucket(&self, resource: &ResourceInfo) -> Option<usize> {
        self.read().bucket(&resource.storage_prefix())
    }

    /// One page of `resource` objects under `prefix` from key `start`, at
    /// the cache's current revision; `None` if the cache cannot serve it.
    pub fn list(
        &self,
        resource: &ResourceInfo,
        prefix: &str,
        start: &str,
        limit: usize,
        filter: impl Fn(&CachedObject) -> bool,
    ) -> Option<CachedPage> {
        let bucket = self.bucket(resource)?;
        let state = self.read();
        state
            .ready()
            .then(|| state.list(bucket, prefix, start, limit, filter))
    }

    /// Whether no `resource` object changed after `revision` (and the cache
    /// has reached it): what was read from the cache at `revision` is
    /// still current. Lets readers keep a structure derived from a
    /// resource (the RBAC policy) until the resource changes.
    pub fn unchanged_since(&self, resource: &ResourceInfo, revision: Revision) -> bool {
        let Some(bucket) = self.bucket(resource) else {
            return false;
        };
        self.read().can_serve_at(bucket, revision)
    }

    /// Like [`WatchCache::list`], but only if the cache can show exactly
    /// `revision` (nothing of this resource changed since): the next page
    /// of a list begun at `revision`.
    pub fn list_at(
        &self,
        resource: &ResourceInfo,
        prefix: &str,
        start: &str,
        revision: Revision,
        limit: usize,
        filter: impl Fn(&CachedObject) -> bool,
    ) -> Option<CachedPage> {
        let bucket = self.bucket(resource)?;
        let state = self.read();
        if !state.can_serve_at(bucket, revision) {
            return None;
        }
        let mut page = state.list(bucket, prefix, start, limit, filter);
        page.revision = revision;
        Some(page)
    }

    /// Starts a cached watch on `resource` with `filter`. A start after
    /// revision N waits (up to [`FRESHNESS_TIMEOUT`]) for the cache to
    /// reach N, and is refused with [`WatchCacheError::TooOld`] if N is
    /// older than the ring or compacted in the store (so that a cached and
    /// an uncached server answer alike).
    pub async fn watch(
        self: &Arc<Self>,
        resource: &ResourceInfo,
        filter: WatchFilter,
        start: WatchStart,
    ) -> Result<CacheWatch, WatchCacheError> {
        if !self.is_ready() {
            return Err(WatchCacheError::NotReady);
        }
        let bucket = self.bucket(resource).ok_or(WatchCacheError::NotReady)?;
        if let WatchStart::After(n) = start {
            if !self.wait_for(n, FRESHNESS_TIMEOUT).await {
                return Err(WatchCacheError::TooLarge {
                    requested: n,
                    current: self.revision(),
                });
            }
            if n < self.revision() {
                self.check_not_compacted(n).await?;
            }
        }
        let (tx, rx) = mpsc::channel(self.config.watcher_buffer.max(1));
        let reg = self
            .write()
            .register(bucket, Arc::new(filter), start, tx)
            .map_err(|e| match e {
                RegisterError::TooOld { requested, oldest } => {
                    WatchCacheError::TooOld { requested, oldest }
                }
                RegisterError::UnknownPrefix => WatchCacheError::NotReady,
            })?;
        Ok(CacheWatch {
            revision: reg.revision,
            initial: reg.initial,
            events: rx,
            cache: self.clone(),
            bucket,
            id: reg.id,
        })
    }

    /// 410 if the store compacted the revisions after `n`: a store watch
    /// from `n + 1` is refused at once then, and costs nothing otherwise.
    async fn check_not_compacted(&self, n: Revision) -> Result<(), WatchCacheError> {
        let probe = WatchRequest {
            key: b"/registry/".to_vec(),
            range_end: Vec::new(),
            start_revision: n + 1,
            prev_kv: false,
        };
        match self.kv.watch(probe).await {
            Ok(_) => Ok(()),
            Err(StoreError::Compacted {
                compact_revision, ..
            }) => Err(WatchCacheError::TooOld {
                requested: n,
                oldest: compact_revision,
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Starts the reflector: list, watch, apply, until `stop` turns true.
    pub fn spawn(self: &Arc<Self>, stop: watch::Receiver<bool>) -> JoinHandle<()> {
        let cache = self.clone();
        tokio::spawn(async move { cache.run(stop).await })
    }

    async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut backoff = RELIST_BACKOFF_MIN;
        loop {
            let outcome = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                r = self.list_and_watch() => r,
            };
            match outcome {
                Ok(()) => backoff = RELIST_BACKOFF_MIN,
                Err(e) => {
                    tracing::warn!(error = %e, "watch cache: store list/watch failed; relisting");
                }
            }
            self.ready.store(false, Ordering::Release);
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(RELIST_BACKOFF_MAX);
        }
    }

    /// One list, then the watch from the list's revision until it ends.
    async fn list_and_watch(&self) -> Result<(), StoreError> {
        let (objects, revision) = self.initial_list().await?;
        let mut stream = self
            .kv
            .watch(WatchRequest {
                // Every key: see the module doc.
                key: vec![0],
                range_end: vec![0],
                start_revision: revision + 1,
                prev_kv: false,
            })
            .await?;
        let closed = self.write().replace(objects, revision);
        if closed > 0 {
            tracing::info!(closed, "watch cache relisted; closed its watchers");
        }
        // Ready first, then the revision: a waiter woken by the revision
        // must see the cache ready (wait_for checks both).
        self.ready.store(true, Ordering::Release);
        self.revision.send_replace(revision);
        tracing::debug!(revision, "watch cache loaded");
        loop {
            tokio::select! {
                batch = stream.next() => match batch {
                    Some(batch) => self.apply(batch?),
                    None => break,
                },
                _ = self.wanted_signal.notified() => self.add_wanted().await?,
            }
        }
        Err(StoreError::Stopped("the store watch ended".into()))
    }

    /// Every cached object under `/registry/` at one revision.
    async fn initial_list(&self) -> Result<(Vec<(String, Obj)>, Revision), StoreError> {
        self.list_range(b"/registry/".to_vec(), 0, |key| self.read().caches(key))
            .await
    }

    /// The objects under `prefix` whose key passes `keep`, at `revision`
    /// (0: the latest), read in chunks; and the revision read at.
    async fn list_range(
        &self,
        prefix: Vec<u8>,
        mut revision: Revision,
        keep_key: impl Fn(&str) -> bool,
    ) -> Result<(Vec<(String, Obj)>, Revision), StoreError> {
        let end = prefix_end(&prefix);
        let mut start = prefix;
        let mut out = Vec::new();
        let mut keep = Vec::new();
        loop {
            let resp = self
                .kv
                .range(RangeRequest {
                    key: start.clone(),
                    range_end: end.clone(),
                    limit: LIST_CHUNK_KEYS,
                    revision,
                    ..Default::default()
                })
                .await?;
            if revision == 0 {
                revision = resp.revision;
            }
            keep.clear();
            for kv in &resp.kvs {
                keep.push(std::str::from_utf8(&kv.key).is_ok_and(&keep_key));
            }
            for (kv, keep) in resp.kvs.iter().zip(&keep) {
                if !keep {
                    continue;
                }
                let key = String::from_utf8_lossy(&kv.key).into_owned();
                match self.decode(&key, &kv.value, kv.mod_revision) {
                    Ok(obj) => out.push((key, Arc::new(obj))),
                    Err(e) => tracing::warn!(
                        key = %String::from_utf8_lossy(&kv.key), error = %e,
                        "watch cache: skipping an object that does not decode"
                    ),
                }
            }
            match resp.kvs.last() {
                Some(last) if resp.more => {
                    start = last.key.clone();
                    start.push(0);
                }
                _ => return Ok((out, revision)),
            }
        }
    }

    /// Decodes a stored object under `key` for the cache, recording the
    /// field-selector values of the kind stored there.
    fn decode(
        &self,
        key: &str,
        bytes: &[u8],
        revision: Revision,
    ) -> Result<CachedObject, ApiError> {
        let kind = storage_prefix_of(key).and_then(|p| self.kinds.get(p).copied());
        CachedObject::decode(bytes, revision, kind)
    }

    /// Decodes one store batch (outside the lock) and applies it.
    fn apply(&self, batch: skiff_store::WatchResponse) {
        if batch.events.is_empty() {
            // A progress notification: everything up to here was sent.
            self.write().advance(batch.revision);
            self.publish(batch.revision);
            return;
        }
        let mut last = 0;
        let mut changes = Vec::with_capacity(batch.events.len());
        {
            let state = self.read();
            for ev in batch.events {
                last = last.max(ev.kv.mod_revision);
                let Ok(key) = String::from_utf8(ev.kv.key) else {
                    continue;
                };
                if !state.caches(&key) {
                    continue;
                }
                let object = match ev.kind {
                    EventType::Delete => None,
                    EventType::Put => match self.decode(&key, &ev.kv.value, ev.kv.mod_revision) {
                        Ok(o) => Some(Arc::new(o)),
                        Err(e) => {
                            tracing::warn!(%key, error = %e, "watch cache: object does not decode; treating it as deleted");
                            None
                        }
                    },
                };
                changes.push(Change {
                    revision: ev.kv.mod_revision,
                    key,
                    object,
                });
            }
        }
        let stats = {
            let mut state = self.write();
            let stats = state.apply(changes);
            state.advance(last);
            stats
        };
        if stats.closed_slow > 0 {
            tracing::info!(
                closed = stats.closed_slow,
                last = stats.slow.as_deref().unwrap_or(""),
                "watch cache: closed watchers too slow to keep up"
            );
        }
        self.publish(last);
    }

    /// Wakes readers waiting for `revision` (never moves backwards).
    fn publish(&self, revision: Revision) {
        // send_modify, not send_replace(max(borrow())): a borrow held
        // across a send would deadlock on the channel's lock.
        self.revision.send_modify(|r| *r = (*r).max(revision));
    }
}
