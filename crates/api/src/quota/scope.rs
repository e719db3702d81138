//! Quota scopes: which pods a scoped quota covers (upstream's
//! `podMatchesScopeFunc`) and the checks a quota's scopes must pass
//! before it is stored (`ValidateResourceQuotaSpec`).
//!
//! A quota with scopes covers only pods: every scope in `spec.scopes` and
//! every requirement of `spec.scopeSelector` must match. Objects other than
//! pods never match a scoped quota, as upstream's object-count evaluators.

use k8s_openapi::api::core::v1::{Pod, ResourceQuotaSpec, ScopedResourceSelectorRequirement};

/// The scopes Skiff (and Kubernetes) knows.
pub const SCOPES: [&str; 6] = [
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
];

/// A scope requirement that cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// Not one of [`SCOPES`].
    #[error("unsupported scope {0:?}")]
    Unsupported(String),
    /// An operator that is not `In`, `NotIn`, `Exists` or `DoesNotExist`.
    #[error("unsupported scope selector operator {0:?}")]
    Operator(String),
}

/// The requirements of a spec: `scopes` as `Exists`, then `scopeSelector`.
fn requirements(spec: &ResourceQuotaSpec) -> Vec<ScopedResourceSelectorRequirement> {
    let mut all: Vec<ScopedResourceSelectorRequirement> = spec
        .scopes
        .iter()
        .flatten()
        .map(|s| ScopedResourceSelectorRequirement {
            scope_name: s.clone(),
            operator: "Exists".into(),
            values: None,
        })
        .collect();
    if let Some(sel) = &spec.scope_selector {
        all.extend(sel.match_expressions.iter().flatten().cloned());
    }
    all
}

/// Whether the quota has any scope.
pub fn is_scoped(spec: &ResourceQuotaSpec) -> bool {
    !requirements(spec).is_empty()
}

/// Whether every container and init container states neither requests nor
/// limits of cpu and memory (QoS class BestEffort).
pub fn is_best_effort(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .all(|c| {
            let r = c.resources.as_ref();
            let states = |m: Option<&std::collections::BTreeMap<String, _>>| {
                m.is_some_and(|m| m.contains_key("cpu") || m.contains_key("memory"))
            };
            !states(r.and_then(|r| r.requests.as_ref()))
                && !states(r.and_then(|r| r.limits.as_ref()))
        })
}

/// Whether the pod's affinity names other namespaces (a `namespaces` list or
/// a `namespaceSelector` on any pod (anti-)affinity term).
fn uses_cross_namespace_affinity(pod: &Pod) -> bool {
    let Some(a) = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else {
        return false;
    };
    let cross = |t: &k8s_openapi::api::core::v1::PodAffinityTerm| {
        t.namespaces.as_ref().is_some_and(|n| !n.is_empty()) || t.namespace_selector.is_some()
    };
    let required = a
        .pod_affinity
        .iter()
        .flat_map(|p| {
            p.required_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
        })
        .chain(a.pod_anti_affinity.iter().flat_map(|p| {
            p.required_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
        }))
        .any(cross);
    let preferred = a
        .pod_affinity
        .iter()
        .flat_map(|p| {
            p.preferred_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
        })
        .chain(a.pod_anti_affinity.iter().flat_map(|p| {
            p.preferred_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
        }))
        .any(|w| cross(&w.pod_affinity_term));
    required || preferred
}

/// Whether one requirement matches `pod`.
fn requirement_matches(
    r: &ScopedResourceSelectorRequirement,
    pod: &Pod,
) -> Result<bool, ScopeError> {
    let spec = pod.spec.as_ref();
    Ok(match r.scope_name.as_str() {
        "Terminating" | "NotTerminating" => {
            let terminating = spec
                .and_then(|s| s.active_deadline_seconds)
                .is_some_and(|d| d >= 0);
            terminating == (r.scope_name == "Terminating")
        }
        "BestEffort" => is_best_effort(pod),
        "NotBestEffort" => !is_best_effort(pod),
        "CrossNamespacePodAffinity" => uses_cross_namespace_affinity(pod),
        "PriorityClass" => {
            // A label selector over {PriorityClass: <the pod's class>}.
            let class = spec
                .and_then(|s| s.priority_class_name.as_deref())
                .filter(|c| !c.is_empty());
            let values = r.values.as_deref().unwrap_or_default();
            match r.operator.as_str() {
                "In" => class.is_some_and(|c| values.iter().any(|v| v == c)),
                "NotIn" => class.is_none_or(|c| !values.iter().any(|v| v == c)),
                "Exists" => class.is_some(),
                "DoesNotExist" => class.is_none(),
                other => return Err(ScopeError::Operator(other.into())),
            }
        }
        other => return Err(ScopeError::Unsupported(other.into())),
    })
}

/// Whether a quota with `spec` covers `pod`: all its scope requirements
/// match (a quota without scopes covers every pod).
pub fn pod_matches(spec: &ResourceQuotaSpec, pod: &Pod) -> Result<bool, ScopeError> {
    for r in requirements(spec) {
        if !requirement_matches(&r, pod)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The problems of a quota's scopes, as `(field path, message)`, for the
/// API server's validation: unknown scopes, unknown operators, values
/// where none belong or missing where needed, and scopes other than
/// `PriorityClass` used with `In`/`NotIn`.
pub fn validate(spec: &ResourceQuotaSpec) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    for (i, s) in spec.scopes.iter().flatten().enumerate() {
        if !SCOPES.contains(&s.as_str()) {
            errors.push((
                format!("spec.scopes[{i}]"),
                format!("unsupported scope {s:?}"),
            ));
        }
    }
    let exprs = spec
        .scope_selector
        .as_ref()
        .and_then(|s| s.match_expressions.as_ref());
    for (i, r) in exprs.into_iter().flatten().enumerate() {
        let path = format!("spec.scopeSelector.matchExpressions[{i}]");
        if !SCOPES.contains(&r.scope_name.as_str()) {
            errors.push((
                format!("{path}.scopeName"),
                format!("unsupported scope {:?}", r.scope_name),
            ));
        }
        let has_values = r.values.as_ref().is_some_and(|v| !v.is_empty());
        match r.operator.as_str() {
            "In" | "NotIn" if r.scope_name != "PriorityClass" => errors.push((
                format!("{path}.operator"),
                "must be 'Exist' when scope is any of ResourceQuotaScopeTerminating, ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity".into(),
            )),
            "In" | "NotIn" if !has_values => errors.push((
                format!("{path}.values"),
                "must be at least one value when `operator` is 'In' or 'NotIn' for scope selector"
                    .into(),
            )),
            "Exists" | "DoesNotExist" if has_values => errors.push((
                format!("{path}.values"),
                "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector"
                    .into(),
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errors.push((
                format!("{path}.operator"),
                format!("not a valid selector operator {other:?}"),
            )),
        }
    }
    errors
}
