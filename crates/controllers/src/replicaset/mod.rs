//! The ReplicaSet controller: keeps `spec.replicas` pods that match the
//! selector, adopting orphans and releasing pods that stopped matching.
//!
//! - [`core`]: the pure decision (claims, creations, deletions, status);
//! - [`ranking`]: which pods go first on scale-down;
//! - [`controller`]: informers, expectations and the API calls.

pub mod controller;
pub mod core;
pub mod ranking;

#[cfg(test)]
mod core_test;
