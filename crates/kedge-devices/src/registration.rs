//! The v1beta1 `Registration` service on
//! `<kubelet-root>/device-plugins/kubelet.sock`, where upstream plugin
//! DaemonSets look for it.
//!
//! At start the socket directory is created and stale sockets in it are
//! removed (plugins watch for `kubelet.sock` to be recreated and register
//! again). A `Register` call is checked (API version, extended resource
//! name, endpoint inside the directory), the plugin is dialled back at
//! `<dir>/<endpoint>` before the call answers (as upstream, so a plugin that
//! cannot be reached fails its registration), handed to the
//! [`DeviceManager`] and followed; when it is lost, the manager is told.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::net::UnixListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;
use tracing::{info, warn};

use crate::api::{self, v1beta1};
use crate::external::ExternalPlugin;
use crate::manager::DeviceManager;
use crate::plugin::DevicePlugin;

/// Errors starting the Registration service.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("failed to create the device plugin socket directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to clean up the device plugin socket directory {path}: {source}")]
    Cleanup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to listen on {path}: {source}")]
    Listen {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the Registration service listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationConfig {
    /// The kubelet root; plugins' sockets and `kubelet.sock` are in its
    /// `device-plugins` directory. Default `/var/lib/kubelet`.
    pub kubelet_root: PathBuf,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        RegistrationConfig {
            kubelet_root: PathBuf::from(api::DEFAULT_KUBELET_ROOT),
        }
    }
}

impl RegistrationConfig {
    /// `<kubelet-root>/device-plugins`.
    pub fn socket_dir(&self) -> PathBuf {
        self.kubelet_root.join(api::DEVICE_PLUGINS_DIR)
    }

    /// `<kubelet-root>/device-plugins/kubelet.sock`.
    pub fn socket_path(&self) -> PathBuf {
        self.socket_dir().join(api::KUBELET_SOCKET)
    }
}

/// The running Registration service. Dropping it stops the service (the
/// plugins already registered keep being followed by the manager).
#[derive(Debug)]
pub struct RegistrationServer {
    socket: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    plugins: Arc<Mutex<BTreeMap<String, Arc<ExternalPlugin>>>>,
}

impl RegistrationServer {
    /// Create the socket directory, remove stale sockets and serve
    /// `Registration` on `kubelet.sock`.
    pub async fn start(
        config: &RegistrationConfig,
        manager: DeviceManager,
    ) -> Result<RegistrationServer, RegistrationError> {
        let dir = config.socket_dir();
        std::fs::create_dir_all(&dir).map_err(|source| RegistrationError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        // Upstream's mode for the socket directory; failure is not fatal.
        if let Err(err) = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)) {
            warn!(dir = %dir.display(), %err, "could not set the device plugin directory's mode");
        }
        remove_stale_sockets(&dir).map_err(|source| RegistrationError::Cleanup {
            path: dir.clone(),
            source,
        })?;
        let socket = config.socket_path();
        let listener = UnixListener::bind(&socket).map_err(|source| RegistrationError::Listen {
            path: socket.clone(),
            source,
        })?;
        let plugins = Arc::new(Mutex::new(BTreeMap::new()));
        let service = RegistrationService {
            dir,
            manager,
            plugins: plugins.clone(),
        };
        let (shutdown, stop) = oneshot::channel::<()>();
        let incoming = UnixListenerStream::new(listener);
        let task = tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(v1beta1::registration_server::RegistrationServer::new(
                    service,
                ))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stop.await;
                })
                .await;
            if let Err(err) = served {
                warn!(%err, "device plugin registration service failed");
            }
        });
        info!(socket = %socket.display(), version = api::VERSION, "serving device plugin registration");
        Ok(RegistrationServer {
            socket,
            shutdown: Some(shutdown),
            task: Some(task),
            plugins,
        })
    }

    /// `kubelet.sock`.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The external plugins registered now, by resource.
    pub fn plugins(&self) -> BTreeMap<String, Arc<ExternalPlugin>> {
        self.plugins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stop serving and remove `kubelet.sock`.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for RegistrationServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Remove every socket in `dir` (upstream removes the directory's files at
/// start; plugins take a new `kubelet.sock` as the signal to register again).
fn remove_stale_sockets(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        match entry.file_type() {
            Ok(kind) if kind.is_socket() => {
                info!(socket = %path.display(), "removing stale device plugin socket");
                std::fs::remove_file(&path)?;
            }
            Ok(_) => {}
            Err(err) => {
                warn!(path = %path.display(), %err, "cannot stat device plugin directory entry")
            }
        }
    }
    Ok(())
}

/// Upstream's `IsExtendedResourceName`: fully qualified, outside the
/// `kubernetes.io` namespace, and `requests.<name>` a valid qualified name.
pub fn is_extended_resource_name(name: &str) -> bool {
    let Some((prefix, _)) = name.split_once('/') else {
        return false;
    };
    if prefix == "kubernetes.io"
        || prefix.ends_with(".kubernetes.io")
        || name.starts_with("requests.")
    {
        return false;
    }
    is_qualified_name(&format!("requests.{name}"))
}

/// Kubernetes' `IsQualifiedName`: `[prefix/]name`, prefix a DNS-1123
/// subdomain, name at most 63 characters of `[A-Za-z0-9._-]` starting and
/// ending alphanumeric.
fn is_qualified_name(value: &str) -> bool {
    let (prefix, name) = match value.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, value),
    };
    if let Some(prefix) = prefix {
        if !is_dns1123_subdomain(prefix) {
            return false;
        }
    }
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_dns1123_subdomain(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 253
        && value.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
                && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// A plugin's endpoint is a socket name inside the plugin directory.
fn is_valid_endpoint(endpoint: &str) -> bool {
    !endpoint.is_empty() && endpoint != "." && endpoint != ".." && !endpoint.contains('/')
}

struct RegistrationService {
    dir: PathBuf,
    manager: DeviceManager,
    plugins: Arc<Mutex<BTreeMap<String, Arc<ExternalPlugin>>>>,
}

#[tonic::async_trait]
impl v1beta1::registration_server::Registration for RegistrationService {
    async fn register(
        &self,
        request: tonic::Request<v1beta1::RegisterRequest>,
    ) -> Result<tonic::Response<v1beta1::Empty>, tonic::Status> {
        let request = request.into_inner();
        let resource = request.resource_name;
        info!(%resource, endpoint = %request.endpoint, version = %request.version, "device plugin registration request");
        if !api::SUPPORTED_VERSIONS.contains(&request.version.as_str()) {
            let message = format!(
                "requested API version {:?} is not supported by kubelet. Supported versions are {:?}",
                request.version,
                api::SUPPORTED_VERSIONS
            );
            info!(%resource, %message, "bad device plugin registration request");
            return Err(tonic::Status::unknown(message));
        }
        if !is_extended_resource_name(&resource) {
            let message = format!("the ResourceName {resource:?} is invalid");
            info!(%message, "bad device plugin registration request");
            return Err(tonic::Status::unknown(message));
        }
        if !is_valid_endpoint(&request.endpoint) {
            let message = format!(
                "the endpoint {:?} is not a socket name in {}",
                request.endpoint,
                self.dir.display()
            );
            info!(%resource, %message, "bad device plugin registration request");
            return Err(tonic::Status::unknown(message));
        }
        let socket = self.dir.join(&request.endpoint);
        let plugin = ExternalPlugin::connect(&resource, &socket)
            .await
            .map_err(|err| {
                info!(%resource, %err, "error connecting to device plugin");
                tonic::Status::unknown(err.to_string())
            })?;
        let shared: Arc<dyn DevicePlugin> = plugin.clone();
        self.manager.add_plugin(shared.clone());
        let replaced = self
            .plugins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(resource.clone(), plugin.clone());
        if let Some(old) = replaced {
            old.stop();
        }
        plugin.start();
        let manager = self.manager.clone();
        let plugins = self.plugins.clone();
        let follower = plugin.clone();
        tokio::spawn(async move {
            let cause = follower.lost().await;
            manager.plugin_lost(&shared, &cause);
            let mut plugins = plugins.lock().unwrap_or_else(|e| e.into_inner());
            if plugins
                .get(follower.resource_name())
                .is_some_and(|p| Arc::ptr_eq(p, &follower))
            {
                plugins.remove(follower.resource_name());
            }
        });
        info!(%resource, socket = %socket.display(), options = ?plugin.options(), "device plugin registered");
        Ok(tonic::Response::new(v1beta1::Empty {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_resource_names_follow_upstream() {
        for good in [
            "example.com/widget",
            "nvidia.com/gpu",
            "gpu.intel.com/i915",
            "google.com/edge-tpu",
        ] {
            assert!(is_extended_resource_name(good), "{good}");
        }
        for bad in [
            "widget",
            "kubernetes.io/widget",
            "foo.kubernetes.io/widget",
            "requests.example.com/widget",
            "Example.com/widget",
            "example.com/",
            "example.com/-widget",
            "example.com/a/b",
            "",
        ] {
            assert!(!is_extended_resource_name(bad), "{bad}");
        }
    }

    #[test]
    fn endpoints_stay_inside_the_plugin_directory() {
        assert!(is_valid_endpoint("widget.sock"));
        for bad in ["", ".", "..", "../kubelet.sock", "a/b.sock", "/tmp/x.sock"] {
            assert!(!is_valid_endpoint(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn start_removes_stale_sockets_but_keeps_other_files() {
        let root = tempfile::tempdir().expect("temp dir");
        let config = RegistrationConfig {
            kubelet_root: root.path().to_owned(),
        };
        let dir = config.socket_dir();
        std::fs::create_dir_all(&dir).expect("mkdir");
        let stale = dir.join("old-plugin.sock");
        let _held = std::os::unix::net::UnixListener::bind(&stale).expect("bind stale socket");
        std::os::unix::net::UnixListener::bind(config.socket_path())
            .expect("bind stale kubelet.sock");
        std::fs::write(dir.join("notes.txt"), b"keep").expect("write file");

        let state = tempfile::tempdir().expect("temp dir");
        let manager = DeviceManager::open(crate::manager::DeviceManagerConfig::for_data_dir(
            state.path(),
        ))
        .expect("manager");
        let server = RegistrationServer::start(&config, manager)
            .await
            .expect("start");
        assert!(!stale.exists(), "stale plugin socket removed");
        assert!(dir.join("notes.txt").exists(), "other files kept");
        let kind = std::fs::symlink_metadata(server.socket_path())
            .expect("kubelet.sock")
            .file_type();
        assert!(kind.is_socket());
        server.shutdown().await;
        assert!(
            !config.socket_path().exists(),
            "kubelet.sock removed at shutdown"
        );
    }
}
