//! The pure translation of a Pod (raw JSON, as the API server stores it)
//! into CRI requests, as upstream's kubelet does it
//! (`pkg/kubelet/kuberuntime`: `generatePodSandboxConfig`,
//! `generateContainerConfig` and their helpers; `pkg/kubelet/kubelet_pods.go`
//! for the environment; `pkg/kubelet/qos` for OOM scores).
//!
//! Nothing here does I/O: what the kubelet would look up (ConfigMaps and
//! Secrets, the image's user, volume host paths, the node's DNS and IPs) comes
//! from the caller through [`SandboxOptions`], [`ContainerOptions`] and
//! [`EnvResolver`].

mod container;
mod expansion;
mod quantity;
mod sandbox;

use serde_json::Value;

pub use container::{
    container_config, container_envs, pod_qos, ConfigError, ContainerOptions, EnvResolver,
    NoResolver, QosClass, ResolvedVolume,
};
pub use expansion::expand;
pub use quantity::{Quantity, QuantityError};
pub use sandbox::{parse_resolv_conf, pod_dns_config, sandbox_config, HostDns, SandboxOptions};

/// Labels the kubelet puts on sandboxes and containers.
pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";
pub const CONTAINER_HASH_ANNOTATION: &str = "io.kubernetes.container.hash";
pub const CONTAINER_RESTART_COUNT_ANNOTATION: &str = "io.kubernetes.container.restartCount";
pub const TERMINATION_MESSAGE_PATH_ANNOTATION: &str =
    "io.kubernetes.container.terminationMessagePath";
pub const TERMINATION_MESSAGE_POLICY_ANNOTATION: &str =
    "io.kubernetes.container.terminationMessagePolicy";
pub const POD_TERMINATION_GRACE_PERIOD_ANNOTATION: &str =
    "io.kubernetes.pod.terminationGracePeriod";
pub const POD_DELETION_GRACE_PERIOD_ANNOTATION: &str = "io.kubernetes.pod.deletionGracePeriod";
pub const CONTAINER_PORTS_ANNOTATION: &str = "io.kubernetes.container.ports";
pub const CONTAINER_PRESTOP_ANNOTATION: &str = "io.kubernetes.container.preStopHandler";

pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path).and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    if cur.is_null() {
        None
    } else {
        Some(cur)
    }
}

pub(crate) fn bool_at(v: &Value, path: &[&str]) -> bool {
    at(v, path).and_then(Value::as_bool).unwrap_or(false)
}

pub(crate) fn array_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// All of a pod's containers: init containers, then containers, then
/// ephemeral containers.
pub(crate) fn all_containers(pod: &Value) -> impl Iterator<Item = &Value> {
    array_at(pod, &["spec", "initContainers"])
        .iter()
        .chain(array_at(pod, &["spec", "containers"]))
        .chain(array_at(pod, &["spec", "ephemeralContainers"]))
}

/// upstream's `format.Pod`: `name_namespace(uid)`.
pub(crate) fn format_pod(pod: &Value) -> String {
    format!(
        "{}_{}({})",
        str_at(pod, &["metadata", "name"]),
        str_at(pod, &["metadata", "namespace"]),
        str_at(pod, &["metadata", "uid"])
    )
}
