//! The DaemonSet controller's decision, as a pure function: the DaemonSet,
//! the nodes, its pods, the current revision's hash and the clock in; pods
//! to create (by node) and delete, and the new status out
//! (`pkg/controller/daemon/daemon_controller.go`, `manage` and
//! `updateDaemonSetStatus`, and `update.go`, `rollingUpdate`).
//!
//! Daemon pods are not placed by the controller: each is created with a
//! required node affinity `matchFields metadata.name In [<node>]`, as
//! Kubernetes does, and the scheduler binds it.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::daemonset::eligibility::{default_tolerations, eligibility};
use crate::owner::new_controller_ref;
use crate::pod_util::{created_ms, is_available, is_ready, millis_until_available, phase};
use crate::replicaset::core::PodRef;
use crate::revision::CONTROLLER_REVISION_HASH_LABEL;
use crate::slim_pod::SlimPod;

/// The deprecated label with the DaemonSet's generation, still set by
/// Kubernetes (`pod-template-generation`).
pub const POD_TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// What the DaemonSet controller decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Nodes to create a pod for.
    pub create: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<PodRef>,
    /// The status to write, if it changed.
    pub status: Option<DaemonSetStatus>,
    /// Reconcile again after this many milliseconds (`minReadySeconds`).
    pub requeue_after_ms: Option<i64>,
}

/// The inputs of one decision.
pub struct Input<'a> {
    /// The DaemonSet.
    pub ds: &'a DaemonSet,
    /// Every node.
    pub nodes: &'a [&'a Node],
    /// The pods it controls.
    pub pods: &'a [&'a SlimPod],
    /// The hash of the current template's revision.
    pub hash: &'a str,
    /// Whether earlier creations/deletions have been observed.
    pub may_manage: bool,
    /// The clock, milliseconds since the epoch.
    pub now_ms: i64,
}

fn pod_ref(pod: &SlimPod) -> PodRef {
    PodRef {
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
    }
}

/// The node a daemon pod is for: where it is bound, or the node of its
/// `metadata.name` affinity before it is scheduled (`GetTargetNodeName`).
pub fn target_node(pod: &SlimPod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.as_deref()?.iter().find_map(|r| {
            (r.key == "metadata.name" && r.operator == "In")
                .then(|| r.values.as_deref()?.first().cloned())
                .flatten()
        })
    })
}

fn pod_hash(pod: &SlimPod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(CONTROLLER_REVISION_HASH_LABEL)
        .map(String::as_str)
}

/// An int-or-percent of `total` (`GetScaledValueFromIntOrPercent`, rounding
/// up as the DaemonSet controller does).
pub fn scaled(v: Option<&IntOrString>, total: i32, default: i32) -> i32 {
    match v {
        None => default,
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            i32::try_from((pct * i64::from(total) + 99) / 100).unwrap_or(i32::MAX)
        }
    }
}

/// Decides what to do for one DaemonSet.
pub fn reconcile(input: &Input<'_>) -> Plan {
    let ds = input.ds;
    let now = input.now_ms;
    let mut plan = Plan::default();
    let template_spec = ds.spec.template.spec.clone().unwrap_or_default();
    let min_ready = ds.spec.min_ready_seconds.unwrap_or(0);
    let deleting = ds.metadata.deletion_timestamp.is_some();

    // Pods by node; failed ones are deleted (and recreated next time).
    let mut by_node: BTreeMap<String, Vec<&SlimPod>> = BTreeMap::new();
    for pod in input.pods.iter().copied() {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if phase(pod) == "Failed" {
            plan.delete.push(pod_ref(pod));
            continue;
        }
        match target_node(pod) {
            Some(n) => by_node.entry(n).or_default().push(pod),
            None => plan.delete.push(pod_ref(pod)),
        }
    }
    for pods in by_node.values_mut() {
        pods.sort_by_key(|p| created_ms(&p.metadata));
    }

    let mut status = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
        ..Default::default()
    };
    let update_strategy = ds.spec.update_strategy.clone().unwrap_or_default();
    let rolling = update_strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate";
    // (node, old pod, new pod) for rolling update.
    let mut pairs: Vec<(String, Option<&SlimPod>, Option<&SlimPod>)> = Vec::new();
    let mut desired = 0;
    for node in input.nodes.iter().copied() {
        let name = node.metadata.name.clone().unwrap_or_default();
        let e = eligibility(&template_spec, node);
        let pods = by_node.remove(&name).unwrap_or_default();
        if e.should_run {
            desired += 1;
        }
        if !e.should_continue_running {
            if !pods.is_empty() {
                status.number_misscheduled += 1;
            }
            plan.delete.extend(pods.iter().map(|p| pod_ref(p)));
            continue;
        }
        // A pod that may stay but would not be created now (a NoSchedule
        // taint came later) is kept and, as in Kubernetes, not counted.
        if e.should_run {
            if !pods.is_empty() {
                status.current_number_scheduled += 1;
            }
            // The oldest pod of each revision kind is kept; extra ones go.
            let new: Vec<&SlimPod> = pods
                .iter()
                .copied()
                .filter(|p| pod_hash(p) == Some(input.hash))
                .collect();
            let old: Vec<&SlimPod> = pods
                .iter()
                .copied()
                .filter(|p| pod_hash(p) != Some(input.hash))
                .collect();
            plan.delete.extend(new.iter().skip(1).map(|p| pod_ref(p)));
            plan.delete.extend(old.iter().skip(1).map(|p| pod_ref(p)));
            let (o, n) = (old.first().copied(), new.first().copied());
            let shown = n.or(o);
            if let Some(p) = shown {
                if is_ready(p) {
                    status.number_ready += 1;
                }
                if is_available(p, min_ready, now) {
                    status.number_available = Some(status.number_available.unwrap_or(0) + 1);
                }
                if let Some(ms) = millis_until_available(p, min_ready, now) {
                    plan.requeue_after_ms = Some(plan.requeue_after_ms.map_or(ms, |r| r.min(ms)));
                }
            }
            if n.is_some() {
                status.updated_number_scheduled =
                    Some(status.updated_number_scheduled.unwrap_or(0) + 1);
            }
            if pods.is_empty() && !deleting {
                plan.create.push(name.clone());
            }
            pairs.push((name, o, n));
        }
    }
    // Pods on nodes that no longer exist.
    for pods in by_node.values() {
        plan.delete.extend(pods.iter().map(|p| pod_ref(p)));
    }
    status.desired_number_scheduled = desired;
    let available = status.number_available.unwrap_or(0);
    status.number_unavailable = Some(desired - available).filter(|n| *n > 0);
    status.number_available = Some(available).filter(|n| *n > 0);
    status.updated_number_scheduled = status.updated_number_scheduled.filter(|n| *n > 0);

    if rolling && input.may_manage && !deleting {
        rolling_update(&mut plan, &pairs, ds, desired, min_ready, now);
    }
    if !input.may_manage {
        plan.create.clear();
        plan.delete.clear();
    }
    plan.delete.sort_by(|a, b| a.name.cmp(&b.name));
    plan.delete.dedup();
    if ds.status.as_ref() != Some(&status) {
        plan.status = Some(status);
    }
    plan
}

/// `rollingUpdate`: old pods are replaced node by node, within
/// `maxUnavailable` (delete old, then create new) or `maxSurge` (create
/// new beside old, delete old once the new one is available).
fn rolling_update(
    plan: &mut Plan,
    pairs: &[(String, Option<&SlimPod>, Option<&SlimPod>)],
    ds: &DaemonSet,
    desired: i32,
    min_ready: i32,
    now: i64,
) {
    let ru = ds
        .spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.clone())
        .unwrap_or_default();
    let max_surge = scaled(ru.max_surge.as_ref(), desired, 0).max(0);
    let mut max_unavailable = scaled(ru.max_unavailable.as_ref(), desired, 1).max(0);
    if max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }
    let available = |p: &SlimPod| is_available(p, min_ready, now);
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut candidates = Vec::new();
        for (_, old, new) in pairs {
            match (old, new) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (None, Some(n)) => {
                    if !available(n) {
                        unavailable += 1
                    }
                }
                (Some(o), None) => {
                    if available(o) {
                        candidates.push(*o);
                    } else {
                        // Not serving anyway: replace it at once.
                        unavailable += 1;
                        plan.delete.push(pod_ref(o));
                    }
                }
            }
        }
        let budget = usize::try_from((max_unavailable - unavailable).max(0)).unwrap_or(0);
        plan.delete
            .extend(candidates.into_iter().take(budget).map(pod_ref));
    } else {
        let mut surging = 0;
        let mut candidates = Vec::new();
        for (node, old, new) in pairs {
            match (old, new) {
                (Some(o), None) => {
                    if available(o) {
                        candidates.push(node.clone());
                    } else {
                        plan.create.push(node.clone());
                    }
                }
                (Some(o), Some(n)) => {
                    if available(n) {
                        plan.delete.push(pod_ref(o));
                    } else {
                        surging += 1;
                    }
                }
                _ => {}
            }
        }
        let budget = usize::try_from((max_surge - surging).max(0)).unwrap_or(0);
        plan.create.extend(candidates.into_iter().take(budget));
    }
}

/// A daemon pod for `node` (`CreatePodTemplate` plus
/// `ReplaceDaemonSetPodNodeNameNodeAffinity`): the template, the revision
/// hash and generation labels, the default daemon tolerations, and a
/// required node affinity to exactly this node (other required terms are
/// replaced; preferred ones kept).
pub fn pod_from_template(ds: &DaemonSet, name: &str, node: &str, hash: &str) -> Pod {
    let template = &ds.spec.template;
    let tmeta = template.metadata.as_ref();
    let mut labels = tmeta.and_then(|m| m.labels.clone()).unwrap_or_default();
    labels.insert(CONTROLLER_REVISION_HASH_LABEL.into(), hash.into());
    if let Some(g) = ds.metadata.generation {
        labels.insert(POD_TEMPLATE_GENERATION_LABEL.into(), g.to_string());
    }
    let mut spec = template.spec.clone().unwrap_or_default();
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.to_string()]),
        }]),
        match_expressions: None,
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![term],
    });
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for t in default_tolerations(spec.host_network == Some(true)) {
        if !tolerations
            .iter()
            .any(|x| x.key == t.key && x.effect == t.effect)
        {
            tolerations.push(t);
        }
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tmeta.and_then(|m| m.annotations.clone()),
            owner_references: new_controller_ref("apps/v1", "DaemonSet", &ds.metadata)
                .map(|r| vec![r]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}
