//! `POST .../serviceaccounts/{name}/token`: a TokenRequest
//! (`authentication.k8s.io/v1`) answered with a signed token and stored
//! nowhere (upstream's `TokenREST.Create`).

use http::{Response, StatusCode};
use kedge_api::status::Cause;
use kedge_api::{meta, registry, ApiError};
use serde_json::{json, Value};

use super::{
    api_audiences, claims, ObjectRef, Subject, API_AUDIENCES, EXPIRATION_EXTENSION_SECONDS,
    WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS,
};
use crate::handler::{self, Req};
use crate::negotiate;
use crate::server::{ApiServer, Body};

const GROUP: &str = "authentication.k8s.io";
const KIND: &str = "TokenRequest";
const API_VERSION: &str = "authentication.k8s.io/v1";
/// `TokenRequestSpec.ExpirationSeconds` default (one hour).
const DEFAULT_EXPIRATION_SECONDS: i64 = 60 * 60;
/// `ValidateTokenRequest`'s bounds.
const MIN_EXPIRATION_SECONDS: i64 = 10 * 60;
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

fn invalid(name: &str, cause: Cause) -> ApiError {
    ApiError::invalid(GROUP, KIND, name, vec![cause])
}

fn get_core(
    srv: &ApiServer,
    plural: &str,
    ns: Option<&str>,
    name: &str,
) -> Result<Value, ApiError> {
    let ri = registry::lookup("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} not registered")))?;
    handler::fetch(srv, ri, ns, name).map(|(_, v)| v)
}

/// `group/version, Kind=kind` as Go's `GroupVersionKind.String()`.
fn gvk_string(api_version: &str, kind: &str) -> (String, String) {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) if !v.contains('/') => (g.to_string(), v.to_string()),
        Some(_) => (String::new(), String::new()),
        None => (String::new(), api_version.to_string()),
    };
    let s = format!("{group}/{version}, Kind={kind}");
    (group, s)
}

pub(crate) async fn create(
    srv: &ApiServer,
    r: &Req,
    mut req: Value,
) -> Result<Response<Body>, ApiError> {
    let Some(tokens) = srv.authn.service_accounts.as_ref() else {
        return Err(ApiError::not_found_path());
    };
    let ns = r.ns.clone().unwrap_or_default();
    let name = r.name.clone().unwrap_or_default();
    for (field, want) in [("apiVersion", API_VERSION), ("kind", KIND)] {
        if let Some(got) = req.get(field).and_then(Value::as_str) {
            if !got.is_empty() && got != want {
                return Err(ApiError::bad_request(format!(
                    "the {} in the data ({got}) does not match the expected {} ({want})",
                    if field == "kind" {
                        "kind"
                    } else {
                        "API version"
                    },
                    if field == "kind" {
                        "kind"
                    } else {
                        "API version"
                    },
                )));
            }
        }
    }
    if !req.is_object() {
        return Err(ApiError::bad_request(
            "the body must be a TokenRequest object",
        ));
    }
    let md = meta::metadata_mut(&mut req);
    let body_name = md
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !body_name.is_empty() && body_name != name {
        return Err(invalid(
            &name,
            Cause::invalid(
                "metadata.name",
                &json!(body_name),
                "must match the service account name if specified",
            ),
        ));
    }
    let body_ns = md
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !body_ns.is_empty() && body_ns != ns {
        return Err(invalid(
            &name,
            Cause::invalid(
                "metadata.namespace",
                &json!(body_ns),
                "must match the service account namespace if specified",
            ),
        ));
    }

    let sa = get_core(srv, "serviceaccounts", Some(&ns), &name)?;

    let now = jiff::Timestamp::now();
    let now_s = now.as_second();
    md.insert("name".into(), json!(meta::name(&sa)));
    md.insert("namespace".into(), json!(ns));
    md.insert("creationTimestamp".into(), json!(meta::now_rfc3339()));
    let obj = req
        .as_object_mut()
        .ok_or_else(|| ApiError::internal("not an object"))?;
    obj.insert("apiVersion".into(), json!(API_VERSION));
    obj.insert("kind".into(), json!(KIND));
    obj.remove("status");
    let spec = obj.entry("spec").or_insert_with(|| json!({}));
    if spec.is_null() {
        *spec = json!({});
    }
    let spec = spec
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("spec must be an object"))?;
    let audiences: Vec<String> = spec
        .get("audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let audiences = if audiences.is_empty() {
        api_audiences()
    } else {
        audiences
    };
    spec.insert("audiences".into(), json!(audiences));
    let expiration = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
        Some(v) => v
            .as_i64()
            .ok_or_else(|| ApiError::bad_request("spec.expirationSeconds must be an integer"))?,
    };
    spec.insert("expirationSeconds".into(), json!(expiration));
    let bound_ref = spec.get("boundObjectRef").cloned().filter(|v| !v.is_null());
    spec.insert(
        "boundObjectRef".into(),
        bound_ref.clone().unwrap_or(Value::Null),
    );

    let mut causes = Vec::new();
    if expiration < MIN_EXPIRATION_SECONDS {
        causes.push(Cause::invalid(
            "spec.expirationSeconds",
            &json!(expiration),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if expiration > MAX_EXPIRATION_SECONDS {
        causes.push(Cause::invalid(
            "spec.expirationSeconds",
            &json!(expiration),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid(GROUP, KIND, "", causes));
    }

    let mut subject = Subject {
        namespace: ns.clone(),
        service_account: ObjectRef::of(&sa),
        ..Default::default()
    };
    if let Some(b) = &bound_ref {
        let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let (kind, ref_name, ref_uid) = (s("kind"), s("name"), s("uid"));
        let (group, gvk) = gvk_string(&s("apiVersion"), &kind);
        let uid = match (group.as_str(), kind.as_str()) {
            ("", "Pod") => {
                let pod = get_core(srv, "pods", Some(&ns), &ref_name)?;
                let pod_sa = pod
                    .pointer("/spec/serviceAccountName")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if pod_sa != name {
                    return Err(ApiError::bad_request(format!(
                        "cannot bind token for serviceaccount {name:?} to pod running with different serviceaccount name."
                    )));
                }
                let node_name = pod
                    .pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !node_name.is_empty() {
                    // A missing Node still puts its name in the claims.
                    subject.node = Some(match get_core(srv, "nodes", None, node_name) {
                        Ok(n) => ObjectRef::of(&n),
                        Err(e) if e.code == 404 => ObjectRef {
                            name: node_name.to_string(),
                            uid: String::new(),
                        },
                        Err(e) => return Err(e),
                    });
                }
                let r = ObjectRef::of(&pod);
                let uid = r.uid.clone();
                subject.pod = Some(r);
                uid
            }
            ("", "Node") => {
                let node = get_core(srv, "nodes", None, &ref_name)?;
                let r = ObjectRef::of(&node);
                let uid = r.uid.clone();
                subject.node = Some(r);
                uid
            }
            ("", "Secret") => {
                let secret = get_core(srv, "secrets", Some(&ns), &ref_name)?;
                let r = ObjectRef::of(&secret);
                let uid = r.uid.clone();
                subject.secret = Some(r);
                uid
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token to object of type {gvk}"
                )))
            }
        };
        if !ref_uid.is_empty() && ref_uid != uid {
            return Err(ApiError::conflict(
                &group,
                &kind,
                &ref_name,
                &format!("the UID in the bound object reference ({ref_uid}) does not match the UID in record. The object might have been deleted and then recreated"),
            ));
        }
    }

    // Pod-bound tokens with the admission plugin's expiration, for the API
    // server's own audiences, live a year and warn after the hour.
    let kube_audiences = audiences
        .iter()
        .all(|a| API_AUDIENCES.contains(&a.as_str()));
    let (exp, warn_after) = if subject.pod.is_some()
        && expiration == WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS
        && kube_audiences
    {
        (EXPIRATION_EXTENSION_SECONDS, expiration)
    } else {
        (expiration, 0)
    };
    let jti = uuid::Uuid::new_v4().to_string();
    let token = tokens.sign(&claims(&subject, &audiences, now_s, exp, warn_after, &jti))?;
    let expires = jiff::Timestamp::from_second(now_s + expiration)
        .map_err(ApiError::internal)?
        .to_string();
    tracing::debug!(
        namespace = %ns,
        serviceaccount = %name,
        credential_id = %format!("JTI={jti}"),
        "issued a service account token"
    );
    if let Some(o) = req.as_object_mut() {
        o.insert(
            "status".into(),
            json!({"token": token, "expirationTimestamp": expires}),
        );
    }
    Ok(negotiate::respond(StatusCode::CREATED, r.out, &req))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gvk_strings_as_go() {
        assert_eq!(gvk_string("v1", "Pod"), ("".into(), "/v1, Kind=Pod".into()));
        assert_eq!(
            gvk_string("apps/v1", "Deployment"),
            ("apps".into(), "apps/v1, Kind=Deployment".into())
        );
        assert_eq!(gvk_string("", "Pod").1, "/, Kind=Pod");
    }
}
