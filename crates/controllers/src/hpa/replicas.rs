//! The replica calculator (kube-controller-manager's
//! `podautoscaler/replica_calculator.go`): from the pods a target selects
//! and their usage, how many replicas would bring the average to the
//! target.
//!
//! ```text
//!  desired = ceil(ready pods × usage / target)      (|1 − ratio| > 0.1)
//! ```
//!
//! Pods are grouped first, as upstream's `groupPods` does: deleted and
//! failed pods are ignored; pending pods, and (for cpu) pods that are not
//! ready or whose sample predates their readiness, are "unready"; running
//! pods without a sample are "missing". When some are missing or unready,
//! the ratio is recomputed conservatively (missing pods use 0 on a
//! scale-up and 100% of their request on a scale-down, unready pods 0 on a
//! scale-up), and the replica count only moves if the direction holds.

use std::collections::{BTreeMap, BTreeSet};

use crate::pod_util;
use crate::slim_pod::SlimPod;

/// Changes of less than 10% of the target are ignored
/// (`--horizontal-pod-autoscaler-tolerance`).
pub const TOLERANCE: f64 = 0.1;
/// A cpu sample taken this soon after a pod started is trusted only if the
/// pod was ready for the whole sampling window
/// (`--horizontal-pod-autoscaler-cpu-initialization-period`, 5 min).
pub const CPU_INITIALIZATION_PERIOD_MS: i64 = 5 * 60 * 1000;
/// Readiness turning false this soon after start means "never became
/// ready" (`--horizontal-pod-autoscaler-initial-readiness-delay`, 30 s).
pub const INITIAL_READINESS_DELAY_MS: i64 = 30 * 1000;

/// One pod's usage of one resource: the sum over its containers, in milli
/// units (millicores, or thousandths of a byte), from a `PodMetrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Usage in milli units.
    pub value: i64,
    /// When the sample was taken (ms since the epoch).
    pub timestamp_ms: i64,
    /// Over how long it was measured (ms).
    pub window_ms: i64,
}

/// Samples by pod name.
pub type Samples = BTreeMap<String, Sample>;

/// What the calculator proposes for one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// Desired replicas.
    pub replicas: i32,
    /// Average utilization in percent of the request (Utilization targets).
    pub utilization: Option<i32>,
    /// Average usage per pod, milli units.
    pub average_milli: i64,
}

/// The pods of a target, grouped as upstream's `groupPods` does.
struct Groups {
    ready: usize,
    unready: BTreeSet<String>,
    missing: BTreeSet<String>,
    ignored: BTreeSet<String>,
}

fn group_pods(pods: &[&SlimPod], samples: &Samples, resource: &str, now_ms: i64) -> Groups {
    let mut g = Groups {
        ready: 0,
        unready: BTreeSet::new(),
        missing: BTreeSet::new(),
        ignored: BTreeSet::new(),
    };
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let phase = pod_util::phase(pod);
        if pod.metadata.deletion_timestamp.is_some() || phase == "Failed" {
            g.ignored.insert(name);
            continue;
        }
        if phase == "Pending" {
            g.unready.insert(name);
            continue;
        }
        let Some(sample) = samples.get(&name) else {
            g.missing.insert(name);
            continue;
        };
        if resource == "cpu" && cpu_unready(pod, sample, now_ms) {
            g.unready.insert(name);
            continue;
        }
        g.ready += 1;
    }
    g
}

/// Whether a pod's cpu sample should be left out (upstream's rule: during
/// the initialization period, unless ready for a whole window; after it,
/// only if the pod never became ready).
fn cpu_unready(pod: &SlimPod, sample: &Sample, now_ms: i64) -> bool {
    let condition = pod_util::condition(pod, "Ready");
    let start = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| pod_util::millis(&t.0));
    let (Some(condition), Some(start)) = (condition, start) else {
        return true;
    };
    let ready = condition.status == "True";
    let transition = condition
        .last_transition_time
        .as_ref()
        .map(|t| pod_util::millis(&t.0))
        .unwrap_or(start);
    if start + CPU_INITIALIZATION_PERIOD_MS > now_ms {
        !ready || sample.timestamp_ms < transition + sample.window_ms
    } else {
        !ready && start + INITIAL_READINESS_DELAY_MS > transition
    }
}

/// Each pod's request of `resource` (milli units), summed over its
/// containers; an error names the first container without one, in
/// upstream's words.
pub fn pod_requests(pods: &[&SlimPod], resource: &str) -> Result<BTreeMap<String, i64>, String> {
    let mut out = BTreeMap::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mut sum = 0i64;
        for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
            let request = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get(resource))
                .and_then(|q| milli_value(&q.0));
            match request {
                Some(v) => sum += v,
                None => {
                    return Err(format!(
                        "missing request for {resource} in container {} of Pod {name}",
                        c.name
                    ))
                }
            }
        }
        out.insert(name, sum);
    }
    Ok(out)
}

/// A quantity (`250m`, `1.5`, `128Mi`, `2e3`) in thousandths of its unit,
/// rounded up like apimachinery's `MilliValue`; `None` if it does not parse.
pub fn milli_value(q: &str) -> Option<i64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let value: f64 = number.parse().ok()?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    let milli = (value * multiplier * 1000.0).ceil();
    (milli.is_finite() && milli.abs() < i64::MAX as f64).then_some(milli as i64)
}

/// `GetResourceUtilizationRatio`: usage over requests of the pods that have
/// both, as (ratio to the target, utilization %, average usage).
fn utilization_ratio(
    samples: &BTreeMap<String, i64>,
    requests: &BTreeMap<String, i64>,
    target: i32,
) -> Result<(f64, i32, i64), String> {
    let (mut usage, mut requested, mut n) = (0i64, 0i64, 0i64);
    for (pod, v) in samples {
        if let Some(r) = requests.get(pod) {
            usage += v;
            requested += r;
            n += 1;
        }
    }
    if requested == 0 {
        return Err("no metrics returned matched known pods".into());
    }
    let utilization = i32::try_from(usage * 100 / requested).unwrap_or(i32::MAX);
    Ok((
        f64::from(utilization) / f64::from(target),
        utilization,
        usage / n,
    ))
}

/// `GetMetricUsageRatio`: the average over the samples, against the target.
fn average_ratio(samples: &BTreeMap<String, i64>, target: i64) -> (f64, i64) {
    let n = samples.len().max(1) as i64;
    let average = samples.values().sum::<i64>() / n;
    (average as f64 / target as f64, average)
}

/// What a resource metric targets: a percentage of the pods' requests, or
/// an average value per pod (milli units).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `target.type: Utilization`, `averageUtilization` percent.
    Utilization(i32),
    /// `target.type: AverageValue`, milli units per pod.
    AverageValue(i64),
}

/// Upstream's `GetResourceReplicas` and `GetRawResourceReplicas`: the
/// replicas that bring `resource` to `target`, for a target now at
/// `current` replicas. Errors are upstream's messages.
pub fn resource_replicas(
    current: i32,
    target: Target,
    resource: &str,
    pods: &[&SlimPod],
    samples: &Samples,
    now_ms: i64,
) -> Result<Proposal, String> {
    if samples.is_empty() {
        return Err(format!(
            "unable to get metrics for resource {resource}: no metrics returned from resource metrics API"
        ));
    }
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let groups = group_pods(pods, samples, resource, now_ms);
    let mut usage: BTreeMap<String, i64> = samples
        .iter()
        .filter(|(pod, _)| !groups.ignored.contains(*pod) && !groups.unready.contains(*pod))
        .map(|(pod, s)| (pod.clone(), s.value))
        .collect();
    if usage.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let requests = match target {
        Target::Utilization(_) => pod_requests(pods, resource)?,
        Target::AverageValue(_) => BTreeMap::new(),
    };
    let ratio_of = |usage: &BTreeMap<String, i64>| match target {
        Target::Utilization(t) => utilization_ratio(usage, &requests, t),
        Target::AverageValue(t) => {
            let (ratio, average) = average_ratio(usage, t);
            Ok((ratio, 0, average))
        }
    };
    let (ratio, utilization, average_milli) = ratio_of(&usage)?;
    let proposal = |replicas| Proposal {
        replicas,
        utilization: matches!(target, Target::Utilization(_)).then_some(utilization),
        average_milli,
    };
    let scale_up_with_unready = !groups.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && groups.missing.is_empty() {
        if (1.0 - ratio).abs() <= TOLERANCE {
            return Ok(proposal(current));
        }
        return Ok(proposal(ceil(ratio * groups.ready as f64)));
    }
    if ratio < 1.0 {
        // Scale-down: missing pods count as using their whole request (or
        // the target, if that is higher).
        for pod in &groups.missing {
            let fallback = match target {
                Target::Utilization(t) => {
                    requests.get(pod).copied().unwrap_or(0) * i64::from(t.max(100)) / 100
                }
                Target::AverageValue(t) => t,
            };
            usage.insert(pod.clone(), fallback);
        }
    } else if ratio > 1.0 {
        for pod in &groups.missing {
            usage.insert(pod.clone(), 0);
        }
    }
    if scale_up_with_unready {
        for pod in &groups.unready {
            usage.insert(pod.clone(), 0);
        }
    }
    let (new_ratio, _, _) = ratio_of(&usage)?;
    if (1.0 - new_ratio).abs() <= TOLERANCE
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        // Too small a change, or the direction flipped.
        return Ok(proposal(current));
    }
    let replicas = ceil(new_ratio * usage.len() as f64);
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(proposal(current));
    }
    Ok(proposal(replicas))
}

fn ceil(x: f64) -> i32 {
    let c = x.ceil();
    if c >= f64::from(i32::MAX) {
        i32::MAX
    } else {
        c as i32
    }
}
