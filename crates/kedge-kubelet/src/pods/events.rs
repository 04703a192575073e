//! Events the agent reports about pods (`Pulled`, `Created`, `Started`,
//! `Killing`, `BackOff`, `Unhealthy`, ...), as upstream's kubelet records
//! them: core/v1 Events with `source.component: kubelet`, the node as host,
//! and repeats of the same event folded into one object whose `count` and
//! `lastTimestamp` advance (client-go's event correlator).
//!
//! Recording never blocks a pod worker: events go through a bounded queue
//! to one task that writes them; when the queue is full they are dropped
//! (and logged), as client-go's broadcaster does.

use std::collections::HashMap;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::api::ApiClient;

pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

const QUEUE: usize = 1000;
/// Folded events kept to find repeats (client-go keeps 4096).
const CACHE: usize = 4096;

#[derive(Debug, Clone)]
struct Record {
    namespace: String,
    involved: Value,
    kind: &'static str,
    reason: String,
    message: String,
}

/// Sends events for the node's pods. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EventRecorder {
    tx: mpsc::Sender<Record>,
}

impl EventRecorder {
    /// Starts the writer task.
    pub fn start(api: ApiClient, node: String) -> EventRecorder {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_events(api, node, rx));
        EventRecorder { tx }
    }

    /// A recorder that drops everything (unit tests).
    pub fn discard() -> EventRecorder {
        let (tx, mut rx) = mpsc::channel::<Record>(QUEUE);
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        EventRecorder { tx }
    }

    /// Records an event about `pod`, or about one of its containers when
    /// `field_path` is `spec.containers{name}` / `spec.initContainers{name}`.
    pub fn pod_event(
        &self,
        pod: &Value,
        field_path: Option<&str>,
        kind: &'static str,
        reason: &str,
        message: impl Into<String>,
    ) {
        let md = &pod["metadata"];
        let mut involved = json!({
            "kind": "Pod",
            "namespace": md["namespace"],
            "name": md["name"],
            "uid": md["uid"],
            "apiVersion": "v1",
            "resourceVersion": md["resourceVersion"],
        });
        if let Some(fp) = field_path {
            involved["fieldPath"] = json!(fp);
        }
        let record = Record {
            namespace: md["namespace"].as_str().unwrap_or("default").to_owned(),
            involved,
            kind,
            reason: reason.to_owned(),
            message: message.into(),
        };
        if let Err(e) = self.tx.try_send(record) {
            tracing::warn!(error = %e, "event queue full: dropping an event");
        }
    }
}

/// The field path of a container: `spec.containers{name}`.
pub fn container_field_path(pod: &Value, name: &str) -> String {
    let init = pod["spec"]["initContainers"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["name"] == name));
    if init {
        format!("spec.initContainers{{{name}}}")
    } else {
        format!("spec.containers{{{name}}}")
    }
}

async fn write_events(api: ApiClient, node: String, mut rx: mpsc::Receiver<Record>) {
    // (namespace, involved uid, fieldPath, reason, message, type) → (name, count)
    let mut seen: HashMap<String, (String, i64)> = HashMap::new();
    while let Some(r) = rx.recv().await {
        let key = format!(
            "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
            r.namespace,
            r.involved["uid"].as_str().unwrap_or(""),
            r.involved["fieldPath"].as_str().unwrap_or(""),
            r.reason,
            r.message,
            r.kind
        );
        let now = jiff::Timestamp::now();
        let now_s = format!("{}", now.round(jiff::Unit::Second).unwrap_or(now));
        if let Some((name, count)) = seen.get(&key).cloned() {
            let patch = json!({"count": count + 1, "lastTimestamp": now_s});
            let path = format!("/api/v1/namespaces/{}/events/{}", r.namespace, name);
            match api.merge_patch(&path, &patch).await {
                Ok(_) => {
                    seen.insert(key, (name, count + 1));
                    continue;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "folding into event {name} failed; creating a new one")
                }
            }
        }
        let name = format!(
            "{}.{:x}",
            r.involved["name"].as_str().unwrap_or("pod"),
            now.as_nanosecond()
        );
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": r.namespace},
            "involvedObject": r.involved,
            "reason": r.reason,
            "message": r.message,
            "source": {"component": "kubelet", "host": node},
            "firstTimestamp": now_s,
            "lastTimestamp": now_s,
            "count": 1,
            "type": r.kind,
            "eventTime": null,
            "reportingComponent": "kubelet",
            "reportingInstance": node,
        });
        let path = format!("/api/v1/namespaces/{}/events", r.namespace);
        match api.post(&path, &event).await {
            Ok(_) => {
                if seen.len() >= CACHE {
                    seen.clear();
                }
                seen.insert(key, (name, 1));
            }
            Err(e) => tracing::warn!(error = %e, reason = %r.reason, "cannot record an event"),
        }
    }
}
