//! Unit tests of the node agent above a fake host and the fake runtime.

use std::fs;
use std::path::Path;

use super::*;
use crate::cri::api::{RuntimeCondition, RuntimeStatus};
use crate::FakeRuntime;

const KI: u64 = 1024;

/// A fake host: 4 CPUs, 8000000 kB of memory, a 2 MiB hugepage size with
/// nothing reserved, cgroup v1 memory accounting.
fn fake_host(root: &Path, working_set_kib: u64) {
    let write = |rel: &str, text: &str| {
        let path = root.join(rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).expect("mkdir");
        }
        fs::write(path, text).expect("write");
    };
    write(
        "proc/meminfo",
        "MemTotal:        8000000 kB\nMemFree:         4000000 kB\nMemAvailable:    6000000 kB\nSwapTotal:        524288 kB\n",
    );
    write("sys/devices/system/cpu/online", "0-3\n");
    write("etc/machine-id", "0123456789abcdef0123456789abcdef\n");
    write(
        "etc/os-release",
        "NAME=\"Kedge OS\"\nPRETTY_NAME=\"Kedge OS 1 (test)\"\n",
    );
    write(
        "proc/sys/kernel/random/boot_id",
        "11111111-2222-3333-4444-555555555555\n",
    );
    write("proc/sys/kernel/osrelease", "6.1.0-test-amd64\n");
    write(
        "sys/class/dmi/id/product_uuid",
        "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE\n",
    );
    write(
        "sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
        "0\n",
    );
    write(
        "sys/fs/cgroup/memory/memory.usage_in_bytes",
        &format!("{}\n", (working_set_kib + 1000) * KI),
    );
    write(
        "sys/fs/cgroup/memory/memory.stat",
        &format!("cache 1\ntotal_inactive_file {}\n", 1000 * KI),
    );
    write("proc/sys/kernel/pid_max", "4194304\n");
    write("proc/sys/kernel/threads-max", "62000\n");
    write("proc/loadavg", "0.10 0.20 0.30 2/345 6789\n");
}

#[test]
fn machine_info_reads_the_fake_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    fake_host(dir.path(), 1_000_000);
    let host = HostRoot::new(dir.path());
    let m = host.machine_info().expect("machine info");
    assert_eq!(m.num_cores, 4);
    assert_eq!(m.memory_bytes, 8_000_000 * KI);
    assert_eq!(m.swap_bytes, 524_288 * KI);
    assert_eq!(m.hugepages, vec![(2048 * KI, 0)]);
    assert_eq!(m.machine_id, "0123456789abcdef0123456789abcdef");
    assert_eq!(m.system_uuid, "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE");
    assert_eq!(m.boot_id, "11111111-2222-3333-4444-555555555555");
    assert_eq!(m.kernel_version, "6.1.0-test-amd64");
    assert_eq!(m.os_image, "Kedge OS 1 (test)");

    let meminfo = host.meminfo().expect("meminfo");
    assert_eq!(host.memory_working_set(&meminfo), 1_000_000 * KI);
    assert_eq!(host.pid_stats(), Some((62_000, 345)));
}

#[test]
fn a_sparse_host_still_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = HostRoot::new(dir.path());
    assert!(matches!(
        host.machine_info(),
        Err(NodeError::HostRead { .. })
    ));
    fs::create_dir_all(dir.path().join("proc")).expect("mkdir");
    fs::write(
        dir.path().join("proc/meminfo"),
        "MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 400 kB\n",
    )
    .expect("write");
    fs::write(
        dir.path().join("proc/cpuinfo"),
        "processor\t: 0\nprocessor\t: 1\n",
    )
    .expect("write");
    let m = host.machine_info().expect("machine info");
    assert_eq!(m.num_cores, 2, "counted from /proc/cpuinfo");
    assert_eq!(m.machine_id, "");
    assert_eq!(m.os_image, "Linux", "cAdvisor's default");
    assert!(m.hugepages.is_empty());
    // Without cgroup files: total - MemAvailable.
    let meminfo = host.meminfo().expect("meminfo");
    assert_eq!(host.memory_working_set(&meminfo), 600 * KI);
    // cgroup v2: (total - free) - inactive_file of the root memory.stat.
    fs::create_dir_all(dir.path().join("sys/fs/cgroup")).expect("mkdir");
    fs::write(
        dir.path().join("sys/fs/cgroup/memory.stat"),
        format!("anon 1\ninactive_file {}\n", 300 * KI),
    )
    .expect("write");
    assert_eq!(host.memory_working_set(&meminfo), 600 * KI);
    assert_eq!(host.pid_stats(), None);
}

#[test]
fn runtime_health_messages_are_the_kubelets() {
    let start = Instant::now();
    let mut h = RuntimeHealth::default();
    assert_eq!(
        h.errors(start, Duration::from_secs(30)),
        ["container runtime status check may not have completed yet"]
    );
    let cond = |t: &str, ok: bool, reason: &str, message: &str| RuntimeCondition {
        r#type: t.to_owned(),
        status: ok,
        reason: reason.to_owned(),
        message: message.to_owned(),
    };
    h.update(
        &RuntimeStatus {
            conditions: vec![
                cond("RuntimeReady", true, "", ""),
                cond(
                    "NetworkReady",
                    false,
                    "NetworkPluginNotReady",
                    "Network plugin returns error: cni plugin not initialized",
                ),
            ],
        },
        start,
    );
    assert_eq!(
        h.errors(start, Duration::from_secs(30)),
        ["container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized"]
    );
    h.update(
        &RuntimeStatus {
            conditions: vec![cond("NetworkReady", true, "", "")],
        },
        start + Duration::from_secs(5),
    );
    assert_eq!(
        h.errors(start + Duration::from_secs(5), Duration::from_secs(30)),
        ["container runtime not ready: <nil>"]
    );
    // No good status for the threshold: the runtime is down.
    assert_eq!(
        h.errors(start + Duration::from_secs(31), Duration::from_secs(30)),
        [
            "container runtime is down",
            "container runtime not ready: <nil>"
        ]
    );
    assert_eq!(
        status::aggregate(&h.errors(start + Duration::from_secs(31), Duration::from_secs(30)))
            .as_deref(),
        Some("[container runtime is down, container runtime not ready: <nil>]")
    );
}

#[test]
fn existing_nodes_get_the_default_labels_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config =
        NodeAgentConfig::new("Edge-1", dir.path(), dir.path().join("net.d"), "v1.33.0");
    config.control_plane = true;
    config.labels.insert("site".into(), "store-42".into());
    let labels = config.node_labels();
    assert_eq!(labels["kubernetes.io/hostname"], "edge-1");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(
        labels["beta.kubernetes.io/arch"],
        labels["kubernetes.io/arch"]
    );
    assert_eq!(labels[CONTROL_PLANE_LABEL], "true");
    assert_eq!(labels[MASTER_LABEL], "true");
    assert_eq!(labels["site"], "store-42");

    let existing = json!({"metadata": {"name": "Edge-1", "labels": {
        "kubernetes.io/hostname": "old", "kubernetes.io/os": "linux", "mine": "kept"}}});
    let patch = label_reconcile_patch(&existing, &labels).expect("a patch");
    assert_eq!(
        patch["metadata"]["labels"]["kubernetes.io/hostname"],
        "edge-1"
    );
    assert!(patch["metadata"]["labels"]
        .get("kubernetes.io/os")
        .is_none());
    assert!(patch["metadata"]["labels"].get("mine").is_none());
    assert_eq!(
        patch["metadata"]["annotations"][CONTROLLER_MANAGED_ATTACH_DETACH],
        "true"
    );

    let mut current = existing.clone();
    current["metadata"]["labels"] = json!(labels);
    current["metadata"]["annotations"] = json!({CONTROLLER_MANAGED_ATTACH_DETACH: "true"});
    assert_eq!(label_reconcile_patch(&current, &labels), None);
}

#[test]
fn timestamps_are_metav1s() {
    let t = rfc3339_now();
    assert_eq!(t.len(), "2024-01-01T00:00:00Z".len(), "{t}");
    assert!(t.ends_with('Z'));
    let m = rfc3339_micros_now();
    assert_eq!(m.len(), "2024-01-01T00:00:00.000000Z".len(), "{m}");
    assert!(m.parse::<jiff::Timestamp>().is_ok());
}

/// A client for an API that answers every request with 503: the tests
/// below never reach it.
fn unreachable_client() -> kube::Client {
    let svc = tower::service_fn(|_req: http::Request<kube::client::Body>| async {
        let body = serde_json::to_vec(&json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 503, "reason": "ServiceUnavailable", "message": "no API in unit tests"}))
            .unwrap_or_default();
        http::Response::builder()
            .status(503)
            .header("content-type", "application/json")
            .body(kube::client::Body::from(body))
    });
    kube::Client::new(svc, "default")
}

fn agent(dir: &Path, working_set_kib: u64) -> NodeAgent<FakeRuntime> {
    let host = dir.join("host");
    fake_host(&host, working_set_kib);
    let mut config = NodeAgentConfig::new(
        "edge-1",
        dir.join("data"),
        dir.join("net.d"),
        "v1.33.0+kedge",
    );
    fs::create_dir_all(&config.root_dir).expect("mkdir");
    config.host_root = HostRoot::new(&host);
    config.internal_ips = vec!["10.0.0.5".parse().expect("ip")];
    config.system_reserved.cpu_millis = 500;
    config.pod_network.ip_masq = false;
    let runtime = FakeRuntime::new();
    runtime.add_image("kedge.local/pause:3.10");
    NodeAgent::new(unreachable_client(), Arc::new(runtime), config).expect("agent")
}

fn sync_state(agent: &NodeAgent<FakeRuntime>) -> StatusSync {
    StatusSync {
        pressure: PressureTracker::new(agent.config.eviction_pressure_transition_period),
        health: RuntimeHealth::default(),
        last_report: None,
        runtime_name: None,
    }
}

fn condition<'a>(status: &'a Value, kind: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn status_is_computed_from_host_and_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = agent(dir.path(), 1_000_000);
    let handle = agent.handle();
    let mut sync = sync_state(&agent);
    let status = agent.compute_status(&mut sync, &[]).await.expect("status");

    assert_eq!(status["capacity"]["cpu"], "4");
    assert_eq!(status["capacity"]["memory"], "8000000Ki");
    assert_eq!(status["capacity"]["pods"], "110");
    assert_eq!(status["capacity"]["hugepages-2Mi"], "0");
    assert_eq!(status["allocatable"]["cpu"], "3500m");
    assert_eq!(status["allocatable"]["memory"], "7897600Ki");
    let eph = fs_stats(&dir.path().join("data"))
        .expect("statvfs")
        .capacity_bytes;
    assert_eq!(
        status["capacity"]["ephemeral-storage"],
        quantity::binary_si(eph)
    );

    let info = &status["nodeInfo"];
    assert_eq!(info["containerRuntimeVersion"], "fake://0.1.0");
    assert_eq!(info["kubeletVersion"], "v1.33.0+kedge");
    assert_eq!(info["machineID"], "0123456789abcdef0123456789abcdef");
    assert_eq!(info["bootID"], "11111111-2222-3333-4444-555555555555");
    assert_eq!(info["kernelVersion"], "6.1.0-test-amd64");
    assert_eq!(info["osImage"], "Kedge OS 1 (test)");
    assert_eq!(info["swap"]["capacity"], 524_288 * KI);
    assert_eq!(status["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
    assert_eq!(
        status["addresses"][0],
        json!({"type": "InternalIP", "address": "10.0.0.5"})
    );
    assert_eq!(
        status["addresses"][1],
        json!({"type": "Hostname", "address": "edge-1"})
    );
    assert_eq!(status["images"][0]["names"][0], "kedge.local/pause:3.10");
    assert_eq!(status["images"][0]["sizeBytes"], 1024 * 1024);

    // No podCIDR yet: not Ready, for the network.
    let ready = condition(&status, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "KubeletNotReady");
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("container runtime network not ready: NetworkReady=false"),
        "{ready}"
    );
    assert_eq!(condition(&status, "MemoryPressure")["status"], "False");
    assert_eq!(
        condition(&status, "PIDPressure")["reason"],
        "KubeletHasSufficientPID"
    );
    let state = handle.current();
    assert!(!state.ready);
    assert_eq!(state.allocatable.as_ref().map(|a| a.cpu_millis), Some(3500));
    assert_eq!(
        state.addresses.first().map(|a| a.kind.as_str()),
        Some("InternalIP")
    );

    // The podCIDR arrives: CNI config written, network ready, Ready True
    // with a new transition time.
    let node = json!({"metadata": {"name": "edge-1"}, "spec": {"podCIDR": "10.244.3.0/24", "podCIDRs": ["10.244.3.0/24"]}});
    let mut written = Vec::new();
    agent.apply_pod_cidrs(&node, &mut written).expect("cni");
    assert_eq!(written, ["10.244.3.0/24"]);
    let conflist: Value = serde_json::from_slice(
        &fs::read(dir.path().join("net.d/10-kedge.conflist")).expect("conflist"),
    )
    .expect("json");
    assert_eq!(
        conflist["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
        "10.244.3.0/24"
    );
    assert_eq!(conflist["plugins"][0]["ipMasq"], false);
    assert_eq!(handle.pod_cidr().await.as_deref(), Some("10.244.3.0/24"));

    let previous = status["conditions"].as_array().cloned().unwrap_or_default();
    let later = agent
        .compute_status(&mut sync, &previous)
        .await
        .expect("status");
    let ready = condition(&later, "Ready");
    assert_eq!(ready["status"], "True");
    assert_eq!(ready["reason"], "KubeletReady");
    assert_eq!(ready["message"], "kubelet is posting ready status");
    assert!(handle.current().ready);
    assert_eq!(
        condition(&later, "MemoryPressure")["lastTransitionTime"],
        condition(&status, "MemoryPressure")["lastTransitionTime"]
    );
}

#[tokio::test]
async fn memory_pressure_follows_the_working_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 8000000 Ki total, 7950000 Ki in the working set: 50000 Ki < 100Mi left.
    let agent = agent(dir.path(), 7_950_000);
    let mut sync = sync_state(&agent);
    let status = agent.compute_status(&mut sync, &[]).await.expect("status");
    let c = condition(&status, "MemoryPressure");
    assert_eq!(c["status"], "True");
    assert_eq!(c["reason"], "KubeletHasInsufficientMemory");
    assert_eq!(c["message"], "kubelet has insufficient memory available");
    assert!(agent.handle().current().pressure.memory);

    // Recovered, but within the transition period: still under pressure.
    fake_host(&dir.path().join("host"), 1_000_000);
    let previous = status["conditions"].as_array().cloned().unwrap_or_default();
    let status = agent
        .compute_status(&mut sync, &previous)
        .await
        .expect("status");
    assert_eq!(condition(&status, "MemoryPressure")["status"], "True");
}

#[tokio::test]
async fn a_failing_runtime_keeps_the_node_not_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = agent(dir.path(), 1_000_000);
    agent.runtime.inject_error(
        "Status",
        tonic::Status::unavailable("containerd is restarting"),
    );
    agent.runtime.inject_error(
        "Version",
        tonic::Status::unavailable("containerd is restarting"),
    );
    let mut sync = sync_state(&agent);
    let node = json!({"spec": {"podCIDRs": ["10.244.0.0/24"]}});
    agent.apply_pod_cidrs(&node, &mut Vec::new()).expect("cni");
    let status = agent.compute_status(&mut sync, &[]).await.expect("status");
    let ready = condition(&status, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(
        ready["message"],
        "container runtime status check may not have completed yet"
    );
    assert_eq!(
        status["nodeInfo"]["containerRuntimeVersion"],
        "Unknown://Unknown"
    );
}

#[tokio::test]
async fn bad_configs_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = NodeAgentConfig::new("", dir.path(), dir.path(), "v1");
    assert!(matches!(
        NodeAgent::new(unreachable_client(), Arc::new(FakeRuntime::new()), config),
        Err(NodeError::Config(_))
    ));
}
