//! Deployments, ReplicaSets and ReplicationControllers end to end.
//!
//! Most tests run `kedge server --disable-agent` and play the kubelet
//! themselves (a task marks pods Running/Ready through the status
//! subresource and finishes graceful deletions), so rollout math, history,
//! undo, pause/resume, restart, proportional scaling and the status counters
//! are exercised quickly and exactly, with kubectl 1.27 and 1.33. The last
//! test runs real busybox pods with the node agent (root, containerd).

mod common;

use std::time::{Duration, Instant};

use common::{condition_or_null, get_json, raw, TestServer};
use serde_json::{json, Value};

const IMAGE: &str = "kedge.local/busybox";

fn kubectl(server: &TestServer, minor: u32, args: &[&str]) -> std::process::Output {
    let bin = format!("/usr/lib/google-cloud-sdk/bin/kubectl.1.{minor}");
    std::process::Command::new(&bin)
        .arg("--kubeconfig")
        .arg(server.kubeconfig())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"))
}

fn kubectl_stdin(
    server: &TestServer,
    minor: u32,
    args: &[&str],
    input: &str,
) -> std::process::Output {
    use std::io::Write;
    let bin = format!("/usr/lib/google-cloud-sdk/bin/kubectl.1.{minor}");
    let mut child = std::process::Command::new(&bin)
        .arg("--kubeconfig")
        .arg(server.kubeconfig())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
    if let Some(mut s) = child.stdin.take() {
        s.write_all(input.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("kubectl output")
}

#[track_caller]
fn ok(server: &TestServer, o: std::process::Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed: {}{}\nserver log tail:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        common::cluster::tail(&server.log(), 40)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `kubectl -n NS set image DEPLOYMENT c=IMAGE`.
#[track_caller]
fn set_image(
    server: &TestServer,
    minor: u32,
    ns: &str,
    deployment: &str,
    image: &str,
    what: &str,
) -> String {
    let image = format!("c={image}");
    run(
        server,
        minor,
        &["-n", ns, "set", "image", deployment, &image],
        what,
    )
}

/// Runs kubectl and asserts that it succeeded; its stdout.
#[track_caller]
fn run(server: &TestServer, minor: u32, args: &[&str], what: &str) -> String {
    ok(server, kubectl(server, minor, args), what)
}

/// `kubectl apply -f -` with `yaml`, asserted to succeed.
#[track_caller]
fn apply(server: &TestServer, minor: u32, yaml: &str, what: &str) -> String {
    ok(
        server,
        kubectl_stdin(server, minor, &["apply", "-f", "-"], yaml),
        what,
    )
}

/// `kubectl -n NS rollout status TARGET TIMEOUT`, asserted to succeed.
#[track_caller]
fn rollout_status(
    server: &TestServer,
    minor: u32,
    ns: &str,
    target: &str,
    timeout: &str,
    what: &str,
) -> String {
    run(
        server,
        minor,
        &["-n", ns, "rollout", "status", target, timeout],
        what,
    )
}

/// Plays the kubelet for every pod: Running and Ready (unless its first
/// image contains "stuck", then Running and not Ready), and finishes
/// graceful deletions.
fn fake_kubelet(client: kube::Client) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (_, list) = get_json(&client, "/api/v1/pods").await;
            for pod in list["items"].as_array().into_iter().flatten() {
                let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
                let name = pod["metadata"]["name"].as_str().unwrap_or("");
                let path = format!("/api/v1/namespaces/{ns}/pods/{name}");
                if !pod["metadata"]["deletionTimestamp"].is_null() {
                    let body = serde_json::to_vec(&json!({"gracePeriodSeconds": 0})).unwrap();
                    raw(&client, "DELETE", &path, Some("application/json"), body).await;
                    continue;
                }
                if pod["status"]["phase"] == "Running" {
                    continue;
                }
                let stuck = pod["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or("")
                    .contains("stuck");
                let now = jiff::Timestamp::now()
                    .strftime("%Y-%m-%dT%H:%M:%SZ")
                    .to_string();
                let ready = if stuck { "False" } else { "True" };
                let patch = json!({"status": {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": ready, "lastTransitionTime": now},
                    {"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
                ]}});
                raw(
                    &client,
                    "PATCH",
                    &format!("{path}/status"),
                    Some("application/merge-patch+json"),
                    serde_json::to_vec(&patch).unwrap(),
                )
                .await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

async fn wait_json(
    server: &TestServer,
    path: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let client = server.client().await;
    let deadline = Instant::now() + timeout;
    loop {
        let (status, v) = get_json(&client, path).await;
        if status == 200 && pred(&v) {
            return v;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: not reached in {timeout:?}\n{path}: {v:#}\nserver log tail:\n{}",
                common::cluster::tail(&server.log(), 40)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The ReplicaSets a Deployment controls, by revision.
async fn replica_sets(server: &TestServer, ns: &str, deployment: &Value) -> Vec<Value> {
    let client = server.client().await;
    let uid = deployment["metadata"]["uid"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let (_, list) = get_json(
        &client,
        &format!("/apis/apps/v1/namespaces/{ns}/replicasets"),
    )
    .await;
    let mut rss: Vec<Value> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|rs| rs["metadata"]["ownerReferences"][0]["uid"] == uid.as_str())
        .cloned()
        .collect();
    rss.sort_by_key(revision);
    rss
}

fn revision(obj: &Value) -> i64 {
    obj["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn image_of(rs: &Value) -> &str {
    rs["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or("")
}

fn deployment_yaml(ns: &str, name: &str, replicas: u32, image: &str, extra_spec: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {ns}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
{extra_spec}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: c
        image: {image}
        command: ["sleep", "3600"]
"#
    )
}

async fn rollout_cycle(server: &TestServer, minor: u32) {
    let ns = format!("rollout-{minor}");
    let dpath = format!("/apis/apps/v1/namespaces/{ns}/deployments/web");
    run(server, minor, &["create", "namespace", &ns], "create ns");
    let strategy =
        "  strategy:\n    type: RollingUpdate\n    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}";
    let yaml = deployment_yaml(&ns, "web", 3, &format!("{IMAGE}:1"), strategy);
    apply(server, minor, &yaml, "apply");
    let status = rollout_status(
        server,
        minor,
        &ns,
        "deployment/web",
        "--timeout=60s",
        "rollout status",
    );
    assert!(status.contains("successfully rolled out"), "{status}");
    run(
        server,
        minor,
        &[
            "-n",
            &ns,
            "wait",
            "--for=condition=Available",
            "deployment/web",
            "--timeout=30s",
        ],
        "kubectl wait Available",
    );

    // Status counters and conditions, exactly.
    let client = server.client().await;
    let (_, d) = get_json(&client, &dpath).await;
    assert_eq!(
        d["status"]["observedGeneration"],
        d["metadata"]["generation"]
    );
    for f in [
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
    ] {
        assert_eq!(d["status"][f], 3, "{f}: {d:#}");
    }
    assert!(d["status"]["unavailableReplicas"].is_null(), "{d:#}");
    let rss = replica_sets(server, &ns, &d).await;
    assert_eq!(rss.len(), 1);
    let rs1 = rss[0].clone();
    let rs1_name = rs1["metadata"]["name"].as_str().unwrap().to_string();
    let hash = rs1["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap();
    assert_eq!(rs1_name, format!("web-{hash}"));
    assert_eq!(
        rs1["spec"]["selector"]["matchLabels"]["pod-template-hash"],
        hash
    );
    let avail = condition_or_null(&d, "Available");
    assert_eq!(
        (avail["status"].as_str(), avail["reason"].as_str()),
        (Some("True"), Some("MinimumReplicasAvailable"))
    );
    assert_eq!(avail["message"], "Deployment has minimum availability.");
    let progressing = condition_or_null(&d, "Progressing");
    assert_eq!(progressing["reason"], "NewReplicaSetAvailable");
    assert_eq!(
        progressing["message"],
        format!("ReplicaSet \"{rs1_name}\" has successfully progressed.")
    );
    let ann = &rs1["metadata"]["annotations"];
    assert_eq!(ann["deployment.kubernetes.io/revision"], "1");
    assert_eq!(ann["deployment.kubernetes.io/desired-replicas"], "3");
    assert_eq!(ann["deployment.kubernetes.io/max-replicas"], "4");
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    assert_eq!(rs1["status"]["readyReplicas"], 3);
    assert_eq!(rs1["status"]["fullyLabeledReplicas"], 3);
    assert_eq!(
        rs1["status"]["observedGeneration"],
        rs1["metadata"]["generation"]
    );
    // Pods are owned by the ReplicaSet and carry the hash.
    let (_, pods) = get_json(
        &client,
        &format!("/api/v1/namespaces/{ns}/pods?labelSelector=app%3Dweb"),
    )
    .await;
    let pods = pods["items"].as_array().unwrap().clone();
    assert_eq!(pods.len(), 3);
    for p in &pods {
        let r = &p["metadata"]["ownerReferences"][0];
        assert_eq!(
            (r["kind"].as_str(), r["name"].as_str()),
            (Some("ReplicaSet"), Some(rs1_name.as_str()))
        );
        assert_eq!(
            (r["controller"].as_bool(), r["blockOwnerDeletion"].as_bool()),
            (Some(true), Some(true))
        );
        assert_eq!(p["metadata"]["labels"]["pod-template-hash"], hash);
        assert!(p["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{rs1_name}-")));
    }

    // A new image rolls out as revision 2; the old ReplicaSet goes to 0.
    set_image(
        server,
        minor,
        &ns,
        "deployment/web",
        &format!("{IMAGE}:2"),
        "set image",
    );
    rollout_status(
        server,
        minor,
        &ns,
        "deployment/web",
        "--timeout=60s",
        "rollout status 2",
    );
    let (_, d) = get_json(&client, &dpath).await;
    let rss = replica_sets(server, &ns, &d).await;
    assert_eq!(rss.len(), 2, "{rss:#?}");
    assert_eq!((revision(&rss[0]), revision(&rss[1])), (1, 2));
    assert_eq!(rss[0]["spec"]["replicas"], 0);
    assert_eq!(rss[1]["spec"]["replicas"], 3);
    assert_eq!(image_of(&rss[1]), format!("{IMAGE}:2"));
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    let history = run(
        server,
        minor,
        &["-n", &ns, "rollout", "history", "deployment/web"],
        "history",
    );
    let revs: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revs, ["1", "2"], "{history}");
    let rev1 = run(
        server,
        minor,
        &[
            "-n",
            &ns,
            "rollout",
            "history",
            "deployment/web",
            "--revision=1",
        ],
        "history rev 1",
    );
    assert!(rev1.contains(&format!("{IMAGE}:1")), "{rev1}");

    // Undo to revision 1: its ReplicaSet becomes revision 3 and remembers 1.
    run(
        server,
        minor,
        &[
            "-n",
            &ns,
            "rollout",
            "undo",
            "deployment/web",
            "--to-revision=1",
        ],
        "undo",
    );
    rollout_status(
        server,
        minor,
        &ns,
        "deployment/web",
        "--timeout=60s",
        "rollout status undo",
    );
    let (_, d) = get_json(&client, &dpath).await;
    let rss = replica_sets(server, &ns, &d).await;
    assert_eq!(rss.len(), 2, "undo reuses the first ReplicaSet: {rss:#?}");
    let back = rss
        .iter()
        .find(|r| r["metadata"]["name"] == rs1_name.as_str())
        .unwrap();
    assert_eq!(revision(back), 3);
    assert_eq!(
        back["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"],
        "1"
    );
    assert_eq!(back["spec"]["replicas"], 3);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("{IMAGE}:1")
    );
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );

    // Pause: a template change makes no ReplicaSet until resumed.
    run(
        server,
        minor,
        &["-n", &ns, "rollout", "pause", "deployment/web"],
        "pause",
    );
    set_image(
        server,
        minor,
        &ns,
        "deployment/web",
        &format!("{IMAGE}:3"),
        "set image paused",
    );
    let d = wait_json(
        server,
        &dpath,
        Duration::from_secs(10),
        "paused condition",
        |d| {
            condition_or_null(d, "Progressing")["reason"] == "DeploymentPaused"
                && d["status"]["observedGeneration"] == d["metadata"]["generation"]
        },
    )
    .await;
    assert_eq!(condition_or_null(&d, "Progressing")["status"], "Unknown");
    assert_eq!(
        condition_or_null(&d, "Progressing")["message"],
        "Deployment is paused"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = replica_sets(server, &ns, &d).await;
    assert!(
        rss.iter().all(|r| image_of(r) != format!("{IMAGE}:3")),
        "no rollout while paused"
    );
    run(
        server,
        minor,
        &["-n", &ns, "rollout", "resume", "deployment/web"],
        "resume",
    );
    rollout_status(
        server,
        minor,
        &ns,
        "deployment/web",
        "--timeout=60s",
        "rollout status resumed",
    );
    let (_, d) = get_json(&client, &dpath).await;
    let rss = replica_sets(server, &ns, &d).await;
    assert_eq!(image_of(rss.last().unwrap()), format!("{IMAGE}:3"));
    assert_eq!(revision(rss.last().unwrap()), 4);

    // Restart: a template annotation, so a new ReplicaSet.
    run(
        server,
        minor,
        &["-n", &ns, "rollout", "restart", "deployment/web"],
        "restart",
    );
    rollout_status(
        server,
        minor,
        &ns,
        "deployment/web",
        "--timeout=60s",
        "rollout status restart",
    );
    let (_, d) = get_json(&client, &dpath).await;
    assert!(
        d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string()
    );
    let rss = replica_sets(server, &ns, &d).await;
    assert_eq!(rss.len(), 4, "{rss:#?}");
    assert_eq!(revision(rss.last().unwrap()), 5);
    assert_eq!(
        rss.iter()
            .map(|r| r["spec"]["replicas"].as_i64().unwrap())
            .sum::<i64>(),
        3
    );

    // Proportional scaling mid-rollout: a stuck rollout has old 3 + new 1
    // (maxSurge 1); scaling to 6 (max 7) adds 2 to old and 1 to new.
    set_image(
        server,
        minor,
        &ns,
        "deployment/web",
        &format!("{IMAGE}:stuck"),
        "set stuck image",
    );
    wait_json(
        server,
        &dpath,
        Duration::from_secs(20),
        "stuck rollout",
        |d| {
            d["status"]["updatedReplicas"] == 1
                && d["status"]["replicas"] == 4
                && d["status"]["unavailableReplicas"] == 1
        },
    )
    .await;
    run(
        server,
        minor,
        &["-n", &ns, "scale", "deployment/web", "--replicas=6"],
        "scale",
    );
    let d = wait_json(
        server,
        &dpath,
        Duration::from_secs(20),
        "proportional scale",
        |d| {
            d["status"]["replicas"] == 7
                && d["status"]["updatedReplicas"] == 2
                && d["status"]["availableReplicas"] == 5
        },
    )
    .await;
    let rss = replica_sets(server, &ns, &d).await;
    let sizes: Vec<(String, i64, String, String)> = rss
        .iter()
        .filter(|r| r["spec"]["replicas"].as_i64() != Some(0))
        .map(|r| {
            (
                image_of(r).to_string(),
                r["spec"]["replicas"].as_i64().unwrap(),
                r["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"]
                    .as_str()
                    .unwrap_or("")
                    .into(),
                r["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"]
                    .as_str()
                    .unwrap_or("")
                    .into(),
            )
        })
        .collect();
    assert_eq!(
        sizes,
        vec![
            (format!("{IMAGE}:3"), 5, "6".into(), "7".into()),
            (format!("{IMAGE}:stuck"), 2, "6".into(), "7".into()),
        ]
    );
    assert_eq!(d["status"]["unavailableReplicas"], 2);
    // maxUnavailable 0: 5 available of 6 is below the minimum.
    assert_eq!(
        condition_or_null(&d, "Available")["reason"],
        "MinimumReplicasUnavailable"
    );
    // Undo the stuck rollout: back to 6 healthy replicas.
    run(
        server,
        minor,
        &["-n", &ns, "rollout", "undo", "deployment/web"],
        "undo stuck",
    );
    rollout_status(
        server,
        minor,
        &ns,
        "deployment/web",
        "--timeout=60s",
        "rollout status after undo",
    );
    let (_, d) = get_json(&client, &dpath).await;
    assert_eq!(d["status"]["availableReplicas"], 6);
    assert_eq!(d["status"]["replicas"], 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn rollout_history_undo_pause_restart_and_proportional_scaling() {
    let server = TestServer::start(&[]).await;
    let kubelet = fake_kubelet(server.client().await);
    rollout_cycle(&server, 27).await;
    rollout_cycle(&server, 33).await;
    kubelet.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_deadline_min_ready_recreate_and_history_limit() {
    let server = TestServer::start(&[]).await;
    let kubelet = fake_kubelet(server.client().await);
    let ns = "misc";
    run(&server, 33, &["create", "namespace", ns], "create ns");
    let client = server.client().await;

    // A rollout that never becomes ready times out with upstream's words,
    // and `kubectl rollout status` fails.
    let yaml = deployment_yaml(
        ns,
        "slow",
        1,
        &format!("{IMAGE}:stuck"),
        "  progressDeadlineSeconds: 2",
    );
    apply(&server, 33, &yaml, "apply slow");
    let d = wait_json(
        &server,
        &format!("/apis/apps/v1/namespaces/{ns}/deployments/slow"),
        Duration::from_secs(20),
        "deadline exceeded",
        |d| condition_or_null(d, "Progressing")["reason"] == "ProgressDeadlineExceeded",
    )
    .await;
    let rss = replica_sets(&server, ns, &d).await;
    let c = condition_or_null(&d, "Progressing");
    assert_eq!(c["status"], "False");
    assert_eq!(
        c["message"],
        format!(
            "ReplicaSet \"{}\" has timed out progressing.",
            rss[0]["metadata"]["name"].as_str().unwrap()
        )
    );
    assert_eq!(
        condition_or_null(&d, "Available")["reason"],
        "MinimumReplicasUnavailable"
    );
    assert_eq!(
        condition_or_null(&d, "Available")["message"],
        "Deployment does not have minimum availability."
    );
    assert_eq!(d["status"]["unavailableReplicas"], 1);
    let o = kubectl(
        &server,
        27,
        &[
            "-n",
            ns,
            "rollout",
            "status",
            "deployment/slow",
            "--timeout=20s",
        ],
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("exceeded its progress deadline"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // minReadySeconds: Ready pods become available only after it, with no
    // other event to wake the controllers.
    let yaml = deployment_yaml(ns, "ripe", 2, &format!("{IMAGE}:1"), "  minReadySeconds: 3");
    apply(&server, 33, &yaml, "apply ripe");
    let dpath = format!("/apis/apps/v1/namespaces/{ns}/deployments/ripe");
    let started = Instant::now();
    let d = wait_json(&server, &dpath, Duration::from_secs(20), "ready", |d| {
        d["status"]["readyReplicas"] == 2
    })
    .await;
    assert!(
        d["status"]["availableReplicas"].is_null(),
        "available before minReadySeconds: {d:#}"
    );
    wait_json(&server, &dpath, Duration::from_secs(20), "available", |d| {
        d["status"]["availableReplicas"] == 2
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // Recreate: old pods are all gone before a new one exists; history is
    // trimmed to revisionHistoryLimit.
    let yaml = deployment_yaml(
        ns,
        "batch",
        2,
        &format!("{IMAGE}:1"),
        "  revisionHistoryLimit: 1\n  strategy: {type: Recreate}",
    );
    apply(&server, 33, &yaml, "apply batch");
    rollout_status(
        &server,
        33,
        ns,
        "deployment/batch",
        "--timeout=60s",
        "batch status",
    );
    for v in 2..=4 {
        set_image(
            &server,
            33,
            ns,
            "deployment/batch",
            &format!("{IMAGE}:{v}"),
            "set image",
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, pods) = get_json(
                &client,
                &format!("/api/v1/namespaces/{ns}/pods?labelSelector=app%3Dbatch"),
            )
            .await;
            let images: Vec<String> = pods["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    p["spec"]["containers"][0]["image"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect();
            let new = images
                .iter()
                .filter(|i| i.ends_with(&format!(":{v}")))
                .count();
            assert!(
                new == 0 || new == images.len(),
                "Recreate mixed old and new pods: {images:?}"
            );
            if new == 2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "recreate to {v} stuck: {images:?}\n{}",
                common::cluster::tail(&server.log(), 40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        rollout_status(
            &server,
            33,
            ns,
            "deployment/batch",
            "--timeout=60s",
            "batch status",
        );
    }
    let (_, d) = get_json(
        &client,
        &format!("/apis/apps/v1/namespaces/{ns}/deployments/batch"),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rss = replica_sets(&server, ns, &d).await;
        let revs: Vec<i64> = rss.iter().map(revision).collect();
        if revs == [3, 4] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "one old ReplicaSet is kept: {revs:?} {rss:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    kubelet.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn replica_sets_adopt_release_and_replication_controllers() {
    let server = TestServer::start(&[]).await;
    let kubelet = fake_kubelet(server.client().await);
    let client = server.client().await;
    let ns = "rs";
    run(&server, 33, &["create", "namespace", ns], "create ns");
    // An orphan that matches is adopted, so only two pods are created.
    let orphan = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "orphan", "labels": {"app": "front"}},
        "spec": {"containers": [{"name": "c", "image": format!("{IMAGE}:1")}]}});
    let (s, _) =
        common::post_json(&client, &format!("/api/v1/namespaces/{ns}/pods"), &orphan).await;
    assert_eq!(s, 201);
    let rs = format!(
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {{name: front, namespace: {ns}}}\nspec:\n  replicas: 3\n  selector: {{matchLabels: {{app: front}}}}\n  template:\n    metadata: {{labels: {{app: front}}}}\n    spec:\n      containers: [{{name: c, image: '{IMAGE}:1'}}]\n"
    );
    apply(&server, 27, &rs, "apply rs");
    let rspath = format!("/apis/apps/v1/namespaces/{ns}/replicasets/front");
    let r = wait_json(&server, &rspath, Duration::from_secs(20), "rs ready", |r| {
        r["status"]["readyReplicas"] == 3
    })
    .await;
    assert_eq!(r["status"]["replicas"], 3);
    assert_eq!(r["status"]["availableReplicas"], 3);
    let (_, p) = get_json(&client, &format!("/api/v1/namespaces/{ns}/pods/orphan")).await;
    assert_eq!(
        p["metadata"]["ownerReferences"][0]["uid"],
        r["metadata"]["uid"]
    );
    assert_eq!(p["metadata"]["ownerReferences"][0]["controller"], true);
    // Relabelled out of the selector: released and replaced.
    let patch = serde_json::to_vec(&json!({"metadata": {"labels": {"app": "gone"}}})).unwrap();
    raw(
        &client,
        "PATCH",
        &format!("/api/v1/namespaces/{ns}/pods/orphan"),
        Some("application/merge-patch+json"),
        patch,
    )
    .await;
    let p = wait_json(
        &server,
        &format!("/api/v1/namespaces/{ns}/pods/orphan"),
        Duration::from_secs(10),
        "released",
        |p| {
            p["metadata"]["ownerReferences"]
                .as_array()
                .is_none_or(|a| a.is_empty())
        },
    )
    .await;
    assert_eq!(p["metadata"]["labels"]["app"], "gone");
    wait_json(
        &server,
        &format!("/api/v1/namespaces/{ns}/pods?labelSelector=app%3Dfront"),
        Duration::from_secs(10),
        "replacement",
        |l| l["items"].as_array().is_some_and(|a| a.len() == 3),
    )
    .await;
    // Scale down deletes not-ready pods first.
    run(
        &server,
        33,
        &["-n", ns, "scale", "rs/front", "--replicas=1"],
        "scale rs",
    );
    wait_json(
        &server,
        &rspath,
        Duration::from_secs(10),
        "scaled down",
        |r| {
            r["status"]["replicas"] == 1
                && r["status"]["observedGeneration"] == r["metadata"]["generation"]
        },
    )
    .await;

    // A ReplicationController, through its own API shape.
    let rc = format!(
        "apiVersion: v1\nkind: ReplicationController\nmetadata: {{name: legacy, namespace: {ns}}}\nspec:\n  replicas: 2\n  selector: {{app: legacy}}\n  template:\n    metadata: {{labels: {{app: legacy}}}}\n    spec:\n      containers: [{{name: c, image: '{IMAGE}:1'}}]\n"
    );
    apply(&server, 33, &rc, "apply rc");
    let rcpath = format!("/api/v1/namespaces/{ns}/replicationcontrollers/legacy");
    let r = wait_json(&server, &rcpath, Duration::from_secs(20), "rc ready", |r| {
        r["status"]["availableReplicas"] == 2
    })
    .await;
    assert_eq!(r["status"]["fullyLabeledReplicas"], 2);
    run(
        &server,
        27,
        &["-n", ns, "scale", "rc/legacy", "--replicas=3"],
        "scale rc",
    );
    wait_json(
        &server,
        &rcpath,
        Duration::from_secs(20),
        "rc scaled",
        |r| r["status"]["readyReplicas"] == 3,
    )
    .await;
    let (_, pods) = get_json(
        &client,
        &format!("/api/v1/namespaces/{ns}/pods?labelSelector=app%3Dlegacy"),
    )
    .await;
    for p in pods["items"].as_array().unwrap() {
        assert_eq!(
            p["metadata"]["ownerReferences"][0]["kind"],
            "ReplicationController"
        );
    }
    kubelet.abort();
}

/// Real pods: a busybox Deployment on the local node with the agent.
#[tokio::test(flavor = "multi_thread")]
async fn real_pods_rollout_undo_scale_and_heal() {
    if common::cluster::skip("real_pods_rollout_undo_scale_and_heal") {
        return;
    }
    let c = common::cluster::Cluster::start().await;
    for minor in [27u32, 33] {
        let ns = format!("real-{minor}");
        run(&c.server, minor, &["create", "namespace", &ns], "create ns");
        // The pods are placed by the scheduler.
        let yaml = format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: bb, namespace: {ns}}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: bb}}}}\n  template:\n    metadata: {{labels: {{app: bb}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: {img}\n        command: [sleep, '3600']\n        env: [{{name: V, value: '1'}}]\n",
            img = common::cluster::BUSYBOX,
        );
        apply(&c.server, minor, &yaml, "apply");
        let rollout = |what: &'static str| {
            rollout_status(
                &c.server,
                minor,
                &ns,
                "deployment/bb",
                "--timeout=120s",
                what,
            )
        };
        assert!(rollout("first rollout").contains("successfully rolled out"));
        run(
            &c.server,
            minor,
            &["-n", &ns, "set", "env", "deployment/bb", "V=2"],
            "set env",
        );
        rollout("env rollout");
        let history = run(
            &c.server,
            minor,
            &["-n", &ns, "rollout", "history", "deployment/bb"],
            "history",
        );
        assert!(
            history.lines().any(|l| l.starts_with('1'))
                && history.lines().any(|l| l.starts_with('2')),
            "{history}"
        );
        run(
            &c.server,
            minor,
            &["-n", &ns, "rollout", "undo", "deployment/bb"],
            "undo",
        );
        rollout("undo rollout");
        let client = c.server.client().await;
        let (_, d) = get_json(
            &client,
            &format!("/apis/apps/v1/namespaces/{ns}/deployments/bb"),
        )
        .await;
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
            "1"
        );
        run(
            &c.server,
            minor,
            &["-n", &ns, "scale", "deployment/bb", "--replicas=3"],
            "scale",
        );
        rollout("scaled rollout");
        let (_, pods) = get_json(
            &client,
            &format!("/api/v1/namespaces/{ns}/pods?labelSelector=app%3Dbb"),
        )
        .await;
        let running: Vec<String> = pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| {
                p["metadata"]["deletionTimestamp"].is_null() && common::cluster::is_ready(p)
            })
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(running.len(), 3, "{pods:#}");
        // A deleted pod is replaced.
        run(
            &c.server,
            minor,
            &["-n", &ns, "delete", "pod", &running[0], "--wait=false"],
            "delete pod",
        );
        let victim = running[0].clone();
        wait_json(
            &c.server,
            &format!("/api/v1/namespaces/{ns}/pods?labelSelector=app%3Dbb"),
            Duration::from_secs(60),
            "replacement ready",
            |l| {
                l["items"].as_array().is_some_and(|a| {
                    a.iter()
                        .filter(|p| {
                            p["metadata"]["name"] != victim.as_str() && common::cluster::is_ready(p)
                        })
                        .count()
                        == 3
                })
            },
        )
        .await;
        run(
            &c.server,
            minor,
            &["-n", &ns, "scale", "deployment/bb", "--replicas=0"],
            "scale to 0",
        );
    }
}
