//! Table-driven tests of the ReplicaSet decision.

use super::core::{calculate_status, pod_from_template, reconcile, Input, BURST_REPLICAS};
use super::ranking::deletion_order;
use crate::slim_pod::SlimPod;
use crate::test_fixtures::*;

fn names(refs: &[super::core::PodRef]) -> Vec<&str> {
    refs.iter().map(|r| r.name.as_str()).collect()
}

#[test]
fn scales_up_down_and_claims() {
    let owned = |n: &str| pod(n, Some("rs"), RUNNING_READY);
    struct Case {
        name: &'static str,
        replicas: i32,
        pods: Vec<SlimPod>,
        may_manage: bool,
        create: i32,
        delete: usize,
        adopt: Vec<&'static str>,
        release: Vec<&'static str>,
    }
    let mut unmatched = owned("drifted");
    unmatched.metadata.labels = Some(labels(&[("app", "other")]));
    let mut foreign = pod("foreign", Some("other-rs"), RUNNING_READY);
    foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "uid-other".into();
    let mut finished = owned("done");
    finished.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let mut terminating = owned("going");
    terminating.metadata.deletion_timestamp = Some(time(NOW_MS));
    let cases = vec![
        Case {
            name: "empty: create all",
            replicas: 3,
            pods: vec![],
            may_manage: true,
            create: 3,
            delete: 0,
            adopt: vec![],
            release: vec![],
        },
        Case {
            name: "steady",
            replicas: 2,
            pods: vec![owned("a"), owned("b")],
            may_manage: true,
            create: 0,
            delete: 0,
            adopt: vec![],
            release: vec![],
        },
        Case {
            name: "too many",
            replicas: 1,
            pods: vec![owned("a"), owned("b"), owned("c")],
            may_manage: true,
            create: 0,
            delete: 2,
            adopt: vec![],
            release: vec![],
        },
        Case {
            name: "expectations pending: no action",
            replicas: 3,
            pods: vec![],
            may_manage: false,
            create: 0,
            delete: 0,
            adopt: vec![],
            release: vec![],
        },
        Case {
            name: "orphan adopted and counted",
            replicas: 2,
            pods: vec![owned("a"), pod("orphan", None, RUNNING_READY)],
            may_manage: true,
            create: 0,
            delete: 0,
            adopt: vec!["orphan"],
            release: vec![],
        },
        Case {
            name: "drifted released and replaced",
            replicas: 1,
            pods: vec![unmatched],
            may_manage: true,
            create: 1,
            delete: 0,
            adopt: vec![],
            release: vec!["drifted"],
        },
        Case {
            name: "foreign pod ignored",
            replicas: 1,
            pods: vec![foreign],
            may_manage: true,
            create: 1,
            delete: 0,
            adopt: vec![],
            release: vec![],
        },
        Case {
            name: "finished and terminating pods replaced",
            replicas: 2,
            pods: vec![finished, terminating],
            may_manage: true,
            create: 2,
            delete: 0,
            adopt: vec![],
            release: vec![],
        },
        Case {
            name: "burst limit",
            replicas: 10_000,
            pods: vec![],
            may_manage: true,
            create: BURST_REPLICAS,
            delete: 0,
            adopt: vec![],
            release: vec![],
        },
    ];
    for c in cases {
        let rs = replicaset("rs", c.replicas);
        let pods: Vec<&SlimPod> = c.pods.iter().collect();
        let plan = reconcile(&Input {
            rs: &rs,
            pods: &pods,
            may_manage: c.may_manage,
            now_ms: NOW_MS,
        });
        assert_eq!(plan.create, c.create, "{}: create", c.name);
        assert_eq!(plan.delete.len(), c.delete, "{}: delete", c.name);
        assert_eq!(names(&plan.adopt), c.adopt, "{}: adopt", c.name);
        assert_eq!(names(&plan.release), c.release, "{}: release", c.name);
    }
}

#[test]
fn deleting_replicaset_neither_scales_nor_adopts() {
    let mut rs = replicaset("rs", 5);
    rs.metadata.deletion_timestamp = Some(time(NOW_MS));
    let orphan = pod("orphan", None, RUNNING_READY);
    let pods = vec![&orphan];
    let plan = reconcile(&Input {
        rs: &rs,
        pods: &pods,
        may_manage: true,
        now_ms: NOW_MS,
    });
    assert_eq!(plan.create, 0);
    assert!(plan.adopt.is_empty());
}

#[test]
fn scale_down_removes_least_valuable_first() {
    let st = RUNNING_READY;
    let pods = [
        pod("old-ready", Some("rs"), st),
        pod(
            "unassigned",
            Some("rs"),
            PodState {
                node: None,
                phase: "Pending",
                ready_for_s: None,
                ..st
            },
        ),
        pod(
            "pending",
            Some("rs"),
            PodState {
                phase: "Pending",
                ready_for_s: None,
                ..st
            },
        ),
        pod(
            "not-ready",
            Some("rs"),
            PodState {
                ready_for_s: None,
                ..st
            },
        ),
        pod(
            "ready-briefly",
            Some("rs"),
            PodState {
                ready_for_s: Some(5),
                ..st
            },
        ),
        pod("restarting", Some("rs"), PodState { restarts: 7, ..st }),
        pod(
            "newer",
            Some("rs"),
            PodState {
                created_s_ago: 650,
                ..st
            },
        ),
        pod(
            "crowded",
            Some("rs"),
            PodState {
                node: Some("n2"),
                ..st
            },
        ),
        pod(
            "crowded-2",
            Some("rs"),
            PodState {
                node: Some("n2"),
                ..st
            },
        ),
    ];
    let refs: Vec<&SlimPod> = pods.iter().collect();
    // n1 holds 7 pods, n2 two: pods on n1 rank as more crowded.
    let order: Vec<&str> = deletion_order(&refs, &refs)
        .iter()
        .map(|p| p.metadata.name.as_deref().unwrap_or_default())
        .collect();
    assert_eq!(
        order,
        [
            "unassigned",
            "pending",
            "not-ready",
            "ready-briefly",
            "restarting",
            "newer",
            "old-ready",
            "crowded",
            "crowded-2"
        ]
    );
}

#[test]
fn status_counts_ready_and_available_with_min_ready_seconds() {
    let mut rs = replicaset("rs", 3);
    rs.spec.min_ready_seconds = Some(30);
    rs.metadata.generation = Some(4);
    let st = RUNNING_READY;
    let mut unlabeled = pod(
        "c",
        Some("rs"),
        PodState {
            ready_for_s: None,
            ..st
        },
    );
    unlabeled
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("app".into(), "web".into());
    unlabeled.metadata.labels = Some(labels(&[("other", "x")]));
    let pods = [
        pod("a", Some("rs"), st),
        pod(
            "b",
            Some("rs"),
            PodState {
                ready_for_s: Some(10),
                ..st
            },
        ),
        unlabeled,
    ];
    let refs: Vec<&SlimPod> = pods.iter().collect();
    let s = calculate_status(&rs, &refs, NOW_MS);
    assert_eq!(s.replicas, 3);
    assert_eq!(s.fully_labeled_replicas, Some(2));
    assert_eq!(s.ready_replicas, Some(2));
    assert_eq!(s.available_replicas, Some(1));
    assert_eq!(s.observed_generation, Some(4));
    // The pod ready for 10 s becomes available in 20 s: requeue then.
    let owned: Vec<&SlimPod> = refs[..2].to_vec();
    let plan = reconcile(&Input {
        rs: &rs,
        pods: &owned,
        may_manage: true,
        now_ms: NOW_MS,
    });
    assert_eq!(plan.requeue_after_ms, Some(20_000));
    assert!(plan.status.is_some());
}

#[test]
fn unchanged_status_is_not_rewritten() {
    let mut rs = replicaset("rs", 1);
    let a = pod("a", Some("rs"), RUNNING_READY);
    let refs = vec![&a];
    rs.status = Some(calculate_status(&rs, &refs, NOW_MS));
    let plan = reconcile(&Input {
        rs: &rs,
        pods: &refs,
        may_manage: true,
        now_ms: NOW_MS,
    });
    assert_eq!(plan.status, None);
}

#[test]
fn pods_from_template_are_controlled_by_the_replicaset() {
    let rs = replicaset("web-abc", 1);
    let p = pod_from_template(&rs, "web-abc-x2z4q");
    let r = &p.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (r.kind.as_str(), r.name.as_str(), r.uid.as_str()),
        ("ReplicaSet", "web-abc", "uid-web-abc")
    );
    assert_eq!(
        (r.controller, r.block_owner_deletion),
        (Some(true), Some(true))
    );
    assert_eq!(p.metadata.labels, Some(labels(&[("app", "web")])));
    assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
}
