//! The two pod helpers of the Job, DaemonSet and StatefulSet controllers
//! that differ from [`crate::util::pods`] (the pod predicates, controller
//! references, selectors and pods from templates they share with the
//! ReplicaSet controller live there):
//!
//! - [`is_available`] counts whole seconds and is available once
//!   `min_ready_seconds` have passed (`>=`), where `util::pods` follows
//!   upstream's strict `LastTransitionTime.Add(minReady).Before(now)`;
//! - [`deletion_order`] is a simplified `ActivePods` order (no
//!   pod-deletion-cost, no node ranks, no ready-time step), where
//!   `util::pods::pods_to_delete` is `ActivePodsWithRanks`.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use crate::util::pods::{is_pod_ready, phase, pod_ready_time};

/// Ready for at least `min_ready_seconds`, in whole seconds.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    if !is_pod_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    match pod_ready_time(pod) {
        None => false,
        Some(t) => now.as_second() - t.as_second() >= i64::from(min_ready_seconds),
    }
}

/// When to look again at a Ready pod that is not yet [`is_available`]: one
/// second past `min_ready_seconds` after it became Ready (`None` without a
/// Ready transition time).
pub fn recheck_availability_in(
    pod: &Pod,
    min_ready_seconds: i32,
    now: Timestamp,
) -> Option<std::time::Duration> {
    let since = pod_ready_time(pod)?;
    let left = since.as_second() + i64::from(min_ready_seconds) - now.as_second();
    Some(std::time::Duration::from_secs(left.max(0) as u64 + 1))
}

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
    fn availability_needs_min_ready_seconds() {
        let p = pod(
            json!({"metadata": {"name": "a"}, "status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"}]}}),
        );
        let t0: Timestamp = "2025-01-01T00:00:05Z".parse().expect("ts");
        assert!(is_available(&p, 0, t0));
        assert!(is_available(&p, 5, t0));
        assert!(!is_available(&p, 6, t0));
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
