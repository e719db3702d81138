//! The table of resources the API server serves.
//!
//! Each [`ResourceInfo`] names one REST resource the way discovery does
//! (`APIResource`): group, version, plural, kind, scope, verbs, short names,
//! and the subresources it has. Everything generic (routing, storage keys,
//! discovery, OpenAPI paths, tables) is driven by this table, so adding a
//! plain resource is one entry here.

/// One served resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group, `""` for the core group.
    pub group: &'static str,
    /// Version, e.g. `v1`.
    pub version: &'static str,
    /// Plural, lower-case resource name used in URLs, e.g. `pods`.
    pub plural: &'static str,
    /// Singular name, e.g. `pod`.
    pub singular: &'static str,
    /// Kind, e.g. `Pod`.
    pub kind: &'static str,
    /// Kind of the list, e.g. `PodList`.
    pub list_kind: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// kubectl short names, e.g. `po`.
    pub short_names: &'static [&'static str],
    /// Categories, e.g. `all`.
    pub categories: &'static [&'static str],
    /// Subresources served, e.g. `status`, `binding`, `log`.
    pub subresources: &'static [&'static str],
}

impl ResourceInfo {
    /// `group/version`, or `version` for the core group (an object's `apiVersion`).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The store prefix for every object of this resource:
    /// `/registry/<group>/<plural>/` (`core` for the core group), then
    /// `<namespace>/<name>` or `<name>`.
    pub fn storage_prefix(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        format!("/registry/{group}/{}/", self.plural)
    }

    /// The store key of one object.
    pub fn storage_key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{ns}/{name}", self.storage_prefix()),
            _ => format!("{}{name}", self.storage_prefix()),
        }
    }

    /// The verbs discovery advertises.
    pub fn verbs(&self) -> &'static [&'static str] {
        &[
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }
}

macro_rules! resource {
    ($group:expr, $version:expr, $plural:expr, $singular:expr, $kind:expr, $namespaced:expr,
     short: [$($short:expr),*], categories: [$($cat:expr),*], sub: [$($sub:expr),*]) => {
        ResourceInfo {
            group: $group,
            version: $version,
            plural: $plural,
            singular: $singular,
            kind: $kind,
            list_kind: concat!($kind, "List"),
            namespaced: $namespaced,
            short_names: &[$($short),*],
            categories: &[$($cat),*],
            subresources: &[$($sub),*],
        }
    };
}

/// Every resource served, in discovery order.
pub static RESOURCES: &[ResourceInfo] = &[
    resource!("", "v1", "namespaces", "namespace", "Namespace", false, short: ["ns"], categories: [], sub: ["status"]),
    resource!("", "v1", "nodes", "node", "Node", false, short: ["no"], categories: [], sub: ["status"]),
    resource!("", "v1", "pods", "pod", "Pod", true, short: ["po"], categories: ["all"], sub: ["status", "binding", "log"]),
    resource!("", "v1", "configmaps", "configmap", "ConfigMap", true, short: ["cm"], categories: [], sub: []),
    resource!("", "v1", "secrets", "secret", "Secret", true, short: [], categories: [], sub: []),
    resource!("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", true, short: ["sa"], categories: [], sub: []),
    resource!("", "v1", "events", "event", "Event", true, short: ["ev"], categories: [], sub: []),
    resource!("coordination.k8s.io", "v1", "leases", "lease", "Lease", true, short: [], categories: [], sub: []),
];

/// Finds a resource by group, version and plural.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The distinct group-versions served, core (`v1`) first.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}
