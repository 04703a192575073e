//! `discover_builtin` and the accelerator report over a tree with every vendor.

mod builtin_support;

use std::sync::Arc;

use builtin_support::FakeTree;
use kedge_devices::builtin::{
    accelerator_report, discover_builtin, BuiltinConfig, CoralConfig, FakeNvml, NvidiaConfig,
    NvmlDevice, NvmlMode,
};

const GPU0: &str = "GPU-11111111-2222-3333-4444-555555555555";

fn every_vendor() -> FakeTree {
    let tree = FakeTree::new();
    tree.file(
        "/proc/driver/nvidia/gpus/0000:01:00.0/information",
        &format!("Model: \t\t NVIDIA A2\nGPU UUID: \t {GPU0}\nDevice Minor: \t 0\n"),
    );
    tree.char_device("/dev/nvidia0", 195, 0);
    tree.char_device("/dev/nvidiactl", 195, 255);

    tree.file("/sys/class/drm/card0/device/vendor", "0x8086\n");
    tree.file("/sys/class/drm/card0/device/device", "0x46a6\n");
    tree.file("/sys/class/drm/card0/device/class", "0x030000\n");
    tree.symlink(
        "/sys/class/drm/card0/device/driver",
        "../../../../bus/pci/drivers/i915",
    );
    tree.dir("/sys/class/drm/card0/device/drm/renderD128");
    tree.char_device("/dev/dri/card0", 226, 0);
    tree.char_device("/dev/dri/renderD128", 226, 128);

    tree.file("/sys/class/apex/apex_0/device/vendor", "0x1ac1\n");
    tree.file("/sys/class/apex/apex_0/device/device", "0x089a\n");
    tree.char_device("/dev/apex_0", 120, 0);
    tree
}

fn resources(config: &BuiltinConfig, tree: &FakeTree) -> Vec<String> {
    discover_builtin(tree.root(), config)
        .iter()
        .map(|p| p.resource_name().to_string())
        .collect()
}

#[tokio::test]
async fn every_vendor_found_and_each_can_be_disabled() {
    let tree = every_vendor();
    let all = BuiltinConfig::default();
    assert_eq!(
        resources(&all, &tree),
        [
            "nvidia.com/gpu",
            "gpu.intel.com/i915",
            "google.com/edge-tpu"
        ]
    );

    let mut some = BuiltinConfig::default();
    some.nvidia.enabled = false;
    some.coral = CoralConfig {
        enabled: false,
        ..CoralConfig::default()
    };
    assert_eq!(resources(&some, &tree), ["gpu.intel.com/i915"]);

    let empty = FakeTree::new();
    assert!(discover_builtin(empty.root(), &all).is_empty());
}

#[test]
fn report_lists_every_device_as_json() {
    let tree = every_vendor();
    let report = accelerator_report(tree.root(), &BuiltinConfig::default());
    assert!(!report.nvml.loaded);
    assert!(
        report
            .nvml
            .error
            .as_deref()
            .unwrap_or("")
            .contains("is not /"),
        "{:?}",
        report.nvml
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    let devices = json["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 3);
    assert_eq!(devices[0]["vendor"], "nvidia");
    assert_eq!(devices[0]["model"], "NVIDIA A2");
    assert_eq!(devices[0]["uuid"], GPU0);
    assert_eq!(devices[0]["health"], "Healthy");
    assert_eq!(devices[0]["source"], "procfs");
    assert_eq!(devices[0]["device_nodes"][0], tree.host("/dev/nvidia0"));
    assert_eq!(devices[1]["vendor"], "intel");
    assert_eq!(devices[1]["model"], "Intel GPU 8086:46a6");
    assert_eq!(devices[1]["source"], "i915");
    assert_eq!(devices[2]["vendor"], "google");
    assert_eq!(devices[2]["id"], "apex_0");
    assert_eq!(json["resources"]["nvidia.com/gpu"]["capacity"], 1);
    assert_eq!(json["resources"]["gpu.intel.com/i915"]["allocatable"], 1);
    assert_eq!(json["labels"]["nvidia.com/gpu.product"], "NVIDIA-A2");
    assert_eq!(
        json["labels"]["gpu.intel.com/device-id.0300-46a6.count"],
        "1"
    );
    assert_eq!(json["labels"]["google.com/edge-tpu.count"], "1");
}

#[test]
fn report_through_nvml_shows_memory_and_probed_health() {
    let tree = every_vendor();
    let nvml = FakeNvml::new(vec![NvmlDevice {
        index: 0,
        uuid: GPU0.to_string(),
        name: "NVIDIA H100 80GB HBM3".to_string(),
        minor: Some(0),
        memory_total_bytes: Some(81559 * 1024 * 1024),
        pci_bus_id: Some("00000000:01:00.0".to_string()),
    }]);
    let config = BuiltinConfig {
        nvidia: NvidiaConfig {
            nvml: NvmlMode::Use(Arc::new(nvml.clone())),
            ..NvidiaConfig::default()
        },
        ..BuiltinConfig::default()
    };
    let report = accelerator_report(tree.root(), &config);
    assert!(report.nvml.loaded);
    let gpu = &report.devices[0];
    assert_eq!(gpu.uuid.as_deref(), Some(GPU0));
    assert_eq!(gpu.memory_mib, Some(81559));
    assert_eq!(gpu.health, "Healthy");
    assert_eq!(gpu.source, "nvml");
    assert_eq!(report.labels["nvidia.com/gpu.memory"], "81559");

    nvml.set_lost(GPU0, true);
    let report = accelerator_report(tree.root(), &config);
    assert_eq!(report.devices[0].health, "Unhealthy");
    assert!(report.devices[0]
        .health_reason
        .as_deref()
        .unwrap_or("")
        .contains("GPU is lost"));
}

/// The real host (`/`): discovery reads it without errors, whatever it has.
/// On a GPU machine, `--nocapture` prints what `check-config --accelerators`
/// would.
#[test]
fn the_real_host_is_read_without_errors() {
    let report = accelerator_report(std::path::Path::new("/"), &BuiltinConfig::default());
    println!("{}", report.to_json());
    assert_eq!(report.accelerator_root, "/");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    for device in &report.devices {
        assert!(
            report.resources.contains_key(&device.resource),
            "{device:?}"
        );
    }
}
