//! Raw JSON requests for the node agent through a `kube::Client` (the API
//! server's router in-process, or HTTPS). Objects stay `serde_json::Value`:
//! the agent writes only patches of the fields it owns, never a typed
//! round-trip of a whole object.

use futures::{Stream, StreamExt};
use http::{Method, Request};
use kube::core::WatchEvent;
use serde_json::Value;

use super::{NodeError, Result};

/// A thin JSON client. Cheap to clone.
#[derive(Clone)]
pub struct NodeApi {
    client: kube::Client,
}

impl std::fmt::Debug for NodeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeApi")
    }
}

fn api_error(method: &Method, path: &str, e: kube::Error) -> NodeError {
    match e {
        kube::Error::Api(s) => NodeError::Api {
            method: method.clone(),
            path: path.to_owned(),
            code: s.code,
            reason: s.reason.clone(),
            message: s.message.clone(),
        },
        source => NodeError::Transport {
            method: method.clone(),
            path: path.to_owned(),
            source,
        },
    }
}

impl NodeApi {
    pub fn new(client: kube::Client) -> NodeApi {
        NodeApi { client }
    }

    fn request(
        method: &Method,
        path: &str,
        content_type: Option<&str>,
        body: &Value,
    ) -> Result<Request<Vec<u8>>> {
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(http::header::ACCEPT, "application/json");
        if let Some(ct) = content_type {
            builder = builder.header(http::header::CONTENT_TYPE, ct);
        }
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(body).unwrap_or_default()
        };
        builder.body(bytes).map_err(|source| NodeError::Request {
            path: path.to_owned(),
            source,
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: &Value,
    ) -> Result<Value> {
        let req = Self::request(&method, path, content_type, body)?;
        self.client
            .request::<Value>(req)
            .await
            .map_err(|e| api_error(&method, path, e))
    }

    /// `GET`, with NotFound as `None`.
    pub async fn get(&self, path: &str) -> Result<Option<Value>> {
        match self.send(Method::GET, path, None, &Value::Null).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.code() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.send(Method::POST, path, Some("application/json"), body)
            .await
    }

    pub async fn merge_patch(&self, path: &str, patch: &Value) -> Result<Value> {
        self.send(
            Method::PATCH,
            path,
            Some("application/merge-patch+json"),
            patch,
        )
        .await
    }

    pub async fn strategic_patch(&self, path: &str, patch: &Value) -> Result<Value> {
        self.send(
            Method::PATCH,
            path,
            Some("application/strategic-merge-patch+json"),
            patch,
        )
        .await
    }

    /// A watch (`path` has `watch=true`): its events as they come.
    pub async fn watch(
        &self,
        path: &str,
    ) -> Result<impl Stream<Item = Result<WatchEvent<Value>>> + Send + use<>> {
        let method = Method::GET;
        let req = Self::request(&method, path, None, &Value::Null)?;
        let events = self
            .client
            .request_events::<Value>(req)
            .await
            .map_err(|e| api_error(&method, path, e))?;
        let path = path.to_owned();
        Ok(events.map(move |r: kube::Result<WatchEvent<Value>>| {
            r.map_err(|e| api_error(&Method::GET, &path, e))
        }))
    }
}
