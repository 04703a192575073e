//! The built-in device plugins: NVIDIA GPUs ([`nvidia`]), Intel GPUs
//! ([`intel`]) and Coral Edge TPUs ([`coral`]).
//!
//! Each reads a host root ([`HostRoot`], `--accelerator-root`, default `/`)
//! and serves the same [`DevicePlugin`] interface as an external plugin.
//! [`discover_builtin`] returns the plugins whose hardware is present;
//! [`accelerator_report`] describes what was found as JSON for
//! `kedge check-config --accelerators`.
//!
//! Health: a device that disappears from its host tree (hot-unplug, a USB
//! Coral re-enumerating) turns unhealthy and healthy again when it is back;
//! NVIDIA GPUs also turn unhealthy on NVML XID critical errors and are
//! advertised again once NVML can reach them after a quiet period. Every
//! change is sent on [`DevicePlugin::health_events`] with its cause.
//!
//! Background work (rescans, the NVML event loop) starts only in
//! [`discover_builtin`], and only inside a tokio runtime; it stops when the
//! plugin is dropped.

pub mod coral;
pub mod hostroot;
pub mod intel;
pub mod nvidia;
pub mod nvml;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::plugin::{Device, DevicePlugin, HealthEvent};

pub use coral::{CoralConfig, CoralPlugin};
pub use hostroot::HostRoot;
pub use intel::{IntelConfig, IntelGpuPlugin};
pub use nvidia::{NvidiaConfig, NvidiaPlugin, NvmlMode, DEFAULT_IGNORED_XIDS};
pub use nvml::{FakeNvml, Nvml, NvmlDevice, NvmlError, NvmlEvent, NvmlLibrary};

/// Errors of built-in discovery.
#[derive(Debug, thiserror::Error)]
pub enum BuiltinError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("NVML: {0}")]
    Nvml(#[from] NvmlError),
}

pub type Result<T, E = BuiltinError> = std::result::Result<T, E>;

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> BuiltinError + '_ {
    move |source| BuiltinError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// How each built-in plugin runs; [`Default`] enables all three with
/// upstream's defaults.
#[derive(Debug, Clone)]
pub struct BuiltinConfig {
    pub nvidia: NvidiaConfig,
    pub intel: IntelConfig,
    pub coral: CoralConfig,
    /// How often the sysfs-based plugins (Intel, Coral) look for devices
    /// that came or went. Upstream's Intel plugin: 5 s.
    pub rescan_interval: Duration,
}

impl Default for BuiltinConfig {
    fn default() -> Self {
        Self {
            nvidia: NvidiaConfig::default(),
            intel: IntelConfig::default(),
            coral: CoralConfig::default(),
            rescan_interval: Duration::from_secs(5),
        }
    }
}

/// Finds the accelerators under `root` and returns one plugin per resource
/// that has hardware; a vendor whose discovery fails is logged and skipped.
///
/// Inside a tokio runtime this also starts each plugin's background work
/// (rescans, NVML health events).
pub fn discover_builtin(root: &Path, config: &BuiltinConfig) -> Vec<Arc<dyn DevicePlugin>> {
    let root = HostRoot::new(root);
    let found = Discovered::find(&root, config);
    let runtime = tokio::runtime::Handle::try_current().ok();
    if runtime.is_none() && !found.is_empty() {
        tracing::warn!(
            "built-in device plugins found outside a tokio runtime: no rescans or health events"
        );
    }
    let mut plugins: Vec<Arc<dyn DevicePlugin>> = Vec::new();
    if let Some(nvidia) = found.nvidia {
        if runtime.is_some() {
            nvidia.start(config.rescan_interval);
        }
        plugins.push(nvidia);
    }
    for intel in found.intel {
        if runtime.is_some() {
            intel.start(config.rescan_interval);
        }
        plugins.push(intel);
    }
    if let Some(coral) = found.coral {
        if runtime.is_some() {
            coral.start(config.rescan_interval);
        }
        plugins.push(coral);
    }
    for plugin in &plugins {
        let devices = plugin.devices().borrow().len();
        tracing::info!(
            resource = plugin.resource_name(),
            devices,
            "built-in device plugin"
        );
    }
    plugins
}

/// The concrete plugins discovery found.
struct Discovered {
    nvidia: Option<Arc<NvidiaPlugin>>,
    intel: Vec<Arc<IntelGpuPlugin>>,
    coral: Option<Arc<CoralPlugin>>,
    nvml: NvmlStatus,
    errors: Vec<String>,
}

impl Discovered {
    fn find(root: &HostRoot, config: &BuiltinConfig) -> Self {
        let mut errors = Vec::new();
        let mut nvml = NvmlStatus::default();
        let nvidia = if config.nvidia.enabled {
            match NvidiaPlugin::discover(root, &config.nvidia) {
                Ok((plugin, status)) => {
                    nvml = status;
                    plugin.map(Arc::new)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "NVIDIA discovery failed");
                    errors.push(format!("nvidia: {e}"));
                    None
                }
            }
        } else {
            nvml.error = Some("NVIDIA plugin disabled".to_string());
            None
        };
        let intel = if config.intel.enabled {
            match IntelGpuPlugin::discover(root, &config.intel) {
                Ok(plugins) => plugins.into_iter().map(Arc::new).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "Intel GPU discovery failed");
                    errors.push(format!("intel: {e}"));
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let coral = if config.coral.enabled {
            match CoralPlugin::discover(root, &config.coral) {
                Ok(plugin) => plugin.map(Arc::new),
                Err(e) => {
                    tracing::warn!(error = %e, "Coral discovery failed");
                    errors.push(format!("coral: {e}"));
                    None
                }
            }
        } else {
            None
        };
        Discovered {
            nvidia,
            intel,
            coral,
            nvml,
            errors,
        }
    }

    fn is_empty(&self) -> bool {
        self.nvidia.is_none() && self.intel.is_empty() && self.coral.is_none()
    }
}

/// What `kedge check-config --accelerators` prints.
#[derive(Debug, Clone, Serialize)]
pub struct AcceleratorReport {
    pub accelerator_root: String,
    pub nvml: NvmlStatus,
    pub devices: Vec<AcceleratorInfo>,
    /// Per extended resource: how many devices it advertises, and how many
    /// are healthy (time-slicing replicas and shares counted).
    pub resources: BTreeMap<String, ResourceCount>,
    pub labels: BTreeMap<String, String>,
    /// Vendors whose discovery failed, with why.
    pub errors: Vec<String>,
}

impl AcceleratorReport {
    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// Whether NVML was used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NvmlStatus {
    pub loaded: bool,
    pub driver_version: Option<String>,
    /// Why NVML was not used, if it was not.
    pub error: Option<String>,
}

/// Device counts of one resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ResourceCount {
    pub capacity: usize,
    pub allocatable: usize,
}

/// One physical accelerator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcceleratorInfo {
    /// `nvidia`, `intel`, `google`.
    pub vendor: String,
    /// The extended resource it is advertised as.
    pub resource: String,
    /// Its device ID in the resource (before replication).
    pub id: String,
    pub model: String,
    /// The GPU UUID where the hardware has one.
    pub uuid: Option<String>,
    pub memory_mib: Option<u64>,
    /// `Healthy` or `Unhealthy`.
    pub health: String,
    /// Why it is unhealthy.
    pub health_reason: Option<String>,
    /// Kernel driver or discovery source (`nvml`, `procfs`, `i915`, `apex`, `usb`).
    pub source: String,
    pub device_nodes: Vec<String>,
    pub numa_node: Option<i64>,
    /// PCI address or USB port.
    pub bus_id: Option<String>,
}

/// Discovers the accelerators under `root` once, without starting any
/// background work, and describes them. NVIDIA GPUs found through NVML are
/// probed for health.
pub fn accelerator_report(root: &Path, config: &BuiltinConfig) -> AcceleratorReport {
    let host = HostRoot::new(root);
    let found = Discovered::find(&host, config);
    let mut devices = Vec::new();
    let mut labels = BTreeMap::new();
    let mut resources = BTreeMap::new();
    let mut add = |plugin: &dyn DevicePlugin, infos: Vec<AcceleratorInfo>| {
        let list = plugin.devices().borrow().clone();
        resources.insert(
            plugin.resource_name().to_string(),
            ResourceCount {
                capacity: list.len(),
                allocatable: list.iter().filter(|d| d.healthy).count(),
            },
        );
        labels.extend(plugin.node_labels());
        devices.extend(infos);
    };
    if let Some(nvidia) = &found.nvidia {
        add(nvidia.as_ref(), nvidia.inventory(true));
    }
    for intel in &found.intel {
        add(intel.as_ref(), intel.inventory());
    }
    if let Some(coral) = &found.coral {
        add(coral.as_ref(), coral.inventory());
    }
    AcceleratorReport {
        accelerator_root: root.display().to_string(),
        nvml: found.nvml,
        devices,
        resources,
        labels,
        errors: found.errors,
    }
}

// ---------------------------------------------------------------------------
// Shared machinery.

/// Calls `rescan` on `plugin` every `interval` (the first call one interval
/// from now) until the plugin is dropped. Inside a tokio runtime.
pub(crate) fn rescan_every<T: Send + Sync + 'static>(
    plugin: &Arc<T>,
    interval: Duration,
    rescan: fn(&T),
) {
    let plugin = Arc::downgrade(plugin);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(plugin) = plugin.upgrade() else {
                break;
            };
            rescan(&plugin);
        }
    });
}

/// The advertised device list of one plugin and its health events.
pub(crate) struct DeviceTable {
    resource: String,
    list: watch::Sender<Vec<Device>>,
    events: broadcast::Sender<HealthEvent>,
}

impl DeviceTable {
    pub(crate) fn new(resource: &str, devices: Vec<Device>) -> Self {
        let (list, _) = watch::channel(devices);
        let (events, _) = broadcast::channel(256);
        Self {
            resource: resource.to_string(),
            list,
            events,
        }
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Vec<Device>> {
        self.list.subscribe()
    }

    pub(crate) fn health_events(&self) -> broadcast::Receiver<HealthEvent> {
        self.events.subscribe()
    }

    pub(crate) fn snapshot(&self) -> Vec<Device> {
        self.list.borrow().clone()
    }

    /// Sets the health of these device IDs; only changes are published.
    pub(crate) fn set_health(&self, ids: &BTreeSet<String>, healthy: bool, reason: &str) {
        let mut changed = Vec::new();
        self.list.send_if_modified(|list| {
            for device in list.iter_mut() {
                if ids.contains(&device.id) && device.healthy != healthy {
                    device.healthy = healthy;
                    changed.push(device.id.clone());
                }
            }
            !changed.is_empty()
        });
        self.announce(changed, healthy, reason);
    }

    /// Folds a rescan in: new devices are added, devices that vanished turn
    /// unhealthy (their pods still hold them), devices that came back turn
    /// healthy again.
    pub(crate) fn merge_scan(&self, present: Vec<Device>) {
        let mut gone = Vec::new();
        let mut back = Vec::new();
        self.list.send_if_modified(|list| {
            let mut modified = false;
            let present_ids: BTreeSet<&str> = present.iter().map(|d| d.id.as_str()).collect();
            for device in list.iter_mut() {
                if !present_ids.contains(device.id.as_str()) && device.healthy {
                    device.healthy = false;
                    gone.push(device.id.clone());
                    modified = true;
                }
            }
            for found in &present {
                match list.iter_mut().find(|d| d.id == found.id) {
                    Some(device) => {
                        if !device.healthy && found.healthy {
                            back.push(device.id.clone());
                        }
                        if device != found {
                            *device = found.clone();
                            modified = true;
                        }
                    }
                    None => {
                        list.push(found.clone());
                        modified = true;
                    }
                }
            }
            modified
        });
        self.announce(gone, false, "device disappeared from the host");
        self.announce(back, true, "device present again");
    }

    fn announce(&self, ids: Vec<String>, healthy: bool, reason: &str) {
        for device_id in ids {
            if healthy {
                tracing::info!(resource = %self.resource, device = %device_id, reason, "device healthy");
            } else {
                tracing::warn!(resource = %self.resource, device = %device_id, reason, "device unhealthy");
            }
            // No subscriber is not an error: the list itself carries health.
            let _ = self.events.send(HealthEvent {
                device_id,
                healthy,
                reason: reason.to_string(),
            });
        }
    }
}

/// The advertised IDs of a device shared `replicas` times: the device's own
/// ID when it is not shared.
pub(crate) fn replica_ids(base: &str, replicas: u32, separator: &str) -> Vec<String> {
    if replicas <= 1 {
        vec![base.to_string()]
    } else {
        (0..replicas)
            .map(|n| format!("{base}{separator}{n}"))
            .collect()
    }
}

/// GetPreferredAllocation for shared devices: the required IDs, then IDs of
/// the devices used least by this request and with the most free shares
/// (spreading a request over distinct devices, and pods over the least busy
/// ones, as upstream's time-slicing "distributed" policy does).
pub(crate) fn spread_allocation(
    available: &[String],
    must_include: &[String],
    size: usize,
    physical: impl Fn(&str) -> Option<String>,
) -> Option<Vec<String>> {
    let mut chosen: Vec<String> = must_include.iter().take(size).cloned().collect();
    let mut free_per_device: BTreeMap<String, usize> = BTreeMap::new();
    for id in available {
        *free_per_device.entry(physical(id)?).or_default() += 1;
    }
    let mut used: BTreeMap<String, usize> = BTreeMap::new();
    for id in &chosen {
        *used.entry(physical(id)?).or_default() += 1;
    }
    while chosen.len() < size {
        let next = available
            .iter()
            .filter(|id| !chosen.contains(id))
            .filter_map(|id| physical(id).map(|p| (id, p)))
            .min_by_key(|(_, p)| {
                (
                    used.get(p).copied().unwrap_or(0),
                    std::cmp::Reverse(free_per_device.get(p).copied().unwrap_or(0)),
                )
            });
        let (id, device) = next?;
        *used.entry(device).or_default() += 1;
        chosen.push(id.clone());
    }
    Some(chosen)
}

/// A label value as Kubernetes accepts it: at most 63 characters of
/// `[A-Za-z0-9._-]`, starting and ending alphanumeric; spaces become `-`
/// (as NVIDIA's GPU feature discovery writes `Tesla-T4`).
pub(crate) fn label_value(raw: &str) -> String {
    let mapped: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let mut value: String = trimmed.chars().take(63).collect();
    while value.ends_with(|c: char| !c.is_ascii_alphanumeric()) {
        value.pop();
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(id: &str, healthy: bool) -> Device {
        Device {
            id: id.to_string(),
            healthy,
            numa_node: None,
        }
    }

    #[test]
    fn merge_scan_marks_vanished_unhealthy_and_returning_healthy() {
        let table = DeviceTable::new("example.com/x", vec![dev("a", true), dev("b", true)]);
        let mut events = table.health_events();
        table.merge_scan(vec![dev("a", true)]);
        assert_eq!(table.snapshot(), vec![dev("a", true), dev("b", false)]);
        let event = events.try_recv().unwrap();
        assert_eq!((event.device_id.as_str(), event.healthy), ("b", false));
        table.merge_scan(vec![dev("a", true), dev("b", true), dev("c", true)]);
        assert_eq!(
            table.snapshot(),
            vec![dev("a", true), dev("b", true), dev("c", true)]
        );
        let event = events.try_recv().unwrap();
        assert_eq!((event.device_id.as_str(), event.healthy), ("b", true));
        assert!(
            events.try_recv().is_err(),
            "a new device is not a health change"
        );
    }

    #[test]
    fn set_health_publishes_only_changes() {
        let table = DeviceTable::new("example.com/x", vec![dev("a", true), dev("b", false)]);
        let mut events = table.health_events();
        let ids: BTreeSet<String> = ["a".to_string(), "b".to_string()].into();
        table.set_health(&ids, false, "XID 79");
        let event = events.try_recv().unwrap();
        assert_eq!(event.device_id, "a");
        assert_eq!(event.reason, "XID 79");
        assert!(events.try_recv().is_err());
    }

    #[test]
    fn spread_prefers_distinct_and_least_busy_devices() {
        let physical = |id: &str| id.split("::").next().map(str::to_string);
        let available: Vec<String> = ["g0::0", "g0::1", "g1::0", "g1::1", "g1::2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let chosen = spread_allocation(&available, &[], 2, physical).unwrap();
        assert_eq!(chosen, ["g1::0", "g0::0"]);
        let chosen = spread_allocation(&available, &["g0::1".to_string()], 2, physical).unwrap();
        assert_eq!(chosen, ["g0::1", "g1::0"]);
        assert_eq!(spread_allocation(&available, &[], 6, physical), None);
    }

    #[test]
    fn label_values_are_valid() {
        assert_eq!(label_value("Tesla T4"), "Tesla-T4");
        assert_eq!(
            label_value("NVIDIA H100 80GB HBM3"),
            "NVIDIA-H100-80GB-HBM3"
        );
        assert_eq!(label_value(" (weird) name! "), "weird--name");
        assert_eq!(label_value(&"x".repeat(70)).len(), 63);
        assert_eq!(replica_ids("GPU-1", 1, "::"), ["GPU-1"]);
        assert_eq!(replica_ids("GPU-1", 2, "::"), ["GPU-1::0", "GPU-1::1"]);
    }
}
