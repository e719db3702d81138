//! The scheduler's leader election: the Lease `kube-system/skiff-scheduler`
//! (`kube-system/kube-scheduler` in Kubernetes) through the shared
//! [`skiff_client::leader`] elector; with several servers only the holder
//! schedules.
//!
//! With these timings a standby takes over within `LEASE_DURATION` +
//! `RETRY_PERIOD` (about 12 s) of the leader's death, and at once when a
//! leader shuts down cleanly, because it releases the Lease.

use std::time::Duration;

use kube::Client;
use skiff_client::leader::LeaseConfig;
use tokio::sync::watch;

/// Namespace of the scheduler's Lease.
pub const LEASE_NAMESPACE: &str = "kube-system";
/// Name of the scheduler's Lease.
pub const LEASE_NAME: &str = "skiff-scheduler";
/// `leaseDurationSeconds`: how long a silent holder keeps the Lease
/// (kube-scheduler's default is 15 s; Skiff takes over faster).
pub const LEASE_DURATION: Duration = Duration::from_secs(10);
/// How long a leader keeps acting without a successful renewal.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(8);
/// Time between attempts to acquire or renew (client-go's `RetryPeriod`).
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// The scheduler's Lease and timings.
pub const CONFIG: LeaseConfig = LeaseConfig {
    namespace: LEASE_NAMESPACE,
    name: LEASE_NAME,
    lease_duration: LEASE_DURATION,
    renew_deadline: RENEW_DEADLINE,
    retry_period: RETRY_PERIOD,
};

/// Runs the election until `stop` turns true, publishing whether this
/// process leads on `leading`.
pub async fn elect(
    client: Client,
    identity: String,
    leading: watch::Sender<bool>,
    stop: watch::Receiver<bool>,
) {
    skiff_client::leader::elect(client, CONFIG, identity, leading, stop).await
}
