//! Custom resources: the registry of resources that CustomResourceDefinitions
//! add, and the in-process CRD controller that keeps it current, sets the
//! CRDs' status conditions and cleans up custom objects when a CRD goes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use kedge_api::crd_schema::StructuralSchema;
use kedge_api::registry::{self, NameRule, ResourceInfo};
use kedge_api::status::Cause;
use kedge_api::{meta, ApiError};
use kedge_store::Store;
use serde_json::{json, Value};

use crate::handler::{self, guaranteed_update, parse_stored};
use crate::server::ApiServer;

/// The finalizer that makes a CRD wait until its custom objects are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// An `additionalPrinterColumns` entry.
#[derive(Debug, Clone)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

/// Paths of the `scale` subresource.
#[derive(Debug, Clone)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// One served version of a custom resource.
#[derive(Debug)]
pub struct CustomResource {
    pub ri: &'static ResourceInfo,
    /// The structural schema of this version (validated when the CRD was written).
    pub schema: Option<StructuralSchema>,
    /// The version's `openAPIV3Schema` as written, for the OpenAPI documents.
    pub raw_schema: Option<Value>,
    pub columns: Vec<PrinterColumn>,
    pub scale: Option<ScalePaths>,
    /// The CRD is being deleted: no new objects.
    pub terminating: bool,
}

/// Served custom resources, by (group, version, plural).
#[derive(Default)]
pub struct CrdRegistry {
    by_gvr: RwLock<HashMap<(String, String, String), Arc<CustomResource>>>,
}

impl CrdRegistry {
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<CustomResource>> {
        let m = self.by_gvr.read().unwrap_or_else(|p| p.into_inner());
        m.get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// The custom resource behind `ri`, if it is one.
    pub fn of(&self, ri: &ResourceInfo) -> Option<Arc<CustomResource>> {
        self.get(ri.group, ri.version, ri.plural)
    }

    pub fn all(&self) -> Vec<Arc<CustomResource>> {
        let m = self.by_gvr.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = m.values().cloned().collect();
        v.sort_by(|a, b| {
            (a.ri.group, a.ri.plural, a.ri.version).cmp(&(b.ri.group, b.ri.plural, b.ri.version))
        });
        v
    }

    fn replace(&self, entries: Vec<Arc<CustomResource>>) {
        let map = entries
            .into_iter()
            .map(|e| {
                (
                    (
                        e.ri.group.to_string(),
                        e.ri.version.to_string(),
                        e.ri.plural.to_string(),
                    ),
                    e,
                )
            })
            .collect();
        *self.by_gvr.write().unwrap_or_else(|p| p.into_inner()) = map;
    }
}

/// `ResourceInfo` needs `'static` strings. Custom resources are few and
/// change rarely, so their descriptions are leaked once and interned: the
/// same CRD definition, re-created, reuses its entry.
fn intern(ri: ResourceInfo) -> &'static ResourceInfo {
    static TABLE: OnceLock<Mutex<HashMap<String, &'static ResourceInfo>>> = OnceLock::new();
    let key = format!("{ri:?}");
    let mut t = TABLE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(found) = t.get(&key) {
        return found;
    }
    let leaked: &'static ResourceInfo = Box::leak(Box::new(ri));
    t.insert(key, leaked);
    leaked
}

fn leak_str(s: &str) -> &'static str {
    static STRS: OnceLock<Mutex<HashMap<String, &'static str>>> = OnceLock::new();
    let mut t = STRS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(f) = t.get(s) {
        return f;
    }
    let l: &'static str = Box::leak(s.to_string().into_boxed_str());
    t.insert(s.to_string(), l);
    l
}

fn leak_list(v: Option<&Value>) -> &'static [&'static str] {
    let items: Vec<&'static str> = v
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(leak_str).collect())
        .unwrap_or_default();
    if items.is_empty() {
        return &[];
    }
    Box::leak(items.into_boxed_slice())
}

/// The served versions of one CRD object.
fn resources_of(crd: &Value) -> Vec<Arc<CustomResource>> {
    let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
    let s = |p: &str| {
        spec.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let group = s("/group");
    let plural = s("/names/plural");
    let kind = s("/names/kind");
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return vec![];
    }
    let singular = match s("/names/singular") {
        x if x.is_empty() => kind.to_lowercase(),
        x => x,
    };
    let namespaced = s("/scope") != "Cluster";
    let terminating = meta::deletion_timestamp(crd).is_some();
    let mut out = Vec::new();
    for v in spec
        .get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if v.get("served") != Some(&json!(true)) {
            continue;
        }
        let Some(version) = v.get("name").and_then(Value::as_str) else {
            continue;
        };
        let subs_v = v.get("subresources");
        let mut subs: Vec<&'static str> = Vec::new();
        if subs_v.and_then(|x| x.get("status")).is_some() {
            subs.push("status");
        }
        let scale = subs_v.and_then(|x| x.get("scale")).map(|sc| ScalePaths {
            spec_replicas: sc
                .get("specReplicasPath")
                .and_then(Value::as_str)
                .unwrap_or(".spec.replicas")
                .to_string(),
            status_replicas: sc
                .get("statusReplicasPath")
                .and_then(Value::as_str)
                .unwrap_or(".status.replicas")
                .to_string(),
            label_selector: sc
                .get("labelSelectorPath")
                .and_then(Value::as_str)
                .map(str::to_string),
        });
        if scale.is_some() {
            subs.push("scale");
        }
        let ri = intern(ResourceInfo {
            group: leak_str(&group),
            version: leak_str(version),
            kind: leak_str(&kind),
            plural: leak_str(&plural),
            singular: leak_str(&singular),
            namespaced,
            short_names: leak_list(spec.pointer("/names/shortNames")),
            categories: leak_list(spec.pointer("/names/categories")),
            subresources: if subs.is_empty() {
                &[]
            } else {
                Box::leak(subs.into_boxed_slice())
            },
            has_generation: true,
            name_rule: NameRule::Subdomain,
        });
        let columns = v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .map(|cols| {
                cols.iter()
                    .map(|c| {
                        let g =
                            |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                        PrinterColumn {
                            name: g("name"),
                            type_: g("type"),
                            format: g("format"),
                            description: g("description"),
                            priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                            json_path: g("jsonPath"),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Arc::new(CustomResource {
            ri,
            schema: v
                .pointer("/schema/openAPIV3Schema")
                .and_then(|s| StructuralSchema::from_json(s, "openAPIV3Schema").ok()),
            raw_schema: v.pointer("/schema/openAPIV3Schema").cloned(),
            columns,
            scale,
            terminating,
        }));
    }
    out
}

fn crds_ri() -> &'static ResourceInfo {
    // Registered statically; the lookup cannot fail.
    registry::lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .unwrap_or(&registry::RESOURCES[0])
}

/// What a CRD's status should say once its names are accepted.
fn desired_status(crd: &Value) -> Value {
    let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
    let mut names = spec.get("names").cloned().unwrap_or_else(|| json!({}));
    if let Some(n) = names.as_object_mut() {
        let kind = n
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        n.entry("singular")
            .or_insert_with(|| json!(kind.to_lowercase()));
        n.entry("listKind")
            .or_insert_with(|| json!(format!("{kind}List")));
    }
    let storage: Vec<Value> = spec
        .get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("storage") == Some(&json!(true)))
        .filter_map(|v| v.get("name").cloned())
        .collect();
    let mut stored: Vec<Value> = crd
        .pointer("/status/storedVersions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for s in storage {
        if !stored.contains(&s) {
            stored.push(s);
        }
    }
    let now = meta::now_rfc3339();
    let keep_time = |t: &str| -> String {
        crd.pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == t && c["status"] == "True"))
            .and_then(|c| c["lastTransitionTime"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| now.clone())
    };
    let mut conditions = vec![
        json!({"type": "NamesAccepted", "status": "True", "lastTransitionTime": keep_time("NamesAccepted"), "reason": "NoConflicts", "message": "no conflicts found"}),
        json!({"type": "Established", "status": "True", "lastTransitionTime": keep_time("Established"), "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"}),
    ];
    if meta::deletion_timestamp(crd).is_some() {
        conditions.push(json!({"type": "Terminating", "status": "True", "lastTransitionTime": keep_time("Terminating"), "reason": "InstanceDeletionInProgress", "message": "CustomResourceDefinition marked for deletion; deleting custom objects"}));
    }
    json!({"conditions": conditions, "acceptedNames": names, "storedVersions": stored})
}

/// Bring the registry and every CRD's status up to date; delete the objects
/// of CRDs being deleted. Returns whether some CRD is still terminating.
pub async fn sync(srv: &ApiServer) -> Result<bool, ApiError> {
    let ri = crds_ri();
    let page = srv
        .store
        .list(&ri.list_prefix(None), None, 0)
        .map_err(|e| handler::store_err(ri, "", e))?;
    let mut entries = Vec::new();
    let mut terminating = false;
    let mut crds = Vec::new();
    for s in &page.items {
        let crd = parse_stored(s)?;
        entries.extend(resources_of(&crd));
        crds.push(crd);
    }
    // Conditions first, so that a resource is never served by a CRD that
    // does not say Established yet.
    for crd in &crds {
        let name = meta::name(crd).to_string();
        if crd.get("status") != Some(&desired_status(crd)) {
            let r = guaranteed_update(srv, ri, None, &name, |mut cur| {
                let st = desired_status(&cur);
                if let Some(o) = cur.as_object_mut() {
                    o.insert("status".into(), st);
                }
                Ok(cur)
            })
            .await;
            if let Err(e) = r {
                if e.code != 404 {
                    tracing::warn!(crd = %name, error = %e.message, "cannot update CRD status");
                }
            }
        }
    }
    srv.crds.replace(entries);
    for crd in crds {
        let name = meta::name(&crd).to_string();
        if meta::deletion_timestamp(&crd).is_some() {
            terminating = true;
            if delete_all_objects(srv, &crd).await? {
                let r = guaranteed_update(srv, ri, None, &name, |mut cur| {
                    if let Some(Value::Array(f)) = cur.pointer_mut("/metadata/finalizers") {
                        f.retain(|x| x != CLEANUP_FINALIZER);
                    }
                    Ok(cur)
                })
                .await;
                if let Err(e) = r {
                    if e.code != 404 {
                        tracing::warn!(crd = %name, error = %e.message, "cannot finalize CRD");
                    }
                }
            }
        }
    }
    Ok(terminating)
}

/// Delete the custom objects of a CRD; true once none are left.
async fn delete_all_objects(srv: &ApiServer, crd: &Value) -> Result<bool, ApiError> {
    let group = crd
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or("");
    let plural = crd
        .pointer("/spec/names/plural")
        .and_then(Value::as_str)
        .unwrap_or("");
    if group.is_empty() || plural.is_empty() {
        return Ok(true);
    }
    let prefix = format!("/{group}/{plural}/");
    let page = srv
        .store
        .list(&prefix, None, 0)
        .map_err(ApiError::internal)?;
    let mut left = 0;
    for s in page.items {
        let obj = parse_stored(&s)?;
        if !meta::finalizers(&obj).is_empty() {
            // Custom finalizers hold their objects: mark them and wait.
            left += 1;
            if meta::deletion_timestamp(&obj).is_none() {
                let mut o = obj.clone();
                meta::metadata_mut(&mut o)
                    .insert("deletionTimestamp".into(), json!(meta::now_rfc3339()));
                let _ = srv.store.update(&s.key, o, Some(s.revision)).await;
            }
            continue;
        }
        match srv.store.delete(&s.key, Some(s.revision)).await {
            Ok(_) | Err(kedge_store::Error::NotFound(_)) => {}
            Err(_) => left += 1,
        }
    }
    Ok(left == 0)
}

/// The CRD controller: re-syncs on every CRD change, and every second while
/// a CRD is terminating.
pub async fn run(srv: Arc<ApiServer>) {
    let prefix = crds_ri().list_prefix(None);
    loop {
        let rev = srv.store.revision();
        let terminating = match sync(&srv).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e.message, "CRD sync failed");
                true
            }
        };
        let mut w = match srv.store.watch(&prefix, rev) {
            Ok(w) => w,
            Err(_) => continue,
        };
        let wait = if terminating {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(300)
        };
        tokio::select! {
            _ = w.next() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Prune unknown fields, apply defaults and validate a custom object against
/// its version's schema, in upstream's order. For the status subresource
/// only `status` is validated.
pub fn prepare_and_validate(cr: &CustomResource, obj: &mut Value, sub: Option<&str>) -> Vec<Cause> {
    let Some(schema) = &cr.schema else {
        return Vec::new();
    };
    schema.prune(obj);
    schema.apply_defaults(obj);
    match sub {
        Some("status") => schema.validate_status(obj),
        _ => schema.validate(obj),
    }
}

/// Evaluate the JSONPath subset printer columns use: `.a.b`, `.a[0]`,
/// `.a[*].b` (first match), and `.a[?(@.k=="v")].b`.
pub fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let p = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim();
    let mut cur = vec![obj];
    let mut rest = p.strip_prefix('$').unwrap_or(p);
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            rest = &r[end..];
            if key.is_empty() {
                continue;
            }
            cur = cur.into_iter().filter_map(|v| v.get(key)).collect();
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            rest = &r[end + 1..];
            let mut next = Vec::new();
            for v in cur {
                let Some(arr) = v.as_array() else { continue };
                if inner == "*" {
                    next.extend(arr.iter());
                } else if let Ok(i) = inner.parse::<i64>() {
                    let idx = if i < 0 { arr.len() as i64 + i } else { i };
                    if let Some(x) = usize::try_from(idx).ok().and_then(|i| arr.get(i)) {
                        next.push(x);
                    }
                } else if let Some(f) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')'))
                {
                    let (k, want) = f.split_once("==")?;
                    let want = want.trim().trim_matches(|c| c == '"' || c == '\'');
                    for x in arr {
                        let got = x.get(k.trim());
                        let matches = match got {
                            Some(Value::String(s)) => s == want,
                            Some(other) => serde_json::to_string(other).is_ok_and(|t| t == want),
                            None => false,
                        };
                        if matches {
                            next.push(x);
                        }
                    }
                }
            }
            cur = next;
        } else {
            return None;
        }
    }
    cur.into_iter().next()
}

/// Columns of a custom resource's Table.
pub fn columns(cr: &CustomResource) -> Value {
    let mut cols = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    if cr.columns.is_empty() {
        cols.push(json!({"name": "Age", "type": "date", "format": "", "description": "CreationTimestamp is a timestamp representing the server time when this object was created.", "priority": 0}));
    }
    for c in &cr.columns {
        cols.push(json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}));
    }
    Value::Array(cols)
}

/// Cells of one row of a custom resource's Table.
pub fn cells(cr: &CustomResource, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let age = |v: Option<&Value>| -> Value {
        match v.and_then(Value::as_str).and_then(meta::parse_time) {
            Some(t) => json!(kedge_api::table::human_duration(now.duration_since(t))),
            None => json!("<unknown>"),
        }
    };
    let mut out = vec![json!(meta::name(obj))];
    if cr.columns.is_empty() {
        out.push(age(obj.pointer("/metadata/creationTimestamp")));
    }
    for c in &cr.columns {
        let v = json_path(obj, &c.json_path);
        out.push(match (c.type_.as_str(), v) {
            (_, None) => Value::Null,
            ("date", v) => age(v),
            ("string", Some(Value::String(s))) => json!(s),
            ("string", Some(other)) => json!(other.to_string()),
            (_, Some(v)) => v.clone(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_path_subset() {
        let o = json!({"spec": {"replicas": 3}, "status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}], "list": [1, 2]}});
        assert_eq!(json_path(&o, ".spec.replicas"), Some(&json!(3)));
        assert_eq!(
            json_path(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            Some(&json!("True"))
        );
        assert_eq!(json_path(&o, ".status.list[1]"), Some(&json!(2)));
        assert_eq!(json_path(&o, ".status.list[-1]"), Some(&json!(2)));
        assert_eq!(
            json_path(&o, ".status.conditions[*].type"),
            Some(&json!("A"))
        );
        assert_eq!(json_path(&o, ".spec.missing"), None);
    }

    #[test]
    fn served_versions_become_resources() {
        let crd = json!({"metadata": {"name": "widgets.example.com"}, "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [
                {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size"}}},
                {"name": "v1beta1", "served": true, "storage": false},
                {"name": "v0", "served": false, "storage": false}]}});
        let rs = resources_of(&crd);
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[0].ri.kind, "Widget");
        assert_eq!(rs[0].ri.singular, "widget");
        assert_eq!(rs[0].ri.short_names, &["wd"]);
        assert_eq!(rs[0].ri.subresources, &["status", "scale"]);
        assert_eq!(
            rs[0].scale.as_ref().map(|s| s.spec_replicas.as_str()),
            Some(".spec.size")
        );
        // The same definition interns to the same entry.
        assert!(std::ptr::eq(resources_of(&crd)[0].ri, rs[0].ri));
        let st = desired_status(&crd);
        assert_eq!(st["acceptedNames"]["listKind"], "WidgetList");
        assert_eq!(st["storedVersions"], json!(["v1"]));
    }
}
