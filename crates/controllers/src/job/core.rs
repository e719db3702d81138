//! The Job controller's decision, as a pure function: the Job, its pods and
//! the clock in; pods to create (with their completion index) and delete,
//! the new status, and whether the finished Job's TTL ran out
//! (`pkg/controller/job/job_controller.go`, `syncJob` and `manageJob`,
//! and `pkg/controller/ttlafterfinished`).
//!
//! Order of the checks, as in Kubernetes: a finished Job only waits for its
//! TTL; a suspended one loses its active pods; then the failure checks
//! (`backoffLimit`, `activeDeadlineSeconds`), then completion, and only
//! then are pods created or deleted to reach the wanted parallelism.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{EnvVar, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use crate::clock::time;
use crate::job::indexes::{
    format_intervals, parse_intervals, pod_index, COMPLETION_INDEX_ANNOTATION, COMPLETION_INDEX_ENV,
};
use crate::owner::new_controller_ref;
use crate::pod_util::{created_ms, is_active, is_assigned, is_ready, millis, phase};
use crate::replicaset::core::PodRef;
use crate::slim_pod::SlimPod;

/// Most pods one reconcile creates (Kubernetes' `MaxPodCreateDeletePerSync`).
pub const MAX_POD_CREATE_DELETE_PER_SYNC: i32 = 500;
/// `backoffLimit` when unset (batch/v1 default).
pub const DEFAULT_BACKOFF_LIMIT: i32 = 6;
/// The delay before a pod is recreated after the first failure
/// (`DefaultJobPodFailureBackOff`); it doubles with each failure…
pub const POD_FAILURE_BACKOFF_MS: i64 = 10_000;
/// …up to this (`MaxJobPodFailureBackOff`, 10 min).
pub const MAX_POD_FAILURE_BACKOFF_MS: i64 = 600_000;

/// Reason of the `Failed` condition after too many pod failures.
pub const REASON_BACKOFF_LIMIT_EXCEEDED: &str = "BackoffLimitExceeded";
/// Reason of the `Failed` condition after `activeDeadlineSeconds`.
pub const REASON_DEADLINE_EXCEEDED: &str = "DeadlineExceeded";

/// What the Job controller decided for one Job.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Pods to create: one entry each, with the completion index for an
    /// Indexed Job (`None` for NonIndexed).
    pub create: Vec<Option<i32>>,
    /// Active pods to delete (excess parallelism, or the Job finished).
    pub delete: Vec<PodRef>,
    /// The status to write, if it changed.
    pub status: Option<JobStatus>,
    /// The Job finished and its `ttlSecondsAfterFinished` passed: delete it
    /// (with its pods, in the background).
    pub delete_job: bool,
    /// An event to record: (type, reason, message).
    pub event: Option<(&'static str, &'static str, String)>,
    /// Reconcile again after this many milliseconds (a deadline, a TTL or
    /// a pod-failure back-off).
    pub requeue_after_ms: Option<i64>,
}

/// The inputs of one decision.
pub struct Input<'a> {
    /// The Job.
    pub job: &'a Job,
    /// The pods it controls (controller reference to its uid).
    pub pods: &'a [&'a SlimPod],
    /// Whether earlier creations/deletions have been observed; if not, no
    /// pods are created or deleted this time.
    pub may_manage: bool,
    /// The clock, milliseconds since the epoch.
    pub now_ms: i64,
}

fn pod_ref(pod: &SlimPod) -> PodRef {
    PodRef {
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
    }
}

fn finished_condition(status: &JobStatus) -> Option<&JobCondition> {
    status
        .conditions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

fn condition(type_: &str, status: &str, reason: &str, message: &str, now_ms: i64) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(time(now_ms)),
        last_transition_time: Some(time(now_ms)),
    }
}

/// Sets a condition, keeping the old transition time if nothing changed.
fn set_condition(conditions: &mut Vec<JobCondition>, new: JobCondition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(c) if c.status == new.status && c.reason == new.reason => {}
        Some(c) => *c = new,
        None => conditions.push(new),
    }
}

/// When a terminated pod finished: the latest container termination, else
/// its creation.
fn finished_ms(pod: &SlimPod) -> i64 {
    let status = pod.status.as_ref();
    status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default()
        .iter()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|Time(t)| millis(t))
        .max()
        .unwrap_or_else(|| created_ms(&pod.metadata))
}

/// Deletion preference among active pods: unscheduled, then not ready,
/// then the newest (a cut-down `ActivePods` ordering).
fn deletion_rank(pod: &SlimPod) -> (bool, bool, i64) {
    (is_assigned(pod), is_ready(pod), -created_ms(&pod.metadata))
}

/// Decides what to do for one Job.
pub fn reconcile(input: &Input<'_>) -> Plan {
    let job = input.job;
    let now = input.now_ms;
    let mut plan = Plan::default();
    let spec = job.spec.clone().unwrap_or_default();
    let old = job.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let active: Vec<&SlimPod> = input
        .pods
        .iter()
        .copied()
        .filter(|p| is_active(p))
        .collect();

    // A finished Job: only its TTL remains (and stray active pods go).
    if let Some(done) = finished_condition(&old) {
        if input.may_manage {
            plan.delete = active.iter().map(|p| pod_ref(p)).collect();
        }
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            let finished_at = old
                .completion_time
                .as_ref()
                .or(done.last_transition_time.as_ref())
                .map(|Time(t)| millis(t))
                .unwrap_or(now);
            let expires = finished_at + i64::from(ttl.max(0)) * 1000;
            if now >= expires {
                plan.delete_job = true;
            } else {
                plan.requeue_after_ms = Some(expires - now);
            }
        }
        return plan;
    }

    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT);
    let succeeded_pods: Vec<&SlimPod> = input
        .pods
        .iter()
        .copied()
        .filter(|p| phase(p) == "Succeeded")
        .collect();
    let failed_pods: Vec<&SlimPod> = input
        .pods
        .iter()
        .copied()
        .filter(|p| phase(p) == "Failed")
        .collect();
    // Without the job-tracking finalizer, terminated pods can vanish; the
    // status never counts down.
    let count = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
    let mut failed = old.failed.unwrap_or(0).max(count(failed_pods.len()));
    let completions = spec.completions;
    let mut completed: BTreeSet<i32> = BTreeSet::new();
    let succeeded = if indexed {
        let c = completions.unwrap_or(0);
        completed = parse_intervals(old.completed_indexes.as_deref().unwrap_or(""), c);
        completed.extend(succeeded_pods.iter().filter_map(|p| pod_index(p, c)));
        count(completed.len())
    } else {
        old.succeeded.unwrap_or(0).max(count(succeeded_pods.len()))
    };
    let mut conditions = old.conditions.clone().unwrap_or_default();

    // Suspended: no pods, and the clock of activeDeadlineSeconds stops.
    if spec.suspend == Some(true) {
        if input.may_manage {
            plan.delete = active.iter().map(|p| pod_ref(p)).collect();
        }
        set_condition(
            &mut conditions,
            condition("Suspended", "True", "JobSuspended", "Job suspended", now),
        );
        status.start_time = None;
        status.active = Some(count(active.len()) - count(plan.delete.len()));
        finish_status(
            &mut plan,
            &old,
            status,
            conditions,
            succeeded,
            failed,
            &active,
            indexed.then_some(&completed),
        );
        return plan;
    }
    if conditions
        .iter()
        .any(|c| c.type_ == "Suspended" && c.status == "True")
    {
        set_condition(
            &mut conditions,
            condition("Suspended", "False", "JobResumed", "Job resumed", now),
        );
    }
    let start_ms = old
        .start_time
        .as_ref()
        .map(|Time(t)| millis(t))
        .unwrap_or(now);
    status.start_time = Some(time(start_ms));

    // Failure: too many pod failures, or out of time.
    let restarts_on_failure: i32 = if spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure")
    {
        active
            .iter()
            .map(|p| crate::pod_util::restart_count(p))
            .sum()
    } else {
        0
    };
    let mut failure: Option<(&'static str, &'static str)> = None;
    if failed > backoff_limit || (restarts_on_failure > 0 && restarts_on_failure >= backoff_limit) {
        failure = Some((
            REASON_BACKOFF_LIMIT_EXCEEDED,
            "Job has reached the specified backoff limit",
        ));
    } else if let Some(ads) = spec.active_deadline_seconds {
        let deadline = start_ms + ads.max(0) * 1000;
        if now >= deadline {
            failure = Some((
                REASON_DEADLINE_EXCEEDED,
                "Job was active longer than specified deadline",
            ));
        } else {
            plan.requeue_after_ms = Some(deadline - now);
        }
    }
    if let Some((reason, message)) = failure {
        // The active pods are killed and count as failed (legacy tracking).
        plan.delete = active.iter().map(|p| pod_ref(p)).collect();
        failed += count(active.len());
        set_condition(
            &mut conditions,
            condition("FailureTarget", "True", reason, message, now),
        );
        set_condition(
            &mut conditions,
            condition("Failed", "True", reason, message, now),
        );
        status.active = Some(0);
        plan.event = Some(("Warning", reason, message.to_string()));
        plan.requeue_after_ms = spec
            .ttl_seconds_after_finished
            .map(|t| i64::from(t.max(0)) * 1000);
        finish_status(
            &mut plan,
            &old,
            status,
            conditions,
            succeeded,
            failed,
            &[],
            indexed.then_some(&completed),
        );
        return plan;
    }

    // Completion.
    let complete = match (indexed, completions) {
        (true, Some(c)) => succeeded >= c,
        (false, Some(c)) => succeeded >= c,
        (_, None) => succeeded > 0 && active.is_empty(),
    };
    if complete {
        if input.may_manage {
            plan.delete = active.iter().map(|p| pod_ref(p)).collect();
        }
        set_condition(
            &mut conditions,
            condition(
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            ),
        );
        set_condition(
            &mut conditions,
            condition(
                "Complete",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            ),
        );
        status.completion_time = Some(time(now));
        status.active = Some(0);
        plan.event = Some(("Normal", "Completed", "Job completed".to_string()));
        plan.requeue_after_ms = spec
            .ttl_seconds_after_finished
            .map(|t| i64::from(t.max(0)) * 1000);
        finish_status(
            &mut plan,
            &old,
            status,
            conditions,
            succeeded,
            failed,
            &[],
            indexed.then_some(&completed),
        );
        return plan;
    }

    // manageJob: reach the wanted number of active pods.
    let mut active_after = count(active.len());
    if input.may_manage {
        let want = match completions {
            None if succeeded > 0 => count(active.len()),
            None => parallelism,
            Some(c) => parallelism.min((c - succeeded).max(0)),
        };
        // Pod-failure back-off: after n failures wait 10 s · 2^(n-1).
        let backoff_until = failed_pods
            .iter()
            .map(|p| finished_ms(p))
            .max()
            .map(|last| {
                let exp = u32::try_from((failed - 1).clamp(0, 20)).unwrap_or(0);
                last + (POD_FAILURE_BACKOFF_MS << exp).min(MAX_POD_FAILURE_BACKOFF_MS)
            });
        let may_create = backoff_until.is_none_or(|t| now >= t);
        if !may_create {
            let wait = backoff_until.unwrap_or(now) - now;
            plan.requeue_after_ms = Some(plan.requeue_after_ms.map_or(wait, |r| r.min(wait)));
        }
        if indexed {
            let c = completions.unwrap_or(0);
            // One active pod per pending index; duplicates, strays and
            // pods of completed indexes go.
            let mut by_index: BTreeMap<i32, &SlimPod> = BTreeMap::new();
            let mut sorted = active.clone();
            sorted.sort_by_key(|p| std::cmp::Reverse(deletion_rank(p)));
            for p in sorted {
                match pod_index(p, c) {
                    Some(i) if !completed.contains(&i) && !by_index.contains_key(&i) => {
                        by_index.insert(i, p);
                    }
                    _ => plan.delete.push(pod_ref(p)),
                }
            }
            let have = count(by_index.len());
            if have > want {
                // The highest indexes go first.
                let extra = usize::try_from(have - want).unwrap_or(0);
                for p in by_index.values().rev().take(extra) {
                    plan.delete.push(pod_ref(p));
                }
            } else if have < want && may_create {
                let n =
                    usize::try_from((want - have).min(MAX_POD_CREATE_DELETE_PER_SYNC)).unwrap_or(0);
                plan.create = (0..c)
                    .filter(|i| !completed.contains(i) && !by_index.contains_key(i))
                    .take(n)
                    .map(Some)
                    .collect();
            }
        } else {
            let have = count(active.len());
            if have > want {
                let mut sorted = active.clone();
                sorted.sort_by_key(|p| deletion_rank(p));
                let n =
                    usize::try_from((have - want).min(MAX_POD_CREATE_DELETE_PER_SYNC)).unwrap_or(0);
                plan.delete = sorted.into_iter().take(n).map(pod_ref).collect();
            } else if have < want && may_create {
                let n =
                    usize::try_from((want - have).min(MAX_POD_CREATE_DELETE_PER_SYNC)).unwrap_or(0);
                plan.create = vec![None; n];
            }
        }
        active_after = active_after + count(plan.create.len()) - count(plan.delete.len());
    }
    status.active = Some(active_after);
    finish_status(
        &mut plan,
        &old,
        status,
        conditions,
        succeeded,
        failed,
        &active,
        indexed.then_some(&completed),
    );
    plan
}

#[allow(clippy::too_many_arguments)]
fn finish_status(
    plan: &mut Plan,
    old: &JobStatus,
    mut status: JobStatus,
    conditions: Vec<JobCondition>,
    succeeded: i32,
    failed: i32,
    active: &[&SlimPod],
    completed: Option<&BTreeSet<i32>>,
) {
    status.succeeded = Some(succeeded);
    status.failed = Some(failed);
    status.ready = Some(i32::try_from(active.iter().filter(|p| is_ready(p)).count()).unwrap_or(0));
    status.conditions = (!conditions.is_empty()).then_some(conditions);
    status.completed_indexes = completed.map(format_intervals);
    if &status != old {
        plan.status = Some(status);
    }
}

/// The pod for one slot of the Job (`getPodsForJob`'s counterpart in
/// `manageJob`): the template's metadata and spec, controlled by the Job;
/// an Indexed Job's pod carries its index in an annotation, a label and
/// `JOB_COMPLETION_INDEX` in every container's environment (Kubernetes
/// writes a downward-API reference to the annotation; the value itself
/// needs nothing from the agent).
pub fn pod_from_template(job: &Job, name: &str, index: Option<i32>) -> Pod {
    let template = job.spec.as_ref().map(|s| &s.template);
    let tmeta = template.and_then(|t| t.metadata.as_ref());
    let mut meta = ObjectMeta {
        name: Some(name.to_string()),
        namespace: job.metadata.namespace.clone(),
        labels: tmeta.and_then(|m| m.labels.clone()),
        annotations: tmeta.and_then(|m| m.annotations.clone()),
        finalizers: tmeta.and_then(|m| m.finalizers.clone()),
        owner_references: new_controller_ref("batch/v1", "Job", &job.metadata).map(|r| vec![r]),
        ..Default::default()
    };
    let mut spec = template.and_then(|t| t.spec.clone());
    if let Some(i) = index {
        meta.annotations
            .get_or_insert_with(Default::default)
            .insert(COMPLETION_INDEX_ANNOTATION.into(), i.to_string());
        meta.labels
            .get_or_insert_with(Default::default)
            .insert(COMPLETION_INDEX_ANNOTATION.into(), i.to_string());
        if let Some(spec) = spec.as_mut() {
            let containers = spec
                .containers
                .iter_mut()
                .chain(spec.init_containers.iter_mut().flatten());
            for c in containers {
                let env = c.env.get_or_insert_with(Vec::new);
                env.retain(|e| e.name != COMPLETION_INDEX_ENV);
                env.push(EnvVar {
                    name: COMPLETION_INDEX_ENV.into(),
                    value: Some(i.to_string()),
                    value_from: None,
                });
            }
        }
    }
    Pod {
        metadata: meta,
        spec,
        status: None,
    }
}

/// The generated-name base of the Job's pods: `<job>-` or, for an Indexed
/// Job, `<job>-<index>-`.
pub fn pod_name_base(job: &Job, index: Option<i32>) -> String {
    let name = job.metadata.name.as_deref().unwrap_or_default();
    match index {
        Some(i) => format!("{name}-{i}-"),
        None => format!("{name}-"),
    }
}
