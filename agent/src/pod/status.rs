//! The pod's `status` computed from CRI: a pure function, like kubelet's
//! `generateAPIPodStatus` and `getPhase` (`pkg/kubelet/kubelet_pods.go`).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::observed::{ContainerObs, ObservedPod, RunState};
use super::plan::{init_progress, pod_is_done, restart_policy, InitProgress};
use super::probe::ProbeResults;
use super::resources::qos_class;

/// A reason a container is waiting, set by the worker (image pull errors,
/// back-off, create/start errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// Kubelet's reason word, e.g. `ErrImagePull`, `CrashLoopBackOff`.
    pub reason: String,
    /// Human message, e.g. the runtime's error.
    pub message: String,
}

/// Everything [`compute_status`] reads.
pub struct StatusInput<'a> {
    /// The pod (its previous status is kept where it must be stable).
    pub pod: &'a Pod,
    /// The pod as CRI has it.
    pub observed: &'a ObservedPod,
    /// Waiting reasons per container name.
    pub waiting: &'a HashMap<String, Waiting>,
    /// The node's IP.
    pub host_ip: &'a str,
    /// Probe verdicts per container id.
    pub probes: &'a ProbeResults,
    /// Why the agent killed a container attempt (liveness, startup,
    /// postStart), by container id: shown as its terminated message.
    pub kill_messages: &'a HashMap<String, String>,
    /// The current time (for startTime and condition transitions).
    pub now: Timestamp,
}

/// Prefix of `containerID` in the status: the runtime's name
/// (`<type>://<id>`, kubelet `ContainerID.String`).
pub const CONTAINER_ID_PREFIX: &str = "containerd://";

fn time_ns(ns: i64) -> Option<Time> {
    if ns <= 0 {
        return None;
    }
    Timestamp::from_nanosecond(i128::from(ns)).ok().map(Time)
}

fn terminated(c: &ContainerObs, kill_messages: &HashMap<String, String>) -> ContainerState {
    let message = kill_messages
        .get(&c.id)
        .cloned()
        .or_else(|| (!c.message.is_empty()).then(|| c.message.clone()));
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: c.exit_code,
            reason: Some(if c.reason.is_empty() {
                if c.exit_code == 0 {
                    "Completed"
                } else {
                    "Error"
                }
                .to_string()
            } else {
                c.reason.clone()
            }),
            message,
            started_at: time_ns(c.started_at),
            finished_at: time_ns(c.finished_at),
            container_id: Some(format!("{CONTAINER_ID_PREFIX}{}", c.id)),
            signal: None,
        }),
        ..Default::default()
    }
}

fn waiting_state(reason: &str, message: Option<&str>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message: message.filter(|m| !m.is_empty()).map(str::to_string),
        }),
        ..Default::default()
    }
}

fn container_status(
    input: &StatusInput<'_>,
    name: &str,
    image: &str,
    init: bool,
) -> ContainerStatus {
    let km = input.kill_messages;
    let latest = input.observed.latest(name);
    let previous = input.observed.previous(name);
    let waiting = input.waiting.get(name);
    let (state, last_state) = match (latest, waiting) {
        (Some(l), _) if l.state == RunState::Running => (
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: time_ns(l.started_at),
                }),
                ..Default::default()
            },
            previous
                .filter(|p| p.state == RunState::Exited)
                .map(|p| terminated(p, km)),
        ),
        // Exited and about to be restarted (or backing off): waiting now,
        // the exit shows as lastState, as kubectl expects for CrashLoopBackOff.
        (Some(l), Some(w)) if l.state == RunState::Exited => (
            waiting_state(&w.reason, Some(&w.message)),
            Some(terminated(l, km)),
        ),
        (Some(l), None) if l.state == RunState::Exited => (
            terminated(l, km),
            previous
                .filter(|p| p.state == RunState::Exited)
                .map(|p| terminated(p, km)),
        ),
        (Some(l), _) if l.state == RunState::Unknown => {
            (waiting_state("ContainerStatusUnknown", None), None)
        }
        (_, Some(w)) => (waiting_state(&w.reason, Some(&w.message)), None),
        _ => (waiting_state("ContainerCreating", None), None),
    };
    let running = state.running.is_some();
    // Probes decide `started` and `ready` of a running attempt; without
    // probes both follow "running". A finished init container is ready.
    let verdict = latest.and_then(|l| input.probes.get(&l.id));
    let started = running && verdict.is_none_or(|v| v.started);
    let ready = if init {
        state.terminated.as_ref().is_some_and(|t| t.exit_code == 0)
    } else {
        running && verdict.is_none_or(|v| v.ready)
    };
    ContainerStatus {
        name: name.into(),
        state: Some(state),
        last_state,
        ready,
        started: Some(started),
        restart_count: latest.map_or(0, |l| i32::try_from(l.attempt).unwrap_or(i32::MAX)),
        image: image.into(),
        image_id: latest.map(|l| l.image_ref.clone()).unwrap_or_default(),
        container_id: latest.map(|l| format!("{CONTAINER_ID_PREFIX}{}", l.id)),
        ..Default::default()
    }
}

/// Kubelet's `getPhase` over the container statuses.
pub fn phase(pod: &Pod, statuses: &[ContainerStatus]) -> &'static str {
    let (mut waiting, mut running, mut stopped, mut succeeded, mut unknown) = (0, 0, 0, 0, 0);
    for s in statuses {
        let st = s.state.clone().unwrap_or_default();
        if st.running.is_some() {
            running += 1;
        } else if let Some(t) = st.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if st.waiting.is_some() {
            // A container that ran before and waits to restart counts as stopped.
            if s.last_state
                .as_ref()
                .and_then(|l| l.terminated.as_ref())
                .is_some()
            {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            unknown += 1;
        }
    }
    let policy = restart_policy(pod);
    if waiting > 0 {
        "Pending"
    } else if running > 0 && unknown == 0 {
        "Running"
    } else if running == 0 && stopped > 0 && unknown == 0 {
        if policy == "Always" {
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if policy == "Never" {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    }
}

fn condition(
    old: Option<&PodStatus>,
    kind: &str,
    ok: bool,
    reason: Option<&str>,
    now: Timestamp,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    // Keep the transition time while the status stays the same, so that the
    // status only changes (and is only written) when something happened.
    let last = old
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == kind))
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone());
    PodCondition {
        type_: kind.into(),
        status: status.into(),
        reason: reason.filter(|_| !ok).map(str::to_string),
        last_transition_time: Some(last.unwrap_or(Time(now))),
        ..Default::default()
    }
}

/// The pod's new status.
pub fn compute_status(input: &StatusInput<'_>) -> PodStatus {
    let pod = input.pod;
    let old = pod.status.as_ref();
    let spec = pod.spec.clone().unwrap_or_default();
    let init_statuses: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| container_status(input, &c.name, c.image.as_deref().unwrap_or_default(), true))
        .collect();
    let sandbox_id = input.observed.sandbox().map(|s| s.id.as_str());
    let init = init_progress(pod, input.observed, sandbox_id);
    let initialized = init == InitProgress::Done;
    let mut statuses: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| {
            container_status(
                input,
                &c.name,
                c.image.as_deref().unwrap_or_default(),
                false,
            )
        })
        .collect();
    if !initialized {
        // Kubelet's reason for app containers while init containers run.
        for s in statuses.iter_mut() {
            let creating = s
                .state
                .as_ref()
                .and_then(|st| st.waiting.as_ref())
                .is_some_and(|w| w.reason.as_deref() == Some("ContainerCreating"));
            if creating && s.container_id.is_none() {
                s.state = Some(waiting_state("PodInitializing", None));
            }
        }
    }
    let old_phase = old.and_then(|s| s.phase.as_deref());
    let phase = match (old_phase, &init) {
        // Terminal phases are final (kubelet never leaves them).
        (Some(p @ ("Succeeded" | "Failed")), _) => p.to_string(),
        (_, InitProgress::Failed(_)) => "Failed".to_string(),
        (_, InitProgress::Start(_) | InitProgress::Running(_)) => "Pending".to_string(),
        (_, InitProgress::Done) => phase(pod, &statuses).to_string(),
    };
    let terminal = phase == "Succeeded" || phase == "Failed" || pod_is_done(pod, input.observed);
    let all_ready = !statuses.is_empty() && statuses.iter().all(|s| s.ready);
    let not_ready_reason = if terminal {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let conditions = vec![
        condition(
            old,
            "Initialized",
            initialized || terminal,
            Some("ContainersNotInitialized"),
            input.now,
        ),
        condition(old, "Ready", all_ready, Some(not_ready_reason), input.now),
        condition(
            old,
            "ContainersReady",
            all_ready,
            Some(not_ready_reason),
            input.now,
        ),
        condition(old, "PodScheduled", true, None, input.now),
    ];
    let host_network = spec.host_network.unwrap_or(false);
    let mut ips: Vec<String> = if host_network {
        vec![input.host_ip.to_string()]
    } else {
        input
            .observed
            .sandbox()
            .filter(|s| s.ready)
            .map(|s| s.ips.clone())
            .unwrap_or_default()
    };
    if ips.is_empty() {
        // A stopped sandbox has no IP any more; kubelet keeps reporting the
        // last one so that the status does not flap.
        ips = old
            .and_then(|s| s.pod_ips.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.ip)
            .collect();
    }
    PodStatus {
        phase: Some(phase),
        conditions: Some(conditions),
        container_statuses: Some(statuses),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        host_ip: Some(input.host_ip.into()),
        host_ips: Some(vec![HostIP {
            ip: input.host_ip.into(),
        }]),
        pod_ip: ips.first().cloned(),
        pod_ips: (!ips.is_empty()).then(|| ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
        start_time: old
            .and_then(|s| s.start_time.clone())
            .or(Some(Time(input.now))),
        qos_class: old
            .and_then(|s| s.qos_class.clone())
            .or_else(|| Some(qos_class(pod).to_string())),
        ..Default::default()
    }
}
