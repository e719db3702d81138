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
//! | `pleg.rs` | one relist of the node per second, waking the workers whose pods changed (kubelet's PLEG) |
//! | `env.rs` | pure env: `envFrom`, `valueFrom`, `$(VAR)` expansion |
//! | `resources.rs` | pure quantities → CRI resources, QoS class |
//! | `security.rs` | pure `securityContext` → CRI, `runAsNonRoot` check |
//! | `probe.rs` | probe bookkeeping (pure) and running exec/httpGet/tcpSocket |
//! | `prober.rs` | runs due probes from the worker, keeps their trackers |
//! | `hooks.rs` | postStart / preStop hooks |
//! | `sources.rs` | ConfigMaps and Secrets through the API, cached, re-read every 10 s |
//! | `start.rs` | starting a container (image, config, hooks) and killing one |
//! | `volumes.rs` | emptyDir, hostPath, configMap, secret, downwardAPI, projected; CRI mounts |
//! | `token.rs` | service-account tokens for projected volumes (kubelet's token manager) |
//! | `atomic_writer.rs` | kubelet's `..data` symlink swap for projected volumes |
//! | `backoff.rs` | restart and image pull back-off |
//! | `teardown.rs` | stop + remove in kubelet's order |
//! | `worker.rs` | one task per pod doing the I/O |
//! | `manager.rs` | the watch on `spec.nodeName` and the worker per UID |

pub mod atomic_writer;
pub mod backoff;
pub mod config;
pub mod dns;
pub mod env;
pub mod hooks;
pub mod lifecycle;
pub mod manager;
pub mod observed;
pub mod plan;
pub mod pleg;
pub mod probe;
pub mod prober;
pub mod resources;
pub mod security;
pub mod sources;
pub mod start;
pub mod status;
pub mod teardown;
pub mod token;
pub mod volumes;
pub mod worker;

#[cfg(test)]
mod env_test;
#[cfg(test)]
mod plan_probe_test;
#[cfg(test)]
mod plan_test;
#[cfg(test)]
mod status_test;
#[cfg(test)]
mod volumes_test;

pub use lifecycle::{LifecycleEvent, PodLifecycle};
pub use manager::{PodManager, PodManagerError};
pub use observed::{observe, ObserveCache, ObservedPod};
pub use plan::{next_actions, Action};
pub use status::compute_status;
pub use teardown::{teardown_everything, teardown_pod};
pub use worker::WorkerContext;
