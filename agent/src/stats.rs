//! Resource usage of the node, its pods and their containers, served at
//! `GET /stats/summary` in the shape of kubelet's Summary API
//! (`k8s.io/kubelet/pkg/apis/stats/v1alpha1`, the fields metrics-server
//! reads), for the API server's `metrics.k8s.io` (`kubectl top`).
//!
//! ```text
//!  /proc/stat, /proc/meminfo ──► node cpu, memory
//!  CRI ListContainerStats ─────► per container cpu (cumulative), working set
//!          └─ CpuRates: usageNanoCores = Δ usageCoreNanoSeconds / Δ time
//! ```
//!
//! CPU usage is cumulative in both sources; a rate needs two samples.
//! [`CpuRates`] keeps the previous sample of each container and of the
//! node; on the first request (or when the previous sample is stale) the
//! agent samples twice, [`FIRST_SAMPLE_WINDOW`] apart, so that `kubectl
//! top` works on its first call. containerd's own `usage_nano_cores` is
//! used when it sends one.
//!
//! Caveats: the node's working set is `MemTotal - MemAvailable` from
//! `/proc/meminfo` (kubelet: the root cgroup's usage minus inactive file
//! pages); pod totals are the sum of their containers (kubelet reads the
//! pod cgroup, which also counts the sandbox's pause process).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_cri::v1 as cri;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use crate::cri::{labels, Cri, CriError};

/// Time between the two samples taken when no earlier one is fresh.
pub const FIRST_SAMPLE_WINDOW: Duration = Duration::from_millis(250);
/// A previous sample older than this is not used for a rate (metrics-server
/// scrapes every 15 s; a minute-old delta would smooth too much).
const MAX_SAMPLE_AGE_NS: i64 = 60_000_000_000;
/// `/proc/stat` counts in USER_HZ ticks, 100 per second on Linux.
const NANOS_PER_TICK: u64 = 10_000_000;

/// A cumulative cpu reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuSample {
    /// When, in nanoseconds since the epoch.
    pub at_ns: i64,
    /// Cpu time used so far, in nanoseconds.
    pub usage_core_ns: u64,
}

/// Average use in nano-cores between two samples; `None` when they do not
/// make a valid interval (same time, counter went back after a restart).
pub fn rate(prev: CpuSample, cur: CpuSample) -> Option<u64> {
    let dt = cur.at_ns.checked_sub(prev.at_ns).filter(|d| *d > 0)?;
    let du = cur.usage_core_ns.checked_sub(prev.usage_core_ns)?;
    Some((u128::from(du) * 1_000_000_000 / dt as u128) as u64)
}

/// Busy cpu time of the whole node from `/proc/stat`'s `cpu` line, in
/// nanoseconds: every column but idle and iowait.
pub fn parse_proc_stat(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let cols: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|c| c.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let busy: u64 = cols
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    Some(busy * NANOS_PER_TICK)
}

/// `(MemTotal, MemAvailable)` in bytes from `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    Some((
        kib_field(text, "MemTotal:")?,
        kib_field(text, "MemAvailable:")?,
    ))
}

/// The value of a `Name:   1234 kB` line of a `/proc` file (`meminfo`,
/// `self/status`), in bytes.
pub(crate) fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

/// Previous cpu samples, by container id and for the node.
#[derive(Debug, Default)]
pub struct CpuRates {
    inner: Mutex<RatesInner>,
}

#[derive(Debug, Default)]
struct RatesInner {
    node: Option<CpuSample>,
    containers: HashMap<String, CpuSample>,
}

/// One running container's usage, from CRI stats.
pub(crate) struct ContainerUsage {
    pub(crate) namespace: String,
    pub(crate) pod: String,
    pub(crate) uid: String,
    pub(crate) name: String,
    cpu: CpuSample,
    nano_cores: Option<u64>,
    pub(crate) working_set: u64,
    /// Bytes of its writable layer.
    pub(crate) writable_layer: u64,
}

fn now_ns() -> i64 {
    Timestamp::now().as_nanosecond() as i64
}

fn read_node_cpu() -> Option<CpuSample> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    Some(CpuSample {
        at_ns: now_ns(),
        usage_core_ns: parse_proc_stat(&text)?,
    })
}

/// Every running container of this node's pods with its usage, by
/// container id.
pub(crate) async fn read_containers(
    cri: &dyn Cri,
    node: &str,
) -> Result<Vec<(String, ContainerUsage)>, CriError> {
    let running: std::collections::HashSet<String> = cri
        .list_containers(Some(cri::ContainerFilter {
            state: Some(cri::ContainerStateValue {
                state: cri::ContainerState::ContainerRunning as i32,
            }),
            label_selector: [(labels::SKIFF_NODE.to_string(), node.to_string())].into(),
            ..Default::default()
        }))
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect();
    let stats = cri
        .list_container_stats(Some(cri::ContainerStatsFilter {
            label_selector: [(labels::SKIFF_NODE.to_string(), node.to_string())].into(),
            ..Default::default()
        }))
        .await?;
    Ok(stats
        .into_iter()
        .filter_map(|s| {
            let attrs = s.attributes?;
            if !running.contains(&attrs.id) {
                return None;
            }
            let label = |k: &str| attrs.labels.get(k).cloned().unwrap_or_default();
            let cpu = s.cpu.unwrap_or_default();
            let memory = s.memory.unwrap_or_default();
            let usage = ContainerUsage {
                namespace: label(labels::POD_NAMESPACE),
                pod: label(labels::POD_NAME),
                uid: label(labels::POD_UID),
                name: label(labels::CONTAINER_NAME),
                cpu: CpuSample {
                    at_ns: if cpu.timestamp > 0 {
                        cpu.timestamp
                    } else {
                        now_ns()
                    },
                    usage_core_ns: cpu.usage_core_nano_seconds.map_or(0, |v| v.value),
                },
                nano_cores: cpu.usage_nano_cores.map(|v| v.value).filter(|v| *v > 0),
                working_set: memory.working_set_bytes.map_or(0, |v| v.value),
                writable_layer: s
                    .writable_layer
                    .as_ref()
                    .and_then(|w| w.used_bytes.as_ref())
                    .map_or(0, |v| v.value),
            };
            Some((attrs.id, usage))
        })
        .collect())
}

impl CpuRates {
    /// The summary: node and pods, with cpu rates.
    pub async fn summary(&self, cri: &dyn Cri, node: &str) -> Result<Value, CriError> {
        let (mut node_cpu, mut containers) = (read_node_cpu(), read_containers(cri, node).await?);
        let needs_second = {
            let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let fresh = |prev: Option<&CpuSample>, cur: &CpuSample| {
                prev.is_some_and(|p| cur.at_ns - p.at_ns < MAX_SAMPLE_AGE_NS && cur.at_ns > p.at_ns)
            };
            !node_cpu.is_some_and(|c| fresh(inner.node.as_ref(), &c))
                || containers.iter().any(|(id, c)| {
                    c.nano_cores.is_none() && !fresh(inner.containers.get(id), &c.cpu)
                })
        };
        if needs_second {
            self.remember(node_cpu, &containers);
            tokio::time::sleep(FIRST_SAMPLE_WINDOW).await;
            node_cpu = read_node_cpu();
            containers = read_containers(cri, node).await?;
        }
        let (node_rate, rates): (Option<u64>, HashMap<String, u64>) = {
            let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let node_rate = node_cpu.and_then(|c| inner.node.and_then(|p| rate(p, c)));
            let rates = containers
                .iter()
                .filter_map(|(id, c)| {
                    let r = c
                        .nano_cores
                        .or_else(|| inner.containers.get(id).and_then(|p| rate(*p, c.cpu)))?;
                    Some((id.clone(), r))
                })
                .collect();
            (node_rate, rates)
        };
        self.remember(node_cpu, &containers);
        Ok(render(node, node_cpu, node_rate, &containers, &rates))
    }

    /// Keeps these samples as the previous ones (only the containers seen
    /// now, so the map stays as small as the node's container count).
    fn remember(&self, node: Option<CpuSample>, containers: &[(String, ContainerUsage)]) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if node.is_some() {
            inner.node = node;
        }
        inner.containers = containers
            .iter()
            .map(|(id, c)| (id.clone(), c.cpu))
            .collect();
    }
}

fn rfc3339(ns: i64) -> String {
    Timestamp::from_nanosecond(i128::from(ns))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// A pod's containers and their sums.
#[derive(Default)]
struct PodTotals {
    containers: Vec<Value>,
    nano_cores: u64,
    working_set: u64,
}

/// The Summary JSON.
fn render(
    node: &str,
    node_cpu: Option<CpuSample>,
    node_rate: Option<u64>,
    containers: &[(String, ContainerUsage)],
    rates: &HashMap<String, u64>,
) -> Value {
    let now = now_ns();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| parse_meminfo(&t));
    let mut node_json = json!({"nodeName": node});
    if let (Some(c), Some(r)) = (node_cpu, node_rate) {
        node_json["cpu"] = json!({"time": rfc3339(c.at_ns), "usageNanoCores": r, "usageCoreNanoSeconds": c.usage_core_ns});
    }
    if let Some((total, available)) = mem {
        node_json["memory"] = json!({"time": rfc3339(now), "availableBytes": available,
            "workingSetBytes": total.saturating_sub(available)});
    }
    // Group containers by pod (namespace, name, uid), in a stable order.
    let mut pods: std::collections::BTreeMap<(&str, &str, &str), PodTotals> = Default::default();
    for (id, c) in containers {
        let Some(r) = rates.get(id) else { continue };
        let p = pods.entry((&c.namespace, &c.pod, &c.uid)).or_default();
        p.containers.push(json!({
            "name": c.name,
            "cpu": {"time": rfc3339(c.cpu.at_ns), "usageNanoCores": r, "usageCoreNanoSeconds": c.cpu.usage_core_ns},
            "memory": {"time": rfc3339(c.cpu.at_ns), "workingSetBytes": c.working_set},
        }));
        p.nano_cores += r;
        p.working_set += c.working_set;
    }
    let pods: Vec<Value> = pods
        .into_iter()
        .map(|((ns, name, uid), mut p)| {
            p.containers
                .sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            json!({
                "podRef": {"namespace": ns, "name": name, "uid": uid},
                "cpu": {"time": rfc3339(now), "usageNanoCores": p.nano_cores},
                "memory": {"time": rfc3339(now), "workingSetBytes": p.working_set},
                "containers": p.containers,
            })
        })
        .collect();
    json!({"node": node_json, "pods": pods})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        let a = CpuSample {
            at_ns: 1_000_000_000,
            usage_core_ns: 5_000_000_000,
        };
        let b = CpuSample {
            at_ns: 3_000_000_000,
            usage_core_ns: 6_000_000_000,
        };
        // 1 s of cpu in 2 s: half a core.
        assert_eq!(rate(a, b), Some(500_000_000));
        assert_eq!(rate(b, a), None);
        assert_eq!(rate(a, a), None);
    }

    #[test]
    fn parses_proc_files() {
        let stat = "cpu  100 5 50 1000 20 1 2 3 0 0\ncpu0 1 2 3 4\n";
        // user+nice+system+irq+softirq+steal = 161 ticks.
        assert_eq!(parse_proc_stat(stat), Some(161 * NANOS_PER_TICK));
        let mem = "MemTotal:       2048 kB\nMemFree:  10 kB\nMemAvailable:   1024 kB\n";
        assert_eq!(parse_meminfo(mem), Some((2048 * 1024, 1024 * 1024)));
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    }
}
