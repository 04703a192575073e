//! `/openapi/v2` and `/openapi/v3`: upstream Kubernetes v1.33's OpenAPI
//! documents, reduced to the group-versions and resources kedge serves.
//!
//! Stock kubectl needs them: 1.27 and 1.28 load `/openapi/v2` (protobuf)
//! before every `create`/`apply` with the default `--validate=strict` and
//! before `explain`; every version from 1.27 on reads `/openapi/v3/<gv>` to
//! find the `fieldValidation` parameter on the PATCH operation of a kind
//! (server-side validation), for `explain`, and for apply's strategic merge
//! patch metadata.
//!
//! The documents are generated ahead of time by `scripts/gen-openapi.py`
//! (see `crates/kedge-apiserver/openapi/README.md`) and embedded as one zstd
//! frame of named entries, index first. Nothing is decoded until a client
//! asks; each entry is then read out of the frame (decoding stops at that
//! entry) and kept, so a process holds only the documents that were asked
//! for. ETags (upstream's upper-case hex SHA-512 of the bytes) come with the
//! index.
//!
//! HTTP behaviour follows kube-openapi's `handler` and `handler3`: Accept
//! negotiation (JSON, or gnostic protobuf for v2), a quoted `ETag`,
//! `If-None-Match` answered with 304, and for `/openapi/v3/<gv>?hash=H` a
//! 301 to the current hash when H is stale, else `Cache-Control: public,
//! immutable` with a year's `Expires`.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use kedge_api::ApiError;

use crate::negotiate::{self, parse_media_types};
use crate::server::Body;

/// The generated documents (Kubernetes v1.33, Apache-2.0, the Kubernetes
/// Authors; see the README beside the file).
static BUNDLE: &[u8] = include_bytes!("../openapi/openapi-v1.33.bin.zst");
const MAGIC: &[u8] = b"KOAPI1\n";

const JSON: &str = "application/json";
/// What client-go's `OpenAPISchema()` asks for (the deprecated name)...
const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// ...and the current name, which upstream answers with for both.
const V2_PROTOBUF_REPLY: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the embedded OpenAPI documents: {0}")]
    Io(#[from] io::Error),
    #[error("the embedded OpenAPI documents are malformed: {0}")]
    Format(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Lazily read entries, with the index's ETags.
struct Documents {
    etags: HashMap<String, String>,
    loaded: Mutex<HashMap<String, Bytes>>,
    /// When this process first served a document (upstream: when it built
    /// the spec).
    last_modified: HeaderValue,
}

static DOCUMENTS: OnceLock<std::result::Result<Documents, String>> = OnceLock::new();

fn documents() -> std::result::Result<&'static Documents, String> {
    DOCUMENTS
        .get_or_init(|| Documents::load().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(Clone::clone)
}

impl Documents {
    fn load() -> Result<Self> {
        let index =
            read_entry("index.json")?.ok_or_else(|| Error::Format("no index.json entry".into()))?;
        let index: serde_json::Value = serde_json::from_slice(&index)
            .map_err(|e| Error::Format(format!("index.json: {e}")))?;
        let etags = index
            .get("etags")
            .and_then(|v| v.as_object())
            .ok_or_else(|| Error::Format("index.json has no etags".into()))?
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect();
        Ok(Documents {
            etags,
            loaded: Mutex::new(HashMap::new()),
            last_modified: http_date(jiff::Timestamp::now())
                .unwrap_or_else(|| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT")),
        })
    }

    fn etag(&self, name: &str) -> Option<&str> {
        self.etags.get(name).map(String::as_str)
    }

    /// The bytes of one entry, decoded on first use and kept.
    fn get(&self, name: &str) -> Result<Bytes> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = loaded.get(name) {
            return Ok(b.clone());
        }
        let b = read_entry(name)?.ok_or_else(|| Error::Format(format!("no entry {name:?}")))?;
        loaded.insert(name.to_string(), b.clone());
        Ok(b)
    }
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

/// Decode the bundle up to entry `want` and return it (None: not there).
fn read_entry(want: &str) -> Result<Option<Bytes>> {
    let mut r = ruzstd::decoding::StreamingDecoder::new(BUNDLE)
        .map_err(|e| Error::Format(format!("zstd frame: {e}")))?;
    let mut magic = [0u8; MAGIC.len()];
    r.read_exact(&mut magic)?;
    if magic != MAGIC {
        return Err(Error::Format("bad magic".into()));
    }
    loop {
        let name_len = match read_u32(&mut r) {
            Ok(n) => n as usize,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut name = vec![0u8; name_len];
        r.read_exact(&mut name)?;
        let len = read_u32(&mut r)? as u64;
        if name == want.as_bytes() {
            let mut data = Vec::with_capacity(len as usize);
            (&mut r).take(len).read_to_end(&mut data)?;
            if data.len() as u64 != len {
                return Err(Error::Format(format!("entry {want:?} is truncated")));
            }
            return Ok(Some(Bytes::from(data)));
        }
        let skipped = io::copy(&mut (&mut r).take(len), &mut io::sink())?;
        if skipped != len {
            return Err(Error::Format("truncated bundle".into()));
        }
    }
}

fn http_date(t: jiff::Timestamp) -> Option<HeaderValue> {
    let s = jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&t)
        .ok()?;
    HeaderValue::from_str(&s).ok()
}

/// Serve an OpenAPI path. None: `path` is not under `/openapi`.
///
/// Meant for GET (and HEAD) requests of authenticated users.
pub fn handle(path: &str, query: Option<&str>, headers: &HeaderMap) -> Option<Response<Body>> {
    let rest = path.strip_prefix("/openapi")?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let docs = match documents() {
        Ok(d) => d,
        Err(e) => return Some(negotiate::error_response(&ApiError::internal(e))),
    };
    Some(match rest {
        "/v2" => serve_v2(docs, headers),
        "/v3" => serve_v3_discovery(docs, headers),
        _ => match rest.strip_prefix("/v3/") {
            Some(gv) if docs.etag(&format!("v3/{gv}")).is_some() => {
                serve_v3_group_version(docs, gv, query, headers)
            }
            _ => negotiate::error_response(&ApiError::not_found_path()),
        },
    })
}

/// The media ranges of Accept in the order goautoneg (and so upstream)
/// tries them: by quality, then specific before wildcard. q=0 is "not
/// acceptable" and left out.
fn accept_order(headers: &HeaderMap) -> Vec<String> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or("*/*");
    let mut ranges: Vec<(f32, u8, String)> = parse_media_types(accept)
        .into_iter()
        .filter_map(|mt| {
            let q = mt.param("q").map_or(Some(1.0), |q| q.parse::<f32>().ok())?;
            if q <= 0.0 {
                return None;
            }
            let wild = match mt.essence.split_once('/') {
                Some(("*", _)) => 2,
                Some((_, "*")) => 1,
                _ => 0,
            };
            Some((q, wild, mt.essence))
        })
        .collect();
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    ranges.into_iter().map(|(_, _, e)| e).collect()
}

fn range_matches(range: &str, media_type: &str) -> bool {
    if range == "*/*" || range == media_type {
        return true;
    }
    match (range.split_once('/'), media_type.split_once('/')) {
        (Some((rt, "*")), Some((mt, _))) => rt == mt,
        _ => false,
    }
}

/// The first offered type (in upstream's order of preference) the client
/// accepts, with the Content-Type to answer with.
fn negotiate_type(
    headers: &HeaderMap,
    offered: &[(&'static str, &'static str)],
) -> Option<(&'static str, &'static str)> {
    accept_order(headers).iter().find_map(|range| {
        offered
            .iter()
            .find(|(t, _)| range_matches(range, t))
            .copied()
    })
}

fn quoted(etag: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{etag}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

/// Whether If-None-Match names this entity (Go's `checkIfNoneMatch`: weak
/// comparison, `*` matches anything).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    inm.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).trim_matches('"') == etag)
}

fn not_acceptable(offered: &[(&'static str, &'static str)]) -> Response<Body> {
    let names: Vec<&str> = offered.iter().map(|(t, _)| *t).collect();
    negotiate::error_response(&ApiError::not_acceptable(&names.join(", ")))
}

/// A document response with upstream's validators, or 304.
fn document(
    docs: &Documents,
    entry: &str,
    etag: &str,
    content_type: &'static str,
    extra: &[(header::HeaderName, HeaderValue)],
    headers: &HeaderMap,
) -> Response<Body> {
    let fresh = not_modified(headers, etag);
    let body = if fresh {
        Bytes::new()
    } else {
        match docs.get(entry) {
            Ok(b) => b,
            Err(e) => return negotiate::error_response(&ApiError::internal(e)),
        }
    };
    let mut r = Response::new(Body::from(body));
    let h = r.headers_mut();
    for (k, v) in extra {
        h.insert(k, v.clone());
    }
    h.insert(header::ETAG, quoted(etag));
    if fresh {
        *r.status_mut() = StatusCode::NOT_MODIFIED;
    } else {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(header::LAST_MODIFIED, docs.last_modified.clone());
    }
    r
}

fn serve_v2(docs: &Documents, headers: &HeaderMap) -> Response<Body> {
    const OFFERED: &[(&str, &str)] = &[
        (JSON, JSON),
        (V2_PROTOBUF, V2_PROTOBUF_REPLY),
        (V2_PROTOBUF_REPLY, V2_PROTOBUF_REPLY),
    ];
    let Some((offered, content_type)) = negotiate_type(headers, OFFERED) else {
        return with_vary(not_acceptable(OFFERED));
    };
    let entry = if offered == JSON { "v2.json" } else { "v2.pb" };
    let Some(etag) = docs.etag(entry) else {
        return negotiate::error_response(&ApiError::internal(format!("no ETag for {entry}")));
    };
    let vary = [(header::VARY, HeaderValue::from_static("Accept"))];
    document(docs, entry, etag, content_type, &vary, headers)
}

fn with_vary(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    r
}

fn serve_v3_discovery(docs: &Documents, headers: &HeaderMap) -> Response<Body> {
    let Some(etag) = docs.etag("v3") else {
        return negotiate::error_response(&ApiError::internal("no ETag for the v3 discovery"));
    };
    document(docs, "v3", etag, JSON, &[], headers)
}

fn serve_v3_group_version(
    docs: &Documents,
    gv: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Response<Body> {
    const OFFERED: &[(&str, &str)] = &[(JSON, JSON)];
    let entry = format!("v3/{gv}");
    let Some(etag) = docs.etag(&entry) else {
        return negotiate::error_response(&ApiError::not_found_path());
    };
    if negotiate_type(headers, OFFERED).is_none() {
        return with_vary(not_acceptable(OFFERED));
    }
    let mut extra = vec![(header::VARY, HeaderValue::from_static("Accept"))];
    let hash = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "hash")
            .map(|(_, v)| v.into_owned())
    });
    if let Some(hash) = hash.filter(|h| !h.is_empty()) {
        if hash != etag {
            return redirect(&format!("/openapi/v3/{gv}?hash={etag}"));
        }
        extra.push((
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, immutable"),
        ));
        let year = jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_hours(365 * 24))
            .ok()
            .and_then(http_date);
        if let Some(expires) = year {
            extra.push((header::EXPIRES, expires));
        }
    }
    document(docs, &entry, etag, JSON, &extra, headers)
}

/// Go's `http.Redirect(w, r, url, 301)` for a GET.
fn redirect(location: &str) -> Response<Body> {
    let body = format!("<a href=\"{location}\">Moved Permanently</a>.\n\n");
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use kedge_api::registry::RESOURCES;
    use serde_json::Value;

    fn get(
        path: &str,
        query: Option<&str>,
        hdrs: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Bytes) {
        let mut h = HeaderMap::new();
        for (k, v) in hdrs {
            h.insert(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let r = handle(path, query, &h).expect("an openapi path");
        let (parts, body) = r.into_parts();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = rt.block_on(body.collect()).unwrap().to_bytes();
        (parts.status, parts.headers, bytes)
    }

    fn json(b: &[u8]) -> Value {
        serde_json::from_slice(b).expect("JSON")
    }

    fn etag_of(h: &HeaderMap) -> String {
        h.get(header::ETAG)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_matches('"')
            .to_string()
    }

    fn discovery() -> Value {
        let (status, h, body) = get("/openapi/v3", None, &[]);
        assert_eq!(status, StatusCode::OK);
        assert_eq!(h.get(header::CONTENT_TYPE).unwrap(), JSON);
        json(&body)
    }

    /// (path with query, hash) of one group-version in the v3 discovery.
    fn gv_url(gv: &str) -> (String, String) {
        let d = discovery();
        let url = d["paths"][gv]["serverRelativeURL"]
            .as_str()
            .unwrap_or_else(|| panic!("{gv} in v3 discovery"))
            .to_string();
        let (path, query) = url.split_once('?').unwrap();
        let hash = query.strip_prefix("hash=").unwrap().to_string();
        (path.to_string(), hash)
    }

    fn v3(gv: &str) -> Value {
        let (path, hash) = gv_url(gv);
        let (status, _, body) = get(
            &path,
            Some(&format!("hash={hash}")),
            &[("accept", "application/json")],
        );
        assert_eq!(status, StatusCode::OK);
        json(&body)
    }

    #[test]
    fn other_paths_are_not_ours() {
        let h = HeaderMap::new();
        assert!(handle("/api/v1", None, &h).is_none());
        assert!(handle("/openapiv2", None, &h).is_none());
        assert_eq!(get("/openapi/v4", None, &[]).0, StatusCode::NOT_FOUND);
        assert_eq!(get("/openapi", None, &[]).0, StatusCode::NOT_FOUND);
        assert_eq!(get("/openapi/v3/", None, &[]).0, StatusCode::NOT_FOUND);
        assert_eq!(
            get("/openapi/v3/apis/example.com/v1", None, &[]).0,
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn v3_discovery_lists_group_versions_with_hashes() {
        let d = discovery();
        let paths = d["paths"].as_object().unwrap();
        for gv in [
            "api",
            "api/v1",
            "apis",
            "apis/apps",
            "apis/apps/v1",
            "apis/batch/v1",
            "version",
        ] {
            let url = paths[gv]["serverRelativeURL"].as_str().unwrap();
            let (path, hash) = url.split_once("?hash=").unwrap();
            assert_eq!(path, format!("/openapi/v3/{gv}"));
            assert_eq!(hash.len(), 128, "{url}");
            assert!(hash
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c)));
            // The hash is the document's ETag.
            let (_, h, _) = get(path, None, &[]);
            assert_eq!(etag_of(&h), hash);
        }
        // Every group-version kedge serves, and nothing else.
        let mut served: Vec<String> = RESOURCES
            .iter()
            .filter(|r| in_upstream_spec(r.group, r.version))
            .map(|r| r.api_version())
            .collect();
        served.sort();
        served.dedup();
        for gv in &served {
            let key = if gv.contains('/') {
                format!("apis/{gv}")
            } else {
                format!("api/{gv}")
            };
            assert!(paths.contains_key(&key), "{key} missing");
        }
        for key in paths.keys() {
            let parts: Vec<&str> = key.split('/').collect();
            if parts.len() == 3 || (parts.len() == 2 && parts[0] == "api") {
                let gv = parts[1..].join("/");
                assert!(served.contains(&gv), "{key} is not served");
            }
        }
    }

    #[test]
    fn v3_document_has_pod_with_gvk_and_field_validation() {
        let doc = v3("api/v1");
        assert_eq!(doc["openapi"], "3.0.0");
        let pod = &doc["components"]["schemas"]["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            pod["x-kubernetes-group-version-kind"],
            serde_json::json!([{"group": "", "kind": "Pod", "version": "v1"}])
        );
        let pods = &doc["paths"]["/api/v1/namespaces/{namespace}/pods"];
        let names = |op: &Value| -> Vec<String> {
            op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert!(names(&pods["post"]).contains(&"fieldValidation".to_string()));
        assert_eq!(pods["post"]["x-kubernetes-action"], "post");
        assert!(
            pods["post"]["requestBody"]["content"]["*/*"]["schema"]["$ref"]
                .as_str()
                .unwrap()
                .ends_with("io.k8s.api.core.v1.Pod")
        );
        // What kubectl's QueryParamVerifierV3 actually reads: the PATCH
        // operation of the kind, its GVK extension and a query parameter.
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Pod");
        let fv = patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "fieldValidation")
            .expect("fieldValidation on PATCH pods");
        assert_eq!(fv["in"], "query");
        // Apply's SMP from v3 needs this content type on PATCH.
        assert!(patch["requestBody"]["content"]
            .get("application/strategic-merge-patch+json")
            .is_some());
    }

    #[test]
    fn v3_documents_resolve_for_explain() {
        let doc = v3("api/v1");
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        // kubectl explain pod.spec.containers.resources
        let res = &schemas["io.k8s.api.core.v1.Container"]["properties"]["resources"];
        assert!(res["description"]
            .as_str()
            .unwrap()
            .contains("Compute Resources"));
        assert_eq!(
            res["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.ResourceRequirements"
        );
        let limits = &schemas["io.k8s.api.core.v1.ResourceRequirements"]["properties"]["limits"];
        assert_eq!(
            limits["additionalProperties"]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.api.resource.Quantity"
        );
        assert!(schemas["io.k8s.apimachinery.pkg.api.resource.Quantity"]["oneOf"].is_array());
        // Every reference in every document resolves inside it.
        for gv in discovery()["paths"].as_object().unwrap().keys() {
            let doc = v3(gv);
            let schemas = doc["components"]["schemas"].as_object().unwrap();
            let mut refs = Vec::new();
            collect_refs(&doc, &mut refs);
            for r in refs {
                let name = r
                    .strip_prefix("#/components/schemas/")
                    .expect("component ref");
                assert!(schemas.contains_key(name), "{gv}: dangling {r}");
            }
        }
    }

    fn collect_refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("$ref", Value::String(s)) => out.push(s.clone()),
                        _ => collect_refs(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }

    /// Group-versions kedge serves that upstream's published v1.33 spec
    /// (default-enabled APIs only) has no document for.
    const NOT_IN_UPSTREAM_SPEC: &[(&str, &str)] = &[("authentication.k8s.io", "v1beta1")];

    fn in_upstream_spec(group: &str, version: &str) -> bool {
        !NOT_IN_UPSTREAM_SPEC.contains(&(group, version))
    }

    /// Every kind kedge serves has its collection path, its subresources and
    /// its schema with a GVK; no resource path is advertised that kedge does
    /// not serve. Keeps scripts/gen-openapi.py's table in step with the
    /// registry.
    #[test]
    fn documents_cover_the_registry() {
        let mut docs: HashMap<String, Value> = HashMap::new();
        for ri in RESOURCES
            .iter()
            .filter(|r| in_upstream_spec(r.group, r.version))
        {
            let key = if ri.group.is_empty() {
                format!("api/{}", ri.version)
            } else {
                format!("apis/{}/{}", ri.group, ri.version)
            };
            let doc = docs.entry(key.clone()).or_insert_with(|| v3(&key));
            let paths = doc["paths"].as_object().unwrap();
            let base = if ri.namespaced {
                format!("/{key}/namespaces/{{namespace}}/{}", ri.plural)
            } else {
                format!("/{key}/{}", ri.plural)
            };
            assert!(paths.contains_key(&base), "{base} missing");
            for sub in ri.subresources {
                let p = format!("{base}/{{name}}/{sub}");
                assert!(paths.contains_key(&p), "{p} missing");
            }
            let has_kind = doc["components"]["schemas"]
                .as_object()
                .unwrap()
                .values()
                .any(|s| {
                    s["x-kubernetes-group-version-kind"]
                        .as_array()
                        .is_some_and(|a| {
                            a.iter().any(|g| {
                                g["group"] == ri.group
                                    && g["version"] == ri.version
                                    && g["kind"] == ri.kind
                            })
                        })
                });
            assert!(has_kind, "{key} has no schema for {}", ri.kind);
        }
        for (key, doc) in &docs {
            let prefix = format!("/{key}/");
            for path in doc["paths"].as_object().unwrap().keys() {
                let rest = path.strip_prefix(&prefix).unwrap();
                if rest.is_empty() {
                    continue;
                }
                let mut parts: Vec<&str> = rest.split('/').collect();
                if parts.len() >= 3 && parts[0] == "namespaces" && parts[1] == "{namespace}" {
                    parts.drain(..2);
                }
                let gv: Vec<&str> = key.split('/').skip(1).collect();
                let (group, version) = match gv.as_slice() {
                    [v] => ("", *v),
                    [g, v] => (*g, *v),
                    _ => panic!("{key}"),
                };
                let ri = kedge_api::registry::lookup(group, version, parts[0])
                    .unwrap_or_else(|| panic!("{path}: not served"));
                if parts.len() >= 3 {
                    assert!(
                        ri.has_subresource(parts[2]),
                        "{path}: subresource not served"
                    );
                }
            }
        }
    }

    #[test]
    fn v3_hash_caching() {
        let (path, hash) = gv_url("apis/apps/v1");
        // Matching hash: immutable for a year.
        let (status, h, body) = get(&path, Some(&format!("hash={hash}")), &[]);
        assert_eq!(status, StatusCode::OK);
        assert_eq!(h.get(header::CACHE_CONTROL).unwrap(), "public, immutable");
        assert!(h
            .get(header::EXPIRES)
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with(" GMT"));
        assert_eq!(h.get(header::VARY).unwrap(), "Accept");
        assert_eq!(etag_of(&h), hash);
        let doc = json(&body);
        assert!(doc["components"]["schemas"]
            .get("io.k8s.api.apps.v1.Deployment")
            .is_some());
        // No hash: served, but not marked immutable.
        let (status, h, _) = get(&path, None, &[]);
        assert_eq!(status, StatusCode::OK);
        assert!(h.get(header::CACHE_CONTROL).is_none());
        // A stale hash is redirected to the current one.
        let (status, h, _) = get(&path, Some("hash=0123"), &[]);
        assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
        assert_eq!(
            h.get(header::LOCATION).unwrap().to_str().unwrap(),
            format!("{path}?hash={hash}")
        );
        // Revalidation.
        let inm = format!("\"{hash}\"");
        let (status, h, body) = get(
            &path,
            Some(&format!("hash={hash}")),
            &[("if-none-match", &inm)],
        );
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());
        assert_eq!(etag_of(&h), hash);
        assert_eq!(h.get(header::CACHE_CONTROL).unwrap(), "public, immutable");
        let (status, _, _) = get(&path, None, &[("if-none-match", "\"other\"")]);
        assert_eq!(status, StatusCode::OK);
        // Discovery revalidates too.
        let (_, h, _) = get("/openapi/v3", None, &[]);
        let (status, _, _) = get(
            "/openapi/v3",
            None,
            &[("if-none-match", &format!("W/\"{}\"", etag_of(&h)))],
        );
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        // Only JSON is offered for v3.
        let (status, _, _) = get(
            &path,
            None,
            &[(
                "accept",
                "application/com.github.proto-openapi.spec.v3@v1.0+protobuf",
            )],
        );
        assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    }

    #[test]
    fn v2_json_is_served() {
        for accept in [
            None,
            Some("application/json"),
            Some("*/*"),
            Some("application/json, */*"),
        ] {
            let hdrs: Vec<(&str, &str)> = accept.into_iter().map(|a| ("accept", a)).collect();
            let (status, h, body) = get("/openapi/v2", None, &hdrs);
            assert_eq!(status, StatusCode::OK, "{accept:?}");
            assert_eq!(h.get(header::CONTENT_TYPE).unwrap(), JSON);
            let doc = json(&body);
            assert_eq!(doc["swagger"], "2.0");
            let pod = &doc["definitions"]["io.k8s.api.core.v1.Pod"];
            assert_eq!(pod["x-kubernetes-group-version-kind"][0]["kind"], "Pod");
            let patch =
                &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
            assert!(patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation"));
            // Shared parameters are kept for the references to them.
            let mut refs = Vec::new();
            collect_refs(&doc, &mut refs);
            for r in refs {
                let ok = if let Some(n) = r.strip_prefix("#/definitions/") {
                    doc["definitions"].get(n).is_some()
                } else if let Some(n) = r.strip_prefix("#/parameters/") {
                    doc["parameters"].get(n).is_some()
                } else {
                    false
                };
                assert!(ok, "dangling {r}");
            }
        }
    }

    #[test]
    fn v2_protobuf_for_kubectl() {
        let (status, h, body) = get(
            "/openapi/v2",
            None,
            &[(
                "accept",
                "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
            )],
        );
        assert_eq!(status, StatusCode::OK);
        assert_eq!(h.get(header::CONTENT_TYPE).unwrap(), V2_PROTOBUF_REPLY);
        let pb_etag = etag_of(&h);
        let (_, h, json_body) = get("/openapi/v2", None, &[]);
        // Upstream gives both forms the JSON's ETag.
        assert_eq!(pb_etag, etag_of(&h));
        let doc = json(&json_body);

        // openapi.v2.Document: swagger = 1, paths = 8, definitions = 9.
        let top = pb_fields(&body);
        assert_eq!(pb_string(&top, 1), Some("2.0"));
        let definitions = top.iter().find(|(n, _)| *n == 9).expect("definitions").1;
        let names: Vec<&str> = pb_fields(definitions)
            .iter()
            .map(|(_, named)| pb_string(&pb_fields(named), 1).unwrap())
            .collect();
        let want: Vec<&str> = doc["definitions"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(names, want);
        // NamedSchema "io.k8s.api.core.v1.Pod" -> Schema.vendor_extension (31)
        // -> NamedAny {name 1, value 2 -> Any.yaml 2}.
        let pod = pb_fields(definitions)
            .into_iter()
            .map(|(_, named)| pb_fields(named))
            .find(|f| pb_string(f, 1) == Some("io.k8s.api.core.v1.Pod"))
            .unwrap();
        let schema = pb_fields(pod.iter().find(|(n, _)| *n == 2).unwrap().1);
        let ext = schema
            .iter()
            .filter(|(n, _)| *n == 31)
            .map(|(_, e)| pb_fields(e))
            .find(|e| pb_string(e, 1) == Some("x-kubernetes-group-version-kind"))
            .expect("GVK extension");
        let any = pb_fields(ext.iter().find(|(n, _)| *n == 2).unwrap().1);
        let yaml: Value = serde_yaml::from_str(pb_string(&any, 2).unwrap()).unwrap();
        assert_eq!(
            yaml,
            serde_json::json!([{"group": "", "kind": "Pod", "version": "v1"}])
        );
        let paths = top.iter().find(|(n, _)| *n == 8).expect("paths").1;
        assert_eq!(
            pb_fields(paths).iter().filter(|(n, _)| *n == 2).count(),
            doc["paths"].as_object().unwrap().len()
        );

        // Conditional and refused requests.
        let inm = format!("\"{pb_etag}\"");
        let (status, _, body) = get(
            "/openapi/v2",
            None,
            &[
                (
                    "accept",
                    "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
                ),
                ("if-none-match", &inm),
            ],
        );
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());
        let (status, _, _) = get("/openapi/v2", None, &[("accept", "application/yaml")]);
        assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
        // Quality decides between the forms.
        let (_, h, _) = get("/openapi/v2", None, &[(
            "accept",
            "application/json;q=0.5, application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
        )]);
        assert_eq!(h.get(header::CONTENT_TYPE).unwrap(), V2_PROTOBUF_REPLY);
    }

    /// Length-delimited fields of one protobuf message (other wire types
    /// skipped), in order.
    fn pb_fields(mut b: &[u8]) -> Vec<(u64, &[u8])> {
        fn varint(b: &mut &[u8]) -> u64 {
            let mut v = 0u64;
            for shift in (0..64).step_by(7) {
                let byte = b[0];
                *b = &b[1..];
                v |= u64::from(byte & 0x7f) << shift;
                if byte & 0x80 == 0 {
                    break;
                }
            }
            v
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let key = varint(&mut b);
            match key & 7 {
                0 => {
                    varint(&mut b);
                }
                1 => b = &b[8..],
                2 => {
                    let len = varint(&mut b) as usize;
                    out.push((key >> 3, &b[..len]));
                    b = &b[len..];
                }
                5 => b = &b[4..],
                t => panic!("wire type {t}"),
            }
        }
        out
    }

    fn pb_string<'a>(fields: &[(u64, &'a [u8])], n: u64) -> Option<&'a str> {
        fields
            .iter()
            .find(|(f, _)| *f == n)
            .map(|(_, b)| std::str::from_utf8(b).unwrap())
    }

    #[test]
    fn entries_are_decoded_once_and_kept() {
        let docs = documents().unwrap();
        let a = docs.get("v3/api/v1").unwrap();
        let b = docs.get("v3/api/v1").unwrap();
        assert_eq!(a.as_ptr(), b.as_ptr());
        assert!(read_entry("no-such-entry").unwrap().is_none());
    }
}
