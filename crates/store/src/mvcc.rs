//! The MVCC state machine: etcd's revisioned key-value model over one sled
//! tree (layout in [`crate::keys`]). This file holds the reads; the writes
//! (the deterministic apply) are in [`crate::apply`].
//!
//! **Each value is stored once**, in its history event (etcd's model: its
//! bbolt keeps each revision once, keyed by revision). An event holds only
//! where the event of its previous version is, not a copy of it
//! ([`StoredEvent`]). Keeping the value in three places (a live entry, the
//! event, the next event's `prev_kv`) cost two thirds of sled's bytes per
//! write.
//!
//! **Values longer than [`INLINE_MAX`] live in the value log**
//! ([`crate::value_log`]), not in sled: the event holds a [`ValueRef`]
//! (`logged`) and an empty `kv.value`. Snapshots carry events in their
//! portable form (value inline, `logged` None); import moves the values
//! back into this store's log.
//!
//! **The live keys are in memory only**: the key index
//! ([`crate::key_index`], etcd's `treeIndex`) holds each live key's
//! latest version (where its event is, its revisions, version, lease and
//! where its value is), derived from history at open and after an import.
//! Apply reads no sled entry to write one, and sled holds no per-key entry
//! to rewrite on every put (format 4).
//!
//! **Reads at the current revision** (the common case: gets, lists,
//! counts) copy what they need out of the index under its read lock,
//! together with the revision it is at and a pin on the value log's files
//! ([`crate::value_log::ValueLog::pin`]), then read long values with no
//! lock held. Apply waits only for that copy, never for the value reads,
//! and a reader sees a whole applied entry or none of it.
//!
//! **Past reads** undo history: the state at revision `r` is the index's
//! with every event newer than `r` reverted to the previous version it
//! points to. A Range at `r` collects the keys changed since `r` (one
//! pass over that history, which auto-compaction bounds; it saves a
//! per-key version index) and merges them in key order with the index's
//! other keys, reading values only for the keys it answers: a page of a
//! list at a past revision costs the history since `r`, a walk of the
//! index for the count and its own values, not a copy of the whole range.
//! Past reads run under the gate ([`Mvcc::read_view`]), as do watch
//! replays: apply does not write meanwhile.
//!
//! **Compaction** at revision `c` deletes the history events older than `c`
//! except, for each key, its newest one before `c` if that is a Put (etcd's
//! rule, `mvcc/kvstore_compaction.go`): that version is still live or is
//! the previous version of a later event, so reads at `c` and later and
//! watchers' `prev_kv` still find it. Reads at revisions below `c` fail with
//! `Compacted`, as do watches starting below it.

use std::collections::BTreeMap;

use openraft::{LogId, StoredMembership};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::key_index::{Held, KeyIndex, Latest};
use crate::keys::{self, KeyRange};
use crate::kv::{Event, EventType, KeyValue, RangeRequest, RangeResponse, Revision};
use crate::raft_types::{ApplyError, NodeId};
use crate::value_log::{ValueLog, ValueLogError, ValueRef, INLINE_MAX};

/// The largest value a Put may carry: 1.5 MiB, etcd's default
/// `--max-request-bytes`, which Kubernetes objects are sized against.
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;

/// One change, as kept in history and fanned out to watchers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HistoryEvent {
    /// Put or delete.
    pub kind: EventType,
    /// The key-value after the change (for deletes: key and mod_revision).
    pub kv: KeyValue,
    /// The key-value before the change.
    pub prev_kv: Option<KeyValue>,
}

impl HistoryEvent {
    /// The revision of the change.
    pub(crate) fn revision(&self) -> Revision {
        self.kv.mod_revision
    }

    /// The public event, with `prev_kv` only if asked for.
    pub(crate) fn to_event(&self, with_prev: bool) -> Event {
        Event {
            kind: self.kind,
            kv: self.kv.clone(),
            prev_kv: if with_prev {
                self.prev_kv.clone()
            } else {
                None
            },
        }
    }
}

/// A history event as sled stores it: the previous version is a pointer
/// (the history key of its event), not a copy, and a long value is a
/// pointer into the value log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredEvent {
    /// Put or delete.
    pub kind: EventType,
    /// The key-value after the change (for deletes: key and mod_revision).
    /// Its value is empty when `logged` is set.
    pub kv: KeyValue,
    /// The history key of the event that wrote the previous version, if
    /// the key existed before the change.
    pub prev_at: Option<Vec<u8>>,
    /// Where the value is in the value log, if it is not inline.
    pub logged: Option<ValueRef>,
}

impl StoredEvent {
    /// The stored form of an event of `kind` writing `kv`, a long value
    /// appended to `values` (and not copied into the event).
    pub(crate) fn new(
        kind: EventType,
        kv: &KeyValue,
        prev_at: Option<Vec<u8>>,
        values: &ValueLog,
    ) -> Result<StoredEvent, MvccError> {
        let (value, logged) = if kv.value.len() > INLINE_MAX {
            (Vec::new(), Some(values.append(&kv.value)?))
        } else {
            (kv.value.clone(), None)
        };
        Ok(StoredEvent {
            kind,
            kv: KeyValue {
                key: kv.key.clone(),
                value,
                create_revision: kv.create_revision,
                mod_revision: kv.mod_revision,
                version: kv.version,
                lease: kv.lease,
            },
            prev_at,
            logged,
        })
    }
}

/// What can go wrong reading or applying.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MvccError {
    /// A deterministic refusal, to be returned to the client.
    #[error(transparent)]
    Refused(#[from] ApplyError),
    /// sled failed; the node must stop rather than diverge.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// Stored bytes do not decode: the database is damaged.
    #[error("cannot decode {what}: {source}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// Why it failed.
        source: bincode::Error,
    },
    /// A pointer to a history event leads nowhere: the database is damaged.
    #[error("the state machine is damaged: history event {0:?} is missing")]
    MissingEvent(Vec<u8>),
    /// The value log failed or holds damaged values.
    #[error(transparent)]
    Values(#[from] ValueLogError),
}

pub(crate) fn decode<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, MvccError> {
    bincode::deserialize(bytes).map_err(|source| MvccError::Decode { what, source })
}

pub(crate) fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, MvccError> {
    bincode::serialize(value).map_err(|source| MvccError::Decode { what, source })
}

/// The last applied log id and membership, as openraft asks for them.
pub(crate) type AppliedState = (
    Option<LogId<NodeId>>,
    StoredMembership<NodeId, openraft::BasicNode>,
);

/// One raw sled key and value (a snapshot's unit).
pub(crate) type Pair = (Vec<u8>, Vec<u8>);

/// Handle on the state machine tree and its value log. Cheap to clone
/// (sled trees are Arcs).
#[derive(Clone)]
pub(crate) struct Mvcc {
    pub(crate) tree: sled::Tree,
    pub(crate) values: ValueLog,
    /// Readers of sled (past reads, watch replays, lease reads) hold it
    /// shared across a multi-step read; apply holds it exclusively while
    /// writing a batch. sled isolates single operations from a batch, not
    /// a scan plus a get, so without it such a read could mix revisions.
    /// Reads at the current revision need only the key index's lock.
    gate: std::sync::Arc<std::sync::RwLock<()>>,
    /// Each live key's latest version (`key_index.rs`). Lock order: the
    /// gate, then the index, then the value log's own lock.
    index: std::sync::Arc<std::sync::RwLock<KeyIndex>>,
}

/// The sled writes of one applied entry, in order (None: remove).
#[derive(Default)]
pub(crate) struct Writes(Vec<(sled::IVec, Option<sled::IVec>)>);

impl Writes {
    /// Set `key` to `value`.
    pub(crate) fn insert(&mut self, key: impl Into<sled::IVec>, value: impl Into<sled::IVec>) {
        self.0.push((key.into(), Some(value.into())));
    }

    /// Remove `key`.
    pub(crate) fn remove(&mut self, key: impl Into<sled::IVec>) {
        self.0.push((key.into(), None));
    }
}

/// Pending changes of the entry being applied, read back by later operations
/// of the same Txn (etcd lets a Txn read its own writes).
#[derive(Default)]
pub(crate) struct Overlay {
    /// Latest value (None: deleted) of each key changed so far.
    pub kvs: BTreeMap<Vec<u8>, Option<KeyValue>>,
    /// Events so far, in order; each carries its revision in `kv.mod_revision`.
    /// Add them with [`Overlay::push_event`].
    pub events: Vec<HistoryEvent>,
    /// For each event of `events`: its history key and its previous
    /// version's (see [`StoredEvent`]).
    pub event_keys: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// The history key of the latest event of each key changed so far.
    latest_at: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The revision of the last event and the next sub-index within it.
    next_sub: (Revision, u32),
    /// Leases granted (Some) or revoked (None) so far.
    pub leases: BTreeMap<crate::kv::LeaseId, Option<crate::lease_apply::LeaseRecord>>,
    /// Keys attached to (true) or detached from (false) a lease so far.
    pub attach: BTreeMap<(crate::kv::LeaseId, Vec<u8>), bool>,
    /// The lease id counter, if a grant moved it.
    pub lease_next: Option<crate::kv::LeaseId>,
}

impl Overlay {
    /// Record `ev`, the change of one key, whose previous version's event is
    /// at `prev_at`. Events come in revision order; those of one revision
    /// are numbered 0, 1, … in the order they happen.
    pub(crate) fn push_event(&mut self, ev: HistoryEvent, prev_at: Option<Vec<u8>>) {
        let rev = ev.revision();
        let sub = if self.next_sub.0 == rev {
            self.next_sub.1
        } else {
            0
        };
        self.next_sub = (rev, sub + 1);
        let at = keys::history_key(rev, sub);
        self.latest_at.insert(ev.kv.key.clone(), at.clone());
        self.kvs.insert(
            ev.kv.key.clone(),
            (ev.kind == EventType::Put).then(|| ev.kv.clone()),
        );
        self.event_keys.push((at, prev_at));
        self.events.push(ev);
    }

    /// The history key of the event that wrote `key`'s latest version in
    /// this entry.
    pub(crate) fn latest_at(&self, key: &[u8]) -> Option<&Vec<u8>> {
        self.latest_at.get(key)
    }
}

impl Mvcc {
    /// Wrap a sled tree and the value log its events point to. Counts the
    /// values in use, which also checks that each pointer leads into a
    /// segment that exists, and builds the key index on the way.
    pub(crate) fn open(tree: sled::Tree, values: ValueLog) -> Result<Mvcc, MvccError> {
        let mut index = KeyIndex::default();
        index.revision = meta_i64(&tree, keys::META_REVISION, 1)?;
        for item in history_events(&tree) {
            let (at, ev) = item?;
            if let Some(logged) = &ev.logged {
                values.retain(logged)?;
            }
            index.record(&at, &ev);
        }
        Ok(Mvcc {
            tree,
            values,
            gate: Default::default(),
            index: std::sync::Arc::new(std::sync::RwLock::new(index)),
        })
    }

    /// The key index, to read.
    pub(crate) fn index(&self) -> std::sync::RwLockReadGuard<'_, KeyIndex> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The key index, to change (apply and import only).
    fn index_mut(&self) -> std::sync::RwLockWriteGuard<'_, KeyIndex> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` as one consistent read: no entry is applied meanwhile.
    pub(crate) fn read_view<T>(&self, f: impl FnOnce(&Mvcc) -> T) -> T {
        let _shared = self.gate.read().unwrap_or_else(|p| p.into_inner());
        f(self)
    }

    /// Write `writes`, in order, and make `index_changes` to the key index,
    /// while no consistent read is in progress and no reader holds the
    /// index; the values appended to the value log for them are written
    /// first.
    ///
    /// They go to sled as single operations, not as a `sled::Batch`: sled
    /// 0.34 writes out (and `sync_file_range`s) its IO buffer twice for
    /// every batch to make it atomic on recovery, which cost ~27 KB of disk
    /// writes per store write. Atomicity on disk is not needed: after a
    /// crash the state machine is rebuilt from the snapshot and the raft
    /// log (see [`crate::state_machine`]), never read back from sled.
    pub(crate) fn write_batch(
        &self,
        writes: Writes,
        index_changes: impl FnOnce(&mut KeyIndex),
    ) -> Result<(), MvccError> {
        self.values.flush()?;
        self.exclusive(|m| m.write_gated(writes, index_changes))
    }

    /// [`Mvcc::write_batch`] for a caller that holds the gate exclusively.
    pub(crate) fn write_gated(
        &self,
        writes: Writes,
        index_changes: impl FnOnce(&mut KeyIndex),
    ) -> Result<(), MvccError> {
        let mut index = self.index_mut();
        self.write_tree(writes)?;
        index_changes(&mut index);
        Ok(())
    }

    fn write_tree(&self, writes: Writes) -> Result<(), MvccError> {
        for (k, v) in writes.0 {
            match v {
                Some(v) => self.tree.insert(k, v)?,
                None => self.tree.remove(k)?,
            };
        }
        Ok(())
    }

    /// Run `f` while no consistent read is in progress (for changes that
    /// delete value-log segments: no reader may hold a pointer into one).
    pub(crate) fn exclusive<T>(&self, f: impl FnOnce(&Mvcc) -> T) -> T {
        let _exclusive = self.gate.write().unwrap_or_else(|p| p.into_inner());
        f(self)
    }

    /// The latest revision (1 on an empty store, as in etcd).
    pub(crate) fn revision(&self) -> Result<Revision, MvccError> {
        meta_i64(&self.tree, keys::META_REVISION, 1)
    }

    /// The compaction point (0 if never compacted).
    pub(crate) fn compact_revision(&self) -> Result<Revision, MvccError> {
        meta_i64(&self.tree, keys::META_COMPACT, 0)
    }

    /// The last applied log id and membership, for openraft.
    pub(crate) fn applied_state(&self) -> Result<AppliedState, MvccError> {
        let last = match self.tree.get(keys::META_LAST_APPLIED)? {
            Some(v) => Some(decode("last applied log id", &v)?),
            None => None,
        };
        let membership = match self.tree.get(keys::META_MEMBERSHIP)? {
            Some(v) => decode("membership", &v)?,
            None => StoredMembership::default(),
        };
        Ok((last, membership))
    }

    /// The stored event at history key `at`.
    pub(crate) fn event_at(&self, at: &[u8]) -> Result<StoredEvent, MvccError> {
        match self.tree.get(at)? {
            Some(v) => decode("history event", &v),
            None => Err(MvccError::MissingEvent(at.to_vec())),
        }
    }

    /// The key-value written by `event`, its value read from the value
    /// log if it is there.
    pub(crate) fn key_value(&self, event: StoredEvent) -> Result<KeyValue, MvccError> {
        let mut kv = event.kv;
        if let Some(at) = event.logged {
            kv.value = self.values.read(&at)?;
        }
        Ok(kv)
    }

    /// The key-value written by the event at `at`.
    fn version_at(&self, at: &[u8]) -> Result<KeyValue, MvccError> {
        self.key_value(self.event_at(at)?)
    }

    /// The latest version of `key` and the history key of its event,
    /// counting the pending changes of the entry being applied. For apply:
    /// it reads the key index, not sled.
    pub(crate) fn latest_with(
        &self,
        overlay: &Overlay,
        key: &[u8],
    ) -> Result<Option<(KeyValue, Vec<u8>)>, MvccError> {
        match overlay.kvs.get(key) {
            Some(Some(kv)) => match overlay.latest_at(key) {
                Some(at) => Ok(Some((kv.clone(), at.clone()))),
                None => Err(MvccError::MissingEvent(key.to_vec())),
            },
            Some(None) => Ok(None),
            None => {
                let latest: Option<Latest> = self.index().get(key).cloned();
                match latest {
                    Some(l) => Ok(Some((l.key_value(key, &self.values)?, l.history_key()))),
                    None => Ok(None),
                }
            }
        }
    }

    /// [`Mvcc::latest_with`]'s key-value, with an empty value unless it is
    /// in the overlay (for compares on revisions, version and lease: no
    /// value-log read).
    pub(crate) fn meta_with(
        &self,
        overlay: &Overlay,
        key: &[u8],
    ) -> Result<Option<KeyValue>, MvccError> {
        match overlay.kvs.get(key) {
            Some(kv) => Ok(kv.clone()),
            None => Ok(self
                .index()
                .get(key)
                .map(|l| l.key_value_without_value(key))),
        }
    }

    pub(crate) fn get_with(
        &self,
        overlay: &Overlay,
        key: &[u8],
    ) -> Result<Option<KeyValue>, MvccError> {
        Ok(self.latest_with(overlay, key)?.map(|(kv, _)| kv))
    }

    /// `event`, with its value and the previous version it points to
    /// filled in.
    fn resolve(&self, event: StoredEvent) -> Result<HistoryEvent, MvccError> {
        let prev_kv = match &event.prev_at {
            Some(at) => Some(self.version_at(at)?),
            None => None,
        };
        let kind = event.kind;
        Ok(HistoryEvent {
            kind,
            kv: self.key_value(event)?,
            prev_kv,
        })
    }

    /// The keys in `range` as of revision `at`, where the latest state is
    /// the key index plus `overlay` (the pending changes of the entry being
    /// applied) and `at` is at most the latest revision. For apply, or
    /// under [`Mvcc::read_view`].
    pub(crate) fn materialize(
        &self,
        range: &KeyRange,
        at: Revision,
        overlay: &Overlay,
    ) -> Result<BTreeMap<Vec<u8>, KeyValue>, MvccError> {
        let mut map = BTreeMap::new();
        for (key, latest) in self.index().range(range) {
            map.insert(key.to_vec(), latest.key_value(key, &self.values)?);
        }
        for (k, v) in &overlay.kvs {
            if range.contains(k) {
                match v {
                    Some(kv) => map.insert(k.clone(), kv.clone()),
                    None => map.remove(k),
                };
            }
        }
        // Undo every event newer than `at`, newest first: the overlay's
        // events are newer than anything in the tree.
        for ev in overlay.events.iter().rev() {
            if ev.revision() > at && range.contains(&ev.kv.key) {
                match &ev.prev_kv {
                    Some(prev) => map.insert(prev.key.clone(), prev.clone()),
                    None => map.remove(&ev.kv.key),
                };
            }
        }
        for (key, prev_at) in self.changed_since(range, at)? {
            match prev_at {
                Some(prev_at) => map.insert(key, self.version_at(&prev_at)?),
                None => map.remove(&key),
            };
        }
        Ok(map)
    }

    /// The keys in `range` that history changed after `at`, each with its
    /// state then: where the previous version named by its oldest later
    /// event is (history is walked newest first, so that event's answer is
    /// written last), or None where that event created the key. Every
    /// other key is at `at` as it is now.
    fn changed_since(
        &self,
        range: &KeyRange,
        at: Revision,
    ) -> Result<BTreeMap<Vec<u8>, Option<Vec<u8>>>, MvccError> {
        let mut changed = BTreeMap::new();
        let from = keys::history_key(at + 1, 0);
        for item in self.tree.range(from..vec![keys::HISTORY_PREFIX + 1]).rev() {
            let (_, v) = item?;
            let ev: StoredEvent = decode("history event", &v)?;
            if range.contains(&ev.kv.key) {
                changed.insert(ev.kv.key, ev.prev_at);
            }
        }
        Ok(changed)
    }

    /// Serve a Range outside any transaction (the read path).
    pub(crate) fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        let range = KeyRange::new(&req.key, &req.range_end);
        match self.range_latest(req, &range)? {
            Some(resp) => Ok(resp),
            None => self.read_view(|m| m.range_past(req, &range)),
        }
    }

    /// A Range at the current revision, from the key index (see the
    /// module doc); None if `req` asks for another (positive) revision.
    fn range_latest(
        &self,
        req: &RangeRequest,
        range: &KeyRange,
    ) -> Result<Option<RangeResponse>, MvccError> {
        let take = match (req.count_only, req.limit) {
            (true, _) => 0,
            (false, l) if l > 0 => l as usize,
            (false, _) => usize::MAX,
        };
        let mut kvs = Vec::new();
        // Values to read from the value log: (index in kvs, where).
        let mut logged = Vec::new();
        let (revision, count, pinned) = {
            let index = self.index();
            // etcd: a revision of 0 or less means the newest.
            if req.revision > 0 && req.revision != index.revision {
                return Ok(None);
            }
            let mut count = 0i64;
            for (key, latest) in index.range(range) {
                count += 1;
                if kvs.len() < take {
                    let mut kv = latest.key_value_without_value(key);
                    if !req.keys_only {
                        match &latest.value {
                            Held::Inline(v) => kv.value = v.to_vec(),
                            Held::Logged(at) => logged.push((kvs.len(), *at)),
                        }
                    }
                    kvs.push(kv);
                }
            }
            let pinned = (!logged.is_empty()).then(|| self.values.pin());
            (index.revision, count, pinned)
        };
        if let Some(pinned) = pinned {
            for (i, at) in logged {
                kvs[i].value = pinned.read(&at)?;
            }
        }
        Ok(Some(RangeResponse {
            revision,
            more: req.limit > 0 && count > req.limit,
            kvs,
            count,
        }))
    }

    /// A Range at a past revision (or a refused one), under the gate.
    fn range_past(&self, req: &RangeRequest, range: &KeyRange) -> Result<RangeResponse, MvccError> {
        let current = self.revision()?;
        check_read_revision(req.revision, current, self.compact_revision()?)?;
        let at = if req.revision <= 0 {
            current
        } else {
            req.revision
        };
        // The keys changed after `at` with their state then; every other
        // key in the range is as the index has it.
        let changed = self.changed_since(range, at)?;
        // Merge the two in key order, reading only the values answered: a
        // page of a list at a past revision used to copy every key of the
        // range (and read its value) to answer `limit` of them.
        let take = match (req.count_only, req.limit) {
            (true, _) => 0,
            (false, l) if l > 0 => l as usize,
            (false, _) => usize::MAX,
        };
        let mut kvs = Vec::new();
        let mut count = 0i64;
        {
            let index = self.index();
            let mut latest = index.range(range).peekable();
            let mut then = changed.iter().peekable();
            loop {
                let from_index = match (latest.peek(), then.peek()) {
                    (None, None) => break,
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    (Some((k, _)), Some((c, _))) => *k < c.as_slice(),
                };
                if from_index {
                    let Some((key, l)) = latest.next() else { break };
                    count += 1;
                    if kvs.len() < take {
                        kvs.push(if req.keys_only {
                            l.key_value_without_value(key)
                        } else {
                            l.key_value(key, &self.values)?
                        });
                    }
                    continue;
                }
                let Some((key, prev_at)) = then.next() else {
                    break;
                };
                if latest.peek().is_some_and(|(k, _)| *k == key.as_slice()) {
                    latest.next();
                }
                let Some(prev_at) = prev_at else { continue };
                count += 1;
                if kvs.len() < take {
                    let mut kv = self.version_at(prev_at)?;
                    if req.keys_only {
                        kv.value.clear();
                    }
                    kvs.push(kv);
                }
            }
        }
        Ok(RangeResponse {
            revision: current,
            more: req.limit > 0 && count > req.limit,
            kvs,
            count,
        })
    }

    /// Up to about `max_events` history events from revision `from` on, never
    /// splitting a revision. Returns the events and whether the end of
    /// history was reached.
    pub(crate) fn history_from(
        &self,
        from: Revision,
        max_events: usize,
    ) -> Result<(Vec<HistoryEvent>, bool), MvccError> {
        let mut out: Vec<HistoryEvent> = Vec::new();
        // Below the compaction point only versions kept for later events
        // remain, not history.
        let start = keys::history_key(from.max(self.compact_revision()?), 0);
        for item in self.tree.range(start..vec![keys::HISTORY_PREFIX + 1]) {
            let (k, v) = item?;
            let rev = keys::history_revision(&k);
            if out.len() >= max_events && out.last().is_some_and(|l| l.revision() != rev) {
                return Ok((out, false));
            }
            out.push(self.resolve(decode("history event", &v)?)?);
        }
        Ok((out, true))
    }

    /// Replace the whole tree by `pairs`, a snapshot's portable form (no
    /// reader sees it half done): the value log starts again, long values
    /// move into it, and the key index is rebuilt. The `k<key>` pairs of a
    /// format-3 snapshot are skipped (the index replaces them).
    pub(crate) fn import(&self, pairs: Vec<Pair>) -> Result<(), MvccError> {
        let mut batch = Writes::default();
        for item in self.tree.iter() {
            let (k, _) = item?;
            batch.remove(k);
        }
        let _exclusive = self.gate.write().unwrap_or_else(|p| p.into_inner());
        // Held throughout: a reader must not pin the cleared value log
        // while the index still points into the old one.
        let mut index = self.index_mut();
        self.values.clear()?;
        for (k, v) in pairs {
            match k.first() {
                Some(&keys::HISTORY_PREFIX) => {
                    let ev: StoredEvent = decode("history event", &v)?;
                    let ev = StoredEvent::new(ev.kind, &ev.kv, ev.prev_at, &self.values)?;
                    batch.insert(k, encode("history event", &ev)?);
                }
                Some(&keys::FORMAT3_KV_PREFIX) => {}
                _ => batch.insert(k, v),
            }
        }
        self.values.flush()?;
        self.write_tree(batch)?;
        *index = KeyIndex::rebuild(history_events(&self.tree), self.revision()?)?;
        Ok(())
    }

    /// Every pair of the tree in the portable form snapshots carry: history
    /// events with their values inline.
    pub(crate) fn export(&self) -> impl Iterator<Item = Result<Pair, MvccError>> + '_ {
        self.tree.iter().map(move |item| {
            let (k, v) = item?;
            if k.first() == Some(&keys::HISTORY_PREFIX) {
                let StoredEvent {
                    kind,
                    mut kv,
                    prev_at,
                    logged,
                } = decode("history event", &v)?;
                if let Some(at) = logged {
                    kv.value = self.values.read(&at)?;
                    let portable = StoredEvent {
                        kind,
                        kv,
                        prev_at,
                        logged: None,
                    };
                    return Ok((k.to_vec(), encode("history event", &portable)?));
                }
            }
            Ok((k.to_vec(), v.to_vec()))
        })
    }
}

/// The number stored at meta key `key` of `tree` (`default` if unset).
fn meta_i64(tree: &sled::Tree, key: &[u8], default: i64) -> Result<i64, MvccError> {
    match tree.get(key)? {
        Some(v) => decode("revision", &v),
        None => Ok(default),
    }
}

/// Every history event of `tree`, with its sled key, in revision order.
pub(crate) fn history_events(
    tree: &sled::Tree,
) -> impl Iterator<Item = Result<(sled::IVec, StoredEvent), MvccError>> {
    tree.range(vec![keys::HISTORY_PREFIX]..vec![keys::HISTORY_PREFIX + 1])
        .map(|item| {
            let (k, v) = item?;
            Ok((k, decode("history event", &v)?))
        })
}

/// Check a read revision against the store's window (etcd's ErrFutureRev
/// and ErrCompacted; reading exactly at the compaction point is allowed).
pub(crate) fn check_read_revision(
    requested: Revision,
    current: Revision,
    compact_revision: Revision,
) -> Result<(), ApplyError> {
    if requested > current {
        return Err(ApplyError::FutureRevision { requested, current });
    }
    if requested > 0 && requested < compact_revision {
        return Err(ApplyError::Compacted {
            requested,
            compact_revision,
        });
    }
    Ok(())
}

pub(crate) fn check_value_size(value: &[u8]) -> Result<(), ApplyError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(ApplyError::InvalidRequest(format!(
            "value of {} bytes is over the limit of {MAX_VALUE_BYTES} bytes (1.5 MiB)",
            value.len()
        )));
    }
    Ok(())
}

/// Shape a materialized range into etcd's answer (limit, count, keys-only).
pub(crate) fn respond(
    map: BTreeMap<Vec<u8>, KeyValue>,
    req: &RangeRequest,
    current: Revision,
) -> RangeResponse {
    let count = map.len() as i64;
    let kvs = if req.count_only {
        Vec::new()
    } else {
        let take = if req.limit > 0 {
            req.limit as usize
        } else {
            usize::MAX
        };
        map.into_values()
            .take(take)
            .map(|mut kv| {
                if req.keys_only {
                    kv.value.clear();
                }
                kv
            })
            .collect()
    };
    RangeResponse {
        revision: current,
        more: req.limit > 0 && count > req.limit,
        kvs,
        count,
    }
}

/// A closable, shared handle on the tree for readers (the [`crate::Store`]
/// and its watch streams). Closing it at shutdown drops their sled handles,
/// so the data directory can be reopened while old clones or streams still
/// exist.
#[derive(Clone)]
pub(crate) struct SharedMvcc(std::sync::Arc<std::sync::RwLock<Option<Mvcc>>>);

impl SharedMvcc {
    /// Share `mvcc`.
    pub(crate) fn new(mvcc: Mvcc) -> SharedMvcc {
        SharedMvcc(std::sync::Arc::new(std::sync::RwLock::new(Some(mvcc))))
    }

    /// The tree, unless closed.
    pub(crate) fn get(&self) -> Option<Mvcc> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Drop the shared handle.
    pub(crate) fn close(&self) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = None;
    }
}
