//! The CronJob controller's decision, as a pure function: the CronJob, its
//! Jobs, the clock and the time zone in; the Job to start (if a scheduled
//! time has come), Jobs to delete (Replace policy, history limits), the new
//! status and when to look again out
//! (`pkg/controller/cronjob/cronjob_controllerv2.go`, `syncCronJob`, and
//! `utils.go`, `mostRecentScheduleTime`).
//!
//! Missed runs: of all scheduled times since the last one (or since
//! creation, or within `startingDeadlineSeconds`), only the most recent is
//! started — at most one catch-up. More than
//! [`TOO_MANY_MISSED_START_TIMES`] missed times are reported with a
//! `TooManyMissedTimes` warning, as Kubernetes does.

use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::Timestamp;

use crate::clock::time;
use crate::cronjob::schedule::Schedule;
use crate::owner::new_controller_ref;
use crate::pod_util::{created_ms, millis};

/// Above this many missed start times the controller warns
/// (Kubernetes' limit of 100).
pub const TOO_MANY_MISSED_START_TIMES: i64 = 100;
/// Annotation on a Job with the time it was scheduled for.
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// A Job, by name and uid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRef {
    /// Job name.
    pub name: String,
    /// Job uid (delete precondition).
    pub uid: String,
}

/// What the CronJob controller decided for one CronJob.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Start a Job for this scheduled time (milliseconds since the epoch).
    pub create_at: Option<i64>,
    /// Jobs to delete (background propagation): replaced, or beyond the
    /// history limits.
    pub delete: Vec<JobRef>,
    /// The status to write, if it changed.
    pub status: Option<CronJobStatus>,
    /// Events to record: (type, reason, message).
    pub events: Vec<(&'static str, &'static str, String)>,
    /// Reconcile again after this many milliseconds (the next scheduled
    /// time).
    pub requeue_after_ms: Option<i64>,
}

/// The inputs of one decision.
pub struct Input<'a> {
    /// The CronJob.
    pub cronjob: &'a CronJob,
    /// The Jobs it controls.
    pub jobs: &'a [&'a Job],
    /// The time zone of `spec.timeZone` (or the local one), or why it is
    /// unknown.
    pub time_zone: Result<&'a TimeZone, &'a str>,
    /// The clock, milliseconds since the epoch.
    pub now_ms: i64,
}

/// Whether a Job finished, and how: `Some(true)` Complete, `Some(false)`
/// Failed.
pub fn finished(job: &Job) -> Option<bool> {
    let conds = job.status.as_ref()?.conditions.as_deref()?;
    conds
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_ == "Complete")
}

/// The name of the Job for a scheduled time: `<cronjob>-<minutes since the
/// epoch>` (`getJobName`), so one scheduled time makes at most one Job.
pub fn job_name(cronjob: &CronJob, scheduled_ms: i64) -> String {
    format!(
        "{}-{}",
        cronjob.metadata.name.as_deref().unwrap_or_default(),
        scheduled_ms.div_euclid(60_000)
    )
}

fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// The order Kubernetes sorts a CronJob's Jobs in (`byJobStartTime`):
/// by `status.startTime`, Jobs without one last, and equal times (it has
/// whole seconds) by name. The history limits delete from the front, so
/// the tie-break decides which of two Jobs started in the same second
/// goes; without it the informer's order decided.
fn start_order(job: &Job) -> (bool, i64, &str) {
    let start = job
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|Time(t)| millis(t));
    (
        start.is_none(),
        start.unwrap_or(0),
        job.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// The scheduled times in `(earliest, now]`: the most recent, and how many
/// there were (counted up to a bound, then estimated from the interval,
/// like Kubernetes, so a schedule missed for a year costs no more than one
/// missed for a day).
fn most_recent(schedule: &Schedule, tz: &TimeZone, earliest: i64, now: i64) -> (Option<i64>, i64) {
    let mut count = 0;
    let mut t = earliest;
    let mut last = None;
    while let Some(next) = schedule.next_after(t, tz) {
        if next > now {
            return (last, count);
        }
        count += 1;
        last = Some(next);
        t = next;
        if count > TOO_MANY_MISSED_START_TIMES {
            break;
        }
    }
    if count <= TOO_MANY_MISSED_START_TIMES {
        // The schedule ran out (no time within the look-ahead).
        return (last, count);
    }
    // Many missed: jump close to now and walk the rest.
    let interval = last
        .zip(schedule.next_after(t, tz))
        .map(|(a, b)| b - a)
        .unwrap_or(60_000)
        .max(60_000);
    let estimate = count + (now - t) / interval;
    let mut back = interval.max(60_000);
    loop {
        let from = (now - back).max(t);
        if let Some(first) = schedule.next_after(from, tz).filter(|f| *f <= now) {
            let mut recent = first;
            while let Some(n) = schedule.next_after(recent, tz).filter(|n| *n <= now) {
                recent = n;
            }
            return (Some(recent), estimate);
        }
        if from == t {
            return (last, estimate);
        }
        back = back.saturating_mul(4);
    }
}

/// Decides what to do for one CronJob.
pub fn reconcile(input: &Input<'_>) -> Plan {
    let cj = input.cronjob;
    let now = input.now_ms;
    let spec = cj.spec.clone();
    let old = cj.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let mut plan = Plan::default();

    // Active Jobs and the last success, from the Jobs themselves.
    let mut active: Vec<&Job> = input
        .jobs
        .iter()
        .copied()
        .filter(|j| finished(j).is_none())
        .collect();
    active.sort_by_key(|j| start_order(j));
    let last_success = input
        .jobs
        .iter()
        .filter(|j| finished(j) == Some(true))
        .filter_map(|j| {
            j.status
                .as_ref()?
                .completion_time
                .as_ref()
                .map(|Time(t)| millis(t))
        })
        .max();
    if let Some(ls) = last_success {
        let old_ls = old.last_successful_time.as_ref().map(|Time(t)| millis(t));
        if old_ls.is_none_or(|o| ls > o) {
            status.last_successful_time = Some(time(ls));
        }
    }

    // History limits: the oldest finished Jobs beyond them go.
    for (want, limit) in [
        (true, spec.successful_jobs_history_limit.unwrap_or(3)),
        (false, spec.failed_jobs_history_limit.unwrap_or(1)),
    ] {
        let mut done: Vec<&Job> = input
            .jobs
            .iter()
            .copied()
            .filter(|j| finished(j) == Some(want))
            .collect();
        done.sort_by_key(|j| start_order(j));
        let extra = done
            .len()
            .saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
        for j in done.into_iter().take(extra) {
            plan.delete.push(JobRef {
                name: j.metadata.name.clone().unwrap_or_default(),
                uid: j.metadata.uid.clone().unwrap_or_default(),
            });
        }
    }

    let set_active = |status: &mut CronJobStatus, active: &[&Job]| {
        let refs: Vec<ObjectReference> = active.iter().map(|j| job_ref(j)).collect();
        status.active = (!refs.is_empty()).then_some(refs);
    };
    set_active(&mut status, &active);

    let schedule = Schedule::parse(&spec.schedule);
    let runnable = cj.metadata.deletion_timestamp.is_none() && spec.suspend != Some(true);
    match (&schedule, input.time_zone) {
        (Err(e), _) if runnable => plan
            .events
            .push(("Warning", "InvalidSchedule", e.to_string())),
        (_, Err(e)) if runnable => plan
            .events
            .push(("Warning", "UnknownTimeZone", e.to_string())),
        (Ok(schedule), Ok(tz)) if runnable => {
            let created = created_ms(&cj.metadata);
            let mut earliest = old
                .last_schedule_time
                .as_ref()
                .map(|Time(t)| millis(t))
                .unwrap_or(created);
            if let Some(sds) = spec.starting_deadline_seconds {
                earliest = earliest.max(now - sds.max(0) * 1000);
            }
            let (recent, missed) = most_recent(schedule, tz, earliest, now);
            if missed > TOO_MANY_MISSED_START_TIMES {
                plan.events.push((
                    "Warning",
                    "TooManyMissedTimes",
                    format!("too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"),
                ));
            }
            plan.requeue_after_ms = schedule.next_after(now, tz).map(|n| n - now);
            if let Some(at) = recent {
                let name = job_name(cj, at);
                let too_late = spec
                    .starting_deadline_seconds
                    .is_some_and(|sds| at + sds * 1000 < now);
                let exists = input
                    .jobs
                    .iter()
                    .any(|j| j.metadata.name.as_deref() == Some(name.as_str()));
                if exists {
                    // Already started (the status write may have been lost).
                    if old
                        .last_schedule_time
                        .as_ref()
                        .map(|Time(t)| millis(t))
                        .is_none_or(|l| l < at)
                    {
                        status.last_schedule_time = Some(time(at));
                    }
                } else if too_late {
                    plan.events.push((
                        "Warning",
                        "MissSchedule",
                        format!("Missed scheduled time to start a job: {}", show(at, tz)),
                    ));
                } else if spec.concurrency_policy.as_deref() == Some("Forbid") && !active.is_empty()
                {
                    plan.events.push((
                        "Normal",
                        "JobAlreadyActive",
                        "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
                    ));
                } else {
                    if spec.concurrency_policy.as_deref() == Some("Replace") {
                        for j in active.drain(..) {
                            plan.delete.push(JobRef {
                                name: j.metadata.name.clone().unwrap_or_default(),
                                uid: j.metadata.uid.clone().unwrap_or_default(),
                            });
                        }
                        set_active(&mut status, &active);
                    }
                    plan.create_at = Some(at);
                    status.last_schedule_time = Some(time(at));
                }
            }
        }
        _ => {}
    }
    if status != old {
        plan.status = Some(status);
    }
    plan
}

fn show(ms: i64, tz: &TimeZone) -> String {
    Timestamp::from_millisecond(ms)
        .map(|t| t.to_zoned(tz.clone()).to_string())
        .unwrap_or_default()
}

/// `t` in the zone `tz` as Go's `time.RFC3339` writes it, the format of the
/// scheduled-timestamp annotation: a zero offset is `Z`, as in
/// `2026-01-01T14:00:00Z` (clients parse it as Go does; `+00:00` differs
/// from what Kubernetes writes), any other is `-05:00`.
fn rfc3339_in(t: Timestamp, tz: &TimeZone) -> String {
    let zoned = t.to_zoned(tz.clone());
    let offset = if zoned.offset().seconds() == 0 {
        "Z"
    } else {
        "%:z"
    };
    zoned
        .strftime(&format!("%Y-%m-%dT%H:%M:%S{offset}"))
        .to_string()
}

/// The Job for a scheduled time (`getJobFromTemplate2`): the template's
/// labels, annotations and spec, the scheduled-timestamp annotation, and a
/// controller reference to the CronJob.
pub fn job_from_template(cj: &CronJob, scheduled_ms: i64, tz: &TimeZone) -> Job {
    let template = &cj.spec.job_template;
    let tmeta = template.metadata.as_ref();
    let mut annotations = tmeta
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    if let Ok(t) = Timestamp::from_millisecond(scheduled_ms) {
        annotations.insert(SCHEDULED_TIMESTAMP_ANNOTATION.into(), rfc3339_in(t, tz));
    }
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(cj, scheduled_ms)),
            namespace: cj.metadata.namespace.clone(),
            labels: tmeta.and_then(|m| m.labels.clone()),
            annotations: Some(annotations),
            owner_references: new_controller_ref("batch/v1", "CronJob", &cj.metadata)
                .map(|r| vec![r]),
            ..Default::default()
        },
        spec: Some(template.spec.clone().unwrap_or_default()),
        status: None,
    }
}
