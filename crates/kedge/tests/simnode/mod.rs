//! Simulated nodes for tests against `kedge server --disable-agent`: a Node
//! object that says it is Ready and a Lease in `kube-node-lease` that a
//! background task renews, as a node agent would, until it is stopped (a
//! lost node).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{get_json, post_json, raw};

fn micro_now() -> String {
    let now = jiff::Timestamp::now();
    let secs = jiff::Timestamp::from_second(now.as_second()).unwrap_or(now);
    format!(
        "{}.{:06}Z",
        secs.strftime("%Y-%m-%dT%H:%M:%S"),
        now.subsec_microsecond()
    )
}

fn now_s() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

pub async fn patch(client: &kube::Client, path: &str, ct: &str, body: Value) -> (u16, Value) {
    let (s, v, _) = raw(
        client,
        "PATCH",
        path,
        Some(ct),
        serde_json::to_vec(&body).expect("json"),
    )
    .await;
    (s, v)
}

pub async fn merge_patch(client: &kube::Client, path: &str, body: Value) -> (u16, Value) {
    patch(client, path, "application/merge-patch+json", body).await
}

/// The Ready (and pressure) conditions a healthy agent posts.
pub fn healthy_conditions() -> Value {
    let now = now_s();
    let c = |t: &str, s: &str, r: &str| json!({"type": t, "status": s, "reason": r, "message": "", "lastHeartbeatTime": now, "lastTransitionTime": now});
    json!([
        c("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        c("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        c("PIDPressure", "False", "KubeletHasSufficientPID"),
        c("Ready", "True", "KubeletReady"),
    ])
}

/// A node that renews its Lease every second until dropped or `stop`ped.
pub struct SimNode {
    pub name: String,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl SimNode {
    pub async fn start(client: &kube::Client, name: &str, labels: Value) -> SimNode {
        let node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {},
            "status": {
                "conditions": healthy_conditions(),
                "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            },
        });
        let (s, v) = post_json(client, "/api/v1/nodes", &node).await;
        assert_eq!(s, 201, "create node {name}: {v}");
        let (s, v) = merge_patch(
            client,
            &format!("/api/v1/nodes/{name}/status"),
            json!({"status": node["status"].clone()}),
        )
        .await;
        assert_eq!(s, 200, "node status {name}: {v}");
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro_now()},
        });
        let (s, v) = post_json(
            client,
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            &lease,
        )
        .await;
        assert_eq!(s, 201, "create lease {name}: {v}");
        let c = client.clone();
        let n = name.to_string();
        let renewer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _ = merge_patch(
                    &c,
                    &format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{n}"),
                    json!({"spec": {"renewTime": micro_now()}}),
                )
                .await;
            }
        });
        SimNode {
            name: name.to_string(),
            renewer: Some(renewer),
        }
    }

    /// Stop renewing the Lease: the node is lost.
    pub fn stop(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
    }
}

impl Drop for SimNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A pod bound to `node` with the given extra spec, then given an IP and
/// made Running and (if `ready`) Ready, as an agent would report it.
#[allow(clippy::too_many_arguments)]
pub async fn bound_pod(
    client: &kube::Client,
    ns: &str,
    name: &str,
    node: &str,
    labels: Value,
    spec_extra: Value,
    ip: Option<&str>,
    ready: bool,
) -> Value {
    let mut spec = json!({
        "nodeName": node,
        "containers": [{"name": "c", "image": "kedge.local/busybox:1.36",
                        "ports": [{"name": "http", "containerPort": 8080}]}],
    });
    if let (Some(s), Value::Object(extra)) = (spec.as_object_mut(), spec_extra) {
        for (k, v) in extra {
            s.insert(k, v);
        }
    }
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    });
    let (s, v) = post_json(client, &format!("/api/v1/namespaces/{ns}/pods"), &pod).await;
    assert_eq!(s, 201, "create pod {name}: {v}");
    set_pod_status(client, ns, name, ip, ready).await
}

pub async fn set_pod_status(
    client: &kube::Client,
    ns: &str,
    name: &str,
    ip: Option<&str>,
    ready: bool,
) -> Value {
    let now = now_s();
    let r = if ready { "True" } else { "False" };
    let mut status = json!({
        "phase": "Running",
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": r, "lastTransitionTime": now},
            {"type": "Ready", "status": r, "lastTransitionTime": now},
        ],
    });
    if let Some(ip) = ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    let (s, v) = merge_patch(
        client,
        &format!("/api/v1/namespaces/{ns}/pods/{name}/status"),
        json!({"status": status}),
    )
    .await;
    assert_eq!(s, 200, "pod status {name}: {v}");
    v
}

/// Poll `path` until `pred` holds; the last object, or a panic after `within`.
pub async fn wait_for(
    client: &kube::Client,
    path: &str,
    within: Duration,
    what: &str,
    pred: impl Fn(u16, &Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (s, v) = get_json(client, path).await;
        if pred(s, &v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {within:?}; last ({s}): {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn has_taint(node: &Value, key: &str, effect: &str) -> bool {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .is_some_and(|ts| ts.iter().any(|t| t["key"] == key && t["effect"] == effect))
}

/// A client that hands 429s back instead of retrying them (kube's default
/// client retries 429, 503 and 504 with backoff for minutes).
pub async fn no_retry_client(kubeconfig: &std::path::Path) -> kube::Client {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let kc = Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    cfg.default_retry = false;
    kube::Client::try_from(cfg).expect("client")
}
