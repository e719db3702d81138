//! The Endpoints and EndpointSlice controllers: for every Service with a
//! selector, the addresses and ports of the pods behind it, which service
//! proxies (the node agent's nftables rules) and cluster DNS read.
//!
//! - [`core`]: which pods back a Service, their readiness, named ports;
//! - [`subsets`]: the Endpoints object (pure plan);
//! - [`slices`]: the EndpointSlices (pure plan), labelled
//!   `endpointslice.kubernetes.io/managed-by: endpointslice-controller.skiff.dev`;
//! - [`controller`]: informers, queues and API calls of both.
//!
//! Caveats: no Endpoints → EndpointSlice mirroring for selector-less
//! Services, no topology hints, no `trafficDistribution`, no
//! over-capacity annotation on Endpoints past 1,000 addresses; slices are
//! refilled in order rather than packed to minimise churn.

pub mod controller;
pub mod core;
pub mod slices;
pub mod subsets;

#[cfg(test)]
mod core_test;
