//! Probes against real local servers (HTTP, HTTPS, TCP, gRPC on 127.0.0.1)
//! and the exec probe through the fake runtime; the workers' timing and
//! threshold rules under paused tokio time; lifecycle hooks.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;
use crate::cri::api::{
    ContainerConfig, ContainerMetadata, ExecSyncResponse, PodSandboxConfig, PodSandboxMetadata,
};
use crate::cri::{image_spec, FakeRuntime};

// ---------------------------------------------------------------- servers --

/// A one-request-per-connection HTTP/1.1 server; `respond` gets the request
/// head and returns the whole response. Returns the port and the heads seen.
async fn http_server(
    respond: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static,
) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let respond = Arc::new(respond);
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let respond = respond.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let head = read_head(&mut stream).await;
                log.lock().expect("log").push(head.clone());
                let _ = stream.write_all(&respond(&head)).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (port, seen)
}

async fn read_head<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    // A TLS ClientHello (0x16) is not HTTP: answer at once, as real servers do.
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.first() != Some(&0x16) {
        match stream.read(&mut byte).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&byte[..n]),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn response(status: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

fn header<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr").port()
}

type GrpcBody =
    StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// A gRPC health server: "" is SERVING, "db" NOT_SERVING, "unimplemented"
/// answers UNIMPLEMENTED, "slow" never answers. Records user agents.
async fn grpc_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let agents = Arc::new(Mutex::new(Vec::new()));
    let log = agents.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: ::http::Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let agent = req
                                .headers()
                                .get("user-agent")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_owned();
                            log.lock().expect("log").push(agent);
                            let path_ok = req.uri().path() == HEALTH_CHECK_PATH;
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let request = HealthCheckRequest::decode(body.get(5..).unwrap_or(&[]))
                                .unwrap_or_default();
                            let status = match (path_ok, request.service.as_str()) {
                                (false, _) | (_, "unimplemented") => None,
                                (_, "db") => Some(ServingStatus::NotServing),
                                (_, "slow") => {
                                    tokio::time::sleep(Duration::from_secs(30)).await;
                                    Some(ServingStatus::Serving)
                                }
                                _ => Some(ServingStatus::Serving),
                            };
                            let mut trailers = ::http::HeaderMap::new();
                            let mut frames = Vec::new();
                            match status {
                                Some(status) => {
                                    let message = HealthCheckResponse {
                                        status: status as i32,
                                    }
                                    .encode_to_vec();
                                    let mut data = vec![0u8];
                                    data.extend_from_slice(
                                        &u32::try_from(message.len()).unwrap_or(0).to_be_bytes(),
                                    );
                                    data.extend_from_slice(&message);
                                    frames.push(Ok(Frame::data(Bytes::from(data))));
                                    trailers.insert(
                                        "grpc-status",
                                        ::http::HeaderValue::from_static("0"),
                                    );
                                }
                                None => {
                                    trailers.insert(
                                        "grpc-status",
                                        ::http::HeaderValue::from_static("12"),
                                    );
                                    trailers.insert(
                                        "grpc-message",
                                        ::http::HeaderValue::from_static("unknown service"),
                                    );
                                }
                            }
                            frames.push(Ok(Frame::trailers(trailers)));
                            let body: GrpcBody = StreamBody::new(futures::stream::iter(frames));
                            let mut response = ::http::Response::new(body);
                            response.headers_mut().insert(
                                "content-type",
                                ::http::HeaderValue::from_static("application/grpc"),
                            );
                            Ok::<_, Infallible>(response)
                        }
                    },
                );
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, agents)
}

// ------------------------------------------------------------- fixtures --

fn pod_with(container: Value) -> Value {
    json!({
        "metadata": {"name": "web-0", "namespace": "default", "uid": "uid1"},
        "spec": {"containers": [container]},
    })
}

fn target<'a>(pod: &'a Value, container: &'a Value, id: &'a str) -> ProbeTarget<'a> {
    ProbeTarget {
        pod,
        container,
        container_id: id,
        pod_ip: "127.0.0.1",
    }
}

/// A fake runtime with one running container; returns its id.
async fn running_container(runtime: &FakeRuntime) -> String {
    runtime.add_image("busybox");
    let sandbox_config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "web-0".into(),
            namespace: "default".into(),
            uid: "uid1".into(),
            attempt: 0,
        }),
        ..PodSandboxConfig::default()
    };
    let sandbox = runtime
        .run_pod_sandbox(sandbox_config.clone(), "")
        .await
        .expect("sandbox");
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "web".into(),
            attempt: 0,
        }),
        image: Some(image_spec("busybox")),
        ..ContainerConfig::default()
    };
    let id = runtime
        .create_container(&sandbox, config, sandbox_config)
        .await
        .expect("create");
    runtime.start_container(&id).await.expect("start");
    id
}

fn exit_with(code: i32, stdout: &str, stderr: &str) -> ExecSyncResponse {
    ExecSyncResponse {
        stdout: stdout.as_bytes().to_vec(),
        stderr: stderr.as_bytes().to_vec(),
        exit_code: code,
    }
}

// ------------------------------------------------------------ one probe --

#[tokio::test]
async fn exec_probes_use_the_exit_code_and_report_the_output() {
    let runtime = FakeRuntime::new();
    let id = running_container(&runtime).await;
    let commands = Arc::new(Mutex::new(Vec::new()));
    let seen = commands.clone();
    runtime.set_exec_handler(Arc::new(move |_, cmd: &[String]| {
        seen.lock().expect("seen").push(cmd.to_vec());
        match cmd.last().map(String::as_str) {
            Some("ok") => exit_with(0, "fine\n", ""),
            Some("big") => exit_with(1, &"x".repeat(20_000), "tail"),
            _ => exit_with(3, "out;", "err"),
        }
    }));
    let container = json!({"name": "web", "env": [
        {"name": "WHAT", "value": "ok"},
        {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
    ]});
    let pod = pod_with(container.clone());
    let probe = json!({"exec": {"command": ["check", "$(SECRET)", "$(WHAT)"]}});
    let outcome = run_probe(&runtime, &probe, target(&pod, &container, &id))
        .await
        .expect("ran");
    assert_eq!(
        outcome,
        ProbeOutcome {
            result: ProbeResult::Success,
            output: "fine\n".into()
        }
    );
    // Only literal values expand; `valueFrom` stays as written.
    assert_eq!(
        commands.lock().expect("seen")[0],
        ["check", "$(SECRET)", "ok"]
    );

    let probe = json!({"exec": {"command": ["check", "bad"]}});
    let outcome = run_probe(&runtime, &probe, target(&pod, &container, &id))
        .await
        .expect("ran");
    assert_eq!(
        outcome,
        ProbeOutcome {
            result: ProbeResult::Failure,
            output: "out;err".into()
        }
    );

    let probe = json!({"exec": {"command": ["big"]}});
    let outcome = run_probe(&runtime, &probe, target(&pod, &container, &id))
        .await
        .expect("ran");
    assert_eq!(outcome.output.len(), MAX_BODY, "output is cut at 10 KiB");

    // The runtime's deadline is a failure, with upstream's message.
    runtime.inject_error(
        "ExecSync",
        tonic::Status::deadline_exceeded("timeout 1s exceeded"),
    );
    let probe = json!({"exec": {"command": ["sleep", "5"]}, "timeoutSeconds": 1});
    let outcome = run_probe(&runtime, &probe, target(&pod, &container, &id))
        .await
        .expect("ran");
    assert_eq!(
        outcome,
        ProbeOutcome {
            result: ProbeResult::Failure,
            output: "command \"sleep 5\" timed out".into()
        }
    );

    // Another runtime error: the probe could not run.
    runtime.inject_error("ExecSync", tonic::Status::not_found("no such container"));
    let err = run_probe(&runtime, &probe, target(&pod, &container, &id))
        .await
        .expect_err("error");
    assert_eq!(
        err.to_string(),
        "rpc error: code = NotFound desc = no such container"
    );
}

#[tokio::test]
async fn http_probes_send_upstreams_request_and_judge_the_status() {
    let (port, seen) = http_server(|head| {
        let path = head.split_whitespace().nth(1).unwrap_or("");
        match path {
            "/ok" => response("200 OK", &[], "all good"),
            "/bad" => response("503 Service Unavailable", &[], "down"),
            "/big" => response("200 OK", &[], &"y".repeat(20_000)),
            "/moved" => response("302 Found", &[("Location", "/ok")], ""),
            "/away" => response("301 Moved", &[("Location", "http://localhost:1/x")], "bye"),
            "/loop" => response("302 Found", &[("Location", "/loop")], ""),
            _ => response("404 Not Found", &[], ""),
        }
    })
    .await;
    let container = json!({"name": "web", "ports": [{"name": "http", "containerPort": port}]});
    let pod = pod_with(container.clone());
    let run = |path: &str| {
        let probe = json!({"httpGet": {"path": path, "port": "http", "httpHeaders": [
            {"name": "x-probe", "value": "yes"}, {"name": "Host", "value": "web.example"}
        ]}});
        let (pod, container) = (pod.clone(), container.clone());
        async move {
            run_probe(&FakeRuntime::new(), &probe, target(&pod, &container, "c"))
                .await
                .expect("ran")
        }
    };

    assert_eq!(
        run("/ok").await,
        ProbeOutcome {
            result: ProbeResult::Success,
            output: "all good".into()
        }
    );
    let head = seen.lock().expect("seen")[0].clone();
    assert!(head.starts_with("GET /ok HTTP/1.1\r\n"), "{head}");
    assert_eq!(header(&head, "user-agent"), ["kube-probe/1.33"]);
    assert_eq!(header(&head, "accept"), ["*/*"]);
    assert_eq!(header(&head, "x-probe"), ["yes"]);
    assert_eq!(header(&head, "host"), ["web.example"]);
    assert_eq!(header(&head, "connection"), ["close"]);
    assert!(header(&head, "accept-encoding").is_empty());

    assert_eq!(
        run("/bad").await,
        ProbeOutcome {
            result: ProbeResult::Failure,
            output: "HTTP probe failed with statuscode: 503".into()
        }
    );
    assert_eq!(run("/big").await.output.len(), MAX_BODY);
    // Same host: followed.
    assert_eq!(
        run("/moved").await,
        ProbeOutcome {
            result: ProbeResult::Success,
            output: "all good".into()
        }
    );
    // Another host: not followed, a success with a warning.
    assert_eq!(
        run("/away").await,
        ProbeOutcome {
            result: ProbeResult::Warning,
            output: "Probe terminated redirects, Response body: bye".into()
        }
    );
    assert_eq!(
        run("/loop").await,
        ProbeOutcome {
            result: ProbeResult::Failure,
            output: "Get \"/loop\": stopped after 10 redirects".into()
        }
    );

    let closed = closed_port().await;
    let probe = json!({"httpGet": {"path": "/x", "port": closed}});
    let outcome = run_probe(&FakeRuntime::new(), &probe, target(&pod, &container, "c"))
        .await
        .expect("ran");
    assert_eq!(
        outcome.output,
        format!("Get \"http://127.0.0.1:{closed}/x\": dial tcp 127.0.0.1:{closed}: connect: connection refused")
    );
    assert_eq!(outcome.result, ProbeResult::Failure);

    // A named port the container does not have: the probe cannot run.
    let probe = json!({"httpGet": {"path": "/x", "port": "metrics"}});
    let err = run_probe(&FakeRuntime::new(), &probe, target(&pod, &container, "c"))
        .await
        .expect_err("port");
    assert_eq!(
        err.to_string(),
        "strconv.Atoi: parsing \"metrics\": invalid syntax"
    );
}

#[tokio::test]
async fn http_probes_time_out_while_awaiting_headers() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let container = json!({"name": "web"});
    let pod = pod_with(container.clone());
    let probe = json!({"httpGet": {"path": "/slow", "port": port}, "timeoutSeconds": 1});
    let started = std::time::Instant::now();
    let outcome = run_probe(&FakeRuntime::new(), &probe, target(&pod, &container, "c"))
        .await
        .expect("ran");
    let elapsed = started.elapsed();
    silent.abort();
    assert_eq!(outcome.result, ProbeResult::Failure);
    assert_eq!(
        outcome.output,
        format!("Get \"http://127.0.0.1:{port}/slow\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)")
    );
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn https_probes_skip_certificate_verification() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = kedge_pki::ensure_pki(dir.path(), &[]).expect("pki");
    let config = kedge_pki::server_tls_config(&pki).expect("tls config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(stream).await {
                    let _ = read_head(&mut tls).await;
                    let _ = tls.write_all(&response("200 OK", &[], "secure")).await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    let container = json!({"name": "web"});
    let pod = pod_with(container.clone());
    // By name: the certificate is not for "localhost"'s resolver either way.
    let probe =
        json!({"httpGet": {"path": "/", "port": port, "scheme": "HTTPS", "host": "localhost"}});
    let outcome = run_probe(&FakeRuntime::new(), &probe, target(&pod, &container, "c"))
        .await
        .expect("ran");
    assert_eq!(
        outcome,
        ProbeOutcome {
            result: ProbeResult::Success,
            output: "secure".into()
        }
    );

    // HTTPS against a plain HTTP server: Go's message.
    let (plain, _) = http_server(|_| response("400 Bad Request", &[], "")).await;
    let probe = json!({"httpGet": {"path": "/", "port": plain, "scheme": "HTTPS"}});
    let outcome = run_probe(&FakeRuntime::new(), &probe, target(&pod, &container, "c"))
        .await
        .expect("ran");
    assert_eq!(outcome.result, ProbeResult::Failure);
    assert_eq!(
        outcome.output,
        format!(
            "Get \"https://127.0.0.1:{plain}/\": http: server gave HTTP response to HTTPS client"
        )
    );
}

#[tokio::test]
async fn tcp_probes_succeed_when_the_port_accepts() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let container = json!({"name": "web", "ports": [{"name": "db", "containerPort": port}]});
    let pod = pod_with(container.clone());
    let probe = json!({"tcpSocket": {"port": "db"}});
    let outcome = run_probe(&FakeRuntime::new(), &probe, target(&pod, &container, "c"))
        .await
        .expect("ran");
    assert_eq!(
        outcome,
        ProbeOutcome {
            result: ProbeResult::Success,
            output: String::new()
        }
    );
    drop(listener);
    let probe = json!({"tcpSocket": {"port": port.to_string()}});
    let outcome = run_probe(&FakeRuntime::new(), &probe, target(&pod, &container, "c"))
        .await
        .expect("ran");
    assert_eq!(
        outcome,
        ProbeOutcome {
            result: ProbeResult::Failure,
            output: format!("dial tcp 127.0.0.1:{port}: connect: connection refused")
        }
    );
    let probe = json!({"tcpSocket": {"port": 70000}});
    let err = run_probe(&FakeRuntime::new(), &probe, target(&pod, &container, "c"))
        .await
        .expect_err("port");
    assert_eq!(err.to_string(), "invalid port number: 70000");
}

#[tokio::test]
async fn grpc_probes_call_the_health_service() {
    let (port, agents) = grpc_server().await;
    let container = json!({"name": "web"});
    let pod = pod_with(container.clone());
    let run = |service: Option<&str>, timeout: u64, port: u16| {
        let mut grpc = json!({"port": port});
        if let Some(service) = service {
            grpc["service"] = json!(service);
        }
        let probe = json!({"grpc": grpc, "timeoutSeconds": timeout});
        let (pod, container) = (pod.clone(), container.clone());
        async move {
            run_probe(&FakeRuntime::new(), &probe, target(&pod, &container, "c"))
                .await
                .expect("ran")
        }
    };
    assert_eq!(
        run(None, 5, port).await,
        ProbeOutcome {
            result: ProbeResult::Success,
            output: "service healthy".into()
        }
    );
    let agent = agents.lock().expect("agents")[0].clone();
    assert!(agent.starts_with("kube-probe/1.33"), "{agent}");
    assert_eq!(
        run(Some("db"), 5, port).await,
        ProbeOutcome {
            result: ProbeResult::Failure,
            output: "service unhealthy (responded with \"NOT_SERVING\")".into()
        }
    );
    assert_eq!(
        run(Some("unimplemented"), 5, port).await,
        ProbeOutcome {
            result: ProbeResult::Failure,
            output: "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): unknown service".into()
        }
    );
    assert_eq!(
        run(Some("slow"), 1, port).await,
        ProbeOutcome {
            result: ProbeResult::Failure,
            output: "timeout: health rpc did not complete within 1s".into()
        }
    );
    let closed = closed_port().await;
    assert_eq!(
        run(None, 1, closed).await,
        ProbeOutcome {
            result: ProbeResult::Failure,
            output: format!("timeout: failed to connect service \"127.0.0.1:{closed}\" within 1s: context deadline exceeded")
        }
    );
}

#[test]
fn settings_default_as_the_api_does() {
    let s = ProbeSettings::of(&json!({}));
    assert_eq!(
        (
            s.initial_delay,
            s.period,
            s.timeout,
            s.success_threshold,
            s.failure_threshold
        ),
        (
            Duration::ZERO,
            Duration::from_secs(10),
            Duration::from_secs(1),
            1,
            3
        )
    );
    let s = ProbeSettings::of(
        &json!({"periodSeconds": 3, "timeoutSeconds": 0, "failureThreshold": 1,
        "terminationGracePeriodSeconds": 7}),
    );
    assert_eq!(
        (s.period, s.timeout, s.failure_threshold),
        (Duration::from_secs(3), Duration::from_secs(1), 1)
    );
    assert_eq!(s.termination_grace_period_seconds, Some(7));
    assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
    assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
}

// -------------------------------------------------------------- workers --

/// Exec results scripted per command name; every exec recorded with its
/// (paused) time since the test started.
struct Script {
    exits: Arc<Mutex<HashMap<String, Vec<i32>>>>,
    calls: Arc<Mutex<Vec<(String, u64)>>>,
}

impl Script {
    fn install(runtime: &FakeRuntime, t0: Instant) -> Script {
        let exits: Arc<Mutex<HashMap<String, Vec<i32>>>> = Arc::default();
        let calls: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
        let (e, c) = (exits.clone(), calls.clone());
        runtime.set_exec_handler(Arc::new(move |_, cmd: &[String]| {
            let name = cmd.first().cloned().unwrap_or_default();
            c.lock()
                .expect("calls")
                .push((name.clone(), t0.elapsed().as_secs()));
            let mut exits = e.lock().expect("exits");
            // The last scripted code repeats.
            let code = match exits.get_mut(&name) {
                Some(codes) if codes.len() > 1 => codes.remove(0),
                Some(codes) => codes.first().copied().unwrap_or(0),
                None => 0,
            };
            exit_with(code, &format!("{name} said {code}"), "")
        }));
        Script { exits, calls }
    }

    fn set(&self, name: &str, codes: &[i32]) {
        self.exits
            .lock()
            .expect("exits")
            .insert(name.to_owned(), codes.to_vec());
    }

    /// The seconds at which `name` was executed.
    fn times(&self, name: &str) -> Vec<u64> {
        self.calls
            .lock()
            .expect("calls")
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, t)| *t)
            .collect()
    }
}

fn exec_probe_spec(name: &str, extra: Value) -> Value {
    let mut probe = json!({"exec": {"command": [name]}});
    if let (Some(p), Some(e)) = (probe.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            p.insert(k.clone(), v.clone());
        }
    }
    probe
}

struct Harness {
    runtime: FakeRuntime,
    id: String,
    script: Script,
    rx: mpsc::UnboundedReceiver<ProbeEvent>,
    probes: ContainerProbes,
}

async fn start(container_probes: Value) -> Harness {
    let runtime = FakeRuntime::new();
    let id = running_container(&runtime).await;
    let t0 = Instant::now();
    let script = Script::install(&runtime, t0);
    let mut container = json!({"name": "web", "image": "busybox"});
    if let (Some(c), Some(p)) = (container.as_object_mut(), container_probes.as_object()) {
        for (k, v) in p {
            c.insert(k.clone(), v.clone());
        }
    }
    let pod = pod_with(container);
    let (tx, rx) = mpsc::unbounded_channel();
    let probes = ContainerProbes::start(
        Arc::new(runtime.clone()),
        &pod,
        "web",
        &id,
        "127.0.0.1",
        t0,
        tx,
    );
    Harness {
        runtime,
        id,
        script,
        rx,
        probes,
    }
}

impl Harness {
    fn events(&mut self) -> Vec<ProbeEvent> {
        let mut out = Vec::new();
        while let Ok(e) = self.rx.try_recv() {
            out.push(e);
        }
        out
    }
}

fn changes(events: &[ProbeEvent]) -> Vec<(ProbeKind, bool)> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            ProbeEventKind::ResultChanged { success, .. } => Some((e.kind, *success)),
            ProbeEventKind::Record { .. } => None,
        })
        .collect()
}

/// Let paused time run on by `millis`.
async fn advance(millis: u64) {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    tokio::task::yield_now().await;
}

#[tokio::test(start_paused = true)]
async fn liveness_fails_after_the_threshold_then_holds() {
    let mut h = start(json!({"livenessProbe": exec_probe_spec("live", json!({"periodSeconds": 10, "failureThreshold": 3,
        "terminationGracePeriodSeconds": 5}))}))
    .await;
    h.script.set("live", &[1]);
    advance(1000).await;
    assert!(
        h.probes.live() && h.probes.ready(),
        "initially live; no readiness probe: ready"
    );
    advance(20000).await;
    assert_eq!(h.script.times("live"), [0, 10, 20]);
    let events = h.events();
    let records: Vec<&ProbeEventKind> = events
        .iter()
        .map(|e| &e.event)
        .filter(|e| matches!(e, ProbeEventKind::Record { .. }))
        .collect();
    assert_eq!(records.len(), 3, "an Unhealthy event per failed attempt");
    assert_eq!(
        records[0],
        &ProbeEventKind::Record {
            reason: UNHEALTHY_REASON,
            message: "Liveness probe failed: live said 1".into()
        }
    );
    let change = events
        .iter()
        .find(|e| matches!(e.event, ProbeEventKind::ResultChanged { .. }))
        .expect("changed");
    assert_eq!(
        change.event,
        ProbeEventKind::ResultChanged {
            success: false,
            output: "live said 1".into(),
            termination_grace_period_seconds: Some(5)
        }
    );
    assert_eq!(change.container_id, h.id);
    assert_eq!(
        change.kill_message().as_deref(),
        Some("Container web failed liveness probe, will be restarted")
    );
    assert!(!h.probes.live());
    // On hold until the container is replaced.
    advance(60000).await;
    assert_eq!(h.script.times("live"), [0, 10, 20]);
}

#[tokio::test(start_paused = true)]
async fn initial_delay_counts_whole_seconds_since_start() {
    let h = start(json!({"livenessProbe": exec_probe_spec("live", json!({"initialDelaySeconds": 15, "periodSeconds": 10}))})).await;
    advance(35000).await;
    assert_eq!(
        h.script.times("live"),
        [20, 30],
        "t=0 and t=10 are inside the delay"
    );
}

#[tokio::test(start_paused = true)]
async fn readiness_needs_success_threshold_and_flips_back() {
    let mut h = start(json!({"readinessProbe": exec_probe_spec("ready", json!({"periodSeconds": 5, "successThreshold": 2,
        "failureThreshold": 1}))}))
    .await;
    h.script.set("ready", &[0, 0, 0, 1]);
    advance(1000).await;
    assert!(
        h.probes.started() && !h.probes.ready(),
        "readiness starts false"
    );
    advance(5000).await;
    assert!(h.probes.ready(), "two successes");
    advance(10000).await;
    assert!(
        !h.probes.ready(),
        "one failure is enough with failureThreshold 1"
    );
    assert_eq!(
        changes(&h.events()),
        [(ProbeKind::Readiness, true), (ProbeKind::Readiness, false)]
    );
    assert_eq!(h.script.times("ready"), [0, 5, 10, 15]);
}

#[tokio::test(start_paused = true)]
async fn startup_gates_liveness_and_readiness() {
    let mut h = start(json!({
        "startupProbe": exec_probe_spec("start", json!({"periodSeconds": 3, "failureThreshold": 10})),
        "livenessProbe": exec_probe_spec("live", json!({"periodSeconds": 10})),
        "readinessProbe": exec_probe_spec("ready", json!({"periodSeconds": 10})),
    }))
    .await;
    h.script.set("start", &[1, 1, 0]);
    advance(5000).await;
    assert!(!h.probes.started() && !h.probes.ready());
    assert!(h.script.times("live").is_empty() && h.script.times("ready").is_empty());
    advance(1500).await;
    // Started at t=6; readiness probed at once, liveness at its next tick.
    assert!(h.probes.started() && h.probes.ready());
    assert_eq!(h.script.times("start"), [0, 3, 6]);
    assert_eq!(h.script.times("ready"), [6]);
    advance(20000).await;
    assert_eq!(
        h.script.times("start"),
        [0, 3, 6],
        "startup stops once it succeeded"
    );
    assert_eq!(h.script.times("live"), [10, 20]);
    assert_eq!(
        changes(&h.events()),
        [(ProbeKind::Startup, true), (ProbeKind::Readiness, true)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_startup_probe_asks_for_a_restart() {
    let mut h = start(json!({
        "startupProbe": exec_probe_spec("start", json!({"periodSeconds": 2, "failureThreshold": 2, "terminationGracePeriodSeconds": 3})),
        "livenessProbe": exec_probe_spec("live", json!({})),
    }))
    .await;
    h.script.set("start", &[1]);
    advance(10000).await;
    let events = h.events();
    let change = events
        .iter()
        .find(|e| matches!(e.event, ProbeEventKind::ResultChanged { .. }))
        .expect("change");
    assert_eq!(change.kind, ProbeKind::Startup);
    assert_eq!(
        change.kill_message().as_deref(),
        Some("Container web failed startup probe, will be restarted")
    );
    assert!(matches!(
        change.event,
        ProbeEventKind::ResultChanged {
            termination_grace_period_seconds: Some(3),
            ..
        }
    ));
    assert_eq!(h.script.times("start"), [0, 2], "held after the failure");
    assert!(h.script.times("live").is_empty(), "never started");
}

#[tokio::test(start_paused = true)]
async fn probes_that_cannot_run_are_recorded_but_never_counted() {
    let mut h = start(json!({"livenessProbe": {"tcpSocket": {"port": "nope"}, "periodSeconds": 10, "failureThreshold": 1}})).await;
    advance(35000).await;
    let events = h.events();
    assert!(changes(&events).is_empty(), "{events:?}");
    assert_eq!(events.len(), 4, "one record per round: {events:?}");
    assert_eq!(
        events[0].event,
        ProbeEventKind::Record {
            reason: UNHEALTHY_REASON,
            message: "Liveness probe errored and resulted in unknown state: strconv.Atoi: parsing \"nope\": invalid syntax".into()
        }
    );
    assert!(h.probes.live());
}

#[tokio::test(start_paused = true)]
async fn exec_timeouts_are_failures() {
    let mut h = start(json!({"livenessProbe": exec_probe_spec("live", json!({"failureThreshold": 1, "timeoutSeconds": 2}))})).await;
    h.runtime.inject_error(
        "ExecSync",
        tonic::Status::deadline_exceeded("timeout 2s exceeded"),
    );
    advance(1000).await;
    let events = h.events();
    assert_eq!(
        events[0].event,
        ProbeEventKind::Record {
            reason: UNHEALTHY_REASON,
            message: "Liveness probe failed: command \"live\" timed out".into()
        }
    );
    assert_eq!(changes(&events), [(ProbeKind::Liveness, false)]);
}

#[tokio::test(start_paused = true)]
async fn a_stopped_container_is_not_ready_and_is_no_longer_probed() {
    let mut h = start(json!({
        "readinessProbe": exec_probe_spec("ready", json!({"periodSeconds": 5})),
        "livenessProbe": exec_probe_spec("live", json!({"periodSeconds": 5})),
    }))
    .await;
    advance(1000).await;
    assert!(h.probes.ready());
    h.runtime.exit_container(&h.id, 137, "Error");
    advance(20000).await;
    assert!(!h.probes.ready() && !h.probes.started());
    assert_eq!(h.script.times("ready"), [0]);
    assert_eq!(h.script.times("live"), [0]);
    assert_eq!(
        changes(&h.events()),
        [(ProbeKind::Readiness, true), (ProbeKind::Readiness, false)],
        "no liveness failure for an exited container"
    );
}

#[tokio::test(start_paused = true)]
async fn readiness_can_be_triggered_and_dropping_stops_everything() {
    let h =
        start(json!({"readinessProbe": exec_probe_spec("ready", json!({"periodSeconds": 30}))}))
            .await;
    advance(2000).await;
    h.probes.trigger_readiness();
    advance(1000).await;
    assert_eq!(h.script.times("ready"), [0, 2], "probed when triggered");
    let Harness { probes, script, .. } = h;
    drop(probes);
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(script.times("ready"), [0, 2]);
}

#[tokio::test(start_paused = true)]
async fn deletion_stops_liveness_and_startup_only() {
    let h = start(json!({
        "startupProbe": exec_probe_spec("start", json!({"periodSeconds": 5, "failureThreshold": 100})),
        "readinessProbe": exec_probe_spec("ready", json!({"periodSeconds": 5})),
    }))
    .await;
    h.script.set("start", &[1]);
    advance(6000).await;
    h.probes.stop_liveness_and_startup();
    advance(10000).await;
    assert_eq!(h.script.times("start"), [0, 5]);
    assert!(
        h.probes.started(),
        "startup counts as success during deletion"
    );
    assert!(!h.script.times("ready").is_empty(), "readiness goes on");
}

#[tokio::test(start_paused = true)]
async fn a_container_without_probes_is_started_and_ready() {
    let h = start(json!({})).await;
    assert!(h.probes.started() && h.probes.ready() && h.probes.live());
}

// ---------------------------------------------------------------- hooks --

/// `run_handler` for one container of `pod_with(container)`.
struct Hooks<'a> {
    runtime: &'a FakeRuntime,
    pod: Value,
    container: Value,
    id: &'a str,
    ip: &'a str,
}

impl<'a> Hooks<'a> {
    fn new(runtime: &'a FakeRuntime, container: Value, id: &'a str, ip: &'a str) -> Self {
        Hooks {
            runtime,
            pod: pod_with(container.clone()),
            container,
            id,
            ip,
        }
    }

    async fn run(&self, hook: &Value, limit: Duration) -> Result<Option<HookWarning>, HookError> {
        let target = HookTarget {
            pod: &self.pod,
            container: &self.container,
            container_id: self.id,
            pod_ip: self.ip,
        };
        run_handler(self.runtime, hook, target, limit).await
    }
}

#[tokio::test]
async fn exec_hooks_report_upstreams_message() {
    let runtime = FakeRuntime::new();
    let id = running_container(&runtime).await;
    runtime.set_exec_handler(Arc::new(|_, cmd: &[String]| {
        match cmd.last().map(String::as_str) {
            Some("exit 3") => exit_with(3, "out", "oops"),
            _ => exit_with(0, "", ""),
        }
    }));
    let hooks = Hooks::new(&runtime, json!({"name": "web"}), &id, "127.0.0.1");
    let ok = json!({"exec": {"command": ["sh", "-c", "true"]}});
    let limit = Duration::from_secs(30);
    assert_eq!(hooks.run(&ok, limit).await, Ok(None));
    let bad = json!({"exec": {"command": ["sh", "-c", "exit 3"]}});
    let err = hooks.run(&bad, limit).await.expect_err("fails");
    assert_eq!(
        err.to_string(),
        "Exec lifecycle hook ([sh -c exit 3]) for Container \"web\" in Pod \"web-0_default(uid1)\" failed - error: \
         command 'sh -c exit 3' exited with 3: oops, message: \"outoops\""
    );
    let invalid = json!({"tcpSocket": {"port": 80}});
    let err = hooks.run(&invalid, limit).await.expect_err("invalid");
    assert!(
        err.to_string()
            .starts_with("Cannot run handler: invalid handler: "),
        "{err}"
    );
}

#[tokio::test]
async fn http_hooks_accept_any_answer_and_report_connection_errors() {
    let (port, seen) = http_server(|_| response("500 Internal Server Error", &[], "")).await;
    let container = json!({"name": "web", "ports": [{"name": "admin", "containerPort": port}]});
    let runtime = FakeRuntime::new();
    let hooks = Hooks::new(&runtime, container, "c", "127.0.0.1");
    let hook = json!({"httpGet": {"path": "/pre-stop", "port": "admin"}});
    let limit = Duration::from_secs(10);
    assert_eq!(hooks.run(&hook, limit).await, Ok(None));
    let head = seen.lock().expect("seen")[0].clone();
    assert!(head.starts_with("GET /pre-stop HTTP/1.1"), "{head}");
    assert_eq!(header(&head, "user-agent"), ["kube-lifecycle/1.33"]);

    let closed = closed_port().await;
    let hook = json!({"httpGet": {"path": "/pre-stop", "port": closed}});
    let err = hooks.run(&hook, limit).await.expect_err("refused");
    assert_eq!(
        err.to_string(),
        format!(
            "HTTP lifecycle hook (/pre-stop) for Container \"web\" in Pod \"web-0_default(uid1)\" failed - error: \
             Get \"http://127.0.0.1:{closed}/pre-stop\": dial tcp 127.0.0.1:{closed}: connect: connection refused"
        )
    );

    // HTTPS answered in plain HTTP: retried over HTTP, without Authorization.
    let hook = json!({"httpGet": {"path": "/x", "port": port, "scheme": "HTTPS",
        "httpHeaders": [{"name": "Authorization", "value": "Bearer t"}]}});
    let warning = hooks.run(&hook, limit).await.expect("fallback");
    assert_eq!(
        warning,
        Some(HookWarning {
            reason: "LifecycleHTTPFallback",
            message: format!("request to HTTPS lifecycle hook 127.0.0.1:{port} got HTTP response, retry with HTTP succeeded"),
        })
    );
    let last = seen
        .lock()
        .expect("seen")
        .last()
        .cloned()
        .unwrap_or_default();
    assert!(
        last.starts_with("GET /x HTTP/1.1") && header(&last, "authorization").is_empty(),
        "{last}"
    );
}

#[tokio::test(start_paused = true)]
async fn sleep_hooks_sleep_within_the_limit() {
    let runtime = FakeRuntime::new();
    let hooks = Hooks::new(&runtime, json!({"name": "web"}), "c", "");
    let t0 = Instant::now();
    let hook = json!({"sleep": {"seconds": 5}});
    assert_eq!(hooks.run(&hook, Duration::from_secs(30)).await, Ok(None));
    assert_eq!(t0.elapsed().as_secs(), 5);
    let hook = json!({"sleep": {"seconds": 60}});
    let err = hooks
        .run(&hook, Duration::from_secs(30))
        .await
        .expect_err("limit");
    assert!(matches!(err, HookError::TimedOut { .. }), "{err}");
    assert_eq!(t0.elapsed().as_secs(), 35);
    let hook = json!({"sleep": {"seconds": 0}});
    assert_eq!(hooks.run(&hook, Duration::from_secs(1)).await, Ok(None));
}
