//! The node agent's Node against a real `kedge server` over HTTPS: node
//! IPAM gives the Node a podCIDR, the agent registers it with its labels,
//! addresses, capacity and nodeInfo, writes the CNI configuration, turns
//! Ready, renews its Lease, and `kubectl get nodes` shows it.
//!
//! The runtime is the in-memory fake (this test is about the Node, not
//! pods); the pod network is a test-only range with masquerade off.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{condition_or_null, get_json, post_json, raw, TestServer};
use kedge_kubelet::{FakeRuntime, NodeAgent, NodeAgentConfig, NodeHandle};
use serde_json::{json, Value};

const CLUSTER_CIDR: &str = "10.250.0.0/16";
const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

struct RunningAgent {
    handle: NodeHandle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningAgent {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

fn config(dir: &std::path::Path) -> NodeAgentConfig {
    let mut config = NodeAgentConfig::new(
        "edge-node-1",
        dir.join("agent"),
        dir.join("net.d"),
        "v1.33.0+kedge",
    );
    std::fs::create_dir_all(&config.root_dir).expect("agent dir");
    config.internal_ips = vec!["127.0.0.1".parse().expect("ip")];
    config.control_plane = true;
    // The pressure logic has its own unit tests; this test wants a healthy
    // node whatever the build machine's disk holds.
    config.eviction_hard =
        kedge_kubelet::node::EvictionThresholds::parse(common::TEST_EVICTION_HARD)
            .expect("thresholds");
    config
        .labels
        .insert("kedge.test/site".into(), "store-42".into());
    config.system_reserved.cpu_millis = 100;
    config.pod_network.ip_masq = false;
    config.pod_network.bridge = "kedgetest0".into();
    // Shortened so the test is quick; the defaults are upstream's.
    config.node_status_update_frequency = Duration::from_millis(500);
    config.node_status_report_frequency = Duration::from_secs(2);
    config.node_lease_renew_interval = Duration::from_millis(500);
    config.retry_interval = Duration::from_millis(200);
    config
}

async fn start_agent(server: &TestServer, config: NodeAgentConfig) -> RunningAgent {
    let runtime = FakeRuntime::new();
    runtime.add_image("kedge.local/pause:3.10");
    runtime.add_image("docker.io/library/busybox:1.36");
    let agent =
        NodeAgent::new(server.client().await, Arc::new(runtime), config).expect("node agent");
    let handle = agent.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(agent.run(async move {
        let _ = stopped.await;
    }));
    RunningAgent {
        handle,
        stop: Some(stop),
        task,
    }
}

/// Poll `path` until `pred` holds; panics with the last object after `secs`.
async fn wait_json(
    client: &kube::Client,
    path: &str,
    secs: u64,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (code, v) = get_json(client, path).await;
        if code == 200 && pred(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{path} did not get there in {secs}s: {code} {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn in_cluster_cidr(cidr: &str) -> bool {
    cidr.starts_with("10.250.") && cidr.ends_with(".0/24")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_agent_registers_a_ready_node() {
    let server = TestServer::start(&["--cluster-cidr", CLUSTER_CIDR]).await;
    let client = server.client().await;
    let dir = tempfile::tempdir().expect("tempdir");

    // Node IPAM: a Node created by anyone gets a /24 of the cluster CIDR.
    let (code, _) = post_json(
        &client,
        "/api/v1/nodes",
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "spare"}}),
    )
    .await;
    assert_eq!(code, 201);
    let spare = wait_json(&client, "/api/v1/nodes/spare", 10, |n| {
        n.pointer("/spec/podCIDR").is_some()
    })
    .await;
    let spare_cidr = spare["spec"]["podCIDR"].as_str().unwrap_or("").to_owned();
    assert!(in_cluster_cidr(&spare_cidr), "{spare_cidr}");
    assert_eq!(spare["spec"]["podCIDRs"], json!([spare_cidr]));

    // The agent registers its node; IPAM gives it another range; the CNI
    // configuration for it is written.
    let agent = start_agent(&server, config(dir.path())).await;
    let pod_cidr = tokio::time::timeout(Duration::from_secs(15), agent.handle.pod_cidr())
        .await
        .expect("a podCIDR within 15s")
        .expect("the agent is running");
    assert!(in_cluster_cidr(&pod_cidr), "{pod_cidr}");
    assert_ne!(pod_cidr, spare_cidr);
    let conflist: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("net.d/10-kedge.conflist")).expect("CNI conflist"),
    )
    .expect("json");
    assert_eq!(
        conflist["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
        pod_cidr
    );
    assert_eq!(conflist["plugins"][0]["bridge"], "kedgetest0");
    assert_eq!(conflist["plugins"][0]["ipMasq"], false);

    // Ready once the network is.
    let node = wait_json(&client, "/api/v1/nodes/edge-node-1", 15, |n| {
        condition_or_null(n, "Ready")["status"] == "True"
    })
    .await;
    assert_eq!(node["spec"]["podCIDR"], pod_cidr);
    let ready = condition_or_null(&node, "Ready");
    assert_eq!(ready["reason"], "KubeletReady");
    assert_eq!(ready["message"], "kubelet is posting ready status");
    for (kind, reason) in [
        ("MemoryPressure", "KubeletHasSufficientMemory"),
        ("DiskPressure", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "KubeletHasSufficientPID"),
    ] {
        let c = condition_or_null(&node, kind);
        assert_eq!(c["status"], "False", "{kind}: {c}");
        assert_eq!(c["reason"], reason);
    }

    let labels: BTreeMap<String, String> =
        serde_json::from_value(node["metadata"]["labels"].clone()).expect("labels");
    assert_eq!(labels["kubernetes.io/hostname"], "edge-node-1");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert!(["amd64", "arm64"].contains(&labels["kubernetes.io/arch"].as_str()));
    assert_eq!(labels["beta.kubernetes.io/os"], "linux");
    assert_eq!(
        labels["beta.kubernetes.io/arch"],
        labels["kubernetes.io/arch"]
    );
    assert_eq!(labels["node-role.kubernetes.io/control-plane"], "true");
    assert_eq!(labels["node-role.kubernetes.io/master"], "true");
    assert_eq!(labels["kedge.test/site"], "store-42");

    assert_eq!(
        node["status"]["addresses"],
        json!([{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": "edge-node-1"}])
    );
    assert_eq!(
        node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
        10250
    );
    let cap = &node["status"]["capacity"];
    let cores = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|t| {
            t.trim()
                .split(',')
                .map(|r| match r.split_once('-') {
                    Some((a, b)) => Some(b.parse::<u64>().ok()? - a.parse::<u64>().ok()? + 1),
                    None => r.parse::<u64>().ok().map(|_| 1),
                })
                .sum::<Option<u64>>()
        })
        .expect("online CPUs");
    assert_eq!(cap["cpu"], cores.to_string());
    assert_eq!(cap["pods"], "110");
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .expect("MemTotal");
    let mem = cap["memory"].as_str().unwrap_or("");
    assert!(
        mem == format!("{mem_kib}Ki") || mem.ends_with("Mi") || mem.ends_with("Gi"),
        "{mem} for MemTotal {mem_kib} kB"
    );
    assert!(cap["ephemeral-storage"].is_string(), "{cap}");
    let alloc = &node["status"]["allocatable"];
    assert_eq!(alloc["cpu"], format!("{}m", cores * 1000 - 100));
    assert_eq!(alloc["pods"], "110");

    let info = &node["status"]["nodeInfo"];
    assert_eq!(info["containerRuntimeVersion"], "fake://0.1.0");
    assert_eq!(info["kubeletVersion"], "v1.33.0+kedge");
    assert_eq!(info["operatingSystem"], "linux");
    assert_eq!(info["architecture"], labels["kubernetes.io/arch"]);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    assert_eq!(info["kernelVersion"], kernel.trim());
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("boot_id");
    assert_eq!(info["bootID"], boot_id.trim());
    assert!(info["osImage"].as_str().is_some_and(|s| !s.is_empty()));
    let images = node["status"]["images"].as_array().expect("images");
    assert_eq!(images.len(), 2);
    assert!(images
        .iter()
        .any(|i| i["names"] == json!(["docker.io/library/busybox:1.36"])));

    // The handle tells the rest of the agent what the Node says.
    let state = agent.handle.current();
    assert!(state.ready && state.network_ready);
    assert_eq!(
        state.allocatable.as_ref().map(|a| a.cpu_millis),
        Some(cores * 1000 - 100)
    );
    assert_eq!(state.uid.as_deref(), node["metadata"]["uid"].as_str());
    assert_eq!(
        state.internal_ips,
        ["127.0.0.1".parse::<std::net::IpAddr>().expect("ip")]
    );

    // The Lease: held by the node, owned by it, renewed.
    let lease_path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/edge-node-1";
    let lease = wait_json(&client, lease_path, 10, |l| {
        l.pointer("/metadata/ownerReferences/0/uid").is_some()
    })
    .await;
    assert_eq!(lease["spec"]["holderIdentity"], "edge-node-1");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
    assert_eq!(
        lease["metadata"]["ownerReferences"][0],
        json!({"apiVersion": "v1", "kind": "Node", "name": "edge-node-1", "uid": node["metadata"]["uid"]})
    );
    let first_renew = lease["spec"]["renewTime"].as_str().unwrap_or("").to_owned();
    assert_eq!(
        first_renew.len(),
        "2024-01-01T00:00:00.000000Z".len(),
        "{first_renew}"
    );
    wait_json(&client, lease_path, 10, |l| {
        l["spec"]["renewTime"]
            .as_str()
            .is_some_and(|t| t > first_renew.as_str())
    })
    .await;

    // An unchanged status is still reported (heartbeat) at the report
    // frequency, without moving the transition time.
    let beat = ready["lastHeartbeatTime"].as_str().unwrap_or("").to_owned();
    let later = wait_json(&client, "/api/v1/nodes/edge-node-1", 10, |n| {
        condition_or_null(n, "Ready")["lastHeartbeatTime"]
            .as_str()
            .is_some_and(|t| t > beat.as_str())
    })
    .await;
    assert_eq!(
        condition_or_null(&later, "Ready")["lastTransitionTime"],
        ready["lastTransitionTime"]
    );

    // kubectl shows it Ready with its role.
    if std::path::Path::new(KUBECTL).exists() {
        let out = tokio::process::Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(server.kubeconfig())
            .args(["get", "nodes", "--no-headers"])
            .output()
            .await
            .expect("kubectl");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = text
            .lines()
            .find(|l| l.starts_with("edge-node-1 "))
            .unwrap_or_else(|| panic!("no edge-node-1 in {text}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[1], "Ready", "{line}");
        assert!(cols[2].split(',').any(|r| r == "control-plane"), "{line}");
        assert_eq!(cols[4], "v1.33.0+kedge", "{line}");
    } else {
        eprintln!("!!! {KUBECTL} is missing: the kubectl check was SKIPPED");
    }

    // Restart with the Node still there: it is reconciled, not recreated.
    agent.stop().await;
    let uid = node["metadata"]["uid"].clone();
    let (code, _, _) = raw(
        &client,
        "PATCH",
        "/api/v1/nodes/edge-node-1",
        Some("application/merge-patch+json"),
        serde_json::to_vec(&json!({"metadata": {"labels": {"kubernetes.io/hostname": "stale", "kedge.test/other": "kept"}}}))
            .expect("json"),
    )
    .await;
    assert_eq!(code, 200);
    let agent = start_agent(&server, config(dir.path())).await;
    let node = wait_json(&client, "/api/v1/nodes/edge-node-1", 10, |n| {
        n["metadata"]["labels"]["kubernetes.io/hostname"] == "edge-node-1"
    })
    .await;
    assert_eq!(node["metadata"]["uid"], uid);
    assert_eq!(node["metadata"]["labels"]["kedge.test/other"], "kept");
    assert_eq!(node["spec"]["podCIDR"], pod_cidr, "the range is stable");
    let again = tokio::time::timeout(Duration::from_secs(10), agent.handle.pod_cidr())
        .await
        .expect("podCIDR after restart")
        .expect("running");
    assert_eq!(again, pod_cidr);
    agent.stop().await;

    // A deleted Node's range is free again: with the spare node gone, IPAM
    // still hands out distinct ranges to new nodes.
    let (code, _, _) = raw(&client, "DELETE", "/api/v1/nodes/spare", None, vec![]).await;
    assert_eq!(code, 200);
    let (code, _) = post_json(
        &client,
        "/api/v1/nodes",
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "late"}}),
    )
    .await;
    assert_eq!(code, 201);
    let late = wait_json(&client, "/api/v1/nodes/late", 10, |n| {
        n.pointer("/spec/podCIDR").is_some()
    })
    .await;
    let late_cidr = late["spec"]["podCIDR"].as_str().unwrap_or("");
    assert!(in_cluster_cidr(late_cidr), "{late_cidr}");
    assert_ne!(late_cidr, pod_cidr);
}
