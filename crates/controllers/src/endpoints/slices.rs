//! The EndpointSlices a Service should have (pure): per port set, its
//! backends in slices of at most [`MAX_ENDPOINTS_PER_SLICE`], matched
//! against the slices this controller already made for the Service so that
//! an unchanged slice is not rewritten (Kubernetes' `reconciler.go`, without
//! its packing heuristics: slices are refilled in order).
//!
//! Every endpoint of a selected pod is listed, ready or not:
//! `conditions.ready` is what load balancers use, `serving` is the pod's
//! own readiness and `terminating` marks a pod being deleted (KEP-1672).
//! A Service with no backends keeps one empty placeholder slice.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ObjectReference, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::core::{group_by_ports, has_selector, Backend, BackendPort};

/// The label naming a slice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming who manages a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// Skiff's value of [`MANAGED_BY_LABEL`] (Kubernetes' controller writes
/// `endpointslice-controller.k8s.io`; slices with another value are
/// someone else's and are left alone).
pub const MANAGED_BY: &str = "endpointslice-controller.skiff.dev";
/// Kubernetes' default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// The node label holding a node's zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// What to do with a Service's slices.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Slices to create (`metadata.generateName` set).
    pub create: Vec<EndpointSlice>,
    /// Existing slices with new contents.
    pub update: Vec<EndpointSlice>,
    /// Names of slices to delete.
    pub delete: Vec<String>,
}

impl Plan {
    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// Whether `slice` is one of ours for the Service `name`.
pub fn is_managed_for(slice: &EndpointSlice, name: &str) -> bool {
    let l = slice.metadata.labels.as_ref();
    l.and_then(|l| l.get(MANAGED_BY_LABEL)).map(String::as_str) == Some(MANAGED_BY)
        && l.and_then(|l| l.get(SERVICE_NAME_LABEL))
            .map(String::as_str)
            == Some(name)
}

fn endpoint(ns: &str, b: &Backend, zones: &BTreeMap<String, String>) -> Endpoint {
    Endpoint {
        addresses: vec![b.ip.clone()],
        conditions: Some(EndpointConditions {
            ready: Some(b.ready),
            serving: Some(b.serving),
            terminating: Some(b.terminating),
        }),
        hostname: b.hostname.clone(),
        node_name: b.node_name.clone(),
        zone: b.node_name.as_ref().and_then(|n| zones.get(n)).cloned(),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some(ns.to_string()),
            name: Some(b.pod_name.clone()),
            uid: Some(b.pod_uid.clone()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn slice_ports(ports: &[BackendPort]) -> Vec<EndpointPort> {
    ports
        .iter()
        .map(|p| EndpointPort {
            name: Some(p.name.clone()),
            port: Some(p.port),
            protocol: Some(p.protocol.clone()),
            app_protocol: p.app_protocol.clone(),
        })
        .collect()
}

fn labels(svc: &Service) -> BTreeMap<String, String> {
    let mut l = super::subsets::labels(svc);
    l.insert(
        SERVICE_NAME_LABEL.into(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    l.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    l
}

/// A sortable key of a port list.
fn ports_key(ports: &[EndpointPort]) -> Vec<(String, String, i32)> {
    ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.protocol.clone().unwrap_or_default(),
                p.port.unwrap_or(0),
            )
        })
        .collect()
}

fn same(a: &EndpointSlice, b: &EndpointSlice) -> bool {
    a.endpoints.clone().unwrap_or_default() == b.endpoints.clone().unwrap_or_default()
        && a.ports.clone().unwrap_or_default() == b.ports.clone().unwrap_or_default()
        && a.metadata.labels == b.metadata.labels
        && a.address_type == b.address_type
}

/// Plans the slices of `svc` (None: deleted) given its backends, its
/// existing managed slices and the nodes' zones.
pub fn plan(
    svc: Option<&Service>,
    backends: Vec<Backend>,
    existing: &[&EndpointSlice],
    zones: &BTreeMap<String, String>,
    owner: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
) -> Plan {
    let mut plan = Plan::default();
    let svc = match svc {
        Some(s) if has_selector(s) => s,
        // Gone, or no longer selecting: our slices go.
        _ => {
            plan.delete = existing
                .iter()
                .filter_map(|s| s.metadata.name.clone())
                .collect();
            return plan;
        }
    };
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    let labels = labels(svc);
    // Desired contents, chunked, per port set.
    type Key = Vec<(String, String, i32)>;
    let mut desired: BTreeMap<Key, (Vec<EndpointPort>, Vec<Vec<Endpoint>>)> = BTreeMap::new();
    for (ports, group) in group_by_ports(backends) {
        let eps: Vec<Endpoint> = group.iter().map(|b| endpoint(&ns, b, zones)).collect();
        let chunks = eps
            .chunks(MAX_ENDPOINTS_PER_SLICE)
            .map(<[Endpoint]>::to_vec)
            .collect();
        let ports = slice_ports(&ports);
        desired.insert(ports_key(&ports), (ports, chunks));
    }
    if desired.is_empty() {
        desired.insert(Vec::new(), (Vec::new(), vec![Vec::new()]));
    }
    // Existing slices per port set, oldest name first.
    let mut have: BTreeMap<Key, Vec<&EndpointSlice>> = BTreeMap::new();
    for s in existing {
        have.entry(ports_key(s.ports.as_deref().unwrap_or_default()))
            .or_default()
            .push(s);
    }
    for list in have.values_mut() {
        list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    }
    for (key, (ports, chunks)) in desired {
        let mut olds = have.remove(&key).unwrap_or_default().into_iter();
        for eps in chunks {
            let want = EndpointSlice {
                metadata: ObjectMeta {
                    namespace: Some(ns.clone()),
                    labels: Some(labels.clone()),
                    owner_references: owner.clone().map(|o| vec![o]),
                    ..Default::default()
                },
                address_type: "IPv4".into(),
                endpoints: Some(eps),
                ports: Some(ports.clone()),
            };
            match olds.next() {
                Some(old) if same(old, &want) => {}
                Some(old) => {
                    let mut next = (*old).clone();
                    next.metadata.labels = want.metadata.labels;
                    next.endpoints = want.endpoints;
                    next.ports = want.ports;
                    next.address_type = want.address_type;
                    plan.update.push(next);
                }
                None => {
                    let mut new = want;
                    new.metadata.generate_name = Some(format!("{name}-"));
                    plan.create.push(new);
                }
            }
        }
        plan.delete
            .extend(olds.filter_map(|s| s.metadata.name.clone()));
    }
    for list in have.into_values() {
        plan.delete
            .extend(list.into_iter().filter_map(|s| s.metadata.name.clone()));
    }
    plan
}
