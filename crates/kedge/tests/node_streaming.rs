//! `kubectl logs`, `exec` and `port-forward` end to end: kubectl (1.27: SPDY;
//! 1.33: WebSocket with its SPDY fallback) → the real API server over HTTPS →
//! `nodeproxy` (authorisation, Node lookup, TLS with the kubelet client
//! certificate) → the node agent's `AgentServer` on loopback → CRI → a private
//! containerd's streaming server → a real busybox container.
//!
//! The pod worker is not involved: the test runs the sandbox (host network, so
//! no CNI is needed) and container through CRI itself, hands the agent an
//! in-memory `PodDirectory`, and creates the Node and Pod objects through the
//! API. Needs root, containerd, runc and kubectl 1.27/1.33; prints a loud SKIP
//! otherwise.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStatus, Pod, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kedge_kubelet::cri::api::{ContainerConfig, ContainerMetadata, NamespaceMode};
use kedge_kubelet::cri::image_spec;
use kedge_kubelet::server::{AgentServer, PodDirectory, PodEntry};
use kedge_kubelet::test_ensure as ensure;
use kedge_kubelet::testing::{RealRuntimeEnv, TestError};
use kedge_kubelet::RuntimeService;

type TestResult<T = ()> = Result<T, TestError>;

const NODE: &str = "kedge-stream-node";
const BUSYBOX: &str = "kedge.local/busybox:1.36";
const KUBECTLS: [&str; 2] = ["1.27", "1.33"];

fn kubectl_path(minor: &str) -> PathBuf {
    PathBuf::from(format!("/usr/lib/google-cloud-sdk/bin/kubectl.{minor}"))
}

/// A kubectl this test needs that is not installed.
fn missing_kubectl() -> Option<String> {
    KUBECTLS
        .iter()
        .find(|m| !kubectl_path(m).exists())
        .map(|m| format!("kubectl {m} is not at {}", kubectl_path(m).display()))
}

struct OnePod(PodEntry);

impl PodDirectory for OnePod {
    fn pod(&self, namespace: &str, name: &str) -> Option<PodEntry> {
        let meta = &self.0.pod.metadata;
        (meta.namespace.as_deref() == Some(namespace) && meta.name.as_deref() == Some(name))
            .then(|| self.0.clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_exec_port_forward_through_the_api_server() {
    if let Some(reason) = missing_kubectl() {
        eprintln!(
            "\n========== SKIP kubectl_logs_exec_port_forward_through_the_api_server ==========\n\
             {reason}\nThis test runs in CI as root after scripts/setup.sh.\n\
             ================================================================================\n"
        );
        return;
    }
    RealRuntimeEnv::run(
        "kubectl_logs_exec_port_forward_through_the_api_server",
        "node-stream",
        Duration::from_secs(120),
        |env| Box::pin(run(env)),
    )
    .await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

async fn run(env: &mut RealRuntimeEnv) -> TestResult {
    let t0 = Instant::now();
    let step = |s: &str| eprintln!("node_streaming: {:>6} ms  {s}", t0.elapsed().as_millis());
    let images = env.build_test_images().await?;
    let config = env.containerd_config();
    env.start_containerd(&config).await?;
    let cri = env.connect(&config).await?;
    RealRuntimeEnv::import_test_images(&cri, &images).await?;
    step("containerd ready, images imported");

    // The pod: host network (no CNI), a container that logs and serves HTTP.
    let http_port = free_port();
    let uid = format!("uid-{}", std::process::id());
    let sandbox_config = env.sandbox_config("web", "default", &uid, NamespaceMode::Node)?;
    let log_dir = PathBuf::from(&sandbox_config.log_directory);
    std::fs::create_dir_all(log_dir.join("app"))?;
    let sandbox_id = cri.run_pod_sandbox(sandbox_config.clone(), "").await?;
    let script = format!(
        "echo line-1; sleep 0.3; echo line-2 >&2; mkdir -p /tmp/www; echo hello-httpd > /tmp/www/index.html; \
         httpd -f -p 127.0.0.1:{http_port} -h /tmp/www & sleep 3600"
    );
    let container_id = cri
        .create_container(
            &sandbox_id,
            ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: "app".into(),
                    attempt: 0,
                }),
                image: Some(image_spec(BUSYBOX)),
                command: vec!["sh".into(), "-c".into(), script],
                log_path: "app/0.log".into(),
                ..ContainerConfig::default()
            },
            sandbox_config,
        )
        .await?;
    cri.start_container(&container_id).await?;
    step("container started");

    // PKI, the API server over HTTPS, the agent on loopback.
    let tls_dir = env.dir().join("server").join("tls");
    let pki = kedge_pki::ensure_pki(&tls_dir, &[])?;
    let kubelet_client = kedge_pki::ensure_kubelet_client_cert(&tls_dir)?;
    let serving = kedge_pki::ensure_kubelet_serving_cert(
        &env.dir().join("agent").join("tls"),
        &tls_dir,
        NODE,
        &["127.0.0.1".parse()?],
    )?;
    let agent_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let agent_port = agent_listener.local_addr()?.port();
    let pod = Arc::new(Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some(uid.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: "app".into(),
                container_id: Some(format!("containerd://{container_id}")),
                state: Some(ContainerState {
                    running: Some(ContainerStateRunning::default()),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        }),
    });
    let directory = Arc::new(OnePod(PodEntry {
        pod,
        sandbox_id: Some(sandbox_id.clone()),
    }));
    let agent = Arc::new(
        AgentServer::new(Arc::new(cri.clone()), directory)
            .with_translator(Arc::new(kedge_kubelet::streaming::Translator)),
    );
    let agent_tls = Arc::new(kedge_pki::kubelet_server_tls_config(&serving)?);
    tokio::spawn(agent.serve(agent_listener, agent_tls, std::future::pending()));

    let store = Arc::new(kedge_store::SqliteStore::open(
        &env.dir().join("state.db"),
        kedge_store::Durability::Full,
        kedge_store::DEFAULT_WINDOW,
    )?);
    let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api_port = api_listener.local_addr()?.port();
    let api = kedge_apiserver::ApiServer::new(
        store,
        kedge_apiserver::Config {
            service_cidr: "10.43.0.0/16".parse()?,
            cluster_cidr: "10.42.0.0/16".parse()?,
            token: None,
            version: kedge_apiserver::VersionInfo {
                git_version: "v1.33.0+kedge.test".into(),
                git_commit: "test".into(),
                build_date: "test".into(),
            },
            advertise_address: "127.0.0.1".into(),
            port: api_port,
            bookmark_interval: Duration::from_secs(60),
            watch_timeout: Duration::from_secs(1800),
            root_ca_pem: pki.server_ca_cert_pem.clone(),
            service_account_key: None,
            default_not_ready_toleration_seconds: 300,
            default_unreachable_toleration_seconds: 300,
        },
    );
    api.set_kubelet_client_tls(Arc::new(kedge_pki::kubelet_client_tls_config(
        &kubelet_client,
    )?));
    tokio::spawn(api.clone().serve_tls(
        api_listener,
        Arc::new(kedge_pki::server_tls_config(&pki)?),
        std::future::pending(),
    ));
    api.bootstrap().await?;
    let kubeconfig = env.dir().join("kubeconfig");
    kedge_pki::write_kubeconfig(
        &kubeconfig,
        0o600,
        &format!("https://127.0.0.1:{api_port}"),
        &pki,
    )?;
    step("API server and agent serving");

    let k = |minor: &'static str| {
        let kubeconfig = kubeconfig.clone();
        move |args: &[&str], stdin: Option<&str>| -> TestResult<(i32, String, String)> {
            let mut child = Command::new(kubectl_path(minor))
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?;
            if let Some(mut input) = child.stdin.take() {
                input.write_all(stdin.unwrap_or("").as_bytes())?;
            }
            let out = child.wait_with_output()?;
            Ok((
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ))
        }
    };
    let k127 = k("1.27");
    let node = serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE},
    });
    let pod_obj = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": BUSYBOX}]},
    });
    for obj in [&node, &pod_obj] {
        let (code, out, err) = k127(&["create", "-f", "-"], Some(&obj.to_string()))?;
        ensure!(code == 0, "create: {out}{err}");
    }
    let status = serde_json::json!({"status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": NODE}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": agent_port}},
    }});
    let (code, out, err) = k127(
        &[
            "patch",
            "node",
            NODE,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ],
        None,
    )?;
    ensure!(code == 0, "patch node status: {out}{err}");
    // What the pod worker would report (kubectl port-forward checks the phase).
    let (code, out, err) = k127(
        &[
            "patch",
            "pod",
            "web",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Running"}}"#,
        ],
        None,
    )?;
    ensure!(code == 0, "patch pod status: {out}{err}");

    // The container has logged and httpd listens.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(log_dir.join("app/0.log")).unwrap_or_default();
        if text.contains("line-2") && http_get(http_port).is_ok_and(|b| b.contains("hello-httpd")) {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "container not ready; log: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    step("container logged and serves HTTP");

    for minor in KUBECTLS {
        let kc = k(minor);
        let (code, out, err) = kc(&["logs", "web"], None)?;
        // (The container sleeps between the two lines: stdout and stderr
        // reach the log file through separate pipes.)
        ensure!(
            code == 0 && out == "line-1\nline-2\n",
            "{minor} logs: {code} {out:?} {err}"
        );
        let (code, out, err) = kc(&["logs", "web", "--tail=1", "--timestamps"], None)?;
        ensure!(
            code == 0
                && out.ends_with(" line-2\n")
                && out.lines().count() == 1
                && out.contains('T'),
            "{minor} logs --tail=1 --timestamps: {out:?} {err}"
        );
        let (code, out, err) = kc(&["logs", "web", "--limit-bytes=4"], None)?;
        ensure!(
            code == 0 && out == "line",
            "{minor} logs --limit-bytes: {out:?} {err}"
        );
        let (code, _, err) = kc(&["logs", "web", "-c", "nope"], None)?;
        ensure!(
            code != 0 && err.contains("container nope is not valid for pod web"),
            "{minor} logs -c nope: {err}"
        );
        let (code, _, err) = kc(&["logs", "web", "--previous"], None)?;
        ensure!(
            code != 0 && err.contains("previous terminated container") && err.contains("not found"),
            "{minor} logs --previous: {err}"
        );
        step(&format!("kubectl {minor} logs"));

        let (code, out, err) = kc(
            &[
                "exec",
                "web",
                "--",
                "sh",
                "-c",
                "echo to-out; echo to-err >&2; exit 3",
            ],
            None,
        )?;
        ensure!(
            code == 3 && out == "to-out\n" && err.contains("to-err"),
            "{minor} exec: code {code} out {out:?} err {err:?}"
        );
        let (code, out, err) = kc(&["exec", "-i", "web", "--", "cat"], Some("piped-input\n"))?;
        ensure!(
            code == 0 && out == "piped-input\n",
            "{minor} exec -i: {code} {out:?} {err}"
        );
        step(&format!("kubectl {minor} exec"));

        let local = free_port();
        let mut pf = Command::new(kubectl_path(minor))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["port-forward", "pod/web", &format!("{local}:{http_port}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(15);
        let body = loop {
            match http_get(local) {
                Ok(b) if b.contains("hello-httpd") => break Ok(b),
                other if Instant::now() > deadline => break Err(format!("{other:?}")),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        // Twice: each connection is a new stream pair.
        let again = http_get(local);
        let _ = pf.kill();
        let out = pf.wait_with_output()?;
        let body = body.map_err(|e| {
            format!(
                "{minor} port-forward: {e}; stderr {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        ensure!(
            body.contains("hello-httpd"),
            "{minor} port-forward body {body:?}"
        );
        ensure!(
            again.is_ok_and(|b| b.contains("hello-httpd")),
            "{minor} second port-forward request"
        );
        step(&format!("kubectl {minor} port-forward"));
    }

    // An unreachable node: upstream's dial error.
    let status = serde_json::json!({"status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": free_port()}}}});
    let (code, _, _) = k127(
        &[
            "patch",
            "node",
            NODE,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ],
        None,
    )?;
    ensure!(code == 0, "patch node port");
    let (code, _, err) = k127(&["exec", "web", "--", "true"], None)?;
    ensure!(
        code != 0 && err.contains("error dialing backend"),
        "exec to a dead node: {err}"
    );
    let (code, _, err) = k127(&["logs", "web"], None)?;
    ensure!(
        code != 0 && err.contains("connection refused"),
        "logs from a dead node: {err}"
    );

    // Unscheduled pods.
    let lonely = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "lonely", "namespace": "default"},
        "spec": {"containers": [{"name": "a", "image": BUSYBOX}, {"name": "b", "image": BUSYBOX}]},
    });
    let (code, out, err) = k127(&["create", "-f", "-"], Some(&lonely.to_string()))?;
    ensure!(code == 0, "create lonely: {out}{err}");
    let (code, _, err) = k127(&["exec", "lonely", "-c", "a", "--", "true"], None)?;
    ensure!(
        code != 0 && err.contains("pod lonely does not have a host assigned"),
        "{err}"
    );
    step("error paths");
    Ok(())
}

/// `GET /` over plain HTTP/1.0 on loopback; the body.
fn http_get(port: u16) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}
