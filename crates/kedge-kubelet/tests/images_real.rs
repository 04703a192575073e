//! The embedded pause image and the images directory against a real,
//! private containerd.
//!
//! Needs root, `containerd`, `runc` and `ctr` (it prints a loud SKIP line and
//! passes otherwise); on a machine prepared by `scripts/setup.sh` (CI) it
//! always runs. Like `cri_lifecycle.rs`, it starts containerd under
//! [`ContainerdSupervisor`] in a temporary directory and cleans up whatever
//! happens. The sandbox uses the host network, so no CNI network is made.
//!
//! Checked: the pause tarball built in memory imports, CRI reports it with
//! the embedded image's ID, a second [`ensure_pause_image`] imports nothing,
//! and a pod sandbox runs on it; a gzipped busybox tarball dropped into the
//! images directory is imported by [`ImageImporter`] and listed by CRI, and
//! a restarted importer does not import it again.

use std::error::Error;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kedge_kubelet::cri::api::{
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, PodSandboxState,
};
use kedge_kubelet::cri::image_spec;
use kedge_kubelet::images::{
    ensure_pause_image, pause_image, ImageImporter, PauseImageOutcome, PAUSE_BINARY, PAUSE_IMAGE,
};
use kedge_kubelet::{
    ContainerdConfig, ContainerdPaths, ContainerdSupervisor, CriClient, CtrImporter, HostFacts,
    ImageService, RuntimeService, SupervisorOptions,
};

type TestResult<T = ()> = Result<T, Box<dyn Error + Send + Sync>>;

const BUSYBOX_IMAGE: &str = "kedge.local/busybox:1.36";
const TEST_BUDGET: Duration = Duration::from_secs(60);

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+).into());
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_images_dir_on_real_containerd() {
    if let Some(reason) = skip_reason() {
        eprintln!(
            "\n==================== SKIP pause_and_images_dir_on_real_containerd ====================\n\
             {reason}\n\
             This test runs in CI as root after scripts/setup.sh.\n\
             ======================================================================================\n"
        );
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "kedge_kubelet=info".to_owned()),
        )
        .with_test_writer()
        .try_init();
    let mut env = TestEnv::new().expect("test environment");
    let outcome = tokio::time::timeout(TEST_BUDGET, scenario(&mut env)).await;
    env.shutdown().await;
    let log_tail = env.containerd_log_tail();
    let cleanup = env.clean_up();
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(err)) => panic!("images test failed: {err}\n{log_tail}"),
        Err(_) => panic!("images test took longer than {TEST_BUDGET:?}\n{log_tail}"),
    }
    if let Err(err) = cleanup {
        panic!("cleanup left something behind: {err}");
    }
}

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".to_owned());
    }
    for tool in ["containerd", "runc", "ctr"] {
        if which(tool).is_none() {
            return Some(format!(
                "`{tool}` is not installed (apt-get install containerd runc)"
            ));
        }
    }
    None
}

async fn scenario(env: &mut TestEnv) -> TestResult {
    let t0 = Instant::now();
    let step = |name: &str| eprintln!("images_real: {:>6} ms  {name}", t0.elapsed().as_millis());
    eprintln!(
        "images_real: embedded pause binary {} bytes, image tarball {} bytes",
        PAUSE_BINARY.len(),
        pause_image().bytes.len()
    );

    let facts = HostFacts::probe(&env.paths.root);
    let config = ContainerdConfig::for_host(env.dir(), &facts);
    let socket = env.start_containerd(&config).await?;
    let cri = CriClient::connect_when_ready(&socket, Duration::from_secs(20))
        .await?
        .with_importer(CtrImporter::new(&socket).with_snapshotter(config.snapshotter.as_str()));
    env.cri = Some(cri.clone());
    step("containerd ready");

    // The embedded pause image: imported once, then recognised.
    let work = env.dir().join("agent");
    let outcome = ensure_pause_image(&cri, &work).await?;
    ensure!(
        outcome == PauseImageOutcome::Imported,
        "first ensure: {outcome:?}"
    );
    let image = cri
        .image_status(image_spec(PAUSE_IMAGE), false)
        .await?
        .ok_or("ImageStatus does not know the pause image")?;
    ensure!(
        image.id == pause_image().config_digest,
        "pause image id {} is not the embedded image's {}",
        image.id,
        pause_image().config_digest
    );
    step("pause image imported");
    let again = ensure_pause_image(&cri, &work).await?;
    ensure!(
        again == PauseImageOutcome::AlreadyPresent,
        "second ensure: {again:?}"
    );
    step("pause image recognised, not imported again");

    // A sandbox runs on it (host network: no CNI needed).
    let uid = format!("images-real-{}", std::process::id());
    let sandbox_config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "images-real".to_owned(),
            namespace: "kedge-test".to_owned(),
            uid,
            attempt: 0,
        }),
        // Host network means the host's UTS namespace: no hostname of its own.
        hostname: String::new(),
        log_directory: env.dir().join("pods").display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..NamespaceOption::default()
                }),
                ..LinuxSandboxSecurityContext::default()
            }),
            ..LinuxPodSandboxConfig::default()
        }),
        ..PodSandboxConfig::default()
    };
    fs::create_dir_all(env.dir().join("pods"))?;
    let sandbox = cri.run_pod_sandbox(sandbox_config, "").await?;
    let status = cri
        .pod_sandbox_status(&sandbox, false)
        .await?
        .status
        .ok_or("no sandbox status")?;
    ensure!(
        status.state == PodSandboxState::SandboxReady as i32,
        "sandbox not ready: {status:?}"
    );
    cri.stop_pod_sandbox(&sandbox).await?;
    cri.remove_pod_sandbox(&sandbox).await?;
    step("a sandbox ran on the embedded pause image");

    // The images directory: a gzipped busybox tarball dropped in.
    let built = env.dir().join("built");
    let script = repo_root().join("scripts").join("build-test-images.sh");
    let out = tokio::process::Command::new(&script)
        .arg(&built)
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let images_dir = work.join("images");
    fs::create_dir_all(&images_dir)?;
    let tar = fs::read(built.join("busybox.tar"))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar)?;
    fs::write(images_dir.join("busybox.tar.gz"), gz.finish()?)?;
    step("busybox.tar.gz dropped into the images directory");

    let runtime = Arc::new(cri.clone());
    let mut importer =
        ImageImporter::new(runtime.clone(), &images_dir).with_settle_time(Duration::ZERO);
    let report = importer.scan_once().await?;
    ensure!(
        report.imported == vec![("busybox.tar.gz".to_owned(), vec![BUSYBOX_IMAGE.to_owned()])],
        "scan: {report:?}"
    );
    let listed = cri.list_images(None).await?;
    ensure!(
        listed
            .iter()
            .any(|i| i.repo_tags.iter().any(|t| t == BUSYBOX_IMAGE)),
        "ListImages lacks {BUSYBOX_IMAGE}: {:?}",
        listed.iter().map(|i| &i.repo_tags).collect::<Vec<_>>()
    );
    step("imported and listed by CRI");

    let mut restarted = ImageImporter::new(runtime, &images_dir).with_settle_time(Duration::ZERO);
    let report = restarted.scan_once().await?;
    ensure!(
        report.imported.is_empty() && report.unchanged == 1,
        "a restarted importer imported again: {report:?}"
    );
    step("a restarted importer skips it");
    Ok(())
}

/// Everything the test created, and the cleanup of it.
struct TestEnv {
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
    paths: ContainerdPaths,
    supervisor: Option<ContainerdSupervisor>,
    containerd_pid: Option<u32>,
    cri: Option<CriClient>,
    cleaned: bool,
}

impl TestEnv {
    fn new() -> TestResult<TestEnv> {
        let dir = tempfile::Builder::new().prefix("kedge-images-").tempdir()?;
        let dir_path = dir.path().to_owned();
        Ok(TestEnv {
            paths: ContainerdPaths::new(&dir_path),
            dir: Some(dir),
            dir_path,
            supervisor: None,
            containerd_pid: None,
            cri: None,
            cleaned: false,
        })
    }

    fn dir(&self) -> &Path {
        &self.dir_path
    }

    async fn start_containerd(&mut self, config: &ContainerdConfig) -> TestResult<PathBuf> {
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

    /// Remove what CRI still lists, then stop containerd politely.
    async fn shutdown(&mut self) {
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
                eprintln!("images_real: containerd shutdown: {err}");
            }
        }
    }

    /// Kill what is left (by pid, checking the command line), unmount, remove.
    fn clean_up(&mut self) -> Result<(), String> {
        if self.cleaned {
            return Ok(());
        }
        self.cleaned = true;
        let mut problems = Vec::new();
        drop(self.supervisor.take());
        if let Some(pid) = self.containerd_pid {
            let config = self.paths.config_file.as_os_str().as_bytes().to_vec();
            kill_and_wait(pid, |cmdline| contains(cmdline, &config));
        }
        let runc_state = self.paths.runc_root.join("k8s.io");
        if let Ok(entries) = fs::read_dir(&runc_state) {
            for entry in entries.flatten() {
                let id = entry.file_name();
                let _ = Command::new("runc")
                    .arg("--root")
                    .arg(&runc_state)
                    .args(["delete", "--force"])
                    .arg(&id)
                    .output();
                problems.push(format!("container {id:?} was left running"));
            }
        }
        let socket = self.paths.socket.as_os_str().as_bytes().to_vec();
        for pid in pids() {
            let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            if contains(&cmdline, b"containerd-shim") && contains(&cmdline, &socket) {
                kill_and_wait(pid, |c| contains(c, &socket));
                problems.push(format!("shim {pid} was left running"));
            }
        }
        let mut mounts = mounts_under(self.dir());
        mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
        for mount in mounts {
            if let Ok(target) = CString::new(mount.as_os_str().as_bytes()) {
                // SAFETY: `target` is a NUL-terminated path that outlives the call.
                unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
            }
        }
        if let Some(dir) = self.dir.take() {
            if let Err(err) = dir.close() {
                problems.push(format!("cannot remove {}: {err}", self.dir_path.display()));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    fn containerd_log_tail(&self) -> String {
        let text = fs::read_to_string(&self.paths.log_file).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(40)..];
        format!("--- containerd.log (last lines) ---\n{}", tail.join("\n"))
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Err(err) = self.clean_up() {
            eprintln!("images_real: cleanup after failure: {err}");
        }
    }
}

/// SIGTERM, then SIGKILL, to one pid whose command line still satisfies
/// `is_ours` (guarding against a recycled pid).
fn kill_and_wait(pid: u32, is_ours: impl Fn(&[u8]) -> bool) {
    let still_ours = || {
        fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| is_ours(&c))
            .unwrap_or(false)
            && alive(pid)
    };
    for signal in [libc::SIGTERM, libc::SIGKILL] {
        if !still_ours() {
            return;
        }
        let Ok(raw) = libc::pid_t::try_from(pid) else {
            return;
        };
        // SAFETY: kill(2) with a positive pid signals that one process.
        unsafe { libc::kill(raw, signal) };
        for _ in 0..50 {
            if !alive(pid) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_owned))
        })
        .is_some_and(|state| state != "Z" && state != "X")
}

fn pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn mounts_under(dir: &Path) -> Vec<PathBuf> {
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
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

fn which(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|p| p.join(name))
        .find(|p| p.is_file())
}
