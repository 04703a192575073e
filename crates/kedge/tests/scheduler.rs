//! The scheduler against a real `kedge server --disable-agent` with
//! simulated nodes (Node objects whose Leases this test renews, no
//! containers), and once with the real node agent.

mod common;

use std::time::{Duration, Instant};

use common::{get_json, post_json, raw, TestServer};
use serde_json::{json, Value};

const NS: &str = "default";

/// A simulated node: labels, taints, allocatable, Ready, and a Lease kept
/// renewed until the returned task is dropped.
struct SimNode {
    renew: tokio::task::JoinHandle<()>,
}

impl Drop for SimNode {
    fn drop(&mut self) {
        self.renew.abort();
    }
}

fn now_s() -> String {
    jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", jiff::Timestamp::now()).expect("time")
}

fn now_micro() -> String {
    jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%S%.6fZ", jiff::Timestamp::now()).expect("time")
}

async fn merge_patch(c: &kube::Client, path: &str, body: &Value) -> (u16, Value) {
    let (s, v, _) = raw(
        c,
        "PATCH",
        path,
        Some("application/merge-patch+json"),
        serde_json::to_vec(body).expect("json"),
    )
    .await;
    (s, v)
}

async fn add_node(
    c: &kube::Client,
    name: &str,
    labels: Value,
    spec: Value,
    allocatable: Value,
) -> SimNode {
    let mut l = labels;
    l["kubernetes.io/hostname"] = json!(name);
    let status = json!({
        "capacity": allocatable,
        "allocatable": allocatable,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "simulated",
                        "lastHeartbeatTime": now_s(), "lastTransitionTime": now_s()}],
    });
    let (s, v) = post_json(
        c,
        "/api/v1/nodes",
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": l}, "spec": spec, "status": status}),
    )
    .await;
    assert_eq!(s, 201, "create node {name}: {v}");
    let (s, v) = merge_patch(
        c,
        &format!("/api/v1/nodes/{name}/status"),
        &json!({"status": status}),
    )
    .await;
    assert_eq!(s, 200, "node status {name}: {v}");
    let (s, v) = post_json(
        c,
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
        &json!({"metadata": {"name": name}, "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now_micro()}}),
    )
    .await;
    assert!(s == 201 || s == 409, "lease {name}: {v}");
    let client = c.clone();
    let lease = format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}");
    let renew = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let _ = merge_patch(
                &client,
                &lease,
                &json!({"spec": {"renewTime": now_micro()}}),
            )
            .await;
        }
    });
    SimNode { renew }
}

fn alloc(cpu: &str, mem: &str) -> Value {
    json!({"cpu": cpu, "memory": mem, "pods": "110", "ephemeral-storage": "10Gi"})
}

async fn create_pod(c: &kube::Client, pod: Value) {
    let name = pod["metadata"]["name"].clone();
    let (s, v) = post_json(c, &format!("/api/v1/namespaces/{NS}/pods"), &pod).await;
    assert_eq!(s, 201, "create pod {name}: {v}");
}

fn pod(name: &str, spec_extra: Value) -> Value {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
    if let Value::Object(m) = spec_extra {
        for (k, v) in m {
            spec[k] = v;
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}}, "spec": spec})
}

fn with_requests(mut p: Value, requests: Value) -> Value {
    p["spec"]["containers"][0]["resources"] =
        json!({"requests": requests.clone(), "limits": requests});
    p
}

async fn get_pod(c: &kube::Client, name: &str) -> Value {
    get_json(c, &format!("/api/v1/namespaces/{NS}/pods/{name}"))
        .await
        .1
}

async fn wait_pod(
    s: &TestServer,
    c: &kube::Client,
    name: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let p = get_pod(c, name).await;
        if pred(&p) {
            return p;
        }
        if Instant::now() > deadline {
            let log = s.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "pod {name}: {what} not reached in {timeout:?}\n{p:#}\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_bound(s: &TestServer, c: &kube::Client, name: &str) -> String {
    let p = wait_pod(s, c, name, Duration::from_secs(30), "bound", |p| {
        p["spec"]["nodeName"].is_string()
    })
    .await;
    p["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn scheduled_condition(p: &Value) -> Value {
    p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "PodScheduled")
        .cloned()
        .unwrap_or(Value::Null)
}

async fn wait_unschedulable(s: &TestServer, c: &kube::Client, name: &str) -> String {
    let p = wait_pod(
        s,
        c,
        name,
        Duration::from_secs(30),
        "PodScheduled=False",
        |p| scheduled_condition(p)["status"] == "False",
    )
    .await;
    let cond = scheduled_condition(&p);
    assert_eq!(cond["reason"], "Unschedulable", "{cond}");
    cond["message"].as_str().unwrap_or_default().to_string()
}

async fn events(c: &kube::Client, pod: &str) -> Vec<Value> {
    let (_, list) = get_json(
        c,
        &format!("/api/v1/namespaces/{NS}/events?fieldSelector=involvedObject.name={pod}"),
    )
    .await;
    list["items"].as_array().cloned().unwrap_or_default()
}

async fn wait_event(c: &kube::Client, pod: &str, reason: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(e) = events(c, pod)
            .await
            .into_iter()
            .find(|e| e["reason"] == reason)
        {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "no {reason} event for {pod}: {:#?}",
            events(c, pod).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn unschedulable_message_event_and_requeue_when_a_node_appears() {
    let s = TestServer::start(&[]).await;
    let c = s.client().await;
    let mut gpu_alloc = alloc("4", "8Gi");
    gpu_alloc["nvidia.com/gpu"] = json!("1");
    let _n1 = add_node(&c, "gpu-1", json!({"accel": "gpu"}), json!({}), gpu_alloc).await;
    let _n2 = add_node(
        &c,
        "cpu-1",
        json!({"accel": "none"}),
        json!({}),
        alloc("4", "8Gi"),
    )
    .await;
    let _n3 = add_node(
        &c,
        "cpu-2",
        json!({"accel": "none"}),
        json!({}),
        alloc("4", "8Gi"),
    )
    .await;
    let mut p = pod("trainer", json!({"nodeSelector": {"accel": "gpu"}}));
    p["spec"]["containers"][0]["resources"] = json!({"limits": {"nvidia.com/gpu": "2"}});
    create_pod(&c, p).await;
    let msg = wait_unschedulable(&s, &c, "trainer").await;
    assert_eq!(
        msg,
        "0/3 nodes are available: 1 Insufficient nvidia.com/gpu, 2 node(s) didn't match Pod's node affinity/selector. \
         preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."
    );
    let ev = wait_event(&c, "trainer", "FailedScheduling").await;
    assert_eq!(ev["type"], "Warning");
    assert_eq!(ev["message"], msg);
    assert_eq!(ev["reportingComponent"], "default-scheduler");
    assert_eq!(ev["source"]["component"], "default-scheduler");
    // The same event through events.k8s.io names its controller.
    let (st, list) = get_json(
        &c,
        &format!("/apis/events.k8s.io/v1/namespaces/{NS}/events"),
    )
    .await;
    assert_eq!(st, 200);
    assert!(
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["reason"] == "FailedScheduling"
                && e["reportingController"] == "default-scheduler"
                && e["regarding"]["name"] == "trainer"),
        "{list:#}"
    );
    // A node that fits appears: the pod is retried at once (well within
    // the 10 s backoff ceiling plus the 5 minute periodic flush).
    let mut big = alloc("8", "16Gi");
    big["nvidia.com/gpu"] = json!("4");
    let t0 = Instant::now();
    let _n4 = add_node(&c, "gpu-2", json!({"accel": "gpu"}), json!({}), big).await;
    assert_eq!(wait_bound(&s, &c, "trainer").await, "gpu-2");
    assert!(
        t0.elapsed() < Duration::from_secs(12),
        "requeue took {:?}",
        t0.elapsed()
    );
    let p = get_pod(&c, "trainer").await;
    assert_eq!(scheduled_condition(&p)["status"], "True");
    let ev = wait_event(&c, "trainer", "Scheduled").await;
    assert_eq!(
        ev["message"],
        "Successfully assigned default/trainer to gpu-2"
    );
    assert_eq!(ev["type"], "Normal");
    // Pods for another scheduler are left alone.
    let mut other = pod("other", json!({"schedulerName": "my-scheduler"}));
    other["metadata"]["name"] = json!("other");
    create_pod(&c, other).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let p = get_pod(&c, "other").await;
    assert!(p["spec"]["nodeName"].is_null(), "{p:#}");
    assert!(scheduled_condition(&p).is_null(), "{p:#}");
}

#[tokio::test]
async fn filters_taints_cordon_affinity_ports_and_resources() {
    let s = TestServer::start(&[]).await;
    let c = s.client().await;
    let _a = add_node(
        &c,
        "tainted",
        json!({"zone": "z1"}),
        json!({"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}),
        alloc("2", "4Gi"),
    )
    .await;
    let _b = add_node(
        &c,
        "cordoned",
        json!({"zone": "z1"}),
        json!({"unschedulable": true}),
        alloc("2", "4Gi"),
    )
    .await;
    let _d = add_node(
        &c,
        "open",
        json!({"zone": "z2", "disk": "ssd"}),
        json!({}),
        alloc("2", "4Gi"),
    )
    .await;

    // Only the open node takes a plain pod.
    create_pod(&c, pod("plain", json!({}))).await;
    assert_eq!(wait_bound(&s, &c, "plain").await, "open");
    // A toleration lets a pod onto the tainted node; required node
    // affinity (matchFields) picks it.
    create_pod(
        &c,
        pod(
            "tolerant",
            json!({
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["tainted"]}]}
                ]}}},
            }),
        ),
    )
    .await;
    assert_eq!(wait_bound(&s, &c, "tolerant").await, "tainted");
    // A pod that wants disk=hdd: each node says why not.
    create_pod(
        &c,
        pod(
            "picky",
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]}
            ]}}}}),
        ),
    )
    .await;
    assert_eq!(
        wait_unschedulable(&s, &c, "picky").await,
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
         1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) were unschedulable. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
    // Host ports: the second pod on the only open node conflicts.
    let hp = |name: &str| {
        let mut p = pod(name, json!({}));
        p["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80, "hostPort": 8080}]);
        p
    };
    create_pod(&c, hp("web-1")).await;
    assert_eq!(wait_bound(&s, &c, "web-1").await, "open");
    create_pod(&c, hp("web-2")).await;
    let msg = wait_unschedulable(&s, &c, "web-2").await;
    assert!(
        msg.starts_with("0/3 nodes are available: 1 node(s) didn't have free ports for the requested pod ports, "),
        "{msg}"
    );
    // Resources: 1.5 cpu is asked for, "open" has 2 with nothing requested;
    // then a second one does not fit (cpu and memory both short).
    create_pod(
        &c,
        with_requests(
            pod("big-1", json!({})),
            json!({"cpu": "1500m", "memory": "3Gi"}),
        ),
    )
    .await;
    assert_eq!(wait_bound(&s, &c, "big-1").await, "open");
    create_pod(
        &c,
        with_requests(
            pod("big-2", json!({})),
            json!({"cpu": "1500m", "memory": "3Gi"}),
        ),
    )
    .await;
    let msg = wait_unschedulable(&s, &c, "big-2").await;
    assert!(
        msg.contains("1 Insufficient cpu, 1 Insufficient memory"),
        "{msg}"
    );
    // Deleting big-1 frees the room: big-2 is retried and bound.
    let (st, _, _) = raw(
        &c,
        "DELETE",
        &format!("/api/v1/namespaces/{NS}/pods/big-1?gracePeriodSeconds=0"),
        None,
        vec![],
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(wait_bound(&s, &c, "big-2").await, "open");
    // Uncordoning wakes pods waiting for a change.
    create_pod(&c, pod("wants-z1", json!({"nodeSelector": {"zone": "z1"}}))).await;
    wait_unschedulable(&s, &c, "wants-z1").await;
    let (st, v) = merge_patch(
        &c,
        "/api/v1/nodes/cordoned",
        &json!({"spec": {"unschedulable": false}}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(wait_bound(&s, &c, "wants-z1").await, "cordoned");
}

#[tokio::test]
async fn inter_pod_affinity_and_anti_affinity() {
    let s = TestServer::start(&[]).await;
    let c = s.client().await;
    let _a = add_node(
        &c,
        "a",
        json!({"topology.kubernetes.io/zone": "east"}),
        json!({}),
        alloc("4", "8Gi"),
    )
    .await;
    let _b = add_node(
        &c,
        "b",
        json!({"topology.kubernetes.io/zone": "east"}),
        json!({}),
        alloc("4", "8Gi"),
    )
    .await;
    let _d = add_node(
        &c,
        "c",
        json!({"topology.kubernetes.io/zone": "west"}),
        json!({}),
        alloc("4", "8Gi"),
    )
    .await;
    let anti = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"role": "replica"}}, "topologyKey": "kubernetes.io/hostname"}
    ]}});
    let mut nodes = Vec::new();
    for i in 0..3 {
        let mut p = pod(&format!("r{i}"), json!({"affinity": anti.clone()}));
        p["metadata"]["labels"]["role"] = json!("replica");
        create_pod(&c, p).await;
        nodes.push(wait_bound(&s, &c, &format!("r{i}")).await);
    }
    nodes.sort();
    assert_eq!(nodes, vec!["a", "b", "c"], "one replica per node");
    let mut p = pod("r3", json!({"affinity": anti}));
    p["metadata"]["labels"]["role"] = json!("replica");
    create_pod(&c, p).await;
    let msg = wait_unschedulable(&s, &c, "r3").await;
    assert!(
        msg.starts_with("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."),
        "{msg}"
    );
    // Required affinity to a pod in the west zone.
    let west = nodes_of(&c, "role=replica").await;
    let db_node = west
        .iter()
        .find(|(_, n)| n == "c")
        .map(|(p, _)| p.clone())
        .expect("replica on c");
    let mut p = pod(
        "follower",
        json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": db_node}}, "topologyKey": "topology.kubernetes.io/zone"}
        ]}}}),
    );
    p["metadata"]["labels"]["app"] = json!("follower");
    create_pod(&c, p).await;
    assert_eq!(wait_bound(&s, &c, "follower").await, "c");
    // Affinity to a pod that exists nowhere.
    create_pod(
        &c,
        pod(
            "lonely",
            json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "nothing"}}, "topologyKey": "topology.kubernetes.io/zone"}
            ]}}}),
        ),
    )
    .await;
    assert_eq!(
        wait_unschedulable(&s, &c, "lonely").await,
        "0/3 nodes are available: 3 node(s) didn't match pod affinity rules. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
}

async fn nodes_of(c: &kube::Client, selector: &str) -> Vec<(String, String)> {
    let (_, list) = get_json(
        c,
        &format!("/api/v1/namespaces/{NS}/pods?labelSelector={selector}"),
    )
    .await;
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["metadata"]["labels"]["app"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn scores_least_allocated_preferences_taints_and_spreading() {
    let s = TestServer::start(&[]).await;
    let c = s.client().await;
    let _a = add_node(&c, "busy", json!({}), json!({}), alloc("4", "8Gi")).await;
    let _b = add_node(&c, "idle", json!({}), json!({}), alloc("4", "8Gi")).await;
    let _d = add_node(
        &c,
        "meh",
        json!({"tier": "gold"}),
        json!({"taints": [{"key": "spot", "value": "true", "effect": "PreferNoSchedule"}]}),
        alloc("4", "8Gi"),
    )
    .await;
    // A pod already bound to "busy" (created with nodeName).
    let mut hog = with_requests(pod("hog", json!({})), json!({"cpu": "3", "memory": "6Gi"}));
    hog["spec"]["nodeName"] = json!("busy");
    create_pod(&c, hog).await;
    // Least allocated + balanced, and the PreferNoSchedule taint (weight
    // 3) keeps "meh" below "idle".
    create_pod(
        &c,
        with_requests(
            pod("light", json!({})),
            json!({"cpu": "500m", "memory": "512Mi"}),
        ),
    )
    .await;
    assert_eq!(wait_bound(&s, &c, "light").await, "idle");
    // Preferred node affinity (weight 2) draws a pod that tolerates the
    // PreferNoSchedule taint to the gold node.
    create_pod(
        &c,
        pod(
            "gold",
            json!({
                "tolerations": [{"key": "spot", "operator": "Exists", "effect": "PreferNoSchedule"}],
                "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 50, "preference": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold"]}]}}
                ]}},
            }),
        ),
    )
    .await;
    assert_eq!(wait_bound(&s, &c, "gold").await, "meh");
    // Preferred pod affinity pulls a pod next to "light".
    create_pod(
        &c,
        pod(
            "friend",
            json!({"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "light"}}, "topologyKey": "kubernetes.io/hostname"}}
            ]}}}),
        ),
    )
    .await;
    assert_eq!(wait_bound(&s, &c, "friend").await, "idle");
}

#[tokio::test]
async fn pods_of_one_owner_spread_across_nodes() {
    let s = TestServer::start(&[]).await;
    let c = s.client().await;
    let mut sims = Vec::new();
    for n in ["s1", "s2", "s3"] {
        sims.push(add_node(&c, n, json!({}), json!({}), alloc("8", "16Gi")).await);
    }
    // An owner object (a ConfigMap stands in; only the uid matters).
    let (st, owner) = post_json(
        &c,
        &format!("/api/v1/namespaces/{NS}/configmaps"),
        &json!({"metadata": {"name": "owner"}}),
    )
    .await;
    assert_eq!(st, 201);
    let uid = owner["metadata"]["uid"].as_str().expect("uid").to_string();
    for i in 0..6 {
        let mut p = with_requests(
            pod(&format!("rep-{i}"), json!({})),
            json!({"cpu": "100m", "memory": "64Mi"}),
        );
        p["metadata"]["ownerReferences"] =
            json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]);
        create_pod(&c, p).await;
        wait_bound(&s, &c, &format!("rep-{i}")).await;
    }
    let (_, list) = get_json(&c, &format!("/api/v1/namespaces/{NS}/pods")).await;
    let mut per: std::collections::BTreeMap<String, usize> = Default::default();
    for p in list["items"].as_array().into_iter().flatten() {
        *per.entry(p["spec"]["nodeName"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    assert_eq!(
        per.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2],
        "{per:?}"
    );
}

#[tokio::test]
async fn preemption_evicts_a_lower_priority_pod_and_binds_when_room_appears() {
    let s = TestServer::start(&[]).await;
    let c = s.client().await;
    let _n = add_node(&c, "small", json!({}), json!({}), alloc("1", "2Gi")).await;
    for (name, value) in [("low", 10), ("high", 1000)] {
        let (st, v) = post_json(
            &c,
            "/apis/scheduling.k8s.io/v1/priorityclasses",
            &json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": value}),
        )
        .await;
        assert_eq!(st, 201, "{v}");
    }
    let mut low = with_requests(
        pod("victim", json!({"priorityClassName": "low"})),
        json!({"cpu": "800m", "memory": "1Gi"}),
    );
    low["spec"]["terminationGracePeriodSeconds"] = json!(30);
    create_pod(&c, low).await;
    assert_eq!(wait_bound(&s, &c, "victim").await, "small");
    // Equal or lower priority: no preemption, just the message.
    create_pod(
        &c,
        with_requests(
            pod("peer", json!({"priorityClassName": "low"})),
            json!({"cpu": "800m", "memory": "1Gi"}),
        ),
    )
    .await;
    assert_eq!(
        wait_unschedulable(&s, &c, "peer").await,
        "0/1 nodes are available: 1 Insufficient cpu. \
         preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    );
    create_pod(
        &c,
        with_requests(
            pod("vip", json!({"priorityClassName": "high"})),
            json!({"cpu": "800m", "memory": "1Gi"}),
        ),
    )
    .await;
    // The victim is deleted gracefully (it has a node, so it terminates)
    // and marked as a disruption target; the preemptor is nominated.
    let v = wait_pod(
        &s,
        &c,
        "victim",
        Duration::from_secs(30),
        "terminating",
        |p| p["metadata"]["deletionTimestamp"].is_string(),
    )
    .await;
    assert!(
        v["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "DisruptionTarget" && c["reason"] == "PreemptionByScheduler"),
        "{v:#}"
    );
    let vip = wait_pod(&s, &c, "vip", Duration::from_secs(30), "nominated", |p| {
        p["status"]["nominatedNodeName"] == "small"
    })
    .await;
    assert!(vip["spec"]["nodeName"].is_null());
    let ev = wait_event(&c, "victim", "Preempted").await;
    let vip_uid = vip["metadata"]["uid"].as_str().unwrap_or_default();
    assert_eq!(
        ev["message"],
        format!("Preempted by pod {vip_uid} on node small")
    );
    // The room is held for the nominated pod: "peer" (lower priority) may
    // not take it. The simulated kubelet finishes the victim's deletion.
    let (st, _, _) = raw(
        &c,
        "DELETE",
        &format!("/api/v1/namespaces/{NS}/pods/victim?gracePeriodSeconds=0"),
        None,
        vec![],
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(wait_bound(&s, &c, "vip").await, "small");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let peer = get_pod(&c, "peer").await;
    assert!(peer["spec"]["nodeName"].is_null(), "{peer:#}");
}

#[tokio::test]
async fn a_bare_pod_is_scheduled_to_the_real_node_and_runs() {
    if common::cluster::skip("a_bare_pod_is_scheduled_to_the_real_node_and_runs") {
        return;
    }
    let cl = common::cluster::Cluster::start().await;
    let c = cl.server.client().await;
    create_pod(
        &c,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare"}, "spec": {
            "containers": [{"name": "c", "image": common::cluster::BUSYBOX, "command": ["sleep", "3600"],
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}],
            "terminationGracePeriodSeconds": 1,
        }}),
    )
    .await;
    let p = cl
        .wait_pod(NS, "bare", Duration::from_secs(60), "Running", |p| {
            p["status"]["phase"] == "Running"
        })
        .await;
    assert_eq!(p["spec"]["nodeName"], json!(cl.node));
    assert_eq!(scheduled_condition(&p)["status"], "True");
    let evs = cl.events(NS, "bare").await;
    assert!(
        evs.iter().any(|e| e
            == &format!(
                "Scheduled: Successfully assigned default/bare to {}",
                cl.node
            )),
        "{evs:#?}"
    );
}
