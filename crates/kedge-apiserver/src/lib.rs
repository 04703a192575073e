//! kedge-apiserver owns the Kubernetes HTTP API: TLS termination and
//! authentication, authorization, discovery, the one generic REST handler
//! that serves every resource through its strategy, watch streaming and
//! server-side printing. It talks to storage only through
//! `kedge_store::Store` and must not reach containerd, nodes or the network.

mod admission_priority;
mod admission_tolerations;
mod auth;
mod bootstrap;
mod crd;
mod discovery;
mod eviction;
mod fieldvalidation;
mod handler;
mod ipalloc;
mod join;
mod lifecycle;
mod negotiate;
mod nodeipam;
mod nodeproxy;
mod openapi;
mod path;
mod query;
mod reviews;
mod server;
mod tokens;
mod watch;

pub use admission_tolerations::DEFAULT_TOLERATION_SECONDS;
pub use auth::{Authenticator, User};
pub use ipalloc::Cidr;
pub use join::{NodeCredentials, NodeJoin, CACERTS_PATH, CREDENTIALS_PATH};
pub use server::{ApiServer, Config, VersionInfo};
