//! An in-memory CRI runtime for unit tests (a test double, not a runtime).
//!
//! It keeps sandboxes, containers and images in maps and follows the CRI
//! state rules that matter to the agent: containers start `CREATED`, become
//! `RUNNING` on start and `EXITED` on stop (or when a test calls
//! [`FakeRuntime::exit_container`]); stopping a sandbox stops its containers;
//! removing a sandbox removes them. Pulls fail unless the image was added,
//! as on a node with no registry. Every call is recorded in order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use k8s_cri::v1 as cri;

use super::{CriError, CriResult, ImageService, RuntimeService};

#[derive(Default)]
struct State {
    next_id: u64,
    clock_ns: i64,
    sandboxes: BTreeMap<String, cri::PodSandboxStatus>,
    containers: BTreeMap<String, cri::ContainerStatus>,
    container_sandbox: HashMap<String, String>,
    images: HashSet<String>,
    calls: Vec<String>,
    /// List calls, as `Method k=v,…` (their label selector), apart from
    /// `calls` so that a test can count polling.
    lists: Vec<String>,
    fail_next_start: Option<String>,
    /// Exit code `ExecSync` returns per container name (default 0).
    exec_exit: HashMap<String, i32>,
    configs: HashMap<String, cri::ContainerConfig>,
}

/// An in-memory [`RuntimeService`] + [`ImageService`].
#[derive(Default)]
pub struct FakeRuntime {
    state: Mutex<State>,
}

impl FakeRuntime {
    /// An empty runtime with the given images present.
    pub fn with_images(images: &[&str]) -> Self {
        let rt = FakeRuntime::default();
        if let Ok(mut s) = rt.state.lock() {
            s.images = images.iter().map(|s| s.to_string()).collect();
        }
        rt
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panicking test thread poisons the lock; the data is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The calls made so far, as `Method arg` strings, in order.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// The `ListPodSandbox` and `ListContainers` calls so far, as
    /// `Method k=v,…` with their label selector's pairs sorted.
    pub fn list_calls(&self) -> Vec<String> {
        self.lock().lists.clone()
    }

    fn record_list(&self, s: &mut State, method: &str, selector: &HashMap<String, String>) {
        let mut pairs: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.sort();
        s.lists.push(format!("{method} {}", pairs.join(",")));
    }

    /// Makes a running container exit with `exit_code`, as if its process ended.
    pub fn exit_container(&self, container_id: &str, exit_code: i32) {
        let mut s = self.lock();
        s.clock_ns += 1_000_000_000;
        let now = s.clock_ns;
        if let Some(c) = s.containers.get_mut(container_id) {
            c.state = cri::ContainerState::ContainerExited as i32;
            c.exit_code = exit_code;
            c.finished_at = now;
            c.reason = if exit_code == 0 { "Completed" } else { "Error" }.into();
        }
    }

    /// Makes the next `StartContainer` fail with this message.
    pub fn fail_next_start(&self, message: &str) {
        self.lock().fail_next_start = Some(message.into());
    }

    /// Makes every later `ExecSync` in containers named `name` exit with
    /// `exit_code` (probes and hooks see a failure when it is not 0).
    pub fn set_exec_exit_code(&self, name: &str, exit_code: i32) {
        self.lock().exec_exit.insert(name.into(), exit_code);
    }

    /// The config a container was created with (its `ContainerStatus`
    /// keeps labels, annotations, image and log path; this is for tests
    /// that check the mapping of the rest).
    pub fn created_config(&self, container_id: &str) -> Option<cri::ContainerConfig> {
        self.lock().configs.get(container_id).cloned()
    }

    /// Marks a sandbox NOTREADY, as when its pause process dies.
    pub fn kill_sandbox(&self, sandbox_id: &str) {
        if let Some(sb) = self.lock().sandboxes.get_mut(sandbox_id) {
            sb.state = cri::PodSandboxState::SandboxNotready as i32;
        }
    }

    /// Ids of all containers, in creation order.
    pub fn container_ids(&self) -> Vec<String> {
        let s = self.lock();
        let mut ids: Vec<_> = s
            .containers
            .values()
            .map(|c| (c.created_at, c.id.clone()))
            .collect();
        ids.sort();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    /// Number of sandboxes that exist.
    pub fn sandbox_count(&self) -> usize {
        self.lock().sandboxes.len()
    }

    fn record(&self, s: &mut State, call: String) {
        s.calls.push(call);
        s.clock_ns += 1_000_000_000;
    }
}

fn labels_match(labels: &HashMap<String, String>, selector: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[async_trait]
impl RuntimeService for FakeRuntime {
    async fn version(&self) -> CriResult<cri::VersionResponse> {
        Ok(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "fake".into(),
            runtime_version: "1.0.0".into(),
            runtime_api_version: "v1".into(),
        })
    }

    async fn run_pod_sandbox(&self, config: cri::PodSandboxConfig) -> CriResult<String> {
        let mut s = self.lock();
        s.next_id += 1;
        let id = format!("sb{}", s.next_id);
        self.record(&mut s, format!("RunPodSandbox {id}"));
        let n = s.next_id;
        let status = cri::PodSandboxStatus {
            id: id.clone(),
            metadata: config.metadata,
            state: cri::PodSandboxState::SandboxReady as i32,
            created_at: s.clock_ns,
            network: Some(cri::PodSandboxNetworkStatus {
                ip: format!("10.42.0.{}", n % 250 + 2),
                additional_ips: vec![],
            }),
            labels: config.labels,
            annotations: config.annotations,
            ..Default::default()
        };
        s.sandboxes.insert(id.clone(), status);
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> CriResult<()> {
        let mut s = self.lock();
        self.record(&mut s, format!("StopPodSandbox {sandbox_id}"));
        let now = s.clock_ns;
        let ids: Vec<String> = s
            .container_sandbox
            .iter()
            .filter(|(_, sb)| sb.as_str() == sandbox_id)
            .map(|(c, _)| c.clone())
            .collect();
        for id in ids {
            if let Some(c) = s.containers.get_mut(&id) {
                if c.state != cri::ContainerState::ContainerExited as i32 {
                    c.state = cri::ContainerState::ContainerExited as i32;
                    c.exit_code = 137;
                    c.finished_at = now;
                }
            }
        }
        match s.sandboxes.get_mut(sandbox_id) {
            Some(sb) => {
                sb.state = cri::PodSandboxState::SandboxNotready as i32;
                Ok(())
            }
            // CRI: StopPodSandbox on a missing sandbox must not fail.
            None => Ok(()),
        }
    }

    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> CriResult<()> {
        let mut s = self.lock();
        self.record(&mut s, format!("RemovePodSandbox {sandbox_id}"));
        s.sandboxes.remove(sandbox_id);
        let ids: Vec<String> = s
            .container_sandbox
            .iter()
            .filter(|(_, sb)| sb.as_str() == sandbox_id)
            .map(|(c, _)| c.clone())
            .collect();
        for id in ids {
            s.containers.remove(&id);
            s.container_sandbox.remove(&id);
        }
        Ok(())
    }

    async fn pod_sandbox_status(&self, sandbox_id: &str) -> CriResult<cri::PodSandboxStatus> {
        self.lock()
            .sandboxes
            .get(sandbox_id)
            .cloned()
            .ok_or_else(|| CriError::NotFound(format!("sandbox {sandbox_id}")))
    }

    async fn list_pod_sandbox(
        &self,
        filter: Option<cri::PodSandboxFilter>,
    ) -> CriResult<Vec<cri::PodSandbox>> {
        let mut s = self.lock();
        let f = filter.unwrap_or_default();
        self.record_list(&mut s, "ListPodSandbox", &f.label_selector);
        Ok(s.sandboxes
            .values()
            .filter(|sb| f.id.is_empty() || sb.id == f.id)
            .filter(|sb| f.state.is_none_or(|st| st.state == sb.state))
            .filter(|sb| labels_match(&sb.labels, &f.label_selector))
            .map(|sb| cri::PodSandbox {
                id: sb.id.clone(),
                metadata: sb.metadata.clone(),
                state: sb.state,
                created_at: sb.created_at,
                labels: sb.labels.clone(),
                annotations: sb.annotations.clone(),
                runtime_handler: String::new(),
            })
            .collect())
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: cri::ContainerConfig,
        _sandbox_config: cri::PodSandboxConfig,
    ) -> CriResult<String> {
        let mut s = self.lock();
        if !s.sandboxes.contains_key(sandbox_id) {
            return Err(CriError::NotFound(format!("sandbox {sandbox_id}")));
        }
        s.next_id += 1;
        let id = format!("c{}", s.next_id);
        let name = config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        self.record(&mut s, format!("CreateContainer {name} {id}"));
        s.configs.insert(id.clone(), config.clone());
        let image = config.image.clone().map(|i| i.image).unwrap_or_default();
        let status = cri::ContainerStatus {
            id: id.clone(),
            metadata: config.metadata,
            state: cri::ContainerState::ContainerCreated as i32,
            created_at: s.clock_ns,
            image: config.image,
            image_ref: format!("sha256:{image}"),
            labels: config.labels,
            annotations: config.annotations,
            log_path: config.log_path,
            ..Default::default()
        };
        s.containers.insert(id.clone(), status);
        s.container_sandbox.insert(id.clone(), sandbox_id.into());
        Ok(id)
    }

    async fn start_container(&self, container_id: &str) -> CriResult<()> {
        let mut s = self.lock();
        self.record(&mut s, format!("StartContainer {container_id}"));
        if let Some(message) = s.fail_next_start.take() {
            return Err(CriError::Rpc {
                code: tonic::Code::Unknown,
                message,
            });
        }
        let now = s.clock_ns;
        let c = s
            .containers
            .get_mut(container_id)
            .ok_or_else(|| CriError::NotFound(format!("container {container_id}")))?;
        c.state = cri::ContainerState::ContainerRunning as i32;
        c.started_at = now;
        Ok(())
    }

    async fn stop_container(&self, container_id: &str, timeout_seconds: i64) -> CriResult<()> {
        let mut s = self.lock();
        self.record(
            &mut s,
            format!("StopContainer {container_id} {timeout_seconds}"),
        );
        let now = s.clock_ns;
        if let Some(c) = s.containers.get_mut(container_id) {
            if c.state != cri::ContainerState::ContainerExited as i32 {
                c.state = cri::ContainerState::ContainerExited as i32;
                c.exit_code = 143;
                c.finished_at = now;
            }
        }
        Ok(())
    }

    async fn remove_container(&self, container_id: &str) -> CriResult<()> {
        let mut s = self.lock();
        self.record(&mut s, format!("RemoveContainer {container_id}"));
        s.containers.remove(container_id);
        s.container_sandbox.remove(container_id);
        Ok(())
    }

    async fn list_containers(
        &self,
        filter: Option<cri::ContainerFilter>,
    ) -> CriResult<Vec<cri::Container>> {
        let mut s = self.lock();
        let f = filter.unwrap_or_default();
        self.record_list(&mut s, "ListContainers", &f.label_selector);
        Ok(s.containers
            .values()
            .filter(|c| f.id.is_empty() || c.id == f.id)
            .filter(|c| {
                f.pod_sandbox_id.is_empty()
                    || s.container_sandbox.get(&c.id) == Some(&f.pod_sandbox_id)
            })
            .filter(|c| f.state.is_none_or(|st| st.state == c.state))
            .filter(|c| labels_match(&c.labels, &f.label_selector))
            .map(|c| cri::Container {
                id: c.id.clone(),
                pod_sandbox_id: s.container_sandbox.get(&c.id).cloned().unwrap_or_default(),
                metadata: c.metadata.clone(),
                image: c.image.clone(),
                image_ref: c.image_ref.clone(),
                state: c.state,
                created_at: c.created_at,
                labels: c.labels.clone(),
                annotations: c.annotations.clone(),
                image_id: c.image_ref.clone(),
            })
            .collect())
    }

    async fn container_status(&self, container_id: &str) -> CriResult<cri::ContainerStatus> {
        self.lock()
            .containers
            .get(container_id)
            .cloned()
            .ok_or_else(|| CriError::NotFound(format!("container {container_id}")))
    }

    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        _timeout_seconds: i64,
    ) -> CriResult<cri::ExecSyncResponse> {
        let mut s = self.lock();
        self.record(&mut s, format!("ExecSync {container_id} {}", cmd.join(" ")));
        let c = s
            .containers
            .get(container_id)
            .filter(|c| c.state == cri::ContainerState::ContainerRunning as i32)
            .ok_or_else(|| CriError::NotFound(format!("running container {container_id}")))?;
        let name = c
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        Ok(cri::ExecSyncResponse {
            exit_code: s.exec_exit.get(&name).copied().unwrap_or(0),
            ..Default::default()
        })
    }
}

#[async_trait]
impl ImageService for FakeRuntime {
    async fn image_status(&self, image: &str) -> CriResult<Option<cri::Image>> {
        let s = self.lock();
        Ok(s.images.contains(image).then(|| cri::Image {
            id: format!("sha256:{image}"),
            repo_tags: vec![image.into()],
            // containerd reports uid 0 for an image without a USER.
            uid: Some(cri::Int64Value { value: 0 }),
            ..Default::default()
        }))
    }

    async fn pull_image(
        &self,
        image: &str,
        _sandbox_config: Option<cri::PodSandboxConfig>,
    ) -> CriResult<String> {
        let mut s = self.lock();
        self.record(&mut s, format!("PullImage {image}"));
        Err(CriError::Rpc {
            code: tonic::Code::Unknown,
            message: format!(
                "failed to pull and unpack image \"{image}\": no registry reachable (fake)"
            ),
        })
    }

    async fn list_images(&self) -> CriResult<Vec<cri::Image>> {
        let s = self.lock();
        let mut images: Vec<cri::Image> = s
            .images
            .iter()
            .map(|i| cri::Image {
                id: format!("sha256:{i}"),
                repo_tags: vec![i.clone()],
                size: 1 << 20,
                ..Default::default()
            })
            .collect();
        images.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(images)
    }

    async fn remove_image(&self, image_id: &str) -> CriResult<()> {
        let mut s = self.lock();
        self.record(&mut s, format!("RemoveImage {image_id}"));
        let name = image_id
            .strip_prefix("sha256:")
            .unwrap_or(image_id)
            .to_string();
        s.images.remove(&name);
        Ok(())
    }
}
