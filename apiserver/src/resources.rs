//! The table of resources the API server serves.
//!
//! Each [`ResourceInfo`] names one REST resource the way discovery does
//! (`APIResource`): group, version, plural, kind, scope, verbs, short names,
//! and the subresources it has. Everything generic (routing, storage keys,
//! discovery, OpenAPI paths, tables) is driven by this table, so adding a
//! plain resource is one entry here (plus its type in `schema_kinds.rs`,
//! and, if Kubernetes has them, defaults, validation and printer columns).
//!
//! Custom resources (from CustomResourceDefinitions) are not in this
//! table: [`crate::crd_registry`] builds their `ResourceInfo`s at run time,
//! with [`ResourceInfo::custom`] set.
//!
//! Versions of one resource share a storage key (the key has no version).
//! [`storage_version`] names the representation that is stored; today only
//! `autoscaling/v1` HorizontalPodAutoscalers differ, stored as `v2` and
//! converted by [`hpa_conversion`].

#[path = "schema_hpa_conversion.rs"]
pub mod hpa_conversion;

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
    /// For a custom resource, what its CRD says (schema, printer columns,
    /// scale paths); `None` for the built-in kinds of [`RESOURCES`].
    pub custom: Option<&'static crate::crd::CustomResource>,
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

    /// Whether the resource only answers `create` and stores nothing (the
    /// authentication and authorization review APIs).
    pub fn is_create_only(&self) -> bool {
        matches!(self.group, "authentication.k8s.io" | "authorization.k8s.io")
    }

    /// The verbs discovery advertises: only `create` for the review APIs.
    pub fn verbs(&self) -> &'static [&'static str] {
        if self.is_create_only() {
            return &["create"];
        }
        STANDARD_VERBS
    }
}

/// The verbs of a stored resource (what discovery advertises for it).
pub const STANDARD_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

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
            custom: None,
        }
    };
}

/// Every resource served, in discovery order.
pub static RESOURCES: &[ResourceInfo] = &[
    // core/v1
    resource!("", "v1", "namespaces", "namespace", "Namespace", false, short: ["ns"], categories: [], sub: ["status", "finalize"]),
    resource!("", "v1", "nodes", "node", "Node", false, short: ["no"], categories: [], sub: ["status"]),
    resource!("", "v1", "pods", "pod", "Pod", true, short: ["po"], categories: ["all"], sub: ["status", "binding", "log", "eviction", "exec", "attach", "portforward"]),
    resource!("", "v1", "services", "service", "Service", true, short: ["svc"], categories: ["all"], sub: ["status"]),
    resource!("", "v1", "endpoints", "endpoints", "Endpoints", true, short: ["ep"], categories: [], sub: []),
    resource!("", "v1", "configmaps", "configmap", "ConfigMap", true, short: ["cm"], categories: [], sub: []),
    resource!("", "v1", "secrets", "secret", "Secret", true, short: [], categories: [], sub: []),
    resource!("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", true, short: ["sa"], categories: [], sub: ["token"]),
    resource!("", "v1", "events", "event", "Event", true, short: ["ev"], categories: [], sub: []),
    resource!("", "v1", "resourcequotas", "resourcequota", "ResourceQuota", true, short: ["quota"], categories: [], sub: ["status"]),
    resource!("", "v1", "limitranges", "limitrange", "LimitRange", true, short: ["limits"], categories: [], sub: []),
    resource!("", "v1", "persistentvolumes", "persistentvolume", "PersistentVolume", false, short: ["pv"], categories: [], sub: ["status"]),
    resource!("", "v1", "persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim", true, short: ["pvc"], categories: [], sub: ["status"]),
    // apps/v1
    resource!("apps", "v1", "deployments", "deployment", "Deployment", true, short: ["deploy"], categories: ["all"], sub: ["status", "scale"]),
    resource!("apps", "v1", "replicasets", "replicaset", "ReplicaSet", true, short: ["rs"], categories: ["all"], sub: ["status", "scale"]),
    resource!("apps", "v1", "statefulsets", "statefulset", "StatefulSet", true, short: ["sts"], categories: ["all"], sub: ["status", "scale"]),
    resource!("apps", "v1", "daemonsets", "daemonset", "DaemonSet", true, short: ["ds"], categories: ["all"], sub: ["status"]),
    resource!("apps", "v1", "controllerrevisions", "controllerrevision", "ControllerRevision", true, short: [], categories: [], sub: []),
    // batch/v1
    resource!("batch", "v1", "jobs", "job", "Job", true, short: [], categories: ["all"], sub: ["status"]),
    resource!("batch", "v1", "cronjobs", "cronjob", "CronJob", true, short: ["cj"], categories: ["all"], sub: ["status"]),
    // autoscaling: v2 first, so discovery prefers it; both share one
    // storage key and v2 is what is stored (see `storage_version`).
    resource!("autoscaling", "v2", "horizontalpodautoscalers", "horizontalpodautoscaler", "HorizontalPodAutoscaler", true, short: ["hpa"], categories: ["all"], sub: ["status"]),
    resource!("autoscaling", "v1", "horizontalpodautoscalers", "horizontalpodautoscaler", "HorizontalPodAutoscaler", true, short: ["hpa"], categories: ["all"], sub: ["status"]),
    // policy/v1
    resource!("policy", "v1", "poddisruptionbudgets", "poddisruptionbudget", "PodDisruptionBudget", true, short: ["pdb"], categories: [], sub: ["status"]),
    // coordination.k8s.io/v1
    resource!("coordination.k8s.io", "v1", "leases", "lease", "Lease", true, short: [], categories: [], sub: []),
    // discovery.k8s.io/v1
    resource!("discovery.k8s.io", "v1", "endpointslices", "endpointslice", "EndpointSlice", true, short: [], categories: [], sub: []),
    resource!("networking.k8s.io", "v1", "networkpolicies", "networkpolicy", "NetworkPolicy", true, short: ["netpol"], categories: [], sub: []),
    // events.k8s.io/v1: stored apart from core/v1 events (Kubernetes
    // stores both in one place and converts; see the crate caveats).
    resource!("events.k8s.io", "v1", "events", "event", "Event", true, short: ["ev"], categories: [], sub: []),
    // scheduling.k8s.io/v1
    resource!("scheduling.k8s.io", "v1", "priorityclasses", "priorityclass", "PriorityClass", false, short: ["pc"], categories: [], sub: []),
    // storage.k8s.io/v1
    resource!("storage.k8s.io", "v1", "storageclasses", "storageclass", "StorageClass", false, short: ["sc"], categories: [], sub: []),
    // apiextensions.k8s.io/v1: the custom resources they define are
    // served from `crd_registry`, not from this table.
    resource!("apiextensions.k8s.io", "v1", "customresourcedefinitions", "customresourcedefinition", "CustomResourceDefinition", false, short: ["crd", "crds"], categories: ["api-extensions"], sub: ["status"]),
    // rbac.authorization.k8s.io/v1
    resource!("rbac.authorization.k8s.io", "v1", "roles", "role", "Role", true, short: [], categories: [], sub: []),
    resource!("rbac.authorization.k8s.io", "v1", "rolebindings", "rolebinding", "RoleBinding", true, short: [], categories: [], sub: []),
    resource!("rbac.authorization.k8s.io", "v1", "clusterroles", "clusterrole", "ClusterRole", false, short: [], categories: [], sub: []),
    resource!("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "clusterrolebinding", "ClusterRoleBinding", false, short: [], categories: [], sub: []),
    // authentication.k8s.io/v1, authorization.k8s.io/v1: create-only
    // reviews, answered and never stored (reviews.rs).
    resource!("authentication.k8s.io", "v1", "tokenreviews", "tokenreview", "TokenReview", false, short: [], categories: [], sub: []),
    resource!("authentication.k8s.io", "v1", "selfsubjectreviews", "selfsubjectreview", "SelfSubjectReview", false, short: [], categories: [], sub: []),
    resource!("authorization.k8s.io", "v1", "localsubjectaccessreviews", "localsubjectaccessreview", "LocalSubjectAccessReview", true, short: [], categories: [], sub: []),
    resource!("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "selfsubjectaccessreview", "SelfSubjectAccessReview", false, short: [], categories: [], sub: []),
    resource!("authorization.k8s.io", "v1", "selfsubjectrulesreviews", "selfsubjectrulesreview", "SelfSubjectRulesReview", false, short: [], categories: [], sub: []),
    resource!("authorization.k8s.io", "v1", "subjectaccessreviews", "subjectaccessreview", "SubjectAccessReview", false, short: [], categories: [], sub: []),
];

/// The version whose representation is stored for `resource`: itself,
/// except for `autoscaling/v1` HorizontalPodAutoscalers, which are stored as
/// `autoscaling/v2` (kube-apiserver's storage version) and converted.
pub fn storage_version(resource: &'static ResourceInfo) -> &'static ResourceInfo {
    if (resource.group, resource.version) == ("autoscaling", "v1") {
        return find("autoscaling", "v2", resource.plural).unwrap_or(resource);
    }
    resource
}

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
