//! `kedge backup` and `kedge restore`: the datastore
//! (`<data-dir>/server/db/state.db`, SQLite in WAL mode) to and from one file.
//!
//! Backup uses SQLite's online backup API, which copies a consistent
//! snapshot page by page while kedge keeps writing; the copy is switched to
//! rollback-journal mode so that it is one self-contained file.
//!
//! Restore refuses to run while a process has the datastore open (found by
//! reading `/proc/<pid>/fd`: a running `kedge server` always holds
//! `state.db` open). It checks the backup, writes it next to the datastore,
//! keeps the old datastore as `state.db.bak-<UTC timestamp>` (a hard link made
//! after checkpointing its WAL) and renames the new file over `state.db`, so
//! the datastore is at every moment either the old one or the new one. The
//! restored datastore's revision counter is raised to the old one's, so no
//! resourceVersion a client has seen is handed out again.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rusqlite::{Connection, OpenFlags};

pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("server").join("db").join("state.db")
}

pub fn run_backup(data_dir: &Path, to: &Path) -> ExitCode {
    report(backup(&db_path(data_dir), to).map(|pages| {
        println!(
            "backed up {} to {} ({pages} pages)",
            db_path(data_dir).display(),
            to.display()
        )
    }))
}

pub fn run_restore(data_dir: &Path, from: &Path) -> ExitCode {
    report(restore(&db_path(data_dir), from).map(|kept| {
        print!(
            "restored {} from {}",
            db_path(data_dir).display(),
            from.display()
        );
        match kept {
            Some(bak) => println!("; the previous datastore is {}", bak.display()),
            None => println!(),
        }
    }))
}

fn report(r: Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kedge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Copy the database at `db` to `to` (through a temporary file beside it);
/// returns the number of pages copied.
pub fn backup(db: &Path, to: &Path) -> Result<i32> {
    if !db.is_file() {
        bail!("no datastore at {} (wrong --data-dir?)", db.display());
    }
    let src = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {}", db.display()))?;
    src.busy_timeout(Duration::from_secs(10))?;
    let tmp = sibling(to, ".tmp")?;
    let _ = std::fs::remove_file(&tmp);
    let pages = copy_db(&src, &tmp).with_context(|| format!("backing up {}", db.display()));
    let pages = match pages {
        Ok(p) => p,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, to).with_context(|| format!("moving the backup to {}", to.display()))?;
    Ok(pages)
}

/// The online backup of `src` into a new file `dest`, left in
/// rollback-journal mode, private to its owner and synced.
fn copy_db(src: &Connection, dest: &Path) -> Result<i32> {
    let mut dst = Connection::open(dest)?;
    let pages = {
        let b = rusqlite::backup::Backup::new(src, &mut dst)?;
        b.run_to_completion(256, Duration::from_millis(5), None)?;
        b.progress().pagecount
    };
    dst.pragma_update(None, "journal_mode", "DELETE")?;
    drop(dst);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o600))?;
    std::fs::File::open(dest)?.sync_all()?;
    Ok(pages)
}

fn sibling(p: &Path, suffix: &str) -> Result<PathBuf> {
    let name = p
        .file_name()
        .with_context(|| format!("{} is not a file path", p.display()))?;
    let mut n = name.to_os_string();
    n.push(suffix);
    Ok(p.with_file_name(n))
}

/// Replace the datastore at `db` with the backup `from`; returns where the
/// old datastore was kept, if there was one.
pub fn restore(db: &Path, from: &Path) -> Result<Option<PathBuf>> {
    if let Some(pid) = process_holding(db) {
        bail!(
            "process {pid} has {} open: stop kedge (systemctl stop kedge) before restoring",
            db.display()
        );
    }
    let src = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening the backup {}", from.display()))?;
    check_backup(&src)
        .with_context(|| format!("{} is not a usable kedge backup", from.display()))?;
    let dir = db
        .parent()
        .with_context(|| format!("{} has no parent folder", db.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = sibling(db, ".restore-tmp")?;
    let _ = std::fs::remove_file(&tmp);
    copy_db(&src, &tmp)
        .with_context(|| format!("copying {} to {}", from.display(), tmp.display()))?;
    drop(src);

    let mut kept = None;
    let mut old_revision = None;
    if db.exists() {
        // Fold the WAL into the file so that the kept copy is complete and
        // no stale WAL is left to be replayed onto the restored file.
        let old = Connection::open(db).with_context(|| format!("opening {}", db.display()))?;
        old.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .with_context(|| format!("checkpointing {}", db.display()))?;
        old.pragma_update(None, "journal_mode", "DELETE")?;
        old_revision = old
            .query_row(
                "SELECT value FROM kedge_meta WHERE name = 'revision'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .ok();
        drop(old);
        let bak = sibling(db, &format!(".bak-{}", utc_stamp()))?;
        std::fs::hard_link(db, &bak)
            .with_context(|| format!("keeping the old datastore as {}", bak.display()))?;
        kept = Some(bak);
    }
    // Revisions only go forward: clients that saw the old datastore's
    // resourceVersions must never see one reused for another change. Their
    // watches from those revisions get 410 Gone and relist.
    if let Some(rev) = old_revision {
        Connection::open(&tmp)
            .and_then(|c| {
                c.execute(
                    "UPDATE kedge_meta SET value = max(value, ?1) WHERE name = 'revision'",
                    [rev],
                )
            })
            .with_context(|| format!("carrying the revision over to {}", tmp.display()))?;
    }
    for side in ["-wal", "-shm"] {
        let p = sibling(db, side)?;
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
        }
    }
    std::fs::rename(&tmp, db)
        .with_context(|| format!("moving the restored file to {}", db.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(kept)
}

fn check_backup(c: &Connection) -> Result<()> {
    let verdict: String = c.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if verdict != "ok" {
        bail!("integrity check: {verdict}");
    }
    let tables: i64 = c.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('objects', 'kedge_meta')",
        [],
        |r| r.get(0),
    )?;
    if tables != 2 {
        bail!("it lacks kedge's tables (objects, kedge_meta)");
    }
    Ok(())
}

/// A process (other than this one) with the database or its WAL open: a running
/// `kedge server` on that data dir (also used by `kedge certificate rotate`).
pub(crate) fn process_holding(db: &Path) -> Option<u32> {
    let targets: Vec<PathBuf> = ["", "-wal", "-shm"]
        .iter()
        .filter_map(|s| sibling(db, s).ok())
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    if targets.is_empty() {
        return None;
    }
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|t| targets.contains(&t)) {
                return Some(pid);
            }
        }
    }
    None
}

/// Now as `YYYYmmddTHHMMSSZ`.
fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kedge_db(path: &Path, rows: &[&str]) -> Connection {
        let c = Connection::open(path).expect("open");
        c.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE IF NOT EXISTS kedge_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS objects (key TEXT PRIMARY KEY, revision INTEGER NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;
             INSERT OR IGNORE INTO kedge_meta VALUES ('revision', 2);",
        )
        .expect("schema");
        for (i, r) in rows.iter().enumerate() {
            c.execute(
                "INSERT INTO objects (key, revision, value) VALUES (?1, ?2, x'00')",
                rusqlite::params![r, i as i64],
            )
            .expect("insert");
        }
        c
    }

    fn keys(path: &Path) -> Vec<String> {
        let c = Connection::open(path).expect("open");
        let mut s = c
            .prepare("SELECT key FROM objects ORDER BY key")
            .expect("prepare");
        s.query_map([], |r| r.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    }

    #[test]
    fn backup_and_restore_round_trip() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = db_path(dir.path());
        std::fs::create_dir_all(db.parent().expect("parent")).expect("mkdir");
        let live = kedge_db(&db, &["a", "b"]);
        let file = dir.path().join("backup.db");
        backup(&db, &file).expect("backup");
        live.execute("INSERT INTO objects VALUES ('c', 9, x'00')", [])
            .expect("insert");
        // Our own open connection is not another process.
        drop(live);
        let c = Connection::open(&db).expect("open");
        c.execute(
            "UPDATE kedge_meta SET value = 42 WHERE name = 'revision'",
            [],
        )
        .expect("revision");
        drop(c);
        let kept = restore(&db, &file).expect("restore").expect("kept");
        assert_eq!(keys(&db), ["a", "b"]);
        let rev: i64 = Connection::open(&db)
            .and_then(|c| {
                c.query_row(
                    "SELECT value FROM kedge_meta WHERE name = 'revision'",
                    [],
                    |r| r.get(0),
                )
            })
            .expect("revision");
        assert_eq!(rev, 42);
        assert_eq!(keys(&kept), ["a", "b", "c"]);
        assert!(kept.to_string_lossy().contains("state.db.bak-"));
    }

    #[test]
    fn restore_refuses_what_is_not_a_kedge_backup() {
        let dir = tempfile::tempdir().expect("tmp");
        let other = dir.path().join("other.db");
        Connection::open(&other)
            .and_then(|c| c.execute_batch("CREATE TABLE t (x)"))
            .expect("other db");
        let db = db_path(dir.path());
        let err = restore(&db, &other).expect_err("must refuse");
        assert!(format!("{err:#}").contains("kedge's tables"), "{err:#}");
        assert!(!db.exists());
    }

    #[test]
    fn stamps_are_utc() {
        let s = utc_stamp();
        assert_eq!(s.len(), 16, "{s}");
        assert!(s.starts_with("20") && s.ends_with('Z'));
    }
}
