//! The Priority admission plugin: pods get their class's priority and
//! preemption policy, unknown classes and hand-set priorities are refused
//! with upstream's messages, and the system classes exist from the start.

mod common;

use common::{get_json, post_json, TestServer};
use serde_json::json;

fn pod(name: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

#[tokio::test]
async fn pods_get_their_priority_class() {
    let s = TestServer::start(&[]).await;
    let c = s.client().await;
    let pods = "/api/v1/namespaces/default/pods";

    let (st, sys) = get_json(
        &c,
        "/apis/scheduling.k8s.io/v1/priorityclasses/system-node-critical",
    )
    .await;
    assert_eq!(st, 200, "{sys}");
    assert_eq!(sys["value"], 2_000_001_000);

    // No class, no default class: priority 0.
    let (st, p) = post_json(&c, pods, &pod("plain", json!({}))).await;
    assert_eq!(st, 201, "{p}");
    assert_eq!(p["spec"]["priority"], 0);
    assert_eq!(p["spec"]["preemptionPolicy"], "PreemptLowerPriority");

    let (st, _) = post_json(
        &c,
        "/apis/scheduling.k8s.io/v1/priorityclasses",
        &json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "gold"}, "value": 1000, "preemptionPolicy": "Never"}),
    )
    .await;
    assert_eq!(st, 201);
    let (st, p) = post_json(&c, pods, &pod("vip", json!({"priorityClassName": "gold"}))).await;
    assert_eq!(st, 201, "{p}");
    assert_eq!(p["spec"]["priority"], 1000);
    assert_eq!(p["spec"]["preemptionPolicy"], "Never");

    let (st, e) = post_json(&c, pods, &pod("lost", json!({"priorityClassName": "nope"}))).await;
    assert_eq!(st, 403, "{e}");
    assert_eq!(e["reason"], "Forbidden");
    assert_eq!(
        e["message"],
        "pods \"lost\" is forbidden: no PriorityClass with name nope was found"
    );

    let (st, e) = post_json(
        &c,
        pods,
        &pod("cheat", json!({"priorityClassName": "gold", "priority": 5})),
    )
    .await;
    assert_eq!(st, 403, "{e}");
    assert_eq!(
        e["message"],
        "pods \"cheat\" is forbidden: the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name"
    );

    // A global default class applies to pods without a class.
    let (st, _) = post_json(
        &c,
        "/apis/scheduling.k8s.io/v1/priorityclasses",
        &json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "normal"}, "value": 10, "globalDefault": true}),
    )
    .await;
    assert_eq!(st, 201);
    let (st, p) = post_json(&c, pods, &pod("defaulted", json!({}))).await;
    assert_eq!(st, 201, "{p}");
    assert_eq!(p["spec"]["priority"], 10);
    assert_eq!(p["spec"]["priorityClassName"], "normal");
}
