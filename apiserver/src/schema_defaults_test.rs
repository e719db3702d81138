//! Tests for defaulting.

use super::*;
use crate::resources::{find, ResourceInfo};

fn defaulted(plural: &str, mut obj: Value) -> Value {
    apply_defaults(find("", "v1", plural).unwrap(), &mut obj);
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
