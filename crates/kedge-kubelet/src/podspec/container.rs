//! `generateContainerConfig`, the environment (`makeEnvironmentVariables`),
//! resources (`calculateLinuxResources`), QoS and OOM scores.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::expansion::expand;
use super::quantity::Quantity;
use super::sandbox::pod_namespace_options;
use super::{array_at, at, bool_at, format_pod, str_at};
use crate::cri::api::{
    self, security_profile::ProfileType, Capability, ContainerConfig, ContainerMetadata, ImageSpec,
    KeyValue, LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext, Mount,
    MountPropagation, SecurityProfile,
};

const MIN_SHARES: i64 = 2;
const MAX_SHARES: i64 = 262_144;
const SHARES_PER_CPU: i64 = 1024;
const MILLI_CPU_TO_CPU: i64 = 1000;
const QUOTA_PERIOD: i64 = 100_000;
const MIN_QUOTA_PERIOD: i64 = 1000;
const GUARANTEED_OOM_SCORE_ADJ: i64 = -997;
const BEST_EFFORT_OOM_SCORE_ADJ: i64 = 1000;
const SYSTEM_CRITICAL_PRIORITY: i64 = 2_000_000_000;

/// `securitycontext.defaultMaskedPaths`.
const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
/// `securitycontext.defaultReadonlyPaths`.
const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Why a container's config cannot be built. The agent reports these as
/// `CreateContainerConfigError` with the error's text as the message; the
/// texts are upstream's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("configmap \"{name}\" not found")]
    ConfigMapNotFound { name: String },
    #[error("secret \"{name}\" not found")]
    SecretNotFound { name: String },
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKeyNotFound {
        key: String,
        namespace: String,
        name: String,
    },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKeyNotFound {
        key: String,
        namespace: String,
        name: String,
    },
    /// The resolver failed for another reason (API unreachable...).
    #[error("{0}")]
    Resolver(String),
    #[error("unsupported fieldPath: {0}")]
    UnsupportedFieldPath(String),
    #[error("unsupported container resource : {0}")]
    UnsupportedResource(String),
    #[error("container {0} not found")]
    ContainerNotFound(String),
    #[error("invalid quantity {0}")]
    Quantity(String),
    #[error("container's runAsUser breaks non-root policy (pod: {pod:?}, container: {container})")]
    RunAsUserRoot { pod: String, container: String },
    #[error("container has runAsNonRoot and image will run as root (pod: {pod:?}, container: {container})")]
    ImageRunsAsRoot { pod: String, container: String },
    #[error("container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root (pod: {pod:?}, container: {container})")]
    ImageNonNumericUser {
        user: String,
        pod: String,
        container: String,
    },
    #[error("cannot find volume {volume:?} to mount into container {container:?}")]
    VolumeNotFound { volume: String, container: String },
    #[error("unable to provision SubPath {0:?}: must be a relative path without '..'")]
    InvalidSubPath(String),
}

/// Looks up ConfigMaps and Secrets of the pod's namespace for env and
/// envFrom. `Ok(None)` means NotFound; data are decoded strings (Secret
/// values already base64-decoded).
pub trait EnvResolver {
    fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, String>;
    fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, String>;
}

/// A resolver that knows no objects (every lookup is NotFound).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoResolver;

impl EnvResolver for NoResolver {
    fn config_map(&self, _: &str, _: &str) -> Result<Option<BTreeMap<String, String>>, String> {
        Ok(None)
    }
    fn secret(&self, _: &str, _: &str) -> Result<Option<BTreeMap<String, String>>, String> {
        Ok(None)
    }
}

/// A volume the agent has set up on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedVolume {
    pub host_path: String,
    /// Read-only by nature (configMap, secret, downwardAPI, projected, or a
    /// read-only PVC/hostPath source).
    pub read_only: bool,
}

/// What the kubelet knows about a container that the pod does not say.
#[derive(Debug, Clone, Default)]
pub struct ContainerOptions {
    pub restart_count: u32,
    /// The image reference to run (the image ID after pull); the
    /// container's `image` when `None`.
    pub image_ref: Option<String>,
    /// The image's configured user, as numeric uid or a name (`getImageUser`).
    pub image_uid: Option<i64>,
    pub image_username: String,
    /// Volumes by name.
    pub volumes: BTreeMap<String, ResolvedVolume>,
    /// The managed `/etc/hosts` file (`<pod-dir>/etc-hosts`), if any.
    pub etc_hosts_path: Option<String>,
    /// The host file behind `terminationMessagePath`.
    pub termination_message_host_path: Option<String>,
    pub host_ips: Vec<String>,
    pub pod_ips: Vec<String>,
    /// Node allocatable, the default for limits the container leaves unset
    /// (`resourceFieldRef`).
    pub node_allocatable: BTreeMap<String, Quantity>,
    /// The machine's memory capacity in bytes (OOM scores of burstable pods).
    pub memory_capacity: i64,
    /// Service environment variables (`enableServiceLinks`), in order.
    pub service_env: Vec<(String, String)>,
    /// Where `Localhost` seccomp profiles live.
    pub seccomp_root: String,
}

/// The pod's QoS class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

pub(crate) fn quantity_at(v: &Value, key: &str) -> Option<Quantity> {
    match at(v, &[key])? {
        Value::String(s) => Quantity::parse(s).ok(),
        Value::Number(n) => Quantity::parse(&n.to_string()).ok(),
        _ => None,
    }
}

/// `qos.GetPodQOS`: `status.qosClass` when set, else computed from the
/// containers' cpu and memory requests and limits.
pub fn pod_qos(pod: &Value) -> QosClass {
    match str_at(pod, &["status", "qosClass"]) {
        "Guaranteed" => return QosClass::Guaranteed,
        "Burstable" => return QosClass::Burstable,
        "BestEffort" => return QosClass::BestEffort,
        _ => {}
    }
    let mut requests: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut limits: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut guaranteed = true;
    let containers = array_at(pod, &["spec", "containers"])
        .iter()
        .chain(array_at(pod, &["spec", "initContainers"]));
    for c in containers {
        for res in ["cpu", "memory"] {
            if let Some(q) = at(c, &["resources", "requests"]).and_then(|r| quantity_at(r, res)) {
                if !q.is_zero() {
                    add(&mut requests, res, q);
                }
            }
        }
        let mut has = 0;
        for res in ["cpu", "memory"] {
            if let Some(q) = at(c, &["resources", "limits"]).and_then(|r| quantity_at(r, res)) {
                if !q.is_zero() {
                    has += 1;
                    add(&mut limits, res, q);
                }
            }
        }
        if has != 2 {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return QosClass::BestEffort;
    }
    if guaranteed {
        for (name, req) in &requests {
            if limits.get(name) != Some(req) {
                guaranteed = false;
            }
        }
    }
    if guaranteed && requests.len() == limits.len() {
        QosClass::Guaranteed
    } else {
        QosClass::Burstable
    }
}

fn add(m: &mut BTreeMap<&'static str, Quantity>, k: &'static str, q: Quantity) {
    let sum = match m.get(k) {
        None => q,
        Some(prev) => {
            let (a, b) = prev.ratio();
            let (c, d) = q.ratio();
            Quantity::from_ratio(a * d + c * b, b * d)
        }
    };
    m.insert(k, sum);
}

/// `cm.MilliCPUToShares`.
pub(crate) fn milli_cpu_to_shares(milli: i64) -> i64 {
    if milli == 0 {
        return MIN_SHARES;
    }
    (milli * SHARES_PER_CPU / MILLI_CPU_TO_CPU).clamp(MIN_SHARES, MAX_SHARES)
}

/// `cm.MilliCPUToQuota`.
pub(crate) fn milli_cpu_to_quota(milli: i64, period: i64) -> i64 {
    if milli == 0 {
        return 0;
    }
    (milli * period / MILLI_CPU_TO_CPU).max(MIN_QUOTA_PERIOD)
}

/// `calculateLinuxResources`: shares from the request (the limit when no
/// request), quota from the limit, the memory limit.
pub(crate) fn linux_resources(
    cpu_request: Option<Quantity>,
    cpu_limit: Option<Quantity>,
    memory_limit: Option<Quantity>,
) -> LinuxContainerResources {
    let mut r = LinuxContainerResources::default();
    if let Some(m) = memory_limit {
        r.memory_limit_in_bytes = m.value();
    }
    r.cpu_shares = match (cpu_request, cpu_limit) {
        (None, Some(l)) => milli_cpu_to_shares(l.milli_value()),
        (req, _) => milli_cpu_to_shares(req.map(|q| q.milli_value()).unwrap_or(0)),
    };
    if let Some(l) = cpu_limit {
        r.cpu_period = QUOTA_PERIOD;
        r.cpu_quota = milli_cpu_to_quota(l.milli_value(), QUOTA_PERIOD);
    }
    r
}

/// `qos.GetContainerOOMScoreAdjust`.
pub fn oom_score_adj(pod: &Value, container: &Value, memory_capacity: i64) -> i64 {
    let node_critical = at(pod, &["spec", "priority"])
        .and_then(Value::as_i64)
        .is_some_and(|p| p >= SYSTEM_CRITICAL_PRIORITY)
        && str_at(pod, &["spec", "priorityClassName"]) == "system-node-critical";
    if node_critical {
        return GUARANTEED_OOM_SCORE_ADJ;
    }
    match pod_qos(pod) {
        QosClass::Guaranteed => GUARANTEED_OOM_SCORE_ADJ,
        QosClass::BestEffort => BEST_EFFORT_OOM_SCORE_ADJ,
        QosClass::Burstable => {
            let request = at(container, &["resources", "requests"])
                .and_then(|r| quantity_at(r, "memory"))
                .map(|q| q.value())
                .unwrap_or(0);
            let adj = if memory_capacity > 0 {
                1000 - (1000 * i128::from(request) / i128::from(memory_capacity)) as i64
            } else {
                1000
            };
            if adj < 1000 + GUARANTEED_OOM_SCORE_ADJ {
                1000 + GUARANTEED_OOM_SCORE_ADJ
            } else if adj == BEST_EFFORT_OOM_SCORE_ADJ {
                adj - 1
            } else {
                adj
            }
        }
    }
}

/// The CRI security profile of a `seccompProfile` (Unconfined when unset,
/// the kubelet's default without `--seccomp-default`).
pub(crate) fn security_profile(profile: Option<&Value>, seccomp_root: &str) -> SecurityProfile {
    let Some(p) = profile else {
        return SecurityProfile {
            profile_type: ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        };
    };
    match str_at(p, &["type"]) {
        "RuntimeDefault" => SecurityProfile {
            profile_type: ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        },
        "Localhost" => SecurityProfile {
            profile_type: ProfileType::Localhost as i32,
            localhost_ref: format!(
                "{}/{}",
                seccomp_root.trim_end_matches('/'),
                str_at(p, &["localhostProfile"])
            ),
        },
        _ => SecurityProfile {
            profile_type: ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        },
    }
}

/// Go's `%q` for the strings label and annotation values hold.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `fieldpath.FormatMap`: sorted `key="value"` lines.
fn format_map(m: Option<&Value>) -> String {
    let Some(obj) = m.and_then(Value::as_object) else {
        return String::new();
    };
    let sorted: BTreeMap<&String, &Value> = obj.iter().collect();
    sorted
        .iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v.as_str().unwrap_or(""))))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `podFieldSelectorRuntimeValue` and `fieldpath.ExtractFieldPathAsString`.
fn field_ref_value(
    pod: &Value,
    path: &str,
    opts: &ContainerOptions,
) -> Result<String, ConfigError> {
    let meta = |k: &str| str_at(pod, &["metadata", k]).to_string();
    Ok(match path {
        "spec.nodeName" => str_at(pod, &["spec", "nodeName"]).into(),
        "spec.serviceAccountName" => str_at(pod, &["spec", "serviceAccountName"]).into(),
        "status.hostIP" => opts.host_ips.first().cloned().unwrap_or_default(),
        "status.hostIPs" => opts.host_ips.join(","),
        "status.podIP" => opts.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => opts.pod_ips.join(","),
        "metadata.name" => meta("name"),
        "metadata.namespace" => meta("namespace"),
        "metadata.uid" => meta("uid"),
        "metadata.annotations" => format_map(at(pod, &["metadata", "annotations"])),
        "metadata.labels" => format_map(at(pod, &["metadata", "labels"])),
        p => {
            let subscript = |prefix: &str| {
                p.strip_prefix(prefix)
                    .and_then(|r| r.strip_prefix("['"))
                    .and_then(|r| r.strip_suffix("']"))
            };
            if let Some(k) = subscript("metadata.annotations") {
                str_at(pod, &["metadata", "annotations", k]).into()
            } else if let Some(k) = subscript("metadata.labels") {
                str_at(pod, &["metadata", "labels", k]).into()
            } else {
                return Err(ConfigError::UnsupportedFieldPath(p.into()));
            }
        }
    })
}

/// `containerResourceRuntimeValue`: a request or limit divided by the
/// divisor, rounded up; unset limits default to node allocatable.
fn resource_ref_value(
    pod: &Value,
    container: &Value,
    fs: &Value,
    opts: &ContainerOptions,
) -> Result<String, ConfigError> {
    let target = match str_at(fs, &["containerName"]) {
        "" => container,
        name => super::all_containers(pod)
            .find(|c| str_at(c, &["name"]) == name)
            .ok_or_else(|| ConfigError::ContainerNotFound(name.into()))?,
    };
    let resource = str_at(fs, &["resource"]);
    let divisor = match at(fs, &["divisor"]) {
        None => Quantity::parse("1").expect("1 is a quantity"),
        Some(v) => {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let q = Quantity::parse(&text).map_err(|_| ConfigError::Quantity(text.clone()))?;
            if q.is_zero() {
                Quantity::parse("1").expect("1 is a quantity")
            } else {
                q
            }
        }
    };
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| ConfigError::UnsupportedResource(resource.into()))?;
    if kind != "limits" && kind != "requests" {
        return Err(ConfigError::UnsupportedResource(resource.into()));
    }
    let value = at(target, &["resources", kind]).and_then(|r| quantity_at(r, name));
    let value = match (value, kind) {
        (Some(v), _) => Some(v),
        (None, "limits") => opts.node_allocatable.get(name).copied(),
        (None, _) => None,
    };
    let zero = Quantity::parse("0").expect("0 is a quantity");
    let value = value.unwrap_or(zero);
    let n = match name {
        "cpu" => ceil_ratio(value.milli_value(), divisor.milli_value()),
        "memory" | "ephemeral-storage" => ceil_ratio(value.value(), divisor.value()),
        n if n.starts_with("hugepages-") => ceil_ratio(value.value(), divisor.value()),
        _ => return Err(ConfigError::UnsupportedResource(resource.into())),
    };
    Ok(n.to_string())
}

/// `int64(math.Ceil(float64(a) / float64(b)))`.
fn ceil_ratio(a: i64, b: i64) -> i64 {
    if b == 0 {
        return 0;
    }
    (a as f64 / b as f64).ceil() as i64
}

/// `envFrom` keys that may be environment variable names (the relaxed rule,
/// on by default since 1.32: printable ASCII but `=`).
fn valid_env_name(k: &str) -> bool {
    !k.is_empty() && k.bytes().all(|b| (32..=126).contains(&b) && b != b'=')
}

fn lookup(
    resolver: &dyn EnvResolver,
    secret: bool,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, String>>, ConfigError> {
    let r = if secret {
        resolver.secret(namespace, name)
    } else {
        resolver.config_map(namespace, name)
    };
    r.map_err(ConfigError::Resolver)
}

fn not_found(secret: bool, name: &str) -> ConfigError {
    if secret {
        ConfigError::SecretNotFound { name: name.into() }
    } else {
        ConfigError::ConfigMapNotFound { name: name.into() }
    }
}

/// The container's environment as `makeEnvironmentVariables` builds it:
/// envFrom sources, then env (values expanded against what is defined so
/// far and the service variables), then service variables not otherwise
/// defined. Order is definition order, a redefinition keeping the first
/// position.
pub fn container_envs(
    pod: &Value,
    container: &Value,
    opts: &ContainerOptions,
    resolver: &dyn EnvResolver,
) -> Result<Vec<(String, String)>, ConfigError> {
    let namespace = str_at(pod, &["metadata", "namespace"]);
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| match env
        .iter_mut()
        .find(|(ek, _)| *ek == k)
    {
        Some(e) => e.1 = v,
        None => env.push((k, v)),
    };
    for src in array_at(container, &["envFrom"]) {
        let prefix = str_at(src, &["prefix"]);
        let (secret, r) = match (at(src, &["configMapRef"]), at(src, &["secretRef"])) {
            (Some(r), _) => (false, r),
            (None, Some(r)) => (true, r),
            _ => continue,
        };
        let name = str_at(r, &["name"]);
        let optional = bool_at(r, &["optional"]);
        let data = match lookup(resolver, secret, namespace, name)? {
            Some(d) => d,
            None if optional => continue,
            None => return Err(not_found(secret, name)),
        };
        for (k, v) in data {
            let k = format!("{prefix}{k}");
            // upstream skips invalid keys with an InvalidEnvironmentVariableNames event.
            if valid_env_name(&k) {
                set(&mut env, k, v);
            }
        }
    }
    for e in array_at(container, &["env"]) {
        let name = str_at(e, &["name"]).to_string();
        let value = str_at(e, &["value"]);
        let runtime = if !value.is_empty() {
            expand(value, |n| {
                env.iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.clone())
                    .or_else(|| {
                        opts.service_env
                            .iter()
                            .find(|(k, _)| k == n)
                            .map(|(_, v)| v.clone())
                    })
            })
        } else if let Some(from) = at(e, &["valueFrom"]) {
            if let Some(f) = at(from, &["fieldRef"]) {
                field_ref_value(pod, str_at(f, &["fieldPath"]), opts)?
            } else if let Some(f) = at(from, &["resourceFieldRef"]) {
                resource_ref_value(pod, container, f, opts)?
            } else if let Some((secret, r)) = at(from, &["configMapKeyRef"])
                .map(|r| (false, r))
                .or_else(|| at(from, &["secretKeyRef"]).map(|r| (true, r)))
            {
                let obj = str_at(r, &["name"]);
                let key = str_at(r, &["key"]);
                let optional = bool_at(r, &["optional"]);
                let data = match lookup(resolver, secret, namespace, obj)? {
                    Some(d) => d,
                    None if optional => continue,
                    None => return Err(not_found(secret, obj)),
                };
                match data.get(key) {
                    Some(v) => v.clone(),
                    None if optional => continue,
                    None if secret => {
                        return Err(ConfigError::SecretKeyNotFound {
                            key: key.into(),
                            namespace: namespace.into(),
                            name: obj.into(),
                        })
                    }
                    None => {
                        return Err(ConfigError::ConfigMapKeyNotFound {
                            key: key.into(),
                            namespace: namespace.into(),
                            name: obj.into(),
                        })
                    }
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        set(&mut env, name, runtime);
    }
    for (k, v) in &opts.service_env {
        if !env.iter().any(|(ek, _)| ek == k) {
            env.push((k.clone(), v.clone()));
        }
    }
    Ok(env)
}

/// Container fields that override the pod's (`DetermineEffectiveSecurityContext`).
fn effective(pod: &Value, container: &Value, key: &str) -> Option<Value> {
    at(container, &["securityContext", key])
        .or_else(|| at(pod, &["spec", "securityContext", key]))
        .cloned()
}

fn verify_run_as_non_root(
    pod: &Value,
    container: &Value,
    opts: &ContainerOptions,
) -> Result<(), ConfigError> {
    let non_root = effective(pod, container, "runAsNonRoot")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    if !non_root {
        return Ok(());
    }
    let name = str_at(container, &["name"]).to_string();
    if let Some(uid) = effective(pod, container, "runAsUser").and_then(|v| v.as_i64()) {
        if uid == 0 {
            return Err(ConfigError::RunAsUserRoot {
                pod: format_pod(pod),
                container: name,
            });
        }
        return Ok(());
    }
    match (opts.image_uid, opts.image_username.as_str()) {
        (Some(0), _) => Err(ConfigError::ImageRunsAsRoot {
            pod: format_pod(pod),
            container: name,
        }),
        (None, user) if !user.is_empty() => Err(ConfigError::ImageNonNumericUser {
            user: user.into(),
            pod: format_pod(pod),
            container: name,
        }),
        _ => Ok(()),
    }
}

fn security_context(
    pod: &Value,
    container: &Value,
    opts: &ContainerOptions,
) -> LinuxContainerSecurityContext {
    let csc = at(container, &["securityContext"]);
    let c_bool = |k: &str| csc.map(|s| bool_at(s, &[k])).unwrap_or(false);
    let int = |k: &str| {
        effective(pod, container, k)
            .and_then(|v| v.as_i64())
            .map(|value| api::Int64Value { value })
    };
    let strings = |k: &str| -> Vec<String> {
        csc.map(|s| array_at(s, &["capabilities", k]))
            .unwrap_or(&[])
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    };
    let capabilities = csc
        .and_then(|s| at(s, &["capabilities"]))
        .map(|_| Capability {
            add_capabilities: strings("add"),
            drop_capabilities: strings("drop"),
            ..Default::default()
        });
    let mut sc = LinuxContainerSecurityContext {
        capabilities,
        privileged: c_bool("privileged"),
        run_as_user: int("runAsUser"),
        run_as_group: int("runAsGroup"),
        readonly_rootfs: c_bool("readOnlyRootFilesystem"),
        namespace_options: Some(pod_namespace_options(pod)),
        seccomp: Some(security_profile(
            effective(pod, container, "seccompProfile").as_ref(),
            &opts.seccomp_root,
        )),
        // `AddNoNewPrivileges`: only an explicit `false` sets it.
        no_new_privs: csc
            .and_then(|s| at(s, &["allowPrivilegeEscalation"]))
            .and_then(Value::as_bool)
            == Some(false),
        ..Default::default()
    };
    if sc.run_as_user.is_none() {
        sc.run_as_user = opts.image_uid.map(|value| api::Int64Value { value });
        sc.run_as_username = opts.image_username.clone();
    }
    if let Some(psc) = at(pod, &["spec", "securityContext"]) {
        if let Some(g) = at(psc, &["fsGroup"]).and_then(Value::as_i64) {
            sc.supplemental_groups.push(g);
        }
        sc.supplemental_groups.extend(
            array_at(psc, &["supplementalGroups"])
                .iter()
                .filter_map(Value::as_i64),
        );
    }
    if str_at(container, &["securityContext", "procMount"]) != "Unmasked" {
        sc.masked_paths = DEFAULT_MASKED_PATHS.iter().map(|s| s.to_string()).collect();
        sc.readonly_paths = DEFAULT_READONLY_PATHS
            .iter()
            .map(|s| s.to_string())
            .collect();
    }
    sc
}

/// FNV-1a 32 of the container's JSON, upstream's hash shape (`HashContainer`
/// hashes the spec the same way, over Go's JSON encoding).
fn container_hash(container: &Value) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in container.to_string().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:x}")
}

fn mounts(container: &Value, opts: &ContainerOptions) -> Result<Vec<Mount>, ConfigError> {
    let cname = str_at(container, &["name"]);
    let mut out = Vec::new();
    let mut has_hosts = false;
    for m in array_at(container, &["volumeMounts"]) {
        let vname = str_at(m, &["name"]);
        let vol = opts
            .volumes
            .get(vname)
            .ok_or_else(|| ConfigError::VolumeNotFound {
                volume: vname.into(),
                container: cname.into(),
            })?;
        let mut host_path = vol.host_path.clone();
        let sub = str_at(m, &["subPath"]);
        if !sub.is_empty() {
            if sub.starts_with('/') || sub.split('/').any(|p| p == "..") {
                return Err(ConfigError::InvalidSubPath(sub.into()));
            }
            host_path = format!("{}/{}", host_path.trim_end_matches('/'), sub);
        }
        let container_path = str_at(m, &["mountPath"]).to_string();
        has_hosts |= container_path == "/etc/hosts";
        let propagation = match str_at(m, &["mountPropagation"]) {
            "HostToContainer" => MountPropagation::PropagationHostToContainer,
            "Bidirectional" => MountPropagation::PropagationBidirectional,
            _ => MountPropagation::PropagationPrivate,
        };
        out.push(Mount {
            container_path,
            host_path,
            readonly: bool_at(m, &["readOnly"]) || vol.read_only,
            propagation: propagation as i32,
            ..Default::default()
        });
    }
    if let Some(hosts) = &opts.etc_hosts_path {
        if !has_hosts {
            out.push(Mount {
                container_path: "/etc/hosts".into(),
                host_path: hosts.clone(),
                ..Default::default()
            });
        }
    }
    let tmp = str_at(container, &["terminationMessagePath"]);
    if let (Some(host), false) = (&opts.termination_message_host_path, tmp.is_empty()) {
        out.push(Mount {
            container_path: tmp.into(),
            host_path: host.clone(),
            ..Default::default()
        });
    }
    Ok(out)
}

/// Builds the `CreateContainer` config of `container` (one of `pod`'s
/// containers, as JSON).
pub fn container_config(
    pod: &Value,
    container: &Value,
    opts: &ContainerOptions,
    resolver: &dyn EnvResolver,
) -> Result<ContainerConfig, ConfigError> {
    verify_run_as_non_root(pod, container, opts)?;
    let name = str_at(container, &["name"]);
    let envs = container_envs(pod, container, opts, resolver)?;
    let lookup = |n: &str| envs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let strings = |k: &str| -> Vec<String> {
        array_at(container, &[k])
            .iter()
            .filter_map(Value::as_str)
            .map(|s| expand(s, lookup))
            .collect()
    };
    let command = strings("command");
    let args = strings("args");

    let mut labels = HashMap::new();
    labels.insert(
        super::POD_NAME_LABEL.into(),
        str_at(pod, &["metadata", "name"]).into(),
    );
    labels.insert(
        super::POD_NAMESPACE_LABEL.into(),
        str_at(pod, &["metadata", "namespace"]).into(),
    );
    labels.insert(
        super::POD_UID_LABEL.into(),
        str_at(pod, &["metadata", "uid"]).into(),
    );
    labels.insert(super::CONTAINER_NAME_LABEL.into(), name.into());

    let mut annotations = HashMap::new();
    annotations.insert(
        super::CONTAINER_HASH_ANNOTATION.into(),
        container_hash(container),
    );
    annotations.insert(
        super::CONTAINER_RESTART_COUNT_ANNOTATION.into(),
        opts.restart_count.to_string(),
    );
    annotations.insert(
        super::TERMINATION_MESSAGE_PATH_ANNOTATION.into(),
        str_at(container, &["terminationMessagePath"]).into(),
    );
    annotations.insert(
        super::TERMINATION_MESSAGE_POLICY_ANNOTATION.into(),
        str_at(container, &["terminationMessagePolicy"]).into(),
    );
    if let Some(g) = at(pod, &["metadata", "deletionGracePeriodSeconds"]) {
        annotations.insert(
            super::POD_DELETION_GRACE_PERIOD_ANNOTATION.into(),
            g.to_string(),
        );
    }
    if let Some(g) = at(pod, &["spec", "terminationGracePeriodSeconds"]) {
        annotations.insert(
            super::POD_TERMINATION_GRACE_PERIOD_ANNOTATION.into(),
            g.to_string(),
        );
    }
    if let Some(h) = at(container, &["lifecycle", "preStop"]) {
        annotations.insert(super::CONTAINER_PRESTOP_ANNOTATION.into(), h.to_string());
    }
    if let Some(p) = at(container, &["ports"]) {
        annotations.insert(super::CONTAINER_PORTS_ANNOTATION.into(), p.to_string());
    }

    let res =
        |kind: &str, r: &str| at(container, &["resources", kind]).and_then(|v| quantity_at(v, r));
    let mut resources = linux_resources(
        res("requests", "cpu"),
        res("limits", "cpu"),
        res("limits", "memory"),
    );
    resources.oom_score_adj = oom_score_adj(pod, container, opts.memory_capacity);

    let image = str_at(container, &["image"]);
    Ok(ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: opts.restart_count,
        }),
        image: Some(ImageSpec {
            image: opts.image_ref.clone().unwrap_or_else(|| image.into()),
            user_specified_image: image.into(),
            ..Default::default()
        }),
        command,
        args,
        working_dir: str_at(container, &["workingDir"]).into(),
        envs: envs
            .into_iter()
            .map(|(key, value)| KeyValue { key, value })
            .collect(),
        mounts: mounts(container, opts)?,
        labels,
        annotations,
        log_path: format!("{name}/{}.log", opts.restart_count),
        stdin: bool_at(container, &["stdin"]),
        stdin_once: bool_at(container, &["stdinOnce"]),
        tty: bool_at(container, &["tty"]),
        linux: Some(LinuxContainerConfig {
            resources: Some(resources),
            security_context: Some(security_context(pod, container, opts)),
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    fn pod_with(containers: Value) -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "ns1", "uid": "u1",
                "labels": {"app": "web", "tier": "front\"end"},
                "annotations": {"note": "x"}},
            "spec": {"nodeName": "node1", "serviceAccountName": "sa", "containers": containers}
        })
    }

    #[derive(Default)]
    struct Maps {
        cms: BTreeMap<String, BTreeMap<String, String>>,
        secrets: BTreeMap<String, BTreeMap<String, String>>,
    }

    impl EnvResolver for Maps {
        fn config_map(
            &self,
            ns: &str,
            name: &str,
        ) -> Result<Option<BTreeMap<String, String>>, String> {
            assert_eq!(ns, "ns1");
            Ok(self.cms.get(name).cloned())
        }
        fn secret(&self, ns: &str, name: &str) -> Result<Option<BTreeMap<String, String>>, String> {
            assert_eq!(ns, "ns1");
            Ok(self.secrets.get(name).cloned())
        }
    }

    fn maps() -> Maps {
        let mut m = Maps::default();
        m.cms.insert(
            "cfg".into(),
            [("A".to_string(), "a".to_string()), ("B".into(), "b".into())].into(),
        );
        m.secrets.insert(
            "sec".into(),
            [("PW".to_string(), "hunter2".to_string())].into(),
        );
        m
    }

    /// `TestMilliCPUToShares` / `TestMilliCPUToQuota` (helpers_linux_test.go).
    #[test]
    fn cpu_shares_and_quota() {
        for (milli, shares) in [
            (0, 2),
            (1, 2),
            (2, 2),
            (10, 10),
            (100, 102),
            (250, 256),
            (1000, 1024),
            (1500, 1536),
            (262_144_000, 262_144),
            (300_000_000, 262_144),
        ] {
            assert_eq!(milli_cpu_to_shares(milli), shares, "{milli}");
        }
        for (milli, period, quota) in [
            (0, 100_000, 0),
            (5, 100_000, 1000),
            (9, 100_000, 1000),
            (10, 100_000, 1000),
            (200, 100_000, 20_000),
            (500, 100_000, 50_000),
            (1000, 100_000, 100_000),
            (1500, 100_000, 150_000),
            (1500, 50_000, 75_000),
        ] {
            assert_eq!(milli_cpu_to_quota(milli, period), quota, "{milli}");
        }
    }

    /// `TestCalculateLinuxResources`.
    #[test]
    fn calculate_linux_resources() {
        let r = linux_resources(Some(q("1")), Some(q("2")), Some(q("128Mi")));
        assert_eq!(
            (
                r.cpu_shares,
                r.cpu_quota,
                r.cpu_period,
                r.memory_limit_in_bytes
            ),
            (1024, 200_000, 100_000, 134_217_728)
        );
        let r = linux_resources(None, Some(q("2")), None);
        assert_eq!(
            (r.cpu_shares, r.cpu_quota, r.memory_limit_in_bytes),
            (2048, 200_000, 0)
        );
        let r = linux_resources(Some(q("500m")), None, Some(q("0")));
        assert_eq!((r.cpu_shares, r.cpu_quota, r.cpu_period), (512, 0, 0));
        let r = linux_resources(None, None, None);
        assert_eq!((r.cpu_shares, r.cpu_quota), (2, 0));
    }

    fn res(requests: Value, limits: Value) -> Value {
        json!({"name": "c", "resources": {"requests": requests, "limits": limits}})
    }

    /// `TestComputePodQOS` (qos_test.go), the main rows.
    #[test]
    fn qos_classes() {
        let cases = [
            (vec![json!({"name": "c"})], QosClass::BestEffort),
            (
                vec![json!({"name": "c"}), res(json!({"cpu": "0"}), json!({}))],
                QosClass::BestEffort,
            ),
            (
                vec![res(
                    json!({"cpu": "100m", "memory": "100Mi"}),
                    json!({"cpu": "100m", "memory": "100Mi"}),
                )],
                QosClass::Guaranteed,
            ),
            (
                vec![
                    res(
                        json!({"cpu": "100m", "memory": "100Mi"}),
                        json!({"cpu": "100m", "memory": "100Mi"}),
                    ),
                    res(
                        json!({"cpu": "0.1", "memory": "100Mi"}),
                        json!({"cpu": "0.1", "memory": "100Mi"}),
                    ),
                ],
                QosClass::Guaranteed,
            ),
            (
                vec![
                    res(
                        json!({"cpu": "100m", "memory": "100Mi"}),
                        json!({"cpu": "100m", "memory": "100Mi"}),
                    ),
                    json!({"name": "c"}),
                ],
                QosClass::Burstable,
            ),
            (
                vec![res(json!({"cpu": "100m"}), json!({"cpu": "100m"}))],
                QosClass::Burstable,
            ),
            (
                vec![res(
                    json!({"cpu": "100m", "memory": "100Mi"}),
                    json!({"cpu": "200m", "memory": "100Mi"}),
                )],
                QosClass::Burstable,
            ),
            // Limits without requests count as Burstable here; the API
            // server's defaulting copies limits into requests first.
            (
                vec![res(json!({}), json!({"cpu": "100m", "memory": "1G"}))],
                QosClass::Burstable,
            ),
            (
                vec![res(
                    json!({"cpu": "100m", "memory": "1G"}),
                    json!({"cpu": "100m", "memory": "1G"}),
                )],
                QosClass::Guaranteed,
            ),
        ];
        for (i, (containers, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                pod_qos(&pod_with(Value::Array(containers))),
                want,
                "case {i}"
            );
        }
        let mut p = pod_with(json!([]));
        p["status"] = json!({"qosClass": "Burstable"});
        assert_eq!(pod_qos(&p), QosClass::Burstable);
    }

    /// `TestGetContainerOOMScoreAdjust` (policy_test.go) shapes.
    #[test]
    fn oom_scores() {
        let cap = 4_000_000_000;
        let be = pod_with(json!([{"name": "c"}]));
        assert_eq!(oom_score_adj(&be, &be["spec"]["containers"][0], cap), 1000);
        let g = pod_with(json!([res(
            json!({"cpu": "1", "memory": "1G"}),
            json!({"cpu": "1", "memory": "1G"})
        )]));
        assert_eq!(oom_score_adj(&g, &g["spec"]["containers"][0], cap), -997);
        let b = pod_with(json!([res(
            json!({"memory": "1G"}),
            json!({"memory": "2G"})
        )]));
        assert_eq!(oom_score_adj(&b, &b["spec"]["containers"][0], cap), 750);
        let b = pod_with(json!([res(json!({"memory": "4G"}), json!({}))]));
        assert_eq!(oom_score_adj(&b, &b["spec"]["containers"][0], cap), 3);
        let b = pod_with(json!([res(json!({"cpu": "100m"}), json!({}))]));
        assert_eq!(oom_score_adj(&b, &b["spec"]["containers"][0], cap), 999);
        let mut crit = b.clone();
        crit["spec"]["priority"] = json!(2_000_001_000);
        crit["spec"]["priorityClassName"] = json!("system-node-critical");
        assert_eq!(
            oom_score_adj(&crit, &crit["spec"]["containers"][0], cap),
            -997
        );
    }

    fn opts() -> ContainerOptions {
        ContainerOptions {
            host_ips: vec!["10.0.0.1".into(), "fd00::1".into()],
            pod_ips: vec!["10.42.0.5".into(), "fd42::5".into()],
            node_allocatable: [("cpu".to_string(), q("4")), ("memory".into(), q("8Gi"))].into(),
            memory_capacity: 8 << 30,
            ..Default::default()
        }
    }

    fn env_of(
        container: Value,
        resolver: &dyn EnvResolver,
    ) -> Result<Vec<(String, String)>, ConfigError> {
        let p = pod_with(json!([container.clone()]));
        container_envs(&p, &container, &opts(), resolver)
    }

    #[test]
    fn downward_api_env() {
        let fr = |n: &str, path: &str| json!({"name": n, "valueFrom": {"fieldRef": {"fieldPath": path}}});
        let c = json!({"name": "c", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"},
            "limits": {"memory": "128Mi"}}, "env": [
            fr("NAME", "metadata.name"), fr("NS", "metadata.namespace"), fr("UID", "metadata.uid"),
            fr("APP", "metadata.labels['app']"), fr("NOTE", "metadata.annotations['note']"),
            fr("MISSING", "metadata.labels['nope']"), fr("LABELS", "metadata.labels"),
            fr("NODE", "spec.nodeName"), fr("SA", "spec.serviceAccountName"),
            fr("HOST", "status.hostIP"), fr("HOSTS", "status.hostIPs"),
            fr("IP", "status.podIP"), fr("IPS", "status.podIPs"),
            {"name": "CPU_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "CPU_REQ_M", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
            {"name": "CPU_REQ", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu"}}},
            {"name": "MEM_LIMIT_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "MEM_REQ", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory"}}},
        ]});
        let env: BTreeMap<String, String> = env_of(c, &NoResolver).unwrap().into_iter().collect();
        let want = [
            ("NAME", "web"),
            ("NS", "ns1"),
            ("UID", "u1"),
            ("APP", "web"),
            ("NOTE", "x"),
            ("MISSING", ""),
            ("LABELS", "app=\"web\"\ntier=\"front\\\"end\""),
            ("NODE", "node1"),
            ("SA", "sa"),
            ("HOST", "10.0.0.1"),
            ("HOSTS", "10.0.0.1,fd00::1"),
            ("IP", "10.42.0.5"),
            ("IPS", "10.42.0.5,fd42::5"),
            ("CPU_LIMIT", "4"),
            ("CPU_REQ_M", "250"),
            ("CPU_REQ", "1"),
            ("MEM_LIMIT_MI", "128"),
            ("MEM_REQ", "67108864"),
        ];
        for (k, v) in want {
            assert_eq!(env[k], v, "{k}");
        }
        let err = env_of(
            json!({"name": "c", "env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}]}),
            &NoResolver,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "unsupported fieldPath: spec.bogus");
    }

    #[test]
    fn env_expansion_and_order() {
        let c = json!({"name": "c", "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "P_"}],
        "env": [
            {"name": "X", "value": "$(P_A)-$(Y)-$$(P_B)"},
            {"name": "Y", "value": "y"},
            {"name": "Z", "value": "$(Y)$(SVC_HOST)"},
            {"name": "P_A", "value": "override"},
            {"name": "S", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "PW"}}},
        ]});
        let mut o = opts();
        o.service_env = vec![("SVC_HOST".into(), "10.43.0.1".into())];
        let p = pod_with(json!([c.clone()]));
        let env = container_envs(&p, &c, &o, &maps()).unwrap();
        let got: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            vec![
                ("P_A", "override"),
                ("P_B", "b"),
                ("X", "a-$(Y)-$(P_B)"),
                ("Y", "y"),
                ("Z", "y10.43.0.1"),
                ("S", "hunter2"),
                ("SVC_HOST", "10.43.0.1"),
            ]
        );
    }

    #[test]
    fn missing_config_maps_and_keys() {
        let key_ref = |kind: &str, name: &str, key: &str, optional: bool| json!({"name": "c", "env": [{"name": "V", "valueFrom": {kind: {"name": name, "key": key, "optional": optional}}}]});
        let m = maps();
        let e = env_of(key_ref("configMapKeyRef", "cfg", "NOPE", false), &m).unwrap_err();
        assert_eq!(e.to_string(), "couldn't find key NOPE in ConfigMap ns1/cfg");
        let e = env_of(key_ref("secretKeyRef", "sec", "NOPE", false), &m).unwrap_err();
        assert_eq!(e.to_string(), "couldn't find key NOPE in Secret ns1/sec");
        let e = env_of(key_ref("configMapKeyRef", "gone", "A", false), &m).unwrap_err();
        assert_eq!(e.to_string(), "configmap \"gone\" not found");
        let e = env_of(key_ref("secretKeyRef", "gone", "A", false), &m).unwrap_err();
        assert_eq!(e.to_string(), "secret \"gone\" not found");
        for (kind, name, key) in [
            ("configMapKeyRef", "cfg", "NOPE"),
            ("configMapKeyRef", "gone", "A"),
            ("secretKeyRef", "sec", "NOPE"),
            ("secretKeyRef", "gone", "A"),
        ] {
            assert_eq!(env_of(key_ref(kind, name, key, true), &m).unwrap(), vec![]);
        }
        let from = |optional: bool| json!({"name": "c", "envFrom": [{"secretRef": {"name": "gone", "optional": optional}}]});
        assert_eq!(
            env_of(from(false), &m).unwrap_err().to_string(),
            "secret \"gone\" not found"
        );
        assert_eq!(env_of(from(true), &m).unwrap(), vec![]);
        // Invalid names from envFrom are skipped.
        let mut m = maps();
        m.cms
            .insert("bad".into(), [("A=B".to_string(), "x".to_string())].into());
        let c = json!({"name": "c", "envFrom": [{"configMapRef": {"name": "bad"}}]});
        assert_eq!(env_of(c, &m).unwrap(), vec![]);
    }

    #[test]
    fn container_config_fields() {
        let c = json!({
            "name": "app", "image": "busybox:1.36",
            "command": ["sh", "-c", "echo $(GREETING) $(NOPE) $$(GREETING)"],
            "args": ["$(GREETING)"], "workingDir": "/w", "tty": true, "stdin": true,
            "env": [{"name": "GREETING", "value": "hi"}],
            "ports": [{"containerPort": 80}],
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
            "securityContext": {"runAsUser": 1000, "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
                "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false},
            "volumeMounts": [
                {"name": "data", "mountPath": "/data"},
                {"name": "cfg", "mountPath": "/etc/app.conf", "subPath": "app.conf"},
                {"name": "data", "mountPath": "/ro", "readOnly": true, "mountPropagation": "HostToContainer"}]
        });
        let mut p = pod_with(json!([c.clone()]));
        p["spec"]["securityContext"] = json!({"runAsGroup": 3000, "fsGroup": 2000});
        p["spec"]["terminationGracePeriodSeconds"] = json!(30);
        let mut o = opts();
        o.restart_count = 2;
        o.image_ref = Some("sha256:abc".into());
        o.etc_hosts_path = Some("/pods/u1/etc-hosts".into());
        o.termination_message_host_path = Some("/pods/u1/containers/app/1234".into());
        o.volumes.insert(
            "data".into(),
            ResolvedVolume {
                host_path: "/pods/u1/volumes/data".into(),
                read_only: false,
            },
        );
        o.volumes.insert(
            "cfg".into(),
            ResolvedVolume {
                host_path: "/pods/u1/volumes/cfg/".into(),
                read_only: true,
            },
        );
        let cfg = container_config(&p, &c, &o, &NoResolver).unwrap();
        assert_eq!(cfg.metadata.as_ref().unwrap().name, "app");
        assert_eq!(cfg.metadata.as_ref().unwrap().attempt, 2);
        let img = cfg.image.as_ref().unwrap();
        assert_eq!(
            (&*img.image, &*img.user_specified_image),
            ("sha256:abc", "busybox:1.36")
        );
        assert_eq!(cfg.command, vec!["sh", "-c", "echo hi $(NOPE) $(GREETING)"]);
        assert_eq!(cfg.args, vec!["hi"]);
        assert_eq!(cfg.working_dir, "/w");
        assert_eq!(cfg.log_path, "app/2.log");
        assert!(cfg.tty && cfg.stdin && !cfg.stdin_once);
        assert_eq!(
            cfg.envs,
            vec![KeyValue {
                key: "GREETING".into(),
                value: "hi".into()
            }]
        );
        assert_eq!(cfg.labels["io.kubernetes.container.name"], "app");
        assert_eq!(cfg.labels["io.kubernetes.pod.uid"], "u1");
        assert_eq!(cfg.annotations["io.kubernetes.container.restartCount"], "2");
        assert_eq!(
            cfg.annotations["io.kubernetes.container.terminationMessagePath"],
            "/dev/termination-log"
        );
        assert_eq!(
            cfg.annotations["io.kubernetes.container.terminationMessagePolicy"],
            "File"
        );
        assert_eq!(
            cfg.annotations["io.kubernetes.pod.terminationGracePeriod"],
            "30"
        );
        assert_eq!(
            cfg.annotations["io.kubernetes.container.ports"],
            "[{\"containerPort\":80}]"
        );
        assert_eq!(
            cfg.annotations["io.kubernetes.container.hash"],
            container_hash(&c)
        );
        let paths: Vec<(&str, &str, bool)> = cfg
            .mounts
            .iter()
            .map(|m| (m.container_path.as_str(), m.host_path.as_str(), m.readonly))
            .collect();
        assert_eq!(
            paths,
            vec![
                ("/data", "/pods/u1/volumes/data", false),
                ("/etc/app.conf", "/pods/u1/volumes/cfg/app.conf", true),
                ("/ro", "/pods/u1/volumes/data", true),
                ("/etc/hosts", "/pods/u1/etc-hosts", false),
                (
                    "/dev/termination-log",
                    "/pods/u1/containers/app/1234",
                    false
                ),
            ]
        );
        assert_eq!(
            cfg.mounts[2].propagation,
            MountPropagation::PropagationHostToContainer as i32
        );
        let linux = cfg.linux.unwrap();
        let r = linux.resources.unwrap();
        assert_eq!(
            (
                r.cpu_shares,
                r.cpu_quota,
                r.cpu_period,
                r.memory_limit_in_bytes
            ),
            (102, 20_000, 100_000, 128 << 20)
        );
        // Burstable: 1000 - 1000 * 64Mi / 8Gi = 993 (integer division).
        assert_eq!(r.oom_score_adj, 993);
        let sc = linux.security_context.unwrap();
        assert_eq!(sc.run_as_user.unwrap().value, 1000);
        assert_eq!(sc.run_as_group.unwrap().value, 3000);
        assert_eq!(sc.supplemental_groups, vec![2000]);
        assert!(sc.readonly_rootfs && sc.no_new_privs && !sc.privileged);
        let caps = sc.capabilities.unwrap();
        assert_eq!(
            (caps.add_capabilities, caps.drop_capabilities),
            (vec!["NET_ADMIN".to_string()], vec!["ALL".to_string()])
        );
        assert_eq!(sc.masked_paths.len(), DEFAULT_MASKED_PATHS.len());
        assert_eq!(
            sc.seccomp.unwrap().profile_type,
            ProfileType::Unconfined as i32
        );

        // Errors: unknown volume, escaping subPath.
        let mut o2 = o.clone();
        o2.volumes.remove("cfg");
        assert_eq!(
            container_config(&p, &c, &o2, &NoResolver)
                .unwrap_err()
                .to_string(),
            "cannot find volume \"cfg\" to mount into container \"app\""
        );
        let bad = json!({"name": "b", "volumeMounts": [{"name": "data", "mountPath": "/x", "subPath": "../etc"}]});
        assert!(matches!(
            container_config(&p, &bad, &o, &NoResolver),
            Err(ConfigError::InvalidSubPath(_))
        ));
    }

    /// `TestVerifyRunAsNonRoot` (security_context_others_test.go) rows.
    #[test]
    fn run_as_non_root() {
        let p = |pod_sc: Value, c_sc: Value| {
            let c = json!({"name": "c", "securityContext": c_sc});
            let mut p = pod_with(json!([c.clone()]));
            p["spec"]["securityContext"] = pod_sc;
            (p, c)
        };
        let check = |pod_sc: Value, c_sc: Value, uid: Option<i64>, user: &str| {
            let (p, c) = p(pod_sc, c_sc);
            let o = ContainerOptions {
                image_uid: uid,
                image_username: user.into(),
                ..Default::default()
            };
            verify_run_as_non_root(&p, &c, &o)
        };
        assert!(check(json!({}), json!({}), Some(0), "").is_ok());
        assert!(check(json!({"runAsNonRoot": false}), json!({}), Some(0), "").is_ok());
        assert!(check(
            json!({"runAsNonRoot": true}),
            json!({"runAsUser": 1000}),
            Some(0),
            ""
        )
        .is_ok());
        assert!(check(json!({"runAsNonRoot": true}), json!({}), Some(1000), "").is_ok());
        assert!(check(json!({"runAsNonRoot": true}), json!({}), None, "").is_ok());
        assert_eq!(
            check(
                json!({"runAsNonRoot": true}),
                json!({"runAsUser": 0}),
                None,
                ""
            )
            .unwrap_err()
            .to_string(),
            "container's runAsUser breaks non-root policy (pod: \"web_ns1(u1)\", container: c)"
        );
        assert_eq!(
            check(json!({}), json!({"runAsNonRoot": true}), Some(0), "").unwrap_err().to_string(),
            "container has runAsNonRoot and image will run as root (pod: \"web_ns1(u1)\", container: c)"
        );
        assert_eq!(
            check(json!({"runAsNonRoot": true}), json!({}), None, "nobody").unwrap_err().to_string(),
            "container has runAsNonRoot and image has non-numeric user (nobody), cannot verify user is non-root (pod: \"web_ns1(u1)\", container: c)"
        );
        // The pod's runAsUser applies when the container sets none.
        assert!(check(
            json!({"runAsNonRoot": true, "runAsUser": 5}),
            json!({}),
            Some(0),
            ""
        )
        .is_ok());
        // The image's user fills in runAsUser / runAsUsername.
        let (p, c) = p(json!({}), json!({}));
        let o = ContainerOptions {
            image_uid: Some(42),
            ..Default::default()
        };
        let sc = security_context(&p, &c, &o);
        assert_eq!(sc.run_as_user.unwrap().value, 42);
        let o = ContainerOptions {
            image_username: "www".into(),
            ..Default::default()
        };
        let sc = security_context(&p, &c, &o);
        assert!(sc.run_as_user.is_none());
        assert_eq!(sc.run_as_username, "www");
        assert!(!sc.no_new_privs);
    }
}
