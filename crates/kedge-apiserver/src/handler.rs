//! The one generic REST handler: every built-in resource goes through here,
//! its differences expressed by `kedge_api::strategy`.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use kedge_api::registry::{self, ResourceInfo};
use kedge_api::selectors::{FieldSelector, LabelSelector};
use kedge_api::status::{success_status, Cause};
use kedge_api::{meta, strategy, table, ApiError};
use kedge_store::{Store, Stored};
use serde_json::{json, Map, Value};

use crate::auth::{self, Attributes, User};
use crate::crd::{self, CustomResource};
use crate::fieldvalidation::{self, FieldValidation};
use crate::negotiate::{self, Output, MAX_BODY};
use crate::path::ResourcePath;
use crate::query::Query;
use crate::server::{ApiServer, Body};
use crate::watch;
use kedge_api::ssa::{FieldManager, SchemaRef};

/// A parsed resource request.
pub(crate) struct Req {
    pub ri: &'static ResourceInfo,
    /// Set when `ri` is a custom resource.
    pub cr: Option<Arc<CustomResource>>,
    pub user: User,
    pub ns: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
    pub query: Query,
    pub out: Output,
    pub headers: HeaderMap,
}

pub(crate) fn store_err(ri: &ResourceInfo, name: &str, e: kedge_store::Error) -> ApiError {
    match e {
        kedge_store::Error::AlreadyExists(_) => ApiError::already_exists(ri.group, ri.plural, name),
        kedge_store::Error::NotFound(_) => ApiError::not_found(ri.group, ri.plural, name),
        kedge_store::Error::Conflict { .. } => ApiError::modified(ri.group, ri.plural, name),
        kedge_store::Error::TooOld { requested, oldest } => {
            ApiError::gone(format!("too old resource version: {requested} ({oldest})"))
        }
        other => {
            tracing::error!(error = %other, "datastore error");
            ApiError::internal(other)
        }
    }
}

pub(crate) fn parse_stored(s: &Stored) -> Result<Value, ApiError> {
    serde_json::from_slice(&s.value)
        .map_err(|e| ApiError::internal(format!("stored object {} is corrupt: {e}", s.key)))
}

pub async fn handle(
    srv: Arc<ApiServer>,
    user: User,
    rp: ResourcePath,
    req: Request<Body>,
) -> Response<Body> {
    match handle_inner(srv, user, rp, req).await {
        Ok(r) => r,
        Err(e) => negotiate::error_response(&e),
    }
}

async fn handle_inner(
    srv: Arc<ApiServer>,
    user: User,
    rp: ResourcePath,
    req: Request<Body>,
) -> Result<Response<Body>, ApiError> {
    let ri = srv
        .lookup(&rp.group, &rp.version, &rp.resource)
        .ok_or_else(ApiError::not_found_path)?;
    if !ri.namespaced && rp.namespace.is_some() {
        return Err(ApiError::not_found_path());
    }
    if let Some(sub) = &rp.subresource {
        if !ri.has_subresource(sub) {
            return Err(ApiError::not_found_path());
        }
        // Served by the node proxy (GET/POST); nothing else here.
        if matches!(sub.as_str(), "attach" | "exec" | "log" | "portforward") {
            return Err(ApiError::method_not_allowed());
        }
    }
    let query = Query::parse(req.uri().query())?;
    let method = req.method().clone();
    let has_name = rp.name.is_some();
    let verb = match (&method, has_name) {
        (&Method::GET, _) if query.watch => "watch",
        (&Method::GET, false) => "list",
        (&Method::GET, true) => "get",
        (&Method::POST, false) => "create",
        (&Method::POST, true)
            if matches!(
                rp.subresource.as_deref(),
                Some("binding" | "eviction" | "token")
            ) =>
        {
            "create"
        }
        (&Method::PUT, true) => "update",
        (&Method::PATCH, true) => "patch",
        (&Method::DELETE, true) if rp.subresource.is_none() => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => return Err(ApiError::method_not_allowed()),
    };
    if (registry::is_create_only(ri)
        || matches!(rp.subresource.as_deref(), Some("token" | "eviction")))
        && verb != "create"
    {
        return Err(ApiError::method_not_allowed());
    }
    auth::authorize(
        &user,
        &Attributes {
            verb,
            group: ri.group,
            resource: ri.plural,
            subresource: rp.subresource.as_deref(),
            namespace: rp.namespace.as_deref(),
            name: rp.name.as_deref(),
        },
    )?;
    let out = negotiate::choose_output(req.headers())?;
    let (parts, body) = req.into_parts();
    let r = Req {
        ri,
        cr: srv.crds.of(ri),
        user: user.clone(),
        ns: rp.namespace,
        name: rp.name,
        sub: rp.subresource,
        query,
        out,
        headers: parts.headers,
    };
    match verb {
        "get" => get(&srv, &r).await,
        "list" => list(&srv, &r).await,
        "watch" => watch::serve(srv, r).await,
        "create" => {
            let body = read_body(&r.headers, body).await?;
            create(&srv, &r, &body).await
        }
        "update" => {
            let body = read_body(&r.headers, body).await?;
            update(&srv, &r, &body).await
        }
        "patch" => {
            let body = read_body(&r.headers, body).await?;
            patch(&srv, &r, &body).await
        }
        "delete" => {
            let body = read_body(&r.headers, body).await?;
            delete(&srv, &r, &body).await
        }
        "deletecollection" => {
            let body = read_body(&r.headers, body).await?;
            delete_collection(&srv, &r, &body).await
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut body = body;
    let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(MAX_BODY));
    let mut seen = 0usize;
    // Read (and, past the limit, discard) the whole body so the client
    // receives the 413 instead of a reset connection; give up on bodies so
    // large that draining them is itself abuse.
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        if let Some(data) = frame.data_ref() {
            seen += data.len();
            if seen <= MAX_BODY {
                buf.extend_from_slice(data);
            } else if seen > 16 * MAX_BODY {
                break;
            }
        }
    }
    if seen > MAX_BODY {
        return Err(ApiError::too_large(MAX_BODY));
    }
    Ok(Bytes::from(buf))
}

fn ns_of(r: &Req) -> Option<&str> {
    r.ns.as_deref()
}

fn name_of(r: &Req) -> &str {
    r.name.as_deref().unwrap_or("")
}

/// Read one object.
pub(crate) fn fetch(
    srv: &ApiServer,
    ri: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> Result<(Stored, Value), ApiError> {
    let s = srv
        .store
        .get(&ri.key(ns, name))
        .map_err(|e| store_err(ri, name, e))?
        .ok_or_else(|| ApiError::not_found(ri.group, ri.plural, name))?;
    let v = parse_stored(&s)?;
    Ok((s, v))
}

async fn get(srv: &ApiServer, r: &Req) -> Result<Response<Body>, ApiError> {
    let (stored, obj) = fetch(srv, r.ri, ns_of(r), name_of(r))?;
    if r.sub.as_deref() == Some("scale") {
        return Ok(negotiate::respond(
            StatusCode::OK,
            r.out,
            &to_scale(r.ri, r.cr.as_deref(), &obj)?,
        ));
    }
    let obj = view(r.ri, obj);
    if !raw_is_view(r) && r.out != Output::Table && r.out != Output::Metadata {
        return Ok(negotiate::respond(StatusCode::OK, r.out, &obj));
    }
    match r.out {
        Output::Table => Ok(negotiate::respond(
            StatusCode::OK,
            Output::Json,
            &make_table(
                r.ri,
                r.cr.as_deref(),
                &[obj],
                r.query.include_object.as_deref(),
                true,
                stored.revision,
            ),
        )),
        Output::Metadata => Ok(negotiate::respond(
            StatusCode::OK,
            Output::Json,
            &partial(&obj),
        )),
        out => Ok(negotiate::respond_raw(StatusCode::OK, out, stored.value)),
    }
}

/// Selectors of a list or watch, checked against the resource.
pub(crate) struct Filter {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    ri: &'static ResourceInfo,
}

impl Filter {
    pub fn new(
        ri: &'static ResourceInfo,
        q: &Query,
        name: Option<&str>,
    ) -> Result<Filter, ApiError> {
        let labels = match &q.label_selector {
            Some(s) => LabelSelector::parse(s).map_err(ApiError::bad_request)?,
            None => LabelSelector::default(),
        };
        let mut fs = q.field_selector.clone().unwrap_or_default();
        if let Some(n) = name {
            // A watch on one object is a watch with a name field selector.
            if !fs.is_empty() {
                fs.push(',');
            }
            fs.push_str(&format!("metadata.name={n}"));
        }
        let fields = FieldSelector::parse(&fs).map_err(ApiError::bad_request)?;
        fields
            .check_supported(ri.group, ri.plural)
            .map_err(ApiError::bad_request)?;
        Ok(Filter { labels, fields, ri })
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// Match a stored object, as this resource presents it.
    pub fn matches(&self, obj: &Value) -> bool {
        let converted;
        let obj = if self.ri.is_events_view() {
            converted = kedge_api::events::core_to_events(obj);
            &converted
        } else {
            obj
        };
        self.labels.matches(meta::labels(obj))
            && self.fields.matches(self.ri.group, self.ri.plural, obj)
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: i64,
    start: String,
}

/// One page of a list, filtered.
pub(crate) struct ListResult {
    pub items: Vec<Stored>,
    pub revision: i64,
    pub continue_token: Option<String>,
    pub remaining: Option<u64>,
}

pub(crate) fn list_items(
    srv: &ApiServer,
    ri: &'static ResourceInfo,
    ns: Option<&str>,
    q: &Query,
    filter: &Filter,
) -> Result<ListResult, ApiError> {
    let prefix = ri.list_prefix(ns);
    let (mut after, token_rv) = match &q.continue_token {
        Some(t) => {
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t.trim_end_matches('='))
                .map_err(|e| ApiError::bad_request(format!("continue key is not valid: {e}")))?;
            let tok: ContinueToken = serde_json::from_slice(&raw)
                .map_err(|e| ApiError::bad_request(format!("continue key is not valid: {e}")))?;
            if tok.v != "meta.k8s.io/v1" || tok.start.contains("..") {
                return Err(ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"));
            }
            // Beyond the watch window the list can no longer be consistent
            // with its first page: 410 with a token that continues
            // inconsistently (revision -1), as upstream answers after
            // compaction.
            if tok.rv >= 0 && tok.rv < srv.store.window().floor() {
                let fresh = ContinueToken {
                    v: "meta.k8s.io/v1".into(),
                    rv: -1,
                    start: tok.start.clone(),
                };
                let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(serde_json::to_vec(&fresh).unwrap_or_default());
                let mut e = ApiError::gone("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.");
                e.metadata = Some(Box::new(json!({"continue": enc})));
                return Err(e);
            }
            let rv = (tok.rv >= 0).then_some(tok.rv);
            (Some(format!("{prefix}{}", tok.start)), rv)
        }
        None => (None, None),
    };
    if let (Some(m), Some(rv)) = (&q.resource_version_match, &q.resource_version) {
        if m == "Exact" && rv.parse::<i64>().ok() != Some(srv.store.revision()) {
            return Err(ApiError::gone(format!(
                "too old resource version: {rv} ({})",
                srv.store.revision()
            )));
        }
    }
    let limit = q.limit;
    let batch = if limit == 0 { 0 } else { limit.max(64) };
    let mut items = Vec::new();
    let mut revision = None;
    let mut continue_from = None;
    loop {
        let page = srv
            .store
            .list(&prefix, after.as_deref(), batch)
            .map_err(|e| store_err(ri, "", e))?;
        revision.get_or_insert(page.revision);
        let n = page.items.len();
        for (i, s) in page.items.into_iter().enumerate() {
            let keep = if filter.is_empty() {
                true
            } else {
                filter.matches(&parse_stored(&s)?)
            };
            let key = s.key.clone();
            if keep {
                items.push(s);
            }
            if limit != 0 && items.len() == limit {
                let more_here = i + 1 < n;
                if more_here || page.more {
                    continue_from = Some(key);
                }
                break;
            }
            after = Some(key);
        }
        if continue_from.is_some() || !page.more || (limit != 0 && items.len() == limit) {
            break;
        }
    }
    let revision = token_rv
        .or(revision)
        .unwrap_or_else(|| srv.store.revision());
    let (continue_token, remaining) = match continue_from {
        Some(k) => {
            let tok = ContinueToken {
                v: "meta.k8s.io/v1".into(),
                rv: revision,
                start: k.strip_prefix(&prefix).unwrap_or(&k).to_string(),
            };
            let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(&tok).unwrap_or_default());
            let remaining = if filter.is_empty() {
                Some(
                    srv.store
                        .count(&prefix, Some(&k))
                        .map_err(|e| store_err(ri, "", e))?,
                )
            } else {
                None
            };
            (Some(enc), remaining)
        }
        None => (None, None),
    };
    Ok(ListResult {
        items,
        revision,
        continue_token,
        remaining,
    })
}

fn list_meta(res: &ListResult) -> Value {
    let mut m = Map::new();
    m.insert("resourceVersion".into(), json!(res.revision.to_string()));
    if let Some(c) = &res.continue_token {
        m.insert("continue".into(), json!(c));
    }
    if let Some(n) = res.remaining {
        m.insert("remainingItemCount".into(), json!(n));
    }
    Value::Object(m)
}

async fn list(srv: &ApiServer, r: &Req) -> Result<Response<Body>, ApiError> {
    let filter = Filter::new(r.ri, &r.query, None)?;
    let res = list_items(srv, r.ri, ns_of(r), &r.query, &filter)?;
    match r.out {
        Output::Table | Output::Metadata => {
            let objs = res
                .items
                .iter()
                .map(|s| parse_stored(s).map(|o| view(r.ri, o)))
                .collect::<Result<Vec<_>, _>>()?;
            let mut v = if r.out == Output::Table {
                make_table(
                    r.ri,
                    r.cr.as_deref(),
                    &objs,
                    r.query.include_object.as_deref(),
                    true,
                    res.revision,
                )
            } else {
                json!({
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "items": objs.iter().map(partial).collect::<Vec<_>>(),
                })
            };
            if let Some(o) = v.as_object_mut() {
                o.insert("metadata".into(), list_meta(&res));
            }
            Ok(negotiate::respond(StatusCode::OK, Output::Json, &v))
        }
        Output::Json if !raw_is_view(r) => {
            let items = res
                .items
                .iter()
                .map(|s| parse_stored(s).map(|o| view(r.ri, o)))
                .collect::<Result<Vec<_>, _>>()?;
            let v = json!({"kind": r.ri.list_kind(), "apiVersion": r.ri.api_version(), "metadata": list_meta(&res), "items": items});
            Ok(negotiate::respond(StatusCode::OK, Output::Json, &v))
        }
        Output::Json => {
            // Splice the stored bytes: no parse, no re-encode.
            let head = json!({"kind": r.ri.list_kind(), "apiVersion": r.ri.api_version(), "metadata": list_meta(&res)});
            let head = serde_json::to_vec(&head).unwrap_or_default();
            let total: usize = res.items.iter().map(|s| s.value.len() + 1).sum();
            let mut buf = Vec::with_capacity(head.len() + total + 16);
            buf.extend_from_slice(&head[..head.len() - 1]);
            buf.extend_from_slice(b",\"items\":[");
            for (i, s) in res.items.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                buf.extend_from_slice(&s.value);
            }
            buf.extend_from_slice(b"]}");
            Ok(negotiate::json_bytes(StatusCode::OK, Bytes::from(buf)))
        }
        Output::Yaml => {
            let items = res
                .items
                .iter()
                .map(|s| parse_stored(s).map(|o| view(r.ri, o)))
                .collect::<Result<Vec<_>, _>>()?;
            let v = json!({"kind": r.ri.list_kind(), "apiVersion": r.ri.api_version(), "metadata": list_meta(&res), "items": items});
            Ok(negotiate::respond(StatusCode::OK, Output::Yaml, &v))
        }
    }
}

/// `PartialObjectMetadata` of an object.
pub(crate) fn partial(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A `meta.k8s.io/v1` Table of objects.
pub(crate) fn make_table(
    ri: &ResourceInfo,
    cr: Option<&CustomResource>,
    objs: &[Value],
    include: Option<&str>,
    with_columns: bool,
    revision: i64,
) -> Value {
    let now = jiff::Timestamp::now();
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let cells = match cr {
                Some(cr) => crd::cells(cr, o, now),
                None => table::cells(ri.group, ri.plural, o, now),
            };
            let mut row = json!({"cells": cells});
            let object = match include.unwrap_or("Metadata") {
                "None" => None,
                "Object" => Some(o.clone()),
                _ => Some(partial(o)),
            };
            if let (Some(obj), Some(m)) = (object, row.as_object_mut()) {
                m.insert("object".into(), obj);
            }
            row
        })
        .collect();
    let columns = if !with_columns {
        Value::Null
    } else if let Some(cr) = cr {
        crd::columns(cr)
    } else {
        serde_json::to_value(table::columns(ri.group, ri.plural)).unwrap_or(Value::Null)
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": revision.to_string()},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// The kind and apiVersion in a body must match the URL's (when present).
fn check_kind(ri: &ResourceInfo, obj: &Value, expect_kind: &str) -> Result<(), ApiError> {
    let api_version = obj.get("apiVersion").and_then(Value::as_str);
    let kind = obj.get("kind").and_then(Value::as_str);
    let want_gv = ri.api_version();
    if let Some(av) = api_version {
        if !av.is_empty() && av != want_gv {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want_gv})"
            )));
        }
    }
    if let Some(k) = kind {
        if !k.is_empty() && k != expect_kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({expect_kind})"
            )));
        }
    }
    Ok(())
}

fn set_gvk(ri: &ResourceInfo, obj: &mut Value) {
    if let Some(o) = obj.as_object_mut() {
        o.insert("apiVersion".into(), json!(ri.api_version()));
        o.insert("kind".into(), json!(ri.kind));
    }
}

/// URL and body namespaces must agree; the body's is filled in.
fn reconcile_namespace(
    ri: &ResourceInfo,
    ns: Option<&str>,
    obj: &mut Value,
) -> Result<(), ApiError> {
    let md = meta::metadata_mut(obj);
    if ri.namespaced {
        let url_ns = ns.unwrap_or("");
        match md.get("namespace").and_then(Value::as_str) {
            Some(b) if !b.is_empty() && b != url_ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ))
            }
            _ => {
                md.insert("namespace".into(), json!(url_ns));
            }
        }
    } else {
        md.remove("namespace");
    }
    Ok(())
}

async fn create(srv: &ApiServer, r: &Req, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let obj = negotiate::decode_body(&r.headers, body)?;
    if registry::is_review(r.ri) {
        check_kind(r.ri, &obj, r.ri.kind)?;
        let (status, v) = crate::reviews::answer(r.ri, &r.user, &srv.authn, obj)?;
        return Ok(negotiate::respond(status, r.out, &v));
    }
    if r.sub.as_deref() == Some("binding") || r.ri.plural == "bindings" {
        return bind(srv, r, obj).await;
    }
    if r.sub.as_deref() == Some("token") {
        return crate::tokens::request::create(srv, r, obj).await;
    }
    if r.sub.as_deref() == Some("eviction") {
        return crate::eviction::create(srv, r, obj).await;
    }
    let fv = FieldValidation::parse(r.query.field_validation.as_deref())?;
    let dups = fieldvalidation::duplicate_fields(body, is_json(&r.headers), fv);
    let mut obj = obj;
    let warnings =
        fieldvalidation::unknown_and_duplicate(r.ri, r.cr.as_deref(), &mut obj, dups, fv)?;
    let (ri, obj) = if r.ri.is_events_view() {
        check_kind(r.ri, &obj, r.ri.kind)?;
        (core_events()?, kedge_api::events::events_to_core(&obj))
    } else if r.ri.is_hpa_v1_view() {
        check_kind(r.ri, &obj, r.ri.kind)?;
        (hpa_storage()?, kedge_api::hpa::v1_to_v2(&obj))
    } else {
        (r.ri, obj)
    };
    let manager = manager_of(r);
    let stored = create_object(srv, ri, ns_of(r), obj, r.query.dry_run, Some(&manager)).await?;
    let resp = match stored {
        Created::Stored(s) => respond_stored(r, StatusCode::CREATED, s)?,
        Created::DryRun(v) => negotiate::respond(StatusCode::CREATED, r.out, &view(r.ri, v)),
    };
    Ok(with_warnings(resp, &warnings))
}

/// The field manager of a write: `?fieldManager=` or the user agent.
fn manager_of(r: &Req) -> String {
    let ua = r
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    kedge_api::ssa::manager_or_user_agent(r.query.field_manager.as_deref(), ua)
}

/// The schema server-side apply and managedFields tracking use.
fn ssa_schema<'a>(ri: &ResourceInfo, cr: Option<&'a CustomResource>) -> Option<SchemaRef<'a>> {
    match cr {
        Some(cr) => cr.raw_schema.as_ref().map(SchemaRef::crd),
        None => SchemaRef::builtin(ri.group, ri.version, ri.kind),
    }
}

/// A field manager for one write.
fn field_manager<'a>(
    ri: &ResourceInfo,
    cr: Option<&'a CustomResource>,
    manager: &'a str,
    api_version: &'a str,
    now: &'a str,
    sub: Option<&'a str>,
) -> FieldManager<'a, SchemaRef<'a>> {
    let fm = FieldManager::new(manager, api_version, ri.kind, now, ssa_schema(ri, cr))
        .with_subresource(sub);
    if ri.has_status() {
        fm
    } else {
        fm.with_reset_fields(&[])
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().starts_with("application/json"))
}

/// Add `Warning: 299 - "..."` headers, as upstream reports warnings.
fn with_warnings(mut resp: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        let text = format!("299 - {}", serde_json::Value::String(w.clone()));
        if let Ok(v) = http::HeaderValue::from_str(&text) {
            resp.headers_mut().append("warning", v);
        }
    }
    resp
}

pub(crate) enum Created {
    Stored(Stored),
    DryRun(Value),
}

/// Create an object through the full create path (defaulting, validation,
/// allocation). Used by the handler and by bootstrap.
pub(crate) async fn create_object(
    srv: &ApiServer,
    ri: &'static ResourceInfo,
    ns: Option<&str>,
    mut obj: Value,
    dry_run: bool,
    manager: Option<&str>,
) -> Result<Created, ApiError> {
    check_kind(ri, &obj, ri.kind)?;
    set_gvk(ri, &mut obj);
    reconcile_namespace(ri, ns, &mut obj)?;
    let md = meta::metadata_mut(&mut obj);
    let mut name = md
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if name.is_empty() {
        let generate = md.get("generateName").and_then(Value::as_str).unwrap_or("");
        if generate.is_empty() {
            return Err(ApiError::invalid(
                ri.group,
                ri.kind,
                "",
                vec![Cause::required_msg(
                    "metadata.name",
                    "name or generateName is required",
                )],
            ));
        }
        let mut rng = rand::rng();
        let suffix = meta::random_suffix(|| rand::Rng::random::<u32>(&mut rng));
        let base: String = generate.chars().take(58).collect();
        name = format!("{base}{suffix}");
        md.insert("name".into(), json!(name));
    }
    let name_errs = strategy::validate_name(ri, &name, "metadata.name");
    if !name_errs.is_empty() {
        return Err(ApiError::invalid(ri.group, ri.kind, &name, name_errs));
    }
    for f in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        md.remove(f);
    }
    md.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    md.insert("creationTimestamp".into(), json!(meta::now_rfc3339()));
    if ri.namespaced {
        let ns = ns.unwrap_or("");
        let nsri = registry::lookup("", "v1", "namespaces")
            .ok_or_else(|| ApiError::internal("namespaces not registered"))?;
        match srv
            .store
            .get(&nsri.key(None, ns))
            .map_err(|e| store_err(nsri, ns, e))?
        {
            None => return Err(ApiError::not_found("", "namespaces", ns)),
            Some(s) => {
                let nsobj = parse_stored(&s)?;
                if meta::deletion_timestamp(&nsobj).is_some() {
                    return Err(ApiError::forbidden(
                        ri.group,
                        ri.plural,
                        &name,
                        &format!("unable to create new content in namespace {ns} because it is being terminated"),
                    ));
                }
            }
        }
    }
    let cr = srv.crds.of(ri);
    if let Some(cr) = &cr {
        if cr.terminating {
            return Err(ApiError::new(
                405,
                "MethodNotAllowed",
                "create not allowed while custom resource definition is terminating",
            ));
        }
    }
    if ri.group.is_empty() && ri.plural == "pods" {
        crate::tokens::admission::admit_pod(srv, ns.unwrap_or(""), &mut obj).await?;
        crate::admission_priority::admit_pod(srv, &mut obj)?;
        crate::admission_tolerations::admit_pod(
            &mut obj,
            srv.config.default_not_ready_toleration_seconds,
            srv.config.default_unreachable_toleration_seconds,
        );
    }
    strategy::prepare_for_create(ri, &mut obj);
    if ri.group == "apiextensions.k8s.io" && ri.plural == "customresourcedefinitions" {
        let md = meta::metadata_mut(&mut obj);
        let fins = md.entry("finalizers").or_insert_with(|| json!([]));
        if let Value::Array(f) = fins {
            if !f.iter().any(|x| x == crd::CLEANUP_FINALIZER) {
                f.push(json!(crd::CLEANUP_FINALIZER));
            }
        }
    }
    let mut causes = strategy::validate(ri, &obj);
    if let Some(cr) = &cr {
        causes.extend(crd::prepare_and_validate(cr, &mut obj, None));
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid(ri.group, ri.kind, &name, causes));
    }
    if let Some(m) = manager {
        let now = meta::now_rfc3339();
        let api_version = ri.api_version();
        let cr = srv.crds.of(ri);
        let fm = field_manager(ri, cr.as_deref(), m, &api_version, &now, None);
        fm.update(None, &mut obj);
    }
    let key = ri.key(ns, &name);
    if ri.group.is_empty() && ri.plural == "services" {
        let _guard = srv.alloc_lock.lock().await;
        allocate_service(srv, &mut obj, &name)?;
        if dry_run {
            return Ok(Created::DryRun(obj));
        }
        return srv
            .store
            .create(&key, obj)
            .await
            .map(Created::Stored)
            .map_err(|e| store_err(ri, &name, e));
    }
    if dry_run {
        return Ok(Created::DryRun(obj));
    }
    srv.store
        .create(&key, obj)
        .await
        .map(Created::Stored)
        .map_err(|e| store_err(ri, &name, e))
}

/// ClusterIP and NodePort allocation for a new Service.
fn allocate_service(srv: &ApiServer, obj: &mut Value, name: &str) -> Result<(), ApiError> {
    let svc = registry::lookup("", "v1", "services")
        .ok_or_else(|| ApiError::internal("services not registered"))?;
    let all = srv
        .store
        .list(&svc.list_prefix(None), None, 0)
        .map_err(|e| store_err(svc, name, e))?;
    let mut used_ips = HashSet::new();
    let mut used_ports = HashSet::new();
    for s in &all.items {
        let v = parse_stored(s)?;
        if let Some(ip) = v
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Ipv4Addr>().ok())
        {
            used_ips.insert(ip);
        }
        for p in v
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(n) = p.get("nodePort").and_then(Value::as_i64) {
                used_ports.insert(n);
            }
        }
    }
    let cidr = srv.config.service_cidr;
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if ty != "ExternalName" {
        let requested = spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let ip = match requested.as_str() {
            "" => cidr
                .first_free(1, &used_ips)
                .ok_or_else(|| {
                    ApiError::internal(format!(
                        "failed to allocate a serviceIP: range {cidr} is full"
                    ))
                })?
                .to_string(),
            "None" => "None".to_string(),
            s => {
                let ip: Ipv4Addr = s.parse().map_err(|_| {
                    ApiError::invalid(
                        "",
                        "Service",
                        name,
                        vec![Cause::invalid(
                            "spec.clusterIPs[0]",
                            &json!(s),
                            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                        )],
                    )
                })?;
                if !cidr.contains(ip) {
                    return Err(ApiError::invalid("", "Service", name, vec![Cause::invalid("spec.clusterIPs", &json!([s]), &format!("failed to allocate IP {s}: the provided IP ({s}) is not in the valid range. The range of valid IPs is {cidr}"))]));
                }
                if used_ips.contains(&ip) {
                    return Err(ApiError::invalid(
                        "",
                        "Service",
                        name,
                        vec![Cause::invalid(
                            "spec.clusterIPs",
                            &json!([s]),
                            &format!("failed to allocate IP {s}: provided IP is already allocated"),
                        )],
                    ));
                }
                s.to_string()
            }
        };
        spec.insert("clusterIP".into(), json!(ip));
        spec.insert("clusterIPs".into(), json!([ip]));
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        if let Some(Value::Array(ports)) = spec.get_mut("ports") {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                if let Some(n) = p.get("nodePort").and_then(Value::as_i64) {
                    if used_ports.contains(&n) {
                        return Err(ApiError::invalid(
                            "",
                            "Service",
                            name,
                            vec![Cause::invalid(
                                "spec.ports[0].nodePort",
                                &json!(n),
                                "provided port is already allocated",
                            )],
                        ));
                    }
                    used_ports.insert(n);
                    continue;
                }
                let free = (30000..=32767)
                    .find(|n| !used_ports.contains(n))
                    .ok_or_else(|| {
                        ApiError::internal(
                            "failed to allocate a nodePort: range 30000-32767 is full",
                        )
                    })?;
                used_ports.insert(free);
                p.insert("nodePort".into(), json!(free));
            }
        }
        spec.entry("externalTrafficPolicy")
            .or_insert_with(|| json!("Cluster"));
    }
    Ok(())
}

/// pods/binding and bindings: set `spec.nodeName` once.
async fn bind(srv: &ApiServer, r: &Req, binding: Value) -> Result<Response<Body>, ApiError> {
    check_kind(
        registry::lookup("", "v1", "bindings")
            .ok_or_else(|| ApiError::internal("bindings not registered"))?,
        &binding,
        "Binding",
    )?;
    let pods = registry::lookup("", "v1", "pods")
        .ok_or_else(|| ApiError::internal("pods not registered"))?;
    let pod_name = match &r.name {
        Some(n) => n.clone(),
        None => meta::name(&binding).to_string(),
    };
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "",
            "Binding",
            &pod_name,
            vec![Cause::required("target.name")],
        ));
    }
    let ns = ns_of(r).map(str::to_string);
    let node2 = node.clone();
    let pn = pod_name.clone();
    guaranteed_update(srv, pods, ns.as_deref(), &pod_name, move |mut pod| {
        if meta::deletion_timestamp(&pod).is_some() {
            return Err(ApiError::conflict("", "pods", &pn, "pod is being deleted, cannot be assigned to a host"));
        }
        if let Some(cur) = pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            return Err(ApiError::conflict("", "pods", &pn, &format!("pod {pn} is already assigned to node \"{cur}\"")));
        }
        if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("nodeName".into(), json!(node2));
        }
        let status = pod.as_object_mut().map(|o| o.entry("status").or_insert_with(|| json!({})));
        if let Some(Value::Object(st)) = status {
            let conds = st.entry("conditions").or_insert_with(|| json!([]));
            if let Value::Array(c) = conds {
                c.retain(|x| x.get("type").and_then(Value::as_str) != Some("PodScheduled"));
                c.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": meta::now_rfc3339()}));
            }
        }
        Ok(pod)
    })
    .await?;
    Ok(negotiate::respond(
        StatusCode::CREATED,
        r.out,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

/// Read-modify-write with optimistic concurrency, retried on conflicts that
/// the caller did not ask for. `f` gets the current object and returns the
/// new one (or an error, e.g. a precondition failure). An unchanged object is
/// not written.
pub(crate) async fn guaranteed_update<F>(
    srv: &ApiServer,
    ri: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    mut f: F,
) -> Result<Stored, ApiError>
where
    F: FnMut(Value) -> Result<Value, ApiError>,
{
    let key = ri.key(ns, name);
    // Every lost race means another writer won: progress is guaranteed,
    // so retry generously before answering 409.
    for _ in 0..256 {
        let (cur, cur_v) = fetch(srv, ri, ns, name)?;
        let mut new = f(cur_v.clone())?;
        // The stored resourceVersion is the store's business.
        meta::metadata_mut(&mut new).remove("resourceVersion");
        let mut cmp = cur_v.clone();
        meta::metadata_mut(&mut cmp).remove("resourceVersion");
        if new == cmp {
            return Ok(cur);
        }
        // Removing the last finalizer of an object being deleted deletes it.
        if meta::deletion_timestamp(&new).is_some()
            && !held_by_finalizers(ri, &new)
            && !is_graceful_pod(ri, &new)
        {
            match srv.store.delete(&key, Some(cur.revision)).await {
                Ok(s) => return Ok(s),
                Err(kedge_store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(store_err(ri, name, e)),
            }
        }
        match srv.store.update(&key, new, Some(cur.revision)).await {
            Ok(s) => return Ok(s),
            Err(kedge_store::Error::Conflict { .. }) => continue,
            Err(e) => return Err(store_err(ri, name, e)),
        }
    }
    Err(ApiError::modified(ri.group, ri.plural, name))
}

/// A pod whose agent still has time to stop it.
fn is_graceful_pod(ri: &ResourceInfo, obj: &Value) -> bool {
    ri.group.is_empty()
        && ri.plural == "pods"
        && obj
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .is_some_and(|g| g > 0)
}

/// Apply an update body onto the current object as PUT does.
#[allow(clippy::too_many_arguments)]
fn apply_update(
    ri: &ResourceInfo,
    cr: Option<&CustomResource>,
    sub: Option<&str>,
    url_ns: Option<&str>,
    url_name: &str,
    mut new: Value,
    cur: &Value,
    manager: Option<&str>,
) -> Result<Value, ApiError> {
    let body_name = meta::name(&new).to_string();
    if !body_name.is_empty() && body_name != url_name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({url_name})"
        )));
    }
    reconcile_namespace(ri, url_ns, &mut new)?;
    if let Some(rv) = meta::resource_version(&new) {
        if !rv.is_empty() && Some(rv) != meta::resource_version(cur) {
            return Err(ApiError::modified(ri.group, ri.plural, url_name));
        }
    }
    set_gvk(ri, &mut new);
    {
        let md = meta::metadata_mut(&mut new);
        md.insert("name".into(), json!(url_name));
        md.remove("generateName");
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generateName",
        ] {
            match meta::metadata(cur).and_then(|m| m.get(f)) {
                Some(v) => {
                    md.insert(f.into(), v.clone());
                }
                None => {
                    md.remove(f);
                }
            }
        }
    }
    match sub {
        Some("status") | Some("approval") => strategy::prepare_for_status_update(&mut new, cur),
        Some("finalize") => {
            let fins = new.pointer("/spec/finalizers").cloned();
            let mut merged = cur.clone();
            if let Some(spec) = merged.get_mut("spec").and_then(Value::as_object_mut) {
                match fins {
                    Some(f) => spec.insert("finalizers".into(), f),
                    None => spec.remove("finalizers"),
                };
            }
            new = merged;
        }
        _ => {
            strategy::prepare_for_update(ri, &mut new, cur);
            let old_ip = cur.pointer("/spec/clusterIP").cloned();
            if ri.plural == "services" && ri.group.is_empty() {
                let new_ip = new.pointer("/spec/clusterIP").cloned();
                match (&old_ip, new_ip) {
                    (Some(o), None) => {
                        if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                            spec.insert("clusterIP".into(), o.clone());
                            if let Some(ips) = cur.pointer("/spec/clusterIPs") {
                                spec.insert("clusterIPs".into(), ips.clone());
                            }
                        }
                    }
                    (Some(o), Some(n)) if *o != n && n != json!("") => {
                        return Err(ApiError::invalid(
                            "",
                            "Service",
                            url_name,
                            vec![Cause::invalid(
                                "spec.clusterIPs[0]",
                                &n,
                                "may not change once set",
                            )],
                        ));
                    }
                    _ => {}
                }
            }
        }
    }
    let mut causes = strategy::validate(ri, &new);
    if ri.plural == "services" && ri.group.is_empty() && sub.is_none() {
        causes.retain(|c| c.field != "spec.clusterIP");
    }
    if sub.is_none() {
        causes.extend(strategy::validate_update(ri, &new, cur));
    }
    if let Some(cr) = cr {
        causes.extend(crd::prepare_and_validate(cr, &mut new, sub));
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid(ri.group, ri.kind, url_name, causes));
    }
    if let Some(m) = manager {
        let now = meta::now_rfc3339();
        let api_version = ri.api_version();
        let sub = sub.filter(|s| *s == "status");
        field_manager(ri, cr, m, &api_version, &now, sub).update(Some(cur), &mut new);
    }
    Ok(new)
}

async fn update(srv: &ApiServer, r: &Req, raw_body: &[u8]) -> Result<Response<Body>, ApiError> {
    let body = negotiate::decode_body(&r.headers, raw_body)?;
    let manager = manager_of(r);
    let cr = r.cr.clone();
    let name = name_of(r).to_string();
    let ns = r.ns.clone();
    let sub = r.sub.clone();
    let ri = r.ri;
    if sub.as_deref() == Some("scale") {
        let replicas = body.pointer("/spec/replicas").and_then(Value::as_i64);
        let rv = meta::resource_version(&body).map(str::to_string);
        return write_scale(srv, r, replicas, rv).await;
    }
    let expected_kind = if sub.as_deref() == Some("finalize") {
        "Namespace"
    } else {
        ri.kind
    };
    check_kind(ri, &body, expected_kind)?;
    let fv = FieldValidation::parse(r.query.field_validation.as_deref())?;
    let dups = fieldvalidation::duplicate_fields(raw_body, is_json(&r.headers), fv);
    let mut body = body;
    let warnings = if sub.is_none() {
        fieldvalidation::unknown_and_duplicate(ri, cr.as_deref(), &mut body, dups, fv)?
    } else {
        Vec::new()
    };
    let (ri, body) = if ri.is_events_view() {
        (core_events()?, kedge_api::events::events_to_core(&body))
    } else if ri.is_hpa_v1_view() {
        (hpa_storage()?, kedge_api::hpa::v1_to_v2(&body))
    } else {
        (ri, body)
    };
    if r.query.dry_run {
        let (_, cur) = fetch(srv, ri, ns.as_deref(), &name)?;
        let new = apply_update(
            ri,
            cr.as_deref(),
            sub.as_deref(),
            ns.as_deref(),
            &name,
            body,
            &cur,
            Some(&manager),
        )?;
        return Ok(negotiate::respond(StatusCode::OK, r.out, &view(r.ri, new)));
    }
    let stored = guaranteed_update(srv, ri, ns.as_deref(), &name, |cur| {
        apply_update(
            ri,
            cr.as_deref(),
            sub.as_deref(),
            ns.as_deref(),
            &name,
            body.clone(),
            &cur,
            Some(&manager),
        )
    })
    .await?;
    Ok(with_warnings(
        respond_stored(r, StatusCode::OK, stored)?,
        &warnings,
    ))
}

/// Set the replicas of a scalable object and answer with its Scale.
async fn write_scale(
    srv: &ApiServer,
    r: &Req,
    replicas: Option<i64>,
    rv: Option<String>,
) -> Result<Response<Body>, ApiError> {
    let stored = scale_update(
        srv,
        r.ri,
        ns_of(r),
        name_of(r),
        replicas,
        rv,
        r.query.dry_run,
        &manager_of(r),
    )
    .await?;
    Ok(negotiate::respond(
        StatusCode::OK,
        r.out,
        &to_scale(r.ri, r.cr.as_deref(), &stored)?,
    ))
}

#[allow(clippy::too_many_arguments)]
async fn scale_update(
    srv: &ApiServer,
    ri: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    replicas: Option<i64>,
    rv: Option<String>,
    dry_run: bool,
    manager: &str,
) -> Result<Value, ApiError> {
    let Some(n) = replicas else {
        return Err(ApiError::invalid(
            "autoscaling",
            "Scale",
            name,
            vec![Cause::required("spec.replicas")],
        ));
    };
    if n < 0 {
        return Err(ApiError::invalid(
            "autoscaling",
            "Scale",
            name,
            vec![Cause::invalid(
                "spec.replicas",
                &json!(n),
                "must be greater than or equal to 0",
            )],
        ));
    }
    let cr = srv.crds.of(ri);
    let spec_path = scale_paths(cr.as_deref()).0;
    let f = |mut cur: Value| {
        if let Some(rv) = rv.as_deref().filter(|s| !s.is_empty()) {
            if Some(rv) != meta::resource_version(&cur) {
                return Err(ApiError::modified(ri.group, ri.plural, name));
            }
        }
        let old = cur.clone();
        set_pointer(&mut cur, &spec_path, json!(n));
        strategy::prepare_for_update(ri, &mut cur, &old);
        // The scaler owns the replicas field, recorded against the scale
        // subresource as upstream does.
        let now = meta::now_rfc3339();
        let api_version = ri.api_version();
        field_manager(
            ri,
            cr.as_deref(),
            manager,
            &api_version,
            &now,
            Some("scale"),
        )
        .update(Some(&old), &mut cur);
        Ok(cur)
    };
    if dry_run {
        let (_, cur) = fetch(srv, ri, ns, name)?;
        return f(cur);
    }
    let stored = guaranteed_update(srv, ri, ns, name, f).await?;
    parse_stored(&stored)
}

/// JSON pointers of (spec replicas, status replicas, label selector) for the
/// scale subresource.
fn scale_paths(cr: Option<&CustomResource>) -> (String, String, Option<String>) {
    let ptr = |p: &str| format!("/{}", p.trim_start_matches('.').replace('.', "/"));
    match cr.and_then(|c| c.scale.as_ref()) {
        Some(s) => (
            ptr(&s.spec_replicas),
            ptr(&s.status_replicas),
            s.label_selector.as_deref().map(ptr),
        ),
        None => ("/spec/replicas".into(), "/status/replicas".into(), None),
    }
}

/// Set a value at a JSON pointer, creating objects on the way.
fn set_pointer(obj: &mut Value, ptr: &str, v: Value) {
    let mut cur = obj;
    let parts: Vec<&str> = ptr.trim_start_matches('/').split('/').collect();
    for (i, p) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let Some(m) = cur.as_object_mut() else { return };
        if i + 1 == parts.len() {
            m.insert((*p).to_string(), v);
            return;
        }
        cur = m.entry((*p).to_string()).or_insert_with(|| json!({}));
    }
}

/// The stored core Events resource (both Event APIs store there).
fn core_events() -> Result<&'static ResourceInfo, ApiError> {
    registry::lookup("", "v1", "events").ok_or_else(|| ApiError::internal("events not registered"))
}

/// The stored autoscaling/v2 HorizontalPodAutoscalers (v1 is a view).
fn hpa_storage() -> Result<&'static ResourceInfo, ApiError> {
    registry::lookup("autoscaling", "v2", "horizontalpodautoscalers")
        .ok_or_else(|| ApiError::internal("horizontalpodautoscalers not registered"))
}

/// Respond with a stored object as this request's resource presents it.
fn respond_stored(r: &Req, status: StatusCode, stored: Stored) -> Result<Response<Body>, ApiError> {
    if raw_is_view(r) {
        return Ok(negotiate::respond_raw(status, r.out, stored.value));
    }
    Ok(negotiate::respond(
        status,
        r.out,
        &view(r.ri, parse_stored(&stored)?),
    ))
}

/// Whether stored bytes are exactly what this resource's clients see.
pub(crate) fn raw_is_view(r: &Req) -> bool {
    r.cr.is_none() && !r.ri.is_events_view() && !r.ri.is_hpa_v1_view()
}

/// A stored object as this resource presents it: `events.k8s.io` Events are
/// converted from the stored core form; custom objects (conversion `None`)
/// show the requested version.
pub(crate) fn view(ri: &ResourceInfo, obj: Value) -> Value {
    if ri.is_events_view() {
        return kedge_api::events::core_to_events(&obj);
    }
    if ri.is_hpa_v1_view() {
        return kedge_api::hpa::v2_to_v1(&obj);
    }
    let mut obj = obj;
    let want = ri.api_version();
    if obj.get("apiVersion").and_then(Value::as_str) != Some(want.as_str()) {
        if let Some(o) = obj.as_object_mut() {
            o.insert("apiVersion".into(), json!(want));
        }
    }
    obj
}

/// The autoscaling/v1 Scale view of a scalable object.
fn to_scale(
    ri: &ResourceInfo,
    cr: Option<&CustomResource>,
    obj: &Value,
) -> Result<Value, ApiError> {
    let (spec_p, status_p, sel_p) = scale_paths(cr);
    if cr.is_some() {
        let mut smd = Map::new();
        for f in [
            "name",
            "namespace",
            "uid",
            "resourceVersion",
            "creationTimestamp",
        ] {
            if let Some(v) = meta::metadata(obj).and_then(|m| m.get(f)) {
                smd.insert(f.into(), v.clone());
            }
        }
        let selector = sel_p
            .and_then(|p| obj.pointer(&p).and_then(Value::as_str).map(str::to_string))
            .unwrap_or_default();
        return Ok(json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": smd,
            "spec": {"replicas": obj.pointer(&spec_p).cloned().unwrap_or(json!(0))},
            "status": {"replicas": obj.pointer(&status_p).cloned().unwrap_or(json!(0)), "selector": selector},
        }));
    }
    let md = meta::metadata(obj).cloned().unwrap_or_default();
    let mut smd = Map::new();
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = md.get(f) {
            smd.insert(f.into(), v.clone());
        }
    }
    let selector = match obj.pointer("/spec/selector") {
        Some(s) if ri.plural == "replicationcontrollers" => {
            let m = s.as_object().cloned().unwrap_or_default();
            let sel = json!({"matchLabels": m});
            kedge_api::selectors::label_selector_from_json(&sel)
                .map(|s| s.to_string())
                .unwrap_or_default()
        }
        Some(s) => kedge_api::selectors::label_selector_from_json(s)
            .map(|s| s.to_string())
            .unwrap_or_default(),
        None => String::new(),
    };
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": smd,
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector},
    }))
}

/// RFC 7396 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// What a patch applies to: the kind whose schema drives strategic merge
/// patch, and whether it is a custom resource (which upstream does not
/// strategic-merge-patch).
struct PatchTarget<'a> {
    group: &'a str,
    version: &'a str,
    kind: &'a str,
    custom: bool,
}

fn apply_patch(
    headers: &HeaderMap,
    body: &[u8],
    cur: &Value,
    target: &PatchTarget<'_>,
) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    let parse = || -> Result<Value, ApiError> {
        let p: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
        if !p.is_object() {
            return Err(ApiError::bad_request(
                "error decoding patch: the patch must be a JSON object",
            ));
        }
        Ok(p)
    };
    let unsupported = |accepted: &str| {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: {accepted}"),
        )
    };
    match essence {
        "application/json-patch+json" => {
            let p: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            let mut v = cur.clone();
            json_patch::patch(&mut v, &p).map_err(|e| {
                ApiError::new(422, "Invalid", format!("the server rejected our request due to an error in our request: {e}"))
            })?;
            Ok(v)
        }
        "application/merge-patch+json" => {
            let p = parse()?;
            let mut v = cur.clone();
            merge_patch(&mut v, &p);
            Ok(v)
        }
        "application/strategic-merge-patch+json" if target.custom => Err(unsupported(
            "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        )),
        "application/strategic-merge-patch+json" => {
            let p = parse()?;
            let schema = kedge_api::patch_meta::root(target.group, target.version, target.kind);
            Ok(kedge_api::smp::strategic_merge_patch(cur, &p, schema)?)
        }
        _ => Err(unsupported(
            "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml",
        )),
    }
}

/// Server-side apply: PATCH with `application/apply-patch+yaml`.
async fn server_side_apply(
    srv: &ApiServer,
    r: &Req,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let ri = r.ri;
    let sub = match r.sub.as_deref() {
        None => None,
        Some("status") => Some("status"),
        Some(_) => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json",
            ))
        }
    };
    if ri.is_events_view() {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            "server-side apply of events.k8s.io Events is not supported: apply the core/v1 Event",
        ));
    }
    if ri.is_hpa_v1_view() {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            "server-side apply of autoscaling/v1 HorizontalPodAutoscalers is not supported: apply autoscaling/v2",
        ));
    }
    let manager = r
        .query
        .field_manager
        .clone()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(
                "meta.k8s.io",
                "PatchOptions",
                "",
                vec![Cause::required_msg(
                    "fieldManager",
                    "is required for apply patch",
                )],
            )
        })?;
    let fv = FieldValidation::parse(r.query.field_validation.as_deref())?;
    let mut warnings = Vec::new();
    if fv != FieldValidation::Ignore {
        if let Some(dup) = fieldvalidation::yaml_duplicate(body) {
            if fv == FieldValidation::Strict {
                return Err(ApiError::bad_request(format!(
                    "error converting YAML to JSON: yaml: unmarshal errors:\n  {dup}"
                )));
            }
            warnings.push(dup);
        }
    }
    let mut applied: Value = serde_yaml::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !applied.is_object() {
        return Err(ApiError::bad_request(
            "error decoding YAML: the applied configuration must be an object",
        ));
    }
    let name = name_of(r).to_string();
    let body_name = meta::name(&applied).to_string();
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    // Unknown fields of an applied configuration are worded as upstream's
    // typed-patch conversion words them.
    let original = applied.clone();
    match fieldvalidation::unknown_fields(ri, r.cr.as_deref(), &mut applied, fv) {
        Ok(w) => warnings.extend(w),
        Err(_) => {
            let mut probe = original;
            let paths = fieldvalidation::unknown_fields(
                ri,
                r.cr.as_deref(),
                &mut probe,
                FieldValidation::Warn,
            )?;
            let errors: Vec<String> = paths
                .iter()
                .filter_map(|p| p.split('"').nth(1))
                .map(|p| format!(".{p}: field not declared in schema"))
                .collect();
            let detail = match errors.as_slice() {
                [one] => one.clone(),
                many => format!("errors:\n  {}", many.join("\n  ")),
            };
            let gvk = if ri.group.is_empty() {
                format!("/{}, Kind={}", ri.version, ri.kind)
            } else {
                format!("{}/{}, Kind={}", ri.group, ri.version, ri.kind)
            };
            return Err(ApiError::bad_request(format!(
                "failed to create typed patch object ({gvk}): {detail}"
            )));
        }
    }
    let ns = r.ns.clone();
    let cr = r.cr.clone();
    let now = meta::now_rfc3339();
    let api_version = ri.api_version();
    let force = r.query.force;
    match fetch(srv, ri, ns.as_deref(), &name) {
        Err(e) if e.code == 404 && sub.is_none() => {
            let fm = field_manager(ri, cr.as_deref(), &manager, &api_version, &now, None);
            let merged = fm.apply(None, &applied, force)?;
            let created =
                create_object(srv, ri, ns.as_deref(), merged, r.query.dry_run, None).await?;
            let resp = match created {
                Created::Stored(s) => respond_stored(r, StatusCode::CREATED, s)?,
                Created::DryRun(v) => negotiate::respond(StatusCode::CREATED, r.out, &v),
            };
            return Ok(with_warnings(resp, &warnings));
        }
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    let f = |cur: Value| {
        let fm = field_manager(ri, cr.as_deref(), &manager, &api_version, &now, sub);
        let merged = fm.apply(Some(&cur), &applied, force)?;
        apply_update(
            ri,
            cr.as_deref(),
            sub,
            ns.as_deref(),
            &name,
            merged,
            &cur,
            None,
        )
    };
    if r.query.dry_run {
        let (_, cur) = fetch(srv, ri, ns.as_deref(), &name)?;
        return Ok(negotiate::respond(StatusCode::OK, r.out, &f(cur)?));
    }
    let stored = guaranteed_update(srv, ri, ns.as_deref(), &name, f).await?;
    Ok(with_warnings(
        respond_stored(r, StatusCode::OK, stored)?,
        &warnings,
    ))
}

async fn patch(srv: &ApiServer, r: &Req, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let is_apply = r
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';').next().unwrap_or("").trim() == "application/apply-patch+yaml"
        });
    if is_apply {
        return server_side_apply(srv, r, body).await;
    }
    if r.query.force {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            vec![Cause::forbidden(
                "force",
                "may not be specified for non-apply patch",
            )],
        ));
    }
    let name = name_of(r).to_string();
    let ns = r.ns.clone();
    let ri = r.ri;
    let sub = r.sub.clone();
    if sub.as_deref() == Some("scale") {
        let (_, cur) = fetch(srv, ri, ns.as_deref(), &name)?;
        let scale = to_scale(ri, r.cr.as_deref(), &cur)?;
        let target = PatchTarget {
            group: "autoscaling",
            version: "v1",
            kind: "Scale",
            custom: false,
        };
        let patched = apply_patch(&r.headers, body, &scale, &target)?;
        let replicas = patched.pointer("/spec/replicas").and_then(Value::as_i64);
        let rv = meta::resource_version(&patched)
            .filter(|rv| Some(*rv) != meta::resource_version(&scale))
            .map(str::to_string);
        return write_scale(srv, r, replicas, rv).await;
    }
    let headers = r.headers.clone();
    let body = body.to_vec();
    let shown_ri = ri;
    let cr = r.cr.clone();
    let manager = manager_of(r);
    let fv = FieldValidation::parse(r.query.field_validation.as_deref())?;
    let warnings = std::sync::Mutex::new(Vec::new());
    let custom = r.cr.is_some();
    let events = ri.is_events_view();
    let hpa_v1 = ri.is_hpa_v1_view();
    let ri = if events {
        core_events()?
    } else if hpa_v1 {
        hpa_storage()?
    } else {
        ri
    };
    let f = |cur: Value| {
        let shown = view(shown_ri, cur.clone());
        let target = PatchTarget {
            group: shown_ri.group,
            version: shown_ri.version,
            kind: shown_ri.kind,
            custom,
        };
        let patched = apply_patch(&headers, &body, &shown, &target)?;
        check_kind(
            shown_ri,
            &patched,
            if sub.as_deref() == Some("finalize") {
                "Namespace"
            } else {
                shown_ri.kind
            },
        )?;
        let mut patched = patched;
        if sub.is_none() {
            let w = fieldvalidation::unknown_fields(shown_ri, cr.as_deref(), &mut patched, fv)?;
            *warnings.lock().unwrap_or_else(|p| p.into_inner()) = w;
        }
        let patched = if events {
            kedge_api::events::events_to_core(&patched)
        } else if hpa_v1 {
            kedge_api::hpa::v1_to_v2(&patched)
        } else {
            patched
        };
        apply_update(
            ri,
            cr.as_deref(),
            sub.as_deref(),
            ns.as_deref(),
            &name,
            patched,
            &cur,
            Some(&manager),
        )
    };
    if r.query.dry_run {
        let (_, cur) = fetch(srv, ri, ns.as_deref(), &name)?;
        return Ok(negotiate::respond(
            StatusCode::OK,
            r.out,
            &view(r.ri, f(cur)?),
        ));
    }
    let stored = guaranteed_update(srv, ri, ns.as_deref(), &name, f).await?;
    let w = std::mem::take(&mut *warnings.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(with_warnings(
        respond_stored(r, StatusCode::OK, stored)?,
        &w,
    ))
}

/// DeleteOptions from the body (if any) and the query.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeleteOptions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
    /// `Orphan`, `Background` or `Foreground`; `None` = the kind's default.
    pub propagation: Option<String>,
    pub grace_period: Option<i64>,
}

fn delete_options(headers: &HeaderMap, body: &[u8], q: &Query) -> Result<DeleteOptions, ApiError> {
    let mut o = DeleteOptions {
        dry_run: q.dry_run,
        propagation: q.propagation_policy.clone(),
        grace_period: q.grace_period_seconds,
        ..Default::default()
    };
    if !body.iter().all(u8::is_ascii_whitespace) {
        let v = negotiate::decode_body(headers, body)?;
        if let Some(k) = v.get("kind").and_then(Value::as_str) {
            if k != "DeleteOptions" {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind (DeleteOptions)"
                )));
            }
        }
        o.uid = v
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        o.resource_version = v
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(Value::Array(d)) = v.get("dryRun") {
            o.dry_run |= d.iter().any(|x| x == "All");
        }
        if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
            o.propagation = Some(p.to_string());
        }
        if let Some(orphan) = v.get("orphanDependents").and_then(Value::as_bool) {
            if o.propagation.is_some() {
                return Err(invalid_delete_options(Cause::invalid(
                    "propagationPolicy",
                    &json!(o.propagation),
                    "orphanDependents and deletionPropagation cannot be both set",
                )));
            }
            o.propagation = Some(if orphan { "Orphan" } else { "Background" }.to_string());
        }
        if let Some(g) = v.get("gracePeriodSeconds").and_then(Value::as_i64) {
            o.grace_period = Some(g);
        }
    }
    if let Some(p) = &o.propagation {
        if !["Orphan", "Background", "Foreground"].contains(&p.as_str()) {
            return Err(invalid_delete_options(Cause::not_supported(
                "propagationPolicy",
                &json!(p),
                &["Foreground", "Background", "Orphan", "nil"],
            )));
        }
    }
    if o.grace_period.is_some_and(|g| g < 0) {
        return Err(invalid_delete_options(Cause::invalid(
            "gracePeriodSeconds",
            &json!(o.grace_period),
            "must be greater than or equal to 0",
        )));
    }
    Ok(o)
}

/// A 422 for bad DeleteOptions.
fn invalid_delete_options(cause: Cause) -> ApiError {
    ApiError::invalid("meta.k8s.io", "DeleteOptions", "", vec![cause])
}

/// Kinds whose DELETE answers with the deleted object rather than a Status.
fn returns_deleted_object(ri: &ResourceInfo) -> bool {
    ri.group.is_empty() && matches!(ri.plural, "pods" | "services" | "namespaces")
}

/// Whether something still holds the object after its deletion was asked:
/// `metadata.finalizers`, or for namespaces `spec.finalizers`.
pub(crate) fn held_by_finalizers(ri: &ResourceInfo, obj: &Value) -> bool {
    if !meta::finalizers(obj).is_empty() {
        return true;
    }
    is_namespace(ri)
        && obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
}

fn is_namespace(ri: &ResourceInfo) -> bool {
    ri.group.is_empty() && ri.plural == "namespaces"
}

async fn delete(srv: &ApiServer, r: &Req, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let opts = delete_options(&r.headers, body, &r.query)?;
    let (status, v) = delete_object(srv, r.ri, ns_of(r), name_of(r), &opts).await?;
    // A deleted (or finalizer-held) object is shown as this resource's view.
    let v = if v.get("kind").and_then(Value::as_str) == Some("Status") {
        v
    } else {
        view(r.ri, v)
    };
    Ok(negotiate::respond(status, r.out, &v))
}

/// Delete an object with upstream's semantics: preconditions, finalizers
/// (orphan and foreground propagation become finalizers the garbage
/// collector honours), graceful deletion of pods bound to a node, and
/// namespaces that terminate before they go.
pub(crate) async fn delete_object(
    srv: &ApiServer,
    ri: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    opts: &DeleteOptions,
) -> Result<(StatusCode, Value), ApiError> {
    if is_namespace(ri) && crate::bootstrap::PROTECTED_NAMESPACES.contains(&name) {
        return Err(ApiError::forbidden(
            "",
            "namespaces",
            name,
            "this namespace may not be deleted",
        ));
    }
    let key = ri.key(ns, name);
    for _ in 0..16 {
        let (cur, mut obj) = fetch(srv, ri, ns, name)?;
        if let Some(uid) = &opts.uid {
            if uid != meta::uid(&obj) {
                return Err(ApiError::conflict(
                    ri.group,
                    ri.plural,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta::uid(&obj)
                    ),
                ));
            }
        }
        if let Some(rv) = &opts.resource_version {
            if Some(rv.as_str()) != meta::resource_version(&obj) {
                return Err(ApiError::conflict(ri.group, ri.plural, name, &format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}", meta::resource_version(&obj).unwrap_or(""))));
            }
        }
        let before = obj.clone();
        let policy = opts.propagation.clone().unwrap_or_else(|| {
            // batch/v1 Jobs keep upstream's legacy default: orphan their pods.
            if ri.group == "batch" && ri.plural == "jobs" {
                "Orphan"
            } else {
                "Background"
            }
            .to_string()
        });
        let wanted_finalizer = match policy.as_str() {
            "Orphan" => Some(crate::lifecycle::ORPHAN_FINALIZER),
            "Foreground" => Some(crate::lifecycle::FOREGROUND_FINALIZER),
            _ => None,
        };
        let now = jiff::Timestamp::now();
        let already = meta::deletion_timestamp(&obj).is_some();
        // Pods on a node get a grace period for their agent to stop them.
        let pod_grace = (ri.group.is_empty() && ri.plural == "pods")
            .then(|| {
                let bound = obj
                    .pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .is_some_and(|n| !n.is_empty());
                let terminal = matches!(
                    obj.pointer("/status/phase").and_then(Value::as_str),
                    Some("Succeeded" | "Failed")
                );
                let g = opts.grace_period.unwrap_or_else(|| {
                    obj.pointer("/spec/terminationGracePeriodSeconds")
                        .and_then(Value::as_i64)
                        .unwrap_or(30)
                });
                (bound && !terminal && g > 0).then_some(g)
            })
            .flatten();
        {
            let md = meta::metadata_mut(&mut obj);
            if let Some(f) = wanted_finalizer {
                let fins = md.entry("finalizers").or_insert_with(|| json!([]));
                if let Value::Array(a) = fins {
                    if !a.iter().any(|x| x == f) {
                        a.push(json!(f));
                    }
                }
            }
            if let Some(g) = pod_grace {
                let shorter = md
                    .get("deletionGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .is_none_or(|old| g < old);
                if !already || shorter {
                    let at = now
                        .checked_add(jiff::SignedDuration::from_secs(g))
                        .unwrap_or(now);
                    md.insert(
                        "deletionTimestamp".into(),
                        json!(format!("{}", at.round(jiff::Unit::Second).unwrap_or(at))),
                    );
                    md.insert("deletionGracePeriodSeconds".into(), json!(g));
                }
            } else if !already {
                md.insert("deletionTimestamp".into(), json!(meta::now_rfc3339()));
                md.insert("deletionGracePeriodSeconds".into(), json!(0));
            }
        }
        if is_namespace(ri) {
            if let Some(o) = obj.as_object_mut() {
                let st = o.entry("status").or_insert_with(|| json!({}));
                if let Some(st) = st.as_object_mut() {
                    st.insert("phase".into(), json!("Terminating"));
                }
            }
        }
        if held_by_finalizers(ri, &obj) || pod_grace.is_some() {
            if opts.dry_run || obj == before {
                return Ok((StatusCode::OK, obj));
            }
            match srv.store.update(&key, obj, Some(cur.revision)).await {
                Ok(s) => return Ok((StatusCode::OK, parse_stored(&s)?)),
                Err(kedge_store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(store_err(ri, name, e)),
            }
        }
        if opts.dry_run {
            return Ok((StatusCode::OK, obj));
        }
        match srv.store.delete(&key, Some(cur.revision)).await {
            Ok(s) => {
                let last = parse_stored(&s)?;
                if returns_deleted_object(ri) {
                    return Ok((StatusCode::OK, last));
                }
                return Ok((
                    StatusCode::OK,
                    success_status(ri.group, ri.plural, name, meta::uid(&last)),
                ));
            }
            Err(kedge_store::Error::Conflict { .. }) => continue,
            Err(e) => return Err(store_err(ri, name, e)),
        }
    }
    Err(ApiError::modified(ri.group, ri.plural, name))
}

async fn delete_collection(
    srv: &ApiServer,
    r: &Req,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let opts = delete_options(&r.headers, body, &r.query)?;
    let filter = Filter::new(r.ri, &r.query, None)?;
    let mut q = r.query.clone();
    q.limit = 0;
    q.continue_token = None;
    let res = list_items(srv, r.ri, ns_of(r), &q, &filter)?;
    let mut deleted = Vec::new();
    for s in &res.items {
        let obj = parse_stored(s)?;
        let name = meta::name(&obj).to_string();
        let ns = meta::namespace(&obj).map(str::to_string);
        match delete_object(srv, r.ri, ns.as_deref(), &name, &opts).await {
            Ok(_) => deleted.push(view(r.ri, obj)),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let v = json!({
        "kind": r.ri.list_kind(),
        "apiVersion": r.ri.api_version(),
        "metadata": {"resourceVersion": srv.store.revision().to_string()},
        "items": deleted,
    });
    Ok(negotiate::respond(StatusCode::OK, r.out, &v))
}
