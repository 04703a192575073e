//! Authentication (x509 client certificates, bearer token, service-account
//! JWTs) and the authorizer (for now: `system:masters` may do everything).

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{header, HeaderMap};
use kedge_api::ApiError;
use kedge_pki::Identity;
use subtle::ConstantTimeEq;

/// An authenticated user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// Set for service accounts (their uid).
    pub uid: String,
    pub groups: Vec<String>,
    /// `user.Info` extra (service accounts: bound pod, node, credential id).
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Decides who a request comes from.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    /// The static bearer token (`--token`); it authenticates as an admin.
    pub token: Option<String>,
    /// Service-account JWTs (absent without a signing key).
    pub service_accounts: Option<Arc<crate::tokens::ServiceAccountTokens>>,
}

/// The user a valid `--token` bearer token authenticates as.
pub const TOKEN_USER: &str = "system:kedge-token";

impl Authenticator {
    /// `Ok(None)` for an anonymous request; `Err(401)` for bad credentials.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        cert: Option<&Identity>,
    ) -> Result<Option<User>, ApiError> {
        if let Some(auth) = headers.get(header::AUTHORIZATION) {
            let auth = auth.to_str().map_err(|_| ApiError::unauthorized())?;
            let Some(presented) = auth
                .strip_prefix("Bearer ")
                .or_else(|| auth.strip_prefix("bearer "))
            else {
                return Err(ApiError::unauthorized());
            };
            return match self.authenticate_token(presented.trim(), None) {
                Ok((user, _)) => Ok(Some(user)),
                Err(why) => {
                    tracing::debug!(reason = %why, "bearer token rejected");
                    Err(ApiError::unauthorized())
                }
            };
        }
        Ok(cert.map(|id| {
            let mut groups = id.groups.clone();
            groups.push("system:authenticated".into());
            User {
                name: id.user.clone(),
                groups,
                ..Default::default()
            }
        }))
    }

    /// Authenticate a bearer token for `audiences` (the API server's when
    /// `None`): the user and the audiences it is good for, or why not.
    pub fn authenticate_token(
        &self,
        token: &str,
        audiences: Option<&[String]>,
    ) -> Result<(User, Vec<String>), String> {
        let implicit = crate::tokens::api_audiences();
        if let Some(t) = self.token.as_ref().filter(|t| !t.is_empty()) {
            if bool::from(token.as_bytes().ct_eq(t.as_bytes())) {
                // Audience-agnostic, as upstream wraps static tokens.
                let auds = match audiences.filter(|a| !a.is_empty()) {
                    Some(req) => implicit
                        .iter()
                        .filter(|a| req.contains(a))
                        .cloned()
                        .collect(),
                    None => implicit,
                };
                if auds.is_empty() {
                    return Err("invalid bearer token".into());
                }
                let user = User {
                    name: TOKEN_USER.into(),
                    groups: vec!["system:masters".into(), "system:authenticated".into()],
                    ..Default::default()
                };
                return Ok((user, auds));
            }
        }
        if let Some(sa) = &self.service_accounts {
            if crate::tokens::ServiceAccountTokens::has_our_issuer(token) {
                let a = sa.authenticate(token, audiences)?;
                return Ok((a.user, a.audiences));
            }
        }
        Err("invalid bearer token".into())
    }
}

/// Apply `Impersonate-User` / `Impersonate-Group` headers (`kubectl --as`,
/// `--as-group`): allowed to those who may do everything.
pub fn impersonate(user: User, headers: &HeaderMap) -> Result<User, ApiError> {
    let Some(target) = headers.get("impersonate-user") else {
        if headers.contains_key("impersonate-group") {
            return Err(ApiError::bad_request(
                "requested [{Kind=Group ...}] without impersonating a user",
            ));
        }
        return Ok(user);
    };
    let target = target
        .to_str()
        .map_err(|_| ApiError::bad_request("invalid Impersonate-User header"))?
        .to_string();
    if !user.groups.iter().any(|g| g == "system:masters") {
        return Err(ApiError::forbidden(
            "",
            "users",
            &target,
            &format!("User \"{}\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope", user.name),
        ));
    }
    let mut groups: Vec<String> = headers
        .get_all("impersonate-group")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    if !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".into());
    }
    Ok(User {
        name: target,
        groups,
        ..Default::default()
    })
}

/// Paths anyone may read, as upstream's `system:public-info-viewer`.
pub fn is_public_path(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/livez" | "/readyz" | "/version" | "/version/"
    ) || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

/// What a request does to which resource, for authorization messages.
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// `system:masters` may do everything; everyone else nothing (RBAC later).
pub fn authorize(user: &User, attrs: &Attributes<'_>) -> Result<(), ApiError> {
    if user.groups.iter().any(|g| g == "system:masters") {
        return Ok(());
    }
    // Node agents (`system:node:<name>` in `system:nodes`) may do what
    // upstream's Node authorizer lets any node do. Until RBAC and the Node
    // authorizer exist this is all of it; see docs/architecture.md.
    if user.groups.iter().any(|g| g == "system:nodes") && user.name.starts_with("system:node:") {
        return Ok(());
    }
    // `system:basic-user`: everyone may ask what they themselves may do.
    if attrs.verb == "create"
        && matches!(
            (attrs.group, attrs.resource),
            (
                "authorization.k8s.io",
                "selfsubjectaccessreviews" | "selfsubjectrulesreviews"
            ) | ("authentication.k8s.io", "selfsubjectreviews")
        )
    {
        return Ok(());
    }
    let res = match attrs.subresource {
        Some(s) => format!("{}/{s}", attrs.resource),
        None => attrs.resource.to_string(),
    };
    let scope = match attrs.namespace {
        Some(ns) => format!(" in the namespace \"{ns}\""),
        None => " at the cluster scope".to_string(),
    };
    Err(ApiError::forbidden(
        attrs.group,
        attrs.resource,
        attrs.name.unwrap_or(""),
        &format!(
            "User \"{}\" cannot {} resource \"{res}\" in API group \"{}\"{scope}",
            user.name, attrs.verb, attrs.group
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn token_and_cert() {
        let a = Authenticator {
            token: Some("s3cret".into()),
            ..Default::default()
        };
        let mut h = HeaderMap::new();
        assert_eq!(a.authenticate(&h, None).ok(), Some(None));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        let u = a.authenticate(&h, None).expect("ok").expect("user");
        assert!(u.groups.contains(&"system:masters".to_string()));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer nope"),
        );
        assert_eq!(a.authenticate(&h, None).map_err(|e| e.code), Err(401));
        let id = Identity {
            user: "alice".into(),
            groups: vec!["dev".into()],
        };
        let u = a
            .authenticate(&HeaderMap::new(), Some(&id))
            .expect("ok")
            .expect("user");
        assert_eq!(u.name, "alice");
        let attrs = Attributes {
            verb: "list",
            group: "",
            resource: "pods",
            subresource: None,
            namespace: Some("default"),
            name: None,
        };
        let e = authorize(&u, &attrs).expect_err("forbidden");
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
    }

    #[test]
    fn impersonation_needs_masters() {
        let admin = User {
            name: "a".into(),
            groups: vec!["system:masters".into()],
            ..Default::default()
        };
        let mut h = HeaderMap::new();
        h.insert("impersonate-user", HeaderValue::from_static("bob"));
        h.append("impersonate-group", HeaderValue::from_static("dev"));
        let bob = impersonate(admin, &h).expect("allowed");
        assert_eq!(bob.name, "bob");
        assert_eq!(bob.groups, vec!["dev", "system:authenticated"]);
        assert_eq!(impersonate(bob, &h).map_err(|e| e.code), Err(403));
    }

    #[test]
    fn static_token_audiences() {
        let a = Authenticator {
            token: Some("s3cret".into()),
            ..Default::default()
        };
        let (u, auds) = a.authenticate_token("s3cret", None).expect("ok");
        assert_eq!(u.name, TOKEN_USER);
        assert_eq!(auds, crate::tokens::api_audiences());
        let k3s = vec!["k3s".to_string()];
        assert_eq!(
            a.authenticate_token("s3cret", Some(&k3s)).expect("ok").1,
            k3s
        );
        let vault = vec!["vault".to_string()];
        assert!(a.authenticate_token("s3cret", Some(&vault)).is_err());
        // Without a signing key a JWT is just an unknown token.
        assert_eq!(
            a.authenticate_token("a.b.c", None).unwrap_err(),
            "invalid bearer token"
        );
    }

    #[test]
    fn public_paths() {
        assert!(is_public_path("/readyz"));
        assert!(is_public_path("/version"));
        assert!(!is_public_path("/api"));
    }
}
