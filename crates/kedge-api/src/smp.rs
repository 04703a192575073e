//! Strategic merge patch (`application/strategic-merge-patch+json`), with the
//! semantics of upstream's `k8s.io/apimachinery/pkg/util/strategicpatch`
//! when the API server applies a patch.
//!
//! A strategic merge patch is a JSON merge patch (RFC 7396: objects merge
//! recursively, `null` deletes a key, anything else replaces) in which lists
//! can merge too, as the schema ([`crate::patch_meta`]) says:
//!
//! * a list with patch strategy `merge` and a merge key (`containers` by
//!   `name`, `ports` by `containerPort`) merges entry by entry: a patch entry
//!   whose key matches an existing entry is merged into it, others are
//!   added;
//! * a list of scalars with patch strategy `merge` (`finalizers`) becomes
//!   the union of both, without duplicates;
//! * every other list (`tolerations`, `args`) is replaced, as is a field
//!   with patch strategy `replace`.
//!
//! The order of a merged list is upstream's, exactly: the entries the patch
//! names come in the patch's order, the entries only the server has keep
//! their relative order, and the two are interleaved so that a server-only
//! entry comes before a named one only where the original had it before
//! that one. An entry new to the list therefore comes before the server-only
//! entries not yet placed: adding container `b` to `[a]` gives `[b, a]`,
//! as `kubectl patch` on a real cluster shows. With `$setElementOrder`,
//! upstream orders server-only entries by the original Go slice *after*
//! deletions and additions wrote into it in place; kedge reproduces that
//! too (see `merge_list_and_view`), so that `kubectl apply` results match.
//!
//! Directives:
//!
//! * `$patch: replace` in an object replaces the object with the rest of the
//!   patch object; as a list entry (`[{"$patch": "replace"}, ...]`) it
//!   replaces the list with the other entries;
//! * `$patch: delete` deletes the object (it becomes `{}` where it was a
//!   field with a value, and disappears where it was new); as a list entry
//!   with the merge key it deletes the matching entries;
//! * any other `$patch` value is an error ("unknown patch type"), and so is
//!   `$patch: merge`, which upstream accepts in no position when applying
//!   a patch;
//! * `$setElementOrder/<list>: [...]` orders a list (entries by merge key,
//!   or scalars), server-only entries keeping their relative place;
//! * `$retainKeys: [...]` drops every key of the original object that is not
//!   listed (every key the patch sets must be listed);
//! * `$deleteFromPrimitiveList/<list>: [...]` removes these values from a
//!   list of scalars.
//!
//! Without a schema ([`strategic_merge_patch`] with `None`, or below a field
//! the schema does not know, or inside a free-form value) every list is
//! replaced, so a patch without directives is applied exactly as a JSON
//! merge patch; the directives keep their meaning. Upstream's API server
//! answers 415 to a strategic merge patch of a custom resource: whether to
//! do the same is the caller's choice.
//!
//! Where upstream leaves a directive in the merged object to be dropped by
//! its conversion to a Go type, kedge (which stores the JSON) drops it here:
//! the result never holds `$patch`, `$retainKeys`, `$setElementOrder/...` or
//! `$deleteFromPrimitiveList/...` keys, nor `null` values that came from the
//! patch. A new field whose value is an object with `$patch: replace` takes
//! the rest of that object (upstream drops the field).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use crate::patch_meta::{PatchStrategy, Schema};
use crate::status::ApiError;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

/// Go's `reflect` names for the types upstream's messages mention.
const GO_MAP: &str = "map[string]interface {}";
const GO_SLICE: &str = "[]interface {}";

type Object = Map<String, Value>;

/// Why a strategic merge patch could not be applied. Messages are
/// upstream's; [`SmpError::status_code`] says which HTTP status to answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SmpError {
    /// The original or the patch is not a JSON object.
    #[error("invalid JSON document")]
    BadJsonDoc,
    #[error("lists of lists are not supported")]
    ListOfLists,
    /// A `$deleteFromPrimitiveList` key without `/<list>`.
    #[error("invalid patch format of primitive list")]
    BadPrimitiveListFormat,
    /// `$retainKeys` is not a list, or the patch sets a key it does not list.
    #[error("invalid patch format of retainKeys")]
    BadRetainKeysFormat,
    /// A `$setElementOrder` key without `/<list>`.
    #[error("invalid patch format of setElementOrder list")]
    BadSetElementOrderFormat,
    /// A `$patch` value other than `replace` or `delete`.
    #[error("unknown patch type: {directive} in map: {map}")]
    UnknownPatchType { directive: String, map: String },
    /// `$patch: merge` as a list entry.
    #[error("merging lists cannot yet be specified in the patch")]
    MergeDirectiveInList,
    /// An entry of a merging list without the merge key.
    #[error("map: {map} does not contain declared merge key: {key}")]
    NoMergeKey { map: String, key: String },
    /// A list of objects that should merge, but the schema names no merge key.
    #[error("cannot merge lists without merge key for {list}")]
    NoMergeKeyDeclared { list: String },
    /// A value of the wrong JSON type where a list or object was needed.
    #[error("expected a {expected}, but received a {actual}")]
    BadArgType {
        expected: &'static str,
        actual: &'static str,
    },
    #[error("list element types are not identical: {lists}")]
    MixedListElements { lists: String },
    /// The patch list's entries are not in the `$setElementOrder` list's
    /// order.
    #[error("The order in patch list:\n{patch}\n doesn't match $setElementOrder list:\n{order}\n")]
    SetElementOrderMismatch { patch: String, order: String },
}

pub type Result<T> = std::result::Result<T, SmpError>;

impl SmpError {
    /// 400 for a malformed document or directive (as upstream's
    /// `interpretStrategicMergePatchError`), 422 for a patch that is well
    /// formed but cannot apply to this object. (Upstream answers 422 only
    /// for lists of lists and a 500 for the rest; they are the client's
    /// mistakes, hence 422 here.)
    pub fn status_code(&self) -> u16 {
        match self {
            SmpError::BadJsonDoc
            | SmpError::BadPrimitiveListFormat
            | SmpError::BadRetainKeysFormat
            | SmpError::BadSetElementOrderFormat => 400,
            _ => 422,
        }
    }
}

impl From<SmpError> for ApiError {
    fn from(e: SmpError) -> ApiError {
        match e.status_code() {
            400 => ApiError::bad_request(e.to_string()),
            code => ApiError::new(code, "Invalid", e.to_string()),
        }
    }
}

/// Apply a strategic merge `patch` to `original`. `schema` is the root
/// schema of the object's kind ([`crate::patch_meta::root`]); `None` gives
/// JSON merge patch semantics for lists (see the module documentation).
/// A `null` original counts as `{}`.
pub fn strategic_merge_patch(
    original: &Value,
    patch: &Value,
    schema: Option<Schema<'_>>,
) -> Result<Value> {
    let original = document(original)?;
    let patch = document(patch)?;
    merge_object(original, patch, schema).map(Value::Object)
}

fn document(v: &Value) -> Result<Object> {
    match v {
        Value::Object(m) => Ok(m.clone()),
        Value::Null => Ok(Object::new()),
        _ => Err(SmpError::BadJsonDoc),
    }
}

// ---------------------------------------------------------------------------
// Objects

/// Merge `patch` into `original`, an object described by `schema`.
fn merge_object(
    mut original: Object,
    mut patch: Object,
    schema: Option<Schema<'_>>,
) -> Result<Object> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => {
                patch.shift_remove(DIRECTIVE);
                Ok(adopt_object_fields(patch)?)
            }
            Some("delete") => Ok(Object::new()),
            _ => Err(unknown_patch_type(directive, &patch)),
        };
    }

    retain_keys(&mut original, &mut patch)?;
    set_element_order(&mut original, &mut patch, schema)?;

    for (key, patch_value) in patch {
        let (key, delete_list) = if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            (
                list_name(&key, DELETE_FROM_PRIMITIVE_LIST)?.to_string(),
                true,
            )
        } else {
            (key, false)
        };
        if patch_value.is_null() {
            original.shift_remove(&key);
            continue;
        }
        let field = schema.and_then(|s| s.field(&key));
        let strategy = field.and_then(|f| f.patch_strategy());
        let merged = match (original.get_mut(&key), patch_value) {
            (None, patch_value) => {
                if delete_list {
                    continue;
                }
                adopt(patch_value)?
            }
            (Some(Value::Object(current)), Value::Object(patch_object))
                if strategy != Some(PatchStrategy::Replace) =>
            {
                let current = std::mem::take(current);
                Some(Value::Object(merge_object(current, patch_object, field)?))
            }
            (Some(Value::Array(current)), Value::Array(patch_list))
                if strategy == Some(PatchStrategy::Merge) || delete_list =>
            {
                let current = std::mem::take(current);
                Some(Value::Array(merge_list(
                    current,
                    patch_list,
                    field,
                    delete_list,
                )?))
            }
            (Some(_), patch_value) => {
                // Different types, scalars, a list that does not merge or a
                // field whose strategy is `replace`: the patch's value wins.
                // A deletion list has nothing to say about such a field.
                if delete_list {
                    continue;
                }
                adopt(patch_value)?
            }
        };
        match merged {
            Some(v) => {
                original.insert(key, v);
            }
            None => {
                original.shift_remove(&key);
            }
        }
    }
    Ok(original)
}

/// `$retainKeys`: drop the original's keys that are not listed.
fn retain_keys(original: &mut Object, patch: &mut Object) -> Result<()> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(SmpError::BadRetainKeysFormat);
    };
    let listed = |key: &str| retain.iter().any(|k| k.as_str() == Some(key));
    for (key, value) in patch.iter() {
        if value.is_null()
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || key.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !listed(key) {
            return Err(SmpError::BadRetainKeysFormat);
        }
    }
    original.retain(|key, _| listed(key));
    Ok(())
}

/// `$setElementOrder/<list>`: merge the patch's list (if any) into the
/// original's and order the result; both keys leave the patch.
fn set_element_order(
    original: &mut Object,
    patch: &mut Object,
    schema: Option<Schema<'_>>,
) -> Result<()> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for key in keys {
        let Some(order) = patch.shift_remove(&key) else {
            continue;
        };
        let Value::Array(order) = order else {
            return Err(bad_arg_type(GO_SLICE, &order));
        };
        let name = list_name(&key, SET_ELEMENT_ORDER)?.to_string();
        let original_list = list_field(original, &name)?;
        let patch_list = list_field(patch, &name)?;
        let field = schema.and_then(|s| s.field(&name));
        let merge_key = field.and_then(|f| f.merge_key());
        check_order(patch_list.as_deref().unwrap_or_default(), &order, merge_key)?;

        // `server_order` is what upstream orders server-only entries by: the
        // original list, as merging left it (see `merge_list_and_view`).
        let (merged, server_order) = match (original_list, patch_list) {
            (None, None) => continue,
            (Some(current), None) => (current.clone(), current),
            (None, Some(patch_list)) => (adopt_list(patch_list)?, Vec::new()),
            (Some(current), Some(patch_list)) => {
                if field.and_then(|f| f.patch_strategy()) == Some(PatchStrategy::Merge) {
                    merge_list_and_view(current, patch_list, field, false)?
                } else {
                    (adopt_list(patch_list)?, current)
                }
            }
        };
        let ordered = match element_kind(&server_order, &merged)? {
            // Nothing to order.
            None => merged,
            Some(kind) => {
                let key = if kind == ElementKind::Object {
                    merge_key
                } else {
                    None
                };
                let named_keys = Positions::of(&order, key);
                let (named, server_only) = merged
                    .into_iter()
                    .partition(|v| named_keys.of_item(v).is_some());
                normalize_order(named, server_only, &order, &server_order, key)?
            }
        };
        original.insert(name.clone(), Value::Array(ordered));
        patch.shift_remove(&name);
    }
    Ok(())
}

/// The list at `name`, if there is one (`null` counts as none).
fn list_field(object: &Object, name: &str) -> Result<Option<Vec<Value>>> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(list)) => Ok(Some(list.clone())),
        Some(other) => Err(bad_arg_type(GO_SLICE, other)),
    }
}

/// The `<list>` of `<prefix>/<list>`.
fn list_name<'k>(key: &'k str, prefix: &str) -> Result<&'k str> {
    match key.split_once('/') {
        Some((p, name)) if p == prefix => Ok(name),
        _ if prefix == SET_ELEMENT_ORDER => Err(SmpError::BadSetElementOrderFormat),
        _ => Err(SmpError::BadPrimitiveListFormat),
    }
}

/// The patch list's entries must appear in the `$setElementOrder` list, in
/// the same relative order (deletions and other directive entries aside).
fn check_order(patch_list: &[Value], order: &[Value], merge_key: Option<&str>) -> Result<()> {
    if patch_list.is_empty() || order.is_empty() {
        return Ok(());
    }
    let mut entries = Vec::with_capacity(patch_list.len());
    for entry in patch_list {
        if merge_key.is_some() {
            let Value::Object(m) = entry else {
                return Err(bad_arg_type(GO_MAP, entry));
            };
            if m.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                continue;
            }
        }
        entries.push(entry);
    }
    let (mut p, mut o) = (0, 0);
    while p < entries.len() && o < order.len() {
        if has_directive(entries[p]) {
            p += 1;
            continue;
        }
        if same_entry(entries[p], &order[o], merge_key)? {
            p += 1;
        }
        o += 1;
    }
    if p < entries.len() {
        return Err(SmpError::SetElementOrderMismatch {
            patch: go_format_list(patch_list),
            order: go_format_list(order),
        });
    }
    Ok(())
}

fn same_entry(left: &Value, right: &Value, merge_key: Option<&str>) -> Result<bool> {
    let Some(key) = merge_key else {
        return Ok(left == right);
    };
    Ok(merge_key_value(left, key)? == merge_key_value(right, key)?)
}

fn merge_key_value<'v>(entry: &'v Value, key: &str) -> Result<&'v Value> {
    let Value::Object(m) = entry else {
        return Err(bad_arg_type(GO_MAP, entry));
    };
    m.get(key).ok_or_else(|| no_merge_key(m, key))
}

fn has_directive(v: &Value) -> bool {
    v.as_object().is_some_and(|m| m.contains_key(DIRECTIVE))
}

// ---------------------------------------------------------------------------
// Lists

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ElementKind {
    Object,
    String,
    Number,
    Bool,
    Null,
}

/// The one kind of all entries of both lists; `None` when both are empty.
fn element_kind(a: &[Value], b: &[Value]) -> Result<Option<ElementKind>> {
    let mut kind = None;
    for v in a.iter().chain(b) {
        let k = match v {
            Value::Array(_) if kind.is_none() => return Err(SmpError::ListOfLists),
            Value::Array(_) => None,
            Value::Object(_) => Some(ElementKind::Object),
            Value::String(_) => Some(ElementKind::String),
            Value::Number(_) => Some(ElementKind::Number),
            Value::Bool(_) => Some(ElementKind::Bool),
            Value::Null => Some(ElementKind::Null),
        };
        match (kind, k) {
            (None, Some(k)) => kind = Some(k),
            (Some(seen), Some(k)) if seen == k => {}
            _ => {
                return Err(SmpError::MixedListElements {
                    lists: format!("[{} {}]", go_format_list(a), go_format_list(b)),
                })
            }
        }
    }
    Ok(kind)
}

/// Merge a list with patch strategy `merge` (or apply a deletion list).
fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    field: Option<Schema<'_>>,
    delete_list: bool,
) -> Result<Vec<Value>> {
    merge_list_and_view(original, patch, field, delete_list).map(|(merged, _)| merged)
}

/// [`merge_list`], and what upstream's `$setElementOrder` handling then sees
/// as the original list. Upstream deletes entries from, and appends new
/// entries to, the original Go slice in place, so the slice it later orders
/// server-only entries by holds the survivors first, then the first added
/// entries in the slots that deletions freed. kedge orders as upstream does,
/// so it keeps the same view (as far as looking entries up in it goes).
fn merge_list_and_view(
    original: Vec<Value>,
    patch: Vec<Value>,
    field: Option<Schema<'_>>,
    delete_list: bool,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let Some(kind) = element_kind(&original, &patch)? else {
        return Ok((original.clone(), original));
    };
    let merge_key = field.and_then(|f| f.merge_key());

    if kind != ElementKind::Object {
        let in_patch: HashSet<String> = patch.iter().map(canonical).collect();
        if delete_list {
            let kept = original
                .iter()
                .filter(|v| !in_patch.contains(&canonical(v)))
                .cloned()
                .collect();
            return Ok((kept, original));
        }
        if merge_key.is_some() {
            // Upstream looks entries up by merge key, which scalars lack.
            let scalar = original.iter().chain(&patch).next().unwrap_or(&Value::Null);
            return Err(bad_arg_type(GO_MAP, scalar));
        }
        let mut seen = HashSet::new();
        let (named, server_only) = original
            .iter()
            .chain(&patch)
            .filter(|v| seen.insert(canonical(v)))
            .cloned()
            .partition(|v| in_patch.contains(&canonical(v)));
        let merged = normalize_order(named, server_only, &patch, &original, None)?;
        return Ok((merged, original));
    }

    let Some(key) = merge_key else {
        let list = field
            .and_then(|f| f.items())
            .and_then(|i| i.name())
            .unwrap_or("an object without schema");
        return Err(SmpError::NoMergeKeyDeclared {
            list: list.to_string(),
        });
    };
    // Upstream merges the entries with the list's item schema, or with the
    // field's own schema where it is not a list.
    let items = field.map(|f| f.items().unwrap_or(f));

    // Directive entries first: deletions act on the original, a replace
    // makes the other entries the original and leaves nothing to merge.
    let mut entries = Vec::with_capacity(patch.len());
    let mut doomed = HashSet::new();
    let mut replace = false;
    for entry in patch {
        let Value::Object(m) = entry else {
            return Err(bad_arg_type(GO_MAP, &entry));
        };
        let Some(directive) = m.get(DIRECTIVE) else {
            entries.push(Value::Object(m));
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let value = m.get(key).ok_or_else(|| no_merge_key(&m, key))?;
                doomed.insert(canonical(value));
            }
            Some("replace") => replace = true,
            Some("merge") => return Err(SmpError::MergeDirectiveInList),
            _ => return Err(unknown_patch_type(directive, &m)),
        }
    }
    let view_len = original.len();
    let (survivors, deleted): (Vec<Value>, Vec<Value>) = original.into_iter().partition(|o| {
        o.get(key)
            .is_none_or(|value| !doomed.contains(&canonical(value)))
    });
    let mut merged = if replace {
        adopt_list(std::mem::take(&mut entries))?
    } else {
        survivors.clone()
    };

    let server_order = merged.clone();
    let mut index = Positions::of(&merged, Some(key));
    let mut appended = Vec::new();
    for entry in &entries {
        let wanted = canonical(merge_key_value(entry, key)?);
        match index.get(&wanted) {
            Some(i) => {
                let (Value::Object(current), Value::Object(patch_entry)) =
                    (std::mem::take(&mut merged[i]), entry)
                else {
                    return Err(bad_arg_type(GO_MAP, entry));
                };
                merged[i] = Value::Object(merge_object(current, patch_entry.clone(), items)?);
            }
            None => {
                if let Some(v) = adopt(entry.clone())? {
                    index.insert(wanted, merged.len());
                    if !replace && appended.len() < deleted.len() {
                        appended.push(v.clone());
                    }
                    merged.push(v);
                }
            }
        }
    }

    let named_keys = Positions::of(&entries, Some(key));
    let mut named = Vec::new();
    let mut server_only = Vec::new();
    for v in merged {
        merge_key_value(&v, key)?;
        if named_keys.of_item(&v).is_some() {
            named.push(v);
        } else {
            server_only.push(v);
        }
    }
    let merged = normalize_order(named, server_only, &entries, &server_order, Some(key))?;

    // The Go slice's view: survivors, then appends written into the freed
    // slots; the slots left over still hold entries that are gone.
    let mut view = survivors;
    view.extend(appended);
    view.extend(deleted);
    view.truncate(view_len);
    Ok((merged, view))
}

/// The canonical text of a value, to compare values by hashing.
fn canonical(v: &Value) -> String {
    v.to_string()
}

/// First positions of a list's entries, by merge key or by value.
struct Positions<'k> {
    first: HashMap<String, usize>,
    merge_key: Option<&'k str>,
}

impl<'k> Positions<'k> {
    fn of(list: &[Value], merge_key: Option<&'k str>) -> Positions<'k> {
        let mut first = HashMap::with_capacity(list.len());
        for (i, v) in list.iter().enumerate() {
            if let Some(k) = entry_key(v, merge_key) {
                first.entry(k).or_insert(i);
            }
        }
        Positions { first, merge_key }
    }

    fn get(&self, key: &str) -> Option<usize> {
        self.first.get(key).copied()
    }

    fn insert(&mut self, key: String, position: usize) {
        self.first.entry(key).or_insert(position);
    }

    /// Where an entry with the same merge key (or the same value) is.
    fn of_item(&self, item: &Value) -> Option<usize> {
        entry_key(item, self.merge_key).and_then(|k| self.get(&k))
    }
}

/// What identifies a list entry: its merge key's value, or itself.
fn entry_key(v: &Value, merge_key: Option<&str>) -> Option<String> {
    match merge_key {
        Some(key) => v.as_object().and_then(|m| m.get(key)).map(canonical),
        None => Some(canonical(v)),
    }
}

/// Order `named` by `order` and `server_only` by `server_order`, then
/// interleave them: a server-only entry goes before a named one only where
/// the original had it before that one.
fn normalize_order(
    mut named: Vec<Value>,
    mut server_only: Vec<Value>,
    order: &[Value],
    server_order: &[Value],
    merge_key: Option<&str>,
) -> Result<Vec<Value>> {
    if let Some(key) = merge_key {
        for v in named
            .iter()
            .chain(order)
            .chain(&server_only)
            .chain(server_order)
        {
            merge_key_value(v, key)?;
        }
    }
    let in_order = Positions::of(order, merge_key);
    let in_server_order = Positions::of(server_order, merge_key);
    sort_by_position(&mut named, &in_order);
    sort_by_position(&mut server_only, &in_server_order);

    let mut out = Vec::with_capacity(named.len() + server_only.len());
    let mut named = named.into_iter().peekable();
    let mut server_only = server_only.into_iter().peekable();
    loop {
        let take_server = match (server_only.peek(), named.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(s), Some(n)) => matches!(
                (in_server_order.of_item(s), in_server_order.of_item(n)),
                (Some(a), Some(b)) if a < b
            ),
        };
        let next = if take_server {
            server_only.next()
        } else {
            named.next()
        };
        out.extend(next);
    }
    Ok(out)
}

/// Stable sort by position; entries without one go last.
fn sort_by_position(list: &mut Vec<Value>, positions: &Positions<'_>) {
    if list.len() < 2 {
        return;
    }
    let mut keyed: Vec<(usize, Value)> = list
        .drain(..)
        .map(|v| (positions.of_item(&v).unwrap_or(usize::MAX), v))
        .collect();
    keyed.sort_by_key(|(p, _)| *p);
    list.extend(keyed.into_iter().map(|(_, v)| v));
}

// ---------------------------------------------------------------------------
// Patch values with nothing to merge into

/// What a patch value stands for where there is nothing to merge it with
/// (a new field, a replaced one, a new list entry): nulls dropped (they
/// delete nothing), directives resolved. `None` when it deletes itself.
fn adopt(v: Value) -> Result<Option<Value>> {
    match v {
        Value::Object(mut m) => {
            if let Some(directive) = m.get(DIRECTIVE) {
                match directive.as_str() {
                    Some("delete") => return Ok(None),
                    Some("replace") => {
                        m.shift_remove(DIRECTIVE);
                    }
                    _ => return Err(unknown_patch_type(directive, &m)),
                }
            }
            Ok(Some(Value::Object(adopt_object_fields(m)?)))
        }
        Value::Array(list) => Ok(Some(Value::Array(adopt_list(list)?))),
        other => Ok(Some(other)),
    }
}

fn adopt_object_fields(m: Object) -> Result<Object> {
    let mut out = Object::new();
    for (key, value) in m {
        if value.is_null()
            || key == RETAIN_KEYS
            || key.starts_with(SET_ELEMENT_ORDER)
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
        {
            continue;
        }
        if let Some(value) = adopt(value)? {
            out.insert(key, value);
        }
    }
    Ok(out)
}

/// A patch list taken as it is: directive entries (`$patch: replace`,
/// `delete`, `merge`) are dropped.
fn adopt_list(list: Vec<Value>) -> Result<Vec<Value>> {
    let mut out = Vec::with_capacity(list.len());
    for entry in list {
        if let Value::Object(m) = &entry {
            if let Some(directive) = m.get(DIRECTIVE) {
                match directive.as_str() {
                    Some("delete" | "replace" | "merge") => continue,
                    _ => return Err(unknown_patch_type(directive, m)),
                }
            }
        }
        out.extend(adopt(entry)?);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Errors, in upstream's words (Go's `%v` formatting)

fn unknown_patch_type(directive: &Value, map: &Object) -> SmpError {
    SmpError::UnknownPatchType {
        directive: go_format(directive),
        map: go_format_object(map),
    }
}

fn no_merge_key(map: &Object, key: &str) -> SmpError {
    SmpError::NoMergeKey {
        map: go_format_object(map),
        key: key.to_string(),
    }
}

fn bad_arg_type(expected: &'static str, actual: &Value) -> SmpError {
    SmpError::BadArgType {
        expected,
        actual: go_type(actual),
    }
}

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => GO_SLICE,
        Value::Object(_) => GO_MAP,
    }
}

fn go_format(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(list) => go_format_list(list),
        Value::Object(m) => go_format_object(m),
    }
}

fn go_format_list(list: &[Value]) -> String {
    let items: Vec<String> = list.iter().map(go_format).collect();
    format!("[{}]", items.join(" "))
}

fn go_format_object(m: &Object) -> String {
    let mut items: Vec<(&String, String)> = m.iter().map(|(k, v)| (k, go_format(v))).collect();
    items.sort();
    let items: Vec<String> = items.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
    format!("map[{}]", items.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch_meta::{self, PatchMetaTable};
    use serde_json::json;

    fn pod() -> Option<Schema<'static>> {
        patch_meta::root("", "v1", "Pod")
    }

    fn deployment() -> Option<Schema<'static>> {
        patch_meta::root("apps", "v1", "Deployment")
    }

    fn apply(original: Value, patch: Value, schema: Option<Schema<'_>>) -> Value {
        strategic_merge_patch(&original, &patch, schema)
            .unwrap_or_else(|e| panic!("patch {patch} on {original}: {e}"))
    }

    fn apply_err(original: Value, patch: Value, schema: Option<Schema<'_>>) -> SmpError {
        match strategic_merge_patch(&original, &patch, schema) {
            Ok(v) => panic!("patch {patch} on {original} gave {v}, expected an error"),
            Err(e) => e,
        }
    }

    fn pod_with(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
    }

    // -- Built-in kinds, with the generated schema ----------------------

    #[test]
    fn containers_merge_by_name() {
        let original = pod_with(json!({"containers": [
            {"name": "app", "image": "nginx:1.0", "ports": [{"containerPort": 80}]},
            {"name": "sidecar", "image": "envoy"}
        ]}));
        let patched = apply(
            original,
            json!({"spec": {"containers": [{"name": "app", "image": "nginx:1.1"}]}}),
            pod(),
        );
        assert_eq!(
            patched["spec"]["containers"],
            json!([
                {"name": "app", "image": "nginx:1.1", "ports": [{"containerPort": 80}]},
                {"name": "sidecar", "image": "envoy"}
            ])
        );
        assert_eq!(patched["metadata"], json!({"name": "p"}));
    }

    /// The Deployment of the "Update API Objects in Place Using kubectl
    /// patch" task: a new container is merged in (ahead of the existing
    /// one, as upstream orders it), and tolerations, which have no merge
    /// key, are replaced.
    #[test]
    fn kubectl_patch_task_deployment() {
        let original = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "patch-demo"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "nginx"}},
                "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {
                    "containers": [{"name": "patch-demo-ctr", "image": "nginx"}],
                    "tolerations": [{"effect": "NoSchedule", "key": "dedicated", "value": "test-team"}]}}}});
        let patched = apply(
            original,
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "patch-demo-ctr-2", "image": "redis"}]}}}}),
            deployment(),
        );
        let spec = &patched["spec"]["template"]["spec"];
        assert_eq!(
            spec["containers"],
            json!([
                {"name": "patch-demo-ctr-2", "image": "redis"},
                {"name": "patch-demo-ctr", "image": "nginx"}
            ])
        );
        let patched = apply(
            patched,
            json!({"spec": {"template": {"spec": {"tolerations": [
                {"effect": "NoSchedule", "key": "disktype", "value": "ssd"}]}}}}),
            deployment(),
        );
        let spec = &patched["spec"]["template"]["spec"];
        assert_eq!(
            spec["tolerations"],
            json!([{"effect": "NoSchedule", "key": "disktype", "value": "ssd"}])
        );
        assert_eq!(spec["containers"].as_array().map(Vec::len), Some(2));
        assert_eq!(patched["spec"]["replicas"], json!(2));
    }

    #[test]
    fn adding_a_port_merges_by_container_port() {
        let original = pod_with(json!({"containers": [{"name": "app", "ports": [
            {"containerPort": 80, "name": "http"}]}]}));
        let patched = apply(
            original,
            json!({"spec": {"containers": [{"name": "app", "ports": [
                {"containerPort": 443, "name": "https"},
                {"containerPort": 80, "protocol": "TCP"}]}]}}),
            pod(),
        );
        assert_eq!(
            patched["spec"]["containers"][0]["ports"],
            json!([
                {"containerPort": 443, "name": "https"},
                {"containerPort": 80, "name": "http", "protocol": "TCP"}
            ])
        );
    }

    #[test]
    fn patch_delete_removes_a_container() {
        let original =
            pod_with(json!({"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}));
        let patched = apply(
            original,
            json!({"spec": {"containers": [{"name": "b", "$patch": "delete"}]}}),
            pod(),
        );
        assert_eq!(
            patched["spec"]["containers"],
            json!([{"name": "a"}, {"name": "c"}])
        );
    }

    #[test]
    fn set_element_order_reorders_containers() {
        let original = pod_with(json!({"containers": [
            {"name": "a", "image": "1"}, {"name": "b", "image": "2"}, {"name": "c", "image": "3"}]}));
        let patched = apply(
            original,
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}],
                "containers": [{"name": "a", "image": "1.1"}]}}),
            pod(),
        );
        assert_eq!(
            patched["spec"]["containers"],
            json!([{"name": "c", "image": "3"}, {"name": "a", "image": "1.1"}, {"name": "b", "image": "2"}])
        );
        assert!(patched["spec"].get("$setElementOrder/containers").is_none());
    }

    #[test]
    fn retain_keys_clears_the_other_strategy_fields() {
        let original = json!({"spec": {"replicas": 1, "strategy": {
            "type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}});
        let patched = apply(
            original,
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
            deployment(),
        );
        assert_eq!(
            patched,
            json!({"spec": {"replicas": 1, "strategy": {"type": "Recreate"}}})
        );
    }

    #[test]
    fn delete_from_primitive_list_removes_finalizers() {
        let original =
            json!({"metadata": {"name": "p", "finalizers": ["a.io/x", "b.io/y", "c.io/z"]}});
        let patched = apply(
            original,
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b.io/y", "not.there/q"]}}),
            pod(),
        );
        assert_eq!(
            patched["metadata"]["finalizers"],
            json!(["a.io/x", "c.io/z"])
        );
    }

    #[test]
    fn finalizers_are_a_union() {
        let original = json!({"metadata": {"finalizers": ["a", "b"]}});
        let patched = apply(
            original.clone(),
            json!({"metadata": {"finalizers": ["b", "c"]}}),
            pod(),
        );
        assert_eq!(patched["metadata"]["finalizers"], json!(["a", "b", "c"]));
        // A value the original lacks comes before server-only values after it.
        let patched = apply(original, json!({"metadata": {"finalizers": ["c"]}}), pod());
        assert_eq!(patched["metadata"]["finalizers"], json!(["c", "a", "b"]));
    }

    #[test]
    fn patch_replace_entry_replaces_the_whole_list() {
        let original =
            pod_with(json!({"containers": [{"name": "a", "image": "x"}, {"name": "b"}]}));
        let patched = apply(
            original,
            json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "c", "image": "y"}]}}),
            pod(),
        );
        assert_eq!(
            patched["spec"]["containers"],
            json!([{"name": "c", "image": "y"}])
        );
    }

    #[test]
    fn tolerations_without_merge_key_are_replaced() {
        let original = pod_with(json!({"tolerations": [{"key": "a", "operator": "Exists"}]}));
        let patched = apply(
            original,
            json!({"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}),
            pod(),
        );
        assert_eq!(
            patched["spec"]["tolerations"],
            json!([{"key": "b", "operator": "Exists"}])
        );
    }

    #[test]
    fn labels_merge_and_null_deletes() {
        let original =
            json!({"metadata": {"name": "p", "labels": {"app": "web", "tier": "fe", "old": "x"}}});
        let patched = apply(
            original,
            json!({"metadata": {"labels": {"tier": "be", "old": null, "new": "y", "absent": null}}}),
            pod(),
        );
        assert_eq!(
            patched["metadata"]["labels"],
            json!({"app": "web", "tier": "be", "new": "y"})
        );
        let patched = apply(patched, json!({"metadata": {"labels": null}}), pod());
        assert_eq!(patched["metadata"], json!({"name": "p"}));
    }

    #[test]
    fn map_directives() {
        let original = pod_with(json!({"nodeSelector": {"a": "1", "b": "2"}}));
        let patched = apply(
            original.clone(),
            json!({"spec": {"nodeSelector": {"$patch": "replace", "c": "3"}}}),
            pod(),
        );
        assert_eq!(patched["spec"]["nodeSelector"], json!({"c": "3"}));
        let patched = apply(
            original,
            json!({"spec": {"nodeSelector": {"$patch": "delete"}}}),
            pod(),
        );
        assert_eq!(patched["spec"]["nodeSelector"], json!({}));
        // On a new field a delete leaves nothing and a replace its content.
        let patched = apply(
            pod_with(json!({})),
            json!({"spec": {"nodeSelector": {"$patch": "delete"},
                            "overhead": {"$patch": "replace", "cpu": "1"}}}),
            pod(),
        );
        assert_eq!(patched["spec"], json!({"overhead": {"cpu": "1"}}));
        // The whole document.
        assert_eq!(
            apply(
                json!({"a": 1, "b": 2}),
                json!({"$patch": "replace", "c": 3}),
                pod()
            ),
            json!({"c": 3})
        );
    }

    #[test]
    fn replace_strategy_replaces_a_map() {
        let pdb = patch_meta::root("policy", "v1", "PodDisruptionBudget");
        let original =
            json!({"spec": {"minAvailable": 1, "selector": {"matchLabels": {"a": "1"}}}});
        let patched = apply(
            original,
            json!({"spec": {"selector": {"matchLabels": {"b": "2"}}}}),
            pdb,
        );
        assert_eq!(
            patched,
            json!({"spec": {"minAvailable": 1, "selector": {"matchLabels": {"b": "2"}}}})
        );
    }

    #[test]
    fn service_ports_merge_by_port() {
        let service = patch_meta::root("", "v1", "Service");
        let original = json!({"spec": {"ports": [
            {"port": 80, "targetPort": 8080, "protocol": "TCP"},
            {"port": 443, "targetPort": 8443, "protocol": "TCP"}]}});
        let patched = apply(
            original,
            json!({"spec": {"ports": [{"port": 443, "targetPort": "https"}]}}),
            service,
        );
        assert_eq!(
            patched["spec"]["ports"],
            json!([
                {"port": 80, "targetPort": 8080, "protocol": "TCP"},
                {"port": 443, "targetPort": "https", "protocol": "TCP"}
            ])
        );
    }

    #[test]
    fn unknown_fields_and_no_schema_merge_as_json_merge_patch() {
        // A field the schema lacks: its lists are replaced.
        let original =
            pod_with(json!({"containers": [{"name": "a"}], "x-extra": {"list": [1, 2]}}));
        let patched = apply(
            original.clone(),
            json!({"spec": {"x-extra": {"list": [3]}, "containers": [{"name": "b"}]}}),
            pod(),
        );
        assert_eq!(patched["spec"]["x-extra"], json!({"list": [3]}));
        assert_eq!(
            patched["spec"]["containers"],
            json!([{"name": "b"}, {"name": "a"}])
        );
        // No schema at all (a custom resource): RFC 7396, the RFC's example.
        let target = json!({"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"},
            "tags": ["example", "sample"], "content": "This will be unchanged"});
        let patch = json!({"title": "Hello!", "phoneNumber": "+01-123-456-7890",
            "author": {"familyName": null}, "tags": ["example"]});
        assert_eq!(
            apply(target, patch, None),
            json!({"title": "Hello!", "author": {"givenName": "John"}, "tags": ["example"],
                "content": "This will be unchanged", "phoneNumber": "+01-123-456-7890"})
        );
        let patched = apply(
            original,
            json!({"spec": {"containers": [{"name": "b"}]}}),
            None,
        );
        assert_eq!(patched["spec"]["containers"], json!([{"name": "b"}]));
    }

    #[test]
    fn untyped_values_merge_without_schema() {
        let revision = patch_meta::root("apps", "v1", "ControllerRevision");
        let original = json!({"data": {"spec": {"list": [{"name": "a"}]}, "keep": 1}});
        let patched = apply(
            original,
            json!({"data": {"spec": {"list": [{"name": "b"}]}}}),
            revision,
        );
        assert_eq!(
            patched,
            json!({"data": {"spec": {"list": [{"name": "b"}]}, "keep": 1}})
        );
    }

    #[test]
    fn directives_never_reach_the_result() {
        let patched = apply(
            pod_with(json!({})),
            json!({"spec": {
                "containers": [{"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "$patch": "delete"}],
                                "$setElementOrder/env": [{"name": "X"}], "image": null}],
                "volumes": [{"$patch": "replace"}, {"name": "v", "emptyDir": {}, "$retainKeys": ["name", "emptyDir"]}],
                "$deleteFromPrimitiveList/x": ["y"]}}),
            pod(),
        );
        assert_eq!(
            patched["spec"],
            json!({"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}],
                   "volumes": [{"name": "v", "emptyDir": {}}]})
        );
    }

    #[test]
    fn null_documents_count_as_empty() {
        assert_eq!(apply(Value::Null, json!({"a": 1}), None), json!({"a": 1}));
        assert_eq!(apply(json!({"a": 1}), Value::Null, None), json!({"a": 1}));
    }

    // -- Errors -----------------------------------------------------------

    #[test]
    fn errors_read_like_upstream() {
        let e = apply_err(
            json!({"spec": {"nodeSelector": {"a": "1"}}}),
            json!({"spec": {"nodeSelector": {"$patch": "bogus", "b": "2"}}}),
            pod(),
        );
        assert_eq!(
            e.to_string(),
            "unknown patch type: bogus in map: map[$patch:bogus b:2]"
        );
        assert_eq!(e.status_code(), 422);

        let e = apply_err(json!({}), json!({"a": {"$patch": "merge"}}), None);
        assert!(matches!(e, SmpError::UnknownPatchType { .. }), "{e}");

        let e = apply_err(
            pod_with(json!({"containers": [{"name": "a"}]})),
            json!({"spec": {"containers": [{"name": "a", "$patch": "merge"}]}}),
            pod(),
        );
        assert_eq!(e, SmpError::MergeDirectiveInList);
        assert_eq!(
            e.to_string(),
            "merging lists cannot yet be specified in the patch"
        );

        let e = apply_err(
            pod_with(json!({"containers": [{"name": "a"}]})),
            json!({"spec": {"containers": [{"image": "x"}]}}),
            pod(),
        );
        assert_eq!(
            e.to_string(),
            "map: map[image:x] does not contain declared merge key: name"
        );

        let e = apply_err(
            pod_with(json!({"containers": [{"name": "a"}]})),
            json!({"spec": {"containers": [{"$patch": "delete"}]}}),
            pod(),
        );
        assert!(matches!(e, SmpError::NoMergeKey { .. }), "{e}");

        let e = apply_err(
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}),
            deployment(),
        );
        assert_eq!(e, SmpError::BadRetainKeysFormat);
        assert_eq!(e.to_string(), "invalid patch format of retainKeys");
        assert_eq!(e.status_code(), 400);
        let e = apply_err(json!({}), json!({"$retainKeys": "type"}), None);
        assert_eq!(e, SmpError::BadRetainKeysFormat);

        let e = apply_err(json!({}), json!({"$deleteFromPrimitiveList": ["x"]}), None);
        assert_eq!(e, SmpError::BadPrimitiveListFormat);
        let e = apply_err(json!({}), json!({"$setElementOrderfoo/x": []}), None);
        assert_eq!(e, SmpError::BadSetElementOrderFormat);
        let e = apply_err(json!({}), json!({"$setElementOrder/x": {"a": 1}}), None);
        assert_eq!(
            e.to_string(),
            "expected a []interface {}, but received a map[string]interface {}"
        );

        let e = apply_err(
            pod_with(json!({"containers": [{"name": "a"}, {"name": "b"}]})),
            json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                            "containers": [{"name": "b"}, {"name": "a"}]}}),
            pod(),
        );
        assert!(
            e.to_string()
                .contains("doesn't match $setElementOrder list"),
            "{e}"
        );

        let e = apply_err(
            json!({"metadata": {"finalizers": [["a"]]}}),
            json!({"metadata": {"finalizers": [["b"]]}}),
            pod(),
        );
        assert_eq!(e, SmpError::ListOfLists);
        let e = apply_err(
            json!({"metadata": {"finalizers": ["a"]}}),
            json!({"metadata": {"finalizers": [1]}}),
            pod(),
        );
        assert_eq!(
            e.to_string(),
            "list element types are not identical: [[a] [1]]"
        );

        assert_eq!(apply_err(json!([1]), json!({}), None), SmpError::BadJsonDoc);
        assert_eq!(apply_err(json!({}), json!("x"), None), SmpError::BadJsonDoc);
        assert_eq!(SmpError::BadJsonDoc.to_string(), "invalid JSON document");
    }

    #[test]
    fn errors_become_api_errors() {
        let e: ApiError = SmpError::BadRetainKeysFormat.into();
        assert_eq!((e.code, e.reason), (400, "BadRequest"));
        let e: ApiError = SmpError::MergeDirectiveInList.into();
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        assert_eq!(
            e.message,
            "merging lists cannot yet be specified in the patch"
        );
    }

    // -- Upstream's strategicpatch test cases -----------------------------
    //
    // Applications of the two-way and three-way patches of upstream's
    // patch_test.go, over its `mergeItem` test type.

    const MERGE_ITEM: &str = r#"{"defs":{
        "mergeItem":{"p":{"name":"s","value":"s","other":"s",
            "mergingList":{"i":"mergeItem","k":"name","s":"merge"},
            "nonMergingList":{"i":"mergeItem"},
            "mergingIntList":{"i":"i","s":"merge"},
            "nonMergingIntList":{"i":"i"},
            "simpleMap":{"v":"s"},
            "replacingItem":{"t":"a","s":"replace"},
            "retainKeysMap":{"r":"retainKeysMergeItem","s":"retainKeys"},
            "retainKeysMergingList":{"i":"mergeItem","k":"name","s":"merge,retainKeys"}}},
        "retainKeysMergeItem":{"p":{"name":"s","value":"s","other":"s","simpleMap":{"v":"s"},
            "mergingList":{"i":"mergeItem","k":"name","s":"merge"},
            "nonMergingList":{"i":"mergeItem"},
            "mergingIntList":{"i":"i","s":"merge"}}}}}"#;

    fn merge_item_table() -> PatchMetaTable {
        PatchMetaTable::from_json(MERGE_ITEM).unwrap_or_else(|e| panic!("{e}"))
    }

    /// (description, original, patch, expected result)
    fn upstream_cases() -> Vec<(&'static str, Value, Value, Value)> {
        vec![
            ("unique scalars when merging lists",
             json!({"mergingIntList": [1, 2]}), json!({"mergingIntList": [2, 3]}),
             json!({"mergingIntList": [1, 2, 3]})),
            ("delete map from nested map",
             json!({"simpleMap": {"key1": 1, "key2": 1}}), json!({"simpleMap": {"$patch": "delete"}}),
             json!({"simpleMap": {}})),
            ("delete all items from merging list",
             json!({"mergingList": [{"name": 1}, {"name": 2}]}), json!({"mergingList": [{"$patch": "replace"}]}),
             json!({"mergingList": []})),
            ("delete all duplicate entries in a merging list",
             json!({"mergingList": [{"name": 1}, {"name": 1}, {"name": 2, "value": "a"}, {"name": 3}, {"name": 3}]}),
             json!({"mergingList": [{"name": 1, "$patch": "delete"}, {"name": 3, "$patch": "delete"}]}),
             json!({"mergingList": [{"name": 2, "value": "a"}]})),
            ("preserve the order from the patch in a merging list",
             json!({"mergingList": [{"name": 1}, {"name": 2, "value": "b"}, {"name": 3}]}),
             json!({"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}, {"name": 2, "other": "x"}]}),
             json!({"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"},
                                    {"name": 2, "value": "b", "other": "x"}]})),
            ("preserve the order from the patch in a merging list 2",
             json!({"mergingList": [{"name": 1}, {"name": 2, "value": "b"}, {"name": 3}]}),
             json!({"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}]}),
             json!({"mergingList": [{"name": 2, "value": "b"}, {"name": 3, "value": "c"}, {"name": 1, "value": "a"}]})),
            ("preserve the order from the patch in a merging int list",
             json!({"mergingIntList": [1, 2, 3]}), json!({"mergingIntList": [3, 1]}),
             json!({"mergingIntList": [2, 3, 1]})),
            ("$setElementOrder contains item that is not present in the int list to be merged",
             json!({"mergingIntList": [1, 3]}), json!({"$setElementOrder/mergingIntList": [3, 2, 1]}),
             json!({"mergingIntList": [3, 1]})),
            ("$deleteFromPrimitiveList on nonexistent primitive list should not add the primitive list",
             json!({"foo": ["bar"]}), json!({"$deleteFromPrimitiveList/mergingIntList": [3]}),
             json!({"foo": ["bar"]})),
            ("$deleteFromPrimitiveList on empty primitive list should not add the item to the list",
             json!({"mergingIntList": null}), json!({"$deleteFromPrimitiveList/mergingIntList": [3]}),
             json!({"mergingIntList": null})),
            ("$deleteFromPrimitiveList should delete item from a list without merge patch strategy",
             json!({"nonMergingIntList": [1, 2, 3]}), json!({"$deleteFromPrimitiveList/nonMergingIntList": [2]}),
             json!({"nonMergingIntList": [1, 3]})),
            ("add and delete items in lists of scalars (three-way)",
             json!({"mergingIntList": [1, 2, 3, 4]}),
             json!({"$setElementOrder/mergingIntList": [1, 2, 4], "$deleteFromPrimitiveList/mergingIntList": [3]}),
             json!({"mergingIntList": [1, 2, 4]})),
            ("nested patch merge with empty list (three-way)",
             json!({"name": "hi", "mergingList": [{"name": "hello2"}]}),
             json!({"$setElementOrder/mergingList": [{"name": "hello"}, {"name": "doesntexist"}],
                    "mergingList": [{"name": "hello"}]}),
             json!({"name": "hi", "mergingList": [{"name": "hello"}, {"name": "hello2"}]})),
            ("set elements order in a list with server-only items 3 (three-way)",
             json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "value": 2}, {"name": 7}, {"name": 9},
                                    {"name": 8}, {"name": 3, "value": 3}, {"name": 4, "value": 4}]}),
             json!({"$setElementOrder/mergingList": [{"name": 2}, {"name": 1}, {"name": 4}, {"name": 3}]}),
             json!({"mergingList": [{"name": 2, "value": 2}, {"name": 1, "other": "a"}, {"name": 7}, {"name": 9},
                                    {"name": 8}, {"name": 4, "value": 4}, {"name": 3, "value": 3}]})),
            ("add map and delete map from merging list (three-way)",
             json!({"mergingList": [{"name": 1}, {"name": 2, "other": "b"}, {"name": 4, "other": "c"}]}),
             json!({"$setElementOrder/mergingList": [{"name": 2}, {"name": 3}],
                    "mergingList": [{"name": 3}, {"name": 1, "$patch": "delete"}]}),
             json!({"mergingList": [{"name": 2, "other": "b"}, {"name": 4, "other": "c"}, {"name": 3}]})),
            ("retainKeys map should clear defaulted field",
             json!({"retainKeysMap": {"value": "foo"}}),
             json!({"retainKeysMap": {"$retainKeys": ["name"], "name": "foo"}}),
             json!({"retainKeysMap": {"name": "foo"}})),
            ("retainKeys list of maps clears a field",
             json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "a", "other": "x"}]}),
             json!({"$setElementOrder/retainKeysMergingList": [{"name": "bar"}, {"name": "foo"}],
                    "retainKeysMergingList": [{"$retainKeys": ["name", "value"], "name": "foo"}]}),
             json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "a"}]})),
            ("replace RawExtension field",
             json!({"name": "my-object", "replacingItem": {"Some": "Generic", "Thing": 1}}),
             json!({"replacingItem": {"Newly": "Modified"}}),
             json!({"name": "my-object", "replacingItem": {"Newly": "Modified"}})),
        ]
    }

    #[test]
    fn upstream_patch_test_cases() {
        let table = merge_item_table();
        let schema = table.definition("mergeItem");
        for (description, original, patch, expected) in upstream_cases() {
            let got = strategic_merge_patch(&original, &patch, schema)
                .unwrap_or_else(|e| panic!("{description}: {e}"));
            assert_eq!(got, expected, "{description}");
        }
    }

    #[test]
    fn upstream_error_cases() {
        let table = merge_item_table();
        let schema = table.definition("mergeItem");
        for (description, original, patch, error) in [
            (
                "should check if order in $setElementOrder and patch list match",
                json!({"mergingList": [{"name": 1}, {"name": 3}, {"name": 2}]}),
                json!({"$setElementOrder/mergingList": [{"name": 1}, {"name": 2}, {"name": 3}],
                    "mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]}),
                "doesn't match",
            ),
            (
                "$setElementOrder and int patch list mismatch",
                json!({"mergingIntList": [1, 3, 2]}),
                json!({"$setElementOrder/mergingIntList": [1, 2, 3], "mergingIntList": [3, 1]}),
                "doesn't match",
            ),
            (
                "missing merge key should error out",
                json!({"mergingList": [{"name": 1, "value": "a"}]}),
                json!({"mergingList": [{"value": "b"}]}),
                "does not contain declared merge key",
            ),
        ] {
            match strategic_merge_patch(&original, &patch, schema) {
                Ok(v) => panic!("{description}: got {v}"),
                Err(e) => assert!(e.to_string().contains(error), "{description}: {e}"),
            }
        }
    }

    // -- Properties -------------------------------------------------------

    mod properties {
        use super::*;
        use proptest::collection::{btree_set, vec};
        use proptest::option;
        use proptest::prelude::*;

        fn leaf() -> impl Strategy<Value = Value> {
            prop_oneof![Just(json!("a")), Just(json!("b")), Just(json!("c"))]
        }

        fn simple_map() -> impl Strategy<Value = Value> {
            proptest::collection::btree_map("[k-n]", leaf(), 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect()))
        }

        /// An object of the `mergeItem` type (names may repeat, as a stored
        /// object's might).
        fn item(depth: u32) -> BoxedStrategy<Value> {
            let names = 0..5u8;
            let nested = if depth == 0 {
                Just(None).boxed()
            } else {
                option::of(vec(item(depth - 1), 0..4)).boxed()
            };
            (
                option::of(names),
                option::of(leaf()),
                option::of(leaf()),
                nested,
                option::of(vec(0..5i64, 0..4)),
                option::of(vec(0..5i64, 0..3)),
                option::of(simple_map()),
            )
                .prop_map(|(name, value, other, list, ints, non_merging, map)| {
                    let mut m = Object::new();
                    let mut put = |k: &str, v: Option<Value>| {
                        if let Some(v) = v {
                            m.insert(k.to_string(), v);
                        }
                    };
                    put("name", name.map(|n| json!(n)));
                    put("value", value);
                    put("other", other);
                    put(
                        "mergingList",
                        list.map(|l| {
                            // Entries of a merging list carry the merge key.
                            Value::Array(
                                l.into_iter()
                                    .enumerate()
                                    .map(|(i, mut e)| {
                                        if let Value::Object(o) = &mut e {
                                            o.entry("name").or_insert(json!(i));
                                        }
                                        e
                                    })
                                    .collect(),
                            )
                        }),
                    );
                    put("mergingIntList", ints.map(|v| json!(v)));
                    put("nonMergingIntList", non_merging.map(|v| json!(v)));
                    put("simpleMap", map);
                    Value::Object(m)
                })
                .boxed()
        }

        /// A patch for a `mergeItem`, without duplicate list entries and
        /// without values both added and deleted: what makes applying a
        /// patch twice differ from once (a new list takes the patch's
        /// entries as they are; an existing one merges them in turn).
        fn patch(depth: u32) -> BoxedStrategy<Value> {
            let nested = if depth == 0 {
                Just(None).boxed()
            } else {
                option::of((
                    btree_set(0..5u8, 0..4),
                    vec(patch(depth - 1), 4),
                    btree_set(0..5u8, 0..2),
                    any::<bool>(),
                    any::<bool>(),
                ))
                .boxed()
            };
            (
                option::of(prop_oneof![leaf(), Just(Value::Null)]),
                nested,
                option::of(btree_set(0..5i64, 0..3)),
                option::of(btree_set(0..5i64, 0..2)),
                option::of(prop_oneof![
                    simple_map(),
                    Just(Value::Null),
                    Just(json!({"$patch": "delete"})),
                    Just(json!({"$patch": "replace", "z": "a"})),
                    Just(json!({"k": null, "l": "b"})),
                ]),
                option::of(vec(0..5i64, 0..3)),
                any::<bool>(),
            )
                .prop_map(
                    |(value, list, ints, delete_ints, map, non_merging, retain)| {
                        let mut m = Object::new();
                        if let Some(v) = value {
                            m.insert("value".into(), v);
                        }
                        if let Some((names, bodies, deletions, replace, order)) = list {
                            let mut entries = Vec::new();
                            if replace {
                                entries.push(json!({"$patch": "replace"}));
                            }
                            let kept: Vec<u8> = names.iter().copied().collect();
                            for (name, body) in kept.iter().zip(bodies) {
                                let mut body = match body {
                                    Value::Object(o) => o,
                                    _ => Object::new(),
                                };
                                body.insert("name".into(), json!(name));
                                entries.push(Value::Object(body));
                            }
                            for name in deletions.difference(&names) {
                                entries.push(json!({"name": name, "$patch": "delete"}));
                            }
                            if order && !replace {
                                let order: Vec<Value> =
                                    kept.iter().map(|n| json!({"name": n})).collect();
                                m.insert(
                                    "$setElementOrder/mergingList".into(),
                                    Value::Array(order),
                                );
                            }
                            m.insert("mergingList".into(), Value::Array(entries));
                        }
                        if let Some(ints) = ints {
                            m.insert("mergingIntList".into(), json!(ints));
                        }
                        if let Some(mut doomed) = delete_ints {
                            // A value both added and deleted contradicts itself:
                            // a new list keeps it, an existing one loses it.
                            if let Some(added) = m.get("mergingIntList").and_then(Value::as_array) {
                                doomed.retain(|v| !added.contains(&json!(v)));
                            }
                            m.insert(
                                "$deleteFromPrimitiveList/mergingIntList".into(),
                                json!(doomed),
                            );
                        }
                        if let Some(map) = map {
                            m.insert("simpleMap".into(), map);
                        }
                        if let Some(list) = non_merging {
                            m.insert("nonMergingIntList".into(), json!(list));
                        }
                        if retain {
                            let mut keys: Vec<Value> = m
                                .iter()
                                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                                .map(|(k, _)| json!(k))
                                .collect();
                            keys.push(json!("name"));
                            m.insert(RETAIN_KEYS.into(), Value::Array(keys));
                        }
                        Value::Object(m)
                    },
                )
                .boxed()
        }

        fn has_directive_key(v: &Value) -> bool {
            match v {
                Value::Object(m) => m.iter().any(|(k, v)| {
                    k == DIRECTIVE
                        || k == RETAIN_KEYS
                        || k.starts_with(SET_ELEMENT_ORDER)
                        || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
                        || has_directive_key(v)
                }),
                Value::Array(l) => l.iter().any(has_directive_key),
                _ => false,
            }
        }

        /// RFC 7396, the reference for patches without directives.
        fn json_merge_patch(target: &Value, patch: &Value) -> Value {
            let Value::Object(p) = patch else {
                return patch.clone();
            };
            let mut out = match target {
                Value::Object(t) => t.clone(),
                _ => Object::new(),
            };
            for (k, v) in p {
                if v.is_null() {
                    out.shift_remove(k);
                } else {
                    let merged = json_merge_patch(out.get(k).unwrap_or(&Value::Null), v);
                    out.insert(k.clone(), merged);
                }
            }
            Value::Object(out)
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 512,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            /// A patch without duplicate list entries applied twice gives
            /// what it gave once, and no directive survives.
            #[test]
            fn applying_twice_equals_applying_once(original in item(2), patch in patch(2)) {
                let table = merge_item_table();
                let schema = table.definition("mergeItem");
                let once = strategic_merge_patch(&original, &patch, schema);
                let once = match once {
                    Ok(v) => v,
                    Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
                };
                prop_assert!(!has_directive_key(&once), "directive left in {}", once);
                let twice = strategic_merge_patch(&once, &patch, schema)
                    .map_err(|e| TestCaseError::fail(format!("{e}")))?;
                prop_assert_eq!(once, twice);
            }

            /// Without a schema and without directives, a strategic merge
            /// patch is a JSON merge patch.
            #[test]
            fn schemaless_is_json_merge_patch(original in item(2), patch in item(2), nulls in vec(any::<bool>(), 8)) {
                // Knock some keys of the patch out with nulls.
                let mut patch = patch;
                if let Value::Object(m) = &mut patch {
                    for ((_, v), null) in m.iter_mut().zip(nulls) {
                        if null {
                            *v = Value::Null;
                        }
                    }
                }
                let got = strategic_merge_patch(&original, &patch, None)
                    .map_err(|e| TestCaseError::fail(format!("{e}")))?;
                prop_assert_eq!(got, json_merge_patch(&original, &patch));
            }
        }
    }
}
