//! Certificates and TLS between the API server and node agents (the kubelet API).
//!
//! As in K3s and upstream: each node agent serves its API (logs, exec, attach,
//! port-forward) with a serving certificate signed by the server CA, and the API
//! server reaches it with its own client certificate (`kube-apiserver-kubelet-client`
//! in `system:masters`, signed by the client CA). The agent accepts no other client:
//! its TLS configuration requires a certificate from the client CA that names that
//! user or the `system:masters` group, so a stolen kubeconfig of an ordinary user
//! cannot exec into pods by calling the agent directly.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::client::WebPkiServerVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::version::{TLS12, TLS13};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use crate::atomic_file::read_required;
use crate::authority::{CertificateAuthority, LeafSpec, Usage, LEAF_VALIDITY};
use crate::cluster::{
    ensure_leaf, ADMIN_GROUP, CLIENT_CA_CERT, CLIENT_CA_KEY, DIR_MODE, SERVER_CA_CERT,
    SERVER_CA_KEY,
};
use crate::error::{Error, Result};
use crate::identity::identity_from_cert;
use crate::san::San;

/// The API server's client certificate for node agents, in the server TLS directory
/// (K3s: `client-kube-apiserver.crt`; kubeadm: `apiserver-kubelet-client.crt`).
pub const KUBELET_CLIENT_CERT: &str = "client-kube-apiserver-kubelet.crt";
pub const KUBELET_CLIENT_KEY: &str = "client-kube-apiserver-kubelet.key";
/// The user of that certificate, as kubeadm names it.
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";
/// A node agent's serving certificate, in the agent's directory (K3s's names).
pub const KUBELET_SERVING_CERT: &str = "serving-kubelet.crt";
pub const KUBELET_SERVING_KEY: &str = "serving-kubelet.key";

/// A certificate with its key and the CA that the other side must be checked against.
#[derive(Clone)]
pub struct KubeletTls {
    pub cert_pem: String,
    pub key_pem: String,
    /// For the agent: the client CA (who may call it). For the API server: the server
    /// CA (who signs the agents' serving certificates).
    pub peer_ca_pem: String,
}

impl fmt::Debug for KubeletTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeletTls")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The API server's kubelet client certificate under `server_tls_dir` (which
/// [`crate::ensure_pki`] prepared): created on first use, reused afterwards,
/// re-issued when it no longer fits (expiry within 90 days, another CA, broken).
pub fn ensure_kubelet_client_cert(server_tls_dir: &Path) -> Result<KubeletTls> {
    let client_ca = load_ca(server_tls_dir, CLIENT_CA_CERT, CLIENT_CA_KEY)?;
    let groups = [ADMIN_GROUP.to_string()];
    let leaf = ensure_leaf(
        server_tls_dir,
        KUBELET_CLIENT_CERT,
        KUBELET_CLIENT_KEY,
        &client_ca,
        LeafSpec {
            common_name: KUBELET_CLIENT_USER,
            organizations: &groups,
            sans: Vec::new(),
            usage: Usage::Client,
            validity: LEAF_VALIDITY,
        },
    )?;
    Ok(KubeletTls {
        cert_pem: leaf.cert_pem,
        key_pem: leaf.key_pem,
        peer_ca_pem: read_required(&server_tls_dir.join(SERVER_CA_CERT))?,
    })
}

/// The node agent's serving certificate, kept in `agent_tls_dir` and signed by the
/// server CA found in `server_tls_dir` (the agent embedded in `kedge server` has
/// it). Its names: `node_name`, `addresses`, `localhost`, `127.0.0.1` and `::1`.
/// Reused while it fits; re-issued (keeping its old names) when a name is missing,
/// it expires within 90 days or another CA signed it.
pub fn ensure_kubelet_serving_cert(
    agent_tls_dir: &Path,
    server_tls_dir: &Path,
    node_name: &str,
    addresses: &[IpAddr],
) -> Result<KubeletTls> {
    let sans = kubelet_serving_sans(node_name, addresses)?;
    crate::atomic_file::ensure_dir(agent_tls_dir, Some(DIR_MODE))?;
    let server_ca = load_ca(server_tls_dir, SERVER_CA_CERT, SERVER_CA_KEY)?;
    let leaf = ensure_leaf(
        agent_tls_dir,
        KUBELET_SERVING_CERT,
        KUBELET_SERVING_KEY,
        &server_ca,
        LeafSpec {
            common_name: node_name,
            organizations: &[],
            sans,
            usage: Usage::Server,
            validity: LEAF_VALIDITY,
        },
    )?;
    Ok(KubeletTls {
        cert_pem: leaf.cert_pem,
        key_pem: leaf.key_pem,
        peer_ca_pem: read_required(&server_tls_dir.join(CLIENT_CA_CERT))?,
    })
}

/// Signs a node agent serving certificate with the server CA in `server_tls_dir`
/// and returns (certificate PEM, key PEM); writes nothing. For agents on other
/// machines, which ask the server for their certificate when they join.
pub fn issue_kubelet_serving_cert(
    server_tls_dir: &Path,
    node_name: &str,
    addresses: &[IpAddr],
) -> Result<(String, String)> {
    let sans = kubelet_serving_sans(node_name, addresses)?;
    let server_ca = load_ca(server_tls_dir, SERVER_CA_CERT, SERVER_CA_KEY)?;
    let issued = server_ca.issue(&LeafSpec {
        common_name: node_name,
        organizations: &[],
        sans,
        usage: Usage::Server,
        validity: LEAF_VALIDITY,
    })?;
    Ok((issued.cert_pem, issued.key_pem))
}

fn kubelet_serving_sans(node_name: &str, addresses: &[IpAddr]) -> Result<Vec<San>> {
    if node_name.is_empty() {
        return Err(Error::InvalidSubject {
            reason: "empty node name".into(),
        });
    }
    let mut sans = std::collections::BTreeSet::new();
    sans.insert(San::parse(node_name)?);
    sans.insert(San::Dns("localhost".into()));
    sans.insert(San::Ip(IpAddr::from([127, 0, 0, 1])));
    sans.insert(San::Ip(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)));
    sans.extend(addresses.iter().copied().map(San::Ip));
    Ok(sans.into_iter().collect())
}

fn load_ca(dir: &Path, cert: &str, key: &str) -> Result<CertificateAuthority> {
    let cert_path = dir.join(cert);
    let key_path = dir.join(key);
    CertificateAuthority::load(
        &read_required(&cert_path)?,
        &read_required(&key_path)?,
        &cert_path,
        &key_path,
    )
}

/// The node agent's rustls configuration: TLS 1.2/1.3 (ring), ALPN `http/1.1`
/// (SPDY and WebSocket upgrades need HTTP/1.1), its serving certificate, and a
/// REQUIRED client certificate that chains to the client CA (`tls.peer_ca_pem`)
/// and names [`KUBELET_CLIENT_USER`] or belongs to `system:masters`. Anyone else
/// fails the handshake.
pub fn kubelet_server_tls_config(tls: &KubeletTls) -> Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in certificates(&tls.peer_ca_pem, "client CA")? {
        roots.add(ca).map_err(Error::Tls)?;
    }
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(Error::ClientVerifier)?;
    let verifier = Arc::new(ApiServerOnly { inner });
    let key = private_key(&tls.key_pem, "kubelet serving key")?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS13, &TLS12])
        .map_err(Error::Tls)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certificates(&tls.cert_pem, "kubelet serving certificate")?,
            key,
        )
        .map_err(Error::Tls)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The API server's rustls configuration for calling node agents: presents its
/// kubelet client certificate and trusts only serving certificates signed by the
/// server CA (`tls.peer_ca_pem`), checked against the address it dials.
pub fn kubelet_client_tls_config(tls: &KubeletTls) -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in certificates(&tls.peer_ca_pem, "server CA")? {
        roots.add(ca).map_err(Error::Tls)?;
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| Error::Tls(rustls::Error::General(e.to_string())))?;
    let key = private_key(&tls.key_pem, "kubelet client key")?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS13, &TLS12])
        .map_err(Error::Tls)?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(
            certificates(&tls.cert_pem, "kubelet client certificate")?,
            key,
        )
        .map_err(Error::Tls)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Whether a verified client certificate may use a node agent's API.
pub fn may_call_kubelet(cert_der: &[u8]) -> bool {
    match identity_from_cert(cert_der) {
        Ok(id) => id.user == KUBELET_CLIENT_USER || id.groups.iter().any(|g| g == ADMIN_GROUP),
        Err(_) => false,
    }
}

/// The client CA's verifier, plus the check that the client is the API server.
#[derive(Debug)]
struct ApiServerOnly {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for ApiServerOnly {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if may_call_kubelet(end_entity.as_ref()) {
            Ok(verified)
        } else {
            tracing::debug!("rejected a kubelet API client that is not the API server");
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn private_key(pem: &str, what: &str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|source| Error::Pem {
        what: what.to_string(),
        source,
    })
}

fn certificates(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let pem_error = |source| Error::Pem {
        what: what.to_string(),
        source,
    };
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if certs.is_empty() {
        return Err(pem_error(rustls_pki_types::pem::Error::NoItemsFound));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use rustls::{ClientConnection, Connection, ServerConnection};
    use rustls_pki_types::ServerName;

    use super::*;
    use crate::{ensure_pki, issue_client_cert, Identity};

    fn transfer(
        from: &mut Connection,
        to: &mut Connection,
    ) -> std::result::Result<(), rustls::Error> {
        let mut bytes = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut bytes).unwrap();
        }
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            to.read_tls(&mut rest).unwrap();
            to.process_new_packets()?;
        }
        Ok(())
    }

    /// An in-memory handshake plus one record each way; which side failed, on failure.
    fn connect(
        server: ServerConfig,
        client: ClientConfig,
        name: &str,
    ) -> std::result::Result<(), String> {
        let name = ServerName::try_from(name.to_string()).unwrap();
        let mut c = Connection::from(ClientConnection::new(Arc::new(client), name).unwrap());
        let mut s = Connection::from(ServerConnection::new(Arc::new(server)).unwrap());
        for _ in 0..10 {
            transfer(&mut c, &mut s).map_err(|e| format!("server: {e}"))?;
            transfer(&mut s, &mut c).map_err(|e| format!("client: {e}"))?;
            if !c.is_handshaking() && !s.is_handshaking() {
                break;
            }
        }
        c.writer().write_all(b"ping").unwrap();
        transfer(&mut c, &mut s).map_err(|e| format!("server: {e}"))?;
        let mut got = [0u8; 4];
        s.reader()
            .read_exact(&mut got)
            .map_err(|e| format!("server read: {e}"))?;
        assert_eq!(&got, b"ping");
        Ok(())
    }

    fn setup() -> (tempfile::TempDir, KubeletTls, KubeletTls) {
        let tmp = tempfile::tempdir().unwrap();
        let server_dir = tmp.path().join("server");
        ensure_pki(&server_dir, &[]).unwrap();
        let client = ensure_kubelet_client_cert(&server_dir).unwrap();
        let serving = ensure_kubelet_serving_cert(
            &tmp.path().join("agent"),
            &server_dir,
            "edge-node-1",
            &["10.20.30.40".parse().unwrap()],
        )
        .unwrap();
        (tmp, client, serving)
    }

    #[test]
    fn client_certificate_is_the_api_server_in_system_masters() {
        let (tmp, client, _) = setup();
        let der = CertificateDer::from_pem_slice(client.cert_pem.as_bytes()).unwrap();
        assert_eq!(
            identity_from_cert(&der).unwrap(),
            Identity {
                user: "kube-apiserver-kubelet-client".into(),
                groups: vec!["system:masters".into()],
            }
        );
        // Reused, not re-issued.
        let again = ensure_kubelet_client_cert(&tmp.path().join("server")).unwrap();
        assert_eq!(again.cert_pem, client.cert_pem);
        assert_eq!(again.key_pem, client.key_pem);
        let pki = ensure_pki(&tmp.path().join("server"), &[]).unwrap();
        assert_eq!(client.peer_ca_pem, pki.server_ca_cert_pem);
        assert!(!format!("{client:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn serving_certificate_names_the_node_and_is_reused() {
        let (tmp, client, serving) = setup();
        for name in ["edge-node-1", "localhost", "127.0.0.1", "10.20.30.40"] {
            connect(
                kubelet_server_tls_config(&serving).unwrap(),
                kubelet_client_tls_config(&client).unwrap(),
                name,
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let err = connect(
            kubelet_server_tls_config(&serving).unwrap(),
            kubelet_client_tls_config(&client).unwrap(),
            "10.9.9.9",
        )
        .unwrap_err();
        assert!(err.starts_with("client:"), "{err}");

        let server_dir = tmp.path().join("server");
        let agent_dir = tmp.path().join("agent");
        let ips = ["10.20.30.40".parse().unwrap()];
        let again =
            ensure_kubelet_serving_cert(&agent_dir, &server_dir, "edge-node-1", &ips).unwrap();
        assert_eq!(again.cert_pem, serving.cert_pem);
        // A new address re-issues it, keeping the old one.
        let more = ["10.20.30.41".parse().unwrap()];
        let moved =
            ensure_kubelet_serving_cert(&agent_dir, &server_dir, "edge-node-1", &more).unwrap();
        assert_ne!(moved.cert_pem, serving.cert_pem);
        for name in ["10.20.30.40", "10.20.30.41"] {
            connect(
                kubelet_server_tls_config(&moved).unwrap(),
                kubelet_client_tls_config(&client).unwrap(),
                name,
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    /// Replaces `dir/cert` with a certificate for the same key and `spec`, valid 10 days.
    fn shorten(dir: &Path, cert: &str, key: &str, ca: &CertificateAuthority, spec: LeafSpec<'_>) {
        let key =
            rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join(key)).unwrap()).unwrap();
        let short = ca.issue_for_key(&spec, key).unwrap();
        assert!(crate::expires_within(&short.cert_pem, crate::CERTIFICATE_RENEW_BEFORE).unwrap());
        std::fs::write(dir.join(cert), short.cert_pem).unwrap();
    }

    #[test]
    fn kubelet_certificates_close_to_expiry_are_renewed_with_their_keys() {
        let (tmp, client, serving) = setup();
        let server_dir = tmp.path().join("server");
        let agent_dir = tmp.path().join("agent");
        let ips = ["10.20.30.40".parse().unwrap()];
        let groups = [ADMIN_GROUP.to_string()];
        shorten(
            &server_dir,
            KUBELET_CLIENT_CERT,
            KUBELET_CLIENT_KEY,
            &load_ca(&server_dir, CLIENT_CA_CERT, CLIENT_CA_KEY).unwrap(),
            LeafSpec {
                common_name: KUBELET_CLIENT_USER,
                organizations: &groups,
                sans: Vec::new(),
                usage: Usage::Client,
                validity: time::Duration::days(10),
            },
        );
        shorten(
            &agent_dir,
            KUBELET_SERVING_CERT,
            KUBELET_SERVING_KEY,
            &load_ca(&server_dir, SERVER_CA_CERT, SERVER_CA_KEY).unwrap(),
            LeafSpec {
                common_name: "edge-node-1",
                organizations: &[],
                sans: kubelet_serving_sans("edge-node-1", &ips).unwrap(),
                usage: Usage::Server,
                validity: time::Duration::days(10),
            },
        );

        let client2 = ensure_kubelet_client_cert(&server_dir).unwrap();
        let serving2 =
            ensure_kubelet_serving_cert(&agent_dir, &server_dir, "edge-node-1", &ips).unwrap();
        for (old, new) in [(&client, &client2), (&serving, &serving2)] {
            assert_ne!(old.cert_pem, new.cert_pem);
            assert_eq!(old.key_pem, new.key_pem);
            assert!(
                !crate::expires_within(&new.cert_pem, crate::CERTIFICATE_RENEW_BEFORE).unwrap()
            );
        }
        assert_eq!(
            std::fs::read_to_string(agent_dir.join(KUBELET_SERVING_CERT)).unwrap(),
            serving2.cert_pem
        );
        // The renewed pair still talks.
        connect(
            kubelet_server_tls_config(&serving2).unwrap(),
            kubelet_client_tls_config(&client2).unwrap(),
            "edge-node-1",
        )
        .unwrap();
        // And a second start leaves them alone.
        let client3 = ensure_kubelet_client_cert(&server_dir).unwrap();
        assert_eq!(client3.cert_pem, client2.cert_pem);
    }

    #[test]
    fn agent_accepts_only_the_api_server() {
        let (tmp, _, serving) = setup();
        let server_dir = tmp.path().join("server");
        let pki = ensure_pki(&server_dir, &[]).unwrap();
        // The admin (system:masters) may.
        let admin = KubeletTls {
            cert_pem: pki.admin_cert_pem.clone(),
            key_pem: pki.admin_key_pem.clone(),
            peer_ca_pem: pki.server_ca_cert_pem.clone(),
        };
        connect(
            kubelet_server_tls_config(&serving).unwrap(),
            kubelet_client_tls_config(&admin).unwrap(),
            "localhost",
        )
        .unwrap();
        // An ordinary user of the same client CA may not.
        let (cert, key) = issue_client_cert(&server_dir, "alice", &["dev".into()]).unwrap();
        let alice = KubeletTls {
            cert_pem: cert,
            key_pem: key,
            peer_ca_pem: pki.server_ca_cert_pem.clone(),
        };
        let err = connect(
            kubelet_server_tls_config(&serving).unwrap(),
            kubelet_client_tls_config(&alice).unwrap(),
            "localhost",
        )
        .unwrap_err();
        assert!(err.starts_with("server:"), "{err}");
        // Nor the API server of another cluster.
        let other = tempfile::tempdir().unwrap();
        ensure_pki(other.path(), &[]).unwrap();
        let foreign = ensure_kubelet_client_cert(other.path()).unwrap();
        let foreign = KubeletTls {
            peer_ca_pem: pki.server_ca_cert_pem.clone(),
            ..foreign
        };
        let err = connect(
            kubelet_server_tls_config(&serving).unwrap(),
            kubelet_client_tls_config(&foreign).unwrap(),
            "localhost",
        )
        .unwrap_err();
        assert!(err.starts_with("server:"), "{err}");
    }

    #[test]
    fn no_client_certificate_is_rejected() {
        let (_tmp, client, serving) = setup();
        let mut roots = RootCertStore::empty();
        for ca in certificates(&client.peer_ca_pem, "ca").unwrap() {
            roots.add(ca).unwrap();
        }
        let anonymous =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[&TLS13])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        let err = connect(
            kubelet_server_tls_config(&serving).unwrap(),
            anonymous,
            "localhost",
        )
        .unwrap_err();
        assert!(err.starts_with("server:"), "{err}");
    }

    #[test]
    fn issued_serving_certificate_needs_a_name() {
        let tmp = tempfile::tempdir().unwrap();
        ensure_pki(tmp.path(), &[]).unwrap();
        assert!(issue_kubelet_serving_cert(tmp.path(), "", &[]).is_err());
        let (cert, _) = issue_kubelet_serving_cert(tmp.path(), "n1", &[]).unwrap();
        assert!(cert.contains("BEGIN CERTIFICATE"));
        assert!(ensure_kubelet_client_cert(&tmp.path().join("missing")).is_err());
    }
}
