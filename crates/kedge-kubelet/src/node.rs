//! The node agent's Node: registration, status, the node Lease, and the
//! pod network that follows from the node's podCIDR.
//!
//! [`NodeAgent::run`] does what the upstream kubelet's node status manager
//! and node lease controller do, with upstream's defaults:
//!
//! * **Registration.** The Node is created with the labels the kubelet sets
//!   without a cloud provider (`kubernetes.io/hostname`, `kubernetes.io/os`,
//!   `kubernetes.io/arch` and their `beta.` forms), the role labels K3s puts
//!   on a server (`node-role.kubernetes.io/control-plane` and `.../master`),
//!   the configured extra labels, and a full status. If it exists, those
//!   labels are reconciled onto it (upstream's `updateDefaultLabels`).
//! * **Status.** Every `node_status_update_frequency` (10 s) the status is
//!   computed from the host (cores, `MemTotal`, the root filesystem,
//!   hugepages, ids and versions), the CRI runtime (version, RuntimeReady
//!   and NetworkReady, images) and the eviction signals (pressure
//!   conditions). It is sent as a strategic merge patch of
//!   `nodes/<name>/status` when it changed (heartbeat times aside) or when
//!   `node_status_report_frequency` (1 min) passed since the last report.
//! * **Lease.** `kube-node-lease/<name>` is renewed every 10 s with a
//!   40 s duration, owned by the Node.
//! * **Pod network.** When the API server's node IPAM sets `spec.podCIDR`,
//!   the CNI configuration for it is written and the network counts as
//!   ready; Ready is False until then.
//!
//! The rest of the agent follows the node through a [`NodeHandle`]:
//! capacity, allocatable, addresses, podCIDR and readiness.

mod api;
mod eviction;
mod machine;
mod quantity;
mod status;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::core::WatchEvent;
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};
use tracing::{debug, info, warn};

pub use api::NodeApi;
pub use eviction::{EvictionThresholds, Pressure, PressureTracker, Signals, Threshold};
pub use machine::{fs_stats, FsStats, HostRoot, MachineInfo, MemInfo};
pub use status::{NodeResources, SystemReserved};

use crate::cni::{CniConfig, CniError, PodCidr, DEFAULT_BRIDGE, DEFAULT_NETWORK_NAME};
use crate::cri::{CriError, ImageService, RuntimeService};

/// The namespace of node Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// The annotation upstream's kubelet sets when the attach/detach controller
/// manages the node's volumes (its default).
pub const CONTROLLER_MANAGED_ATTACH_DETACH: &str =
    "volumes.kubernetes.io/controller-managed-attach-detach";
/// K3s's role labels on a server node.
pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";
pub const MASTER_LABEL: &str = "node-role.kubernetes.io/master";

/// Errors of the node agent.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot read {path}: {source}")]
    HostRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} has no {what}")]
    HostParse { path: PathBuf, what: &'static str },
    #[error("cannot statvfs {path}: {source}")]
    Statvfs {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The API answered with a Status error.
    #[error("{method} {path}: {code} {reason}: {message}")]
    Api {
        method: http::Method,
        path: String,
        code: u16,
        reason: String,
        message: String,
    },
    #[error("{method} {path}: {source}")]
    Transport {
        method: http::Method,
        path: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot build the request {path}: {source}")]
    Request {
        path: String,
        #[source]
        source: http::Error,
    },
    #[error("the API answered {path} with an object without {field}")]
    MissingField { path: String, field: &'static str },
    #[error(transparent)]
    Cri(#[from] CriError),
    #[error("cannot write the CNI configuration for {pod_cidr}: {source}")]
    Cni {
        pod_cidr: String,
        #[source]
        source: CniError,
    },
    #[error("invalid node configuration: {0}")]
    Config(String),
}

impl NodeError {
    /// The HTTP status code of an API error.
    pub fn code(&self) -> Option<u16> {
        match self {
            NodeError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

pub type Result<T, E = NodeError> = std::result::Result<T, E>;

/// The pod network the agent writes once the node has its podCIDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetworkConfig {
    /// The CNI `conf_dir` of the runtime.
    pub conf_dir: PathBuf,
    pub network_name: String,
    pub bridge: String,
    /// Masquerade pod traffic leaving the pod network.
    pub ip_masq: bool,
    pub mtu: Option<u32>,
    /// host-local's allocation directory; `None` is the plugin's default.
    pub ipam_data_dir: Option<PathBuf>,
}

impl PodNetworkConfig {
    /// kedge's defaults (`kedge` network on bridge `kedge0`, masquerade on).
    pub fn new(conf_dir: impl Into<PathBuf>) -> PodNetworkConfig {
        PodNetworkConfig {
            conf_dir: conf_dir.into(),
            network_name: DEFAULT_NETWORK_NAME.to_owned(),
            bridge: DEFAULT_BRIDGE.to_owned(),
            ip_masq: true,
            mtu: None,
            ipam_data_dir: None,
        }
    }

    fn cni_config(&self, pod_cidrs: &[String]) -> Result<CniConfig, CniError> {
        let cidrs = pod_cidrs
            .iter()
            .map(|c| PodCidr::parse(c))
            .collect::<Result<Vec<_>, _>>()?;
        let first = pod_cidrs.first().ok_or(CniError::NoCidr)?;
        let mut config = CniConfig::new(first)?;
        config.pod_cidrs = cidrs;
        config.network_name = self.network_name.clone();
        config.bridge = self.bridge.clone();
        config.ip_masq = self.ip_masq;
        config.mtu = self.mtu;
        config.ipam_data_dir = self.ipam_data_dir.clone();
        Ok(config)
    }
}

/// What the node agent needs to know about its node. [`NodeAgentConfig::new`]
/// gives upstream's defaults.
#[derive(Debug, Clone)]
pub struct NodeAgentConfig {
    pub node_name: String,
    /// The `Hostname` address and the `kubernetes.io/hostname` label.
    pub hostname: String,
    /// The `InternalIP` addresses (one per IP family).
    pub internal_ips: Vec<IpAddr>,
    /// Extra labels (`--node-labels`).
    pub labels: BTreeMap<String, String>,
    /// A server node: the control-plane role labels.
    pub control_plane: bool,
    /// `status.daemonEndpoints.kubeletEndpoint.Port`.
    pub kubelet_port: u16,
    pub system_reserved: SystemReserved,
    pub eviction_hard: EvictionThresholds,
    /// How long a pressure condition stays after its signal recovered.
    pub eviction_pressure_transition_period: Duration,
    pub max_pods: u64,
    /// Where `/proc`, `/sys` and `/etc` are read.
    pub host_root: HostRoot,
    /// The agent's data directory: its filesystem is `nodefs`
    /// (ephemeral-storage).
    pub root_dir: PathBuf,
    /// The runtime's image filesystem (`imagefs`); `None` is `root_dir`'s.
    pub image_fs_dir: Option<PathBuf>,
    /// `status.nodeInfo.kubeletVersion`, such as `v1.33.0+kedge`.
    pub kubelet_version: String,
    pub pod_network: PodNetworkConfig,
    /// How often the status is computed (`nodeStatusUpdateFrequency`).
    pub node_status_update_frequency: Duration,
    /// How often an unchanged status is posted (`nodeStatusReportFrequency`).
    pub node_status_report_frequency: Duration,
    /// `nodeLeaseDurationSeconds`.
    pub node_lease_duration_seconds: u32,
    /// How often the Lease is renewed (upstream: a quarter of its duration).
    pub node_lease_renew_interval: Duration,
    /// After how long without a successful runtime status the runtime
    /// counts as down.
    pub runtime_down_threshold: Duration,
    /// How soon a failed API call is retried.
    pub retry_interval: Duration,
}

impl NodeAgentConfig {
    /// A node named `node_name` (also its hostname) with its data in
    /// `root_dir`, the CNI configuration in `cni_conf_dir`, and upstream's
    /// defaults for the rest.
    pub fn new(
        node_name: impl Into<String>,
        root_dir: impl Into<PathBuf>,
        cni_conf_dir: impl Into<PathBuf>,
        kubelet_version: impl Into<String>,
    ) -> NodeAgentConfig {
        let node_name = node_name.into();
        NodeAgentConfig {
            hostname: node_name.to_lowercase(),
            node_name,
            internal_ips: Vec::new(),
            labels: BTreeMap::new(),
            control_plane: false,
            kubelet_port: 10250,
            system_reserved: SystemReserved::default(),
            eviction_hard: EvictionThresholds::default(),
            eviction_pressure_transition_period: Duration::from_secs(300),
            max_pods: 110,
            host_root: HostRoot::default(),
            root_dir: root_dir.into(),
            image_fs_dir: None,
            kubelet_version: kubelet_version.into(),
            pod_network: PodNetworkConfig::new(cni_conf_dir),
            node_status_update_frequency: Duration::from_secs(10),
            node_status_report_frequency: Duration::from_secs(60),
            node_lease_duration_seconds: 40,
            node_lease_renew_interval: Duration::from_secs(10),
            runtime_down_threshold: Duration::from_secs(30),
            retry_interval: Duration::from_secs(1),
        }
    }

    fn validate(&self) -> Result<()> {
        if self.node_name.is_empty() {
            return Err(NodeError::Config("the node name is empty".into()));
        }
        if self.node_status_update_frequency.is_zero() || self.node_lease_renew_interval.is_zero() {
            return Err(NodeError::Config("zero update interval".into()));
        }
        Ok(())
    }

    /// The labels the agent sets on its Node.
    pub fn node_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        let os = std::env::consts::OS.to_owned();
        let arch = status::go_arch().to_owned();
        labels.insert("kubernetes.io/hostname".into(), self.hostname.clone());
        labels.insert("kubernetes.io/os".into(), os.clone());
        labels.insert("kubernetes.io/arch".into(), arch.clone());
        labels.insert("beta.kubernetes.io/os".into(), os);
        labels.insert("beta.kubernetes.io/arch".into(), arch);
        if self.control_plane {
            labels.insert(CONTROL_PLANE_LABEL.into(), "true".into());
            labels.insert(MASTER_LABEL.into(), "true".into());
        }
        labels
    }
}

/// Extended resources the node advertises (devices), with the labels that
/// describe them. A resource whose plugin went away stays at 0, as upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtendedResources {
    pub capacity: BTreeMap<String, u64>,
    pub allocatable: BTreeMap<String, u64>,
    pub labels: BTreeMap<String, String>,
}

/// A `status.addresses` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddress {
    /// `InternalIP` or `Hostname`.
    pub kind: String,
    pub address: String,
}

/// What the rest of the agent knows of its node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeState {
    /// The Node's uid once registered.
    pub uid: Option<String>,
    pub capacity: Option<NodeResources>,
    pub allocatable: Option<NodeResources>,
    pub addresses: Vec<NodeAddress>,
    pub internal_ips: Vec<IpAddr>,
    /// `spec.podCIDRs` once node IPAM set them.
    pub pod_cidrs: Vec<String>,
    /// The CNI configuration for the podCIDR is written.
    pub network_ready: bool,
    /// The last Ready condition the agent computed.
    pub ready: bool,
    pub pressure: Pressure,
}

impl NodeState {
    /// The first podCIDR.
    pub fn pod_cidr(&self) -> Option<&str> {
        self.pod_cidrs.first().map(String::as_str)
    }
}

/// A cheap, cloneable view of the node for the rest of the agent.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    state: watch::Receiver<NodeState>,
}

impl NodeHandle {
    /// The node as it is now.
    pub fn current(&self) -> NodeState {
        self.state.borrow().clone()
    }

    /// A receiver that sees every change.
    pub fn subscribe(&self) -> watch::Receiver<NodeState> {
        self.state.clone()
    }

    /// Wait until `f` holds; `None` if the agent stopped first.
    pub async fn wait_for(&self, f: impl Fn(&NodeState) -> bool) -> Option<NodeState> {
        let mut rx = self.state.clone();
        let state = rx.wait_for(|s| f(s)).await.ok()?;
        Some(state.clone())
    }

    /// Wait for the node's podCIDR (set by node IPAM) and its CNI
    /// configuration to be written; `None` if the agent stopped first.
    pub async fn pod_cidr(&self) -> Option<String> {
        self.wait_for(|s| s.network_ready && s.pod_cidr().is_some())
            .await
            .and_then(|s| s.pod_cidr().map(str::to_owned))
    }
}

/// The runtime's health as the kubelet's `runtimeState` tracks it.
#[derive(Debug, Default)]
struct RuntimeHealth {
    last_ok: Option<Instant>,
    runtime_error: Option<String>,
    network_error: Option<String>,
}

/// A CRI condition as the kubelet prints it: `Type=bool reason:R message:M`.
fn condition_string(c: Option<&crate::cri::api::RuntimeCondition>) -> String {
    match c {
        Some(c) => format!(
            "{}={} reason:{} message:{}",
            c.r#type, c.status, c.reason, c.message
        ),
        None => "<nil>".to_owned(),
    }
}

impl RuntimeHealth {
    fn update(&mut self, status: &crate::cri::api::RuntimeStatus, now: Instant) {
        let find = |t: &str| status.conditions.iter().find(|c| c.r#type == t);
        let network = find("NetworkReady");
        self.network_error = match network {
            Some(c) if c.status => None,
            other => Some(format!(
                "container runtime network not ready: {}",
                condition_string(other)
            )),
        };
        let runtime = find("RuntimeReady");
        match runtime {
            Some(c) if c.status => {
                self.runtime_error = None;
                self.last_ok = Some(now);
            }
            other => {
                self.runtime_error = Some(format!(
                    "container runtime not ready: {}",
                    condition_string(other)
                ));
            }
        }
    }

    fn errors(&self, now: Instant, threshold: Duration) -> Vec<String> {
        let mut errs = Vec::new();
        match self.last_ok {
            None => errs.push("container runtime status check may not have completed yet".into()),
            Some(at) if now.saturating_duration_since(at) >= threshold => {
                errs.push("container runtime is down".into())
            }
            Some(_) => {}
        }
        errs.extend(self.runtime_error.clone());
        errs.extend(self.network_error.clone());
        errs
    }
}

/// Mutable state of the status loop.
struct StatusSync {
    pressure: PressureTracker,
    health: RuntimeHealth,
    last_report: Option<Instant>,
    /// The runtime's name from its last answer to Version.
    runtime_name: Option<String>,
}

/// Registers the Node and keeps its status, Lease and pod network current.
pub struct NodeAgent<R> {
    api: NodeApi,
    runtime: Arc<R>,
    config: NodeAgentConfig,
    /// Extended resources and labels from the device manager.
    extended: Option<watch::Receiver<ExtendedResources>>,
    state: watch::Sender<NodeState>,
    /// Wakes the status loop early (the network became ready).
    wake: Notify,
}

impl<R: RuntimeService + ImageService + 'static> NodeAgent<R> {
    /// An agent for `config.node_name` talking to the API through `client`
    /// and to the container runtime through `runtime`.
    pub fn new(client: kube::Client, runtime: Arc<R>, config: NodeAgentConfig) -> Result<Self> {
        config.validate()?;
        let (state, _) = watch::channel(NodeState {
            internal_ips: config.internal_ips.clone(),
            ..NodeState::default()
        });
        Ok(NodeAgent {
            api: NodeApi::new(client),
            runtime,
            config,
            extended: None,
            state,
            wake: Notify::new(),
        })
    }

    /// Advertise extended resources (devices) and their labels; the status
    /// is posted again whenever they change.
    pub fn with_extended_resources(mut self, rx: watch::Receiver<ExtendedResources>) -> Self {
        self.extended = Some(rx);
        self
    }

    /// A view of the node for the rest of the agent.
    pub fn handle(&self) -> NodeHandle {
        NodeHandle {
            state: self.state.subscribe(),
        }
    }

    /// Register the Node, then keep its status, Lease and pod network
    /// current until `shutdown` resolves. API and runtime errors are logged
    /// and retried; this returns only at shutdown.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let this = Arc::new(self);
        tokio::select! {
            _ = shutdown => {}
            _ = this.clone().run_loops() => {}
        }
        info!(node = %this.config.node_name, "node agent stopped");
    }

    async fn run_loops(self: Arc<Self>) {
        let mut sync = StatusSync {
            pressure: PressureTracker::new(self.config.eviction_pressure_transition_period),
            health: RuntimeHealth::default(),
            last_report: None,
            runtime_name: None,
        };
        loop {
            match self.register(&mut sync).await {
                Ok(()) => break,
                Err(e) => {
                    warn!(node = %self.config.node_name, error = %e, "cannot register the node; retrying");
                    tokio::time::sleep(self.config.retry_interval).await;
                }
            }
        }
        tokio::join!(
            self.status_loop(&mut sync),
            self.lease_loop(),
            self.pod_cidr_loop(),
            self.extended_loop()
        );
    }

    /// Wakes the status loop when the extended resources change, and keeps
    /// their labels on the Node.
    async fn extended_loop(&self) {
        let Some(mut rx) = self.extended.clone() else {
            return;
        };
        let mut applied: BTreeMap<String, String> = BTreeMap::new();
        loop {
            let labels = rx.borrow_and_update().labels.clone();
            if labels != applied {
                let mut patch_labels = serde_json::Map::new();
                for k in applied.keys() {
                    if !labels.contains_key(k) {
                        patch_labels.insert(k.clone(), Value::Null);
                    }
                }
                for (k, v) in &labels {
                    patch_labels.insert(k.clone(), json!(v));
                }
                let patch = json!({"metadata": {"labels": patch_labels}});
                match self.api.merge_patch(&self.node_path(), &patch).await {
                    Ok(_) => applied = labels,
                    Err(e) => {
                        warn!(error = %e, "cannot label the node with its devices; retrying");
                        tokio::time::sleep(self.config.retry_interval).await;
                        continue;
                    }
                }
            }
            self.wake.notify_one();
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    fn node_path(&self) -> String {
        format!("/api/v1/nodes/{}", self.config.node_name)
    }

    fn lease_path(&self) -> String {
        format!(
            "/apis/coordination.k8s.io/v1/namespaces/{NODE_LEASE_NAMESPACE}/leases/{}",
            self.config.node_name
        )
    }

    /// Create the Node, or reconcile the labels of the one that exists.
    async fn register(&self, sync: &mut StatusSync) -> Result<()> {
        let status = self.compute_status(sync, &[]).await?;
        let labels = self.config.node_labels();
        let node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.config.node_name,
                "labels": labels,
                "annotations": {CONTROLLER_MANAGED_ATTACH_DETACH: "true"},
            },
            "spec": {},
            "status": status,
        });
        match self.api.post("/api/v1/nodes", &node).await {
            Ok(created) => {
                info!(node = %self.config.node_name, "registered the node");
                sync.last_report = Some(Instant::now());
                self.observe_node(&created);
                return Ok(());
            }
            Err(e) if e.code() == Some(409) => {}
            Err(e) => return Err(e),
        }
        let existing =
            self.api
                .get(&self.node_path())
                .await?
                .ok_or_else(|| NodeError::MissingField {
                    path: self.node_path(),
                    field: "metadata (it vanished)",
                })?;
        info!(node = %self.config.node_name, "the node was registered before; reconciling it");
        let patch = label_reconcile_patch(&existing, &labels);
        let node = match patch {
            Some(patch) => self.api.merge_patch(&self.node_path(), &patch).await?,
            None => existing,
        };
        self.observe_node(&node);
        Ok(())
    }

    /// Publish what the Node object says (uid, podCIDRs).
    fn observe_node(&self, node: &Value) {
        let uid = node
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .map(str::to_owned);
        self.state.send_if_modified(|s| {
            let changed = s.uid != uid;
            s.uid = uid.clone();
            changed
        });
    }

    /// Compute the agent-owned part of the status.
    async fn compute_status(&self, sync: &mut StatusSync, previous: &[Value]) -> Result<Value> {
        let cfg = &self.config;
        let now = Instant::now();
        let machine = cfg.host_root.machine_info()?;
        let nodefs = fs_stats(&cfg.root_dir)?;
        let imagefs = match &cfg.image_fs_dir {
            Some(dir) => fs_stats(dir).ok(),
            None => Some(nodefs),
        };
        let capacity = status::capacity(&machine, nodefs.capacity_bytes, cfg.max_pods);
        let allocatable = status::allocatable(&capacity, &cfg.system_reserved, &cfg.eviction_hard);

        // The runtime: version and conditions (kubelet's updateRuntimeUp).
        let runtime_version = match self.runtime.version().await {
            Ok(v) => {
                sync.runtime_name = Some(v.runtime_name.clone());
                format!("{}://{}", v.runtime_name, v.runtime_version)
            }
            Err(e) => {
                debug!(error = %e, "CRI Version failed");
                // As the kubelet: the runtime type it knows, version Unknown.
                let name = sync.runtime_name.as_deref().unwrap_or("Unknown");
                format!("{name}://Unknown")
            }
        };
        match self.runtime.status().await {
            Ok(s) => sync.health.update(&s, now),
            Err(e) => warn!(error = %e, "container runtime status check failed"),
        }
        let images = match self.runtime.list_images(None).await {
            Ok(list) => status::images(list),
            Err(e) => {
                warn!(error = %e, "cannot list images");
                json!([])
            }
        };

        // Pressure from the eviction signals.
        let meminfo = cfg.host_root.meminfo()?;
        let signals = Signals {
            memory_capacity: machine.memory_bytes,
            memory_working_set: cfg.host_root.memory_working_set(&meminfo),
            nodefs: Some(nodefs),
            imagefs,
            pids: cfg.host_root.pid_stats(),
        };
        let pressure = sync
            .pressure
            .observe(signals.thresholds_met(&cfg.eviction_hard), now);

        // Ready: runtime, runtime network, and our own pod network.
        let mut errors = sync.health.errors(now, cfg.runtime_down_threshold);
        let network_ready = self.state.borrow().network_ready;
        if !network_ready {
            errors.push(
                "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:kedge: waiting for the node's podCIDR to write the CNI configuration"
                    .to_owned(),
            );
        }
        let not_ready = status::aggregate(&errors);
        let now_str = rfc3339_now();
        let conditions = status::conditions(previous, pressure, not_ready.as_deref(), &now_str);

        let addresses = status::addresses(&cfg.internal_ips, &cfg.hostname);
        let address_list: Vec<NodeAddress> = addresses
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| NodeAddress {
                        kind: x["type"].as_str().unwrap_or_default().to_owned(),
                        address: x["address"].as_str().unwrap_or_default().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let ready = not_ready.is_none();
        self.state.send_if_modified(|s| {
            let before = s.clone();
            s.capacity = Some(capacity.clone());
            s.allocatable = Some(allocatable.clone());
            s.addresses = address_list.clone();
            s.ready = ready;
            s.pressure = pressure;
            *s != before
        });

        let mut capacity_q = capacity.to_quantities();
        let mut allocatable_q = allocatable.to_quantities();
        if let Some(rx) = &self.extended {
            let ext = rx.borrow().clone();
            for (k, v) in ext.capacity {
                capacity_q.insert(k, v.to_string());
            }
            for (k, v) in ext.allocatable {
                allocatable_q.insert(k, v.to_string());
            }
        }
        Ok(json!({
            "capacity": capacity_q,
            "allocatable": allocatable_q,
            "conditions": conditions,
            "addresses": addresses,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": cfg.kubelet_port}},
            "nodeInfo": status::node_info(&machine, &runtime_version, &cfg.kubelet_version),
            "images": images,
        }))
    }

    /// One round of `tryUpdateNodeStatus`.
    async fn sync_status(&self, sync: &mut StatusSync) -> Result<()> {
        let Some(node) = self.api.get(&self.node_path()).await? else {
            warn!(node = %self.config.node_name, "the node is gone; registering it again");
            return self.register(sync).await;
        };
        self.observe_node(&node);
        let current = node.get("status").cloned().unwrap_or_else(|| json!({}));
        let previous: Vec<Value> = current
            .get("conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut new = self.compute_status(sync, &previous).await?;
        // Extended resources others advertise stay; their allocatable is
        // their capacity (no reservation applies to them).
        if let (Some(cur_cap), Some(new_cap), Some(new_alloc)) = (
            current.get("capacity").and_then(Value::as_object),
            new.get("capacity").and_then(Value::as_object).cloned(),
            new.get_mut("allocatable").and_then(Value::as_object_mut),
        ) {
            for (k, v) in cur_cap {
                if !new_cap.contains_key(k) {
                    new_alloc.insert(k.clone(), v.clone());
                }
            }
        }
        let changed = status::comparable(&current) != status::comparable(&new);
        let due = sync
            .last_report
            .is_none_or(|at| at.elapsed() >= self.config.node_status_report_frequency);
        if !changed && !due {
            return Ok(());
        }
        let mut patch_status = new;
        if let Some(o) = patch_status.as_object_mut() {
            // Replace the address list as a whole: two InternalIPs (dual
            // stack) share the merge key `type`.
            if let Some(Value::Array(addrs)) = o.get_mut("addresses") {
                addrs.insert(0, json!({"$patch": "replace"}));
            }
        }
        let patch = json!({"status": patch_status});
        self.api
            .strategic_patch(&format!("{}/status", self.node_path()), &patch)
            .await?;
        sync.last_report = Some(Instant::now());
        debug!(node = %self.config.node_name, changed, "posted node status");
        Ok(())
    }

    async fn status_loop(&self, sync: &mut StatusSync) {
        loop {
            // A status that is not Ready yet is looked at again soon, so the
            // node turns Ready as soon as the runtime and network are.
            let wait = if self.state.borrow().ready {
                self.config.node_status_update_frequency
            } else {
                self.config
                    .node_status_update_frequency
                    .min(self.config.retry_interval)
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
            }
            if let Err(e) = self.sync_status(sync).await {
                warn!(node = %self.config.node_name, error = %e, "cannot update the node status");
            }
        }
    }

    /// Renew (or create) the node Lease forever.
    async fn lease_loop(&self) {
        let mut owned = false;
        loop {
            let wait = match self.renew_lease(&mut owned).await {
                Ok(()) => self.config.node_lease_renew_interval,
                Err(e) => {
                    warn!(node = %self.config.node_name, error = %e, "cannot renew the node lease");
                    self.config
                        .retry_interval
                        .min(self.config.node_lease_renew_interval)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    fn owner_references(&self) -> Option<Value> {
        let uid = self.state.borrow().uid.clone()?;
        Some(json!([{
            "apiVersion": "v1",
            "kind": "Node",
            "name": self.config.node_name,
            "uid": uid,
        }]))
    }

    async fn renew_lease(&self, owned: &mut bool) -> Result<()> {
        let mut spec = json!({
            "holderIdentity": self.config.node_name,
            "leaseDurationSeconds": self.config.node_lease_duration_seconds,
            "renewTime": rfc3339_micros_now(),
        });
        let mut patch = json!({"spec": spec.clone()});
        if !*owned {
            if let Some(refs) = self.owner_references() {
                patch["metadata"] = json!({"ownerReferences": refs});
            }
        }
        match self.api.merge_patch(&self.lease_path(), &patch).await {
            Ok(lease) => {
                *owned = has_owner_references(&lease);
                Ok(())
            }
            Err(e) if e.code() == Some(404) => {
                let mut metadata = json!({
                    "name": self.config.node_name,
                    "namespace": NODE_LEASE_NAMESPACE,
                });
                if let Some(refs) = self.owner_references() {
                    metadata["ownerReferences"] = refs;
                }
                spec["renewTime"] = json!(rfc3339_micros_now());
                let lease = json!({
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": metadata,
                    "spec": spec,
                });
                let path = format!(
                    "/apis/coordination.k8s.io/v1/namespaces/{NODE_LEASE_NAMESPACE}/leases"
                );
                let created = self.api.post(&path, &lease).await?;
                *owned = has_owner_references(&created);
                info!(node = %self.config.node_name, "created the node lease");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Follow the Node's `spec.podCIDRs`; write the CNI configuration for
    /// them and mark the network ready.
    async fn pod_cidr_loop(&self) {
        let mut written: Vec<String> = Vec::new();
        loop {
            match self.follow_pod_cidrs(&mut written).await {
                Ok(()) => {}
                Err(e) => {
                    warn!(node = %self.config.node_name, error = %e, "watching the node's podCIDR failed; retrying")
                }
            }
            tokio::time::sleep(self.config.retry_interval).await;
        }
    }

    /// One watch of the own Node (after a list), until it ends.
    async fn follow_pod_cidrs(&self, written: &mut Vec<String>) -> Result<()> {
        let Some(node) = self.api.get(&self.node_path()).await? else {
            return Ok(());
        };
        self.apply_pod_cidrs(&node, written)?;
        let rv = node
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("0")
            .to_owned();
        let path = format!(
            "/api/v1/nodes?watch=true&fieldSelector=metadata.name%3D{}&resourceVersion={rv}&timeoutSeconds=300&allowWatchBookmarks=true",
            self.config.node_name
        );
        let events = self.api.watch(&path).await?;
        futures::pin_mut!(events);
        while let Some(event) = events.next().await {
            match event? {
                WatchEvent::Added(obj) | WatchEvent::Modified(obj) => {
                    self.apply_pod_cidrs(&obj, written)?;
                }
                WatchEvent::Error(status) => {
                    debug!(code = status.code, message = %status.message, "node watch ended");
                    return Ok(());
                }
                WatchEvent::Deleted(_) | WatchEvent::Bookmark(_) => {}
            }
        }
        Ok(())
    }

    fn apply_pod_cidrs(&self, node: &Value, written: &mut Vec<String>) -> Result<()> {
        let cidrs = pod_cidrs(node);
        if cidrs.is_empty() || cidrs == *written {
            return Ok(());
        }
        if !written.is_empty() {
            warn!(node = %self.config.node_name, old = ?written, new = ?cidrs, "the node's podCIDR changed; rewriting the CNI configuration");
        }
        let cni = self
            .config
            .pod_network
            .cni_config(&cidrs)
            .and_then(|c| c.write(&self.config.pod_network.conf_dir).map(|_| c))
            .map_err(|source| NodeError::Cni {
                pod_cidr: cidrs.join(","),
                source,
            })?;
        info!(
            node = %self.config.node_name,
            pod_cidrs = ?cidrs,
            bridge = %cni.bridge,
            conf_dir = %self.config.pod_network.conf_dir.display(),
            "wrote the pod network's CNI configuration"
        );
        *written = cidrs.clone();
        self.state.send_modify(|s| {
            s.pod_cidrs = cidrs;
            s.network_ready = true;
        });
        self.wake.notify_one();
        Ok(())
    }
}

/// The Node's `spec.podCIDRs`, else `[spec.podCIDR]`.
fn pod_cidrs(node: &Value) -> Vec<String> {
    let listed: Vec<String> = node
        .pointer("/spec/podCIDRs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if !listed.is_empty() {
        return listed;
    }
    node.pointer("/spec/podCIDR")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(|s| vec![s.to_owned()])
        .unwrap_or_default()
}

fn has_owner_references(obj: &Value) -> bool {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

/// The merge patch that brings an existing Node's labels (and the
/// attach/detach annotation) to what the agent sets, or `None`.
fn label_reconcile_patch(existing: &Value, labels: &BTreeMap<String, String>) -> Option<Value> {
    let current = existing.pointer("/metadata/labels");
    let mut changed = serde_json::Map::new();
    for (k, v) in labels {
        if current.and_then(|l| l.get(k)).and_then(Value::as_str) != Some(v.as_str()) {
            changed.insert(k.clone(), json!(v));
        }
    }
    let annotated = existing
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(CONTROLLER_MANAGED_ATTACH_DETACH))
        .and_then(Value::as_str)
        == Some("true");
    if changed.is_empty() && annotated {
        return None;
    }
    let mut metadata = json!({});
    if !changed.is_empty() {
        metadata["labels"] = Value::Object(changed);
    }
    if !annotated {
        metadata["annotations"] = json!({CONTROLLER_MANAGED_ATTACH_DETACH: "true"});
    }
    Some(json!({"metadata": metadata}))
}

/// Now as `metav1.Time` writes it (seconds).
fn rfc3339_now() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .map(|t| t.to_string())
        .unwrap_or_else(|_| now.to_string())
}

/// Now as `metav1.MicroTime` writes it (microseconds).
fn rfc3339_micros_now() -> String {
    let now = jiff::Timestamp::now();
    let secs = jiff::Timestamp::from_second(now.as_second()).unwrap_or(now);
    let base = secs.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    format!("{base}.{:06}Z", now.subsec_microsecond())
}

#[cfg(test)]
mod tests;
