//! Container logs: reading the CRI log files, and rotating them.
//!
//! containerd writes each container's output to the file the kubelet names,
//! `/var/log/pods/<ns>_<pod>_<uid>/<container>/<restartCount>.log`, one record a
//! line in the CRI format `<RFC3339Nano> <stdout|stderr> <F|P> <content>` (`P`:
//! a partial line, continued by the next record). [`read_logs`] turns such a
//! file back into the container's output with the semantics of upstream's
//! `pkg/kubelet/kuberuntime/logs/logs.go`: `tailLines` counts records from the
//! end of the file, `sinceTime`/`sinceSeconds` skip older records,
//! `timestamps` prefixes each output line with its record's time (Go's
//! RFC3339Nano), `limitBytes` cuts the output, and `follow` keeps reading until
//! the container is no longer running, reopening the file when it is rotated.
//!
//! [`LogRotator`] rotates a running container's current file when it grows
//! past a size, as upstream's container log manager does (see [`rotate`]).

mod options;
mod rotate;

use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use jiff::Timestamp;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};
use tokio::sync::mpsc;

pub use options::{LogOptions, LogOptionsError};
pub use rotate::{LogRotator, RotationPolicy, DEFAULT_MAX_FILES, DEFAULT_MAX_SIZE};

/// Errors of reading or rotating container logs.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("failed to open log file {path:?}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read log file {path:?}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to rotate log {path:?}: {source}")]
    Rotate {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to reopen the log of container {container_id}: {source}")]
    Reopen {
        container_id: String,
        #[source]
        source: crate::cri::CriError,
    },
    #[error("listing containers to rotate their logs: {0}")]
    List(#[source] crate::cri::CriError),
}

/// How long a follower waits at the end of the file before looking again.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// How often a follower asks whether the container still runs (upstream: on
/// every wait, at most 1 s apart).
const STATE_CHECK: Duration = Duration::from_secs(1);
/// Output is sent in chunks of about this size.
const CHUNK: usize = 32 * 1024;

/// Which output a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// One record of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriRecord<'a> {
    /// The record's time as written (RFC 3339 with nanoseconds).
    pub timestamp: &'a str,
    pub stream: LogStream,
    /// `P`: the line continues in the next record.
    pub partial: bool,
    /// The content; a full record keeps its line's `\n`, a partial one has none.
    pub content: &'a [u8],
}

/// Why a line is not a CRI log record (upstream's messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("timestamp is not found")]
    NoTimestamp,
    #[error("unexpected timestamp format {0:?}")]
    BadTimestamp(String),
    #[error("stream type is not found")]
    NoStream,
    #[error("unexpected stream type {0:?}")]
    BadStream(String),
    #[error("log tag is not found")]
    NoTag,
}

/// Parses one line of a CRI log file (with or without its `\n`).
pub fn parse_cri_record(line: &[u8]) -> Result<CriRecord<'_>, RecordError> {
    let (ts, rest) = split_space(line).ok_or(RecordError::NoTimestamp)?;
    let timestamp = std::str::from_utf8(ts).map_err(|_| RecordError::BadTimestamp(lossy(ts)))?;
    if timestamp.parse::<Timestamp>().is_err() {
        return Err(RecordError::BadTimestamp(timestamp.to_owned()));
    }
    let (stream, rest) = split_space(rest).ok_or(RecordError::NoStream)?;
    let stream = match stream {
        b"stdout" => LogStream::Stdout,
        b"stderr" => LogStream::Stderr,
        other => return Err(RecordError::BadStream(lossy(other))),
    };
    let (tags, mut content) = split_space(rest).ok_or(RecordError::NoTag)?;
    // Tags are `:`-separated; the first says full or partial (forward compatible).
    let partial = tags.split(|b| *b == b':').next() == Some(b"P");
    if partial {
        if let Some(stripped) = content.strip_suffix(b"\n") {
            content = stripped;
        }
    }
    Ok(CriRecord {
        timestamp,
        stream,
        partial,
        content,
    })
}

fn split_space(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = b.iter().position(|c| *c == b' ')?;
    Some((&b[..i], &b[i + 1..]))
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A timestamp as Go's `time.RFC3339Nano` prints it: trailing zeros of the
/// fraction dropped (and the dot with them), a zero offset written `Z`.
pub fn go_rfc3339_nano(timestamp: &str) -> String {
    let (main, offset) = match timestamp.rfind(['Z', 'z', '+', '-']) {
        Some(i) if i > 10 => (&timestamp[..i], &timestamp[i..]),
        _ => (timestamp, ""),
    };
    let main = match main.split_once('.') {
        Some((secs, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                secs.to_owned()
            } else {
                format!("{secs}.{frac}")
            }
        }
        None => main.to_owned(),
    };
    let offset = match offset {
        "z" | "+00:00" | "-00:00" => "Z",
        other => other,
    };
    format!("{main}{offset}")
}

/// Turns records into output as upstream's log writer does.
struct OutputWriter<'a> {
    opts: &'a LogOptions,
    /// Bytes still allowed by `limitBytes`.
    remaining: Option<u64>,
    /// The next content starts a line (gets the timestamp prefix).
    at_line_start: bool,
    buf: BytesMut,
}

#[derive(Debug, PartialEq, Eq)]
enum Written {
    More,
    LimitReached,
}

impl<'a> OutputWriter<'a> {
    fn new(opts: &'a LogOptions) -> Self {
        OutputWriter {
            opts,
            remaining: opts.limit_bytes,
            at_line_start: true,
            buf: BytesMut::new(),
        }
    }

    /// Handles one raw line of the file.
    fn line(&mut self, path: &Path, raw: &[u8]) -> Written {
        let record = match parse_cri_record(raw) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "skipping a line of the log file that is not a CRI record");
                return Written::More;
            }
        };
        if let Some(since) = self.opts.since {
            match record.timestamp.parse::<Timestamp>() {
                Ok(t) if t < since => return Written::More,
                _ => {}
            }
        }
        let mut out = Vec::with_capacity(record.content.len() + 40);
        if self.opts.timestamps && self.at_line_start {
            out.extend_from_slice(go_rfc3339_nano(record.timestamp).as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(record.content);
        self.at_line_start = record.content.last().is_none_or(|b| *b == b'\n');
        match &mut self.remaining {
            Some(left) if (out.len() as u64) >= *left => {
                let keep = usize::try_from(*left).unwrap_or(usize::MAX).min(out.len());
                self.buf.extend_from_slice(&out[..keep]);
                *left -= keep as u64;
                if *left == 0 {
                    return Written::LimitReached;
                }
                Written::More
            }
            Some(left) => {
                *left -= out.len() as u64;
                self.buf.extend_from_slice(&out);
                Written::More
            }
            None => {
                self.buf.extend_from_slice(&out);
                Written::More
            }
        }
    }

    /// Sends what is buffered; false when the receiver is gone.
    async fn flush(&mut self, out: &mpsc::Sender<Bytes>) -> bool {
        if self.buf.is_empty() {
            return !out.is_closed();
        }
        let chunk = self.buf.split().freeze();
        out.send(chunk).await.is_ok()
    }
}

/// The offset where the last `n` lines of `file` start (upstream's
/// `tail.FindTailLineStartIndex`: counts `\n` bytes from the end).
pub fn tail_start(file: &mut std::fs::File, n: u64) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    const BLOCK: u64 = 8192;
    let size = file.seek(SeekFrom::End(0))?;
    // Newlines seen so far, scanning back from the end; the line start we want is
    // just after the (n+1)-th newline from the end.
    let mut seen = 0u64;
    let mut right = size;
    let mut block = vec![0u8; BLOCK as usize];
    while right > 0 {
        let left = right.saturating_sub(BLOCK);
        let len = (right - left) as usize;
        file.seek(SeekFrom::Start(left))?;
        file.read_exact(&mut block[..len])?;
        for (i, b) in block[..len].iter().enumerate().rev() {
            if *b == b'\n' {
                seen += 1;
                if seen > n {
                    return Ok(left + i as u64 + 1);
                }
            }
        }
        right = left;
    }
    Ok(0)
}

/// Reads the CRI log file at `path` into `out` with `opts` (see the module doc).
///
/// `is_running` answers whether the container still runs; a follower stops once
/// it does not and the file holds nothing more. Returns when done, when the
/// limit is reached, or when `out`'s receiver is dropped.
pub async fn read_logs<F, Fut>(
    path: &Path,
    opts: &LogOptions,
    out: &mpsc::Sender<Bytes>,
    mut is_running: F,
) -> Result<(), LogError>
where
    F: FnMut() -> Fut + Send,
    Fut: Future<Output = bool> + Send,
{
    let read_err = |source| LogError::Read {
        path: path.to_owned(),
        source,
    };
    let (file, ino) = open_log(path).await?;
    let mut file = file;
    if let Some(n) = opts.tail_lines {
        let std_file = file.try_clone().await.map_err(read_err)?.into_std().await;
        let n = u64::try_from(n).unwrap_or(0);
        let start = tokio::task::spawn_blocking(move || {
            let mut f = std_file;
            tail_start(&mut f, n)
        })
        .await
        .map_err(|e| read_err(std::io::Error::other(e)))?
        .map_err(read_err)?;
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(read_err)?;
    }
    let mut reader = BufReader::new(file);
    let mut ino = ino;
    let mut writer = OutputWriter::new(opts);
    let mut line = Vec::new();
    let mut rotation_seen = false;
    let mut stopped_seen = false;
    let mut last_check: Option<Instant> = None;
    loop {
        reader
            .read_until(b'\n', &mut line)
            .await
            .map_err(read_err)?;
        if line.ends_with(b"\n") {
            let written = writer.line(path, &line);
            line.clear();
            if written == Written::LimitReached {
                writer.flush(out).await;
                return Ok(());
            }
            if writer.buf.len() >= CHUNK && !writer.flush(out).await {
                return Ok(());
            }
            continue;
        }
        // End of the file, perhaps in the middle of a record.
        if !opts.follow {
            if !line.is_empty() {
                writer.line(path, &line);
            }
            writer.flush(out).await;
            return Ok(());
        }
        if !writer.flush(out).await {
            return Ok(());
        }
        // Rotated: the name now points at a new file. Read the old one to its end
        // once more (containerd may have written until it reopened), then switch.
        if let Some(new_ino) = current_ino(path).await {
            if new_ino != ino {
                if rotation_seen {
                    let (file, new) = open_log(path).await?;
                    tracing::debug!(path = %path.display(), "log file rotated; following the new one");
                    reader = BufReader::new(file);
                    ino = new;
                    rotation_seen = false;
                } else {
                    rotation_seen = true;
                }
                continue;
            }
        }
        if last_check.is_none_or(|t| t.elapsed() >= STATE_CHECK) {
            last_check = Some(Instant::now());
            if !is_running().await {
                if stopped_seen {
                    return Ok(());
                }
                // One more pass: what the container wrote before it stopped.
                stopped_seen = true;
                continue;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
            _ = out.closed() => return Ok(()),
        }
    }
}

async fn open_log(path: &Path) -> Result<(tokio::fs::File, u64), LogError> {
    let open_err = |source| LogError::Open {
        path: path.to_owned(),
        source,
    };
    let file = tokio::fs::File::open(path).await.map_err(open_err)?;
    let ino = file.metadata().await.map_err(open_err)?.ino();
    Ok((file, ino))
}

async fn current_ino(path: &Path) -> Option<u64> {
    tokio::fs::metadata(path).await.ok().map(|m| m.ino())
}

/// Reads a whole stream of output chunks into one buffer (for tests and small reads).
pub async fn collect(mut rx: mpsc::Receiver<Bytes>) -> Vec<u8> {
    let mut all = Vec::new();
    while let Some(chunk) = rx.recv().await {
        all.extend_from_slice(&chunk);
    }
    all
}

#[cfg(test)]
mod tests;
