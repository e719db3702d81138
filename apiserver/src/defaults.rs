//! Defaulting: the values Kubernetes fills in before validation, so objects
//! read back from Skiff look like kube-apiserver's (`kubectl get -o yaml`)
//! and controllers can rely on them.
//!
//! Sources: kubernetes/pkg/apis/core/v1/defaults.go (`SetDefaults_Pod`,
//! `SetDefaults_PodSpec`, `SetDefaults_Container`, probes, volumes, ports),
//! the pod strategy's `PrepareForCreate` (status Pending, QoS class,
//! pkg/apis/core/helper/qos), the namespace strategy (finalizer
//! `kubernetes`) and the Priority admission plugin (`priority: 0`,
//! `preemptionPolicy: PreemptLowerPriority` when no class is named). The
//! workload kinds (Deployment, ReplicaSet, DaemonSet, StatefulSet, Job,
//! CronJob; from pkg/apis/apps/v1 and batch/v1 defaults.go) get their own
//! defaults and the
//! pod-spec defaults on `spec.template.spec`, so the pods their controllers
//! stamp out look like Kubernetes' (pod-only defaults stay off templates).
//! Services, persistent volumes and claims, endpoints, priority classes,
//! role-binding subjects and HorizontalPodAutoscalers (autoscaling/v2's
//! defaults; v1 objects are defaulted after conversion to v2) get theirs
//! from the same files.
//!
//! Caveats: `spec.serviceAccountName`/`serviceAccount: default` and the
//! token volume come from the ServiceAccount admission plugin
//! ([`crate::serviceaccount_admission`]), and the
//! `node.kubernetes.io/not-ready`/`unreachable` tolerations from
//! DefaultTolerationSeconds (admission, not done by Skiff). Pod-level `spec.resources` are not considered for QoS.

pub use skiff_api::quantity;

use crate::resources::ResourceInfo;
use quantity::Quantity;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Fills in Kubernetes' defaults for `obj`, a `resource` object, in place.
/// Fields already set are left alone; non-object bodies are left untouched
/// (validation reports them).
pub fn apply_defaults(resource: &ResourceInfo, obj: &mut Value) {
    if !obj.is_object() {
        return;
    }
    if let Some(schema) = resource.custom.and_then(|c| c.schema.as_ref()) {
        // Kubernetes prunes unknown fields of custom objects, then defaults.
        schema.prune(obj);
        schema.apply_defaults(obj);
        return;
    }
    match (resource.group, resource.kind) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crate::crd::apply_defaults(obj),
        ("", "Pod") => default_pod(obj),
        ("", "Namespace") => default_namespace(obj),
        ("", "Secret") => set_default(obj, "type", json!("Opaque")),
        ("", "Node") => default_node(obj),
        ("", "Service") => default_service(obj),
        ("", "Endpoints") => {
            for_each_item(obj, "subsets", |s| {
                for_each_item(s, "ports", |p| set_default(p, "protocol", json!("TCP")))
            });
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            for_each_item(obj, "ports", |p| {
                set_default(p, "protocol", json!("TCP"));
                set_default(p, "name", json!(""));
            });
        }
        ("", "PersistentVolume") => {
            // SetDefaults_PersistentVolume.
            if let Some(spec) = child(obj, "spec") {
                set_default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
                set_default(spec, "volumeMode", json!("Filesystem"));
            }
            if let Some(status) = child(obj, "status") {
                set_default(status, "phase", json!("Pending"));
            }
        }
        ("", "PersistentVolumeClaim") => {
            // SetDefaults_PersistentVolumeClaim(Spec).
            if let Some(spec) = child(obj, "spec") {
                set_default(spec, "volumeMode", json!("Filesystem"));
            }
            if let Some(status) = child(obj, "status") {
                set_default(status, "phase", json!("Pending"));
            }
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            set_default(obj, "preemptionPolicy", json!("PreemptLowerPriority"));
        }
        ("storage.k8s.io", "StorageClass") => {
            set_default(obj, "reclaimPolicy", json!("Delete"));
            set_default(obj, "volumeBindingMode", json!("Immediate"));
        }
        ("autoscaling", "HorizontalPodAutoscaler") if resource.version == "v2" => {
            default_hpa_v2(obj)
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            if let Some(spec) = child(obj, "spec") {
                set_default(spec, "minReplicas", json!(1));
            }
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            // SetDefaults_Subject: users and groups are RBAC subjects.
            for_each_item(obj, "subjects", |subject| {
                let kind = subject.get("kind").and_then(Value::as_str).unwrap_or("");
                let group = match kind {
                    "User" | "Group" => "rbac.authorization.k8s.io",
                    _ => "",
                };
                set_default(subject, "apiGroup", json!(group));
            });
        }
        ("apps", kind) | ("batch", kind) => default_workload(kind, obj),
        _ => {}
    }
}

/// The priority classes every Kubernetes cluster has
/// (pkg/apis/scheduling `SystemPriorityClasses`), for the server to create
/// at start-up: `system-node-critical` (2000001000) and
/// `system-cluster-critical` (2000000000), defaulted, without
/// server-set metadata (pass them through `strategy::prepare_for_create`).
pub fn builtin_priority_classes() -> Vec<Value> {
    [
        ("system-node-critical", 2_000_001_000, "Used for system critical pods that must not be moved from their current node."),
        ("system-cluster-critical", 2_000_000_000, "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."),
    ]
    .iter()
    .map(|(name, value, description)| {
        json!({
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": name},
            "value": value,
            "globalDefault": false,
            "description": description,
            "preemptionPolicy": "PreemptLowerPriority",
        })
    })
    .collect()
}

/// `SetDefaults_Service` (pkg/apis/core/v1/defaults.go): type ClusterIP,
/// sessionAffinity None, ports TCP with `targetPort` = `port`, and the
/// traffic policies. Cluster IPs and node ports are allocated later, in
/// the store write (`crate::services`), as Kubernetes' registry does.
fn default_service(svc: &mut Value) {
    let Some(spec) = child(svc, "spec") else {
        return;
    };
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if spec.get("sessionAffinity").and_then(Value::as_str) == Some("ClientIP") {
        if let Some(cfg) = child(spec, "sessionAffinityConfig").and_then(|c| child(c, "clientIP")) {
            // 3 hours, Kubernetes' DefaultClientIPServiceAffinitySeconds.
            set_default(cfg, "timeoutSeconds", json!(10800));
        }
    }
    for_each_item(spec, "ports", |p| {
        set_default(p, "protocol", json!("TCP"));
        let target_unset = match p.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        if target_unset {
            if let Some(port) = p.get("port").cloned() {
                if let Some(m) = p.as_object_mut() {
                    m.insert("targetPort".into(), port);
                }
            }
        }
    });
    if ty == "NodePort" || ty == "LoadBalancer" {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if ty != "ExternalName" {
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
}

/// autoscaling/v2 `SetDefaults_HorizontalPodAutoscaler`: minReplicas 1, a
/// cpu utilization target of 80% when no metric is given, and, when
/// `behavior` is given, its missing rules from the default scale-up and
/// scale-down rules (`GenerateHPAScaleUpRules`/`…ScaleDownRules`).
fn default_hpa_v2(hpa: &mut Value) {
    let Some(spec) = child(hpa, "spec") else {
        return;
    };
    set_default(spec, "minReplicas", json!(1));
    let no_metrics = spec
        .get("metrics")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if no_metrics {
        spec["metrics"] = json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 80}}}]);
    }
    if !spec.get("behavior").is_some_and(Value::is_object) {
        return;
    }
    let Some(behavior) = child(spec, "behavior") else {
        return;
    };
    if let Some(up) = child(behavior, "scaleUp") {
        set_default(up, "stabilizationWindowSeconds", json!(0));
        set_default(up, "selectPolicy", json!("Max"));
        set_default(
            up,
            "policies",
            json!([{"type": "Pods", "value": 4, "periodSeconds": 15},
                   {"type": "Percent", "value": 100, "periodSeconds": 15}]),
        );
    }
    if let Some(down) = child(behavior, "scaleDown") {
        set_default(down, "stabilizationWindowSeconds", json!(300));
        set_default(down, "selectPolicy", json!("Max"));
        set_default(
            down,
            "policies",
            json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
        );
    }
}

/// Sets `obj[key] = value` when `obj` is an object without a non-null `key`.
fn set_default(obj: &mut Value, key: &str, value: Value) {
    if let Some(map) = obj.as_object_mut() {
        match map.get(key) {
            Some(v) if !v.is_null() => {}
            _ => {
                map.insert(key.to_string(), value);
            }
        }
    }
}

/// `obj[key]` as an object, created (replacing null) if absent. `None` if
/// `obj` is not an object or `obj[key]` is something else.
fn child<'a>(obj: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    set_default(obj, key, json!({}));
    obj.get_mut(key).filter(|v| v.is_object())
}

fn for_each_item(obj: &mut Value, key: &str, mut f: impl FnMut(&mut Value)) {
    if let Some(items) = obj.get_mut(key).and_then(Value::as_array_mut) {
        items.iter_mut().filter(|v| v.is_object()).for_each(&mut f);
    }
}

/// `SetDefaults_PodSpec` and the container, volume and probe defaults: what
/// pods and pod templates (Deployments, ReplicaSets, …) both get.
fn default_pod_spec(spec: &mut Value) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "securityContext", json!({}));
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    for key in ["initContainers", "containers"] {
        for_each_item(spec, key, |c| default_container(c, host_network));
    }
    for_each_item(spec, "volumes", default_volume);
}

/// What only pods get: `SetDefaults_Pod` (service links, requests from
/// limits), the Priority admission plugin, and the create-time status.
fn default_pod(pod: &mut Value) {
    let Some(spec) = child(pod, "spec") else {
        return;
    };
    default_pod_spec(spec);
    set_default(spec, "enableServiceLinks", json!(true));
    // Priority admission: without a priorityClassName the pod gets priority 0.
    if spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        set_default(spec, "priority", json!(0));
    }
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    for key in ["initContainers", "containers"] {
        for_each_item(spec, key, default_requests_from_limits);
    }

    let qos = qos_class(spec);
    if let Some(status) = child(pod, "status") {
        set_default(status, "phase", json!("Pending"));
        set_default(status, "qosClass", json!(qos));
    }
}

/// `SetDefaults_Pod`: a limit without a request makes the request equal to it.
fn default_requests_from_limits(c: &mut Value) {
    let Some(resources) = child(c, "resources") else {
        return;
    };
    let limits = resources
        .get("limits")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if limits.is_empty() {
        return;
    }
    if let Some(requests) = child(resources, "requests").and_then(Value::as_object_mut) {
        for (name, qty) in limits {
            requests.entry(name).or_insert(qty);
        }
    }
}

/// Defaults of the workload kinds (pkg/apis/apps/v1/defaults.go,
/// pkg/apis/batch/v1/defaults.go) and of their pod templates.
fn default_workload(kind: &str, obj: &mut Value) {
    let Some(spec) = child(obj, "spec") else {
        return;
    };
    match kind {
        "Deployment" => {
            set_default(spec, "replicas", json!(1));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
            if let Some(strategy) = child(spec, "strategy") {
                set_default(strategy, "type", json!("RollingUpdate"));
                if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                    if let Some(rolling) = child(strategy, "rollingUpdate") {
                        set_default(rolling, "maxUnavailable", json!("25%"));
                        set_default(rolling, "maxSurge", json!("25%"));
                    }
                }
            }
        }
        "ReplicaSet" => set_default(spec, "replicas", json!(1)),
        "CronJob" => {
            // SetDefaults_CronJob. The job template gets the pod-template
            // defaults but not the Job's own (those are on the Job type).
            set_default(spec, "concurrencyPolicy", json!("Allow"));
            set_default(spec, "suspend", json!(false));
            set_default(spec, "successfulJobsHistoryLimit", json!(3));
            set_default(spec, "failedJobsHistoryLimit", json!(1));
            if let Some(template_spec) = child(spec, "jobTemplate")
                .and_then(|j| child(j, "spec"))
                .and_then(|j| child(j, "template"))
                .and_then(|t| child(t, "spec"))
            {
                default_pod_spec(template_spec);
            }
            return;
        }
        "DaemonSet" => {
            set_default(spec, "revisionHistoryLimit", json!(10));
            if let Some(strategy) = child(spec, "updateStrategy") {
                set_default(strategy, "type", json!("RollingUpdate"));
                if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                    if let Some(rolling) = child(strategy, "rollingUpdate") {
                        set_default(rolling, "maxUnavailable", json!(1));
                        set_default(rolling, "maxSurge", json!(0));
                    }
                }
            }
        }
        "StatefulSet" => {
            set_default(spec, "replicas", json!(1));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "podManagementPolicy", json!("OrderedReady"));
            set_default(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            if let Some(strategy) = child(spec, "updateStrategy") {
                set_default(strategy, "type", json!("RollingUpdate"));
                if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                    if let Some(rolling) = child(strategy, "rollingUpdate") {
                        set_default(rolling, "partition", json!(0));
                    }
                }
            }
        }
        "Job" => {
            // Neither set: one pod, once. Completions alone: one at a time.
            if spec.get("completions").is_none_or(Value::is_null)
                && spec.get("parallelism").is_none_or(Value::is_null)
            {
                set_default(spec, "completions", json!(1));
            }
            set_default(spec, "parallelism", json!(1));
            if spec.get("backoffLimitPerIndex").is_none_or(Value::is_null) {
                set_default(spec, "backoffLimit", json!(6));
            }
            set_default(spec, "completionMode", json!("NonIndexed"));
            set_default(spec, "suspend", json!(false));
            if spec.get("podFailurePolicy").is_none_or(Value::is_null) {
                set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
            }
        }
        _ => return,
    }
    if let Some(template_spec) = child(spec, "template").and_then(|t| child(t, "spec")) {
        default_pod_spec(template_spec);
    }
}

/// `Always` for `:latest` or an untagged image, else `IfNotPresent`
/// (SetDefaults_Container via parsers.ParseImageName).
fn default_pull_policy(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let tag = last.split_once(':').map(|(_, t)| t);
    match (tag, digest) {
        (Some("latest"), _) | (None, None) => "Always",
        _ => "IfNotPresent",
    }
}

fn default_container(c: &mut Value, host_network: bool) {
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    let image = c
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !image.is_empty() {
        set_default(c, "imagePullPolicy", json!(default_pull_policy(&image)));
    }
    for_each_item(c, "ports", |p| {
        set_default(p, "protocol", json!("TCP"));
        // With the host's network the container port is the host port.
        if host_network {
            if let Some(port) = p.get("containerPort").cloned() {
                set_default(p, "hostPort", port);
            }
        }
    });
    set_default(c, "resources", json!({}));
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).filter(|p| p.is_object()) {
            set_default(p, "timeoutSeconds", json!(1));
            set_default(p, "periodSeconds", json!(10));
            set_default(p, "successThreshold", json!(1));
            set_default(p, "failureThreshold", json!(3));
            if let Some(get) = p.get_mut("httpGet").filter(|g| g.is_object()) {
                set_default(get, "path", json!("/"));
                set_default(get, "scheme", json!("HTTP"));
            }
        }
    }
    for_each_item(c, "env", |e| {
        if let Some(field_ref) = e
            .get_mut("valueFrom")
            .and_then(|v| v.get_mut("fieldRef"))
            .filter(|f| f.is_object())
        {
            set_default(field_ref, "apiVersion", json!("v1"));
        }
    });
}

/// Volume sources that carry a `defaultMode` (0644 = 420).
const MODE_SOURCES: [&str; 4] = ["configMap", "secret", "projected", "downwardAPI"];
/// Every volume source key; a volume with none of them is an emptyDir.
const VOLUME_SOURCES: [&str; 14] = [
    "emptyDir",
    "hostPath",
    "configMap",
    "secret",
    "projected",
    "downwardAPI",
    "persistentVolumeClaim",
    "nfs",
    "csi",
    "ephemeral",
    "iscsi",
    "image",
    "local",
    "fc",
];

fn default_volume(v: &mut Value) {
    let Some(map) = v.as_object() else { return };
    if !VOLUME_SOURCES
        .iter()
        .any(|k| map.get(*k).is_some_and(|s| !s.is_null()))
        && map.len() <= 1
    {
        set_default(v, "emptyDir", json!({}));
    }
    for key in MODE_SOURCES {
        if let Some(src) = v.get_mut(key).filter(|s| s.is_object()) {
            set_default(src, "defaultMode", json!(420));
        }
    }
}

/// Kubernetes' `GetPodQOS` over cpu and memory: BestEffort without any
/// request or limit; Guaranteed when every container limits both and
/// requests equal limits; Burstable otherwise. Zero and unparsable
/// quantities count as absent.
fn qos_class(spec: &Value) -> &'static str {
    let mut requests: BTreeMap<String, Quantity> = BTreeMap::new();
    let mut limits: BTreeMap<String, Quantity> = BTreeMap::new();
    let mut guaranteed = true;
    for key in ["containers", "initContainers"] {
        for c in spec
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let resources = c.get("resources");
            add_qos_quantities(&mut requests, resources.and_then(|r| r.get("requests")));
            let found = add_qos_quantities(&mut limits, resources.and_then(|r| r.get("limits")));
            if !(found.contains(&"cpu") && found.contains(&"memory")) {
                guaranteed = false;
            }
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed
        && requests.len() == limits.len()
        && requests.iter().all(|(k, v)| limits.get(k) == Some(v))
    {
        return "Guaranteed";
    }
    "Burstable"
}

/// Adds a container's positive cpu/memory quantities into `totals`; returns
/// which of the two it had.
fn add_qos_quantities(
    totals: &mut BTreeMap<String, Quantity>,
    list: Option<&Value>,
) -> Vec<&'static str> {
    let mut found = Vec::new();
    for name in ["cpu", "memory"] {
        let Some(q) = list.and_then(|l| l.get(name)).and_then(parse_quantity) else {
            continue;
        };
        if q.cmp_value(&Quantity::ZERO).is_gt() {
            found.push(name);
            let sum = totals.get(name).copied().unwrap_or_default() + q;
            totals.insert(name.to_string(), sum);
        }
    }
    found
}

/// A quantity from JSON: a string (`"500m"`) or a bare number (`2`).
pub fn parse_quantity(v: &Value) -> Option<Quantity> {
    match v {
        Value::String(s) => Quantity::parse(s).ok(),
        Value::Number(n) => Quantity::parse(&n.to_string()).ok(),
        _ => None,
    }
}

fn default_namespace(ns: &mut Value) {
    let name = ns
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let (Some(name), Some(meta)) = (name, child(ns, "metadata")) {
        // SetDefaults_Namespace: every namespace is selectable by its name.
        if let Some(labels) = child(meta, "labels").and_then(Value::as_object_mut) {
            labels.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
    }
    if let Some(spec) = child(ns, "spec") {
        set_default(spec, "finalizers", json!(["kubernetes"]));
    }
    if let Some(status) = child(ns, "status") {
        set_default(status, "phase", json!("Active"));
    }
}

fn default_node(node: &mut Value) {
    // SetDefaults_NodeStatus: allocatable defaults to capacity.
    let capacity = node.pointer("/status/capacity").cloned();
    if let (Some(capacity), Some(status)) =
        (capacity, node.get_mut("status").filter(|s| s.is_object()))
    {
        set_default(status, "allocatable", capacity);
    }
}

#[cfg(test)]
#[path = "schema_defaults_test.rs"]
mod tests;
