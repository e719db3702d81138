//! Init containers in order, probe outcomes → kill / ready, probe timing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, ExecAction, Probe};
use k8s_openapi::jiff::Timestamp;

use super::backoff::BackOff;
use super::observed::RunState::*;
use super::plan::{next_actions, Action, InitProgress, PlanInput};
use super::plan_test::{ctr, observed, pod, sandbox};
use super::probe::{ContainerProbes, ProbeKind, ProbeResults, ProbeVerdict};
use super::status::{compute_status, StatusInput};

fn with_inits(policy: &str, inits: &[&str]) -> k8s_openapi::api::core::v1::Pod {
    let mut p = pod(policy, &["app"]);
    if let Some(s) = p.spec.as_mut() {
        s.init_containers = Some(
            inits
                .iter()
                .map(|n| Container {
                    name: n.to_string(),
                    image: Some("skiff.local/busybox:1".into()),
                    ..Default::default()
                })
                .collect(),
        );
    }
    p
}

fn plan(
    p: &k8s_openapi::api::core::v1::Pod,
    obs: &super::observed::ObservedPod,
    probes: &ProbeResults,
) -> Vec<Action> {
    let none = BackOff::default();
    next_actions(&PlanInput {
        pod: p,
        observed: obs,
        restart_backoff: &none,
        pull_backoff: &none,
        probes,
        now: Instant::now(),
    })
}

fn start(name: &str, attempt: u32) -> Action {
    Action::StartContainer {
        name: name.into(),
        attempt,
    }
}

#[test]
fn init_containers_run_one_at_a_time_in_order() {
    let p = with_inits("Always", &["i1", "i2"]);
    let none = ProbeResults::new();
    let sb = || vec![sandbox("sb1", true, 0)];
    let cases = vec![
        ("nothing yet", observed(sb(), vec![]), vec![start("i1", 0)]),
        (
            "i1 running",
            observed(sb(), vec![ctr("a", "sb1", "i1", 0, Running, 0)]),
            vec![],
        ),
        (
            "i1 done",
            observed(sb(), vec![ctr("a", "sb1", "i1", 0, Exited, 0)]),
            vec![start("i2", 0)],
        ),
        (
            "i1 failed: retried",
            observed(sb(), vec![ctr("a", "sb1", "i1", 0, Exited, 1)]),
            vec![start("i1", 1)],
        ),
        (
            "all done: app",
            observed(
                sb(),
                vec![
                    ctr("a", "sb1", "i1", 0, Exited, 0),
                    ctr("b", "sb1", "i2", 0, Exited, 0),
                ],
            ),
            vec![start("app", 0)],
        ),
    ];
    for (what, obs, want) in cases {
        assert_eq!(plan(&p, &obs, &none), want, "{what}");
    }
    // restartPolicy Never: a failed init container fails the pod.
    let p = with_inits("Never", &["i1"]);
    let obs = observed(sb(), vec![ctr("a", "sb1", "i1", 0, Exited, 1)]);
    assert_eq!(
        super::plan::init_progress(&p, &obs, Some("sb1")),
        InitProgress::Failed("i1".into())
    );
    assert_eq!(
        plan(&p, &obs, &none),
        vec![Action::StopSandbox {
            sandbox_id: "sb1".into()
        }]
    );
    let status = compute_status(&StatusInput {
        pod: &p,
        observed: &obs,
        waiting: &HashMap::new(),
        host_ip: "192.0.2.10",
        probes: &none,
        kill_messages: &HashMap::new(),
        now: Timestamp::from_second(1_700_000_000).unwrap(),
    });
    assert_eq!(status.phase.as_deref(), Some("Failed"));
}

#[test]
fn init_status_is_pending_with_pod_initializing() {
    let p = with_inits("Always", &["i1"]);
    let obs = observed(
        vec![sandbox("sb1", true, 0)],
        vec![ctr("a", "sb1", "i1", 0, Running, 0)],
    );
    let none = ProbeResults::new();
    let st = compute_status(&StatusInput {
        pod: &p,
        observed: &obs,
        waiting: &HashMap::new(),
        host_ip: "192.0.2.10",
        probes: &none,
        kill_messages: &HashMap::new(),
        now: Timestamp::from_second(1_700_000_000).unwrap(),
    });
    assert_eq!(st.phase.as_deref(), Some("Pending"));
    let app = &st.container_statuses.unwrap()[0];
    let reason = app
        .state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.reason.clone());
    assert_eq!(reason.as_deref(), Some("PodInitializing"));
    let init = st
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Initialized")
        .unwrap();
    assert_eq!(init.status, "False");
    assert_eq!(st.init_container_statuses.unwrap().len(), 1);
}

#[test]
fn probe_outcomes_kill_or_gate_readiness() {
    let p = pod("Always", &["app"]);
    let obs = observed(
        vec![sandbox("sb1", true, 0)],
        vec![ctr("c1", "sb1", "app", 0, Running, 0)],
    );
    let verdict = |ready, kill: Option<&str>| {
        ProbeResults::from([(
            "c1".to_string(),
            ProbeVerdict {
                started: true,
                ready,
                kill: kill.map(str::to_string),
            },
        )])
    };
    // Liveness failed: kill it (the restart policy then restarts it).
    assert_eq!(
        plan(&p, &obs, &verdict(true, Some("failed liveness"))),
        vec![Action::KillContainer {
            id: "c1".into(),
            name: "app".into(),
            message: "failed liveness".into()
        }]
    );
    // Readiness failing: nothing to do, but not ready, and the pod not Ready.
    let probes = verdict(false, None);
    assert!(plan(&p, &obs, &probes).is_empty());
    let st = compute_status(&StatusInput {
        pod: &p,
        observed: &obs,
        waiting: &HashMap::new(),
        host_ip: "192.0.2.10",
        probes: &probes,
        kill_messages: &HashMap::new(),
        now: Timestamp::from_second(1_700_000_000).unwrap(),
    });
    assert!(!st.container_statuses.unwrap()[0].ready);
    let ready = st
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "False");
}

fn exec_probe(period: i32, failure: i32, delay: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec!["true".into()]),
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failure),
        initial_delay_seconds: Some(delay),
        ..Default::default()
    }
}

#[test]
fn probe_timing_thresholds_and_startup_gate() {
    let t0 = Instant::now();
    let c = Container {
        name: "app".into(),
        startup_probe: Some(exec_probe(1, 2, 0)),
        liveness_probe: Some(exec_probe(5, 2, 0)),
        readiness_probe: Some(exec_probe(1, 1, 3)),
        ..Default::default()
    };
    let mut p = ContainerProbes::new(&c, t0);
    // Only startup runs until it succeeds; not started, not ready.
    assert_eq!(p.due(t0), vec![ProbeKind::Startup]);
    let v = p.verdict("app");
    assert!(!v.started && !v.ready && v.kill.is_none());
    p.trackers
        .get_mut(&ProbeKind::Startup)
        .unwrap()
        .record(Ok(()), t0);
    assert!(p.verdict("app").started);
    // Liveness now due; readiness waits for its initial delay (3 s).
    assert_eq!(p.due(t0), vec![ProbeKind::Liveness]);
    assert_eq!(
        p.due(t0 + Duration::from_secs(3)),
        vec![ProbeKind::Liveness, ProbeKind::Readiness]
    );
    // Readiness starts failed, turns true on one success.
    assert!(!p.verdict("app").ready);
    p.trackers
        .get_mut(&ProbeKind::Readiness)
        .unwrap()
        .record(Ok(()), t0);
    assert!(p.verdict("app").ready);
    // Liveness: one failure is tolerated (threshold 2), two kill.
    let l = p.trackers.get_mut(&ProbeKind::Liveness).unwrap();
    l.record(Err("boom".into()), t0);
    assert!(p.verdict("app").kill.is_none());
    let l = p.trackers.get_mut(&ProbeKind::Liveness).unwrap();
    assert!(!l.due(t0, t0 + Duration::from_secs(4)));
    l.record(Err("boom".into()), t0 + Duration::from_secs(5));
    let kill = p.verdict("app").kill.unwrap();
    assert!(
        kill.contains("failed liveness probe") && kill.contains("boom"),
        "{kill}"
    );
}
