//! Rules of the Kubernetes API that more than one Skiff component applies,
//! kept in one place so the API server and the controllers cannot drift
//! apart.
//!
//! ```text
//!  apiserver (admission: charge a create)  ──┐
//!                                            ├──> quota::usage / quota::admission ──> quantity
//!  controllers (ResourceQuota status.used) ──┘
//! ```
//!
//! - [`duration`]: Go's `time.ParseDuration` (`1h30m`, `90s`).
//! - [`quantity`]: `resource.Quantity` (`500m`, `1Gi`): parse, add, compare,
//!   and write back in Kubernetes' canonical form.
//! - [`quota`]: what an object costs against a ResourceQuota (pods, their
//!   cpu/memory/storage requests and limits, services, claims, object
//!   counts), which quotas a pod falls under (scopes), and the admission
//!   decision with kube-apiserver's messages.
//!
//! Everything here is pure: no I/O, no clock (callers pass the time).
//!
//! Caveats: see [`quota`].
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod duration;
pub mod quantity;
pub mod quota;
