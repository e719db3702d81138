//! The Score plugins and the scheduler's configuration.
//!
//! Each plugin gives a node 0–100 (kube-scheduler's `MaxNodeScore`); the
//! weighted sum picks the node. Weights are kube-scheduler's defaults:
//! NodeResourcesFit 1, NodeAffinity 2, TaintToleration 3, InterPodAffinity 2,
//! PodTopologySpread 2. NodeResourcesFit is computed in floating point
//! rather than kube-scheduler's integer percent, so that best fit is exact
//! (integer percents tie often, and kube-scheduler then picks at random).

use crate::cluster::Free;
use crate::model::{NodeInfo, PendingPod};
use crate::selector::node_term_matches;

/// kube-scheduler's `MaxNodeScore`.
pub const MAX_NODE_SCORE: f64 = 100.0;
/// Default plugin weight of NodeAffinity (preferred terms).
pub const NODE_AFFINITY_WEIGHT: f64 = 2.0;
/// Default plugin weight of TaintToleration (PreferNoSchedule).
pub const TAINT_TOLERATION_WEIGHT: f64 = 3.0;
/// Default plugin weight of InterPodAffinity (preferred terms).
pub const INTER_POD_AFFINITY_WEIGHT: f64 = 2.0;
/// Default plugin weight of PodTopologySpread (ScheduleAnyway).
pub const TOPOLOGY_SPREAD_WEIGHT: f64 = 2.0;

/// NodeResourcesFit's `scoringStrategy.type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ScoringStrategy {
    /// Prefer the fullest node that fits: bin packing (Skiff's default).
    #[default]
    MostAllocated,
    /// Prefer the emptiest node: spreading (kube-scheduler's default).
    LeastAllocated,
}

/// In which order the pods of one batch are placed.
///
/// Measured with `bench_core` (5,000 nodes, 50,000 mixed pods): best fit in
/// arrival order used 1.001× the lower bound, in decreasing order 1.03×:
/// with two resources, placing the large pods first leaves nodes whose
/// leftover cpu and memory no longer match the small pods' mix. Decreasing
/// order still wins on one-dimensional adversarial batches (see
/// `batch_is_placed_largest_first`), so it stays available.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BatchOrder {
    /// Priority first, then the order given (kube-scheduler's queue: by
    /// creation time). The default.
    #[default]
    Arrival,
    /// Priority first, then larger pods first (First-Fit-Decreasing's
    /// order), then by key.
    DecreasingSize,
}

/// The scheduler's configuration (kube-scheduler's profile, reduced).
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// MostAllocated (packing) or LeastAllocated (spreading).
    pub strategy: ScoringStrategy,
    /// Weight of cpu in NodeResourcesFit's score.
    pub cpu_weight: f64,
    /// Weight of memory in NodeResourcesFit's score.
    pub memory_weight: f64,
    /// Batch order.
    pub order: BatchOrder,
    /// At most this many nodes are tried as preemption candidates
    /// (kube-scheduler's `minCandidateNodesAbsolute`).
    pub preemption_candidates: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            strategy: ScoringStrategy::MostAllocated,
            cpu_weight: 1.0,
            memory_weight: 1.0,
            order: BatchOrder::Arrival,
            preemption_candidates: 100,
        }
    }
}

/// NodeResourcesFit's Score: the weighted share of cpu and memory allocated
/// after placing the pod (MostAllocated), or its complement
/// (LeastAllocated), 0–100.
pub(crate) fn resource_fit(
    free: &Free,
    alloc_cpu: i64,
    alloc_mem: i64,
    pod: &PendingPod,
    c: &Config,
) -> f64 {
    let used_cpu = (alloc_cpu - free.cpu + pod.requests.cpu_millis) as f64 * free.inv_cpu;
    let used_mem = (alloc_mem - free.memory + pod.requests.memory) as f64 * free.inv_memory;
    let share = (c.cpu_weight * used_cpu.min(1.0) + c.memory_weight * used_mem.min(1.0))
        / (c.cpu_weight + c.memory_weight);
    match c.strategy {
        ScoringStrategy::MostAllocated => share * MAX_NODE_SCORE,
        ScoringStrategy::LeastAllocated => (1.0 - share) * MAX_NODE_SCORE,
    }
}

/// NodeAffinity's raw Score: the sum of weights of matching preferred terms.
pub fn node_affinity_raw(node: &NodeInfo, pod: &PendingPod) -> i64 {
    pod.preferred_node_affinity
        .iter()
        .filter(|(_, t)| node_term_matches(t, node))
        .map(|(w, _)| i64::from(*w))
        .sum()
}

/// TaintToleration's raw Score: untolerated PreferNoSchedule taints (fewer
/// is better).
pub fn untolerated_prefer_no_schedule(node: &NodeInfo, pod: &PendingPod) -> i64 {
    node.taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule")
        .filter(|t| {
            !pod.tolerations.iter().any(|tol| {
                (tol.effect.is_empty() || tol.effect == "PreferNoSchedule") && tol.tolerates(t)
            })
        })
        .count() as i64
}

/// Scales raw scores to 0–100 by the largest (kube-scheduler's
/// `DefaultNormalizeScore`); `reverse` when lower raw is better.
pub fn normalize(raw: &[f64], reverse: bool) -> Vec<f64> {
    let max = raw.iter().copied().fold(0.0f64, f64::max);
    raw.iter()
        .map(|&r| {
            if max <= 0.0 {
                if reverse {
                    MAX_NODE_SCORE
                } else {
                    0.0
                }
            } else if reverse {
                MAX_NODE_SCORE - r * MAX_NODE_SCORE / max
            } else {
                r * MAX_NODE_SCORE / max
            }
        })
        .collect()
}

/// Scales raw scores that may be negative to 0–100 by min and max
/// (InterPodAffinity's normalization).
pub fn normalize_min_max(raw: &[f64]) -> Vec<f64> {
    let max = raw.iter().copied().fold(f64::MIN, f64::max);
    let min = raw.iter().copied().fold(f64::MAX, f64::min);
    raw.iter()
        .map(|&r| {
            if max > min {
                (r - min) * MAX_NODE_SCORE / (max - min)
            } else {
                0.0
            }
        })
        .collect()
}
