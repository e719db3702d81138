//! The resource-quota controller (kube-controller-manager's
//! `resourcequota` controller): keeps each ResourceQuota's `status.hard`
//! equal to `spec.hard` and its `status.used` true to what exists in the
//! namespace, for every resource the quota names. The API server's
//! ResourceQuota admission charges `status.used` on each create (so two
//! creates cannot both slip under the limit); this controller gives usage
//! back when objects go away and corrects any drift.
//!
//! - [`core`]: the pure usage sum over the namespace's objects, on top of
//!   `skiff_api::quota` (the same pricing admission uses), tested on fixed
//!   inputs;
//! - [`controller`]: triggers (deletions, pods turning terminal or being
//!   deleted, quota spec changes, a 5-minute resync), live lists of what
//!   each quota counts, and the optimistic status write.

pub mod controller;
pub mod core;

#[cfg(test)]
mod core_test;
