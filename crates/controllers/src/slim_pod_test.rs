//! Tests of the slim cached pod: it reads what the API server sends, keeps
//! what the controllers read, and stays small.

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ContainerState, ContainerStateTerminated, ContainerStatus, Pod,
    PodCondition, PodSpec, PodStatus, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde_json::json;

use crate::slim_pod::{
    SlimContainer, SlimContainerState, SlimContainerStatus, SlimPod, SlimPodCondition, SlimPodSpec,
    SlimPodStatus,
};
use crate::test_fixtures::{time, NOW_MS};

/// A pod as Skiff's API server returns it after ServiceAccount admission,
/// scheduling and a terminated container, with a field no version of
/// Kubernetes has.
fn api_server_pod() -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-1", "namespace": "default", "uid": "u1",
            "labels": {"app": "web"},
            "managedFields": [{"manager": "kubectl", "operation": "Update"}],
        },
        "spec": {
            "nodeName": "n1",
            "hostname": "web-1",
            "subdomain": "web",
            "serviceAccountName": "default",
            "containers": [{
                "name": "app", "image": "busybox", "command": ["sleep", "3600"],
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "10m"}},
                "volumeMounts": [{"name": "kube-api-access-x1", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
            }],
            "initContainers": [{"name": "init", "image": "busybox"}],
            "volumes": [{"name": "kube-api-access-x1", "projected": {"sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            ]}}],
            "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}],
            }}},
            "aFieldFromTheFuture": {"x": 1},
        },
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.5",
            "podIPs": [{"ip": "10.0.0.5"}],
            "hostIP": "192.168.0.1",
            "startTime": "2026-01-01T00:00:00Z",
            "conditions": [{
                "type": "Ready", "status": "True",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "reason": "PodCompleted", "message": "a long message no controller reads",
            }],
            "containerStatuses": [{
                "name": "app", "image": "busybox", "imageID": "sha256:x", "ready": false,
                "restartCount": 3,
                "state": {"terminated": {"exitCode": 2, "finishedAt": "2026-01-01T00:00:00Z"}},
                "lastState": {"terminated": {"exitCode": 1}},
            }],
        },
    })
}

#[test]
fn reads_what_the_controllers_need_from_an_api_server_pod() {
    let pod: SlimPod = serde_json::from_value(api_server_pod()).unwrap();
    assert_eq!(pod.metadata.name.as_deref(), Some("web-1"));
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.node_name.as_deref(), Some("n1"));
    assert_eq!(
        (spec.hostname.as_deref(), spec.subdomain.as_deref()),
        (Some("web-1"), Some("web"))
    );
    assert_eq!(spec.containers.len(), 1, "init containers are not kept");
    let port = &spec.containers[0].ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.container_port),
        (Some("http"), 8080)
    );
    let requests = spec.containers[0].resources.as_ref().unwrap();
    assert_eq!(
        requests.requests.as_ref().unwrap()["cpu"],
        Quantity("10m".into())
    );
    assert_eq!(
        spec.tolerations.as_ref().unwrap()[0].toleration_seconds,
        Some(300)
    );
    assert!(spec.affinity.as_ref().unwrap().node_affinity.is_some());
    let status = pod.status.as_ref().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.pod_ip.as_deref(), Some("10.0.0.5"));
    assert_eq!(status.start_time, Some(time(NOW_MS)));
    let ready = &status.conditions.as_ref().unwrap()[0];
    assert_eq!(
        (ready.type_.as_str(), ready.status.as_str()),
        ("Ready", "True")
    );
    assert_eq!(ready.last_transition_time, Some(time(NOW_MS)));
    let cs = &status.container_statuses.as_ref().unwrap()[0];
    assert_eq!(cs.restart_count, 3);
    let terminated = cs.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(terminated.exit_code, 2);
    assert_eq!(terminated.finished_at, Some(time(NOW_MS)));
}

#[test]
fn a_full_pod_converts_to_the_same_slim_pod_as_its_json() {
    let full: Pod = serde_json::from_value(api_server_pod()).unwrap();
    let from_json: SlimPod = serde_json::from_value(api_server_pod()).unwrap();
    assert_eq!(SlimPod::from(&full), from_json);
}

#[test]
fn converts_every_field_it_keeps() {
    let full = Pod {
        metadata: ObjectMeta {
            name: Some("p".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("n1".into()),
            hostname: Some("h".into()),
            subdomain: Some("s".into()),
            containers: vec![Container {
                name: "c".into(),
                image: Some("busybox".into()),
                ports: Some(vec![ContainerPort {
                    container_port: 80,
                    ..Default::default()
                }]),
                resources: Some(ResourceRequirements::default()),
                ..Default::default()
            }],
            tolerations: Some(vec![Toleration::default()]),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Failed".into()),
            reason: Some("Evicted".into()),
            pod_ip: Some("10.0.0.1".into()),
            start_time: Some(time(NOW_MS)),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "False".into(),
                last_transition_time: Some(time(NOW_MS)),
                reason: Some("NodeNotReady".into()),
                ..Default::default()
            }]),
            container_statuses: Some(vec![ContainerStatus {
                name: "c".into(),
                restart_count: 1,
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 137,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    };
    let want = SlimPod {
        metadata: full.metadata.clone(),
        spec: Some(SlimPodSpec {
            node_name: Some("n1".into()),
            hostname: Some("h".into()),
            subdomain: Some("s".into()),
            containers: vec![SlimContainer {
                name: "c".into(),
                ports: Some(vec![ContainerPort {
                    container_port: 80,
                    ..Default::default()
                }]),
                resources: Some(ResourceRequirements::default()),
            }],
            tolerations: Some(vec![Toleration::default()]),
            affinity: None,
        }),
        status: Some(SlimPodStatus {
            phase: Some("Failed".into()),
            reason: Some("Evicted".into()),
            pod_ip: Some("10.0.0.1".into()),
            start_time: Some(time(NOW_MS)),
            conditions: Some(vec![SlimPodCondition {
                type_: "Ready".into(),
                status: "False".into(),
                last_transition_time: Some(time(NOW_MS)),
            }]),
            container_statuses: Some(vec![SlimContainerStatus {
                name: "c".into(),
                restart_count: 1,
                state: Some(SlimContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 137,
                        ..Default::default()
                    }),
                }),
            }]),
        }),
    };
    assert_eq!(SlimPod::from(full), want);
}

#[test]
fn null_lists_and_missing_parts_read_as_empty() {
    let pod: SlimPod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"containers": null},
        "status": null,
    }))
    .unwrap();
    assert!(pod.spec.unwrap().containers.is_empty());
    assert!(pod.status.is_none());
}

#[test]
fn a_wrongly_typed_field_is_an_error_not_a_panic() {
    let bad = json!({"metadata": {"name": "p"}, "status": {"phase": 3}});
    assert!(serde_json::from_value::<SlimPod>(bad).is_err());
}

#[test]
fn is_addressed_as_core_v1_pods() {
    assert_eq!(SlimPod::kind(&()), "Pod");
    assert_eq!(SlimPod::api_version(&()), "v1");
    assert_eq!(
        SlimPod::url_path(&(), Some("default")),
        "/api/v1/namespaces/default/pods"
    );
}

/// The point of the type (issue #4): its inline size is a fraction of a
/// k8s-openapi `Pod`'s, and a container costs a fraction of a `Container`.
#[test]
fn is_a_fraction_of_a_full_pod_inline() {
    use std::mem::size_of;
    let (slim, full) = (size_of::<SlimPod>(), size_of::<Pod>());
    println!("inline: SlimPod {slim} B, Pod {full} B");
    assert!(slim * 2 < full, "SlimPod {slim} B vs Pod {full} B");
    let (slim_c, full_c) = (size_of::<SlimContainer>(), size_of::<Container>());
    println!("inline: SlimContainer {slim_c} B, Container {full_c} B");
    assert!(
        slim_c * 10 < full_c,
        "SlimContainer {slim_c} B vs Container {full_c} B"
    );
}
