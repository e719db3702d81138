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
//! `ContainerResource` set ScalingActive False); the per-HPA
//! `behavior.*.tolerance` (alpha) is not read; pods are listed from the
//! API on each evaluation rather than from a shared cache; repeated
//! warnings are new events (upstream's recorder counts them up);
//! recommendations and scale events are in memory, as upstream keeps them.
//! Like upstream, an HPA without `behavior` takes the older rules
//! (scale-up to at most max(2 × current, 4) per evaluation, scale-down
//! after the highest recommendation of 5 minutes).

pub mod behavior;
pub mod controller;
pub mod core;
pub mod replicas;

#[cfg(test)]
mod core_test;
