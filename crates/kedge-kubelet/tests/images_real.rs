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

mod common;

use std::fs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kedge_kubelet::cri::api::{NamespaceMode, PodSandboxState};
use kedge_kubelet::cri::image_spec;
use kedge_kubelet::images::{
    ensure_pause_image, pause_image, ImageImporter, PauseImageOutcome, PAUSE_BINARY, PAUSE_IMAGE,
};
use kedge_kubelet::test_ensure as ensure;
use kedge_kubelet::testing::{RealRuntimeEnv, TestError, TEST_BUSYBOX_IMAGE as BUSYBOX_IMAGE};
use kedge_kubelet::{ImageService, RuntimeService};

type TestResult<T = ()> = Result<T, TestError>;

const TEST_BUDGET: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_images_dir_on_real_containerd() {
    common::init_tracing();
    RealRuntimeEnv::run(
        "pause_and_images_dir_on_real_containerd",
        "images",
        TEST_BUDGET,
        |env| Box::pin(scenario(env)),
    )
    .await;
}

async fn scenario(env: &mut RealRuntimeEnv) -> TestResult {
    let t0 = Instant::now();
    let step = |name: &str| eprintln!("images_real: {:>6} ms  {name}", t0.elapsed().as_millis());
    eprintln!(
        "images_real: embedded pause binary {} bytes, image tarball {} bytes",
        PAUSE_BINARY.len(),
        pause_image().bytes.len()
    );

    let config = env.containerd_config();
    env.start_containerd(&config).await?;
    let cri = env.connect(&config).await?;
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
    // Host network means the host's UTS namespace: no hostname of its own.
    let sandbox_config =
        env.sandbox_config("images-real", "kedge-test", &uid, NamespaceMode::Node)?;
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
    let built = env.build_test_images().await?;
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
