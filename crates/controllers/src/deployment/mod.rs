//! The Deployment controller: rolls pods from one template to the next
//! through ReplicaSets, one per template (named `<deployment>-<hash>`).
//!
//! - [`core`]: the pure decision (rolling update, recreate, scaling,
//!   history cleanup);
//! - [`progress`]: status counts and the `Available`/`Progressing`
//!   conditions;
//! - [`hash`]: the `pod-template-hash`;
//! - [`util`]: annotations, `maxSurge`/`maxUnavailable` arithmetic;
//! - [`controller`]: informers and API calls.

pub mod controller;
pub mod core;
pub mod hash;
pub mod progress;
pub mod util;

#[cfg(test)]
mod core_test;
