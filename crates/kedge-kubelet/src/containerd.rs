//! containerd as a supervised child, as K3s runs it.
//!
//! [`ContainerdConfig`] writes containerd's `config.toml` (version 2) with
//! everything under `<data-dir>/agent`: root, state, socket, the runc state
//! root, the CNI configuration directory. [`ContainerdSupervisor`] starts
//! `containerd --config …` in its own process group, waits for its socket,
//! restarts it with back-off when it dies, and on shutdown sends SIGTERM to
//! containerd alone. Containers run under their shims (`containerd-shim-runc-v2`,
//! which containerd starts in process groups of their own), so they survive
//! both containerd's and kedge's restarts; a new containerd on the same root
//! and state reconnects to them.
//!
//! Layout under `<data-dir>/agent`:
//!
//! ```text
//! etc/containerd/config.toml     written by ContainerdConfig::write
//! etc/cni/net.d/                 CNI conf_dir (crate::cni writes here)
//! containerd/root/               containerd's root (content, snapshots, metadata)
//! containerd/state/              containerd's state (tasks, sandboxes, netns pins)
//! containerd/state/runc/         runc's state root (not the global /run/containerd/runc)
//! containerd/containerd.sock     the gRPC (and CRI) socket
//! containerd/containerd.log      containerd's stdout and stderr
//! containerd/containerd.pid      the running child's pid
//! ```

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::host::HostFacts;

/// The pause image kedge builds and imports itself (see `images/pause`).
pub const DEFAULT_SANDBOX_IMAGE: &str = "kedge.local/pause:3.10";
/// Where Debian's `containernetworking-plugins` installs the CNI plugins.
pub const DEFAULT_CNI_BIN_DIR: &str = "/usr/lib/cni";
/// The containerd namespace the CRI plugin uses.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// A unix socket path must fit `sockaddr_un.sun_path` (108 bytes with the NUL);
/// containerd also opens `<socket>.ttrpc` next to it.
const MAX_SOCKET_PATH: usize = 107 - ".ttrpc".len();

/// Errors of containerd configuration and supervision.
#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    #[error("cannot create directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    WriteFile { path: PathBuf, source: io::Error },
    #[error("path {path} is not valid UTF-8, which containerd's TOML configuration needs")]
    NonUtf8Path { path: PathBuf },
    #[error("socket path {path} is {len} bytes long; unix sockets allow at most {max}")]
    SocketPathTooLong {
        path: PathBuf,
        len: usize,
        max: usize,
    },
    #[error("cannot start {binary}: {source}")]
    Spawn { binary: PathBuf, source: io::Error },
    #[error("containerd exited ({status}) before its socket {socket} was ready; see {log}")]
    ExitedEarly {
        status: ExitStatus,
        socket: PathBuf,
        log: PathBuf,
    },
    #[error("containerd's socket {socket} was not ready after {timeout:?}; see {log}")]
    NotReady {
        socket: PathBuf,
        timeout: Duration,
        log: PathBuf,
    },
    #[error("cannot wait for containerd: {source}")]
    Wait { source: io::Error },
    #[error("containerd's supervisor task failed: {0}")]
    Supervisor(String),
}

pub type Result<T, E = ContainerdError> = std::result::Result<T, E>;

/// Which snapshotter containerd's CRI plugin unpacks images into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshotter {
    /// overlayfs: layers shared, no copies. Needs overlay mounts on the root's filesystem.
    Overlayfs,
    /// Plain directory copies: works on any filesystem, costs disk and time.
    Native,
}

impl Snapshotter {
    /// containerd's name for it (`overlayfs`, `native`).
    pub fn as_str(self) -> &'static str {
        match self {
            Snapshotter::Overlayfs => "overlayfs",
            Snapshotter::Native => "native",
        }
    }
}

/// Every path containerd uses, derived from the kedge data dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdPaths {
    pub config_file: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub log_file: PathBuf,
    pub pid_file: PathBuf,
    /// `io.containerd.internal.v1.opt`'s directory (default `/opt/containerd`).
    pub opt_dir: PathBuf,
    /// runc's `--root`; CRI's containers live under `<runc_root>/k8s.io`.
    pub runc_root: PathBuf,
    /// The CNI conf_dir containerd reads.
    pub cni_conf_dir: PathBuf,
}

impl ContainerdPaths {
    /// The layout under `<data_dir>/agent` (see the module docs).
    pub fn new(data_dir: &Path) -> ContainerdPaths {
        let agent = data_dir.join("agent");
        let base = agent.join("containerd");
        let state = base.join("state");
        ContainerdPaths {
            config_file: agent.join("etc").join("containerd").join("config.toml"),
            root: base.join("root"),
            runc_root: state.join("runc"),
            state,
            socket: base.join("containerd.sock"),
            log_file: base.join("containerd.log"),
            pid_file: base.join("containerd.pid"),
            opt_dir: base.join("opt"),
            cni_conf_dir: agent.join("etc").join("cni").join("net.d"),
        }
    }
}

/// containerd's configuration as kedge writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdConfig {
    pub paths: ContainerdPaths,
    /// The image every pod sandbox runs; imported locally, never pulled.
    pub sandbox_image: String,
    /// Clamp pod OOM scores to containerd's own (see [`HostFacts`]).
    pub restrict_oom_score_adj: bool,
    pub snapshotter: Snapshotter,
    pub cni_bin_dir: PathBuf,
    /// Address of the CRI streaming server (exec, attach, port-forward).
    pub stream_server_address: String,
    /// Its port; 0 lets the kernel choose, so several containerds coexist.
    pub stream_server_port: u16,
    /// containerd's `[debug] level` (`info` when `None`).
    pub log_level: Option<String>,
}

impl ContainerdConfig {
    /// A configuration with safe defaults and no probing: OOM scores clamped,
    /// overlayfs, CNI plugins in `/usr/lib/cni`, streaming on 127.0.0.1.
    pub fn new(data_dir: &Path) -> ContainerdConfig {
        ContainerdConfig {
            paths: ContainerdPaths::new(data_dir),
            sandbox_image: DEFAULT_SANDBOX_IMAGE.to_owned(),
            restrict_oom_score_adj: true,
            snapshotter: Snapshotter::Overlayfs,
            cni_bin_dir: PathBuf::from(DEFAULT_CNI_BIN_DIR),
            stream_server_address: "127.0.0.1".to_owned(),
            stream_server_port: 0,
            log_level: None,
        }
    }

    /// [`ContainerdConfig::new`] adjusted to what [`HostFacts`] found.
    pub fn for_host(data_dir: &Path, facts: &HostFacts) -> ContainerdConfig {
        let mut config = ContainerdConfig::new(data_dir);
        config.restrict_oom_score_adj = facts.restrict_oom_score_adj();
        config.snapshotter = if facts.overlay_usable {
            Snapshotter::Overlayfs
        } else {
            Snapshotter::Native
        };
        config
    }

    /// Probe this host ([`HostFacts::probe`] on containerd's future root) and
    /// build the configuration from the answers.
    pub fn detect(data_dir: &Path) -> ContainerdConfig {
        let paths = ContainerdPaths::new(data_dir);
        let facts = HostFacts::probe(&paths.root);
        ContainerdConfig::for_host(data_dir, &facts)
    }

    /// containerd's `config.toml`, version 2.
    pub fn render(&self) -> Result<String> {
        let p = &self.paths;
        let root = toml_path(&p.root)?;
        let state = toml_path(&p.state)?;
        let socket = toml_path(&p.socket)?;
        let opt = toml_path(&p.opt_dir)?;
        let runc_root = toml_path(&p.runc_root)?;
        let cni_bin = toml_path(&self.cni_bin_dir)?;
        let cni_conf = toml_path(&p.cni_conf_dir)?;
        let level = toml_str(self.log_level.as_deref().unwrap_or("info"));
        let cri = "plugins.\"io.containerd.grpc.v1.cri\"";

        let mut out = String::new();
        // `write!` into a String cannot fail; the results are ignored on purpose.
        let _ = writeln!(out, "# Written by kedge; rewritten at every start.");
        let _ = writeln!(out, "version = 2");
        let _ = writeln!(out, "root = {root}");
        let _ = writeln!(out, "state = {state}");
        let _ = writeln!(out);
        let _ = writeln!(out, "[grpc]\n  address = {socket}");
        let _ = writeln!(out);
        let _ = writeln!(out, "[debug]\n  level = {level}");
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "[plugins.\"io.containerd.internal.v1.opt\"]\n  path = {opt}"
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "[{cri}]");
        let _ = writeln!(out, "  sandbox_image = {}", toml_str(&self.sandbox_image));
        let _ = writeln!(
            out,
            "  restrict_oom_score_adj = {}",
            self.restrict_oom_score_adj
        );
        let _ = writeln!(
            out,
            "  stream_server_address = {}",
            toml_str(&self.stream_server_address)
        );
        let _ = writeln!(
            out,
            "  stream_server_port = {}",
            toml_str(&self.stream_server_port.to_string())
        );
        let _ = writeln!(out, "  enable_selinux = false");
        // Network namespaces pinned under our state dir, not /var/run/netns.
        let _ = writeln!(out, "  netns_mounts_under_state_dir = true");
        let _ = writeln!(out);
        let _ = writeln!(out, "[{cri}.containerd]");
        let _ = writeln!(
            out,
            "  snapshotter = {}",
            toml_str(self.snapshotter.as_str())
        );
        let _ = writeln!(out, "  default_runtime_name = \"runc\"");
        let _ = writeln!(out);
        let _ = writeln!(out, "[{cri}.containerd.runtimes.runc]");
        let _ = writeln!(out, "  runtime_type = \"io.containerd.runc.v2\"");
        let _ = writeln!(out);
        let _ = writeln!(out, "[{cri}.containerd.runtimes.runc.options]");
        let _ = writeln!(out, "  SystemdCgroup = false");
        let _ = writeln!(out, "  Root = {runc_root}");
        let _ = writeln!(out);
        let _ = writeln!(out, "[{cri}.cni]");
        let _ = writeln!(out, "  bin_dir = {cni_bin}");
        let _ = writeln!(out, "  conf_dir = {cni_conf}");
        let _ = writeln!(out, "  max_conf_num = 1");
        Ok(out)
    }

    /// Create every directory containerd needs and write `config.toml`
    /// atomically. Returns the config file's path.
    pub fn write(&self) -> Result<PathBuf> {
        let p = &self.paths;
        check_socket_path(&p.socket)?;
        let config_dir = p.config_file.parent().unwrap_or(Path::new("/"));
        for dir in [
            config_dir,
            &p.root,
            &p.state,
            &p.opt_dir,
            &p.runc_root,
            &p.cni_conf_dir,
            p.socket.parent().unwrap_or(Path::new("/")),
        ] {
            fs::create_dir_all(dir).map_err(|source| ContainerdError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let text = self.render()?;
        write_atomic(&p.config_file, text.as_bytes())?;
        debug!(path = %p.config_file.display(), "wrote containerd config");
        Ok(p.config_file.clone())
    }
}

fn check_socket_path(socket: &Path) -> Result<()> {
    let len = socket.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(ContainerdError::SocketPathTooLong {
            path: socket.to_owned(),
            len,
            max: MAX_SOCKET_PATH,
        });
    }
    Ok(())
}

/// Write `bytes` to `path` through a temporary file and a rename, so readers
/// (containerd, its CNI watcher) never see a half-written file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let wrap = |source| ContainerdError::WriteFile {
        path: path.to_owned(),
        source,
    };
    fs::write(&tmp, bytes).map_err(wrap)?;
    fs::rename(&tmp, path).map_err(|source| {
        let _ = fs::remove_file(&tmp);
        wrap(source)
    })
}

fn toml_path(path: &Path) -> Result<String> {
    path.to_str()
        .map(toml_str)
        .ok_or_else(|| ContainerdError::NonUtf8Path {
            path: path.to_owned(),
        })
}

/// A TOML basic string: quotes, backslashes and control characters escaped.
fn toml_str(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// How the supervisor runs containerd.
#[derive(Debug, Clone)]
pub struct SupervisorOptions {
    /// The containerd binary (looked up in `PATH` when relative).
    pub binary: PathBuf,
    /// How long to wait for the socket after each start.
    pub ready_timeout: Duration,
    /// How long containerd gets after SIGTERM before SIGKILL.
    pub stop_timeout: Duration,
    /// First delay before a restart; doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// A run at least this long resets the back-off.
    pub backoff_reset_after: Duration,
}

impl Default for SupervisorOptions {
    fn default() -> Self {
        SupervisorOptions {
            binary: PathBuf::from("containerd"),
            ready_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            backoff_reset_after: Duration::from_secs(60),
        }
    }
}

/// State shared between the handle and the monitor task.
#[derive(Debug, Default)]
struct Shared {
    /// The running containerd's pid, 0 while none runs.
    pid: AtomicU32,
    /// How many times containerd was restarted after dying.
    restarts: AtomicU32,
}

/// A running, supervised containerd.
///
/// Dropping the handle stops supervising but leaves containerd (and every
/// container) running, as a crashing kedge would; the next
/// [`ContainerdSupervisor::start`] on the same data dir replaces that
/// containerd. [`ContainerdSupervisor::shutdown`] stops containerd itself.
#[derive(Debug)]
pub struct ContainerdSupervisor {
    paths: ContainerdPaths,
    shared: Arc<Shared>,
    shutdown_tx: watch::Sender<bool>,
    monitor: Option<JoinHandle<()>>,
}

impl ContainerdSupervisor {
    /// Write the configuration, stop a containerd a previous kedge left
    /// running on the same data dir, start containerd and wait until its socket
    /// accepts connections. Then keep it running in a background task.
    pub async fn start(
        config: &ContainerdConfig,
        options: SupervisorOptions,
    ) -> Result<ContainerdSupervisor> {
        let paths = config.paths.clone();
        config.write()?;
        stop_leftover(&paths, options.stop_timeout).await;

        let mut child = spawn_containerd(&paths, &options.binary)?;
        if let Err(err) = wait_ready(&mut child, &paths, options.ready_timeout).await {
            terminate(&mut child, options.stop_timeout).await;
            let _ = fs::remove_file(&paths.pid_file);
            return Err(err);
        }
        let shared = Arc::new(Shared::default());
        shared.pid.store(child.id().unwrap_or(0), Ordering::SeqCst);
        info!(
            pid = child.id().unwrap_or(0),
            socket = %paths.socket.display(),
            snapshotter = config.snapshotter.as_str(),
            restrict_oom_score_adj = config.restrict_oom_score_adj,
            "containerd is ready"
        );

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let monitor = tokio::spawn(monitor(
            child,
            paths.clone(),
            options,
            Arc::clone(&shared),
            shutdown_rx,
        ));
        Ok(ContainerdSupervisor {
            paths,
            shared,
            shutdown_tx,
            monitor: Some(monitor),
        })
    }

    /// The CRI (and containerd API) socket.
    pub fn socket(&self) -> &Path {
        &self.paths.socket
    }

    pub fn paths(&self) -> &ContainerdPaths {
        &self.paths
    }

    /// The running containerd's pid; `None` while it is being restarted.
    pub fn pid(&self) -> Option<u32> {
        match self.shared.pid.load(Ordering::SeqCst) {
            0 => None,
            pid => Some(pid),
        }
    }

    /// How many times containerd died and was started again.
    pub fn restarts(&self) -> u32 {
        self.shared.restarts.load(Ordering::SeqCst)
    }

    /// Stop containerd: SIGTERM to containerd only (never its process group,
    /// never the shims), SIGKILL after the stop timeout. Containers keep
    /// running under their shims.
    pub async fn shutdown(mut self) -> Result<()> {
        let _ = self.shutdown_tx.send(true);
        let result = match self.monitor.take() {
            Some(task) => task
                .await
                .map_err(|err| ContainerdError::Supervisor(err.to_string())),
            None => Ok(()),
        };
        let _ = fs::remove_file(&self.paths.pid_file);
        result
    }
}

impl Drop for ContainerdSupervisor {
    fn drop(&mut self) {
        // Stop supervising; containerd keeps running (kill_on_drop is off).
        if let Some(task) = self.monitor.take() {
            task.abort();
        }
    }
}

fn spawn_containerd(paths: &ContainerdPaths, binary: &Path) -> Result<Child> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&paths.log_file)
        .map_err(|source| ContainerdError::WriteFile {
            path: paths.log_file.clone(),
            source,
        })?;
    let log_err = log
        .try_clone()
        .map_err(|source| ContainerdError::WriteFile {
            path: paths.log_file.clone(),
            source,
        })?;
    let mut cmd = Command::new(binary);
    cmd.arg("--config")
        .arg(&paths.config_file)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        // Its own process group: a Ctrl-C or a signal to kedge's group does
        // not reach containerd, and containerd outlives kedge.
        .process_group(0)
        .kill_on_drop(false);
    let child = cmd.spawn().map_err(|source| ContainerdError::Spawn {
        binary: binary.to_owned(),
        source,
    })?;
    let pid = child.id().unwrap_or(0);
    if let Err(err) = write_atomic(&paths.pid_file, format!("{pid}\n").as_bytes()) {
        warn!(error = %err, "cannot record containerd's pid");
    }
    debug!(pid, config = %paths.config_file.display(), "started containerd");
    Ok(child)
}

/// Wait until the socket accepts a connection, failing early when the child exits.
async fn wait_ready(child: &mut Child, paths: &ContainerdPaths, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|source| ContainerdError::Wait { source })?
        {
            return Err(ContainerdError::ExitedEarly {
                status,
                socket: paths.socket.clone(),
                log: paths.log_file.clone(),
            });
        }
        if tokio::net::UnixStream::connect(&paths.socket).await.is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ContainerdError::NotReady {
                socket: paths.socket.clone(),
                timeout,
                log: paths.log_file.clone(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGTERM to the child alone, SIGKILL after `timeout`, then reap it.
async fn terminate(child: &mut Child, timeout: Duration) {
    let Some(pid) = child.id() else {
        return; // already reaped
    };
    send_signal(pid, libc::SIGTERM);
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => info!(pid, %status, "containerd stopped"),
        Ok(Err(err)) => warn!(pid, error = %err, "cannot wait for containerd"),
        Err(_) => {
            warn!(pid, ?timeout, "containerd ignored SIGTERM; killing it");
            // start_kill sends SIGKILL to this pid only.
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

/// Send `signal` to one process.
///
/// Only called with the pid of a child we have not reaped yet (or one whose
/// identity was just checked in `/proc`), so the pid names the process we mean.
fn send_signal(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid <= 0 {
        return; // never a process group or "every process"
    }
    // SAFETY: kill(2) takes two integers and touches no memory of ours; a
    // positive pid addresses exactly one process.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc != 0 {
        debug!(pid, signal, error = %io::Error::last_os_error(), "kill failed");
    }
}

/// Stop a containerd that a previous kedge started on this data dir and left
/// running (kedge crashed or was restarted). Its containers keep running; the
/// containerd we start next takes them over.
async fn stop_leftover(paths: &ContainerdPaths, timeout: Duration) {
    let Ok(text) = fs::read_to_string(&paths.pid_file) else {
        return;
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return;
    };
    if !is_our_containerd(pid, &paths.config_file) {
        return;
    }
    info!(pid, "stopping the containerd a previous run left behind");
    send_signal(pid, libc::SIGTERM);
    let deadline = Instant::now() + timeout;
    while process_alive(pid) {
        if Instant::now() >= deadline {
            if is_our_containerd(pid, &paths.config_file) {
                send_signal(pid, libc::SIGKILL);
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The process is a containerd started with our config file.
fn is_our_containerd(pid: u32, config_file: &Path) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_containerd = args
        .first()
        .is_some_and(|arg0| arg0.ends_with(b"containerd"));
    let config = config_file.as_os_str().as_encoded_bytes();
    is_containerd && args.contains(&config) && process_alive(pid)
}

/// The process exists and is not a zombie.
pub(crate) fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name: "pid (comm) S ...".
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

async fn monitor(
    child: Child,
    paths: ContainerdPaths,
    options: SupervisorOptions,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut child = Some(child);
    let mut started = Instant::now();
    let mut backoff = options.initial_backoff;
    loop {
        // Wait for containerd to exit, or for shutdown.
        if let Some(running) = child.as_mut() {
            tokio::select! {
                status = running.wait() => {
                    shared.pid.store(0, Ordering::SeqCst);
                    child = None;
                    match status {
                        Ok(status) => error!(%status, log = %paths.log_file.display(), "containerd exited; restarting it"),
                        Err(err) => error!(error = %err, "cannot wait for containerd; restarting it"),
                    }
                    if started.elapsed() >= options.backoff_reset_after {
                        backoff = options.initial_backoff;
                    }
                }
                changed = shutdown.changed() => {
                    // Err: the handle is gone without a shutdown; leave containerd running.
                    if changed.is_ok() {
                        terminate(running, options.stop_timeout).await;
                        shared.pid.store(0, Ordering::SeqCst);
                    }
                    return;
                }
            }
        }
        // Back off, unless asked to stop meanwhile.
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(options.max_backoff);
        match spawn_containerd(&paths, &options.binary) {
            Ok(mut new_child) => {
                shared.restarts.fetch_add(1, Ordering::SeqCst);
                started = Instant::now();
                match wait_ready(&mut new_child, &paths, options.ready_timeout).await {
                    Ok(()) => info!(pid = new_child.id().unwrap_or(0), "containerd restarted"),
                    Err(err) => warn!(error = %err, "restarted containerd is not ready yet"),
                }
                shared
                    .pid
                    .store(new_child.id().unwrap_or(0), Ordering::SeqCst);
                child = Some(new_child);
            }
            Err(err) => error!(error = %err, "cannot restart containerd"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_live_under_the_data_dir() {
        let p = ContainerdPaths::new(Path::new("/var/lib/kedge"));
        assert_eq!(
            p.config_file,
            Path::new("/var/lib/kedge/agent/etc/containerd/config.toml")
        );
        assert_eq!(p.root, Path::new("/var/lib/kedge/agent/containerd/root"));
        assert_eq!(p.state, Path::new("/var/lib/kedge/agent/containerd/state"));
        assert_eq!(
            p.socket,
            Path::new("/var/lib/kedge/agent/containerd/containerd.sock")
        );
        assert_eq!(
            p.runc_root,
            Path::new("/var/lib/kedge/agent/containerd/state/runc")
        );
        assert_eq!(
            p.cni_conf_dir,
            Path::new("/var/lib/kedge/agent/etc/cni/net.d")
        );
    }

    #[test]
    fn render_has_what_the_cri_plugin_needs() {
        let mut config = ContainerdConfig::new(Path::new("/data"));
        config.snapshotter = Snapshotter::Native;
        config.restrict_oom_score_adj = true;
        let text = config.render().expect("render");
        for line in [
            "version = 2",
            "root = \"/data/agent/containerd/root\"",
            "state = \"/data/agent/containerd/state\"",
            "  address = \"/data/agent/containerd/containerd.sock\"",
            "[plugins.\"io.containerd.grpc.v1.cri\"]",
            "  sandbox_image = \"kedge.local/pause:3.10\"",
            "  restrict_oom_score_adj = true",
            "  stream_server_address = \"127.0.0.1\"",
            "  stream_server_port = \"0\"",
            "  netns_mounts_under_state_dir = true",
            "  snapshotter = \"native\"",
            "  runtime_type = \"io.containerd.runc.v2\"",
            "  Root = \"/data/agent/containerd/state/runc\"",
            "  bin_dir = \"/usr/lib/cni\"",
            "  conf_dir = \"/data/agent/etc/cni/net.d\"",
            "  path = \"/data/agent/containerd/opt\"",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        config.restrict_oom_score_adj = false;
        config.snapshotter = Snapshotter::Overlayfs;
        let text = config.render().expect("render");
        assert!(text.contains("restrict_oom_score_adj = false"));
        assert!(text.contains("snapshotter = \"overlayfs\""));
    }

    #[test]
    fn host_facts_choose_snapshotter_and_oom_clamp() {
        let facts = HostFacts {
            oom_score_adj_restricted: false,
            lxc_like: false,
            overlay_usable: false,
        };
        let config = ContainerdConfig::for_host(Path::new("/d"), &facts);
        assert_eq!(config.snapshotter, Snapshotter::Native);
        assert!(!config.restrict_oom_score_adj);
        let facts = HostFacts {
            oom_score_adj_restricted: true,
            overlay_usable: true,
            ..facts
        };
        let config = ContainerdConfig::for_host(Path::new("/d"), &facts);
        assert_eq!(config.snapshotter, Snapshotter::Overlayfs);
        assert!(config.restrict_oom_score_adj);
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(toml_str("\u{1}"), "\"\\u0001\"");
    }

    #[test]
    fn write_creates_the_layout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = ContainerdConfig::new(dir.path());
        let path = config.write().expect("write");
        let text = fs::read_to_string(&path).expect("read back");
        assert_eq!(text, config.render().expect("render"));
        for d in [
            &config.paths.root,
            &config.paths.state,
            &config.paths.runc_root,
            &config.paths.cni_conf_dir,
            &config.paths.opt_dir,
        ] {
            assert!(d.is_dir(), "{} missing", d.display());
        }
    }

    #[test]
    fn long_socket_paths_are_refused() {
        let long = PathBuf::from("/").join("x".repeat(100));
        let config = ContainerdConfig::new(&long);
        assert!(matches!(
            config.write(),
            Err(ContainerdError::SocketPathTooLong { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_paths_are_refused() {
        use std::os::unix::ffi::OsStrExt;
        let bad = Path::new(std::ffi::OsStr::from_bytes(b"/tmp/\xff"));
        let config = ContainerdConfig::new(bad);
        assert!(matches!(
            config.render(),
            Err(ContainerdError::NonUtf8Path { .. })
        ));
    }

    /// A fake "containerd" (a shell script) that listens on nothing: the
    /// supervisor reports its early exit with the log path.
    #[tokio::test]
    async fn early_exit_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = dir.path().join("fake-containerd");
        fs::write(&fake, "#!/bin/sh\necho boom >&2\nexit 3\n").expect("write fake");
        set_executable(&fake);
        let config = ContainerdConfig::new(dir.path());
        let options = SupervisorOptions {
            binary: fake,
            ready_timeout: Duration::from_secs(5),
            ..SupervisorOptions::default()
        };
        let err = ContainerdSupervisor::start(&config, options)
            .await
            .expect_err("must fail");
        assert!(matches!(err, ContainerdError::ExitedEarly { .. }), "{err}");
        let log = fs::read_to_string(&config.paths.log_file).expect("log");
        assert!(log.contains("boom"), "{log}");
    }

    /// A fake containerd that creates its socket with busybox-free tools:
    /// python3 is on every build machine (the image builder needs it).
    #[tokio::test]
    async fn restarts_after_death_and_stops_with_sigterm() {
        if which("python3").is_none() {
            eprintln!("SKIP restarts_after_death_and_stops_with_sigterm: no python3");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = dir.path().join("fake-containerd");
        // Reads the socket path from the config, listens, and exits on SIGTERM.
        let script = r#"#!/usr/bin/env python3
import os, re, signal, socket, sys, time
cfg = open(sys.argv[2]).read()
path = re.search(r'address = "([^"]+)"', cfg).group(1)
try:
    os.unlink(path)
except FileNotFoundError:
    pass
s = socket.socket(socket.AF_UNIX)
s.bind(path)
s.listen(8)
def term(*_):
    open(path + ".terminated", "a").write("%d\n" % os.getpid())
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
while True:
    time.sleep(0.05)
"#;
        fs::write(&fake, script).expect("write fake");
        set_executable(&fake);
        let config = ContainerdConfig::new(dir.path());
        let options = SupervisorOptions {
            binary: fake,
            ready_timeout: Duration::from_secs(10),
            stop_timeout: Duration::from_secs(5),
            initial_backoff: Duration::from_millis(50),
            ..SupervisorOptions::default()
        };
        let sup = ContainerdSupervisor::start(&config, options)
            .await
            .expect("start");
        let first = sup.pid().expect("pid");
        // Its own process group.
        // SAFETY: getpgid takes an integer and reads no memory of ours.
        let pgid = unsafe { libc::getpgid(first as libc::pid_t) };
        assert_eq!(pgid, first as libc::pid_t);

        send_signal(first, libc::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(10);
        let second = loop {
            match sup.pid() {
                Some(pid) if pid != first => break pid,
                _ if Instant::now() > deadline => panic!("containerd was not restarted"),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        assert_eq!(sup.restarts(), 1);
        let socket = sup.socket().to_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::UnixStream::connect(&socket).await.is_err() {
            assert!(Instant::now() < deadline, "restarted child never listened");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sup.shutdown().await.expect("shutdown");
        let marker =
            fs::read_to_string(socket.with_extension("sock.terminated")).expect("SIGTERM marker");
        assert_eq!(marker.trim(), second.to_string());
        assert!(!process_alive(second));
        assert!(!config.paths.pid_file.exists());
    }

    fn set_executable(path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let mut perms = fs::metadata(path).expect("stat").permissions();
        perms.set_mode(0o755);
        fs::set_permissions(path, perms).expect("chmod");
    }

    fn which(name: &str) -> Option<PathBuf> {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
    }
}
