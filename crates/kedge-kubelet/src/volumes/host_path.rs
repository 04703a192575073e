//! hostPath volumes: upstream's `pkg/volume/hostpath` type checks. The
//! volume is the host path itself; nothing is mounted or copied.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

use super::go_io_error;

/// `SetUp` of a hostPath volume: reject `..` elements, then check (or
/// create) what `type` asks for.
pub(crate) fn check(path: &str, path_type: &str) -> Result<(), String> {
    if path.split('/').any(|p| p == "..") {
        return Err(format!("invalid HostPath `{path}`: must not contain '..'"));
    }
    let p = Path::new(path);
    // `os.Stat`: symlinks are followed.
    let md = fs::metadata(p).ok();
    let is = |f: fn(&fs::FileType) -> bool| md.as_ref().is_some_and(|m| f(&m.file_type()));
    match path_type {
        "" => Ok(()),
        "DirectoryOrCreate" if md.is_none() => make_dir(p),
        "DirectoryOrCreate" | "Directory" => is(fs::FileType::is_dir)
            .then_some(())
            .ok_or_else(|| format!("hostPath type check failed: {path} is not a directory")),
        "FileOrCreate" if md.is_none() => make_file(p),
        "FileOrCreate" | "File" => is(fs::FileType::is_file)
            .then_some(())
            .ok_or_else(|| format!("hostPath type check failed: {path} is not a file")),
        "Socket" => is(fs::FileType::is_socket)
            .then_some(())
            .ok_or_else(|| format!("hostPath type check failed: {path} is not a socket file")),
        "CharDevice" => is(fs::FileType::is_char_device)
            .then_some(())
            .ok_or_else(|| format!("hostPath type check failed: {path} is not a character device")),
        "BlockDevice" => is(fs::FileType::is_block_device)
            .then_some(())
            .ok_or_else(|| format!("hostPath type check failed: {path} is not a block device")),
        other => Err(format!("{other} is an invalid volume type")),
    }
}

/// `makeDir`: `os.MkdirAll(path, 0755)` (parents too; the umask applies).
fn make_dir(p: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt as _;
    match fs::DirBuilder::new().recursive(true).mode(0o755).create(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(go_io_error("mkdir", p, &e)),
    }
}

/// `makeFile`: `os.OpenFile(path, O_CREATE, 0644)`; the parent directory
/// must exist.
fn make_file(p: &Path) -> Result<(), String> {
    match fs::OpenOptions::new()
        .read(true)
        .create(true)
        .append(true)
        .mode(0o644)
        .open(p)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(go_io_error("open", p, &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn types() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let s = |p: &Path| p.to_str().unwrap().to_string();
        let file = d.join("file");
        fs::write(&file, "x").unwrap();
        let sock = d.join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();

        // Unset: no check at all, even for what does not exist.
        check(&s(&d.join("nothing")), "").unwrap();
        check(&s(d), "Directory").unwrap();
        check(&s(&file), "File").unwrap();
        check(&s(&sock), "Socket").unwrap();
        check("/dev/null", "CharDevice").unwrap();

        let f = s(&file);
        assert_eq!(
            check(&f, "Directory").unwrap_err(),
            format!("hostPath type check failed: {f} is not a directory")
        );
        assert_eq!(
            check(&s(d), "File").unwrap_err(),
            format!("hostPath type check failed: {} is not a file", s(d))
        );
        assert_eq!(
            check(&f, "Socket").unwrap_err(),
            format!("hostPath type check failed: {f} is not a socket file")
        );
        assert_eq!(
            check(&f, "CharDevice").unwrap_err(),
            format!("hostPath type check failed: {f} is not a character device")
        );
        assert_eq!(
            check("/dev/null", "BlockDevice").unwrap_err(),
            "hostPath type check failed: /dev/null is not a block device"
        );
        assert_eq!(
            check(&s(&d.join("nothing")), "Directory").unwrap_err(),
            format!(
                "hostPath type check failed: {} is not a directory",
                s(&d.join("nothing"))
            )
        );
        assert_eq!(
            check(&f, "Weird").unwrap_err(),
            "Weird is an invalid volume type"
        );
        assert_eq!(
            check("/a/../etc", "").unwrap_err(),
            "invalid HostPath `/a/../etc`: must not contain '..'"
        );
    }

    #[test]
    fn or_create() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let nested = d.join("a/b/c");
        check(nested.to_str().unwrap(), "DirectoryOrCreate").unwrap();
        let mode = fs::metadata(&nested).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o700, 0o700);
        assert_eq!(mode & !0o755, 0, "{mode:o}");
        // Existing: fine; an existing file where a directory is wanted: not.
        check(nested.to_str().unwrap(), "DirectoryOrCreate").unwrap();
        let file = d.join("f");
        check(file.to_str().unwrap(), "FileOrCreate").unwrap();
        assert!(fs::metadata(&file).unwrap().is_file());
        assert_eq!(fs::metadata(&file).unwrap().len(), 0);
        assert!(check(file.to_str().unwrap(), "DirectoryOrCreate")
            .unwrap_err()
            .ends_with("is not a directory"));
        assert!(check(nested.to_str().unwrap(), "FileOrCreate")
            .unwrap_err()
            .ends_with("is not a file"));
        // FileOrCreate does not create parents.
        let orphan = d.join("missing/f");
        assert_eq!(
            check(orphan.to_str().unwrap(), "FileOrCreate").unwrap_err(),
            format!("open {}: no such file or directory", orphan.display())
        );
        // Existing content is kept.
        fs::write(&file, "keep").unwrap();
        check(file.to_str().unwrap(), "FileOrCreate").unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), "keep");
    }
}
