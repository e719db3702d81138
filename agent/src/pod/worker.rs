//! One task per pod: drives the pod's [`PodLifecycle`] with the pure
//! [`next_actions`] and [`compute_status`], doing the I/O they ask for.
//!
//! ```text
//!   updates (watch) ──► lifecycle ──Syncing──► observe CRI → next_actions → run
//!                                  │                       → compute_status → patch if changed
//!                                  └Terminating─► teardown → final DELETE (grace 0) → Terminated
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::Api;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::backoff::BackOff;
use super::config::{container_config, pod_log_dir, sandbox_config, PodRef};
use super::lifecycle::{LifecycleEvent, PodLifecycle};
use super::observed::{observe, ObserveCache, ObservedPod};
use super::plan::{next_actions, Action, BackOffReason, PlanInput, SANDBOX_BACKOFF_KEY};
use super::status::{compute_status, StatusInput, Waiting};
use super::teardown::teardown_pod;
use crate::cri::Cri;

/// How often a pod's CRI state is looked at when nothing else happens
/// (kubelet relists every 1 s in PLEG; a pod's exit shows within this).
pub const SYNC_PERIOD: Duration = Duration::from_secs(1);

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
}

/// What every worker shares.
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
}

/// The worker's memory between syncs: back-offs, waiting reasons, and the
/// last status it wrote. Lost on agent restart (kubelet's is too); what
/// matters is rebuilt from CRI labels.
#[derive(Default)]
struct Memory {
    restart_backoff: BackOff,
    pull_backoff: BackOff,
    waiting: HashMap<String, Waiting>,
    last_status: Option<PodStatus>,
    cache: ObserveCache,
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
    loop {
        let update = updates.borrow_and_update().clone();
        let pod = update.pod.as_ref();
        let Some(pod_ref) = PodRef::of(pod) else {
            return;
        };
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
            PodLifecycle::Syncing => match sync_pod(&ctx, pod, &pod_ref, &mut mem).await {
                Ok(true) => Duration::ZERO,
                Ok(false) => SYNC_PERIOD,
                Err(e) => {
                    warn!(pod = %pod_ref.name, ns = %pod_ref.namespace, "sync failed: {e}");
                    RETRY_PERIOD
                }
            },
            PodLifecycle::Terminating {
                grace_period_seconds,
                delete_from_api,
            } => match terminate(&ctx, &pod_ref, grace_period_seconds, delete_from_api).await {
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
            },
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
        }
    }
}

/// Errors inside one sync; the worker logs them and retries.
#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error(transparent)]
    Cri(#[from] crate::cri::CriError),
    #[error("writing pod status: {0}")]
    Api(#[from] kube::Error),
    #[error("creating log directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("encoding pod status: {0}")]
    Json(#[from] serde_json::Error),
}

/// One round: observe, act, write status. Returns whether it changed
/// something in CRI (then the worker goes again at once).
async fn sync_pod(
    ctx: &WorkerContext,
    pod: &Pod,
    r: &PodRef,
    mem: &mut Memory,
) -> Result<bool, SyncError> {
    let mut observed = observe(ctx.cri.as_ref(), &r.uid, &mut mem.cache).await?;
    let actions = next_actions(&PlanInput {
        pod,
        observed: &observed,
        restart_backoff: &mem.restart_backoff,
        pull_backoff: &mem.pull_backoff,
        now: Instant::now(),
    });
    let mut changed = false;
    for action in actions {
        debug!(pod = %r.name, ?action, "action");
        changed |= run_action(ctx, pod, r, &observed, mem, action).await?;
    }
    if changed {
        observed = observe(ctx.cri.as_ref(), &r.uid, &mut mem.cache).await?;
    }
    write_status(ctx, pod, r, &observed, mem).await?;
    Ok(changed)
}

async fn run_action(
    ctx: &WorkerContext,
    pod: &Pod,
    r: &PodRef,
    observed: &ObservedPod,
    mem: &mut Memory,
    action: Action,
) -> Result<bool, SyncError> {
    let cri = ctx.cri.as_ref();
    match action {
        Action::KillSandbox { sandbox_id } | Action::StopSandbox { sandbox_id } => {
            not_found_ok(cri.stop_pod_sandbox(&sandbox_id).await)?;
        }
        Action::RemoveContainer { id } => {
            not_found_ok(cri.remove_container(&id).await)?;
        }
        Action::CreateSandbox { attempt } => {
            // Kubelet makes the log directory itself before RunPodSandbox.
            tokio::fs::create_dir_all(pod_log_dir(&ctx.data_dir, r)).await?;
            let config = sandbox_config(&ctx.node_name, pod, r, &ctx.data_dir, attempt);
            if let Err(e) = cri.run_pod_sandbox(config).await {
                warn!(pod = %r.name, "RunPodSandbox failed: {e}");
                mem.restart_backoff
                    .next(SANDBOX_BACKOFF_KEY, Instant::now());
                let message = format!("failed to create pod sandbox: {}", e.message());
                for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
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
            for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
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
                    let image = pod
                        .spec
                        .iter()
                        .flat_map(|s| s.containers.iter())
                        .find(|c| c.name == name)
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
            return start_container(ctx, pod, r, observed, mem, &name, attempt).await;
        }
    }
    Ok(true)
}

fn not_found_ok(r: crate::cri::CriResult<()>) -> Result<(), crate::cri::CriError> {
    match r {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// Ensure the image, create, start (kubelet `startContainer`). Failures
/// become waiting reasons, not errors: the pod keeps going.
async fn start_container(
    ctx: &WorkerContext,
    pod: &Pod,
    r: &PodRef,
    observed: &ObservedPod,
    mem: &mut Memory,
    name: &str,
    attempt: u32,
) -> Result<bool, SyncError> {
    let cri = ctx.cri.as_ref();
    let Some(spec) = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .find(|c| c.name == name)
    else {
        return Ok(false);
    };
    let Some(sandbox) = observed.sandbox().filter(|s| s.ready) else {
        return Ok(false);
    };
    let now = Instant::now();
    let image = spec.image.clone().unwrap_or_default();
    let sb_config = sandbox_config(&ctx.node_name, pod, r, &ctx.data_dir, sandbox.attempt);

    // Image: present → use it; else pull (which fails on a node without a
    // registry, which is the expected path for un-imported images).
    let present = match cri.image_status(&image).await {
        Ok(i) => i.is_some(),
        Err(e) => {
            set_waiting(mem, name, "ErrImagePull", e.message());
            mem.pull_backoff.next(name, now);
            return Ok(false);
        }
    };
    let always = spec.image_pull_policy.as_deref() == Some("Always");
    if !present || always {
        match cri.pull_image(&image, Some(sb_config.clone())).await {
            Ok(_) => mem.pull_backoff.reset(name),
            // Caveat: kubelet fails an `Always` pull even when the image is
            // present; an edge node without a registry uses the local copy.
            Err(e) if present => {
                debug!(%image, "pull failed, using the local image: {e}");
            }
            Err(e) => {
                info!(pod = %r.name, container = %name, %image, "image pull failed: {e}");
                set_waiting(mem, name, "ErrImagePull", e.message());
                mem.pull_backoff.next(name, now);
                return Ok(false);
            }
        }
    }

    tokio::fs::create_dir_all(pod_log_dir(&ctx.data_dir, r).join(name)).await?;
    if attempt > 0 || mem.restart_backoff.delay(name).is_some() {
        // A restart: grow the back-off for the one after it.
        mem.restart_backoff.next(name, now);
    }
    let config = container_config(&ctx.node_name, pod, r, spec, attempt);
    let id = match cri.create_container(&sandbox.id, config, sb_config).await {
        Ok(id) => id,
        Err(e) => {
            set_waiting(mem, name, "CreateContainerError", e.message());
            mem.restart_backoff.next(name, now);
            return Ok(false);
        }
    };
    if let Err(e) = cri.start_container(&id).await {
        set_waiting(mem, name, "RunContainerError", e.message());
        mem.restart_backoff.next(name, now);
        // Remove it so the next attempt starts clean.
        not_found_ok(cri.remove_container(&id).await)?;
        return Ok(true);
    }
    info!(pod = %r.name, ns = %r.namespace, container = %name, attempt, "container started");
    mem.waiting.remove(name);
    Ok(true)
}

fn set_waiting(mem: &mut Memory, name: &str, reason: &str, message: String) {
    mem.waiting.insert(
        name.into(),
        Waiting {
            reason: reason.into(),
            message,
        },
    );
}

/// Computes the status and writes it through the status subresource when
/// it differs from what this worker last wrote.
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
        now: Timestamp::now(),
    });
    if mem.last_status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &r.namespace);
    let patch = serde_json::json!({ "status": serde_json::to_value(&status)? });
    api.patch_status(&r.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    debug!(pod = %r.name, phase = ?status.phase, "status written");
    mem.last_status = Some(status);
    Ok(())
}

/// Kill everything in CRI, then (for a graceful API deletion) make the final
/// `DELETE` with grace 0 and the pod's UID as precondition, as kubelet's
/// status manager does once the pod's containers are gone.
async fn terminate(
    ctx: &WorkerContext,
    r: &PodRef,
    grace_period_seconds: i64,
    delete_from_api: bool,
) -> Result<(), SyncError> {
    teardown_pod(ctx.cri.as_ref(), &r.uid, grace_period_seconds).await?;
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
