//! Token and access reviews (`authentication.k8s.io`, `authorization.k8s.io`):
//! computed from the current authenticator and authorizer, never stored.
//! `kubectl auth can-i` and `kubectl auth whoami` use them.

use http::StatusCode;
use kedge_api::registry::ResourceInfo;
use kedge_api::status::Cause;
use kedge_api::ApiError;
use serde_json::{json, Value};

use crate::auth::{self, Attributes, Authenticator, User};

/// What an authorizer answers for `user` and the review's attributes.
fn decide(user: &User, attrs: &Value) -> Value {
    let ra = attrs.get("resourceAttributes");
    let s = |v: Option<&Value>, k: &str| {
        v.and_then(|x| x.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (verb, group, resource, sub, ns, name) = match ra {
        Some(_) => (
            s(ra, "verb"),
            s(ra, "group"),
            s(ra, "resource"),
            s(ra, "subresource"),
            s(ra, "namespace"),
            s(ra, "name"),
        ),
        None => {
            let na = attrs.get("nonResourceAttributes");
            (
                s(na, "verb"),
                String::new(),
                s(na, "path"),
                String::new(),
                String::new(),
                String::new(),
            )
        }
    };
    let a = Attributes {
        verb: &verb,
        group: &group,
        resource: &resource,
        subresource: (!sub.is_empty()).then_some(sub.as_str()),
        namespace: (!ns.is_empty()).then_some(ns.as_str()),
        name: (!name.is_empty()).then_some(name.as_str()),
    };
    match auth::authorize(user, &a) {
        Ok(()) => json!({"allowed": true, "reason": "kedge: member of system:masters"}),
        Err(_) => json!({"allowed": false}),
    }
}

fn invalid(ri: &ResourceInfo, field: &str) -> ApiError {
    ApiError::invalid(ri.group, ri.kind, "", vec![Cause::required(field)])
}

/// Answer a review POST; returns the object to send with 201.
pub fn answer(
    ri: &ResourceInfo,
    user: &User,
    authn: &Authenticator,
    mut obj: Value,
) -> Result<(StatusCode, Value), ApiError> {
    let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
    let status = match ri.plural {
        "selfsubjectaccessreviews" => {
            if spec.get("resourceAttributes").is_none()
                && spec.get("nonResourceAttributes").is_none()
            {
                return Err(ApiError::invalid(
                    ri.group,
                    ri.kind,
                    "",
                    vec![Cause::invalid(
                    "spec.resourceAttributes",
                    &Value::Null,
                    "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                )],
                ));
            }
            decide(user, &spec)
        }
        "subjectaccessreviews" | "localsubjectaccessreviews" => {
            let name = spec
                .get("user")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let groups: Vec<String> = spec
                .get("groups")
                .and_then(Value::as_array)
                .map(|g| {
                    g.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            if name.is_empty() && groups.is_empty() {
                return Err(invalid(ri, "spec.user"));
            }
            decide(
                &User {
                    name,
                    groups,
                    ..Default::default()
                },
                &spec,
            )
        }
        "selfsubjectrulesreviews" => {
            let masters = user.groups.iter().any(|g| g == "system:masters");
            if masters {
                json!({
                    "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                    "incomplete": false,
                })
            } else {
                json!({
                    "resourceRules": [],
                    "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/readyz", "/version", "/version/", "/openapi", "/openapi/*"]}],
                    "incomplete": false,
                })
            }
        }
        "tokenreviews" => {
            let token = spec.get("token").and_then(Value::as_str).unwrap_or("");
            if token.is_empty() {
                return Err(invalid(ri, "spec.token"));
            }
            let audiences: Vec<String> = spec
                .get("audiences")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let requested = (!audiences.is_empty()).then_some(audiences.as_slice());
            match authn.authenticate_token(token.trim(), requested) {
                Ok((u, auds)) => {
                    json!({"authenticated": true, "user": user_info(&u), "audiences": auds})
                }
                Err(why) => json!({"authenticated": false, "user": {}, "error": why}),
            }
        }
        "selfsubjectreviews" => json!({"userInfo": user_info(user)}),
        _ => return Err(ApiError::not_found_path()),
    };
    if let Some(o) = obj.as_object_mut() {
        o.insert("apiVersion".into(), json!(ri.api_version()));
        o.insert("kind".into(), json!(ri.kind));
        o.entry("metadata").or_insert_with(|| json!({}));
    }
    Ok((StatusCode::CREATED, with_status(obj, status)))
}

/// An `authentication.k8s.io/v1` UserInfo (empty fields omitted).
fn user_info(u: &User) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("username".into(), json!(u.name));
    if !u.uid.is_empty() {
        m.insert("uid".into(), json!(u.uid));
    }
    m.insert("groups".into(), json!(u.groups));
    if !u.extra.is_empty() {
        m.insert("extra".into(), json!(u.extra));
    }
    Value::Object(m)
}

fn with_status(mut obj: Value, status: Value) -> Value {
    if let Some(o) = obj.as_object_mut() {
        o.insert("status".into(), status);
        if let Some(md) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            md.insert("creationTimestamp".into(), Value::Null);
        }
    }
    obj
}
