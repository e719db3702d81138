//! The pure scheduling core: a cluster snapshot and pending pods in,
//! placements with reasons out. No clock, no I/O, no async.
//!
//! The shape follows kube-scheduler's framework: for each pod every node goes
//! through the **Filter** plugins (can the pod run there at all?), the
//! survivors are **Score**d, and the best one wins, ties broken by node name so
//! that the same input always gives the same output. Placing a pod updates the
//! snapshot ("assume", in kube-scheduler's words), so the next pod of the same
//! batch sees the space it took.

use std::collections::BTreeMap;

/// Amounts of the resources the scheduler accounts for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// cpu in millicores.
    pub cpu_millis: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Number of pods.
    pub pods: i64,
}

impl Resources {
    fn plus(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis + other.cpu_millis,
            memory: self.memory + other.memory,
            pods: self.pods + other.pods,
        }
    }
}

/// A taint on a node (`node.spec.taints`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taint {
    /// The taint's key.
    pub key: String,
    /// The taint's value, possibly empty.
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// A pod's toleration (`pod.spec.tolerations`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Toleration {
    /// Key to match; empty with operator `Exists` matches every key.
    pub key: String,
    /// `Equal` (default) or `Exists`.
    pub operator: String,
    /// Value to match with `Equal`.
    pub value: String,
    /// Effect to match; empty matches every effect.
    pub effect: String,
}

impl Toleration {
    /// Whether this toleration tolerates `taint` (Kubernetes'
    /// `Toleration.ToleratesTaint`).
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if !self.effect.is_empty() && self.effect != taint.effect {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        match self.operator.as_str() {
            "Exists" => true,
            "" | "Equal" => self.value == taint.value,
            _ => false,
        }
    }
}

/// What the scheduler knows of one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's name.
    pub name: String,
    /// `status.allocatable`.
    pub allocatable: Resources,
    /// Sum of the requests of the pods bound to it (and assumed on it).
    pub requested: Resources,
    /// `metadata.labels`, for `nodeSelector`.
    pub labels: BTreeMap<String, String>,
    /// `spec.taints`.
    pub taints: Vec<Taint>,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
}

/// What the scheduler needs of one pending pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PendingPod {
    /// `namespace/name`.
    pub key: String,
    /// Sum of its containers' requests (`pods` is 1).
    pub requests: Resources,
    /// `spec.nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// `spec.tolerations`.
    pub tolerations: Vec<Toleration>,
}

/// The decision for one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Bind the pod to the node.
    Bind {
        /// `namespace/name` of the pod.
        pod: String,
        /// The chosen node.
        node: String,
    },
    /// No node fits; `message` says why in kube-scheduler's words.
    Unschedulable {
        /// `namespace/name` of the pod.
        pod: String,
        /// e.g. `0/3 nodes are available: 2 Insufficient cpu, 1 node(s) were unschedulable.`
        message: String,
    },
}

/// Why one node was filtered out; the text is kube-scheduler's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum FilterFailure {
    InsufficientCpu,
    InsufficientMemory,
    TooManyPods,
    Unschedulable,
    NodeSelectorMismatch,
    UntoleratedTaint,
}

impl FilterFailure {
    fn text(self) -> &'static str {
        match self {
            FilterFailure::InsufficientCpu => "Insufficient cpu",
            FilterFailure::InsufficientMemory => "Insufficient memory",
            FilterFailure::TooManyPods => "Too many pods",
            FilterFailure::Unschedulable => "node(s) were unschedulable",
            FilterFailure::NodeSelectorMismatch => {
                "node(s) didn't match Pod's node affinity/selector"
            }
            FilterFailure::UntoleratedTaint => "node(s) had untolerated taint",
        }
    }
}

/// Runs every Filter on `node` for `pod` and returns each reason it fails.
fn filter(node: &NodeInfo, pod: &PendingPod) -> Vec<FilterFailure> {
    let mut failures = Vec::new();
    // NodeUnschedulable: cordoned nodes take no new pods.
    if node.unschedulable {
        failures.push(FilterFailure::Unschedulable);
    }
    // NodeAffinity (nodeSelector part): every label must match.
    if pod
        .node_selector
        .iter()
        .any(|(k, v)| node.labels.get(k) != Some(v))
    {
        failures.push(FilterFailure::NodeSelectorMismatch);
    }
    // TaintToleration: NoSchedule and NoExecute taints must be tolerated.
    let untolerated = node.taints.iter().any(|t| {
        (t.effect == "NoSchedule" || t.effect == "NoExecute")
            && !pod.tolerations.iter().any(|tol| tol.tolerates(t))
    });
    if untolerated {
        failures.push(FilterFailure::UntoleratedTaint);
    }
    // NodeResourcesFit: requests plus what is already requested must fit.
    let after = node.requested.plus(pod.requests);
    if after.cpu_millis > node.allocatable.cpu_millis && pod.requests.cpu_millis > 0 {
        failures.push(FilterFailure::InsufficientCpu);
    }
    if after.memory > node.allocatable.memory && pod.requests.memory > 0 {
        failures.push(FilterFailure::InsufficientMemory);
    }
    if after.pods > node.allocatable.pods {
        failures.push(FilterFailure::TooManyPods);
    }
    failures
}

/// NodeResourcesFit with the MostAllocated strategy (bin packing): the share
/// of cpu and memory the node would have allocated after placing the pod,
/// averaged with equal weights, from 0 to 100. Higher packs tighter.
fn score_most_allocated(node: &NodeInfo, pod: &PendingPod) -> i64 {
    let after = node.requested.plus(pod.requests);
    let share = |used: i64, total: i64| {
        if total <= 0 {
            0
        } else {
            used.min(total) * 100 / total
        }
    };
    (share(after.cpu_millis, node.allocatable.cpu_millis)
        + share(after.memory, node.allocatable.memory))
        / 2
}

/// Places `pods` in order on `nodes`, updating each chosen node's `requested`
/// so later pods see the space taken.
pub fn schedule(nodes: &mut [NodeInfo], pods: &[PendingPod]) -> Vec<Placement> {
    pods.iter().map(|pod| place_one(nodes, pod)).collect()
}

fn place_one(nodes: &mut [NodeInfo], pod: &PendingPod) -> Placement {
    let mut best: Option<(i64, usize)> = None;
    let mut reasons: BTreeMap<FilterFailure, usize> = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        let failures = filter(node, pod);
        if failures.is_empty() {
            let score = score_most_allocated(node, pod);
            // Highest score wins; on a tie, the smaller name (deterministic).
            let better = match best {
                None => true,
                Some((s, j)) => score > s || (score == s && node.name < nodes[j].name),
            };
            if better {
                best = Some((score, i));
            }
        } else {
            for f in failures {
                *reasons.entry(f).or_default() += 1;
            }
        }
    }
    match best {
        Some((_, i)) => {
            let node = &mut nodes[i];
            node.requested = node.requested.plus(pod.requests);
            Placement::Bind {
                pod: pod.key.clone(),
                node: node.name.clone(),
            }
        }
        None => Placement::Unschedulable {
            pod: pod.key.clone(),
            message: unschedulable_message(nodes.len(), &reasons),
        },
    }
}

/// kube-scheduler's FitError message: `0/N nodes are available: ` then each
/// reason with its count, sorted by text, joined by `, `, ending with `.`.
fn unschedulable_message(total: usize, reasons: &BTreeMap<FilterFailure, usize>) -> String {
    if total == 0 {
        return "no nodes available to schedule pods".to_string();
    }
    let mut parts: Vec<String> = reasons
        .iter()
        .map(|(f, n)| format!("{n} {}", f.text()))
        .collect();
    parts.sort();
    format!("0/{total} nodes are available: {}.", parts.join(", "))
}

#[cfg(test)]
#[path = "core_test.rs"]
mod tests;
