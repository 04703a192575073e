//! Upstream's `AtomicWriter` (`pkg/volume/util/atomic_writer.go`): a set of
//! files projected into a directory so that readers see either the old set
//! or the new one, never a mix.
//!
//! Layout of a target directory:
//!
//! ```text
//! ..2026_11_27_10_00_00.123456789/   the files (a timestamped directory)
//! ..data -> ..2026_11_27_10_00_00.123456789
//! key    -> ..data/key                user-visible, one per top-level name
//! dir    -> ..data/dir
//! ```
//!
//! An update writes a new timestamped directory, points `..data_tmp` at it
//! and renames `..data_tmp` over `..data` (rename(2) is atomic), then removes
//! user-visible names that are gone and the old directory. Nothing is
//! written when the content on disk is already the payload.
//!
//! Not safe for concurrent writers to one directory: the caller serializes.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::go_io_error;
use super::payload::Payload;

const MAX_FILE_NAME_LENGTH: usize = 255;
const MAX_PATH_LENGTH: usize = 4096;
const DATA_DIR_NAME: &str = "..data";
const NEW_DATA_DIR_NAME: &str = "..data_tmp";

/// Go's `path.Clean` for relative paths.
pub(crate) fn clean_path(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// `validatePath`: relative, no `..` element, not starting with `..`,
/// names ≤ 255 bytes, whole path ≤ 4096 bytes.
fn validate_path(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err(format!("invalid path: must not be empty: {p:?}"));
    }
    if p.starts_with('/') {
        return Err(format!("invalid path: must be relative path: {p}"));
    }
    if p.len() > MAX_PATH_LENGTH {
        return Err(format!(
            "invalid path: must be less than or equal to {MAX_PATH_LENGTH} characters"
        ));
    }
    let items: Vec<&str> = p.split('/').collect();
    for item in &items {
        if *item == ".." {
            return Err(format!("invalid path: must not contain '..': {p}"));
        }
        if item.len() > MAX_FILE_NAME_LENGTH {
            return Err(format!(
                "invalid path: filenames must be less than or equal to {MAX_FILE_NAME_LENGTH} characters"
            ));
        }
    }
    if items[0].starts_with("..") && items[0].len() > 2 {
        return Err(format!("invalid path: must not start with '..': {p}"));
    }
    Ok(())
}

fn validate_payload(payload: &Payload) -> Result<Payload, String> {
    let mut clean = Payload::new();
    for (k, v) in payload {
        validate_path(k)?;
        clean.insert(clean_path(k), v.clone());
    }
    Ok(clean)
}

/// Applies ownership to a volume directory before a new version is
/// published.
pub(crate) type SetPerms<'a> = &'a dyn Fn(&Path) -> Result<(), String>;

/// What [`write`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteOutcome {
    /// The payload was already on disk.
    Unchanged,
    /// A new timestamped directory became `..data`.
    Written,
}

fn err(op: &str, path: &Path, e: io::Error) -> String {
    go_io_error(op, path, &e)
}

/// Every path below `dir`, relative to it, without following symlinks.
fn walk_relative(dir: &Path) -> io::Result<BTreeSet<String>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<String>) -> io::Result<()> {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            if let Ok(rel) = path.strip_prefix(base) {
                out.insert(rel.to_string_lossy().into_owned());
            }
            if entry.file_type()?.is_dir() {
                walk(base, &path, out)?;
            }
        }
        Ok(())
    }
    let mut out = BTreeSet::new();
    match walk(dir, dir, &mut out) {
        Ok(()) => Ok(out),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(e),
    }
}

/// `pathsToRemove`: what the old data directory holds that the payload no
/// longer does (a payload path keeps its parent directories).
fn paths_to_remove(payload: &Payload, old_ts_dir: &Path) -> io::Result<BTreeSet<String>> {
    let current = walk_relative(old_ts_dir)?;
    let mut new_paths = BTreeSet::new();
    for file in payload.keys() {
        let mut sub = file.as_str();
        loop {
            new_paths.insert(sub.to_string());
            match sub.rfind('/') {
                Some(i) => sub = &sub[..i],
                None => break,
            }
        }
    }
    Ok(current.difference(&new_paths).cloned().collect())
}

/// `shouldWritePayload`: any file missing or with other content.
fn should_write_payload(payload: &Payload, old_ts_dir: &Path) -> io::Result<bool> {
    for (path, f) in payload {
        let full = old_ts_dir.join(path);
        match fs::symlink_metadata(&full) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
            _ => {}
        }
        if fs::read(&full)? != f.data {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `newTimestampDir`: `..YYYY_MM_DD_HH_MM_SS.<random>` in UTC, mode 0755.
fn new_timestamp_dir(target: &Path, now: SystemTime) -> Result<PathBuf, String> {
    let stamp = jiff::Timestamp::try_from(now)
        .map(|ts| ts.strftime("%Y_%m_%d_%H_%M_%S").to_string())
        .unwrap_or_else(|_| "1970_01_01_00_00_00".to_string());
    for _ in 0..100 {
        let dir = target.join(format!("..{stamp}.{}", rand::random::<u32>()));
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
                    .map_err(|e| err("chmod", &dir, e))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(err("mkdir", &dir, e)),
        }
    }
    Err(format!(
        "cannot create a timestamped directory in {}",
        target.display()
    ))
}

/// `writePayloadToDir`: files with their exact modes (whatever the umask),
/// owned by `fs_user` where set.
fn write_payload_to_dir(payload: &Payload, dir: &Path) -> Result<(), String> {
    for (rel, f) in payload {
        let full = dir.join(rel);
        if let Some(parent) = full.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o777)
                .create(parent)
                .map_err(|e| err("mkdir", parent, e))?;
        }
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(f.mode)
            .open(&full)
            .map_err(|e| err("open", &full, e))?;
        file.write_all(&f.data)
            .map_err(|e| err("write", &full, e))?;
        drop(file);
        fs::set_permissions(&full, fs::Permissions::from_mode(f.mode))
            .map_err(|e| err("chmod", &full, e))?;
        if let Some(uid) = f.fs_user {
            std::os::unix::fs::lchown(&full, Some(uid), None)
                .map_err(|e| err("lchown", &full, e))?;
        }
    }
    Ok(())
}

/// `createUserVisibleFiles`: `name -> ..data/name` for each top-level name.
fn create_user_visible_files(payload: &Payload, target: &Path) -> Result<(), String> {
    let tops: BTreeSet<&str> = payload
        .keys()
        .map(|k| k.split('/').next().unwrap_or(k))
        .collect();
    for top in tops {
        let visible = target.join(top);
        match fs::read_link(&visible) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::os::unix::fs::symlink(Path::new(DATA_DIR_NAME).join(top), &visible)
                    .map_err(|e| err("symlink", &visible, e))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// `removeUserVisiblePaths`: only top-level names (the symlinks).
fn remove_user_visible_paths(paths: &BTreeSet<String>, target: &Path) -> Result<(), String> {
    let mut last = None;
    for p in paths.iter().filter(|p| !p.contains('/')) {
        let full = target.join(p);
        if let Err(e) = fs::remove_file(&full) {
            tracing::warn!(path = %full.display(), error = %e, "cannot prune an old user-visible path");
            last = Some(err("remove", &full, e));
        }
    }
    last.map_or(Ok(()), Err)
}

/// Projects `payload` into `target` (which must exist). `set_perms` runs on
/// a new timestamped directory before it is published (upstream applies
/// fsGroup ownership there).
pub(crate) fn write(
    target: &Path,
    payload: &Payload,
    set_perms: Option<SetPerms<'_>>,
    now: SystemTime,
) -> Result<WriteOutcome, String> {
    fs::metadata(target).map_err(|e| err("stat", target, e))?;
    let payload = validate_payload(payload)?;

    let data_dir = target.join(DATA_DIR_NAME);
    let old_ts = match fs::read_link(&data_dir) {
        Ok(p) => Some(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(err("readlink", &data_dir, e)),
    };

    let mut remove = BTreeSet::new();
    let mut should_write = true;
    let mut old_ts_path = None;
    if let Some(old) = &old_ts {
        let old_path = target.join(old);
        remove = paths_to_remove(&payload, &old_path).map_err(|e| err("walk", &old_path, e))?;
        let changed =
            should_write_payload(&payload, &old_path).map_err(|e| err("read", &old_path, e))?;
        if !changed && remove.is_empty() {
            // Still make sure the user-visible links exist (upstream #121472).
            should_write = false;
        } else {
            old_ts_path = Some(old_path);
        }
    }

    if should_write {
        let ts_dir = new_timestamp_dir(target, now)?;
        let ts_name = ts_dir
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| ts_dir.clone());
        let publish = || -> Result<(), String> {
            write_payload_to_dir(&payload, &ts_dir)?;
            if let Some(f) = set_perms {
                f(target)?;
            }
            let tmp = target.join(NEW_DATA_DIR_NAME);
            // A leftover from an interrupted write would make symlink fail.
            let _ = fs::remove_file(&tmp);
            std::os::unix::fs::symlink(&ts_name, &tmp).map_err(|e| err("symlink", &tmp, e))?;
            if let Err(e) = fs::rename(&tmp, &data_dir) {
                let _ = fs::remove_file(&tmp);
                return Err(err("rename", &tmp, e));
            }
            Ok(())
        };
        if let Err(e) = publish() {
            if let Err(rm) = fs::remove_dir_all(&ts_dir) {
                tracing::warn!(dir = %ts_dir.display(), error = %rm, "cannot remove an unpublished timestamped directory");
            }
            return Err(e);
        }
    }

    create_user_visible_files(&payload, target)?;
    remove_user_visible_paths(&remove, target)?;
    if let Some(old) = old_ts_path {
        // Never a symlink's target outside: `..data` names a child directory.
        if old.parent() == Some(target) {
            fs::remove_dir_all(&old).map_err(|e| err("remove", &old, e))?;
        }
    }
    Ok(if should_write {
        WriteOutcome::Written
    } else {
        WriteOutcome::Unchanged
    })
}

#[cfg(test)]
mod tests {
    use super::super::payload::FileProjection;
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    fn payload(files: &[(&str, &str, u32)]) -> Payload {
        files
            .iter()
            .map(|(p, d, m)| {
                (
                    p.to_string(),
                    FileProjection {
                        data: d.as_bytes().to_vec(),
                        mode: *m,
                        fs_user: None,
                    },
                )
            })
            .collect()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean_path("a/./b//c/"), "a/b/c");
        assert_eq!(clean_path("./sub/../name"), "name");
        assert_eq!(clean_path("../x"), "../x");
        assert_eq!(clean_path(""), ".");
    }

    #[test]
    fn path_validation() {
        assert!(validate_path("").unwrap_err().contains("must not be empty"));
        assert_eq!(
            validate_path("/etc/x").unwrap_err(),
            "invalid path: must be relative path: /etc/x"
        );
        assert_eq!(
            validate_path("a/../b").unwrap_err(),
            "invalid path: must not contain '..': a/../b"
        );
        assert_eq!(
            validate_path("..data").unwrap_err(),
            "invalid path: must not start with '..': ..data"
        );
        assert!(validate_path(&"x".repeat(256)).is_err());
        assert!(validate_path("..").is_err());
        assert!(validate_path("a/b..c").is_ok());
    }

    #[test]
    fn layout_modes_and_atomic_update() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        let p1 = payload(&[
            ("a", "one", 0o644),
            ("dir/b", "two", 0o400),
            ("gone", "x", 0o644),
        ]);
        assert_eq!(write(t, &p1, None, now).unwrap(), WriteOutcome::Written);

        let ts1 = fs::read_link(t.join("..data")).unwrap();
        let ts1_name = ts1.to_string_lossy().into_owned();
        assert!(ts1_name.starts_with("..2026_11_18_"), "{ts1_name}");
        assert_eq!(fs::read_link(t.join("a")).unwrap(), Path::new("..data/a"));
        assert_eq!(
            fs::read_link(t.join("dir")).unwrap(),
            Path::new("..data/dir")
        );
        assert_eq!(fs::read_to_string(t.join("dir/b")).unwrap(), "two");
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&t.join("a")), 0o644);
        assert_eq!(mode(&t.join("dir/b")), 0o400);
        assert_eq!(mode(&t.join(&ts1)), 0o755);
        assert_eq!(names(t), [&ts1_name, "..data", "a", "dir", "gone"]);

        // The same payload again writes nothing.
        let ino = fs::metadata(t.join("a")).unwrap().ino();
        assert_eq!(write(t, &p1, None, now).unwrap(), WriteOutcome::Unchanged);
        assert_eq!(fs::read_link(t.join("..data")).unwrap(), ts1);
        assert_eq!(fs::metadata(t.join("a")).unwrap().ino(), ino);

        // A change publishes a new directory, prunes what is gone and the
        // old directory.
        let p2 = payload(&[
            ("a", "uno", 0o644),
            ("dir/b", "two", 0o400),
            ("new", "n", 0o600),
        ]);
        assert_eq!(write(t, &p2, None, now).unwrap(), WriteOutcome::Written);
        let ts2 = fs::read_link(t.join("..data")).unwrap();
        assert_ne!(ts2, ts1);
        assert!(!t.join(&ts1).exists());
        assert_eq!(fs::read_to_string(t.join("a")).unwrap(), "uno");
        assert_eq!(fs::read_to_string(t.join("new")).unwrap(), "n");
        assert!(fs::symlink_metadata(t.join("gone")).is_err());
        assert!(fs::symlink_metadata(t.join("..data_tmp")).is_err());
        let ts2_name = ts2.to_string_lossy().into_owned();
        assert_eq!(names(t), [&ts2_name, "..data", "a", "dir", "new"]);

        // A user-visible link deleted by hand comes back without a rewrite.
        fs::remove_file(t.join("new")).unwrap();
        assert_eq!(write(t, &p2, None, now).unwrap(), WriteOutcome::Unchanged);
        assert_eq!(fs::read_to_string(t.join("new")).unwrap(), "n");

        // Removing a file inside a directory rewrites.
        let p3 = payload(&[("a", "uno", 0o644)]);
        assert_eq!(write(t, &p3, None, now).unwrap(), WriteOutcome::Written);
        assert_eq!(names(t).len(), 3, "{:?}", names(t));
        assert!(fs::symlink_metadata(t.join("dir")).is_err());
    }

    #[test]
    fn empty_payload_and_bad_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        assert_eq!(
            write(t, &Payload::new(), None, SystemTime::now()).unwrap(),
            WriteOutcome::Written
        );
        assert!(fs::read_link(t.join("..data")).is_ok());
        let bad = payload(&[("../escape", "x", 0o644)]);
        assert!(write(t, &bad, None, SystemTime::now())
            .unwrap_err()
            .contains("must not contain '..'"));
        assert!(!tmp.path().parent().unwrap().join("escape").exists());
        assert!(write(&t.join("missing"), &bad, None, SystemTime::now())
            .unwrap_err()
            .starts_with("stat "));
    }

    #[test]
    fn readers_never_see_a_mix() {
        // Rewrite two files together many times while a reader checks that
        // both always come from the same version.
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path().to_path_buf();
        let v = |i: u32| payload(&[("x", &i.to_string(), 0o644), ("y", &i.to_string(), 0o644)]);
        write(&t, &v(0), None, SystemTime::now()).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let t = t.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut checks = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // Resolve ..data once, then read both files through it.
                    let Ok(ts) = fs::read_link(t.join("..data")) else {
                        continue;
                    };
                    let (Ok(x), Ok(y)) = (
                        fs::read_to_string(t.join(&ts).join("x")),
                        fs::read_to_string(t.join(&ts).join("y")),
                    ) else {
                        continue;
                    };
                    assert_eq!(x, y);
                    checks += 1;
                }
                checks
            })
        };
        for i in 1..200 {
            write(&t, &v(i), None, SystemTime::now()).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        assert_eq!(fs::read_to_string(t.join("x")).unwrap(), "199");
        // Only one timestamped directory is left.
        assert_eq!(names(&t).iter().filter(|n| n.starts_with("..2")).count(), 1);
    }
}
