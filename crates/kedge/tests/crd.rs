//! CustomResourceDefinitions: served within a second, validated, pruned,
//! defaulted, printed, scaled, and cleaned up when the CRD goes.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [
                {"name": "v1", "served": true, "storage": true,
                 "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size"}},
                 "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                 "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                     "spec": {"type": "object", "required": ["size"], "properties": {
                         "size": {"type": "integer", "minimum": 0},
                         "mode": {"type": "string", "enum": ["fast", "slow"], "default": "slow"},
                         "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                     "status": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}},
                {"name": "v1beta1", "served": true, "storage": false,
                 "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}
            ]
        }
    })
}

const W: &str = "/apis/example.com/v1/namespaces/default/widgets";

#[tokio::test]
async fn custom_resources_end_to_end() {
    let srv = TestServer::start(&[]).await;
    let c = srv.client().await;
    let (s, v) = post_json(
        &c,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        &crd(),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let start = Instant::now();
    loop {
        let (s, _) = get_json(&c, "/apis/example.com/v1").await;
        if s == 200 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "CRD not served within a second"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, crd_now) = get_json(
        &c,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
    )
    .await;
    let conds = crd_now["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for t in ["Established", "NamesAccepted"] {
        assert!(
            conds
                .iter()
                .any(|c| c["type"] == t && c["status"] == "True"),
            "{t}: {crd_now}"
        );
    }

    // Invalid objects: 422 with field paths, nothing stored.
    let bad = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "bad"}, "spec": {"size": -1, "mode": "warp"}});
    let (s, v) = post_json(&c, W, &bad).await;
    assert_eq!(s, 422, "{v}");
    let fields: Vec<&str> = v["details"]["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect();
    assert!(
        fields.contains(&"spec.size") && fields.contains(&"spec.mode"),
        "{v}"
    );
    let (s, _) = post_json(&c, W, &json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "bad2"}, "spec": {}})).await;
    assert_eq!(s, 422);

    // Pruning and defaulting.
    let w = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"},
        "spec": {"size": 2, "unknown": true, "extra": {"kept": 1}}, "status": {"size": 7}});
    let (s, v) = post_json(&c, W, &w).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["spec"]["mode"], "slow", "{v}");
    assert!(v["spec"].get("unknown").is_none(), "{v}");
    assert_eq!(v["spec"]["extra"]["kept"], 1);
    assert!(
        v.get("status").is_none(),
        "status is set through /status only: {v}"
    );
    assert_eq!(v["metadata"]["generation"], 1);

    // Status subresource and generation.
    let mut st = v.clone();
    st["status"] = json!({"size": 2});
    let (s, v2) = put_json(&c, &format!("{W}/w1/status"), &st).await;
    assert_eq!(s, 200, "{v2}");
    assert_eq!(v2["status"]["size"], 2);
    assert_eq!(v2["metadata"]["generation"], 1);

    // Scale subresource.
    let (s, scale) = get_json(&c, &format!("{W}/w1/scale")).await;
    assert_eq!(s, 200);
    assert_eq!(scale["spec"]["replicas"], 2);
    assert_eq!(scale["status"]["replicas"], 2);
    let (s, _, _) = raw(
        &c,
        "PATCH",
        &format!("{W}/w1/scale"),
        Some("application/merge-patch+json"),
        br#"{"spec":{"replicas":5}}"#.to_vec(),
    )
    .await;
    assert_eq!(s, 200);
    let (_, now) = get_json(&c, &format!("{W}/w1")).await;
    assert_eq!(now["spec"]["size"], 5);
    assert_eq!(now["metadata"]["generation"], 2);

    // Printer columns.
    let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
    let (_, t, _) = raw_with(&c, "GET", W, None, Some(accept), vec![]).await;
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .expect("cols")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(cols, vec!["Name", "Size"]);
    assert_eq!(t["rows"][0]["cells"], json!(["w1", 5]));

    // The other served version, conversion None.
    let (s, beta) = get_json(
        &c,
        "/apis/example.com/v1beta1/namespaces/default/widgets/w1",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(beta["apiVersion"], "example.com/v1beta1");
    assert_eq!(beta["spec"]["size"], 5);

    // Strategic merge patch is not for custom resources: 415, as upstream.
    let (s, _, _) = raw(
        &c,
        "PATCH",
        &format!("{W}/w1"),
        Some("application/strategic-merge-patch+json"),
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(s, 415);

    // Deleting the CRD removes its objects and stops serving them.
    let (s, _, _) = raw(
        &c,
        "DELETE",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
        None,
        vec![],
    )
    .await;
    assert_eq!(s, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, _) = get_json(
            &c,
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
        )
        .await;
        if s == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "CRD not deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, _) = get_json(&c, W).await;
    assert_eq!(s, 404);
    let (_, all) = get_json(&c, "/apis").await;
    assert!(!all.to_string().contains("example.com"), "{all}");
}

#[tokio::test]
async fn non_structural_crd_is_rejected() {
    let srv = TestServer::start(&[]).await;
    let c = srv.client().await;
    let mut bad = crd();
    bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] =
        json!({"properties": {"a": {"type": "string"}}});
    let (s, v) = post_json(
        &c,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        &bad,
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains("spec.versions[0].schema.openAPIV3Schema.properties[spec].type"),
        "{v}"
    );
    let mut two = crd();
    two["spec"]["versions"][1]["storage"] = json!(true);
    let (s, _) = post_json(
        &c,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        &two,
    )
    .await;
    assert_eq!(s, 422);
}
