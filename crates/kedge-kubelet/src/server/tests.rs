//! The agent API over real TLS on loopback, with the fake runtime and an
//! in-memory pod directory. Proxying to a real streaming server is covered by
//! `tests/streaming_real.rs` against containerd.

use std::collections::HashMap;
use std::sync::Mutex;

use http_body_util::Empty;
use k8s_openapi::api::core::v1::{
    Container, ContainerState as K8sState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rustls::pki_types::ServerName;

use super::*;
use crate::cri::api::{ContainerConfig, ContainerMetadata, PodSandboxConfig, PodSandboxMetadata};
use crate::cri::{image_spec, FakeRuntime};

#[derive(Default)]
struct Pods(Mutex<HashMap<(String, String), PodEntry>>);

impl PodDirectory for Pods {
    fn pod(&self, namespace: &str, name: &str) -> Option<PodEntry> {
        self.0
            .lock()
            .ok()?
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }
}

struct Harness {
    _tmp: tempfile::TempDir,
    addr: SocketAddr,
    client_tls: Arc<rustls::ClientConfig>,
    runtime: Arc<FakeRuntime>,
    pods: Arc<Pods>,
    log_dir: std::path::PathBuf,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn status(
    name: &str,
    id: Option<&str>,
    state: K8sState,
    last: Option<K8sState>,
) -> ContainerStatus {
    ContainerStatus {
        name: name.into(),
        container_id: id.map(|i| format!("containerd://{i}")),
        state: Some(state),
        last_state: last,
        ..ContainerStatus::default()
    }
}

fn running() -> K8sState {
    K8sState {
        running: Some(ContainerStateRunning::default()),
        ..K8sState::default()
    }
}

fn waiting(reason: &str) -> K8sState {
    K8sState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            ..ContainerStateWaiting::default()
        }),
        ..K8sState::default()
    }
}

fn terminated(id: &str) -> K8sState {
    K8sState {
        terminated: Some(ContainerStateTerminated {
            container_id: Some(format!("containerd://{id}")),
            exit_code: 1,
            ..ContainerStateTerminated::default()
        }),
        ..K8sState::default()
    }
}

fn pod(name: &str, containers: &[&str], statuses: Vec<ContainerStatus>) -> Arc<Pod> {
    Arc::new(Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: containers
                .iter()
                .map(|c| Container {
                    name: (*c).into(),
                    ..Container::default()
                })
                .collect(),
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            container_statuses: Some(statuses),
            ..PodStatus::default()
        }),
    })
}

/// Pod `web` with its one container `app` running as `id`.
fn web_running(id: &str) -> Arc<Pod> {
    pod(
        "web",
        &["app"],
        vec![status("app", Some(id), running(), None)],
    )
}

impl Harness {
    async fn start(translator: Option<Arc<dyn StreamTranslator>>) -> Harness {
        let tmp = tempfile::tempdir().unwrap();
        let server_dir = tmp.path().join("server");
        kedge_pki::ensure_pki(&server_dir, &[]).unwrap();
        let serving = kedge_pki::ensure_kubelet_serving_cert(
            &tmp.path().join("agent"),
            &server_dir,
            "n1",
            &[],
        )
        .unwrap();
        let client = kedge_pki::ensure_kubelet_client_cert(&server_dir).unwrap();
        let runtime = Arc::new(FakeRuntime::new());
        let pods = Arc::new(Pods::default());
        let mut server = AgentServer::new(runtime.clone(), pods.clone());
        if let Some(t) = translator {
            server = server.with_translator(t);
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let tls = Arc::new(kedge_pki::kubelet_server_tls_config(&serving).unwrap());
        tokio::spawn(Arc::new(server).serve(listener, tls, async {
            let _ = stopped.await;
        }));
        let log_dir = tmp.path().join("pods").join("default_web_uid-web");
        Harness {
            client_tls: Arc::new(kedge_pki::kubelet_client_tls_config(&client).unwrap()),
            addr,
            runtime,
            pods,
            log_dir,
            _tmp: tmp,
            _stop: stop,
        }
    }

    fn put(&self, pod: Arc<Pod>, sandbox_id: Option<String>) {
        let key = (
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        self.pods
            .0
            .lock()
            .unwrap()
            .insert(key, PodEntry { pod, sandbox_id });
    }

    /// A fake sandbox with one started container `app` that logs to `app/<n>.log`.
    async fn container(&self, attempt: u32) -> (String, String) {
        self.runtime.add_image("busybox");
        let sandbox = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "web".into(),
                namespace: "default".into(),
                uid: "uid-web".into(),
                attempt: 0,
            }),
            log_directory: self.log_dir.display().to_string(),
            ..PodSandboxConfig::default()
        };
        let sid = match self.runtime.list_pod_sandbox(None).await.unwrap().first() {
            Some(s) => s.id.clone(),
            None => self
                .runtime
                .run_pod_sandbox(sandbox.clone(), "")
                .await
                .unwrap(),
        };
        let id = self
            .runtime
            .create_container(
                &sid,
                ContainerConfig {
                    metadata: Some(ContainerMetadata {
                        name: "app".into(),
                        attempt,
                    }),
                    image: Some(image_spec("busybox")),
                    log_path: format!("app/{attempt}.log"),
                    ..ContainerConfig::default()
                },
                sandbox,
            )
            .await
            .unwrap();
        self.runtime.start_container(&id).await.unwrap();
        (sid, id)
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, String) {
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(self.client_tls.clone())
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn.with_upgrades());
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "localhost");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = sender
            .send_request(req.body(Empty::<Bytes>::new()).unwrap())
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    /// The status code and the `Status` message of a request that fails.
    async fn error(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, String) {
        let (code, _, body) = self.request(method, path, headers).await;
        (code, message(&body))
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let (code, _, body) = self.request(Method::GET, path, &[]).await;
        (code, body)
    }
}

fn message(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["kind"], "Status", "{body}");
    v["message"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn healthz_and_unknown_paths() {
    let h = Harness::start(None).await;
    assert_eq!(h.get("/healthz").await, (StatusCode::OK, "ok".into()));
    let (code, body) = h.get("/stats/summary").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(message(&body), "404 page not found");
    let (code, _, _) = h
        .request(Method::DELETE, "/exec/default/web/app", &[])
        .await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn logs_are_read_from_the_runtimes_log_path() {
    let h = Harness::start(None).await;
    let (_, old) = h.container(0).await;
    h.runtime.exit_container(&old, 1, "Error");
    let (_, current) = h.container(1).await;
    std::fs::create_dir_all(h.log_dir.join("app")).unwrap();
    std::fs::write(
        h.log_dir.join("app/0.log"),
        "2024-05-01T10:00:00Z stdout F from the previous run\n",
    )
    .unwrap();
    std::fs::write(
        h.log_dir.join("app/1.log"),
        "2024-05-01T10:00:01Z stdout F one\n2024-05-01T10:00:02.5Z stderr F two\n",
    )
    .unwrap();
    h.put(
        pod(
            "web",
            &["app"],
            vec![status(
                "app",
                Some(&current),
                running(),
                Some(terminated(&old)),
            )],
        ),
        None,
    );
    assert_eq!(
        h.get("/containerLogs/default/web/app").await,
        (StatusCode::OK, "one\ntwo\n".into())
    );
    assert_eq!(
        h.get("/containerLogs/default/web/app?tailLines=1&timestamps=true")
            .await,
        (StatusCode::OK, "2024-05-01T10:00:02.5Z two\n".into())
    );
    // The old `tail` parameter, `all` meaning everything.
    assert_eq!(
        h.get("/containerLogs/default/web/app?tail=1").await,
        (StatusCode::OK, "two\n".into())
    );
    assert_eq!(
        h.get("/containerLogs/default/web/app?tail=all&tailLines=1")
            .await,
        (StatusCode::OK, "one\ntwo\n".into())
    );
    assert_eq!(
        h.get("/containerLogs/default/web/app?previous=true").await,
        (StatusCode::OK, "from the previous run\n".into())
    );
    assert_eq!(
        h.get("/containerLogs/default/web/app?limitBytes=2").await,
        (StatusCode::OK, "on".into())
    );
    // The container exited: a follow reads everything and ends.
    h.runtime.exit_container(&current, 0, "Completed");
    let followed = tokio::time::timeout(
        Duration::from_secs(10),
        h.get("/containerLogs/default/web/app?follow=true"),
    )
    .await
    .expect("follow of a stopped container ends");
    assert_eq!(followed, (StatusCode::OK, "one\ntwo\n".into()));
}

#[tokio::test]
async fn log_errors_carry_upstream_messages() {
    let h = Harness::start(None).await;
    h.put(
        pod(
            "web",
            &["app", "side"],
            vec![
                status("app", None, waiting("ContainerCreating"), None),
                status("side", None, waiting("ImagePullBackOff"), None),
            ],
        ),
        None,
    );
    let cases = [
        ("/containerLogs/default/nope/app", StatusCode::NOT_FOUND, "pod \"nope\" does not exist"),
        ("/containerLogs/default/web/other", StatusCode::NOT_FOUND, "container \"other\" not found in pod \"web\""),
        ("/containerLogs/default/web/app", StatusCode::BAD_REQUEST, "container \"app\" in pod \"web\" is waiting to start: ContainerCreating"),
        ("/containerLogs/default/web/side", StatusCode::BAD_REQUEST, "container \"side\" in pod \"web\" is waiting to start: trying and failing to pull image"),
        ("/containerLogs/default/web/app?previous=true", StatusCode::BAD_REQUEST, "previous terminated container \"app\" in pod \"web\" not found"),
        ("/containerLogs/default/web/app?tailLines=x", StatusCode::BAD_REQUEST, "Unable to decode query: strconv.ParseInt: parsing \"x\": invalid syntax"),
        ("/containerLogs/default/web/app?tailLines=-2", StatusCode::UNPROCESSABLE_ENTITY, "Invalid request: tailLines: Invalid value: -2: must be greater than or equal to 0"),
    ];
    for (path, code, want) in cases {
        let (got_code, body) = h.get(path).await;
        assert_eq!(got_code, code, "{path}: {body}");
        assert_eq!(message(&body), want, "{path}");
    }
}

#[tokio::test]
async fn exec_and_attach_check_options_and_container_state() {
    let h = Harness::start(None).await;
    let (_, id) = h.container(0).await;
    h.put(
        pod(
            "web",
            &["app", "idle"],
            vec![
                status("app", Some(&id), running(), None),
                status("idle", None, waiting("CrashLoopBackOff"), None),
            ],
        ),
        None,
    );
    let (code, _, body) = h
        .request(Method::POST, "/exec/default/web/app?command=ls", &[])
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&body),
        "you must specify at least 1 of stdin, stdout, stderr"
    );
    assert_eq!(
        h.error(
            Method::POST,
            "/exec/default/gone/app?command=ls&output=1",
            &[],
        )
        .await,
        (StatusCode::NOT_FOUND, "pod does not exist".into())
    );
    assert_eq!(
        h.error(
            Method::POST,
            "/exec/default/web/idle?command=ls&output=1",
            &[],
        )
        .await,
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "container not found (\"idle\")".into()
        )
    );
    let (code, _, body) = h
        .request(
            Method::POST,
            "/exec/default/web/wrong-uid/app?command=ls&output=1",
            &[],
        )
        .await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    // Everything is right, but the client did not ask for an upgrade.
    h.runtime.clear_calls();
    assert_eq!(
        h.error(
            Method::POST,
            "/exec/default/web/app?command=ls&output=1",
            &[],
        )
        .await,
        (StatusCode::BAD_REQUEST, "Upgrade request required".into())
    );
    assert!(h.runtime.calls().contains(&"Exec"));
    assert_eq!(
        h.error(Method::GET, "/attach/default/web/app?output=1&tty=1", &[])
            .await,
        (StatusCode::BAD_REQUEST, "Upgrade request required".into())
    );
    assert!(h.runtime.calls().contains(&"Attach"));
    // A streaming URL nobody answers: the dial error, as a 500.
    let (code, _, body) = h
        .request(
            Method::POST,
            "/exec/default/web/app?command=ls&output=1",
            &[("connection", "Upgrade"), ("upgrade", "SPDY/3.1")],
        )
        .await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        message(&body).starts_with("error dialing backend"),
        "{body}"
    );
}

#[tokio::test]
async fn port_forward_needs_a_sandbox_and_valid_websocket_ports() {
    let h = Harness::start(None).await;
    let (sid, id) = h.container(0).await;
    h.put(web_running(&id), None);
    let ws = [("connection", "Upgrade"), ("upgrade", "websocket")];
    assert_eq!(
        h.error(Method::GET, "/portForward/default/web", &ws).await,
        (
            StatusCode::BAD_REQUEST,
            "query parameter \"port\" is required".into()
        )
    );
    let (code, _, body) = h
        .request(Method::GET, "/portForward/default/web?port=80,x", &ws)
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(
        message(&body).starts_with("unable to parse \"80,x\" as a port"),
        "{body}"
    );
    assert_eq!(
        h.error(Method::GET, "/portForward/default/web?port=0", &ws)
            .await,
        (StatusCode::BAD_REQUEST, "port \"0\" must be > 0".into())
    );
    assert_eq!(
        h.error(Method::POST, "/portForward/default/web", &[]).await,
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "pod not found (\"web_default\")".into()
        )
    );
    h.put(web_running(&id), Some(sid));
    assert_eq!(
        h.error(Method::POST, "/portForward/default/web/other-uid", &[])
            .await,
        (StatusCode::NOT_FOUND, "pod not found".into())
    );
    assert_eq!(
        h.error(Method::POST, "/portForward/default/web/uid-web", &[])
            .await,
        (StatusCode::BAD_REQUEST, "Upgrade request required".into())
    );
}

/// Records what it was handed and answers 418.
#[derive(Default)]
struct RecordingTranslator(Mutex<Vec<(StreamKind, String)>>);

impl StreamTranslator for RecordingTranslator {
    fn wants_translation(&self, headers: &HeaderMap) -> bool {
        headers
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("v5.channel.k8s.io"))
    }

    fn translate(
        &self,
        _req: Request<Incoming>,
        kind: StreamKind,
        backend_url: String,
    ) -> ResponseFuture {
        if let Ok(mut seen) = self.0.lock() {
            seen.push((kind, backend_url));
        }
        Box::pin(async { text(StatusCode::IM_A_TEAPOT, "translated") })
    }
}

#[tokio::test]
async fn websocket_v5_goes_to_the_translator() {
    let translator = Arc::new(RecordingTranslator::default());
    let h = Harness::start(Some(translator.clone())).await;
    let (_, id) = h.container(0).await;
    h.put(web_running(&id), None);
    let v5 = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        (
            "sec-websocket-protocol",
            "v5.channel.k8s.io, v4.channel.k8s.io",
        ),
    ];
    let (code, _, body) = h
        .request(
            Method::GET,
            "/exec/default/web/app?command=sh&output=1",
            &v5,
        )
        .await;
    assert_eq!(
        (code, body.as_str()),
        (StatusCode::IM_A_TEAPOT, "translated")
    );
    let seen = translator.0.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![(StreamKind::Exec, format!("http://fake.invalid/exec/{id}"))]
    );
    // v4 only: proxied as it came (and here, nobody answers at the fake URL).
    let v4 = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-protocol", "v4.channel.k8s.io"),
    ];
    let (code, _, _) = h
        .request(
            Method::GET,
            "/exec/default/web/app?command=sh&output=1",
            &v4,
        )
        .await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(translator.0.lock().unwrap().len(), 1);
}

#[test]
fn log_container_follows_upstream_state_rules() {
    let p = |s| pod("p", &["c"], vec![s]);
    // Crash loop: waiting now, the last run's logs.
    let crash = p(status(
        "c",
        None,
        waiting("CrashLoopBackOff"),
        Some(terminated("old")),
    ));
    assert_eq!(log_container_id(&crash, "c", false).unwrap(), "old");
    assert_eq!(log_container_id(&crash, "c", true).unwrap(), "old");
    // Terminated with its own id.
    let done = p(status("c", Some("x"), terminated("x"), None));
    assert_eq!(log_container_id(&done, "c", false).unwrap(), "x");
    assert_eq!(
        log_container_id(
            &p(status("c", None, waiting("ErrImagePull"), None)),
            "c",
            false
        )
        .unwrap_err(),
        "container \"c\" in pod \"p\" is waiting to start: image can't be pulled"
    );
    assert_eq!(
        log_container_id(&p(status("c", None, K8sState::default(), None)), "c", false).unwrap_err(),
        "container \"c\" in pod \"p\" is waiting to start - no logs yet"
    );
    assert_eq!(
        log_container_id(&pod("p", &["c"], vec![]), "c", false).unwrap_err(),
        "container \"c\" in pod \"p\" is not available"
    );
}

#[test]
fn legacy_tail_and_path_decoding() {
    assert_eq!(
        legacy_tail(Some("tail=5&follow=1")).as_deref(),
        Some("follow=1&tailLines=5")
    );
    assert_eq!(
        legacy_tail(Some("tail=all&tailLines=3")).as_deref(),
        Some("")
    );
    assert_eq!(
        legacy_tail(Some("tailLines=3")).as_deref(),
        Some("tailLines=3")
    );
    assert_eq!(percent_decode("a%20b+c"), "a b+c");
    assert_eq!(
        query_values(Some("command=sh&command=-c&command=echo+a%26b"), "command"),
        ["sh", "-c", "echo a&b"]
    );
}
