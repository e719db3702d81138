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
//! | `spec.nodeName` | replicaset ranking, daemonset, endpoints, nodelifecycle, job |
//! | `spec.containers[].ports` | endpoints (named `targetPort`s) |
//! | `spec.containers[].resources` | hpa (requests) |
//! | `spec.hostname`, `spec.subdomain` | endpoints (headless Services) |
//! | `spec.tolerations` | nodelifecycle (`tolerationSeconds`) |
//! | `spec.affinity` | daemonset (the `metadata.name` node affinity) |
//! | `status.phase`, `status.conditions` | all (`pod_util`) |
//! | `status.podIP` | endpoints |
//! | `status.startTime` | hpa (cpu initialization period) |
//! | `status.containerStatuses[].restartCount` | replicaset ranking |
//! | `status.containerStatuses[].state.terminated` | job (finish time) |
//!
//! A slim pod is for reading only: it has no `Serialize`, so it cannot be
//! sent back to the API server, where a PUT would wipe every field it lacks.
//! Controllers write pods by PATCH (ownerReferences, conditions), build
//! new ones whole from templates (`k8s_openapi` `Pod`), or delete them.
//! The ResourceQuota controller lists full pods live: its usage rules are
//! the API server's admission ones (`skiff_api::quota`), which read every
//! container, init container and the overhead.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::{
    Affinity, ContainerPort, ContainerStateTerminated, Pod, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Resource;
use serde::{Deserialize, Deserializer};

/// A pod with the fields the controllers read (the module doc lists them).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct SlimPod {
    /// The pod's metadata, as the API server sent it.
    #[serde(default)]
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

/// `Container`, cut down to what Services and the HPA need.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct SlimContainer {
    /// The container's name (HPA errors name it).
    #[serde(default)]
    pub name: String,
    /// The ports it declares (named `targetPort`s resolve against them).
    pub ports: Option<Vec<ContainerPort>>,
    /// Its requests and limits.
    pub resources: Option<ResourceRequirements>,
}

/// `PodStatus`, cut down.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SlimPodStatus {
    /// `Pending`, `Running`, `Succeeded`, `Failed` or `Unknown`.
    pub phase: Option<String>,
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

/// `null` where a list is expected reads as an empty list, as with
/// k8s-openapi's types.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl Resource for SlimPod {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        <Pod as k8s_openapi::Resource>::KIND.into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        <Pod as k8s_openapi::Resource>::GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        <Pod as k8s_openapi::Resource>::VERSION.into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        <Pod as k8s_openapi::Resource>::URL_PATH_SEGMENT.into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl From<&Pod> for SlimPod {
    /// The slim view of a full pod, through JSON as the informer makes it
    /// (tests and fixtures build full pods). It cannot fail: every field of
    /// a slim pod has the type of the same field of a `Pod`.
    fn from(pod: &Pod) -> SlimPod {
        let json = serde_json::to_value(pod).expect("a Pod serializes to JSON");
        serde_json::from_value(json).expect("a Pod's JSON reads as a SlimPod")
    }
}

impl From<Pod> for SlimPod {
    fn from(pod: Pod) -> SlimPod {
        SlimPod::from(&pod)
    }
}
