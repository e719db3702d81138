//! Taint-based eviction, decided purely (`pkg/controller/tainteviction`):
//! a pod on a node with `NoExecute` taints is evicted at once if some taint
//! is not tolerated, after the smallest `tolerationSeconds` of the
//! tolerations used if all are (counted from when the taint was added), and
//! never if none of them has `tolerationSeconds`.
//!
//! Kubernetes' `DefaultTolerationSeconds` admission plugin gives every pod
//! 300 s tolerations of `not-ready` and `unreachable`; Skiff's API server
//! may not, so pods lacking them are treated as if they had them with
//! `default_toleration_seconds`.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::nodelifecycle::health::{TAINT_NOT_READY, TAINT_UNREACHABLE};
use crate::pod_util::millis;
use crate::slim_pod::SlimPod;

/// `ToleratesTaint` (`k8s.io/api/core/v1/toleration.go`).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    if t.key
        .as_deref()
        .is_some_and(|k| !k.is_empty() && k != taint.key)
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// The pod's tolerations plus the defaults it would have got at admission.
fn effective_tolerations(pod: &SlimPod, default_seconds: i64) -> Vec<Toleration> {
    let mut tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    for key in [TAINT_NOT_READY, TAINT_UNREACHABLE] {
        let probe = Taint {
            key: key.into(),
            effect: "NoExecute".into(),
            value: None,
            time_added: None,
        };
        if !tolerations.iter().any(|t| tolerates(t, &probe)) {
            tolerations.push(Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(default_seconds),
                value: None,
            });
        }
    }
    tolerations
}

/// When the pod must be evicted (ms), or `None` if never. `now_ms` stands
/// in for taints without `timeAdded`.
pub fn eviction_time(
    pod: &SlimPod,
    taints: &[Taint],
    default_seconds: i64,
    now_ms: i64,
) -> Option<i64> {
    let no_execute: Vec<&Taint> = taints.iter().filter(|t| t.effect == "NoExecute").collect();
    if no_execute.is_empty() {
        return None;
    }
    let tolerations = effective_tolerations(pod, default_seconds);
    let mut min_seconds: Option<i64> = None;
    let mut since = i64::MAX;
    for taint in no_execute {
        let used: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if used.is_empty() {
            return Some(now_ms);
        }
        since = since.min(taint.time_added.as_ref().map_or(now_ms, |t| millis(&t.0)));
        for t in used {
            if let Some(s) = t.toleration_seconds {
                min_seconds = Some(min_seconds.map_or(s, |m| m.min(s)));
            }
        }
    }
    // getMinTolerationTime: no seconds anywhere means tolerated forever.
    let seconds = min_seconds?;
    Some(since.saturating_add(seconds.max(0).saturating_mul(1000)))
}
