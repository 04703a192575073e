//! The API server's TLS configuration.

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::version::{TLS12, TLS13};
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::cluster::ClusterPki;
use crate::error::{Error, Result};

/// The API server's rustls configuration: TLS 1.2 and 1.3 with the ring provider,
/// the serving certificate followed by the server CA, ALPN `h2` and `http/1.1`.
///
/// Client certificates are optional (bearer tokens and anonymous requests are also
/// authenticated, later, by the API server), but one that is presented must chain to
/// the client CA, or the handshake fails. Read the identity of a verified client
/// with [`crate::identity_from_cert`] on the connection's first peer certificate.
pub fn server_tls_config(pki: &ClusterPki) -> Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    let mut client_roots = RootCertStore::empty();
    for ca in certificates(&pki.client_ca_cert_pem, "client CA")? {
        client_roots.add(ca).map_err(Error::Tls)?;
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(client_roots), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(Error::ClientVerifier)?;

    let mut chain = certificates(&pki.serving_cert_pem, "serving certificate")?;
    for ca in certificates(&pki.server_ca_cert_pem, "server CA")? {
        if !chain.contains(&ca) {
            chain.push(ca);
        }
    }
    let key = PrivateKeyDer::from_pem_slice(pki.serving_key_pem.as_bytes()).map_err(|source| {
        Error::Pem {
            what: "serving key".into(),
            source,
        }
    })?;

    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS13, &TLS12])
        .map_err(Error::Tls)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(Error::Tls)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Every certificate in a PEM document; at least one.
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
    use rustls::{
        ClientConfig, ClientConnection, Connection, ServerConnection, SupportedProtocolVersion,
    };
    use rustls_pki_types::ServerName;
    use std::io::{Read, Write};

    use super::*;
    use crate::{ensure_pki, identity_from_cert, issue_client_cert, Identity};

    struct Client<'a> {
        trusted_ca_pem: &'a str,
        cert: Option<(&'a str, &'a str)>,
        version: &'static SupportedProtocolVersion,
        server_name: &'a str,
    }

    fn client_config(client: &Client<'_>) -> ClientConfig {
        let mut roots = RootCertStore::empty();
        for ca in certificates(client.trusted_ca_pem, "ca").unwrap() {
            roots.add(ca).unwrap();
        }
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[client.version])
                .unwrap()
                .with_root_certificates(roots);
        let mut config = match client.cert {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    certificates(cert, "client cert").unwrap(),
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        config
    }

    /// Feeds everything `from` wants to send into `to`.
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

    /// An in-memory handshake plus one application record each way. On success,
    /// returns the server side to inspect; on failure, which side failed and why.
    fn connect(
        server_config: ServerConfig,
        client: &Client<'_>,
    ) -> std::result::Result<ServerConnection, String> {
        let name = ServerName::try_from(client.server_name.to_string()).unwrap();
        let mut c =
            Connection::from(ClientConnection::new(Arc::new(client_config(client)), name).unwrap());
        let mut s = Connection::from(ServerConnection::new(Arc::new(server_config)).unwrap());
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
        s.reader().read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
        s.writer().write_all(b"pong").unwrap();
        transfer(&mut s, &mut c).map_err(|e| format!("client: {e}"))?;
        c.reader().read_exact(&mut got).unwrap();
        assert_eq!(&got, b"pong");
        match s {
            Connection::Server(s) => Ok(s),
            Connection::Client(_) => unreachable!("the server side is a server"),
        }
    }

    fn peer_identity(server: &ServerConnection) -> Option<Identity> {
        let certs = server.peer_certificates()?;
        Some(identity_from_cert(certs.first()?).unwrap())
    }

    #[test]
    fn admin_client_certificate_is_accepted_and_seen() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = ensure_pki(tmp.path(), &["10.0.0.5".into()]).unwrap();
        for version in [&TLS13, &TLS12] {
            for server_name in [
                "localhost",
                "127.0.0.1",
                "kubernetes.default.svc",
                "10.0.0.5",
            ] {
                let server = connect(
                    server_tls_config(&pki).unwrap(),
                    &Client {
                        trusted_ca_pem: &pki.server_ca_cert_pem,
                        cert: Some((&pki.admin_cert_pem, &pki.admin_key_pem)),
                        version,
                        server_name,
                    },
                )
                .unwrap_or_else(|e| panic!("{server_name} over {version:?}: {e}"));
                assert_eq!(server.alpn_protocol(), Some(&b"h2"[..]));
                assert_eq!(
                    server.protocol_version(),
                    Some(version.version),
                    "{server_name}"
                );
                assert_eq!(
                    peer_identity(&server),
                    Some(Identity {
                        user: "system:admin".into(),
                        groups: vec!["system:masters".into()],
                    })
                );
            }
        }
    }

    #[test]
    fn client_certificate_is_optional() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = ensure_pki(tmp.path(), &[]).unwrap();
        let server = connect(
            server_tls_config(&pki).unwrap(),
            &Client {
                trusted_ca_pem: &pki.server_ca_cert_pem,
                cert: None,
                version: &TLS13,
                server_name: "localhost",
            },
        )
        .unwrap();
        assert_eq!(peer_identity(&server), None);
    }

    #[test]
    fn issued_client_certificate_is_accepted() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = ensure_pki(tmp.path(), &[]).unwrap();
        let groups = vec!["system:nodes".to_string(), "kedge:agents".into()];
        let (cert, key) = issue_client_cert(tmp.path(), "system:node:gw-1", &groups).unwrap();
        let server = connect(
            server_tls_config(&pki).unwrap(),
            &Client {
                trusted_ca_pem: &pki.server_ca_cert_pem,
                cert: Some((&cert, &key)),
                version: &TLS13,
                server_name: "localhost",
            },
        )
        .unwrap();
        assert_eq!(
            peer_identity(&server),
            Some(Identity {
                user: "system:node:gw-1".into(),
                groups,
            })
        );
    }

    #[test]
    fn client_certificate_from_another_ca_is_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = ensure_pki(tmp.path(), &[]).unwrap();
        let other = tempfile::tempdir().unwrap();
        let foreign = ensure_pki(other.path(), &[]).unwrap();
        for version in [&TLS13, &TLS12] {
            let err = connect(
                server_tls_config(&pki).unwrap(),
                &Client {
                    trusted_ca_pem: &pki.server_ca_cert_pem,
                    cert: Some((&foreign.admin_cert_pem, &foreign.admin_key_pem)),
                    version,
                    server_name: "localhost",
                },
            )
            .map(|_| ())
            .unwrap_err();
            assert!(err.starts_with("server:"), "{err}");
        }
    }

    #[test]
    fn server_certificate_is_rejected_by_clients_of_another_cluster() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = ensure_pki(tmp.path(), &[]).unwrap();
        let other = tempfile::tempdir().unwrap();
        let foreign = ensure_pki(other.path(), &[]).unwrap();
        let err = connect(
            server_tls_config(&pki).unwrap(),
            &Client {
                trusted_ca_pem: &foreign.server_ca_cert_pem,
                cert: None,
                version: &TLS13,
                server_name: "localhost",
            },
        )
        .map(|_| ())
        .unwrap_err();
        assert!(err.starts_with("client:"), "{err}");
    }

    #[test]
    fn serving_certificate_does_not_cover_other_names() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = ensure_pki(tmp.path(), &[]).unwrap();
        let err = connect(
            server_tls_config(&pki).unwrap(),
            &Client {
                trusted_ca_pem: &pki.server_ca_cert_pem,
                cert: None,
                version: &TLS13,
                server_name: "not-this-server.example.com",
            },
        )
        .map(|_| ())
        .unwrap_err();
        assert!(err.starts_with("client:"), "{err}");
    }

    #[test]
    fn garbage_pem_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let mut pki = ensure_pki(tmp.path(), &[]).unwrap();
        pki.client_ca_cert_pem = "nothing here".into();
        assert!(matches!(server_tls_config(&pki), Err(Error::Pem { .. })));
    }
}
