//! The Filter plugins: can this pod run on this node at all? Each failure
//! carries kube-scheduler's own reason text (Kubernetes 1.32,
//! `pkg/scheduler/framework/plugins/*`), and whether preemption could help
//! (kube-scheduler's `Unschedulable` versus `UnschedulableAndUnresolvable`).
//!
//! Plugins run in the default profile's order and a node stops at its first
//! failing plugin, as `RunFilterPlugins` does; NodeResourcesFit may report
//! several resources at once ("Insufficient cpu", "Insufficient memory").

use crate::cluster::Cluster;
use crate::model::{NodeInfo, PendingPod, Taint};
use crate::prefilter::PodState;
use crate::selector::node_terms_match;

/// Why a node was filtered out.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// NodeUnschedulable: `spec.unschedulable` (cordoned).
    Unschedulable,
    /// NodeName: `spec.nodeName` names another node.
    NodeName,
    /// TaintToleration: the first untolerated NoSchedule/NoExecute taint.
    UntoleratedTaint(Taint),
    /// NodeAffinity: nodeSelector or required node affinity.
    NodeAffinity,
    /// NodePorts: a host port is taken.
    Ports,
    /// NodeResourcesFit: not enough of this resource (`cpu`, `memory`,
    /// `ephemeral-storage`, or an extended resource name).
    Insufficient(String),
    /// NodeResourcesFit: `pods` is used up.
    TooManyPods,
    /// VolumeBinding: a bound PersistentVolume's node affinity excludes the node.
    VolumeNodeAffinity,
    /// PodTopologySpread: the node lacks the constraint's topology label.
    SpreadMissingLabel,
    /// PodTopologySpread: placing here would exceed `maxSkew`.
    Spread,
    /// InterPodAffinity: required affinity not met.
    PodAffinity,
    /// InterPodAffinity: required anti-affinity violated.
    PodAntiAffinity,
    /// InterPodAffinity: an existing pod's anti-affinity rejects this pod.
    ExistingAntiAffinity,
}

impl Reason {
    /// kube-scheduler's text for this reason.
    pub fn text(&self) -> String {
        match self {
            Reason::Unschedulable => "node(s) were unschedulable".into(),
            Reason::NodeName => "node(s) didn't match the requested node name".into(),
            Reason::UntoleratedTaint(t) => {
                format!("node(s) had untolerated taint {{{}: {}}}", t.key, t.value)
            }
            Reason::NodeAffinity => "node(s) didn't match Pod's node affinity/selector".into(),
            Reason::Ports => "node(s) didn't have free ports for the requested pod ports".into(),
            Reason::Insufficient(r) => format!("Insufficient {r}"),
            Reason::TooManyPods => "Too many pods".into(),
            Reason::VolumeNodeAffinity => "node(s) had volume node affinity conflict".into(),
            Reason::SpreadMissingLabel => {
                "node(s) didn't match pod topology spread constraints (missing required label)"
                    .into()
            }
            Reason::Spread => "node(s) didn't match pod topology spread constraints".into(),
            Reason::PodAffinity => "node(s) didn't match pod affinity rules".into(),
            Reason::PodAntiAffinity => "node(s) didn't match pod anti-affinity rules".into(),
            Reason::ExistingAntiAffinity => {
                "node(s) didn't satisfy existing pods anti-affinity rules".into()
            }
        }
    }

    /// Whether evicting pods could cure it (kube-scheduler's `Unschedulable`
    /// as opposed to `UnschedulableAndUnresolvable`).
    pub fn resolvable(&self) -> bool {
        matches!(
            self,
            Reason::Ports
                | Reason::Insufficient(_)
                | Reason::TooManyPods
                | Reason::Spread
                | Reason::PodAntiAffinity
                | Reason::ExistingAntiAffinity
        )
    }
}

/// The filters that depend only on the node and the pod's own spec, not on
/// other pods: NodeUnschedulable, NodeName, TaintToleration, NodeAffinity.
/// Their result is cached per pod shape by [`crate::core`].
pub fn static_filter(node: &NodeInfo, pod: &PendingPod) -> Option<Reason> {
    // NodeUnschedulable: a cordoned node takes only pods that tolerate the
    // `node.kubernetes.io/unschedulable` taint.
    if node.unschedulable {
        let cordon = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            value: String::new(),
            effect: "NoSchedule".into(),
        };
        if !pod.tolerations.iter().any(|t| t.tolerates(&cordon)) {
            return Some(Reason::Unschedulable);
        }
    }
    if pod.node_name.as_deref().is_some_and(|n| n != node.name) {
        return Some(Reason::NodeName);
    }
    // TaintToleration: NoSchedule and NoExecute taints must be tolerated;
    // PreferNoSchedule only scores.
    if let Some(t) = node.taints.iter().find(|t| {
        (t.effect == "NoSchedule" || t.effect == "NoExecute")
            && !pod.tolerations.iter().any(|tol| tol.tolerates(t))
    }) {
        return Some(Reason::UntoleratedTaint(t.clone()));
    }
    // NodeAffinity: every nodeSelector label, and one of the required terms.
    let selector_ok = pod
        .node_selector
        .iter()
        .all(|(k, v)| node.labels.get(k) == Some(v));
    let affinity_ok = pod
        .required_node_affinity
        .as_ref()
        .is_none_or(|terms| node_terms_match(terms, node));
    if !selector_ok || !affinity_ok {
        return Some(Reason::NodeAffinity);
    }
    None
}

/// NodeResourcesFit's check, allocation-free: every requested resource fits
/// in what is left (a resource the pod does not request is not checked,
/// except the pod count).
pub fn fits_resources(cluster: &Cluster, i: usize, pod: &PendingPod) -> bool {
    let f = &cluster.free[i];
    let r = &pod.requests;
    f.pods >= r.pods
        && (r.cpu_millis == 0 || f.cpu >= r.cpu_millis)
        && (r.memory == 0 || f.memory >= r.memory)
        && (r.ephemeral_storage == 0 || f.ephemeral >= r.ephemeral_storage)
        && (pod.extended.is_empty() || extended_fit(&cluster.nodes()[i], pod).is_empty())
}

fn extended_fit(node: &NodeInfo, pod: &PendingPod) -> Vec<Reason> {
    pod.extended
        .iter()
        .filter(|(_, n)| **n > 0)
        .filter(|(name, n)| {
            let alloc = node.extended_allocatable.get(*name).copied().unwrap_or(0);
            let used = node.extended_requested.get(*name).copied().unwrap_or(0);
            alloc - used < **n
        })
        .map(|(name, _)| Reason::Insufficient(name.clone()))
        .collect()
}

/// NodeResourcesFit's reasons, in kube-scheduler's order (pods, cpu,
/// memory, ephemeral-storage, extended).
pub fn resource_reasons(cluster: &Cluster, i: usize, pod: &PendingPod) -> Vec<Reason> {
    let f = &cluster.free[i];
    let r = &pod.requests;
    let mut out = Vec::new();
    if f.pods < r.pods {
        out.push(Reason::TooManyPods);
    }
    if r.cpu_millis > 0 && f.cpu < r.cpu_millis {
        out.push(Reason::Insufficient("cpu".into()));
    }
    if r.memory > 0 && f.memory < r.memory {
        out.push(Reason::Insufficient("memory".into()));
    }
    if r.ephemeral_storage > 0 && f.ephemeral < r.ephemeral_storage {
        out.push(Reason::Insufficient("ephemeral-storage".into()));
    }
    out.extend(extended_fit(&cluster.nodes()[i], pod));
    out
}

/// NodePorts: none of the pod's host ports is in use on the node.
pub fn ports_free(node: &NodeInfo, pod: &PendingPod) -> bool {
    pod.host_ports
        .iter()
        .all(|p| !node.used_ports.iter().any(|u| u.conflicts(p)))
}

/// Every filter, in the default profile's order; the reasons of the first
/// failing plugin, or an empty list when the node fits.
pub fn filter(
    cluster: &Cluster,
    i: usize,
    pod: &PendingPod,
    state: Option<&PodState>,
) -> Vec<Reason> {
    let node = &cluster.nodes()[i];
    if let Some(r) = static_filter(node, pod) {
        return vec![r];
    }
    dynamic_filter(cluster, i, pod, state)
}

/// The filters that depend on other pods or on free room: NodePorts,
/// NodeResourcesFit, VolumeBinding, PodTopologySpread, InterPodAffinity.
pub fn dynamic_filter(
    cluster: &Cluster,
    i: usize,
    pod: &PendingPod,
    state: Option<&PodState>,
) -> Vec<Reason> {
    let node = &cluster.nodes()[i];
    if !ports_free(node, pod) {
        return vec![Reason::Ports];
    }
    let fit = resource_reasons(cluster, i, pod);
    if !fit.is_empty() {
        return fit;
    }
    if !pod
        .volume_node_affinity
        .iter()
        .all(|terms| node_terms_match(terms, node))
    {
        return vec![Reason::VolumeNodeAffinity];
    }
    if let Some(state) = state {
        if let Some(r) = state.spread_filter(node) {
            return vec![r];
        }
        if let Some(r) = state.inter_pod_filter(node) {
            return vec![r];
        }
    }
    Vec::new()
}
