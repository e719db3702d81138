//! ResourceQuota evaluation: kube-apiserver's `ResourceQuota` admission
//! plugin and kube-controller-manager's resource-quota controller share
//! these functions (upstream: `k8s.io/apiserver/pkg/quota/v1` and
//! `pkg/quota/v1/evaluator/core`).
//!
//! ```text
//!  object ──usage::*──> ResourceList (pods=1, requests.cpu=500m, count/pods=1, …)
//!  quota.spec (scopes, scopeSelector) ──scope::matches──> does the quota cover it?
//!  admission::check(quota, usage) ──> new status.used, or the 403 message
//!  controller: Σ usage of the namespace's objects ──> status.used
//! ```
//!
//! - [`resources`]: resource names (`pods`, `count/<resource>.<group>`,
//!   `requests.cpu`, …) and `ResourceList` arithmetic (add, mask, compare,
//!   print as `a=1,b=2`).
//! - [`usage`]: what one pod, service, claim or other object costs.
//! - [`scope`]: the quota scopes (`Terminating`, `NotTerminating`,
//!   `BestEffort`, `NotBestEffort`, `PriorityClass`,
//!   `CrossNamespacePodAffinity`) and their validation.
//! - [`admission`]: the per-quota admission decision.
//!
//! Caveats: no `LimitedResources`/`MatchScopes` admission configuration
//! (a quota is never *required*); pod-level `spec.resources` and the
//! in-place resize are not counted; claims are charged their request, not
//! the larger of request and allocated capacity; a claim's resize and a
//! service's type change (updates) are not charged.

pub mod admission;
pub mod resources;
pub mod scope;
pub mod usage;

#[cfg(test)]
mod quota_test;

pub use resources::ResourceList;
