//! The lessor: the leader's in-memory lease deadlines (etcd's `lessor`).
//!
//! ```text
//!  apply ──LeaseChange──► Lessor { id → (granted TTL, deadline) }
//!                           ▲ keep-alive: deadline = now + TTL   (leader only)
//!                           │ tick every LEASE_CHECK_INTERVAL:
//!                           └─ expired ids ──► propose Command::LeaseRevoke ──► raft
//! ```
//!
//! Deadlines are node-local and never replicated: apply tells the lessor
//! which leases exist, and only the leader's clock decides when one has
//! expired, by proposing an ordinary revoke through raft (so apply stays
//! deterministic). Like etcd's `Promote`, a node that becomes leader gives
//! every lease a fresh TTL: it cannot know how long ago the old leader last
//! saw a keep-alive. The same happens when a store restarts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::kv::LeaseId;
use crate::lease_apply::LeaseChange;

/// How often the leader looks for expired leases. etcd checks every 500 ms
/// too; a lease therefore lives up to this much past its TTL.
pub(crate) const LEASE_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// After proposing a revoke, how long before the leader proposes it again
/// if the lease is still there (the first proposal failed or is slow).
const REVOKE_RETRY: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug)]
struct Deadline {
    ttl: i64,
    expires: Instant,
}

/// Lease deadlines of this node.
#[derive(Default)]
pub(crate) struct Lessor {
    leases: Mutex<HashMap<LeaseId, Deadline>>,
}

fn deadline(now: Instant, ttl: i64) -> Instant {
    now + Duration::from_secs(ttl.max(0) as u64)
}

impl Lessor {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<LeaseId, Deadline>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Track what an applied entry granted or revoked.
    pub(crate) fn apply(&self, changes: &[LeaseChange]) {
        if changes.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut map = self.lock();
        for c in changes {
            match c {
                LeaseChange::Granted(id, ttl) => {
                    map.insert(
                        *id,
                        Deadline {
                            ttl: *ttl,
                            expires: deadline(now, *ttl),
                        },
                    );
                }
                LeaseChange::Revoked(id) => {
                    map.remove(id);
                }
            }
        }
    }

    /// Replace every deadline by a fresh TTL for `leases` (id, granted TTL),
    /// read from the state machine while `read` runs under the lessor's lock
    /// (so no applied change is lost in between).
    pub(crate) fn promote<E>(
        &self,
        read: impl FnOnce() -> Result<Vec<(LeaseId, i64)>, E>,
    ) -> Result<(), E> {
        let mut map = self.lock();
        let leases = read()?;
        let now = Instant::now();
        map.clear();
        for (id, ttl) in leases {
            map.insert(
                id,
                Deadline {
                    ttl,
                    expires: deadline(now, ttl),
                },
            );
        }
        Ok(())
    }

    /// Restart `id`'s TTL; returns the TTL, or None if unknown.
    pub(crate) fn keep_alive(&self, id: LeaseId) -> Option<i64> {
        let mut map = self.lock();
        let d = map.get_mut(&id)?;
        d.expires = deadline(Instant::now(), d.ttl);
        Some(d.ttl)
    }

    /// Whole seconds left for `id` (rounded up, as etcd does), or None.
    pub(crate) fn remaining(&self, id: LeaseId) -> Option<i64> {
        let map = self.lock();
        let d = map.get(&id)?;
        let left = d.expires.saturating_duration_since(Instant::now());
        Some(left.as_millis().div_ceil(1000) as i64)
    }

    /// Leases whose deadline has passed; each is given [`REVOKE_RETRY`]
    /// more before it is reported again.
    pub(crate) fn expired(&self, now: Instant) -> Vec<LeaseId> {
        let mut map = self.lock();
        let mut out = Vec::new();
        for (id, d) in map.iter_mut() {
            if d.expires <= now {
                out.push(*id);
                d.expires = now + REVOKE_RETRY;
            }
        }
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_keep_alive_and_promote() {
        let l = Lessor::default();
        l.apply(&[LeaseChange::Granted(1, 0), LeaseChange::Granted(2, 100)]);
        assert_eq!(l.expired(Instant::now()), vec![1]);
        // Reported once, then retried later.
        assert!(l.expired(Instant::now()).is_empty());
        assert_eq!(l.keep_alive(2), Some(100));
        assert!(matches!(l.remaining(2), Some(99..=100)));
        assert_eq!(l.keep_alive(3), None);
        l.apply(&[LeaseChange::Revoked(1)]);
        assert_eq!(l.remaining(1), None);
        l.promote(|| Ok::<_, ()>(vec![(5, 10)])).unwrap();
        assert_eq!(l.remaining(2), None);
        assert_eq!(l.remaining(5), Some(10));
    }
}
