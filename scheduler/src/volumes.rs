//! VolumeBinding, reduced to what a cluster of local volumes needs
//! (kube-scheduler's `volumebinding` plugin): the claims a pending pod
//! mounts, looked up in the watched PersistentVolumeClaims, PersistentVolumes
//! and StorageClasses.
//!
//! - A missing claim, or an unbound claim of an `Immediate` class, makes
//!   the pod unschedulable everywhere (PreFilter), with kube-scheduler's
//!   message.
//! - A bound claim's volume node affinity must match the node (Filter:
//!   `volume node affinity conflict`).
//! - An unbound claim of a `WaitForFirstConsumer` class does not constrain
//!   the node; once the pod is placed, the claim gets the
//!   `volume.kubernetes.io/selected-node` annotation before the binding
//!   (PreBind), which tells the provisioner where to make the volume.
//!
//! [`check`] is pure; [`VolumeState`] is the watched objects.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::watcher::Event;

use crate::model::NodeSelectorTerm;
use crate::slim_pod::SlimPod;
use crate::snapshot::node_selector_term;

/// The claim annotation the provisioner reads.
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";

/// The provisioner's built-in class (`skiff_controllers::volume::local_path`).
pub const LOCAL_PATH_CLASS: &str = "local-path";

/// What VolumeBinding says about one pending pod.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Check {
    /// Unschedulable on every node, with this reason.
    pub unschedulable: Option<String>,
    /// Node affinity of the bound volumes (each must match).
    pub affinity: Vec<Vec<NodeSelectorTerm>>,
    /// Claims (`namespace/name`) to annotate with the chosen node.
    pub delayed: Vec<String>,
}

/// The watched claims, volumes and classes' binding modes.
#[derive(Default)]
pub struct VolumeState {
    claims: HashMap<String, PersistentVolumeClaim>,
    volumes: HashMap<String, PersistentVolume>,
    /// Class name → `volumeBindingMode` is `WaitForFirstConsumer`.
    wait_for_consumer: HashMap<String, bool>,
}

fn key(meta: &kube::api::ObjectMeta) -> String {
    match meta.namespace.as_deref() {
        Some(ns) => format!("{ns}/{}", meta.name.as_deref().unwrap_or_default()),
        None => meta.name.clone().unwrap_or_default(),
    }
}

fn apply<K: kube::Resource>(map: &mut HashMap<String, K>, event: Event<K>) {
    match event {
        Event::Apply(o) | Event::InitApply(o) => {
            map.insert(key(o.meta()), o);
        }
        Event::Delete(o) => {
            map.remove(&key(o.meta()));
        }
        Event::Init => map.clear(),
        Event::InitDone => {}
    }
}

impl VolumeState {
    /// A claim event.
    pub fn apply_claim(&mut self, event: Event<PersistentVolumeClaim>) {
        apply(&mut self.claims, event);
    }

    /// A volume event.
    pub fn apply_volume(&mut self, event: Event<PersistentVolume>) {
        apply(&mut self.volumes, event);
    }

    /// A StorageClass event.
    pub fn apply_class(&mut self, event: Event<StorageClass>) {
        let mode =
            |c: &StorageClass| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer");
        match event {
            Event::Apply(c) | Event::InitApply(c) => {
                let wait = mode(&c);
                self.wait_for_consumer
                    .insert(c.metadata.name.unwrap_or_default(), wait);
            }
            Event::Delete(c) => {
                self.wait_for_consumer
                    .remove(c.metadata.name.as_deref().unwrap_or_default());
            }
            Event::Init => self.wait_for_consumer.clear(),
            Event::InitDone => {}
        }
    }

    /// VolumeBinding for `pod`.
    pub fn check(&self, pod: &SlimPod) -> Check {
        check(pod, &self.claims, &self.volumes, &self.wait_for_consumer)
    }
}

/// VolumeBinding's PreFilter and the volume affinity for one pod.
pub fn check(
    pod: &SlimPod,
    claims: &HashMap<String, PersistentVolumeClaim>,
    volumes: &HashMap<String, PersistentVolume>,
    wait_for_consumer: &HashMap<String, bool>,
) -> Check {
    let mut out = Check::default();
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let vols = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    for claim_name in vols.filter_map(|v| v.persistent_volume_claim.as_ref().map(|c| &c.claim_name))
    {
        let k = format!("{ns}/{claim_name}");
        let Some(claim) = claims.get(&k) else {
            out.unschedulable = Some(format!("persistentvolumeclaim \"{claim_name}\" not found"));
            return out;
        };
        if claim.metadata.deletion_timestamp.is_some() {
            out.unschedulable = Some(format!(
                "persistentvolumeclaim \"{claim_name}\" is being deleted"
            ));
            return out;
        }
        let spec = claim.spec.clone().unwrap_or_default();
        match spec.volume_name.as_deref().filter(|v| !v.is_empty()) {
            Some(pv_name) => {
                let Some(pv) = volumes.get(pv_name) else {
                    out.unschedulable = Some("pvc(s) bound to non-existent pv(s)".to_string());
                    return out;
                };
                let terms = pv
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_affinity.as_ref())
                    .and_then(|a| a.required.as_ref())
                    .map(|r| {
                        r.node_selector_terms
                            .iter()
                            .map(node_selector_term)
                            .collect()
                    });
                if let Some(terms) = terms {
                    out.affinity.push(terms);
                }
            }
            None => {
                let class = spec.storage_class_name.unwrap_or_default();
                // `local-path` is built in (WaitForFirstConsumer) when no
                // StorageClass object says otherwise.
                let wait = wait_for_consumer.get(&class).copied();
                if wait.unwrap_or(class == LOCAL_PATH_CLASS) {
                    out.delayed.push(k);
                } else {
                    out.unschedulable =
                        Some("pod has unbound immediate PersistentVolumeClaims".into());
                    return out;
                }
            }
        }
    }
    out
}
