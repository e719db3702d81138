//! What one object costs against a quota (upstream's evaluators in
//! `pkg/quota/v1/evaluator/core`: `PodUsageFunc`, the service and
//! persistent-volume-claim evaluators, and the generic object count).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaim, Pod, ResourceRequirements, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

use crate::quantity::Quantity;
use crate::quota::resources::{self as names, legacy_count_name, object_count_name, ResourceList};

/// Which evaluator prices objects of a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evaluator {
    /// core/v1 pods: counts plus compute requests and limits.
    Pod,
    /// core/v1 services: counts, node ports, load balancers.
    Service,
    /// core/v1 persistentvolumeclaims: counts and storage, per class too.
    Claim,
    /// Any other resource: its object count only.
    Count,
}

impl Evaluator {
    /// The evaluator for `resource` of API `group`.
    pub fn of(group: &str, resource: &str) -> Evaluator {
        match (group, resource) {
            ("", "pods") => Evaluator::Pod,
            ("", "services") => Evaluator::Service,
            ("", "persistentvolumeclaims") => Evaluator::Claim,
            _ => Evaluator::Count,
        }
    }

    /// Whether this evaluator prices quota resource `name` for objects of
    /// `group`/`resource` (upstream's `MatchingResources`).
    pub fn tracks(&self, group: &str, resource: &str, name: &str) -> bool {
        if name == object_count_name(group, resource)
            || Some(name) == legacy_count_name(group, resource)
        {
            return true;
        }
        match self {
            Evaluator::Pod => {
                const POD: [&str; 11] = [
                    "pods",
                    "cpu",
                    "memory",
                    "ephemeral-storage",
                    "requests.cpu",
                    "requests.memory",
                    "requests.ephemeral-storage",
                    "limits.cpu",
                    "limits.memory",
                    "limits.ephemeral-storage",
                    "count/pods",
                ];
                POD.contains(&name)
                    || name.starts_with("hugepages-")
                    || name.starts_with("requests.hugepages-")
                    || name.strip_prefix("requests.").is_some_and(is_extended)
            }
            Evaluator::Service => {
                [names::SERVICES_NODEPORTS, names::SERVICES_LOADBALANCERS].contains(&name)
            }
            Evaluator::Claim => {
                name == names::REQUESTS_STORAGE || name.contains(names::STORAGE_CLASS_SUFFIX)
            }
            Evaluator::Count => false,
        }
    }
}

/// Extended resources (`example.com/gpu`): a domain that is not
/// `kubernetes.io` (upstream's `IsExtendedResourceName`).
fn is_extended(name: &str) -> bool {
    name.contains('/') && !name.starts_with("kubernetes.io/")
}

/// The object count of one object of `group`/`resource`: `count/…` and,
/// for the core kinds that have one, the legacy name.
pub fn count_usage(group: &str, resource: &str) -> ResourceList {
    let mut usage = ResourceList::new();
    usage.insert(object_count_name(group, resource), Quantity::from_units(1));
    if let Some(legacy) = legacy_count_name(group, resource) {
        usage.insert(legacy.to_string(), Quantity::from_units(1));
    }
    usage
}

/// Whether a pod is charged for compute (upstream's `QuotaV1Pod`): not in a
/// terminal phase, and not past the grace period of its deletion. `now` is
/// in Unix seconds.
pub fn pod_is_charged(pod: &Pod, now: i64) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    match (
        &pod.metadata.deletion_timestamp,
        pod.metadata.deletion_grace_period_seconds,
    ) {
        (Some(at), Some(grace)) => now <= at.0.as_second().saturating_add(grace),
        _ => true,
    }
}

fn parse_map(map: Option<&BTreeMap<String, ApiQuantity>>) -> ResourceList {
    map.map(names::parse_list).unwrap_or_default()
}

/// Requests and limits of one container.
fn container_resources(c: &Container) -> (ResourceList, ResourceList) {
    let r: Option<&ResourceRequirements> = c.resources.as_ref();
    (
        parse_map(r.and_then(|r| r.requests.as_ref())),
        parse_map(r.and_then(|r| r.limits.as_ref())),
    )
}

/// `a` raised to at least `b`, name by name.
fn max_into(a: &mut ResourceList, b: &ResourceList) {
    for (k, v) in b {
        let e = a.entry(k.clone()).or_insert(*v);
        if *v > *e {
            *e = *v;
        }
    }
}

/// The pod's effective requests and limits (upstream's `PodRequests` and
/// `PodLimits`): the sum over its containers and restartable (sidecar)
/// init containers, at least the largest regular init container (which
/// runs alone, before them), plus `spec.overhead`.
pub fn pod_requests_and_limits(pod: &Pod) -> (ResourceList, ResourceList) {
    let Some(spec) = pod.spec.as_ref() else {
        return Default::default();
    };
    let (mut requests, mut limits) = (ResourceList::new(), ResourceList::new());
    let (mut sidecar_requests, mut sidecar_limits) = (ResourceList::new(), ResourceList::new());
    let (mut init_requests, mut init_limits) = (ResourceList::new(), ResourceList::new());
    for c in &spec.containers {
        let (r, l) = container_resources(c);
        requests = names::add(&requests, &r);
        limits = names::add(&limits, &l);
    }
    for c in spec.init_containers.iter().flatten() {
        let (r, l) = container_resources(c);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecar_requests = names::add(&sidecar_requests, &r);
            sidecar_limits = names::add(&sidecar_limits, &l);
        } else {
            // A regular init container runs with the sidecars started
            // before it.
            max_into(&mut init_requests, &names::add(&sidecar_requests, &r));
            max_into(&mut init_limits, &names::add(&sidecar_limits, &l));
        }
    }
    requests = names::add(&requests, &sidecar_requests);
    limits = names::add(&limits, &sidecar_limits);
    max_into(&mut requests, &init_requests);
    max_into(&mut limits, &init_limits);
    let overhead = parse_map(spec.overhead.as_ref());
    (
        names::add(&requests, &overhead),
        names::add(&limits, &overhead),
    )
}

/// What `pod` costs at Unix time `now` (upstream's `PodUsageFunc`):
/// `count/pods` always; while it is charged ([`pod_is_charged`]) also
/// `pods`, `cpu`/`requests.cpu`, `limits.cpu`, the same for memory and
/// ephemeral storage, hugepages and `requests.<extended resource>`.
pub fn pod_usage(pod: &Pod, now: i64) -> ResourceList {
    let mut usage = count_usage("", "pods");
    if !pod_is_charged(pod, now) {
        return usage;
    }
    let (requests, limits) = pod_requests_and_limits(pod);
    usage.insert(names::PODS.into(), Quantity::from_units(1));
    for base in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = requests.get(base) {
            usage.insert(base.into(), *q);
            usage.insert(format!("requests.{base}"), *q);
        }
        if let Some(q) = limits.get(base) {
            usage.insert(format!("limits.{base}"), *q);
        }
    }
    for (name, q) in &requests {
        if name.starts_with("hugepages-") {
            usage.insert(name.clone(), *q);
            usage.insert(format!("requests.{name}"), *q);
        } else if is_extended(name) {
            usage.insert(format!("requests.{name}"), *q);
        }
    }
    usage
}

/// Which compute resources each container states, for the quota rule that
/// a pod under a cpu or memory quota must state them (upstream's
/// `podComputeUsageHelper` on one container).
pub fn container_states(c: &Container, name: &str) -> bool {
    let (requests, limits) = container_resources(c);
    match name {
        "cpu" | "requests.cpu" => requests.contains_key("cpu"),
        "memory" | "requests.memory" => requests.contains_key("memory"),
        "limits.cpu" => limits.contains_key("cpu"),
        "limits.memory" => limits.contains_key("memory"),
        _ => true,
    }
}

/// What a service costs: `services`, `count/services`, its node ports
/// (`NodePort` and `LoadBalancer` unless `allocateLoadBalancerNodePorts`
/// is false) and `services.loadbalancers`.
pub fn service_usage(svc: &Service) -> ResourceList {
    let mut usage = count_usage("", "services");
    let spec = svc.spec.as_ref();
    let ports = spec.and_then(|s| s.ports.as_ref()).map_or(0, Vec::len) as i64;
    let (node_ports, balancers) = match spec.and_then(|s| s.type_.as_deref()) {
        Some("NodePort") => (ports, 0),
        Some("LoadBalancer") => {
            let allocate = spec
                .and_then(|s| s.allocate_load_balancer_node_ports)
                .unwrap_or(true);
            (if allocate { ports } else { 0 }, 1)
        }
        _ => (0, 0),
    };
    usage.insert(
        names::SERVICES_NODEPORTS.into(),
        Quantity::from_units(node_ports),
    );
    usage.insert(
        names::SERVICES_LOADBALANCERS.into(),
        Quantity::from_units(balancers),
    );
    usage
}

/// What a claim costs: `persistentvolumeclaims`, `count/…`,
/// `requests.storage`, and the same two per StorageClass
/// (`<class>.storageclass.storage.k8s.io/requests.storage`).
pub fn claim_usage(pvc: &PersistentVolumeClaim) -> ResourceList {
    let mut usage = count_usage("", "persistentvolumeclaims");
    let spec = pvc.spec.as_ref();
    let storage = spec
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| Quantity::parse(&q.0).ok());
    let class = spec
        .and_then(|s| s.storage_class_name.as_deref())
        .filter(|c| !c.is_empty());
    if let Some(class) = class {
        usage.insert(
            format!(
                "{class}{}{}",
                names::STORAGE_CLASS_SUFFIX,
                names::PERSISTENTVOLUMECLAIMS
            ),
            Quantity::from_units(1),
        );
    }
    if let Some(q) = storage {
        usage.insert(names::REQUESTS_STORAGE.into(), q);
        if let Some(class) = class {
            usage.insert(
                format!(
                    "{class}{}{}",
                    names::STORAGE_CLASS_SUFFIX,
                    names::REQUESTS_STORAGE
                ),
                q,
            );
        }
    }
    usage
}

/// Why an object could not be priced.
#[derive(Debug, thiserror::Error)]
#[error("decoding the {kind} for quota: {source}")]
pub struct UsageError {
    /// The kind being decoded.
    pub kind: &'static str,
    /// The decoder's error.
    #[source]
    pub source: serde_json::Error,
}

/// A decoded object, priced by its evaluator.
pub enum Priced {
    /// A pod (kept for the quota's scope and must-specify checks).
    Pod(Box<Pod>, ResourceList),
    /// Any other object.
    Other(ResourceList),
}

impl Priced {
    /// The usage.
    pub fn usage(&self) -> &ResourceList {
        match self {
            Priced::Pod(_, u) | Priced::Other(u) => u,
        }
    }

    /// The pod, if it is one.
    pub fn pod(&self) -> Option<&Pod> {
        match self {
            Priced::Pod(p, _) => Some(p),
            Priced::Other(_) => None,
        }
    }
}

/// Prices an object of `group`/`resource` given as JSON (the API server's
/// form) at Unix time `now`.
pub fn price(
    group: &str,
    resource: &str,
    obj: &serde_json::Value,
    now: i64,
) -> Result<Priced, UsageError> {
    fn decode<T: serde::de::DeserializeOwned>(
        kind: &'static str,
        obj: &serde_json::Value,
    ) -> Result<T, UsageError> {
        T::deserialize(obj).map_err(|source| UsageError { kind, source })
    }
    Ok(match Evaluator::of(group, resource) {
        Evaluator::Pod => {
            let pod: Pod = decode("pod", obj)?;
            let usage = pod_usage(&pod, now);
            Priced::Pod(Box::new(pod), usage)
        }
        Evaluator::Service => Priced::Other(service_usage(&decode("service", obj)?)),
        Evaluator::Claim => Priced::Other(claim_usage(&decode("persistentvolumeclaim", obj)?)),
        Evaluator::Count => Priced::Other(count_usage(group, resource)),
    })
}
