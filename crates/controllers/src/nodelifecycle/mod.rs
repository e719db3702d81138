//! Node lifecycle: notices nodes that stopped sending heartbeats, marks them
//! `Unknown` and taints them `NoExecute`, and evicts their pods once the
//! pods' tolerations run out, so ReplicaSets replace them elsewhere.
//!
//! - [`health`]: heartbeat bookkeeping, conditions and taints (pure);
//! - [`eviction`]: when a pod must leave a tainted node (pure);
//! - [`controller`]: the periodic loop and its API calls.

pub mod controller;
pub mod eviction;
pub mod health;

#[cfg(test)]
mod health_test;
