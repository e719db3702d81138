//! Pod garbage collection, as kube-controller-manager's PodGC does it:
//! every [`controller::CHECK_PERIOD`] it force-deletes (grace period 0)
//!
//! - pods bound to a node that no longer exists, once the node has been
//!   missing for [`core::QUARANTINE_MS`] and a live read confirms it is gone;
//!   a pod still running is first marked `Failed` with the
//!   `DisruptionTarget` condition (reason `DeletionByPodGC`);
//! - pods being deleted that were never scheduled (no kubelet will finish
//!   them);
//! - the oldest finished pods (`Succeeded`/`Failed`) beyond
//!   `--terminated-pod-gc-threshold` (12,500), evicted ones first.
//!
//! Without it, pods on a deleted node stay `Terminating` forever and so do
//! their namespaces.
//!
//! - [`core`]: which pods to collect (pure);
//! - [`controller`]: the periodic loop and its API calls.

pub mod controller;
pub mod core;
