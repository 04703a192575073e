//! Request paths, as upstream's `RequestInfoFactory` reads them.

/// What a request path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/api`
    LegacyRoot,
    /// `/apis`
    GroupsRoot,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`
    GroupVersion { group: String, version: String },
    /// A resource request.
    Resource(ResourcePath),
    /// Anything else.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

pub fn parse(path: &str) -> Route {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api"] => return Route::LegacyRoot,
        ["apis"] => return Route::GroupsRoot,
        ["apis", g] => return Route::Group(g.to_string()),
        ["api", v] => {
            return Route::GroupVersion {
                group: String::new(),
                version: v.to_string(),
            }
        }
        ["apis", g, v] => {
            return Route::GroupVersion {
                group: g.to_string(),
                version: v.to_string(),
            }
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Route::Other,
    };
    if rest.iter().any(|p| p.is_empty()) {
        return Route::Other;
    }
    let mut rest = rest;
    let mut namespace = None;
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        namespace = Some(rest[1].to_string());
        if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
            rest = &rest[2..];
        }
    }
    let (resource, name, subresource) = match rest {
        [r] => (*r, None, None),
        [r, n] => (*r, Some(n.to_string()), None),
        [r, n, s] => (*r, Some(n.to_string()), Some(s.to_string())),
        _ => return Route::Other,
    };
    // `/api/v1/namespaces/<name>[/status]` names the namespace itself.
    if resource == "namespaces" {
        if let Some(ns) = namespace.take() {
            let sub = match rest {
                [_, _, s] => Some(s.to_string()),
                _ => None,
            };
            return Route::Resource(ResourcePath {
                group: group.to_string(),
                version: version.to_string(),
                namespace: None,
                resource: resource.to_string(),
                name: Some(ns),
                subresource: sub,
            });
        }
    }
    Route::Resource(ResourcePath {
        group: group.to_string(),
        version: version.to_string(),
        namespace,
        resource: resource.to_string(),
        name,
        subresource,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(p: &str) -> ResourcePath {
        match parse(p) {
            Route::Resource(r) => r,
            other => panic!("{p}: {other:?}"),
        }
    }

    #[test]
    fn shapes() {
        assert_eq!(parse("/api"), Route::LegacyRoot);
        assert_eq!(parse("/apis/"), Route::GroupsRoot);
        assert_eq!(parse("/apis/apps"), Route::Group("apps".into()));
        let r = res("/api/v1/namespaces/default/pods/web/status");
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.resource, "pods");
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(r.subresource.as_deref(), Some("status"));
        let r = res("/api/v1/namespaces/kube-system");
        assert_eq!(r.resource, "namespaces");
        assert_eq!(r.name.as_deref(), Some("kube-system"));
        assert_eq!(r.namespace, None);
        let r = res("/api/v1/namespaces/x/status");
        assert_eq!(r.name.as_deref(), Some("x"));
        assert_eq!(r.subresource.as_deref(), Some("status"));
        let r = res("/api/v1/namespaces");
        assert_eq!(r.name, None);
        let r = res("/apis/apps/v1/deployments");
        assert_eq!((r.group.as_str(), r.namespace), ("apps", None));
        let r = res("/apis/apps/v1/namespaces/d/deployments/x/scale");
        assert_eq!(r.subresource.as_deref(), Some("scale"));
        assert_eq!(
            parse("/apis/apps/v1/namespaces/d/deployments/x/scale/y"),
            Route::Other
        );
        assert_eq!(parse("/foo"), Route::Other);
    }
}
