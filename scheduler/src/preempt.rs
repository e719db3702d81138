//! Preemption (kube-scheduler's DefaultPreemption PostFilter), pure.
//!
//! For a pod that fits nowhere, on each node where only resolvable filters
//! failed (resources, ports, anti-affinity, spread): remove every pod of
//! lower priority, check the pod fits, then *reprieve* as many of them as
//! possible, most important first, PDB-protected ones before the others, so
//! the victims are the fewest and least important pods needed. Pods already
//! terminating count as leaving without being victims. Among the nodes,
//! the one with the fewest PodDisruptionBudget violations wins, then the
//! lowest highest-victim priority, the smallest priority sum, the fewest
//! victims, and the smallest name (kube-scheduler's `pickOneNodeForPreemption`
//! without its start-time rule, which needs a clock).

use crate::cluster::Cluster;
use crate::filter::filter;
use crate::model::{BoundPod, PendingPod};
use crate::prefilter::PodState;
use crate::score::Config;
use crate::selector::label_selector_matches;

/// What preemption decided.
#[derive(Debug, PartialEq, Eq)]
pub enum PreemptOutcome {
    /// The pod fits on `node` once `victims` (keys) are gone.
    Nominated {
        /// The node to nominate.
        node: String,
        /// `namespace/name` of each pod to evict.
        victims: Vec<String>,
    },
    /// No node can be freed for the pod.
    NotHelpful,
}

/// Rank of a candidate node, smaller is better.
type Rank = (usize, i32, i64, usize, usize);

/// Runs preemption over `candidates` (node indexes). On success the victims
/// are removed from `cluster` and the pod is assumed on the node.
pub fn preempt(
    cluster: &mut Cluster,
    pod: &PendingPod,
    candidates: &[usize],
    config: &Config,
) -> PreemptOutcome {
    let mut best: Option<(Rank, usize, Vec<BoundPod>)> = None;
    let mut tried = 0;
    for &i in candidates {
        if tried >= config.preemption_candidates {
            break;
        }
        let removable: Vec<BoundPod> = cluster
            .pods_on(i)
            .filter(|p| p.terminating || p.priority < pod.priority)
            .cloned()
            .collect();
        if removable.is_empty() {
            continue;
        }
        tried += 1;
        let Some((victims, violations)) = select_victims(cluster, i, pod, removable) else {
            continue;
        };
        let rank: Rank = (
            violations,
            victims.iter().map(|v| v.priority).max().unwrap_or(i32::MIN),
            victims.iter().map(|v| i64::from(v.priority)).sum(),
            victims.len(),
            i,
        );
        if best.as_ref().is_none_or(|(r, _, _)| rank < *r) {
            best = Some((rank, i, victims));
        }
    }
    let Some((_, i, victims)) = best else {
        return PreemptOutcome::NotHelpful;
    };
    let node = cluster.nodes()[i].name.clone();
    for v in &victims {
        cluster.remove_pod(&v.key);
    }
    cluster.add_pod(pod.bound_to(&node));
    PreemptOutcome::Nominated {
        node,
        victims: victims.into_iter().map(|v| v.key).collect(),
    }
}

fn fits(cluster: &Cluster, i: usize, pod: &PendingPod) -> bool {
    let state = PodState::new(cluster, pod);
    filter(cluster, i, pod, state.as_ref()).is_empty()
}

/// The fewest victims on node `i`, and how many of them break a budget;
/// `None` if the pod does not fit even with all of `removable` gone.
/// `cluster` is left as it was.
fn select_victims(
    cluster: &mut Cluster,
    i: usize,
    pod: &PendingPod,
    removable: Vec<BoundPod>,
) -> Option<(Vec<BoundPod>, usize)> {
    for p in &removable {
        cluster.remove_pod(&p.key);
    }
    let (terminating, mut live): (Vec<_>, Vec<_>) =
        removable.into_iter().partition(|p| p.terminating);
    let result = if fits(cluster, i, pod) {
        // Most important first: reprieved first.
        live.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.key.cmp(&b.key)));
        let (violating, safe) = split_by_budgets(cluster, live);
        let mut victims = Vec::new();
        let mut violations = 0;
        for (group, counts) in [(violating, true), (safe, false)] {
            for p in group {
                cluster.add_pod(p.clone());
                if !fits(cluster, i, pod) {
                    cluster.remove_pod(&p.key);
                    violations += usize::from(counts);
                    victims.push(p);
                }
            }
        }
        // Put back the reprieved pods' complement: the victims.
        for v in &victims {
            cluster.add_pod(v.clone());
        }
        Some((victims, violations))
    } else {
        for p in &live {
            cluster.add_pod(p.clone());
        }
        None
    };
    for p in terminating {
        cluster.add_pod(p);
    }
    result
}

/// Splits pods into those whose eviction would break a PodDisruptionBudget
/// (counting down each budget's `disruptionsAllowed` in order) and the rest.
fn split_by_budgets(cluster: &Cluster, pods: Vec<BoundPod>) -> (Vec<BoundPod>, Vec<BoundPod>) {
    let mut allowed: Vec<i32> = cluster
        .budgets
        .iter()
        .map(|b| b.disruptions_allowed)
        .collect();
    let (mut violating, mut safe) = (Vec::new(), Vec::new());
    for p in pods {
        let matching: Vec<usize> = cluster
            .budgets
            .iter()
            .enumerate()
            .filter(|(_, b)| {
                b.namespace == p.namespace && label_selector_matches(&b.selector, &p.labels)
            })
            .map(|(k, _)| k)
            .collect();
        if matching.iter().any(|&k| allowed[k] <= 0) {
            violating.push(p);
        } else {
            for k in matching {
                allowed[k] -= 1;
            }
            safe.push(p);
        }
    }
    (violating, safe)
}

#[cfg(test)]
#[path = "preempt_test.rs"]
mod tests;
