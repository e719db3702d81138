use super::*;

#[test]
fn quota_validation_checks_quantities_and_scopes() {
    let ok =
        json!({"spec": {"hard": {"pods": "2", "requests.cpu": "500m"}, "scopes": ["BestEffort"]}});
    assert!(validate(&ok).is_empty());
    let bad =
        json!({"spec": {"hard": {"pods": "-1", "requests.cpu": "lots"}, "scopes": ["Sometimes"]}});
    let fields: Vec<String> = validate(&bad).into_iter().map(|e| e.field).collect();
    assert_eq!(
        fields,
        [
            "spec.hard[pods]",
            "spec.hard[requests.cpu]",
            "spec.scopes[0]"
        ]
    );
}
