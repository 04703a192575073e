//! kedge's accelerators.
//!
//! This crate owns the device plugin interface shared by built-in and external
//! plugins ([`plugin`]), the built-in plugins that find NVIDIA GPUs, Intel
//! GPUs and Coral Edge TPUs under a host root ([`builtin`]), the device plugin
//! API v1beta1 ([`api`]) with its `Registration` service ([`registration`]) and
//! external plugin client ([`external`]), and the [`DeviceManager`] that holds
//! them all and the pods' allocations ([`manager`]).
//!
//! It must not touch the API server or the container runtime: the node agent
//! (kedge-kubelet) turns what this crate reports into node capacity, labels and
//! CRI container configuration.

pub mod api;
pub mod builtin;
pub mod external;
pub mod manager;
pub mod plugin;
pub mod registration;

pub use external::{ExternalPlugin, ExternalPluginError, PluginOptions};
pub use manager::{
    AdmissionError, AllocationError, DeviceHealthEvent, DeviceManager, DeviceManagerConfig,
    DeviceManagerError, NodeDevices, ResourceDevices,
};
pub use plugin::{
    ContainerAllocation, Device, DeviceError, DevicePlugin, DeviceSpec, HealthEvent, MountSpec,
};
pub use registration::{RegistrationConfig, RegistrationError, RegistrationServer};
