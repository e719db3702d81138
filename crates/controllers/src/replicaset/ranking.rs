//! Which pods a ReplicaSet deletes first when it scales down: Kubernetes'
//! `ActivePodsWithRanks` order (`pkg/controller/controller_utils.go`), the
//! least valuable pod first:
//!
//! 1. not yet on a node < on a node;
//! 2. `Pending` < `Unknown` < `Running`;
//! 3. not ready < ready;
//! 4. more pods of the same owner on its node < fewer (spreads what stays);
//! 5. ready for a shorter time < longer;
//! 6. more container restarts < fewer;
//! 7. newer < older (by creation time).
//!
//! The name breaks remaining ties so the order is deterministic.

use std::cmp::Ordering;
use std::collections::HashMap;

use crate::pod_util::{
    created_ms, is_assigned, is_ready, node_name, phase, ready_since, restart_count,
};
use crate::slim_pod::SlimPod;

fn phase_rank(pod: &SlimPod) -> u8 {
    match phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    }
}

/// Returns `pods` sorted with the first to delete first. `related` are the
/// pods whose co-location counts for rule 4 (the owner's active pods).
pub fn deletion_order<'a>(pods: &[&'a SlimPod], related: &[&SlimPod]) -> Vec<&'a SlimPod> {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for p in related {
        if let Some(n) = node_name(p) {
            *per_node.entry(n).or_default() += 1;
        }
    }
    let rank = |p: &SlimPod| {
        node_name(p)
            .and_then(|n| per_node.get(n))
            .copied()
            .unwrap_or(0)
    };
    let mut out: Vec<&SlimPod> = pods.to_vec();
    out.sort_by(|a, b| {
        is_assigned(a)
            .cmp(&is_assigned(b))
            .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
            .then_with(|| is_ready(a).cmp(&is_ready(b)))
            // Higher rank (more crowded node) goes first.
            .then_with(|| rank(b).cmp(&rank(a)))
            .then_with(|| match (ready_since(a), ready_since(b)) {
                // Ready more recently (later timestamp) goes first.
                (Some(x), Some(y)) => y.cmp(&x),
                _ => Ordering::Equal,
            })
            .then_with(|| restart_count(b).cmp(&restart_count(a)))
            .then_with(|| created_ms(&b.metadata).cmp(&created_ms(&a.metadata)))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    out
}
