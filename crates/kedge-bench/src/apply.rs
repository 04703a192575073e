//! `kubectl apply` of a many-object manifest against plain POSTs of the
//! same objects, and per-request latency of the patch flavours on one
//! Deployment.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::load::send;
use crate::server::KedgeServer;
use crate::stats::ms;

/// Namespaces of one manifest; the objects are spread evenly over them.
pub const NAMESPACES: usize = 2;
/// Objects of one app: two ConfigMaps, a Secret, a Service, a Deployment.
pub const PER_APP: usize = 5;

/// `kubectl.1.33` of the Cloud SDK when present (kedge serves 1.33), else
/// `/usr/bin/kubectl`, else `kubectl` from `PATH`.
pub fn default_kubectl() -> PathBuf {
    [
        "/usr/lib/google-cloud-sdk/bin/kubectl.1.33",
        "/usr/bin/kubectl",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
    .unwrap_or_else(|| PathBuf::from("kubectl"))
}

// ---- the manifest ----

/// Standard base64 with padding (Secret `data`).
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The Deployment of app `name`; `lat` of the latency part uses it too.
pub fn deployment(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name, "tier": "bench"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "tier": "bench"}},
                "spec": {
                    "containers": [{
                        "name": "app",
                        "image": "registry.example.com/bench/app:1.4.2",
                        "args": ["--config", "/etc/app/app.conf"],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "env": [
                            {"name": "APP_NAME", "value": name},
                            {"name": "LOG_LEVEL", "value": "info"},
                            {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": format!("{name}-secret"), "key": "token"}}},
                        ],
                        "envFrom": [{"configMapRef": {"name": format!("{name}-env")}}],
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5},
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}],
                    }],
                    "volumes": [{"name": "config", "configMap": {"name": format!("{name}-files")}}],
                },
            },
        },
    })
}

/// The five objects of app `name` in `ns`.
fn app(ns: &str, name: &str) -> [Value; PER_APP] {
    let conf: String = (0..12)
        .map(|i| format!("option_{i} = value-{i} # {name}\n"))
        .collect();
    [
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": format!("{name}-env"), "namespace": ns, "labels": {"app": name}},
            "data": {"APP_MODE": "production", "CACHE_SIZE": "256", "FEATURE_FLAGS": "a,b,c", "REGION": "local"},
        }),
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": format!("{name}-files"), "namespace": ns, "labels": {"app": name}},
            "data": {"app.conf": conf},
        }),
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": format!("{name}-secret"), "namespace": ns, "labels": {"app": name}},
            "type": "Opaque",
            "data": {
                "token": base64(format!("token-for-{name}-0123456789abcdef").as_bytes()),
                "password": base64(format!("password-{name}").as_bytes()),
            },
        }),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
            "spec": {
                "type": "ClusterIP",
                "selector": {"app": name},
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            },
        }),
        deployment(ns, name),
    ]
}

/// `objects` objects (a multiple of `NAMESPACES * PER_APP`), app by app,
/// the apps split evenly over `namespaces`.
pub fn manifest_objects(namespaces: &[String], objects: usize) -> Vec<Value> {
    let apps = objects / PER_APP / namespaces.len().max(1);
    let mut out = Vec::with_capacity(objects);
    for ns in namespaces {
        for i in 0..apps {
            out.extend(app(ns, &format!("app-{i:03}")));
        }
    }
    out
}

fn plain_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && !k.starts_with(|c: char| c.is_ascii_digit() || c == '-')
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        // A JSON string is a valid YAML double-quoted scalar.
        Value::String(s) => Some(Value::String(s.clone()).to_string()),
        Value::Object(m) if m.is_empty() => Some("{}".to_string()),
        Value::Array(a) if a.is_empty() => Some("[]".to_string()),
        Value::Object(_) | Value::Array(_) => None,
        other => Some(other.to_string()),
    }
}

fn yaml_into(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if plain_key(k) {
                    k.clone()
                } else {
                    Value::String(k.clone()).to_string()
                };
                match scalar(v) {
                    Some(s) => out.push_str(&format!("{pad}{key}: {s}\n")),
                    None => {
                        out.push_str(&format!("{pad}{key}:\n"));
                        let inner = if v.is_array() { indent } else { indent + 2 };
                        yaml_into(v, inner, out);
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match scalar(item) {
                    Some(s) => out.push_str(&format!("{pad}- {s}\n")),
                    None => {
                        // The item's first line goes after the dash.
                        let mut inner = String::new();
                        yaml_into(item, indent + 2, &mut inner);
                        out.push_str(&pad);
                        out.push_str("- ");
                        out.push_str(&inner[indent + 2..]);
                    }
                }
            }
        }
        other => {
            out.push_str(&pad);
            out.push_str(&scalar(other).unwrap_or_default());
            out.push('\n');
        }
    }
}

/// Block-style YAML of one object.
pub fn yaml(v: &Value) -> String {
    let mut out = String::new();
    yaml_into(v, 0, &mut out);
    out
}

/// One multi-document YAML of `objects`.
pub fn multi_doc_yaml(objects: &[Value]) -> String {
    objects.iter().map(yaml).collect::<Vec<_>>().join("---\n")
}

/// The collection an object is POSTed to.
pub fn collection_path(obj: &Value) -> Result<String> {
    let ns = obj["metadata"]["namespace"]
        .as_str()
        .context("object without a namespace")?;
    Ok(match obj["kind"].as_str() {
        Some("ConfigMap") => format!("/api/v1/namespaces/{ns}/configmaps"),
        Some("Secret") => format!("/api/v1/namespaces/{ns}/secrets"),
        Some("Service") => format!("/api/v1/namespaces/{ns}/services"),
        Some("Deployment") => format!("/apis/apps/v1/namespaces/{ns}/deployments"),
        other => bail!("no path for kind {other:?}"),
    })
}

// ---- CPU time ----

fn clock_ticks() -> f64 {
    // SAFETY: sysconf(3) reads a constant of the system; no memory of ours.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// User + system CPU of a running process, seconds (/proc/PID/stat).
pub fn process_cpu(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    stat_cpu_ticks(&text)
        .map(|t| t as f64 / clock_ticks())
        .with_context(|| format!("no utime/stime in {path}"))
}

/// utime + stime (fields 14 and 15) of a /proc/PID/stat line, in ticks.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces; count from its `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// User + system CPU of this process's waited-for children, seconds.
fn children_cpu() -> f64 {
    // SAFETY: getrusage(2) writes only into the zeroed struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Wait until the server has used under 5% of a CPU over 200 ms (its
/// own controllers have caught up with the last writes), at most 10 s.
pub async fn settle(server: &KedgeServer) -> Result<()> {
    let pid = server.pid()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = process_cpu(pid)?;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = process_cpu(pid)?;
        if now - last < 0.01 {
            return Ok(());
        }
        last = now;
    }
    Ok(())
}

// ---- kubectl ----

/// One kubectl run: wall time, CPU, what it printed.
pub struct KubectlRun {
    pub wall: Duration,
    pub cpu_s: f64,
    pub stdout: String,
}

/// `kubectl --kubeconfig <kc> --cache-dir <cache> <args>`; fails unless it
/// exits 0.
pub async fn kubectl(
    bin: &Path,
    kubeconfig: &Path,
    cache: &Path,
    args: &[&str],
) -> Result<KubectlRun> {
    let mut cmd = Command::new(bin);
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .env("KUBECONFIG", kubeconfig);
    let what = format!("{} {}", bin.display(), args.join(" "));
    let (wall, cpu_s, out) = tokio::task::spawn_blocking(move || {
        let cpu0 = children_cpu();
        let t = Instant::now();
        let out = cmd.output();
        let wall = t.elapsed();
        (wall, children_cpu() - cpu0, out)
    })
    .await
    .context("kubectl thread")?;
    let out = out.with_context(|| format!("running {what}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: String = err
            .chars()
            .rev()
            .take(600)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        bail!("{what}: {}: {tail}", out.status);
    }
    Ok(KubectlRun {
        wall,
        cpu_s,
        stdout,
    })
}

/// Lines of kubectl's output that end with ` {verb}` (`created`,
/// `serverside-applied`).
pub fn count_verb(stdout: &str, verb: &str) -> usize {
    stdout
        .lines()
        .filter(|l| l.trim_end().ends_with(&format!(" {verb}")))
        .count()
}

/// `kubectl version --client` line, for the record.
pub fn kubectl_version(bin: &Path) -> Option<String> {
    let out = Command::new(bin)
        .args(["version", "--client"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("Client Version:"))?;
    Some(line.trim().to_string())
}

// ---- plain POSTs ----

/// POST every object, one at a time, from one client; the wall time.
pub async fn post_all(client: &kube::Client, objects: &[Value]) -> Result<Duration> {
    let bodies: Vec<(String, Vec<u8>)> = objects
        .iter()
        .map(|o| Ok((collection_path(o)?, o.to_string().into_bytes())))
        .collect::<Result<_>>()?;
    let t = Instant::now();
    for (path, body) in bodies {
        let (status, resp) = send(client, "POST", &path, Some("application/json"), body).await?;
        if status != 201 {
            bail!(
                "POST {path}: HTTP {status}: {}",
                String::from_utf8_lossy(&resp)
            );
        }
    }
    Ok(t.elapsed())
}

// ---- latency on one Deployment ----

/// The kinds of request timed on one Deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    StrategicMerge,
    ServerSideApply,
    JsonMerge,
    Get,
}

impl Op {
    pub const ALL: [Op; 4] = [
        Op::StrategicMerge,
        Op::ServerSideApply,
        Op::JsonMerge,
        Op::Get,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Op::StrategicMerge => "strategic_merge_patch",
            Op::ServerSideApply => "server_side_apply",
            Op::JsonMerge => "json_merge_patch",
            Op::Get => "get",
        }
    }

    pub fn metric(self) -> &'static str {
        match self {
            Op::StrategicMerge => "Strategic merge patch p50 / p99, 1 client",
            Op::ServerSideApply => "Server-side apply p50 / p99, 1 client",
            Op::JsonMerge => "JSON merge patch p50 / p99, 1 client",
            Op::Get => "Get one Deployment p50 / p99, 1 client",
        }
    }

    /// What the requests do, for the method column.
    pub fn phrase(self) -> &'static str {
        match self {
            Op::StrategicMerge => {
                "strategic-merge-patch+json flipping an annotation and a container env var \
                 (by merge key) of one Deployment"
            }
            Op::ServerSideApply => {
                "apply-patch+yaml, fieldManager=bench, force, flipping an annotation and an \
                 env var, same Deployment"
            }
            Op::JsonMerge => {
                "merge-patch+json flipping an annotation and a pod-template annotation, \
                 same Deployment"
            }
            Op::Get => "GET of the same Deployment, for reference",
        }
    }

    /// Method, path, content type and body of request number `i`; each
    /// patch flips its own fields between two values, so consecutive
    /// requests of one kind always change the object.
    pub fn request(
        self,
        ns: &str,
        name: &str,
        i: u64,
    ) -> (&'static str, String, Option<&'static str>, Vec<u8>) {
        let path = format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}");
        let v = if i.is_multiple_of(2) { "on" } else { "off" };
        match self {
            Op::StrategicMerge => {
                let body = json!({
                    "metadata": {"annotations": {"bench/smp": v}},
                    "spec": {"template": {"spec": {"containers": [
                        {"name": "app", "env": [{"name": "BENCH_SMP", "value": v}]}
                    ]}}},
                });
                (
                    "PATCH",
                    path,
                    Some("application/strategic-merge-patch+json"),
                    body.to_string().into_bytes(),
                )
            }
            Op::ServerSideApply => {
                let body = json!({
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": name, "namespace": ns, "annotations": {"bench/ssa": v}},
                    "spec": {"template": {"spec": {"containers": [
                        {"name": "app", "env": [{"name": "BENCH_SSA", "value": v}]}
                    ]}}},
                });
                (
                    "PATCH",
                    format!("{path}?fieldManager=bench&force=true"),
                    Some("application/apply-patch+yaml"),
                    yaml(&body).into_bytes(),
                )
            }
            Op::JsonMerge => {
                // A merge patch replaces lists whole, so it flips an
                // annotation of the object and one of its pod template.
                let body = json!({
                    "metadata": {"annotations": {"bench/merge": v}},
                    "spec": {"template": {"metadata": {"annotations": {"bench/merge": v}}}},
                });
                (
                    "PATCH",
                    path,
                    Some("application/merge-patch+json"),
                    body.to_string().into_bytes(),
                )
            }
            Op::Get => ("GET", path, None, Vec::new()),
        }
    }
}

/// What one back-to-back window of one kind measured.
pub struct OpRun {
    /// Latency of each request, ms.
    pub latencies: Vec<f64>,
    /// Patches whose response kept the previous resourceVersion.
    pub unchanged: u64,
}

/// Requests of kind `op` numbered from `*next`, one at a time, for
/// `window` (or `max` requests, when given); any status but 200 fails.
pub async fn op_loop(
    client: &kube::Client,
    ns: &str,
    name: &str,
    op: Op,
    next: &mut u64,
    window: Duration,
    max: Option<u64>,
) -> Result<OpRun> {
    let deadline = Instant::now() + window;
    let mut run = OpRun {
        latencies: Vec::new(),
        unchanged: 0,
    };
    let mut last_rv: Option<String> = None;
    while Instant::now() < deadline && max.is_none_or(|m| (run.latencies.len() as u64) < m) {
        let (method, path, ct, body) = op.request(ns, name, *next);
        *next += 1;
        let t = Instant::now();
        let (status, resp) = send(client, method, &path, ct, body).await?;
        let took = t.elapsed();
        if status != 200 {
            bail!(
                "{method} {path}: HTTP {status}: {}",
                String::from_utf8_lossy(&resp)
            );
        }
        run.latencies.push(ms(took));
        if op != Op::Get {
            let v: Value = serde_json::from_slice(&resp)
                .with_context(|| format!("{method} {path}: not JSON"))?;
            let rv = v["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_string);
            if rv.is_some() && rv == last_rv {
                run.unchanged += 1;
            }
            last_rv = rv;
        }
    }
    Ok(run)
}

/// Every patch kind left its mark on the Deployment: the annotations,
/// both env vars in container `app`, and an Apply entry of manager
/// `bench` in managedFields.
pub async fn check_patched(client: &kube::Client, ns: &str, name: &str) -> Result<()> {
    let path = format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}");
    let (status, body) = send(client, "GET", &path, None, Vec::new()).await?;
    anyhow::ensure!(status == 200, "GET {path}: HTTP {status}");
    let d: Value = serde_json::from_slice(&body).with_context(|| format!("GET {path}"))?;
    let missing = patched_marks_missing(&d);
    anyhow::ensure!(
        missing.is_empty(),
        "the patches did not all land on {ns}/{name}: missing {}",
        missing.join(", ")
    );
    Ok(())
}

fn patched_marks_missing(d: &Value) -> Vec<&'static str> {
    let ann = &d["metadata"]["annotations"];
    let containers = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let env: Vec<String> = containers
        .iter()
        .filter(|c| c["name"] == "app")
        .flat_map(|c| c["env"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["name"].as_str().map(str::to_string))
        .collect();
    let applied = d["metadata"]["managedFields"].as_array().is_some_and(|m| {
        m.iter()
            .any(|f| f["manager"] == "bench" && f["operation"] == "Apply")
    });
    let mut missing = Vec::new();
    for (ok, what) in [
        (ann["bench/smp"].is_string(), "annotation bench/smp"),
        (ann["bench/ssa"].is_string(), "annotation bench/ssa"),
        (ann["bench/merge"].is_string(), "annotation bench/merge"),
        (
            d["spec"]["template"]["metadata"]["annotations"]["bench/merge"].is_string(),
            "pod template annotation bench/merge",
        ),
        (env.iter().any(|e| e == "BENCH_SMP"), "env BENCH_SMP"),
        (env.iter().any(|e| e == "BENCH_SSA"), "env BENCH_SSA"),
        (env.iter().any(|e| e == "APP_NAME"), "env APP_NAME"),
        (applied, "managedFields Apply entry of bench"),
    ] {
        if !ok {
            missing.push(what);
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), enc);
        }
    }

    #[test]
    fn manifest_has_every_object_once() {
        let ns = vec!["a".to_string(), "b".to_string()];
        let objs = manifest_objects(&ns, 500);
        assert_eq!(objs.len(), 500);
        let mut keys: Vec<String> = objs
            .iter()
            .map(|o| {
                format!(
                    "{}/{}/{}",
                    o["kind"].as_str().unwrap_or_default(),
                    o["metadata"]["namespace"].as_str().unwrap_or_default(),
                    o["metadata"]["name"].as_str().unwrap_or_default()
                )
            })
            .collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 500);
        let count = |k: &str| objs.iter().filter(|o| o["kind"] == k).count();
        assert_eq!(count("ConfigMap"), 200);
        assert_eq!(count("Secret"), 100);
        assert_eq!(count("Service"), 100);
        assert_eq!(count("Deployment"), 100);
        let docs = multi_doc_yaml(&objs);
        assert_eq!(docs.matches("\n---\n").count(), 499);
        assert_eq!(
            collection_path(&objs[4]).ok().as_deref(),
            Some("/apis/apps/v1/namespaces/a/deployments")
        );
    }

    #[test]
    fn yaml_is_block_style() {
        let v = json!({
            "kind": "Service",
            "metadata": {"name": "x", "labels": {"app.kubernetes.io/name": "x"}, "annotations": {}},
            "spec": {"ports": [{"name": "http", "port": 80}, {"port": 81}], "args": ["a", "b: c"]},
        });
        // serde_json keeps insertion order (the workspace's preserve_order).
        let want = "kind: \"Service\"\nmetadata:\n  name: \"x\"\n  labels:\n    app.kubernetes.io/name: \"x\"\n  annotations: {}\nspec:\n  ports:\n  - name: \"http\"\n    port: 80\n  - port: 81\n  args:\n  - \"a\"\n  - \"b: c\"\n";
        assert_eq!(yaml(&v), want);
    }

    #[test]
    fn cpu_ticks_from_stat() {
        let stat = "1234 (kedge (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 25 17 0 0 20 0 8 0";
        assert_eq!(stat_cpu_ticks(stat), Some(42));
        assert_eq!(stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn patch_marks_are_checked() {
        let mut d = deployment("n", "d");
        assert_eq!(patched_marks_missing(&d).len(), 7);
        d["metadata"]["annotations"] =
            json!({"bench/smp": "on", "bench/ssa": "off", "bench/merge": "on"});
        d["spec"]["template"]["metadata"]["annotations"] = json!({"bench/merge": "on"});
        if let Some(env) = d["spec"]["template"]["spec"]["containers"][0]["env"].as_array_mut() {
            env.push(json!({"name": "BENCH_SMP", "value": "on"}));
            env.push(json!({"name": "BENCH_SSA", "value": "on"}));
        }
        d["metadata"]["managedFields"] = json!([{"manager": "bench", "operation": "Apply"}]);
        assert!(patched_marks_missing(&d).is_empty());
    }

    #[test]
    fn kubectl_output_is_counted() {
        let out =
            "configmap/a created\nsecret/b created\nservice/c serverside-applied\nWarning: x\n";
        assert_eq!(count_verb(out, "created"), 2);
        assert_eq!(count_verb(out, "serverside-applied"), 1);
    }

    #[test]
    fn patches_flip_their_fields() {
        let body = |i| {
            let (_, _, _, b) = Op::StrategicMerge.request("n", "d", i);
            String::from_utf8(b).unwrap_or_default()
        };
        assert_ne!(body(0), body(1));
        assert_eq!(body(0), body(2));
        let (m, p, ct, _) = Op::ServerSideApply.request("n", "d", 0);
        assert_eq!(m, "PATCH");
        assert!(p.ends_with("/deployments/d?fieldManager=bench&force=true"));
        assert_eq!(ct, Some("application/apply-patch+yaml"));
    }
}
