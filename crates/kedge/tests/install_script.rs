//! packaging/install.sh under a temporary root (`INSTALL_KEDGE_ROOT`, a
//! testing-only prefix under which every file goes and with which systemctl
//! is never called): the files it writes, twice in a row, server and agent.

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
    let mut cmd = Command::new("sh");
    cmd.arg(script())
        .env("INSTALL_KEDGE_ROOT", root)
        .env("INSTALL_KEDGE_BIN", env!("CARGO_BIN_EXE_kedge"))
        .env("INSTALL_KEDGE_SKIP_START", "true")
        .env_remove("KEDGE_URL")
        .env_remove("KEDGE_TOKEN")
        .env_remove("INSTALL_KEDGE_EXEC");
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
