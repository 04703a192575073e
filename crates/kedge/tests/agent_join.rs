//! End-to-end: `kedge agent` joins a running `kedge server` with the token
//! the server wrote (`<data-dir>/server/node-token`), registers a second
//! node, runs pods scheduled to it on its own containerd, serves logs and
//! exec through the API server, and restarts from its stored credentials.
//! Wrong tokens fail fast with one clear line. Real containerd, as root.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::{container_status, skip, test_images, Cluster, BUSYBOX};
use common::{free_port, get_json};
use kedge_kubelet::RuntimeService;

/// A `kedge agent` process with its own data dir, containerd, bridge and
/// kubelet root; everything of it is removed on drop.
struct JoinedAgent {
    child: Option<Child>,
    dir: tempfile::TempDir,
    args: Vec<String>,
    bridge: String,
    kubelet_root: PathBuf,
}

impl JoinedAgent {
    fn new(cluster: &Cluster, node: &str, token: &str) -> JoinedAgent {
        let dir = tempfile::tempdir().expect("temp dir");
        let images = dir.path().join("data").join("agent").join("images");
        std::fs::create_dir_all(&images).expect("images dir");
        std::fs::copy(
            test_images().join("busybox.tar"),
            images.join("busybox.tar"),
        )
        .expect("copy busybox.tar");
        let bridge = format!("kj{}", cluster.tag);
        let kubelet_root = dir.path().join("kubelet");
        let args = vec![
            "agent".to_string(),
            "--config=/dev/null".into(),
            format!("--server=https://127.0.0.1:{}", cluster.server.port),
            format!("--token={token}"),
            format!("--data-dir={}", dir.path().join("data").display()),
            format!("--node-name={node}"),
            "--node-ip=127.0.0.1".into(),
            format!("--kubelet-port={}", free_port()),
            format!("--cni-bridge={bridge}"),
            "--pod-masquerade=false".into(),
            format!("--kubelet-root-dir={}", kubelet_root.display()),
            format!("--eviction-hard={}", common::TEST_EVICTION_HARD),
            "--node-label=site=store-7".into(),
        ];
        JoinedAgent {
            child: None,
            dir,
            args,
            bridge,
            kubelet_root,
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_kedge"))
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start kedge agent");
        self.child = Some(child);
    }

    fn stop(&mut self) {
        common::terminate(&mut self.child);
    }
}

impl Drop for JoinedAgent {
    fn drop(&mut self) {
        self.stop();
        let paths = kedge_kubelet::ContainerdPaths::new(&self.data_dir());
        kedge_kubelet::testing::kill_containerd_and_pods(&paths);
        kedge_kubelet::testing::unmount_under(self.dir.path());
        let _ = std::fs::remove_dir_all(&self.kubelet_root);
        kedge_kubelet::testing::delete_bridge(&self.bridge);
    }
}

/// Runs `kedge agent` with a bad token: it must exit non-zero, quickly, with
/// one line on stderr that contains `want`.
fn agent_fails(cluster: &Cluster, token: &str, extra: &[&str], want: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_kedge"))
        .args([
            "agent",
            "--config=/dev/null",
            &format!("--server=https://127.0.0.1:{}", cluster.server.port),
            &format!("--token={token}"),
            &format!("--data-dir={}", dir.path().display()),
            "--node-name=intruder",
        ])
        .args(extra)
        .output()
        .expect("run kedge agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "kedge agent accepted a bad token");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a bad token took {:?} to fail",
        started.elapsed()
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("kedge: ") && last.contains(want),
        "expected a line with {want:?}, got: {stderr}"
    );
    assert!(
        !dir.path()
            .join("agent")
            .join("tls")
            .join("client-kubelet.crt")
            .exists(),
        "credentials were written for a refused join"
    );
}

fn node_ready(node: &serde_json::Value) -> bool {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

async fn wait_node_ready(cluster: &Cluster, agent: &JoinedAgent, name: &str) -> serde_json::Value {
    let client = cluster.server.client().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, node) = get_json(&client, &format!("/api/v1/nodes/{name}")).await;
        if status == 200 && node_ready(&node) && node["spec"]["podCIDR"].is_string() {
            return node;
        }
        assert!(
            Instant::now() < deadline,
            "joined node {name} not Ready in 60 s: {node}\nagent log:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn sha256_hex(data: &[u8]) -> String {
    let out = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(data)?;
            c.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_with_the_token_runs_pods_and_restarts_from_its_credentials() {
    if skip("a_node_joins_with_the_token_runs_pods_and_restarts_from_its_credentials") {
        return;
    }
    let pid = std::process::id();
    // Two nodes: the cluster range must hold two /24s.
    let cidr = format!("10.{}.{}.0/23", 150 + pid % 50, (pid / 50) % 120 * 2);
    let cluster = Cluster::start_with(&["--cluster-cidr", &cidr]).await;

    // The server wrote K3s's form of the token: K10<sha256 of its CA>::server:<secret>.
    let server_tls = cluster.data_dir().join("server").join("tls");
    let ca = std::fs::read(server_tls.join("server-ca.crt")).expect("server CA");
    let token = std::fs::read_to_string(cluster.data_dir().join("server").join("node-token"))
        .expect("node-token");
    let token = token.trim();
    let want = format!("K10{}::server:{}", sha256_hex(&ca), cluster.server.token);
    assert_eq!(token, want, "node-token");

    // Bad tokens fail fast with one line, and leave nothing behind.
    let hash = sha256_hex(&ca);
    agent_fails(
        &cluster,
        &format!("K10{hash}::server:wrong"),
        &[],
        "refused the token",
    );
    agent_fails(
        &cluster,
        &format!("K10{}::server:{}", "0".repeat(64), cluster.server.token),
        &[],
        "does not match the token",
    );
    agent_fails(&cluster, "K10nothex::server:x", &[], "invalid --token");
    // A node name the API would refuse is refused at join (400, Status).
    agent_fails(
        &cluster,
        token,
        &["--node-name=bad_name"],
        "400 BadRequest: invalid nodeName \"bad_name\"",
    );

    // The real join.
    let name = format!("joined-{}", cluster.tag);
    let mut agent = JoinedAgent::new(&cluster, &name, token);
    agent.spawn();
    let node = wait_node_ready(&cluster, &agent, &name).await;
    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["site"], "store-7", "{labels}");
    assert_eq!(labels["kubernetes.io/hostname"], name.as_str());
    assert!(
        labels
            .get("node-role.kubernetes.io/control-plane")
            .is_none(),
        "an agent is no control plane: {labels}"
    );
    let (_, first) = get_json(
        &cluster.server.client().await,
        &format!("/api/v1/nodes/{}", cluster.node),
    )
    .await;
    assert_ne!(
        node["spec"]["podCIDR"], first["spec"]["podCIDR"],
        "the two nodes share a pod range"
    );

    // A pod scheduled to the joined node runs on its containerd; logs and
    // exec reach it through the API server (its serving certificate came
    // from the server's CA at join).
    cluster.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: on-joined}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {name}}}
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: "{BUSYBOX}"
    command: ["sh", "-c", "echo hello from $(hostname); sleep 3600"]
"#
    ));
    let pod = cluster
        .wait_pod(
            "default",
            "on-joined",
            Duration::from_secs(60),
            "Running",
            |p| p["status"]["phase"] == "Running",
        )
        .await;
    assert_eq!(pod["spec"]["nodeName"], name.as_str());
    let container_id = container_status(&pod, "app")["containerID"]
        .as_str()
        .expect("containerID")
        .to_string();
    let agent_cri = kedge_kubelet::CriClient::connect_when_ready(
        &kedge_kubelet::ContainerdPaths::new(&agent.data_dir()).socket,
        Duration::from_secs(10),
    )
    .await
    .expect("the joined node's containerd");
    let id = container_id.trim_start_matches("containerd://");
    let status = agent_cri
        .container_status(id, false)
        .await
        .expect("the container is on the joined node's containerd");
    assert!(
        status.status.is_some(),
        "container {id} not in the joined node's CRI"
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = cluster.kubectl(33, &["logs", "on-joined"]);
        if String::from_utf8_lossy(&out.stdout).contains("hello from on-joined") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "kubectl logs: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = cluster.kubectl(33, &["exec", "on-joined", "--", "cat", "/etc/hostname"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "on-joined",
        "kubectl exec: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A restart reuses the stored credentials (no new certificate) and keeps
    // the pod's container.
    let tls = agent.data_dir().join("agent").join("tls");
    let cert_before = std::fs::read(tls.join("client-kubelet.crt")).expect("client cert");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(tls.join("client-kubelet.key"))
            .expect("key")
            .permissions(),
    );
    assert_eq!(mode & 0o077, 0, "the node's key is readable by others");
    agent.stop();
    agent.spawn();
    tokio::time::sleep(Duration::from_secs(1)).await;
    wait_node_ready(&cluster, &agent, &name).await;
    assert!(
        agent.log().contains("reusing this node's credentials"),
        "{}",
        agent.log()
    );
    assert_eq!(
        std::fs::read(tls.join("client-kubelet.crt")).expect("client cert"),
        cert_before,
        "the restart asked for new credentials"
    );
    let pod = cluster
        .wait_pod(
            "default",
            "on-joined",
            Duration::from_secs(30),
            "Ready again",
            common::cluster::is_ready,
        )
        .await;
    let c = container_status(&pod, "app");
    assert_eq!(c["containerID"], container_id.as_str(), "{pod}");
    assert_eq!(c["restartCount"], 0, "{pod}");

    // `kedge certificate rotate` refuses while the agent runs; after a
    // rotation the agent asks the server for new credentials and rejoins.
    let agent_data = agent.data_dir();
    let rotate = || {
        Command::new(env!("CARGO_BIN_EXE_kedge"))
            .args(["certificate", "rotate", "--data-dir"])
            .arg(&agent_data)
            .output()
            .expect("run kedge certificate rotate")
    };
    let out = rotate();
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("kedge agent is running"),
        "rotate beside a running agent: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    agent.stop();
    let out = rotate();
    assert!(
        out.status.success(),
        "rotate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!tls.join("client-kubelet.crt").exists());
    agent.spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    while agent
        .log()
        .matches("received this node's credentials")
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "no rejoin: {}", agent.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_node_ready(&cluster, &agent, &name).await;
    let cert_after = std::fs::read(tls.join("client-kubelet.crt")).expect("new client cert");
    assert_ne!(cert_after, cert_before, "no new certificate after rotate");
    assert_eq!(
        agent
            .log()
            .matches("received this node's credentials")
            .count(),
        2,
        "{}",
        agent.log()
    );

    // Both nodes are listed.
    let out = cluster.kubectl(27, &["get", "nodes", "-o", "name"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains(&format!("node/{name}"))
            && listed.contains(&format!("node/{}", cluster.node)),
        "{listed}"
    );
    let out = cluster.kubectl(33, &["delete", "pod", "on-joined", "--wait=false"]);
    assert!(out.status.success());
    cluster
        .wait_gone("default", "on-joined", Duration::from_secs(30))
        .await;
}
