//! Events expire: every write of an Event (core/v1 and events.k8s.io/v1)
//! attaches its key to a store lease, so the store deletes it once the TTL
//! (`--event-ttl`, 1 h by default, as kube-apiserver) has passed since its
//! last write.
//!
//! A lease per event would mean a lease grant per write and one lease
//! record per event. As kube-apiserver's storage layer does, writes within
//! a short reuse window share one lease, granted for the TTL plus that
//! window so that no event lives less than the TTL: the window is 5% of
//! the TTL, at most one minute. An event written at the end of a window
//! lives up to one window longer than the TTL.
//!
//! [`LeasePicker`] is the pure part (which lease, given the clock);
//! [`EventLeases`] grants through the store.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skiff_store::{Lease, LeaseGrantRequest, LeaseId, StoreError};

use crate::resources::ResourceInfo;

/// kube-apiserver's default `--event-ttl`.
pub const DEFAULT_EVENT_TTL: Duration = Duration::from_secs(3600);

/// The longest that writes share one lease.
const MAX_REUSE: Duration = Duration::from_secs(60);

/// Whether writes of `resource` expire (the two Event kinds).
pub fn expires(resource: &ResourceInfo) -> bool {
    resource.plural == "events" && matches!(resource.group, "" | "events.k8s.io")
}

/// Which lease a write made at a given instant should use.
#[derive(Debug)]
pub struct LeasePicker {
    ttl: Duration,
    reuse: Duration,
    current: Option<(LeaseId, Instant)>,
}

impl LeasePicker {
    /// Picks leases for keys that must live at least `ttl`.
    pub fn new(ttl: Duration) -> LeasePicker {
        LeasePicker {
            ttl,
            reuse: (ttl / 20).min(MAX_REUSE),
            current: None,
        }
    }

    /// The lease granted at most one reuse window before `now`, if any.
    pub fn reusable(&self, now: Instant) -> Option<LeaseId> {
        self.current
            .filter(|(_, granted)| now.saturating_duration_since(*granted) < self.reuse)
            .map(|(id, _)| id)
    }

    /// The TTL to grant a new lease with, in whole seconds rounded up.
    pub fn grant_ttl_secs(&self) -> i64 {
        let d = self.ttl + self.reuse;
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        i64::try_from(secs).unwrap_or(i64::MAX)
    }

    /// Records a lease granted at `granted`.
    pub fn granted(&mut self, id: LeaseId, granted: Instant) {
        self.current = Some((id, granted));
    }

    /// Forgets `id` (the store no longer has it).
    pub fn forget(&mut self, id: LeaseId) {
        if self.current.is_some_and(|(c, _)| c == id) {
            self.current = None;
        }
    }
}

/// Leases for event writes, granted through the store.
pub struct EventLeases {
    leases: Arc<dyn Lease>,
    picker: Mutex<LeasePicker>,
}

impl std::fmt::Debug for EventLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLeases")
            .field("picker", &self.picker)
            .finish_non_exhaustive()
    }
}

impl EventLeases {
    /// Events live `ttl` after their last write; leases come from `leases`.
    pub fn new(leases: Arc<dyn Lease>, ttl: Duration) -> EventLeases {
        EventLeases {
            leases,
            picker: Mutex::new(LeasePicker::new(ttl)),
        }
    }

    /// The lease to attach a write to: the current one while it is fresh,
    /// otherwise a new grant. Concurrent writes at a window's edge may each
    /// grant one; the last grant is kept, the others expire on their own.
    pub async fn lease(&self) -> Result<LeaseId, StoreError> {
        let ttl = {
            let picker = self.picker.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(id) = picker.reusable(Instant::now()) {
                return Ok(id);
            }
            picker.grant_ttl_secs()
        };
        let granted = self
            .leases
            .lease_grant(LeaseGrantRequest { id: 0, ttl })
            .await?;
        self.picker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .granted(granted.id, Instant::now());
        Ok(granted.id)
    }

    /// Forgets `id` after the store answered that it has no such lease.
    pub fn forget(&self, id: LeaseId) {
        self.picker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget(id);
    }
}

pub use skiff_api::duration::parse_duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_within_the_window_share_a_lease() {
        let t0 = Instant::now();
        let mut p = LeasePicker::new(Duration::from_secs(3600));
        assert_eq!(p.reusable(t0), None);
        // 5% of an hour is three minutes: capped at one.
        assert_eq!(p.grant_ttl_secs(), 3660);
        p.granted(7, t0);
        assert_eq!(p.reusable(t0 + Duration::from_secs(59)), Some(7));
        assert_eq!(p.reusable(t0 + Duration::from_secs(60)), None);
        p.forget(8);
        assert_eq!(p.reusable(t0), Some(7));
        p.forget(7);
        assert_eq!(p.reusable(t0), None);
    }

    #[test]
    fn short_ttls_get_a_short_window() {
        let mut p = LeasePicker::new(Duration::from_secs(10));
        assert_eq!(p.grant_ttl_secs(), 11, "10 s + 0.5 s, rounded up");
        let t0 = Instant::now();
        p.granted(1, t0);
        assert_eq!(p.reusable(t0 + Duration::from_millis(400)), Some(1));
        assert_eq!(p.reusable(t0 + Duration::from_millis(500)), None);
    }
}
