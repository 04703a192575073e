//! The SQLite backend.
//!
//! Schema (one file, `state.db`, WAL mode):
//!
//! ```sql
//! CREATE TABLE kedge_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
//!   -- 'revision': the global revision of the last committed write
//!   -- 'schema': schema version (1)
//! CREATE TABLE objects (
//!   key TEXT PRIMARY KEY,       -- '/<group>/<resource>/[<namespace>/]<name>'
//!   revision INTEGER NOT NULL,  -- revision of the last write = resourceVersion
//!   value BLOB NOT NULL         -- the object's JSON, resourceVersion included
//! ) WITHOUT ROWID;
//! ```
//!
//! Only current state is kept (no history to compact): an SD card sees one
//! row rewrite per API write. All writes go through one writer thread that
//! commits whatever has queued up in one transaction (group commit), so
//! many concurrent clients share each fsync. Reads use a small pool of
//! read-only connections and see WAL snapshots.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use bytes::Bytes;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::window::{EventType, WatchEvent, WatchStream, WatchWindow};
use crate::{Error, ListPage, Result, Store, Stored};

/// How durable a commit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: an acknowledged write survives power loss.
    Full,
    /// `synchronous=NORMAL`: survives a process crash, not power loss.
    Normal,
}

impl Durability {
    fn pragma(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
}

enum Op {
    Create,
    Update(Option<i64>),
    Delete(Option<i64>),
}

struct WriteRequest {
    op: Op,
    key: String,
    obj: Option<Value>,
    reply: oneshot::Sender<Result<Stored>>,
}

/// The SQLite-backed [`Store`].
pub struct SqliteStore {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    writer: Mutex<Option<mpsc::Sender<WriteRequest>>>,
    revision: Arc<AtomicI64>,
    window: Arc<WatchWindow>,
}

/// Default number of events the watch window keeps.
pub const DEFAULT_WINDOW: usize = 10_000;
const MAX_BATCH: usize = 256;

fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |source| Error::Sqlite {
        path: path.display().to_string(),
        source,
    }
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path`.
    pub fn open(path: &Path, durability: Durability, window: usize) -> Result<Self> {
        let e = sql_err(path);
        let conn = Connection::open(path).map_err(&e)?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous={};
             PRAGMA busy_timeout=5000;
             PRAGMA wal_autocheckpoint=1000;
             CREATE TABLE IF NOT EXISTS kedge_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS objects (
               key TEXT PRIMARY KEY,
               revision INTEGER NOT NULL,
               value BLOB NOT NULL
             ) WITHOUT ROWID;
             INSERT OR IGNORE INTO kedge_meta (name, value) VALUES ('revision', 0), ('schema', 1);",
            durability.pragma()
        ))
        .map_err(&e)?;
        let rev: i64 = conn
            .query_row(
                "SELECT value FROM kedge_meta WHERE name = 'revision'",
                [],
                |r| r.get(0),
            )
            .map_err(&e)?;
        let revision = Arc::new(AtomicI64::new(rev));
        let window = Arc::new(WatchWindow::new(rev, window));
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            conn,
            path: path.to_path_buf(),
            revision: revision.clone(),
            window: window.clone(),
        };
        std::thread::Builder::new()
            .name("kedge-store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|err| Error::Sqlite {
                path: path.display().to_string(),
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(err)),
            })?;
        tracing::info!(path = %path.display(), revision = rev, "datastore open");
        Ok(SqliteStore {
            path: path.to_path_buf(),
            readers: Mutex::new(Vec::new()),
            writer: Mutex::new(Some(tx)),
            revision,
            window,
        })
    }

    /// The watch window (for metrics and tests).
    pub fn window(&self) -> &WatchWindow {
        &self.window
    }

    /// Stop accepting writes; the writer thread ends after the queued ones.
    pub fn close(&self) {
        self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn with_reader<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        let e = sql_err(&self.path);
        let conn = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut conn = match conn {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(&e)?;
                c.busy_timeout(std::time::Duration::from_secs(5))
                    .map_err(&e)?;
                c
            }
        };
        let out = f(&mut conn).map_err(&e);
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < 4 {
            pool.push(conn);
        }
        out
    }

    async fn submit(&self, op: Op, key: &str, obj: Option<Value>) -> Result<Stored> {
        let (reply, rx) = oneshot::channel();
        let req = WriteRequest {
            op,
            key: key.to_string(),
            obj,
            reply,
        };
        {
            let w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            let tx = w.as_ref().ok_or(Error::Closed)?;
            tx.send(req).map_err(|_| Error::Closed)?;
        }
        rx.await.map_err(|_| Error::Closed)?
    }
}

/// The end of a key range: the prefix with its last byte incremented.
fn prefix_end(prefix: &str) -> String {
    let mut b = prefix.as_bytes().to_vec();
    while let Some(last) = b.pop() {
        if last < 0x7f {
            b.push(last + 1);
            return String::from_utf8_lossy(&b).into_owned();
        }
    }
    "\u{10ffff}".to_string()
}

impl Store for SqliteStore {
    fn revision(&self) -> i64 {
        self.revision.load(Ordering::Acquire)
    }

    fn get(&self, key: &str) -> Result<Option<Stored>> {
        self.with_reader(|c| {
            c.prepare_cached("SELECT revision, value FROM objects WHERE key = ?1")?
                .query_row([key], |r| {
                    Ok(Stored {
                        key: key.to_string(),
                        revision: r.get(0)?,
                        value: Bytes::from(r.get::<_, Vec<u8>>(1)?),
                    })
                })
                .optional()
        })
    }

    fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<ListPage> {
        let end = prefix_end(prefix);
        let start = start_after.filter(|s| *s >= prefix).unwrap_or(prefix);
        let inclusive = start_after.is_none_or(|s| s < prefix);
        self.with_reader(|c| {
            let tx = c.transaction()?;
            let revision: i64 = tx.query_row(
                "SELECT value FROM kedge_meta WHERE name = 'revision'",
                [],
                |r| r.get(0),
            )?;
            // Fetch one more than asked to learn whether more follow.
            let fetch = if limit == 0 { -1 } else { limit as i64 + 1 };
            let sql = if inclusive {
                "SELECT key, revision, value FROM objects WHERE key >= ?1 AND key < ?2 ORDER BY key LIMIT ?3"
            } else {
                "SELECT key, revision, value FROM objects WHERE key > ?1 AND key < ?2 ORDER BY key LIMIT ?3"
            };
            let mut items = {
                let mut stmt = tx.prepare_cached(sql)?;
                let rows = stmt.query_map(params![start, end, fetch], |r| {
                    Ok(Stored {
                        key: r.get(0)?,
                        revision: r.get(1)?,
                        value: Bytes::from(r.get::<_, Vec<u8>>(2)?),
                    })
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            tx.commit()?;
            let more = limit != 0 && items.len() > limit;
            items.truncate(if limit == 0 { items.len() } else { limit });
            Ok(ListPage {
                items,
                revision,
                more,
            })
        })
    }

    fn count(&self, prefix: &str, start_after: Option<&str>) -> Result<u64> {
        let end = prefix_end(prefix);
        let start = start_after.unwrap_or(prefix);
        self.with_reader(|c| {
            c.prepare_cached("SELECT COUNT(*) FROM objects WHERE key > ?1 AND key < ?2")?
                .query_row(params![start, end], |r| r.get::<_, i64>(0))
                .map(|n| n.max(0) as u64)
        })
    }

    async fn create(&self, key: &str, obj: Value) -> Result<Stored> {
        self.submit(Op::Create, key, Some(obj)).await
    }

    async fn update(&self, key: &str, obj: Value, expected: Option<i64>) -> Result<Stored> {
        self.submit(Op::Update(expected), key, Some(obj)).await
    }

    async fn delete(&self, key: &str, expected: Option<i64>) -> Result<Stored> {
        self.submit(Op::Delete(expected), key, None).await
    }

    fn watch(&self, prefix: &str, after: i64) -> Result<WatchStream> {
        self.window.watch(prefix, after)
    }
}

struct Writer {
    conn: Connection,
    path: PathBuf,
    revision: Arc<AtomicI64>,
    window: Arc<WatchWindow>,
}

/// Write `rev` into `metadata.resourceVersion` and serialise.
fn encode(mut obj: Value, rev: i64) -> Vec<u8> {
    if let Some(o) = obj.as_object_mut() {
        let md = o
            .entry("metadata")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(md) = md.as_object_mut() {
            md.insert("resourceVersion".into(), Value::String(rev.to_string()));
        }
    }
    // Serialising a Value cannot fail (keys are strings).
    serde_json::to_vec(&obj).unwrap_or_default()
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<WriteRequest>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
        }
        tracing::debug!("store writer stopped");
    }

    fn commit_batch(&mut self, batch: Vec<WriteRequest>) {
        let start_rev = self.revision.load(Ordering::Acquire);
        let mut rev = start_rev;
        let mut results: Vec<(oneshot::Sender<Result<Stored>>, Result<Stored>)> = Vec::new();
        let mut events = Vec::new();
        let e = sql_err(&self.path);
        let tx = match self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        {
            Ok(tx) => tx,
            Err(err) => {
                tracing::error!(error = %err, "cannot begin a write transaction");
                for req in batch {
                    let _ = req.reply.send(Err(e(clone_err(&err))));
                }
                return;
            }
        };
        for req in batch {
            let res = apply(&tx, &req, rev + 1, &mut events).map_err(|err| match err {
                ApplyError::Sql(s) => e(s),
                ApplyError::Store(s) => s,
            });
            if res.is_ok() {
                rev += 1;
            }
            results.push((req.reply, res));
        }
        let committed = if rev != start_rev {
            tx.execute(
                "UPDATE kedge_meta SET value = ?1 WHERE name = 'revision'",
                [rev],
            )
            .and_then(|_| tx.commit())
        } else {
            tx.commit()
        };
        if let Err(err) = committed {
            tracing::error!(error = %err, "write transaction failed to commit");
            for (reply, res) in results {
                let _ = reply.send(res.and_then(|_| Err(e(clone_err(&err)))));
            }
            return;
        }
        // Publish before moving the revision on: whoever sees revision R
        // (a bookmark, a list) can then rely on every event <= R being in
        // the window already.
        self.window.publish(events);
        self.revision.store(rev, Ordering::Release);
        for (reply, res) in results {
            let _ = reply.send(res);
        }
    }
}

fn clone_err(err: &rusqlite::Error) -> rusqlite::Error {
    match err {
        rusqlite::Error::SqliteFailure(code, msg) => {
            rusqlite::Error::SqliteFailure(*code, msg.clone())
        }
        other => rusqlite::Error::InvalidParameterName(other.to_string()),
    }
}

enum ApplyError {
    Sql(rusqlite::Error),
    Store(Error),
}

impl From<rusqlite::Error> for ApplyError {
    fn from(e: rusqlite::Error) -> Self {
        ApplyError::Sql(e)
    }
}

fn apply(
    tx: &rusqlite::Transaction<'_>,
    req: &WriteRequest,
    rev: i64,
    events: &mut Vec<WatchEvent>,
) -> std::result::Result<Stored, ApplyError> {
    let key = req.key.as_str();
    let current: Option<(i64, Vec<u8>)> = tx
        .prepare_cached("SELECT revision, value FROM objects WHERE key = ?1")?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let check = |expected: Option<i64>, cur: i64| match expected {
        Some(exp) if exp != cur => Err(ApplyError::Store(Error::Conflict {
            key: key.to_string(),
            expected: exp,
            current: cur,
        })),
        _ => Ok(()),
    };
    match (&req.op, current) {
        (Op::Create, Some(_)) => Err(ApplyError::Store(Error::AlreadyExists(key.to_string()))),
        (Op::Update(_) | Op::Delete(_), None) => {
            Err(ApplyError::Store(Error::NotFound(key.to_string())))
        }
        (Op::Create, None) => {
            let bytes = Bytes::from(encode(req.obj.clone().unwrap_or(Value::Null), rev));
            tx.prepare_cached("INSERT INTO objects (key, revision, value) VALUES (?1, ?2, ?3)")?
                .execute(params![key, rev, bytes.as_ref()])?;
            events.push(WatchEvent {
                kind: EventType::Added,
                key: key.to_string(),
                value: bytes.clone(),
                prev: None,
                revision: rev,
            });
            Ok(Stored {
                key: key.to_string(),
                value: bytes,
                revision: rev,
            })
        }
        (Op::Update(expected), Some((cur, old))) => {
            check(*expected, cur)?;
            let bytes = Bytes::from(encode(req.obj.clone().unwrap_or(Value::Null), rev));
            tx.prepare_cached("UPDATE objects SET revision = ?2, value = ?3 WHERE key = ?1")?
                .execute(params![key, rev, bytes.as_ref()])?;
            events.push(WatchEvent {
                kind: EventType::Modified,
                key: key.to_string(),
                value: bytes.clone(),
                prev: Some(Bytes::from(old)),
                revision: rev,
            });
            Ok(Stored {
                key: key.to_string(),
                value: bytes,
                revision: rev,
            })
        }
        (Op::Delete(expected), Some((cur, old))) => {
            check(*expected, cur)?;
            let last: Value = serde_json::from_slice(&old).map_err(|source| {
                ApplyError::Store(Error::Corrupt {
                    key: key.to_string(),
                    source,
                })
            })?;
            let bytes = Bytes::from(encode(last, rev));
            tx.prepare_cached("DELETE FROM objects WHERE key = ?1")?
                .execute([key])?;
            events.push(WatchEvent {
                kind: EventType::Deleted,
                key: key.to_string(),
                value: bytes.clone(),
                prev: Some(Bytes::from(old)),
                revision: rev,
            });
            Ok(Stored {
                key: key.to_string(),
                value: bytes,
                revision: rev,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn open(dir: &tempfile::TempDir) -> SqliteStore {
        SqliteStore::open(&dir.path().join("state.db"), Durability::Full, 100).expect("open")
    }

    fn rv(s: &Stored) -> String {
        let v: Value = serde_json::from_slice(&s.value).expect("json");
        v["metadata"]["resourceVersion"]
            .as_str()
            .expect("rv")
            .to_string()
    }

    #[tokio::test]
    async fn crud_with_revisions() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = open(&dir);
        let a = s
            .create("/core/cm/ns/a", json!({"metadata": {"name": "a"}}))
            .await
            .expect("create");
        assert_eq!(a.revision, 1);
        assert_eq!(rv(&a), "1");
        assert!(matches!(
            s.create("/core/cm/ns/a", json!({})).await,
            Err(Error::AlreadyExists(_))
        ));
        let b = s
            .update(
                "/core/cm/ns/a",
                json!({"metadata": {"name": "a"}, "data": {"x": "y"}}),
                Some(1),
            )
            .await
            .expect("update");
        assert_eq!(b.revision, 2);
        assert!(matches!(
            s.update("/core/cm/ns/a", json!({}), Some(1)).await,
            Err(Error::Conflict { current: 2, .. })
        ));
        let got = s.get("/core/cm/ns/a").expect("get").expect("present");
        assert_eq!(got.revision, 2);
        let d = s.delete("/core/cm/ns/a", None).await.expect("delete");
        assert_eq!(d.revision, 3);
        assert_eq!(rv(&d), "3");
        assert!(s.get("/core/cm/ns/a").expect("get").is_none());
        assert_eq!(s.revision(), 3);
    }

    #[tokio::test]
    async fn list_pages_and_prefixes() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = open(&dir);
        for ns in ["a", "b"] {
            for i in 0..5 {
                s.create(&format!("/core/cm/{ns}/n{i}"), json!({}))
                    .await
                    .expect("create");
            }
        }
        s.create("/core/cmx/a/z", json!({})).await.expect("create");
        let all = s.list("/core/cm/", None, 0).expect("list");
        assert_eq!(all.items.len(), 10);
        assert!(!all.more);
        let p1 = s.list("/core/cm/a/", None, 3).expect("list");
        assert_eq!(p1.items.len(), 3);
        assert!(p1.more);
        let last = p1.items[2].key.clone();
        assert_eq!(s.count("/core/cm/a/", Some(&last)).expect("count"), 2);
        let p2 = s.list("/core/cm/a/", Some(&last), 3).expect("list");
        assert_eq!(p2.items.len(), 2);
        assert!(!p2.more);
        assert_eq!(p2.revision, 11);
    }

    #[tokio::test]
    async fn watch_sees_changes_and_reopen_keeps_data() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let s = open(&dir);
            let mut w = s.watch("/core/cm/", 0).expect("watch");
            s.create("/core/cm/a/x", json!({})).await.expect("create");
            s.delete("/core/cm/a/x", Some(1)).await.expect("delete");
            let e1 = w.next().await.expect("some").expect("ok");
            assert_eq!(e1.kind, EventType::Added);
            let e2 = w.next().await.expect("some").expect("ok");
            assert_eq!(e2.kind, EventType::Deleted);
            assert_eq!(e2.revision, 2);
            s.create("/core/cm/a/y", json!({"k": 1}))
                .await
                .expect("create");
            s.close();
        }
        let s = open(&dir);
        assert_eq!(s.revision(), 3);
        assert!(s.get("/core/cm/a/y").expect("get").is_some());
        assert!(matches!(s.watch("/", 1), Err(Error::TooOld { .. })));
        assert!(s.watch("/", 3).is_ok());
    }

    #[tokio::test]
    async fn concurrent_writers_get_distinct_revisions() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Arc::new(open(&dir));
        let mut tasks = Vec::new();
        for i in 0..64 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                s.create(&format!("/k/{i}"), json!({}))
                    .await
                    .map(|x| x.revision)
            }));
        }
        let mut revs = Vec::new();
        for t in tasks {
            revs.push(t.await.expect("join").expect("create"));
        }
        revs.sort();
        revs.dedup();
        assert_eq!(revs.len(), 64);
        assert_eq!(s.revision(), 64);
    }

    #[test]
    fn prefix_end_increments() {
        assert_eq!(prefix_end("/a/"), "/a0");
    }
}
