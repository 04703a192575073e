//! Raw JSON requests: controllers write with patches of the fields they own
//! and create objects from raw templates, so nothing unknown to k8s-openapi
//! is lost on the way.

use http::{header, Method, Request};
use serde_json::Value;

/// How a patch body is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Strategic,
    Json,
}

impl PatchType {
    fn content_type(self) -> &'static str {
        match self {
            PatchType::Merge => "application/merge-patch+json",
            PatchType::Strategic => "application/strategic-merge-patch+json",
            PatchType::Json => "application/json-patch+json",
        }
    }
}

/// The path of a namespaced collection: `/api/v1/namespaces/ns/pods`.
pub fn collection_path(api_version: &str, plural: &str, namespace: &str) -> String {
    let prefix = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    format!("{prefix}/namespaces/{namespace}/{plural}")
}

fn request(
    method: Method,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> kube::Result<Request<Vec<u8>>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::ACCEPT, "application/json")
        .body(body)
        .map_err(kube::Error::HttpError)
}

fn encode(v: &Value) -> kube::Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(kube::Error::SerdeError)
}

pub async fn get(client: &kube::Client, path: &str) -> kube::Result<Value> {
    client
        .request(request(Method::GET, path, "application/json", Vec::new())?)
        .await
}

pub async fn create(client: &kube::Client, collection: &str, body: &Value) -> kube::Result<Value> {
    client
        .request(request(
            Method::POST,
            collection,
            "application/json",
            encode(body)?,
        )?)
        .await
}

pub async fn patch(
    client: &kube::Client,
    path: &str,
    patch_type: PatchType,
    body: &Value,
) -> kube::Result<Value> {
    client
        .request(request(
            Method::PATCH,
            path,
            patch_type.content_type(),
            encode(body)?,
        )?)
        .await
}

/// Deletes `path`, only if it still has `uid` when given.
pub async fn delete(client: &kube::Client, path: &str, uid: Option<&str>) -> kube::Result<()> {
    let body = match uid {
        Some(uid) => encode(&serde_json::json!({
            "kind": "DeleteOptions", "apiVersion": "v1",
            "preconditions": {"uid": uid}
        }))?,
        None => Vec::new(),
    };
    let _: Value = client
        .request(request(Method::DELETE, path, "application/json", body)?)
        .await?;
    Ok(())
}

fn status(e: &kube::Error) -> Option<&kube::core::Status> {
    match e {
        kube::Error::Api(s) => Some(s),
        _ => None,
    }
}

pub fn is_not_found(e: &kube::Error) -> bool {
    status(e).is_some_and(|s| s.code == 404)
}

pub fn is_already_exists(e: &kube::Error) -> bool {
    status(e).is_some_and(|s| s.code == 409 && s.reason == "AlreadyExists")
}

pub fn is_conflict(e: &kube::Error) -> bool {
    status(e).is_some_and(|s| s.code == 409)
}

/// `apierrors.HasStatusCause(err, NamespaceTerminatingCause)`.
pub fn is_namespace_terminating(e: &kube::Error) -> bool {
    status(e).is_some_and(|s| {
        s.details
            .as_ref()
            .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
    })
}

/// The message a status error carries, for conditions and events.
pub fn message(e: &kube::Error) -> String {
    match status(e) {
        Some(s) if !s.message.is_empty() => s.message.clone(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_paths() {
        assert_eq!(
            collection_path("v1", "pods", "ns"),
            "/api/v1/namespaces/ns/pods"
        );
        assert_eq!(
            collection_path("apps/v1", "replicasets", "ns"),
            "/apis/apps/v1/namespaces/ns/replicasets"
        );
    }
}
