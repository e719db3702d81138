//! The garbage collector: deletes objects whose owners are gone, and
//! carries out `propagationPolicy` Orphan and Foreground through the
//! `orphan` and `foregroundDeletion` finalizers.
//!
//! - [`core`]: the decisions (pure);
//! - [`graph`]: objects by uid with the owner → dependents index;
//! - [`controller`]: discovery, one watch per resource, and the API calls.

pub mod controller;
pub mod core;
pub mod graph;
