//! Garbage collection, namespace termination and namespace defaults.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

async fn wait_for<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn cm(name: &str, owners: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "ownerReferences": owners}})
}

fn owner_ref(obj: &Value, block: bool) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"], "blockOwnerDeletion": block})
}

async fn exists(c: &kube::Client, path: &str) -> bool {
    get_json(c, path).await.0 == 200
}

const CM: &str = "/api/v1/namespaces/default/configmaps";

async fn delete_with(c: &kube::Client, name: &str, policy: &str) -> (u16, Value) {
    let body = json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": policy});
    let (s, v, _) = raw(
        c,
        "DELETE",
        &format!("{CM}/{name}"),
        Some("application/json"),
        serde_json::to_vec(&body).expect("json"),
    )
    .await;
    (s, v)
}

#[tokio::test]
async fn garbage_collection_background_foreground_orphan_and_multiple_owners() {
    let srv = TestServer::start(&[]).await;
    let c = srv.client().await;

    // Background: the owner goes at once, its dependent shortly after.
    let (_, owner) = post_json(&c, CM, &cm("bg-owner", json!([]))).await;
    let (s, _) = post_json(&c, CM, &cm("bg-dep", json!([owner_ref(&owner, false)]))).await;
    assert_eq!(s, 201);
    let (s, _) = delete_with(&c, "bg-owner", "Background").await;
    assert_eq!(s, 200);
    assert!(!exists(&c, &format!("{CM}/bg-owner")).await);
    wait_for("background dependent deleted", || async {
        !exists(&c, &format!("{CM}/bg-dep")).await
    })
    .await;

    // Foreground: the owner waits (with the foregroundDeletion finalizer) for
    // its blocking dependents, then goes.
    let (_, owner) = post_json(&c, CM, &cm("fg-owner", json!([]))).await;
    let mut dep = cm("fg-dep", json!([owner_ref(&owner, true)]));
    dep["metadata"]["finalizers"] = json!(["example.com/slow"]);
    post_json(&c, CM, &dep).await;
    let (s, v) = delete_with(&c, "fg-owner", "Foreground").await;
    assert_eq!(s, 200);
    assert!(
        v["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.contains(&json!("foregroundDeletion"))),
        "{v}"
    );
    wait_for("dependent marked for deletion", || async {
        get_json(&c, &format!("{CM}/fg-dep")).await.1["metadata"]["deletionTimestamp"].is_string()
    })
    .await;
    // Held by the dependent's finalizer, the owner is still there.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        exists(&c, &format!("{CM}/fg-owner")).await,
        "owner must wait for blocking dependents"
    );
    let (_, mut d) = get_json(&c, &format!("{CM}/fg-dep")).await;
    d["metadata"]["finalizers"] = json!([]);
    let (s, _) = put_json(&c, &format!("{CM}/fg-dep"), &d).await;
    assert_eq!(s, 200);
    wait_for("foreground owner deleted", || async {
        !exists(&c, &format!("{CM}/fg-owner")).await
    })
    .await;

    // Orphan: the dependent survives without its owner reference.
    let (_, owner) = post_json(&c, CM, &cm("or-owner", json!([]))).await;
    post_json(&c, CM, &cm("or-dep", json!([owner_ref(&owner, false)]))).await;
    let (s, _) = delete_with(&c, "or-owner", "Orphan").await;
    assert_eq!(s, 200);
    wait_for("orphaning owner deleted", || async {
        !exists(&c, &format!("{CM}/or-owner")).await
    })
    .await;
    let (s, d) = get_json(&c, &format!("{CM}/or-dep")).await;
    assert_eq!(s, 200);
    assert!(d["metadata"].get("ownerReferences").is_none(), "{d}");

    // Several owners: the dependent lives until the last one goes.
    let (_, a) = post_json(&c, CM, &cm("m-a", json!([]))).await;
    let (_, b) = post_json(&c, CM, &cm("m-b", json!([]))).await;
    post_json(
        &c,
        CM,
        &cm("m-dep", json!([owner_ref(&a, false), owner_ref(&b, false)])),
    )
    .await;
    delete_with(&c, "m-a", "Background").await;
    wait_for("reference to the deleted owner dropped", || async {
        get_json(&c, &format!("{CM}/m-dep")).await.1["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|r| r.len() == 1)
    })
    .await;
    assert!(exists(&c, &format!("{CM}/m-dep")).await);
    delete_with(&c, "m-b", "Background").await;
    wait_for("last owner gone, dependent deleted", || async {
        !exists(&c, &format!("{CM}/m-dep")).await
    })
    .await;
}

#[tokio::test]
async fn namespace_terminates_then_goes_and_gets_defaults() {
    let srv = TestServer::start(&[]).await;
    let c = srv.client().await;
    let (s, _) = post_json(
        &c,
        "/api/v1/namespaces",
        &json!({"metadata": {"name": "doomed"}}),
    )
    .await;
    assert_eq!(s, 201);
    wait_for("default ServiceAccount", || async {
        exists(&c, "/api/v1/namespaces/doomed/serviceaccounts/default").await
    })
    .await;
    wait_for("kube-root-ca.crt", || async {
        exists(&c, "/api/v1/namespaces/doomed/configmaps/kube-root-ca.crt").await
    })
    .await;
    // A deleted default ServiceAccount comes back.
    raw(
        &c,
        "DELETE",
        "/api/v1/namespaces/doomed/serviceaccounts/default",
        None,
        vec![],
    )
    .await;
    wait_for("default ServiceAccount restored", || async {
        exists(&c, "/api/v1/namespaces/doomed/serviceaccounts/default").await
    })
    .await;

    let mut held = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "finalizers": ["example.com/hold"]}});
    let (s, _) = post_json(&c, "/api/v1/namespaces/doomed/configmaps", &held).await;
    assert_eq!(s, 201);
    let (s, v, _) = raw(&c, "DELETE", "/api/v1/namespaces/doomed", None, vec![]).await;
    assert_eq!(s, 200);
    assert_eq!(v["status"]["phase"], "Terminating", "{v}");
    // No new content in a terminating namespace: 403.
    let (s, v) = post_json(
        &c,
        "/api/v1/namespaces/doomed/configmaps",
        &json!({"metadata": {"name": "late"}}),
    )
    .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["reason"], "Forbidden");
    wait_for("namespace reports remaining finalizers", || async {
        let (_, ns) = get_json(&c, "/api/v1/namespaces/doomed").await;
        ns["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "NamespaceFinalizersRemaining" && c["status"] == "True")
        })
    })
    .await;
    assert!(!exists(&c, "/api/v1/namespaces/doomed/serviceaccounts/default").await);
    let (_, h) = get_json(&c, "/api/v1/namespaces/doomed/configmaps/held").await;
    held = h;
    held["metadata"]["finalizers"] = json!([]);
    let (s, _) = put_json(&c, "/api/v1/namespaces/doomed/configmaps/held", &held).await;
    assert_eq!(s, 200);
    wait_for("namespace gone", || async {
        !exists(&c, "/api/v1/namespaces/doomed").await
    })
    .await;
    // Protected namespaces cannot be deleted.
    let (s, v, _) = raw(&c, "DELETE", "/api/v1/namespaces/kube-system", None, vec![]).await;
    assert_eq!(s, 403, "{v}");
}
