//! The real CRI client: tonic over containerd's unix socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint};

use super::timing::Timed;
use super::{CriError, CriResult, ImageService, RuntimeService};

/// How long one ordinary CRI call may take. Kubelet's default
/// `--runtime-request-timeout` is 2 minutes; image pulls get the same here.
pub const RUNTIME_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Largest gRPC message accepted. Kubelet raises the default 4 MiB to 16 MiB
/// because `ListContainers` on a busy node exceeds it.
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// CRI client over a unix socket. Cheap to clone: tonic channels multiplex.
#[derive(Clone, Debug)]
pub struct RemoteRuntime {
    runtime: RuntimeServiceClient<Timed<Channel>>,
    image: ImageServiceClient<Timed<Channel>>,
    socket: PathBuf,
}

impl RemoteRuntime {
    /// Connects to the CRI socket (e.g. containerd's `containerd.sock`).
    pub async fn connect(socket: &Path) -> CriResult<Self> {
        let path = socket.to_path_buf();
        let connect_err = |source| CriError::Connect {
            path: socket.display().to_string(),
            source,
        };
        // The URI is a placeholder: the connector below ignores it and dials
        // the unix socket instead (tonic needs some http URI to build requests).
        let endpoint = Endpoint::try_from("http://[::]:50051")
            .map_err(connect_err)?
            .timeout(RUNTIME_REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5));
        let connector_path = path.clone();
        let channel = endpoint
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let p = connector_path.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(p).await?,
                    ))
                }
            }))
            .await
            .map_err(connect_err)?;
        Ok(RemoteRuntime {
            runtime: RuntimeServiceClient::new(Timed(channel.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            image: ImageServiceClient::new(Timed(channel))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            socket: path,
        })
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

/// Unwraps a tonic response, converting its error once.
fn ok<T>(r: Result<tonic::Response<T>, tonic::Status>) -> CriResult<T> {
    r.map(tonic::Response::into_inner)
        .map_err(CriError::from_status)
}

#[async_trait]
impl RuntimeService for RemoteRuntime {
    async fn version(&self) -> CriResult<cri::VersionResponse> {
        ok(self
            .runtime
            .clone()
            .version(cri::VersionRequest {
                version: "v1".into(),
            })
            .await)
    }

    async fn run_pod_sandbox(&self, config: cri::PodSandboxConfig) -> CriResult<String> {
        let r = ok(self
            .runtime
            .clone()
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await)?;
        Ok(r.pod_sandbox_id)
    }

    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> CriResult<()> {
        ok(self
            .runtime
            .clone()
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: sandbox_id.into(),
            })
            .await)
        .map(|_| ())
    }

    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> CriResult<()> {
        ok(self
            .runtime
            .clone()
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: sandbox_id.into(),
            })
            .await)
        .map(|_| ())
    }

    async fn pod_sandbox_status(&self, sandbox_id: &str) -> CriResult<cri::PodSandboxStatus> {
        ok(self
            .runtime
            .clone()
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: sandbox_id.into(),
                verbose: false,
            })
            .await)?
        .status
        .ok_or(CriError::Malformed(
            "PodSandboxStatusResponse.status missing",
        ))
    }

    async fn list_pod_sandbox(
        &self,
        filter: Option<cri::PodSandboxFilter>,
    ) -> CriResult<Vec<cri::PodSandbox>> {
        Ok(ok(self
            .runtime
            .clone()
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter })
            .await)?
        .items)
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: cri::ContainerConfig,
        sandbox_config: cri::PodSandboxConfig,
    ) -> CriResult<String> {
        Ok(ok(self
            .runtime
            .clone()
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox_id.into(),
                config: Some(config),
                sandbox_config: Some(sandbox_config),
            })
            .await)?
        .container_id)
    }

    async fn start_container(&self, container_id: &str) -> CriResult<()> {
        ok(self
            .runtime
            .clone()
            .start_container(cri::StartContainerRequest {
                container_id: container_id.into(),
            })
            .await)
        .map(|_| ())
    }

    async fn stop_container(&self, container_id: &str, timeout_seconds: i64) -> CriResult<()> {
        ok(self
            .runtime
            .clone()
            .stop_container(cri::StopContainerRequest {
                container_id: container_id.into(),
                timeout: timeout_seconds,
            })
            .await)
        .map(|_| ())
    }

    async fn remove_container(&self, container_id: &str) -> CriResult<()> {
        ok(self
            .runtime
            .clone()
            .remove_container(cri::RemoveContainerRequest {
                container_id: container_id.into(),
            })
            .await)
        .map(|_| ())
    }

    async fn list_containers(
        &self,
        filter: Option<cri::ContainerFilter>,
    ) -> CriResult<Vec<cri::Container>> {
        Ok(ok(self
            .runtime
            .clone()
            .list_containers(cri::ListContainersRequest { filter })
            .await)?
        .containers)
    }

    async fn container_status(&self, container_id: &str) -> CriResult<cri::ContainerStatus> {
        ok(self
            .runtime
            .clone()
            .container_status(cri::ContainerStatusRequest {
                container_id: container_id.into(),
                verbose: false,
            })
            .await)?
        .status
        .ok_or(CriError::Malformed(
            "ContainerStatusResponse.status missing",
        ))
    }

    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        timeout_seconds: i64,
    ) -> CriResult<cri::ExecSyncResponse> {
        let mut req = tonic::Request::new(cri::ExecSyncRequest {
            container_id: container_id.into(),
            cmd,
            timeout: timeout_seconds,
        });
        // The runtime enforces `timeout`; the gRPC deadline gets a little
        // more so that the runtime's answer, not ours, reports the timeout.
        if timeout_seconds > 0 {
            req.set_timeout(Duration::from_secs(timeout_seconds.unsigned_abs() + 5));
        }
        ok(self.runtime.clone().exec_sync(req).await)
    }

    async fn exec(&self, req: cri::ExecRequest) -> CriResult<String> {
        Ok(ok(self.runtime.clone().exec(req).await)?.url)
    }

    async fn attach(&self, req: cri::AttachRequest) -> CriResult<String> {
        Ok(ok(self.runtime.clone().attach(req).await)?.url)
    }

    async fn port_forward(&self, req: cri::PortForwardRequest) -> CriResult<String> {
        Ok(ok(self.runtime.clone().port_forward(req).await)?.url)
    }

    async fn list_container_stats(
        &self,
        filter: Option<cri::ContainerStatsFilter>,
    ) -> CriResult<Vec<cri::ContainerStats>> {
        Ok(ok(self
            .runtime
            .clone()
            .list_container_stats(cri::ListContainerStatsRequest { filter })
            .await)?
        .stats)
    }
}

#[async_trait]
impl ImageService for RemoteRuntime {
    async fn image_status(&self, image: &str) -> CriResult<Option<cri::Image>> {
        Ok(ok(self
            .image
            .clone()
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await)?
        .image)
    }

    async fn pull_image(
        &self,
        image: &str,
        sandbox_config: Option<cri::PodSandboxConfig>,
    ) -> CriResult<String> {
        Ok(ok(self
            .image
            .clone()
            .pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                auth: None,
                sandbox_config,
            })
            .await)?
        .image_ref)
    }

    async fn list_images(&self) -> CriResult<Vec<cri::Image>> {
        Ok(ok(self
            .image
            .clone()
            .list_images(cri::ListImagesRequest { filter: None })
            .await)?
        .images)
    }

    async fn remove_image(&self, image_id: &str) -> CriResult<()> {
        ok(self
            .image
            .clone()
            .remove_image(cri::RemoveImageRequest {
                image: Some(cri::ImageSpec {
                    image: image_id.into(),
                    ..Default::default()
                }),
            })
            .await)?;
        Ok(())
    }
}
