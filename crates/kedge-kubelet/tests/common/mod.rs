//! Shared by the real-runtime tests; the environment itself is
//! `kedge_kubelet::testing::RealRuntimeEnv`.

/// Test logs at `RUST_LOG` (default `kedge_kubelet=info`), once per process.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "kedge_kubelet=info".to_owned()),
        )
        .with_test_writer()
        .try_init();
}
