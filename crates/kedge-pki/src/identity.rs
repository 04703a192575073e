//! The Kubernetes user a client certificate names.

use x509_parser::certificate::X509Certificate;

use crate::authority::parse_certificate;
use crate::error::{Error, Result};

/// The authenticated identity carried by a client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

/// Reads the identity of a DER client certificate the way Kubernetes' x509
/// authenticator does: the user is the subject CN (the last one, should there be
/// several, as Go's `pkix.Name` keeps), the groups are the subject O values in order.
///
/// This only reads the subject; verifying the certificate is the TLS layer's job.
pub fn identity_from_cert(der: &[u8]) -> Result<Identity> {
    identity_of(&parse_certificate(der, "client certificate")?)
}

pub(crate) fn identity_of(cert: &X509Certificate<'_>) -> Result<Identity> {
    let subject = cert.subject();
    let user = match subject.iter_common_name().last() {
        Some(cn) => cn.as_str().map_err(|e| Error::InvalidSubject {
            reason: format!("common name is not a string: {e}"),
        })?,
        None => {
            return Err(Error::InvalidSubject {
                reason: "no common name (CN), so no user".into(),
            })
        }
    };
    if user.is_empty() {
        return Err(Error::InvalidSubject {
            reason: "empty common name (CN), so no user".into(),
        });
    }
    let groups = subject
        .iter_organization()
        .map(|o| {
            o.as_str()
                .map(str::to_string)
                .map_err(|e| Error::InvalidSubject {
                    reason: format!("organization (O) is not a string: {e}"),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Identity {
        user: user.to_string(),
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    fn self_signed(dn: DistinguishedName) -> Vec<u8> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = dn;
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn certificate_without_common_name_has_no_identity() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "system:masters");
        let err = identity_from_cert(&self_signed(dn)).unwrap_err();
        assert!(matches!(err, Error::InvalidSubject { .. }), "{err}");
    }

    #[test]
    fn certificate_without_organization_has_no_groups() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "system:kube-proxy");
        let id = identity_from_cert(&self_signed(dn)).unwrap();
        assert_eq!(id.user, "system:kube-proxy");
        assert!(id.groups.is_empty());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(
            identity_from_cert(b"not a certificate"),
            Err(Error::ParseCertificate { .. })
        ));
    }
}
