//! Reading certificates back: their expiry, subject, issuer and usages.
//!
//! `kedge certificate check` lists what is found here, the start-up renewal asks
//! [`expires_within`], and so does a node agent for the credentials it was given.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;

use crate::authority::{first_certificate, parse_certificate};
use crate::error::{Error, Result};

/// Leaf certificates that expire within this window are renewed when kedge starts
/// (K3s's `CertificateRenewDays`, which was 90 days until K3s v1.33.1).
pub const CERTIFICATE_RENEW_BEFORE: Duration = Duration::from_secs(90 * 86_400);

/// Whether the first certificate in `cert_pem` has expired or expires within
/// `within` from now. An unparseable document is an error, not `true`: the caller
/// decides what a broken certificate means.
pub fn expires_within(cert_pem: &str, within: Duration) -> Result<bool> {
    let der = first_certificate(cert_pem, "certificate")?;
    let cert = parse_certificate(&der, "certificate")?;
    Ok(expires_before(&cert, SystemTime::now() + within))
}

pub(crate) fn expires_before(cert: &X509Certificate<'_>, deadline: SystemTime) -> bool {
    cert.validity().not_after.timestamp() < unix_seconds(deadline)
}

/// Seconds since the Unix epoch (negative before it).
pub fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs())
            .map(|s| -s)
            .unwrap_or(i64::MIN),
    }
}

/// What `kedge certificate check` shows about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// Subject common name (empty if it has none).
    pub subject: String,
    /// Issuer common name (empty if it has none).
    pub issuer: String,
    /// Serial number, lower-case hex with no separators.
    pub serial: String,
    /// K3s's usage names: `CertSign`, `ServerAuth`, `ClientAuth`, or `Unknown`.
    pub usages: Vec<&'static str>,
    pub is_ca: bool,
    /// notBefore, seconds since the Unix epoch.
    pub not_before: i64,
    /// notAfter, seconds since the Unix epoch.
    pub not_after: i64,
}

/// Where a certificate stands at a moment, as K3s's `certificate check` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateStatus {
    Ok,
    /// Valid, but within [`CERTIFICATE_RENEW_BEFORE`] of its expiry.
    Warning,
    Expired,
    NotYetValid,
}

impl CertificateStatus {
    /// K3s's spelling: `OK`, `WARNING`, `EXPIRED`, `NOT YET VALID`.
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateStatus::Ok => "OK",
            CertificateStatus::Warning => "WARNING",
            CertificateStatus::Expired => "EXPIRED",
            CertificateStatus::NotYetValid => "NOT YET VALID",
        }
    }
}

impl CertificateInfo {
    /// The status at `now`, warning within `warn` of the expiry.
    pub fn status(&self, now: SystemTime, warn: Duration) -> CertificateStatus {
        let now_s = unix_seconds(now);
        if now_s < self.not_before {
            CertificateStatus::NotYetValid
        } else if now_s > self.not_after {
            CertificateStatus::Expired
        } else if self.not_after < unix_seconds(now + warn) {
            CertificateStatus::Warning
        } else {
            CertificateStatus::Ok
        }
    }
}

/// Every certificate in a PEM document, in order (a file may hold a chain).
/// `what` names the document in errors.
pub fn certificates_in(pem: &str, what: &str) -> Result<Vec<CertificateInfo>> {
    let ders = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|source| Error::Pem {
            what: what.to_string(),
            source,
        })?;
    if ders.is_empty() {
        return Err(Error::Pem {
            what: what.to_string(),
            source: rustls_pki_types::pem::Error::NoItemsFound,
        });
    }
    ders.iter()
        .map(|der| parse_certificate(der, what).map(|cert| info_of(&cert)))
        .collect()
}

fn info_of(cert: &X509Certificate<'_>) -> CertificateInfo {
    let common_name = |name: &x509_parser::x509::X509Name<'_>| {
        name.iter_common_name()
            .last()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut usages = Vec::new();
    if let Ok(Some(ku)) = cert.key_usage() {
        if ku.value.key_cert_sign() {
            usages.push("CertSign");
        }
    }
    if let Ok(Some(eku)) = cert.extended_key_usage() {
        if eku.value.server_auth {
            usages.push("ServerAuth");
        }
        if eku.value.client_auth {
            usages.push("ClientAuth");
        }
    }
    if usages.is_empty() {
        usages.push("Unknown");
    }
    let serial = cert
        .tbs_certificate
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    CertificateInfo {
        subject: common_name(cert.subject()),
        issuer: common_name(cert.issuer()),
        serial,
        usages,
        is_ca: cert.is_ca(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    }
}

/// `unix` as RFC 3339 in UTC, e.g. `2026-11-27T18:16:22Z`.
pub fn format_rfc3339(unix: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("@{unix}"),
    }
}

/// `unix` the way K3s's table shows it (Go's `Jan 02, 2006 15:04 MST`, in UTC).
pub fn format_table_time(unix: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    match OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{} {:02}, {:04} {:02}:{:02} UTC",
            MONTHS[usize::from(u8::from(t.month())) - 1],
            t.day(),
            t.year(),
            t.hour(),
            t.minute()
        ),
        Err(_) => format!("@{unix}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::{CertificateAuthority, LeafSpec, Usage};

    fn leaf(validity_days: i64) -> (String, CertificateAuthority) {
        let (ca, _) = CertificateAuthority::generate("test-ca").unwrap();
        let issued = ca
            .issue(&LeafSpec {
                common_name: "leaf",
                organizations: &[],
                sans: Vec::new(),
                usage: Usage::Server,
                validity: time::Duration::days(validity_days),
            })
            .unwrap();
        (issued.cert_pem, ca)
    }

    #[test]
    fn expires_within_compares_not_after_with_now_plus_window() {
        let (ten_days, _) = leaf(10);
        let day = Duration::from_secs(86_400);
        assert!(expires_within(&ten_days, CERTIFICATE_RENEW_BEFORE).unwrap());
        assert!(expires_within(&ten_days, 11 * day).unwrap());
        assert!(!expires_within(&ten_days, 9 * day).unwrap());
        assert!(!expires_within(&ten_days, Duration::ZERO).unwrap());

        let (year, _) = leaf(365);
        assert!(!expires_within(&year, CERTIFICATE_RENEW_BEFORE).unwrap());
        assert!(expires_within(&year, 366 * day).unwrap());
    }

    #[test]
    fn expires_within_rejects_what_is_not_a_certificate() {
        assert!(matches!(
            expires_within("garbage", Duration::ZERO),
            Err(Error::Pem { .. })
        ));
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        assert!(expires_within(&key.serialize_pem(), Duration::ZERO).is_err());
    }

    #[test]
    fn info_lists_chain_with_names_usages_and_status() {
        let (pem, ca) = leaf(30);
        let chain = format!("{pem}{}", ca.cert_pem());
        let infos = certificates_in(&chain, "chain").unwrap();
        assert_eq!(infos.len(), 2);
        assert_eq!(infos[0].subject, "leaf");
        assert_eq!(infos[0].issuer, "test-ca");
        assert_eq!(infos[0].usages, ["ServerAuth"]);
        assert!(!infos[0].is_ca);
        assert!(!infos[0].serial.is_empty());
        assert_eq!(infos[1].subject, "test-ca");
        assert_eq!(infos[1].usages, ["CertSign"]);
        assert!(infos[1].is_ca);

        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        assert_eq!(
            infos[0].status(now, CERTIFICATE_RENEW_BEFORE),
            CertificateStatus::Warning
        );
        assert_eq!(infos[0].status(now, day), CertificateStatus::Ok);
        assert_eq!(
            infos[0].status(now + 31 * day, day),
            CertificateStatus::Expired
        );
        assert_eq!(
            infos[0].status(now - 2 * day, day),
            CertificateStatus::NotYetValid
        );
        assert_eq!(
            infos[1].status(now, CERTIFICATE_RENEW_BEFORE),
            CertificateStatus::Ok
        );
        assert!(certificates_in("", "empty").is_err());
    }

    #[test]
    fn times_are_formatted_in_utc() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_780_000_000), "2026-05-28T20:26:40Z");
        assert_eq!(format_table_time(1_780_000_000), "May 28, 2026 20:26 UTC");
    }
}
