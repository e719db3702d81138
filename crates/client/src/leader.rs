//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's
//! `leaderelection` package does it for kube-scheduler and
//! kube-controller-manager: with several servers only the holder of the
//! Lease acts. The scheduler (`kube-system/skiff-scheduler`) and the
//! controllers (`kube-system/kube-controller-manager`) each run one
//! [`elect`] with their own [`LeaseConfig`].
//!
//! - Acquire: create the Lease, or take it over when its holder has not
//!   renewed it for `leaseDurationSeconds` *as observed locally* (client-go
//!   times the record it last saw with its own clock, so clock skew between
//!   servers does not matter). [`decide`] is that rule, pure, with the
//!   clock passed in.
//! - Renew every `retry_period`; a holder that cannot renew for
//!   `renew_deadline` steps down.
//! - Every write is an update with the `resourceVersion` last read, so two
//!   candidates racing for the Lease cannot both win (409 Conflict).
//!
//! A standby takes over within `lease_duration` + `retry_period` of the
//! leader's death, and at once when a leader shuts down cleanly, because
//! it releases the Lease.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::sync::watch;

/// Which Lease to contend for, and the timings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// The Lease's namespace (`kube-system`).
    pub namespace: &'static str,
    /// The Lease's name.
    pub name: &'static str,
    /// `leaseDurationSeconds`: how long a silent holder keeps the Lease.
    pub lease_duration: Duration,
    /// How long a leader keeps acting without a successful renewal.
    pub renew_deadline: Duration,
    /// Time between attempts to acquire or renew (client-go's `RetryPeriod`).
    pub retry_period: Duration,
}

/// The last Lease record seen, and when (locally) it last changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    holder: Option<String>,
    renew: Option<MicroTime>,
    at: Instant,
}

/// What to do with the Lease as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// There is none: create it, held by us.
    Create,
    /// Someone else holds it and renews it: stand by.
    StandBy,
    /// Ours: renew it.
    Renew,
    /// Free or expired: take it over (one more transition).
    TakeOver,
}

/// Client-go's acquire rule for the Lease `spec` read at `now` (`None`:
/// there is no Lease). `observed` carries the last record seen between
/// calls; a holder counts as silent once the record has not changed for
/// its `leaseDurationSeconds` on our clock.
pub fn decide(
    spec: Option<&LeaseSpec>,
    identity: &str,
    observed: &mut Option<Observed>,
    now: Instant,
) -> Decision {
    let Some(spec) = spec else {
        return Decision::Create;
    };
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let changed = observed
        .as_ref()
        .is_none_or(|o| o.holder != holder || o.renew != spec.renew_time);
    if changed {
        *observed = Some(Observed {
            holder: holder.clone(),
            renew: spec.renew_time.clone(),
            at: now,
        });
    }
    if holder.as_deref() == Some(identity) {
        return Decision::Renew;
    }
    let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
    let expired = observed
        .as_ref()
        .is_some_and(|o| now.saturating_duration_since(o.at) >= duration);
    if holder.is_some() && !expired {
        Decision::StandBy
    } else {
        Decision::TakeOver
    }
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// One attempt to acquire or renew. Returns whether we hold the Lease.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &LeaseConfig,
    identity: &str,
    observed: &mut Option<Observed>,
) -> Result<bool, kube::Error> {
    let current = api.get_opt(config.name).await?;
    let spec = current.as_ref().and_then(|l| l.spec.clone());
    let decision = decide(
        current
            .as_ref()
            .map(|_| spec.clone().unwrap_or_default())
            .as_ref(),
        identity,
        observed,
        Instant::now(),
    );
    let duration = config.lease_duration.as_secs() as i32;
    let written = match (decision, current) {
        (Decision::StandBy, _) => return Ok(false),
        (Decision::Create, _) | (_, None) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.into()),
                    namespace: Some(config.namespace.into()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(identity.into()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            api.create(&PostParams::default(), &lease).await
        }
        (decision, Some(mut lease)) => {
            let old = spec.unwrap_or_default();
            let mut new_spec = old.clone();
            if decision == Decision::TakeOver {
                new_spec.acquire_time = Some(now());
                new_spec.lease_transitions = Some(old.lease_transitions.unwrap_or(0) + 1);
            }
            new_spec.holder_identity = Some(identity.into());
            new_spec.lease_duration_seconds = Some(duration);
            new_spec.renew_time = Some(now());
            lease.spec = Some(new_spec);
            api.replace(config.name, &PostParams::default(), &lease)
                .await
        }
    };
    match written {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the Lease up on shutdown so a standby takes over at once
/// (client-go's `ReleaseOnCancel`).
async fn release(api: &Api<Lease>, config: &LeaseConfig, identity: &str) {
    let Ok(Some(mut lease)) = api.get_opt(config.name).await else {
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
        .replace(config.name, &PostParams::default(), &lease)
        .await
    {
        tracing::debug!(lease = config.name, error = %e, "could not release the lease");
    }
}

/// Runs the election until `stop` turns true, publishing whether this
/// process leads on `leading`; releases the Lease when it stops leading
/// by being stopped.
pub async fn elect(
    client: Client,
    config: LeaseConfig,
    identity: String,
    leading: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, config.namespace);
    let lease = config.name;
    let mut observed = None;
    let mut last_renew: Option<Instant> = None;
    loop {
        match try_acquire_or_renew(&api, &config, &identity, &mut observed).await {
            Ok(true) => {
                last_renew = Some(Instant::now());
                if !*leading.borrow() {
                    tracing::info!(%identity, lease, "became the leader");
                }
                leading.send_replace(true);
            }
            Ok(false) => {
                last_renew = None;
                if *leading.borrow() {
                    tracing::warn!(%identity, lease, "lost the lease");
                }
                leading.send_replace(false);
            }
            Err(e) => {
                tracing::warn!(lease, error = %e, "lease request failed");
                let late = last_renew.is_none_or(|t| t.elapsed() >= config.renew_deadline);
                if late && *leading.borrow() {
                    tracing::warn!(%identity, lease, "could not renew the lease in time; stepping down");
                    leading.send_replace(false);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(config.retry_period) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    if *leading.borrow() {
        leading.send_replace(false);
        release(&api, &config, &identity).await;
    }
}

/// `<hostname>_<pid>`, client-go's usual leader identity shape.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "skiff".into());
    format!("{host}_{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, renew_secs: i64, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            renew_time: Some(MicroTime(
                k8s_openapi::jiff::Timestamp::from_second(renew_secs).expect("in range"),
            )),
            lease_duration_seconds: Some(duration),
            ..Default::default()
        }
    }

    #[test]
    fn creates_a_missing_lease() {
        let mut seen = None;
        assert_eq!(
            decide(None, "a", &mut seen, Instant::now()),
            Decision::Create
        );
    }

    #[test]
    fn renews_its_own_lease() {
        let mut seen = None;
        let t0 = Instant::now();
        assert_eq!(
            decide(Some(&spec(Some("a"), 1, 15)), "a", &mut seen, t0),
            Decision::Renew
        );
    }

    #[test]
    fn stands_by_while_the_holder_renews_and_takes_over_when_it_is_silent() {
        let mut seen = None;
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // A fresh record: the 15 s start now on our clock.
        assert_eq!(
            decide(Some(&spec(Some("b"), 100, 15)), "a", &mut seen, at(0)),
            Decision::StandBy
        );
        assert_eq!(
            decide(Some(&spec(Some("b"), 100, 15)), "a", &mut seen, at(14)),
            Decision::StandBy
        );
        // The holder renewed at 14 s: the clock restarts.
        assert_eq!(
            decide(Some(&spec(Some("b"), 114, 15)), "a", &mut seen, at(14)),
            Decision::StandBy
        );
        assert_eq!(
            decide(Some(&spec(Some("b"), 114, 15)), "a", &mut seen, at(28)),
            Decision::StandBy
        );
        // Silent for 15 s since we saw the renewal: take over.
        assert_eq!(
            decide(Some(&spec(Some("b"), 114, 15)), "a", &mut seen, at(29)),
            Decision::TakeOver
        );
    }

    #[test]
    fn skewed_renew_times_do_not_matter() {
        // The holder's clock is far behind ours: only changes count.
        let mut seen = None;
        let t0 = Instant::now();
        assert_eq!(
            decide(Some(&spec(Some("b"), 5, 15)), "a", &mut seen, t0),
            Decision::StandBy
        );
        assert_eq!(
            decide(
                Some(&spec(Some("b"), 7, 15)),
                "a",
                &mut seen,
                t0 + Duration::from_secs(20)
            ),
            Decision::StandBy
        );
    }

    #[test]
    fn takes_a_released_lease_at_once() {
        let mut seen = None;
        assert_eq!(
            decide(Some(&spec(None, 1, 1)), "a", &mut seen, Instant::now()),
            Decision::TakeOver
        );
        let empty = LeaseSpec {
            holder_identity: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(
            decide(Some(&empty), "a", &mut seen, Instant::now()),
            Decision::TakeOver
        );
    }
}
