//! The prober: runs a pod's due probes from its worker's sync and keeps
//! their trackers (kubelet's `prober_manager.go` runs one goroutine per
//! probe; here the pod's worker runs them, concurrently, every sync).
//! The verdicts feed the pure planner (kill on liveness/startup failure)
//! and the status (`started`, `ready`).

use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use tracing::debug;

use super::observed::{ObservedPod, RunState};
use super::probe::{probe_of, run_probe, ContainerProbes, ProbeResults};
use super::worker::{Memory, WorkerContext};

/// Runs the probes that are due (all at once), and returns every running
/// container's verdict. Trackers of attempts no longer running are dropped.
pub(super) async fn run_probes(
    ctx: &WorkerContext,
    pod: &Pod,
    observed: &ObservedPod,
    pod_ip: &str,
    mem: &mut Memory,
) -> ProbeResults {
    let now = Instant::now();
    let sandbox = observed.sandbox().map(|s| s.id.as_str());
    let running: Vec<_> = observed
        .containers
        .iter()
        .filter(|c| c.state == RunState::Running && Some(c.sandbox_id.as_str()) == sandbox)
        .collect();
    mem.probes
        .retain(|id, _| running.iter().any(|c| &c.id == id));
    let mut jobs = vec![];
    for c in &running {
        let Some(spec) = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .find(|s| s.name == c.name)
        else {
            continue;
        };
        let entry = mem
            .probes
            .entry(c.id.clone())
            .or_insert_with(|| ContainerProbes::new(spec, now));
        for kind in entry.due(now) {
            let (Some(p), Some(t)) = (probe_of(spec, kind), entry.trackers.get(&kind)) else {
                continue;
            };
            let timeout = t.timeout();
            let id = c.id.clone();
            jobs.push(async move {
                let result = run_probe(ctx.cri.as_ref(), &id, spec, pod_ip, p, timeout).await;
                (id, kind, result)
            });
        }
    }
    for (id, kind, result) in futures::future::join_all(jobs).await {
        if let Err(e) = &result {
            debug!(container = %id, kind = kind.as_str(), "probe failed: {e}");
        }
        if let Some(t) = mem
            .probes
            .get_mut(&id)
            .and_then(|p| p.trackers.get_mut(&kind))
        {
            t.record(result, now);
        }
    }
    running
        .iter()
        .filter_map(|c| {
            mem.probes
                .get(&c.id)
                .filter(|p| !p.trackers.is_empty())
                .map(|p| (c.id.clone(), p.verdict(&c.name)))
        })
        .collect()
}
