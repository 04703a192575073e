//! The recovery section (issue 5: controllers, scheduler, node lifecycle).
//!
//! - Container crash -> Ready again, on a real node (`kedge server` with its
//!   agent; root + containerd): a Deployment of one busybox httpd pod with
//!   an HTTP readiness probe; the container's main process is SIGKILLed
//!   from the host (its pid from CRI's verbose ContainerStatus); kill ->
//!   the pod's watch event with Ready=True and restartCount >= 1. Each
//!   sample uses a fresh pod (the previous one is deleted and its
//!   ReplicaSet makes another), so every kill is a first crash, which the
//!   kubelet restarts without back-off (later ones wait 10 s, 20 s, ... as
//!   upstream).
//! - Node lost -> replacement Running on another node: `kedge server
//!   --disable-agent` with two simulated nodes (Node + Lease renewed every
//!   10 s by the bench; the bench plays their kubelet); a Deployment of one
//!   pod lands on node A, then B joins; A's Lease is renewed one last time
//!   and then nothing more comes from A. The clock runs from that last
//!   heartbeat to the bench-kubelet's Running report of the replacement
//!   pod on B being accepted. Once with kedge's defaults, once beside it
//!   with upstream's (grace 40 s, tolerations 300 s), capped.
//! - Reconcile latency: on 10 simulated nodes, a Deployment's scale
//!   subresource goes 0 -> 50; PATCH sent -> the 50th pod seen bound
//!   (`spec.nodeName`) on a watch.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kedge_kubelet::RuntimeService;
use serde_json::{json, Value};

use crate::load::create_namespace;
use crate::report::{Row, Verdict};
use crate::sections::Plan;
use crate::stats::{fmt_num, median, ms};
use crate::testbed::{
    busybox_tarball, disk_pressure_tolerations, expect, get, has_condition, merge_patch, name_of,
    node_of, post, Kedge, SimNodes, WatchStream, BUSYBOX,
};

const NS: &str = "bench-recovery";
/// Target for a lost node's pod to run elsewhere with kedge's defaults.
const NODE_LOSS_TARGET_S: f64 = 30.0;
/// Upstream's defaults: `--node-monitor-grace-period`, and the default
/// not-ready / unreachable tolerations that admission adds.
const UPSTREAM_FLAGS: &[&str] = &[
    "--node-monitor-grace-period",
    "40s",
    "--default-not-ready-toleration-seconds",
    "300",
    "--default-unreachable-toleration-seconds",
    "300",
];
const UPSTREAM_CAP_FULL: Duration = Duration::from_secs(400);
const UPSTREAM_CAP_QUICK: Duration = Duration::from_secs(60);
const KEDGE_CAP: Duration = Duration::from_secs(120);
const RECONCILE_NODES: usize = 10;
const RECONCILE_REPLICAS: usize = 50;

pub async fn recovery(plan: &Plan) -> Vec<Row> {
    let mut rows = crash_rows(plan).await;
    // The upstream-defaults run takes minutes: it runs beside the others.
    let cap = if plan.quick {
        UPSTREAM_CAP_QUICK
    } else {
        UPSTREAM_CAP_FULL
    };
    let upstream = async {
        let dir = plan.work.join("recovery-upstream");
        node_loss(plan, &dir, UPSTREAM_FLAGS, cap).await
    };
    let others = async {
        let runs = if plan.quick { 1 } else { 3 };
        let mut kedge_runs = Vec::new();
        let mut kedge_err = None;
        for i in 0..runs {
            eprintln!(
                "[recovery] node loss with kedge's defaults, run {}/{runs}",
                i + 1
            );
            let dir = plan.work.join(format!("recovery-kedge-{i}"));
            match node_loss(plan, &dir, &[], KEDGE_CAP).await {
                Ok(r) => kedge_runs.push(r),
                Err(e) => {
                    kedge_err = Some(e);
                    break;
                }
            }
        }
        let reconcile = reconcile_runs(plan).await;
        eprintln!(
            "[recovery] waiting for the upstream-defaults run (capped at {} s)",
            cap.as_secs()
        );
        (kedge_runs, kedge_err, reconcile)
    };
    let (upstream, (kedge_runs, kedge_err, reconcile)) = futures::join!(upstream, others);
    rows.extend(node_loss_rows(
        kedge_runs, kedge_err, upstream, cap, plan.quick,
    ));
    rows.extend(reconcile);
    rows
}

fn runs_phrase(n: usize) -> String {
    if n == 1 {
        "1 run".to_string()
    } else {
        format!("median of {n}")
    }
}

fn deployment(name: &str, replicas: u32, pod_spec: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
        },
    })
}

// ---- (a) container crash -> Ready again, real node ----

async fn crash_rows(plan: &Plan) -> Vec<Row> {
    let metric = "Container crash -> pod Ready again (real node)";
    if let Some(reason) = kedge_kubelet::testing::real_runtime_skip_reason() {
        eprintln!(
            "\n[recovery] SKIPPED the container-crash row: {reason}. It needs root, containerd, \
             runc and the CNI plugins (scripts/setup.sh installs them).\n"
        );
        return vec![Row::new(
            metric,
            "skipped".to_string(),
            "",
            Verdict::Report,
            format!("not measured: {reason}; it needs root, containerd, runc and CNI plugins"),
            json!({ "skipped": reason }),
        )];
    }
    let runs = if plan.quick { 3 } else { 5 };
    let dir = plan.work.join("recovery-node");
    let result = async {
        let tarball = busybox_tarball(plan, "recovery")?;
        let accel = dir.with_extension("accel");
        std::fs::create_dir_all(&accel)?;
        let accel = accel.display().to_string();
        let node = Kedge::node(
            plan,
            &dir,
            &tarball,
            &["--accelerator-root", &accel],
            "recovery",
        )?;
        Ok::<_, anyhow::Error>(node)
    }
    .await;
    let mut node = match result {
        Ok(n) => n,
        Err(e) => return vec![Row::error(metric, &e)],
    };
    let measured = crash_samples(&mut node, runs).await;
    let measured = measured.map_err(|e| node.explain(e));
    node.shutdown(NS).await;
    drop(node);
    let (samples, not_ready) = match measured {
        Ok(s) => s,
        Err(e) => return vec![Row::error(metric, &e)],
    };
    let m = median(&samples);
    let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
    let max = samples.iter().copied().fold(0.0, f64::max);
    vec![Row::new(
        metric,
        format!(
            "{} ms (min {}, max {})",
            fmt_num(m),
            fmt_num(min),
            fmt_num(max)
        ),
        "report",
        Verdict::Report,
        format!(
            "Deployment of 1 busybox httpd pod, readiness httpGet every 1 s; SIGKILL of the \
             container's main process from the host (pid from CRI) -> watch event with Ready=True \
             and restartCount 1; a fresh pod per kill (first crash: no back-off); {}; {}",
            not_ready_phrase(&not_ready),
            runs_phrase(samples.len())
        ),
        json!({"samples_ms": samples, "not_ready_seen_ms": not_ready}),
    )]
}

/// When Ready=False was seen between the kill and Ready again, if it was.
fn not_ready_phrase(not_ready: &[f64]) -> String {
    let seen = not_ready.iter().filter(|x| !x.is_nan()).count();
    if seen == 0 {
        "no Ready=False status in between (restarted within one status update)".to_string()
    } else {
        format!(
            "Ready=False seen after {} ms in {seen} of {}",
            fmt_num(median(not_ready)),
            not_ready.len()
        )
    }
}

/// Kill -> Ready again per sample, and kill -> Ready=False seen, in ms.
async fn crash_samples(node: &mut Kedge, runs: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let client = node.ready().await?;
    let cri = node.cri().await?;
    create_namespace(&client, NS).await?;
    let spec = json!({
        "terminationGracePeriodSeconds": 1,
        "automountServiceAccountToken": false,
        "tolerations": disk_pressure_tolerations(),
        "containers": [{
            "name": "web", "image": BUSYBOX,
            "command": ["sh", "-c", "mkdir -p /www; echo ok > /www/index.html; exec httpd -f -p 8080 -h /www"],
            "ports": [{"containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
        }],
    });
    let pods = format!("/api/v1/namespaces/{NS}/pods?labelSelector=app%3Dcrash");
    let mut watch = WatchStream::open(&client, &pods, None).await?;
    post(
        &client,
        &format!("/apis/apps/v1/namespaces/{NS}/deployments"),
        &deployment("crash", 1, spec),
    )
    .await?;
    let mut done: HashSet<String> = HashSet::new();
    let (mut samples, mut not_ready) = (Vec::new(), Vec::new());
    for i in 0..runs {
        // A fresh pod, Ready, never killed.
        let (pod, _) = watch
            .wait_for(Duration::from_secs(120), "a fresh Ready pod", |p| {
                !done.contains(name_of(p))
                    && p["metadata"]["deletionTimestamp"].is_null()
                    && has_condition(p, "Ready", "True")
            })
            .await?;
        let name = name_of(&pod).to_string();
        let cid = pod["status"]["containerStatuses"][0]["containerID"]
            .as_str()
            .and_then(|s| s.strip_prefix("containerd://"))
            .with_context(|| format!("pod {name} has no containerd container ID"))?
            .to_string();
        let status = cri.container_status(&cid, true).await?;
        let info: Value = status
            .info
            .get("info")
            .and_then(|s| serde_json::from_str(s).ok())
            .context("no verbose info in ContainerStatus")?;
        let pid = info["pid"]
            .as_i64()
            .and_then(|p| libc::pid_t::try_from(p).ok())
            .filter(|p| *p > 1)
            .with_context(|| format!("no pid in the container's info: {info}"))?;
        let t0 = Instant::now();
        // SAFETY: kill(2) takes plain integers and touches no memory of
        // ours; the pid is the container's init process, just read from
        // containerd, which keeps it as long as the container runs.
        let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
        anyhow::ensure!(rc == 0, "kill {pid}: {}", std::io::Error::last_os_error());
        let mut unready_at = None;
        let (_, at) = watch
            .wait_for(Duration::from_secs(60), "Ready again after the kill", |p| {
                if name_of(p) != name {
                    return false;
                }
                if has_condition(p, "Ready", "False") {
                    unready_at.get_or_insert(Instant::now());
                }
                has_condition(p, "Ready", "True")
                    && p["status"]["containerStatuses"][0]["restartCount"]
                        .as_i64()
                        .is_some_and(|n| n >= 1)
            })
            .await?;
        samples.push(ms(at.duration_since(t0)));
        not_ready.push(unready_at.map_or(f64::NAN, |u| ms(u.duration_since(t0))));
        eprintln!(
            "[recovery] crash {}/{runs}: Ready again after {} ms",
            i + 1,
            fmt_num(ms(at.duration_since(t0)))
        );
        done.insert(name.clone());
        if i + 1 < runs {
            expect(
                &client,
                "DELETE",
                &format!("/api/v1/namespaces/{NS}/pods/{name}"),
                None,
                None,
                &[200, 202],
            )
            .await?;
        }
    }
    Ok((samples, not_ready))
}

// ---- (b) node lost -> replacement Running elsewhere ----

#[derive(Debug, Clone, serde::Serialize)]
struct NodeLoss {
    /// Last heartbeat -> the replacement reported Running on B; None: capped.
    recovered_s: Option<f64>,
    /// Last heartbeat -> A's Ready condition seen Unknown.
    unknown_s: Option<f64>,
    /// Last heartbeat -> the first pod seen being deleted (evicted).
    evicted_s: Option<f64>,
    /// Last heartbeat -> the replacement seen bound to B.
    bound_s: Option<f64>,
}

/// One node-loss run against a fresh server started with `flags`.
async fn node_loss(plan: &Plan, dir: &Path, flags: &[&str], cap: Duration) -> Result<NodeLoss> {
    let mut server = Kedge::control_plane(plan, dir, flags, "recovery")?;
    let r = node_loss_inner(&mut server, cap).await;
    let r = r.map_err(|e| server.explain(e));
    server.shutdown(NS).await;
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
    r
}

async fn node_loss_inner(server: &mut Kedge, cap: Duration) -> Result<NodeLoss> {
    let client = server.ready().await?;
    create_namespace(&client, NS).await?;
    let mut nodes = SimNodes::new(client.clone());
    nodes.add("node-a").await?;
    nodes
        .wait_untainted("node-a", Duration::from_secs(30))
        .await?;
    nodes.start_kubelet().await?;
    let spec = json!({
        "terminationGracePeriodSeconds": 30,
        "containers": [{"name": "app", "image": BUSYBOX,
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}],
    });
    post(
        &client,
        &format!("/apis/apps/v1/namespaces/{NS}/deployments"),
        &deployment("lost", 1, spec),
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        if let Some((p, _, _)) = nodes
            .all_running()
            .into_iter()
            .find(|(_, n, _)| n == "node-a")
        {
            break p;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the Deployment's pod did not run on node-a within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    nodes.add("node-b").await?;
    nodes
        .wait_untainted("node-b", Duration::from_secs(30))
        .await?;
    // Let node lifecycle see B's first Lease before A goes quiet.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut pod_watch = WatchStream::open(
        &client,
        &format!("/api/v1/namespaces/{NS}/pods?labelSelector=app%3Dlost"),
        None,
    )
    .await?;
    let mut node_watch = WatchStream::open(&client, "/api/v1/nodes", None).await?;
    let t0 = nodes.lose("node-a").await?;
    let mut out = NodeLoss {
        recovered_s: None,
        unknown_s: None,
        evicted_s: None,
        bound_s: None,
    };
    let end = t0 + cap;
    let secs = |t: Instant| Some(t.duration_since(t0).as_secs_f64());
    let mut replacement: Option<String> = None;
    loop {
        if let Some(why) = server.exited() {
            bail!(why);
        }
        if let Some(r) = &replacement {
            if let Some((node, at)) = nodes.running(r) {
                anyhow::ensure!(node == "node-b", "replacement {r} ran on {node}");
                out.recovered_s = secs(at);
                return Ok(out);
            }
        }
        let step = (Instant::now() + Duration::from_millis(50)).min(end);
        if let Some((_, n, at)) = node_watch.next_before(step).await? {
            if out.unknown_s.is_none()
                && name_of(&n) == "node-a"
                && has_condition(&n, "Ready", "Unknown")
            {
                out.unknown_s = secs(at);
            }
        }
        while let Some((kind, p, at)) = pod_watch.next_before(Instant::now()).await? {
            let name = name_of(&p);
            if name == first {
                if out.evicted_s.is_none()
                    && (kind == "DELETED" || !p["metadata"]["deletionTimestamp"].is_null())
                {
                    out.evicted_s = secs(at);
                }
            } else if node_of(&p) == "node-b" && replacement.is_none() {
                replacement = Some(name.to_string());
                out.bound_s = secs(at);
            }
        }
        if Instant::now() >= end {
            return Ok(out);
        }
    }
}

fn fmt_opt_s(x: Option<f64>) -> String {
    x.map_or("-".to_string(), |s| format!("{} s", fmt_num(s)))
}

fn node_loss_rows(
    kedge: Vec<NodeLoss>,
    kedge_err: Option<anyhow::Error>,
    upstream: Result<NodeLoss>,
    cap: Duration,
    quick: bool,
) -> Vec<Row> {
    let mut rows = Vec::new();
    let metric = "Node lost -> replacement Running on another node, kedge defaults";
    let med = |f: fn(&NodeLoss) -> Option<f64>| {
        let v: Vec<f64> = kedge.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| median(&v))
    };
    let missed = kedge.iter().filter(|r| r.recovered_s.is_none()).count();
    match (&kedge_err, kedge.is_empty()) {
        (Some(e), true) => rows.push(Row::error(metric, e)),
        _ => {
            let rec = med(|r| r.recovered_s);
            let ok =
                missed == 0 && kedge_err.is_none() && rec.is_some_and(|s| s < NODE_LOSS_TARGET_S);
            rows.push(Row::new(
                metric,
                match rec {
                    Some(s) if missed == 0 => format!("{} s", fmt_num(s)),
                    _ => format!("> {} s in {missed} of {} runs", KEDGE_CAP.as_secs(), kedge.len()),
                },
                "< 30 s",
                Verdict::from_check(ok),
                format!(
                    "server --disable-agent (grace 15 s, tolerations 10 s), 2 simulated nodes (Lease every 10 s, \
                     bench plays their kubelet); Deployment of 1 pod on A; A's last Lease renewal -> the \
                     replacement reported Running on B; A Unknown at {}, pod evicted at {}, replacement bound \
                     at {}; {}{}",
                    fmt_opt_s(med(|r| r.unknown_s)),
                    fmt_opt_s(med(|r| r.evicted_s)),
                    fmt_opt_s(med(|r| r.bound_s)),
                    runs_phrase(kedge.len()),
                    kedge_err
                        .as_ref()
                        .map(|e| format!("; a later run failed: {e:#}"))
                        .unwrap_or_default()
                ),
                json!({"runs": kedge}),
            ));
        }
    }
    let metric = "Node lost -> replacement Running on another node, upstream defaults";
    match upstream {
        Err(e) => rows.push(Row::error(metric, &e)),
        Ok(r) => {
            let value = match r.recovered_s {
                Some(s) => format!("{} s", fmt_num(s)),
                None if quick => format!("> {} s (cap in --quick)", cap.as_secs()),
                None => format!("> {} s (cap)", cap.as_secs()),
            };
            let ratio = match (r.recovered_s, med(|r| r.recovered_s)) {
                (Some(u), Some(k)) if k > 0.0 => format!("; {}x kedge's", fmt_num(u / k)),
                _ => String::new(),
            };
            rows.push(Row::new(
                metric,
                value,
                "report",
                Verdict::Report,
                format!(
                    "the same, run beside the kedge-defaults runs, on a server with \
                     --node-monitor-grace-period 40s --default-not-ready-toleration-seconds 300 \
                     --default-unreachable-toleration-seconds 300; A Unknown at {}, pod evicted at {}, \
                     replacement bound at {}; 1 run{ratio}",
                    fmt_opt_s(r.unknown_s),
                    fmt_opt_s(r.evicted_s),
                    fmt_opt_s(r.bound_s),
                ),
                json!({"run": r, "cap_s": cap.as_secs()}),
            ));
        }
    }
    rows
}

// ---- (c) reconcile latency: scale 0 -> 50 ----

async fn reconcile_runs(plan: &Plan) -> Vec<Row> {
    let metric = "Deployment scale 0 -> 50 -> all pods bound (10 nodes)";
    let runs = if plan.quick { 2 } else { 5 };
    let mut bound = Vec::new();
    let mut created = Vec::new();
    for i in 0..runs {
        eprintln!(
            "[recovery] scale 0 -> {RECONCILE_REPLICAS}, run {}/{runs}",
            i + 1
        );
        let dir = plan.work.join(format!("recovery-scale-{i}"));
        let r = async {
            let mut server = Kedge::control_plane(plan, &dir, &[], "recovery")?;
            let r = reconcile_once(&mut server).await;
            let r = r.map_err(|e| server.explain(e));
            server.shutdown(NS).await;
            r
        }
        .await;
        let _ = std::fs::remove_dir_all(&dir);
        match r {
            Ok((c, b)) => {
                created.push(c);
                bound.push(b);
            }
            Err(e) => return vec![Row::error(metric, &e)],
        }
    }
    let min = bound.iter().copied().fold(f64::INFINITY, f64::min);
    let max = bound.iter().copied().fold(0.0, f64::max);
    vec![Row::new(
        metric,
        format!(
            "{} ms (min {}, max {})",
            fmt_num(median(&bound)),
            fmt_num(min),
            fmt_num(max)
        ),
        "report",
        Verdict::Report,
        format!(
            "server --disable-agent, {RECONCILE_NODES} simulated Ready nodes; PATCH of the Deployment's \
             scale subresource to {RECONCILE_REPLICAS} -> the {RECONCILE_REPLICAS}th pod seen with \
             spec.nodeName on a watch (all {RECONCILE_REPLICAS} created after {} ms); fresh server per run; {}",
            fmt_num(median(&created)),
            runs_phrase(runs)
        ),
        json!({"bound_ms": bound, "created_ms": created, "nodes": RECONCILE_NODES,
               "replicas": RECONCILE_REPLICAS}),
    )]
}

/// PATCH -> last pod created, PATCH -> last pod bound, in ms.
async fn reconcile_once(server: &mut Kedge) -> Result<(f64, f64)> {
    let client = server.ready().await?;
    create_namespace(&client, NS).await?;
    let mut nodes = SimNodes::new(client.clone());
    for i in 0..RECONCILE_NODES {
        nodes.add(&format!("sim-{i:02}")).await?;
    }
    for i in 0..RECONCILE_NODES {
        nodes
            .wait_untainted(&format!("sim-{i:02}"), Duration::from_secs(30))
            .await?;
    }
    let spec = json!({
        "containers": [{"name": "app", "image": BUSYBOX,
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}],
    });
    let path = format!("/apis/apps/v1/namespaces/{NS}/deployments");
    post(&client, &path, &deployment("burst", 0, spec)).await?;
    // The Deployment controller has made its (empty) ReplicaSet.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = get(&client, &format!("{path}/burst")).await?;
        let rs = get(
            &client,
            &format!("/apis/apps/v1/namespaces/{NS}/replicasets?labelSelector=app%3Dburst"),
        )
        .await?;
        let has_rs = rs["items"].as_array().is_some_and(|i| !i.is_empty());
        if has_rs
            && d["status"]["observedGeneration"]
                .as_i64()
                .is_some_and(|g| g >= 1)
        {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no ReplicaSet for the Deployment within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut watch = WatchStream::open(
        &client,
        &format!("/api/v1/namespaces/{NS}/pods?labelSelector=app%3Dburst"),
        None,
    )
    .await?;
    let t0 = Instant::now();
    merge_patch(
        &client,
        &format!("{path}/burst/scale"),
        &json!({"spec": {"replicas": RECONCILE_REPLICAS}}),
    )
    .await?;
    let mut created: HashMap<String, Instant> = HashMap::new();
    let mut bound: HashMap<String, Instant> = HashMap::new();
    let deadline = t0 + Duration::from_secs(120);
    while bound.len() < RECONCILE_REPLICAS {
        let Some((kind, p, at)) = watch.next_before(deadline).await? else {
            bail!(
                "{} of {RECONCILE_REPLICAS} pods created, {} bound within 120 s",
                created.len(),
                bound.len()
            );
        };
        if kind == "DELETED" {
            continue;
        }
        let name = name_of(&p).to_string();
        created.entry(name.clone()).or_insert(at);
        if !node_of(&p).is_empty() {
            bound.entry(name).or_insert(at);
        }
    }
    let last = |m: &HashMap<String, Instant>| {
        m.values()
            .map(|t| ms(t.duration_since(t0)))
            .fold(0.0, f64::max)
    };
    Ok((last(&created), last(&bound)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_loss_rows_judge_the_kedge_target_and_mark_the_cap() {
        let run = |s: Option<f64>| NodeLoss {
            recovered_s: s,
            unknown_s: Some(15.5),
            evicted_s: Some(25.6),
            bound_s: Some(25.7),
        };
        let capped = run(None);
        let rows = node_loss_rows(
            vec![run(Some(26.0)), run(Some(27.0)), run(Some(28.0))],
            None,
            Ok(capped),
            Duration::from_secs(60),
            true,
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].value, "27.0 s");
        assert_eq!(rows[0].verdict, Verdict::Pass);
        assert_eq!(rows[1].value, "> 60 s (cap in --quick)");
        assert_eq!(rows[1].verdict, Verdict::Report);

        let rows = node_loss_rows(
            vec![run(Some(31.0))],
            None,
            Ok(run(Some(341.0))),
            Duration::from_secs(400),
            false,
        );
        assert_eq!(rows[0].verdict, Verdict::Fail);
        assert_eq!(rows[1].value, "341 s");
        assert!(
            rows[1].method.contains("11.0x kedge's"),
            "{}",
            rows[1].method
        );
    }

    #[test]
    fn not_ready_phrase_counts_sightings() {
        assert!(not_ready_phrase(&[f64::NAN, f64::NAN]).starts_with("no Ready=False"));
        assert_eq!(
            not_ready_phrase(&[f64::NAN, 500.0, 600.0]),
            "Ready=False seen after 550 ms in 2 of 3"
        );
    }

    #[test]
    fn a_capped_kedge_run_fails_the_row() {
        let rows = node_loss_rows(
            vec![NodeLoss {
                recovered_s: None,
                unknown_s: None,
                evicted_s: None,
                bound_s: None,
            }],
            None,
            Err(anyhow::anyhow!("boom")),
            UPSTREAM_CAP_FULL,
            false,
        );
        assert_eq!(rows[0].verdict, Verdict::Fail);
        assert!(rows[0].value.starts_with("> 120 s"), "{}", rows[0].value);
        assert_eq!(rows[1].value, "error");
    }
}
