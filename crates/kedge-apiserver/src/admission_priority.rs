//! Upstream's `Priority` admission plugin (`plugin/pkg/admission/priority`):
//! a pod's `spec.priority` and `spec.preemptionPolicy` come from its
//! PriorityClass (or the global default class), never from the pod itself;
//! an unknown class is refused. The two system classes exist from bootstrap
//! (upstream's scheduling post-start hook).

use kedge_api::{meta, ApiError};
use kedge_store::Store;
use serde_json::{json, Value};

use crate::server::ApiServer;

/// The system classes upstream creates at start: (name, value, description).
pub(crate) const SYSTEM_PRIORITY_CLASSES: &[(&str, i64, &str)] = &[
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

const PREFIX: &str = "/scheduling.k8s.io/priorityclasses/";

fn class(srv: &ApiServer, name: &str) -> Result<Option<Value>, ApiError> {
    let found = srv
        .store
        .get(&format!("{PREFIX}{name}"))
        .map_err(ApiError::internal)?;
    Ok(found.and_then(|s| serde_json::from_slice(&s.value).ok()))
}

/// The global default class: the one with `globalDefault: true` and the
/// lowest value (upstream's `getDefaultPriority`).
fn default_class(srv: &ApiServer) -> Result<Option<Value>, ApiError> {
    let page = srv
        .store
        .list(PREFIX, None, 0)
        .map_err(ApiError::internal)?;
    Ok(page
        .items
        .iter()
        .filter_map(|s| serde_json::from_slice::<Value>(&s.value).ok())
        .filter(|c| c["globalDefault"] == true)
        .min_by_key(|c| c["value"].as_i64().unwrap_or(0)))
}

pub(crate) fn admit_pod(srv: &ApiServer, pod: &mut Value) -> Result<(), ApiError> {
    let name = meta::name(pod).to_string();
    let forbidden = |why: String| ApiError::forbidden("", "pods", &name, &why);
    let class_name = pod["spec"]["priorityClassName"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let (class_name, priority, policy) = match class_name {
        None => match default_class(srv)? {
            Some(c) => (
                c["metadata"]["name"].as_str().map(str::to_owned),
                c["value"].as_i64().unwrap_or(0),
                c["preemptionPolicy"]
                    .as_str()
                    .unwrap_or("PreemptLowerPriority")
                    .to_owned(),
            ),
            None => (None, 0, "PreemptLowerPriority".to_owned()),
        },
        Some(n) => match class(srv, &n)? {
            Some(c) => (
                Some(n),
                c["value"].as_i64().unwrap_or(0),
                c["preemptionPolicy"]
                    .as_str()
                    .unwrap_or("PreemptLowerPriority")
                    .to_owned(),
            ),
            None => {
                return Err(forbidden(format!(
                    "no PriorityClass with name {n} was found"
                )))
            }
        },
    };
    if let Some(given) = pod["spec"]["priority"].as_i64() {
        if given != priority {
            return Err(forbidden(format!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
            )));
        }
    }
    if let Some(given) = pod["spec"]["preemptionPolicy"].as_str() {
        if given != policy {
            return Err(forbidden(format!(
                "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
            )));
        }
    }
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        if let Some(n) = class_name {
            spec.insert("priorityClassName".into(), json!(n));
        }
        spec.insert("priority".into(), json!(priority));
        spec.insert("preemptionPolicy".into(), json!(policy));
    }
    Ok(())
}
