//! The built-in NVIDIA plugin against fake host trees and the fake NVML.

mod builtin_support;

use std::sync::Arc;
use std::time::Duration;

use builtin_support::{find_plugin, ids, next_event, specs, FakeTree};
use kedge_devices::builtin::nvml::{
    NvmlEvent, ERROR_GPU_IS_LOST, EVENT_TYPE_DOUBLE_BIT_ECC, EVENT_TYPE_XID_CRITICAL_ERROR,
};
use kedge_devices::builtin::{
    discover_builtin, BuiltinConfig, FakeNvml, HostRoot, NvidiaConfig, NvidiaPlugin, NvmlDevice,
    NvmlMode,
};
use kedge_devices::{Device, DeviceError, DevicePlugin, HealthEvent};
use tokio::sync::broadcast;

const GPU0: &str = "GPU-11111111-2222-3333-4444-555555555555";
const GPU1: &str = "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

fn information(model: &str, uuid: &str, bus: &str, minor: u32) -> String {
    format!(
        "Model: \t\t {model}\nIRQ:   \t\t 40\nGPU UUID: \t {uuid}\nVideo BIOS: \t 90.04.38.00.03\n\
         Bus Type: \t PCIe\nDMA Size: \t 47 bits\nDMA Mask: \t 0x7fffffffffff\nBus Location: \t {bus}\n\
         Device Minor: \t {minor}\nGPU Excluded:\t No\n"
    )
}

/// Two T4s in procfs, their nodes, nvidiactl and nvidia-uvm (no uvm-tools,
/// no modeset).
fn two_gpu_tree() -> FakeTree {
    let tree = FakeTree::new();
    tree.file(
        "/proc/driver/nvidia/gpus/0000:00:1e.0/information",
        &information("Tesla T4", GPU0, "0000:00:1e.0", 0),
    );
    tree.file(
        "/proc/driver/nvidia/gpus/0000:00:1f.0/information",
        &information("Tesla T4", GPU1, "0000:00:1f.0", 1),
    );
    tree.file("/sys/bus/pci/devices/0000:00:1f.0/numa_node", "1\n");
    tree.char_device("/dev/nvidia0", 195, 0);
    tree.char_device("/dev/nvidia1", 195, 1);
    tree.char_device("/dev/nvidiactl", 195, 255);
    tree.char_device("/dev/nvidia-uvm", 510, 0);
    tree
}

fn procfs_plugin(tree: &FakeTree, config: &NvidiaConfig) -> NvidiaPlugin {
    let (plugin, status) = NvidiaPlugin::discover(&HostRoot::new(tree.root()), config).unwrap();
    assert!(!status.loaded, "a fake tree never uses the host's NVML");
    plugin.expect("GPUs found")
}

#[tokio::test]
async fn procfs_discovery_advertises_uuids_and_allocates_exact_nodes() {
    let tree = two_gpu_tree();
    let plugin = procfs_plugin(&tree, &NvidiaConfig::default());
    assert!(!plugin.uses_nvml());
    assert_eq!(plugin.resource_name(), "nvidia.com/gpu");
    assert_eq!(
        *plugin.devices().borrow(),
        vec![
            Device {
                id: GPU0.to_string(),
                healthy: true,
                numa_node: None
            },
            Device {
                id: GPU1.to_string(),
                healthy: true,
                numa_node: Some(1)
            },
        ]
    );

    let one = plugin.allocate(&[GPU1.to_string()]).await.unwrap();
    assert_eq!(
        one.devices,
        specs(
            &tree,
            &["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia1"]
        )
    );
    assert_eq!(one.envs.len(), 1);
    assert_eq!(one.envs["NVIDIA_VISIBLE_DEVICES"], GPU1);
    assert!(one.cdi_devices.is_empty());
    assert!(one.mounts.is_empty());

    // The optional control nodes are injected once present.
    tree.char_device("/dev/nvidia-uvm-tools", 510, 1);
    tree.char_device("/dev/nvidia-modeset", 195, 254);
    let both = plugin
        .allocate(&[GPU1.to_string(), GPU0.to_string()])
        .await
        .unwrap();
    assert_eq!(
        both.devices,
        specs(
            &tree,
            &[
                "/dev/nvidiactl",
                "/dev/nvidia-uvm",
                "/dev/nvidia-uvm-tools",
                "/dev/nvidia-modeset",
                "/dev/nvidia1",
                "/dev/nvidia0",
            ]
        )
    );
    assert_eq!(
        both.envs["NVIDIA_VISIBLE_DEVICES"],
        format!("{GPU1},{GPU0}")
    );

    let unknown = plugin
        .allocate(&["GPU-nope".to_string()])
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, DeviceError::UnknownDevice { ref id, .. } if id == "GPU-nope"),
        "{unknown}"
    );
}

#[test]
fn procfs_labels_have_product_and_count_but_no_memory() {
    let tree = two_gpu_tree();
    let labels = procfs_plugin(&tree, &NvidiaConfig::default()).node_labels();
    assert_eq!(labels["nvidia.com/gpu.present"], "true");
    assert_eq!(labels["nvidia.com/gpu.count"], "2");
    assert_eq!(labels["nvidia.com/gpu.product"], "Tesla-T4");
    assert_eq!(labels["nvidia.com/gpu.replicas"], "1");
    assert_eq!(labels["nvidia.com/gpu.sharing-strategy"], "none");
    assert!(!labels.contains_key("nvidia.com/gpu.memory"), "{labels:?}");
}

#[test]
fn procfs_gpu_without_its_node_is_not_advertised() {
    let tree = two_gpu_tree();
    tree.remove("/dev/nvidia1");
    let plugin = procfs_plugin(&tree, &NvidiaConfig::default());
    assert_eq!(ids(&plugin), [GPU0]);

    let empty = FakeTree::new();
    let (none, _) =
        NvidiaPlugin::discover(&HostRoot::new(empty.root()), &NvidiaConfig::default()).unwrap();
    assert!(none.is_none());
}

#[tokio::test]
async fn cdi_devices_are_named_when_an_nvidia_spec_is_installed() {
    let tree = two_gpu_tree();
    tree.file(
        "/etc/cdi/nvidia.yaml",
        "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n",
    );
    let plugin = procfs_plugin(&tree, &NvidiaConfig::default());
    let allocation = plugin.allocate(&[GPU0.to_string()]).await.unwrap();
    assert_eq!(allocation.cdi_devices, [format!("nvidia.com/gpu={GPU0}")]);

    let off = NvidiaConfig {
        cdi: Some(false),
        ..NvidiaConfig::default()
    };
    let plugin = procfs_plugin(&tree, &off);
    assert!(plugin
        .allocate(&[GPU0.to_string()])
        .await
        .unwrap()
        .cdi_devices
        .is_empty());
}

fn fake_nvml() -> FakeNvml {
    let gpu = |index: u32, uuid: &str, bus: &str| NvmlDevice {
        index,
        uuid: uuid.to_string(),
        name: "Tesla T4".to_string(),
        minor: Some(index),
        memory_total_bytes: Some(15360 * 1024 * 1024),
        pci_bus_id: Some(bus.to_string()),
    };
    FakeNvml::new(vec![
        gpu(0, GPU0, "00000000:00:1E.0"),
        gpu(1, GPU1, "00000000:00:1F.0"),
    ])
}

fn nvml_config(nvml: &FakeNvml) -> NvidiaConfig {
    NvidiaConfig {
        nvml: NvmlMode::Use(Arc::new(nvml.clone())),
        event_wait_timeout: Duration::from_millis(20),
        recovery_probe_interval: Duration::from_millis(20),
        recovery_quiet_period: Duration::from_millis(150),
        ..NvidiaConfig::default()
    }
}

#[tokio::test]
async fn nvml_discovery_time_slicing_replicas_and_labels() {
    let tree = two_gpu_tree();
    let nvml = fake_nvml();
    let config = NvidiaConfig {
        time_slicing_replicas: 4,
        ..nvml_config(&nvml)
    };
    let (plugin, status) = NvidiaPlugin::discover(&HostRoot::new(tree.root()), &config).unwrap();
    assert!(status.loaded);
    assert_eq!(status.driver_version.as_deref(), Some("550.54.15-fake"));
    let plugin = plugin.unwrap();
    assert!(plugin.uses_nvml());

    let devices = plugin.devices().borrow().clone();
    assert_eq!(devices.len(), 8);
    assert_eq!(devices[0].id, format!("{GPU0}::0"));
    assert_eq!(devices[7].id, format!("{GPU1}::3"));
    assert_eq!(
        devices[7].numa_node,
        Some(1),
        "NUMA node from the NVML bus ID"
    );

    // Two replicas of one GPU: the GPU once.
    let allocation = plugin
        .allocate(&[format!("{GPU0}::1"), format!("{GPU0}::2")])
        .await
        .unwrap();
    assert_eq!(
        allocation.devices,
        specs(
            &tree,
            &["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia0"]
        )
    );
    assert_eq!(allocation.envs["NVIDIA_VISIBLE_DEVICES"], GPU0);

    // Preferred allocation spreads over GPUs, the least busy first.
    let available: Vec<String> = vec![
        format!("{GPU0}::3"),
        format!("{GPU1}::0"),
        format!("{GPU1}::1"),
        format!("{GPU1}::2"),
    ];
    let preferred = plugin.preferred_allocation(&available, &[], 2).unwrap();
    assert_eq!(preferred, [format!("{GPU1}::0"), format!("{GPU0}::3")]);

    let labels = plugin.node_labels();
    assert_eq!(labels["nvidia.com/gpu.count"], "2");
    assert_eq!(labels["nvidia.com/gpu.memory"], "15360");
    assert_eq!(labels["nvidia.com/gpu.product"], "Tesla-T4");
    assert_eq!(labels["nvidia.com/gpu.replicas"], "4");
    assert_eq!(labels["nvidia.com/gpu.sharing-strategy"], "time-slicing");
    assert_eq!(labels["nvidia.com/cuda.driver-version.major"], "550");
    assert_eq!(
        labels["nvidia.com/cuda.driver-version.full"],
        "550.54.15-fake"
    );
}

fn start(
    tree: &FakeTree,
    nvidia: NvidiaConfig,
) -> (Arc<dyn DevicePlugin>, broadcast::Receiver<HealthEvent>) {
    let config = BuiltinConfig {
        nvidia,
        ..BuiltinConfig::default()
    };
    let plugin = find_plugin(&discover_builtin(tree.root(), &config), "nvidia.com/gpu");
    let events = plugin.health_events().expect("health events");
    (plugin, events)
}

async fn no_event(events: &mut broadcast::Receiver<HealthEvent>, nvml: &FakeNvml) {
    // Let the event thread take everything queued, then a little more.
    for _ in 0..200 {
        if nvml.pending_events() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        nvml.pending_events(),
        0,
        "the event thread took the injected events"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(events.try_recv().is_err(), "no health change expected");
}

fn health(plugin: &Arc<dyn DevicePlugin>) -> Vec<(String, bool)> {
    plugin
        .devices()
        .borrow()
        .iter()
        .map(|d| (d.id.clone(), d.healthy))
        .collect()
}

#[tokio::test]
async fn xid_79_makes_a_gpu_unhealthy_xid_13_does_not_and_recovery_advertises_it_again() {
    let tree = two_gpu_tree();
    let nvml = fake_nvml();
    let (plugin, mut events) = start(&tree, nvml_config(&nvml));
    let mut watch = plugin.devices();

    nvml.inject_xid(GPU0, 13);
    no_event(&mut events, &nvml).await;
    assert_eq!(
        health(&plugin),
        [(GPU0.to_string(), true), (GPU1.to_string(), true)]
    );

    // XID 79: fallen off the bus; NVML cannot reach it until it is reset.
    nvml.set_lost(GPU0, true);
    nvml.inject_xid(GPU0, 79);
    let event = next_event(&mut events).await;
    assert_eq!(
        event,
        HealthEvent {
            device_id: GPU0.to_string(),
            healthy: false,
            reason: "XID 79".to_string()
        }
    );
    assert_eq!(
        health(&plugin),
        [(GPU0.to_string(), false), (GPU1.to_string(), true)]
    );
    assert!(watch.has_changed().unwrap(), "ListAndWatch saw the change");
    watch.borrow_and_update();

    // Quiet for longer than the quiet period, but still lost: stays down.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(events.try_recv().is_err());
    assert_eq!(
        health(&plugin),
        [(GPU0.to_string(), false), (GPU1.to_string(), true)]
    );

    // Reset: NVML answers again, so the GPU is advertised again.
    nvml.set_lost(GPU0, false);
    let event = next_event(&mut events).await;
    assert_eq!(event.device_id, GPU0);
    assert!(event.healthy);
    assert_eq!(event.reason, "recovered from XID 79");
    assert_eq!(
        health(&plugin),
        [(GPU0.to_string(), true), (GPU1.to_string(), true)]
    );
    assert!(watch.has_changed().unwrap());
}

#[tokio::test]
async fn replicas_of_a_failed_gpu_all_turn_unhealthy() {
    let tree = two_gpu_tree();
    let nvml = fake_nvml();
    nvml.set_lost(GPU1, true);
    let (plugin, mut events) = start(
        &tree,
        NvidiaConfig {
            time_slicing_replicas: 2,
            ..nvml_config(&nvml)
        },
    );
    nvml.inject_xid(GPU1, 48);
    let mut down = [next_event(&mut events).await, next_event(&mut events).await];
    down.sort_by(|a, b| a.device_id.cmp(&b.device_id));
    assert_eq!(down[0].device_id, format!("{GPU1}::0"));
    assert_eq!(down[1].device_id, format!("{GPU1}::1"));
    assert!(down.iter().all(|e| !e.healthy && e.reason == "XID 48"));
    let unhealthy: Vec<String> = health(&plugin)
        .into_iter()
        .filter(|(_, h)| !h)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(unhealthy, [format!("{GPU1}::0"), format!("{GPU1}::1")]);
}

#[tokio::test]
async fn events_without_a_gpu_and_failed_waits_take_every_gpu_down() {
    let tree = two_gpu_tree();
    let nvml = fake_nvml();
    nvml.set_lost(GPU0, true);
    nvml.set_lost(GPU1, true);
    let (plugin, mut events) = start(&tree, nvml_config(&nvml));

    nvml.inject_event(NvmlEvent {
        uuid: None,
        event_type: EVENT_TYPE_XID_CRITICAL_ERROR,
        data: 62,
    });
    let first = next_event(&mut events).await;
    let second = next_event(&mut events).await;
    assert_eq!(
        (first.reason.as_str(), second.reason.as_str()),
        ("XID 62", "XID 62")
    );
    assert_eq!(
        health(&plugin),
        [(GPU0.to_string(), false), (GPU1.to_string(), false)]
    );

    // Recovery, then a failing wait: all down again, with the NVML error.
    nvml.set_lost(GPU0, false);
    nvml.set_lost(GPU1, false);
    assert!(next_event(&mut events).await.healthy);
    assert!(next_event(&mut events).await.healthy);
    nvml.set_lost(GPU0, true);
    nvml.set_lost(GPU1, true);
    nvml.inject_wait_error(ERROR_GPU_IS_LOST);
    let event = next_event(&mut events).await;
    assert!(!event.healthy);
    assert!(
        event.reason.starts_with("NVML event wait failed"),
        "{}",
        event.reason
    );
}

#[tokio::test]
async fn ignored_xids_are_configurable_and_non_xid_events_are_skipped() {
    let tree = two_gpu_tree();
    let nvml = fake_nvml();
    let mut config = nvml_config(&nvml);
    config.ignored_xids.insert(94);
    config.ignored_xids.remove(&13);
    let (plugin, mut events) = start(&tree, config);

    nvml.inject_xid(GPU0, 94);
    nvml.inject_event(NvmlEvent {
        uuid: Some(GPU0.to_string()),
        event_type: EVENT_TYPE_DOUBLE_BIT_ECC,
        data: 0,
    });
    nvml.inject_xid("GPU-not-ours", 79);
    no_event(&mut events, &nvml).await;

    nvml.set_lost(GPU1, true);
    nvml.inject_xid(GPU1, 13);
    let event = next_event(&mut events).await;
    assert_eq!(
        (event.device_id.as_str(), event.reason.as_str()),
        (GPU1, "XID 13")
    );
    assert_eq!(
        health(&plugin),
        [(GPU0.to_string(), true), (GPU1.to_string(), false)]
    );
}

#[tokio::test]
async fn gpus_too_old_for_events_stay_healthy_and_health_checks_can_be_off() {
    let tree = two_gpu_tree();
    let nvml = fake_nvml();
    nvml.set_events_unsupported(GPU0);
    let (plugin, mut events) = start(&tree, nvml_config(&nvml));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(events.try_recv().is_err());
    assert_eq!(
        health(&plugin),
        [(GPU0.to_string(), true), (GPU1.to_string(), true)]
    );

    let quiet = fake_nvml();
    let (plugin, mut events) = start(
        &tree,
        NvidiaConfig {
            health_checks: false,
            ..nvml_config(&quiet)
        },
    );
    quiet.inject_xid(GPU0, 79);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(quiet.pending_events(), 1, "nobody waits for events");
    assert!(events.try_recv().is_err());
    assert!(health(&plugin).iter().all(|(_, healthy)| *healthy));
}
