//! NVIDIA GPUs as `nvidia.com/gpu`.
//!
//! Discovery uses NVML ([`super::nvml`]) when it loads, else the driver's
//! procfs (`<root>/proc/driver/nvidia/gpus/<pci>/information`: "GPU UUID",
//! "Model", "Device Minor") with `<root>/dev/nvidiaN`. NVML is only tried
//! when the accelerator root is `/`, since it describes the real host and a
//! fake tree would disagree with it. Device IDs are GPU UUIDs, or
//! `<uuid>::<n>` replicas with time-slicing.
//!
//! Allocate injects `/dev/nvidiactl`, `/dev/nvidia-uvm`,
//! `/dev/nvidia-uvm-tools` and `/dev/nvidia-modeset` where present, then
//! `/dev/nvidiaN` of each GPU, sets `NVIDIA_VISIBLE_DEVICES` to the UUIDs
//! (comma-separated, in request order) and, where a CDI spec for NVIDIA is
//! installed (`nvidia-ctk cdi generate`), names `nvidia.com/gpu=<uuid>` as
//! CDI devices so the runtime also injects the driver's libraries.
//!
//! Health follows NVIDIA's plugin: NVML XID critical errors turn a GPU
//! unhealthy except the application-caused XIDs it ignores
//! ([`DEFAULT_IGNORED_XIDS`], configurable); an event for no particular GPU,
//! or a failing wait, turns every GPU unhealthy. Unlike upstream, a GPU is
//! advertised again once no critical XID came for
//! [`NvidiaConfig::recovery_quiet_period`] and NVML reaches it again (after
//! XID 79 that means after a reset).
//!
//! Node labels use the names of NVIDIA's GPU feature discovery:
//! `nvidia.com/gpu.present`, `nvidia.com/gpu.count` (physical GPUs),
//! `nvidia.com/gpu.product` (first GPU's model, spaces as `-`),
//! `nvidia.com/gpu.memory` (MiB, where known), `nvidia.com/gpu.replicas`,
//! `nvidia.com/gpu.sharing-strategy` and, with NVML,
//! `nvidia.com/cuda.driver-version.full` / `.major`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};

use super::hostroot::{self, HostRoot};
use super::nvml::{Nvml, NvmlError, NvmlEvent, NvmlLibrary, EVENT_TYPE_XID_CRITICAL_ERROR};
use super::{
    label_value, replica_ids, spread_allocation, AcceleratorInfo, BuiltinError, DeviceTable,
    NvmlStatus,
};
use crate::plugin::{
    BoxFuture, ContainerAllocation, Device, DeviceError, DevicePlugin, DeviceSpec, HealthEvent,
};

/// The extended resource.
pub const RESOURCE: &str = "nvidia.com/gpu";

/// Application-caused XIDs NVIDIA's device plugin does not hold against the
/// GPU: 13 graphics engine exception, 31 GPU memory page fault, 43 GPU
/// stopped processing, 45 preemptive cleanup, 68 video processor exception,
/// 109 context switch timeout.
pub const DEFAULT_IGNORED_XIDS: [u64; 6] = [13, 31, 43, 45, 68, 109];

/// Control nodes every GPU container needs, in the order they are injected.
const CONTROL_NODES: [&str; 4] = [
    "/dev/nvidiactl",
    "/dev/nvidia-uvm",
    "/dev/nvidia-uvm-tools",
    "/dev/nvidia-modeset",
];

/// The separator of time-slicing replica IDs, as upstream writes them.
const REPLICA_SEPARATOR: &str = "::";

/// Where GPUs are found.
#[derive(Clone, Default)]
pub enum NvmlMode {
    /// `libnvidia-ml.so.1` when the accelerator root is `/`, else procfs.
    #[default]
    Auto,
    /// procfs and `/dev` only.
    Disabled,
    /// This NVML (tests: [`super::FakeNvml`]).
    Use(Arc<dyn Nvml>),
}

impl std::fmt::Debug for NvmlMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NvmlMode::Auto => f.write_str("Auto"),
            NvmlMode::Disabled => f.write_str("Disabled"),
            NvmlMode::Use(_) => f.write_str("Use(..)"),
        }
    }
}

/// The NVIDIA plugin's settings.
#[derive(Debug, Clone)]
pub struct NvidiaConfig {
    pub enabled: bool,
    pub nvml: NvmlMode,
    /// Time-slicing: each GPU is advertised this many times as
    /// `<uuid>::<n>`; 0 and 1 mean no sharing.
    pub time_slicing_replicas: u32,
    /// XIDs that do not make a GPU unhealthy.
    pub ignored_xids: BTreeSet<u64>,
    /// Watch NVML events at all (upstream: `DP_DISABLE_HEALTHCHECKS=xids`
    /// turns this off).
    pub health_checks: bool,
    /// Name CDI devices in Allocate: `None` when a CDI spec for NVIDIA is
    /// found under `<root>/etc/cdi` or `<root>/var/run/cdi`.
    pub cdi: Option<bool>,
    /// How long one NVML event wait blocks (upstream: 5 s).
    pub event_wait_timeout: Duration,
    /// How often unhealthy GPUs are probed for recovery.
    pub recovery_probe_interval: Duration,
    /// How long after its last critical XID a GPU must stay quiet (and
    /// answer NVML) before it is advertised again.
    pub recovery_quiet_period: Duration,
}

impl Default for NvidiaConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            nvml: NvmlMode::Auto,
            time_slicing_replicas: 0,
            ignored_xids: DEFAULT_IGNORED_XIDS.into_iter().collect(),
            health_checks: true,
            cdi: None,
            event_wait_timeout: Duration::from_secs(5),
            recovery_probe_interval: Duration::from_secs(10),
            recovery_quiet_period: Duration::from_secs(60),
        }
    }
}

/// One physical GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Gpu {
    uuid: String,
    model: String,
    minor: Option<u32>,
    memory_bytes: Option<u64>,
    bus_id: Option<String>,
    numa_node: Option<i64>,
    /// The device IDs it is advertised as.
    ids: Vec<String>,
}

impl Gpu {
    fn node(&self) -> Option<String> {
        self.minor.map(|minor| format!("/dev/nvidia{minor}"))
    }
}

/// A GPU out of service, and since when.
struct Unhealthy {
    last_critical: tokio::time::Instant,
    reason: String,
}

/// The `nvidia.com/gpu` plugin.
pub struct NvidiaPlugin {
    root: HostRoot,
    config: NvidiaConfig,
    nvml: Option<Arc<dyn Nvml>>,
    driver_version: Option<String>,
    gpus: Vec<Gpu>,
    cdi: bool,
    table: DeviceTable,
    unhealthy: Mutex<BTreeMap<String, Unhealthy>>,
}

impl std::fmt::Debug for NvidiaPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvidiaPlugin")
            .field("root", &self.root)
            .field("gpus", &self.gpus)
            .field("nvml", &self.nvml.is_some())
            .finish()
    }
}

/// What the NVML event thread reports.
enum EventMessage {
    Unregistered(String, NvmlError),
    Event(NvmlEvent),
    WaitFailed(NvmlError),
}

impl NvidiaPlugin {
    /// Finds the GPUs under `root`; `None` when there are none.
    pub fn discover(
        root: &HostRoot,
        config: &NvidiaConfig,
    ) -> Result<(Option<Self>, NvmlStatus), BuiltinError> {
        let mut status = NvmlStatus::default();
        let nvml: Option<Arc<dyn Nvml>> = match &config.nvml {
            NvmlMode::Disabled => {
                status.error = Some("disabled by configuration".to_string());
                None
            }
            NvmlMode::Use(nvml) => Some(Arc::clone(nvml)),
            NvmlMode::Auto if !root.is_host() => {
                status.error = Some(format!(
                    "not used: accelerator root {} is not /",
                    root.path().display()
                ));
                None
            }
            NvmlMode::Auto => match NvmlLibrary::load() {
                Ok(library) => Some(Arc::new(library)),
                Err(e) => {
                    tracing::debug!(error = %e, "NVML unavailable, reading procfs");
                    status.error = Some(e.to_string());
                    None
                }
            },
        };

        let mut from_nvml = None;
        if let Some(nvml) = &nvml {
            match nvml.devices() {
                Ok(devices) => {
                    status.loaded = true;
                    status.driver_version = nvml.driver_version().ok();
                    from_nvml = Some(
                        devices
                            .into_iter()
                            .map(|d| {
                                let numa_node =
                                    d.pci_bus_id.as_deref().and_then(|id| pci_numa(root, id));
                                Gpu {
                                    uuid: d.uuid,
                                    model: d.name,
                                    minor: d.minor,
                                    memory_bytes: d.memory_total_bytes,
                                    bus_id: d.pci_bus_id,
                                    numa_node,
                                    ids: Vec::new(),
                                }
                            })
                            .collect::<Vec<_>>(),
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "NVML loaded but cannot list GPUs, reading procfs");
                    status.error = Some(e.to_string());
                }
            }
        }
        let (mut gpus, nvml) = match from_nvml {
            Some(gpus) => (gpus, nvml),
            None => (procfs_gpus(root)?, None),
        };
        if gpus.is_empty() {
            return Ok((None, status));
        }
        gpus.sort_by_key(|g| (g.minor.unwrap_or(u32::MAX), g.uuid.clone()));
        for gpu in &mut gpus {
            gpu.ids = replica_ids(&gpu.uuid, config.time_slicing_replicas, REPLICA_SEPARATOR);
            if gpu.minor.is_none() {
                tracing::warn!(uuid = %gpu.uuid, "GPU minor number unknown: no /dev/nvidiaN will be injected");
            }
        }
        let devices = gpus
            .iter()
            .flat_map(|gpu| {
                gpu.ids.iter().map(|id| Device {
                    id: id.clone(),
                    healthy: true,
                    numa_node: gpu.numa_node,
                })
            })
            .collect();
        let cdi = config.cdi.unwrap_or_else(|| nvidia_cdi_spec_present(root));
        let plugin = NvidiaPlugin {
            root: root.clone(),
            config: config.clone(),
            driver_version: status.driver_version.clone(),
            nvml,
            gpus,
            cdi,
            table: DeviceTable::new(RESOURCE, devices),
            unhealthy: Mutex::new(BTreeMap::new()),
        };
        Ok((Some(plugin), status))
    }

    /// Whether GPUs came from NVML (else procfs).
    pub fn uses_nvml(&self) -> bool {
        self.nvml.is_some()
    }

    /// The GPUs' UUIDs, in `/dev/nvidiaN` order.
    pub fn uuids(&self) -> Vec<String> {
        self.gpus.iter().map(|g| g.uuid.clone()).collect()
    }

    /// Starts the NVML health loop (inside a tokio runtime). Without NVML
    /// there is no health source: GPUs stay as discovered.
    pub(crate) fn start(self: &Arc<Self>, _rescan_interval: Duration) {
        let Some(nvml) = self.nvml.clone() else {
            return;
        };
        if !self.config.health_checks {
            tracing::info!("NVIDIA health checks disabled");
            return;
        }
        let (sender, mut receiver) = mpsc::channel(64);
        let uuids = self.uuids();
        let timeout = self.config.event_wait_timeout;
        let spawned = std::thread::Builder::new()
            .name("nvml-events".to_string())
            .spawn(move || watch_nvml_events(nvml, uuids, timeout, sender));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the NVML event thread: no GPU health checks");
            return;
        }
        let plugin = Arc::downgrade(self);
        let probe_every = self.config.recovery_probe_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(probe_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    message = receiver.recv() => {
                        let (Some(message), Some(plugin)) = (message, plugin.upgrade()) else {
                            break;
                        };
                        plugin.on_event(message);
                    }
                    _ = tick.tick() => {
                        let Some(plugin) = plugin.upgrade() else {
                            break;
                        };
                        plugin.probe_unhealthy().await;
                    }
                }
            }
            tracing::debug!("NVIDIA health loop ended");
        });
    }

    fn unhealthy_gpus(&self) -> MutexGuard<'_, BTreeMap<String, Unhealthy>> {
        self.unhealthy.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn on_event(&self, message: EventMessage) {
        match message {
            EventMessage::Unregistered(uuid, e) if e.is_not_supported() => {
                tracing::warn!(%uuid, "GPU too old for NVML events: no XID health checks for it");
            }
            EventMessage::Unregistered(uuid, e) => {
                self.mark_unhealthy(&[uuid], &format!("NVML event registration failed: {e}"));
            }
            EventMessage::WaitFailed(e) => {
                tracing::warn!(error = %e, "NVML event wait failed: marking every GPU unhealthy");
                self.mark_unhealthy(&self.uuids(), &format!("NVML event wait failed: {e}"));
            }
            EventMessage::Event(event) => {
                if event.event_type != EVENT_TYPE_XID_CRITICAL_ERROR {
                    tracing::debug!(?event, "skipping a non-XID NVML event");
                    return;
                }
                let xid = event.data;
                if self.config.ignored_xids.contains(&xid) {
                    tracing::info!(xid, uuid = ?event.uuid, "ignoring application XID");
                    return;
                }
                let reason = format!("XID {xid}");
                match event.uuid {
                    None => {
                        tracing::warn!(xid, "XID on an unknown GPU: marking every GPU unhealthy");
                        self.mark_unhealthy(&self.uuids(), &reason);
                    }
                    Some(uuid) if self.gpus.iter().any(|g| g.uuid == uuid) => {
                        self.mark_unhealthy(&[uuid], &reason);
                    }
                    Some(uuid) => {
                        tracing::info!(xid, %uuid, "ignoring XID of a GPU this plugin does not serve");
                    }
                }
            }
        }
    }

    fn mark_unhealthy(&self, uuids: &[String], reason: &str) {
        let now = tokio::time::Instant::now();
        for uuid in uuids {
            self.unhealthy_gpus().insert(
                uuid.clone(),
                Unhealthy {
                    last_critical: now,
                    reason: reason.to_string(),
                },
            );
            self.table.set_health(&self.ids_of(uuid), false, reason);
        }
    }

    fn ids_of(&self, uuid: &str) -> BTreeSet<String> {
        self.gpus
            .iter()
            .filter(|g| g.uuid == uuid)
            .flat_map(|g| g.ids.iter().cloned())
            .collect()
    }

    /// Advertises again the GPUs that stayed quiet long enough and answer.
    async fn probe_unhealthy(&self) {
        let Some(nvml) = self.nvml.clone() else {
            return;
        };
        let quiet = self.config.recovery_quiet_period;
        let due: Vec<(String, String)> = self
            .unhealthy_gpus()
            .iter()
            .filter(|(_, u)| u.last_critical.elapsed() >= quiet)
            .map(|(uuid, u)| (uuid.clone(), u.reason.clone()))
            .collect();
        for (uuid, reason) in due {
            let probe_nvml = Arc::clone(&nvml);
            let probe_uuid = uuid.clone();
            let answer = tokio::task::spawn_blocking(move || probe_nvml.probe(&probe_uuid)).await;
            match answer {
                Ok(Ok(())) => {
                    let mut unhealthy = self.unhealthy_gpus();
                    // A new critical XID may have come in meanwhile.
                    if unhealthy
                        .get(&uuid)
                        .is_some_and(|u| u.last_critical.elapsed() >= quiet)
                    {
                        unhealthy.remove(&uuid);
                        drop(unhealthy);
                        self.table.set_health(
                            &self.ids_of(&uuid),
                            true,
                            &format!("recovered from {reason}"),
                        );
                    }
                }
                Ok(Err(e)) => tracing::debug!(%uuid, error = %e, "GPU still unreachable"),
                Err(e) => tracing::warn!(%uuid, error = %e, "GPU probe task failed"),
            }
        }
    }

    fn allocation(&self, ids: &[String]) -> Result<ContainerAllocation, DeviceError> {
        let mut chosen: Vec<&Gpu> = Vec::new();
        for id in ids {
            let gpu = self
                .gpus
                .iter()
                .find(|g| g.uuid == *id || g.ids.contains(id))
                .ok_or_else(|| DeviceError::UnknownDevice {
                    resource: RESOURCE.to_string(),
                    id: id.clone(),
                })?;
            if !chosen.iter().any(|g| g.uuid == gpu.uuid) {
                chosen.push(gpu);
            }
        }
        let mut allocation = ContainerAllocation::default();
        let nodes = CONTROL_NODES
            .iter()
            .filter(|node| self.root.node_present(node))
            .map(|node| node.to_string())
            .chain(chosen.iter().filter_map(|gpu| gpu.node()));
        for node in nodes {
            allocation.devices.push(DeviceSpec {
                host_path: self.root.host_path(&node),
                container_path: node,
                permissions: "rw".to_string(),
            });
        }
        let uuids: Vec<&str> = chosen.iter().map(|g| g.uuid.as_str()).collect();
        allocation
            .envs
            .insert("NVIDIA_VISIBLE_DEVICES".to_string(), uuids.join(","));
        if self.cdi {
            allocation.cdi_devices = uuids
                .iter()
                .map(|uuid| format!("{RESOURCE}={uuid}"))
                .collect();
        }
        Ok(allocation)
    }

    /// The GPUs for the accelerator report; `probe` asks NVML whether each
    /// one answers.
    pub fn inventory(&self, probe: bool) -> Vec<AcceleratorInfo> {
        let devices = self.table.snapshot();
        let unhealthy = self.unhealthy_gpus();
        self.gpus
            .iter()
            .map(|gpu| {
                let listed_healthy = devices
                    .iter()
                    .filter(|d| gpu.ids.contains(&d.id))
                    .all(|d| d.healthy);
                let mut reason = unhealthy.get(&gpu.uuid).map(|u| u.reason.clone());
                if probe && reason.is_none() {
                    if let Some(nvml) = &self.nvml {
                        reason = nvml.probe(&gpu.uuid).err().map(|e| e.to_string());
                    }
                }
                let healthy = listed_healthy && reason.is_none();
                AcceleratorInfo {
                    vendor: "nvidia".to_string(),
                    resource: RESOURCE.to_string(),
                    id: gpu.uuid.clone(),
                    model: gpu.model.clone(),
                    uuid: Some(gpu.uuid.clone()),
                    memory_mib: gpu.memory_bytes.map(|b| b / (1024 * 1024)),
                    health: if healthy { "Healthy" } else { "Unhealthy" }.to_string(),
                    health_reason: reason,
                    source: if self.nvml.is_some() {
                        "nvml"
                    } else {
                        "procfs"
                    }
                    .to_string(),
                    device_nodes: gpu
                        .node()
                        .map(|n| self.root.host_path(&n))
                        .into_iter()
                        .collect(),
                    numa_node: gpu.numa_node,
                    bus_id: gpu.bus_id.clone(),
                }
            })
            .collect()
    }
}

impl DevicePlugin for NvidiaPlugin {
    fn resource_name(&self) -> &str {
        RESOURCE
    }

    fn devices(&self) -> watch::Receiver<Vec<Device>> {
        self.table.subscribe()
    }

    fn health_events(&self) -> Option<broadcast::Receiver<HealthEvent>> {
        Some(self.table.health_events())
    }

    fn preferred_allocation(
        &self,
        available: &[String],
        must_include: &[String],
        size: usize,
    ) -> Option<Vec<String>> {
        if self.config.time_slicing_replicas <= 1 {
            return None;
        }
        spread_allocation(available, must_include, size, |id| {
            self.gpus
                .iter()
                .find(|g| g.ids.iter().any(|i| i == id))
                .map(|g| g.uuid.clone())
        })
    }

    fn allocate(&self, ids: &[String]) -> BoxFuture<'_, Result<ContainerAllocation, DeviceError>> {
        let result = self.allocation(ids);
        Box::pin(async move { result })
    }

    fn node_labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        labels.insert("nvidia.com/gpu.present".to_string(), "true".to_string());
        labels.insert(
            "nvidia.com/gpu.count".to_string(),
            self.gpus.len().to_string(),
        );
        if let Some(first) = self.gpus.first() {
            let product = label_value(&first.model);
            if !product.is_empty() {
                labels.insert("nvidia.com/gpu.product".to_string(), product);
            }
            if let Some(bytes) = first.memory_bytes {
                labels.insert(
                    "nvidia.com/gpu.memory".to_string(),
                    (bytes / (1024 * 1024)).to_string(),
                );
            }
        }
        let replicas = self.config.time_slicing_replicas.max(1);
        labels.insert("nvidia.com/gpu.replicas".to_string(), replicas.to_string());
        labels.insert(
            "nvidia.com/gpu.sharing-strategy".to_string(),
            if replicas > 1 { "time-slicing" } else { "none" }.to_string(),
        );
        if let Some(version) = &self.driver_version {
            let full = label_value(version);
            if !full.is_empty() {
                labels.insert("nvidia.com/cuda.driver-version.full".to_string(), full);
            }
            if let Some(major) = version
                .split('.')
                .next()
                .filter(|m| m.parse::<u32>().is_ok())
            {
                labels.insert(
                    "nvidia.com/cuda.driver-version.major".to_string(),
                    major.to_string(),
                );
            }
        }
        labels
    }
}

/// The NVML event thread: registers the GPUs, then forwards events until the
/// health loop goes away.
fn watch_nvml_events(
    nvml: Arc<dyn Nvml>,
    uuids: Vec<String>,
    timeout: Duration,
    sender: mpsc::Sender<EventMessage>,
) {
    let registration = match nvml.watch_events(&uuids) {
        Ok(registration) => registration,
        Err(e) => {
            // Upstream gives up health checking here; GPUs stay healthy.
            tracing::error!(error = %e, "cannot create the NVML event set: no GPU health checks");
            return;
        }
    };
    for (uuid, e) in registration.unregistered {
        if sender
            .blocking_send(EventMessage::Unregistered(uuid, e))
            .is_err()
        {
            return;
        }
    }
    let mut source = registration.source;
    tracing::debug!(gpus = uuids.len(), "watching NVML events");
    loop {
        if sender.is_closed() {
            return;
        }
        let message = match source.wait(timeout) {
            Ok(None) => continue,
            Ok(Some(event)) => EventMessage::Event(event),
            Err(e) => {
                // Do not spin on a broken event set.
                std::thread::sleep(timeout.min(Duration::from_secs(1)));
                EventMessage::WaitFailed(e)
            }
        };
        if sender.blocking_send(message).is_err() {
            return;
        }
    }
}

/// The GPUs the driver lists in procfs whose `/dev/nvidiaN` exists.
fn procfs_gpus(root: &HostRoot) -> Result<Vec<Gpu>, BuiltinError> {
    let dir = root.join("/proc/driver/nvidia/gpus");
    let mut gpus = Vec::new();
    for bus_id in hostroot::dir_names(&dir).map_err(super::io_error(&dir))? {
        let path = dir.join(&bus_id).join("information");
        let Some(text) = hostroot::read_trimmed(&path) else {
            continue;
        };
        let info = parse_information(&text);
        let Some(uuid) = info.get("GPU UUID").filter(|u| !u.is_empty()) else {
            tracing::warn!(path = %path.display(), "no GPU UUID: skipping");
            continue;
        };
        let minor = info.get("Device Minor").and_then(|m| m.parse::<u32>().ok());
        let Some(minor) = minor else {
            tracing::warn!(path = %path.display(), "no device minor: skipping");
            continue;
        };
        if !root.node_present(&format!("/dev/nvidia{minor}")) {
            tracing::warn!(%uuid, minor, "no /dev/nvidia{minor}: skipping");
            continue;
        }
        gpus.push(Gpu {
            uuid: uuid.clone(),
            model: info.get("Model").cloned().unwrap_or_default(),
            minor: Some(minor),
            memory_bytes: None,
            numa_node: pci_numa(root, &bus_id),
            bus_id: Some(bus_id),
            ids: Vec::new(),
        });
    }
    Ok(gpus)
}

/// `Key: value` lines of a procfs `information` file.
fn parse_information(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
        .collect()
}

/// The NUMA node of a GPU from its PCI address, which NVML writes with an
/// 8-digit domain (`00000000:3B:00.0`) and sysfs with 4 (`0000:3b:00.0`).
fn pci_numa(root: &HostRoot, bus_id: &str) -> Option<i64> {
    let lower = bus_id.to_ascii_lowercase();
    let sysfs_id = lower
        .get(lower.len().saturating_sub(12)..)
        .unwrap_or(&lower);
    hostroot::read_numa_node(&root.join("/sys/bus/pci/devices").join(sysfs_id))
}

/// Whether `nvidia-ctk cdi generate` left a spec the runtime can use.
fn nvidia_cdi_spec_present(root: &HostRoot) -> bool {
    ["/etc/cdi", "/var/run/cdi"].iter().any(|dir| {
        hostroot::dir_names(&root.join(dir)).is_ok_and(|names| {
            names
                .iter()
                .any(|n| n.starts_with("nvidia") && (n.ends_with(".yaml") || n.ends_with(".json")))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn information_file_parses() {
        let text = "Model: \t\t Tesla T4\nIRQ:   \t\t 42\nGPU UUID: \t GPU-6d4f2f0e-aaaa-bbbb-cccc-0123456789ab\n\
                    Bus Location: \t 0000:00:1e.0\nDevice Minor: \t 0\n";
        let info = parse_information(text);
        assert_eq!(info["Model"], "Tesla T4");
        assert_eq!(info["GPU UUID"], "GPU-6d4f2f0e-aaaa-bbbb-cccc-0123456789ab");
        assert_eq!(info["Device Minor"], "0");
        assert_eq!(info["Bus Location"], "0000:00:1e.0");
    }

    #[test]
    fn pci_numa_accepts_both_domain_widths() {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path());
        let device = root.join("/sys/bus/pci/devices/0000:3b:00.0");
        std::fs::create_dir_all(&device).unwrap();
        std::fs::write(device.join("numa_node"), "1\n").unwrap();
        assert_eq!(pci_numa(&root, "00000000:3B:00.0"), Some(1));
        assert_eq!(pci_numa(&root, "0000:3b:00.0"), Some(1));
        assert_eq!(pci_numa(&root, "0000:5e:00.0"), None);
    }
}
