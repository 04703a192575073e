//! The committed v1beta1 bindings (src/api/v1beta1.rs) are what
//! tonic-prost-build generates from the committed upstream proto.
//!
//! `KEDGE_REGENERATE_API=1 cargo test -p kedge-devices --test generated_api`
//! rewrites them.

use std::path::Path;

fn protoc_available() -> bool {
    let protoc = std::env::var_os("PROTOC").unwrap_or_else(|| "protoc".into());
    std::process::Command::new(protoc)
        .arg("--version")
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false)
}

#[test]
fn committed_bindings_match_the_upstream_proto() {
    if !protoc_available() {
        eprintln!(
            "SKIPPED committed_bindings_match_the_upstream_proto: protoc not found \
             (scripts/setup.sh installs it); the committed bindings were not checked"
        );
        return;
    }
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let proto_dir = crate_dir.join("proto/deviceplugin/v1beta1");
    let out = tempfile::tempdir().expect("temp dir");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .emit_rerun_if_changed(false)
        .out_dir(out.path())
        .compile_protos(
            &[proto_dir.join("api.proto")],
            std::slice::from_ref(&proto_dir),
        )
        .expect("generate the v1beta1 bindings");
    let generated =
        std::fs::read_to_string(out.path().join("v1beta1.rs")).expect("generated v1beta1.rs");
    let committed_path = crate_dir.join("src/api/v1beta1.rs");
    if std::env::var_os("KEDGE_REGENERATE_API").is_some() {
        std::fs::write(&committed_path, &generated).expect("write src/api/v1beta1.rs");
        return;
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == generated,
        "src/api/v1beta1.rs is stale: run \
         `KEDGE_REGENERATE_API=1 cargo test -p kedge-devices --test generated_api`"
    );
}
