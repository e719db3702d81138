//! The disruption controller (policy/v1 PodDisruptionBudgets): keeps each
//! budget's status — `currentHealthy`, `desiredHealthy`, `expectedPods`,
//! `disruptionsAllowed`, `disruptedPods`, the `DisruptionAllowed`
//! condition — true to the pods it selects, so that the API server's
//! eviction check (`pods/eviction`, what `kubectl drain` posts) can spend
//! disruptions without breaking the budget.
//!
//! - [`core`]: the pure status computation (Kubernetes' `updatePdbStatus`
//!   and `getExpectedPodCount`), tested on fixed inputs;
//! - [`controller`]: informers, the controllers' scale lookup, the
//!   optimistic status write.

pub mod controller;
pub mod core;

#[cfg(test)]
mod core_test;
