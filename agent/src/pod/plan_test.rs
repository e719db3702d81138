//! Table-driven tests of `next_actions` and the lifecycle transitions.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodStatus};

use super::backoff::BackOff;
use super::lifecycle::{IllegalTransition, LifecycleEvent, PodLifecycle};
use super::observed::{ContainerObs, ObservedPod, RunState, SandboxObs};
use super::plan::{next_actions, Action, BackOffReason, PlanInput, SANDBOX_BACKOFF_KEY};

pub(super) fn pod(policy: &str, containers: &[&str]) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = Some("web".into());
    p.metadata.namespace = Some("default".into());
    p.metadata.uid = Some("uid-1".into());
    p.spec = Some(PodSpec {
        restart_policy: Some(policy.into()),
        containers: containers
            .iter()
            .map(|n| Container {
                name: n.to_string(),
                image: Some("skiff.local/busybox:1".into()),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    });
    p
}

pub(super) fn sandbox(id: &str, ready: bool, attempt: u32) -> SandboxObs {
    SandboxObs {
        id: id.into(),
        ready,
        attempt,
        created_at: i64::from(attempt) + 1,
        ips: if ready {
            vec!["10.42.0.5".into()]
        } else {
            vec![]
        },
    }
}

pub(super) fn ctr(
    id: &str,
    sb: &str,
    name: &str,
    attempt: u32,
    state: RunState,
    exit: i32,
) -> ContainerObs {
    ContainerObs {
        id: id.into(),
        sandbox_id: sb.into(),
        name: name.into(),
        attempt,
        state,
        created_at: 1_000_000_000 * (i64::from(attempt) + 1),
        started_at: 1_000_000_000 * (i64::from(attempt) + 1),
        finished_at: if state == RunState::Exited {
            1_500_000_000 * (i64::from(attempt) + 1)
        } else {
            0
        },
        exit_code: exit,
        reason: String::new(),
        message: String::new(),
        image: "skiff.local/busybox:1".into(),
        image_ref: "sha256:abc".into(),
    }
}

pub(super) fn observed(sandboxes: Vec<SandboxObs>, containers: Vec<ContainerObs>) -> ObservedPod {
    let mut o = ObservedPod {
        sandboxes,
        containers,
    };
    o.normalize();
    o
}

fn start(name: &str, attempt: u32) -> Action {
    Action::StartContainer {
        name: name.into(),
        attempt,
    }
}

fn plan(
    pod: &Pod,
    obs: &ObservedPod,
    restart: &BackOff,
    pull: &BackOff,
    now: Instant,
) -> Vec<Action> {
    next_actions(&PlanInput {
        pod,
        observed: obs,
        restart_backoff: restart,
        pull_backoff: pull,
        probes: &Default::default(),
        now,
    })
}

#[test]
fn next_actions_table() {
    use RunState::*;
    let none = BackOff::default();
    let now = Instant::now();
    let cases: Vec<(&str, Pod, ObservedPod, Vec<Action>)> = vec![
        (
            "new pod: create the sandbox first",
            pod("Always", &["a"]),
            observed(vec![], vec![]),
            vec![Action::CreateSandbox { attempt: 0 }],
        ),
        (
            "sandbox ready: start every container",
            pod("Always", &["a", "b"]),
            observed(vec![sandbox("sb1", true, 0)], vec![]),
            vec![start("a", 0), start("b", 0)],
        ),
        (
            "all running: nothing to do",
            pod("Always", &["a"]),
            observed(
                vec![sandbox("sb1", true, 0)],
                vec![ctr("c1", "sb1", "a", 0, Running, 0)],
            ),
            vec![],
        ),
        (
            "Always restarts a success",
            pod("Always", &["a"]),
            observed(
                vec![sandbox("sb1", true, 0)],
                vec![ctr("c1", "sb1", "a", 0, Exited, 0)],
            ),
            vec![start("a", 1)],
        ),
        (
            "OnFailure restarts a failure",
            pod("OnFailure", &["a"]),
            observed(
                vec![sandbox("sb1", true, 0)],
                vec![ctr("c1", "sb1", "a", 2, Exited, 1)],
            ),
            vec![start("a", 3)],
        ),
        (
            "OnFailure leaves a success: pod done, sandbox stopped",
            pod("OnFailure", &["a"]),
            observed(
                vec![sandbox("sb1", true, 0)],
                vec![ctr("c1", "sb1", "a", 0, Exited, 0)],
            ),
            vec![Action::StopSandbox {
                sandbox_id: "sb1".into(),
            }],
        ),
        (
            "Never with one exited and one running: wait",
            pod("Never", &["a", "b"]),
            observed(
                vec![sandbox("sb1", true, 0)],
                vec![
                    ctr("c1", "sb1", "a", 0, Exited, 1),
                    ctr("c2", "sb1", "b", 0, Running, 0),
                ],
            ),
            vec![],
        ),
        (
            "dead sandbox with live containers: kill it, make attempt 1",
            pod("Always", &["a"]),
            observed(
                vec![sandbox("sb1", false, 0)],
                vec![ctr("c1", "sb1", "a", 0, Running, 0)],
            ),
            vec![
                Action::KillSandbox {
                    sandbox_id: "sb1".into(),
                },
                Action::CreateSandbox { attempt: 1 },
            ],
        ),
        (
            "dead sandbox, nothing running (the host crashed): stop it to free its IP, make attempt 1",
            pod("Always", &["a"]),
            observed(
                vec![sandbox("sb1", false, 0)],
                vec![ctr("c1", "sb1", "a", 0, Exited, 137)],
            ),
            vec![
                Action::KillSandbox {
                    sandbox_id: "sb1".into(),
                },
                Action::CreateSandbox { attempt: 1 },
            ],
        ),
        (
            "new sandbox: containers of the old one are restarted in it",
            pod("Always", &["a"]),
            observed(
                vec![sandbox("sb1", false, 0), sandbox("sb2", true, 1)],
                vec![ctr("c1", "sb1", "a", 0, Exited, 137)],
            ),
            vec![start("a", 1)],
        ),
        (
            "Never with a dead sandbox and exited containers: no new sandbox",
            pod("Never", &["a"]),
            observed(
                vec![sandbox("sb1", false, 0)],
                vec![ctr("c1", "sb1", "a", 0, Exited, 0)],
            ),
            vec![],
        ),
        (
            "created but never started: remove and start the same attempt",
            pod("Always", &["a"]),
            observed(
                vec![sandbox("sb1", true, 0)],
                vec![ctr("c1", "sb1", "a", 4, Created, 0)],
            ),
            vec![Action::RemoveContainer { id: "c1".into() }, start("a", 4)],
        ),
        (
            "old dead attempts are garbage-collected, two kept",
            pod("Always", &["a"]),
            observed(
                vec![sandbox("sb1", true, 0)],
                vec![
                    ctr("c1", "sb1", "a", 0, Exited, 1),
                    ctr("c2", "sb1", "a", 1, Exited, 1),
                    ctr("c3", "sb1", "a", 2, Running, 0),
                ],
            ),
            vec![Action::RemoveContainer { id: "c1".into() }],
        ),
    ];
    for (name, pod, obs, want) in cases {
        assert_eq!(plan(&pod, &obs, &none, &none, now), want, "{name}");
    }
}

#[test]
fn terminal_phase_only_stops_the_sandbox() {
    let mut p = pod("Always", &["a"]);
    p.status = Some(PodStatus {
        phase: Some("Failed".into()),
        ..Default::default()
    });
    let obs = observed(vec![sandbox("sb1", true, 0)], vec![]);
    let none = BackOff::default();
    assert_eq!(
        plan(&p, &obs, &none, &none, Instant::now()),
        vec![Action::StopSandbox {
            sandbox_id: "sb1".into()
        }]
    );
}

#[test]
fn an_evicted_pod_kills_its_running_containers_before_the_sandbox() {
    let mut p = pod("Always", &["a"]);
    p.status = Some(PodStatus {
        phase: Some("Failed".into()),
        ..Default::default()
    });
    let obs = observed(
        vec![sandbox("sb1", true, 0)],
        vec![ctr("c1", "sb1", "a", 0, RunState::Running, 0)],
    );
    let none = BackOff::default();
    assert_eq!(
        plan(&p, &obs, &none, &none, Instant::now()),
        vec![
            Action::KillContainer {
                id: "c1".into(),
                name: "a".into(),
                message: "Stopping container a".into(),
            },
            Action::StopSandbox {
                sandbox_id: "sb1".into()
            }
        ]
    );
}

#[test]
fn back_off_delays_restarts_pulls_and_sandboxes() {
    let now = Instant::now();
    let mut restart = BackOff::default();
    restart.next("a", now);
    let none = BackOff::default();
    let p = pod("Always", &["a", "b"]);
    let obs = observed(
        vec![sandbox("sb1", true, 0)],
        vec![
            ctr("c1", "sb1", "a", 0, RunState::Exited, 1),
            ctr("c2", "sb1", "b", 0, RunState::Exited, 1),
        ],
    );
    let got = plan(&p, &obs, &restart, &none, now + Duration::from_secs(1));
    assert_eq!(
        got,
        vec![
            Action::BackOff {
                name: "a".into(),
                reason: BackOffReason::CrashLoopBackOff,
                retry_at: now + Duration::from_secs(10),
            },
            start("b", 1),
        ]
    );
    // After the delay, it goes.
    let got = plan(&p, &obs, &restart, &none, now + Duration::from_secs(11));
    assert_eq!(got, vec![start("a", 1), start("b", 1)]);

    let mut pull = BackOff::default();
    pull.next("a", now);
    let fresh = observed(vec![sandbox("sb1", true, 0)], vec![]);
    let got = plan(&pod("Always", &["a"]), &fresh, &none, &pull, now);
    assert!(matches!(
        got.as_slice(),
        [Action::BackOff {
            reason: BackOffReason::ImagePullBackOff,
            ..
        }]
    ));

    let mut sb = BackOff::default();
    sb.next(SANDBOX_BACKOFF_KEY, now);
    let got = plan(
        &pod("Always", &["a"]),
        &observed(vec![], vec![]),
        &sb,
        &none,
        now,
    );
    assert!(
        matches!(got.as_slice(), [Action::BackOff { name, .. }] if name == SANDBOX_BACKOFF_KEY)
    );
}

#[test]
fn lifecycle_transitions() {
    use LifecycleEvent::*;
    use PodLifecycle::*;
    let term = |g, d| Terminating {
        grace_period_seconds: g,
        delete_from_api: d,
    };
    let cases: Vec<(PodLifecycle, LifecycleEvent, Result<PodLifecycle, ()>)> = vec![
        (
            Syncing,
            DeletionRequested {
                grace_period_seconds: 30,
            },
            Ok(term(30, true)),
        ),
        (
            Syncing,
            Removed {
                grace_period_seconds: 5,
            },
            Ok(term(5, false)),
        ),
        (
            Syncing,
            DeletionRequested {
                grace_period_seconds: -1,
            },
            Ok(term(0, true)),
        ),
        (
            term(30, true),
            DeletionRequested {
                grace_period_seconds: 0,
            },
            Ok(term(0, true)),
        ),
        (
            term(0, true),
            DeletionRequested {
                grace_period_seconds: 30,
            },
            Ok(term(0, true)),
        ),
        (
            term(30, true),
            Removed {
                grace_period_seconds: 30,
            },
            Ok(term(30, false)),
        ),
        (term(30, true), TeardownComplete, Ok(Terminated)),
        (
            Terminated,
            Removed {
                grace_period_seconds: 1,
            },
            Ok(Terminated),
        ),
        (Syncing, TeardownComplete, Err(())),
        (Terminated, TeardownComplete, Err(())),
    ];
    for (from, event, want) in cases {
        let got = from.on(event);
        match want {
            Ok(w) => assert_eq!(got, Ok(w), "{from:?} + {event:?}"),
            Err(()) => assert_eq!(got, Err(IllegalTransition { from, event })),
        }
    }
}
