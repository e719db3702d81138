//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's
//! `leaderelection` package does it for kube-scheduler
//! (`kube-system/kube-scheduler` there, `kube-system/skiff-scheduler` here):
//! with several servers only the holder of the Lease schedules.
//!
//! - Acquire: create the Lease, or take it over when its holder has not
//!   renewed it for `leaseDurationSeconds` *as observed locally* (client-go
//!   times the record it last saw with its own clock, so clock skew between
//!   servers does not matter).
//! - Renew every [`RETRY_PERIOD`]; a holder that cannot renew for
//!   [`RENEW_DEADLINE`] steps down.
//! - Every write is an update with the `resourceVersion` last read, so two
//!   candidates racing for the Lease cannot both win (409 Conflict).
//!
//! With the defaults a standby takes over within `LEASE_DURATION` +
//! `RETRY_PERIOD` (about 12 s) of the leader's death, and at once when a
//! leader shuts down cleanly, because it releases the Lease.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::Client;
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

/// The last Lease record seen, and when (locally) it last changed.
struct Observed {
    holder: Option<String>,
    renew: Option<MicroTime>,
    at: Instant,
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// One attempt to acquire or renew. Returns whether we hold the Lease.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    identity: &str,
    observed: &mut Option<Observed>,
) -> Result<bool, kube::Error> {
    let current = match api.get_opt(LEASE_NAME).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.into()),
                    namespace: Some(LEASE_NAMESPACE.into()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(identity.into()),
                    lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        }
        Some(l) => l,
    };
    let spec = current.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    // Track when the record last changed, on our own clock.
    let changed = observed
        .as_ref()
        .is_none_or(|o| o.holder != holder || o.renew != spec.renew_time);
    if changed {
        *observed = Some(Observed {
            holder: holder.clone(),
            renew: spec.renew_time.clone(),
            at: Instant::now(),
        });
    }
    let mine = holder.as_deref() == Some(identity);
    let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
    let expired = observed
        .as_ref()
        .is_some_and(|o| o.at.elapsed() >= duration);
    if !mine && holder.is_some() && !expired {
        return Ok(false);
    }
    let mut lease = current;
    let mut new_spec = spec.clone();
    if !mine {
        new_spec.acquire_time = Some(now());
        new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    new_spec.holder_identity = Some(identity.into());
    new_spec.lease_duration_seconds = Some(LEASE_DURATION.as_secs() as i32);
    new_spec.renew_time = Some(now());
    lease.spec = Some(new_spec);
    match api
        .replace(LEASE_NAME, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the Lease up on shutdown so a standby takes over at once
/// (client-go's `ReleaseOnCancel`).
async fn release(api: &Api<Lease>, identity: &str) {
    let Ok(Some(mut lease)) = api.get_opt(LEASE_NAME).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(identity) {
        return;
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now());
    if let Err(e) = api
        .replace(LEASE_NAME, &PostParams::default(), &lease)
        .await
    {
        tracing::debug!(error = %e, "could not release the scheduler lease");
    }
}

/// Runs the election until `stop` turns true, publishing whether this
/// process leads on `leading`.
pub async fn elect(
    client: Client,
    identity: String,
    leading: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
    let mut observed = None;
    let mut last_renew: Option<Instant> = None;
    loop {
        match try_acquire_or_renew(&api, &identity, &mut observed).await {
            Ok(true) => {
                last_renew = Some(Instant::now());
                if !*leading.borrow() {
                    tracing::info!(%identity, "became the scheduler leader");
                }
                leading.send_replace(true);
            }
            Ok(false) => {
                last_renew = None;
                if *leading.borrow() {
                    tracing::warn!(%identity, "lost the scheduler lease");
                }
                leading.send_replace(false);
            }
            Err(e) => {
                tracing::warn!(error = %e, "scheduler lease request failed");
                if last_renew.is_none_or(|t| t.elapsed() >= RENEW_DEADLINE) && *leading.borrow() {
                    tracing::warn!(%identity, "could not renew the scheduler lease in time; stepping down");
                    leading.send_replace(false);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY_PERIOD) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    if *leading.borrow() {
        leading.send_replace(false);
        release(&api, &identity).await;
    }
}
