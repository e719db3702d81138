//! One task per pod: drives the pod's [`PodLifecycle`] with the pure
//! [`next_actions`] and [`compute_status`], doing the I/O they ask for.
//!
//! ```text
//!   updates (watch) ──► lifecycle ──Syncing──► observe CRI → next_actions → run
//!                                  │                       → compute_status → patch if changed
//!                                  │                         (in its own task: never waited on)
//!                                  └Terminating─► teardown → final DELETE (grace 0) → Terminated
//! ```
//!
//! A new pod's first start waits for one of [`WorkerContext::pod_starts`]'
//! permits (fair, so pods start in arrival order) and holds it until a sync
//! leaves nothing more to do at once. While a sync makes progress without
//! errors the status is written by the next one, which follows at once, so
//! a pod's start costs one status write.
//!
//! Without the API server (an edge node's uplink down, or silent) pods keep
//! running, restarting and being probed: status writes are not waited on,
//! other requests give up after [`API_REQUEST_TIMEOUT`], and the newest
//! status is sent once a write gets through again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::Api;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::backoff::BackOff;
use super::config::{pod_log_dir, sandbox_config, PodRef};
use super::env::{referenced_objects, EnvSources};
use super::lifecycle::{LifecycleEvent, PodLifecycle};
use super::observed::{observe, ObserveCache, ObservedPod, RunState};
use super::plan::{next_actions, Action, BackOffReason, PlanInput, SANDBOX_BACKOFF_KEY};
use super::pleg::PodEvents;
use super::probe::{ContainerProbes, ProbeResults};
use super::prober::run_probes;
use super::sources::{node_allocatable, SourceCache};
use super::start::{find_container, kill_container, pod_ip, start_container, StartInput};
use super::status::{compute_status, StatusInput, Waiting};
use super::teardown::teardown_pod;
use super::volumes;
use crate::cri::Cri;

/// How often a pod that has something time-based to do (probes, a
/// back-off, a waiting reason, a status write to check) is synced; also the
/// polling period of a worker without [`WorkerContext::pod_events`].
pub const SYNC_PERIOD: Duration = Duration::from_secs(1);

/// How often a pod with nothing time-based to do is synced when neither its
/// object nor its CRI state changed (the [`super::pleg`] relist wakes it on
/// the latter). Kubelet's `syncFrequency` is 1 min; 10 s keeps ConfigMap and
/// Secret volumes close to [`super::sources::RESYNC_PERIOD`]: an update
/// reaches a steady pod's volume within two resyncs (20 s).
pub const RESYNC_PERIOD: Duration = Duration::from_secs(10);

/// Pause after a failed step before trying again.
const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// Default `terminationGracePeriodSeconds` (Kubernetes API default).
pub const DEFAULT_GRACE_PERIOD_SECONDS: i64 = 30;

/// What the manager tells a worker: the newest pod object, and whether it
/// vanished from the API.
#[derive(Clone, Debug)]
pub struct PodUpdate {
    /// Newest known pod object.
    pub pod: Arc<Pod>,
    /// The object is gone from the API server.
    pub removed: bool,
    /// The eviction manager evicted the pod (with this status message and
    /// kill grace period): it is stopped and reported `Failed` with reason
    /// `Evicted`.
    pub eviction: Option<Arc<crate::node::evict::Eviction>>,
}

/// How long one API request of a pod worker may take, answer included.
/// The agent's client has no read timeout (its watches stay open for
/// minutes), so over an uplink that went silent (requests neither answered
/// nor refused) a request hangs until TCP gives up, minutes later. A
/// status write awaited in the sync stalled the pod's restarts and probes
/// that way (found by `tests/tests/agent_resilience.rs`); status writes now
/// run apart, but a ConfigMap read is still awaited, and a write in flight
/// holds up the next. Bounded, they fail like any other request.
pub const API_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What every worker shares.
#[derive(Clone)]
pub struct WorkerContext {
    /// The runtime.
    pub cri: Arc<dyn Cri>,
    /// API client.
    pub client: kube::Client,
    /// Agent data dir (pod logs live under `<data_dir>/pods`).
    pub data_dir: PathBuf,
    /// The node's IP for `hostIP`.
    pub host_ip: String,
    /// This node's name (labels every sandbox and container).
    pub node_name: String,
    /// The node-local cluster DNS pods with `dnsPolicy: ClusterFirst` use
    /// (`None`: the host's resolv.conf).
    pub cluster_dns: Option<super::dns::ClusterDns>,
    /// Permits for a pod's first start ([`crate::AgentConfig::max_parallel_pod_starts`]);
    /// tokio's semaphore is fair, so pods start in the order they arrived.
    pub pod_starts: Arc<Semaphore>,
    /// The node's relist ([`super::pleg`]), which wakes a worker when its
    /// pod's CRI state changes; `None`: every worker polls CRI each
    /// [`SYNC_PERIOD`].
    pub pod_events: Option<Arc<PodEvents>>,
}

impl WorkerContext {
    /// The same context whose API client gives up on a request after
    /// `timeout` ([`API_REQUEST_TIMEOUT`]), for the workers: their
    /// requests are single objects, never watches.
    pub fn with_request_timeout(&self, timeout: Duration) -> WorkerContext {
        WorkerContext {
            client: bounded_client(self.client.clone(), timeout),
            ..self.clone()
        }
    }
}

/// A request that got no whole answer in time.
#[derive(Debug, thiserror::Error)]
#[error("no answer from the API server within {0:?}")]
pub struct RequestTimeout(pub Duration);

/// `client`, with each request and the whole of its answer bounded by
/// `timeout`. The answer is read into memory, so this is not for watches.
fn bounded_client(client: kube::Client, timeout: Duration) -> kube::Client {
    use http_body_util::BodyExt;
    let namespace = client.default_namespace().to_string();
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let client = client.clone();
        async move {
            let answer = async {
                let (parts, body) = client.send(request).await?.into_parts();
                let bytes = body.collect().await?.to_bytes();
                Ok::<_, tower::BoxError>(http::Response::from_parts(
                    parts,
                    http_body_util::Full::new(bytes),
                ))
            };
            match tokio::time::timeout(timeout, answer).await {
                Ok(r) => r,
                Err(_) => Err(RequestTimeout(timeout).into()),
            }
        }
    });
    kube::Client::new(service, namespace)
}

/// The worker's memory between syncs: back-offs, waiting reasons, and the
/// last status it sent. Lost on agent restart (kubelet's is too); what
/// matters is rebuilt from CRI labels.
#[derive(Default)]
pub(super) struct Memory {
    pub(super) restart_backoff: BackOff,
    pub(super) pull_backoff: BackOff,
    pub(super) waiting: HashMap<String, Waiting>,
    /// The status last sent (the base of the next one).
    pub(super) last_status: Option<PodStatus>,
    pub(super) cache: ObserveCache,
    /// Probe trackers per running container id.
    pub(super) probes: HashMap<String, ContainerProbes>,
    /// Why the agent killed a container attempt, by container id.
    pub(super) kill_messages: HashMap<String, String>,
    /// ConfigMaps and Secrets the pod reads.
    pub(super) sources: SourceCache,
    /// Projected volume payloads last written.
    pub(super) volumes: volumes::Written,
    /// The eviction message, once the pod was evicted.
    pub(super) eviction: Option<Arc<crate::node::evict::Eviction>>,
    /// The status write in flight, if any ([`write_status`]).
    pub(super) status_write: Option<JoinHandle<Result<(), kube::Error>>>,
    /// The last status write failed: `last_status` is sent again even if
    /// nothing changed.
    pub(super) status_unsent: bool,
}

impl Memory {
    /// Whether the pod must be synced every [`SYNC_PERIOD`] even when
    /// nothing wakes it: something in it waits on time (a probe's period,
    /// a back-off, a waiting reason to clear, a status write to check).
    fn needs_polling(&self, pod: &Pod) -> bool {
        !self.waiting.is_empty()
            || self.status_unsent
            || self.status_write.is_some()
            || self.eviction.is_some()
            || all_containers(pod).any(|c| {
                c.liveness_probe.is_some()
                    || c.readiness_probe.is_some()
                    || c.startup_probe.is_some()
            })
    }

    /// The probe verdicts of the containers being probed.
    fn probes_view(&self) -> ProbeResults {
        self.probes
            .iter()
            .filter(|(_, p)| !p.trackers.is_empty())
            .map(|(id, p)| (id.clone(), p.verdict("")))
            .collect()
    }
}

/// The grace period for a pod's kill: the deletion's, else the spec's.
pub fn grace_period(pod: &Pod) -> i64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(DEFAULT_GRACE_PERIOD_SECONDS)
}

/// Runs one pod until it is terminated, or until the manager goes away
/// (agent shutdown: the pod keeps running, as with kubelet).
pub async fn run_pod_worker(ctx: Arc<WorkerContext>, mut updates: watch::Receiver<PodUpdate>) {
    let mut lifecycle = PodLifecycle::Syncing;
    let mut mem = Memory::default();
    // The pod's first start holds a permit from its first sync until a sync
    // leaves nothing more to do at once (containers running, or waiting on
    // a back-off or an error). Restarts later need none.
    let mut first_start = true;
    let mut start_permit: Option<OwnedSemaphorePermit> = None;
    // Woken by the relist when the pod's CRI state changes.
    let mut relisted: Option<Subscription> = None;
    loop {
        let update = updates.borrow_and_update().clone();
        let pod = update.pod.as_ref();
        let Some(pod_ref) = PodRef::of(pod) else {
            return;
        };
        if relisted.is_none() {
            relisted = ctx.pod_events.as_ref().map(|events| Subscription {
                wake: events.subscribe(&pod_ref.uid),
                events: events.clone(),
                uid: pod_ref.uid.clone(),
            });
        }
        let event = if update.removed {
            Some(LifecycleEvent::Removed {
                grace_period_seconds: grace_period(pod),
            })
        } else if pod.metadata.deletion_timestamp.is_some() {
            Some(LifecycleEvent::DeletionRequested {
                grace_period_seconds: grace_period(pod),
            })
        } else {
            None
        };
        if let Some(event) = event {
            match lifecycle.on(event) {
                Ok(next) => {
                    if next != lifecycle {
                        info!(pod = %pod_ref.name, ns = %pod_ref.namespace, ?next, "pod lifecycle");
                    }
                    lifecycle = next;
                }
                Err(e) => warn!("{e}"),
            }
        }
        let wait = match lifecycle {
            PodLifecycle::Syncing => {
                if first_start && start_permit.is_none() {
                    // Wait for a turn, but heed updates (a deletion) meanwhile.
                    tokio::select! {
                        permit = ctx.pod_starts.clone().acquire_owned() => start_permit = permit.ok(),
                        changed = updates.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            continue;
                        }
                    }
                }
                if mem.eviction.is_none() && update.eviction.is_some() {
                    info!(pod = %pod_ref.name, ns = %pod_ref.namespace, "pod evicted");
                    mem.eviction = update.eviction.clone();
                }
                // An evicted pod is synced as the Failed pod it is about to
                // be: its sandbox stops and it is never restarted.
                let evicted;
                let pod = match &mem.eviction {
                    Some(e) if !super::plan::is_terminal_phase(pod) => {
                        evicted = as_failed(pod, e.grace_period_seconds);
                        &evicted
                    }
                    _ => pod,
                };
                let result = sync_pod(&ctx, pod, &pod_ref, &mut mem).await;
                if !matches!(result, Ok(true)) {
                    first_start = false;
                    start_permit = None;
                }
                match result {
                    Ok(true) => Duration::ZERO,
                    Ok(false) if relisted.is_some() && !mem.needs_polling(pod) => RESYNC_PERIOD,
                    Ok(false) => SYNC_PERIOD,
                    Err(e) => {
                        warn!(pod = %pod_ref.name, ns = %pod_ref.namespace, "sync failed: {e}");
                        RETRY_PERIOD
                    }
                }
            }
            PodLifecycle::Terminating {
                grace_period_seconds,
                delete_from_api,
            } => {
                start_permit = None;
                finish_status_write(&mut mem).await;
                match terminate(&ctx, pod, &pod_ref, grace_period_seconds, delete_from_api).await {
                    Ok(()) => {
                        info!(pod = %pod_ref.name, ns = %pod_ref.namespace, "pod terminated");
                        match lifecycle.on(LifecycleEvent::TeardownComplete) {
                            Ok(next) => lifecycle = next,
                            Err(e) => warn!("{e}"),
                        }
                        // Go round once more: the Terminated state ends the worker.
                        Duration::ZERO
                    }
                    Err(e) => {
                        warn!(pod = %pod_ref.name, ns = %pod_ref.namespace, "teardown failed: {e}");
                        RETRY_PERIOD
                    }
                }
            }
            PodLifecycle::Terminated => return,
        };
        if wait.is_zero() {
            continue;
        }
        tokio::select! {
            changed = updates.changed() => {
                if changed.is_err() {
                    // The manager is gone: agent shutdown. Leave the pod running.
                    return;
                }
            }
            _ = tokio::time::sleep(wait) => {}
            _ = async {
                match &relisted {
                    Some(s) => s.wake.notified().await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

/// A worker's subscription to its pod's relist events, dropped (and so
/// unsubscribed) when the worker ends.
struct Subscription {
    wake: Arc<tokio::sync::Notify>,
    events: Arc<PodEvents>,
    uid: String,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.events.unsubscribe(&self.uid, &self.wake);
    }
}

/// Errors inside one sync; the worker logs them and retries.
#[derive(Debug, thiserror::Error)]
pub(super) enum SyncError {
    #[error(transparent)]
    Volume(#[from] super::volumes::VolumeError),
    #[error(transparent)]
    Cri(#[from] crate::cri::CriError),
    #[error("API request: {0}")]
    Api(#[from] kube::Error),
    #[error("creating log directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("encoding pod status: {0}")]
    Json(#[from] serde_json::Error),
}

/// One round: observe, read sources and set up volumes, probe, act, write
/// status. Returns whether it changed something in CRI (then the worker
/// goes again at once).
async fn sync_pod(
    ctx: &WorkerContext,
    pod: &Pod,
    r: &PodRef,
    mem: &mut Memory,
) -> Result<bool, SyncError> {
    let mut observed = observe(ctx.cri.as_ref(), &r.uid, &mut mem.cache).await?;
    let (node_cpu_milli, node_memory_bytes) = node_allocatable();
    let mut sources = EnvSources {
        pod_ip: pod_ip(ctx, pod, &observed),
        host_ip: ctx.host_ip.clone(),
        node_cpu_milli,
        node_memory_bytes,
        ..Default::default()
    };
    mem.sources
        .load(
            &ctx.client,
            &r.namespace,
            &referenced_objects(pod),
            &mut sources,
        )
        .await?;
    let pod_dir = volumes::pod_dir(&ctx.data_dir, &r.uid);
    // Volumes first (kubelet waits for them before the sandbox); a missing
    // source keeps a new pod in ContainerCreating, as `FailedMount` does.
    if !super::plan::is_terminal_phase(pod) {
        match volumes::setup(&pod_dir, pod, &sources, &mut mem.volumes) {
            Ok(changed) => {
                if !changed.is_empty() {
                    debug!(pod = %r.name, ?changed, "volumes updated");
                }
            }
            Err(e @ volumes::VolumeError::Source { .. }) if observed.sandboxes.is_empty() => {
                let message = e.to_string();
                for c in all_containers(pod) {
                    set_waiting(mem, &c.name, "ContainerCreating", message.clone());
                }
                write_status(ctx, pod, r, &observed, mem).await?;
                return Ok(false);
            }
            Err(e) => warn!(pod = %r.name, "volumes: {e}"),
        }
    }
    mem.kill_messages
        .retain(|id, _| observed.containers.iter().any(|c| &c.id == id));
    let probes = run_probes(ctx, pod, &observed, &sources.pod_ip, mem).await;
    let actions = next_actions(&PlanInput {
        pod,
        observed: &observed,
        restart_backoff: &mem.restart_backoff,
        pull_backoff: &mem.pull_backoff,
        probes: &probes,
        now: Instant::now(),
    });
    let mut changed = false;
    let start = StartInput {
        ctx,
        pod,
        r,
        observed: &observed,
        sources: &sources,
        pod_dir: &pod_dir,
        grace_seconds: grace_period(pod),
    };
    for action in actions {
        debug!(pod = %r.name, ?action, "action");
        changed |= run_action(&start, mem, action).await?;
    }
    if changed && mem.waiting.is_empty() {
        // Progress without trouble (a sandbox made, containers started): the
        // next sync follows at once and writes the status then, so a new pod
        // gets one write (Running) instead of one per step. A waiting reason
        // (an error) is written now, so that it is seen (ErrImagePull).
        return Ok(true);
    }
    if changed {
        observed = observe(ctx.cri.as_ref(), &r.uid, &mut mem.cache).await?;
    }
    write_status(ctx, pod, r, &observed, mem).await?;
    Ok(changed)
}

fn all_containers(pod: &Pod) -> impl Iterator<Item = &k8s_openapi::api::core::v1::Container> {
    pod.spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
}

async fn run_action(
    start: &StartInput<'_>,
    mem: &mut Memory,
    action: Action,
) -> Result<bool, SyncError> {
    let StartInput {
        ctx,
        pod,
        r,
        observed,
        ..
    } = *start;
    let cri = ctx.cri.as_ref();
    match action {
        Action::KillContainer { id, name, message } => {
            info!(pod = %r.name, container = %name, "{message}");
            mem.kill_messages.insert(id.clone(), message);
            mem.probes.remove(&id);
            let ip = pod_ip(ctx, pod, observed);
            kill_container(
                cri,
                find_container(pod, &name),
                &id,
                &ip,
                start.grace_seconds,
            )
            .await?;
        }
        Action::KillSandbox { sandbox_id } | Action::StopSandbox { sandbox_id } => {
            not_found_ok(cri.stop_pod_sandbox(&sandbox_id).await)?;
        }
        Action::RemoveContainer { id } => {
            not_found_ok(cri.remove_container(&id).await)?;
        }
        Action::CreateSandbox { attempt } => {
            // Kubelet makes the log directory itself before RunPodSandbox.
            tokio::fs::create_dir_all(pod_log_dir(&ctx.data_dir, r)).await?;
            let config = sandbox_config(
                &ctx.node_name,
                pod,
                r,
                &ctx.data_dir,
                attempt,
                ctx.cluster_dns.as_ref(),
            );
            if let Err(e) = cri.run_pod_sandbox(config).await {
                warn!(pod = %r.name, "RunPodSandbox failed: {e}");
                mem.restart_backoff
                    .next(SANDBOX_BACKOFF_KEY, Instant::now());
                let message = format!("failed to create pod sandbox: {}", e.message());
                for c in all_containers(pod) {
                    mem.waiting.insert(
                        c.name.clone(),
                        Waiting {
                            reason: "ContainerCreating".into(),
                            message: message.clone(),
                        },
                    );
                }
                return Ok(false);
            }
            mem.restart_backoff.reset(SANDBOX_BACKOFF_KEY);
            for c in all_containers(pod) {
                mem.waiting.remove(&c.name);
            }
        }
        Action::BackOff {
            name,
            reason,
            retry_at: _,
        } => {
            if name == SANDBOX_BACKOFF_KEY {
                return Ok(false);
            }
            let message = match reason {
                BackOffReason::ImagePullBackOff => {
                    let image = find_container(pod, &name)
                        .and_then(|c| c.image.clone())
                        .unwrap_or_default();
                    format!("Back-off pulling image \"{image}\"")
                }
                BackOffReason::CrashLoopBackOff => {
                    // Kubelet's wording. No countdown in it: the status must
                    // stay the same while waiting, or it is rewritten each sync.
                    let secs = mem
                        .restart_backoff
                        .delay(&name)
                        .unwrap_or_default()
                        .as_secs();
                    format!(
                        "back-off {secs}s restarting failed container={name} pod={}_{}({})",
                        r.name, r.namespace, r.uid
                    )
                }
            };
            mem.waiting.insert(
                name,
                Waiting {
                    reason: reason.as_str().into(),
                    message,
                },
            );
            return Ok(false);
        }
        Action::StartContainer { name, attempt } => {
            return start_container(start, mem, &name, attempt).await;
        }
    }
    Ok(true)
}

pub(super) fn not_found_ok(r: crate::cri::CriResult<()>) -> Result<(), crate::cri::CriError> {
    match r {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

pub(super) fn set_waiting(mem: &mut Memory, name: &str, reason: &str, message: String) {
    mem.waiting.insert(
        name.into(),
        Waiting {
            reason: reason.into(),
            message,
        },
    );
}

/// Computes the status and sends it through the status subresource when it
/// differs from what this worker last sent, or that send failed. The write
/// runs as a task of its own, one at a time per pod, and the sync does not
/// wait for it: with the API server unreachable or silent, containers are
/// still restarted and probed on time, and the newest status goes out once
/// a write gets through again (kubelet's status manager likewise runs apart
/// from its pod workers).
async fn write_status(
    ctx: &WorkerContext,
    pod: &Pod,
    r: &PodRef,
    observed: &ObservedPod,
    mem: &mut Memory,
) -> Result<(), SyncError> {
    // Base the stable parts (transition times, startTime) on what we wrote
    // last, which the watch may not have delivered yet.
    let mut base = pod.clone();
    if let Some(last) = &mem.last_status {
        base.status = Some(last.clone());
    }
    let status = compute_status(&StatusInput {
        pod: &base,
        observed,
        waiting: &mem.waiting,
        host_ip: &ctx.host_ip,
        probes: &mem.probes_view(),
        kill_messages: &mem.kill_messages,
        now: Timestamp::now(),
    });
    let status = match &mem.eviction {
        Some(e) => evicted_status(
            status,
            &e.message,
            mem.last_status.as_ref(),
            Timestamp::now(),
        ),
        None => status,
    };
    if mem.status_write.as_ref().is_some_and(|w| !w.is_finished()) {
        // The next sync sends whatever is newest by then.
        return Ok(());
    }
    if let Some(write) = mem.status_write.take() {
        let failed = match write.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        match &failed {
            // Warn once per outage, not once per sync.
            Some(e) if !mem.status_unsent => {
                warn!(pod = %r.name, ns = %r.namespace, "writing pod status: {e}")
            }
            Some(e) => debug!(pod = %r.name, "writing pod status: {e}"),
            None if mem.status_unsent => info!(pod = %r.name, "pod status written again"),
            None => {}
        }
        mem.status_unsent = failed.is_some();
    }
    if !mem.status_unsent && mem.last_status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &r.namespace);
    let patch = serde_json::json!({ "status": serde_json::to_value(&status)? });
    let name = r.name.clone();
    debug!(pod = %r.name, phase = ?status.phase, "writing status");
    mem.status_write = Some(tokio::spawn(async move {
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
    }));
    mem.last_status = Some(status);
    Ok(())
}

/// Waits for the status write in flight, so that nothing is written after
/// the pod's final delete (a new pod of the same name may follow it).
async fn finish_status_write(mem: &mut Memory) {
    if let Some(write) = mem.status_write.take() {
        let _ = write.await;
    }
}

/// `pod` with its phase set to `Failed`, to be killed within the
/// eviction's grace period (kubelet's `gracePeriodOverride`).
fn as_failed(pod: &Pod, grace_seconds: i64) -> Pod {
    let mut p = pod.clone();
    p.status.get_or_insert_with(Default::default).phase = Some("Failed".into());
    let grace = grace_period(pod).min(grace_seconds);
    p.metadata.deletion_grace_period_seconds = Some(grace);
    p
}

/// What kubelet reports for a pod it evicted: phase `Failed`, reason
/// `Evicted`, the eviction manager's message, and the `DisruptionTarget`
/// condition (reason `TerminationByKubelet`).
pub(super) fn evicted_status(
    mut status: PodStatus,
    message: &str,
    prev: Option<&PodStatus>,
    now: Timestamp,
) -> PodStatus {
    status.phase = Some("Failed".into());
    status.reason = Some("Evicted".into());
    status.message = Some(message.to_string());
    // The condition written first stays, so its transition time is stable.
    let condition = prev
        .and_then(|p| p.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "DisruptionTarget"))
        .cloned()
        .unwrap_or_else(|| k8s_openapi::api::core::v1::PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some("TerminationByKubelet".into()),
            message: Some(message.to_string()),
            last_transition_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now)),
            ..Default::default()
        });
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    conditions.retain(|c| c.type_ != "DisruptionTarget");
    conditions.push(condition);
    status
}

/// Kill everything in CRI, then (for a graceful API deletion) make the final
/// `DELETE` with grace 0 and the pod's UID as precondition, as kubelet's
/// status manager does once the pod's containers are gone.
async fn terminate(
    ctx: &WorkerContext,
    pod: &Pod,
    r: &PodRef,
    grace_period_seconds: i64,
    delete_from_api: bool,
) -> Result<(), SyncError> {
    // preStop hooks of running containers, in parallel, within the grace
    // period; the runtime's SIGTERM/SIGKILL gets what is left (at least 2 s
    // when a hook ran, as kubelet).
    let observed = observe(ctx.cri.as_ref(), &r.uid, &mut ObserveCache::default()).await?;
    let ip = pod_ip(ctx, pod, &observed);
    let mut grace = grace_period_seconds;
    let hooks: Vec<_> = observed
        .containers
        .iter()
        .filter(|c| c.state == RunState::Running)
        .filter_map(|c| {
            let spec = find_container(pod, &c.name)?;
            let h = super::hooks::handler(spec, super::hooks::Hook::PreStop)?;
            Some((c.id.clone(), spec, h))
        })
        .collect();
    if !hooks.is_empty() {
        let t0 = Instant::now();
        let budget = Duration::from_secs(grace_period_seconds.max(0).unsigned_abs());
        let runs = hooks.iter().map(|(id, spec, h)| {
            super::hooks::run_hook(ctx.cri.as_ref(), id, spec, &ip, h, budget)
        });
        for (r, (id, ..)) in futures::future::join_all(runs)
            .await
            .into_iter()
            .zip(&hooks)
        {
            if let Err(e) = r {
                info!(container = %id, "preStop hook failed: {e}");
            }
        }
        grace = super::hooks::grace_after_hook(grace_period_seconds, t0.elapsed());
    }
    teardown_pod(ctx.cri.as_ref(), &r.uid, grace).await?;
    volumes::teardown(&volumes::pod_dir(&ctx.data_dir, &r.uid))?;
    if delete_from_api {
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &r.namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(r.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&r.name, &params).await {
            Ok(_) => {}
            // Already gone, or a new pod with the same name (UID precondition).
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    // Kubelet garbage-collects the pod's log directory once it is removed.
    let _ = tokio::fs::remove_dir_all(pod_log_dir(&ctx.data_dir, r)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    type Answer = Result<http::Response<Full<bytes::Bytes>>, tower::BoxError>;

    fn client(answer: fn() -> Option<Answer>) -> kube::Client {
        let service = tower::service_fn(move |_: http::Request<kube::client::Body>| async move {
            match answer() {
                Some(a) => a,
                // A link that went silent: no answer, no error.
                None => std::future::pending().await,
            }
        });
        bounded_client(
            kube::Client::new(service, "default"),
            Duration::from_millis(200),
        )
    }

    #[tokio::test]
    async fn a_request_the_server_never_answers_fails_after_the_timeout() {
        let pods: Api<Pod> = Api::namespaced(client(|| None), "default");
        let err = tokio::time::timeout(Duration::from_secs(30), pods.get("web"))
            .await
            .expect("the request should have timed out by itself")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("no answer from the API server within 200ms"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn answers_pass_through_the_bound() {
        let pods: Api<Pod> = Api::namespaced(
            client(|| {
                let body = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"}}"#;
                Some(Ok(http::Response::new(Full::new(body.into()))))
            }),
            "default",
        );
        let pod = pods.get("web").await.unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("web"));
    }
}
