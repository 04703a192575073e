//! One `kedge server --disable-agent` child process under test: start,
//! readiness, /proc figures, clients, stop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::probe::ReadyzProbe;

const TOKEN: &str = "kedge-bench-token";

pub struct KedgeServer {
    child: Option<Child>,
    /// Holds `data/`, `kubeconfig.yaml` and `server.log`.
    pub dir: PathBuf,
    pub port: u16,
    spawned: Instant,
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

impl KedgeServer {
    /// Start `bin server` on a free port with its state under `dir` (created
    /// if missing; reused as is if it holds an earlier server's state).
    pub fn spawn(bin: &Path, dir: &Path) -> Result<KedgeServer> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let port = free_port()?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))
            .with_context(|| format!("opening {}/server.log", dir.display()))?;
        let mut cmd = Command::new(bin);
        cmd.arg("server")
            .args(["--config", "/dev/null"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--https-listen-port", &port.to_string()])
            .args(["--bind-address", "127.0.0.1"])
            .arg("--write-kubeconfig")
            .arg(dir.join("kubeconfig.yaml"))
            .args(["--token", TOKEN])
            .arg("--disable-agent")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let spawned = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(KedgeServer {
            child: Some(child),
            dir: dir.to_path_buf(),
            port,
            spawned,
        })
    }

    pub fn pid(&self) -> Result<u32> {
        match &self.child {
            Some(c) => Ok(c.id()),
            None => bail!("the server was stopped"),
        }
    }

    /// Poll `/readyz` every `interval` until it answers 200; the time from
    /// spawn to that answer.
    pub async fn wait_ready(
        &mut self,
        probe: &ReadyzProbe,
        interval: Duration,
    ) -> Result<Duration> {
        let deadline = self.spawned + Duration::from_secs(30);
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    bail!(
                        "kedge exited with {status} before /readyz: {}",
                        self.log_tail()
                    );
                }
            }
            if let Ok(200) = probe.status(self.port).await {
                return Ok(self.spawned.elapsed());
            }
            if Instant::now() > deadline {
                bail!("kedge not ready within 30 s: {}", self.log_tail());
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// If the process has exited: its status and the end of its log.
    pub fn exited(&mut self) -> Option<String> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        Some(format!("kedge exited with {status}: {}", self.log_tail()))
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let start = log.len().saturating_sub(2000);
        log.get(start..).unwrap_or_default().to_string()
    }

    /// A `kB` field of /proc/PID/status (`VmRSS`, `VmHWM`), in bytes.
    pub fn status_bytes(&self, field: &str) -> Result<u64> {
        let path = format!("/proc/{}/status", self.pid()?);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        proc_field(&text, field)
            .map(|kb| kb * 1024)
            .with_context(|| format!("no {field} in {path}"))
    }

    /// `write_bytes` of /proc/PID/io: bytes this process sent (or will
    /// send, counted when the page is dirtied) to the storage layer.
    pub fn write_bytes(&self) -> Result<u64> {
        let path = format!("/proc/{}/io", self.pid()?);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        proc_field(&text, "write_bytes").with_context(|| format!("no write_bytes in {path}"))
    }

    /// An admin client (its own connection pool) from the written kubeconfig.
    pub async fn client(&self) -> Result<kube::Client> {
        let path = self.dir.join("kubeconfig.yaml");
        let kc =
            Kubeconfig::read_from(&path).with_context(|| format!("reading {}", path.display()))?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .context("kubeconfig to client config")?;
        kube::Client::try_from(cfg).context("building a kube client")
    }

    /// `n` admin clients, each with its own connection.
    pub async fn clients(&self, n: usize) -> Result<Vec<kube::Client>> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.client().await?);
        }
        Ok(out)
    }

    /// SIGTERM, then SIGKILL if it has not exited within 10 s.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let Ok(pid) = libc::pid_t::try_from(child.id()) else {
            child.kill()?;
            child.wait()?;
            return Ok(());
        };
        // SAFETY: kill(2) takes plain integers and touches no memory of
        // ours; `pid` is our own child, not yet reaped (we hold its
        // `Child`), so the id cannot have been reused by another process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill()?;
        child.wait()?;
        bail!("kedge did not stop within 10 s of SIGTERM; killed it")
    }
}

impl Drop for KedgeServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The number after `field:` in a /proc file (`VmRSS:   1234 kB`).
fn proc_field(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k.trim() != field {
            return None;
        }
        v.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fields() {
        let status = "Name:\tkedge\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(proc_field(status, "VmRSS"), Some(10240));
        assert_eq!(proc_field(status, "VmHWM"), Some(20480));
        assert_eq!(proc_field(status, "VmSwap"), None);
        let io = "rchar: 1\nwrite_bytes: 4096\ncancelled_write_bytes: 0\n";
        assert_eq!(proc_field(io, "write_bytes"), Some(4096));
    }
}
