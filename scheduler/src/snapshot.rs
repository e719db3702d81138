//! Turning API objects into the core's inputs (pure functions).
//!
//! A pod's requests are the sum over its containers of
//! `resources.requests`, the max with each init container, plus
//! `spec.overhead` (Kubernetes' `PodRequests`; sidecar init containers are
//! treated like ordinary init containers). A node's conditions become the
//! taints Kubernetes' node lifecycle controller would set
//! (`node.kubernetes.io/not-ready`, `…/memory-pressure`, …), because
//! kube-scheduler filters on those taints rather than on conditions.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{self as corev1, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;

use crate::model::{
    BoundPod, Extended, HostPort, LabelSelector, NodeInfo, NodeSelectorTerm, PendingPod,
    PodAffinityTerm, Requirement, Resources, SpreadConstraint, Taint, Toleration,
};
use crate::quantity;
use crate::slim_pod::{SlimContainer, SlimPod, SlimPodSpec};

/// The scheduler name Skiff answers to, Kubernetes' default.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// `namespace/name` of a pod.
pub fn pod_key(pod: &SlimPod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// Whether a resource name is an extended resource (`nvidia.com/gpu`,
/// `hugepages-2Mi`): anything but the first-class names.
fn is_extended(name: &str) -> bool {
    !matches!(
        name,
        "cpu" | "memory" | "ephemeral-storage" | "pods" | "storage"
    )
}

fn container_requests(c: &SlimContainer) -> (Resources, Extended) {
    let req = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let get = |name: &str, f: fn(&str) -> Result<i64, quantity::QuantityError>| {
        req.and_then(|m| m.get(name))
            .and_then(|q| f(&q.0).ok())
            .unwrap_or(0)
    };
    let extended = req
        .into_iter()
        .flatten()
        .filter(|(k, _)| is_extended(k))
        .filter_map(|(k, q)| quantity::base_units(&q.0).ok().map(|n| (k.clone(), n)))
        .collect();
    (
        Resources {
            cpu_millis: get("cpu", quantity::millicores),
            memory: get("memory", quantity::base_units),
            ephemeral_storage: get("ephemeral-storage", quantity::base_units),
            pods: 0,
        },
        extended,
    )
}

/// What the pod asks for: the larger of the sum over its containers and the
/// largest init container (init containers run one at a time, before the
/// rest), plus `spec.overhead`; extended resources likewise.
pub fn pod_requests_all(pod: &SlimPod) -> (Resources, Extended) {
    let mut sum = Resources {
        pods: 1,
        ..Default::default()
    };
    let mut ext = Extended::new();
    let Some(spec) = &pod.spec else {
        return (sum, ext);
    };
    for c in &spec.containers {
        let (r, e) = container_requests(c);
        sum = sum.plus(r);
        for (k, v) in e {
            *ext.entry(k).or_default() += v;
        }
    }
    for c in spec.init_containers.iter().flatten() {
        let (r, e) = container_requests(c);
        sum.cpu_millis = sum.cpu_millis.max(r.cpu_millis);
        sum.memory = sum.memory.max(r.memory);
        sum.ephemeral_storage = sum.ephemeral_storage.max(r.ephemeral_storage);
        for (k, v) in e {
            let slot = ext.entry(k).or_default();
            *slot = (*slot).max(v);
        }
    }
    if let Some(o) = &spec.overhead {
        let get = |name: &str, f: fn(&str) -> Result<i64, quantity::QuantityError>| {
            o.get(name).and_then(|q| f(&q.0).ok()).unwrap_or(0)
        };
        sum.cpu_millis += get("cpu", quantity::millicores);
        sum.memory += get("memory", quantity::base_units);
    }
    (sum, ext)
}

/// The first-class part of [`pod_requests_all`].
pub fn pod_requests(pod: &SlimPod) -> Resources {
    pod_requests_all(pod).0
}

/// Whether a pod still holds its node's resources: bound and neither
/// Succeeded nor Failed.
pub fn holds_resources(pod: &SlimPod) -> bool {
    let bound = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    bound && !matches!(phase, Some("Succeeded") | Some("Failed"))
}

/// Whether this scheduler should place the pod: unbound, not being deleted,
/// and addressed to the default scheduler.
pub fn wants_scheduling(pod: &SlimPod) -> bool {
    let Some(spec) = &pod.spec else { return false };
    let unbound = spec.node_name.as_deref().is_none_or(str::is_empty);
    let ours = spec
        .scheduler_name
        .as_deref()
        .is_none_or(|n| n == DEFAULT_SCHEDULER_NAME);
    unbound && ours && pod.metadata.deletion_timestamp.is_none()
}

fn requirement(key: &str, operator: &str, values: Option<&Vec<String>>) -> Requirement {
    Requirement {
        key: key.to_string(),
        operator: operator.to_string(),
        values: values.cloned().unwrap_or_default(),
    }
}

/// The core's form of a `LabelSelector`.
pub fn label_selector(s: &metav1::LabelSelector) -> LabelSelector {
    LabelSelector {
        match_labels: s.match_labels.clone().unwrap_or_default(),
        match_expressions: s
            .match_expressions
            .iter()
            .flatten()
            .map(|r| requirement(&r.key, &r.operator, r.values.as_ref()))
            .collect(),
    }
}

/// The core's form of a `NodeSelectorTerm`.
pub fn node_selector_term(t: &corev1::NodeSelectorTerm) -> NodeSelectorTerm {
    let reqs = |v: &Option<Vec<corev1::NodeSelectorRequirement>>| {
        v.iter()
            .flatten()
            .map(|r| requirement(&r.key, &r.operator, r.values.as_ref()))
            .collect()
    };
    NodeSelectorTerm {
        match_expressions: reqs(&t.match_expressions),
        match_fields: reqs(&t.match_fields),
    }
}

fn affinity_term(t: &corev1::PodAffinityTerm) -> PodAffinityTerm {
    PodAffinityTerm {
        selector: t.label_selector.as_ref().map(label_selector),
        namespaces: t.namespaces.clone().unwrap_or_default(),
        // Only the empty namespaceSelector ("all namespaces") is understood;
        // Skiff's core has no namespace labels.
        all_namespaces: t.namespace_selector.as_ref().is_some_and(|s| {
            s.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && s.match_expressions.as_ref().is_none_or(|m| m.is_empty())
        }),
        topology_key: t.topology_key.clone(),
    }
}

fn host_ports(spec: &SlimPodSpec) -> Vec<HostPort> {
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|p| *p > 0)?;
            Some(HostPort {
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                host_ip: p.host_ip.clone().unwrap_or_default(),
                port,
            })
        })
        .collect()
}

fn required_anti_affinity(spec: &SlimPodSpec) -> Vec<PodAffinityTerm> {
    spec.affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .map(affinity_term)
        .collect()
}

/// A pod's priority: `spec.priority` as the API server's Priority admission
/// set it, else the value of its `priorityClassName` in `classes`, else the
/// global default class's value (`global_default`), else 0.
pub fn pod_priority(pod: &SlimPod, classes: &HashMap<String, i32>, global_default: i32) -> i32 {
    let spec = pod.spec.as_ref();
    if let Some(p) = spec.and_then(|s| s.priority) {
        return p;
    }
    match spec.and_then(|s| s.priority_class_name.as_deref()) {
        Some(name) if !name.is_empty() => classes.get(name).copied().unwrap_or(global_default),
        _ => global_default,
    }
}

/// QoS class BestEffort: no container or init container states requests or
/// limits of cpu or memory (the rule of `skiff_api::quota::scope`'s
/// `is_best_effort`, on the scheduler's slim pod).
fn is_best_effort(pod: &SlimPod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let states = |m: Option<&BTreeMap<String, _>>| {
        m.is_some_and(|m| m.contains_key("cpu") || m.contains_key("memory"))
    };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .all(|c| {
            let r = c.resources.as_ref();
            !states(r.and_then(|r| r.requests.as_ref()))
                && !states(r.and_then(|r| r.limits.as_ref()))
        })
}

/// The core's view of a pending pod, with its priority already resolved.
pub fn pending_pod(pod: &SlimPod, priority: i32) -> PendingPod {
    let (requests, extended) = pod_requests_all(pod);
    let mut out = PendingPod {
        key: pod_key(pod),
        namespace: pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        requests,
        extended,
        priority,
        ..Default::default()
    };
    let Some(spec) = pod.spec.as_ref() else {
        return out;
    };
    out.never_preempt = spec.preemption_policy.as_deref() == Some("Never");
    out.node_selector = spec.node_selector.clone().unwrap_or_default();
    out.tolerations = spec
        .tolerations
        .iter()
        .flatten()
        .map(|t| Toleration {
            key: t.key.clone().unwrap_or_default(),
            operator: t.operator.clone().unwrap_or_default(),
            value: t.value.clone().unwrap_or_default(),
            effect: t.effect.clone().unwrap_or_default(),
        })
        .collect();
    // Kubernetes lets pods that are not BestEffort onto a node under memory
    // pressure: they get the memory-pressure toleration.
    if !is_best_effort(pod) {
        out.tolerations.push(Toleration {
            key: "node.kubernetes.io/memory-pressure".into(),
            operator: "Exists".into(),
            value: String::new(),
            effect: "NoSchedule".into(),
        });
    }
    let affinity = spec.affinity.as_ref();
    if let Some(na) = affinity.and_then(|a| a.node_affinity.as_ref()) {
        out.required_node_affinity = na
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .map(|s| {
                s.node_selector_terms
                    .iter()
                    .map(node_selector_term)
                    .collect()
            });
        out.preferred_node_affinity = na
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .map(|p| (p.weight, node_selector_term(&p.preference)))
            .collect();
    }
    if let Some(pa) = affinity.and_then(|a| a.pod_affinity.as_ref()) {
        out.pod_affinity = pa
            .required_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .map(affinity_term)
            .collect();
        out.preferred_pod_affinity = pa
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .map(|w| (w.weight, affinity_term(&w.pod_affinity_term)))
            .collect();
    }
    out.pod_anti_affinity = required_anti_affinity(spec);
    if let Some(pa) = affinity.and_then(|a| a.pod_anti_affinity.as_ref()) {
        out.preferred_pod_anti_affinity = pa
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .map(|w| (w.weight, affinity_term(&w.pod_affinity_term)))
            .collect();
    }
    out.spread = spec
        .topology_spread_constraints
        .iter()
        .flatten()
        .map(|c| SpreadConstraint {
            max_skew: c.max_skew,
            topology_key: c.topology_key.clone(),
            do_not_schedule: c.when_unsatisfiable != "ScheduleAnyway",
            selector: c.label_selector.as_ref().map(label_selector),
            min_domains: c.min_domains.unwrap_or(1),
        })
        .collect();
    out.host_ports = host_ports(spec);
    out
}

/// The core's view of a pod on a node (`None` if it is not bound).
pub fn bound_pod(pod: &SlimPod, priority: i32) -> Option<BoundPod> {
    let spec = pod.spec.as_ref()?;
    let node = spec.node_name.clone().filter(|n| !n.is_empty())?;
    let (requests, extended) = pod_requests_all(pod);
    Some(BoundPod {
        key: pod_key(pod),
        namespace: pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        node,
        requests,
        extended,
        host_ports: host_ports(spec),
        priority,
        anti_affinity: required_anti_affinity(spec),
        terminating: pod.metadata.deletion_timestamp.is_some(),
    })
}

/// The taints Kubernetes' node lifecycle controller adds for a node's
/// conditions (TaintNodesByCondition): the scheduler filters on these taints,
/// not on conditions, so a pod may tolerate them.
fn condition_taints(node: &Node) -> Vec<Taint> {
    let mut out = Vec::new();
    let taint = |key: &str| Taint {
        key: key.to_string(),
        value: String::new(),
        effect: "NoSchedule".into(),
    };
    for c in node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
    {
        let key = match (c.type_.as_str(), c.status.as_str()) {
            ("Ready", "False") => "node.kubernetes.io/not-ready",
            ("Ready", "Unknown") => "node.kubernetes.io/unreachable",
            ("MemoryPressure", "True") => "node.kubernetes.io/memory-pressure",
            ("DiskPressure", "True") => "node.kubernetes.io/disk-pressure",
            ("PIDPressure", "True") => "node.kubernetes.io/pid-pressure",
            ("NetworkUnavailable", "True") => "node.kubernetes.io/network-unavailable",
            _ => continue,
        };
        out.push(taint(key));
    }
    out
}

/// The core's view of a node, with nothing requested yet.
pub fn node_info(node: &Node) -> NodeInfo {
    let alloc = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
    let get = |name: &str, f: fn(&str) -> Result<i64, quantity::QuantityError>| {
        alloc
            .and_then(|m| m.get(name))
            .and_then(|q| f(&q.0).ok())
            .unwrap_or(0)
    };
    let spec = node.spec.as_ref();
    let mut taints: Vec<Taint> = spec
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .map(|t| Taint {
            key: t.key.clone(),
            value: t.value.clone().unwrap_or_default(),
            effect: t.effect.clone(),
        })
        .collect();
    for t in condition_taints(node) {
        if !taints.iter().any(|have| have.key == t.key) {
            taints.push(t);
        }
    }
    NodeInfo {
        name: node.metadata.name.clone().unwrap_or_default(),
        allocatable: Resources {
            cpu_millis: get("cpu", quantity::millicores),
            memory: get("memory", quantity::base_units),
            ephemeral_storage: get("ephemeral-storage", quantity::base_units),
            pods: get("pods", quantity::base_units),
        },
        extended_allocatable: alloc
            .into_iter()
            .flatten()
            .filter(|(k, _)| is_extended(k))
            .filter_map(|(k, q)| quantity::base_units(&q.0).ok().map(|n| (k.clone(), n)))
            .collect::<BTreeMap<_, _>>(),
        labels: node.metadata.labels.clone().unwrap_or_default(),
        taints,
        unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use std::collections::BTreeMap;

    fn container(cpu: &str, mem: &str) -> Container {
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_string(), Quantity(cpu.into())),
                    ("memory".to_string(), Quantity(mem.into())),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn requests_sum_containers_and_max_init() {
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![container("100m", "64Mi"), container("200m", "64Mi")],
                init_containers: Some(vec![container("1", "1Mi")]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            pod_requests(&SlimPod::from(&pod)),
            Resources {
                cpu_millis: 1000,
                memory: 128 << 20,
                ephemeral_storage: 0,
                pods: 1
            }
        );
    }

    #[test]
    fn only_best_effort_pods_stay_off_memory_pressure() {
        let tolerates = |pod: &Pod| {
            pending_pod(&SlimPod::from(pod), 0)
                .tolerations
                .iter()
                .any(|t| t.key == "node.kubernetes.io/memory-pressure")
        };
        let burstable = Pod {
            spec: Some(PodSpec {
                containers: vec![container("100m", "64Mi")],
                ..Default::default()
            }),
            ..Default::default()
        };
        let best_effort = Pod {
            spec: Some(PodSpec {
                containers: vec![Container::default()],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(tolerates(&burstable));
        assert!(!tolerates(&best_effort));
    }
}
