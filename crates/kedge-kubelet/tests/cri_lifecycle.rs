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

mod common;

use std::collections::HashMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kedge_kubelet::cri::api::{
    ContainerConfig, ContainerMetadata, ContainerState, NamespaceMode, PodSandboxState,
};
use kedge_kubelet::cri::image_spec;
use kedge_kubelet::test_ensure as ensure;
use kedge_kubelet::testing::{
    self, alive, RealRuntimeEnv, TestError, TEST_BUSYBOX_IMAGE as BUSYBOX_IMAGE,
    TEST_PAUSE_IMAGE as PAUSE_IMAGE,
};
use kedge_kubelet::{ContainerdSupervisor, CriClient, ImageService, PodCidr, RuntimeService};

type TestResult<T = ()> = Result<T, TestError>;

/// Test-only pod network: never routed anywhere, never masqueraded.
const POD_CIDR: &str = "10.199.0.0/24";
/// The whole test, cleanup excluded, must fit in this.
const TEST_BUDGET: Duration = Duration::from_secs(45);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cri_pod_lifecycle_on_real_containerd() {
    common::init_tracing();
    RealRuntimeEnv::run(
        "cri_pod_lifecycle_on_real_containerd",
        "cri",
        TEST_BUDGET,
        |env| Box::pin(lifecycle(env)),
    )
    .await;
}

async fn lifecycle(env: &mut RealRuntimeEnv) -> TestResult {
    let t0 = Instant::now();
    let step = |name: &str| eprintln!("cri_lifecycle: {:>6} ms  {name}", t0.elapsed().as_millis());

    // Images, built from busybox-static and the pause program.
    let images = env.build_test_images().await?;
    step("test images built");

    // containerd's config from what this host allows, and the pod network.
    let config = env.containerd_config();
    env.write_test_network(&config, POD_CIDR)?;

    let socket = env.start_containerd(&config).await?;
    step("containerd ready");

    let cri = env.connect(&config).await?;
    let version = cri.version().await?;
    ensure!(
        version.runtime_name == "containerd" && version.runtime_api_version.starts_with("v1"),
        "unexpected runtime {version:?}"
    );
    step(&format!(
        "CRI ready: containerd {}",
        version.runtime_version
    ));

    RealRuntimeEnv::import_test_images(&cri, &images).await?;
    for name in [PAUSE_IMAGE, BUSYBOX_IMAGE] {
        let image = cri.image_status(image_spec(name), false).await?;
        ensure!(image.is_some(), "ImageStatus does not know {name}");
    }
    step("images imported");

    // The sandbox, on the bridge network.
    let uid = format!("{:x}-{}", testing::nanos(), std::process::id());
    let (name, namespace) = ("cri-lifecycle", "kedge-test");
    let mut sandbox_config = env.sandbox_config(name, namespace, &uid, NamespaceMode::Pod)?;
    sandbox_config.labels = HashMap::from([("kedge.test/uid".to_owned(), uid.clone())]);
    let log_dir = PathBuf::from(&sandbox_config.log_directory);
    fs::create_dir_all(log_dir.join("hello"))?;
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
