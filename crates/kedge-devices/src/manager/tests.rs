use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::plugin::{BoxFuture, HealthEvent};

const GPU: &str = "example.com/gpu";

/// A plugin whose devices the test sets; Allocate answers with the IDs.
struct FakePlugin {
    resource: String,
    devices: watch::Sender<Vec<Device>>,
    preferred: Option<Vec<String>>,
    allocate_calls: AtomicUsize,
    fail_allocate: bool,
    labels: BTreeMap<String, String>,
    health: Option<broadcast::Sender<HealthEvent>>,
}

impl FakePlugin {
    fn new(resource: &str, ids: &[&str]) -> FakePlugin {
        let (devices, _) = watch::channel(
            ids.iter()
                .map(|id| Device {
                    id: (*id).to_owned(),
                    healthy: true,
                    numa_node: None,
                })
                .collect(),
        );
        FakePlugin {
            resource: resource.to_owned(),
            devices,
            preferred: None,
            allocate_calls: AtomicUsize::new(0),
            fail_allocate: false,
            labels: BTreeMap::new(),
            health: None,
        }
    }

    fn set_health(&self, id: &str, healthy: bool) {
        self.devices.send_modify(|devices| {
            for d in devices.iter_mut().filter(|d| d.id == id) {
                d.healthy = healthy;
            }
        });
    }
}

impl DevicePlugin for FakePlugin {
    fn resource_name(&self) -> &str {
        &self.resource
    }
    fn devices(&self) -> watch::Receiver<Vec<Device>> {
        self.devices.subscribe()
    }
    fn health_events(&self) -> Option<broadcast::Receiver<HealthEvent>> {
        self.health.as_ref().map(broadcast::Sender::subscribe)
    }
    fn preferred_allocation(
        &self,
        _available: &[String],
        _must_include: &[String],
        _size: usize,
    ) -> Option<Vec<String>> {
        self.preferred.clone()
    }
    fn allocate(&self, ids: &[String]) -> BoxFuture<'_, Result<ContainerAllocation, DeviceError>> {
        self.allocate_calls.fetch_add(1, Ordering::SeqCst);
        let ids = ids.to_vec();
        Box::pin(async move {
            if self.fail_allocate {
                return Err(DeviceError::Allocate {
                    resource: self.resource.clone(),
                    message: "device busy".into(),
                });
            }
            let mut allocation = ContainerAllocation::default();
            allocation.envs.insert("DEVICES".into(), ids.join(","));
            for id in &ids {
                allocation.devices.push(DeviceSpec {
                    container_path: format!("/dev/{id}"),
                    host_path: format!("/dev/{id}"),
                    permissions: "rw".into(),
                });
            }
            Ok(allocation)
        })
    }
    fn node_labels(&self) -> BTreeMap<String, String> {
        self.labels.clone()
    }
}

fn config(dir: &Path) -> DeviceManagerConfig {
    DeviceManagerConfig::for_data_dir(dir)
}

fn request(resource: &str, count: u64) -> BTreeMap<String, u64> {
    BTreeMap::from([(resource.to_owned(), count)])
}

/// Let spawned watcher tasks run.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn capacity_counts_all_devices_and_allocatable_the_healthy_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manager = DeviceManager::open(config(dir.path())).expect("open");
    let mut plugin = FakePlugin::new(GPU, &["gpu-1", "gpu-0"]);
    plugin.labels = BTreeMap::from([("example.com/gpu.count".to_owned(), "2".to_owned())]);
    let plugin = Arc::new(plugin);
    let mut changes = manager.subscribe();
    manager.add_plugin(plugin.clone());
    assert!(
        changes.has_changed().expect("open"),
        "adding a plugin notifies"
    );
    changes.borrow_and_update();

    let node = manager.node_devices();
    let gpu = &node.resources[GPU];
    assert_eq!((gpu.capacity, gpu.allocatable), (2, 2));
    assert_eq!(gpu.devices[0].id, "gpu-0", "devices sorted by ID");
    assert_eq!(node.labels["example.com/gpu.count"], "2");
    assert_eq!(manager.node_labels(), node.labels);

    plugin.set_health("gpu-1", false);
    tokio::time::timeout(Duration::from_secs(5), changes.changed())
        .await
        .expect("health change notified")
        .expect("open");
    let gpu = manager.node_devices().resources[GPU].clone();
    assert_eq!((gpu.capacity, gpu.allocatable), (2, 1));
}

#[tokio::test]
async fn allocation_takes_free_healthy_devices_and_fails_like_upstream() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manager = DeviceManager::open(config(dir.path())).expect("open");
    let plugin = Arc::new(FakePlugin::new(GPU, &["gpu-0", "gpu-1"]));
    manager.add_plugin(plugin.clone());

    let first = manager
        .allocate("pod-a", "main", &request(GPU, 1))
        .await
        .expect("first pod");
    assert_eq!(first.envs["DEVICES"], "gpu-0");
    assert_eq!(first.devices[0].host_path, "/dev/gpu-0");
    let second = manager
        .allocate("pod-b", "main", &request(GPU, 1))
        .await
        .expect("second pod");
    assert_eq!(second.envs["DEVICES"], "gpu-1", "the other device");

    let err = manager
        .allocate("pod-c", "main", &request(GPU, 1))
        .await
        .expect_err("no device left");
    assert_eq!(err.reason(), "UnexpectedAdmissionError");
    assert_eq!(
        err.to_string(),
        "Allocate failed due to requested number of devices unavailable for example.com/gpu. \
         Requested: 1, Available: 0, which is unexpected"
    );

    assert_eq!(
        manager.pods_on_device(GPU, "gpu-1"),
        vec!["pod-b".to_owned()]
    );
    manager.release("pod-a").expect("release");
    assert!(manager.pods_on_device(GPU, "gpu-0").is_empty());
    let third = manager
        .allocate("pod-c", "main", &request(GPU, 1))
        .await
        .expect("a released device is free again");
    assert_eq!(third.envs["DEVICES"], "gpu-0");
}

#[tokio::test]
async fn unhealthy_devices_are_not_allocated() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manager = DeviceManager::open(config(dir.path())).expect("open");
    let plugin = Arc::new(FakePlugin::new(GPU, &["gpu-0", "gpu-1"]));
    manager.add_plugin(plugin.clone());
    let mut changes = manager.subscribe();
    plugin.set_health("gpu-0", false);
    changes.changed().await.expect("change");
    let allocation = manager
        .allocate("pod-a", "main", &request(GPU, 1))
        .await
        .expect("the healthy one");
    assert_eq!(allocation.envs["DEVICES"], "gpu-1");
    let err = manager
        .allocate("pod-b", "main", &request(GPU, 1))
        .await
        .expect_err("the unhealthy one is not offered");
    assert!(
        err.to_string().contains("Requested: 1, Available: 0"),
        "{err}"
    );
}

#[tokio::test]
async fn the_plugins_preferred_allocation_wins_where_available() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manager = DeviceManager::open(config(dir.path())).expect("open");
    let mut plugin = FakePlugin::new(GPU, &["gpu-0", "gpu-1", "gpu-2", "gpu-3"]);
    // gpu-9 does not exist: only available preferred devices count, the rest
    // is filled in order.
    plugin.preferred = Some(vec!["gpu-9".into(), "gpu-3".into()]);
    manager.add_plugin(Arc::new(plugin));
    let allocation = manager
        .allocate("pod-a", "main", &request(GPU, 2))
        .await
        .expect("allocate");
    assert_eq!(allocation.envs["DEVICES"], "gpu-3,gpu-0");
}

#[tokio::test]
async fn resources_no_plugin_serves_are_ignored_and_a_failed_allocate_holds_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manager = DeviceManager::open(config(dir.path())).expect("open");
    let none = manager
        .allocate("pod-a", "main", &request("cpu", 2))
        .await
        .expect("cpu is not a device");
    assert_eq!(none, ContainerAllocation::default());

    let mut plugin = FakePlugin::new(GPU, &["gpu-0"]);
    plugin.fail_allocate = true;
    manager.add_plugin(Arc::new(plugin));
    let err = manager
        .allocate("pod-a", "main", &request(GPU, 1))
        .await
        .expect_err("plugin refuses");
    assert_eq!(
        err.to_string(),
        "Allocate failed due to allocate on example.com/gpu failed: device busy, which is unexpected"
    );
    assert!(manager.pods_on_device(GPU, "gpu-0").is_empty());
}

#[tokio::test]
async fn a_container_keeps_its_devices_and_may_not_change_its_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manager = DeviceManager::open(config(dir.path())).expect("open");
    let plugin = Arc::new(FakePlugin::new(GPU, &["gpu-0", "gpu-1"]));
    manager.add_plugin(plugin.clone());
    let first = manager
        .allocate("pod-a", "main", &request(GPU, 1))
        .await
        .expect("allocate");
    let again = manager
        .allocate("pod-a", "main", &request(GPU, 1))
        .await
        .expect("restart");
    assert_eq!(first, again);
    assert_eq!(plugin.allocate_calls.load(Ordering::SeqCst), 1);
    let err = manager
        .allocate("pod-a", "main", &request(GPU, 2))
        .await
        .expect_err("changed");
    assert!(
        err.to_string()
            .contains("changed request for resource \"example.com/gpu\" from 1 to 2"),
        "{err}"
    );
}

#[test]
fn merge_keeps_the_first_of_conflicting_entries() {
    let record = |resource: &str, env: &str, host: &str| AllocationRecord {
        pod_uid: "p".into(),
        container_name: "c".into(),
        resource: resource.into(),
        device_ids: vec![],
        allocation: CheckpointAllocation {
            devices: vec![CheckpointDeviceSpec {
                container_path: "/dev/shared".into(),
                host_path: host.into(),
                permissions: "rw".into(),
            }],
            envs: BTreeMap::from([("SHARED".into(), env.into())]),
            cdi_devices: vec!["vendor.com/class=x".into()],
            ..Default::default()
        },
    };
    let a = record("a.com/x", "from-a", "/dev/a");
    let b = record("b.com/y", "from-b", "/dev/b");
    let merged = merge([&b, &a].into_iter());
    assert_eq!(merged.envs["SHARED"], "from-a", "resources in name order");
    assert_eq!(merged.devices.len(), 1);
    assert_eq!(merged.devices[0].host_path, "/dev/a");
    assert_eq!(merged.cdi_devices, vec!["vendor.com/class=x".to_owned()]);
}

#[tokio::test]
async fn checkpoint_round_trip_survives_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(dir.path());
    let plugin = Arc::new(FakePlugin::new(GPU, &["gpu-0", "gpu-1"]));
    let first = {
        let manager = DeviceManager::open(cfg.clone()).expect("open");
        manager.add_plugin(plugin.clone());
        manager
            .allocate("pod-a", "main", &request(GPU, 1))
            .await
            .expect("allocate")
    };
    let path = dir.path().join("agent/device-manager/checkpoint");
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("checkpoint written")).expect("JSON");
    assert_eq!(stored["allocations"][0]["pod_uid"], "pod-a");
    assert_eq!(stored["allocations"][0]["device_ids"][0], "gpu-0");
    assert_eq!(stored["registered_resources"][0], GPU);

    // The agent restarts: the resource is back with no devices until its
    // plugin registers, and the container's answer needs no plugin at all.
    let manager = DeviceManager::open(cfg).expect("reopen");
    let gpu = manager.node_devices().resources[GPU].clone();
    assert_eq!((gpu.capacity, gpu.allocatable), (0, 0));
    assert!(!gpu.plugin_connected);
    let again = manager
        .allocate("pod-a", "main", &request(GPU, 1))
        .await
        .expect("restored allocation");
    assert_eq!(again, first);
    assert_eq!(plugin.allocate_calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        manager.pods_on_device(GPU, "gpu-0"),
        vec!["pod-a".to_owned()]
    );
    let err = manager
        .allocate("pod-b", "main", &request(GPU, 1))
        .await
        .expect_err("no devices until the plugin is back");
    assert!(err.to_string().contains("Available: 0"), "{err}");

    // The plugin registers again: the restored allocation still holds gpu-0.
    manager.add_plugin(plugin.clone());
    let other = manager
        .allocate("pod-b", "main", &request(GPU, 1))
        .await
        .expect("allocate");
    assert_eq!(other.envs["DEVICES"], "gpu-1");

    // Pods that did not survive are released in one go.
    manager
        .retain_pods(&BTreeSet::from(["pod-b".to_owned()]))
        .expect("retain");
    assert!(manager.pods_on_device(GPU, "gpu-0").is_empty());
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("checkpoint")).expect("JSON");
    assert_eq!(stored["allocations"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_corrupt_checkpoint_is_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(dir.path());
    std::fs::create_dir_all(&cfg.state_dir).expect("mkdir");
    std::fs::write(cfg.checkpoint_path(), b"{not json").expect("write");
    let err = DeviceManager::open(cfg).expect_err("corrupt");
    assert!(
        matches!(err, DeviceManagerError::CorruptCheckpoint { .. }),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lost_plugin_turns_unhealthy_at_once_and_is_removed_after_the_grace_period() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manager = DeviceManager::open(config(dir.path())).expect("open");
    let plugin = Arc::new(FakePlugin::new(GPU, &["gpu-0", "gpu-1"]));
    let handle: Arc<dyn DevicePlugin> = plugin.clone();
    manager.add_plugin(handle.clone());
    manager
        .allocate("pod-a", "main", &request(GPU, 1))
        .await
        .expect("allocate");
    let mut events = manager.health_events();

    manager.plugin_lost(&handle, "socket gone");
    let gpu = manager.node_devices().resources[GPU].clone();
    assert_eq!((gpu.capacity, gpu.allocatable), (2, 0), "unhealthy at once");
    assert!(!gpu.plugin_connected);
    let event = events.try_recv().expect("health event");
    assert_eq!(event.resource, GPU);
    assert!(!event.healthy);
    assert_eq!(event.reason, "device plugin lost: socket gone");
    assert_eq!(event.device_id, "gpu-0");
    assert_eq!(events.try_recv().expect("second device").device_id, "gpu-1");
    assert_eq!(
        manager.pods_on_device(GPU, "gpu-0"),
        vec!["pod-a".to_owned()]
    );

    // A late ListAndWatch answer from the lost plugin does not heal it.
    plugin.set_health("gpu-0", true);
    settle().await;
    assert_eq!(manager.node_devices().resources[GPU].allocatable, 0);

    tokio::time::sleep(DEFAULT_LOST_PLUGIN_GRACE - Duration::from_secs(1)).await;
    assert!(
        manager.node_devices().resources.contains_key(GPU),
        "kept during the grace period"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    settle().await;
    let node = manager.node_devices();
    assert!(!node.resources.contains_key(GPU), "removed after it");
    assert!(node.removed.contains(GPU), "reported for zeroing");
}

#[tokio::test(start_paused = true)]
async fn a_plugin_back_within_the_grace_period_keeps_its_resource() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = config(dir.path());
    cfg.lost_plugin_grace = Duration::from_secs(30);
    let manager = DeviceManager::open(cfg).expect("open");
    let old: Arc<dyn DevicePlugin> = Arc::new(FakePlugin::new(GPU, &["gpu-0"]));
    manager.add_plugin(old.clone());
    manager.plugin_lost(&old, "stream ended");
    tokio::time::sleep(Duration::from_secs(10)).await;
    manager.add_plugin(Arc::new(FakePlugin::new(GPU, &["gpu-0"])));
    // The old plugin's loss reported again changes nothing.
    manager.plugin_lost(&old, "stream ended");
    tokio::time::sleep(Duration::from_secs(60)).await;
    settle().await;
    let gpu = manager.node_devices().resources[GPU].clone();
    assert_eq!((gpu.capacity, gpu.allocatable), (1, 1));
    assert!(gpu.plugin_connected);
}

#[tokio::test(start_paused = true)]
async fn restored_resources_expire_when_their_plugin_never_returns() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(dir.path());
    {
        let manager = DeviceManager::open(cfg.clone()).expect("open");
        manager.add_plugin(Arc::new(FakePlugin::new(GPU, &["gpu-0"])));
    }
    let manager = DeviceManager::open(cfg).expect("reopen");
    assert!(manager.node_devices().resources.contains_key(GPU));
    tokio::time::sleep(DEFAULT_LOST_PLUGIN_GRACE + Duration::from_secs(1)).await;
    settle().await;
    let node = manager.node_devices();
    assert!(!node.resources.contains_key(GPU));
    assert!(node.removed.contains(GPU));
}

#[tokio::test]
async fn health_changes_become_events_with_causes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manager = DeviceManager::open(config(dir.path())).expect("open");
    let mut events = manager.health_events();

    // A plugin without its own events: the manager derives them.
    let plain = Arc::new(FakePlugin::new(GPU, &["gpu-0"]));
    manager.add_plugin(plain.clone());
    plain.set_health("gpu-0", false);
    let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("in time")
        .expect("event");
    assert_eq!(
        event,
        DeviceHealthEvent {
            resource: GPU.into(),
            device_id: "gpu-0".into(),
            healthy: false,
            reason: "reported Unhealthy by its device plugin".into(),
        }
    );

    // A plugin with its own events: forwarded with their causes.
    let (sender, _) = broadcast::channel(4);
    let mut reporting = FakePlugin::new("example.com/tpu", &["tpu-0"]);
    reporting.health = Some(sender.clone());
    manager.add_plugin(Arc::new(reporting));
    settle().await;
    sender
        .send(HealthEvent {
            device_id: "tpu-0".into(),
            healthy: false,
            reason: "XID 79".into(),
        })
        .expect("subscribed");
    let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("in time")
        .expect("event");
    assert_eq!(event.resource, "example.com/tpu");
    assert_eq!(event.reason, "XID 79");
}
