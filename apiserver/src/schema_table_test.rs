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
        custom: None,
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

fn cells_of(group: &str, version: &str, plural: &str, obj: Value) -> Value {
    let t = to_table(
        find(group, version, plural).unwrap(),
        &[obj],
        json!({}),
        IncludeObject::None,
        now(),
    );
    t["rows"][0]["cells"].clone()
}

fn names_of(group: &str, version: &str, plural: &str) -> Vec<String> {
    let t = to_table(
        find(group, version, plural).unwrap(),
        &[] as &[Value],
        json!({}),
        IncludeObject::None,
        now(),
    );
    t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["priority"] == 0)
        .map(|c| c["name"].as_str().unwrap().to_uppercase())
        .collect()
}

const CREATED: &str = "2024-05-01T11:00:00Z";

#[test]
fn workload_columns_match_kubectl() {
    for (group, plural, want) in [
        ("apps", "statefulsets", "NAME READY AGE"),
        (
            "apps",
            "daemonsets",
            "NAME DESIRED CURRENT READY UP-TO-DATE AVAILABLE NODE SELECTOR AGE",
        ),
        ("batch", "jobs", "NAME STATUS COMPLETIONS DURATION AGE"),
        (
            "batch",
            "cronjobs",
            "NAME SCHEDULE TIMEZONE SUSPEND ACTIVE LAST SCHEDULE AGE",
        ),
        (
            "policy",
            "poddisruptionbudgets",
            "NAME MIN AVAILABLE MAX UNAVAILABLE ALLOWED DISRUPTIONS AGE",
        ),
        (
            "",
            "services",
            "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE",
        ),
        ("", "endpoints", "NAME ENDPOINTS AGE"),
        (
            "",
            "persistentvolumeclaims",
            "NAME STATUS VOLUME CAPACITY ACCESS MODES STORAGECLASS VOLUMEATTRIBUTESCLASS AGE",
        ),
        ("", "resourcequotas", "NAME AGE REQUEST LIMIT"),
        (
            "rbac.authorization.k8s.io",
            "clusterroles",
            "NAME CREATED AT",
        ),
    ] {
        let version = "v1";
        assert_eq!(names_of(group, version, plural).join(" "), want, "{plural}");
    }
    assert_eq!(
        names_of("autoscaling", "v2", "horizontalpodautoscalers").join(" "),
        "NAME REFERENCE TARGETS MINPODS MAXPODS REPLICAS AGE"
    );
}

#[test]
fn workload_rows() {
    let sts = json!({"metadata": {"name": "db", "creationTimestamp": CREATED},
        "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "db", "image": "pg:16"}]}}},
        "status": {"readyReplicas": 2}});
    assert_eq!(
        cells_of("apps", "v1", "statefulsets", sts),
        json!(["db", "2/3", "60m", "db", "pg:16"])
    );

    let job = |status: Value, spec: Value| {
        let mut j = json!({"metadata": {"name": "pi", "creationTimestamp": CREATED},
            "spec": {"template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}},
                     "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}}},
            "status": status});
        for (k, v) in spec.as_object().unwrap() {
            j["spec"][k] = v.clone();
        }
        cells_of("batch", "v1", "jobs", j)
    };
    let done = job(
        json!({"succeeded": 1, "startTime": "2024-05-01T11:00:00Z", "completionTime": "2024-05-01T11:00:42Z",
               "conditions": [{"type": "Complete", "status": "True"}]}),
        json!({"completions": 1, "parallelism": 1}),
    );
    assert_eq!(
        done,
        json!([
            "pi",
            "Complete",
            "1/1",
            "42s",
            "60m",
            "pi",
            "perl",
            "batch.kubernetes.io/controller-uid=u"
        ])
    );
    let queue = job(
        json!({"startTime": "2024-05-01T11:58:00Z"}),
        json!({"parallelism": 3}),
    );
    assert_eq!(queue[1], "Running");
    assert_eq!(queue[2], "0/1 of 3");
    assert_eq!(queue[3], "2m");

    let cj = json!({"metadata": {"name": "tick", "creationTimestamp": CREATED},
        "spec": {"schedule": "*/5 * * * *", "suspend": false,
                 "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "t", "image": "busybox"}]}}}}},
        "status": {"active": [{"name": "tick-1"}], "lastScheduleTime": "2024-05-01T11:55:00Z"}});
    assert_eq!(
        cells_of("batch", "v1", "cronjobs", cj),
        json!([
            "tick",
            "*/5 * * * *",
            "<none>",
            "False",
            1,
            "5m",
            "60m",
            "t",
            "busybox",
            ""
        ])
    );

    let ds = json!({"metadata": {"name": "agent", "creationTimestamp": CREATED},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
                 "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": []}}},
        "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1,
                   "updatedNumberScheduled": 2, "numberAvailable": 1}});
    let cells = cells_of("apps", "v1", "daemonsets", ds);
    assert_eq!(
        cells.as_array().unwrap()[..8],
        json!(["agent", 2, 2, 1, 2, 1, "kubernetes.io/os=linux", "60m"])
            .as_array()
            .unwrap()[..]
    );

    let hpa = json!({"metadata": {"name": "web", "creationTimestamp": CREATED},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
                 "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
                    {"type": "Pods", "pods": {"target": {"type": "AverageValue", "averageValue": "1k"}}}]},
        "status": {"currentReplicas": 2, "currentMetrics": [
            {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 12}}}]}});
    assert_eq!(
        cells_of("autoscaling", "v2", "horizontalpodautoscalers", hpa),
        json!([
            "web",
            "Deployment/web",
            "cpu: 12%/50%, memory: <unknown>/100Mi + 1 more...",
            "1",
            5,
            2,
            "60m"
        ])
    );

    let pdb = json!({"metadata": {"name": "web", "creationTimestamp": CREATED},
        "spec": {"maxUnavailable": "25%"}, "status": {"disruptionsAllowed": 1}});
    assert_eq!(
        cells_of("policy", "v1", "poddisruptionbudgets", pdb),
        json!(["web", "N/A", "25%", 1, "60m"])
    );

    let rev = json!({"metadata": {"name": "agent-1", "creationTimestamp": CREATED,
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": "u", "controller": true}]},
        "revision": 1});
    assert_eq!(
        cells_of("apps", "v1", "controllerrevisions", rev),
        json!(["agent-1", "daemonset.apps/agent", 1, "60m"])
    );
}

#[test]
fn service_storage_and_rbac_rows() {
    let svc = |spec: Value, status: Value| {
        cells_of(
            "",
            "v1",
            "services",
            json!({"metadata": {"name": "web", "creationTimestamp": CREATED}, "spec": spec, "status": status}),
        )
    };
    assert_eq!(
        svc(
            json!({"type": "ClusterIP", "clusterIP": "10.96.0.10", "selector": {"app": "web"},
                   "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}),
            json!({})
        ),
        json!([
            "web",
            "ClusterIP",
            "10.96.0.10",
            "<none>",
            "80/TCP,53/UDP",
            "60m",
            "app=web"
        ])
    );
    let lb = svc(
        json!({"type": "LoadBalancer", "ports": [{"port": 443, "nodePort": 30443, "protocol": "TCP"}]}),
        json!({}),
    );
    assert_eq!(lb[2], "<none>");
    assert_eq!(lb[3], "<pending>");
    assert_eq!(lb[4], "443:30443/TCP");
    assert_eq!(lb[6], "<none>");

    let ep = json!({"metadata": {"name": "web", "creationTimestamp": CREATED}, "subsets": [
        {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 81}]}]});
    assert_eq!(
        cells_of("", "v1", "endpoints", ep)[1],
        "10.0.0.1:80,10.0.0.2:80,10.0.0.1:81 + 1 more..."
    );

    let pvc = json!({"metadata": {"name": "data", "creationTimestamp": CREATED},
        "spec": {"volumeName": "pv1", "storageClassName": "local", "volumeMode": "Filesystem"},
        "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"]}});
    assert_eq!(
        cells_of("", "v1", "persistentvolumeclaims", pvc),
        json!([
            "data",
            "Bound",
            "pv1",
            "1Gi",
            "RWO,ROX",
            "local",
            "<unset>",
            "60m",
            "Filesystem"
        ])
    );

    let quota = json!({"metadata": {"name": "q", "creationTimestamp": CREATED},
        "status": {"hard": {"pods": "10", "limits.cpu": "4", "requests.cpu": "2"},
                   "used": {"pods": "3", "requests.cpu": "500m"}}});
    assert_eq!(
        cells_of("", "v1", "resourcequotas", quota),
        json!([
            "q",
            "60m",
            "pods: 3/10, requests.cpu: 500m/2",
            "limits.cpu: 0/4"
        ])
    );

    let rb = json!({"metadata": {"name": "rb", "creationTimestamp": CREATED},
        "roleRef": {"kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "name": "jane"}, {"kind": "Group", "name": "devs"},
                     {"kind": "ServiceAccount", "name": "bot", "namespace": "ci"}]});
    assert_eq!(
        cells_of("rbac.authorization.k8s.io", "v1", "rolebindings", rb),
        json!(["rb", "ClusterRole/view", "60m", "jane", "devs", "ci/bot"])
    );
    let role = json!({"metadata": {"name": "r", "creationTimestamp": CREATED}});
    assert_eq!(
        cells_of("rbac.authorization.k8s.io", "v1", "roles", role),
        json!(["r", CREATED])
    );
    let pc = json!({"metadata": {"name": "high", "creationTimestamp": CREATED}, "value": 1000,
        "preemptionPolicy": "PreemptLowerPriority"});
    assert_eq!(
        cells_of("scheduling.k8s.io", "v1", "priorityclasses", pc),
        json!(["high", 1000, false, "60m", "PreemptLowerPriority"])
    );
}
