//! Facts about the host that decide how containerd is configured.
//!
//! Three probes, each answering by trying the real thing rather than by
//! guessing from version numbers:
//!
//! - [`oom_score_adj_restricted`]: may this process give another process a
//!   negative `oom_score_adj`? containerd gives every pod sandbox -998; where
//!   the kernel refuses (unprivileged LXC, some VMs: `EACCES`/`EPERM`/`EIO`),
//!   runc dies with `can't get final child's PID from pipe: EOF` unless the
//!   CRI plugin's `restrict_oom_score_adj` clamps the value.
//! - [`lxc_like_host`]: are we inside a system container (LXC, LXD, a user
//!   namespace)? Such hosts get `restrict_oom_score_adj` whatever the probe says.
//! - [`overlay_usable`]: can an overlay filesystem be mounted on the
//!   filesystem that will hold containerd's root? If not, containerd uses the
//!   `native` snapshotter (copies, slower, but works everywhere).

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Stdio};

use tracing::{debug, info};

/// What the probes found, kept together so the caller can log it once and
/// build a [`crate::ContainerdConfig`] from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFacts {
    /// A process here cannot be given a negative `oom_score_adj`.
    pub oom_score_adj_restricted: bool,
    /// The host looks like an LXC-style system container.
    pub lxc_like: bool,
    /// An overlay mount worked on the filesystem of containerd's root.
    pub overlay_usable: bool,
}

impl HostFacts {
    /// Run every probe. `containerd_root` is created if missing; the overlay
    /// probe mounts (and unmounts) a scratch overlay inside it.
    pub fn probe(containerd_root: &Path) -> HostFacts {
        let facts = HostFacts {
            oom_score_adj_restricted: oom_score_adj_restricted(),
            lxc_like: lxc_like_host(),
            overlay_usable: overlay_usable(containerd_root),
        };
        info!(
            oom_score_adj_restricted = facts.oom_score_adj_restricted,
            lxc_like = facts.lxc_like,
            overlay_usable = facts.overlay_usable,
            "probed host for containerd"
        );
        facts
    }

    /// Whether containerd's CRI plugin must clamp OOM scores.
    pub fn restrict_oom_score_adj(&self) -> bool {
        self.oom_score_adj_restricted || self.lxc_like
    }
}

/// True when this process cannot set a negative `oom_score_adj` on a process
/// it starts, which is what containerd does for every pod sandbox.
///
/// The probe starts a short-lived child (`sleep`), writes -998 to its
/// `/proc/<pid>/oom_score_adj`, and kills it: our own score is never touched
/// (lowering it would also lower the floor our children may reach). If the
/// child cannot be started, the answer is `true`: clamping is always safe,
/// it only costs guaranteed pods their lower OOM score.
pub fn oom_score_adj_restricted() -> bool {
    let child = Command::new("sleep")
        .arg("30")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(err) => {
            debug!(error = %err, "cannot start a probe child; assuming oom_score_adj is restricted");
            return true;
        }
    };
    let path = format!("/proc/{}/oom_score_adj", child.id());
    let result = fs::write(&path, b"-998\n");
    // The child is ours and not yet reaped, so its pid cannot have been reused.
    let _ = child.kill();
    let _ = child.wait();
    match result {
        Ok(()) => false,
        Err(err) => {
            debug!(error = %err, "negative oom_score_adj refused");
            true
        }
    }
}

/// True inside LXC/LXD-style system containers and user namespaces, where
/// negative OOM scores and several sysctls are off limits.
pub fn lxc_like_host() -> bool {
    lxc_like_from(
        fs::read_to_string("/run/systemd/container").ok().as_deref(),
        fs::read("/proc/1/environ").ok().as_deref(),
        fs::read_to_string("/proc/self/uid_map").ok().as_deref(),
        Path::new("/dev/lxd").exists() || Path::new("/dev/.lxc-boot-id").exists(),
    )
}

fn lxc_like_from(
    systemd_container: Option<&str>,
    init_environ: Option<&[u8]>,
    uid_map: Option<&str>,
    lxc_marker_files: bool,
) -> bool {
    let is_lxc = |value: &str| value.trim().starts_with("lxc");
    if systemd_container.is_some_and(is_lxc) {
        return true;
    }
    if let Some(environ) = init_environ {
        let lxc_env = environ
            .split(|b| *b == 0)
            .filter_map(|var| var.strip_prefix(b"container="))
            .any(|value| is_lxc(&String::from_utf8_lossy(value)));
        if lxc_env {
            return true;
        }
    }
    // The initial user namespace maps all 2^32 ids onto themselves; anything
    // else is a user namespace, as in unprivileged containers.
    if let Some(map) = uid_map {
        let fields: Vec<&str> = map.split_whitespace().collect();
        if fields != ["0", "0", "4294967295"] {
            return true;
        }
    }
    lxc_marker_files
}

/// True when an overlay filesystem can be mounted under `dir` (created if
/// missing): a scratch lower/upper/work/merged set is mounted, a file from the
/// lower layer is looked up through it, and everything is removed again.
pub fn overlay_usable(dir: &Path) -> bool {
    match try_overlay_mount(dir) {
        Ok(()) => true,
        Err(err) => {
            info!(dir = %dir.display(), error = %err, "overlayfs is not usable; containerd will use the native snapshotter");
            false
        }
    }
}

fn try_overlay_mount(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let scratch = dir.join(format!(".kedge-overlay-probe-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    let result = overlay_mount_in(&scratch);
    let _ = fs::remove_dir_all(&scratch);
    result
}

fn overlay_mount_in(scratch: &Path) -> io::Result<()> {
    let lower = scratch.join("lower");
    let upper = scratch.join("upper");
    let work = scratch.join("work");
    let merged = scratch.join("merged");
    for d in [&lower, &upper, &work, &merged] {
        fs::create_dir_all(d)?;
    }
    fs::write(lower.join("probe"), b"kedge")?;
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let source = c"overlay";
    let target = cstring(merged.as_os_str().as_bytes())?;
    let data = cstring(options.as_bytes())?;
    // SAFETY: every pointer is a NUL-terminated string owned by this frame
    // (`source` is a static C string literal; `target` and `data` live until
    // the end of the function), and mount(2) only reads them.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            source.as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let seen = fs::read(merged.join("probe"));
    // SAFETY: `target` is a valid NUL-terminated path owned by this frame.
    let rc = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    match seen {
        Ok(bytes) if bytes == b"kedge" => Ok(()),
        Ok(_) => Err(io::Error::other("overlay showed the wrong content")),
        Err(err) => Err(err),
    }
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST_UID_MAP: &str = "         0          0 4294967295\n";

    #[test]
    fn plain_host_is_not_lxc() {
        assert!(!lxc_like_from(
            Some("docker\n"),
            Some(b"HOME=/\0container=docker\0"),
            Some(HOST_UID_MAP),
            false
        ));
        assert!(!lxc_like_from(None, None, None, false));
    }

    #[test]
    fn lxc_is_seen_from_each_signal() {
        assert!(lxc_like_from(Some("lxc\n"), None, None, false));
        assert!(lxc_like_from(Some("lxc-libvirt"), None, None, false));
        assert!(lxc_like_from(
            None,
            Some(b"PATH=/bin\0container=lxc\0"),
            None,
            false
        ));
        assert!(lxc_like_from(None, None, Some("0 100000 65536\n"), false));
        assert!(lxc_like_from(None, None, Some(HOST_UID_MAP), true));
    }

    #[test]
    fn restriction_combines_both_signals() {
        let facts = HostFacts {
            oom_score_adj_restricted: false,
            lxc_like: true,
            overlay_usable: true,
        };
        assert!(facts.restrict_oom_score_adj());
        let facts = HostFacts {
            lxc_like: false,
            ..facts
        };
        assert!(!facts.restrict_oom_score_adj());
    }

    #[test]
    fn probes_do_not_panic() {
        // Their answers depend on the machine; they must answer either way.
        let _ = oom_score_adj_restricted();
        let _ = lxc_like_host();
        let dir = tempfile::tempdir().expect("tempdir");
        let _ = overlay_usable(dir.path());
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("read_dir")
            .collect::<Result<_, _>>()
            .expect("entries");
        assert!(leftovers.is_empty(), "overlay probe left {leftovers:?}");
    }
}
