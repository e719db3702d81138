//! Running pods: from a Pod object bound to this node to sandboxes and
//! containers in CRI, and back to the pod's status.
//!
//! | file | what |
//! | --- | --- |
//! | `lifecycle.rs` | the pod's life on the node as an enum with its legal transitions |
//! | `plan.rs` | pure `next_actions(spec, observed CRI state)` (kubelet `computePodActions`) |
//! | `status.rs` | pure `compute_status` (kubelet `generateAPIPodStatus`, `getPhase`) |
//! | `config.rs` | pure Pod → `PodSandboxConfig` / `ContainerConfig` |
//! | `observed.rs` | the pod's CRI state rebuilt from labels |
//! | `backoff.rs` | restart and image pull back-off |
//! | `teardown.rs` | stop + remove in kubelet's order |
//! | `worker.rs` | one task per pod doing the I/O |
//! | `manager.rs` | the watch on `spec.nodeName` and the worker per UID |

pub mod backoff;
pub mod config;
pub mod lifecycle;
pub mod manager;
pub mod observed;
pub mod plan;
pub mod status;
pub mod teardown;
pub mod worker;

#[cfg(test)]
mod plan_test;
#[cfg(test)]
mod status_test;

pub use lifecycle::{LifecycleEvent, PodLifecycle};
pub use manager::{PodManager, PodManagerError};
pub use observed::{observe, ObserveCache, ObservedPod};
pub use plan::{next_actions, Action};
pub use status::compute_status;
pub use teardown::{teardown_everything, teardown_pod};
pub use worker::WorkerContext;
