//! Coral Edge TPUs as `google.com/edge-tpu` (the name is configurable).
//!
//! - PCIe and M.2 modules: the gasket/apex driver's sysfs class
//!   `<root>/sys/class/apex/apex_N` (PCI `1ac1:089a` where the attributes are
//!   readable) with its node `/dev/apex_N`; device ID `apex_N`.
//! - The USB Accelerator: `<root>/sys/bus/usb/devices/*` whose
//!   `idVendor:idProduct` is `1a6e:089a` (firmware not loaded yet) or
//!   `18d1:9302` (running firmware); its node is `/dev/bus/usb/BBB/DDD` from
//!   `busnum` and `devnum`. The device ID is `usb-<port>` (e.g. `usb-2-1`),
//!   which survives the re-enumeration that loading the firmware causes;
//!   Allocate rescans so it injects the node of the current enumeration.
//!
//! Caveat of the USB Accelerator: libedgetpu loads the firmware when it
//! first opens a `1a6e:089a` device, which re-enumerates it with a new device
//! number the container was not given. Load the firmware on the host first
//! (the device then stays `18d1:9302` until unplugged or power-cycled); the
//! accelerator report says which state each USB TPU is in.
//!
//! Node labels, with `R` the resource name: `R.present`, `R.count`, and
//! `R.product` (`Coral-PCIe-Accelerator`, `Coral-USB-Accelerator`, or
//! `Coral-mixed`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use super::hostroot::{self, HostRoot};
use super::{AcceleratorInfo, BuiltinError, DeviceTable};
use crate::plugin::{
    BoxFuture, ContainerAllocation, Device, DeviceError, DevicePlugin, DeviceSpec, HealthEvent,
};

/// The default resource name.
pub const DEFAULT_RESOURCE: &str = "google.com/edge-tpu";

/// Global Unichip's PCI vendor ID and the Edge TPU's device ID.
const APEX_PCI: (u32, u32) = (0x1ac1, 0x089a);
/// The USB Accelerator before its firmware is loaded.
const USB_BOOTLOADER: (u32, u32) = (0x1a6e, 0x089a);
/// The USB Accelerator running its firmware.
const USB_RUNTIME: (u32, u32) = (0x18d1, 0x9302);

/// The Coral plugin's settings.
#[derive(Debug, Clone)]
pub struct CoralConfig {
    pub enabled: bool,
    pub resource_name: String,
}

impl Default for CoralConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            resource_name: DEFAULT_RESOURCE.to_string(),
        }
    }
}

/// How an Edge TPU is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attachment {
    /// `/dev/apex_N`.
    Pcie {
        node: String,
        bus_id: Option<String>,
    },
    /// `/dev/bus/usb/BBB/DDD` at a USB port.
    Usb {
        port: String,
        node: String,
        firmware_loaded: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Tpu {
    id: String,
    attachment: Attachment,
    numa_node: Option<i64>,
}

impl Tpu {
    fn node(&self) -> &str {
        match &self.attachment {
            Attachment::Pcie { node, .. } | Attachment::Usb { node, .. } => node,
        }
    }
}

/// The Edge TPU plugin.
pub struct CoralPlugin {
    root: HostRoot,
    resource: String,
    /// Every TPU seen since start, by ID, as last found.
    tpus: Mutex<BTreeMap<String, Tpu>>,
    table: DeviceTable,
}

impl std::fmt::Debug for CoralPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoralPlugin")
            .field("resource", &self.resource)
            .field("tpus", &*self.lock_tpus())
            .finish()
    }
}

impl CoralPlugin {
    /// The Edge TPUs under `root`; `None` when there are none.
    pub fn discover(root: &HostRoot, config: &CoralConfig) -> Result<Option<Self>, BuiltinError> {
        let tpus = scan_tpus(root)?;
        if tpus.is_empty() {
            return Ok(None);
        }
        let devices = tpus.iter().map(advertised).collect();
        Ok(Some(CoralPlugin {
            root: root.clone(),
            resource: config.resource_name.clone(),
            tpus: Mutex::new(tpus.into_iter().map(|t| (t.id.clone(), t)).collect()),
            table: DeviceTable::new(&config.resource_name, devices),
        }))
    }

    fn lock_tpus(&self) -> MutexGuard<'_, BTreeMap<String, Tpu>> {
        self.tpus.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rescans every `interval` (inside a tokio runtime).
    pub(crate) fn start(self: &Arc<Self>, interval: Duration) {
        super::rescan_every(self, interval, Self::rescan);
    }

    /// Looks for TPUs that came, went or re-enumerated.
    pub fn rescan(&self) {
        match scan_tpus(&self.root) {
            Ok(tpus) => {
                let devices = tpus.iter().map(advertised).collect();
                self.lock_tpus()
                    .extend(tpus.into_iter().map(|t| (t.id.clone(), t)));
                self.table.merge_scan(devices);
            }
            Err(e) => {
                tracing::warn!(resource = %self.resource, error = %e, "Edge TPU rescan failed")
            }
        }
    }

    fn allocation(&self, ids: &[String]) -> Result<ContainerAllocation, DeviceError> {
        // USB device numbers change when the firmware loads.
        self.rescan();
        let tpus = self.lock_tpus();
        let listed = self.table.snapshot();
        let mut allocation = ContainerAllocation::default();
        for id in ids {
            let Some(tpu) = tpus.get(id).filter(|_| listed.iter().any(|d| d.id == *id)) else {
                return Err(DeviceError::UnknownDevice {
                    resource: self.resource.clone(),
                    id: id.clone(),
                });
            };
            if allocation
                .devices
                .iter()
                .any(|d| d.container_path == tpu.node())
            {
                continue;
            }
            allocation.devices.push(DeviceSpec {
                container_path: tpu.node().to_string(),
                host_path: self.root.host_path(tpu.node()),
                permissions: "rw".to_string(),
            });
        }
        Ok(allocation)
    }

    /// The TPUs for the accelerator report.
    pub fn inventory(&self) -> Vec<AcceleratorInfo> {
        let listed = self.table.snapshot();
        self.lock_tpus()
            .values()
            .map(|tpu| {
                let healthy = listed.iter().any(|d| d.id == tpu.id && d.healthy);
                let (model, source, bus_id) = match &tpu.attachment {
                    Attachment::Pcie { bus_id, .. } => {
                        ("Coral Edge TPU (PCIe)".to_string(), "apex", bus_id.clone())
                    }
                    Attachment::Usb {
                        port,
                        firmware_loaded,
                        ..
                    } => (
                        format!(
                            "Coral USB Accelerator ({})",
                            if *firmware_loaded {
                                "firmware loaded"
                            } else {
                                "firmware not loaded"
                            }
                        ),
                        "usb",
                        Some(port.clone()),
                    ),
                };
                AcceleratorInfo {
                    vendor: "google".to_string(),
                    resource: self.resource.clone(),
                    id: tpu.id.clone(),
                    model,
                    uuid: None,
                    memory_mib: None,
                    health: if healthy { "Healthy" } else { "Unhealthy" }.to_string(),
                    health_reason: (!healthy)
                        .then(|| "device disappeared from the host".to_string()),
                    source: source.to_string(),
                    device_nodes: vec![self.root.host_path(tpu.node())],
                    numa_node: tpu.numa_node,
                    bus_id,
                }
            })
            .collect()
    }
}

impl DevicePlugin for CoralPlugin {
    fn resource_name(&self) -> &str {
        &self.resource
    }

    fn devices(&self) -> watch::Receiver<Vec<Device>> {
        self.table.subscribe()
    }

    fn health_events(&self) -> Option<broadcast::Receiver<HealthEvent>> {
        Some(self.table.health_events())
    }

    fn allocate(&self, ids: &[String]) -> BoxFuture<'_, Result<ContainerAllocation, DeviceError>> {
        let result = self.allocation(ids);
        Box::pin(async move { result })
    }

    fn node_labels(&self) -> BTreeMap<String, String> {
        let tpus = self.lock_tpus();
        let usb = tpus
            .values()
            .filter(|t| matches!(t.attachment, Attachment::Usb { .. }))
            .count();
        let pcie = tpus.len() - usb;
        let product = match (pcie, usb) {
            (_, 0) => "Coral-PCIe-Accelerator",
            (0, _) => "Coral-USB-Accelerator",
            _ => "Coral-mixed",
        };
        let r = &self.resource;
        BTreeMap::from([
            (format!("{r}.present"), "true".to_string()),
            (format!("{r}.count"), tpus.len().to_string()),
            (format!("{r}.product"), product.to_string()),
        ])
    }
}

fn advertised(tpu: &Tpu) -> Device {
    Device {
        id: tpu.id.clone(),
        healthy: true,
        numa_node: tpu.numa_node,
    }
}

/// Every Edge TPU under `root`: PCIe ones first, then USB ones by port.
fn scan_tpus(root: &HostRoot) -> Result<Vec<Tpu>, BuiltinError> {
    let mut tpus = Vec::new();

    let apex = root.join("/sys/class/apex");
    let mut names = hostroot::dir_names(&apex).map_err(super::io_error(&apex))?;
    names.sort_by_key(|n| hostroot::natural_key(n));
    for name in names {
        let device = apex.join(&name).join("device");
        let ids = (
            hostroot::read_hex(&device.join("vendor")),
            hostroot::read_hex(&device.join("device")),
        );
        if let (Some(vendor), Some(product)) = ids {
            if (vendor, product) != APEX_PCI {
                tracing::debug!(%name, vendor, product, "apex class device is not an Edge TPU");
                continue;
            }
        }
        let node = format!("/dev/{name}");
        if !root.node_present(&node) {
            tracing::warn!(%name, "no {node}: skipping");
            continue;
        }
        tpus.push(Tpu {
            id: name,
            attachment: Attachment::Pcie {
                node,
                bus_id: hostroot::link_name(&device),
            },
            numa_node: hostroot::read_numa_node(&device),
        });
    }

    let usb = root.join("/sys/bus/usb/devices");
    for port in hostroot::dir_names(&usb).map_err(super::io_error(&usb))? {
        let device = usb.join(&port);
        let (Some(vendor), Some(product)) = (
            hostroot::read_hex(&device.join("idVendor")),
            hostroot::read_hex(&device.join("idProduct")),
        ) else {
            continue;
        };
        let firmware_loaded = match (vendor, product) {
            USB_BOOTLOADER => false,
            USB_RUNTIME => true,
            _ => continue,
        };
        let (Some(bus), Some(dev)) = (
            hostroot::read_decimal(&device.join("busnum")),
            hostroot::read_decimal(&device.join("devnum")),
        ) else {
            tracing::warn!(%port, "USB Edge TPU without busnum/devnum: skipping");
            continue;
        };
        let node = format!("/dev/bus/usb/{bus:03}/{dev:03}");
        if !root.node_present(&node) {
            tracing::warn!(%port, "no {node}: skipping");
            continue;
        }
        tpus.push(Tpu {
            id: format!("usb-{port}"),
            attachment: Attachment::Usb {
                port,
                node,
                firmware_loaded,
            },
            numa_node: None,
        });
    }
    Ok(tpus)
}
