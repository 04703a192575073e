//! `/openapi/v2` and `/openapi/v3`: upstream Kubernetes v1.33's OpenAPI
//! documents, reduced to the group-versions and resources kedge serves, and
//! the custom resources that CustomResourceDefinitions add.
//!
//! Stock kubectl needs them: 1.27 and 1.28 load `/openapi/v2` (protobuf)
//! before every `create`/`apply` with the default `--validate=strict` and
//! before `explain`; every version from 1.27 on reads `/openapi/v3/<gv>` to
//! find the `fieldValidation` parameter on the PATCH operation of a kind
//! (server-side validation), for `explain`, and for apply's strategic merge
//! patch metadata.
//!
//! The built-in documents are generated ahead of time by
//! `scripts/gen-openapi.py` (see `crates/kedge-apiserver/openapi/README.md`)
//! and embedded as one zstd frame of named entries, index first. Nothing is
//! decoded until a client asks; each entry is then read out of the frame
//! (decoding stops at that entry) and kept, so a process holds only the
//! documents that were asked for. ETags (upstream's upper-case hex SHA-512
//! of the bytes) come with the index.
//!
//! Custom resources are published as upstream's apiextensions-apiserver
//! publishes them (its `pkg/controller/openapi/builder`): each served
//! version gets the definitions `<reversed group>.<version>.<Kind>` (the
//! `openAPIV3Schema` made structural, with `apiVersion`, `kind` and an
//! ObjectMeta `metadata`, and `x-kubernetes-group-version-kind`) and
//! `...<Kind>List`, and the paths of the resource and its `status` and
//! `scale` subresources with the standard operations and parameters
//! (`fieldValidation` among them). Each CRD group-version has its own
//! document, `/openapi/v3/apis/<group>/<version>`, listed in the v3
//! discovery document; `/openapi/v2` gets the same definitions (in their v2
//! form: `ToStructuralOpenAPIV2`) and paths, in JSON and protobuf (spliced
//! into the embedded protobuf, not re-encoded). These documents are built
//! when first asked for and kept until the CRDs change (a built-in document
//! they replace is not kept meanwhile). A group-version's hash and the v2
//! ETag are SHA-512s of what the document is built from, so nothing is
//! built just to be hashed and they change exactly when a CRD's published
//! part does. The operation parameters and the metav1 definitions they
//! reference are taken from the embedded `apps/v1` document (upstream's CRD
//! builder uses the same option and meta types).
//!
//! HTTP behaviour follows kube-openapi's `handler` and `handler3`: Accept
//! negotiation (JSON, or gnostic protobuf for v2), a quoted `ETag`,
//! `If-None-Match` answered with 304, and for `/openapi/v3/<gv>?hash=H` a
//! 301 to the current hash when H is stale, else `Cache-Control: public,
//! immutable` with a year's `Expires`.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use kedge_api::ApiError;
use serde_json::{json, Map, Value};

use crate::crd::{CrdRegistry, CustomResource};
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
    #[error("building the custom resources' OpenAPI documents: {0}")]
    CustomResources(String),
}

pub type Result<T> = std::result::Result<T, Error>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

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
            last_modified: now_http_date(),
        })
    }

    fn etag(&self, name: &str) -> Option<&str> {
        self.etags.get(name).map(String::as_str)
    }

    /// The bytes of one entry, decoded on first use and kept.
    fn get(&self, name: &str) -> Result<Bytes> {
        let mut loaded = lock(&self.loaded);
        if let Some(b) = loaded.get(name) {
            return Ok(b.clone());
        }
        let b = read_entry(name)?.ok_or_else(|| Error::Format(format!("no entry {name:?}")))?;
        loaded.insert(name.to_string(), b.clone());
        Ok(b)
    }

    /// The bytes of one entry, without keeping them if they were not kept
    /// already: for entries that other documents are built from.
    fn peek(&self, name: &str) -> Result<Bytes> {
        if let Some(b) = lock(&self.loaded).get(name) {
            return Ok(b.clone());
        }
        read_entry(name)?.ok_or_else(|| Error::Format(format!("no entry {name:?}")))
    }

    /// The bytes of one entry, dropping a kept copy: for a document that a
    /// merged one replaces while custom resources exist.
    fn take(&self, name: &str) -> Result<Bytes> {
        if let Some(b) = lock(&self.loaded).remove(name) {
            return Ok(b);
        }
        read_entry(name)?.ok_or_else(|| Error::Format(format!("no entry {name:?}")))
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

fn now_http_date() -> HeaderValue {
    http_date(jiff::Timestamp::now())
        .unwrap_or_else(|| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
}

/// Serve an OpenAPI path. None: `path` is not under `/openapi`.
///
/// Meant for GET (and HEAD) requests of authenticated users. The custom
/// resources of `crds` are published beside the built-in resources.
pub fn handle(
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    crds: &CrdRegistry,
) -> Option<Response<Body>> {
    static CRD_DOCUMENTS: CrdCache = CrdCache::new();
    let rest = path.strip_prefix("/openapi")?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    Some(serve(&CRD_DOCUMENTS, rest, query, headers, &crds.all()))
}

/// Serve `rest` (the path after `/openapi`) with the custom resources `crs`.
fn serve(
    cache: &CrdCache,
    rest: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    crs: &[Arc<CustomResource>],
) -> Response<Body> {
    let docs = match documents() {
        Ok(d) => d,
        Err(e) => return negotiate::error_response(&ApiError::internal(e)),
    };
    let view = cache.view(docs, crs);
    match rest {
        "/v2" => serve_v2(docs, &view, headers),
        "/v3" => serve_v3_discovery(docs, &view, headers),
        _ => match rest.strip_prefix("/v3/") {
            Some(gv) => serve_v3_group_version(docs, &view, gv, query, headers),
            None => negotiate::error_response(&ApiError::not_found_path()),
        },
    }
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

/// One document to answer with: its ETag, when it last changed, and how to
/// get its bytes (only called when they are sent).
struct Entity<'a, F: FnOnce() -> Result<Bytes>> {
    etag: &'a str,
    last_modified: &'a HeaderValue,
    body: F,
}

/// A document response with upstream's validators, or 304.
fn document<F: FnOnce() -> Result<Bytes>>(
    entity: Entity<'_, F>,
    content_type: &'static str,
    extra: &[(header::HeaderName, HeaderValue)],
    headers: &HeaderMap,
) -> Response<Body> {
    let fresh = not_modified(headers, entity.etag);
    let body = if fresh {
        Bytes::new()
    } else {
        match (entity.body)() {
            Ok(b) => b,
            Err(e) => return negotiate::error_response(&ApiError::internal(e)),
        }
    };
    let mut r = Response::new(Body::from(body));
    let h = r.headers_mut();
    for (k, v) in extra {
        h.insert(k, v.clone());
    }
    h.insert(header::ETAG, quoted(entity.etag));
    if fresh {
        *r.status_mut() = StatusCode::NOT_MODIFIED;
    } else {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(header::LAST_MODIFIED, entity.last_modified.clone());
    }
    r
}

/// A built-in entry of the bundle as an entity.
fn bundled<'a>(
    docs: &'a Documents,
    entry: &'a str,
    etag: &'a str,
) -> Entity<'a, impl FnOnce() -> Result<Bytes> + 'a> {
    Entity {
        etag,
        last_modified: &docs.last_modified,
        body: move || docs.get(entry),
    }
}

fn serve_v2(docs: &Documents, view: &CrdView, headers: &HeaderMap) -> Response<Body> {
    const OFFERED: &[(&str, &str)] = &[
        (JSON, JSON),
        (V2_PROTOBUF, V2_PROTOBUF_REPLY),
        (V2_PROTOBUF_REPLY, V2_PROTOBUF_REPLY),
    ];
    let Some((offered, content_type)) = negotiate_type(headers, OFFERED) else {
        return with_vary(not_acceptable(OFFERED));
    };
    let protobuf = offered != JSON;
    let entry = if protobuf { "v2.pb" } else { "v2.json" };
    let vary = [(header::VARY, HeaderValue::from_static("Accept"))];
    if let Some(etag) = view.v2_etag.as_deref() {
        let entity = Entity {
            etag,
            last_modified: &view.last_modified,
            body: || view.v2(docs, protobuf),
        };
        return document(entity, content_type, &vary, headers);
    }
    let Some(etag) = docs.etag(entry) else {
        return negotiate::error_response(&ApiError::internal(format!("no ETag for {entry}")));
    };
    document(bundled(docs, entry, etag), content_type, &vary, headers)
}

fn with_vary(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    r
}

fn serve_v3_discovery(docs: &Documents, view: &CrdView, headers: &HeaderMap) -> Response<Body> {
    if view.publishes_custom_resources() {
        let (body, etag) = match view.discovery(docs) {
            Ok(d) => d,
            Err(e) => return negotiate::error_response(&ApiError::internal(e)),
        };
        let entity = Entity {
            etag: &etag,
            last_modified: &view.last_modified,
            body: || Ok(body),
        };
        return document(entity, JSON, &[], headers);
    }
    let Some(etag) = docs.etag("v3") else {
        return negotiate::error_response(&ApiError::internal("no ETag for the v3 discovery"));
    };
    document(bundled(docs, "v3", etag), JSON, &[], headers)
}

fn serve_v3_group_version(
    docs: &Documents,
    view: &CrdView,
    gv: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Response<Body> {
    const OFFERED: &[(&str, &str)] = &[(JSON, JSON)];
    let entry = format!("v3/{gv}");
    let custom = view.groups.get(gv);
    let Some(etag) = custom
        .map(|g| g.hash.as_str())
        .or_else(|| docs.etag(&entry))
    else {
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
    if custom.is_some() {
        let entity = Entity {
            etag,
            last_modified: &view.last_modified,
            body: || view.v3(docs, gv),
        };
        return document(entity, JSON, &extra, headers);
    }
    document(bundled(docs, &entry, etag), JSON, &extra, headers)
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

// ---------------------------------------------------------------------------
// Custom resources: which documents they change, and the cache of those.

/// The CRD documents of one set of served custom resources.
struct CrdCache {
    current: Mutex<Option<Arc<CrdView>>>,
}

impl CrdCache {
    const fn new() -> Self {
        CrdCache {
            current: Mutex::new(None),
        }
    }

    /// The view of `crs`: the current one while the registry hands out the
    /// same entries, else a new one that keeps what did not change.
    fn view(&self, docs: &Documents, crs: &[Arc<CustomResource>]) -> Arc<CrdView> {
        let mut current = lock(&self.current);
        if let Some(v) = current.as_ref() {
            if v.crs.len() == crs.len() && v.crs.iter().zip(crs).all(|(a, b)| Arc::ptr_eq(a, b)) {
                return v.clone();
            }
        }
        let view = Arc::new(CrdView::new(docs, crs, current.as_deref()));
        *current = Some(view.clone());
        view
    }
}

/// One CRD group-version: its custom resources and its document's hash.
struct CrdGroupVersion {
    crs: Vec<Arc<CustomResource>>,
    hash: String,
}

/// What the custom resources add to the documents. The documents are built
/// when first asked for.
struct CrdView {
    /// The registry's entries this view was made of (compared by address).
    crs: Vec<Arc<CustomResource>>,
    /// By v3 key, `apis/<group>/<version>`.
    groups: BTreeMap<String, CrdGroupVersion>,
    /// The ETag of `/openapi/v2` (and a fingerprint of every group-version);
    /// None when no custom resource is published.
    v2_etag: Option<String>,
    last_modified: HeaderValue,
    built: Mutex<BuiltDocuments>,
}

#[derive(Default)]
struct BuiltDocuments {
    discovery: Option<(Bytes, String)>,
    v3: HashMap<String, Bytes>,
    v2_json: Option<Bytes>,
    v2_pb: Option<Bytes>,
}

impl CrdView {
    fn publishes_custom_resources(&self) -> bool {
        !self.groups.is_empty()
    }

    fn new(docs: &Documents, crs: &[Arc<CustomResource>], old: Option<&CrdView>) -> Self {
        let mut by_gv: BTreeMap<String, Vec<Arc<CustomResource>>> = BTreeMap::new();
        for cr in crs {
            // A built-in resource wins over a CRD that names it.
            if kedge_api::registry::lookup(cr.ri.group, cr.ri.version, cr.ri.plural).is_some() {
                continue;
            }
            by_gv
                .entry(format!("apis/{}/{}", cr.ri.group, cr.ri.version))
                .or_default()
                .push(cr.clone());
        }
        let groups: BTreeMap<String, CrdGroupVersion> = by_gv
            .into_iter()
            .map(|(key, crs)| {
                let hash = group_version_hash(docs, &key, &crs);
                (key, CrdGroupVersion { crs, hash })
            })
            .collect();
        let v2_etag = (!groups.is_empty()).then(|| {
            let mut h = Sha512::new();
            h.update(docs.etag("v2.json").unwrap_or_default());
            for (key, g) in &groups {
                h.update(b"\0");
                h.update(key);
                h.update(b"\0");
                h.update(&g.hash);
            }
            h.hex()
        });
        let mut built = BuiltDocuments::default();
        let mut last_modified = None;
        if let Some(old) = old {
            let mut old_built = lock(&old.built);
            for (key, g) in &groups {
                if old.groups.get(key).is_some_and(|o| o.hash == g.hash) {
                    if let Some(b) = old_built.v3.remove(key) {
                        built.v3.insert(key.clone(), b);
                    }
                }
            }
            if old.v2_etag == v2_etag {
                built.discovery = old_built.discovery.take();
                built.v2_json = old_built.v2_json.take();
                built.v2_pb = old_built.v2_pb.take();
                last_modified = Some(old.last_modified.clone());
            }
        }
        CrdView {
            crs: crs.to_vec(),
            groups,
            v2_etag,
            last_modified: last_modified.unwrap_or_else(now_http_date),
            built: Mutex::new(built),
        }
    }

    /// The v3 discovery document with the CRD group-versions, and its ETag.
    fn discovery(&self, docs: &Documents) -> Result<(Bytes, String)> {
        let mut built = lock(&self.built);
        if let Some(d) = &built.discovery {
            return Ok(d.clone());
        }
        let mut doc: Value = serde_json::from_slice(&docs.peek("v3")?)
            .map_err(|e| Error::Format(format!("v3: {e}")))?;
        let paths = doc
            .get_mut("paths")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| Error::Format("v3 has no paths".into()))?;
        for (key, g) in &self.groups {
            let url = format!("/openapi/v3/{key}?hash={}", g.hash);
            paths.insert(key.clone(), json!({ "serverRelativeURL": url }));
        }
        paths.sort_keys();
        let bytes = Bytes::from(to_json(&doc)?);
        let etag = Sha512::digest_hex(&bytes);
        built.discovery = Some((bytes.clone(), etag.clone()));
        Ok((bytes, etag))
    }

    /// The document of one CRD group-version.
    fn v3(&self, docs: &Documents, key: &str) -> Result<Bytes> {
        let mut built = lock(&self.built);
        if let Some(b) = built.v3.get(key) {
            return Ok(b.clone());
        }
        let g = self
            .groups
            .get(key)
            .ok_or_else(|| Error::CustomResources(format!("no group-version {key}")))?;
        let base = match docs.etag(&format!("v3/{key}")) {
            Some(_) => Some(
                serde_json::from_slice(&docs.peek(&format!("v3/{key}"))?)
                    .map_err(|e| Error::Format(format!("v3/{key}: {e}")))?,
            ),
            None => None,
        };
        let doc = v3_document(base, &g.crs, donor(docs)?);
        let bytes = Bytes::from(to_json(&doc)?);
        built.v3.insert(key.to_string(), bytes.clone());
        Ok(bytes)
    }

    /// `/openapi/v2` with the custom resources, as JSON or protobuf.
    fn v2(&self, docs: &Documents, protobuf: bool) -> Result<Bytes> {
        let mut built = lock(&self.built);
        let slot = if protobuf {
            &mut built.v2_pb
        } else {
            &mut built.v2_json
        };
        if let Some(b) = slot.as_ref() {
            return Ok(b.clone());
        }
        let donor = donor(docs)?;
        let mut definitions = Vec::new();
        let mut paths = Vec::new();
        for g in self.groups.values() {
            for cr in &g.crs {
                let ri = cr.ri;
                definitions.push((
                    model_name(ri.group, ri.version, ri.kind),
                    crd_model(cr, true),
                ));
                definitions.push((
                    model_name(ri.group, ri.version, &ri.list_kind()),
                    crd_list_model(cr, true),
                ));
                paths.extend(path_items(&crd_routes(cr, donor), cr, true));
            }
        }
        let bytes = if protobuf {
            let base = docs.take("v2.pb")?;
            let encode = |items: Vec<(String, Value)>, f: fn(&Value) -> Vec<u8>| {
                items
                    .into_iter()
                    .map(|(name, v)| {
                        let mut named = Vec::new();
                        pb::string(&mut named, 1, &name);
                        pb::message(&mut named, 2, &f(&v));
                        (name, named)
                    })
                    .collect::<Vec<_>>()
            };
            let paths = encode(paths, pb::path_item);
            let definitions = encode(definitions, pb::schema);
            pb::splice_document(&base, &paths, &definitions)
                .ok_or_else(|| Error::Format("v2.pb cannot be parsed".into()))?
        } else {
            let base = docs.take("v2.json")?;
            let mut doc: Value = serde_json::from_slice(&base)
                .map_err(|e| Error::Format(format!("v2.json: {e}")))?;
            for (field, items) in [("definitions", definitions), ("paths", paths)] {
                let m = doc
                    .get_mut(field)
                    .and_then(Value::as_object_mut)
                    .ok_or_else(|| Error::Format(format!("v2.json has no {field}")))?;
                m.extend(items);
                m.sort_keys();
            }
            to_json(&doc)?
        };
        let bytes = Bytes::from(bytes);
        *slot = Some(bytes.clone());
        Ok(bytes)
    }
}

fn to_json(v: &Value) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::CustomResources(e.to_string()))
}

/// The schema a custom resource version publishes: its `openAPIV3Schema`
/// when that is structural (upstream publishes none otherwise).
fn published_schema(cr: &CustomResource) -> Option<&Value> {
    cr.schema.as_ref().and(cr.raw_schema.as_ref())
}

/// What a CRD group-version's document is built from, hashed.
fn group_version_hash(docs: &Documents, key: &str, crs: &[Arc<CustomResource>]) -> String {
    let mut h = Sha512::new();
    h.update("kedge CRD OpenAPI\0");
    h.update(env!("CARGO_PKG_VERSION"));
    h.update(b"\0");
    h.update(docs.etag(DONOR).unwrap_or_default());
    h.update(b"\0");
    h.update(docs.etag(&format!("v3/{key}")).unwrap_or_default());
    for cr in crs {
        let ri = cr.ri;
        let scope = if ri.namespaced {
            "Namespaced"
        } else {
            "Cluster"
        };
        for s in [ri.group, ri.version, ri.kind, ri.plural, scope] {
            h.update(b"\0");
            h.update(s);
        }
        for s in ri.subresources {
            h.update(b"\0/");
            h.update(s);
        }
        h.update(b"\0");
        match published_schema(cr) {
            // Writing into a hasher cannot fail.
            Some(s) => serde_json::to_writer(&mut h, s).unwrap_or_default(),
            None => h.update(b"-"),
        }
    }
    h.hex()
}

// ---------------------------------------------------------------------------
// Custom resources: the documents (apiextensions-apiserver's builder).

const V2_DEF: &str = "#/definitions/";
const V3_DEF: &str = "#/components/schemas/";
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";

/// TypeMeta's fields, as every kind has them.
const API_VERSION_DOC: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DOC: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
/// PartialObjectMetadata(List)'s `metadata`.
const OBJECT_META_DOC: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const LIST_META_DOC: &str = "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
/// What `x-kubernetes-embedded-resource` objects get.
const EMBEDDED_API_VERSION_DOC: &str = "apiVersion defines the versioned schema of this representation of an object. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const EMBEDDED_KIND_DOC: &str = "kind is a string value representing the type of this object. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// The bundle entry the operation parameters and metav1 definitions come
/// from: Deployments have every operation a custom resource has.
const DONOR: &str = "v3/apis/apps/v1";

/// Query parameters of each action: the fields of metav1's GetOptions,
/// ListOptions, CreateOptions, UpdateOptions, PatchOptions, DeleteOptions
/// (upstream's `endpoints.AddObjectParams`), and which donor operation has
/// them.
const GET_OPTIONS: (&str, &[&str]) = ("list", &["resourceVersion"]);
const LIST_OPTIONS: (&str, &[&str]) = (
    "list",
    &[
        "allowWatchBookmarks",
        "continue",
        "fieldSelector",
        "labelSelector",
        "limit",
        "resourceVersion",
        "resourceVersionMatch",
        "sendInitialEvents",
        "timeoutSeconds",
        "watch",
    ],
);
const CREATE_OPTIONS: (&str, &[&str]) = ("post", &["dryRun", "fieldManager", "fieldValidation"]);
const UPDATE_OPTIONS: (&str, &[&str]) = ("put", &["dryRun", "fieldManager", "fieldValidation"]);
const PATCH_OPTIONS: (&str, &[&str]) = (
    "patch",
    &["dryRun", "fieldManager", "fieldValidation", "force"],
);
const DELETE_OPTIONS_PARAMS: (&str, &[&str]) = (
    "delete",
    &[
        "dryRun",
        "gracePeriodSeconds",
        "ignoreStoreReadErrorWithClusterBreakingPotential",
        "orphanDependents",
        "propagationPolicy",
    ],
);

/// Parameters (v3 form) and metav1 definitions taken from the `DONOR`
/// document.
struct Donor {
    /// By (donor operation, name); "path" holds the path parameters.
    params: HashMap<(&'static str, String), Value>,
    /// The definitions CRD operations reference, and what they reference.
    schemas: Map<String, Value>,
}

static DONOR_PARTS: OnceLock<std::result::Result<Donor, String>> = OnceLock::new();

fn donor(docs: &Documents) -> Result<&'static Donor> {
    DONOR_PARTS
        .get_or_init(|| Donor::load(docs).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| Error::CustomResources(e.clone()))
}

impl Donor {
    fn load(docs: &Documents) -> Result<Self> {
        let doc: Value = serde_json::from_slice(&docs.peek(DONOR)?)
            .map_err(|e| Error::Format(format!("{DONOR}: {e}")))?;
        let paths = &doc["paths"];
        let list = &paths["/apis/apps/v1/deployments"];
        let collection = &paths["/apis/apps/v1/namespaces/{namespace}/deployments"];
        let item = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
        let mut params = HashMap::new();
        for (op, found) in [
            ("list", &list["parameters"]),
            ("post", &collection["post"]["parameters"]),
            ("put", &item["put"]["parameters"]),
            ("patch", &item["patch"]["parameters"]),
            ("delete", &item["delete"]["parameters"]),
            ("path", &item["parameters"]),
        ] {
            for p in found.as_array().into_iter().flatten() {
                if let Some(name) = p["name"].as_str() {
                    params.insert((op, name.to_string()), p.clone());
                }
            }
        }
        let wanted = [
            GET_OPTIONS,
            LIST_OPTIONS,
            CREATE_OPTIONS,
            UPDATE_OPTIONS,
            PATCH_OPTIONS,
            DELETE_OPTIONS_PARAMS,
            ("list", &["pretty"][..]),
            ("path", &["namespace"][..]),
        ];
        for (op, names) in wanted {
            for name in names {
                if !params.contains_key(&(op, name.to_string())) {
                    return Err(Error::Format(format!(
                        "{DONOR} has no parameter {name} for {op}"
                    )));
                }
            }
        }
        let all = doc["components"]["schemas"]
            .as_object()
            .ok_or_else(|| Error::Format(format!("{DONOR} has no schemas")))?;
        let roots = [OBJECT_META, LIST_META, STATUS, PATCH, DELETE_OPTIONS, SCALE];
        let schemas = schema_closure(all, roots.iter().map(|r| r.to_string()));
        if let Some(missing) = roots.iter().find(|r| !schemas.contains_key(**r)) {
            return Err(Error::Format(format!("{DONOR} has no {missing}")));
        }
        Ok(Donor { params, schemas })
    }

    fn param(&self, op: &'static str, name: &str) -> Value {
        self.params
            .get(&(op, name.to_string()))
            .cloned()
            // Load checked that every parameter used is there.
            .unwrap_or_else(|| json!({"in": "query", "name": name, "schema": {"type": "string"}}))
    }
}

/// The definitions named in `roots` and all they reference, from `all`.
fn schema_closure(
    all: &Map<String, Value>,
    roots: impl IntoIterator<Item = String>,
) -> Map<String, Value> {
    let mut out = Map::new();
    let mut todo: Vec<String> = roots.into_iter().collect();
    while let Some(name) = todo.pop() {
        if out.contains_key(&name) {
            continue;
        }
        let Some(s) = all.get(&name) else { continue };
        let mut refs = Vec::new();
        collect_refs(s, &mut refs);
        todo.extend(
            refs.iter()
                .filter_map(|r| r.strip_prefix(V3_DEF).map(str::to_string)),
        );
        out.insert(name, s.clone());
    }
    out
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

/// A definition's name: `com.example.v1.Widget` for example.com/v1 Widget.
fn model_name(group: &str, version: &str, kind: &str) -> String {
    let mut parts: Vec<&str> = group.split('.').collect();
    parts.reverse();
    format!("{}.{version}.{kind}", parts.join("."))
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

fn ref_to(name: &str, v2: bool) -> String {
    format!("{}{name}", if v2 { V2_DEF } else { V3_DEF })
}

fn set_property(s: &mut Map<String, Value>, name: &str, value: Value) {
    let props = s
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if !props.is_object() {
        *props = Value::Object(Map::new());
    }
    if let Some(p) = props.as_object_mut() {
        p.insert(name.to_string(), value);
    }
}

/// A custom resource version's definition (upstream's `buildKubeNative`).
fn crd_model(cr: &CustomResource, v2: bool) -> Value {
    let ri = cr.ri;
    let mut s = match published_schema(cr) {
        Some(raw)
            if !(v2 && raw.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true))) =>
        {
            let mut s = structural(raw);
            if v2 {
                to_openapi_v2(&mut s);
            }
            let m = ensure_object(&mut s);
            set_property(
                m,
                "metadata",
                json!({"$ref": ref_to(OBJECT_META, v2), "description": OBJECT_META_DOC}),
            );
            set_property(
                m,
                "apiVersion",
                json!({"description": API_VERSION_DOC, "type": "string"}),
            );
            set_property(
                m,
                "kind",
                json!({"description": KIND_DOC, "type": "string"}),
            );
            add_embedded_properties(&mut s, v2);
            s
        }
        // Without a schema (or, in v2, one that keeps unknown fields) kubectl
        // must not validate fields: a bare object.
        _ => json!({"type": "object"}),
    };
    ensure_object(&mut s).insert(
        "x-kubernetes-group-version-kind".into(),
        json!([gvk(ri.group, ri.version, ri.kind)]),
    );
    s.sort_all_objects();
    s
}

fn ensure_object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("made an object above"),
    }
}

/// The List definition of a custom resource version.
fn crd_list_model(cr: &CustomResource, v2: bool) -> Value {
    let ri = cr.ri;
    let list_kind = ri.list_kind();
    let mut s = json!({
        "description": format!("{list_kind} is a list of {}", ri.kind),
        "properties": {
            "apiVersion": {"description": API_VERSION_DOC, "type": "string"},
            "items": {
                "description": format!("List of {}. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md", ri.plural),
                "items": {"$ref": ref_to(&model_name(ri.group, ri.version, ri.kind), v2)},
                "type": "array",
            },
            "kind": {"description": KIND_DOC, "type": "string"},
            "metadata": {"$ref": ref_to(LIST_META, v2), "description": LIST_META_DOC},
        },
        "required": ["items"],
        "type": "object",
        "x-kubernetes-group-version-kind": [gvk(ri.group, ri.version, &list_kind)],
    });
    s.sort_all_objects();
    s
}

/// A structural schema as upstream publishes it (`Structural.ToKubeOpenAPI`
/// after `Unfold`): the keywords a structural schema keeps, zero values
/// left out, and `x-kubernetes-int-or-string` spelled out as `anyOf`.
fn structural(node: &Value) -> Value {
    let Some(o) = node.as_object() else {
        return node.clone();
    };
    let mut out = Map::new();
    for (k, v) in o {
        let keep = match k.as_str() {
            "properties" => {
                if let Some(p) = v.as_object().filter(|p| !p.is_empty()) {
                    let p = p.iter().map(|(n, s)| (n.clone(), structural(s))).collect();
                    out.insert(k.clone(), Value::Object(p));
                }
                false
            }
            "items" | "additionalProperties" | "not" => {
                let s = match v {
                    Value::Array(a) => Value::Array(a.iter().map(structural).collect()),
                    other => structural(other),
                };
                out.insert(k.clone(), s);
                false
            }
            "allOf" | "anyOf" | "oneOf" => {
                if let Some(a) = v.as_array().filter(|a| !a.is_empty()) {
                    out.insert(k.clone(), Value::Array(a.iter().map(structural).collect()));
                }
                false
            }
            "description"
            | "type"
            | "format"
            | "title"
            | "pattern"
            | "x-kubernetes-list-type"
            | "x-kubernetes-map-type" => v.as_str().is_some_and(|s| !s.is_empty()),
            "nullable"
            | "exclusiveMaximum"
            | "exclusiveMinimum"
            | "uniqueItems"
            | "x-kubernetes-preserve-unknown-fields"
            | "x-kubernetes-embedded-resource"
            | "x-kubernetes-int-or-string" => v == &Value::Bool(true),
            "maximum" | "minimum" | "multipleOf" | "maxLength" | "minLength" | "maxItems"
            | "minItems" | "maxProperties" | "minProperties" => v.is_number(),
            "enum" | "required" | "x-kubernetes-list-map-keys" | "x-kubernetes-validations" => {
                v.as_array().is_some_and(|a| !a.is_empty())
            }
            "default" => !v.is_null(),
            // example, externalDocs, and what structural schemas forbid.
            _ => false,
        };
        if keep {
            out.insert(k.clone(), v.clone());
        }
    }
    if out.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        let pattern = json!([{"type": "integer"}, {"type": "string"}]);
        let spelled = out.get("anyOf") == Some(&pattern)
            || out.get("allOf").and_then(|a| a.pointer("/0/anyOf")) == Some(&pattern);
        if !spelled {
            if out.contains_key("anyOf") {
                let mut all = vec![json!({ "anyOf": pattern })];
                if let Some(Value::Array(rest)) = out.remove("allOf") {
                    all.extend(rest);
                }
                out.insert("allOf".into(), Value::Array(all));
            } else {
                out.insert("anyOf".into(), pattern);
            }
        }
    }
    Value::Object(out)
}

/// What OpenAPI v2 (and kubectl's v2 validation) can take of a structural
/// schema (upstream's `ToStructuralOpenAPIV2`).
fn to_openapi_v2(node: &mut Value) {
    let Some(s) = node.as_object_mut() else {
        return;
    };
    for k in ["allOf", "oneOf", "anyOf", "not"] {
        s.remove(k);
    }
    let truthy = |s: &Map<String, Value>, k: &str| s.get(k) == Some(&Value::Bool(true));
    if truthy(s, "nullable") {
        for k in ["type", "nullable", "items", "properties"] {
            s.remove(k);
        }
    }
    if truthy(s, "x-kubernetes-preserve-unknown-fields") {
        s.remove("items");
        s.remove("properties");
    }
    if !s.contains_key("items") && s.get("type").and_then(Value::as_str) == Some("array") {
        s.remove("type");
    }
    let nullable: Vec<String> = s
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| {
            p.iter()
                .filter(|(_, f)| f.get("nullable") == Some(&Value::Bool(true)))
                .map(|(n, _)| n.clone())
                .collect()
        })
        .unwrap_or_default();
    if let Some(Value::Array(req)) = s.get_mut("required") {
        req.retain(|r| !r.as_str().is_some_and(|r| nullable.iter().any(|n| n == r)));
    }
    if s.get("additionalProperties")
        .and_then(|a| a.get("nullable"))
        == Some(&Value::Bool(true))
    {
        s.remove("required");
    }
    if s.get("required")
        .and_then(Value::as_array)
        .is_some_and(|r| r.is_empty())
    {
        s.remove("required");
    }
    if let Some(Value::Object(p)) = s.get_mut("properties") {
        p.values_mut().for_each(to_openapi_v2);
    }
    match s.get_mut("items") {
        Some(Value::Array(a)) => a.iter_mut().for_each(to_openapi_v2),
        Some(items) => to_openapi_v2(items),
        None => {}
    }
    if let Some(a) = s.get_mut("additionalProperties") {
        to_openapi_v2(a);
    }
}

/// Objects marked `x-kubernetes-embedded-resource` get apiVersion, kind and
/// metadata (upstream's `addEmbeddedProperties`).
fn add_embedded_properties(node: &mut Value, v2: bool) {
    let Some(s) = node.as_object_mut() else {
        return;
    };
    if let Some(Value::Object(p)) = s.get_mut("properties") {
        p.values_mut().for_each(|v| add_embedded_properties(v, v2));
    }
    if let Some(items) = s.get_mut("items") {
        add_embedded_properties(items, v2);
    }
    if let Some(a) = s.get_mut("additionalProperties") {
        add_embedded_properties(a, v2);
    }
    let truthy = |k: &str| s.get(k) == Some(&Value::Bool(true));
    if v2 && truthy("x-kubernetes-preserve-unknown-fields") {
        // kubectl's v2 validation would then reject the unknown fields.
        return;
    }
    if !truthy("x-kubernetes-embedded-resource") {
        return;
    }
    set_property(
        s,
        "apiVersion",
        json!({"description": EMBEDDED_API_VERSION_DOC, "type": "string"}),
    );
    set_property(
        s,
        "kind",
        json!({"description": EMBEDDED_KIND_DOC, "type": "string"}),
    );
    set_property(
        s,
        "metadata",
        json!({"$ref": ref_to(OBJECT_META, v2), "description": OBJECT_META_DOC}),
    );
    let req = s.entry("required").or_insert_with(|| json!([]));
    if let Value::Array(req) = req {
        for f in ["kind", "apiVersion"] {
            if !req.iter().any(|r| r == f) {
                req.push(json!(f));
            }
        }
    }
}

/// One operation on a custom resource's path.
struct CrdRoute {
    path: String,
    /// Lower-case HTTP method, the key of the path item.
    method: &'static str,
    /// `x-kubernetes-action`.
    action: &'static str,
    operation_id: String,
    description: String,
    /// The definition of the 200 response.
    response: String,
    /// The request body: its definition and whether it is required.
    body: Option<(String, bool)>,
    /// Query and path parameters, v3 form.
    params: Vec<Value>,
}

/// upstream's `ToValidOperationID`: letters, `_` and (not first) digits,
/// capitalised after anything else.
fn operation_id_part(s: &str, capitalize_first: bool) -> String {
    let mut out = String::new();
    let mut capitalize = capitalize_first;
    for (i, c) in s.char_indices() {
        if c.is_alphabetic() || c == '_' || (i != 0 && c.is_ascii_digit()) {
            if capitalize {
                out.extend(c.to_uppercase());
                capitalize = false;
            } else {
                out.push(c);
            }
        } else {
            capitalize = true;
        }
    }
    out
}

/// upstream's `GetArticleForNoun(noun, " ")`.
fn article(noun: &str) -> &'static str {
    if noun.ends_with('s') && !noun.ends_with("ss") {
        " "
    } else if noun
        .chars()
        .next()
        .is_some_and(|c| "aeiou".contains(c.to_ascii_lowercase()))
    {
        " an "
    } else {
        " a "
    }
}

/// The operations of one custom resource version, as upstream's CRD
/// builder registers them.
fn crd_routes(cr: &CustomResource, donor: &Donor) -> Vec<CrdRoute> {
    let ri = cr.ri;
    let kind = ri.kind;
    let model = model_name(ri.group, ri.version, kind);
    let list_model = model_name(ri.group, ri.version, &ri.list_kind());
    let id_prefix = format!(
        "{}{}",
        operation_id_part(ri.group.strip_suffix(".k8s.io").unwrap_or(ri.group), true),
        operation_id_part(ri.version, true)
    );
    let scope = if ri.namespaced { "Namespaced" } else { "" };
    let name_param = json!({
        "description": format!("name of the {kind}"),
        "in": "path",
        "name": "name",
        "required": true,
        "schema": {"type": "string", "uniqueItems": true},
    });
    let route = |path: &str,
                 sub: &str,
                 (method, action, verb): (&'static str, &'static str, &str),
                 response: &str,
                 body: Option<(&str, bool)>| {
        let mut params = vec![donor.param("list", "pretty")];
        if path.contains("{namespace}") {
            params.push(donor.param("path", "namespace"));
        }
        if path.contains("{name}") {
            params.push(name_param.clone());
        }
        let (op, names) = match action {
            "get" => GET_OPTIONS,
            "list" | "deletecollection" => LIST_OPTIONS,
            "post" => CREATE_OPTIONS,
            "put" => UPDATE_OPTIONS,
            "patch" => PATCH_OPTIONS,
            _ => DELETE_OPTIONS_PARAMS,
        };
        params.extend(names.iter().map(|n| donor.param(op, n)));
        let sub_title: String = sub
            .chars()
            .take(1)
            .flat_map(char::to_uppercase)
            .chain(sub.chars().skip(1))
            .collect();
        let sub_of = if sub.is_empty() {
            String::new()
        } else {
            format!(" {sub} of")
        };
        let (operation_id, description) = match verb {
            "deletecollection" => (
                format!("delete{id_prefix}Collection{scope}{kind}"),
                format!(
                    "delete collection of{}{kind}",
                    if sub.is_empty() {
                        " ".to_string()
                    } else {
                        format!("{sub_of} a ")
                    }
                ),
            ),
            _ => {
                let desc = match verb {
                    "list" => format!("list{sub_of} objects of kind {kind}"),
                    "patch" => format!("partially update{sub_of} the specified {kind}"),
                    "read" | "replace" => format!("{verb}{sub_of} the specified {kind}"),
                    _ => format!("{verb}{sub_of}{}{kind}", article(kind)),
                };
                (format!("{verb}{id_prefix}{scope}{kind}{sub_title}"), desc)
            }
        };
        CrdRoute {
            path: format!("{path}{}", if sub.is_empty() { "" } else { "/" }) + sub,
            method,
            action,
            operation_id,
            description,
            response: response.to_string(),
            body: body.map(|(d, required)| (d.to_string(), required)),
            params,
        }
    };
    const LIST: (&str, &str, &str) = ("get", "list", "list");
    const CREATE: (&str, &str, &str) = ("post", "post", "create");
    const DELETE_COLLECTION: (&str, &str, &str) =
        ("delete", "deletecollection", "deletecollection");
    const READ: (&str, &str, &str) = ("get", "get", "read");
    const REPLACE: (&str, &str, &str) = ("put", "put", "replace");
    const DELETE: (&str, &str, &str) = ("delete", "delete", "delete");
    const PATCH_OP: (&str, &str, &str) = ("patch", "patch", "patch");

    let mut routes = Vec::new();
    let mut root = format!("/apis/{}/{}/{}", ri.group, ri.version, ri.plural);
    if ri.namespaced {
        let mut all = route(&root, "", LIST, &list_model, None);
        all.operation_id = format!("list{id_prefix}{kind}ForAllNamespaces");
        routes.push(all);
        root = format!(
            "/apis/{}/{}/namespaces/{{namespace}}/{}",
            ri.group, ri.version, ri.plural
        );
    }
    routes.push(route(&root, "", LIST, &list_model, None));
    routes.push(route(&root, "", CREATE, &model, Some((&model, true))));
    routes.push(route(&root, "", DELETE_COLLECTION, STATUS, None));
    let item = format!("{root}/{{name}}");
    routes.push(route(&item, "", READ, &model, None));
    routes.push(route(&item, "", REPLACE, &model, Some((&model, true))));
    routes.push(route(
        &item,
        "",
        DELETE,
        STATUS,
        Some((DELETE_OPTIONS, false)),
    ));
    routes.push(route(&item, "", PATCH_OP, &model, Some((PATCH, true))));
    for (sub, object) in [("status", model.as_str()), ("scale", SCALE)] {
        if ri.has_subresource(sub) {
            routes.push(route(&item, sub, READ, object, None));
            routes.push(route(&item, sub, REPLACE, object, Some((object, true))));
            routes.push(route(&item, sub, PATCH_OP, object, Some((PATCH, true))));
        }
    }
    routes
}

/// A v3 parameter in v2 form.
fn v2_parameter(p: &Value) -> Value {
    let mut out = Map::new();
    for k in ["description", "in", "name", "required"] {
        if let Some(v) = p.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    if let Some(schema) = p.get("schema").and_then(Value::as_object) {
        out.extend(schema.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    Value::Object(out)
}

fn sort_parameters(ps: &mut [Value]) {
    let key = |p: &Value| {
        (
            p["name"].as_str().unwrap_or("").to_string(),
            p["in"].as_str().unwrap_or("").to_string(),
        )
    };
    ps.sort_by_key(key);
}

/// The path items of a custom resource version's routes (v2 or v3 form).
/// As kube-openapi does, parameters that every operation of a path has are
/// the path's.
fn path_items(routes: &[CrdRoute], cr: &CustomResource, v2: bool) -> Vec<(String, Value)> {
    const PRODUCES: [&str; 2] = ["application/json", "application/yaml"];
    const CONSUMES: [&str; 2] = ["application/json", "application/yaml"];
    const PATCH_CONSUMES: [&str; 3] = [
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/apply-patch+yaml",
    ];
    let ri = cr.ri;
    let tag = format!(
        "{}_{}",
        operation_id_part(ri.group.strip_suffix(".k8s.io").unwrap_or(ri.group), false),
        operation_id_part(ri.version, false)
    );
    let mut by_path: BTreeMap<&str, Vec<&CrdRoute>> = BTreeMap::new();
    for r in routes {
        by_path.entry(&r.path).or_default().push(r);
    }
    let mut out = Vec::new();
    for (path, rs) in by_path {
        let form = |p: &Value| if v2 { v2_parameter(p) } else { p.clone() };
        let mut common: Vec<Value> = rs[0]
            .params
            .iter()
            .filter(|p| rs.iter().all(|r| r.params.contains(p)))
            .map(form)
            .collect();
        sort_parameters(&mut common);
        let mut item = Map::new();
        for r in &rs {
            let consumes: &[&str] = if r.method == "patch" {
                &PATCH_CONSUMES
            } else {
                &CONSUMES
            };
            let mut params: Vec<Value> = r
                .params
                .iter()
                .filter(|p| !rs.iter().all(|o| o.params.contains(p)))
                .map(form)
                .collect();
            let mut codes = vec![("200", "OK")];
            codes.extend(match r.action {
                "post" => &[("201", "Created"), ("202", "Accepted")][..],
                "delete" => &[("202", "Accepted")][..],
                "put" => &[("201", "Created")][..],
                _ => &[][..],
            });
            let response_ref = json!({"$ref": ref_to(&r.response, v2)});
            let mut responses = Map::new();
            for (code, description) in codes {
                let resp = if v2 {
                    json!({"description": description, "schema": response_ref})
                } else {
                    let content: Map<String, Value> = PRODUCES
                        .iter()
                        .map(|m| (m.to_string(), json!({ "schema": response_ref })))
                        .collect();
                    json!({"content": content, "description": description})
                };
                responses.insert(code.into(), resp);
            }
            responses.insert("401".into(), json!({"description": "Unauthorized"}));
            let mut op = Map::new();
            op.insert("description".into(), json!(r.description));
            op.insert("operationId".into(), json!(r.operation_id));
            if let Some((def, required)) = &r.body {
                let schema = json!({"$ref": ref_to(def, v2)});
                if v2 {
                    let mut body = json!({"in": "body", "name": "body", "schema": schema});
                    if *required {
                        body["required"] = json!(true);
                    }
                    params.push(body);
                } else {
                    let content: Map<String, Value> = consumes
                        .iter()
                        .map(|m| (m.to_string(), json!({ "schema": schema })))
                        .collect();
                    let mut body = json!({ "content": content });
                    if *required {
                        body["required"] = json!(true);
                    }
                    op.insert("requestBody".into(), body);
                }
            }
            sort_parameters(&mut params);
            if !params.is_empty() {
                op.insert("parameters".into(), Value::Array(params));
            }
            op.insert("responses".into(), Value::Object(responses));
            op.insert("tags".into(), json!([tag]));
            op.insert("x-kubernetes-action".into(), json!(r.action));
            op.insert(
                "x-kubernetes-group-version-kind".into(),
                gvk(ri.group, ri.version, ri.kind),
            );
            if v2 {
                op.insert("consumes".into(), json!(consumes));
                op.insert("produces".into(), json!(PRODUCES));
                op.insert("schemes".into(), json!(["https"]));
            }
            item.insert(r.method.into(), Value::Object(op));
        }
        if !common.is_empty() {
            item.insert("parameters".into(), Value::Array(common));
        }
        let mut item = Value::Object(item);
        item.sort_all_objects();
        out.push((path.to_string(), item));
    }
    out
}

/// The v3 document of one CRD group-version, added to `base` (the built-in
/// document of that group-version, if there is one).
fn v3_document(base: Option<Value>, crs: &[Arc<CustomResource>], donor: &Donor) -> Value {
    let mut doc = base.unwrap_or_else(|| {
        json!({
            "components": {"schemas": {}},
            "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
            "openapi": "3.0.0",
            "paths": {},
        })
    });
    let mut schemas = Map::new();
    let mut paths = Map::new();
    for cr in crs {
        let ri = cr.ri;
        schemas.insert(
            model_name(ri.group, ri.version, ri.kind),
            crd_model(cr, false),
        );
        schemas.insert(
            model_name(ri.group, ri.version, &ri.list_kind()),
            crd_list_model(cr, false),
        );
        paths.extend(path_items(&crd_routes(cr, donor), cr, false));
    }
    let mut refs = Vec::new();
    collect_refs(&Value::Object(paths.clone()), &mut refs);
    collect_refs(&Value::Object(schemas.clone()), &mut refs);
    let meta = schema_closure(
        &donor.schemas,
        refs.iter()
            .filter_map(|r| r.strip_prefix(V3_DEF).map(str::to_string)),
    );
    let d = ensure_object(&mut doc);
    let components = ensure_object(d.entry("components").or_insert_with(|| json!({})));
    let all = ensure_object(components.entry("schemas").or_insert_with(|| json!({})));
    for (name, s) in meta {
        all.entry(name).or_insert(s);
    }
    all.extend(schemas);
    all.sort_keys();
    let all_paths = ensure_object(d.entry("paths").or_insert_with(|| json!({})));
    all_paths.extend(paths);
    all_paths.sort_keys();
    doc
}

// ---------------------------------------------------------------------------
// The gnostic `openapi.v2.Document` protobuf (gnostic-models'
// openapiv2/OpenAPIv2.proto), encoded as scripts/gen-openapi.py encodes the
// built-in one, and spliced into it.

mod pb {
    use serde_json::{Map, Value};

    /// The operations of a path item, in the order of their field numbers
    /// (2 on).
    const OPERATIONS: [&str; 7] = ["get", "put", "post", "delete", "options", "head", "patch"];

    pub(super) fn varint(out: &mut Vec<u8>, mut n: u64) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn key(out: &mut Vec<u8>, field: u64, wire: u64) {
        varint(out, (field << 3) | wire);
    }

    pub(super) fn message(out: &mut Vec<u8>, field: u64, data: &[u8]) {
        key(out, field, 2);
        varint(out, data.len() as u64);
        out.extend_from_slice(data);
    }

    pub(super) fn string(out: &mut Vec<u8>, field: u64, s: &str) {
        if !s.is_empty() {
            message(out, field, s.as_bytes());
        }
    }

    fn str_of(out: &mut Vec<u8>, field: u64, v: Option<&Value>) {
        if let Some(s) = v.and_then(Value::as_str) {
            string(out, field, s);
        }
    }

    fn strings_of(out: &mut Vec<u8>, field: u64, v: Option<&Value>) {
        for s in v.and_then(Value::as_array).into_iter().flatten() {
            str_of(out, field, Some(s));
        }
    }

    fn bool_of(out: &mut Vec<u8>, field: u64, v: Option<&Value>) {
        if v.and_then(Value::as_bool) == Some(true) {
            key(out, field, 0);
            out.push(1);
        }
    }

    fn int_of(out: &mut Vec<u8>, field: u64, v: Option<&Value>) {
        let n = v.and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)));
        if let Some(n) = n.filter(|n| *n != 0) {
            key(out, field, 0);
            varint(out, n as u64);
        }
    }

    fn double_of(out: &mut Vec<u8>, field: u64, v: Option<&Value>) {
        if let Some(x) = v.and_then(Value::as_f64).filter(|x| *x != 0.0) {
            key(out, field, 1);
            out.extend_from_slice(&x.to_le_bytes());
        }
    }

    /// Python's `json.dumps` spacing, which the built-in document's values
    /// have: `{"a": 1, "b": [1, 2]}`.
    struct PythonSpacing;

    impl serde_json::ser::Formatter for PythonSpacing {
        fn begin_array_value<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> std::io::Result<()> {
            if first {
                Ok(())
            } else {
                w.write_all(b", ")
            }
        }

        fn begin_object_key<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> std::io::Result<()> {
            if first {
                Ok(())
            } else {
                w.write_all(b", ")
            }
        }

        fn begin_object_value<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
        ) -> std::io::Result<()> {
            w.write_all(b": ")
        }
    }

    /// `Any`: gnostic keeps any value as YAML text (JSON is YAML).
    fn any(v: &Value) -> Vec<u8> {
        let mut text = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(&mut text, PythonSpacing);
        // Serialising a Value into memory cannot fail.
        let _ = serde::Serialize::serialize(v, &mut ser);
        text.push(b'\n');
        let mut out = Vec::new();
        message(&mut out, 2, &text);
        out
    }

    /// `x-` keys as `NamedAny` entries.
    fn extensions(out: &mut Vec<u8>, field: u64, obj: &Map<String, Value>) {
        for (k, v) in obj.iter().filter(|(k, _)| k.starts_with("x-")) {
            let mut named = Vec::new();
            string(&mut named, 1, k);
            message(&mut named, 2, &any(v));
            message(out, field, &named);
        }
    }

    fn extensions_of(out: &mut Vec<u8>, field: u64, v: &Value) {
        if let Some(m) = v.as_object() {
            extensions(out, field, m);
        }
    }

    pub(super) fn schema(s: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        let g = |k: &str| s.get(k);
        str_of(&mut out, 1, g("$ref"));
        str_of(&mut out, 2, g("format"));
        str_of(&mut out, 3, g("title"));
        str_of(&mut out, 4, g("description"));
        if let Some(d) = g("default") {
            message(&mut out, 5, &any(d));
        }
        double_of(&mut out, 6, g("multipleOf"));
        double_of(&mut out, 7, g("maximum"));
        bool_of(&mut out, 8, g("exclusiveMaximum"));
        double_of(&mut out, 9, g("minimum"));
        bool_of(&mut out, 10, g("exclusiveMinimum"));
        int_of(&mut out, 11, g("maxLength"));
        int_of(&mut out, 12, g("minLength"));
        str_of(&mut out, 13, g("pattern"));
        int_of(&mut out, 14, g("maxItems"));
        int_of(&mut out, 15, g("minItems"));
        bool_of(&mut out, 16, g("uniqueItems"));
        int_of(&mut out, 17, g("maxProperties"));
        int_of(&mut out, 18, g("minProperties"));
        strings_of(&mut out, 19, g("required"));
        for e in g("enum").and_then(Value::as_array).into_iter().flatten() {
            message(&mut out, 20, &any(e));
        }
        match g("additionalProperties") {
            Some(Value::Bool(b)) => {
                let mut item = Vec::new();
                key(&mut item, 2, 0);
                item.push(u8::from(*b));
                message(&mut out, 21, &item);
            }
            Some(ap @ Value::Object(_)) => {
                let mut item = Vec::new();
                message(&mut item, 1, &schema(ap));
                message(&mut out, 21, &item);
            }
            _ => {}
        }
        match g("type") {
            Some(Value::String(t)) => {
                let mut types = Vec::new();
                string(&mut types, 1, t);
                message(&mut out, 22, &types);
            }
            Some(Value::Array(ts)) => {
                let mut types = Vec::new();
                strings_of(&mut types, 1, Some(&Value::Array(ts.clone())));
                message(&mut out, 22, &types);
            }
            _ => {}
        }
        match g("items") {
            Some(Value::Array(items)) => {
                let mut item = Vec::new();
                for i in items {
                    message(&mut item, 1, &schema(i));
                }
                message(&mut out, 23, &item);
            }
            Some(i) => {
                let mut item = Vec::new();
                message(&mut item, 1, &schema(i));
                message(&mut out, 23, &item);
            }
            None => {}
        }
        for a in g("allOf").and_then(Value::as_array).into_iter().flatten() {
            message(&mut out, 24, &schema(a));
        }
        if let Some(props) = g("properties").and_then(Value::as_object) {
            let mut all = Vec::new();
            for (n, p) in props {
                let mut named = Vec::new();
                string(&mut named, 1, n);
                message(&mut named, 2, &schema(p));
                message(&mut all, 1, &named);
            }
            message(&mut out, 25, &all);
        }
        str_of(&mut out, 26, g("discriminator"));
        bool_of(&mut out, 27, g("readOnly"));
        if let Some(e) = g("example") {
            message(&mut out, 30, &any(e));
        }
        extensions_of(&mut out, 31, s);
        out
    }

    /// Field numbers of a non-body parameter kind: (its field in
    /// NonBodyParameter, required, in, description, name, allowEmptyValue,
    /// type, format, items, collectionFormat, default, uniqueItems, enum,
    /// vendor_extension).
    fn non_body_fields(location: &str) -> Option<[u64; 14]> {
        Some(match location {
            "header" => [1, 1, 2, 3, 4, 0, 5, 6, 7, 8, 9, 19, 20, 22],
            "formData" => [2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 21, 23],
            "query" => [3, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 21, 23],
            "path" => [4, 1, 2, 3, 4, 0, 5, 6, 7, 8, 9, 19, 20, 22],
            _ => return None,
        })
    }

    fn primitives_items(it: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        str_of(&mut out, 1, it.get("type"));
        str_of(&mut out, 2, it.get("format"));
        if let Some(i) = it.get("items") {
            message(&mut out, 3, &primitives_items(i));
        }
        str_of(&mut out, 4, it.get("collectionFormat"));
        if let Some(d) = it.get("default") {
            message(&mut out, 5, &any(d));
        }
        bool_of(&mut out, 15, it.get("uniqueItems"));
        for e in it
            .get("enum")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            message(&mut out, 16, &any(e));
        }
        extensions_of(&mut out, 18, it);
        out
    }

    fn parameter(p: &Value) -> Vec<u8> {
        let g = |k: &str| p.get(k);
        let location = g("in").and_then(Value::as_str).unwrap_or("");
        let mut out = Vec::new();
        if location == "body" {
            let mut body = Vec::new();
            str_of(&mut body, 1, g("description"));
            str_of(&mut body, 2, g("name"));
            str_of(&mut body, 3, g("in"));
            bool_of(&mut body, 4, g("required"));
            if let Some(s) = g("schema") {
                message(&mut body, 5, &schema(s));
            }
            extensions_of(&mut body, 6, p);
            message(&mut out, 1, &body);
            return out;
        }
        let Some(f) = non_body_fields(location) else {
            return out;
        };
        let mut sub = Vec::new();
        bool_of(&mut sub, f[1], g("required"));
        str_of(&mut sub, f[2], g("in"));
        str_of(&mut sub, f[3], g("description"));
        str_of(&mut sub, f[4], g("name"));
        if f[5] != 0 {
            bool_of(&mut sub, f[5], g("allowEmptyValue"));
        }
        str_of(&mut sub, f[6], g("type"));
        str_of(&mut sub, f[7], g("format"));
        if let Some(i) = g("items") {
            message(&mut sub, f[8], &primitives_items(i));
        }
        str_of(&mut sub, f[9], g("collectionFormat"));
        if let Some(d) = g("default") {
            message(&mut sub, f[10], &any(d));
        }
        bool_of(&mut sub, f[11], g("uniqueItems"));
        for e in g("enum").and_then(Value::as_array).into_iter().flatten() {
            message(&mut sub, f[12], &any(e));
        }
        extensions_of(&mut sub, f[13], p);
        let mut non_body = Vec::new();
        message(&mut non_body, f[0], &sub);
        message(&mut out, 2, &non_body);
        out
    }

    fn parameters_item(p: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        match p.as_object() {
            Some(m) if m.len() == 1 && m.contains_key("$ref") => {
                let mut reference = Vec::new();
                str_of(&mut reference, 1, m.get("$ref"));
                message(&mut out, 2, &reference);
            }
            _ => message(&mut out, 1, &parameter(p)),
        }
        out
    }

    fn operation(op: &Value) -> Vec<u8> {
        let g = |k: &str| op.get(k);
        let mut out = Vec::new();
        strings_of(&mut out, 1, g("tags"));
        str_of(&mut out, 2, g("summary"));
        str_of(&mut out, 3, g("description"));
        str_of(&mut out, 5, g("operationId"));
        strings_of(&mut out, 6, g("produces"));
        strings_of(&mut out, 7, g("consumes"));
        for p in g("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            message(&mut out, 8, &parameters_item(p));
        }
        if let Some(responses) = g("responses").and_then(Value::as_object) {
            let mut codes = Vec::new();
            for (code, r) in responses.iter().filter(|(k, _)| !k.starts_with("x-")) {
                let mut resp = Vec::new();
                str_of(&mut resp, 1, r.get("description"));
                if let Some(s) = r.get("schema") {
                    let mut item = Vec::new();
                    message(&mut item, 1, &schema(s));
                    message(&mut resp, 2, &item);
                }
                extensions_of(&mut resp, 5, r);
                let mut value = Vec::new();
                message(&mut value, 1, &resp);
                let mut named = Vec::new();
                string(&mut named, 1, code);
                message(&mut named, 2, &value);
                message(&mut codes, 1, &named);
            }
            extensions(&mut codes, 2, responses);
            message(&mut out, 9, &codes);
        }
        strings_of(&mut out, 10, g("schemes"));
        bool_of(&mut out, 11, g("deprecated"));
        extensions_of(&mut out, 13, op);
        out
    }

    pub(super) fn path_item(item: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        str_of(&mut out, 1, item.get("$ref"));
        for (i, name) in OPERATIONS.iter().enumerate() {
            if let Some(op) = item.get(*name) {
                message(&mut out, 2 + i as u64, &operation(op));
            }
        }
        for p in item
            .get("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            message(&mut out, 9, &parameters_item(p));
        }
        extensions_of(&mut out, 10, item);
        out
    }

    /// One field of a message: its number, wire type, all its bytes, and
    /// (length-delimited fields) its payload.
    pub(super) struct Field<'a> {
        pub number: u64,
        pub wire: u64,
        pub raw: &'a [u8],
        pub payload: &'a [u8],
    }

    fn read_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *b.get(*pos)?;
            *pos += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    /// The fields of a message, in order; None if it is malformed.
    pub(super) fn fields(b: &[u8]) -> Option<Vec<Field<'_>>> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < b.len() {
            let start = pos;
            let k = read_varint(b, &mut pos)?;
            let (number, wire) = (k >> 3, k & 7);
            let payload_start;
            match wire {
                0 => {
                    read_varint(b, &mut pos)?;
                    payload_start = pos;
                }
                1 => {
                    pos += 8;
                    payload_start = pos;
                }
                2 => {
                    let len = usize::try_from(read_varint(b, &mut pos)?).ok()?;
                    payload_start = pos;
                    pos = pos.checked_add(len)?;
                }
                5 => {
                    pos += 4;
                    payload_start = pos;
                }
                _ => return None,
            }
            if pos > b.len() {
                return None;
            }
            out.push(Field {
                number,
                wire,
                raw: &b[start..pos],
                payload: &b[payload_start..pos],
            });
        }
        Some(out)
    }

    /// The name (field 1) of a named entry.
    fn entry_name(named: &[u8]) -> Option<&str> {
        let f = fields(named)?;
        let name = f.iter().find(|f| f.number == 1 && f.wire == 2)?;
        std::str::from_utf8(name.payload).ok()
    }

    /// A map-like message (`Paths`, `Definitions`) whose entries are field
    /// `entry` named entries, with `extra` added (replacing entries of the
    /// same name) and the entries sorted by name, as the JSON form is.
    fn merge_named(msg: &[u8], entry: u64, extra: &[(String, Vec<u8>)]) -> Option<Vec<u8>> {
        let mut out =
            Vec::with_capacity(msg.len() + extra.iter().map(|e| e.1.len() + 8).sum::<usize>());
        let mut entries: Vec<(&str, Vec<u8>)> = Vec::new();
        for f in fields(msg)? {
            if f.number == entry && f.wire == 2 {
                let name = entry_name(f.payload)?;
                if !extra.iter().any(|(n, _)| n == name) {
                    entries.push((name, f.raw.to_vec()));
                }
            } else {
                out.extend_from_slice(f.raw);
            }
        }
        for (name, named) in extra {
            let mut raw = Vec::new();
            message(&mut raw, entry, named);
            entries.push((name, raw));
        }
        entries.sort_by(|a, b| a.0.cmp(b.0));
        for (_, raw) in entries {
            out.extend(raw);
        }
        Some(out)
    }

    /// `base` (a Document) with `paths` (NamedPathItem) and `definitions`
    /// (NamedSchema) added.
    pub(super) fn splice_document(
        base: &[u8],
        paths: &[(String, Vec<u8>)],
        definitions: &[(String, Vec<u8>)],
    ) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(base.len() + 4096);
        let (mut had_paths, mut had_definitions) = (false, false);
        for f in fields(base)? {
            match (f.number, f.wire) {
                (8, 2) => {
                    message(&mut out, 8, &merge_named(f.payload, 2, paths)?);
                    had_paths = true;
                }
                (9, 2) => {
                    message(&mut out, 9, &merge_named(f.payload, 1, definitions)?);
                    had_definitions = true;
                }
                _ => out.extend_from_slice(f.raw),
            }
        }
        if !had_paths {
            message(&mut out, 8, &merge_named(&[], 2, paths)?);
        }
        if !had_definitions {
            message(&mut out, 9, &merge_named(&[], 1, definitions)?);
        }
        Some(out)
    }
}

// ---------------------------------------------------------------------------
// SHA-512 (FIPS 180-4), for the ETags and hashes of built documents: the
// same function upstream hashes its documents with.

struct Sha512 {
    state: [u64; 8],
    block: [u8; 128],
    filled: usize,
    length: u128,
}

/// The first 64 bits of the fractional parts of the cube roots of the first
/// 80 primes.
#[rustfmt::skip]
const SHA512_K: [u64; 80] = [
    0x428a2f98d728ae22, 0x7137449123ef65cd, 0xb5c0fbcfec4d3b2f, 0xe9b5dba58189dbbc,
    0x3956c25bf348b538, 0x59f111f1b605d019, 0x923f82a4af194f9b, 0xab1c5ed5da6d8118,
    0xd807aa98a3030242, 0x12835b0145706fbe, 0x243185be4ee4b28c, 0x550c7dc3d5ffb4e2,
    0x72be5d74f27b896f, 0x80deb1fe3b1696b1, 0x9bdc06a725c71235, 0xc19bf174cf692694,
    0xe49b69c19ef14ad2, 0xefbe4786384f25e3, 0x0fc19dc68b8cd5b5, 0x240ca1cc77ac9c65,
    0x2de92c6f592b0275, 0x4a7484aa6ea6e483, 0x5cb0a9dcbd41fbd4, 0x76f988da831153b5,
    0x983e5152ee66dfab, 0xa831c66d2db43210, 0xb00327c898fb213f, 0xbf597fc7beef0ee4,
    0xc6e00bf33da88fc2, 0xd5a79147930aa725, 0x06ca6351e003826f, 0x142929670a0e6e70,
    0x27b70a8546d22ffc, 0x2e1b21385c26c926, 0x4d2c6dfc5ac42aed, 0x53380d139d95b3df,
    0x650a73548baf63de, 0x766a0abb3c77b2a8, 0x81c2c92e47edaee6, 0x92722c851482353b,
    0xa2bfe8a14cf10364, 0xa81a664bbc423001, 0xc24b8b70d0f89791, 0xc76c51a30654be30,
    0xd192e819d6ef5218, 0xd69906245565a910, 0xf40e35855771202a, 0x106aa07032bbd1b8,
    0x19a4c116b8d2d0c8, 0x1e376c085141ab53, 0x2748774cdf8eeb99, 0x34b0bcb5e19b48a8,
    0x391c0cb3c5c95a63, 0x4ed8aa4ae3418acb, 0x5b9cca4f7763e373, 0x682e6ff3d6b2b8a3,
    0x748f82ee5defb2fc, 0x78a5636f43172f60, 0x84c87814a1f0ab72, 0x8cc702081a6439ec,
    0x90befffa23631e28, 0xa4506cebde82bde9, 0xbef9a3f7b2c67915, 0xc67178f2e372532b,
    0xca273eceea26619c, 0xd186b8c721c0c207, 0xeada7dd6cde0eb1e, 0xf57d4f7fee6ed178,
    0x06f067aa72176fba, 0x0a637dc5a2c898a6, 0x113f9804bef90dae, 0x1b710b35131c471b,
    0x28db77f523047d84, 0x32caab7b40c72493, 0x3c9ebe0a15c9bebc, 0x431d67c49c100d4c,
    0x4cc5d4becb3e42b6, 0x597f299cfc657e2a, 0x5fcb6fab3ad6faec, 0x6c44198c4a475817,
];

/// The first 64 bits of the fractional parts of the square roots of the
/// first 8 primes.
#[rustfmt::skip]
const SHA512_H0: [u64; 8] = [
    0x6a09e667f3bcc908, 0xbb67ae8584caa73b, 0x3c6ef372fe94f82b, 0xa54ff53a5f1d36f1,
    0x510e527fade682d1, 0x9b05688c2b3e6c1f, 0x1f83d9abfb41bd6b, 0x5be0cd19137e2179,
];

impl Sha512 {
    fn new() -> Self {
        Sha512 {
            state: SHA512_H0,
            block: [0; 128],
            filled: 0,
            length: 0,
        }
    }

    fn update(&mut self, data: impl AsRef<[u8]>) {
        let mut data = data.as_ref();
        self.length += data.len() as u128;
        while !data.is_empty() {
            let n = (128 - self.filled).min(data.len());
            self.block[self.filled..self.filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled == 128 {
                compress(&mut self.state, &self.block);
                self.filled = 0;
            }
        }
    }

    fn finish(mut self) -> [u8; 64] {
        let bits = self.length.wrapping_mul(8);
        // 0x80, zeros up to 112 bytes into a block, the 128-bit length.
        let zeros = (111 + 128 - self.filled) % 128;
        let mut pad = vec![0u8; 1 + zeros];
        pad[0] = 0x80;
        pad.extend_from_slice(&bits.to_be_bytes());
        self.update(&pad);
        let mut out = [0u8; 64];
        for (chunk, word) in out.chunks_exact_mut(8).zip(self.state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    /// Upper-case hex, as upstream writes its ETags.
    fn hex(self) -> String {
        self.finish().iter().map(|b| format!("{b:02X}")).collect()
    }

    fn digest_hex(data: &[u8]) -> String {
        let mut h = Sha512::new();
        h.update(data);
        h.hex()
    }
}

impl io::Write for Sha512 {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn compress(state: &mut [u64; 8], block: &[u8; 128]) {
    let mut w = [0u64; 80];
    for (i, chunk) in block.chunks_exact(8).enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        w[i] = u64::from_be_bytes(b);
    }
    for t in 16..80 {
        let s0 = w[t - 15].rotate_right(1) ^ w[t - 15].rotate_right(8) ^ (w[t - 15] >> 7);
        let s1 = w[t - 2].rotate_right(19) ^ w[t - 2].rotate_right(61) ^ (w[t - 2] >> 6);
        w[t] = w[t - 16]
            .wrapping_add(s0)
            .wrapping_add(w[t - 7])
            .wrapping_add(s1);
    }
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
    for t in 0..80 {
        let s1 = e.rotate_right(14) ^ e.rotate_right(18) ^ e.rotate_right(41);
        let ch = (e & f) ^ (!e & g);
        let t1 = h
            .wrapping_add(s1)
            .wrapping_add(ch)
            .wrapping_add(SHA512_K[t])
            .wrapping_add(w[t]);
        let s0 = a.rotate_right(28) ^ a.rotate_right(34) ^ a.rotate_right(39);
        let maj = (a & b) ^ (a & c) ^ (b & c);
        let t2 = s0.wrapping_add(maj);
        h = g;
        g = f;
        f = e;
        e = d.wrapping_add(t1);
        d = c;
        c = b;
        b = a;
        a = t1.wrapping_add(t2);
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *s = s.wrapping_add(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use kedge_api::crd_schema::StructuralSchema;
    use kedge_api::registry::{NameRule, ResourceInfo, RESOURCES};

    fn get(
        path: &str,
        query: Option<&str>,
        hdrs: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Bytes) {
        get_with(&CrdCache::new(), &[], path, query, hdrs)
    }

    /// GET `path` with the custom resources `crs`.
    fn get_with(
        cache: &CrdCache,
        crs: &[Arc<CustomResource>],
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
        let rest = path.strip_prefix("/openapi").expect("an openapi path");
        let r = serve(cache, rest, query, &h, crs);
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
        let crds = CrdRegistry::default();
        assert!(handle("/api/v1", None, &h, &crds).is_none());
        assert!(handle("/openapiv2", None, &h, &crds).is_none());
        assert_eq!(
            handle("/openapi/v3", None, &h, &crds).unwrap().status(),
            StatusCode::OK
        );
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

    #[test]
    fn sha512_matches_upstream_etags() {
        assert_eq!(Sha512::digest_hex(b""), "CF83E1357EEFB8BDF1542850D66D8007D620E4050B5715DC83F4A921D36CE9CE47D0D13C5D85F2B0FF8318D2877EEC2F63B931BD47417A81A538327AF927DA3E");
        assert_eq!(Sha512::digest_hex(b"abc"), "DDAF35A193617ABACC417349AE20413112E6FA4E89A97EA20A9EEEE64B55D39A2192992A274FC1A836BA3C23A3FEEBBD454D4423643CE80E2A9AC94FA54CA49F");
        let long: Vec<u8> = (0..768).map(|i| (i % 256) as u8).collect();
        assert_eq!(Sha512::digest_hex(&long), "F1721F49518EE462A3D81DEF26D81037CD474B4254B85AD7C8F1509594D0177BBB996EE9625813852BACAC108C2A72C83A8587050FEC1DCDA64730D6470953E6");
        // Fed in pieces across block boundaries.
        let mut h = Sha512::new();
        for chunk in long.chunks(77) {
            h.update(chunk);
        }
        assert_eq!(h.hex(), Sha512::digest_hex(&long));
        // The generator's ETags are the same function of the bytes.
        let docs = documents().unwrap();
        for entry in ["v3", "v3/api", "v3/version"] {
            let bytes = docs.get(entry).unwrap();
            assert_eq!(
                Sha512::digest_hex(&bytes),
                docs.etag(entry).unwrap(),
                "{entry}"
            );
        }
    }

    /// A custom resource version as the CRD controller registers it.
    fn custom_resource(
        group: &'static str,
        kind: &'static str,
        plural: &'static str,
        namespaced: bool,
        subresources: &'static [&'static str],
        schema: Option<Value>,
    ) -> Arc<CustomResource> {
        let ri: &'static ResourceInfo = Box::leak(Box::new(ResourceInfo {
            group,
            version: "v1",
            kind,
            plural,
            singular: "widget",
            namespaced,
            short_names: &[],
            categories: &[],
            subresources,
            has_generation: true,
            name_rule: NameRule::Subdomain,
        }));
        Arc::new(CustomResource {
            ri,
            schema: schema
                .as_ref()
                .map(|s| StructuralSchema::from_json(s, "openAPIV3Schema").expect("structural")),
            raw_schema: schema,
            columns: Vec::new(),
            scale: None,
            terminating: false,
        })
    }

    fn widget_schema() -> Value {
        serde_json::json!({"type": "object", "description": "A widget.", "properties": {
            "spec": {"type": "object", "description": "What the widget should be.", "required": ["size"], "properties": {
                "size": {"type": "integer", "minimum": 0, "description": "How big.", "example": 3},
                "mode": {"type": "string", "enum": ["fast", "slow"], "default": "slow"},
                "port": {"x-kubernetes-int-or-string": true},
                "note": {"type": "string", "nullable": true},
                "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                             "x-kubernetes-preserve-unknown-fields": true},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
            "status": {"type": "object", "properties": {"size": {"type": "integer"}}}}})
    }

    fn widget() -> Arc<CustomResource> {
        custom_resource(
            "example.com",
            "Widget",
            "widgets",
            true,
            &["status", "scale"],
            Some(widget_schema()),
        )
    }

    fn discovery_with(cache: &CrdCache, crs: &[Arc<CustomResource>]) -> (Value, String) {
        let (status, h, body) = get_with(cache, crs, "/openapi/v3", None, &[]);
        assert_eq!(status, StatusCode::OK);
        (json(&body), etag_of(&h))
    }

    fn v3_with(cache: &CrdCache, crs: &[Arc<CustomResource>], gv: &str) -> (Value, String) {
        let (d, _) = discovery_with(cache, crs);
        let url = d["paths"][gv]["serverRelativeURL"]
            .as_str()
            .unwrap_or_else(|| panic!("{gv} in the v3 discovery"))
            .to_string();
        let (path, hash) = url.split_once("?hash=").unwrap();
        let (status, h, body) = get_with(cache, crs, path, Some(&format!("hash={hash}")), &[]);
        assert_eq!(status, StatusCode::OK);
        assert_eq!(etag_of(&h), hash);
        assert_eq!(h.get(header::CACHE_CONTROL).unwrap(), "public, immutable");
        (json(&body), hash.to_string())
    }

    fn assert_refs_resolve(doc: &Value, prefix: &str, section: &Value) {
        let mut refs = Vec::new();
        collect_refs(doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            if r.starts_with("#/parameters/") {
                continue;
            }
            let name = r.strip_prefix(prefix).unwrap_or_else(|| panic!("{r}"));
            assert!(section.get(name).is_some(), "dangling {r}");
        }
    }

    fn param_names(params: &Value) -> Vec<String> {
        params
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|p| p["name"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn crd_group_version_document() {
        let cache = CrdCache::new();
        let crs = [widget()];
        let (d, _) = discovery_with(&cache, &crs);
        let paths = d["paths"].as_object().unwrap();
        // Built-in group-versions stay; the CRD's joins them, with a hash.
        assert!(paths.contains_key("apis/apps/v1"));
        let url = paths["apis/example.com/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        let hash = url
            .strip_prefix("/openapi/v3/apis/example.com/v1?hash=")
            .unwrap();
        assert_eq!(hash.len(), 128);
        assert!(hash
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c)));
        assert!(!paths.contains_key("apis/example.com"));

        let (doc, _) = v3_with(&cache, &crs, "apis/example.com/v1");
        assert_eq!(doc["openapi"], "3.0.0");
        assert_eq!(doc["info"]["title"], "Kubernetes CRD Swagger");
        let schemas = &doc["components"]["schemas"];
        let w = &schemas["com.example.v1.Widget"];
        assert_eq!(
            w["x-kubernetes-group-version-kind"],
            serde_json::json!([{"group": "example.com", "kind": "Widget", "version": "v1"}])
        );
        assert_eq!(w["type"], "object");
        assert_eq!(w["description"], "A widget.");
        assert_eq!(
            w["properties"]["metadata"]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert_eq!(w["properties"]["apiVersion"]["type"], "string");
        assert!(w["properties"]["kind"]["description"]
            .as_str()
            .unwrap()
            .starts_with("Kind is a string value"));
        let spec = &w["properties"]["spec"];
        assert_eq!(spec["required"], serde_json::json!(["size"]));
        let size = &spec["properties"]["size"];
        assert_eq!(size["type"], "integer");
        assert_eq!(size["description"], "How big.");
        assert_eq!(size["minimum"], 0);
        assert!(size.get("example").is_none());
        assert_eq!(spec["properties"]["mode"]["default"], "slow");
        assert_eq!(
            spec["properties"]["mode"]["enum"],
            serde_json::json!(["fast", "slow"])
        );
        assert_eq!(spec["properties"]["note"]["nullable"], true);
        assert_eq!(spec["properties"]["tags"]["x-kubernetes-list-type"], "set");
        // Unfolded int-or-string.
        let port = &spec["properties"]["port"];
        assert_eq!(port["x-kubernetes-int-or-string"], true);
        assert_eq!(
            port["anyOf"],
            serde_json::json!([{"type": "integer"}, {"type": "string"}])
        );
        // Embedded objects get their own TypeMeta and ObjectMeta.
        let template = &spec["properties"]["template"];
        assert_eq!(template["properties"]["kind"]["type"], "string");
        assert!(template["properties"]["metadata"]["$ref"]
            .as_str()
            .unwrap()
            .ends_with("ObjectMeta"));
        assert_eq!(
            template["required"],
            serde_json::json!(["kind", "apiVersion"])
        );
        assert_eq!(
            spec["properties"]["extra"]["x-kubernetes-preserve-unknown-fields"],
            true
        );

        let list = &schemas["com.example.v1.WidgetList"];
        assert_eq!(
            list["x-kubernetes-group-version-kind"][0]["kind"],
            "WidgetList"
        );
        assert_eq!(
            list["properties"]["items"]["items"]["$ref"],
            "#/components/schemas/com.example.v1.Widget"
        );
        assert_eq!(list["required"], serde_json::json!(["items"]));
        for meta in [OBJECT_META, LIST_META, STATUS, PATCH, DELETE_OPTIONS, SCALE] {
            assert!(schemas.get(meta).is_some(), "{meta}");
        }
        assert_refs_resolve(&doc, V3_DEF, schemas);

        let p = &doc["paths"];
        let all = &p["/apis/example.com/v1/widgets"];
        assert_eq!(
            all["get"]["operationId"],
            "listExampleComV1WidgetForAllNamespaces"
        );
        assert!(param_names(&all["parameters"]).contains(&"watch".to_string()));
        let coll = &p["/apis/example.com/v1/namespaces/{namespace}/widgets"];
        assert_eq!(param_names(&coll["parameters"]), ["namespace", "pretty"]);
        assert_eq!(
            coll["post"]["operationId"],
            "createExampleComV1NamespacedWidget"
        );
        assert_eq!(coll["post"]["description"], "create a Widget");
        assert_eq!(coll["post"]["x-kubernetes-action"], "post");
        assert_eq!(
            param_names(&coll["post"]["parameters"]),
            ["dryRun", "fieldManager", "fieldValidation"]
        );
        assert_eq!(
            coll["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/com.example.v1.Widget"
        );
        assert_eq!(coll["delete"]["x-kubernetes-action"], "deletecollection");
        assert_eq!(
            coll["delete"]["operationId"],
            "deleteExampleComV1CollectionNamespacedWidget"
        );
        assert!(coll["delete"].get("requestBody").is_none());
        assert!(param_names(&coll["get"]["parameters"]).contains(&"labelSelector".to_string()));
        assert_eq!(coll["get"]["tags"], serde_json::json!(["exampleCom_v1"]));

        // What kubectl's QueryParamVerifierV3 reads.
        let item = &p["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"];
        assert_eq!(
            param_names(&item["parameters"]),
            ["name", "namespace", "pretty"]
        );
        assert_eq!(item["parameters"][0]["description"], "name of the Widget");
        let patch = &item["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            serde_json::json!({"group": "example.com", "kind": "Widget", "version": "v1"})
        );
        let fv = patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "fieldValidation")
            .expect("fieldValidation on PATCH");
        assert_eq!(fv["in"], "query");
        assert!(fv["description"].as_str().unwrap().contains("Strict"));
        let content = patch["requestBody"]["content"].as_object().unwrap();
        let types: Vec<&str> = content.keys().map(String::as_str).collect();
        // No strategic merge patch for custom resources.
        assert_eq!(
            types,
            [
                "application/apply-patch+yaml",
                "application/json-patch+json",
                "application/merge-patch+json"
            ]
        );
        assert_eq!(param_names(&item["get"]["parameters"]), ["resourceVersion"]);
        assert_eq!(
            item["delete"]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"
        );
        assert!(item["delete"]["requestBody"].get("required").is_none());
        assert!(item["delete"]["responses"].get("202").is_some());
        assert!(item["put"]["responses"].get("201").is_some());
        assert_eq!(
            item["get"]["responses"]["200"]["content"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["application/json", "application/yaml"]
        );
        let status = &p["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}/status"];
        assert_eq!(
            status["get"]["operationId"],
            "readExampleComV1NamespacedWidgetStatus"
        );
        assert_eq!(
            status["put"]["description"],
            "replace status of the specified Widget"
        );
        let scale = &p["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}/scale"];
        assert_eq!(
            scale["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/io.k8s.api.autoscaling.v1.Scale"
        );
        assert_eq!(
            scale["patch"]["x-kubernetes-group-version-kind"]["kind"],
            "Widget"
        );
        assert_eq!(doc["paths"].as_object().unwrap().len(), 5);
    }

    #[test]
    fn cluster_scoped_crd_and_schemaless_versions() {
        let cache = CrdCache::new();
        let gadget = custom_resource("gadgets.acme.io", "Gadget", "gadgets", false, &[], None);
        let (doc, _) = v3_with(&cache, &[gadget], "apis/gadgets.acme.io/v1");
        let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
        assert_eq!(
            paths,
            [
                "/apis/gadgets.acme.io/v1/gadgets",
                "/apis/gadgets.acme.io/v1/gadgets/{name}"
            ]
        );
        let coll = &doc["paths"]["/apis/gadgets.acme.io/v1/gadgets"];
        assert_eq!(coll["get"]["operationId"], "listGadgetsAcmeIoV1Gadget");
        assert_eq!(param_names(&coll["parameters"]), ["pretty"]);
        // Without a schema: an object of any shape.
        assert_eq!(
            doc["components"]["schemas"]["io.acme.gadgets.v1.Gadget"],
            serde_json::json!({"type": "object", "x-kubernetes-group-version-kind": [
                {"group": "gadgets.acme.io", "kind": "Gadget", "version": "v1"}]})
        );
        // A schema that keeps unknown fields at its root: properties in v3,
        // none in v2 (kubectl's v2 validation would reject what it allows).
        let open = serde_json::json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true,
            "properties": {"spec": {"type": "object"}}});
        let gizmo = custom_resource("example.com", "Gizmo", "gizmos", true, &[], Some(open));
        let v3 = crd_model(&gizmo, false);
        assert!(v3["properties"].get("metadata").is_some());
        assert_eq!(v3["x-kubernetes-preserve-unknown-fields"], true);
        let v2 = crd_model(&gizmo, true);
        assert_eq!(
            v2,
            serde_json::json!({"type": "object", "x-kubernetes-group-version-kind": [
                {"group": "example.com", "kind": "Gizmo", "version": "v1"}]})
        );
        assert_eq!(article("Ingress"), " an ");
        assert_eq!(article("Settings"), " ");
        assert_eq!(operation_id_part("cert-manager.io", true), "CertManagerIo");
        assert_eq!(operation_id_part("v1beta1", true), "V1beta1");
    }

    #[test]
    fn crd_documents_follow_the_crds() {
        let cache = CrdCache::new();
        let (_, base_etag) = discovery_with(&cache, &[]);
        assert_eq!(base_etag, documents().unwrap().etag("v3").unwrap());
        let first = [widget()];
        let (d1, etag1) = discovery_with(&cache, &first);
        assert_ne!(etag1, base_etag);
        let (_, hash1) = v3_with(&cache, &first, "apis/example.com/v1");
        // The same definition registered again (the registry's entries are
        // rebuilt on every CRD change): the same hash, the document kept.
        let again = [widget()];
        let (d2, etag2) = discovery_with(&cache, &again);
        assert_eq!((d1, etag1.clone()), (d2, etag2));
        let kept = cache
            .current
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .built
            .lock()
            .unwrap()
            .v3
            .len();
        assert_eq!(kept, 1);
        // A changed schema: a new hash, the old one redirected to it.
        let mut schema = widget_schema();
        schema["properties"]["spec"]["properties"]["colour"] =
            serde_json::json!({"type": "string"});
        let changed = [custom_resource(
            "example.com",
            "Widget",
            "widgets",
            true,
            &["status", "scale"],
            Some(schema),
        )];
        let (doc, hash2) = v3_with(&cache, &changed, "apis/example.com/v1");
        assert_ne!(hash1, hash2);
        assert!(
            doc["components"]["schemas"]["com.example.v1.Widget"]["properties"]["spec"]
                ["properties"]
                .get("colour")
                .is_some()
        );
        let (status, h, _) = get_with(
            &cache,
            &changed,
            "/openapi/v3/apis/example.com/v1",
            Some(&format!("hash={hash1}")),
            &[],
        );
        assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
        assert_eq!(
            h.get(header::LOCATION).unwrap(),
            &format!("/openapi/v3/apis/example.com/v1?hash={hash2}")
        );
        // Two kinds in one group-version share its document.
        let both = [
            changed[0].clone(),
            custom_resource("example.com", "Gizmo", "gizmos", true, &[], None),
        ];
        let (doc, hash3) = v3_with(&cache, &both, "apis/example.com/v1");
        assert_ne!(hash3, hash2);
        assert!(doc["components"]["schemas"]
            .get("com.example.v1.Gizmo")
            .is_some());
        assert!(doc["paths"]
            .get("/apis/example.com/v1/namespaces/{namespace}/gizmos/{name}")
            .is_some());
        // The CRD deleted: back to the built-in documents.
        let (d, etag) = discovery_with(&cache, &[]);
        assert_eq!(etag, base_etag);
        assert!(d["paths"].get("apis/example.com/v1").is_none());
        let (status, _, _) = get_with(&cache, &[], "/openapi/v3/apis/example.com/v1", None, &[]);
        assert_eq!(status, StatusCode::NOT_FOUND);
        // A CRD cannot take over a built-in resource's documents.
        let deployments = custom_resource("apps", "Deployment", "deployments", true, &[], None);
        let (d, etag) = discovery_with(&cache, &[deployments]);
        assert_eq!(etag, base_etag);
        assert_eq!(d, discovery());
    }

    #[test]
    fn crd_in_openapi_v2() {
        let cache = CrdCache::new();
        let crs = [widget()];
        let (_, h, base) = get_with(&cache, &[], "/openapi/v2", None, &[]);
        let base_etag = etag_of(&h);
        let base = json(&base);
        let (status, h, body) = get_with(&cache, &crs, "/openapi/v2", None, &[]);
        assert_eq!(status, StatusCode::OK);
        let etag = etag_of(&h);
        assert_ne!(etag, base_etag);
        assert_eq!(etag.len(), 128);
        let doc = json(&body);
        let defs = doc["definitions"].as_object().unwrap();
        assert_eq!(
            defs.len(),
            base["definitions"].as_object().unwrap().len() + 2
        );
        assert!(
            defs.keys().zip(defs.keys().skip(1)).all(|(a, b)| a < b),
            "sorted"
        );
        let w = &defs["com.example.v1.Widget"];
        assert_eq!(w["x-kubernetes-group-version-kind"][0]["kind"], "Widget");
        assert_eq!(
            w["properties"]["metadata"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        let spec = &w["properties"]["spec"]["properties"];
        // ToStructuralOpenAPIV2: no junctors, nullable fields untyped,
        // objects that keep unknown fields without properties.
        assert!(spec["port"].get("anyOf").is_none());
        assert_eq!(spec["port"]["x-kubernetes-int-or-string"], true);
        assert_eq!(spec["note"], serde_json::json!({}));
        assert!(spec["template"].get("properties").is_none());
        assert!(spec["template"].get("required").is_none());
        assert_eq!(spec["size"]["type"], "integer");
        assert_eq!(
            defs["com.example.v1.WidgetList"]["properties"]["items"]["items"]["$ref"],
            "#/definitions/com.example.v1.Widget"
        );
        let patch =
            &doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]["patch"];
        assert!(param_names(&patch["parameters"]).contains(&"fieldValidation".to_string()));
        assert_eq!(patch["parameters"][0]["in"], "body");
        assert_eq!(
            patch["parameters"][0]["schema"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
        );
        let fv = patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "fieldValidation")
            .unwrap();
        assert_eq!(fv["type"], "string");
        assert_eq!(
            patch["consumes"],
            serde_json::json!([
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/apply-patch+yaml"
            ])
        );
        assert_eq!(patch["schemes"], serde_json::json!(["https"]));
        assert_eq!(
            patch["responses"]["200"]["schema"]["$ref"],
            "#/definitions/com.example.v1.Widget"
        );
        assert_refs_resolve(&doc["paths"], V2_DEF, &doc["definitions"]);
        assert_refs_resolve(&doc["definitions"], V2_DEF, &doc["definitions"]);

        // The protobuf: same ETag, the same definitions in the same order,
        // each encoded as its JSON form.
        let (status, h, pb_body) = get_with(
            &cache,
            &crs,
            "/openapi/v2",
            None,
            &[("accept", V2_PROTOBUF)],
        );
        assert_eq!(status, StatusCode::OK);
        assert_eq!(etag_of(&h), etag);
        let top = pb::fields(&pb_body).unwrap();
        let definitions = top.iter().find(|f| f.number == 9).unwrap().payload;
        let named: Vec<(String, Vec<u8>)> = pb::fields(definitions)
            .unwrap()
            .iter()
            .map(|f| {
                let e = pb::fields(f.payload).unwrap();
                let name = std::str::from_utf8(e[0].payload).unwrap().to_string();
                (name, e[1].payload.to_vec())
            })
            .collect();
        let names: Vec<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, defs.keys().map(String::as_str).collect::<Vec<_>>());
        let (_, w_pb) = named
            .iter()
            .find(|(n, _)| n == "com.example.v1.Widget")
            .unwrap();
        assert_eq!(w_pb, &pb::schema(w));
        let paths = top.iter().find(|f| f.number == 8).unwrap().payload;
        let n_paths = pb::fields(paths)
            .unwrap()
            .iter()
            .filter(|f| f.number == 2)
            .count();
        assert_eq!(n_paths, doc["paths"].as_object().unwrap().len());
        // Revalidation, then the CRD gone: the built-in document again.
        let inm = format!("\"{etag}\"");
        let (status, _, _) = get_with(
            &cache,
            &crs,
            "/openapi/v2",
            None,
            &[("accept", V2_PROTOBUF), ("if-none-match", &inm)],
        );
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        let (_, h, body) = get_with(&cache, &[], "/openapi/v2", None, &[]);
        assert_eq!(etag_of(&h), base_etag);
        assert_eq!(json(&body), base);
    }

    /// The protobuf encoder reproduces the generator's encoding of every
    /// built-in definition and path item, so CRD additions are encoded as
    /// upstream's gnostic would.
    #[test]
    fn protobuf_encoding_matches_the_generator() {
        let docs = documents().unwrap();
        let json_doc: Value = serde_json::from_slice(&docs.peek("v2.json").unwrap()).unwrap();
        let pb_doc = docs.peek("v2.pb").unwrap();
        let top = pb::fields(&pb_doc).unwrap();
        for (field, entry, key) in [(9, 1, "definitions"), (8, 2, "paths")] {
            let msg = top.iter().find(|f| f.number == field).unwrap().payload;
            let mut n = 0;
            for f in pb::fields(msg)
                .unwrap()
                .iter()
                .filter(|f| f.number == entry)
            {
                let e = pb::fields(f.payload).unwrap();
                let name = std::str::from_utf8(e[0].payload).unwrap();
                let v = &json_doc[key][name];
                let encoded = if key == "paths" {
                    pb::path_item(v)
                } else {
                    pb::schema(v)
                };
                assert!(encoded == e[1].payload, "{key} {name}");
                n += 1;
            }
            assert_eq!(n, json_doc[key].as_object().unwrap().len());
        }
        // Splicing nothing in changes nothing.
        assert_eq!(
            pb::splice_document(&pb_doc, &[], &[]).unwrap(),
            pb_doc.to_vec()
        );
    }
}
