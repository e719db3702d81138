//! `spec.behavior`: stabilization windows and scaling policies
//! (KEP-853, upstream's `normalizeDesiredReplicasWithBehaviors`).
//!
//! ```text
//!  recommendation ─> stabilize: the lowest of the last scaleUp window's
//!                    recommendations, the highest of the last scaleDown
//!                    window's, clamped around the current count
//!                 ─> rate: per policy, the replicas at the start of its
//!                    period ± Pods/Percent; selectPolicy Max/Min/Disabled
//!                 ─> min/max replicas
//! ```
//!
//! An HPA without `behavior` takes upstream's older rules instead
//! ([`stabilize_legacy`], [`limit_legacy`]). The recommendations and past
//! scale events live in the controller's
//! memory, one [`History`] per HPA, as in kube-controller-manager: after a
//! restart the windows start empty (and the first recommendation is the
//! current replica count, so a restart never scales down at once).

use k8s_openapi::api::autoscaling::v2::{
    HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscalerBehavior,
};

/// The default scale-down stabilization window (`GenerateHPAScaleDownRules`
/// and `--horizontal-pod-autoscaler-downscale-stabilization`): 5 minutes.
pub const DEFAULT_SCALE_DOWN_WINDOW_S: i32 = 300;
/// Period of the default policies: 15 s, the resync period.
pub const DEFAULT_POLICY_PERIOD_S: i32 = 15;

/// The rules for both directions with every default filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Scaling up.
    pub up: HPAScalingRules,
    /// Scaling down.
    pub down: HPAScalingRules,
}

fn policy(type_: &str, value: i32) -> HPAScalingPolicy {
    HPAScalingPolicy {
        type_: type_.into(),
        value,
        period_seconds: DEFAULT_POLICY_PERIOD_S,
    }
}

/// `behavior` with upstream's defaults: scale up by at most 4 pods or 100%
/// per 15 s (whichever is more), no up window; scale down by up to 100% per
/// 15 s after a 300 s window.
pub fn rules(behavior: Option<&HorizontalPodAutoscalerBehavior>) -> Rules {
    let fill = |given: Option<&HPAScalingRules>, window: i32, policies: Vec<HPAScalingPolicy>| {
        let given = given.cloned().unwrap_or_default();
        HPAScalingRules {
            stabilization_window_seconds: given.stabilization_window_seconds.or(Some(window)),
            select_policy: given.select_policy.or(Some("Max".into())),
            policies: given
                .policies
                .clone()
                .filter(|p| !p.is_empty())
                .or(Some(policies)),
            ..given
        }
    };
    Rules {
        up: fill(
            behavior.and_then(|b| b.scale_up.as_ref()),
            0,
            vec![policy("Pods", 4), policy("Percent", 100)],
        ),
        down: fill(
            behavior.and_then(|b| b.scale_down.as_ref()),
            DEFAULT_SCALE_DOWN_WINDOW_S,
            vec![policy("Percent", 100)],
        ),
    }
}

/// A past scale change: when, and by how many replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleEvent {
    /// When (ms since the epoch).
    pub at_ms: i64,
    /// Replicas added (scale-up) or removed (scale-down), positive.
    pub change: i32,
}

/// One HPA's memory: recent recommendations and scale events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// (when, recommended replicas), before stabilization.
    pub recommendations: Vec<(i64, i32)>,
    /// Scale-ups.
    pub ups: Vec<ScaleEvent>,
    /// Scale-downs.
    pub downs: Vec<ScaleEvent>,
}

impl History {
    /// Records a rescale from `from` to `to` at `now_ms`, forgetting events
    /// older than the longest policy period (they no longer limit anything).
    pub fn record_rescale(&mut self, rules: &Rules, from: i32, to: i32, now_ms: i64) {
        let longest = |r: &HPAScalingRules| {
            r.policies
                .iter()
                .flatten()
                .map(|p| i64::from(p.period_seconds) * 1000)
                .max()
                .unwrap_or(0)
        };
        self.ups.retain(|e| e.at_ms + longest(&rules.up) > now_ms);
        self.downs
            .retain(|e| e.at_ms + longest(&rules.down) > now_ms);
        let event = ScaleEvent {
            at_ms: now_ms,
            change: (to - from).abs(),
        };
        if to > from {
            self.ups.push(event);
        } else if to < from {
            self.downs.push(event);
        }
    }
}

/// Replicas changed by `events` within the last `period_s` seconds.
fn changed_within(events: &[ScaleEvent], period_s: i32, now_ms: i64) -> i32 {
    let cutoff = now_ms - i64::from(period_s) * 1000;
    events
        .iter()
        .filter(|e| e.at_ms > cutoff)
        .map(|e| e.change)
        .sum()
}

/// The outcome of stabilizing a recommendation.
#[derive(Debug, Clone, PartialEq)]
pub struct Stabilized {
    /// The stabilized recommendation.
    pub replicas: i32,
    /// `ScaleUpStabilized` or `ScaleDownStabilized` (used when it differs
    /// from the raw recommendation).
    pub reason: &'static str,
    /// Upstream's message for `reason`.
    pub message: &'static str,
}

/// `stabilizeRecommendationWithBehaviors`: records `desired` and returns
/// it bounded by the windows' recent recommendations.
pub fn stabilize(
    history: &mut History,
    rules: &Rules,
    current: i32,
    desired: i32,
    now_ms: i64,
) -> Stabilized {
    let window =
        |r: &HPAScalingRules| i64::from(r.stabilization_window_seconds.unwrap_or(0)) * 1000;
    let up_cutoff = now_ms - window(&rules.up);
    let down_cutoff = now_ms - window(&rules.down);
    let (mut up, mut down) = (desired, desired);
    for &(at, rec) in &history.recommendations {
        if at > up_cutoff {
            up = up.min(rec);
        }
        if at > down_cutoff {
            down = down.max(rec);
        }
    }
    let replicas = current.max(up).min(down);
    // Keep only what a window can still see, then the new one.
    history
        .recommendations
        .retain(|&(at, _)| at > up_cutoff.min(down_cutoff));
    history.recommendations.push((now_ms, desired));
    let (reason, message) = if desired >= current {
        (
            "ScaleUpStabilized",
            "recent recommendations were lower than current one, applying the lowest recent recommendation",
        )
    } else {
        (
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation",
        )
    };
    Stabilized {
        replicas,
        reason,
        message,
    }
}

/// The outcome of the rate and min/max limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Limited {
    /// Replicas to scale to.
    pub replicas: i32,
    /// `DesiredWithinRange`, `ScaleUpLimit`, `ScaleDownLimit`,
    /// `TooManyReplicas` or `TooFewReplicas`.
    pub reason: &'static str,
    /// Upstream's message for `reason`.
    pub message: &'static str,
}

/// How far the policies let the count move from `current`
/// (`calculateScaleUpLimitWithScalingRules` and its scale-down twin).
fn policy_limit(
    rules: &HPAScalingRules,
    history: &History,
    current: i32,
    up: bool,
    now_ms: i64,
) -> i32 {
    let select = rules.select_policy.as_deref().unwrap_or("Max");
    if select == "Disabled" {
        return current;
    }
    // "Max" means the biggest change: the highest count up, the lowest down.
    let biggest = select != "Min";
    let mut limit: Option<i32> = None;
    for p in rules.policies.iter().flatten() {
        let added = changed_within(&history.ups, p.period_seconds, now_ms);
        let removed = changed_within(&history.downs, p.period_seconds, now_ms);
        let start = f64::from(current - added + removed);
        let proposed = match (p.type_.as_str(), up) {
            ("Pods", true) => start + f64::from(p.value),
            ("Pods", false) => start - f64::from(p.value),
            // Rounded up on the way up, or +1% of 1 pod would never move.
            (_, true) => (start * (1.0 + f64::from(p.value) / 100.0)).ceil(),
            (_, false) => (start * (1.0 - f64::from(p.value) / 100.0)).trunc(),
        };
        let proposed = proposed.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32;
        limit = Some(match limit {
            None => proposed,
            Some(l) if up == biggest => l.max(proposed),
            Some(l) => l.min(proposed),
        });
    }
    limit.unwrap_or(current)
}

impl Limited {
    /// `replicas` for `reason`, with upstream's message for it.
    fn new(replicas: i32, reason: &'static str) -> Limited {
        let message = match reason {
            "ScaleUpLimit" => {
                "the desired replica count is increasing faster than the maximum scale rate"
            }
            "ScaleDownLimit" => {
                "the desired replica count is decreasing faster than the maximum scale rate"
            }
            "TooManyReplicas" => "the desired replica count is more than the maximum replica count",
            "TooFewReplicas" => "the desired replica count is less than the minimum replica count",
            _ => "the desired count is within the acceptable range",
        };
        Limited {
            replicas,
            reason,
            message,
        }
    }
}

/// The tighter of a rate limit and `maxReplicas` on the way up.
fn up_bound(rate: i32, max: i32) -> Limited {
    if max > rate {
        Limited::new(rate, "ScaleUpLimit")
    } else {
        Limited::new(max, "TooManyReplicas")
    }
}

/// `convertDesiredReplicasWithBehaviorRate`: `desired` limited by the
/// policies and by `min`/`max`.
pub fn limit_rate(
    history: &History,
    rules: &Rules,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    now_ms: i64,
) -> Limited {
    if desired > current {
        let rate = policy_limit(&rules.up, history, current, true, now_ms).max(current);
        let bound = up_bound(rate, max);
        if desired > bound.replicas {
            return bound;
        }
    } else if desired < current {
        let rate = policy_limit(&rules.down, history, current, false, now_ms).min(current);
        let bound = if min < rate {
            Limited::new(rate, "ScaleDownLimit")
        } else {
            Limited::new(min, "TooFewReplicas")
        };
        if desired < bound.replicas {
            return bound;
        }
    }
    Limited::new(desired, "DesiredWithinRange")
}

/// Without `behavior`, upstream takes its older path
/// (`normalizeDesiredReplicas`): scale-ups at most to max(2 × current, 4)
/// per evaluation (`scaleUpLimitFactor`, `scaleUpLimitMinimum`).
pub fn legacy_scale_up_limit(current: i32) -> i32 {
    current.saturating_mul(2).max(4)
}

/// The older path's stabilization (`stabilizeRecommendation`): the highest
/// recommendation of the last [`DEFAULT_SCALE_DOWN_WINDOW_S`], this one
/// included.
pub fn stabilize_legacy(history: &mut History, desired: i32, now_ms: i64) -> i32 {
    let cutoff = now_ms - i64::from(DEFAULT_SCALE_DOWN_WINDOW_S) * 1000;
    history.recommendations.retain(|&(at, _)| at > cutoff);
    let highest = history
        .recommendations
        .iter()
        .map(|&(_, r)| r)
        .fold(desired, i32::max);
    history.recommendations.push((now_ms, desired));
    highest
}

/// The older path's limits (`convertDesiredReplicasWithRules`).
pub fn limit_legacy(current: i32, desired: i32, min: i32, max: i32) -> Limited {
    let bound = up_bound(legacy_scale_up_limit(current), max);
    if desired < min {
        Limited::new(min, "TooFewReplicas")
    } else if desired > bound.replicas {
        bound
    } else {
        Limited::new(desired, "DesiredWithinRange")
    }
}
