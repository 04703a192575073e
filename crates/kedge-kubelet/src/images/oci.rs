//! A single-layer container image as one tarball that is both an OCI image
//! layout and a `docker save` archive, built in memory and deterministically:
//! the same structure `scripts/build-image.py` writes (`oci-layout`,
//! `index.json` annotated with the image name, `manifest.json` and
//! `repositories` for `docker load`, blobs under `blobs/sha256/`), entries
//! sorted, every timestamp the epoch, owners 0:0 without names, gzip without
//! a name or time, JSON with sorted keys and no spaces.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use serde_json::{json, Map, Value};

use super::{ImageError, Result};

const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MT_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// `PATH` as `scripts/build-image.py` and Docker default it.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One regular file of the image's only layer.
#[derive(Debug, Clone)]
pub struct LayerFile {
    /// Path inside the image, without a leading `/`.
    pub path: String,
    pub mode: u32,
    pub contents: Vec<u8>,
}

/// What an image tarball is made of.
#[derive(Debug, Clone)]
pub struct ImageContents {
    /// `repository:tag`, e.g. `kedge.local/pause:3.10`.
    pub name: String,
    /// GOARCH spelling (`amd64`, `arm64`).
    pub architecture: String,
    /// `v7` for 32-bit ARM; empty otherwise.
    pub variant: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub files: Vec<LayerFile>,
    /// `created_by` of the only history entry.
    pub created_by: String,
}

/// A built tarball and its digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageTarball {
    pub name: String,
    /// The whole archive.
    pub bytes: Vec<u8>,
    /// `sha256:…` of the config: the image ID CRI reports.
    pub config_digest: String,
    /// `sha256:…` of the manifest: the repo digest CRI reports.
    pub manifest_digest: String,
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in digest.as_ref() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// JSON with object keys sorted and no insignificant whitespace (Python's
/// `json.dumps(sort_keys=True, separators=(",", ":"))`).
pub fn canonical_json(value: &Value) -> Vec<u8> {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let mut out = Map::new();
                for key in keys {
                    if let Some(v) = map.get(key) {
                        out.insert(key.clone(), sorted(v));
                    }
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    // Serialising a `Value` cannot fail (string keys only).
    serde_json::to_vec(&sorted(value)).unwrap_or_default()
}

/// Builds the image tarball.
pub fn build_image(spec: &ImageContents) -> Result<ImageTarball> {
    let (repo, tag) = split_name(&spec.name)?;

    let mut layer = TarWriter::default();
    let mut files: Vec<&LayerFile> = spec.files.iter().collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    for file in files {
        layer.file(&file.path, file.mode, &file.contents)?;
    }
    let layer_tar = layer.finish();
    let diff_id = sha256_digest(&layer_tar);
    let layer_blob = gzip(&layer_tar)?;
    let layer_digest = sha256_digest(&layer_blob);

    let mut container_config = Map::new();
    container_config.insert("Env".into(), json!(spec.env));
    if !spec.entrypoint.is_empty() {
        container_config.insert("Entrypoint".into(), json!(spec.entrypoint));
    }
    if !spec.cmd.is_empty() {
        container_config.insert("Cmd".into(), json!(spec.cmd));
    }
    if !spec.working_dir.is_empty() {
        container_config.insert("WorkingDir".into(), json!(spec.working_dir));
    }
    if !spec.user.is_empty() {
        container_config.insert("User".into(), json!(spec.user));
    }
    let created = "1970-01-01T00:00:00Z";
    let mut config = json!({
        "architecture": spec.architecture,
        "os": "linux",
        "created": created,
        "config": Value::Object(container_config),
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": spec.created_by}],
    });
    let mut platform = json!({"architecture": spec.architecture, "os": "linux"});
    if !spec.variant.is_empty() {
        config["variant"] = json!(spec.variant);
        platform["variant"] = json!(spec.variant);
    }
    let config_bytes = canonical_json(&config);
    let config_digest = sha256_digest(&config_bytes);

    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "config": {"mediaType": MT_OCI_CONFIG, "digest": config_digest, "size": config_bytes.len()},
        "layers": [{"mediaType": MT_OCI_LAYER_GZIP, "digest": layer_digest, "size": layer_blob.len()}],
    });
    let manifest_bytes = canonical_json(&manifest);
    let manifest_digest = sha256_digest(&manifest_bytes);

    let index = json!({
        "schemaVersion": 2,
        "mediaType": MT_OCI_INDEX,
        "manifests": [{
            "mediaType": MT_OCI_MANIFEST,
            "digest": manifest_digest,
            "size": manifest_bytes.len(),
            "platform": platform,
            // containerd reads the first; the OCI one carries the full name so
            // that `ctr import` does not prefix a bare tag.
            "annotations": {
                "io.containerd.image.name": spec.name,
                "org.opencontainers.image.ref.name": spec.name,
            },
        }],
    });
    let blob = |digest: &str| format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    let docker_manifest = json!([{
        "Config": blob(&config_digest),
        "RepoTags": [spec.name],
        "Layers": [blob(&layer_digest)],
    }]);
    let repositories = json!({ repo: { tag: config_digest.trim_start_matches("sha256:") } });

    let mut entries: Vec<(String, Option<Vec<u8>>)> = vec![
        ("blobs".into(), None),
        ("blobs/sha256".into(), None),
        (
            "oci-layout".into(),
            Some(canonical_json(&json!({"imageLayoutVersion": "1.0.0"}))),
        ),
        ("index.json".into(), Some(canonical_json(&index))),
        (
            "manifest.json".into(),
            Some(canonical_json(&docker_manifest)),
        ),
        ("repositories".into(), Some(canonical_json(&repositories))),
        (blob(&config_digest), Some(config_bytes)),
        (blob(&manifest_digest), Some(manifest_bytes)),
        (blob(&layer_digest), Some(layer_blob)),
    ];
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.dedup_by(|a, b| a.0 == b.0);
    let mut archive = TarWriter::default();
    for (name, data) in &entries {
        match data {
            None => archive.dir(name)?,
            Some(data) => archive.file(name, 0o644, data)?,
        }
    }
    Ok(ImageTarball {
        name: spec.name.clone(),
        bytes: archive.finish(),
        config_digest,
        manifest_digest,
    })
}

/// `registry/repo:tag` → (`registry/repo`, `tag`); the tag is required.
fn split_name(name: &str) -> Result<(&str, &str)> {
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[slash..].rfind(':') {
        Some(colon) if !name.contains('@') => {
            let (repo, tag) = (&name[..slash + colon], &name[slash + colon + 1..]);
            if repo.is_empty() || tag.is_empty() {
                Err(ImageError::BadName(name.to_owned()))
            } else {
                Ok((repo, tag))
            }
        }
        _ => Err(ImageError::BadName(name.to_owned())),
    }
}

fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    // No file name, mtime 0, OS "unknown" (255): nothing host-specific.
    let mut encoder: GzEncoder<Vec<u8>> = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::best());
    encoder.write_all(data).map_err(ImageError::Gzip)?;
    encoder.finish().map_err(ImageError::Gzip)
}

/// A minimal POSIX ustar writer: regular files and directories, owner 0:0,
/// mtime 0; names must fit ustar's 100 bytes (all of ours do).
#[derive(Default)]
struct TarWriter {
    out: Vec<u8>,
}

impl TarWriter {
    fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> Result<()> {
        self.header(name, mode, data.len() as u64, b'0')?;
        self.out.extend_from_slice(data);
        self.pad();
        Ok(())
    }

    fn dir(&mut self, name: &str) -> Result<()> {
        self.header(name, 0o755, 0, b'5')
    }

    fn header(&mut self, name: &str, mode: u32, size: u64, kind: u8) -> Result<()> {
        let name_bytes = name.as_bytes();
        if name_bytes.is_empty() || name_bytes.len() > 100 {
            return Err(ImageError::TarName(name.to_owned()));
        }
        let mut h = [0u8; 512];
        h[..name_bytes.len()].copy_from_slice(name_bytes);
        octal(&mut h[100..108], u64::from(mode));
        octal(&mut h[108..116], 0); // uid
        octal(&mut h[116..124], 0); // gid
        octal(&mut h[124..136], size);
        octal(&mut h[136..148], 0); // mtime
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        octal(&mut h[329..337], 0); // devmajor
        octal(&mut h[337..345], 0); // devminor
                                    // The checksum is computed with its own field as spaces.
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        let text = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(text.as_bytes());
        self.out.extend_from_slice(&h);
        Ok(())
    }

    fn pad(&mut self) {
        let rem = self.out.len() % 512;
        if rem != 0 {
            self.out.resize(self.out.len() + 512 - rem, 0);
        }
    }

    /// Two zero blocks, then zeros up to a whole 10 KiB record, as tar does.
    fn finish(mut self) -> Vec<u8> {
        self.out.resize(self.out.len() + 1024, 0);
        let rem = self.out.len() % 10240;
        if rem != 0 {
            self.out.resize(self.out.len() + 10240 - rem, 0);
        }
        self.out
    }
}

/// Zero-padded octal, NUL-terminated, filling `field`.
fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    let bytes = text.as_bytes();
    let start = bytes.len().saturating_sub(width);
    field[..width].copy_from_slice(&bytes[start..]);
    field[width] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ImageContents {
        ImageContents {
            name: "kedge.local/test:1.0".into(),
            architecture: "amd64".into(),
            variant: String::new(),
            entrypoint: vec!["/hello".into()],
            cmd: Vec::new(),
            env: vec![DEFAULT_PATH.into()],
            working_dir: "/".into(),
            user: "65535:65535".into(),
            files: vec![LayerFile {
                path: "hello".into(),
                mode: 0o755,
                contents: b"#!hello".to_vec(),
            }],
            created_by: "test".into(),
        }
    }

    /// (name, typeflag, mode, mtime, uid, contents) of each tar entry.
    fn entries(tar: &[u8]) -> Vec<(String, u8, u64, u64, u64, Vec<u8>)> {
        let field = |h: &[u8], a: usize, b: usize| {
            let text: String = h[a..b]
                .iter()
                .take_while(|c| **c != 0)
                .map(|c| *c as char)
                .collect();
            u64::from_str_radix(text.trim(), 8).expect("octal")
        };
        let mut out = Vec::new();
        let mut pos = 0;
        while pos + 512 <= tar.len() && tar[pos] != 0 {
            let h = &tar[pos..pos + 512];
            let name: String = h[..100]
                .iter()
                .take_while(|c| **c != 0)
                .map(|c| *c as char)
                .collect();
            // The checksum must verify as tar computes it.
            let mut copy = h.to_vec();
            copy[148..156].copy_from_slice(b"        ");
            let sum: u64 = copy.iter().map(|b| u64::from(*b)).sum();
            assert_eq!(field(h, 148, 155), sum, "checksum of {name}");
            assert_eq!(&h[257..263], b"ustar\0");
            let size = usize::try_from(field(h, 124, 136)).expect("size");
            let data = tar[pos + 512..pos + 512 + size].to_vec();
            out.push((
                name,
                h[156],
                field(h, 100, 108),
                field(h, 136, 148),
                field(h, 108, 116),
                data,
            ));
            pos += 512 + size.div_ceil(512) * 512;
        }
        assert_eq!(tar.len() % 10240, 0, "whole records");
        out
    }

    #[test]
    fn the_tarball_is_an_oci_layout_and_a_docker_save_archive() {
        let image = build_image(&spec()).expect("build");
        let entries = entries(&image.bytes);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        let config_hex = image.config_digest.trim_start_matches("sha256:");
        let manifest_hex = image.manifest_digest.trim_start_matches("sha256:");
        assert_eq!(names[..2], ["blobs", "blobs/sha256"]);
        assert!(names.contains(&"oci-layout"));
        assert!(names.contains(&"index.json"));
        assert!(names.contains(&"manifest.json"));
        assert!(names.contains(&"repositories"));
        assert!(names.contains(&format!("blobs/sha256/{config_hex}").as_str()));
        assert!(names.contains(&format!("blobs/sha256/{manifest_hex}").as_str()));
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "entries are sorted");
        for (name, kind, mode, mtime, uid, data) in &entries {
            assert_eq!((*mtime, *uid), (0, 0), "{name}");
            if *kind == b'0' {
                assert_eq!(*mode, 0o644, "{name}");
                // Every blob's name is its digest.
                if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                    assert_eq!(sha256_digest(data), format!("sha256:{hex}"));
                }
            } else {
                assert_eq!((*kind, *mode), (b'5', 0o755), "{name}");
            }
        }
        let file = |n: &str| -> Value {
            let data = &entries.iter().find(|e| e.0 == n).expect(n).5;
            serde_json::from_slice(data).expect("json")
        };
        let index = file("index.json");
        let desc = &index["manifests"][0];
        assert_eq!(desc["digest"], image.manifest_digest.as_str());
        assert_eq!(
            desc["annotations"]["io.containerd.image.name"],
            "kedge.local/test:1.0"
        );
        assert_eq!(
            desc["annotations"]["org.opencontainers.image.ref.name"],
            "kedge.local/test:1.0"
        );
        assert_eq!(
            desc["platform"],
            json!({"architecture": "amd64", "os": "linux"})
        );
        let docker = file("manifest.json");
        assert_eq!(docker[0]["RepoTags"], json!(["kedge.local/test:1.0"]));
        assert_eq!(docker[0]["Config"], format!("blobs/sha256/{config_hex}"));
        assert_eq!(
            file("repositories"),
            json!({"kedge.local/test": {"1.0": config_hex}})
        );
        let config = file(&format!("blobs/sha256/{config_hex}"));
        assert_eq!(config["config"]["Entrypoint"], json!(["/hello"]));
        assert_eq!(config["config"]["User"], "65535:65535");
        assert_eq!(config["created"], "1970-01-01T00:00:00Z");

        // The layer: gzip of a tar holding the one file, its diff_id the
        // digest of the uncompressed tar.
        let manifest = file(&format!("blobs/sha256/{manifest_hex}"));
        let layer_digest = manifest["layers"][0]["digest"].as_str().expect("digest");
        let layer_gz = &entries
            .iter()
            .find(|e| e.0 == format!("blobs/sha256/{}", &layer_digest[7..]))
            .expect("layer")
            .5;
        let mut layer = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&layer_gz[..]), &mut layer)
            .expect("gunzip");
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            sha256_digest(&layer).as_str()
        );
        let files = super::tests::entries(&layer);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].0, "hello");
        assert_eq!(files[0].2, 0o755);
        assert_eq!(files[0].5, b"#!hello");
    }

    #[test]
    fn builds_are_deterministic_and_content_addressed() {
        let a = build_image(&spec()).expect("a");
        let b = build_image(&spec()).expect("b");
        assert_eq!(a, b);
        let mut other = spec();
        other.files[0].contents = b"#!other".to_vec();
        let c = build_image(&other).expect("c");
        assert_ne!(a.config_digest, c.config_digest);
        assert_ne!(a.manifest_digest, c.manifest_digest);
    }

    #[test]
    fn names_need_a_tag() {
        assert!(matches!(
            split_name("kedge.local/pause"),
            Err(ImageError::BadName(_))
        ));
        assert!(matches!(
            split_name("localhost:5000/pause"),
            Err(ImageError::BadName(_))
        ));
        assert_eq!(
            split_name("localhost:5000/pause:3.10").expect("ok"),
            ("localhost:5000/pause", "3.10")
        );
        assert!(split_name("a@sha256:00").is_err());
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v = json!({"b": 1, "a": {"d": [ {"z": 1, "y": 2} ], "c": "x"}});
        assert_eq!(
            String::from_utf8(canonical_json(&v)).expect("utf8"),
            r#"{"a":{"c":"x","d":[{"y":2,"z":1}]},"b":1}"#
        );
    }
}
