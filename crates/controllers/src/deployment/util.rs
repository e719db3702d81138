//! Deployment arithmetic and annotations (`pkg/controller/deployment/util`):
//! revisions, `maxSurge`/`maxUnavailable` resolution, replica sums, and the
//! defaults apps/v1 gives a Deployment.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The revision of a ReplicaSet (and the Deployment's current one).
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a ReplicaSet had (after `rollout undo` reuses it).
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's replicas when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
/// `replicas + maxSurge` when the ReplicaSet was last scaled.
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";

/// Deployment annotations never copied to ReplicaSets
/// (`annotationsToSkip` in Kubernetes).
const SKIPPED_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
    DESIRED_REPLICAS_ANNOTATION,
    MAX_REPLICAS_ANNOTATION,
    "deprecated.deployment.rollback.to",
];

/// apps/v1 defaults, applied here too in case the API server did not.
pub const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;
/// Default `progressDeadlineSeconds`.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
/// Default `maxSurge` and `maxUnavailable`.
pub const DEFAULT_ROLLING_PERCENT: &str = "25%";

/// `spec.replicas`, default 1.
pub fn replicas(d: &Deployment) -> i32 {
    d.spec.replicas.unwrap_or(1).max(0)
}

/// Whether the strategy is `Recreate` (anything else rolls).
pub fn is_recreate(d: &Deployment) -> bool {
    d.spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate")
}

/// `spec.minReadySeconds`, default 0.
pub fn min_ready_seconds(d: &Deployment) -> i32 {
    d.spec.min_ready_seconds.unwrap_or(0)
}

/// `progressDeadlineSeconds` unless it is "no deadline" (`MaxInt32`).
pub fn progress_deadline_seconds(d: &Deployment) -> Option<i32> {
    match d.spec.progress_deadline_seconds {
        Some(i32::MAX) => None,
        Some(s) => Some(s),
        None => Some(DEFAULT_PROGRESS_DEADLINE_SECONDS),
    }
}

/// The value of an int-or-percent against `total` (`GetScaledValueFromIntOrPercent`).
/// Percentages round up or down as asked; a malformed value counts as 0.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> i32 {
    match v {
        IntOrString::Int(i) => *i,
        IntOrString::String(s) => {
            let Some(p) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return s.parse().unwrap_or(0);
            };
            let scaled = p * i64::from(total);
            let v = if round_up {
                (scaled + 99).div_euclid(100)
            } else {
                scaled.div_euclid(100)
            };
            i32::try_from(v).unwrap_or(i32::MAX)
        }
    }
}

/// `(maxSurge, maxUnavailable)` as numbers (`ResolveFenceposts`): surge
/// rounds up, unavailable rounds down, and both 0 becomes unavailable 1 so
/// a rollout can always progress.
pub fn resolve_fenceposts(d: &Deployment) -> (i32, i32) {
    let default = IntOrString::String(DEFAULT_ROLLING_PERCENT.into());
    let ru = d
        .spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    let surge = ru.and_then(|r| r.max_surge.as_ref()).unwrap_or(&default);
    let unavailable = ru
        .and_then(|r| r.max_unavailable.as_ref())
        .unwrap_or(&default);
    let n = replicas(d);
    let surge = scaled_value(surge, n, true).max(0);
    let unavailable = scaled_value(unavailable, n, false).max(0);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// `MaxSurge`: 0 unless rolling.
pub fn max_surge(d: &Deployment) -> i32 {
    if is_recreate(d) {
        0
    } else {
        resolve_fenceposts(d).0
    }
}

/// `MaxUnavailable`: 0 unless rolling with replicas, at most `replicas`.
pub fn max_unavailable(d: &Deployment) -> i32 {
    if is_recreate(d) || replicas(d) == 0 {
        return 0;
    }
    resolve_fenceposts(d).1.min(replicas(d))
}

/// A ReplicaSet's `spec.replicas` (default 1, as apps/v1 defaults it).
pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.replicas.unwrap_or(1)
}

/// Sum of `spec.replicas`.
pub fn spec_sum<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rss.into_iter().map(rs_replicas).sum()
}

/// Sum of `status.replicas`.
pub fn actual_sum<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rss.into_iter()
        .map(|r| r.status.as_ref().map_or(0, |s| s.replicas))
        .sum()
}

/// Sum of `status.readyReplicas`.
pub fn ready_sum<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rss.into_iter()
        .map(|r| {
            r.status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
        })
        .sum()
}

/// Sum of `status.availableReplicas`.
pub fn available_sum<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rss.into_iter()
        .map(|r| {
            r.status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0)
        })
        .sum()
}

/// A ReplicaSet's `availableReplicas`.
pub fn rs_available(rs: &ReplicaSet) -> i32 {
    available_sum([rs])
}

/// An annotation.
pub fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// A ReplicaSet's revision (0 if none or malformed).
pub fn revision(rs: &ReplicaSet) -> i64 {
    annotation(&rs.metadata, REVISION_ANNOTATION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// An integer annotation.
pub fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    annotation(&rs.metadata, key).and_then(|v| v.parse().ok())
}

/// The deployment annotations a ReplicaSet carries (`copyDeploymentAnnotationsToReplicaSet`).
pub fn copyable_annotations(d: &Deployment) -> BTreeMap<String, String> {
    d.metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !SKIPPED_ANNOTATIONS.contains(&k.as_str()))
        .collect()
}

/// Sets the replica annotations on `rs` (`SetReplicasAnnotations`);
/// returns whether they changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in [
        (DESIRED_REPLICAS_ANNOTATION, desired),
        (MAX_REPLICAS_ANNOTATION, max),
    ] {
        let v = v.to_string();
        if a.get(k) != Some(&v) {
            a.insert(k.to_string(), v);
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_as_kubernetes() {
        let p = |s: &str| IntOrString::String(s.into());
        let cases = [
            (p("25%"), 10, true, 3),
            (p("25%"), 10, false, 2),
            (p("25%"), 1, true, 1),
            (p("25%"), 1, false, 0),
            (p("100%"), 7, false, 7),
            (IntOrString::Int(2), 10, true, 2),
            (p("bogus%"), 10, true, 0),
        ];
        for (v, total, up, want) in cases {
            assert_eq!(scaled_value(&v, total, up), want, "{v:?} of {total}");
        }
    }
}
