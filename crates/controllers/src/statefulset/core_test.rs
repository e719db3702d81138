use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetSpec, StatefulSetStatus, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::core::{reconcile, Input, Plan, Revision};
use super::identity::{claim_name, new_pod, ordinal_of, POD_INDEX_LABEL, POD_NAME_LABEL};
use crate::revision::CONTROLLER_REVISION_HASH_LABEL;
use crate::slim_pod::SlimPod;
use crate::test_fixtures::{
    labels, pod as fixture_pod, template, time, PodState, NOW_MS, RUNNING_READY,
};

const PENDING: PodState = PodState {
    node: Some("n1"),
    phase: "Pending",
    ready_for_s: None,
    created_s_ago: 1,
    restarts: 0,
};

fn sts(replicas: i32) -> StatefulSet {
    StatefulSet {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("uid-web".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some("nginx".into()),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            },
            template: template("busybox:2"),
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("data".into()),
                    ..Default::default()
                },
                ..Default::default()
            }]),
            ..Default::default()
        },
        status: None,
    }
}

fn parallel(mut s: StatefulSet) -> StatefulSet {
    s.spec.pod_management_policy = Some("Parallel".into());
    s
}

fn strategy(mut s: StatefulSet, type_: &str, partition: Option<i32>) -> StatefulSet {
    s.spec.update_strategy = Some(StatefulSetUpdateStrategy {
        type_: Some(type_.into()),
        rolling_update: partition.map(|p| RollingUpdateStatefulSetStrategy {
            partition: Some(p),
            max_unavailable: None,
        }),
    });
    s
}

/// Pod `ordinal` of `web` at revision `rev` in state `st`.
fn pod(ordinal: i32, rev: &str, st: PodState) -> SlimPod {
    let mut p = fixture_pod(&format!("web-{ordinal}"), Some("web"), st);
    p.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(CONTROLLER_REVISION_HASH_LABEL.into(), rev.into());
    p
}

fn terminating(mut p: SlimPod) -> SlimPod {
    p.metadata.deletion_timestamp = Some(time(NOW_MS));
    p
}

fn claims(ordinals: &[i32]) -> BTreeSet<String> {
    ordinals
        .iter()
        .map(|o| claim_name("data", "web", *o))
        .collect()
}

fn run(s: &StatefulSet, pods: &[SlimPod], existing: &BTreeSet<String>) -> Plan {
    let a = template("busybox:1");
    let refs: Vec<&SlimPod> = pods.iter().collect();
    reconcile(&Input {
        sts: s,
        pods: &refs,
        claims: existing,
        current: Revision {
            name: "web-a",
            template: &a,
        },
        update: Revision {
            name: "web-b",
            template: &s.spec.template,
        },
        may_manage: true,
        now_ms: NOW_MS,
    })
}

fn created(plan: &Plan) -> Vec<String> {
    plan.create
        .iter()
        .map(|p| {
            let rev = &p.metadata.labels.as_ref().unwrap()[CONTROLLER_REVISION_HASH_LABEL];
            format!("{}@{rev}", p.metadata.name.clone().unwrap())
        })
        .collect()
}

fn deleted(plan: &Plan) -> Vec<&str> {
    plan.delete.iter().map(|p| p.name.as_str()).collect()
}

fn claims_created(plan: &Plan) -> Vec<&str> {
    plan.create_claims
        .iter()
        .map(|c| c.metadata.name.as_deref().unwrap())
        .collect()
}

#[test]
fn ordered_ready_creates_one_pod_at_a_time_after_its_claim() {
    let s = sts(3);
    let plan = run(&s, &[], &claims(&[]));
    assert_eq!(claims_created(&plan), ["data-web-0"]);
    assert_eq!(created(&plan), ["web-0@web-b"]);

    // web-0 exists but is not ready yet: nothing more.
    let plan = run(&s, &[pod(0, "web-b", PENDING)], &claims(&[0]));
    assert!(plan.create.is_empty() && plan.create_claims.is_empty());

    // web-0 Running and Ready: web-1 next, and only web-1.
    let plan = run(&s, &[pod(0, "web-b", RUNNING_READY)], &claims(&[0]));
    assert_eq!(claims_created(&plan), ["data-web-1"]);
    assert_eq!(created(&plan), ["web-1@web-b"]);
}

#[test]
fn parallel_creates_every_pod_at_once() {
    let plan = run(
        &parallel(sts(3)),
        &[pod(1, "web-b", PENDING)],
        &claims(&[1]),
    );
    assert_eq!(claims_created(&plan), ["data-web-0", "data-web-2"]);
    assert_eq!(created(&plan), ["web-0@web-b", "web-2@web-b"]);
}

#[test]
fn a_deleted_pod_comes_back_with_the_same_name_and_claim() {
    let s = sts(2);
    let plan = run(&s, &[pod(1, "web-b", RUNNING_READY)], &claims(&[0, 1]));
    assert!(plan.create_claims.is_empty(), "the claim is kept");
    assert_eq!(created(&plan), ["web-0@web-b"]);
    // Still terminating: the name is taken, wait.
    let pods = [
        terminating(pod(0, "web-b", RUNNING_READY)),
        pod(1, "web-b", RUNNING_READY),
    ];
    let plan = run(&s, &pods, &claims(&[0, 1]));
    assert!(plan.create.is_empty() && plan.delete.is_empty());
}

#[test]
fn scale_down_deletes_the_highest_ordinal_first_and_keeps_claims() {
    let s = sts(1);
    let all = |st2: PodState| {
        vec![
            pod(0, "web-b", RUNNING_READY),
            pod(1, "web-b", RUNNING_READY),
            pod(2, "web-b", st2),
        ]
    };
    let plan = run(&s, &all(RUNNING_READY), &claims(&[0, 1, 2]));
    assert_eq!(deleted(&plan), ["web-2"]);
    assert!(plan.delete_claims.is_empty(), "Retain is the default");
    // web-2 still terminating: web-1 waits.
    let mut pods = all(RUNNING_READY);
    pods[2] = terminating(pods[2].clone());
    assert!(run(&s, &pods, &claims(&[0, 1, 2])).delete.is_empty());
    // Parallel: both at once.
    let plan = run(&parallel(s), &all(RUNNING_READY), &claims(&[0, 1, 2]));
    assert_eq!(deleted(&plan), ["web-2", "web-1"]);
}

#[test]
fn ordered_scale_down_waits_for_unhealthy_pods() {
    let pods = [pod(0, "web-b", PENDING), pod(1, "web-b", RUNNING_READY)];
    assert!(run(&sts(1), &pods, &claims(&[0, 1])).delete.is_empty());
}

#[test]
fn when_scaled_delete_removes_claims_of_pods_that_are_gone() {
    let mut s = sts(1);
    s.spec.persistent_volume_claim_retention_policy =
        Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
            when_deleted: None,
            when_scaled: Some("Delete".into()),
        });
    let pods = [
        pod(0, "web-b", RUNNING_READY),
        pod(1, "web-b", RUNNING_READY),
    ];
    let plan = run(&s, &pods, &claims(&[0, 1, 2]));
    assert_eq!(deleted(&plan), ["web-1"]);
    assert!(
        plan.delete_claims.is_empty(),
        "monotonic: one step at a time"
    );
    let plan = run(&s, &pods[..1], &claims(&[0, 1, 2]));
    assert_eq!(plan.delete_claims, ["data-web-1", "data-web-2"]);
}

#[test]
fn rolling_update_goes_from_the_highest_ordinal_down_to_the_partition() {
    let s = strategy(sts(3), "RollingUpdate", Some(1));
    let at = |revs: [&str; 3]| -> Vec<SlimPod> {
        revs.iter()
            .enumerate()
            .map(|(i, r)| pod(i32::try_from(i).unwrap(), r, RUNNING_READY))
            .collect()
    };
    let cl = claims(&[0, 1, 2]);
    assert_eq!(deleted(&run(&s, &at(["web-a"; 3]), &cl)), ["web-2"]);
    assert_eq!(
        deleted(&run(&s, &at(["web-a", "web-a", "web-b"]), &cl)),
        ["web-1"]
    );
    // Below the partition nothing is touched.
    let plan = run(&s, &at(["web-a", "web-b", "web-b"]), &cl);
    assert!(plan.delete.is_empty());
    // The replacement of a deleted pod below the partition is current.
    let pods = at(["web-a", "web-b", "web-b"]);
    assert_eq!(created(&run(&s, &pods[1..], &cl)), ["web-0@web-a"]);
    // Wait while the new web-2 is not ready.
    let mut pods = at(["web-a", "web-a", "web-b"]);
    pods[2] = pod(2, "web-b", PENDING);
    assert!(run(&s, &pods, &cl).delete.is_empty());
}

#[test]
fn max_unavailable_replaces_several_pods_at_once() {
    let mut s = strategy(sts(3), "RollingUpdate", None);
    s.spec.update_strategy.as_mut().unwrap().rolling_update =
        Some(RollingUpdateStatefulSetStrategy {
            partition: None,
            max_unavailable: Some(
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(2),
            ),
        });
    let s = parallel(s);
    let pods: Vec<SlimPod> = (0..3).map(|i| pod(i, "web-a", RUNNING_READY)).collect();
    assert_eq!(
        deleted(&run(&s, &pods, &claims(&[0, 1, 2]))),
        ["web-2", "web-1"]
    );
}

#[test]
fn on_delete_replaces_only_pods_someone_deleted() {
    let s = strategy(sts(2), "OnDelete", None);
    let pods = [
        pod(0, "web-a", RUNNING_READY),
        pod(1, "web-a", RUNNING_READY),
    ];
    assert!(run(&s, &pods, &claims(&[0, 1])).delete.is_empty());
    assert_eq!(
        created(&run(&s, &pods[1..], &claims(&[0, 1]))),
        ["web-0@web-b"]
    );
}

#[test]
fn failed_pods_are_deleted_to_be_recreated() {
    let failed = PodState {
        phase: "Failed",
        ready_for_s: None,
        ..RUNNING_READY
    };
    let plan = run(&sts(2), &[pod(0, "web-b", failed)], &claims(&[0]));
    assert_eq!(deleted(&plan), ["web-0"]);
    assert!(plan.create.is_empty(), "web-1 waits for web-0");
}

#[test]
fn status_counts_revisions_and_completes_the_rollout() {
    let mut s = sts(2);
    s.metadata.generation = Some(4);
    let pods = [pod(0, "web-a", RUNNING_READY), pod(1, "web-b", PENDING)];
    let st = run(&s, &pods, &claims(&[0, 1])).status.unwrap();
    assert_eq!(
        (
            st.replicas,
            st.ready_replicas,
            st.current_replicas,
            st.updated_replicas,
            st.available_replicas,
            st.observed_generation
        ),
        (2, Some(1), Some(1), Some(1), Some(1), Some(4))
    );
    assert_eq!(st.current_revision.as_deref(), Some("web-a"));
    assert_eq!(st.update_revision.as_deref(), Some("web-b"));
    // All updated and ready: the update revision becomes current.
    let pods = [
        pod(0, "web-b", RUNNING_READY),
        pod(1, "web-b", RUNNING_READY),
    ];
    let st = run(&s, &pods, &claims(&[0, 1])).status.unwrap();
    assert_eq!(st.current_revision.as_deref(), Some("web-b"));
    assert_eq!(st.current_replicas, Some(2));
    // Unchanged status: nothing to write.
    s.status = Some(StatefulSetStatus { ..st });
    assert_eq!(run(&s, &pods, &claims(&[0, 1])).status, None);
}

#[test]
fn pods_carry_identity_labels_hostname_subdomain_and_claims() {
    let s = sts(1);
    let t: PodTemplateSpec = s.spec.template.clone();
    let p = new_pod(&s, &t, 3, "web-b");
    let spec = p.spec.unwrap();
    assert_eq!(p.metadata.name.as_deref(), Some("web-3"));
    assert_eq!(spec.hostname.as_deref(), Some("web-3"));
    assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
    let l = p.metadata.labels.unwrap();
    assert_eq!(l[POD_NAME_LABEL], "web-3");
    assert_eq!(l[POD_INDEX_LABEL], "3");
    assert_eq!(l["app"], "web");
    let v = &spec.volumes.unwrap()[0];
    assert_eq!(v.name, "data");
    assert_eq!(
        v.persistent_volume_claim.as_ref().unwrap().claim_name,
        "data-web-3"
    );
    let owner = &p.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("StatefulSet", Some(true))
    );
}

#[test]
fn ordinals_parse_only_from_the_exact_name_shape() {
    for (name, want) in [
        ("web-0", Some(0)),
        ("web-12", Some(12)),
        ("web-012", None),
        ("web-", None),
        ("web-x", None),
        ("webx-1", None),
        ("web-1-2", None),
    ] {
        assert_eq!(ordinal_of("web", name), want, "{name}");
    }
}

#[test]
fn claims_are_owned_by_the_statefulset_only_when_deleted_with_it() {
    use super::identity::claims_for;
    let mut s = sts(1);
    let c = &claims_for(&s, 2)[0];
    assert_eq!(c.metadata.name.as_deref(), Some("data-web-2"));
    assert_eq!(c.metadata.labels.as_ref().unwrap()["app"], "web");
    assert!(c.metadata.owner_references.is_none(), "Retain: no owner");
    s.spec.persistent_volume_claim_retention_policy =
        Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
            when_deleted: Some("Delete".into()),
            when_scaled: None,
        });
    let c = &claims_for(&s, 2)[0];
    let owner = &c.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("StatefulSet", "uid-web", Some(false))
    );
}
