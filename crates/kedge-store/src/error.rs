/// Store errors. The API server maps them to `Status` responses.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key {0} already exists")]
    AlreadyExists(String),
    #[error("key {0} not found")]
    NotFound(String),
    #[error("key {key}: expected revision {expected}, found {current}")]
    Conflict {
        key: String,
        expected: i64,
        current: i64,
    },
    #[error("revision {requested} is older than the oldest kept revision {oldest}")]
    TooOld { requested: i64, oldest: i64 },
    #[error("sqlite at {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("stored object {key} is not valid JSON: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the store's writer has stopped")]
    Closed,
}

pub type Result<T> = std::result::Result<T, Error>;
