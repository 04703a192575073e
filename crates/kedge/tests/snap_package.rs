//! packaging/snap: snapcraft.yaml checked against snapcraft's own JSON
//! schema (packaging/snap/schema, see SOURCE.md there) and for what kedge
//! needs of it, and the daemons' wrapper run with the test build of kedge.
//! Building the snap itself needs snapd and LXD (packaging/snap/README.md).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn snap_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/snap")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A Python with jsonschema and PyYAML: the repository's .venv (scripts/setup.sh
/// installs conformance/requirements.txt there), else the system's.
fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    for candidate in [venv, PathBuf::from("python3")] {
        let ok = Command::new(&candidate)
            .args(["-c", "import jsonschema, yaml"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return candidate;
        }
    }
    panic!("no Python with jsonschema and PyYAML: run scripts/setup.sh (conformance/requirements.txt lists jsonschema)");
}

fn check(project: &Path) -> Output {
    Command::new(python())
        .arg(snap_dir().join("check_snapcraft.py"))
        .arg(project)
        .output()
        .expect("run check_snapcraft.py")
}

#[test]
fn snapcraft_yaml_is_valid_against_snapcrafts_schema() {
    let out = check(&snap_dir().join("snapcraft.yaml"));
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // The check can fail: a daemon type snapd does not know.
    let original = std::fs::read_to_string(snap_dir().join("snapcraft.yaml")).expect("read");
    assert!(original.contains("    daemon: notify\n"));
    let dir = tempfile::tempdir().expect("tmp");
    let bad = dir.path().join("snapcraft.yaml");
    std::fs::write(
        &bad,
        original.replacen("    daemon: notify\n", "    daemon: notified\n", 1),
    )
    .expect("write");
    let out = check(&bad);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("apps"), "{}", text(&out.stdout));
}

fn yaml() -> serde_yaml::Value {
    let text = std::fs::read_to_string(snap_dir().join("snapcraft.yaml")).expect("read");
    serde_yaml::from_str(&text).expect("snapcraft.yaml is YAML")
}

fn str_at<'a>(v: &'a serde_yaml::Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str()
        .unwrap_or_else(|| panic!("{} is not a string: {cur:?}", path.join(".")))
}

fn strings(v: &serde_yaml::Value) -> Vec<&str> {
    v.as_sequence()
        .map(|s| s.iter().filter_map(|i| i.as_str()).collect())
        .unwrap_or_default()
}

#[test]
fn snapcraft_yaml_is_a_classic_kedge_with_its_runtime() {
    let y = yaml();
    assert_eq!(str_at(&y, &["version"]), env!("CARGO_PKG_VERSION"));
    assert_eq!(str_at(&y, &["confinement"]), "classic");
    for app in ["server", "agent"] {
        assert_eq!(str_at(&y, &["apps", app, "daemon"]), "notify", "{app}");
        // Only kedge is signalled: pods survive a restart or a refresh.
        assert_eq!(str_at(&y, &["apps", app, "stop-mode"]), "sigterm", "{app}");
        assert_eq!(
            str_at(&y, &["apps", app, "command"]),
            format!("bin/kedge-snap-run {app}")
        );
    }
    assert_eq!(str_at(&y, &["apps", "agent", "install-mode"]), "disable");
    assert_eq!(str_at(&y, &["apps", "kedge", "command"]), "bin/kedge");

    let part = &y["parts"]["kedge"];
    assert_eq!(str_at(part, &["plugin"]), "rust");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for p in strings(&part["rust-path"]) {
        assert!(repo.join(p).join("Cargo.toml").is_file(), "rust-path {p}");
    }
    let staged = strings(&part["stage-packages"]);
    for pkg in ["containerd", "runc", "containernetworking-plugins"] {
        assert!(staged.contains(&pkg), "{pkg} not staged: {staged:?}");
    }
    // Every file the dump part takes exists where it says.
    let files = &y["parts"]["snap-files"];
    let source = repo.join(str_at(files, &["source"]));
    let organize = files["organize"].as_mapping().expect("organize");
    assert!(!organize.is_empty());
    for (from, _) in organize {
        let from = from.as_str().expect("path");
        assert!(
            source.join(from).is_file(),
            "{from} missing under {source:?}"
        );
    }
}

#[test]
fn the_wrapper_seeds_the_config_and_runs_the_server_with_snap_paths() {
    // A fake $SNAP with the test build of kedge and the default config.
    let snap = tempfile::tempdir().expect("tmp");
    let common = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(snap.path().join("bin")).expect("mkdir");
    std::fs::create_dir_all(snap.path().join("etc/kedge")).expect("mkdir");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kedge"), snap.path().join("bin/kedge"))
        .expect("symlink");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/deb/config.yaml");
    std::fs::copy(&config, snap.path().join("etc/kedge/config.yaml")).expect("copy");
    let blocker = common.path().join("file");
    std::fs::write(&blocker, "").expect("write");

    // The server parses the seeded config, then fails at its first step
    // (a data dir under a file): exit 1, where a rejected config is 2.
    let out = Command::new("sh")
        .arg(snap_dir().join("bin/kedge-snap-run"))
        .args(["server", "--data-dir"])
        .arg(blocker.join("data"))
        .env("SNAP", snap.path())
        .env("SNAP_COMMON", common.path())
        .env_remove("KEDGE_TOKEN")
        .env_remove("KEDGE_CONFIG_FILE")
        .output()
        .expect("run kedge-snap-run");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cannot create"),
        "{}",
        text(&out.stderr)
    );
    let seeded = common.path().join("etc/kedge/config.yaml");
    assert_eq!(
        std::fs::read(&seeded).expect("seeded config"),
        std::fs::read(&config).expect("config")
    );
    assert!(common.path().join("var/lib/kedge").is_dir());

    // Outside a snap it says so.
    let out = Command::new("sh")
        .arg(snap_dir().join("bin/kedge-snap-run"))
        .arg("server")
        .env_remove("SNAP")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("inside the kedge snap"));
}
