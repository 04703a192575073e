//! kedge's node agent, the part that talks to the container runtime.
//!
//! This crate owns, under `<data-dir>/agent`: containerd's configuration and
//! its supervision as a child process ([`containerd`]), the probes of the host
//! that shape that configuration ([`host`]), the CRI v1 seam with its real
//! gRPC client and in-memory fake ([`cri`]), and the node's CNI configuration
//! ([`cni`]). Pod workers, volumes, probes, node status and streaming build on
//! these later.
//!
//! It must not touch the API server's storage or anything outside the agent's
//! directories except what containerd and the CNI plugins do on its behalf
//! (network namespaces, the pod bridge, cgroups). It never signals a process
//! group: containerd gets SIGTERM alone so that running pods survive kedge.

pub mod agent;
pub mod cni;
pub mod containerd;
pub mod cri;
pub mod host;
pub mod images;
pub mod logs;
pub mod node;
pub mod pods;
pub mod podspec;
pub mod probe;
pub mod server;
pub mod streaming;
#[doc(hidden)]
pub mod testing;
pub mod volumes;

pub use cni::{CniConfig, CniError, PodCidr};
pub use containerd::{
    ContainerdConfig, ContainerdError, ContainerdPaths, ContainerdSupervisor, Snapshotter,
    SupervisorOptions,
};
pub use cri::{CriClient, CriError, CtrImporter, FakeRuntime, ImageService, RuntimeService};
pub use host::HostFacts;
pub use node::{
    NodeAgent, NodeAgentConfig, NodeError, NodeHandle, NodeResources, NodeState, PodNetworkConfig,
};
