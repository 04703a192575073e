//! Compiles kedge's pause program (`images/pause/pause.c`) into a small
//! static binary that the crate embeds (`src/images/pause.rs`) and serves as
//! the `kedge.local/pause:3.10` image, so that no pod ever needs a registry.
//!
//! The compiler, first that works: `$KEDGE_PAUSE_CC`; when cross-compiling,
//! `$CC_<target>` (the `cc` crate's convention); else `musl-gcc` (about
//! 13 KiB, from Debian's `musl-tools`, which `scripts/setup.sh` installs),
//! then `gcc -static` (glibc, about 700 KiB). The result must be a static
//! ELF (no `PT_INTERP`), or the build fails saying what to install.
//!
//! Outputs: `$OUT_DIR/pause` (embedded with `include_bytes!`), and the
//! environment variables `KEDGE_PAUSE_ARCH` / `KEDGE_PAUSE_VARIANT` (the
//! image's OCI platform) and `KEDGE_PAUSE_CC` (which compiler built it).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let repo_root = manifest_dir.join("..").join("..");
    let source = repo_root.join("images").join("pause").join("pause.c");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default());
    let output = out_dir.join("pause");
    let target = env::var("TARGET").unwrap_or_default();
    let host = env::var("HOST").unwrap_or_default();

    println!("cargo:rerun-if-changed={}", source.display());
    println!("cargo:rerun-if-env-changed=KEDGE_PAUSE_CC");
    let cross_cc_var = format!("CC_{}", target.replace('-', "_"));
    println!("cargo:rerun-if-env-changed={cross_cc_var}");

    let (arch, variant) = oci_platform(
        &env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default(),
        &target,
    );
    println!("cargo:rustc-env=KEDGE_PAUSE_ARCH={arch}");
    println!("cargo:rustc-env=KEDGE_PAUSE_VARIANT={variant}");

    let mut candidates: Vec<String> = Vec::new();
    if let Ok(cc) = env::var("KEDGE_PAUSE_CC") {
        candidates.push(cc);
    } else if target != host {
        if let Ok(cc) = env::var(&cross_cc_var) {
            candidates.push(cc);
        }
    } else {
        candidates.push("musl-gcc".to_owned());
        candidates.push("gcc".to_owned());
        candidates.push("cc".to_owned());
    }

    let mut failures = Vec::new();
    for cc in &candidates {
        match compile(cc, &source, &output, &repo_root) {
            Ok(()) => match check_static(&output) {
                Ok(()) => {
                    println!("cargo:rustc-env=KEDGE_PAUSE_CC={cc}");
                    return;
                }
                Err(why) => failures.push(format!("{cc}: {why}")),
            },
            Err(why) => failures.push(format!("{cc}: {why}")),
        }
    }
    let tried = if failures.is_empty() {
        format!(
            "no compiler for target {target}: set KEDGE_PAUSE_CC or {cross_cc_var} to a C compiler \
             that builds static binaries for it"
        )
    } else {
        failures.join("\n  ")
    };
    panic!(
        "kedge-kubelet: cannot build the embedded pause binary from {} as a static executable.\n  \
         {tried}\n\
         Install musl-tools (apt-get install musl-tools; scripts/setup.sh does) or a gcc with a \
         static libc (libc6-dev), or set KEDGE_PAUSE_CC.",
        source.display()
    );
}

/// Runs the compiler; flags as in scripts/build-test-images.sh.
fn compile(cc: &str, source: &Path, output: &Path, repo_root: &Path) -> Result<(), String> {
    let prefix_map = format!("-ffile-prefix-map={}=.", repo_root.display());
    let result = Command::new(cc)
        .args(["-static", "-Os", "-s", "-Wall", "-Wextra", "-fno-ident"])
        .arg(prefix_map)
        .arg("-o")
        .arg(output)
        .arg(source)
        .output()
        .map_err(|e| format!("cannot run: {e}"))?;
    if result.status.success() {
        Ok(())
    } else {
        Err(format!(
            "failed ({}): {}",
            result.status,
            String::from_utf8_lossy(&result.stderr).trim()
        ))
    }
}

/// A static ELF executable: the ELF magic, and no `PT_INTERP` program header.
fn check_static(path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        return Err("the output is not an ELF file".to_owned());
    }
    let is_64 = bytes[4] == 2;
    let little = bytes[5] == 1;
    let read = |off: usize, len: usize| -> Option<u64> {
        let raw = bytes.get(off..off + len)?;
        let mut value = 0u64;
        for (i, b) in raw.iter().enumerate() {
            let shift = if little { i } else { len - 1 - i } * 8;
            value |= u64::from(*b) << shift;
        }
        Some(value)
    };
    let (phoff, phentsize, phnum) = if is_64 {
        (read(32, 8), read(54, 2), read(56, 2))
    } else {
        (read(28, 4), read(42, 2), read(44, 2))
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (phoff, phentsize, phnum) else {
        return Err("truncated ELF header".to_owned());
    };
    const PT_INTERP: u64 = 3;
    for i in 0..phnum {
        let Ok(off) = usize::try_from(phoff + i * phentsize) else {
            return Err("bad program header offset".to_owned());
        };
        match read(off, 4) {
            Some(PT_INTERP) => {
                return Err("the output is dynamically linked (has an ELF interpreter)".to_owned())
            }
            Some(_) => {}
            None => return Err("truncated ELF program headers".to_owned()),
        }
    }
    Ok(())
}

/// Rust's target arch as the OCI image platform (GOARCH and variant).
fn oci_platform(arch: &str, target: &str) -> (String, String) {
    let (goarch, variant) = match arch {
        "x86_64" => ("amd64", ""),
        "x86" => ("386", ""),
        "aarch64" => ("arm64", ""),
        "arm" if target.starts_with("armv7") => ("arm", "v7"),
        "arm" => ("arm", "v6"),
        "riscv64" => ("riscv64", ""),
        "powerpc64" => ("ppc64le", ""),
        "s390x" => ("s390x", ""),
        "loongarch64" => ("loong64", ""),
        other => (other, ""),
    };
    (goarch.to_owned(), variant.to_owned())
}
