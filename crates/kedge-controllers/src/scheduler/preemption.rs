//! `DefaultPreemption`: when a pod fits nowhere, find the node where
//! evicting the fewest, least important lower-priority pods makes it fit.
//! Pure: the caller deletes the victims and nominates the node.

use std::collections::HashMap;
use std::sync::Arc;

use super::cache::{ClusterCache, NodeInfo, PodInfo};
use super::framework::{self, CycleState, NodeStatus, Nominated};

pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// What preemption decided.
#[derive(Debug)]
pub enum Outcome {
    /// Evict `victims` from `node` and nominate it.
    Preempt {
        node: String,
        victims: Vec<Arc<PodInfo>>,
    },
    /// No preemption; the PostFilter message ("preemption: ..."), and
    /// whether a nomination the pod has should be cleared (no candidate
    /// anywhere) or kept (the pod was not eligible to try).
    NotPossible {
        message: String,
        clear_nomination: bool,
    },
}

/// Upstream's `MoreImportantPod`: higher priority, then started earlier.
fn more_important(a: &PodInfo, b: &PodInfo) -> std::cmp::Ordering {
    b.priority
        .cmp(&a.priority)
        .then_with(|| a.start_time.cmp(&b.start_time))
}

/// Upstream's `PodEligibleToPreemptOthers`.
fn eligible(
    pod: &PodInfo,
    cache: &ClusterCache,
    statuses: &HashMap<String, NodeStatus>,
) -> Result<(), String> {
    if pod.preempt_never {
        return Err("not eligible due to preemptionPolicy=Never.".to_string());
    }
    if let Some(nom) = &pod.nominated_node {
        // A pod already preempted on its nominated node waits for the
        // victims to go, unless that node can no longer help.
        let unresolvable = statuses.get(nom).is_some_and(|s| !s.resolvable);
        if !unresolvable {
            if let Some(n) = cache.nodes.get(nom) {
                if n.pods
                    .values()
                    .any(|p| p.terminating && p.priority < pod.priority)
                {
                    return Err(
                        "not eligible due to a terminating pod on the nominated node.".to_string(),
                    );
                }
            }
        }
    }
    Ok(())
}

/// Upstream's `SelectVictimsOnNode`: remove every lower-priority pod, check
/// the pod fits, then reprieve as many as possible, most important first.
fn select_victims(
    pod: &PodInfo,
    cache: &ClusterCache,
    node: &NodeInfo,
    nominated: Option<&Nominated>,
) -> Result<Vec<Arc<PodInfo>>, NodeStatus> {
    let mut n = node.clone();
    let mut state = CycleState::new(pod, cache);
    let mut potential: Vec<Arc<PodInfo>> = node
        .pods
        .values()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if potential.is_empty() {
        // Nothing to remove: the node is as it was when it failed.
        return Err(NodeStatus {
            resolvable: false,
            reasons: vec![NO_VICTIMS.to_string()],
        });
    }
    for p in &potential {
        n.remove_pod(&p.uid);
        state.update(p, node, pod, cache, -1);
    }
    framework::filter(pod, &state, &n, nominated)?;
    potential.sort_by(|a, b| more_important(a, b));
    let mut victims = Vec::new();
    for p in potential {
        n.add_pod(p.clone());
        state.update(&p, node, pod, cache, 1);
        if framework::filter(pod, &state, &n, nominated).is_err() {
            n.remove_pod(&p.uid);
            state.update(&p, node, pod, cache, -1);
            victims.push(p);
        }
    }
    Ok(victims)
}

/// Upstream's `pickOneNodeForPreemption` (without PodDisruptionBudgets):
/// lowest highest-victim priority, then lowest priority sum, then fewest
/// victims, then the latest start among the highest-priority victims.
fn pick(cands: Vec<(String, Vec<Arc<PodInfo>>)>) -> Option<(String, Vec<Arc<PodInfo>>)> {
    let key = |v: &Vec<Arc<PodInfo>>| {
        let highest = v.iter().map(|p| p.priority).max().unwrap_or(i32::MIN);
        let sum: i64 = v
            .iter()
            .map(|p| i64::from(p.priority) + i64::from(i32::MAX) + 1)
            .sum();
        let earliest_of_highest = v
            .iter()
            .filter(|p| p.priority == highest)
            .map(|p| p.start_time)
            .min()
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        (
            highest,
            sum,
            v.len(),
            std::cmp::Reverse(earliest_of_highest),
        )
    };
    cands.into_iter().min_by(|a, b| key(&a.1).cmp(&key(&b.1)))
}

/// Tries preemption for `pod`, given each node's filter status.
pub fn preempt(
    pod: &PodInfo,
    cache: &ClusterCache,
    statuses: &HashMap<String, NodeStatus>,
    nominated: &HashMap<String, Nominated>,
) -> Outcome {
    if let Err(msg) = eligible(pod, cache, statuses) {
        return Outcome::NotPossible {
            message: format!("preemption: {msg}"),
            clear_nomination: false,
        };
    }
    let nodes: Vec<&NodeInfo> = cache.nodes.values().filter(|n| n.present).collect();
    let mut dry_run: Vec<NodeStatus> = Vec::new();
    let mut cands = Vec::new();
    for n in &nodes {
        let Some(st) = statuses.get(&n.name) else {
            continue;
        };
        if !st.resolvable {
            continue;
        }
        match select_victims(pod, cache, n, nominated.get(&n.name)) {
            Ok(v) if !v.is_empty() => cands.push((n.name.clone(), v)),
            Ok(_) => {}
            Err(s) => dry_run.push(s),
        }
    }
    match pick(cands) {
        Some((node, victims)) => Outcome::Preempt { node, victims },
        None => {
            let absent = nodes.len().saturating_sub(dry_run.len());
            let not_helpful = NodeStatus {
                resolvable: false,
                reasons: vec![NOT_HELPFUL.to_string()],
            };
            let all = dry_run
                .iter()
                .chain(std::iter::repeat_n(&not_helpful, absent));
            let msg = framework::fit_error_message(nodes.len(), all, None);
            Outcome::NotPossible {
                message: format!("preemption: {msg}"),
                clear_nomination: true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Node;
    use serde_json::json;

    use super::super::framework::tests::pod;

    fn cache() -> ClusterCache {
        let mut c = ClusterCache::default();
        for n in ["a", "b"] {
            let node: Node = serde_json::from_value(json!({
                "metadata": {"name": n},
                "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "10"}},
            }))
            .expect("node");
            c.upsert_node(&node);
        }
        c
    }

    fn p(name: &str, prio: i32, cpu: &str, start: &str) -> PodInfo {
        pod(json!({
            "metadata": {"name": name, "uid": name, "namespace": "default", "creationTimestamp": start},
            "spec": {"priority": prio, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
        }))
    }

    fn statuses(pod: &PodInfo, c: &ClusterCache) -> HashMap<String, NodeStatus> {
        let st = CycleState::new(pod, c);
        c.nodes
            .values()
            .filter_map(|n| {
                framework::filter(pod, &st, n, None)
                    .err()
                    .map(|e| (n.name.clone(), e))
            })
            .collect()
    }

    #[test]
    fn evicts_the_fewest_least_important_pods() {
        let mut c = cache();
        // Node a: two low pods of 1 cpu. Node b: one mid pod of 2 cpu.
        c.place(Arc::new(p("low1", 10, "1", "2024-01-01T00:00:00Z")), "a");
        c.place(Arc::new(p("low2", 10, "1", "2024-01-01T00:00:01Z")), "a");
        c.place(Arc::new(p("mid", 50, "2", "2024-01-01T00:00:00Z")), "b");
        let high = p("high", 100, "1", "2024-01-02T00:00:00Z");
        let s = statuses(&high, &c);
        assert_eq!(s.len(), 2);
        match preempt(&high, &c, &s, &HashMap::new()) {
            Outcome::Preempt { node, victims } => {
                // Node a: only one victim needed, of lower priority than b's.
                assert_eq!(node, "a");
                assert_eq!(victims.len(), 1);
                // The later-started one goes; the earlier is reprieved first.
                assert_eq!(victims[0].name, "low2");
            }
            o => panic!("expected preemption, got {o:?}"),
        }
    }

    #[test]
    fn not_helpful_for_equal_priority_or_unresolvable_nodes() {
        let mut c = cache();
        c.place(Arc::new(p("x", 100, "2", "2024-01-01T00:00:00Z")), "a");
        c.place(Arc::new(p("y", 100, "2", "2024-01-01T00:00:00Z")), "b");
        let same = p("same", 100, "1", "2024-01-02T00:00:00Z");
        let s = statuses(&same, &c);
        match preempt(&same, &c, &s, &HashMap::new()) {
            Outcome::NotPossible { message: m, .. } => assert_eq!(m, "preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."),
            o => panic!("{o:?}"),
        }
        let mut s2 = s.clone();
        for v in s2.values_mut() {
            v.resolvable = false;
        }
        let high = p("high", 1000, "1", "2024-01-02T00:00:00Z");
        match preempt(&high, &c, &s2, &HashMap::new()) {
            Outcome::NotPossible { message: m, .. } => assert_eq!(
                m,
                "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
            ),
            o => panic!("{o:?}"),
        }
        let mut never = p("never", 1000, "1", "2024-01-02T00:00:00Z");
        never.preempt_never = true;
        match preempt(&never, &c, &s, &HashMap::new()) {
            Outcome::NotPossible { message: m, .. } => {
                assert_eq!(m, "preemption: not eligible due to preemptionPolicy=Never.")
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn waits_for_terminating_victims_on_the_nominated_node() {
        let mut c = cache();
        let mut going = p("going", 1, "2", "2024-01-01T00:00:00Z");
        going.terminating = true;
        c.place(Arc::new(going), "a");
        c.place(Arc::new(p("b1", 1, "2", "2024-01-01T00:00:00Z")), "b");
        let mut high = p("high", 100, "1", "2024-01-02T00:00:00Z");
        high.nominated_node = Some("a".into());
        let s = statuses(&high, &c);
        match preempt(&high, &c, &s, &HashMap::new()) {
            Outcome::NotPossible { message: m, .. } => assert_eq!(
                m,
                "preemption: not eligible due to a terminating pod on the nominated node."
            ),
            o => panic!("{o:?}"),
        }
    }
}
