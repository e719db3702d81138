//! Deployment status and conditions (`pkg/controller/deployment/sync.go`
//! `calculateStatus`, `progress.go`, and `util/deployment_util.go`).
//!
//! - `Available`: `True`/`MinimumReplicasAvailable` when at least
//!   `replicas - maxUnavailable` pods are available, else
//!   `False`/`MinimumReplicasUnavailable`.
//! - `Progressing` (only with a progress deadline): `NewReplicaSetCreated`,
//!   `FoundNewReplicaSet`, `ReplicaSetUpdated` while pods move,
//!   `NewReplicaSetAvailable` when complete, `ProgressDeadlineExceeded`
//!   (`False`) when nothing moved for `progressDeadlineSeconds`,
//!   `DeploymentPaused`/`DeploymentResumed` (`Unknown`).

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};

use crate::clock::time;
use crate::deployment::util::{
    actual_sum, available_sum, max_unavailable, progress_deadline_seconds, ready_sum, replicas,
    spec_sum,
};
use crate::pod_util::millis;

/// Condition type `Available`.
pub const AVAILABLE: &str = "Available";
/// Condition type `Progressing`.
pub const PROGRESSING: &str = "Progressing";
/// Condition type `ReplicaFailure`.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// Reason: a new ReplicaSet was created.
pub const NEW_RS_REASON: &str = "NewReplicaSetCreated";
/// Reason: the new ReplicaSet already existed.
pub const FOUND_NEW_RS_REASON: &str = "FoundNewReplicaSet";
/// Reason: the rollout moved.
pub const RS_UPDATED_REASON: &str = "ReplicaSetUpdated";
/// Reason: the rollout is complete.
pub const NEW_RS_AVAILABLE_REASON: &str = "NewReplicaSetAvailable";
/// Reason: the rollout made no progress within the deadline.
pub const TIMED_OUT_REASON: &str = "ProgressDeadlineExceeded";
/// Reason: the Deployment is paused.
pub const PAUSED_REASON: &str = "DeploymentPaused";
/// Reason: the Deployment was resumed.
pub const RESUMED_REASON: &str = "DeploymentResumed";
/// Reason: enough pods are available.
pub const MIN_AVAILABLE_REASON: &str = "MinimumReplicasAvailable";
/// Reason: too few pods are available.
pub const MIN_UNAVAILABLE_REASON: &str = "MinimumReplicasUnavailable";

/// A condition stamped `now` (`NewDeploymentCondition`).
pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now_ms: i64,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: Some(type_.into()),
        status: Some(status.into()),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(time(now_ms)),
        last_transition_time: Some(time(now_ms)),
    }
}

/// The condition of one type.
pub fn get<'a>(conds: &'a [DeploymentCondition], type_: &str) -> Option<&'a DeploymentCondition> {
    conds.iter().find(|c| c.type_.as_deref() == Some(type_))
}

/// `SetDeploymentCondition`: unchanged if status and reason are the same;
/// the transition time is kept while the status stays.
pub fn set(conds: &mut Vec<DeploymentCondition>, mut c: DeploymentCondition) {
    if let Some(cur) = get(conds, c.type_.as_deref().unwrap_or_default()) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    conds.retain(|x| x.type_ != c.type_);
    conds.push(c);
}

/// Removes the condition of one type.
pub fn remove(conds: &mut Vec<DeploymentCondition>, type_: &str) {
    conds.retain(|x| x.type_.as_deref() != Some(type_));
}

/// `calculateStatus`: counts from the ReplicaSets, the `Available`
/// condition, and the given conditions for the rest.
pub fn calculate_status(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    mut conditions: Vec<DeploymentCondition>,
    collision_count: Option<i32>,
    now_ms: i64,
) -> DeploymentStatus {
    let available = available_sum(all.iter().copied());
    let total = spec_sum(all.iter().copied());
    if available >= replicas(d) - max_unavailable(d) {
        set(
            &mut conditions,
            new_condition(
                AVAILABLE,
                "True",
                MIN_AVAILABLE_REASON,
                "Deployment has minimum availability.".into(),
                now_ms,
            ),
        );
    } else {
        set(
            &mut conditions,
            new_condition(
                AVAILABLE,
                "False",
                MIN_UNAVAILABLE_REASON,
                "Deployment does not have minimum availability.".into(),
                now_ms,
            ),
        );
    }
    let previous = d.status.as_ref();
    DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(actual_sum(all.iter().copied())),
        updated_replicas: Some(new_rs.map_or(0, |r| actual_sum([r]))),
        ready_replicas: Some(ready_sum(all.iter().copied())),
        available_replicas: Some(available),
        unavailable_replicas: Some((total - available).max(0)),
        collision_count: collision_count.or(previous.and_then(|s| s.collision_count)),
        conditions: Some(conditions),
        terminating_replicas: previous.and_then(|s| s.terminating_replicas),
    }
}

fn count(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

/// `DeploymentComplete`: every pod updated and available, and the newest
/// generation observed.
pub fn is_complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let n = replicas(d);
    count(s.updated_replicas) == n
        && count(s.replicas) == n
        && count(s.available_replicas) == n
        && s.observed_generation >= d.metadata.generation
}

/// `DeploymentProgressing`: the new status moved the rollout forward
/// compared with the stored one.
pub fn is_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let default = DeploymentStatus::default();
    let old = d.status.as_ref().unwrap_or(&default);
    let old_old = count(old.replicas) - count(old.updated_replicas);
    let new_old = count(new.replicas) - count(new.updated_replicas);
    count(new.updated_replicas) > count(old.updated_replicas)
        || new_old < old_old
        || count(new.ready_replicas) > count(old.ready_replicas)
        || count(new.available_replicas) > count(old.available_replicas)
}

/// `DeploymentTimedOut`: the `Progressing` condition was last updated more
/// than `progressDeadlineSeconds` ago.
pub fn is_timed_out(d: &Deployment, conds: &[DeploymentCondition], now_ms: i64) -> bool {
    let Some(deadline) = progress_deadline_seconds(d) else {
        return false;
    };
    let Some(c) = get(conds, PROGRESSING) else {
        return false;
    };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE_REASON) => false,
        Some(TIMED_OUT_REASON) => true,
        _ => c
            .last_update_time
            .as_ref()
            .is_some_and(|t| millis(&t.0) + i64::from(deadline) * 1000 < now_ms),
    }
}

/// Milliseconds until a stuck rollout must be checked against its deadline
/// (`requeueStuckDeployment`), if it is progressing at all.
pub fn until_deadline(
    d: &Deployment,
    conds: &[DeploymentCondition],
    complete: bool,
    now_ms: i64,
) -> Option<i64> {
    let deadline = progress_deadline_seconds(d)?;
    let c = get(conds, PROGRESSING)?;
    if complete
        || c.reason.as_deref() == Some(TIMED_OUT_REASON)
        || c.status.as_deref() != Some("True")
    {
        return None;
    }
    let updated = millis(&c.last_update_time.as_ref()?.0);
    Some((updated + i64::from(deadline) * 1000 - now_ms).max(0) + 1000)
}

/// `syncRolloutStatus`'s condition logic: the `Progressing` condition for
/// the new status.
pub fn rollout_conditions(
    d: &Deployment,
    new_status: &DeploymentStatus,
    new_rs: Option<&ReplicaSet>,
    conds: &mut Vec<DeploymentCondition>,
    now_ms: i64,
) {
    if progress_deadline_seconds(d).is_none() {
        remove(conds, PROGRESSING);
        return;
    }
    let current = get(conds, PROGRESSING).cloned();
    let already_complete = count(new_status.replicas) == count(new_status.updated_replicas)
        && current
            .as_ref()
            .is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE_REASON));
    if already_complete {
        return;
    }
    let rs_name = new_rs
        .and_then(|r| r.metadata.name.clone())
        .unwrap_or_default();
    if is_complete(d, new_status) {
        let msg = if rs_name.is_empty() {
            "Deployment has successfully progressed.".to_string()
        } else {
            format!("ReplicaSet \"{rs_name}\" has successfully progressed.")
        };
        set(
            conds,
            new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE_REASON, msg, now_ms),
        );
    } else if is_progressing(d, new_status) {
        let msg = if rs_name.is_empty() {
            "Deployment is progressing.".to_string()
        } else {
            format!("ReplicaSet \"{rs_name}\" is progressing.")
        };
        let mut c = new_condition(PROGRESSING, "True", RS_UPDATED_REASON, msg, now_ms);
        // Progress refreshes lastUpdateTime even with the same reason, which
        // is what restarts the deadline; keep the transition time.
        if let Some(cur) = current
            .as_ref()
            .filter(|c| c.status.as_deref() == Some("True"))
        {
            c.last_transition_time = cur.last_transition_time.clone();
        }
        remove(conds, PROGRESSING);
        conds.push(c);
    } else if is_timed_out(d, conds, now_ms) {
        let msg = if rs_name.is_empty() {
            "Deployment has timed out progressing.".to_string()
        } else {
            format!("ReplicaSet \"{rs_name}\" has timed out progressing.")
        };
        set(
            conds,
            new_condition(PROGRESSING, "False", TIMED_OUT_REASON, msg, now_ms),
        );
    }
}
