//! The eviction subresource and PodDisruptionBudgets, and `kubectl
//! drain|cordon|uncordon` (1.27 and 1.33), against `kedge server
//! --disable-agent` with simulated nodes.

mod common;
mod simnode;

use std::process::Command;
use std::time::Duration;

use common::{condition, get_json, post_json, raw, TestServer};
use serde_json::{json, Value};
use simnode::{bound_pod, has_taint, merge_patch, wait_for, SimNode};

const PDB: &str = "/apis/policy/v1/namespaces/default/poddisruptionbudgets";

/// A Running pod in `default` on `node`, labelled `app`, Ready or not.
async fn app_pod(c: &kube::Client, name: &str, node: &str, app: &str, ready: bool) {
    bound_pod(
        c,
        "default",
        name,
        node,
        json!({"app": app}),
        json!({}),
        None,
        ready,
    )
    .await;
}

/// A PodDisruptionBudget `name` over the pods labelled app=`name`, with
/// `budget` (minAvailable or maxUnavailable) set to `n`.
fn pdb(name: &str, budget: &str, n: i64) -> Value {
    json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": name}, "spec": {budget: n, "selector": {"matchLabels": {"app": name}}}})
}

/// Waits (10 s) until `pred` holds for the PodDisruptionBudget `name`.
async fn wait_pdb(
    c: &kube::Client,
    name: &str,
    what: &str,
    pred: impl Fn(u16, &Value) -> bool,
) -> Value {
    wait_for(
        c,
        &format!("{PDB}/{name}"),
        Duration::from_secs(10),
        what,
        pred,
    )
    .await
}

fn eviction(api_version: &str, name: &str, delete_options: Option<Value>) -> Value {
    let mut e = json!({"apiVersion": api_version, "kind": "Eviction", "metadata": {"name": name, "namespace": "default"}});
    if let Some(d) = delete_options {
        e["deleteOptions"] = d;
    }
    e
}

async fn evict(c: &kube::Client, name: &str, body: &Value) -> (u16, Value) {
    post_json(
        c,
        &format!("/api/v1/namespaces/default/pods/{name}/eviction"),
        body,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_honours_the_disruption_budget() {
    let srv = TestServer::start(&[]).await;
    let c = simnode::no_retry_client(&srv.kubeconfig()).await;
    let _n = SimNode::start(&c, "n1", json!({})).await;
    for i in 0..3 {
        bound_pod(
            &c,
            "default",
            &format!("db-{i}"),
            "n1",
            json!({"app": "db"}),
            json!({}),
            Some(&format!("10.42.0.{}", 10 + i)),
            true,
        )
        .await;
    }
    let pdb = pdb("db", "minAvailable", 3);
    let (s, v) = post_json(&c, PDB, &pdb).await;
    assert_eq!(s, 201, "{v}");
    let st = wait_pdb(&c, "db", "pdb status", |_, v| {
        v.pointer("/status/observedGeneration") == Some(&json!(1))
    })
    .await;
    let status = &st["status"];
    assert_eq!(
        (
            status["currentHealthy"].clone(),
            status["desiredHealthy"].clone(),
            status["expectedPods"].clone(),
            status["disruptionsAllowed"].clone()
        ),
        (json!(3), json!(3), json!(3), json!(0)),
        "{st}"
    );
    let cond = condition(&st, "DisruptionAllowed").expect("condition");
    assert_eq!(
        (cond["status"].as_str(), cond["reason"].as_str()),
        (Some("False"), Some("InsufficientPods"))
    );

    // Blocked: 429 with upstream's Status.
    let (s, v) = evict(&c, "db-0", &eviction("policy/v1", "db-0", None)).await;
    assert_eq!(s, 429, "{v}");
    assert_eq!(v["kind"], "Status");
    assert_eq!(v["reason"], "TooManyRequests");
    assert_eq!(
        v["message"],
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert_eq!(v["details"]["causes"][0]["reason"], "DisruptionBudget");
    assert_eq!(
        v["details"]["causes"][0]["message"],
        "The disruption budget db needs 3 healthy pods and has 3 currently"
    );
    let (_, p) = get_json(&c, "/api/v1/namespaces/default/pods/db-0").await;
    assert!(p.pointer("/metadata/deletionTimestamp").is_none());

    // Loosen the budget: one disruption allowed.
    let (s, v) = merge_patch(
        &c,
        &format!("{PDB}/db"),
        json!({"spec": {"minAvailable": 2}}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    wait_pdb(&c, "db", "pdb allows one", |_, v| {
        v.pointer("/status/observedGeneration") == Some(&json!(2))
            && v.pointer("/status/disruptionsAllowed") == Some(&json!(1))
    })
    .await;
    // A v1beta1 body is accepted too.
    let (s, v) = evict(&c, "db-0", &eviction("policy/v1beta1", "db-0", None)).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        (v["kind"].as_str(), v["status"].as_str()),
        (Some("Status"), Some("Success"))
    );
    let (_, p) = get_json(&c, "/api/v1/namespaces/default/pods/db-0").await;
    assert!(
        p.pointer("/metadata/deletionTimestamp").is_some(),
        "evicted pod is terminating: {p}"
    );
    let dt = condition(&p, "DisruptionTarget").expect("DisruptionTarget");
    assert_eq!(dt["reason"], "EvictionByEvictionAPI");
    // The budget is spent at once, before the controller catches up.
    let (s, v) = evict(&c, "db-1", &eviction("policy/v1", "db-1", None)).await;
    assert_eq!(s, 429, "{v}");
    let st = wait_pdb(&c, "db", "pdb recomputed", |_, v| {
        v.pointer("/status/currentHealthy") == Some(&json!(2))
    })
    .await;
    assert_eq!(st["status"]["disruptionsAllowed"], 0, "{st}");
    assert!(
        st["status"]["disruptedPods"]
            .as_object()
            .is_none_or(|m| !m.contains_key("db-0")),
        "terminating pods leave disruptedPods: {st}"
    );

    // A pod no budget covers goes at once; gracePeriodSeconds 0 deletes it.
    app_pod(&c, "free", "n1", "free", true).await;
    let (s, v) = evict(
        &c,
        "free",
        &eviction("policy/v1", "free", Some(json!({"gracePeriodSeconds": 0}))),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, _) = get_json(&c, "/api/v1/namespaces/default/pods/free").await;
    assert_eq!(s, 404);

    // Errors: missing pod, name mismatch, wrong method; dry-run changes nothing.
    let (s, _) = evict(&c, "nope", &eviction("policy/v1", "nope", None)).await;
    assert_eq!(s, 404);
    let (s, _) = evict(&c, "db-1", &eviction("policy/v1", "db-2", None)).await;
    assert_eq!(s, 400);
    let (s, _, _) = raw(
        &c,
        "GET",
        "/api/v1/namespaces/default/pods/db-1/eviction",
        None,
        vec![],
    )
    .await;
    assert_eq!(s, 405);

    // Discovery advertises pods/eviction as policy/v1 Eviction (kubectl drain reads it).
    let (_, d) = get_json(&c, "/api/v1").await;
    let sub = d["resources"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == "pods/eviction").cloned())
        .expect("pods/eviction listed");
    assert_eq!(
        (
            sub["group"].as_str(),
            sub["version"].as_str(),
            sub["kind"].as_str()
        ),
        (Some("policy"), Some("v1"), Some("Eviction"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unready_pods_may_go_while_the_budget_is_met() {
    let srv = TestServer::start(&[]).await;
    let c = simnode::no_retry_client(&srv.kubeconfig()).await;
    let _n = SimNode::start(&c, "n1", json!({})).await;
    for i in 0..2 {
        app_pod(&c, &format!("w-{i}"), "n1", "w", true).await;
    }
    app_pod(&c, "w-sick", "n1", "w", false).await;
    let pdb = pdb("w", "minAvailable", 2);
    assert_eq!(post_json(&c, PDB, &pdb).await.0, 201);
    wait_pdb(&c, "w", "pdb status", |_, v| {
        v.pointer("/status/currentHealthy") == Some(&json!(2))
    })
    .await;
    // Healthy pods are protected; the unready one may go (IfHealthyBudget).
    assert_eq!(
        evict(&c, "w-0", &eviction("policy/v1", "w-0", None))
            .await
            .0,
        429
    );
    let (s, v) = evict(&c, "w-sick", &eviction("policy/v1", "w-sick", None)).await;
    assert_eq!(s, 201, "{v}");
}

fn kubectl(minor: u32, kubeconfig: &std::path::Path, args: &[&str]) -> (bool, String) {
    let bin = format!("/usr/lib/google-cloud-sdk/bin/kubectl.1.{minor}");
    let out = Command::new(&bin)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {bin}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_cordon_uncordon_and_drain() {
    let srv = TestServer::start(&[]).await;
    let c = srv.client().await;
    let kc = srv.kubeconfig();
    let _keep = SimNode::start(&c, "keep", json!({})).await;
    for minor in [27u32, 33] {
        let node = format!("n{minor}");
        let _n = SimNode::start(&c, &node, json!({})).await;
        // cordon / uncordon toggle spec.unschedulable (and its taint).
        let (ok, out) = kubectl(minor, &kc, &["cordon", &node]);
        assert!(ok, "cordon with 1.{minor}: {out}");
        let path = format!("/api/v1/nodes/{node}");
        wait_for(&c, &path, Duration::from_secs(5), "cordoned", |_, v| {
            v.pointer("/spec/unschedulable") == Some(&json!(true))
                && has_taint(v, "node.kubernetes.io/unschedulable", "NoSchedule")
        })
        .await;
        let (ok, out) = kubectl(minor, &kc, &["uncordon", &node]);
        assert!(ok, "uncordon with 1.{minor}: {out}");
        wait_for(&c, &path, Duration::from_secs(5), "uncordoned", |_, v| {
            v.pointer("/spec/unschedulable")
                .is_none_or(|u| u == &json!(false))
                && !has_taint(v, "node.kubernetes.io/unschedulable", "NoSchedule")
        })
        .await;

        // drain: cordon, then evict every pod (no agent: a grace period of
        // 0 deletes them at once).
        let ns = "default";
        let a = format!("a{minor}");
        let b = format!("b{minor}");
        let stay = format!("stay{minor}");
        app_pod(&c, &a, &node, "drain", true).await;
        bound_pod(
            &c,
            ns,
            &b,
            &node,
            json!({"app": "drain"}),
            json!({"volumes": [{"name": "scratch", "emptyDir": {}}]}),
            None,
            true,
        )
        .await;
        app_pod(&c, &stay, "keep", "drain", true).await;
        let (ok, out) = kubectl(
            minor,
            &kc,
            &[
                "drain",
                &node,
                "--ignore-daemonsets",
                "--delete-emptydir-data",
                "--force",
                "--grace-period=0",
                "--timeout=60s",
            ],
        );
        assert!(ok, "drain with 1.{minor}: {out}");
        assert!(out.contains(&format!("evicting pod default/{a}")), "{out}");
        assert!(out.contains("drained"), "{out}");
        for p in [&a, &b] {
            let (s, _) = get_json(&c, &format!("/api/v1/namespaces/{ns}/pods/{p}")).await;
            assert_eq!(s, 404, "{p} evicted");
        }
        let (s, _) = get_json(&c, &format!("/api/v1/namespaces/{ns}/pods/{stay}")).await;
        assert_eq!(s, 200);
        let (_, n) = get_json(&c, &path).await;
        assert_eq!(n["spec"]["unschedulable"], true, "{n}");
    }

    // A budget that allows nothing makes drain retry until it times out.
    let _n = SimNode::start(&c, "guarded", json!({})).await;
    app_pod(&c, "g0", "guarded", "g", true).await;
    let pdb = pdb("g", "maxUnavailable", 0);
    assert_eq!(post_json(&c, PDB, &pdb).await.0, 201);
    wait_pdb(&c, "g", "pdb g", |_, v| {
        v.pointer("/status/observedGeneration") == Some(&json!(1))
    })
    .await;
    let (ok, out) = kubectl(
        33,
        &kc,
        &[
            "drain",
            "guarded",
            "--force",
            "--grace-period=0",
            "--timeout=7s",
        ],
    );
    assert!(!ok, "drain must fail: {out}");
    assert!(
        out.contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{out}"
    );
    let (s, _) = get_json(&c, "/api/v1/namespaces/default/pods/g0").await;
    assert_eq!(s, 200, "guarded pod stays");
}
