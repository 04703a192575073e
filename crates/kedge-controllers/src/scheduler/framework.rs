//! One scheduling cycle over the cache: the filters in upstream's default
//! order (the first failing plugin's reasons are the node's), the weighted
//! scores, the choice of a node (ties broken at random), and upstream's
//! FitError message.

use std::collections::BTreeMap;

use rand::Rng;

use super::cache::{ClusterCache, NodeInfo, PodInfo};
use super::resources::{self, Resources};
use super::{
    inter_pod_affinity as ipa, node_affinity, node_ports, node_unschedulable, spread, taints,
};

/// A node's filter result that is not success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// Whether removing pods could help (upstream's `Unschedulable`, as
    /// opposed to `UnschedulableAndUnresolvable`).
    pub resolvable: bool,
    pub reasons: Vec<String>,
}

impl NodeStatus {
    fn unresolvable(reason: &str) -> NodeStatus {
        NodeStatus {
            resolvable: false,
            reasons: vec![reason.to_string()],
        }
    }
}

/// Per-pod state computed once per cycle (upstream's PreFilter).
#[derive(Debug, Default)]
pub struct CycleState {
    pub affinity: ipa::FilterState,
    pub spread: spread::FilterState,
}

impl CycleState {
    pub fn new(pod: &PodInfo, cache: &ClusterCache) -> CycleState {
        CycleState {
            affinity: ipa::FilterState::new(pod, cache),
            spread: spread::FilterState::new(pod, cache.nodes.values()),
        }
    }

    /// Accounts an existing pod leaving (`-1`) or joining (`1`) `node`.
    pub fn update(
        &mut self,
        existing: &PodInfo,
        node: &NodeInfo,
        pod: &PodInfo,
        cache: &ClusterCache,
        sign: i64,
    ) {
        self.affinity
            .update(existing, &node.labels, pod, &cache.namespaces, sign);
        self.spread
            .update(existing, &node.labels, &pod.namespace, sign);
    }
}

/// Room that pods nominated to a node (of at least the incoming pod's
/// priority) have a claim on.
#[derive(Debug, Default, Clone)]
pub struct Nominated {
    pub requests: Resources,
    pub pods: usize,
    pub ports: Vec<node_ports::HostPort>,
}

/// Runs the filters for `pod` on `node`.
pub fn filter(
    pod: &PodInfo,
    state: &CycleState,
    node: &NodeInfo,
    nominated: Option<&Nominated>,
) -> Result<(), NodeStatus> {
    if let Some(r) = node_unschedulable::check(node.unschedulable, pod.tolerations()) {
        return Err(NodeStatus::unresolvable(r));
    }
    if let Some(want) = pod.spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        if want != node.name {
            return Err(NodeStatus::unresolvable(
                node_affinity::ERR_REASON_NODE_NAME,
            ));
        }
    }
    if let Some(r) = taints::untolerated_reason(&node.taints, pod.tolerations()) {
        return Err(NodeStatus::unresolvable(&r));
    }
    if !node_affinity::required_matches(&pod.spec, &node.name, &node.labels) {
        return Err(NodeStatus::unresolvable(node_affinity::ERR_REASON_POD));
    }
    let port_conflict = node_ports::conflicts(&pod.host_ports, &node.used_ports)
        || nominated.is_some_and(|n| node_ports::conflicts(&pod.host_ports, &n.ports));
    if port_conflict {
        return Err(NodeStatus {
            resolvable: true,
            reasons: vec![node_ports::ERR_REASON.to_string()],
        });
    }
    let insufficient = match nominated {
        Some(n) if n.pods > 0 => {
            let mut used = node.requested.clone();
            used.add(&n.requests);
            resources::insufficient(
                &pod.requests.requests,
                &node.allocatable,
                &used,
                node.pods.len() + n.pods,
            )
        }
        _ => resources::insufficient(
            &pod.requests.requests,
            &node.allocatable,
            &node.requested,
            node.pods.len(),
        ),
    };
    if !insufficient.is_empty() {
        return Err(NodeStatus {
            resolvable: true,
            reasons: insufficient,
        });
    }
    if let Some((r, resolvable)) = state.spread.check(&node.labels) {
        return Err(NodeStatus {
            resolvable,
            reasons: vec![r.to_string()],
        });
    }
    if let Some((r, resolvable)) = state.affinity.check(&node.labels) {
        return Err(NodeStatus {
            resolvable,
            reasons: vec![r.to_string()],
        });
    }
    Ok(())
}

/// Upstream's default score weights.
pub const WEIGHT_FIT: i64 = 1;
pub const WEIGHT_BALANCED: i64 = 1;
pub const WEIGHT_NODE_AFFINITY: i64 = 2;
pub const WEIGHT_INTER_POD_AFFINITY: i64 = 2;
pub const WEIGHT_TAINT: i64 = 3;
pub const WEIGHT_SPREAD: i64 = 2;

/// The weighted total score of each feasible node.
pub fn score(pod: &PodInfo, cache: &ClusterCache, feasible: &[&NodeInfo]) -> Vec<i64> {
    let mut total = vec![0i64; feasible.len()];
    let req = &pod.requests;
    let skip_balanced = resources::balanced_allocation_skips(&req.requests);
    for (i, n) in feasible.iter().enumerate() {
        let alloc = [n.allocatable.milli_cpu, n.allocatable.memory];
        let nz = [
            n.non_zero_requested[0] + req.non_zero_milli_cpu,
            n.non_zero_requested[1] + req.non_zero_memory,
        ];
        total[i] += WEIGHT_FIT * resources::least_allocated_score(nz, alloc);
        if !skip_balanced {
            let used = [
                n.requested.milli_cpu + req.requests.milli_cpu,
                n.requested.memory + req.requests.memory,
            ];
            total[i] += WEIGHT_BALANCED * resources::balanced_allocation_score(used, alloc);
        }
    }
    if node_affinity::has_preferred(&pod.spec) {
        let mut s: Vec<i64> = feasible
            .iter()
            .map(|n| node_affinity::preferred_score(&pod.spec, &n.name, &n.labels))
            .collect();
        node_affinity::default_normalize(&mut s, false);
        add(&mut total, &s, WEIGHT_NODE_AFFINITY);
    }
    let mut s: Vec<i64> = feasible
        .iter()
        .map(|n| taints::intolerable_prefer_no_schedule(&n.taints, pod.tolerations()))
        .collect();
    node_affinity::default_normalize(&mut s, true);
    add(&mut total, &s, WEIGHT_TAINT);
    if let Some(topo) = ipa::score_state(pod, cache) {
        let mut s: Vec<i64> = feasible
            .iter()
            .map(|n| ipa::raw_score(&topo, &n.labels))
            .collect();
        ipa::normalize(&mut s);
        add(&mut total, &s, WEIGHT_INTER_POD_AFFINITY);
    }
    let all: Vec<&NodeInfo> = cache.nodes.values().filter(|n| n.present).collect();
    if let Some(s) = spread::scores(pod, feasible, &all) {
        add(&mut total, &s, WEIGHT_SPREAD);
    }
    total
}

fn add(total: &mut [i64], s: &[i64], w: i64) {
    for (t, v) in total.iter_mut().zip(s) {
        *t += w * v;
    }
}

/// The index of a highest score; among equals, one at random (reservoir
/// sampling, as upstream's `selectHost`).
pub fn select(scores: &[i64], rng: &mut impl Rng) -> Option<usize> {
    let mut best: Option<(usize, i64)> = None;
    let mut ties = 0u32;
    for (i, s) in scores.iter().enumerate() {
        match best {
            None => {
                best = Some((i, *s));
                ties = 1;
            }
            Some((_, b)) if *s > b => {
                best = Some((i, *s));
                ties = 1;
            }
            Some((_, b)) if *s == b => {
                ties += 1;
                if rng.random_range(0..ties) == 0 {
                    best = Some((i, *s));
                }
            }
            _ => {}
        }
    }
    best.map(|(i, _)| i)
}

/// Upstream's `FitError.Error()`: "0/N nodes are available: " and the
/// sorted histogram of reasons, then the PostFilter (preemption) message.
pub fn fit_error_message<'a>(
    num_nodes: usize,
    statuses: impl Iterator<Item = &'a NodeStatus>,
    post_filter: Option<&str>,
) -> String {
    let mut msg = format!("0/{num_nodes} nodes are available:");
    let mut hist: BTreeMap<&str, usize> = BTreeMap::new();
    for s in statuses {
        for r in &s.reasons {
            *hist.entry(r.as_str()).or_default() += 1;
        }
    }
    let mut parts: Vec<String> = hist.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    if !parts.is_empty() {
        msg.push_str(&format!(" {}.", parts.join(", ")));
    }
    if let Some(p) = post_filter.filter(|p| !p.is_empty()) {
        msg.push(' ');
        msg.push_str(p);
    }
    msg
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::json;
    use std::sync::Arc;

    use super::super::cache::PriorityClasses;

    pub(crate) fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).expect("node")
    }

    pub(crate) fn pod(v: serde_json::Value) -> PodInfo {
        let mut v = v;
        if v["spec"]["containers"].is_null() {
            v["spec"]["containers"] = json!([{"name": "c"}]);
        }
        let p: Pod = serde_json::from_value(v).expect("pod");
        PodInfo::from_pod(&p, &PriorityClasses::default()).expect("info")
    }

    fn cache3() -> ClusterCache {
        let mut c = ClusterCache::default();
        c.upsert_node(&node(json!({
            "metadata": {"name": "gpu", "labels": {"accel": "gpu"}},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110", "nvidia.com/gpu": "1"}},
        })));
        for n in ["cpu1", "cpu2"] {
            c.upsert_node(&node(json!({
                "metadata": {"name": n, "labels": {"accel": "none"}},
                "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}},
            })));
        }
        c
    }

    #[test]
    fn upstream_message_form() {
        let mut c = cache3();
        c.place(
            Arc::new(pod(json!({"metadata": {"name": "busy", "uid": "busy"}, "spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}))),
            "gpu",
        );
        let p = pod(
            json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {
                "nodeSelector": {"accel": "gpu"},
                "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
            }}),
        );
        let st = CycleState::new(&p, &c);
        let statuses: Vec<NodeStatus> = c
            .nodes
            .values()
            .filter_map(|n| filter(&p, &st, n, None).err())
            .collect();
        assert_eq!(statuses.len(), 3);
        assert_eq!(
            fit_error_message(3, statuses.iter(), Some("preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.")),
            "0/3 nodes are available: 1 Insufficient nvidia.com/gpu, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
        // The histogram sorts as strings, as upstream's sort.Strings does.
        let many: Vec<NodeStatus> = (0..10)
            .map(|_| NodeStatus::unresolvable("b"))
            .chain((0..2).map(|_| NodeStatus::unresolvable("a")))
            .collect();
        assert_eq!(
            fit_error_message(12, many.iter(), None),
            "0/12 nodes are available: 10 b, 2 a."
        );
    }

    #[test]
    fn filter_order_reports_the_first_failure() {
        let mut c = ClusterCache::default();
        c.upsert_node(&node(json!({
            "metadata": {"name": "n"},
            "spec": {"unschedulable": true, "taints": [{"key": "k", "effect": "NoSchedule"}]},
            "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"}},
        })));
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {}}));
        let st = CycleState::new(&p, &c);
        let n = &c.nodes["n"];
        assert_eq!(
            filter(&p, &st, n, None).unwrap_err().reasons,
            vec!["node(s) were unschedulable"]
        );
        let p = pod(
            json!({"metadata": {"name": "p"}, "spec": {"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}]}}),
        );
        let err = filter(&p, &st, n, None).unwrap_err();
        assert_eq!(err.reasons, vec!["node(s) had untolerated taint {k: }"]);
        assert!(!err.resolvable);
        let p = pod(
            json!({"metadata": {"name": "p"}, "spec": {"tolerations": [{"operator": "Exists"}], "containers": [{"name": "c", "resources": {"requests": {"cpu": "2"}}}]}}),
        );
        let err = filter(&p, &st, n, None).unwrap_err();
        assert_eq!(err.reasons, vec!["Insufficient cpu"]);
        assert!(err.resolvable);
        // Room nominated to a more important pod is not free.
        let p = pod(
            json!({"metadata": {"name": "p"}, "spec": {"tolerations": [{"operator": "Exists"}], "containers": [{"name": "c", "resources": {"requests": {"cpu": "600m"}}}]}}),
        );
        assert!(filter(&p, &st, n, None).is_ok());
        let mut nom = Nominated {
            pods: 1,
            ..Default::default()
        };
        nom.requests.milli_cpu = 500;
        assert_eq!(
            filter(&p, &st, n, Some(&nom)).unwrap_err().reasons,
            vec!["Insufficient cpu"]
        );
    }

    #[test]
    fn scores_prefer_emptier_nodes_and_tolerated_taints() {
        let mut c = cache3();
        c.place(
            Arc::new(pod(json!({"metadata": {"name": "big", "uid": "big"}, "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "3", "memory": "6Gi"}}}]}}))),
            "cpu1",
        );
        let p = pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}}}]}}),
        );
        let feasible: Vec<&NodeInfo> = c.nodes.values().collect();
        let s = score(&p, &c, &feasible);
        let names: Vec<String> = feasible.iter().map(|n| n.name.clone()).collect();
        let idx = |n: &str| names.iter().position(|x| x == n).expect("node");
        assert!(s[idx("cpu2")] > s[idx("cpu1")], "{s:?}");
        assert_eq!(s[idx("cpu2")], s[idx("gpu")]);
        // A PreferNoSchedule taint costs a node the taint score (weight 3).
        c.upsert_node(&node(json!({
            "metadata": {"name": "cpu2", "labels": {"accel": "none"}},
            "spec": {"taints": [{"key": "meh", "effect": "PreferNoSchedule"}]},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}},
        })));
        let feasible: Vec<&NodeInfo> = c.nodes.values().collect();
        let s2 = score(&p, &c, &feasible);
        assert_eq!(s2[idx("gpu")] - s2[idx("cpu2")], 300);
    }

    #[test]
    fn ties_are_broken_among_the_best_only() {
        let mut rng = rand::rng();
        let mut seen = [0u32; 4];
        for _ in 0..400 {
            let i = select(&[5, 9, 9, 1], &mut rng).expect("one");
            seen[i] += 1;
        }
        assert_eq!(seen[0] + seen[3], 0);
        assert!(seen[1] > 100 && seen[2] > 100, "{seen:?}");
        assert_eq!(select(&[], &mut rng), None);
    }
}
