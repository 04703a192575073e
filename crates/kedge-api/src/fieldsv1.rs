//! Field sets and their `FieldsV1` encoding, as upstream's
//! `sigs.k8s.io/structured-merge-diff` (`fieldpath`) defines them.
//!
//! Server-side apply ([`crate::ssa`]) records which fields each manager owns
//! in `metadata.managedFields[].fieldsV1`. A field set is a tree of
//! [`PathElement`]s; a node is a *member* when the path to it is in the set
//! (a leaf, a list item, a map entry), and has *children* when paths below it
//! are. `FieldsV1` writes the tree as nested JSON objects:
//!
//! * `f:<name>`: a field of an object or a key of a map,
//! * `k:{"name":"c"}`: the item of an associative list with those keys (the
//!   key fields sorted by name),
//! * `v:<json>`: the item of a set (a list of scalars),
//! * `i:<index>`: the item of an atomic list (seldom seen),
//! * `.`: inside a node that has children, says the node itself is a member.
//!
//! Members are `{}`. Keys are written in upstream's order: field names first
//! (byte order), then list keys, then set values, then indexes; JSON inside
//! `k:`/`v:` keys is written as Go's `encoding/json` writes it (HTML-escaped,
//! object keys sorted), so that the text matches a Kubernetes API server's.
//!
//! ```
//! use kedge_api::fieldsv1::FieldSet;
//! use serde_json::json;
//!
//! let v1 = json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
//!     "k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}});
//! let set = FieldSet::from_fields_v1(&v1).unwrap();
//! let paths: Vec<String> = set.paths().iter().map(|p| kedge_api::fieldsv1::path_string(p)).collect();
//! assert_eq!(paths, [
//!     ".spec.template.spec.containers[name=\"c\"]",
//!     ".spec.template.spec.containers[name=\"c\"].image",
//!     ".spec.template.spec.containers[name=\"c\"].name",
//! ]);
//! assert_eq!(set.to_fields_v1(), v1);
//! ```

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// Why a `FieldsV1` value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldsV1Error {
    #[error("FieldsV1 is not a JSON object")]
    NotAnObject,
    #[error("parsing key {key:?} as path element: {message}")]
    BadKey { key: String, message: String },
}

/// One step of a field path.
#[derive(Clone, Debug)]
pub enum PathElement {
    /// A field of an object, or a key of a map: `f:name`.
    Field(String),
    /// An item of an associative list, by its key fields, sorted by name:
    /// `k:{"name":"c"}`.
    Key(Vec<(String, Value)>),
    /// An item of a set: `v:"a"`.
    Value(Value),
    /// An item of an atomic list, by position: `i:0`.
    Index(i64),
}

impl PathElement {
    fn rank(&self) -> u8 {
        match self {
            PathElement::Field(_) => 0,
            PathElement::Key(_) => 1,
            PathElement::Value(_) => 2,
            PathElement::Index(_) => 3,
        }
    }

    /// The `FieldsV1` key of this element (`f:name`, `k:{...}`, `v:...`,
    /// `i:0`).
    pub fn serialize(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(fields) => {
                let mut out = String::from("k:{");
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    go_json_string(name, &mut out);
                    out.push(':');
                    go_json(value, &mut out);
                }
                out.push('}');
                out
            }
            PathElement::Value(v) => {
                let mut out = String::from("v:");
                go_json(v, &mut out);
                out
            }
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Read a `FieldsV1` key. `Ok(None)` for keys of an unknown type, which
    /// upstream skips.
    pub fn parse(key: &str) -> Result<Option<PathElement>, String> {
        let bytes = key.as_bytes();
        if bytes.len() < 2 {
            return Err("key must be 2 characters long".into());
        }
        if bytes[1] != b':' {
            return Err(format!("missing colon: {key}"));
        }
        let rest = &key[2..];
        match bytes[0] {
            b'f' => Ok(Some(PathElement::Field(rest.to_string()))),
            b'v' => {
                let v: Value = serde_json::from_str(rest).map_err(|e| e.to_string())?;
                Ok(Some(PathElement::Value(v)))
            }
            b'k' => {
                let v: Value = serde_json::from_str(rest).map_err(|e| e.to_string())?;
                let Value::Object(m) = v else {
                    return Err(format!("key is not a JSON object: {rest}"));
                };
                let mut fields: Vec<(String, Value)> = m.into_iter().collect();
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(Some(PathElement::Key(fields)))
            }
            b'i' => {
                let digits = rest.strip_prefix('+').unwrap_or(rest);
                let i: i64 = digits.parse().map_err(|e| format!("{e}: {rest:?}"))?;
                Ok(Some(PathElement::Index(i)))
            }
            _ => Ok(None),
        }
    }
}

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PathElement::Field(a), PathElement::Field(b)) => a.as_bytes().cmp(b.as_bytes()),
            (PathElement::Key(a), PathElement::Key(b)) => compare_field_lists(a, b),
            (PathElement::Value(a), PathElement::Value(b)) => compare_values(a, b),
            (PathElement::Index(a), PathElement::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

/// Upstream's `PathElement.String()`: `.name`, `[name="c"]`, `[="a"]`, `[0]`.
impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{k}={}", go_value_string(v)))
                    .collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(v) => write!(f, "[={}]", go_value_string(v)),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path from the root of an object.
pub type Path = Vec<PathElement>;

/// Upstream's `Path.String()`: `.spec.template.spec.containers[name="c"].image`.
pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// A set of field paths, stored as a tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    pub(crate) members: BTreeSet<PathElement>,
    /// Never holds an empty set.
    pub(crate) children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub fn new() -> FieldSet {
        FieldSet::default()
    }

    /// A set of the given paths.
    pub fn from_paths<'a>(paths: impl IntoIterator<Item = &'a [PathElement]>) -> FieldSet {
        let mut s = FieldSet::new();
        for p in paths {
            s.insert(p);
        }
        s
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.values().all(FieldSet::is_empty)
    }

    /// Add a path; the empty path is ignored.
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    /// The paths below `pe` (relative to it); `None` when there are none.
    pub fn with_prefix(&self, pe: &PathElement) -> Option<&FieldSet> {
        self.children.get(pe)
    }

    /// Every path in the set, in upstream's iteration order: a node's
    /// members, then its children's paths.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        let mut prefix = Vec::new();
        self.collect_paths(&mut prefix, &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        for m in &self.members {
            let mut p = prefix.clone();
            p.push(m.clone());
            out.push(p);
        }
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, child) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(child),
                None => child.clone(),
            };
            out.insert_child(pe.clone(), merged);
        }
        out
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        out.members = self.members.intersection(&other.members).cloned().collect();
        for (pe, child) in &self.children {
            if let Some(theirs) = other.children.get(pe) {
                out.insert_child(pe.clone(), child.intersection(theirs));
            }
        }
        out
    }

    /// The paths of `self` that are not in `other` (`other`'s members do not
    /// remove the paths below them: see [`FieldSet::recursive_difference`]).
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        out.members = self.members.difference(&other.members).cloned().collect();
        for (pe, child) in &self.children {
            match other.children.get(pe) {
                Some(theirs) => out.insert_child(pe.clone(), child.difference(theirs)),
                None => out.insert_child(pe.clone(), child.clone()),
            }
        }
        out
    }

    /// Like [`FieldSet::difference`], and a member of `other` also removes
    /// every path below it.
    pub fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        out.members = self.members.difference(&other.members).cloned().collect();
        for (pe, child) in &self.children {
            if other.members.contains(pe) {
                continue;
            }
            match other.children.get(pe) {
                Some(theirs) => out.insert_child(pe.clone(), child.recursive_difference(theirs)),
                None => out.insert_child(pe.clone(), child.clone()),
            }
        }
        out
    }

    fn insert_child(&mut self, pe: PathElement, child: FieldSet) {
        if child.is_empty() {
            self.children.remove(&pe);
        } else {
            self.children.insert(pe, child);
        }
    }

    /// The `FieldsV1` JSON of this set, keys in upstream's order.
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.emit(false))
    }

    fn emit(&self, include_self: bool) -> Map<String, Value> {
        let mut out = Map::new();
        if include_self && !self.is_empty() {
            out.insert(".".into(), Value::Object(Map::new()));
        }
        let mut members = self.members.iter().peekable();
        let mut children = self.children.iter().peekable();
        loop {
            let order = match (members.peek(), children.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(m), Some((c, _))) => (*m).cmp(*c),
            };
            match order {
                Ordering::Less => {
                    if let Some(m) = members.next() {
                        out.insert(m.serialize(), Value::Object(Map::new()));
                    }
                }
                Ordering::Greater => {
                    if let Some((pe, child)) = children.next() {
                        out.insert(pe.serialize(), Value::Object(child.emit(false)));
                    }
                }
                Ordering::Equal => {
                    members.next();
                    if let Some((pe, child)) = children.next() {
                        out.insert(pe.serialize(), Value::Object(child.emit(true)));
                    }
                }
            }
        }
        out
    }

    /// Read a `FieldsV1` JSON object. Keys of unknown types are skipped, as
    /// upstream does.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, FieldsV1Error> {
        let Value::Object(m) = v else {
            return Err(FieldsV1Error::NotAnObject);
        };
        Ok(read_node(m)?.0.unwrap_or_default())
    }
}

/// Returns the node's children (`None` when it has none) and whether the
/// node itself is a member.
fn read_node(m: &Map<String, Value>) -> Result<(Option<FieldSet>, bool), FieldsV1Error> {
    let mut children: Option<FieldSet> = None;
    let mut is_member = false;
    for (key, value) in m {
        if key == "." {
            is_member = true;
            continue;
        }
        let pe = match PathElement::parse(key) {
            Ok(Some(pe)) => pe,
            Ok(None) => continue,
            Err(message) => {
                return Err(FieldsV1Error::BadKey {
                    key: key.clone(),
                    message,
                })
            }
        };
        let (grandchildren, child_is_member) = match value {
            Value::Object(inner) => read_node(inner)?,
            // Upstream reads anything that is not an object as an empty one.
            _ => (None, true),
        };
        if child_is_member {
            children
                .get_or_insert_with(FieldSet::new)
                .members
                .insert(pe.clone());
        }
        if let Some(g) = grandchildren {
            let set = children.get_or_insert_with(FieldSet::new);
            let merged = match set.children.get(&pe) {
                Some(existing) => existing.union(&g),
                None => g,
            };
            set.insert_child(pe, merged);
        }
    }
    if children.is_none() {
        is_member = true;
    }
    Ok((children, is_member))
}

fn compare_field_lists(a: &[(String, Value)], b: &[(String, Value)]) -> Ordering {
    for (x, y) in a.iter().zip(b.iter()) {
        let c = x.0.as_bytes().cmp(y.0.as_bytes());
        if c != Ordering::Equal {
            return c;
        }
        let c = compare_values(&x.1, &y.1);
        if c != Ordering::Equal {
            return c;
        }
    }
    a.len().cmp(&b.len())
}

enum Num {
    Int(i128),
    Float(f64),
}

fn num(n: &serde_json::Number) -> Num {
    if let Some(i) = n.as_i64() {
        Num::Int(i128::from(i))
    } else if let Some(u) = n.as_u64() {
        Num::Int(i128::from(u))
    } else {
        Num::Float(n.as_f64().unwrap_or(f64::NAN))
    }
}

fn float_cmp(a: f64, b: f64) -> Ordering {
    a.partial_cmp(&b).unwrap_or(Ordering::Equal)
}

/// Upstream's `value.Compare`: a total order over JSON values (numbers,
/// then strings, booleans, lists, maps, and null last; ints and floats
/// compare numerically).
pub(crate) fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (num(x), num(y)) {
            (Num::Int(i), Num::Int(j)) => i.cmp(&j),
            (Num::Int(i), Num::Float(g)) => float_cmp(i as f64, g),
            (Num::Float(f), Num::Int(j)) => float_cmp(f, j as f64),
            (Num::Float(f), Num::Float(g)) => float_cmp(f, g),
        },
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y.iter()) {
                let c = compare_values(p, q);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            // As upstream's MapCompare: walk the union of keys in lexical
            // order.
            if x.is_empty() && y.is_empty() {
                return Ordering::Equal;
            }
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for (i, k) in keys.into_iter().enumerate() {
                let c = if i == x.len() {
                    Ordering::Less
                } else if i == y.len() {
                    Ordering::Greater
                } else {
                    match (x.get(k), y.get(k)) {
                        (None, _) => Ordering::Greater,
                        (_, None) => Ordering::Less,
                        (Some(p), Some(q)) => compare_values(p, q),
                    }
                };
                if c != Ordering::Equal {
                    return c;
                }
            }
            Ordering::Equal
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Upstream's `value.Equals`: deep equality, ints and floats compared
/// numerically, object key order ignored.
pub(crate) fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (num(x), num(y)) {
            (Num::Int(i), Num::Int(j)) => i == j,
            (Num::Int(i), Num::Float(g)) => (i as f64) == g,
            (Num::Float(f), Num::Int(j)) => f == (j as f64),
            (Num::Float(f), Num::Float(g)) => f == g,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| values_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        _ => a == b,
    }
}

/// Go's `fmt` `%v` for a float64 (`strconv` 'g' format, shortest).
fn go_float_v(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let e = format!("{f:e}");
    let (mantissa, exp_str) = e.split_once('e').unwrap_or((e.as_str(), "0"));
    let exp: i32 = exp_str.parse().unwrap_or(0);
    // strconv's shortest 'g': the exponent form below 1e-4 and from 1e+06.
    if !(-4..6).contains(&exp) {
        return go_exp(mantissa, exp, 2);
    }
    format!("{f}")
}

fn go_exp(mantissa: &str, exp: i32, min_digits: usize) -> String {
    let sign = if exp < 0 { '-' } else { '+' };
    format!(
        "{mantissa}e{sign}{:0width$}",
        exp.unsigned_abs(),
        width = min_digits
    )
}

/// Go's `encoding/json` number text for a float64.
fn go_json_float(f: f64) -> String {
    if !f.is_finite() {
        return "null".into();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let e = format!("{f:e}");
        let (mantissa, exp_str) = e.split_once('e').unwrap_or((e.as_str(), "0"));
        let exp: i32 = exp_str.parse().unwrap_or(0);
        // Go writes e+21 and e-07, then trims the latter to e-7.
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{}", exp.unsigned_abs());
    }
    format!("{f}")
}

fn go_number(n: &serde_json::Number) -> String {
    match num(n) {
        Num::Int(i) => i.to_string(),
        Num::Float(f) => go_json_float(f),
    }
}

/// Upstream's `value.ToString`, used in path strings.
pub(crate) fn go_value_string(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match num(n) {
            Num::Int(i) => i.to_string(),
            Num::Float(f) => go_float_v(f),
        },
        Value::String(s) => go_quote(s),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(go_value_string).collect();
            format!("[{}]", parts.join(","))
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            keys.into_iter()
                .map(|k| format!("{k}={}", go_value_string(&m[k])))
                .collect()
        }
    }
}

/// Go's `strconv.Quote` (`%q`).
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                let u = c as u32;
                if u <= 0xffff {
                    out.push_str(&format!("\\u{u:04x}"));
                } else {
                    out.push_str(&format!("\\U{u:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `encoding/json` string encoding (HTML-safe).
pub(crate) fn go_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// JSON as Go's `encoding/json` writes a decoded value: object keys sorted,
/// HTML-safe strings, Go's number text.
pub(crate) fn go_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&go_number(n)),
        Value::String(s) => go_json_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json(item, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json_string(k, out);
                out.push(':');
                go_json(&m[k], out);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(name: &str) -> PathElement {
        PathElement::Field(name.into())
    }

    fn key(fields: &[(&str, Value)]) -> PathElement {
        let mut v: Vec<(String, Value)> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        PathElement::Key(v)
    }

    // The managedFields of a Deployment created with `kubectl create`, as a
    // Kubernetes 1.33 API server stores them (key order included).
    const DEPLOYMENT_FIELDS: &str = r#"{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:progressDeadlineSeconds":{},"f:replicas":{},"f:revisionHistoryLimit":{},"f:selector":{},"f:strategy":{"f:rollingUpdate":{".":{},"f:maxSurge":{},"f:maxUnavailable":{}},"f:type":{}},"f:template":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:ports":{".":{},"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{},"f:protocol":{}}},"f:resources":{},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{}}},"f:dnsPolicy":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}}"#;

    #[test]
    fn upstream_text_round_trips_byte_for_byte() {
        let v: Value = serde_json::from_str(DEPLOYMENT_FIELDS).unwrap();
        let set = FieldSet::from_fields_v1(&v).unwrap();
        assert_eq!(
            serde_json::to_string(&set.to_fields_v1()).unwrap(),
            DEPLOYMENT_FIELDS
        );
        let containers = [
            f("spec"),
            f("template"),
            f("spec"),
            f("containers"),
            key(&[("name", json!("nginx"))]),
        ];
        assert!(set.has(&containers));
        let mut port = containers.to_vec();
        port.push(f("ports"));
        port.push(key(&[
            ("protocol", json!("TCP")),
            ("containerPort", json!(80)),
        ]));
        assert!(set.has(&port));
        port.push(f("protocol"));
        assert!(set.has(&port));
        assert!(!set.has(&[f("spec")]));
        assert!(set.has(&[f("spec"), f("selector")]));
    }

    #[test]
    fn keys_are_written_in_upstream_order() {
        let mut set = FieldSet::new();
        let list = f("list");
        set.insert(&[list.clone(), PathElement::Index(1)]);
        set.insert(&[list.clone(), PathElement::Value(json!("b"))]);
        set.insert(&[list.clone(), PathElement::Value(json!(10))]);
        set.insert(&[list.clone(), PathElement::Value(json!(9))]);
        set.insert(&[list.clone(), key(&[("port", json!(10))])]);
        set.insert(&[list.clone(), key(&[("port", json!(9))])]);
        set.insert(&[list.clone(), f("z")]);
        set.insert(&[list.clone(), f("a")]);
        let text = serde_json::to_string(&set.to_fields_v1()).unwrap();
        assert_eq!(
            text,
            r#"{"f:list":{"f:a":{},"f:z":{},"k:{\"port\":9}":{},"k:{\"port\":10}":{},"v:9":{},"v:10":{},"v:\"b\"":{},"i:1":{}}}"#
        );
        let back = FieldSet::from_fields_v1(&set.to_fields_v1()).unwrap();
        assert_eq!(back, set);
    }

    #[test]
    fn key_fields_are_sorted_and_values_go_encoded() {
        let pe = PathElement::parse(r#"k:{"protocol":"TCP","containerPort":80}"#)
            .unwrap()
            .unwrap();
        assert_eq!(pe.serialize(), r#"k:{"containerPort":80,"protocol":"TCP"}"#);
        assert_eq!(pe.to_string(), r#"[containerPort=80,protocol="TCP"]"#);
        let v = PathElement::Value(json!("a<b&c"));
        assert_eq!(v.serialize(), r#"v:"a\u003cb\u0026c""#);
        assert_eq!(v.to_string(), r#"[="a<b&c"]"#);
        assert_eq!(PathElement::parse(&v.serialize()).unwrap(), Some(v.clone()));
        assert_eq!(PathElement::Index(3).to_string(), "[3]");
        assert_eq!(
            PathElement::parse("i:3").unwrap(),
            Some(PathElement::Index(3))
        );
        assert_eq!(PathElement::parse("x:3").unwrap(), None);
        assert!(PathElement::parse("f").is_err());
        assert!(PathElement::parse("fx").is_err());
        assert!(PathElement::parse("v:{").is_err());
        assert_eq!(
            PathElement::Value(json!(1.5)).to_string(),
            "[=1.5]",
            "floats print as Go's %v"
        );
        assert_eq!(PathElement::Value(json!(1e7)).to_string(), "[=1e+07]");
        assert_eq!(PathElement::Value(json!(2.5e-7)).serialize(), "v:2.5e-7");
        assert_eq!(PathElement::Value(json!(3.0)).serialize(), "v:3");
    }

    #[test]
    fn path_strings_match_upstream() {
        let p = vec![
            f("spec"),
            f("template"),
            f("spec"),
            f("containers"),
            key(&[("name", json!("c"))]),
            f("image"),
        ];
        assert_eq!(
            path_string(&p),
            r#".spec.template.spec.containers[name="c"].image"#
        );
        assert_eq!(path_string(&[f("spec"), f("replicas")]), ".spec.replicas");
        assert_eq!(
            path_string(&[
                f("metadata"),
                f("finalizers"),
                PathElement::Value(json!("x"))
            ]),
            r#".metadata.finalizers[="x"]"#
        );
    }

    #[test]
    fn dot_marks_a_node_that_is_also_a_member() {
        let v = json!({"f:a": {".": {}, "f:b": {}}, "f:c": {"f:d": {}}});
        let s = FieldSet::from_fields_v1(&v).unwrap();
        assert!(s.has(&[f("a")]));
        assert!(s.has(&[f("a"), f("b")]));
        assert!(!s.has(&[f("c")]));
        assert!(s.has(&[f("c"), f("d")]));
        assert_eq!(s.to_fields_v1(), v);
        let paths: Vec<String> = s.paths().iter().map(|p| path_string(p)).collect();
        assert_eq!(paths, [".a", ".a.b", ".c.d"]);
    }

    #[test]
    fn set_operations() {
        let s1 =
            FieldSet::from_paths([&[f("a")][..], &[f("b"), f("c")][..], &[f("b"), f("d")][..]]);
        let s2 = FieldSet::from_paths([&[f("b")][..], &[f("b"), f("c")][..]]);
        let u = s1.union(&s2);
        assert!(u.has(&[f("a")]) && u.has(&[f("b")]) && u.has(&[f("b"), f("d")]));
        let i = s1.intersection(&s2);
        assert_eq!(i, FieldSet::from_paths([&[f("b"), f("c")][..]]));
        // A member `.b` of the subtrahend does not remove `.b.d`...
        let d = s1.difference(&s2);
        assert_eq!(
            d,
            FieldSet::from_paths([&[f("a")][..], &[f("b"), f("d")][..]])
        );
        // ...unless the difference is recursive.
        let r = s1.recursive_difference(&s2);
        assert_eq!(r, FieldSet::from_paths([&[f("a")][..]]));
        assert!(s1.difference(&s1).is_empty());
        assert_eq!(s1.difference(&s1).to_fields_v1(), json!({}));
    }

    #[test]
    fn bad_fields_v1_is_an_error() {
        assert_eq!(
            FieldSet::from_fields_v1(&json!([])),
            Err(FieldsV1Error::NotAnObject)
        );
        assert!(FieldSet::from_fields_v1(&json!({"k:[1]": {}})).is_err());
        // Unknown element types are skipped, as upstream does.
        let s = FieldSet::from_fields_v1(&json!({"z:x": {}, "f:a": {}})).unwrap();
        assert_eq!(s, FieldSet::from_paths([&[f("a")][..]]));
    }

    #[test]
    fn value_order_and_equality() {
        assert_eq!(compare_values(&json!(1), &json!(1.0)), Ordering::Equal);
        assert!(values_equal(&json!(1), &json!(1.0)));
        assert_eq!(compare_values(&json!(2), &json!("a")), Ordering::Less);
        assert_eq!(compare_values(&json!("a"), &json!(true)), Ordering::Less);
        assert_eq!(compare_values(&json!(true), &json!([])), Ordering::Less);
        assert_eq!(compare_values(&json!([]), &json!({})), Ordering::Less);
        assert_eq!(compare_values(&json!({}), &Value::Null), Ordering::Less);
        assert!(values_equal(
            &json!({"a": 1, "b": 2}),
            &json!({"b": 2, "a": 1})
        ));
        assert!(!values_equal(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        let mut s = String::new();
        go_json(&json!({"b": [1, 2.5, null], "a": "x\u{2028}"}), &mut s);
        assert_eq!(s, r#"{"a":"x\u2028","b":[1,2.5,null]}"#);
        assert_eq!(go_quote("a\"b\n"), r#""a\"b\n""#);
    }
}
