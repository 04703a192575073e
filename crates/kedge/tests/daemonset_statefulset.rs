//! DaemonSets and StatefulSets.
//!
//! Most tests run `kedge server --disable-agent` with simulated nodes
//! (Node objects whose Leases a test task renews) and play the kubelet
//! (pod status through the status subresource, and the final delete of
//! terminating pods). The `real_*` tests run busybox pods on the node agent
//! (root, containerd); elsewhere they print a loud SKIP.

mod common;
mod simnode;

use std::time::{Duration, Instant};

use common::cluster::{is_ready, tail, Cluster, BUSYBOX};
use common::{get_json, kubectl, post_json, raw, wait_for, TestServer};
use serde_json::{json, Value};
use simnode::{merge_patch, set_pod_status, SimNode};

const NS: &str = "default";

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn name(v: &Value) -> String {
    v["metadata"]["name"].as_str().unwrap_or("").to_string()
}

async fn pods(c: &kube::Client, selector: &str) -> Vec<Value> {
    let (_, list) = get_json(
        c,
        &format!("/api/v1/namespaces/{NS}/pods?labelSelector={selector}"),
    )
    .await;
    let mut v: Vec<Value> = list["items"].as_array().cloned().unwrap_or_default();
    v.sort_by_key(name);
    v
}

fn live(pods: &[Value]) -> Vec<&Value> {
    pods.iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

async fn create(c: &kube::Client, plural: &str, obj: Value) -> Value {
    let (code, body) = post_json(c, &format!("/apis/apps/v1/namespaces/{NS}/{plural}"), &obj).await;
    assert_eq!(code, 201, "create {plural}: {body}");
    body
}

async fn get(c: &kube::Client, plural: &str, n: &str) -> Value {
    get_json(c, &format!("/apis/apps/v1/namespaces/{NS}/{plural}/{n}"))
        .await
        .1
}

/// The test's kubelet for every pod matching `selector`: makes new pods
/// Running (and Ready, if `ready`), and finishes the deletion of
/// terminating ones.
fn fake_kubelet(
    c: kube::Client,
    selector: &'static str,
    ready: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            for p in pods(&c, selector).await {
                let n = name(&p);
                if !p["metadata"]["deletionTimestamp"].is_null() {
                    let _ = raw(
                        &c,
                        "DELETE",
                        &format!("/api/v1/namespaces/{NS}/pods/{n}?gracePeriodSeconds=0"),
                        None,
                        vec![],
                    )
                    .await;
                } else if ready && p["status"]["phase"] != "Running" {
                    // Not `set_pod_status`: its assert would kill this
                    // task when the pod goes meanwhile.
                    let now = jiff::Timestamp::now().to_string();
                    let (code, body) = merge_patch(
                        &c,
                        &format!("/api/v1/namespaces/{NS}/pods/{n}/status"),
                        json!({"status": {"phase": "Running", "conditions": [
                            {"type": "Ready", "status": "True", "lastTransitionTime": now}]}}),
                    )
                    .await;
                    if code != 200 {
                        eprintln!("fake kubelet: status of {n}: {code} {body}");
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

async fn revisions(c: &kube::Client, owner: &str) -> Vec<Value> {
    let (_, list) = get_json(
        c,
        &format!("/apis/apps/v1/namespaces/{NS}/controllerrevisions"),
    )
    .await;
    let mut v: Vec<Value> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["metadata"]["ownerReferences"][0]["name"] == owner)
        .cloned()
        .collect();
    v.sort_by_key(|r| r["revision"].as_i64().unwrap_or(0));
    v
}

fn daemonset(n: &str, image: &str, extra: Value) -> Value {
    let mut spec = json!({
        "selector": {"matchLabels": {"app": n}},
        "template": {"metadata": {"labels": {"app": n}}, "spec": {
            "containers": [{"name": "main", "image": image}]}},
    });
    if let (Some(s), Value::Object(e)) = (spec.as_object_mut(), extra) {
        for (k, v) in e {
            if k == "podSpec" {
                if let (Some(ps), Value::Object(pe)) = (s["template"]["spec"].as_object_mut(), v) {
                    for (pk, pv) in pe {
                        ps.insert(pk, pv);
                    }
                }
            } else {
                s.insert(k, v);
            }
        }
    }
    json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": n}, "spec": spec})
}

// Multi-threaded: the fake kubelet task keeps running while kubectl
// blocks this thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonset_runs_one_pod_per_eligible_node() {
    let s = TestServer::start(&[]).await;
    let c = s.client().await;
    let _n1 = SimNode::start(&c, "edge-1", json!({"edge": "yes"})).await;
    let _n2 = SimNode::start(&c, "edge-2", json!({"edge": "yes"})).await;
    let _n3 = SimNode::start(&c, "core-1", json!({})).await;
    let (code, body) = merge_patch(
        &c,
        "/api/v1/nodes/edge-2",
        json!({"spec": {"taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]}}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    create(
        &c,
        "daemonsets",
        daemonset(
            "agent",
            "busybox",
            json!({"podSpec": {"nodeSelector": {"edge": "yes"}}}),
        ),
    )
    .await;

    let p = wait_for(&s, "one daemon pod", Duration::from_secs(10), || async {
        let p = pods(&c, "app%3Dagent").await;
        (p.len() == 1).then(|| p[0].clone())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        pods(&c, "app%3Dagent").await.len(),
        1,
        "the tainted and unlabelled nodes get none"
    );
    // Pinned by node affinity, not nodeName.
    assert_eq!(
        p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"],
        json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["edge-1"]}]}])
    );
    let tolerations: Vec<(String, String)> = p["spec"]["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["key"].as_str().unwrap_or("").to_string(),
                t["effect"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for (k, e) in [
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ] {
        assert!(
            tolerations.contains(&(k.to_string(), e.to_string())),
            "{k}:{e} in {tolerations:?}"
        );
    }
    assert!(!tolerations
        .iter()
        .any(|(k, _)| k == "node.kubernetes.io/network-unavailable"));
    let revs = revisions(&c, "agent").await;
    assert_eq!(revs.len(), 1);
    assert_eq!(revs[0]["revision"], json!(1));
    let hash = revs[0]["metadata"]["labels"]["controller-revision-hash"].clone();
    assert_eq!(p["metadata"]["labels"]["controller-revision-hash"], hash);
    assert_eq!(
        revs[0]["metadata"]["name"],
        json!(format!("agent-{}", hash.as_str().unwrap_or("")))
    );
    assert_eq!(
        revs[0]["data"]["spec"]["template"]["$patch"],
        json!("replace")
    );

    // A new label brings core-1 in (node watch), then the kubelet makes
    // them ready and rollout status is done.
    let (code, body) = merge_patch(
        &c,
        "/api/v1/nodes/core-1",
        json!({"metadata": {"labels": {"edge": "yes"}}}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let _kubelet = fake_kubelet(c.clone(), "app%3Dagent", true);
    let ds = wait_for(&s, "2 ready", Duration::from_secs(10), || async {
        let ds = get(&c, "daemonsets", "agent").await;
        (ds["status"]["numberAvailable"] == json!(2)).then_some(ds)
    })
    .await;
    let st = &ds["status"];
    assert_eq!(st["desiredNumberScheduled"], json!(2), "{ds:#}");
    assert_eq!(st["currentNumberScheduled"], json!(2));
    assert_eq!(st["numberReady"], json!(2));
    assert_eq!(st["updatedNumberScheduled"], json!(2));
    assert_eq!(st["numberMisscheduled"], json!(0));
    assert_eq!(st["observedGeneration"], ds["metadata"]["generation"]);
    for minor in [27u32, 33] {
        let out = kubectl(
            &s,
            minor,
            &["rollout", "status", "ds/agent", "--timeout=10s"],
        );
        assert!(
            out.status.success(),
            "1.{minor}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout(&out).contains("successfully rolled out"),
            "{}",
            stdout(&out)
        );
    }
    let nodes: Vec<String> = pods(&c, "app%3Dagent")
        .await
        .iter()
        .map(|p| {
            p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                ["nodeSelectorTerms"][0]["matchFields"][0]["values"][0]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(nodes, ["core-1", "edge-1"]);

    // A node that stops matching loses its pod.
    merge_patch(
        &c,
        "/api/v1/nodes/core-1",
        json!({"metadata": {"labels": {"edge": null}}}),
    )
    .await;
    wait_for(&s, "pod off core-1", Duration::from_secs(10), || async {
        (live(&pods(&c, "app%3Dagent").await).len() == 1).then_some(())
    })
    .await;
}

// Multi-threaded: the fake kubelet task keeps running while kubectl
// blocks this thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonset_rolling_update_history_and_undo() {
    let s = TestServer::start(&[]).await;
    let c = s.client().await;
    let _nodes = [
        SimNode::start(&c, "n1", json!({})).await,
        SimNode::start(&c, "n2", json!({})).await,
        SimNode::start(&c, "n3", json!({})).await,
    ];
    let _kubelet = fake_kubelet(c.clone(), "app%3Droll", true);
    create(&c, "daemonsets", daemonset("roll", "busybox:1", json!({}))).await;
    wait_for(&s, "3 available", Duration::from_secs(10), || async {
        (get(&c, "daemonsets", "roll").await["status"]["numberAvailable"] == json!(3)).then_some(())
    })
    .await;
    let (code, body, _) = raw(
        &c,
        "PATCH",
        &format!("/apis/apps/v1/namespaces/{NS}/daemonsets/roll"),
        Some("application/strategic-merge-patch+json"),
        br#"{"spec":{"template":{"spec":{"containers":[{"name":"main","image":"busybox:2"}]}}}}"#
            .to_vec(),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    // maxUnavailable 1: never fewer than 2 live, ready pods of 3 nodes.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut min_ready = 3;
    loop {
        let ps = pods(&c, "app%3Droll").await;
        let ready = live(&ps).iter().filter(|p| is_ready(p)).count();
        min_ready = min_ready.min(ready);
        let updated = live(&ps)
            .iter()
            .filter(|p| p["spec"]["containers"][0]["image"] == "busybox:2" && is_ready(p))
            .count();
        if updated == 3 && live(&ps).len() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rollout stuck: {ps:#?}\n{}",
            tail(&s.log(), 40)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        min_ready >= 2,
        "more than maxUnavailable pods down: {min_ready} ready"
    );
    let out = kubectl(&s, 33, &["rollout", "status", "ds/roll", "--timeout=10s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revs = revisions(&c, "roll").await;
    assert_eq!(
        revs.iter()
            .map(|r| r["revision"].as_i64())
            .collect::<Vec<_>>(),
        [Some(1), Some(2)]
    );
    let history = kubectl(&s, 33, &["rollout", "history", "ds/roll"]);
    assert!(
        history.status.success(),
        "{}",
        String::from_utf8_lossy(&history.stderr)
    );
    let h = stdout(&history);
    assert!(h.contains('1') && h.contains('2'), "{h}");

    // Undo: revision 1 comes back as revision 3.
    let out = kubectl(&s, 33, &["rollout", "undo", "ds/roll"]);
    assert!(
        out.status.success(),
        "undo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(&s, "back on busybox:1", Duration::from_secs(20), || async {
        let ps = pods(&c, "app%3Droll").await;
        let l = live(&ps);
        (l.len() == 3
            && l.iter()
                .all(|p| p["spec"]["containers"][0]["image"] == "busybox:1" && is_ready(p)))
        .then_some(())
    })
    .await;
    let revs = revisions(&c, "roll").await;
    assert_eq!(revs.len(), 2, "{revs:#?}");
    assert_eq!(revs[1]["revision"], json!(3));
    assert_eq!(
        revs[1]["data"]["spec"]["template"]["spec"]["containers"][0]["image"],
        json!("busybox:1")
    );
    let out = kubectl(&s, 27, &["rollout", "status", "ds/roll", "--timeout=10s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn statefulset(n: &str, replicas: i32, policy: &str, extra: Value) -> Value {
    let mut spec = json!({
        "replicas": replicas,
        "serviceName": n,
        "podManagementPolicy": policy,
        "selector": {"matchLabels": {"app": n}},
        "template": {"metadata": {"labels": {"app": n}}, "spec": {
            "containers": [{"name": "main", "image": "busybox:1",
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
    });
    if let (Some(s), Value::Object(e)) = (spec.as_object_mut(), extra) {
        for (k, v) in e {
            s.insert(k, v);
        }
    }
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": n}, "spec": spec})
}

// Multi-threaded: the fake kubelet task keeps running while kubectl
// blocks this thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_ordered_ready_creates_one_at_a_time_with_claims() {
    let s = TestServer::start(&[]).await;
    let c = s.client().await;
    create(
        &c,
        "statefulsets",
        statefulset("web", 3, "OrderedReady", json!({})),
    )
    .await;
    let p0 = wait_for(&s, "web-0", Duration::from_secs(10), || async {
        pods(&c, "app%3Dweb").await.into_iter().next()
    })
    .await;
    assert_eq!(name(&p0), "web-0");
    assert_eq!(p0["spec"]["hostname"], json!("web-0"));
    assert_eq!(p0["spec"]["subdomain"], json!("web"));
    assert_eq!(
        p0["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
        json!("web-0")
    );
    assert_eq!(
        p0["metadata"]["labels"]["apps.kubernetes.io/pod-index"],
        json!("0")
    );
    assert_eq!(
        p0["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        json!("data-web-0")
    );
    let (code, claim) = get_json(
        &c,
        &format!("/api/v1/namespaces/{NS}/persistentvolumeclaims/data-web-0"),
    )
    .await;
    assert_eq!(code, 200, "{claim}");
    assert_eq!(claim["metadata"]["labels"]["app"], json!("web"));
    // Not ready: web-1 waits (the claim staying Pending does not block).
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(pods(&c, "app%3Dweb").await.len(), 1);
    set_pod_status(&c, NS, "web-0", None, true).await;
    wait_for(&s, "web-1", Duration::from_secs(5), || async {
        let p = pods(&c, "app%3Dweb").await;
        (p.len() == 2).then_some(())
    })
    .await;
    let p1 = get_json(&c, &format!("/api/v1/namespaces/{NS}/pods/web-1"))
        .await
        .1;
    let t0: jiff::Timestamp = p0["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("ts");
    let t1: jiff::Timestamp = p1["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("ts");
    assert!(t1 >= t0);
    set_pod_status(&c, NS, "web-1", None, true).await;
    wait_for(&s, "web-2", Duration::from_secs(5), || async {
        (pods(&c, "app%3Dweb").await.len() == 3).then_some(())
    })
    .await;
    set_pod_status(&c, NS, "web-2", None, true).await;
    let sts = wait_for(&s, "3 ready", Duration::from_secs(5), || async {
        let sts = get(&c, "statefulsets", "web").await;
        (sts["status"]["readyReplicas"] == json!(3)).then_some(sts)
    })
    .await;
    let st = &sts["status"];
    assert_eq!(st["replicas"], json!(3), "{sts:#}");
    assert_eq!(st["currentReplicas"], json!(3));
    assert_eq!(st["updatedReplicas"], json!(3));
    assert_eq!(st["currentRevision"], st["updateRevision"]);
    assert_eq!(st["observedGeneration"], sts["metadata"]["generation"]);
    let rev = st["updateRevision"].as_str().unwrap_or("").to_string();
    assert!(rev.starts_with("web-"));
    assert_eq!(
        p0["metadata"]["labels"]["controller-revision-hash"],
        json!(rev)
    );
    for minor in [27u32, 33] {
        let out = kubectl(
            &s,
            minor,
            &["rollout", "status", "sts/web", "--timeout=10s"],
        );
        assert!(
            out.status.success(),
            "1.{minor}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Scale down to 1: web-2 goes first, then web-1; claims stay (Retain).
    let _kubelet = fake_kubelet(c.clone(), "app%3Dweb", true);
    let (code, body, _) = raw(
        &c,
        "PATCH",
        &format!("/apis/apps/v1/namespaces/{NS}/statefulsets/web"),
        Some("application/merge-patch+json"),
        br#"{"spec":{"replicas":1}}"#.to_vec(),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    wait_for(&s, "scaled to 1", Duration::from_secs(10), || async {
        let names: Vec<String> = pods(&c, "app%3Dweb").await.iter().map(name).collect();
        assert!(
            !names.contains(&"web-2".to_string()) || names.contains(&"web-1".to_string()),
            "web-1 went before web-2: {names:?}"
        );
        (names == ["web-0"]).then_some(())
    })
    .await;
    let (code, _) = get_json(
        &c,
        &format!("/api/v1/namespaces/{NS}/persistentvolumeclaims/data-web-2"),
    )
    .await;
    assert_eq!(code, 200, "Retain keeps the claim");
}

// Multi-threaded: the fake kubelet task keeps running while kubectl
// blocks this thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_parallel_and_partitioned_rolling_update() {
    let s = TestServer::start(&[]).await;
    let c = s.client().await;
    create(
        &c,
        "statefulsets",
        statefulset(
            "db",
            3,
            "Parallel",
            json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
                   "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Delete"}}),
        ),
    )
    .await;
    // Parallel: all three at once, none ready yet.
    wait_for(&s, "3 pods", Duration::from_secs(5), || async {
        (pods(&c, "app%3Ddb").await.len() == 3).then_some(())
    })
    .await;
    let (_, claim) = get_json(
        &c,
        &format!("/api/v1/namespaces/{NS}/persistentvolumeclaims/data-db-1"),
    )
    .await;
    assert_eq!(
        claim["metadata"]["ownerReferences"][0]["kind"],
        json!("StatefulSet")
    );
    let _kubelet = fake_kubelet(c.clone(), "app%3Ddb", true);
    let before = wait_for(&s, "3 ready", Duration::from_secs(10), || async {
        let sts = get(&c, "statefulsets", "db").await;
        (sts["status"]["readyReplicas"] == json!(3)).then_some(sts)
    })
    .await;
    let old_rev = before["status"]["currentRevision"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let (code, body, _) = raw(
        &c,
        "PATCH",
        &format!("/apis/apps/v1/namespaces/{NS}/statefulsets/db"),
        Some("application/strategic-merge-patch+json"),
        br#"{"spec":{"template":{"spec":{"containers":[{"name":"main","image":"busybox:2"}]}}}}"#
            .to_vec(),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let sts = wait_for(
        &s,
        "ordinals >= 1 updated",
        Duration::from_secs(15),
        || async {
            let sts = get(&c, "statefulsets", "db").await;
            (sts["status"]["updatedReplicas"] == json!(2)
                && sts["status"]["readyReplicas"] == json!(3))
            .then_some(sts)
        },
    )
    .await;
    let new_rev = sts["status"]["updateRevision"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert_ne!(new_rev, old_rev);
    assert_eq!(
        sts["status"]["currentRevision"],
        json!(old_rev),
        "partitioned: current stays"
    );
    let image = |p: &Value| {
        p["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let ps = pods(&c, "app%3Ddb").await;
    let by: std::collections::BTreeMap<String, String> =
        live(&ps).iter().map(|p| (name(p), image(p))).collect();
    assert_eq!(by.get("db-0").map(String::as_str), Some("busybox:1"));
    assert_eq!(by.get("db-1").map(String::as_str), Some("busybox:2"));
    assert_eq!(by.get("db-2").map(String::as_str), Some("busybox:2"));
    let out = kubectl(&s, 33, &["rollout", "status", "sts/db", "--timeout=10s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("partitioned roll out complete"),
        "{}",
        stdout(&out)
    );

    // Partition 0 finishes it; currentRevision follows.
    raw(
        &c,
        "PATCH",
        &format!("/apis/apps/v1/namespaces/{NS}/statefulsets/db"),
        Some("application/merge-patch+json"),
        br#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#.to_vec(),
    )
    .await;
    wait_for(&s, "all updated", Duration::from_secs(15), || async {
        let sts = get(&c, "statefulsets", "db").await;
        (sts["status"]["currentRevision"] == json!(new_rev)
            && sts["status"]["updatedReplicas"] == json!(3)
            && sts["status"]["readyReplicas"] == json!(3))
        .then_some(())
    })
    .await;
    let out = kubectl(&s, 27, &["rollout", "status", "sts/db", "--timeout=10s"]);
    assert!(
        out.status.success(),
        "{}\n{:#}\n{}",
        String::from_utf8_lossy(&out.stderr),
        get(&c, "statefulsets", "db").await["status"],
        pods(&c, "app%3Ddb")
            .await
            .iter()
            .map(|p| format!(
                "{} {} ready={} del={} rev={} rv={}",
                name(p),
                p["status"]["phase"],
                is_ready(p),
                p["metadata"]["deletionTimestamp"],
                p["metadata"]["labels"]["controller-revision-hash"],
                p["metadata"]["resourceVersion"]
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // whenScaled: Delete — a scaled-away ordinal's claim goes with its pod.
    raw(
        &c,
        "PATCH",
        &format!("/apis/apps/v1/namespaces/{NS}/statefulsets/db"),
        Some("application/merge-patch+json"),
        br#"{"spec":{"replicas":2}}"#.to_vec(),
    )
    .await;
    wait_for(
        &s,
        "claim of db-2 deleted",
        Duration::from_secs(15),
        || async {
            let (code, _) = get_json(
                &c,
                &format!("/api/v1/namespaces/{NS}/persistentvolumeclaims/data-db-2"),
            )
            .await;
            (code == 404).then_some(())
        },
    )
    .await;
    let (code, _) = get_json(
        &c,
        &format!("/api/v1/namespaces/{NS}/persistentvolumeclaims/data-db-1"),
    )
    .await;
    assert_eq!(code, 200);
}

// ---- real pods (root, containerd) ----
//
// The pod templates tolerate `node.kubernetes.io/disk-pressure`: a build
// machine whose shared target dir leaves under 15% of the disk free gets
// that taint, and these tests are not about it.

#[tokio::test]
async fn real_daemonset_and_ordered_statefulset_on_the_node() {
    let Some(cl) =
        Cluster::start_unless_skipped("real_daemonset_and_ordered_statefulset_on_the_node").await
    else {
        return;
    };
    cl.apply(&format!(
        r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: nodeagent}}
spec:
  selector: {{matchLabels: {{app: nodeagent}}}}
  template:
    metadata: {{labels: {{app: nodeagent}}}}
    spec:
      containers:
      - name: main
        image: {BUSYBOX}
        command: ["sleep", "3600"]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: ord}}
spec:
  replicas: 2
  serviceName: ord
  selector: {{matchLabels: {{app: ord}}}}
  template:
    metadata: {{labels: {{app: ord}}}}
    spec:
      terminationGracePeriodSeconds: 1
      tolerations: [{{key: node.kubernetes.io/disk-pressure, operator: Exists, effect: NoSchedule}}]
      containers:
      - name: main
        image: {BUSYBOX}
        command: ["sleep", "3600"]
        readinessProbe:
          exec: {{command: ["true"]}}
          periodSeconds: 1
"#
    ));
    let out = cl.kubectl(33, &["rollout", "status", "ds/nodeagent", "--timeout=90s"]);
    assert!(
        out.status.success(),
        "ds rollout: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        tail(&cl.server.log(), 60)
    );
    let c = cl.server.client().await;
    let ps = pods(&c, "app%3Dnodeagent").await;
    assert_eq!(ps.len(), 1);
    assert_eq!(
        ps[0]["spec"]["nodeName"],
        json!(cl.node),
        "bound by the scheduler"
    );
    assert_eq!(ps[0]["status"]["phase"], json!("Running"));

    let out = cl.kubectl(33, &["rollout", "status", "sts/ord", "--timeout=90s"]);
    assert!(
        out.status.success(),
        "sts rollout: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        tail(&cl.server.log(), 60)
    );
    let p0 = cl.pod(NS, "ord-0").await.1;
    let p1 = cl.pod(NS, "ord-1").await.1;
    let ready0: jiff::Timestamp = p0["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["lastTransitionTime"].as_str())
        .and_then(|t| t.parse().ok())
        .expect("ord-0 Ready time");
    let created1: jiff::Timestamp = p1["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("ord-1 creation");
    assert!(
        created1 >= ready0,
        "ord-1 created {created1} before ord-0 was Ready {ready0}"
    );
    let out = cl.kubectl(27, &["rollout", "status", "sts/ord", "--timeout=10s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
