//! Pods as workload controllers see them: activity, readiness and
//! availability (`podutil`), the ranking that picks which pods to delete
//! first (`controller.ActivePodsWithRanks`, with LogarithmicScaleDown and
//! PodDeletionCost on as in 1.33), controller references, and pods made from
//! a template (`GetPodFromTemplate`).

use std::cmp::Ordering;
use std::collections::HashMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use serde_json::{json, Map, Value};

use super::selector::Labels;

/// The annotation that orders pods for scale-down (lower goes first).
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The owner reference with `controller: true`, if any.
pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// Whether the object's controller reference points at `uid`.
pub fn controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && r.uid == uid)
}

/// The controller reference to a typed owner, as `metav1.NewControllerRef`.
pub fn controller_ref_to<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A controller reference to an owner, as `metav1.NewControllerRef`.
pub fn new_controller_ref(api_version: &str, kind: &str, name: &str, uid: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

pub fn labels(meta: &ObjectMeta) -> Labels {
    meta.labels.clone().unwrap_or_default()
}

/// The pod's phase ("" when unset).
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Succeeded or Failed.
pub fn is_pod_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Being deleted (it has a deletion timestamp).
pub fn is_pod_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// `controller.IsPodActive`: not finished and not being deleted.
pub fn is_pod_active(pod: &Pod) -> bool {
    !is_pod_terminal(pod) && !is_pod_terminating(pod)
}

/// The pod's Ready condition when it is True.
fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
}

pub fn is_pod_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some()
}

/// When the pod became Ready, if it is.
pub fn pod_ready_time(pod: &Pod) -> Option<Timestamp> {
    ready_condition(pod).and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

/// `podutil.IsPodAvailable`: Ready for at least `min_ready_seconds`.
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    let Some(cond) = ready_condition(pod) else {
        return false;
    };
    if min_ready_seconds <= 0 {
        return true;
    }
    match &cond.last_transition_time {
        Some(t) => {
            let ready_until = t.0 + jiff::SignedDuration::from_secs(i64::from(min_ready_seconds));
            ready_until < now
        }
        None => false,
    }
}

/// How long until a Ready pod becomes available, if it is Ready but not yet.
pub fn until_available(
    pod: &Pod,
    min_ready_seconds: i32,
    now: Timestamp,
) -> Option<std::time::Duration> {
    if min_ready_seconds <= 0 {
        return None;
    }
    let since = pod_ready_time(pod)?;
    let at = since + jiff::SignedDuration::from_secs(i64::from(min_ready_seconds));
    if at < now {
        return None;
    }
    let d = at.duration_since(now);
    std::time::Duration::try_from(d).ok()
}

fn phase_ordinal(pod: &Pod) -> u8 {
    match phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0)
}

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

/// `logarithmicRankDiff`: compares the base-2 logarithms of the ages.
fn logarithmic_rank_diff(t1: Timestamp, t2: Timestamp, now: Timestamp) -> i64 {
    let rank = |t: Timestamp| {
        let d = now.duration_since(t).as_nanos();
        if d > 0 {
            (d as f64).log2() as i64
        } else {
            -1
        }
    };
    rank(t1) - rank(t2)
}

/// `afterOrZero`: a missing time sorts first, then the later time.
fn after_or_zero(t1: Option<Timestamp>, t2: Option<Timestamp>) -> bool {
    match (t1, t2) {
        (None, _) | (_, None) => t1.is_none(),
        (Some(a), Some(b)) => a > b,
    }
}

/// Whether pod `i` should be deleted before pod `j` (`ActivePodsWithRanks.Less`).
fn delete_first(i: &Pod, ri: usize, j: &Pod, rj: usize, now: Timestamp) -> bool {
    // 1. Unassigned < assigned.
    let (ni, nj) = (node_name(i), node_name(j));
    if ni != nj && (ni.is_empty() || nj.is_empty()) {
        return ni.is_empty();
    }
    // 2. Pending < Unknown < Running.
    if phase_ordinal(i) != phase_ordinal(j) {
        return phase_ordinal(i) < phase_ordinal(j);
    }
    // 3. Not ready < ready.
    if is_pod_ready(i) != is_pod_ready(j) {
        return !is_pod_ready(i);
    }
    // 4. Lower pod-deletion-cost < higher.
    if deletion_cost(i) != deletion_cost(j) {
        return deletion_cost(i) < deletion_cost(j);
    }
    // 5. Doubled up (more related pods on the same node) < not.
    if ri != rj {
        return ri > rj;
    }
    // 6. Ready for a shorter time < longer (in logarithmic buckets).
    if is_pod_ready(i) && is_pod_ready(j) {
        let (t1, t2) = (pod_ready_time(i), pod_ready_time(j));
        if t1 != t2 {
            return match (t1, t2) {
                (Some(a), Some(b)) => {
                    let diff = logarithmic_rank_diff(a, b, now);
                    if diff == 0 {
                        uid(i) < uid(j)
                    } else {
                        diff < 0
                    }
                }
                _ => after_or_zero(t1, t2),
            };
        }
    }
    // 7. More restarts < fewer.
    if max_restarts(i) != max_restarts(j) {
        return max_restarts(i) > max_restarts(j);
    }
    // 8. Newer < older.
    let (c1, c2) = (
        i.metadata.creation_timestamp.as_ref().map(|t| t.0),
        j.metadata.creation_timestamp.as_ref().map(|t| t.0),
    );
    if c1 != c2 {
        return match (c1, c2) {
            (Some(a), Some(b)) => {
                let diff = logarithmic_rank_diff(a, b, now);
                if diff == 0 {
                    uid(i) < uid(j)
                } else {
                    diff < 0
                }
            }
            _ => after_or_zero(c1, c2),
        };
    }
    false
}

/// `getPodsToDelete`: the `count` pods of `pods` to delete first. A pod's
/// rank is how many active `related` pods (all pods of the owner's siblings,
/// `pods` included) share its node.
pub fn pods_to_delete<'a>(
    pods: &[&'a Pod],
    related: &[&Pod],
    count: usize,
    now: Timestamp,
) -> Vec<&'a Pod> {
    if count >= pods.len() {
        return pods.to_vec();
    }
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for p in related.iter().filter(|p| is_pod_active(p)) {
        *on_node.entry(node_name(p)).or_default() += 1;
    }
    let mut ranked: Vec<(&Pod, usize)> = pods
        .iter()
        .map(|p| (*p, on_node.get(node_name(p)).copied().unwrap_or(0)))
        .collect();
    ranked.sort_by(|(a, ra), (b, rb)| {
        if delete_first(a, *ra, b, *rb, now) {
            Ordering::Less
        } else if delete_first(b, *rb, a, *ra, now) {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    });
    ranked.into_iter().take(count).map(|(p, _)| p).collect()
}

/// How a pod made from a template is named.
#[derive(Debug, Clone, Copy)]
pub enum PodName<'a> {
    /// `metadata.name` (StatefulSet pods).
    Fixed(&'a str),
    /// `metadata.generateName`: the API server adds a random suffix.
    Generate(&'a str),
}

/// A pod for `template` (raw JSON, so no field is lost) owned by
/// `controller_ref` (`GetPodFromTemplate`): the template's labels,
/// annotations, finalizers and spec.
pub fn pod_from_template(template: &Value, controller_ref: Value, name: PodName<'_>) -> Value {
    let meta = template.get("metadata").and_then(Value::as_object);
    let mut metadata = Map::new();
    match name {
        PodName::Fixed(n) => metadata.insert("name".into(), json!(n)),
        PodName::Generate(g) => metadata.insert("generateName".into(), json!(g)),
    };
    for field in ["labels", "annotations", "finalizers"] {
        if let Some(v) = meta.and_then(|m| m.get(field)) {
            if !v.is_null() {
                metadata.insert(field.into(), v.clone());
            }
        }
    }
    metadata.insert("ownerReferences".into(), json!([controller_ref]));
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
    })
}

/// [`pod_from_template`] for a typed template and owner reference.
pub fn pod_from_typed_template(
    template: &PodTemplateSpec,
    controller_ref: &OwnerReference,
    name: PodName<'_>,
) -> Value {
    pod_from_template(
        &serde_json::to_value(template).unwrap_or(Value::Null),
        serde_json::to_value(controller_ref).unwrap_or(Value::Null),
        name,
    )
}

/// `getPodsPrefix`: `<name>-`, cut so that the generated name stays valid.
pub fn generate_name_prefix(controller_name: &str) -> String {
    format!("{controller_name}-")
}

/// The `namespace/name` key of a pod.
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(
        name: &str,
        node: &str,
        phase: &str,
        ready_secs_ago: Option<i64>,
        now: Timestamp,
    ) -> Pod {
        let mut conditions = vec![];
        if let Some(s) = ready_secs_ago {
            conditions.push(json!({"type": "Ready", "status": "True",
                "lastTransitionTime": (now - jiff::SignedDuration::from_secs(s)).to_string()}));
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                "creationTimestamp": (now - jiff::SignedDuration::from_secs(3600)).to_string()},
            "spec": {"containers": [{"name": "c"}], "nodeName": if node.is_empty() { Value::Null } else { json!(node) }},
            "status": {"phase": phase, "conditions": conditions},
        }))
        .unwrap()
    }

    fn names(pods: &[&Pod]) -> Vec<String> {
        pods.iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect()
    }

    #[test]
    fn ranking_follows_upstream_order() {
        let now = Timestamp::now();
        let running_ready_old = pod("ready-old", "n3", "Running", Some(10_000), now);
        let running_ready_new = pod("ready-new", "n2", "Running", Some(5), now);
        let running_not_ready = pod("not-ready", "n1", "Running", None, now);
        let pending = pod("pending", "n1", "Pending", None, now);
        let unknown = pod("unknown", "n1", "Unknown", None, now);
        let unscheduled = pod("unscheduled", "", "Pending", None, now);
        let all = [
            &running_ready_old,
            &running_ready_new,
            &running_not_ready,
            &unknown,
            &pending,
            &unscheduled,
        ];
        let got = pods_to_delete(&all, &all, 6 - 1, now);
        assert_eq!(
            names(&got),
            [
                "unscheduled",
                "pending",
                "unknown",
                "not-ready",
                "ready-new"
            ]
        );
    }

    #[test]
    fn deletion_cost_and_doubled_up_pods_go_first() {
        let now = Timestamp::now();
        let a = pod("a", "n1", "Running", Some(100), now);
        let b = pod("b", "n1", "Running", Some(100), now);
        let c = pod("c", "n2", "Running", Some(100), now);
        let mut cheap = pod("cheap", "n3", "Running", Some(100), now);
        cheap.metadata.annotations =
            Some([(POD_DELETION_COST.to_string(), "-5".to_string())].into());
        // "cheap" first by cost; then a/b which share n1 over c alone on n2.
        let got = pods_to_delete(&[&c, &a, &cheap, &b], &[&a, &b, &c, &cheap], 3, now);
        assert_eq!(names(&got)[0], "cheap");
        let rest: Vec<String> = names(&got)[1..].to_vec();
        assert!(
            rest.contains(&"a".to_string()) && rest.contains(&"b".to_string()),
            "{rest:?}"
        );
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let now = Timestamp::now();
        let p = pod("p", "n1", "Running", Some(5), now);
        assert!(is_pod_available(&p, 0, now));
        assert!(is_pod_available(&p, 4, now));
        assert!(
            !is_pod_available(&p, 5, now),
            "upstream uses a strict Before"
        );
        assert!(!is_pod_available(&p, 10, now));
        let wait = until_available(&p, 10, now).unwrap();
        assert_eq!(wait.as_secs(), 5);
        let not_ready = pod("q", "n1", "Running", None, now);
        assert!(!is_pod_available(&not_ready, 0, now));
    }

    #[test]
    fn pod_from_template_keeps_raw_fields_and_owner() {
        let t = json!({"metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i", "futureField": 1}]}});
        let owner = new_controller_ref("apps/v1", "ReplicaSet", "web-abc", "u1");
        let p = pod_from_template(
            &t,
            owner,
            PodName::Generate(&generate_name_prefix("web-abc")),
        );
        assert_eq!(p["metadata"]["generateName"], "web-abc-");
        assert_eq!(p["metadata"]["labels"]["app"], "web");
        assert_eq!(p["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(
            p["metadata"]["ownerReferences"][0]["blockOwnerDeletion"],
            true
        );
        assert_eq!(p["spec"]["containers"][0]["futureField"], 1);
        let named = pod_from_template(&t, json!({}), PodName::Fixed("web-0"));
        assert_eq!(named["metadata"]["name"], "web-0");
        assert!(named["metadata"].get("generateName").is_none());
    }

    #[test]
    fn active_terminal_terminating() {
        let now = Timestamp::now();
        let running = pod("a", "n1", "Running", None, now);
        let done = pod("b", "n1", "Succeeded", None, now);
        let mut deleting = pod("c", "n1", "Running", None, now);
        deleting.metadata.deletion_timestamp = running.metadata.creation_timestamp.clone();
        assert!(is_pod_active(&running));
        assert!(!is_pod_active(&done) && is_pod_terminal(&done));
        assert!(!is_pod_active(&deleting) && is_pod_terminating(&deleting));
        assert!(!is_pod_terminal(&deleting));
    }

    #[test]
    fn controller_refs_name_the_owner() {
        let rs: k8s_openapi::api::apps::v1::ReplicaSet =
            serde_json::from_value(json!({"metadata": {"name": "web", "uid": "u1"}})).unwrap();
        let r = controller_ref_to(&rs);
        assert_eq!(
            (r.kind.as_str(), r.api_version.as_str()),
            ("ReplicaSet", "apps/v1")
        );
        assert_eq!(r.controller, Some(true));
        let mut meta = ObjectMeta {
            owner_references: Some(vec![r.clone()]),
            ..Default::default()
        };
        assert!(controlled_by(&meta, "u1"));
        assert!(!controlled_by(&meta, "u2"));
        meta.owner_references = Some(vec![OwnerReference {
            controller: None,
            ..r
        }]);
        assert!(
            !controlled_by(&meta, "u1"),
            "only a controller reference counts"
        );
    }
}
