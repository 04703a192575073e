//! The host root every built-in discovery reads (`--accelerator-root`).
//!
//! On a real node it is `/`; tests point it at a temporary tree that holds a
//! fake `sys/`, `proc/` and `dev/`. Paths handed to the container runtime keep
//! the root prefix (`<root>/dev/nvidia0`), so a fake tree with real device
//! nodes made by mknod works end to end, while container paths are the plain
//! in-container paths (`/dev/nvidia0`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// A directory standing for `/` of the host whose hardware is discovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoot {
    root: PathBuf,
}

impl Default for HostRoot {
    fn default() -> Self {
        Self::new("/")
    }
}

impl HostRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Whether this root is the real host's `/` (so that libraries such as
    /// NVML describe the same hardware as the tree).
    pub fn is_host(&self) -> bool {
        self.root == Path::new("/")
    }

    /// `<root>/<absolute>`: `join("/sys/class/drm")` is `<root>/sys/class/drm`.
    pub fn join(&self, absolute: impl AsRef<Path>) -> PathBuf {
        let absolute = absolute.as_ref();
        let relative = absolute.strip_prefix("/").unwrap_or(absolute);
        self.root.join(relative)
    }

    /// The host path of a device node: `<root>/dev/...` for `/dev/...`.
    pub fn host_path(&self, container_path: &str) -> String {
        self.join(container_path).to_string_lossy().into_owned()
    }

    /// Whether something (a device node, or a plain file in an unprivileged
    /// fake tree) exists at `absolute` under the root and is not a directory.
    pub fn node_present(&self, absolute: &str) -> bool {
        fs::metadata(self.join(absolute)).is_ok_and(|m| !m.is_dir())
    }
}

/// The trimmed contents of a small sysfs or procfs file; `None` when it is
/// absent or unreadable (sysfs attributes come and go with drivers).
pub(crate) fn read_trimmed(path: &Path) -> Option<String> {
    match fs::read_to_string(path) {
        Ok(s) => Some(s.trim().to_string()),
        Err(e) => {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::debug!(path = %path.display(), error = %e, "unreadable attribute");
            }
            None
        }
    }
}

/// A sysfs hexadecimal attribute such as `vendor` (`0x8086`) or `idVendor`
/// (`1a6e`), with or without the `0x` prefix.
pub(crate) fn read_hex(path: &Path) -> Option<u32> {
    let text = read_trimmed(path)?;
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(&text);
    u32::from_str_radix(digits, 16).ok()
}

/// A decimal attribute such as `busnum` or `numa_node`.
pub(crate) fn read_decimal(path: &Path) -> Option<i64> {
    read_trimmed(path)?.parse().ok()
}

/// The NUMA node of a PCI device directory; sysfs says -1 where there is none.
pub(crate) fn read_numa_node(device_dir: &Path) -> Option<i64> {
    read_decimal(&device_dir.join("numa_node")).filter(|n| *n >= 0)
}

/// The last component of a symlink's target: the kernel driver bound to a
/// device from `device/driver`, e.g. `i915`.
pub(crate) fn link_name(path: &Path) -> Option<String> {
    let target = fs::read_link(path).ok()?;
    target
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
}

/// The names in a directory, sorted; empty when the directory is absent.
pub(crate) fn dir_names(path: &Path) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Sorts names like `card10` after `card2`: by the trailing number, then by
/// name.
pub(crate) fn natural_key(name: &str) -> (String, u64) {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (stem, number) = name.split_at(name.len() - digits);
    (stem.to_string(), number.parse().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_keeps_everything_under_the_root() {
        let root = HostRoot::new("/tmp/fake");
        assert_eq!(
            root.join("/sys/class/drm"),
            PathBuf::from("/tmp/fake/sys/class/drm")
        );
        assert_eq!(root.join("dev/dri"), PathBuf::from("/tmp/fake/dev/dri"));
        assert_eq!(root.host_path("/dev/nvidia0"), "/tmp/fake/dev/nvidia0");
        assert!(!root.is_host());
        assert!(HostRoot::default().is_host());
        assert_eq!(
            HostRoot::default().host_path("/dev/nvidia0"),
            "/dev/nvidia0"
        );
    }

    #[test]
    fn attributes_parse_as_sysfs_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("vendor"), "0x8086\n").unwrap();
        fs::write(dir.path().join("idVendor"), "1a6e\n").unwrap();
        fs::write(dir.path().join("numa_node"), "-1\n").unwrap();
        fs::write(dir.path().join("busnum"), "3\n").unwrap();
        assert_eq!(read_hex(&dir.path().join("vendor")), Some(0x8086));
        assert_eq!(read_hex(&dir.path().join("idVendor")), Some(0x1a6e));
        assert_eq!(read_numa_node(dir.path()), None);
        assert_eq!(read_decimal(&dir.path().join("busnum")), Some(3));
        assert_eq!(read_hex(&dir.path().join("missing")), None);
        assert!(dir_names(&dir.path().join("missing")).unwrap().is_empty());
    }

    #[test]
    fn natural_order_puts_card10_after_card2() {
        let mut names = vec!["card10", "card2", "card0"];
        names.sort_by_key(|n| natural_key(n));
        assert_eq!(names, ["card0", "card2", "card10"]);
    }
}
