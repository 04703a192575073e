//! systemd's readiness protocol for `Type=notify` units: one datagram
//! (`READY=1`) to the unix socket named by `$NOTIFY_SOCKET`.
//!
//! kedge sends it once the API serves and, when the server runs a node agent,
//! once its Node reports `Ready=True` (read through the API, as any client
//! would). The variable is taken out of the environment at start, so the
//! containerd child (which would send its own `READY=1`) never sees it.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

static SOCKET: std::sync::OnceLock<Option<std::ffi::OsString>> = std::sync::OnceLock::new();

/// Take `$NOTIFY_SOCKET` out of the environment (as `sd_notify` does with
/// `unset_environment`), so that the containerd child, which speaks the same
/// protocol, cannot tell systemd that kedge is ready. Call it first thing in
/// `main`, while the process has one thread.
pub fn take_socket_from_env() {
    let addr = std::env::var_os("NOTIFY_SOCKET").filter(|a| !a.is_empty());
    if addr.is_some() {
        // Sound here: called before any other thread exists (edition 2021's
        // safe remove_var; no concurrent getenv).
        std::env::remove_var("NOTIFY_SOCKET");
    }
    let _ = SOCKET.set(addr);
}

fn socket() -> Option<&'static std::ffi::OsString> {
    SOCKET.get().and_then(Option::as_ref)
}

/// Send `state` to systemd's socket; `Ok(false)` when not run by systemd.
pub fn notify(state: &str) -> io::Result<bool> {
    match socket() {
        Some(addr) => send(addr, state).map(|()| true),
        None => Ok(false),
    }
}

/// One datagram to a socket path, or to an abstract socket (`@name`).
fn send(addr: &OsStr, state: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let bytes = addr.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let a = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &a)?;
    } else {
        sock.send_to(state.as_bytes(), Path::new(addr))?;
    }
    Ok(())
}

/// Tell systemd kedge is ready: now when `node` is `None` (no agent), else
/// once that Node's `Ready` condition is `True`. Does nothing outside systemd.
pub fn spawn_ready(client: kube::Client, node: Option<String>) {
    if socket().is_none() {
        return;
    }
    tokio::spawn(async move {
        if let Some(node) = &node {
            let _ = notify(&format!(
                "STATUS=API ready; waiting for node {node} to be Ready"
            ));
            while !node_ready(&client, node).await {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        match notify("READY=1\nSTATUS=kedge is ready") {
            Ok(_) => tracing::info!("told systemd kedge is ready"),
            Err(e) => tracing::warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)"),
        }
    });
}

async fn node_ready(client: &kube::Client, node: &str) -> bool {
    let req = match http::Request::get(format!("/api/v1/nodes/{node}")).body(Vec::new()) {
        Ok(r) => r,
        Err(_) => return false,
    };
    let Ok(v) = client.request::<serde_json::Value>(req).await else {
        return false;
    };
    v["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_one_datagram_to_a_path() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).expect("bind");
        send(path.as_os_str(), "READY=1").expect("send");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("kedge-sdnotify-test-{}", std::process::id());
        let a = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let listener = UnixDatagram::bind_addr(&a).expect("bind");
        send(OsStr::new(&format!("@{name}")), "READY=1").expect("send");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn a_missing_socket_is_an_error() {
        assert!(send(OsStr::new("/nonexistent/notify.sock"), "READY=1").is_err());
    }
}
