//! `NodeUnschedulable`: a cordoned node (`spec.unschedulable`) takes only
//! pods that tolerate the `node.kubernetes.io/unschedulable:NoSchedule`
//! taint.

use k8s_openapi::api::core::v1::{Taint, Toleration};

pub const TAINT_KEY: &str = "node.kubernetes.io/unschedulable";
pub const ERR_REASON: &str = "node(s) were unschedulable";

/// The filter: `Some(reason)` when the pod may not go to this node.
pub fn check(unschedulable: bool, tolerations: &[Toleration]) -> Option<&'static str> {
    if !unschedulable {
        return None;
    }
    let taint = Taint {
        key: TAINT_KEY.to_string(),
        effect: "NoSchedule".to_string(),
        ..Default::default()
    };
    if super::taints::tolerated(tolerations, &taint) {
        None
    } else {
        Some(ERR_REASON)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cordoned_nodes_need_the_toleration() {
        assert_eq!(check(false, &[]), None);
        assert_eq!(check(true, &[]), Some(ERR_REASON));
        let tol: Vec<Toleration> = serde_json::from_value(json!([
            {"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}
        ]))
        .expect("tolerations");
        assert_eq!(check(true, &tol), None);
    }
}
