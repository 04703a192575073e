//! End-to-end: accelerators found by the built-in device plugins in a fake
//! host tree (`--accelerator-root`; device nodes made with mknod, as root)
//! become node resources and labels; pods that ask for them run with
//! exactly their devices; a device that fails fails its pod.

mod common;

#[path = "../../kedge-devices/tests/builtin_support/mod.rs"]
mod builtin_support;

use std::time::{Duration, Instant};

use builtin_support::FakeTree;
use common::cluster::{container_status, is_ready, skip, Cluster, BUSYBOX};
use serde_json::Value;

const GPU0: &str = "GPU-11111111-2222-3333-4444-555555555555";
const GPU1: &str = "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

fn information(uuid: &str, bus: &str, minor: u32) -> String {
    format!(
        "Model: \t\t Tesla T4\nIRQ:   \t\t 40\nGPU UUID: \t {uuid}\nVideo BIOS: \t 90.04.38.00.03\n\
         Bus Type: \t PCIe\nDMA Size: \t 47 bits\nDMA Mask: \t 0x7fffffffffff\nBus Location: \t {bus}\n\
         Device Minor: \t {minor}\nGPU Excluded:\t No\n"
    )
}

/// Two NVIDIA GPUs (procfs, no NVML) and one Intel i915 card.
fn host_tree() -> FakeTree {
    let tree = FakeTree::new();
    tree.file(
        "/proc/driver/nvidia/gpus/0000:00:1e.0/information",
        &information(GPU0, "0000:00:1e.0", 0),
    );
    tree.file(
        "/proc/driver/nvidia/gpus/0000:00:1f.0/information",
        &information(GPU1, "0000:00:1f.0", 1),
    );
    tree.char_device("/dev/nvidia0", 195, 0);
    tree.char_device("/dev/nvidia1", 195, 1);
    tree.char_device("/dev/nvidiactl", 195, 255);
    intel_card(&tree);
    // A PCIe Coral Edge TPU.
    tree.file("/sys/class/apex/apex_0/device/vendor", "0x1ac1\n");
    tree.file("/sys/class/apex/apex_0/device/device", "0x089a\n");
    tree.char_device("/dev/apex_0", 120, 0);
    tree
}

fn intel_card(tree: &FakeTree) {
    let base = "/sys/class/drm/card0/device";
    tree.file(&format!("{base}/vendor"), "0x8086\n");
    tree.file(&format!("{base}/device"), "0x56a0\n");
    tree.file(&format!("{base}/class"), "0x030000\n");
    tree.symlink(
        &format!("{base}/driver"),
        "../../../../bus/pci/drivers/i915",
    );
    tree.dir(&format!("{base}/drm/card0"));
    tree.dir(&format!("{base}/drm/renderD128"));
    tree.char_device("/dev/dri/card0", 226, 0);
    tree.char_device("/dev/dri/renderD128", 226, 128);
}

fn gpu_pod(name: &str, node: &str, resource: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: "{BUSYBOX}"
    command: ["sleep", "3600"]
    resources: {{limits: {{"{resource}": 1}}}}
"#
    )
}

async fn node(c: &Cluster) -> Value {
    let client = c.server.client().await;
    common::get_json(&client, &format!("/api/v1/nodes/{}", c.node))
        .await
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accelerators_are_advertised_allocated_and_heal() {
    if skip("accelerators_are_advertised_allocated_and_heal") || !builtin_support::is_root() {
        return;
    }
    let tree = host_tree();
    let kubelet_root = tempfile::tempdir().expect("kubelet root");
    let root = tree.root().display().to_string();
    let kroot = kubelet_root.path().display().to_string();
    let mut c =
        Cluster::start_with(&["--accelerator-root", &root, "--kubelet-root-dir", &kroot]).await;

    // Capacity, allocatable and labels on the Node.
    let deadline = Instant::now() + Duration::from_secs(30);
    let n = loop {
        let n = node(&c).await;
        if n["status"]["allocatable"]["nvidia.com/gpu"] == "2"
            && n["status"]["allocatable"]["gpu.intel.com/i915"] == "1"
        {
            break n;
        }
        assert!(Instant::now() < deadline, "devices not advertised: {n:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(n["status"]["capacity"]["nvidia.com/gpu"], "2");
    assert_eq!(n["status"]["allocatable"]["google.com/edge-tpu"], "1");
    assert_eq!(n["metadata"]["labels"]["nvidia.com/gpu.count"], "2");
    assert_eq!(
        n["metadata"]["labels"]["nvidia.com/gpu.product"],
        "Tesla-T4"
    );
    // The external plugin socket is served where upstream plugins look.
    assert!(kubelet_root
        .path()
        .join("device-plugins/kubelet.sock")
        .exists());

    // Two pods get one GPU each, never the same one.
    c.apply(&gpu_pod("gpu-a", &c.node, "nvidia.com/gpu"));
    c.apply(&gpu_pod("gpu-b", &c.node, "nvidia.com/gpu"));
    let mut seen = Vec::new();
    for name in ["gpu-a", "gpu-b"] {
        c.wait_pod("default", name, Duration::from_secs(60), "Ready", is_ready)
            .await;
        let o = c.kubectl(
            33,
            &[
                "exec",
                name,
                "--",
                "sh",
                "-c",
                "echo $NVIDIA_VISIBLE_DEVICES; ls /dev | grep nvidia",
            ],
        );
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let mut lines = text.lines();
        let uuid = lines.next().unwrap_or("").to_owned();
        let nodes: Vec<&str> = lines.collect();
        assert!(uuid == GPU0 || uuid == GPU1, "{name}: {text}");
        let minor = if uuid == GPU0 { "nvidia0" } else { "nvidia1" };
        assert_eq!(nodes, vec![minor, "nvidiactl"], "{name}: {text}");
        seen.push(uuid);
    }
    assert_ne!(seen[0], seen[1], "both pods got the same GPU");

    // The Edge TPU: the pod sees its apex node.
    c.apply(&gpu_pod("tpu", &c.node, "google.com/edge-tpu"));
    c.wait_pod("default", "tpu", Duration::from_secs(60), "Ready", is_ready)
        .await;
    let o = c.kubectl(33, &["exec", "tpu", "--", "ls", "/dev/apex_0"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "/dev/apex_0\n");

    // Allocations survive a restart of the agent: the running pods keep
    // their GPUs and nothing else can take them.
    c.server.stop();
    c.server.spawn().await;
    c.wait_node_ready(Duration::from_secs(30)).await;

    // A third one cannot get a GPU: admission fails as upstream's does.
    c.apply(&gpu_pod("gpu-c", &c.node, "nvidia.com/gpu"));
    let pod = c
        .wait_pod("default", "gpu-c", Duration::from_secs(30), "Failed", |p| {
            p["status"]["phase"] == "Failed"
        })
        .await;
    assert_eq!(pod["status"]["reason"], "UnexpectedAdmissionError");
    assert!(
        pod["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(
                "Allocate failed due to requested number of devices unavailable for nvidia.com/gpu"
            )),
        "{pod:#}"
    );

    // Without a node named, the scheduler keeps it Pending instead.
    c.apply(
        &gpu_pod("gpu-d", &c.node, "nvidia.com/gpu")
            .replace(&format!("  nodeName: {}\n", c.node), ""),
    );
    let pod = c
        .wait_pod(
            "default",
            "gpu-d",
            Duration::from_secs(30),
            "Unschedulable",
            |p| {
                p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "PodScheduled" && c["reason"] == "Unschedulable")
            },
        )
        .await;
    let msg = pod["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled"))
        .map(|c| c["message"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default();
    assert!(
        msg.starts_with("0/1 nodes are available: 1 Insufficient nvidia.com/gpu."),
        "{msg}"
    );

    // The Intel card: the pod sees its card and render node; when the card
    // vanishes the pod gets an event and fails, and allocatable drops.
    c.apply(&gpu_pod("igpu", &c.node, "gpu.intel.com/i915"));
    c.wait_pod(
        "default",
        "igpu",
        Duration::from_secs(60),
        "Ready",
        is_ready,
    )
    .await;
    let o = c.kubectl(33, &["exec", "igpu", "--", "ls", "/dev/dri"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "card0\nrenderD128\n");
    let failing = Instant::now();
    tree.remove("/sys/class/drm/card0");
    let pod = c
        .wait_pod(
            "default",
            "igpu",
            Duration::from_secs(30),
            "Failed by device health",
            |p| p["status"]["phase"] == "Failed",
        )
        .await;
    eprintln!("device health event to pod Failed: {:?}", failing.elapsed());
    assert_eq!(pod["status"]["reason"], "DeviceUnhealthy");
    assert_eq!(
        container_status(&pod, "app")["state"]["terminated"]["exitCode"],
        137
    );
    let events = c.events("default", "igpu").await;
    assert!(
        events
            .iter()
            .any(|e| e
                .starts_with("DeviceUnhealthy: device card0-0 (gpu.intel.com/i915) is unhealthy")),
        "{events:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = node(&c).await;
        let cond = n["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "AcceleratorHealthy"))
            .cloned()
            .unwrap_or(Value::Null);
        if n["status"]["allocatable"]["gpu.intel.com/i915"] == "0" && cond["status"] == "False" {
            assert_eq!(n["status"]["capacity"]["gpu.intel.com/i915"], "1");
            assert_eq!(cond["reason"], "DeviceUnhealthy");
            assert!(
                cond["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("gpu.intel.com/i915 card0-0")),
                "{cond}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "allocatable did not drop: {n:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
