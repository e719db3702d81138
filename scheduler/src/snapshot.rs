//! Turning API objects into the core's inputs (pure functions).
//!
//! A pod's requests are the sum over its containers of
//! `resources.requests` (Kubernetes also takes the max with init containers
//! and adds pod overhead; Skiff does the init-container max, not overhead).

use k8s_openapi::api::core::v1::{Container, Node, Pod};

use crate::core::{NodeInfo, PendingPod, Resources, Taint, Toleration};
use crate::quantity;

/// The scheduler name Skiff answers to, Kubernetes' default.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// `namespace/name` of a pod.
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

fn container_requests(c: &Container) -> Resources {
    let req = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let get = |name: &str, f: fn(&str) -> Result<i64, quantity::QuantityError>| {
        req.and_then(|m| m.get(name))
            .and_then(|q| f(&q.0).ok())
            .unwrap_or(0)
    };
    Resources {
        cpu_millis: get("cpu", quantity::millicores),
        memory: get("memory", quantity::base_units),
        pods: 0,
    }
}

/// What the pod asks for: the larger of the sum over its containers and the
/// largest init container (init containers run one at a time, before the rest).
pub fn pod_requests(pod: &Pod) -> Resources {
    let Some(spec) = &pod.spec else {
        return Resources {
            pods: 1,
            ..Default::default()
        };
    };
    let mut sum = Resources {
        pods: 1,
        ..Default::default()
    };
    for c in &spec.containers {
        let r = container_requests(c);
        sum.cpu_millis += r.cpu_millis;
        sum.memory += r.memory;
    }
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c);
        sum.cpu_millis = sum.cpu_millis.max(r.cpu_millis);
        sum.memory = sum.memory.max(r.memory);
    }
    sum
}

/// Whether a pod still holds its node's resources: bound and neither
/// Succeeded nor Failed.
pub fn holds_resources(pod: &Pod) -> bool {
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
pub fn wants_scheduling(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else { return false };
    let unbound = spec.node_name.as_deref().is_none_or(str::is_empty);
    let ours = spec
        .scheduler_name
        .as_deref()
        .is_none_or(|n| n == DEFAULT_SCHEDULER_NAME);
    unbound && ours && pod.metadata.deletion_timestamp.is_none()
}

/// The core's view of a pending pod.
pub fn pending_pod(pod: &Pod) -> PendingPod {
    let spec = pod.spec.as_ref();
    PendingPod {
        key: pod_key(pod),
        requests: pod_requests(pod),
        node_selector: spec
            .and_then(|s| s.node_selector.clone())
            .unwrap_or_default(),
        tolerations: spec
            .and_then(|s| s.tolerations.as_ref())
            .map(|ts| {
                ts.iter()
                    .map(|t| Toleration {
                        key: t.key.clone().unwrap_or_default(),
                        operator: t.operator.clone().unwrap_or_default(),
                        value: t.value.clone().unwrap_or_default(),
                        effect: t.effect.clone().unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
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
    NodeInfo {
        name: node.metadata.name.clone().unwrap_or_default(),
        allocatable: Resources {
            cpu_millis: get("cpu", quantity::millicores),
            memory: get("memory", quantity::base_units),
            pods: get("pods", quantity::base_units),
        },
        requested: Resources::default(),
        labels: node.metadata.labels.clone().unwrap_or_default(),
        taints: spec
            .and_then(|s| s.taints.as_ref())
            .map(|ts| {
                ts.iter()
                    .map(|t| Taint {
                        key: t.key.clone(),
                        value: t.value.clone().unwrap_or_default(),
                        effect: t.effect.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};
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
            pod_requests(&pod),
            Resources {
                cpu_millis: 1000,
                memory: 128 << 20,
                pods: 1
            }
        );
    }
}
