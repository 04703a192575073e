//! Pod predicates and pod-making helpers shared by the Job, CronJob,
//! DaemonSet and StatefulSet controllers (upstream's `pkg/api/v1/pod` and
//! `pkg/controller` helpers, the parts these controllers use).

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use serde_json::{json, Value};

/// Phase of a pod ("" when unset).
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Succeeded or Failed.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Upstream's `IsPodActive`: not terminal and not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    !is_terminal(pod) && !is_terminating(pod)
}

/// The pod's Ready condition, if True: its last transition time.
pub fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Upstream's `IsPodAvailable`: ready for at least `min_ready_seconds`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(t)) => now.as_second() - t.as_second() >= i64::from(min_ready_seconds),
    }
}

/// Whether the object's controller reference points at `uid`.
pub fn controlled_by(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    uid: &str,
) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && r.uid == uid)
}

/// The controller reference for an owner (`controller`, `blockOwnerDeletion`).
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A label selector in the query-string form (`a=b,c in (d),!e`).
/// `None` when the selector selects nothing (upstream: `labels.Nothing()`).
pub fn selector_string(sel: &LabelSelector) -> Option<String> {
    let mut parts = Vec::new();
    for (k, v) in sel.match_labels.iter().flatten() {
        parts.push(format!("{k}={v}"));
    }
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        match e.operator.as_str() {
            "In" => parts.push(format!("{} in ({values})", e.key)),
            "NotIn" => parts.push(format!("{} notin ({values})", e.key)),
            "Exists" => parts.push(e.key.clone()),
            "DoesNotExist" => parts.push(format!("!{}", e.key)),
            _ => return None,
        }
    }
    Some(parts.join(","))
}

/// Whether `labels` match the selector (an empty selector matches all).
pub fn selector_matches(
    sel: &LabelSelector,
    labels: Option<&std::collections::BTreeMap<String, String>>,
) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k));
    for (k, v) in sel.match_labels.iter().flatten() {
        if get(k) != Some(v) {
            return false;
        }
    }
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or_default();
        let ok = match e.operator.as_str() {
            "In" => get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => get(&e.key).is_some(),
            "DoesNotExist" => get(&e.key).is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// A pod (raw JSON) from a template: the template's labels, annotations,
/// finalizers and spec, the controller reference, and a name or
/// generateName.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    owner: OwnerReference,
    name: Option<&str>,
    generate_name: Option<&str>,
) -> Value {
    let tpl = serde_json::to_value(template).unwrap_or(Value::Null);
    let mut meta = serde_json::Map::new();
    if let Some(m) = tpl.get("metadata").and_then(Value::as_object) {
        for key in ["labels", "annotations", "finalizers"] {
            if let Some(v) = m.get(key) {
                meta.insert(key.into(), v.clone());
            }
        }
    }
    if let Some(n) = name {
        meta.insert("name".into(), json!(n));
    } else if let Some(g) = generate_name {
        meta.insert("generateName".into(), json!(g));
    }
    meta.insert(
        "ownerReferences".into(),
        serde_json::to_value(vec![owner]).unwrap_or(Value::Null),
    );
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": tpl.get("spec").cloned().unwrap_or_else(|| json!({})),
    })
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
        .then(is_ready(a).cmp(&is_ready(b)))
        .then(restarts(b).cmp(&restarts(a)))
        .then(match (created(a), created(b)) {
            (Some(x), Some(y)) => y.cmp(&x),
            _ => Ordering::Equal,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn active_terminal_terminating() {
        let running = pod(json!({"metadata": {"name": "a"}, "status": {"phase": "Running"}}));
        let done = pod(json!({"metadata": {"name": "b"}, "status": {"phase": "Succeeded"}}));
        let deleting = pod(
            json!({"metadata": {"name": "c", "deletionTimestamp": "2025-01-01T00:00:00Z"}, "status": {"phase": "Running"}}),
        );
        assert!(is_active(&running));
        assert!(!is_active(&done) && is_terminal(&done));
        assert!(!is_active(&deleting) && is_terminating(&deleting));
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
    fn selectors() {
        let sel = LabelSelector {
            match_labels: Some([("app".to_string(), "x".to_string())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["a".into(), "b".into()]),
            }]),
        };
        assert_eq!(
            selector_string(&sel).as_deref(),
            Some("app=x,tier in (a,b)")
        );
        let l: std::collections::BTreeMap<String, String> = [
            ("app".to_string(), "x".to_string()),
            ("tier".to_string(), "b".to_string()),
        ]
        .into();
        assert!(selector_matches(&sel, Some(&l)));
        let l2: std::collections::BTreeMap<String, String> =
            [("app".to_string(), "x".to_string())].into();
        assert!(!selector_matches(&sel, Some(&l2)));
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
