//! Skiff's scheduler: places pending pods on nodes, packing them tightly.
//!
//! ```text
//!   API watch (nodes, pods) ──> snapshot.rs ──> core.rs (Filter, Score) ──> run.rs: pods/binding
//! ```
//!
//! - [`core`] is pure: a snapshot of nodes and the pending pods in, one
//!   [`core::Placement`] per pod out, deterministic for the same input.
//! - [`snapshot`] turns `k8s-openapi` objects into the core's types.
//! - [`mod@run`] is the loop: kube-rs watchers, a scheduling pass per burst of
//!   changes, bindings through the `pods/binding` subresource, and
//!   `FailedScheduling` events for pods that fit nowhere.
//!
//! Caveats (what kube-scheduler does that Skiff does not, yet): node and pod
//! affinity beyond `nodeSelector`, topology spread, host ports, priority and
//! preemption, extended resources, pod overhead; binding is one API call per
//! pod; with several servers nothing yet elects a single scheduler.
#![deny(missing_docs)]

pub mod core;
pub mod quantity;
pub mod run;
pub mod snapshot;

pub use run::{run, SchedulerError};
