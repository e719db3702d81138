//! Table-driven tests of the HPA's pure parts with a fixed clock: the
//! replica calculator, behavior windows and policies, and whole reconciles.
#![allow(clippy::type_complexity)] // the case tables

use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscaler, HorizontalPodAutoscalerStatus};
use serde_json::json;

use super::behavior::{self, History, ScaleEvent};
use super::core::{self, Input, Plan, Scale};
use super::replicas::{self, Sample, Samples, Target};
use crate::clock;
use crate::slim_pod::SlimPod;

/// "Now" for every test, ms since the epoch.
const NOW: i64 = 1_700_000_000_000;
const MIN: i64 = 60_000;

/// A Running pod started `started_ago` ms before NOW, Ready since then
/// (or not), with one container `app` requesting `cpu` (if given).
fn pod(name: &str, cpu: Option<&str>, phase: &str, ready: bool, started_ago: i64) -> SlimPod {
    let resources = match cpu {
        Some(c) => json!({"requests": {"cpu": c, "memory": "64Mi"}}),
        None => json!({"requests": {"memory": "64Mi"}}),
    };
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "nginx", "resources": resources}]},
        "status": {
            "phase": phase,
            "startTime": clock::time(NOW - started_ago),
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                            "lastTransitionTime": clock::time(NOW - started_ago)}],
        }
    }))
    .unwrap()
}

/// A Running, ready pod requesting 500m, started 10 minutes ago.
fn ready(name: &str) -> SlimPod {
    pod(name, Some("500m"), "Running", true, 10 * MIN)
}

fn sample(milli: i64) -> Sample {
    Sample {
        value: milli,
        timestamp_ms: NOW - 1000,
        window_ms: 1000,
    }
}

fn samples(values: &[(&str, i64)]) -> Samples {
    values
        .iter()
        .map(|(n, v)| (n.to_string(), sample(*v)))
        .collect()
}

fn calc(
    current: i32,
    target: Target,
    pods: &[SlimPod],
    usage: &[(&str, i64)],
) -> Result<i32, String> {
    let refs: Vec<&SlimPod> = pods.iter().collect();
    replicas::resource_replicas(current, target, "cpu", &refs, &samples(usage), NOW)
        .map(|p| p.replicas)
}

#[test]
fn desired_is_ceil_of_current_times_usage_over_target() {
    let pods = [ready("a"), ready("b"), ready("c")];
    let cases: &[(&str, &[(&str, i64)], Target, i32)] = &[
        // 100% of request against 50%: twice as many.
        (
            "double",
            &[("a", 500), ("b", 500), ("c", 500)],
            Target::Utilization(50),
            6,
        ),
        // 54% against 50%: ratio 1.08, inside the 0.1 tolerance.
        (
            "tolerance up",
            &[("a", 270), ("b", 270), ("c", 270)],
            Target::Utilization(50),
            3,
        ),
        // 46%: ratio 0.92, inside too.
        (
            "tolerance down",
            &[("a", 230), ("b", 230), ("c", 230)],
            Target::Utilization(50),
            3,
        ),
        // 56%: ratio 1.12, outside: ceil(3.36) = 4.
        (
            "just outside",
            &[("a", 280), ("b", 280), ("c", 280)],
            Target::Utilization(50),
            4,
        ),
        // 20% against 50%: ceil(0.4 × 3) = 2.
        (
            "scale down",
            &[("a", 100), ("b", 100), ("c", 100)],
            Target::Utilization(50),
            2,
        ),
        // AverageValue 200m, using 600m on average: ceil(3 × 3) = 9.
        (
            "average value",
            &[("a", 600), ("b", 600), ("c", 600)],
            Target::AverageValue(200),
            9,
        ),
        (
            "average value within",
            &[("a", 210), ("b", 200), ("c", 190)],
            Target::AverageValue(200),
            3,
        ),
    ];
    for (name, usage, target, want) in cases {
        assert_eq!(calc(3, *target, &pods, usage), Ok(*want), "{name}");
    }
}

#[test]
fn missing_requests_are_an_error_in_upstreams_words() {
    let pods = [ready("a"), pod("b", None, "Running", true, 10 * MIN)];
    let got = calc(2, Target::Utilization(50), &pods, &[("a", 100), ("b", 100)]);
    assert_eq!(
        got,
        Err("missing request for cpu in container app of Pod b".into())
    );
    // AverageValue does not need requests.
    let got = calc(
        2,
        Target::AverageValue(100),
        &pods,
        &[("a", 100), ("b", 100)],
    );
    assert_eq!(got, Ok(2));
}

#[test]
fn missing_metrics_count_as_zero_up_and_full_request_down() {
    let pods = [ready("a"), ready("b"), ready("c"), ready("d"), ready("e")];
    // Scale-up: a, b, c, d at 100%, e missing counts as 0%: 2000/2500 =
    // 80% → ceil(1.6 × 5) = 8.
    let up = &[("a", 500), ("b", 500), ("c", 500), ("d", 500)];
    assert_eq!(calc(5, Target::Utilization(50), &pods, up), Ok(8));
    let barely = &[("a", 300), ("b", 300)];
    // Ready-only: 60% → 1.2 → ceil(2.4) = 3 < 5 would scale *down*; with
    // missing at 0: 600/2500 = 24% → 0.48, direction flipped → keep 5.
    assert_eq!(calc(5, Target::Utilization(50), &pods, barely), Ok(5));
    // Scale-down: four at 10%, e missing counts as 100% of its request:
    // (4 × 50 + 500) / 2500 = 28% → ceil(0.56 × 5) = 3 (not ceil(0.2 × 4) = 1).
    let down = &[("a", 50), ("b", 50), ("c", 50), ("d", 50)];
    assert_eq!(calc(5, Target::Utilization(50), &pods, down), Ok(3));
}

#[test]
fn unready_pods_are_ignored_on_scale_up_and_left_out_on_scale_down() {
    let pods = [
        ready("a"),
        ready("b"),
        ready("c"),
        pod("p", Some("500m"), "Pending", false, 0),
    ];
    // Up: three at 70% (1.4): ready-only would say ceil(4.2) = 5; with the
    // pending pod at 0%: 1050/2000 = 52% → 1.04, in tolerance → keep 4.
    let up = &[("a", 350), ("b", 350), ("c", 350)];
    assert_eq!(calc(4, Target::Utilization(50), &pods, up), Ok(4));
    // Down: three at 10%: the pending pod is not counted: ceil(0.2 × 3) = 1.
    let down = &[("a", 50), ("b", 50), ("c", 50)];
    assert_eq!(calc(4, Target::Utilization(50), &pods, down), Ok(1));
}

#[test]
fn cpu_samples_of_pods_still_starting_are_unready() {
    // Started 20 s ago and not ready: its sample is not trusted.
    let young = pod("y", Some("500m"), "Running", false, 20_000);
    // Ready 500 ms ago with a 1 s window: the sample straddles readiness.
    let fresh = pod("f", Some("500m"), "Running", true, 500);
    // Was ready long ago, not ready now, but past the initialization
    // period: counted (upstream only drops pods that never became ready).
    let mut flapped = pod("o", Some("500m"), "Running", false, 10 * MIN);
    if let Some(c) = flapped.status.as_mut().and_then(|s| s.conditions.as_mut()) {
        c[0].last_transition_time = Some(clock::time(NOW - MIN));
    }
    let pods = [ready("a"), young, fresh, flapped];
    // Counted: a at 20% and o at 160%: 90% → ratio 1.8, a scale-up; with
    // the unready y and f at 0%: 900/2000 = 45% → 0.9, the direction
    // flips, so keep 4. (Counting y and f as ready would give 12.)
    let usage = &[("a", 100), ("y", 1000), ("f", 1000), ("o", 800)];
    assert_eq!(calc(4, Target::Utilization(50), &pods, usage), Ok(4));
    // For memory the readiness rule does not apply: every sample counts,
    // 2900m / 4 = 725m against 310m → ceil(2.34 × 4) = 10.
    let refs: Vec<&SlimPod> = pods.iter().collect();
    let mut mem_pods = refs.clone();
    mem_pods.truncate(4);
    let got = replicas::resource_replicas(
        4,
        Target::AverageValue(310),
        "memory",
        &mem_pods,
        &samples(usage),
        NOW,
    );
    assert_eq!(got.map(|p| p.replicas), Ok(10));
}

#[test]
fn quantities_parse_to_milli_units() {
    for (q, want) in [
        ("250m", 250),
        ("1", 1000),
        ("1.5", 1500),
        ("10n", 1),
        ("1Ki", 1_024_000),
        ("2e3", 2_000_000),
    ] {
        assert_eq!(replicas::milli_value(q), Some(want), "{q}");
    }
    assert_eq!(replicas::milli_value("lots"), None);
    assert_eq!(core::milli_quantity(2000), "2");
    assert_eq!(core::milli_quantity(250), "250m");
}

fn rules(behavior: serde_json::Value) -> behavior::Rules {
    let b = serde_json::from_value(behavior).unwrap();
    behavior::rules(Some(&b))
}

#[test]
fn default_scale_down_window_keeps_the_highest_recent_recommendation() {
    let r = behavior::rules(None);
    let mut h = History {
        recommendations: vec![(NOW - 4 * MIN, 4)],
        ..Default::default()
    };
    let s = behavior::stabilize(&mut h, &r, 4, 1, NOW);
    assert_eq!((s.replicas, s.reason), (4, "ScaleDownStabilized"));
    // Five minutes after the 4, only the 1 is left in the window.
    let s = behavior::stabilize(&mut h, &r, 4, 1, NOW + 61_000);
    assert_eq!(s.replicas, 1);
    // Old recommendations are dropped.
    assert_eq!(h.recommendations, vec![(NOW, 1), (NOW + 61_000, 1)]);
    // Up is not stabilized by default.
    let s = behavior::stabilize(&mut h, &r, 1, 9, NOW + 62_000);
    assert_eq!(s.replicas, 9);
}

#[test]
fn scale_up_window_keeps_the_lowest_recent_recommendation() {
    let r = rules(json!({"scaleUp": {"stabilizationWindowSeconds": 60}}));
    let mut h = History {
        recommendations: vec![(NOW - 30_000, 3), (NOW - 90_000, 2)],
        ..Default::default()
    };
    let s = behavior::stabilize(&mut h, &r, 2, 8, NOW);
    assert_eq!((s.replicas, s.reason), (3, "ScaleUpStabilized"));
}

#[test]
fn policies_limit_the_rate() {
    let none = History::default();
    let recent_up = History {
        ups: vec![ScaleEvent {
            at_ms: NOW - 5000,
            change: 4,
        }],
        ..Default::default()
    };
    let cases: &[(
        &str,
        behavior::Rules,
        &History,
        i32,
        i32,
        i32,
        i32,
        i32,
        &str,
    )] = &[
        // Default up: max(2 + 4, 2 × 2) = 6.
        (
            "default up",
            behavior::rules(None),
            &none,
            2,
            20,
            1,
            50,
            6,
            "ScaleUpLimit",
        ),
        // 10 → max(14, 20) = 20, within range.
        (
            "default up large",
            behavior::rules(None),
            &none,
            10,
            20,
            1,
            50,
            20,
            "DesiredWithinRange",
        ),
        // Just scaled 2 → 6 five seconds ago: the period started at 2.
        (
            "period remembers",
            behavior::rules(None),
            &recent_up,
            6,
            20,
            1,
            50,
            6,
            "ScaleUpLimit",
        ),
        // maxReplicas below the rate limit.
        (
            "max",
            behavior::rules(None),
            &none,
            3,
            12,
            1,
            5,
            5,
            "TooManyReplicas",
        ),
        // Down by 100% per 15 s, bounded by minReplicas.
        (
            "min",
            behavior::rules(None),
            &none,
            4,
            1,
            2,
            10,
            2,
            "TooFewReplicas",
        ),
        (
            "Min policy",
            rules(json!({"scaleUp": {"selectPolicy": "Min"}})),
            &none,
            10,
            30,
            1,
            50,
            14,
            "ScaleUpLimit",
        ),
        (
            "Disabled down",
            rules(json!({"scaleDown": {"selectPolicy": "Disabled"}})),
            &none,
            10,
            1,
            1,
            50,
            10,
            "ScaleDownLimit",
        ),
        (
            "Percent down",
            rules(
                json!({"scaleDown": {"policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}]}}),
            ),
            &none,
            10,
            1,
            1,
            50,
            5,
            "ScaleDownLimit",
        ),
        (
            "Pods down",
            rules(
                json!({"scaleDown": {"policies": [{"type": "Pods", "value": 3, "periodSeconds": 60}]}}),
            ),
            &none,
            10,
            1,
            1,
            50,
            7,
            "ScaleDownLimit",
        ),
    ];
    for (name, r, h, current, desired, min, max, want, reason) in cases {
        let got = behavior::limit_rate(h, r, *current, *desired, *min, *max, NOW);
        assert_eq!((got.replicas, got.reason), (*want, *reason), "{name}");
    }
    // Sixteen seconds later the 15 s period no longer sees the scale-up.
    let got = behavior::limit_rate(
        &recent_up,
        &behavior::rules(None),
        6,
        20,
        1,
        50,
        NOW + 11_000,
    );
    assert_eq!(got.replicas, 12);
}

#[test]
fn record_rescale_forgets_events_older_than_the_longest_period() {
    let r = behavior::rules(None);
    let mut h = History::default();
    h.record_rescale(&r, 2, 6, NOW - 20_000);
    h.record_rescale(&r, 6, 12, NOW);
    h.record_rescale(&r, 12, 10, NOW);
    assert_eq!(
        h.ups,
        vec![ScaleEvent {
            at_ms: NOW,
            change: 6
        }]
    );
    assert_eq!(
        h.downs,
        vec![ScaleEvent {
            at_ms: NOW,
            change: 2
        }]
    );
}

fn hpa(spec: serde_json::Value) -> HorizontalPodAutoscaler {
    let mut spec = spec;
    spec["scaleTargetRef"] = json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"});
    serde_json::from_value(
        json!({"metadata": {"name": "web", "namespace": "default", "generation": 1}, "spec": spec}),
    )
    .unwrap()
}

fn cpu50() -> serde_json::Value {
    json!({"minReplicas": 1, "maxReplicas": 10, "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]})
}

fn run(
    h: &HorizontalPodAutoscaler,
    scale: Result<i32, String>,
    pods: &[SlimPod],
    usage: &[(&str, i64)],
) -> Plan {
    let refs: Vec<&SlimPod> = pods.iter().collect();
    let by = |r: &str| {
        if r == "cpu" {
            samples(usage)
        } else {
            Samples::new()
        }
    };
    let mut history = History::default();
    core::reconcile(
        &Input {
            hpa: h,
            scale: scale.map(|n| Scale {
                spec_replicas: n,
                selector: "app=web".into(),
            }),
            pods: &refs,
            metrics: Ok(&by),
            now_ms: NOW,
        },
        &mut history,
    )
}

fn condition(status: &HorizontalPodAutoscalerStatus, type_: &str) -> (String, String, String) {
    let c = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"));
    (
        c.status.clone(),
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    )
}

#[test]
fn reconcile_scales_up_with_upstreams_status_and_reason() {
    let plan = run(
        &hpa(cpu50()),
        Ok(2),
        &[ready("a"), ready("b")],
        &[("a", 500), ("b", 500)],
    );
    assert_eq!(plan.rescale, Some(4));
    assert_eq!(
        plan.reason,
        "cpu resource utilization (percentage of request) above target"
    );
    let s = &plan.status;
    assert_eq!((s.current_replicas, s.desired_replicas), (Some(2), 4));
    assert_eq!(s.last_scale_time, Some(clock::time(NOW)));
    assert_eq!(s.observed_generation, Some(1));
    let m = &s.current_metrics.as_ref().unwrap()[0];
    let current = &m.resource.as_ref().unwrap().current;
    assert_eq!(current.average_utilization, Some(100));
    assert_eq!(current.average_value.as_ref().unwrap().0, "500m");
    assert_eq!(condition(s, "AbleToScale").1, "SucceededRescale");
    assert_eq!(
        condition(s, "ScalingActive"),
        ("True".into(), "ValidMetricFound".into(),
         "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)".into())
    );
    assert_eq!(condition(s, "ScalingLimited").1, "DesiredWithinRange");
    let types: Vec<&str> = s
        .conditions
        .iter()
        .flatten()
        .map(|c| c.type_.as_str())
        .collect();
    assert_eq!(types, ["AbleToScale", "ScalingActive", "ScalingLimited"]);
}

#[test]
fn reconcile_without_requests_reports_failed_get_resource_metric() {
    let pods = [pod("web-0", None, "Running", true, 10 * MIN)];
    let plan = run(&hpa(cpu50()), Ok(1), &pods, &[("web-0", 100)]);
    assert_eq!(plan.rescale, None);
    assert_eq!(
        condition(&plan.status, "ScalingActive"),
        ("False".into(), "FailedGetResourceMetric".into(),
         "the HPA was unable to compute the replica count: failed to get cpu utilization: missing request for cpu in container app of Pod web-0".into())
    );
    assert!(plan.events.iter().any(|e| e.1 == "FailedGetResourceMetric"));
    assert!(plan
        .events
        .iter()
        .any(|e| e.1 == "FailedComputeMetricsReplicas"));
}

#[test]
fn reconcile_refuses_other_metric_types_clearly() {
    let h = hpa(
        json!({"maxReplicas": 5, "metrics": [{"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1"}}}]}),
    );
    let plan = run(&h, Ok(1), &[ready("a")], &[("a", 100)]);
    let (status, reason, message) = condition(&plan.status, "ScalingActive");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "InvalidMetricSourceType")
    );
    assert!(message.contains("\"Pods\" is not supported"), "{message}");
    assert_eq!(plan.rescale, None);
}

#[test]
fn reconcile_edge_cases() {
    // Target at 0 replicas: scaling disabled.
    let plan = run(&hpa(cpu50()), Ok(0), &[], &[]);
    assert_eq!(plan.rescale, None);
    assert_eq!(
        condition(&plan.status, "ScalingActive").1,
        "ScalingDisabled"
    );
    // Below minReplicas: straight to the minimum, whatever the metrics.
    let mut spec = cpu50();
    spec["minReplicas"] = json!(3);
    let plan = run(&hpa(spec), Ok(1), &[ready("a")], &[("a", 10)]);
    assert_eq!(plan.rescale, Some(3));
    assert_eq!(
        plan.reason,
        "Current number of replicas below Spec.MinReplicas"
    );
    // Above maxReplicas.
    let plan = run(&hpa(cpu50()), Ok(12), &[ready("a")], &[("a", 250)]);
    assert_eq!(
        (plan.rescale, plan.reason.as_str()),
        (
            Some(10),
            "Current number of replicas above Spec.MaxReplicas"
        )
    );
    // Metric-driven, beyond maxReplicas: limited, condition says so.
    let pods = [ready("a"), ready("b"), ready("c"), ready("d")];
    let busy = &[("a", 2000), ("b", 2000), ("c", 2000), ("d", 2000)];
    let plan = run(&hpa(cpu50()), Ok(4), &pods, busy);
    assert_eq!(plan.rescale, Some(8)); // rate: max(4 + 4, 2 × 4)
    assert_eq!(condition(&plan.status, "ScalingLimited").1, "ScaleUpLimit");
    let mut spec = cpu50();
    spec["maxReplicas"] = json!(6);
    let plan = run(&hpa(spec), Ok(4), &pods, busy);
    assert_eq!(plan.rescale, Some(6));
    assert_eq!(
        condition(&plan.status, "ScalingLimited"),
        (
            "True".into(),
            "TooManyReplicas".into(),
            "the desired replica count is more than the maximum replica count".into()
        )
    );
    // The Scale could not be read.
    let plan = run(
        &hpa(cpu50()),
        Err("deployments.apps \"web\" not found".into()),
        &[],
        &[],
    );
    let (status, reason, _) = condition(&plan.status, "AbleToScale");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "FailedGetScale")
    );
}

#[test]
fn reconcile_scale_down_waits_for_the_window_and_respects_min() {
    let h = hpa(cpu50());
    let pods = [ready("a"), ready("b"), ready("c")];
    let idle = &[("a", 10), ("b", 10), ("c", 10)];
    let refs: Vec<&SlimPod> = pods.iter().collect();
    let by = |_: &str| samples(idle);
    let mut history = History::default();
    let at = |now: i64, history: &mut History| {
        core::reconcile(
            &Input {
                hpa: &h,
                scale: Ok(Scale {
                    spec_replicas: 3,
                    selector: "app=web".into(),
                }),
                pods: &refs,
                metrics: Ok(&by),
                now_ms: now,
            },
            history,
        )
    };
    let first = at(NOW, &mut history);
    assert_eq!(first.rescale, None);
    assert_eq!(
        condition(&first.status, "AbleToScale").1,
        "ScaleDownStabilized"
    );
    let later = at(NOW + 301_000, &mut history);
    assert_eq!(later.rescale, Some(1));
    assert_eq!(later.reason, "All metrics below target");
}

#[test]
fn condition_transition_times_move_only_on_status_change() {
    let mut conditions = Vec::new();
    core::set_condition(
        &mut conditions,
        "ScalingActive",
        true,
        "ValidMetricFound",
        "m".into(),
        NOW,
    );
    core::set_condition(
        &mut conditions,
        "ScalingActive",
        true,
        "ValidMetricFound",
        "m2".into(),
        NOW + 1000,
    );
    assert_eq!(conditions[0].last_transition_time, Some(clock::time(NOW)));
    core::set_condition(
        &mut conditions,
        "ScalingActive",
        false,
        "FailedGetResourceMetric",
        "m3".into(),
        NOW + 2000,
    );
    assert_eq!(
        conditions[0].last_transition_time,
        Some(clock::time(NOW + 2000))
    );
    assert_eq!(conditions.len(), 1);
}

#[test]
fn failed_rescale_sets_able_to_scale_false() {
    let mut status = HorizontalPodAutoscalerStatus {
        desired_replicas: 4,
        ..Default::default()
    };
    let event = core::failed_rescale(&mut status, "conflict", NOW);
    assert_eq!(event.1, "FailedRescale");
    assert_eq!(
        condition(&status, "AbleToScale"),
        (
            "False".into(),
            "FailedUpdateScale".into(),
            "the HPA controller was unable to update the target scale: conflict".into()
        )
    );
}

#[test]
fn pod_metrics_become_samples_summed_over_containers() {
    use super::controller::{duration_ms, samples};
    let metrics = vec![
        json!({"name": "a", "timestamp": "2023-11-14T22:13:19Z", "window": "1s",
               "containers": [{"name": "app", "usage": {"cpu": "150m", "memory": "10Mi"}},
                              {"name": "side", "usage": {"cpu": "50m", "memory": "1Mi"}}]}),
        // A container without cpu: the pod has no cpu sample (upstream).
        json!({"name": "b", "timestamp": "2023-11-14T22:13:19Z", "window": "30s",
               "containers": [{"name": "app", "usage": {"memory": "10Mi"}}]}),
        json!({"name": "c", "containers": []}),
    ];
    let cpu = samples(&metrics, "cpu");
    assert_eq!(cpu.keys().collect::<Vec<_>>(), ["a"]);
    assert_eq!(
        cpu["a"],
        Sample {
            value: 200,
            timestamp_ms: NOW - 1000,
            window_ms: 1000
        }
    );
    assert_eq!(
        samples(&metrics, "memory")["b"].value,
        10 * 1024 * 1024 * 1000
    );
    for (d, ms) in [
        ("1s", Some(1000)),
        ("1m0s", Some(60_000)),
        ("500ms", Some(500)),
        ("1h", Some(3_600_000)),
        ("x", None),
    ] {
        assert_eq!(duration_ms(d), ms, "{d}");
    }
}

#[test]
fn failed_compute_event_carries_upstreams_wrapped_error() {
    let pods = [pod("web-0", None, "Running", true, 10 * MIN)];
    let plan = run(&hpa(cpu50()), Ok(1), &pods, &[("web-0", 100)]);
    let event = plan
        .events
        .iter()
        .find(|e| e.1 == "FailedComputeMetricsReplicas")
        .unwrap();
    assert_eq!(
        event.2,
        "invalid metrics (1 invalid out of 1), first error is: failed to get cpu resource metric value: failed to get cpu utilization: missing request for cpu in container app of Pod web-0"
    );
}

#[test]
fn without_behavior_the_older_rules_apply() {
    // max(2 × 2, 4) = 4, where the default behavior would allow 6.
    let got = behavior::limit_legacy(2, 20, 1, 50);
    assert_eq!((got.replicas, got.reason), (4, "ScaleUpLimit"));
    let got = behavior::limit_legacy(10, 30, 1, 15);
    assert_eq!((got.replicas, got.reason), (15, "TooManyReplicas"));
    let got = behavior::limit_legacy(3, 1, 2, 15);
    assert_eq!((got.replicas, got.reason), (2, "TooFewReplicas"));
    // Stabilization keeps the highest of the last 5 minutes, even above a
    // scale-up recommendation; older ones are forgotten.
    let mut h = History {
        recommendations: vec![(NOW - 6 * MIN, 20), (NOW - 2 * MIN, 10)],
        ..Default::default()
    };
    assert_eq!(behavior::stabilize_legacy(&mut h, 6, NOW), 10);
    assert_eq!(h.recommendations, vec![(NOW - 2 * MIN, 10), (NOW, 6)]);
    // Through a whole reconcile: 2 busy pods at 400% → 16, limited to 4.
    let plan = run(
        &hpa(cpu50()),
        Ok(2),
        &[ready("a"), ready("b")],
        &[("a", 2000), ("b", 2000)],
    );
    assert_eq!(plan.rescale, Some(4));
    // With a behavior (defaults filled in), the policies allow 2 + 4 = 6.
    let mut spec = cpu50();
    spec["behavior"] = json!({"scaleUp": {}});
    let plan = run(
        &hpa(spec),
        Ok(2),
        &[ready("a"), ready("b")],
        &[("a", 2000), ("b", 2000)],
    );
    assert_eq!(plan.rescale, Some(6));
}
