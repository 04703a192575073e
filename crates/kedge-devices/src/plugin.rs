//! The interface every device plugin serves, built-in or external.
//!
//! It mirrors the v1beta1 device plugin API: [`DevicePlugin::devices`] is
//! ListAndWatch as a watch channel, [`DevicePlugin::preferred_allocation`] is
//! GetPreferredAllocation and [`DevicePlugin::allocate`] is Allocate for one
//! container.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

/// One schedulable device as ListAndWatch reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The device ID the scheduler hands back in Allocate (a GPU UUID, a
    /// time-slicing replica `<uuid>::<n>`, a DRM card name, ...).
    pub id: String,
    /// Unhealthy devices count in capacity but not in allocatable.
    pub healthy: bool,
    /// The NUMA node the device hangs off, where the host says.
    pub numa_node: Option<i64>,
}

/// A device node made visible in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    pub container_path: String,
    pub host_path: String,
    /// cgroup permissions: "r", "w", "m" in any combination, e.g. "rw", "rwm".
    pub permissions: String,
}

/// A host path mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub container_path: String,
    pub host_path: String,
    pub read_only: bool,
}

/// What one container gets for its devices (an Allocate ContainerResponse).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerAllocation {
    pub devices: Vec<DeviceSpec>,
    pub mounts: Vec<MountSpec>,
    pub envs: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Fully qualified CDI device names (`vendor.com/class=name`).
    pub cdi_devices: Vec<String>,
}

/// A change of one device's health, with its cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    pub device_id: String,
    pub healthy: bool,
    /// Why, for events and conditions: e.g. "XID 79".
    pub reason: String,
}

/// Errors of a device plugin.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("unknown device {id} for resource {resource}")]
    UnknownDevice { resource: String, id: String },
    #[error("device {id} of resource {resource} is unhealthy")]
    Unhealthy { resource: String, id: String },
    #[error("allocate on {resource} failed: {message}")]
    Allocate { resource: String, message: String },
    /// A call to a plugin other than Allocate failed (an external plugin's
    /// GetPreferredAllocation or PreStartContainer RPC).
    #[error("{call} on the device plugin for {resource} failed: {message}")]
    Call {
        resource: String,
        call: &'static str,
        message: String,
    },
    /// The plugin is gone (an external plugin's socket or stream closed).
    #[error("the device plugin for {resource} is not connected")]
    Disconnected { resource: String },
}

/// A boxed, sendable future, so that [`DevicePlugin`] stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A source of one extended resource.
pub trait DevicePlugin: Send + Sync + 'static {
    /// The extended resource name, e.g. `nvidia.com/gpu`.
    fn resource_name(&self) -> &str;

    /// ListAndWatch: the current device list, and every change to it.
    fn devices(&self) -> tokio::sync::watch::Receiver<Vec<Device>>;

    /// Health changes with their causes, for events and conditions.
    fn health_events(&self) -> Option<tokio::sync::broadcast::Receiver<HealthEvent>> {
        None
    }

    /// GetPreferredAllocation: `None` lets the device manager choose.
    fn preferred_allocation(
        &self,
        _available: &[String],
        _must_include: &[String],
        _size: usize,
    ) -> Option<Vec<String>> {
        None
    }

    /// GetPreferredAllocation as the device manager calls it: answers from
    /// [`DevicePlugin::preferred_allocation`] unless overridden. Plugins whose
    /// answer needs I/O (external plugins: an RPC) override this one instead;
    /// an error fails the admission, as upstream.
    fn get_preferred_allocation(
        &self,
        available: &[String],
        must_include: &[String],
        size: usize,
    ) -> BoxFuture<'_, Result<Option<Vec<String>>, DeviceError>> {
        let preferred = self.preferred_allocation(available, must_include, size);
        Box::pin(async move { Ok(preferred) })
    }

    /// PreStartContainer: called before each start of a container holding
    /// `ids`. Nothing to do unless overridden.
    fn pre_start_container(&self, _ids: &[String]) -> BoxFuture<'_, Result<(), DeviceError>> {
        Box::pin(async { Ok(()) })
    }

    /// Allocate for one container.
    fn allocate(&self, ids: &[String]) -> BoxFuture<'_, Result<ContainerAllocation, DeviceError>>;

    /// Node labels describing the hardware, for `nodeSelector`.
    fn node_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
}
