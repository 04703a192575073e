//! The Job controller's pod deletion order, which differs from
//! [`crate::util::pods`] (the pod predicates, availability, controller
//! references, selectors and pods from templates it shares with the other
//! controllers live there): [`deletion_order`] is a simplified `ActivePods`
//! order (no pod-deletion-cost, no node ranks, no ready-time step), where
//! `util::pods::pods_to_delete` is `ActivePodsWithRanks`.

use k8s_openapi::api::core::v1::Pod;

use crate::util::pods::{is_pod_ready, phase};

/// Upstream's `ActivePods` ordering for picking pods to delete: unassigned
/// before assigned, Pending before Unknown before Running, not ready before
/// ready, more restarts first, newer before older.
pub fn deletion_order(a: &Pod, b: &Pod) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let assigned = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let phase_rank = |p: &Pod| match phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    };
    let restarts = |p: &Pod| -> i32 {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
            .unwrap_or(0)
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    assigned(a)
        .cmp(&assigned(b))
        .then(phase_rank(a).cmp(&phase_rank(b)))
        .then(is_pod_ready(a).cmp(&is_pod_ready(b)))
        .then(restarts(b).cmp(&restarts(a)))
        .then(match (created(a), created(b)) {
            (Some(x), Some(y)) => y.cmp(&x),
            _ => Ordering::Equal,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn deletion_prefers_unscheduled_then_not_ready() {
        let mut pods = [
            pod(
                json!({"metadata": {"name": "ready"}, "spec": {"nodeName": "n", "containers": []}, "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}),
            ),
            pod(
                json!({"metadata": {"name": "unready"}, "spec": {"nodeName": "n", "containers": []}, "status": {"phase": "Running"}}),
            ),
            pod(
                json!({"metadata": {"name": "pending"}, "spec": {"containers": []}, "status": {"phase": "Pending"}}),
            ),
        ];
        pods.sort_by(deletion_order);
        let names: Vec<_> = pods
            .iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["pending", "unready", "ready"]);
    }
}
