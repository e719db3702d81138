//! Prometheus metrics of the agent, served at `GET /metrics` on its HTTPS
//! endpoint (and through the API server as
//! `/api/v1/nodes/<node>/proxy/metrics`), in the text exposition format.
//!
//! Kubelet's names are used where Skiff measures the same thing:
//!
//! | metric | source |
//! | --- | --- |
//! | `kubelet_runtime_operations_total{operation_type}` | every CRI call ([`crate::cri::timing`]) |
//! | `kubelet_runtime_operations_errors_total{operation_type}` | CRI calls that failed |
//! | `kubelet_runtime_operations_duration_seconds{operation_type}` | histogram of their latency |
//! | `kubelet_evictions{eviction_signal}` | pods evicted under node pressure |
//! | `kubelet_image_garbage_collected_total` | images removed by image GC |
//! | `kubelet_running_pods`, `kubelet_running_containers{container_state}` | CRI, at scrape time |
//! | `process_resident_memory_bytes`, `process_cpu_seconds_total` | `/proc/self` |
//!
//! The counters are process-wide (one agent per process; the hollow
//! nodes of `--simulate` make no CRI calls).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::cri::{container_state, sandbox_state, Cri};

/// Upper bounds of the latency histogram, in seconds (kubelet's are
/// exponential from 5 ms too).
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Default, Clone)]
struct Operation {
    count: u64,
    errors: u64,
    sum_seconds: f64,
    buckets: [u64; BUCKETS.len()],
}

/// The agent's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    operations: Mutex<BTreeMap<String, Operation>>,
    evictions: Mutex<BTreeMap<String, u64>>,
    images_collected: AtomicU64,
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

impl Metrics {
    /// Records one CRI call.
    pub fn runtime_operation(&self, method: &str, took: Duration, ok: bool) {
        let mut ops = self.operations.lock().unwrap_or_else(|e| e.into_inner());
        let op = ops.entry(operation_type(method)).or_default();
        let secs = took.as_secs_f64();
        op.count += 1;
        op.errors += u64::from(!ok);
        op.sum_seconds += secs;
        for (bucket, bound) in op.buckets.iter_mut().zip(BUCKETS) {
            if secs <= bound {
                *bucket += 1;
            }
        }
    }

    /// Records an eviction for `signal` (e.g. `memory.available`).
    pub fn eviction(&self, signal: &str) {
        *self
            .evictions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(signal.to_string())
            .or_default() += 1;
    }

    /// Records removed images.
    pub fn images_collected(&self, n: usize) {
        self.images_collected.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The counters in the text format (without the CRI gauges).
    pub fn render(&self, out: &mut String) {
        let ops = self
            .operations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        header(
            out,
            "kubelet_runtime_operations_total",
            "counter",
            "Cumulative number of runtime operations by operation type.",
        );
        for (ty, op) in &ops {
            let _ = writeln!(
                out,
                "kubelet_runtime_operations_total{{operation_type=\"{ty}\"}} {}",
                op.count
            );
        }
        header(
            out,
            "kubelet_runtime_operations_errors_total",
            "counter",
            "Cumulative number of runtime operation errors by operation type.",
        );
        for (ty, op) in &ops {
            let _ = writeln!(
                out,
                "kubelet_runtime_operations_errors_total{{operation_type=\"{ty}\"}} {}",
                op.errors
            );
        }
        header(
            out,
            "kubelet_runtime_operations_duration_seconds",
            "histogram",
            "Duration in seconds of runtime operations, by operation type.",
        );
        for (ty, op) in &ops {
            for (bound, n) in BUCKETS.iter().zip(op.buckets) {
                let _ = writeln!(out, "kubelet_runtime_operations_duration_seconds_bucket{{operation_type=\"{ty}\",le=\"{bound}\"}} {n}");
            }
            let _ = writeln!(out, "kubelet_runtime_operations_duration_seconds_bucket{{operation_type=\"{ty}\",le=\"+Inf\"}} {}", op.count);
            let _ = writeln!(
                out,
                "kubelet_runtime_operations_duration_seconds_sum{{operation_type=\"{ty}\"}} {}",
                op.sum_seconds
            );
            let _ = writeln!(
                out,
                "kubelet_runtime_operations_duration_seconds_count{{operation_type=\"{ty}\"}} {}",
                op.count
            );
        }
        header(
            out,
            "kubelet_evictions",
            "counter",
            "Cumulative number of pod evictions by eviction signal.",
        );
        for (signal, n) in self
            .evictions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(out, "kubelet_evictions{{eviction_signal=\"{signal}\"}} {n}");
        }
        header(
            out,
            "kubelet_image_garbage_collected_total",
            "counter",
            "Total number of images garbage collected.",
        );
        let _ = writeln!(
            out,
            "kubelet_image_garbage_collected_total {}",
            self.images_collected.load(Ordering::Relaxed)
        );
        process_metrics(out);
    }
}

/// kubelet's operation type for a CRI method: `RunPodSandbox` →
/// `run_podsandbox`, `ListContainers` → `list_containers`.
fn operation_type(method: &str) -> String {
    let mut out = String::new();
    for (i, ch) in method
        .replace("PodSandbox", "Podsandbox")
        .chars()
        .enumerate()
    {
        if ch.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// `process_resident_memory_bytes` and `process_cpu_seconds_total`.
fn process_metrics(out: &mut String) {
    if let Some(rss) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| crate::stats::kib_field(&t, "VmRSS:"))
    {
        header(
            out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        );
        let _ = writeln!(out, "process_resident_memory_bytes {rss}");
    }
    // Fields 14 and 15 of /proc/self/stat (utime, stime) in clock ticks
    // (100 per second), counted after the command's closing parenthesis.
    if let Some(ticks) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|t| {
            let rest = &t[t.rfind(')')? + 1..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
    {
        header(
            out,
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
        );
        let _ = writeln!(out, "process_cpu_seconds_total {}", ticks as f64 / 100.0);
    }
}

/// The whole page: counters plus the pods and containers CRI has now.
pub async fn render_all(cri: &dyn Cri, node: &str) -> String {
    let mut out = String::new();
    global().render(&mut out);
    let label = [(crate::cri::labels::SKIFF_NODE.to_string(), node.to_string())];
    let filter = k8s_cri::v1::PodSandboxFilter {
        label_selector: label.clone().into(),
        ..Default::default()
    };
    if let Ok(sandboxes) = cri.list_pod_sandbox(Some(filter)).await {
        let ready = sandboxes
            .iter()
            .filter(|s| sandbox_state(s.state) == k8s_cri::v1::PodSandboxState::SandboxReady)
            .count();
        header(
            &mut out,
            "kubelet_running_pods",
            "gauge",
            "Number of pods that have a running pod sandbox.",
        );
        let _ = writeln!(out, "kubelet_running_pods {ready}");
    }
    let filter = k8s_cri::v1::ContainerFilter {
        label_selector: label.into(),
        ..Default::default()
    };
    if let Ok(containers) = cri.list_containers(Some(filter)).await {
        let mut by_state: BTreeMap<&str, u64> = BTreeMap::new();
        for c in &containers {
            let state = match container_state(c.state) {
                k8s_cri::v1::ContainerState::ContainerCreated => "created",
                k8s_cri::v1::ContainerState::ContainerRunning => "running",
                k8s_cri::v1::ContainerState::ContainerExited => "exited",
                k8s_cri::v1::ContainerState::ContainerUnknown => "unknown",
            };
            *by_state.entry(state).or_default() += 1;
        }
        header(
            &mut out,
            "kubelet_running_containers",
            "gauge",
            "Number of containers currently running.",
        );
        for (state, n) in by_state {
            let _ = writeln!(
                out,
                "kubelet_running_containers{{container_state=\"{state}\"}} {n}"
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_types_and_rendering() {
        assert_eq!(operation_type("RunPodSandbox"), "run_podsandbox");
        assert_eq!(operation_type("ListContainers"), "list_containers");
        assert_eq!(operation_type("ExecSync"), "exec_sync");
        let m = Metrics::default();
        m.runtime_operation("CreateContainer", Duration::from_millis(30), true);
        m.runtime_operation("CreateContainer", Duration::from_secs(2), false);
        m.eviction("memory.available");
        m.images_collected(2);
        let mut out = String::new();
        m.render(&mut out);
        for line in [
            "kubelet_runtime_operations_total{operation_type=\"create_container\"} 2",
            "kubelet_runtime_operations_errors_total{operation_type=\"create_container\"} 1",
            "kubelet_runtime_operations_duration_seconds_bucket{operation_type=\"create_container\",le=\"0.05\"} 1",
            "kubelet_runtime_operations_duration_seconds_bucket{operation_type=\"create_container\",le=\"2.5\"} 2",
            "kubelet_runtime_operations_duration_seconds_bucket{operation_type=\"create_container\",le=\"+Inf\"} 2",
            "kubelet_evictions{eviction_signal=\"memory.available\"} 1",
            "kubelet_image_garbage_collected_total 2",
            "# TYPE kubelet_runtime_operations_duration_seconds histogram",
        ] {
            assert!(out.contains(line), "missing {line} in\n{out}");
        }
        assert!(out.contains("process_resident_memory_bytes "));
    }
}
