//! What the `agent`, `recovery` and `devices` sections stand on: `kedge server`
//! child processes started with extra flags (a control plane alone, or with
//! its node agent on a private containerd), raw JSON requests, watch
//! streams stamped on arrival, and simulated nodes (a Node object and a
//! Lease renewed by the bench) with a bench-played kubelet that reports
//! pods Running on the nodes that are alive.
//!
//! A real node's clean-up ([`Kedge::shutdown`]): pods, ReplicaSets
//! and Deployments deleted through the API and waited for, left-over
//! sandboxes removed through CRI, SIGTERM, then `kedge_kubelet::testing`
//! kills what is left of that data dir's containerd, unmounts what is
//! under it and deletes the bridge, also after a failure.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use http_body_util::BodyExt;
use kedge_kubelet::cri::api::PodSandboxFilter;
use kedge_kubelet::{ContainerdPaths, CriClient, RuntimeService};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::load::send;
use crate::probe::ReadyzProbe;
use crate::sections::Plan;

pub const BUSYBOX: &str = "kedge.local/busybox:1.36";
const TOKEN: &str = "kedge-bench-token";
/// The Lease renewal interval of kedge's agent (and upstream's kubelet).
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
/// How long a node's clean-up waits for its pods to go after their DELETE.
const POD_DELETE_TIMEOUT: Duration = Duration::from_secs(120);

static NEXT: AtomicU32 = AtomicU32::new(0);

// ---- requests ----

/// A JSON request; the status and the parsed body (Null when empty or not JSON).
pub async fn request(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Value)> {
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let (status, resp) = send(client, method, path, content_type, bytes).await?;
    Ok((status, serde_json::from_slice(&resp).unwrap_or(Value::Null)))
}

/// A request that must answer one of `ok`; its body.
pub async fn expect(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Option<&Value>,
    ok: &[u16],
) -> Result<Value> {
    let (status, v) = request(client, method, path, content_type, body).await?;
    if !ok.contains(&status) {
        let text: String = v.to_string().chars().take(600).collect();
        bail!("{method} {path}: HTTP {status}: {text}");
    }
    Ok(v)
}

pub async fn get(client: &kube::Client, path: &str) -> Result<Value> {
    expect(client, "GET", path, None, None, &[200]).await
}

pub async fn post(client: &kube::Client, path: &str, body: &Value) -> Result<Value> {
    expect(
        client,
        "POST",
        path,
        Some("application/json"),
        Some(body),
        &[201],
    )
    .await
}

pub async fn merge_patch(client: &kube::Client, path: &str, body: &Value) -> Result<Value> {
    expect(
        client,
        "PATCH",
        path,
        Some("application/merge-patch+json"),
        Some(body),
        &[200],
    )
    .await
}

/// Now as a MicroTime (`renewTime`).
pub fn micro_now() -> String {
    jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%S%.6fZ", jiff::Timestamp::now()).unwrap_or_default()
}

/// Now as a Time (whole seconds).
pub fn time_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Real-node pods tolerate the disk-pressure taint: a build host's disk is
/// often over the kubelet's 85% (imagefs) mark, and the scheduler would
/// then leave them Pending. Nothing else about the pod changes.
pub fn disk_pressure_tolerations() -> Value {
    json!([{"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"}])
}

pub fn has_condition(obj: &Value, type_: &str, status: &str) -> bool {
    obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == type_ && c["status"] == status)
}

pub fn name_of(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("")
}

pub fn node_of(pod: &Value) -> &str {
    pod["spec"]["nodeName"].as_str().unwrap_or("")
}

/// The collection's current resourceVersion (to watch from).
pub async fn list_rv(client: &kube::Client, collection: &str) -> Result<String> {
    let sep = if collection.contains('?') { '&' } else { '?' };
    let v = get(client, &format!("{collection}{sep}limit=1")).await?;
    v["metadata"]["resourceVersion"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("{collection}: list without resourceVersion"))
}

// ---- watches ----

/// A watch's events (type, object), each with the instant its chunk
/// arrived; the stream closes when this drops.
pub struct WatchStream {
    rx: mpsc::UnboundedReceiver<(String, Value, Instant)>,
    task: tokio::task::JoinHandle<()>,
}

impl WatchStream {
    /// Watches `collection` (a path, maybe with a selector) from its
    /// current resourceVersion, or from `rv`.
    pub async fn open(
        client: &kube::Client,
        collection: &str,
        rv: Option<String>,
    ) -> Result<WatchStream> {
        let rv = match rv {
            Some(rv) => rv,
            None => list_rv(client, collection).await?,
        };
        let sep = if collection.contains('?') { '&' } else { '?' };
        let path = format!("{collection}{sep}watch=1&resourceVersion={rv}&timeoutSeconds=3600");
        WatchStream::watch(client, &path).await
    }

    /// Watches `path` as it is (a watch URL; without a resourceVersion the
    /// server first sends the current objects as ADDED).
    pub async fn watch(client: &kube::Client, path: &str) -> Result<WatchStream> {
        let req = http::Request::builder()
            .method("GET")
            .uri(path)
            .body(kube::client::Body::empty())?;
        let resp = client
            .send(req)
            .await
            .with_context(|| format!("watch {path}"))?;
        anyhow::ensure!(resp.status() == 200, "watch {path}: HTTP {}", resp.status());
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut body = resp.into_body();
            let mut buf: Vec<u8> = Vec::new();
            while let Some(Ok(frame)) = body.frame().await {
                let at = Instant::now();
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                buf.extend_from_slice(&data);
                while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    let Ok(ev) = serde_json::from_slice::<Value>(&line) else {
                        continue;
                    };
                    let kind = ev["type"].as_str().unwrap_or("").to_string();
                    if tx.send((kind, ev["object"].clone(), at)).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(WatchStream { rx, task })
    }

    /// The next event before `deadline`; an error when the stream ends,
    /// `None` at the deadline.
    pub async fn next_before(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<(String, Value, Instant)>> {
        match tokio::time::timeout_at(deadline.into(), self.rx.recv()).await {
            Ok(Some(ev)) => Ok(Some(ev)),
            Ok(None) => bail!("the watch ended"),
            Err(_) => Ok(None),
        }
    }

    /// The next ADDED or MODIFIED object before `deadline`, with its
    /// arrival; an error when the stream ends, `None` at the deadline.
    pub async fn next_object_before(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<(Value, Instant)>> {
        loop {
            match self.next_before(deadline).await? {
                Some((kind, obj, at)) if matches!(kind.as_str(), "ADDED" | "MODIFIED") => {
                    return Ok(Some((obj, at)))
                }
                Some(_) => {}
                None => return Ok(None),
            }
        }
    }

    /// Waits for an ADDED or MODIFIED object that satisfies `pred`; its
    /// arrival, or an error naming `what` after `timeout`.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        what: &str,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Result<(Value, Instant)> {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        loop {
            match self.next_object_before(deadline).await? {
                Some((obj, at)) => {
                    if pred(&obj) {
                        return Ok((obj, at));
                    }
                    last = obj;
                }
                None => {
                    let status: String = last["status"].to_string().chars().take(500).collect();
                    bail!(
                        "{what}: not within {timeout:?}; last object seen: {} status {status}",
                        name_of(&last)
                    )
                }
            }
        }
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---- kedge server processes ----

/// The pod network, node name and bridge of a server with its agent.
struct Agent {
    node: String,
    bridge: String,
}

/// One `kedge server` child: a control plane (`--disable-agent`) or a node
/// with its agent; state, kubeconfig and log under `dir`.
pub struct Kedge {
    child: Option<Child>,
    pub dir: PathBuf,
    port: u16,
    spawned: Instant,
    spawned_wall: jiff::Timestamp,
    agent: Option<Agent>,
    /// `[tag]` for messages.
    tag: &'static str,
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// The busybox image tarball: the one the end-to-end tests built, else
/// built now with scripts/build-test-images.sh into the work dir.
pub fn busybox_tarball(plan: &Plan, tag: &str) -> Result<PathBuf> {
    let root = kedge_kubelet::testing::repo_root();
    let built = root.join("target/tmp/kedge-test-images/busybox.tar");
    if built.is_file() {
        return Ok(built);
    }
    let dir = plan.work.join("images");
    if dir.join("busybox.tar").is_file() {
        return Ok(dir.join("busybox.tar"));
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let script = root.join("scripts/build-test-images.sh");
    eprintln!("[{tag}] building the test images with {}", script.display());
    let out = Command::new(&script)
        .arg(&dir)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(
        out.status.success() && dir.join("busybox.tar").is_file(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(dir.join("busybox.tar"))
}

impl Kedge {
    fn base_command(plan: &Plan, dir: &Path, port: u16) -> Result<Command> {
        let log = std::fs::File::create(dir.join("server.log"))
            .with_context(|| format!("creating {}/server.log", dir.display()))?;
        let mut cmd = Command::new(&plan.kedge);
        cmd.arg("server")
            .args(["--config", "/dev/null"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--https-listen-port", &port.to_string()])
            .args(["--bind-address", "127.0.0.1"])
            .arg("--write-kubeconfig")
            .arg(dir.join("kubeconfig.yaml"))
            .args(["--token", TOKEN])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        Ok(cmd)
    }

    /// `kedge server --disable-agent <extra>` in a fresh `dir`.
    pub fn control_plane(
        plan: &Plan,
        dir: &Path,
        extra: &[&str],
        tag: &'static str,
    ) -> Result<Kedge> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let port = free_port()?;
        let mut cmd = Self::base_command(plan, dir, port)?;
        cmd.arg("--disable-agent").args(extra);
        Self::start(plan, cmd, dir, port, None, tag)
    }

    /// Spawns `cmd`, noting when.
    fn start(
        plan: &Plan,
        mut cmd: Command,
        dir: &Path,
        port: u16,
        agent: Option<Agent>,
        tag: &'static str,
    ) -> Result<Kedge> {
        let spawned_wall = jiff::Timestamp::now();
        let spawned = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", plan.kedge.display()))?;
        Ok(Kedge {
            child: Some(child),
            dir: dir.to_path_buf(),
            port,
            spawned,
            spawned_wall,
            agent,
            tag,
        })
    }

    /// `kedge server <extra>` with its agent in a fresh `dir`: a private
    /// kubelet root dir, a test pod network (own bridge and /24, no
    /// masquerade), the busybox tarball in the images dir. The tarball keeps
    /// its mtime: the agent skips files modified in the last seconds (they
    /// may still be being written), and this one stands for a file put
    /// there well before the start, imported at once.
    pub fn node(
        plan: &Plan,
        dir: &Path,
        tarball: &Path,
        extra: &[&str],
        tag: &'static str,
    ) -> Result<Kedge> {
        let _ = std::fs::remove_dir_all(dir);
        let image_dir = dir.join("data/agent/images");
        std::fs::create_dir_all(&image_dir)
            .with_context(|| format!("creating {}", image_dir.display()))?;
        let dst = image_dir.join("busybox.tar");
        std::fs::copy(tarball, &dst).context("copying busybox.tar into the images dir")?;
        let mtime = std::fs::metadata(tarball)
            .and_then(|m| m.modified())
            .context("reading busybox.tar's mtime")?;
        std::fs::File::options()
            .write(true)
            .open(&dst)
            .and_then(|f| f.set_modified(mtime))
            .context("setting the copied busybox.tar's mtime")?;
        let kubelet_root = dir.join("kubelet");
        std::fs::create_dir_all(&kubelet_root)?;
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let bridge = format!("kr{}x{n}", pid % 100_000);
        let node = format!("bench-{tag}-{n}");
        let cidr = format!("10.{}.{}.0/24", 180 + n % 10, pid % 250);
        let port = free_port()?;
        let kubelet_port = free_port()?;
        let mut cmd = Self::base_command(plan, dir, port)?;
        cmd.args(["--node-name", &node])
            .args(["--node-ip", "127.0.0.1"])
            .args(["--cluster-cidr", &cidr])
            .args(["--cni-bridge", &bridge])
            .arg("--pod-masquerade=false")
            .args(["--kubelet-port", &kubelet_port.to_string()])
            .arg("--kubelet-root-dir")
            .arg(&kubelet_root)
            .arg("--pod-logs-dir")
            .arg(dir.join("pod-logs"))
            .args(extra);
        Self::start(plan, cmd, dir, port, Some(Agent { node, bridge }), tag)
    }

    pub fn node_name(&self) -> &str {
        self.agent.as_ref().map_or("", |a| a.node.as_str())
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig.yaml")
    }

    fn paths(&self) -> ContainerdPaths {
        ContainerdPaths::new(&self.dir.join("data"))
    }

    pub fn exited(&mut self) -> Option<String> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        Some(format!("kedge exited with {status}: {}", self.log_tail()))
    }

    /// When the child was spawned.
    pub fn spawned(&self) -> Instant {
        self.spawned
    }

    /// The kedge process's pid.
    pub fn pid(&self) -> Result<u32> {
        match &self.child {
            Some(c) => Ok(c.id()),
            None => bail!("the server was stopped"),
        }
    }

    /// containerd's pid, from the pid file its supervisor writes.
    pub fn containerd_pid(&self) -> Result<u32> {
        let file = self.paths().pid_file;
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        text.trim()
            .parse()
            .with_context(|| format!("{} holds no pid", file.display()))
    }

    /// The shims of this node's containerd (their command line names its socket).
    pub fn shim_pids(&self) -> Vec<u32> {
        let socket = self.paths().socket;
        let socket = socket.as_os_str().as_encoded_bytes();
        kedge_kubelet::testing::pids()
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    kedge_kubelet::testing::contains(&c, b"containerd-shim")
                        && kedge_kubelet::testing::contains(&c, socket)
                })
            })
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let log = self.log();
        let start = log.len().saturating_sub(1500);
        log.get(start..).unwrap_or_default().to_string()
    }

    /// Adds the server's death, if it died, to `e`.
    pub fn explain(&mut self, e: anyhow::Error) -> anyhow::Error {
        match self.exited() {
            Some(why) => e.context(why),
            None => e,
        }
    }

    /// Polls `/readyz` every `poll`; the time from spawn to its first 200.
    pub async fn wait_readyz(&mut self, poll: Duration) -> Result<Duration> {
        let probe = ReadyzProbe::new()?;
        let deadline = self.spawned + Duration::from_secs(30);
        loop {
            if let Some(why) = self.exited() {
                bail!("{why}");
            }
            if let Ok(200) = probe.status(self.port).await {
                return Ok(self.spawned.elapsed());
            }
            if Instant::now() > deadline {
                bail!("kedge not ready within 30 s: {}", self.log_tail());
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Waits for the Node's Ready condition on a watch; the time from spawn
    /// to the event that showed it.
    pub async fn wait_node_ready_watched(&mut self, client: &kube::Client) -> Result<Duration> {
        let node = self.node_name().to_string();
        let mut events =
            WatchStream::watch(client, "/api/v1/nodes?watch=1&timeoutSeconds=120").await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match events.next_object_before(deadline).await {
                Ok(Some((obj, at))) => {
                    if name_of(&obj) == node && has_condition(&obj, "Ready", "True") {
                        return Ok(at.duration_since(self.spawned));
                    }
                }
                Ok(None) => bail!("node {node} not Ready within 60 s: {}", self.log_tail()),
                Err(e) => return Err(e.context(format!("before {node} was Ready"))),
            }
        }
    }

    /// Spawn -> the agent's "container runtime is ready" log line (its
    /// timestamp), if the log has it (it needs `--log-format json`).
    pub fn containerd_ready(&self) -> Option<Duration> {
        self.log().lines().find_map(|line| {
            let v: Value = serde_json::from_str(line).ok()?;
            if v["fields"]["message"] != "container runtime is ready" {
                return None;
            }
            let at: jiff::Timestamp = v["timestamp"].as_str()?.parse().ok()?;
            let ns = at.as_nanosecond() - self.spawned_wall.as_nanosecond();
            u64::try_from(ns).ok().map(Duration::from_nanos)
        })
    }

    /// Waits for `/readyz` (and, with an agent, the Node's Ready
    /// condition); an admin client.
    pub async fn ready(&mut self) -> Result<kube::Client> {
        self.wait_readyz(Duration::from_millis(10)).await?;
        let client = self.client().await?;
        if let Some(agent) = &self.agent {
            let path = format!("/api/v1/nodes/{}", agent.node);
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let (status, node) = request(&client, "GET", &path, None, None).await?;
                if status == 200 && has_condition(&node, "Ready", "True") {
                    break;
                }
                if let Some(why) = self.exited() {
                    bail!("{why}");
                }
                if Instant::now() > deadline {
                    bail!("node not Ready within 60 s: {}", self.log_tail());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(client)
    }

    pub async fn client(&self) -> Result<kube::Client> {
        let path = self.kubeconfig();
        let kc =
            Kubeconfig::read_from(&path).with_context(|| format!("reading {}", path.display()))?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .context("kubeconfig to client config")?;
        kube::Client::try_from(cfg).context("building a kube client")
    }

    pub async fn cri(&self) -> Result<CriClient> {
        let socket = self.paths().socket;
        CriClient::connect_when_ready(&socket, Duration::from_secs(30))
            .await
            .with_context(|| format!("connecting to containerd at {}", socket.display()))
    }

    /// With an agent: deletes the Deployments, ReplicaSets and pods of
    /// `ns` (there is no garbage collector to cascade) and waits until the
    /// pods are gone, and removes what CRI still has. Then stops kedge with
    /// SIGTERM. (A control plane's simulated pods need no clean-up: its
    /// data dir goes.)
    pub async fn shutdown(&mut self, ns: &str) {
        if self.agent.is_some() && self.exited().is_none() {
            if let Ok(client) = self.client().await {
                if let Err(e) = delete_workloads(&client, ns).await {
                    eprintln!("[{}] deleting the bench's objects: {e:#}", self.tag);
                }
            }
            if let Ok(cri) = self.cri().await {
                remove_sandboxes(&cri, self.tag, |_| true).await;
            }
        }
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, self.tag);
        }
    }
}

impl Drop for Kedge {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(agent) = &self.agent {
            let left = kedge_kubelet::testing::kill_containerd_and_pods(&self.paths());
            if !left.is_empty() {
                eprintln!("[{}] clean-up killed: {}", self.tag, left.join(", "));
            }
            kedge_kubelet::testing::unmount_under(&self.dir);
            if !kedge_kubelet::testing::delete_bridge(&agent.bridge) {
                eprintln!("[{}] cannot delete bridge {}", self.tag, agent.bridge);
            }
        }
    }
}

/// SIGTERM (kedge stops containerd, pods keep running), SIGKILL after 15 s.
fn terminate(child: &mut Child, tag: &str) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) takes plain integers and touches no memory of
        // ours; `pid` is our own child, not yet reaped (we hold its
        // `Child`), so the id cannot have been reused.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("[{tag}] kedge did not stop within 15 s of SIGTERM; killing it");
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Deletes the Deployments, ReplicaSets and pods of `ns` (there is no
/// garbage collector to cascade) and waits until the pods are gone.
pub async fn delete_workloads(client: &kube::Client, ns: &str) -> Result<()> {
    for collection in [
        format!("/apis/apps/v1/namespaces/{ns}/deployments"),
        format!("/apis/apps/v1/namespaces/{ns}/replicasets"),
        format!("/api/v1/namespaces/{ns}/pods"),
    ] {
        let (status, list) = request(client, "GET", &collection, None, None).await?;
        if status == 404 {
            continue;
        }
        for item in list["items"].as_array().into_iter().flatten() {
            let path = format!("{collection}/{}", name_of(item));
            expect(client, "DELETE", &path, None, None, &[200, 202, 404]).await?;
        }
    }
    let pods = format!("/api/v1/namespaces/{ns}/pods");
    let deadline = Instant::now() + POD_DELETE_TIMEOUT;
    loop {
        let (status, list) = request(client, "GET", &pods, None, None).await?;
        let left = list["items"].as_array().map_or(0, Vec::len);
        if status != 200 || left == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{left} pods still there {POD_DELETE_TIMEOUT:?} after their DELETE"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stops and removes the sandboxes `pick` chooses (by pod name); stopping
/// runs the CNI DEL that frees the pod's address.
pub async fn remove_sandboxes(cri: &CriClient, tag: &str, pick: impl Fn(&str) -> bool) {
    let Ok(list) = cri.list_pod_sandbox(None::<PodSandboxFilter>).await else {
        return;
    };
    for s in list {
        let name = s.metadata.as_ref().map_or("", |m| m.name.as_str());
        if !pick(name) {
            continue;
        }
        if let Err(e) = cri.stop_pod_sandbox(&s.id).await {
            eprintln!("[{tag}] stopping sandbox {name} ({}): {e}", s.id);
        }
        if let Err(e) = cri.remove_pod_sandbox(&s.id).await {
            eprintln!("[{tag}] removing sandbox {name} ({}): {e}", s.id);
        }
    }
}

// ---- simulated nodes and the bench's kubelet ----

/// Simulated nodes on a control plane: Node objects that say they are
/// Ready, Leases renewed every [`LEASE_RENEW`] as kedge's agent does, and a
/// kubelet played by the bench: a pod bound to a live node is reported
/// Running and Ready (status PATCH), a pod being deleted there is finished
/// (DELETE with grace 0). A stopped node gets neither.
pub struct SimNodes {
    client: kube::Client,
    live: Arc<Mutex<HashSet<String>>>,
    renewers: HashMap<String, tokio::task::JoinHandle<()>>,
    /// Pod name -> the instant the bench's Running report was accepted.
    running: Arc<Mutex<HashMap<String, (String, Instant)>>>,
    kubelet: Option<tokio::task::JoinHandle<()>>,
}

impl SimNodes {
    pub fn new(client: kube::Client) -> SimNodes {
        SimNodes {
            client,
            live: Arc::default(),
            renewers: HashMap::new(),
            running: Arc::default(),
            kubelet: None,
        }
    }

    /// Adds a Ready node with its Lease, and starts renewing the Lease.
    pub async fn add(&mut self, name: &str) -> Result<()> {
        let c = &self.client;
        let alloc = json!({"cpu": "8", "memory": "32Gi", "pods": "110"});
        let status = json!({
            "capacity": alloc, "allocatable": alloc,
            "conditions": node_conditions(),
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        });
        post(
            c,
            "/api/v1/nodes",
            &json!({"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                    "status": status}),
        )
        .await?;
        merge_patch(
            c,
            &format!("/api/v1/nodes/{name}/status"),
            &json!({"status": status}),
        )
        .await?;
        post(
            c,
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            &json!({"metadata": {"name": name},
                    "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                             "renewTime": micro_now()}}),
        )
        .await?;
        if let Ok(mut live) = self.live.lock() {
            live.insert(name.to_string());
        }
        let (c, n) = (c.clone(), name.to_string());
        let renewer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE_RENEW).await;
                let _ = renew(&c, &n).await;
            }
        });
        self.renewers.insert(name.to_string(), renewer);
        Ok(())
    }

    /// Waits until the node carries no taint (admission may add
    /// not-ready:NoSchedule to a new Node until node lifecycle sees it Ready).
    pub async fn wait_untainted(&self, name: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let n = get(&self.client, &format!("/api/v1/nodes/{name}")).await?;
            if n["spec"]["taints"].as_array().is_none_or(Vec::is_empty) {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "node {name} still tainted after {timeout:?}: {}",
                n["spec"]["taints"]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The node is lost: one last Lease renewal, then silence (no Lease,
    /// no status, no pod reports). The instant that last renewal was
    /// accepted: the node's last heartbeat.
    pub async fn lose(&mut self, name: &str) -> Result<Instant> {
        if let Some(r) = self.renewers.remove(name) {
            r.abort();
        }
        renew(&self.client, name).await?;
        let last = Instant::now();
        if let Ok(mut live) = self.live.lock() {
            live.remove(name);
        }
        Ok(last)
    }

    /// Starts playing the kubelet for the live nodes' pods (all namespaces).
    pub async fn start_kubelet(&mut self) -> Result<()> {
        let mut watch = WatchStream::open(&self.client, "/api/v1/pods", None).await?;
        let (client, live, running) =
            (self.client.clone(), self.live.clone(), self.running.clone());
        self.kubelet = Some(tokio::spawn(async move {
            let far = Instant::now() + Duration::from_secs(24 * 3600);
            while let Ok(Some((kind, pod, _))) = watch.next_before(far).await {
                if kind == "DELETED" {
                    continue;
                }
                let node = node_of(&pod).to_string();
                let alive = live.lock().is_ok_and(|l| l.contains(&node));
                if node.is_empty() || !alive {
                    continue;
                }
                let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
                let path = format!("/api/v1/namespaces/{ns}/pods/{}", name_of(&pod));
                if !pod["metadata"]["deletionTimestamp"].is_null() {
                    let body = json!({"gracePeriodSeconds": 0});
                    let _ = request(
                        &client,
                        "DELETE",
                        &path,
                        Some("application/json"),
                        Some(&body),
                    )
                    .await;
                    continue;
                }
                if pod["status"]["phase"] == "Running" {
                    continue;
                }
                if report_running(&client, &path).await.is_ok() {
                    if let Ok(mut r) = running.lock() {
                        r.entry(name_of(&pod).to_string())
                            .or_insert((node, Instant::now()));
                    }
                }
            }
        }));
        Ok(())
    }

    /// When the bench's kubelet reported this pod Running, and on which node.
    pub fn running(&self, pod: &str) -> Option<(String, Instant)> {
        self.running.lock().ok()?.get(pod).cloned()
    }

    /// Pods reported Running so far, with their nodes and instants.
    pub fn all_running(&self) -> Vec<(String, String, Instant)> {
        self.running
            .lock()
            .map(|r| {
                r.iter()
                    .map(|(p, (n, t))| (p.clone(), n.clone(), *t))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for SimNodes {
    fn drop(&mut self) {
        for r in self.renewers.values() {
            r.abort();
        }
        if let Some(k) = &self.kubelet {
            k.abort();
        }
    }
}

fn node_conditions() -> Value {
    let now = time_now();
    let c = |t: &str, s: &str, r: &str| {
        json!({"type": t, "status": s, "reason": r, "message": "simulated by kedge-bench",
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    json!([
        c("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        c("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        c("PIDPressure", "False", "KubeletHasSufficientPID"),
        c("Ready", "True", "KubeletReady"),
    ])
}

async fn renew(client: &kube::Client, name: &str) -> Result<()> {
    merge_patch(
        client,
        &format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"),
        &json!({"spec": {"renewTime": micro_now()}}),
    )
    .await
    .map(|_| ())
}

async fn report_running(client: &kube::Client, path: &str) -> Result<()> {
    let now = time_now();
    let cond = |t: &str| json!({"type": t, "status": "True", "lastTransitionTime": now});
    let status = json!({"status": {
        "phase": "Running",
        "startTime": now,
        "conditions": [cond("PodScheduled"), cond("Initialized"), cond("ContainersReady"), cond("Ready")],
    }});
    merge_patch(client, &format!("{path}/status"), &status)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_time_has_microseconds() {
        let t = micro_now();
        assert!(
            t.ends_with('Z') && t.len() == "2025-01-01T00:00:00.000000Z".len(),
            "{t}"
        );
        assert!(time_now().parse::<jiff::Timestamp>().is_ok());
    }

    #[test]
    fn conditions_say_ready() {
        let node = json!({"status": {"conditions": node_conditions()}});
        assert!(has_condition(&node, "Ready", "True"));
        assert!(!has_condition(&node, "Ready", "False"));
        assert!(has_condition(&node, "DiskPressure", "False"));
    }
}
