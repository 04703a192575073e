//! `NodeAffinity`: `spec.nodeSelector` and required node affinity (a
//! filter), preferred node affinity (a score). Also `NodeName` and the
//! label-selector matching that inter-pod affinity shares.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    NodeSelectorRequirement, NodeSelectorTerm, PodSpec, PreferredSchedulingTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub const ERR_REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";
pub const ERR_REASON_NODE_NAME: &str = "node(s) didn't match the requested node name";

type Labels = BTreeMap<String, String>;

/// One `matchExpressions` requirement against node labels.
fn requirement_matches(r: &NodeSelectorRequirement, labels: &Labels) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let have = labels.get(&r.key);
    match r.operator.as_str() {
        "In" => have.is_some_and(|v| values.contains(v)),
        "NotIn" => have.is_none_or(|v| !values.contains(v)),
        "Exists" => have.is_some(),
        "DoesNotExist" => have.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), [want]) = (have, values) else {
                return false;
            };
            let (Ok(h), Ok(w)) = (have.parse::<i64>(), want.parse::<i64>()) else {
                return false;
            };
            if r.operator == "Gt" {
                h > w
            } else {
                h < w
            }
        }
        _ => false,
    }
}

/// `matchFields`: only `metadata.name` is a node field.
fn field_matches(r: &NodeSelectorRequirement, node_name: &str) -> bool {
    if r.key != "metadata.name" {
        return false;
    }
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => values.len() == 1 && values[0] == node_name,
        "NotIn" => values.len() == 1 && values[0] != node_name,
        _ => false,
    }
}

/// A node selector term: its expressions and fields all match. A term
/// with neither matches nothing.
pub fn term_matches(t: &NodeSelectorTerm, node_name: &str, labels: &Labels) -> bool {
    let exprs = t.match_expressions.as_deref().unwrap_or_default();
    let fields = t.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs.iter().all(|r| requirement_matches(r, labels))
        && fields.iter().all(|r| field_matches(r, node_name))
}

/// The filter: `nodeSelector` labels all present, and one of the required
/// node affinity terms matching (when there are any).
pub fn required_matches(spec: &PodSpec, node_name: &str, labels: &Labels) -> bool {
    if let Some(sel) = &spec.node_selector {
        if !sel.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        Some(sel) => sel
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, node_name, labels)),
        None => true,
    }
}

fn preferred_terms(spec: &PodSpec) -> &[PreferredSchedulingTerm] {
    spec.affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.preferred_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or_default()
}

pub fn has_preferred(spec: &PodSpec) -> bool {
    !preferred_terms(spec).is_empty()
}

/// The raw score: the weights of the preferred terms this node matches.
pub fn preferred_score(spec: &PodSpec, node_name: &str, labels: &Labels) -> i64 {
    preferred_terms(spec)
        .iter()
        .filter(|t| t.weight != 0 && term_matches(&t.preference, node_name, labels))
        .map(|t| i64::from(t.weight))
        .sum()
}

/// Upstream's `DefaultNormalizeScore`: scale to 0..100 by the highest
/// score; `reverse` turns it around (fewer is better).
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores
                .iter_mut()
                .for_each(|s| *s = super::resources::MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        let v = super::resources::MAX_NODE_SCORE * *s / max;
        *s = if reverse {
            super::resources::MAX_NODE_SCORE - v
        } else {
            v
        };
    }
}

/// A metav1 label selector against labels. `None` matches nothing; an
/// empty selector matches everything.
pub fn label_selector_matches(sel: Option<&LabelSelector>, labels: &Labels) -> bool {
    let Some(sel) = sel else { return false };
    if let Some(ml) = &sel.match_labels {
        if !ml.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or_default();
        let have = labels.get(&e.key);
        let ok = match e.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> PodSpec {
        let mut v = v;
        v["containers"] = json!([{"name": "c"}]);
        serde_json::from_value(v).expect("spec")
    }

    fn labels(v: serde_json::Value) -> Labels {
        serde_json::from_value(v).expect("labels")
    }

    #[test]
    fn node_selector_needs_every_label() {
        let s = spec(json!({"nodeSelector": {"disk": "ssd", "zone": "a"}}));
        assert!(required_matches(
            &s,
            "n",
            &labels(json!({"disk": "ssd", "zone": "a", "x": "y"}))
        ));
        assert!(!required_matches(&s, "n", &labels(json!({"disk": "ssd"}))));
    }

    #[test]
    fn required_affinity_terms_are_ored_and_expressions_anded() {
        let s = spec(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [
                    {"key": "gpu", "operator": "Exists"},
                    {"key": "cores", "operator": "Gt", "values": ["4"]},
                ]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["special"]}]},
            ]}}}}),
        );
        assert!(required_matches(
            &s,
            "n1",
            &labels(json!({"gpu": "a", "cores": "8"}))
        ));
        assert!(!required_matches(
            &s,
            "n1",
            &labels(json!({"gpu": "a", "cores": "4"}))
        ));
        assert!(!required_matches(&s, "n1", &labels(json!({"cores": "16"}))));
        assert!(required_matches(&s, "special", &labels(json!({}))));
        let s = spec(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [
                    {"key": "zone", "operator": "NotIn", "values": ["a", "b"]},
                    {"key": "old", "operator": "DoesNotExist"},
                    {"key": "mem", "operator": "Lt", "values": ["x"]},
                ]},
                {},
            ]}}}}),
        );
        // An unparsable Lt never matches; an empty term matches nothing.
        assert!(!required_matches(
            &s,
            "n",
            &labels(json!({"zone": "c", "mem": "1"}))
        ));
        let s = spec(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [
                    {"key": "zone", "operator": "NotIn", "values": ["a", "b"]},
                    {"key": "old", "operator": "DoesNotExist"},
                ]},
            ]}}}}),
        );
        assert!(required_matches(&s, "n", &labels(json!({"zone": "c"}))));
        assert!(required_matches(&s, "n", &labels(json!({}))));
        assert!(!required_matches(&s, "n", &labels(json!({"zone": "a"}))));
        assert!(!required_matches(&s, "n", &labels(json!({"old": ""}))));
    }

    #[test]
    fn preferred_weights_add_up_and_normalize() {
        let s = spec(
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 5, "preference": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}},
                {"weight": 20, "preference": {"matchExpressions": [{"key": "b", "operator": "In", "values": ["1"]}]}},
            ]}}}),
        );
        let mut scores = vec![
            preferred_score(&s, "x", &labels(json!({"a": ""}))),
            preferred_score(&s, "y", &labels(json!({"a": "", "b": "1"}))),
            preferred_score(&s, "z", &labels(json!({}))),
        ];
        assert_eq!(scores, vec![5, 25, 0]);
        default_normalize(&mut scores, false);
        assert_eq!(scores, vec![20, 100, 0]);
        let mut r = vec![1, 0, 2];
        default_normalize(&mut r, true);
        assert_eq!(r, vec![50, 100, 0]);
    }

    #[test]
    fn label_selectors() {
        let sel: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}],
        }))
        .expect("selector");
        assert!(label_selector_matches(
            Some(&sel),
            &labels(json!({"app": "web"}))
        ));
        assert!(!label_selector_matches(
            Some(&sel),
            &labels(json!({"app": "web", "tier": "db"}))
        ));
        assert!(label_selector_matches(
            Some(&LabelSelector::default()),
            &labels(json!({}))
        ));
        assert!(!label_selector_matches(None, &labels(json!({}))));
    }
}
