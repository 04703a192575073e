//! Intel GPUs as `gpu.intel.com/i915` or `gpu.intel.com/xe`, by the kernel
//! driver bound to each card.
//!
//! Discovery, as Intel's GPU plugin does it: `<root>/sys/class/drm/cardN`
//! (connectors such as `card0-HDMI-A-1` are not cards) whose
//! `device/vendor` is `0x8086`, driver from the `device/driver` symlink's
//! name; a physical function with SR-IOV virtual functions enabled
//! (`device/sriov_numvfs` > 0) is left to its VFs. Each card is advertised
//! `shared-dev-num` times as `cardN-0`, `cardN-1`, ... (upstream's IDs);
//! Allocate injects `/dev/dri/cardN` and its render node (`renderD*`, named
//! in `device/drm/`) with `rw`.
//!
//! Node labels follow Intel's NFD rules: `intel.feature.node.kubernetes.io/gpu`
//! and, per PCI class and device ID, `gpu.intel.com/device-id.<class>-<device>.present`
//! and `.count` (e.g. `gpu.intel.com/device-id.0300-56a0.count=2`). Intel GPU
//! memory is not in sysfs for every driver, so there is no memory label.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use super::hostroot::{self, HostRoot};
use super::{spread_allocation, AcceleratorInfo, BuiltinError, DeviceTable};
use crate::plugin::{
    BoxFuture, ContainerAllocation, Device, DeviceError, DevicePlugin, DeviceSpec, HealthEvent,
};

/// The resource of cards bound to `i915`.
pub const RESOURCE_I915: &str = "gpu.intel.com/i915";
/// The resource of cards bound to `xe`.
pub const RESOURCE_XE: &str = "gpu.intel.com/xe";

const INTEL_VENDOR: u32 = 0x8086;

/// The Intel GPU plugin's settings.
#[derive(Debug, Clone)]
pub struct IntelConfig {
    pub enabled: bool,
    /// How many containers may share one card (upstream `-shared-dev-num`);
    /// 0 counts as 1.
    pub shared_dev_num: u32,
}

impl Default for IntelConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            shared_dev_num: 1,
        }
    }
}

/// One Intel DRM card.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Card {
    /// `card0`.
    name: String,
    driver: String,
    /// 24-bit PCI class, e.g. 0x030000.
    pci_class: Option<u32>,
    pci_device: Option<u32>,
    bus_id: Option<String>,
    numa_node: Option<i64>,
    /// `renderD128`.
    render: Option<String>,
}

impl Card {
    fn nodes(&self) -> Vec<String> {
        let mut nodes = vec![format!("/dev/dri/{}", self.name)];
        if let Some(render) = &self.render {
            nodes.push(format!("/dev/dri/{render}"));
        }
        nodes
    }
}

/// One Intel GPU resource (`i915` or `xe`).
pub struct IntelGpuPlugin {
    root: HostRoot,
    resource: &'static str,
    driver: &'static str,
    shared: u32,
    /// Every card seen since start, by name (a vanished card stays, unhealthy).
    cards: Mutex<BTreeMap<String, Card>>,
    table: DeviceTable,
}

impl std::fmt::Debug for IntelGpuPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntelGpuPlugin")
            .field("resource", &self.resource)
            .field("cards", &*self.lock_cards())
            .finish()
    }
}

impl IntelGpuPlugin {
    /// One plugin per driver that has cards under `root`.
    pub fn discover(root: &HostRoot, config: &IntelConfig) -> Result<Vec<Self>, BuiltinError> {
        let cards = scan_cards(root)?;
        let mut plugins = Vec::new();
        for (driver, resource) in [("i915", RESOURCE_I915), ("xe", RESOURCE_XE)] {
            let mine: Vec<Card> = cards
                .iter()
                .filter(|c| c.driver == driver)
                .cloned()
                .collect();
            if mine.is_empty() {
                continue;
            }
            let shared = config.shared_dev_num.max(1);
            let devices = advertised(&mine, shared);
            plugins.push(IntelGpuPlugin {
                root: root.clone(),
                resource,
                driver,
                shared,
                cards: Mutex::new(mine.into_iter().map(|c| (c.name.clone(), c)).collect()),
                table: DeviceTable::new(resource, devices),
            });
        }
        Ok(plugins)
    }

    fn lock_cards(&self) -> MutexGuard<'_, BTreeMap<String, Card>> {
        self.cards.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rescans `<root>/sys/class/drm` every `interval` (inside a tokio runtime).
    pub(crate) fn start(self: &Arc<Self>, interval: Duration) {
        super::rescan_every(self, interval, Self::rescan);
    }

    /// Looks for cards that came or went.
    pub fn rescan(&self) {
        let cards = match scan_cards(&self.root) {
            Ok(cards) => cards,
            Err(e) => {
                tracing::warn!(resource = self.resource, error = %e, "Intel GPU rescan failed");
                return;
            }
        };
        let mine: Vec<Card> = cards
            .into_iter()
            .filter(|c| c.driver == self.driver)
            .collect();
        let devices = advertised(&mine, self.shared);
        self.lock_cards()
            .extend(mine.into_iter().map(|c| (c.name.clone(), c)));
        self.table.merge_scan(devices);
    }

    fn card_of(id: &str) -> &str {
        id.rsplit_once('-').map_or(id, |(card, _)| card)
    }

    fn allocation(&self, ids: &[String]) -> Result<ContainerAllocation, DeviceError> {
        let cards = self.lock_cards();
        let listed = self.table.snapshot();
        let mut chosen: Vec<&Card> = Vec::new();
        for id in ids {
            let card = cards
                .get(Self::card_of(id))
                .filter(|_| listed.iter().any(|d| d.id == *id))
                .ok_or_else(|| DeviceError::UnknownDevice {
                    resource: self.resource.to_string(),
                    id: id.clone(),
                })?;
            if !chosen.iter().any(|c| c.name == card.name) {
                chosen.push(card);
            }
        }
        let mut allocation = ContainerAllocation::default();
        for card in chosen {
            for node in card.nodes() {
                if !self.root.node_present(&node) {
                    return Err(DeviceError::Allocate {
                        resource: self.resource.to_string(),
                        message: format!("{node} is missing under {}", self.root.path().display()),
                    });
                }
                allocation.devices.push(DeviceSpec {
                    host_path: self.root.host_path(&node),
                    container_path: node,
                    permissions: "rw".to_string(),
                });
            }
        }
        Ok(allocation)
    }

    /// The cards for the accelerator report.
    pub fn inventory(&self) -> Vec<AcceleratorInfo> {
        let listed = self.table.snapshot();
        self.lock_cards()
            .values()
            .map(|card| {
                let healthy = listed
                    .iter()
                    .filter(|d| Self::card_of(&d.id) == card.name)
                    .all(|d| d.healthy);
                AcceleratorInfo {
                    vendor: "intel".to_string(),
                    resource: self.resource.to_string(),
                    id: card.name.clone(),
                    model: card
                        .pci_device
                        .map(|d| format!("Intel GPU 8086:{d:04x}"))
                        .unwrap_or_else(|| "Intel GPU".to_string()),
                    uuid: None,
                    memory_mib: None,
                    health: if healthy { "Healthy" } else { "Unhealthy" }.to_string(),
                    health_reason: (!healthy)
                        .then(|| "device disappeared from the host".to_string()),
                    source: card.driver.clone(),
                    device_nodes: card
                        .nodes()
                        .iter()
                        .map(|n| self.root.host_path(n))
                        .collect(),
                    numa_node: card.numa_node,
                    bus_id: card.bus_id.clone(),
                }
            })
            .collect()
    }
}

impl DevicePlugin for IntelGpuPlugin {
    fn resource_name(&self) -> &str {
        self.resource
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
        if self.shared <= 1 {
            return None;
        }
        spread_allocation(available, must_include, size, |id| {
            Some(Self::card_of(id).to_string())
        })
    }

    fn allocate(&self, ids: &[String]) -> BoxFuture<'_, Result<ContainerAllocation, DeviceError>> {
        let result = self.allocation(ids);
        Box::pin(async move { result })
    }

    fn node_labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        labels.insert(
            "intel.feature.node.kubernetes.io/gpu".to_string(),
            "true".to_string(),
        );
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for card in self.lock_cards().values() {
            if let (Some(class), Some(device)) = (card.pci_class, card.pci_device) {
                *counts
                    .entry(format!("{:04x}-{device:04x}", class >> 8))
                    .or_default() += 1;
            }
        }
        for (id, count) in counts {
            labels.insert(
                format!("gpu.intel.com/device-id.{id}.present"),
                "true".to_string(),
            );
            labels.insert(
                format!("gpu.intel.com/device-id.{id}.count"),
                count.to_string(),
            );
        }
        labels
    }
}

/// The IDs of `cards`, each shared `shared` times.
fn advertised(cards: &[Card], shared: u32) -> Vec<Device> {
    cards
        .iter()
        .flat_map(|card| {
            (0..shared).map(|i| Device {
                id: format!("{}-{i}", card.name),
                healthy: true,
                numa_node: card.numa_node,
            })
        })
        .collect()
}

/// Every Intel card under `<root>/sys/class/drm`, bound to i915 or xe.
fn scan_cards(root: &HostRoot) -> Result<Vec<Card>, BuiltinError> {
    let drm = root.join("/sys/class/drm");
    let mut names: Vec<String> = hostroot::dir_names(&drm)
        .map_err(super::io_error(&drm))?
        .into_iter()
        .filter(|n| {
            n.strip_prefix("card")
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    names.sort_by_key(|n| hostroot::natural_key(n));
    let mut cards = Vec::new();
    for name in names {
        let device = drm.join(&name).join("device");
        if hostroot::read_hex(&device.join("vendor")) != Some(INTEL_VENDOR) {
            continue;
        }
        let Some(driver) = hostroot::link_name(&device.join("driver")) else {
            tracing::debug!(card = %name, "Intel card without a driver: skipping");
            continue;
        };
        if driver != "i915" && driver != "xe" {
            tracing::debug!(card = %name, %driver, "Intel card bound to another driver: skipping");
            continue;
        }
        if hostroot::read_decimal(&device.join("sriov_numvfs")).is_some_and(|n| n > 0) {
            tracing::info!(card = %name, "SR-IOV physical function with VFs enabled: advertising its VFs only");
            continue;
        }
        let render = hostroot::dir_names(&device.join("drm"))
            .map_err(super::io_error(&device))?
            .into_iter()
            .find(|n| n.starts_with("renderD"));
        if !root.node_present(&format!("/dev/dri/{name}")) {
            tracing::warn!(card = %name, "no /dev/dri/{name}: skipping");
            continue;
        }
        cards.push(Card {
            pci_class: hostroot::read_hex(&device.join("class")),
            pci_device: hostroot::read_hex(&device.join("device")),
            bus_id: hostroot::link_name(&device),
            numa_node: hostroot::read_numa_node(&device),
            name,
            driver,
            render,
        });
    }
    Ok(cards)
}
