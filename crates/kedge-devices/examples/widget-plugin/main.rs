//! `widget-plugin`: a small external device plugin speaking the v1beta1 API,
//! for trying kedge's (or any kubelet's) device plugin support by hand.
//!
//! ```text
//! cargo run -p kedge-devices --example widget-plugin -- \
//!     --kubelet-root /var/lib/kubelet --dev-dir /srv/widgets/dev --share-dir /srv/widgets/share
//! ```
//!
//! It registers `example.com/widget` with three devices; a pod that asks for
//! some gets env `WIDGETS`, `/dev/widget-N` for its widgets (from
//! `<dev-dir>/widget-N` on the host) and `<share-dir>` at `/opt/widget`. See
//! `widget.rs` for the details. Runs until SIGINT or SIGTERM, then removes
//! its socket.

mod widget;

use std::process::ExitCode;

use tokio::signal::unix::{signal, SignalKind};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = match widget::WidgetConfig::from_args(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("widget-plugin: {err}");
            return ExitCode::from(2);
        }
    };
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(err) => {
            eprintln!("widget-plugin: cannot handle SIGTERM: {err}");
            return ExitCode::FAILURE;
        }
    };
    let plugin = match widget::WidgetPlugin::start(config).await {
        Ok(plugin) => plugin,
        Err(err) => {
            eprintln!("widget-plugin: {err}");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    plugin.stop();
    ExitCode::SUCCESS
}
