//! `PodTopologySpread`: a pod's `topologySpreadConstraints` (DoNotSchedule
//! ones filter, ScheduleAnyway ones score) and, for a pod without any,
//! upstream's system default spreading of the pods of one owner across
//! hostnames (maxSkew 3) and zones (maxSkew 5).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::cache::{NodeInfo, PodInfo};
use super::node_affinity::{label_selector_matches, required_matches};
use super::resources::MAX_NODE_SCORE;

pub const ERR_MISMATCH: &str = "node(s) didn't match pod topology spread constraints";
pub const ERR_MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

const HOSTNAME: &str = "kubernetes.io/hostname";
const ZONE: &str = "topology.kubernetes.io/zone";

type Labels = BTreeMap<String, String>;

/// Pods count towards a constraint by selector, or (system defaults) by
/// the incoming pod's owner.
#[derive(Debug, Clone)]
enum Matcher {
    Selector(Option<LabelSelector>),
    Owner(String),
}

#[derive(Debug, Clone)]
struct Constraint {
    max_skew: i64,
    key: String,
    matcher: Matcher,
}

impl Constraint {
    fn from_api(c: &TopologySpreadConstraint, pod: &PodInfo) -> Constraint {
        let mut sel = c.label_selector.clone();
        // matchLabelKeys: the incoming pod's values join the selector.
        if let (Some(keys), Some(s)) = (&c.match_label_keys, sel.as_mut()) {
            for k in keys {
                if let Some(v) = pod.labels.get(k) {
                    s.match_expressions.get_or_insert_with(Vec::new).push(
                        LabelSelectorRequirement {
                            key: k.clone(),
                            operator: "In".into(),
                            values: Some(vec![v.clone()]),
                        },
                    );
                }
            }
        }
        Constraint {
            max_skew: i64::from(c.max_skew),
            key: c.topology_key.clone(),
            matcher: Matcher::Selector(sel),
        }
    }

    fn counts(&self, p: &PodInfo, namespace: &str) -> bool {
        match &self.matcher {
            Matcher::Selector(sel) => {
                p.namespace == namespace
                    && !p.terminating
                    && label_selector_matches(sel.as_ref(), &p.labels)
            }
            Matcher::Owner(uid) => p.owner_uid.as_deref() == Some(uid),
        }
    }

    fn count_on(&self, n: &NodeInfo, namespace: &str) -> i64 {
        match &self.matcher {
            Matcher::Owner(uid) => n.owners.get(uid).copied().unwrap_or(0) as i64,
            Matcher::Selector(_) => n
                .pods
                .values()
                .filter(|p| self.counts(p, namespace))
                .count() as i64,
        }
    }
}

fn constraints(pod: &PodInfo, when: &str) -> (Vec<Constraint>, bool) {
    let own = pod
        .spec
        .topology_spread_constraints
        .as_deref()
        .unwrap_or_default();
    if !own.is_empty() {
        let cs = own
            .iter()
            .filter(|c| c.when_unsatisfiable == when)
            .map(|c| Constraint::from_api(c, pod))
            .collect();
        return (cs, false);
    }
    match (&pod.owner_uid, when) {
        (Some(uid), "ScheduleAnyway") => (
            vec![
                Constraint {
                    max_skew: 3,
                    key: HOSTNAME.into(),
                    matcher: Matcher::Owner(uid.clone()),
                },
                Constraint {
                    max_skew: 5,
                    key: ZONE.into(),
                    matcher: Matcher::Owner(uid.clone()),
                },
            ],
            true,
        ),
        _ => (Vec::new(), true),
    }
}

/// The filter's per-domain counts of the DoNotSchedule constraints.
#[derive(Debug, Default)]
pub struct FilterState {
    constraints: Vec<Constraint>,
    counts: Vec<HashMap<String, i64>>,
    self_match: Vec<i64>,
}

impl FilterState {
    pub fn new<'a>(pod: &PodInfo, nodes: impl Iterator<Item = &'a NodeInfo>) -> FilterState {
        let (cs, _) = constraints(pod, "DoNotSchedule");
        if cs.is_empty() {
            return FilterState::default();
        }
        let mut counts = vec![HashMap::new(); cs.len()];
        for n in nodes {
            if !n.present || !required_matches(&pod.spec, &n.name, &n.labels) {
                continue;
            }
            if !cs.iter().all(|c| n.labels.contains_key(&c.key)) {
                continue;
            }
            for (i, c) in cs.iter().enumerate() {
                let v = &n.labels[&c.key];
                *counts[i].entry(v.clone()).or_insert(0) += c.count_on(n, &pod.namespace);
            }
        }
        let self_match = cs
            .iter()
            .map(|c| i64::from(c.counts(pod, &pod.namespace)))
            .collect();
        FilterState {
            constraints: cs,
            counts,
            self_match,
        }
    }

    /// Takes a pod off (`-1`) or puts one on (`1`) a node's domains.
    pub fn update(&mut self, p: &PodInfo, labels: &Labels, namespace: &str, sign: i64) {
        for (i, c) in self.constraints.iter().enumerate() {
            if let Some(v) = labels.get(&c.key) {
                if c.counts(p, namespace) {
                    if let Some(e) = self.counts[i].get_mut(v) {
                        *e += sign;
                    }
                }
            }
        }
    }

    /// `Some((reason, resolvable by preemption))` when the node breaks a
    /// DoNotSchedule constraint.
    pub fn check(&self, labels: &Labels) -> Option<(&'static str, bool)> {
        for (i, c) in self.constraints.iter().enumerate() {
            let Some(v) = labels.get(&c.key) else {
                return Some((ERR_MISSING_LABEL, false));
            };
            let min = self.counts[i].values().copied().min().unwrap_or(0);
            let here = self.counts[i].get(v).copied().unwrap_or(0);
            if here + self.self_match[i] - min > c.max_skew {
                return Some((ERR_MISMATCH, true));
            }
        }
        None
    }
}

/// Raw spread scores for the feasible nodes (lower is better), normalized
/// as upstream does; `None` when the pod has nothing to spread.
pub fn scores(pod: &PodInfo, feasible: &[&NodeInfo], all: &[&NodeInfo]) -> Option<Vec<i64>> {
    let (cs, system_default) = constraints(pod, "ScheduleAnyway");
    if cs.is_empty() {
        return None;
    }
    let require_all = !system_default;
    let has_all = |l: &Labels| cs.iter().all(|c| l.contains_key(&c.key));
    let ignored: Vec<bool> = feasible
        .iter()
        .map(|n| require_all && !has_all(&n.labels))
        .collect();
    // Domains among the feasible nodes, and their pod counts over all nodes.
    let mut domain_counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); cs.len()];
    for (n, ign) in feasible.iter().zip(&ignored) {
        if *ign {
            continue;
        }
        for (i, c) in cs.iter().enumerate() {
            if c.key == HOSTNAME {
                continue;
            }
            if let Some(v) = n.labels.get(&c.key) {
                domain_counts[i].entry(v.clone()).or_insert(0);
            }
        }
    }
    for n in all {
        if !required_matches(&pod.spec, &n.name, &n.labels) {
            continue;
        }
        if require_all && !has_all(&n.labels) {
            continue;
        }
        for (i, c) in cs.iter().enumerate() {
            if c.key == HOSTNAME {
                continue;
            }
            let Some(v) = n.labels.get(&c.key) else {
                continue;
            };
            if let Some(e) = domain_counts[i].get_mut(v) {
                *e += c.count_on(n, &pod.namespace);
            }
        }
    }
    let not_ignored = ignored.iter().filter(|i| !**i).count();
    let weights: Vec<f64> = cs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let size = if c.key == HOSTNAME {
                not_ignored
            } else {
                domain_counts[i].len()
            };
            ((size + 2) as f64).ln()
        })
        .collect();
    let raw: Vec<Option<i64>> = feasible
        .iter()
        .zip(&ignored)
        .map(|(n, ign)| {
            if *ign {
                return None;
            }
            let mut s = 0.0;
            for (i, c) in cs.iter().enumerate() {
                let Some(v) = n.labels.get(&c.key) else {
                    continue;
                };
                let cnt = if c.key == HOSTNAME {
                    c.count_on(n, &pod.namespace)
                } else {
                    domain_counts[i].get(v).copied().unwrap_or(0)
                };
                s += cnt as f64 * weights[i] + (c.max_skew - 1) as f64;
            }
            Some(s.round() as i64)
        })
        .collect();
    let valid = raw.iter().flatten();
    let min = valid.clone().min().copied().unwrap_or(0);
    let max = valid.max().copied().unwrap_or(0);
    Some(
        raw.into_iter()
            .map(|s| match s {
                None => 0,
                Some(_) if max == 0 => MAX_NODE_SCORE,
                Some(s) => MAX_NODE_SCORE * (max + min - s) / max,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::json;
    use std::sync::Arc;

    use super::super::cache::{ClusterCache, PriorityClasses};

    fn pod(name: &str, owner: Option<&str>, extra: serde_json::Value) -> PodInfo {
        let mut v = json!({
            "metadata": {"name": name, "namespace": "default", "uid": name, "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c"}]},
        });
        if let Some(o) = owner {
            v["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": o, "controller": true}]);
        }
        if !extra.is_null() {
            v["spec"]["topologySpreadConstraints"] = extra;
        }
        let p: Pod = serde_json::from_value(v).expect("pod");
        PodInfo::from_pod(&p, &PriorityClasses::default()).expect("info")
    }

    fn cluster(nodes: &[(&str, &str)]) -> ClusterCache {
        let mut c = ClusterCache::default();
        for (name, zone) in nodes {
            let n: Node = serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {HOSTNAME: name, ZONE: zone}},
            }))
            .expect("node");
            c.upsert_node(&n);
        }
        c
    }

    #[test]
    fn owner_pods_spread_by_default() {
        let mut c = cluster(&[("a", "z1"), ("b", "z1"), ("c", "z2")]);
        for i in 0..3 {
            c.place(
                Arc::new(pod(&format!("p{i}"), Some("rs1"), json!(null))),
                "a",
            );
        }
        c.place(Arc::new(pod("other", Some("rs2"), json!(null))), "c");
        let nodes: Vec<&NodeInfo> = c.nodes.values().collect();
        let s = scores(&pod("new", Some("rs1"), json!(null)), &nodes, &nodes).expect("scored");
        // a holds 3 of the owner's pods, b shares its zone, c is empty.
        assert!(s[2] > s[1] && s[1] > s[0], "{s:?}");
        assert_eq!(s[2], MAX_NODE_SCORE);
        // A pod without an owner (and no constraints) is not spread.
        assert!(scores(&pod("solo", None, json!(null)), &nodes, &nodes).is_none());
    }

    #[test]
    fn do_not_schedule_constraints_filter_by_skew() {
        let mut c = cluster(&[("a", "z1"), ("b", "z2")]);
        c.place(Arc::new(pod("p1", None, json!(null))), "a");
        let p = pod(
            "new",
            None,
            json!([{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]),
        );
        let st = FilterState::new(&p, c.nodes.values());
        assert_eq!(st.check(&c.nodes["a"].labels), Some((ERR_MISMATCH, true)));
        assert_eq!(st.check(&c.nodes["b"].labels), None);
        assert_eq!(st.check(&BTreeMap::new()), Some((ERR_MISSING_LABEL, false)));
    }
}
