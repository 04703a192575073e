//! The scheduler section: a `kedge server --disable-agent` with 100
//! simulated nodes (Node objects with allocatable and Ready, Leases renewed
//! by the bench, no containers).
//!
//! - Throughput: 5,000 pods are created while no node exists (each is
//!   tried once and parked as unschedulable), then the 100 nodes are
//!   created at once; the figure is pods bound / (last binding seen on a
//!   watch − the first node's create).
//! - Latency: with the nodes in place, pods are created at a steady 100/s;
//!   each one's time from its POST to its binding (nodeName seen on a
//!   watch); p50 and p99.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use serde_json::{json, Value};

use crate::probe::ReadyzProbe;
use crate::report::{Row, Verdict};
use crate::sections::Plan;
use crate::server::KedgeServer;
use crate::stats::{fmt_num, Summary};

const NODES: usize = 100;
const NS: &str = "default";
const CLIENTS: usize = 16;
/// Targets: upstream kube-scheduler's scheduler_perf basic workload runs
/// at a few hundred pods/s; kedge must at least keep up with 100/s.
const THROUGHPUT_TARGET: f64 = 100.0;
const P99_TARGET_MS: f64 = 1000.0;
const LATENCY_RATE: f64 = 100.0;

pub async fn scheduler(plan: &Plan) -> Vec<Row> {
    match run(plan).await {
        Ok(rows) => rows,
        Err(e) => vec![Row::error("Scheduler throughput", &e)],
    }
}

fn now_micro() -> String {
    jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%S%.6fZ", jiff::Timestamp::now()).unwrap_or_default()
}

async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    ct: &str,
    body: &Value,
) -> Result<()> {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", ct)
        .body(serde_json::to_vec(body)?)
        .context("request")?;
    client
        .request_text(req)
        .await
        .with_context(|| format!("{method} {path}"))?;
    Ok(())
}

async fn add_node(client: &kube::Client, name: &str) -> Result<()> {
    let alloc =
        json!({"cpu": "64", "memory": "256Gi", "pods": "110", "ephemeral-storage": "100Gi"});
    let status = json!({
        "capacity": alloc, "allocatable": alloc,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "simulated"}],
    });
    send(
        client,
        "POST",
        "/api/v1/nodes",
        "application/json",
        &json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                "status": status}),
    )
    .await?;
    send(
        client,
        "PATCH",
        &format!("/api/v1/nodes/{name}/status"),
        "application/merge-patch+json",
        &json!({"status": status}),
    )
    .await?;
    send(
        client,
        "POST",
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
        "application/json",
        &json!({"metadata": {"name": name},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now_micro()}}),
    )
    .await
}

fn bench_pod(name: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "sched-bench"}},
        "spec": {"containers": [{"name": "c", "image": "busybox",
                  "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]},
    }))?)
}

/// Names of pods → when a watch first saw them bound.
type Bound = Arc<Mutex<HashMap<String, Instant>>>;

fn watch_bindings(client: kube::Client) -> (Bound, tokio::task::JoinHandle<()>) {
    let bound: Bound = Arc::default();
    let b = bound.clone();
    let task = tokio::spawn(async move {
        let pods: Api<Pod> = Api::namespaced(client, NS);
        let mut s = watcher::watcher(pods, watcher::Config::default()).boxed();
        while let Some(ev) = s.next().await {
            let now = Instant::now();
            let pod = match ev {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p,
                _ => continue,
            };
            let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
            if node.is_some_and(|n| !n.is_empty()) {
                if let Some(name) = pod.metadata.name {
                    if let Ok(mut m) = b.lock() {
                        m.entry(name).or_insert(now);
                    }
                }
            }
        }
    });
    (bound, task)
}

fn count(b: &Bound) -> usize {
    b.lock().map(|m| m.len()).unwrap_or(0)
}

async fn wait_count(
    b: &Bound,
    n: usize,
    timeout: Duration,
    server: &mut KedgeServer,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while count(b) < n {
        if let Some(e) = server.exited() {
            bail!(e);
        }
        if Instant::now() > deadline {
            bail!("only {} of {n} pods bound within {timeout:?}", count(b));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn run(plan: &Plan) -> Result<Vec<Row>> {
    let pending = if plan.quick { 1000 } else { 5000 };
    let steady = if plan.quick { 300 } else { 1000 };
    let probe = ReadyzProbe::new()?;
    let dir = plan.work.join("scheduler");
    let _ = std::fs::remove_dir_all(&dir);
    let mut server = KedgeServer::spawn(&plan.kedge, &dir)?;
    server.wait_ready(&probe, Duration::from_millis(10)).await?;
    let clients = server.clients(CLIENTS).await?;
    let (bound, watch) = watch_bindings(clients[0].clone());

    // 1. Pods with nowhere to go.
    eprintln!("[scheduler] creating {pending} pending pods");
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in &clients {
        let (c, next) = (c.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let api: Api<Pod> = Api::namespaced(c, NS);
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= pending {
                    return Ok::<(), anyhow::Error>(());
                }
                api.create(&PostParams::default(), &bench_pod(&format!("pending-{i}"))?)
                    .await
                    .with_context(|| format!("creating pod pending-{i}"))?;
            }
        }));
    }
    for t in tasks {
        t.await.context("create task")??;
    }
    // Let every pod be tried once and parked (and its 1 s backoff pass).
    tokio::time::sleep(Duration::from_secs(3)).await;
    anyhow::ensure!(count(&bound) == 0, "pods were bound with no node");

    // 2. The nodes arrive; the scheduler drains the queue.
    eprintln!("[scheduler] adding {NODES} nodes");
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for (k, c) in clients.iter().enumerate() {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in (k..NODES).step_by(CLIENTS) {
                add_node(&c, &format!("sim-{i:03}")).await?;
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await.context("node task")??;
    }
    let nodes_added = t0.elapsed();
    // Keep the Leases fresh so node lifecycle leaves the nodes alone.
    let renew_client = clients[0].clone();
    let renew = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            for i in 0..NODES {
                let _ = send(
                    &renew_client,
                    "PATCH",
                    &format!(
                        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/sim-{i:03}"
                    ),
                    "application/merge-patch+json",
                    &json!({"spec": {"renewTime": now_micro()}}),
                )
                .await;
            }
        }
    });
    wait_count(&bound, pending, Duration::from_secs(300), &mut server).await?;
    let last = bound
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .values()
        .copied()
        .max()
        .unwrap_or(t0);
    let drain = last.duration_since(t0).as_secs_f64();
    let rate = pending as f64 / drain;
    eprintln!(
        "[scheduler] {pending} pods bound in {drain:.2} s ({rate:.0}/s; nodes created in {:.2} s)",
        nodes_added.as_secs_f64()
    );

    // 3. Steady arrivals: creation-to-binding latency.
    eprintln!("[scheduler] {steady} pods at {LATENCY_RATE}/s");
    let api: Api<Pod> = Api::namespaced(clients[1].clone(), NS);
    let mut created: HashMap<String, Instant> = HashMap::new();
    let start = Instant::now();
    let mut creates = Vec::new();
    for i in 0..steady {
        let due = start + Duration::from_secs_f64(i as f64 / LATENCY_RATE);
        tokio::time::sleep_until(due.into()).await;
        let name = format!("steady-{i}");
        let pod = bench_pod(&name)?;
        let api = api.clone();
        created.insert(name.clone(), Instant::now());
        creates.push(tokio::spawn(async move {
            api.create(&PostParams::default(), &pod).await.map(|_| ())
        }));
    }
    for t in creates {
        t.await
            .context("create task")?
            .context("creating a steady pod")?;
    }
    wait_count(
        &bound,
        pending + steady,
        Duration::from_secs(120),
        &mut server,
    )
    .await?;
    renew.abort();
    watch.abort();
    let lat: Vec<f64> = {
        let b = bound.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        created
            .iter()
            .filter_map(|(n, t)| {
                b.get(n)
                    .map(|bt| bt.saturating_duration_since(*t).as_secs_f64() * 1000.0)
            })
            .collect()
    };
    let s = Summary::of(lat);
    server.stop()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(vec![
        Row::new(
            "Scheduler throughput (100 nodes)",
            format!("{} pods/s", fmt_num(rate)),
            ">= 100 pods/s",
            Verdict::from_check(rate >= THROUGHPUT_TARGET),
            format!(
                "{pending} pending pods (no node yet), then {NODES} simulated nodes created by {CLIENTS} clients; \
                 pods bound / (last binding seen on a watch - first node create); {} s to drain",
                fmt_num(drain)
            ),
            json!({"pods": pending, "nodes": NODES, "seconds": drain, "pods_per_second": rate,
                   "nodes_created_seconds": nodes_added.as_secs_f64()}),
        ),
        Row::new(
            "Scheduler create-to-bound p99 (100 nodes)",
            format!("{} ms (p50 {} ms)", fmt_num(s.p99), fmt_num(s.p50)),
            "<= 1000 ms",
            Verdict::from_check(s.p99 <= P99_TARGET_MS),
            format!(
                "{steady} pods created at {LATENCY_RATE}/s onto the {NODES} nodes (holding {pending} pods); \
                 POST sent to nodeName seen on a watch"
            ),
            json!({"latency_ms": s, "rate": LATENCY_RATE}),
        ),
    ])
}
