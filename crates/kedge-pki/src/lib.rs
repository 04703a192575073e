//! kedge's public key infrastructure, modelled on K3s's.
//!
//! This crate owns the cluster's certificates under `<data-dir>/server/tls`: the
//! server CA and the API server's serving certificate, the client CA and the admin
//! client certificate ([`ensure_pki`]); client certificates for other users and
//! node agents ([`issue_client_cert`]); the identity a client certificate carries
//! ([`identity_from_cert`]); what a stored certificate says and when it expires
//! ([`certificates_in`], [`expires_within`]); the API server's rustls configuration
//! ([`server_tls_config`]); and the admin kubeconfig ([`kubeconfig_yaml`],
//! [`write_kubeconfig`]). Keys are ECDSA P-256, signed with rcgen on ring; every
//! file is written atomically, private keys with mode 0600.
//!
//! It must not touch anything else: it opens no sockets, decides no authorization
//! (that is the API server's), and writes only inside the TLS directory and the
//! kubeconfig path it is given. The CAs are never replaced once they exist; leaf
//! certificates are renewed (keeping their keys) when they come within 90 days of
//! their expiry.

mod atomic_file;
mod authority;
mod cluster;
mod error;
mod identity;
mod inspect;
mod kubeconfig;
mod kubelet;
mod sakey;
mod san;
mod subject;
mod tls;

pub use cluster::{
    ensure_pki, issue_client_cert, issue_client_cert_valid_for, ClusterPki, ADMIN_CERT,
    ADMIN_GROUP, ADMIN_KEY, ADMIN_USER, CLIENT_CA_CERT, CLIENT_CA_KEY, SERVER_CA_CERT,
    SERVER_CA_KEY, SERVING_CERT, SERVING_COMMON_NAME, SERVING_KEY,
};
pub use error::{Error, Result};
pub use identity::{identity_from_cert, Identity};
pub use inspect::{
    certificates_in, expires_within, format_rfc3339, format_table_time, unix_seconds,
    CertificateInfo, CertificateStatus, CERTIFICATE_RENEW_BEFORE,
};
pub use kubeconfig::{kubeconfig_yaml, write_kubeconfig};
pub use kubelet::{
    ensure_kubelet_client_cert, ensure_kubelet_serving_cert, issue_kubelet_serving_cert,
    kubelet_client_tls_config, kubelet_server_tls_config, may_call_kubelet, KubeletTls,
    KUBELET_CLIENT_CERT, KUBELET_CLIENT_KEY, KUBELET_CLIENT_USER, KUBELET_SERVING_CERT,
    KUBELET_SERVING_KEY,
};
pub use sakey::{
    ensure_service_account_key, JwtError, ServiceAccountKey, ServiceAccountKeyError,
    SERVICE_ACCOUNT_KEY,
};
pub use tls::server_tls_config;
