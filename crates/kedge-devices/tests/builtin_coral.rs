//! The built-in Coral Edge TPU plugin against fake host trees.

mod builtin_support;

use builtin_support::{discover_rescanning, find_plugin, ids, next_event, spec, FakeTree};
use kedge_devices::builtin::{
    accelerator_report, BuiltinConfig, CoralConfig, CoralPlugin, HostRoot,
};
use kedge_devices::{Device, DevicePlugin};

fn apex(tree: &FakeTree, n: u32, vendor: &str, device: &str) {
    let base = format!("/sys/class/apex/apex_{n}/device");
    tree.file(&format!("{base}/vendor"), &format!("{vendor}\n"));
    tree.file(&format!("{base}/device"), &format!("{device}\n"));
    tree.char_device(&format!("/dev/apex_{n}"), 120, n);
}

/// A USB device at `port`, as sysfs shows it.
fn usb(tree: &FakeTree, port: &str, vendor: &str, product: &str, bus: u32, dev: u32) {
    let base = format!("/sys/bus/usb/devices/{port}");
    tree.file(&format!("{base}/idVendor"), &format!("{vendor}\n"));
    tree.file(&format!("{base}/idProduct"), &format!("{product}\n"));
    tree.file(&format!("{base}/busnum"), &format!("{bus}\n"));
    tree.file(&format!("{base}/devnum"), &format!("{dev}\n"));
    tree.char_device(
        &format!("/dev/bus/usb/{bus:03}/{dev:03}"),
        189,
        (bus - 1) * 128 + dev - 1,
    );
}

/// apex_0 (a PCIe Edge TPU), apex_1 (something else in the class), a USB
/// Coral at 2-1 before its firmware is loaded, a USB mouse at 1-1, and an
/// interface directory without IDs.
fn tree() -> FakeTree {
    let tree = FakeTree::new();
    apex(&tree, 0, "0x1ac1", "0x089a");
    apex(&tree, 1, "0x1ac1", "0x1234");
    usb(&tree, "2-1", "1a6e", "089a", 2, 3);
    usb(&tree, "1-1", "046d", "c52b", 1, 2);
    tree.file("/sys/bus/usb/devices/2-1:1.0/bInterfaceClass", "ff\n");
    tree
}

fn plugin(tree: &FakeTree, config: &CoralConfig) -> CoralPlugin {
    CoralPlugin::discover(&HostRoot::new(tree.root()), config)
        .unwrap()
        .expect("Edge TPUs found")
}

#[tokio::test]
async fn pcie_and_usb_tpus_are_found_and_allocated() {
    let tree = tree();
    let plugin = plugin(&tree, &CoralConfig::default());
    assert_eq!(plugin.resource_name(), "google.com/edge-tpu");
    assert_eq!(ids(&plugin), ["apex_0", "usb-2-1"]);

    let allocation = plugin.allocate(&["apex_0".to_string()]).await.unwrap();
    assert_eq!(allocation.devices, vec![spec(&tree, "/dev/apex_0")]);
    assert!(allocation.envs.is_empty());

    let allocation = plugin.allocate(&["usb-2-1".to_string()]).await.unwrap();
    assert_eq!(
        allocation.devices,
        vec![spec(&tree, "/dev/bus/usb/002/003")]
    );

    let both = plugin
        .allocate(&["apex_0".to_string(), "usb-2-1".to_string()])
        .await
        .unwrap();
    assert_eq!(
        both.devices,
        vec![
            spec(&tree, "/dev/apex_0"),
            spec(&tree, "/dev/bus/usb/002/003")
        ]
    );
    assert!(plugin.allocate(&["apex_1".to_string()]).await.is_err());
    assert!(plugin.allocate(&["usb-1-1".to_string()]).await.is_err());
}

#[tokio::test]
async fn usb_tpu_keeps_its_id_across_firmware_load_and_gets_the_new_node() {
    let tree = FakeTree::new();
    usb(&tree, "2-1", "1a6e", "089a", 2, 3);
    let plugin = plugin(&tree, &CoralConfig::default());
    let report = plugin.inventory();
    assert_eq!(report.len(), 1);
    assert_eq!(
        report[0].model,
        "Coral USB Accelerator (firmware not loaded)"
    );

    // libedgetpu loads the firmware: the device re-enumerates as 18d1:9302
    // with the next device number.
    tree.remove("/dev/bus/usb/002/003");
    usb(&tree, "2-1", "18d1", "9302", 2, 4);
    let allocation = plugin.allocate(&["usb-2-1".to_string()]).await.unwrap();
    assert_eq!(
        allocation.devices,
        vec![spec(&tree, "/dev/bus/usb/002/004")]
    );
    assert_eq!(
        *plugin.devices().borrow(),
        vec![Device {
            id: "usb-2-1".to_string(),
            healthy: true,
            numa_node: None
        }]
    );
    assert_eq!(
        plugin.inventory()[0].model,
        "Coral USB Accelerator (firmware loaded)"
    );
    assert_eq!(
        plugin.inventory()[0].device_nodes,
        [tree.host("/dev/bus/usb/002/004")]
    );

    // Found after the firmware load, from the start.
    let after = self::plugin(&tree, &CoralConfig::default());
    assert_eq!(ids(&after), ["usb-2-1"]);
}

#[test]
fn resource_name_and_labels_are_configurable() {
    let tree = tree();
    let config = CoralConfig {
        resource_name: "example.com/tpu".to_string(),
        ..CoralConfig::default()
    };
    let plugin = plugin(&tree, &config);
    assert_eq!(plugin.resource_name(), "example.com/tpu");
    let labels = plugin.node_labels();
    assert_eq!(labels["example.com/tpu.present"], "true");
    assert_eq!(labels["example.com/tpu.count"], "2");
    assert_eq!(labels["example.com/tpu.product"], "Coral-mixed");

    let pcie_only = FakeTree::new();
    apex(&pcie_only, 0, "0x1ac1", "0x089a");
    apex(&pcie_only, 1, "0x1ac1", "0x089a");
    let labels = self::plugin(&pcie_only, &CoralConfig::default()).node_labels();
    assert_eq!(labels["google.com/edge-tpu.count"], "2");
    assert_eq!(
        labels["google.com/edge-tpu.product"],
        "Coral-PCIe-Accelerator"
    );
}

#[tokio::test]
async fn unplugged_usb_tpu_turns_unhealthy_and_back() {
    let tree = tree();
    let coral = find_plugin(&discover_rescanning(&tree), "google.com/edge-tpu");
    let mut events = coral.health_events().unwrap();

    tree.remove("/sys/bus/usb/devices/2-1");
    let event = next_event(&mut events).await;
    assert_eq!(
        (event.device_id.as_str(), event.healthy),
        ("usb-2-1", false)
    );

    usb(&tree, "2-1", "18d1", "9302", 2, 5);
    let event = next_event(&mut events).await;
    assert_eq!((event.device_id.as_str(), event.healthy), ("usb-2-1", true));
    let report = accelerator_report(tree.root(), &BuiltinConfig::default());
    let usb = report.devices.iter().find(|d| d.id == "usb-2-1").unwrap();
    assert_eq!(usb.device_nodes, [tree.host("/dev/bus/usb/002/005")]);
}

#[test]
fn no_tpus_no_plugin() {
    let tree = FakeTree::new();
    usb(&tree, "1-1", "046d", "c52b", 1, 2);
    assert!(
        CoralPlugin::discover(&HostRoot::new(tree.root()), &CoralConfig::default())
            .unwrap()
            .is_none()
    );
}
