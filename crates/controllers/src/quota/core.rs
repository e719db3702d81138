//! The usage of one ResourceQuota computed from its namespace's objects
//! (upstream's `CalculateUsage` over the pod, service, claim and
//! object-count evaluators), and the status to write.
//!
//! Every resource in `spec.hard` that some evaluator prices gets an entry
//! in `status.used`, zero when nothing counts; names no evaluator knows
//! (a typo, a resource not served) get none, so admission never waits for
//! them. A quota with scopes counts only the pods its scopes match; its
//! other resources stay at zero.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, Pod, ResourceQuota, ResourceQuotaStatus, Service,
};
use skiff_api::quantity::Quantity;
use skiff_api::quota::resources::{self, ResourceList};
use skiff_api::quota::scope;
use skiff_api::quota::usage::{self, Evaluator};

/// Where the usage of one quota resource comes from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// The namespace's pods.
    Pods,
    /// Its services.
    Services,
    /// Its persistent volume claims.
    Claims,
    /// The number of objects of another resource (`group`, `resource`).
    Count {
        /// API group, empty for core.
        group: String,
        /// Plural resource name.
        resource: String,
    },
}

/// Which objects price quota resource `name`, `None` if none does.
pub fn source_of(name: &str) -> Option<Source> {
    for (source, resource) in [
        (Source::Pods, "pods"),
        (Source::Services, "services"),
        (Source::Claims, "persistentvolumeclaims"),
    ] {
        if Evaluator::of("", resource).tracks("", resource, name) {
            return Some(source);
        }
    }
    let (resource, group) = match name.strip_prefix("count/") {
        Some(rest) => rest.split_once('.').unwrap_or((rest, "")),
        // The legacy names of core kinds without their own evaluator.
        None if resources::legacy_count_name("", name).is_some() => (name, ""),
        None => return None,
    };
    (!resource.is_empty()).then(|| Source::Count {
        group: group.into(),
        resource: resource.into(),
    })
}

/// The sources a quota needs, each once.
pub fn sources(quota: &ResourceQuota) -> Vec<Source> {
    let mut all: Vec<Source> = hard(quota).keys().filter_map(|n| source_of(n)).collect();
    all.sort();
    all.dedup();
    all
}

fn hard(quota: &ResourceQuota) -> ResourceList {
    resources::parse_list(
        quota
            .spec
            .as_ref()
            .and_then(|s| s.hard.as_ref())
            .into_iter()
            .flatten(),
    )
}

/// What exists in the quota's namespace, as read for one reconcile.
#[derive(Default)]
pub struct Objects<'a> {
    /// Pods (if the quota counts them).
    pub pods: Vec<&'a Pod>,
    /// Services.
    pub services: Vec<&'a Service>,
    /// Claims.
    pub claims: Vec<&'a PersistentVolumeClaim>,
    /// Object counts per `(group, resource)`; a resource missing here
    /// could not be listed (not served) and gets no usage entry.
    pub counts: BTreeMap<(String, String), i64>,
}

/// The quota's `status.used` over `objects` at Unix time `now`.
pub fn used(quota: &ResourceQuota, objects: &Objects, now: i64) -> ResourceList {
    let hard = hard(quota);
    let spec = quota.spec.clone().unwrap_or_default();
    let scoped = scope::is_scoped(&spec);
    let mut total = ResourceList::new();
    for p in &objects.pods {
        // A scope that cannot be evaluated (refused by validation) counts nothing.
        if scope::pod_matches(&spec, p).unwrap_or(false) {
            total = resources::add(&total, &usage::pod_usage(p, now));
        }
    }
    if !scoped {
        for s in &objects.services {
            total = resources::add(&total, &usage::service_usage(s));
        }
        for c in &objects.claims {
            total = resources::add(&total, &usage::claim_usage(c));
        }
    }
    let mut used = ResourceList::new();
    for name in hard.keys() {
        let amount = match source_of(name) {
            None => continue,
            Some(Source::Count { group, resource }) => {
                let Some(n) = objects.counts.get(&(group, resource)) else {
                    continue;
                };
                if scoped {
                    Quantity::ZERO
                } else {
                    Quantity::from_units(*n)
                }
            }
            Some(_) => total.get(name).copied().unwrap_or(Quantity::ZERO),
        };
        used.insert(name.clone(), amount);
    }
    used
}

/// The status to write, `None` when the stored one already says it (same
/// values; `1000m` and `1` are the same).
pub fn reconcile(
    quota: &ResourceQuota,
    objects: &Objects,
    now: i64,
) -> Option<ResourceQuotaStatus> {
    let hard = hard(quota);
    let used = used(quota, objects, now);
    let current = quota.status.as_ref();
    let parsed = |m: Option<&BTreeMap<String, _>>| resources::parse_list(m.into_iter().flatten());
    let same_keys = |a: Option<&BTreeMap<String, _>>, b: &ResourceList| {
        a.is_some_and(|a| a.keys().eq(b.keys()))
    };
    if let Some(s) = current {
        if same_keys(s.hard.as_ref(), &hard)
            && parsed(s.hard.as_ref()) == hard
            && same_keys(s.used.as_ref(), &used)
            && parsed(s.used.as_ref()) == used
        {
            return None;
        }
    }
    Some(ResourceQuotaStatus {
        hard: Some(resources::to_api(&hard)),
        used: Some(resources::to_api(&used)),
    })
}
