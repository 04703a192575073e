//! Endpoints and EndpointSlices follow Services and pod readiness, against
//! `kedge server --disable-agent` with a simulated node.

mod common;
mod simnode;

use std::time::Duration;

use common::{get_json, post_json, raw, TestServer};
use serde_json::{json, Value};
use simnode::{bound_pod, set_pod_status, wait_for, SimNode};

const EP: &str = "/api/v1/namespaces/default/endpoints";
const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";

fn ips(subsets: &Value, field: &str) -> Vec<String> {
    let mut v: Vec<String> = subsets
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s[field].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["ip"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

fn slice_endpoints(list: &Value) -> Vec<Value> {
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_and_slices_follow_pod_readiness() {
    let srv = TestServer::start(&[]).await;
    let c = srv.client().await;
    let _n = SimNode::start(&c, "n1", json!({"topology.kubernetes.io/zone": "z1"})).await;
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "labels": {"tier": "front"}},
        "spec": {"selector": {"app": "web"}, "ports": [
            {"name": "http", "port": 80, "targetPort": "http"},
            {"name": "raw", "port": 81, "targetPort": 9090}]}});
    let (s, v) = post_json(&c, "/api/v1/namespaces/default/services", &svc).await;
    assert_eq!(s, 201, "{v}");
    let l = json!({"app": "web"});
    let host = json!({"hostname": "a", "subdomain": "web"});
    bound_pod(
        &c,
        "default",
        "a",
        "n1",
        l.clone(),
        host,
        Some("10.42.0.5"),
        true,
    )
    .await;
    bound_pod(
        &c,
        "default",
        "b",
        "n1",
        l.clone(),
        json!({}),
        Some("10.42.0.6"),
        false,
    )
    .await;
    // No IP yet: not an endpoint at all.
    bound_pod(&c, "default", "c", "n1", l.clone(), json!({}), None, true).await;

    let ep = wait_for(
        &c,
        &format!("{EP}/web"),
        Duration::from_secs(10),
        "endpoints",
        |s, v| {
            s == 200
                && ips(&v["subsets"], "addresses") == ["10.42.0.5"]
                && ips(&v["subsets"], "notReadyAddresses") == ["10.42.0.6"]
        },
    )
    .await;
    let subset = &ep["subsets"][0];
    let a = &subset["addresses"][0];
    assert_eq!(a["hostname"], "a", "{ep}");
    assert_eq!(a["nodeName"], "n1");
    assert_eq!(
        (
            a["targetRef"]["kind"].as_str(),
            a["targetRef"]["name"].as_str()
        ),
        (Some("Pod"), Some("a"))
    );
    let mut ports: Vec<i64> = subset["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["port"].as_i64())
        .collect();
    ports.sort();
    assert_eq!(
        ports,
        vec![8080, 9090],
        "named port resolved in the pod: {ep}"
    );
    assert_eq!(ep["metadata"]["labels"]["tier"], "front");

    let sel = "?labelSelector=kubernetes.io%2Fservice-name%3Dweb";
    let slices = wait_for(
        &c,
        &format!("{SLICES}{sel}"),
        Duration::from_secs(10),
        "slices",
        |_, v| slice_endpoints(v).len() == 2,
    )
    .await;
    let s0 = &slices["items"][0];
    assert_eq!(s0["addressType"], "IPv4");
    assert_eq!(
        s0["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(s0["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(s0["metadata"]["ownerReferences"][0]["controller"], true);
    let eps = slice_endpoints(&slices);
    let b = eps
        .iter()
        .find(|e| e["addresses"][0] == "10.42.0.6")
        .expect("b");
    assert_eq!(
        b["conditions"],
        json!({"ready": false, "serving": false, "terminating": false})
    );
    let a = eps
        .iter()
        .find(|e| e["addresses"][0] == "10.42.0.5")
        .expect("a");
    assert_eq!(a["conditions"]["ready"], true);
    assert_eq!(a["zone"], "z1");
    assert_eq!(a["nodeName"], "n1");

    // b becomes Ready.
    set_pod_status(&c, "default", "b", Some("10.42.0.6"), true).await;
    wait_for(
        &c,
        &format!("{EP}/web"),
        Duration::from_secs(10),
        "b ready",
        |_, v| {
            ips(&v["subsets"], "addresses") == ["10.42.0.5", "10.42.0.6"]
                && ips(&v["subsets"], "notReadyAddresses").is_empty()
        },
    )
    .await;

    // a terminates: out of Endpoints, terminating in slices.
    let (s, _, _) = raw(
        &c,
        "DELETE",
        "/api/v1/namespaces/default/pods/a",
        None,
        vec![],
    )
    .await;
    assert_eq!(s, 200);
    wait_for(
        &c,
        &format!("{EP}/web"),
        Duration::from_secs(10),
        "a gone",
        |_, v| ips(&v["subsets"], "addresses") == ["10.42.0.6"],
    )
    .await;
    wait_for(
        &c,
        &format!("{SLICES}{sel}"),
        Duration::from_secs(10),
        "a terminating",
        |_, v| {
            slice_endpoints(v).iter().any(|e| {
                e["addresses"][0] == "10.42.0.5"
                    && e["conditions"]
                        == json!({"ready": false, "serving": true, "terminating": true})
            })
        },
    )
    .await;

    // Services without a selector are not ours: hand-made Endpoints stay.
    let manual = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "manual"},
        "spec": {"ports": [{"port": 5432}]}});
    assert_eq!(
        post_json(&c, "/api/v1/namespaces/default/services", &manual)
            .await
            .0,
        201
    );
    let mep = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "manual"},
        "subsets": [{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 5432}]}]});
    assert_eq!(post_json(&c, EP, &mep).await.0, 201);
    // The API server's own `kubernetes` Endpoints are left alone too.
    let (_, k) = get_json(&c, "/api/v1/namespaces/default/endpoints/kubernetes").await;

    // Deleting the Service removes its Endpoints and slices.
    let (s, _, _) = raw(
        &c,
        "DELETE",
        "/api/v1/namespaces/default/services/web",
        None,
        vec![],
    )
    .await;
    assert_eq!(s, 200);
    wait_for(
        &c,
        &format!("{EP}/web"),
        Duration::from_secs(10),
        "endpoints deleted",
        |s, _| s == 404,
    )
    .await;
    wait_for(
        &c,
        &format!("{SLICES}{sel}"),
        Duration::from_secs(10),
        "slices deleted",
        |_, v| v["items"].as_array().is_some_and(Vec::is_empty),
    )
    .await;
    let (s, m) = get_json(&c, &format!("{EP}/manual")).await;
    assert_eq!(s, 200);
    assert_eq!(ips(&m["subsets"], "addresses"), ["192.0.2.1"], "{m}");
    let (_, k2) = get_json(&c, "/api/v1/namespaces/default/endpoints/kubernetes").await;
    assert_eq!(k["subsets"], k2["subsets"]);
    assert!(
        k2["metadata"]["labels"]
            .get("endpoints.kubernetes.io/managed-by")
            .is_none(),
        "{k2}"
    );
    let (_, none) = get_json(
        &c,
        &format!("{SLICES}?labelSelector=kubernetes.io%2Fservice-name%3Dmanual"),
    )
    .await;
    assert_eq!(none["items"].as_array().map(Vec::len), Some(0), "{none}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slices_hold_at_most_one_hundred_endpoints_and_empty_services_keep_a_placeholder() {
    let srv = TestServer::start(&[]).await;
    let c = srv.client().await;
    let _n = SimNode::start(&c, "n1", json!({})).await;
    let svc = |name: &str, app: &str| {
        json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name}, "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 8080}]}})
    };
    assert_eq!(
        post_json(
            &c,
            "/api/v1/namespaces/default/services",
            &svc("big", "big")
        )
        .await
        .0,
        201
    );
    assert_eq!(
        post_json(
            &c,
            "/api/v1/namespaces/default/services",
            &svc("empty", "nobody")
        )
        .await
        .0,
        201
    );
    for i in 0..130 {
        let ip = format!("10.42.{}.{}", 1 + i / 200, 1 + i % 200);
        bound_pod(
            &c,
            "default",
            &format!("big-{i}"),
            "n1",
            json!({"app": "big"}),
            json!({}),
            Some(&ip),
            true,
        )
        .await;
    }
    let list = wait_for(
        &c,
        &format!("{SLICES}?labelSelector=kubernetes.io%2Fservice-name%3Dbig"),
        Duration::from_secs(20),
        "130 endpoints in slices",
        |_, v| slice_endpoints(v).len() == 130,
    )
    .await;
    let sizes: Vec<usize> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["endpoints"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(sizes.len(), 2, "{sizes:?}");
    assert!(sizes.iter().all(|n| *n <= 100), "{sizes:?}");
    let ep = wait_for(
        &c,
        &format!("{EP}/big"),
        Duration::from_secs(10),
        "endpoints",
        |_, v| ips(&v["subsets"], "addresses").len() == 130,
    )
    .await;
    assert_eq!(ep["subsets"].as_array().map(Vec::len), Some(1));
    let empty = wait_for(
        &c,
        &format!("{SLICES}?labelSelector=kubernetes.io%2Fservice-name%3Dempty"),
        Duration::from_secs(10),
        "placeholder slice",
        |_, v| v["items"].as_array().map(Vec::len) == Some(1),
    )
    .await;
    assert!(slice_endpoints(&empty).is_empty());
    let (s, e) = get_json(&c, &format!("{EP}/empty")).await;
    assert_eq!(s, 200, "empty Services get empty Endpoints");
    assert!(
        e.get("subsets")
            .is_none_or(|s| s.as_array().is_none_or(Vec::is_empty)),
        "{e}"
    );
}
