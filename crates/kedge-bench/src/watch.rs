//! Watch delivery lag: many concurrent watch streams on one namespace, one
//! paced writer stamping each write with its send time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use http_body_util::BodyExt;
use serde_json::json;

use crate::load::{configmap, send};
use crate::server::KedgeServer;

pub const SENT_ANNOTATION: &str = "kedge-bench/sent-unix-nanos";

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// One event as a watcher saw it.
struct Seen {
    name: String,
    kind: String,
    sent_ns: i128,
    recv_ns: i128,
}

pub struct WatchRun {
    /// Receive time minus the writer's send time (the annotation), ms.
    pub lag_from_send: Vec<f64>,
    /// Receive time minus the time the writer had its response, ms; can be
    /// negative (the event overtook the write's response).
    pub lag_from_ack: Vec<f64>,
    pub expected: usize,
    pub received: usize,
}

pub struct WatchPlan<'a> {
    pub ns: &'a str,
    /// Object names start with this; unique per run.
    pub prefix: &'a str,
    pub watchers: usize,
    /// Writes in all: the first half creates, the second updates each once.
    pub writes: usize,
    /// Writes per second.
    pub rate: f64,
}

pub async fn watch_lag(server: &KedgeServer, plan: &WatchPlan<'_>) -> Result<WatchRun> {
    let writer = server.client().await?;
    let ns = plan.ns;
    let list_path = format!("/api/v1/namespaces/{ns}/configmaps?limit=1");
    let (status, body) = send(&writer, "GET", &list_path, None, vec![]).await?;
    if status != 200 {
        bail!("GET {list_path}: HTTP {status}");
    }
    let list: serde_json::Value = serde_json::from_slice(&body)?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .context("list without metadata.resourceVersion")?
        .to_string();

    let creates = plan.writes.div_ceil(2);
    let updates = plan.writes - creates;
    let expected = plan.writes;

    // Open every stream before the first write.
    let watch_path = format!(
        "/api/v1/namespaces/{ns}/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=600"
    );
    let mut tasks = Vec::with_capacity(plan.watchers);
    for _ in 0..plan.watchers {
        let client = server.client().await?;
        let req = http::Request::builder()
            .method("GET")
            .uri(&watch_path)
            .body(kube::client::Body::empty())?;
        let resp = client.send(req).await.context("opening a watch")?;
        if resp.status() != 200 {
            bail!("watch: HTTP {}", resp.status());
        }
        let prefix = plan.prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let _client = client;
            let mut body = resp.into_body();
            let mut buf: Vec<u8> = Vec::new();
            let mut seen = Vec::with_capacity(expected);
            while seen.len() < expected {
                let Some(frame) = body.frame().await else {
                    break;
                };
                let recv_ns = now_ns();
                let Ok(data) = frame?.into_data() else {
                    continue;
                };
                buf.extend_from_slice(&data);
                while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    if let Some(s) = parse_event(&line, &prefix, recv_ns) {
                        seen.push(s);
                    }
                }
            }
            Ok::<_, anyhow::Error>(seen)
        }));
    }

    // The paced writer.
    let acks: Arc<Mutex<HashMap<(String, &'static str), i128>>> = Arc::default();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate.max(0.1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let path = format!("/api/v1/namespaces/{ns}/configmaps");
    for i in 0..creates {
        tick.tick().await;
        let name = format!("{}{i}", plan.prefix);
        let body = configmap(&name, json!({ SENT_ANNOTATION: now_ns().to_string() }));
        let (s, b) = send(&writer, "POST", &path, Some("application/json"), body).await?;
        if s != 201 {
            bail!("create {name}: HTTP {s}: {}", String::from_utf8_lossy(&b));
        }
        acks.lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((name, "ADDED"), now_ns());
    }
    for i in 0..updates {
        tick.tick().await;
        let name = format!("{}{i}", plan.prefix);
        let patch = json!({"metadata": {"annotations": { SENT_ANNOTATION: now_ns().to_string() }}});
        let (s, b) = send(
            &writer,
            "PATCH",
            &format!("{path}/{name}"),
            Some("application/merge-patch+json"),
            patch.to_string().into_bytes(),
        )
        .await?;
        if s != 200 {
            bail!("patch {name}: HTTP {s}: {}", String::from_utf8_lossy(&b));
        }
        acks.lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((name, "MODIFIED"), now_ns());
    }

    // Collect; a watcher that misses events is cut off after 10 s.
    let acks = acks.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut run = WatchRun {
        lag_from_send: Vec::new(),
        lag_from_ack: Vec::new(),
        expected: expected * plan.watchers,
        received: 0,
    };
    for t in tasks {
        let seen = match tokio::time::timeout(Duration::from_secs(10), t).await {
            Ok(r) => r.context("a watcher panicked")??,
            Err(_) => continue,
        };
        run.received += seen.len();
        for s in seen {
            run.lag_from_send.push((s.recv_ns - s.sent_ns) as f64 / 1e6);
            if let Some(ack) = acks.get(&(s.name, kind_key(&s.kind))) {
                run.lag_from_ack.push((s.recv_ns - ack) as f64 / 1e6);
            }
        }
    }
    Ok(run)
}

fn kind_key(kind: &str) -> &'static str {
    if kind == "ADDED" {
        "ADDED"
    } else {
        "MODIFIED"
    }
}

/// An ADDED/MODIFIED event of one of this run's objects, stamped.
fn parse_event(line: &[u8], prefix: &str, recv_ns: i128) -> Option<Seen> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    let kind = v["type"].as_str()?;
    if kind != "ADDED" && kind != "MODIFIED" {
        return None;
    }
    let md = &v["object"]["metadata"];
    let name = md["name"].as_str()?;
    if !name.starts_with(prefix) {
        return None;
    }
    let sent_ns = md["annotations"][SENT_ANNOTATION].as_str()?.parse().ok()?;
    Some(Seen {
        name: name.to_string(),
        kind: kind.to_string(),
        sent_ns,
        recv_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_of_this_run_are_stamped() {
        let line = br#"{"type":"MODIFIED","object":{"metadata":{"name":"w1-3","annotations":{"kedge-bench/sent-unix-nanos":"1000000"}}}}"#;
        let s = parse_event(line, "w1-", 3_000_000).expect("event");
        assert_eq!((s.name.as_str(), s.kind.as_str()), ("w1-3", "MODIFIED"));
        assert_eq!(s.recv_ns - s.sent_ns, 2_000_000);
        assert!(parse_event(line, "w2-", 0).is_none());
        let bookmark = br#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"9"}}}"#;
        assert!(parse_event(bookmark, "", 0).is_none());
    }
}
