//! Starts the real `kedge server` binary on a free port in a temp dir and
//! gives tests a `kube::Client` for it.
#![allow(dead_code)]

pub mod cluster;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// `--eviction-hard` for test nodes: memory as upstream, the four disk
/// signals off (`0%`, upstream's way to disable one). Build and CI machines
/// share a disk whose free space swings from tens of GiB to a few hundred
/// MiB while the suite runs, so any disk threshold would taint a test's node
/// with `node.kubernetes.io/disk-pressure` at random. The pressure logic has
/// its own tests (kedge-kubelet `node::eviction` and `node::status`).
pub const TEST_EVICTION_HARD: &str =
    "memory.available<100Mi,nodefs.available<0%,nodefs.inodesFree<0%,imagefs.available<0%,imagefs.inodesFree<0%";

pub struct TestServer {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub token: String,
    extra: Vec<String>,
    /// Run the node agent too (tests that need root and containerd).
    agent: bool,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl TestServer {
    pub async fn start(extra: &[&str]) -> TestServer {
        Self::start_inner(extra, false).await
    }

    /// A server with its node agent (needs root, containerd, runc).
    pub async fn start_with_agent(extra: &[&str]) -> TestServer {
        Self::start_inner(extra, true).await
    }

    /// A server with its node agent; `prepare` gets the data dir before the
    /// server starts (to drop image tarballs in, say).
    pub async fn start_with_agent_prepared(
        extra: &[&str],
        prepare: impl FnOnce(&Path),
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        prepare(&dir.path().join("data"));
        Self::start_in(dir, extra, true).await
    }

    async fn start_inner(extra: &[&str], agent: bool) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir, extra, agent).await
    }

    async fn start_in(dir: tempfile::TempDir, extra: &[&str], agent: bool) -> TestServer {
        let mut s = TestServer {
            child: None,
            dir,
            port: free_port(),
            token: format!("test-token-{}", std::process::id()),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            agent,
        };
        s.spawn().await;
        s
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Restart the server with `--disable-agent` (the data dir's node and
    /// pods stay as they are).
    pub async fn spawn_without_agent(&mut self) {
        let agent = self.agent;
        self.agent = false;
        self.spawn().await;
        self.agent = agent;
    }

    /// Start (or restart) the server process and wait for /readyz.
    pub async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_kedge"))
            .arg("server")
            .args(["--config", "/dev/null"])
            .args(["--data-dir", self.data_dir().to_str().expect("utf8")])
            .args(["--https-listen-port", &self.port.to_string()])
            .args(["--bind-address", "127.0.0.1"])
            .args([
                "--write-kubeconfig",
                self.kubeconfig().to_str().expect("utf8"),
            ])
            .args(["--token", &self.token])
            .args((!self.agent).then_some("--disable-agent"))
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start kedge");
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("kedge exited early with {status}: {}", self.log());
                }
            }
            if self.kubeconfig().exists() && tcp_open(self.port) {
                let c = self.anonymous().await;
                let (status, _, _) = raw(&c, "GET", "/readyz", None, vec![]).await;
                if status == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "kedge not ready in 30s: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// SIGTERM, and wait (up to 30 s, then SIGKILL).
    pub fn stop(&mut self) {
        terminate(&mut self.child);
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub async fn client(&self) -> kube::Client {
        client_for(&self.kubeconfig()).await
    }

    /// A client that presents no credentials.
    pub async fn anonymous(&self) -> kube::Client {
        let kc = Kubeconfig::read_from(self.kubeconfig()).expect("kubeconfig");
        let mut cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("config");
        cfg.auth_info = Default::default();
        kube::Client::try_from(cfg).expect("client")
    }

    /// A client that authenticates with a bearer token only.
    pub async fn with_token(&self, token: &str) -> kube::Client {
        let kc = Kubeconfig::read_from(self.kubeconfig()).expect("kubeconfig");
        let mut cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("config");
        cfg.auth_info = kube::config::AuthInfo {
            token: Some(token.to_string().into()),
            ..Default::default()
        };
        kube::Client::try_from(cfg).expect("client")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// SIGTERM to a `kedge` child, then wait for it (up to 30 s, then SIGKILL).
pub fn terminate(child: &mut Option<Child>) {
    let Some(mut c) = child.take() else { return };
    if let Ok(pid) = libc::pid_t::try_from(c.id()) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
}

/// Runs `kedge ARGS --data-dir DIR` to completion.
pub fn kedge_with_data_dir(args: &[&str], data_dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kedge"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run kedge")
}

fn tcp_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

pub async fn client_for(path: &Path) -> kube::Client {
    let kc = Kubeconfig::read_from(path).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    kube::Client::try_from(cfg).expect("client")
}

/// A raw request: (status, body as JSON if it parses, raw bytes, content type).
pub async fn raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, serde_json::Value, Bytes) {
    raw_with(client, method, path, content_type, None, body).await
}

pub async fn raw_with(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    accept: Option<&str>,
    body: Vec<u8>,
) -> (u16, serde_json::Value, Bytes) {
    let mut b = http::Request::builder().method(method).uri(path);
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    if let Some(a) = accept {
        b = b.header("accept", a);
    }
    let req = b.body(kube::client::Body::from(body)).expect("request");
    let resp = client.send(req).await.expect("send");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect_bytes().await.expect("body");
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, json, bytes)
}

/// Polls `f` until it yields `Some`, or panics with `what` and the
/// server's log tail.
pub async fn wait_for<T, F, Fut>(s: &TestServer, what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached in {timeout:?}\nlog tail:\n{}",
            cluster::tail(&s.log(), 40)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `kubectl.1.MINOR ARGS` against the server, to completion.
pub fn kubectl(s: &TestServer, minor: u32, args: &[&str]) -> std::process::Output {
    Command::new(format!("/usr/lib/google-cloud-sdk/bin/kubectl.1.{minor}"))
        .arg("--kubeconfig")
        .arg(s.kubeconfig())
        .args(args)
        .output()
        .expect("run kubectl")
}

/// The condition of type `type_` in `obj.status.conditions` (a node's, a
/// pod's, a workload's), if there is one.
pub fn condition<'a>(obj: &'a serde_json::Value, type_: &str) -> Option<&'a serde_json::Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// [`condition`], or `Null` where there is none (so its fields read as
/// `Null` too).
pub fn condition_or_null<'a>(obj: &'a serde_json::Value, type_: &str) -> &'a serde_json::Value {
    condition(obj, type_).unwrap_or(&serde_json::Value::Null)
}

pub async fn get_json(client: &kube::Client, path: &str) -> (u16, serde_json::Value) {
    let (s, v, _) = raw(client, "GET", path, None, vec![]).await;
    (s, v)
}

pub async fn post_json(
    client: &kube::Client,
    path: &str,
    v: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let (s, v, _) = raw(
        client,
        "POST",
        path,
        Some("application/json"),
        serde_json::to_vec(v).expect("json"),
    )
    .await;
    (s, v)
}

pub async fn put_json(
    client: &kube::Client,
    path: &str,
    v: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let (s, v, _) = raw(
        client,
        "PUT",
        path,
        Some("application/json"),
        serde_json::to_vec(v).expect("json"),
    )
    .await;
    (s, v)
}
