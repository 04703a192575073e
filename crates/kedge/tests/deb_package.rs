//! The .deb that `make deb` builds (scripts/build-deb), built here from the
//! test build of kedge: its control fields, files and modes, conffiles,
//! units, default config (parsed by the real binary), lintian's verdict,
//! and a real install, upgrade, remove and purge with dpkg into a scratch
//! root (`dpkg --root --force-script-chrootless`: the maintainer scripts
//! run for real and see DPKG_ROOT, so they never touch this host's systemd).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

struct Built {
    _dir: tempfile::TempDir,
    deb: PathBuf,
    /// The package's files, unpacked with `dpkg-deb -x`.
    tree: PathBuf,
}

/// The package, built once for every test in this file (compressed fast:
/// the test binary is large, and lintian refuses an uncompressed package).
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tmp");
        let out = run(Command::new(repo().join("scripts/build-deb"))
            .args(["--binary", env!("CARGO_BIN_EXE_kedge")])
            .arg("--out")
            .arg(dir.path())
            .args(["--compression", "gzip", "--compression-level", "1"]));
        let deb = PathBuf::from(text(&out.stdout).trim());
        assert!(deb.is_file(), "build-deb printed {deb:?}, not a file");
        let tree = dir.path().join("tree");
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree));
        Built {
            _dir: dir,
            deb,
            tree,
        }
    })
}

fn field(name: &str) -> String {
    let out = run(Command::new("dpkg-deb")
        .arg("--field")
        .arg(&built().deb)
        .arg(name));
    text(&out.stdout).trim().to_string()
}

fn host_arch() -> String {
    let out = run(Command::new("dpkg").arg("--print-architecture"));
    text(&out.stdout).trim().to_string()
}

#[test]
fn control_fields_name_the_version_architecture_and_runtime_dependencies() {
    let b = built();
    assert_eq!(
        b.deb.file_name().and_then(|n| n.to_str()),
        Some(format!("kedge_{}_{}.deb", env!("CARGO_PKG_VERSION"), host_arch()).as_str())
    );
    assert_eq!(field("Package"), "kedge");
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(field("Architecture"), host_arch());
    let depends = field("Depends");
    let names: Vec<&str> = depends
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap_or(""))
        .collect();
    for pkg in [
        "containerd",
        "runc",
        "containernetworking-plugins",
        "iptables",
        "libc6",
        "init-system-helpers",
    ] {
        assert!(names.contains(&pkg), "{pkg} not in Depends: {depends}");
    }
    assert!(
        depends.contains("libc6 (>="),
        "libc6 without the version dpkg-shlibdeps finds: {depends}"
    );
}

#[test]
fn files_modes_and_owners() {
    let out = run(Command::new("dpkg-deb").arg("--contents").arg(&built().deb));
    // "-rwxr-xr-x root/root 123 2026-01-01 00:00 ./usr/bin/kedge"
    let entries: BTreeMap<String, (String, String)> = text(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 6).then(|| {
                (
                    f[5].trim_start_matches('.').to_string(),
                    (f[0].to_string(), f[1].to_string()),
                )
            })
        })
        .collect();
    for (path, mode) in [
        ("/usr/bin/kedge", "-rwxr-xr-x"),
        ("/usr/bin/kedge-killall.sh", "-rwxr-xr-x"),
        ("/lib/systemd/system/kedge.service", "-rw-r--r--"),
        ("/lib/systemd/system/kedge-agent.service", "-rw-r--r--"),
        ("/etc/kedge/config.yaml", "-rw-r--r--"),
        ("/usr/share/doc/kedge/copyright", "-rw-r--r--"),
        ("/usr/share/doc/kedge/changelog.gz", "-rw-r--r--"),
        ("/usr/share/lintian/overrides/kedge", "-rw-r--r--"),
        ("/", "drwxr-xr-x"),
    ] {
        let (m, _) = entries
            .get(path)
            .unwrap_or_else(|| panic!("{path} not in the package: {entries:?}"));
        assert_eq!(m, mode, "{path}");
    }
    for (path, (_, owner)) in &entries {
        assert_eq!(owner, "root/root", "{path}");
    }
    // Nothing in /usr/local, nothing under the data dir.
    assert!(
        entries
            .keys()
            .all(|p| !p.starts_with("/usr/local") && !p.starts_with("/var")),
        "{entries:?}"
    );
}

#[test]
fn conffiles_and_maintainer_scripts() {
    let b = built();
    let conffiles = run(Command::new("dpkg-deb")
        .arg("--info")
        .arg(&b.deb)
        .arg("conffiles"));
    assert_eq!(text(&conffiles.stdout).trim(), "/etc/kedge/config.yaml");
    for script in ["postinst", "prerm", "postrm"] {
        let out = run(Command::new("dpkg-deb")
            .arg("--info")
            .arg(&b.deb)
            .arg(script));
        let body = text(&out.stdout);
        assert!(body.starts_with("#!/bin/sh\n"), "{script}: {body}");
        assert!(body.contains("DPKG_ROOT"), "{script} ignores DPKG_ROOT");
    }
}

#[test]
fn units_run_the_packaged_binary() {
    let tree = &built().tree;
    for (unit, cmd) in [
        ("kedge.service", "server"),
        ("kedge-agent.service", "agent"),
    ] {
        let body = std::fs::read_to_string(tree.join("lib/systemd/system").join(unit))
            .unwrap_or_else(|e| panic!("{unit}: {e}"));
        let exec = body
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap_or_else(|| panic!("{unit} has no ExecStart: {body}"));
        let mut words = exec.split_whitespace();
        let bin = words.next().unwrap_or("");
        assert_eq!(bin, "/usr/bin/kedge", "{unit}");
        assert!(tree.join(bin.trim_start_matches('/')).is_file());
        assert_eq!(words.next(), Some(cmd), "{unit}: {exec}");
        for line in ["Type=notify", "KillMode=process", "Delegate=yes"] {
            assert!(body.lines().any(|l| l == line), "{unit}: no {line}");
        }
    }
    let out = run(Command::new(tree.join("usr/bin/kedge")).arg("--version"));
    assert!(text(&out.stdout).starts_with("kedge version "));
    // kedge-killall.sh is install.sh's, with the default data dir.
    let killall = std::fs::read_to_string(tree.join("usr/bin/kedge-killall.sh")).expect("killall");
    assert!(killall.contains("DATA_DIR=${KEDGE_DATA_DIR:-/var/lib/kedge}"));
    assert!(killall.contains("containerd.sock"), "{killall}");
    run(Command::new("sh")
        .arg("-n")
        .arg(tree.join("usr/bin/kedge-killall.sh")));
}

/// `kedge server --config FILE` with a data dir that cannot be created:
/// the real command line and config parsing run, then the server stops at
/// its first step. Exit code 2 is a rejected command line or config file,
/// 1 a failure after parsing.
fn server_with_config(config: &Path) -> Output {
    let dir = tempfile::tempdir().expect("tmp");
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, "").expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kedge"))
        .arg("server")
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(not_a_dir.join("data"))
        .arg("--write-kubeconfig")
        .arg(dir.path().join("kubeconfig"))
        .env_remove("KEDGE_TOKEN")
        .env_remove("KEDGE_CONFIG_FILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kedge");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("kedge server kept running with a data dir under a file");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// The default config with every commented-out example switched on.
fn uncommented(config: &str) -> (String, usize) {
    let mut keys = 0;
    let mut out = String::new();
    for line in config.lines() {
        let rest = line.strip_prefix("# ").unwrap_or("");
        let key = rest
            .split_once(':')
            .map(|(k, _)| k)
            .filter(|k| {
                k.starts_with(|c: char| c.is_ascii_lowercase())
                    && k.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
            .is_some();
        if key {
            keys += 1;
            out.push_str(rest);
        } else if rest.starts_with("  - ") {
            out.push_str(rest);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    (out, keys)
}

#[test]
fn the_default_config_and_all_its_examples_are_accepted_by_kedge() {
    let shipped = built().tree.join("etc/kedge/config.yaml");
    let config = std::fs::read_to_string(&shipped).expect("config.yaml");
    let dir = tempfile::tempdir().expect("tmp");
    let (all, keys) = uncommented(&config);
    assert!(keys >= 25, "only {keys} example keys in:\n{config}");
    let all_path = dir.path().join("all.yaml");
    std::fs::write(&all_path, &all).expect("write");
    let bad_path = dir.path().join("bad.yaml");
    std::fs::write(&bad_path, format!("{all}no-such-flag: 1\n")).expect("write");

    for (what, path) in [("shipped", &shipped), ("every example on", &all_path)] {
        let out = server_with_config(path);
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{what} config rejected:\n{stderr}\n{all}"
        );
        assert!(
            stderr.contains("cannot create"),
            "{what}: not the data dir failure: {stderr}"
        );
    }
    // The check above can tell: a bad key is refused at parsing.
    let out = server_with_config(&bad_path);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("unknown key \"no-such-flag\""));
}

#[test]
fn lintian_is_clean() {
    if Command::new("lintian").arg("--version").output().is_err() {
        panic!("lintian is not installed: scripts/setup.sh installs it (apt-get install lintian)");
    }
    let out = Command::new("lintian")
        .args(["--fail-on", "error,warning", "--tag-display-limit", "0"])
        .arg(&built().deb)
        .output()
        .expect("lintian");
    assert!(
        out.status.success(),
        "lintian:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn dpkg_in(root: &Path, args: &[&str]) -> Output {
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args([
            "--force-script-chrootless",
            "--force-depends",
            "--force-not-root",
        ])
        .args(args))
}

fn scratch_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tmp");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.path().join(d)).expect("mkdir");
    }
    std::fs::write(root.path().join("var/lib/dpkg/status"), "").expect("status");
    root
}

#[test]
fn installs_upgrades_removes_and_purges_in_a_scratch_root() {
    let b = built();
    let root = scratch_root();
    let r = root.path();
    let deb = b.deb.to_str().expect("utf8");

    let out = dpkg_in(r, &["-i", deb]);
    assert!(
        text(&out.stdout).contains("not starting kedge"),
        "postinst tried to start kedge: {}",
        text(&out.stdout)
    );
    assert!(r.join("usr/bin/kedge").is_file());
    assert!(r.join("etc/kedge/config.yaml").is_file());
    // Enabled (as deb-systemd-helper does it), not started.
    let wants = r.join("etc/systemd/system/multi-user.target.wants/kedge.service");
    assert_eq!(
        std::fs::read_link(&wants).expect("kedge.service enabled"),
        Path::new("/lib/systemd/system/kedge.service")
    );
    assert!(!r
        .join("etc/systemd/system/multi-user.target.wants/kedge-agent.service")
        .exists());
    let status = run(Command::new("dpkg-query")
        .arg(format!("--root={}", r.display()))
        .args(["-W", "-f", "${Status} ${Conffiles}", "kedge"]));
    let status = text(&status.stdout);
    assert!(status.starts_with("install ok installed"), "{status}");
    assert!(status.contains("/etc/kedge/config.yaml"), "{status}");

    // The admin edits the conffile; kedge makes its data; an upgrade
    // (the same version again) keeps both.
    let edited = "# mine\nnode-label:\n  - site=a\n";
    std::fs::write(r.join("etc/kedge/config.yaml"), edited).expect("edit");
    let db = r.join("var/lib/kedge/server/db/state.db");
    std::fs::create_dir_all(db.parent().expect("parent")).expect("mkdir");
    std::fs::write(&db, "sqlite").expect("db");
    std::fs::write(r.join("etc/kedge/kedge.yaml"), "kubeconfig").expect("kubeconfig");
    dpkg_in(r, &["--force-confold", "-i", deb]);
    assert_eq!(
        std::fs::read_to_string(r.join("etc/kedge/config.yaml")).expect("config"),
        edited
    );
    assert!(db.is_file());

    // remove: the program goes, configuration and data stay.
    dpkg_in(r, &["--remove", "kedge"]);
    assert!(!r.join("usr/bin/kedge").exists());
    assert!(!r.join("lib/systemd/system/kedge.service").exists());
    assert!(r.join("etc/kedge/config.yaml").is_file());
    assert!(db.is_file());

    // purge: everything kedge made goes too.
    dpkg_in(r, &["--purge", "kedge"]);
    for gone in [
        "etc/kedge",
        "var/lib/kedge",
        "etc/systemd/system/multi-user.target.wants/kedge.service",
        "var/lib/systemd/deb-systemd-helper-enabled/kedge.service.dsh-also",
    ] {
        assert!(
            std::fs::symlink_metadata(r.join(gone)).is_err(),
            "{gone} left after purge"
        );
    }
}

/// Each maintainer script, for each action dpkg gives it, where neither
/// systemctl nor init-system-helpers exist (a minimal container).
#[test]
fn maintainer_scripts_succeed_without_systemd_tools() {
    let tree = tempfile::tempdir().expect("tmp");
    run(Command::new("dpkg-deb")
        .arg("-e")
        .arg(&built().deb)
        .arg(tree.path().join("DEBIAN")));
    // A PATH with only sh and the basic tools the scripts use.
    let bin = tree.path().join("bin");
    std::fs::create_dir(&bin).expect("mkdir");
    for tool in ["sh", "rm", "rmdir", "timeout", "cat"] {
        let path = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("no {tool}"));
        std::os::unix::fs::symlink(path, bin.join(tool)).expect("symlink");
    }
    let root = scratch_root();
    for (script, args) in [
        ("postinst", &["configure", ""][..]),
        ("postinst", &["configure", "0.0.9"][..]),
        ("prerm", &["upgrade", "0.1.1"][..]),
        ("prerm", &["remove"][..]),
        ("postrm", &["remove"][..]),
        ("postrm", &["purge"][..]),
    ] {
        let out = Command::new(bin.join("sh"))
            .arg(tree.path().join("DEBIAN").join(script))
            .args(args)
            .env_clear()
            .env("PATH", &bin)
            .env("DPKG_ROOT", root.path())
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{script} {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}
