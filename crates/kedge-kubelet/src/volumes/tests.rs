use super::*;
use serde_json::json;
use std::os::unix::fs::MetadataExt as _;
use std::time::Duration;

fn pod(volumes: Value) -> Value {
    json!({
        "metadata": {
            "name": "web", "namespace": "ns", "uid": "uid-1",
            "labels": {"app": "web"},
        },
        "spec": {
            "serviceAccountName": "runner",
            "containers": [{
                "name": "c",
                "resources": {"limits": {"memory": "64Mi"}},
                "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}],
            }],
            "volumes": volumes,
        },
    })
}

fn manager(root: &Path) -> VolumeManager {
    VolumeManager::new(root).with_memory_backed_volumes(false)
}

fn ctx() -> VolumeContext {
    let mut node_allocatable = BTreeMap::new();
    node_allocatable.insert("cpu".to_string(), Quantity::parse("2").unwrap());
    node_allocatable.insert("memory".to_string(), Quantity::parse("1Gi").unwrap());
    VolumeContext {
        node_allocatable,
        cluster_domain: "cluster.local".into(),
    }
}

fn source() -> MemoryObjectSource {
    let s = MemoryObjectSource::new();
    s.put_config_map(json!({
        "metadata": {"namespace": "ns", "name": "app-config"},
        "data": {"app.conf": "port=80\n", "mode": "prod"},
        "binaryData": {"logo.bin": "AAEC"},
    }));
    s.put_secret(json!({
        "metadata": {"namespace": "ns", "name": "creds"},
        "data": {"user": "YWRtaW4=", "password": "czNjcjN0"},
    }));
    s.put_config_map(json!({
        "metadata": {"namespace": "ns", "name": "kube-root-ca.crt"},
        "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\n"},
    }));
    s
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().mode() & 0o7777
}

fn ts_dir(dir: &Path) -> PathBuf {
    fs::read_link(dir.join("..data")).unwrap()
}

#[tokio::test]
async fn config_map_volume_layout_and_updates() {
    let tmp = tempfile::tempdir().unwrap();
    let vm = manager(tmp.path());
    let src = source();
    let p = pod(json!([{"name": "cfg", "configMap": {"name": "app-config"}}]));
    let vols = vm.setup(&p, &src, &ctx()).await.unwrap();
    let dir = tmp.path().join("uid-1/volumes/kubernetes.io~configmap/cfg");
    assert_eq!(
        vols["cfg"],
        ResolvedVolume {
            host_path: dir.to_string_lossy().into_owned(),
            read_only: true,
        }
    );
    assert_eq!(mode(&dir), 0o777);
    assert_eq!(mode(&tmp.path().join("uid-1")), 0o750);
    assert_eq!(
        fs::read_to_string(dir.join("app.conf")).unwrap(),
        "port=80\n"
    );
    assert_eq!(fs::read(dir.join("logo.bin")).unwrap(), [0, 1, 2]);
    assert_eq!(mode(&dir.join("mode")), 0o644);
    assert_eq!(
        fs::read_link(dir.join("app.conf")).unwrap(),
        Path::new("..data/app.conf")
    );
    let first = ts_dir(&dir);

    // Unchanged: nothing rewritten.
    vm.setup(&p, &src, &ctx()).await.unwrap();
    assert_eq!(ts_dir(&dir), first);

    // Updated ConfigMap: a new ..data, the old directory gone, a removed
    // key gone.
    src.put_config_map(json!({
        "metadata": {"namespace": "ns", "name": "app-config"},
        "data": {"app.conf": "port=8080\n"},
    }));
    vm.setup(&p, &src, &ctx()).await.unwrap();
    let second = ts_dir(&dir);
    assert_ne!(second, first);
    assert!(!dir.join(&first).exists());
    assert_eq!(
        fs::read_to_string(dir.join("app.conf")).unwrap(),
        "port=8080\n"
    );
    assert!(fs::symlink_metadata(dir.join("mode")).is_err());
    assert!(fs::symlink_metadata(dir.join("logo.bin")).is_err());
}

#[tokio::test]
async fn config_map_items_modes_and_missing_objects() {
    let tmp = tempfile::tempdir().unwrap();
    let vm = manager(tmp.path());
    let src = source();
    let p = pod(json!([
        {"name": "cfg", "configMap": {
            "name": "app-config", "defaultMode": 0o440,
            "items": [{"key": "app.conf", "path": "conf/app.conf"}, {"key": "mode", "path": "m", "mode": 0o600}],
        }},
        {"name": "opt", "configMap": {"name": "absent", "optional": true}},
    ]));
    let vols = vm.setup(&p, &src, &ctx()).await.unwrap();
    let dir = PathBuf::from(&vols["cfg"].host_path);
    assert_eq!(mode(&dir.join("conf/app.conf")), 0o440);
    assert_eq!(mode(&dir.join("m")), 0o600);
    assert_eq!(
        fs::read_link(dir.join("conf")).unwrap(),
        Path::new("..data/conf")
    );
    let opt = PathBuf::from(&vols["opt"].host_path);
    assert!(opt.join("..data").exists());
    let visible: Vec<_> = fs::read_dir(&opt)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with(".."))
        .collect();
    assert!(visible.is_empty());

    let p = pod(json!([
        {"name": "cfg", "configMap": {"name": "absent"}},
        {"name": "keys", "configMap": {"name": "app-config", "items": [{"key": "nope", "path": "x"}]}},
    ]));
    let err = vm.setup(&p, &src, &ctx()).await.unwrap_err();
    let msgs: Vec<String> = err.per_volume().iter().map(|e| e.to_string()).collect();
    assert_eq!(
        msgs,
        [
            "MountVolume.SetUp failed for volume \"cfg\" : configmap \"absent\" not found",
            "MountVolume.SetUp failed for volume \"keys\" : configmap references non-existent config key: nope",
        ]
    );
    assert_eq!(err.per_volume()[1].volume(), Some("keys"));

    src.fail_lookups(Some("the server is currently unable to handle the request"));
    let p = pod(json!([{"name": "cfg", "configMap": {"name": "app-config"}}]));
    assert_eq!(
        vm.setup(&p, &src, &ctx()).await.unwrap_err().to_string(),
        "MountVolume.SetUp failed for volume \"cfg\" : the server is currently unable to handle the request"
    );
}

#[tokio::test]
async fn secret_volume() {
    let tmp = tempfile::tempdir().unwrap();
    let vm = manager(tmp.path());
    let src = source();
    let p = pod(json!([
        {"name": "s", "secret": {"secretName": "creds"}},
        {"name": "one", "secret": {"secretName": "creds", "defaultMode": 0o400,
            "items": [{"key": "password", "path": "pw"}]}},
    ]));
    let vols = vm.setup(&p, &src, &ctx()).await.unwrap();
    let dir = tmp.path().join("uid-1/volumes/kubernetes.io~secret/s");
    assert_eq!(vols["s"].host_path, dir.to_string_lossy());
    assert!(vols["s"].read_only);
    assert_eq!(fs::read_to_string(dir.join("user")).unwrap(), "admin");
    assert_eq!(mode(&dir.join("password")), 0o644);
    let one = PathBuf::from(&vols["one"].host_path);
    assert_eq!(fs::read_to_string(one.join("pw")).unwrap(), "s3cr3t");
    assert_eq!(mode(&one.join("pw")), 0o400);
    assert!(fs::symlink_metadata(one.join("user")).is_err());

    let p = pod(json!([{"name": "s", "secret": {"secretName": "gone"}}]));
    assert_eq!(
        vm.setup(&p, &src, &ctx()).await.unwrap_err().to_string(),
        "MountVolume.SetUp failed for volume \"s\" : secret \"gone\" not found"
    );
    let p = pod(json!([{"name": "s", "secret": {"secretName": "gone", "optional": true}}]));
    vm.setup(&p, &src, &ctx()).await.unwrap();
}

#[tokio::test]
async fn downward_api_volume_follows_label_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let vm = manager(tmp.path());
    let src = source();
    let vols = json!([{"name": "info", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}},
        {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu", "divisor": "1m"}, "mode": 0o600},
    ]}}]);
    let mut p = pod(vols);
    let out = vm.setup(&p, &src, &ctx()).await.unwrap();
    let dir = PathBuf::from(&out["info"].host_path);
    assert!(dir.ends_with("uid-1/volumes/kubernetes.io~downward-api/info"));
    assert_eq!(
        fs::read_to_string(dir.join("labels")).unwrap(),
        "app=\"web\""
    );
    assert_eq!(fs::read_to_string(dir.join("name")).unwrap(), "web");
    assert_eq!(fs::read_to_string(dir.join("mem")).unwrap(), "64");
    // No cpu limit: node allocatable.
    assert_eq!(fs::read_to_string(dir.join("cpu")).unwrap(), "2000");
    assert_eq!(mode(&dir.join("cpu")), 0o600);
    let first = ts_dir(&dir);

    p["metadata"]["labels"]["tier"] = json!("front");
    vm.setup(&p, &src, &ctx()).await.unwrap();
    assert_ne!(ts_dir(&dir), first);
    assert_eq!(
        fs::read_to_string(dir.join("labels")).unwrap(),
        "app=\"web\"\ntier=\"front\""
    );

    let bad = pod(json!([{"name": "info", "downwardAPI": {"items": [
        {"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}},
    ]}}]));
    assert_eq!(
        vm.setup(&bad, &src, &ctx()).await.unwrap_err().to_string(),
        "MountVolume.SetUp failed for volume \"info\" : unsupported fieldPath: status.podIP"
    );
}

fn kube_api_access() -> Value {
    json!({"name": "kube-api-access-x", "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}})
}

#[tokio::test]
async fn projected_service_account_volume_and_token_refresh() {
    let tmp = tempfile::tempdir().unwrap();
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let now = Arc::new(Mutex::new(start));
    let n = now.clone();
    let clock: Clock = Arc::new(move || *n.lock().unwrap());
    let vm = manager(tmp.path()).with_clock(clock.clone());
    let src = source().with_clock(clock);
    let p = pod(json!([kube_api_access()]));
    let vols = vm.setup(&p, &src, &ctx()).await.unwrap();
    let dir = PathBuf::from(&vols["kube-api-access-x"].host_path);
    assert!(dir.ends_with("uid-1/volumes/kubernetes.io~projected/kube-api-access-x"));
    assert!(vols["kube-api-access-x"].read_only);
    assert_eq!(fs::read_to_string(dir.join("token")).unwrap(), "token-1");
    assert_eq!(fs::read_to_string(dir.join("namespace")).unwrap(), "ns");
    assert!(fs::read_to_string(dir.join("ca.crt"))
        .unwrap()
        .starts_with("-----BEGIN"));
    assert_eq!(mode(&dir.join("token")), 0o644);
    let reqs = src.token_requests();
    assert_eq!(
        reqs,
        [TokenRequestRecord {
            namespace: "ns".into(),
            service_account: "runner".into(),
            audience: None,
            expiration_seconds: 3607,
            pod_name: "web".into(),
            pod_uid: "uid-1".into(),
        }]
    );
    let first = ts_dir(&dir);

    // A minute later: same token, nothing rewritten.
    *now.lock().unwrap() = start + Duration::from_secs(60);
    vm.setup(&p, &src, &ctx()).await.unwrap();
    assert_eq!(src.token_requests().len(), 1);
    assert_eq!(ts_dir(&dir), first);

    // Past 80% of 3607 s: a new token replaces the file atomically.
    *now.lock().unwrap() = start + Duration::from_secs(2890);
    vm.setup(&p, &src, &ctx()).await.unwrap();
    assert_eq!(src.token_requests().len(), 2);
    assert_eq!(fs::read_to_string(dir.join("token")).unwrap(), "token-2");
    assert_ne!(ts_dir(&dir), first);
    assert!(!dir.join(&first).exists());

    // Teardown forgets the pod's tokens.
    vm.teardown("uid-1").await.unwrap();
    assert!(!tmp.path().join("uid-1").exists());
    vm.setup(&p, &src, &ctx()).await.unwrap();
    assert_eq!(src.token_requests().len(), 3);
}

#[tokio::test]
async fn projected_errors_are_aggregated() {
    let tmp = tempfile::tempdir().unwrap();
    let vm = manager(tmp.path());
    let src = source();
    src.fail_tokens(Some("serviceaccounts \"runner\" not found"));
    let p = pod(json!([{"name": "proj", "projected": {"sources": [
        {"serviceAccountToken": {"path": "token", "audience": "vault"}},
        {"secret": {"name": "missing"}},
        {"secret": {"name": "missing-too", "optional": true}},
        {"clusterTrustBundle": {"signerName": "x", "path": "b"}},
    ]}}]));
    assert_eq!(
        vm.setup(&p, &src, &ctx()).await.unwrap_err().to_string(),
        "MountVolume.SetUp failed for volume \"proj\" : [failed to fetch token: serviceaccounts \"runner\" not found, \
         secret \"missing\" not found, ClusterTrustBundle projection is not supported by kedge]"
    );
    assert!(!tmp
        .path()
        .join("uid-1/volumes/kubernetes.io~projected/proj")
        .exists());
}

#[tokio::test]
async fn fs_group_ownership() {
    let tmp = tempfile::tempdir().unwrap();
    let vm = manager(tmp.path());
    let src = source();
    let gid = if host::is_root() {
        2000
    } else {
        fs::metadata(tmp.path()).unwrap().gid()
    };
    let mut p = pod(json!([
        kube_api_access(),
        {"name": "scratch", "emptyDir": {}},
        {"name": "cfg", "configMap": {"name": "app-config", "defaultMode": 0o400}},
    ]));
    p["spec"]["securityContext"] = json!({"fsGroup": gid});
    let vols = vm.setup(&p, &src, &ctx()).await.unwrap();

    let proj = PathBuf::from(&vols["kube-api-access-x"].host_path);
    // The token is 0600 with an fsGroup, plus group read from ownership.
    assert_eq!(mode(&proj.join("token")), 0o640);
    assert_eq!(fs::metadata(proj.join("token")).unwrap().gid(), gid);
    assert_eq!(mode(&proj.join("namespace")), 0o644);
    let data = proj.join(ts_dir(&proj));
    assert_eq!(mode(&data) & 0o2550, 0o2550);
    assert_eq!(fs::metadata(&data).unwrap().gid(), gid);

    let cfg = PathBuf::from(&vols["cfg"].host_path);
    assert_eq!(mode(&cfg.join("mode")), 0o440);

    let scratch = PathBuf::from(&vols["scratch"].host_path);
    assert_eq!(mode(&scratch), 0o2777);
    assert_eq!(fs::metadata(&scratch).unwrap().gid(), gid);
}

#[tokio::test]
async fn empty_dir_is_set_up_once() {
    let tmp = tempfile::tempdir().unwrap();
    let vm = manager(tmp.path());
    let src = source();
    let p = pod(json!([{"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}, {"name": "bare"}]));
    let vols = vm.setup(&p, &src, &ctx()).await.unwrap();
    let dir = tmp
        .path()
        .join("uid-1/volumes/kubernetes.io~empty-dir/scratch");
    assert_eq!(vols["scratch"].host_path, dir.to_string_lossy());
    assert!(!vols["scratch"].read_only);
    assert_eq!(mode(&dir), 0o777);
    assert!(tmp
        .path()
        .join("uid-1/plugins/kubernetes.io~empty-dir/scratch/ready")
        .exists());
    // A volume without a source is an emptyDir (the API server's default).
    assert!(vols["bare"]
        .host_path
        .ends_with("kubernetes.io~empty-dir/bare"));
    // What the pod did to its volume is kept.
    fs::write(dir.join("data"), "x").unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    vm.setup(&p, &src, &ctx()).await.unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(fs::read_to_string(dir.join("data")).unwrap(), "x");

    let p = pod(json!([{"name": "huge", "emptyDir": {"medium": "HugePages"}}]));
    assert!(vm
        .setup(&p, &src, &ctx())
        .await
        .unwrap_err()
        .to_string()
        .contains("HugePages is not supported"));
}

#[tokio::test]
async fn host_path_and_unsupported_volumes() {
    let tmp = tempfile::tempdir().unwrap();
    let vm = manager(&tmp.path().join("pods"));
    let src = source();
    let made = tmp.path().join("made");
    let p = pod(json!([
        {"name": "dev", "hostPath": {"path": "/dev/null", "type": "CharDevice"}},
        {"name": "made", "hostPath": {"path": made, "type": "DirectoryOrCreate"}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "c"}},
        {"name": "notdir", "hostPath": {"path": "/dev/null", "type": "Directory"}},
        {"name": "cfg", "configMap": {"name": "app-config"}},
    ]));
    let err = vm.setup(&p, &src, &ctx()).await.unwrap_err();
    let msgs: Vec<String> = err.per_volume().iter().map(|e| e.to_string()).collect();
    assert_eq!(
        msgs,
        [
            "MountVolume.SetUp failed for volume \"data\" : unsupported volume type persistentVolumeClaim",
            "MountVolume.SetUp failed for volume \"notdir\" : hostPath type check failed: /dev/null is not a directory",
        ]
    );
    assert!(matches!(
        err.per_volume()[0],
        VolumeError::Unsupported { .. }
    ));
    // The other volumes were set up all the same.
    assert!(made.is_dir());
    assert!(tmp
        .path()
        .join("pods/uid-1/volumes/kubernetes.io~configmap/cfg/app.conf")
        .exists());

    let p = pod(json!([{"name": "dev", "hostPath": {"path": "/dev/null", "type": "CharDevice"}}]));
    let vols = vm.setup(&p, &src, &ctx()).await.unwrap();
    assert_eq!(
        vols["dev"],
        ResolvedVolume {
            host_path: "/dev/null".into(),
            read_only: false
        }
    );
}

#[tokio::test]
async fn bad_names_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let vm = manager(tmp.path());
    let mut p = pod(json!([]));
    p["metadata"]["uid"] = json!("../escape");
    assert!(matches!(
        vm.setup(&p, &source(), &ctx()).await,
        Err(VolumeError::InvalidPod(_))
    ));
    let p = pod(json!([{"name": "../x", "emptyDir": {}}]));
    assert!(vm.setup(&p, &source(), &ctx()).await.is_err());
    assert!(!tmp.path().join("x").exists());
    assert!(vm.teardown("..").await.is_err());
}

#[tokio::test]
async fn teardown_and_orphans() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let vm = manager(&root);
    let src = source();
    let p = pod(json!([{"name": "scratch", "emptyDir": {}}]));
    let vols = vm.setup(&p, &src, &ctx()).await.unwrap();
    // A symlink out of the pod directory must not be followed.
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("precious"), "p").unwrap();
    std::os::unix::fs::symlink(&outside, Path::new(&vols["scratch"].host_path).join("link"))
        .unwrap();
    fs::create_dir_all(root.join("old-uid/volumes")).unwrap();

    let live: HashSet<String> = ["uid-1".to_string()].into();
    assert_eq!(vm.orphaned_pod_dirs(&live), ["old-uid"]);
    vm.teardown("old-uid").await.unwrap();
    assert!(vm.orphaned_pod_dirs(&live).is_empty());

    vm.teardown("uid-1").await.unwrap();
    assert!(!vm.pod_dir("uid-1").exists());
    assert_eq!(fs::read_to_string(outside.join("precious")).unwrap(), "p");
    // Idempotent.
    vm.teardown("uid-1").await.unwrap();

    // A pod directory that is a symlink: only the link goes.
    std::os::unix::fs::symlink(&outside, root.join("uid-2")).unwrap();
    vm.teardown("uid-2").await.unwrap();
    assert!(fs::symlink_metadata(root.join("uid-2")).is_err());
    assert!(outside.join("precious").exists());
}

#[test]
fn nested_mount_points() {
    let p = json!({"spec": {"containers": [
        {"name": "a", "volumeMounts": [
            {"name": "cfg", "mountPath": "/etc/app"},
            {"name": "x", "mountPath": "/etc/app/certs"},
            {"name": "y", "mountPath": "/etc/app/certs/inner"},
            {"name": "z", "mountPath": "/etc/application"},
        ]},
        {"name": "b", "volumeMounts": [
            {"name": "cfg", "mountPath": "/cfg/"},
            {"name": "w", "mountPath": "/cfg/plugins"},
        ]},
    ]}});
    assert_eq!(nested_mountpoints(&p, "cfg").unwrap(), ["certs", "plugins"]);
    assert!(nested_mountpoints(&p, "x").unwrap() == ["inner"]);
    assert!(nested_mountpoints(&p, "z").unwrap().is_empty());
}

#[test]
fn memory_volume_sizes() {
    let c = ctx();
    let gi = 1024 * 1024 * 1024;
    let mi = 1024 * 1024;
    let no_limits = json!({"spec": {"containers": [{"name": "a"}]}});
    assert_eq!(memory_volume_size(&no_limits, None, &c), Some(gi));
    assert_eq!(
        memory_volume_size(&no_limits, Some(100 * mi), &c),
        Some(100 * mi)
    );
    assert_eq!(memory_volume_size(&no_limits, Some(2 * gi), &c), Some(gi));
    let limited = json!({"spec": {
        "containers": [
            {"name": "a", "resources": {"limits": {"memory": "64Mi"}}},
            {"name": "b", "resources": {"limits": {"memory": "32Mi"}}},
        ],
        "initContainers": [{"name": "i", "resources": {"limits": {"memory": "80Mi"}}}],
    }});
    assert_eq!(pod_memory_limit(&limited), Some(96 * mi));
    assert_eq!(memory_volume_size(&limited, None, &c), Some(96 * mi));
    assert_eq!(
        memory_volume_size(&limited, Some(10 * mi), &c),
        Some(10 * mi)
    );
    let partly = json!({"spec": {"containers": [
        {"name": "a", "resources": {"limits": {"memory": "64Mi"}}}, {"name": "b"},
    ]}});
    assert_eq!(pod_memory_limit(&partly), None);
    assert_eq!(
        memory_volume_size(&partly, None, &VolumeContext::default()),
        None
    );
}

#[test]
fn fs_user_needs_one_user_for_all() {
    let p = |c: Value| json!({"spec": {"securityContext": {"runAsUser": 1000}, "containers": c}});
    assert_eq!(
        fs_user(&p(json!([{"name": "a"}, {"name": "b"}]))),
        Some(1000)
    );
    assert_eq!(
        fs_user(&p(
            json!([{"name": "a"}, {"name": "b", "securityContext": {"runAsUser": 1}}])
        )),
        None
    );
    assert_eq!(
        fs_user(&json!({"spec": {"containers": [{"name": "a"}]}})),
        None
    );
}

#[test]
fn go_style_io_errors() {
    let e = io::Error::from_raw_os_error(libc::ENOENT);
    assert_eq!(
        go_io_error("open", Path::new("/x"), &e),
        "open /x: no such file or directory"
    );
}

/// Skips (loudly) when the process may not mount.
fn can_mount() -> bool {
    if !host::is_root() {
        eprintln!("SKIPPED: mounting tmpfs needs root");
        return false;
    }
    true
}

/// Unmounts whatever a failed test left below `dir`.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Ok(c) = fs::canonicalize(&self.0) {
            for m in host::mounts_below(&c).unwrap_or_default() {
                let _ = host::unmount(&m);
            }
        }
    }
}

#[tokio::test]
async fn tmpfs_volumes_are_mounted_and_torn_down() {
    if !can_mount() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let _guard = MountGuard(tmp.path().to_path_buf());
    let vm = VolumeManager::new(tmp.path());
    let src = source();
    let p = pod(json!([
        {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
        {"name": "s", "secret": {"secretName": "creds"}},
        {"name": "cfg", "configMap": {"name": "app-config"}},
    ]));
    let vols = vm.setup(&p, &src, &ctx()).await.unwrap();
    let mem = PathBuf::from(&vols["mem"].host_path);
    let secret = PathBuf::from(&vols["s"].host_path);
    let cfg = PathBuf::from(&vols["cfg"].host_path);
    assert_eq!(
        host::mounted_fs_type(&mem).unwrap().as_deref(),
        Some("tmpfs")
    );
    assert_eq!(
        host::mounted_fs_type(&secret).unwrap().as_deref(),
        Some("tmpfs")
    );
    assert_eq!(host::mounted_fs_type(&cfg).unwrap(), None);
    // sizeLimit 8Mi (below the pod's 64Mi limit and 1Gi allocatable).
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let c = std::ffi::CString::new(mem.to_str().unwrap()).unwrap();
    // SAFETY: `c` is a NUL-terminated path and `st` a valid out-pointer.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    assert_eq!(st.f_blocks * st.f_frsize, 8 * 1024 * 1024);
    assert_eq!(fs::read_to_string(secret.join("user")).unwrap(), "admin");

    // Again: no second mount stacked on the first.
    vm.setup(&p, &src, &ctx()).await.unwrap();
    let canonical = fs::canonicalize(tmp.path()).unwrap();
    assert_eq!(host::mounts_below(&canonical).unwrap().len(), 2);

    vm.teardown("uid-1").await.unwrap();
    assert!(host::mounts_below(&canonical).unwrap().is_empty());
    assert!(!vm.pod_dir("uid-1").exists());
}

#[tokio::test]
async fn teardown_unmounts_every_mount_in_the_pod_dir() {
    if !can_mount() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let _guard = MountGuard(tmp.path().to_path_buf());
    let vm = VolumeManager::new(tmp.path());
    // Something mounted in the pod directory that is not ours is unmounted
    // too; the tree on another device is never walked into.
    let dir = vm.pod_dir("uid-9").join("volumes/other");
    fs::create_dir_all(&dir).unwrap();
    host::mount_tmpfs(&dir, Some(1024 * 1024)).unwrap();
    fs::write(dir.join("f"), "x").unwrap();
    vm.teardown("uid-9").await.unwrap();
    assert!(!vm.pod_dir("uid-9").exists());
}

/// The pod worker runs setup and teardown on spawned tasks: their futures
/// must be `Send` (a compile-time check; nothing is polled; the runtime is
/// only there because the client's buffer spawns a task).
#[tokio::test]
async fn futures_are_send() {
    fn is_send<T: Send>(_: T) {}
    let vm = VolumeManager::new("/nonexistent");
    let client = kube::Client::new(
        tower::service_fn(|_req: http::Request<kube::client::Body>| async {
            http::Response::builder()
                .status(503)
                .body(kube::client::Body::empty())
        }),
        "default",
    );
    let kube_source = KubeObjectSource::new(client);
    let p = pod(json!([]));
    is_send(vm.setup(&p, &kube_source, &ctx()));
    is_send(vm.setup(&p, &source(), &ctx()));
    is_send(vm.teardown("uid-1"));
}
