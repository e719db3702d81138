//! Label and node selector matching, as apimachinery's `labels.Selector` and
//! the scheduler's `nodeaffinity.NodeSelector` evaluate them.

use std::collections::BTreeMap;

use crate::model::{LabelSelector, NodeInfo, NodeSelectorTerm, PodAffinityTerm, Requirement};

/// Whether `labels` satisfy one requirement. `Gt`/`Lt` compare integers (node
/// selectors only); a value that is not an integer does not match.
pub fn requirement_matches(r: &Requirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&r.key);
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| r.values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !r.values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (value, r.values.first()) else {
                return false;
            };
            match (v.parse::<i64>(), bound.parse::<i64>()) {
                (Ok(v), Ok(b)) if r.operator == "Gt" => v > b,
                (Ok(v), Ok(b)) => v < b,
                _ => false,
            }
        }
        _ => false,
    }
}

/// Whether a pod's labels match a `LabelSelector`.
pub fn label_selector_matches(s: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
        && s.match_expressions
            .iter()
            .all(|r| requirement_matches(r, labels))
}

/// Whether a node matches one `NodeSelectorTerm`. A term with no
/// requirements matches nothing (Kubernetes: "an empty term matches no
/// objects").
pub fn node_term_matches(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    if term.match_expressions.is_empty() && term.match_fields.is_empty() {
        return false;
    }
    let fields = BTreeMap::from([("metadata.name".to_string(), node.name.clone())]);
    term.match_expressions
        .iter()
        .all(|r| requirement_matches(r, &node.labels))
        && term
            .match_fields
            .iter()
            .all(|r| requirement_matches(r, &fields))
}

/// Whether a node matches any of `terms` (they are ORed).
pub fn node_terms_match(terms: &[NodeSelectorTerm], node: &NodeInfo) -> bool {
    terms.iter().any(|t| node_term_matches(t, node))
}

/// Whether an affinity term selects a pod in `namespace` with `labels`;
/// `own_namespace` is the namespace of the pod that carries the term.
pub fn term_selects(
    term: &PodAffinityTerm,
    own_namespace: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let ns_ok = term.all_namespaces
        || if term.namespaces.is_empty() {
            namespace == own_namespace
        } else {
            term.namespaces.iter().any(|n| n == namespace)
        };
    ns_ok
        && term
            .selector
            .as_ref()
            .is_some_and(|s| label_selector_matches(s, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(key: &str, op: &str, values: &[&str]) -> Requirement {
        Requirement {
            key: key.into(),
            operator: op.into(),
            values: values.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn requirement_table() {
        let labels = BTreeMap::from([
            ("zone".to_string(), "a".to_string()),
            ("cores".to_string(), "8".to_string()),
        ]);
        let cases = [
            (req("zone", "In", &["a", "b"]), true),
            (req("zone", "In", &["b"]), false),
            (req("zone", "NotIn", &["b"]), true),
            (req("zone", "NotIn", &["a"]), false),
            (req("missing", "NotIn", &["a"]), true),
            (req("zone", "Exists", &[]), true),
            (req("missing", "Exists", &[]), false),
            (req("missing", "DoesNotExist", &[]), true),
            (req("cores", "Gt", &["4"]), true),
            (req("cores", "Gt", &["8"]), false),
            (req("cores", "Lt", &["9"]), true),
            (req("zone", "Gt", &["1"]), false),
            (req("zone", "Bogus", &["a"]), false),
        ];
        for (r, want) in cases {
            assert_eq!(requirement_matches(&r, &labels), want, "{r:?}");
        }
    }

    #[test]
    fn empty_node_term_matches_nothing_and_fields_match_the_name() {
        let node = NodeInfo {
            name: "n1".into(),
            ..Default::default()
        };
        assert!(!node_term_matches(&NodeSelectorTerm::default(), &node));
        let by_name = NodeSelectorTerm {
            match_fields: vec![req("metadata.name", "In", &["n1"])],
            ..Default::default()
        };
        assert!(node_term_matches(&by_name, &node));
    }

    #[test]
    fn affinity_term_namespaces() {
        let labels = BTreeMap::from([("app".to_string(), "db".to_string())]);
        let mut term = PodAffinityTerm {
            selector: Some(LabelSelector {
                match_labels: labels.clone(),
                ..Default::default()
            }),
            topology_key: "zone".into(),
            ..Default::default()
        };
        assert!(term_selects(&term, "ns", "ns", &labels));
        assert!(!term_selects(&term, "ns", "other", &labels));
        term.namespaces = vec!["other".into()];
        assert!(term_selects(&term, "ns", "other", &labels));
        term.all_namespaces = true;
        assert!(term_selects(&term, "ns", "third", &labels));
        term.selector = None;
        assert!(!term_selects(&term, "ns", "ns", &labels));
    }
}
