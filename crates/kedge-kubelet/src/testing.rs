//! Helpers for tests that run the real runtime (not used by the agent).
//!
//! [`RealRuntimeEnv`] is a private containerd in a temporary directory, as
//! the real-containerd tests share it: the test images built by
//! `scripts/build-test-images.sh`, containerd under [`ContainerdSupervisor`],
//! a test-only bridge network, and a clean-up that runs whatever happens.
//! The free functions are its forceful part, also used by tests that run
//! `kedge server`: processes of one containerd (and its shims and
//! containers), mounts under a directory, a test bridge, libcni's cached
//! results. Tests call them from `Drop` guards so a failed test leaves
//! nothing behind on a shared CI machine.
//!
//! Kept dependency-light: this module is compiled into the library.

use std::ffi::{CString, OsString};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cri::api::{
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata,
};
use crate::{
    CniConfig, ContainerdConfig, ContainerdPaths, ContainerdSupervisor, CriClient, CtrImporter,
    HostFacts, ImageService, RuntimeService, SupervisorOptions,
};

/// Errors of the test helpers: anything, with a message.
pub type TestError = Box<dyn std::error::Error + Send + Sync>;

/// `return Err(format!(...).into())` unless the condition holds: the
/// assertion of test scenarios that must clean up before they fail.
#[doc(hidden)]
#[macro_export]
macro_rules! test_ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+).into());
        }
    };
}

/// The pause image `scripts/build-test-images.sh` builds.
pub const TEST_PAUSE_IMAGE: &str = "kedge.local/pause:3.10";
/// The busybox image `scripts/build-test-images.sh` builds.
pub const TEST_BUSYBOX_IMAGE: &str = "kedge.local/busybox:1.36";

/// Kills containerd of `paths`, every container its runc root knows and its
/// shims, and drops the CNI state of the sandboxes killed that way. Returns
/// what was still running (a clean shutdown leaves nothing).
pub fn kill_containerd_and_pods(paths: &ContainerdPaths) -> Vec<String> {
    let mut left = Vec::new();
    let ids = runc_container_ids(paths);
    let config = paths.config_file.as_os_str().as_bytes().to_vec();
    for pid in pids() {
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if contains(&cmdline, b"containerd") && contains(&cmdline, &config) {
            kill_and_wait(pid, |c| contains(c, &config));
        }
    }
    let runc_state = paths.runc_root.join("k8s.io");
    if let Ok(entries) = fs::read_dir(&runc_state) {
        for entry in entries.flatten() {
            let id = entry.file_name();
            let _ = Command::new("runc")
                .arg("--root")
                .arg(&runc_state)
                .args(["delete", "--force"])
                .arg(&id)
                .output();
            left.push(format!("container {id:?}"));
        }
    }
    let socket = paths.socket.as_os_str().as_bytes().to_vec();
    for pid in pids() {
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if contains(&cmdline, b"containerd-shim") && contains(&cmdline, &socket) {
            kill_and_wait(pid, |c| contains(c, &socket));
            left.push(format!("shim {pid}"));
        }
    }
    forget_cni_state(&ids);
    left
}

/// Unmounts everything at or below `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    let mut mounts = mounts_under(dir);
    mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    for mount in mounts {
        if let Ok(target) = CString::new(mount.as_os_str().as_bytes()) {
            // SAFETY: `target` is a NUL-terminated path that outlives the call.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Deletes a Linux bridge; `false` if it is still there.
pub fn delete_bridge(name: &str) -> bool {
    if Path::new("/sys/class/net").join(name).exists() {
        let _ = Command::new("ip").args(["link", "delete", name]).output();
    }
    !Path::new("/sys/class/net").join(name).exists()
}

/// Drops libcni's cached results of `network_name` (none when empty) and of
/// containers `ids`.
pub fn forget_cni_results(network_name: &str, ids: &[String]) {
    if let Ok(entries) = fs::read_dir("/var/lib/cni/results") {
        let prefix = format!("{network_name}-");
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = (!network_name.is_empty() && name.starts_with(&prefix))
                || ids.iter().any(|id| name.contains(&format!("-{id}-")));
            if ours {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// The ids of the containers (sandboxes included) runc knows under `paths`.
pub fn runc_container_ids(paths: &ContainerdPaths) -> Vec<String> {
    fs::read_dir(paths.runc_root.join("k8s.io"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// What a CNI DEL would have undone for sandboxes `ids` killed without one:
/// libcni's cached results and host-local's IP reservations (files under
/// `/var/lib/cni/networks/<network>/` whose first line is the id).
pub fn forget_cni_state(ids: &[String]) {
    forget_cni_results("", ids);
    let Ok(networks) = fs::read_dir("/var/lib/cni/networks") else {
        return;
    };
    for network in networks.flatten() {
        let Ok(entries) = fs::read_dir(network.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            let owner = fs::read_to_string(entry.path()).unwrap_or_default();
            let owner = owner.lines().next().unwrap_or("").trim();
            if !owner.is_empty() && ids.iter().any(|id| id == owner) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// SIGTERM, then SIGKILL after 5 s, to one pid whose command line still
/// satisfies `is_ours` (guarding against a recycled pid).
pub fn kill_and_wait(pid: u32, is_ours: impl Fn(&[u8]) -> bool) {
    let still_ours = || {
        fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| is_ours(&c))
            .unwrap_or(false)
            && alive(pid)
    };
    for (signal, wait) in [(libc::SIGTERM, 50), (libc::SIGKILL, 50)] {
        if !still_ours() {
            return;
        }
        let Ok(raw) = libc::pid_t::try_from(pid) else {
            return;
        };
        // SAFETY: kill(2) with a positive pid signals that one process; no memory is shared.
        unsafe { libc::kill(raw, signal) };
        for _ in 0..wait {
            if !alive(pid) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

pub fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_owned))
        })
        .is_some_and(|state| state != "Z" && state != "X")
}

pub fn pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Mount points at or below `dir`, from /proc/self/mountinfo.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.split(|b| *b == b'\n')
        .filter_map(|line| line.split(|b| *b == b' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` (octal).
fn unescape_mountinfo(field: &[u8]) -> PathBuf {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' && i + 4 <= field.len() {
            let code = std::str::from_utf8(&field[i + 1..i + 4])
                .ok()
                .and_then(|octal| u8::from_str_radix(octal, 8).ok());
            if let Some(code) = code {
                out.push(code);
                i += 4;
                continue;
            }
        }
        out.push(field[i]);
        i += 1;
    }
    PathBuf::from(OsString::from_vec(out))
}

/// Why this host cannot run tests with real containerd, if it cannot.
pub fn real_runtime_skip_reason() -> Option<String> {
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".to_owned());
    }
    for tool in ["containerd", "runc", "ctr"] {
        if which(tool).is_none() {
            return Some(format!(
                "`{tool}` is not installed (scripts/setup.sh installs it)"
            ));
        }
    }
    None
}

pub fn which(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|p| p.join(name))
        .find(|p| p.is_file())
}

/// Prints a loud SKIP banner for `test` and returns `true` when this host
/// cannot run tests with the real runtime.
pub fn skip_real_runtime_test(test: &str) -> bool {
    let Some(reason) = real_runtime_skip_reason() else {
        return false;
    };
    let rule = "=".repeat(20);
    eprintln!(
        "\n{rule} SKIP {test} {rule}\n{reason}\n\
         This test runs in CI as root after scripts/setup.sh.\n{rule}{rule}\n"
    );
    true
}

/// The repository's root (for `scripts/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

/// Nanoseconds since the epoch, for unique names.
pub fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// `fut`, or an error once `budget` has passed.
pub async fn within<T, E: std::fmt::Display>(
    budget: Duration,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(budget, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!("took longer than {budget:?}")),
    }
}

static NEXT_ENV: AtomicU32 = AtomicU32::new(0);

/// A private containerd in a temporary directory, and the clean-up of
/// everything a test did with it.
///
/// The clean-up has two parts: [`RealRuntimeEnv::shutdown`] (async) removes
/// what CRI still lists, so that CNI DEL runs, and stops containerd through
/// its supervisor; [`RealRuntimeEnv::clean_up`], also run from `Drop` after
/// a panic, kills what is left by pid (containerd, runc containers, shims of
/// this containerd only), unmounts everything under the directory, deletes
/// the test bridge, drops libcni's cached results and removes the directory.
/// [`RealRuntimeEnv::finish`] runs both and fails the test on what it finds.
pub struct RealRuntimeEnv {
    label: String,
    dir: PathBuf,
    /// containerd's layout under the directory (`<dir>/agent/...`).
    pub paths: ContainerdPaths,
    /// The test network's bridge (made only by [`RealRuntimeEnv::write_test_network`]).
    pub bridge: String,
    /// The test network's CNI name.
    pub network_name: String,
    pub supervisor: Option<ContainerdSupervisor>,
    /// The pid of the containerd the supervisor runs now.
    pub containerd_pid: Option<u32>,
    /// The client [`RealRuntimeEnv::shutdown`] removes sandboxes with.
    pub cri: Option<CriClient>,
    /// Sandbox and container ids, for cleaning libcni's global cache.
    pub ids: Vec<String>,
    cleaned: bool,
}

impl RealRuntimeEnv {
    /// A new empty directory under the system's temp dir; `label` names it,
    /// the CNI network and the log lines (`kedge-<label>-...`).
    pub fn new(label: &str) -> std::io::Result<RealRuntimeEnv> {
        let n = NEXT_ENV.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("kedge-{label}-{pid}-{n}-{:x}", nanos()));
        fs::create_dir(&dir)?;
        fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        Ok(RealRuntimeEnv {
            label: label.to_owned(),
            paths: ContainerdPaths::new(&dir),
            dir,
            // IFNAMSIZ: at most 15 bytes ("kr", 7 hex digits, 2 digits).
            bridge: format!("kr{:x}{}", pid % 0xfff_ffff, n % 100),
            network_name: format!("kedge-{label}-{pid}-{n}"),
            supervisor: None,
            containerd_pid: None,
            cri: None,
            ids: Vec::new(),
            cleaned: false,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Builds the test images (`pause.tar`, `busybox.tar`) into `<dir>/images`.
    pub async fn build_test_images(&self) -> Result<PathBuf, TestError> {
        let images = self.dir.join("images");
        let script = repo_root().join("scripts").join("build-test-images.sh");
        let out = tokio::process::Command::new(&script)
            .arg(&images)
            .output()
            .await
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} failed ({}): {}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(images)
    }

    /// containerd's configuration for this directory, from what this host allows.
    pub fn containerd_config(&self) -> ContainerdConfig {
        let facts = HostFacts::probe(&self.paths.root);
        tracing::info!(?facts, "{}: host", self.label);
        ContainerdConfig::for_host(&self.dir, &facts)
    }

    /// The pod network: a bridge on `pod_cidr` with no gateway and no
    /// masquerade (traffic stays on the bridge), its IPAM state in the directory.
    pub fn write_test_network(
        &self,
        config: &ContainerdConfig,
        pod_cidr: &str,
    ) -> Result<(), TestError> {
        let mut cni = CniConfig::new(pod_cidr)?;
        cni.network_name = self.network_name.clone();
        cni.bridge = self.bridge.clone();
        cni.is_gateway = false; // no host address, no ip_forward change
        cni.ip_masq = false;
        cni.ipam_data_dir = Some(self.dir.join("ipam"));
        cni.write(&config.paths.cni_conf_dir)?;
        Ok(())
    }

    /// Starts containerd under a supervisor; returns its socket.
    pub async fn start_containerd(
        &mut self,
        config: &ContainerdConfig,
    ) -> Result<PathBuf, TestError> {
        let supervisor = ContainerdSupervisor::start(
            config,
            SupervisorOptions {
                ready_timeout: Duration::from_secs(20),
                stop_timeout: Duration::from_secs(5),
                ..SupervisorOptions::default()
            },
        )
        .await?;
        self.containerd_pid = supervisor.pid();
        let socket = supervisor.socket().to_owned();
        self.supervisor = Some(supervisor);
        Ok(socket)
    }

    /// A CRI client on the running containerd, importing with `ctr`; kept
    /// for [`RealRuntimeEnv::shutdown`].
    pub async fn connect(&mut self, config: &ContainerdConfig) -> Result<CriClient, TestError> {
        let socket = &config.paths.socket;
        let cri = CriClient::connect_when_ready(socket, Duration::from_secs(20))
            .await?
            .with_importer(CtrImporter::new(socket).with_snapshotter(config.snapshotter.as_str()));
        self.cri = Some(cri.clone());
        Ok(cri)
    }

    /// Imports `pause.tar` and `busybox.tar` from `images`; the image names
    /// they brought.
    pub async fn import_test_images(
        cri: &CriClient,
        images: &Path,
    ) -> Result<Vec<String>, TestError> {
        let mut imported = cri.import_image(&images.join("pause.tar")).await?;
        imported.extend(cri.import_image(&images.join("busybox.tar")).await?);
        for name in [TEST_PAUSE_IMAGE, TEST_BUSYBOX_IMAGE] {
            if !imported.iter().any(|i| i == name) {
                return Err(format!("{name} not in {imported:?}").into());
            }
        }
        Ok(imported)
    }

    /// A sandbox config: its log directory `<dir>/pods/<ns>_<name>_<uid>`
    /// (created), PID namespace per container, IPC per pod, the network as
    /// asked (a host-network pod has the host's hostname).
    pub fn sandbox_config(
        &self,
        name: &str,
        namespace: &str,
        uid: &str,
        network: NamespaceMode,
    ) -> Result<PodSandboxConfig, TestError> {
        let log_dir = self
            .dir
            .join("pods")
            .join(format!("{namespace}_{name}_{uid}"));
        fs::create_dir_all(&log_dir)?;
        Ok(PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.to_owned(),
                namespace: namespace.to_owned(),
                uid: uid.to_owned(),
                attempt: 0,
            }),
            hostname: if network == NamespaceMode::Node {
                String::new()
            } else {
                name.to_owned()
            },
            log_directory: log_dir.display().to_string(),
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: network as i32,
                        pid: NamespaceMode::Container as i32,
                        ipc: NamespaceMode::Pod as i32,
                        ..NamespaceOption::default()
                    }),
                    ..LinuxSandboxSecurityContext::default()
                }),
                ..LinuxPodSandboxConfig::default()
            }),
            ..PodSandboxConfig::default()
        })
    }

    /// The polite part: remove what CRI still lists (so CNI DEL runs), then
    /// stop containerd through its supervisor.
    pub async fn shutdown(&mut self) {
        if let Some(cri) = self.cri.take() {
            let cleanup = async {
                for sandbox in cri.list_pod_sandbox(None).await.unwrap_or_default() {
                    let _ = cri.stop_pod_sandbox(&sandbox.id).await;
                    let _ = cri.remove_pod_sandbox(&sandbox.id).await;
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(10), cleanup).await;
        }
        if let Some(supervisor) = self.supervisor.take() {
            if let Err(err) = supervisor.shutdown().await {
                eprintln!("{}: containerd shutdown: {err}", self.label);
            }
        }
    }

    /// The forceful part, also run from `Drop` after a panic. Returns what
    /// could not be cleaned, or was still running.
    pub fn clean_up(&mut self) -> Result<(), String> {
        if self.cleaned {
            return Ok(());
        }
        self.cleaned = true;
        // Stop supervising first so nothing restarts containerd.
        drop(self.supervisor.take());
        if let Ok(entries) = fs::read_dir(self.paths.runc_root.join("k8s.io")) {
            self.ids.extend(
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned()),
            );
        }
        let mut problems: Vec<String> = kill_containerd_and_pods(&self.paths)
            .into_iter()
            .map(|left| format!("{left} was left running"))
            .collect();
        unmount_under(&self.dir);
        if !delete_bridge(&self.bridge) {
            problems.push(format!("cannot delete bridge {}", self.bridge));
        }
        // libcni's result cache is global: drop the entries of our network
        // and of our sandboxes (the loopback network is containerd's "cni-loopback").
        forget_cni_results(&self.network_name, &self.ids);
        if let Err(err) = fs::remove_dir_all(&self.dir) {
            problems.push(format!("cannot remove {}: {err}", self.dir.display()));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// The last lines of containerd's log.
    pub fn containerd_log_tail(&self) -> String {
        let text = fs::read_to_string(&self.paths.log_file).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(40)..];
        format!("--- containerd.log (last lines) ---\n{}", tail.join("\n"))
    }

    /// The whole of a real-runtime test: a loud SKIP where this host cannot
    /// run it; otherwise a new environment (`label`), `scenario` within
    /// `budget`, then [`RealRuntimeEnv::finish`].
    pub async fn run<F>(test: &str, label: &str, budget: Duration, scenario: F)
    where
        F: for<'a> FnOnce(
            &'a mut RealRuntimeEnv,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<(), TestError>> + Send + 'a>,
        >,
    {
        if skip_real_runtime_test(test) {
            return;
        }
        let started = std::time::Instant::now();
        let mut env = match RealRuntimeEnv::new(label) {
            Ok(env) => env,
            Err(err) => panic!("{test}: cannot make a temporary directory: {err}"),
        };
        let outcome = within(budget, scenario(&mut env)).await;
        eprintln!("{test}: total {:?}", started.elapsed());
        env.finish(test, outcome).await;
    }

    /// Shuts down and cleans up, then panics if `outcome` is an error
    /// (with containerd's log tail) or if the clean-up found leftovers.
    pub async fn finish(mut self, what: &str, outcome: Result<(), String>) {
        self.shutdown().await;
        let log_tail = self.containerd_log_tail();
        let cleanup = self.clean_up();
        if let Err(err) = outcome {
            panic!("{what} failed: {err}\n{log_tail}");
        }
        if let Err(err) = cleanup {
            panic!("cleanup left something behind: {err}");
        }
    }
}

impl Drop for RealRuntimeEnv {
    fn drop(&mut self) {
        if let Err(err) = self.clean_up() {
            eprintln!("{}: cleanup after failure: {err}", self.label);
        }
    }
}
