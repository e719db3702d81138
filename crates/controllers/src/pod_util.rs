//! Facts about pods that several controllers need, with Kubernetes' rules
//! (`k8s.io/kubernetes/pkg/api/v1/pod` and `pkg/controller`), read from the
//! cached [`SlimPod`]s.

use crate::slim_pod::{SlimPod, SlimPodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// Milliseconds since the epoch (the clock unit of the pure cores).
pub fn millis(t: &Timestamp) -> i64 {
    t.as_millisecond()
}

/// The pod's phase, `Pending` if unset.
pub fn phase(pod: &SlimPod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// `IsPodActive`: not Succeeded, not Failed, not being deleted.
pub fn is_active(pod: &SlimPod) -> bool {
    let p = phase(pod);
    p != "Succeeded" && p != "Failed" && pod.metadata.deletion_timestamp.is_none()
}

/// Whether the pod is bound to a node.
pub fn is_assigned(pod: &SlimPod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
}

/// The node the pod is bound to, if any.
pub fn node_name(pod: &SlimPod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// The condition of one type.
pub fn condition<'a>(pod: &'a SlimPod, type_: &str) -> Option<&'a SlimPodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// `IsPodReady`: the `Ready` condition is `True`.
pub fn is_ready(pod: &SlimPod) -> bool {
    condition(pod, "Ready").is_some_and(|c| c.status == "True")
}

/// When the pod last became ready (the `Ready` condition's
/// `lastTransitionTime`), if it is ready.
pub fn ready_since(pod: &SlimPod) -> Option<i64> {
    let c = condition(pod, "Ready").filter(|c| c.status == "True")?;
    c.last_transition_time.as_ref().map(|Time(t)| millis(t))
}

/// `IsPodAvailable`: ready for at least `min_ready_seconds` at `now_ms`.
/// A ready pod without a transition time counts as available only when
/// `min_ready_seconds` is 0 (the agent always sets the time).
pub fn is_available(pod: &SlimPod, min_ready_seconds: i32, now_ms: i64) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    ready_since(pod).is_some_and(|since| since + i64::from(min_ready_seconds) * 1000 <= now_ms)
}

/// For a ready pod not yet available: milliseconds until it becomes so.
pub fn millis_until_available(pod: &SlimPod, min_ready_seconds: i32, now_ms: i64) -> Option<i64> {
    if min_ready_seconds <= 0 || !is_ready(pod) {
        return None;
    }
    let since = ready_since(pod)?;
    let at = since + i64::from(min_ready_seconds) * 1000;
    (at > now_ms).then_some(at - now_ms)
}

/// Sum of restart counts over the pod's containers.
pub fn restart_count(pod: &SlimPod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|c| c.restart_count)
        .sum()
}

/// The creation time in milliseconds (0 if unset).
pub fn created_ms(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> i64 {
    meta.creation_timestamp
        .as_ref()
        .map(|Time(t)| millis(t))
        .unwrap_or(0)
}
