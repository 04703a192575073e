//! `kedge check-config`: every host requirement, one line each, and
//! whether it holds.
//!
//! The checks read files under a host root (`/` on a real host, a fake tree
//! in tests). The two probes that act on the live kernel (mounting a scratch
//! overlay, setting a child's OOM score) run only when the root is `/`.

use std::fmt;
use std::path::{Path, PathBuf};

/// Oldest kernel kedge supports: cgroup v2 with the pids controller, overlayfs
/// with the features containerd's snapshotter uses, `br_netfilter` as a module.
const MIN_KERNEL: (u32, u32) = (4, 15);
/// Free space under the data dir below which kedge will not run well
/// (datastore, images, pod logs).
const MIN_FREE_DISK: u64 = 1 << 30;
/// Memory available below which pods will hardly fit beside kedge.
const MIN_AVAILABLE_MEMORY: u64 = 256 << 20;
/// The CNI plugins the node agent's network configuration names.
const CNI_PLUGINS: [&str; 4] = ["bridge", "host-local", "loopback", "portmap"];
const CNI_DIRS: [&str; 2] = ["usr/lib/cni", "opt/cni/bin"];
const BIN_DIRS: [&str; 6] = [
    "usr/local/sbin",
    "usr/local/bin",
    "usr/sbin",
    "usr/bin",
    "sbin",
    "bin",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Required,
    Optional,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub need: Need,
    pub ok: bool,
    pub detail: String,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match (self.ok, self.need) {
            (true, _) => "ok",
            (false, Need::Required) => "MISSING",
            (false, Need::Optional) => "warn",
        };
        let need = match self.need {
            Need::Required => "required",
            Need::Optional => "optional",
        };
        write!(f, "{status:<8}{need:<10}{:<28}{}", self.name, self.detail)
    }
}

fn check(name: &str, need: Need, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        name: name.to_owned(),
        need,
        ok,
        detail: detail.into(),
    }
}

/// Every check, in the order they are printed.
pub fn run_checks(root: &Path, data_dir: &Path) -> Vec<Check> {
    let live = root == Path::new("/");
    let mut out = vec![kernel(root)];
    out.extend(cgroups(root));
    out.push(overlay(root, data_dir, live));
    let config = kernel_config(root);
    for (module, symbol, need, dir) in [
        ("bridge", "CONFIG_BRIDGE", Need::Required, None),
        (
            "br_netfilter",
            "CONFIG_BRIDGE_NETFILTER",
            Need::Required,
            Some("proc/sys/net/bridge"),
        ),
        ("veth", "CONFIG_VETH", Need::Required, None),
        ("overlay", "CONFIG_OVERLAY_FS", Need::Optional, None),
    ] {
        let sym = config.as_deref().map(|c| config_value(c, symbol));
        out.push(kernel_module(root, module, need, dir, sym));
    }
    out.push(firewall(root));
    for bin in ["containerd", "runc"] {
        let found = find_binary(root, bin);
        out.push(check(
            bin,
            Need::Required,
            found.is_some(),
            match found {
                Some(p) => format!("found at /{}", p.display()),
                None => format!("not found in {}", bin_dirs_text()),
            },
        ));
    }
    out.push(cni_plugins(root));
    out.push(oom_score(live));
    out.push(free_disk(root, data_dir));
    out.push(free_memory(root));
    out
}

fn read(root: &Path, rel: &str) -> Option<String> {
    std::fs::read_to_string(root.join(rel)).ok()
}

fn kernel(root: &Path) -> Check {
    let release = read(root, "proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.parse::<u32>().ok());
    let version = parts.next().zip(parts.next());
    let need = format!("need >= {}.{}", MIN_KERNEL.0, MIN_KERNEL.1);
    match version {
        Some(v) => check(
            "kernel version",
            Need::Required,
            v >= MIN_KERNEL,
            format!("{release} ({need})"),
        ),
        None => check(
            "kernel version",
            Need::Required,
            false,
            format!("cannot read /proc/sys/kernel/osrelease ({need})"),
        ),
    }
}

fn cgroups(root: &Path) -> Vec<Check> {
    let mut out = Vec::new();
    let enabled: Vec<String>;
    if let Some(controllers) = read(root, "sys/fs/cgroup/cgroup.controllers") {
        out.push(check("cgroups", Need::Required, true, "v2 (unified)"));
        enabled = controllers.split_whitespace().map(str::to_owned).collect();
    } else if let Some(table) = read(root, "proc/cgroups") {
        out.push(check("cgroups", Need::Required, true, "v1"));
        // subsys_name hierarchy num_cgroups enabled
        enabled = table
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 4 && f[3] == "1").then(|| f[0].to_owned())
            })
            .collect();
    } else {
        out.push(check(
            "cgroups",
            Need::Required,
            false,
            "neither /sys/fs/cgroup/cgroup.controllers nor /proc/cgroups",
        ));
        enabled = Vec::new();
    }
    for c in ["cpu", "memory", "pids"] {
        let ok = enabled.iter().any(|e| e == c);
        let detail = if ok {
            "enabled".to_owned()
        } else if c == "memory" {
            "not enabled (add cgroup_enable=memory cgroup_memory=1 to the kernel command line)"
                .to_owned()
        } else {
            "not enabled".to_owned()
        };
        out.push(check(
            &format!("cgroup controller {c}"),
            Need::Required,
            ok,
            detail,
        ));
    }
    out
}

fn overlay(root: &Path, data_dir: &Path, live: bool) -> Check {
    let listed = read(root, "proc/filesystems")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"));
    let name = "overlayfs";
    // Where the module is not loaded yet, the mount probe loads it.
    if live && nix_is_root() {
        let dir = existing_ancestor(data_dir);
        let ok = kedge_kubelet::host::overlay_usable(&dir);
        return check(
            name,
            Need::Optional,
            ok,
            if ok {
                format!("a scratch overlay mounted under {}", dir.display())
            } else {
                format!(
                    "cannot mount an overlay under {}: containerd will use the slower native snapshotter",
                    dir.display()
                )
            },
        );
    }
    check(
        name,
        Need::Optional,
        listed,
        if listed {
            "listed in /proc/filesystems (mount probe needs root)"
        } else {
            "not in /proc/filesystems: containerd will use the slower native snapshotter"
        },
    )
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The kernel's build configuration: `/proc/config.gz` or
/// `/boot/config-<release>`.
fn kernel_config(root: &Path) -> Option<String> {
    use std::io::Read;
    if let Ok(f) = std::fs::File::open(root.join("proc/config.gz")) {
        let mut text = String::new();
        if flate2::read::GzDecoder::new(f)
            .read_to_string(&mut text)
            .is_ok()
        {
            return Some(text);
        }
    }
    let release = read(root, "proc/sys/kernel/osrelease")?;
    read(root, &format!("boot/config-{}", release.trim()))
}

/// `y`, `m` or `n` (not set) for a `CONFIG_` symbol.
fn config_value(config: &str, symbol: &str) -> char {
    config
        .lines()
        .find_map(|l| l.strip_prefix(symbol)?.strip_prefix('='))
        .and_then(|v| v.chars().next())
        .unwrap_or('n')
}

/// A loaded module, a built-in, or one `modprobe` can load. `config` is the
/// kernel configuration's value for the module's symbol, when known.
fn kernel_module(
    root: &Path,
    module: &str,
    need: Need,
    proof_dir: Option<&str>,
    config: Option<char>,
) -> Check {
    let name = format!("kernel module {module}");
    let loaded = read(root, "proc/modules")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().next() == Some(module))
        || root.join("sys/module").join(module).exists()
        || proof_dir.is_some_and(|d| root.join(d).exists());
    if loaded {
        return check(&name, need, true, "loaded or built in");
    }
    let release = read(root, "proc/sys/kernel/osrelease").unwrap_or_default();
    let moddir = root.join("lib/modules").join(release.trim());
    let listed = |file: &str| {
        std::fs::read_to_string(moddir.join(file))
            .unwrap_or_default()
            .lines()
            .any(|l| {
                let path = l.split(':').next().unwrap_or("");
                let base = path.rsplit('/').next().unwrap_or("");
                base.split('.').next() == Some(module)
            })
    };
    if listed("modules.builtin") || config == Some('y') {
        check(&name, need, true, "built in")
    } else if listed("modules.dep") {
        check(&name, need, true, format!("loadable (modprobe {module})"))
    } else if config == Some('m') {
        check(
            &name,
            need,
            false,
            format!(
                "built as a module but not loaded and not found under /lib/modules/{}",
                release.trim()
            ),
        )
    } else {
        check(
            &name,
            need,
            false,
            "not loaded, not built in, no module file found",
        )
    }
}

fn bin_dirs_text() -> String {
    BIN_DIRS.map(|d| format!("/{d}")).join(":")
}

/// The binary under one of the usual `PATH` directories, relative to root.
fn find_binary(root: &Path, name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    BIN_DIRS.iter().map(|d| Path::new(d).join(name)).find(|p| {
        std::fs::metadata(root.join(p))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

fn firewall(root: &Path) -> Check {
    let found: Vec<String> = ["iptables", "nft"]
        .iter()
        .filter_map(|b| find_binary(root, b).map(|p| format!("/{}", p.display())))
        .collect();
    check(
        "iptables or nft",
        Need::Required,
        !found.is_empty(),
        if found.is_empty() {
            format!("neither found in {}", bin_dirs_text())
        } else {
            found.join(", ")
        },
    )
}

fn cni_plugins(root: &Path) -> Check {
    for dir in CNI_DIRS {
        let missing: Vec<&str> = CNI_PLUGINS
            .iter()
            .copied()
            .filter(|p| !root.join(dir).join(p).is_file())
            .collect();
        if missing.is_empty() {
            return check(
                "CNI plugins",
                Need::Required,
                true,
                format!("{} in /{dir}", CNI_PLUGINS.join(", ")),
            );
        }
    }
    check(
        "CNI plugins",
        Need::Required,
        false,
        format!(
            "need {} in /{} or /{}",
            CNI_PLUGINS.join(", "),
            CNI_DIRS[0],
            CNI_DIRS[1]
        ),
    )
}

fn oom_score(live: bool) -> Check {
    let name = "negative OOM scores";
    if !live {
        return check(name, Need::Optional, true, "not probed (fake host root)");
    }
    let restricted = kedge_kubelet::host::oom_score_adj_restricted();
    check(
        name,
        Need::Optional,
        !restricted,
        if restricted {
            "refused here: kedge sets containerd's restrict_oom_score_adj"
        } else {
            "allowed"
        },
    )
}

fn existing_ancestor(p: &Path) -> PathBuf {
    p.ancestors()
        .find(|a| a.is_dir())
        .unwrap_or(Path::new("/"))
        .to_path_buf()
}

fn free_disk(root: &Path, data_dir: &Path) -> Check {
    let rel = data_dir.strip_prefix("/").unwrap_or(data_dir);
    let dir = existing_ancestor(&root.join(rel));
    let name = "free disk";
    let need = format!(
        "need >= {} under {}",
        human(MIN_FREE_DISK),
        data_dir.display()
    );
    match statvfs_free(&dir) {
        Some(free) => check(
            name,
            Need::Required,
            free >= MIN_FREE_DISK,
            format!("{} free on {} ({need})", human(free), dir.display()),
        ),
        None => check(
            name,
            Need::Required,
            false,
            format!("cannot statvfs {}", dir.display()),
        ),
    }
}

fn statvfs_free(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain old data; zeroed is a valid value for it.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid, writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

fn free_memory(root: &Path) -> Check {
    let name = "available memory";
    let info = read(root, "proc/meminfo").unwrap_or_default();
    let field = |key: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kb| kb * 1024)
    };
    match (field("MemAvailable:"), field("MemTotal:")) {
        (Some(avail), total) => check(
            name,
            Need::Optional,
            avail >= MIN_AVAILABLE_MEMORY,
            format!(
                "{} available of {} (want >= {})",
                human(avail),
                total.map(human).unwrap_or_else(|| "?".into()),
                human(MIN_AVAILABLE_MEMORY)
            ),
        ),
        (None, _) => check(name, Need::Optional, false, "cannot read /proc/meminfo"),
    }
}

fn human(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    if bytes as f64 >= GIB {
        format!("{:.1} GiB", bytes as f64 / GIB)
    } else {
        format!("{:.0} MiB", bytes as f64 / MIB)
    }
}

/// Print every check; exit code 1 when something required is missing.
pub fn print_report(checks: &[Check]) -> std::process::ExitCode {
    for c in checks {
        println!("{c}");
    }
    let missing = checks
        .iter()
        .filter(|c| !c.ok && c.need == Need::Required)
        .count();
    let warnings = checks
        .iter()
        .filter(|c| !c.ok && c.need == Need::Optional)
        .count();
    println!(
        "{} checks: {missing} required missing, {warnings} optional warnings",
        checks.len()
    );
    if missing > 0 {
        std::process::ExitCode::from(1)
    } else {
        std::process::ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
    }

    fn exe(root: &Path, rel: &str) {
        use std::os::unix::fs::PermissionsExt;
        write(root, rel, "#!/bin/sh\n");
        std::fs::set_permissions(root.join(rel), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }

    fn by_name<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check {name}"))
    }

    /// A host with everything kedge needs.
    fn good_host(root: &Path) {
        write(root, "proc/sys/kernel/osrelease", "6.1.0-18-amd64\n");
        write(
            root,
            "sys/fs/cgroup/cgroup.controllers",
            "cpuset cpu io memory hugetlb pids\n",
        );
        write(
            root,
            "proc/filesystems",
            "nodev\ttmpfs\nnodev\toverlay\n\text4\n",
        );
        write(
            root,
            "proc/modules",
            "br_netfilter 32768 0 - Live 0x0\nbridge 311296 1 br_netfilter, Live 0x0\n",
        );
        write(
            root,
            "boot/config-6.1.0-18-amd64",
            "CONFIG_VETH=y\nCONFIG_BRIDGE=m\n",
        );
        write(
            root,
            "lib/modules/6.1.0-18-amd64/modules.dep",
            "kernel/fs/overlayfs/overlay.ko.xz:\n",
        );
        exe(root, "usr/sbin/nft");
        exe(root, "usr/bin/containerd");
        exe(root, "usr/sbin/runc");
        for p in CNI_PLUGINS {
            exe(root, &format!("usr/lib/cni/{p}"));
        }
        write(
            root,
            "proc/meminfo",
            "MemTotal: 2000000 kB\nMemFree: 100 kB\nMemAvailable: 1500000 kB\n",
        );
    }

    #[test]
    fn a_good_host_passes_every_check() {
        let root = tempfile::tempdir().expect("tmp");
        good_host(root.path());
        let checks = run_checks(root.path(), Path::new("/var/lib/kedge"));
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.to_string())
            .collect();
        // Free disk depends on the filesystem holding the temp dir.
        assert!(
            failed.iter().all(|f| f.contains("free disk")),
            "failed: {failed:#?}"
        );
        assert_eq!(by_name(&checks, "cgroups").detail, "v2 (unified)");
        assert_eq!(
            by_name(&checks, "kernel module overlay").detail,
            "loadable (modprobe overlay)"
        );
        assert_eq!(by_name(&checks, "kernel module veth").detail, "built in");
    }

    #[test]
    fn missing_pieces_are_reported() {
        let root = tempfile::tempdir().expect("tmp");
        let r = root.path();
        write(r, "proc/sys/kernel/osrelease", "4.9.0\n");
        write(
            r,
            "proc/cgroups",
            "#subsys_name hierarchy num_cgroups enabled\ncpu 2 1 1\nmemory 0 1 0\npids 3 1 1\n",
        );
        exe(r, "opt/cni/bin/bridge");
        let checks = run_checks(r, Path::new("/var/lib/kedge"));
        assert!(!by_name(&checks, "kernel version").ok);
        assert_eq!(by_name(&checks, "cgroups").detail, "v1");
        assert!(by_name(&checks, "cgroup controller cpu").ok);
        let mem = by_name(&checks, "cgroup controller memory");
        assert!(!mem.ok && mem.detail.contains("cgroup_enable=memory"));
        for name in [
            "containerd",
            "runc",
            "CNI plugins",
            "iptables or nft",
            "kernel module br_netfilter",
        ] {
            let c = by_name(&checks, name);
            assert!(!c.ok && c.need == Need::Required, "{c}");
        }
        let overlay = by_name(&checks, "overlayfs");
        assert!(!overlay.ok && overlay.need == Need::Optional);
        assert!(by_name(&checks, "kernel module overlay")
            .to_string()
            .starts_with("warn"));
        assert!(by_name(&checks, "runc")
            .to_string()
            .starts_with("MISSING required"));
        assert_eq!(print_report(&checks), std::process::ExitCode::from(1));
    }
}
