//! The watch cache's state: a pure, synchronous core (no I/O, no clock)
//! that [`crate::watchcache`] drives from the store's watch.
//!
//! ```text
//!  CacheState
//!   ├─ revision            every store event up to here is applied
//!   └─ Bucket per storage prefix (/registry/<group>/<plural>/)
//!       ├─ objects          key → Arc<CachedObject> (JSON with resourceVersion
//!       │                   set, plus the labels and fields selectors read)
//!       ├─ ring             the last `capacity` events, for watch resumption
//!       ├─ oldest           every event after this revision is in the ring
//!       └─ watchers         bounded senders; a full one is dropped (closed)
//! ```
//!
//! Buckets are per storage prefix, not per [`ResourceInfo`]: two versions
//! of one resource (autoscaling/v1 and v2 HPAs) share their storage and
//! therefore one bucket. Events are dispatched to watchers inside
//! [`CacheState::apply`], under the same lock that registers watchers, so a
//! new watcher's snapshot or replay and its live events meet without a gap
//! or a duplicate (Kubernetes' `cacher` does the same under its
//! `watchCache` lock).
//!
//! [`ResourceInfo`]: crate::resources::ResourceInfo

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::Value;
use skiff_store::Revision;
use tokio::sync::mpsc;

pub use crate::cached_object::CachedObject;

/// An object as the cache holds it: encoded once, `resourceVersion` set,
/// shared by the map, the ring, lists and watchers.
pub type Obj = Arc<CachedObject>;

/// One change to one object, as the cache saw it.
#[derive(Debug)]
pub struct CachedEvent {
    /// The store revision of the change.
    pub revision: Revision,
    /// The storage key.
    pub key: String,
    /// The object after the change; `None` when it was deleted.
    pub object: Option<Obj>,
    /// The object before the change; `None` when it was created.
    pub prev: Option<Obj>,
}

/// A change decoded from the store, before it is applied.
#[derive(Debug)]
pub struct Change {
    /// The store revision of the change.
    pub revision: Revision,
    /// The storage key.
    pub key: String,
    /// The new object, `None` for a delete.
    pub object: Option<Obj>,
}

/// The watch event type a watcher sees for a change, after its selector
/// (Kubernetes' `cacheWatcher.convertToWatchEvent`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Created, or started matching the selector.
    Added,
    /// Changed and still matching.
    Modified,
    /// Deleted, or stopped matching the selector.
    Deleted,
}

impl EventKind {
    /// The wire name (`ADDED`, `MODIFIED`, `DELETED`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            EventKind::Deleted => "DELETED",
        }
    }
}

/// One event on its way to the watchers of a bucket. The JSON of a
/// deleted object (the previous state at the deletion's revision) is made
/// once, by the first watcher that needs it, and shared by the others; it
/// is dropped when the last watcher has sent it (the ring keeps only the
/// [`CachedEvent`]).
#[derive(Debug)]
pub struct SharedEvent {
    /// The change.
    pub event: Arc<CachedEvent>,
    deleted_json: OnceLock<Bytes>,
}

impl SharedEvent {
    /// Wraps a cached event for delivery.
    pub fn new(event: Arc<CachedEvent>) -> Arc<SharedEvent> {
        Arc::new(SharedEvent {
            event,
            deleted_json: OnceLock::new(),
        })
    }

    /// The object a watcher sends for `kind`, decoded (see
    /// [`SharedEvent::object_json`]).
    pub fn object(&self, kind: EventKind) -> Option<Value> {
        let present = match kind {
            EventKind::Added | EventKind::Modified => self.event.object.is_some(),
            EventKind::Deleted => self.event.prev.is_some(),
        };
        // Cached bytes were encoded from a Value, so they decode.
        present.then(|| serde_json::from_slice(&self.object_json(kind)).unwrap_or(Value::Null))
    }

    /// The JSON a watcher sends for `kind`: the new state for ADDED and
    /// MODIFIED (the cached bytes); for DELETED the previous state with the
    /// change's resourceVersion (as kube-apiserver sends it), encoded once
    /// per event.
    pub fn object_json(&self, kind: EventKind) -> Bytes {
        match kind {
            EventKind::Added | EventKind::Modified => self
                .event
                .object
                .as_ref()
                .map_or_else(|| Bytes::from_static(b"null"), |o| o.json().clone()),
            EventKind::Deleted => self
                .deleted_json
                .get_or_init(|| match &self.event.prev {
                    Some(p) => p.json_at(&self.event.revision.to_string()),
                    None => Bytes::from_static(b"null"),
                })
                .clone(),
        }
    }
}

/// What one watcher receives.
#[derive(Clone, Debug)]
pub struct WatchItem {
    /// The type this watcher sees.
    pub kind: EventKind,
    /// The change.
    pub event: Arc<SharedEvent>,
}

/// Which objects a watcher wants: a key prefix (resource and namespace)
/// and a predicate (label and field selectors).
pub struct WatchFilter {
    /// Storage key prefix of the collection watched.
    pub prefix: String,
    /// Who watches, for the log when the watcher is closed as too slow.
    pub client: String,
    /// The selectors.
    pub matches: Box<dyn Fn(&CachedObject) -> bool + Send + Sync>,
}

impl std::fmt::Debug for WatchFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchFilter")
            .field("prefix", &self.prefix)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl WatchFilter {
    /// The event type this watcher sees for `ev`, `None` if none: a change
    /// that makes an object start matching is ADDED, stop matching DELETED.
    pub fn classify(&self, ev: &CachedEvent) -> Option<EventKind> {
        if !ev.key.starts_with(&self.prefix) {
            return None;
        }
        let old = ev.prev.as_deref().is_some_and(|o| (self.matches)(o));
        let new = ev.object.as_deref().is_some_and(|o| (self.matches)(o));
        match (old, new) {
            (false, true) => Some(EventKind::Added),
            (true, true) => Some(EventKind::Modified),
            (true, false) => Some(EventKind::Deleted),
            (false, false) => None,
        }
    }
}

/// Where a new watcher starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchStart {
    /// The current objects (as ADDED), then changes.
    Snapshot,
    /// The changes after this revision.
    After(Revision),
}

/// What a new watcher is sent before its live events.
#[derive(Debug)]
pub enum Initial {
    /// The matching objects at the revision the watch was registered at.
    Snapshot(Vec<Obj>),
    /// The ring's matching events after the requested revision.
    Replay(Vec<WatchItem>),
}

/// A registered watcher.
#[derive(Debug)]
pub struct Registered {
    /// Its id, for [`CacheState::unregister`].
    pub id: u64,
    /// The cache's revision at registration: the snapshot's, or the last
    /// revision the replay covers.
    pub revision: Revision,
    /// What to send first.
    pub initial: Initial,
}

/// Why a watcher could not be registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterError {
    /// The revision is older than the ring's oldest (410 Expired).
    TooOld {
        /// The revision asked for.
        requested: Revision,
        /// The oldest revision a watch can still start after.
        oldest: Revision,
    },
    /// No bucket holds this resource.
    UnknownPrefix,
}

/// One page of a cached list.
#[derive(Debug)]
pub struct CachedPage {
    /// The matching objects, in key order.
    pub items: Vec<Obj>,
    /// The revision the page shows.
    pub revision: Revision,
    /// The key the next page starts at, if more keys follow.
    pub next_start: Option<String>,
    /// How many keys under the prefix follow the page, selected or not (0
    /// when the page is the last).
    pub remaining_keys: usize,
}

struct Slot {
    id: u64,
    filter: Arc<WatchFilter>,
    tx: mpsc::Sender<WatchItem>,
}

#[derive(Default)]
struct Bucket {
    objects: BTreeMap<String, Obj>,
    ring: VecDeque<Arc<CachedEvent>>,
    oldest: Revision,
    last_change: Revision,
    watchers: Vec<Slot>,
}

/// Counters from one [`CacheState::apply`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Changes to cached resources.
    pub applied: usize,
    /// Watchers closed because their buffer was full.
    pub closed_slow: usize,
    /// The last watcher closed as too slow (its collection and client),
    /// for the log.
    pub slow: Option<String>,
}

/// The cache's state. See the module doc.
pub struct CacheState {
    buckets: Vec<Bucket>,
    index: HashMap<String, usize>,
    capacity: usize,
    revision: Revision,
    ready: bool,
    next_id: u64,
}

/// The storage prefix (`/registry/<group>/<plural>/`) a key belongs to.
pub fn storage_prefix_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("/registry/")?;
    let group_end = rest.find('/')?;
    let plural_end = rest[group_end + 1..].find('/')?;
    Some(&key[.."/registry/".len() + group_end + 1 + plural_end + 1])
}

impl CacheState {
    /// An empty, not yet ready state with one bucket per distinct prefix,
    /// each ring holding at most `capacity` events.
    pub fn new<'a>(prefixes: impl IntoIterator<Item = &'a str>, capacity: usize) -> CacheState {
        let mut index = HashMap::new();
        for p in prefixes {
            let n = index.len();
            index.entry(p.to_string()).or_insert(n);
        }
        CacheState {
            buckets: (0..index.len()).map(|_| Bucket::default()).collect(),
            index,
            capacity: capacity.max(1),
            revision: 0,
            ready: false,
            next_id: 0,
        }
    }

    /// Adds a bucket for `prefix` (a custom resource's, defined after the
    /// cache started) holding `objects`, which the caller read from the
    /// store at exactly [`CacheState::revision`]; later changes arrive
    /// through [`CacheState::apply`]. Its ring starts empty at that
    /// revision, so older watches get 410. No-op if the prefix is cached.
    pub fn add_bucket(&mut self, prefix: &str, objects: Vec<(String, Obj)>) {
        if self.index.contains_key(prefix) {
            return;
        }
        self.index.insert(prefix.to_string(), self.buckets.len());
        self.buckets.push(Bucket {
            objects: objects.into_iter().collect(),
            oldest: self.revision,
            last_change: self.revision,
            ..Bucket::default()
        });
    }

    /// The bucket of a storage prefix.
    pub fn bucket(&self, prefix: &str) -> Option<usize> {
        self.index.get(prefix).copied()
    }

    /// Whether a key is cached (belongs to a bucket).
    pub fn caches(&self, key: &str) -> bool {
        storage_prefix_of(key).is_some_and(|p| self.index.contains_key(p))
    }

    /// Every store event up to this revision has been applied.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// Whether an initial list has been loaded.
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// Number of registered watchers.
    pub fn watcher_count(&self) -> usize {
        self.buckets.iter().map(|b| b.watchers.len()).sum()
    }

    /// Number of cached objects.
    pub fn object_count(&self) -> usize {
        self.buckets.iter().map(|b| b.objects.len()).sum()
    }

    /// Replaces everything with a fresh list at `revision` (start-up, or a
    /// relist after the store watch broke). Every watcher is closed: it
    /// cannot be told what changed in between (Kubernetes' cacher also
    /// terminates all watchers on `Replace`). Returns how many were closed.
    pub fn replace(&mut self, objects: Vec<(String, Obj)>, revision: Revision) -> usize {
        let mut closed = 0;
        for b in &mut self.buckets {
            closed += b.watchers.len();
            *b = Bucket {
                oldest: revision,
                last_change: revision,
                ..Bucket::default()
            };
        }
        for (key, obj) in objects {
            if let Some(i) = storage_prefix_of(&key).and_then(|p| self.index.get(p)) {
                self.buckets[*i].objects.insert(key, obj);
            }
        }
        self.revision = revision;
        self.ready = true;
        closed
    }

    /// Records that every store event up to `revision` was seen (a
    /// progress notification, or events outside the cached prefixes).
    pub fn advance(&mut self, revision: Revision) {
        self.revision = self.revision.max(revision);
    }

    /// Applies changes in revision order, appends them to the rings and
    /// hands them to the watchers. A watcher whose buffer is full is
    /// dropped: its stream ends and its client rewatches from its last
    /// resourceVersion (kube-apiserver closes unresponsive watchers too).
    pub fn apply(&mut self, changes: Vec<Change>) -> ApplyStats {
        let mut stats = ApplyStats::default();
        for c in changes {
            self.revision = self.revision.max(c.revision);
            let Some(i) = storage_prefix_of(&c.key).and_then(|p| self.index.get(p).copied()) else {
                continue;
            };
            let b = &mut self.buckets[i];
            let prev = match &c.object {
                Some(o) => b.objects.insert(c.key.clone(), o.clone()),
                None => b.objects.remove(&c.key),
            };
            if prev.is_none() && c.object.is_none() {
                continue; // deleting what we never had: nothing to tell
            }
            let ev = Arc::new(CachedEvent {
                revision: c.revision,
                key: c.key,
                object: c.object,
                prev,
            });
            stats.applied += 1;
            b.last_change = c.revision;
            if b.ring.len() >= self.capacity {
                if let Some(old) = b.ring.pop_front() {
                    b.oldest = b.oldest.max(old.revision);
                }
            }
            b.ring.push_back(ev.clone());
            if b.watchers.is_empty() {
                continue;
            }
            let shared = SharedEvent::new(ev);
            let mut slow = 0;
            let mut last_slow = None;
            b.watchers
                .retain(|w| match w.filter.classify(&shared.event) {
                    None => !w.tx.is_closed(),
                    Some(kind) => match w.tx.try_send(WatchItem {
                        kind,
                        event: shared.clone(),
                    }) {
                        Ok(()) => true,
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            slow += 1;
                            last_slow = Some(w.filter.clone());
                            false
                        }
                        // The client went away: not slow, just gone.
                        Err(mpsc::error::TrySendError::Closed(_)) => false,
                    },
                });
            if let Some(f) = last_slow {
                stats.closed_slow += slow;
                stats.slow = Some(format!("{} {}", f.prefix, f.client));
            }
        }
        stats
    }

    /// Whether a list at exactly `revision` can be served from the cache:
    /// nothing in the bucket changed after it, so the current objects are
    /// the objects at `revision`.
    pub fn can_serve_at(&self, bucket: usize, revision: Revision) -> bool {
        self.ready
            && self
                .buckets
                .get(bucket)
                .is_some_and(|b| b.last_change <= revision && revision <= self.revision)
    }

    /// One page of the objects under `prefix`, from key `start` on, that
    /// pass `filter`; at most `limit` items (0: all).
    pub fn list(
        &self,
        bucket: usize,
        prefix: &str,
        start: &str,
        limit: usize,
        filter: impl Fn(&CachedObject) -> bool,
    ) -> CachedPage {
        let mut items = Vec::new();
        let mut next_start = None;
        let mut remaining_keys = 0;
        if let Some(b) = self.buckets.get(bucket) {
            let range = b
                .objects
                .range::<str, _>((Bound::Included(start), Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(prefix));
            let mut last_key: Option<&String> = None;
            let mut range = range;
            while let Some((k, o)) = range.next() {
                if limit > 0 && items.len() >= limit {
                    // More keys follow: the next page starts after the last
                    // one returned (the store path's token says the same).
                    next_start = last_key.map(|l| format!("{l}\0"));
                    remaining_keys = 1 + range.count();
                    break;
                }
                last_key = Some(k);
                if filter(o) {
                    items.push(o.clone());
                }
            }
        }
        CachedPage {
            items,
            revision: self.revision,
            next_start,
            remaining_keys,
        }
    }

    /// Registers a watcher on `bucket`: its snapshot or replay, and from
    /// now on its live events through `tx`.
    pub fn register(
        &mut self,
        bucket: usize,
        filter: Arc<WatchFilter>,
        start: WatchStart,
        tx: mpsc::Sender<WatchItem>,
    ) -> Result<Registered, RegisterError> {
        let revision = self.revision;
        let b = self
            .buckets
            .get_mut(bucket)
            .ok_or(RegisterError::UnknownPrefix)?;
        let initial = match start {
            WatchStart::Snapshot => Initial::Snapshot(
                b.objects
                    .range::<str, _>((Bound::Included(filter.prefix.as_str()), Bound::Unbounded))
                    .take_while(|(k, _)| k.starts_with(&filter.prefix))
                    .filter(|(_, o)| (filter.matches)(o))
                    .map(|(_, o)| o.clone())
                    .collect(),
            ),
            WatchStart::After(n) => {
                if n < b.oldest {
                    return Err(RegisterError::TooOld {
                        requested: n,
                        oldest: b.oldest,
                    });
                }
                // The ring is in revision order: skip to the first event
                // after `n`.
                let from = b.ring.partition_point(|e| e.revision <= n);
                Initial::Replay(
                    b.ring
                        .range(from..)
                        .filter_map(|e| {
                            filter.classify(e).map(|kind| WatchItem {
                                kind,
                                event: SharedEvent::new(e.clone()),
                            })
                        })
                        .collect(),
                )
            }
        };
        self.next_id += 1;
        let id = self.next_id;
        b.watchers.push(Slot { id, filter, tx });
        Ok(Registered {
            id,
            revision,
            initial,
        })
    }

    /// Removes a watcher (its client went away).
    pub fn unregister(&mut self, bucket: usize, id: u64) {
        if let Some(b) = self.buckets.get_mut(bucket) {
            b.watchers.retain(|w| w.id != id);
        }
    }
}

#[cfg(test)]
#[path = "watchcache_state_test.rs"]
mod tests;
