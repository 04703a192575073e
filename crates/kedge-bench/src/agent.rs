//! The node agent section: `kedge server` with its agent on a private
//! containerd, measured as a user runs it.
//!
//! - Pod create-to-Running latency (POST -> `status.phase: Running` seen on
//!   a watch), 20 pods one after another and 50 at once, beside the CRI
//!   floor: the same sandbox and container configs (built by
//!   `kedge_kubelet::podspec` from the same stored pod) sent straight to the
//!   same containerd through `kedge_kubelet::CriClient`.
//! - Idle RSS and CPU of the kedge process (API server and agent in one),
//!   of containerd and of its shims, with 0 and with 30 running pods; a
//!   `--disable-agent` server idles beside the first window so the agent's
//!   share can be told apart.
//! - Cold start to the Node's Ready condition (and to containerd ready and
//!   to a first pod Running).
//!
//! Needs root, containerd, runc and the CNI plugins; elsewhere the section
//! is one "skipped" row. Everything it starts is torn down even when a
//! measurement fails: pods through the API, sandboxes left over through
//! CRI, then by force (containerd, shims, containers, mounts, the bridge).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kedge_kubelet::cri::api::{ContainerState, PodSandboxFilter};
use kedge_kubelet::cri::image_spec;
use kedge_kubelet::podspec::{self, ContainerOptions, NoResolver, SandboxOptions};
use kedge_kubelet::{CriClient, ImageService, RuntimeService};
use serde_json::{json, Value};

use crate::apply::process_cpu;
use crate::load::{create_namespace, send};
use crate::probe::ReadyzProbe;
use crate::report::{Row, Verdict};
use crate::sections::Plan;
use crate::server::KedgeServer;
use crate::stats::{fmt_num, median, ms, Summary, MIB};
use crate::testbed::{
    busybox_tarball, delete_workloads, remove_sandboxes, Kedge, WatchStream, BUSYBOX,
};

const NS: &str = "bench-pods";
const BATCH_LABEL: &str = "kedge-bench/batch";
/// Name prefix of the floor's sandboxes (they have no API object).
const FLOOR_PREFIX: &str = "floor-";
const SERIAL: usize = 20;
const BURST: usize = 50;
const IDLE_PODS: usize = 30;
const COLD_RUNS: usize = 3;
/// Target: the kedge process with its agent, idle, in bytes (50 MB).
const RSS_TARGET: f64 = 50e6;
const RATIO_TARGET: f64 = 1.3;
const POD_TIMEOUT: Duration = Duration::from_secs(120);

static NEXT_UID: AtomicU64 = AtomicU64::new(0);

// ---- the section ----

pub async fn agent(plan: &Plan) -> Vec<Row> {
    if let Some(reason) = kedge_kubelet::testing::real_runtime_skip_reason() {
        eprintln!(
            "\n[agent] SKIPPED: {reason}. The node agent rows need root, containerd, runc and \
             the CNI plugins (scripts/setup.sh installs them).\n"
        );
        return vec![Row::new(
            "Node agent rows",
            "skipped".to_string(),
            "",
            Verdict::Report,
            format!("not measured: {reason}; they need root, containerd, runc and CNI plugins"),
            json!({ "skipped": reason }),
        )];
    }
    let tarball = match busybox_tarball(plan, "agent") {
        Ok(i) => i,
        Err(e) => return vec![Row::error("Node agent test images", &e)],
    };
    let mut rows = cold_start_rows(plan, &tarball).await;
    rows.extend(node_rows(plan, &tarball).await);
    rows
}

// ---- one node: kedge server with its agent ----

/// `kedge server` with its node agent ([`Kedge::node`]), logging JSON so
/// the cold start can read when containerd became ready.
fn spawn_node(plan: &Plan, dir: &Path, tarball: &Path) -> Result<Kedge> {
    Kedge::node(plan, dir, tarball, &["--log-format", "json"], "agent")
}

// ---- watches and pods ----

/// Pods of one batch reaching `Running`, first sighting each.
struct RunningWatch {
    events: WatchStream,
    seen: HashMap<String, Instant>,
}

impl RunningWatch {
    /// Opens the watch at the namespace's current revision, before any
    /// pod of the batch is created.
    async fn open(client: &kube::Client, batch: &str) -> Result<RunningWatch> {
        let pods = format!("/api/v1/namespaces/{NS}/pods?labelSelector={BATCH_LABEL}%3D{batch}");
        Ok(RunningWatch {
            events: WatchStream::open(client, &pods, None).await?,
            seen: HashMap::new(),
        })
    }

    /// Waits until every pod of `names` has been seen Running.
    async fn wait(&mut self, client: &kube::Client, names: &[String]) -> Result<()> {
        let deadline = Instant::now() + POD_TIMEOUT;
        while names.iter().any(|n| !self.seen.contains_key(n)) {
            match self.events.next_object_before(deadline).await? {
                Some((pod, at)) => {
                    if pod["status"]["phase"] == "Running" {
                        if let Some(name) = pod["metadata"]["name"].as_str() {
                            self.seen.entry(name.to_string()).or_insert(at);
                        }
                    }
                }
                None => {
                    let missing = names.iter().find(|n| !self.seen.contains_key(*n));
                    let mut detail = String::new();
                    if let Some(n) = missing {
                        let path = format!("/api/v1/namespaces/{NS}/pods/{n}");
                        if let Ok((_, b)) = send(client, "GET", &path, None, vec![]).await {
                            detail = String::from_utf8_lossy(&b).chars().take(600).collect();
                        }
                    }
                    bail!(
                        "{} of {} pods not Running within {POD_TIMEOUT:?}; first: {detail}",
                        names.iter().filter(|n| !self.seen.contains_key(*n)).count(),
                        names.len()
                    );
                }
            }
        }
        Ok(())
    }
}

fn pod(node: &str, batch: &str, name: &str, token: bool) -> Value {
    let mut p = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {BATCH_LABEL: batch}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "sleep", "image": BUSYBOX, "command": ["sleep", "3600"]}],
        },
    });
    if !token {
        p["spec"]["automountServiceAccountToken"] = json!(false);
    }
    p
}

/// POSTs one pod; the instant just before the request went out, and the
/// stored pod.
async fn create_pod(client: &kube::Client, body: &Value) -> Result<(Instant, Value)> {
    let path = format!("/api/v1/namespaces/{NS}/pods");
    let bytes = body.to_string().into_bytes();
    let t0 = Instant::now();
    let (status, resp) = send(client, "POST", &path, Some("application/json"), bytes).await?;
    anyhow::ensure!(
        status == 201,
        "POST {path}: HTTP {status}: {}",
        String::from_utf8_lossy(&resp)
    );
    Ok((t0, serde_json::from_slice(&resp)?))
}

/// `n` pods through kedge, all POSTed at once; create-to-Running per pod,
/// ms, and one pod of the batch as stored.
async fn kedge_batch(
    client: &kube::Client,
    node: &str,
    batch: &str,
    n: usize,
) -> Result<(Vec<f64>, Value)> {
    let mut watch = RunningWatch::open(client, batch).await?;
    let names: Vec<String> = (0..n).map(|i| format!("{batch}-{i}")).collect();
    let mut tasks = Vec::new();
    for name in &names {
        let (c, body) = (client.clone(), pod(node, batch, name, false));
        tasks.push(tokio::spawn(async move { create_pod(&c, &body).await }));
    }
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let mut sample = Value::Null;
    for (name, t) in names.iter().zip(tasks) {
        let (t0, stored) = t.await.context("a create task panicked")??;
        sent.insert(name.clone(), t0);
        sample = stored;
    }
    watch.wait(client, &names).await?;
    let lat = names
        .iter()
        .filter_map(|n| Some(ms(watch.seen.get(n)?.duration_since(*sent.get(n)?))))
        .collect();
    Ok((lat, sample))
}

/// One pod through kedge, waited for; create-to-Running, ms.
async fn kedge_one(
    client: &kube::Client,
    watch: &mut RunningWatch,
    node: &str,
    batch: &str,
    i: usize,
    token: bool,
) -> Result<f64> {
    let name = format!("{batch}-{i}");
    let (t0, _) = create_pod(client, &pod(node, batch, &name, token)).await?;
    watch.wait(client, std::slice::from_ref(&name)).await?;
    watch
        .seen
        .get(&name)
        .map(|t| ms(t.duration_since(t0)))
        .with_context(|| format!("{name} was not seen Running"))
}

/// Waits until CRI has no sandbox left (the agent removes those of
/// deleted pods), at most 30 s.
async fn wait_no_sandboxes(cri: &CriClient) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = cri.list_pod_sandbox(None::<PodSandboxFilter>).await?.len();
        if left == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{left} sandboxes still there 30 s after their pods were deleted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the process has used under 5% of a CPU over 500 ms, at most 20 s.
async fn settle(pid: u32) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = process_cpu(pid)?;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = process_cpu(pid)?;
        if now - last < 0.025 {
            return Ok(());
        }
        last = now;
    }
    Ok(())
}

// ---- the CRI floor ----

/// What the floor needs that the agent knows: the options it builds
/// sandbox and container configs with, and the image's id.
#[derive(Clone)]
struct Floor {
    cri: CriClient,
    sandbox: SandboxOptions,
    image_id: String,
    memory_capacity: i64,
    seccomp_root: String,
}

impl Floor {
    fn new(node: &Kedge, cri: CriClient, image_id: String) -> Floor {
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let seccomp_root = node
            .dir
            .join("data/agent/seccomp")
            .to_string_lossy()
            .into_owned();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_capacity = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<i64>().ok())
            .map_or(0, |kb| kb * 1024);
        Floor {
            cri,
            sandbox: SandboxOptions {
                attempt: 0,
                cgroup_parent: String::new(),
                cluster_dns: Vec::new(),
                cluster_domain: "cluster.local".into(),
                host_dns: podspec::parse_resolv_conf(&resolv),
                pod_logs_root: node.dir.join("pod-logs").to_string_lossy().into_owned(),
                seccomp_root: seccomp_root.clone(),
            },
            image_id,
            memory_capacity,
            seccomp_root,
        }
    }

    /// RunPodSandbox, CreateContainer, StartContainer, then ContainerStatus
    /// until running, for `template` renamed `name` with a fresh uid; ms.
    async fn one(&self, template: &Value, name: &str) -> Result<f64> {
        let mut pod = template.clone();
        pod["metadata"]["name"] = json!(name);
        pod["metadata"]["uid"] = json!(fresh_uid());
        if let Some(o) = pod.as_object_mut() {
            o.remove("status");
        }
        let container = pod["spec"]["containers"][0].clone();
        let t0 = Instant::now();
        let sandbox_config = podspec::sandbox_config(&pod, &self.sandbox);
        let _ = std::fs::create_dir_all(&sandbox_config.log_directory);
        let sandbox = self
            .cri
            .run_pod_sandbox(sandbox_config.clone(), "")
            .await
            .with_context(|| format!("RunPodSandbox {name}"))?;
        let opts = ContainerOptions {
            image_ref: Some(self.image_id.clone()),
            host_ips: vec!["127.0.0.1".to_string()],
            memory_capacity: self.memory_capacity,
            seccomp_root: self.seccomp_root.clone(),
            ..ContainerOptions::default()
        };
        let config = podspec::container_config(&pod, &container, &opts, &NoResolver)
            .with_context(|| format!("the container config of {name}"))?;
        let _ = std::fs::create_dir_all(Path::new(&sandbox_config.log_directory).join("sleep"));
        let id = self
            .cri
            .create_container(&sandbox, config, sandbox_config)
            .await
            .with_context(|| format!("CreateContainer {name}"))?;
        self.cri
            .start_container(&id)
            .await
            .with_context(|| format!("StartContainer {name}"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let st = self.cri.container_status(&id, false).await?;
            let state = st.status.as_ref().map_or(-1, |s| s.state);
            if state == ContainerState::ContainerRunning as i32 {
                return Ok(ms(t0.elapsed()));
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "container of {name} not running within 30 s (state {state})"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// `n` floor pods, all started at once; removed afterwards.
    async fn batch(&self, template: &Value, tag: &str, n: usize) -> Result<Vec<f64>> {
        let result = async {
            let mut tasks = Vec::new();
            for i in 0..n {
                let (f, t) = (self.clone(), template.clone());
                let name = format!("{FLOOR_PREFIX}{tag}-{i}");
                tasks.push(tokio::spawn(async move { f.one(&t, &name).await }));
            }
            let mut lat = Vec::with_capacity(n);
            for t in tasks {
                lat.push(t.await.context("a floor task panicked")??);
            }
            anyhow::Ok(lat)
        }
        .await;
        remove_sandboxes(&self.cri, "agent", |name| name.starts_with(FLOOR_PREFIX)).await;
        result
    }
}

/// A uid no pod has (the floor's sandboxes have no API object).
fn fresh_uid() -> String {
    let n = NEXT_UID.fetch_add(1, Ordering::Relaxed);
    format!(
        "f1000000-0000-4000-8000-{:06x}{:06x}",
        std::process::id() & 0xff_ffff,
        n & 0xff_ffff
    )
}

// ---- footprint ----

/// VmRSS of a process, bytes.
fn vm_rss(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .with_context(|| format!("no VmRSS in {path}"))
}

/// Pss of a process (its private pages plus its share of shared ones),
/// bytes, from /proc/PID/smaps_rollup.
fn pss(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .with_context(|| format!("no Pss in {path}"))
}

/// The node's processes after an idle window.
struct Footprint {
    pods: usize,
    kedge_rss: u64,
    kedge_cpu_per_min: f64,
    containerd_rss: u64,
    containerd_cpu_per_min: f64,
    shims: usize,
    shims_rss: u64,
    shims_pss: u64,
    /// A `--disable-agent` server that idled through the same window.
    control_plane_rss: Option<u64>,
}

async fn footprint(
    node: &Kedge,
    pods: usize,
    settle_for: Duration,
    window: Duration,
    reference: Option<&KedgeServer>,
) -> Result<Footprint> {
    let kedge = node.pid()?;
    let containerd = node.containerd_pid()?;
    tokio::time::sleep(settle_for).await;
    let (k0, c0) = (process_cpu(kedge)?, process_cpu(containerd)?);
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let (k1, c1) = (process_cpu(kedge)?, process_cpu(containerd)?);
    let per_min = 60.0 / t0.elapsed().as_secs_f64();
    let shims = node.shim_pids();
    let shims_rss = shims.iter().filter_map(|p| vm_rss(*p).ok()).sum();
    let shims_pss = shims.iter().filter_map(|p| pss(*p).ok()).sum();
    let control_plane_rss = match reference {
        Some(r) => Some(r.status_bytes("VmRSS")?),
        None => None,
    };
    Ok(Footprint {
        pods,
        kedge_rss: vm_rss(kedge)?,
        kedge_cpu_per_min: (k1 - k0) * per_min,
        containerd_rss: vm_rss(containerd)?,
        containerd_cpu_per_min: (c1 - c0) * per_min,
        shims: shims.len(),
        shims_rss,
        shims_pss,
        control_plane_rss,
    })
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", fmt_num(bytes as f64 / MIB))
}

fn footprint_rows(f0: &Footprint, f30: Option<&Footprint>, window: Duration) -> Vec<Row> {
    let w = format!("{} s", window.as_secs());
    let both = |a: String, b: Option<String>| match b {
        Some(b) => format!("{a} / {b}"),
        None => format!("{a} / n/a"),
    };
    let n30 = f30.map_or(IDLE_PODS, |f| f.pods);
    let agent_share = f0.control_plane_rss.map_or(String::new(), |cp| {
        format!(
            "; a --disable-agent server idling beside it: {}, so the agent's part is about {}",
            mib(cp),
            mib(f0.kedge_rss.saturating_sub(cp))
        )
    });
    let data = |f: &Footprint| {
        json!({
            "pods": f.pods,
            "kedge_rss_bytes": f.kedge_rss,
            "kedge_cpu_s_per_min": f.kedge_cpu_per_min,
            "containerd_rss_bytes": f.containerd_rss,
            "containerd_cpu_s_per_min": f.containerd_cpu_per_min,
            "shims": f.shims,
            "shims_rss_bytes": f.shims_rss,
            "shims_pss_bytes": f.shims_pss,
            "control_plane_rss_bytes": f.control_plane_rss,
        })
    };
    let data30 = f30.map_or(Value::Null, data);
    vec![
        Row::new(
            "Idle RSS, kedge server + agent, 0 pods",
            mib(f0.kedge_rss),
            "<= 50 MB (47.7 MiB)",
            Verdict::from_check(f0.kedge_rss as f64 <= RSS_TARGET),
            format!(
                "one process (API server, controllers, agent); VmRSS after node Ready + settle + {w} idle{agent_share}"
            ),
            data(f0),
        ),
        Row::new(
            &format!("Idle RSS, kedge server + agent, {n30} pods"),
            f30.map_or("n/a".into(), |f| mib(f.kedge_rss)),
            "report",
            Verdict::Report,
            format!("{n30} busybox `sleep` pods Running, then settle + {w} idle"),
            data30.clone(),
        ),
        Row::new(
            &format!("Idle RSS, containerd, 0 / {n30} pods"),
            both(mib(f0.containerd_rss), f30.map(|f| mib(f.containerd_rss))),
            "report",
            Verdict::Report,
            "the agent's supervised containerd 1.6 (CRI plugin), same moments".to_string(),
            json!({}),
        ),
        Row::new(
            &format!("Idle RSS, containerd shims summed, 0 / {n30} pods"),
            both(
                mib(f0.shims_rss),
                f30.map(|f| format!("{} ({} shims; Pss {})", mib(f.shims_rss), f.shims, mib(f.shims_pss))),
            ),
            "report",
            Verdict::Report,
            "containerd-shim-runc-v2, one per pod sandbox: VmRSS summed (pages they share counted in each); Pss (shared pages split among their users) summed in brackets"
                .to_string(),
            json!({}),
        ),
        Row::new(
            &format!("kedge CPU per idle minute, 0 / {n30} pods"),
            both(
                format!("{} s", fmt_num(f0.kedge_cpu_per_min)),
                f30.map(|f| format!("{} s", fmt_num(f.kedge_cpu_per_min))),
            ),
            "report",
            Verdict::Report,
            format!(
                "utime+stime of /proc/PID/stat over the {w} windows, per minute; containerd: {} / {} s",
                fmt_num(f0.containerd_cpu_per_min),
                f30.map_or("n/a".into(), |f| fmt_num(f.containerd_cpu_per_min))
            ),
            json!({}),
        ),
    ]
}

// ---- latency rows ----

struct Latency {
    kedge: Summary,
    floor: Summary,
    kedge_ms: Vec<f64>,
    floor_ms: Vec<f64>,
}

fn latency_rows(what: &str, how: &str, l: &Latency) -> Vec<Row> {
    let (r50, r99) = (l.kedge.p50 / l.floor.p50, l.kedge.p99 / l.floor.p99);
    vec![
        Row::new(
            &format!("Pod create -> Running p50 / p99, {what}"),
            format!("{} / {} ms", fmt_num(l.kedge.p50), fmt_num(l.kedge.p99)),
            "report",
            Verdict::Report,
            format!("POST of a busybox `sleep 3600` pod (nodeName set, automountServiceAccountToken: false) -> first watch event with status.phase Running; {how}"),
            json!({ "p50_ms": l.kedge.p50, "p99_ms": l.kedge.p99, "max_ms": l.kedge.max, "ms": l.kedge_ms }),
        ),
        Row::new(
            &format!("CRI floor p50 / p99, {what}"),
            format!("{} / {} ms", fmt_num(l.floor.p50), fmt_num(l.floor.p99)),
            "report",
            Verdict::Report,
            "the same sandbox and container configs straight to the same containerd: RunPodSandbox (same CNI network) -> CreateContainer -> StartContainer -> ContainerStatus running".to_string(),
            json!({ "p50_ms": l.floor.p50, "p99_ms": l.floor.p99, "max_ms": l.floor.max, "ms": l.floor_ms }),
        ),
        Row::new(
            &format!("kedge / CRI floor, {what}"),
            format!("{}x p50 ({}x p99)", fmt_num(r50), fmt_num(r99)),
            "<= 1.3x",
            Verdict::from_check(r50 <= RATIO_TARGET),
            "ratio of the p50s (of the p99s in brackets)".to_string(),
            json!({ "ratio_p50": r50, "ratio_p99": r99 }),
        ),
    ]
}

// ---- cold start ----

async fn cold_start_rows(plan: &Plan, tarball: &Path) -> Vec<Row> {
    let (mut node_ready, mut containerd, mut first_pod, mut readyz) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in 0..COLD_RUNS {
        let dir = plan.work.join(format!("agent-cold-{r}"));
        let mut node = match spawn_node(plan, &dir, tarball) {
            Ok(n) => n,
            Err(e) => return vec![Row::error("Cold start to Node Ready", &e)],
        };
        let run = cold_start_once(&mut node).await;
        let run = run.map_err(|e| node.explain(e));
        node.shutdown(NS).await;
        drop(node);
        match run {
            Ok((api, ready, cd, pod)) => {
                eprintln!(
                    "[agent] cold start {}/{COLD_RUNS}: /readyz {api:.0} ms, containerd ready {}, Node Ready {ready:.0} ms, first pod Running {pod:.0} ms",
                    r + 1,
                    cd.map_or("n/a".to_string(), |c| format!("{c:.0} ms")),
                );
                readyz.push(api);
                node_ready.push(ready);
                containerd.push(cd.unwrap_or(f64::NAN));
                first_pod.push(pod);
            }
            Err(e) => return vec![Row::error("Cold start to Node Ready", &e)],
        }
    }
    let range = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("min {}, max {}", fmt_num(lo), fmt_num(hi))
    };
    let ready = median(&node_ready);
    vec![
        Row::new(
            "Cold start to Node Ready",
            format!("{} ms ({})", fmt_num(ready), range(&node_ready)),
            "< 2 s",
            Verdict::from_check(ready < 2000.0),
            format!(
                "kedge server with its agent, fresh data dir (busybox tarball in the images dir); spawn -> watch event with the Node's Ready condition True; /readyz 200 after {} ms; median of {COLD_RUNS} runs",
                fmt_num(median(&readyz))
            ),
            json!({ "median_ms": ready, "runs_ms": node_ready, "readyz_runs_ms": readyz }),
        ),
        Row::new(
            "Cold start to containerd ready",
            format!("{} ms", fmt_num(median(&containerd))),
            "report",
            Verdict::Report,
            format!("same runs; spawn -> timestamp of the agent's \"container runtime is ready\" log line (containerd started, CRI Version answered); median of {COLD_RUNS} runs"),
            json!({ "median_ms": median(&containerd), "runs_ms": containerd }),
        ),
        Row::new(
            "Cold start to first pod Running",
            format!("{} ms", fmt_num(median(&first_pod))),
            "report",
            Verdict::Report,
            format!("same runs; a busybox pod POSTed when the Node is Ready; spawn -> its Running on a watch (includes the image import); median of {COLD_RUNS} runs"),
            json!({ "median_ms": median(&first_pod), "runs_ms": first_pod }),
        ),
    ]
}

/// One cold start: (/readyz, Node Ready, containerd ready, first pod
/// Running), ms from spawn.
async fn cold_start_once(node: &mut Kedge) -> Result<(f64, f64, Option<f64>, f64)> {
    let api = ms(node.wait_readyz(Duration::from_millis(5)).await?);
    let client = node.client().await?;
    let ready = ms(node.wait_node_ready_watched(&client).await?);
    create_namespace(&client, NS).await?;
    wait_service_account(&client).await?;
    let mut watch = RunningWatch::open(&client, "cold").await?;
    let name = "cold-0".to_string();
    create_pod(&client, &pod(node.node_name(), "cold", &name, false)).await?;
    watch.wait(&client, std::slice::from_ref(&name)).await?;
    let running = watch
        .seen
        .get(&name)
        .map_or(f64::NAN, |t| ms(t.duration_since(node.spawned())));
    Ok((api, ready, node.containerd_ready().map(ms), running))
}

/// Pods need the namespace's `default` ServiceAccount (its controller
/// creates it shortly after the namespace).
async fn wait_service_account(client: &kube::Client) -> Result<()> {
    let path = format!("/api/v1/namespaces/{NS}/serviceaccounts/default");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = send(client, "GET", &path, None, vec![]).await?;
        if status == 200 {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "no {path} after 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the agent has imported the busybox tarball; its image id.
async fn wait_image(cri: &CriClient) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(img) = cri.image_status(image_spec(BUSYBOX), false).await? {
            return Ok(img.id);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{BUSYBOX} not imported within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---- the steady node ----

async fn node_rows(plan: &Plan, tarball: &Path) -> Vec<Row> {
    let mut node = match spawn_node(plan, &plan.work.join("agent-node"), tarball) {
        Ok(n) => n,
        Err(e) => return vec![Row::error("Node agent (pods, footprint)", &e)],
    };
    let rows = node_rows_inner(plan, &mut node).await;
    node.shutdown(NS).await;
    rows
}

async fn node_rows_inner(plan: &Plan, node: &mut Kedge) -> Vec<Row> {
    let settle_for = Duration::from_secs(if plan.quick { 5 } else { 10 });
    let prep = async {
        node.wait_readyz(Duration::from_millis(5)).await?;
        let client = node.client().await?;
        node.wait_node_ready_watched(&client).await?;
        let cri = node.cri().await?;
        let image = wait_image(&cri).await?;
        create_namespace(&client, NS).await?;
        wait_service_account(&client).await?;
        anyhow::Ok((client, cri, image))
    }
    .await;
    let (client, cri, image) = match prep {
        Ok(p) => p,
        Err(e) => return vec![Row::error("Node agent (pods, footprint)", &node.explain(e))],
    };

    // Footprint with no pods, a control-plane-only server idling beside it.
    let mut rows = Vec::new();
    let reference = async {
        let mut s = KedgeServer::spawn(&plan.kedge, &plan.work.join("agent-reference"))?;
        s.wait_ready(&ReadyzProbe::new()?, Duration::from_millis(10))
            .await?;
        anyhow::Ok(s)
    }
    .await;
    let reference = match reference {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("[agent] the --disable-agent reference server did not start: {e:#}");
            None
        }
    };
    let f0 = footprint(node, 0, settle_for, plan.idle, reference.as_ref()).await;
    if let Some(mut s) = reference {
        let _ = s.stop();
    }
    let f0 = match f0 {
        Ok(f) => {
            eprintln!(
                "[agent] idle, 0 pods: kedge {}, containerd {}, control plane alone {}",
                mib(f.kedge_rss),
                mib(f.containerd_rss),
                f.control_plane_rss.map_or("n/a".into(), mib)
            );
            Some(f)
        }
        Err(e) => {
            rows.push(Row::error("Idle footprint, 0 pods", &node.explain(e)));
            None
        }
    };

    // Latency, kedge and the floor taking turns.
    match latency(node, &client, &cri, image).await {
        Ok(r) => rows.extend(r),
        Err(e) => rows.push(Row::error("Pod create -> Running", &node.explain(e))),
    }

    // Footprint with 30 pods running.
    let f30 = async {
        delete_workloads(&client, NS).await?;
        wait_no_sandboxes(&cri).await?;
        let (lat, _) = kedge_batch(&client, node.node_name(), "idle", IDLE_PODS).await?;
        anyhow::ensure!(
            lat.len() == IDLE_PODS,
            "{} of {IDLE_PODS} pods ran",
            lat.len()
        );
        settle(node.pid()?).await?;
        footprint(node, IDLE_PODS, settle_for, plan.idle, None).await
    }
    .await;
    let f30 = match f30 {
        Ok(f) => {
            eprintln!(
                "[agent] idle, {IDLE_PODS} pods: kedge {}, containerd {}, {} shims {}",
                mib(f.kedge_rss),
                mib(f.containerd_rss),
                f.shims,
                mib(f.shims_rss)
            );
            Some(f)
        }
        Err(e) => {
            rows.push(Row::error(
                &format!("Idle footprint, {IDLE_PODS} pods"),
                &node.explain(e),
            ));
            None
        }
    };
    if let Some(f0) = &f0 {
        let mut fr = footprint_rows(f0, f30.as_ref(), plan.idle);
        fr.append(&mut rows);
        rows = fr;
    }
    rows
}

async fn latency(
    node: &Kedge,
    client: &kube::Client,
    cri: &CriClient,
    image: String,
) -> Result<Vec<Row>> {
    let floor = Floor::new(node, cri.clone(), image);
    let pid = node.pid()?;
    let between = move || async move {
        delete_workloads(client, NS).await?;
        wait_no_sandboxes(cri).await?;
        settle(pid).await
    };

    // One unmeasured pod each way first: first-use costs (CNI plugin
    // binaries, the bridge, the image's snapshot) are paid here.
    let (_, template) = kedge_batch(client, node.node_name(), "warm", 1).await?;
    between().await?;
    floor.batch(&template, "warm", 1).await?;
    settle(pid).await?;

    // One at a time: rounds of one pod each way (kedge, the floor, kedge
    // with the token volume), the order rotating, so the three see the
    // same machine and the same number of running pods.
    let (mut k_serial, mut f_serial, mut k_token) = (Vec::new(), Vec::new(), Vec::new());
    let serial = async {
        let mut plain = RunningWatch::open(client, "serial").await?;
        let mut token = RunningWatch::open(client, "token").await?;
        for i in 0..SERIAL {
            for k in 0..3 {
                match (i + k) % 3 {
                    0 => k_serial.push(
                        kedge_one(client, &mut plain, node.node_name(), "serial", i, false).await?,
                    ),
                    1 => f_serial.push(
                        floor
                            .one(&template, &format!("{FLOOR_PREFIX}serial-{i}"))
                            .await?,
                    ),
                    _ => k_token.push(
                        kedge_one(client, &mut token, node.node_name(), "token", i, true).await?,
                    ),
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    remove_sandboxes(cri, "agent", |name| name.starts_with(FLOOR_PREFIX)).await;
    serial?;
    eprintln!(
        "[agent] {SERIAL} one at a time: p50 kedge {:.0} ms, floor {:.0} ms, kedge with token {:.0} ms",
        Summary::of(k_serial.clone()).p50,
        Summary::of(f_serial.clone()).p50,
        Summary::of(k_token.clone()).p50,
    );
    between().await?;

    let (k_burst, _) = kedge_batch(client, node.node_name(), "burst", BURST).await?;
    between().await?;
    let f_burst = floor.batch(&template, "burst", BURST).await?;
    eprintln!(
        "[agent] {BURST} at once: p50 kedge {:.0} ms, floor {:.0} ms",
        Summary::of(k_burst.clone()).p50,
        Summary::of(f_burst.clone()).p50,
    );

    let pair = |k: Vec<f64>, f: Vec<f64>| Latency {
        kedge: Summary::of(k.clone()),
        floor: Summary::of(f.clone()),
        kedge_ms: k,
        floor_ms: f,
    };
    let serial = pair(k_serial, f_serial);
    let burst = pair(k_burst, f_burst);
    let token = Summary::of(k_token.clone());
    anyhow::ensure!(
        serial.kedge.n == SERIAL && burst.kedge.n == BURST && token.n == SERIAL,
        "some pods were not timed"
    );
    let mut rows = latency_rows(
        &format!("{SERIAL} one at a time"),
        &format!("{SERIAL} rounds of one pod each way (kedge, the floor, kedge with the token volume), order rotating, each waited for"),
        &serial,
    );
    rows.extend(latency_rows(
        &format!("{BURST} at once"),
        &format!("{BURST} POSTs at once; then, on a clean node, the floor's {BURST} pods at once"),
        &burst,
    ));
    let r = token.p50 / serial.floor.p50;
    rows.push(Row::new(
        &format!("Pod create -> Running p50 / p99, {SERIAL} one at a time, default token volume"),
        format!(
            "{} / {} ms ({}x the floor's p50)",
            fmt_num(token.p50),
            fmt_num(token.p99),
            fmt_num(r)
        ),
        "report",
        Verdict::Report,
        "as above without automountServiceAccountToken: false: the agent also requests a token and writes the projected kube-api-access volume".to_string(),
        json!({ "p50_ms": token.p50, "p99_ms": token.p99, "max_ms": token.max, "ms": k_token, "ratio_p50": r }),
    ));
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_without_token_opt_out_of_automount() {
        let p = pod("n1", "b", "b-0", false);
        assert_eq!(p["spec"]["automountServiceAccountToken"], false);
        assert_eq!(p["spec"]["nodeName"], "n1");
        assert_eq!(p["metadata"]["labels"][BATCH_LABEL], "b");
        let t = pod("n1", "b", "b-1", true);
        assert!(t["spec"].get("automountServiceAccountToken").is_none());
    }

    #[test]
    fn floor_uids_are_unique_and_uuid_shaped() {
        let (a, b) = (fresh_uid(), fresh_uid());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }

    #[test]
    fn bridge_names_fit_linux_limits() {
        // IFNAMSIZ is 16 with the NUL: at most 15 characters.
        let name = format!("kb{}x{}", 99_999, 999);
        assert!(name.len() <= 15, "{name}");
    }
}
