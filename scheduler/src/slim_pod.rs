//! [`SlimPod`]: the pod as the scheduler watches it — metadata and only the
//! spec and status fields [`snapshot`](crate::snapshot) and
//! [`volumes`](crate::volumes) turn into the core's types.
//!
//! The loop keeps every pending pod until it is bound (`run.rs`,
//! `State::pending`), so with many unschedulable pods the scheduler holds
//! all of them. A k8s-openapi `Pod` is about 2.4 KB inline plus 2.3 KB per
//! container and a large `Volume` per volume (every pod has the
//! `kube-api-access-*` token volume) before any string; this type is a
//! fraction of that, and serde skips the rest of each event's JSON without
//! building it. The controllers cache their own cut
//! (`skiff_controllers::slim_pod`): they read other fields.
//!
//! Field and type names follow k8s-openapi's, so the conversions read as
//! they would on a full pod. A slim pod is never written back (it has no
//! `Serialize`): the scheduler binds through `pods/binding`, patches status
//! and deletes victims (`actions.rs`). `skiff_client::impl_slim_pod!` makes
//! it a `kube::Resource` (core/v1 `pods`) and converts full pods to it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, PersistentVolumeClaimVolumeSource, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use skiff_client::slim_pod::null_as_default;
pub use skiff_client::slim_pod::SlimContainer;

/// A pod with the fields the scheduler reads.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct SlimPod {
    /// The pod's metadata (labels, namespace, uid, deletion, creation time).
    #[serde(
        default,
        deserialize_with = "skiff_client::slim_pod::meta_without_managed_fields"
    )]
    pub metadata: ObjectMeta,
    /// The part of `spec` that decides where the pod fits.
    pub spec: Option<SlimPodSpec>,
    /// The part of `status` the scheduler reads.
    pub status: Option<SlimPodStatus>,
}

/// `PodSpec`, cut down to what Filter, Score and Preempt read.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SlimPodSpec {
    /// Set once bound.
    pub node_name: Option<String>,
    /// Which scheduler places the pod.
    pub scheduler_name: Option<String>,
    /// App containers: requests and host ports.
    #[serde(default, deserialize_with = "null_as_default")]
    pub containers: Vec<SlimContainer>,
    /// Init containers: requests and host ports.
    pub init_containers: Option<Vec<SlimContainer>>,
    /// RuntimeClass overhead, added to the requests.
    pub overhead: Option<BTreeMap<String, Quantity>>,
    /// NodeAffinity's `nodeSelector`.
    pub node_selector: Option<BTreeMap<String, String>>,
    /// TaintToleration.
    pub tolerations: Option<Vec<Toleration>>,
    /// Node and inter-pod (anti-)affinity; boxed: most pods have none, and
    /// `Affinity` is large inline.
    pub affinity: Option<Box<Affinity>>,
    /// PodTopologySpread.
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// The priority the API server's Priority admission resolved.
    pub priority: Option<i32>,
    /// The PriorityClass, when `priority` is unset.
    pub priority_class_name: Option<String>,
    /// `Never` keeps the pod from preempting.
    pub preemption_policy: Option<String>,
    /// Volumes, for their claims (VolumeBinding).
    pub volumes: Option<Vec<SlimVolume>>,
}

/// `Volume`, cut down to its claim.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SlimVolume {
    /// The volume's name.
    #[serde(default)]
    pub name: String,
    /// The claim it mounts, if it is a `persistentVolumeClaim` volume.
    pub persistent_volume_claim: Option<PersistentVolumeClaimVolumeSource>,
}

/// `PodStatus`, cut down to the phase.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct SlimPodStatus {
    /// A Succeeded or Failed pod no longer holds its node's resources.
    pub phase: Option<String>,
}

skiff_client::impl_slim_pod!(SlimPod);

#[cfg(test)]
#[path = "slim_pod_test.rs"]
mod tests;
