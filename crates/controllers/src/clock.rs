//! Converting the cores' millisecond clock to API times.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// An API `Time` for milliseconds since the epoch (the epoch itself if out
/// of range, which no real clock reaches).
pub fn time(ms: i64) -> Time {
    Time(Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH))
}
