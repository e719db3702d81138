//! The StatefulSet controller: pods with a stable identity
//! (`<sts>-<ordinal>`, hostname and subdomain, their own claims
//! `<template>-<sts>-<ordinal>` that outlive them), created in order and
//! removed in reverse (`OrderedReady`) or all at once (`Parallel`);
//! `RollingUpdate` (highest ordinal first, `partition`, `maxUnavailable`)
//! and `OnDelete`; the template history as ControllerRevisions
//! (`kubectl rollout status|history|undo statefulset`).
//!
//! - [`identity`]: names, labels, hostname, claims of one ordinal;
//! - [`core`]: the pure decision (claims and pods to create, pods to
//!   delete, the status);
//! - [`controller`]: informers, revisions and the API calls.

pub mod controller;
pub mod core;
pub mod identity;

#[cfg(test)]
mod core_test;
