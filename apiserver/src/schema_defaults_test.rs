//! Tests for defaulting.

use super::*;
use crate::resources::ResourceInfo;

/// Defaults `obj` as the first served resource named `plural` (core
/// first; autoscaling/v2 for HPAs).
fn defaulted(plural: &str, mut obj: Value) -> Value {
    let res = crate::resources::RESOURCES
        .iter()
        .find(|r| r.plural == plural)
        .unwrap();
    apply_defaults(res, &mut obj);
    obj
}

#[test]
fn pod_defaults() {
    let pod = defaulted(
        "pods",
        json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "image": "busybox", "ports": [{"containerPort": 80}]},
            {"name": "b", "image": "registry.local:5000/app:1.2"},
            {"name": "c", "image": "app:latest"},
            {"name": "d", "image": "app@sha256:abcd"},
        ]}}),
    );
    let spec = &pod["spec"];
    assert_eq!(spec["restartPolicy"], "Always");
    assert_eq!(spec["dnsPolicy"], "ClusterFirst");
    assert_eq!(spec["terminationGracePeriodSeconds"], 30);
    assert_eq!(spec["schedulerName"], "default-scheduler");
    assert_eq!(spec["securityContext"], json!({}));
    assert_eq!(spec["enableServiceLinks"], true);
    assert_eq!(spec["priority"], 0);
    let c = &spec["containers"];
    assert_eq!(c[0]["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(c[0]["terminationMessagePolicy"], "File");
    assert_eq!(c[0]["resources"], json!({}));
    assert_eq!(c[0]["ports"][0]["protocol"], "TCP");
    assert!(c[0]["ports"][0].get("hostPort").is_none());
    let policies: Vec<&str> = (0..4)
        .map(|i| c[i]["imagePullPolicy"].as_str().unwrap())
        .collect();
    assert_eq!(
        policies,
        ["Always", "IfNotPresent", "Always", "IfNotPresent"]
    );
    assert_eq!(
        pod["status"],
        json!({"phase": "Pending", "qosClass": "BestEffort"})
    );
}

#[test]
fn pod_defaults_keep_given_values() {
    let pod = defaulted(
        "pods",
        json!({"metadata": {"name": "p"}, "spec": {"restartPolicy": "Never", "hostNetwork": true,
            "containers": [{"name": "a", "image": "x", "imagePullPolicy": "Never", "ports": [{"containerPort": 8080, "protocol": "UDP"}],
                "readinessProbe": {"httpGet": {"port": 80}}}],
            "volumes": [{"name": "v"}, {"name": "cm", "configMap": {"name": "cm"}}]},
            "status": {"phase": "Running"}}),
    );
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["imagePullPolicy"], "Never");
    assert_eq!(
        c["ports"][0],
        json!({"containerPort": 8080, "protocol": "UDP", "hostPort": 8080})
    );
    assert_eq!(
        c["readinessProbe"],
        json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
    );
    assert_eq!(
        pod["spec"]["volumes"][0],
        json!({"name": "v", "emptyDir": {}})
    );
    assert_eq!(pod["spec"]["volumes"][1]["configMap"]["defaultMode"], 420);
    assert_eq!(pod["status"]["phase"], "Running");
}

#[test]
fn qos_classes() {
    let with = |resources: Vec<Value>| {
        let containers: Vec<Value> = resources
            .into_iter()
            .enumerate()
            .map(|(i, r)| json!({"name": format!("c{i}"), "image": "x", "resources": r}))
            .collect();
        defaulted(
            "pods",
            json!({"metadata": {"name": "p"}, "spec": {"containers": containers}}),
        )["status"]["qosClass"]
            .clone()
    };
    assert_eq!(with(vec![json!({})]), "BestEffort");
    assert_eq!(
        with(vec![json!({"requests": {"cpu": "100m"}})]),
        "Burstable"
    );
    // Limits alone default the requests, so this is Guaranteed.
    assert_eq!(
        with(vec![json!({"limits": {"cpu": "1", "memory": "1Gi"}})]),
        "Guaranteed"
    );
    assert_eq!(
        with(vec![
            json!({"requests": {"cpu": "1000m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1024Mi"}})
        ]),
        "Guaranteed"
    );
    assert_eq!(
        with(vec![
            json!({"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}})
        ]),
        "Burstable"
    );
    assert_eq!(
        with(vec![
            json!({"limits": {"cpu": "1", "memory": "1Gi"}}),
            json!({})
        ]),
        "Burstable"
    );
    assert_eq!(with(vec![json!({"requests": {"cpu": "0"}})]), "BestEffort");
}

#[test]
fn namespace_node_secret_defaults() {
    let ns = defaulted("namespaces", json!({"metadata": {"name": "team-a"}}));
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(ns["status"]["phase"], "Active");
    assert_eq!(
        ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "team-a"
    );
    let node = defaulted(
        "nodes",
        json!({"metadata": {"name": "n"}, "status": {"capacity": {"cpu": "2"}}}),
    );
    assert_eq!(node["status"]["allocatable"], json!({"cpu": "2"}));
    assert_eq!(
        defaulted("secrets", json!({"metadata": {"name": "s"}}))["type"],
        "Opaque"
    );
    // Garbage is left for validation to report.
    assert_eq!(defaulted("pods", json!("nope")), json!("nope"));
    assert_eq!(defaulted("pods", json!({"spec": 5}))["spec"], 5);
}

fn workload(group: &'static str, kind: &'static str) -> ResourceInfo {
    ResourceInfo {
        group,
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
    }
}

#[test]
fn workload_defaults_and_templates() {
    let template = json!({"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1", "resources": {"limits": {"cpu": "1"}}}]}});
    let mut d = json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": template}});
    apply_defaults(&workload("apps", "Deployment"), &mut d);
    let spec = &d["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(spec["progressDeadlineSeconds"], 600);
    assert_eq!(
        spec["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
    );
    let t = &spec["template"]["spec"];
    assert_eq!(t["restartPolicy"], "Always");
    assert_eq!(t["containers"][0]["imagePullPolicy"], "IfNotPresent");
    // Pod-only defaults stay off templates, as in Kubernetes.
    assert!(t.get("enableServiceLinks").is_none());
    assert!(t.get("priority").is_none());
    assert!(t["containers"][0]["resources"].get("requests").is_none());
    assert!(d.get("status").is_none());

    let mut recreate = json!({"spec": {"strategy": {"type": "Recreate"}}});
    apply_defaults(&workload("apps", "Deployment"), &mut recreate);
    assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));

    let mut job =
        json!({"spec": {"template": {"spec": {"containers": [], "restartPolicy": "Never"}}}});
    apply_defaults(&workload("batch", "Job"), &mut job);
    assert_eq!(job["spec"]["completions"], 1);
    assert_eq!(job["spec"]["parallelism"], 1);
    assert_eq!(job["spec"]["backoffLimit"], 6);
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");

    let mut rs = json!({"spec": {"replicas": 3}});
    apply_defaults(&workload("apps", "ReplicaSet"), &mut rs);
    assert_eq!(rs["spec"]["replicas"], 3);
}

#[test]
fn service_defaults() {
    let svc = defaulted(
        "services",
        json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns"}]}}),
    );
    let spec = &svc["spec"];
    assert_eq!(spec["type"], "ClusterIP");
    assert_eq!(spec["sessionAffinity"], "None");
    assert_eq!(spec["internalTrafficPolicy"], "Cluster");
    assert!(spec.get("externalTrafficPolicy").is_none());
    assert_eq!(
        spec["ports"][0],
        json!({"port": 80, "protocol": "TCP", "targetPort": 80})
    );
    assert_eq!(spec["ports"][1]["protocol"], "UDP");
    assert_eq!(spec["ports"][1]["targetPort"], "dns");
    let lb = defaulted(
        "services",
        json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 443}]}}),
    );
    assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
    assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
}

#[test]
fn batch_storage_and_scheduling_defaults() {
    let cj = defaulted(
        "cronjobs",
        json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}}}}),
    );
    let spec = &cj["spec"];
    assert_eq!(spec["concurrencyPolicy"], "Allow");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["successfulJobsHistoryLimit"], 3);
    assert_eq!(spec["failedJobsHistoryLimit"], 1);
    // The template gets pod defaults, not the Job's own.
    let job = &spec["jobTemplate"]["spec"];
    assert!(job.get("backoffLimit").is_none());
    assert_eq!(job["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    assert_eq!(
        job["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "Always"
    );

    let pvc = defaulted("persistentvolumeclaims", json!({"spec": {}}));
    assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
    assert_eq!(pvc["status"]["phase"], "Pending");
    let pv = defaulted("persistentvolumes", json!({"spec": {}}));
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");

    let pc = defaulted("priorityclasses", json!({"value": 10}));
    assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority");
    let builtin = builtin_priority_classes();
    assert_eq!(builtin.len(), 2);
    assert_eq!(builtin[0]["metadata"]["name"], "system-node-critical");

    let rb = defaulted(
        "rolebindings",
        json!({"subjects": [{"kind": "User", "name": "jane"}, {"kind": "ServiceAccount", "name": "sa", "namespace": "x"}]}),
    );
    assert_eq!(rb["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
    assert_eq!(rb["subjects"][1]["apiGroup"], "");
}

#[test]
fn hpa_v2_defaults() {
    let hpa = defaulted(
        "horizontalpodautoscalers",
        json!({"spec": {"maxReplicas": 3, "behavior": {"scaleDown": {"selectPolicy": "Min"}}}}),
    );
    let spec = &hpa["spec"];
    assert_eq!(spec["minReplicas"], 1);
    assert_eq!(
        spec["metrics"][0]["resource"]["target"],
        json!({"type": "Utilization", "averageUtilization": 80})
    );
    assert_eq!(spec["behavior"]["scaleDown"]["selectPolicy"], "Min");
    assert_eq!(
        spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
        300
    );
    assert_eq!(spec["behavior"]["scaleUp"]["policies"][0]["value"], 4);
    let plain = defaulted(
        "horizontalpodautoscalers",
        json!({"spec": {"maxReplicas": 3}}),
    );
    assert!(plain["spec"].get("behavior").is_none());
}
