//! The pure scheduling core: a [`Cluster`] and pending pods in, one
//! [`Placement`] per pod out. No clock, no I/O, no async; the same input
//! always gives the same output.
//!
//! The shape is kube-scheduler's framework: for each pod every node goes
//! through the **Filter** plugins ([`crate::filter`]), the survivors are
//! **Score**d ([`crate::score`]), the best wins, ties broken by node name.
//! Placing a pod *assumes* it in the cluster, so the next pod of the batch
//! sees the room it took. A pod that fits nowhere tries **preemption**
//! ([`crate::preempt`]) and otherwise gets kube-scheduler's FitError text.
//!
//! Speed (5,000 nodes): the node-only filters are evaluated once per pod
//! *shape* (selector, affinity, tolerations) and cached in the [`Cluster`]
//! until its nodes change (so across passes too), leaving per node a
//! few integer comparisons on a compact array of free room and a
//! multiply-add for the score. Pods with inter-pod rules, spread
//! constraints or host ports take the general path.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::cluster::Cluster;
use crate::filter::{dynamic_filter, fits_resources, static_filter, Reason};
use crate::model::{NodeSelectorTerm, PendingPod, Placement, Toleration};
use crate::preempt::{preempt, PreemptOutcome};
use crate::prefilter::PodState;
use crate::score::{
    node_affinity_raw, normalize, normalize_min_max, resource_fit, untolerated_prefer_no_schedule,
    BatchOrder, Config, INTER_POD_AFFINITY_WEIGHT, NODE_AFFINITY_WEIGHT, TAINT_TOLERATION_WEIGHT,
    TOPOLOGY_SPREAD_WEIGHT,
};

/// The parts of a pod the node-only filters and scores read.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Shape {
    node_name: Option<String>,
    node_selector: BTreeMap<String, String>,
    required: Option<Vec<NodeSelectorTerm>>,
    preferred: Vec<(i32, NodeSelectorTerm)>,
    tolerations: Vec<Toleration>,
}

impl Shape {
    fn of(p: &PendingPod) -> Shape {
        Shape {
            node_name: p.node_name.clone(),
            node_selector: p.node_selector.clone(),
            required: p.required_node_affinity.clone(),
            preferred: p.preferred_node_affinity.clone(),
            tolerations: p.tolerations.clone(),
        }
    }
}

/// The node-only filters and scores for one pod shape.
struct StaticEval {
    /// The first failing node-only filter per node.
    failure: Vec<Option<Reason>>,
    /// Indexes of the nodes that pass them.
    passing: Vec<usize>,
    /// Raw NodeAffinity and TaintToleration scores, when they can differ.
    node_affinity: Option<Vec<i64>>,
    prefer_no_schedule: Option<Vec<i64>>,
}

/// The [`StaticEval`]s of the pod shapes seen since the [`Cluster`] was
/// built from its nodes: they read nodes only, so the cluster keeps them
/// across passes (a pass of a few pods used to evaluate every node again
/// for each). Bounded by [`MAX_CACHED_EVALS`] node evaluations; a full
/// cache starts again.
#[derive(Clone, Default)]
pub(crate) struct StaticEvals {
    by_shape: HashMap<Shape, Arc<StaticEval>>,
}

/// At most this many node evaluations are cached (5,000 nodes: 200
/// shapes).
const MAX_CACHED_EVALS: usize = 1 << 20;

impl std::fmt::Debug for StaticEvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StaticEvals({} shapes)", self.by_shape.len())
    }
}

impl StaticEvals {
    /// Node evaluations held (nodes × shapes).
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.by_shape.values().map(|e| e.failure.len()).sum()
    }

    fn get(&mut self, cluster: &Cluster, pod: &PendingPod) -> Arc<StaticEval> {
        let shape = Shape::of(pod);
        if let Some(e) = self.by_shape.get(&shape) {
            return e.clone();
        }
        let nodes = cluster.nodes().len().max(1);
        if (self.by_shape.len() + 1) * nodes > MAX_CACHED_EVALS {
            self.by_shape.clear();
        }
        let eval = Arc::new(evaluate_shape(cluster, pod));
        self.by_shape.insert(shape, eval.clone());
        eval
    }
}

fn evaluate_shape(cluster: &Cluster, pod: &PendingPod) -> StaticEval {
    let nodes = cluster.nodes();
    let failure: Vec<_> = nodes.iter().map(|n| static_filter(n, pod)).collect();
    let passing = (0..nodes.len()).filter(|&i| failure[i].is_none()).collect();
    let node_affinity = (!pod.preferred_node_affinity.is_empty())
        .then(|| nodes.iter().map(|n| node_affinity_raw(n, pod)).collect());
    let taints: Vec<i64> = nodes
        .iter()
        .map(|n| untolerated_prefer_no_schedule(n, pod))
        .collect();
    let prefer_no_schedule = taints.iter().any(|&t| t > 0).then_some(taints);
    StaticEval {
        failure,
        passing,
        node_affinity,
        prefer_no_schedule,
    }
}

/// Places `pods` on `cluster`, assuming each placement so later pods see it,
/// and returns one placement per pod, in the order they were placed
/// (priority first, then as [`Config::order`] says).
pub fn schedule(cluster: &mut Cluster, pods: &[PendingPod], config: &Config) -> Vec<Placement> {
    let mut evals = std::mem::take(&mut cluster.static_evals);
    let placements = batch_order(cluster, pods, config)
        .into_iter()
        .map(|i| place_one(cluster, &pods[i], config, &mut evals))
        .collect();
    cluster.static_evals = evals;
    placements
}

/// The order in which a batch is placed: higher priority first (as
/// kube-scheduler's PrioritySort), then larger pods first when packing
/// (FFD's order), then by key so the order does not depend on the input's.
fn batch_order(cluster: &Cluster, pods: &[PendingPod], config: &Config) -> Vec<usize> {
    let total = cluster.total_allocatable();
    let size = |p: &PendingPod| {
        let share = |r: i64, t: i64| if t > 0 { r as f64 / t as f64 } else { 0.0 };
        share(p.requests.cpu_millis, total.cpu_millis).max(share(p.requests.memory, total.memory))
    };
    let mut order: Vec<usize> = (0..pods.len()).collect();
    match config.order {
        BatchOrder::DecreasingSize => order.sort_by(|&a, &b| {
            let (pa, pb) = (&pods[a], &pods[b]);
            pb.priority
                .cmp(&pa.priority)
                .then(size(pb).total_cmp(&size(pa)))
                .then(pa.key.cmp(&pb.key))
        }),
        BatchOrder::Arrival => order.sort_by_key(|&i| std::cmp::Reverse(pods[i].priority)),
    }
    order
}

fn place_one(
    cluster: &mut Cluster,
    pod: &PendingPod,
    config: &Config,
    evals: &mut StaticEvals,
) -> Placement {
    let eval = evals.get(cluster, pod);
    let state = PodState::new(cluster, pod);
    let best = if state.is_none()
        && eval.node_affinity.is_none()
        && eval.prefer_no_schedule.is_none()
        && pod.host_ports.is_empty()
        && pod.volume_node_affinity.is_empty()
    {
        fast_best(cluster, &eval, pod, config)
    } else {
        general_best(cluster, &eval, pod, config, state.as_ref())
    };
    if let Some(i) = best {
        let node = cluster.nodes()[i].name.clone();
        cluster.add_pod(pod.bound_to(&node));
        return Placement::Bind {
            pod: pod.key.clone(),
            node,
        };
    }
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut candidates = Vec::new();
    for i in 0..cluster.nodes().len() {
        let failed = match &eval.failure[i] {
            Some(r) => vec![r.clone()],
            None => dynamic_filter(cluster, i, pod, state.as_ref()),
        };
        if failed.iter().all(Reason::resolvable) {
            candidates.push(i);
        }
        for r in failed {
            *reasons.entry(r.text()).or_default() += 1;
        }
    }
    let total = cluster.nodes().len();
    let fit_error = fit_error(total, &reasons);
    if pod.never_preempt {
        return Placement::Unschedulable {
            pod: pod.key.clone(),
            message: format!("{fit_error} preemption: not eligible due to preemptionPolicy=Never."),
        };
    }
    match preempt(cluster, pod, &candidates, config) {
        PreemptOutcome::Nominated { node, victims } => Placement::Preempt {
            pod: pod.key.clone(),
            node,
            victims,
            message: fit_error,
        },
        PreemptOutcome::NotHelpful => {
            let mut post: BTreeMap<String, usize> = BTreeMap::new();
            let not_helpful = total - candidates.len();
            if not_helpful > 0 {
                post.insert(
                    "Preemption is not helpful for scheduling".into(),
                    not_helpful,
                );
            }
            if !candidates.is_empty() {
                post.insert(
                    "No preemption victims found for incoming pod".into(),
                    candidates.len(),
                );
            }
            let message = if total == 0 {
                fit_error
            } else {
                format!("{fit_error} preemption: {}.", fit_error_body(total, &post))
            };
            Placement::Unschedulable {
                pod: pod.key.clone(),
                message,
            }
        }
    }
}

/// The fast path: resources are the only dynamic filter and
/// NodeResourcesFit the only score that differs between nodes.
fn fast_best(
    cluster: &Cluster,
    eval: &StaticEval,
    pod: &PendingPod,
    config: &Config,
) -> Option<usize> {
    let nodes = cluster.nodes();
    let mut best: Option<(f64, usize)> = None;
    for &i in &eval.passing {
        if !fits_resources(cluster, i, pod) {
            continue;
        }
        let n = &nodes[i];
        let s = resource_fit(
            &cluster.free[i],
            n.allocatable.cpu_millis,
            n.allocatable.memory,
            pod,
            config,
        );
        // Strictly greater: on a tie the earlier (smaller) name stays.
        if best.is_none_or(|(b, _)| s > b) {
            best = Some((s, i));
        }
    }
    best.map(|(_, i)| i)
}

/// The general path: every filter, then every score normalised over the
/// feasible nodes and weighted.
fn general_best(
    cluster: &Cluster,
    eval: &StaticEval,
    pod: &PendingPod,
    config: &Config,
    state: Option<&PodState>,
) -> Option<usize> {
    let nodes = cluster.nodes();
    let feasible: Vec<usize> = eval
        .passing
        .iter()
        .copied()
        .filter(|&i| dynamic_filter(cluster, i, pod, state).is_empty())
        .collect();
    if feasible.is_empty() {
        return None;
    }
    let mut total: Vec<f64> = feasible
        .iter()
        .map(|&i| {
            let n = &nodes[i];
            resource_fit(
                &cluster.free[i],
                n.allocatable.cpu_millis,
                n.allocatable.memory,
                pod,
                config,
            )
        })
        .collect();
    let mut add = |scores: Vec<f64>, weight: f64| {
        for (t, s) in total.iter_mut().zip(scores) {
            *t += weight * s;
        }
    };
    if let Some(raw) = &eval.node_affinity {
        let raw: Vec<f64> = feasible.iter().map(|&i| raw[i] as f64).collect();
        add(normalize(&raw, false), NODE_AFFINITY_WEIGHT);
    }
    if let Some(raw) = &eval.prefer_no_schedule {
        let raw: Vec<f64> = feasible.iter().map(|&i| raw[i] as f64).collect();
        add(normalize(&raw, true), TAINT_TOLERATION_WEIGHT);
    }
    if let Some(state) = state {
        if state.has_preferred() {
            let raw: Vec<f64> = feasible
                .iter()
                .map(|&i| state.inter_pod_raw(&nodes[i]) as f64)
                .collect();
            add(normalize_min_max(&raw), INTER_POD_AFFINITY_WEIGHT);
        }
        if state.has_soft_spread() {
            let raw: Vec<Option<f64>> = feasible
                .iter()
                .map(|&i| state.spread_raw(&nodes[i]))
                .collect();
            // A node without the topology key scores lowest.
            let worst = raw.iter().flatten().copied().fold(0.0, f64::max) + 1.0;
            let raw: Vec<f64> = raw.into_iter().map(|r| r.unwrap_or(worst)).collect();
            add(normalize(&raw, true), TOPOLOGY_SPREAD_WEIGHT);
        }
    }
    let mut best = 0;
    for k in 1..feasible.len() {
        if total[k] > total[best] {
            best = k;
        }
    }
    Some(feasible[best])
}

/// kube-scheduler's FitError text (Kubernetes 1.32, `FitError.Error`):
/// `0/N nodes are available: ` then each reason with its node count,
/// sorted as strings, joined by `, `, ending with `.`.
pub fn fit_error(total: usize, reasons: &BTreeMap<String, usize>) -> String {
    if total == 0 {
        return "no nodes available to schedule pods".to_string();
    }
    format!("{}.", fit_error_body(total, reasons))
}

fn fit_error_body(total: usize, reasons: &BTreeMap<String, usize>) -> String {
    let mut parts: Vec<String> = reasons.iter().map(|(t, n)| format!("{n} {t}")).collect();
    parts.sort();
    if parts.is_empty() {
        format!("0/{total} nodes are available")
    } else {
        format!("0/{total} nodes are available: {}", parts.join(", "))
    }
}

#[cfg(test)]
#[path = "core_test.rs"]
mod tests;
