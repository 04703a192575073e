//! A one-node cluster for end-to-end tests: `kedge server` with its node
//! agent on a private containerd, test images in the agent's images dir, a
//! test-only pod network (bridge per test, no masquerade), and a clean-up
//! that leaves nothing behind even when the test fails.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{free_port, get_json, TestServer};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub const BUSYBOX: &str = "kedge.local/busybox:1.36";

pub struct Cluster {
    pub server: TestServer,
    /// Unique per cluster in this test run (names of bridges, nodes, CIDRs).
    pub tag: u32,
    pub node: String,
    pub bridge: String,
    pub kubelet_port: u16,
    kubelet_root: PathBuf,
}

/// Whether this host cannot run the end-to-end tests (said loudly).
pub fn skip(test: &str) -> bool {
    kedge_kubelet::testing::skip_real_runtime_test(test)
}

/// The test image tarballs, built once per machine (locked against
/// concurrent builds).
pub fn test_images() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kedge-test-images");
    std::fs::create_dir_all(&dir).expect("images dir");
    let lock = std::fs::File::create(dir.join(".lock")).expect("lock file");
    // SAFETY: flock on a file descriptor we own; released when `lock` drops.
    unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    if !dir.join("busybox.tar").exists() || !dir.join("pause.tar").exists() {
        let script = kedge_kubelet::testing::repo_root()
            .join("scripts")
            .join("build-test-images.sh");
        let out = Command::new(&script)
            .arg(&dir)
            .output()
            .expect("run build-test-images.sh");
        assert!(
            out.status.success(),
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}

impl Cluster {
    pub async fn start() -> Cluster {
        Self::start_with(&[]).await
    }

    /// A started cluster, or `None` (said loudly) where this host cannot run
    /// the end-to-end test `test`.
    pub async fn start_unless_skipped(test: &str) -> Option<Cluster> {
        if skip(test) {
            return None;
        }
        Some(Self::start().await)
    }

    /// A cluster whose server gets `extra` flags too.
    pub async fn start_with(extra: &[&str]) -> Cluster {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let tag = (pid % 1000) * 10 + n;
        let bridge = format!("kt{tag}");
        let cidr = format!("10.{}.{}.0/24", 200 + (n % 50), pid % 250);
        let node = format!("node-{tag}");
        let kubelet_port = free_port();
        let images = test_images();
        let port = kubelet_port.to_string();
        // Device plugins register under the kubelet root: one per cluster.
        let kubelet_root = std::env::temp_dir().join(format!("kedge-test-kubelet-{pid}-{n}"));
        let kubelet_root_arg = kubelet_root.display().to_string();
        let mut args: Vec<&str> = extra.to_vec();
        if !extra.contains(&"--kubelet-root-dir") {
            args.extend_from_slice(&["--kubelet-root-dir", &kubelet_root_arg]);
        }
        if !extra.contains(&"--cluster-cidr") {
            args.extend_from_slice(&["--cluster-cidr", &cidr]);
        }
        args.extend_from_slice(&[
            "--node-name",
            &node,
            "--node-ip",
            "127.0.0.1",
            "--cni-bridge",
            &bridge,
            "--pod-masquerade=false",
            "--kubelet-port",
            &port,
            "--eviction-hard",
            super::TEST_EVICTION_HARD,
        ]);
        let server = TestServer::start_with_agent_prepared(&args, |data_dir| {
            let dst = data_dir.join("agent").join("images");
            std::fs::create_dir_all(&dst).expect("images dir");
            std::fs::copy(images.join("busybox.tar"), dst.join("busybox.tar"))
                .expect("copy busybox.tar");
        })
        .await;
        let c = Cluster {
            server,
            tag,
            node,
            bridge,
            kubelet_port,
            kubelet_root,
        };
        c.wait_node_ready(Duration::from_secs(60)).await;
        c
    }

    pub fn data_dir(&self) -> PathBuf {
        self.server.data_dir()
    }

    pub async fn wait_node_ready(&self, timeout: Duration) {
        let client = self.server.client().await;
        let deadline = Instant::now() + timeout;
        loop {
            let (status, node) = get_json(&client, &format!("/api/v1/nodes/{}", self.node)).await;
            let ready = status == 200
                && node["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} not Ready in {timeout:?}: {node}\n{}",
                self.node,
                self.server.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `kubectl.1.NN` against this cluster.
    pub fn kubectl(&self, minor: u32, args: &[&str]) -> Output {
        self.kubectl_stdin(minor, args, None)
    }

    pub fn kubectl_stdin(&self, minor: u32, args: &[&str], stdin: Option<&[u8]>) -> Output {
        use std::io::Write;
        let bin = format!("/usr/lib/google-cloud-sdk/bin/kubectl.1.{minor}");
        let mut child = Command::new(&bin)
            .arg("--kubeconfig")
            .arg(self.server.kubeconfig())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
        if let Some(mut s) = child.stdin.take() {
            if let Some(input) = stdin {
                let _ = s.write_all(input);
            }
        }
        child.wait_with_output().expect("kubectl output")
    }

    /// Applies YAML with kubectl 1.33.
    pub fn apply(&self, yaml: &str) {
        let out = self.kubectl_stdin(33, &["apply", "-f", "-"], Some(yaml.as_bytes()));
        assert!(
            out.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub async fn pod(&self, ns: &str, name: &str) -> (u16, Value) {
        let client = self.server.client().await;
        get_json(&client, &format!("/api/v1/namespaces/{ns}/pods/{name}")).await
    }

    /// Waits until `pred` holds for the pod; panics with the pod and the
    /// server log otherwise.
    pub async fn wait_pod(
        &self,
        ns: &str,
        name: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, pod) = self.pod(ns, name).await;
            if status == 200 && pred(&pod) {
                return pod;
            }
            if Instant::now() > deadline {
                panic!(
                    "pod {ns}/{name}: {what} not reached in {timeout:?}\npod: {pod:#}\nlog tail:\n{}",
                    tail(&self.server.log(), 60)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_gone(&self, ns: &str, name: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, pod) = self.pod(ns, name).await;
            if status == 404 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "pod {ns}/{name} still there after {timeout:?}: {pod:#}\n{}",
                tail(&self.server.log(), 60)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A CRI client on the agent's containerd.
    pub async fn cri(&self) -> kedge_kubelet::CriClient {
        let paths = kedge_kubelet::ContainerdPaths::new(&self.data_dir());
        kedge_kubelet::CriClient::connect_when_ready(&paths.socket, Duration::from_secs(30))
            .await
            .expect("connect to the agent's containerd")
    }

    /// Events about a pod, as `reason: message` lines.
    pub async fn events(&self, ns: &str, pod: &str) -> Vec<String> {
        let client = self.server.client().await;
        let (_, list) = get_json(
            &client,
            &format!("/api/v1/namespaces/{ns}/events?fieldSelector=involvedObject.name={pod}"),
        )
        .await;
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                format!(
                    "{}: {}",
                    e["reason"].as_str().unwrap_or(""),
                    e["message"].as_str().unwrap_or("")
                )
            })
            .collect()
    }
}

pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub fn container_status<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

pub fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Stop kedge (SIGTERM: it stops containerd without killing pods),
        // then everything of this node by force.
        self.server.stop();
        let paths = kedge_kubelet::ContainerdPaths::new(&self.data_dir());
        let left = kedge_kubelet::testing::kill_containerd_and_pods(&paths);
        if !left.is_empty() {
            eprintln!("cluster clean-up killed: {}", left.join(", "));
        }
        kedge_kubelet::testing::unmount_under(self.server.dir.path());
        let _ = std::fs::remove_dir_all(&self.kubelet_root);
        if !kedge_kubelet::testing::delete_bridge(&self.bridge) {
            eprintln!("cannot delete bridge {}", self.bridge);
        }
    }
}
