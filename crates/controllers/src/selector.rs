//! Label selectors (`metav1.LabelSelector`): `matchLabels` and
//! `matchExpressions` with `In`, `NotIn`, `Exists`, `DoesNotExist`, the
//! rules of apimachinery's `LabelSelectorAsSelector`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `labels` satisfy `selector`. An empty selector (no labels, no
/// expressions) matches nothing here, as workload controllers treat it:
/// apps/v1 rejects it at validation, and matching everything would let a
/// controller adopt every pod of the namespace.
pub fn matches(selector: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    let match_labels = selector.match_labels.as_ref();
    let exprs = selector.match_expressions.as_deref().unwrap_or_default();
    if match_labels.is_none_or(|m| m.is_empty()) && exprs.is_empty() {
        return false;
    }
    if let Some(m) = match_labels {
        if !m.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    exprs.iter().all(|e| {
        let have = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            // Unknown operators fail validation upstream; match nothing.
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn table() {
        let by_labels = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            ..Default::default()
        };
        let expr = |op: &str, values: &[&str]| LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: op.into(),
                values: Some(values.iter().map(|s| s.to_string()).collect()),
            }]),
            ..Default::default()
        };
        let cases: Vec<(&LabelSelector, BTreeMap<String, String>, bool)> = vec![
            (&by_labels, labels(&[("app", "web"), ("x", "y")]), true),
            (&by_labels, labels(&[("app", "db")]), false),
            (&by_labels, labels(&[]), false),
        ];
        for (sel, l, want) in cases {
            assert_eq!(matches(sel, Some(&l)), want, "{sel:?} {l:?}");
        }
        let t = labels(&[("tier", "front")]);
        assert!(matches(&expr("In", &["front", "back"]), Some(&t)));
        assert!(!matches(&expr("NotIn", &["front"]), Some(&t)));
        assert!(matches(&expr("NotIn", &["front"]), None));
        assert!(matches(&expr("Exists", &[]), Some(&t)));
        assert!(!matches(&expr("DoesNotExist", &[]), Some(&t)));
        assert!(!matches(&LabelSelector::default(), Some(&t)));
    }
}
