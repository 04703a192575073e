//! Upstream's `DefaultTolerationSeconds` admission plugin
//! (`plugin/pkg/admission/defaulttolerationseconds`): a pod created without
//! a toleration for the `node.kubernetes.io/not-ready` or
//! `node.kubernetes.io/unreachable` NoExecute taint gets one, with
//! `tolerationSeconds`, so that its node's failure evicts it after that
//! long. kube-apiserver's defaults are 300 s; kedge's are 10 s
//! (`--default-not-ready-toleration-seconds`,
//! `--default-unreachable-toleration-seconds`), so pods of a lost edge node
//! are replaced within seconds rather than minutes: with the 10 s Lease
//! renewal and the 15 s node monitor grace period a node is tainted 5-15 s
//! after it dies, its pods are evicted 10 s later, and the replacement runs
//! well under the 30 s target (20 s, the suggestion, could take 35).

use serde_json::{json, Value};

pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// kedge's default for both tolerations (kube-apiserver: 300).
pub const DEFAULT_TOLERATION_SECONDS: i64 = 10;

/// Whether one of the tolerations covers `key`'s NoExecute taint, as the
/// plugin judges it: the same key or an empty one, NoExecute or any effect.
fn tolerates(tolerations: &[Value], key: &str) -> bool {
    tolerations.iter().any(|t| {
        let k = t.get("key").and_then(Value::as_str).unwrap_or("");
        let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
        (k == key || k.is_empty()) && (effect == "NoExecute" || effect.is_empty())
    })
}

/// Add the default tolerations to a pod being created.
pub(crate) fn admit_pod(pod: &mut Value, not_ready_seconds: i64, unreachable_seconds: i64) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    if !tolerations.is_array() {
        // Validation will reject it; leave it for that.
        return;
    }
    let Some(list) = tolerations.as_array_mut() else {
        return;
    };
    for (key, secs) in [
        (TAINT_NOT_READY, not_ready_seconds),
        (TAINT_UNREACHABLE, unreachable_seconds),
    ] {
        if !tolerates(list, key) {
            list.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": secs,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_both_tolerations_with_the_configured_seconds() {
        let mut pod = json!({"spec": {"containers": []}});
        admit_pod(&mut pod, 20, 30);
        let t = pod["spec"]["tolerations"].as_array().expect("list");
        assert_eq!(t.len(), 2);
        assert_eq!(
            t[0],
            json!({"key": TAINT_NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 20})
        );
        assert_eq!(t[1]["key"], TAINT_UNREACHABLE);
        assert_eq!(t[1]["tolerationSeconds"], 30);
    }

    #[test]
    fn keeps_the_pods_own_tolerations() {
        let mut pod = json!({"spec": {"tolerations": [
            {"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2},
        ]}});
        admit_pod(&mut pod, 20, 20);
        let t = pod["spec"]["tolerations"].as_array().expect("list");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0]["tolerationSeconds"], 2);
        assert_eq!(t[1]["key"], TAINT_NOT_READY);
        // A wildcard toleration covers both; a NoSchedule one neither.
        let mut pod = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        admit_pod(&mut pod, 20, 20);
        assert_eq!(pod["spec"]["tolerations"].as_array().map(Vec::len), Some(1));
        let mut pod = json!({"spec": {"tolerations": [{"key": TAINT_NOT_READY, "operator": "Exists", "effect": "NoSchedule"}]}});
        admit_pod(&mut pod, 20, 20);
        assert_eq!(pod["spec"]["tolerations"].as_array().map(Vec::len), Some(3));
    }
}
