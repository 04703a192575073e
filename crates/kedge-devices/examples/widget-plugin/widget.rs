//! The widget device plugin: an external plugin as a plugin DaemonSet would
//! run one, speaking only the public v1beta1 API.
//!
//! It serves `DevicePlugin` on `<device-plugins-dir>/<endpoint>` (default
//! `widget.sock`), registers `example.com/widget` with the `Registration`
//! service on `kubelet.sock` in the same directory, and lists `widget-0` ..
//! `widget-<n-1>` (three by default). Allocate answers, for the chosen IDs:
//!
//! - env `WIDGETS=<ids joined by ",">`;
//! - a read-only mount of the host's share directory at `/opt/widget`;
//! - for each ID, the host node `<dev-dir>/<id>` as `/dev/<id>` (`rw`);
//! - annotation `example.com/widgets=<ids joined by ";">`;
//! - with `cdi`, CDI devices `example.com/widget=<id>`.
//!
//! GetPreferredAllocation prefers the highest IDs (so a test can tell that
//! the preference was followed). When `kubelet.sock` is recreated (the
//! kubelet restarted and removed every socket in the directory) the plugin
//! serves again on a new socket and registers again, as upstream plugins do.
//!
//! One copy, used three ways: the `widget-plugin` example program
//! (`main.rs` next to this file), the Registration/DeviceManager test of
//! kedge-devices (`tests/external_plugin.rs`) and the end-to-end test of the
//! node agent (`crates/kedge/tests/agent_external_plugin.rs`), which include
//! it with `#[path]`.

// Each includer uses a different part of this module.
#![allow(dead_code)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use hyper_util::rt::TokioIo;
use kedge_devices::api::v1beta1;
use kedge_devices::api::v1beta1::device_plugin_server::{DevicePlugin, DevicePluginServer};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{UnixListenerStream, WatchStream};
use tonic::transport::{Endpoint, Uri};
use tonic::{Request, Response, Status};
use tracing::{info, warn};

/// The resource the plugin registers.
pub const RESOURCE: &str = "example.com/widget";
/// Where Allocate mounts the share directory in the container.
pub const SHARE_MOUNT: &str = "/opt/widget";
/// How often `kubelet.sock` is checked for having been recreated.
const KUBELET_SOCKET_POLL: Duration = Duration::from_millis(200);

/// Errors of the widget plugin.
#[derive(Debug, thiserror::Error)]
pub enum WidgetError {
    #[error("{0}\nusage: widget-plugin --dev-dir DIR --share-dir DIR [--device-plugins-dir DIR | --kubelet-root DIR] [--endpoint NAME] [--count N] [--cdi]")]
    Usage(String),
    #[error(
        "cannot serve the device plugin on {path}: {source} (the node agent makes its directory: is it running with this kubelet root?)"
    )]
    Listen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot reach the kubelet's Registration service at {path}: {message} (is the node agent running with this kubelet root?)")]
    Dial { path: PathBuf, message: String },
    #[error("the kubelet refused the registration of {RESOURCE}: {0}")]
    Refused(Status),
}

/// What the plugin serves and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WidgetConfig {
    /// `<kubelet-root>/device-plugins`: `kubelet.sock` is there, and the
    /// plugin's own socket goes there.
    pub plugin_dir: PathBuf,
    /// The plugin's socket name in `plugin_dir`.
    pub endpoint: String,
    /// How many widgets: `widget-0` .. `widget-<count-1>`.
    pub count: usize,
    /// Host directory with one device node per widget, named by ID.
    pub dev_dir: PathBuf,
    /// Host directory mounted read-only at [`SHARE_MOUNT`].
    pub share_dir: PathBuf,
    /// Also answer CDI device names.
    pub cdi: bool,
}

impl WidgetConfig {
    /// Three widgets on `widget.sock`, no CDI.
    pub fn new(plugin_dir: &Path, dev_dir: &Path, share_dir: &Path) -> WidgetConfig {
        WidgetConfig {
            plugin_dir: plugin_dir.to_owned(),
            endpoint: "widget.sock".to_owned(),
            count: 3,
            dev_dir: dev_dir.to_owned(),
            share_dir: share_dir.to_owned(),
            cdi: false,
        }
    }

    /// From command-line arguments (without the program name). The device
    /// plugin directory defaults to upstream's
    /// `/var/lib/kubelet/device-plugins`.
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<WidgetConfig, WidgetError> {
        let mut plugin_dir = Path::new(kedge_devices::api::DEFAULT_KUBELET_ROOT)
            .join(kedge_devices::api::DEVICE_PLUGINS_DIR);
        let mut endpoint = None;
        let mut count = None;
        let mut dev_dir = None;
        let mut share_dir = None;
        let mut cdi = false;
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let mut value = || {
                args.next()
                    .ok_or_else(|| WidgetError::Usage(format!("{flag} needs a value")))
            };
            match flag.as_str() {
                "--cdi" => cdi = true,
                "--device-plugins-dir" => plugin_dir = PathBuf::from(value()?),
                "--kubelet-root" => {
                    plugin_dir =
                        PathBuf::from(value()?).join(kedge_devices::api::DEVICE_PLUGINS_DIR)
                }
                "--endpoint" => endpoint = Some(value()?),
                "--count" => {
                    let n = value()?;
                    count = Some(n.parse::<usize>().map_err(|e| {
                        WidgetError::Usage(format!("--count {n:?} is not a count: {e}"))
                    })?)
                }
                "--dev-dir" => dev_dir = Some(PathBuf::from(value()?)),
                "--share-dir" => share_dir = Some(PathBuf::from(value()?)),
                _ => return Err(WidgetError::Usage(format!("unknown argument {flag:?}"))),
            }
        }
        let dev_dir = dev_dir.ok_or_else(|| WidgetError::Usage("--dev-dir is required".into()))?;
        let share_dir =
            share_dir.ok_or_else(|| WidgetError::Usage("--share-dir is required".into()))?;
        let mut config = WidgetConfig::new(&plugin_dir, &dev_dir, &share_dir);
        if let Some(endpoint) = endpoint {
            config.endpoint = endpoint;
        }
        if let Some(count) = count {
            config.count = count;
        }
        config.cdi = cdi;
        Ok(config)
    }

    /// The plugin's socket.
    pub fn socket(&self) -> PathBuf {
        self.plugin_dir.join(&self.endpoint)
    }

    /// The kubelet's Registration socket.
    pub fn kubelet_socket(&self) -> PathBuf {
        self.plugin_dir.join(kedge_devices::api::KUBELET_SOCKET)
    }

    /// `widget-0` .. `widget-<count-1>`.
    pub fn device_ids(&self) -> Vec<String> {
        (0..self.count).map(|n| format!("widget-{n}")).collect()
    }

    /// The RegisterRequest this plugin sends.
    pub fn register_request(&self) -> v1beta1::RegisterRequest {
        v1beta1::RegisterRequest {
            version: kedge_devices::api::VERSION.to_owned(),
            endpoint: self.endpoint.clone(),
            resource_name: RESOURCE.to_owned(),
            options: Some(options()),
        }
    }
}

fn options() -> v1beta1::DevicePluginOptions {
    v1beta1::DevicePluginOptions {
        pre_start_required: false,
        get_preferred_allocation_available: true,
    }
}

/// State that outlives each serving of the socket.
#[derive(Debug)]
struct Shared {
    config: WidgetConfig,
    devices: watch::Sender<Vec<v1beta1::Device>>,
    /// Every Allocate call's device IDs, in order.
    allocations: Mutex<Vec<Vec<String>>>,
}

/// The `DevicePlugin` service of one serving of the socket.
struct WidgetService {
    shared: Arc<Shared>,
    /// Turns true when this serving ends: its ListAndWatch streams end.
    stopped: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl DevicePlugin for WidgetService {
    async fn get_device_plugin_options(
        &self,
        _: Request<v1beta1::Empty>,
    ) -> Result<Response<v1beta1::DevicePluginOptions>, Status> {
        Ok(Response::new(options()))
    }

    type ListAndWatchStream =
        futures::stream::BoxStream<'static, Result<v1beta1::ListAndWatchResponse, Status>>;

    async fn list_and_watch(
        &self,
        _: Request<v1beta1::Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let mut stopped = self.stopped.clone();
        let stream = WatchStream::new(self.shared.devices.subscribe())
            .map(|devices| Ok(v1beta1::ListAndWatchResponse { devices }))
            .take_until(async move {
                let _ = stopped.wait_for(|s| *s).await;
            });
        Ok(Response::new(stream.boxed()))
    }

    async fn get_preferred_allocation(
        &self,
        request: Request<v1beta1::PreferredAllocationRequest>,
    ) -> Result<Response<v1beta1::PreferredAllocationResponse>, Status> {
        let container_responses = request
            .into_inner()
            .container_requests
            .into_iter()
            .map(|r| v1beta1::ContainerPreferredAllocationResponse {
                device_i_ds: preferred(
                    r.available_device_i_ds,
                    &r.must_include_device_i_ds,
                    usize::try_from(r.allocation_size).unwrap_or(0),
                ),
            })
            .collect();
        Ok(Response::new(v1beta1::PreferredAllocationResponse {
            container_responses,
        }))
    }

    async fn allocate(
        &self,
        request: Request<v1beta1::AllocateRequest>,
    ) -> Result<Response<v1beta1::AllocateResponse>, Status> {
        let known = self.shared.config.device_ids();
        let mut container_responses = Vec::new();
        for container in request.into_inner().container_requests {
            let ids = container.devices_ids;
            if let Some(unknown) = ids.iter().find(|id| !known.contains(id)) {
                return Err(Status::invalid_argument(format!(
                    "unknown {RESOURCE} device {unknown:?}"
                )));
            }
            info!(devices = ?ids, "Allocate");
            self.shared
                .allocations
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(ids.clone());
            container_responses.push(container_allocation(&self.shared.config, &ids));
        }
        Ok(Response::new(v1beta1::AllocateResponse {
            container_responses,
        }))
    }

    async fn pre_start_container(
        &self,
        _: Request<v1beta1::PreStartContainerRequest>,
    ) -> Result<Response<v1beta1::PreStartContainerResponse>, Status> {
        Err(Status::unimplemented(
            "PreStartContainer is not required by this plugin",
        ))
    }
}

/// The must-include IDs, then the highest available ones, `size` in all.
fn preferred(mut available: Vec<String>, must_include: &[String], size: usize) -> Vec<String> {
    available.sort();
    available.reverse();
    let mut chosen: Vec<String> = must_include.to_vec();
    chosen.extend(
        available
            .into_iter()
            .filter(|id| !must_include.contains(id)),
    );
    chosen.truncate(size);
    chosen
}

/// What Allocate answers for one container holding `ids`.
pub fn container_allocation(
    config: &WidgetConfig,
    ids: &[String],
) -> v1beta1::ContainerAllocateResponse {
    v1beta1::ContainerAllocateResponse {
        envs: [("WIDGETS".to_owned(), ids.join(","))]
            .into_iter()
            .collect(),
        mounts: vec![v1beta1::Mount {
            container_path: SHARE_MOUNT.to_owned(),
            host_path: config.share_dir.display().to_string(),
            read_only: true,
        }],
        devices: ids
            .iter()
            .map(|id| v1beta1::DeviceSpec {
                container_path: format!("/dev/{id}"),
                host_path: config.dev_dir.join(id).display().to_string(),
                permissions: "rw".to_owned(),
            })
            .collect(),
        annotations: [(format!("{RESOURCE}s"), ids.join(";"))]
            .into_iter()
            .collect(),
        cdi_devices: if config.cdi {
            ids.iter()
                .map(|id| v1beta1::CdiDevice {
                    name: format!("{RESOURCE}={id}"),
                })
                .collect()
        } else {
            Vec::new()
        },
    }
}

/// One serving of the plugin socket.
struct Serving {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    socket: PathBuf,
}

impl Serving {
    /// Bind the socket (replacing a stale one of ours) and serve.
    fn start(shared: &Arc<Shared>) -> Result<Serving, WidgetError> {
        let socket = shared.config.socket();
        match std::fs::remove_file(&socket) {
            Ok(()) => info!(socket = %socket.display(), "removed a stale plugin socket"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(WidgetError::Listen {
                    path: socket,
                    source,
                })
            }
        }
        let listener = UnixListener::bind(&socket).map_err(|source| WidgetError::Listen {
            path: socket.clone(),
            source,
        })?;
        let (stop, stopped) = watch::channel(false);
        let service = WidgetService {
            shared: shared.clone(),
            stopped: stopped.clone(),
        };
        let mut shutdown = stopped;
        let task = tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(DevicePluginServer::new(service))
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
                    let _ = shutdown.wait_for(|s| *s).await;
                })
                .await;
            if let Err(err) = served {
                warn!(%err, "the widget plugin's server failed");
            }
        });
        info!(socket = %socket.display(), "serving the widget device plugin");
        Ok(Serving { stop, task, socket })
    }

    /// End the streams, stop serving and remove the socket.
    fn stop(self) {
        self.stop.send_replace(true);
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Call `Register` on the kubelet's Registration service.
pub async fn register(
    kubelet_socket: &Path,
    request: v1beta1::RegisterRequest,
) -> Result<(), WidgetError> {
    let path = kubelet_socket.to_owned();
    // The URI is required by tonic but unused: the connector dials the socket.
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .map_err(|e| WidgetError::Dial {
            path: kubelet_socket.to_owned(),
            message: error_chain(&e),
        })?;
    v1beta1::registration_client::RegistrationClient::new(channel)
        .register(request)
        .await
        .map(|_| ())
        .map_err(WidgetError::Refused)
}

/// An error and its sources, `: `-separated.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(err), |e| e.source())
        .map(ToString::to_string)
        .fold(Vec::<String>::new(), |mut parts, part| {
            // tonic repeats an io::Error as its own source.
            if parts.last() != Some(&part) {
                parts.push(part);
            }
            parts
        })
        .join(": ")
}

/// Which `kubelet.sock` is there now (None: none): a new one means the
/// kubelet restarted.
fn socket_identity(path: &Path) -> Option<(u64, u64, i64, i64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino(), m.ctime(), m.ctime_nsec()))
}

/// A running widget plugin. Dropping it stops it like [`WidgetPlugin::stop`].
pub struct WidgetPlugin {
    shared: Arc<Shared>,
    serving: Arc<Mutex<Option<Serving>>>,
    supervisor: Option<JoinHandle<()>>,
    registrations: watch::Receiver<u64>,
}

impl WidgetPlugin {
    /// Serve the socket, without registering (a caller that registers by
    /// itself, e.g. to try requests the kubelet must refuse).
    pub fn serve(config: WidgetConfig) -> Result<WidgetPlugin, WidgetError> {
        let devices = config
            .device_ids()
            .into_iter()
            .map(|id| v1beta1::Device {
                id,
                health: kedge_devices::api::HEALTHY.to_owned(),
                topology: None,
            })
            .collect();
        let (devices, _) = watch::channel(devices);
        let shared = Arc::new(Shared {
            config,
            devices,
            allocations: Mutex::new(Vec::new()),
        });
        let serving = Serving::start(&shared)?;
        let (_, registrations) = watch::channel(0);
        Ok(WidgetPlugin {
            shared,
            serving: Arc::new(Mutex::new(Some(serving))),
            supervisor: None,
            registrations,
        })
    }

    /// Serve, register, and serve and register again whenever
    /// `kubelet.sock` is recreated.
    pub async fn start(config: WidgetConfig) -> Result<WidgetPlugin, WidgetError> {
        let mut plugin = WidgetPlugin::serve(config)?;
        let kubelet_socket = plugin.shared.config.kubelet_socket();
        let registered_with = socket_identity(&kubelet_socket);
        register(&kubelet_socket, plugin.shared.config.register_request()).await?;
        info!(kubelet = %kubelet_socket.display(), resource = RESOURCE, "registered");
        let (count, registrations) = watch::channel(1);
        plugin.registrations = registrations;
        plugin.supervisor = Some(tokio::spawn(supervise(
            plugin.shared.clone(),
            plugin.serving.clone(),
            registered_with,
            count,
        )));
        Ok(plugin)
    }

    /// Change a widget's health (reported over ListAndWatch).
    pub fn set_health(&self, id: &str, healthy: bool) {
        let health = if healthy {
            kedge_devices::api::HEALTHY
        } else {
            kedge_devices::api::UNHEALTHY
        };
        self.shared.devices.send_modify(|devices| {
            for device in devices.iter_mut().filter(|d| d.id == id) {
                device.health = health.to_owned();
            }
        });
    }

    /// The device IDs of every Allocate call so far.
    pub fn allocations(&self) -> Vec<Vec<String>> {
        self.shared
            .allocations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Successful registrations so far (the first one included).
    pub fn registrations(&self) -> watch::Receiver<u64> {
        self.registrations.clone()
    }

    /// Stop: the ListAndWatch streams end and the socket goes, as when a
    /// plugin exits cleanly.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(task) = self.supervisor.take() {
            task.abort();
        }
        if let Some(serving) = self
            .serving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            serving.stop();
        }
    }
}

impl Drop for WidgetPlugin {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Watch `kubelet.sock`; when a new one appears, serve on a fresh socket
/// (the kubelet removed ours at its start) and register again, retrying
/// until it succeeds.
async fn supervise(
    shared: Arc<Shared>,
    serving: Arc<Mutex<Option<Serving>>>,
    mut registered_with: Option<(u64, u64, i64, i64)>,
    registrations: watch::Sender<u64>,
) {
    let kubelet_socket = shared.config.kubelet_socket();
    let mut ticks = tokio::time::interval(KUBELET_SOCKET_POLL);
    loop {
        ticks.tick().await;
        let now = socket_identity(&kubelet_socket);
        if now.is_none() {
            // The kubelet is gone; whatever appears next is a new one.
            registered_with = None;
            continue;
        }
        if now == registered_with {
            continue;
        }
        info!(kubelet = %kubelet_socket.display(), "kubelet.sock was recreated: serving and registering again");
        let fresh = match Serving::start(&shared) {
            Ok(fresh) => fresh,
            Err(err) => {
                warn!(%err, "cannot serve again; retrying");
                continue;
            }
        };
        let old = serving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(fresh);
        if let Some(old) = old {
            // Its socket path is the fresh one's: end its streams only.
            old.stop.send_replace(true);
            old.task.abort();
        }
        match register(&kubelet_socket, shared.config.register_request()).await {
            Ok(()) => {
                info!(resource = RESOURCE, "registered again");
                registered_with = now;
                registrations.send_modify(|n| *n += 1);
            }
            Err(err) => warn!(%err, "registering again failed; retrying"),
        }
    }
}
