//! Skiff's Kubernetes-compatible API server (module doc: to be written by the
//! apiserver work; see ARCHITECTURE.md).
#![deny(missing_docs)]

pub mod resources;
pub mod validation;
