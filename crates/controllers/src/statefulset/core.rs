//! The StatefulSet controller's decision, as a pure function: the
//! StatefulSet, its pods, the claims that exist, the current and update
//! revisions and the clock in; claims and pods to create, pods to delete
//! and the status out (`pkg/controller/statefulset/stateful_set_control.go`,
//! `updateStatefulSet` and `updateStatefulSetAfterInvariantEstablished`).
//!
//! - Slots `start..start+replicas` each hold pod `<sts>-<ordinal>`; pods
//!   with higher (or lower) ordinals are *condemned*.
//! - `OrderedReady` (the default) is monotonic: one pod is created at a
//!   time, in ordinal order, and only when every lower one is Running and
//!   Ready (available, with `minReadySeconds`); condemned pods go one at a
//!   time from the highest ordinal, only when every slot is healthy.
//!   `Parallel` creates and deletes them all at once.
//! - A pod's claims are created before the pod.
//! - `RollingUpdate` deletes pods not at the update revision, highest
//!   ordinal first, never below `partition`, at most `maxUnavailable`
//!   unhealthy at once; the slot is then refilled from the update revision.
//!   `OnDelete` only uses the update revision for pods someone deleted.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::pod_util::{is_available, is_ready, millis_until_available, phase};
use crate::replicaset::core::PodRef;
use crate::slim_pod::SlimPod;
use crate::statefulset::identity::{
    claim_name, claims_for, new_pod, ordinal_of, pod_revision, retention_deletes,
};

/// One revision of the pod template: the ControllerRevision's name and
/// the template it holds.
#[derive(Clone, Copy, Debug)]
pub struct Revision<'a> {
    /// The ControllerRevision's name, `<sts>-<hash>`.
    pub name: &'a str,
    /// Its pod template.
    pub template: &'a PodTemplateSpec,
}

/// The inputs of one decision.
pub struct Input<'a> {
    /// The StatefulSet.
    pub sts: &'a StatefulSet,
    /// The pods it controls.
    pub pods: &'a [&'a SlimPod],
    /// Names of the PersistentVolumeClaims of its namespace.
    pub claims: &'a BTreeSet<String>,
    /// The revision the pods are at (`status.currentRevision`, or the
    /// update revision for a new StatefulSet).
    pub current: Revision<'a>,
    /// The revision of the current `spec.template`.
    pub update: Revision<'a>,
    /// Whether earlier creations/deletions have been observed.
    pub may_manage: bool,
    /// The clock, milliseconds since the epoch.
    pub now_ms: i64,
}

/// What the StatefulSet controller decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Claims to create (before any pod).
    pub create_claims: Vec<PersistentVolumeClaim>,
    /// Pods to create, in this order.
    pub create: Vec<Pod>,
    /// Pods to delete, in this order.
    pub delete: Vec<PodRef>,
    /// Claims to delete (`whenScaled: Delete` after a scale-down).
    pub delete_claims: Vec<String>,
    /// The status to write, if it changed.
    pub status: Option<StatefulSetStatus>,
    /// Reconcile again after this many milliseconds (`minReadySeconds`).
    pub requeue_after_ms: Option<i64>,
}

fn pod_ref(pod: &SlimPod) -> PodRef {
    PodRef {
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
    }
}

fn terminating(pod: &SlimPod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn finished(pod: &SlimPod) -> bool {
    matches!(phase(pod), "Failed" | "Succeeded")
}

/// `isRunningAndReady`.
fn running_and_ready(pod: &SlimPod) -> bool {
    phase(pod) == "Running" && is_ready(pod)
}

/// `isHealthy` with `minReadySeconds`: running, available, not terminating.
fn healthy(pod: &SlimPod, min_ready: i32, now: i64) -> bool {
    running_and_ready(pod) && is_available(pod, min_ready, now) && !terminating(pod)
}

fn is_parallel(sts: &StatefulSet) -> bool {
    sts.spec.pod_management_policy.as_deref() == Some("Parallel")
}

fn is_rolling(sts: &StatefulSet) -> bool {
    sts.spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate"
}

/// `rollingUpdate.partition` (0 by default).
pub fn partition(sts: &StatefulSet) -> i32 {
    sts.spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0)
        .max(0)
}

/// `rollingUpdate.maxUnavailable` of `replicas` (1 by default; a
/// percentage rounds up; never below 1).
pub fn max_unavailable(sts: &StatefulSet, replicas: i32) -> i32 {
    let v = sts
        .spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.max_unavailable.as_ref());
    let n = match v {
        None => 1,
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            i32::try_from((pct * i64::from(replicas) + 99) / 100).unwrap_or(i32::MAX)
        }
    };
    n.max(1)
}

/// Decides what to do for one StatefulSet.
pub fn reconcile(input: &Input<'_>) -> Plan {
    let sts = input.sts;
    let name = sts.metadata.name.as_deref().unwrap_or_default();
    let now = input.now_ms;
    let min_ready = sts.spec.min_ready_seconds.unwrap_or(0);
    let replicas = sts.spec.replicas.unwrap_or(1).max(0);
    let start = sts
        .spec
        .ordinals
        .as_ref()
        .and_then(|o| o.start)
        .unwrap_or(0)
        .max(0);
    let end = start.saturating_add(replicas);
    let monotonic = !is_parallel(sts);
    let mut plan = Plan::default();

    // Slots (index = ordinal - start) and condemned pods, highest first.
    let mut slots: Vec<Option<&SlimPod>> = vec![None; usize::try_from(replicas).unwrap_or(0)];
    let mut condemned: Vec<(i32, &SlimPod)> = Vec::new();
    for pod in input.pods.iter().copied() {
        let Some(ord) = ordinal_of(name, pod.metadata.name.as_deref().unwrap_or_default()) else {
            continue;
        };
        if (start..end).contains(&ord) {
            slots[usize::try_from(ord - start).unwrap_or(0)] = Some(pod);
        } else {
            condemned.push((ord, pod));
        }
    }
    condemned.sort_by_key(|(ord, _)| std::cmp::Reverse(*ord));

    let status = status(input, &slots, &condemned, replicas);
    for pod in slots.iter().flatten() {
        if let Some(ms) = millis_until_available(pod, min_ready, now) {
            plan.requeue_after_ms = Some(plan.requeue_after_ms.map_or(ms, |r| r.min(ms)));
        }
    }
    if sts.metadata.deletion_timestamp.is_none() && input.may_manage {
        manage(input, &mut plan, &slots, &condemned, start, monotonic);
    }
    if sts.status.as_ref() != Some(&status) {
        plan.status = Some(status);
    }
    plan
}

/// Creates, replaces and deletes pods: the body of `updateStatefulSet`.
fn manage(
    input: &Input<'_>,
    plan: &mut Plan,
    slots: &[Option<&SlimPod>],
    condemned: &[(i32, &SlimPod)],
    start: i32,
    monotonic: bool,
) {
    let sts = input.sts;
    let (now, min_ready) = (input.now_ms, sts.spec.min_ready_seconds.unwrap_or(0));
    let partition = partition(sts);
    let mut blocked = false;
    let mut unhealthy = 0;
    for (i, slot) in slots.iter().enumerate() {
        let ord = start + i32::try_from(i).unwrap_or(0);
        // Claims first, for a missing pod and for one whose claim was lost.
        for claim in claims_for(sts, ord) {
            let cname = claim.metadata.name.clone().unwrap_or_default();
            if !input.claims.contains(&cname) && !blocked {
                plan.create_claims.push(claim);
            }
        }
        match slot {
            None => {
                unhealthy += 1;
                if blocked {
                    continue;
                }
                // A deleted pod below the partition comes back at the
                // current revision, as Kubernetes does.
                let rev = if is_rolling(sts) && ord < start + partition {
                    input.current
                } else {
                    input.update
                };
                plan.create.push(new_pod(sts, rev.template, ord, rev.name));
                blocked = monotonic;
            }
            Some(pod) if finished(pod) && !terminating(pod) => {
                // Failed (or exited) pods are replaced under the same name.
                unhealthy += 1;
                if !blocked {
                    plan.delete.push(pod_ref(pod));
                }
                blocked = monotonic;
            }
            Some(pod) => {
                if !healthy(pod, min_ready, now) {
                    unhealthy += 1;
                    blocked = blocked || monotonic;
                }
            }
        }
    }
    if blocked {
        return;
    }
    // Scale down: from the highest ordinal; one at a time when monotonic.
    for (_, pod) in condemned {
        if terminating(pod) {
            if monotonic {
                return;
            }
            continue;
        }
        plan.delete.push(pod_ref(pod));
        if monotonic {
            return;
        }
    }
    if retention_deletes(sts, true) {
        scaled_claims(input, plan, start, slots.len(), condemned);
    }
    if !is_rolling(sts) {
        return;
    }
    // Rolling update, highest ordinal first, down to the partition.
    let replicas = i32::try_from(slots.len()).unwrap_or(0);
    let mut budget = max_unavailable(sts, replicas) - unhealthy;
    let min = usize::try_from(partition.min(replicas)).unwrap_or(0);
    for pod in slots[min..].iter().rev().flatten() {
        if budget <= 0 {
            break;
        }
        if pod_revision(pod) != Some(input.update.name) && !terminating(pod) {
            plan.delete.push(pod_ref(pod));
            if healthy(pod, min_ready, now) {
                budget -= 1;
            }
        }
    }
}

/// `whenScaled: Delete`: the claims of ordinals outside the slots whose
/// pod is gone.
fn scaled_claims(
    input: &Input<'_>,
    plan: &mut Plan,
    start: i32,
    slots: usize,
    condemned: &[(i32, &SlimPod)],
) {
    let sts = input.sts;
    let name = sts.metadata.name.as_deref().unwrap_or_default();
    let end = start + i32::try_from(slots).unwrap_or(0);
    for t in sts.spec.volume_claim_templates.iter().flatten() {
        let tname = t.metadata.name.as_deref().unwrap_or_default();
        let prefix = format!("{tname}-");
        for c in input.claims {
            let Some(ord) = c
                .strip_prefix(&prefix)
                .and_then(|rest| ordinal_of(name, rest))
            else {
                continue;
            };
            let has_pod = condemned.iter().any(|(o, _)| *o == ord);
            if !(start..end).contains(&ord) && !has_pod && *c == claim_name(tname, name, ord) {
                plan.delete_claims.push(c.clone());
            }
        }
    }
}

/// `computeReplicaStatus` plus `completeRollingUpdate`.
fn status(
    input: &Input<'_>,
    slots: &[Option<&SlimPod>],
    condemned: &[(i32, &SlimPod)],
    replicas: i32,
) -> StatefulSetStatus {
    let sts = input.sts;
    let min_ready = sts.spec.min_ready_seconds.unwrap_or(0);
    let mut s = StatefulSetStatus {
        observed_generation: sts.metadata.generation,
        collision_count: sts.status.as_ref().and_then(|s| s.collision_count),
        conditions: sts.status.as_ref().and_then(|s| s.conditions.clone()),
        current_revision: Some(input.current.name.to_string()),
        update_revision: Some(input.update.name.to_string()),
        // Zeros are written, not left out: a merge patch without the key
        // would keep the old count.
        ready_replicas: Some(0),
        current_replicas: Some(0),
        updated_replicas: Some(0),
        ..Default::default()
    };
    let mut available = 0;
    let pods = slots
        .iter()
        .flatten()
        .chain(condemned.iter().map(|(_, p)| p));
    for pod in pods {
        s.replicas += 1;
        if running_and_ready(pod) {
            s.ready_replicas = Some(s.ready_replicas.unwrap_or(0) + 1);
            if is_available(pod, min_ready, input.now_ms) {
                available += 1;
            }
        }
        if !terminating(pod) {
            if pod_revision(pod) == Some(input.current.name) {
                s.current_replicas = Some(s.current_replicas.unwrap_or(0) + 1);
            }
            if pod_revision(pod) == Some(input.update.name) {
                s.updated_replicas = Some(s.updated_replicas.unwrap_or(0) + 1);
            }
        }
    }
    s.available_replicas = Some(available);
    // Every pod at the update revision and ready: the rollout is complete
    // and the update revision becomes the current one.
    let updated = s.updated_replicas.unwrap_or(0);
    if updated == replicas && s.replicas == replicas && s.ready_replicas.unwrap_or(0) == replicas {
        s.current_replicas = Some(updated);
        s.current_revision = s.update_revision.clone();
    }
    s
}
