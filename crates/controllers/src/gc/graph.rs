//! The garbage collector's view of the cluster: every object of every
//! resource it watches, by uid, with its owner references, and the reverse
//! index owner uid → dependents (the `uidToNode` graph of Kubernetes'
//! `GraphBuilder`, reduced to what the decisions need).

use std::collections::{HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// One object in the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct GcNode {
    /// Index of its resource in the collector's resource list.
    pub resource: usize,
    /// Namespace, if namespaced.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// `metadata.resourceVersion`, for conditional patches.
    pub resource_version: Option<String>,
    /// `metadata.ownerReferences`.
    pub owners: Vec<OwnerReference>,
    /// Whether `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// `metadata.finalizers`.
    pub finalizers: Vec<String>,
}

impl GcNode {
    /// Whether it is being deleted with a finalizer the collector handles.
    pub fn has_gc_finalizer(&self) -> bool {
        self.deleting
            && self.finalizers.iter().any(|f| {
                f == crate::gc::core::ORPHAN_FINALIZER || f == crate::gc::core::FOREGROUND_FINALIZER
            })
    }
}

/// Objects by uid, and dependents by owner uid.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, GcNode>,
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    /// The node with `uid`.
    pub fn get(&self, uid: &str) -> Option<&GcNode> {
        self.nodes.get(uid)
    }

    /// Uids of the objects that name `owner_uid` as an owner.
    pub fn dependents(&self, owner_uid: &str) -> Vec<String> {
        self.dependents
            .get(owner_uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// How many objects name `owner_uid` as an owner (without copying
    /// their uids: a ReplicaSet of 10,000 pods is reconciled on every
    /// change of one of them).
    pub fn dependent_count(&self, owner_uid: &str) -> usize {
        self.dependents.get(owner_uid).map_or(0, |s| s.len())
    }

    /// Every uid with owners or a collector finalizer (for a resync).
    pub fn interesting(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, n)| !n.owners.is_empty() || n.has_gc_finalizer())
            .map(|(u, _)| u.clone())
            .collect()
    }

    /// Uids of one resource's nodes.
    pub fn uids_of(&self, resource: usize) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.resource == resource)
            .map(|(u, _)| u.clone())
            .collect()
    }

    /// Inserts or replaces a node; returns the uids to look at again: the
    /// node itself, its old and new owners (an owner waiting for its
    /// dependents may be done), and its dependents if it started deleting.
    pub fn upsert(&mut self, uid: String, node: GcNode) -> Vec<String> {
        let mut touched = vec![uid.clone()];
        let old = self.nodes.remove(&uid);
        if let Some(old) = &old {
            for o in &old.owners {
                if let Some(set) = self.dependents.get_mut(&o.uid) {
                    set.remove(&uid);
                }
                touched.push(o.uid.clone());
            }
        }
        for o in &node.owners {
            self.dependents
                .entry(o.uid.clone())
                .or_default()
                .insert(uid.clone());
            touched.push(o.uid.clone());
        }
        if node.deleting && old.as_ref().is_none_or(|o| !o.deleting) {
            touched.extend(self.dependents(&uid));
        }
        self.nodes.insert(uid, node);
        touched
    }

    /// Removes a node; returns its dependents and owners to look at again.
    pub fn remove(&mut self, uid: &str) -> Vec<String> {
        let mut touched = self.dependents(uid);
        if let Some(old) = self.nodes.remove(uid) {
            for o in &old.owners {
                if let Some(set) = self.dependents.get_mut(&o.uid) {
                    set.remove(uid);
                    if set.is_empty() {
                        self.dependents.remove(&o.uid);
                    }
                }
                touched.push(o.uid.clone());
            }
        }
        touched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(owners: &[&str]) -> GcNode {
        GcNode {
            resource: 0,
            namespace: Some("default".into()),
            name: "x".into(),
            resource_version: None,
            owners: owners
                .iter()
                .map(|u| OwnerReference {
                    uid: u.to_string(),
                    ..Default::default()
                })
                .collect(),
            deleting: false,
            finalizers: vec![],
        }
    }

    #[test]
    fn reverse_index_follows_updates() {
        let mut g = Graph::default();
        g.upsert("rs".into(), node(&["deploy"]));
        g.upsert("pod".into(), node(&["rs"]));
        assert_eq!(g.dependents("rs"), vec!["pod".to_string()]);
        assert_eq!(g.dependent_count("rs"), 1);
        // The pod is released: no longer a dependent.
        g.upsert("pod".into(), node(&[]));
        assert!(g.dependents("rs").is_empty());
        g.upsert("pod".into(), node(&["rs"]));
        let touched = g.remove("rs");
        assert!(touched.contains(&"pod".to_string()) && touched.contains(&"deploy".to_string()));
        assert_eq!(g.interesting(), vec!["pod".to_string()]);
    }
}
