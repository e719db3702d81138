//! Table-driven tests of `compute_status`.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{ContainerStatus, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::observed::{ObservedPod, RunState};
use super::plan_test::{ctr, observed, pod, sandbox};
use super::status::{compute_status, StatusInput, Waiting};

fn waiting(name: &str, reason: &str, message: &str) -> HashMap<String, Waiting> {
    HashMap::from([(
        name.to_string(),
        Waiting {
            reason: reason.into(),
            message: message.into(),
        },
    )])
}

/// A one-line summary of a container status: `state:reason/exit last:exit`.
fn summary(c: &ContainerStatus) -> String {
    let st = c.state.clone().unwrap_or_default();
    let state = if st.running.is_some() {
        "running".to_string()
    } else if let Some(t) = st.terminated {
        format!("terminated:{}", t.exit_code)
    } else if let Some(w) = st.waiting {
        format!("waiting:{}", w.reason.unwrap_or_default())
    } else {
        "?".into()
    };
    let last = c
        .last_state
        .as_ref()
        .and_then(|l| l.terminated.as_ref())
        .map(|t| format!(" last:{}", t.exit_code))
        .unwrap_or_default();
    format!(
        "{state}{last} restarts:{} ready:{}",
        c.restart_count, c.ready
    )
}

fn compute(
    p: &k8s_openapi::api::core::v1::Pod,
    obs: &ObservedPod,
    w: &HashMap<String, Waiting>,
) -> PodStatus {
    compute_status(&StatusInput {
        pod: p,
        observed: obs,
        waiting: w,
        host_ip: "192.0.2.10",
        probes: &Default::default(),
        kill_messages: &HashMap::new(),
        now: Timestamp::from_second(1_700_000_000).unwrap(),
    })
}

#[test]
fn status_table() {
    use RunState::*;
    let none = HashMap::new();
    let sb = || vec![sandbox("sb1", true, 0)];
    let cases = vec![
        (
            "nothing yet",
            pod("Always", &["a"]),
            observed(vec![], vec![]),
            none.clone(),
            "Pending",
            "waiting:ContainerCreating restarts:0 ready:false",
        ),
        (
            "running",
            pod("Always", &["a"]),
            observed(sb(), vec![ctr("c1", "sb1", "a", 0, Running, 0)]),
            none.clone(),
            "Running",
            "running restarts:0 ready:true",
        ),
        (
            "image pull failed",
            pod("Always", &["a"]),
            observed(sb(), vec![]),
            waiting("a", "ErrImagePull", "no registry"),
            "Pending",
            "waiting:ErrImagePull restarts:0 ready:false",
        ),
        (
            "crash loop",
            pod("Always", &["a"]),
            observed(sb(), vec![ctr("c1", "sb1", "a", 3, Exited, 2)]),
            waiting("a", "CrashLoopBackOff", "back-off 40s"),
            "Running",
            "waiting:CrashLoopBackOff last:2 restarts:3 ready:false",
        ),
        (
            "restarted and running shows the previous exit",
            pod("Always", &["a"]),
            observed(
                sb(),
                vec![
                    ctr("c1", "sb1", "a", 0, Exited, 1),
                    ctr("c2", "sb1", "a", 1, Running, 0),
                ],
            ),
            none.clone(),
            "Running",
            "running last:1 restarts:1 ready:true",
        ),
        (
            "Never, success",
            pod("Never", &["a"]),
            observed(sb(), vec![ctr("c1", "sb1", "a", 0, Exited, 0)]),
            none.clone(),
            "Succeeded",
            "terminated:0 restarts:0 ready:false",
        ),
        (
            "Never, failure",
            pod("Never", &["a"]),
            observed(sb(), vec![ctr("c1", "sb1", "a", 0, Exited, 1)]),
            none.clone(),
            "Failed",
            "terminated:1 restarts:0 ready:false",
        ),
        (
            "OnFailure, success",
            pod("OnFailure", &["a"]),
            observed(sb(), vec![ctr("c1", "sb1", "a", 0, Exited, 0)]),
            none.clone(),
            "Succeeded",
            "terminated:0 restarts:0 ready:false",
        ),
        (
            "one running, one waiting for its image",
            pod("Always", &["a", "b"]),
            observed(sb(), vec![ctr("c1", "sb1", "a", 0, Running, 0)]),
            waiting("b", "ImagePullBackOff", "Back-off pulling image"),
            "Pending",
            "running restarts:0 ready:true",
        ),
    ];
    for (name, p, obs, w, phase, first) in cases {
        let s = compute(&p, &obs, &w);
        assert_eq!(s.phase.as_deref(), Some(phase), "{name}: phase");
        let statuses = s.container_statuses.clone().unwrap();
        assert_eq!(summary(&statuses[0]), first, "{name}: container");
        let ready = s
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        let all_ready = statuses.iter().all(|c| c.ready);
        assert_eq!(
            ready.status,
            if all_ready { "True" } else { "False" },
            "{name}: Ready"
        );
    }
}

#[test]
fn running_status_fields() {
    let p = pod("Always", &["a"]);
    let obs = observed(
        vec![sandbox("sb1", true, 0)],
        vec![ctr("c1", "sb1", "a", 0, RunState::Running, 0)],
    );
    let s = compute(&p, &obs, &HashMap::new());
    assert_eq!(s.pod_ip.as_deref(), Some("10.42.0.5"));
    assert_eq!(s.pod_ips.unwrap()[0].ip, "10.42.0.5");
    assert_eq!(s.host_ip.as_deref(), Some("192.0.2.10"));
    assert!(s.start_time.is_some());
    let c = &s.container_statuses.unwrap()[0];
    assert_eq!(c.container_id.as_deref(), Some("containerd://c1"));
    assert_eq!(c.image, "skiff.local/busybox:1");
    assert_eq!(c.image_id, "sha256:abc");
    assert_eq!(c.started, Some(true));
    let running = c.state.clone().unwrap().running.unwrap();
    assert_eq!(
        running.started_at,
        Some(Time(Timestamp::from_second(1).unwrap()))
    );
    let types: Vec<_> = s
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| (c.type_, c.status))
        .collect();
    assert_eq!(
        types,
        [
            ("Initialized", "True"),
            ("Ready", "True"),
            ("ContainersReady", "True"),
            ("PodScheduled", "True")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
}

#[test]
fn stable_fields_are_kept_from_the_previous_status() {
    let mut p = pod("Always", &["a"]);
    let obs = observed(
        vec![sandbox("sb1", true, 0)],
        vec![ctr("c1", "sb1", "a", 0, RunState::Running, 0)],
    );
    let first = compute(&p, &obs, &HashMap::new());
    p.status = Some(first.clone());
    // Later, same state: identical status (so no write), even with a new clock.
    let later = compute_status(&StatusInput {
        pod: &p,
        observed: &obs,
        waiting: &HashMap::new(),
        host_ip: "192.0.2.10",
        probes: &Default::default(),
        kill_messages: &HashMap::new(),
        now: Timestamp::from_second(1_800_000_000).unwrap(),
    });
    assert_eq!(later, first);

    // The sandbox stopped (pod finished): the IP stays reported.
    let stopped = observed(
        vec![sandbox("sb1", false, 0)],
        vec![ctr("c1", "sb1", "a", 0, RunState::Exited, 0)],
    );
    let s = compute(&p, &stopped, &HashMap::new());
    assert_eq!(s.pod_ip.as_deref(), Some("10.42.0.5"));

    // A terminal phase is final.
    p.status = Some(PodStatus {
        phase: Some("Succeeded".into()),
        ..Default::default()
    });
    let s = compute(&p, &obs, &HashMap::new());
    assert_eq!(s.phase.as_deref(), Some("Succeeded"));
}
