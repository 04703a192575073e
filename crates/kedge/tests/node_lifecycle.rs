//! Node lifecycle against a real `kedge server --disable-agent` with
//! simulated nodes: a node whose Lease stops being renewed turns Unknown and
//! is tainted within the grace period, its pods are evicted by their
//! tolerations, and taints go when it comes back.

mod common;
mod simnode;

use std::time::{Duration, Instant};

use common::{condition, get_json, TestServer};
use serde_json::{json, Value};
use simnode::{bound_pod, has_taint, merge_patch, wait_for, SimNode};

const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const NOT_READY: &str = "node.kubernetes.io/not-ready";

fn pod_path(name: &str) -> String {
    format!("/api/v1/namespaces/default/pods/{name}")
}

fn deleting(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp").is_some()
}

/// Wait until a pod is being deleted (or gone); the time it took.
async fn wait_evicted(c: &kube::Client, name: &str, since: Instant, within: Duration) -> Duration {
    wait_for(
        c,
        &pod_path(name),
        within,
        &format!("eviction of {name}"),
        |s, v| s == 404 || deleting(v),
    )
    .await;
    since.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_node_turns_unknown_is_tainted_and_its_pods_are_evicted_by_toleration() {
    let srv = TestServer::start(&[
        "--node-monitor-grace-period=4s",
        "--default-unreachable-toleration-seconds=6",
    ])
    .await;
    let c = srv.client().await;
    let _n1 = SimNode::start(&c, "n1", json!({})).await;
    let mut n2 = SimNode::start(&c, "n2", json!({})).await;
    let tol = |secs: Option<i64>| {
        let mut t = json!({"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"});
        if let Some(s) = secs {
            t["tolerationSeconds"] = json!(s);
        }
        json!({"tolerations": [t]})
    };
    let l = json!({"app": "x"});
    bound_pod(
        &c,
        "default",
        "tol2",
        "n2",
        l.clone(),
        tol(Some(2)),
        Some("10.42.2.2"),
        true,
    )
    .await;
    let deflt = bound_pod(
        &c,
        "default",
        "deflt",
        "n2",
        l.clone(),
        json!({}),
        Some("10.42.2.3"),
        true,
    )
    .await;
    bound_pod(
        &c,
        "default",
        "forever",
        "n2",
        l.clone(),
        tol(None),
        Some("10.42.2.4"),
        true,
    )
    .await;
    bound_pod(
        &c,
        "default",
        "safe",
        "n1",
        l.clone(),
        json!({}),
        Some("10.42.1.2"),
        true,
    )
    .await;

    // DefaultTolerationSeconds admission: the flag's value for unreachable,
    // kedge's default (10 s) for not-ready.
    let tols = deflt["spec"]["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let find = |k: &str| tols.iter().find(|t| t["key"] == k).cloned();
    assert_eq!(
        find(UNREACHABLE).expect("unreachable")["tolerationSeconds"],
        6
    );
    assert_eq!(find(NOT_READY).expect("not-ready")["tolerationSeconds"], 10);
    assert_eq!(find(NOT_READY).expect("not-ready")["effect"], "NoExecute");

    // Healthy nodes stay Ready and untainted.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, node) = get_json(&c, "/api/v1/nodes/n2").await;
    assert_eq!(
        condition(&node, "Ready").expect("ready")["status"],
        "True",
        "{node}"
    );
    assert!(!has_taint(&node, UNREACHABLE, "NoExecute"));

    // Lose n2.
    n2.stop();
    let lost = Instant::now();
    let node = wait_for(
        &c,
        "/api/v1/nodes/n2",
        Duration::from_secs(12),
        "n2 Unknown and tainted",
        |_, v| {
            condition(v, "Ready").is_some_and(|r| r["status"] == "Unknown")
                && has_taint(v, UNREACHABLE, "NoExecute")
        },
    )
    .await;
    let took = lost.elapsed();
    assert!(took <= Duration::from_secs(4 + 4), "Unknown after {took:?}");
    assert!(
        took >= Duration::from_secs(2),
        "Unknown too early: {took:?}"
    );
    let tainted = Instant::now();
    for t in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        let cnd = condition(&node, t).expect("condition");
        assert_eq!(cnd["status"], "Unknown", "{t}: {node}");
        assert_eq!(cnd["reason"], "NodeStatusUnknown");
        assert_eq!(cnd["message"], "Kubelet stopped posting node status.");
    }
    assert!(has_taint(&node, UNREACHABLE, "NoSchedule"), "{node}");
    let ne = node["spec"]["taints"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["effect"] == "NoExecute").cloned())
        .expect("NoExecute taint");
    assert!(ne.get("timeAdded").is_some(), "{ne}");
    let (_, n1) = get_json(&c, "/api/v1/nodes/n1").await;
    assert_eq!(condition(&n1, "Ready").expect("ready")["status"], "True");

    // Pods on the lost node are marked not Ready.
    wait_for(
        &c,
        &pod_path("forever"),
        Duration::from_secs(5),
        "forever not ready",
        |_, v| condition(v, "Ready").is_some_and(|r| r["status"] == "False"),
    )
    .await;

    // tolerationSeconds 2 -> evicted ~2 s after the taint; the default (6) later.
    let t2 = wait_evicted(&c, "tol2", tainted, Duration::from_secs(8)).await;
    assert!(
        t2 >= Duration::from_millis(1000),
        "tol2 evicted too early: {t2:?}"
    );
    assert!(t2 <= Duration::from_secs(5), "tol2 evicted late: {t2:?}");
    let (_, p) = get_json(&c, &pod_path("tol2")).await;
    let dt = condition(&p, "DisruptionTarget").expect("DisruptionTarget");
    assert_eq!(dt["reason"], "DeletionByTaintManager", "{p}");
    assert_eq!(
        dt["message"],
        "Taint manager: deleting due to NoExecute taint"
    );
    let (_, dp) = get_json(&c, &pod_path("deflt")).await;
    assert!(!deleting(&dp), "deflt must wait for its 6 s: {dp}");
    let t6 = wait_evicted(&c, "deflt", tainted, Duration::from_secs(12)).await;
    assert!(
        t6 >= Duration::from_secs(5),
        "deflt evicted too early: {t6:?}"
    );
    assert!(t6 <= Duration::from_secs(9), "deflt evicted late: {t6:?}");

    // A toleration without seconds tolerates forever; n1's pod is untouched.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for name in ["forever", "safe"] {
        let (s, p) = get_json(&c, &pod_path(name)).await;
        assert_eq!(s, 200);
        assert!(!deleting(&p), "{name} must stay: {p}");
    }

    // The eviction is reported as upstream does.
    let (_, evs) = get_json(&c, "/apis/events.k8s.io/v1/namespaces/default/events").await;
    let found = evs["items"].as_array().is_some_and(|items| {
        items.iter().any(|e| {
            e["reason"] == "TaintManagerEviction"
                && e["regarding"]["name"] == "tol2"
                && e["note"]
                    .as_str()
                    .is_some_and(|n| n.contains("Marking for deletion Pod default/tol2"))
        })
    });
    assert!(found, "no TaintManagerEviction event: {evs}");

    // The node comes back: its agent posts Ready; the taints go.
    let (s, v) = merge_patch(
        &c,
        "/api/v1/nodes/n2/status",
        json!({"status": {"conditions": simnode::healthy_conditions()}}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    wait_for(
        &c,
        "/api/v1/nodes/n2",
        Duration::from_secs(5),
        "n2 untainted",
        |_, v| !has_taint(v, UNREACHABLE, "NoExecute") && !has_taint(v, UNREACHABLE, "NoSchedule"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_execute_taint_evicts_pods_that_do_not_tolerate_it_at_once() {
    let srv = TestServer::start(&[]).await;
    let c = srv.client().await;
    let _n = SimNode::start(&c, "n1", json!({})).await;
    let l = json!({"app": "y"});
    bound_pod(
        &c,
        "default",
        "plain",
        "n1",
        l.clone(),
        json!({}),
        None,
        true,
    )
    .await;
    let tolerant = json!({"tolerations": [{"key": "example.com/drain", "operator": "Exists", "effect": "NoExecute"}]});
    bound_pod(
        &c,
        "default",
        "tolerant",
        "n1",
        l.clone(),
        tolerant,
        None,
        true,
    )
    .await;
    // Ready=False gives not-ready taints; here the node stays Ready and an
    // operator adds a NoExecute taint of their own.
    let (s, v) = merge_patch(
        &c,
        "/api/v1/nodes/n1",
        json!({"spec": {"taints": [{"key": "example.com/drain", "value": "now", "effect": "NoExecute"}]}}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let since = Instant::now();
    let took = wait_evicted(&c, "plain", since, Duration::from_secs(5)).await;
    assert!(
        took <= Duration::from_secs(3),
        "plain evicted after {took:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, p) = get_json(&c, &pod_path("tolerant")).await;
    assert!(!deleting(&p), "tolerant must stay: {p}");
    // The controller left the operator's taint alone and added none.
    let (_, node) = get_json(&c, "/api/v1/nodes/n1").await;
    assert_eq!(
        node["spec"]["taints"].as_array().map(Vec::len),
        Some(1),
        "{node}"
    );

    // Ready=False: the not-ready taints, NoExecute and NoSchedule.
    let mut conds = simnode::healthy_conditions();
    if let Some(r) = conds
        .as_array_mut()
        .and_then(|a| a.iter_mut().find(|c| c["type"] == "Ready"))
    {
        r["status"] = json!("False");
        r["reason"] = json!("KubeletNotReady");
    }
    let (s, v) = merge_patch(
        &c,
        "/api/v1/nodes/n1/status",
        json!({"status": {"conditions": conds}}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    wait_for(
        &c,
        "/api/v1/nodes/n1",
        Duration::from_secs(5),
        "not-ready taints",
        |_, v| {
            has_taint(v, NOT_READY, "NoExecute")
                && has_taint(v, NOT_READY, "NoSchedule")
                && has_taint(v, "example.com/drain", "NoExecute")
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_lost_node_are_replaced_on_another_node() {
    let srv = TestServer::start(&[
        "--node-monitor-grace-period=4s",
        "--default-unreachable-toleration-seconds=3",
        "--default-not-ready-toleration-seconds=3",
    ])
    .await;
    let c = srv.client().await;
    let mut a = SimNode::start(&c, "a", json!({})).await;
    let mut b = SimNode::start(&c, "b", json!({})).await;
    let dep = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "kedge.local/busybox:1.36"}]}}},
    });
    let (s, v) = common::post_json(&c, "/apis/apps/v1/namespaces/default/deployments", &dep).await;
    assert_eq!(s, 201, "{v}");
    let bound = |v: &Value| -> Vec<(String, String)> {
        v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
            .filter_map(|p| {
                let node = p.pointer("/spec/nodeName")?.as_str()?.to_string();
                Some((p["metadata"]["name"].as_str()?.to_string(), node))
            })
            .collect()
    };
    let list = "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb";
    let v = wait_for(
        &c,
        list,
        Duration::from_secs(20),
        "web pod bound",
        |_, v| bound(v).len() == 1,
    )
    .await;
    let (first, node) = bound(&v).remove(0);
    if node == "a" {
        a.stop()
    } else {
        b.stop()
    }
    let lost = Instant::now();
    let v = wait_for(
        &c,
        list,
        Duration::from_secs(25),
        "replacement bound elsewhere",
        |_, v| bound(v).iter().any(|(n, on)| *n != first && *on != node),
    )
    .await;
    let took = lost.elapsed();
    // grace 4 s + toleration 3 s + a few seconds for controllers.
    assert!(
        took <= Duration::from_secs(15),
        "replacement after {took:?}: {v}"
    );
}
