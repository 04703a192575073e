//! `kedge certificate check` and `kedge certificate rotate` against a real
//! server's data dir, and the renewal of a leaf certificate close to its expiry
//! at start: the certificate the API server presents on its port, the admin
//! certificate in the kubeconfig it writes, and kubectl with that kubeconfig.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use common::TestServer;
use kedge_pki::CertificateInfo;

use common::kedge_with_data_dir as kedge;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn info(pem: &str) -> CertificateInfo {
    kedge_pki::certificates_in(pem, "test")
        .expect("certificate")
        .remove(0)
}

/// The certificate the server presents on `port` (read with `openssl s_client`).
fn presented_certificate(port: u16) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "localhost"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run openssl s_client (Debian package openssl)");
    let stdout = text(&out.stdout);
    let begin = stdout
        .find("-----BEGIN CERTIFICATE-----")
        .unwrap_or_else(|| panic!("no certificate from openssl: {stdout}{}", text(&out.stderr)));
    let end_marker = "-----END CERTIFICATE-----";
    let end = stdout[begin..]
        .find(end_marker)
        .expect("end of certificate")
        + begin;
    format!("{}\n", &stdout[begin..end + end_marker.len()])
}

/// (certificate PEM, key PEM) of the kubeconfig's user.
fn kubeconfig_credentials(path: &Path) -> (String, String) {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).expect("kubeconfig")).expect("yaml");
    let field = |name: &str| {
        let b64 = doc["users"][0]["user"][name].as_str().expect(name);
        text(
            &base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64"),
        )
    };
    (field("client-certificate-data"), field("client-key-data"))
}

fn kubectl_lists_namespaces(s: &TestServer) {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(s.kubeconfig())
        .args(["get", "namespaces", "-o", "name"])
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success() && text(&out.stdout).contains("namespace/default"),
        "kubectl failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_then_rotate_issues_new_leaves_and_keeps_the_cas() {
    let mut s = TestServer::start(&[]).await;
    let data = s.data_dir();
    let tls = data.join("server").join("tls");
    kubectl_lists_namespaces(&s);
    let serving_before = info(&presented_certificate(s.port));
    let (admin_before, admin_key_before) = kubeconfig_credentials(&s.kubeconfig());
    let admin_before = info(&admin_before);
    let server_ca = read(&tls, kedge_pki::SERVER_CA_CERT);
    let client_ca = read(&tls, kedge_pki::CLIENT_CA_CERT);
    let client_ca_key = read(&tls, kedge_pki::CLIENT_CA_KEY);
    assert_eq!(serving_before.subject, kedge_pki::SERVING_COMMON_NAME);
    assert_eq!(admin_before.subject, kedge_pki::ADMIN_USER);

    // Rotating under a running server is refused, and changes nothing.
    let out = kedge(&["certificate", "rotate"], &data);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "rotate ran under a live server");
    assert!(
        err.contains("kedge is running") && err.contains("stop it first"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(tls.join(kedge_pki::ADMIN_CERT).exists());

    s.stop();

    // check: every certificate with its expiry, in K3s's formats.
    let out = kedge(&["certificate", "check"], &data);
    let listed = text(&out.stdout);
    assert!(out.status.success(), "{listed}{}", text(&out.stderr));
    for file in [
        kedge_pki::ADMIN_CERT,
        kedge_pki::SERVING_CERT,
        kedge_pki::KUBELET_CLIENT_CERT,
        kedge_pki::SERVER_CA_CERT,
        kedge_pki::CLIENT_CA_CERT,
    ] {
        let line = listed
            .lines()
            .find(|l| l.starts_with(&format!("{file}: certificate ")))
            .unwrap_or_else(|| panic!("{file} not listed:\n{listed}"));
        assert!(line.contains("is ok, expires at 20"), "{line}");
    }
    let out = kedge(&["certificate", "check", "--output", "table"], &data);
    let table = text(&out.stdout);
    assert!(out.status.success());
    assert!(table.contains("FILENAME") && table.contains("RESIDUAL TIME"));
    let admin_row = table
        .lines()
        .find(|l| l.starts_with(kedge_pki::ADMIN_CERT))
        .expect("admin row");
    assert!(
        admin_row.contains("1 year") && admin_row.ends_with("OK"),
        "{admin_row}"
    );
    let ca_row = table
        .lines()
        .find(|l| l.starts_with(kedge_pki::SERVER_CA_CERT))
        .expect("CA row");
    assert!(
        ca_row.contains("10 years") && ca_row.contains("CertSign"),
        "{ca_row}"
    );
    let out = kedge(&["certificate", "check", "-o", "json"], &data);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let certs = json["Certificates"].as_array().expect("list");
    assert_eq!(certs.len(), 5, "{json}");
    assert!(certs
        .iter()
        .all(|c| c["ExpiryTime"].as_str().is_some_and(|t| t.ends_with('Z'))));

    // rotate: backs up, removes the leaves, keeps the CAs.
    let out = kedge(&["certificate", "rotate"], &data);
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    assert!(said.contains("backed up the certificates to "), "{said}");
    assert!(!tls.join(kedge_pki::ADMIN_CERT).exists());
    assert!(!tls.join(kedge_pki::SERVING_KEY).exists());
    let backup = std::fs::read_dir(data.join("server"))
        .expect("server dir")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("tls-"))
        })
        .expect("a tls-<time> backup");
    assert_eq!(
        info(&read(&backup, kedge_pki::ADMIN_CERT)).serial,
        admin_before.serial
    );

    // The next start issues new leaves from the same CAs.
    s.spawn().await;
    let serving_after = info(&presented_certificate(s.port));
    let (admin_after, admin_key_after) = kubeconfig_credentials(&s.kubeconfig());
    let admin_after = info(&admin_after);
    assert_ne!(serving_after.serial, serving_before.serial);
    assert_eq!(serving_after.issuer, serving_before.issuer);
    assert_ne!(admin_after.serial, admin_before.serial);
    assert_ne!(admin_key_after, admin_key_before, "rotate makes new keys");
    assert_eq!(admin_after.issuer, admin_before.issuer);
    assert_eq!(read(&tls, kedge_pki::SERVER_CA_CERT), server_ca);
    assert_eq!(read(&tls, kedge_pki::CLIENT_CA_CERT), client_ca);
    assert_eq!(read(&tls, kedge_pki::CLIENT_CA_KEY), client_ca_key);
    kubectl_lists_namespaces(&s);
    s.stop();

    // A service name K3s has but kedge does not, and the CAs, are refused.
    for bad in ["etcd", "certificate-authority"] {
        let out = kedge(&["certificate", "rotate", "--service", bad], &data);
        assert!(!out.status.success(), "{bad}");
        assert!(tls.join(kedge_pki::ADMIN_CERT).exists());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaf_close_to_expiry_is_renewed_at_start() {
    let mut s = TestServer::start(&[]).await;
    let data = s.data_dir();
    let tls = data.join("server").join("tls");
    s.stop();

    // An admin certificate with ten days to go, as a year-old cluster has.
    let (short, short_key) = kedge_pki::issue_client_cert_valid_for(
        &tls,
        kedge_pki::ADMIN_USER,
        &[kedge_pki::ADMIN_GROUP.to_string()],
        Duration::from_secs(10 * 86_400),
    )
    .expect("short-lived certificate");
    std::fs::write(tls.join(kedge_pki::ADMIN_KEY), &short_key).expect("key");
    std::fs::write(tls.join(kedge_pki::ADMIN_CERT), &short).expect("cert");
    let out = kedge(&["certificate", "check", "--service", "admin"], &data);
    let listed = text(&out.stdout);
    assert!(
        listed.contains(
            "client-admin.crt: certificate system:admin (ClientAuth) will expire within 90 days"
        ),
        "{listed}"
    );
    let serving_before = read(&tls, kedge_pki::SERVING_CERT);

    s.spawn().await;
    let (renewed, key) = kubeconfig_credentials(&s.kubeconfig());
    assert_ne!(renewed, short);
    assert!(
        !kedge_pki::expires_within(&renewed, kedge_pki::CERTIFICATE_RENEW_BEFORE).expect("parse")
    );
    assert_eq!(key, short_key, "renewal keeps the key, as K3s does");
    assert_eq!(read(&tls, kedge_pki::ADMIN_CERT), renewed);
    // The serving certificate was far from expiry: untouched.
    assert_eq!(read(&tls, kedge_pki::SERVING_CERT), serving_before);
    let log = s.log();
    assert!(
        log.lines()
            .any(|l| l.contains("renewed certificate") && l.contains("client-admin.crt")),
        "{log}"
    );
    kubectl_lists_namespaces(&s);
}
