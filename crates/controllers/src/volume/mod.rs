//! Persistent volumes on a single node: the PV controller's binder (a
//! claim meets a volume) and Skiff's local-path provisioner (a volume is
//! made for a claim in a directory of the node the pod was scheduled to).
//!
//! ```text
//!  PVC (storageClassName: local-path, WaitForFirstConsumer)
//!    │ scheduler places its pod, writes volume.kubernetes.io/selected-node
//!    ▼
//!  binder::claim_action ──> Provision: PV pvc-<uid>, hostPath
//!    │                      <node's local-path root>/pvc-<uid>_<ns>_<name>,
//!    │                      nodeAffinity kubernetes.io/hostname In [node]
//!    ▼
//!  Bind: PVC spec.volumeName, both phases Bound
//!    │ agent mounts the PV's path into the pod (created on first use)
//!    ▼
//!  PVC deleted ──> volume_action: reclaimPolicy Delete ──> DELETE PV;
//!                  the agent removes directories no PV names any more
//! ```
//!
//! - [`local_path`]: the `local-path` StorageClass (the default class) and
//!   the PVs it provisions;
//! - [`binder`]: the pure decisions for a claim and for a volume;
//! - [`controller`]: informers and the API calls.
//!
//! # Caveats
//! - Only the local-path provisioner exists; claims of other classes bind
//!   only to PVs created by hand (static provisioning), the smallest that
//!   fits.
//! - `Immediate` binding of a local-path claim is not possible (there is
//!   no node to put it on yet): such claims wait for a consumer too.
//! - No capacity accounting: a local-path volume may use the whole disk.

pub mod binder;
pub mod controller;
pub mod local_path;

#[cfg(test)]
mod binder_test;
