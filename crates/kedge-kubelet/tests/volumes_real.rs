//! Volumes as a container sees them: each volume directory is bind-mounted
//! elsewhere (what the runtime does for a container's mounts), then the
//! ConfigMap, Secret and labels behind it change and the agent refreshes.
//! The update must show through the bind mount, all at once, while a file
//! opened before it keeps its old content; teardown must then unmount the
//! tmpfs volumes and remove the pod directory.
//!
//! Needs root (mount(2)); prints a loud SKIP line and passes otherwise. CI
//! runs as root.

use std::ffi::CString;
use std::fs;
use std::io::Read as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use kedge_kubelet::testing;
use kedge_kubelet::volumes::{MemoryObjectSource, VolumeContext, VolumeManager};
use serde_json::{json, Value};

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL in test paths")
}

fn bind(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).expect("mount point");
    let (s, d) = (cstr(src), cstr(dst));
    // SAFETY: both paths are NUL-terminated and outlive the call; the other
    // arguments are null as mount(2) allows for MS_BIND.
    let rc = unsafe {
        libc::mount(
            s.as_ptr(),
            d.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    assert_eq!(
        rc,
        0,
        "bind {src:?} -> {dst:?}: {}",
        std::io::Error::last_os_error()
    );
}

fn unmount(p: &Path) {
    let c = cstr(p);
    // SAFETY: `c` is NUL-terminated and outlives the call.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
}

/// Mounts strictly below `dir`.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let dir = fs::canonicalize(dir).expect("canonical dir");
    testing::mounts_under(&dir)
        .into_iter()
        .filter(|p| *p != dir)
        .collect()
}

/// Unmounts what the test mounted even when it panics.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let dir = fs::canonicalize(&self.0).unwrap_or_else(|_| self.0.clone());
        testing::unmount_under(&dir);
    }
}

fn pod(labels: Value) -> Value {
    json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "real-1", "labels": labels},
        "spec": {
            "containers": [{"name": "c", "resources": {"limits": {"memory": "32Mi"}}}],
            "volumes": [
                {"name": "cfg", "configMap": {"name": "app"}},
                {"name": "creds", "secret": {"secretName": "creds"}},
                {"name": "info", "downwardAPI": {"items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                ]}},
                {"name": "cache", "emptyDir": {"medium": "Memory"}},
            ],
        },
    })
}

#[tokio::test]
async fn updates_show_through_bind_mounts_and_teardown_unmounts() {
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "\n==================== SKIP volumes_real ====================\n\
             not running as root: mount(2) is needed. CI runs this as root.\n\
             ===========================================================\n"
        );
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let _cleanup = Cleanup(tmp.path().to_path_buf());
    let vm = VolumeManager::new(tmp.path().join("pods"));
    let src = MemoryObjectSource::new();
    src.put_config_map(json!({
        "metadata": {"namespace": "ns", "name": "app"},
        "data": {"a.conf": "v1", "b.conf": "v1"},
    }));
    src.put_secret(json!({
        "metadata": {"namespace": "ns", "name": "creds"},
        "data": {"token": "b25l"},
    }));
    let ctx = VolumeContext::default();

    let vols = vm
        .setup(&pod(json!({"v": "1"})), &src, &ctx)
        .await
        .expect("setup");
    let view = tmp.path().join("container");
    for (name, v) in &vols {
        bind(Path::new(&v.host_path), &view.join(name));
    }
    let read = |p: &str| fs::read_to_string(view.join(p)).expect(p);
    assert_eq!(read("cfg/a.conf"), "v1");
    assert_eq!(read("creds/token"), "one");
    assert_eq!(read("info/labels"), "v=\"1\"");
    fs::write(view.join("cache/scratch"), "s").expect("write to emptyDir");

    let mut held = fs::File::open(view.join("cfg/a.conf")).expect("open a.conf");
    src.put_config_map(json!({
        "metadata": {"namespace": "ns", "name": "app"},
        "data": {"a.conf": "v2", "b.conf": "v2"},
    }));
    src.put_secret(json!({
        "metadata": {"namespace": "ns", "name": "creds"},
        "data": {"token": "dHdv"},
    }));
    vm.setup(&pod(json!({"v": "2"})), &src, &ctx)
        .await
        .expect("refresh");
    assert_eq!(read("cfg/a.conf"), "v2");
    assert_eq!(read("cfg/b.conf"), "v2");
    assert_eq!(read("creds/token"), "two");
    assert_eq!(read("info/labels"), "v=\"2\"");
    assert_eq!(read("cache/scratch"), "s");
    let mut old = String::new();
    held.read_to_string(&mut old).expect("read held file");
    assert_eq!(old, "v1", "an open file keeps the version it opened");

    // The runtime's bind mounts go with the containers, then the agent
    // tears the pod down: its tmpfs volumes are unmounted, the dir removed.
    for name in vols.keys() {
        unmount(&view.join(name));
    }
    let pods = tmp.path().join("pods");
    assert_eq!(
        mounts_under(&pods).len(),
        3,
        "secret, downwardAPI, memory emptyDir"
    );
    vm.teardown("real-1").await.expect("teardown");
    assert!(mounts_under(&pods).is_empty());
    assert!(!vm.pod_dir("real-1").exists());
}
