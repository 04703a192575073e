//! Certificate authorities and the certificates they issue.

use std::path::Path;

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;

use crate::error::{Error, Result};
use crate::san::San;
use crate::subject;

/// CAs live ten years, as in K3s.
pub(crate) const CA_VALIDITY: Duration = Duration::days(3650);
/// Leaf certificates live one year, as in K3s.
pub(crate) const LEAF_VALIDITY: Duration = Duration::days(365);
/// Certificates start being valid a little before they are made, so that a node whose
/// clock is slightly behind the server's accepts them.
const CLOCK_SKEW: Duration = Duration::hours(1);

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Usage {
    /// TLS server (EKU serverAuth).
    Server,
    /// TLS client (EKU clientAuth).
    Client,
}

/// The subject, names and purpose of a leaf certificate to issue.
pub(crate) struct LeafSpec<'a> {
    pub common_name: &'a str,
    pub organizations: &'a [String],
    pub sans: Vec<San>,
    pub usage: Usage,
    pub validity: Duration,
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub(crate) struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A CA certificate together with the key that signs with it.
pub(crate) struct CertificateAuthority {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl CertificateAuthority {
    /// Generates a self-signed ECDSA P-256 CA named `common_name`; returns it and its key PEM.
    pub(crate) fn generate(common_name: &str) -> Result<(Self, String)> {
        let key = new_key(common_name)?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + CA_VALIDITY;
        let cert = params
            .self_signed(&key)
            .map_err(|e| Error::generate(format!("CA certificate {common_name}"), e))?;
        let key_pem = key.serialize_pem();
        let ca = CertificateAuthority {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        };
        Ok((ca, key_pem))
    }

    /// Loads a CA from its certificate and key PEM, checking that they belong together.
    pub(crate) fn load(
        cert_pem: &str,
        key_pem: &str,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<Self> {
        let cert_der = first_certificate(cert_pem, &cert_path.display().to_string())?;
        let key = KeyPair::from_pem(key_pem).map_err(|source| Error::LoadKey {
            what: key_path.display().to_string(),
            source,
        })?;
        {
            let cert = parse_certificate(&cert_der, &cert_path.display().to_string())?;
            if !cert.is_ca() {
                return Err(Error::ParseCertificate {
                    what: cert_path.display().to_string(),
                    reason: "not a CA certificate (basicConstraints CA:TRUE missing)".into(),
                });
            }
            if cert.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
                return Err(Error::CaKeyMismatch {
                    cert: cert_path.to_path_buf(),
                    key: key_path.to_path_buf(),
                });
            }
        }
        let issuer =
            Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| Error::ParseCertificate {
                what: cert_path.display().to_string(),
                reason: e.to_string(),
            })?;
        Ok(CertificateAuthority {
            cert_pem: cert_pem.to_string(),
            cert_der,
            issuer,
        })
    }

    pub(crate) fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Whether `leaf` carries a valid signature by this CA's key.
    pub(crate) fn signed(&self, leaf: &X509Certificate<'_>) -> bool {
        match x509_parser::parse_x509_certificate(&self.cert_der) {
            Ok((_, ca)) => leaf.verify_signature(Some(ca.public_key())).is_ok(),
            Err(_) => false,
        }
    }

    /// Issues a leaf certificate with a fresh ECDSA P-256 key.
    pub(crate) fn issue(&self, spec: &LeafSpec<'_>) -> Result<CertAndKey> {
        let key = new_key(spec.common_name)?;
        self.issue_for_key(spec, key)
    }

    /// Issues a leaf certificate for an existing key (a renewal that keeps the key,
    /// as K3s does); the returned `key_pem` is that key, serialized as PKCS#8.
    pub(crate) fn issue_for_key(&self, spec: &LeafSpec<'_>, key: KeyPair) -> Result<CertAndKey> {
        let what = || format!("certificate for {}", spec.common_name);
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        if let [org] = spec.organizations {
            params
                .distinguished_name
                .push(DnType::OrganizationName, org.as_str());
        }
        params
            .distinguished_name
            .push(DnType::CommonName, spec.common_name);
        params.subject_alt_names = spec.sans.iter().map(San::to_rcgen).collect::<Result<_>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match spec.usage {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + spec.validity;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| Error::generate(what(), e))?;

        let cert_pem = if spec.organizations.len() > 1 {
            let subject = subject::encode_subject(spec.common_name, spec.organizations);
            let der = subject::replace_subject(cert.der(), &subject, self.issuer.key())?;
            pem_encode("CERTIFICATE", &der)
        } else {
            cert.pem()
        };
        Ok(CertAndKey {
            cert_pem,
            key_pem: key.serialize_pem(),
        })
    }
}

fn new_key(for_what: &str) -> Result<KeyPair> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| Error::generate(format!("private key for {for_what}"), e))
}

/// The first certificate in a PEM document.
pub(crate) fn first_certificate(pem: &str, what: &str) -> Result<CertificateDer<'static>> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|source| Error::Pem {
        what: what.to_string(),
        source,
    })
}

/// Parses DER as an X.509 certificate; trailing bytes are an error.
pub(crate) fn parse_certificate<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>> {
    let (rest, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| Error::ParseCertificate {
            what: what.to_string(),
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(Error::ParseCertificate {
            what: what.to_string(),
            reason: format!("{} trailing bytes after the certificate", rest.len()),
        });
    }
    Ok(cert)
}

/// RFC 7468 PEM: base64 in 64-character lines between BEGIN and END markers.
fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    // base64 output is ASCII, so every 64-byte chunk is valid UTF-8.
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
