//! Table-driven tests of the CronJob controller's decision, on a fake
//! clock.

use k8s_openapi::api::batch::v1::{
    CronJob, CronJobSpec, CronJobStatus, Job, JobCondition, JobStatus, JobTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::Timestamp;

use super::core::*;
use crate::test_fixtures::*;

/// 2026-01-01T00:00:00Z (a Thursday), plus minutes and seconds.
fn at(min: i64, sec: i64) -> i64 {
    NOW_MS + min * 60_000 + sec * 1000
}

fn cronjob(schedule: &str, f: impl FnOnce(&mut CronJobSpec, &mut CronJobStatus)) -> CronJob {
    let mut spec = CronJobSpec {
        schedule: schedule.into(),
        concurrency_policy: Some("Allow".into()),
        successful_jobs_history_limit: Some(3),
        failed_jobs_history_limit: Some(1),
        job_template: JobTemplateSpec::default(),
        ..Default::default()
    };
    let mut status = CronJobStatus::default();
    f(&mut spec, &mut status);
    CronJob {
        metadata: ObjectMeta {
            name: Some("hello".into()),
            namespace: Some("default".into()),
            uid: Some("uid-hello".into()),
            creation_timestamp: Some(time(at(-10, 0))),
            ..Default::default()
        },
        spec,
        status: Some(status),
    }
}

/// A Job of the CronJob, started at minute `min`; `done`: None running,
/// Some(true) complete, Some(false) failed.
fn job(min: i64, done: Option<bool>) -> Job {
    let conds = done.map(|ok| {
        vec![JobCondition {
            type_: if ok { "Complete" } else { "Failed" }.into(),
            status: "True".into(),
            ..Default::default()
        }]
    });
    Job {
        metadata: ObjectMeta {
            name: Some(format!("hello-{}", at(min, 0) / 60_000)),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{min}")),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name: "hello".into(),
                uid: "uid-hello".into(),
                controller: Some(true),
                ..Default::default()
            }]),
            ..Default::default()
        },
        spec: None,
        status: Some(JobStatus {
            start_time: Some(time(at(min, 0))),
            completion_time: (done == Some(true)).then(|| time(at(min, 30))),
            conditions: conds,
            ..Default::default()
        }),
    }
}

fn run(cj: &CronJob, jobs: &[Job], now: i64) -> Plan {
    let refs: Vec<&Job> = jobs.iter().collect();
    reconcile(&Input {
        cronjob: cj,
        jobs: &refs,
        time_zone: Ok(&TimeZone::UTC),
        now_ms: now,
    })
}

fn reasons(p: &Plan) -> Vec<&str> {
    p.events.iter().map(|e| e.1).collect()
}

#[test]
fn starts_a_job_at_each_scheduled_time() {
    let cj = cronjob("*/5 * * * *", |_, st| {
        st.last_schedule_time = Some(time(at(0, 0)))
    });
    // Before the next time: wait for it.
    let plan = run(&cj, &[], at(3, 0));
    assert_eq!(plan.create_at, None);
    assert_eq!(plan.requeue_after_ms, Some(120_000));
    // At 5:00 (seen at 5:01): start it, named by minutes since the epoch.
    let plan = run(&cj, &[], at(5, 1));
    assert_eq!(plan.create_at, Some(at(5, 0)));
    assert_eq!(
        job_name(&cj, at(5, 0)),
        format!("hello-{}", at(5, 0) / 60_000)
    );
    assert_eq!(
        plan.status.unwrap().last_schedule_time,
        Some(time(at(5, 0)))
    );
    assert_eq!(plan.requeue_after_ms, Some(at(10, 0) - at(5, 1)));
    // The Job exists already (a lost status write): not again.
    let plan = run(&cj, &[job(5, None)], at(5, 2));
    assert_eq!(plan.create_at, None);
}

#[test]
fn concurrency_policies() {
    let running = [job(0, None)];
    // (policy, want a new job, want deleted)
    let cases = [
        ("Allow", true, 0),
        ("Forbid", false, 0),
        ("Replace", true, 1),
    ];
    for (policy, create, deleted) in cases {
        let cj = cronjob("* * * * *", |s, st| {
            s.concurrency_policy = Some(policy.into());
            st.last_schedule_time = Some(time(at(0, 0)));
        });
        let plan = run(&cj, &running, at(1, 5));
        assert_eq!(plan.create_at.is_some(), create, "{policy}");
        assert_eq!(plan.delete.len(), deleted, "{policy}");
        if policy == "Forbid" {
            assert_eq!(reasons(&plan), ["JobAlreadyActive"]);
        }
        let active = plan.status.and_then(|s| s.active).unwrap_or_default();
        assert_eq!(
            active.len(),
            if policy == "Replace" { 0 } else { 1 },
            "{policy}"
        );
    }
}

#[test]
fn missed_runs_start_once_and_only_within_the_deadline() {
    // Controller down from 0:00 to 0:10 with an every-minute schedule:
    // one catch-up run, for the most recent time.
    let cj = cronjob("* * * * *", |_, st| {
        st.last_schedule_time = Some(time(at(0, 0)))
    });
    let plan = run(&cj, &[], at(10, 30));
    assert_eq!(plan.create_at, Some(at(10, 0)));
    assert!(reasons(&plan).is_empty());

    // startingDeadlineSeconds 20: the 10:00 run is 30 s late, skipped
    // (the look-back starts at now - 20 s, as in Kubernetes, so there is
    // nothing to start, only the next time to wait for).
    let cj = cronjob("* * * * *", |s, st| {
        s.starting_deadline_seconds = Some(20);
        st.last_schedule_time = Some(time(at(0, 0)));
    });
    let plan = run(&cj, &[], at(10, 30));
    assert_eq!(plan.create_at, None);
    assert_eq!(plan.requeue_after_ms, Some(30_000));
    // …but within it, it runs.
    let plan = run(&cj, &[], at(10, 15));
    assert_eq!(plan.create_at, Some(at(10, 0)));

    // Over 100 missed times: a warning, and still the most recent run.
    let cj = cronjob("* * * * *", |_, st| {
        st.last_schedule_time = Some(time(at(0, 0)))
    });
    let plan = run(&cj, &[], at(300, 10));
    assert_eq!(plan.create_at, Some(at(300, 0)));
    assert_eq!(reasons(&plan), ["TooManyMissedTimes"]);
    assert!(
        plan.events[0]
            .2
            .contains("too many missed start times: 300"),
        "{}",
        plan.events[0].2
    );
    // A deadline bounds the look-back, so no warning.
    let cj = cronjob("* * * * *", |s, st| {
        s.starting_deadline_seconds = Some(200);
        st.last_schedule_time = Some(time(at(0, 0)));
    });
    assert!(reasons(&run(&cj, &[], at(300, 10))).is_empty());
}

#[test]
fn suspended_or_invalid_cronjobs_start_nothing() {
    let cj = cronjob("* * * * *", |s, _| s.suspend = Some(true));
    assert_eq!(run(&cj, &[], at(5, 0)).create_at, None);
    let cj = cronjob("* * *", |_, _| {});
    let plan = run(&cj, &[], at(5, 0));
    assert_eq!(
        (plan.create_at, reasons(&plan)),
        (None, vec!["InvalidSchedule"])
    );
    let cj = cronjob("* * * * *", |_, _| {});
    let plan = reconcile(&Input {
        cronjob: &cj,
        jobs: &[],
        time_zone: Err("unknown time zone \"Mars/Olympus\""),
        now_ms: at(5, 0),
    });
    assert_eq!(
        (plan.create_at, reasons(&plan)),
        (None, vec!["UnknownTimeZone"])
    );
}

#[test]
fn history_limits_delete_the_oldest_finished_jobs() {
    let cj = cronjob("0 0 1 1 *", |s, _| {
        s.successful_jobs_history_limit = Some(2);
        s.failed_jobs_history_limit = Some(1);
    });
    let jobs = [
        job(1, Some(true)),
        job(2, Some(true)),
        job(3, Some(false)),
        job(4, Some(true)),
        job(5, Some(false)),
        job(6, None),
    ];
    let plan = run(&cj, &jobs, at(7, 0));
    let mut deleted: Vec<String> = plan.delete.iter().map(|j| j.uid.clone()).collect();
    deleted.sort();
    assert_eq!(deleted, ["uid-1", "uid-3"]);
    let st = plan.status.unwrap();
    assert_eq!(st.last_successful_time, Some(time(at(4, 30))));
    assert_eq!(st.active.unwrap().len(), 1);
}

#[test]
fn jobs_started_in_the_same_second_go_by_name() {
    // A manual Job (`kubectl create job --from=cronjob/hello adhoc`) started
    // in the same second as the scheduled one: Kubernetes breaks the tie by
    // name, whatever order the informer lists them in, so the manual one
    // goes although it was created later.
    let cj = cronjob("0 0 1 1 *", |s, _| {
        s.successful_jobs_history_limit = Some(1)
    });
    let scheduled = job(1, Some(true));
    let mut manual = job(1, Some(true));
    manual.metadata.name = Some("adhoc".into());
    manual.metadata.uid = Some("uid-manual".into());
    for jobs in [[scheduled.clone(), manual.clone()], [manual, scheduled]] {
        let plan = run(&cj, &jobs, at(2, 0));
        let deleted: Vec<&str> = plan.delete.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(deleted, ["adhoc"]);
    }
}

#[test]
fn time_zone_decides_the_scheduled_instant() {
    // 09:00 every day in New York (UTC-5 in January) is 14:00 UTC.
    let ny = crate::cronjob::schedule::time_zone(Some("America/New_York")).unwrap();
    let cj = cronjob("0 9 * * *", |s, st| {
        s.time_zone = Some("America/New_York".into());
        st.last_schedule_time = Some(time(at(0, 0)));
    });
    let refs: Vec<&Job> = Vec::new();
    let plan = reconcile(&Input {
        cronjob: &cj,
        jobs: &refs,
        time_zone: Ok(&ny),
        now_ms: at(14 * 60, 1),
    });
    assert_eq!(plan.create_at, Some(at(14 * 60, 0)));
    let job = job_from_template(&cj, at(14 * 60, 0), &ny);
    let ann = job.metadata.annotations.unwrap();
    assert_eq!(
        ann[SCHEDULED_TIMESTAMP_ANNOTATION],
        "2026-01-01T09:00:00-05:00"
    );
    assert_eq!(job.metadata.owner_references.unwrap()[0].kind, "CronJob");
    let _ = Timestamp::UNIX_EPOCH;
}

#[test]
fn scheduled_timestamp_in_utc_ends_in_z_as_go_writes_it() {
    // Kubernetes formats the annotation with Go's time.RFC3339, which
    // writes a zero offset as `Z`; the e2e CronJob test found `+00:00`.
    let cj = cronjob("*/1 * * * *", |_, _| {});
    let job = job_from_template(&cj, at(14 * 60, 0), &TimeZone::UTC);
    let ann = job.metadata.annotations.unwrap();
    assert_eq!(ann[SCHEDULED_TIMESTAMP_ANNOTATION], "2026-01-01T14:00:00Z");
}
