//! Streaming protocol translation against a real, private containerd 1.6.
//!
//! Needs root, `containerd`, `runc` and `ctr` (it prints a loud SKIP line and
//! passes otherwise); on a machine prepared by `scripts/setup.sh` (CI) it
//! always runs. Like `cri_lifecycle.rs` it builds the test images, runs
//! containerd under [`ContainerdSupervisor`] in a temporary directory with a
//! bridge on a test-only podCIDR (no gateway, no masquerade), and starts one
//! busybox pod serving HTTP on port 8080.
//!
//! A tiny local hyper server stands in for the agent's API: `/exec` asks CRI
//! for an Exec URL and `/portforward` for a PortForward URL, then hands the
//! request to [`streaming::translate`]. A WebSocket client written here
//! (masking, its own handshake) drives it as kubectl 1.30+ does:
//!
//! - `v5.channel.k8s.io` exec: the "connected" empty stdout message, stdout
//!   and stderr, the exit code as a `NonZeroExitCode` Status;
//! - stdin of 300 KiB into `cat` and the v5 close signal: the echo comes
//!   back whole and `cat` exits on EOF (what `kubectl cp` into a pod needs);
//! - a TTY resized through channel 4 (`stty size` inside sees it);
//! - a client offering only old protocols gets a 400 Status, not a 101;
//! - port-forward with SPDY tunnelled in WebSocket binary messages
//!   (`SPDY/3.1+portforward.k8s.io`) to busybox httpd in the pod;
//! - and, to back the claim that older WebSocket clients (the Python
//!   client) need no translation, containerd's own `v4.channel.k8s.io`.
//!
//! Then real kubectl (1.29 with `KUBECTL_REMOTE_COMMAND_WEBSOCKETS`, 1.30,
//! 1.33) runs `exec`, `exec -i`, `cp` both ways and `port-forward` against
//! the same server, which also answers the discovery and pod GETs kubectl
//! makes; it refuses anything but WebSocket, so a silent SPDY fallback
//! would fail the test. A missing kubectl version is skipped loudly.
//!
//! Cleanup runs whatever happens (CRI first, then a guard that kills by pid,
//! unmounts, deletes the bridge and the directory).

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::error::Error;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::{Bytes, BytesMut};
use kedge_kubelet::cri::api::{
    ContainerConfig, ContainerMetadata, ContainerState, ExecRequest, NamespaceMode,
    PortForwardRequest,
};
use kedge_kubelet::cri::image_spec;
use kedge_kubelet::streaming::spdy::{Frame, FrameCodec};
use kedge_kubelet::streaming::websocket::{accept_key, Message, Role, WsReader, WsWriter};
use kedge_kubelet::streaming::{self, StreamKind};
use kedge_kubelet::test_ensure as ensure;
use kedge_kubelet::testing::{self, RealRuntimeEnv, TestError};
use kedge_kubelet::{CriClient, RuntimeService};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

type TestResult<T = ()> = Result<T, TestError>;

/// Test-only pod network: never routed anywhere, never masqueraded.
const POD_CIDR: &str = "10.199.7.0/24";
const BUSYBOX_IMAGE: &str = testing::TEST_BUSYBOX_IMAGE;
/// The whole test, cleanup excluded, must fit in this.
const TEST_BUDGET: Duration = Duration::from_secs(90);
/// Any single wait for the other side.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_streams_are_translated_for_real_containerd() {
    common::init_tracing();
    RealRuntimeEnv::run(
        "websocket_streams_are_translated_for_real_containerd",
        "stream",
        TEST_BUDGET,
        |env| Box::pin(scenario(env)),
    )
    .await;
}

async fn scenario(env: &mut RealRuntimeEnv) -> TestResult {
    let t0 = Instant::now();
    let step = |name: &str| {
        eprintln!(
            "streaming_translate: {:>6} ms  {name}",
            t0.elapsed().as_millis()
        )
    };

    let pod = start_pod(env).await?;
    step("pod running (busybox httpd on :8080)");
    let server = TestServer::start(pod.clone()).await?;

    // 1. stdout, stderr and the exit code.
    let mut client = WsClient::connect(
        server.addr,
        &exec_path(
            &["sh", "-c", "echo out; echo err >&2; exit 3"],
            "output=1&error=1",
        ),
        "v5.channel.k8s.io",
    )
    .await?
    .map_err(|(code, body)| format!("exec upgrade refused: {code} {body}"))?;
    ensure!(
        client.protocol == "v5.channel.k8s.io",
        "negotiated {:?}",
        client.protocol
    );
    let out = client.collect().await?;
    ensure!(
        out.first.as_deref() == Some(&[1u8][..]),
        "the first message must be the empty stdout message, got {:?}",
        out.first
    );
    ensure!(out.stdout == b"out\n", "stdout {:?}", text(&out.stdout));
    ensure!(out.stderr == b"err\n", "stderr {:?}", text(&out.stderr));
    let want = json!({
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: command terminated with exit code 3",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
    });
    ensure!(out.status()? == want, "status {}", text(&out.status));
    ensure!(
        out.close == Some(Some((1000, String::new()))),
        "close {:?}",
        out.close
    );
    step("exec: stdout, stderr, exit code 3");

    // 2. stdin into `cat`, then the v5 close signal: cat sees EOF and exits.
    let client = WsClient::connect(
        server.addr,
        &exec_path(&["cat"], "input=1&output=1&error=1"),
        "v5.channel.k8s.io",
    )
    .await?
    .map_err(|(code, body)| format!("exec upgrade refused: {code} {body}"))?;
    let payload: Vec<u8> = (0..300 * 1024u32)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz\n"[(i % 27) as usize])
        .collect();
    let (mut reader, mut writer) = (client.reader, client.writer);
    let sent = payload.clone();
    let feeding = tokio::spawn(async move {
        // client-go copies stdin 32 KiB at a time.
        for chunk in sent.chunks(32 * 1024) {
            let mut message = vec![0u8];
            message.extend_from_slice(chunk);
            writer.send(&Message::Binary(message.into())).await?;
        }
        writer
            .send(&Message::Binary(Bytes::from_static(&[255, 0])))
            .await?;
        Ok::<_, std::io::Error>(writer)
    });
    let out = collect(&mut reader, None).await?;
    let writer = feeding.await??;
    drop(writer);
    ensure!(
        out.stdout.len() == payload.len() && out.stdout == payload,
        "cat echoed {} of {} bytes; status {}",
        out.stdout.len(),
        payload.len(),
        text(&out.status)
    );
    ensure!(
        out.status()? == json!({"metadata": {}, "status": "Success"}),
        "status {}",
        text(&out.status)
    );
    step("exec: 300 KiB through cat, stdin closed, cat exited 0");

    // 3. A TTY, resized through channel 4.
    let script = r#"while read x; do [ "$x" = q ] && exit 0; stty size; done"#;
    let mut client = WsClient::connect(
        server.addr,
        &exec_path(&["sh", "-c", script], "input=1&output=1&tty=1"),
        "v5.channel.k8s.io",
    )
    .await?
    .map_err(|(code, body)| format!("tty exec upgrade refused: {code} {body}"))?;
    client
        .writer
        .send(&Message::Binary(Bytes::from_static(
            b"\x04{\"Width\":123,\"Height\":45}",
        )))
        .await?;
    let mut seen = Vec::new();
    let deadline = Instant::now() + STEP_TIMEOUT;
    while !text(&seen).contains("45 123") {
        ensure!(
            Instant::now() < deadline,
            "stty never saw 45 rows, 123 columns: {:?}",
            text(&seen)
        );
        client
            .writer
            .send(&Message::Binary(Bytes::from_static(b"\x00a\n")))
            .await?;
        let until = Instant::now() + Duration::from_millis(500);
        while let Ok(message) = tokio::time::timeout_at(until.into(), client.reader.next()).await {
            match message? {
                Some(Message::Binary(data)) if data.first() == Some(&1) => {
                    seen.extend_from_slice(&data[1..]);
                }
                Some(
                    Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Text(_),
                ) => {}
                other => return Err(format!("tty stream ended early: {other:?}").into()),
            }
        }
    }
    client
        .writer
        .send(&Message::Binary(Bytes::from_static(b"\x00q\n")))
        .await?;
    let out = client.collect().await?;
    ensure!(
        out.status()? == json!({"metadata": {}, "status": "Success"}),
        "tty status {}",
        text(&out.status)
    );
    step("exec: TTY resized to 123x45 through the resize channel");

    // 4. Only old protocols offered: no translation, a 400 Status.
    let refused = WsClient::connect(
        server.addr,
        &exec_path(&["true"], "output=1"),
        "v4.channel.k8s.io",
    )
    .await?;
    match refused {
        Err((400, body)) => {
            let status: Value = serde_json::from_str(&body)?;
            ensure!(
                status["kind"] == "Status" && status["code"] == 400,
                "refusal body {body}"
            );
        }
        Err((code, body)) => return Err(format!("expected 400, got {code} {body}").into()),
        Ok(_) => return Err("a v4-only client was upgraded by the translator".into()),
    }
    step("v4-only client refused with a Status (the agent proxies those)");

    // 5. Port-forward: SPDY inside WebSocket binary messages.
    let mut client = WsClient::connect(server.addr, "/portforward", "SPDY/3.1+portforward.k8s.io")
        .await?
        .map_err(|(code, body)| format!("port-forward upgrade refused: {code} {body}"))?;
    ensure!(
        client.protocol == "SPDY/3.1+portforward.k8s.io",
        "negotiated {:?}",
        client.protocol
    );
    let response = http_over_tunnel(&mut client, 8080).await?;
    ensure!(
        response.starts_with("HTTP/1.")
            && response.contains(" 200 ")
            && response.ends_with("hello-from-httpd\n"),
        "port-forward response {response:?}"
    );
    client
        .writer
        .send(&Message::Close(Some((1000, String::new()))))
        .await?;
    step("port-forward: HTTP GET to httpd through the tunnel");

    // 6. containerd's own v4.channel.k8s.io WebSocket (older clients).
    let url = pod
        .cri
        .exec(ExecRequest {
            container_id: pod.container_id.clone(),
            cmd: vec!["sh".into(), "-c".into(), "echo v4; exit 2".into()],
            stdout: true,
            ..ExecRequest::default()
        })
        .await?;
    let url: http::Uri = url.parse()?;
    let addr: SocketAddr = url.authority().ok_or("no authority")?.as_str().parse()?;
    let mut client = WsClient::connect(addr, url.path(), "v4.channel.k8s.io")
        .await?
        .map_err(|(code, body)| format!("containerd refused v4: {code} {body}"))?;
    ensure!(
        client.protocol == "v4.channel.k8s.io",
        "containerd negotiated {:?}",
        client.protocol
    );
    let out = client.collect().await?;
    ensure!(out.stdout == b"v4\n", "v4 stdout {:?}", text(&out.stdout));
    let status = out.status()?;
    ensure!(
        status["reason"] == "NonZeroExitCode" && status["details"]["causes"][0]["message"] == "2",
        "v4 status {status}"
    );
    step("containerd serves v4.channel.k8s.io WebSocket itself");

    // 7. The real client: kubectl exec, cp and port-forward. 1.29 speaks v5
    // only when asked (KUBECTL_REMOTE_COMMAND_WEBSOCKETS) and port-forwards
    // over plain SPDY; 1.30 added WebSocket port-forward (asked for, on by
    // default from 1.31); 1.33 is the current client.
    for (version, port_forward) in [("1.29", false), ("1.30", true), ("1.33", true)] {
        if kubectl_scenario(&server, env.dir(), version, port_forward).await? {
            step(&format!(
                "kubectl {version} exec, cp{} through the translator",
                if port_forward {
                    " and port-forward"
                } else {
                    ""
                }
            ));
        }
    }
    Ok(())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn exec_path(command: &[&str], flags: &str) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for arg in command {
        query.append_pair("command", arg);
    }
    format!("/exec?{}&{flags}", query.finish())
}

/// One GET / to `port` through a port-forward tunnel, SPDY framed by the
/// client as client-go does (an error and a data stream per request).
async fn http_over_tunnel(client: &mut WsClient, port: u16) -> TestResult<String> {
    let mut codec = FrameCodec::default();
    let headers = |kind: &str| {
        vec![
            ("streamtype".to_owned(), kind.to_owned()),
            ("port".to_owned(), port.to_string()),
            ("requestid".to_owned(), "0".to_owned()),
        ]
    };
    let frames = [
        Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 0,
            fin: false,
            unidirectional: false,
            headers: headers("error"),
        },
        Frame::SynStream {
            stream_id: 3,
            associated_to: 0,
            priority: 0,
            fin: false,
            unidirectional: false,
            headers: headers("data"),
        },
        Frame::Data {
            stream_id: 3,
            fin: false,
            data: Bytes::from_static(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n"),
        },
    ];
    for frame in &frames {
        let mut wire = BytesMut::new();
        codec.encode(frame, &mut wire)?;
        client.writer.send(&Message::Binary(wire.freeze())).await?;
    }
    let mut inbound = BytesMut::new();
    let mut body = Vec::new();
    let mut errors = Vec::new();
    loop {
        let message = tokio::time::timeout(STEP_TIMEOUT, client.reader.next())
            .await
            .map_err(|_| format!("no answer through the tunnel; so far {:?}", text(&body)))??;
        match message {
            Some(Message::Binary(data)) => inbound.extend_from_slice(&data),
            Some(Message::Close(close)) => {
                return Err(format!("tunnel closed early: {close:?}; {:?}", text(&body)).into())
            }
            Some(_) => continue,
            None => return Err("tunnel connection dropped".into()),
        }
        while let Some(frame) = codec.decode(&mut inbound)? {
            match frame {
                Frame::Data {
                    stream_id: 3,
                    fin,
                    data,
                } => {
                    body.extend_from_slice(&data);
                    if fin {
                        ensure!(errors.is_empty(), "port-forward error: {:?}", text(&errors));
                        return Ok(text(&body));
                    }
                }
                Frame::Data {
                    stream_id: 1, data, ..
                } => errors.extend_from_slice(&data),
                Frame::RstStream { stream_id, status } => {
                    return Err(format!(
                        "stream {stream_id} reset ({status}); error stream {:?}, data {:?}",
                        text(&errors),
                        text(&body)
                    )
                    .into())
                }
                _ => {}
            }
        }
    }
}

/// What a remote-command WebSocket carried.
#[derive(Debug, Default)]
struct Outcome {
    first: Option<Vec<u8>>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: Vec<u8>,
    close: Option<Option<(u16, String)>>,
}

impl Outcome {
    fn status(&self) -> TestResult<Value> {
        serde_json::from_slice(&self.status)
            .map_err(|e| format!("error channel {:?}: {e}", text(&self.status)).into())
    }
}

/// Read messages until the server closes.
async fn collect(
    reader: &mut WsReader<OwnedReadHalf>,
    mut writer: Option<&mut WsWriter<OwnedWriteHalf>>,
) -> TestResult<Outcome> {
    let mut out = Outcome::default();
    loop {
        let message = tokio::time::timeout(STEP_TIMEOUT, reader.next())
            .await
            .map_err(|_| format!("stream did not end; so far {out:?}"))??;
        match message {
            Some(Message::Binary(data)) => {
                if out.first.is_none() {
                    out.first = Some(data.to_vec());
                }
                match data.split_first() {
                    Some((1, rest)) => out.stdout.extend_from_slice(rest),
                    Some((2, rest)) => out.stderr.extend_from_slice(rest),
                    Some((3, rest)) => out.status.extend_from_slice(rest),
                    _ => {}
                }
            }
            Some(Message::Ping(payload)) => {
                if let Some(writer) = writer.as_deref_mut() {
                    writer.send(&Message::Pong(payload)).await?;
                }
            }
            Some(Message::Close(close)) => {
                out.close = Some(close);
                return Ok(out);
            }
            Some(_) => {}
            None => return Ok(out),
        }
    }
}

/// A WebSocket client: its own handshake over TCP, then [`WsReader`] and
/// [`WsWriter`] in the client role (masked frames).
struct WsClient {
    reader: WsReader<OwnedReadHalf>,
    writer: WsWriter<OwnedWriteHalf>,
    protocol: String,
}

impl WsClient {
    /// `Err((status, body))` when the server answers anything but 101.
    async fn connect(
        addr: SocketAddr,
        path: &str,
        protocols: &str,
    ) -> TestResult<Result<WsClient, (u16, String)>> {
        let mut tcp = TcpStream::connect(addr).await?;
        let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: {protocols}\r\nUser-Agent: kedge-test\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await?;
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(STEP_TIMEOUT, tcp.read(&mut chunk))
                .await
                .map_err(|_| "no handshake response")??;
            ensure!(
                n > 0,
                "connection closed during the handshake: {:?}",
                text(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = text(&buf[..head_end]);
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("bad status line in {head:?}"))?;
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        if status != 101 {
            let mut body = buf[head_end..].to_vec();
            let want: usize = headers
                .get("content-length")
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            while body.len() < want {
                let mut chunk = [0u8; 4096];
                let n = tcp.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            return Ok(Err((status, text(&body))));
        }
        ensure!(
            headers.get("sec-websocket-accept") == Some(&accept_key(&key)),
            "wrong Sec-WebSocket-Accept in {head:?}"
        );
        let protocol = headers
            .get("sec-websocket-protocol")
            .cloned()
            .unwrap_or_default();
        let (read, write) = tcp.into_split();
        Ok(Ok(WsClient {
            reader: WsReader::new(read, Role::Client, 64 << 20, &buf[head_end..]),
            writer: WsWriter::new(write, Role::Client),
            protocol,
        }))
    }

    async fn collect(&mut self) -> TestResult<Outcome> {
        collect(&mut self.reader, Some(&mut self.writer)).await
    }
}

/// The pod the streams go to.
#[derive(Clone)]
struct Pod {
    cri: CriClient,
    sandbox_id: String,
    container_id: String,
}

const POD_NAME: &str = "stream-translate";
const POD_NAMESPACE: &str = "kedge-test";
const CONTAINER_NAME: &str = "web";

/// Stands in for the agent's API: CRI URL, then `streaming::translate`.
struct TestServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    async fn start(pod: Pod) -> TestResult<TestServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let pod = Arc::new(pod);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let pod = Arc::clone(&pod);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let pod = Arc::clone(&pod);
                        async move { Ok::<_, Infallible>(handle(&pod, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Ok(TestServer { addr, task })
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    pod: &Pod,
    req: http::Request<hyper::body::Incoming>,
) -> http::Response<http_body_util::Full<Bytes>> {
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let on = |key: &str| query.iter().any(|(k, v)| k == key && v == "1");
    let pod_path = format!("/api/v1/namespaces/{POD_NAMESPACE}/pods/{POD_NAME}");
    let path = req.uri().path().to_owned();
    if let Some(document) = fake_api_document(&path, &pod_path) {
        let mut response =
            http::Response::new(http_body_util::Full::new(Bytes::from(document.to_string())));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        return response;
    }
    // kubectl's pod subresources: client-go's names and "true".
    let is_true = |key: &str| query.iter().any(|(k, v)| k == key && v == "true");
    let (kind, url) = match path.as_str() {
        p if p == format!("{pod_path}/exec") => {
            let tty = is_true("tty");
            let request = ExecRequest {
                container_id: pod.container_id.clone(),
                cmd: query
                    .iter()
                    .filter(|(k, _)| k == "command")
                    .map(|(_, v)| v.clone())
                    .collect(),
                tty,
                stdin: is_true("stdin"),
                stdout: is_true("stdout"),
                stderr: is_true("stderr") && !tty,
            };
            if !streaming::wants_translation(req.headers()) {
                // The agent would proxy this to containerd; here it is a
                // failure: kubectl must use the WebSocket v5 path.
                let mut response = http::Response::new(http_body_util::Full::new(
                    Bytes::from_static(b"test server: only WebSocket v5 is served"),
                ));
                *response.status_mut() = http::StatusCode::BAD_REQUEST;
                return response;
            }
            (StreamKind::Exec, pod.cri.exec(request).await)
        }
        p if p == format!("{pod_path}/portforward") => {
            let request = PortForwardRequest {
                pod_sandbox_id: pod.sandbox_id.clone(),
                port: vec![8080],
            };
            (StreamKind::PortForward, pod.cri.port_forward(request).await)
        }
        "/exec" => {
            let tty = on("tty");
            let request = ExecRequest {
                container_id: pod.container_id.clone(),
                cmd: query
                    .iter()
                    .filter(|(k, _)| k == "command")
                    .map(|(_, v)| v.clone())
                    .collect(),
                tty,
                stdin: on("input"),
                stdout: on("output"),
                stderr: on("error") && !tty,
            };
            (StreamKind::Exec, pod.cri.exec(request).await)
        }
        "/portforward" => {
            let request = PortForwardRequest {
                pod_sandbox_id: pod.sandbox_id.clone(),
                port: vec![8080],
            };
            (StreamKind::PortForward, pod.cri.port_forward(request).await)
        }
        _ => {
            let mut response = http::Response::new(http_body_util::Full::new(Bytes::new()));
            *response.status_mut() = http::StatusCode::NOT_FOUND;
            return response;
        }
    };
    let backend = match url
        .map_err(|e| e.to_string())
        .and_then(|u| u.parse().map_err(|e: http::uri::InvalidUri| e.to_string()))
    {
        Ok(backend) => backend,
        Err(err) => {
            let mut response = http::Response::new(http_body_util::Full::new(Bytes::from(err)));
            *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            return response;
        }
    };
    streaming::translate(req, kind, backend).await
}

/// containerd, the images, and a running busybox pod with httpd.
async fn start_pod(env: &mut RealRuntimeEnv) -> TestResult<Pod> {
    let images = env.build_test_images().await?;
    let config = env.containerd_config();
    env.write_test_network(&config, POD_CIDR)?;
    env.start_containerd(&config).await?;
    let cri = env.connect(&config).await?;
    RealRuntimeEnv::import_test_images(&cri, &images).await?;

    let uid = format!("{:x}-{}", testing::nanos(), std::process::id());
    let sandbox_config = env.sandbox_config(POD_NAME, POD_NAMESPACE, &uid, NamespaceMode::Pod)?;
    fs::create_dir_all(Path::new(&sandbox_config.log_directory).join("web"))?;
    let sandbox_id = cri.run_pod_sandbox(sandbox_config.clone(), "").await?;
    env.ids.push(sandbox_id.clone());
    let container_config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: CONTAINER_NAME.to_owned(),
            attempt: 0,
        }),
        image: Some(image_spec(BUSYBOX_IMAGE)),
        command: vec![
            "sh".to_owned(),
            "-c".to_owned(),
            "mkdir -p /www && echo hello-from-httpd > /www/index.html && exec httpd -f -p 8080 -h /www"
                .to_owned(),
        ],
        log_path: "web/0.log".to_owned(),
        ..ContainerConfig::default()
    };
    let container_id = cri
        .create_container(&sandbox_id, container_config, sandbox_config)
        .await?;
    env.ids.push(container_id.clone());
    cri.start_container(&container_id).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = cri
            .container_status(&container_id, false)
            .await?
            .status
            .map(|s| s.state)
            .unwrap_or_default();
        if state == ContainerState::ContainerRunning as i32 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "container is not running (state {state})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // httpd listens once the exec of the shell went through.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let probe = cri
            .exec_sync(
                &container_id,
                vec![
                    "sh".into(),
                    "-c".into(),
                    "nc -z 127.0.0.1 8080 || netstat -ltn | grep -q :8080".into(),
                ],
                Duration::from_secs(5),
            )
            .await?;
        if probe.exit_code == 0 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "httpd is not listening: {probe:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Pod {
        cri,
        sandbox_id,
        container_id,
    })
}

/// Just enough of an API server for kubectl's exec, cp and port-forward:
/// legacy discovery and the pod.
fn fake_api_document(path: &str, pod_path: &str) -> Option<Value> {
    Some(match path {
        "/api" => {
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        }
        "/apis" => json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
        "/api/v1" => json!({
            "kind": "APIResourceList",
            "groupVersion": "v1",
            "resources": [
                {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
                 "verbs": ["get", "list"], "shortNames": ["po"]},
                {"name": "pods/exec", "singularName": "", "namespaced": true, "kind": "PodExecOptions", "verbs": ["create", "get"]},
                {"name": "pods/portforward", "singularName": "", "namespaced": true, "kind": "PodPortForwardOptions", "verbs": ["create", "get"]},
            ],
        }),
        p if p == pod_path => json!({
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {"name": POD_NAME, "namespace": POD_NAMESPACE, "uid": "00000000-0000-0000-0000-000000000001"},
            "spec": {"containers": [{"name": CONTAINER_NAME, "image": BUSYBOX_IMAGE}]},
            "status": {
                "phase": "Running",
                "containerStatuses": [{"name": CONTAINER_NAME, "ready": true, "restartCount": 0,
                    "image": BUSYBOX_IMAGE, "imageID": "", "state": {"running": {}}}],
            },
        }),
        _ => return None,
    })
}

/// kubectl `version` against the fake API: exec (exit code, stdin), cp both
/// ways, port-forward. Returns `Ok(false)` when that kubectl is missing.
async fn kubectl_scenario(
    server: &TestServer,
    dir: &Path,
    version: &str,
    port_forward: bool,
) -> TestResult<bool> {
    let kubectl = PathBuf::from(format!("/usr/lib/google-cloud-sdk/bin/kubectl.{version}"));
    if !kubectl.is_file() {
        eprintln!(
            "\n====== kubectl {version} not found at {}: its part is SKIPPED ======\n",
            kubectl.display()
        );
        return Ok(false);
    }
    let dir = &dir.join(format!("kubectl-{version}"));
    fs::create_dir_all(dir)?;
    let kubeconfig = dir.join("kubeconfig");
    fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: http://{}\n\
             users:\n- name: t\n  user: {{}}\ncontexts:\n- name: t\n  context:\n    cluster: t\n    user: t\n    namespace: {POD_NAMESPACE}\n\
             current-context: t\n",
            server.addr
        ),
    )?;
    let run = |args: &[&str], stdin: Option<Vec<u8>>| {
        let mut command = tokio::process::Command::new(&kubectl);
        command
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--cache-dir")
            .arg(dir.join("kube-cache"))
            .args(args)
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "true")
            .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "true")
            .stdin(if stdin.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let args = args.join(" ");
        async move {
            let mut child = command.spawn()?;
            if let Some(data) = stdin {
                let mut pipe = child.stdin.take().ok_or("no stdin pipe")?;
                pipe.write_all(&data).await?;
                drop(pipe);
            }
            let out = tokio::time::timeout(STEP_TIMEOUT, child.wait_with_output())
                .await
                .map_err(|_| format!("kubectl {args} did not finish"))??;
            Ok::<_, Box<dyn Error + Send + Sync>>(out)
        }
    };

    let out = run(
        &[
            "exec",
            POD_NAME,
            "--",
            "sh",
            "-c",
            "echo hi; echo oops >&2; exit 7",
        ],
        None,
    )
    .await?;
    let stderr = text(&out.stderr);
    ensure!(
        out.status.code() == Some(7) && out.stdout == b"hi\n" && stderr.contains("oops"),
        "kubectl exec: {:?} stdout {:?} stderr {stderr:?}",
        out.status,
        text(&out.stdout)
    );
    eprintln!("streaming_translate: kubectl {version} exec: stdout, stderr, exit code 7");

    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let out = run(&["exec", "-i", POD_NAME, "--", "cat"], Some(data.clone())).await?;
    ensure!(
        out.status.success() && out.stdout == data,
        "kubectl exec -i cat: {:?}, {} of {} bytes, stderr {:?}",
        out.status,
        out.stdout.len(),
        data.len(),
        text(&out.stderr)
    );
    eprintln!("streaming_translate: kubectl {version} exec -i: 100 kB through cat, EOF seen");

    let local = dir.join("to-pod.bin");
    fs::write(&local, &data)?;
    let target = format!("{POD_NAME}:/tmp/copied.bin");
    let out = run(&["cp", &local.display().to_string(), &target], None).await?;
    ensure!(
        out.status.success(),
        "kubectl cp into the pod: {:?} {:?}",
        out.status,
        text(&out.stderr)
    );
    let back = dir.join("from-pod.bin");
    let out = run(&["cp", &target, &back.display().to_string()], None).await?;
    ensure!(
        out.status.success(),
        "kubectl cp from the pod: {:?} {:?}",
        out.status,
        text(&out.stderr)
    );
    ensure!(fs::read(&back)? == data, "the file copied back differs");
    eprintln!("streaming_translate: kubectl {version} cp into and out of the pod");
    if !port_forward {
        return Ok(true);
    }

    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    let mut forward = tokio::process::Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--cache-dir")
        .arg(dir.join("kube-cache"))
        .args([
            "port-forward",
            &format!("pod/{POD_NAME}"),
            &format!("{port}:8080"),
        ])
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "true")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdout = forward.stdout.take().ok_or("no stdout")?;
    let mut banner = Vec::new();
    let ready = tokio::time::timeout(STEP_TIMEOUT, async {
        let mut chunk = [0u8; 256];
        while !text(&banner).contains("Forwarding from") {
            let n = stdout.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            banner.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    ensure!(
        matches!(ready, Ok(Ok(()))) && text(&banner).contains("Forwarding from"),
        "kubectl port-forward did not start: {:?}",
        text(&banner)
    );
    for round in 0..2 {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        tcp.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        tokio::time::timeout(STEP_TIMEOUT, tcp.read_to_end(&mut response))
            .await
            .map_err(|_| format!("no answer through kubectl port-forward (round {round})"))??;
        let response = text(&response);
        ensure!(
            response.contains(" 200 ") && response.ends_with("hello-from-httpd\n"),
            "kubectl port-forward round {round}: {response:?}"
        );
    }
    forward.start_kill()?;
    let _ = forward.wait().await;
    eprintln!("streaming_translate: kubectl {version} port-forward: two HTTP requests to httpd");
    Ok(true)
}
