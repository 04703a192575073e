//! The real CRI client: CRI v1 over gRPC (tonic) on a unix socket.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tracing::debug;

use super::api::{
    AttachRequest, AuthConfig, Container, ContainerConfig, ContainerFilter, ContainerStatusRequest,
    ContainerStatusResponse, CreateContainerRequest, ExecRequest, ExecSyncRequest,
    ExecSyncResponse, Image, ImageFilter, ImageSpec, ImageStatusRequest, ListContainersRequest,
    ListImagesRequest, ListPodSandboxRequest, PodSandbox, PodSandboxConfig, PodSandboxFilter,
    PodSandboxStatusRequest, PodSandboxStatusResponse, PortForwardRequest, PullImageRequest,
    RemoveContainerRequest, RemoveImageRequest, RemovePodSandboxRequest, ReopenContainerLogRequest,
    RunPodSandboxRequest, RuntimeStatus, StartContainerRequest, StatusRequest,
    StopContainerRequest, StopPodSandboxRequest, VersionRequest, VersionResponse,
};
use super::{image_spec, CriError, CtrImporter, ImageService, Result, RuntimeService};

/// The kubelet's limit for CRI messages (a node with many containers lists a lot).
const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;
/// Deadline for calls that should answer promptly.
const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(2 * 60);
/// Extra time a stop or exec gets on top of its own timeout.
const GRACE: Duration = Duration::from_secs(30);
/// The CRI version string this client speaks.
const CRI_API_VERSION: &str = "v1";

/// A CRI v1 client for a runtime listening on a unix socket.
///
/// Cheap to clone: clones share one HTTP/2 connection, which tonic re-opens
/// (through the socket path) when the runtime restarts.
#[derive(Debug, Clone)]
pub struct CriClient {
    endpoint: PathBuf,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    importer: Option<CtrImporter>,
    rpc_timeout: Duration,
}

impl CriClient {
    /// Connect to the CRI socket at `socket`.
    pub async fn connect(socket: impl AsRef<Path>) -> Result<CriClient> {
        let endpoint = socket.as_ref().to_owned();
        let path = endpoint.clone();
        // The URI is required by tonic but unused: the connector dials the socket.
        let channel =
            Endpoint::from_static("http://cri.invalid")
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                    }
                }))
                .await
                .map_err(|source| CriError::Connect {
                    endpoint: endpoint.clone(),
                    source,
                })?;
        let runtime = RuntimeServiceClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let images = ImageServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        Ok(CriClient {
            endpoint,
            runtime,
            images,
            importer: None,
            rpc_timeout: DEFAULT_RPC_TIMEOUT,
        })
    }

    /// Connect, retrying until the runtime answers `Version` (containerd's CRI
    /// plugin starts shortly after its socket) or `timeout` passes.
    pub async fn connect_when_ready(
        socket: impl AsRef<Path>,
        timeout: Duration,
    ) -> Result<CriClient> {
        let socket = socket.as_ref();
        let deadline = Instant::now() + timeout;
        loop {
            let last = match CriClient::connect(socket).await {
                Ok(client) => match client.version().await {
                    Ok(version) => {
                        debug!(runtime = %version.runtime_name, version = %version.runtime_version, "CRI runtime ready");
                        return Ok(client);
                    }
                    Err(err) => err.to_string(),
                },
                Err(err) => err.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(CriError::NotReady {
                    endpoint: socket.to_owned(),
                    timeout,
                    last,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Import image tarballs with `importer` ([`ImageService::import_image`]).
    pub fn with_importer(mut self, importer: CtrImporter) -> CriClient {
        self.importer = Some(importer);
        self
    }

    /// The deadline of calls without their own timeout (default 2 minutes).
    pub fn with_rpc_timeout(mut self, timeout: Duration) -> CriClient {
        self.rpc_timeout = timeout;
        self
    }

    /// The socket this client talks to.
    pub fn endpoint(&self) -> &Path {
        &self.endpoint
    }

    fn request<T>(&self, message: T, timeout: Option<Duration>) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(timeout) = timeout {
            request.set_timeout(timeout);
        }
        request
    }

    fn short<T>(&self, message: T) -> tonic::Request<T> {
        self.request(message, Some(self.rpc_timeout))
    }
}

impl RuntimeService for CriClient {
    async fn version(&self) -> Result<VersionResponse> {
        let request = self.short(VersionRequest {
            version: CRI_API_VERSION.to_owned(),
        });
        let response = self
            .runtime
            .clone()
            .version(request)
            .await
            .map_err(|s| CriError::rpc("Version", s))?;
        Ok(response.into_inner())
    }

    async fn run_pod_sandbox(
        &self,
        config: PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<String> {
        let request = self.short(RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: runtime_handler.to_owned(),
        });
        let response = self
            .runtime
            .clone()
            .run_pod_sandbox(request)
            .await
            .map_err(|s| CriError::rpc("RunPodSandbox", s))?;
        Ok(response.into_inner().pod_sandbox_id)
    }

    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        let request = self.short(StopPodSandboxRequest {
            pod_sandbox_id: sandbox_id.to_owned(),
        });
        self.runtime
            .clone()
            .stop_pod_sandbox(request)
            .await
            .map_err(|s| CriError::rpc("StopPodSandbox", s))?;
        Ok(())
    }

    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        let request = self.short(RemovePodSandboxRequest {
            pod_sandbox_id: sandbox_id.to_owned(),
        });
        self.runtime
            .clone()
            .remove_pod_sandbox(request)
            .await
            .map_err(|s| CriError::rpc("RemovePodSandbox", s))?;
        Ok(())
    }

    async fn pod_sandbox_status(
        &self,
        sandbox_id: &str,
        verbose: bool,
    ) -> Result<PodSandboxStatusResponse> {
        let request = self.short(PodSandboxStatusRequest {
            pod_sandbox_id: sandbox_id.to_owned(),
            verbose,
        });
        let response = self
            .runtime
            .clone()
            .pod_sandbox_status(request)
            .await
            .map_err(|s| CriError::rpc("PodSandboxStatus", s))?
            .into_inner();
        if response.status.is_none() {
            return Err(CriError::MissingField {
                method: "PodSandboxStatus",
                field: "status",
            });
        }
        Ok(response)
    }

    async fn list_pod_sandbox(&self, filter: Option<PodSandboxFilter>) -> Result<Vec<PodSandbox>> {
        let request = self.short(ListPodSandboxRequest { filter });
        let response = self
            .runtime
            .clone()
            .list_pod_sandbox(request)
            .await
            .map_err(|s| CriError::rpc("ListPodSandbox", s))?;
        Ok(response.into_inner().items)
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
        sandbox_config: PodSandboxConfig,
    ) -> Result<String> {
        let request = self.short(CreateContainerRequest {
            pod_sandbox_id: sandbox_id.to_owned(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        });
        let response = self
            .runtime
            .clone()
            .create_container(request)
            .await
            .map_err(|s| CriError::rpc("CreateContainer", s))?;
        Ok(response.into_inner().container_id)
    }

    async fn start_container(&self, container_id: &str) -> Result<()> {
        let request = self.short(StartContainerRequest {
            container_id: container_id.to_owned(),
        });
        self.runtime
            .clone()
            .start_container(request)
            .await
            .map_err(|s| CriError::rpc("StartContainer", s))?;
        Ok(())
    }

    async fn stop_container(&self, container_id: &str, timeout: Duration) -> Result<()> {
        let request = self.request(
            StopContainerRequest {
                container_id: container_id.to_owned(),
                timeout: seconds(timeout),
            },
            Some(timeout + GRACE),
        );
        self.runtime
            .clone()
            .stop_container(request)
            .await
            .map_err(|s| CriError::rpc("StopContainer", s))?;
        Ok(())
    }

    async fn remove_container(&self, container_id: &str) -> Result<()> {
        let request = self.short(RemoveContainerRequest {
            container_id: container_id.to_owned(),
        });
        self.runtime
            .clone()
            .remove_container(request)
            .await
            .map_err(|s| CriError::rpc("RemoveContainer", s))?;
        Ok(())
    }

    async fn container_status(
        &self,
        container_id: &str,
        verbose: bool,
    ) -> Result<ContainerStatusResponse> {
        let request = self.short(ContainerStatusRequest {
            container_id: container_id.to_owned(),
            verbose,
        });
        let response = self
            .runtime
            .clone()
            .container_status(request)
            .await
            .map_err(|s| CriError::rpc("ContainerStatus", s))?
            .into_inner();
        if response.status.is_none() {
            return Err(CriError::MissingField {
                method: "ContainerStatus",
                field: "status",
            });
        }
        Ok(response)
    }

    async fn list_containers(&self, filter: Option<ContainerFilter>) -> Result<Vec<Container>> {
        let request = self.short(ListContainersRequest { filter });
        let response = self
            .runtime
            .clone()
            .list_containers(request)
            .await
            .map_err(|s| CriError::rpc("ListContainers", s))?;
        Ok(response.into_inner().containers)
    }

    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<ExecSyncResponse> {
        let deadline = if timeout.is_zero() {
            None
        } else {
            Some(timeout + GRACE)
        };
        let request = self.request(
            ExecSyncRequest {
                container_id: container_id.to_owned(),
                cmd,
                timeout: seconds(timeout),
            },
            deadline,
        );
        let response = self
            .runtime
            .clone()
            .exec_sync(request)
            .await
            .map_err(|s| CriError::rpc("ExecSync", s))?;
        Ok(response.into_inner())
    }

    async fn status(&self) -> Result<RuntimeStatus> {
        let request = self.short(StatusRequest { verbose: false });
        let response = self
            .runtime
            .clone()
            .status(request)
            .await
            .map_err(|s| CriError::rpc("Status", s))?
            .into_inner();
        response.status.ok_or(CriError::MissingField {
            method: "Status",
            field: "status",
        })
    }

    async fn exec(&self, request: ExecRequest) -> Result<String> {
        let response = self
            .runtime
            .clone()
            .exec(self.short(request))
            .await
            .map_err(|s| CriError::rpc("Exec", s))?;
        Ok(response.into_inner().url)
    }

    async fn attach(&self, request: AttachRequest) -> Result<String> {
        let response = self
            .runtime
            .clone()
            .attach(self.short(request))
            .await
            .map_err(|s| CriError::rpc("Attach", s))?;
        Ok(response.into_inner().url)
    }

    async fn port_forward(&self, request: PortForwardRequest) -> Result<String> {
        let response = self
            .runtime
            .clone()
            .port_forward(self.short(request))
            .await
            .map_err(|s| CriError::rpc("PortForward", s))?;
        Ok(response.into_inner().url)
    }

    async fn reopen_container_log(&self, container_id: &str) -> Result<()> {
        let request = self.short(ReopenContainerLogRequest {
            container_id: container_id.to_owned(),
        });
        self.runtime
            .clone()
            .reopen_container_log(request)
            .await
            .map_err(|s| CriError::rpc("ReopenContainerLog", s))?;
        Ok(())
    }
}

impl ImageService for CriClient {
    async fn list_images(&self, filter: Option<ImageFilter>) -> Result<Vec<Image>> {
        let request = self.short(ListImagesRequest { filter });
        let response = self
            .images
            .clone()
            .list_images(request)
            .await
            .map_err(|s| CriError::rpc("ListImages", s))?;
        Ok(response.into_inner().images)
    }

    async fn image_status(&self, image: ImageSpec, verbose: bool) -> Result<Option<Image>> {
        let request = self.short(ImageStatusRequest {
            image: Some(image),
            verbose,
        });
        let response = self
            .images
            .clone()
            .image_status(request)
            .await
            .map_err(|s| CriError::rpc("ImageStatus", s))?;
        Ok(response.into_inner().image)
    }

    async fn pull_image(
        &self,
        image: ImageSpec,
        auth: Option<AuthConfig>,
        sandbox_config: Option<PodSandboxConfig>,
    ) -> Result<String> {
        // No deadline: a large image on a slow link takes what it takes; the
        // caller cancels by dropping the future.
        let request = self.request(
            PullImageRequest {
                image: Some(image),
                auth,
                sandbox_config,
            },
            None,
        );
        let response = self
            .images
            .clone()
            .pull_image(request)
            .await
            .map_err(|s| CriError::rpc("PullImage", s))?;
        Ok(response.into_inner().image_ref)
    }

    async fn remove_image(&self, image: ImageSpec) -> Result<()> {
        let request = self.short(RemoveImageRequest { image: Some(image) });
        self.images
            .clone()
            .remove_image(request)
            .await
            .map_err(|s| CriError::rpc("RemoveImage", s))?;
        Ok(())
    }

    async fn import_image(&self, tarball: &Path) -> Result<Vec<String>> {
        let importer = self.importer.as_ref().ok_or_else(|| CriError::NoImporter {
            endpoint: self.endpoint.clone(),
        })?;
        let names = importer.import(tarball).await?;
        // containerd's CRI plugin learns about the images from events; wait
        // until it lists each one so the caller can use them at once.
        let timeout = Duration::from_secs(10);
        for name in &names {
            let deadline = Instant::now() + timeout;
            while self.image_status(image_spec(name), false).await?.is_none() {
                if Instant::now() >= deadline {
                    return Err(CriError::ImportNotVisible {
                        tarball: tarball.to_owned(),
                        image: name.clone(),
                        timeout,
                    });
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(names)
    }
}

/// CRI timeouts are whole seconds; round up so a sub-second timeout is not 0
/// (which means "no timeout" or "kill at once", depending on the call).
fn seconds(timeout: Duration) -> i64 {
    let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_up_to_seconds() {
        assert_eq!(seconds(Duration::ZERO), 0);
        assert_eq!(seconds(Duration::from_millis(1)), 1);
        assert_eq!(seconds(Duration::from_secs(2)), 2);
        assert_eq!(seconds(Duration::from_millis(2500)), 3);
    }

    #[tokio::test]
    async fn connecting_to_a_missing_socket_fails_with_context() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("nothing.sock");
        let err = CriClient::connect(&socket).await.expect_err("no socket");
        assert!(matches!(err, CriError::Connect { .. }), "{err}");
        assert!(err.to_string().contains("nothing.sock"), "{err}");
        let err = CriClient::connect_when_ready(&socket, Duration::from_millis(200))
            .await
            .expect_err("never ready");
        assert!(matches!(err, CriError::NotReady { .. }), "{err}");
    }
}
