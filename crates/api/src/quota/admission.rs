//! The admission decision for one quota and one new object (upstream's
//! `CheckRequest` in `k8s.io/apiserver/pkg/admission/plugin/resourcequota`),
//! with kube-apiserver's messages, which the API server wraps as
//! `<resource> "<name>" is forbidden: <message>` (403):
//!
//! ```text
//!  quota has scopes the object does not match, or tracks none of
//!  the resources the object's evaluator prices        ──> NotCovered
//!  pod lacks cpu/memory a quota tracks                ──> "failed quota: q: must specify requests.cpu for: c"
//!  status.used lacks a tracked resource (not synced)  ──> "status unknown for quota: q, resources: pods"
//!  used + requested > hard                             ──> "exceeded quota: q, requested: …, used: …, limited: …"
//!  otherwise                                           ──> Charge(new status.used)
//! ```
//!
//! Only `status.hard` counts, as upstream: a quota the controller has not
//! yet given a status constrains nothing until it does.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Pod, ResourceQuota};

use crate::quota::resources::{self, ResourceList};
use crate::quota::scope;
use crate::quota::usage::{container_states, Evaluator, Priced};

/// Resources a pod must state in every container when a quota tracks them
/// (upstream calls requiring them "a mistake" it keeps for compatibility;
/// no other resource is added to this list).
pub const MUST_SPECIFY: [&str; 6] = [
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

/// What admission does about one quota.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// The quota does not constrain this object.
    NotCovered,
    /// The object fits: the quota's new `status.used`.
    Charge(ResourceList),
}

/// A refusal, as kube-apiserver words it (without the `… is forbidden: `
/// prefix).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// The containers missing each must-specify resource in `required`, as
/// `requests.cpu for: a,b; requests.memory for: a` (upstream's
/// `Constraints`); `None` if every container states them.
fn missing(pod: &Pod, required: &BTreeSet<&str>) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let mut by_resource: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        for name in required {
            if !container_states(c, name) {
                by_resource.entry(name).or_default().insert(c.name.as_str());
            }
        }
    }
    if by_resource.is_empty() {
        return None;
    }
    let parts: Vec<String> = by_resource
        .iter()
        .map(|(r, cs)| {
            format!(
                "{r} for: {}",
                cs.iter().copied().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    Some(parts.join("; "))
}

/// Decides whether a new object of `group`/`resource`, priced as `priced`,
/// may be created under `quota`, and what the quota's usage becomes.
pub fn check(
    quota: &ResourceQuota,
    group: &str,
    resource: &str,
    priced: &Priced,
) -> Result<Outcome, Refusal> {
    let name = quota.metadata.name.as_deref().unwrap_or_default();
    let spec = quota.spec.clone().unwrap_or_default();
    if scope::is_scoped(&spec) {
        let Some(pod) = priced.pod() else {
            return Ok(Outcome::NotCovered);
        };
        match scope::pod_matches(&spec, pod) {
            Ok(true) => {}
            Ok(false) => return Ok(Outcome::NotCovered),
            Err(e) => return Err(Refusal(format!("failed quota: {name}: {e}"))),
        }
    }
    let status = quota.status.as_ref();
    let hard = resources::parse_list(status.and_then(|s| s.hard.as_ref()).into_iter().flatten());
    let used = resources::parse_list(status.and_then(|s| s.used.as_ref()).into_iter().flatten());
    let evaluator = Evaluator::of(group, resource);
    let restricted: BTreeSet<&str> = hard
        .keys()
        .map(String::as_str)
        .filter(|n| evaluator.tracks(group, resource, n))
        .collect();
    if restricted.is_empty() {
        return Ok(Outcome::NotCovered);
    }
    if let Some(pod) = priced.pod() {
        let required: BTreeSet<&str> = restricted
            .iter()
            .copied()
            .filter(|n| MUST_SPECIFY.contains(n))
            .collect();
        if let Some(m) = missing(pod, &required) {
            return Err(Refusal(format!("failed quota: {name}: must specify {m}")));
        }
    }
    let unknown: Vec<&str> = restricted
        .iter()
        .copied()
        .filter(|n| !used.contains_key(*n))
        .collect();
    if !unknown.is_empty() {
        return Err(Refusal(format!(
            "status unknown for quota: {name}, resources: {}",
            unknown.join(",")
        )));
    }
    let requested = resources::mask(priced.usage(), hard.keys());
    let new_used = resources::add(&used, &requested);
    let exceeded = resources::exceeding(&resources::mask(&new_used, requested.keys()), &hard);
    if !exceeded.is_empty() {
        return Err(Refusal(format!(
            "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
            resources::pretty_print(&resources::mask(&requested, &exceeded)),
            resources::pretty_print(&resources::mask(&used, &exceeded)),
            resources::pretty_print(&resources::mask(&hard, &exceeded)),
        )));
    }
    Ok(Outcome::Charge(new_used))
}
