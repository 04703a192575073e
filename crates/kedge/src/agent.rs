//! `kedge agent`: a node that joins a kedge server, as `k3s agent` joins K3s,
//! and the node agent options both commands build.
//!
//! Joining, with the token the server wrote to `<data-dir>/server/node-token`
//! (`K10<SHA-256 of the server CA>::server:<secret>`; the bare secret works
//! too, trusting the CA on first use):
//!
//! 1. `GET /cacerts` without checking the server (nothing secret is sent);
//!    its SHA-256 must equal the token's hash, and must equal the CA pinned at
//!    an earlier join (`<data-dir>/agent/tls/server-ca.crt`).
//! 2. `POST /v1-kedge/node-credentials` with the secret, over TLS checked
//!    against that CA: a client certificate for `system:node:<name>`, a
//!    serving certificate for the agent's HTTPS API, and the client CA.
//! 3. `<data-dir>/agent/kubelet.kubeconfig` names them; the node agent runs
//!    with it exactly as the one embedded in `kedge server`.
//!
//! The credentials are reused at the next start, without asking the server,
//! while they fit: same server, node name and addresses, and more than 90 days
//! to go (then they are requested again, so certificates renew themselves).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use kedge_apiserver::{NodeCredentials, CACERTS_PATH, CREDENTIALS_PATH};
use serde::{Deserialize, Serialize};

use crate::cli::{self, AgentArgs, NodeArgs};
use crate::host;

const SERVER_CA: &str = "server-ca.crt";
const CLIENT_CA: &str = "client-ca.crt";
const CLIENT_CERT: &str = "client-kubelet.crt";
const CLIENT_KEY: &str = "client-kubelet.key";
const SERVING_CERT: &str = kedge_pki::KUBELET_SERVING_CERT;
const SERVING_KEY: &str = kedge_pki::KUBELET_SERVING_KEY;
const JOIN_RECORD: &str = "join.json";
const KUBECONFIG: &str = "kubelet.kubeconfig";

/// A join token: the CA hash it pins (if any) and the secret.
#[derive(Debug, PartialEq, Eq)]
pub struct JoinToken {
    pub ca_hash: Option<String>,
    pub secret: String,
}

impl JoinToken {
    /// `K10<sha256 hex>::<user>:<secret>` (K3s's full token) or a bare secret.
    pub fn parse(token: &str) -> Result<JoinToken> {
        let token = token.trim();
        if token.is_empty() {
            bail!("the token is empty");
        }
        let Some(rest) = token.strip_prefix("K10") else {
            return Ok(JoinToken {
                ca_hash: None,
                secret: token.to_owned(),
            });
        };
        let Some((hash, credentials)) = rest.split_once("::") else {
            bail!("the token starts with K10 but has no '::' (expected K10<ca-hash>::server:<secret>)");
        };
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(
                "the token's CA hash is not 64 hex digits (expected K10<ca-hash>::server:<secret>)"
            );
        }
        let secret = credentials
            .split_once(':')
            .map_or(credentials, |(_, s)| s)
            .to_owned();
        if secret.is_empty() {
            bail!("the token has no secret after '::server:'");
        }
        Ok(JoinToken {
            ca_hash: Some(hash.to_ascii_lowercase()),
            secret,
        })
    }

    /// The full token for a cluster whose server CA is `ca_pem`.
    pub fn full(ca_pem: &str, secret: &str) -> String {
        format!("K10{}::server:{secret}", sha256_hex(ca_pem.as_bytes()))
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the credentials under `<data-dir>/agent/tls` were issued for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JoinRecord {
    server: String,
    node_name: String,
    addresses: Vec<IpAddr>,
}

/// Held open by a running `kedge agent` (with its pid inside), so that
/// commands that must not run beside it (`kedge certificate rotate`) see it.
pub fn pid_file(data_dir: &Path) -> PathBuf {
    data_dir.join("agent").join("kedge-agent.pid")
}

/// The node agent's options from the shared node flags.
pub fn options(
    node: &NodeArgs,
    data_dir: &Path,
    node_name: &str,
    node_ip: IpAddr,
    control_plane: bool,
    tls: Arc<rustls::ServerConfig>,
) -> Result<kedge_kubelet::agent::AgentOptions> {
    let mut labels = BTreeMap::new();
    for l in &node.node_label {
        let (k, v) = l
            .split_once('=')
            .with_context(|| format!("--node-label {l:?} is not key=value"))?;
        labels.insert(k.to_owned(), v.to_owned());
    }
    Ok(kedge_kubelet::agent::AgentOptions {
        node_name: node_name.to_owned(),
        data_dir: data_dir.to_owned(),
        container_runtime_endpoint: node.container_runtime_endpoint.clone(),
        pause_image: node.pause_image.clone(),
        cluster_dns: node.cluster_dns.clone(),
        cluster_domain: node.cluster_domain.clone(),
        node_ips: vec![node_ip],
        labels,
        control_plane,
        kubelet_port: node.kubelet_port,
        cni_bridge: node.cni_bridge.clone(),
        cni_bin_dir: node.cni_bin_dir.clone(),
        pod_masquerade: node.pod_masquerade,
        pod_logs_dir: node.pod_logs_dir.clone(),
        kubelet_version: cli::git_version(),
        tls,
        accelerator_root: node.accelerator_root.clone(),
        builtin_devices: builtin_devices(node),
        kubelet_root: node.kubelet_root_dir.clone(),
        fail_pods_on_device_failure: node.fail_pods_on_device_failure,
        eviction_hard: node.eviction_hard.clone().unwrap_or_default(),
        stop_pods_at_system_shutdown: true,
    })
}

/// The built-in accelerator plugins as the flags configure them.
pub fn builtin_devices(node: &NodeArgs) -> kedge_devices::builtin::BuiltinConfig {
    let mut cfg = kedge_devices::builtin::BuiltinConfig::default();
    let off = |name: &str| node.disable_accelerator.iter().any(|d| d == name);
    cfg.nvidia.enabled = !off("nvidia");
    cfg.nvidia.time_slicing_replicas = node.nvidia_time_slicing_replicas;
    cfg.intel.enabled = !off("intel");
    cfg.intel.shared_dev_num = node.intel_gpu_shared_dev_num;
    cfg.coral.enabled = !off("coral");
    cfg.coral.resource_name = node.edge_tpu_resource_name.clone();
    cfg
}

pub type AgentTask = (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<Result<(), kedge_kubelet::agent::AgentError>>,
);

/// Runs the node agent in a task until the returned sender says stop.
pub fn spawn(opts: kedge_kubelet::agent::AgentOptions, client: kube::Client) -> AgentTask {
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let stopped = async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        };
        let result = kedge_kubelet::agent::run(opts, client, stopped).await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "the node agent stopped");
        }
        result
    });
    (stop_tx, task)
}

/// `kedge agent`.
pub async fn run(args: AgentArgs) -> Result<()> {
    let server = args
        .server
        .clone()
        .filter(|s| !s.is_empty())
        .context("no server to join: give --server https://<server>:6443 (or KEDGE_URL)")?;
    let server = normalize_server_url(&server)?;
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) if !t.is_empty() => t.clone(),
        (_, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read --token-file {}", f.display()))?,
        _ => bail!(
            "no token: give --token (or KEDGE_TOKEN), the server's <data-dir>/server/node-token"
        ),
    };
    let token = JoinToken::parse(&token).context("invalid --token")?;
    let node_name = args
        .node
        .node_name
        .clone()
        .unwrap_or_else(host::hostname)
        .to_ascii_lowercase();
    let node_ip = args.node.node_ip.unwrap_or_else(host::primary_ipv4);
    let tls_dir = args.data_dir.join("agent").join("tls");
    crate::server::create_private_dir(&tls_dir)?;
    let pid_path = pid_file(&args.data_dir);
    if let Some(pid) = crate::backup::process_holding(&pid_path) {
        bail!(
            "another kedge agent (process {pid}) runs on {}: stop it first, or pick another --data-dir",
            args.data_dir.display()
        );
    }
    // Kept open until the agent exits.
    let _pid_file = {
        use std::io::Write;
        let mut f = std::fs::File::create(&pid_path)
            .with_context(|| format!("cannot write {}", pid_path.display()))?;
        writeln!(f, "{}", std::process::id())
            .with_context(|| format!("cannot write {}", pid_path.display()))?;
        f
    };
    let record = JoinRecord {
        server: server.clone(),
        node_name: node_name.clone(),
        addresses: vec![node_ip],
    };
    let started = std::time::Instant::now();
    ensure_credentials(&tls_dir, &record, &token).await?;
    let kubeconfig = args.data_dir.join("agent").join(KUBECONFIG);
    let kubeconfig_text = kubelet_kubeconfig(&server, &tls_dir);
    write_private(&kubeconfig, kubeconfig_text.as_bytes())?;
    // kube's default read timeout (long enough for watches) on this one.
    let client = client_from_yaml(&kubeconfig_text, None)
        .await
        .with_context(|| format!("using {}", kubeconfig.display()))?;
    let serving = kedge_pki::KubeletTls {
        cert_pem: read(&tls_dir.join(SERVING_CERT))?,
        key_pem: read(&tls_dir.join(SERVING_KEY))?,
        peer_ca_pem: read(&tls_dir.join(CLIENT_CA))?,
    };
    let tls = kedge_pki::kubelet_server_tls_config(&serving)
        .context("building the node agent's TLS configuration")?;
    let opts = options(
        &args.node,
        &args.data_dir,
        &node_name,
        node_ip,
        false,
        Arc::new(tls),
    )?;
    tracing::info!(
        version = %cli::git_version(),
        server = %server,
        node = %node_name,
        node_ip = %node_ip,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "kedge agent joined; starting the node agent"
    );
    crate::sdnotify::spawn_ready(client.clone(), Some(node_name.clone()));
    let (stop, mut task) = spawn(opts, client);
    tokio::select! {
        r = &mut task => {
            return match r {
                Ok(Ok(())) => Err(anyhow::anyhow!("the node agent stopped unexpectedly")),
                Ok(Err(e)) => Err(anyhow::Error::new(e).context("the node agent failed")),
                Err(e) => Err(anyhow::anyhow!("the node agent task failed: {e}")),
            };
        }
        _ = crate::server::shutdown_signal() => {}
    }
    let _ = stop.send(true);
    match task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "the node agent failed while stopping"),
        Err(e) => tracing::error!(error = %e, "the node agent task failed"),
    }
    tracing::info!("kedge agent stopped");
    Ok(())
}

/// `https://host:port` without a trailing slash; a bare `host:port` gets
/// `https://`.
fn normalize_server_url(s: &str) -> Result<String> {
    let s = s.trim();
    let full = if s.contains("://") {
        s.to_owned()
    } else {
        format!("https://{s}")
    };
    let uri: http::Uri = full
        .parse()
        .with_context(|| format!("--server {s:?} is not a URL such as https://10.0.0.1:6443"))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("https"), Some(a)) if !a.host().is_empty() => Ok(format!("https://{a}")),
        _ => bail!("--server {s:?} must be an https:// URL such as https://10.0.0.1:6443"),
    }
}

/// Keeps the credentials under `tls_dir` when they still fit `record`, else
/// asks the server for new ones (retrying while it cannot be reached).
async fn ensure_credentials(tls_dir: &Path, record: &JoinRecord, token: &JoinToken) -> Result<()> {
    match stored_credentials_fit(tls_dir, record, token) {
        Ok(()) => {
            tracing::info!(dir = %tls_dir.display(), "reusing this node's credentials");
            return Ok(());
        }
        Err(why) => tracing::info!(reason = %why, "requesting credentials from the server"),
    }
    let pinned = std::fs::read_to_string(tls_dir.join(SERVER_CA)).ok();
    let mut delay = Duration::from_secs(1);
    let creds = loop {
        match join(record, token, pinned.as_deref(), tls_dir).await {
            Ok(c) => break c,
            Err(JoinError::Fatal(e)) => return Err(e),
            Err(JoinError::Unreachable(e)) => {
                tracing::warn!(
                    server = %record.server,
                    error = %crate::one_line(&e),
                    retry_in_s = delay.as_secs(),
                    "cannot reach the server yet; retrying"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    };
    write_private(&tls_dir.join(CLIENT_KEY), creds.client_key.as_bytes())?;
    write_private(&tls_dir.join(SERVING_KEY), creds.serving_key.as_bytes())?;
    write_private(
        &tls_dir.join(CLIENT_CERT),
        creds.client_certificate.as_bytes(),
    )?;
    write_private(
        &tls_dir.join(SERVING_CERT),
        creds.serving_certificate.as_bytes(),
    )?;
    write_private(&tls_dir.join(CLIENT_CA), creds.client_ca.as_bytes())?;
    write_private(&tls_dir.join(SERVER_CA), creds.server_ca.as_bytes())?;
    let rec = serde_json::to_vec_pretty(record).context("encoding the join record")?;
    write_private(&tls_dir.join(JOIN_RECORD), &rec)?;
    tracing::info!(node = %record.node_name, dir = %tls_dir.display(), "received this node's credentials");
    Ok(())
}

/// `Ok` when the stored credentials can be used as they are; else why not.
fn stored_credentials_fit(
    tls_dir: &Path,
    record: &JoinRecord,
    token: &JoinToken,
) -> Result<(), String> {
    let text = std::fs::read_to_string(tls_dir.join(JOIN_RECORD))
        .map_err(|_| "this node has not joined yet".to_string())?;
    let stored: JoinRecord =
        serde_json::from_str(&text).map_err(|e| format!("{JOIN_RECORD} is unreadable: {e}"))?;
    if stored != *record {
        return Err(format!(
            "they were issued for {} as {} {:?}",
            stored.server, stored.node_name, stored.addresses
        ));
    }
    let ca = std::fs::read_to_string(tls_dir.join(SERVER_CA))
        .map_err(|e| format!("{SERVER_CA}: {e}"))?;
    if let Some(hash) = &token.ca_hash {
        if sha256_hex(ca.as_bytes()) != *hash {
            return Err("the token names another server CA".into());
        }
    }
    for name in [CLIENT_CERT, SERVING_CERT] {
        let pem =
            std::fs::read_to_string(tls_dir.join(name)).map_err(|e| format!("{name}: {e}"))?;
        match kedge_pki::expires_within(&pem, kedge_pki::CERTIFICATE_RENEW_BEFORE) {
            Ok(false) => {}
            Ok(true) => return Err(format!("{name} expires within 90 days")),
            Err(e) => return Err(format!("{name} is unreadable: {e}")),
        }
    }
    for name in [CLIENT_KEY, SERVING_KEY, CLIENT_CA] {
        if !tls_dir.join(name).is_file() {
            return Err(format!("{name} is missing"));
        }
    }
    Ok(())
}

enum JoinError {
    /// Wrong token, wrong server, refused: retrying will not help.
    Fatal(anyhow::Error),
    /// The server cannot be reached (yet).
    Unreachable(anyhow::Error),
}

fn unreachable_or_fatal(e: kube::Error, what: &str, server: &str) -> JoinError {
    match e {
        kube::Error::Api(status) if status.code == 401 => JoinError::Fatal(anyhow::anyhow!(
            "{server} refused the token (401 Unauthorized): use the server's <data-dir>/server/node-token"
        )),
        kube::Error::Api(status) => JoinError::Fatal(anyhow::anyhow!(
            "{what}: {server} answered {} {}: {}",
            status.code,
            status.reason,
            status.message
        )),
        other => JoinError::Unreachable(anyhow::Error::new(other).context(format!("{what} from {server}"))),
    }
}

async fn join(
    record: &JoinRecord,
    token: &JoinToken,
    pinned: Option<&str>,
    tls_dir: &Path,
) -> Result<NodeCredentials, JoinError> {
    let server = &record.server;
    // 1. The CA, unchecked: nothing secret travels on this request.
    let insecure = kubeconfig_yaml(server, "insecure-skip-tls-verify: true", "{}");
    let client = client_from_yaml(&insecure, Some(JOIN_READ_TIMEOUT))
        .await
        .map_err(JoinError::Fatal)?;
    let req = http::Request::get(CACERTS_PATH)
        .body(Vec::new())
        .map_err(|e| JoinError::Fatal(e.into()))?;
    let ca = client
        .request_text(req)
        .await
        .map_err(|e| unreachable_or_fatal(e, "fetching the server CA", server))?;
    if !ca.contains("-----BEGIN CERTIFICATE-----") {
        return Err(JoinError::Fatal(anyhow::anyhow!(
            "{server}{CACERTS_PATH} did not return a certificate: is it a kedge server?"
        )));
    }
    let hash = sha256_hex(ca.as_bytes());
    match (&token.ca_hash, pinned) {
        (Some(want), _) if *want != hash => {
            return Err(JoinError::Fatal(anyhow::anyhow!(
                "the server's CA does not match the token (CA hash {hash}, token K10{want}): wrong server, or someone in between"
            )))
        }
        (None, Some(p)) if p != ca => {
            return Err(JoinError::Fatal(anyhow::anyhow!(
                "the server's CA changed since this node joined: if the cluster was rebuilt, remove {} and join again",
                tls_dir.display()
            )))
        }
        (None, None) => tracing::warn!(
            server = %server,
            ca_hash = %hash,
            "the token has no CA hash: trusting the server's CA on first use (use the K10... token from the server's node-token file)"
        ),
        _ => {}
    }
    // 2. The credentials, over TLS checked against that CA.
    let user = format!(
        "{{token: {}}}",
        serde_json::Value::String(token.secret.clone())
    );
    let yaml = kubeconfig_yaml(
        server,
        &format!(
            "certificate-authority-data: {}",
            base64::engine::general_purpose::STANDARD.encode(&ca)
        ),
        &user,
    );
    let client = client_from_yaml(&yaml, Some(JOIN_READ_TIMEOUT))
        .await
        .map_err(JoinError::Fatal)?;
    let body = serde_json::json!({
        "nodeName": record.node_name,
        "addresses": record.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
    });
    let req = http::Request::post(CREDENTIALS_PATH)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body.to_string().into_bytes())
        .map_err(|e| JoinError::Fatal(e.into()))?;
    let creds: NodeCredentials = client
        .request(req)
        .await
        .map_err(|e| unreachable_or_fatal(e, "requesting node credentials", server))?;
    if creds.server_ca != ca {
        return Err(JoinError::Fatal(anyhow::anyhow!(
            "the server returned another CA than {CACERTS_PATH} did: retry, and check what sits between this node and {server}"
        )));
    }
    Ok(creds)
}

fn yaml_path(p: &Path) -> String {
    serde_json::Value::String(p.display().to_string()).to_string()
}

fn kubeconfig_yaml(server: &str, cluster_extra: &str, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kedge\n  cluster: {{server: {}, {cluster_extra}}}\n\
         users:\n- name: node\n  user: {user}\ncontexts:\n- name: kedge\n  context: {{cluster: kedge, user: node}}\n\
         current-context: kedge\n",
        serde_json::Value::String(server.to_owned())
    )
}

/// The agent's kubeconfig: the server, its CA and the node's client
/// certificate, all as paths under `tls_dir`.
fn kubelet_kubeconfig(server: &str, tls_dir: &Path) -> String {
    kubeconfig_yaml(
        server,
        &format!(
            "certificate-authority: {}",
            yaml_path(&tls_dir.join(SERVER_CA))
        ),
        &format!(
            "{{client-certificate: {}, client-key: {}}}",
            yaml_path(&tls_dir.join(CLIENT_CERT)),
            yaml_path(&tls_dir.join(CLIENT_KEY))
        ),
    )
}

/// Read timeout of the join requests (short: they answer at once).
const JOIN_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A client from kubeconfig text; `read_timeout` `None` keeps kube's
/// default, which the agent's watches need.
async fn client_from_yaml(yaml: &str, read_timeout: Option<Duration>) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::from_yaml(yaml).context("building a kubeconfig")?;
    let mut cfg =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .context("loading the kubeconfig")?;
    cfg.connect_timeout = Some(Duration::from_secs(10));
    if read_timeout.is_some() {
        cfg.read_timeout = read_timeout;
    }
    kube::Client::try_from(cfg).context("building the API client")
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Writes `data` to `path` atomically, readable by root only.
pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = path.with_file_name(format!(".{name}.tmp"));
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    out.write_all(data)
        .and_then(|()| out.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_as_k3s_writes_them() {
        let hash = "ab".repeat(32);
        let t = JoinToken::parse(&format!("K10{hash}::server:s3cret\n")).expect("full");
        assert_eq!(t.ca_hash.as_deref(), Some(hash.as_str()));
        assert_eq!(t.secret, "s3cret");
        let t = JoinToken::parse("plain-secret").expect("bare");
        assert_eq!(t.ca_hash, None);
        assert_eq!(t.secret, "plain-secret");
        assert!(JoinToken::parse("").is_err());
        assert!(JoinToken::parse("K10abc::server:x").is_err());
        assert!(JoinToken::parse(&format!("K10{hash}server:x")).is_err());
        assert!(JoinToken::parse(&format!("K10{hash}::server:")).is_err());
        let full = JoinToken::full("pem", "s");
        let t = JoinToken::parse(&full).expect("round trip");
        assert_eq!(t.ca_hash, Some(sha256_hex(b"pem")));
        assert_eq!(t.secret, "s");
    }

    #[test]
    fn server_urls() {
        assert_eq!(
            normalize_server_url("10.0.0.1:6443").expect("bare"),
            "https://10.0.0.1:6443"
        );
        assert_eq!(
            normalize_server_url("https://gw.example:6443/").expect("slash"),
            "https://gw.example:6443"
        );
        assert!(normalize_server_url("http://10.0.0.1:6443").is_err());
        assert!(normalize_server_url("https://").is_err());
    }
}
