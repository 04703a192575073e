//! `kedge server`: wires the datastore, PKI and API server together.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use kedge_apiserver::{ApiServer, Config, VersionInfo};
use kedge_store::{Durability, SqliteStore, DEFAULT_WINDOW};

use crate::cli::{self, ServerArgs};
use crate::host;

/// The cluster token: `--token`, else the one saved under the data dir, else
/// a new random one saved there.
fn cluster_token(args: &ServerArgs, dir: &Path) -> Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("token");
    if let Some(t) = args.token.as_ref().filter(|t| !t.is_empty()) {
        return Ok(t.clone());
    }
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    let mut raw = [0u8; 24];
    let mut f =
        std::fs::File::open("/dev/urandom").context("reading /dev/urandom for a new token")?;
    std::io::Read::read_exact(&mut f, &mut raw).context("reading /dev/urandom for a new token")?;
    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(".token.tmp");
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    out.write_all(token.as_bytes())?;
    out.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(token)
}

fn create_private_dir(p: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .with_context(|| {
            format!(
                "cannot create {} (run as root, or pick another --data-dir)",
                p.display()
            )
        })
}

pub async fn run(args: ServerArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let server_dir = args.data_dir.join("server");
    create_private_dir(&server_dir.join("db"))?;
    let token = cluster_token(&args, &server_dir)?;
    let node_name = args.node_name.clone().unwrap_or_else(host::hostname);
    let advertise: IpAddr = match args.advertise_address {
        Some(a) => a,
        None if !args.bind_address.is_unspecified() => args.bind_address,
        None => host::primary_ipv4(),
    };

    // Bind first: a busy port is the most common start-up failure.
    let addr = SocketAddr::new(args.bind_address, args.https_listen_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (is another kedge or kube-apiserver running? pick another --https-listen-port)"))?;

    let mut sans = args.tls_san.clone();
    sans.push(advertise.to_string());
    if !args.bind_address.is_unspecified() {
        sans.push(args.bind_address.to_string());
    }
    let tls_dir = server_dir.join("tls");
    let pki = kedge_pki::ensure_pki(&tls_dir, &sans).context("preparing certificates")?;
    let tls = kedge_pki::server_tls_config(&pki).context("building the TLS configuration")?;

    let store = SqliteStore::open(
        &server_dir.join("db").join("state.db"),
        Durability::Full,
        DEFAULT_WINDOW,
    )
    .context("opening the datastore")?;
    let store = Arc::new(store);

    let host_for_clients = if args.bind_address.is_unspecified() || args.bind_address.is_loopback()
    {
        "127.0.0.1".to_string()
    } else {
        args.bind_address.to_string()
    };
    let url = format!(
        "https://{}:{}",
        fmt_host(&host_for_clients),
        args.https_listen_port
    );
    kedge_pki::write_kubeconfig(
        &args.write_kubeconfig,
        args.write_kubeconfig_mode,
        &url,
        &pki,
    )
    .with_context(|| {
        format!(
            "writing the kubeconfig to {}",
            args.write_kubeconfig.display()
        )
    })?;

    let config = Config {
        service_cidr: args.service_cidr,
        cluster_cidr: args.cluster_cidr,
        token: Some(token),
        version: VersionInfo {
            git_version: cli::git_version(),
            git_commit: env!("KEDGE_GIT_COMMIT").to_string(),
            build_date: env!("KEDGE_BUILD_DATE").to_string(),
        },
        advertise_address: advertise.to_string(),
        port: args.https_listen_port,
        bookmark_interval: Duration::from_secs(args.watch_bookmark_interval.max(1)),
        watch_timeout: Duration::from_secs(1800),
        root_ca_pem: pki.server_ca_cert_pem.clone(),
    };
    let api = ApiServer::new(store.clone(), config);
    let serve = tokio::spawn(
        api.clone()
            .serve_tls(listener, Arc::new(tls), shutdown_signal()),
    );
    api.bootstrap()
        .await
        .context("bootstrapping the cluster's built-in objects")?;
    tracing::info!(
        version = %cli::git_version(),
        listen = %addr,
        node = %node_name,
        kubeconfig = %args.write_kubeconfig.display(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "kedge server is ready"
    );
    if !args.disable_agent {
        tracing::info!("the node agent is not part of this build yet: running the control plane only (same as --disable-agent)");
    }
    serve.await.context("the API server task failed")?;
    store.close();
    tracing::info!("kedge server stopped");
    Ok(())
}

fn fmt_host(h: &str) -> String {
    if h.contains(':') {
        format!("[{h}]")
    } else {
        h.to_string()
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: shutting down"),
    }
}
