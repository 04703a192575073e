//! Which nodes a DaemonSet's pod belongs on (upstream
//! `NodeShouldRunDaemonPod`): the template's nodeName, nodeSelector and
//! required node affinity, and the node's taints against the pod's
//! tolerations plus the ones the DaemonSet controller always adds.

use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec,
    PodTemplateSpec, Taint, Toleration,
};

/// Upstream's `AddOrUpdateDaemonPodTolerations`.
pub fn add_default_tolerations(spec: &mut PodSpec) {
    let host_network = spec.host_network == Some(true);
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    let mut add = |key: &str, effect: &str| {
        let t = Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Default::default()
        };
        if !tolerations.iter().any(|x| {
            x.key == t.key && x.effect == t.effect && x.operator == t.operator && x.value.is_none()
        }) {
            tolerations.push(t);
        }
    };
    add("node.kubernetes.io/not-ready", "NoExecute");
    add("node.kubernetes.io/unreachable", "NoExecute");
    add("node.kubernetes.io/disk-pressure", "NoSchedule");
    add("node.kubernetes.io/memory-pressure", "NoSchedule");
    add("node.kubernetes.io/pid-pressure", "NoSchedule");
    add("node.kubernetes.io/unschedulable", "NoSchedule");
    if host_network {
        add("node.kubernetes.io/network-unavailable", "NoSchedule");
    }
}

/// Upstream's `ReplaceDaemonSetPodNodeNameNodeAffinity`: the pod may only
/// be scheduled to `node` (matchFields on metadata.name).
pub fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
        }],
    });
}

/// The node a daemon pod is meant for: its nodeName, else the
/// `metadata.name` its required affinity pins it to.
pub fn target_node(spec: &PodSpec) -> Option<String> {
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.iter().flatten().find_map(|r| {
            (r.key == "metadata.name" && r.operator == "In")
                .then(|| {
                    r.values
                        .as_ref()
                        .filter(|v| v.len() == 1)
                        .map(|v| v[0].clone())
                })
                .flatten()
        })
    })
}

/// Upstream's `ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    if t.key
        .as_deref()
        .is_some_and(|k| !k.is_empty() && k != taint.key)
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

fn untolerated<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    effects: &[&str],
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Upstream's `GetRequiredNodeAffinity(pod).Match(node)`: nodeSelector and
/// required node affinity (terms ORed; an empty term matches nothing).
pub fn matches_node_affinity(spec: &PodSpec, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let name = node.metadata.name.as_deref().unwrap_or("");
    if let Some(sel) = &spec.node_selector {
        if sel.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return false;
        }
    }
    let Some(required) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
    else {
        return true;
    };
    required.node_selector_terms.iter().any(|term| {
        let exprs = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        if exprs.is_empty() && fields.is_empty() {
            return false;
        }
        exprs
            .iter()
            .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
            && fields.iter().all(|r| {
                r.key == "metadata.name"
                    && matches!(r.operator.as_str(), "In" | "NotIn")
                    && requirement_matches(r, Some(name))
            })
    })
}

/// (should run, should continue running) — upstream's
/// `NodeShouldRunDaemonPod`.
pub fn should_run(template: &PodTemplateSpec, node: &Node) -> (bool, bool) {
    let mut spec = template.spec.clone().unwrap_or_default();
    add_default_tolerations(&mut spec);
    let node_name = node.metadata.name.as_deref().unwrap_or("");
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != node_name)
    {
        return (false, false);
    }
    if !matches_node_affinity(&spec, node) {
        return (false, false);
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let tolerations = spec.tolerations.clone().unwrap_or_default();
    if untolerated(&taints, &tolerations, &["NoSchedule", "NoExecute"]).is_some() {
        let keep = untolerated(&taints, &tolerations, &["NoExecute"]).is_none();
        return (false, keep);
    }
    (true, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).expect("node")
    }

    fn template(v: serde_json::Value) -> PodTemplateSpec {
        serde_json::from_value(v).expect("template")
    }

    #[test]
    fn default_tolerations_cover_conditions() {
        let t = template(json!({"spec": {"containers": []}}));
        let unreachable = node(json!({"metadata": {"name": "n"}, "spec": {"taints": [
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
            {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/disk-pressure", "effect": "NoSchedule"}
        ]}}));
        assert_eq!(should_run(&t, &unreachable), (true, true));
        let net = node(json!({"metadata": {"name": "n"}, "spec": {"taints": [
            {"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]}}));
        assert_eq!(should_run(&t, &net), (false, true));
        let host = template(json!({"spec": {"hostNetwork": true, "containers": []}}));
        assert_eq!(should_run(&host, &net), (true, true));
    }

    #[test]
    fn taints_and_tolerations() {
        let gpu = node(json!({"metadata": {"name": "n"}, "spec": {"taints": [
            {"key": "gpu", "value": "yes", "effect": "NoSchedule"}]}}));
        let evict = node(json!({"metadata": {"name": "n"}, "spec": {"taints": [
            {"key": "dedicated", "effect": "NoExecute"}]}}));
        let plain = template(json!({"spec": {"containers": []}}));
        assert_eq!(should_run(&plain, &gpu), (false, true));
        assert_eq!(should_run(&plain, &evict), (false, false));
        let tol = template(json!({"spec": {"containers": [], "tolerations": [
            {"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoSchedule"}]}}));
        assert_eq!(should_run(&tol, &gpu), (true, true));
        let wrong = template(json!({"spec": {"containers": [], "tolerations": [
            {"key": "gpu", "value": "no"}]}}));
        assert_eq!(should_run(&wrong, &gpu), (false, true));
        let all =
            template(json!({"spec": {"containers": [], "tolerations": [{"operator": "Exists"}]}}));
        assert_eq!(should_run(&all, &evict), (true, true));
    }

    #[test]
    fn selectors_and_affinity() {
        let n =
            node(json!({"metadata": {"name": "edge-1", "labels": {"zone": "a", "cores": "4"}}}));
        let sel = template(json!({"spec": {"containers": [], "nodeSelector": {"zone": "b"}}}));
        assert_eq!(should_run(&sel, &n), (false, false));
        let aff = template(
            json!({"spec": {"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["8"]}]},
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
            ]}}}}}),
        );
        assert_eq!(should_run(&aff, &n), (true, true));
        let named = template(json!({"spec": {"containers": [], "nodeName": "edge-2"}}));
        assert_eq!(should_run(&named, &n), (false, false));
    }

    #[test]
    fn pinning_replaces_required_affinity() {
        let mut spec: PodSpec =
            serde_json::from_value(json!({"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}}))
            .expect("spec");
        pin_to_node(&mut spec, "edge-1");
        assert_eq!(target_node(&spec).as_deref(), Some("edge-1"));
        let v = serde_json::to_value(&spec).expect("json");
        assert_eq!(
            v.pointer("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms"),
            Some(&json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["edge-1"]}]}]))
        );
    }
}
