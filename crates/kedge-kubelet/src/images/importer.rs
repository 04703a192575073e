//! The images directory: image tarballs dropped into
//! `<data-dir>/agent/images/` are imported into the runtime, as K3s does with
//! its `agent/images` directory, so air-gapped nodes need no registry.
//!
//! Every few seconds (default 5; a `read_dir` of a small directory, no
//! writes) the importer looks for `*.tar`, `*.tar.gz`, `*.tgz`, `*.tar.zst`
//! and `*.tar.zstd` files (OCI image layouts or `docker save` archives;
//! containerd's importer reads both). Compressed files are decompressed
//! (gzip: `flate2`, zstd: `ruzstd`) into `.decompressed/` beside them first,
//! because containerd 1.6's `ctr images import` only reads plain tar.
//!
//! Bookkeeping: a file is known by its name, size and modification time.
//! Imported files are recorded in a JSON file (default
//! `<dir>/.imported.json`, written only after an import or when a recorded
//! file disappears), so a restart does not import them again; a changed file
//! (new size or mtime) is imported again. A failed import is logged with the
//! file name and remembered in memory: it is retried when the file changes,
//! or after a restart. A file whose size or mtime changed since the previous
//! scan and that was modified in the last two seconds is left for the next
//! scan: it is probably still being copied in.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::{ImageError, Result};
use crate::cri::ImageService;

/// The record file's name inside the images directory.
pub const RECORD_FILE: &str = ".imported.json";
/// Where compressed tarballs are unpacked before import.
const SCRATCH_DIR: &str = ".decompressed";

/// How a file is recognised as unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileFingerprint {
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_unix_nanos: i64,
}

/// One imported file in the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportRecord {
    #[serde(flatten)]
    pub fingerprint: FileFingerprint,
    /// The image names the import reported.
    pub images: Vec<String>,
    /// RFC 3339.
    pub imported_at: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RecordFile {
    version: u32,
    files: BTreeMap<String, ImportRecord>,
}

/// What one scan did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// File name and the images it held.
    pub imported: Vec<(String, Vec<String>)>,
    /// File name and why it failed.
    pub failed: Vec<(String, String)>,
    /// Files left for a later scan (still being written).
    pub deferred: Vec<String>,
    /// Files already imported (or already failed) with the same fingerprint.
    pub unchanged: usize,
}

/// Watches an images directory and imports what appears there.
pub struct ImageImporter<R> {
    runtime: Arc<R>,
    dir: PathBuf,
    record_path: PathBuf,
    interval: Duration,
    settle: Duration,
    record: RecordFile,
    record_loaded: bool,
    /// A scan has completed (see the settle rule in `scan_once`).
    scanned_once: bool,
    /// Files whose import failed, with the fingerprint that failed.
    failed: HashMap<String, FileFingerprint>,
    /// Fingerprints seen by the previous scan.
    previous: HashMap<String, FileFingerprint>,
}

/// Stops the importer's task when dropped.
#[derive(Debug)]
pub struct ImporterTask(tokio::task::JoinHandle<()>);

impl Drop for ImporterTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<R: ImageService + 'static> ImageImporter<R> {
    /// An importer of `dir` (usually `<data-dir>/agent/images`) into `runtime`.
    pub fn new(runtime: Arc<R>, dir: impl Into<PathBuf>) -> ImageImporter<R> {
        let dir = dir.into();
        ImageImporter {
            runtime,
            record_path: dir.join(RECORD_FILE),
            dir,
            interval: Duration::from_secs(5),
            settle: Duration::from_secs(2),
            record: RecordFile::default(),
            record_loaded: false,
            scanned_once: false,
            failed: HashMap::new(),
            previous: HashMap::new(),
        }
    }

    /// Keep the record somewhere else (e.g. under the agent's state).
    pub fn with_record_file(mut self, path: impl Into<PathBuf>) -> ImageImporter<R> {
        self.record_path = path.into();
        self
    }

    /// Scan every `interval` (default 5 s).
    pub fn with_interval(mut self, interval: Duration) -> ImageImporter<R> {
        self.interval = interval;
        self
    }

    /// How recently modified a file that changed since the last scan may be
    /// and still be imported (default 2 s; zero imports at once).
    pub fn with_settle_time(mut self, settle: Duration) -> ImageImporter<R> {
        self.settle = settle;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The files recorded as imported.
    pub fn imported(&self) -> &BTreeMap<String, ImportRecord> {
        &self.record.files
    }

    /// Scan now, then every interval, until the task is dropped.
    pub fn spawn(mut self) -> ImporterTask {
        ImporterTask(tokio::spawn(async move {
            loop {
                if let Err(err) = self.scan_once().await {
                    warn!(dir = %self.dir.display(), %err, "cannot scan the images directory");
                }
                tokio::time::sleep(self.interval).await;
            }
        }))
    }

    /// One pass over the directory: import what is new or changed.
    pub async fn scan_once(&mut self) -> Result<ScanReport> {
        if !self.record_loaded {
            self.record = load_record(&self.record_path);
            self.record_loaded = true;
        }
        let mut report = ScanReport::default();
        let current = match list_tarballs(&self.dir) {
            Ok(files) => files,
            Err(ImageError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Vec::new()
            }
            Err(err) => return Err(err),
        };
        let mut record_dirty = false;

        // Forget files that are gone (their images stay in the runtime).
        let names: Vec<&String> = current.iter().map(|(name, _)| name).collect();
        let before = self.record.files.len();
        self.record.files.retain(|name, _| names.contains(&name));
        record_dirty |= self.record.files.len() != before;
        self.failed.retain(|name, _| names.contains(&name));

        let now = SystemTime::now();
        let mut seen = HashMap::new();
        for (name, fingerprint) in current {
            seen.insert(name.clone(), fingerprint);
            let recorded = self.record.files.get(&name).map(|r| r.fingerprint);
            if recorded == Some(fingerprint) || self.failed.get(&name) == Some(&fingerprint) {
                report.unchanged += 1;
                continue;
            }
            // Files already there when the agent starts are taken as
            // complete (an import of a half-copied file fails and is retried
            // once the file changes); later ones must sit still first.
            let stable = self.previous.get(&name) == Some(&fingerprint) || !self.scanned_once;
            if !stable && recently_modified(fingerprint, now, self.settle) {
                debug!(file = %name, "image tarball changed in the last seconds; waiting");
                report.deferred.push(name);
                continue;
            }
            let path = self.dir.join(&name);
            let started = Instant::now();
            match self.import_file(&name, &path).await {
                Ok(images) => {
                    info!(
                        file = %path.display(),
                        images = ?images,
                        size = fingerprint.size,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "imported image tarball"
                    );
                    self.failed.remove(&name);
                    self.record.files.insert(
                        name.clone(),
                        ImportRecord {
                            fingerprint,
                            images: images.clone(),
                            imported_at: jiff::Timestamp::now().to_string(),
                        },
                    );
                    record_dirty = true;
                    report.imported.push((name, images));
                }
                Err(err) => {
                    warn!(
                        file = %path.display(),
                        %err,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "cannot import image tarball; it is retried when the file changes"
                    );
                    self.failed.insert(name.clone(), fingerprint);
                    report.failed.push((name, err.to_string()));
                }
            }
        }
        self.previous = seen;
        self.scanned_once = true;
        if record_dirty {
            self.save_record()?;
        }
        Ok(report)
    }

    async fn import_file(&self, name: &str, path: &Path) -> Result<Vec<String>> {
        let compression = Compression::of(name);
        let (tar_path, scratch) = match compression {
            Compression::None => (path.to_owned(), None),
            _ => {
                let scratch_dir = self.dir.join(SCRATCH_DIR);
                let target = scratch_dir.join(format!("{}.tar", compression.stem(name)));
                let (source, dest) = (path.to_owned(), target.clone());
                tokio::task::spawn_blocking(move || decompress(compression, &source, &dest))
                    .await
                    .map_err(|join| ImageError::Decompress {
                        path: path.to_owned(),
                        source: std::io::Error::other(join.to_string()),
                    })??;
                (target.clone(), Some(target))
            }
        };
        let result = self
            .runtime
            .import_image(&tar_path)
            .await
            .map_err(|source| ImageError::Import {
                path: path.to_owned(),
                source,
            });
        if let Some(scratch) = scratch {
            let _ = std::fs::remove_file(&scratch);
        }
        result
    }

    fn save_record(&mut self) -> Result<()> {
        self.record.version = 1;
        let bytes = serde_json::to_vec_pretty(&self.record).unwrap_or_default();
        if let Some(parent) = self.record_path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ImageError::io("create", parent, e))?;
        }
        let tmp = self.record_path.with_extension("json.tmp");
        std::fs::write(&tmp, bytes).map_err(|e| ImageError::io("write", &tmp, e))?;
        std::fs::rename(&tmp, &self.record_path).map_err(|e| ImageError::io("rename", &tmp, e))?;
        Ok(())
    }
}

fn load_record(path: &Path) -> RecordFile {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|err| {
            warn!(file = %path.display(), %err, "unreadable image import record; importing everything again");
            RecordFile::default()
        }),
        Err(_) => RecordFile::default(),
    }
}

fn recently_modified(fingerprint: FileFingerprint, now: SystemTime, settle: Duration) -> bool {
    let now_nanos = now
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    now_nanos.saturating_sub(fingerprint.mtime_unix_nanos)
        < i64::try_from(settle.as_nanos()).unwrap_or(i64::MAX)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

const SUFFIXES: [(&str, Compression); 5] = [
    (".tar", Compression::None),
    (".tar.gz", Compression::Gzip),
    (".tgz", Compression::Gzip),
    (".tar.zst", Compression::Zstd),
    (".tar.zstd", Compression::Zstd),
];

impl Compression {
    fn of(name: &str) -> Compression {
        SUFFIXES
            .iter()
            .find(|(suffix, _)| name.ends_with(suffix))
            .map_or(Compression::None, |(_, c)| *c)
    }

    /// The name without its tarball suffix.
    fn stem(self, name: &str) -> &str {
        SUFFIXES
            .iter()
            .find_map(|(suffix, _)| name.strip_suffix(suffix))
            .unwrap_or(name)
    }
}

/// Regular files with a tarball suffix, not hidden, with their fingerprints.
fn list_tarballs(dir: &Path) -> Result<Vec<(String, FileFingerprint)>> {
    let entries = std::fs::read_dir(dir).map_err(|e| ImageError::io("read", dir, e))?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name.starts_with('.') || !SUFFIXES.iter().any(|(s, _)| name.ends_with(s)) {
            continue;
        }
        // Follows symlinks: a link to a tarball elsewhere is imported too.
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        out.push((
            name,
            FileFingerprint {
                size: meta.len(),
                mtime_unix_nanos: mtime,
            },
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn decompress(compression: Compression, source: &Path, dest: &Path) -> Result<()> {
    let err = |e: std::io::Error| ImageError::Decompress {
        path: source.to_owned(),
        source: e,
    };
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| ImageError::io("create", parent, e))?;
    }
    let input = std::fs::File::open(source).map_err(|e| ImageError::io("open", source, e))?;
    let input = std::io::BufReader::new(input);
    let mut reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Zstd => Box::new(
            ruzstd::decoding::StreamingDecoder::new(input)
                .map_err(|e| err(std::io::Error::other(e.to_string())))?,
        ),
    };
    let mut output = std::fs::File::create(dest).map_err(|e| ImageError::io("create", dest, e))?;
    let copied = std::io::copy(&mut reader, &mut output).map_err(err);
    if copied.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    copied.map(|_| ())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::cri::FakeRuntime;

    fn importer(runtime: &FakeRuntime, dir: &Path) -> ImageImporter<FakeRuntime> {
        ImageImporter::new(Arc::new(runtime.clone()), dir).with_settle_time(Duration::ZERO)
    }

    fn imports(runtime: &FakeRuntime) -> usize {
        runtime
            .calls()
            .iter()
            .filter(|c| **c == "ImportImage")
            .count()
    }

    #[tokio::test]
    async fn a_restart_does_not_import_again_but_a_changed_file_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = FakeRuntime::new();
        let tarball = dir.path().join("app.tar");
        std::fs::write(&tarball, b"first").expect("write");
        runtime.add_importable(&tarball, &["kedge.local/app:1"]);

        let mut first = importer(&runtime, dir.path());
        let report = first.scan_once().await.expect("scan");
        assert_eq!(
            report.imported,
            vec![("app.tar".to_owned(), vec!["kedge.local/app:1".to_owned()])]
        );
        assert_eq!(imports(&runtime), 1);
        let again = first.scan_once().await.expect("scan");
        assert_eq!((again.imported.len(), again.unchanged), (0, 1));

        // A new importer (a restart) reads the record.
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(RECORD_FILE)).expect("record"))
                .expect("json");
        assert_eq!(record["files"]["app.tar"]["size"], 5);
        assert_eq!(record["files"]["app.tar"]["images"][0], "kedge.local/app:1");
        let mut second = importer(&runtime, dir.path());
        let report = second.scan_once().await.expect("scan");
        assert!(report.imported.is_empty(), "{report:?}");
        assert_eq!(imports(&runtime), 1);

        // Changed contents (size and mtime) import again.
        std::fs::write(&tarball, b"second!").expect("rewrite");
        let report = second.scan_once().await.expect("scan");
        assert_eq!(report.imported.len(), 1, "{report:?}");
        assert_eq!(imports(&runtime), 2);
    }

    #[tokio::test]
    async fn a_bad_tarball_is_logged_and_retried_only_when_it_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = FakeRuntime::new();
        let tarball = dir.path().join("bad.tar");
        std::fs::write(&tarball, b"not an image").expect("write");
        let mut importer = importer(&runtime, dir.path());

        let report = importer.scan_once().await.expect("scan");
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].0, "bad.tar");
        assert!(
            report.failed[0].1.contains("bad.tar"),
            "{:?}",
            report.failed
        );
        assert_eq!(imports(&runtime), 1);
        for _ in 0..3 {
            let report = importer.scan_once().await.expect("scan");
            assert!(report.failed.is_empty());
        }
        assert_eq!(imports(&runtime), 1, "not retried while unchanged");
        assert!(
            !dir.path().join(RECORD_FILE).exists(),
            "failures are not recorded"
        );

        // Fixed (here: the runtime now accepts it) and rewritten: retried.
        runtime.add_importable(&tarball, &["kedge.local/fixed:1"]);
        std::fs::write(&tarball, b"an image now").expect("rewrite");
        let report = importer.scan_once().await.expect("scan");
        assert_eq!(report.imported.len(), 1, "{report:?}");
        assert_eq!(imports(&runtime), 2);
    }

    #[tokio::test]
    async fn gzip_and_zstd_tarballs_are_decompressed_before_import() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = FakeRuntime::new();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"plain tar bytes").expect("gzip");
        std::fs::write(dir.path().join("app.tar.gz"), gz.finish().expect("gzip")).expect("write");
        let scratch = dir.path().join(SCRATCH_DIR).join("app.tar");
        runtime.add_importable(&scratch, &["kedge.local/app:gz"]);
        // Not valid zstd: a decompression failure, reported with the name.
        std::fs::write(dir.path().join("broken.tar.zst"), b"not zstd").expect("write");
        // Ignored: not a tarball name, hidden, a directory.
        std::fs::write(dir.path().join("notes.txt"), b"x").expect("write");
        std::fs::write(dir.path().join(".hidden.tar"), b"x").expect("write");
        std::fs::create_dir(dir.path().join("dir.tar")).expect("mkdir");

        let mut importer = importer(&runtime, dir.path());
        let report = importer.scan_once().await.expect("scan");
        assert_eq!(
            report.imported,
            vec![(
                "app.tar.gz".to_owned(),
                vec!["kedge.local/app:gz".to_owned()]
            )]
        );
        assert_eq!(report.failed.len(), 1, "{report:?}");
        assert_eq!(report.failed[0].0, "broken.tar.zst");
        assert!(
            report.failed[0].1.contains("decompress"),
            "{:?}",
            report.failed
        );
        assert!(!scratch.exists(), "the decompressed copy is removed");
        assert_eq!(imports(&runtime), 1);
    }

    #[tokio::test]
    async fn files_still_being_written_wait_for_the_next_scan() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = FakeRuntime::new();
        let tarball = dir.path().join("big.tar");
        std::fs::write(&tarball, b"partial").expect("write");
        runtime.add_importable(&tarball, &["kedge.local/big:1"]);
        let mut importer = ImageImporter::new(Arc::new(runtime.clone()), dir.path())
            .with_settle_time(Duration::from_secs(3600));
        // The first scan at start: the directory is empty.
        std::fs::rename(&tarball, dir.path().join("big.tmp")).expect("hide");
        importer.scan_once().await.expect("scan");
        std::fs::rename(dir.path().join("big.tmp"), &tarball).expect("appear");
        let report = importer.scan_once().await.expect("scan");
        assert_eq!(report.deferred, vec!["big.tar".to_owned()]);
        assert_eq!(imports(&runtime), 0);
        // Unchanged since the previous scan: imported now.
        let report = importer.scan_once().await.expect("scan");
        assert_eq!(report.imported.len(), 1, "{report:?}");
    }

    #[tokio::test]
    async fn files_present_at_start_are_imported_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = FakeRuntime::new();
        let tarball = dir.path().join("fresh.tar");
        std::fs::write(&tarball, b"just copied").expect("write");
        runtime.add_importable(&tarball, &["kedge.local/fresh:1"]);
        let mut importer = ImageImporter::new(Arc::new(runtime.clone()), dir.path())
            .with_settle_time(Duration::from_secs(3600));
        let report = importer.scan_once().await.expect("scan");
        assert_eq!(report.imported.len(), 1, "{report:?}");
        assert!(report.deferred.is_empty());
    }

    #[tokio::test]
    async fn removed_files_leave_the_record_and_a_missing_dir_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = FakeRuntime::new();
        let tarball = dir.path().join("gone.tar");
        std::fs::write(&tarball, b"x").expect("write");
        runtime.add_importable(&tarball, &["kedge.local/gone:1"]);
        let mut importer = importer(&runtime, dir.path());
        importer.scan_once().await.expect("scan");
        assert!(importer.imported().contains_key("gone.tar"));
        std::fs::remove_file(&tarball).expect("rm");
        importer.scan_once().await.expect("scan");
        assert!(importer.imported().is_empty());
        let record = std::fs::read_to_string(dir.path().join(RECORD_FILE)).expect("record");
        assert!(!record.contains("gone.tar"), "{record}");

        let mut missing = ImageImporter::new(Arc::new(runtime), dir.path().join("nope"));
        assert_eq!(
            missing.scan_once().await.expect("scan"),
            ScanReport::default()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_spawned_importer_polls_until_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = FakeRuntime::new();
        let task = importer(&runtime, dir.path())
            .with_interval(Duration::from_secs(5))
            .spawn();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let tarball = dir.path().join("late.tar");
        std::fs::write(&tarball, b"x").expect("write");
        runtime.add_importable(&tarball, &["kedge.local/late:1"]);
        assert_eq!(imports(&runtime), 0);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(imports(&runtime), 1, "found by the next poll");
        drop(task);
        std::fs::write(&tarball, b"changed").expect("write");
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(imports(&runtime), 1, "no polling after drop");
    }
}
