//! [`SlimPod`]: the pod as the controllers cache it — its metadata and only
//! the spec and status fields some controller reads.
//!
//! Every controller shares one pod informer, so its cache holds every pod of
//! the cluster. A k8s-openapi `Pod` is large before it holds a single
//! string (about 2.4 KB inline, 2.3 KB more per container, and a large
//! `Volume` for the `kube-api-access-*` token volume every pod carries), so
//! with 10,000 pods the cache was the biggest part of the server's memory
//! (NOTES.md, issue #4). client-go has the same problem and answers it with
//! informer transforms that strip fields; Rust's structs keep their inline
//! size however many fields are `None`, so here the cache deserializes into
//! a type that has only the fields below, and serde skips the rest of the
//! JSON without allocating it.
//!
//! The field and type names follow k8s-openapi's (`spec.node_name`,
//! `status.container_statuses`, …) so the controllers read a slim pod the
//! way they would read a full one. Who reads what:
//!
//! | field | read by |
//! |---|---|
//! | `metadata` (minus `managedFields`, dropped by the informer) | all |
//! | `spec.nodeName` | replicaset ranking, daemonset, endpoints, nodelifecycle, job, podgc |
//! | `spec.containers[].ports` | endpoints (named `targetPort`s) |
//! | `spec.containers[].resources` | hpa (requests) |
//! | `spec.hostname`, `spec.subdomain` | endpoints (headless Services) |
//! | `spec.tolerations` | nodelifecycle (`tolerationSeconds`) |
//! | `spec.affinity` | daemonset (the `metadata.name` node affinity) |
//! | `status.phase`, `status.conditions` | all (`pod_util`) |
//! | `status.reason` | podgc (evicted pods go first) |
//! | `status.podIP` | endpoints |
//! | `status.startTime` | hpa (cpu initialization period) |
//! | `status.containerStatuses[].restartCount` | replicaset ranking |
//! | `status.containerStatuses[].state.terminated` | job (finish time) |
//!
//! A slim pod is for reading only: it has no `Serialize`, so it cannot be
//! sent back to the API server, where a PUT would wipe every field it lacks.
//! Controllers write pods by PATCH (ownerReferences, conditions), build
//! new ones whole from templates (`k8s_openapi` `Pod`), or delete them.
//! `skiff_client::impl_slim_pod!` makes it a `kube::Resource` (core/v1
//! `pods`) and converts full pods to it (tests and fixtures build those).
//! The ResourceQuota controller lists full pods live: its usage rules are
//! the API server's admission ones (`skiff_api::quota`), which read every
//! container, init container and the overhead.

use k8s_openapi::api::core::v1::{Affinity, ContainerStateTerminated, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::Deserialize;
use skiff_client::slim_pod::null_as_default;
pub use skiff_client::slim_pod::SlimContainer;

/// A pod with the fields the controllers read (the module doc lists them).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct SlimPod {
    /// The pod's metadata, as the API server sent it.
    #[serde(
        default,
        deserialize_with = "skiff_client::slim_pod::meta_without_managed_fields"
    )]
    pub metadata: ObjectMeta,
    /// The part of `spec` the controllers read.
    pub spec: Option<SlimPodSpec>,
    /// The part of `status` the controllers read.
    pub status: Option<SlimPodStatus>,
}

/// `PodSpec`, cut down.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SlimPodSpec {
    /// The node the pod is bound to.
    pub node_name: Option<String>,
    /// The app containers (not the init containers: no cached read needs
    /// them).
    #[serde(default, deserialize_with = "null_as_default")]
    pub containers: Vec<SlimContainer>,
    /// `spec.hostname` (a StatefulSet pod's name).
    pub hostname: Option<String>,
    /// `spec.subdomain` (a StatefulSet's headless Service).
    pub subdomain: Option<String>,
    /// The tolerations, for `NoExecute` taint eviction.
    pub tolerations: Option<Vec<Toleration>>,
    /// Boxed: most pods have none, and `Affinity` is large inline.
    pub affinity: Option<Box<Affinity>>,
}

/// `PodStatus`, cut down.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SlimPodStatus {
    /// `Pending`, `Running`, `Succeeded`, `Failed` or `Unknown`.
    pub phase: Option<String>,
    /// Why the pod is in its phase (`Evicted`, …).
    pub reason: Option<String>,
    /// The conditions (`Ready` is the one controllers look at).
    pub conditions: Option<Vec<SlimPodCondition>>,
    /// The pod's primary IP.
    #[serde(rename = "podIP")]
    pub pod_ip: Option<String>,
    /// When the agent acknowledged the pod.
    pub start_time: Option<Time>,
    /// One per app container.
    pub container_statuses: Option<Vec<SlimContainerStatus>>,
}

/// `PodCondition` without the reason, message and probe time, which no
/// controller reads.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SlimPodCondition {
    /// The condition's type (`Ready`, `PodScheduled`, …).
    #[serde(rename = "type", default)]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    #[serde(default)]
    pub status: String,
    /// When `status` last changed.
    pub last_transition_time: Option<Time>,
}

/// `ContainerStatus`, cut down.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SlimContainerStatus {
    /// The container's name.
    #[serde(default)]
    pub name: String,
    /// How often the container restarted.
    #[serde(default)]
    pub restart_count: i32,
    /// The container's current state, if it terminated.
    pub state: Option<SlimContainerState>,
}

/// `ContainerState` with only `terminated` (the Job controller's finish
/// time of a pod).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct SlimContainerState {
    /// Set once the container exited.
    pub terminated: Option<ContainerStateTerminated>,
}

skiff_client::impl_slim_pod!(SlimPod);
