//! The in-memory key index (etcd's `treeIndex`): for each live key, its
//! latest version, so neither apply nor a read at the current revision
//! looks anything up in sled to find it.
//!
//! ```text
//!  key ─► Latest { rev, sub (its event's history key), create_revision, version, lease,
//!                  value: Inline(≤ 64 bytes) | Logged(ValueRef into the value log) }
//!  + the revision the index is at
//! ```
//!
//! It is the only place that says which keys are live: sled holds no
//! per-key entry (format 4; format 3's `k<key>` entries pointed to the
//! latest event, cost sled a leaf rewrite per put and are deleted when a
//! format-3 directory is opened, `migrate.rs`). A Range at the current
//! revision reads it and the value log, a past Range starts from it and
//! undoes history (`mvcc.rs`), a Put or a Txn compare finds the previous
//! version in it.
//!
//! The index is derived state, never written to disk: [`KeyIndex::rebuild`]
//! builds it from the history events in revision order (a key's latest
//! event is a Put if and only if the key is live; compaction keeps each
//! live key's latest event), at [`crate::mvcc::Mvcc::open`] and when a
//! snapshot is imported. Apply, its only writer, changes it in the same
//! step as it writes the entry's events to sled (under the MVCC gate and
//! the index's write lock), with the entry's revision, so a reader holding
//! the read lock sees a whole entry or none of it.
//!
//! Cost: one entry per live key, bounded by the number of live keys, not
//! by history. Per key: the key's bytes, the 72-byte [`Latest`], a value of
//! up to 64 bytes when it is not in the value log, and the B-tree's
//! own overhead (`index_memory_per_key` in the tests measures it).

use std::collections::BTreeMap;

use crate::keys::{self, KeyRange};
use crate::kv::{EventType, KeyValue, LeaseId, Revision};
use crate::mvcc::{MvccError, StoredEvent};
use crate::value_log::{ValueLog, ValueRef};

/// Where a live key's latest value is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Held {
    /// A short value, kept here as it is in its event.
    Inline(Box<[u8]>),
    /// A long value's place in the value log.
    Logged(ValueRef),
}

/// What the index knows of a live key's latest version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Latest {
    /// The revision of the event that wrote it (its `mod_revision`).
    pub rev: Revision,
    /// That event's sub-index within its revision.
    pub sub: u32,
    /// The key's `create_revision`.
    pub create_revision: Revision,
    /// The key's `version`.
    pub version: i64,
    /// The key's lease (0: none).
    pub lease: LeaseId,
    /// Its value.
    pub value: Held,
}

impl Latest {
    /// The latest version written by the stored event at history key `at`
    /// (a Put).
    pub(crate) fn of_event(at: &[u8], ev: &StoredEvent) -> Latest {
        Latest {
            rev: ev.kv.mod_revision,
            sub: keys::history_sub(at),
            create_revision: ev.kv.create_revision,
            version: ev.kv.version,
            lease: ev.kv.lease,
            value: match ev.logged {
                Some(at) => Held::Logged(at),
                None => Held::Inline(ev.kv.value.clone().into_boxed_slice()),
            },
        }
    }

    /// The history key of the event that wrote it.
    pub(crate) fn history_key(&self) -> Vec<u8> {
        keys::history_key(self.rev, self.sub)
    }

    /// The full key-value of `key`, its value read from `values` if it is
    /// there.
    pub(crate) fn key_value(&self, key: &[u8], values: &ValueLog) -> Result<KeyValue, MvccError> {
        let mut kv = self.key_value_without_value(key);
        kv.value = match &self.value {
            Held::Inline(v) => v.to_vec(),
            Held::Logged(at) => values.read(at)?,
        };
        Ok(kv)
    }

    /// The key-value of `key` with an empty value (for compares that do not
    /// look at it).
    pub(crate) fn key_value_without_value(&self, key: &[u8]) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            value: Vec::new(),
            create_revision: self.create_revision,
            mod_revision: self.rev,
            version: self.version,
            lease: self.lease,
        }
    }
}

/// Every live key and its latest version, as of one revision.
#[derive(Default, Debug, PartialEq, Eq)]
pub(crate) struct KeyIndex {
    map: BTreeMap<Box<[u8]>, Latest>,
    /// The store's revision this index is at (apply moves it with the map).
    pub revision: Revision,
}

impl KeyIndex {
    /// Build the index at `revision` from every history event up to it, in
    /// revision order.
    pub(crate) fn rebuild(
        events: impl Iterator<Item = Result<(sled::IVec, StoredEvent), MvccError>>,
        revision: Revision,
    ) -> Result<KeyIndex, MvccError> {
        let mut index = KeyIndex {
            revision,
            ..KeyIndex::default()
        };
        for item in events {
            let (at, ev) = item?;
            index.record(&at, &ev);
        }
        Ok(index)
    }

    /// Take in the stored event at history key `at`, newer than every
    /// event taken in so far for its key.
    pub(crate) fn record(&mut self, at: &[u8], ev: &StoredEvent) {
        match ev.kind {
            EventType::Put => self.set(&ev.kv.key, Latest::of_event(at, ev)),
            EventType::Delete => self.remove(&ev.kv.key),
        }
    }

    /// The latest version of `key`, if it is live.
    pub(crate) fn get(&self, key: &[u8]) -> Option<&Latest> {
        self.map.get(key)
    }

    /// The live keys in `range`, in key order.
    pub(crate) fn range<'a>(
        &'a self,
        range: &'a KeyRange,
    ) -> impl Iterator<Item = (&'a [u8], &'a Latest)> + 'a {
        range
            .bounds()
            .map(|bounds| self.map.range::<[u8], _>(bounds))
            .into_iter()
            .flatten()
            .map(|(k, l)| (&**k, l))
    }

    /// Make `latest` the latest version of `key`.
    pub(crate) fn set(&mut self, key: &[u8], latest: Latest) {
        match self.map.get_mut(key) {
            Some(l) => *l = latest,
            None => {
                self.map.insert(key.into(), latest);
            }
        }
    }

    /// `key` was deleted.
    pub(crate) fn remove(&mut self, key: &[u8]) {
        self.map.remove(key);
    }

    /// The event at history key `at`, the latest of `key`, moved its value
    /// to `to` in the value log (garbage collection of a segment).
    pub(crate) fn value_moved(&mut self, key: &[u8], at: &[u8], to: ValueRef) {
        if let Some(l) = self.map.get_mut(key) {
            if l.history_key() == at {
                l.value = Held::Logged(to);
            }
        }
    }

    /// The number of live keys.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
#[path = "key_index_test.rs"]
mod tests;
