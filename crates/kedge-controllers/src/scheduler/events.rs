//! Events the scheduler reports (`Scheduled`, `FailedScheduling`,
//! `Preempted`), as upstream's events.k8s.io recorder writes them:
//! reportingController `default-scheduler`, an action, a micro-time
//! eventTime, and repeats folded into the first event's `series`. Stored
//! in the core form, which both Event APIs serve; `source.component` is
//! set too so older clients show where they came from.
//!
//! Recording never blocks scheduling: a bounded queue feeds one writer
//! task; when full, events are dropped (and logged), as client-go does.

use std::collections::HashMap;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::api::SchedulerApi;
use super::cache::PodInfo;

pub const COMPONENT: &str = "default-scheduler";
const QUEUE: usize = 4096;
const CACHE: usize = 4096;
/// Upstream truncates an event's note to this many bytes.
pub const NOTE_LIMIT: usize = 1024;

#[derive(Debug)]
struct Record {
    regarding: Value,
    namespace: String,
    type_: &'static str,
    reason: &'static str,
    action: &'static str,
    note: String,
    related: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct EventRecorder {
    tx: mpsc::Sender<Record>,
}

fn pod_ref(p: &PodInfo) -> Value {
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "namespace": p.namespace,
        "name": p.name,
        "uid": p.uid,
        "resourceVersion": p.resource_version,
    })
}

/// Upstream's `truncateMessage`: at most 1024 bytes, ending in "...".
pub fn truncate(msg: &str) -> String {
    if msg.len() <= NOTE_LIMIT {
        return msg.to_string();
    }
    let mut end = NOTE_LIMIT - 3;
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &msg[..end])
}

impl EventRecorder {
    pub fn start(api: SchedulerApi, instance: String) -> EventRecorder {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_events(api, instance, rx));
        EventRecorder { tx }
    }

    pub fn pod(
        &self,
        pod: &PodInfo,
        type_: &'static str,
        reason: &'static str,
        action: &'static str,
        note: &str,
        related: Option<&PodInfo>,
    ) {
        let r = Record {
            regarding: pod_ref(pod),
            namespace: pod.namespace.clone(),
            type_,
            reason,
            action,
            note: truncate(note),
            related: related.map(pod_ref),
        };
        if let Err(e) = self.tx.try_send(r) {
            tracing::warn!(error = %e, "scheduler event queue full: dropping an event");
        }
    }
}

fn micro_now() -> String {
    jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%S%.6fZ", jiff::Timestamp::now()).unwrap_or_default()
}

fn secs_now() -> String {
    jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", jiff::Timestamp::now()).unwrap_or_default()
}

async fn write_events(api: SchedulerApi, instance: String, mut rx: mpsc::Receiver<Record>) {
    // (namespace, uid, reason, type, note) → (event name, count)
    let mut seen: HashMap<String, (String, i64)> = HashMap::new();
    while let Some(r) = rx.recv().await {
        let key = format!(
            "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
            r.namespace,
            r.regarding["uid"].as_str().unwrap_or(""),
            r.reason,
            r.type_,
            r.note
        );
        if let Some((name, count)) = seen.get(&key).cloned() {
            let patch = json!({
                "series": {"count": count + 1, "lastObservedTime": micro_now()},
                "count": count + 1,
                "lastTimestamp": secs_now(),
            });
            match api.merge_patch_event(&r.namespace, &name, &patch).await {
                Ok(()) => {
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
            r.regarding["name"].as_str().unwrap_or("pod"),
            jiff::Timestamp::now().as_nanosecond()
        );
        let now = secs_now();
        let mut event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": r.namespace},
            "involvedObject": r.regarding,
            "reason": r.reason,
            "message": r.note,
            "type": r.type_,
            "action": r.action,
            "eventTime": micro_now(),
            "reportingComponent": COMPONENT,
            "reportingInstance": instance,
            "source": {"component": COMPONENT},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        });
        if let Some(rel) = r.related {
            event["related"] = rel;
        }
        match api.create_event(&r.namespace, &event).await {
            Ok(()) => {
                if seen.len() >= CACHE {
                    seen.clear();
                }
                seen.insert(key, (name, 1));
            }
            Err(e) => {
                tracing::warn!(error = %e, reason = r.reason, "cannot record a scheduler event")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_truncated_like_upstream() {
        assert_eq!(truncate("short"), "short");
        let long = "x".repeat(2000);
        let t = truncate(&long);
        assert_eq!(t.len(), NOTE_LIMIT);
        assert!(t.ends_with("..."));
        let wide = "é".repeat(600);
        assert!(truncate(&wide).len() <= NOTE_LIMIT);
    }
}
