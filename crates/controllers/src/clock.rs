//! The controllers' clock: milliseconds since the epoch, injectable so that
//! time-driven controllers (CronJob, Job deadlines) can be driven by a fake
//! clock; and converting the cores' millisecond clock to API times.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// A source of "now" in milliseconds since the epoch.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| Timestamp::now().as_millisecond())
}

/// An API `Time` for milliseconds since the epoch (the epoch itself if out
/// of range, which no real clock reaches).
pub fn time(ms: i64) -> Time {
    Time(Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH))
}
