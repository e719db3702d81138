//! The CronJob controller (batch/v1): starts a Job at each scheduled time
//! of a cron schedule, in `spec.timeZone`, honouring `concurrencyPolicy`
//! (Allow, Forbid, Replace), `startingDeadlineSeconds`, `suspend` and the
//! history limits.
//!
//! - [`schedule`]: the cron syntax and "next time after";
//! - [`core`]: the pure decision, with the clock and time zone as inputs;
//! - [`controller`]: informers and the API calls; its clock is injectable.

pub mod controller;
pub mod core;
pub mod schedule;

#[cfg(test)]
mod core_test;
