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

/// Kubernetes version priority: GA before beta before alpha, higher
/// numbers first, non-Kubernetes-style versions last by name.
fn version_key(v: &str) -> (u8, i64, i64, String) {
    let parse = |s: &str| -> Option<(u8, i64, i64)> {
        let rest = s.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: i64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((0, -major, 0));
        }
        for (tag, rank) in [("beta", 1u8), ("alpha", 2u8)] {
            if let Some(n) = tail.strip_prefix(tag) {
                let minor: i64 = n.parse().ok()?;
                return Some((rank, -major, -minor));
            }
        }
        None
    };
    match parse(v) {
        Some((r, a, b)) => (r, a, b, String::new()),
        None => (3, 0, 0, v.to_string()),
    }
}

/// The served groups (core excluded), each with its versions in priority order.
fn groups_of(resources: &[&'static ResourceInfo]) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for ri in resources.iter().filter(|r| !r.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == ri.group) {
            Some((_, vs)) => {
                if !vs.contains(&ri.version) {
                    vs.push(ri.version);
                }
            }
            None => out.push((ri.group, vec![ri.version])),
        }
    }
    for (_, vs) in &mut out {
        vs.sort_by_key(|v| version_key(v));
    }
    out
}

fn in_gv<'a>(
    resources: &'a [&'static ResourceInfo],
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static ResourceInfo> + 'a {
    resources
        .iter()
        .copied()
        .filter(move |r| r.group == group && r.version == version)
}

fn aggregated_group(resources: &[&'static ResourceInfo], group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let res: Vec<Value> = in_gv(resources, group, v)
                .map(aggregated_resource)
                .collect();
            json!({"version": v, "resources": res, "freshness": "Current"})
        })
        .collect();
    let metadata = if group.is_empty() {
        json!({"creationTimestamp": null})
    } else {
        json!({"name": group, "creationTimestamp": null})
    };
    json!({"metadata": metadata, "versions": versions})
}

/// `GET /api`
pub fn legacy_root(
    headers: &HeaderMap,
    resources: &[&'static ResourceInfo],
    server_address: &str,
) -> Response<Body> {
    if let Some(v) = aggregated_version(headers) {
        return aggregated_response(v, vec![aggregated_group(resources, "", &["v1"])]);
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

fn group_entry(group: &str, versions: &[&str]) -> Value {
    let gvs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    let preferred = gvs.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": gvs, "preferredVersion": preferred})
}

/// `GET /apis`
pub fn groups_root(headers: &HeaderMap, resources: &[&'static ResourceInfo]) -> Response<Body> {
    let groups = groups_of(resources);
    if let Some(v) = aggregated_version(headers) {
        return aggregated_response(
            v,
            groups
                .iter()
                .map(|(g, vs)| aggregated_group(resources, g, vs))
                .collect(),
        );
    }
    let list: Vec<Value> = groups.iter().map(|(g, vs)| group_entry(g, vs)).collect();
    negotiate::respond(
        StatusCode::OK,
        negotiate::Output::Json,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": list}),
    )
}

/// `GET /apis/<group>`; `None` if the group is not served.
pub fn group(resources: &[&'static ResourceInfo], group: &str) -> Option<Response<Body>> {
    let groups = groups_of(resources);
    let (_, versions) = groups.iter().find(|(g, _)| *g == group)?;
    let mut g = group_entry(group, versions);
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
pub fn group_version(
    resources: &[&'static ResourceInfo],
    group: &str,
    version: &str,
) -> Option<Response<Body>> {
    in_gv(resources, group, version).next()?;
    let mut out = Vec::new();
    for ri in in_gv(resources, group, version) {
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
        out.push(r);
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
            out.push(sr);
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
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}),
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
    fn versions_sort_by_kubernetes_priority() {
        let mut v = vec!["v1alpha1", "v1", "v2beta1", "v1beta2", "v2", "foo"];
        v.sort_by_key(|x| version_key(x));
        assert_eq!(v, vec!["v2", "v1", "v2beta1", "v1beta2", "v1alpha1", "foo"]);
    }

    #[test]
    fn pods_in_aggregated_core() {
        let all: Vec<&'static ResourceInfo> = registry::RESOURCES.iter().collect();
        let g = aggregated_group(&all, "", &["v1"]);
        let res = g["versions"][0]["resources"].as_array().expect("resources");
        let pods = res.iter().find(|r| r["resource"] == "pods").expect("pods");
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["shortNames"][0], "po");
        let subs: Vec<&str> = pods["subresources"]
            .as_array()
            .expect("subresources")
            .iter()
            .filter_map(|s| s["subresource"].as_str())
            .collect();
        assert!(
            subs.contains(&"status") && subs.contains(&"exec"),
            "{subs:?}"
        );
    }
}
