//! kedge-store owns persistence: the [`Store`] interface the API server
//! writes through, its SQLite backend and the in-memory [`WatchWindow`] of
//! recent changes that watches resume from.
//!
//! Objects are raw JSON. The store assigns one global revision per write and
//! writes it into `metadata.resourceVersion` of the stored bytes, so reads
//! and lists hand the bytes out unchanged. It must not know about HTTP,
//! resources or validation: keys are opaque strings.

mod error;
mod sqlite;
mod window;

pub use error::{Error, Result};
pub use sqlite::{Durability, SqliteStore, DEFAULT_WINDOW};
pub use window::{EventType, WatchEvent, WatchStream, WatchWindow};

use bytes::Bytes;
use serde_json::Value;

/// One stored object.
#[derive(Debug, Clone)]
pub struct Stored {
    pub key: String,
    /// The object's JSON, with `metadata.resourceVersion` = `revision`.
    pub value: Bytes,
    /// The revision of the last write (the object's resourceVersion).
    pub revision: i64,
}

/// A page of a list.
#[derive(Debug, Clone)]
pub struct ListPage {
    pub items: Vec<Stored>,
    /// The store revision the page was read at.
    pub revision: i64,
    /// Whether keys after the last item exist under the prefix.
    pub more: bool,
}

/// What the API server needs from a datastore.
pub trait Store: Send + Sync + 'static {
    /// Current global revision.
    fn revision(&self) -> i64;

    fn get(&self, key: &str) -> Result<Option<Stored>>;

    /// Objects whose keys start with `prefix`, in key order, after
    /// `start_after` (exclusive), at most `limit` (0 = all).
    fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<ListPage>;

    /// How many keys under `prefix` sort after `start_after`.
    fn count(&self, prefix: &str, start_after: Option<&str>) -> Result<u64>;

    /// Create; `Error::AlreadyExists` if the key exists.
    fn create(
        &self,
        key: &str,
        obj: Value,
    ) -> impl std::future::Future<Output = Result<Stored>> + Send;

    /// Replace; with `expected`, only if the current revision matches
    /// (`Error::Conflict` otherwise). `Error::NotFound` if missing.
    fn update(
        &self,
        key: &str,
        obj: Value,
        expected: Option<i64>,
    ) -> impl std::future::Future<Output = Result<Stored>> + Send;

    /// Delete; with `expected`, only if the revision matches. Returns the
    /// last state with `resourceVersion` set to the deletion's revision.
    fn delete(
        &self,
        key: &str,
        expected: Option<i64>,
    ) -> impl std::future::Future<Output = Result<Stored>> + Send;

    /// Events for keys under `prefix` with revision > `after`.
    /// `Error::TooOld` if the window no longer holds them.
    fn watch(&self, prefix: &str, after: i64) -> Result<WatchStream>;
}
