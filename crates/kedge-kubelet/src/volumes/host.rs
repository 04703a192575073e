//! What volumes do to the host: tmpfs mounts, the mount table, fsGroup
//! ownership, and removing a pod's directory without leaving it.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Decodes the octal escapes (`\040` for a space) of /proc/self/mountinfo.
fn unescape_mount_field(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(oct, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of /proc/self/mountinfo: where, and which filesystem type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountEntry {
    pub mount_point: PathBuf,
    pub fs_type: String,
}

pub(crate) fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let mount_point = pre.split(' ').nth(4)?;
            let fs_type = post.split(' ').next()?;
            Some(MountEntry {
                mount_point: PathBuf::from(unescape_mount_field(mount_point)),
                fs_type: fs_type.to_string(),
            })
        })
        .collect()
}

pub(crate) fn mount_table() -> io::Result<Vec<MountEntry>> {
    Ok(parse_mountinfo(&fs::read_to_string(
        "/proc/self/mountinfo",
    )?))
}

/// The filesystem type mounted at `dir`, if `dir` is a mount point (the
/// last mount there wins, as the kernel shows it).
pub(crate) fn mounted_fs_type(dir: &Path) -> io::Result<Option<String>> {
    let dir = fs::canonicalize(dir)?;
    Ok(mount_table()?
        .into_iter()
        .rev()
        .find(|m| m.mount_point == dir)
        .map(|m| m.fs_type))
}

/// Mount points strictly below `root` (canonical), deepest first.
pub(crate) fn mounts_below(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = mount_table()?
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p != root && p.starts_with(root))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v.dedup();
    Ok(v)
}

fn cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// `mount -t tmpfs [-o size=N] tmpfs dir`.
pub(crate) fn mount_tmpfs(dir: &Path, size_bytes: Option<i64>) -> io::Result<()> {
    let target = cstring(dir)?;
    let data = size_bytes
        .filter(|s| *s > 0)
        .map(|s| format!("size={s}"))
        .unwrap_or_default();
    let data = CString::new(data)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad mount options"))?;
    // SAFETY: every pointer is a NUL-terminated string that outlives the
    // call (`target`, `data`, and the two literals); mount(2) only reads them.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// umount(2); a busy mount is detached lazily (the pod's containers are gone
/// by the time the agent tears volumes down).
pub(crate) fn unmount(dir: &Path) -> io::Result<()> {
    let target = cstring(dir)?;
    // SAFETY: `target` is a NUL-terminated string that outlives the call.
    let rc = unsafe { libc::umount2(target.as_ptr(), 0) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EBUSY) {
        return Err(e);
    }
    // SAFETY: as above.
    let rc = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

const RW_MASK: u32 = 0o660;
const RO_MASK: u32 = 0o440;
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// `requiresPermissionChange`: the root's group is not `gid`, or its mode
/// lacks the bits (and setgid) that ownership management would set.
pub(crate) fn requires_permission_change(root: &Path, gid: u32, read_only: bool) -> bool {
    let Ok(md) = fs::metadata(root) else {
        return true;
    };
    if md.gid() != gid || !md.is_dir() {
        return true;
    }
    let want = if read_only { RO_MASK } else { RW_MASK } | EXEC_MASK;
    let perm = md.permissions().mode();
    perm & want != want || perm & SETGID == 0
}

/// `SetVolumeOwnership`: every file and directory below `dir` (children
/// first, `dir` last) gets group `gid` and group read (and write unless
/// `read_only`); directories also get group exec and setgid. Symlinks are
/// re-grouped but never chmod-ed (that would change their target) nor
/// followed. With `on_root_mismatch` (fsGroupChangePolicy OnRootMismatch)
/// nothing is done when the root already looks right.
pub(crate) fn set_volume_ownership(
    dir: &Path,
    gid: u32,
    read_only: bool,
    on_root_mismatch: bool,
) -> io::Result<()> {
    if on_root_mismatch && !requires_permission_change(dir, gid, read_only) {
        tracing::debug!(dir = %dir.display(), "skipping ownership change (OnRootMismatch)");
        return Ok(());
    }
    fn change(path: &Path, md: &fs::Metadata, gid: u32, read_only: bool) -> io::Result<()> {
        if let Err(e) = std::os::unix::fs::lchown(path, None, Some(gid)) {
            tracing::warn!(path = %path.display(), error = %e, "lchown failed");
        }
        if md.file_type().is_symlink() {
            return Ok(());
        }
        let mut mask = if read_only { RO_MASK } else { RW_MASK };
        if md.is_dir() {
            mask |= SETGID | EXEC_MASK;
        }
        fs::set_permissions(
            path,
            fs::Permissions::from_mode((md.mode() & 0o7777) | mask),
        )
    }
    fn walk(path: &Path, md: &fs::Metadata, gid: u32, read_only: bool) -> io::Result<()> {
        if md.is_dir() {
            for entry in fs::read_dir(path)? {
                let entry = entry?;
                let child = entry.path();
                let cmd = fs::symlink_metadata(&child)?;
                walk(&child, &cmd, gid, read_only)?;
            }
        }
        change(path, md, gid, read_only)
    }
    let md = fs::symlink_metadata(dir)?;
    walk(dir, &md, gid, read_only)
}

/// Removes `root` and everything below it without following symlinks and
/// without crossing into another filesystem: a directory on another device
/// (a mount nobody unmounted) is an error, and nothing is removed in it.
pub(crate) fn remove_tree_on_one_device(root: &Path) -> io::Result<()> {
    let md = match fs::symlink_metadata(root) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !md.is_dir() {
        return fs::remove_file(root);
    }
    fn walk(dir: &Path, dev: u64) -> io::Result<()> {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            let md = fs::symlink_metadata(&path)?;
            if md.is_dir() {
                if md.dev() != dev {
                    return Err(io::Error::other(format!(
                        "{} is on another filesystem (still mounted?)",
                        path.display()
                    )));
                }
                walk(&path, dev)?;
                fs::remove_dir(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
        }
        Ok(())
    }
    walk(root, md.dev())?;
    fs::remove_dir(root)
}

/// Whether this process may mount (root).
#[cfg(test)]
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_parsing() {
        let text = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
            80 22 0:45 / /var/lib/kedge/pods/u\\0401/volumes rw - tmpfs tmpfs rw,size=1024k\n\
            bad line\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point, Path::new("/"));
        assert_eq!(m[0].fs_type, "ext4");
        assert_eq!(
            m[1].mount_point,
            Path::new("/var/lib/kedge/pods/u 1/volumes")
        );
        assert_eq!(m[1].fs_type, "tmpfs");
        assert_eq!(unescape_mount_field("a\\011b\\134"), "a\tb\\");
    }

    #[test]
    fn ownership_walk_sets_group_bits_and_setgid() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("vol");
        fs::create_dir_all(d.join("sub")).unwrap();
        fs::write(d.join("sub/f"), "x").unwrap();
        fs::set_permissions(d.join("sub/f"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(d.join("g"), "y").unwrap();
        fs::set_permissions(d.join("g"), fs::Permissions::from_mode(0o400)).unwrap();
        std::os::unix::fs::symlink("g", d.join("link")).unwrap();
        // A group the test process surely may give away files to: its own
        // (or any, as root).
        let gid = if is_root() {
            4321
        } else {
            fs::metadata(&d).unwrap().gid()
        };

        assert!(requires_permission_change(&d, gid, false));
        set_volume_ownership(&d, gid, false, false).unwrap();
        let md = |p: &str| fs::symlink_metadata(d.join(p)).unwrap();
        assert_eq!(md("sub/f").mode() & 0o7777, 0o660);
        assert_eq!(md("g").mode() & 0o7777, 0o660);
        assert_eq!(md("sub").mode() & 0o2070, 0o2070);
        assert_eq!(md("sub/f").gid(), gid);
        assert_eq!(md("link").gid(), gid);
        assert!(md("link").file_type().is_symlink());
        assert!(!requires_permission_change(&d, gid, false));

        // Read-only volumes get group read only.
        fs::set_permissions(d.join("g"), fs::Permissions::from_mode(0o400)).unwrap();
        set_volume_ownership(&d, gid, true, false).unwrap();
        assert_eq!(md("g").mode() & 0o7777, 0o440);

        // OnRootMismatch skips a root that already matches...
        fs::set_permissions(d.join("g"), fs::Permissions::from_mode(0o400)).unwrap();
        set_volume_ownership(&d, gid, false, true).unwrap();
        assert_eq!(md("g").mode() & 0o7777, 0o400);
        // ...and walks one that does not.
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        set_volume_ownership(&d, gid, false, true).unwrap();
        assert_eq!(md("g").mode() & 0o7777, 0o660);
    }

    #[test]
    fn tree_removal_does_not_follow_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), "k").unwrap();
        let root = tmp.path().join("pod");
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/b/f"), "f").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("a/escape")).unwrap();
        remove_tree_on_one_device(&root).unwrap();
        assert!(!root.exists());
        assert_eq!(fs::read_to_string(outside.join("keep")).unwrap(), "k");
        // Removing what is not there is fine.
        remove_tree_on_one_device(&root).unwrap();
    }
}
