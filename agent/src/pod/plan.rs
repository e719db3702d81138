//! The pure decision: given a pod's spec and what CRI shows, what to do next.
//!
//! This is Skiff's `computePodActions` (kubelet
//! `kuberuntime_manager.go`): no I/O, no clock of its own, so it is tested
//! table-driven on plain values. The worker runs the actions, observes CRI
//! again, and asks again, until the answer is "nothing".

use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;

use super::backoff::BackOff;
use super::observed::{ContainerObs, ObservedPod, RunState};
use super::probe::ProbeResults;

/// Dead attempts of one container kept for `lastState` and `logs --previous`
/// (kubelet keeps one dead container per name by default, plus the
/// current one; `MaxPerPodContainer`).
pub const KEEP_ATTEMPTS: usize = 2;

/// Key of the sandbox's own entry in the restart back-off (a container
/// name can never contain `<`, so it cannot collide).
pub const SANDBOX_BACKOFF_KEY: &str = "<sandbox>";

/// Why a container waits instead of starting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackOffReason {
    /// Restart delayed after an exit (kubelet's `CrashLoopBackOff`).
    CrashLoopBackOff,
    /// Pull delayed after a failed pull (kubelet's `ImagePullBackOff`).
    ImagePullBackOff,
}

impl BackOffReason {
    /// The waiting reason string kubectl shows.
    pub fn as_str(self) -> &'static str {
        match self {
            BackOffReason::CrashLoopBackOff => "CrashLoopBackOff",
            BackOffReason::ImagePullBackOff => "ImagePullBackOff",
        }
    }
}

/// One step toward the pod's spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Stop the containers of a sandbox that is no longer ready, and the
    /// sandbox itself (kubelet kills the whole pod when its sandbox changed).
    KillSandbox {
        /// The old sandbox.
        sandbox_id: String,
    },
    /// `RunPodSandbox` with this attempt number.
    CreateSandbox {
        /// `metadata.attempt`.
        attempt: u32,
    },
    /// Make sure the image is there (pull if not), then `CreateContainer` +
    /// `StartContainer` in the ready sandbox.
    StartContainer {
        /// Container name in the spec.
        name: String,
        /// Attempt = restart count.
        attempt: u32,
    },
    /// Do not start this container yet.
    BackOff {
        /// Container name.
        name: String,
        /// Why.
        reason: BackOffReason,
        /// When it may go.
        retry_at: Instant,
    },
    /// Stop one running container (preStop hook, then `StopContainer` with
    /// the grace period) because its liveness or startup probe failed; the
    /// restart policy then decides whether it runs again.
    KillContainer {
        /// CRI id.
        id: String,
        /// Container name.
        name: String,
        /// Why, for `lastState.terminated.message`.
        message: String,
    },
    /// `RemoveContainer` of a dead attempt (garbage collection), or of a
    /// container that was created but never started.
    RemoveContainer {
        /// CRI id.
        id: String,
    },
    /// The pod reached a terminal phase: stop its sandbox to free its IP, as
    /// kubelet does; containers stay for logs until the pod is deleted.
    StopSandbox {
        /// The sandbox.
        sandbox_id: String,
    },
}

/// Everything [`next_actions`] reads.
pub struct PlanInput<'a> {
    /// The pod as the API server has it.
    pub pod: &'a Pod,
    /// The pod as CRI has it.
    pub observed: &'a ObservedPod,
    /// Restart back-off per container name, plus [`SANDBOX_BACKOFF_KEY`]
    /// for failed `RunPodSandbox` calls.
    pub restart_backoff: &'a BackOff,
    /// Image pull back-off per container name.
    pub pull_backoff: &'a BackOff,
    /// Probe verdicts per container id (containers without an entry have
    /// nothing to say).
    pub probes: &'a ProbeResults,
    /// The current time.
    pub now: Instant,
}

/// Where the init containers are (kubelet `computeInitContainerActions`,
/// for init containers without `restartPolicy: Always`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitProgress {
    /// Every init container exited 0 in the current sandbox (or there are none).
    Done,
    /// This init container is to be started (first time, or after a failure).
    Start(String),
    /// This init container is running: wait for it.
    Running(String),
    /// This init container failed and `restartPolicy: Never` forbids a retry:
    /// the pod fails.
    Failed(String),
}

/// The state of the init containers in the sandbox `sandbox_id`.
pub fn init_progress(pod: &Pod, observed: &ObservedPod, sandbox_id: Option<&str>) -> InitProgress {
    let Some(spec) = pod.spec.as_ref() else {
        return InitProgress::Done;
    };
    let policy = restart_policy(pod);
    for c in spec.init_containers.iter().flatten() {
        // Only attempts in the current sandbox count: a new sandbox runs the
        // init containers again, as in kubelet.
        let latest = observed
            .attempts(&c.name)
            .find(|a| Some(a.sandbox_id.as_str()) == sandbox_id);
        match latest {
            None => return InitProgress::Start(c.name.clone()),
            Some(a) if a.state == RunState::Exited && a.exit_code == 0 => continue,
            Some(a) if a.state == RunState::Exited => {
                return if policy == "Never" {
                    InitProgress::Failed(c.name.clone())
                } else {
                    InitProgress::Start(c.name.clone())
                }
            }
            Some(_) => return InitProgress::Running(c.name.clone()),
        }
    }
    InitProgress::Done
}

/// The pod's `spec.restartPolicy`, defaulting to `Always`.
pub fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// Whether a pod's status phase is terminal (`Succeeded` or `Failed`).
/// Kubelet never moves a pod out of a terminal phase.
pub fn is_terminal_phase(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Whether a container whose newest attempt is `latest` must be (re)started,
/// per `restartPolicy` (kubelet `ShouldContainerBeRestarted`).
fn needs_start(policy: &str, latest: Option<&ContainerObs>, sandbox_id: Option<&str>) -> bool {
    let Some(c) = latest else { return true };
    let in_current = sandbox_id == Some(c.sandbox_id.as_str());
    let dead = match c.state {
        RunState::Running | RunState::Created | RunState::Unknown => !in_current,
        RunState::Exited => true,
    };
    if !dead {
        return false;
    }
    match policy {
        "Never" => false,
        // A container stopped with its sandbox counts as failed when it had
        // not exited by itself.
        "OnFailure" => c.state != RunState::Exited || c.exit_code != 0,
        _ => true,
    }
}

/// Whether, per the restart policy, nothing will run again: every
/// container has run and none is to be restarted.
pub fn pod_is_done(pod: &Pod, observed: &ObservedPod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let policy = restart_policy(pod);
    let sandbox = observed
        .sandbox()
        .filter(|s| s.ready)
        .map(|s| s.id.as_str());
    let newest = observed.sandbox().map(|s| s.id.as_str());
    if matches!(
        init_progress(pod, observed, newest),
        InitProgress::Failed(_)
    ) {
        return true;
    }
    !spec.containers.is_empty()
        && spec.containers.iter().all(|c| {
            let latest = observed.latest(&c.name);
            latest.is_some_and(|l| l.state == RunState::Exited)
                && !needs_start(policy, latest, sandbox)
        })
}

/// The next steps toward the pod's spec; empty when there is nothing to do.
pub fn next_actions(input: &PlanInput<'_>) -> Vec<Action> {
    let PlanInput {
        pod,
        observed,
        restart_backoff,
        pull_backoff,
        probes,
        now,
    } = *input;
    let mut actions = vec![];
    let Some(spec) = pod.spec.as_ref() else {
        return actions;
    };
    let ready_sandbox = observed.sandbox().filter(|s| s.ready);

    // A finished pod: free its network, keep its containers for logs.
    // Containers still running in a pod that turned terminal (an eviction)
    // are killed first, within the pod's grace period (kubelet's
    // `killPod`); stopping the sandbox would kill them at once.
    if is_terminal_phase(pod) || pod_is_done(pod, observed) {
        for c in observed
            .containers
            .iter()
            .filter(|c| c.state == RunState::Running)
        {
            actions.push(Action::KillContainer {
                id: c.id.clone(),
                name: c.name.clone(),
                message: format!("Stopping container {}", c.name),
            });
        }
        for sb in observed.sandboxes.iter().filter(|s| s.ready) {
            actions.push(Action::StopSandbox {
                sandbox_id: sb.id.clone(),
            });
        }
        return actions;
    }

    let policy = restart_policy(pod);
    let sandbox_id = ready_sandbox.map(|s| s.id.as_str());
    let init = init_progress(pod, observed, sandbox_id);
    let to_start: Vec<&str> = match &init {
        InitProgress::Done => spec
            .containers
            .iter()
            .filter(|c| needs_start(policy, observed.latest(&c.name), sandbox_id))
            .map(|c| c.name.as_str())
            .collect(),
        InitProgress::Start(name) => vec![name.as_str()],
        InitProgress::Running(_) | InitProgress::Failed(_) => vec![],
    };

    let Some(sandbox) = ready_sandbox else {
        // No usable sandbox: kill what is left of old ones, then make a new one.
        for sb in &observed.sandboxes {
            let has_live = observed.containers.iter().any(|c| {
                c.sandbox_id == sb.id && matches!(c.state, RunState::Running | RunState::Created)
            });
            if has_live {
                actions.push(Action::KillSandbox {
                    sandbox_id: sb.id.clone(),
                });
            }
        }
        if !to_start.is_empty() || observed.sandboxes.is_empty() {
            if let Some(retry_at) = restart_backoff.not_before(SANDBOX_BACKOFF_KEY, now) {
                actions.push(Action::BackOff {
                    name: SANDBOX_BACKOFF_KEY.into(),
                    reason: BackOffReason::CrashLoopBackOff,
                    retry_at,
                });
            } else {
                // Like kubelet, stop the sandbox being replaced even when
                // nothing in it runs any more (its host crashed): only
                // StopPodSandbox runs the CNI DEL that frees its address.
                if let Some(old) = observed.sandbox() {
                    let stop = Action::KillSandbox {
                        sandbox_id: old.id.clone(),
                    };
                    if !actions.contains(&stop) {
                        actions.push(stop);
                    }
                }
                let attempt = observed.sandbox().map_or(0, |s| s.attempt + 1);
                actions.push(Action::CreateSandbox { attempt });
            }
        }
        return actions;
    };

    // Probes that failed: kill, and let the restart policy decide.
    for c in observed
        .containers
        .iter()
        .filter(|c| c.state == RunState::Running && c.sandbox_id == sandbox.id)
    {
        if let Some(message) = probes.get(&c.id).and_then(|v| v.kill.clone()) {
            actions.push(Action::KillContainer {
                id: c.id.clone(),
                name: c.name.clone(),
                message,
            });
        }
    }
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for c in all {
        let latest = observed.latest(&c.name);
        // Created but never started (an agent crash between the two calls):
        // remove it and start the same attempt again.
        if let Some(l) =
            latest.filter(|l| l.state == RunState::Created && l.sandbox_id == sandbox.id)
        {
            actions.push(Action::RemoveContainer { id: l.id.clone() });
            actions.push(Action::StartContainer {
                name: c.name.clone(),
                attempt: l.attempt,
            });
            continue;
        }
        if !to_start.contains(&c.name.as_str()) {
            continue;
        }
        if let Some(retry_at) = pull_backoff.not_before(&c.name, now) {
            actions.push(Action::BackOff {
                name: c.name.clone(),
                reason: BackOffReason::ImagePullBackOff,
                retry_at,
            });
            continue;
        }
        // The restart back-off also covers a container whose start failed
        // before it ever ran, so a broken command does not hot-loop.
        if let Some(retry_at) = restart_backoff.not_before(&c.name, now) {
            actions.push(Action::BackOff {
                name: c.name.clone(),
                reason: BackOffReason::CrashLoopBackOff,
                retry_at,
            });
            continue;
        }
        actions.push(Action::StartContainer {
            name: c.name.clone(),
            attempt: latest.map_or(0, |l| l.attempt + 1),
        });
    }

    // Garbage-collect old dead attempts.
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
    {
        for old in observed.attempts(&c.name).skip(KEEP_ATTEMPTS) {
            if old.state == RunState::Exited || old.sandbox_id != sandbox.id {
                actions.push(Action::RemoveContainer { id: old.id.clone() });
            }
        }
    }
    actions
}
