//! Controller expectations (`pkg/controller/controller_utils.go`,
//! `ControllerExpectations`): after a controller asks the API for N pod
//! creations, its cache shows them only when the watch delivers them. A
//! reconcile in between would count too few pods and create them again.
//! So the controller records what it expects to see; until the informer has
//! observed every expected creation and deletion (or the record is older
//! than [`EXPECTATIONS_TIMEOUT`]), it does not create or delete more.
//!
//! Skiff records names of created pods and uids of deleted ones instead of
//! bare counts, which makes "observed" exact.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How long an unmet expectation blocks a controller (Kubernetes: 5 min),
/// in case a watch event was lost.
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Record {
    creates: HashSet<String>,
    deletes: HashSet<String>,
    since: Instant,
}

/// Expectations of every owner, keyed by the owner's queue key.
#[derive(Debug, Default)]
pub struct Expectations {
    records: Mutex<HashMap<String, Record>>,
}

impl Expectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Record>> {
        // Poison only follows a panic in a one-line update; data is intact.
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `owner` is about to create pods with these names and
    /// delete pods with these uids.
    pub fn expect(&self, owner: &str, creates: &[String], deletes: &[String]) {
        let mut records = self.lock();
        let r = records.entry(owner.to_string()).or_insert_with(|| Record {
            creates: HashSet::new(),
            deletes: HashSet::new(),
            since: Instant::now(),
        });
        r.creates.extend(creates.iter().cloned());
        r.deletes.extend(deletes.iter().cloned());
        r.since = Instant::now();
    }

    /// The informer saw pod `name` (added or changed) for `owner`, or a
    /// create failed so it will never be seen.
    pub fn creation_observed(&self, owner: &str, name: &str) {
        if let Some(r) = self.lock().get_mut(owner) {
            r.creates.remove(name);
        }
    }

    /// The informer saw the pod with `uid` (name `name`) go away, or a
    /// delete failed so it will never be seen.
    pub fn deletion_observed(&self, owner: &str, name: &str, uid: &str) {
        if let Some(r) = self.lock().get_mut(owner) {
            r.deletes.remove(uid);
            // A pod deleted before its creation was seen.
            r.creates.remove(name);
        }
    }

    /// Whether `owner` may act on its cache: nothing is pending, or the
    /// record expired.
    pub fn satisfied(&self, owner: &str) -> bool {
        let mut records = self.lock();
        match records.get(owner) {
            None => true,
            Some(r) if r.creates.is_empty() && r.deletes.is_empty() => {
                records.remove(owner);
                true
            }
            Some(r) if r.since.elapsed() > EXPECTATIONS_TIMEOUT => {
                tracing::warn!(%owner, "expectations timed out; resyncing from the cache");
                records.remove(owner);
                true
            }
            Some(_) => false,
        }
    }

    /// Drops `owner`'s record (the owner was deleted).
    pub fn forget(&self, owner: &str) {
        self.lock().remove(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_until_observed() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/rs"));
        e.expect("ns/rs", &["a".into(), "b".into()], &["uid-c".into()]);
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs", "a");
        e.deletion_observed("ns/rs", "b", "uid-b");
        assert!(!e.satisfied("ns/rs"));
        e.deletion_observed("ns/rs", "c", "uid-c");
        assert!(e.satisfied("ns/rs"));
        assert!(e.satisfied("ns/other"));
    }
}
