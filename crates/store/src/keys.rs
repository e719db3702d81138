//! The sled key layout of the state machine, and key ranges.
//!
//! Everything lives in one sled tree, so one snapshot dump holds it all.
//! Each value is stored once, in its history event (see `mvcc.rs`); which
//! keys are live, and where each one's latest event is, only the in-memory
//! key index knows (`key_index.rs`, rebuilt from these events at open):
//!
//! ```text
//! h<rev: u64 BE><sub: u32 BE> -> StoredEvent    every change, in revision order, pointing to
//!                                               the previous version's event (below the
//!                                               compaction point: only the versions still
//!                                               pointed to); a value over 64 bytes is a
//!                                               pointer into the value log (`value_log.rs`)
//! m<name>                     -> meta           revision, compact revision,
//!                                               last applied log id, membership,
//!                                               next lease id
//! l<lease: u64 BE>            -> LeaseRecord    each live lease and its granted TTL
//! a<lease: u64 BE><key>       -> (empty)        keys attached to each lease
//! ```
//!
//! Format 3 also had `k<key> -> h<rev><sub>` for each live key; opening a
//! format-3 directory deletes them (`migrate.rs`) and importing a snapshot
//! skips them.
//!
//! Big-endian numbers make sled's byte order equal to revision order.

use std::ops::Bound;

use crate::kv::{LeaseId, Revision};

/// Prefix of format 3's entries for live keys (`k<key> -> h<rev><sub>`),
/// gone since format 4.
pub(crate) const FORMAT3_KV_PREFIX: u8 = b'k';
/// Prefix of the history events.
pub(crate) const HISTORY_PREFIX: u8 = b'h';
/// Prefix of the lease records.
pub(crate) const LEASE_PREFIX: u8 = b'l';
/// Prefix of the lease attachments.
pub(crate) const ATTACH_PREFIX: u8 = b'a';
/// The next lease id apply hands out when a grant leaves the choice to it.
pub(crate) const META_LEASE_NEXT: &[u8] = b"mlease_next";
/// The current revision.
pub(crate) const META_REVISION: &[u8] = b"mrevision";
/// The compaction point.
pub(crate) const META_COMPACT: &[u8] = b"mcompact";
/// The last applied raft log id.
pub(crate) const META_LAST_APPLIED: &[u8] = b"mlast_applied";
/// The last applied membership.
pub(crate) const META_MEMBERSHIP: &[u8] = b"mmembership";

/// The sled key of lease `id`'s record.
pub(crate) fn lease_key(id: LeaseId) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(LEASE_PREFIX);
    k.extend_from_slice(&(id as u64).to_be_bytes());
    k
}

/// The prefix of lease `id`'s attachment keys.
pub(crate) fn attach_prefix(id: LeaseId) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(ATTACH_PREFIX);
    k.extend_from_slice(&(id as u64).to_be_bytes());
    k
}

/// The sled key recording that `key` is attached to lease `id`.
pub(crate) fn attach_key(id: LeaseId, key: &[u8]) -> Vec<u8> {
    let mut k = attach_prefix(id);
    k.extend_from_slice(key);
    k
}

/// The sled key of the `sub`-th event of revision `rev`.
pub(crate) fn history_key(rev: Revision, sub: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(13);
    k.push(HISTORY_PREFIX);
    k.extend_from_slice(&(rev as u64).to_be_bytes());
    k.extend_from_slice(&sub.to_be_bytes());
    k
}

/// The sub-index of history key `k` (0 if it is too short to hold one).
pub(crate) fn history_sub(k: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    if k.len() >= 13 {
        b.copy_from_slice(&k[9..13]);
    }
    u32::from_be_bytes(b)
}

/// The revision a history sled key belongs to.
pub(crate) fn history_revision(k: &[u8]) -> Revision {
    let mut b = [0u8; 8];
    if k.len() >= 9 {
        b.copy_from_slice(&k[1..9]);
    }
    u64::from_be_bytes(b) as Revision
}

/// A key range's bounds on keys, as `BTreeMap::range` takes them.
pub(crate) type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// A key range as etcd defines it: `[key, range_end)`, a single key when
/// `range_end` is empty, and "every key ≥ key" when `range_end` is `"\0"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyRange {
    /// First key.
    pub start: Vec<u8>,
    /// `None`: the single key `start`. `Some(None)`: unbounded. `Some(Some(e))`: up to `e`, exclusive.
    pub end: Option<Option<Vec<u8>>>,
}

impl KeyRange {
    /// The range etcd means by (`key`, `range_end`).
    pub(crate) fn new(key: &[u8], range_end: &[u8]) -> KeyRange {
        let end = if range_end.is_empty() {
            None
        } else if range_end == [0] {
            Some(None)
        } else {
            Some(Some(range_end.to_vec()))
        };
        KeyRange {
            start: key.to_vec(),
            end,
        }
    }

    /// Whether `key` is inside.
    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        match &self.end {
            None => key == self.start.as_slice(),
            Some(None) => key >= self.start.as_slice(),
            Some(Some(e)) => key >= self.start.as_slice() && key < e.as_slice(),
        }
    }

    /// The range as bounds on keys, or None if it is empty because it
    /// ends before it starts (etcd answers such a range with nothing).
    pub(crate) fn bounds(&self) -> Option<KeyBounds<'_>> {
        let start = Bound::Included(self.start.as_slice());
        match &self.end {
            None => Some((start, Bound::Included(self.start.as_slice()))),
            Some(None) => Some((start, Bound::Unbounded)),
            Some(Some(e)) if *e >= self.start => Some((start, Bound::Excluded(e.as_slice()))),
            Some(Some(_)) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (key, range_end, probe, inside?)
    type Case = (&'static [u8], &'static [u8], &'static [u8], bool);

    #[test]
    fn key_ranges_follow_etcd() {
        let cases: &[Case] = &[
            (b"/a", b"", b"/a", true),
            (b"/a", b"", b"/ab", false),
            (b"/a/", b"/a0", b"/a/x", true),
            (b"/a/", b"/a0", b"/a0", false),
            (b"/a/", b"/a0", b"/a", false),
            (b"/m", b"\0", b"/z", true),
            (b"/m", b"\0", b"/a", false),
            (b"", b"\0", b"", true),
            (b"/b", b"/a", b"/b", false),
            (b"/b", b"/a", b"/a", false),
            (b"/b", b"/b", b"/b", false),
        ];
        for (key, end, probe, want) in cases {
            let r = KeyRange::new(key, end);
            assert_eq!(r.contains(probe), *want, "{key:?}..{end:?} ∋ {probe:?}");
            // The bounds agree with `contains`.
            let within = r
                .bounds()
                .is_some_and(|b| std::ops::RangeBounds::<[u8]>::contains(&b, *probe));
            assert_eq!(within, *want, "bounds of {key:?}..{end:?} for {probe:?}");
        }
    }

    #[test]
    fn history_keys_sort_by_revision() {
        assert!(history_key(2, 0) > history_key(1, 9));
        assert!(history_key(1, 1) > history_key(1, 0));
        assert!(history_key(256, 0) > history_key(255, 7));
        assert_eq!(history_revision(&history_key(12345, 3)), 12345);
    }
}
