//! The widget device plugin (`examples/widget-plugin`, a tonic server on a
//! unix socket serving v1beta1, resource `example.com/widget`, three devices)
//! registers with a Registration service started in a temp dir, as a plugin
//! DaemonSet does with the kubelet, and registers again when the
//! Registration service restarts.

#[path = "../examples/widget-plugin/widget.rs"]
mod widget;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use kedge_devices::api::v1beta1;
use kedge_devices::{
    DeviceHealthEvent, DeviceManager, DeviceManagerConfig, DeviceSpec, MountSpec, NodeDevices,
    RegistrationConfig, RegistrationServer,
};
use tokio::sync::{broadcast, watch};
use widget::{WidgetConfig, WidgetError, WidgetPlugin, RESOURCE as WIDGET};

async fn wait_for(
    changes: &mut watch::Receiver<NodeDevices>,
    what: &str,
    ready: impl Fn(&NodeDevices) -> bool,
) {
    let reached = matches!(
        tokio::time::timeout(Duration::from_secs(20), changes.wait_for(|n| ready(n))).await,
        Ok(Ok(_))
    );
    assert!(
        reached,
        "timed out waiting for {what}; now: {:?}",
        *changes.borrow()
    );
}

/// The Registration service's configuration under `root`.
fn registration(root: &Path) -> RegistrationConfig {
    RegistrationConfig {
        kubelet_root: root.join("kubelet"),
    }
}

/// An agent's device manager (its data in `root/<data>`) with its
/// Registration service started.
async fn start_agent(
    root: &Path,
    data: &str,
    registration: &RegistrationConfig,
) -> (DeviceManager, RegistrationServer) {
    let manager =
        DeviceManager::open(DeviceManagerConfig::for_data_dir(&root.join(data))).expect("manager");
    let server = RegistrationServer::start(registration, manager.clone())
        .await
        .expect("registration service");
    (manager, server)
}

/// The device IDs of the next health events that `wanted` picks, until three
/// (or none for 2 s), sorted.
async fn three_widgets(
    events: &mut broadcast::Receiver<DeviceHealthEvent>,
    wanted: impl Fn(&DeviceHealthEvent) -> bool,
) -> Vec<String> {
    let mut ids = Vec::new();
    while let Ok(Ok(event)) = tokio::time::timeout(Duration::from_secs(2), events.recv()).await {
        if wanted(&event) {
            ids.push(event.device_id);
        }
        if ids.len() == 3 {
            break;
        }
    }
    ids.sort();
    ids
}

fn widget_config(root: &Path, registration: &RegistrationConfig) -> WidgetConfig {
    let mut config = WidgetConfig::new(
        &registration.socket_dir(),
        &root.join("dev"),
        &root.join("share"),
    );
    config.cdi = true;
    config
}

#[tokio::test]
async fn an_external_plugin_registers_serves_allocations_and_is_lost_when_killed() {
    let root = tempfile::tempdir().expect("temp dir");
    let registration = registration(root.path());
    let (manager, server) = start_agent(root.path(), "data", &registration).await;
    assert_eq!(
        server.socket_path(),
        root.path().join("kubelet/device-plugins/kubelet.sock")
    );

    let config = widget_config(root.path(), &registration);
    let plugin = WidgetPlugin::serve(config.clone()).expect("serve the widget plugin");

    // A wrong API version is refused, as upstream.
    let refused = widget::register(
        server.socket_path(),
        v1beta1::RegisterRequest {
            version: "v1alpha1".into(),
            ..config.register_request()
        },
    )
    .await
    .expect_err("unsupported version");
    assert!(
        matches!(&refused, WidgetError::Refused(status)
            if status.message().contains("\"v1alpha1\" is not supported")),
        "{refused:?}"
    );

    widget::register(server.socket_path(), config.register_request())
        .await
        .expect("registered");

    let mut changes = manager.subscribe();
    wait_for(&mut changes, "three widgets", |n| {
        n.resources
            .get(WIDGET)
            .is_some_and(|r| r.capacity == 3 && r.allocatable == 3)
    })
    .await;
    assert!(manager.node_devices().resources[WIDGET].plugin_connected);

    // Health changes over ListAndWatch reach allocatable.
    let mut events = manager.health_events();
    plugin.set_health("widget-0", false);
    wait_for(&mut changes, "widget-0 unhealthy", |n| {
        n.resources[WIDGET].allocatable == 2
    })
    .await;
    let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("in time")
        .expect("event");
    assert_eq!(
        (
            event.resource.as_str(),
            event.device_id.as_str(),
            event.healthy
        ),
        (WIDGET, "widget-0", false)
    );
    plugin.set_health("widget-0", true);
    wait_for(&mut changes, "widget-0 healthy again", |n| {
        n.resources[WIDGET].allocatable == 3
    })
    .await;

    // Allocate returns exactly what the plugin's Allocate returned; the
    // plugin's preferred allocation (highest IDs) was followed.
    let requests = BTreeMap::from([(WIDGET.to_owned(), 2), ("cpu".to_owned(), 1)]);
    let allocation = manager
        .allocate("pod-1", "app", &requests)
        .await
        .expect("allocate");
    assert_eq!(
        plugin.allocations(),
        vec![vec!["widget-2".to_owned(), "widget-1".to_owned()]]
    );
    assert_eq!(allocation.envs["WIDGETS"], "widget-2,widget-1");
    assert_eq!(
        allocation.annotations["example.com/widgets"],
        "widget-2;widget-1"
    );
    assert_eq!(
        allocation.devices,
        vec![
            DeviceSpec {
                container_path: "/dev/widget-2".into(),
                host_path: root.path().join("dev/widget-2").display().to_string(),
                permissions: "rw".into(),
            },
            DeviceSpec {
                container_path: "/dev/widget-1".into(),
                host_path: root.path().join("dev/widget-1").display().to_string(),
                permissions: "rw".into(),
            },
        ]
    );
    assert_eq!(
        allocation.mounts,
        vec![MountSpec {
            container_path: "/opt/widget".into(),
            host_path: root.path().join("share").display().to_string(),
            read_only: true,
        }]
    );
    assert_eq!(
        allocation.cdi_devices,
        vec![
            "example.com/widget=widget-2".to_owned(),
            "example.com/widget=widget-1".to_owned()
        ]
    );
    manager
        .pre_start_container("pod-1", "app")
        .await
        .expect("PreStartContainer is not required, so not called");

    let err = manager
        .allocate("pod-2", "app", &BTreeMap::from([(WIDGET.to_owned(), 2)]))
        .await
        .expect_err("one widget left");
    assert_eq!(
        err.to_string(),
        "Allocate failed due to requested number of devices unavailable for example.com/widget. \
         Requested: 2, Available: 1, which is unexpected"
    );

    // A plugin that goes away turns its devices unhealthy at once; the
    // resource stays (for the grace period) with its capacity.
    plugin.stop();
    wait_for(&mut changes, "widgets unhealthy", |n| {
        n.resources
            .get(WIDGET)
            .is_some_and(|r| r.capacity == 3 && r.allocatable == 0 && !r.plugin_connected)
    })
    .await;
    let lost = three_widgets(&mut events, |event| {
        !event.healthy && event.reason.starts_with("device plugin lost")
    })
    .await;
    assert_eq!(lost, ["widget-0", "widget-1", "widget-2"]);
    assert_eq!(manager.pods_on_device(WIDGET, "widget-2"), ["pod-1"]);

    // The plugin comes back (restarted): its widgets are healthy again, with
    // an event each, and pod-1 still holds its two.
    let _plugin = WidgetPlugin::start(config)
        .await
        .expect("the widget plugin registers again");
    wait_for(&mut changes, "widgets healthy again", |n| {
        n.resources
            .get(WIDGET)
            .is_some_and(|r| r.allocatable == 3 && r.plugin_connected)
    })
    .await;
    let back = three_widgets(&mut events, |event| {
        if event.healthy {
            assert_eq!(event.reason, "its device plugin registered again");
        }
        event.healthy
    })
    .await;
    assert_eq!(back, ["widget-0", "widget-1", "widget-2"]);
    assert_eq!(manager.pods_on_device(WIDGET, "widget-2"), ["pod-1"]);

    server.shutdown().await;
}

/// Upstream plugins register again when `kubelet.sock` is recreated (the
/// kubelet restarted and removed every socket in the directory); so does the
/// widget plugin, and a new agent gets its widgets back.
#[tokio::test]
async fn the_plugin_registers_again_when_the_registration_service_restarts() {
    let root = tempfile::tempdir().expect("temp dir");
    let registration = registration(root.path());
    let (first, server) = start_agent(root.path(), "a", &registration).await;
    let config = widget_config(root.path(), &registration);
    let plugin = WidgetPlugin::start(config.clone())
        .await
        .expect("the widget plugin serves and registers");
    let mut changes = first.subscribe();
    wait_for(&mut changes, "three widgets", |n| {
        n.resources.get(WIDGET).is_some_and(|r| r.allocatable == 3)
    })
    .await;

    // The agent restarts: kubelet.sock goes, a new one comes (and the new
    // service removes the plugin's socket as stale).
    server.shutdown().await;
    let (second, server) = start_agent(root.path(), "b", &registration).await;
    let mut registrations = plugin.registrations();
    let again = tokio::time::timeout(Duration::from_secs(10), registrations.wait_for(|n| *n >= 2))
        .await
        .is_ok_and(|r| r.is_ok());
    assert!(
        again,
        "the plugin did not register again: {} registrations",
        *registrations.borrow()
    );
    let mut changes = second.subscribe();
    wait_for(&mut changes, "three widgets on the new agent", |n| {
        n.resources
            .get(WIDGET)
            .is_some_and(|r| r.allocatable == 3 && r.plugin_connected)
    })
    .await;
    assert!(config.socket().exists(), "the plugin serves a fresh socket");
    let allocation = second
        .allocate("pod-1", "app", &BTreeMap::from([(WIDGET.to_owned(), 1)]))
        .await
        .expect("the new agent allocates from the re-registered plugin");
    assert_eq!(allocation.envs["WIDGETS"], "widget-2");

    plugin.stop();
    assert!(
        !config.socket().exists(),
        "a stopped plugin removes its socket"
    );
    server.shutdown().await;
}
