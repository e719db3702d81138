//! The HPA's pure decision (kube-controller-manager's
//! `reconcileAutoscaler`): from the HPA, its target's Scale, the target's
//! pods and their metrics, the replicas to scale to, the new status with
//! upstream's conditions, and the events to record.
//!
//! ```text
//!  Scale missing ─────────────> AbleToScale=False FailedGetScale
//!  spec.replicas 0 ───────────> ScalingActive=False ScalingDisabled
//!  outside [min, max] ────────> straight to the bound
//!  else per metric: replicas::resource_replicas ─> the highest proposal
//!        ─> behavior::stabilize ─> behavior::limit_rate ─> Plan
//! ```

use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus,
    MetricSpec, MetricStatus, MetricValueStatus, ResourceMetricStatus,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::clock;
use crate::hpa::behavior::{self, History};
use crate::hpa::replicas::{self, Samples, Target};
use crate::slim_pod::SlimPod;

/// What the controller read for one HPA.
pub struct Input<'a> {
    /// The HPA (autoscaling/v2).
    pub hpa: &'a HorizontalPodAutoscaler,
    /// The target's Scale, or why it could not be read.
    pub scale: Result<Scale, String>,
    /// The pods the Scale's selector selects.
    pub pods: &'a [&'a SlimPod],
    /// Their usage by resource name (`cpu`, `memory`), or why the metrics
    /// API did not answer.
    pub metrics: Result<&'a dyn Fn(&str) -> Samples, String>,
    /// Now, ms since the epoch.
    pub now_ms: i64,
}

/// The parts of an `autoscaling/v1` Scale the controller uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Scale {
    /// `spec.replicas`.
    pub spec_replicas: i32,
    /// `status.selector`, a label-selector string (`app=web`).
    pub selector: String,
}

/// An event to record on the HPA: (type, reason, message).
pub type EventSpec = (&'static str, &'static str, String);

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Write this to the target's `/scale` (`None`: leave it).
    pub rescale: Option<i32>,
    /// The reason for the rescale, for the `SuccessfulRescale` event.
    pub reason: String,
    /// The status to write (when a rescale fails, the controller changes
    /// it with [`failed_rescale`]).
    pub status: HorizontalPodAutoscalerStatus,
    /// Warnings to record (`FailedGetScale`, `FailedGetResourceMetric`, …).
    pub events: Vec<EventSpec>,
}

/// Sets the condition of `type_` to `status` with `reason` and `message`;
/// its `lastTransitionTime` moves only when `status` changes.
pub fn set_condition(
    conditions: &mut Vec<HorizontalPodAutoscalerCondition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    now_ms: i64,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let transition = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| clock::time(now_ms));
    conditions.retain(|c| c.type_ != type_);
    conditions.push(HorizontalPodAutoscalerCondition {
        type_: type_.into(),
        status,
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: Some(transition),
        ..Default::default()
    });
    // Kubernetes' order, which `kubectl describe` shows as is.
    let rank = |t: &str| match t {
        "AbleToScale" => 0,
        "ScalingActive" => 1,
        _ => 2,
    };
    conditions.sort_by_key(|c| rank(&c.type_));
}

/// The status after the write to `/scale` failed: AbleToScale False with
/// upstream's `FailedUpdateScale`, and the event to record.
pub fn failed_rescale(
    status: &mut HorizontalPodAutoscalerStatus,
    error: &str,
    now_ms: i64,
) -> EventSpec {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    set_condition(
        conditions,
        "AbleToScale",
        false,
        "FailedUpdateScale",
        format!("the HPA controller was unable to update the target scale: {error}"),
        now_ms,
    );
    (
        "Warning",
        "FailedRescale",
        format!("New size: {}; error: {error}", status.desired_replicas),
    )
}

/// One metric's proposal, for choosing the highest.
struct MetricResult {
    replicas: i32,
    name: String,
    status: MetricStatus,
}

/// Upstream's `computeStatusForResourceMetric`, or a ScalingActive=False
/// reason and the error for a metric Skiff cannot compute.
fn compute_metric(
    spec: &MetricSpec,
    current: i32,
    input: &Input,
) -> Result<MetricResult, (&'static str, String)> {
    let Some(resource) = spec.resource.as_ref().filter(|_| spec.type_ == "Resource") else {
        return Err((
            "InvalidMetricSourceType",
            format!(
                "metric type {:?} is not supported by Skiff (only Resource metrics are)",
                spec.type_
            ),
        ));
    };
    let name = resource.name.as_str();
    let unable = |e: String| ("FailedGetResourceMetric", e);
    let t = &resource.target;
    let target = match (t.type_.as_str(), t.average_utilization, &t.average_value) {
        ("Utilization", Some(u), _) if u > 0 => Target::Utilization(u),
        ("AverageValue", _, Some(v)) => match replicas::milli_value(&v.0) {
            Some(m) if m > 0 => Target::AverageValue(m),
            _ => return Err(unable(format!("invalid averageValue {:?}", v.0))),
        },
        _ => {
            return Err(unable(
                "invalid resource metric source: neither an average utilization target nor an average value (usage) target was set".into(),
            ))
        }
    };
    let kind = match target {
        Target::Utilization(_) => "utilization",
        Target::AverageValue(_) => "usage",
    };
    let samples = input.metrics.as_ref().map_err(|e| {
        unable(format!(
            "failed to get {name} {kind}: unable to get metrics for resource {name}: {e}"
        ))
    })?(name);
    let p = replicas::resource_replicas(current, target, name, input.pods, &samples, input.now_ms)
        .map_err(|e| unable(format!("failed to get {name} {kind}: {e}")))?;
    let metric_name = match target {
        Target::Utilization(_) => format!("{name} resource utilization (percentage of request)"),
        Target::AverageValue(_) => format!("{name} resource"),
    };
    Ok(MetricResult {
        replicas: p.replicas,
        name: metric_name,
        status: MetricStatus {
            type_: "Resource".into(),
            resource: Some(ResourceMetricStatus {
                name: name.into(),
                current: MetricValueStatus {
                    average_utilization: p.utilization,
                    average_value: Some(Quantity(milli_quantity(p.average_milli))),
                    value: None,
                },
            }),
            ..Default::default()
        },
    })
}

/// A milli-unit amount written as apimachinery's `NewMilliQuantity` prints
/// it: whole units when exact (`2`), else `m` (`250m`).
pub fn milli_quantity(milli: i64) -> String {
    if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

/// Decides one reconcile of one HPA. `history` is the HPA's memory; it is
/// updated with this recommendation (the controller adds the rescale with
/// [`History::record_rescale`] once the write succeeded).
pub fn reconcile(input: &Input, history: &mut History) -> Plan {
    let hpa = input.hpa;
    let now = input.now_ms;
    let old = hpa.status.clone().unwrap_or_default();
    let mut conditions = old.conditions.clone().unwrap_or_default();
    let mut events = Vec::new();
    let min = hpa.spec.min_replicas.unwrap_or(1);
    let max = hpa.spec.max_replicas;
    let mut status = HorizontalPodAutoscalerStatus {
        observed_generation: hpa.metadata.generation,
        last_scale_time: old.last_scale_time.clone(),
        current_replicas: old.current_replicas,
        desired_replicas: old.desired_replicas,
        current_metrics: old.current_metrics.clone(),
        conditions: None,
    };
    let scale = match &input.scale {
        Ok(s) => s,
        Err(e) => {
            set_condition(
                &mut conditions,
                "AbleToScale",
                false,
                "FailedGetScale",
                format!("the HPA controller was unable to get the target's current scale: {e}"),
                now,
            );
            events.push(("Warning", "FailedGetScale", e.clone()));
            status.conditions = Some(conditions);
            return Plan {
                rescale: None,
                reason: String::new(),
                status,
                events,
            };
        }
    };
    set_condition(
        &mut conditions,
        "AbleToScale",
        true,
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale".into(),
        now,
    );
    let current = scale.spec_replicas;
    // `recordInitialRecommendation`: a new HPA (or a restarted controller)
    // remembers the current count, so it does not scale down at once.
    if history.recommendations.is_empty() {
        history.recommendations.push((now, current));
    }
    let mut metric_statuses = None;
    let mut reason = String::new();
    let desired = if current == 0 && min != 0 {
        set_condition(
            &mut conditions,
            "ScalingActive",
            false,
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero".into(),
            now,
        );
        0
    } else if current > max {
        reason = "Current number of replicas above Spec.MaxReplicas".into();
        max
    } else if current < min {
        reason = "Current number of replicas below Spec.MinReplicas".into();
        min
    } else {
        match compute_metrics(input, scale, current, &mut conditions, &mut events) {
            Err(statuses) => {
                // No usable metric: report what was measured, change nothing.
                status.current_replicas = Some(current);
                status.current_metrics = statuses;
                status.conditions = Some(conditions);
                return Plan {
                    rescale: None,
                    reason,
                    status,
                    events,
                };
            }
            Ok((proposal, metric, statuses)) => {
                metric_statuses = statuses;
                if proposal > current {
                    reason = format!("{metric} above target");
                } else if proposal < current {
                    reason = "All metrics below target".into();
                }
                normalize(
                    hpa,
                    history,
                    &mut conditions,
                    current,
                    proposal,
                    min,
                    max,
                    now,
                )
            }
        }
    };
    let rescale = (desired != current).then_some(desired);
    status.current_replicas = Some(current);
    status.desired_replicas = desired;
    status.current_metrics = metric_statuses;
    if rescale.is_some() {
        set_condition(
            &mut conditions,
            "AbleToScale",
            true,
            "SucceededRescale",
            format!("the HPA controller was able to update the target scale to {desired}"),
            now,
        );
        status.last_scale_time = Some(clock::time(now));
    }
    status.conditions = Some(conditions);
    Plan {
        rescale,
        reason,
        status,
        events,
    }
}

/// Upstream's `computeReplicasForMetrics`: the highest proposal of the
/// valid metrics with its name, or (when every metric failed, or some
/// failed and the rest would scale down) the statuses measured so far.
#[allow(clippy::type_complexity)]
fn compute_metrics(
    input: &Input,
    scale: &Scale,
    current: i32,
    conditions: &mut Vec<HorizontalPodAutoscalerCondition>,
    events: &mut Vec<EventSpec>,
) -> Result<(i32, String, Option<Vec<MetricStatus>>), Option<Vec<MetricStatus>>> {
    let now = input.now_ms;
    if scale.selector.is_empty() {
        events.push(("Warning", "SelectorRequired", "selector is required".into()));
        set_condition(
            conditions,
            "ScalingActive",
            false,
            "InvalidSelector",
            "the HPA target's scale is missing a selector".into(),
            now,
        );
        return Err(None);
    }
    let specs = input.hpa.spec.metrics.clone().unwrap_or_default();
    let mut statuses = Vec::new();
    let mut best: Option<(i32, String)> = None;
    let mut first_invalid: Option<(&'static str, String, String)> = None;
    let mut invalid = 0;
    for spec in &specs {
        match compute_metric(spec, current, input) {
            Ok(m) => {
                statuses.push(m.status);
                if best.as_ref().is_none_or(|(r, _)| m.replicas > *r) {
                    best = Some((m.replicas, m.name));
                }
            }
            Err((reason, error)) => {
                events.push(("Warning", reason, error.clone()));
                let message = format!("the HPA was unable to compute the replica count: {error}");
                // Upstream's `computeReplicasForMetric` wraps resource errors.
                let wrapped = match &spec.resource {
                    Some(r) if spec.type_ == "Resource" => {
                        format!("failed to get {} resource metric value: {error}", r.name)
                    }
                    _ => error,
                };
                first_invalid.get_or_insert((reason, message, wrapped));
                invalid += 1;
            }
        }
    }
    let statuses = (!statuses.is_empty()).then_some(statuses);
    match (best, first_invalid) {
        (Some((replicas, name)), invalid_one) if invalid_one.is_none() || replicas >= current => {
            set_condition(
                conditions,
                "ScalingActive",
                true,
                "ValidMetricFound",
                format!("the HPA was able to successfully calculate a replica count from {name}"),
                now,
            );
            Ok((replicas, name, statuses))
        }
        (_, invalid_one) => {
            let (reason, message, error) = invalid_one.unwrap_or((
                "InvalidMetricSourceType",
                "the HPA was unable to compute the replica count: no metrics are specified".into(),
                "no metrics are specified".into(),
            ));
            set_condition(
                conditions,
                "ScalingActive",
                false,
                reason,
                message.clone(),
                now,
            );
            events.push((
                "Warning",
                "FailedComputeMetricsReplicas",
                format!(
                    "invalid metrics ({invalid} invalid out of {}), first error is: {error}",
                    specs.len()
                ),
            ));
            Err(statuses)
        }
    }
}

/// `normalizeDesiredReplicasWithBehaviors` (or, without `behavior`, the
/// older `normalizeDesiredReplicas`): stabilization, then rate and min/max
/// limits, with the AbleToScale and ScalingLimited conditions.
#[allow(clippy::too_many_arguments)]
fn normalize(
    hpa: &HorizontalPodAutoscaler,
    history: &mut History,
    conditions: &mut Vec<HorizontalPodAutoscalerCondition>,
    current: i32,
    proposal: i32,
    min: i32,
    max: i32,
    now: i64,
) -> i32 {
    let Some(given) = hpa.spec.behavior.as_ref() else {
        // No `behavior`: upstream's older `normalizeDesiredReplicas`.
        let stabilized = behavior::stabilize_legacy(history, proposal, now);
        able_to_scale(
            conditions,
            stabilized != proposal,
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation",
            now,
        );
        let limited = behavior::limit_legacy(current, stabilized, min, max);
        return scaling_limited(conditions, stabilized, limited, now);
    };
    let rules = behavior::rules(Some(given));
    let stabilized = behavior::stabilize(history, &rules, current, proposal, now);
    able_to_scale(
        conditions,
        stabilized.replicas != proposal,
        stabilized.reason,
        stabilized.message,
        now,
    );
    let limited =
        behavior::limit_rate(history, &rules, current, stabilized.replicas, min, max, now);
    scaling_limited(conditions, stabilized.replicas, limited, now)
}

/// AbleToScale after stabilization: `reason` if it changed the
/// recommendation, else `ReadyForNewScale`.
fn able_to_scale(
    conditions: &mut Vec<HorizontalPodAutoscalerCondition>,
    stabilized: bool,
    reason: &str,
    message: &str,
    now: i64,
) {
    if stabilized {
        set_condition(conditions, "AbleToScale", true, reason, message.into(), now);
    } else {
        set_condition(
            conditions,
            "AbleToScale",
            true,
            "ReadyForNewScale",
            "recommended size matches current size".into(),
            now,
        );
    }
}

/// ScalingLimited: True when the limits changed the stabilized count.
fn scaling_limited(
    conditions: &mut Vec<HorizontalPodAutoscalerCondition>,
    stabilized: i32,
    limited: behavior::Limited,
    now: i64,
) -> i32 {
    set_condition(
        conditions,
        "ScalingLimited",
        limited.replicas != stabilized,
        limited.reason,
        limited.message.into(),
        now,
    );
    limited.replicas
}
