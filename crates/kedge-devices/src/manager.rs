//! The device manager: every plugin, built-in or external, behind one
//! [`DevicePlugin`] interface, and the pods' allocations.
//!
//! It follows upstream's kubelet device manager (`pkg/kubelet/cm/devicemanager`):
//! capacity counts all devices of a resource and allocatable only the healthy
//! ones; allocation happens at admission and fails with upstream's
//! `UnexpectedAdmissionError` message; allocations are checkpointed (JSON, in
//! `<state dir>/checkpoint`) so that an agent restart keeps them and a
//! restarted container gets the same answer without a new Allocate call; a lost
//! plugin's resource stays (all unhealthy) for a grace period, then goes and
//! is reported in [`NodeDevices::removed`] so that node status zeroes it. After
//! a restart the checkpointed resources come back with no devices until their
//! plugins register again, under the same grace period.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use crate::plugin::{
    ContainerAllocation, Device, DeviceError, DevicePlugin, DeviceSpec, MountSpec,
};

/// Upstream's `endpointStopGracePeriod`: how long a lost plugin's resource is
/// kept before it is removed.
pub const DEFAULT_LOST_PLUGIN_GRACE: Duration = Duration::from_secs(5 * 60);

/// The checkpoint file's name in [`DeviceManagerConfig::state_dir`].
pub const CHECKPOINT_FILE: &str = "checkpoint";

/// Where the device manager keeps its state, and its timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceManagerConfig {
    /// Holds the checkpoint file ([`CHECKPOINT_FILE`]).
    pub state_dir: PathBuf,
    /// How long a lost plugin's (or a restored, not yet re-registered)
    /// resource is kept, all unhealthy, before it is removed.
    pub lost_plugin_grace: Duration,
}

impl DeviceManagerConfig {
    /// The agent's layout: `<data-dir>/agent/device-manager`, upstream's grace.
    pub fn for_data_dir(data_dir: &Path) -> DeviceManagerConfig {
        DeviceManagerConfig {
            state_dir: data_dir.join("agent").join("device-manager"),
            lost_plugin_grace: DEFAULT_LOST_PLUGIN_GRACE,
        }
    }

    /// The checkpoint file.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.state_dir.join(CHECKPOINT_FILE)
    }
}

/// Errors of the device manager's own state.
#[derive(Debug, thiserror::Error)]
pub enum DeviceManagerError {
    #[error("failed to read device manager checkpoint {path}: {source}")]
    ReadCheckpoint {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("device manager checkpoint {path} is corrupt: {source}")]
    CorruptCheckpoint {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("failed to write device manager checkpoint {path}: {source}")]
    WriteCheckpoint {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("endpoint not found in cache for a registered resource: {resource}")]
    UnknownResource { resource: String },
    #[error(transparent)]
    Plugin(#[from] DeviceError),
}

/// Why devices could not be allocated (upstream's messages).
#[derive(Debug, thiserror::Error)]
pub enum AllocationError {
    #[error("requested number of devices unavailable for {resource}. Requested: {requested}, Available: {available}")]
    Unavailable {
        resource: String,
        requested: u64,
        available: u64,
    },
    #[error("cannot allocate unregistered device {resource}")]
    Unregistered { resource: String },
    #[error("pod {pod_uid:?} container {container:?} changed request for resource {resource:?} from {from} to {to}")]
    RequestChanged {
        pod_uid: String,
        container: String,
        resource: String,
        from: u64,
        to: u64,
    },
    #[error(transparent)]
    Plugin(#[from] DeviceError),
    #[error(transparent)]
    Checkpoint(DeviceManagerError),
}

/// A pod that cannot get its devices: upstream's admission failure, with
/// reason [`AdmissionError::REASON`] and upstream's message.
#[derive(Debug, thiserror::Error)]
#[error("Allocate failed due to {cause}, which is unexpected")]
pub struct AdmissionError {
    pub cause: AllocationError,
}

impl AdmissionError {
    /// The pod status reason of a pod rejected for its devices.
    pub const REASON: &'static str = "UnexpectedAdmissionError";

    /// [`AdmissionError::REASON`].
    pub fn reason(&self) -> &'static str {
        Self::REASON
    }
}

impl From<AllocationError> for AdmissionError {
    fn from(cause: AllocationError) -> Self {
        AdmissionError { cause }
    }
}

/// One resource in node status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceDevices {
    /// All devices, healthy or not.
    pub capacity: u64,
    /// Healthy devices.
    pub allocatable: u64,
    /// The devices, sorted by ID.
    pub devices: Vec<Device>,
    /// A plugin serves the resource now (false: lost, or restored from the
    /// checkpoint and not registered again yet).
    pub plugin_connected: bool,
}

/// What the devices contribute to node status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeDevices {
    /// Capacity and allocatable per extended resource name.
    pub resources: BTreeMap<String, ResourceDevices>,
    /// Resources that were advertised and are gone: node status sets their
    /// capacity and allocatable to 0 (upstream's deleted resources). A
    /// resource leaves this set when a plugin serves it again.
    pub removed: BTreeSet<String>,
    /// Node labels from every plugin, merged (a later resource name wins a
    /// conflicting key).
    pub labels: BTreeMap<String, String>,
}

/// A device's health changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceHealthEvent {
    pub resource: String,
    pub device_id: String,
    pub healthy: bool,
    /// Why, for events and conditions (e.g. "XID 79", "device plugin lost: ...").
    pub reason: String,
}

/// How the reason of a device's health event starts when the device turned
/// unhealthy because its plugin went away, not because the device failed.
pub const PLUGIN_LOST_REASON: &str = "device plugin lost";

impl DeviceHealthEvent {
    /// The device is unallocatable because its plugin went away (a restart,
    /// an upgrade of its DaemonSet): nothing says the device failed, and
    /// upstream keeps the containers that hold it running.
    pub fn plugin_lost(&self) -> bool {
        !self.healthy && self.reason.starts_with(PLUGIN_LOST_REASON)
    }
}

/// One container's devices of one resource, with the plugin's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct AllocationRecord {
    pod_uid: String,
    container_name: String,
    resource: String,
    device_ids: Vec<String>,
    allocation: CheckpointAllocation,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Checkpoint {
    #[serde(default)]
    registered_resources: BTreeSet<String>,
    #[serde(default)]
    allocations: Vec<AllocationRecord>,
}

/// [`ContainerAllocation`] as stored in the checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct CheckpointAllocation {
    #[serde(default)]
    devices: Vec<CheckpointDeviceSpec>,
    #[serde(default)]
    mounts: Vec<CheckpointMount>,
    #[serde(default)]
    envs: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    cdi_devices: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CheckpointDeviceSpec {
    container_path: String,
    host_path: String,
    permissions: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CheckpointMount {
    container_path: String,
    host_path: String,
    read_only: bool,
}

impl From<&ContainerAllocation> for CheckpointAllocation {
    fn from(a: &ContainerAllocation) -> Self {
        CheckpointAllocation {
            devices: a
                .devices
                .iter()
                .map(|d| CheckpointDeviceSpec {
                    container_path: d.container_path.clone(),
                    host_path: d.host_path.clone(),
                    permissions: d.permissions.clone(),
                })
                .collect(),
            mounts: a
                .mounts
                .iter()
                .map(|m| CheckpointMount {
                    container_path: m.container_path.clone(),
                    host_path: m.host_path.clone(),
                    read_only: m.read_only,
                })
                .collect(),
            envs: a.envs.clone(),
            annotations: a.annotations.clone(),
            cdi_devices: a.cdi_devices.clone(),
        }
    }
}

impl From<&CheckpointAllocation> for ContainerAllocation {
    fn from(a: &CheckpointAllocation) -> Self {
        ContainerAllocation {
            devices: a
                .devices
                .iter()
                .map(|d| DeviceSpec {
                    container_path: d.container_path.clone(),
                    host_path: d.host_path.clone(),
                    permissions: d.permissions.clone(),
                })
                .collect(),
            mounts: a
                .mounts
                .iter()
                .map(|m| MountSpec {
                    container_path: m.container_path.clone(),
                    host_path: m.host_path.clone(),
                    read_only: m.read_only,
                })
                .collect(),
            envs: a.envs.clone(),
            annotations: a.annotations.clone(),
            cdi_devices: a.cdi_devices.clone(),
        }
    }
}

/// One resource the manager knows.
struct ResourceEntry {
    /// `None`: restored from the checkpoint, waiting for its plugin.
    plugin: Option<Arc<dyn DevicePlugin>>,
    /// Distinguishes successive plugins of one resource for stale timers.
    generation: u64,
    devices: Vec<Device>,
    /// Set when the plugin is lost (or the entry was restored): the resource
    /// is removed `lost_plugin_grace` later unless a plugin registers.
    stopped: bool,
    /// The plugin sends its own health events (with causes).
    plugin_reports_health: bool,
    /// Devices a lost predecessor of this plugin left unhealthy: those the
    /// plugin's first list reports healthy get a healthy event.
    recovering: Vec<String>,
    tasks: Vec<AbortHandle>,
}

impl ResourceEntry {
    /// Once the plugin has listed its devices: which of `recovering` are
    /// healthy again.
    fn take_recovered(&mut self) -> Vec<String> {
        if self.recovering.is_empty() || self.devices.is_empty() {
            return Vec::new();
        }
        let recovering = std::mem::take(&mut self.recovering);
        recovering
            .into_iter()
            .filter(|id| self.devices.iter().any(|d| &d.id == id && d.healthy))
            .collect()
    }
}

impl Drop for ResourceEntry {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

struct State {
    resources: BTreeMap<String, ResourceEntry>,
    removed: BTreeSet<String>,
    checkpoint: Checkpoint,
    next_generation: u64,
}

struct Inner {
    config: DeviceManagerConfig,
    state: Mutex<State>,
    /// Serialises allocations (upstream holds its mutex across them too), so
    /// that two admissions never pick the same device.
    allocating: tokio::sync::Mutex<()>,
    snapshot: watch::Sender<NodeDevices>,
    health: broadcast::Sender<DeviceHealthEvent>,
}

/// Built-in and external device plugins, and the pods' allocations. Cheap to
/// clone: clones share one manager.
#[derive(Clone)]
pub struct DeviceManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DeviceManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceManager")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl DeviceManager {
    /// Open the manager, restoring allocations and the registered resources
    /// (with no devices until their plugins register again) from the
    /// checkpoint. A missing checkpoint is an empty one; a corrupt one is an
    /// error (the caller decides whether to move it away and start empty).
    /// Must run inside a tokio runtime (grace timers are tasks).
    pub fn open(config: DeviceManagerConfig) -> Result<DeviceManager, DeviceManagerError> {
        let path = config.checkpoint_path();
        let checkpoint = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Checkpoint>(&bytes).map_err(|source| {
                DeviceManagerError::CorruptCheckpoint {
                    path: path.clone(),
                    source,
                }
            })?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Checkpoint::default(),
            Err(source) => return Err(DeviceManagerError::ReadCheckpoint { path, source }),
        };
        let (snapshot, _) = watch::channel(NodeDevices::default());
        let (health, _) = broadcast::channel(256);
        let manager = DeviceManager {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State {
                    resources: BTreeMap::new(),
                    removed: BTreeSet::new(),
                    checkpoint,
                    next_generation: 1,
                }),
                allocating: tokio::sync::Mutex::new(()),
                snapshot,
                health,
            }),
        };
        {
            let mut state = manager.inner.lock();
            let restored: BTreeSet<String> = state
                .checkpoint
                .registered_resources
                .iter()
                .cloned()
                .chain(
                    state
                        .checkpoint
                        .allocations
                        .iter()
                        .map(|r| r.resource.clone()),
                )
                .collect();
            for resource in restored {
                let generation = state.next_generation;
                state.next_generation += 1;
                let expiry = manager.inner.spawn_expiry(&resource, generation);
                info!(%resource, "restored device resource from checkpoint; waiting for its plugin");
                state.resources.insert(
                    resource,
                    ResourceEntry {
                        plugin: None,
                        generation,
                        devices: Vec::new(),
                        stopped: true,
                        plugin_reports_health: false,
                        recovering: Vec::new(),
                        tasks: vec![expiry],
                    },
                );
            }
            manager.inner.publish(&state);
        }
        Ok(manager)
    }

    /// Serve `plugin`'s resource, replacing whichever plugin served it.
    pub fn add_plugin(&self, plugin: Arc<dyn DevicePlugin>) {
        let resource = plugin.resource_name().to_owned();
        let mut devices_rx = plugin.devices();
        let health_rx = plugin.health_events();
        let weak = Arc::downgrade(&self.inner);
        let mut state = self.inner.lock();
        let generation = state.next_generation;
        state.next_generation += 1;
        let mut tasks = Vec::new();
        {
            let weak = weak.clone();
            let resource = resource.clone();
            tasks.push(
                tokio::spawn(async move {
                    while devices_rx.changed().await.is_ok() {
                        let devices = devices_rx.borrow_and_update().clone();
                        let Some(inner) = weak.upgrade() else { return };
                        inner.update_devices(&resource, generation, devices);
                    }
                })
                .abort_handle(),
            );
        }
        let plugin_reports_health = health_rx.is_some();
        if let Some(mut health_rx) = health_rx {
            let resource = resource.clone();
            tasks.push(
                tokio::spawn(async move {
                    loop {
                        match health_rx.recv().await {
                            Ok(event) => {
                                let Some(inner) = weak.upgrade() else { return };
                                let _ = inner.health.send(DeviceHealthEvent {
                                    resource: resource.clone(),
                                    device_id: event.device_id,
                                    healthy: event.healthy,
                                    reason: event.reason,
                                });
                            }
                            Err(broadcast::error::RecvError::Lagged(missed)) => {
                                warn!(%resource, missed, "device health events dropped");
                            }
                            Err(broadcast::error::RecvError::Closed) => return,
                        }
                    }
                })
                .abort_handle(),
            );
        }
        let devices = sorted(plugin.devices().borrow().clone());
        let recovering = match state.resources.get(&resource) {
            Some(previous) => {
                info!(%resource, "device plugin replaces the previous one");
                previous
                    .devices
                    .iter()
                    .filter(|d| !d.healthy)
                    .map(|d| d.id.clone())
                    .collect()
            }
            None => {
                info!(%resource, devices = devices.len(), "device plugin added");
                Vec::new()
            }
        };
        let mut entry = ResourceEntry {
            plugin: Some(plugin),
            generation,
            devices,
            stopped: false,
            plugin_reports_health,
            recovering,
            tasks,
        };
        self.inner.announce_recovered(&resource, &mut entry);
        state.resources.insert(resource.clone(), entry);
        state.removed.remove(&resource);
        if state.checkpoint.registered_resources.insert(resource) {
            if let Err(err) = self.inner.write_checkpoint(&state.checkpoint) {
                warn!(%err, "device manager checkpoint not updated");
            }
        }
        self.inner.publish(&state);
    }

    /// `plugin` is gone: its devices turn unhealthy now and its resource is
    /// removed after the grace period unless another plugin takes it over.
    /// Does nothing if `plugin` no longer serves its resource.
    pub fn plugin_lost(&self, plugin: &Arc<dyn DevicePlugin>, cause: &str) {
        let resource = plugin.resource_name().to_owned();
        let mut state = self.inner.lock();
        let Some(entry) = state.resources.get_mut(&resource) else {
            return;
        };
        let current = entry
            .plugin
            .as_ref()
            .is_some_and(|p| same_plugin(p, plugin));
        if !current || entry.stopped {
            return;
        }
        warn!(%resource, %cause, grace = ?self.inner.config.lost_plugin_grace, "device plugin lost; its devices are unhealthy until it registers again");
        entry.stopped = true;
        let mut turned = Vec::new();
        for device in entry.devices.iter_mut().filter(|d| d.healthy) {
            device.healthy = false;
            turned.push(device.id.clone());
        }
        if !entry.plugin_reports_health {
            for device_id in turned {
                let _ = self.inner.health.send(DeviceHealthEvent {
                    resource: resource.clone(),
                    device_id,
                    healthy: false,
                    reason: format!("{PLUGIN_LOST_REASON}: {cause}"),
                });
            }
        }
        let generation = entry.generation;
        let expiry = self.inner.spawn_expiry(&resource, generation);
        if let Some(entry) = state.resources.get_mut(&resource) {
            entry.tasks.push(expiry);
        }
        self.inner.publish(&state);
    }

    /// Capacity, allocatable and labels as they are now.
    pub fn node_devices(&self) -> NodeDevices {
        self.inner.snapshot.borrow().clone()
    }

    /// Every change of capacity, allocatable, device health, removed
    /// resources or labels.
    pub fn subscribe(&self) -> watch::Receiver<NodeDevices> {
        self.inner.snapshot.subscribe()
    }

    /// Per-device health changes with their causes.
    pub fn health_events(&self) -> broadcast::Receiver<DeviceHealthEvent> {
        self.inner.health.subscribe()
    }

    /// Node labels from every plugin, merged.
    pub fn node_labels(&self) -> BTreeMap<String, String> {
        self.inner.snapshot.borrow().labels.clone()
    }

    /// Allocate devices to one container at admission. `requests` maps
    /// resource names to counts (the container's limits; resources no plugin
    /// serves, such as `cpu`, are ignored as upstream does). A container that
    /// already holds devices (a restart, or an agent restart: the checkpoint
    /// remembers) gets the same answer again without a plugin call. The
    /// answer merges every resource's Allocate response.
    pub async fn allocate(
        &self,
        pod_uid: &str,
        container_name: &str,
        requests: &BTreeMap<String, u64>,
    ) -> Result<ContainerAllocation, AdmissionError> {
        let _serial = self.inner.allocating.lock().await;
        // Which resources need new devices, and from which plugin.
        let mut plans = Vec::new();
        {
            let state = self.inner.lock();
            for (resource, &requested) in requests {
                if requested == 0 {
                    continue;
                }
                let known = state.resources.contains_key(resource)
                    || state
                        .checkpoint
                        .allocations
                        .iter()
                        .any(|r| &r.resource == resource);
                if !known {
                    continue;
                }
                if let Some(held) = state.checkpoint.allocations.iter().find(|r| {
                    r.pod_uid == pod_uid
                        && r.container_name == container_name
                        && &r.resource == resource
                }) {
                    let from = held.device_ids.len() as u64;
                    if from != requested {
                        return Err(AllocationError::RequestChanged {
                            pod_uid: pod_uid.to_owned(),
                            container: container_name.to_owned(),
                            resource: resource.clone(),
                            from,
                            to: requested,
                        }
                        .into());
                    }
                    continue;
                }
                let Some(entry) = state.resources.get(resource) else {
                    return Err(AllocationError::Unregistered {
                        resource: resource.clone(),
                    }
                    .into());
                };
                let in_use: BTreeSet<&str> = state
                    .checkpoint
                    .allocations
                    .iter()
                    .filter(|r| &r.resource == resource)
                    .flat_map(|r| r.device_ids.iter().map(String::as_str))
                    .collect();
                let available: Vec<String> = entry
                    .devices
                    .iter()
                    .filter(|d| d.healthy && !in_use.contains(d.id.as_str()))
                    .map(|d| d.id.clone())
                    .collect();
                let plugin = match &entry.plugin {
                    Some(plugin) if (available.len() as u64) >= requested => plugin.clone(),
                    _ => {
                        return Err(AllocationError::Unavailable {
                            resource: resource.clone(),
                            requested,
                            available: if entry.plugin.is_some() {
                                available.len() as u64
                            } else {
                                0
                            },
                        }
                        .into())
                    }
                };
                plans.push((resource.clone(), requested as usize, available, plugin));
            }
        }

        let mut records = Vec::new();
        for (resource, needed, available, plugin) in plans {
            let preferred = plugin
                .get_preferred_allocation(&available, &[], needed)
                .await
                .map_err(AllocationError::Plugin)?;
            let chosen = choose(&available, preferred.as_deref(), needed);
            debug!(pod_uid, container_name, %resource, devices = ?chosen, "allocating devices");
            let allocation = plugin
                .allocate(&chosen)
                .await
                .map_err(AllocationError::Plugin)?;
            records.push(AllocationRecord {
                pod_uid: pod_uid.to_owned(),
                container_name: container_name.to_owned(),
                resource,
                device_ids: chosen,
                allocation: CheckpointAllocation::from(&allocation),
            });
        }

        let mut state = self.inner.lock();
        if !records.is_empty() {
            let mut next = state.checkpoint.clone();
            next.allocations.extend(records);
            self.inner
                .write_checkpoint(&next)
                .map_err(AllocationError::Checkpoint)?;
            state.checkpoint = next;
        }
        Ok(merge(state.checkpoint.allocations.iter().filter(|r| {
            r.pod_uid == pod_uid && r.container_name == container_name
        })))
    }

    /// PreStartContainer for every device the container holds, before each
    /// start of it (a plugin that does not require it is not called).
    pub async fn pre_start_container(
        &self,
        pod_uid: &str,
        container_name: &str,
    ) -> Result<(), DeviceManagerError> {
        let calls: Vec<(Arc<dyn DevicePlugin>, Vec<String>)> = {
            let state = self.inner.lock();
            let mut calls = Vec::new();
            for record in state
                .checkpoint
                .allocations
                .iter()
                .filter(|r| r.pod_uid == pod_uid && r.container_name == container_name)
            {
                match state.resources.get(&record.resource) {
                    None => {
                        return Err(DeviceManagerError::UnknownResource {
                            resource: record.resource.clone(),
                        })
                    }
                    Some(entry) => {
                        if let Some(plugin) = &entry.plugin {
                            calls.push((plugin.clone(), record.device_ids.clone()));
                        }
                    }
                }
            }
            calls
        };
        for (plugin, ids) in calls {
            plugin.pre_start_container(&ids).await?;
        }
        Ok(())
    }

    /// The devices a container holds, by resource.
    pub fn container_devices(
        &self,
        pod_uid: &str,
        container_name: &str,
    ) -> BTreeMap<String, Vec<String>> {
        self.inner
            .lock()
            .checkpoint
            .allocations
            .iter()
            .filter(|r| r.pod_uid == pod_uid && r.container_name == container_name)
            .map(|r| (r.resource.clone(), r.device_ids.clone()))
            .collect()
    }

    /// The pods holding `device_id` of `resource` (for health handling).
    pub fn pods_on_device(&self, resource: &str, device_id: &str) -> Vec<String> {
        self.inner
            .lock()
            .checkpoint
            .allocations
            .iter()
            .filter(|r| r.resource == resource && r.device_ids.iter().any(|id| id == device_id))
            .map(|r| r.pod_uid.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// A pod ended: its devices are free again.
    pub fn release(&self, pod_uid: &str) -> Result<(), DeviceManagerError> {
        self.retain(|uid| uid != pod_uid)
    }

    /// Free the devices of every pod not in `active` (after a restart, once
    /// the agent knows its pods; upstream's `UpdateAllocatedDevices`).
    pub fn retain_pods(&self, active: &BTreeSet<String>) -> Result<(), DeviceManagerError> {
        self.retain(|uid| active.contains(uid))
    }

    fn retain(&self, keep: impl Fn(&str) -> bool) -> Result<(), DeviceManagerError> {
        let mut state = self.inner.lock();
        let before = state.checkpoint.allocations.len();
        let mut next = state.checkpoint.clone();
        next.allocations.retain(|r| keep(&r.pod_uid));
        if next.allocations.len() == before {
            return Ok(());
        }
        for gone in state
            .checkpoint
            .allocations
            .iter()
            .filter(|r| !keep(&r.pod_uid))
        {
            debug!(pod_uid = %gone.pod_uid, resource = %gone.resource, devices = ?gone.device_ids, "devices released");
        }
        // Memory follows even if the write fails: the devices are free, and
        // the next successful write records it.
        state.checkpoint = next;
        self.inner.write_checkpoint(&state.checkpoint)
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A plugin's ListAndWatch changed.
    fn update_devices(&self, resource: &str, generation: u64, devices: Vec<Device>) {
        let mut state = self.lock();
        let Some(entry) = state.resources.get_mut(resource) else {
            return;
        };
        if entry.generation != generation {
            return;
        }
        let mut devices = sorted(devices);
        if entry.stopped {
            // A lost plugin's last words do not make devices healthy again.
            for device in &mut devices {
                device.healthy = false;
            }
        }
        if !entry.plugin_reports_health {
            for old in &entry.devices {
                let now = devices.iter().find(|d| d.id == old.id);
                let (healthy, reason) = match now {
                    Some(new) if new.healthy == old.healthy => continue,
                    Some(new) if new.healthy => (true, "reported Healthy by its device plugin"),
                    Some(_) => (false, "reported Unhealthy by its device plugin"),
                    None if old.healthy => (false, "no longer listed by its device plugin"),
                    None => continue,
                };
                let _ = self.health.send(DeviceHealthEvent {
                    resource: resource.to_owned(),
                    device_id: old.id.clone(),
                    healthy,
                    reason: reason.to_owned(),
                });
            }
        }
        entry.devices = devices;
        self.announce_recovered(resource, entry);
        self.publish(&state);
    }

    /// A healthy event for each device a lost plugin left unhealthy that its
    /// successor lists as healthy.
    fn announce_recovered(&self, resource: &str, entry: &mut ResourceEntry) {
        for device_id in entry.take_recovered() {
            let _ = self.health.send(DeviceHealthEvent {
                resource: resource.to_owned(),
                device_id,
                healthy: true,
                reason: "its device plugin registered again".to_owned(),
            });
        }
    }

    /// Remove `resource` if it is still the stopped entry of `generation`.
    fn expire(&self, resource: &str, generation: u64) {
        let mut state = self.lock();
        let stale = state
            .resources
            .get(resource)
            .is_some_and(|e| e.generation == generation && e.stopped);
        if !stale {
            return;
        }
        info!(%resource, "device resource removed: its plugin did not come back within the grace period");
        state.resources.remove(resource);
        state.removed.insert(resource.to_owned());
        state.checkpoint.registered_resources.remove(resource);
        if let Err(err) = self.write_checkpoint(&state.checkpoint) {
            warn!(%err, "device manager checkpoint not updated");
        }
        self.publish(&state);
    }

    fn spawn_expiry(self: &Arc<Self>, resource: &str, generation: u64) -> AbortHandle {
        let weak: Weak<Inner> = Arc::downgrade(self);
        let grace = self.config.lost_plugin_grace;
        let resource = resource.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if let Some(inner) = weak.upgrade() {
                inner.expire(&resource, generation);
            }
        })
        .abort_handle()
    }

    /// Recompute what node status sees; notify only on a change.
    fn publish(&self, state: &State) {
        let mut snapshot = NodeDevices {
            removed: state.removed.clone(),
            ..NodeDevices::default()
        };
        for (resource, entry) in &state.resources {
            snapshot.resources.insert(
                resource.clone(),
                ResourceDevices {
                    capacity: entry.devices.len() as u64,
                    allocatable: entry.devices.iter().filter(|d| d.healthy).count() as u64,
                    devices: entry.devices.clone(),
                    plugin_connected: entry.plugin.is_some() && !entry.stopped,
                },
            );
            if let Some(plugin) = &entry.plugin {
                snapshot.labels.extend(plugin.node_labels());
            }
        }
        self.snapshot.send_if_modified(|current| {
            if *current == snapshot {
                false
            } else {
                *current = snapshot;
                true
            }
        });
    }

    /// Write the checkpoint atomically (temp file, fsync, rename).
    fn write_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), DeviceManagerError> {
        use std::io::Write;
        let path = self.config.checkpoint_path();
        let fail = |source| DeviceManagerError::WriteCheckpoint {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.config.state_dir).map_err(fail)?;
        let bytes =
            serde_json::to_vec_pretty(checkpoint).map_err(|e| fail(std::io::Error::other(e)))?;
        let tmp = self
            .config
            .state_dir
            .join(format!(".{CHECKPOINT_FILE}.tmp"));
        let mut file = std::fs::File::create(&tmp).map_err(fail)?;
        file.write_all(&bytes).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, &path).map_err(fail)
    }
}

fn same_plugin(a: &Arc<dyn DevicePlugin>, b: &Arc<dyn DevicePlugin>) -> bool {
    std::ptr::eq(Arc::as_ptr(a) as *const (), Arc::as_ptr(b) as *const ())
}

fn sorted(mut devices: Vec<Device>) -> Vec<Device> {
    devices.sort_by(|a, b| a.id.cmp(&b.id));
    devices.dedup_by(|a, b| a.id == b.id);
    devices
}

/// `needed` devices from `available`: the plugin's preferred ones that are
/// available first, then the rest in order.
fn choose(available: &[String], preferred: Option<&[String]>, needed: usize) -> Vec<String> {
    let mut chosen: Vec<String> = Vec::with_capacity(needed);
    for id in preferred.unwrap_or_default() {
        if chosen.len() == needed {
            break;
        }
        if available.contains(id) && !chosen.contains(id) {
            chosen.push(id.clone());
        }
    }
    for id in available {
        if chosen.len() == needed {
            break;
        }
        if !chosen.contains(id) {
            chosen.push(id.clone());
        }
    }
    chosen
}

/// One container's answer from several resources' Allocate responses, by
/// upstream's rules: device specs by container path and mounts by container
/// path keep the first; envs and annotations keep the first value of a key;
/// CDI names are deduplicated. Conflicts are logged.
fn merge<'a>(records: impl Iterator<Item = &'a AllocationRecord>) -> ContainerAllocation {
    let mut merged = ContainerAllocation::default();
    let mut records: Vec<&AllocationRecord> = records.collect();
    records.sort_by(|a, b| a.resource.cmp(&b.resource));
    for record in records {
        let allocation = ContainerAllocation::from(&record.allocation);
        for device in allocation.devices {
            match merged
                .devices
                .iter()
                .find(|d| d.container_path == device.container_path)
            {
                Some(existing) if existing.host_path != device.host_path => warn!(
                    container_path = %device.container_path,
                    first = %existing.host_path,
                    second = %device.host_path,
                    "container device has conflicting mapping host devices"
                ),
                Some(_) => {}
                None => merged.devices.push(device),
            }
        }
        for mount in allocation.mounts {
            match merged
                .mounts
                .iter()
                .find(|m| m.container_path == mount.container_path)
            {
                Some(existing) if existing.host_path != mount.host_path => warn!(
                    container_path = %mount.container_path,
                    first = %existing.host_path,
                    second = %mount.host_path,
                    "container mount has conflicting mapping host mounts"
                ),
                Some(_) => {}
                None => merged.mounts.push(mount),
            }
        }
        for (key, value) in allocation.envs {
            match merged.envs.get(&key) {
                Some(existing) if *existing != value => {
                    warn!(%key, first = %existing, second = %value, "environment variable has conflicting settings")
                }
                Some(_) => {}
                None => {
                    merged.envs.insert(key, value);
                }
            }
        }
        for (key, value) in allocation.annotations {
            match merged.annotations.get(&key) {
                Some(existing) if *existing != value => {
                    warn!(%key, first = %existing, second = %value, "annotation has conflicting settings")
                }
                Some(_) => {}
                None => {
                    merged.annotations.insert(key, value);
                }
            }
        }
        for name in allocation.cdi_devices {
            if !merged.cdi_devices.contains(&name) {
                merged.cdi_devices.push(name);
            }
        }
    }
    merged
}

#[cfg(test)]
mod tests;
