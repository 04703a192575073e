//! Watch: newline-delimited `WatchEvent` JSON over a chunked response,
//! with label/field filtering, bookmarks, `sendInitialEvents` and timeouts.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use kedge_api::registry::ResourceInfo;
use kedge_api::{meta, ApiError};
use kedge_store::{EventType, Store, WatchEvent};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::handler::{self, make_table, parse_stored, partial, Filter, Req};
use crate::negotiate::Output;
use crate::server::{ApiServer, Body};

/// Encodes events in the negotiated form.
struct Encoder {
    ri: &'static ResourceInfo,
    cr: Option<Arc<crate::crd::CustomResource>>,
    out: Output,
    include: Option<String>,
    sent_columns: bool,
}

impl Encoder {
    fn frame(&mut self, kind: &str, raw: &Bytes, parsed: Option<&Value>) -> Bytes {
        let mut buf = Vec::with_capacity(raw.len() + 32);
        buf.extend_from_slice(b"{\"type\":\"");
        buf.extend_from_slice(kind.as_bytes());
        buf.extend_from_slice(b"\",\"object\":");
        match self.out {
            Output::Table | Output::Metadata => {
                let base = match parsed {
                    Some(v) => v.clone(),
                    None => serde_json::from_slice::<Value>(raw).unwrap_or(Value::Null),
                };
                let owned = crate::handler::view(self.ri, base);
                let obj = &owned;
                let v = if self.out == Output::Table {
                    let rv = meta::resource_version(obj)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    let t = make_table(
                        self.ri,
                        self.cr.as_deref(),
                        std::slice::from_ref(obj),
                        self.include.as_deref(),
                        !self.sent_columns,
                        rv,
                    );
                    self.sent_columns = true;
                    t
                } else {
                    partial(obj)
                };
                buf.extend_from_slice(&serde_json::to_vec(&v).unwrap_or_default());
            }
            _ if self.cr.is_some() || self.ri.is_events_view() || self.ri.is_hpa_v1_view() => {
                let v = serde_json::from_slice::<Value>(raw).unwrap_or(Value::Null);
                let v = crate::handler::view(self.ri, v);
                buf.extend_from_slice(&serde_json::to_vec(&v).unwrap_or_default());
            }
            _ => buf.extend_from_slice(raw),
        }
        buf.extend_from_slice(b"}\n");
        Bytes::from(buf)
    }

    fn bookmark(&self, rev: i64, initial_end: bool) -> Bytes {
        let mut md = json!({"resourceVersion": rev.to_string()});
        if initial_end {
            md["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = match self.out {
            Output::Metadata => {
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": md})
            }
            _ => json!({"kind": self.ri.kind, "apiVersion": self.ri.api_version(), "metadata": md}),
        };
        let mut b =
            serde_json::to_vec(&json!({"type": "BOOKMARK", "object": obj})).unwrap_or_default();
        b.push(b'\n');
        Bytes::from(b)
    }
}

fn error_frame(e: &ApiError) -> Bytes {
    let mut b =
        serde_json::to_vec(&json!({"type": "ERROR", "object": e.to_status()})).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

/// Which watch event a change is for this watcher, given its filter.
fn classify(filter: &Filter, ev: &WatchEvent) -> Option<(&'static str, Option<Value>)> {
    if filter.is_empty() {
        let t = match ev.kind {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        };
        return Some((t, None));
    }
    let new: Value = serde_json::from_slice(&ev.value).ok()?;
    let now = filter.matches(&new);
    let before = ev
        .prev
        .as_ref()
        .and_then(|p| serde_json::from_slice::<Value>(p).ok())
        .is_some_and(|p| filter.matches(&p));
    match ev.kind {
        EventType::Added if now => Some(("ADDED", Some(new))),
        EventType::Modified if now && before => Some(("MODIFIED", Some(new))),
        EventType::Modified if now => Some(("ADDED", Some(new))),
        EventType::Modified if before => Some(("DELETED", Some(new))),
        EventType::Deleted if before || now => Some(("DELETED", Some(new))),
        _ => None,
    }
}

pub async fn serve(srv: Arc<ApiServer>, r: Req) -> Result<Response<Body>, ApiError> {
    let filter = Filter::new(r.ri, &r.query, r.name.as_deref())?;
    let q = &r.query;
    let initial_events = q.send_initial_events == Some(true);
    if q.send_initial_events.is_some()
        && q.resource_version_match.as_deref() != Some("NotOlderThan")
    {
        return Err(ApiError::invalid("meta.k8s.io", "ListOptions", "", vec![kedge_api::status::Cause::forbidden(
            "sendInitialEvents",
            "sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan",
        )]));
    }
    if initial_events && !q.allow_watch_bookmarks {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "ListOptions",
            "",
            vec![kedge_api::status::Cause::forbidden(
                "allowWatchBookmarks",
                "allowWatchBookmarks must be set to true when sendInitialEvents is set",
            )],
        ));
    }
    let start_rv = match q.resource_version.as_deref() {
        None | Some("0") => None,
        Some(s) => Some(
            s.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s}")))?,
        ),
    };
    let mut enc = Encoder {
        ri: r.ri,
        cr: r.cr.clone(),
        out: r.out,
        include: q.include_object.clone(),
        sent_columns: false,
    };
    let mut first: Vec<Bytes> = Vec::new();
    let send_list = initial_events || start_rv.is_none();
    let from = if send_list {
        let mut lq = q.clone();
        lq.limit = 0;
        lq.continue_token = None;
        lq.resource_version_match = None;
        let ns = r.ns.as_deref();
        let res = handler::list_items(&srv, r.ri, ns, &lq, &filter)?;
        for s in &res.items {
            let parsed = if r.out == Output::Json {
                None
            } else {
                Some(parse_stored(s)?)
            };
            first.push(enc.frame("ADDED", &s.value, parsed.as_ref()));
        }
        if initial_events {
            first.push(enc.bookmark(res.revision, true));
        }
        res.revision
    } else {
        start_rv.unwrap_or(0)
    };
    let prefix = r.ri.list_prefix(r.ns.as_deref());
    let stream = srv.store.watch(&prefix, from);
    let timeout = q
        .timeout_seconds
        .map(std::time::Duration::from_secs)
        .unwrap_or(srv.config.watch_timeout);
    let bookmarks = q.allow_watch_bookmarks;
    let interval = srv.config.bookmark_interval;
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(async move {
        for f in first {
            if tx.send(Ok(f)).await.is_err() {
                return;
            }
        }
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                let _ = tx
                    .send(Ok(error_frame(&handler::store_err(r.ri, "", e))))
                    .await;
                return;
            }
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            let frame = tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = tx.closed() => break,
                _ = tick.tick(), if bookmarks => {
                    let rev = srv.store.revision();
                    // Everything up to `rev` is already queued for us: send it first.
                    let mut ok = true;
                    while let Some(ev) = stream.try_next() {
                        match ev {
                            Ok(ev) => if let Some((t, parsed)) = classify(&filter, &ev) {
                                if tx.send(Ok(enc.frame(t, &ev.value, parsed.as_ref()))).await.is_err() { ok = false; break; }
                            },
                            Err(e) => { let _ = tx.send(Ok(error_frame(&handler::store_err(r.ri, "", e)))).await; ok = false; break; }
                        }
                    }
                    if !ok { break; }
                    enc.bookmark(rev, false)
                }
                ev = stream.next() => match ev {
                    Some(Ok(ev)) => match classify(&filter, &ev) {
                        Some((t, parsed)) => enc.frame(t, &ev.value, parsed.as_ref()),
                        None => continue,
                    },
                    Some(Err(e)) => {
                        let _ = tx.send(Ok(error_frame(&handler::store_err(r.ri, "", e)))).await;
                        break;
                    }
                    None => break,
                },
            };
            if tx.send(Ok(frame)).await.is_err() {
                break;
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}
