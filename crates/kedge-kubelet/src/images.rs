//! Images without a registry: the embedded pause image and the images
//! directory.
//!
//! - The pause program (`images/pause/pause.c`) is compiled by `build.rs`
//!   into a static binary embedded in kedge. [`pause_image`] wraps it into an
//!   OCI image layout tarball (also a `docker save` archive: the format
//!   `scripts/build-image.py` writes) named [`PAUSE_IMAGE`], built
//!   deterministically so its digests only change when the binary does;
//!   [`ensure_pause_image`] imports it unless the runtime already has that
//!   exact image. containerd's `sandbox_image` names it, and it is never
//!   pulled.
//! - [`ImageImporter`] watches `<data-dir>/agent/images/` and imports image
//!   tarballs dropped there (`.tar`, `.tar.gz`/`.tgz`, `.tar.zst`), keeping a
//!   record so a restart does not import them again.
//!
//! Imports go through [`ImageService::import_image`] (for containerd,
//! `ctr images import`, which reads both the OCI layout and `docker save`
//! formats but not compressed archives: this module decompresses first).

mod importer;
mod oci;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use tracing::info;

use crate::cri::{image_spec, CriError, ImageService};

pub use importer::{
    FileFingerprint, ImageImporter, ImportRecord, ImporterTask, ScanReport, RECORD_FILE,
};
pub use oci::{build_image, canonical_json, sha256_digest, ImageContents, ImageTarball, LayerFile};

/// The sandbox image every pod runs, built into kedge.
pub const PAUSE_IMAGE: &str = "kedge.local/pause:3.10";

/// The pause binary, static, as `build.rs` compiled it.
pub static PAUSE_BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pause"));

/// Errors of image building and importing.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image name {0:?} is not repository:tag")]
    BadName(String),
    #[error("tar entry name {0:?} is empty or longer than 100 bytes")]
    TarName(String),
    #[error("gzip failed: {0}")]
    Gzip(#[source] std::io::Error),
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot decompress {path}: {source}")]
    Decompress {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("importing {path}: {source}")]
    Import {
        path: PathBuf,
        #[source]
        source: CriError,
    },
    #[error("the runtime answered while looking up {image}: {source}")]
    Status {
        image: String,
        #[source]
        source: CriError,
    },
    #[error("imported {path}, but the runtime reports {image} as {found:?}, not {expected}")]
    DigestMismatch {
        path: PathBuf,
        image: String,
        expected: String,
        found: Option<String>,
    },
}

pub type Result<T, E = ImageError> = std::result::Result<T, E>;

impl ImageError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> ImageError {
        ImageError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

/// The pause image tarball, built once per process.
pub fn pause_image() -> &'static ImageTarball {
    static IMAGE: OnceLock<ImageTarball> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let contents = pause_contents();
        // The name is a constant with a tag and the only file name is short,
        // so building cannot fail; fall back to an empty tarball rather than
        // panic if that ever changes (the import then fails loudly).
        build_image(&contents).unwrap_or_else(|err| {
            tracing::error!(%err, "cannot build the pause image");
            ImageTarball {
                name: PAUSE_IMAGE.to_owned(),
                bytes: Vec::new(),
                config_digest: String::new(),
                manifest_digest: String::new(),
            }
        })
    })
}

fn pause_contents() -> ImageContents {
    ImageContents {
        name: PAUSE_IMAGE.to_owned(),
        architecture: env!("KEDGE_PAUSE_ARCH").to_owned(),
        variant: env!("KEDGE_PAUSE_VARIANT").to_owned(),
        entrypoint: vec!["/pause".to_owned()],
        cmd: Vec::new(),
        env: vec![oci::DEFAULT_PATH.to_owned()],
        working_dir: "/".to_owned(),
        user: "65535:65535".to_owned(),
        files: vec![LayerFile {
            path: "pause".to_owned(),
            mode: 0o755,
            contents: PAUSE_BINARY.to_vec(),
        }],
        created_by: format!("kedge-kubelet embedded pause ({PAUSE_IMAGE})"),
    }
}

/// Writes the pause image tarball into `dir` (created if needed) as
/// `pause-3.10.tar` and returns its path. The file is only rewritten when its
/// contents differ (an SD card counts its writes), through a temporary file
/// and a rename.
pub fn pause_image_tarball(dir: &Path) -> Result<PathBuf> {
    let image = pause_image();
    std::fs::create_dir_all(dir).map_err(|e| ImageError::io("create", dir, e))?;
    let path = dir.join("pause-3.10.tar");
    if std::fs::read(&path).is_ok_and(|existing| existing == image.bytes) {
        return Ok(path);
    }
    let tmp = dir.join(".pause-3.10.tar.tmp");
    std::fs::write(&tmp, &image.bytes).map_err(|e| ImageError::io("write", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| ImageError::io("rename", &tmp, e))?;
    Ok(path)
}

/// What [`ensure_pause_image`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseImageOutcome {
    /// The runtime already had this exact image (same config digest).
    AlreadyPresent,
    Imported,
}

/// Makes [`PAUSE_IMAGE`] available in the runtime: nothing when it already
/// has the image with the embedded image's ID, else writes the tarball into
/// `dir` and imports it, then checks the runtime reports the expected ID.
pub async fn ensure_pause_image<R: ImageService>(
    runtime: &R,
    dir: &Path,
) -> Result<PauseImageOutcome> {
    let image = pause_image();
    let present = current_image_id(runtime, PAUSE_IMAGE).await?;
    if present.as_deref() == Some(image.config_digest.as_str()) {
        info!(image = PAUSE_IMAGE, id = %image.config_digest, "pause image already present");
        return Ok(PauseImageOutcome::AlreadyPresent);
    }
    let path = pause_image_tarball(dir)?;
    let started = Instant::now();
    runtime
        .import_image(&path)
        .await
        .map_err(|source| ImageError::Import {
            path: path.clone(),
            source,
        })?;
    let found = current_image_id(runtime, PAUSE_IMAGE).await?;
    if found.as_deref() != Some(image.config_digest.as_str()) {
        return Err(ImageError::DigestMismatch {
            path,
            image: PAUSE_IMAGE.to_owned(),
            expected: image.config_digest.clone(),
            found,
        });
    }
    info!(
        image = PAUSE_IMAGE,
        id = %image.config_digest,
        previous = ?present,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "imported the embedded pause image"
    );
    Ok(PauseImageOutcome::Imported)
}

async fn current_image_id<R: ImageService>(runtime: &R, name: &str) -> Result<Option<String>> {
    runtime
        .image_status(image_spec(name), false)
        .await
        .map(|image| image.map(|i| i.id))
        .map_err(|source| ImageError::Status {
            image: name.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::FakeRuntime;

    #[test]
    fn the_embedded_pause_binary_is_a_static_executable() {
        assert_eq!(&PAUSE_BINARY[..4], b"\x7fELF");
        // Small: musl gives ~13 KiB, glibc ~700 KiB; never a dynamic binary
        // (build.rs refuses those).
        assert!(PAUSE_BINARY.len() < 1024 * 1024, "{}", PAUSE_BINARY.len());
    }

    #[test]
    fn the_pause_image_names_itself_and_runs_pause_as_nobody() {
        let image = pause_image();
        assert_eq!(image.name, PAUSE_IMAGE);
        assert!(image.config_digest.starts_with("sha256:"));
        let again = build_image(&pause_contents()).expect("build");
        assert_eq!(&again, image, "deterministic");
    }

    #[test]
    fn the_tarball_is_rewritten_only_when_it_differs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = pause_image_tarball(dir.path()).expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), pause_image().bytes);
        let mtime = |p: &Path| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .expect("mtime")
        };
        let before = mtime(&path);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(pause_image_tarball(dir.path()).expect("again"), path);
        assert_eq!(mtime(&path), before, "an identical file is left alone");
        std::fs::write(&path, b"corrupt").expect("corrupt");
        pause_image_tarball(dir.path()).expect("repair");
        assert_eq!(std::fs::read(&path).expect("read"), pause_image().bytes);
    }

    #[tokio::test]
    async fn a_pause_image_with_another_id_is_replaced_by_import() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = FakeRuntime::new();
        // The fake gives imported images ids of its own, so the check after
        // the import fails: what matters here is that the import happened.
        runtime.add_image(PAUSE_IMAGE);
        runtime.add_importable(dir.path().join("pause-3.10.tar"), &[PAUSE_IMAGE]);
        let err = ensure_pause_image(&runtime, dir.path())
            .await
            .expect_err("the fake's id differs");
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
        assert!(
            runtime.calls().contains(&"ImportImage"),
            "{:?}",
            runtime.calls()
        );
    }

    #[tokio::test]
    async fn import_failures_name_the_tarball() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = FakeRuntime::new();
        let err = ensure_pause_image(&runtime, dir.path())
            .await
            .expect_err("the fake cannot import it");
        assert!(err.to_string().contains("pause-3.10.tar"), "{err}");
    }
}
