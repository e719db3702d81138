//! The Job controller (batch/v1): runs pods until `completions` of them
//! succeed, at most `parallelism` at a time, and gives up after
//! `backoffLimit` failures or `activeDeadlineSeconds`; deletes a finished
//! Job once `ttlSecondsAfterFinished` pass (Kubernetes' separate
//! TTL-after-finished controller, folded in here).
//!
//! - [`core`]: the pure decision (pods to create and delete, the status,
//!   when to look again);
//! - [`indexes`]: `completedIndexes` and the Indexed completion mode;
//! - [`controller`]: informers, expectations and the API calls.

pub mod controller;
pub mod core;
pub mod indexes;

#[cfg(test)]
mod core_test;
