//! Table-driven tests of the Job controller's decision.

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::core::*;
use super::indexes::COMPLETION_INDEX_ANNOTATION;
use crate::slim_pod::SlimPod;
use crate::test_fixtures::*;

fn job(f: impl FnOnce(&mut JobSpec)) -> Job {
    let mut spec = JobSpec {
        completions: Some(1),
        parallelism: Some(1),
        backoff_limit: Some(6),
        template: template("busybox"),
        ..Default::default()
    };
    f(&mut spec);
    Job {
        metadata: ObjectMeta {
            name: Some("pi".into()),
            namespace: Some("default".into()),
            uid: Some("uid-pi".into()),
            creation_timestamp: Some(time(NOW_MS - 60_000)),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn with_status(mut j: Job, f: impl FnOnce(&mut JobStatus)) -> Job {
    let mut s = j.status.take().unwrap_or_default();
    f(&mut s);
    j.status = Some(s);
    j
}

/// A pod of the Job: phase, index, seconds since it finished (terminated
/// pods) or was created.
fn jpod(name: &str, phase: &str, index: Option<i32>, secs_ago: i64) -> SlimPod {
    let mut p = full_pod(name, None, RUNNING_READY);
    p.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: "pi".into(),
        uid: "uid-pi".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    p.metadata.creation_timestamp = Some(time(NOW_MS - secs_ago * 1000));
    if let Some(i) = index {
        p.metadata.annotations = Some(labels(&[(COMPLETION_INDEX_ANNOTATION, &i.to_string())]));
    }
    let terminated = (phase == "Succeeded" || phase == "Failed").then(|| ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: if phase == "Failed" { 1 } else { 0 },
            finished_at: Some(time(NOW_MS - secs_ago * 1000)),
            ..Default::default()
        }),
        ..Default::default()
    });
    let ready = phase == "Running";
    p.status = Some(PodStatus {
        phase: Some(phase.into()),
        conditions: ready.then(|| {
            vec![k8s_openapi::api::core::v1::PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]
        }),
        container_statuses: Some(vec![ContainerStatus {
            name: "c".into(),
            state: terminated,
            ..Default::default()
        }]),
        ..Default::default()
    });
    p.into()
}

fn run(job: &Job, pods: &[SlimPod]) -> Plan {
    let refs: Vec<&SlimPod> = pods.iter().collect();
    reconcile(&Input {
        job,
        pods: &refs,
        may_manage: true,
        now_ms: NOW_MS,
    })
}

fn cond<'a>(s: &'a JobStatus, t: &str) -> Option<&'a JobCondition> {
    s.conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == t && c.status == "True")
}

#[test]
fn creation_respects_parallelism_and_completions() {
    // (completions, parallelism, succeeded pods, running pods, want created, want deleted)
    let cases = [
        (Some(1), 1, 0, 0, 1, 0),
        (Some(5), 2, 0, 0, 2, 0),
        (Some(5), 2, 0, 1, 1, 0),
        (Some(5), 2, 4, 0, 1, 0),
        (Some(5), 3, 3, 3, 0, 1),
        (Some(5), 0, 0, 2, 0, 2),
        // Work queue (no completions): parallelism until one succeeds.
        (None, 3, 0, 0, 3, 0),
        (None, 3, 1, 2, 0, 0),
    ];
    for (completions, parallelism, succeeded, running, create, delete) in cases {
        let j = job(|s| {
            s.completions = completions;
            s.parallelism = Some(parallelism);
        });
        let mut pods = Vec::new();
        for i in 0..succeeded {
            pods.push(jpod(&format!("s{i}"), "Succeeded", None, 30));
        }
        for i in 0..running {
            pods.push(jpod(&format!("r{i}"), "Running", None, 30 + i64::from(i)));
        }
        let plan = run(&j, &pods);
        let case = format!("{completions:?} {parallelism} {succeeded} {running}");
        assert_eq!(plan.create.len(), create, "create, {case}");
        assert_eq!(plan.delete.len(), delete, "delete, {case}");
        assert!(plan.create.iter().all(Option::is_none), "{case}");
        let st = plan.status.expect("status");
        assert_eq!(st.succeeded, Some(succeeded), "{case}");
        assert_eq!(
            st.active,
            Some(running + create as i32 - delete as i32),
            "{case}"
        );
        assert!(st.start_time.is_some());
    }
}

#[test]
fn completes_when_enough_pods_succeeded() {
    let j = job(|s| s.completions = Some(2));
    let plan = run(
        &j,
        &[
            jpod("a", "Succeeded", None, 5),
            jpod("b", "Succeeded", None, 1),
        ],
    );
    let st = plan.status.unwrap();
    assert!(cond(&st, "Complete").is_some());
    assert_eq!(st.completion_time, Some(time(NOW_MS)));
    assert_eq!(st.succeeded, Some(2));
    assert!(plan.create.is_empty());
    assert_eq!(plan.event.map(|e| e.1), Some("Completed"));
}

#[test]
fn backoff_limit_fails_the_job_and_kills_active_pods() {
    // backoffLimit 1: the second failure fails the Job.
    let j = job(|s| {
        s.backoff_limit = Some(1);
        s.completions = Some(3);
        s.parallelism = Some(2);
    });
    let pods = [
        jpod("f1", "Failed", None, 100),
        jpod("f2", "Failed", None, 50),
        jpod("r", "Running", None, 40),
    ];
    let plan = run(&j, &pods);
    let st = plan.status.unwrap();
    let failed = cond(&st, "Failed").expect("Failed condition");
    assert_eq!(
        failed.reason.as_deref(),
        Some(REASON_BACKOFF_LIMIT_EXCEEDED)
    );
    assert_eq!(st.failed, Some(3), "the killed active pod counts as failed");
    assert_eq!(st.active, Some(0));
    assert_eq!(plan.delete.len(), 1);
    assert!(plan.create.is_empty());
    assert!(st.completion_time.is_none());

    // One failure is within the limit: a new pod, after the back-off.
    let plan = run(&j, &[jpod("f1", "Failed", None, 5)]);
    assert!(
        plan.create.is_empty(),
        "10 s back-off after the first failure"
    );
    assert_eq!(plan.requeue_after_ms, Some(5_000));
    let plan = run(&j, &[jpod("f1", "Failed", None, 11)]);
    assert_eq!(plan.create.len(), 2);
}

#[test]
fn active_deadline_fails_the_job() {
    let j = with_status(job(|s| s.active_deadline_seconds = Some(30)), |st| {
        st.start_time = Some(time(NOW_MS - 31_000));
    });
    let plan = run(&j, &[jpod("r", "Running", None, 31)]);
    let st = plan.status.unwrap();
    assert_eq!(
        cond(&st, "Failed").and_then(|c| c.reason.as_deref()),
        Some(REASON_DEADLINE_EXCEEDED)
    );
    assert_eq!(plan.delete.len(), 1);

    // Before the deadline: look again when it passes.
    let j = with_status(job(|s| s.active_deadline_seconds = Some(30)), |st| {
        st.start_time = Some(time(NOW_MS - 10_000));
    });
    let plan = run(&j, &[jpod("r", "Running", None, 10)]);
    assert_eq!(plan.requeue_after_ms, Some(20_000));
    assert!(plan.status.is_some_and(|s| cond(&s, "Failed").is_none()));
}

#[test]
fn finished_job_is_deleted_after_its_ttl() {
    let finished = |secs_ago: i64| {
        with_status(job(|s| s.ttl_seconds_after_finished = Some(100)), |st| {
            st.completion_time = Some(time(NOW_MS - secs_ago * 1000));
            st.conditions = Some(vec![JobCondition {
                type_: "Complete".into(),
                status: "True".into(),
                ..Default::default()
            }]);
        })
    };
    let plan = run(&finished(40), &[]);
    assert!(!plan.delete_job);
    assert_eq!(plan.requeue_after_ms, Some(60_000));
    assert!(plan.status.is_none(), "a finished job's status is final");
    let plan = run(&finished(100), &[]);
    assert!(plan.delete_job);
}

#[test]
fn indexed_job_creates_missing_indexes() {
    let j = job(|s| {
        s.completion_mode = Some("Indexed".into());
        s.completions = Some(5);
        s.parallelism = Some(3);
    });
    let pods = [
        jpod("pi-0", "Succeeded", Some(0), 10),
        jpod("pi-1", "Running", Some(1), 10),
        // A duplicate of index 1: one goes.
        jpod("pi-1b", "Running", Some(1), 5),
        jpod("pi-3", "Succeeded", Some(3), 10),
    ];
    let plan = run(&j, &pods);
    assert_eq!(plan.create, vec![Some(2), Some(4)]);
    assert_eq!(plan.delete.len(), 1);
    let st = plan.status.unwrap();
    assert_eq!(st.completed_indexes.as_deref(), Some("0,3"));
    assert_eq!(st.succeeded, Some(2));

    // All indexes done: Complete.
    let done: Vec<SlimPod> = (0..5)
        .map(|i| jpod(&format!("pi-{i}"), "Succeeded", Some(i), 1))
        .collect();
    let st = run(&j, &done).status.unwrap();
    assert_eq!(st.completed_indexes.as_deref(), Some("0-4"));
    assert!(cond(&st, "Complete").is_some());
}

#[test]
fn indexed_pods_carry_their_index() {
    let j = job(|s| s.completion_mode = Some("Indexed".into()));
    let p = pod_from_template(&j, "pi-2-abcde", Some(2));
    let ann = p.metadata.annotations.unwrap();
    assert_eq!(ann[COMPLETION_INDEX_ANNOTATION], "2");
    let env = p.spec.unwrap().containers[0].env.clone().unwrap();
    assert!(env
        .iter()
        .any(|e| e.name == "JOB_COMPLETION_INDEX" && e.value.as_deref() == Some("2")));
    assert_eq!(pod_name_base(&j, Some(2)), "pi-2-");
    let owner = &p.metadata.owner_references.unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.controller), ("Job", Some(true)));
}

#[test]
fn suspended_job_runs_no_pods() {
    let j = job(|s| {
        s.suspend = Some(true);
        s.parallelism = Some(2);
        s.completions = Some(4);
    });
    let plan = run(&j, &[jpod("r", "Running", None, 10)]);
    assert!(plan.create.is_empty());
    assert_eq!(plan.delete.len(), 1);
    let st = plan.status.unwrap();
    assert!(cond(&st, "Suspended").is_some());
    assert_eq!(st.active, Some(0));
}

#[test]
fn nothing_is_managed_until_expectations_are_met() {
    let j = job(|s| s.parallelism = Some(2));
    let plan = reconcile(&Input {
        job: &j,
        pods: &[],
        may_manage: false,
        now_ms: NOW_MS,
    });
    assert!(plan.create.is_empty());
}
