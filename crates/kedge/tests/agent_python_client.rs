//! The official Python client (`kubernetes` on PyPI, installed into the
//! repo's `.venv` by scripts/setup.sh) runs exec and port-forward against a
//! pod on a real kedge node: `kubernetes.stream.stream` (non-interactive and
//! interactive, the exit code from the error channel, a TTY resized through
//! channel 4) and `kubernetes.stream.portforward` to busybox httpd in the pod
//! and to a closed port. The script is tests/python/stream_client.py; it
//! prints what it saw as JSON.
//!
//! The client speaks the WebSocket protocols older than kubectl's:
//! `v4.channel.k8s.io` for exec and the kubelet's WebSocket port-forward
//! (two channels per port, the port number first), with the ports in the
//! `ports` query parameter. The path is the real one: the API server over
//! HTTPS, `nodeproxy`, the agent's API, containerd's streaming server.
//!
//! (A TTY exec without stdin was seen to lose its output when the command
//! exits at once: the error channel's Success arrives, stdout never does,
//! and the agent only splices bytes for v4. kubectl never asks for a TTY
//! without stdin, so the TTY here has stdin.)
//!
//! Needs root, containerd, runc and the venv; prints a loud SKIP otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::cluster::{is_ready, skip, tail, Cluster};
use serde_json::Value;

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: pyclient, namespace: default}
spec:
  nodeName: NODE
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: kedge.local/busybox:1.36
    command: ["sh", "-c", "mkdir -p /www; echo page-for-python > /www/index.html; exec httpd -f -p 8080 -h /www"]
"#;

/// The venv's Python, if it has the `kubernetes` package.
fn python() -> Result<PathBuf, String> {
    let python = kedge_kubelet::testing::repo_root()
        .join(".venv")
        .join("bin")
        .join("python");
    let out = std::process::Command::new(&python)
        .args(["-c", "import kubernetes"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} cannot import kubernetes: {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(python)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_exec_and_port_forward() {
    if skip("python_client_exec_and_port_forward") {
        return;
    }
    let python = match python() {
        Ok(p) => p,
        Err(reason) => {
            eprintln!(
                "\n========== SKIP python_client_exec_and_port_forward ==========\n{reason}\n\
                 scripts/setup.sh creates the venv; CI runs this test.\n\
                 ==============================================================\n"
            );
            return;
        }
    };
    let c = Cluster::start().await;
    c.apply(&POD.replace("NODE", &c.node));
    c.wait_pod(
        "default",
        "pyclient",
        Duration::from_secs(60),
        "Running and Ready",
        |p| p["status"]["phase"] == "Running" && is_ready(p),
    )
    .await;

    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("python")
        .join("stream_client.py");
    let child = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(c.server.kubeconfig())
        .args(["default", "pyclient"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start python");
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the Python client hung\n{}", tail(&c.server.log(), 60)))
        .expect("python output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python client failed ({}): {stderr}\nserver log:\n{}",
        out.status,
        tail(&c.server.log(), 60)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });

    // Non-interactive: both streams collected (their order between two pipes
    // is not fixed).
    let output = seen["exec_output"].as_str().unwrap_or_default();
    let mut lines: Vec<&str> = output.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["to-stderr", "to-stdout"], "exec output {output:?}");

    // Interactive: stdin reached the command, its streams came back apart,
    // the exit code came through the error channel, and the server closed.
    assert_eq!(seen["interactive_stdout"], "got-ping\n", "{seen:#}");
    assert_eq!(seen["interactive_stderr"], "oops\n", "{seen:#}");
    assert_eq!(seen["interactive_returncode"], 7, "{seen:#}");
    assert_eq!(seen["interactive_open_at_end"], false, "{seen:#}");
    assert_eq!(seen["true_returncode"], 0, "{seen:#}");

    // A TTY: the resize reached it, the line discipline shows (CR LF).
    let tty = seen["tty_output"].as_str().unwrap_or_default();
    assert!(tty.contains("45 123\r\n"), "tty output {tty:?}");
    assert_eq!(seen["tty_returncode"], 0, "{seen:#}");

    // Port-forward, two connections.
    let forwards = seen["portforward"].as_array().cloned().unwrap_or_default();
    assert_eq!(forwards.len(), 2, "{seen:#}");
    for (i, forward) in forwards.iter().enumerate() {
        let response = forward["response"].as_str().unwrap_or_default();
        assert!(
            response.starts_with("HTTP/1.") && response.contains(" 200 "),
            "port-forward {i}: {response:?}"
        );
        assert!(
            response.ends_with("\r\n\r\npage-for-python\n"),
            "port-forward {i}: body of {response:?}"
        );
        assert!(
            forward["error"].is_null(),
            "port-forward {i}: error channel {}",
            forward["error"]
        );
    }
    // Nothing listens on 9999: the stream ends and its error channel says why.
    assert_eq!(seen["closed_port_data"], "", "{seen:#}");
    let error = seen["closed_port_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("error forwarding port 9999") && error.contains("connection refused"),
        "error channel of port 9999: {error:?}"
    );
}
