//! One task per pod, driving it to what its spec asks (upstream's
//! `podWorkers` + `kuberuntime.SyncPod`): sandbox, init containers in order,
//! containers with restart back-off, status back to the API, and on deletion
//! a graceful stop and the removal of everything the runtime holds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

use super::api::core_path;
use super::backoff::go_duration;
use super::events::{container_field_path, NORMAL, WARNING};
use super::status::{
    self, history, is_sidecar, ObservedContainer, RunState, StatusInputs, Waiting,
};
use super::{AgentShared, PodRecord};
use crate::cri::api::{
    self, ContainerFilter, ContainerState, PodSandboxConfig, PodSandboxFilter, PodSandboxState,
};
use crate::cri::{image_spec, ImageService, RuntimeService};
use crate::podspec::{self, ContainerOptions, EnvResolver, SandboxOptions};

/// How long a postStart hook may run (upstream sets no limit of its own).
const POST_START_LIMIT: Duration = Duration::from_secs(300);
/// Upstream's minimum grace period for a kill (`minimumGracePeriodInSeconds`).
const MIN_GRACE: Duration = Duration::from_secs(2);
/// How often a pod is synced without any other reason (volumes refresh, status).
const RESYNC: Duration = Duration::from_secs(60);
/// Termination messages are cut at 4 KiB, log fallbacks at 80 lines / 2 KiB.
const MAX_TERMINATION_MESSAGE: usize = 4096;
const FALLBACK_LINES: usize = 80;
const FALLBACK_BYTES: usize = 2048;

/// What a pod worker gets from the manager.
pub(crate) struct WorkerInputs {
    /// The pod as the API has it; `None` once it is gone from the API.
    pub pod: watch::Receiver<Option<Value>>,
    /// Poked when the runtime's view of the pod changed (PLEG) or a probe
    /// result arrived.
    pub wake: Arc<Notify>,
}

#[derive(Debug, Clone)]
struct SandboxView {
    id: String,
    attempt: u32,
    ready: bool,
    created_at: i64,
    ips: Vec<String>,
}

pub(crate) struct PodWorker<R> {
    shared: Arc<AgentShared<R>>,
    uid: String,
    inputs: WorkerInputs,
    /// Container statuses that cannot change any more (exited), by id.
    exited: HashMap<String, ObservedContainer>,
    /// Waiting reasons decided by the last sync, by container name.
    waiting: HashMap<String, Waiting>,
    /// The sandbox config the current sandbox was made with.
    sandbox_config: Option<PodSandboxConfig>,
    next_sandbox_attempt: u32,
    /// The status last written, with the pod's resourceVersion at the time
    /// (a pod from a watch that has not caught up yet is not rewritten).
    last_status: Option<(String, Value)>,
    /// Containers already reported as started (events once).
    announced: HashSet<String>,
    volumes: BTreeMap<String, podspec::ResolvedVolume>,
    volumes_at: Option<tokio::time::Instant>,
    etc_hosts: Option<String>,
    failed: Option<(String, String)>,
    /// Devices allocated at admission, by container name.
    devices: Option<HashMap<String, kedge_devices::ContainerAllocation>>,
    devices_released: bool,
}

/// Why a sync stopped early, shown as the container's waiting reason.
type StepResult<T> = Result<T, Waiting>;

impl<R: RuntimeService + ImageService + 'static> PodWorker<R> {
    pub(crate) fn new(shared: Arc<AgentShared<R>>, uid: String, inputs: WorkerInputs) -> Self {
        PodWorker {
            shared,
            uid,
            inputs,
            exited: HashMap::new(),
            waiting: HashMap::new(),
            sandbox_config: None,
            next_sandbox_attempt: 0,
            last_status: None,
            announced: HashSet::new(),
            volumes: BTreeMap::new(),
            volumes_at: None,
            etc_hosts: None,
            failed: None,
            devices: None,
            devices_released: false,
        }
    }

    /// Runs until the pod is gone from the API and from the runtime.
    pub(crate) async fn run(mut self) {
        let mut last_pod: Option<Value> = None;
        loop {
            let current = self.inputs.pod.borrow_and_update().clone();
            let wait = match current {
                Some(pod) => {
                    last_pod = Some(pod.clone());
                    self.sync(&pod).await
                }
                None => {
                    // Gone from the API (force-deleted, or our own delete):
                    // stop whatever is left, then leave.
                    if let Some(pod) = &last_pod {
                        self.kill_pod(pod, Some(Duration::ZERO)).await;
                    }
                    self.remove_everything().await;
                    self.shared.forget(&self.uid);
                    tracing::debug!(uid = %self.uid, "pod worker done");
                    return;
                }
            };
            let sleep = tokio::time::sleep(wait);
            tokio::select! {
                changed = self.inputs.pod.changed() => {
                    if changed.is_err() {
                        // The manager is gone (agent shutting down).
                        return;
                    }
                }
                _ = self.inputs.wake.notified() => {}
                _ = sleep => {}
            }
        }
    }

    fn pod_name(pod: &Value) -> (String, String) {
        (
            pod["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            pod["metadata"]["name"].as_str().unwrap_or("").to_owned(),
        )
    }

    /// One pass; returns how long to wait before the next one at most.
    async fn sync(&mut self, pod: &Value) -> Duration {
        if pod["metadata"]["deletionTimestamp"].is_string() {
            return self.sync_deleting(pod).await;
        }
        let (sandboxes, containers) = match self.observe().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(pod = %podspec_name(pod), error = %e, "cannot read the pod's state from the runtime");
                return Duration::from_secs(2);
            }
        };
        let phase = pod["status"]["phase"].as_str().unwrap_or("");
        let terminal = matches!(phase, "Succeeded" | "Failed") || self.failed.is_some();
        let mut next = RESYNC;

        if !terminal && self.failed.is_none() {
            if let Some(reason) = self.shared.device_failure(&self.uid) {
                self.failed = Some(reason);
                self.kill_pod(pod, None).await;
            }
        }
        if !terminal && self.failed.is_none() && self.devices.is_none() {
            // Admission: the pod's devices, once.
            match self.shared.allocate_devices(pod).await {
                Ok(d) => self.devices = Some(d),
                Err(msg) => {
                    self.shared.events.pod_event(
                        pod,
                        None,
                        WARNING,
                        "UnexpectedAdmissionError",
                        msg.clone(),
                    );
                    self.failed = Some(("UnexpectedAdmissionError".to_owned(), msg));
                }
            }
        }
        if !terminal {
            if let Some(reason) = self.deadline_exceeded(pod) {
                self.shared.events.pod_event(
                    pod,
                    None,
                    WARNING,
                    "DeadlineExceeded",
                    reason.1.clone(),
                );
                self.failed = Some(reason);
                self.kill_pod(pod, None).await;
            }
        }
        let terminal = terminal || self.failed.is_some();
        for c in containers.iter().filter(|c| c.state == RunState::Exited) {
            self.shared.container_stopped(&c.id);
        }
        let mut sandbox = current_sandbox(&sandboxes);
        if terminal {
            // A finished pod frees its devices and keeps its status; its
            // sandbox is stopped.
            if !self.devices_released {
                self.devices_released = true;
                self.shared.release_devices(&self.uid);
            }
            if let Some(sb) = sandbox.as_ref().filter(|s| s.ready) {
                let running: Vec<&ObservedContainer> = containers
                    .iter()
                    .filter(|c| c.state == RunState::Running)
                    .collect();
                if running.is_empty() {
                    let _ = self.shared.runtime.stop_pod_sandbox(&sb.id).await;
                }
            }
        } else {
            next = next.min(self.sync_running(pod, &mut sandbox, &containers).await);
        }
        // Status from a fresh look at the runtime.
        let containers = match self.observe().await {
            Ok((s, c)) => {
                sandbox = current_sandbox(&s);
                c
            }
            Err(_) => containers,
        };
        let status = self.write_status(pod, sandbox.as_ref(), &containers).await;
        self.publish(pod, sandbox.as_ref(), &containers, status);
        next
    }

    fn deadline_exceeded(&self, pod: &Value) -> Option<(String, String)> {
        let ads = pod["spec"]["activeDeadlineSeconds"].as_i64()?;
        let start = pod["status"]["startTime"].as_str()?;
        let start: jiff::Timestamp = start.parse().ok()?;
        let elapsed = jiff::Timestamp::now().duration_since(start);
        (elapsed.as_secs() >= ads).then(|| {
            (
                "DeadlineExceeded".to_owned(),
                "Pod was active on the node longer than the specified deadline".to_owned(),
            )
        })
    }

    /// Drives a live pod: sandbox, init containers, containers.
    async fn sync_running(
        &mut self,
        pod: &Value,
        sandbox: &mut Option<SandboxView>,
        containers: &[ObservedContainer],
    ) -> Duration {
        let mut next = RESYNC;
        self.waiting.clear();
        // Volumes first: containers cannot start without them.
        if let Err(w) = self.ensure_volumes(pod).await {
            for c in all_names(pod) {
                self.waiting.insert(c, w.clone());
            }
            return Duration::from_secs(2);
        }
        let need_new_sandbox = match sandbox.as_ref() {
            None => true,
            Some(s) => !s.ready,
        };
        let restart_policy = pod["spec"]["restartPolicy"].as_str().unwrap_or("Always");
        if need_new_sandbox {
            // A pod whose containers all finished under Never/OnFailure
            // does not get a new sandbox.
            let spec_names: Vec<String> = regular_names(pod);
            let all_done = !spec_names.is_empty()
                && spec_names.iter().all(|n| {
                    history(containers, n).first().is_some_and(|c| {
                        c.state == RunState::Exited
                            && (restart_policy == "Never"
                                || (restart_policy == "OnFailure" && c.exit_code == 0))
                    })
                });
            if sandbox.is_some() && all_done {
                return RESYNC;
            }
            if let Some(old) = sandbox.as_ref() {
                // The sandbox died: everything in it is killed and the pod
                // starts over in a new one (restart counts continue).
                self.shared.events.pod_event(
                    pod,
                    None,
                    NORMAL,
                    "SandboxChanged",
                    "Pod sandbox changed, it will be killed and re-created.",
                );
                for c in containers.iter().filter(|c| c.state == RunState::Running) {
                    self.stop_container(pod, c, Some(MIN_GRACE), None).await;
                }
                let _ = self.shared.runtime.stop_pod_sandbox(&old.id).await;
                self.next_sandbox_attempt = self.next_sandbox_attempt.max(old.attempt + 1);
            }
            match self.create_sandbox(pod).await {
                Ok(sb) => *sandbox = Some(sb),
                Err(w) => {
                    for c in all_names(pod) {
                        self.waiting.insert(c, w.clone());
                    }
                    return Duration::from_secs(5);
                }
            }
        }
        let Some(sb) = sandbox.clone() else {
            return Duration::from_secs(2);
        };
        if self.sandbox_config.is_none() {
            self.sandbox_config = Some(self.build_sandbox_config(pod, sb.attempt));
        }
        if self.etc_hosts.is_none() {
            self.etc_hosts = self.write_etc_hosts(pod, &sb.ips);
        }

        // Init containers, in order.
        let inits: Vec<Value> = pod["spec"]["initContainers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let in_sandbox: Vec<ObservedContainer> = containers
            .iter()
            .filter(|c| c.sandbox_id == sb.id)
            .cloned()
            .collect();
        for spec in &inits {
            let name = spec["name"].as_str().unwrap_or("").to_owned();
            let hist = history(&in_sandbox, &name);
            let sidecar = is_sidecar(spec);
            match hist.first().copied() {
                Some(c) if c.state == RunState::Running || c.state == RunState::Created => {
                    if sidecar && c.state == RunState::Running {
                        continue;
                    }
                    return next.min(Duration::from_secs(1));
                }
                Some(c) if c.state == RunState::Exited && c.exit_code == 0 && !sidecar => continue,
                Some(c) => {
                    // Failed (or a sidecar that stopped): restart unless Never.
                    if restart_policy == "Never" && !sidecar {
                        return next;
                    }
                    let c = c.clone();
                    match self
                        .restart_after_backoff(pod, spec, &sb, &c, containers)
                        .await
                    {
                        Ok(()) => {}
                        Err((w, wait)) => {
                            self.waiting.insert(name.clone(), w);
                            next = next.min(wait);
                        }
                    }
                    return next;
                }
                None => {
                    let attempt = next_attempt(containers, &name);
                    if let Err(w) = self.start_container(pod, spec, &sb, attempt).await {
                        self.waiting.insert(name.clone(), w);
                        return next.min(Duration::from_secs(5));
                    }
                    if !sidecar {
                        return next.min(Duration::from_secs(1));
                    }
                }
            }
        }

        // Regular containers.
        let specs: Vec<Value> = pod["spec"]["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for spec in &specs {
            let name = spec["name"].as_str().unwrap_or("").to_owned();
            let hist = history(&in_sandbox, &name);
            match hist.first().copied() {
                Some(c) if c.state == RunState::Running => {
                    self.shared.ensure_probes(pod, spec, c, &sb.ips);
                    if let Some((probe_grace, msg)) = self.shared.probe_kill(&c.id) {
                        let c = c.clone();
                        let grace = probe_grace.map(|g| Duration::from_secs(g.max(0) as u64));
                        self.stop_container(pod, &c, grace, Some(&msg)).await;
                        next = next.min(Duration::from_millis(100));
                    }
                }
                Some(c) if c.state == RunState::Created => {
                    // Created but never started (we died in between): start it.
                    let id = c.id.clone();
                    if let Err(e) = self.shared.runtime.start_container(&id).await {
                        self.waiting.insert(
                            name.clone(),
                            Waiting::new("RunContainerError", e.to_string()),
                        );
                    }
                }
                Some(c) => {
                    let c = c.clone();
                    let restart = match restart_policy {
                        "Never" => false,
                        "OnFailure" => c.exit_code != 0,
                        _ => true,
                    };
                    if !restart {
                        continue;
                    }
                    if let Err((w, wait)) = self
                        .restart_after_backoff(pod, spec, &sb, &c, containers)
                        .await
                    {
                        self.waiting.insert(name.clone(), w);
                        next = next.min(wait);
                    }
                }
                None => {
                    let attempt = next_attempt(containers, &name);
                    if let Err(w) = self.start_container(pod, spec, &sb, attempt).await {
                        let retry = if w.reason == "ImagePullBackOff" || w.reason == "ErrImagePull"
                        {
                            Duration::from_secs(1)
                        } else {
                            Duration::from_secs(5)
                        };
                        self.waiting.insert(name.clone(), w);
                        next = next.min(retry);
                    }
                }
            }
        }
        next
    }

    /// Restart `dead` unless it is in crash-loop back-off; `Err` carries the
    /// waiting reason and when to look again.
    async fn restart_after_backoff(
        &mut self,
        pod: &Value,
        spec: &Value,
        sb: &SandboxView,
        dead: &ObservedContainer,
        all: &[ObservedContainer],
    ) -> Result<(), (Waiting, Duration)> {
        let name = spec["name"].as_str().unwrap_or("");
        let key = format!("{}_{}", self.uid, name);
        let finished = nanos_to_time(dead.finished_at);
        let now = SystemTime::now();
        let backoff = &self.shared.crash_backoff;
        if backoff.is_in_backoff_since(&key, finished, now) {
            let delay = backoff.get(&key);
            self.shared.events.pod_event(
                pod,
                Some(&container_field_path(pod, name)),
                WARNING,
                "BackOff",
                format!(
                    "Back-off restarting failed container {name} in pod {}",
                    podspec_name(pod)
                ),
            );
            let wait = backoff
                .ends_at(&key, finished)
                .and_then(|t| t.duration_since(now).ok())
                .unwrap_or(Duration::from_secs(1));
            return Err((
                Waiting::new(
                    "CrashLoopBackOff",
                    format!(
                        "back-off {} restarting failed container={name} pod={}",
                        go_duration(delay),
                        podspec_name(pod)
                    ),
                ),
                wait + Duration::from_millis(50),
            ));
        }
        backoff.next(&key, finished, now);
        let attempt = next_attempt(all, name);
        match self.start_container(pod, spec, sb, attempt).await {
            Ok(()) => {
                self.prune_dead(name, all).await;
                Ok(())
            }
            Err(w) => Err((w, Duration::from_secs(5))),
        }
    }

    /// Keeps the newest dead container of `name` (lastState, logs
    /// --previous) and removes older ones, as upstream's container GC does.
    async fn prune_dead(&mut self, name: &str, all: &[ObservedContainer]) {
        let dead: Vec<&ObservedContainer> = history(all, name)
            .into_iter()
            .filter(|c| c.state == RunState::Exited)
            .collect();
        for c in dead.iter().skip(1) {
            if let Err(e) = self.shared.runtime.remove_container(&c.id).await {
                tracing::debug!(container = %c.id, error = %e, "removing an old dead container failed");
            }
            self.exited.remove(&c.id);
        }
    }

    async fn ensure_volumes(&mut self, pod: &Value) -> StepResult<()> {
        let fresh = self.volumes_at.is_some_and(|t| t.elapsed() < RESYNC);
        if fresh {
            return Ok(());
        }
        match self.shared.setup_volumes(pod).await {
            Ok(v) => {
                self.volumes = v;
                self.volumes_at = Some(tokio::time::Instant::now());
                Ok(())
            }
            Err(msgs) => {
                for msg in msgs {
                    self.shared
                        .events
                        .pod_event(pod, None, WARNING, "FailedMount", msg);
                }
                Err(Waiting::new("ContainerCreating", ""))
            }
        }
    }

    fn build_sandbox_config(&self, pod: &Value, attempt: u32) -> PodSandboxConfig {
        let opts = SandboxOptions {
            attempt,
            cgroup_parent: String::new(),
            cluster_dns: self.shared.config.cluster_dns.clone(),
            cluster_domain: self.shared.config.cluster_domain.clone(),
            host_dns: self.shared.host_dns.clone(),
            pod_logs_root: self.shared.config.pod_logs_root.display().to_string(),
            seccomp_root: self.shared.config.seccomp_root.display().to_string(),
        };
        podspec::sandbox_config(pod, &opts)
    }

    async fn create_sandbox(&mut self, pod: &Value) -> StepResult<SandboxView> {
        let attempt = self.next_sandbox_attempt;
        self.next_sandbox_attempt += 1;
        let config = self.build_sandbox_config(pod, attempt);
        if let Err(e) = std::fs::create_dir_all(&config.log_directory) {
            tracing::warn!(dir = %config.log_directory, error = %e, "cannot create the pod's log directory");
        }
        let handler = pod["spec"]["runtimeClassName"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let id = match self
            .shared
            .runtime
            .run_pod_sandbox(config.clone(), &handler)
            .await
        {
            Ok(id) => id,
            Err(e) => {
                let msg = format!("Failed to create pod sandbox: {e}");
                self.shared.events.pod_event(
                    pod,
                    None,
                    WARNING,
                    "FailedCreatePodSandBox",
                    msg.clone(),
                );
                // A failed sandbox keeps its name until removed.
                self.remove_dead_sandboxes().await;
                return Err(Waiting::new("ContainerCreating", ""));
            }
        };
        let ips = match self.shared.runtime.pod_sandbox_status(&id, false).await {
            Ok(st) => sandbox_ips(st.status.as_ref()),
            Err(_) => Vec::new(),
        };
        self.sandbox_config = Some(config);
        self.etc_hosts = None;
        Ok(SandboxView {
            id,
            attempt,
            ready: true,
            created_at: 0,
            ips,
        })
    }

    async fn remove_dead_sandboxes(&self) {
        let filter = PodSandboxFilter {
            label_selector: [(podspec::POD_UID_LABEL.to_owned(), self.uid.clone())]
                .into_iter()
                .collect(),
            ..Default::default()
        };
        if let Ok(list) = self.shared.runtime.list_pod_sandbox(Some(filter)).await {
            for s in list
                .iter()
                .filter(|s| s.state != PodSandboxState::SandboxReady as i32)
            {
                let _ = self.shared.runtime.remove_pod_sandbox(&s.id).await;
            }
        }
    }

    fn write_etc_hosts(&self, pod: &Value, ips: &[String]) -> Option<String> {
        self.shared.etc_hosts(pod, ips)
    }

    /// Image present (pulled per `imagePullPolicy`), config built, container
    /// created and started, postStart run.
    async fn start_container(
        &mut self,
        pod: &Value,
        spec: &Value,
        sb: &SandboxView,
        attempt: u32,
    ) -> StepResult<()> {
        let name = spec["name"].as_str().unwrap_or("").to_owned();
        let field_path = container_field_path(pod, &name);
        let sandbox_config = self
            .sandbox_config
            .clone()
            .unwrap_or_else(|| self.build_sandbox_config(pod, sb.attempt));
        let image = self
            .ensure_image(pod, spec, &field_path, &sandbox_config)
            .await?;

        let resolver = match self.shared.env_resolver(pod, spec).await {
            Ok(r) => r,
            Err(msg) => return Err(self.config_error(pod, &field_path, msg)),
        };
        let facts = self.shared.node_facts();
        let term_path = self
            .shared
            .termination_message_file(&self.uid, &name, attempt);
        let opts = ContainerOptions {
            restart_count: attempt,
            image_ref: Some(image.id.clone()),
            image_uid: image.uid.as_ref().map(|u| u.value),
            image_username: image.username.clone(),
            volumes: self.volumes.clone(),
            etc_hosts_path: self.etc_hosts.clone(),
            termination_message_host_path: term_path,
            host_ips: facts.host_ips.clone(),
            pod_ips: sb.ips.clone(),
            node_allocatable: facts.allocatable.clone(),
            memory_capacity: facts.memory_capacity,
            service_env: self.shared.service_env(pod).await,
            seccomp_root: self.shared.config.seccomp_root.display().to_string(),
        };
        let mut config = match podspec::container_config(pod, spec, &opts, &resolver) {
            Ok(c) => c,
            Err(e) => return Err(self.config_error(pod, &field_path, e.to_string())),
        };
        if let Some(alloc) = self.devices.as_ref().and_then(|d| d.get(&name)) {
            add_devices(&mut config, alloc);
        }
        let log_dir = std::path::Path::new(&sandbox_config.log_directory).join(&name);
        let _ = std::fs::create_dir_all(&log_dir);
        let id = match self
            .shared
            .runtime
            .create_container(&sb.id, config, sandbox_config)
            .await
        {
            Ok(id) => id,
            Err(e) => {
                let msg = format!("Error: {e}");
                self.shared.events.pod_event(
                    pod,
                    Some(&field_path),
                    WARNING,
                    "Failed",
                    msg.clone(),
                );
                return Err(Waiting::new("CreateContainerError", msg));
            }
        };
        self.shared.events.pod_event(
            pod,
            Some(&field_path),
            NORMAL,
            "Created",
            format!("Created container: {name}"),
        );
        if let Err(e) = self.shared.devices_pre_start(&self.uid, &name).await {
            let msg = format!("Error: {e}");
            self.shared
                .events
                .pod_event(pod, Some(&field_path), WARNING, "Failed", msg.clone());
            return Err(Waiting::new("RunContainerError", e));
        }
        if let Err(e) = self.shared.runtime.start_container(&id).await {
            let msg = format!("Error: {e}");
            self.shared
                .events
                .pod_event(pod, Some(&field_path), WARNING, "Failed", msg.clone());
            return Err(Waiting::new("RunContainerError", e.to_string()));
        }
        self.shared.events.pod_event(
            pod,
            Some(&field_path),
            NORMAL,
            "Started",
            format!("Started container {name}"),
        );
        self.announced.insert(id.clone());
        self.shared.container_started(pod, spec, &id, &sb.ips);
        if let Some(hook) = spec["lifecycle"]["postStart"].as_object() {
            let hook = Value::Object(hook.clone());
            let run = self
                .shared
                .run_hook(pod, spec, &id, &sb.ips, &hook, POST_START_LIMIT);
            if let Err(msg) = run.await {
                self.shared.events.pod_event(
                    pod,
                    Some(&field_path),
                    WARNING,
                    "FailedPostStartHook",
                    msg.clone(),
                );
                let grace = grace_of(pod);
                let _ = self.shared.runtime.stop_container(&id, grace).await;
                return Err(Waiting::new("PostStartHookError", msg));
            }
        }
        Ok(())
    }

    fn config_error(&self, pod: &Value, field_path: &str, msg: String) -> Waiting {
        self.shared.events.pod_event(
            pod,
            Some(field_path),
            WARNING,
            "Failed",
            format!("Error: {msg}"),
        );
        Waiting::new("CreateContainerConfigError", msg)
    }

    /// upstream's `imageManager.EnsureImageExists`.
    async fn ensure_image(
        &mut self,
        pod: &Value,
        spec: &Value,
        field_path: &str,
        sandbox_config: &PodSandboxConfig,
    ) -> StepResult<api::Image> {
        let image = spec["image"].as_str().unwrap_or("").to_owned();
        if image.is_empty() {
            return Err(Waiting::new(
                "InvalidImageName",
                "Failed to apply default image tag \"\": couldn't parse image name \"\": invalid reference format",
            ));
        }
        let policy = spec["imagePullPolicy"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| default_pull_policy(&image).to_owned());
        let rt = &self.shared.runtime;
        let present = match rt.image_status(image_spec(&image), false).await {
            Ok(i) => i,
            Err(e) => {
                return Err(Waiting::new(
                    "ImageInspectError",
                    format!("Failed to inspect image {image:?}: {e}"),
                ))
            }
        };
        let must_pull = match policy.as_str() {
            "Always" => true,
            "Never" => {
                return match present {
                    Some(i) => Ok(i),
                    None => {
                        let msg = format!(
                            "Container image {image:?} is not present with pull policy of Never"
                        );
                        self.shared.events.pod_event(
                            pod,
                            Some(field_path),
                            WARNING,
                            "ErrImageNeverPull",
                            msg.clone(),
                        );
                        Err(Waiting::new("ErrImageNeverPull", msg))
                    }
                };
            }
            _ => present.is_none(),
        };
        if !must_pull {
            if let Some(i) = present {
                self.shared.events.pod_event(
                    pod,
                    Some(field_path),
                    NORMAL,
                    "Pulled",
                    format!("Container image {image:?} already present on machine"),
                );
                return Ok(i);
            }
        }
        let key = format!("{}_{}", self.uid, image);
        let now = SystemTime::now();
        let backoff = &self.shared.pull_backoff;
        if backoff.is_in_backoff_since_update(&key, now) {
            let msg = format!("Back-off pulling image {image:?}");
            self.shared
                .events
                .pod_event(pod, Some(field_path), NORMAL, "BackOff", msg.clone());
            return Err(Waiting::new("ImagePullBackOff", msg));
        }
        self.shared.events.pod_event(
            pod,
            Some(field_path),
            NORMAL,
            "Pulling",
            format!("Pulling image {image:?}"),
        );
        let started = std::time::Instant::now();
        let auth = self.shared.pull_auth(pod, &image).await;
        let mut last_err = None;
        for a in auth.into_iter().map(Some).chain(std::iter::once(None)) {
            match rt
                .pull_image(image_spec(&image), a, Some(sandbox_config.clone()))
                .await
            {
                Ok(_) => {
                    last_err = None;
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        if let Some(e) = last_err {
            backoff.next(&key, now, now);
            let msg = format!("Failed to pull image {image:?}: {e}");
            self.shared
                .events
                .pod_event(pod, Some(field_path), WARNING, "Failed", msg.clone());
            self.shared.events.pod_event(
                pod,
                Some(field_path),
                WARNING,
                "Failed",
                "Error: ErrImagePull",
            );
            return Err(Waiting::new("ErrImagePull", msg));
        }
        backoff.forget_prefix(&key);
        match rt.image_status(image_spec(&image), false).await {
            Ok(Some(i)) => {
                self.shared.events.pod_event(
                    pod,
                    Some(field_path),
                    NORMAL,
                    "Pulled",
                    format!(
                        "Successfully pulled image {image:?} in {:.3}s. Image size: {} bytes.",
                        started.elapsed().as_secs_f64(),
                        i.size
                    ),
                );
                Ok(i)
            }
            _ => Err(Waiting::new(
                "ErrImagePull",
                format!("image {image:?} was pulled but the runtime does not list it"),
            )),
        }
    }

    /// Graceful stop of one container: preStop, then SIGTERM, then SIGKILL
    /// after the grace period.
    async fn stop_container(
        &mut self,
        pod: &Value,
        c: &ObservedContainer,
        grace: Option<Duration>,
        why: Option<&str>,
    ) {
        let spec = find_spec(pod, &c.name);
        let mut grace = grace.unwrap_or_else(|| grace_of(pod));
        if let Some(spec) = &spec {
            let field_path = container_field_path(pod, &c.name);
            let msg = match why {
                Some(w) => w.to_owned(),
                None => format!("Stopping container {}", c.name),
            };
            self.shared
                .events
                .pod_event(pod, Some(&field_path), NORMAL, "Killing", msg);
            if let Some(hook) = spec["lifecycle"]["preStop"].as_object() {
                if c.state == RunState::Running && !grace.is_zero() {
                    let hook = Value::Object(hook.clone());
                    let started = std::time::Instant::now();
                    let ips = self.shared.pod_ips(&self.uid);
                    let run = self.shared.run_hook(pod, spec, &c.id, &ips, &hook, grace);
                    if let Err(msg) = run.await {
                        self.shared.events.pod_event(
                            pod,
                            Some(&field_path),
                            WARNING,
                            "FailedPreStopHook",
                            msg,
                        );
                    }
                    grace = grace.saturating_sub(started.elapsed());
                }
            }
        }
        let grace = if grace.is_zero() {
            grace
        } else {
            grace.max(MIN_GRACE)
        };
        self.shared.container_stopped(&c.id);
        if let Err(e) = self.shared.runtime.stop_container(&c.id, grace).await {
            if !e.is_not_found() {
                tracing::warn!(container = %c.id, error = %e, "stopping a container failed");
            }
        }
    }

    /// Stops every running container of the pod (in parallel, as upstream)
    /// and the sandbox.
    async fn kill_pod(&mut self, pod: &Value, grace: Option<Duration>) {
        let Ok((sandboxes, containers)) = self.observe().await else {
            return;
        };
        let running: Vec<ObservedContainer> = containers
            .iter()
            .filter(|c| matches!(c.state, RunState::Running | RunState::Created))
            .cloned()
            .collect();
        // Containers stop together; each gets the whole grace period.
        let mut tasks = Vec::new();
        for c in running {
            let pod = pod.clone();
            let mut me = self.detached();
            tasks.push(async move { me.stop_container(&pod, &c, grace, None).await });
        }
        futures::future::join_all(tasks).await;
        for s in sandboxes.iter().filter(|s| s.ready) {
            if let Err(e) = self.shared.runtime.stop_pod_sandbox(&s.id).await {
                tracing::warn!(sandbox = %s.id, error = %e, "stopping a sandbox failed");
            }
        }
    }

    /// A copy sharing the agent state, for stopping containers in parallel.
    fn detached(&self) -> PodWorker<R> {
        let (_tx, rx) = watch::channel(None);
        PodWorker::new(
            self.shared.clone(),
            self.uid.clone(),
            WorkerInputs {
                pod: rx,
                wake: Arc::new(Notify::new()),
            },
        )
    }

    /// Sandboxes (with their containers) and volumes of this pod removed.
    async fn remove_everything(&mut self) {
        let filter = PodSandboxFilter {
            label_selector: [(podspec::POD_UID_LABEL.to_owned(), self.uid.clone())]
                .into_iter()
                .collect(),
            ..Default::default()
        };
        if let Ok(list) = self.shared.runtime.list_pod_sandbox(Some(filter)).await {
            for s in list {
                let _ = self.shared.runtime.stop_pod_sandbox(&s.id).await;
                if let Err(e) = self.shared.runtime.remove_pod_sandbox(&s.id).await {
                    tracing::warn!(sandbox = %s.id, error = %e, "removing a sandbox failed");
                }
            }
        }
        self.shared.teardown_volumes(&self.uid).await;
        self.shared.release_devices(&self.uid);
        self.shared.crash_backoff.forget_prefix(&self.uid);
        self.shared.pull_backoff.forget_prefix(&self.uid);
    }

    /// A pod being deleted: stop it within its grace period, remove it from
    /// the runtime, then delete the API object (UID precondition).
    async fn sync_deleting(&mut self, pod: &Value) -> Duration {
        if let Some(r) = self.shared.running_pod(&self.uid) {
            let ids: Vec<String> = r.containers.iter().map(|c| c.id.clone()).collect();
            self.shared.stop_liveness(&ids);
        }
        let grace = pod["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .map(|g| Duration::from_secs(g.max(0) as u64));
        self.kill_pod(pod, grace).await;
        // Final status: every container terminated.
        if let Ok((sandboxes, containers)) = self.observe().await {
            let sb = current_sandbox(&sandboxes);
            let status = self.write_status(pod, sb.as_ref(), &containers).await;
            self.publish(pod, sb.as_ref(), &containers, status);
        }
        self.remove_everything().await;
        let (ns, name) = Self::pod_name(pod);
        let opts = json!({
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": self.uid},
        });
        match self
            .shared
            .api
            .delete(&core_path("pods", &ns, &name), &opts)
            .await
        {
            Ok(_) => Duration::from_secs(5),
            Err(e) if e.is_not_found() || e.is_conflict() => Duration::from_secs(5),
            Err(e) => {
                tracing::warn!(pod = %podspec_name(pod), error = %e, "deleting the pod object failed; retrying");
                Duration::from_secs(2)
            }
        }
    }

    /// The pod's sandboxes and containers as the runtime has them.
    async fn observe(&mut self) -> Result<(Vec<SandboxView>, Vec<ObservedContainer>), String> {
        let rt = &self.shared.runtime;
        let selector: HashMap<String, String> =
            [(podspec::POD_UID_LABEL.to_owned(), self.uid.clone())]
                .into_iter()
                .collect();
        let sandboxes = rt
            .list_pod_sandbox(Some(PodSandboxFilter {
                label_selector: selector.clone(),
                ..Default::default()
            }))
            .await
            .map_err(|e| e.to_string())?;
        let mut views = Vec::new();
        for s in sandboxes {
            let ready = s.state == PodSandboxState::SandboxReady as i32;
            let ips = if ready {
                match rt.pod_sandbox_status(&s.id, false).await {
                    Ok(st) => sandbox_ips(st.status.as_ref()),
                    Err(_) => Vec::new(),
                }
            } else {
                Vec::new()
            };
            let attempt = s.metadata.as_ref().map(|m| m.attempt).unwrap_or(0);
            self.next_sandbox_attempt = self.next_sandbox_attempt.max(attempt + 1);
            views.push(SandboxView {
                id: s.id,
                attempt,
                ready,
                created_at: s.created_at,
                ips,
            });
        }
        let list = rt
            .list_containers(Some(ContainerFilter {
                label_selector: selector,
                ..Default::default()
            }))
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for c in list {
            if let Some(done) = self.exited.get(&c.id) {
                out.push(done.clone());
                continue;
            }
            let st = match rt.container_status(&c.id, false).await {
                Ok(r) => r.status,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.to_string()),
            };
            let Some(st) = st else { continue };
            let state = match ContainerState::try_from(st.state) {
                Ok(ContainerState::ContainerCreated) => RunState::Created,
                Ok(ContainerState::ContainerRunning) => RunState::Running,
                Ok(ContainerState::ContainerExited) => RunState::Exited,
                _ => RunState::Unknown,
            };
            let name = st
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default();
            let mut o = ObservedContainer {
                id: st.id.clone(),
                name,
                attempt: st.metadata.as_ref().map(|m| m.attempt).unwrap_or(0),
                sandbox_id: c.pod_sandbox_id.clone(),
                state,
                created_at: st.created_at,
                started_at: st.started_at,
                finished_at: st.finished_at,
                exit_code: st.exit_code,
                reason: st.reason.clone(),
                message: String::new(),
                image_ref: st.image_ref.clone(),
            };
            if state == RunState::Exited {
                o.message = self.termination_message(&o, &st);
                self.exited.insert(o.id.clone(), o.clone());
            }
            out.push(o);
        }
        Ok((views, out))
    }

    /// The termination message: the file the container wrote, else (with
    /// `FallbackToLogsOnError` and a failure) the tail of its log.
    fn termination_message(&self, c: &ObservedContainer, st: &api::ContainerStatus) -> String {
        let path = st
            .annotations
            .get(podspec::TERMINATION_MESSAGE_PATH_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        let policy = st
            .annotations
            .get(podspec::TERMINATION_MESSAGE_POLICY_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        let mut msg = String::new();
        if !path.is_empty() {
            if let Some(m) = st.mounts.iter().find(|m| m.container_path == path) {
                if let Ok(bytes) = std::fs::read(&m.host_path) {
                    let cut = &bytes[..bytes.len().min(MAX_TERMINATION_MESSAGE)];
                    msg = String::from_utf8_lossy(cut).into_owned();
                }
            }
        }
        if msg.is_empty() && policy == "FallbackToLogsOnError" && c.exit_code != 0 {
            msg = log_tail(&st.log_path, FALLBACK_LINES, FALLBACK_BYTES);
        }
        if msg.is_empty() && !st.message.is_empty() {
            msg = st.message.clone();
        }
        msg
    }

    /// Makes the pod's runtime state visible to the node's API server
    /// (logs/exec lookups) and probes.
    fn publish(
        &self,
        pod: &Value,
        sb: Option<&SandboxView>,
        containers: &[ObservedContainer],
        status: Value,
    ) {
        let mut pod = pod.clone();
        pod["status"] = status;
        self.shared.directory_update(PodRecord {
            uid: self.uid.clone(),
            pod,
            sandbox_id: sb.map(|s| s.id.clone()),
            pod_ips: sb.map(|s| s.ips.clone()).unwrap_or_default(),
            containers: containers.to_vec(),
        });
    }

    /// Computes the pod's status and writes it when it changed; returns it.
    async fn write_status(
        &mut self,
        pod: &Value,
        sb: Option<&SandboxView>,
        containers: &[ObservedContainer],
    ) -> Value {
        let facts = self.shared.node_facts();
        let (ready, started) = self.shared.probe_results(containers);
        let inputs = StatusInputs {
            containers,
            waiting: self.waiting.clone(),
            ready,
            started,
            sandbox_ready: sb.is_some_and(|s| s.ready),
            pod_ips: sb.map(|s| s.ips.clone()).unwrap_or_default(),
            host_ips: facts.host_ips.clone(),
            runtime_name: self.shared.runtime_name(),
            failed: self.failed.clone(),
        };
        let new = status::compute(pod, &inputs);
        let old = &pod["status"];
        let rv = pod["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        if !status::differs(old, &new) {
            return new;
        }
        if self
            .last_status
            .as_ref()
            .is_some_and(|(at, l)| *at == rv && !status::differs(l, &new))
        {
            return new;
        }
        let mut patch_status = new.clone();
        if let (Some(o), Some(n)) = (old.as_object(), patch_status.as_object_mut()) {
            for k in o.keys() {
                if !n.contains_key(k) {
                    n.insert(k.clone(), Value::Null);
                }
            }
        }
        let patch = json!({"metadata": {"uid": self.uid}, "status": patch_status});
        let (ns, name) = Self::pod_name(pod);
        let path = format!("{}/status", core_path("pods", &ns, &name));
        match self.shared.api.merge_patch(&path, &patch).await {
            Ok(_) => self.last_status = Some((rv, new.clone())),
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                tracing::warn!(pod = %podspec_name(pod), error = %e, "writing the pod status failed")
            }
        }
        new
    }
}

/// Puts a device plugin's allocation into the container's CRI config.
fn add_devices(config: &mut api::ContainerConfig, alloc: &kedge_devices::ContainerAllocation) {
    for d in &alloc.devices {
        config.devices.push(api::Device {
            container_path: d.container_path.clone(),
            host_path: d.host_path.clone(),
            permissions: d.permissions.clone(),
        });
    }
    for m in &alloc.mounts {
        config.mounts.push(api::Mount {
            container_path: m.container_path.clone(),
            host_path: m.host_path.clone(),
            readonly: m.read_only,
            ..Default::default()
        });
    }
    for (k, v) in &alloc.envs {
        config.envs.retain(|e| &e.key != k);
        config.envs.push(api::KeyValue {
            key: k.clone(),
            value: v.clone(),
        });
    }
    for (k, v) in &alloc.annotations {
        config.annotations.insert(k.clone(), v.clone());
    }
    for name in &alloc.cdi_devices {
        config
            .cdi_devices
            .push(api::CdiDevice { name: name.clone() });
    }
}

fn default_pull_policy(image: &str) -> &'static str {
    let name = image.split('@').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        None => "Always",
        Some((_, "latest")) => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn grace_of(pod: &Value) -> Duration {
    let g = pod["metadata"]["deletionGracePeriodSeconds"]
        .as_i64()
        .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30);
    Duration::from_secs(g.max(0) as u64)
}

fn find_spec(pod: &Value, name: &str) -> Option<Value> {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|k| pod["spec"][k].as_array())
        .flatten()
        .find(|c| c["name"] == name)
        .cloned()
}

fn all_names(pod: &Value) -> Vec<String> {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|k| pod["spec"][k].as_array())
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect()
}

fn regular_names(pod: &Value) -> Vec<String> {
    pod["spec"]["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn next_attempt(all: &[ObservedContainer], name: &str) -> u32 {
    history(all, name)
        .first()
        .map(|c| c.attempt + 1)
        .unwrap_or(0)
}

fn current_sandbox(list: &[SandboxView]) -> Option<SandboxView> {
    let mut v: Vec<&SandboxView> = list.iter().collect();
    v.sort_by(|a, b| {
        b.ready
            .cmp(&a.ready)
            .then(b.attempt.cmp(&a.attempt))
            .then(b.created_at.cmp(&a.created_at))
    });
    v.first().map(|s| (*s).clone())
}

fn sandbox_ips(st: Option<&api::PodSandboxStatus>) -> Vec<String> {
    let Some(net) = st.and_then(|s| s.network.as_ref()) else {
        return Vec::new();
    };
    let mut ips = Vec::new();
    if !net.ip.is_empty() {
        ips.push(net.ip.clone());
    }
    ips.extend(net.additional_ips.iter().map(|p| p.ip.clone()));
    ips
}

fn nanos_to_time(n: i64) -> SystemTime {
    if n <= 0 {
        return SystemTime::now();
    }
    SystemTime::UNIX_EPOCH + Duration::from_nanos(n as u64)
}

pub(crate) fn podspec_name(pod: &Value) -> String {
    format!(
        "{}_{}({})",
        pod["metadata"]["name"].as_str().unwrap_or(""),
        pod["metadata"]["namespace"].as_str().unwrap_or(""),
        pod["metadata"]["uid"].as_str().unwrap_or("")
    )
}

/// The last `lines` lines (at most `bytes` bytes) of a CRI log file, as
/// plain text.
fn log_tail(path: &str, lines: usize, bytes: usize) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let msgs: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(4, ' ');
            let _ts = parts.next()?;
            let _stream = parts.next()?;
            let _tag = parts.next()?;
            parts.next()
        })
        .collect();
    let start = msgs.len().saturating_sub(lines);
    let mut out = msgs[start..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    if out.len() > bytes {
        let cut = out.len() - bytes;
        let mut i = cut;
        while !out.is_char_boundary(i) {
            i += 1;
        }
        out = out[i..].to_owned();
    }
    out
}

/// A resolver over ConfigMaps and Secrets fetched before the config is built.
#[derive(Debug, Default)]
pub(crate) struct PrefetchedResolver {
    pub config_maps: HashMap<String, Option<BTreeMap<String, String>>>,
    pub secrets: HashMap<String, Option<BTreeMap<String, String>>>,
}

impl EnvResolver for PrefetchedResolver {
    fn config_map(
        &self,
        _namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, String> {
        Ok(self.config_maps.get(name).cloned().flatten())
    }
    fn secret(
        &self,
        _namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, String> {
        Ok(self.secrets.get(name).cloned().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_defaults_follow_the_tag() {
        assert_eq!(default_pull_policy("busybox"), "Always");
        assert_eq!(default_pull_policy("busybox:latest"), "Always");
        assert_eq!(
            default_pull_policy("kedge.local/busybox:1.36"),
            "IfNotPresent"
        );
        assert_eq!(default_pull_policy("localhost:5000/busybox"), "Always");
        assert_eq!(default_pull_policy("busybox@sha256:abcd"), "IfNotPresent");
    }

    #[test]
    fn log_tail_strips_the_cri_prefix() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("0.log");
        std::fs::write(
            &p,
            "2026-01-01T00:00:00.000000000Z stdout F one\n2026-01-01T00:00:00.000000001Z stderr F two\n",
        )
        .expect("write");
        assert_eq!(log_tail(p.to_str().unwrap(), 80, 2048), "one\ntwo\n");
        assert_eq!(log_tail(p.to_str().unwrap(), 1, 2048), "two\n");
        assert_eq!(log_tail(p.to_str().unwrap(), 80, 4), "two\n");
    }
}
