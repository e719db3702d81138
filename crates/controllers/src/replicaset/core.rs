//! The ReplicaSet controller's decision, as a pure function: the
//! ReplicaSet, the pods of its namespace and the clock in; claims, pod
//! creations and deletions, and the new status out
//! (`pkg/controller/replicaset/replica_set.go`, `syncReplicaSet` and
//! `manageReplicas`, and `replica_set_utils.go`, `calculateStatus`).

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::owner::{claim, new_controller_ref, Claim};
use crate::pod_util::{is_active, is_available, is_ready, millis_until_available};
use crate::replicaset::ranking::deletion_order;
use crate::selector;
use crate::slim_pod::SlimPod;

/// Most pods one reconcile creates or deletes (Kubernetes' `BurstReplicas`).
pub const BURST_REPLICAS: i32 = 500;

/// A pod, by name and uid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    /// Pod name.
    pub name: String,
    /// Pod uid (a delete precondition, so a newer pod of the same name
    /// is never deleted by mistake).
    pub uid: String,
}

impl PodRef {
    fn of(pod: &SlimPod) -> PodRef {
        PodRef {
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        }
    }
}

/// What the ReplicaSet controller decided for one ReplicaSet.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Pods to adopt (add our controller reference).
    pub adopt: Vec<PodRef>,
    /// Pods to release (remove our reference): they no longer match.
    pub release: Vec<PodRef>,
    /// How many pods to create from the template.
    pub create: i32,
    /// Pods to delete, least valuable first.
    pub delete: Vec<PodRef>,
    /// The status to write, if it differs from the current one.
    pub status: Option<ReplicaSetStatus>,
    /// Reconcile again after this many milliseconds (a ready pod becomes
    /// available once `minReadySeconds` pass).
    pub requeue_after_ms: Option<i64>,
}

/// The inputs of one decision.
pub struct Input<'a> {
    /// The ReplicaSet.
    pub rs: &'a ReplicaSet,
    /// Every pod of its namespace (the controller filters).
    pub pods: &'a [&'a SlimPod],
    /// Whether earlier creations/deletions have been observed
    /// ([`crate::expectations`]); if not, only claims and status happen.
    pub may_manage: bool,
    /// The clock, milliseconds since the epoch.
    pub now_ms: i64,
}

/// Decides what to do for one ReplicaSet.
pub fn reconcile(input: &Input<'_>) -> Plan {
    let rs = input.rs;
    let mut plan = Plan::default();
    let spec = &rs.spec;
    let uid = rs.metadata.uid.as_deref().unwrap_or_default();
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let mut owned: Vec<&SlimPod> = Vec::new();
    for pod in input.pods.iter().copied() {
        // Kubernetes claims only active pods (FilterActivePods first).
        if !is_active(pod) {
            continue;
        }
        let selected = selector::matches(&spec.selector, pod.metadata.labels.as_ref());
        match claim(uid, deleting, &pod.metadata, selected) {
            Claim::Owned => owned.push(pod),
            Claim::Adopt => {
                plan.adopt.push(PodRef::of(pod));
                owned.push(pod);
            }
            Claim::Release => plan.release.push(PodRef::of(pod)),
            Claim::Ignore => {}
        }
    }

    // manageReplicas: not while being deleted (the garbage collector
    // handles the pods), and not before earlier actions were observed.
    if input.may_manage && !deleting {
        let want = spec.replicas.unwrap_or(1).max(0);
        let have = i32::try_from(owned.len()).unwrap_or(i32::MAX);
        if have < want {
            plan.create = (want - have).min(BURST_REPLICAS);
        } else if have > want {
            let n = usize::try_from((have - want).min(BURST_REPLICAS)).unwrap_or(0);
            plan.delete = deletion_order(&owned, &owned)
                .into_iter()
                .take(n)
                .map(PodRef::of)
                .collect();
        }
    }

    let status = calculate_status(rs, &owned, input.now_ms);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    plan.requeue_after_ms = owned
        .iter()
        .filter_map(|p| millis_until_available(p, min_ready, input.now_ms))
        .min();
    if rs.status.as_ref() != Some(&status) {
        plan.status = Some(status);
    }
    plan
}

/// The status for the owned active pods (`calculateStatus`).
pub fn calculate_status(rs: &ReplicaSet, owned: &[&SlimPod], now_ms: i64) -> ReplicaSetStatus {
    let spec = &rs.spec;
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.as_ref());
    let count = |f: &dyn Fn(&SlimPod) -> bool| {
        i32::try_from(owned.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let fully_labeled = count(&|p: &SlimPod| {
        template_labels.is_none_or(|want| {
            want.iter()
                .all(|(k, v)| p.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v))
        })
    });
    let previous = rs.status.as_ref();
    ReplicaSetStatus {
        replicas: i32::try_from(owned.len()).unwrap_or(i32::MAX),
        fully_labeled_replicas: Some(fully_labeled),
        ready_replicas: Some(count(&|p: &SlimPod| is_ready(p))),
        available_replicas: Some(count(&|p: &SlimPod| is_available(p, min_ready, now_ms))),
        observed_generation: rs.metadata.generation,
        // ReplicaFailure is set by the I/O side when a create fails.
        conditions: previous.and_then(|s| s.conditions.clone()),
        terminating_replicas: previous.and_then(|s| s.terminating_replicas),
    }
}

/// A pod made from the ReplicaSet's template (`GetPodFromTemplate`): the
/// template's labels, annotations and spec, in the ReplicaSet's namespace,
/// controlled by it.
pub fn pod_from_template(rs: &ReplicaSet, name: &str) -> Pod {
    let template = rs.spec.template.as_ref();
    let tmeta = template.and_then(|t| t.metadata.as_ref());
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: rs.metadata.namespace.clone(),
            labels: tmeta.and_then(|m| m.labels.clone()),
            annotations: tmeta.and_then(|m| m.annotations.clone()),
            finalizers: tmeta.and_then(|m| m.finalizers.clone()),
            owner_references: new_controller_ref("apps/v1", "ReplicaSet", &rs.metadata)
                .map(|r| vec![r]),
            ..Default::default()
        },
        spec: template.and_then(|t| t.spec.clone()),
        status: None,
    }
}
