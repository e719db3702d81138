use super::*;
use crate::resources::find;
use serde_json::json;

fn pod(labels: Value) -> Value {
    json!({"metadata": {"name": "p", "namespace": "default", "labels": labels},
           "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
}

#[test]
fn label_selector_table() {
    let cases: &[(&str, Value, bool)] = &[
        ("", json!({}), true),
        ("app=web", json!({"app": "web"}), true),
        ("app==web", json!({"app": "web"}), true),
        ("app=web", json!({"app": "db"}), false),
        ("app!=web", json!({"app": "db"}), true),
        ("app!=web", json!({}), true),
        ("app in (web,db)", json!({"app": "db"}), true),
        ("app in (web, db)", json!({"app": "x"}), false),
        ("app notin (web,db)", json!({"app": "x"}), true),
        ("app notin (web,db)", json!({}), true),
        ("app", json!({"app": ""}), true),
        ("app", json!({}), false),
        ("!app", json!({}), true),
        ("!app", json!({"app": "x"}), false),
        (
            "app=web,tier in (fe),!canary",
            json!({"app": "web", "tier": "fe"}),
            true,
        ),
        (
            "app=web,tier in (fe),!canary",
            json!({"app": "web", "tier": "fe", "canary": "1"}),
            false,
        ),
        ("example.com/role=x", json!({"example.com/role": "x"}), true),
        ("gen>2", json!({"gen": "3"}), true),
        ("gen<2", json!({"gen": "3"}), false),
    ];
    for (sel, labels, want) in cases {
        let s = LabelSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
        assert_eq!(s.matches(&pod(labels.clone())), *want, "{sel} on {labels}");
    }
}

#[test]
fn bad_label_selectors_are_400() {
    for sel in ["app=a b", "app in web", "=x", "a,,b", "-bad=x", "x>y"] {
        let e = LabelSelector::parse(sel).unwrap_err();
        assert_eq!(e.status_code(), 400, "{sel}");
    }
}

#[test]
fn field_selectors_for_pods() {
    let pods = find("", "v1", "pods").unwrap();
    let p = pod(json!({}));
    let cases: &[(&str, bool)] = &[
        ("metadata.name=p", true),
        ("metadata.name==p", true),
        ("metadata.name!=p", false),
        ("metadata.namespace=default", true),
        ("spec.nodeName=n1", true),
        ("spec.nodeName=", false),
        ("spec.nodeName!=", true),
        ("status.phase!=Succeeded,status.phase!=Failed", true),
        ("status.phase=Running,spec.nodeName=n2", false),
        ("spec.hostNetwork=false", true),
    ];
    for (sel, want) in cases {
        let s = FieldSelector::parse(sel, pods).unwrap_or_else(|e| panic!("{sel}: {e}"));
        assert_eq!(s.matches(pods, &p), *want, "{sel}");
    }
    let s = FieldSelector::parse("metadata.name=p", pods).unwrap();
    assert_eq!(s.pinned_name(), Some("p"));
}

#[test]
fn unsupported_field_is_400_with_kubernetes_message() {
    let pods = find("", "v1", "pods").unwrap();
    let e = FieldSelector::parse("spec.foo=x", pods).unwrap_err();
    assert_eq!(e.status_code(), 400);
    assert_eq!(e.to_string(), "field label not supported: spec.foo");
    let nodes = find("", "v1", "nodes").unwrap();
    assert!(FieldSelector::parse("metadata.namespace=x", nodes).is_err());
    assert!(FieldSelector::parse("status.phase=Running", nodes).is_err());
    assert!(FieldSelector::parse("spec.unschedulable=false", nodes).is_ok());
}

#[test]
fn escaped_field_values() {
    let cms = find("", "v1", "configmaps").unwrap();
    let s = FieldSelector::parse(r"metadata.name=a\,b", cms).unwrap();
    assert_eq!(s.requirements[0].value, "a,b");
    assert!(s.matches(cms, &json!({"metadata": {"name": "a,b"}})));
}

#[test]
fn multibyte_selectors_do_not_panic() {
    let cms = find("", "v1", "configmaps").unwrap();
    let s = FieldSelector::parse("metadata.name=éü", cms).unwrap();
    assert_eq!(s.requirements[0].value, "éü");
    assert!(
        FieldSelector::parse("metadata.name=é!=ü", cms).is_err(),
        "`!=` splits first, as in Kubernetes"
    );
    assert!(FieldSelector::parse("ééé", cms).is_err());
    assert!(LabelSelector::parse("é=ü").is_err());
}
