//! The Container Runtime Interface as the agent sees it.
//!
//! CRI (`k8s.io/cri-api`, `runtime.v1`) is two gRPC services that containerd
//! serves on a unix socket: `RuntimeService` (sandboxes and containers) and
//! `ImageService` (images). The agent talks to them only through the two traits
//! below, so the pod worker can be driven by [`fake::FakeRuntime`] in unit tests
//! and by [`remote::RemoteRuntime`] in production.
//!
//! ```text
//!  pod worker ──► dyn Cri (RuntimeService + ImageService)
//!                   ├─ RemoteRuntime  tonic over <containerd.sock>
//!                   └─ FakeRuntime    in-memory, for tests
//! ```
//!
//! The traits take and return the generated `k8s_cri::v1` messages so the
//! names stay those of the CRI proto; they cover only the calls the agent makes.
//! Errors: every `tonic::Status` becomes a [`CriError`] in exactly one place,
//! [`CriError::from_status`].

pub mod fake;
pub mod remote;
pub mod timing;

use async_trait::async_trait;
use k8s_cri::v1 as cri;

pub use remote::RemoteRuntime;

/// Label keys kubelet puts on sandboxes and containers, so that the pod state
/// can be rebuilt from CRI alone (kubelet `pkg/kubelet/types/labels.go`).
pub mod labels {
    /// Pod name label.
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    /// Pod namespace label.
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    /// Pod UID label.
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    /// Container name label.
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    /// Skiff's own label: the node whose agent made the sandbox/container.
    /// Housekeeping and log lookups only touch objects with their node's
    /// value, so agents sharing one containerd never touch each other's pods.
    pub const SKIFF_NODE: &str = "io.skiff.node";
}

/// Why a CRI call failed.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    /// The object (sandbox, container, image) does not exist. Not retryable
    /// as such; callers usually treat it as "already gone".
    #[error("CRI: not found: {0}")]
    NotFound(String),
    /// The runtime is not reachable (socket missing, connection refused,
    /// runtime restarting). Retryable.
    #[error("CRI: runtime unavailable: {0}")]
    Unavailable(String),
    /// A deadline passed. Retryable.
    #[error("CRI: deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// Any other gRPC failure; the message is the runtime's own (for example
    /// the reason a pull or a `runc create` failed) and is shown to users in
    /// container waiting messages. Retryable with back-off.
    #[error("CRI: {code:?}: {message}")]
    Rpc {
        /// gRPC status code.
        code: tonic::Code,
        /// The runtime's message.
        message: String,
    },
    /// The connection to the socket could not be set up. Retryable.
    #[error("CRI: cannot connect to {path}: {source}")]
    Connect {
        /// The socket path.
        path: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The runtime answered without a field the CRI proto says it must send.
    #[error("CRI: malformed response: {0}")]
    Malformed(&'static str),
}

impl CriError {
    /// The one place where gRPC statuses become agent errors.
    pub fn from_status(status: tonic::Status) -> Self {
        let message = status.message().to_string();
        match status.code() {
            tonic::Code::NotFound => CriError::NotFound(message),
            tonic::Code::Unavailable => CriError::Unavailable(message),
            tonic::Code::DeadlineExceeded => CriError::DeadlineExceeded(message),
            code => CriError::Rpc { code, message },
        }
    }

    /// Whether the error says the object is already gone; teardown treats
    /// this as success (kubelet does the same for NotFound on stop/remove).
    pub fn is_not_found(&self) -> bool {
        matches!(self, CriError::NotFound(_))
    }

    /// The runtime's own message, without the "CRI:" framing, for
    /// container waiting messages.
    pub fn message(&self) -> String {
        match self {
            CriError::NotFound(m)
            | CriError::Unavailable(m)
            | CriError::DeadlineExceeded(m)
            | CriError::Rpc { message: m, .. } => m.clone(),
            other => other.to_string(),
        }
    }
}

/// The error of a call a runtime does not implement.
fn unimplemented(call: &str) -> CriError {
    CriError::Rpc {
        code: tonic::Code::Unimplemented,
        message: format!("{call} is not implemented by this runtime"),
    }
}

/// Result of a CRI call.
pub type CriResult<T> = Result<T, CriError>;

/// The subset of CRI `RuntimeService` the agent uses.
#[async_trait]
pub trait RuntimeService: Send + Sync {
    /// `Version`: runtime name and version (for `nodeInfo`).
    async fn version(&self) -> CriResult<cri::VersionResponse>;
    /// `RunPodSandbox`: creates and starts a sandbox; returns its id.
    async fn run_pod_sandbox(&self, config: cri::PodSandboxConfig) -> CriResult<String>;
    /// `StopPodSandbox`: stops every container in it and tears down its network.
    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> CriResult<()>;
    /// `RemovePodSandbox`: removes it (and its containers).
    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> CriResult<()>;
    /// `PodSandboxStatus`.
    async fn pod_sandbox_status(&self, sandbox_id: &str) -> CriResult<cri::PodSandboxStatus>;
    /// `ListPodSandbox`.
    async fn list_pod_sandbox(
        &self,
        filter: Option<cri::PodSandboxFilter>,
    ) -> CriResult<Vec<cri::PodSandbox>>;
    /// `CreateContainer` in a sandbox; returns the container id.
    async fn create_container(
        &self,
        sandbox_id: &str,
        config: cri::ContainerConfig,
        sandbox_config: cri::PodSandboxConfig,
    ) -> CriResult<String>;
    /// `StartContainer`.
    async fn start_container(&self, container_id: &str) -> CriResult<()>;
    /// `StopContainer`: SIGTERM, then SIGKILL after `timeout_seconds`.
    async fn stop_container(&self, container_id: &str, timeout_seconds: i64) -> CriResult<()>;
    /// `RemoveContainer`.
    async fn remove_container(&self, container_id: &str) -> CriResult<()>;
    /// `ListContainers`.
    async fn list_containers(
        &self,
        filter: Option<cri::ContainerFilter>,
    ) -> CriResult<Vec<cri::Container>>;
    /// `ContainerStatus`.
    async fn container_status(&self, container_id: &str) -> CriResult<cri::ContainerStatus>;
    /// `ExecSync`: runs `cmd` in the container and waits up to
    /// `timeout_seconds` (0 = no limit) for it; used by exec probes and
    /// lifecycle hooks. The default answers `Unimplemented`, so runtimes
    /// written before it (test doubles) keep compiling.
    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        timeout_seconds: i64,
    ) -> CriResult<cri::ExecSyncResponse> {
        let _ = (container_id, cmd, timeout_seconds);
        Err(CriError::Rpc {
            code: tonic::Code::Unimplemented,
            message: "ExecSync is not implemented by this runtime".into(),
        })
    }

    /// `Exec`: prepares an interactive exec and returns the URL of the
    /// runtime's streaming server that serves it (SPDY, `v4.channel.k8s.io`).
    /// Default: `Unimplemented`.
    async fn exec(&self, req: cri::ExecRequest) -> CriResult<String> {
        let _ = req;
        Err(unimplemented("Exec"))
    }

    /// `Attach`: like [`RuntimeService::exec`], for the container's main
    /// process. Default: `Unimplemented`.
    async fn attach(&self, req: cri::AttachRequest) -> CriResult<String> {
        let _ = req;
        Err(unimplemented("Attach"))
    }

    /// `PortForward`: the streaming URL that forwards into the sandbox's
    /// network namespace (SPDY, `portforward.k8s.io`). Default:
    /// `Unimplemented`.
    async fn port_forward(&self, req: cri::PortForwardRequest) -> CriResult<String> {
        let _ = req;
        Err(unimplemented("PortForward"))
    }

    /// `ListContainerStats`: cpu and memory of containers. Default:
    /// `Unimplemented`.
    async fn list_container_stats(
        &self,
        filter: Option<cri::ContainerStatsFilter>,
    ) -> CriResult<Vec<cri::ContainerStats>> {
        let _ = filter;
        Err(unimplemented("ListContainerStats"))
    }
}

/// The subset of CRI `ImageService` the agent uses.
#[async_trait]
pub trait ImageService: Send + Sync {
    /// `ImageStatus`: `None` when the image is not present.
    async fn image_status(&self, image: &str) -> CriResult<Option<cri::Image>>;
    /// `PullImage`: returns the image reference (id) of the pulled image.
    async fn pull_image(
        &self,
        image: &str,
        sandbox_config: Option<cri::PodSandboxConfig>,
    ) -> CriResult<String>;
    /// `ListImages`: every image present.
    async fn list_images(&self) -> CriResult<Vec<cri::Image>>;
    /// `RemoveImage` by id (all its tags go); removing an absent image is
    /// not an error.
    async fn remove_image(&self, image_id: &str) -> CriResult<()>;
}

/// A whole runtime: both services. Implemented for every type that has both.
pub trait Cri: RuntimeService + ImageService {}
impl<T: RuntimeService + ImageService> Cri for T {}

/// Converts the `state` integer of a CRI container into its enum; unknown
/// values (from a newer runtime) read as `ContainerUnknown`.
pub fn container_state(state: i32) -> cri::ContainerState {
    cri::ContainerState::try_from(state).unwrap_or(cri::ContainerState::ContainerUnknown)
}

/// Converts the `state` integer of a CRI sandbox into its enum; unknown
/// values read as `SandboxNotready`.
pub fn sandbox_state(state: i32) -> cri::PodSandboxState {
    cri::PodSandboxState::try_from(state).unwrap_or(cri::PodSandboxState::SandboxNotready)
}
