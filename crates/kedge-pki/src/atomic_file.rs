//! Crash-safe file writes: a reader sees the old file or the new one, never half of either.

use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Distinguishes temporary files of concurrent writers within one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `contents` to `path` with exactly `mode`, atomically: the data goes to a
/// temporary file in the same directory, is synced, and is renamed over `path`.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let file_name = path.file_name().ok_or_else(|| {
        Error::io(
            "writing",
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"),
        )
    })?;
    let dir = parent_dir(path);
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let temp = dir.join(temp_name);

    let written = write_new_file(&temp, contents, mode)
        .and_then(|()| fs::rename(&temp, path).map_err(|e| Error::io("renaming into", path, e)));
    if let Err(e) = written {
        // Best effort: the temporary file is garbage either way.
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    sync_dir(&dir)
}

/// Creates `dir` and its parents; when `mode` is given, `dir` itself gets exactly that mode.
pub(crate) fn ensure_dir(dir: &Path, mode: Option<u32>) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io("creating directory", dir, e))?;
    if let Some(mode) = mode {
        fs::set_permissions(dir, Permissions::from_mode(mode))
            .map_err(|e| Error::io("setting permissions of", dir, e))?;
    }
    Ok(())
}

/// Reads a UTF-8 file, or `None` if it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading", path, e)),
    }
}

/// Reads a UTF-8 file that must exist.
pub(crate) fn read_required(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn write_new_file(temp: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(temp)
        .map_err(|e| Error::io("creating", temp, e))?;
    // The umask may have cleared bits of `mode` at creation; set it exactly.
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(|e| Error::io("setting permissions of", temp, e))?;
    file.write_all(contents)
        .map_err(|e| Error::io("writing", temp, e))?;
    file.sync_all().map_err(|e| Error::io("syncing", temp, e))
}

/// Makes the rename durable: without this a power cut can lose the new directory entry.
fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("syncing directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_sets_exact_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.key");
        write_atomic(&path, b"one", 0o644).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f.key")]);
    }

    #[test]
    fn missing_directory_is_an_error_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent").join("f");
        let err = write_atomic(&path, b"x", 0o600).unwrap_err();
        assert!(err.to_string().contains("absent"), "{err}");
    }
}
