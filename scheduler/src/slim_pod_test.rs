//! The scheduler's slim pod reads every field the conversions use, from the
//! JSON the API server sends.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::json;

use super::*;
use crate::snapshot::{bound_pod, pending_pod, pod_priority, wants_scheduling};
use crate::volumes::check;

/// A pending pod that uses every scheduling feature, as the API server
/// sends it (with the token volume and fields the scheduler never reads).
fn rich_pod() -> serde_json::Value {
    let term = json!({"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"});
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "ns", "uid": "u", "labels": {"app": "web"},
                     "managedFields": [{"manager": "kubectl"}]},
        "spec": {
            "schedulerName": "default-scheduler",
            "priorityClassName": "high",
            "preemptionPolicy": "Never",
            "nodeSelector": {"disk": "ssd"},
            "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "overhead": {"cpu": "50m"},
            "containers": [{
                "name": "app", "image": "busybox", "env": [{"name": "A", "value": "1"}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi", "nvidia.com/gpu": "1"}},
                "ports": [{"containerPort": 80, "hostPort": 8080}],
                "volumeMounts": [{"name": "data", "mountPath": "/d"}],
            }],
            "initContainers": [{"name": "init", "resources": {"requests": {"cpu": "1"}}}],
            "affinity": {
                "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}},
                "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 10, "podAffinityTerm": term}]},
            },
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
                "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}],
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}},
                {"name": "kube-api-access-x", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
            ],
        },
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False"}]},
    })
}

#[test]
fn a_pending_pod_keeps_everything_the_core_needs() {
    let pod: SlimPod = serde_json::from_value(rich_pod()).unwrap();
    assert!(wants_scheduling(&pod));
    let classes = HashMap::from([("high".to_string(), 1000)]);
    let priority = pod_priority(&pod, &classes, 0);
    assert_eq!(priority, 1000);
    let p = pending_pod(&pod, priority);
    assert_eq!(p.key, "ns/web-0");
    // max(100m + 0, init 1) + 50m overhead.
    assert_eq!(p.requests.cpu_millis, 1050);
    assert_eq!(p.requests.memory, 64 << 20);
    assert_eq!(p.extended.get("nvidia.com/gpu"), Some(&1));
    assert!(p.never_preempt);
    assert_eq!(p.node_selector.get("disk").map(String::as_str), Some("ssd"));
    // Its own toleration plus memory-pressure (it is not BestEffort).
    assert_eq!(p.tolerations.len(), 2);
    assert_eq!(p.required_node_affinity.as_ref().map(Vec::len), Some(1));
    assert_eq!(p.pod_affinity.len(), 1);
    assert_eq!(p.preferred_pod_anti_affinity.len(), 1);
    assert_eq!(p.spread.len(), 1);
    assert_eq!(p.host_ports.len(), 1);
    assert_eq!(p.host_ports[0].port, 8080);
    // VolumeBinding sees the claim (and only the claim).
    let c = check(&pod, &HashMap::new(), &HashMap::new(), &HashMap::new());
    assert_eq!(
        c.unschedulable.as_deref(),
        Some("persistentvolumeclaim \"data-web-0\" not found")
    );
}

#[test]
fn a_bound_pod_holds_its_requests_until_it_finishes() {
    let mut v = rich_pod();
    v["spec"]["nodeName"] = json!("n1");
    v["status"]["phase"] = json!("Running");
    let pod: SlimPod = serde_json::from_value(v).unwrap();
    assert!(!wants_scheduling(&pod));
    let b = bound_pod(&pod, 0).unwrap();
    assert_eq!((b.node.as_str(), b.requests.cpu_millis), ("n1", 1050));
}

#[test]
fn a_full_pod_converts_to_the_same_slim_pod_as_its_json() {
    let full: Pod = serde_json::from_value(rich_pod()).unwrap();
    let from_json: SlimPod = serde_json::from_value(rich_pod()).unwrap();
    assert_eq!(SlimPod::from(full), from_json);
}

#[test]
fn a_wrongly_typed_field_is_an_error_not_a_panic() {
    let bad = json!({"metadata": {"name": "p"}, "spec": {"priority": "high"}});
    assert!(serde_json::from_value::<SlimPod>(bad).is_err());
}

/// The point of the type: pending pods cost a fraction of full ones.
#[test]
fn is_a_fraction_of_a_full_pod_inline() {
    use std::mem::size_of;
    let (slim, full) = (size_of::<SlimPod>(), size_of::<Pod>());
    println!("inline: SlimPod {slim} B, Pod {full} B");
    assert!(slim * 2 < full, "SlimPod {slim} B vs Pod {full} B");
    let (slim_c, full_c) = (size_of::<SlimContainer>(), size_of::<Container>());
    assert!(
        slim_c * 10 < full_c,
        "SlimContainer {slim_c} B vs Container {full_c} B"
    );
}
