//! The agent's view of the API: raw JSON requests through a `kube::Client`
//! (in-process through the API server's router when embedded, HTTPS when
//! remote). Objects stay `serde_json::Value` so that nothing the agent does
//! not know about is dropped when it writes status back.

use http::{Method, Request};
use serde_json::Value;

/// Errors of API calls.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API answered with a Status error.
    #[error("{method} {path}: {code} {reason}: {message}")]
    Status {
        method: Method,
        path: String,
        code: u16,
        reason: String,
        message: String,
    },
    #[error("{method} {path}: {source}")]
    Transport {
        method: Method,
        path: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot build the request {path}: {source}")]
    Request {
        path: String,
        #[source]
        source: http::Error,
    },
}

impl ApiError {
    pub fn code(&self) -> Option<u16> {
        match self {
            ApiError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }
    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409)
    }
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// A thin JSON client. Cheap to clone.
#[derive(Clone)]
pub struct ApiClient {
    client: kube::Client,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiClient")
    }
}

impl ApiClient {
    pub fn new(client: kube::Client) -> ApiClient {
        ApiClient { client }
    }

    pub fn kube(&self) -> &kube::Client {
        &self.client
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Value> {
        let mut builder = Request::builder().method(method.clone()).uri(path);
        if let Some(ct) = content_type {
            builder = builder.header(http::header::CONTENT_TYPE, ct);
        }
        builder = builder.header(http::header::ACCEPT, "application/json");
        let req = builder.body(body).map_err(|source| ApiError::Request {
            path: path.to_owned(),
            source,
        })?;
        match self.client.request::<Value>(req).await {
            Ok(v) => Ok(v),
            Err(kube::Error::Api(s)) => Err(ApiError::Status {
                method,
                path: path.to_owned(),
                code: s.code,
                reason: s.reason.clone(),
                message: s.message.clone(),
            }),
            Err(source) => Err(ApiError::Transport {
                method,
                path: path.to_owned(),
                source,
            }),
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.send(Method::GET, path, None, Vec::new()).await
    }

    /// `GET`, with NotFound as `None`.
    pub async fn get_opt(&self, path: &str) -> Result<Option<Value>> {
        match self.get(path).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        self.send(Method::POST, path, Some("application/json"), bytes)
            .await
    }

    pub async fn merge_patch(&self, path: &str, patch: &Value) -> Result<Value> {
        let bytes = serde_json::to_vec(patch).unwrap_or_default();
        self.send(
            Method::PATCH,
            path,
            Some("application/merge-patch+json"),
            bytes,
        )
        .await
    }

    pub async fn strategic_patch(&self, path: &str, patch: &Value) -> Result<Value> {
        let bytes = serde_json::to_vec(patch).unwrap_or_default();
        self.send(
            Method::PATCH,
            path,
            Some("application/strategic-merge-patch+json"),
            bytes,
        )
        .await
    }

    pub async fn delete(&self, path: &str, options: &Value) -> Result<Value> {
        let bytes = serde_json::to_vec(options).unwrap_or_default();
        self.send(Method::DELETE, path, Some("application/json"), bytes)
            .await
    }
}

/// The API path of a namespaced core object.
pub fn core_path(plural: &str, namespace: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/{plural}/{name}")
}
