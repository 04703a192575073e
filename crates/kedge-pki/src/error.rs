use std::path::PathBuf;

/// Everything that can go wrong while creating, loading or using the cluster PKI.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation failed.
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// rcgen could not generate a key or a certificate.
    #[error("generating {what}")]
    Generate {
        what: String,
        #[source]
        source: rcgen::Error,
    },

    /// A private key could not be loaded.
    #[error("loading private key {what}")]
    LoadKey {
        what: String,
        #[source]
        source: rcgen::Error,
    },

    /// A PEM document held no usable certificate or key.
    #[error("reading PEM from {what}")]
    Pem {
        what: String,
        #[source]
        source: rustls_pki_types::pem::Error,
    },

    /// A certificate could not be parsed as X.509.
    #[error("parsing certificate {what}: {reason}")]
    ParseCertificate { what: String, reason: String },

    /// A CA certificate exists without its key, or the other way round.
    #[error(
        "CA certificate {cert} and key {key} must both exist or both be absent: \
         restore the missing file, or remove both to generate a new CA \
         (which invalidates every certificate it signed)"
    )]
    IncompleteCa { cert: PathBuf, key: PathBuf },

    /// A CA certificate does not belong to the private key stored next to it.
    #[error("CA certificate {cert} does not match its private key {key}")]
    CaKeyMismatch { cert: PathBuf, key: PathBuf },

    /// A requested subject alternative name is neither an IP address nor a DNS name.
    #[error("invalid subject alternative name {san:?}: {reason}")]
    InvalidSan { san: String, reason: &'static str },

    /// A certificate subject cannot name a Kubernetes user.
    #[error("certificate subject: {reason}")]
    InvalidSubject { reason: String },

    /// A requested certificate lifetime is zero, negative or absurdly long.
    #[error("invalid certificate lifetime: {reason}")]
    InvalidValidity { reason: String },

    /// rustls rejected the certificate, key or protocol settings.
    #[error("building TLS server configuration")]
    Tls(#[source] rustls::Error),

    /// The client certificate verifier could not be built from the client CA.
    #[error("building client certificate verifier")]
    ClientVerifier(#[source] rustls::server::VerifierBuilderError),

    /// The kubeconfig could not be serialized.
    #[error("serializing kubeconfig")]
    Kubeconfig(#[source] serde_yaml::Error),
}

/// Result of this crate's operations.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn generate(what: impl Into<String>, source: rcgen::Error) -> Self {
        Error::Generate {
            what: what.into(),
            source,
        }
    }
}
