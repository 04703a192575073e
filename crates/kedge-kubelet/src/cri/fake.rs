//! An in-memory CRI runtime for unit tests.
//!
//! It keeps sandboxes, containers and images in maps and answers as containerd
//! 1.6 does where a kubelet can tell the difference: unknown ids are NotFound
//! for status and stop calls but removal is idempotent; a sandbox or container
//! name stays reserved until removal; a ready sandbox cannot be removed;
//! removing a sandbox removes its containers; creating a container needs its
//! image. Tests can script failures ([`FakeRuntime::inject_error`]), exec
//! results ([`FakeRuntime::set_exec_handler`]), container exits
//! ([`FakeRuntime::exit_container`]) and read the calls made
//! ([`FakeRuntime::calls`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tonic::Status;

use super::api::{
    AttachRequest, AuthConfig, Container, ContainerConfig, ContainerFilter, ContainerMetadata,
    ContainerState, ContainerStatus, ContainerStatusResponse, ExecRequest, ExecSyncResponse, Image,
    ImageFilter, ImageSpec, NamespaceMode, PodSandbox, PodSandboxConfig, PodSandboxFilter,
    PodSandboxMetadata, PodSandboxNetworkStatus, PodSandboxState, PodSandboxStatus,
    PodSandboxStatusResponse, PortForwardRequest, RuntimeCondition, RuntimeStatus, VersionResponse,
};
use super::{normalize_image_ref, CriError, ImageService, Result, RuntimeService};

/// Answers `ExecSync` in the fake: `(container id, command) -> response`.
pub type ExecHandler = Arc<dyn Fn(&str, &[String]) -> ExecSyncResponse + Send + Sync>;

/// The in-memory runtime. Clones share state.
#[derive(Clone, Default)]
pub struct FakeRuntime {
    state: Arc<Mutex<FakeState>>,
}

impl std::fmt::Debug for FakeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("FakeRuntime")
            .field("sandboxes", &state.sandboxes.len())
            .field("containers", &state.containers.len())
            .field("images", &state.images.len())
            .finish()
    }
}

#[derive(Default)]
struct FakeState {
    next_id: u64,
    sandboxes: BTreeMap<String, FakeSandbox>,
    containers: BTreeMap<String, FakeContainer>,
    /// Image id -> image.
    images: BTreeMap<String, Image>,
    importable: HashMap<PathBuf, Vec<String>>,
    /// The sandbox image every RunPodSandbox needs, if set.
    sandbox_image: Option<String>,
    calls: Vec<&'static str>,
    injected: HashMap<&'static str, VecDeque<Status>>,
    exec: Option<ExecHandler>,
}

struct FakeSandbox {
    config: PodSandboxConfig,
    runtime_handler: String,
    ready: bool,
    created_at: i64,
    ip: String,
}

struct FakeContainer {
    sandbox_id: String,
    config: ContainerConfig,
    image_id: String,
    state: ContainerState,
    created_at: i64,
    started_at: i64,
    finished_at: i64,
    exit_code: i32,
    reason: String,
    log_path: String,
}

impl FakeRuntime {
    pub fn new() -> FakeRuntime {
        FakeRuntime::default()
    }

    /// Make every RunPodSandbox need `image` present, as containerd does with
    /// its `sandbox_image` (which kedge never lets it pull).
    pub fn require_sandbox_image(&self, image: &str) {
        self.lock().sandbox_image = Some(normalize_image_ref(image));
    }

    /// Add an image (as if pulled or imported); returns its id.
    pub fn add_image(&self, name: &str) -> String {
        self.lock().add_image(name)
    }

    /// Let [`ImageService::import_image`] of `tarball` add `names`.
    pub fn add_importable(&self, tarball: impl Into<PathBuf>, names: &[&str]) {
        self.lock().importable.insert(
            tarball.into(),
            names.iter().map(|n| (*n).to_owned()).collect(),
        );
    }

    /// Fail the next call of `method` (a CRI method name such as
    /// `"RunPodSandbox"`) with `status`. Several injections queue up.
    pub fn inject_error(&self, method: &'static str, status: Status) {
        self.lock()
            .injected
            .entry(method)
            .or_default()
            .push_back(status);
    }

    /// Answer ExecSync with `handler` instead of the default (exit 0, stdout
    /// the arguments after `echo` when the command is `echo …`, else empty).
    pub fn set_exec_handler(&self, handler: ExecHandler) {
        self.lock().exec = Some(handler);
    }

    /// Make a running container exit now, as if its process ended.
    pub fn exit_container(&self, container_id: &str, exit_code: i32, reason: &str) -> bool {
        let mut state = self.lock();
        let Some(c) = state.containers.get_mut(container_id) else {
            return false;
        };
        c.state = ContainerState::ContainerExited;
        c.finished_at = now_nanos();
        c.exit_code = exit_code;
        c.reason = reason.to_owned();
        true
    }

    /// The CRI methods called so far, in order.
    pub fn calls(&self) -> Vec<&'static str> {
        self.lock().calls.clone()
    }

    /// Forget the recorded calls.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        // A test that panicked while holding the lock leaves usable state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Record the call, then fail it if an error was injected for it.
    fn enter(&self, method: &'static str) -> Result<MutexGuard<'_, FakeState>> {
        let mut state = self.lock();
        state.calls.push(method);
        if let Some(status) = state.injected.get_mut(method).and_then(VecDeque::pop_front) {
            return Err(CriError::rpc(method, status));
        }
        Ok(state)
    }
}

impl FakeState {
    /// 64 hex digits like containerd's ids, distinct in their first digits
    /// (so tests can use truncated ids), deterministic across runs.
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        (0..4u64)
            .map(|i| {
                format!(
                    "{:016x}",
                    splitmix64(self.next_id.wrapping_mul(4).wrapping_add(i))
                )
            })
            .collect()
    }

    fn add_image(&mut self, name: &str) -> String {
        let name = normalize_image_ref(name);
        if let Some(image) = self.find_image(&name) {
            return image.id.clone();
        }
        let id = format!("sha256:{}", self.new_id());
        let (repo_tags, repo_digests) = if name.contains('@') {
            (Vec::new(), vec![name.clone()])
        } else {
            (vec![name.clone()], Vec::new())
        };
        self.images.insert(
            id.clone(),
            Image {
                id: id.clone(),
                repo_tags,
                repo_digests,
                size: 1024 * 1024,
                ..Image::default()
            },
        );
        id
    }

    /// By id, tag or digest, the name normalised as containerd does.
    fn find_image(&self, reference: &str) -> Option<&Image> {
        if let Some(image) = self.images.get(reference) {
            return Some(image);
        }
        let name = normalize_image_ref(reference);
        self.images.values().find(|image| {
            image.repo_tags.contains(&name)
                || image.repo_digests.contains(&name)
                || image.id.strip_prefix("sha256:") == Some(reference)
        })
    }

    fn sandbox(&self, method: &'static str, id: &str) -> Result<(&String, &FakeSandbox)> {
        find_by_id(&self.sandboxes, id).ok_or_else(|| {
            not_found(
                method,
                &format!("an error occurred when try to find sandbox {id:?}: not found"),
            )
        })
    }

    fn container_id(&self, method: &'static str, id: &str) -> Result<String> {
        find_by_id(&self.containers, id)
            .map(|(full, _)| full.clone())
            .ok_or_else(|| {
                not_found(
                    method,
                    &format!("an error occurred when try to find container {id:?}: not found"),
                )
            })
    }

    fn container_status(&self, id: &str, c: &FakeContainer) -> ContainerStatus {
        let image_name = c
            .config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        ContainerStatus {
            id: id.to_owned(),
            metadata: c.config.metadata.clone(),
            state: c.state as i32,
            created_at: c.created_at,
            started_at: c.started_at,
            finished_at: c.finished_at,
            exit_code: c.exit_code,
            image: Some(ImageSpec {
                image: image_name,
                ..ImageSpec::default()
            }),
            image_ref: c.image_id.clone(),
            image_id: c.image_id.clone(),
            reason: c.reason.clone(),
            labels: c.config.labels.clone(),
            annotations: c.config.annotations.clone(),
            mounts: c.config.mounts.clone(),
            log_path: c.log_path.clone(),
            ..ContainerStatus::default()
        }
    }

    fn stop_container(&mut self, id: &str) {
        if let Some(c) = self.containers.get_mut(id) {
            if c.state == ContainerState::ContainerRunning {
                c.state = ContainerState::ContainerExited;
                c.finished_at = now_nanos();
                // What a SIGKILL leaves: 128 + 9.
                c.exit_code = 137;
                c.reason = "Error".to_owned();
            }
        }
    }
}

fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Exact id, or a unique prefix of one (containerd accepts truncated ids).
fn find_by_id<'a, V>(map: &'a BTreeMap<String, V>, id: &str) -> Option<(&'a String, &'a V)> {
    if id.is_empty() {
        return None;
    }
    if let Some(entry) = map.get_key_value(id) {
        return Some(entry);
    }
    let mut matches = map.iter().filter(|(k, _)| k.starts_with(id));
    match (matches.next(), matches.next()) {
        (Some(entry), None) => Some(entry),
        _ => None,
    }
}

fn not_found(method: &'static str, message: &str) -> CriError {
    CriError::rpc(method, Status::not_found(message))
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn labels_match(labels: &HashMap<String, String>, selector: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn sandbox_key(meta: &PodSandboxMetadata) -> String {
    format!(
        "{}_{}_{}_{}",
        meta.name, meta.namespace, meta.uid, meta.attempt
    )
}

fn container_key(meta: &ContainerMetadata, sandbox: &PodSandboxMetadata) -> String {
    format!("{}_{}_{}", meta.name, sandbox_key(sandbox), meta.attempt)
}

impl RuntimeService for FakeRuntime {
    async fn version(&self) -> Result<VersionResponse> {
        let _state = self.enter("Version")?;
        Ok(VersionResponse {
            version: "0.1.0".to_owned(),
            runtime_name: "fake".to_owned(),
            runtime_version: "0.1.0".to_owned(),
            runtime_api_version: "v1".to_owned(),
        })
    }

    async fn run_pod_sandbox(
        &self,
        config: PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<String> {
        const M: &str = "RunPodSandbox";
        let mut state = self.enter(M)?;
        let meta = config.metadata.clone().ok_or_else(|| {
            CriError::rpc(
                M,
                Status::invalid_argument("sandbox config must include metadata"),
            )
        })?;
        let key = sandbox_key(&meta);
        if let Some((id, _)) = state
            .sandboxes
            .iter()
            .find(|(_, s)| s.config.metadata.as_ref().map(sandbox_key).as_deref() == Some(&key))
        {
            return Err(CriError::rpc(
                M,
                Status::already_exists(format!(
                    "failed to reserve sandbox name {key:?}: name {key:?} is reserved for {id:?}"
                )),
            ));
        }
        if let Some(image) = state.sandbox_image.clone() {
            if state.find_image(&image).is_none() {
                return Err(CriError::rpc(
                    M,
                    Status::unknown(format!("failed to get sandbox image {image:?}: not found")),
                ));
            }
        }
        let host_network = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .is_some_and(|n| n.network == NamespaceMode::Node as i32);
        let id = state.new_id();
        let ip = if host_network {
            String::new()
        } else {
            format!(
                "10.88.{}.{}",
                (state.next_id / 250) % 256,
                state.next_id % 250 + 2
            )
        };
        state.sandboxes.insert(
            id.clone(),
            FakeSandbox {
                config,
                runtime_handler: runtime_handler.to_owned(),
                ready: true,
                created_at: now_nanos(),
                ip,
            },
        );
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        const M: &str = "StopPodSandbox";
        let mut state = self.enter(M)?;
        let id = state.sandbox(M, sandbox_id)?.0.clone();
        let members: Vec<String> = state
            .containers
            .iter()
            .filter(|(_, c)| c.sandbox_id == id)
            .map(|(cid, _)| cid.clone())
            .collect();
        for cid in members {
            state.stop_container(&cid);
        }
        if let Some(sandbox) = state.sandboxes.get_mut(&id) {
            sandbox.ready = false;
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        const M: &str = "RemovePodSandbox";
        let mut state = self.enter(M)?;
        let Ok((id, sandbox)) = state.sandbox(M, sandbox_id) else {
            return Ok(()); // idempotent, as containerd
        };
        if sandbox.ready {
            return Err(CriError::rpc(
                M,
                Status::unknown(format!("sandbox container {id:?} is not fully stopped")),
            ));
        }
        let id = id.clone();
        state.containers.retain(|_, c| c.sandbox_id != id);
        state.sandboxes.remove(&id);
        Ok(())
    }

    async fn pod_sandbox_status(
        &self,
        sandbox_id: &str,
        _verbose: bool,
    ) -> Result<PodSandboxStatusResponse> {
        const M: &str = "PodSandboxStatus";
        let state = self.enter(M)?;
        let (id, s) = state.sandbox(M, sandbox_id)?;
        let status = PodSandboxStatus {
            id: id.clone(),
            metadata: s.config.metadata.clone(),
            state: if s.ready {
                PodSandboxState::SandboxReady as i32
            } else {
                PodSandboxState::SandboxNotready as i32
            },
            created_at: s.created_at,
            network: Some(PodSandboxNetworkStatus {
                ip: if s.ready { s.ip.clone() } else { String::new() },
                additional_ips: Vec::new(),
            }),
            labels: s.config.labels.clone(),
            annotations: s.config.annotations.clone(),
            runtime_handler: s.runtime_handler.clone(),
            ..PodSandboxStatus::default()
        };
        Ok(PodSandboxStatusResponse {
            status: Some(status),
            timestamp: now_nanos(),
            ..PodSandboxStatusResponse::default()
        })
    }

    async fn list_pod_sandbox(&self, filter: Option<PodSandboxFilter>) -> Result<Vec<PodSandbox>> {
        let state = self.enter("ListPodSandbox")?;
        let filter = filter.unwrap_or_default();
        Ok(state
            .sandboxes
            .iter()
            .filter(|(id, _)| filter.id.is_empty() || id.starts_with(&filter.id))
            .filter(|(_, s)| {
                let st = if s.ready {
                    PodSandboxState::SandboxReady
                } else {
                    PodSandboxState::SandboxNotready
                };
                filter.state.as_ref().is_none_or(|f| f.state == st as i32)
            })
            .filter(|(_, s)| labels_match(&s.config.labels, &filter.label_selector))
            .map(|(id, s)| PodSandbox {
                id: id.clone(),
                metadata: s.config.metadata.clone(),
                state: if s.ready {
                    PodSandboxState::SandboxReady as i32
                } else {
                    PodSandboxState::SandboxNotready as i32
                },
                created_at: s.created_at,
                labels: s.config.labels.clone(),
                annotations: s.config.annotations.clone(),
                runtime_handler: s.runtime_handler.clone(),
            })
            .collect())
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
        _sandbox_config: PodSandboxConfig,
    ) -> Result<String> {
        const M: &str = "CreateContainer";
        let mut state = self.enter(M)?;
        let (sid, sandbox) = state.sandbox(M, sandbox_id)?;
        let sid = sid.clone();
        if !sandbox.ready {
            return Err(CriError::rpc(
                M,
                Status::unknown(format!("sandbox {sid:?} is not ready")),
            ));
        }
        let sandbox_meta = sandbox.config.metadata.clone().unwrap_or_default();
        let log_dir = sandbox.config.log_directory.clone();
        let meta = config.metadata.clone().ok_or_else(|| {
            CriError::rpc(
                M,
                Status::invalid_argument("container config must include metadata"),
            )
        })?;
        let key = container_key(&meta, &sandbox_meta);
        let taken = state.containers.iter().find(|(_, c)| {
            c.sandbox_id == sid
                && c.config
                    .metadata
                    .as_ref()
                    .map(|m| container_key(m, &sandbox_meta))
                    .as_deref()
                    == Some(&key)
        });
        if let Some((id, _)) = taken {
            return Err(CriError::rpc(
                M,
                Status::already_exists(format!(
                    "failed to reserve container name {key:?}: name {key:?} is reserved for {id:?}"
                )),
            ));
        }
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        let image_id = state
            .find_image(&image_name)
            .map(|i| i.id.clone())
            .ok_or_else(|| {
                not_found(M, &format!("failed to get image {image_name:?}: not found"))
            })?;
        let log_path = if config.log_path.is_empty() || log_dir.is_empty() {
            String::new()
        } else {
            Path::new(&log_dir)
                .join(&config.log_path)
                .display()
                .to_string()
        };
        let id = state.new_id();
        state.containers.insert(
            id.clone(),
            FakeContainer {
                sandbox_id: sid,
                config,
                image_id,
                state: ContainerState::ContainerCreated,
                created_at: now_nanos(),
                started_at: 0,
                finished_at: 0,
                exit_code: 0,
                reason: String::new(),
                log_path,
            },
        );
        Ok(id)
    }

    async fn start_container(&self, container_id: &str) -> Result<()> {
        const M: &str = "StartContainer";
        let mut state = self.enter(M)?;
        let id = state.container_id(M, container_id)?;
        let Some(c) = state.containers.get_mut(&id) else {
            return Err(not_found(M, &id));
        };
        if c.state != ContainerState::ContainerCreated {
            return Err(CriError::rpc(
                M,
                Status::unknown(format!(
                    "container {id:?} is in {} state",
                    c.state.as_str_name()
                )),
            ));
        }
        c.state = ContainerState::ContainerRunning;
        c.started_at = now_nanos();
        Ok(())
    }

    async fn stop_container(&self, container_id: &str, _timeout: Duration) -> Result<()> {
        const M: &str = "StopContainer";
        let mut state = self.enter(M)?;
        let id = state.container_id(M, container_id)?;
        state.stop_container(&id);
        Ok(())
    }

    async fn remove_container(&self, container_id: &str) -> Result<()> {
        const M: &str = "RemoveContainer";
        let mut state = self.enter(M)?;
        if let Ok(id) = state.container_id(M, container_id) {
            state.containers.remove(&id);
        }
        Ok(())
    }

    async fn container_status(
        &self,
        container_id: &str,
        _verbose: bool,
    ) -> Result<ContainerStatusResponse> {
        const M: &str = "ContainerStatus";
        let state = self.enter(M)?;
        let id = state.container_id(M, container_id)?;
        let c = state.containers.get(&id).ok_or_else(|| not_found(M, &id))?;
        Ok(ContainerStatusResponse {
            status: Some(state.container_status(&id, c)),
            ..ContainerStatusResponse::default()
        })
    }

    async fn list_containers(&self, filter: Option<ContainerFilter>) -> Result<Vec<Container>> {
        let state = self.enter("ListContainers")?;
        let filter = filter.unwrap_or_default();
        Ok(state
            .containers
            .iter()
            .filter(|(id, _)| filter.id.is_empty() || id.starts_with(&filter.id))
            .filter(|(_, c)| {
                filter.pod_sandbox_id.is_empty() || c.sandbox_id.starts_with(&filter.pod_sandbox_id)
            })
            .filter(|(_, c)| {
                filter
                    .state
                    .as_ref()
                    .is_none_or(|f| f.state == c.state as i32)
            })
            .filter(|(_, c)| labels_match(&c.config.labels, &filter.label_selector))
            .map(|(id, c)| Container {
                id: id.clone(),
                pod_sandbox_id: c.sandbox_id.clone(),
                metadata: c.config.metadata.clone(),
                image: c.config.image.clone(),
                image_ref: c.image_id.clone(),
                image_id: c.image_id.clone(),
                state: c.state as i32,
                created_at: c.created_at,
                labels: c.config.labels.clone(),
                annotations: c.config.annotations.clone(),
            })
            .collect())
    }

    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        _timeout: Duration,
    ) -> Result<ExecSyncResponse> {
        const M: &str = "ExecSync";
        let (id, handler) = {
            let state = self.enter(M)?;
            let id = state.container_id(M, container_id)?;
            let running = state
                .containers
                .get(&id)
                .is_some_and(|c| c.state == ContainerState::ContainerRunning);
            if !running {
                return Err(CriError::rpc(
                    M,
                    Status::unknown(format!("container {id:?} is not running")),
                ));
            }
            (id, state.exec.clone())
        };
        // The handler runs without the lock, so it may call the fake itself.
        Ok(match handler {
            Some(handler) => handler(&id, &cmd),
            None => default_exec(&cmd),
        })
    }

    async fn status(&self) -> Result<RuntimeStatus> {
        let _state = self.enter("Status")?;
        let ready = |t: &str| RuntimeCondition {
            r#type: t.to_owned(),
            status: true,
            reason: String::new(),
            message: String::new(),
        };
        Ok(RuntimeStatus {
            conditions: vec![ready("RuntimeReady"), ready("NetworkReady")],
        })
    }

    async fn exec(&self, request: ExecRequest) -> Result<String> {
        const M: &str = "Exec";
        let state = self.enter(M)?;
        let id = state.container_id(M, &request.container_id)?;
        Ok(format!("http://fake.invalid/exec/{id}"))
    }

    async fn attach(&self, request: AttachRequest) -> Result<String> {
        const M: &str = "Attach";
        let state = self.enter(M)?;
        let id = state.container_id(M, &request.container_id)?;
        Ok(format!("http://fake.invalid/attach/{id}"))
    }

    async fn port_forward(&self, request: PortForwardRequest) -> Result<String> {
        const M: &str = "PortForward";
        let state = self.enter(M)?;
        let (id, _) = state.sandbox(M, &request.pod_sandbox_id)?;
        Ok(format!("http://fake.invalid/portforward/{id}"))
    }

    async fn reopen_container_log(&self, container_id: &str) -> Result<()> {
        const M: &str = "ReopenContainerLog";
        let state = self.enter(M)?;
        state.container_id(M, container_id)?;
        Ok(())
    }
}

fn default_exec(cmd: &[String]) -> ExecSyncResponse {
    let stdout = match cmd.split_first() {
        Some((program, args)) if program == "echo" => format!("{}\n", args.join(" ")).into_bytes(),
        _ => Vec::new(),
    };
    ExecSyncResponse {
        stdout,
        stderr: Vec::new(),
        exit_code: 0,
    }
}

impl ImageService for FakeRuntime {
    async fn list_images(&self, filter: Option<ImageFilter>) -> Result<Vec<Image>> {
        let state = self.enter("ListImages")?;
        let wanted = filter
            .and_then(|f| f.image)
            .map(|spec| spec.image)
            .filter(|name| !name.is_empty());
        Ok(match wanted {
            Some(name) => state.find_image(&name).cloned().into_iter().collect(),
            None => state.images.values().cloned().collect(),
        })
    }

    async fn image_status(&self, image: ImageSpec, _verbose: bool) -> Result<Option<Image>> {
        let state = self.enter("ImageStatus")?;
        Ok(state.find_image(&image.image).cloned())
    }

    async fn pull_image(
        &self,
        image: ImageSpec,
        _auth: Option<AuthConfig>,
        _sandbox_config: Option<PodSandboxConfig>,
    ) -> Result<String> {
        let mut state = self.enter("PullImage")?;
        Ok(state.add_image(&image.image))
    }

    async fn remove_image(&self, image: ImageSpec) -> Result<()> {
        let mut state = self.enter("RemoveImage")?;
        if let Some(id) = state.find_image(&image.image).map(|i| i.id.clone()) {
            state.images.remove(&id);
        }
        Ok(())
    }

    async fn import_image(&self, tarball: &Path) -> Result<Vec<String>> {
        let mut state = self.enter("ImportImage")?;
        let names = state
            .importable
            .get(tarball)
            .cloned()
            .ok_or_else(|| CriError::FakeImport {
                tarball: tarball.to_owned(),
            })?;
        for name in &names {
            state.add_image(name);
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::api::{
        ContainerStateValue, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceOption,
        PodSandboxStateValue,
    };
    use crate::cri::image_spec;

    fn sandbox_config(name: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.to_owned(),
                namespace: "default".to_owned(),
                uid: format!("uid-{name}"),
                attempt: 0,
            }),
            log_directory: format!("/var/log/pods/default_{name}_uid-{name}"),
            labels: HashMap::from([("app".to_owned(), name.to_owned())]),
            ..PodSandboxConfig::default()
        }
    }

    fn container_config(name: &str, image: &str) -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.to_owned(),
                attempt: 0,
            }),
            image: Some(image_spec(image)),
            command: vec!["sh".to_owned()],
            log_path: format!("{name}/0.log"),
            ..ContainerConfig::default()
        }
    }

    #[tokio::test]
    async fn a_whole_pod_lifecycle() {
        let cri = FakeRuntime::new();
        cri.require_sandbox_image("kedge.local/pause:3.10");
        cri.add_importable("/images/pause.tar", &["kedge.local/pause:3.10"]);
        cri.add_image("busybox:1.36");

        let err = cri
            .run_pod_sandbox(sandbox_config("web"), "")
            .await
            .expect_err("no pause image yet");
        assert!(err.to_string().contains("sandbox image"), "{err}");
        assert_eq!(
            cri.import_image(Path::new("/images/pause.tar"))
                .await
                .expect("import"),
            vec!["kedge.local/pause:3.10"]
        );

        let config = sandbox_config("web");
        let sid = cri.run_pod_sandbox(config.clone(), "").await.expect("run");
        let status = cri.pod_sandbox_status(&sid, false).await.expect("status");
        let status = status.status.expect("status field");
        assert_eq!(status.state, PodSandboxState::SandboxReady as i32);
        assert!(status.network.expect("network").ip.starts_with("10.88."));

        let cid = cri
            .create_container(
                &sid,
                container_config("app", "docker.io/library/busybox:1.36"),
                config.clone(),
            )
            .await
            .expect("create");
        cri.start_container(&cid).await.expect("start");
        let st = cri
            .container_status(&cid, false)
            .await
            .expect("status")
            .status
            .expect("status");
        assert_eq!(st.state, ContainerState::ContainerRunning as i32);
        assert_eq!(st.log_path, "/var/log/pods/default_web_uid-web/app/0.log");
        assert!(st.started_at > 0);

        let out = cri
            .exec_sync(
                &cid,
                vec!["echo".into(), "ok".into()],
                Duration::from_secs(5),
            )
            .await
            .expect("exec");
        assert_eq!(out.stdout, b"ok\n");
        assert_eq!(out.exit_code, 0);

        cri.stop_container(&cid, Duration::from_secs(1))
            .await
            .expect("stop");
        let st = cri
            .container_status(&cid, false)
            .await
            .expect("status")
            .status
            .expect("status");
        assert_eq!(st.state, ContainerState::ContainerExited as i32);
        assert_eq!(st.exit_code, 137);
        cri.remove_container(&cid).await.expect("remove");
        assert!(cri
            .container_status(&cid, false)
            .await
            .expect_err("gone")
            .is_not_found());
        // Idempotent removal.
        cri.remove_container(&cid).await.expect("remove again");

        let err = cri.remove_pod_sandbox(&sid).await.expect_err("still ready");
        assert!(err.to_string().contains("not fully stopped"), "{err}");
        cri.stop_pod_sandbox(&sid).await.expect("stop sandbox");
        cri.stop_pod_sandbox(&sid)
            .await
            .expect("stop sandbox again");
        cri.remove_pod_sandbox(&sid).await.expect("remove sandbox");
        cri.remove_pod_sandbox(&sid)
            .await
            .expect("remove sandbox again");
        assert!(cri
            .stop_pod_sandbox(&sid)
            .await
            .expect_err("gone")
            .is_not_found());
        assert!(cri.list_pod_sandbox(None).await.expect("list").is_empty());
        assert!(cri.list_containers(None).await.expect("list").is_empty());

        let calls = cri.calls();
        assert_eq!(calls.first(), Some(&"RunPodSandbox"));
        assert!(calls.contains(&"ExecSync"));
    }

    #[tokio::test]
    async fn names_stay_reserved_until_removal() {
        let cri = FakeRuntime::new();
        cri.add_image("busybox");
        let config = sandbox_config("a");
        let sid = cri.run_pod_sandbox(config.clone(), "").await.expect("run");
        let err = cri
            .run_pod_sandbox(config.clone(), "")
            .await
            .expect_err("dup");
        assert_eq!(err.code(), Some(tonic::Code::AlreadyExists));
        cri.create_container(&sid, container_config("c", "busybox"), config.clone())
            .await
            .expect("create");
        let err = cri
            .create_container(&sid, container_config("c", "busybox"), config.clone())
            .await
            .expect_err("dup");
        assert_eq!(err.code(), Some(tonic::Code::AlreadyExists));
        // Another attempt is another name.
        let mut retry = config.clone();
        if let Some(meta) = retry.metadata.as_mut() {
            meta.attempt = 1;
        }
        cri.run_pod_sandbox(retry, "").await.expect("attempt 1");
        // Removing the sandbox removes its containers and frees the name.
        cri.stop_pod_sandbox(&sid).await.expect("stop");
        cri.remove_pod_sandbox(&sid).await.expect("remove");
        assert!(cri
            .list_containers(Some(ContainerFilter {
                pod_sandbox_id: sid.clone(),
                ..ContainerFilter::default()
            }))
            .await
            .expect("list")
            .is_empty());
        cri.run_pod_sandbox(config, "")
            .await
            .expect("name free again");
    }

    #[tokio::test]
    async fn filters_select_by_state_labels_and_id_prefix() {
        let cri = FakeRuntime::new();
        cri.add_image("busybox");
        let a = cri
            .run_pod_sandbox(sandbox_config("a"), "")
            .await
            .expect("a");
        let b = cri
            .run_pod_sandbox(sandbox_config("b"), "")
            .await
            .expect("b");
        cri.stop_pod_sandbox(&b).await.expect("stop b");
        let ready = cri
            .list_pod_sandbox(Some(PodSandboxFilter {
                state: Some(PodSandboxStateValue {
                    state: PodSandboxState::SandboxReady as i32,
                }),
                ..PodSandboxFilter::default()
            }))
            .await
            .expect("list");
        assert_eq!(
            ready.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            [a.as_str()]
        );
        let by_label = cri
            .list_pod_sandbox(Some(PodSandboxFilter {
                label_selector: HashMap::from([("app".to_owned(), "b".to_owned())]),
                ..PodSandboxFilter::default()
            }))
            .await
            .expect("list");
        assert_eq!(by_label.len(), 1);
        assert_eq!(by_label[0].id, b);
        // Truncated ids work where they are unique.
        assert_eq!(a.len(), 64);
        let short = &a[..12];
        let status = cri
            .pod_sandbox_status(short, false)
            .await
            .expect("by prefix");
        assert_eq!(status.status.expect("status").id, a);

        let cid = cri
            .create_container(&a, container_config("c", "busybox"), sandbox_config("a"))
            .await
            .expect("create");
        let created = cri
            .list_containers(Some(ContainerFilter {
                state: Some(ContainerStateValue {
                    state: ContainerState::ContainerCreated as i32,
                }),
                ..ContainerFilter::default()
            }))
            .await
            .expect("list");
        assert_eq!(created.len(), 1);
        assert_eq!(created[0].id, cid);
        // Stopped sandboxes take no new containers.
        let err = cri
            .create_container(&b, container_config("c", "busybox"), sandbox_config("b"))
            .await
            .expect_err("not ready");
        assert!(err.to_string().contains("not ready"), "{err}");
    }

    #[tokio::test]
    async fn host_network_sandboxes_have_no_pod_ip() {
        let cri = FakeRuntime::new();
        let mut config = sandbox_config("h");
        config.linux = Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    ..NamespaceOption::default()
                }),
                ..LinuxSandboxSecurityContext::default()
            }),
            ..LinuxPodSandboxConfig::default()
        });
        let sid = cri.run_pod_sandbox(config, "").await.expect("run");
        let status = cri.pod_sandbox_status(&sid, false).await.expect("status");
        assert_eq!(status.status.expect("status").network.expect("net").ip, "");
    }

    #[tokio::test]
    async fn images_pull_list_remove_and_missing_image_errors() {
        let cri = FakeRuntime::new();
        assert!(cri
            .image_status(image_spec("busybox"), false)
            .await
            .expect("status")
            .is_none());
        let sid = cri
            .run_pod_sandbox(sandbox_config("p"), "")
            .await
            .expect("run");
        let err = cri
            .create_container(&sid, container_config("c", "busybox"), sandbox_config("p"))
            .await
            .expect_err("no image");
        assert!(err.is_not_found(), "{err}");

        let id = cri
            .pull_image(image_spec("busybox"), None, None)
            .await
            .expect("pull");
        let image = cri
            .image_status(image_spec("docker.io/library/busybox:latest"), false)
            .await
            .expect("status")
            .expect("present");
        assert_eq!(image.id, id);
        assert_eq!(cri.list_images(None).await.expect("list").len(), 1);
        let filtered = cri
            .list_images(Some(ImageFilter {
                image: Some(image_spec("other")),
            }))
            .await
            .expect("list");
        assert!(filtered.is_empty());
        cri.remove_image(image_spec(&id))
            .await
            .expect("remove by id");
        cri.remove_image(image_spec("busybox"))
            .await
            .expect("idempotent");
        assert!(cri.list_images(None).await.expect("list").is_empty());

        let err = cri
            .import_image(Path::new("/nowhere.tar"))
            .await
            .expect_err("unknown tarball");
        assert!(matches!(err, CriError::FakeImport { .. }));
    }

    #[tokio::test]
    async fn injected_errors_fail_the_next_call_only() {
        let cri = FakeRuntime::new();
        cri.inject_error("PullImage", Status::unavailable("registry down"));
        let err = cri
            .pull_image(image_spec("busybox"), None, None)
            .await
            .expect_err("injected");
        assert_eq!(err.code(), Some(tonic::Code::Unavailable));
        cri.pull_image(image_spec("busybox"), None, None)
            .await
            .expect("second try");
        assert_eq!(cri.calls(), ["PullImage", "PullImage"]);
        cri.clear_calls();
        assert!(cri.calls().is_empty());
    }

    #[tokio::test]
    async fn exec_handler_and_exits_are_scriptable() {
        let cri = FakeRuntime::new();
        cri.add_image("busybox");
        let config = sandbox_config("x");
        let sid = cri.run_pod_sandbox(config.clone(), "").await.expect("run");
        let cid = cri
            .create_container(&sid, container_config("c", "busybox"), config)
            .await
            .expect("create");
        let err = cri
            .exec_sync(&cid, vec!["true".into()], Duration::ZERO)
            .await
            .expect_err("not running");
        assert!(err.to_string().contains("not running"), "{err}");
        cri.start_container(&cid).await.expect("start");
        assert!(cri.start_container(&cid).await.is_err(), "start twice");
        cri.set_exec_handler(Arc::new(|_, cmd| ExecSyncResponse {
            stdout: Vec::new(),
            stderr: format!("{} failed\n", cmd.join(" ")).into_bytes(),
            exit_code: 3,
        }));
        let out = cri
            .exec_sync(&cid, vec!["false".into()], Duration::ZERO)
            .await
            .expect("exec");
        assert_eq!(out.exit_code, 3);
        assert_eq!(out.stderr, b"false failed\n");

        assert!(cri.exit_container(&cid, 1, "Error"));
        let st = cri
            .container_status(&cid, false)
            .await
            .expect("status")
            .status
            .expect("st");
        assert_eq!(st.state, ContainerState::ContainerExited as i32);
        assert_eq!((st.exit_code, st.reason.as_str()), (1, "Error"));
        assert!(!cri.exit_container("nope", 1, "Error"));
    }

    #[tokio::test]
    async fn version_answers() {
        let cri = FakeRuntime::new();
        let v = cri.version().await.expect("version");
        assert_eq!(v.runtime_api_version, "v1");
        assert!(format!("{cri:?}").contains("FakeRuntime"));
    }
}
