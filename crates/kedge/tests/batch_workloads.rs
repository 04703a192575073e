//! Jobs, CronJobs and the TTL-after-finished controller.
//!
//! Most tests run `kedge server --disable-agent` and play the kubelet
//! themselves (pod status through the status subresource), so timings and
//! counters are exact. The `real_*` tests run busybox pods on the node
//! agent (root, containerd); elsewhere they print a loud SKIP.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{tail, Cluster, BUSYBOX};
use common::{condition, get_json, kubectl, post_json, raw, wait_for, TestServer};
use serde_json::{json, Value};

const NS: &str = "default";

async fn job(c: &kube::Client, name: &str) -> Value {
    get_json(c, &format!("/apis/batch/v1/namespaces/{NS}/jobs/{name}"))
        .await
        .1
}

async fn job_pods(c: &kube::Client, job: &str) -> Vec<Value> {
    let (_, list) = get_json(
        c,
        &format!("/api/v1/namespaces/{NS}/pods?labelSelector=batch.kubernetes.io/job-name%3D{job}"),
    )
    .await;
    let mut pods: Vec<Value> = list["items"].as_array().cloned().unwrap_or_default();
    pods.sort_by_key(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string());
    pods
}

fn name(v: &Value) -> String {
    v["metadata"]["name"].as_str().unwrap_or("").to_string()
}

fn has_true(v: &Value, t: &str) -> bool {
    condition(v, t).is_some_and(|c| c["status"] == "True")
}

/// Waits up to `secs` for the Job's `type_` condition to be True; the Job.
async fn wait_job_condition(
    s: &TestServer,
    c: &kube::Client,
    name: &str,
    type_: &str,
    secs: u64,
) -> Value {
    wait_for(s, type_, Duration::from_secs(secs), || async {
        let j = job(c, name).await;
        has_true(&j, type_).then_some(j)
    })
    .await
}

async fn patch_status(c: &kube::Client, pod: &str, status: Value) {
    let (code, body, _) = raw(
        c,
        "PATCH",
        &format!("/api/v1/namespaces/{NS}/pods/{pod}/status"),
        Some("application/merge-patch+json"),
        serde_json::to_vec(&json!({ "status": status })).expect("json"),
    )
    .await;
    assert_eq!(code, 200, "pod status patch: {body}");
}

/// The test's kubelet: the pod's only container exited with `exit`.
async fn finish_pod(c: &kube::Client, pod: &str, exit: i32) {
    let now = jiff::Timestamp::now().to_string();
    patch_status(
        c,
        pod,
        json!({
            "phase": if exit == 0 { "Succeeded" } else { "Failed" },
            "containerStatuses": [{
                "name": "main", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": exit, "reason": if exit == 0 { "Completed" } else { "Error" },
                    "startedAt": now, "finishedAt": now}}
            }]
        }),
    )
    .await;
}

async fn run_pod(c: &kube::Client, pod: &str) {
    let now = jiff::Timestamp::now().to_string();
    patch_status(
        c,
        pod,
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}),
    )
    .await;
}

async fn create_job(c: &kube::Client, name: &str, spec: Value) -> Value {
    let mut spec = spec;
    if spec.get("template").is_none() {
        spec["template"] = json!({"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox"}]}});
    }
    let (code, body) = post_json(
        c,
        &format!("/apis/batch/v1/namespaces/{NS}/jobs"),
        &json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec}),
    )
    .await;
    assert_eq!(code, 201, "create job: {body}");
    body
}

/// Waits for `n` active (not terminal, not deleting) pods of a Job.
async fn active_pods(s: &TestServer, c: &kube::Client, job: &str, n: usize) -> Vec<Value> {
    wait_for(
        s,
        &format!("{n} active pods of {job}"),
        Duration::from_secs(10),
        || async {
            let pods: Vec<Value> = job_pods(c, job)
                .await
                .into_iter()
                .filter(|p| {
                    p["metadata"]["deletionTimestamp"].is_null()
                        && !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
                })
                .collect();
            (pods.len() == n).then_some(pods)
        },
    )
    .await
}

#[tokio::test]
async fn job_runs_completions_with_parallelism_and_tracking_finalizers() {
    let s = TestServer::start(&[]).await;
    let c = s.client().await;
    let created = create_job(&c, "work", json!({"completions": 3, "parallelism": 2})).await;
    let uid = created["metadata"]["uid"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let pods = active_pods(&s, &c, "work", 2).await;
    for p in &pods {
        assert_eq!(
            p["metadata"]["finalizers"],
            json!(["batch.kubernetes.io/job-tracking"])
        );
        assert_eq!(p["metadata"]["generateName"], json!("work-"));
        let owner = &p["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["kind"].as_str(), owner["uid"].as_str()),
            (Some("Job"), Some(uid.as_str()))
        );
        assert_eq!(owner["controller"], json!(true));
        assert_eq!(owner["blockOwnerDeletion"], json!(true));
    }
    let j = wait_for(
        &s,
        "status.active=2, startTime",
        Duration::from_secs(5),
        || async {
            let j = job(&c, "work").await;
            (j["status"]["active"] == json!(2) && j["status"]["startTime"].is_string()).then_some(j)
        },
    )
    .await;
    assert_eq!(j["status"]["ready"], json!(0));

    // One ready, then done: a third pod replaces it, and the finished pod
    // is counted and loses its finalizer.
    run_pod(&c, &name(&pods[0])).await;
    wait_for(&s, "ready=1", Duration::from_secs(5), || async {
        (job(&c, "work").await["status"]["ready"] == json!(1)).then_some(())
    })
    .await;
    finish_pod(&c, &name(&pods[0]), 0).await;
    let third = active_pods(&s, &c, "work", 2).await;
    assert!(third.iter().all(|p| name(p) != name(&pods[0])));
    wait_for(
        &s,
        "succeeded=1, finalizer off",
        Duration::from_secs(5),
        || async {
            let j = job(&c, "work").await;
            let p = get_json(
                &c,
                &format!("/api/v1/namespaces/{NS}/pods/{}", name(&pods[0])),
            )
            .await
            .1;
            (j["status"]["succeeded"] == json!(1)
                && p["metadata"]["finalizers"]
                    .as_array()
                    .is_none_or(|f| f.is_empty())
                && j["status"]["uncountedTerminatedPods"]
                    .get("succeeded")
                    .is_none_or(|u| u == &json!([])))
            .then_some(())
        },
    )
    .await;
    assert!(!has_true(&job(&c, "work").await, "Complete"));

    // kubectl wait, started before the Job completes (1.27 and 1.33).
    let kc = s.kubeconfig();
    let waiters: Vec<_> = [27u32, 33]
        .into_iter()
        .map(|m| {
            let kc = kc.clone();
            std::thread::spawn(move || {
                std::process::Command::new(format!("/usr/lib/google-cloud-sdk/bin/kubectl.1.{m}"))
                    .arg("--kubeconfig")
                    .arg(kc)
                    .args([
                        "wait",
                        "--for=condition=complete",
                        "job/work",
                        "--timeout=30s",
                    ])
                    .output()
                    .expect("kubectl wait")
            })
        })
        .collect();
    for p in &third {
        finish_pod(&c, &name(p), 0).await;
    }
    let j = wait_job_condition(&s, &c, "work", "Complete", 10).await;
    for w in waiters {
        let out = w.join().expect("kubectl thread");
        assert!(
            out.status.success(),
            "kubectl wait: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("job.batch/work condition met"));
    }
    let st = &j["status"];
    assert_eq!(st["succeeded"], json!(3), "{j:#}");
    assert_eq!(st["active"], json!(0));
    assert_eq!(st["failed"].as_i64().unwrap_or(0), 0);
    assert!(st["completionTime"].is_string());
    let met = condition(&j, "SuccessCriteriaMet").expect("SuccessCriteriaMet");
    assert_eq!(met["reason"], json!("CompletionsReached"));
    let complete = condition(&j, "Complete").expect("Complete");
    assert_eq!(complete["reason"], json!("CompletionsReached"));
    assert_eq!(
        complete["message"],
        json!("Reached expected number of succeeded pods")
    );
    assert_eq!(
        job_pods(&c, "work").await.len(),
        3,
        "no pod beyond the completions"
    );
}

#[tokio::test]
async fn job_fails_past_backoff_limit_and_counts_each_failure_once() {
    let s = TestServer::start(&[]).await;
    let c = s.client().await;
    create_job(&c, "flaky", json!({"backoffLimit": 1})).await;
    let first = active_pods(&s, &c, "flaky", 1).await;
    let t0 = Instant::now();
    finish_pod(&c, &name(&first[0]), 1).await;
    // The replacement waits out the 10 s pod failure back-off.
    let second = wait_for(&s, "replacement pod", Duration::from_secs(20), || async {
        let pods = job_pods(&c, "flaky").await;
        (pods.len() == 2).then_some(pods)
    })
    .await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(8),
        "replacement after {waited:?}, before the back-off"
    );
    assert_eq!(job(&c, "flaky").await["status"]["failed"], json!(1));
    let replacement = second
        .iter()
        .find(|p| name(p) != name(&first[0]))
        .expect("new pod");
    finish_pod(&c, &name(replacement), 2).await;
    let j = wait_job_condition(&s, &c, "flaky", "Failed", 10).await;
    assert_eq!(j["status"]["failed"], json!(2));
    let target = condition(&j, "FailureTarget").expect("FailureTarget first");
    assert_eq!(target["reason"], json!("BackoffLimitExceeded"));
    let failed = condition(&j, "Failed").expect("Failed");
    assert_eq!(failed["reason"], json!("BackoffLimitExceeded"));
    assert_eq!(
        failed["message"],
        json!("Job has reached the specified backoff limit")
    );
    assert!(j["status"]["completionTime"].is_null());
    // kubectl sees the failure.
    let out = kubectl(
        &s,
        33,
        &[
            "wait",
            "--for=condition=failed",
            "job/flaky",
            "--timeout=5s",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn indexed_job_pods_carry_their_index() {
    let s = TestServer::start(&[]).await;
    let c = s.client().await;
    create_job(
        &c,
        "idx",
        json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}),
    )
    .await;
    let pods = active_pods(&s, &c, "idx", 3).await;
    let mut by_index = std::collections::BTreeMap::new();
    for p in &pods {
        let ix = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
            .as_str()
            .expect("index annotation")
            .to_string();
        assert_eq!(
            p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"],
            json!(ix)
        );
        assert_eq!(p["metadata"]["generateName"], json!(format!("idx-{ix}-")));
        assert_eq!(p["spec"]["hostname"], json!(format!("idx-{ix}")));
        let env = &p["spec"]["containers"][0]["env"][0];
        assert_eq!(env["name"], json!("JOB_COMPLETION_INDEX"));
        assert_eq!(
            env["valueFrom"]["fieldRef"]["fieldPath"],
            json!("metadata.annotations['batch.kubernetes.io/job-completion-index']")
        );
        by_index.insert(ix, name(p));
    }
    assert_eq!(
        by_index.keys().cloned().collect::<Vec<_>>(),
        ["0", "1", "2"]
    );
    finish_pod(&c, &by_index["1"], 0).await;
    wait_for(&s, "completedIndexes=1", Duration::from_secs(5), || async {
        let j = job(&c, "idx").await;
        (j["status"]["completedIndexes"] == json!("1") && j["status"]["succeeded"] == json!(1))
            .then_some(())
    })
    .await;
    // A failed index is retried with the same index.
    finish_pod(&c, &by_index["2"], 1).await;
    finish_pod(&c, &by_index["0"], 0).await;
    let retried = wait_for(&s, "index 2 retried", Duration::from_secs(20), || async {
        job_pods(&c, "idx").await.into_iter().find(|p| {
            p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "2"
                && p["status"]["phase"] != "Failed"
        })
    })
    .await;
    finish_pod(&c, &name(&retried), 0).await;
    let j = wait_job_condition(&s, &c, "idx", "Complete", 10).await;
    assert_eq!(j["status"]["completedIndexes"], json!("0-2"));
    assert_eq!(j["status"]["succeeded"], json!(3));
    assert_eq!(j["status"]["failed"], json!(1));
}

#[tokio::test]
async fn pod_failure_policy_ignores_and_fails_fast() {
    let s = TestServer::start(&[]).await;
    let c = s.client().await;
    create_job(
        &c,
        "pfp",
        json!({"backoffLimit": 6, "podFailurePolicy": {"rules": [
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}}
        ]}}),
    )
    .await;
    let first = active_pods(&s, &c, "pfp", 1).await;
    finish_pod(&c, &name(&first[0]), 3).await;
    // Ignored: replaced at once (no back-off), not counted.
    let second = wait_for(&s, "replacement", Duration::from_secs(5), || async {
        let pods = job_pods(&c, "pfp").await;
        pods.into_iter().find(|p| name(p) != name(&first[0]))
    })
    .await;
    let j = job(&c, "pfp").await;
    assert_eq!(j["status"]["failed"].as_i64().unwrap_or(0), 0, "{j:#}");
    finish_pod(&c, &name(&second), 42).await;
    let j = wait_job_condition(&s, &c, "pfp", "Failed", 10).await;
    let failed = condition(&j, "Failed").expect("Failed");
    assert_eq!(failed["reason"], json!("PodFailurePolicy"));
    assert_eq!(
        failed["message"],
        json!(format!(
            "Container main for pod {NS}/{} failed with exit code 42 matching FailJob rule at index 1",
            name(&second)
        ))
    );
    assert_eq!(j["status"]["failed"], json!(1));
}

#[tokio::test]
async fn active_deadline_fails_the_job_and_removes_its_pods() {
    let s = TestServer::start(&[]).await;
    let c = s.client().await;
    create_job(
        &c,
        "slow",
        json!({"activeDeadlineSeconds": 2, "parallelism": 2, "completions": 2}),
    )
    .await;
    active_pods(&s, &c, "slow", 2).await;
    let t0 = Instant::now();
    let j = wait_job_condition(&s, &c, "slow", "Failed", 10).await;
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "deadline acted after {:?}",
        t0.elapsed()
    );
    let failed = condition(&j, "Failed").expect("Failed");
    assert_eq!(failed["reason"], json!("DeadlineExceeded"));
    assert_eq!(
        failed["message"],
        json!("Job was active longer than specified deadline")
    );
    assert_eq!(j["status"]["active"], json!(0));
    assert_eq!(
        j["status"]["failed"],
        json!(2),
        "deleted pods count as failed: {j:#}"
    );
    // The pods were unscheduled, so they go as soon as the finalizer is off.
    wait_for(&s, "pods gone", Duration::from_secs(5), || async {
        job_pods(&c, "slow").await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn suspend_and_resume() {
    let s = TestServer::start(&[]).await;
    let c = s.client().await;
    create_job(
        &c,
        "later",
        json!({"suspend": true, "parallelism": 2, "completions": 4}),
    )
    .await;
    let j = wait_job_condition(&s, &c, "later", "Suspended", 5).await;
    assert_eq!(
        condition(&j, "Suspended").map(|c| c["reason"].clone()),
        Some(json!("JobSuspended"))
    );
    assert!(j["status"]["startTime"].is_null());
    assert!(job_pods(&c, "later").await.is_empty());
    let (code, body, _) = raw(
        &c,
        "PATCH",
        &format!("/apis/batch/v1/namespaces/{NS}/jobs/later"),
        Some("application/merge-patch+json"),
        br#"{"spec":{"suspend":false}}"#.to_vec(),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    active_pods(&s, &c, "later", 2).await;
    let j = wait_for(&s, "resumed", Duration::from_secs(5), || async {
        let j = job(&c, "later").await;
        condition(&j, "Suspended")
            .is_some_and(|c| c["status"] == "False")
            .then_some(j)
    })
    .await;
    assert_eq!(
        condition(&j, "Suspended").map(|c| c["reason"].clone()),
        Some(json!("JobResumed"))
    );
    assert!(j["status"]["startTime"].is_string());
    // Suspending again deletes the active pods without counting failures.
    raw(
        &c,
        "PATCH",
        &format!("/apis/batch/v1/namespaces/{NS}/jobs/later"),
        Some("application/merge-patch+json"),
        br#"{"spec":{"suspend":true}}"#.to_vec(),
    )
    .await;
    let j = wait_for(
        &s,
        "pods deleted, suspended",
        Duration::from_secs(5),
        || async {
            let j = job(&c, "later").await;
            (job_pods(&c, "later").await.is_empty()
                && has_true(&j, "Suspended")
                && j["status"]["active"] == json!(0))
            .then_some(j)
        },
    )
    .await;
    assert_eq!(j["status"]["failed"].as_i64().unwrap_or(0), 0, "{j:#}");
}

#[tokio::test]
async fn finished_job_is_deleted_after_its_ttl() {
    let s = TestServer::start(&[]).await;
    let c = s.client().await;
    create_job(&c, "brief", json!({"ttlSecondsAfterFinished": 1})).await;
    let pods = active_pods(&s, &c, "brief", 1).await;
    finish_pod(&c, &name(&pods[0]), 0).await;
    let j = wait_job_condition(&s, &c, "brief", "Complete", 5).await;
    let completed: jiff::Timestamp = j["status"]["completionTime"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("completionTime");
    wait_for(&s, "job deleted", Duration::from_secs(10), || async {
        let (code, _) = get_json(&c, &format!("/apis/batch/v1/namespaces/{NS}/jobs/brief")).await;
        (code == 404).then_some(())
    })
    .await;
    let gone = jiff::Timestamp::now();
    assert!(
        gone.as_millisecond() - completed.as_millisecond() >= 1000,
        "deleted at {gone}, before completion {completed} + 1 s"
    );
    // Foreground deletion took the pod with it.
    wait_for(&s, "pod deleted", Duration::from_secs(10), || async {
        job_pods(&c, "brief").await.is_empty().then_some(())
    })
    .await;
}

async fn create_cronjob(c: &kube::Client, name: &str, spec: Value) {
    let mut spec = spec;
    spec["jobTemplate"] = json!({"metadata": {"labels": {"from": name}}, "spec": {"template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}}});
    let (code, body) = post_json(
        c,
        &format!("/apis/batch/v1/namespaces/{NS}/cronjobs"),
        &json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name}, "spec": spec}),
    )
    .await;
    assert_eq!(code, 201, "create cronjob: {body}");
}

/// Pretends the CronJob last ran `minutes` ago, so that a schedule time has
/// been missed and is due now.
async fn backdate(c: &kube::Client, name: &str, minutes: i64) -> jiff::Timestamp {
    let now = jiff::Timestamp::now().as_second();
    let t = jiff::Timestamp::from_second((now / 60 - minutes) * 60).expect("time");
    let (code, body, _) = raw(
        c,
        "PATCH",
        &format!("/apis/batch/v1/namespaces/{NS}/cronjobs/{name}/status"),
        Some("application/merge-patch+json"),
        serde_json::to_vec(&json!({"status": {"lastScheduleTime": t.to_string()}})).expect("json"),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    t
}

async fn cronjob(c: &kube::Client, name: &str) -> Value {
    get_json(
        c,
        &format!("/apis/batch/v1/namespaces/{NS}/cronjobs/{name}"),
    )
    .await
    .1
}

async fn jobs_of(c: &kube::Client, label: &str) -> Vec<Value> {
    let (_, list) = get_json(
        c,
        &format!("/apis/batch/v1/namespaces/{NS}/jobs?labelSelector=from%3D{label}"),
    )
    .await;
    list["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn cronjob_honours_forbid_then_starts_the_due_job() {
    let s = TestServer::start(&[]).await;
    let c = s.client().await;
    create_cronjob(
        &c,
        "tick",
        json!({"schedule": "* * * * *", "concurrencyPolicy": "Forbid", "timeZone": "Asia/Kolkata", "suspend": true}),
    )
    .await;
    let uid = cronjob(&c, "tick").await["metadata"]["uid"]
        .as_str()
        .unwrap_or("")
        .to_string();
    // A running Job of the CronJob, in its active list, and a missed time.
    let (code, running) = post_json(
        &c,
        &format!("/apis/batch/v1/namespaces/{NS}/jobs"),
        &json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "tick-running", "labels": {"from": "tick"},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "tick", "uid": uid, "controller": true}]},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}}}),
    )
    .await;
    assert_eq!(code, 201, "{running}");
    let (code, body, _) = raw(
        &c,
        "PATCH",
        &format!("/apis/batch/v1/namespaces/{NS}/cronjobs/tick/status"),
        Some("application/merge-patch+json"),
        serde_json::to_vec(
            &json!({"status": {"active": [{"apiVersion": "batch/v1", "kind": "Job",
            "namespace": NS, "name": "tick-running", "uid": running["metadata"]["uid"]}]}}),
        )
        .expect("json"),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    backdate(&c, "tick", 3).await;
    let (code, body, _) = raw(
        &c,
        "PATCH",
        &format!("/apis/batch/v1/namespaces/{NS}/cronjobs/tick"),
        Some("application/merge-patch+json"),
        br#"{"spec":{"suspend":false}}"#.to_vec(),
    )
    .await;
    assert_eq!(code, 200, "{body}");

    // Forbid: nothing new while tick-running runs.
    let events = || async {
        let (_, events) = get_json(
            &c,
            &format!("/api/v1/namespaces/{NS}/events?fieldSelector=involvedObject.name%3Dtick"),
        )
        .await;
        events["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["reason"].as_str().map(str::to_string))
            .collect::<Vec<String>>()
    };
    wait_for(
        &s,
        "JobAlreadyActive event",
        Duration::from_secs(5),
        || async {
            events()
                .await
                .iter()
                .any(|r| r == "JobAlreadyActive")
                .then_some(())
        },
    )
    .await;
    assert_eq!(jobs_of(&c, "tick").await.len(), 1);

    // tick-running completes: it leaves status.active, and the missed time
    // runs now.
    let pods = active_pods(&s, &c, "tick-running", 1).await;
    finish_pod(&c, &name(&pods[0]), 0).await;
    let j = wait_for(&s, "scheduled job", Duration::from_secs(10), || async {
        jobs_of(&c, "tick")
            .await
            .into_iter()
            .find(|j| name(j) != "tick-running")
    })
    .await;
    let minute = jiff::Timestamp::now().as_second() / 60;
    let suffix: i64 = name(&j)
        .strip_prefix("tick-")
        .and_then(|m| m.parse().ok())
        .expect("tick-<minutes>");
    assert!(
        (minute - 1..=minute).contains(&suffix),
        "{} vs minute {minute}",
        name(&j)
    );
    let scheduled = jiff::Timestamp::from_second(suffix * 60).expect("ts");
    let ann = j["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
        .as_str()
        .expect("scheduled-timestamp annotation");
    assert!(ann.ends_with("+05:30"), "{ann}");
    assert_eq!(ann.parse::<jiff::Timestamp>().expect("rfc3339"), scheduled);
    assert_eq!(
        j["metadata"]["ownerReferences"][0]["kind"],
        json!("CronJob")
    );
    assert_eq!(j["metadata"]["labels"]["from"], json!("tick"));
    let cj = wait_for(
        &s,
        "status after the run",
        Duration::from_secs(5),
        || async {
            let cj = cronjob(&c, "tick").await;
            (cj["status"]["active"]
                .as_array()
                .is_some_and(|a| a.len() == 1)
                && cj["status"]["active"][0]["name"] == json!(name(&j))
                && cj["status"]["lastSuccessfulTime"].is_string())
            .then_some(cj)
        },
    )
    .await;
    assert_eq!(
        cj["status"]["lastScheduleTime"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok()),
        Some(scheduled)
    );
    let reasons = events().await;
    for r in ["SawCompletedJob", "SuccessfulCreate"] {
        assert!(
            reasons.iter().any(|x| x == r),
            "{r} missing from {reasons:?}"
        );
    }
}

#[tokio::test]
async fn suspended_cronjob_starts_nothing_and_history_is_trimmed() {
    let s = TestServer::start(&[]).await;
    let c = s.client().await;
    create_cronjob(
        &c,
        "quiet",
        json!({"schedule": "*/1 * * * *", "suspend": true}),
    )
    .await;
    backdate(&c, "quiet", 3).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(jobs_of(&c, "quiet").await.is_empty());

    // History: two finished Jobs of a CronJob keeping one.
    create_cronjob(
        &c,
        "hist",
        json!({"schedule": "0 0 1 1 *", "successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 0}),
    )
    .await;
    let cj = cronjob(&c, "hist").await;
    let uid = cj["metadata"]["uid"].as_str().unwrap_or("").to_string();
    for (n, exit) in [("hist-1", 0), ("hist-2", 0), ("hist-3", 1)] {
        let (code, body) = post_json(
            &c,
            &format!("/apis/batch/v1/namespaces/{NS}/jobs"),
            &json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": n, "labels": {"from": "hist"},
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "hist", "uid": uid, "controller": true}]},
                "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}}}),
        )
        .await;
        assert_eq!(code, 201, "{body}");
        let pods = active_pods(&s, &c, n, 1).await;
        finish_pod(&c, &name(&pods[0]), exit).await;
        wait_for(&s, "job finished", Duration::from_secs(10), || async {
            let (code, j) = get_json(&c, &format!("/apis/batch/v1/namespaces/{NS}/jobs/{n}")).await;
            // A failed Job may be gone already (failedJobsHistoryLimit 0).
            (has_true(&j, "Complete") || has_true(&j, "Failed") || code == 404).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let left = wait_for(&s, "history trimmed", Duration::from_secs(10), || async {
        let names: Vec<String> = jobs_of(&c, "hist")
            .await
            .iter()
            .filter(|j| j["metadata"]["deletionTimestamp"].is_null())
            .map(name)
            .collect();
        (names.len() == 1).then_some(names)
    })
    .await;
    assert_eq!(left, ["hist-2"], "the newest successful Job stays");
}

#[tokio::test]
async fn kubectl_create_job_from_cronjob() {
    let s = TestServer::start(&[]).await;
    let c = s.client().await;
    create_cronjob(&c, "manual", json!({"schedule": "0 0 1 1 *"})).await;
    for (minor, n) in [(27u32, "by-hand-27"), (33, "by-hand-33")] {
        let out = kubectl(&s, minor, &["create", "job", n, "--from=cronjob/manual"]);
        assert!(
            out.status.success(),
            "kubectl 1.{minor}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let j = job(&c, n).await;
        assert_eq!(
            j["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"],
            json!("manual")
        );
        assert_eq!(j["metadata"]["ownerReferences"][0]["name"], json!("manual"));
        active_pods(&s, &c, n, 1).await;
    }
}

// ---- real pods (root, containerd) ----
//
// The pod templates tolerate `node.kubernetes.io/disk-pressure`: a build
// machine whose shared target dir leaves under 15% of the disk free gets
// that taint, and these tests are not about it.

/// A Job `name` of busybox pods running `sh -c SCRIPT`, two at a time,
/// that tolerate disk pressure; `extra_spec` goes on in its spec.
fn busybox_job(name: &str, completions: u32, extra_spec: &str, script: &str) -> String {
    format!(
        r#"
apiVersion: batch/v1
kind: Job
metadata: {{name: {name}}}
spec:
  completions: {completions}
  parallelism: 2{extra_spec}
  template:
    spec:
      restartPolicy: Never
      tolerations: [{{key: node.kubernetes.io/disk-pressure, operator: Exists, effect: NoSchedule}}]
      containers:
      - name: main
        image: {BUSYBOX}
        command: ["sh", "-c", "{script}"]
"#
    )
}

/// `kubectl wait --for=condition=complete JOB TIMEOUT`.
fn wait_complete(cl: &Cluster, minor: u32, job: &str, timeout: &str) -> std::process::Output {
    cl.kubectl(minor, &["wait", "--for=condition=complete", job, timeout])
}

#[tokio::test]
async fn real_job_runs_busybox_to_completion() {
    let Some(cl) = Cluster::start_unless_skipped("real_job_runs_busybox_to_completion").await
    else {
        return;
    };
    cl.apply(&busybox_job("real", 3, "", "echo done; sleep 1"));
    let out = wait_complete(&cl, 33, "job/real", "--timeout=90s");
    let c = cl.server.client().await;
    let j = job(&c, "real").await;
    assert!(
        out.status.success(),
        "kubectl wait: {}\njob: {j:#}\n{}",
        String::from_utf8_lossy(&out.stderr),
        tail(&cl.server.log(), 60)
    );
    assert_eq!(j["status"]["succeeded"], json!(3));
    let out = wait_complete(&cl, 27, "job/real", "--timeout=5s");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pods = job_pods(&c, "real").await;
    assert_eq!(pods.len(), 3);
    assert!(pods.iter().all(|p| p["status"]["phase"] == "Succeeded"));
    let logs = cl.kubectl(33, &["logs", "job/real"]);
    assert!(String::from_utf8_lossy(&logs.stdout).contains("done"));

    // Indexed: each pod sees its index in JOB_COMPLETION_INDEX and its
    // hostname.
    cl.apply(&busybox_job(
        "indexed",
        2,
        "\n  completionMode: Indexed",
        "echo index=$JOB_COMPLETION_INDEX host=$(hostname)",
    ));
    let out = wait_complete(&cl, 33, "job/indexed", "--timeout=90s");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut seen = Vec::new();
    for p in job_pods(&c, "indexed").await {
        let logs = cl.kubectl(33, &["logs", &name(&p)]);
        seen.push(String::from_utf8_lossy(&logs.stdout).trim().to_string());
    }
    seen.sort();
    assert_eq!(seen, ["index=0 host=indexed-0", "index=1 host=indexed-1"]);
}

#[tokio::test]
async fn real_cronjob_creates_a_job_that_completes() {
    let Some(cl) = Cluster::start_unless_skipped("real_cronjob_creates_a_job_that_completes").await
    else {
        return;
    };
    cl.apply(&format!(
        r#"
apiVersion: batch/v1
kind: CronJob
metadata: {{name: every}}
spec:
  schedule: "*/1 * * * *"
  jobTemplate:
    metadata: {{labels: {{from: every}}}}
    spec:
      template:
        spec:
          restartPolicy: Never
          tolerations: [{{key: node.kubernetes.io/disk-pressure, operator: Exists, effect: NoSchedule}}]
          containers:
          - name: main
            image: {BUSYBOX}
            command: ["true"]
"#
    ));
    let c = cl.server.client().await;
    // Due at once instead of at the next minute.
    backdate(&c, "every", 2).await;
    let cj = wait_for(
        &cl.server,
        "lastSuccessfulTime",
        Duration::from_secs(60),
        || async {
            let cj = cronjob(&c, "every").await;
            cj["status"]["lastSuccessfulTime"].is_string().then_some(cj)
        },
    )
    .await;
    let jobs = jobs_of(&c, "every").await;
    assert!(!jobs.is_empty(), "{cj:#}");
    assert!(jobs.iter().any(|j| has_true(j, "Complete")));
}

#[tokio::test]
async fn deleting_a_job_releases_its_pods() {
    let s = TestServer::start(&[]).await;
    let c = s.client().await;
    create_job(&c, "gone", json!({"parallelism": 2, "completions": 2})).await;
    active_pods(&s, &c, "gone", 2).await;
    // Background: the Job goes at once; its pods still hold the tracking
    // finalizer, which must come off for them to go.
    let (code, body, _) = raw(
        &c,
        "DELETE",
        &format!("/apis/batch/v1/namespaces/{NS}/jobs/gone?propagationPolicy=Background"),
        None,
        vec![],
    )
    .await;
    assert_eq!(code, 200, "{body}");
    wait_for(&s, "pods gone", Duration::from_secs(10), || async {
        job_pods(&c, "gone").await.is_empty().then_some(())
    })
    .await;
}
