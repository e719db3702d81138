//! The namespace controller: empties a Terminating namespace and then
//! releases it (kube-controller-manager's `namespace-controller`).
//!
//! - [`core`]: what to delete, the status conditions and whether the
//!   namespace may be finalized (pure);
//! - [`controller`]: discovery, listing and deleting the contents, the
//!   status patch and the `finalize` call.

pub mod controller;
pub mod core;
