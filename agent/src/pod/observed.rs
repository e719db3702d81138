//! What CRI says about one pod, rebuilt from labels alone (like kubelet's
//! `kubecontainer.PodStatus`): its sandboxes and every container attempt.
//! A restarted agent sees exactly what the previous one left.

use std::collections::HashMap;

use k8s_cri::v1 as cri;

use crate::cri::{container_state, labels, sandbox_state, Cri, CriResult};

/// State of one container attempt, from CRI `ContainerState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Created, not started.
    Created,
    /// Running.
    Running,
    /// Exited (has an exit code).
    Exited,
    /// The runtime does not know.
    Unknown,
}

/// One sandbox of the pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxObs {
    /// CRI sandbox id.
    pub id: String,
    /// `SANDBOX_READY`.
    pub ready: bool,
    /// `metadata.attempt`.
    pub attempt: u32,
    /// Creation time, ns since the epoch.
    pub created_at: i64,
    /// Pod IPs from the sandbox network status (primary first).
    pub ips: Vec<String>,
}

/// One container attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerObs {
    /// CRI container id.
    pub id: String,
    /// Sandbox it belongs to.
    pub sandbox_id: String,
    /// Container name (`metadata.name`).
    pub name: String,
    /// `metadata.attempt` = its restart count.
    pub attempt: u32,
    /// State.
    pub state: RunState,
    /// Times, ns since the epoch (0 = not yet).
    pub created_at: i64,
    /// Start time.
    pub started_at: i64,
    /// Exit time.
    pub finished_at: i64,
    /// Exit code when exited.
    pub exit_code: i32,
    /// Runtime's short reason (e.g. "Completed", "Error", "OOMKilled").
    pub reason: String,
    /// Runtime's message.
    pub message: String,
    /// Image as requested.
    pub image: String,
    /// Resolved image reference (digest / id).
    pub image_ref: String,
}

/// Everything CRI knows about one pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedPod {
    /// Sandboxes, newest first.
    pub sandboxes: Vec<SandboxObs>,
    /// Container attempts, newest first.
    pub containers: Vec<ContainerObs>,
}

impl ObservedPod {
    /// The newest sandbox.
    pub fn sandbox(&self) -> Option<&SandboxObs> {
        self.sandboxes.first()
    }

    /// The newest attempt of a container (highest attempt, then newest).
    pub fn latest(&self, name: &str) -> Option<&ContainerObs> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// The attempt before the newest one, for `lastState`.
    pub fn previous(&self, name: &str) -> Option<&ContainerObs> {
        self.containers.iter().filter(|c| c.name == name).nth(1)
    }

    /// Attempts of a container, newest first.
    pub fn attempts<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a ContainerObs> + 'a {
        self.containers.iter().filter(move |c| c.name == name)
    }

    /// Sorts sandboxes and containers newest first (stable order for the
    /// pure functions that read them).
    pub fn normalize(&mut self) {
        self.sandboxes
            .sort_by_key(|s| std::cmp::Reverse((s.attempt, s.created_at)));
        self.containers
            .sort_by_key(|c| std::cmp::Reverse((c.attempt, c.created_at)));
    }
}

fn uid_selector(uid: &str) -> HashMap<String, String> {
    HashMap::from([(labels::POD_UID.to_string(), uid.to_string())])
}

/// Details that only change with a sandbox's or container's state, kept
/// between observations so a steady pod costs two list calls per sync
/// instead of one status call per object (kubelet's PLEG likewise only
/// inspects containers whose state changed since the last relist).
#[derive(Debug, Default)]
pub struct ObserveCache {
    sandboxes: HashMap<String, SandboxObs>,
    containers: HashMap<String, ContainerObs>,
}

fn run_state(state: i32) -> RunState {
    match container_state(state) {
        cri::ContainerState::ContainerCreated => RunState::Created,
        cri::ContainerState::ContainerRunning => RunState::Running,
        cri::ContainerState::ContainerExited => RunState::Exited,
        cri::ContainerState::ContainerUnknown => RunState::Unknown,
    }
}

/// Reads the pod's sandboxes and containers from CRI by its UID label.
/// `cache` may be fresh; it is updated and pruned.
pub async fn observe(rt: &dyn Cri, uid: &str, cache: &mut ObserveCache) -> CriResult<ObservedPod> {
    let mut out = ObservedPod::default();
    let sandboxes = rt
        .list_pod_sandbox(Some(cri::PodSandboxFilter {
            label_selector: uid_selector(uid),
            ..Default::default()
        }))
        .await?;
    for sb in sandboxes {
        let ready = sandbox_state(sb.state) == cri::PodSandboxState::SandboxReady;
        if let Some(cached) = cache.sandboxes.get(&sb.id).filter(|c| c.ready == ready) {
            out.sandboxes.push(cached.clone());
            continue;
        }
        let mut ips = vec![];
        if ready {
            match rt.pod_sandbox_status(&sb.id).await {
                Ok(st) => {
                    if let Some(net) = st.network {
                        if !net.ip.is_empty() {
                            ips.push(net.ip);
                        }
                        ips.extend(net.additional_ips.into_iter().map(|p| p.ip));
                    }
                }
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            }
        }
        out.sandboxes.push(SandboxObs {
            id: sb.id,
            ready,
            attempt: sb.metadata.map(|m| m.attempt).unwrap_or(0),
            created_at: sb.created_at,
            ips,
        });
    }
    let containers = rt
        .list_containers(Some(cri::ContainerFilter {
            label_selector: uid_selector(uid),
            ..Default::default()
        }))
        .await?;
    for c in containers {
        let state = run_state(c.state);
        if let Some(cached) = cache.containers.get(&c.id).filter(|o| o.state == state) {
            out.containers.push(cached.clone());
            continue;
        }
        // ListContainers lacks exit codes and times; ContainerStatus has them.
        let st = match rt.container_status(&c.id).await {
            Ok(st) => st,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        let meta = st.metadata.clone().or(c.metadata).unwrap_or_default();
        out.containers.push(ContainerObs {
            id: c.id,
            sandbox_id: c.pod_sandbox_id,
            name: meta.name,
            attempt: meta.attempt,
            state: run_state(st.state),
            created_at: st.created_at,
            started_at: st.started_at,
            finished_at: st.finished_at,
            exit_code: st.exit_code,
            reason: st.reason,
            message: st.message,
            image: st.image.map(|i| i.image).unwrap_or_default(),
            image_ref: st.image_ref,
        });
    }
    out.normalize();
    cache.sandboxes = out
        .sandboxes
        .iter()
        .map(|s| (s.id.clone(), s.clone()))
        .collect();
    cache.containers = out
        .containers
        .iter()
        .map(|c| (c.id.clone(), c.clone()))
        .collect();
    Ok(out)
}
