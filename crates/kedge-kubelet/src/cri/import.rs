//! Image tarball import through containerd's `ctr`.
//!
//! CRI has no import call. containerd's own API does (the transfer/import
//! services), but speaking it would mean a second set of generated protobuf
//! bindings; `ctr images import` is in the same Debian package as containerd
//! and does exactly this, so for now the agent runs it as a subprocess.
//! Replace with a native client of containerd's content and images services
//! when the `ctr` dependency (or its ~30 ms start) starts to matter.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;
use tracing::{debug, info};

use super::{CriError, Result};
use crate::containerd::CRI_NAMESPACE;

/// Runs `ctr --address <socket> --namespace k8s.io images import` for a tarball.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtrImporter {
    /// The `ctr` binary (looked up in `PATH` when relative).
    pub ctr: PathBuf,
    /// containerd's socket (the same one CRI uses).
    pub address: PathBuf,
    /// The containerd namespace; CRI only sees `k8s.io`.
    pub namespace: String,
    /// Unpack into this snapshotter; it must be the CRI plugin's, or the
    /// first container of the image pays for the unpack.
    pub snapshotter: Option<String>,
}

impl CtrImporter {
    /// An importer for the containerd at `address`, in the CRI namespace.
    pub fn new(address: impl Into<PathBuf>) -> CtrImporter {
        CtrImporter {
            ctr: PathBuf::from("ctr"),
            address: address.into(),
            namespace: CRI_NAMESPACE.to_owned(),
            snapshotter: None,
        }
    }

    /// Unpack into `snapshotter` (`overlayfs`, `native`).
    pub fn with_snapshotter(mut self, snapshotter: &str) -> CtrImporter {
        self.snapshotter = Some(snapshotter.to_owned());
        self
    }

    /// The arguments of one import, without the program.
    pub fn args(&self, tarball: &Path) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec![
            "--address".into(),
            self.address.clone().into(),
            "--namespace".into(),
            self.namespace.clone().into(),
            "images".into(),
            "import".into(),
        ];
        if let Some(snapshotter) = &self.snapshotter {
            args.push("--snapshotter".into());
            args.push(snapshotter.into());
        }
        args.push(tarball.into());
        args
    }

    /// Import `tarball`; returns the image names `ctr` reported unpacking.
    pub async fn import(&self, tarball: &Path) -> Result<Vec<String>> {
        let output = Command::new(&self.ctr)
            .args(self.args(tarball))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| CriError::ImportSpawn {
                program: self.ctr.clone(),
                tarball: tarball.to_owned(),
                source,
            })?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        debug!(tarball = %tarball.display(), %stdout, "ctr images import");
        if !output.status.success() {
            return Err(CriError::ImportFailed {
                tarball: tarball.to_owned(),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        let names = parse_import_output(&stdout);
        if names.is_empty() {
            return Err(CriError::ImportEmpty {
                tarball: tarball.to_owned(),
            });
        }
        info!(tarball = %tarball.display(), images = ?names, "imported image tarball");
        Ok(names)
    }
}

/// `ctr images import` prints `unpacking NAME (sha256:…)...done` per image.
fn parse_import_output(stdout: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in stdout.lines() {
        let Some(rest) = line.trim().strip_prefix("unpacking ") else {
            continue;
        };
        let Some((name, _)) = rest.split_once(" (") else {
            continue;
        };
        if !name.is_empty() && !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_output_names_the_images() {
        let out = "unpacking kedge.local/pause:3.10 (sha256:d20a)...done\n\
                   unpacking kedge.local/busybox:1.36 (sha256:1201)...done\n";
        assert_eq!(
            parse_import_output(out),
            vec!["kedge.local/pause:3.10", "kedge.local/busybox:1.36"]
        );
        assert!(parse_import_output("").is_empty());
    }

    #[test]
    fn args_name_socket_namespace_and_snapshotter() {
        let importer = CtrImporter::new("/d/containerd.sock").with_snapshotter("native");
        let args: Vec<String> = importer
            .args(Path::new("/i/busybox.tar"))
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--address",
                "/d/containerd.sock",
                "--namespace",
                "k8s.io",
                "images",
                "import",
                "--snapshotter",
                "native",
                "/i/busybox.tar"
            ]
        );
    }

    #[tokio::test]
    async fn a_missing_ctr_is_reported() {
        let mut importer = CtrImporter::new("/nonexistent.sock");
        importer.ctr = PathBuf::from("/nonexistent/ctr");
        let err = importer
            .import(Path::new("/tmp/x.tar"))
            .await
            .expect_err("no ctr");
        assert!(matches!(err, CriError::ImportSpawn { .. }), "{err}");
    }
}
