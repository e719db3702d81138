//! PreFilter: what a pod's inter-pod affinity and topology spread rules need
//! to know of the pods already placed, counted once per pod per topology
//! domain (kube-scheduler's `InterPodAffinity` and `PodTopologySpread`
//! PreFilter states), so each node's Filter and Score is a map lookup.

use std::collections::{HashMap, HashSet};

use crate::cluster::Cluster;
use crate::filter::{static_filter, Reason};
use crate::model::{PendingPod, PodAffinityTerm};
use crate::selector::{label_selector_matches, term_selects};

/// Matching pods per value of one topology key.
#[derive(Debug, Default)]
struct DomainCounts {
    key: String,
    counts: HashMap<String, i64>,
}

impl DomainCounts {
    fn at(&self, labels: &std::collections::BTreeMap<String, String>) -> Option<i64> {
        labels
            .get(&self.key)
            .map(|v| self.counts.get(v).copied().unwrap_or(0))
    }
}

#[derive(Debug)]
struct SpreadState {
    domains: DomainCounts,
    max_skew: i64,
    self_match: i64,
    min: i64,
    do_not_schedule: bool,
    weight: f64,
}

/// The per-pod state of the InterPodAffinity and PodTopologySpread plugins.
#[derive(Debug, Default)]
pub struct PodState {
    affinity: Vec<DomainCounts>,
    /// No pod anywhere matches the required affinity, but the pod matches
    /// its own terms: the first pod of a group may go anywhere.
    affinity_self_ok: bool,
    anti: Vec<DomainCounts>,
    existing_anti: HashSet<(String, String)>,
    spread: Vec<SpreadState>,
    preferred: Vec<(i64, DomainCounts)>,
}

fn count_term(cluster: &Cluster, pod: &PendingPod, term: &PodAffinityTerm) -> DomainCounts {
    let mut out = DomainCounts {
        key: term.topology_key.clone(),
        counts: HashMap::new(),
    };
    for p in cluster.pods().values() {
        if !term_selects(term, &pod.namespace, &p.namespace, &p.labels) {
            continue;
        }
        let Some(i) = cluster.node_index(&p.node) else {
            continue;
        };
        if let Some(v) = cluster.nodes()[i].labels.get(&term.topology_key) {
            *out.counts.entry(v.clone()).or_default() += 1;
        }
    }
    out
}

impl PodState {
    /// Computes the state, or `None` when no inter-pod rule or spread
    /// constraint concerns this pod (the fast path).
    pub fn new(cluster: &Cluster, pod: &PendingPod) -> Option<PodState> {
        let own = !pod.pod_affinity.is_empty()
            || !pod.pod_anti_affinity.is_empty()
            || !pod.preferred_pod_affinity.is_empty()
            || !pod.preferred_pod_anti_affinity.is_empty()
            || !pod.spread.is_empty();
        if !own && !cluster.has_anti_affinity_pods() {
            return None;
        }
        let mut state = PodState::default();
        // Existing pods' anti-affinity that this pod would violate.
        for p in cluster.anti_affinity_pods() {
            let Some(i) = cluster.node_index(&p.node) else {
                continue;
            };
            for term in &p.anti_affinity {
                if term_selects(term, &p.namespace, &pod.namespace, &pod.labels) {
                    if let Some(v) = cluster.nodes()[i].labels.get(&term.topology_key) {
                        state
                            .existing_anti
                            .insert((term.topology_key.clone(), v.clone()));
                    }
                }
            }
        }
        state.affinity = pod
            .pod_affinity
            .iter()
            .map(|t| count_term(cluster, pod, t))
            .collect();
        let none_matching = state.affinity.iter().all(|d| d.counts.is_empty());
        let self_matches = pod
            .pod_affinity
            .iter()
            .all(|t| term_selects(t, &pod.namespace, &pod.namespace, &pod.labels));
        state.affinity_self_ok = none_matching && self_matches;
        state.anti = pod
            .pod_anti_affinity
            .iter()
            .map(|t| count_term(cluster, pod, t))
            .collect();
        for (w, t) in &pod.preferred_pod_affinity {
            state
                .preferred
                .push((i64::from(*w), count_term(cluster, pod, t)));
        }
        for (w, t) in &pod.preferred_pod_anti_affinity {
            state
                .preferred
                .push((-i64::from(*w), count_term(cluster, pod, t)));
        }
        for c in &pod.spread {
            state.spread.push(spread_state(cluster, pod, c));
        }
        Some(state)
    }

    /// PodTopologySpread's Filter for one node.
    pub fn spread_filter(&self, node: &crate::model::NodeInfo) -> Option<Reason> {
        for s in self.spread.iter().filter(|s| s.do_not_schedule) {
            let Some(count) = s.domains.at(&node.labels) else {
                return Some(Reason::SpreadMissingLabel);
            };
            if count + s.self_match - s.min > s.max_skew {
                return Some(Reason::Spread);
            }
        }
        None
    }

    /// InterPodAffinity's Filter for one node.
    pub fn inter_pod_filter(&self, node: &crate::model::NodeInfo) -> Option<Reason> {
        if self
            .existing_anti
            .iter()
            .any(|(k, v)| node.labels.get(k) == Some(v))
        {
            return Some(Reason::ExistingAntiAffinity);
        }
        if self
            .anti
            .iter()
            .any(|d| d.at(&node.labels).unwrap_or(0) > 0)
        {
            return Some(Reason::PodAntiAffinity);
        }
        if !self.affinity_self_ok
            && !self
                .affinity
                .iter()
                .all(|d| d.at(&node.labels).unwrap_or(0) > 0)
        {
            return Some(Reason::PodAffinity);
        }
        None
    }

    /// InterPodAffinity's raw Score: weights of preferred terms whose
    /// matching pods share the node's domain (anti-affinity subtracts).
    pub fn inter_pod_raw(&self, node: &crate::model::NodeInfo) -> i64 {
        self.preferred
            .iter()
            .map(|(w, d)| w * d.at(&node.labels).unwrap_or(0))
            .sum()
    }

    /// Whether [`Self::inter_pod_raw`] can differ between nodes.
    pub fn has_preferred(&self) -> bool {
        !self.preferred.is_empty()
    }

    /// PodTopologySpread's raw Score for ScheduleAnyway constraints: matching
    /// pods in the node's domains, weighted by log(domains + 2) as
    /// kube-scheduler does; lower is better. `None` if the node lacks a key.
    pub fn spread_raw(&self, node: &crate::model::NodeInfo) -> Option<f64> {
        let mut sum = 0.0;
        for s in self.spread.iter().filter(|s| !s.do_not_schedule) {
            let c = s.domains.at(&node.labels)?;
            sum += (c + s.self_match) as f64 * s.weight;
        }
        Some(sum)
    }

    /// Whether any ScheduleAnyway constraint exists.
    pub fn has_soft_spread(&self) -> bool {
        self.spread.iter().any(|s| !s.do_not_schedule)
    }
}

fn spread_state(
    cluster: &Cluster,
    pod: &PendingPod,
    c: &crate::model::SpreadConstraint,
) -> SpreadState {
    // Domains are the values of the key on nodes that pass the pod's
    // nodeSelector/affinity (nodeAffinityPolicy: Honor, the default).
    let mut counts: HashMap<String, i64> = HashMap::new();
    for (i, node) in cluster.nodes().iter().enumerate() {
        let Some(v) = node.labels.get(&c.topology_key) else {
            continue;
        };
        if matches!(
            static_filter(node, pod),
            Some(Reason::NodeAffinity) | Some(Reason::NodeName)
        ) {
            continue;
        }
        let n = cluster
            .pods_on(i)
            .filter(|p| {
                p.namespace == pod.namespace
                    && !p.terminating
                    && c.selector
                        .as_ref()
                        .is_some_and(|s| label_selector_matches(s, &p.labels))
            })
            .count() as i64;
        *counts.entry(v.clone()).or_default() += n;
    }
    let min = if (counts.len() as i64) < i64::from(c.min_domains.max(1)) {
        0
    } else {
        counts.values().copied().min().unwrap_or(0)
    };
    let weight = ((counts.len() + 2) as f64).ln();
    let self_match = i64::from(
        c.selector
            .as_ref()
            .is_some_and(|s| label_selector_matches(s, &pod.labels)),
    );
    SpreadState {
        domains: DomainCounts {
            key: c.topology_key.clone(),
            counts,
        },
        max_skew: i64::from(c.max_skew.max(1)),
        self_match,
        min,
        do_not_schedule: c.do_not_schedule,
        weight,
    }
}
