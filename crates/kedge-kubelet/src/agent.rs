//! The node agent assembled: containerd (supervised, or an existing CRI
//! endpoint), the embedded pause image and the images directory, the Node
//! (registration, status, Lease, pod network), the pods, and the agent's
//! HTTPS API for logs, exec, attach and port-forward.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::containerd::{
    ContainerdConfig, ContainerdPaths, ContainerdSupervisor, SupervisorOptions,
};
use crate::cri::{CriClient, CtrImporter, RuntimeService};
use crate::images::{self, ImageImporter};
use crate::node::{NodeAgent, NodeAgentConfig, NodeState};
use crate::pods::{ApiClient, EventRecorder, NodeFacts, PodManager, PodsConfig};
use crate::podspec::Quantity;
use crate::server::AgentServer;

/// Errors that stop the agent from starting.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot start containerd: {0}")]
    Containerd(#[from] crate::containerd::ContainerdError),
    #[error("cannot reach the container runtime: {0}")]
    Cri(#[from] crate::cri::CriError),
    #[error("cannot import the pause image: {0}")]
    PauseImage(#[from] crate::images::ImageError),
    #[error("node: {0}")]
    Node(#[from] crate::node::NodeError),
    #[error("device manager: {0}")]
    Devices(#[from] kedge_devices::DeviceManagerError),
    #[error("device plugin registration: {0}")]
    Registration(#[from] kedge_devices::RegistrationError),
    #[error("cannot listen on {addr} for the agent API (is a kubelet or another kedge running? pick another --kubelet-port): {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Everything the agent needs to start.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub node_name: String,
    /// kedge's data dir; the agent keeps its state under `<data_dir>/agent`.
    pub data_dir: PathBuf,
    /// An existing CRI socket instead of a supervised containerd.
    pub container_runtime_endpoint: Option<PathBuf>,
    pub pause_image: String,
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    pub node_ips: Vec<IpAddr>,
    pub labels: BTreeMap<String, String>,
    pub control_plane: bool,
    pub kubelet_port: u16,
    pub cni_bridge: String,
    /// Where containerd finds the CNI plugins (`/usr/lib/cni` on Debian).
    pub cni_bin_dir: PathBuf,
    pub pod_masquerade: bool,
    pub pod_logs_dir: PathBuf,
    pub kubelet_version: String,
    /// The agent's HTTPS server configuration (client certificates required).
    pub tls: Arc<rustls::ServerConfig>,
    /// Where accelerators are discovered (sysfs, proc and dev under it).
    pub accelerator_root: PathBuf,
    /// The built-in device plugins' settings.
    pub builtin_devices: kedge_devices::builtin::BuiltinConfig,
    /// The kubelet root: external device plugins register at
    /// `<root>/device-plugins/kubelet.sock`.
    pub kubelet_root: PathBuf,
    /// Fail pods whose device turns unhealthy (default on).
    pub fail_pods_on_device_failure: bool,
    /// Hard eviction thresholds (pressure conditions, allocatable).
    pub eviction_hard: crate::node::EvictionThresholds,
    /// Stop the pods when the agent stops because the machine shuts down
    /// (a restart of kedge alone always keeps them).
    pub stop_pods_at_system_shutdown: bool,
}

fn mkdir(path: PathBuf) -> Result<PathBuf, AgentError> {
    std::fs::create_dir_all(&path).map_err(|source| AgentError::Dir {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Starts the agent and runs it until `shutdown` resolves. Running pods
/// keep running when it returns; containerd gets SIGTERM alone.
pub async fn run(
    opts: AgentOptions,
    client: kube::Client,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AgentError> {
    let started = Instant::now();
    let agent_dir = mkdir(opts.data_dir.join("agent"))?;
    let paths = ContainerdPaths::new(&opts.data_dir);

    // The container runtime.
    let (supervisor, cri) = match &opts.container_runtime_endpoint {
        Some(endpoint) => {
            let cri = CriClient::connect_when_ready(endpoint, Duration::from_secs(30)).await?;
            let cri = cri.with_importer(CtrImporter::new(endpoint));
            (None, cri)
        }
        None => {
            let mut config = ContainerdConfig::detect(&opts.data_dir);
            config.sandbox_image = opts.pause_image.clone();
            config.cni_bin_dir = opts.cni_bin_dir.clone();
            let supervisor =
                ContainerdSupervisor::start(&config, SupervisorOptions::default()).await?;
            let socket = supervisor.socket().to_owned();
            let cri = CriClient::connect_when_ready(&socket, Duration::from_secs(30)).await?;
            let cri = cri.with_importer(
                CtrImporter::new(&socket).with_snapshotter(config.snapshotter.as_str()),
            );
            (Some(supervisor), cri)
        }
    };
    let runtime = Arc::new(cri);
    let version = runtime.version().await?;
    tracing::info!(
        runtime = %version.runtime_name,
        version = %version.runtime_version,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "container runtime is ready"
    );
    if opts.pause_image == images::PAUSE_IMAGE {
        images::ensure_pause_image(runtime.as_ref(), &agent_dir.join("pause")).await?;
    }
    let images_dir = mkdir(agent_dir.join("images"))?;
    let importer = ImageImporter::new(runtime.clone(), images_dir).spawn();

    // The node.
    let mut node_cfg = NodeAgentConfig::new(
        opts.node_name.clone(),
        agent_dir.clone(),
        paths.cni_conf_dir.clone(),
        opts.kubelet_version.clone(),
    );
    node_cfg.internal_ips = opts.node_ips.clone();
    node_cfg.labels = opts.labels.clone();
    node_cfg.control_plane = opts.control_plane;
    node_cfg.kubelet_port = opts.kubelet_port;
    node_cfg.pod_network.bridge = opts.cni_bridge.clone();
    node_cfg.pod_network.ip_masq = opts.pod_masquerade;
    node_cfg.pod_network.network_name = "kedge".into();
    node_cfg.eviction_hard = opts.eviction_hard.clone();
    // Devices: built-in plugins and external ones through one manager.
    let devices = kedge_devices::DeviceManager::open(
        kedge_devices::DeviceManagerConfig::for_data_dir(&opts.data_dir),
    )?;
    for plugin in
        kedge_devices::builtin::discover_builtin(&opts.accelerator_root, &opts.builtin_devices)
    {
        tracing::info!(
            resource = plugin.resource_name(),
            "built-in device plugin found hardware"
        );
        devices.add_plugin(plugin);
    }
    let registration = kedge_devices::RegistrationServer::start(
        &kedge_devices::RegistrationConfig {
            kubelet_root: opts.kubelet_root.clone(),
        },
        devices.clone(),
    )
    .await?;
    let (ext_tx, ext_rx) = watch::channel(extended_resources(&devices.node_devices()));
    let mut devices_rx = devices.subscribe();
    let devices_task = tokio::spawn(async move {
        while devices_rx.changed().await.is_ok() {
            let ext = extended_resources(&devices_rx.borrow_and_update());
            ext_tx.send_if_modified(|cur| {
                let changed = *cur != ext;
                *cur = ext;
                changed
            });
        }
    });
    let node_agent =
        NodeAgent::new(client.clone(), runtime.clone(), node_cfg)?.with_extended_resources(ext_rx);
    let node = node_agent.handle();
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let node_task = tokio::spawn(node_agent.run(stopped(stop_rx.clone())));

    // Node facts for the pods.
    let (facts_tx, facts_rx) = watch::channel(node_facts(&node.current()));
    let mut node_rx = node.subscribe();
    let facts_task = tokio::spawn(async move {
        while node_rx.changed().await.is_ok() {
            let facts = node_facts(&node_rx.borrow());
            let _ = facts_tx.send(facts);
        }
    });

    // The pods.
    let api = ApiClient::new(client.clone());
    let events = EventRecorder::start(api.clone(), opts.node_name.clone());
    let pods_cfg = PodsConfig {
        node_name: opts.node_name.clone(),
        pods_root: mkdir(agent_dir.join("pods"))?,
        pod_logs_root: mkdir(opts.pod_logs_dir.clone())?,
        seccomp_root: agent_dir.join("seccomp"),
        cluster_dns: opts.cluster_dns.iter().map(ToString::to_string).collect(),
        cluster_domain: opts.cluster_domain.clone(),
        resolv_conf: PathBuf::from("/etc/resolv.conf"),
        host_etc_hosts: PathBuf::from("/etc/hosts"),
        fail_pods_on_device_failure: opts.fail_pods_on_device_failure,
    };
    let manager = PodManager::new(
        pods_cfg,
        runtime.clone(),
        api,
        events,
        facts_rx,
        version.runtime_name.clone(),
        Some(devices.clone()),
    );
    let running = manager.directory();
    let pods_task = tokio::spawn(manager.run(stopped(stop_rx.clone())));

    // The agent's API.
    let addr = SocketAddr::new(IpAddr::from([0, 0, 0, 0]), opts.kubelet_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| AgentError::Listen { addr, source })?;
    let server = Arc::new(
        AgentServer::new(runtime.clone(), Arc::new(running))
            .with_translator(Arc::new(crate::streaming::Translator)),
    );
    let server_task = tokio::spawn(server.serve(listener, opts.tls.clone(), stopped(stop_rx)));

    // Container logs rotated by size, as upstream's container log manager.
    let rotator = tokio::spawn(
        crate::logs::LogRotator::new(runtime.clone(), crate::logs::RotationPolicy::default())
            .run(Duration::from_secs(10)),
    );

    let ready_node = node.clone();
    tokio::spawn(async move {
        if ready_node.wait_for(|s| s.ready).await.is_some() {
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "the node is Ready"
            );
        }
    });

    shutdown.await;
    // A restart of kedge keeps the pods; a shutdown of the machine stops them
    // here, gracefully, or systemd waits 90 s for their processes and then
    // kills them (they belong to no unit).
    let stop_pods = opts.stop_pods_at_system_shutdown && system_is_shutting_down().await;
    if stop_pods {
        tracing::info!("the system is shutting down: stopping the node agent and its pods");
    } else {
        tracing::info!("stopping the node agent (pods keep running)");
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), pods_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), node_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), server_task).await;
    facts_task.abort();
    rotator.abort();
    devices_task.abort();
    registration.shutdown().await;
    drop(importer);
    if stop_pods {
        stop_all_pods(runtime.as_ref(), SHUTDOWN_GRACE).await;
    }
    if let Some(s) = supervisor {
        if let Err(e) = s.shutdown().await {
            tracing::warn!(error = %e, "stopping containerd failed");
        }
    }
    Ok(())
}

/// How long containers get to stop at a system shutdown (SIGTERM, then
/// SIGKILL), all at once: well inside systemd's default 90 s stop timeout.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Whether systemd is stopping the whole system (shutdown, reboot): its
/// state is `stopping` then (`systemctl is-system-running`). `false` without
/// systemd, and when it does not answer in 2 s.
pub async fn system_is_shutting_down() -> bool {
    let out = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::process::Command::new("systemctl")
            .arg("is-system-running")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output(),
    )
    .await;
    match out {
        Ok(Ok(o)) => is_stopping(&String::from_utf8_lossy(&o.stdout)),
        _ => false,
    }
}

fn is_stopping(state: &str) -> bool {
    state.trim() == "stopping"
}

/// Stops every running container (`grace` each, concurrently), then every
/// ready pod sandbox, on this runtime. For a system shutdown: the pods come
/// back when the agent starts again.
pub async fn stop_all_pods<R: RuntimeService + ?Sized>(cri: &R, grace: Duration) {
    let started = Instant::now();
    let containers = match cri.list_containers(None).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list containers to stop them");
            Vec::new()
        }
    };
    let running: Vec<String> = containers
        .into_iter()
        .filter(|c| c.state == k8s_cri::v1::ContainerState::ContainerRunning as i32)
        .map(|c| c.id)
        .collect();
    let stops = running.iter().map(|id| async move {
        if let Err(e) = cri.stop_container(id, grace).await {
            tracing::warn!(container = %id, error = %e, "cannot stop container");
        }
    });
    futures::future::join_all(stops).await;
    let sandboxes = cri.list_pod_sandbox(None).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot list pod sandboxes to stop them");
        Vec::new()
    });
    let ready: Vec<String> = sandboxes
        .into_iter()
        .filter(|s| s.state == k8s_cri::v1::PodSandboxState::SandboxReady as i32)
        .map(|s| s.id)
        .collect();
    for id in &ready {
        if let Err(e) = cri.stop_pod_sandbox(id).await {
            tracing::warn!(sandbox = %id, error = %e, "cannot stop pod sandbox");
        }
    }
    tracing::info!(
        containers = running.len(),
        sandboxes = ready.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "stopped the pods for the system shutdown"
    );
}

/// What the devices add to the Node: extended resources (a resource whose
/// plugin is gone stays at 0, as upstream) and labels.
fn extended_resources(d: &kedge_devices::NodeDevices) -> crate::node::ExtendedResources {
    let mut ext = crate::node::ExtendedResources {
        labels: d.labels.clone(),
        ..Default::default()
    };
    for (name, r) in &d.resources {
        ext.capacity.insert(name.clone(), r.capacity);
        ext.allocatable.insert(name.clone(), r.allocatable);
    }
    for name in &d.removed {
        ext.capacity.insert(name.clone(), 0);
        ext.allocatable.insert(name.clone(), 0);
    }
    ext
}

fn node_facts(s: &NodeState) -> NodeFacts {
    let mut allocatable = BTreeMap::new();
    let mut memory_capacity = 0;
    if let Some(a) = &s.allocatable {
        for (k, v) in a.to_quantities() {
            if let Ok(q) = Quantity::parse(&v) {
                allocatable.insert(k, q);
            }
        }
    }
    if let Some(c) = &s.capacity {
        memory_capacity = c.memory_bytes as i64;
    }
    NodeFacts {
        host_ips: s.internal_ips.iter().map(ToString::to_string).collect(),
        allocatable,
        memory_capacity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::api::{
        ContainerConfig, ContainerMetadata, ContainerState, ImageSpec, PodSandboxConfig,
        PodSandboxMetadata, PodSandboxState,
    };
    use crate::cri::FakeRuntime;

    #[test]
    fn only_systemds_stopping_state_means_shutdown() {
        assert!(is_stopping("stopping\n"));
        for s in [
            "running",
            "degraded",
            "starting",
            "maintenance",
            "offline",
            "",
        ] {
            assert!(!is_stopping(s), "{s}");
        }
    }

    #[tokio::test]
    async fn a_shutdown_stops_every_container_and_sandbox() {
        let runtime = FakeRuntime::new();
        let image = runtime.add_image("busybox");
        let mut ids = Vec::new();
        for pod in ["a", "b"] {
            let sandbox = PodSandboxConfig {
                metadata: Some(PodSandboxMetadata {
                    name: pod.into(),
                    namespace: "ns".into(),
                    uid: format!("uid-{pod}"),
                    attempt: 0,
                }),
                ..PodSandboxConfig::default()
            };
            let sid = runtime
                .run_pod_sandbox(sandbox.clone(), "")
                .await
                .expect("sandbox");
            let cid = runtime
                .create_container(
                    &sid,
                    ContainerConfig {
                        metadata: Some(ContainerMetadata {
                            name: "c".into(),
                            attempt: 0,
                        }),
                        image: Some(ImageSpec {
                            image: image.clone(),
                            ..ImageSpec::default()
                        }),
                        ..ContainerConfig::default()
                    },
                    sandbox,
                )
                .await
                .expect("container");
            runtime.start_container(&cid).await.expect("start");
            ids.push(cid);
        }
        stop_all_pods(&runtime, Duration::from_millis(10)).await;
        let containers = runtime.list_containers(None).await.expect("list");
        assert_eq!(containers.len(), 2);
        assert!(
            containers
                .iter()
                .all(|c| c.state == ContainerState::ContainerExited as i32),
            "{containers:?}"
        );
        let sandboxes = runtime.list_pod_sandbox(None).await.expect("list");
        assert_eq!(sandboxes.len(), 2);
        assert!(
            sandboxes
                .iter()
                .all(|s| s.state == PodSandboxState::SandboxNotready as i32),
            "{sandboxes:?}"
        );
    }
}
