//! The core's cluster state: nodes (sorted by name, so index order is the
//! deterministic tie-break order), the pods on them, and the compact arrays
//! the fast path scans.
//!
//! kube-scheduler keeps the same thing as its "snapshot" of `NodeInfo`s;
//! placing a pod *assumes* it there (updates requested resources, ports and
//! the pod list) so the next pod of a batch sees the room it took.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::core::StaticEvals;
use crate::model::{BoundPod, DisruptionBudget, NodeInfo, Resources};

/// Free room on one node, laid out for a tight scan: allocatable minus
/// requested, and the reciprocals of allocatable cpu and memory for scoring.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Free {
    pub cpu: i64,
    pub memory: i64,
    pub ephemeral: i64,
    pub pods: i64,
    pub inv_cpu: f64,
    pub inv_memory: f64,
}

/// Nodes, pods and budgets: everything a scheduling pass reads.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    pods: BTreeMap<String, BoundPod>,
    node_pods: Vec<BTreeSet<String>>,
    /// Pods that carry required anti-affinity terms (checked symmetrically
    /// for every incoming pod).
    anti_affinity_pods: BTreeSet<String>,
    pub(crate) free: Vec<Free>,
    /// PodDisruptionBudgets, for preemption.
    pub budgets: Vec<DisruptionBudget>,
    /// The core's node-only evaluations per pod shape, valid as long as
    /// the nodes are (they are set only here, at [`Cluster::new`]).
    pub(crate) static_evals: StaticEvals,
}

fn free_of(n: &NodeInfo) -> Free {
    let inv = |v: i64| if v > 0 { 1.0 / v as f64 } else { 0.0 };
    Free {
        cpu: n.allocatable.cpu_millis - n.requested.cpu_millis,
        memory: n.allocatable.memory - n.requested.memory,
        ephemeral: n.allocatable.ephemeral_storage - n.requested.ephemeral_storage,
        pods: n.allocatable.pods - n.requested.pods,
        inv_cpu: inv(n.allocatable.cpu_millis),
        inv_memory: inv(n.allocatable.memory),
    }
}

impl Cluster {
    /// A cluster of `nodes` (their `requested` and `used_ports` as given)
    /// and no pods yet.
    pub fn new(mut nodes: Vec<NodeInfo>) -> Cluster {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        nodes.dedup_by(|a, b| a.name == b.name);
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        let free = nodes.iter().map(free_of).collect();
        let node_pods = vec![BTreeSet::new(); nodes.len()];
        Cluster {
            nodes,
            index,
            free,
            node_pods,
            ..Default::default()
        }
    }

    /// The nodes, sorted by name.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// The index of a node by name.
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Every pod on a node, by key.
    pub fn pods(&self) -> &BTreeMap<String, BoundPod> {
        &self.pods
    }

    /// Keys of the pods on node `i`.
    pub fn pods_on(&self, i: usize) -> impl Iterator<Item = &BoundPod> {
        self.node_pods
            .get(i)
            .into_iter()
            .flatten()
            .filter_map(|k| self.pods.get(k))
    }

    /// Pods with required anti-affinity terms.
    pub(crate) fn anti_affinity_pods(&self) -> impl Iterator<Item = &BoundPod> {
        self.anti_affinity_pods
            .iter()
            .filter_map(|k| self.pods.get(k))
    }

    /// Whether any pod carries required anti-affinity.
    pub(crate) fn has_anti_affinity_pods(&self) -> bool {
        !self.anti_affinity_pods.is_empty()
    }

    /// Adds a pod to its node ("assume"): its requests, ports and labels now
    /// count there. A pod whose node is unknown is ignored (the node was
    /// deleted; the pod will be garbage-collected). Adding a key twice
    /// replaces the earlier entry.
    pub fn add_pod(&mut self, pod: BoundPod) {
        let Some(i) = self.node_index(&pod.node) else {
            return;
        };
        self.remove_pod(&pod.key);
        let node = &mut self.nodes[i];
        node.requested = node.requested.plus(pod.requests);
        for (name, n) in &pod.extended {
            *node.extended_requested.entry(name.clone()).or_default() += n;
        }
        node.used_ports.extend(pod.host_ports.iter().cloned());
        self.free[i] = free_of(node);
        self.node_pods[i].insert(pod.key.clone());
        if !pod.anti_affinity.is_empty() {
            self.anti_affinity_pods.insert(pod.key.clone());
        }
        self.pods.insert(pod.key.clone(), pod);
    }

    /// Removes a pod ("forget"), giving back its room. Returns it.
    pub fn remove_pod(&mut self, key: &str) -> Option<BoundPod> {
        let pod = self.pods.remove(key)?;
        self.anti_affinity_pods.remove(key);
        if let Some(i) = self.node_index(&pod.node) {
            let node = &mut self.nodes[i];
            node.requested = node.requested.minus(pod.requests);
            for (name, n) in &pod.extended {
                if let Some(v) = node.extended_requested.get_mut(name) {
                    *v -= n;
                }
            }
            for p in &pod.host_ports {
                if let Some(pos) = node.used_ports.iter().position(|u| u == p) {
                    node.used_ports.swap_remove(pos);
                }
            }
            self.free[i] = free_of(node);
            self.node_pods[i].remove(key);
        }
        Some(pod)
    }

    /// Total allocatable over all nodes.
    pub fn total_allocatable(&self) -> Resources {
        self.nodes
            .iter()
            .fold(Resources::default(), |acc, n| acc.plus(n.allocatable))
    }
}
