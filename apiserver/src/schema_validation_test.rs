//! Tests for validation and unknown-field detection.

use super::*;
use crate::defaults::apply_defaults;
use crate::resources::find;
use serde_json::json;

fn pods() -> &'static ResourceInfo {
    find("", "v1", "pods").unwrap()
}

fn messages(resource: &ResourceInfo, mut obj: Value, old: Option<&Value>) -> Vec<String> {
    apply_defaults(resource, &mut obj);
    validate(resource, &obj, old)
        .iter()
        .map(FieldError::message)
        .collect()
}

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

#[test]
fn valid_pod_passes() {
    let p = pod(
        json!({"containers": [{"name": "c", "image": "busybox", "ports": [{"containerPort": 80, "name": "http"}],
        "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "1", "memory": "64Mi"}}}]}),
    );
    assert_eq!(messages(pods(), p, None), Vec::<String>::new());
}

#[test]
fn metadata_names() {
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({"name": "Web", "namespace": "default"}), vec![
            "metadata.name: Invalid value: \"Web\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        ]),
        (json!({"namespace": "default"}), vec!["metadata.name: Required value: name or generateName is required"]),
        (json!({"generateName": "web-", "namespace": "default"}), vec![]),
        (json!({"name": "web"}), vec!["metadata.namespace: Required value"]),
        (json!({"name": "web", "namespace": "default", "labels": {"app": "a b", "bad/key/x": "v"}}), vec![
            "metadata.labels: Invalid value: \"a b\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            "metadata.labels: Invalid value: \"bad/key/x\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
        ]),
        (json!({"name": "web", "namespace": "default", "annotations": {"big": "x".repeat(300 * 1024)}}), vec![
            "metadata.annotations: Too long: must have at most 262144 bytes",
        ]),
    ];
    for (meta, want) in cases {
        let mut p = pod(json!({"containers": [{"name": "c", "image": "x"}]}));
        p["metadata"] = meta.clone();
        let mut got = messages(pods(), p, None);
        got.sort();
        let mut want: Vec<String> = want.into_iter().map(String::from).collect();
        want.sort();
        assert_eq!(got, want, "{meta}");
    }
    let ns = find("", "v1", "namespaces").unwrap();
    let got = messages(ns, json!({"metadata": {"name": "a.b"}}), None);
    assert_eq!(got, ["metadata.name: Invalid value: \"a.b\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"]);
    let got = messages(
        find("", "v1", "nodes").unwrap(),
        json!({"metadata": {"name": "n1", "namespace": "x"}}),
        None,
    );
    assert_eq!(
        got,
        ["metadata.namespace: Forbidden: not allowed on this type"]
    );
}

#[test]
fn pod_spec_rules() {
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({}), vec!["spec.containers: Required value"]),
        (json!({"containers": []}), vec!["spec.containers: Required value"]),
        (json!({"containers": [{"name": "c"}]}), vec!["spec.containers[0].image: Required value"]),
        (json!({"containers": [{"image": "x"}]}), vec!["spec.containers[0].name: Required value"]),
        (json!({"containers": [{"name": "c", "image": "x"}, {"name": "c", "image": "y"}]}), vec!["spec.containers[1].name: Duplicate value: \"c\""]),
        (json!({"initContainers": [{"name": "c", "image": "x"}], "containers": [{"name": "c", "image": "y"}]}), vec!["spec.containers[0].name: Duplicate value: \"c\""]),
        (json!({"containers": [{"name": "c", "image": "x"}], "restartPolicy": "Sometimes"}), vec![
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
        ]),
        (json!({"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 70000}, {"containerPort": 0}]}]}), vec![
            "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.containers[0].ports[1].containerPort: Required value",
        ]),
        (json!({"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 80, "protocol": "HTTP"}]}]}), vec![
            "spec.containers[0].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
        ]),
        (json!({"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}]}), vec![
            "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
        ]),
        (json!({"containers": [{"name": "c", "image": "x", "resources": {"requests": {"memory": "lots"}}}]}), vec![
            "spec.containers[0].resources.requests[memory]: Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ]),
        (json!({"containers": [{"name": "Bad_Name", "image": "x"}]}), vec![
            "spec.containers[0].name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        ]),
    ];
    for (spec, want) in cases {
        let got = messages(pods(), pod(spec.clone()), None);
        assert_eq!(got, want, "{spec}");
    }
}

#[test]
fn undecodable_bodies_are_field_errors() {
    let p = pod(
        json!({"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": "eighty"}]}]}),
    );
    let errs = validate(pods(), &p, None);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].message().starts_with(
            "Invalid value: Pod in version \"v1\" cannot be handled as a Pod: invalid type"
        ),
        "{}",
        errs[0].message()
    );
    assert_eq!(validate(pods(), &json!([1, 2]), None).len(), 1);
    let mut wrong = p.clone();
    wrong["apiVersion"] = json!("apps/v1");
    assert_eq!(validate(pods(), &wrong, None).len(), 1);
}

#[test]
fn pod_updates() {
    let base = pod(
        json!({"containers": [{"name": "c", "image": "busybox:1"}], "activeDeadlineSeconds": 100,
        "tolerations": [{"key": "a", "operator": "Exists"}]}),
    );
    let mut old = base.clone();
    apply_defaults(pods(), &mut old);

    let mut ok = base.clone();
    ok["spec"]["containers"][0]["image"] = json!("busybox:2");
    ok["spec"]["activeDeadlineSeconds"] = json!(50);
    ok["spec"]["tolerations"] =
        json!([{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]);
    assert_eq!(messages(pods(), ok, Some(&old)), Vec::<String>::new());

    let mut bad = base.clone();
    bad["spec"]["restartPolicy"] = json!("Never");
    let got = messages(pods(), bad, Some(&old));
    assert_eq!(got.len(), 1);
    assert!(got[0].starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"), "{}", got[0]);
    assert!(got[0].contains("spec.restartPolicy"));

    let mut more = base.clone();
    more["spec"]["containers"] = json!([{"name": "c", "image": "x"}, {"name": "d", "image": "y"}]);
    assert_eq!(
        messages(pods(), more, Some(&old)),
        ["spec.containers: Forbidden: pod updates may not add or remove containers"]
    );

    let mut longer = base.clone();
    longer["spec"]["activeDeadlineSeconds"] = json!(200);
    assert_eq!(messages(pods(), longer, Some(&old)), ["spec.activeDeadlineSeconds: Invalid value: 200: must be less than or equal to previous value"]);

    let mut dropped = base.clone();
    dropped["spec"]["tolerations"] = json!([]);
    assert_eq!(messages(pods(), dropped, Some(&old)), ["spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"]);

    let mut renamed = base;
    renamed["metadata"]["name"] = json!("other");
    assert_eq!(
        messages(pods(), renamed, Some(&old)),
        ["metadata.name: Invalid value: \"other\": field is immutable"]
    );
}

#[test]
fn config_map_keys() {
    let cm = find("", "v1", "configmaps").unwrap();
    let got = messages(
        cm,
        json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"ok.key": "1", "bad key": "2"}}),
        None,
    );
    assert_eq!(got, ["data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"]);
}

#[test]
fn unknown_field_paths() {
    let p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"any": "thing"}, "bogus": 1},
        "spec": {"containers": [{"name": "c", "image": "x", "imagePullPolcy": "Always", "env": [{"name": "A", "vaule": "1"}]}],
                 "nodeName": null},
        "extra": true});
    let mut got = unknown_fields(pods(), &p);
    got.sort();
    assert_eq!(
        got,
        [
            "extra",
            "metadata.bogus",
            "spec.containers[0].env[0].vaule",
            "spec.containers[0].imagePullPolcy"
        ]
    );
    assert_eq!(
        strict_decoding_message(pods(), &got[2..]),
        "Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"spec.containers[0].env[0].vaule\", unknown field \"spec.containers[0].imagePullPolcy\""
    );
    let clean = json!({"metadata": {"name": "x", "annotations": {}}, "spec": {"containers": []}, "status": {}});
    assert_eq!(unknown_fields(pods(), &clean), Vec::<String>::new());
    let secret = json!({"metadata": {"name": "s"}, "data": {"a": "MQ=="}, "stringData": {"b": "2"}, "type": "Opaque"});
    assert_eq!(
        unknown_fields(find("", "v1", "secrets").unwrap(), &secret),
        Vec::<String>::new()
    );
    let lease = json!({"metadata": {"name": "n"}, "spec": {"holderIdentity": "n", "leaseDurationSeconds": 40, "renewTime": "2024-01-01T00:00:00.000000Z", "holder": 1}});
    assert_eq!(
        unknown_fields(find("coordination.k8s.io", "v1", "leases").unwrap(), &lease),
        ["spec.holder"]
    );
}

#[test]
fn unknown_fields_are_pruned_and_known_ones_kept_as_sent() {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "labels": {"any": "thing"}, "bogus": 1},
        "spec": {"containers": [{"name": "c", "image": "x", "imagePullPolcy": "Always",
                                 "resources": {"requests": {"cpu": "0.5"}},
                                 "env": [{"name": "A", "vaule": "1"}]}],
                 "volumes": [{"name": "v", "emptyDir": {}}]},
        "extra": true});
    prune_unknown_fields(pods(), &mut p);
    assert_eq!(
        p,
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "labels": {"any": "thing"}},
            "spec": {"containers": [{"name": "c", "image": "x",
                                     "resources": {"requests": {"cpu": "0.5"}},
                                     "env": [{"name": "A"}]}],
                     "volumes": [{"name": "v", "emptyDir": {}}]}})
    );
    assert_eq!(unknown_fields(pods(), &p), Vec::<String>::new());
}

/// Bodies of every wrong shape go through defaulting, validation, unknown
/// field detection and table printing without a panic.
#[test]
fn garbage_never_panics() {
    let garbage = [
        json!(null),
        json!(7),
        json!("pod"),
        json!([]),
        json!({}),
        json!({"metadata": 5, "spec": "x", "status": []}),
        json!({"metadata": {"name": 3, "labels": [1], "annotations": "a"}, "spec": {"containers": "c", "volumes": {}}}),
        json!({"metadata": {"name": "x", "namespace": "y"}, "spec": {"containers": [1, null, {"name": 2, "ports": [3, {"containerPort": "a"}], "resources": {"limits": 4}}],
            "initContainers": [[]], "tolerations": 1}, "status": {"containerStatuses": [1, {"state": 2}], "initContainerStatuses": "x", "conditions": [null]}}),
        json!({"metadata": {"deletionTimestamp": 5, "creationTimestamp": "not a time"}, "status": {"conditions": {"type": "Ready"}, "addresses": [{}]},
            "involvedObject": 1, "series": {"count": "x"}, "data": [1], "secrets": {}}),
    ];
    let now = chrono::Utc::now();
    for r in crate::resources::RESOURCES {
        for g in &garbage {
            let mut obj = g.clone();
            apply_defaults(r, &mut obj);
            let _ = validate(r, &obj, Some(g));
            let _ = validate(r, g, None);
            let _ = unknown_fields(r, g);
            let _ = crate::table::to_table(
                r,
                &[g.clone(), obj],
                json!(null),
                crate::table::IncludeObject::Metadata,
                now,
            );
        }
    }
}

/// What `kubectl get pod -o json` returns from a real cluster has no unknown fields.
#[test]
fn realistic_pod_has_no_unknown_fields() {
    let p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-7d9c", "generateName": "web-", "namespace": "default", "uid": "b1", "resourceVersion": "12",
            "creationTimestamp": "2024-01-01T00:00:00Z", "labels": {"app": "web"}, "annotations": {"a": "b"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "u", "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "v1", "time": "2024-01-01T00:00:00Z",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}}}}}}]},
        "spec": {
            "containers": [{"name": "c", "image": "nginx:1.25", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "env": [{"name": "POD", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}],
                "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "250m", "memory": 134217728}},
                "livenessProbe": {"httpGet": {"path": "/", "port": "http", "scheme": "HTTP"}, "initialDelaySeconds": 3},
                "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}],
            "volumes": [{"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}],
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}]}]}}},
            "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "serviceAccountName": "default", "nodeName": "n1",
            "securityContext": {}, "schedulerName": "default-scheduler", "priority": 0, "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority"},
        "status": {"phase": "Running", "qosClass": "Burstable", "hostIP": "10.0.0.1", "podIP": "10.1.0.5", "podIPs": [{"ip": "10.1.0.5"}],
            "startTime": "2024-01-01T00:00:01Z",
            "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2024-01-01T00:00:05Z"}],
            "containerStatuses": [{"name": "c", "ready": true, "started": true, "restartCount": 0, "image": "nginx:1.25", "imageID": "sha256:x",
                "containerID": "containerd://abc", "state": {"running": {"startedAt": "2024-01-01T00:00:04Z"}}, "lastState": {}}]}
    });
    assert_eq!(unknown_fields(pods(), &p), Vec::<String>::new());
    assert_eq!(validate(pods(), &p, None), Vec::<FieldError>::new());
}

fn deployment(spec: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

#[test]
fn workload_selectors_and_replicas() {
    let deployments = find("apps", "v1", "deployments").unwrap();
    let template = |labels: Value| json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    let ok = deployment(
        json!({"selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web", "x": "y"}))}),
    );
    assert_eq!(messages(deployments, ok, None), Vec::<String>::new());

    let bad = deployment(
        json!({"replicas": -1, "selector": {"matchLabels": {"app": "web"}},
        "template": template(json!({"app": "api", "tier": "a"}))}),
    );
    assert_eq!(
        messages(deployments, bad, None),
        vec![
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0".to_string(),
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"api\", \"tier\":\"a\"}: `selector` does not match template `labels`".to_string(),
        ]
    );
    let missing = deployment(json!({"template": template(json!({"app": "web"}))}));
    assert_eq!(
        messages(deployments, missing, None),
        vec!["spec.selector: Required value".to_string()]
    );
    let exprs = deployment(
        json!({"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "b"]}]},
        "template": template(json!({"app": "c"}))}),
    );
    assert_eq!(messages(deployments, exprs, None).len(), 1);
    let wrong_policy = deployment(json!({"selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}));
    assert_eq!(
        messages(deployments, wrong_policy, None),
        vec!["spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"".to_string()]
    );
    let no_containers = deployment(json!({"selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {}}}));
    assert_eq!(
        messages(deployments, no_containers, None),
        vec!["spec.template.spec.containers: Required value".to_string()]
    );
}

#[test]
fn job_rules() {
    let jobs = find("batch", "v1", "jobs").unwrap();
    let mut job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "namespace": "default"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "perl"}]}}}});
    crate::strategy::prepare_for_create(jobs, &mut job, chrono::Utc::now());
    // restartPolicy defaults to Always, which a Job may not use.
    assert_eq!(
        messages(jobs, job.clone(), None),
        vec!["spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"".to_string()]
    );
    job["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
    assert_eq!(messages(jobs, job.clone(), None), Vec::<String>::new());
    job["spec"]["selector"]["matchLabels"]["app"] = json!("other");
    let msgs = messages(jobs, job, None);
    assert!(
        msgs.iter()
            .any(|m| m.contains("`selector` not auto-generated")),
        "{msgs:?}"
    );
}

#[test]
fn service_rules() {
    let services = find("", "v1", "services").unwrap();
    let svc = |spec: Value| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"}, "spec": spec});
    assert_eq!(
        messages(services, svc(json!({"ports": [{"port": 80}]})), None),
        Vec::<String>::new()
    );
    assert_eq!(
        messages(services, svc(json!({"selector": {"a": "b"}})), None),
        vec!["spec.ports: Required value".to_string()]
    );
    assert_eq!(
        messages(services, svc(json!({"clusterIP": "None"})), None),
        Vec::<String>::new()
    );
    assert_eq!(
        messages(
            services,
            svc(json!({"type": "Bogus", "ports": [{"port": 0, "name": "a"}, {"port": 80, "protocol": "ICMP"}]})),
            None
        ),
        vec![
            "spec.type: Unsupported value: \"Bogus\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"".to_string(),
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive".to_string(),
            // targetPort defaulted from the port, as in Kubernetes.
            "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive".to_string(),
            "spec.ports[1].name: Required value".to_string(),
            "spec.ports[1].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"".to_string(),
        ]
    );
}

#[test]
fn new_kinds_report_unknown_fields() {
    let hpa = find("autoscaling", "v1", "horizontalpodautoscalers").unwrap();
    let obj = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
        "spec": {"maxReplicas": 2, "scaleTargetRef": {"kind": "Deployment", "name": "d"}, "targetCPU": 5}});
    assert_eq!(
        unknown_fields(hpa, &obj),
        vec!["spec.targetCPU".to_string()]
    );
    let pdb = find("policy", "v1", "poddisruptionbudgets").unwrap();
    let both = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "p", "namespace": "d"},
        "spec": {"minAvailable": 1, "maxUnavailable": 1}});
    assert_eq!(messages(pdb, both, None).len(), 1);
}

#[test]
fn selector_operators_and_rolling_update_counts() {
    let deploy = find("apps", "v1", "deployments").unwrap();
    let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"a": "b"},
                              "matchExpressions": [{"key": "a", "operator": ""},
                                                   {"key": "a", "operator": "In"},
                                                   {"key": "a", "operator": "Exists", "values": ["x"]}]},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "x", "maxUnavailable": "150%"}},
                 "template": {"metadata": {"labels": {"a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "x"}]}}}});
    apply_defaults(deploy, &mut d);
    let msgs: Vec<String> = validate(deploy, &d, None)
        .iter()
        .map(|e| e.message())
        .collect();
    assert_eq!(
        msgs,
        [
            "spec.selector.matchExpressions[0].operator: Invalid value: \"\": not a valid selector operator",
            "spec.selector.matchExpressions[1].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
            "spec.selector.matchExpressions[2].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            "spec.strategy.rollingUpdate.maxSurge: Invalid value: \"x\": a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%",
        ]
    );
    d["spec"]["selector"] = json!({"matchLabels": {"a": "b"}});
    d["spec"]["strategy"]["rollingUpdate"] = json!({"maxSurge": 0, "maxUnavailable": "0%"});
    let msgs: Vec<String> = validate(deploy, &d, None)
        .iter()
        .map(|e| e.message())
        .collect();
    assert_eq!(
        msgs,
        ["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"0%\": may not be 0 when `maxSurge` is 0"]
    );
    d["spec"]["strategy"]["rollingUpdate"] = json!({"maxSurge": "25%", "maxUnavailable": 1});
    assert_eq!(validate(deploy, &d, None), vec![]);

    let pdb = find("policy", "v1", "poddisruptionbudgets").unwrap();
    let b = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "b", "namespace": "default"},
        "spec": {"minAvailable": "1x", "selector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}});
    let msgs: Vec<String> = validate(pdb, &b, None)
        .iter()
        .map(|e| e.message())
        .collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(msgs[0].starts_with("spec.minAvailable: Invalid value: \"1x\": a valid percent string"));
    assert_eq!(msgs[1], "spec.selector.matchExpressions[0].operator: Invalid value: \"Near\": not a valid selector operator");
}

#[test]
fn a_part_is_checked_alone_only_when_it_decodes_alone() {
    let part = json!({"metadata": {"labels": {"a": "b"}, "foo": 1}, "status": {"phase": "Running", "bar": {}}});
    assert_eq!(
        unknown_fields_of_part(pods(), &part),
        Some(vec!["metadata.foo".to_string(), "status.bar".to_string()])
    );
    assert_eq!(
        unknown_fields_of_part(pods(), &json!({"status": {"phase": "Running"}})),
        Some(vec![])
    );
    // A required list left out decodes as empty (k8s-openapi's rule): a
    // spec without its containers still decodes.
    assert_eq!(
        unknown_fields_of_part(pods(), &json!({"spec": {"foo": 1}})),
        Some(vec!["spec.foo".to_string()])
    );
    // A label deleted with null, a body that is not an object: the whole
    // object must be checked.
    assert_eq!(
        unknown_fields_of_part(pods(), &json!({"metadata": {"labels": {"a": null}}})),
        None
    );
    assert_eq!(unknown_fields_of_part(pods(), &json!([1])), None);
}
