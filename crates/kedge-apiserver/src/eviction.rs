//! `POST pods/{name}/eviction` (upstream
//! `pkg/registry/core/pod/storage/eviction.go`): delete a pod unless that
//! would break its PodDisruptionBudget.
//!
//! Accepts `policy/v1` and `policy/v1beta1` Eviction bodies. Pods that are
//! pending, finished or already terminating go without a budget check. A
//! pod covered by one budget is let go only while the budget's status
//! allows a disruption: the allowance is decremented and the pod recorded
//! in `status.disruptedPods` with a compare-and-swap on the budget (retried
//! on conflicts), so concurrent evictions cannot overspend it; otherwise the
//! answer is 429 TooManyRequests with a `DisruptionBudget` cause. Pods that
//! are not Ready may go when the budget is already met
//! (`unhealthyPodEvictionPolicy` `IfHealthyBudget`, the default) or always
//! (`AlwaysAllow`). The pod gets the `DisruptionTarget` condition before it
//! is deleted with the Eviction's DeleteOptions.

use http::{Response, StatusCode};
use kedge_api::selectors::label_selector_from_json;
use kedge_api::{meta, registry, ApiError, ResourceInfo};
use kedge_store::Store;
use serde_json::{json, Value};

use crate::handler::{self, DeleteOptions, Req};
use crate::negotiate;
use crate::server::{ApiServer, Body};

/// Upstream's `MaxDisruptedPodSize`.
const MAX_DISRUPTED_POD_SIZE: usize = 2000;
/// Upstream's `EvictionsRetry` has 20 steps.
const RETRIES: usize = 20;

fn pods_ri() -> Result<&'static ResourceInfo, ApiError> {
    registry::lookup("", "v1", "pods").ok_or_else(|| ApiError::internal("pods not registered"))
}

fn pdbs_ri() -> Result<&'static ResourceInfo, ApiError> {
    registry::lookup("policy", "v1", "poddisruptionbudgets")
        .ok_or_else(|| ApiError::internal("poddisruptionbudgets not registered"))
}

/// Upstream's `podutil.IsPodReady`.
fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Pods whose eviction disrupts nothing: finished, pending, or already
/// going.
fn can_ignore_pdb(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed" | "Pending")
        || meta::deletion_timestamp(pod).is_some()
}

fn should_enforce_resource_version(pod: &Value) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && meta::deletion_timestamp(pod).is_none()
}

fn too_many_requests(message: &str, retry_after: u64, cause: String) -> ApiError {
    let mut details = json!({"causes": [{"reason": "DisruptionBudget", "message": cause}]});
    if retry_after > 0 {
        details["retryAfterSeconds"] = json!(retry_after);
    }
    ApiError::new(429, "TooManyRequests", message).with_details(details)
}

/// Upstream's `createTooManyRequestsError`.
fn still_processing(pdb: &str) -> ApiError {
    too_many_requests(
        "Cannot evict pod as it would violate the pod's disruption budget.",
        10,
        format!("The disruption budget {pdb} is still being processed by the server."),
    )
}

/// The Eviction's DeleteOptions, with the request's dry-run folded in.
fn delete_options(eviction: &Value, query_dry_run: bool) -> Result<DeleteOptions, ApiError> {
    let mut o = DeleteOptions {
        dry_run: query_dry_run,
        ..Default::default()
    };
    let Some(d) = eviction.get("deleteOptions").filter(|d| !d.is_null()) else {
        return Ok(o);
    };
    o.uid = d
        .pointer("/preconditions/uid")
        .and_then(Value::as_str)
        .map(str::to_string);
    o.resource_version = d
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(Value::Array(dr)) = d.get("dryRun") {
        let body_dry = dr.iter().any(|x| x == "All");
        if !dr.is_empty() && query_dry_run != body_dry {
            return Err(ApiError::bad_request(format!(
                "Non-matching dry-run options in request and content: {:?} and {:?}",
                if query_dry_run { vec!["All"] } else { vec![] },
                dr
            )));
        }
        o.dry_run |= body_dry;
    }
    if let Some(p) = d.get("propagationPolicy").and_then(Value::as_str) {
        o.propagation = Some(p.to_string());
    } else if let Some(orphan) = d.get("orphanDependents").and_then(Value::as_bool) {
        o.propagation = Some(if orphan { "Orphan" } else { "Background" }.to_string());
    }
    if let Some(g) = d.get("gracePeriodSeconds").and_then(Value::as_i64) {
        if g < 0 {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "DeleteOptions",
                "",
                vec![kedge_api::status::Cause::invalid(
                    "gracePeriodSeconds",
                    &json!(g),
                    "must be greater than or equal to 0",
                )],
            ));
        }
        o.grace_period = Some(g);
    }
    Ok(o)
}

fn success() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
}

/// The budgets in the pod's namespace whose selector selects it.
fn budgets_for(srv: &ApiServer, pod: &Value) -> Result<Vec<(i64, Value)>, ApiError> {
    let ri = pdbs_ri()?;
    let ns = meta::namespace(pod).unwrap_or("");
    let page = srv
        .store
        .list(&ri.list_prefix(Some(ns)), None, 0)
        .map_err(|e| handler::store_err(ri, "", e))?;
    let mut out = Vec::new();
    for s in &page.items {
        let pdb = handler::parse_stored(s)?;
        let sel = pdb
            .pointer("/spec/selector")
            .cloned()
            .unwrap_or(Value::Null);
        let Ok(sel) = label_selector_from_json(&sel) else {
            // An invalid selector selects nothing.
            continue;
        };
        // A missing or empty selector matches nothing here, as upstream.
        if sel.is_empty() || sel.is_nothing() || !sel.matches(meta::labels(pod)) {
            continue;
        }
        out.push((s.revision, pdb));
    }
    Ok(out)
}

fn i64_at(v: &Value, p: &str) -> i64 {
    v.pointer(p).and_then(Value::as_i64).unwrap_or(0)
}

/// Upstream's `checkAndDecrement`, then the budget's status written back
/// (unless dry-run) against the revision it was read at. `Ok(false)` on a
/// lost race.
async fn check_and_decrement(
    srv: &ApiServer,
    revision: i64,
    mut pdb: Value,
    pod_name: &str,
    dry_run: bool,
) -> Result<bool, ApiError> {
    let name = meta::name(&pdb).to_string();
    if i64_at(&pdb, "/status/observedGeneration") < meta::generation(&pdb) {
        return Err(still_processing(&name));
    }
    let allowed = i64_at(&pdb, "/status/disruptionsAllowed");
    if allowed < 0 {
        return Err(ApiError::forbidden(
            "policy",
            "poddisruptionbudget",
            &name,
            "pdb disruptions allowed is negative",
        ));
    }
    let disrupted = pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
        .map_or(0, serde_json::Map::len);
    if disrupted > MAX_DISRUPTED_POD_SIZE {
        return Err(ApiError::forbidden(
            "policy",
            "poddisruptionbudget",
            &name,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        return Err(too_many_requests(
            "Cannot evict pod as it would violate the pod's disruption budget.",
            0,
            format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                i64_at(&pdb, "/status/desiredHealthy"),
                i64_at(&pdb, "/status/currentHealthy")
            ),
        ));
    }
    if dry_run {
        return Ok(true);
    }
    let generation = i64_at(&pdb, "/status/observedGeneration");
    let Some(status) = pdb.get_mut("status").and_then(Value::as_object_mut) else {
        return Err(ApiError::internal("budget without status"));
    };
    status.insert("disruptionsAllowed".into(), json!(allowed - 1));
    if allowed - 1 == 0 {
        // Upstream's `UpdateDisruptionAllowedCondition`.
        let conds = status.entry("conditions").or_insert_with(|| json!([]));
        if let Value::Array(cs) = conds {
            let now = meta::now_rfc3339();
            match cs
                .iter_mut()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("DisruptionAllowed"))
            {
                Some(c) => {
                    if c.get("status").and_then(Value::as_str) != Some("False") {
                        c["lastTransitionTime"] = json!(now);
                    }
                    c["status"] = json!("False");
                    c["reason"] = json!("InsufficientPods");
                    c["observedGeneration"] = json!(generation);
                }
                None => cs.push(json!({
                    "type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods",
                    "message": "", "observedGeneration": generation, "lastTransitionTime": now,
                })),
            }
        }
    }
    let dp = status.entry("disruptedPods").or_insert_with(|| json!({}));
    if !dp.is_object() {
        *dp = json!({});
    }
    dp[pod_name] = json!(meta::now_rfc3339());
    let ri = pdbs_ri()?;
    let key = ri.key(meta::namespace(&pdb), &name);
    meta::metadata_mut(&mut pdb).remove("resourceVersion");
    match srv.store.update(&key, pdb, Some(revision)).await {
        Ok(_) => Ok(true),
        Err(kedge_store::Error::Conflict { .. }) => Ok(false),
        Err(e) => Err(handler::store_err(ri, &name, e)),
    }
}

/// Upstream's `addConditionAndDeletePod`.
async fn add_condition_and_delete(
    srv: &ApiServer,
    pod: &Value,
    mut opts: DeleteOptions,
) -> Result<(), ApiError> {
    let ri = pods_ri()?;
    let ns = meta::namespace(pod).map(str::to_string);
    let name = meta::name(pod).to_string();
    let terminal = matches!(phase(pod), "Succeeded" | "Failed");
    if !opts.dry_run && !terminal {
        if let Some(rv) = &opts.resource_version {
            let (_, cur) = handler::fetch(srv, ri, ns.as_deref(), &name)?;
            if Some(rv.as_str()) != meta::resource_version(&cur) {
                return Err(ApiError::conflict("", "pods", &name, &format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}", meta::resource_version(&cur).unwrap_or(""))));
            }
        }
        let updated = handler::guaranteed_update(srv, ri, ns.as_deref(), &name, |mut p| {
            let now = meta::now_rfc3339();
            if let Some(o) = p.as_object_mut() {
                let st = o.entry("status").or_insert_with(|| json!({}));
                if let Some(st) = st.as_object_mut() {
                    let conds = st.entry("conditions").or_insert_with(|| json!([]));
                    if let Value::Array(cs) = conds {
                        let cond = json!({
                            "type": "DisruptionTarget", "status": "True",
                            "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting",
                            "lastProbeTime": null, "lastTransitionTime": now,
                        });
                        match cs.iter_mut().find(|c| {
                            c.get("type").and_then(Value::as_str) == Some("DisruptionTarget")
                        }) {
                            Some(c) if c.get("status") == cond.get("status") => {
                                c["reason"] = cond["reason"].clone();
                                c["message"] = cond["message"].clone();
                            }
                            Some(c) => *c = cond,
                            None => cs.push(cond),
                        }
                    }
                }
            }
            Ok(p)
        })
        .await?;
        if opts.resource_version.is_some() {
            opts.resource_version = Some(updated.revision.to_string());
        }
    }
    handler::delete_object(srv, ri, ns.as_deref(), &name, &opts).await?;
    Ok(())
}

/// Answer `POST pods/{name}/eviction`.
pub(crate) async fn create(
    srv: &ApiServer,
    r: &Req,
    eviction: Value,
) -> Result<Response<Body>, ApiError> {
    let api_version = eviction
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !matches!(api_version, "" | "policy/v1" | "policy/v1beta1") {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version (policy/v1)"
        )));
    }
    if let Some(k) = eviction.get("kind").and_then(Value::as_str) {
        if !k.is_empty() && k != "Eviction" {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind (Eviction)"
            )));
        }
    }
    let name = r.name.clone().unwrap_or_default();
    if meta::name(&eviction) != name {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let ns = r.ns.clone();
    let ri = pods_ri()?;
    let original = delete_options(&eviction, r.query.dry_run)?;
    let respond = || negotiate::respond(StatusCode::CREATED, r.out, &success());

    // Pods whose eviction disrupts nothing are simply deleted.
    let mut pod = Value::Null;
    for attempt in 0..RETRIES {
        let (_, p) = handler::fetch(srv, ri, ns.as_deref(), &name)?;
        if !can_ignore_pdb(&p) {
            pod = p;
            break;
        }
        let mut opts = original.clone();
        if should_enforce_resource_version(&p) && opts.resource_version.is_none() {
            opts.resource_version = meta::resource_version(&p).map(str::to_string);
        }
        match add_condition_and_delete(srv, &p, opts).await {
            Ok(()) => return Ok(respond()),
            Err(e)
                if e.code == 409
                    && original.resource_version.is_none()
                    && attempt + 1 < RETRIES =>
            {
                continue
            }
            Err(e) => return Err(e),
        }
    }
    if pod.is_null() {
        return Err(ApiError::modified("", "pods", &name));
    }

    let budgets = budgets_for(srv, &pod)?;
    if budgets.len() > 1 {
        return Err(ApiError::new(
            500,
            "InternalError",
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
        ));
    }
    let mut update_deletion_options = false;
    let mut pdb_name = String::new();
    if let Some((mut revision, mut pdb)) = budgets.into_iter().next() {
        pdb_name = meta::name(&pdb).to_string();
        let unhealthy_ok = if is_ready(&pod) {
            false
        } else if pdb
            .pointer("/spec/unhealthyPodEvictionPolicy")
            .and_then(Value::as_str)
            == Some("AlwaysAllow")
        {
            true
        } else {
            let current = i64_at(&pdb, "/status/currentHealthy");
            let desired = i64_at(&pdb, "/status/desiredHealthy");
            current >= desired && desired > 0
        };
        if unhealthy_ok {
            update_deletion_options = true;
        } else {
            let mut done = false;
            for _ in 0..RETRIES {
                if check_and_decrement(srv, revision, pdb.clone(), &name, original.dry_run).await? {
                    done = true;
                    break;
                }
                let (s, fresh) = handler::fetch(srv, pdbs_ri()?, ns.as_deref(), &pdb_name)?;
                revision = s.revision;
                pdb = fresh;
            }
            if !done {
                return Err(ApiError::new(
                    504,
                    "Timeout",
                    format!("Timeout: couldn't update PodDisruptionBudget \"{pdb_name}\" due to conflicts"),
                )
                .with_details(json!({"retryAfterSeconds": 10})));
            }
        }
    }
    let mut opts = original.clone();
    if update_deletion_options {
        // The pod must not have become Ready since it was judged.
        opts.resource_version = meta::resource_version(&pod).map(str::to_string);
    }
    match add_condition_and_delete(srv, &pod, opts).await {
        Ok(()) => Ok(respond()),
        Err(e)
            if e.code == 409 && update_deletion_options && original.resource_version.is_none() =>
        {
            Err(still_processing(&pdb_name))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_that_disrupt_nothing() {
        assert!(can_ignore_pdb(&json!({"status": {"phase": "Pending"}})));
        assert!(can_ignore_pdb(&json!({"status": {"phase": "Succeeded"}})));
        assert!(can_ignore_pdb(
            &json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}, "status": {"phase": "Running"}})
        ));
        assert!(!can_ignore_pdb(&json!({"status": {"phase": "Running"}})));
        assert!(!should_enforce_resource_version(
            &json!({"status": {"phase": "Failed"}})
        ));
        assert!(should_enforce_resource_version(
            &json!({"status": {"phase": "Running"}})
        ));
    }

    #[test]
    fn delete_options_from_the_eviction() {
        let e = json!({"deleteOptions": {"gracePeriodSeconds": 0, "preconditions": {"uid": "u"}, "dryRun": ["All"]}});
        assert!(delete_options(&e, false).is_err(), "dry-run must agree");
        let o = delete_options(&e, true).expect("ok");
        assert_eq!(
            (o.grace_period, o.uid.as_deref(), o.dry_run),
            (Some(0), Some("u"), true)
        );
        let o = delete_options(&json!({}), false).expect("ok");
        assert_eq!((o.grace_period, o.dry_run), (None, false));
        assert!(
            delete_options(&json!({"deleteOptions": {"gracePeriodSeconds": -1}}), false).is_err()
        );
    }

    #[test]
    fn budget_errors_read_as_upstream() {
        let e = too_many_requests(
            "Cannot evict pod as it would violate the pod's disruption budget.",
            0,
            "The disruption budget b needs 2 healthy pods and has 2 currently".into(),
        );
        let s = e.to_status();
        assert_eq!(s["code"], 429);
        assert_eq!(s["reason"], "TooManyRequests");
        assert_eq!(s["details"]["causes"][0]["reason"], "DisruptionBudget");
        assert!(s["details"].get("retryAfterSeconds").is_none());
        assert_eq!(
            still_processing("b").to_status()["details"]["retryAfterSeconds"],
            10
        );
    }
}
