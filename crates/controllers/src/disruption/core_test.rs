//! Table-driven tests of the budget status computation.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use k8s_openapi::api::policy::v1::{
    PodDisruptionBudget, PodDisruptionBudgetSpec, PodDisruptionBudgetStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::core::{reconcile, Input, ScaleSource, DELETION_TIMEOUT_MS};
use crate::clock::time;
use crate::slim_pod::SlimPod;

const NOW: i64 = 1_800_000_000_000;

fn pod(name: &str, ready: bool, owner: Option<&str>) -> SlimPod {
    SlimPod::from(Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            owner_references: owner.map(|uid| {
                vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: format!("rs-{uid}"),
                    uid: uid.into(),
                    controller: Some(true),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        status: Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn budget(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some("pdb".into()),
            namespace: Some("default".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            min_available: min,
            max_unavailable: max,
            ..Default::default()
        }),
        status: None,
    }
}

/// Every ReplicaSet `rs-<uid>` has 4 replicas.
fn four(r: &OwnerReference) -> Option<ScaleSource> {
    Some(ScaleSource {
        uid: r.uid.clone(),
        replicas: 4,
    })
}

fn status_of(pdb: &PodDisruptionBudget, pods: &[SlimPod]) -> PodDisruptionBudgetStatus {
    let refs: Vec<&SlimPod> = pods.iter().collect();
    reconcile(&Input {
        pdb,
        pods: &refs,
        scale: &four,
        now_ms: NOW,
    })
    .status
    .expect("a first reconcile writes a status")
}

#[test]
fn budgets_by_kind_of_bound() {
    let pods = vec![
        pod("a", true, Some("u1")),
        pod("b", true, Some("u1")),
        pod("c", true, Some("u1")),
        pod("d", false, Some("u1")),
    ];
    // (minAvailable, maxUnavailable) -> (expected, desired, healthy, allowed)
    let cases = [
        (Some(IntOrString::Int(2)), None, (4, 2, 3, 1)),
        (Some(IntOrString::Int(3)), None, (4, 3, 3, 0)),
        (Some(IntOrString::String("50%".into())), None, (4, 2, 3, 1)),
        (Some(IntOrString::String("51%".into())), None, (4, 3, 3, 0)),
        (None, Some(IntOrString::Int(1)), (4, 3, 3, 0)),
        (None, Some(IntOrString::Int(2)), (4, 2, 3, 1)),
        (None, Some(IntOrString::String("25%".into())), (4, 3, 3, 0)),
        (None, Some(IntOrString::String("100%".into())), (4, 0, 3, 3)),
    ];
    for (min, max, (expected, desired, healthy, allowed)) in cases {
        let s = status_of(&budget(min.clone(), max.clone()), &pods);
        assert_eq!(
            (
                s.expected_pods,
                s.desired_healthy,
                s.current_healthy,
                s.disruptions_allowed
            ),
            (Some(expected), Some(desired), Some(healthy), Some(allowed)),
            "min {min:?} max {max:?}"
        );
        let c = &s.conditions.as_ref().unwrap()[0];
        assert_eq!(c.type_, "DisruptionAllowed");
        assert_eq!(c.status, if allowed > 0 { "True" } else { "False" });
        assert_eq!(s.observed_generation, Some(1));
    }
}

#[test]
fn a_controller_counts_once_across_its_pods() {
    let pods = vec![pod("a", true, Some("u1")), pod("b", true, Some("u2"))];
    let s = status_of(&budget(None, Some(IntOrString::Int(1))), &pods);
    assert_eq!(s.expected_pods, Some(8));
    let same = vec![pod("a", true, Some("u1")), pod("b", true, Some("u1"))];
    let s = status_of(&budget(None, Some(IntOrString::Int(1))), &same);
    assert_eq!(s.expected_pods, Some(4));
}

#[test]
fn percentages_need_controllers() {
    let pods = vec![pod("bare", true, None)];
    let pdb = budget(None, Some(IntOrString::Int(1)));
    let refs: Vec<&SlimPod> = pods.iter().collect();
    let plan = reconcile(&Input {
        pdb: &pdb,
        pods: &refs,
        scale: &four,
        now_ms: NOW,
    });
    let w = plan.warning.expect("a warning");
    assert_eq!(w.reason, "NoControllerRef");
    assert_eq!(w.message, "found no controller ref for pod \"bare\"");
    let s = plan.status.unwrap();
    assert_eq!(s.disruptions_allowed, Some(0));
    assert_eq!(s.conditions.unwrap()[0].reason, "SyncFailed");
    // An integer minAvailable counts the pods themselves.
    let s = status_of(&budget(Some(IntOrString::Int(0)), None), &pods);
    assert_eq!((s.expected_pods, s.disruptions_allowed), (Some(1), Some(1)));
}

#[test]
fn evicted_pods_stay_out_of_the_healthy_count_until_they_go() {
    let pods = [
        pod("a", true, Some("u1")),
        pod("b", true, Some("u1")),
        pod("c", true, Some("u1")),
    ];
    let mut pdb = budget(Some(IntOrString::Int(1)), None);
    pdb.status = Some(PodDisruptionBudgetStatus {
        disrupted_pods: Some(BTreeMap::from([
            ("a".to_string(), time(NOW - 1_000)),
            ("b".to_string(), time(NOW - DELETION_TIMEOUT_MS - 1)),
            ("gone".to_string(), time(NOW - 1_000)),
        ])),
        ..Default::default()
    });
    let refs: Vec<&SlimPod> = pods.iter().collect();
    let plan = reconcile(&Input {
        pdb: &pdb,
        pods: &refs,
        scale: &four,
        now_ms: NOW,
    });
    let s = plan.status.unwrap();
    // a: recently evicted, not yet deleting; b: its eviction expired; the
    // pod "gone" no longer exists.
    assert_eq!(s.current_healthy, Some(2));
    assert_eq!(s.disruptions_allowed, Some(1));
    let kept: Vec<&String> = s.disrupted_pods.as_ref().unwrap().keys().collect();
    assert_eq!(kept, ["a"]);
    assert_eq!(plan.requeue_after_ms, Some(DELETION_TIMEOUT_MS - 1_000));
}

#[test]
fn terminating_pods_are_not_healthy_and_an_unchanged_status_is_not_written() {
    let mut going = pod("a", true, Some("u1"));
    going.metadata.deletion_timestamp = Some(time(NOW));
    let pods = vec![going, pod("b", true, Some("u1"))];
    let mut pdb = budget(Some(IntOrString::Int(1)), None);
    let s = status_of(&pdb, &pods);
    assert_eq!(
        (s.current_healthy, s.disruptions_allowed),
        (Some(1), Some(0))
    );
    pdb.status = Some(s);
    let refs: Vec<&SlimPod> = pods.iter().collect();
    let again = reconcile(&Input {
        pdb: &pdb,
        pods: &refs,
        scale: &four,
        now_ms: NOW + 5_000,
    });
    assert_eq!(again.status, None, "nothing changed");
}
