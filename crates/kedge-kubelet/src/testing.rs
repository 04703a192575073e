//! Forceful clean-up of a node agent's leftovers, for tests that run real
//! containerd: processes of one containerd (and its shims and containers),
//! mounts under a directory, a test bridge, libcni's cached results.
//!
//! Tests call these from `Drop` guards so a failed test leaves nothing
//! behind on a shared CI machine. Nothing here is used by the agent itself.

use std::ffi::{CString, OsString};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::ContainerdPaths;

/// Kills containerd of `paths`, every container its runc root knows and its
/// shims. Returns what was still running (a clean shutdown leaves nothing).
pub fn kill_containerd_and_pods(paths: &ContainerdPaths) -> Vec<String> {
    let mut left = Vec::new();
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

/// Drops libcni's cached results of `network_name` and of containers `ids`.
pub fn forget_cni_results(network_name: &str, ids: &[String]) {
    if let Ok(entries) = fs::read_dir("/var/lib/cni/results") {
        let prefix = format!("{network_name}-");
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours =
                name.starts_with(&prefix) || ids.iter().any(|id| name.contains(&format!("-{id}-")));
            if ours {
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
