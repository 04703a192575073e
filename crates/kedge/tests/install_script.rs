//! packaging/install.sh under a temporary root (`INSTALL_KEDGE_ROOT`, a
//! testing-only prefix under which every file goes and with which systemctl
//! is never called): the files it writes, twice in a row, server and agent,
//! from a binary and from the .deb (installed by dpkg into the prefix).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/install.sh")
}

/// Whether `kedge check-config` passes on this host (the installer refuses
/// a host that fails it unless told to skip).
fn host_passes() -> bool {
    Command::new(env!("CARGO_BIN_EXE_kedge"))
        .arg("check-config")
        .output()
        .expect("check-config")
        .status
        .success()
}

fn install(root: &Path, env: &[(&str, &str)]) -> Output {
    let deb = env.iter().any(|(k, _)| *k == "INSTALL_KEDGE_DEB");
    install_with(&script(), root, env, !deb)
}

/// install.sh at `script`; `with_bin`: given the test build of kedge as
/// INSTALL_KEDGE_BIN (else it looks for a .deb).
fn install_with(script: &Path, root: &Path, env: &[(&str, &str)], with_bin: bool) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg(script)
        .env("INSTALL_KEDGE_ROOT", root)
        .env("INSTALL_KEDGE_SKIP_START", "true")
        .env_remove("KEDGE_URL")
        .env_remove("KEDGE_TOKEN")
        .env_remove("INSTALL_KEDGE_EXEC")
        .env_remove("INSTALL_KEDGE_DEB")
        .env_remove("INSTALL_KEDGE_BIN");
    if with_bin {
        cmd.env("INSTALL_KEDGE_BIN", env!("CARGO_BIN_EXE_kedge"));
    }
    if !host_passes() {
        cmd.env("INSTALL_KEDGE_SKIP_CHECK", "true");
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run install.sh")
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn installs_a_server_twice() {
    let root = tempfile::tempdir().expect("tmp");
    let r = root.path();
    for _ in 0..2 {
        let out = install(r, &[("KEDGE_TOKEN", "s3cret")]);
        assert!(
            out.status.success(),
            "install.sh: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let unit = read(r, "etc/systemd/system/kedge.service");
    for line in [
        "Type=notify",
        "KillMode=process",
        "Delegate=yes",
        "Restart=always",
        "LimitNOFILE=1048576",
        "TasksMax=infinity",
        "ExecStartPre=-/sbin/modprobe br_netfilter",
        "EnvironmentFile=-/etc/default/%N",
        "EnvironmentFile=-/etc/systemd/system/kedge.service.env",
        "ExecStart=/usr/local/bin/kedge server",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "{line} missing from:\n{unit}"
        );
    }
    assert_eq!(
        read(r, "etc/systemd/system/kedge.service.env"),
        "KEDGE_TOKEN=\"s3cret\"\n"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |rel: &str| {
        std::fs::metadata(r.join(rel))
            .expect(rel)
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("etc/systemd/system/kedge.service.env"), 0o600);
    for bin in ["kedge", "kedge-killall.sh", "kedge-uninstall.sh"] {
        assert_eq!(mode(&format!("usr/local/bin/{bin}")), 0o755, "{bin}");
    }
    // kedge has no built-in kubectl: no link to it.
    assert!(std::fs::symlink_metadata(r.join("usr/local/bin/kubectl")).is_err());
    let uninstall = read(r, "usr/local/bin/kedge-uninstall.sh");
    assert!(uninstall.contains("DATA_DIR='/var/lib/kedge'"));
    assert!(uninstall.contains("kedge-killall.sh"));
}

#[test]
fn installs_an_agent_with_exec_flags_and_bin_dir() {
    let root = tempfile::tempdir().expect("tmp");
    let r = root.path();
    let out = install(
        r,
        &[
            ("KEDGE_URL", "https://10.0.0.1:6443"),
            ("KEDGE_TOKEN", "t"),
            ("INSTALL_KEDGE_EXEC", "--node-label=site=a"),
            ("INSTALL_KEDGE_BIN_DIR", "/opt/kedge/bin"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unit = read(r, "etc/systemd/system/kedge-agent.service");
    assert!(
        unit.contains("ExecStart=/opt/kedge/bin/kedge agent --node-label=site=a"),
        "{unit}"
    );
    let env = read(r, "etc/systemd/system/kedge-agent.service.env");
    assert!(env.contains("KEDGE_URL=\"https://10.0.0.1:6443\""), "{env}");
    assert!(r.join("opt/kedge/bin/kedge").is_file());
    assert!(!r.join("etc/systemd/system/kedge.service").exists());
}

#[test]
fn an_agent_without_a_token_is_refused() {
    let root = tempfile::tempdir().expect("tmp");
    let out = install(root.path(), &[("KEDGE_URL", "https://10.0.0.1:6443")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("KEDGE_TOKEN"));
    assert!(!root.path().join("usr/local/bin/kedge").exists());
}

/// The .deb, built by scripts/build-deb from the test build of kedge, in
/// `dir` (as the release would ship it next to install.sh).
fn build_deb(dir: &Path) -> PathBuf {
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-deb"))
        .args(["--binary", env!("CARGO_BIN_EXE_kedge")])
        .arg("--out")
        .arg(dir)
        .args(["--compression", "gzip", "--compression-level", "1"])
        .output()
        .expect("run build-deb");
    assert!(
        out.status.success(),
        "build-deb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "install.sh: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn installs_the_deb_next_to_the_script_as_an_agent_twice() {
    // install.sh and one kedge_*.deb in a folder, as a release ships them.
    let release = tempfile::tempdir().expect("tmp");
    std::fs::copy(script(), release.path().join("install.sh")).expect("copy");
    build_deb(release.path());
    let root = tempfile::tempdir().expect("tmp");
    let r = root.path();
    let env = [
        ("KEDGE_URL", "https://10.0.0.1:6443"),
        ("KEDGE_TOKEN", "t"),
        ("INSTALL_KEDGE_EXEC", "--node-label=site=a"),
    ];
    for _ in 0..2 {
        assert_ok(&install_with(
            &release.path().join("install.sh"),
            r,
            &env,
            false,
        ));
    }
    // The package's files, registered with dpkg in the prefix.
    assert!(r.join("usr/bin/kedge").is_file());
    assert!(r.join("usr/bin/kedge-killall.sh").is_file());
    assert!(r.join("lib/systemd/system/kedge-agent.service").is_file());
    let status = Command::new("dpkg-query")
        .arg(format!("--root={}", r.display()))
        .args(["-W", "-f", "${Status}", "kedge"])
        .output()
        .expect("dpkg-query");
    assert_eq!(
        String::from_utf8_lossy(&status.stdout),
        "install ok installed"
    );
    // No unit and no binary of its own: a drop-in with the flags.
    assert!(!r.join("usr/local/bin/kedge").exists());
    assert!(!r.join("usr/local/bin/kedge-killall.sh").exists());
    assert!(!r.join("etc/systemd/system/kedge-agent.service").exists());
    let dropin = read(
        r,
        "etc/systemd/system/kedge-agent.service.d/10-kedge-install.conf",
    );
    let lines: Vec<&str> = dropin.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        [
            "[Service]",
            "ExecStart=",
            "ExecStart=/usr/bin/kedge agent --node-label=site=a"
        ]
    );
    let env_file = read(r, "etc/systemd/system/kedge-agent.service.env");
    assert!(
        env_file.contains("KEDGE_URL=\"https://10.0.0.1:6443\""),
        "{env_file}"
    );
    // Uninstalling is purging the package.
    let uninstall = read(r, "usr/local/bin/kedge-uninstall.sh");
    assert!(
        uninstall.contains("apt-get purge -y -q kedge"),
        "{uninstall}"
    );
    assert!(uninstall.contains("dpkg --purge kedge"), "{uninstall}");
}

#[test]
fn a_deb_server_without_flags_needs_no_dropin_and_replaces_a_binary_install() {
    let root = tempfile::tempdir().expect("tmp");
    let r = root.path();
    // First from the binary, then from the .deb: the package takes over.
    assert_ok(&install(r, &[]));
    assert!(r.join("etc/systemd/system/kedge.service").is_file());
    let debs = tempfile::tempdir().expect("tmp");
    let deb = build_deb(debs.path());
    let deb = deb.to_str().expect("utf8");
    assert_ok(&install(r, &[("INSTALL_KEDGE_DEB", deb)]));
    assert!(!r.join("etc/systemd/system/kedge.service").exists());
    assert!(!r.join("usr/local/bin/kedge").exists());
    assert!(!r.join("etc/systemd/system/kedge.service.d").exists());
    let unit = read(r, "lib/systemd/system/kedge.service");
    assert!(unit.contains("ExecStart=/usr/bin/kedge server"), "{unit}");
    // The package enabled the server unit (a link valid inside the root).
    assert_eq!(
        std::fs::read_link(r.join("etc/systemd/system/multi-user.target.wants/kedge.service"))
            .expect("kedge.service enabled"),
        Path::new("/lib/systemd/system/kedge.service")
    );
}

#[test]
fn a_missing_deb_is_refused() {
    let root = tempfile::tempdir().expect("tmp");
    let out = install(
        root.path(),
        &[("INSTALL_KEDGE_DEB", "/nonexistent/kedge_0_amd64.deb")],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("INSTALL_KEDGE_DEB"));
    assert!(!root.path().join("usr/bin/kedge").exists());
}
