//! The quota controller's usage sum on fixed namespaces.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, ResourceQuota, Service};
use serde_json::json;

use crate::quota::core::{reconcile, source_of, sources, used, Objects, Source};

fn quota(spec: serde_json::Value, status: Option<serde_json::Value>) -> ResourceQuota {
    let mut q = json!({"metadata": {"name": "q", "namespace": "ns"}, "spec": spec});
    if let Some(s) = status {
        q["status"] = s;
    }
    serde_json::from_value(q).unwrap()
}

fn pod(cpu: &str, phase: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]},
        "status": {"phase": phase}
    }))
    .unwrap()
}

fn printed(q: &ResourceQuota, objects: &Objects) -> String {
    skiff_api::quota::resources::pretty_print(&used(q, objects, 0))
}

#[test]
fn sources_of_quota_names() {
    let count = |g: &str, r: &str| {
        Some(Source::Count {
            group: g.into(),
            resource: r.into(),
        })
    };
    assert_eq!(source_of("pods"), Some(Source::Pods));
    assert_eq!(source_of("requests.memory"), Some(Source::Pods));
    assert_eq!(source_of("count/pods"), Some(Source::Pods));
    assert_eq!(source_of("services.nodeports"), Some(Source::Services));
    assert_eq!(
        source_of("gold.storageclass.storage.k8s.io/requests.storage"),
        Some(Source::Claims)
    );
    assert_eq!(source_of("configmaps"), count("", "configmaps"));
    assert_eq!(source_of("count/configmaps"), count("", "configmaps"));
    assert_eq!(
        source_of("count/deployments.apps"),
        count("apps", "deployments")
    );
    assert_eq!(
        source_of("count/widgets.example.com"),
        count("example.com", "widgets")
    );
    assert_eq!(source_of("bananas"), None);
}

#[test]
fn usage_sums_live_pods_and_counts() {
    let q = quota(
        json!({"hard": {"pods": "5", "requests.cpu": "2", "memory": "8Gi", "count/pods": "10",
                        "count/configmaps": "3", "count/widgets.example.com": "1", "bananas": "1"}}),
        None,
    );
    let (a, b, done) = (
        pod("500m", "Running"),
        pod("250m", "Pending"),
        pod("1", "Succeeded"),
    );
    let objects = Objects {
        pods: vec![&a, &b, &done],
        counts: BTreeMap::from([(("".into(), "configmaps".into()), 2)]),
        ..Default::default()
    };
    // No entry for a name nothing prices, nor for a kind not served.
    assert_eq!(
        printed(&q, &objects),
        "count/configmaps=2,count/pods=3,memory=2Gi,pods=2,requests.cpu=750m"
    );
    assert_eq!(
        sources(&q),
        [
            Source::Pods,
            Source::Count {
                group: "".into(),
                resource: "configmaps".into()
            },
            Source::Count {
                group: "example.com".into(),
                resource: "widgets".into()
            },
        ]
    );
}

#[test]
fn scoped_quotas_count_matching_pods_only() {
    let q = quota(
        json!({"hard": {"pods": "5", "services": "2"}, "scopes": ["BestEffort"]}),
        None,
    );
    let burstable = pod("1", "Running");
    let best_effort: Pod = serde_json::from_value(json!({
        "metadata": {"name": "b"}, "spec": {"containers": [{"name": "c", "image": "i"}]}
    }))
    .unwrap();
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "s"}})).unwrap();
    let objects = Objects {
        pods: vec![&burstable, &best_effort],
        services: vec![&svc],
        ..Default::default()
    };
    assert_eq!(printed(&q, &objects), "pods=1,services=0");
}

#[test]
fn status_is_written_only_when_it_changes() {
    let spec = json!({"hard": {"pods": "2", "requests.cpu": "1"}});
    let a = pod("500m", "Running");
    let objects = Objects {
        pods: vec![&a],
        ..Default::default()
    };
    let fresh = quota(spec.clone(), None);
    let status = reconcile(&fresh, &objects, 0).expect("a first status");
    let as_json = serde_json::to_value(&status).unwrap();
    assert_eq!(
        as_json,
        json!({"hard": {"pods": "2", "requests.cpu": "1"}, "used": {"pods": "1", "requests.cpu": "500m"}})
    );
    // The same values written differently are the same status.
    let synced = quota(
        spec.clone(),
        Some(
            json!({"hard": {"pods": "2", "requests.cpu": "1000m"}, "used": {"pods": "1", "requests.cpu": "0.5"}}),
        ),
    );
    assert!(reconcile(&synced, &objects, 0).is_none());
    // A charge the pods do not show (its create failed) is given back.
    let overcharged = quota(
        spec,
        Some(
            json!({"hard": {"pods": "2", "requests.cpu": "1"}, "used": {"pods": "2", "requests.cpu": "1"}}),
        ),
    );
    let fixed = reconcile(&overcharged, &objects, 0).unwrap();
    assert_eq!(fixed.used.unwrap()["pods"].0, "1");
}
