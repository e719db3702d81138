//! Table-driven tests of pricing, scopes and the admission decision on
//! fixed objects.

use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use serde_json::json;

use crate::quantity::Quantity;
use crate::quota::admission::{check, Outcome, Refusal};
use crate::quota::resources::{pretty_print, ResourceList};
use crate::quota::scope;
use crate::quota::usage::{self, price, Priced};

fn pod(v: serde_json::Value) -> Pod {
    serde_json::from_value(v).unwrap()
}

fn list(pairs: &[(&str, &str)]) -> ResourceList {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity::parse(v).unwrap()))
        .collect()
}

fn cpu_pod(name: &str, cpu: Option<&str>) -> serde_json::Value {
    let resources = match cpu {
        Some(c) => json!({"requests": {"cpu": c}, "limits": {"cpu": c}}),
        None => json!({}),
    };
    json!({"metadata": {"name": name},
           "spec": {"containers": [{"name": "c", "image": "i", "resources": resources}]}})
}

fn quota(hard: serde_json::Value, used: Option<serde_json::Value>) -> ResourceQuota {
    let mut q =
        json!({"metadata": {"name": "q", "namespace": "ns"}, "spec": {"hard": hard.clone()}});
    if let Some(used) = used {
        q["status"] = json!({"hard": hard, "used": used});
    }
    serde_json::from_value(q).unwrap()
}

#[test]
fn pod_usage_sums_containers_and_takes_the_largest_init_container() {
    let p = pod(json!({"metadata": {"name": "p"}, "spec": {
        "containers": [
            {"name": "a", "image": "i", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m"}}},
            {"name": "b", "image": "i", "resources": {"requests": {"cpu": "250m", "memory": "64Mi", "example.com/gpu": "1"}}}
        ],
        "initContainers": [
            {"name": "big", "image": "i", "resources": {"requests": {"cpu": "2"}}},
            {"name": "side", "image": "i", "restartPolicy": "Always", "resources": {"requests": {"memory": "128Mi"}}}
        ],
        "overhead": {"cpu": "10m"}
    }}));
    let u = usage::pod_usage(&p, 0);
    assert_eq!(
        pretty_print(&u),
        "count/pods=1,cpu=2010m,limits.cpu=510m,memory=256Mi,pods=1,requests.cpu=2010m,requests.example.com/gpu=1,requests.memory=256Mi"
    );
}

#[test]
fn terminal_and_long_deleted_pods_only_count_as_objects() {
    let cases = [
        (json!({"phase": "Succeeded"}), json!({}), false),
        (json!({"phase": "Failed"}), json!({}), false),
        (json!({"phase": "Running"}), json!({}), true),
        // Deleted at t=100 with 30 s grace: charged until t=130.
        (
            json!({"phase": "Running"}),
            json!({"deletionTimestamp": "1970-01-01T00:01:40Z", "deletionGracePeriodSeconds": 30}),
            true,
        ),
    ];
    for (status, meta_extra, charged) in cases {
        let mut v = cpu_pod("p", Some("1"));
        v["status"] = status;
        for (k, val) in meta_extra.as_object().unwrap() {
            v["metadata"][k] = val.clone();
        }
        let u = usage::pod_usage(&pod(v), 120);
        assert_eq!(u.contains_key("pods"), charged, "{u:?}");
        assert_eq!(u["count/pods"], Quantity::from_units(1));
    }
    let mut v = cpu_pod("p", Some("1"));
    v["metadata"]["deletionTimestamp"] = json!("1970-01-01T00:01:40Z");
    v["metadata"]["deletionGracePeriodSeconds"] = json!(30);
    assert!(!usage::pod_is_charged(&pod(v), 131));
}

#[test]
fn services_claims_and_other_objects_are_priced() {
    let svc = price("", "services", &json!({"metadata": {"name": "s"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 443}]}}), 0).unwrap();
    assert_eq!(
        pretty_print(svc.usage()),
        "count/services=1,services=1,services.loadbalancers=1,services.nodeports=2"
    );
    let pvc = price("", "persistentvolumeclaims", &json!({"metadata": {"name": "c"}, "spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}}}), 0).unwrap();
    assert_eq!(
        pretty_print(pvc.usage()),
        "count/persistentvolumeclaims=1,fast.storageclass.storage.k8s.io/persistentvolumeclaims=1,fast.storageclass.storage.k8s.io/requests.storage=1Gi,persistentvolumeclaims=1,requests.storage=1Gi"
    );
    let cm = price("", "configmaps", &json!({}), 0).unwrap();
    assert_eq!(pretty_print(cm.usage()), "configmaps=1,count/configmaps=1");
    let d = price("apps", "deployments", &json!({}), 0).unwrap();
    assert_eq!(pretty_print(d.usage()), "count/deployments.apps=1");
}

fn priced_pod(v: serde_json::Value) -> Priced {
    price("", "pods", &v, 0).unwrap()
}

#[test]
fn admission_decisions() {
    let hard = json!({"pods": "2", "requests.cpu": "1", "count/configmaps": "3"});
    // Room left: charged.
    let q = quota(
        hard.clone(),
        Some(json!({"pods": "1", "requests.cpu": "500m", "count/configmaps": "0"})),
    );
    assert_eq!(
        check(&q, "", "pods", &priced_pod(cpu_pod("p", Some("500m")))),
        Ok(Outcome::Charge(list(&[
            ("pods", "2"),
            ("requests.cpu", "1"),
            ("count/configmaps", "0")
        ])))
    );
    // Full: refused with only what is exceeded, upstream's words.
    let q = quota(
        hard.clone(),
        Some(json!({"pods": "2", "requests.cpu": "1", "count/configmaps": "0"})),
    );
    assert_eq!(
        check(&q, "", "pods", &priced_pod(cpu_pod("p", Some("500m")))),
        Err(Refusal("exceeded quota: q, requested: pods=1,requests.cpu=500m, used: pods=2,requests.cpu=1, limited: pods=2,requests.cpu=1".into()))
    );
    // A pod without a cpu request under a cpu quota.
    assert_eq!(
        check(&q, "", "pods", &priced_pod(cpu_pod("p", None))),
        Err(Refusal(
            "failed quota: q: must specify requests.cpu for: c".into()
        ))
    );
    // Usage missing for a tracked resource.
    let partial = quota(hard.clone(), Some(json!({"pods": "0"})));
    assert_eq!(
        check(&partial, "", "pods", &priced_pod(cpu_pod("p", Some("1")))),
        Err(Refusal(
            "status unknown for quota: q, resources: requests.cpu".into()
        ))
    );
    // Not yet seen by the controller (no status.hard): not enforced yet,
    // as upstream.
    let fresh = quota(hard.clone(), None);
    assert_eq!(
        check(&fresh, "", "pods", &priced_pod(cpu_pod("p", Some("1")))),
        Ok(Outcome::NotCovered)
    );
    // A kind the quota does not track.
    assert_eq!(
        check(
            &q,
            "",
            "secrets",
            &price("", "secrets", &json!({}), 0).unwrap()
        ),
        Ok(Outcome::NotCovered)
    );
    let cm = price("", "configmaps", &json!({}), 0).unwrap();
    assert!(matches!(
        check(&q, "", "configmaps", &cm),
        Ok(Outcome::Charge(_))
    ));
}

#[test]
fn scopes_select_pods() {
    let spec = |v: serde_json::Value| serde_json::from_value(v).unwrap();
    let best_effort = pod(cpu_pod("p", None));
    let burstable = pod(cpu_pod("p", Some("1")));
    let mut terminating = cpu_pod("p", Some("1"));
    terminating["spec"]["activeDeadlineSeconds"] = json!(60);
    terminating["spec"]["priorityClassName"] = json!("high");
    let terminating = pod(terminating);
    let cases = [
        (json!({"scopes": ["BestEffort"]}), &best_effort, true),
        (json!({"scopes": ["BestEffort"]}), &burstable, false),
        (
            json!({"scopes": ["NotBestEffort", "NotTerminating"]}),
            &burstable,
            true,
        ),
        (json!({"scopes": ["Terminating"]}), &terminating, true),
        (
            json!({"scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}),
            &terminating,
            true,
        ),
        (
            json!({"scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "NotIn", "values": ["high"]}]}}),
            &terminating,
            false,
        ),
        (
            json!({"scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "NotIn", "values": ["high"]}]}}),
            &burstable,
            true,
        ),
        (
            json!({"scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "Exists"}]}}),
            &burstable,
            false,
        ),
        (
            json!({"scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "DoesNotExist"}]}}),
            &burstable,
            true,
        ),
    ];
    for (s, p, want) in cases {
        assert_eq!(scope::pod_matches(&spec(s.clone()), p), Ok(want), "{s}");
    }
    assert!(scope::pod_matches(&spec(json!({"scopes": ["Sometimes"]})), &burstable).is_err());
    // A scoped quota does not cover other kinds.
    let scoped = quota(
        json!({"count/configmaps": "1"}),
        Some(json!({"count/configmaps": "0"})),
    );
    let mut scoped = scoped;
    scoped.spec.as_mut().unwrap().scopes = Some(vec!["BestEffort".into()]);
    let cm = price("", "configmaps", &json!({}), 0).unwrap();
    assert_eq!(
        check(&scoped, "", "configmaps", &cm),
        Ok(Outcome::NotCovered)
    );
}

#[test]
fn scope_validation_names_the_field() {
    let spec = serde_json::from_value(json!({
        "scopes": ["BestEffort", "Sometimes"],
        "scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In"},
            {"scopeName": "Terminating", "operator": "In", "values": ["x"]},
            {"scopeName": "PriorityClass", "operator": "Near", "values": ["x"]}
        ]}
    }))
    .unwrap();
    let fields: Vec<String> = scope::validate(&spec).into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        [
            "spec.scopes[1]",
            "spec.scopeSelector.matchExpressions[0].values",
            "spec.scopeSelector.matchExpressions[1].operator",
            "spec.scopeSelector.matchExpressions[2].operator",
        ]
    );
}
