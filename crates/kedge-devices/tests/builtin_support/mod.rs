//! Fake host trees for the built-in plugin tests: sysfs and procfs files,
//! and device nodes made with mknod when the tests run as root (CI), plain
//! files otherwise (the plugins only need the node to exist); and the
//! helpers the plugin tests share.

#![allow(dead_code)]

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::Duration;

use kedge_devices::builtin::{discover_builtin, BuiltinConfig};
use kedge_devices::{DevicePlugin, DeviceSpec, HealthEvent};
use tokio::sync::broadcast;

pub struct FakeTree {
    dir: tempfile::TempDir,
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

static NOT_ROOT: Once = Once::new();

impl FakeTree {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, absolute: &str) -> PathBuf {
        self.dir.path().join(absolute.trim_start_matches('/'))
    }

    /// The host path a plugin reports for a node: `<root>/dev/...`.
    pub fn host(&self, absolute: &str) -> String {
        self.path(absolute).to_string_lossy().into_owned()
    }

    pub fn file(&self, absolute: &str, contents: &str) {
        let path = self.path(absolute);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }

    pub fn dir(&self, absolute: &str) {
        fs::create_dir_all(self.path(absolute)).unwrap();
    }

    pub fn symlink(&self, absolute: &str, target: &str) {
        let path = self.path(absolute);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, path).unwrap();
    }

    pub fn remove(&self, absolute: &str) {
        let path = self.path(absolute);
        if path.is_dir() {
            fs::remove_dir_all(path).unwrap();
        } else {
            fs::remove_file(path).unwrap();
        }
    }

    /// A character device node (as root), else a plain file standing in.
    pub fn char_device(&self, absolute: &str, major: u32, minor: u32) {
        let path = self.path(absolute);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        if fs::symlink_metadata(&path).is_ok() {
            fs::remove_file(&path).unwrap();
        }
        if !is_root() {
            NOT_ROOT.call_once(|| {
                eprintln!(
                    "WARNING: not root: fake device nodes are plain files, mknod is skipped (CI runs as root)"
                );
            });
            fs::write(&path, "").unwrap();
            return;
        }
        let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c_path` is NUL-terminated and outlives the call; mknod has
        // no memory preconditions.
        let rc = unsafe {
            libc::mknod(
                c_path.as_ptr(),
                libc::S_IFCHR | 0o666,
                libc::makedev(major, minor),
            )
        };
        assert_eq!(
            rc,
            0,
            "mknod {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        let kind = fs::metadata(&path).unwrap().file_type();
        assert!(
            kind.is_char_device(),
            "{} is not a char device",
            path.display()
        );
    }
}

/// What a plugin injects for `node` of `tree`: the node at its own path in
/// the container, read-write.
pub fn spec(tree: &FakeTree, node: &str) -> DeviceSpec {
    DeviceSpec {
        container_path: node.to_string(),
        host_path: tree.host(node),
        permissions: "rw".to_string(),
    }
}

/// [`spec`] for each of `nodes`, in order.
pub fn specs(tree: &FakeTree, nodes: &[&str]) -> Vec<DeviceSpec> {
    nodes.iter().map(|node| spec(tree, node)).collect()
}

/// The IDs a plugin advertises, in order.
pub fn ids(plugin: &dyn DevicePlugin) -> Vec<String> {
    plugin
        .devices()
        .borrow()
        .iter()
        .map(|d| d.id.clone())
        .collect()
}

/// The built-in plugins found in `tree`, rescanning it every 30 ms.
pub fn discover_rescanning(tree: &FakeTree) -> Vec<Arc<dyn DevicePlugin>> {
    let config = BuiltinConfig {
        rescan_interval: Duration::from_millis(30),
        ..BuiltinConfig::default()
    };
    discover_builtin(tree.root(), &config)
}

/// The plugin advertising `resource` among `plugins`.
pub fn find_plugin(plugins: &[Arc<dyn DevicePlugin>], resource: &str) -> Arc<dyn DevicePlugin> {
    plugins
        .iter()
        .find(|p| p.resource_name() == resource)
        .cloned()
        .unwrap_or_else(|| panic!("{resource} plugin"))
}

/// The next health event, within 10 s.
pub async fn next_event(events: &mut broadcast::Receiver<HealthEvent>) -> HealthEvent {
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("a health event within 10 s")
        .expect("event channel open")
}
