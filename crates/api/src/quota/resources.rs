//! Quota resource names and `ResourceList` arithmetic (upstream:
//! `k8s.io/apiserver/pkg/quota/v1/resources.go`).

use std::collections::{BTreeMap, BTreeSet};

use crate::quantity::Quantity;

/// Resource name → amount, sorted by name (so printing is stable).
pub type ResourceList = BTreeMap<String, Quantity>;

/// Pods in a non-terminal phase.
pub const PODS: &str = "pods";
/// Services.
pub const SERVICES: &str = "services";
/// Services of type NodePort or LoadBalancer: their node ports.
pub const SERVICES_NODEPORTS: &str = "services.nodeports";
/// Services of type LoadBalancer.
pub const SERVICES_LOADBALANCERS: &str = "services.loadbalancers";
/// PersistentVolumeClaims.
pub const PERSISTENTVOLUMECLAIMS: &str = "persistentvolumeclaims";
/// Storage requested by claims.
pub const REQUESTS_STORAGE: &str = "requests.storage";
/// The suffix of per-StorageClass names:
/// `<class>.storageclass.storage.k8s.io/requests.storage`.
pub const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";
/// CPU requests (also the bare `cpu`).
pub const REQUESTS_CPU: &str = "requests.cpu";
/// Memory requests (also the bare `memory`).
pub const REQUESTS_MEMORY: &str = "requests.memory";
/// CPU limits.
pub const LIMITS_CPU: &str = "limits.cpu";
/// Memory limits.
pub const LIMITS_MEMORY: &str = "limits.memory";

/// The core resources whose plain name is also an object count (upstream's
/// "legacy" names, besides `pods`, which counts only live pods).
const LEGACY_COUNTS: [&str; 6] = [
    "services",
    "configmaps",
    "secrets",
    "persistentvolumeclaims",
    "replicationcontrollers",
    "resourcequotas",
];

/// `count/<resource>` for the core group, `count/<resource>.<group>`
/// otherwise (`count/deployments.apps`): every stored object counts.
pub fn object_count_name(group: &str, resource: &str) -> String {
    if group.is_empty() {
        format!("count/{resource}")
    } else {
        format!("count/{resource}.{group}")
    }
}

/// The legacy count name of a core resource (`configmaps`), if it has one.
pub fn legacy_count_name(group: &str, resource: &str) -> Option<&'static str> {
    if !group.is_empty() {
        return None;
    }
    LEGACY_COUNTS.iter().copied().find(|n| *n == resource)
}

/// Parses a `spec.hard`/`status.used` map; values that do not parse are
/// left out (the API server validates quantities before storing them).
pub fn parse_list<'a>(
    map: impl IntoIterator<
        Item = (
            &'a String,
            &'a k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        ),
    >,
) -> ResourceList {
    map.into_iter()
        .filter_map(|(k, v)| Quantity::parse(&v.0).ok().map(|q| (k.clone(), q)))
        .collect()
}

/// `list` in the API's representation, each quantity canonical.
pub fn to_api(
    list: &ResourceList,
) -> BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity> {
    list.iter()
        .map(|(k, v)| {
            let q = k8s_openapi::apimachinery::pkg::api::resource::Quantity(v.to_canonical());
            (k.clone(), q)
        })
        .collect()
}

/// `a + b`, name by name.
pub fn add(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut sum = a.clone();
    for (k, v) in b {
        let entry = sum.entry(k.clone()).or_insert(Quantity::ZERO);
        *entry += *v;
    }
    sum
}

/// `a - b`, name by name, never below zero; names only in `b` are left out.
pub fn subtract(a: &ResourceList, b: &ResourceList) -> ResourceList {
    a.iter()
        .map(|(k, v)| {
            let left = b.get(k).map_or(*v, |taken| *v - *taken);
            (k.clone(), left.max(Quantity::ZERO))
        })
        .collect()
}

/// Only the entries of `list` named in `names`.
pub fn mask<'a>(list: &ResourceList, names: impl IntoIterator<Item = &'a String>) -> ResourceList {
    let names: BTreeSet<&String> = names.into_iter().collect();
    list.iter()
        .filter(|(k, _)| names.contains(k))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// The names in `a` whose amount exceeds the one in `b` (names missing
/// from `b` are not limited).
pub fn exceeding(a: &ResourceList, b: &ResourceList) -> Vec<String> {
    a.iter()
        .filter(|(k, v)| b.get(*k).is_some_and(|limit| *v > limit))
        .map(|(k, _)| k.clone())
        .collect()
}

/// `a=1,b=500m`, sorted by name (upstream's `prettyPrint`).
pub fn pretty_print(list: &ResourceList) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}={}", v.to_canonical()))
        .collect::<Vec<_>>()
        .join(",")
}
