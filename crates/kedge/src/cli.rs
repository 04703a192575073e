//! The command line, with K3s's flag names, and the `--config` YAML file.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use kedge_apiserver::Cidr;

/// The Kubernetes release kedge implements, and kedge's own revision of it.
pub const KUBE_VERSION: &str = "1.33.0";
pub const KEDGE_REVISION: u32 = 1;

pub fn git_version() -> String {
    format!("v{KUBE_VERSION}+kedge.{KEDGE_REVISION}")
}

pub fn version_line() -> String {
    let commit = env!("KEDGE_GIT_COMMIT");
    let short = commit.get(..12).unwrap_or(commit);
    format!("kedge version {} ({short})", git_version())
}

#[derive(Parser, Debug)]
#[command(
    name = "kedge",
    about = "A Kubernetes distribution for edge gateways, in one binary",
    disable_version_flag = true
)]
struct Cli {
    /// Print the version and exit
    #[arg(long = "version", short = 'V', global = true)]
    version: bool,
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// Run the control plane (API server, datastore) and, unless disabled, a node agent
    Server(Box<ServerArgs>),
    /// Run a node agent that joins a kedge server (--server, --token)
    Agent(Box<AgentArgs>),
    /// Check this host for what kedge needs
    CheckConfig(CheckConfigArgs),
    /// Copy the datastore to a file (SQLite online backup: safe while kedge runs)
    Backup(BackupArgs),
    /// Replace the datastore with a backup (kedge server must be stopped)
    Restore(RestoreArgs),
    /// Check or rotate the cluster's certificates (as `k3s certificate`)
    Certificate(crate::certificate::CertificateArgs),
}

#[derive(Args, Debug, Clone)]
pub struct BackupArgs {
    /// The backup file to write
    #[arg(long)]
    pub to: PathBuf,
    /// kedge's data dir (the datastore is <data-dir>/server/db/state.db)
    #[arg(long, short = 'd', default_value = "/var/lib/kedge")]
    pub data_dir: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct RestoreArgs {
    /// The backup file to restore
    #[arg(long)]
    pub from: PathBuf,
    /// kedge's data dir (the datastore is <data-dir>/server/db/state.db)
    #[arg(long, short = 'd', default_value = "/var/lib/kedge")]
    pub data_dir: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct CheckConfigArgs {
    /// Print the accelerators kedge finds (NVIDIA, Intel GPU, Coral Edge TPU) as JSON
    #[arg(long)]
    pub accelerators: bool,
    /// Host root where accelerators are discovered (sysfs, proc and dev under it)
    #[arg(long, default_value = "/")]
    pub accelerator_root: PathBuf,
    /// kedge's data dir (free disk is checked there)
    #[arg(long, short = 'd', default_value = "/var/lib/kedge")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
#[command(args_override_self = true)]
pub struct ServerArgs {
    /// Config file: YAML with the same keys as the long flags (flags win)
    #[arg(
        long,
        short = 'c',
        env = "KEDGE_CONFIG_FILE",
        default_value = "/etc/kedge/config.yaml"
    )]
    pub config: PathBuf,
    /// Folder for state: datastore, certificates, tokens
    #[arg(long, short = 'd', default_value = "/var/lib/kedge")]
    pub data_dir: PathBuf,
    /// HTTPS port of the API server
    #[arg(long, default_value_t = 6443, value_parser = clap::value_parser!(u16).range(1..))]
    pub https_listen_port: u16,
    /// Address the API server listens on
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: std::net::IpAddr,
    /// Address advertised to the cluster (default: the host's first address)
    #[arg(long)]
    pub advertise_address: Option<std::net::IpAddr>,
    /// Extra hostname or IP for the serving certificate (repeatable)
    #[arg(long = "tls-san")]
    pub tls_san: Vec<String>,
    /// Where to write the admin kubeconfig
    #[arg(
        long,
        short = 'o',
        env = "KEDGE_KUBECONFIG_OUTPUT",
        default_value = "/etc/kedge/kedge.yaml"
    )]
    pub write_kubeconfig: PathBuf,
    /// File mode of the kubeconfig, in octal (e.g. 644)
    #[arg(long, env = "KEDGE_KUBECONFIG_MODE", default_value = "600", value_parser = parse_mode)]
    pub write_kubeconfig_mode: u32,
    /// Shared secret: bearer token for the API and join token for agents
    #[arg(long, short = 't', env = "KEDGE_TOKEN")]
    pub token: Option<String>,
    /// Run the control plane only, without a node agent
    #[arg(long)]
    pub disable_agent: bool,
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub log: LogArgs,
    /// Pod network range
    #[arg(long, default_value = "10.42.0.0/16", value_parser = parse_cidr)]
    pub cluster_cidr: Cidr,
    /// Service ClusterIP range
    #[arg(long, default_value = "10.43.0.0/16", value_parser = parse_cidr)]
    pub service_cidr: Cidr,
    /// Seconds between watch bookmarks (tests shorten it)
    #[arg(long, default_value_t = 60, hide = true)]
    pub watch_bookmark_interval: u64,
    /// Seconds pods tolerate their node being not ready before eviction (upstream: 300)
    #[arg(long, default_value_t = kedge_apiserver::DEFAULT_TOLERATION_SECONDS, value_parser = clap::value_parser!(i64).range(0..))]
    pub default_not_ready_toleration_seconds: i64,
    /// Seconds pods tolerate their node being unreachable before eviction (upstream: 300)
    #[arg(long, default_value_t = kedge_apiserver::DEFAULT_TOLERATION_SECONDS, value_parser = clap::value_parser!(i64).range(0..))]
    pub default_unreachable_toleration_seconds: i64,
    /// How long a node may stay silent before it is marked Unknown, e.g. 15s or 1m (upstream: 40s)
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub node_monitor_grace_period: std::time::Duration,
}

/// `kedge agent`: a node joining a server, as K3s's `k3s agent`.
#[derive(Args, Debug, Clone)]
#[command(args_override_self = true)]
pub struct AgentArgs {
    /// Config file: YAML with the same keys as the long flags (flags win;
    /// keys only `kedge server` knows are skipped, so one file can serve both)
    #[arg(
        long,
        short = 'c',
        env = "KEDGE_CONFIG_FILE",
        default_value = "/etc/kedge/config.yaml"
    )]
    pub config: PathBuf,
    /// Folder for state: the agent's certificates, containerd and images
    #[arg(long, short = 'd', default_value = "/var/lib/kedge")]
    pub data_dir: PathBuf,
    /// The server to join, e.g. https://10.0.0.1:6443
    #[arg(long, short = 's', env = "KEDGE_URL")]
    pub server: Option<String>,
    /// The cluster token (the server's <data-dir>/server/node-token)
    #[arg(long, short = 't', env = "KEDGE_TOKEN")]
    pub token: Option<String>,
    /// A file holding the cluster token
    #[arg(long, env = "KEDGE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// The node agent's flags, shared by `kedge server` (its embedded agent) and
/// `kedge agent`.
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// Name of this node (default: the hostname)
    #[arg(long)]
    pub node_name: Option<String>,
    /// Use this CRI socket instead of starting containerd (e.g. /run/containerd/containerd.sock)
    #[arg(long)]
    pub container_runtime_endpoint: Option<PathBuf>,
    /// Image every pod sandbox runs (kedge imports its own at start)
    #[arg(long, default_value = "kedge.local/pause:3.10")]
    pub pause_image: String,
    /// IP of the cluster DNS service given to pods (repeatable; none: pods use the host's resolv.conf)
    #[arg(long = "cluster-dns")]
    pub cluster_dns: Vec<std::net::IpAddr>,
    /// Cluster domain
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// IP address to advertise for this node (default: the advertise address)
    #[arg(long)]
    pub node_ip: Option<std::net::IpAddr>,
    /// Label for this node, key=value (repeatable)
    #[arg(long = "node-label")]
    pub node_label: Vec<String>,
    /// Port of the node agent's HTTPS API (logs, exec, port-forward)
    #[arg(long, default_value_t = 10250, hide = true)]
    pub kubelet_port: u16,
    /// Name of the pod network's Linux bridge
    #[arg(long, default_value = "cni0", hide = true)]
    pub cni_bridge: String,
    /// Folder of the CNI plugins (bridge, host-local, portmap, loopback) for the supervised containerd
    #[arg(long, default_value = kedge_kubelet::containerd::DEFAULT_CNI_BIN_DIR)]
    pub cni_bin_dir: PathBuf,
    /// Masquerade pod traffic leaving the pod network (tests turn it off)
    #[arg(long, default_value_t = true, hide = true, action = clap::ArgAction::Set)]
    pub pod_masquerade: bool,
    /// Host root where accelerators are discovered (sysfs, proc and dev under it)
    #[arg(long, default_value = "/")]
    pub accelerator_root: PathBuf,
    /// Turn a built-in accelerator plugin off: nvidia, intel or coral (repeatable)
    #[arg(long = "disable-accelerator", value_parser = ["nvidia", "intel", "coral"])]
    pub disable_accelerator: Vec<String>,
    /// Share each NVIDIA GPU between this many pods (time-slicing; 0: off)
    #[arg(long, default_value_t = 0)]
    pub nvidia_time_slicing_replicas: u32,
    /// Pods that may share one Intel GPU
    #[arg(long, default_value_t = 1)]
    pub intel_gpu_shared_dev_num: u32,
    /// Resource name of Coral Edge TPUs
    #[arg(long, default_value = "google.com/edge-tpu")]
    pub edge_tpu_resource_name: String,
    /// Hard eviction thresholds, as the kubelet's --eviction-hard (e.g. memory.available<200Mi,imagefs.available<5%); signals not named keep upstream's defaults, 0% turns one off
    #[arg(long, value_parser = parse_eviction_hard)]
    pub eviction_hard: Option<kedge_kubelet::node::EvictionThresholds>,
    /// Fail the pods of an accelerator that turns unhealthy so their controllers replace them
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub fail_pods_on_device_failure: bool,
    /// The kubelet root directory (device plugins register under <dir>/device-plugins)
    #[arg(long, default_value = "/var/lib/kubelet")]
    pub kubelet_root_dir: PathBuf,
    /// Where pod logs go (/var/log/pods, as upstream)
    #[arg(long, default_value = "/var/log/pods", hide = true)]
    pub pod_logs_dir: PathBuf,
}

/// Logging flags of the long-running commands.
#[derive(Args, Debug, Clone)]
pub struct LogArgs {
    /// Log format
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log verbosity: 0 info, 1-2 debug, 3+ trace
    #[arg(long = "v", short = 'v', default_value_t = 0)]
    pub verbosity: u8,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s:?} is not an octal file mode such as 600 or 644"))
}

/// A Go-style duration (`15s`, `1m30s`, `500ms`) or plain seconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{s:?} is not a duration such as 15s, 1m or 500ms");
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(secs));
    }
    let mut total = std::time::Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += std::time::Duration::try_from_secs_f64(n * scale).map_err(|_| bad())?;
    }
    Ok(total)
}

fn parse_eviction_hard(s: &str) -> Result<kedge_kubelet::node::EvictionThresholds, String> {
    kedge_kubelet::node::EvictionThresholds::parse(s)
}

fn parse_cidr(s: &str) -> Result<Cidr, String> {
    s.parse()
}

pub enum Command {
    Server(Box<ServerArgs>),
    Agent(Box<AgentArgs>),
    CheckConfig(CheckConfigArgs),
    Backup(BackupArgs),
    Restore(RestoreArgs),
    Certificate(crate::certificate::CertificateArgs),
}

fn one_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let first = rendered
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid arguments");
    first.trim_start_matches("error: ").trim().to_string()
}

/// Whether `--key` is a switch that takes no value.
fn is_switch(cmd: &clap::Command, key: &str) -> bool {
    cmd.get_arguments()
        .find(|a| a.get_long() == Some(key))
        .is_some_and(|a| !a.get_action().takes_values())
}

/// Flags from the config file, as `--key=value` arguments placed before the
/// command line's own so that the command line wins.
fn config_args(
    path: &std::path::Path,
    explicit: bool,
    own: &clap::Command,
) -> Result<Vec<OsString>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(vec![]),
        Err(e) => return Err(format!("cannot read config file {}: {e}", path.display())),
    };
    let doc: serde_yaml::Value = serde_yaml::from_str(&text)
        .map_err(|e| format!("config file {} is not valid YAML: {e}", path.display()))?;
    let map = match doc {
        serde_yaml::Value::Mapping(m) => m,
        serde_yaml::Value::Null => return Ok(vec![]),
        _ => {
            return Err(format!(
                "config file {} must be a YAML mapping of flag names to values",
                path.display()
            ))
        }
    };
    let longs = |c: &clap::Command| -> Vec<String> {
        c.get_arguments()
            .filter_map(|a| a.get_long().map(str::to_string))
            .collect()
    };
    let known = longs(own);
    // Keys of the other long-running command (one file may serve a server
    // and, on another host, an agent): skipped, as K3s skips them.
    let mut other_keys = longs(&ServerArgs::augment_args(clap::Command::new("server")));
    other_keys.extend(longs(&AgentArgs::augment_args(clap::Command::new("agent"))));
    let mut out = Vec::new();
    for (k, v) in map {
        let key = k
            .as_str()
            .ok_or_else(|| format!("config file {}: keys must be flag names", path.display()))?
            .to_string();
        if !known.contains(&key) && other_keys.contains(&key) {
            tracing::debug!(key, "config key not used by this command");
            continue;
        }
        if !known.contains(&key) || key == "config" {
            return Err(format!(
                "config file {}: unknown key {key:?}",
                path.display()
            ));
        }
        let scalar = |v: &serde_yaml::Value| -> Result<String, String> {
            match v {
                serde_yaml::Value::String(s) => Ok(s.clone()),
                serde_yaml::Value::Number(n) => Ok(n.to_string()),
                serde_yaml::Value::Bool(b) => Ok(b.to_string()),
                _ => Err(format!(
                    "config file {}: value of {key:?} must be a scalar or a list of scalars",
                    path.display()
                )),
            }
        };
        match &v {
            serde_yaml::Value::Sequence(items) => {
                for i in items {
                    out.push(OsString::from(format!("--{key}={}", scalar(i)?)));
                }
            }
            // A switch (`disable-agent: true`) is given bare or left out; a
            // boolean that takes a value (`fail-pods-on-device-failure:
            // false`) is given as `--key=false`.
            serde_yaml::Value::Bool(b) if is_switch(own, &key) => {
                if *b {
                    out.push(OsString::from(format!("--{key}")));
                }
            }
            other => out.push(OsString::from(format!("--{key}={}", scalar(other)?))),
        }
    }
    Ok(out)
}

/// Parse the command line (and config file); on `Err` the message has been
/// printed and the exit code is returned.
pub fn parse(argv: Vec<OsString>) -> Result<Command, ExitCode> {
    let fail = |msg: String| {
        eprintln!("kedge: {msg}");
        ExitCode::from(2)
    };
    let matches = match Cli::command().try_get_matches_from(argv.clone()) {
        Ok(m) => m,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return Err(if e.kind() == ErrorKind::DisplayHelp {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(2)
                });
            }
            // Point at the help of the subcommand the error is about.
            let cmd = Cli::command();
            let sub = argv
                .iter()
                .skip(1)
                .filter_map(|a| a.to_str())
                .find(|a| cmd.get_subcommands().any(|s| s.get_name() == *a));
            let help = match sub {
                Some(sub) => format!("kedge {sub} --help"),
                None => "kedge --help".to_string(),
            };
            return Err(fail(format!("{} (see '{help}')", one_line(&e))));
        }
    };
    let cli = Cli::from_arg_matches(&matches).map_err(|e| fail(one_line(&e)))?;
    if cli.version {
        println!("{}", version_line());
        return Err(ExitCode::SUCCESS);
    }
    match cli.command {
        None => {
            let _ = Cli::command().print_help();
            Err(ExitCode::from(2))
        }
        Some(Sub::CheckConfig(args)) => Ok(Command::CheckConfig(args)),
        Some(Sub::Backup(args)) => Ok(Command::Backup(args)),
        Some(Sub::Restore(args)) => Ok(Command::Restore(args)),
        Some(Sub::Certificate(args)) => Ok(Command::Certificate(args)),
        Some(Sub::Server(args)) => {
            let cmd = ServerArgs::augment_args(clap::Command::new("server"));
            let extra = config_file_flags(&matches, "server", &args.config, &cmd).map_err(fail)?;
            if extra.is_empty() {
                return Ok(Command::Server(args));
            }
            match reparse(argv, "server", extra, &args.config).map_err(fail)? {
                Sub::Server(a) => Ok(Command::Server(a)),
                _ => Err(ExitCode::from(2)),
            }
        }
        Some(Sub::Agent(args)) => {
            let cmd = AgentArgs::augment_args(clap::Command::new("agent"));
            let extra = config_file_flags(&matches, "agent", &args.config, &cmd).map_err(fail)?;
            if extra.is_empty() {
                return Ok(Command::Agent(args));
            }
            match reparse(argv, "agent", extra, &args.config).map_err(fail)? {
                Sub::Agent(a) => Ok(Command::Agent(a)),
                _ => Err(ExitCode::from(2)),
            }
        }
    }
}

/// The config file's flags for subcommand `sub` (an explicit `--config`
/// that cannot be read is an error; the default path may be absent).
fn config_file_flags(
    matches: &clap::ArgMatches,
    sub: &str,
    config: &std::path::Path,
    cmd: &clap::Command,
) -> Result<Vec<OsString>, String> {
    let explicit = matches
        .subcommand_matches(sub)
        .and_then(|m| m.value_source("config"))
        .is_some_and(|s| s != clap::parser::ValueSource::DefaultValue);
    config_args(config, explicit, cmd)
}

/// Parse again with the config file's flags inserted right after `sub`, so
/// that the command line's own flags come later and win.
fn reparse(
    mut argv: Vec<OsString>,
    sub: &str,
    extra: Vec<OsString>,
    config: &std::path::Path,
) -> Result<Sub, String> {
    let pos = argv.iter().position(|a| a == sub).unwrap_or(1) + 1;
    for (i, a) in extra.into_iter().enumerate() {
        argv.insert(pos + i, a);
    }
    let m = Cli::command()
        .try_get_matches_from(argv)
        .map_err(|e| format!("{} (from {})", one_line(&e), config.display()))?;
    Cli::from_arg_matches(&m)
        .map_err(|e| one_line(&e))?
        .command
        .ok_or_else(|| "no command".to_string())
}

pub fn init_logging(format: &LogFormat, verbosity: u8) {
    let level = match verbosity {
        0 => "info",
        1 | 2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEDGE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{level},hyper=info,h2=info,rustls=info"))
    });
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => b.json().try_init(),
        LogFormat::Text => b.try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn check_config_takes_the_accelerator_root() {
        match parse(args(&[
            "kedge",
            "check-config",
            "--accelerators",
            "--accelerator-root",
            "/x",
        ])) {
            Ok(Command::CheckConfig(a)) => {
                assert!(a.accelerators);
                assert_eq!(a.accelerator_root, std::path::PathBuf::from("/x"));
            }
            _ => panic!("check-config did not parse"),
        }
    }

    fn server(v: &[&str]) -> ServerArgs {
        match parse(args(v)) {
            Ok(Command::Server(a)) => *a,
            Ok(_) => panic!("not a server command: {v:?}"),
            Err(_) => panic!("parse failed for {v:?}"),
        }
    }

    #[test]
    fn defaults_match_k3s() {
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = dir.path().join("empty.yaml");
        std::fs::write(&cfg, "").expect("write");
        let a = server(&["kedge", "server", "--config", cfg.to_str().expect("utf8")]);
        assert_eq!(a.https_listen_port, 6443);
        assert_eq!(a.cluster_cidr.to_string(), "10.42.0.0/16");
        assert_eq!(a.service_cidr.to_string(), "10.43.0.0/16");
        assert_eq!(a.write_kubeconfig, PathBuf::from("/etc/kedge/kedge.yaml"));
        assert_eq!(a.default_not_ready_toleration_seconds, 10);
        assert_eq!(a.default_unreachable_toleration_seconds, 10);
        assert_eq!(
            a.node_monitor_grace_period,
            std::time::Duration::from_secs(15)
        );
    }

    #[test]
    fn durations() {
        use std::time::Duration;
        assert_eq!(parse_duration("40s"), Ok(Duration::from_secs(40)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn bad_values_fail() {
        assert!(parse(args(&["kedge", "server", "--https-listen-port", "99999"])).is_err());
        assert!(parse(args(&["kedge", "server", "--service-cidr", "nope"])).is_err());
        assert!(parse(args(&["kedge", "server", "--no-such-flag"])).is_err());
        assert!(parse(args(&[
            "kedge",
            "server",
            "--config",
            "/nonexistent/kedge.yaml"
        ]))
        .is_err());
        assert!(parse(args(&["kedge", "server", "--write-kubeconfig-mode", "999"])).is_err());
    }

    #[test]
    fn an_agent_shares_the_config_file_and_skips_server_only_keys() {
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = dir.path().join("c.yaml");
        std::fs::write(
            &cfg,
            "server: https://10.0.0.1:6443\nnode-label: [a=b]\ntls-san: [x.example]\n",
        )
        .expect("write");
        let c = cfg.to_str().expect("utf8");
        match parse(args(&["kedge", "agent", "--config", c, "--token", "t"])) {
            Ok(Command::Agent(a)) => {
                assert_eq!(a.server.as_deref(), Some("https://10.0.0.1:6443"));
                assert_eq!(a.node.node_label, vec!["a=b"]);
                assert_eq!(a.token.as_deref(), Some("t"));
            }
            _ => panic!("agent did not parse"),
        }
        std::fs::write(&cfg, "no-such-key: 1\n").expect("write");
        assert!(parse(args(&["kedge", "agent", "--config", c])).is_err());
        // ... and a server skips the agent's keys.
        std::fs::write(
            &cfg,
            "server: https://10.0.0.1:6443\nhttps-listen-port: 7443\n",
        )
        .expect("write");
        assert_eq!(
            server(&["kedge", "server", "--config", c]).https_listen_port,
            7443
        );
    }

    #[test]
    fn booleans_in_the_config_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = dir.path().join("c.yaml");
        let c = cfg.to_str().expect("utf8");
        std::fs::write(
            &cfg,
            "fail-pods-on-device-failure: false\ndisable-agent: false\n",
        )
        .expect("write");
        let a = server(&["kedge", "server", "--config", c]);
        assert!(!a.node.fail_pods_on_device_failure);
        assert!(!a.disable_agent);
        std::fs::write(
            &cfg,
            "fail-pods-on-device-failure: true\ndisable-agent: true\n",
        )
        .expect("write");
        let a = server(&["kedge", "server", "--config", c]);
        assert!(a.node.fail_pods_on_device_failure);
        assert!(a.disable_agent);
    }

    #[test]
    fn config_file_then_flags_win() {
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = dir.path().join("c.yaml");
        std::fs::write(&cfg, "https-listen-port: 7443\ntls-san:\n  - a.example\n  - 10.1.2.3\ndisable-agent: true\nnode-name: n1\n").expect("write");
        let c = cfg.to_str().expect("utf8");
        let a = server(&["kedge", "server", "--config", c]);
        assert_eq!(a.https_listen_port, 7443);
        assert_eq!(a.tls_san, vec!["a.example", "10.1.2.3"]);
        assert!(a.disable_agent);
        let a = server(&[
            "kedge",
            "server",
            "--config",
            c,
            "--https-listen-port",
            "8443",
        ]);
        assert_eq!(a.https_listen_port, 8443);
        assert_eq!(a.node.node_name.as_deref(), Some("n1"));
        std::fs::write(&cfg, "bogus-key: 1\n").expect("write");
        assert!(parse(args(&["kedge", "server", "--config", c])).is_err());
    }
}
