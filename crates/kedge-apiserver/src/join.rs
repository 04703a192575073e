//! Joining nodes: what `kedge agent` asks the server for, as K3s's agents ask
//! theirs (`/cacerts`, `/v1-k3s/client-kubelet.crt`, `serving-kubelet.crt`).
//!
//! - `GET /cacerts` (no authentication): the server CA in PEM. A join token of
//!   the form `K10<sha256 of this body>::server:<secret>` lets the agent check
//!   it talks to the right server before it sends the secret.
//! - `POST /v1-kedge/node-credentials` (the cluster token, or any identity in
//!   `system:masters`): a client certificate for `system:node:<name>` in
//!   `system:nodes`, a serving certificate for the agent's HTTPS API (names:
//!   the node name and its addresses), and both CAs. Request body:
//!   `{"nodeName": "gw-17", "addresses": ["10.0.0.17"]}`.
//!
//! Certificates are signed from the CAs under the server's TLS directory; the
//! server stores nothing about the node here (the agent registers its Node
//! through the API like any kubelet).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use http::{header, Request, Response, StatusCode};
use kedge_api::ApiError;
use serde::{Deserialize, Serialize};

use crate::auth::User;
use crate::negotiate::{self, Output};
use crate::server::{ApiServer, Body};

/// The CA bundle agents fetch before they trust the server.
pub const CACERTS_PATH: &str = "/cacerts";
/// Where agents get their certificates.
pub const CREDENTIALS_PATH: &str = "/v1-kedge/node-credentials";

/// Largest request body accepted for a credentials request.
const MAX_BODY: usize = 64 * 1024;

/// Where the server's CAs live, so that joining nodes can be given
/// certificates (`<data-dir>/server/tls`).
#[derive(Debug, Clone)]
pub struct NodeJoin {
    pub server_tls_dir: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CredentialsRequest {
    node_name: String,
    #[serde(default)]
    addresses: Vec<String>,
}

/// What a joining agent receives.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeCredentials {
    /// Signs the API server's serving certificate and the agents' ones.
    pub server_ca: String,
    /// Signs client certificates (the API server's, when it calls the agent).
    pub client_ca: String,
    pub client_certificate: String,
    pub client_key: String,
    pub serving_certificate: String,
    pub serving_key: String,
}

pub(crate) fn serves(path: &str) -> bool {
    path == CACERTS_PATH || path == CREDENTIALS_PATH
}

/// `GET /cacerts`, answered before authentication.
pub(crate) fn cacerts(srv: &ApiServer, method: &http::Method) -> Response<Body> {
    if method != http::Method::GET {
        return negotiate::error_response(&ApiError::method_not_allowed());
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(srv.config.root_ca_pem.clone()))
        .unwrap_or_else(|_| negotiate::error_response(&ApiError::internal("response")))
}

/// `POST /v1-kedge/node-credentials`.
pub(crate) async fn credentials(
    srv: Arc<ApiServer>,
    user: User,
    req: Request<Body>,
) -> Response<Body> {
    match issue(&srv, &user, req).await {
        Ok(c) => match serde_json::to_value(&c) {
            Ok(v) => negotiate::respond(StatusCode::OK, Output::Json, &v),
            Err(e) => negotiate::error_response(&ApiError::internal(e)),
        },
        Err(e) => negotiate::error_response(&e),
    }
}

async fn issue(
    srv: &ApiServer,
    user: &User,
    req: Request<Body>,
) -> Result<NodeCredentials, ApiError> {
    if req.method() != http::Method::POST {
        return Err(ApiError::method_not_allowed());
    }
    if !user.groups.iter().any(|g| g == kedge_pki::ADMIN_GROUP) {
        return Err(ApiError::forbidden(
            "",
            "nodes",
            "",
            &format!(
                "User \"{}\" cannot request node credentials: use the cluster token (<data-dir>/server/node-token on the server)",
                user.name
            ),
        ));
    }
    let Some(join) = srv.node_join.get() else {
        return Err(ApiError::not_found_path());
    };
    let body = axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|_| {
            ApiError::bad_request(format!(
                "request body larger than {MAX_BODY} bytes or unreadable"
            ))
        })?;
    let request: CredentialsRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid node credentials request: {e}")))?;
    let problems = kedge_api::names::is_dns1123_subdomain(&request.node_name);
    if !problems.is_empty() {
        return Err(ApiError::bad_request(format!(
            "invalid nodeName {:?}: {}",
            request.node_name,
            problems.join("; ")
        )));
    }
    let mut addresses: Vec<IpAddr> = Vec::new();
    for a in &request.addresses {
        let ip = a.parse().map_err(|_| {
            ApiError::bad_request(format!("invalid address {a:?}: not an IP address"))
        })?;
        addresses.push(ip);
    }
    let dir = join.server_tls_dir.clone();
    let name = request.node_name.clone();
    // Key generation and signing: keep them off the async workers.
    let issued = tokio::task::spawn_blocking(move || -> kedge_pki::Result<_> {
        let (client_certificate, client_key) = kedge_pki::issue_client_cert(
            &dir,
            &format!("system:node:{name}"),
            &["system:nodes".to_string()],
        )?;
        let (serving_certificate, serving_key) =
            kedge_pki::issue_kubelet_serving_cert(&dir, &name, &addresses)?;
        let client_ca_path = dir.join(kedge_pki::CLIENT_CA_CERT);
        let client_ca =
            std::fs::read_to_string(&client_ca_path).map_err(|source| kedge_pki::Error::Io {
                action: "read",
                path: client_ca_path,
                source,
            })?;
        Ok((
            client_certificate,
            client_key,
            serving_certificate,
            serving_key,
            client_ca,
        ))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    let (client_certificate, client_key, serving_certificate, serving_key, client_ca) = issued;
    tracing::info!(node = %request.node_name, addresses = ?request.addresses, by = %user.name, "issued node credentials");
    Ok(NodeCredentials {
        server_ca: srv.config.root_ca_pem.clone(),
        client_ca,
        client_certificate,
        client_key,
        serving_certificate,
        serving_key,
    })
}
