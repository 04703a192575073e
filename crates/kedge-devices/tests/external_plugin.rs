//! An external device plugin written for this test (a tonic server on a unix
//! socket serving v1beta1, resource `example.com/widget`, three devices)
//! registers with a Registration service started in a temp dir, as a plugin
//! DaemonSet does with the kubelet.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use hyper_util::rt::TokioIo;
use kedge_devices::api::v1beta1;
use kedge_devices::api::v1beta1::device_plugin_server::{DevicePlugin, DevicePluginServer};
use kedge_devices::{
    DeviceManager, DeviceManagerConfig, DeviceSpec, MountSpec, NodeDevices, RegistrationConfig,
    RegistrationServer,
};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio_stream::wrappers::{UnixListenerStream, WatchStream};
use tonic::transport::{Endpoint, Uri};
use tonic::{Request, Response, Status};

const WIDGET: &str = "example.com/widget";

/// The test's plugin: three widgets, a preference for the highest IDs.
struct WidgetPlugin {
    devices: watch::Receiver<Vec<v1beta1::Device>>,
    allocations: Arc<Mutex<Vec<Vec<String>>>>,
}

fn widget(id: &str, health: &str) -> v1beta1::Device {
    v1beta1::Device {
        id: id.to_owned(),
        health: health.to_owned(),
        topology: None,
    }
}

#[tonic::async_trait]
impl DevicePlugin for WidgetPlugin {
    async fn get_device_plugin_options(
        &self,
        _: Request<v1beta1::Empty>,
    ) -> Result<Response<v1beta1::DevicePluginOptions>, Status> {
        Ok(Response::new(v1beta1::DevicePluginOptions {
            pre_start_required: false,
            get_preferred_allocation_available: true,
        }))
    }

    type ListAndWatchStream =
        futures::stream::BoxStream<'static, Result<v1beta1::ListAndWatchResponse, Status>>;

    async fn list_and_watch(
        &self,
        _: Request<v1beta1::Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        // Ends when the test drops the sender: the plugin is gone.
        let stream = WatchStream::new(self.devices.clone())
            .map(|devices| Ok(v1beta1::ListAndWatchResponse { devices }));
        Ok(Response::new(stream.boxed()))
    }

    async fn get_preferred_allocation(
        &self,
        request: Request<v1beta1::PreferredAllocationRequest>,
    ) -> Result<Response<v1beta1::PreferredAllocationResponse>, Status> {
        let container_responses = request
            .into_inner()
            .container_requests
            .into_iter()
            .map(|r| {
                let mut ids = r.available_device_i_ds;
                ids.sort();
                ids.reverse();
                ids.truncate(usize::try_from(r.allocation_size).unwrap_or(0));
                v1beta1::ContainerPreferredAllocationResponse { device_i_ds: ids }
            })
            .collect();
        Ok(Response::new(v1beta1::PreferredAllocationResponse {
            container_responses,
        }))
    }

    async fn allocate(
        &self,
        request: Request<v1beta1::AllocateRequest>,
    ) -> Result<Response<v1beta1::AllocateResponse>, Status> {
        let mut container_responses = Vec::new();
        for container in request.into_inner().container_requests {
            let ids = container.devices_ids;
            self.allocations.lock().expect("lock").push(ids.clone());
            container_responses.push(v1beta1::ContainerAllocateResponse {
                envs: [("WIDGETS".to_owned(), ids.join(","))]
                    .into_iter()
                    .collect(),
                mounts: vec![v1beta1::Mount {
                    container_path: "/opt/widget".into(),
                    host_path: "/usr/lib/widget".into(),
                    read_only: true,
                }],
                devices: ids
                    .iter()
                    .map(|id| v1beta1::DeviceSpec {
                        container_path: format!("/dev/{id}"),
                        host_path: format!("/dev/host-{id}"),
                        permissions: "rw".into(),
                    })
                    .collect(),
                annotations: [("example.com/widgets".to_owned(), ids.join(";"))]
                    .into_iter()
                    .collect(),
                cdi_devices: ids
                    .iter()
                    .map(|id| v1beta1::CdiDevice {
                        name: format!("example.com/widget={id}"),
                    })
                    .collect(),
            });
        }
        Ok(Response::new(v1beta1::AllocateResponse {
            container_responses,
        }))
    }

    async fn pre_start_container(
        &self,
        _: Request<v1beta1::PreStartContainerRequest>,
    ) -> Result<Response<v1beta1::PreStartContainerResponse>, Status> {
        Err(Status::unimplemented("not required"))
    }
}

/// The running test plugin.
struct RunningPlugin {
    devices: watch::Sender<Vec<v1beta1::Device>>,
    allocations: Arc<Mutex<Vec<Vec<String>>>>,
    server: tokio::task::JoinHandle<()>,
    socket: PathBuf,
}

impl RunningPlugin {
    fn serve(socket: &Path) -> RunningPlugin {
        let (devices, watched) = watch::channel(vec![
            widget("widget-0", "Healthy"),
            widget("widget-1", "Healthy"),
            widget("widget-2", "Healthy"),
        ]);
        let allocations = Arc::new(Mutex::new(Vec::new()));
        let plugin = WidgetPlugin {
            devices: watched,
            allocations: allocations.clone(),
        };
        let listener = UnixListener::bind(socket).expect("bind plugin socket");
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(DevicePluginServer::new(plugin))
                .serve_with_incoming(UnixListenerStream::new(listener))
                .await;
        });
        RunningPlugin {
            devices,
            allocations,
            server,
            socket: socket.to_owned(),
        }
    }

    /// Kill it: its streams end, its socket goes.
    fn kill(self) {
        self.server.abort();
        drop(self.devices);
        let _ = std::fs::remove_file(&self.socket);
    }
}

async fn register(kubelet_sock: &Path, request: v1beta1::RegisterRequest) -> Result<(), Status> {
    let path = kubelet_sock.to_owned();
    let endpoint = Endpoint::from_static("http://localhost");
    let channel = endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .expect("dial kubelet.sock");
    v1beta1::registration_client::RegistrationClient::new(channel)
        .register(request)
        .await
        .map(|_| ())
}

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

#[tokio::test]
async fn an_external_plugin_registers_serves_allocations_and_is_lost_when_killed() {
    let root = tempfile::tempdir().expect("temp dir");
    let registration = RegistrationConfig {
        kubelet_root: root.path().join("kubelet"),
    };
    let manager = DeviceManager::open(DeviceManagerConfig::for_data_dir(&root.path().join("data")))
        .expect("manager");
    let server = RegistrationServer::start(&registration, manager.clone())
        .await
        .expect("registration service");
    assert_eq!(
        server.socket_path(),
        root.path().join("kubelet/device-plugins/kubelet.sock")
    );

    let plugin = RunningPlugin::serve(&registration.socket_dir().join("widget.sock"));

    // A wrong API version is refused, as upstream.
    let refused = register(
        server.socket_path(),
        v1beta1::RegisterRequest {
            version: "v1alpha1".into(),
            endpoint: "widget.sock".into(),
            resource_name: WIDGET.into(),
            options: None,
        },
    )
    .await
    .expect_err("unsupported version");
    assert!(
        refused.message().contains("\"v1alpha1\" is not supported"),
        "{refused:?}"
    );

    register(
        server.socket_path(),
        v1beta1::RegisterRequest {
            version: "v1beta1".into(),
            endpoint: "widget.sock".into(),
            resource_name: WIDGET.into(),
            options: Some(v1beta1::DevicePluginOptions {
                pre_start_required: false,
                get_preferred_allocation_available: true,
            }),
        },
    )
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
    plugin
        .devices
        .send_modify(|d| d[0].health = "Unhealthy".into());
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
    plugin
        .devices
        .send_modify(|d| d[0].health = "Healthy".into());
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
        *plugin.allocations.lock().expect("lock"),
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
                host_path: "/dev/host-widget-2".into(),
                permissions: "rw".into(),
            },
            DeviceSpec {
                container_path: "/dev/widget-1".into(),
                host_path: "/dev/host-widget-1".into(),
                permissions: "rw".into(),
            },
        ]
    );
    assert_eq!(
        allocation.mounts,
        vec![MountSpec {
            container_path: "/opt/widget".into(),
            host_path: "/usr/lib/widget".into(),
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

    // Killing the plugin turns its devices unhealthy at once; the resource
    // stays (for the grace period) with its capacity.
    plugin.kill();
    wait_for(&mut changes, "widgets unhealthy", |n| {
        n.resources
            .get(WIDGET)
            .is_some_and(|r| r.capacity == 3 && r.allocatable == 0 && !r.plugin_connected)
    })
    .await;
    let mut lost = Vec::new();
    while let Ok(Ok(event)) = tokio::time::timeout(Duration::from_secs(2), events.recv()).await {
        if !event.healthy && event.reason.starts_with("device plugin lost") {
            lost.push(event.device_id);
        }
        if lost.len() == 3 {
            break;
        }
    }
    lost.sort();
    assert_eq!(lost, ["widget-0", "widget-1", "widget-2"]);
    assert_eq!(manager.pods_on_device(WIDGET, "widget-2"), ["pod-1"]);

    server.shutdown().await;
}
