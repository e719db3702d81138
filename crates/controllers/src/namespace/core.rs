//! The namespace controller's decisions, free of I/O.
//!
//! Given what discovery found and what each namespaced resource still
//! holds in the namespace, [`to_delete`] names the objects to delete (those
//! not already being deleted) and [`assess`] gives the four deletion
//! conditions Kubernetes sets and whether the `kubernetes` finalizer may
//! go: only when discovery succeeded and nothing is left. Objects held by
//! finalizers keep the namespace Terminating, as in Kubernetes.

use std::collections::BTreeMap;

/// The finalizer the API server puts on every namespace's `spec`.
pub const KUBERNETES_FINALIZER: &str = "kubernetes";

/// One object found in the namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Item {
    /// Its name.
    pub name: String,
    /// Whether it already has a `deletionTimestamp`.
    pub deleting: bool,
    /// Its `metadata.finalizers`.
    pub finalizers: Vec<String>,
}

/// What one resource holds in the namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contents {
    /// `<plural>.<group>` as Kubernetes prints it (`pods.`, `widgets.example.com`).
    pub resource: String,
    /// The objects.
    pub items: Vec<Item>,
}

/// What the controller saw in one pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Groups discovery could not read.
    pub discovery_failures: Vec<String>,
    /// Resources that could not be listed or had objects that could not be
    /// deleted (`<plural>.<group>`).
    pub content_failures: Vec<String>,
    /// What is left, per resource.
    pub remaining: Vec<Contents>,
}

/// One `NamespaceCondition` (without its transition time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// `NamespaceContentRemaining`, ….
    pub type_: &'static str,
    /// `True` or `False`.
    pub status: &'static str,
    /// CamelCase reason.
    pub reason: &'static str,
    /// Kubernetes' message.
    pub message: String,
}

/// The outcome of a pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assessment {
    /// The conditions, in Kubernetes' order.
    pub conditions: Vec<Condition>,
    /// Whether the `kubernetes` finalizer may be removed now.
    pub finalize: bool,
}

/// The objects to delete: every `(resource index, name)` not already
/// being deleted.
pub fn to_delete(contents: &[Contents]) -> Vec<(usize, String)> {
    contents
        .iter()
        .enumerate()
        .flat_map(|(i, c)| {
            c.items
                .iter()
                .filter(|o| !o.deleting)
                .map(move |o| (i, o.name.clone()))
        })
        .collect()
}

fn condition(
    type_: &'static str,
    failing: bool,
    (true_reason, true_message): (&'static str, String),
    (false_reason, false_message): (&'static str, &str),
) -> Condition {
    if failing {
        Condition {
            type_,
            status: "True",
            reason: true_reason,
            message: true_message,
        }
    } else {
        Condition {
            type_,
            status: "False",
            reason: false_reason,
            message: false_message.to_string(),
        }
    }
}

/// The conditions and the finalize decision for `observed` (Kubernetes'
/// `namespacedResourcesDeleter` messages, word for word).
pub fn assess(observed: &Observed) -> Assessment {
    let mut remaining: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_finalizer: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &observed.remaining {
        if !c.items.is_empty() {
            *remaining.entry(&c.resource).or_default() += c.items.len();
        }
        for f in c.items.iter().flat_map(|o| &o.finalizers) {
            *by_finalizer.entry(f).or_default() += 1;
        }
    }
    let mut failures = observed.content_failures.clone();
    failures.sort();
    failures.dedup();
    let mut discovery = observed.discovery_failures.clone();
    discovery.sort();
    let join = |m: &BTreeMap<&str, usize>, fmt: fn(&str, usize) -> String| {
        m.iter()
            .map(|(k, n)| fmt(k, *n))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let conditions = vec![
        condition(
            "NamespaceDeletionDiscoveryFailure",
            !discovery.is_empty(),
            (
                "DiscoveryFailed",
                format!(
                    "Discovery failed for some groups, {} failing: {}",
                    discovery.len(),
                    discovery.join(", ")
                ),
            ),
            (
                "ResourcesDiscovered",
                "All resources successfully discovered",
            ),
        ),
        condition(
            "NamespaceDeletionGroupVersionParsing",
            false,
            ("GroupVersionParsingFailed", String::new()),
            (
                "ParsedGroupVersions",
                "All legacy kube types successfully parsed",
            ),
        ),
        condition(
            "NamespaceDeletionContentFailure",
            !failures.is_empty(),
            (
                "ContentDeletionFailed",
                format!(
                    "Failed to delete all resource types, {} remaining: {}",
                    failures.len(),
                    failures.join(", ")
                ),
            ),
            (
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization",
            ),
        ),
        condition(
            "NamespaceContentRemaining",
            !remaining.is_empty(),
            (
                "SomeResourcesRemain",
                format!(
                    "Some resources are remaining: {}",
                    join(&remaining, |r, n| format!("{r} has {n} resource instances"))
                ),
            ),
            ("ContentRemoved", "All content successfully removed"),
        ),
        condition(
            "NamespaceFinalizersRemaining",
            !by_finalizer.is_empty(),
            (
                "SomeFinalizersRemain",
                format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    join(&by_finalizer, |f, n| format!(
                        "{f} in {n} resource instances"
                    ))
                ),
            ),
            (
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished",
            ),
        ),
    ];
    Assessment {
        finalize: discovery.is_empty() && failures.is_empty() && remaining.is_empty(),
        conditions,
    }
}

/// `spec.finalizers` without `kubernetes`, or `None` when it has none to
/// remove.
pub fn without_kubernetes(finalizers: &[String]) -> Option<Vec<String>> {
    finalizers
        .iter()
        .any(|f| f == KUBERNETES_FINALIZER)
        .then(|| {
            finalizers
                .iter()
                .filter(|f| *f != KUBERNETES_FINALIZER)
                .cloned()
                .collect()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str, deleting: bool, finalizers: &[&str]) -> Item {
        Item {
            name: name.into(),
            deleting,
            finalizers: finalizers.iter().map(|f| f.to_string()).collect(),
        }
    }

    fn find<'a>(a: &'a Assessment, t: &str) -> &'a Condition {
        a.conditions.iter().find(|c| c.type_ == t).expect(t)
    }

    #[test]
    fn deletes_only_objects_not_yet_deleting() {
        let contents = vec![
            Contents {
                resource: "configmaps.".into(),
                items: vec![item("a", false, &[]), item("b", true, &["x/y"])],
            },
            Contents {
                resource: "widgets.example.com".into(),
                items: vec![item("w", false, &[])],
            },
        ];
        assert_eq!(
            to_delete(&contents),
            vec![(0, "a".to_string()), (1, "w".to_string())]
        );
    }

    #[test]
    fn empty_namespace_is_finalized() {
        let a = assess(&Observed {
            remaining: vec![Contents {
                resource: "pods.".into(),
                items: vec![],
            }],
            ..Default::default()
        });
        assert!(a.finalize);
        let c = find(&a, "NamespaceContentRemaining");
        assert_eq!((c.status, c.reason), ("False", "ContentRemoved"));
        assert_eq!(a.conditions.len(), 5);
    }

    #[test]
    fn remaining_content_and_finalizers_block() {
        let a = assess(&Observed {
            remaining: vec![
                Contents {
                    resource: "pods.".into(),
                    items: vec![item("p1", true, &[]), item("p2", true, &[])],
                },
                Contents {
                    resource: "configmaps.".into(),
                    items: vec![item("held", true, &["example.com/block"])],
                },
            ],
            ..Default::default()
        });
        assert!(!a.finalize);
        let c = find(&a, "NamespaceContentRemaining");
        assert_eq!((c.status, c.reason), ("True", "SomeResourcesRemain"));
        assert_eq!(
            c.message,
            "Some resources are remaining: configmaps. has 1 resource instances, pods. has 2 resource instances"
        );
        let f = find(&a, "NamespaceFinalizersRemaining");
        assert_eq!(
            f.message,
            "Some content in the namespace has finalizers remaining: example.com/block in 1 resource instances"
        );
    }

    #[test]
    fn failures_block_and_are_reported() {
        let a = assess(&Observed {
            discovery_failures: vec!["example.com/v1".into()],
            content_failures: vec!["widgets.example.com".into(), "widgets.example.com".into()],
            remaining: vec![],
        });
        assert!(!a.finalize);
        let d = find(&a, "NamespaceDeletionDiscoveryFailure");
        assert_eq!(d.status, "True");
        assert_eq!(
            d.message,
            "Discovery failed for some groups, 1 failing: example.com/v1"
        );
        let c = find(&a, "NamespaceDeletionContentFailure");
        assert_eq!(
            c.message,
            "Failed to delete all resource types, 1 remaining: widgets.example.com"
        );
    }

    #[test]
    fn removes_only_the_kubernetes_finalizer() {
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            without_kubernetes(&f(&["kubernetes", "other"])),
            Some(f(&["other"]))
        );
        assert_eq!(without_kubernetes(&f(&["other"])), None);
        assert_eq!(without_kubernetes(&[]), None);
    }
}
