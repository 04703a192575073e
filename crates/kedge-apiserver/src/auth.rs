//! Authentication (x509 client certificates, bearer token) and the
//! authorizer (for now: `system:masters` may do everything).

use http::{header, HeaderMap};
use kedge_api::ApiError;
use kedge_pki::Identity;
use subtle::ConstantTimeEq;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

/// Decides who a request comes from.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    /// The static bearer token (`--token`); it authenticates as an admin.
    pub token: Option<String>,
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
            let presented = presented.trim();
            return match &self.token {
                Some(t)
                    if !t.is_empty() && bool::from(presented.as_bytes().ct_eq(t.as_bytes())) =>
                {
                    Ok(Some(User {
                        name: TOKEN_USER.into(),
                        groups: vec!["system:masters".into(), "system:authenticated".into()],
                    }))
                }
                _ => Err(ApiError::unauthorized()),
            };
        }
        Ok(cert.map(|id| {
            let mut groups = id.groups.clone();
            groups.push("system:authenticated".into());
            User {
                name: id.user.clone(),
                groups,
            }
        }))
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
    fn public_paths() {
        assert!(is_public_path("/readyz"));
        assert!(is_public_path("/version"));
        assert!(!is_public_path("/api"));
    }
}
