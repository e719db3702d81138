//! The Endpoints object a Service should have (pure): one subset per port
//! set, ready pods in `addresses`, the others in `notReadyAddresses`.
//! Terminating pods are left out unless `publishNotReadyAddresses`
//! (Kubernetes' Endpoints controller does the same; EndpointSlices keep
//! them with `terminating: true`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::core::{group_by_ports, Backend};

/// Label Kubernetes puts on the Endpoints of a headless Service.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

fn address(ns: &str, b: &Backend) -> EndpointAddress {
    EndpointAddress {
        ip: b.ip.clone(),
        hostname: b.hostname.clone(),
        node_name: b.node_name.clone(),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some(ns.to_string()),
            name: Some(b.pod_name.clone()),
            uid: Some(b.pod_uid.clone()),
            ..Default::default()
        }),
    }
}

/// The subsets for `backends` (from [`super::core::backends`]).
pub fn subsets(ns: &str, backends: Vec<Backend>) -> Vec<EndpointSubset> {
    let kept = backends
        .into_iter()
        .filter(|b| b.ready || !b.terminating)
        .collect();
    group_by_ports(kept)
        .into_iter()
        .map(|(ports, group)| {
            let (ready, not_ready): (Vec<&Backend>, Vec<&Backend>) =
                group.iter().partition(|b| b.ready);
            let list = |v: Vec<&Backend>| {
                (!v.is_empty()).then(|| v.into_iter().map(|b| address(ns, b)).collect())
            };
            EndpointSubset {
                addresses: list(ready),
                not_ready_addresses: list(not_ready),
                ports: (!ports.is_empty()).then(|| {
                    ports
                        .into_iter()
                        .map(|p| EndpointPort {
                            name: (!p.name.is_empty()).then_some(p.name),
                            port: p.port,
                            protocol: Some(p.protocol),
                            app_protocol: p.app_protocol,
                        })
                        .collect()
                }),
            }
        })
        .collect()
}

/// The labels of a Service's Endpoints: the Service's own, plus the
/// headless marker.
pub fn labels(svc: &Service) -> BTreeMap<String, String> {
    let mut l = svc.metadata.labels.clone().unwrap_or_default();
    let headless = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None");
    if headless {
        l.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        l.remove(HEADLESS_LABEL);
    }
    l
}

/// What to do with a Service's Endpoints.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Nothing: already right, or a Service without selector.
    Keep,
    /// Create this object.
    Create(Endpoints),
    /// Replace the stored one's labels and subsets with these.
    Update(Endpoints),
    /// The Service is gone: delete the Endpoints.
    Delete,
}

/// Compares the desired Endpoints of `svc` (None: deleted) with `current`.
pub fn plan(svc: Option<&Service>, backends: Vec<Backend>, current: Option<&Endpoints>) -> Plan {
    let Some(svc) = svc else {
        return if current.is_some() {
            Plan::Delete
        } else {
            Plan::Keep
        };
    };
    if !super::core::has_selector(svc) {
        return Plan::Keep;
    }
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let want = Endpoints {
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: Some(ns.clone()),
            labels: Some(labels(svc)),
            ..Default::default()
        },
        subsets: Some(subsets(&ns, backends)).filter(|s| !s.is_empty()),
    };
    match current {
        None => Plan::Create(want),
        Some(cur) => {
            let same_subsets =
                cur.subsets.clone().unwrap_or_default() == want.subsets.clone().unwrap_or_default();
            let same_labels = cur.metadata.labels.clone().unwrap_or_default()
                == want.metadata.labels.clone().unwrap_or_default();
            if same_subsets && same_labels {
                Plan::Keep
            } else {
                let mut next = cur.clone();
                next.metadata.labels = want.metadata.labels;
                next.subsets = want.subsets;
                Plan::Update(next)
            }
        }
    }
}
