//! The pure part shared by the Endpoints and EndpointSlice controllers:
//! which pods back a Service, on which ports, and in which state
//! (Kubernetes' `pkg/controller/endpoint` and `endpointslice/util`).
//!
//! - Only Services with a `spec.selector` are managed; the rest (the
//!   `kubernetes` Service, hand-made Endpoints) are left alone.
//! - A pod counts if it is in the Service's namespace, matches the
//!   selector, has a pod IP and is not `Succeeded`/`Failed`.
//! - `ready` is the pod's `Ready` condition, forced true by
//!   `publishNotReadyAddresses`; a terminating pod (`deletionTimestamp`) is
//!   never ready (unless published anyway), so it leaves the load balancing
//!   the moment its deletion starts, before its containers stop.
//! - A named `targetPort` is looked up in each pod's container ports, so
//!   pods of one Service may serve it on different numbers; a port a pod
//!   does not have is left out for that pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::pod_util;
use crate::slim_pod::SlimPod;

/// One port of one backend, as both Endpoints and EndpointSlices carry it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BackendPort {
    /// The Service port's name (may be empty).
    pub name: String,
    /// The port number on the pod.
    pub port: i32,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// The Service port's `appProtocol`.
    pub app_protocol: Option<String>,
}

/// One pod behind a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    /// The pod's IP.
    pub ip: String,
    /// The pod's name and uid (`targetRef`).
    pub pod_name: String,
    /// The pod's uid.
    pub pod_uid: String,
    /// The node it runs on.
    pub node_name: Option<String>,
    /// `spec.hostname` when `spec.subdomain` names this Service (headless
    /// DNS records `<hostname>.<svc>.<ns>.svc`).
    pub hostname: Option<String>,
    /// Counts for traffic (see the module doc).
    pub ready: bool,
    /// The pod's own readiness, whether or not it is terminating.
    pub serving: bool,
    /// The pod is being deleted.
    pub terminating: bool,
    /// Its ports, sorted.
    pub ports: Vec<BackendPort>,
}

/// Whether the Service's endpoints are managed by the controllers.
pub fn has_selector(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some_and(|s| !s.is_empty())
}

/// Whether `pod`'s labels match the Service's selector (a plain map: every
/// key equal).
pub fn selects(svc: &Service, pod: &SlimPod) -> bool {
    let Some(sel) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    if sel.is_empty() || pod.metadata.namespace != svc.metadata.namespace {
        return false;
    }
    let labels = pod.metadata.labels.as_ref();
    sel.iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Resolves a Service port's `targetPort` on a pod (`FindPort`): a number
/// is taken as is, a name is looked up in the pod's container ports with
/// the same protocol.
pub fn find_port(
    pod: &SlimPod,
    target: Option<&IntOrString>,
    port: i32,
    protocol: &str,
) -> Option<i32> {
    match target {
        None => Some(port),
        Some(IntOrString::Int(n)) if *n == 0 => Some(port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            pod.spec.as_ref()?.containers.iter().find_map(|c| {
                c.ports.as_ref()?.iter().find_map(|p| {
                    let proto = p.protocol.as_deref().unwrap_or("TCP");
                    (p.name.as_deref() == Some(name.as_str()) && proto == protocol)
                        .then_some(p.container_port)
                })
            })
        }
    }
}

/// The pods behind `svc` with their state and ports, sorted by IP then
/// name (the input to both controllers' plans).
pub fn backends(svc: &Service, pods: &[&SlimPod]) -> Vec<Backend> {
    let spec = svc.spec.clone().unwrap_or_default();
    let publish = spec.publish_not_ready_addresses.unwrap_or(false);
    let svc_name = svc.metadata.name.clone().unwrap_or_default();
    let mut out: Vec<Backend> = pods
        .iter()
        .filter(|p| selects(svc, p))
        .filter_map(|pod| {
            let ip = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .filter(|ip| !ip.is_empty())?;
            let phase = pod_util::phase(pod);
            if phase == "Succeeded" || phase == "Failed" {
                return None;
            }
            let serving = pod_util::is_ready(pod);
            let terminating = pod.metadata.deletion_timestamp.is_some();
            let ready = publish || (serving && !terminating);
            let mut ports: Vec<BackendPort> = spec
                .ports
                .iter()
                .flatten()
                .filter_map(|sp| {
                    let protocol = sp.protocol.clone().unwrap_or_else(|| "TCP".into());
                    let port = find_port(pod, sp.target_port.as_ref(), sp.port, &protocol)?;
                    Some(BackendPort {
                        name: sp.name.clone().unwrap_or_default(),
                        port,
                        protocol,
                        app_protocol: sp.app_protocol.clone(),
                    })
                })
                .collect();
            ports.sort();
            let pspec = pod.spec.as_ref();
            let hostname = pspec
                .filter(|s| s.subdomain.as_deref() == Some(svc_name.as_str()))
                .and_then(|s| s.hostname.clone())
                .filter(|h| !h.is_empty());
            Some(Backend {
                ip,
                pod_name: pod.metadata.name.clone().unwrap_or_default(),
                pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
                node_name: pod_util::node_name(pod).map(str::to_string),
                hostname,
                ready,
                serving,
                terminating,
                ports,
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.ip, &a.pod_name).cmp(&(&b.ip, &b.pod_name)));
    out
}

/// Backends grouped by their port set (one Endpoints subset or one family
/// of EndpointSlices per group), in a stable order.
pub fn group_by_ports(backends: Vec<Backend>) -> BTreeMap<Vec<BackendPort>, Vec<Backend>> {
    let mut groups: BTreeMap<Vec<BackendPort>, Vec<Backend>> = BTreeMap::new();
    for b in backends {
        groups.entry(b.ports.clone()).or_default().push(b);
    }
    groups
}
