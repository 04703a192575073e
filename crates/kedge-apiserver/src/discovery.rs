//! Discovery documents: legacy (`/api`, `/apis`, group, group-version) and
//! aggregated (`apidiscovery.k8s.io` v2 and v2beta1, chosen by Accept).

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use kedge_api::registry::{self, ResourceInfo};
use serde_json::{json, Value};

use crate::negotiate::{self, parse_media_types};
use crate::server::Body;

/// Which aggregated discovery version the client asked for, if any.
pub fn aggregated_version(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    for mt in parse_media_types(accept) {
        if mt.param("g") == Some("apidiscovery.k8s.io")
            && mt.param("as") == Some("APIGroupDiscoveryList")
        {
            match mt.param("v") {
                Some("v2") => return Some("v2"),
                Some("v2beta1") => return Some("v2beta1"),
                _ => {}
            }
        }
        // The first acceptable plain type wins over later aggregated ones.
        if mt.param("as").is_none() && matches!(mt.essence.as_str(), "application/json" | "*/*") {
            return None;
        }
    }
    None
}

fn aggregated_response(version: &str, items: Vec<Value>) -> Response<Body> {
    let body = json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    });
    let mut r = negotiate::respond(StatusCode::OK, negotiate::Output::Json, &body);
    if let Ok(ct) = HeaderValue::from_str(&format!(
        "application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
    )) {
        r.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    r
}

fn aggregated_resource(ri: &ResourceInfo) -> Value {
    let subs: Vec<Value> = ri
        .subresources
        .iter()
        .map(|s| {
            let (g, v, k, verbs) = registry::subresource_info(ri, s);
            json!({
                "subresource": s,
                "responseKind": {"group": g, "version": v, "kind": k},
                "verbs": verbs,
            })
        })
        .collect();
    let mut r = json!({
        "resource": ri.plural,
        "responseKind": {"group": ri.group, "version": ri.version, "kind": ri.kind},
        "scope": if ri.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": ri.singular,
        "verbs": registry::verbs(ri),
    });
    if let Some(o) = r.as_object_mut() {
        if !ri.short_names.is_empty() {
            o.insert("shortNames".into(), json!(ri.short_names));
        }
        if !ri.categories.is_empty() {
            o.insert("categories".into(), json!(ri.categories));
        }
        if !subs.is_empty() {
            o.insert("subresources".into(), json!(subs));
        }
    }
    r
}

fn aggregated_group(group: &str) -> Value {
    let resources: Vec<Value> = registry::resources_in(group, "v1")
        .map(aggregated_resource)
        .collect();
    let metadata = if group.is_empty() {
        json!({"creationTimestamp": null})
    } else {
        json!({"name": group, "creationTimestamp": null})
    };
    json!({
        "metadata": metadata,
        "versions": [{"version": "v1", "resources": resources, "freshness": "Current"}],
    })
}

/// `GET /api`
pub fn legacy_root(headers: &HeaderMap, server_address: &str) -> Response<Body> {
    if let Some(v) = aggregated_version(headers) {
        return aggregated_response(v, vec![aggregated_group("")]);
    }
    negotiate::respond(
        StatusCode::OK,
        negotiate::Output::Json,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
        }),
    )
}

fn group_entry(group: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/v1"), "version": "v1"});
    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
}

/// `GET /apis`
pub fn groups_root(headers: &HeaderMap) -> Response<Body> {
    let groups: Vec<&str> = registry::groups()
        .into_iter()
        .filter(|g| !g.is_empty())
        .collect();
    if let Some(v) = aggregated_version(headers) {
        return aggregated_response(v, groups.iter().map(|g| aggregated_group(g)).collect());
    }
    let list: Vec<Value> = groups.iter().map(|g| group_entry(g)).collect();
    negotiate::respond(
        StatusCode::OK,
        negotiate::Output::Json,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": list}),
    )
}

/// `GET /apis/<group>`; `None` if the group is not served.
pub fn group(group: &str) -> Option<Response<Body>> {
    if group.is_empty() || !registry::serves(group, "v1") {
        return None;
    }
    let mut g = group_entry(group);
    if let Some(o) = g.as_object_mut() {
        o.insert("kind".into(), json!("APIGroup"));
        o.insert("apiVersion".into(), json!("v1"));
    }
    Some(negotiate::respond(
        StatusCode::OK,
        negotiate::Output::Json,
        &g,
    ))
}

/// `GET /api/v1` or `/apis/<group>/<version>`; `None` if not served.
pub fn group_version(group: &str, version: &str) -> Option<Response<Body>> {
    if !registry::serves(group, version) {
        return None;
    }
    let mut resources = Vec::new();
    for ri in registry::resources_in(group, version) {
        let mut r = json!({
            "name": ri.plural,
            "singularName": ri.singular,
            "namespaced": ri.namespaced,
            "kind": ri.kind,
            "verbs": registry::verbs(ri),
        });
        if let Some(o) = r.as_object_mut() {
            if !ri.short_names.is_empty() {
                o.insert("shortNames".into(), json!(ri.short_names));
            }
            if !ri.categories.is_empty() {
                o.insert("categories".into(), json!(ri.categories));
            }
        }
        resources.push(r);
        for s in ri.subresources {
            let (g, v, k, verbs) = registry::subresource_info(ri, s);
            let mut sr = json!({
                "name": format!("{}/{s}", ri.plural),
                "singularName": "",
                "namespaced": ri.namespaced,
                "kind": k,
                "verbs": verbs,
            });
            if (g, v) != (ri.group, ri.version) {
                if let Some(o) = sr.as_object_mut() {
                    o.insert("group".into(), json!(g));
                    o.insert("version".into(), json!(v));
                }
            }
            resources.push(sr);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(negotiate::respond(
        StatusCode::OK,
        negotiate::Output::Json,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_aggregated_by_accept() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"));
        assert_eq!(aggregated_version(&h), Some("v2"));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"));
        assert_eq!(aggregated_version(&h), Some("v2beta1"));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, */*"),
        );
        assert_eq!(aggregated_version(&h), None);
    }

    #[test]
    fn pods_in_aggregated_core() {
        let g = aggregated_group("");
        let res = g["versions"][0]["resources"].as_array().expect("resources");
        let pods = res.iter().find(|r| r["resource"] == "pods").expect("pods");
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["shortNames"][0], "po");
        assert_eq!(pods["subresources"][0]["subresource"], "status");
    }
}
