//! `kedge check-config` on this machine: every host requirement gets a line
//! and the exit code says whether a required one is missing.

use std::process::Command;

const CHECKS: [&str; 17] = [
    "kernel version",
    "cgroups",
    "cgroup controller cpu",
    "cgroup controller memory",
    "cgroup controller pids",
    "overlayfs",
    "kernel module bridge",
    "kernel module br_netfilter",
    "kernel module veth",
    "kernel module overlay",
    "iptables or nft",
    "containerd",
    "runc",
    "CNI plugins",
    "negative OOM scores",
    "free disk",
    "available memory",
];

#[test]
fn check_config_lists_every_requirement_and_exits_accordingly() {
    let data = tempfile::tempdir().expect("tmp");
    let out = Command::new(env!("CARGO_BIN_EXE_kedge"))
        .args(["check-config", "--data-dir"])
        .arg(data.path())
        .output()
        .expect("run kedge check-config");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    for name in CHECKS {
        let line = lines
            .iter()
            .find(|l| {
                l.get(18..)
                    .is_some_and(|rest| rest.trim_end().starts_with(name))
            })
            .unwrap_or_else(|| panic!("no line for {name:?} in:\n{stdout}"));
        assert!(
            line.starts_with("ok ") || line.starts_with("MISSING ") || line.starts_with("warn "),
            "{line}"
        );
        assert!(
            line.contains("required") || line.contains("optional"),
            "{line}"
        );
    }
    let missing = lines.iter().filter(|l| l.starts_with("MISSING ")).count();
    assert!(
        stdout.contains(&format!(
            "{} checks: {missing} required missing",
            CHECKS.len()
        )),
        "{stdout}"
    );
    assert_eq!(
        out.status.code(),
        Some(if missing > 0 { 1 } else { 0 }),
        "{stdout}"
    );
}
