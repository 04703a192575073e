//! `InterPodAffinity`: required pod affinity and anti-affinity, the
//! existing pods' required anti-affinity (filters), and the preferred terms
//! of both sides (a score), all by topology key.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::core::v1::PodAffinityTerm;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::cache::{ClusterCache, PodInfo};
use super::node_affinity::label_selector_matches;
use super::resources::MAX_NODE_SCORE;

pub const ERR_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const ERR_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const ERR_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// Upstream's `hardPodAffinityWeight` default.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

type Labels = BTreeMap<String, String>;
type NamespaceLabels = HashMap<String, Labels>;
type Pair = (String, String);

/// A pod affinity term with its namespaces resolved against its pod.
#[derive(Debug, Clone)]
pub struct Term {
    namespaces: HashSet<String>,
    namespace_selector: Option<LabelSelector>,
    selector: Option<LabelSelector>,
    pub topology_key: String,
    pub weight: i64,
}

impl Term {
    fn new(t: &PodAffinityTerm, owner_ns: &str, weight: i64) -> Term {
        let mut namespaces: HashSet<String> = t.namespaces.iter().flatten().cloned().collect();
        if namespaces.is_empty() && t.namespace_selector.is_none() {
            namespaces.insert(owner_ns.to_string());
        }
        Term {
            namespaces,
            namespace_selector: t.namespace_selector.clone(),
            selector: t.label_selector.clone(),
            topology_key: t.topology_key.clone(),
            weight,
        }
    }

    /// Whether `pod` is one of the pods this term selects.
    pub fn matches(&self, pod: &PodInfo, ns_labels: &NamespaceLabels) -> bool {
        let ns_ok = self.namespaces.contains(&pod.namespace)
            || self.namespace_selector.as_ref().is_some_and(|sel| {
                let empty = Labels::new();
                let labels = ns_labels.get(&pod.namespace).unwrap_or(&empty);
                label_selector_matches(Some(sel), labels)
            });
        ns_ok && label_selector_matches(self.selector.as_ref(), &pod.labels)
    }
}

/// A pod's four kinds of terms.
#[derive(Debug, Clone, Default)]
pub struct Terms {
    pub required_affinity: Vec<Term>,
    pub required_anti: Vec<Term>,
    pub preferred_affinity: Vec<Term>,
    pub preferred_anti: Vec<Term>,
}

impl Terms {
    pub fn of(pod: &PodInfo) -> Terms {
        let mut out = Terms::default();
        let Some(a) = pod.spec.affinity.as_ref() else {
            return out;
        };
        let ns = &pod.namespace;
        if let Some(pa) = &a.pod_affinity {
            for t in pa
                .required_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
            {
                out.required_affinity.push(Term::new(t, ns, 1));
            }
            for w in pa
                .preferred_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
            {
                out.preferred_affinity.push(Term::new(
                    &w.pod_affinity_term,
                    ns,
                    i64::from(w.weight),
                ));
            }
        }
        if let Some(pa) = &a.pod_anti_affinity {
            for t in pa
                .required_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
            {
                out.required_anti.push(Term::new(t, ns, 1));
            }
            for w in pa
                .preferred_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
            {
                out.preferred_anti
                    .push(Term::new(&w.pod_affinity_term, ns, i64::from(w.weight)));
            }
        }
        out
    }

    fn is_empty(&self) -> bool {
        self.required_affinity.is_empty()
            && self.required_anti.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti.is_empty()
    }
}

/// The filter's pre-computed counts for one incoming pod.
#[derive(Debug, Clone, Default)]
pub struct FilterState {
    terms: Terms,
    affinity_counts: HashMap<Pair, i64>,
    anti_counts: HashMap<Pair, i64>,
    existing_anti_counts: HashMap<Pair, i64>,
    /// The incoming pod matches all of its own required affinity terms.
    self_match: bool,
    active: bool,
}

impl FilterState {
    /// Scans the placed pods (only where some pod has affinity terms).
    pub fn new(pod: &PodInfo, cache: &ClusterCache) -> FilterState {
        let terms = Terms::of(pod);
        let mut st = FilterState {
            self_match: terms
                .required_affinity
                .iter()
                .all(|t| t.matches(pod, &cache.namespaces)),
            active: !terms.required_affinity.is_empty()
                || !terms.required_anti.is_empty()
                || cache.pods_with_affinity > 0,
            terms,
            ..Default::default()
        };
        if !st.active {
            return st;
        }
        let scan_all = !st.terms.required_affinity.is_empty() || !st.terms.required_anti.is_empty();
        for n in cache.nodes.values() {
            if !scan_all && n.pods_with_affinity == 0 {
                continue;
            }
            for e in n.pods.values() {
                st.update(e, &n.labels, pod, &cache.namespaces, 1);
            }
        }
        st
    }

    /// Adds (`sign` 1) or removes (-1) an existing pod's contribution.
    pub fn update(
        &mut self,
        existing: &PodInfo,
        node_labels: &Labels,
        incoming: &PodInfo,
        ns: &NamespaceLabels,
        sign: i64,
    ) {
        if !self.active {
            return;
        }
        let ra = &self.terms.required_affinity;
        if !ra.is_empty() && ra.iter().all(|t| t.matches(existing, ns)) {
            for t in ra {
                if let Some(v) = node_labels.get(&t.topology_key) {
                    *self
                        .affinity_counts
                        .entry((t.topology_key.clone(), v.clone()))
                        .or_default() += sign;
                }
            }
        }
        for t in &self.terms.required_anti {
            if t.matches(existing, ns) {
                if let Some(v) = node_labels.get(&t.topology_key) {
                    *self
                        .anti_counts
                        .entry((t.topology_key.clone(), v.clone()))
                        .or_default() += sign;
                }
            }
        }
        if existing.has_affinity {
            for t in Terms::of(existing).required_anti {
                if t.matches(incoming, ns) {
                    if let Some(v) = node_labels.get(&t.topology_key) {
                        *self
                            .existing_anti_counts
                            .entry((t.topology_key.clone(), v.clone()))
                            .or_default() += sign;
                    }
                }
            }
        }
        self.affinity_counts.retain(|_, c| *c > 0);
    }

    /// The filter on one node: `Some((reason, resolvable by preemption))`.
    pub fn check(&self, node_labels: &Labels) -> Option<(&'static str, bool)> {
        if !self.active {
            return None;
        }
        let mut pods_exist = true;
        for t in &self.terms.required_affinity {
            let Some(v) = node_labels.get(&t.topology_key) else {
                return Some((ERR_AFFINITY, false));
            };
            if self
                .affinity_counts
                .get(&(t.topology_key.clone(), v.clone()))
                .copied()
                .unwrap_or(0)
                <= 0
            {
                pods_exist = false;
            }
        }
        // The first pod of a group whose terms select itself may go anywhere.
        let first_of_group = self.affinity_counts.is_empty() && self.self_match;
        if !pods_exist && !first_of_group {
            return Some((ERR_AFFINITY, false));
        }
        for t in &self.terms.required_anti {
            if let Some(v) = node_labels.get(&t.topology_key) {
                if self
                    .anti_counts
                    .get(&(t.topology_key.clone(), v.clone()))
                    .is_some_and(|c| *c > 0)
                {
                    return Some((ERR_ANTI_AFFINITY, true));
                }
            }
        }
        for (k, v) in node_labels {
            if self
                .existing_anti_counts
                .get(&(k.clone(), v.clone()))
                .is_some_and(|c| *c > 0)
            {
                return Some((ERR_EXISTING_ANTI_AFFINITY, true));
            }
        }
        None
    }
}

/// The score's per-topology sums, or `None` when nothing is scored.
pub fn score_state(pod: &PodInfo, cache: &ClusterCache) -> Option<HashMap<Pair, i64>> {
    let terms = Terms::of(pod);
    let has_preferred = !terms.preferred_affinity.is_empty() || !terms.preferred_anti.is_empty();
    if !has_preferred && cache.pods_with_affinity == 0 {
        return None;
    }
    let ns = &cache.namespaces;
    let mut topo: HashMap<Pair, i64> = HashMap::new();
    let mut add = |t: &Term, target: &PodInfo, labels: &Labels, w: i64| {
        if t.matches(target, ns) {
            if let Some(v) = labels.get(&t.topology_key) {
                *topo.entry((t.topology_key.clone(), v.clone())).or_default() += w;
            }
        }
    };
    for n in cache.nodes.values() {
        if !has_preferred && n.pods_with_affinity == 0 {
            continue;
        }
        for e in n.pods.values() {
            for t in &terms.preferred_affinity {
                add(t, e, &n.labels, t.weight);
            }
            for t in &terms.preferred_anti {
                add(t, e, &n.labels, -t.weight);
            }
            if !e.has_affinity {
                continue;
            }
            let et = Terms::of(e);
            if !n.labels.is_empty() {
                for t in &et.required_affinity {
                    add(t, pod, &n.labels, HARD_POD_AFFINITY_WEIGHT);
                }
            }
            for t in &et.preferred_affinity {
                add(t, pod, &n.labels, t.weight);
            }
            for t in &et.preferred_anti {
                add(t, pod, &n.labels, -t.weight);
            }
        }
    }
    (!topo.is_empty() || !terms.is_empty()).then_some(topo)
}

/// A node's raw score: the sums of the topology pairs it is in.
pub fn raw_score(topo: &HashMap<Pair, i64>, node_labels: &Labels) -> i64 {
    node_labels
        .iter()
        .filter_map(|(k, v)| topo.get(&(k.clone(), v.clone())))
        .sum()
}

/// Upstream's min-max normalization to 0..100.
pub fn normalize(scores: &mut [i64]) {
    let (Some(min), Some(max)) = (scores.iter().min().copied(), scores.iter().max().copied())
    else {
        return;
    };
    let diff = max - min;
    for s in scores.iter_mut() {
        *s = if diff > 0 {
            (MAX_NODE_SCORE as f64 * ((*s - min) as f64 / diff as f64)) as i64
        } else {
            0
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::json;
    use std::sync::Arc;

    use super::super::cache::PriorityClasses;

    fn pod(name: &str, labels: serde_json::Value, affinity: serde_json::Value) -> PodInfo {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": name, "labels": labels},
            "spec": {"containers": [{"name": "c"}], "affinity": affinity},
        }))
        .expect("pod");
        PodInfo::from_pod(&p, &PriorityClasses::default()).expect("info")
    }

    fn cluster(nodes: &[(&str, &str)]) -> ClusterCache {
        let mut c = ClusterCache::default();
        for (name, zone) in nodes {
            let n: Node = serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "zone": zone}},
            }))
            .expect("node");
            c.upsert_node(&n);
        }
        c
    }

    fn labels(c: &ClusterCache, n: &str) -> Labels {
        c.nodes[n].labels.clone()
    }

    #[test]
    fn required_affinity_follows_matching_pods_by_topology() {
        let mut c = cluster(&[("a", "z1"), ("b", "z1"), ("c", "z2")]);
        let aff = json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}
        ]}});
        let incoming = pod("web", json!({"app": "web"}), aff.clone());
        // No db pod anywhere, and web does not match its own term.
        let st = FilterState::new(&incoming, &c);
        assert_eq!(st.check(&labels(&c, "a")), Some((ERR_AFFINITY, false)));
        c.place(Arc::new(pod("db", json!({"app": "db"}), json!(null))), "a");
        let st = FilterState::new(&incoming, &c);
        assert_eq!(st.check(&labels(&c, "a")), None);
        assert_eq!(st.check(&labels(&c, "b")), None, "same zone as the db pod");
        assert_eq!(st.check(&labels(&c, "c")), Some((ERR_AFFINITY, false)));
        // The first pod of a group that selects itself may go anywhere.
        let selfish = pod(
            "db2",
            json!({"app": "x"}),
            json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "zone"}
            ]}}),
        );
        let st = FilterState::new(&selfish, &c);
        assert_eq!(st.check(&labels(&c, "c")), None);
    }

    #[test]
    fn anti_affinity_both_ways() {
        let mut c = cluster(&[("a", "z1"), ("b", "z2")]);
        let anti = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}
        ]}});
        c.place(
            Arc::new(pod("w1", json!({"app": "web"}), anti.clone())),
            "a",
        );
        let w2 = pod("w2", json!({"app": "web"}), anti.clone());
        let st = FilterState::new(&w2, &c);
        assert_eq!(st.check(&labels(&c, "a")), Some((ERR_ANTI_AFFINITY, true)));
        assert_eq!(st.check(&labels(&c, "b")), None);
        // A pod without terms is kept off by the existing pod's anti-affinity.
        let plain = pod("p", json!({"app": "web"}), json!(null));
        let st = FilterState::new(&plain, &c);
        assert_eq!(
            st.check(&labels(&c, "a")),
            Some((ERR_EXISTING_ANTI_AFFINITY, true))
        );
        let other = pod("o", json!({"app": "other"}), json!(null));
        assert_eq!(FilterState::new(&other, &c).check(&labels(&c, "a")), None);
        // Removing the existing pod's contribution (a preemption dry run).
        let mut st = FilterState::new(&plain, &c);
        let w1 = c.nodes["a"].pods["w1"].clone();
        st.update(&w1, &labels(&c, "a"), &plain, &c.namespaces, -1);
        assert_eq!(st.check(&labels(&c, "a")), None);
    }

    #[test]
    fn namespace_selector_widens_the_term() {
        let mut c = cluster(&[("a", "z1")]);
        let mut other = pod("db", json!({"app": "db"}), json!(null));
        other.namespace = "prod".into();
        c.place(Arc::new(other), "a");
        c.namespaces.insert(
            "prod".into(),
            [("env".to_string(), "prod".to_string())].into(),
        );
        let own_ns = pod(
            "w",
            json!({}),
            json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}
            ]}}),
        );
        assert_eq!(FilterState::new(&own_ns, &c).check(&labels(&c, "a")), None);
        let by_sel = pod(
            "w",
            json!({}),
            json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone", "namespaceSelector": {"matchLabels": {"env": "prod"}}}
            ]}}),
        );
        assert!(FilterState::new(&by_sel, &c)
            .check(&labels(&c, "a"))
            .is_some());
    }

    #[test]
    fn preferred_terms_score_by_topology() {
        let mut c = cluster(&[("a", "z1"), ("b", "z1"), ("c", "z2")]);
        c.place(
            Arc::new(pod("cache", json!({"app": "cache"}), json!(null))),
            "a",
        );
        c.place(
            Arc::new(pod("noisy", json!({"app": "noisy"}), json!(null))),
            "c",
        );
        let p = pod(
            "web",
            json!({}),
            json!({
                "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 10, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "zone"}}
                ]},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 5, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "noisy"}}, "topologyKey": "kubernetes.io/hostname"}}
                ]},
            }),
        );
        let topo = score_state(&p, &c).expect("scored");
        let mut scores: Vec<i64> = ["a", "b", "c"]
            .iter()
            .map(|n| raw_score(&topo, &labels(&c, n)))
            .collect();
        assert_eq!(scores, vec![10, 10, -5]);
        normalize(&mut scores);
        assert_eq!(scores, vec![100, 100, 0]);
        // Nothing to score: no terms anywhere.
        let plain = pod("p", json!({}), json!(null));
        assert!(score_state(&plain, &c).is_none());
    }
}
