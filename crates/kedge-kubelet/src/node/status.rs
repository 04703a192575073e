//! The Node's status as the upstream kubelet's status setters build it
//! (pkg/kubelet/nodestatus): capacity and allocatable, nodeInfo,
//! addresses, daemon endpoints, images and the four conditions, as JSON
//! ready for a strategic merge patch of `nodes/<name>/status`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::eviction::{EvictionThresholds, Pressure};
use super::machine::MachineInfo;
use super::quantity::{binary_si, decimal_si, millicores};
use crate::cri::api::Image;

/// Upstream's `nodeStatusMaxImages` default.
pub const MAX_IMAGES_IN_NODE_STATUS: usize = 50;
/// Upstream's `MaxNamesPerImageInNodeStatus`.
pub const MAX_NAMES_PER_IMAGE: usize = 5;

/// Resources of the node, as numbers (capacity or allocatable).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeResources {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub ephemeral_storage_bytes: u64,
    pub pods: u64,
    /// Page size in bytes -> bytes of that size reserved.
    pub hugepages: BTreeMap<u64, u64>,
}

impl NodeResources {
    /// As `status.capacity`/`status.allocatable` write them.
    pub fn to_quantities(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        out.insert("cpu".to_owned(), millicores(self.cpu_millis));
        out.insert("memory".to_owned(), binary_si(self.memory_bytes));
        out.insert(
            "ephemeral-storage".to_owned(),
            binary_si(self.ephemeral_storage_bytes),
        );
        out.insert("pods".to_owned(), decimal_si(self.pods));
        for (page, bytes) in &self.hugepages {
            out.insert(format!("hugepages-{}", binary_si(*page)), binary_si(*bytes));
        }
        out
    }
}

/// `--system-reserved` (and `--kube-reserved`, which adds up the same way).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemReserved {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub ephemeral_storage_bytes: u64,
}

/// Capacity from the machine (cAdvisor's `CapacityFromMachineInfo` plus
/// the root filesystem and `maxPods`).
pub fn capacity(machine: &MachineInfo, nodefs_capacity: u64, max_pods: u64) -> NodeResources {
    NodeResources {
        cpu_millis: machine.num_cores.saturating_mul(1000),
        memory_bytes: machine.memory_bytes,
        ephemeral_storage_bytes: nodefs_capacity,
        pods: max_pods,
        hugepages: machine.hugepages.iter().copied().collect(),
    }
}

/// Allocatable: capacity minus the reservations and the hard eviction
/// thresholds (`GetNodeAllocatableReservation`), and memory minus the
/// pre-allocated hugepages; never negative.
pub fn allocatable(
    capacity: &NodeResources,
    reserved: &SystemReserved,
    eviction: &EvictionThresholds,
) -> NodeResources {
    let hugepages: u64 = capacity.hugepages.values().sum();
    NodeResources {
        cpu_millis: capacity.cpu_millis.saturating_sub(reserved.cpu_millis),
        memory_bytes: capacity
            .memory_bytes
            .saturating_sub(reserved.memory_bytes)
            .saturating_sub(eviction.memory_reservation(capacity.memory_bytes))
            .saturating_sub(hugepages),
        ephemeral_storage_bytes: capacity
            .ephemeral_storage_bytes
            .saturating_sub(reserved.ephemeral_storage_bytes)
            .saturating_sub(
                eviction.ephemeral_storage_reservation(capacity.ephemeral_storage_bytes),
            ),
        pods: capacity.pods,
        hugepages: capacity.hugepages.clone(),
    }
}

/// Go's `GOARCH` for the build target.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// `status.nodeInfo`.
pub fn node_info(machine: &MachineInfo, runtime_version: &str, kubelet_version: &str) -> Value {
    json!({
        "machineID": machine.machine_id,
        "systemUUID": machine.system_uuid,
        "bootID": machine.boot_id,
        "kernelVersion": machine.kernel_version,
        "osImage": machine.os_image,
        "containerRuntimeVersion": runtime_version,
        "kubeletVersion": kubelet_version,
        // DisableNodeKubeProxyVersion is on by default since 1.33.
        "kubeProxyVersion": "",
        "operatingSystem": std::env::consts::OS,
        "architecture": go_arch(),
        "swap": {"capacity": machine.swap_bytes},
    })
}

/// `status.images`: the biggest 50, digests then tags, at most 5 names each.
pub fn images(mut list: Vec<Image>) -> Value {
    list.sort_by_key(|image| std::cmp::Reverse(image.size));
    let images: Vec<Value> = list
        .into_iter()
        .take(MAX_IMAGES_IN_NODE_STATUS)
        .map(|image| {
            let names: Vec<String> = image
                .repo_digests
                .into_iter()
                .chain(image.repo_tags)
                .take(MAX_NAMES_PER_IMAGE)
                .collect();
            json!({"names": names, "sizeBytes": image.size})
        })
        .collect();
    Value::Array(images)
}

/// Join errors as apimachinery's `NewAggregate(...).Error()` does: one
/// message alone, several (duplicates dropped) as `[a, b]`.
pub fn aggregate(errors: &[String]) -> Option<String> {
    let mut seen = BTreeSet::new();
    let unique: Vec<&String> = errors.iter().filter(|e| seen.insert(*e)).collect();
    match unique.len() {
        0 => None,
        1 => Some(unique[0].clone()),
        _ => Some(format!(
            "[{}]",
            unique
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The condition types the agent owns, in upstream's order (Ready last).
pub const CONDITION_TYPES: [&str; 4] = ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"];

/// The four conditions, given the conditions the Node has now (for the
/// transition times), what is under pressure, and why the node is not
/// ready (`None`: ready). `now` is an RFC 3339 time.
pub fn conditions(
    previous: &[Value],
    pressure: Pressure,
    not_ready: Option<&str>,
    now: &str,
) -> Vec<Value> {
    let (ready_status, ready_reason, ready_message) = match not_ready {
        None => (
            "True",
            "KubeletReady",
            "kubelet is posting ready status".to_owned(),
        ),
        Some(msg) => ("False", "KubeletNotReady", msg.to_owned()),
    };
    let pressure_condition =
        |on: bool, yes: (&'static str, &'static str), no: (&'static str, &'static str)| {
            if on {
                ("True", yes.0, yes.1.to_owned())
            } else {
                ("False", no.0, no.1.to_owned())
            }
        };
    let wanted = [
        pressure_condition(
            pressure.memory,
            (
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            ),
            (
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
        ),
        pressure_condition(
            pressure.disk,
            ("KubeletHasDiskPressure", "kubelet has disk pressure"),
            ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ),
        pressure_condition(
            pressure.pid,
            (
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            ),
            (
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
        ),
        (ready_status, ready_reason, ready_message),
    ];
    CONDITION_TYPES
        .iter()
        .zip(wanted)
        .map(|(kind, (status, reason, message))| {
            let old = previous.iter().find(|c| c["type"] == *kind);
            let transition = match old {
                Some(o) if o["status"] == status => o
                    .get("lastTransitionTime")
                    .cloned()
                    .filter(|t| !t.is_null())
                    .unwrap_or_else(|| json!(now)),
                _ => json!(now),
            };
            json!({
                "type": kind,
                "status": status,
                "lastHeartbeatTime": now,
                "lastTransitionTime": transition,
                "reason": reason,
                "message": message,
            })
        })
        .collect()
}

/// `status.addresses`: the InternalIPs, then the Hostname.
pub fn addresses(internal_ips: &[std::net::IpAddr], hostname: &str) -> Value {
    let mut out: Vec<Value> = internal_ips
        .iter()
        .map(|ip| json!({"type": "InternalIP", "address": ip.to_string()}))
        .collect();
    out.push(json!({"type": "Hostname", "address": hostname}));
    Value::Array(out)
}

/// The agent-owned fields of `status` as they would compare: conditions
/// without their heartbeat times (upstream's `nodeStatusHasChanged`).
pub fn comparable(status: &Value) -> Value {
    let mut out = Map::new();
    for key in [
        "capacity",
        "allocatable",
        "addresses",
        "daemonEndpoints",
        "nodeInfo",
        "images",
    ] {
        out.insert(
            key.to_owned(),
            status.get(key).cloned().unwrap_or(Value::Null),
        );
    }
    let conditions: Vec<Value> = CONDITION_TYPES
        .iter()
        .map(|kind| {
            status
                .get("conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == *kind))
                .map(|c| {
                    let mut c = c.clone();
                    if let Some(o) = c.as_object_mut() {
                        o.remove("lastHeartbeatTime");
                    }
                    c
                })
                .unwrap_or(Value::Null)
        })
        .collect();
    out.insert("conditions".to_owned(), Value::Array(conditions));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> MachineInfo {
        MachineInfo {
            num_cores: 4,
            memory_bytes: 8_000_000 * 1024,
            swap_bytes: 0,
            hugepages: vec![(2 * 1024 * 1024, 0), (1024 * 1024 * 1024, 0)],
            machine_id: "m".into(),
            system_uuid: "u".into(),
            boot_id: "b".into(),
            kernel_version: "6.1.0".into(),
            os_image: "Debian".into(),
        }
    }

    #[test]
    fn capacity_and_allocatable_read_like_upstream() {
        let cap = capacity(&machine(), 61_202_244 * 1024, 110);
        let q = cap.to_quantities();
        assert_eq!(q["cpu"], "4");
        assert_eq!(q["memory"], "8000000Ki");
        assert_eq!(q["ephemeral-storage"], "61202244Ki");
        assert_eq!(q["pods"], "110");
        assert_eq!(q["hugepages-2Mi"], "0");
        assert_eq!(q["hugepages-1Gi"], "0");

        let alloc = allocatable(
            &cap,
            &SystemReserved {
                cpu_millis: 100,
                memory_bytes: 0,
                ephemeral_storage_bytes: 0,
            },
            &EvictionThresholds::default(),
        );
        let q = alloc.to_quantities();
        assert_eq!(q["cpu"], "3900m");
        assert_eq!(q["memory"], "7897600Ki");
        // capacity - float32(10%) of it, truncated: not a multiple of 1Ki.
        assert_eq!(q["ephemeral-storage"], "56403987978");
        assert_eq!(q["pods"], "110");
    }

    #[test]
    fn hugepages_come_out_of_allocatable_memory() {
        let mut m = machine();
        m.hugepages = vec![(2 * 1024 * 1024, 512 * 2 * 1024 * 1024)];
        let cap = capacity(&m, 1 << 30, 110);
        assert_eq!(cap.to_quantities()["hugepages-2Mi"], "1Gi");
        let alloc = allocatable(
            &cap,
            &SystemReserved::default(),
            &EvictionThresholds::default(),
        );
        assert_eq!(
            alloc.memory_bytes,
            8_000_000 * 1024 - 100 * 1024 * 1024 - 1024 * 1024 * 1024
        );
        // More reserved than there is: zero, not negative.
        let alloc = allocatable(
            &cap,
            &SystemReserved {
                cpu_millis: 10_000,
                memory_bytes: u64::MAX / 2,
                ephemeral_storage_bytes: 0,
            },
            &EvictionThresholds::default(),
        );
        assert_eq!((alloc.cpu_millis, alloc.memory_bytes), (0, 0));
    }

    #[test]
    fn errors_aggregate_like_apimachinery() {
        assert_eq!(aggregate(&[]), None);
        assert_eq!(aggregate(&["a".into()]).as_deref(), Some("a"));
        assert_eq!(aggregate(&["a".into(), "a".into()]).as_deref(), Some("a"));
        assert_eq!(
            aggregate(&["a".into(), "b".into()]).as_deref(),
            Some("[a, b]")
        );
    }

    #[test]
    fn transition_times_move_only_on_change() {
        let t0 = "2024-01-01T00:00:00Z";
        let t1 = "2024-01-01T00:00:10Z";
        let first = conditions(&[], Pressure::default(), Some("not yet"), t0);
        assert_eq!(
            first
                .iter()
                .map(|c| c["type"].as_str().unwrap_or(""))
                .collect::<Vec<_>>(),
            CONDITION_TYPES
        );
        assert_eq!(first[0]["reason"], "KubeletHasSufficientMemory");
        assert_eq!(first[1]["reason"], "KubeletHasNoDiskPressure");
        assert_eq!(first[2]["message"], "kubelet has sufficient PID available");
        assert_eq!(first[3]["status"], "False");
        assert_eq!(first[3]["reason"], "KubeletNotReady");

        let second = conditions(
            &first,
            Pressure {
                disk: true,
                ..Pressure::default()
            },
            None,
            t1,
        );
        assert_eq!(second[0]["lastTransitionTime"], t0);
        assert_eq!(second[0]["lastHeartbeatTime"], t1);
        assert_eq!(second[1]["status"], "True");
        assert_eq!(second[1]["reason"], "KubeletHasDiskPressure");
        assert_eq!(second[1]["lastTransitionTime"], t1);
        assert_eq!(second[3]["status"], "True");
        assert_eq!(second[3]["reason"], "KubeletReady");
        assert_eq!(second[3]["message"], "kubelet is posting ready status");
        assert_eq!(second[3]["lastTransitionTime"], t1);

        // Only the heartbeat moved: nothing to report.
        let third = conditions(
            &second,
            Pressure {
                disk: true,
                ..Pressure::default()
            },
            None,
            "2024-01-01T00:00:20Z",
        );
        let status = |cs: Vec<Value>| json!({"conditions": cs});
        assert_eq!(comparable(&status(second)), comparable(&status(third)));
    }

    #[test]
    fn images_are_biggest_first_and_capped() {
        let list: Vec<Image> = (0..60u64)
            .map(|i| Image {
                id: format!("sha256:{i}"),
                repo_tags: (0..4).map(|t| format!("img{i}:t{t}")).collect(),
                repo_digests: (0..3).map(|d| format!("img{i}@sha256:{d}")).collect(),
                size: i * 10,
                ..Image::default()
            })
            .collect();
        let v = images(list);
        let arr = v.as_array().expect("array");
        assert_eq!(arr.len(), MAX_IMAGES_IN_NODE_STATUS);
        assert_eq!(arr[0]["sizeBytes"], 590);
        assert_eq!(arr[49]["sizeBytes"], 100);
        let names = arr[0]["names"].as_array().expect("names");
        assert_eq!(names.len(), MAX_NAMES_PER_IMAGE);
        assert_eq!(names[0], "img59@sha256:0");
        assert_eq!(names[3], "img59:t0");
    }

    #[test]
    fn node_info_and_addresses() {
        let info = node_info(&machine(), "containerd://1.6.20", "v1.33.0+kedge");
        assert_eq!(info["containerRuntimeVersion"], "containerd://1.6.20");
        assert_eq!(info["kubeProxyVersion"], "");
        assert_eq!(info["operatingSystem"], "linux");
        assert!(["amd64", "arm64"].contains(&info["architecture"].as_str().unwrap_or("")));
        let a = addresses(&["10.0.0.5".parse().expect("ip")], "edge-1");
        assert_eq!(
            a,
            json!([{"type": "InternalIP", "address": "10.0.0.5"}, {"type": "Hostname", "address": "edge-1"}])
        );
    }
}
