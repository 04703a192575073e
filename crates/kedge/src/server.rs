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
    let path = dir.join("token");
    if let Some(t) = args.token.as_ref().filter(|t| !t.is_empty()) {
        // A full K10<ca-hash>::server:<secret> token stands for its secret.
        return Ok(crate::agent::JoinToken::parse(t)
            .context("invalid --token")?
            .secret);
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
    crate::agent::write_private(&path, token.as_bytes())?;
    Ok(token)
}

pub(crate) fn create_private_dir(p: &Path) -> Result<()> {
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
    let node_name = args.node.node_name.clone().unwrap_or_else(host::hostname);
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
    let sa_key = kedge_pki::ensure_service_account_key(&tls_dir)
        .context("preparing the service-account signing key")?;
    let tls = kedge_pki::server_tls_config(&pki).context("building the TLS configuration")?;
    // The join token agents use, as K3s's <data-dir>/server/node-token.
    crate::agent::write_private(
        &server_dir.join("node-token"),
        format!(
            "{}\n",
            crate::agent::JoinToken::full(&pki.server_ca_cert_pem, &token)
        )
        .as_bytes(),
    )
    .context("writing the node token")?;

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
        service_account_key: Some(Arc::new(sa_key)),
        default_not_ready_toleration_seconds: args.default_not_ready_toleration_seconds,
        default_unreachable_toleration_seconds: args.default_unreachable_toleration_seconds,
    };
    let api = ApiServer::new(store.clone(), config);
    // The API server's client certificate for node agents (logs, exec, port-forward).
    let kubelet_client = kedge_pki::ensure_kubelet_client_cert(&tls_dir)
        .and_then(|t| kedge_pki::kubelet_client_tls_config(&t))
        .context("preparing the API server's node agent client certificate")?;
    api.set_kubelet_client_tls(Arc::new(kubelet_client));
    api.set_node_join(kedge_apiserver::NodeJoin {
        server_tls_dir: tls_dir.clone(),
    });
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
    let notify_client =
        crate::local_client::local_client(&api, crate::local_client::controller_identity());
    crate::sdnotify::spawn_ready(
        notify_client,
        (!args.disable_agent).then(|| node_name.clone()),
    );
    // Controllers and the scheduler: API clients through the router.
    let (controllers_stop, mut controllers_rx) = tokio::sync::watch::channel(false);
    let controllers = tokio::spawn(kedge_controllers::run(
        crate::local_client::local_client(&api, crate::local_client::controller_identity()),
        kedge_controllers::ControllerOptions {
            identity: node_name.clone(),
            node_monitor_grace_period: args.node_monitor_grace_period,
        },
        async move {
            let _ = controllers_rx.wait_for(|s| *s).await;
        },
    ));
    let agent = if args.disable_agent {
        None
    } else {
        Some(start_agent(&args, &api, &node_name, advertise, &tls_dir)?)
    };
    let (agent_stop, mut agent_task) = match agent {
        Some((stop, task)) => (Some(stop), Some(task)),
        None => (None, None),
    };
    let mut serve = serve;
    // The agent ends early only when it cannot start: then the server stops
    // too, as K3s does, rather than run a node that never becomes Ready.
    let agent_error = tokio::select! {
        r = &mut serve => {
            r.context("the API server task failed")?;
            None
        }
        r = async {
            match agent_task.as_mut() {
                Some(t) => t.await,
                None => std::future::pending().await,
            }
        } => {
            agent_task = None;
            serve.abort();
            Some(match r {
                Ok(Ok(())) => anyhow::anyhow!("the node agent stopped unexpectedly"),
                Ok(Err(e)) => anyhow::Error::new(e),
                Err(e) => anyhow::anyhow!("the node agent task failed: {e}"),
            })
        }
    };
    let _ = controllers_stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), controllers).await;
    if let Some(stop) = agent_stop {
        let _ = stop.send(true);
    }
    if let Some(task) = agent_task {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the node agent failed"),
            Err(e) => tracing::error!(error = %e, "the node agent task failed"),
        }
    }
    store.close();
    if let Some(e) = agent_error {
        return Err(e.context(
            "the node agent could not start (run `kedge server --disable-agent` for a control plane without a node)",
        ));
    }
    tracing::info!("kedge server stopped");
    Ok(())
}

/// Starts the embedded node agent: an API client through the router (the
/// node's identity), its serving certificate from the cluster CA.
fn start_agent(
    args: &ServerArgs,
    api: &Arc<ApiServer>,
    node_name: &str,
    advertise: IpAddr,
    server_tls_dir: &Path,
) -> Result<crate::agent::AgentTask> {
    let node_ip = args.node.node_ip.unwrap_or(advertise);
    let agent_tls_dir = args.data_dir.join("agent").join("tls");
    let serving = kedge_pki::ensure_kubelet_serving_cert(
        &agent_tls_dir,
        server_tls_dir,
        node_name,
        &[node_ip],
    )
    .context("preparing the node agent's certificate")?;
    let tls = kedge_pki::kubelet_server_tls_config(&serving)
        .context("building the node agent's TLS configuration")?;
    let opts = crate::agent::options(
        &args.node,
        &args.data_dir,
        node_name,
        node_ip,
        true,
        Arc::new(tls),
    )?;
    let client =
        crate::local_client::local_client(api, crate::local_client::node_identity(node_name));
    Ok(crate::agent::spawn(opts, client))
}

fn fmt_host(h: &str) -> String {
    if h.contains(':') {
        format!("[{h}]")
    } else {
        h.to_string()
    }
}

pub(crate) async fn shutdown_signal() {
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
