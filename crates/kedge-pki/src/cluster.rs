//! The cluster's certificates on disk: create them once, reuse them after.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{KeyPair, PublicKeyData};

use crate::atomic_file::{ensure_dir, read_optional, read_required, write_atomic};
use crate::authority::{
    first_certificate, parse_certificate, CertAndKey, CertificateAuthority, LeafSpec, Usage,
    LEAF_VALIDITY,
};
use crate::error::{Error, Result};
use crate::identity::{identity_of, Identity};
use crate::inspect::{expires_before, format_rfc3339, CERTIFICATE_RENEW_BEFORE};
use crate::san::{required_serving_sans, sans_of, San};

/// CA that signs the API server's serving certificate; clients trust it.
pub const SERVER_CA_CERT: &str = "server-ca.crt";
pub const SERVER_CA_KEY: &str = "server-ca.key";
/// CA that signs client certificates; the API server trusts it.
pub const CLIENT_CA_CERT: &str = "client-ca.crt";
pub const CLIENT_CA_KEY: &str = "client-ca.key";
/// The API server's serving certificate.
pub const SERVING_CERT: &str = "serving-kube-apiserver.crt";
pub const SERVING_KEY: &str = "serving-kube-apiserver.key";
/// The cluster administrator's client certificate (`system:admin` in `system:masters`).
pub const ADMIN_CERT: &str = "client-admin.crt";
pub const ADMIN_KEY: &str = "client-admin.key";

/// Common name of the API server's serving certificate.
pub const SERVING_COMMON_NAME: &str = "kube-apiserver";
/// User of the admin client certificate.
pub const ADMIN_USER: &str = "system:admin";
/// Group of the admin client certificate; Kubernetes' RBAC grants it everything.
pub const ADMIN_GROUP: &str = "system:masters";

pub(crate) const DIR_MODE: u32 = 0o700;
const KEY_MODE: u32 = 0o600;
const CERT_MODE: u32 = 0o644;

/// All PEM material of a cluster, as loaded from or written to `<data-dir>/server/tls`.
#[derive(Debug, Clone)]
pub struct ClusterPki {
    pub server_ca_cert_pem: String,
    pub client_ca_cert_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
}

/// Creates the cluster PKI under `tls_dir` on first use, and loads it afterwards.
///
/// The CAs are never replaced. A leaf certificate (serving or admin) is issued again
/// from its CA when it is missing, unreadable, does not match its key, was not
/// signed by the current CA, expires within 90 days ([`crate::CERTIFICATE_RENEW_BEFORE`]),
/// names the wrong subject, or (serving certificate) lacks one of the required
/// names: the K3s defaults, the loopback addresses, this machine's hostname and
/// `sans`. A re-issued serving certificate keeps the names its predecessor had, so
/// names only accumulate. As in K3s, a renewal keeps the private key when it is
/// intact and belongs to the old certificate; only a missing or broken key is
/// replaced (`kedge certificate rotate` removes keys to get new ones).
pub fn ensure_pki(tls_dir: &Path, sans: &[String]) -> Result<ClusterPki> {
    // Reject bad names before anything is written.
    let serving_sans = required_serving_sans(sans)?;
    ensure_dir(tls_dir, Some(DIR_MODE))?;

    let server_ca = load_or_generate_ca(tls_dir, SERVER_CA_CERT, SERVER_CA_KEY, "kedge-server-ca")?;
    let client_ca = load_or_generate_ca(tls_dir, CLIENT_CA_CERT, CLIENT_CA_KEY, "kedge-client-ca")?;

    let serving = ensure_leaf(
        tls_dir,
        SERVING_CERT,
        SERVING_KEY,
        &server_ca,
        LeafSpec {
            common_name: SERVING_COMMON_NAME,
            organizations: &[],
            sans: serving_sans.into_iter().collect(),
            usage: Usage::Server,
            validity: LEAF_VALIDITY,
        },
    )?;
    let admin_groups = [ADMIN_GROUP.to_string()];
    let admin = ensure_leaf(
        tls_dir,
        ADMIN_CERT,
        ADMIN_KEY,
        &client_ca,
        LeafSpec {
            common_name: ADMIN_USER,
            organizations: &admin_groups,
            sans: Vec::new(),
            usage: Usage::Client,
            validity: LEAF_VALIDITY,
        },
    )?;

    Ok(ClusterPki {
        server_ca_cert_pem: server_ca.cert_pem().to_string(),
        client_ca_cert_pem: client_ca.cert_pem().to_string(),
        serving_cert_pem: serving.cert_pem,
        serving_key_pem: serving.key_pem,
        admin_cert_pem: admin.cert_pem,
        admin_key_pem: admin.key_pem,
    })
}

/// Signs a new client certificate for `user` in `groups` with the client CA in
/// `tls_dir`, valid one year. Returns (certificate PEM, key PEM); writes nothing.
pub fn issue_client_cert(
    tls_dir: &Path,
    user: &str,
    groups: &[String],
) -> Result<(String, String)> {
    issue_client_cert_valid_for(tls_dir, user, groups, LEAF_VALIDITY.unsigned_abs())
}

/// [`issue_client_cert`] with another lifetime than the default year (K3s lets
/// `CATTLE_NEW_SIGNED_CERT_EXPIRATION_DAYS` change it; tests make short-lived
/// certificates with it).
pub fn issue_client_cert_valid_for(
    tls_dir: &Path,
    user: &str,
    groups: &[String],
    validity: std::time::Duration,
) -> Result<(String, String)> {
    let validity = time::Duration::try_from(validity).map_err(|_| Error::InvalidValidity {
        reason: format!("{validity:?} is too long"),
    })?;
    if validity <= time::Duration::ZERO {
        return Err(Error::InvalidValidity {
            reason: "a certificate must be valid for some time".into(),
        });
    }
    if user.is_empty() {
        return Err(Error::InvalidSubject {
            reason: "empty user name".into(),
        });
    }
    let cert_path = tls_dir.join(CLIENT_CA_CERT);
    let key_path = tls_dir.join(CLIENT_CA_KEY);
    let ca = CertificateAuthority::load(
        &read_required(&cert_path)?,
        &read_required(&key_path)?,
        &cert_path,
        &key_path,
    )?;
    let issued = ca.issue(&LeafSpec {
        common_name: user,
        organizations: groups,
        sans: Vec::new(),
        usage: Usage::Client,
        validity,
    })?;
    Ok((issued.cert_pem, issued.key_pem))
}

pub(crate) fn load_or_generate_ca(
    dir: &Path,
    cert_name: &str,
    key_name: &str,
    name_prefix: &str,
) -> Result<CertificateAuthority> {
    let cert_path = dir.join(cert_name);
    let key_path = dir.join(key_name);
    match (read_optional(&cert_path)?, read_optional(&key_path)?) {
        (Some(cert), Some(key)) => CertificateAuthority::load(&cert, &key, &cert_path, &key_path),
        (None, None) => {
            let unix = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            let (ca, key_pem) = CertificateAuthority::generate(&format!("{name_prefix}@{unix}"))?;
            write_atomic(&key_path, key_pem.as_bytes(), KEY_MODE)?;
            write_atomic(&cert_path, ca.cert_pem().as_bytes(), CERT_MODE)?;
            tracing::info!(cert = %cert_path.display(), "generated certificate authority");
            Ok(ca)
        }
        _ => Err(Error::IncompleteCa {
            cert: cert_path,
            key: key_path,
        }),
    }
}

/// Returns the leaf stored as `cert_name`/`key_name`, issuing it again when it no
/// longer fits `spec` (see [`ensure_pki`]).
pub(crate) fn ensure_leaf(
    dir: &Path,
    cert_name: &str,
    key_name: &str,
    ca: &CertificateAuthority,
    mut spec: LeafSpec<'_>,
) -> Result<CertAndKey> {
    let cert_path = dir.join(cert_name);
    let key_path = dir.join(key_name);
    let stored = match (read_optional(&cert_path)?, read_optional(&key_path)?) {
        (Some(cert_pem), Some(key_pem)) => Some(CertAndKey { cert_pem, key_pem }),
        _ => None,
    };

    let (reason, kept_key) = match &stored {
        None => ("it does not exist yet".to_string(), None),
        Some(stored) => {
            let what = cert_path.display().to_string();
            match inspect_leaf(stored, ca, &spec, &what) {
                Ok(StoredLeaf::Fits) => return Ok(stored.clone()),
                Ok(StoredLeaf::Reissue { reason, sans, key }) => {
                    // Keep the names the old certificate had: other parties may rely on them.
                    let wanted: BTreeSet<San> = spec.sans.drain(..).chain(sans).collect();
                    spec.sans = wanted.into_iter().collect();
                    (reason, key)
                }
                Err(e) => (format!("it cannot be read ({e})"), None),
            }
        }
    };

    let key_kept = kept_key.is_some();
    let issued = match (kept_key, &stored) {
        (Some(key), Some(stored)) => {
            // The key file stays as it is; only the certificate changes.
            let issued = ca.issue_for_key(&spec, *key)?;
            write_atomic(&cert_path, issued.cert_pem.as_bytes(), CERT_MODE)?;
            CertAndKey {
                cert_pem: issued.cert_pem,
                key_pem: stored.key_pem.clone(),
            }
        }
        _ => {
            let issued = ca.issue(&spec)?;
            // Key first: a crash in between leaves a key that fails the match check next time.
            write_atomic(&key_path, issued.key_pem.as_bytes(), KEY_MODE)?;
            write_atomic(&cert_path, issued.cert_pem.as_bytes(), CERT_MODE)?;
            issued
        }
    };
    let not_after = first_certificate(&issued.cert_pem, "issued certificate")
        .and_then(|der| {
            parse_certificate(&der, "issued certificate")
                .map(|c| format_rfc3339(c.validity().not_after.timestamp()))
        })
        .unwrap_or_default();
    if stored.is_some() {
        tracing::info!(
            cert = %cert_path.display(),
            %reason,
            %not_after,
            key = if key_kept { "kept" } else { "new" },
            "renewed certificate"
        );
    } else {
        tracing::info!(cert = %cert_path.display(), %not_after, "issued certificate");
    }
    Ok(issued)
}

enum StoredLeaf {
    Fits,
    /// Issue again, with at least `sans` besides the required names, for `key`
    /// when the old key is intact (else for a new one).
    Reissue {
        reason: String,
        sans: BTreeSet<San>,
        key: Option<Box<KeyPair>>,
    },
}

fn inspect_leaf(
    stored: &CertAndKey,
    ca: &CertificateAuthority,
    spec: &LeafSpec<'_>,
    what: &str,
) -> Result<StoredLeaf> {
    let der = first_certificate(&stored.cert_pem, what)?;
    let cert = parse_certificate(&der, what)?;
    let key = KeyPair::from_pem(&stored.key_pem).map_err(|source| Error::LoadKey {
        what: what.to_string(),
        source,
    })?;
    let sans = sans_of(&cert, what)?;

    if cert.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
        return Ok(StoredLeaf::Reissue {
            reason: "it does not match its private key".into(),
            sans,
            key: None,
        });
    }
    let reissue = |reason: String| {
        Ok(StoredLeaf::Reissue {
            reason,
            sans: sans.clone(),
            key: Some(Box::new(key)),
        })
    };
    if !ca.signed(&cert) {
        return reissue("it was not signed by the current CA".into());
    }
    if expires_before(
        &cert,
        std::time::SystemTime::now() + CERTIFICATE_RENEW_BEFORE,
    ) {
        return reissue(format!(
            "it expires at {}, within {} days",
            format_rfc3339(cert.validity().not_after.timestamp()),
            CERTIFICATE_RENEW_BEFORE.as_secs() / 86_400
        ));
    }
    let want = Identity {
        user: spec.common_name.to_string(),
        groups: spec.organizations.to_vec(),
    };
    match identity_of(&cert) {
        Ok(have) if have == want => {}
        Ok(have) => {
            return reissue(format!(
                "its subject is {}/{:?}, not {}/{:?}",
                have.user, have.groups, want.user, want.groups
            ))
        }
        Err(e) => return reissue(format!("its subject is unusable ({e})")),
    }
    let missing: Vec<String> = spec
        .sans
        .iter()
        .filter(|san| !sans.contains(san))
        .map(San::to_string)
        .collect();
    if !missing.is_empty() {
        return reissue(format!("it lacks the names {}", missing.join(", ")));
    }
    Ok(StoredLeaf::Fits)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use time::Duration;

    use super::*;

    fn cert_der(pem: &str) -> Vec<u8> {
        first_certificate(pem, "test").unwrap().to_vec()
    }

    fn sans_in(pem: &str) -> BTreeSet<San> {
        let der = cert_der(pem);
        let cert = parse_certificate(&der, "test").unwrap();
        sans_of(&cert, "test").unwrap()
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn first_call_generates_everything() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("server").join("tls");
        let pki = ensure_pki(&dir, &["10.1.2.3".into(), "edge.example.com".into()]).unwrap();

        assert_eq!(mode(&dir), 0o700);
        for name in [SERVER_CA_KEY, CLIENT_CA_KEY, SERVING_KEY, ADMIN_KEY] {
            assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
        }
        for name in [SERVER_CA_CERT, CLIENT_CA_CERT, SERVING_CERT, ADMIN_CERT] {
            assert_eq!(mode(&dir.join(name)), 0o644, "{name}");
        }
        assert_eq!(
            fs::read_to_string(dir.join(SERVING_CERT)).unwrap(),
            pki.serving_cert_pem
        );
        assert_eq!(
            fs::read_to_string(dir.join(ADMIN_KEY)).unwrap(),
            pki.admin_key_pem
        );

        // CAs: names, CA flag, ten years.
        for (pem, prefix) in [
            (&pki.server_ca_cert_pem, "kedge-server-ca@"),
            (&pki.client_ca_cert_pem, "kedge-client-ca@"),
        ] {
            let der = cert_der(pem);
            let ca = parse_certificate(&der, "ca").unwrap();
            assert!(ca.is_ca());
            let cn = identity_of(&ca).unwrap().user;
            assert!(cn.starts_with(prefix), "{cn}");
            let v = ca.validity();
            let days = (v.not_after.timestamp() - v.not_before.timestamp()) / 86400;
            assert!((3650..=3651).contains(&days), "{days}");
        }

        // Serving certificate: subject, EKU, names, one year, signed by the server CA.
        let der = cert_der(&pki.serving_cert_pem);
        let serving = parse_certificate(&der, "serving").unwrap();
        assert_eq!(identity_of(&serving).unwrap().user, "kube-apiserver");
        let eku = serving.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        let sans = sans_in(&pki.serving_cert_pem);
        for name in [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "edge.example.com",
        ] {
            assert!(sans.contains(&San::Dns(name.into())), "{name}");
        }
        for ip in ["127.0.0.1", "::1", "10.1.2.3"] {
            assert!(sans.contains(&San::Ip(ip.parse().unwrap())), "{ip}");
        }
        if let Ok(host) = crate::san::hostname() {
            assert!(sans.contains(&San::Dns(host)));
        }
        let v = serving.validity();
        let days = (v.not_after.timestamp() - v.not_before.timestamp()) / 86400;
        assert!((365..=366).contains(&days), "{days}");
        let server_ca_der = cert_der(&pki.server_ca_cert_pem);
        let server_ca = parse_certificate(&server_ca_der, "ca").unwrap();
        assert!(serving
            .verify_signature(Some(server_ca.public_key()))
            .is_ok());
        assert_eq!(serving.issuer(), server_ca.subject());

        // Admin certificate: system:admin in system:masters, clientAuth, signed by the client CA.
        let der = cert_der(&pki.admin_cert_pem);
        let admin = parse_certificate(&der, "admin").unwrap();
        let eku = admin.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        let client_ca_der = cert_der(&pki.client_ca_cert_pem);
        let client_ca = parse_certificate(&client_ca_der, "ca").unwrap();
        assert!(admin.verify_signature(Some(client_ca.public_key())).is_ok());
        assert!(!admin.is_ca());
    }

    #[test]
    fn admin_identity_is_system_admin_in_system_masters() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = ensure_pki(tmp.path(), &[]).unwrap();
        let id = crate::identity_from_cert(&cert_der(&pki.admin_cert_pem)).unwrap();
        assert_eq!(
            id,
            Identity {
                user: "system:admin".into(),
                groups: vec!["system:masters".into()],
            }
        );
    }

    #[test]
    fn reload_returns_identical_material() {
        let tmp = tempfile::tempdir().unwrap();
        let sans = vec!["192.168.7.1".to_string()];
        let first = ensure_pki(tmp.path(), &sans).unwrap();
        let second = ensure_pki(tmp.path(), &sans).unwrap();
        // A subset of the names asked for first is also already covered.
        let third = ensure_pki(tmp.path(), &[]).unwrap();
        for again in [&second, &third] {
            assert_eq!(first.server_ca_cert_pem, again.server_ca_cert_pem);
            assert_eq!(first.client_ca_cert_pem, again.client_ca_cert_pem);
            assert_eq!(first.serving_cert_pem, again.serving_cert_pem);
            assert_eq!(first.serving_key_pem, again.serving_key_pem);
            assert_eq!(first.admin_cert_pem, again.admin_cert_pem);
            assert_eq!(first.admin_key_pem, again.admin_key_pem);
        }
    }

    #[test]
    fn new_san_reissues_only_the_serving_certificate() {
        let tmp = tempfile::tempdir().unwrap();
        let first = ensure_pki(tmp.path(), &["old.example.com".into()]).unwrap();
        let ca_key_before = fs::read_to_string(tmp.path().join(SERVER_CA_KEY)).unwrap();
        let second = ensure_pki(tmp.path(), &["10.9.8.7".into()]).unwrap();

        assert_ne!(first.serving_cert_pem, second.serving_cert_pem);
        // As in K3s, the key is kept: only the certificate changes.
        assert_eq!(first.serving_key_pem, second.serving_key_pem);
        assert_eq!(first.server_ca_cert_pem, second.server_ca_cert_pem);
        assert_eq!(first.client_ca_cert_pem, second.client_ca_cert_pem);
        assert_eq!(first.admin_cert_pem, second.admin_cert_pem);
        assert_eq!(first.admin_key_pem, second.admin_key_pem);
        assert_eq!(
            ca_key_before,
            fs::read_to_string(tmp.path().join(SERVER_CA_KEY)).unwrap()
        );

        let sans = sans_in(&second.serving_cert_pem);
        assert!(sans.contains(&San::Ip("10.9.8.7".parse().unwrap())));
        assert!(
            sans.contains(&San::Dns("old.example.com".into())),
            "names accumulate"
        );
        assert!(sans.contains(&San::Dns("kubernetes.default.svc".into())));

        // Still signed by the same server CA.
        let ca_der = cert_der(&second.server_ca_cert_pem);
        let ca = parse_certificate(&ca_der, "ca").unwrap();
        let der = cert_der(&second.serving_cert_pem);
        let serving = parse_certificate(&der, "serving").unwrap();
        assert!(serving.verify_signature(Some(ca.public_key())).is_ok());

        // And from now on it is stable.
        let third = ensure_pki(tmp.path(), &["10.9.8.7".into()]).unwrap();
        assert_eq!(second.serving_cert_pem, third.serving_cert_pem);
    }

    #[test]
    fn invalid_san_fails_before_writing_anything() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tls");
        let err = ensure_pki(&dir, &["not a name".into()]).unwrap_err();
        assert!(matches!(err, Error::InvalidSan { .. }), "{err}");
        assert!(!dir.exists());
    }

    #[test]
    fn ca_without_key_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        ensure_pki(tmp.path(), &[]).unwrap();
        fs::remove_file(tmp.path().join(CLIENT_CA_KEY)).unwrap();
        let err = ensure_pki(tmp.path(), &[]).unwrap_err();
        assert!(matches!(err, Error::IncompleteCa { .. }), "{err}");
    }

    #[test]
    fn mismatched_ca_key_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        ensure_pki(tmp.path(), &[]).unwrap();
        fs::copy(
            tmp.path().join(CLIENT_CA_KEY),
            tmp.path().join(SERVER_CA_KEY),
        )
        .unwrap();
        let err = ensure_pki(tmp.path(), &[]).unwrap_err();
        assert!(matches!(err, Error::CaKeyMismatch { .. }), "{err}");
    }

    #[test]
    fn broken_or_foreign_leaves_are_reissued() {
        let tmp = tempfile::tempdir().unwrap();
        let first = ensure_pki(tmp.path(), &[]).unwrap();

        // A serving key that does not belong to the certificate.
        fs::write(tmp.path().join(SERVING_KEY), &first.admin_key_pem).unwrap();
        // An admin certificate that is not PEM at all.
        fs::write(tmp.path().join(ADMIN_CERT), "garbage").unwrap();
        let second = ensure_pki(tmp.path(), &[]).unwrap();
        assert_ne!(first.serving_cert_pem, second.serving_cert_pem);
        assert_ne!(first.admin_cert_pem, second.admin_cert_pem);
        assert_eq!(first.server_ca_cert_pem, second.server_ca_cert_pem);
        assert_eq!(mode(&tmp.path().join(SERVING_KEY)), 0o600);
        // A key that belongs to another certificate is replaced, not reused.
        assert_ne!(second.serving_key_pem, first.admin_key_pem);
        assert_eq!(
            fs::read_to_string(tmp.path().join(SERVING_KEY)).unwrap(),
            second.serving_key_pem
        );

        // A serving certificate from some other CA.
        let other = tempfile::tempdir().unwrap();
        let foreign = ensure_pki(other.path(), &[]).unwrap();
        fs::write(tmp.path().join(SERVING_CERT), &foreign.serving_cert_pem).unwrap();
        fs::write(tmp.path().join(SERVING_KEY), &foreign.serving_key_pem).unwrap();
        let third = ensure_pki(tmp.path(), &[]).unwrap();
        assert_ne!(third.serving_cert_pem, foreign.serving_cert_pem);
        let ca_der = cert_der(&third.server_ca_cert_pem);
        let ca = parse_certificate(&ca_der, "ca").unwrap();
        let der = cert_der(&third.serving_cert_pem);
        let serving = parse_certificate(&der, "serving").unwrap();
        assert!(serving.verify_signature(Some(ca.public_key())).is_ok());
    }

    /// Loads the CA `cert`/`key` from `dir`.
    fn ca_in(dir: &Path, cert: &str, key: &str) -> CertificateAuthority {
        let (cert_path, key_path) = (dir.join(cert), dir.join(key));
        CertificateAuthority::load(
            &fs::read_to_string(&cert_path).unwrap(),
            &fs::read_to_string(&key_path).unwrap(),
            &cert_path,
            &key_path,
        )
        .unwrap()
    }

    /// Replaces the leaf `cert` with one valid `days` days for the same key.
    fn shorten(
        dir: &Path,
        ca: &CertificateAuthority,
        cert: &str,
        key: &str,
        spec: LeafSpec<'_>,
    ) -> String {
        let key = KeyPair::from_pem(&fs::read_to_string(dir.join(key)).unwrap()).unwrap();
        let short = ca.issue_for_key(&spec, key).unwrap();
        fs::write(dir.join(cert), &short.cert_pem).unwrap();
        short.cert_pem
    }

    fn lifetime_days(pem: &str) -> i64 {
        let der = cert_der(pem);
        let v = parse_certificate(&der, "test").unwrap().validity().clone();
        (v.not_after.timestamp() - v.not_before.timestamp()) / 86400
    }

    #[test]
    fn leaf_close_to_expiry_is_renewed_with_its_key() {
        let tmp = tempfile::tempdir().unwrap();
        let first = ensure_pki(tmp.path(), &["10.7.7.7".into()]).unwrap();
        let client_ca = ca_in(tmp.path(), CLIENT_CA_CERT, CLIENT_CA_KEY);
        let server_ca = ca_in(tmp.path(), SERVER_CA_CERT, SERVER_CA_KEY);
        let groups = [ADMIN_GROUP.to_string()];
        let short_admin = shorten(
            tmp.path(),
            &client_ca,
            ADMIN_CERT,
            ADMIN_KEY,
            LeafSpec {
                common_name: ADMIN_USER,
                organizations: &groups,
                sans: Vec::new(),
                usage: Usage::Client,
                validity: Duration::days(10),
            },
        );
        let short_serving = shorten(
            tmp.path(),
            &server_ca,
            SERVING_CERT,
            SERVING_KEY,
            LeafSpec {
                common_name: SERVING_COMMON_NAME,
                organizations: &[],
                sans: sans_in(&first.serving_cert_pem).into_iter().collect(),
                usage: Usage::Server,
                validity: Duration::days(89),
            },
        );
        assert!(crate::expires_within(&short_admin, crate::CERTIFICATE_RENEW_BEFORE).unwrap());
        let ca_files_before: Vec<Vec<u8>> =
            [SERVER_CA_CERT, SERVER_CA_KEY, CLIENT_CA_CERT, CLIENT_CA_KEY]
                .iter()
                .map(|f| fs::read(tmp.path().join(f)).unwrap())
                .collect();

        let second = ensure_pki(tmp.path(), &[]).unwrap();
        for (short, renewed) in [
            (&short_admin, &second.admin_cert_pem),
            (&short_serving, &second.serving_cert_pem),
        ] {
            assert_ne!(short, renewed);
            assert!((365..=366).contains(&lifetime_days(renewed)));
            assert!(!crate::expires_within(renewed, crate::CERTIFICATE_RENEW_BEFORE).unwrap());
        }
        // The renewed files are on disk, the keys and the CAs are untouched.
        assert_eq!(
            fs::read_to_string(tmp.path().join(ADMIN_CERT)).unwrap(),
            second.admin_cert_pem
        );
        assert_eq!(second.admin_key_pem, first.admin_key_pem);
        assert_eq!(second.serving_key_pem, first.serving_key_pem);
        let ca_files_after: Vec<Vec<u8>> =
            [SERVER_CA_CERT, SERVER_CA_KEY, CLIENT_CA_CERT, CLIENT_CA_KEY]
                .iter()
                .map(|f| fs::read(tmp.path().join(f)).unwrap())
                .collect();
        assert_eq!(ca_files_before, ca_files_after);
        // Same identity and names, still signed by the CA.
        let der = cert_der(&second.admin_cert_pem);
        let admin = parse_certificate(&der, "admin").unwrap();
        assert!(client_ca.signed(&admin));
        assert_eq!(identity_of(&admin).unwrap().groups, groups);
        assert!(sans_in(&second.serving_cert_pem).contains(&San::Ip("10.7.7.7".parse().unwrap())));
        // The kubeconfig written from it carries the renewed certificate.
        let yaml = crate::kubeconfig_yaml("https://127.0.0.1:6443", &second).unwrap();
        use base64::Engine as _;
        let renewed_b64 = base64::engine::general_purpose::STANDARD.encode(&second.admin_cert_pem);
        assert!(yaml.contains(&renewed_b64));
    }

    #[test]
    fn leaf_far_from_expiry_is_left_byte_for_byte() {
        let tmp = tempfile::tempdir().unwrap();
        ensure_pki(tmp.path(), &[]).unwrap();
        let client_ca = ca_in(tmp.path(), CLIENT_CA_CERT, CLIENT_CA_KEY);
        let groups = [ADMIN_GROUP.to_string()];
        // 91 days: just outside the renewal window.
        let admin = shorten(
            tmp.path(),
            &client_ca,
            ADMIN_CERT,
            ADMIN_KEY,
            LeafSpec {
                common_name: ADMIN_USER,
                organizations: &groups,
                sans: Vec::new(),
                usage: Usage::Client,
                validity: Duration::days(91),
            },
        );
        let names = [ADMIN_CERT, ADMIN_KEY, SERVING_CERT, SERVING_KEY];
        let before: Vec<Vec<u8>> = names
            .iter()
            .map(|f| fs::read(tmp.path().join(f)).unwrap())
            .collect();
        let again = ensure_pki(tmp.path(), &[]).unwrap();
        let after: Vec<Vec<u8>> = names
            .iter()
            .map(|f| fs::read(tmp.path().join(f)).unwrap())
            .collect();
        assert_eq!(before, after);
        assert_eq!(again.admin_cert_pem, admin);
    }

    #[test]
    fn client_cert_lifetime_can_be_chosen() {
        let tmp = tempfile::tempdir().unwrap();
        ensure_pki(tmp.path(), &[]).unwrap();
        let day = std::time::Duration::from_secs(86_400);
        let (cert, _) = issue_client_cert_valid_for(tmp.path(), "bob", &[], 10 * day).unwrap();
        assert_eq!(lifetime_days(&cert), 10);
        assert!(matches!(
            issue_client_cert_valid_for(tmp.path(), "bob", &[], std::time::Duration::ZERO),
            Err(Error::InvalidValidity { .. })
        ));
    }

    #[test]
    fn issued_client_cert_carries_user_and_all_groups() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = ensure_pki(tmp.path(), &[]).unwrap();
        let before: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();

        let groups = vec![
            "system:nodes".to_string(),
            "edge:store-17".into(),
            "dev".into(),
        ];
        let (cert_pem, key_pem) =
            issue_client_cert(tmp.path(), "system:node:gw-1", &groups).unwrap();
        let der = cert_der(&cert_pem);
        let id = crate::identity_from_cert(&der).unwrap();
        assert_eq!(id.user, "system:node:gw-1");
        assert_eq!(id.groups, groups);

        // Signed by the client CA, for client auth, matching the returned key.
        let ca_der = cert_der(&pki.client_ca_cert_pem);
        let ca = parse_certificate(&ca_der, "ca").unwrap();
        let cert = parse_certificate(&der, "client").unwrap();
        assert!(cert.verify_signature(Some(ca.public_key())).is_ok());
        assert!(
            cert.extended_key_usage()
                .unwrap()
                .unwrap()
                .value
                .client_auth
        );
        let key = KeyPair::from_pem(&key_pem).unwrap();
        assert_eq!(
            cert.public_key().subject_public_key.data.as_ref(),
            key.der_bytes()
        );

        // Writes nothing.
        let after: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(before.len(), after.len());

        // No groups at all also works.
        let (cert_pem, _) = issue_client_cert(tmp.path(), "alice", &[]).unwrap();
        let id = crate::identity_from_cert(&cert_der(&cert_pem)).unwrap();
        assert_eq!(id.user, "alice");
        assert!(id.groups.is_empty());
    }

    #[test]
    fn issue_client_cert_needs_the_client_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let err = issue_client_cert(tmp.path(), "alice", &[]).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        assert!(err.to_string().contains(CLIENT_CA_CERT), "{err}");
        ensure_pki(tmp.path(), &[]).unwrap();
        assert!(matches!(
            issue_client_cert(tmp.path(), "", &[]),
            Err(Error::InvalidSubject { .. })
        ));
    }
}
