//! A whole pod lifecycle against a real, private containerd.
//!
//! Needs root, `containerd` and `runc` (it prints a loud SKIP line and passes
//! otherwise); on a machine prepared by `scripts/setup.sh` (CI) it always runs.
//! It builds the test images with `scripts/build-test-images.sh`, starts
//! containerd under [`ContainerdSupervisor`] in a temporary data dir with a
//! bridge network on a test-only podCIDR (no gateway, no masquerade: traffic
//! stays on the bridge), imports the pause and busybox images, and runs a
//! sandbox with one container through CRI: log file, exec, a containerd
//! restart that must leave the container running and adopted, stop, removal,
//! and checks through the list calls that nothing is left.
//!
//! Cleanup runs whatever happens: first through CRI and the supervisor
//! (async), then a guard's `Drop` that kills what is left by pid (containerd,
//! runc containers, shims of this containerd only), unmounts everything under
//! the temporary directory, deletes the test bridge and removes the
//! directory.

use std::collections::HashMap;
use std::error::Error;
use std::ffi::CString;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kedge_kubelet::cri::api::{
    ContainerConfig, ContainerMetadata, ContainerState, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata, PodSandboxState,
};
use kedge_kubelet::cri::image_spec;
use kedge_kubelet::{
    CniConfig, ContainerdConfig, ContainerdPaths, ContainerdSupervisor, CriClient, CtrImporter,
    HostFacts, ImageService, PodCidr, RuntimeService, SupervisorOptions,
};

type TestResult<T = ()> = Result<T, Box<dyn Error + Send + Sync>>;

/// Test-only pod network: never routed anywhere, never masqueraded.
const POD_CIDR: &str = "10.199.0.0/24";
const PAUSE_IMAGE: &str = "kedge.local/pause:3.10";
const BUSYBOX_IMAGE: &str = "kedge.local/busybox:1.36";
/// The whole test, cleanup excluded, must fit in this.
const TEST_BUDGET: Duration = Duration::from_secs(45);

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+).into());
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cri_pod_lifecycle_on_real_containerd() {
    if let Some(reason) = skip_reason() {
        eprintln!(
            "\n==================== SKIP cri_pod_lifecycle_on_real_containerd ====================\n\
             {reason}\n\
             This test runs in CI as root after scripts/setup.sh.\n\
             ===================================================================================\n"
        );
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "kedge_kubelet=info".to_owned()),
        )
        .with_test_writer()
        .try_init();

    let started = Instant::now();
    let mut env = TestEnv::new().expect("test environment");
    let outcome = tokio::time::timeout(TEST_BUDGET, lifecycle(&mut env)).await;
    env.shutdown().await;
    let log_tail = env.containerd_log_tail();
    let cleanup = env.clean_up();
    eprintln!("cri_lifecycle: total {:?}", started.elapsed());
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(err)) => panic!("CRI lifecycle failed: {err}\n{log_tail}"),
        Err(_) => panic!("CRI lifecycle took longer than {TEST_BUDGET:?}\n{log_tail}"),
    }
    if let Err(err) = cleanup {
        panic!("cleanup left something behind: {err}");
    }
}

/// Why this host cannot run the test, if it cannot.
fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".to_owned());
    }
    for tool in ["containerd", "runc"] {
        if which(tool).is_none() {
            return Some(format!(
                "`{tool}` is not installed (apt-get install {tool})"
            ));
        }
    }
    None
}

async fn lifecycle(env: &mut TestEnv) -> TestResult {
    let t0 = Instant::now();
    let step = |name: &str| eprintln!("cri_lifecycle: {:>6} ms  {name}", t0.elapsed().as_millis());

    // Images, built from busybox-static and the pause program.
    let images = env.dir().join("images");
    let script = repo_root().join("scripts").join("build-test-images.sh");
    let out = tokio::process::Command::new(&script)
        .arg(&images)
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    ensure!(
        out.status.success(),
        "{} failed ({}): {}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    step("test images built");

    // containerd's config from what this host allows, and the pod network.
    let facts = HostFacts::probe(&env.paths.root);
    let config = ContainerdConfig::for_host(env.dir(), &facts);
    eprintln!("cri_lifecycle: host {facts:?}");
    let mut cni = CniConfig::new(POD_CIDR)?;
    cni.network_name = env.network_name.clone();
    cni.bridge = env.bridge.clone();
    cni.is_gateway = false; // no host address, no ip_forward change
    cni.ip_masq = false;
    cni.ipam_data_dir = Some(env.dir().join("ipam"));
    cni.write(&config.paths.cni_conf_dir)?;

    let socket = env.start_containerd(&config).await?;
    step("containerd ready");

    let cri = CriClient::connect_when_ready(&socket, Duration::from_secs(20))
        .await?
        .with_importer(CtrImporter::new(&socket).with_snapshotter(config.snapshotter.as_str()));
    env.cri = Some(cri.clone());
    let version = cri.version().await?;
    ensure!(
        version.runtime_name == "containerd" && version.runtime_api_version.starts_with("v1"),
        "unexpected runtime {version:?}"
    );
    step(&format!(
        "CRI ready: containerd {}",
        version.runtime_version
    ));

    let mut imported = cri.import_image(&images.join("pause.tar")).await?;
    imported.extend(cri.import_image(&images.join("busybox.tar")).await?);
    for name in [PAUSE_IMAGE, BUSYBOX_IMAGE] {
        ensure!(
            imported.iter().any(|i| i == name),
            "{name} not in {imported:?}"
        );
        let image = cri.image_status(image_spec(name), false).await?;
        ensure!(image.is_some(), "ImageStatus does not know {name}");
    }
    step("images imported");

    // The sandbox, on the bridge network.
    let uid = format!("{:x}-{}", nanos(), std::process::id());
    let (name, namespace) = ("cri-lifecycle", "kedge-test");
    let log_dir = env
        .dir()
        .join("pods")
        .join(format!("{namespace}_{name}_{uid}"));
    fs::create_dir_all(log_dir.join("hello"))?;
    let sandbox_config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            uid: uid.clone(),
            attempt: 0,
        }),
        hostname: name.to_owned(),
        log_directory: log_dir.display().to_string(),
        labels: HashMap::from([("kedge.test/uid".to_owned(), uid.clone())]),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Pod as i32,
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
    let sandbox_id = cri.run_pod_sandbox(sandbox_config.clone(), "").await?;
    env.ids.push(sandbox_id.clone());
    step("sandbox running");
    let status = cri
        .pod_sandbox_status(&sandbox_id, false)
        .await?
        .status
        .ok_or("no sandbox status")?;
    ensure!(
        status.state == PodSandboxState::SandboxReady as i32,
        "sandbox not ready: {status:?}"
    );
    let ip = status.network.map(|n| n.ip).unwrap_or_default();
    ensure!(in_cidr(&ip, POD_CIDR), "pod IP {ip:?} is not in {POD_CIDR}");
    ensure!(
        Path::new("/sys/class/net").join(&env.bridge).exists(),
        "bridge {} was not created",
        env.bridge
    );
    step(&format!("sandbox ready, pod IP {ip} on {}", env.bridge));

    // One container that logs and stays up.
    let container_config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "hello".to_owned(),
            attempt: 0,
        }),
        image: Some(image_spec(BUSYBOX_IMAGE)),
        command: vec![
            "sh".to_owned(),
            "-c".to_owned(),
            "echo hello-from-kedge; sleep 30".to_owned(),
        ],
        log_path: "hello/0.log".to_owned(),
        ..ContainerConfig::default()
    };
    let container_id = cri
        .create_container(&sandbox_id, container_config, sandbox_config)
        .await?;
    env.ids.push(container_id.clone());
    cri.start_container(&container_id).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = cri
            .container_status(&container_id, false)
            .await?
            .status
            .ok_or("no container status")?;
        if status.state == ContainerState::ContainerRunning as i32 {
            break status;
        }
        ensure!(
            status.state == ContainerState::ContainerCreated as i32 && Instant::now() < deadline,
            "container is not running: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log_path = PathBuf::from(&status.log_path);
    ensure!(
        log_path == log_dir.join("hello/0.log"),
        "log path {} is not under the sandbox's log directory",
        log_path.display()
    );
    step("container running");

    // The CRI log file: "<RFC3339Nano> stdout F hello-from-kedge".
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.ends_with(" hello-from-kedge")) {
            check_cri_log_line(line)?;
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "no hello-from-kedge in {}: {text:?}",
            log_path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    step("log line found");

    let exec = cri
        .exec_sync(
            &container_id,
            vec!["echo".to_owned(), "ok".to_owned()],
            Duration::from_secs(10),
        )
        .await?;
    ensure!(
        exec.exit_code == 0 && exec.stdout == b"ok\n",
        "exec: exit {} stdout {:?} stderr {:?}",
        exec.exit_code,
        String::from_utf8_lossy(&exec.stdout),
        String::from_utf8_lossy(&exec.stderr)
    );
    step("exec ok");

    // containerd stops (as when kedge stops) and the container keeps running;
    // a new containerd on the same root and state takes it over.
    let pid = container_pid(&cri, &container_id).await?;
    ensure!(alive(pid), "container process {pid} is not running");
    if let Some(supervisor) = env.supervisor.take() {
        supervisor.shutdown().await?;
    }
    ensure!(
        alive(pid),
        "stopping containerd killed the container ({pid})"
    );
    step("containerd stopped, container still running");
    env.start_containerd(&config).await?;
    let cri = CriClient::connect_when_ready(&socket, Duration::from_secs(20)).await?;
    env.cri = Some(cri.clone());
    let status = cri
        .container_status(&container_id, false)
        .await?
        .status
        .ok_or("no container status")?;
    ensure!(
        status.state == ContainerState::ContainerRunning as i32,
        "container not running after containerd restarted: {status:?}"
    );
    ensure!(
        container_pid(&cri, &container_id).await? == pid,
        "the container's process changed"
    );
    let exec = cri
        .exec_sync(
            &container_id,
            vec!["true".to_owned()],
            Duration::from_secs(10),
        )
        .await?;
    ensure!(exec.exit_code == 0, "exec after restart: {exec:?}");
    step("new containerd adopted the running container");

    // containerd dies: the supervisor starts another, the same client reconnects.
    let first = env.containerd_pid.ok_or("no containerd pid")?;
    // SAFETY: kill(2) with the positive pid of our own containerd child.
    unsafe { libc::kill(libc::pid_t::try_from(first)?, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let current = env.supervisor.as_ref().and_then(ContainerdSupervisor::pid);
        if let Some(pid) = current.filter(|pid| *pid != first) {
            env.containerd_pid = Some(pid);
            break;
        }
        ensure!(Instant::now() < deadline, "containerd was not restarted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        match cri.container_status(&container_id, false).await {
            Ok(response) => break response.status.ok_or("no container status")?,
            Err(err) => ensure!(Instant::now() < deadline, "no answer after restart: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    ensure!(
        status.state == ContainerState::ContainerRunning as i32 && alive(pid),
        "container not running after containerd was killed: {status:?}"
    );
    step("killed containerd restarted; client reconnected");

    // Tear down: container, then sandbox; nothing may be left.
    cri.stop_container(&container_id, Duration::from_secs(1))
        .await?;
    let status = cri
        .container_status(&container_id, false)
        .await?
        .status
        .ok_or("no container status")?;
    ensure!(
        status.state == ContainerState::ContainerExited as i32,
        "container not exited after stop: {status:?}"
    );
    cri.remove_container(&container_id).await?;
    match cri.container_status(&container_id, false).await {
        Err(err) if err.is_not_found() => {}
        other => return Err(format!("removed container still answers: {other:?}").into()),
    }
    cri.stop_pod_sandbox(&sandbox_id).await?;
    cri.remove_pod_sandbox(&sandbox_id).await?;
    step("container and sandbox removed");

    let sandboxes = cri.list_pod_sandbox(None).await?;
    ensure!(sandboxes.is_empty(), "sandboxes left: {sandboxes:?}");
    let containers = cri.list_containers(None).await?;
    ensure!(containers.is_empty(), "containers left: {containers:?}");
    let runc_state = env.paths.runc_root.join("k8s.io");
    let leftovers = fs::read_dir(&runc_state).map(|d| d.count()).unwrap_or(0);
    ensure!(
        leftovers == 0,
        "runc still has {leftovers} containers in {}",
        runc_state.display()
    );
    step("nothing left");
    Ok(())
}

/// The container's init process, from the verbose status containerd gives.
async fn container_pid(cri: &CriClient, id: &str) -> TestResult<u32> {
    let response = cri.container_status(id, true).await?;
    let info = response.info.get("info").ok_or("no verbose info")?;
    let info: serde_json::Value = serde_json::from_str(info)?;
    let pid = info["pid"].as_u64().ok_or("no pid in verbose info")?;
    Ok(u32::try_from(pid)?)
}

/// `<RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>`.
fn check_cri_log_line(line: &str) -> TestResult {
    let mut parts = line.splitn(4, ' ');
    let (ts, stream, tag, content) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let b = ts.as_bytes();
    let ts_ok = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && (ts.ends_with('Z') || ts[19..].contains(['+', '-']));
    ensure!(ts_ok, "not an RFC 3339 timestamp: {ts:?} in {line:?}");
    ensure!(stream == "stdout", "stream {stream:?} in {line:?}");
    ensure!(tag == "F", "tag {tag:?} in {line:?}");
    ensure!(
        content == "hello-from-kedge",
        "content {content:?} in {line:?}"
    );
    Ok(())
}

fn in_cidr(ip: &str, cidr: &str) -> bool {
    let (Ok(ip), Ok(net)) = (ip.parse::<Ipv4Addr>(), PodCidr::parse(cidr)) else {
        return false;
    };
    let std::net::IpAddr::V4(base) = net.addr else {
        return false;
    };
    let mask = u32::MAX
        .checked_shl(32 - u32::from(net.prefix))
        .unwrap_or(0);
    u32::from(ip) & mask == u32::from(base)
}

/// Everything the test created, and the cleanup of it.
struct TestEnv {
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
    paths: ContainerdPaths,
    bridge: String,
    network_name: String,
    supervisor: Option<ContainerdSupervisor>,
    containerd_pid: Option<u32>,
    cri: Option<CriClient>,
    /// Sandbox and container ids, for cleaning libcni's global cache.
    ids: Vec<String>,
    cleaned: bool,
}

impl TestEnv {
    fn new() -> TestResult<TestEnv> {
        let dir = tempfile::Builder::new().prefix("kedge-cri-").tempdir()?;
        let dir_path = dir.path().to_owned();
        let pid = std::process::id();
        Ok(TestEnv {
            paths: ContainerdPaths::new(&dir_path),
            dir: Some(dir),
            dir_path,
            // IFNAMSIZ: at most 15 bytes.
            bridge: format!("kt{:x}", pid % 0xfff_ffff),
            network_name: format!("kedge-test-{pid}"),
            supervisor: None,
            containerd_pid: None,
            cri: None,
            ids: Vec::new(),
            cleaned: false,
        })
    }

    fn dir(&self) -> &Path {
        &self.dir_path
    }

    /// Start containerd under a supervisor; returns its socket.
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

    /// The polite part: remove what CRI still lists (so CNI DEL runs), then
    /// stop containerd through its supervisor.
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
                eprintln!("cri_lifecycle: containerd shutdown: {err}");
            }
        }
    }

    /// The forceful part, also run from `Drop` after a panic. Returns what
    /// could not be cleaned.
    fn clean_up(&mut self) -> Result<(), String> {
        if self.cleaned {
            return Ok(());
        }
        self.cleaned = true;
        let mut problems = Vec::new();
        // Stop supervising first so nothing restarts containerd.
        drop(self.supervisor.take());
        if let Some(pid) = self.containerd_pid {
            let config = self.paths.config_file.as_os_str().as_bytes().to_vec();
            kill_and_wait(pid, |cmdline| contains(cmdline, &config));
        }
        // Containers runc still knows (their processes), then their shims.
        let runc_state = self.paths.runc_root.join("k8s.io");
        if let Ok(entries) = fs::read_dir(&runc_state) {
            for entry in entries.flatten() {
                let id = entry.file_name();
                self.ids.push(id.to_string_lossy().into_owned());
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
        // Mounts under our directory (rootfs, shm, netns pins), deepest first.
        let mut mounts = mounts_under(self.dir());
        mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
        for mount in mounts {
            if let Ok(target) = CString::new(mount.as_os_str().as_bytes()) {
                // SAFETY: `target` is a NUL-terminated path that outlives the call.
                unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
            }
        }
        if Path::new("/sys/class/net").join(&self.bridge).exists() {
            let _ = Command::new("ip")
                .args(["link", "delete", &self.bridge])
                .output();
            if Path::new("/sys/class/net").join(&self.bridge).exists() {
                problems.push(format!("cannot delete bridge {}", self.bridge));
            }
        }
        // libcni's result cache is global: drop the entries of our network
        // and of our sandboxes (the loopback network is containerd's "cni-loopback").
        if let Ok(entries) = fs::read_dir("/var/lib/cni/results") {
            let prefix = format!("{}-", self.network_name);
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let ours = name.starts_with(&prefix)
                    || self.ids.iter().any(|id| name.contains(&format!("-{id}-")));
                if ours {
                    let _ = fs::remove_file(entry.path());
                }
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
            eprintln!("cri_lifecycle: cleanup after failure: {err}");
        }
    }
}

/// SIGTERM, then SIGKILL after 5 s, to one pid whose command line still
/// satisfies `is_ours` (guarding against a recycled pid).
fn kill_and_wait(pid: u32, is_ours: impl Fn(&[u8]) -> bool) {
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

/// Mount points at or below `dir`, from /proc/self/mountinfo.
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

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn which(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|p| p.join(name))
        .find(|p| p.is_file())
}
