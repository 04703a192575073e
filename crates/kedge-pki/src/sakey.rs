//! The service-account signing key and the JWS compact serialization of the
//! tokens it signs.
//!
//! Like K3s's `server/tls/service.key`, the key is generated once in the TLS
//! directory and reused on every start, so tokens survive a restart. A new
//! key is ECDSA P-256 (`ES256`): ring, which the workspace already carries
//! for TLS, generates P-256 keys but cannot generate RSA keys, and
//! kube-apiserver accepts `ES256` service-account keys as it does `RS256`.
//! An existing PKCS#8 or PKCS#1 RSA key (a K3s `service.key`) is loaded and
//! signs with `RS256`, so a key brought over keeps its tokens valid.
//!
//! The key ID in each token header is upstream's: the unpadded base64url
//! SHA-256 of the public key's DER `SubjectPublicKeyInfo`.

use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;

use crate::atomic_file;

/// File name of the signing key inside the TLS directory (K3s's name).
pub const SERVICE_ACCOUNT_KEY: &str = "service.key";

/// Why the service-account key could not be loaded, generated or used.
#[derive(Debug, thiserror::Error)]
pub enum ServiceAccountKeyError {
    /// Reading or writing the key file failed.
    #[error(transparent)]
    File(#[from] crate::Error),

    /// The file is not a PEM private key.
    #[error("reading the service-account key {what}")]
    Pem {
        what: String,
        #[source]
        source: rustls_pki_types::pem::Error,
    },

    /// The key is not one ring can sign JWTs with.
    #[error("the service-account key {what} is not usable: {reason}")]
    Unusable { what: String, reason: String },

    /// Generating a key or a signature failed (the system RNG failed).
    #[error("{0} failed")]
    Crypto(&'static str),
}

/// Why a presented token was not accepted by [`ServiceAccountKey::verify_jwt`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url parts with a JSON header.
    #[error("token is not a JWS compact serialization")]
    Malformed,
    /// The header names another algorithm (`none` included).
    #[error("unexpected signing algorithm {0:?}")]
    Algorithm(String),
    /// The header names a key ID this server does not have.
    #[error("invalid signature, no keys found")]
    UnknownKey,
    /// The signature does not verify.
    #[error("square/go-jose: error in cryptographic primitive")]
    Signature,
}

enum Signer {
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
}

/// The key that signs and verifies service-account tokens.
pub struct ServiceAccountKey {
    signer: Signer,
    /// DER `SubjectPublicKeyInfo`.
    spki: Vec<u8>,
    key_id: String,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("alg", &self.algorithm())
            .field("kid", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Load `<tls_dir>/service.key`, or generate and save it (mode 0600) when absent.
pub fn ensure_service_account_key(
    tls_dir: &Path,
) -> Result<ServiceAccountKey, ServiceAccountKeyError> {
    let path = tls_dir.join(SERVICE_ACCOUNT_KEY);
    if let Some(pem) = atomic_file::read_optional(&path)? {
        return ServiceAccountKey::from_pem(pem.as_bytes(), &path.display().to_string());
    }
    atomic_file::ensure_dir(tls_dir, None)?;
    let (key, pem) = ServiceAccountKey::generate()?;
    atomic_file::write_atomic(&path, pem.as_bytes(), 0o600)?;
    tracing::info!(path = %path.display(), kid = %key.key_id, "generated the service-account signing key");
    Ok(key)
}

impl ServiceAccountKey {
    /// A new ECDSA P-256 key and its PKCS#8 PEM.
    pub fn generate() -> Result<(Self, String), ServiceAccountKeyError> {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| ServiceAccountKeyError::Crypto("generating an ECDSA P-256 key"))?;
        let pem = pem_encode("PRIVATE KEY", doc.as_ref());
        let key = Self::from_pem(pem.as_bytes(), "(generated)")?;
        Ok((key, pem))
    }

    /// Parse a PEM private key: PKCS#8 P-256 or RSA, or PKCS#1 RSA.
    pub fn from_pem(pem: &[u8], what: &str) -> Result<Self, ServiceAccountKeyError> {
        let der =
            PrivateKeyDer::from_pem_slice(pem).map_err(|source| ServiceAccountKeyError::Pem {
                what: what.to_string(),
                source,
            })?;
        let unusable = |reason: String| ServiceAccountKeyError::Unusable {
            what: what.to_string(),
            reason,
        };
        let signer = match &der {
            PrivateKeyDer::Pkcs8(k) => {
                let rng = SystemRandom::new();
                match EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    k.secret_pkcs8_der(),
                    &rng,
                ) {
                    Ok(ec) => Signer::Es256(ec),
                    Err(ec_err) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der())
                        .map(Signer::Rs256)
                        .map_err(|rsa_err| {
                            unusable(format!(
                                "neither an ECDSA P-256 key ({ec_err}) nor an RSA key ({rsa_err})"
                            ))
                        })?,
                }
            }
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der())
                .map(Signer::Rs256)
                .map_err(|e| unusable(format!("RSA key rejected: {e}")))?,
            PrivateKeyDer::Sec1(_) => return Err(unusable(
                "SEC1 EC keys are not supported; convert it with `openssl pkcs8 -topk8 -nocrypt`"
                    .into(),
            )),
            _ => return Err(unusable("unknown private key format".into())),
        };
        let spki = match &signer {
            Signer::Es256(k) => ec_p256_spki(k.public_key().as_ref()),
            Signer::Rs256(k) => rsa_spki(k.public().as_ref()),
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, &spki);
        let key_id = URL_SAFE_NO_PAD.encode(digest.as_ref());
        Ok(ServiceAccountKey {
            signer,
            spki,
            key_id,
        })
    }

    /// `ES256` or `RS256`.
    pub fn algorithm(&self) -> &'static str {
        match self.signer {
            Signer::Es256(_) => "ES256",
            Signer::Rs256(_) => "RS256",
        }
    }

    /// The `kid` header of every token this key signs.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key as DER `SubjectPublicKeyInfo`.
    pub fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    /// Sign `claims` (the JSON payload) into a compact JWS.
    pub fn sign_jwt(&self, claims: &[u8]) -> Result<String, ServiceAccountKeyError> {
        let header = format!(
            r#"{{"alg":"{}","kid":"{}"}}"#,
            self.algorithm(),
            self.key_id
        );
        let mut out = URL_SAFE_NO_PAD.encode(header.as_bytes());
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(claims));
        let rng = SystemRandom::new();
        let sig = match &self.signer {
            Signer::Es256(k) => k
                .sign(&rng, out.as_bytes())
                .map_err(|_| ServiceAccountKeyError::Crypto("signing a token"))?
                .as_ref()
                .to_vec(),
            Signer::Rs256(k) => {
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, out.as_bytes(), &mut sig)
                    .map_err(|_| ServiceAccountKeyError::Crypto("signing a token"))?;
                sig
            }
        };
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(sig));
        Ok(out)
    }

    /// Check a compact JWS signed by this key; returns its payload bytes.
    pub fn verify_jwt(&self, token: &str) -> Result<Vec<u8>, JwtError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header = URL_SAFE_NO_PAD.decode(h).map_err(|_| JwtError::Malformed)?;
        let header: serde_json::Value =
            serde_json::from_slice(&header).map_err(|_| JwtError::Malformed)?;
        let alg = header.get("alg").and_then(|a| a.as_str()).unwrap_or("");
        if alg != self.algorithm() {
            return Err(JwtError::Algorithm(alg.to_string()));
        }
        if header.get("crit").is_some() {
            return Err(JwtError::Malformed);
        }
        match header.get("kid").and_then(|k| k.as_str()) {
            Some(kid) if !kid.is_empty() && kid != self.key_id => return Err(JwtError::UnknownKey),
            _ => {}
        }
        let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)?;
        let payload = URL_SAFE_NO_PAD.decode(p).map_err(|_| JwtError::Malformed)?;
        let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
        let ok = match &self.signer {
            Signer::Es256(k) => signature::UnparsedPublicKey::new(
                &signature::ECDSA_P256_SHA256_FIXED,
                k.public_key().as_ref(),
            )
            .verify(signed, &sig),
            Signer::Rs256(k) => signature::UnparsedPublicKey::new(
                &signature::RSA_PKCS1_2048_8192_SHA256,
                k.public().as_ref(),
            )
            .verify(signed, &sig),
        };
        ok.map_err(|_| JwtError::Signature)?;
        Ok(payload)
    }
}

/// PEM armour with 64-column base64 lines.
fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A DER tag-length-value.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

/// `SubjectPublicKeyInfo` of an uncompressed P-256 point.
fn ec_p256_spki(point: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier { id-ecPublicKey, prime256v1 }
    const ALG: &[u8] = &[
        0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
        0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ];
    spki(ALG, point)
}

/// `SubjectPublicKeyInfo` of a DER `RSAPublicKey`.
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier { rsaEncryption, NULL }
    const ALG: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    spki(ALG, pkcs1)
}

fn spki(alg: &[u8], key: &[u8]) -> Vec<u8> {
    let mut bits = vec![0u8];
    bits.extend_from_slice(key);
    let mut content = alg.to_vec();
    content.extend(der(0x03, &bits));
    der(0x30, &content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_is_saved_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = ensure_service_account_key(dir.path()).unwrap();
        let path = dir.path().join(SERVICE_ACCOUNT_KEY);
        let pem = std::fs::read_to_string(&path).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = ensure_service_account_key(dir.path()).unwrap();
        assert_eq!(a.key_id(), b.key_id());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), pem);
        // A token signed before the "restart" verifies after it.
        let tok = a.sign_jwt(br#"{"sub":"x"}"#).unwrap();
        assert_eq!(b.verify_jwt(&tok).unwrap(), br#"{"sub":"x"}"#);
    }

    #[test]
    fn key_id_is_sha256_of_spki() {
        let (k, _) = ServiceAccountKey::generate().unwrap();
        assert_eq!(k.algorithm(), "ES256");
        // A P-256 SPKI is 91 bytes: 26 bytes of header and a 65-byte point.
        assert_eq!(k.public_key_der().len(), 91);
        assert_eq!(&k.public_key_der()[..2], &[0x30, 0x59]);
        let want = URL_SAFE_NO_PAD
            .encode(ring::digest::digest(&ring::digest::SHA256, k.public_key_der()).as_ref());
        assert_eq!(k.key_id(), want);
        assert_eq!(k.key_id().len(), 43);
    }

    #[test]
    fn sign_and_verify() {
        let (k, _) = ServiceAccountKey::generate().unwrap();
        let tok = k.sign_jwt(br#"{"iss":"a"}"#).unwrap();
        let parts: Vec<&str> = tok.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], k.key_id());
        // ES256 JWS signatures are r||s, 64 bytes.
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), 64);
        assert_eq!(k.verify_jwt(&tok).unwrap(), br#"{"iss":"a"}"#);

        // A changed payload, another key, `alg: none` and junk are rejected.
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(br#"{"iss":"b"}"#),
            parts[2]
        );
        assert_eq!(k.verify_jwt(&forged), Err(JwtError::Signature));
        let (other, _) = ServiceAccountKey::generate().unwrap();
        assert_eq!(other.verify_jwt(&tok), Err(JwtError::UnknownKey));
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            parts[1]
        );
        assert_eq!(k.verify_jwt(&none), Err(JwtError::Algorithm("none".into())));
        assert_eq!(k.verify_jwt("a.b"), Err(JwtError::Malformed));
        assert_eq!(k.verify_jwt("a.b.c.d"), Err(JwtError::Malformed));
        // Without a kid the signature still decides.
        let nokid = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256"}"#),
            parts[1],
            parts[2]
        );
        assert_eq!(k.verify_jwt(&nokid), Err(JwtError::Signature));
    }

    #[test]
    fn bad_pem_is_an_error_naming_the_file() {
        let e = ServiceAccountKey::from_pem(b"not a key", "/x/service.key").unwrap_err();
        assert!(e.to_string().contains("/x/service.key"), "{e}");
    }

    #[test]
    fn der_lengths() {
        assert_eq!(der(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        let long = der(0x04, &[0u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(long.len(), 304);
    }

    /// Test-only keys made with openssl; their key IDs were computed with
    /// `openssl pkey -pubout -outform DER | sha256sum`, independently of this code.
    const TEST_EC_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgl9ONm4yrMFwzmCMj\nMs1b7zXbMmBD3KvfNlvSBGm9S6OhRANCAASGdZEaGZh/HCzlS+o1sN0CsPdBs5HK\nNPRfqfhLoNnBkZ09HaRTPFDs6VWH1LYYElR2yYeNzE+NGiplJJpw/v84\n-----END PRIVATE KEY-----\n";
    const TEST_EC_KID: &str = "MW0260mtHlsipVxrT358z7AqGxcIPVvfs5F7YrgbFWs";
    const TEST_RSA_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCWnmgG0S/H/nOA\nM5+emGTru+Ib/703c6bK12XLDF8xEmBwyfNvHTP64qJ1yMJFx2RCZItbtBUEO/vo\nRj/n62JKG1XqrI+AXBMlCwvJ5e7EIQkfg4eu0U2qitvHcC/hxDka/nDtigDjXkMS\nv+PaLuRU/vlFl1A+aoD0Nbxia1NB0sKPDVTixIid/NXQfTvUTokDkGsSzPkTCsT5\nyYrwTEknzok5ZAVQM3Tkqxw0py3c6VVZpZq7ZEuDBBJ+Ed6Nzn9PGvmWZRie5q+f\nfZK4sYrgx7GG9vj8NHMHtfdgYBflID7GMb1Nm347xxuUeDoJKkN0D2IhXtlrOlXS\nh5sWuTdDAgMBAAECggEAB6z57dhXlYW/msRxZCfYWMpsivMSUFL0qI39PNxGtkhS\noYeBKuPzmVusXiaa0+swjlDzvdAkaWCp2pvzN3Kfly7jxtUAGSataRayL+9SUYIX\ne24nX37WH5Sk/6Rqzu1s4EB1k9K+by0yFjCw6sEMrNIzn4Vxtu8+3sh67w8Qy/Ve\nwB/8UCLO/drQPJnbOcv98oMR5l2y6NvyK12VBhEbWKpcWfrb8LJDfnE1pbFA5XEO\n57bPojMTFDBkk8UFSg1B7a/BwQ3yphfzx8t2abfdhUiuNpGxcG2p0f8gsxb4Bll2\nTYqlk0m6TMRMCop5XZg6PkqqjgsUrSL37IZgLRJTWQKBgQDU8Q7IV7cJtPzG3Vkb\nBSGddagarBfjs/6hDYafFCuEmaHCN+W5moi7tIqM8VkGv9n/SGMVuOyGnDy46xV8\nGkpwKZoOS8fBS6crYl51x/1or6A/yW7bLAwhKZ3yjilrzHP+XxTFMtFpRd/emE+X\nigXXcaV43YnrXSCCrnZ1eGKVGQKBgQC1EzNQmx1NMJTKr654WGBB3M4bOTHmiIoJ\nYMA9m+kP8iMKnG0ejueH7+DhuIl/wfbYZ08dXVIzqrZgf6MLOusrHY5Zq3+IteO8\nuVp5ydvbyjJuXIMYX9gFpuJFkv1Q6/YHX9+ggsfqiO/m1FZthp8P+emVnENnobf9\nDnRA4nR+uwKBgCveARqan1V7mHtrTBj55KPoghoEi+NXyEPrYmlRIWnusFkvZL7o\nq/RnTAefDKUMTt99TRRDhU5xzzyVCVcIn38dwuPhDqSubiDM4gLHkVfInm2llJXI\nLDOEvEokqTnQ47Bqa//36RYT0/uqSvM/9tYcTmdo1CnNhI4HXNX0V/K5AoGAcd6C\nLZVuBsWfPBrgj8ObvK9bWVlNXRjOHXmfSt8J4EI38QtPv6DETwL1m1zN8u6KCapl\n4SR3dhBLokGByaUikDmE9DTZ/aHMdjjlgaMERKJRtn8s3Z4gHeXFc1UtQb8xN4/9\n9FVp3L6ChtlPBI9c5dIWJ0ReSwQyzMtTJh6CfdMCgYBPWkqte8Y6pBzJMeiC+ib7\n1EB8WK/nguy5rrVILohYtJBVO+sc60wbg5sE0H1mOZAxLX4Rrj3bRwE+JGHkmZmm\nnLy7X0BsBl0mgFGMfilGHkffx2SOs8egVTV78ccGGXPRAvyvgBfPrqfvvcAD6D/4\nyGSFMId74df0LejQVfEHAg==\n-----END PRIVATE KEY-----\n";
    const TEST_RSA_KID: &str = "_Z0Zt2dRhz908XRtcE6n0xEVhIHMxa2GWnD9bcYC7D8";

    #[test]
    fn openssl_keys_load_with_upstream_key_ids() {
        let ec = ServiceAccountKey::from_pem(TEST_EC_PEM.as_bytes(), "ec").unwrap();
        assert_eq!(ec.algorithm(), "ES256");
        assert_eq!(ec.key_id(), TEST_EC_KID);
        let rsa = ServiceAccountKey::from_pem(TEST_RSA_PEM.as_bytes(), "rsa").unwrap();
        assert_eq!(rsa.algorithm(), "RS256");
        assert_eq!(rsa.key_id(), TEST_RSA_KID);
        let tok = rsa.sign_jwt(b"{}").unwrap();
        assert_eq!(rsa.verify_jwt(&tok).unwrap(), b"{}");
        // 2048-bit RSA: a 256-byte signature.
        let sig = tok.rsplit('.').next().unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(sig).unwrap().len(), 256);
        // An ES256 token does not pass as RS256.
        let es = ec.sign_jwt(b"{}").unwrap();
        assert_eq!(
            rsa.verify_jwt(&es),
            Err(JwtError::Algorithm("ES256".into()))
        );
    }
}
