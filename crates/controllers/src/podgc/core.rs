//! Which pods PodGC collects, from a snapshot (no clock, no I/O).

use std::collections::{HashMap, HashSet};

/// How long a node must be missing before its pods count as orphaned
/// (kube-controller-manager's `quarantineTime`, 40 s): a node that is
/// deleted and registered again keeps its pods.
pub const QUARANTINE_MS: i64 = 40_000;

/// What PodGC reads of a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodView {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`, the delete's precondition.
    pub uid: String,
    /// `spec.nodeName` (`""` when unscheduled).
    pub node_name: String,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// `status.phase` is `Succeeded` or `Failed`.
    pub terminal: bool,
    /// `status.reason` is `Evicted`.
    pub evicted: bool,
    /// `metadata.creationTimestamp` in ms.
    pub created_ms: i64,
}

/// Why a pod is collected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Finished, and more finished pods exist than the threshold allows.
    Terminated,
    /// Bound to a node that is gone.
    Orphaned,
    /// Being deleted, never scheduled.
    UnscheduledTerminating,
}

impl Reason {
    /// The `DisruptionTarget` condition's message for a pod marked
    /// `Failed` first (Kubernetes sets it only for orphans).
    pub fn condition_message(self) -> Option<&'static str> {
        match self {
            Reason::Orphaned => Some("PodGC: node no longer exists"),
            _ => None,
        }
    }
}

/// Nodes that pods name but the node cache lacks, with when each was
/// first seen missing.
#[derive(Debug, Default)]
pub struct Quarantine {
    missing_since: HashMap<String, i64>,
}

impl Quarantine {
    /// Records which referenced nodes are missing now; returns those
    /// missing for at least [`QUARANTINE_MS`], to confirm with a live read.
    pub fn observe(&mut self, pods: &[PodView], nodes: &HashSet<&str>, now_ms: i64) -> Vec<String> {
        let missing: HashSet<&str> = pods
            .iter()
            .map(|p| p.node_name.as_str())
            .filter(|n| !n.is_empty() && !nodes.contains(n))
            .collect();
        self.missing_since
            .retain(|n, _| missing.contains(n.as_str()));
        for n in &missing {
            self.missing_since.entry(n.to_string()).or_insert(now_ms);
        }
        let mut due: Vec<String> = self
            .missing_since
            .iter()
            .filter(|(_, since)| now_ms - **since >= QUARANTINE_MS)
            .map(|(n, _)| n.clone())
            .collect();
        due.sort();
        due
    }

    /// Forgets a node a live read found (it was re-registered, or the
    /// cache lagged).
    pub fn found(&mut self, node: &str) {
        self.missing_since.remove(node);
    }
}

/// The pods to collect, each once, as indexes into `pods`: finished pods
/// over `threshold` (0 disables that part), orphans of `gone` nodes, and
/// unscheduled pods being deleted.
pub fn plan(pods: &[PodView], gone: &HashSet<&str>, threshold: usize) -> Vec<(usize, Reason)> {
    let mut out = Vec::new();
    let mut taken = vec![false; pods.len()];
    if threshold > 0 {
        let mut terminated: Vec<usize> = (0..pods.len()).filter(|&i| pods[i].terminal).collect();
        if terminated.len() > threshold {
            // Evicted first, then the oldest (Kubernetes'
            // byEvictionAndCreationTimestamp).
            terminated.sort_by_key(|&i| (!pods[i].evicted, pods[i].created_ms, i));
            let excess = terminated.len() - threshold;
            for &i in &terminated[..excess] {
                taken[i] = true;
                out.push((i, Reason::Terminated));
            }
        }
    }
    for (i, p) in pods.iter().enumerate() {
        if taken[i] {
            continue;
        }
        if !p.node_name.is_empty() && gone.contains(p.node_name.as_str()) {
            out.push((i, Reason::Orphaned));
        } else if p.node_name.is_empty() && p.deleting {
            out.push((i, Reason::UnscheduledTerminating));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: &str) -> PodView {
        PodView {
            namespace: "ns".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            node_name: node.into(),
            ..Default::default()
        }
    }

    #[test]
    fn orphans_wait_out_the_quarantine() {
        let pods = [pod("a", "gone"), pod("b", "here"), pod("c", "")];
        let nodes: HashSet<&str> = ["here"].into();
        let mut q = Quarantine::default();
        assert!(q.observe(&pods, &nodes, 1_000).is_empty());
        assert!(q
            .observe(&pods, &nodes, 1_000 + QUARANTINE_MS - 1)
            .is_empty());
        assert_eq!(q.observe(&pods, &nodes, 1_000 + QUARANTINE_MS), ["gone"]);
        // Back in the cache: the clock starts again when it goes missing.
        let both: HashSet<&str> = ["here", "gone"].into();
        assert!(q.observe(&pods, &both, 50_000).is_empty());
        assert!(q.observe(&pods, &nodes, 60_000).is_empty());
        // A live read that finds the node also resets it.
        q.found("gone");
        assert!(q.observe(&pods, &nodes, 200_000).is_empty());
    }

    #[test]
    fn plan_collects_orphans_and_unscheduled_terminating_pods() {
        let mut deleting_unscheduled = pod("d", "");
        deleting_unscheduled.deleting = true;
        let mut deleting_scheduled = pod("e", "here");
        deleting_scheduled.deleting = true;
        let pods = [
            pod("a", "gone"),
            pod("b", "here"),
            pod("c", ""),
            deleting_unscheduled,
            deleting_scheduled,
        ];
        let gone: HashSet<&str> = ["gone"].into();
        assert_eq!(
            plan(&pods, &gone, 12_500),
            [(0, Reason::Orphaned), (3, Reason::UnscheduledTerminating)]
        );
        assert!(plan(&pods, &HashSet::new(), 12_500)
            .iter()
            .all(|(_, r)| *r == Reason::UnscheduledTerminating));
    }

    #[test]
    fn terminated_pods_over_the_threshold_go_evicted_first_then_oldest() {
        let finished = |name: &str, created: i64, evicted: bool| PodView {
            terminal: true,
            evicted,
            created_ms: created,
            ..pod(name, "gone")
        };
        let pods = [
            finished("new", 300, false),
            finished("old", 100, false),
            finished("evicted-new", 400, true),
            finished("mid", 200, false),
            pod("running", "here"),
        ];
        let gone: HashSet<&str> = ["gone"].into();
        // 4 finished, threshold 2: the evicted one, then the oldest; the
        // other finished pods on the gone node are orphans.
        assert_eq!(
            plan(&pods, &gone, 2),
            [
                (2, Reason::Terminated),
                (1, Reason::Terminated),
                (0, Reason::Orphaned),
                (3, Reason::Orphaned)
            ]
        );
        // Threshold 0 turns that part off.
        assert_eq!(plan(&pods, &HashSet::new(), 0), []);
        assert_eq!(plan(&pods, &HashSet::new(), 4), []);
    }
}
