//! Pod volumes, as upstream's kubelet sets them up (`pkg/volume/{emptydir,
//! configmap,secret,downwardapi,projected,hostpath}`), and the pod's
//! `/etc/hosts`.
//!
//! Layout, as upstream's: `<pods-root>/<pod-uid>/volumes/kubernetes.io~<plugin>/<volume>`
//! (`empty-dir`, `configmap`, `secret`, `downward-api`, `projected`), with
//! per-volume state under `<pods-root>/<pod-uid>/plugins/` and the managed
//! hosts file at `<pods-root>/<pod-uid>/etc-hosts`. hostPath volumes are the
//! host path itself.
//!
//! [`VolumeManager::setup`] is idempotent and is meant to be called again
//! (periodically and on pod updates): each call re-reads ConfigMaps and
//! Secrets, re-renders downward API files and refreshes service account
//! tokens when due, and republishes a volume only when its content changed,
//! through the atomic writer ([`atomic_writer`]), so running containers see
//! each update at once.
//!
//! Secret, downwardAPI and projected volumes live on tmpfs as upstream's do
//! (their wrapped emptyDir has medium Memory), so secrets never reach the
//! disk; configMap volumes are plain directories.
//!
//! Not done here, and why:
//! - emptyDir `sizeLimit` on disk is not enforced (upstream enforces it by
//!   evicting the pod); for medium Memory it sizes the tmpfs.
//! - emptyDir medium HugePages, persistentVolumeClaim, ephemeral, csi, image
//!   and the in-tree network volumes answer [`VolumeError::Unsupported`] (or
//!   a SetUp error for HugePages); projected clusterTrustBundle and
//!   podCertificate sources fail their volume.
//! - fsGroupChangePolicy: upstream passes no policy to these plugins (every
//!   walk is full); kedge honours `OnRootMismatch` for emptyDir, where it
//!   gives the same result since the walk happens once, at creation.

mod atomic_writer;
mod etc_hosts;
mod host;
mod host_path;
mod payload;
mod source;
mod token;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde_json::Value;

use crate::podspec::{Quantity, ResolvedVolume};

pub use etc_hosts::{
    managed_hosts_content, manages_etc_hosts, pod_host_name_and_domain, write_etc_hosts,
};
pub use source::{
    IssuedToken, KubeObjectSource, MemoryObjectSource, ObjectSource, TokenRequestRecord,
};

use payload::{FileProjection, Payload};
use token::{TokenCache, TokenRequest};

/// Wall-clock time, injectable for tests (token refresh).
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

const EMPTY_DIR: &str = "kubernetes.io~empty-dir";
const CONFIG_MAP: &str = "kubernetes.io~configmap";
const SECRET: &str = "kubernetes.io~secret";
const DOWNWARD_API: &str = "kubernetes.io~downward-api";
const PROJECTED: &str = "kubernetes.io~projected";

/// upstream's default `defaultMode` (0644) for configMap, secret,
/// downwardAPI and projected volumes.
const DEFAULT_MODE: u32 = 0o644;
/// `expirationSeconds` of a projected token when unset.
const DEFAULT_TOKEN_EXPIRATION_SECONDS: i64 = 3600;

/// Errors of volume setup and teardown.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A volume could not be set up; the text is upstream's FailedMount
    /// event message.
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {reason}")]
    SetUp { volume: String, reason: String },
    /// A volume type the agent does not implement.
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : unsupported volume type {kind}")]
    Unsupported { volume: String, kind: String },
    /// Several volumes failed; each is one of the variants above.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several(Vec<VolumeError>),
    #[error("invalid pod: {0}")]
    InvalidPod(String),
    #[error("cannot unmount {path}: {source}")]
    Unmount {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{mount} is still mounted; not removing {pod_dir}")]
    StillMounted { mount: PathBuf, pod_dir: PathBuf },
    #[error("cannot remove {path}: {source}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("volume work failed to complete: {0}")]
    Task(String),
}

impl VolumeError {
    /// The volume this error is about, if it is about one.
    pub fn volume(&self) -> Option<&str> {
        match self {
            VolumeError::SetUp { volume, .. } | VolumeError::Unsupported { volume, .. } => {
                Some(volume)
            }
            _ => None,
        }
    }

    /// One error per failed volume (for one FailedMount event each).
    pub fn per_volume(&self) -> Vec<&VolumeError> {
        match self {
            VolumeError::Several(v) => v.iter().flat_map(VolumeError::per_volume).collect(),
            other => vec![other],
        }
    }
}

/// What volume setup needs to know about the node.
#[derive(Debug, Clone, Default)]
pub struct VolumeContext {
    /// Node allocatable: the default for limits a container leaves unset
    /// (downward API `resourceFieldRef`) and the size of memory-backed
    /// volumes.
    pub node_allocatable: BTreeMap<String, Quantity>,
    /// The cluster's DNS domain (`cluster.local`).
    pub cluster_domain: String,
}

/// Go's `*PathError` text: `op path: no such file or directory`.
pub(crate) fn go_io_error(op: &str, path: &Path, e: &io::Error) -> String {
    let msg = match e.raw_os_error() {
        Some(code) => {
            let s = io::Error::from_raw_os_error(code).to_string();
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().chain(c).collect(),
                None => s,
            }
        }
        None => e.to_string(),
    };
    format!("{op} {}: {msg}", path.display())
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn array_at<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn bool_at(v: &Value, ptr: &str) -> bool {
    v.pointer(ptr).and_then(Value::as_bool).unwrap_or(false)
}

/// A path component the agent puts under its own directories.
fn safe_component(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\0'])
}

fn quantity(v: &Value) -> Option<Quantity> {
    match v {
        Value::String(s) => Quantity::parse(s).ok(),
        Value::Number(n) => Quantity::parse(&n.to_string()).ok(),
        _ => None,
    }
}

/// The pod's memory limit as its cgroup gets it (`ResourceConfigForPod`):
/// pod-level `resources.limits.memory`, else the containers' limits when
/// every container declares one (regular and sidecar containers add up; a
/// bigger init container wins).
fn pod_memory_limit(pod: &Value) -> Option<i64> {
    if let Some(q) = pod
        .pointer("/spec/resources/limits/memory")
        .and_then(quantity)
    {
        return Some(q.value());
    }
    let limit = |c: &Value| c.pointer("/resources/limits/memory").and_then(quantity);
    let mut sum: i64 = 0;
    let mut init_max: i64 = 0;
    for c in array_at(pod, "/spec/containers") {
        sum = sum.saturating_add(limit(c)?.value());
    }
    for c in array_at(pod, "/spec/initContainers") {
        let l = limit(c)?.value();
        if str_at(c, "/restartPolicy") == "Always" {
            sum = sum.saturating_add(l);
        } else {
            init_max = init_max.max(l);
        }
    }
    Some(sum.max(init_max))
}

/// `calculateEmptyDirMemorySize`: node allocatable memory, lowered to the
/// pod's memory limit and to the volume's `sizeLimit` when those are
/// smaller. `None`: the kernel default (half of RAM).
fn memory_volume_size(pod: &Value, size_limit: Option<i64>, ctx: &VolumeContext) -> Option<i64> {
    let mut size = ctx.node_allocatable.get("memory").map(Quantity::value);
    let mut lower = |candidate: Option<i64>| {
        if let Some(c) = candidate.filter(|c| *c > 0) {
            if size.is_none_or(|s| c <= s) {
                size = Some(c);
            }
        }
    };
    lower(pod_memory_limit(pod));
    lower(size_limit);
    size.filter(|s| *s > 0)
}

/// `FsUserFrom`: the runAsUser every init and regular container shares, if
/// they all set one.
fn fs_user(pod: &Value) -> Option<u32> {
    let pod_user = pod
        .pointer("/spec/securityContext/runAsUser")
        .and_then(Value::as_i64);
    let mut user = None;
    for c in array_at(pod, "/spec/initContainers")
        .iter()
        .chain(array_at(pod, "/spec/containers"))
    {
        let u = c
            .pointer("/securityContext/runAsUser")
            .and_then(Value::as_i64)
            .or(pod_user)?;
        if user.is_some_and(|prev| prev != u) {
            return None;
        }
        user = Some(u);
    }
    user.and_then(|u| u32::try_from(u).ok())
}

/// `getNestedMountpoints`: directories to create in volume `name` for other
/// volumes mounted below it in some container.
fn nested_mountpoints(pod: &Value, name: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let containers = array_at(pod, "/spec/initContainers")
        .iter()
        .chain(array_at(pod, "/spec/containers"))
        .chain(array_at(pod, "/spec/ephemeralContainers"));
    for c in containers {
        let mounts = array_at(c, "/volumeMounts");
        let mut all: Vec<String> = mounts
            .iter()
            .map(|m| atomic_writer::clean_path(str_at(m, "/mountPath")))
            .collect();
        all.sort();
        let mine = mounts
            .iter()
            .filter(|m| str_at(m, "/name") == name)
            .map(|m| atomic_writer::clean_path(str_at(m, "/mountPath")));
        for my in mine {
            if my.starts_with("../") {
                return Err(format!("invalid container mount point {my}"));
            }
            let my_slash = format!("{my}/");
            let mut prev = String::new();
            for mp in &all {
                if !mp.starts_with(&my_slash) {
                    continue;
                }
                if !prev.is_empty() && mp.starts_with(&prev) {
                    continue;
                }
                prev = format!("{mp}/");
                out.push(mp[my_slash.len()..].to_string());
            }
        }
    }
    Ok(out)
}

/// What one volume needs done on the host, decided before any I/O.
enum Plan {
    EmptyDir {
        memory: bool,
        size: Option<i64>,
    },
    /// configMap, secret, downwardAPI, projected: a payload for the atomic
    /// writer in a directory (on tmpfs when `tmpfs` is `Some`).
    Projection {
        plugin: &'static str,
        tmpfs: Option<Option<i64>>,
        payload: Payload,
        nested: Vec<String>,
    },
    HostPath {
        path: String,
        path_type: String,
    },
}

/// The pod facts the plans need.
struct PodFacts<'a> {
    pod: &'a Value,
    uid: String,
    namespace: String,
    name: String,
    fs_group: Option<u32>,
    fs_user: Option<u32>,
    on_root_mismatch: bool,
}

/// Sets up and tears down the volumes of the pods on this node.
pub struct VolumeManager {
    pods_root: PathBuf,
    memory_backed: bool,
    clock: Clock,
    tokens: TokenCache,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl VolumeManager {
    /// Pod directories go under `pods_root` (`<data-dir>/agent/pods`).
    pub fn new(pods_root: impl Into<PathBuf>) -> VolumeManager {
        VolumeManager {
            pods_root: pods_root.into(),
            memory_backed: true,
            clock: Arc::new(SystemTime::now),
            tokens: TokenCache::default(),
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// Whether secret, downwardAPI and projected volumes (and emptyDirs of
    /// medium Memory) get a tmpfs (default: yes, as upstream). Without it
    /// (tests that may not mount) they are plain directories.
    pub fn with_memory_backed_volumes(mut self, on: bool) -> VolumeManager {
        self.memory_backed = on;
        self
    }

    /// The wall clock for token lifetimes and timestamped directories.
    pub fn with_clock(mut self, clock: Clock) -> VolumeManager {
        self.clock = clock;
        self
    }

    pub fn pods_root(&self) -> &Path {
        &self.pods_root
    }

    /// `<pods-root>/<uid>`.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.pods_root.join(uid)
    }

    /// Pod directories whose uid is not in `live_uids` (cleanup at start).
    pub fn orphaned_pod_dirs(&self, live_uids: &HashSet<String>) -> Vec<String> {
        let Ok(entries) = fs::read_dir(&self.pods_root) else {
            return Vec::new();
        };
        let mut out: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|uid| !live_uids.contains(uid))
            .collect();
        out.sort();
        out
    }

    fn pod_lock(&self, uid: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(uid.to_string())
            .or_default()
            .clone()
    }

    /// Sets up (or refreshes) every volume of `pod` and returns them by name
    /// for [`crate::podspec::ContainerOptions::volumes`]. Volumes that fail
    /// do not stop the others; the error names each one that failed.
    pub async fn setup(
        &self,
        pod: &Value,
        source: &impl ObjectSource,
        ctx: &VolumeContext,
    ) -> Result<BTreeMap<String, ResolvedVolume>, VolumeError> {
        let uid = str_at(pod, "/metadata/uid").to_string();
        if !safe_component(&uid) {
            return Err(VolumeError::InvalidPod(format!(
                "metadata.uid {uid:?} cannot name a directory"
            )));
        }
        let psc = pod.pointer("/spec/securityContext");
        let facts = PodFacts {
            pod,
            namespace: str_at(pod, "/metadata/namespace").to_string(),
            name: str_at(pod, "/metadata/name").to_string(),
            fs_group: psc
                .and_then(|s| s.get("fsGroup"))
                .and_then(Value::as_i64)
                .and_then(|g| u32::try_from(g).ok()),
            fs_user: fs_user(pod),
            on_root_mismatch: psc
                .and_then(|s| s.get("fsGroupChangePolicy"))
                .and_then(Value::as_str)
                == Some("OnRootMismatch"),
            uid,
        };
        let lock = self.pod_lock(&facts.uid);
        let _guard = lock.lock().await;
        let now = (self.clock)();
        self.tokens.drop_expired(now);

        let mut errors = Vec::new();
        let mut plans = Vec::new();
        for vol in array_at(pod, "/spec/volumes") {
            let name = str_at(vol, "/name").to_string();
            if !safe_component(&name) {
                errors.push(VolumeError::SetUp {
                    reason: format!("invalid volume name {name:?}"),
                    volume: name,
                });
                continue;
            }
            match self.plan(&facts, vol, source, ctx, now).await {
                Ok(plan) => plans.push((name, plan)),
                Err(e) => errors.push(e),
            }
        }

        let pod_dir = self.pod_dir(&facts.uid);
        let memory_backed = self.memory_backed;
        let fs_group = facts.fs_group;
        let on_root_mismatch = facts.on_root_mismatch;
        let applied = tokio::task::spawn_blocking(move || {
            apply_plans(
                &pod_dir,
                plans,
                memory_backed,
                fs_group,
                on_root_mismatch,
                now,
            )
        })
        .await
        .map_err(|e| VolumeError::Task(e.to_string()))?;

        let mut out = BTreeMap::new();
        for (name, result) in applied {
            match result {
                Ok(v) => {
                    out.insert(name, v);
                }
                Err(e) => errors.push(e),
            }
        }
        match errors.len() {
            0 => Ok(out),
            1 => Err(errors.remove(0)),
            _ => Err(VolumeError::Several(errors)),
        }
    }

    async fn plan(
        &self,
        p: &PodFacts<'_>,
        vol: &Value,
        source: &impl ObjectSource,
        ctx: &VolumeContext,
        now: SystemTime,
    ) -> Result<Plan, VolumeError> {
        let name = str_at(vol, "/name");
        let set_up = |reason: String| VolumeError::SetUp {
            volume: name.to_string(),
            reason,
        };
        let kinds: Vec<&str> = vol
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, v)| k.as_str() != "name" && !v.is_null())
                    .map(|(k, _)| k.as_str())
                    .collect()
            })
            .unwrap_or_default();
        let kind = kinds.first().copied().unwrap_or("emptyDir");
        let spec = vol.get(kind).unwrap_or(&Value::Null);
        let memory_tmpfs = |size_limit: Option<i64>| {
            self.memory_backed
                .then(|| memory_volume_size(p.pod, size_limit, ctx))
        };
        let nested = || nested_mountpoints(p.pod, name).map_err(set_up);
        let default_mode =
            |spec: &Value| payload::mode_field(spec.get("defaultMode")).unwrap_or(DEFAULT_MODE);
        match kind {
            "emptyDir" => {
                let size_limit = spec.get("sizeLimit").and_then(quantity).map(|q| q.value());
                match str_at(spec, "/medium") {
                    "" => Ok(Plan::EmptyDir {
                        memory: false,
                        size: None,
                    }),
                    "Memory" => Ok(Plan::EmptyDir {
                        memory: true,
                        size: memory_volume_size(p.pod, size_limit, ctx),
                    }),
                    "HugePages" => Err(set_up(
                        "emptyDir medium HugePages is not supported by kedge".into(),
                    )),
                    other => Err(set_up(format!("unknown storage medium {other:?}"))),
                }
            }
            "hostPath" => Ok(Plan::HostPath {
                path: str_at(spec, "/path").to_string(),
                path_type: str_at(spec, "/type").to_string(),
            }),
            "configMap" => {
                let optional = bool_at(spec, "/optional");
                let cm_name = str_at(spec, "/name");
                let cm = self
                    .config_map(source, &p.namespace, cm_name, optional)
                    .await
                    .map_err(set_up)?;
                let payload = payload::config_map_payload(
                    array_at(spec, "/items"),
                    cm.as_ref(),
                    default_mode(spec),
                    optional,
                )
                .map_err(set_up)?;
                Ok(Plan::Projection {
                    plugin: CONFIG_MAP,
                    tmpfs: None,
                    payload,
                    nested: nested()?,
                })
            }
            "secret" => {
                let optional = bool_at(spec, "/optional");
                let secret_name = str_at(spec, "/secretName");
                let secret = self
                    .secret(source, &p.namespace, secret_name, optional)
                    .await
                    .map_err(set_up)?;
                let payload = payload::secret_payload(
                    array_at(spec, "/items"),
                    secret.as_ref(),
                    default_mode(spec),
                    optional,
                )
                .map_err(set_up)?;
                Ok(Plan::Projection {
                    plugin: SECRET,
                    tmpfs: memory_tmpfs(None),
                    payload,
                    nested: nested()?,
                })
            }
            "downwardAPI" => {
                let payload = payload::downward_api_payload(
                    array_at(spec, "/items"),
                    p.pod,
                    default_mode(spec),
                    &ctx.node_allocatable,
                )
                .map_err(set_up)?;
                Ok(Plan::Projection {
                    plugin: DOWNWARD_API,
                    tmpfs: memory_tmpfs(None),
                    payload,
                    nested: nested()?,
                })
            }
            "projected" => {
                let payload = self
                    .projected_payload(p, spec, source, ctx, now)
                    .await
                    .map_err(set_up)?;
                Ok(Plan::Projection {
                    plugin: PROJECTED,
                    tmpfs: memory_tmpfs(None),
                    payload,
                    nested: nested()?,
                })
            }
            other => Err(VolumeError::Unsupported {
                volume: name.to_string(),
                kind: other.to_string(),
            }),
        }
    }

    /// A ConfigMap, or `None` when it is missing and `optional`; upstream's
    /// `configmap "x" not found` otherwise.
    async fn config_map(
        &self,
        source: &impl ObjectSource,
        namespace: &str,
        name: &str,
        optional: bool,
    ) -> Result<Option<Value>, String> {
        match source.config_map(namespace, name).await? {
            Some(cm) => Ok(Some(cm)),
            None if optional => Ok(None),
            None => Err(format!("configmap {name:?} not found")),
        }
    }

    async fn secret(
        &self,
        source: &impl ObjectSource,
        namespace: &str,
        name: &str,
        optional: bool,
    ) -> Result<Option<Value>, String> {
        match source.secret(namespace, name).await? {
            Some(s) => Ok(Some(s)),
            None if optional => Ok(None),
            None => Err(format!("secret {name:?} not found")),
        }
    }

    /// `projectedVolumeMounter.collectData`: every source's files in one
    /// payload; any failing source fails the volume (all reported).
    async fn projected_payload(
        &self,
        p: &PodFacts<'_>,
        spec: &Value,
        source: &impl ObjectSource,
        ctx: &VolumeContext,
        now: SystemTime,
    ) -> Result<Payload, String> {
        let default_mode = payload::mode_field(spec.get("defaultMode")).unwrap_or(DEFAULT_MODE);
        let mut errs = Vec::new();
        let mut out = Payload::new();
        for src in array_at(spec, "/sources") {
            let part: Result<Payload, String> = if let Some(s) = src.get("secret") {
                let optional = bool_at(s, "/optional");
                match self
                    .secret(source, &p.namespace, str_at(s, "/name"), optional)
                    .await
                {
                    Ok(secret) => payload::secret_payload(
                        array_at(s, "/items"),
                        secret.as_ref(),
                        default_mode,
                        optional,
                    ),
                    Err(e) => Err(e),
                }
            } else if let Some(c) = src.get("configMap") {
                let optional = bool_at(c, "/optional");
                match self
                    .config_map(source, &p.namespace, str_at(c, "/name"), optional)
                    .await
                {
                    Ok(cm) => payload::config_map_payload(
                        array_at(c, "/items"),
                        cm.as_ref(),
                        default_mode,
                        optional,
                    ),
                    Err(e) => Err(e),
                }
            } else if let Some(d) = src.get("downwardAPI") {
                payload::downward_api_payload(
                    array_at(d, "/items"),
                    p.pod,
                    default_mode,
                    &ctx.node_allocatable,
                )
            } else if let Some(t) = src.get("serviceAccountToken") {
                self.token_file(p, t, default_mode, source, now).await
            } else if src.get("clusterTrustBundle").is_some() {
                Err("ClusterTrustBundle projection is not supported by kedge".to_string())
            } else if src.get("podCertificate").is_some() {
                Err("PodCertificate projection is not supported by kedge".to_string())
            } else {
                Ok(Payload::new())
            };
            match part {
                Ok(files) => out.extend(files),
                Err(e) => errs.push(e),
            }
        }
        if errs.is_empty() {
            Ok(out)
        } else {
            Err(payload::aggregate(&errs))
        }
    }

    async fn token_file(
        &self,
        p: &PodFacts<'_>,
        t: &Value,
        default_mode: u32,
        source: &impl ObjectSource,
        now: SystemTime,
    ) -> Result<Payload, String> {
        let service_account = match str_at(p.pod, "/spec/serviceAccountName") {
            "" => "default",
            sa => sa,
        };
        let req = TokenRequest {
            namespace: p.namespace.clone(),
            service_account: service_account.to_string(),
            audience: Some(str_at(t, "/audience").to_string()).filter(|a| !a.is_empty()),
            expiration_seconds: t
                .get("expirationSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(DEFAULT_TOKEN_EXPIRATION_SECONDS),
            pod_name: p.name.clone(),
            pod_uid: p.uid.clone(),
        };
        let token = self.tokens.get(source, &req, now).await?;
        // With an fsUser or fsGroup the token is 0600 (fsGroup ownership
        // then adds group read).
        let mode = if p.fs_user.is_some() || p.fs_group.is_some() {
            0o600
        } else {
            default_mode
        };
        let mut out = Payload::new();
        out.insert(
            str_at(t, "/path").to_string(),
            FileProjection {
                data: token.into_bytes(),
                mode,
                fs_user: p.fs_user,
            },
        );
        Ok(out)
    }

    /// Unmounts what the pod's volumes mounted under its directory and
    /// removes the directory. Never follows a symlink out of it and never
    /// removes anything on another filesystem (a mount still there is an
    /// error, and the directory stays).
    pub async fn teardown(&self, pod_uid: &str) -> Result<(), VolumeError> {
        if !safe_component(pod_uid) {
            return Err(VolumeError::InvalidPod(format!(
                "uid {pod_uid:?} cannot name a directory"
            )));
        }
        let lock = self.pod_lock(pod_uid);
        let guard = lock.lock().await;
        let dir = self.pod_dir(pod_uid);
        let result = tokio::task::spawn_blocking(move || teardown_dir(&dir))
            .await
            .map_err(|e| VolumeError::Task(e.to_string()))?;
        drop(guard);
        if result.is_ok() {
            self.tokens.forget_pod(pod_uid);
            self.locks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(pod_uid);
        }
        result
    }
}

fn teardown_dir(dir: &Path) -> Result<(), VolumeError> {
    let remove_err = |path: &Path, source: io::Error| VolumeError::Remove {
        path: path.to_path_buf(),
        source,
    };
    let md = match fs::symlink_metadata(dir) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(remove_err(dir, e)),
    };
    if !md.is_dir() {
        // A symlink (or file) where the pod directory should be: remove the
        // link itself, never what it points at.
        return fs::remove_file(dir).map_err(|e| remove_err(dir, e));
    }
    let canonical = fs::canonicalize(dir).map_err(|e| remove_err(dir, e))?;
    let mounts = host::mounts_below(&canonical).map_err(|e| remove_err(dir, e))?;
    for m in &mounts {
        tracing::info!(mount = %m.display(), "unmounting pod volume");
        host::unmount(m).map_err(|source| VolumeError::Unmount {
            path: m.clone(),
            source,
        })?;
    }
    if let Some(m) = host::mounts_below(&canonical)
        .map_err(|e| remove_err(dir, e))?
        .into_iter()
        .next()
    {
        return Err(VolumeError::StillMounted {
            mount: m,
            pod_dir: canonical,
        });
    }
    host::remove_tree_on_one_device(&canonical).map_err(|e| remove_err(&canonical, e))?;
    tracing::info!(dir = %canonical.display(), "removed pod directory");
    Ok(())
}

fn mkdir_mode(dir: &Path, mode: u32) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(mode).create(dir)
}

/// upstream's emptyDir `setupDir`: the directory, mode 0777 whatever the
/// umask.
fn setup_dir(dir: &Path) -> io::Result<()> {
    mkdir_mode(dir, 0o777)?;
    let md = fs::symlink_metadata(dir)?;
    if md.permissions().mode() & 0o777 != 0o777 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o777))?;
    }
    Ok(())
}

/// A tmpfs at `dir` unless one is already there (`setupTmpfs`).
fn ensure_tmpfs(dir: &Path, size: Option<i64>) -> io::Result<()> {
    if host::mounted_fs_type(dir)?.as_deref() == Some("tmpfs") {
        return Ok(());
    }
    tracing::info!(dir = %dir.display(), ?size, "mounting tmpfs");
    host::mount_tmpfs(dir, size)
}

fn apply_plans(
    pod_dir: &Path,
    plans: Vec<(String, Plan)>,
    memory_backed: bool,
    fs_group: Option<u32>,
    on_root_mismatch: bool,
    now: SystemTime,
) -> Vec<(String, Result<ResolvedVolume, VolumeError>)> {
    let base = || -> io::Result<()> {
        for d in ["", "volumes", "plugins"] {
            mkdir_mode(&pod_dir.join(d), 0o750)?;
        }
        Ok(())
    };
    if let Err(e) = base() {
        let reason = go_io_error("mkdir", pod_dir, &e);
        return plans
            .into_iter()
            .map(|(name, _)| {
                let err = VolumeError::SetUp {
                    volume: name.clone(),
                    reason: reason.clone(),
                };
                (name, Err(err))
            })
            .collect();
    }
    plans
        .into_iter()
        .map(|(name, plan)| {
            let r = apply_plan(
                pod_dir,
                &name,
                plan,
                memory_backed,
                fs_group,
                on_root_mismatch,
                now,
            )
            .map_err(|reason| VolumeError::SetUp {
                volume: name.clone(),
                reason,
            });
            (name, r)
        })
        .collect()
}

fn apply_plan(
    pod_dir: &Path,
    name: &str,
    plan: Plan,
    memory_backed: bool,
    fs_group: Option<u32>,
    on_root_mismatch: bool,
    now: SystemTime,
) -> Result<ResolvedVolume, String> {
    let resolved = |dir: &Path, read_only: bool| ResolvedVolume {
        host_path: dir.to_string_lossy().into_owned(),
        read_only,
    };
    match plan {
        Plan::HostPath { path, path_type } => {
            host_path::check(&path, &path_type)?;
            Ok(ResolvedVolume {
                host_path: path,
                read_only: false,
            })
        }
        Plan::EmptyDir { memory, size } => {
            let dir = pod_dir.join("volumes").join(EMPTY_DIR).join(name);
            let meta = pod_dir.join("plugins").join(EMPTY_DIR).join(name);
            let ready = meta.join("ready");
            let on_tmpfs = || {
                host::mounted_fs_type(&dir)
                    .ok()
                    .flatten()
                    .is_some_and(|t| t == "tmpfs")
            };
            let memory = memory && memory_backed;
            if ready.exists() && dir.is_dir() && (!memory || on_tmpfs()) {
                return Ok(resolved(&dir, false));
            }
            setup_dir(&dir).map_err(|e| go_io_error("mkdir", &dir, &e))?;
            if memory {
                ensure_tmpfs(&dir, size).map_err(|e| go_io_error("mount tmpfs", &dir, &e))?;
            }
            if let Some(gid) = fs_group {
                host::set_volume_ownership(&dir, gid, false, on_root_mismatch)
                    .map_err(|e| format!("failed to set ownership of {}: {e}", dir.display()))?;
            }
            mkdir_mode(&meta, 0o750).map_err(|e| go_io_error("mkdir", &meta, &e))?;
            fs::write(&ready, b"").map_err(|e| go_io_error("open", &ready, &e))?;
            Ok(resolved(&dir, false))
        }
        Plan::Projection {
            plugin,
            tmpfs,
            payload,
            nested,
        } => {
            let dir = pod_dir.join("volumes").join(plugin).join(name);
            if !dir.is_dir() {
                setup_dir(&dir).map_err(|e| go_io_error("mkdir", &dir, &e))?;
            }
            if let Some(size) = tmpfs {
                ensure_tmpfs(&dir, size).map_err(|e| go_io_error("mount tmpfs", &dir, &e))?;
            }
            for n in nested {
                let p = dir.join(&n);
                mkdir_mode(&p, 0o755)
                    .map_err(|e| format!("unable to create nested volume mountpoints: {e}"))?;
            }
            let set_perms = |target: &Path| -> Result<(), String> {
                match fs_group {
                    Some(gid) => host::set_volume_ownership(target, gid, true, false)
                        .map_err(|e| format!("error applying ownership settings: {e}")),
                    None => Ok(()),
                }
            };
            let outcome = atomic_writer::write(&dir, &payload, Some(&set_perms), now)?;
            if outcome == atomic_writer::WriteOutcome::Written {
                tracing::debug!(volume = name, dir = %dir.display(), "volume content published");
            }
            Ok(resolved(&dir, true))
        }
    }
}

#[cfg(test)]
mod tests;
