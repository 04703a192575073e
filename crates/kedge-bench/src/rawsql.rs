//! The durable-insert floor: raw SQLite inserts into kedge's schema with
//! kedge's pragmas, one transaction (one fsync) per insert.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rusqlite::{params, Connection};

/// The schema and pragmas of `kedge_store::SqliteStore` (Durability::Full).
const SCHEMA: &str = "PRAGMA journal_mode=WAL;
     PRAGMA synchronous=FULL;
     PRAGMA busy_timeout=5000;
     PRAGMA wal_autocheckpoint=1000;
     CREATE TABLE IF NOT EXISTS kedge_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
     CREATE TABLE IF NOT EXISTS objects (
       key TEXT PRIMARY KEY,
       revision INTEGER NOT NULL,
       value BLOB NOT NULL
     ) WITHOUT ROWID;
     INSERT OR IGNORE INTO kedge_meta (name, value) VALUES ('revision', 0), ('schema', 1);";

fn open(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    conn.execute_batch(SCHEMA)
        .with_context(|| format!("preparing {}", path.display()))?;
    Ok(conn)
}

pub struct RawRun {
    pub rows: u64,
    pub errors: u64,
    pub elapsed: Duration,
}

impl RawRun {
    pub fn rate(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }
}

/// `threads` threads, each with its own connection, insert `value` under
/// new keys (autocommit: one transaction per insert) for `duration`.
/// A fresh database at `path` (removed first, with its WAL).
pub fn insert_for(path: &Path, value: &[u8], duration: Duration, threads: usize) -> Result<RawRun> {
    for suffix in ["", "-wal", "-shm"] {
        let p = format!("{}{suffix}", path.display());
        let _ = std::fs::remove_file(p);
    }
    drop(open(path)?);
    let next = Arc::new(AtomicU64::new(0));
    let value: Arc<[u8]> = value.into();
    let conns = (0..threads.max(1))
        .map(|_| open(path))
        .collect::<Result<Vec<_>>>()?;
    let start = Instant::now();
    let deadline = start + duration;
    let mut handles = Vec::new();
    for conn in conns {
        let (next, value) = (next.clone(), value.clone());
        handles.push(std::thread::spawn(move || -> Result<(u64, u64)> {
            let mut stmt =
                conn.prepare("INSERT INTO objects (key, revision, value) VALUES (?1, ?2, ?3)")?;
            let (mut rows, mut errors) = (0u64, 0u64);
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed) as i64;
                let key = format!("/core/configmaps/bench-raw/raw-{i}");
                match stmt.execute(params![key, i + 1, &value[..]]) {
                    Ok(_) => rows += 1,
                    // SQLITE_BUSY past busy_timeout: counted, not fatal.
                    Err(_) => errors += 1,
                }
            }
            Ok((rows, errors))
        }));
    }
    let mut run = RawRun {
        rows: 0,
        errors: 0,
        elapsed: Duration::ZERO,
    };
    for h in handles {
        let (rows, errors) = h
            .join()
            .map_err(|_| anyhow::anyhow!("an insert thread panicked"))??;
        run.rows += rows;
        run.errors += errors;
    }
    run.elapsed = start.elapsed();
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_rows_durably_into_kedge_schema() {
        let dir = std::env::temp_dir().join(format!("kedge-bench-raw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let db = dir.join("raw.db");
        let run = insert_for(
            &db,
            b"{\"kind\":\"ConfigMap\"}",
            Duration::from_millis(200),
            2,
        )
        .expect("inserts");
        assert!(run.rows > 0);
        let conn = open(&db).expect("reopen");
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM objects", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n as u64, run.rows);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("journal mode");
        assert_eq!(mode, "wal");
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
