//! The eviction manager's loop: every [`MONITOR_PERIOD`] it observes the
//! node ([`eviction`](super::eviction) has the rules), publishes the
//! pressure conditions for the node status, and once a threshold is due
//! (hard at once, soft after its grace period) asks the pod manager to
//! evict the first pod of the ranking, one per period (kubelet evicts one
//! pod per pass and then re-observes).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::Api;
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::eviction::{
    eviction_grace_seconds, eviction_message, met, rank, Candidate, ContainerUse, GracePeriods,
    Met, Observations, Pressure, PressureState, Signal, Threshold,
};
use crate::cri::Cri;
use crate::pod::config::{pod_log_dir, PodRef};
use crate::pod::resources::parse_value;

/// How often the node is observed (kubelet's eviction monitoring interval).
pub const MONITOR_PERIOD: Duration = Duration::from_secs(10);

/// A request to the pod manager: stop this pod and mark it evicted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Eviction {
    /// Pod UID.
    pub uid: String,
    /// Its status message.
    pub message: String,
    /// The grace period its containers are killed with
    /// ([`eviction_grace_seconds`]).
    pub grace_period_seconds: i64,
}

/// What the loop needs.
#[derive(Clone, Debug)]
pub struct EvictionParams {
    /// This node.
    pub node_name: String,
    /// The agent's data dir: its file system is `nodefs`.
    pub data_dir: PathBuf,
    /// Hard and soft thresholds (`--eviction-hard`, `--eviction-soft`).
    pub thresholds: Vec<Threshold>,
    /// `--eviction-max-pod-grace-period`, in seconds.
    pub max_pod_grace_period_seconds: i64,
    /// How long a pressure condition outlives its threshold.
    pub transition: Duration,
}

/// Reads `/proc/meminfo` and `statvfs(data_dir)`.
fn observe(data_dir: &Path) -> Observations {
    let (memory_capacity, memory_available) = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| crate::stats::parse_meminfo(&t))
        .unwrap_or((0, u64::MAX));
    let (nodefs_capacity, nodefs_available) = nix::sys::statvfs::statvfs(data_dir)
        .map(|s| {
            let frag = s.fragment_size();
            (
                s.blocks().saturating_mul(frag),
                s.blocks_available().saturating_mul(frag),
            )
        })
        .unwrap_or((0, u64::MAX));
    Observations {
        memory_capacity,
        memory_available,
        nodefs_capacity,
        nodefs_available,
    }
}

/// Bytes of the files under `dir` (not following symlinks).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// A container's request of `resource` in bytes (0 when unset or unreadable).
fn request_bytes(c: &k8s_openapi::api::core::v1::Container, resource: &str) -> u64 {
    c.resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get(resource))
        .and_then(|q| parse_value(&q.0).ok())
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(0)
}

/// The node's live pods as candidates for `signal`, with their usage.
async fn candidates(
    client: &kube::Client,
    cri: &dyn Cri,
    params: &EvictionParams,
    signal: Signal,
) -> Result<Vec<Candidate>, String> {
    let pods: Api<Pod> = Api::all(client.clone());
    let list = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={}", params.node_name)))
        .await
        .map_err(|e| format!("listing the node's pods: {e}"))?;
    let usage = crate::stats::read_containers(cri, &params.node_name)
        .await
        .map_err(|e| format!("reading container stats: {e}"))?;
    let mut by_container: HashMap<(String, String), u64> = HashMap::new();
    for (_, u) in usage {
        let bytes = match signal {
            Signal::MemoryAvailable => u.working_set,
            Signal::NodefsAvailable => u.writable_layer,
        };
        *by_container.entry((u.uid, u.name)).or_default() += bytes;
    }
    let resource = signal.resource();
    Ok(list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !crate::pod::plan::is_terminal_phase(p))
        .filter_map(|p| {
            let r = PodRef::of(p)?;
            let spec = p.spec.as_ref()?;
            let containers = spec
                .containers
                .iter()
                .map(|c| ContainerUse {
                    name: c.name.clone(),
                    usage: by_container
                        .get(&(r.uid.clone(), c.name.clone()))
                        .copied()
                        .unwrap_or(0),
                    request: request_bytes(c, resource),
                })
                .collect();
            let extra_usage = match signal {
                Signal::MemoryAvailable => 0,
                Signal::NodefsAvailable => {
                    dir_bytes(&pod_log_dir(&params.data_dir, &r))
                        + dir_bytes(&crate::pod::volumes::pod_dir(&params.data_dir, &r.uid))
                }
            };
            Some(Candidate {
                uid: r.uid,
                namespace: r.namespace,
                name: r.name,
                priority: spec.priority.unwrap_or(0),
                grace_period_seconds: spec.termination_grace_period_seconds,
                containers,
                extra_usage,
            })
        })
        .collect())
}

/// One pass: which pod to evict for `m`, if any; skips pods already asked.
async fn pick(
    client: &kube::Client,
    cri: &dyn Cri,
    params: &EvictionParams,
    m: &Met,
    asked: &HashSet<String>,
) -> Result<Option<Eviction>, String> {
    let all = candidates(client, cri, params, m.signal).await?;
    let ranked = rank(&all);
    Ok(ranked
        .into_iter()
        .find(|c| !asked.contains(&c.uid))
        .map(|c| Eviction {
            uid: c.uid.clone(),
            message: eviction_message(m, c),
            grace_period_seconds: eviction_grace_seconds(
                m,
                c.grace_period_seconds,
                params.max_pod_grace_period_seconds,
            ),
        }))
}

/// Runs until dropped: observes, publishes pressure, evicts.
pub async fn eviction_loop(
    client: kube::Client,
    cri: Arc<dyn Cri>,
    params: EvictionParams,
    pressure_tx: watch::Sender<PressureState>,
    evictions: mpsc::Sender<Eviction>,
) {
    let mut pressure = Pressure::new(params.transition);
    let mut grace_periods = GracePeriods::default();
    // Pods already sent to the pod manager (their worker stops them).
    let mut asked: HashSet<String> = HashSet::new();
    let mut tick = tokio::time::interval(MONITOR_PERIOD);
    loop {
        tick.tick().await;
        let obs = observe(&params.data_dir);
        let met_now = met(&params.thresholds, &obs);
        let now = Instant::now();
        let state = pressure.observe(&met_now, now);
        pressure_tx.send_if_modified(|s| std::mem::replace(s, state) != state);
        if met_now.is_empty() {
            asked.clear();
        }
        let due = grace_periods.due(&met_now, now);
        let Some(first) = due.first() else {
            if !met_now.is_empty() {
                debug!(met = ?met_now, "soft eviction threshold met, within its grace period");
            }
            continue;
        };
        debug!(?first, "eviction threshold met");
        match pick(&client, cri.as_ref(), &params, first, &asked).await {
            Ok(Some(e)) => {
                warn!(uid = %e.uid, message = %e.message, "evicting pod");
                crate::metrics::global().eviction(first.signal.name());
                asked.insert(e.uid.clone());
                if evictions.send(e).await.is_err() {
                    return;
                }
            }
            Ok(None) => debug!("under pressure, but no pod left to evict"),
            Err(e) => warn!("eviction: {e}"),
        }
    }
}
