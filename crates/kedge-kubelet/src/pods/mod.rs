//! The pods of this node: a watch on the API for pods bound here, one
//! [`worker::PodWorker`] per pod, a relist of the runtime every second that
//! wakes the workers whose containers changed (upstream's PLEG), and at start
//! the reconciliation with what the runtime already runs (own pods adopted,
//! sandboxes of pods that no longer exist removed).

pub mod api;
pub mod backoff;
pub mod events;
pub mod status;
mod worker;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher;
use serde_json::Value;
use tokio::sync::{mpsc, watch, Notify};

use crate::probe::{
    run_handler, ContainerProbes, HookError, HookTarget, ProbeEvent, ProbeEventKind, ProbeKind,
};
use crate::volumes::{KubeObjectSource, VolumeContext, VolumeManager};

use crate::cri::api::{ContainerFilter, PodSandboxFilter};
use crate::cri::{ImageService, RuntimeService};
use crate::podspec::{self, HostDns, Quantity};
pub use api::ApiClient;
pub use backoff::Backoff;
pub use events::EventRecorder;
pub use status::ObservedContainer;

/// How often the runtime is relisted (upstream's PLEG period).
const RELIST: Duration = Duration::from_secs(1);

/// Settings of the pod side of the agent.
#[derive(Debug, Clone)]
pub struct PodsConfig {
    pub node_name: String,
    /// `<data-dir>/agent/pods`: volumes, etc-hosts, termination messages.
    pub pods_root: PathBuf,
    /// `/var/log/pods` upstream.
    pub pod_logs_root: PathBuf,
    pub seccomp_root: PathBuf,
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    /// The host's resolv.conf (ClusterFirst falls back to it, Default uses it).
    pub resolv_conf: PathBuf,
    /// The host's /etc/hosts (hostNetwork pods get a copy).
    pub host_etc_hosts: PathBuf,
    /// Fail the pods of a device that turns unhealthy, so their controllers
    /// replace them (kedge's self-healing; upstream leaves them running).
    pub fail_pods_on_device_failure: bool,
}

/// What the node tells the pods: addresses, allocatable.
#[derive(Debug, Clone, Default)]
pub struct NodeFacts {
    pub host_ips: Vec<String>,
    pub allocatable: BTreeMap<String, Quantity>,
    pub memory_capacity: i64,
}

/// A pod as the agent runs it, for lookups (logs, exec, port-forward).
#[derive(Debug, Clone)]
pub struct PodRecord {
    pub uid: String,
    pub pod: Value,
    pub sandbox_id: Option<String>,
    pub pod_ips: Vec<String>,
    pub containers: Vec<ObservedContainer>,
}

/// The pods this agent runs, by `namespace/name`. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RunningPods {
    inner: Arc<RwLock<HashMap<String, PodRecord>>>,
}

impl RunningPods {
    pub fn get(&self, namespace: &str, name: &str) -> Option<PodRecord> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&format!("{namespace}/{name}"))
            .cloned()
    }

    pub fn by_uid(&self, uid: &str) -> Option<PodRecord> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .find(|r| r.uid == uid)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pod a container belongs to.
    pub fn by_container(&self, id: &str) -> Option<PodRecord> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .find(|r| r.containers.iter().any(|c| c.id == id))
            .cloned()
    }

    fn put(&self, r: PodRecord) {
        let key = format!(
            "{}/{}",
            r.pod["metadata"]["namespace"].as_str().unwrap_or(""),
            r.pod["metadata"]["name"].as_str().unwrap_or("")
        );
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, r);
    }

    fn remove_uid(&self, uid: &str) {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, r| r.uid != uid);
    }
}

impl crate::server::PodDirectory for RunningPods {
    fn pod(&self, namespace: &str, name: &str) -> Option<crate::server::PodEntry> {
        let r = self.get(namespace, name)?;
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(r.pod).ok()?;
        Some(crate::server::PodEntry {
            pod: Arc::new(pod),
            sandbox_id: r.sandbox_id,
        })
    }
}

/// State every pod worker shares.
pub(crate) struct AgentShared<R> {
    pub config: PodsConfig,
    pub runtime: Arc<R>,
    pub api: ApiClient,
    pub events: EventRecorder,
    pub crash_backoff: Backoff,
    pub pull_backoff: Backoff,
    pub host_dns: HostDns,
    node: watch::Receiver<NodeFacts>,
    runtime_name: String,
    directory: RunningPods,
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    volumes: VolumeManager,
    objects: KubeObjectSource,
    /// Probes of running containers, by container id.
    probes: Mutex<HashMap<String, ContainerProbes>>,
    /// Containers whose liveness or startup probe failed (to be restarted),
    /// with the probe's grace period and the kill message.
    probe_kills: Mutex<HashMap<String, (Option<i64>, String)>>,
    probe_tx: mpsc::UnboundedSender<ProbeEvent>,
    pub devices: Option<kedge_devices::DeviceManager>,
    /// Pods to fail because a device they hold turned unhealthy:
    /// uid → (reason, message).
    device_failures: Mutex<HashMap<String, (String, String)>>,
}

impl<R: RuntimeService + ImageService + 'static> AgentShared<R> {
    pub fn node_facts(&self) -> NodeFacts {
        self.node.borrow().clone()
    }

    pub fn runtime_name(&self) -> String {
        self.runtime_name.clone()
    }

    pub fn pod_ips(&self, uid: &str) -> Vec<String> {
        self.directory
            .by_uid(uid)
            .map(|r| r.pod_ips)
            .unwrap_or_default()
    }

    pub fn running_pod(&self, uid: &str) -> Option<PodRecord> {
        self.directory.by_uid(uid)
    }

    pub fn directory_update(&self, r: PodRecord) {
        self.directory.put(r);
    }

    pub fn forget(&self, uid: &str) {
        self.directory.remove_uid(uid);
    }

    /// Volumes of the pod set up on the host, by name; on failure one
    /// message per failed volume (a `FailedMount` event each).
    pub async fn setup_volumes(
        &self,
        pod: &Value,
    ) -> Result<BTreeMap<String, podspec::ResolvedVolume>, Vec<String>> {
        let ctx = VolumeContext {
            node_allocatable: self.node_facts().allocatable,
            cluster_domain: self.config.cluster_domain.clone(),
        };
        self.volumes
            .setup(pod, &self.objects, &ctx)
            .await
            .map_err(|e| e.per_volume().iter().map(ToString::to_string).collect())
    }

    pub async fn teardown_volumes(&self, uid: &str) {
        if let Err(e) = self.volumes.teardown(uid).await {
            tracing::warn!(pod_uid = %uid, error = %e, "cannot remove the pod's volumes");
        }
    }

    /// The managed `/etc/hosts` of a pod, when the agent manages it.
    pub fn etc_hosts(&self, pod: &Value, ips: &[String]) -> Option<String> {
        if !crate::volumes::manages_etc_hosts(pod, ips) {
            return None;
        }
        let uid = pod["metadata"]["uid"].as_str()?;
        match crate::volumes::write_etc_hosts(
            pod,
            &self.volumes.pod_dir(uid),
            ips,
            &self.config.host_etc_hosts,
            &self.config.cluster_domain,
        ) {
            Ok(p) => Some(p.display().to_string()),
            Err(e) => {
                tracing::warn!(pod_uid = %uid, error = %e, "cannot write the pod's /etc/hosts");
                None
            }
        }
    }

    /// An empty file for `terminationMessagePath`, writable by any user.
    pub fn termination_message_file(&self, uid: &str, name: &str, attempt: u32) -> Option<String> {
        use std::os::unix::fs::PermissionsExt;
        let dir = self
            .config
            .pods_root
            .join(uid)
            .join("containers")
            .join(name);
        std::fs::create_dir_all(&dir).ok()?;
        let path = dir.join(format!("{attempt:08x}"));
        std::fs::write(&path, b"").ok()?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).ok()?;
        Some(path.display().to_string())
    }

    /// ConfigMaps and Secrets the container's env and envFrom name.
    pub async fn env_resolver(
        &self,
        pod: &Value,
        spec: &Value,
    ) -> Result<worker::PrefetchedResolver, String> {
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
        let mut cms = Vec::new();
        let mut secrets = Vec::new();
        for e in spec["env"].as_array().into_iter().flatten() {
            if let Some(n) = e["valueFrom"]["configMapKeyRef"]["name"].as_str() {
                cms.push(n.to_owned());
            }
            if let Some(n) = e["valueFrom"]["secretKeyRef"]["name"].as_str() {
                secrets.push(n.to_owned());
            }
        }
        for e in spec["envFrom"].as_array().into_iter().flatten() {
            if let Some(n) = e["configMapRef"]["name"].as_str() {
                cms.push(n.to_owned());
            }
            if let Some(n) = e["secretRef"]["name"].as_str() {
                secrets.push(n.to_owned());
            }
        }
        let mut r = worker::PrefetchedResolver::default();
        for name in cms {
            if r.config_maps.contains_key(&name) {
                continue;
            }
            let obj = self
                .api
                .get_opt(&api::core_path("configmaps", ns, &name))
                .await
                .map_err(|e| e.to_string())?;
            r.config_maps
                .insert(name, obj.map(|o| string_map(&o, false)));
        }
        for name in secrets {
            if r.secrets.contains_key(&name) {
                continue;
            }
            let obj = self
                .api
                .get_opt(&api::core_path("secrets", ns, &name))
                .await
                .map_err(|e| e.to_string())?;
            r.secrets.insert(name, obj.map(|o| string_map(&o, true)));
        }
        Ok(r)
    }

    /// Service environment variables (`enableServiceLinks`), as upstream's
    /// `getServiceEnvVarMap`: the pod's namespace's services when links are
    /// on, and always the master service `kubernetes` from `default`.
    pub async fn service_env(&self, pod: &Value) -> Vec<(String, String)> {
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
        let links = pod["spec"]["enableServiceLinks"].as_bool().unwrap_or(true);
        let mut services: BTreeMap<String, Value> = BTreeMap::new();
        if links {
            if let Ok(list) = self
                .api
                .get(&format!("/api/v1/namespaces/{ns}/services"))
                .await
            {
                for s in list["items"].as_array().into_iter().flatten() {
                    if let Some(n) = s["metadata"]["name"].as_str() {
                        services.insert(n.to_owned(), s.clone());
                    }
                }
            }
        }
        if ns != "default" || !links {
            if let Ok(Some(k)) = self
                .api
                .get_opt("/api/v1/namespaces/default/services/kubernetes")
                .await
            {
                services.insert("kubernetes".into(), k);
            }
        }
        service_env_vars(services.values())
    }

    /// Pull credentials from the pod's `imagePullSecrets` that match the
    /// image's registry, most specific first.
    pub async fn pull_auth(&self, pod: &Value, image: &str) -> Vec<crate::cri::api::AuthConfig> {
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
        let mut out = Vec::new();
        for s in pod["spec"]["imagePullSecrets"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let Some(name) = s["name"].as_str() else {
                continue;
            };
            let Ok(Some(secret)) = self.api.get_opt(&api::core_path("secrets", ns, name)).await
            else {
                continue;
            };
            out.extend(pull_secret_auths(&secret, image));
        }
        out
    }

    /// Runs a lifecycle hook (postStart / preStop) within `limit`.
    pub async fn run_hook(
        &self,
        pod: &Value,
        spec: &Value,
        container_id: &str,
        ips: &[String],
        hook: &Value,
        limit: Duration,
    ) -> Result<(), String> {
        let target = HookTarget {
            pod,
            container: spec,
            container_id,
            pod_ip: ips.first().map(String::as_str).unwrap_or(""),
        };
        match run_handler(self.runtime.as_ref(), hook, target, limit).await {
            Ok(None) => Ok(()),
            Ok(Some(w)) => {
                self.events
                    .pod_event(pod, None, events::WARNING, w.reason, w.message);
                Ok(())
            }
            Err(e @ HookError::Failed(_)) | Err(e @ HookError::TimedOut { .. }) => {
                Err(e.to_string())
            }
        }
    }

    /// A container started: its probes start.
    pub fn container_started(&self, pod: &Value, spec: &Value, id: &str, ips: &[String]) {
        self.start_probes(pod, spec, id, ips, tokio::time::Instant::now());
    }

    /// Probes for a running container that has none (adopted after a
    /// restart of the agent), timed from its real start.
    pub fn ensure_probes(&self, pod: &Value, spec: &Value, c: &ObservedContainer, ips: &[String]) {
        let known = self
            .probes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(&c.id);
        if !known {
            let at = crate::probe::started_at_from_unix_nanos(c.started_at);
            self.start_probes(pod, spec, &c.id, ips, at);
        }
    }

    fn start_probes(
        &self,
        pod: &Value,
        spec: &Value,
        id: &str,
        ips: &[String],
        started_at: tokio::time::Instant,
    ) {
        let has_probe = ["livenessProbe", "readinessProbe", "startupProbe"]
            .iter()
            .any(|k| spec[k].is_object());
        if !has_probe {
            return;
        }
        let name = spec["name"].as_str().unwrap_or("");
        let probes = ContainerProbes::start(
            self.runtime.clone(),
            pod,
            name,
            id,
            ips.first().map(String::as_str).unwrap_or(""),
            started_at,
            self.probe_tx.clone(),
        );
        self.probes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.to_owned(), probes);
    }

    /// A container is stopping or gone: its probes stop.
    pub fn container_stopped(&self, id: &str) {
        self.probes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
        self.probe_kills
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
    }

    /// Whether a liveness or startup probe asked for a restart: the probe's
    /// grace period and the kill message.
    pub fn probe_kill(&self, id: &str) -> Option<(Option<i64>, String)> {
        self.probe_kills
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// The pod is being deleted: liveness and startup stop.
    pub fn stop_liveness(&self, ids: &[String]) {
        let probes = self
            .probes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for id in ids {
            if let Some(p) = probes.get(id) {
                p.stop_liveness_and_startup();
            }
        }
    }

    /// Readiness and startup results by container id (containers without
    /// probes are absent: ready once running).
    pub fn probe_results(
        &self,
        containers: &[ObservedContainer],
    ) -> (HashMap<String, bool>, HashMap<String, bool>) {
        let probes = self
            .probes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut ready = HashMap::new();
        let mut started = HashMap::new();
        for c in containers {
            if let Some(p) = probes.get(&c.id) {
                let r = p.ready();
                if !r && p.started() {
                    p.trigger_readiness();
                }
                ready.insert(c.id.clone(), r);
                started.insert(c.id.clone(), p.started());
            }
        }
        (ready, started)
    }

    /// Devices for every container of a pod that asks for extended
    /// resources a device plugin serves, by container name (upstream's
    /// admission-time allocation).
    pub async fn allocate_devices(
        &self,
        pod: &Value,
    ) -> Result<HashMap<String, kedge_devices::ContainerAllocation>, String> {
        let mut out = HashMap::new();
        let Some(devices) = &self.devices else {
            return Ok(out);
        };
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_owned();
        let mut containers: Vec<Value> = Vec::new();
        for k in ["initContainers", "containers"] {
            if let Some(cs) = pod["spec"][k].as_array() {
                containers.extend(cs.iter().cloned());
            }
        }
        for c in &containers {
            let mut requests = BTreeMap::new();
            let limits: Vec<(String, Value)> = c["resources"]["limits"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            for (k, v) in &limits {
                if !k.contains('/') || k.starts_with("hugepages-") {
                    continue;
                }
                if let Some(n) = v
                    .as_str()
                    .and_then(|q| Quantity::parse(q).ok())
                    .map(|q| q.value())
                    .or_else(|| v.as_i64())
                {
                    if n > 0 {
                        requests.insert(k.clone(), n as u64);
                    }
                }
            }
            if requests.is_empty() {
                continue;
            }
            let name = c["name"].as_str().unwrap_or("").to_owned();
            let alloc = devices
                .allocate(&uid, &name, &requests)
                .await
                .map_err(|e| e.to_string())?;
            out.insert(name, alloc);
        }
        Ok(out)
    }

    /// Runs a device plugin's PreStartContainer for a container, if any.
    pub async fn devices_pre_start(&self, pod_uid: &str, container: &str) -> Result<(), String> {
        match &self.devices {
            Some(d) => d
                .pre_start_container(pod_uid, container)
                .await
                .map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    pub fn release_devices(&self, pod_uid: &str) {
        if let Some(d) = &self.devices {
            if let Err(e) = d.release(pod_uid) {
                tracing::warn!(pod_uid, error = %e, "cannot release the pod's devices");
            }
        }
    }

    /// A pod to fail because one of its devices failed.
    pub fn device_failure(&self, uid: &str) -> Option<(String, String)> {
        self.device_failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(uid)
            .cloned()
    }

    fn waker(&self, uid: &str) -> Option<Arc<Notify>> {
        self.wakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(uid)
            .cloned()
    }
}

fn string_map(obj: &Value, secret: bool) -> BTreeMap<String, String> {
    use base64::Engine;
    let mut out = BTreeMap::new();
    for (k, v) in obj["data"].as_object().into_iter().flatten() {
        let s = v.as_str().unwrap_or("");
        let text = if secret {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        } else {
            s.to_owned()
        };
        out.insert(k.clone(), text);
    }
    if !secret {
        for (k, v) in obj["binaryData"].as_object().into_iter().flatten() {
            let b = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap_or(""))
                .unwrap_or_default();
            out.insert(k.clone(), String::from_utf8_lossy(&b).into_owned());
        }
    }
    out
}

/// upstream's `envvars.FromServices`.
fn service_env_vars<'a>(services: impl Iterator<Item = &'a Value>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in services {
        let ip = s["spec"]["clusterIP"].as_str().unwrap_or("");
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let name = s["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_uppercase()
            .replace('-', "_");
        let ports = s["spec"]["ports"].as_array().cloned().unwrap_or_default();
        out.push((format!("{name}_SERVICE_HOST"), ip.to_owned()));
        let Some(first) = ports.first() else {
            continue;
        };
        out.push((
            format!("{name}_SERVICE_PORT"),
            first["port"].as_i64().unwrap_or(0).to_string(),
        ));
        for p in &ports {
            if let Some(pn) = p["name"].as_str().filter(|n| !n.is_empty()) {
                out.push((
                    format!(
                        "{name}_SERVICE_PORT_{}",
                        pn.to_uppercase().replace('-', "_")
                    ),
                    p["port"].as_i64().unwrap_or(0).to_string(),
                ));
            }
        }
        let url = |p: &Value| {
            format!(
                "{}://{}:{}",
                p["protocol"].as_str().unwrap_or("TCP").to_lowercase(),
                if ip.contains(':') {
                    format!("[{ip}]")
                } else {
                    ip.to_owned()
                },
                p["port"].as_i64().unwrap_or(0)
            )
        };
        out.push((format!("{name}_PORT"), url(first)));
        for p in &ports {
            let proto = p["protocol"].as_str().unwrap_or("TCP").to_uppercase();
            let port = p["port"].as_i64().unwrap_or(0);
            let prefix = format!("{name}_PORT_{port}_{proto}");
            out.push((prefix.clone(), url(p)));
            out.push((format!("{prefix}_PROTO"), proto.to_lowercase()));
            out.push((format!("{prefix}_PORT"), port.to_string()));
            out.push((format!("{prefix}_ADDR"), ip.to_owned()));
        }
    }
    out
}

/// Auth entries of a `kubernetes.io/dockerconfigjson` (or legacy
/// `dockercfg`) secret that match `image`'s registry.
fn pull_secret_auths(secret: &Value, image: &str) -> Vec<crate::cri::api::AuthConfig> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let decode = |k: &str| {
        secret["data"][k]
            .as_str()
            .and_then(|s| b64.decode(s).ok())
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    };
    let auths = match decode(".dockerconfigjson") {
        Some(v) => v["auths"].clone(),
        None => decode(".dockercfg").unwrap_or(Value::Null),
    };
    let normalized = crate::cri::normalize_image_ref(image);
    let registry = normalized
        .split('/')
        .next()
        .unwrap_or("docker.io")
        .to_owned();
    let mut out = Vec::new();
    for (server, entry) in auths.as_object().into_iter().flatten() {
        let host = server
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or("");
        let matches = host == registry
            || (registry == "docker.io"
                && matches!(
                    host,
                    "index.docker.io" | "registry-1.docker.io" | "docker.io"
                ));
        if !matches {
            continue;
        }
        let mut username = entry["username"].as_str().unwrap_or("").to_owned();
        let mut password = entry["password"].as_str().unwrap_or("").to_owned();
        if let Some(auth) = entry["auth"].as_str().and_then(|a| b64.decode(a).ok()) {
            let s = String::from_utf8_lossy(&auth).into_owned();
            if let Some((u, p)) = s.split_once(':') {
                username = u.to_owned();
                password = p.to_owned();
            }
        }
        out.push(crate::cri::api::AuthConfig {
            username,
            password,
            server_address: server.clone(),
            ..Default::default()
        });
    }
    out
}

struct WorkerHandle {
    pod: watch::Sender<Option<Value>>,
    task: tokio::task::JoinHandle<()>,
}

/// Runs the node's pods until `shutdown` resolves. Running pods are left
/// running when it returns (a restart adopts them).
pub struct PodManager<R> {
    shared: Arc<AgentShared<R>>,
    probe_rx: Option<mpsc::UnboundedReceiver<ProbeEvent>>,
}

impl<R: RuntimeService + ImageService + 'static> PodManager<R> {
    pub fn new(
        config: PodsConfig,
        runtime: Arc<R>,
        api: ApiClient,
        events: EventRecorder,
        node: watch::Receiver<NodeFacts>,
        runtime_name: String,
        devices: Option<kedge_devices::DeviceManager>,
    ) -> PodManager<R> {
        let host_dns = std::fs::read_to_string(&config.resolv_conf)
            .map(|t| podspec::parse_resolv_conf(&t))
            .unwrap_or_default();
        let volumes = VolumeManager::new(config.pods_root.clone());
        let objects = KubeObjectSource::new(api.kube().clone());
        let (probe_tx, probe_rx) = mpsc::unbounded_channel();
        PodManager {
            shared: Arc::new(AgentShared {
                config,
                runtime,
                api,
                events,
                crash_backoff: Backoff::default(),
                pull_backoff: Backoff::default(),
                host_dns,
                node,
                runtime_name,
                directory: RunningPods::default(),
                wakers: Mutex::new(HashMap::new()),
                volumes,
                objects,
                probes: Mutex::new(HashMap::new()),
                probe_kills: Mutex::new(HashMap::new()),
                probe_tx,
                devices,
                device_failures: Mutex::new(HashMap::new()),
            }),
            probe_rx: Some(probe_rx),
        }
    }

    /// The pods this agent runs, for the agent's HTTPS API.
    pub fn directory(&self) -> RunningPods {
        self.shared.directory.clone()
    }

    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        let probes = self
            .probe_rx
            .take()
            .map(|rx| tokio::spawn(probe_events(self.shared.clone(), rx)));
        let shared = self.shared;
        let health = shared
            .devices
            .as_ref()
            .map(|d| tokio::spawn(device_health(shared.clone(), d.health_events())));
        let gvk = GroupVersionKind::gvk("", "v1", "Pod");
        let ar = ApiResource::from_gvk(&gvk);
        let pods: kube::Api<DynamicObject> = kube::Api::all_with(shared.api.kube().clone(), &ar);
        let cfg = watcher::Config::default()
            .fields(&format!("spec.nodeName={}", shared.config.node_name));
        let mut stream = watcher::watcher(pods, cfg).boxed();
        let mut workers: HashMap<String, WorkerHandle> = HashMap::new();
        let mut init_seen: Option<Vec<String>> = None;
        let mut reconciled = false;
        let relist = tokio::spawn(relist_loop(shared.clone()));
        tokio::pin!(shutdown);
        loop {
            let ev = tokio::select! {
                _ = &mut shutdown => break,
                ev = stream.next() => ev,
            };
            let Some(ev) = ev else { break };
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::warn!(error = %e, "watching this node's pods failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            match ev {
                watcher::Event::Init => init_seen = Some(Vec::new()),
                watcher::Event::InitApply(obj) | watcher::Event::Apply(obj) => {
                    let Ok(pod) = serde_json::to_value(&obj) else {
                        continue;
                    };
                    let Some(uid) = pod["metadata"]["uid"].as_str().map(str::to_owned) else {
                        continue;
                    };
                    if let Some(seen) = init_seen.as_mut() {
                        seen.push(uid.clone());
                    }
                    workers.retain(|_, w| !w.task.is_finished());
                    match workers.get(&uid) {
                        Some(w) => {
                            // Status-only changes (most often our own
                            // writes) do not wake the worker, as upstream's
                            // pod config ignores them; it sees them at its
                            // next sync.
                            w.pod.send_if_modified(|cur| {
                                let wake = cur.as_ref().is_none_or(|c| !same_but_status(c, &pod));
                                *cur = Some(pod);
                                wake
                            });
                        }
                        None => {
                            let h = spawn_worker(&shared, uid.clone(), pod);
                            workers.insert(uid, h);
                        }
                    }
                }
                watcher::Event::Delete(obj) => {
                    if let Some(uid) = obj.metadata.uid.as_deref() {
                        if let Some(w) = workers.get(uid) {
                            let _ = w.pod.send(None);
                        }
                    }
                }
                watcher::Event::InitDone => {
                    let seen = init_seen.take().unwrap_or_default();
                    for (uid, w) in &workers {
                        if !seen.contains(uid) {
                            let _ = w.pod.send(None);
                        }
                    }
                    if !reconciled {
                        reconciled = true;
                        remove_orphans(&shared, &seen).await;
                        if let Some(d) = &shared.devices {
                            let live = seen.iter().cloned().collect();
                            if let Err(e) = d.retain_pods(&live) {
                                tracing::warn!(error = %e, "cannot prune device allocations");
                            }
                        }
                    }
                }
            }
        }
        relist.abort();
        if let Some(h) = health {
            h.abort();
        }
        if let Some(p) = probes {
            p.abort();
        }
        for (_, w) in workers {
            w.task.abort();
        }
    }
}

/// Whether two versions of a pod differ only in status and bookkeeping.
fn same_but_status(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("status");
        }
        if let Some(md) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            md.remove("resourceVersion");
            md.remove("managedFields");
        }
        v
    };
    strip(a) == strip(b)
}

fn spawn_worker<R: RuntimeService + ImageService + 'static>(
    shared: &Arc<AgentShared<R>>,
    uid: String,
    pod: Value,
) -> WorkerHandle {
    let (tx, rx) = watch::channel(Some(pod));
    let wake = Arc::new(Notify::new());
    shared
        .wakers
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(uid.clone(), wake.clone());
    let w = worker::PodWorker::new(
        shared.clone(),
        uid.clone(),
        worker::WorkerInputs { pod: rx, wake },
    );
    let shared2 = shared.clone();
    let task = tokio::spawn(async move {
        w.run().await;
        shared2
            .wakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&uid);
    });
    WorkerHandle { pod: tx, task }
}

/// Probe results: events recorded, liveness/startup failures marked for a
/// restart, and the pod's worker woken.
async fn probe_events<R: RuntimeService + ImageService + 'static>(
    shared: Arc<AgentShared<R>>,
    mut rx: mpsc::UnboundedReceiver<ProbeEvent>,
) {
    while let Some(ev) = rx.recv().await {
        let Some(record) = shared.directory.by_container(&ev.container_id) else {
            continue;
        };
        let field_path = events::container_field_path(&record.pod, &ev.container_name);
        match &ev.event {
            ProbeEventKind::Record { reason, message } => {
                shared.events.pod_event(
                    &record.pod,
                    Some(&field_path),
                    events::WARNING,
                    reason,
                    message.clone(),
                );
            }
            ProbeEventKind::ResultChanged {
                success,
                termination_grace_period_seconds,
                ..
            } => {
                if !success && matches!(ev.kind, ProbeKind::Liveness | ProbeKind::Startup) {
                    if let Some(msg) = ev.kill_message() {
                        shared
                            .probe_kills
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .insert(
                                ev.container_id.clone(),
                                (*termination_grace_period_seconds, msg),
                            );
                    }
                }
                if let Some(w) = shared.waker(&record.uid) {
                    w.notify_one();
                }
            }
        }
    }
}

/// A device turned unhealthy: an event on each pod holding it, and the pod
/// fails so that its controller replaces it on a healthy device or node.
async fn device_health<R: RuntimeService + ImageService + 'static>(
    shared: Arc<AgentShared<R>>,
    mut rx: tokio::sync::broadcast::Receiver<kedge_devices::DeviceHealthEvent>,
) {
    loop {
        let ev = match rx.recv().await {
            Ok(ev) => ev,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "device health events were dropped");
                continue;
            }
            Err(_) => return,
        };
        tracing::warn!(resource = %ev.resource, device = %ev.device_id, healthy = ev.healthy, reason = %ev.reason, "device health changed");
        let Some(devices) = &shared.devices else {
            return;
        };
        accelerator_condition(&shared, devices, &ev).await;
        // A lost plugin (restarting, upgraded) is not a failed device: its
        // pods keep running, as upstream.
        if ev.healthy || ev.plugin_lost() || !shared.config.fail_pods_on_device_failure {
            continue;
        }
        for uid in devices.pods_on_device(&ev.resource, &ev.device_id) {
            let Some(record) = shared.directory.by_uid(&uid) else {
                continue;
            };
            let message = format!(
                "device {} ({}) is unhealthy: {}",
                ev.device_id, ev.resource, ev.reason
            );
            shared.events.pod_event(
                &record.pod,
                None,
                events::WARNING,
                "DeviceUnhealthy",
                message.clone(),
            );
            shared
                .device_failures
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(uid.clone(), ("DeviceUnhealthy".to_owned(), message));
            if let Some(w) = shared.waker(&uid) {
                w.notify_one();
            }
        }
    }
}

/// The node condition `AcceleratorHealthy`: False (reason `DeviceUnhealthy`)
/// while any device is unhealthy, naming them and the last cause.
async fn accelerator_condition<R: RuntimeService + ImageService + 'static>(
    shared: &Arc<AgentShared<R>>,
    devices: &kedge_devices::DeviceManager,
    ev: &kedge_devices::DeviceHealthEvent,
) {
    // The manager may publish the event before its own state reflects it:
    // the event decides for its device.
    let this = format!("{} {}", ev.resource, ev.device_id);
    let mut unhealthy = Vec::new();
    for (resource, r) in &devices.node_devices().resources {
        for d in r.devices.iter().filter(|d| !d.healthy) {
            unhealthy.push(format!("{resource} {}", d.id));
        }
    }
    unhealthy.retain(|d| *d != this);
    if !ev.healthy {
        unhealthy.push(this);
    }
    unhealthy.sort();
    let now = status::now_rfc3339();
    let condition = if unhealthy.is_empty() {
        serde_json::json!({
            "type": "AcceleratorHealthy", "status": "True", "reason": "DevicesHealthy",
            "message": "all accelerators are healthy",
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        })
    } else {
        serde_json::json!({
            "type": "AcceleratorHealthy", "status": "False", "reason": "DeviceUnhealthy",
            "message": format!("unhealthy: {}; last: {} {}: {}", unhealthy.join(", "), ev.resource, ev.device_id, ev.reason),
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        })
    };
    let patch = serde_json::json!({"status": {"conditions": [condition]}});
    let path = format!("/api/v1/nodes/{}/status", shared.config.node_name);
    if let Err(e) = shared.api.strategic_patch(&path, &patch).await {
        tracing::warn!(error = %e, "cannot set the node's AcceleratorHealthy condition");
    }
}

/// Sandboxes of pods the API no longer has: stopped and removed.
async fn remove_orphans<R: RuntimeService + ImageService + 'static>(
    shared: &Arc<AgentShared<R>>,
    live: &[String],
) {
    let Ok(sandboxes) = shared
        .runtime
        .list_pod_sandbox(None::<PodSandboxFilter>)
        .await
    else {
        return;
    };
    for s in sandboxes {
        let Some(uid) = s.labels.get(podspec::POD_UID_LABEL) else {
            continue;
        };
        if live.iter().any(|u| u == uid) {
            continue;
        }
        tracing::info!(sandbox = %s.id, pod_uid = %uid, "removing the sandbox of a pod that no longer exists");
        let _ = shared.runtime.stop_pod_sandbox(&s.id).await;
        if let Err(e) = shared.runtime.remove_pod_sandbox(&s.id).await {
            tracing::warn!(sandbox = %s.id, error = %e, "removing an orphaned sandbox failed");
        }
        shared.teardown_volumes(uid).await;
    }
    let live: std::collections::HashSet<String> = live.iter().cloned().collect();
    for uid in shared.volumes.orphaned_pod_dirs(&live) {
        tracing::info!(pod_uid = %uid, "removing the volumes of a pod that no longer exists");
        shared.teardown_volumes(&uid).await;
    }
}

/// Relists the runtime every second and wakes the workers of pods whose
/// containers or sandboxes changed state.
async fn relist_loop<R: RuntimeService + ImageService + 'static>(shared: Arc<AgentShared<R>>) {
    let mut last: HashMap<String, Vec<(String, i32)>> = HashMap::new();
    let mut tick = tokio::time::interval(RELIST);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Ok(containers) = shared
            .runtime
            .list_containers(None::<ContainerFilter>)
            .await
        else {
            continue;
        };
        let Ok(sandboxes) = shared
            .runtime
            .list_pod_sandbox(None::<PodSandboxFilter>)
            .await
        else {
            continue;
        };
        let mut now: HashMap<String, Vec<(String, i32)>> = HashMap::new();
        for c in containers {
            if let Some(uid) = c.labels.get(podspec::POD_UID_LABEL) {
                now.entry(uid.clone()).or_default().push((c.id, c.state));
            }
        }
        for s in sandboxes {
            if let Some(uid) = s.labels.get(podspec::POD_UID_LABEL) {
                now.entry(uid.clone())
                    .or_default()
                    .push((s.id, 100 + s.state));
            }
        }
        for v in now.values_mut() {
            v.sort();
        }
        for (uid, v) in &now {
            if last.get(uid) != Some(v) {
                if let Some(w) = shared.waker(uid) {
                    w.notify_one();
                }
            }
        }
        for uid in last.keys() {
            if !now.contains_key(uid) {
                if let Some(w) = shared.waker(uid) {
                    w.notify_one();
                }
            }
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn service_links_look_like_upstream() {
        let svc = json!({
            "metadata": {"name": "my-svc"},
            "spec": {"clusterIP": "10.43.0.10", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
        });
        let env: BTreeMap<String, String> =
            service_env_vars([&svc].into_iter()).into_iter().collect();
        assert_eq!(env["MY_SVC_SERVICE_HOST"], "10.43.0.10");
        assert_eq!(env["MY_SVC_SERVICE_PORT"], "80");
        assert_eq!(env["MY_SVC_SERVICE_PORT_HTTP"], "80");
        assert_eq!(env["MY_SVC_PORT"], "tcp://10.43.0.10:80");
        assert_eq!(env["MY_SVC_PORT_80_TCP"], "tcp://10.43.0.10:80");
        assert_eq!(env["MY_SVC_PORT_80_TCP_PROTO"], "tcp");
        assert_eq!(env["MY_SVC_PORT_80_TCP_ADDR"], "10.43.0.10");
        let headless = json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None"}});
        assert!(service_env_vars([&headless].into_iter()).is_empty());
    }

    #[test]
    fn pull_secrets_match_the_registry() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let cfg = json!({"auths": {
            "registry.example.com": {"auth": b64.encode("u:p")},
            "https://index.docker.io/v1/": {"username": "d", "password": "q"}
        }});
        let secret = json!({"data": {".dockerconfigjson": b64.encode(cfg.to_string())}});
        let a = pull_secret_auths(&secret, "registry.example.com/app:1");
        assert_eq!(a.len(), 1);
        assert_eq!((a[0].username.as_str(), a[0].password.as_str()), ("u", "p"));
        let d = pull_secret_auths(&secret, "busybox");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].username, "d");
        assert!(pull_secret_auths(&secret, "other.io/x").is_empty());
    }
}
