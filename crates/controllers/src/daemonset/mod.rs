//! The DaemonSet controller: one pod per eligible node, including nodes
//! that join later; pods leave nodes that stop being eligible or go away;
//! `RollingUpdate` (`maxUnavailable`, `maxSurge`) and `OnDelete`; the
//! template history as ControllerRevisions (`kubectl rollout history ds`).
//!
//! - [`eligibility`]: which nodes (selectors, affinity, taints vs
//!   tolerations, the default daemon tolerations);
//! - [`core`]: the pure decision (pods to create and delete, the status);
//! - [`controller`]: informers, revisions and the API calls.

pub mod controller;
pub mod core;
pub mod eligibility;

#[cfg(test)]
mod core_test;
