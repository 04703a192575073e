//! `TaintToleration`: NoSchedule and NoExecute taints must be tolerated
//! (a filter); untolerated PreferNoSchedule taints lower a node's score.

use k8s_openapi::api::core::v1::{Taint, Toleration};

/// Upstream's `Toleration.ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
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

pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// The filter: the reason for the first NoSchedule/NoExecute taint that no
/// toleration matches, in upstream's words.
pub fn untolerated_reason(taints: &[Taint], tolerations: &[Toleration]) -> Option<String> {
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|t| !tolerated(tolerations, t))
        .map(|t| {
            format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or("")
            )
        })
}

/// The raw score: how many PreferNoSchedule taints the pod's
/// PreferNoSchedule (or effect-less) tolerations leave untolerated. Lower is
/// better; normalized in reverse.
pub fn intolerable_prefer_no_schedule(taints: &[Taint], tolerations: &[Toleration]) -> i64 {
    let prefer: Vec<&Toleration> = tolerations
        .iter()
        .filter(|t| {
            matches!(
                t.effect.as_deref(),
                None | Some("") | Some("PreferNoSchedule")
            )
        })
        .collect();
    taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule")
        .filter(|taint| !prefer.iter().any(|t| tolerates(t, taint)))
        .count() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn taints(v: serde_json::Value) -> Vec<Taint> {
        serde_json::from_value(v).expect("taints")
    }
    fn tols(v: serde_json::Value) -> Vec<Toleration> {
        serde_json::from_value(v).expect("tolerations")
    }

    #[test]
    fn toleration_matching() {
        let t = taints(json!([{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]));
        assert!(tolerated(
            &tols(json!([{"key": "gpu", "operator": "Equal", "value": "yes"}])),
            &t[0]
        ));
        assert!(tolerated(
            &tols(json!([{"key": "gpu", "value": "yes", "effect": "NoSchedule"}])),
            &t[0]
        ));
        assert!(tolerated(
            &tols(json!([{"key": "gpu", "operator": "Exists"}])),
            &t[0]
        ));
        assert!(tolerated(&tols(json!([{"operator": "Exists"}])), &t[0]));
        assert!(!tolerated(
            &tols(json!([{"key": "gpu", "value": "no"}])),
            &t[0]
        ));
        assert!(!tolerated(
            &tols(json!([{"key": "gpu", "operator": "Exists", "effect": "NoExecute"}])),
            &t[0]
        ));
        assert!(!tolerated(
            &tols(json!([{"key": "other", "operator": "Exists"}])),
            &t[0]
        ));
    }

    #[test]
    fn filter_names_the_first_untolerated_hard_taint() {
        let t = taints(json!([
            {"key": "soft", "effect": "PreferNoSchedule"},
            {"key": "a", "value": "1", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
        ]));
        assert_eq!(
            untolerated_reason(&t, &[]).as_deref(),
            Some("node(s) had untolerated taint {a: 1}")
        );
        assert_eq!(
            untolerated_reason(&t, &tols(json!([{"key": "a", "value": "1"}]))).as_deref(),
            Some("node(s) had untolerated taint {node.kubernetes.io/not-ready: }")
        );
        assert_eq!(
            untolerated_reason(&t, &tols(json!([{"operator": "Exists"}]))),
            None
        );
    }

    #[test]
    fn prefer_no_schedule_counts() {
        let t = taints(json!([
            {"key": "a", "effect": "PreferNoSchedule"},
            {"key": "b", "effect": "PreferNoSchedule"},
            {"key": "c", "effect": "NoSchedule"},
        ]));
        assert_eq!(intolerable_prefer_no_schedule(&t, &[]), 2);
        assert_eq!(
            intolerable_prefer_no_schedule(&t, &tols(json!([{"key": "a", "operator": "Exists"}]))),
            1
        );
        // A NoSchedule toleration does not count for PreferNoSchedule.
        assert_eq!(
            intolerable_prefer_no_schedule(
                &t,
                &tols(json!([{"key": "b", "operator": "Exists", "effect": "NoSchedule"}]))
            ),
            2
        );
    }
}
