//! Pure rules: which taints a node's conditions call for (upstream's
//! `doNoExecuteTaintingPass` and `TaintNodesByCondition`), and whether and
//! for how long a pod's tolerations tolerate a set of taints (upstream's
//! `v1helper.GetMatchingTolerations` and the taint eviction controller's
//! `getMinTolerationTime`).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const TAINT_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const TAINT_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const TAINT_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const TAINT_NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
pub const TAINT_OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";
pub const NO_EXECUTE: &str = "NoExecute";
pub const NO_SCHEDULE: &str = "NoSchedule";

/// Every (key, effect) this controller owns on a node.
const CONTROLLED: &[(&str, &str)] = &[
    (TAINT_NOT_READY, NO_EXECUTE),
    (TAINT_UNREACHABLE, NO_EXECUTE),
    (TAINT_NOT_READY, NO_SCHEDULE),
    (TAINT_UNREACHABLE, NO_SCHEDULE),
    (TAINT_UNSCHEDULABLE, NO_SCHEDULE),
    (TAINT_MEMORY_PRESSURE, NO_SCHEDULE),
    (TAINT_DISK_PRESSURE, NO_SCHEDULE),
    (TAINT_PID_PRESSURE, NO_SCHEDULE),
    (TAINT_NETWORK_UNAVAILABLE, NO_SCHEDULE),
];

pub fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
}

/// The status of the node's Ready condition ("True", "False", "Unknown"), or
/// `None` when it has none yet.
pub fn ready_status(node: &Node) -> Option<&str> {
    condition(node, "Ready").map(|c| c.status.as_str())
}

/// The (key, effect) pairs the node's conditions and spec call for.
pub fn wanted(node: &Node) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    match ready_status(node) {
        Some("False") => {
            out.push((TAINT_NOT_READY, NO_EXECUTE));
            out.push((TAINT_NOT_READY, NO_SCHEDULE));
        }
        Some("Unknown") => {
            out.push((TAINT_UNREACHABLE, NO_EXECUTE));
            out.push((TAINT_UNREACHABLE, NO_SCHEDULE));
        }
        _ => {}
    }
    for (cond, key) in [
        ("MemoryPressure", TAINT_MEMORY_PRESSURE),
        ("DiskPressure", TAINT_DISK_PRESSURE),
        ("PIDPressure", TAINT_PID_PRESSURE),
        ("NetworkUnavailable", TAINT_NETWORK_UNAVAILABLE),
    ] {
        if condition(node, cond).is_some_and(|c| c.status == "True") {
            out.push((key, NO_SCHEDULE));
        }
    }
    if node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        out.push((TAINT_UNSCHEDULABLE, NO_SCHEDULE));
    }
    out
}

/// The node's taints with the controlled ones made to match `wanted`;
/// `None` when nothing changes. Taints kept keep their `timeAdded`; new
/// NoExecute taints get `now`.
pub fn reconcile_taints(node: &Node, now: &Time) -> Option<Vec<Taint>> {
    let current: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let want = wanted(node);
    let controlled = |t: &Taint| {
        CONTROLLED
            .iter()
            .any(|(k, e)| t.key == *k && t.effect == *e)
    };
    let mut next: Vec<Taint> = current
        .iter()
        .filter(|t| !controlled(t) || want.iter().any(|(k, e)| t.key == *k && t.effect == *e))
        .cloned()
        .collect();
    for (k, e) in &want {
        if !next.iter().any(|t| t.key == *k && t.effect == *e) {
            next.push(Taint {
                key: (*k).to_string(),
                effect: (*e).to_string(),
                value: None,
                time_added: (*e == NO_EXECUTE).then(|| now.clone()),
            });
        }
    }
    (next != current).then_some(next)
}

/// Upstream's `Toleration.ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// How long a pod may stay on a node with these NoExecute taints:
/// `Some(None)` forever, `Some(Some(d))` for `d`, `None` not at all (some
/// taint is not tolerated).
pub fn toleration_time(tolerations: &[Toleration], taints: &[&Taint]) -> Option<Option<Duration>> {
    let mut min: Option<Duration> = None;
    for taint in taints {
        let used = tolerations.iter().find(|t| tolerates(t, taint))?;
        if let Some(secs) = used.toleration_seconds {
            let d = Duration::from_secs(u64::try_from(secs).unwrap_or(0));
            min = Some(min.map_or(d, |m| m.min(d)));
        }
    }
    Some(min)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus};

    fn node(ready: Option<&str>, unschedulable: bool, taints: Vec<Taint>) -> Node {
        Node {
            spec: Some(NodeSpec {
                unschedulable: Some(unschedulable),
                taints: Some(taints),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: ready.map(|s| {
                    vec![NodeCondition {
                        type_: "Ready".into(),
                        status: s.into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            ..Default::default()
        }
    }

    fn now() -> Time {
        Time(jiff::Timestamp::now())
    }

    #[test]
    fn unknown_node_gets_unreachable_taints_with_time_added() {
        let n = node(
            Some("Unknown"),
            false,
            vec![taint("dedicated", NO_SCHEDULE)],
        );
        let t = reconcile_taints(&n, &now()).expect("changes");
        assert!(
            t.iter().any(|t| t.key == "dedicated"),
            "foreign taints stay"
        );
        let ne = t
            .iter()
            .find(|t| t.key == TAINT_UNREACHABLE && t.effect == NO_EXECUTE)
            .expect("NoExecute");
        assert!(ne.time_added.is_some());
        assert!(t
            .iter()
            .any(|t| t.key == TAINT_UNREACHABLE && t.effect == NO_SCHEDULE));
        assert!(!t.iter().any(|t| t.key == TAINT_NOT_READY));
    }

    #[test]
    fn ready_node_loses_controlled_taints_and_keeps_time_added() {
        let n = node(
            Some("True"),
            false,
            vec![
                taint(TAINT_UNREACHABLE, NO_EXECUTE),
                taint(TAINT_NOT_READY, NO_SCHEDULE),
            ],
        );
        assert_eq!(reconcile_taints(&n, &now()), Some(vec![]));
        let mut kept = taint(TAINT_NOT_READY, NO_EXECUTE);
        kept.time_added = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        let n = node(
            Some("False"),
            true,
            vec![kept.clone(), taint(TAINT_NOT_READY, NO_SCHEDULE)],
        );
        let t = reconcile_taints(&n, &now()).expect("unschedulable added");
        assert_eq!(t[0], kept);
        assert!(t.iter().any(|t| t.key == TAINT_UNSCHEDULABLE));
        let n = node(Some("True"), false, vec![]);
        assert_eq!(reconcile_taints(&n, &now()), None);
    }

    fn tol(key: Option<&str>, op: &str, effect: Option<&str>, secs: Option<i64>) -> Toleration {
        Toleration {
            key: key.map(str::to_string),
            operator: Some(op.into()),
            effect: effect.map(str::to_string),
            toleration_seconds: secs,
            value: None,
        }
    }

    #[test]
    fn toleration_times() {
        let unreachable = taint(TAINT_UNREACHABLE, NO_EXECUTE);
        let not_ready = taint(TAINT_NOT_READY, NO_EXECUTE);
        assert_eq!(toleration_time(&[], &[&unreachable]), None);
        let t = [tol(
            Some(TAINT_UNREACHABLE),
            "Exists",
            Some(NO_EXECUTE),
            Some(2),
        )];
        assert_eq!(
            toleration_time(&t, &[&unreachable]),
            Some(Some(Duration::from_secs(2)))
        );
        assert_eq!(toleration_time(&t, &[&unreachable, &not_ready]), None);
        // An empty key with Exists tolerates everything, forever.
        let all = [tol(None, "Exists", None, None)];
        assert_eq!(
            toleration_time(&all, &[&unreachable, &not_ready]),
            Some(None)
        );
        // Equal needs the same value.
        let mut valued = taint("k", NO_EXECUTE);
        valued.value = Some("v".into());
        let mut eq = tol(Some("k"), "Equal", Some(NO_EXECUTE), Some(5));
        assert_eq!(toleration_time(std::slice::from_ref(&eq), &[&valued]), None);
        eq.value = Some("v".into());
        assert_eq!(
            toleration_time(&[eq], &[&valued]),
            Some(Some(Duration::from_secs(5)))
        );
        // Effects must match when given.
        let ns = [tol(
            Some(TAINT_UNREACHABLE),
            "Exists",
            Some(NO_SCHEDULE),
            Some(1),
        )];
        assert_eq!(toleration_time(&ns, &[&unreachable]), None);
    }
}
