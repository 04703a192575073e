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

/// Bad flags: one line on stderr naming the problem and the help of the
/// subcommand it is about, exit code 2, nothing started.
#[test]
fn bad_flags_get_one_line_and_the_right_help() {
    let data = tempfile::tempdir().expect("tmp");
    let data_dir = data.path().display().to_string();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kedge"))
            .args(args)
            .output()
            .expect("run kedge");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stderr)
    };
    let (code, stderr) = run(&[
        "server",
        "--data-dir",
        &data_dir,
        "--eviction-hard",
        "memory.available<0",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("must be positive"), "{stderr}");
    assert!(stderr.contains("(see 'kedge server --help')"), "{stderr}");

    let (code, stderr) = run(&["agent", "--no-such-flag"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("(see 'kedge agent --help')"), "{stderr}");

    let (code, stderr) = run(&["--no-such-flag"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("(see 'kedge --help')"), "{stderr}");
    // Nothing was created for the refused server.
    assert_eq!(std::fs::read_dir(data.path()).expect("dir").count(), 0);
}
