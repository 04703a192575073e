//! API load: concurrent creates, gets and lists over HTTPS, each client a
//! separate `kube::Client` (its own TLS connection), requests sent raw.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use serde_json::json;

use crate::stats::ms;

/// ~1 KB of ConfigMap data.
pub fn payload() -> String {
    "0123456789abcdef".repeat(64)
}

/// A ConfigMap's JSON with ~1 KB of data and the given annotations.
pub fn configmap(name: &str, annotations: serde_json::Value) -> Vec<u8> {
    let v = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "annotations": annotations},
        "data": {"payload": payload()},
    });
    v.to_string().into_bytes()
}

/// One raw request: (status, body).
pub async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Result<(u16, Bytes)> {
    let mut b = http::Request::builder().method(method).uri(path);
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    let req = b.body(kube::client::Body::from(body))?;
    let resp = client
        .send(req)
        .await
        .with_context(|| format!("{method} {path}"))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect_bytes()
        .await
        .with_context(|| format!("{method} {path}: reading the body"))?;
    Ok((status, bytes))
}

pub async fn create_namespace(client: &kube::Client, ns: &str) -> Result<()> {
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
    let (status, resp) = send(
        client,
        "POST",
        "/api/v1/namespaces",
        Some("application/json"),
        body.to_string().into_bytes(),
    )
    .await?;
    match status {
        201 | 409 => Ok(()),
        s => bail!(
            "creating namespace {ns}: HTTP {s}: {}",
            String::from_utf8_lossy(&resp)
        ),
    }
}

/// What a create run measured.
pub struct CreateRun {
    pub created: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Latency of each successful create, ms.
    pub latencies: Vec<f64>,
    /// The JSON the server returned for one created object.
    pub sample: Bytes,
}

impl CreateRun {
    pub fn rate(&self) -> f64 {
        self.created as f64 / self.elapsed.as_secs_f64()
    }
}

/// Each client POSTs ConfigMaps `{prefix}{i}` into `ns`, one at a time,
/// until `duration` has passed or `max` have been sent in all.
pub async fn create_load(
    clients: &[kube::Client],
    ns: &str,
    prefix: &str,
    duration: Duration,
    max: u64,
) -> Result<CreateRun> {
    let next = Arc::new(AtomicU64::new(0));
    let path = format!("/api/v1/namespaces/{ns}/configmaps");
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for c in clients {
        let (c, next, path, prefix) = (c.clone(), next.clone(), path.clone(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut sample = Bytes::new();
            let mut first_error = None;
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= max {
                    break;
                }
                let body = configmap(&format!("{prefix}{i}"), json!({}));
                let t = Instant::now();
                match send(&c, "POST", &path, Some("application/json"), body).await {
                    Ok((201, b)) => {
                        lat.push(ms(t.elapsed()));
                        if sample.is_empty() {
                            sample = b;
                        }
                    }
                    Ok((s, b)) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| {
                            format!("HTTP {s}: {}", String::from_utf8_lossy(&b))
                        });
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            (lat, errors, sample, first_error)
        }));
    }
    let mut run = CreateRun {
        created: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        sample: Bytes::new(),
    };
    let mut first_error = None;
    for t in tasks {
        let (lat, errors, sample, err) = t.await.context("a create task panicked")?;
        run.created += lat.len() as u64;
        run.latencies.extend(lat);
        run.errors += errors;
        if run.sample.is_empty() {
            run.sample = sample;
        }
        first_error = first_error.or(err);
    }
    run.elapsed = start.elapsed();
    if let Some(e) = first_error {
        eprintln!("  {} create(s) failed; first: {e}", run.errors);
    }
    if run.created == 0 {
        bail!("no create succeeded");
    }
    Ok(run)
}

/// Create `n` ConfigMaps `{prefix}0..n` in `ns` with all `clients`.
pub async fn seed(clients: &[kube::Client], ns: &str, prefix: &str, n: u64) -> Result<()> {
    let run = create_load(clients, ns, prefix, Duration::from_secs(3600), n).await?;
    if run.created != n {
        bail!("seeding {ns}: {} of {n} created", run.created);
    }
    Ok(())
}

/// Each client GETs `paths(i)` (i counting up across clients) one at a
/// time for `duration`; latency of each 200, ms.
pub async fn read_load(
    clients: &[kube::Client],
    duration: Duration,
    paths: impl Fn(u64) -> String + Send + Sync + 'static,
) -> Result<Vec<f64>> {
    let next = Arc::new(AtomicU64::new(0));
    let paths = Arc::new(paths);
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for c in clients {
        let (c, next, paths) = (c.clone(), next.clone(), paths.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let path = paths(next.fetch_add(1, Ordering::Relaxed));
                let t = Instant::now();
                let (status, body) = send(&c, "GET", &path, None, vec![]).await?;
                if status != 200 {
                    bail!(
                        "GET {path}: HTTP {status}: {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                lat.push(ms(t.elapsed()));
            }
            Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.context("a read task panicked")??);
    }
    Ok(all)
}

/// One list request: (time to the last byte, response bytes, the number
/// of items named `{prefix}...`; the server may add objects of its own,
/// such as `kube-root-ca.crt`).
pub async fn list_once(
    client: &kube::Client,
    path: &str,
    prefix: &str,
) -> Result<(Duration, usize, usize)> {
    let t = Instant::now();
    let (status, body) = send(client, "GET", path, None, vec![]).await?;
    let took = t.elapsed();
    if status != 200 {
        bail!(
            "GET {path}: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&body).with_context(|| format!("GET {path}: not JSON"))?;
    let items = v["items"].as_array().map_or(0, |items| {
        items
            .iter()
            .filter(|i| {
                i["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(prefix))
            })
            .count()
    });
    Ok((took, body.len(), items))
}
