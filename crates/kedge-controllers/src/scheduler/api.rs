//! The scheduler's writes: bindings, PodScheduled status patches,
//! preemption (a DisruptionTarget condition, then a graceful delete) and
//! events. Only the fields the scheduler owns are written.

use serde_json::{json, Value};

use super::Error;

#[derive(Clone)]
pub struct SchedulerApi {
    client: kube::Client,
}

impl std::fmt::Debug for SchedulerApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SchedulerApi")
    }
}

const SMP: &str = "application/strategic-merge-patch+json";
const MERGE: &str = "application/merge-patch+json";

impl SchedulerApi {
    pub fn new(client: kube::Client) -> SchedulerApi {
        SchedulerApi { client }
    }

    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<&Value>,
        what: &str,
    ) -> Result<(), Error> {
        let mut b = http::Request::builder().method(method).uri(path);
        if let Some(ct) = content_type {
            b = b.header("content-type", ct);
        }
        let bytes = match body {
            Some(v) => serde_json::to_vec(v).map_err(|e| Error::Encode {
                what: what.to_string(),
                source: e,
            })?,
            None => Vec::new(),
        };
        let req = b.body(bytes).map_err(|e| Error::Request {
            what: what.to_string(),
            source: e,
        })?;
        self.client
            .request_text(req)
            .await
            .map(|_| ())
            .map_err(|e| Error::Api {
                what: what.to_string(),
                source: Box::new(e),
            })
    }

    /// POST pods/{name}/binding: the API server sets `spec.nodeName` and
    /// PodScheduled=True.
    pub async fn bind(&self, ns: &str, name: &str, uid: &str, node: &str) -> Result<(), Error> {
        let body = json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": ns, "uid": uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        self.send(
            "POST",
            &format!("/api/v1/namespaces/{ns}/pods/{name}/binding"),
            Some("application/json"),
            Some(&body),
            &format!("binding pod {ns}/{name} to {node}"),
        )
        .await
    }

    /// A strategic merge patch of the pod's status.
    pub async fn patch_status(&self, ns: &str, name: &str, status: &Value) -> Result<(), Error> {
        self.send(
            "PATCH",
            &format!("/api/v1/namespaces/{ns}/pods/{name}/status"),
            Some(SMP),
            Some(&json!({"status": status})),
            &format!("updating the status of pod {ns}/{name}"),
        )
        .await
    }

    /// A graceful delete (the pod's own grace period), only of this uid.
    pub async fn delete_pod(&self, ns: &str, name: &str, uid: &str) -> Result<(), Error> {
        let body = json!({
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"uid": uid},
        });
        self.send(
            "DELETE",
            &format!("/api/v1/namespaces/{ns}/pods/{name}"),
            Some("application/json"),
            Some(&body),
            &format!("deleting pod {ns}/{name}"),
        )
        .await
    }

    pub async fn create_event(&self, ns: &str, event: &Value) -> Result<(), Error> {
        self.send(
            "POST",
            &format!("/api/v1/namespaces/{ns}/events"),
            Some("application/json"),
            Some(event),
            "creating an event",
        )
        .await
    }

    pub async fn merge_patch_event(
        &self,
        ns: &str,
        name: &str,
        patch: &Value,
    ) -> Result<(), Error> {
        self.send(
            "PATCH",
            &format!("/api/v1/namespaces/{ns}/events/{name}"),
            Some(MERGE),
            Some(patch),
            "updating an event",
        )
        .await
    }
}

/// The HTTP status of a failed API call, if it got that far.
pub fn status_code(e: &Error) -> Option<u16> {
    match e {
        Error::Api { source, .. } => match source.as_ref() {
            kube::Error::Api(s) => Some(s.code),
            _ => None,
        },
        _ => None,
    }
}
