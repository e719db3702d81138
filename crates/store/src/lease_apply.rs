//! Leases in the deterministic apply (etcd's `lease` package, minus the
//! clock).
//!
//! What is replicated is only *which* leases exist, their granted TTL and
//! which keys are attached to each; *when* a lease expires is decided by the
//! leader's in-memory [`crate::lessor::Lessor`], which then proposes an
//! ordinary [`crate::raft_types::Command::LeaseRevoke`]. So apply never reads
//! a clock and every replica holds the same leases (etcd does the same:
//! expiry is a `LeaseRevoke` proposed by the leader's lessor).
//!
//! - A grant with id 0 takes the next id of a replicated counter (etcd picks
//!   a random id on the leader before proposing; a counter is deterministic
//!   and never reuses an id). A grant does not change the revision.
//! - A put naming a lease attaches the key to it (detaching it from its old
//!   lease); a put naming an unknown lease is refused with `LeaseNotFound`,
//!   as etcd does. Deleting a key detaches it.
//! - A revoke deletes every attached key at one new revision (one Delete
//!   event each, so watchers see them), then the lease; with no keys the
//!   revision stays.

use serde::{Deserialize, Serialize};

use crate::keys;
use crate::kv::{LeaseGrantResponse, LeaseId, Revision};
use crate::mvcc::{decode, Mvcc, MvccError, Overlay};
use crate::raft_types::ApplyError;

/// The shortest TTL a lease gets, in seconds. A lease should survive a
/// leader change (the new leader restarts every TTL once elected); etcd's
/// `minLeaseTTL` is 1.5 election timeouts, which for Skiff's 1 s minimum
/// election timeout is 1.5 s, rounded up to whole seconds.
pub const MIN_LEASE_TTL_SECS: i64 = 2;
/// The longest TTL a lease may ask for (etcd's `MaxLeaseTTL`, about 285
/// years).
pub const MAX_LEASE_TTL_SECS: i64 = 9_000_000_000;

/// A live lease as stored in the state machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LeaseRecord {
    /// Its id.
    pub id: LeaseId,
    /// Its granted TTL in seconds.
    pub ttl: i64,
}

/// A lease created or removed by an entry, for the leader's lessor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LeaseChange {
    /// Granted with this TTL.
    Granted(LeaseId, i64),
    /// Revoked (or expired).
    Revoked(LeaseId),
}

impl Mvcc {
    /// Lease `id` as of the tree plus `overlay`.
    pub(crate) fn lease_with(
        &self,
        overlay: &Overlay,
        id: LeaseId,
    ) -> Result<Option<LeaseRecord>, MvccError> {
        if let Some(l) = overlay.leases.get(&id) {
            return Ok(l.clone());
        }
        self.lease(id)
    }

    /// Lease `id` as stored.
    pub(crate) fn lease(&self, id: LeaseId) -> Result<Option<LeaseRecord>, MvccError> {
        match self.tree.get(keys::lease_key(id))? {
            Some(v) => Ok(Some(decode("lease", &v)?)),
            None => Ok(None),
        }
    }

    /// Every stored lease, in id order (as unsigned numbers).
    pub(crate) fn leases(&self) -> Result<Vec<LeaseRecord>, MvccError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix([keys::LEASE_PREFIX]) {
            let (_, v) = item?;
            out.push(decode("lease", &v)?);
        }
        Ok(out)
    }

    /// Refuse a put naming a lease that does not exist (0 is "no lease").
    pub(crate) fn check_lease(&self, overlay: &Overlay, id: LeaseId) -> Result<(), MvccError> {
        if id != 0 && self.lease_with(overlay, id)?.is_none() {
            return Err(ApplyError::LeaseNotFound(id).into());
        }
        Ok(())
    }

    /// The keys attached to lease `id`, as of the tree plus `overlay`.
    pub(crate) fn attached_keys(
        &self,
        overlay: &Overlay,
        id: LeaseId,
    ) -> Result<Vec<Vec<u8>>, MvccError> {
        let prefix = keys::attach_prefix(id);
        let mut set = std::collections::BTreeSet::new();
        for item in self.tree.scan_prefix(&prefix) {
            let (k, _) = item?;
            set.insert(k[prefix.len()..].to_vec());
        }
        for ((lease, key), attached) in overlay.attach.range((id, Vec::new())..) {
            if *lease != id {
                break;
            }
            if *attached {
                set.insert(key.clone());
            } else {
                set.remove(key);
            }
        }
        Ok(set.into_iter().collect())
    }

    /// Apply a grant.
    pub(crate) fn apply_lease_grant(
        &self,
        id: LeaseId,
        ttl: i64,
        rev: Revision,
        overlay: &mut Overlay,
    ) -> Result<LeaseGrantResponse, MvccError> {
        if ttl > MAX_LEASE_TTL_SECS {
            return Err(ApplyError::InvalidRequest(format!("too large lease TTL: {ttl}")).into());
        }
        let id = if id == 0 {
            let mut next = match overlay.lease_next {
                Some(n) => n,
                None => match self.tree.get(keys::META_LEASE_NEXT)? {
                    Some(v) => decode("lease id", &v)?,
                    None => 1,
                },
            };
            while self.lease_with(overlay, next)?.is_some() {
                next += 1;
            }
            overlay.lease_next = Some(next + 1);
            next
        } else {
            if self.lease_with(overlay, id)?.is_some() {
                return Err(ApplyError::LeaseExists(id).into());
            }
            id
        };
        let ttl = ttl.max(MIN_LEASE_TTL_SECS);
        overlay.leases.insert(id, Some(LeaseRecord { id, ttl }));
        Ok(LeaseGrantResponse {
            revision: rev,
            id,
            ttl,
        })
    }
}

/// Record in `overlay` that `key` moved from lease `old` to lease `new`
/// (either may be 0, "no lease").
pub(crate) fn reattach(overlay: &mut Overlay, key: &[u8], old: LeaseId, new: LeaseId) {
    if old == new {
        return;
    }
    if old != 0 {
        overlay.attach.insert((old, key.to_vec()), false);
    }
    if new != 0 {
        overlay.attach.insert((new, key.to_vec()), true);
    }
}
