//! The built-in Intel GPU plugin against fake host trees.

mod builtin_support;

use builtin_support::{discover_rescanning, find_plugin, ids, next_event, spec, FakeTree};
use kedge_devices::builtin::{
    discover_builtin, BuiltinConfig, HostRoot, IntelConfig, IntelGpuPlugin,
};
use kedge_devices::{Device, DevicePlugin, DeviceSpec};

/// An Intel card in sysfs with its nodes.
fn card(tree: &FakeTree, n: u32, device_id: &str, driver: &str, render: u32) {
    let base = format!("/sys/class/drm/card{n}/device");
    tree.file(&format!("{base}/vendor"), "0x8086\n");
    tree.file(&format!("{base}/device"), &format!("{device_id}\n"));
    tree.file(&format!("{base}/class"), "0x030000\n");
    tree.file(&format!("{base}/numa_node"), "0\n");
    tree.symlink(
        &format!("{base}/driver"),
        &format!("../../../../bus/pci/drivers/{driver}"),
    );
    tree.dir(&format!("{base}/drm/card{n}"));
    tree.dir(&format!("{base}/drm/renderD{render}"));
    tree.char_device(&format!("/dev/dri/card{n}"), 226, n);
    tree.char_device(&format!("/dev/dri/renderD{render}"), 226, render);
}

/// card0 (i915, Arc A770 56a0), card1 (xe, e20b), and things that are not
/// Intel GPU cards to advertise.
fn tree() -> FakeTree {
    let tree = FakeTree::new();
    card(&tree, 0, "0x56a0", "i915", 128);
    card(&tree, 1, "0xe20b", "xe", 129);
    // A connector, not a card.
    tree.file("/sys/class/drm/card0-HDMI-A-1/status", "connected\n");
    // An NVIDIA card.
    tree.file("/sys/class/drm/card2/device/vendor", "0x10de\n");
    tree.symlink(
        "/sys/class/drm/card2/device/driver",
        "../../../../bus/pci/drivers/nvidia",
    );
    tree.char_device("/dev/dri/card2", 226, 2);
    // An SR-IOV physical function with VFs enabled: its VFs are the GPUs.
    card(&tree, 3, "0x56c0", "i915", 131);
    tree.file("/sys/class/drm/card3/device/sriov_numvfs", "2\n");
    // An Intel card bound to vfio-pci for a VM.
    card(&tree, 4, "0x56a0", "vfio-pci", 132);
    tree
}

/// What a card's allocation injects: its card and render nodes.
fn card_nodes(tree: &FakeTree, n: u32, render: u32) -> Vec<DeviceSpec> {
    vec![
        spec(tree, &format!("/dev/dri/card{n}")),
        spec(tree, &format!("/dev/dri/renderD{render}")),
    ]
}

#[tokio::test]
async fn cards_split_by_driver_and_allocate_card_and_render_nodes() {
    let tree = tree();
    let plugins =
        IntelGpuPlugin::discover(&HostRoot::new(tree.root()), &IntelConfig::default()).unwrap();
    let names: Vec<&str> = plugins.iter().map(|p| p.resource_name()).collect();
    assert_eq!(names, ["gpu.intel.com/i915", "gpu.intel.com/xe"]);
    let (i915, xe) = (&plugins[0], &plugins[1]);
    assert_eq!(
        *i915.devices().borrow(),
        vec![Device {
            id: "card0-0".to_string(),
            healthy: true,
            numa_node: Some(0)
        }]
    );
    assert_eq!(ids(xe), ["card1-0"]);

    let allocation = i915.allocate(&["card0-0".to_string()]).await.unwrap();
    assert_eq!(allocation.devices, card_nodes(&tree, 0, 128));
    assert!(allocation.envs.is_empty());
    assert!(allocation.mounts.is_empty());

    let allocation = xe.allocate(&["card1-0".to_string()]).await.unwrap();
    assert_eq!(allocation.devices, card_nodes(&tree, 1, 129));

    assert!(
        i915.allocate(&["card1-0".to_string()]).await.is_err(),
        "card1 is xe's"
    );
    assert!(
        i915.allocate(&["card3-0".to_string()]).await.is_err(),
        "card3 is not advertised"
    );
}

#[test]
fn labels_follow_intels_nfd_rules() {
    let tree = tree();
    card(&tree, 5, "0x56a0", "i915", 133);
    let plugins =
        IntelGpuPlugin::discover(&HostRoot::new(tree.root()), &IntelConfig::default()).unwrap();
    let labels = plugins[0].node_labels();
    assert_eq!(labels["intel.feature.node.kubernetes.io/gpu"], "true");
    assert_eq!(labels["gpu.intel.com/device-id.0300-56a0.present"], "true");
    assert_eq!(labels["gpu.intel.com/device-id.0300-56a0.count"], "2");
    assert!(
        !labels.contains_key("gpu.intel.com/device-id.0300-56c0.present"),
        "card3 is a PF with VFs"
    );
    assert_eq!(
        plugins[1].node_labels()["gpu.intel.com/device-id.0300-e20b.count"],
        "1"
    );
}

#[tokio::test]
async fn shared_dev_num_advertises_shares_and_spreads_requests() {
    let tree = tree();
    card(&tree, 5, "0x56a0", "i915", 133);
    let config = IntelConfig {
        shared_dev_num: 3,
        ..IntelConfig::default()
    };
    let plugins = IntelGpuPlugin::discover(&HostRoot::new(tree.root()), &config).unwrap();
    let i915 = &plugins[0];
    assert_eq!(
        ids(i915),
        ["card0-0", "card0-1", "card0-2", "card5-0", "card5-1", "card5-2"]
    );

    // Two shares of one card: the card's nodes once.
    let allocation = i915
        .allocate(&["card0-1".to_string(), "card0-2".to_string()])
        .await
        .unwrap();
    assert_eq!(allocation.devices, card_nodes(&tree, 0, 128));

    let available: Vec<String> = ["card0-2", "card5-0", "card5-1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        i915.preferred_allocation(&available, &[], 2).unwrap(),
        ["card5-0", "card0-2"]
    );
    assert_eq!(
        i915.preferred_allocation(&available, &[], 1).unwrap(),
        ["card5-0"],
        "least busy card first"
    );

    let unshared =
        IntelGpuPlugin::discover(&HostRoot::new(tree.root()), &IntelConfig::default()).unwrap();
    assert_eq!(unshared[0].preferred_allocation(&available, &[], 1), None);
}

#[tokio::test]
async fn a_vanished_card_turns_unhealthy_and_comes_back() {
    let tree = tree();
    let i915 = find_plugin(&discover_rescanning(&tree), "gpu.intel.com/i915");
    let mut events = i915.health_events().unwrap();

    tree.remove("/sys/class/drm/card0");
    let event = next_event(&mut events).await;
    assert_eq!(event.device_id, "card0-0");
    assert!(!event.healthy);
    assert_eq!(
        *i915.devices().borrow(),
        vec![Device {
            id: "card0-0".to_string(),
            healthy: false,
            numa_node: Some(0)
        }]
    );

    card(&tree, 0, "0x56a0", "i915", 128);
    let event = next_event(&mut events).await;
    assert_eq!(event.device_id, "card0-0");
    assert!(event.healthy);
    assert!(i915.devices().borrow()[0].healthy);
}

#[test]
fn no_intel_cards_no_plugin() {
    let tree = FakeTree::new();
    tree.file("/sys/class/drm/card0/device/vendor", "0x1002\n");
    let plugins =
        IntelGpuPlugin::discover(&HostRoot::new(tree.root()), &IntelConfig::default()).unwrap();
    assert!(plugins.is_empty());
    let disabled = BuiltinConfig {
        intel: IntelConfig {
            enabled: false,
            ..IntelConfig::default()
        },
        ..BuiltinConfig::default()
    };
    let with_cards = self::tree();
    assert!(discover_builtin(with_cards.root(), &disabled)
        .iter()
        .all(|p| !p.resource_name().starts_with("gpu.intel.com/")));
}
