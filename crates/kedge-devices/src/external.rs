//! An external device plugin: a process serving the v1beta1 `DevicePlugin`
//! service on a unix socket, followed by the agent as upstream's kubelet does.
//!
//! [`ExternalPlugin::connect`] dials the socket (10 s, upstream's dial timeout)
//! and asks GetDevicePluginOptions; [`ExternalPlugin::start`] follows
//! ListAndWatch into the [`DevicePlugin::devices`] watch channel. When the
//! stream ends or the socket disappears the plugin is lost: all its devices
//! turn unhealthy at once (with a [`HealthEvent`] each) and
//! [`ExternalPlugin::lost`] resolves, so that the device manager can remove
//! the resource after its grace period. GetPreferredAllocation is called only
//! when the options offer it, PreStartContainer only when they require it
//! (with upstream's 30 s deadline); Allocate and GetPreferredAllocation carry
//! no deadline, as upstream.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint, Uri};
use tracing::{debug, info, warn};

use crate::api::{self, v1beta1};
use crate::plugin::{
    BoxFuture, ContainerAllocation, Device, DeviceError, DevicePlugin, DeviceSpec, HealthEvent,
    MountSpec,
};

/// How often a followed plugin's socket is checked for existence: a plugin
/// that removes its socket is gone even if its stream has not ended yet.
const SOCKET_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Errors connecting to an external plugin.
#[derive(Debug, thiserror::Error)]
pub enum ExternalPluginError {
    #[error("failed to dial device plugin: {socket}: {message}")]
    Dial { socket: PathBuf, message: String },
    #[error("failed to get device plugin options from {socket}: {status}")]
    Options {
        socket: PathBuf,
        status: tonic::Status,
    },
}

/// What a plugin told GetDevicePluginOptions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PluginOptions {
    /// PreStartContainer must be called before each container start.
    pub pre_start_required: bool,
    /// GetPreferredAllocation is implemented.
    pub get_preferred_allocation_available: bool,
}

impl From<v1beta1::DevicePluginOptions> for PluginOptions {
    fn from(options: v1beta1::DevicePluginOptions) -> Self {
        PluginOptions {
            pre_start_required: options.pre_start_required,
            get_preferred_allocation_available: options.get_preferred_allocation_available,
        }
    }
}

/// State shared between the plugin handle and its ListAndWatch follower.
#[derive(Debug)]
struct Shared {
    resource: String,
    socket: PathBuf,
    devices: watch::Sender<Vec<Device>>,
    health: broadcast::Sender<HealthEvent>,
    /// `Some(cause)` once the plugin is lost.
    lost: watch::Sender<Option<String>>,
}

/// A registered external plugin, seen through the [`DevicePlugin`] interface.
#[derive(Debug)]
pub struct ExternalPlugin {
    shared: Arc<Shared>,
    client: v1beta1::device_plugin_client::DevicePluginClient<Channel>,
    options: PluginOptions,
    follower: Mutex<Option<JoinHandle<()>>>,
}

impl ExternalPlugin {
    /// Dial the plugin at `socket` and read its options. Nothing is followed
    /// until [`ExternalPlugin::start`].
    pub async fn connect(
        resource: &str,
        socket: &Path,
    ) -> Result<Arc<ExternalPlugin>, ExternalPluginError> {
        let path = socket.to_owned();
        // The URI is required by tonic but unused: the connector dials the socket.
        let endpoint = Endpoint::from_static("http://localhost");
        let connect = endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }));
        let channel = match tokio::time::timeout(api::DIAL_TIMEOUT, connect).await {
            Ok(Ok(channel)) => channel,
            Ok(Err(err)) => {
                return Err(ExternalPluginError::Dial {
                    socket: socket.to_owned(),
                    message: error_chain(&err),
                })
            }
            Err(_) => {
                return Err(ExternalPluginError::Dial {
                    socket: socket.to_owned(),
                    message: format!("no connection within {:?}", api::DIAL_TIMEOUT),
                })
            }
        };
        let mut client = v1beta1::device_plugin_client::DevicePluginClient::new(channel);
        let options: PluginOptions = client
            .get_device_plugin_options(v1beta1::Empty {})
            .await
            .map_err(|status| ExternalPluginError::Options {
                socket: socket.to_owned(),
                status,
            })?
            .into_inner()
            .into();
        debug!(resource, socket = %socket.display(), ?options, "connected to device plugin");
        let (devices, _) = watch::channel(Vec::new());
        let (health, _) = broadcast::channel(64);
        let (lost, _) = watch::channel(None);
        Ok(Arc::new(ExternalPlugin {
            shared: Arc::new(Shared {
                resource: resource.to_owned(),
                socket: socket.to_owned(),
                devices,
                health,
                lost,
            }),
            client,
            options,
            follower: Mutex::new(None),
        }))
    }

    /// Follow ListAndWatch (once; later calls do nothing).
    pub fn start(&self) {
        let mut follower = self.follower.lock().unwrap_or_else(|e| e.into_inner());
        if follower.is_none() {
            let shared = self.shared.clone();
            let client = self.client.clone();
            *follower = Some(tokio::spawn(follow(shared, client)));
        }
    }

    /// Stop following without declaring the plugin lost (a new registration
    /// for the same resource replaced it).
    pub fn stop(&self) {
        if let Some(task) = self
            .follower
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
    }

    /// The options the plugin answered at connection.
    pub fn options(&self) -> PluginOptions {
        self.options
    }

    /// The plugin's socket.
    pub fn socket(&self) -> &Path {
        &self.shared.socket
    }

    /// Why the plugin was lost, once it is.
    pub fn lost_cause(&self) -> Option<String> {
        self.shared.lost.borrow().clone()
    }

    /// Resolves when the plugin is lost (its ListAndWatch stream ended or its
    /// socket disappeared), with the cause.
    pub async fn lost(&self) -> String {
        let mut rx = self.shared.lost.subscribe();
        let cause = match rx.wait_for(Option::is_some).await {
            Ok(cause) => cause.clone().unwrap_or_default(),
            // The sender lives in `self.shared`: it cannot close while `self` exists.
            Err(_) => String::from("device plugin handle dropped"),
        };
        cause
    }

    fn check_connected(&self) -> Result<(), DeviceError> {
        if self.shared.lost.borrow().is_some() {
            return Err(DeviceError::Disconnected {
                resource: self.shared.resource.clone(),
            });
        }
        Ok(())
    }
}

impl Drop for ExternalPlugin {
    fn drop(&mut self) {
        self.stop();
    }
}

impl DevicePlugin for ExternalPlugin {
    fn resource_name(&self) -> &str {
        &self.shared.resource
    }

    fn devices(&self) -> watch::Receiver<Vec<Device>> {
        self.shared.devices.subscribe()
    }

    fn health_events(&self) -> Option<broadcast::Receiver<HealthEvent>> {
        Some(self.shared.health.subscribe())
    }

    fn get_preferred_allocation(
        &self,
        available: &[String],
        must_include: &[String],
        size: usize,
    ) -> BoxFuture<'_, Result<Option<Vec<String>>, DeviceError>> {
        let request = v1beta1::PreferredAllocationRequest {
            container_requests: vec![v1beta1::ContainerPreferredAllocationRequest {
                available_device_i_ds: available.to_vec(),
                must_include_device_i_ds: must_include.to_vec(),
                allocation_size: i32::try_from(size).unwrap_or(i32::MAX),
            }],
        };
        Box::pin(async move {
            if !self.options.get_preferred_allocation_available {
                return Ok(None);
            }
            self.check_connected()?;
            let response = self
                .client
                .clone()
                .get_preferred_allocation(request)
                .await
                .map_err(|status| DeviceError::Call {
                    resource: self.shared.resource.clone(),
                    call: "GetPreferredAllocation",
                    message: status.message().to_owned(),
                })?
                .into_inner();
            Ok(response
                .container_responses
                .into_iter()
                .next()
                .map(|r| r.device_i_ds)
                .filter(|ids| !ids.is_empty()))
        })
    }

    fn pre_start_container(&self, ids: &[String]) -> BoxFuture<'_, Result<(), DeviceError>> {
        let request = v1beta1::PreStartContainerRequest {
            devices_ids: ids.to_vec(),
        };
        Box::pin(async move {
            if !self.options.pre_start_required {
                return Ok(());
            }
            self.check_connected()?;
            let mut client = self.client.clone();
            let call = client.pre_start_container(request);
            match tokio::time::timeout(api::PRE_START_CONTAINER_TIMEOUT, call).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(status)) => Err(DeviceError::Call {
                    resource: self.shared.resource.clone(),
                    call: "PreStartContainer",
                    message: status.message().to_owned(),
                }),
                Err(_) => Err(DeviceError::Call {
                    resource: self.shared.resource.clone(),
                    call: "PreStartContainer",
                    message: format!("no answer within {:?}", api::PRE_START_CONTAINER_TIMEOUT),
                }),
            }
        })
    }

    fn allocate(&self, ids: &[String]) -> BoxFuture<'_, Result<ContainerAllocation, DeviceError>> {
        let request = v1beta1::AllocateRequest {
            container_requests: vec![v1beta1::ContainerAllocateRequest {
                devices_ids: ids.to_vec(),
            }],
        };
        Box::pin(async move {
            self.check_connected()?;
            let response = self
                .client
                .clone()
                .allocate(request)
                .await
                .map_err(|status| DeviceError::Allocate {
                    resource: self.shared.resource.clone(),
                    message: status.message().to_owned(),
                })?
                .into_inner();
            response
                .container_responses
                .into_iter()
                .next()
                .map(container_allocation)
                .ok_or_else(|| DeviceError::Allocate {
                    resource: self.shared.resource.clone(),
                    message: "no containers return in allocation response".to_owned(),
                })
        })
    }
}

/// An Allocate container response in the shared interface's terms.
pub fn container_allocation(response: v1beta1::ContainerAllocateResponse) -> ContainerAllocation {
    ContainerAllocation {
        devices: response
            .devices
            .into_iter()
            .map(|d| DeviceSpec {
                container_path: d.container_path,
                host_path: d.host_path,
                permissions: d.permissions,
            })
            .collect(),
        mounts: response
            .mounts
            .into_iter()
            .map(|m| MountSpec {
                container_path: m.container_path,
                host_path: m.host_path,
                read_only: m.read_only,
            })
            .collect(),
        envs: response.envs.into_iter().collect::<BTreeMap<_, _>>(),
        annotations: response.annotations.into_iter().collect::<BTreeMap<_, _>>(),
        cdi_devices: response.cdi_devices.into_iter().map(|c| c.name).collect(),
    }
}

/// A ListAndWatch device in the shared interface's terms: anything but
/// "Healthy" is unhealthy, as upstream.
fn device(device: v1beta1::Device) -> Device {
    Device {
        healthy: device.health == api::HEALTHY,
        numa_node: device.topology.and_then(|t| t.nodes.first().map(|n| n.id)),
        id: device.id,
    }
}

/// Follow ListAndWatch until the stream ends or the socket disappears, then
/// declare the plugin lost.
async fn follow(
    shared: Arc<Shared>,
    mut client: v1beta1::device_plugin_client::DevicePluginClient<Channel>,
) {
    let cause = match client.list_and_watch(v1beta1::Empty {}).await {
        Err(status) => format!("ListAndWatch failed: {}", status.message()),
        Ok(response) => {
            let mut stream = response.into_inner();
            let mut socket_check = tokio::time::interval(SOCKET_CHECK_INTERVAL);
            loop {
                tokio::select! {
                    message = stream.message() => match message {
                        Ok(Some(list)) => publish(&shared, list),
                        Ok(None) => break "ListAndWatch stream ended".to_owned(),
                        Err(status) => {
                            break format!("ListAndWatch ended unexpectedly: {}", status.message())
                        }
                    },
                    _ = socket_check.tick() => {
                        if tokio::fs::symlink_metadata(&shared.socket).await.is_err() {
                            break format!("socket {} is gone", shared.socket.display());
                        }
                    }
                }
            }
        }
    };
    mark_lost(&shared, cause);
}

/// Publish a ListAndWatch answer, with a health event for each device whose
/// health changed or that disappeared.
fn publish(shared: &Shared, list: v1beta1::ListAndWatchResponse) {
    let mut devices: Vec<Device> = list.devices.into_iter().map(device).collect();
    devices.sort_by(|a, b| a.id.cmp(&b.id));
    let previous = shared.devices.borrow().clone();
    debug!(resource = %shared.resource, devices = devices.len(), "ListAndWatch update");
    shared.devices.send_replace(devices.clone());
    for old in &previous {
        let reason = match devices.iter().find(|d| d.id == old.id) {
            Some(new) if new.healthy == old.healthy => continue,
            Some(new) if new.healthy => "reported Healthy by its device plugin",
            Some(_) => "reported Unhealthy by its device plugin",
            None if old.healthy => "no longer listed by its device plugin",
            None => continue,
        };
        let healthy = devices.iter().any(|d| d.id == old.id && d.healthy);
        let _ = shared.health.send(HealthEvent {
            device_id: old.id.clone(),
            healthy,
            reason: reason.to_owned(),
        });
    }
    for new in devices
        .iter()
        .filter(|d| d.healthy && !previous.iter().any(|o| o.id == d.id))
    {
        debug!(resource = %shared.resource, device = %new.id, "new device");
    }
}

/// Turn every device unhealthy and record why the plugin is gone.
fn mark_lost(shared: &Shared, cause: String) {
    warn!(resource = %shared.resource, socket = %shared.socket.display(), %cause, "device plugin lost; its devices are unhealthy");
    let mut turned = Vec::new();
    shared.devices.send_modify(|devices| {
        for device in devices.iter_mut().filter(|d| d.healthy) {
            device.healthy = false;
            turned.push(device.id.clone());
        }
    });
    for device_id in turned {
        let _ = shared.health.send(HealthEvent {
            device_id,
            healthy: false,
            reason: format!("{}: {cause}", crate::manager::PLUGIN_LOST_REASON),
        });
    }
    shared.lost.send_replace(Some(cause));
    info!(resource = %shared.resource, "stopped following device plugin");
}

/// An error with its sources, for messages.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anything_but_healthy_is_unhealthy_and_numa_comes_from_topology() {
        let healthy = device(v1beta1::Device {
            id: "a".into(),
            health: "Healthy".into(),
            topology: Some(v1beta1::TopologyInfo {
                nodes: vec![v1beta1::NumaNode { id: 1 }],
            }),
        });
        assert_eq!(
            healthy,
            Device {
                id: "a".into(),
                healthy: true,
                numa_node: Some(1)
            }
        );
        let odd = device(v1beta1::Device {
            id: "b".into(),
            health: "healthy".into(),
            topology: None,
        });
        assert!(!odd.healthy);
        assert_eq!(odd.numa_node, None);
    }

    #[test]
    fn publish_emits_events_for_health_changes_and_disappearances() {
        let (devices, _) = watch::channel(Vec::new());
        let (health, mut events) = broadcast::channel(16);
        let (lost, _) = watch::channel(None);
        let shared = Shared {
            resource: "example.com/widget".into(),
            socket: PathBuf::from("/nonexistent"),
            devices,
            health,
            lost,
        };
        let dev = |id: &str, health: &str| v1beta1::Device {
            id: id.into(),
            health: health.into(),
            topology: None,
        };
        publish(
            &shared,
            v1beta1::ListAndWatchResponse {
                devices: vec![dev("b", "Healthy"), dev("a", "Healthy")],
            },
        );
        assert!(events.try_recv().is_err(), "the first list is a baseline");
        assert_eq!(shared.devices.borrow()[0].id, "a", "sorted by id");
        publish(
            &shared,
            v1beta1::ListAndWatchResponse {
                devices: vec![dev("a", "Unhealthy")],
            },
        );
        let first = events.try_recv().expect("event for a");
        assert_eq!(
            (first.device_id.as_str(), first.healthy),
            ("a", false),
            "{first:?}"
        );
        let second = events.try_recv().expect("event for b");
        assert_eq!((second.device_id.as_str(), second.healthy), ("b", false));
        assert_eq!(second.reason, "no longer listed by its device plugin");

        publish(
            &shared,
            v1beta1::ListAndWatchResponse {
                devices: vec![dev("a", "Healthy")],
            },
        );
        mark_lost(&shared, "ListAndWatch stream ended".into());
        let healed = events.try_recv().expect("a healthy again");
        assert!(healed.healthy);
        let lost_event = events.try_recv().expect("a lost");
        assert!(!lost_event.healthy);
        assert_eq!(
            lost_event.reason,
            "device plugin lost: ListAndWatch stream ended"
        );
        assert!(shared.devices.borrow().iter().all(|d| !d.healthy));
        assert_eq!(
            shared.lost.borrow().as_deref(),
            Some("ListAndWatch stream ended")
        );
    }
}
