//! The HorizontalPodAutoscaler controller (kube-controller-manager's
//! `podautoscaler`): scales a Deployment, ReplicaSet, StatefulSet or custom
//! resource through its `/scale` subresource so that the pods' average
//! cpu or memory usage meets the HPA's Resource metric targets.
//!
//! - [`replicas`]: the replica calculator (tolerance, unready and missing
//!   pods);
//! - [`behavior`]: stabilization windows and scaling policies;
//! - [`core`]: one reconcile as a pure function: conditions, status, events;
//! - [`controller`]: discovery, `/scale`, `metrics.k8s.io`, the writes.
//!
//! Caveats: only `Resource` metrics (`Pods`, `Object`, `External` and
//! `ContainerResource` set ScalingActive False); an HPA without
//! `behavior` gets the default behavior (upstream's older path limits
//! scale-ups to max(2×, 4) without a period); the per-HPA
//! `behavior.*.tolerance` (alpha) is not read; recommendations and scale
//! events are in memory, as upstream keeps them.

pub mod behavior;
pub mod controller;
pub mod core;
pub mod replicas;

#[cfg(test)]
mod core_test;
