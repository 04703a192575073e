//! `kedge certificate check` and `kedge certificate rotate`, as K3s's
//! `k3s certificate` does them.
//!
//! Leaf certificates are renewed by kedge itself at every start when they are
//! within 90 days of their expiry (keeping their keys); `rotate` is for when new
//! keys are wanted too. It must run while kedge is stopped: it copies
//! `<data-dir>/server/tls` (and the chosen agent files) to a `tls-<unix time>`
//! folder beside it, then removes the chosen leaf certificates and keys, so that
//! the next start issues new ones. The CAs are never touched: they live ten
//! years and every certificate and kubeconfig in the cluster trusts them.
//!
//! Services (K3s's names; `--service` picks some, the default is all that the
//! data dir has: a server's, or only `kubelet` on an agent):
//! - `admin`: the admin client certificate, embedded in the kubeconfig that
//!   `kedge server` rewrites at every start;
//! - `api-server`: the API server's serving certificate and its client
//!   certificate for node agents;
//! - `kubelet`: the node agent's serving certificate and, on a joined agent,
//!   its client certificate (a joined agent asks the server again).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use kedge_pki::{CertificateInfo, CertificateStatus, CERTIFICATE_RENEW_BEFORE};

#[derive(Args, Debug, Clone)]
pub struct CertificateArgs {
    #[command(subcommand)]
    pub command: CertificateCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum CertificateCommand {
    /// List the certificates under the data dir and when they expire
    Check(CheckArgs),
    /// Back up, then remove leaf certificates and keys so that the next start issues new ones (stop kedge first)
    Rotate(RotateArgs),
}

#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// kedge's data dir
    #[arg(long, short = 'd', default_value = "/var/lib/kedge")]
    pub data_dir: PathBuf,
    /// Only these services' certificates: admin, api-server, kubelet, certificate-authority (repeatable or comma-separated)
    #[arg(long, short = 's', value_delimiter = ',')]
    pub service: Vec<String>,
    /// Output format
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    pub output: Output,
}

#[derive(Args, Debug, Clone)]
pub struct RotateArgs {
    /// kedge's data dir
    #[arg(long, short = 'd', default_value = "/var/lib/kedge")]
    pub data_dir: PathBuf,
    /// Only these services' certificates: admin, api-server, kubelet (repeatable or comma-separated)
    #[arg(long, short = 's', value_delimiter = ',')]
    pub service: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Table,
    Json,
    Yaml,
}

/// What rotate can renew, by K3s's service names.
const SERVICES: [&str; 3] = ["admin", "api-server", "kubelet"];
/// Check also lists the CAs, under K3s's name for them.
const CERTIFICATE_AUTHORITY: &str = "certificate-authority";

pub fn run(args: &CertificateArgs) -> ExitCode {
    let result = match &args.command {
        CertificateCommand::Check(a) => check(a),
        CertificateCommand::Rotate(a) => rotate(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kedge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn server_tls(data_dir: &Path) -> PathBuf {
    data_dir.join("server").join("tls")
}

fn agent_tls(data_dir: &Path) -> PathBuf {
    data_dir.join("agent").join("tls")
}

/// The certificate and key files of `service`, certificates first.
fn files_for(data_dir: &Path, service: &str) -> Vec<PathBuf> {
    let server = server_tls(data_dir);
    let agent = agent_tls(data_dir);
    let pair = |dir: &Path, cert: &str, key: &str| [dir.join(cert), dir.join(key)];
    match service {
        "admin" => pair(&server, kedge_pki::ADMIN_CERT, kedge_pki::ADMIN_KEY).to_vec(),
        "api-server" => [
            pair(&server, kedge_pki::SERVING_CERT, kedge_pki::SERVING_KEY),
            pair(
                &server,
                kedge_pki::KUBELET_CLIENT_CERT,
                kedge_pki::KUBELET_CLIENT_KEY,
            ),
        ]
        .concat(),
        "kubelet" => [
            pair(
                &agent,
                kedge_pki::KUBELET_SERVING_CERT,
                kedge_pki::KUBELET_SERVING_KEY,
            ),
            // A joined agent's client certificate (`kedge agent`).
            pair(&agent, "client-kubelet.crt", "client-kubelet.key"),
        ]
        .concat(),
        CERTIFICATE_AUTHORITY => vec![
            server.join(kedge_pki::SERVER_CA_CERT),
            server.join(kedge_pki::CLIENT_CA_CERT),
            // The copies a joined agent keeps.
            agent.join(kedge_pki::SERVER_CA_CERT),
            agent.join(kedge_pki::CLIENT_CA_CERT),
        ],
        _ => Vec::new(),
    }
}

/// The services asked for, checked; by default every service this data dir has
/// (K3s: a server's and an agent's when `<data-dir>/server` exists, else the agent's).
fn services(data_dir: &Path, asked: &[String], allow_ca: bool) -> Result<Vec<String>> {
    if asked.is_empty() {
        let mut all: Vec<String> = if data_dir.join("server").is_dir() {
            SERVICES.iter().map(|s| s.to_string()).collect()
        } else {
            vec!["kubelet".to_string()]
        };
        if allow_ca {
            all.push(CERTIFICATE_AUTHORITY.to_string());
        }
        return Ok(all);
    }
    let mut out = Vec::new();
    for s in asked.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        if s == CERTIFICATE_AUTHORITY && !allow_ca {
            bail!(
                "the CA certificates are not rotated by 'kedge certificate rotate': they are valid \
                 for 10 years and every certificate and kubeconfig of the cluster trusts them"
            );
        }
        if !SERVICES.contains(&s) && s != CERTIFICATE_AUTHORITY {
            bail!(
                "service {s:?} is not recognized: kedge's services are {}{}",
                SERVICES.join(", "),
                if allow_ca {
                    format!(" and {CERTIFICATE_AUTHORITY}")
                } else {
                    String::new()
                }
            );
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    if out.is_empty() {
        bail!("--service names no service");
    }
    Ok(out)
}

/// One certificate as `check` reports it.
struct Row {
    filename: String,
    info: CertificateInfo,
    status: CertificateStatus,
    residual: i64,
}

fn check(args: &CheckArgs) -> Result<()> {
    let services = services(&args.data_dir, &args.service, true)?;
    let now = SystemTime::now();
    let now_unix = kedge_pki::unix_seconds(now);
    let mut rows = Vec::new();
    for service in &services {
        for file in files_for(&args.data_dir, service) {
            if file.extension().and_then(|e| e.to_str()) != Some("crt") {
                continue;
            }
            let pem = match std::fs::read_to_string(&file) {
                Ok(p) => p,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
            };
            let infos = kedge_pki::certificates_in(&pem, &file.display().to_string())
                .with_context(|| format!("{} is not a usable certificate", file.display()))?;
            let filename = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            for info in infos {
                rows.push(Row {
                    filename: filename.clone(),
                    status: info.status(now, CERTIFICATE_RENEW_BEFORE),
                    residual: info.not_after - now_unix,
                    info,
                });
            }
        }
    }
    if rows.is_empty() {
        bail!(
            "no certificates under {} (is this kedge's --data-dir? a server keeps them in \
             server/tls, an agent in agent/tls)",
            args.data_dir.display()
        );
    }
    print!("{}", render(&rows, args.output)?);
    Ok(())
}

/// When K3s shows the notBefore instead of the notAfter: a certificate not yet valid.
fn shown_time(row: &Row) -> i64 {
    if row.status == CertificateStatus::NotYetValid {
        row.info.not_before
    } else {
        row.info.not_after
    }
}

fn render(rows: &[Row], output: Output) -> Result<String> {
    let mut out = String::new();
    match output {
        Output::Text => {
            let days = CERTIFICATE_RENEW_BEFORE.as_secs() / 86_400;
            for r in rows {
                let usages = r.info.usages.join(",");
                let at = kedge_pki::format_rfc3339(shown_time(r));
                let (f, s) = (&r.filename, &r.info.subject);
                out.push_str(&match r.status {
                    CertificateStatus::NotYetValid => {
                        format!("{f}: certificate {s} ({usages}) is not valid before {at}\n")
                    }
                    CertificateStatus::Expired => {
                        format!("{f}: certificate {s} ({usages}) expired at {at}\n")
                    }
                    CertificateStatus::Warning => format!(
                        "{f}: certificate {s} ({usages}) will expire within {days} days at {at}\n"
                    ),
                    CertificateStatus::Ok => {
                        format!("{f}: certificate {s} ({usages}) is ok, expires at {at}\n")
                    }
                });
            }
        }
        Output::Table => {
            let header = [
                "FILENAME",
                "SUBJECT",
                "USAGES",
                "EXPIRES",
                "RESIDUAL TIME",
                "STATUS",
            ];
            let mut table: Vec<[String; 6]> = vec![
                header.map(str::to_string),
                header.map(|h| "-".repeat(h.len())),
            ];
            for r in rows {
                table.push([
                    r.filename.clone(),
                    r.info.subject.clone(),
                    r.info.usages.join(","),
                    kedge_pki::format_table_time(shown_time(r)),
                    humanize(r.residual),
                    r.status.as_str().to_string(),
                ]);
            }
            let mut widths = [0usize; 6];
            for line in &table {
                for (w, cell) in widths.iter_mut().zip(line) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            out.push('\n');
            for line in &table {
                let cells: Vec<String> = line
                    .iter()
                    .zip(widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                out.push_str(cells.join("   ").trim_end());
                out.push('\n');
            }
        }
        Output::Json | Output::Yaml => {
            // K3s's shape: Go's field names (lower-cased by its YAML encoder),
            // the residual time in nanoseconds as Go encodes a time.Duration.
            let yaml = output == Output::Yaml;
            let key = |k: &str| {
                if yaml {
                    k.to_ascii_lowercase()
                } else {
                    k.to_string()
                }
            };
            let certs: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    let mut m = serde_json::Map::new();
                    m.insert(key("Filename"), r.filename.clone().into());
                    m.insert(key("Subject"), r.info.subject.clone().into());
                    m.insert(key("Issuer"), r.info.issuer.clone().into());
                    m.insert(key("Usages"), r.info.usages.clone().into());
                    m.insert(
                        key("ExpiryTime"),
                        kedge_pki::format_rfc3339(shown_time(r)).into(),
                    );
                    m.insert(
                        key("ResidualTime"),
                        r.residual.saturating_mul(1_000_000_000).into(),
                    );
                    m.insert(key("Status"), r.status.as_str().into());
                    serde_json::Value::Object(m)
                })
                .collect();
            let mut doc = serde_json::Map::new();
            doc.insert(key("Certificates"), certs.into());
            let doc = serde_json::Value::Object(doc);
            if yaml {
                out = serde_yaml::to_string(&doc).context("encoding YAML")?;
            } else {
                out = serde_json::to_string(&doc).context("encoding JSON")?;
                out.push('\n');
            }
        }
    }
    Ok(out)
}

/// A duration in seconds the way a person says it: "10 years", "3 months", "5 days".
fn humanize(seconds: i64) -> String {
    const MINUTE: i64 = 60;
    const HOUR: i64 = 60 * MINUTE;
    const DAY: i64 = 24 * HOUR;
    let n = seconds.unsigned_abs() as i64;
    let (count, unit) = if n < MINUTE {
        (n, "second")
    } else if n < HOUR {
        (n / MINUTE, "minute")
    } else if n < DAY {
        (n / HOUR, "hour")
    } else if n < 14 * DAY {
        (n / DAY, "day")
    } else if n < 60 * DAY {
        (n / (7 * DAY), "week")
    } else if n < 360 * DAY {
        (n / (30 * DAY), "month")
    } else {
        // A year-long certificate checked right after issue is "1 year", not "0 years".
        ((n + 5 * DAY) / (365 * DAY), "year")
    };
    let plural = if count == 1 { "" } else { "s" };
    let ago = if seconds < 0 { " ago" } else { "" };
    format!("{count} {unit}{plural}{ago}")
}

fn rotate(args: &RotateArgs) -> Result<()> {
    let data_dir = &args.data_dir;
    let db = crate::backup::db_path(data_dir);
    if let Some(pid) = crate::backup::process_holding(&db) {
        bail!(
            "kedge is running on {} (process {pid} has {} open): stop it first \
             (systemctl stop kedge), then rotate",
            data_dir.display(),
            db.display()
        );
    }
    let pid_file = crate::agent::pid_file(data_dir);
    if let Some(pid) = crate::backup::process_holding(&pid_file) {
        bail!(
            "kedge agent is running on {} (process {pid} holds {}): stop it first \
             (systemctl stop kedge-agent), then rotate",
            data_dir.display(),
            pid_file.display()
        );
    }
    let services = services(data_dir, &args.service, false)?;
    let files: Vec<(String, PathBuf)> = services
        .iter()
        .flat_map(|s| files_for(data_dir, s).into_iter().map(|f| (s.clone(), f)))
        .filter(|(_, f)| f.exists())
        .collect();
    if files.is_empty() {
        bail!(
            "no certificates of {} under {} (is this kedge's --data-dir?)",
            services.join(", "),
            data_dir.display()
        );
    }

    let backup = backup_dir(data_dir)?;
    let server = server_tls(data_dir);
    if server.is_dir() {
        copy_dir(&server, &backup)?;
    }
    for (_, file) in &files {
        if !file.starts_with(&server) {
            let name = file
                .file_name()
                .context("a certificate path without a name")?;
            copy_file(file, &backup.join(name))?;
        }
    }
    sync_dir(&backup)?;

    for (service, file) in &files {
        std::fs::remove_file(file).with_context(|| format!("removing {}", file.display()))?;
        println!("{service}: removed {}", file.display());
    }
    for dir in [server, agent_tls(data_dir)] {
        if dir.is_dir() {
            sync_dir(&dir)?;
        }
    }
    println!(
        "backed up the certificates to {}; start kedge to issue new certificates and keys for {}",
        backup.display(),
        services.join(", ")
    );
    Ok(())
}

/// A new, private `tls-<unix time>` folder: beside the server's TLS folder, or
/// the agent's on an agent (as K3s does).
fn backup_dir(data_dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let parent = if server_tls(data_dir).is_dir() {
        data_dir.join("server")
    } else {
        data_dir.join("agent")
    };
    let stamp = kedge_pki::unix_seconds(SystemTime::now());
    for n in 0..100 {
        let name = if n == 0 {
            format!("tls-{stamp}")
        } else {
            format!("tls-{stamp}-{n}")
        };
        let dir = parent.join(name);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("creating the backup folder {}", dir.display()))
            }
        }
    }
    bail!(
        "cannot find a free backup folder name under {}",
        parent.display()
    )
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry.with_context(|| format!("reading {}", from.display()))?;
        let path = entry.path();
        let target = to.join(entry.file_name());
        let kind = entry
            .file_type()
            .with_context(|| format!("reading {}", path.display()))?;
        if kind.is_dir() {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&target)
                .with_context(|| format!("creating {}", target.display()))?;
            copy_dir(&path, &target)?;
        } else if kind.is_file() {
            copy_file(&path, &target)?;
        }
    }
    Ok(())
}

/// Copies a file with its permissions, and syncs the copy.
fn copy_file(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", to.display()))
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn residual_times_read_like_k3s() {
        let day = 86_400;
        assert_eq!(humanize(365 * day - 60), "1 year");
        assert_eq!(humanize(3650 * day), "10 years");
        assert_eq!(humanize(89 * day), "2 months");
        assert_eq!(humanize(20 * day), "2 weeks");
        assert_eq!(humanize(3 * day), "3 days");
        assert_eq!(humanize(2 * 3600), "2 hours");
        assert_eq!(humanize(1), "1 second");
        assert_eq!(humanize(-2 * day), "2 days ago");
    }

    #[test]
    fn services_default_to_what_the_data_dir_has() {
        let tmp = tempfile::tempdir().expect("tmp");
        assert_eq!(
            services(tmp.path(), &[], false).expect("agent"),
            ["kubelet"]
        );
        std::fs::create_dir_all(tmp.path().join("server")).expect("mkdir");
        assert_eq!(
            services(tmp.path(), &[], false).expect("server"),
            ["admin", "api-server", "kubelet"]
        );
        assert!(services(tmp.path(), &[], true)
            .expect("check")
            .contains(&CERTIFICATE_AUTHORITY.to_string()));
        let asked = vec!["admin".to_string(), "admin".into(), " kubelet ".into()];
        assert_eq!(
            services(tmp.path(), &asked, false).expect("asked"),
            ["admin", "kubelet"]
        );
        let err = services(tmp.path(), &["etcd".into()], false).expect_err("etcd");
        assert!(err.to_string().contains("not recognized"), "{err}");
        let err = services(tmp.path(), &[CERTIFICATE_AUTHORITY.into()], false).expect_err("ca");
        assert!(err.to_string().contains("10 years"), "{err}");
    }

    #[test]
    fn rotate_backs_up_and_removes_only_the_chosen_leaves() {
        let tmp = tempfile::tempdir().expect("tmp");
        let data = tmp.path();
        let tls = server_tls(data);
        let pki = kedge_pki::ensure_pki(&tls, &[]).expect("pki");
        kedge_pki::ensure_kubelet_client_cert(&tls).expect("kubelet client");
        kedge_pki::ensure_kubelet_serving_cert(&agent_tls(data), &tls, "n1", &[])
            .expect("kubelet serving");

        rotate(&RotateArgs {
            data_dir: data.to_path_buf(),
            service: vec!["admin".into(), "kubelet".into()],
        })
        .expect("rotate");

        for gone in [
            tls.join(kedge_pki::ADMIN_CERT),
            tls.join(kedge_pki::ADMIN_KEY),
            agent_tls(data).join(kedge_pki::KUBELET_SERVING_CERT),
            agent_tls(data).join(kedge_pki::KUBELET_SERVING_KEY),
        ] {
            assert!(!gone.exists(), "{}", gone.display());
        }
        for kept in [
            kedge_pki::SERVER_CA_CERT,
            kedge_pki::SERVER_CA_KEY,
            kedge_pki::CLIENT_CA_CERT,
            kedge_pki::CLIENT_CA_KEY,
            kedge_pki::SERVING_CERT,
            kedge_pki::KUBELET_CLIENT_CERT,
        ] {
            assert!(tls.join(kept).exists(), "{kept}");
        }
        let backups: Vec<PathBuf> = std::fs::read_dir(data.join("server"))
            .expect("server dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("tls-"))
            })
            .collect();
        assert_eq!(backups.len(), 1, "{backups:?}");
        let backup = &backups[0];
        assert_eq!(
            std::fs::read_to_string(backup.join(kedge_pki::ADMIN_CERT)).expect("backup"),
            pki.admin_cert_pem
        );
        assert!(backup.join(kedge_pki::KUBELET_SERVING_KEY).exists());
        assert!(backup.join(kedge_pki::CLIENT_CA_KEY).exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(backup), 0o700);
        assert_eq!(mode(&backup.join(kedge_pki::ADMIN_KEY)), 0o600);

        // The next start issues a new admin certificate and key from the same CA.
        let again = kedge_pki::ensure_pki(&tls, &[]).expect("pki again");
        assert_ne!(again.admin_cert_pem, pki.admin_cert_pem);
        assert_ne!(again.admin_key_pem, pki.admin_key_pem);
        assert_eq!(again.client_ca_cert_pem, pki.client_ca_cert_pem);
        assert_eq!(again.serving_cert_pem, pki.serving_cert_pem);

        // Nothing left of a service: a clear error, and no empty backup.
        let err = rotate(&RotateArgs {
            data_dir: tmp.path().join("nowhere"),
            service: Vec::new(),
        })
        .expect_err("empty data dir");
        assert!(err.to_string().contains("--data-dir"), "{err}");
    }

    #[test]
    fn check_lists_leaves_and_cas_in_every_format() {
        let tmp = tempfile::tempdir().expect("tmp");
        let tls = server_tls(tmp.path());
        kedge_pki::ensure_pki(&tls, &[]).expect("pki");
        let (short, _) = kedge_pki::issue_client_cert_valid_for(
            &tls,
            "system:admin",
            &["system:masters".into()],
            Duration::from_secs(10 * 86_400),
        )
        .expect("short");
        std::fs::write(tls.join(kedge_pki::ADMIN_CERT), short).expect("write");
        let now = SystemTime::now();
        let mut rows = Vec::new();
        for file in [kedge_pki::ADMIN_CERT, kedge_pki::SERVER_CA_CERT] {
            let pem = std::fs::read_to_string(tls.join(file)).expect("read");
            for info in kedge_pki::certificates_in(&pem, file).expect("parse") {
                rows.push(Row {
                    filename: file.to_string(),
                    status: info.status(now, CERTIFICATE_RENEW_BEFORE),
                    residual: info.not_after - kedge_pki::unix_seconds(now),
                    info,
                });
            }
        }
        let text = render(&rows, Output::Text).expect("text");
        assert!(
            text.contains("client-admin.crt: certificate system:admin (ClientAuth) will expire within 90 days at "),
            "{text}"
        );
        assert!(
            text.contains("server-ca.crt: certificate kedge-server-ca@"),
            "{text}"
        );
        assert!(text.contains("(CertSign) is ok, expires at "), "{text}");

        let table = render(&rows, Output::Table).expect("table");
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "");
        assert!(lines[1].starts_with("FILENAME"), "{table}");
        assert!(lines[1].contains("RESIDUAL TIME"), "{table}");
        assert!(lines[3].contains("system:admin") && lines[3].ends_with("WARNING"));
        // Ten days from issue, give or take the second that passed.
        assert!(
            lines[3].contains("10 days") || lines[3].contains("9 days"),
            "{table}"
        );
        assert!(
            lines[4].contains("10 years") && lines[4].ends_with("OK"),
            "{table}"
        );

        let json: serde_json::Value =
            serde_json::from_str(&render(&rows, Output::Json).expect("json")).expect("parse");
        let first = &json["Certificates"][0];
        assert_eq!(first["Filename"], "client-admin.crt");
        assert_eq!(
            first["Issuer"]
                .as_str()
                .map(|s| s.starts_with("kedge-client-ca@")),
            Some(true)
        );
        assert_eq!(first["Usages"][0], "ClientAuth");
        assert_eq!(first["Status"], "WARNING");
        let ns = first["ResidualTime"].as_i64().expect("ns");
        assert!((9 * 86_400 * 1_000_000_000..=10 * 86_400 * 1_000_000_000).contains(&ns));

        let yaml: serde_yaml::Value =
            serde_yaml::from_str(&render(&rows, Output::Yaml).expect("yaml")).expect("parse");
        assert_eq!(yaml["certificates"][1]["status"], "OK");
    }
}
