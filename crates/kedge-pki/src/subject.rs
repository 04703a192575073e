//! Certificate subjects with several organizations.
//!
//! Kubernetes reads a client certificate's groups from its subject O attributes, and
//! a user may belong to several groups. rcgen's `DistinguishedName` holds one value
//! per attribute type (rustls/rcgen#81), so for more than one group the certificate
//! is issued by rcgen and then its subject is replaced here: the TBS certificate is
//! re-encoded with the new subject and signed again with the same issuer key.

use rcgen::SigningKey;

use crate::error::{Error, Result};

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OID: u8 = 0x06;
/// `[0] EXPLICIT Version` at the start of a v3 TBS certificate.
const TAG_VERSION: u8 = 0xa0;
/// id-at-commonName, 2.5.4.3.
const OID_COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];
/// id-at-organizationName, 2.5.4.10.
const OID_ORGANIZATION: [u8; 3] = [0x55, 0x04, 0x0a];

/// DER of the X.501 Name `O=<org>... , CN=<common_name>`, in the order Go writes it,
/// one single-valued RDN per attribute, all values UTF8String (as rcgen writes them).
pub(crate) fn encode_subject(common_name: &str, organizations: &[String]) -> Vec<u8> {
    let mut rdns = Vec::new();
    for org in organizations {
        rdns.extend(rdn(&OID_ORGANIZATION, org));
    }
    rdns.extend(rdn(&OID_COMMON_NAME, common_name));
    tlv(TAG_SEQUENCE, &rdns)
}

/// Returns `cert_der` with its subject replaced by `subject_der`, signed again by `signer`,
/// which must be the key (and so the algorithm) that signed `cert_der`.
pub(crate) fn replace_subject(
    cert_der: &[u8],
    subject_der: &[u8],
    signer: &impl SigningKey,
) -> Result<Vec<u8>> {
    let malformed = |reason: &str| Error::ParseCertificate {
        what: "freshly issued certificate".into(),
        reason: format!("malformed DER: {reason}"),
    };

    let cert = split_tlv(cert_der, TAG_SEQUENCE).ok_or_else(|| malformed("certificate"))?;
    let tbs = split_tlv(cert.content, TAG_SEQUENCE).ok_or_else(|| malformed("tbsCertificate"))?;
    let sig_alg =
        split_tlv(tbs.rest, TAG_SEQUENCE).ok_or_else(|| malformed("signatureAlgorithm"))?;

    // Skip version, serialNumber, signature, issuer and validity to reach the subject.
    let mut fields = tbs.content;
    let before_subject = if fields.first() == Some(&TAG_VERSION) {
        5
    } else {
        4
    };
    for _ in 0..before_subject {
        fields = split_any_tlv(fields)
            .ok_or_else(|| malformed("tbsCertificate field"))?
            .rest;
    }
    let prefix_len = tbs.content.len() - fields.len();
    let subject = split_tlv(fields, TAG_SEQUENCE).ok_or_else(|| malformed("subject"))?;

    let mut new_tbs_content =
        Vec::with_capacity(tbs.content.len() + subject_der.len() - subject.whole.len());
    new_tbs_content.extend_from_slice(&tbs.content[..prefix_len]);
    new_tbs_content.extend_from_slice(subject_der);
    new_tbs_content.extend_from_slice(subject.rest);
    let new_tbs = tlv(TAG_SEQUENCE, &new_tbs_content);

    let signature = signer
        .sign(&new_tbs)
        .map_err(|e| Error::generate("signature over the rewritten certificate", e))?;
    let mut bits = Vec::with_capacity(signature.len() + 1);
    bits.push(0); // no unused bits
    bits.extend_from_slice(&signature);

    let mut new_cert = new_tbs;
    new_cert.extend_from_slice(sig_alg.whole);
    new_cert.extend(tlv(TAG_BIT_STRING, &bits));
    Ok(tlv(TAG_SEQUENCE, &new_cert))
}

fn rdn(oid: &[u8], value: &str) -> Vec<u8> {
    let mut atv = tlv(TAG_OID, oid);
    atv.extend(tlv(TAG_UTF8_STRING, value.as_bytes()));
    tlv(TAG_SET, &tlv(TAG_SEQUENCE, &atv))
}

/// One DER element: its tag-length-value bytes, its content, and what follows it.
struct Tlv<'a> {
    whole: &'a [u8],
    content: &'a [u8],
    rest: &'a [u8],
}

fn split_tlv(input: &[u8], tag: u8) -> Option<Tlv<'_>> {
    if *input.first()? != tag {
        return None;
    }
    split_any_tlv(input)
}

fn split_any_tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let first_len = *input.get(1)?;
    let (header_len, content_len) = if first_len < 0x80 {
        (2, usize::from(first_len))
    } else {
        let n = usize::from(first_len & 0x7f);
        // DER has no indefinite lengths, and nothing here is 4 GiB long.
        if n == 0 || n > 4 {
            return None;
        }
        let len = input
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (2 + n, len)
    };
    let end = header_len.checked_add(content_len)?;
    Some(Tlv {
        whole: input.get(..end)?,
        content: input.get(header_len..end)?,
        rest: input.get(end..)?,
    })
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        // Fits in the short form: checked just above.
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = &bytes[skip..];
        // At most size_of::<usize>() bytes, so this fits in 7 bits.
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_encoding_round_trips() {
        for len in [0usize, 1, 127, 128, 255, 256, 65535, 65536] {
            let content = vec![7u8; len];
            let encoded = tlv(TAG_SEQUENCE, &content);
            let parsed = split_tlv(&encoded, TAG_SEQUENCE).unwrap();
            assert_eq!(parsed.content.len(), len);
            assert!(parsed.rest.is_empty());
            assert_eq!(parsed.whole.len(), encoded.len());
        }
    }

    #[test]
    fn truncated_input_is_rejected() {
        let encoded = tlv(TAG_SEQUENCE, &[1, 2, 3]);
        assert!(split_tlv(&encoded[..4], TAG_SEQUENCE).is_none());
        assert!(split_tlv(&[], TAG_SEQUENCE).is_none());
        assert!(split_tlv(&[TAG_SEQUENCE, 0x85, 1, 2, 3, 4, 5], TAG_SEQUENCE).is_none());
    }

    #[test]
    fn subject_parses_with_all_organizations_in_order() {
        let der = encode_subject("alice", &["dev".into(), "ops".into(), "sre".into()]);
        let (rest, name) =
            <x509_parser::x509::X509Name as x509_parser::prelude::FromDer<_>>::from_der(&der)
                .unwrap();
        assert!(rest.is_empty());
        let orgs: Vec<_> = name
            .iter_organization()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(orgs, ["dev", "ops", "sre"]);
        let cn: Vec<_> = name
            .iter_common_name()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(cn, ["alice"]);
    }
}
