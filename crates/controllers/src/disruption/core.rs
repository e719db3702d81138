//! The pure half of the disruption controller: a budget's status from the
//! pods it selects and the scale of their controllers.
//!
//! ```text
//! maxUnavailable (n or p%)  expected = Σ scale of the pods' controllers
//!                           desired  = expected − ⌈p% · expected⌉ (or n), ≥ 0
//! minAvailable n            expected = number of selected pods, desired = n
//! minAvailable p%           expected = Σ scale, desired = ⌈p% · expected⌉
//! currentHealthy = ready pods, not terminating, not in disruptedPods
//! disruptionsAllowed = max(currentHealthy − desired, 0), 0 if expected ≤ 0
//! ```
//!
//! An eviction records the pod in `disruptedPods`; the entry stays until
//! the pod is terminating or gone, or for at most two minutes (Kubernetes'
//! `DeletionTimeout`) if the deletion never shows.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::clock::time;
use crate::owner::controller_ref;
use crate::pod_util::{is_ready, millis};
use crate::slim_pod::SlimPod;

/// How long an eviction's entry in `disruptedPods` keeps its pod out of
/// `currentHealthy` if the deletion never shows (`DeletionTimeout`).
pub const DELETION_TIMEOUT_MS: i64 = 2 * 60 * 1000;

/// The one condition of a budget's status.
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";

/// A workload controller that can be scaled, found from a pod's
/// controller reference (a Deployment for a ReplicaSet it owns).
#[derive(Clone, Debug, PartialEq)]
pub struct ScaleSource {
    /// The controller's uid: two pods of one controller count it once.
    pub uid: String,
    /// Its `spec.replicas`.
    pub replicas: i32,
}

/// Why a budget's status could not be computed; it then allows no
/// disruption (`SyncFailed`) and the reason becomes a Warning event.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncError {
    /// Event reason, e.g. `NoControllers`.
    pub reason: &'static str,
    /// Kubernetes' message.
    pub message: String,
}

/// What a reconcile reads.
pub struct Input<'a> {
    /// The budget.
    pub pdb: &'a PodDisruptionBudget,
    /// The pods of its namespace its selector selects.
    pub pods: &'a [&'a SlimPod],
    /// The scalable controller behind a pod's controller reference.
    pub scale: &'a dyn Fn(&OwnerReference) -> Option<ScaleSource>,
    /// Now, in milliseconds since the epoch.
    pub now_ms: i64,
}

/// What a reconcile decides.
#[derive(Debug, PartialEq)]
pub struct Plan {
    /// The new status, `None` if it is unchanged.
    pub status: Option<PodDisruptionBudgetStatus>,
    /// Look again then (the earliest `disruptedPods` expiry).
    pub requeue_after_ms: Option<i64>,
    /// A Warning event: why the status could not be computed.
    pub warning: Option<SyncError>,
}

/// The expected pod count: the summed scale of the selected pods'
/// controllers, each counted once (`getExpectedScale`).
pub fn expected_scale(
    pods: &[&SlimPod],
    scale: &dyn Fn(&OwnerReference) -> Option<ScaleSource>,
) -> Result<i32, SyncError> {
    let mut seen = BTreeSet::new();
    let mut total = 0i32;
    for pod in pods {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let Some(r) = controller_ref(&pod.metadata) else {
            return Err(SyncError {
                reason: "NoControllerRef",
                message: format!("found no controller ref for pod {name:?}"),
            });
        };
        let Some(source) = scale(r) else {
            return Err(SyncError {
                reason: "NoControllers",
                message: format!("found no controllers for pod {name:?}"),
            });
        };
        if seen.insert(source.uid) {
            total = total.saturating_add(source.replicas);
        }
    }
    Ok(total)
}

/// `n` as is, `p%` of `total` rounded up (`GetScaledValueFromIntOrPercent`
/// with `roundUp`).
pub fn scaled(value: &IntOrString, total: i32) -> Result<i32, SyncError> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let percent: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| SyncError {
                    reason: "CalculateExpectedPodCountFailed",
                    message: format!("invalid value for IntOrString: invalid value {s:?}"),
                })?;
            let v = (percent * i64::from(total) + 99).div_euclid(100);
            Ok(i32::try_from(v).unwrap_or(i32::MAX))
        }
    }
}

/// `(expectedCount, desiredHealthy)` of a budget (`getExpectedPodCount`).
pub fn expected_and_desired(input: &Input) -> Result<(i32, i32), SyncError> {
    let spec = input.pdb.spec.as_ref();
    if let Some(max) = spec.and_then(|s| s.max_unavailable.as_ref()) {
        let expected = expected_scale(input.pods, input.scale)?;
        let max = scaled(max, expected)?;
        return Ok((expected, (expected - max).max(0)));
    }
    match spec.and_then(|s| s.min_available.as_ref()) {
        Some(IntOrString::Int(n)) => Ok((count(input.pods.len()), *n)),
        Some(p @ IntOrString::String(_)) => {
            let expected = expected_scale(input.pods, input.scale)?;
            Ok((expected, scaled(p, expected)?))
        }
        None => Ok((0, 0)),
    }
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The budget's status now, and when to look again.
pub fn reconcile(input: &Input) -> Plan {
    let old = input.pdb.status.clone().unwrap_or_default();
    let generation = input.pdb.metadata.generation;
    let (new, requeue_after_ms, warning) = match expected_and_desired(input) {
        Err(e) => {
            let status = PodDisruptionBudgetStatus {
                current_healthy: old.current_healthy,
                desired_healthy: old.desired_healthy,
                expected_pods: old.expected_pods,
                disruptions_allowed: Some(0),
                disrupted_pods: old.disrupted_pods.clone(),
                observed_generation: generation,
                conditions: Some(condition(
                    &old,
                    "False",
                    "SyncFailed",
                    &e.message,
                    input.now_ms,
                )),
            };
            (status, None, Some(e))
        }
        Ok((expected, desired)) => {
            let (disrupted, recheck) = live_disruptions(&old, input.pods, input.now_ms);
            let healthy = count(
                input
                    .pods
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .filter(|p| {
                        !disrupted.contains_key(p.metadata.name.as_deref().unwrap_or_default())
                    })
                    .filter(|p| is_ready(p))
                    .count(),
            );
            let mut allowed = healthy - desired;
            if expected <= 0 || allowed <= 0 {
                allowed = 0;
            }
            let (state, reason) = if allowed > 0 {
                ("True", "SufficientPods")
            } else {
                ("False", "InsufficientPods")
            };
            let status = PodDisruptionBudgetStatus {
                current_healthy: Some(healthy),
                desired_healthy: Some(desired),
                expected_pods: Some(expected),
                disruptions_allowed: Some(allowed),
                disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
                observed_generation: generation,
                conditions: Some(condition(&old, state, reason, "", input.now_ms)),
            };
            (status, recheck.map(|at| (at - input.now_ms).max(0)), None)
        }
    };
    Plan {
        status: (new != old).then_some(new),
        requeue_after_ms,
        warning,
    }
}

/// The `disruptedPods` entries still in force (`buildDisruptedPodMap`):
/// pods that exist, are not yet terminating, and were evicted less than
/// [`DELETION_TIMEOUT_MS`] ago; and when the first of them expires.
fn live_disruptions(
    old: &PodDisruptionBudgetStatus,
    pods: &[&SlimPod],
    now_ms: i64,
) -> (BTreeMap<String, Time>, Option<i64>) {
    let Some(recorded) = old.disrupted_pods.as_ref() else {
        return (BTreeMap::new(), None);
    };
    let mut live = BTreeMap::new();
    let mut first_expiry: Option<i64> = None;
    for pod in pods {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(at) = recorded.get(name) else {
            continue;
        };
        let expires = millis(&at.0) + DELETION_TIMEOUT_MS;
        if expires <= now_ms {
            tracing::warn!(pod = name, "pod was expected to be deleted after its eviction but was not; updating the disruption budget");
            continue;
        }
        first_expiry = Some(first_expiry.map_or(expires, |f| f.min(expires)));
        live.insert(name.to_string(), at.clone());
    }
    (live, first_expiry)
}

/// The `DisruptionAllowed` condition, keeping its transition time while
/// its status stays the same.
fn condition(
    old: &PodDisruptionBudgetStatus,
    status: &str,
    reason: &str,
    message: &str,
    now_ms: i64,
) -> Vec<Condition> {
    let previous = old
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == DISRUPTION_ALLOWED);
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => time(now_ms),
    };
    vec![Condition {
        type_: DISRUPTION_ALLOWED.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: None,
        last_transition_time,
    }]
}
