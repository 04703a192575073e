//! Server-side apply and `metadata.managedFields`, with upstream's semantics
//! (`sigs.k8s.io/structured-merge-diff` and
//! `k8s.io/apimachinery/pkg/util/managedfields`), on raw JSON.
//!
//! Two entry points, both on a [`FieldManager`] that describes the request
//! (manager name, the request's `apiVersion` and kind, subresource, time,
//! schema):
//!
//! * [`FieldManager::update`] (also [`managed_fields_on_update`]): for
//!   create, update (PUT) and the non-apply patches, operation `Update`.
//!   Call it with the object about to be stored (after defaulting and the
//!   strategy's changes) and the stored one (`None` on create). The fields
//!   this request changed become the manager's and leave everyone else's.
//! * [`FieldManager::apply`] (also [`apply`]): for
//!   `application/apply-patch+yaml`, operation `Apply`. Returns the new
//!   object (before defaulting, which the caller does), or the conflicts;
//!   [`ApplyError`] converts into the `Status` upstream returns.
//!
//! What fields are and how lists and maps merge comes from an
//! [`SsaSchema`]: [`patch_meta::Schema`] for built-in kinds, a CRD's
//! `openAPIV3Schema` (`&Value`) for custom resources, or [`SchemaRef`], which
//! holds either (and gives a CRD's root the built-in `ObjectMeta`). Without a
//! schema (`None`) every object is a granular map and every list atomic, as
//! upstream's "deduced" type. Lists without `x-kubernetes-list-type` are
//! atomic, except built-in lists with patch strategy `merge`, which are
//! associative by their patch merge key (a set without one), as upstream's
//! schema conversion makes them.
//!
//! ```
//! use kedge_api::ssa::{FieldManager, SchemaRef};
//! use serde_json::json;
//!
//! let schema = SchemaRef::builtin("", "v1", "ConfigMap");
//! let fm = FieldManager::new("kubectl", "v1", "ConfigMap", "2025-01-01T00:00:00Z", schema);
//! let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
//!                 "metadata": {"name": "c", "labels": {"a": "b"}}, "data": {"k": "v"}});
//! let created = fm.apply(None, &cm, false).unwrap();
//! assert_eq!(created["metadata"]["managedFields"][0]["fieldsV1"], json!(
//!     {"f:data": {"f:k": {}}, "f:metadata": {"f:labels": {"f:a": {}}}}));
//! ```
//!
//! Departures from upstream, all where kedge has no Go types to lean on:
//! objects are compared and merged as JSON, so Go's zero values are
//! approximated (the non-pointer struct fields `metadata`, `spec`, `status`,
//! `template`, `jobTemplate`, `strategy`, `updateStrategy` and `resources`
//! of built-in kinds, and their required lists such as `containers`, count
//! as always present); field sets are not converted
//! between API versions (a manager's set is used whatever `apiVersion` it
//! was recorded at); the merged object of an apply drops `null` values of
//! typed fields (upstream's round trip through Go types does the same,
//! including for the maps pruning empties, which upstream leaves `null`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde_json::{json, Map, Value};

use crate::fieldsv1::{
    go_json, go_json_string, go_quote, path_string, values_equal, FieldSet, Path, PathElement,
};
use crate::patch_meta::{self, ListType, MapType, PatchStrategy, SchemaKind};
use crate::status::ApiError;

/// `kubectl.kubernetes.io/last-applied-configuration`.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Longest field manager name upstream accepts.
pub const FIELD_MANAGER_MAX_LENGTH: usize = 128;

/// Upstream keeps at most this many `Update` entries; older ones are merged
/// into `ancient-changes`.
pub const MAX_UPDATE_MANAGERS: usize = 10;

const CURRENT_OPERATION: &str = "current-operation";
const BEFORE_FIRST_APPLY: &str = "before-first-apply";
const ANCIENT_CHANGES: &str = "ancient-changes";
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

// ---------------------------------------------------------------------------
// Schema

/// What a schema node is, for server-side apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Scalar,
    List,
    /// An object with declared fields, or a map (or both).
    Map,
    /// Any JSON value: objects are granular maps, lists atomic, unless the
    /// node says otherwise.
    Untyped,
}

/// The schema facts server-side apply needs. Implemented for built-in kinds
/// ([`patch_meta::Schema`]), CRD schema nodes (`&Value`) and [`SchemaRef`].
pub trait SsaSchema: Copy {
    fn shape(&self) -> Shape;
    /// A declared field (property) of an object.
    fn field(&self, name: &str) -> Option<Self>;
    /// The schema of a map's values (or of an object's undeclared fields);
    /// `None` means untyped.
    fn values(&self) -> Option<Self>;
    /// The schema of a list's items.
    fn items(&self) -> Option<Self>;
    /// How a list merges (atomic unless the schema says otherwise).
    fn list_type(&self) -> ListType;
    /// The key fields of a [`ListType::Map`] list.
    fn list_map_keys(&self) -> Vec<String>;
    /// How an object or map merges (granular unless the schema says
    /// otherwise).
    fn map_type(&self) -> MapType;
    /// Whether the node is owned and replaced as a whole.
    fn is_atomic(&self) -> bool {
        match self.shape() {
            Shape::Scalar => true,
            Shape::List => self.list_type() == ListType::Atomic,
            Shape::Map | Shape::Untyped => self.map_type() == MapType::Atomic,
        }
    }
    /// The default of a declared field, used for missing list-map keys.
    fn field_default(&self, _name: &str) -> Option<Value> {
        None
    }
    /// The value a declared field has in an empty object, for fields that
    /// always exist in a Go object: `{}` for non-pointer structs, `null`
    /// for collections without `omitempty`. Such a field is never added or
    /// removed as a node, only changed.
    fn field_zero_value(&self, _name: &str) -> Option<Value> {
        None
    }
    /// Whether `null` is a value of this node (CRD `nullable: true`);
    /// otherwise the result of an apply drops it.
    fn nullable(&self) -> bool {
        false
    }
}

/// Non-pointer struct fields of built-in kinds (see the module docs).
const ZERO_STRUCTS: &[&str] = &[
    "metadata",
    "spec",
    "status",
    "template",
    "jobTemplate",
    "strategy",
    "updateStrategy",
    "resources",
];

/// Required lists and maps of built-in kinds (no `omitempty`: `null` in a
/// Go zero value), from the Kubernetes 1.33 OpenAPI `required` lists.
const ZERO_COLLECTIONS: &[(&str, &str)] = &[
    (
        "io.k8s.api.admissionregistration.v1.MutatingWebhook",
        "admissionReviewVersions",
    ),
    (
        "io.k8s.api.admissionregistration.v1.ValidatingWebhook",
        "admissionReviewVersions",
    ),
    ("io.k8s.api.authentication.v1.TokenRequestSpec", "audiences"),
    ("io.k8s.api.authorization.v1.NonResourceRule", "verbs"),
    ("io.k8s.api.authorization.v1.ResourceRule", "verbs"),
    (
        "io.k8s.api.authorization.v1.SubjectRulesReviewStatus",
        "nonResourceRules",
    ),
    (
        "io.k8s.api.authorization.v1.SubjectRulesReviewStatus",
        "resourceRules",
    ),
    ("io.k8s.api.batch.v1.PodFailurePolicy", "rules"),
    (
        "io.k8s.api.batch.v1.PodFailurePolicyOnExitCodesRequirement",
        "values",
    ),
    ("io.k8s.api.batch.v1.SuccessPolicy", "rules"),
    (
        "io.k8s.api.core.v1.CephFSPersistentVolumeSource",
        "monitors",
    ),
    ("io.k8s.api.core.v1.CephFSVolumeSource", "monitors"),
    ("io.k8s.api.core.v1.LimitRangeSpec", "limits"),
    ("io.k8s.api.core.v1.NodeSelector", "nodeSelectorTerms"),
    ("io.k8s.api.core.v1.PodSpec", "containers"),
    ("io.k8s.api.core.v1.RBDPersistentVolumeSource", "monitors"),
    ("io.k8s.api.core.v1.RBDVolumeSource", "monitors"),
    (
        "io.k8s.api.core.v1.TopologySelectorLabelRequirement",
        "values",
    ),
    ("io.k8s.api.discovery.v1.Endpoint", "addresses"),
    ("io.k8s.api.discovery.v1.EndpointSlice", "endpoints"),
    (
        "io.k8s.api.flowcontrol.v1.NonResourcePolicyRule",
        "nonResourceURLs",
    ),
    ("io.k8s.api.flowcontrol.v1.NonResourcePolicyRule", "verbs"),
    (
        "io.k8s.api.flowcontrol.v1.PolicyRulesWithSubjects",
        "subjects",
    ),
    ("io.k8s.api.flowcontrol.v1.ResourcePolicyRule", "apiGroups"),
    ("io.k8s.api.flowcontrol.v1.ResourcePolicyRule", "resources"),
    ("io.k8s.api.flowcontrol.v1.ResourcePolicyRule", "verbs"),
    ("io.k8s.api.networking.v1.HTTPIngressRuleValue", "paths"),
    ("io.k8s.api.rbac.v1.PolicyRule", "verbs"),
    ("io.k8s.api.resource.v1alpha3.CounterSet", "counters"),
    (
        "io.k8s.api.resource.v1alpha3.DeviceCounterConsumption",
        "counters",
    ),
    ("io.k8s.api.resource.v1beta1.CounterSet", "counters"),
    (
        "io.k8s.api.resource.v1beta1.DeviceCounterConsumption",
        "counters",
    ),
    ("io.k8s.api.resource.v1beta2.CounterSet", "counters"),
    (
        "io.k8s.api.resource.v1beta2.DeviceCounterConsumption",
        "counters",
    ),
    ("io.k8s.api.storage.v1.CSINodeSpec", "drivers"),
    (
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionSpec",
        "versions",
    ),
    (
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.WebhookConversion",
        "conversionReviewVersions",
    ),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup", "versions"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIResource", "verbs"),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions",
        "serverAddressByClientCIDRs",
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions",
        "versions",
    ),
];

impl SsaSchema for patch_meta::Schema<'_> {
    fn shape(&self) -> Shape {
        match self.kind() {
            SchemaKind::Object | SchemaKind::Map => Shape::Map,
            SchemaKind::List => Shape::List,
            SchemaKind::Scalar(_) => Shape::Scalar,
            SchemaKind::Untyped => Shape::Untyped,
        }
    }

    fn field(&self, name: &str) -> Option<Self> {
        if self.kind() == SchemaKind::Object && self.has_property(name) {
            patch_meta::Schema::field(self, name)
        } else {
            None
        }
    }

    fn values(&self) -> Option<Self> {
        if self.kind() == SchemaKind::Map {
            patch_meta::Schema::values(self)
        } else {
            None
        }
    }

    fn items(&self) -> Option<Self> {
        patch_meta::Schema::items(self)
    }

    fn list_type(&self) -> ListType {
        if let Some(t) = patch_meta::Schema::list_type(self) {
            return t;
        }
        // As upstream's schema conversion: patch strategy merge makes the
        // list associative, by the merge key (a set without one).
        if self.patch_strategy() == Some(PatchStrategy::Merge) {
            if self.merge_key().is_some() {
                ListType::Map
            } else {
                ListType::Set
            }
        } else {
            ListType::Atomic
        }
    }

    fn list_map_keys(&self) -> Vec<String> {
        let keys = patch_meta::Schema::list_map_keys(self);
        if !keys.is_empty() {
            return keys.to_vec();
        }
        self.merge_key()
            .map(|k| vec![k.to_string()])
            .unwrap_or_default()
    }

    fn map_type(&self) -> MapType {
        patch_meta::Schema::map_type(self).unwrap_or(MapType::Granular)
    }

    fn field_default(&self, name: &str) -> Option<Value> {
        // The built-in list-map keys with a default (`+default="TCP"`); the
        // generated table carries no defaults.
        match (self.name()?, name) {
            (
                "io.k8s.api.core.v1.ContainerPort"
                | "io.k8s.api.core.v1.ServicePort"
                | "io.k8s.api.core.v1.EndpointPort",
                "protocol",
            ) => Some(json!("TCP")),
            _ => None,
        }
    }

    fn field_zero_value(&self, name: &str) -> Option<Value> {
        let field = SsaSchema::field(self, name)?;
        if field.kind() == SchemaKind::Object && ZERO_STRUCTS.contains(&name) {
            return Some(Value::Object(Map::new()));
        }
        let def = self.name()?;
        ZERO_COLLECTIONS
            .contains(&(def, name))
            .then_some(Value::Null)
    }
}

/// A node of a CRD's `openAPIV3Schema` (structural schema), honouring
/// `x-kubernetes-list-type`, `x-kubernetes-list-map-keys`,
/// `x-kubernetes-map-type`, `x-kubernetes-int-or-string`, `default` and
/// `nullable`.
impl SsaSchema for &Value {
    fn shape(&self) -> Shape {
        match self.get("type").and_then(Value::as_str) {
            Some("object") => Shape::Map,
            Some("array") => Shape::List,
            Some("string" | "integer" | "number" | "boolean") => Shape::Scalar,
            _ if self.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) => {
                Shape::Scalar
            }
            _ => Shape::Untyped,
        }
    }

    fn field(&self, name: &str) -> Option<Self> {
        self.get("properties")?.as_object()?.get(name)
    }

    fn values(&self) -> Option<Self> {
        self.get("additionalProperties").filter(|v| v.is_object())
    }

    fn items(&self) -> Option<Self> {
        self.get("items").filter(|v| v.is_object())
    }

    fn list_type(&self) -> ListType {
        match self.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => ListType::Set,
            Some("map") => ListType::Map,
            _ => ListType::Atomic,
        }
    }

    fn list_map_keys(&self) -> Vec<String> {
        self.get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|keys| {
                keys.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn map_type(&self) -> MapType {
        match self.get("x-kubernetes-map-type").and_then(Value::as_str) {
            Some("atomic") => MapType::Atomic,
            _ => MapType::Granular,
        }
    }

    fn field_default(&self, name: &str) -> Option<Value> {
        SsaSchema::field(self, name)?.get("default").cloned()
    }

    fn nullable(&self) -> bool {
        self.get("nullable") == Some(&Value::Bool(true))
    }
}

/// A schema of either kind, chosen at run time.
#[derive(Clone, Copy, Debug)]
pub enum SchemaRef<'a> {
    /// A built-in kind, or a node below it.
    Builtin(patch_meta::Schema<'a>),
    /// A node of a CRD schema below the root.
    Crd(&'a Value),
    /// The root of a CRD's `openAPIV3Schema`: `metadata` is the built-in
    /// `ObjectMeta`, `apiVersion` and `kind` are strings, as upstream's CRD
    /// OpenAPI makes them.
    CrdRoot(&'a Value),
}

impl SchemaRef<'static> {
    /// The schema of a built-in kind (`None` for kinds the table lacks).
    pub fn builtin(group: &str, version: &str, kind: &str) -> Option<SchemaRef<'static>> {
        patch_meta::root(group, version, kind).map(SchemaRef::Builtin)
    }
}

impl<'a> SchemaRef<'a> {
    /// The schema of a custom resource, from its version's
    /// `schema.openAPIV3Schema`.
    pub fn crd(open_api_v3_schema: &'a Value) -> SchemaRef<'a> {
        SchemaRef::CrdRoot(open_api_v3_schema)
    }
}

fn string_node() -> &'static Value {
    static NODE: OnceLock<Value> = OnceLock::new();
    NODE.get_or_init(|| json!({"type": "string"}))
}

impl SsaSchema for SchemaRef<'_> {
    fn shape(&self) -> Shape {
        match *self {
            SchemaRef::Builtin(s) => SsaSchema::shape(&s),
            SchemaRef::Crd(v) | SchemaRef::CrdRoot(v) => SsaSchema::shape(&v),
        }
    }

    fn field(&self, name: &str) -> Option<Self> {
        match *self {
            SchemaRef::Builtin(s) => SsaSchema::field(&s, name).map(SchemaRef::Builtin),
            SchemaRef::Crd(v) => SsaSchema::field(&v, name).map(SchemaRef::Crd),
            SchemaRef::CrdRoot(v) => match name {
                "metadata" => {
                    patch_meta::definition("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
                        .map(SchemaRef::Builtin)
                        .or_else(|| SsaSchema::field(&v, name).map(SchemaRef::Crd))
                }
                "apiVersion" | "kind" => Some(SchemaRef::Crd(
                    SsaSchema::field(&v, name).unwrap_or_else(|| string_node()),
                )),
                _ => SsaSchema::field(&v, name).map(SchemaRef::Crd),
            },
        }
    }

    fn values(&self) -> Option<Self> {
        match *self {
            SchemaRef::Builtin(s) => SsaSchema::values(&s).map(SchemaRef::Builtin),
            SchemaRef::Crd(v) | SchemaRef::CrdRoot(v) => SsaSchema::values(&v).map(SchemaRef::Crd),
        }
    }

    fn items(&self) -> Option<Self> {
        match *self {
            SchemaRef::Builtin(s) => SsaSchema::items(&s).map(SchemaRef::Builtin),
            SchemaRef::Crd(v) | SchemaRef::CrdRoot(v) => SsaSchema::items(&v).map(SchemaRef::Crd),
        }
    }

    fn list_type(&self) -> ListType {
        match *self {
            SchemaRef::Builtin(s) => SsaSchema::list_type(&s),
            SchemaRef::Crd(v) | SchemaRef::CrdRoot(v) => SsaSchema::list_type(&v),
        }
    }

    fn list_map_keys(&self) -> Vec<String> {
        match *self {
            SchemaRef::Builtin(s) => SsaSchema::list_map_keys(&s),
            SchemaRef::Crd(v) | SchemaRef::CrdRoot(v) => SsaSchema::list_map_keys(&v),
        }
    }

    fn map_type(&self) -> MapType {
        match *self {
            SchemaRef::Builtin(s) => SsaSchema::map_type(&s),
            SchemaRef::Crd(v) | SchemaRef::CrdRoot(v) => SsaSchema::map_type(&v),
        }
    }

    fn field_default(&self, name: &str) -> Option<Value> {
        match *self {
            SchemaRef::Builtin(s) => SsaSchema::field_default(&s, name),
            SchemaRef::Crd(v) | SchemaRef::CrdRoot(v) => SsaSchema::field_default(&v, name),
        }
    }

    fn field_zero_value(&self, name: &str) -> Option<Value> {
        match *self {
            SchemaRef::Builtin(s) => SsaSchema::field_zero_value(&s, name),
            SchemaRef::Crd(_) | SchemaRef::CrdRoot(_) => None,
        }
    }

    fn nullable(&self) -> bool {
        match *self {
            SchemaRef::Builtin(_) => false,
            SchemaRef::Crd(v) | SchemaRef::CrdRoot(v) => SsaSchema::nullable(&v),
        }
    }
}

/// How a node merges, resolved against its value.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    /// A scalar, or an atomic list or map: one value.
    Leaf,
    /// A list of scalars, each item owned by value.
    Set,
    /// An associative list, keyed by these fields.
    Keyed(Vec<String>),
    /// A granular object or map.
    Map,
}

fn list_kind<S: SsaSchema>(s: &S) -> Kind {
    match s.list_type() {
        ListType::Atomic => Kind::Leaf,
        ListType::Set => Kind::Set,
        ListType::Map => {
            let keys = s.list_map_keys();
            if keys.is_empty() {
                Kind::Set
            } else {
                Kind::Keyed(keys)
            }
        }
    }
}

fn map_kind<S: SsaSchema>(s: &S) -> Kind {
    match s.map_type() {
        MapType::Atomic => Kind::Leaf,
        MapType::Granular => Kind::Map,
    }
}

/// `repr` is a non-null value of the node (from either side), if any.
fn kind_of<S: SsaSchema>(s: Option<S>, repr: Option<&Value>) -> Kind {
    let Some(s) = s else {
        return match repr {
            Some(Value::Object(_)) => Kind::Map,
            _ => Kind::Leaf,
        };
    };
    match s.shape() {
        Shape::Scalar => Kind::Leaf,
        Shape::List => match repr {
            None | Some(Value::Array(_)) => list_kind(&s),
            _ => Kind::Leaf,
        },
        Shape::Map => match repr {
            None | Some(Value::Object(_)) => map_kind(&s),
            _ => Kind::Leaf,
        },
        Shape::Untyped => match repr {
            Some(Value::Object(_)) => map_kind(&s),
            Some(Value::Array(_)) => list_kind(&s),
            _ => Kind::Leaf,
        },
    }
}

fn non_null(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

/// The schema of a map entry, and whether it is a declared field.
fn child_schema<S: SsaSchema>(s: Option<S>, key: &str) -> (Option<S>, bool) {
    match s {
        None => (None, false),
        Some(s) => match s.field(key) {
            Some(f) => (Some(f), true),
            None => (s.values(), false),
        },
    }
}

fn items_schema<S: SsaSchema>(s: Option<S>) -> Option<S> {
    s.and_then(|s| s.items())
}

fn prefix_string(path: &[PathElement]) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{}: ", path_string(path))
    }
}

/// The path element of a list item (upstream's `listItemToPathElement`).
fn item_pe<S: SsaSchema>(
    list: Option<S>,
    kind: &Kind,
    item: &Value,
) -> Result<PathElement, String> {
    match kind {
        Kind::Keyed(keys) => {
            let Value::Object(m) = item else {
                return Err(if item.is_null() {
                    "associative list with keys may not have a null element".into()
                } else {
                    "associative list with keys may not have non-map elements".into()
                });
            };
            let items = items_schema(list);
            let mut fields = Vec::new();
            for k in keys {
                if let Some(v) = m.get(k) {
                    fields.push((k.clone(), v.clone()));
                } else if let Some(d) = items.and_then(|i| i.field_default(k)) {
                    fields.push((k.clone(), d));
                }
            }
            if fields.is_empty() {
                let quoted: Vec<String> = keys.iter().map(|k| go_quote(k)).collect();
                return Err(format!(
                    "associative list with keys has an element that omits all key fields [{}] (and doesn't have default values for any key fields)",
                    quoted.join(" ")
                ));
            }
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(PathElement::Key(fields))
        }
        _ => match item {
            Value::Object(_) => {
                Err("associative list without keys has an element that's a map type".into())
            }
            Value::Array(_) => Err("not supported: associative list with lists as elements".into()),
            Value::Null => {
                Err("associative list without keys has an element that's an explicit null".into())
            }
            scalar => Ok(PathElement::Value(scalar.clone())),
        },
    }
}

fn item_pes<S: SsaSchema>(
    list: Option<S>,
    kind: &Kind,
    items: &[Value],
    path: &[PathElement],
) -> Result<Vec<PathElement>, String> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item_pe(list, kind, item)
                .map_err(|e| format!("{}element {i}: {e}", prefix_string(path)))
        })
        .collect()
}

fn with(path: &[PathElement], pe: &PathElement) -> Path {
    let mut p = path.to_vec();
    p.push(pe.clone());
    p
}

// ---------------------------------------------------------------------------
// Field sets of values (upstream's ToFieldSet)

fn to_field_set<S: SsaSchema>(v: &Value, s: Option<S>) -> Result<FieldSet, String> {
    let mut set = FieldSet::new();
    let mut path = Vec::new();
    tfs_walk(v, s, &mut path, &mut set)?;
    Ok(set)
}

fn tfs_walk<S: SsaSchema>(
    v: &Value,
    s: Option<S>,
    path: &mut Path,
    set: &mut FieldSet,
) -> Result<(), String> {
    match kind_of(s, non_null(Some(v))) {
        Kind::Leaf => set.insert(path),
        kind @ (Kind::Set | Kind::Keyed(_)) => {
            let Value::Array(items) = v else {
                return Ok(());
            };
            let pes = item_pes(s, &kind, items, path)?;
            let mut seen = BTreeSet::new();
            let mut duplicates = BTreeSet::new();
            for pe in &pes {
                if !seen.insert(pe.clone()) && duplicates.insert(pe.clone()) {
                    set.insert(&with(path, pe));
                }
            }
            let item_schema = items_schema(s);
            for (item, pe) in items.iter().zip(pes) {
                if duplicates.contains(&pe) {
                    continue;
                }
                path.push(pe);
                tfs_walk(item, item_schema, path, set)?;
                set.insert(path);
                path.pop();
            }
        }
        Kind::Map => {
            let Value::Object(m) = v else {
                return Ok(());
            };
            for (k, cv) in m {
                let (cs, declared) = child_schema(s, k);
                path.push(PathElement::Field(k.clone()));
                tfs_walk(cv, cs, path, set)?;
                let empty_map = cv.as_object().is_some_and(Map::is_empty);
                if cv.is_null() || empty_map || !declared {
                    set.insert(path);
                }
                path.pop();
            }
        }
    }
    Ok(())
}

/// Upstream's `EnsureNamedFieldsAreMembers`: declared fields with paths
/// below them become members too, so that removing the set removes them.
fn ensure_named<S: SsaSchema>(set: &FieldSet, s: Option<S>) -> FieldSet {
    let mut out = FieldSet::new();
    out.members = set.members.clone();
    for (pe, child) in &set.children {
        let child_s = match pe {
            PathElement::Field(name) => {
                if s.is_some_and(|s| s.field(name).is_some()) {
                    out.members.insert(pe.clone());
                }
                s.and_then(|s| s.field(name).or_else(|| s.values()))
            }
            PathElement::Key(_) => items_schema(s),
            _ => None,
        };
        out.children
            .insert(pe.clone(), ensure_named(child, child_s));
    }
    out
}

// ---------------------------------------------------------------------------
// Comparison (upstream's TypedValue.Compare)

#[derive(Debug, Default)]
struct Comparison {
    added: FieldSet,
    modified: FieldSet,
    removed: FieldSet,
}

impl Comparison {
    fn filter(self, reset: &FieldSet) -> Comparison {
        if reset.is_empty() {
            return self;
        }
        Comparison {
            added: self.added.recursive_difference(reset),
            modified: self.modified.recursive_difference(reset),
            removed: self.removed.recursive_difference(reset),
        }
    }
}

fn compare<S: SsaSchema>(lhs: &Value, rhs: &Value, s: Option<S>) -> Result<Comparison, String> {
    let mut out = Comparison::default();
    let mut path = Vec::new();
    cmp_walk(Some(lhs), Some(rhs), s, &mut path, &mut out)?;
    Ok(out)
}

fn cmp_leaf(lhs: Option<&Value>, rhs: Option<&Value>, path: &[PathElement], out: &mut Comparison) {
    match (lhs, rhs) {
        (None, _) => out.added.insert(path),
        (_, None) => out.removed.insert(path),
        (Some(l), Some(r)) => {
            if !values_equal(l, r) {
                out.modified.insert(path);
            }
        }
    }
}

fn is_empty_list(v: Option<&Value>) -> bool {
    v.and_then(Value::as_array).is_none_or(Vec::is_empty)
}

fn is_empty_map(v: Option<&Value>) -> bool {
    v.and_then(Value::as_object).is_none_or(Map::is_empty)
}

fn cmp_walk<S: SsaSchema>(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    s: Option<S>,
    path: &mut Path,
    out: &mut Comparison,
) -> Result<(), String> {
    let repr = non_null(rhs).or(non_null(lhs));
    let mut in_leaf = false;
    match kind_of(s, repr) {
        Kind::Leaf => {
            cmp_leaf(lhs, rhs, path, out);
            in_leaf = true;
        }
        kind @ (Kind::Set | Kind::Keyed(_)) => {
            if is_empty_list(lhs) && is_empty_list(rhs) {
                cmp_leaf(lhs, rhs, path, out);
                in_leaf = true;
            } else {
                cmp_list(lhs, rhs, s, &kind, path, out)?;
            }
        }
        Kind::Map => {
            if is_empty_map(lhs) && is_empty_map(rhs) {
                cmp_leaf(lhs, rhs, path, out);
                in_leaf = true;
            } else {
                let empty = Map::new();
                let l = lhs.and_then(Value::as_object).unwrap_or(&empty);
                let r = rhs.and_then(Value::as_object).unwrap_or(&empty);
                let keys = l.keys().chain(r.keys().filter(|k| !l.contains_key(*k)));
                for k in keys {
                    let (cs, _) = child_schema(s, k);
                    let zero = s.and_then(|s| s.field_zero_value(k));
                    let mut lv = l.get(k);
                    let mut rv = r.get(k);
                    if let Some(zero) = &zero {
                        lv = lv.or(Some(zero));
                        rv = rv.or(Some(zero));
                    }
                    path.push(PathElement::Field(k.clone()));
                    cmp_walk(lv, rv, cs, path, out)?;
                    path.pop();
                }
            }
        }
    }
    if !in_leaf {
        if lhs.is_none() {
            out.added.insert(path);
        } else if rhs.is_none() {
            out.removed.insert(path);
        }
    }
    Ok(())
}

type Grouped<'v> = Vec<(PathElement, Vec<&'v Value>)>;

fn group_items<'v>(
    items: &'v [Value],
    pes: Vec<PathElement>,
    groups: &mut Grouped<'v>,
    index: &mut BTreeMap<PathElement, usize>,
) {
    for (item, pe) in items.iter().zip(pes) {
        match index.get(&pe) {
            Some(&i) => groups[i].1.push(item),
            None => {
                index.insert(pe.clone(), groups.len());
                groups.push((pe, vec![item]));
            }
        }
    }
}

fn cmp_list<S: SsaSchema>(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    s: Option<S>,
    kind: &Kind,
    path: &mut Path,
    out: &mut Comparison,
) -> Result<(), String> {
    let l = lhs.and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let r = rhs.and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let mut lgroups = Vec::new();
    let mut lindex = BTreeMap::new();
    group_items(l, item_pes(s, kind, l, path)?, &mut lgroups, &mut lindex);
    let mut rgroups = Vec::new();
    let mut rindex = BTreeMap::new();
    group_items(r, item_pes(s, kind, r, path)?, &mut rgroups, &mut rindex);
    let mut all: Vec<PathElement> = lgroups.iter().map(|(pe, _)| pe.clone()).collect();
    all.extend(
        rgroups
            .iter()
            .map(|(pe, _)| pe.clone())
            .filter(|pe| !lindex.contains_key(pe)),
    );
    let item_schema = items_schema(s);
    for pe in all {
        let lv: &[&Value] = lindex.get(&pe).map_or(&[], |&i| lgroups[i].1.as_slice());
        let rv: &[&Value] = rindex.get(&pe).map_or(&[], |&i| rgroups[i].1.as_slice());
        path.push(pe);
        match (lv.len(), rv.len()) {
            (0, 0) => {}
            (0 | 1, 0 | 1) => {
                cmp_walk(
                    lv.first().copied(),
                    rv.first().copied(),
                    item_schema,
                    path,
                    out,
                )?;
            }
            (ln, rn) if ln >= 2 && rn >= 2 => {
                let same = ln == rn && lv.iter().zip(rv).all(|(a, b)| values_equal(a, b));
                if !same {
                    out.modified.insert(path);
                }
            }
            (ln, _) if ln >= 2 => {
                if let Some(r0) = rv.first() {
                    cmp_walk(None, Some(r0), item_schema, path, out)?;
                }
                out.removed.insert(path);
            }
            _ => {
                if let Some(l0) = lv.first() {
                    cmp_walk(Some(l0), None, item_schema, path, out)?;
                }
                out.added.insert(path);
            }
        }
        path.pop();
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Merge (upstream's TypedValue.Merge, the right-hand side wins)

fn merge<S: SsaSchema>(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    s: Option<S>,
    path: &mut Path,
) -> Result<Option<Value>, String> {
    let repr = non_null(rhs).or(non_null(lhs));
    let leaf = || Ok(rhs.or(lhs).cloned());
    match kind_of(s, repr) {
        Kind::Leaf => leaf(),
        kind @ (Kind::Set | Kind::Keyed(_)) => {
            if is_empty_list(lhs) && is_empty_list(rhs) {
                return leaf();
            }
            merge_list(lhs, rhs, s, &kind, path)
        }
        Kind::Map => {
            if is_empty_map(lhs) && is_empty_map(rhs) {
                return leaf();
            }
            let empty = Map::new();
            let l = lhs.and_then(Value::as_object).unwrap_or(&empty);
            let r = rhs.and_then(Value::as_object).unwrap_or(&empty);
            let mut out = Map::new();
            let keys = l.keys().chain(r.keys().filter(|k| !l.contains_key(*k)));
            for k in keys {
                let (cs, _) = child_schema(s, k);
                path.push(PathElement::Field(k.clone()));
                let merged = merge(l.get(k), r.get(k), cs, path)?;
                path.pop();
                if let Some(v) = merged {
                    out.insert(k.clone(), v);
                }
            }
            Ok(if out.is_empty() {
                None
            } else {
                Some(Value::Object(out))
            })
        }
    }
}

fn merge_list<S: SsaSchema>(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    s: Option<S>,
    kind: &Kind,
    path: &mut Path,
) -> Result<Option<Value>, String> {
    let l = lhs.and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let r = rhs.and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let rhs_pes = item_pes(s, kind, r, path)?;
    let lhs_pes = item_pes(s, kind, l, path)?;
    let mut observed_rhs: BTreeMap<&PathElement, &Value> = BTreeMap::new();
    for (pe, item) in rhs_pes.iter().zip(r) {
        if observed_rhs.insert(pe, item).is_some() {
            return Err(format!(
                "{}duplicate entries for key {pe}",
                prefix_string(path)
            ));
        }
    }
    // Duplicated left-hand items merge as null (upstream's AllowDuplicates).
    let null = Value::Null;
    let mut observed_lhs: BTreeMap<&PathElement, &Value> = BTreeMap::new();
    for (pe, item) in lhs_pes.iter().zip(l) {
        if observed_lhs.insert(pe, item).is_some() {
            observed_lhs.insert(pe, &null);
        }
    }
    let mut shared = rhs_pes.iter().filter(|pe| observed_lhs.contains_key(pe));
    let mut next_shared = shared.next();
    let mut merged_rhs: BTreeSet<&PathElement> = BTreeSet::new();
    let item_schema = items_schema(s);
    let mut out = Vec::with_capacity(l.len().max(r.len()));
    let (mut li, mut ri) = (0, 0);
    while li < l.len() || ri < r.len() {
        if li < l.len() && ri < r.len() {
            let pe = &lhs_pes[li];
            if *pe == rhs_pes[ri] {
                merged_rhs.insert(pe);
                path.push(pe.clone());
                let m = merge(
                    observed_lhs.get(pe).copied(),
                    observed_rhs.get(pe).copied(),
                    item_schema,
                    path,
                )?;
                path.pop();
                out.extend(m);
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            if observed_rhs.contains_key(pe) && next_shared.is_some_and(|n| n != pe) {
                // A shared item, but not the one wanted in this round.
                li += 1;
                continue;
            }
        }
        if li < l.len() {
            let pe = &lhs_pes[li];
            if !observed_rhs.contains_key(pe) {
                path.push(pe.clone());
                let m = merge(Some(&l[li]), None, item_schema, path)?;
                path.pop();
                out.extend(m);
                li += 1;
                continue;
            } else if merged_rhs.contains(pe) {
                li += 1;
            }
        }
        if ri < r.len() {
            let pe = &rhs_pes[ri];
            merged_rhs.insert(pe);
            path.push(pe.clone());
            let m = merge(
                observed_lhs.get(pe).copied(),
                observed_rhs.get(pe).copied(),
                item_schema,
                path,
            )?;
            path.pop();
            out.extend(m);
            ri += 1;
            if next_shared == Some(pe) {
                next_shared = shared.next();
            }
        }
    }
    Ok(if out.is_empty() {
        None
    } else {
        Some(Value::Array(out))
    })
}

/// Check an applied configuration as upstream's strict conversion does:
/// every associative list item has a key and no key repeats.
fn validate_config<S: SsaSchema>(v: &Value, s: Option<S>, path: &mut Path) -> Result<(), String> {
    match kind_of(s, non_null(Some(v))) {
        Kind::Leaf => Ok(()),
        kind @ (Kind::Set | Kind::Keyed(_)) => {
            let Value::Array(items) = v else {
                return Ok(());
            };
            let pes = item_pes(s, &kind, items, path)?;
            let mut seen = BTreeSet::new();
            let item_schema = items_schema(s);
            for (item, pe) in items.iter().zip(pes) {
                if !seen.insert(pe.clone()) {
                    return Err(format!(
                        "{}duplicate entries for key {pe}",
                        prefix_string(path)
                    ));
                }
                path.push(pe);
                validate_config(item, item_schema, path)?;
                path.pop();
            }
            Ok(())
        }
        Kind::Map => {
            let Value::Object(m) = v else {
                return Ok(());
            };
            for (k, cv) in m {
                let (cs, _) = child_schema(s, k);
                path.push(PathElement::Field(k.clone()));
                validate_config(cv, cs, path)?;
                path.pop();
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------
// Removal (upstream's TypedValue.RemoveItems)

fn remove_items<S: SsaSchema>(
    v: &Value,
    set: &FieldSet,
    s: Option<S>,
) -> Result<Option<Value>, String> {
    match kind_of(s, non_null(Some(v))) {
        Kind::Leaf => Ok(match v {
            // An atomic list or map walked into is removed, as upstream does.
            Value::Array(_) | Value::Object(_) => None,
            scalar => Some(scalar.clone()),
        }),
        kind @ (Kind::Set | Kind::Keyed(_)) => {
            let Value::Array(items) = v else {
                return Ok(None);
            };
            let item_schema = items_schema(s);
            let mut out = Vec::new();
            for item in items {
                let pe = item_pe(s, &kind, item)?;
                if set.has(std::slice::from_ref(&pe)) {
                    continue;
                }
                match set.with_prefix(&pe) {
                    // Upstream keeps an emptied item as null, which no list
                    // with keys accepts: drop it.
                    Some(sub) => out.extend(remove_items(item, sub, item_schema)?),
                    None => out.push(item.clone()),
                }
            }
            Ok(if out.is_empty() {
                None
            } else {
                Some(Value::Array(out))
            })
        }
        Kind::Map => {
            let Value::Object(m) = v else {
                return Ok(None);
            };
            let mut out = Map::new();
            for (k, cv) in m {
                let pe = PathElement::Field(k.clone());
                if set.has(std::slice::from_ref(&pe)) {
                    continue;
                }
                match set.with_prefix(&pe) {
                    Some(sub) => {
                        // An entry emptied by the removal stays, as null
                        // (it may be owned); see `drop_nulls`.
                        let (cs, _) = child_schema(s, k);
                        let v = remove_items(cv, sub, cs)?.unwrap_or(Value::Null);
                        out.insert(k.clone(), v);
                    }
                    None => {
                        out.insert(k.clone(), cv.clone());
                    }
                }
            }
            Ok(if out.is_empty() {
                None
            } else {
                Some(Value::Object(out))
            })
        }
    }
}

fn remove_root<S: SsaSchema>(v: &Value, set: &FieldSet, s: Option<S>) -> Result<Value, String> {
    Ok(remove_items(v, set, s)?.unwrap_or_else(|| Value::Object(Map::new())))
}

/// Drop `null` values of typed fields (what upstream's conversion back to
/// Go types does).
fn drop_nulls<S: SsaSchema>(v: &mut Value, s: Option<S>) {
    match v {
        Value::Object(m) => {
            let Some(schema) = s else {
                return;
            };
            m.retain(|k, cv| {
                let (cs, _) = child_schema(Some(schema), k);
                !(cv.is_null() && cs.is_some_and(|c| c.shape() != Shape::Untyped && !c.nullable()))
            });
            for (k, cv) in m.iter_mut() {
                let (cs, _) = child_schema(Some(schema), k);
                drop_nulls(cv, cs);
            }
        }
        Value::Array(items) => {
            let item_schema = items_schema(s);
            for item in items {
                drop_nulls(item, item_schema);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Managers

/// A manager's identity, as upstream's `BuildManagerIdentifier`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
struct ManagerId {
    #[serde(default)]
    manager: String,
    #[serde(default)]
    operation: String,
    #[serde(default, rename = "apiVersion")]
    api_version: String,
    #[serde(default)]
    subresource: String,
}

impl ManagerId {
    /// The identifier JSON (Go's field order, empty fields omitted).
    fn key(&self) -> String {
        let mut out = String::from("{");
        let mut first = true;
        for (name, value) in [
            ("manager", &self.manager),
            ("operation", &self.operation),
            ("apiVersion", &self.api_version),
            ("subresource", &self.subresource),
        ] {
            if value.is_empty() {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            go_json_string(name, &mut out);
            out.push(':');
            go_json_string(value, &mut out);
        }
        out.push('}');
        out
    }

    fn parse(key: &str) -> ManagerId {
        serde_json::from_str(key).unwrap_or(ManagerId {
            manager: key.to_string(),
            operation: String::new(),
            api_version: String::new(),
            subresource: String::new(),
        })
    }

    /// Upstream's `printManager`.
    fn describe(&self) -> String {
        let mut s = go_quote(&self.manager);
        if !self.subresource.is_empty() {
            s = format!("{s} with subresource {}", go_quote(&self.subresource));
        }
        if self.operation == "Update" {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Owned {
    set: FieldSet,
    api_version: String,
    applied: bool,
}

#[derive(Clone, Debug, Default)]
struct Managed {
    /// By manager identifier.
    fields: BTreeMap<String, Owned>,
    times: BTreeMap<String, Option<String>>,
}

fn managed_fields_of(obj: &Value) -> Option<&Value> {
    obj.get("metadata")?.get("managedFields")
}

fn decode_managed(entries: Option<&Value>) -> Result<Managed, String> {
    let mut managed = Managed::default();
    let entries = match entries {
        None | Some(Value::Null) => return Ok(managed),
        Some(Value::Array(a)) => a,
        Some(_) => return Err("managedFields is not a list".into()),
    };
    for (i, e) in entries.iter().enumerate() {
        let str_of = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default();
        let operation = str_of("operation");
        if operation != "Apply" && operation != "Update" {
            return Err("operation must be `Apply` or `Update`".into());
        }
        let api_version = str_of("apiVersion");
        if api_version.is_empty() {
            return Err("apiVersion must not be empty".into());
        }
        match str_of("fieldsType") {
            "FieldsV1" => {}
            "" => return Err(format!("missing fieldsType in managed fields entry {i}")),
            other => {
                return Err(format!(
                    "invalid fieldsType {} in managed fields entry {i}",
                    go_quote(other)
                ))
            }
        }
        let applied = operation == "Apply";
        let id = ManagerId {
            manager: str_of("manager").to_string(),
            operation: operation.to_string(),
            api_version: if applied {
                String::new()
            } else {
                api_version.to_string()
            },
            subresource: str_of("subresource").to_string(),
        };
        let set = match e.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::new(),
            Some(v) => FieldSet::from_fields_v1(v).map_err(|err| {
                format!("error decoding versioned set from managed fields entry {i}: {err}")
            })?,
        };
        let key = id.key();
        managed.fields.insert(
            key.clone(),
            Owned {
                set,
                api_version: api_version.to_string(),
                applied,
            },
        );
        managed.times.insert(
            key,
            e.get("time").and_then(Value::as_str).map(str::to_string),
        );
    }
    Ok(managed)
}

fn time_seconds(t: Option<&str>) -> i64 {
    t.and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map_or(0, |ts| ts.as_second())
}

fn encode_managed(managed: &Managed) -> Option<Value> {
    if managed.fields.is_empty() {
        return None;
    }
    struct Entry {
        id: ManagerId,
        operation: &'static str,
        api_version: String,
        time: Option<String>,
        fields: Value,
    }
    let mut entries: Vec<Entry> = managed
        .fields
        .iter()
        .map(|(key, owned)| {
            let id = ManagerId::parse(key);
            let operation = if owned.applied || id.operation == "Apply" {
                "Apply"
            } else {
                "Update"
            };
            Entry {
                operation,
                api_version: owned.api_version.clone(),
                time: managed.times.get(key).cloned().flatten(),
                fields: owned.set.to_fields_v1(),
                id,
            }
        })
        .collect();
    entries.sort_by(|p, q| {
        p.operation
            .cmp(q.operation)
            .then_with(|| time_seconds(p.time.as_deref()).cmp(&time_seconds(q.time.as_deref())))
            .then_with(|| p.id.manager.cmp(&q.id.manager))
            .then_with(|| p.api_version.cmp(&q.api_version))
            .then_with(|| p.id.subresource.cmp(&q.id.subresource))
    });
    let list = entries
        .into_iter()
        .map(|e| {
            let mut m = Map::new();
            if !e.id.manager.is_empty() {
                m.insert("manager".into(), json!(e.id.manager));
            }
            m.insert("operation".into(), json!(e.operation));
            if !e.api_version.is_empty() {
                m.insert("apiVersion".into(), json!(e.api_version));
            }
            if let Some(t) = e.time {
                m.insert("time".into(), json!(t));
            }
            m.insert("fieldsType".into(), json!("FieldsV1"));
            m.insert("fieldsV1".into(), e.fields);
            if !e.id.subresource.is_empty() {
                m.insert("subresource".into(), json!(e.id.subresource));
            }
            Value::Object(m)
        })
        .collect();
    Some(Value::Array(list))
}

fn set_managed_fields(obj: &mut Value, managed: &Managed) {
    let encoded = encode_managed(managed);
    let Value::Object(o) = obj else {
        return;
    };
    match encoded {
        Some(list) => {
            let meta = o
                .entry("metadata")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = meta {
                m.insert("managedFields".into(), list);
            }
        }
        None => {
            if let Some(Value::Object(m)) = o.get_mut("metadata") {
                m.remove("managedFields");
            }
        }
    }
}

fn without_managed_fields(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if let Some(Value::Object(m)) = obj.get_mut("metadata") {
        m.remove("managedFields");
    }
    obj
}

/// `[]` or `[{}]`: the request asks to drop all managed fields.
fn is_reset(mf: Option<&Value>) -> bool {
    match mf {
        Some(Value::Array(a)) if a.is_empty() => true,
        Some(Value::Array(a)) if a.len() == 1 => match &a[0] {
            Value::Object(m) => m.values().all(|v| match v {
                Value::Null => true,
                Value::String(s) => s.is_empty(),
                _ => false,
            }),
            _ => false,
        },
        _ => false,
    }
}

fn strip_set() -> &'static FieldSet {
    static SET: OnceLock<FieldSet> = OnceLock::new();
    SET.get_or_init(|| {
        let f = |s: &str| PathElement::Field(s.to_string());
        let mut set = FieldSet::new();
        set.insert(&[f("apiVersion")]);
        set.insert(&[f("kind")]);
        set.insert(&[f("metadata")]);
        for name in [
            "name",
            "namespace",
            "creationTimestamp",
            "selfLink",
            "uid",
            "clusterName",
            "generation",
            "managedFields",
            "resourceVersion",
        ] {
            set.insert(&[f("metadata"), f(name)]);
        }
        set
    })
}

fn strip_meta(managed: &mut Managed, key: &str) {
    if let Some(owned) = managed.fields.get_mut(key) {
        owned.set = owned.set.difference(strip_set());
        if owned.set.is_empty() {
            managed.fields.remove(key);
        }
    }
}

fn cap_update_managers(managed: &mut Managed) {
    let mut updaters: Vec<String> = managed
        .fields
        .iter()
        .filter(|(_, o)| !o.applied)
        .map(|(k, _)| k.clone())
        .collect();
    if updaters.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    let seconds = |k: &String| time_seconds(managed.times.get(k).and_then(|t| t.as_deref()));
    updaters.sort_by(|a, b| seconds(a).cmp(&seconds(b)).then_with(|| a.cmp(b)));
    let mut first_by_version: BTreeMap<String, String> = BTreeMap::new();
    let mut length = updaters.len();
    for manager in updaters {
        if length <= MAX_UPDATE_MANAGERS {
            break;
        }
        let Some(owned) = managed.fields.get(&manager).cloned() else {
            continue;
        };
        let time = managed.times.get(&manager).cloned().flatten();
        let bucket = ManagerId {
            manager: ANCIENT_CHANGES.into(),
            operation: "Update".into(),
            api_version: owned.api_version.clone(),
            subresource: String::new(),
        }
        .key();
        match first_by_version.get(&owned.api_version) {
            Some(first) => {
                if !managed.fields.contains_key(&bucket) {
                    if let Some(s) = managed.fields.remove(first) {
                        managed.fields.insert(bucket.clone(), s);
                    }
                }
                let union = managed
                    .fields
                    .get(&bucket)
                    .map_or_else(|| owned.set.clone(), |b| owned.set.union(&b.set));
                managed.fields.insert(
                    bucket.clone(),
                    Owned {
                        set: union,
                        api_version: owned.api_version.clone(),
                        applied: owned.applied,
                    },
                );
                managed.fields.remove(&manager);
                length -= 1;
                managed.times.insert(bucket, time);
            }
            None => {
                first_by_version.insert(owned.api_version.clone(), manager);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Conflicts and errors

/// A field that another manager owns with a different value.
#[derive(Clone, Debug, PartialEq)]
pub struct Conflict {
    /// The other manager's name.
    pub manager: String,
    /// Its operation: `Apply` or `Update`.
    pub operation: String,
    /// The API version it used (empty for `Apply` managers, as upstream
    /// prints them).
    pub api_version: String,
    /// Its subresource, if any.
    pub subresource: String,
    /// The field, as upstream prints it: `.spec.replicas`,
    /// `.spec.template.spec.containers[name="c"].image`.
    pub field: String,
    id_key: String,
    path: Path,
}

impl Conflict {
    fn id(&self) -> ManagerId {
        ManagerId {
            manager: self.manager.clone(),
            operation: self.operation.clone(),
            api_version: self.api_version.clone(),
            subresource: self.subresource.clone(),
        }
    }

    /// How upstream names the manager: `"kubectl"` for an applier,
    /// `"kube-controller-manager" using apps/v1` for an updater, with
    /// ` with subresource "status"` where there is one.
    pub fn manager_description(&self) -> String {
        self.id().describe()
    }
}

/// The `409 Conflict` Status upstream returns for apply conflicts.
pub fn conflict_error(conflicts: &[Conflict]) -> ApiError {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {}", c.manager_description()),
                "field": c.field,
            })
        })
        .collect();
    let message = if let [one] = conflicts {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            one.manager_description(),
            one.field
        )
    } else {
        let mut by_manager: BTreeMap<&str, (String, Vec<&str>)> = BTreeMap::new();
        for c in conflicts {
            by_manager
                .entry(c.id_key.as_str())
                .or_insert_with(|| (c.manager_description(), Vec::new()))
                .1
                .push(c.field.as_str());
        }
        let mut lines = Vec::new();
        for (describe, fields) in by_manager.into_values() {
            lines.push(format!("conflicts with {describe}:"));
            lines.extend(fields.into_iter().map(|f| format!("- {f}")));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    ApiError::new(409, "Conflict", message).with_details(json!({ "causes": causes }))
}

/// Why an apply failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ApplyError {
    /// Other managers own fields the configuration changes (and the apply
    /// was not forced): `409 Conflict`.
    #[error("{}", conflict_error(.0).message)]
    Conflicts(Vec<Conflict>),
    /// The request is malformed: `400 BadRequest`.
    #[error("{0}")]
    BadRequest(String),
    /// The configuration or the stored object cannot be handled (a list
    /// item without its key, duplicate keys): `500`, as upstream.
    #[error("{0}")]
    Internal(String),
}

impl ApplyError {
    /// The conflicts, if that is what this is.
    pub fn conflicts(&self) -> &[Conflict] {
        match self {
            ApplyError::Conflicts(c) => c,
            _ => &[],
        }
    }
}

impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> ApiError {
        match e {
            ApplyError::Conflicts(c) => conflict_error(&c),
            ApplyError::BadRequest(m) => ApiError::bad_request(m),
            // Upstream answers errors that are not a Status with code 500
            // and no reason.
            ApplyError::Internal(m) => ApiError::new(500, "", m),
        }
    }
}

fn conflicts_from(sets: BTreeMap<String, FieldSet>, managed: &Managed) -> Vec<Conflict> {
    let mut out = Vec::new();
    for (key, set) in sets {
        let id = ManagerId::parse(&key);
        // Upstream's identifier of an Apply manager has no apiVersion.
        let api_version = if id.operation == "Apply" {
            String::new()
        } else {
            managed
                .fields
                .get(&key)
                .map_or(id.api_version.clone(), |o| o.api_version.clone())
        };
        for path in set.paths() {
            out.push(Conflict {
                manager: id.manager.clone(),
                operation: id.operation.clone(),
                api_version: api_version.clone(),
                subresource: id.subresource.clone(),
                field: path_string(&path),
                id_key: key.clone(),
                path,
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The field manager

/// One request's view of field management.
#[derive(Clone, Copy, Debug)]
pub struct FieldManager<'a, S> {
    /// `?fieldManager=`, or the user agent's prefix
    /// ([`manager_or_user_agent`]); empty becomes `unknown`.
    pub manager: &'a str,
    /// The request's `apiVersion` (`v1`, `apps/v1`).
    pub api_version: &'a str,
    /// The request's kind; an applied configuration of another kind is a
    /// `400`. Empty: not checked.
    pub kind: &'a str,
    /// `Some("status")` for the status subresource.
    pub subresource: Option<&'a str>,
    /// The time to record, RFC 3339 (`2025-01-01T00:00:00Z`).
    pub now: &'a str,
    /// The schema of the kind; `None` treats everything as untyped.
    pub schema: Option<S>,
    /// Paths whose changes are not tracked (upstream's `GetResetFields`);
    /// `None`: [`default_reset_fields`].
    pub reset_fields: Option<&'a [&'a [&'a str]]>,
}

/// The fields upstream's strategies reset for a request to the main
/// resource (`status`) or the status subresource (`spec` and `metadata`).
/// For kinds without a status subresource pass `&[]` to
/// [`FieldManager::with_reset_fields`].
pub fn default_reset_fields(subresource: Option<&str>) -> &'static [&'static [&'static str]] {
    match subresource {
        None => &[&["status"]],
        Some("status") => &[&["spec"], &["metadata"]],
        Some(_) => &[],
    }
}

/// Upstream's `managerOrUserAgent`: the `fieldManager` parameter, or the
/// user agent up to its first `/`, printable characters only, at most 128
/// bytes.
pub fn manager_or_user_agent(field_manager: Option<&str>, user_agent: &str) -> String {
    if let Some(m) = field_manager.filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    let prefix = user_agent.split('/').next().unwrap_or_default();
    let mut out = String::new();
    for c in prefix.chars() {
        if c.is_control() || (c.is_whitespace() && c != ' ') {
            continue;
        }
        if out.len() + c.len_utf8() > FIELD_MANAGER_MAX_LENGTH {
            break;
        }
        out.push(c);
    }
    out
}

/// [`FieldManager::update`].
pub fn managed_fields_on_update<S: SsaSchema>(
    fm: &FieldManager<'_, S>,
    old: Option<&Value>,
    new: &mut Value,
) {
    fm.update(old, new)
}

/// [`FieldManager::apply`].
pub fn apply<S: SsaSchema>(
    fm: &FieldManager<'_, S>,
    live: Option<&Value>,
    applied: &Value,
    force: bool,
) -> Result<Value, ApplyError> {
    fm.apply(live, applied, force)
}

fn gvk_string(obj: &Value) -> String {
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    format!("{group}/{version}, Kind={kind}")
}

fn object_gvknn(obj: &Value) -> String {
    let meta = obj.get("metadata");
    let s = |k: &str| {
        meta.and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    format!("{}/{}; {}", s("namespace"), s("name"), gvk_string(obj))
}

fn annotations(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata")?.get("annotations")?.as_object()
}

fn has_last_applied(obj: &Value) -> bool {
    annotations(obj)
        .and_then(|a| a.get(LAST_APPLIED_ANNOTATION))
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
}

fn set_annotations(obj: &mut Value, annotations: Map<String, Value>) {
    let Value::Object(o) = obj else {
        return;
    };
    let meta = o
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(m) = meta {
        if annotations.is_empty() {
            m.remove("annotations");
        } else {
            m.insert("annotations".into(), Value::Object(annotations));
        }
    }
}

/// The applied configuration as `kubectl.kubernetes.io/last-applied-configuration`
/// holds it (Go's JSON, keys sorted, a trailing newline).
fn build_last_applied(applied: &Value) -> String {
    let mut obj = applied.clone();
    if let Some(mut a) = annotations(&obj).cloned() {
        a.remove(LAST_APPLIED_ANNOTATION);
        set_annotations(&mut obj, a);
    }
    let mut out = String::new();
    go_json(&obj, &mut out);
    out.push('\n');
    out
}

fn set_last_applied(obj: &mut Value, value: String) {
    let mut a = annotations(obj).cloned().unwrap_or_default();
    a.insert(LAST_APPLIED_ANNOTATION.into(), Value::String(value));
    let size: usize = a
        .iter()
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    if size > TOTAL_ANNOTATION_SIZE_LIMIT {
        a.remove(LAST_APPLIED_ANNOTATION);
    }
    set_annotations(obj, a);
}

impl<'a, S: SsaSchema> FieldManager<'a, S> {
    pub fn new(
        manager: &'a str,
        api_version: &'a str,
        kind: &'a str,
        now: &'a str,
        schema: Option<S>,
    ) -> Self {
        FieldManager {
            manager,
            api_version,
            kind,
            subresource: None,
            now,
            schema,
            reset_fields: None,
        }
    }

    pub fn with_subresource(mut self, subresource: Option<&'a str>) -> Self {
        self.subresource = subresource.filter(|s| !s.is_empty());
        self
    }

    pub fn with_reset_fields(mut self, reset_fields: &'a [&'a [&'a str]]) -> Self {
        self.reset_fields = Some(reset_fields);
        self
    }

    fn reset_set(&self) -> FieldSet {
        let paths = self
            .reset_fields
            .unwrap_or_else(|| default_reset_fields(self.subresource));
        let mut set = FieldSet::new();
        for p in paths {
            let path: Path = p
                .iter()
                .map(|s| PathElement::Field(s.to_string()))
                .collect();
            set.insert(&path);
        }
        set
    }

    fn manager_name(&self) -> &str {
        if self.manager.is_empty() {
            "unknown"
        } else {
            self.manager
        }
    }

    fn id(&self, manager: &str, operation: &str) -> String {
        ManagerId {
            manager: manager.to_string(),
            operation: operation.to_string(),
            api_version: if operation == "Apply" {
                String::new()
            } else {
                self.api_version.to_string()
            },
            subresource: self.subresource.unwrap_or_default().to_string(),
        }
        .key()
    }

    /// Record the fields a create, update or (non-apply) patch changed, in
    /// `new`'s `metadata.managedFields`.
    ///
    /// `new` is the object about to be stored (its `managedFields`, when
    /// the request carried them, are honoured as upstream does: `[]` or
    /// `[{}]` drops them all, other valid ones replace the stored ones);
    /// `old` the stored object, `None` on create. An object stored without
    /// managed fields is not tracked by updates (upstream tracks from
    /// creation, or from the first apply). On an internal error the stored
    /// managed fields are kept, as upstream's `UpdateNoErrors` does.
    pub fn update(&self, old: Option<&Value>, new: &mut Value) {
        let live_mf = old.and_then(managed_fields_of).cloned();
        let mut managed = self.decode_live_or_new(old, new);
        let mut new_obj = without_managed_fields(new);
        let live = old.map_or_else(|| json!({}), without_managed_fields);
        let has_uid = old
            .and_then(|o| o.get("metadata"))
            .and_then(|m| m.get("uid"))
            .and_then(Value::as_str)
            .is_some_and(|u| !u.is_empty());
        if managed.fields.is_empty() && old.is_some() && has_uid {
            *new = new_obj;
            return;
        }
        match self.update_chain(&live, &new_obj, &mut managed, self.manager_name()) {
            Ok(()) => {
                set_managed_fields(&mut new_obj, &managed);
                *new = new_obj;
            }
            Err(_) => {
                if let (Some(mf), Value::Object(o)) = (live_mf, &mut new_obj) {
                    let meta = o
                        .entry("metadata")
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(m) = meta {
                        m.insert("managedFields".into(), mf);
                    }
                }
                *new = new_obj;
            }
        }
    }

    fn decode_live_or_new(&self, old: Option<&Value>, new: &Value) -> Managed {
        let live = || decode_managed(old.and_then(managed_fields_of)).unwrap_or_default();
        if self.subresource.is_some() {
            return live();
        }
        let new_mf = managed_fields_of(new);
        if is_reset(new_mf) {
            return Managed::default();
        }
        match decode_managed(new_mf) {
            Ok(m) if !m.fields.is_empty() => m,
            _ => live(),
        }
    }

    /// Upstream's Update chain below the skip-non-applied step: cap
    /// managers, manager identity, the "current operation" merge, strip
    /// metadata, the structured update.
    fn update_chain(
        &self,
        live: &Value,
        new: &Value,
        managed: &mut Managed,
        manager: &str,
    ) -> Result<(), String> {
        let id = self.id(manager, "Update");
        self.structured_update(live, new, managed, CURRENT_OPERATION)?;
        strip_meta(managed, CURRENT_OPERATION);
        if let Some(current) = managed.fields.remove(CURRENT_OPERATION) {
            let set = match managed.fields.get(&id) {
                Some(previous) => current.set.union(&previous.set),
                None => current.set,
            };
            managed.fields.insert(
                id.clone(),
                Owned {
                    set,
                    api_version: current.api_version,
                    applied: current.applied,
                },
            );
            managed.times.insert(id, Some(self.now.to_string()));
        }
        cap_update_managers(managed);
        Ok(())
    }

    fn structured_update(
        &self,
        live: &Value,
        new: &Value,
        managed: &mut Managed,
        workflow: &str,
    ) -> Result<(), String> {
        let reset = self.reset_set();
        let cmp = compare(live, new, self.schema)?.filter(&reset);
        // Forced: never fails.
        let _ = update_managers(&cmp, managed, workflow, true);
        let previous = managed
            .fields
            .get(workflow)
            .map(|o| o.set.clone())
            .unwrap_or_default();
        let set = previous
            .difference(&cmp.removed)
            .union(&cmp.modified)
            .union(&cmp.added)
            .recursive_difference(&reset);
        if set.is_empty() {
            managed.fields.remove(workflow);
        } else {
            managed.fields.insert(
                workflow.to_string(),
                Owned {
                    set,
                    api_version: self.api_version.to_string(),
                    applied: false,
                },
            );
        }
        Ok(())
    }

    /// Server-side apply: merge `applied` (the configuration, as decoded
    /// from the request's YAML) into `live` (`None`: the object does not
    /// exist yet) for this manager. Returns the object to store, with
    /// `managedFields` set; the caller defaults, validates and stores it.
    pub fn apply(
        &self,
        live: Option<&Value>,
        applied: &Value,
        force: bool,
    ) -> Result<Value, ApplyError> {
        if !self.kind.is_empty() {
            let api_version = applied.get("apiVersion").and_then(Value::as_str);
            let kind = applied.get("kind").and_then(Value::as_str);
            if api_version != Some(self.api_version) || kind != Some(self.kind) {
                return Err(ApplyError::BadRequest(format!(
                    "invalid object type: {}",
                    gvk_string(applied)
                )));
            }
        }
        let kubectl = self.manager == "kubectl";
        let result = match self.apply_inner(live, applied, force) {
            Err(ApplyError::Conflicts(conflicts)) if kubectl => {
                match self.allowed_conflicts_from_last_applied(live) {
                    Ok(allowed) => {
                        let remaining: Vec<Conflict> = conflicts
                            .iter()
                            .filter(|c| !allowed.has(&c.path))
                            .cloned()
                            .collect();
                        if remaining.is_empty() {
                            self.apply_inner(live, applied, true)
                        } else {
                            Err(ApplyError::Conflicts(remaining))
                        }
                    }
                    Err(_) => Err(ApplyError::Conflicts(conflicts)),
                }
            }
            other => other,
        };
        let mut obj = result?;
        if kubectl && has_last_applied(&obj) {
            set_last_applied(&mut obj, build_last_applied(applied));
        }
        Ok(obj)
    }

    fn allowed_conflicts_from_last_applied(
        &self,
        live: Option<&Value>,
    ) -> Result<FieldSet, String> {
        let live = live.ok_or("no live object")?;
        let text = annotations(live)
            .and_then(|a| a.get(LAST_APPLIED_ANNOTATION))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or("no last applied annotation")?;
        let last: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if !last.is_object() {
            return Err("last applied configuration is not an object".into());
        }
        if last.get("apiVersion").and_then(Value::as_str) != Some(self.api_version) {
            return Err("last applied configuration has another version".into());
        }
        validate_config(&last, self.schema, &mut Vec::new())?;
        let set = to_field_set(&last, self.schema)?;
        let cmp = compare(&last, live, self.schema)?;
        Ok(set
            .difference(&cmp.modified)
            .difference(&cmp.added)
            .difference(&cmp.removed))
    }

    /// Upstream's Apply chain from the skip-non-applied step down.
    fn apply_inner(
        &self,
        live: Option<&Value>,
        applied: &Value,
        force: bool,
    ) -> Result<Value, ApplyError> {
        let mut managed = decode_managed(live.and_then(managed_fields_of))
            .map_err(|e| ApplyError::Internal(format!("failed to decode managed fields: {e}")))?;
        let live_obj = live.map_or_else(|| json!({}), without_managed_fields);
        if managed.fields.is_empty() {
            self.update_chain(&json!({}), &live_obj, &mut managed, BEFORE_FIRST_APPLY)
                .map_err(|e| {
                    ApplyError::Internal(format!(
                        "failed to create manager for existing fields: {e}"
                    ))
                })?;
        }
        let id = self.id(self.manager_name(), "Apply");
        let new_obj = self.structured_apply(&live_obj, applied, &mut managed, &id, force)?;
        strip_meta(&mut managed, &id);
        let mut obj = match new_obj {
            Some(obj) => {
                managed.times.insert(id, Some(self.now.to_string()));
                obj
            }
            None => live_obj,
        };
        set_managed_fields(&mut obj, &managed);
        Ok(obj)
    }

    /// Returns `None` when the object does not change.
    fn structured_apply(
        &self,
        live: &Value,
        config: &Value,
        managed: &mut Managed,
        id: &str,
        force: bool,
    ) -> Result<Option<Value>, ApplyError> {
        let patch_version = config
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if patch_version != self.api_version {
            return Err(ApplyError::BadRequest(format!(
                "Incorrect version specified in apply patch. Specified patch version: {patch_version}, expected: {}",
                self.api_version
            )));
        }
        if managed_fields_of(config).is_some_and(|m| !m.is_null()) {
            return Err(ApplyError::BadRequest(
                "metadata.managedFields must be nil".into(),
            ));
        }
        let s = self.schema;
        validate_config(config, s, &mut Vec::new()).map_err(|e| {
            ApplyError::Internal(format!(
                "failed to create typed patch object ({}): {e}",
                object_gvknn(config)
            ))
        })?;
        let internal = |e: String| ApplyError::Internal(e);
        let merged = merge(Some(live), Some(config), s, &mut Vec::new())
            .map_err(|e| internal(format!("failed to merge config: {e}")))?
            .unwrap_or_else(|| json!({}));
        let last = managed.fields.get(id).cloned();
        let reset = self.reset_set();
        let set = to_field_set(config, s)
            .map_err(|e| internal(format!("failed to get field set: {e}")))?
            .recursive_difference(&reset);
        managed.fields.insert(
            id.to_string(),
            Owned {
                set,
                api_version: self.api_version.to_string(),
                applied: true,
            },
        );
        let mut merged = self
            .prune(merged, managed, last.as_ref())
            .map_err(|e| internal(format!("failed to prune fields: {e}")))?;
        let cmp = compare(live, &merged, s)
            .map_err(|e| internal(format!("failed to compare objects: {e}")))?
            .filter(&reset);
        update_managers(&cmp, managed, id, force)
            .map_err(|sets| ApplyError::Conflicts(conflicts_from(sets, managed)))?;
        drop_nulls(&mut merged, s);
        if values_equal(live, &merged) {
            Ok(None)
        } else {
            Ok(Some(merged))
        }
    }

    /// Remove what the applier owned before and no longer applies, unless
    /// someone else owns it (upstream's `prune`, `addBackOwnedItems`,
    /// `addBackDanglingItems`).
    fn prune(
        &self,
        merged: Value,
        managed: &Managed,
        last: Option<&Owned>,
    ) -> Result<Value, String> {
        let Some(last) = last.filter(|l| !l.set.is_empty()) else {
            return Ok(merged);
        };
        let s = self.schema;
        let last_set = ensure_named(&last.set, s);
        let pruned = remove_root(&merged, &last_set, s)?;

        let owned = managed
            .fields
            .values()
            .fold(FieldSet::new(), |acc, o| acc.union(&o.set));
        let merged_set = ensure_named(&to_field_set(&merged, s)?, s);
        let pruned_set = ensure_named(&to_field_set(&pruned, s)?, s);
        let keep = pruned_set.union(&ensure_named(&owned, s));
        let pruned = remove_root(&merged, &merged_set.difference(&keep), s)?;

        let pruned_set = ensure_named(&to_field_set(&pruned, s)?, s);
        let dangling = merged_set.difference(&pruned_set).intersection(&last_set);
        remove_root(&merged, &dangling, s)
    }
}

/// Upstream's `Updater.update`: take the changed fields from the other
/// managers (or report them as conflicts), and the removed ones.
fn update_managers(
    cmp: &Comparison,
    managed: &mut Managed,
    workflow: &str,
    force: bool,
) -> Result<(), BTreeMap<String, FieldSet>> {
    let changed = cmp.modified.union(&cmp.added);
    let mut conflicts = BTreeMap::new();
    for (key, owned) in &managed.fields {
        if key == workflow {
            continue;
        }
        let c = owned.set.intersection(&changed);
        if !c.is_empty() {
            conflicts.insert(key.clone(), c);
        }
    }
    if !force && !conflicts.is_empty() {
        return Err(conflicts);
    }
    for (key, c) in &conflicts {
        if let Some(owned) = managed.fields.get_mut(key) {
            owned.set = owned.set.difference(c);
        }
    }
    if !cmp.removed.is_empty() {
        for (key, owned) in managed.fields.iter_mut() {
            if key != workflow {
                owned.set = owned.set.difference(&cmp.removed);
            }
        }
    }
    managed.fields.retain(|_, o| !o.set.is_empty());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: &str = "2025-01-01T00:00:00Z";
    const T1: &str = "2025-01-01T00:01:00Z";
    const T2: &str = "2025-01-01T00:02:00Z";
    const T3: &str = "2025-01-01T00:03:00Z";

    type Fm<'a> = FieldManager<'a, SchemaRef<'static>>;

    fn deploy<'a>(manager: &'a str, now: &'a str) -> Fm<'a> {
        FieldManager::new(
            manager,
            "apps/v1",
            "Deployment",
            now,
            SchemaRef::builtin("apps", "v1", "Deployment"),
        )
    }

    fn configmap<'a>(manager: &'a str, now: &'a str) -> Fm<'a> {
        FieldManager::new(
            manager,
            "v1",
            "ConfigMap",
            now,
            SchemaRef::builtin("", "v1", "ConfigMap"),
        )
        .with_reset_fields(&[])
    }

    fn deployment(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "nginx", "image": image}]}
                }
            }
        })
    }

    /// What storage adds to a created object.
    fn stored(mut obj: Value) -> Value {
        obj["metadata"]["uid"] = json!("0b5c6a5e-0000-4000-8000-000000000001");
        obj["metadata"]["resourceVersion"] = json!("1");
        obj
    }

    /// Create through the Update path, as POST does.
    fn create(fm: &Fm<'_>, obj: &Value) -> Value {
        let mut new = obj.clone();
        fm.update(None, &mut new);
        stored(new)
    }

    /// Update an object as a client that read `live` and changed it.
    fn update_with(fm: &Fm<'_>, live: &Value, change: impl FnOnce(&mut Value)) -> Value {
        let mut new = live.clone();
        change(&mut new);
        fm.update(Some(live), &mut new);
        new
    }

    fn managed(obj: &Value) -> &Vec<Value> {
        obj["metadata"]["managedFields"]
            .as_array()
            .unwrap_or_else(|| panic!("no managedFields in {obj:#}"))
    }

    fn entry<'v>(obj: &'v Value, manager: &str) -> &'v Value {
        managed(obj)
            .iter()
            .find(|e| e["manager"] == manager)
            .unwrap_or_else(|| panic!("no entry for {manager} in {:#}", obj["metadata"]))
    }

    fn fields_of(obj: &Value, manager: &str) -> FieldSet {
        FieldSet::from_fields_v1(&entry(obj, manager)["fieldsV1"]).unwrap()
    }

    fn owns(obj: &Value, manager: &str, path: &str) -> bool {
        fields_of(obj, manager)
            .paths()
            .iter()
            .any(|p| path_string(p) == path)
    }

    fn managers(obj: &Value) -> Vec<String> {
        managed(obj)
            .iter()
            .map(|e| e["manager"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    #[test]
    fn apply_creates_with_managed_fields() {
        // The example of https://kubernetes.io/docs/reference/using-api/server-side-apply/
        let cm = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "test-cm", "namespace": "default", "labels": {"test-label": "test"}},
            "data": {"key": "some value"}
        });
        let out = configmap("kubectl", T0).apply(None, &cm, false).unwrap();
        assert_eq!(
            serde_json::to_string(&out["metadata"]["managedFields"]).unwrap(),
            r#"[{"manager":"kubectl","operation":"Apply","apiVersion":"v1","time":"2025-01-01T00:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:data":{"f:key":{}},"f:metadata":{"f:labels":{"f:test-label":{}}}}}]"#
        );
        assert_eq!(without_managed_fields(&out), cm);
    }

    #[test]
    fn reapplying_the_same_configuration_changes_nothing() {
        let cfg = deployment(3, "nginx:1.27");
        let first = stored(deploy("applier", T0).apply(None, &cfg, false).unwrap());
        let again = deploy("applier", T1)
            .apply(Some(&first), &cfg, false)
            .unwrap();
        // Not even the time: upstream only stamps changes.
        assert_eq!(again, first);
    }

    #[test]
    fn removing_a_field_from_the_configuration_removes_it() {
        let mut cm = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c"},
            "data": {"a": "1", "b": "2"}
        });
        let first = stored(configmap("applier", T0).apply(None, &cm, false).unwrap());
        cm["data"].as_object_mut().unwrap().remove("b");
        let out = configmap("applier", T1)
            .apply(Some(&first), &cm, false)
            .unwrap();
        assert_eq!(out["data"], json!({"a": "1"}));
        assert_eq!(
            entry(&out, "applier")["fieldsV1"],
            json!({"f:data": {"f:a": {}}})
        );
        assert_eq!(entry(&out, "applier")["time"], T1);
        // Removing the whole map removes it.
        cm.as_object_mut().unwrap().remove("data");
        let out = configmap("applier", T2)
            .apply(Some(&stored(out)), &cm, false)
            .unwrap();
        assert!(out.get("data").is_none(), "{out:#}");
        assert!(out["metadata"].get("managedFields").is_none(), "{out:#}");
    }

    #[test]
    fn client_side_apply_updates_are_tracked_by_manager() {
        let live = create(
            &deploy("kubectl-client-side-apply", T0),
            &deployment(3, "nginx:1.27"),
        );
        assert_eq!(
            managed(&live),
            &vec![json!({
                "manager": "kubectl-client-side-apply",
                "operation": "Update",
                "apiVersion": "apps/v1",
                "time": T0,
                "fieldsType": "FieldsV1",
                // As an API server records a Deployment created this way:
                // no `.` on the non-pointer structs, none on the atomic
                // selector, `.` on maps and list items.
                "fieldsV1": {"f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {
                        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                            ".": {}, "f:image": {}, "f:name": {}}}}
                    }
                }}
            })]
        );
        // Another client edits the image: it takes that field over.
        let edited = update_with(&deploy("kubectl-edit", T1), &live, |o| {
            o["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.28");
        });
        assert_eq!(
            managers(&edited),
            ["kubectl-client-side-apply", "kubectl-edit"]
        );
        let image = r#".spec.template.spec.containers[name="nginx"].image"#;
        assert!(owns(&edited, "kubectl-edit", image));
        assert!(!owns(&edited, "kubectl-client-side-apply", image));
        assert!(owns(&edited, "kubectl-client-side-apply", ".spec.replicas"));
        assert_eq!(entry(&edited, "kubectl-edit")["time"], T1);
        assert_eq!(entry(&edited, "kubectl-client-side-apply")["time"], T0);
        // An update that changes nothing leaves everything as it was.
        let same = update_with(&deploy("kubectl-edit", T2), &edited, |_| {});
        assert_eq!(same, edited);
        // Removing a field takes it from its owner.
        let scaled_down = update_with(&deploy("other", T2), &edited, |o| {
            o["spec"].as_object_mut().unwrap().remove("replicas");
        });
        assert!(!owns(
            &scaled_down,
            "kubectl-client-side-apply",
            ".spec.replicas"
        ));
        assert_eq!(
            managers(&scaled_down),
            ["kubectl-client-side-apply", "kubectl-edit"]
        );
    }

    #[test]
    fn conflicting_apply_is_a_409_with_upstream_status() {
        let live = create(
            &deploy("kubectl-client-side-apply", T0),
            &deployment(3, "nginx:1.27"),
        );
        let err = deploy("ssa-user", T1)
            .apply(Some(&live), &deployment(2, "nginx:1.27"), false)
            .unwrap_err();
        let conflicts = err.conflicts();
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].manager, "kubectl-client-side-apply");
        assert_eq!(conflicts[0].field, ".spec.replicas");
        assert_eq!(
            conflicts[0].manager_description(),
            r#""kubectl-client-side-apply" using apps/v1"#
        );
        let status = ApiError::from(err).to_status();
        assert_eq!(
            status,
            json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas",
                "reason": "Conflict",
                "details": {"causes": [{
                    "reason": "FieldManagerConflict",
                    "message": "conflict with \"kubectl-client-side-apply\" using apps/v1",
                    "field": ".spec.replicas"
                }]},
                "code": 409
            })
        );
    }

    #[test]
    fn force_transfers_ownership() {
        let live = create(
            &deploy("kubectl-client-side-apply", T0),
            &deployment(3, "nginx:1.27"),
        );
        let out = deploy("ssa-user", T1)
            .apply(Some(&live), &deployment(2, "nginx:1.27"), true)
            .unwrap();
        assert_eq!(out["spec"]["replicas"], 2);
        assert!(owns(&out, "ssa-user", ".spec.replicas"));
        assert!(!owns(&out, "kubectl-client-side-apply", ".spec.replicas"));
        // The fields with equal values stay shared.
        let image = r#".spec.template.spec.containers[name="nginx"].image"#;
        assert!(owns(&out, "ssa-user", image));
        assert!(owns(&out, "kubectl-client-side-apply", image));
        assert_eq!(entry(&out, "ssa-user")["operation"], "Apply");
        // Apply entries come first.
        assert_eq!(managers(&out), ["ssa-user", "kubectl-client-side-apply"]);
    }

    #[test]
    fn equal_values_are_shared_without_conflict() {
        let live = create(
            &deploy("kubectl-client-side-apply", T0),
            &deployment(3, "nginx:1.27"),
        );
        let out = deploy("ssa-user", T1)
            .apply(Some(&live), &deployment(3, "nginx:1.27"), false)
            .unwrap();
        assert!(owns(&out, "ssa-user", ".spec.replicas"));
        assert!(owns(&out, "kubectl-client-side-apply", ".spec.replicas"));
        assert_eq!(without_managed_fields(&out), without_managed_fields(&live));
        // The object did not change, so upstream stamps no time on the
        // applier's (first) entry.
        assert!(entry(&out, "ssa-user").get("time").is_none());
    }

    #[test]
    fn an_update_by_another_manager_then_an_apply_conflicts() {
        // The HPA hand-over of the server-side apply documentation.
        let applied = stored(
            deploy("applier", T0)
                .apply(None, &deployment(3, "nginx:1.27"), false)
                .unwrap(),
        );
        let scaled = update_with(&deploy("hpa-controller", T1), &applied, |o| {
            o["spec"]["replicas"] = json!(5);
        });
        assert!(owns(&scaled, "hpa-controller", ".spec.replicas"));
        assert!(!owns(&scaled, "applier", ".spec.replicas"));
        let err = deploy("applier", T2)
            .apply(Some(&scaled), &deployment(3, "nginx:1.27"), false)
            .unwrap_err();
        assert_eq!(
            ApiError::from(err).message,
            "Apply failed with 1 conflict: conflict with \"hpa-controller\" using apps/v1: .spec.replicas"
        );
        // Dropping the field from the configuration hands it over.
        let mut cfg = deployment(3, "nginx:1.27");
        cfg["spec"].as_object_mut().unwrap().remove("replicas");
        let out = deploy("applier", T2)
            .apply(Some(&scaled), &cfg, false)
            .unwrap();
        assert_eq!(out["spec"]["replicas"], 5);
        assert!(owns(&out, "hpa-controller", ".spec.replicas"));
        assert!(!owns(&out, "applier", ".spec.replicas"));
    }

    #[test]
    fn containers_merge_by_name_between_appliers() {
        let a = stored(
            deploy("a", T0)
                .apply(None, &deployment(1, "nginx:1.27"), false)
                .unwrap(),
        );
        let sidecar = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"template": {"spec": {"containers": [
                {"name": "sidecar", "image": "envoy:1", "ports": [{"containerPort": 9901}]}
            ]}}}
        });
        let both = stored(deploy("b", T1).apply(Some(&a), &sidecar, false).unwrap());
        let names: Vec<&Value> = both["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["name"])
            .collect();
        assert_eq!(names, [&json!("nginx"), &json!("sidecar")]);
        let c = ".spec.template.spec.containers";
        assert!(owns(&both, "a", &format!("{c}[name=\"nginx\"]")));
        assert!(owns(&both, "b", &format!("{c}[name=\"sidecar\"]")));
        // The port's protocol defaults to TCP in its key, as upstream.
        assert!(owns(
            &both,
            "b",
            &format!(
                "{c}[name=\"sidecar\"].ports[containerPort=9901,protocol=\"TCP\"].containerPort"
            )
        ));
        assert!(!owns(&both, "b", &format!("{c}[name=\"nginx\"]")));
        // b changing a's container conflicts, with upstream's path.
        let mut steal = sidecar.clone();
        steal["spec"]["template"]["spec"]["containers"] =
            json!([{"name": "nginx", "image": "nginx:2"}]);
        let err = deploy("b", T2)
            .apply(Some(&both), &steal, false)
            .unwrap_err();
        assert_eq!(
            ApiError::from(err).message,
            format!("Apply failed with 1 conflict: conflict with \"a\": {c}[name=\"nginx\"].image")
        );
        // b dropping its container removes only that one.
        let mut none = sidecar.clone();
        none["spec"]
            .as_object_mut()
            .unwrap()
            .insert("paused".into(), json!(false));
        none["spec"].as_object_mut().unwrap().remove("template");
        let out = deploy("b", T2).apply(Some(&both), &none, false).unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "nginx", "image": "nginx:1.27"}])
        );
        assert_eq!(out["spec"]["paused"], false);
        assert_eq!(
            entry(&out, "b")["fieldsV1"],
            json!({"f:spec": {"f:paused": {}}})
        );
    }

    #[test]
    fn multiple_conflicts_are_grouped_by_manager() {
        let live = create(&deploy("m1", T0), &deployment(3, "nginx:1.27"));
        let live = update_with(&deploy("m2", T1), &live, |o| {
            o["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.28");
            o["spec"]["paused"] = json!(true);
        });
        let mut cfg = deployment(4, "nginx:2");
        cfg["spec"]["paused"] = json!(false);
        let err = deploy("ssa", T2)
            .apply(Some(&live), &cfg, false)
            .unwrap_err();
        let api = ApiError::from(err);
        assert_eq!(api.code, 409);
        assert_eq!(
            api.message,
            "Apply failed with 3 conflicts: conflicts with \"m1\" using apps/v1:\n- .spec.replicas\nconflicts with \"m2\" using apps/v1:\n- .spec.paused\n- .spec.template.spec.containers[name=\"nginx\"].image"
        );
        let causes = &api.details.as_ref().unwrap()["causes"];
        assert_eq!(causes.as_array().unwrap().len(), 3);
        assert_eq!(causes[1]["field"], ".spec.paused");
    }

    #[test]
    fn updates_to_objects_without_managed_fields_are_not_tracked() {
        let live = stored(deployment(3, "nginx:1.27"));
        let out = update_with(&deploy("someone", T1), &live, |o| {
            o["spec"]["replicas"] = json!(4);
        });
        assert!(out["metadata"].get("managedFields").is_none());
        assert_eq!(out["spec"]["replicas"], 4);
    }

    #[test]
    fn first_apply_to_an_untracked_object_records_the_existing_fields() {
        let live = stored(deployment(3, "nginx:1.27"));
        let mut cfg = deployment(3, "nginx:1.27");
        cfg["metadata"]["labels"] = json!({"team": "a"});
        let out = deploy("applier", T1)
            .apply(Some(&live), &cfg, false)
            .unwrap();
        assert_eq!(managers(&out), ["applier", "before-first-apply"]);
        assert_eq!(entry(&out, "before-first-apply")["operation"], "Update");
        assert!(owns(&out, "before-first-apply", ".spec.replicas"));
        assert!(owns(&out, "applier", ".metadata.labels.team"));
        // The existing fields belong to before-first-apply: changing them
        // conflicts.
        let err = deploy("applier", T2)
            .apply(Some(&stored(out)), &deployment(9, "nginx:1.27"), false)
            .unwrap_err();
        assert_eq!(err.conflicts()[0].manager, "before-first-apply");
    }

    #[test]
    fn managed_fields_in_the_request_are_honoured() {
        let live = create(&deploy("creator", T0), &deployment(3, "nginx:1.27"));
        // `[]` and `[{}]` reset them: the object is no longer tracked.
        for reset in [json!([]), json!([{}])] {
            let out = update_with(&deploy("editor", T1), &live, |o| {
                o["metadata"]["managedFields"] = reset.clone();
                o["spec"]["replicas"] = json!(4);
            });
            assert!(out["metadata"].get("managedFields").is_none(), "{reset}");
        }
        // Other valid ones replace the stored ones.
        let claimed = json!([{
            "manager": "someone", "operation": "Apply", "apiVersion": "apps/v1",
            "time": T0, "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:paused": {}}}
        }]);
        let out = update_with(&deploy("editor", T1), &live, |o| {
            o["metadata"]["managedFields"] = claimed.clone();
            o["spec"]["replicas"] = json!(4);
        });
        assert_eq!(managers(&out), ["someone", "editor"]);
        assert_eq!(
            entry(&out, "editor")["fieldsV1"],
            json!({"f:spec": {"f:replicas": {}}})
        );
        // Invalid ones are ignored: the stored ones stay.
        let out = update_with(&deploy("editor", T1), &live, |o| {
            o["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Patch"}]);
            o["spec"]["replicas"] = json!(4);
        });
        assert_eq!(managers(&out), ["creator", "editor"]);
        // A null (or absent) list keeps the stored ones too.
        let out = update_with(&deploy("editor", T1), &live, |o| {
            o["metadata"]["managedFields"] = Value::Null;
        });
        assert_eq!(
            out["metadata"]["managedFields"],
            live["metadata"]["managedFields"]
        );
    }

    #[test]
    fn status_is_tracked_only_through_the_status_subresource() {
        let live = create(&deploy("creator", T0), &deployment(3, "nginx:1.27"));
        // A status write on the main resource is not tracked.
        let out = update_with(&deploy("creator", T1), &live, |o| {
            o["status"] = json!({"replicas": 3});
        });
        assert_eq!(
            out["metadata"]["managedFields"],
            live["metadata"]["managedFields"]
        );
        let kcm = deploy("kube-controller-manager", T1).with_subresource(Some("status"));
        let out = update_with(&kcm, &live, |o| {
            o["status"] =
                json!({"replicas": 3, "conditions": [{"type": "Available", "status": "True"}]});
            o["metadata"]["labels"] = json!({"ignored": "yes"});
        });
        let e = entry(&out, "kube-controller-manager");
        assert_eq!(e["subresource"], "status");
        assert_eq!(e["apiVersion"], "apps/v1");
        assert_eq!(
            e["fieldsV1"],
            json!({"f:status": {
                "f:conditions": {".": {}, "k:{\"type\":\"Available\"}": {".": {}, "f:status": {}, "f:type": {}}},
                "f:replicas": {}
            }})
        );
        assert_eq!(
            serde_json::to_string(e).unwrap().rfind("subresource"),
            Some(serde_json::to_string(e).unwrap().len() - "subresource\":\"status\"}".len()),
            "subresource is the last key, as upstream writes it"
        );
        // Conflicts name the subresource.
        let mut cfg = deployment(3, "nginx:1.27");
        cfg["status"] = json!({"replicas": 7});
        let err = deploy("ssa", T2)
            .with_subresource(Some("status"))
            .apply(Some(&out), &cfg, false)
            .unwrap_err();
        assert_eq!(
            ApiError::from(err).message,
            "Apply failed with 1 conflict: conflict with \"kube-controller-manager\" with subresource \"status\" using apps/v1: .status.replicas"
        );
    }

    #[test]
    fn managed_fields_cannot_be_set_through_a_subresource() {
        let live = create(&deploy("creator", T0), &deployment(3, "nginx:1.27"));
        let kcm = deploy("kube-controller-manager", T1).with_subresource(Some("status"));
        for mf in [
            json!([]),
            json!([{"manager": "x", "operation": "Apply", "apiVersion": "apps/v1",
                                       "fieldsType": "FieldsV1", "fieldsV1": {}}]),
        ] {
            let out = update_with(&kcm, &live, |o| {
                o["metadata"]["managedFields"] = mf.clone();
                o["status"] = json!({"replicas": 1});
            });
            assert_eq!(
                managers(&out),
                ["creator", "kube-controller-manager"],
                "{mf}"
            );
        }
    }

    #[test]
    fn a_no_op_apply_after_another_appliers_change_keeps_managed_fields() {
        // TestApplyDoesNotChangeManagedFields.
        let z = deployment(1, "nginx:latest");
        let mut z = z;
        z["spec"].as_object_mut().unwrap().remove("replicas");
        let live = stored(deploy("fieldmanager_z", T0).apply(None, &z, false).unwrap());
        let b = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": "web", "namespace": "default"}, "spec": {"replicas": 101}});
        let live = stored(
            deploy("fieldmanager_b", T1)
                .apply(Some(&live), &b, false)
                .unwrap(),
        );
        let again = deploy("fieldmanager_z", T2)
            .apply(Some(&live), &z, false)
            .unwrap();
        assert_eq!(again, live);
        assert_eq!(again["spec"]["replicas"], 101);
    }

    fn crd_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "spec": {
                    "type": "object",
                    "properties": {
                        "size": {"type": "integer"},
                        "ports": {
                            "type": "array",
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["port", "protocol"],
                            "items": {"type": "object", "properties": {
                                "port": {"type": "integer"},
                                "protocol": {"type": "string", "default": "TCP"},
                                "name": {"type": "string"}
                            }}
                        },
                        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                        "args": {"type": "array", "items": {"type": "string"}},
                        "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                                      "additionalProperties": {"type": "string"}},
                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    }
                }
            }
        })
    }

    #[test]
    fn custom_resources_follow_their_schema() {
        let schema = crd_schema();
        let fm = |m: &'static str, now: &'static str| {
            FieldManager::new(
                m,
                "example.com/v1",
                "Widget",
                now,
                Some(SchemaRef::crd(&schema)),
            )
            .with_reset_fields(&[])
        };
        let w = json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "labels": {"a": "b"}, "finalizers": ["x/y"]},
            "spec": {
                "size": 1,
                "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}],
                "tags": ["a", "b"],
                "args": ["--x"],
                "selector": {"k": "v"},
                "extra": {"deep": {"er": 1}}
            }
        });
        let mut created = w.clone();
        fm("creator", T0).update(None, &mut created);
        // No Go zero values for custom resources: `.` on spec too.
        assert_eq!(
            entry(&created, "creator")["fieldsV1"],
            json!({
                "f:metadata": {"f:finalizers": {".": {}, "v:\"x/y\"": {}}, "f:labels": {".": {}, "f:a": {}}},
                "f:spec": {
                    ".": {},
                    "f:args": {},
                    "f:extra": {".": {}, "f:deep": {".": {}, "f:er": {}}},
                    "f:ports": {".": {},
                        "k:{\"port\":53,\"protocol\":\"UDP\"}": {".": {}, "f:port": {}, "f:protocol": {}},
                        "k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}}},
                    "f:selector": {},
                    "f:size": {},
                    "f:tags": {".": {}, "v:\"a\"": {}, "v:\"b\"": {}}
                }
            })
        );
        let live = stored(created);
        let cfg = json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "finalizers": ["z/z"]},
            "spec": {"ports": [{"port": 80, "protocol": "TCP", "name": "http"}], "tags": ["c"],
                      "selector": {"other": "x"}, "args": ["--y"]}
        });
        let err = fm("applier", T1)
            .apply(Some(&live), &cfg, false)
            .unwrap_err();
        let fields: Vec<&str> = err.conflicts().iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, [".spec.args", ".spec.selector"]);
        let out = fm("applier", T1).apply(Some(&live), &cfg, true).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["x/y", "z/z"]));
        assert_eq!(out["spec"]["tags"], json!(["a", "b", "c"]));
        assert_eq!(out["spec"]["selector"], json!({"other": "x"}));
        assert_eq!(out["spec"]["args"], json!(["--y"]));
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "protocol": "TCP", "name": "http"}, {"port": 53, "protocol": "UDP"}])
        );
        assert!(owns(
            &out,
            "applier",
            ".spec.ports[port=80,protocol=\"TCP\"].name"
        ));
        assert!(owns(
            &out,
            "creator",
            ".spec.ports[port=80,protocol=\"TCP\"].port"
        ));
    }

    #[test]
    fn malformed_apply_requests_are_rejected() {
        let fm = deploy("a", T0);
        let mut cfg = deployment(1, "x");
        cfg["metadata"]["managedFields"] = json!([]);
        assert_eq!(
            fm.apply(None, &cfg, false),
            Err(ApplyError::BadRequest(
                "metadata.managedFields must be nil".into()
            ))
        );
        let mut cfg = deployment(1, "x");
        cfg["kind"] = json!("StatefulSet");
        assert_eq!(
            fm.apply(None, &cfg, false),
            Err(ApplyError::BadRequest(
                "invalid object type: apps/v1, Kind=StatefulSet".into()
            ))
        );
        let unchecked = FieldManager { kind: "", ..fm };
        let mut cfg = deployment(1, "x");
        cfg["apiVersion"] = json!("apps/v1beta2");
        assert_eq!(
            unchecked.apply(None, &cfg, false),
            Err(ApplyError::BadRequest(
                "Incorrect version specified in apply patch. Specified patch version: apps/v1beta2, expected: apps/v1".into()
            ))
        );
        let mut cfg = deployment(1, "x");
        cfg["spec"]["template"]["spec"]["containers"] = json!([{"image": "x"}]);
        let err = fm.apply(None, &cfg, false).unwrap_err();
        assert_eq!(
            err,
            ApplyError::Internal(
                "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): .spec.template.spec.containers: element 0: associative list with keys has an element that omits all key fields [\"name\"] (and doesn't have default values for any key fields)".into()
            )
        );
        assert_eq!(ApiError::from(err).code, 500);
        let mut cfg = deployment(1, "x");
        cfg["spec"]["template"]["spec"]["containers"] = json!([{"name": "a"}, {"name": "a"}]);
        let err = fm.apply(None, &cfg, false).unwrap_err();
        assert!(
            err.to_string().ends_with(
                ".spec.template.spec.containers: duplicate entries for key [name=\"a\"]"
            ),
            "{err}"
        );
    }

    #[test]
    fn kubectl_may_take_over_fields_it_applied_client_side() {
        let mut cfg = deployment(3, "nginx:1.27");
        let last = build_last_applied(&cfg);
        cfg["metadata"]["annotations"] = json!({LAST_APPLIED_ANNOTATION: last});
        let live = create(&deploy("kubectl-client-side-apply", T0), &cfg);
        // `kubectl apply --server-side` after client-side apply: the
        // fields last applied and unchanged since do not conflict.
        let new_cfg = deployment(5, "nginx:1.27");
        let out = deploy("kubectl", T1)
            .apply(Some(&live), &new_cfg, false)
            .unwrap();
        assert_eq!(out["spec"]["replicas"], 5);
        assert!(owns(&out, "kubectl", ".spec.replicas"));
        // And the annotation follows the new configuration.
        assert_eq!(
            out["metadata"]["annotations"][LAST_APPLIED_ANNOTATION],
            json!(build_last_applied(&new_cfg))
        );
        assert!(build_last_applied(&new_cfg).starts_with(
            r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default"},"spec":{"replicas":5,"#
        ));
        assert!(build_last_applied(&new_cfg).ends_with("}\n"));
        // A field changed since the last client-side apply still conflicts.
        let scaled = update_with(&deploy("kubectl-scale", T1), &live, |o| {
            o["spec"]["replicas"] = json!(4);
        });
        let err = deploy("kubectl", T2)
            .apply(Some(&scaled), &new_cfg, false)
            .unwrap_err();
        assert_eq!(err.conflicts()[0].manager, "kubectl-scale");
        // Other managers get no such allowance.
        assert!(deploy("other", T1)
            .apply(Some(&live), &new_cfg, false)
            .is_err());
    }

    #[test]
    fn update_managers_are_capped() {
        let mut live = create(&deploy("m00", T0), &deployment(1, "x"));
        for i in 1..=12 {
            let name = format!("m{i:02}");
            let time = format!("2025-01-01T01:{i:02}:00Z");
            live = update_with(&deploy(&name, &time), &live, |o| {
                o["metadata"]["labels"][name.as_str()] = json!("v");
            });
        }
        let names = managers(&live);
        assert_eq!(names.len(), MAX_UPDATE_MANAGERS);
        assert_eq!(names[0], "ancient-changes");
        assert!(owns(&live, "ancient-changes", ".spec.replicas"));
        assert!(owns(&live, "ancient-changes", ".metadata.labels.m02"));
        assert!(owns(&live, "m12", ".metadata.labels.m12"));
    }

    #[test]
    fn manager_names_from_the_user_agent() {
        assert_eq!(manager_or_user_agent(Some("mine"), "kubectl/v1.33"), "mine");
        assert_eq!(
            manager_or_user_agent(None, "kubectl/v1.33.0 (linux/amd64) kubernetes/abc"),
            "kubectl"
        );
        assert_eq!(manager_or_user_agent(Some(""), "a\u{7}b/1"), "ab");
        assert_eq!(manager_or_user_agent(None, &"x".repeat(200)).len(), 128);
    }

    /// Run a case of structured-merge-diff's merge tests: operations
    /// (manager, apply or update, object), then the expected object and
    /// each manager's paths.
    fn smd_case(
        schema: &Value,
        ops: &[(&str, bool, Value)],
        object: Value,
        owners: &[(&str, &[&str])],
    ) {
        let mut live: Option<Value> = None;
        for (i, (manager, is_apply, obj)) in ops.iter().enumerate() {
            let now = format!("2025-01-01T00:0{i}:00Z");
            let fm = FieldManager::new(manager, "v1", "", &now, Some(SchemaRef::Crd(schema)))
                .with_reset_fields(&[]);
            let mut obj = obj.clone();
            obj["apiVersion"] = json!("v1");
            live = Some(if *is_apply {
                fm.apply(live.as_ref(), &obj, false).unwrap()
            } else {
                if let Some(mf) = live.as_ref().and_then(managed_fields_of) {
                    obj["metadata"] = json!({"managedFields": mf});
                }
                fm.update(live.as_ref(), &mut obj);
                obj
            });
        }
        let live = live.unwrap();
        let mut want_object = object;
        want_object["apiVersion"] = json!("v1");
        let mut got_object = without_managed_fields(&live);
        if got_object["metadata"] == json!({}) {
            got_object.as_object_mut().unwrap().remove("metadata");
        }
        assert_eq!(got_object, want_object, "{live:#}");
        let mut got = managers(&live);
        got.sort();
        let mut want: Vec<&str> = owners.iter().map(|(m, _)| *m).collect();
        want.sort();
        assert_eq!(got, want, "{live:#}");
        for (manager, paths) in owners {
            let got: Vec<String> = fields_of(&live, manager)
                .paths()
                .iter()
                .map(|p| path_string(p))
                .collect();
            let mut got = got;
            got.sort();
            let mut want: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
            want.sort();
            assert_eq!(got, want, "{manager}: {live:#}");
        }
    }

    fn set_case(ops: &[(&str, bool, &[&str])], object: &[&str], owners: &[(&str, &[&str])]) {
        let schema = json!({"type": "object", "properties": {"list": {
            "type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}});
        let ops: Vec<(&str, bool, Value)> = ops
            .iter()
            .map(|(m, a, list)| (*m, *a, json!({ "list": list })))
            .collect();
        let owners: Vec<(&str, Vec<String>)> = owners
            .iter()
            .map(|(m, items)| {
                (
                    *m,
                    items.iter().map(|i| format!(".list[=\"{i}\"]")).collect(),
                )
            })
            .collect();
        let owners: Vec<(&str, Vec<&str>)> = owners
            .iter()
            .map(|(m, paths)| (*m, paths.iter().map(String::as_str).collect()))
            .collect();
        let owners: Vec<(&str, &[&str])> = owners.iter().map(|(m, p)| (*m, p.as_slice())).collect();
        smd_case(&schema, &ops, json!({ "list": object }), &owners);
    }

    fn nested_schema() -> Value {
        json!({"type": "object", "properties": {"listOfLists": {
            "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "properties": {
                "name": {"type": "string"},
                "value": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}
            }}
        }}})
    }

    // merge/multiple_appliers_test.go, TestMultipleAppliersNestedType.
    #[test]
    fn nested_lists_prune_as_upstream() {
        let schema = nested_schema();
        let a = r#".listOfLists[name="a"]"#;
        let a_name = r#".listOfLists[name="a"].name"#;
        let b = r#".listOfLists[name="b"]"#;
        let b_name = r#".listOfLists[name="b"].name"#;
        let one_a = || ("apply-one", true, json!({"listOfLists": [{"name": "a"}]}));
        let one_ab = || {
            (
                "apply-one",
                true,
                json!({"listOfLists": [{"name": "a"}, {"name": "b", "value": ["c"]}]}),
            )
        };
        // remove_one_keep_one_with_two_sub_items
        smd_case(
            &schema,
            &[
                one_ab(),
                (
                    "apply-two",
                    true,
                    json!({"listOfLists": [{"name": "b", "value": ["d"]}]}),
                ),
                one_a(),
            ],
            json!({"listOfLists": [{"name": "a"}, {"name": "b", "value": ["d"]}]}),
            &[
                ("apply-one", &[a, a_name]),
                (
                    "apply-two",
                    &[b, b_name, r#".listOfLists[name="b"].value[="d"]"#],
                ),
            ],
        );
        // remove_one_keep_one_with_dangling_subitem
        smd_case(
            &schema,
            &[
                one_ab(),
                (
                    "apply-two",
                    true,
                    json!({"listOfLists": [{"name": "b", "value": ["d"]}]}),
                ),
                (
                    "controller",
                    false,
                    json!({"listOfLists": [{"name": "a"}, {"name": "b", "value": ["c", "d", "e"]}]}),
                ),
                one_a(),
            ],
            json!({"listOfLists": [{"name": "a"}, {"name": "b", "value": ["d", "e"]}]}),
            &[
                ("apply-one", &[a, a_name]),
                (
                    "apply-two",
                    &[b, b_name, r#".listOfLists[name="b"].value[="d"]"#],
                ),
                ("controller", &[r#".listOfLists[name="b"].value[="e"]"#]),
            ],
        );
        // remove_one_with_dangling_subitem_keep_one
        smd_case(
            &schema,
            &[
                one_ab(),
                (
                    "apply-two",
                    true,
                    json!({"listOfLists": [{"name": "a", "value": ["b"]}]}),
                ),
                (
                    "controller",
                    false,
                    json!({"listOfLists": [{"name": "a", "value": ["b"]}, {"name": "b", "value": ["c", "d"]}]}),
                ),
                one_a(),
            ],
            json!({"listOfLists": [{"name": "a", "value": ["b"]}]}),
            &[
                ("apply-one", &[a, a_name]),
                (
                    "apply-two",
                    &[a, a_name, r#".listOfLists[name="a"].value[="b"]"#],
                ),
            ],
        );
    }

    // TestMultipleAppliersNestedType/multiple_appliers_recursive_map.
    #[test]
    fn recursive_maps_prune_as_upstream() {
        let schema = json!({"type": "object", "properties": {"mapOfMapsRecursive": {
            "type": "object", "x-kubernetes-preserve-unknown-fields": true}}});
        let m = |p: &str| format!(".mapOfMapsRecursive{p}");
        let (a, c, cd, cde, cdef, cdefg) = (
            m(".a"),
            m(".c"),
            m(".c.d"),
            m(".c.d.e"),
            m(".c.d.e.f"),
            m(".c.d.e.f.g"),
        );
        let root = m("");
        smd_case(
            &schema,
            &[
                (
                    "apply-one",
                    true,
                    json!({"mapOfMapsRecursive": {"a": {"b": null}, "c": {"d": null}}}),
                ),
                (
                    "apply-two",
                    true,
                    json!({"mapOfMapsRecursive": {"a": null, "c": {"d": null}}}),
                ),
                (
                    "controller-one",
                    false,
                    json!({"mapOfMapsRecursive": {
                    "a": {"b": {"c": null}}, "c": {"d": {"e": null}}}}),
                ),
                (
                    "controller-two",
                    false,
                    json!({"mapOfMapsRecursive": {
                    "a": {"b": {"c": {"d": null}}}, "c": {"d": {"e": {"f": null}}}}}),
                ),
                (
                    "controller-one",
                    false,
                    json!({"mapOfMapsRecursive": {
                    "a": {"b": {"c": {"d": {"e": null}}}}, "c": {"d": {"e": {"f": {"g": null}}}}}}),
                ),
                ("apply-one", true, json!({"mapOfMapsRecursive": null})),
            ],
            json!({"mapOfMapsRecursive": {"a": null, "c": {"d": {"e": {"f": {"g": null}}}}}}),
            &[
                ("apply-one", &[root.as_str()]),
                ("apply-two", &[a.as_str(), c.as_str(), cd.as_str()]),
                ("controller-one", &[cde.as_str(), cdefg.as_str()]),
                ("controller-two", &[cdef.as_str()]),
            ],
        );
    }

    // TestMultipleApplierAtomicMaps/force.
    #[test]
    fn atomic_maps_conflict_as_a_whole() {
        let schema = json!({"type": "object", "properties": {"atomicMap": {
            "type": "object", "x-kubernetes-map-type": "atomic",
            "additionalProperties": {"type": "string"}}}});
        let fm = |m: &'static str| {
            FieldManager::new(m, "v1", "", T0, Some(SchemaRef::Crd(&schema))).with_reset_fields(&[])
        };
        let one = fm("apply-one")
            .apply(
                None,
                &json!({"apiVersion": "v1", "atomicMap": {"field1": "a"}}),
                false,
            )
            .unwrap();
        let two = json!({"apiVersion": "v1", "atomicMap": {"field2": "b"}});
        let err = fm("apply-two").apply(Some(&one), &two, false).unwrap_err();
        assert_eq!(err.conflicts()[0].field, ".atomicMap");
        assert_eq!(err.conflicts()[0].manager, "apply-one");
        let out = fm("apply-two").apply(Some(&one), &two, true).unwrap();
        assert_eq!(out["atomicMap"], json!({"field2": "b"}));
        assert_eq!(managers(&out), ["apply-two"]);
        assert_eq!(
            entry(&out, "apply-two")["fieldsV1"],
            json!({"f:atomicMap": {}})
        );
    }

    // TestMultipleAppliersFieldUnsetting, at one version.
    #[test]
    fn unsetting_fields_as_upstream() {
        let schema = json!({"type": "object", "properties": {"struct": {"type": "object", "properties": {
            "name": {"type": "string"},
            "scalarField": {"type": "string"},
            "complexField": {"type": "object", "properties": {"name": {"type": "string"}}}
        }}}});
        // unset_scalar_sole_owner
        smd_case(
            &schema,
            &[
                (
                    "apply-one",
                    true,
                    json!({"struct": {"name": "a", "scalarField": "a"}}),
                ),
                ("apply-one", true, json!({"struct": {"name": "a"}})),
            ],
            json!({"struct": {"name": "a"}}),
            &[("apply-one", &[".struct.name"])],
        );
        // unset_scalar_shared_with_applier
        smd_case(
            &schema,
            &[
                (
                    "apply-one",
                    true,
                    json!({"struct": {"name": "a", "scalarField": "a"}}),
                ),
                ("apply-two", true, json!({"struct": {"scalarField": "a"}})),
                ("apply-one", true, json!({"struct": {"name": "a"}})),
            ],
            json!({"struct": {"name": "a", "scalarField": "a"}}),
            &[
                ("apply-one", &[".struct.name"]),
                ("apply-two", &[".struct.scalarField"]),
            ],
        );
        // unset_scalar_shared_with_updater
        smd_case(
            &schema,
            &[
                (
                    "updater",
                    false,
                    json!({"struct": {"name": "a", "scalarField": "a"}}),
                ),
                (
                    "applier",
                    true,
                    json!({"struct": {"name": "a", "scalarField": "a"}}),
                ),
                ("applier", true, json!({"struct": {"name": "a"}})),
            ],
            json!({"struct": {"name": "a", "scalarField": "a"}}),
            &[
                (
                    "updater",
                    &[".struct", ".struct.name", ".struct.scalarField"],
                ),
                ("applier", &[".struct.name"]),
            ],
        );
        // updater_claims_field
        smd_case(
            &schema,
            &[
                (
                    "applier",
                    true,
                    json!({"struct": {"name": "a", "scalarField": "a"}}),
                ),
                (
                    "updater",
                    false,
                    json!({"struct": {"name": "a", "scalarField": "b"}}),
                ),
            ],
            json!({"struct": {"name": "a", "scalarField": "b"}}),
            &[
                ("updater", &[".struct.scalarField"]),
                ("applier", &[".struct.name"]),
            ],
        );
        // unset_complex_sole_owner
        smd_case(
            &schema,
            &[
                (
                    "apply-one",
                    true,
                    json!({"struct": {"name": "a", "complexField": {"name": "b"}}}),
                ),
                ("apply-one", true, json!({"struct": {"name": "a"}})),
            ],
            json!({"struct": {"name": "a"}}),
            &[("apply-one", &[".struct.name"])],
        );
        // unset_complex_shared_with_applier
        smd_case(
            &schema,
            &[
                (
                    "apply-one",
                    true,
                    json!({"struct": {"name": "a", "complexField": {"name": "b"}}}),
                ),
                (
                    "apply-two",
                    true,
                    json!({"struct": {"complexField": {"name": "b"}}}),
                ),
                ("apply-one", true, json!({"struct": {"name": "a"}})),
            ],
            json!({"struct": {"name": "a", "complexField": {"name": "b"}}}),
            &[
                ("apply-one", &[".struct.name"]),
                ("apply-two", &[".struct.complexField.name"]),
            ],
        );
    }

    #[test]
    fn sets_merge_as_upstream() {
        // apply_twice
        set_case(
            &[
                ("default", true, &["a", "c"]),
                ("default", true, &["a", "b", "c", "d"]),
            ],
            &["a", "b", "c", "d"],
            &[("default", &["a", "b", "c", "d"])],
        );
        // apply_update_apply_no_overlap
        set_case(
            &[
                ("default", true, &["a", "c"]),
                ("controller", false, &["a", "b", "c", "d"]),
                ("default", true, &["a", "aprime", "c", "cprime"]),
            ],
            &["a", "b", "aprime", "c", "d", "cprime"],
            &[
                ("default", &["a", "aprime", "c", "cprime"]),
                ("controller", &["b", "d"]),
            ],
        );
        // apply_update_apply_with_overlap
        set_case(
            &[
                ("default", true, &["a", "c"]),
                ("controller", false, &["a", "b", "c", "d"]),
                ("default", true, &["a", "b", "c"]),
            ],
            &["a", "b", "c", "d"],
            &[("default", &["a", "b", "c"]), ("controller", &["b", "d"])],
        );
        // apply_twice_reorder
        set_case(
            &[
                ("default", true, &["a", "b", "c", "d"]),
                ("default", true, &["a", "d", "c", "b"]),
            ],
            &["a", "d", "c", "b"],
            &[("default", &["a", "b", "c", "d"])],
        );
        // apply_update_apply_reorder
        set_case(
            &[
                ("default", true, &["a", "b", "c", "d"]),
                ("controller", false, &["a", "d", "c", "b"]),
                ("default", true, &["a", "b", "c", "d"]),
            ],
            &["a", "b", "c", "d"],
            &[("default", &["a", "b", "c", "d"])],
        );
        // apply_twice_remove
        set_case(
            &[
                ("default", true, &["a", "b", "c", "d"]),
                ("default", true, &["a", "c"]),
            ],
            &["a", "c"],
            &[("default", &["a", "c"])],
        );
    }

    #[test]
    fn fields_owned_by_others_survive_pruning() {
        // An applier stops applying a label a controller also set: the
        // label stays, owned by the controller.
        let mut cfg = deployment(1, "x");
        cfg["metadata"]["labels"] = json!({"a": "1", "b": "2"});
        let live = stored(deploy("applier", T0).apply(None, &cfg, false).unwrap());
        let live = update_with(&deploy("controller", T1), &live, |o| {
            o["metadata"]["labels"]["b"] = json!("3");
        });
        cfg["metadata"]["labels"] = json!({"a": "1"});
        let out = deploy("applier", T2)
            .apply(Some(&live), &cfg, false)
            .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"a": "1", "b": "3"}));
        // A field nobody else owns goes.
        cfg["metadata"].as_object_mut().unwrap().remove("labels");
        let out = deploy("applier", T3)
            .apply(Some(&stored(out)), &cfg, false)
            .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"b": "3"}));
    }

    fn arb_config() -> impl Strategy<Value = Value> {
        let container = (
            prop::sample::select(vec!["nginx:1", "nginx:2", "envoy:1"]),
            prop::collection::btree_map(1i64..4, prop::option::of(prop::bool::ANY), 0..3),
            prop::option::of(prop::collection::vec("[a-c]{1,2}", 1..3)),
        );
        (
            prop::option::of(0i64..5),
            prop::collection::btree_map("[a-c]", "[x-z]", 1..3),
            prop::collection::btree_map(prop::sample::select(vec!["app", "side", "init"]), container, 1..3),
            prop::option::of(prop::bool::ANY),
        )
            .prop_map(|(replicas, labels, containers, paused)| {
                let containers: Vec<Value> = containers
                    .into_iter()
                    .map(|(name, (image, ports, args))| {
                        let mut c = json!({"name": name, "image": image});
                        if !ports.is_empty() {
                            c["ports"] = ports
                                .into_iter()
                                .map(|(port, udp)| match udp {
                                    None => json!({"containerPort": port}),
                                    Some(true) => json!({"containerPort": port, "protocol": "UDP"}),
                                    Some(false) => json!({"containerPort": port, "protocol": "TCP", "name": format!("p{port}")}),
                                })
                                .collect();
                        }
                        if let Some(args) = args {
                            c["args"] = json!(args);
                        }
                        c
                    })
                    .collect();
                let mut d = json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "web", "labels": labels},
                    "spec": {"template": {"metadata": {"labels": labels},
                                          "spec": {"containers": containers}}}
                });
                if let Some(r) = replicas {
                    d["spec"]["replicas"] = json!(r);
                }
                if let Some(p) = paused {
                    d["spec"]["paused"] = json!(p);
                }
                d
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn applying_twice_is_a_no_op(cfg in arb_config()) {
            let first = stored(deploy("applier", T0).apply(None, &cfg, false).unwrap());
            let second = deploy("applier", T1).apply(Some(&first), &cfg, false).unwrap();
            prop_assert_eq!(&second, &first);
            prop_assert_eq!(without_managed_fields(&first), stored(cfg.clone()));
        }

        #[test]
        fn a_sole_applier_gets_exactly_its_configuration(a in arb_config(), b in arb_config()) {
            let after_a = stored(deploy("applier", T0).apply(None, &a, false).unwrap());
            let after_b = deploy("applier", T1).apply(Some(&after_a), &b, false).unwrap();
            let fresh = stored(deploy("applier", T1).apply(None, &b, false).unwrap());
            prop_assert_eq!(without_managed_fields(&after_b), without_managed_fields(&fresh));
            prop_assert_eq!(
                &entry(&after_b, "applier")["fieldsV1"],
                &entry(&fresh, "applier")["fieldsV1"]
            );
        }

        #[test]
        fn managed_fields_round_trip(cfg in arb_config()) {
            let out = deploy("applier", T0).apply(None, &cfg, false).unwrap();
            let set = to_field_set(&cfg, SchemaRef::builtin("apps", "v1", "Deployment")).unwrap();
            let v1 = set.to_fields_v1();
            prop_assert_eq!(FieldSet::from_fields_v1(&v1).unwrap(), set.clone());
            let stripped = set.difference(strip_set());
            prop_assert_eq!(&entry(&out, "applier")["fieldsV1"], &stripped.to_fields_v1());
        }
    }
}
