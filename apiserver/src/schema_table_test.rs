//! Tests for server-side printing.

use super::*;
use crate::resources::find;

fn now() -> DateTime<Utc> {
    duration::parse_time(&json!("2024-05-01T12:00:00Z")).unwrap()
}

fn pod_cells(pod: Value) -> Vec<Value> {
    let t = to_table(
        find("", "v1", "pods").unwrap(),
        &[pod],
        json!({}),
        IncludeObject::None,
        now(),
    );
    t["rows"][0]["cells"].as_array().unwrap().clone()
}

fn pod(spec: Value, status: Value) -> Value {
    json!({"metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:57:57Z"}, "spec": spec, "status": status})
}

fn one_container() -> Value {
    json!({"containers": [{"name": "c", "image": "busybox"}]})
}

#[test]
fn pod_status_column() {
    let running = json!({"name": "c", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2024-05-01T11:58:00Z"}}});
    let cases: Vec<(&str, Value, Value, &str, &str)> = vec![
        (
            "pending, no statuses",
            one_container(),
            json!({"phase": "Pending"}),
            "Pending",
            "0/1",
        ),
        (
            "running",
            one_container(),
            json!({"phase": "Running", "containerStatuses": [running]}),
            "Running",
            "1/1",
        ),
        (
            "creating",
            one_container(),
            json!({"phase": "Pending", "containerStatuses": [{"name": "c", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
            "ContainerCreating",
            "0/1",
        ),
        (
            "image pull backoff",
            one_container(),
            json!({"phase": "Pending", "containerStatuses": [{"name": "c", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}),
            "ImagePullBackOff",
            "0/1",
        ),
        (
            "err image pull",
            one_container(),
            json!({"phase": "Pending", "containerStatuses": [{"name": "c", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ErrImagePull"}}}]}),
            "ErrImagePull",
            "0/1",
        ),
        (
            "crash loop",
            one_container(),
            json!({"phase": "Running", "containerStatuses": [{"name": "c", "ready": false, "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
            "CrashLoopBackOff",
            "0/1",
        ),
        (
            "completed",
            one_container(),
            json!({"phase": "Succeeded", "containerStatuses": [{"name": "c", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
            "Completed",
            "0/1",
        ),
        (
            "exit code without reason",
            one_container(),
            json!({"phase": "Failed", "containerStatuses": [{"name": "c", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 2}}}]}),
            "ExitCode:2",
            "0/1",
        ),
        (
            "init running",
            json!({"initContainers": [{"name": "i1", "image": "x"}, {"name": "i2", "image": "x"}], "containers": [{"name": "c", "image": "x"}]}),
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "i2", "ready": false, "restartCount": 0, "state": {"running": {}}}
            ]}),
            "Init:1/2",
            "0/1",
        ),
        (
            "init crash",
            json!({"initContainers": [{"name": "i1", "image": "x"}], "containers": [{"name": "c", "image": "x"}]}),
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "ready": false, "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
            ]}),
            "Init:CrashLoopBackOff",
            "0/1",
        ),
        (
            "init failed",
            json!({"initContainers": [{"name": "i1", "image": "x"}], "containers": [{"name": "c", "image": "x"}]}),
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}
            ]}),
            "Init:Error",
            "0/1",
        ),
        (
            "sidecar counts toward ready",
            json!({"initContainers": [{"name": "s", "image": "x", "restartPolicy": "Always"}], "containers": [{"name": "c", "image": "x"}]}),
            json!({"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
                   "initContainerStatuses": [{"name": "s", "ready": true, "started": true, "restartCount": 0, "state": {"running": {}}}],
                   "containerStatuses": [running]}),
            "Running",
            "2/2",
        ),
        (
            "evicted reason",
            one_container(),
            json!({"phase": "Failed", "reason": "Evicted"}),
            "Evicted",
            "0/1",
        ),
    ];
    for (name, spec, status, want_status, want_ready) in cases {
        let cells = pod_cells(pod(spec, status));
        assert_eq!(cells[2], json!(want_status), "{name}: STATUS");
        assert_eq!(cells[1], json!(want_ready), "{name}: READY");
    }
}

#[test]
fn pod_terminating_restarts_and_wide_cells() {
    let mut p = pod(
        one_container(),
        json!({"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}], "containerStatuses": [
            {"name": "c", "ready": true, "restartCount": 5, "state": {"running": {}},
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:55:00Z"}}}
        ]}),
    );
    let cells = pod_cells(p.clone());
    assert_eq!(cells[0], json!("web"));
    assert_eq!(cells[3], json!("5 (5m ago)"));
    assert_eq!(cells[4], json!("2m3s"));
    assert_eq!(cells[5], json!("10.0.0.5"));
    assert_eq!(cells[6], json!("<none>"));
    assert_eq!(cells[7], json!("<none>"));
    assert_eq!(cells[8], json!("<none>"));
    p["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:59:00Z");
    assert_eq!(pod_cells(p)[2], json!("Terminating"));
}

#[test]
fn pod_table_shape_and_include_object() {
    let pods = find("", "v1", "pods").unwrap();
    let p = pod(one_container(), json!({"phase": "Succeeded"}));
    let t = to_table(
        pods,
        std::slice::from_ref(&p),
        json!({"resourceVersion": "7"}),
        IncludeObject::Metadata,
        now(),
    );
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(t["metadata"]["resourceVersion"], "7");
    let names: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Name",
            "Ready",
            "Status",
            "Restarts",
            "Age",
            "IP",
            "Node",
            "Nominated Node",
            "Readiness Gates"
        ]
    );
    assert_eq!(t["columnDefinitions"][5]["priority"], 1);
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "web");
    assert_eq!(t["rows"][0]["conditions"][0]["type"], "Completed");
    let t = to_table(
        pods,
        std::slice::from_ref(&p),
        json!(null),
        IncludeObject::Object,
        now(),
    );
    assert_eq!(t["rows"][0]["object"], p);
    assert_eq!(IncludeObject::from_query(None), IncludeObject::Metadata);
    assert_eq!(IncludeObject::from_query(Some("None")), IncludeObject::None);
    assert_eq!(
        IncludeObject::from_query(Some("Object")),
        IncludeObject::Object
    );
}

#[test]
fn node_rows() {
    let nodes = find("", "v1", "nodes").unwrap();
    let node = json!({
        "metadata": {"name": "n1", "creationTimestamp": "2024-04-29T12:00:00Z",
                     "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "edge"}},
        "spec": {"unschedulable": true},
        "status": {"conditions": [{"type": "Ready", "status": "True"}],
                   "addresses": [{"type": "InternalIP", "address": "192.168.1.2"}],
                   "nodeInfo": {"kubeletVersion": "v1.32.0-skiff", "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.1.0", "containerRuntimeVersion": "containerd://1.6.20"}}
    });
    let t = to_table(
        nodes,
        std::slice::from_ref(&node),
        json!({}),
        IncludeObject::None,
        now(),
    );
    assert_eq!(
        t["rows"][0]["cells"],
        json!([
            "n1",
            "Ready,SchedulingDisabled",
            "control-plane,edge",
            "2d",
            "v1.32.0-skiff",
            "192.168.1.2",
            "<none>",
            "Debian GNU/Linux 12 (bookworm)",
            "6.1.0",
            "containerd://1.6.20"
        ])
    );
    let mut not_ready = node.clone();
    not_ready["status"]["conditions"][0]["status"] = json!("Unknown");
    not_ready["spec"] = json!({});
    let t = to_table(nodes, &[not_ready], json!({}), IncludeObject::None, now());
    assert_eq!(t["rows"][0]["cells"][1], "NotReady");
    let mut bare = node;
    bare["status"] = json!({});
    bare["spec"] = json!({});
    let t = to_table(nodes, &[bare], json!({}), IncludeObject::None, now());
    assert_eq!(t["rows"][0]["cells"][1], "Unknown");
    assert_eq!(t["rows"][0]["cells"][7], "<unknown>");
}

#[test]
fn simple_kinds() {
    let created = "2024-05-01T11:00:00Z";
    let cases = vec![
        (
            "namespaces",
            json!({"metadata": {"name": "default", "creationTimestamp": created}, "status": {"phase": "Active"}}),
            json!(["default", "Active", "60m"]),
        ),
        (
            "configmaps",
            json!({"metadata": {"name": "cm", "creationTimestamp": created}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}),
            json!(["cm", 3, "60m"]),
        ),
        (
            "secrets",
            json!({"metadata": {"name": "s", "creationTimestamp": created}, "type": "Opaque", "data": {"a": "MQ=="}}),
            json!(["s", "Opaque", 1, "60m"]),
        ),
        (
            "serviceaccounts",
            json!({"metadata": {"name": "default", "creationTimestamp": created}}),
            json!(["default", 0, "60m"]),
        ),
    ];
    for (plural, obj, want) in cases {
        let t = to_table(
            find("", "v1", plural).unwrap(),
            &[obj],
            json!({}),
            IncludeObject::None,
            now(),
        );
        assert_eq!(t["rows"][0]["cells"], want, "{plural}");
    }
    let lease = json!({"metadata": {"name": "n1", "creationTimestamp": created}, "spec": {"holderIdentity": "n1"}});
    let t = to_table(
        find("coordination.k8s.io", "v1", "leases").unwrap(),
        &[lease],
        json!({}),
        IncludeObject::None,
        now(),
    );
    assert_eq!(t["rows"][0]["cells"], json!(["n1", "n1", "60m"]));
}

#[test]
fn event_rows() {
    let ev = json!({
        "metadata": {"name": "web.17a", "creationTimestamp": "2024-05-01T11:59:00Z"},
        "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{c}"},
        "reason": "Pulled", "type": "Normal", "message": "Image pulled \n",
        "source": {"component": "kubelet", "host": "n1"},
        "firstTimestamp": "2024-05-01T11:50:00Z", "lastTimestamp": "2024-05-01T11:59:30Z", "count": 2
    });
    let t = to_table(
        find("", "v1", "events").unwrap(),
        &[ev],
        json!({}),
        IncludeObject::None,
        now(),
    );
    assert_eq!(
        t["rows"][0]["cells"],
        json!([
            "30s",
            "Normal",
            "Pulled",
            "pod/web",
            "spec.containers{c}",
            "kubelet, n1",
            "Image pulled",
            "10m",
            2,
            "web.17a"
        ])
    );
    let cols = t["columnDefinitions"].as_array().unwrap();
    assert_eq!(cols.len(), 10);
    assert_eq!(cols[0]["name"], "Last Seen");
}

#[test]
fn deployment_and_replica_set_rows() {
    let info = |kind: &'static str| crate::resources::ResourceInfo {
        group: "apps",
        version: "v1",
        plural: "x",
        singular: "x",
        kind,
        list_kind: "XList",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
    };
    let d = json!({
        "metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:00:00Z"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "tier": "fe"},
                 "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}, {"key": "canary", "operator": "DoesNotExist"}]},
                 "template": {"spec": {"containers": [{"name": "c", "image": "nginx:1"}, {"name": "s", "image": "side:2"}]}}},
        "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
    });
    let t = to_table(
        &info("Deployment"),
        std::slice::from_ref(&d),
        json!({}),
        IncludeObject::None,
        now(),
    );
    assert_eq!(
        t["rows"][0]["cells"],
        json!([
            "web",
            "2/3",
            3,
            2,
            "60m",
            "c,s",
            "nginx:1,side:2",
            "app=web,!canary,env in (dev,prod),tier=fe"
        ])
    );
    let t = to_table(
        &info("ReplicaSet"),
        &[d],
        json!({}),
        IncludeObject::None,
        now(),
    );
    assert_eq!(
        t["rows"][0]["cells"],
        json!([
            "web",
            3,
            3,
            2,
            "60m",
            "c,s",
            "nginx:1,side:2",
            "app=web,!canary,env in (dev,prod),tier=fe"
        ])
    );
    assert_eq!(t["columnDefinitions"][1]["name"], "Desired");
}
