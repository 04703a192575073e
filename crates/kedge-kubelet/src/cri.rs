//! The container runtime seam: CRI v1 as two traits.
//!
//! [`RuntimeService`] and [`ImageService`] mirror the kubelet's own CRI
//! interfaces (`k8s.io/cri-api/pkg/apis/services.go`) with the CRI v1 message
//! types from `k8s-cri` (re-exported as [`api`]). Two implementations:
//!
//! - [`CriClient`]: the real one, CRI v1 gRPC (tonic) over a unix socket.
//! - [`FakeRuntime`]: in memory, for unit tests of everything above CRI. It
//!   follows containerd 1.6's semantics where they matter to a kubelet (which
//!   calls are idempotent, what answers NotFound, names reserved until removal).
//!
//! Image import is not part of CRI. [`ImageService::import_image`] is here
//! because the agent needs one seam for "make this image available"; the real
//! client runs `ctr images import` against containerd's own API (see
//! [`CtrImporter`]).
//!
//! The traits use `impl Future + Send` returns (no boxing), so code above them
//! is generic over the runtime (`PodWorker<R: RuntimeService>`), not `dyn`.

mod client;
mod fake;
mod import;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

pub use k8s_cri::v1 as api;

pub use client::CriClient;
pub use fake::{ExecHandler, FakeRuntime};
pub use import::CtrImporter;

use api::{
    AttachRequest, AuthConfig, Container, ContainerConfig, ContainerFilter,
    ContainerStatusResponse, ExecRequest, ExecSyncResponse, Image, ImageFilter, ImageSpec,
    PodSandbox, PodSandboxConfig, PodSandboxFilter, PodSandboxStatusResponse, PortForwardRequest,
    RuntimeStatus, VersionResponse,
};

/// Errors of CRI calls, real or fake.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("cannot connect to the CRI endpoint {endpoint}: {source}")]
    Connect {
        endpoint: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    /// The runtime answered with a gRPC error (the fake answers the same way).
    #[error("CRI {method} failed: {}: {}", status.code(), status.message())]
    Rpc {
        method: &'static str,
        #[source]
        status: Box<tonic::Status>,
    },
    #[error("CRI {method} answered without {field}")]
    MissingField {
        method: &'static str,
        field: &'static str,
    },
    #[error("the CRI runtime at {endpoint} was not ready after {timeout:?}: {last}")]
    NotReady {
        endpoint: PathBuf,
        timeout: Duration,
        last: String,
    },
    #[error("no image importer is configured for the CRI endpoint {endpoint}")]
    NoImporter { endpoint: PathBuf },
    #[error("cannot run {program} to import {tarball}: {source}")]
    ImportSpawn {
        program: PathBuf,
        tarball: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("importing {tarball} failed ({status}): {stderr}")]
    ImportFailed {
        tarball: PathBuf,
        status: ExitStatus,
        stderr: String,
    },
    #[error("importing {tarball} named no image")]
    ImportEmpty { tarball: PathBuf },
    #[error(
        "imported {image} from {tarball}, but the CRI runtime does not list it after {timeout:?}"
    )]
    ImportNotVisible {
        tarball: PathBuf,
        image: String,
        timeout: Duration,
    },
    #[error("the fake runtime knows no importable tarball {tarball}")]
    FakeImport { tarball: PathBuf },
}

pub type Result<T, E = CriError> = std::result::Result<T, E>;

impl CriError {
    pub(crate) fn rpc(method: &'static str, status: tonic::Status) -> CriError {
        CriError::Rpc {
            method,
            status: Box::new(status),
        }
    }

    /// The gRPC status code, for errors the runtime answered.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            CriError::Rpc { status, .. } => Some(status.code()),
            _ => None,
        }
    }

    /// The runtime answered NotFound (no such sandbox, container or image).
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(tonic::Code::NotFound)
    }
}

/// The runtime half of CRI: sandboxes, containers, exec.
pub trait RuntimeService: Send + Sync {
    /// The runtime's name and versions (`containerRuntimeVersion` of the Node).
    fn version(&self) -> impl Future<Output = Result<VersionResponse>> + Send;

    /// Create and start a sandbox; returns its id. `runtime_handler` is the
    /// RuntimeClass handler ("" for the default).
    fn run_pod_sandbox(
        &self,
        config: PodSandboxConfig,
        runtime_handler: &str,
    ) -> impl Future<Output = Result<String>> + Send;

    /// Stop every container of the sandbox and tear its network down. Idempotent
    /// for a stopped sandbox; NotFound for an unknown one.
    fn stop_pod_sandbox(&self, sandbox_id: &str) -> impl Future<Output = Result<()>> + Send;

    /// Remove a stopped sandbox and its containers. Idempotent.
    fn remove_pod_sandbox(&self, sandbox_id: &str) -> impl Future<Output = Result<()>> + Send;

    fn pod_sandbox_status(
        &self,
        sandbox_id: &str,
        verbose: bool,
    ) -> impl Future<Output = Result<PodSandboxStatusResponse>> + Send;

    fn list_pod_sandbox(
        &self,
        filter: Option<PodSandboxFilter>,
    ) -> impl Future<Output = Result<Vec<PodSandbox>>> + Send;

    /// Create a container in a sandbox; returns its id. `sandbox_config` is
    /// the config the sandbox was created with.
    fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
        sandbox_config: PodSandboxConfig,
    ) -> impl Future<Output = Result<String>> + Send;

    fn start_container(&self, container_id: &str) -> impl Future<Output = Result<()>> + Send;

    /// SIGTERM (or the image's stop signal), SIGKILL after `timeout`.
    fn stop_container(
        &self,
        container_id: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Remove a container, stopping it first if needed. Idempotent.
    fn remove_container(&self, container_id: &str) -> impl Future<Output = Result<()>> + Send;

    fn container_status(
        &self,
        container_id: &str,
        verbose: bool,
    ) -> impl Future<Output = Result<ContainerStatusResponse>> + Send;

    fn list_containers(
        &self,
        filter: Option<ContainerFilter>,
    ) -> impl Future<Output = Result<Vec<Container>>> + Send;

    /// Run a command in a running container and collect its output.
    /// `timeout` zero means none.
    fn exec_sync(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> impl Future<Output = Result<ExecSyncResponse>> + Send;

    /// The runtime's conditions (`RuntimeReady`, `NetworkReady`).
    fn status(&self) -> impl Future<Output = Result<RuntimeStatus>> + Send;

    /// A streaming URL for an interactive exec (`Exec`).
    fn exec(&self, request: ExecRequest) -> impl Future<Output = Result<String>> + Send;

    /// A streaming URL to attach to a running container (`Attach`).
    fn attach(&self, request: AttachRequest) -> impl Future<Output = Result<String>> + Send;

    /// A streaming URL to forward ports of a sandbox (`PortForward`).
    fn port_forward(
        &self,
        request: PortForwardRequest,
    ) -> impl Future<Output = Result<String>> + Send;

    /// Ask the runtime to reopen a container's log file (after rotation).
    fn reopen_container_log(&self, container_id: &str) -> impl Future<Output = Result<()>> + Send;
}

/// The image half of CRI, plus import of image tarballs.
pub trait ImageService: Send + Sync {
    fn list_images(
        &self,
        filter: Option<ImageFilter>,
    ) -> impl Future<Output = Result<Vec<Image>>> + Send;

    /// The image, or `None` when the runtime does not have it.
    fn image_status(
        &self,
        image: ImageSpec,
        verbose: bool,
    ) -> impl Future<Output = Result<Option<Image>>> + Send;

    /// Pull an image; returns its reference (an image id or digest).
    fn pull_image(
        &self,
        image: ImageSpec,
        auth: Option<AuthConfig>,
        sandbox_config: Option<PodSandboxConfig>,
    ) -> impl Future<Output = Result<String>> + Send;

    /// Remove an image. Idempotent.
    fn remove_image(&self, image: ImageSpec) -> impl Future<Output = Result<()>> + Send;

    /// Import an image tarball (OCI layout or `docker save`); returns the
    /// names of the images it held, each visible through
    /// [`ImageService::image_status`] when this returns.
    fn import_image(&self, tarball: &Path) -> impl Future<Output = Result<Vec<String>>> + Send;
}

/// An [`ImageSpec`] naming `image`.
pub fn image_spec(image: &str) -> ImageSpec {
    ImageSpec {
        image: image.to_owned(),
        ..ImageSpec::default()
    }
}

/// Normalise an image reference as containerd and Docker do:
/// `busybox` → `docker.io/library/busybox:latest`,
/// `example.com/a/b` → `example.com/a/b:latest`; digests are kept.
pub fn normalize_image_ref(reference: &str) -> String {
    let (name, suffix) = match reference.split_once('@') {
        Some((name, digest)) => (name, Some(format!("@{digest}"))),
        None => (reference, None),
    };
    let (first, rest) = match name.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (name, None),
    };
    let is_domain = |s: &str| s.contains('.') || s.contains(':') || s == "localhost";
    let full = match rest {
        Some(rest) if is_domain(first) => format!("{first}/{rest}"),
        Some(_) => format!("docker.io/{name}"),
        None => format!("docker.io/library/{name}"),
    };
    match suffix {
        Some(digest) => format!("{full}{digest}"),
        None => {
            let last = full.rsplit('/').next().unwrap_or(&full);
            if last.contains(':') {
                full
            } else {
                format!("{full}:latest")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_refs_normalise_like_containerd() {
        assert_eq!(
            normalize_image_ref("busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            normalize_image_ref("busybox:1.36"),
            "docker.io/library/busybox:1.36"
        );
        assert_eq!(normalize_image_ref("user/app"), "docker.io/user/app:latest");
        assert_eq!(
            normalize_image_ref("kedge.local/pause:3.10"),
            "kedge.local/pause:3.10"
        );
        assert_eq!(
            normalize_image_ref("localhost:5000/x"),
            "localhost:5000/x:latest"
        );
        assert_eq!(
            normalize_image_ref("example.com/a@sha256:abc"),
            "example.com/a@sha256:abc"
        );
    }

    #[test]
    fn not_found_is_recognised() {
        let err = CriError::rpc("ContainerStatus", tonic::Status::not_found("gone"));
        assert!(err.is_not_found());
        assert_eq!(
            err.to_string(),
            "CRI ContainerStatus failed: Some requested entity was not found: gone"
        );
        let err = CriError::MissingField {
            method: "X",
            field: "y",
        };
        assert!(!err.is_not_found());
    }
}
