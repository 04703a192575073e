//! CustomResourceDefinition structural schemas, with upstream semantics.
//!
//! One [`StructuralSchema`] is built per served CRD version from
//! `spec.versions[*].schema.openAPIV3Schema` and then does, for every custom
//! object of that version, what `k8s.io/apiextensions-apiserver` does:
//!
//! - [`StructuralSchema::from_json`] makes the CRD-time checks of
//!   `pkg/apis/apiextensions/validation` (`ValidateCustomResourceDefinitionOpenAPISchema`,
//!   the structural invariants and completeness of `pkg/apiserver/schema`,
//!   and `ValidateDefaults`), with upstream's field paths and messages;
//! - [`StructuralSchema::prune`] is `pruning.PruneWithOptions` at the resource
//!   root, `PruneNonNullableNullsWithoutDefaults`, and the coercion of the
//!   `metadata` of embedded resources (`objectmeta.Coerce`);
//! - [`StructuralSchema::apply_defaults`] is `defaulting.Default`;
//! - [`StructuralSchema::validate`] is the kube-openapi schema validator
//!   (`k8s.io/kube-openapi/pkg/validation/validate`) with its results turned
//!   into field errors as `pkg/apiserver/validation` does, plus the embedded
//!   resource checks (`objectmeta.Validate`) and the list-type `set`/`map`
//!   uniqueness checks (`listtype.ValidateListSetsAndMaps`).
//!
//! Not covered: `x-kubernetes-validations` rules are syntax-checked but not
//! evaluated (no CEL), validation ratcheting on update, and the root-schema
//! restrictions that depend on the status subresource. The numeric-format
//! range checks follow current kube-openapi (an `int32` field rejects values
//! outside the 32-bit range). Regular expressions use the `regex` crate after
//! a small rewrite that keeps Go's ASCII-only `\d`, `\w`, `\s` and `\b`.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Map, Value};

use crate::names;
use crate::status::Cause;

/// Deepest schema nesting accepted (each `properties`, `items`,
/// `additionalProperties` or junctor level counts one), and deepest data
/// nesting walked where the walk is not bounded by the schema.
const MAX_DEPTH: usize = 128;

/// `openapiV3Types`, sorted as upstream lists them in errors.
const V3_TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];

/// Fields of an embedded resource (and of the resource root) that pruning and
/// defaulting treat as TypeMeta/ObjectMeta.
const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// String formats CRD schemas support (Kubernetes 1.33, compatibility version
/// 1.32), normalized as go-openapi does (dashes removed). Any other format on
/// a string (or untyped) schema is ignored.
const SUPPORTED_FORMATS: [&str; 24] = [
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
];

/// `metadata.annotations` total size limit (`TotalAnnotationSizeLimitB`).
const TOTAL_ANNOTATION_SIZE_LIMIT: i64 = 256 * 1024;

// ---------------------------------------------------------------------------
// Field paths, as `field.Path` prints them. An empty string is the nil path.

fn child(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}.{name}")
    }
}

fn key(base: &str, k: &str) -> String {
    format!("{base}[{k}]")
}

fn index(base: &str, i: usize) -> String {
    format!("{base}[{i}]")
}

/// A nil `*field.Path` prints as `<nil>`.
fn shown(path: &str) -> String {
    if path.is_empty() {
        "<nil>".to_string()
    } else {
        path.to_string()
    }
}

// ---------------------------------------------------------------------------
// Go formatting of values, as field errors and kube-openapi print them.

/// `strconv.Quote`.
fn go_quote(s: &str) -> String {
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
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Shortest digits and decimal exponent of `f`, as `1.5e-7` splits.
fn float_parts(f: f64) -> (String, i32) {
    let sci = format!("{:e}", f);
    match sci.split_once('e') {
        Some((mant, exp)) => (mant.to_string(), exp.parse().unwrap_or(0)),
        None => (sci, 0),
    }
}

/// Go's `%v` for a float64.
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let (mant, exp) = float_parts(f);
    if !(-4..21).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    } else {
        format!("{f}")
    }
}

/// `encoding/json`'s rendering of a float64.
fn go_json_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let (mant, exp) = float_parts(f);
        if exp < 0 {
            format!("{mant}e-{}", exp.abs())
        } else {
            format!("{mant}e+{exp:02}")
        }
    } else {
        format!("{f}")
    }
}

/// A JSON number as Go decodes it into an `interface{}`: int64 when it fits,
/// float64 otherwise.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Num {
    I(i64),
    F(f64),
}

impl Num {
    fn of(n: &serde_json::Number) -> Num {
        match n.as_i64() {
            Some(i) => Num::I(i),
            None => Num::F(n.as_f64().unwrap_or(f64::NAN)),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Num::I(i) => i as f64,
            Num::F(f) => f,
        }
    }

    /// `%v`.
    fn go(self) -> String {
        match self {
            Num::I(i) => i.to_string(),
            Num::F(f) => go_float(f),
        }
    }
}

fn go_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn go_json_into(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match Num::of(n) {
            Num::I(i) => out.push_str(&i.to_string()),
            Num::F(f) => out.push_str(&go_json_float(f)),
        },
        Value::String(s) => go_json_string(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json_into(x, out);
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
                if let Some(x) = m.get(k) {
                    go_json_into(x, out);
                }
            }
            out.push('}');
        }
    }
}

/// `json.Marshal` (map keys sorted, HTML characters escaped).
fn go_json(v: &Value) -> String {
    let mut out = String::new();
    go_json_into(v, &mut out);
    out
}

/// How `field.Error.ErrorBody` prints a bad value.
fn go_body(v: &Value) -> String {
    match v {
        Value::String(s) => go_quote(s),
        Value::Number(n) => Num::of(n).go(),
        Value::Bool(b) => b.to_string(),
        other => go_json(other),
    }
}

// ---------------------------------------------------------------------------
// Field errors (`k8s.io/apimachinery/pkg/util/validation/field`).

fn with_detail(head: String, detail: &str) -> String {
    if detail.is_empty() {
        head
    } else {
        format!("{head}: {detail}")
    }
}

fn cause(reason: &str, field: &str, message: String) -> Cause {
    Cause {
        reason: reason.to_string(),
        message,
        field: field.to_string(),
    }
}

fn err_required(field: &str, detail: &str) -> Cause {
    cause(
        "FieldValueRequired",
        field,
        with_detail("Required value".into(), detail),
    )
}

fn err_invalid(field: &str, value: &Value, detail: &str) -> Cause {
    cause(
        "FieldValueInvalid",
        field,
        with_detail(format!("Invalid value: {}", go_body(value)), detail),
    )
}

fn err_type_invalid(field: &str, value: &Value, detail: &str) -> Cause {
    cause(
        "FieldValueTypeInvalid",
        field,
        with_detail(format!("Invalid value: {}", go_body(value)), detail),
    )
}

fn err_forbidden(field: &str, detail: &str) -> Cause {
    cause(
        "FieldValueForbidden",
        field,
        with_detail("Forbidden".into(), detail),
    )
}

fn err_not_supported(field: &str, value: &Value, supported: &[String]) -> Cause {
    let detail = if supported.is_empty() {
        String::new()
    } else {
        let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
        format!("supported values: {}", quoted.join(", "))
    };
    cause(
        "FieldValueNotSupported",
        field,
        with_detail(format!("Unsupported value: {}", go_body(value)), &detail),
    )
}

fn err_duplicate(field: &str, value: &Value) -> Cause {
    cause(
        "FieldValueDuplicate",
        field,
        format!("Duplicate value: {}", go_body(value)),
    )
}

fn err_too_long(field: &str, max: i64) -> Cause {
    let detail = if max >= 0 {
        format!(
            "may not be more than {max} {}",
            if max == 1 { "byte" } else { "bytes" }
        )
    } else {
        "value is too long".to_string()
    };
    cause("FieldValueTooLong", field, format!("Too long: {detail}"))
}

fn err_too_many(field: &str, actual: i64, max: i64) -> Cause {
    let detail = if max >= 0 {
        format!(
            "must have at most {max} {}",
            if max == 1 { "item" } else { "items" }
        )
    } else {
        "has too many items".to_string()
    };
    let head = if actual >= 0 {
        format!("Too many: {actual}")
    } else {
        "Too many".to_string()
    };
    cause("FieldValueTooMany", field, format!("{head}: {detail}"))
}

fn full(c: &Cause) -> String {
    format!("{}: {}", c.field, c.message)
}

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

// ---------------------------------------------------------------------------
// The schema tree: one node per JSONSchemaProps, structural or nested.

#[derive(Debug, Clone)]
enum Additional {
    Bool(bool),
    Schema(Box<Node>),
}

impl Additional {
    fn schema(&self) -> Option<&Node> {
        match self {
            Additional::Schema(n) => Some(n),
            Additional::Bool(_) => None,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct XValidation {
    rule: String,
    message: String,
    message_expression: String,
}

/// One JSONSchemaProps. Junctor children (`allOf`, `anyOf`, `oneOf`, `not`)
/// are nodes too; the structural checks keep them free of structure.
#[derive(Debug, Clone, Default)]
struct Node {
    /// Keys present with a non-zero value, in Go's sense (for the
    /// `reflect.DeepEqual` comparisons upstream makes).
    nonzero: Vec<String>,

    ty: String,
    /// `["integer", "string"]` for int-or-string, else `[type]` or `[]`.
    types: Vec<String>,
    /// `types` joined with commas, as type errors print them.
    types_joined: String,
    format: String,
    /// The format the validator sees after upstream strips unsupported ones.
    vformat: String,
    /// `vformat` normalized (dashes removed) when it is a string format.
    string_format: String,
    title: String,
    description: String,
    default: Option<Value>,
    nullable: bool,

    maximum: Option<f64>,
    exclusive_maximum: bool,
    minimum: Option<f64>,
    exclusive_minimum: bool,
    multiple_of: Option<f64>,
    max_length: Option<i64>,
    min_length: Option<i64>,
    pattern: String,
    regex: OnceLock<Option<Regex>>,
    max_items: Option<i64>,
    min_items: Option<i64>,
    unique_items: bool,
    enum_values: Vec<Value>,
    max_properties: Option<i64>,
    min_properties: Option<i64>,
    required: Vec<String>,

    items: Option<Box<Node>>,
    /// `items` given as an array of schemas (unsupported), kept for messages.
    items_array: Option<Value>,
    properties: Vec<(String, Node)>,
    prop_index: HashMap<String, usize>,
    additional: Option<Additional>,
    all_of: Vec<Node>,
    any_of: Vec<Node>,
    one_of: Vec<Node>,
    not: Option<Box<Node>>,

    id: String,
    schema_url: String,
    has_ref: bool,
    ref_nonempty: bool,
    pattern_properties: bool,
    has_dependencies: bool,
    dependencies_nonempty: bool,
    additional_items: bool,
    definitions: bool,

    preserve_unknown: Option<bool>,
    embedded: bool,
    int_or_string: bool,
    list_type: Option<String>,
    list_map_keys: Vec<String>,
    map_type: Option<String>,
    x_validations: Vec<XValidation>,
}

impl Node {
    fn prop(&self, k: &str) -> Option<&Node> {
        self.prop_index.get(k).map(|&i| &self.properties[i].1)
    }

    fn has_type(&self, t: &str) -> bool {
        self.types.iter().any(|x| x == t)
    }

    fn preserves(&self) -> bool {
        self.preserve_unknown == Some(true)
    }

    fn additional_schema(&self) -> Option<&Node> {
        self.additional.as_ref().and_then(Additional::schema)
    }

    /// The compiled `pattern`, compiled on first use and cached.
    fn regex(&self) -> Option<&Regex> {
        self.regex
            .get_or_init(|| compile_go_regex(&self.pattern).ok())
            .as_ref()
    }
}

/// A Go value that is not its type's zero value (approximately: JSON
/// `false`, `""`, `[]` and `{}` are zero, numbers are pointers upstream).
fn nonzero(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
        Value::Number(_) => true,
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Turns the JSON of a JSONSchemaProps into a [`Node`], collecting decoding
/// errors (what upstream's JSON decoding would refuse).
struct Parser {
    errs: Vec<Cause>,
}

impl Parser {
    fn bad(&mut self, path: &str, v: &Value, want: &str) {
        self.errs.push(err_invalid(
            path,
            v,
            &format!(
                "must be of type {want}, not {}",
                match json_kind(v) {
                    "bool" => "boolean",
                    k => k,
                }
            ),
        ));
    }

    fn string(&mut self, v: &Value, path: &str) -> String {
        match v {
            Value::String(s) => s.clone(),
            _ => {
                self.bad(path, v, "string");
                String::new()
            }
        }
    }

    fn boolean(&mut self, v: &Value, path: &str) -> bool {
        match v {
            Value::Bool(b) => *b,
            _ => {
                self.bad(path, v, "boolean");
                false
            }
        }
    }

    fn number(&mut self, v: &Value, path: &str) -> Option<f64> {
        match v {
            Value::Number(n) => n.as_f64(),
            _ => {
                self.bad(path, v, "number");
                None
            }
        }
    }

    fn int(&mut self, v: &Value, path: &str) -> Option<i64> {
        match v.as_i64() {
            Some(i) => Some(i),
            None => {
                self.bad(path, v, "integer");
                None
            }
        }
    }

    fn strings(&mut self, v: &Value, path: &str) -> Vec<String> {
        match v {
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, x)| self.string(x, &index(path, i)))
                .collect(),
            _ => {
                self.bad(path, v, "array");
                Vec::new()
            }
        }
    }

    fn nodes(&mut self, v: &Value, path: &str, depth: usize) -> Vec<Node> {
        match v {
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, x)| self.node(x, &index(path, i), depth + 1))
                .collect(),
            _ => {
                self.bad(path, v, "array");
                Vec::new()
            }
        }
    }

    fn x_validations(&mut self, v: &Value, path: &str) -> Vec<XValidation> {
        let Value::Array(a) = v else {
            self.bad(path, v, "array");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, x) in a.iter().enumerate() {
            let p = index(path, i);
            let Value::Object(m) = x else {
                self.bad(&p, x, "object");
                continue;
            };
            let mut r = XValidation::default();
            for (k, val) in m {
                if val.is_null() {
                    continue;
                }
                match k.as_str() {
                    "rule" => r.rule = self.string(val, &child(&p, k)),
                    "message" => r.message = self.string(val, &child(&p, k)),
                    "messageExpression" => r.message_expression = self.string(val, &child(&p, k)),
                    _ => {}
                }
            }
            out.push(r);
        }
        out
    }

    fn node(&mut self, v: &Value, path: &str, depth: usize) -> Node {
        let mut n = Node::default();
        if depth > MAX_DEPTH {
            self.errs.push(err_invalid(
                path,
                &s(""),
                &format!("must not be nested more than {MAX_DEPTH} levels deep"),
            ));
            return n;
        }
        let Value::Object(obj) = v else {
            self.bad(path, v, "object");
            return n;
        };
        for (k, val) in obj {
            if val.is_null() {
                continue;
            }
            let p = child(path, k);
            let mut known = true;
            match k.as_str() {
                "id" => n.id = self.string(val, &p),
                "$schema" => n.schema_url = self.string(val, &p),
                "$ref" => {
                    n.has_ref = true;
                    n.ref_nonempty = !self.string(val, &p).is_empty();
                }
                "description" => n.description = self.string(val, &p),
                "title" => n.title = self.string(val, &p),
                "type" => n.ty = self.string(val, &p),
                "format" => n.format = self.string(val, &p),
                "pattern" => n.pattern = self.string(val, &p),
                "default" => n.default = Some(val.clone()),
                "example" | "externalDocs" => {}
                "nullable" => n.nullable = self.boolean(val, &p),
                "maximum" => n.maximum = self.number(val, &p),
                "minimum" => n.minimum = self.number(val, &p),
                "multipleOf" => n.multiple_of = self.number(val, &p),
                "exclusiveMaximum" => n.exclusive_maximum = self.boolean(val, &p),
                "exclusiveMinimum" => n.exclusive_minimum = self.boolean(val, &p),
                "uniqueItems" => n.unique_items = self.boolean(val, &p),
                "maxLength" => n.max_length = self.int(val, &p),
                "minLength" => n.min_length = self.int(val, &p),
                "maxItems" => n.max_items = self.int(val, &p),
                "minItems" => n.min_items = self.int(val, &p),
                "maxProperties" => n.max_properties = self.int(val, &p),
                "minProperties" => n.min_properties = self.int(val, &p),
                "enum" => match val {
                    Value::Array(a) => n.enum_values = a.clone(),
                    _ => self.bad(&p, val, "array"),
                },
                "required" => n.required = self.strings(val, &p),
                "items" => match val {
                    Value::Object(_) => n.items = Some(Box::new(self.node(val, &p, depth + 1))),
                    Value::Array(_) => n.items_array = Some(val.clone()),
                    _ => self.bad(&p, val, "object"),
                },
                "allOf" => n.all_of = self.nodes(val, &p, depth),
                "anyOf" => n.any_of = self.nodes(val, &p, depth),
                "oneOf" => n.one_of = self.nodes(val, &p, depth),
                "not" => n.not = Some(Box::new(self.node(val, &p, depth + 1))),
                "properties" => match val {
                    Value::Object(m) => {
                        for (name, x) in m {
                            let node = self.node(x, &key(&p, name), depth + 1);
                            n.prop_index.insert(name.clone(), n.properties.len());
                            n.properties.push((name.clone(), node));
                        }
                    }
                    _ => self.bad(&p, val, "object"),
                },
                "additionalProperties" => match val {
                    Value::Bool(b) => n.additional = Some(Additional::Bool(*b)),
                    Value::Object(_) => {
                        n.additional =
                            Some(Additional::Schema(Box::new(self.node(val, &p, depth + 1))))
                    }
                    _ => self.bad(&p, val, "object"),
                },
                "additionalItems" => n.additional_items = true,
                "patternProperties" => n.pattern_properties = nonzero(val),
                "definitions" => n.definitions = nonzero(val),
                "dependencies" => {
                    n.has_dependencies = true;
                    n.dependencies_nonempty = nonzero(val);
                }
                "x-kubernetes-preserve-unknown-fields" => {
                    n.preserve_unknown = Some(self.boolean(val, &p))
                }
                "x-kubernetes-embedded-resource" => n.embedded = self.boolean(val, &p),
                "x-kubernetes-int-or-string" => n.int_or_string = self.boolean(val, &p),
                "x-kubernetes-list-type" => n.list_type = Some(self.string(val, &p)),
                "x-kubernetes-map-type" => n.map_type = Some(self.string(val, &p)),
                "x-kubernetes-list-map-keys" => n.list_map_keys = self.strings(val, &p),
                "x-kubernetes-validations" => n.x_validations = self.x_validations(val, &p),
                _ => known = false,
            }
            // Pointer fields (numbers, x-kubernetes-list-type, ...) are
            // non-zero whenever set.
            let pointer = matches!(
                k.as_str(),
                "x-kubernetes-preserve-unknown-fields"
                    | "x-kubernetes-list-type"
                    | "x-kubernetes-map-type"
                    | "default"
                    | "$ref"
            );
            if known && (pointer || nonzero(val)) {
                n.nonzero.push(k.clone());
            }
        }
        n.types = if n.int_or_string {
            vec!["integer".into(), "string".into()]
        } else if n.ty.is_empty() {
            Vec::new()
        } else {
            vec![n.ty.clone()]
        };
        n.types_joined = n.types.join(",");
        n.vformat = supported_format(&n);
        let norm = n.vformat.replace('-', "");
        if SUPPORTED_FORMATS.contains(&norm.as_str()) {
            n.string_format = norm;
        }
        n
    }
}

/// `StripUnsupportedFormatsPostProcessor`: the format the validator keeps.
fn supported_format(n: &Node) -> String {
    if n.format.is_empty() {
        return String::new();
    }
    let single = if n.types.len() == 1 {
        n.types[0].as_str()
    } else {
        ""
    };
    let keep = match single {
        "" | "string" => SUPPORTED_FORMATS.contains(&n.format.replace('-', "").as_str()),
        "integer" => n.format == "int32" || n.format == "int64",
        "number" => n.format == "float" || n.format == "double",
        _ => false,
    };
    if keep {
        n.format.clone()
    } else {
        String::new()
    }
}

// ---------------------------------------------------------------------------
// Regular expressions: Go's RE2 syntax on the `regex` crate.

/// Rewrites a Go (RE2) pattern for the `regex` crate: `\d`, `\w`, `\s` and
/// `\b` are ASCII-only in Go but Unicode-aware in Rust; inside a character
/// class Go takes `[`, `&`, `~` and `--` literally, Rust does not; and Go
/// takes a `{` that starts no repetition literally.
fn translate_go_regex(p: &str) -> String {
    let chars: Vec<char> = p.chars().collect();
    let mut out = String::with_capacity(p.len() + 8);
    let mut in_class = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            let Some(&e) = chars.get(i + 1) else {
                out.push('\\');
                break;
            };
            match e {
                // `\Q...\E`: a literal run.
                'Q' if !in_class => {
                    let rest: String = chars[i + 2..].iter().collect();
                    let (lit, len) = match rest.find("\\E") {
                        Some(at) => (&rest[..at], at + 2),
                        None => (rest.as_str(), rest.len()),
                    };
                    out.push_str(&regex::escape(lit));
                    i += 2 + rest[..len].chars().count();
                    continue;
                }
                // `\p{Greek}`, `\x{10FFFF}`: copy through the brace.
                'p' | 'P' | 'x' if chars.get(i + 2) == Some(&'{') => {
                    let close = chars[i..].iter().position(|&ch| ch == '}');
                    let end = close.map_or(chars.len(), |at| i + at + 1);
                    out.extend(&chars[i..end]);
                    i = end;
                    continue;
                }
                'd' => out.push_str("[0-9]"),
                'D' => out.push_str("[^0-9]"),
                'w' => out.push_str("[0-9A-Za-z_]"),
                'W' => out.push_str("[^0-9A-Za-z_]"),
                's' => out.push_str("[\\t\\n\\f\\r ]"),
                'S' => out.push_str("[^\\t\\n\\f\\r ]"),
                'b' if !in_class => out.push_str("(?-u:\\b)"),
                'B' if !in_class => out.push_str("(?-u:\\B)"),
                _ => {
                    out.push('\\');
                    out.push(e);
                }
            }
            i += 2;
            continue;
        }
        if in_class {
            match c {
                ']' => {
                    in_class = false;
                    out.push(']');
                }
                '[' => {
                    // POSIX class `[:alpha:]` (or `[:^alpha:]`) passes through.
                    let posix = posix_class_len(&chars[i..]);
                    if posix > 0 {
                        out.extend(&chars[i..i + posix]);
                        i += posix;
                        continue;
                    }
                    out.push_str("\\[");
                }
                '&' | '~' => {
                    out.push('\\');
                    out.push(c);
                }
                '-' if chars.get(i + 1) == Some(&'-') => {
                    out.push_str("-\\-");
                    i += 2;
                    continue;
                }
                _ => out.push(c),
            }
            i += 1;
            continue;
        }
        match c {
            '[' => {
                in_class = true;
                out.push('[');
                i += 1;
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                // A `]` right after `[` or `[^` is literal.
                if chars.get(i) == Some(&']') {
                    out.push_str("\\]");
                    i += 1;
                }
                continue;
            }
            '{' => {
                let rest: String = chars[i..].iter().collect();
                if is_repeat(&rest) {
                    out.push('{');
                } else {
                    out.push_str("\\{");
                }
            }
            '}' => {
                // Literal unless it closes a repetition we passed through.
                if out.ends_with(|ch: char| ch.is_ascii_digit() || ch == ',')
                    && out.rfind('{').is_some_and(|at| !out[..at].ends_with('\\'))
                {
                    out.push('}');
                } else {
                    out.push_str("\\}");
                }
            }
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

/// Length of a POSIX class `[:name:]` or `[:^name:]` at the start of `c`,
/// or 0.
fn posix_class_len(c: &[char]) -> usize {
    if c.len() < 4 || c[0] != '[' || c[1] != ':' {
        return 0;
    }
    let mut i = 2;
    if c.get(i) == Some(&'^') {
        i += 1;
    }
    let start = i;
    while c.get(i).is_some_and(char::is_ascii_lowercase) {
        i += 1;
    }
    if i > start && c.get(i) == Some(&':') && c.get(i + 1) == Some(&']') {
        i + 2
    } else {
        0
    }
}

/// `{n}`, `{n,}` or `{n,m}` at the start of `s`.
fn is_repeat(s: &str) -> bool {
    let Some(body) = s.strip_prefix('{') else {
        return false;
    };
    let Some(end) = body.find('}') else {
        return false;
    };
    let inner = &body[..end];
    let (a, b) = match inner.split_once(',') {
        Some((a, b)) => (a, Some(b)),
        None => (inner, None),
    };
    !a.is_empty()
        && a.bytes().all(|c| c.is_ascii_digit())
        && b.is_none_or(|b| b.bytes().all(|c| c.is_ascii_digit()))
}

fn compile_go_regex(p: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(&translate_go_regex(p))
        .size_limit(1 << 22)
        .build()
        .map_err(|e| {
            let text = e.to_string();
            let last = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid pattern")
                .trim()
                .trim_start_matches("error: ")
                .to_string();
            format!("error parsing regexp: {last}: `{p}`")
        })
}

fn static_regex(cell: &'static OnceLock<Option<Regex>>, pattern: &str) -> Option<&'static Regex> {
    cell.get_or_init(|| Regex::new(pattern).ok()).as_ref()
}

fn re_match(cell: &'static OnceLock<Option<Regex>>, pattern: &str, s: &str) -> bool {
    static_regex(cell, pattern).is_some_and(|r| r.is_match(s))
}

// ---------------------------------------------------------------------------
// String formats (kube-openapi `strfmt.Default`).

fn check_format(normalized: &str, v: &str) -> bool {
    static UUID: OnceLock<Option<Regex>> = OnceLock::new();
    static UUID3: OnceLock<Option<Regex>> = OnceLock::new();
    static UUID4: OnceLock<Option<Regex>> = OnceLock::new();
    static UUID5: OnceLock<Option<Regex>> = OnceLock::new();
    static HEXCOLOR: OnceLock<Option<Regex>> = OnceLock::new();
    static RGBCOLOR: OnceLock<Option<Regex>> = OnceLock::new();
    static BASE64: OnceLock<Option<Regex>> = OnceLock::new();
    static SSN: OnceLock<Option<Regex>> = OnceLock::new();
    match normalized {
        "bsonobjectid" => v.len() == 24 && v.bytes().all(|b| b.is_ascii_hexdigit()),
        "uri" => is_request_uri(v),
        "email" => is_email(v),
        "hostname" => is_hostname(v),
        "ipv4" => v.contains('.') && (parse_ipv4_sloppy(v).is_some() || parse_ipv6(v)),
        "ipv6" => v.contains(':') && parse_ipv6(v),
        "cidr" => is_cidr(v),
        "mac" => is_mac(v),
        "uuid" => re_match(
            &UUID,
            r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$",
            v,
        ),
        "uuid3" => re_match(
            &UUID3,
            r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$",
            v,
        ),
        "uuid4" => re_match(
            &UUID4,
            r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$",
            v,
        ),
        "uuid5" => re_match(
            &UUID5,
            r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$",
            v,
        ),
        "isbn" => is_isbn(v, 10) || is_isbn(v, 13),
        "isbn10" => is_isbn(v, 10),
        "isbn13" => is_isbn(v, 13),
        "creditcard" => is_credit_card(v),
        "ssn" => v.len() == 11 && re_match(&SSN, r"^[0-9]{3}[- ]?[0-9]{2}[- ]?[0-9]{4}$", v),
        "hexcolor" => re_match(&HEXCOLOR, r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$", v),
        "rgbcolor" => re_match(
            &RGBCOLOR,
            r"^rgb\([\t\n\f\r ]*(0|[1-9][0-9]?|1[0-9][0-9]?|2[0-4][0-9]|25[0-5])[\t\n\f\r ]*,[\t\n\f\r ]*(0|[1-9][0-9]?|1[0-9][0-9]?|2[0-4][0-9]|25[0-5])[\t\n\f\r ]*,[\t\n\f\r ]*(0|[1-9][0-9]?|1[0-9][0-9]?|2[0-4][0-9]|25[0-5])[\t\n\f\r ]*\)$",
            v,
        ),
        "byte" => re_match(
            &BASE64,
            r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$",
            v,
        ),
        "date" => is_date(v),
        "datetime" => is_date_time(v),
        "duration" => is_duration(v),
        _ => true,
    }
}

/// `time.Parse("2006-01-02", s)`.
fn is_date(v: &str) -> bool {
    let b = v.as_bytes();
    if !v.is_ascii() || b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = &v[r];
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (Some(y), Some(m), Some(d)) = (digits(0..4), digits(5..7), digits(8..10)) else {
        return false;
    };
    if !(1..=12).contains(&m) {
        return false;
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    (1..=days).contains(&d)
}

/// strfmt `IsDateTime`.
fn is_date_time(v: &str) -> bool {
    static TIME: OnceLock<Option<Regex>> = OnceLock::new();
    if v.len() < 4 {
        return false;
    }
    let lower = v.to_lowercase();
    let parts: Vec<&str> = lower.split('t').collect();
    if parts.len() < 2 || !is_date(parts[0]) {
        return false;
    }
    let Some(re) = static_regex(
        &TIME,
        r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$",
    ) else {
        return false;
    };
    let Some(m) = re.captures(parts[1]) else {
        return false;
    };
    let g = |i: usize| m.get(i).map_or("", |x| x.as_str());
    g(1) <= "23" && g(2) <= "59" && g(3) <= "59"
}

/// strfmt `ParseDuration`: Go's `time.ParseDuration`, else the lenient
/// "number unit" form (`5 minutes`).
fn is_duration(v: &str) -> bool {
    static LOOSE: OnceLock<Option<Regex>> = OnceLock::new();
    if go_parse_duration(v) {
        return true;
    }
    let Some(re) = static_regex(&LOOSE, r"(([0-9]+)[\t\n\f\r ]*([A-Za-zµ]+))") else {
        return false;
    };
    const UNITS: [&[&str]; 7] = [
        &["ns", "nano"],
        &["us", "µs", "micro"],
        &["ms", "milli"],
        &["s", "sec"],
        &["m", "min"],
        &["h", "hr", "hour"],
        &["d", "day"],
    ];
    const WEEK: &[&str] = &["w", "wk", "week"];
    let mut ok = false;
    for m in re.captures_iter(v) {
        let digits = m.get(2).map_or("", |x| x.as_str());
        if digits.parse::<i64>().is_err() {
            return false;
        }
        let unit = m.get(3).map_or("", |x| x.as_str()).trim().to_lowercase();
        for variants in UNITS.iter().copied().chain(std::iter::once(WEEK)) {
            let last = variants.len() - 1;
            for (i, variant) in variants.iter().enumerate() {
                if (i == last && unit.starts_with(variant)) || variant.eq_ignore_ascii_case(&unit) {
                    ok = true;
                }
            }
        }
    }
    ok
}

/// Go's `time.ParseDuration` accepts `s`.
fn go_parse_duration(orig: &str) -> bool {
    let mut s = orig;
    if let Some(rest) = s.strip_prefix(['-', '+']) {
        s = rest;
    }
    if s == "0" {
        return true;
    }
    if s.is_empty() {
        return false;
    }
    let mut total: f64 = 0.0;
    while !s.is_empty() {
        let b = s.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return false;
        }
        let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let int_part = &s[..int_len];
        if int_len > 0 && int_part.parse::<u64>().map_or(true, |x| x > 1 << 63) {
            return false;
        }
        s = &s[int_len..];
        let mut frac_part = "";
        if let Some(rest) = s.strip_prefix('.') {
            let frac_len = rest.bytes().take_while(|c| c.is_ascii_digit()).count();
            frac_part = &rest[..frac_len];
            s = &rest[frac_len..];
            if int_len == 0 && frac_len == 0 {
                return false;
            }
        } else if int_len == 0 {
            return false;
        }
        let unit_len = s
            .bytes()
            .take_while(|&c| c != b'.' && !c.is_ascii_digit())
            .count();
        if unit_len == 0 {
            return false;
        }
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        let scale: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return false,
        };
        let value: f64 = format!(
            "{}.{}",
            if int_part.is_empty() { "0" } else { int_part },
            if frac_part.is_empty() { "0" } else { frac_part }
        )
        .parse()
        .unwrap_or(f64::INFINITY);
        total += value * scale;
        if total > 9.223_372_036_854_776e18 {
            return false;
        }
    }
    true
}

/// strfmt `IsHostname`.
fn is_hostname(v: &str) -> bool {
    static HOST: OnceLock<Option<Regex>> = OnceLock::new();
    re_match(
        &HOST,
        r"^([a-zA-Z0-9\p{S}\p{L}]((-?[a-zA-Z0-9\p{S}\p{L}]{0,62})?)|([a-zA-Z0-9\p{S}\p{L}](([a-zA-Z0-9\-\p{S}\p{L}]{0,61}[a-zA-Z0-9\p{S}\p{L}])?)(\.)){1,}([a-zA-Z\p{L}]){2,63})$",
        v,
    ) && v.len() <= 255
        && v.split('.').all(|p| p.len() <= 63)
}

/// IPv4 as `netutils.ParseIPSloppy` reads it: leading zeros allowed.
fn parse_ipv4_sloppy(v: &str) -> Option<[u8; 4]> {
    let parts: Vec<&str> = v.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut out = [0u8; 4];
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let n: u64 = p.trim_start_matches('0').parse().unwrap_or(0);
        if p.trim_start_matches('0').len() > 3 || n > 255 {
            return None;
        }
        out[i] = n as u8;
    }
    Some(out)
}

fn parse_ipv6(v: &str) -> bool {
    v.parse::<std::net::Ipv6Addr>().is_ok()
}

/// `netutils.ParseCIDRSloppy`.
fn is_cidr(v: &str) -> bool {
    let Some((ip, mask)) = v.split_once('/') else {
        return false;
    };
    let bits = if parse_ipv4_sloppy(ip).is_some() {
        32
    } else if parse_ipv6(ip) {
        128
    } else {
        return false;
    };
    !mask.is_empty()
        && mask.bytes().all(|c| c.is_ascii_digit())
        && mask
            .trim_start_matches('0')
            .parse::<u32>()
            .map_or(mask.trim_start_matches('0').is_empty(), |n| n <= bits)
}

/// Go's `net.ParseMAC`.
fn is_mac(v: &str) -> bool {
    let b = v.as_bytes();
    if b.len() < 14 {
        return false;
    }
    let hex = |x: &[u8]| x.iter().all(|c| c.is_ascii_hexdigit());
    if b[2] == b':' || b[2] == b'-' {
        if !(b.len() + 1).is_multiple_of(3) {
            return false;
        }
        let n = (b.len() + 1) / 3;
        if n != 6 && n != 8 && n != 20 {
            return false;
        }
        let sep = b[2];
        (0..n).all(|i| {
            let at = i * 3;
            hex(&b[at..at + 2]) && (i == n - 1 || b[at + 2] == sep)
        })
    } else if b[4] == b'.' {
        if !(b.len() + 1).is_multiple_of(5) {
            return false;
        }
        let n = 2 * (b.len() + 1) / 5;
        if n != 6 && n != 8 && n != 20 {
            return false;
        }
        (0..n / 2).all(|i| {
            let at = i * 5;
            hex(&b[at..at + 4]) && (i == n / 2 - 1 || b[at + 4] == b'.')
        })
    } else {
        false
    }
}

/// govalidator `IsISBN`.
fn is_isbn(v: &str, version: u32) -> bool {
    let d: Vec<u8> = v
        .bytes()
        .filter(|c| !matches!(c, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ' | b'-'))
        .collect();
    if version == 10 {
        let ok = d.len() == 10
            && d[..9].iter().all(u8::is_ascii_digit)
            && (d[9].is_ascii_digit() || d[9] == b'X');
        if !ok {
            return false;
        }
        let mut sum: u32 = (0..9)
            .map(|i| (i as u32 + 1) * u32::from(d[i] - b'0'))
            .sum();
        sum += 10
            * if d[9] == b'X' {
                10
            } else {
                u32::from(d[9] - b'0')
            };
        sum.is_multiple_of(11)
    } else {
        if d.len() != 13 || !d.iter().all(u8::is_ascii_digit) {
            return false;
        }
        let sum: u32 = (0..12)
            .map(|i| if i % 2 == 0 { 1 } else { 3 } * u32::from(d[i] - b'0'))
            .sum();
        u32::from(d[12] - b'0') == (10 - sum % 10) % 10
    }
}

/// govalidator `IsCreditCard`: the card-number pattern, then Luhn.
fn is_credit_card(v: &str) -> bool {
    static CARD: OnceLock<Option<Regex>> = OnceLock::new();
    let digits: String = v.chars().filter(char::is_ascii_digit).collect();
    if !re_match(
        &CARD,
        r"^(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])[0-9]{11}|(?:2131|1800|35[0-9]{3})[0-9]{11})$",
        &digits,
    ) {
        return false;
    }
    let mut sum = 0;
    for (i, c) in digits.bytes().rev().enumerate() {
        let mut n = u32::from(c - b'0');
        if i % 2 == 1 {
            n *= 2;
            if n >= 10 {
                n = n % 10 + 1;
            }
        }
        sum += n;
    }
    sum % 10 == 0
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|p| !p.is_empty() && p.chars().all(is_atext))
}

/// `net/mail.ParseAddress`, for the forms people write: `a@b.c` and
/// `Name <a@b.c>`.
fn is_email(v: &str) -> bool {
    let t = v.trim_matches([' ', '\t']);
    let addr = match (t.rfind('<'), t.ends_with('>')) {
        (Some(at), true) => &t[at + 1..t.len() - 1],
        (None, false) => t,
        _ => return false,
    };
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    let local_ok = is_dot_atom(local)
        || (local.len() >= 2
            && local.starts_with('"')
            && local.ends_with('"')
            && !local[1..local.len() - 1].contains('"'));
    let domain_ok = is_dot_atom(domain)
        || (domain.starts_with('[') && domain.ends_with(']') && domain.len() > 2);
    local_ok && domain_ok
}

/// `%XX` escapes well formed.
fn valid_escapes(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if i + 2 >= b.len() || !(b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// Go's `url.ParseRequestURI` accepts `v` (govalidator `IsRequestURI`).
fn is_request_uri(v: &str) -> bool {
    if v.is_empty() || v.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return false;
    }
    if v == "*" {
        return true;
    }
    // Scheme: a letter, then letters, digits, `+`, `-` or `.`, then `:`.
    let mut scheme = "";
    let mut rest = v;
    for (i, c) in v.char_indices() {
        if c.is_ascii_alphabetic() {
            continue;
        }
        if i > 0 && (c.is_ascii_digit() || c == '+' || c == '-' || c == '.') {
            continue;
        }
        if c == ':' {
            if i == 0 {
                return false;
            }
            scheme = &v[..i];
            rest = &v[i + 1..];
        }
        break;
    }
    if !(rest.ends_with('?') && rest.matches('?').count() == 1) {
        rest = rest.split_once('?').map_or(rest, |(a, _)| a);
    }
    if !rest.starts_with('/') {
        return !scheme.is_empty();
    }
    let mut path = rest;
    if !scheme.is_empty() && rest.starts_with("//") {
        let after = &rest[2..];
        let (authority, p) = match after.find('/') {
            Some(at) => (&after[..at], &after[at..]),
            None => (after, ""),
        };
        path = p;
        let host = match authority.rfind('@') {
            Some(at) => {
                let user = &authority[..at];
                if !user
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._:~!$&'()*+,;=%@".contains(c))
                    || !valid_escapes(user)
                {
                    return false;
                }
                &authority[at + 1..]
            }
            None => authority,
        };
        let port = if host.starts_with('[') {
            match host.rfind(']') {
                Some(at) => &host[at + 1..],
                None => return false,
            }
        } else {
            host.rfind(':').map_or("", |at| &host[at..])
        };
        let port_ok = port.is_empty()
            || (port.starts_with(':') && port[1..].bytes().all(|c| c.is_ascii_digit()));
        if !port_ok {
            return false;
        }
        let host_ok = host.chars().all(|c| {
            !c.is_ascii() || c.is_ascii_alphanumeric() || "-_.~!$&'()*+,;=:[]<>\"%".contains(c)
        });
        if !host_ok || !valid_escapes(host) {
            return false;
        }
    }
    valid_escapes(path)
}

// ---------------------------------------------------------------------------
// CRD-time checks: ValidateCustomResourceDefinitionOpenAPISchema.

/// `specStandardValidatorV3` state.
#[derive(Clone)]
struct Ssv {
    allow_defaults: bool,
    disallow_reason: String,
    inside_meta: bool,
}

impl Ssv {
    fn forbid_defaults(&self, reason: &str) -> Ssv {
        Ssv {
            allow_defaults: false,
            disallow_reason: reason.to_string(),
            inside_meta: self.inside_meta,
        }
    }
}

fn check_schema(n: &Node, p: &str, ssv: &Ssv, is_root: bool, out: &mut Vec<Cause>) {
    // specStandardValidatorV3.validate
    if !n.ty.is_empty() && !V3_TYPES.contains(&n.ty.as_str()) {
        let types: Vec<String> = V3_TYPES.iter().map(|t| t.to_string()).collect();
        out.push(err_not_supported(&child(p, "type"), &s(&n.ty), &types));
    }
    if n.default.is_some() && !ssv.allow_defaults {
        let mut detail = "must not be set".to_string();
        if !ssv.disallow_reason.is_empty() {
            detail.push(' ');
            detail.push_str(&ssv.disallow_reason);
        }
        out.push(err_forbidden(&child(p, "default"), &detail));
    }
    if !n.id.is_empty() {
        out.push(err_forbidden(&child(p, "id"), "id is not supported"));
    }
    if n.additional_items {
        out.push(err_forbidden(
            &child(p, "additionalItems"),
            "additionalItems is not supported",
        ));
    }
    if n.pattern_properties {
        out.push(err_forbidden(
            &child(p, "patternProperties"),
            "patternProperties is not supported",
        ));
    }
    if n.definitions {
        out.push(err_forbidden(
            &child(p, "definitions"),
            "definitions is not supported",
        ));
    }
    if n.has_dependencies {
        out.push(err_forbidden(
            &child(p, "dependencies"),
            "dependencies is not supported",
        ));
    }
    if n.has_ref {
        out.push(err_forbidden(&child(p, "$ref"), "$ref is not supported"));
    }
    if n.ty == "null" {
        out.push(err_forbidden(
            &child(p, "type"),
            "type cannot be set to null, use nullable as an alternative",
        ));
    }
    if n.items_array.is_some() {
        out.push(err_forbidden(
            &child(p, "items"),
            "items must be a schema object and not an array",
        ));
    }
    if ssv.inside_meta && n.embedded {
        out.push(err_forbidden(
            &child(p, "x-kubernetes-embedded-resource"),
            "must not be used inside of resource meta",
        ));
    }

    if n.unique_items {
        out.push(err_forbidden(
            &child(p, "uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    if let Some(a) = &n.additional {
        if !n.properties.is_empty() && !matches!(a, Additional::Bool(true)) {
            out.push(err_forbidden(
                &child(p, "additionalProperties"),
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        let sub = if ssv.inside_meta {
            ssv.forbid_defaults("inside additionalProperties applying to object metadata")
        } else {
            ssv.clone()
        };
        if let Additional::Schema(a) = a {
            check_schema(a, &child(p, "additionalProperties"), &sub, false, out);
        }
    }
    for (name, prop) in &n.properties {
        let mut sub = ssv.clone();
        if (is_root || n.embedded) && META_FIELDS.contains(&name.as_str()) {
            sub.inside_meta = true;
            if is_root {
                sub = sub.forbid_defaults(&format!("in top-level {name}"));
            }
        }
        check_schema(prop, &key(&child(p, "properties"), name), &sub, false, out);
    }
    if let Some(not) = &n.not {
        check_schema(not, &child(p, "not"), ssv, false, out);
    }
    for (i, x) in n.all_of.iter().enumerate() {
        check_schema(x, &index(&child(p, "allOf"), i), ssv, false, out);
    }
    for (i, x) in n.one_of.iter().enumerate() {
        check_schema(x, &index(&child(p, "oneOf"), i), ssv, false, out);
    }
    for (i, x) in n.any_of.iter().enumerate() {
        check_schema(x, &index(&child(p, "anyOf"), i), ssv, false, out);
    }
    if let Some(items) = &n.items {
        check_schema(items, &child(p, "items"), ssv, false, out);
    }

    if n.preserve_unknown == Some(false) {
        out.push(err_invalid(
            &child(p, "x-kubernetes-preserve-unknown-fields"),
            &Value::Bool(false),
            "must be true or undefined",
        ));
    }
    if let Some(mt) = &n.map_type {
        if n.ty != "object" {
            if n.ty.is_empty() {
                out.push(err_required(
                    &child(p, "type"),
                    "must be object if x-kubernetes-map-type is specified",
                ));
            } else {
                out.push(err_invalid(
                    &child(p, "type"),
                    &s(&n.ty),
                    "must be object if x-kubernetes-map-type is specified",
                ));
            }
        }
        if mt != "atomic" && mt != "granular" {
            out.push(err_not_supported(
                &child(p, "x-kubernetes-map-type"),
                &s(mt),
                &["atomic".into(), "granular".into()],
            ));
        }
    }
    if let Some(lt) = &n.list_type {
        if n.ty != "array" {
            if n.ty.is_empty() {
                out.push(err_required(
                    &child(p, "type"),
                    "must be array if x-kubernetes-list-type is specified",
                ));
            } else {
                out.push(err_invalid(
                    &child(p, "type"),
                    &s(&n.ty),
                    "must be array if x-kubernetes-list-type is specified",
                ));
            }
        } else if lt == "set" {
            if let Some(is) = &n.items {
                let msg = "must be atomic as item of a list with x-kubernetes-list-type=set";
                match is.ty.as_str() {
                    "array" => {
                        if let Some(ilt) = is.list_type.as_deref().filter(|t| *t != "atomic") {
                            out.push(err_invalid(
                                &child(&child(p, "items"), "x-kubernetes-list-type"),
                                &s(ilt),
                                msg,
                            ));
                        }
                    }
                    "object" if is.map_type.as_deref() != Some("atomic") => {
                        let shown = is.list_type.as_deref().map_or(Value::Null, s);
                        out.push(err_invalid(
                            &child(&child(p, "items"), "x-kubernetes-map-type"),
                            &shown,
                            msg,
                        ));
                    }
                    _ => {}
                }
            }
        }
        if lt != "atomic" && lt != "set" && lt != "map" {
            out.push(err_not_supported(
                &child(p, "x-kubernetes-list-type"),
                &s(lt),
                &["atomic".into(), "set".into(), "map".into()],
            ));
        }
    }
    if !n.list_map_keys.is_empty() {
        match n.list_type.as_deref() {
            None => out.push(err_required(
                &child(p, "x-kubernetes-list-type"),
                "must be map if x-kubernetes-list-map-keys is non-empty",
            )),
            Some("map") => {}
            Some(lt) => out.push(err_invalid(
                &child(p, "x-kubernetes-list-type"),
                &s(lt),
                "must be map if x-kubernetes-list-map-keys is non-empty",
            )),
        }
    }
    if n.list_type.as_deref() == Some("map") {
        let keys_value = Value::Array(n.list_map_keys.iter().map(|k| s(k)).collect());
        if n.list_map_keys.is_empty() {
            out.push(err_required(
                &child(p, "x-kubernetes-list-map-keys"),
                "must not be empty if x-kubernetes-list-type is map",
            ));
        }
        if n.items.is_none() && n.items_array.is_none() {
            out.push(err_required(
                &child(p, "items"),
                "must have a schema if x-kubernetes-list-type is map",
            ));
        }
        if let Some(arr) = &n.items_array {
            out.push(err_invalid(
                &child(p, "items"),
                arr,
                "must only have a single schema if x-kubernetes-list-type is map",
            ));
        }
        if let Some(is) = &n.items {
            if is.ty != "object" {
                out.push(err_invalid(
                    &child(&child(p, "items"), "type"),
                    &s(&is.ty),
                    "must be object if parent array's x-kubernetes-list-type is map",
                ));
            } else {
                let mut seen = HashSet::new();
                for k in &n.list_map_keys {
                    match is.prop(k) {
                        Some(kp) => {
                            if kp.ty == "array" || kp.ty == "object" {
                                out.push(err_invalid(
                                    &child(&key(&child(&child(p, "items"), "properties"), k), "type"),
                                    &s(&is.ty),
                                    "must be a scalar type if parent array's x-kubernetes-list-type is map",
                                ));
                            }
                        }
                        None => out.push(err_invalid(
                            &child(p, "x-kubernetes-list-map-keys"),
                            &keys_value,
                            "entries must all be names of item properties",
                        )),
                    }
                    if !seen.insert(k.as_str()) {
                        out.push(err_invalid(
                            &child(p, "x-kubernetes-list-map-keys"),
                            &keys_value,
                            "must not contain duplicate entries",
                        ));
                    }
                }
            }
        }
    }
    // validateMapListKeysMapSet
    if let (Some(is), Some(lt)) = (&n.items, n.list_type.as_deref()) {
        if lt == "set" || lt == "map" {
            if is.nullable {
                out.push(err_forbidden(
                    &child(&child(p, "items"), "nullable"),
                    &format!("cannot be nullable when x-kubernetes-list-type is {lt}"),
                ));
            }
            if lt == "map" {
                for k in &n.list_map_keys {
                    let Some(kp) = is.prop(k) else { continue };
                    let base = key(&child(&child(p, "items"), "properties"), k);
                    if !is.required.contains(k) && kp.default.is_none() {
                        out.push(err_required(
                            &child(&base, "default"),
                            "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
                        ));
                    }
                    if kp.nullable {
                        out.push(err_forbidden(
                            &child(&base, "nullable"),
                            "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                        ));
                    }
                }
            }
        }
    }
    for (i, r) in n.x_validations.iter().enumerate() {
        let base = index(&child(p, "x-kubernetes-validations"), i);
        let rule = r.rule.trim();
        let msg = r.message.trim();
        let newline = |t: &str| t.contains(['\n', '\r']);
        if rule.is_empty() {
            out.push(err_required(&child(&base, "rule"), "rule is not specified"));
        } else if !r.message.is_empty() && msg.is_empty() {
            out.push(err_invalid(
                &child(&base, "message"),
                &s(&r.message),
                "must be non-empty if specified",
            ));
        } else if newline(msg) {
            out.push(err_invalid(
                &child(&base, "message"),
                &s(&r.message),
                "must not contain line breaks",
            ));
        } else if newline(rule) && msg.is_empty() {
            out.push(err_required(
                &child(&base, "message"),
                "message must be specified if rule contains line breaks",
            ));
        }
        if !r.message_expression.is_empty() && r.message_expression.trim().is_empty() {
            out.push(err_required(
                &child(&base, "messageExpression"),
                "messageExpression must be non-empty if specified",
            ));
        }
    }
}

/// `NewStructural`'s refusal, if any (first one found).
fn unsupported(n: &Node) -> Option<String> {
    let direct = if !n.id.is_empty() {
        Some("'id' is not supported")
    } else if !n.schema_url.is_empty() {
        Some("'schema' is not supported")
    } else if n.ref_nonempty {
        Some("'$ref' is not supported")
    } else if n.pattern_properties {
        Some("'patternProperties' is not supported")
    } else if n.dependencies_nonempty {
        Some("'dependencies' is not supported")
    } else if n.additional_items {
        Some("'additionalItems' is not supported")
    } else if n.definitions {
        Some("'definitions' is not supported")
    } else {
        None
    };
    if let Some(d) = direct {
        return Some(format!("OpenAPIV3Schema {d}"));
    }
    let junctors = n
        .not
        .iter()
        .map(|b| b.as_ref())
        .chain(n.all_of.iter())
        .chain(n.any_of.iter())
        .chain(n.one_of.iter());
    for j in junctors {
        if let Some(e) = unsupported(j) {
            return Some(e);
        }
    }
    if n.preserve_unknown == Some(false) {
        return Some(
            "internal error: 'x-kubernetes-preserve-unknown-fields' must be true or undefined"
                .into(),
        );
    }
    if n.items_array.is_some() {
        return Some("OpenAPIV3Schema 'items' must be a schema, but is an array".into());
    }
    let subs = n
        .items
        .iter()
        .map(|b| b.as_ref())
        .chain(n.properties.iter().map(|(_, p)| p))
        .chain(n.additional_schema());
    for sub in subs {
        if let Some(e) = unsupported(sub) {
            return Some(e);
        }
    }
    None
}

// ---------------------------------------------------------------------------
// Structural invariants (pkg/apiserver/schema/validation.go, complete.go).

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Item,
    Field,
}

/// `{type: integer}` or `{type: string}` and nothing else.
fn is_bare_type(n: &Node, t: &str) -> bool {
    n.ty == t && n.nonzero.len() == 1 && n.nonzero[0] == "type"
}

fn is_int_or_string_any_of(any_of: &[Node]) -> bool {
    any_of.len() == 2 && is_bare_type(&any_of[0], "integer") && is_bare_type(&any_of[1], "string")
}

fn invariants(n: &Node, lvl: Level, p: &str, out: &mut Vec<Cause>) {
    if n.ty == "array" && n.items.is_none() {
        out.push(err_required(&child(p, "items"), "must be specified"));
    }
    if let Some(items) = &n.items {
        invariants(items, Level::Item, &child(p, "items"), out);
    }
    for (name, prop) in &n.properties {
        invariants(prop, Level::Field, &key(&child(p, "properties"), name), out);
    }
    if let Some(a) = &n.additional {
        if lvl == Level::Root {
            out.push(err_forbidden(
                &child(p, "additionalProperties"),
                "must not be used at the root",
            ));
        }
        if let Additional::Schema(a) = a {
            invariants(a, Level::Field, &child(p, "additionalProperties"), out);
        }
    }
    if n.int_or_string && n.preserves() {
        out.push(err_invalid(
            &child(p, "x-kubernetes-preserve-unknown-fields"),
            &Value::Bool(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    if n.int_or_string && n.embedded {
        out.push(err_invalid(
            &child(p, "x-kubernetes-embedded-resource"),
            &Value::Bool(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    let skip_any_of = is_int_or_string_any_of(&n.any_of);
    let skip_first_all_of_any_of = n
        .all_of
        .first()
        .is_some_and(|a| is_int_or_string_any_of(&a.any_of));
    value_validation(n, skip_any_of, skip_first_all_of_any_of, lvl, p, out);

    let check_metadata = lvl == Level::Root || n.embedded;
    if n.embedded && n.ty != "object" {
        if n.ty.is_empty() {
            out.push(err_required(
                &child(p, "type"),
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        } else {
            out.push(err_invalid(
                &child(p, "type"),
                &s(&n.ty),
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        }
    } else if n.ty.is_empty() && !n.int_or_string && !n.preserves() {
        let detail = match lvl {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        out.push(err_required(&child(p, "type"), detail));
    }
    if n.embedded && n.additional.is_some() {
        out.push(err_forbidden(
            &child(p, "additionalProperties"),
            "must not be used if x-kubernetes-embedded-resource is set",
        ));
    }
    if lvl == Level::Root && !n.ty.is_empty() && n.ty != "object" {
        out.push(err_invalid(
            &child(p, "type"),
            &s(&n.ty),
            "must be object at the root",
        ));
    }
    let props = child(p, "properties");
    if check_metadata {
        for f in ["kind", "apiVersion"] {
            if let Some(x) = n.prop(f) {
                if x.ty != "string" {
                    out.push(err_invalid(
                        &child(&key(&props, f), "type"),
                        &s(&x.ty),
                        "must be string",
                    ));
                }
            }
        }
    }
    if let Some(md) = n.prop("metadata") {
        let mp = key(&props, "metadata");
        if check_metadata && md.ty != "object" {
            out.push(err_invalid(
                &child(&mp, "type"),
                &s(&md.ty),
                "must be object",
            ));
        }
        if lvl == Level::Root {
            let only_names = !md.properties.is_empty()
                && md.properties.len() <= 2
                && md
                    .properties
                    .iter()
                    .all(|(k, _)| k == "name" || k == "generateName")
                && (md.properties.len() == 1 || md.properties[0].0 != md.properties[1].0);
            let other = md.nonzero.iter().any(|k| match k.as_str() {
                "type" | "default" => false,
                "properties" => !only_names,
                _ => true,
            });
            if other {
                out.push(err_forbidden(
                    &mp,
                    "must not specify anything other than name and generateName, but metadata is implicitly specified",
                ));
            }
        }
    }
    if n.embedded && !n.preserves() && n.properties.is_empty() {
        out.push(err_required(
            &props,
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        ));
    }
}

/// `validateValueValidation`: the junctors of `n` and its pattern.
fn value_validation(
    n: &Node,
    skip_any_of: bool,
    skip_first_all_of_any_of: bool,
    lvl: Level,
    p: &str,
    out: &mut Vec<Cause>,
) {
    if !skip_any_of {
        for (i, x) in n.any_of.iter().enumerate() {
            nested(x, false, false, lvl, &index(&child(p, "anyOf"), i), out);
        }
    }
    for (i, x) in n.all_of.iter().enumerate() {
        let skip = skip_first_all_of_any_of && i == 0;
        nested(x, skip, false, lvl, &index(&child(p, "allOf"), i), out);
    }
    for (i, x) in n.one_of.iter().enumerate() {
        nested(x, false, false, lvl, &index(&child(p, "oneOf"), i), out);
    }
    if let Some(not) = &n.not {
        nested(not, false, false, lvl, &child(p, "not"), out);
    }
    if !n.pattern.is_empty() {
        if let Err(e) = compile_go_regex(&n.pattern) {
            out.push(err_invalid(
                &child(p, "pattern"),
                &s(&n.pattern),
                &format!("must be a valid regular expression, but isn't: {e}"),
            ));
        }
    }
}

/// `validateNestedValueValidation`: a junctor child must carry no structure.
fn nested(
    v: &Node,
    skip_any_of: bool,
    skip_all_of_any_of: bool,
    lvl: Level,
    p: &str,
    out: &mut Vec<Cause>,
) {
    value_validation(v, skip_any_of, skip_all_of_any_of, lvl, p, out);
    if let Some(items) = &v.items {
        nested(items, false, false, lvl, &child(p, "items"), out);
    }
    for (name, x) in &v.properties {
        nested(
            x,
            false,
            false,
            Level::Field,
            &key(&child(p, "properties"), name),
            out,
        );
    }
    if !v.ty.is_empty() {
        out.push(err_forbidden(
            &child(p, "type"),
            "must be empty to be structural",
        ));
    }
    if v.additional.is_some() {
        out.push(err_forbidden(
            &child(p, "additionalProperties"),
            "must be undefined to be structural",
        ));
    }
    if v.default.is_some() {
        out.push(err_forbidden(
            &child(p, "default"),
            "must be undefined to be structural",
        ));
    }
    if !v.title.is_empty() {
        out.push(err_forbidden(
            &child(p, "title"),
            "must be empty to be structural",
        ));
    }
    if !v.description.is_empty() {
        out.push(err_forbidden(
            &child(p, "description"),
            "must be empty to be structural",
        ));
    }
    if v.nullable {
        out.push(err_forbidden(
            &child(p, "nullable"),
            "must be false to be structural",
        ));
    }
    if v.preserves() {
        out.push(err_forbidden(
            &child(p, "x-kubernetes-preserve-unknown-fields"),
            "must be false to be structural",
        ));
    }
    if v.embedded {
        out.push(err_forbidden(
            &child(p, "x-kubernetes-embedded-resource"),
            "must be false to be structural",
        ));
    }
    if v.int_or_string {
        out.push(err_forbidden(
            &child(p, "x-kubernetes-int-or-string"),
            "must be false to be structural",
        ));
    }
    if !v.list_map_keys.is_empty() {
        out.push(err_forbidden(
            &child(p, "x-kubernetes-list-map-keys"),
            "must be empty to be structural",
        ));
    }
    if v.list_type.is_some() {
        out.push(err_forbidden(
            &child(p, "x-kubernetes-list-type"),
            "must be undefined to be structural",
        ));
    }
    if v.map_type.is_some() {
        out.push(err_forbidden(
            &child(p, "x-kubernetes-map-type"),
            "must be undefined to be structural",
        ));
    }
    if !v.x_validations.is_empty() {
        out.push(err_forbidden(
            &child(p, "x-kubernetes-validations"),
            "must be empty to be structural",
        ));
    }
    if v.prop("metadata").is_some() {
        out.push(err_forbidden(
            &key(&child(p, "properties"), "metadata"),
            "must not be specified in a nested context",
        ));
    }
}

/// `validateStructuralCompleteness`: what the root's junctors name must exist
/// structurally.
fn completeness(root: &Node, p: &str, out: &mut Vec<Cause>) {
    junctor_completeness(root, Some(root), p, p, out);
}

fn junctor_completeness(v: &Node, s: Option<&Node>, sp: &str, vp: &str, out: &mut Vec<Cause>) {
    if let Some(not) = &v.not {
        nested_completeness(not, s, sp, &child(vp, "not"), out);
    }
    for (i, x) in v.all_of.iter().enumerate() {
        nested_completeness(x, s, sp, &index(&child(vp, "allOf"), i), out);
    }
    for (i, x) in v.any_of.iter().enumerate() {
        nested_completeness(x, s, sp, &index(&child(vp, "anyOf"), i), out);
    }
    for (i, x) in v.one_of.iter().enumerate() {
        nested_completeness(x, s, sp, &index(&child(vp, "oneOf"), i), out);
    }
}

fn nested_completeness(v: &Node, s: Option<&Node>, sp: &str, vp: &str, out: &mut Vec<Cause>) {
    let Some(s) = s else {
        out.push(err_required(sp, &format!("because it is defined in {vp}")));
        return;
    };
    junctor_completeness(v, Some(s), sp, vp, out);
    if let Some(items) = &v.items {
        nested_completeness(
            items,
            s.items.as_deref(),
            &child(sp, "items"),
            &child(vp, "items"),
            out,
        );
    }
    for (name, x) in &v.properties {
        let vpk = key(&child(vp, "properties"), name);
        let spk = key(&child(sp, "properties"), name);
        match s.prop(name) {
            Some(sx) => nested_completeness(x, Some(sx), &spk, &vpk, out),
            None => out.push(err_required(
                &spk,
                &format!("because it is defined in {vpk}"),
            )),
        }
    }
}

// ---------------------------------------------------------------------------
// The kube-openapi schema validator (k8s.io/kube-openapi/pkg/validation).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Code {
    InvalidType,
    Required,
    TooLong,
    TooShort,
    Pattern,
    Enum,
    MultipleOf,
    Max,
    Min,
    Unique,
    MaxItems,
    MinItems,
    TooFewProperties,
    TooManyProperties,
    Unallowed,
    MultipleOfMustBePositive,
}

/// One validator error: an `*errors.Validation` (with a code) or a plain
/// error (composite messages, range checks).
#[derive(Clone, Debug)]
struct OErr {
    code: Option<Code>,
    name: String,
    value: Option<Value>,
    valid: Option<i64>,
    values: Vec<Value>,
    msg: String,
}

impl OErr {
    fn plain(msg: String) -> OErr {
        OErr {
            code: None,
            name: String::new(),
            value: None,
            valid: None,
            values: Vec::new(),
            msg,
        }
    }

    fn new(code: Code, name: &str, value: Option<Value>, msg: String) -> OErr {
        OErr {
            code: Some(code),
            name: name.to_string(),
            value,
            valid: None,
            values: Vec::new(),
            msg,
        }
    }

    fn invalid_type(name: &str, type_name: &str, value: &str) -> OErr {
        OErr::new(
            Code::InvalidType,
            name,
            Some(s(value)),
            format!(
                "{name} in body must be of type {type_name}: {}",
                go_quote(value)
            ),
        )
    }
}

/// `validate.Result`: errors (deduplicated by message) and the match count
/// that `anyOf`/`oneOf` use to pick the closest failing branch.
#[derive(Default)]
struct Res {
    errs: Vec<OErr>,
    seen: HashSet<String>,
    count: usize,
}

impl Res {
    fn err(e: OErr) -> Res {
        let mut r = Res::default();
        r.add(e);
        r
    }

    fn add(&mut self, e: OErr) {
        if self.seen.insert(e.msg.clone()) {
            self.errs.push(e);
        }
    }

    fn merge(&mut self, other: Res) {
        for e in other.errs {
            self.add(e);
        }
        self.count += other.count;
    }

    fn valid(&self) -> bool {
        self.errs.is_empty()
    }
}

/// `swag.IsFloat64AJSONInteger`.
fn is_json_integer(f: f64) -> bool {
    const MAX: f64 = 9_007_199_254_740_991.0;
    if !f.is_finite() || !(-MAX..=MAX).contains(&f) {
        return false;
    }
    let g = f.trunc();
    if f == g {
        return true;
    }
    if f < 0.0 || g == 0.0 {
        return false;
    }
    (f - g).abs() / (f.abs() + g.abs()) < 1e-9
}

/// Go's `reflect` conversion-then-`DeepEqual` enum comparison.
fn enum_matches(data: &Value, e: &Value) -> bool {
    match (data, e) {
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::Number(d), Value::Number(x)) => match (Num::of(d), Num::of(x)) {
            (Num::I(a), Num::I(b)) => a == b,
            (Num::I(a), Num::F(b)) => (a as f64) == b,
            (Num::F(a), Num::I(b)) => (a as i64) == b,
            (Num::F(a), Num::F(b)) => a == b,
        },
        // An int64 converts to the string of its rune.
        (Value::Number(d), Value::String(x)) => match Num::of(d) {
            Num::I(a) => {
                let c = u32::try_from(a)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{fffd}');
                x.chars().eq(std::iter::once(c))
            }
            Num::F(_) => false,
        },
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => data == e,
        _ => false,
    }
}

fn go_values_list(values: &[Value]) -> String {
    let parts: Vec<String> = values
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => go_json(other),
        })
        .collect();
    format!("[{}]", parts.join(" "))
}

/// `IsValueValidAgainstRange`.
fn range_error(val: Num, type_name: &str, format: &str, prefix: &str, path: &str) -> Option<OErr> {
    let rep = match val {
        Num::I(i) => i.to_string(),
        Num::F(f) => format!("{f}"),
    };
    let ok = match type_name {
        "integer" => match format {
            "int32" => rep.parse::<i32>().is_ok(),
            _ => rep.parse::<i64>().is_ok(),
        },
        _ => match format {
            "float" => rep.parse::<f64>().is_ok_and(|f| (f as f32).is_finite()),
            _ => true,
        },
    };
    if ok {
        return None;
    }
    Some(OErr::plain(if format.is_empty() {
        format!("{prefix} value must be of type {type_name} (default format) in {path}")
    } else {
        format!("{prefix} value must be of type {type_name} with format {format} in {path}")
    }))
}

fn multiple_of_err(path: &str, val: Num, factor: f64, native: bool) -> Option<OErr> {
    match (val, native) {
        (Num::I(d), true) => {
            let f = factor as i64;
            if f <= 0 {
                return Some(OErr::new(
                    Code::MultipleOfMustBePositive,
                    path,
                    Some(Value::from(f)),
                    format!("factor MultipleOf declared for {path} must be positive: {f}"),
                ));
            }
            if d % f != 0 {
                return Some(OErr::new(
                    Code::MultipleOf,
                    path,
                    Some(Value::from(d)),
                    format!("{path} in body should be a multiple of {f}"),
                ));
            }
            None
        }
        _ => {
            let d = val.as_f64();
            if factor <= 0.0 {
                return Some(OErr::new(
                    Code::MultipleOfMustBePositive,
                    path,
                    Some(float_value(factor)),
                    format!(
                        "factor MultipleOf declared for {path} must be positive: {}",
                        go_float(factor)
                    ),
                ));
            }
            let mult = if factor < 1.0 {
                1.0 / factor * d
            } else {
                d / factor
            };
            if !is_json_integer(mult) {
                return Some(OErr::new(
                    Code::MultipleOf,
                    path,
                    Some(num_value(val)),
                    format!(
                        "{path} in body should be a multiple of {}",
                        go_float(factor)
                    ),
                ));
            }
            None
        }
    }
}

fn float_value(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

fn num_value(n: Num) -> Value {
    match n {
        Num::I(i) => Value::from(i),
        Num::F(f) => float_value(f),
    }
}

/// Maximum (`upper`) or minimum bound check; `native` compares an int64
/// value against the truncated bound, as `MaximumNativeType` does.
fn bound_err(
    path: &str,
    val: Num,
    bound: f64,
    exclusive: bool,
    upper: bool,
    native: bool,
) -> Option<OErr> {
    let (fails, shown) = match (val, native) {
        (Num::I(d), true) => {
            let b = bound as i64;
            let fails = if upper {
                if exclusive {
                    d >= b
                } else {
                    d > b
                }
            } else if exclusive {
                d <= b
            } else {
                d < b
            };
            (fails, b.to_string())
        }
        _ => {
            let d = val.as_f64();
            let fails = if upper {
                if exclusive {
                    d >= bound
                } else {
                    d > bound
                }
            } else if exclusive {
                d <= bound
            } else {
                d < bound
            };
            (fails, go_float(bound))
        }
    };
    if !fails {
        return None;
    }
    let (code, rel) = match (upper, exclusive) {
        (true, false) => (Code::Max, "less than or equal to"),
        (true, true) => (Code::Max, "less than"),
        (false, false) => (Code::Min, "greater than or equal to"),
        (false, true) => (Code::Min, "greater than"),
    };
    Some(OErr::new(
        code,
        path,
        Some(num_value(val)),
        format!("{path} in body should be {rel} {shown}"),
    ))
}

/// `SchemaValidator.Validate`.
fn sv(n: &Node, data: &Value, path: &str) -> Res {
    let mut r = Res::default();
    if data.is_null() {
        r.merge(type_validator(n, data, path));
        r.merge(common_validator(n, data, path));
        return r;
    }
    if !n.types.is_empty() || !n.vformat.is_empty() {
        r.merge(type_validator(n, data, path));
        r.count += 1;
    }
    r.merge(props_validator(n, data, path));
    r.count += 1;
    if let Value::String(st) = data {
        r.merge(string_validator(n, st, path));
        r.count += 1;
        if !n.string_format.is_empty() {
            if !check_format(&n.string_format, st) {
                r.add(OErr::invalid_type(path, &n.vformat, st));
            }
            r.count += 1;
        }
    }
    if let Value::Number(num) = data {
        r.merge(number_validator(n, Num::of(num), path));
        r.count += 1;
    }
    if let Value::Array(a) = data {
        r.merge(slice_validator(n, a, path));
        r.count += 1;
    }
    r.merge(common_validator(n, data, path));
    r.count += 1;
    if let Value::Object(m) = data {
        r.merge(object_validator(n, m, path));
        r.count += 1;
    }
    r.count += 1;
    r
}

fn type_validator(n: &Node, data: &Value, path: &str) -> Res {
    let ok = Res {
        count: 1,
        ..Res::default()
    };
    let joined = &n.types_joined;
    if data.is_null() {
        if !n.types.is_empty() && !n.has_type("null") && !n.nullable {
            return Res::err(OErr::invalid_type(path, joined, "null"));
        }
        return ok;
    }
    let (sch_type, format, float) = match data {
        Value::Bool(_) => ("boolean", "", None),
        Value::String(_) => ("string", "", None),
        Value::Array(_) => ("array", "", None),
        Value::Object(_) => ("object", "", None),
        Value::Number(num) => match Num::of(num) {
            Num::I(_) => ("integer", "int64", None),
            Num::F(f) => ("number", "float64", Some(f)),
        },
        Value::Null => ("", "", None),
    };
    let is_float_int = float.is_some_and(is_json_integer) && n.has_type("integer");
    let is_int_float = sch_type == "integer" && n.has_type("number");
    let str_or_slice = matches!(data, Value::String(_) | Value::Array(_));
    let format_matches =
        n.has_type(sch_type) || format == n.vformat || is_float_int || is_int_float;
    if !(str_or_slice || n.vformat.is_empty() || format_matches) {
        return Res::err(OErr::invalid_type(path, &n.vformat, format));
    }
    let numeric = n.has_type("number") || n.has_type("integer");
    if str_or_slice && !numeric && !n.vformat.is_empty() {
        return ok;
    }
    if !(n.has_type(sch_type) || is_float_int || is_int_float) {
        return Res::err(OErr::invalid_type(path, joined, sch_type));
    }
    ok
}

fn props_validator(n: &Node, data: &Value, path: &str) -> Res {
    let mut main = Res::default();
    let q = go_quote(path);
    if !n.any_of.is_empty() {
        let mut best: Option<Res> = None;
        let mut first_success: Option<Res> = None;
        for x in &n.any_of {
            let r = sv(x, data, path);
            if r.valid() {
                best = None;
                first_success = Some(r);
                break;
            }
            if best.as_ref().is_none_or(|b| r.count > b.count) {
                best = Some(r);
            }
        }
        if first_success.is_none() {
            main.add(OErr::plain(format!(
                "{q} must validate at least one schema (anyOf)"
            )));
        }
        if let Some(b) = best {
            main.merge(b);
        } else if let Some(f) = first_success {
            main.merge(f);
        }
    }
    if !n.one_of.is_empty() {
        let mut best: Option<Res> = None;
        let mut first_success: Option<Res> = None;
        let mut validated = 0;
        for x in &n.one_of {
            let r = sv(x, data, path);
            if r.valid() {
                validated += 1;
                best = None;
                if first_success.is_none() {
                    first_success = Some(r);
                }
                continue;
            }
            if validated == 0 && best.as_ref().is_none_or(|b| r.count > b.count) {
                best = Some(r);
            }
        }
        if validated != 1 {
            let extra = if validated == 0 {
                "Found none valid".to_string()
            } else {
                format!("Found {validated} valid alternatives")
            };
            main.add(OErr::plain(format!(
                "{q} must validate one and only one schema (oneOf). {extra}"
            )));
            if let Some(b) = best {
                main.merge(b);
            }
        } else if let Some(f) = first_success {
            main.merge(f);
        }
    }
    if !n.all_of.is_empty() {
        let mut validated = 0;
        for x in &n.all_of {
            let r = sv(x, data, path);
            if r.valid() {
                validated += 1;
            }
            main.merge(r);
        }
        if validated != n.all_of.len() {
            let extra = if validated == 0 {
                ". None validated"
            } else {
                ""
            };
            main.add(OErr::plain(format!(
                "{q} must validate all the schemas (allOf){extra}"
            )));
        }
    }
    if let Some(not) = &n.not {
        if sv(not, data, path).valid() {
            main.add(OErr::plain(format!(
                "{q} must not validate the schema (not)"
            )));
        }
    }
    main.count += 1;
    main
}

fn string_validator(n: &Node, st: &str, path: &str) -> Res {
    let len = st.chars().count() as i64;
    if let Some(max) = n.max_length {
        if len > max {
            let mut e = OErr::new(
                Code::TooLong,
                path,
                Some(s(st)),
                format!("{path} in body should be at most {max} chars long"),
            );
            e.valid = Some(max);
            return Res::err(e);
        }
    }
    if let Some(min) = n.min_length {
        if len < min {
            let mut e = OErr::new(
                Code::TooShort,
                path,
                Some(s(st)),
                format!("{path} in body should be at least {min} chars long"),
            );
            e.valid = Some(min);
            return Res::err(e);
        }
    }
    if !n.pattern.is_empty() {
        match n.regex() {
            Some(re) => {
                if !re.is_match(st) {
                    return Res::err(OErr::new(
                        Code::Pattern,
                        path,
                        Some(s(st)),
                        format!("{path} in body should match '{}'", n.pattern),
                    ));
                }
            }
            None => {
                let why = compile_go_regex(&n.pattern).err().unwrap_or_default();
                return Res::err(OErr::new(
                    Code::Pattern,
                    path,
                    Some(s(st)),
                    format!(
                        "{path} in body should match '{}, but pattern is invalid: {why}'",
                        n.pattern
                    ),
                ));
            }
        }
    }
    Res::default()
}

fn number_validator(n: &Node, val: Num, path: &str) -> Res {
    let (type_name, format) = if n.types.len() == 1 {
        match n.types[0].as_str() {
            "integer" => (
                "integer",
                if n.vformat == "int32" || n.vformat == "int64" {
                    n.vformat.as_str()
                } else {
                    ""
                },
            ),
            "number" => (
                "number",
                if n.vformat == "float" || n.vformat == "double" {
                    n.vformat.as_str()
                } else {
                    ""
                },
            ),
            _ => ("", ""),
        }
    } else {
        ("", "")
    };
    let mut res = Res::default();
    if let Some(e) = range_error(val, type_name, format, "Checked", path) {
        res.add(e);
    }
    let mut multiple = Res::default();
    if let Some(f) = n.multiple_of {
        let range = range_error(Num::F(f), type_name, format, "MultipleOf", path);
        let native = range.is_none();
        if let Some(e) = range {
            multiple.add(e);
        }
        if let Some(e) = multiple_of_err(path, val, f, native) {
            multiple.add(e);
        }
    }
    let mut maximum = Res::default();
    if let Some(m) = n.maximum {
        let range = range_error(Num::F(m), type_name, format, "Maximum boundary", path);
        let native = range.is_none();
        if let Some(e) = range {
            maximum.add(e);
        }
        if let Some(e) = bound_err(path, val, m, n.exclusive_maximum, true, native) {
            maximum.add(e);
        }
    }
    let mut minimum = Res::default();
    if let Some(m) = n.minimum {
        let range = range_error(Num::F(m), type_name, format, "Minimum boundary", path);
        let native = range.is_none();
        if let Some(e) = range {
            minimum.add(e);
        }
        if let Some(e) = bound_err(path, val, m, n.exclusive_minimum, false, native) {
            minimum.add(e);
        }
    }
    res.merge(multiple);
    res.merge(minimum);
    res.merge(maximum);
    res.count += 1;
    res
}

fn slice_validator(n: &Node, a: &[Value], path: &str) -> Res {
    let mut r = Res::default();
    if let Some(items) = &n.items {
        for (i, v) in a.iter().enumerate() {
            r.merge(sv(items, v, &format!("{path}[{i}]")));
        }
    }
    let size = a.len() as i64;
    if let Some(min) = n.min_items {
        if size < min {
            let mut e = OErr::new(
                Code::MinItems,
                path,
                Some(Value::from(size)),
                format!("{path} in body should have at least {min} items"),
            );
            e.valid = Some(min);
            r.add(e);
        }
    }
    if let Some(max) = n.max_items {
        if size > max {
            let mut e = OErr::new(
                Code::MaxItems,
                path,
                Some(Value::from(size)),
                format!("{path} in body should have at most {max} items"),
            );
            e.valid = Some(max);
            r.add(e);
        }
    }
    // `reflect.DeepEqual` tells int64 from float64 and ignores key order, as
    // `Value`'s equality does. Quadratic, as upstream (and CRDs may not set
    // `uniqueItems`).
    if n.unique_items && a.iter().enumerate().any(|(i, v)| a[..i].contains(v)) {
        r.add(OErr::new(
            Code::Unique,
            path,
            None,
            format!("{path} in body shouldn't contain duplicates"),
        ));
    }
    r.count += 1;
    r
}

fn common_validator(n: &Node, data: &Value, path: &str) -> Res {
    if n.enum_values.is_empty() || n.enum_values.iter().any(|e| enum_matches(data, e)) {
        return Res::default();
    }
    let mut e = OErr::new(
        Code::Enum,
        path,
        Some(data.clone()),
        format!(
            "{path} in body should be one of {}",
            go_values_list(&n.enum_values)
        ),
    );
    e.values = n.enum_values.clone();
    Res::err(e)
}

fn object_validator(n: &Node, m: &Map<String, Value>, path: &str) -> Res {
    let mut r = Res::default();
    let size = m.len() as i64;
    if let Some(min) = n.min_properties {
        if size < min {
            let mut e = OErr::new(
                Code::TooFewProperties,
                path,
                Some(Value::from(size)),
                format!("{path} in body should have at least {min} properties"),
            );
            e.valid = Some(min);
            r.add(e);
        }
    }
    if let Some(max) = n.max_properties {
        if size > max {
            let mut e = OErr::new(
                Code::TooManyProperties,
                path,
                Some(Value::from(size)),
                format!("{path} in body should have at most {max} properties"),
            );
            e.valid = Some(max);
            r.add(e);
        }
    }
    match &n.additional {
        Some(Additional::Bool(false)) => {
            for k in m.keys() {
                if n.prop(k).is_none() {
                    r.add(OErr::new(
                        Code::Unallowed,
                        path,
                        Some(s(k)),
                        format!("{path}.{k} in body is a forbidden property"),
                    ));
                }
            }
        }
        Some(Additional::Schema(a)) => {
            for (k, v) in m {
                if n.prop(k).is_none() {
                    r.merge(sv(a, v, &format!("{path}.{k}")));
                }
            }
        }
        _ => {}
    }
    for (name, prop) in &n.properties {
        if let Some(v) = m.get(name) {
            r.merge(sv(prop, v, &child(path, name)));
        }
    }
    for k in &n.required {
        if !m.contains_key(k) {
            r.add(OErr::new(
                Code::Required,
                &format!("{path}.{k}"),
                None,
                format!("{path}.{k} in body is required"),
            ));
        }
    }
    r
}

/// `kubeOpenAPIResultToFieldErrors`; `base` is the path the errors are
/// relative to (empty: the nil path).
fn to_causes(res: Res, base: &str, out: &mut Vec<Cause>) {
    for e in res.errs {
        let Some(code) = e.code else {
            out.push(err_invalid(&shown(base), &s(""), &e.msg));
            continue;
        };
        let err_path = if e.name.is_empty() || e.name == "." {
            base.to_string()
        } else {
            child(base, e.name.strip_prefix('.').unwrap_or(&e.name))
        };
        let field = shown(&err_path);
        let value = e.value.clone().unwrap_or_else(|| s(""));
        match code {
            Code::Required => out.push(err_required(&field, "")),
            Code::Enum => {
                let supported: Vec<String> = e
                    .values
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => go_json(other),
                    })
                    .collect();
                out.push(err_not_supported(&field, &value, &supported));
            }
            Code::TooLong => out.push(err_too_long(&field, e.valid.unwrap_or(-1))),
            Code::MaxItems | Code::TooManyProperties => out.push(err_too_many(
                &field,
                e.value.as_ref().and_then(Value::as_i64).unwrap_or(-1),
                e.valid.unwrap_or(-1),
            )),
            Code::InvalidType => out.push(err_type_invalid(&field, &value, &e.msg)),
            _ => out.push(err_invalid(&field, &value, &e.msg)),
        }
    }
}

// ---------------------------------------------------------------------------
// Embedded resources: TypeMeta/ObjectMeta (pkg/apiserver/schema/objectmeta).

const OBJECT_META_FIELDS: [&str; 15] = [
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];
const OWNER_REFERENCE_FIELDS: [&str; 6] = [
    "apiVersion",
    "kind",
    "name",
    "uid",
    "controller",
    "blockOwnerDeletion",
];
const MANAGED_FIELDS_ENTRY_FIELDS: [&str; 7] = [
    "manager",
    "operation",
    "apiVersion",
    "time",
    "fieldsType",
    "fieldsV1",
    "subresource",
];

#[derive(Clone, Copy)]
enum MetaType {
    Str,
    Int,
    Bool,
    Time,
    StrMap,
    StrList,
    Any,
    OwnerRefs,
    ManagedFields,
}

fn unmarshal_err(v: &Value, field: &str, go_type: &str) -> String {
    let what = match v {
        Value::Number(n) => format!("number {n}"),
        other => json_kind(other).to_string(),
    };
    format!("json: cannot unmarshal {what} into Go struct field {field} of type {go_type}")
}

fn check_meta_value(v: &Value, t: MetaType, field: &str) -> Result<(), String> {
    if v.is_null() {
        return Ok(());
    }
    match t {
        MetaType::Any => Ok(()),
        MetaType::Str if v.is_string() => Ok(()),
        MetaType::Str => Err(unmarshal_err(v, field, "string")),
        MetaType::Int if v.is_i64() => Ok(()),
        MetaType::Int => Err(unmarshal_err(v, field, "int64")),
        MetaType::Bool if v.is_boolean() => Ok(()),
        MetaType::Bool => Err(unmarshal_err(v, field, "bool")),
        MetaType::Time => match v.as_str() {
            Some(t) if crate::meta::parse_time(t).is_some() => Ok(()),
            Some(t) => Err(format!(
                "parsing time {} as \"2006-01-02T15:04:05Z07:00\": cannot parse {} as \"2006\"",
                go_quote(t),
                go_quote(t)
            )),
            None => Err(format!(
                "json: cannot unmarshal {} into Go value of type string",
                json_kind(v)
            )),
        },
        MetaType::StrMap => match v {
            Value::Object(m) => m
                .values()
                .try_for_each(|x| check_meta_value(x, MetaType::Str, field)),
            _ => Err(unmarshal_err(v, field, "map[string]string")),
        },
        MetaType::StrList => match v {
            Value::Array(a) => a
                .iter()
                .try_for_each(|x| check_meta_value(x, MetaType::Str, field)),
            _ => Err(unmarshal_err(v, field, "[]string")),
        },
        MetaType::OwnerRefs | MetaType::ManagedFields => {
            let (go, fields): (&str, &[(&str, MetaType)]) = match t {
                MetaType::OwnerRefs => (
                    "OwnerReference",
                    &[
                        ("apiVersion", MetaType::Str),
                        ("kind", MetaType::Str),
                        ("name", MetaType::Str),
                        ("uid", MetaType::Str),
                        ("controller", MetaType::Bool),
                        ("blockOwnerDeletion", MetaType::Bool),
                    ],
                ),
                _ => (
                    "ManagedFieldsEntry",
                    &[
                        ("manager", MetaType::Str),
                        ("operation", MetaType::Str),
                        ("apiVersion", MetaType::Str),
                        ("time", MetaType::Time),
                        ("fieldsType", MetaType::Str),
                        ("fieldsV1", MetaType::Any),
                        ("subresource", MetaType::Str),
                    ],
                ),
            };
            let Value::Array(a) = v else {
                return Err(unmarshal_err(v, field, &format!("[]v1.{go}")));
            };
            for item in a {
                if item.is_null() {
                    continue;
                }
                let Value::Object(m) = item else {
                    return Err(format!(
                        "json: cannot unmarshal {} into Go struct field {field} of type v1.{go}",
                        json_kind(item)
                    ));
                };
                for (k, x) in m {
                    if let Some((_, ft)) = fields.iter().find(|(f, _)| *f == k.as_str()) {
                        check_meta_value(x, *ft, &format!("{field}.{k}"))?;
                    }
                }
            }
            Ok(())
        }
    }
}

/// Decodes `metadata` as `json.Unmarshal` into a `metav1.ObjectMeta` would;
/// the error is Go's.
fn check_object_meta(v: &Value) -> Result<(), String> {
    let Value::Object(m) = v else {
        return Err(format!(
            "json: cannot unmarshal {} into Go value of type v1.ObjectMeta",
            json_kind(v)
        ));
    };
    for (k, x) in m {
        let t = match k.as_str() {
            "name" | "generateName" | "namespace" | "selfLink" | "uid" | "resourceVersion" => {
                MetaType::Str
            }
            "generation" | "deletionGracePeriodSeconds" => MetaType::Int,
            "creationTimestamp" | "deletionTimestamp" => MetaType::Time,
            "labels" | "annotations" => MetaType::StrMap,
            "finalizers" => MetaType::StrList,
            "ownerReferences" => MetaType::OwnerRefs,
            "managedFields" => MetaType::ManagedFields,
            _ => continue,
        };
        check_meta_value(x, t, &format!("ObjectMeta.{k}"))?;
    }
    Ok(())
}

/// Drops what a round trip through `metav1.ObjectMeta` drops: unknown fields
/// (recorded under `prefix`) and empty `omitempty` ones.
fn coerce_object_meta(md: &mut Value, prefix: &str, out: &mut Vec<String>) {
    if check_object_meta(md).is_err() {
        return;
    }
    let Value::Object(m) = md else { return };
    m.retain(|k, v| {
        if !OBJECT_META_FIELDS.contains(&k.as_str()) {
            out.push(format!("{prefix}.{k}"));
            return false;
        }
        match k.as_str() {
            "deletionGracePeriodSeconds" => !v.is_null(),
            "generation" => v.as_i64().is_some_and(|g| g != 0),
            _ => nonzero(v),
        }
    });
    for k in ["labels", "annotations"] {
        if let Some(Value::Object(map)) = m.get_mut(k) {
            for v in map.values_mut() {
                if v.is_null() {
                    *v = s("");
                }
            }
        }
    }
    if let Some(Value::Array(list)) = m.get_mut("finalizers") {
        for v in list.iter_mut() {
            if v.is_null() {
                *v = s("");
            }
        }
    }
    if let Some(Value::Array(refs)) = m.get_mut("ownerReferences") {
        for (i, r) in refs.iter_mut().enumerate() {
            let Value::Object(r) = r else { continue };
            r.retain(|k, v| {
                if !OWNER_REFERENCE_FIELDS.contains(&k.as_str()) {
                    out.push(format!("{prefix}.ownerReferences[{i}].{k}"));
                    return false;
                }
                !v.is_null() || !matches!(k.as_str(), "controller" | "blockOwnerDeletion")
            });
            for f in ["apiVersion", "kind", "name", "uid"] {
                match r.get_mut(f) {
                    Some(v) if v.is_null() => *v = s(""),
                    Some(_) => {}
                    None => {
                        r.insert(f.to_string(), s(""));
                    }
                }
            }
        }
    }
    if let Some(Value::Array(entries)) = m.get_mut("managedFields") {
        for (i, e) in entries.iter_mut().enumerate() {
            let Value::Object(e) = e else { continue };
            e.retain(|k, v| {
                if !MANAGED_FIELDS_ENTRY_FIELDS.contains(&k.as_str()) {
                    out.push(format!("{prefix}.managedFields[{i}].{k}"));
                    return false;
                }
                k == "fieldsV1" && !v.is_null() || nonzero(v)
            });
        }
    }
}

/// `objectmeta.Coerce` over the object: the `metadata` of every embedded
/// resource. Returns the dropped unknown fields.
fn coerce(x: &mut Value, n: &Node, pth: &str, out: &mut Vec<String>) {
    match x {
        Value::Object(m) => {
            if n.embedded {
                if let Some(md) = m.get_mut("metadata") {
                    coerce_object_meta(md, &child(pth, "metadata"), out);
                }
            }
            for (k, v) in m.iter_mut() {
                if let Some(p) = n.prop(k) {
                    coerce(v, p, &child(pth, k), out);
                } else if let Some(a) = n.additional_schema() {
                    coerce(v, a, &key(pth, k), out);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = &n.items {
                for (i, v) in a.iter_mut().enumerate() {
                    coerce(v, items, &index(pth, i), out);
                }
            }
        }
        _ => {}
    }
}

/// The first type error `objectmeta.Coerce` (without dropping) reports.
fn coerce_error(x: &Value, n: &Node, root: bool, pth: &str) -> Option<Cause> {
    match x {
        Value::Object(m) => {
            for (k, v) in m {
                if n.embedded || root {
                    match k.as_str() {
                        "apiVersion" | "kind" if !v.is_string() => {
                            return Some(err_invalid(&child(pth, k), v, "must be a string"));
                        }
                        "metadata" => {
                            if let Err(e) = check_object_meta(v) {
                                return Some(err_invalid(&child(pth, "metadata"), v, &e));
                            }
                        }
                        _ => {}
                    }
                }
                let found = if let Some(p) = n.prop(k) {
                    coerce_error(v, p, false, &child(pth, k))
                } else if let Some(a) = n.additional_schema() {
                    coerce_error(v, a, false, &key(pth, k))
                } else {
                    None
                };
                if found.is_some() {
                    return found;
                }
            }
            None
        }
        Value::Array(a) => {
            let items = n.items.as_deref()?;
            a.iter()
                .enumerate()
                .find_map(|(i, v)| coerce_error(v, items, false, &index(pth, i)))
        }
        _ => None,
    }
}

/// `schema.ParseGroupVersion`.
fn parse_group_version(gv: &str) -> Result<(), String> {
    if gv.is_empty() || gv == "/" {
        return Ok(());
    }
    if gv.matches('/').count() > 1 {
        return Err(format!("unexpected GroupVersion string: {gv}"));
    }
    Ok(())
}

/// `IsDNS1035Label`.
fn is_dns1035_label(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push(names::max_len_error(63));
    }
    let b = v.as_bytes();
    let ok = match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_lowercase()
                && (l.is_ascii_lowercase() || l.is_ascii_digit())
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        }
        _ => false,
    };
    if !ok {
        errs.push(names::regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
            "[a-z]([-a-z0-9]*[a-z0-9])?",
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// `ValidateObjectMeta` as upstream applies it to embedded metadata (a name
/// is not required).
fn validate_embedded_object_meta(m: &Map<String, Value>, mp: &str, out: &mut Vec<Cause>) {
    let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("");
    let generate_name = text("generateName");
    if !generate_name.is_empty() {
        for c in ['/', '%'] {
            if generate_name.contains(c) {
                out.push(err_invalid(
                    &child(mp, "generateName"),
                    &s(generate_name),
                    &format!("may not contain '{c}'"),
                ));
            }
        }
    }
    let name = text("name");
    if !name.is_empty() {
        for msg in names::is_path_segment_name(name) {
            out.push(err_invalid(&child(mp, "name"), &s(name), &msg));
        }
    }
    let namespace = text("namespace");
    if !namespace.is_empty() {
        for msg in names::is_dns1123_label(namespace) {
            out.push(err_invalid(&child(mp, "namespace"), &s(namespace), &msg));
        }
    }
    if let Some(g) = m.get("generation").and_then(Value::as_i64) {
        if g < 0 {
            out.push(err_invalid(
                &child(mp, "generation"),
                &Value::from(g),
                "must be greater than or equal to 0",
            ));
        }
    }
    if let Some(Value::Object(labels)) = m.get("labels") {
        out.extend(names::validate_labels(labels, &child(mp, "labels")));
    }
    if let Some(Value::Object(ann)) = m.get("annotations") {
        let field = child(mp, "annotations");
        let mut total: i64 = 0;
        for (k, v) in ann {
            for msg in names::is_qualified_name(&k.to_lowercase()) {
                out.push(err_invalid(&field, &s(k), &msg));
            }
            total += (k.len() + v.as_str().map_or(0, str::len)) as i64;
        }
        if total > TOTAL_ANNOTATION_SIZE_LIMIT {
            out.push(err_too_long(&field, TOTAL_ANNOTATION_SIZE_LIMIT));
        }
    }
    if let Some(Value::Array(refs)) = m.get("ownerReferences") {
        let base = child(mp, "ownerReferences");
        for (i, r) in refs.iter().enumerate() {
            let rp = index(&base, i);
            let get = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
            let api_version = get("apiVersion");
            if api_version.is_empty() {
                out.push(err_required(&child(&rp, "apiVersion"), "must not be empty"));
            } else if parse_group_version(api_version).is_err()
                || api_version.rsplit('/').next().unwrap_or("").is_empty()
            {
                out.push(err_invalid(
                    &child(&rp, "apiVersion"),
                    &s(api_version),
                    "must be <group>/<version> or <version>",
                ));
            }
            for f in ["kind", "name", "uid"] {
                if get(f).is_empty() {
                    out.push(err_required(&child(&rp, f), "must not be empty"));
                }
            }
        }
    }
    if let Some(Value::Array(fins)) = m.get("finalizers") {
        let field = child(mp, "finalizers");
        for f in fins {
            let f = f.as_str().unwrap_or("");
            for msg in names::is_qualified_name(f) {
                out.push(err_invalid(&field, &s(f), &msg));
            }
        }
        let has = |x: &str| fins.iter().any(|f| f.as_str() == Some(x));
        if has("orphan") && has("foregroundDeletion") {
            out.push(err_invalid(
                &field,
                &Value::Array(fins.clone()),
                "finalizer orphan and foregroundDeletion cannot be both set",
            ));
        }
    }
}

/// `validateEmbeddedResource`.
fn validate_embedded_resource(m: &Map<String, Value>, pth: &str, out: &mut Vec<Cause>) {
    if !m.contains_key("apiVersion") {
        out.push(err_required(&child(pth, "apiVersion"), ""));
    }
    if !m.contains_key("kind") {
        out.push(err_required(&child(pth, "kind"), ""));
    }
    for (k, v) in m {
        match k.as_str() {
            "apiVersion" => match v.as_str() {
                None => out.push(err_invalid(&child(pth, k), v, "must be a string")),
                Some("") => out.push(err_invalid(&child(pth, k), v, "must not be empty")),
                Some(gv) => {
                    if let Err(e) = parse_group_version(gv) {
                        out.push(err_invalid(&child(pth, k), v, &e));
                    }
                }
            },
            "kind" => match v.as_str() {
                None => out.push(err_invalid(&child(pth, k), v, "must be a string")),
                Some("") => out.push(err_invalid(&child(pth, k), v, "must not be empty")),
                Some(kind) => {
                    let errs = is_dns1035_label(&kind.to_lowercase());
                    if !errs.is_empty() {
                        out.push(err_invalid(
                            &child(pth, k),
                            v,
                            &format!(
                                "may have mixed case, but should otherwise match: {}",
                                errs.join(",")
                            ),
                        ));
                    }
                }
            },
            "metadata" => match check_object_meta(v) {
                Err(e) => out.push(err_invalid(&child(pth, k), v, &e)),
                Ok(()) => {
                    if let Value::Object(md) = v {
                        validate_embedded_object_meta(md, &child(pth, k), out);
                    }
                }
            },
            _ => {}
        }
    }
}

/// `objectmeta.Validate`: every embedded resource in `x`.
fn validate_embedded(x: &Value, n: &Node, root: bool, pth: &str, out: &mut Vec<Cause>) {
    match x {
        Value::Object(m) => {
            if n.embedded || root {
                validate_embedded_resource(m, pth, out);
            }
            for (k, v) in m {
                if let Some(p) = n.prop(k) {
                    validate_embedded(v, p, false, &child(pth, k), out);
                } else if let Some(a) = n.additional_schema() {
                    validate_embedded(v, a, false, &key(pth, k), out);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = &n.items {
                for (i, v) in a.iter().enumerate() {
                    validate_embedded(v, items, false, &index(pth, i), out);
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// x-kubernetes-list-type set and map (pkg/apiserver/schema/listtype).

/// A list element or key as a Go map key: scalars compare by Go type and
/// value, compounds by their JSON.
#[derive(Hash, PartialEq, Eq)]
enum SetKey {
    Unspecified,
    Null,
    Bool(bool),
    Int(i64),
    Float(u64),
    Str(String),
    Compound(String),
}

fn set_key(v: &Value) -> SetKey {
    match v {
        Value::Null => SetKey::Null,
        Value::Bool(b) => SetKey::Bool(*b),
        Value::Number(n) => match Num::of(n) {
            Num::I(i) => SetKey::Int(i),
            Num::F(f) => SetKey::Float(if f == 0.0 { 0 } else { f.to_bits() }),
        },
        Value::String(s) => SetKey::Str(s.clone()),
        other => SetKey::Compound(go_json(other)),
    }
}

/// Indexes of the second appearance of each repeated key.
fn non_unique(keys: Vec<SetKey>) -> Vec<usize> {
    let mut seen: HashMap<SetKey, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, k) in keys.into_iter().enumerate() {
        let times = seen.entry(k).or_insert(0);
        *times += 1;
        if *times == 2 {
            out.push(i);
        }
    }
    out
}

fn list_object(pth: &str, n: &Node, m: &Map<String, Value>, out: &mut Vec<Cause>) {
    if let Some(a) = n.additional_schema() {
        for (k, v) in m {
            list_value(&key(pth, k), a, v, out);
        }
    }
    for (k, v) in m {
        if let Some(p) = n.prop(k) {
            list_value(&child(pth, k), p, v, out);
        }
    }
}

fn list_value(pth: &str, n: &Node, v: &Value, out: &mut Vec<Cause>) {
    match v {
        Value::Array(a) => list_array(pth, n, a, out),
        Value::Object(m) => list_object(pth, n, m, out),
        _ => {}
    }
}

fn list_array(pth: &str, n: &Node, a: &[Value], out: &mut Vec<Cause>) {
    match n.list_type.as_deref() {
        Some("set") if a.len() > 1 => {
            for i in non_unique(a.iter().map(set_key).collect()) {
                out.push(err_duplicate(&index(pth, i), &a[i]));
            }
        }
        Some("map") => list_map(pth, n, a, out),
        _ => {}
    }
    if let Some(items) = &n.items {
        for (i, v) in a.iter().enumerate() {
            list_value(&index(pth, i), items, v, out);
        }
    }
}

fn list_map(pth: &str, n: &Node, a: &[Value], out: &mut Vec<Cause>) {
    for (i, x) in a.iter().enumerate() {
        if !x.is_null() && !x.is_object() {
            out.push(err_invalid(
                &index(pth, i),
                x,
                "must be an object for an array of list-type map",
            ));
            return;
        }
    }
    if a.len() <= 1 {
        return;
    }
    if let [key_field] = n.list_map_keys.as_slice() {
        let keys: Vec<Option<&Value>> = a.iter().map(|x| x.get(key_field)).collect();
        let set: Vec<SetKey> = keys
            .iter()
            .map(|k| k.map_or(SetKey::Unspecified, set_key))
            .collect();
        for i in non_unique(set) {
            let mut shown = Map::new();
            if let Some(k) = keys[i] {
                shown.insert(key_field.clone(), k.clone());
            }
            out.push(err_duplicate(&index(pth, i), &Value::Object(shown)));
        }
        return;
    }
    let keys: Vec<Value> = a
        .iter()
        .map(|x| {
            let mut k = Map::new();
            for f in &n.list_map_keys {
                if let Some(v) = x.get(f) {
                    k.insert(f.clone(), v.clone());
                }
            }
            Value::Object(k)
        })
        .collect();
    for i in non_unique(keys.iter().map(set_key).collect()) {
        out.push(err_duplicate(&index(pth, i), &keys[i]));
    }
}

// ---------------------------------------------------------------------------
// Pruning (pkg/apiserver/schema/pruning) and null pruning.

fn push_key(path: &mut String, k: &str) -> usize {
    let len = path.len();
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(k);
    len
}

fn push_index(path: &mut String, i: usize) -> usize {
    let len = path.len();
    path.push_str(&format!("[{i}]"));
    len
}

fn record(path: &str, k: &str, out: &mut Vec<String>) {
    out.push(if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    });
}

/// `prune`: drops object fields the schema does not specify. `root` marks
/// the resource root, whose TypeMeta and ObjectMeta are left alone.
fn prune_walk(
    x: &mut Value,
    n: Option<&Node>,
    root: bool,
    path: &mut String,
    out: &mut Vec<String>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    if let Some(n) = n.filter(|n| n.preserves()) {
        skip_prune(x, n, root, path, out, depth);
        return;
    }
    match x {
        Value::Object(m) => {
            let Some(n) = n else {
                for k in m.keys() {
                    record(path, k, out);
                }
                m.clear();
                return;
            };
            let embedded = n.embedded || root;
            m.retain(|k, v| {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    return true;
                }
                let sub = match n.prop(k) {
                    Some(p) => Some(Some(p)),
                    None => n.additional.as_ref().map(Additional::schema),
                };
                match sub {
                    Some(sub) => {
                        let len = push_key(path, k);
                        prune_walk(v, sub, false, path, out, depth + 1);
                        path.truncate(len);
                        true
                    }
                    None => {
                        if !META_FIELDS.contains(&k.as_str()) || !path.is_empty() {
                            record(path, k, out);
                        }
                        false
                    }
                }
            });
        }
        Value::Array(a) => {
            let items = n.and_then(|n| n.items.as_deref());
            for (i, v) in a.iter_mut().enumerate() {
                let len = push_index(path, i);
                prune_walk(v, items, false, path, out, depth + 1);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// `skipPrune`: under `x-kubernetes-preserve-unknown-fields`, only what the
/// schema specifies is pruned further down.
fn skip_prune(
    x: &mut Value,
    n: &Node,
    root: bool,
    path: &mut String,
    out: &mut Vec<String>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    match x {
        Value::Object(m) => {
            let embedded = n.embedded || root;
            for (k, v) in m.iter_mut() {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                let sub = match n.prop(k) {
                    Some(p) => Some(Some(p)),
                    None => n.additional.as_ref().map(Additional::schema),
                };
                if let Some(sub) = sub {
                    let len = push_key(path, k);
                    prune_walk(v, sub, false, path, out, depth + 1);
                    path.truncate(len);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = &n.items {
                for (i, v) in a.iter_mut().enumerate() {
                    let len = push_index(path, i);
                    skip_prune(v, items, false, path, out, depth + 1);
                    path.truncate(len);
                }
            }
        }
        _ => {}
    }
}

fn schema_for_field<'a>(k: &str, n: Option<&'a Node>) -> Option<&'a Node> {
    let n = n?;
    n.prop(k).or_else(|| n.additional_schema())
}

/// `PruneNonNullableNullsWithoutDefaults`.
fn prune_nulls(x: &mut Value, n: Option<&Node>, root: bool, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match x {
        Value::Object(m) => m.retain(|k, v| {
            if root && META_FIELDS.contains(&k.as_str()) {
                return true;
            }
            let sub = schema_for_field(k, n);
            if v.is_null() && sub.is_some_and(|c| !c.nullable && c.default.is_none()) {
                return false;
            }
            prune_nulls(v, sub, false, depth + 1);
            true
        }),
        Value::Array(a) => {
            let items = n.and_then(|n| n.items.as_deref());
            for v in a.iter_mut() {
                prune_nulls(v, items, false, depth + 1);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Defaulting (pkg/apiserver/schema/defaulting).

/// `defaulting.Default`.
fn apply_defaults_walk(x: &mut Value, n: &Node) {
    match x {
        Value::Object(m) => {
            for (k, prop) in &n.properties {
                let Some(d) = &prop.default else { continue };
                match m.get_mut(k) {
                    None => {
                        m.insert(k.clone(), d.clone());
                    }
                    Some(v) if v.is_null() && !prop.nullable => *v = d.clone(),
                    Some(_) => {}
                }
            }
            for (k, v) in m.iter_mut() {
                if let Some(p) = n.prop(k) {
                    apply_defaults_walk(v, p);
                } else if let Some(a) = n.additional_schema() {
                    if v.is_null() && !a.nullable {
                        *v = a.default.clone().unwrap_or(Value::Null);
                    }
                    apply_defaults_walk(v, a);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = &n.items {
                for v in a.iter_mut() {
                    if v.is_null() && !items.nullable {
                        *v = items.default.clone().unwrap_or(Value::Null);
                    }
                    apply_defaults_walk(v, items);
                }
            }
        }
        _ => {}
    }
}

/// `PruneDefaults`: defaults as served are pruned like objects.
fn prune_defaults(n: &mut Node) {
    if let Some(mut d) = n.default.take() {
        let mut path = String::new();
        let mut dropped = Vec::new();
        prune_walk(&mut d, Some(n), n.embedded, &mut path, &mut dropped, 0);
        coerce(&mut d, n, "", &mut dropped);
        n.default = Some(d);
    }
    if let Some(Additional::Schema(a)) = &mut n.additional {
        prune_defaults(a);
    }
    if let Some(items) = &mut n.items {
        prune_defaults(items);
    }
    for (_, p) in &mut n.properties {
        prune_defaults(p);
    }
}

/// `ValidateDefaults`: every default must be pruned, carry valid metadata
/// where it is an embedded resource, and validate against its schema.
fn validate_defaults(n: &Node, p: &str, inside_meta: bool, is_root: bool, out: &mut Vec<Cause>) {
    let embedded = n.embedded || is_root;
    let inside_meta = inside_meta && !embedded;
    if let Some(d) = &n.default {
        let dp = child(p, "default");
        if inside_meta {
            to_causes(sv(n, d, ""), &dp, out);
        } else {
            let mut pruned = d.clone();
            let mut path = String::new();
            let mut dropped = Vec::new();
            prune_walk(&mut pruned, Some(n), embedded, &mut path, &mut dropped, 0);
            if pruned != *d {
                out.push(err_invalid(&dp, d, "must not have unknown fields"));
            }
            if let Some(e) = coerce_error(d, n, embedded, &dp) {
                out.push(e);
            } else {
                let mut meta = Vec::new();
                validate_embedded(d, n, embedded, &dp, &mut meta);
                if meta.is_empty() {
                    to_causes(sv(n, d, ""), &dp, out);
                } else {
                    out.extend(meta);
                }
            }
        }
    }
    if let Some(items) = &n.items {
        validate_defaults(items, &child(p, "items"), inside_meta, false, out);
    }
    for (k, prop) in &n.properties {
        let sub_meta = inside_meta || (embedded && META_FIELDS.contains(&k.as_str()));
        validate_defaults(prop, &key(&child(p, "properties"), k), sub_meta, false, out);
    }
}

// ---------------------------------------------------------------------------
// The public face.

/// A CRD version's structural schema, checked as upstream checks it when the
/// CRD is written, and applied to custom objects when they are.
#[derive(Debug, Clone)]
pub struct StructuralSchema {
    root: Node,
}

impl StructuralSchema {
    /// Parses `spec.versions[*].schema.openAPIV3Schema`. `Err` carries the
    /// causes upstream reports for a CRD whose schema is invalid or not
    /// structural, with field paths under `field` (the path of the
    /// `openAPIV3Schema` itself), e.g.
    /// `spec.versions[0].schema.openAPIV3Schema.properties[spec].type:
    /// Required value: must not be empty for specified object fields`.
    pub fn from_json(v: &Value, field: &str) -> Result<Self, Vec<Cause>> {
        let mut parser = Parser { errs: Vec::new() };
        let mut root = parser.node(v, field, 0);
        if !parser.errs.is_empty() {
            return Err(parser.errs);
        }
        let mut errs = Vec::new();
        if root.nullable {
            errs.push(err_forbidden(
                &child(field, "nullable"),
                "nullable cannot be true at the root",
            ));
        }
        let init = unsupported(&root);
        if init.is_none() {
            let mut structural = Vec::new();
            invariants(&root, Level::Root, field, &mut structural);
            completeness(&root, field, &mut structural);
            structural.sort_by_cached_key(full);
            if structural.is_empty() {
                validate_defaults(&root, field, false, true, &mut structural);
            }
            errs.extend(structural);
        }
        let ssv = Ssv {
            allow_defaults: true,
            disallow_reason: String::new(),
            inside_meta: false,
        };
        check_schema(&root, field, &ssv, true, &mut errs);
        if errs.is_empty() {
            if let Some(e) = init {
                errs.push(err_invalid(field, &s(""), &e));
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        prune_defaults(&mut root);
        Ok(StructuralSchema { root })
    }

    /// Validates a whole custom object against the schema: the OpenAPI value
    /// validations (type, required, enum, formats, bounds, junctors...), the
    /// TypeMeta and ObjectMeta of embedded resources, and the uniqueness of
    /// `x-kubernetes-list-type` `set` and `map` lists. The object's own
    /// `metadata` is validated elsewhere. Messages and paths are upstream's
    /// (errors about the whole object name the field `<nil>`, as upstream
    /// does).
    pub fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        to_causes(sv(&self.root, obj, ""), "", &mut out);
        validate_embedded(obj, &self.root, false, "", &mut out);
        if let Value::Object(m) = obj {
            list_object("", &self.root, m, &mut out);
        }
        out
    }

    /// Validates `status` alone against the schema's `properties.status`,
    /// with paths under `status` and messages relative to it
    /// (`status.num: Invalid value: 15: num in body should be less than or
    /// equal to 10`), as upstream validates writes to the status subresource.
    /// Empty when the object has no `status` or the schema does not specify
    /// one.
    pub fn validate_status(&self, obj: &Value) -> Vec<Cause> {
        let (Some(status), Some(n)) = (obj.get("status"), self.root.prop("status")) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        to_causes(sv(n, status, ""), "status", &mut out);
        out
    }

    /// Drops the fields the schema does not specify, except under
    /// `x-kubernetes-preserve-unknown-fields` (and never `apiVersion`, `kind`
    /// or `metadata` at the root); drops `null`s the schema neither allows
    /// nor defaults; and drops the fields `metav1.ObjectMeta` does not know
    /// from the `metadata` of embedded resources. Returns the dropped unknown
    /// fields (`spec.foo`, `spec.items[0].bar`,
    /// `spec.template.metadata.baz`), pruned ones sorted first, then the
    /// embedded metadata ones sorted.
    pub fn prune(&self, obj: &mut Value) -> Vec<String> {
        let mut paths = Vec::new();
        let mut path = String::new();
        prune_walk(obj, Some(&self.root), true, &mut path, &mut paths, 0);
        paths.sort();
        prune_nulls(obj, Some(&self.root), true, 0);
        let mut meta = Vec::new();
        coerce(obj, &self.root, "", &mut meta);
        meta.sort();
        paths.extend(meta);
        paths
    }

    /// Applies `default:` values where a field is missing (or `null` and not
    /// nullable), recursing into defaulted values so that defaults inside
    /// defaults apply; `null`s that are neither nullable nor defaulted are
    /// dropped first, as upstream's decoding does. Call before [`validate`].
    ///
    /// [`validate`]: StructuralSchema::validate
    pub fn apply_defaults(&self, obj: &mut Value) {
        prune_nulls(obj, Some(&self.root), true, 0);
        apply_defaults_walk(obj, &self.root);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ROOT: &str = "spec.versions[0].schema.openAPIV3Schema";

    fn schema(v: Value) -> StructuralSchema {
        match StructuralSchema::from_json(&v, ROOT) {
            Ok(s) => s,
            Err(e) => panic!("schema rejected: {:#?}", strings(&e)),
        }
    }

    /// A schema taken as is, without the CRD-time checks (upstream's unit
    /// tests build such structural schemas directly).
    fn raw(v: Value) -> StructuralSchema {
        let mut p = Parser { errs: Vec::new() };
        let root = p.node(&v, "", 0);
        assert!(p.errs.is_empty(), "{:?}", p.errs);
        StructuralSchema { root }
    }

    fn rejected(v: Value) -> Vec<String> {
        match StructuralSchema::from_json(&v, ROOT) {
            Ok(_) => panic!("schema accepted: {v}"),
            Err(e) => strings(&e),
        }
    }

    fn strings(causes: &[Cause]) -> Vec<String> {
        causes.iter().map(full).collect()
    }

    fn errors(s: &StructuralSchema, obj: Value) -> Vec<String> {
        let mut e = strings(&s.validate(&obj));
        e.sort();
        e
    }

    fn sorted(v: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    fn obj_schema(props: Value) -> Value {
        json!({"type": "object", "properties": props})
    }

    // --- structural-ness -------------------------------------------------

    #[test]
    fn missing_type_is_not_structural() {
        let e = rejected(json!({
            "type": "object",
            "properties": {"spec": {"properties": {"a": {"type": "string"}}}}
        }));
        assert_eq!(
            e,
            vec![format!(
                "{ROOT}.properties[spec].type: Required value: must not be empty for specified object fields"
            )]
        );
        let e = rejected(json!({"properties": {"a": {"type": "string"}}}));
        assert_eq!(
            e,
            vec![format!(
                "{ROOT}.type: Required value: must not be empty at the root"
            )]
        );
        let e = rejected(obj_schema(json!({"l": {"type": "array", "items": {}}})));
        assert_eq!(
            e,
            vec![format!(
                "{ROOT}.properties[l].items.type: Required value: must not be empty for specified array items"
            )]
        );
        let e = rejected(obj_schema(json!({"l": {"type": "array"}})));
        assert_eq!(
            e,
            vec![format!(
                "{ROOT}.properties[l].items: Required value: must be specified"
            )]
        );
        let e = rejected(json!({"type": "string"}));
        assert_eq!(
            e,
            vec![format!(
                "{ROOT}.type: Invalid value: \"string\": must be object at the root"
            )]
        );
        // No type is fine under preserve-unknown-fields or int-or-string.
        schema(obj_schema(json!({
            "any": {"x-kubernetes-preserve-unknown-fields": true},
            "port": {"x-kubernetes-int-or-string": true}
        })));
    }

    #[test]
    fn additional_properties_with_properties_rejected() {
        let e = rejected(obj_schema(json!({"spec": {
            "type": "object",
            "properties": {"a": {"type": "string"}},
            "additionalProperties": {"type": "string"}
        }})));
        assert_eq!(
            e,
            vec![format!(
                "{ROOT}.properties[spec].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"
            )]
        );
        // additionalProperties: true beside properties is allowed.
        schema(obj_schema(json!({"spec": {
            "type": "object",
            "properties": {"a": {"type": "string"}},
            "additionalProperties": true
        }})));
        let e = rejected(json!({"type": "object", "additionalProperties": {"type": "string"}}));
        assert_eq!(
            e,
            vec![format!(
                "{ROOT}.additionalProperties: Forbidden: must not be used at the root"
            )]
        );
    }

    #[test]
    fn junctors_must_not_carry_structure() {
        let e = rejected(obj_schema(json!({"spec": {
            "type": "object",
            "properties": {"a": {"type": "string"}},
            "anyOf": [{"type": "object", "properties": {"a": {"description": "x"}}}],
            "not": {"nullable": true, "default": 1}
        }})));
        assert_eq!(
            e,
            sorted(&[
                &format!("{ROOT}.properties[spec].anyOf[0].properties[a].description: Forbidden: must be empty to be structural"),
                &format!("{ROOT}.properties[spec].anyOf[0].type: Forbidden: must be empty to be structural"),
                &format!("{ROOT}.properties[spec].not.default: Forbidden: must be undefined to be structural"),
                &format!("{ROOT}.properties[spec].not.nullable: Forbidden: must be false to be structural"),
            ])
        );
        // The int-or-string patterns are the exception.
        schema(obj_schema(json!({
            "a": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
            "b": {"x-kubernetes-int-or-string": true, "allOf": [
                {"anyOf": [{"type": "integer"}, {"type": "string"}]},
                {"anyOf": [{"minimum": 1}, {"pattern": "^x"}]}
            ]}
        })));
        // Root junctors may only name what is specified structurally.
        let e = rejected(json!({
            "type": "object",
            "properties": {"spec": {"type": "object"}},
            "anyOf": [{"properties": {"spec": {"properties": {"x": {"minimum": 1}}}}}]
        }));
        assert_eq!(
            e,
            vec![format!(
                "{ROOT}.properties[spec].properties[x]: Required value: because it is defined in {ROOT}.anyOf[0].properties[spec].properties[x]"
            )]
        );
    }

    #[test]
    fn metadata_embedded_and_extension_rules() {
        let e = rejected(obj_schema(json!({"metadata": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "labels": {"type": "object"}}
        }})));
        assert_eq!(
            e,
            vec![format!(
                "{ROOT}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified"
            )]
        );
        schema(obj_schema(json!({"metadata": {
            "type": "object",
            "properties": {"name": {"type": "string", "maxLength": 10}}
        }})));
        let e = rejected(obj_schema(
            json!({"t": {"type": "object", "x-kubernetes-embedded-resource": true}}),
        ));
        assert_eq!(
            e,
            vec![format!(
                "{ROOT}.properties[t].properties: Required value: must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields"
            )]
        );
        let e = rejected(obj_schema(json!({"p": {
            "type": "string", "x-kubernetes-preserve-unknown-fields": false
        }})));
        assert_eq!(
            e,
            vec![format!(
                "{ROOT}.properties[p].x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined"
            )]
        );
        let e = rejected(obj_schema(
            json!({"p": {"type": "string", "uniqueItems": true, "pattern": "a("}}),
        ));
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with(&format!(
            "{ROOT}.properties[p].pattern: Invalid value: \"a(\": must be a valid regular expression, but isn't: error parsing regexp:"
        )));
        assert_eq!(
            e[1],
            format!("{ROOT}.properties[p].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic")
        );
        let e = rejected(obj_schema(json!({"l": {
            "type": "array",
            "x-kubernetes-list-type": "map",
            "items": {"type": "object", "properties": {"name": {"type": "string"}}}
        }})));
        assert_eq!(
            e,
            vec![format!(
                "{ROOT}.properties[l].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map"
            )]
        );
        let e = rejected(obj_schema(json!({"l": {
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "properties": {"name": {"type": "string"}}}
        }})));
        assert_eq!(
            e,
            vec![format!(
                "{ROOT}.properties[l].items.properties[name].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property"
            )]
        );
        let e = rejected(obj_schema(json!({"t": {"type": "foo"}})));
        assert_eq!(
            e,
            vec![format!(
                "{ROOT}.properties[t].type: Unsupported value: \"foo\": supported values: \"array\", \"boolean\", \"integer\", \"number\", \"object\", \"string\""
            )]
        );
        let e = rejected(json!({"type": "object", "nullable": true}));
        assert_eq!(
            e,
            vec![format!(
                "{ROOT}.nullable: Forbidden: nullable cannot be true at the root"
            )]
        );
        let e = rejected(obj_schema(
            json!({"metadata": {"type": "object", "default": {}}}),
        ));
        assert_eq!(
            e,
            vec![format!(
                "{ROOT}.properties[metadata].default: Forbidden: must not be set in top-level metadata"
            )]
        );
        let e = rejected(obj_schema(json!({"p": {"type": "string", "$schema": "x"}})));
        assert_eq!(
            e,
            vec![format!(
                "{ROOT}: Invalid value: \"\": OpenAPIV3Schema 'schema' is not supported"
            )]
        );
        let e = rejected(obj_schema(
            json!({"p": {"type": "string", "maxLength": "5"}}),
        ));
        assert_eq!(
            e,
            vec![format!(
                "{ROOT}.properties[p].maxLength: Invalid value: \"5\": must be of type integer, not string"
            )]
        );
    }

    #[test]
    fn defaults_are_validated_and_must_be_pruned() {
        let e = rejected(obj_schema(
            json!({"spec": {"type": "object", "properties": {
                "replicas": {"type": "integer", "default": "one"},
                "obj": {"type": "object", "properties": {"a": {"type": "string"}}, "default": {"a": "x", "b": 1}}
            }}}),
        ));
        let base = format!("{ROOT}.properties[spec].properties");
        let mut e = e;
        e.sort();
        assert_eq!(
            e,
            sorted(&[
                &format!("{base}[obj].default: Invalid value: {{\"a\":\"x\",\"b\":1}}: must not have unknown fields"),
                &format!("{base}[replicas].default: Invalid value: \"string\":  in body must be of type integer: \"string\""),
            ])
        );
    }

    // --- validation -------------------------------------------------------

    fn validation_schema() -> StructuralSchema {
        schema(obj_schema(json!({"spec": {
            "type": "object",
            "required": ["replicas"],
            "properties": {
                "replicas": {"type": "integer", "minimum": 0, "maximum": 10},
                "ratio": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 1, "exclusiveMaximum": true},
                "step": {"type": "number", "multipleOf": 0.5},
                "name": {"type": "string", "minLength": 2, "maxLength": 5, "pattern": "^[a-z]+$"},
                "digits": {"type": "string", "pattern": "^\\d+$"},
                "mode": {"type": "string", "enum": ["a", "b"]},
                "level": {"type": "integer", "enum": [1, 2]},
                "tags": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string"}},
                "labels": {"type": "object", "minProperties": 1, "maxProperties": 2,
                           "additionalProperties": {"type": "string"}},
                "closed": {"type": "object", "additionalProperties": false},
                "maybe": {"type": "string", "nullable": true},
                "never": {"type": "string"},
                "port": {"x-kubernetes-int-or-string": true},
                "flag": {"type": "boolean"}
            }
        }})))
    }

    #[test]
    fn type_and_required() {
        let s = validation_schema();
        assert_eq!(
            errors(&s, json!({"spec": {"replicas": 1}})),
            Vec::<String>::new()
        );
        let c = s.validate(&json!({"spec": {"replicas": "string"}}));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].field, "spec.replicas");
        assert_eq!(c[0].reason, "FieldValueTypeInvalid");
        assert_eq!(
            c[0].message,
            "Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\""
        );
        assert_eq!(
            errors(&s, json!({"spec": {}})),
            vec!["spec.replicas: Required value"]
        );
        assert_eq!(
            errors(&s, json!({"spec": {"replicas": 1.5, "flag": "yes"}})),
            sorted(&[
                "<nil>: Invalid value: \"\": Checked value must be of type integer (default format) in spec.replicas",
                "spec.flag: Invalid value: \"string\": spec.flag in body must be of type boolean: \"string\"",
                "spec.replicas: Invalid value: \"number\": spec.replicas in body must be of type integer: \"number\"",
            ])
        );
        // 2.0 is an integer to upstream.
        assert_eq!(
            errors(&s, json!({"spec": {"replicas": 2.0}})),
            Vec::<String>::new()
        );
        assert_eq!(
            errors(&s, json!("x")),
            vec!["<nil>: Invalid value: \"string\":  in body must be of type object: \"string\""]
        );
    }

    #[test]
    fn numbers_strings_enums() {
        let s = validation_schema();
        let e = |spec: Value| {
            let mut spec = spec;
            spec["replicas"] = spec.get("replicas").cloned().unwrap_or(json!(1));
            errors(&s, json!({ "spec": spec }))
        };
        assert_eq!(
            e(json!({"replicas": -1})),
            vec!["spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0"]
        );
        assert_eq!(
            e(json!({"replicas": 11})),
            vec!["spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10"]
        );
        assert_eq!(
            e(json!({"ratio": 1.0})),
            vec!["spec.ratio: Invalid value: 1: spec.ratio in body should be less than 1"]
        );
        assert_eq!(
            e(json!({"ratio": 0})),
            vec!["spec.ratio: Invalid value: 0: spec.ratio in body should be greater than 0"]
        );
        assert_eq!(e(json!({"ratio": 0.5, "step": 1.5})), Vec::<String>::new());
        assert_eq!(
            e(json!({"step": 1.25})),
            vec!["spec.step: Invalid value: 1.25: spec.step in body should be a multiple of 0.5"]
        );
        assert_eq!(
            e(json!({"name": "abcdef"})),
            vec!["spec.name: Too long: may not be more than 5 bytes"]
        );
        assert_eq!(
            e(json!({"name": "a"})),
            vec!["spec.name: Invalid value: \"a\": spec.name in body should be at least 2 chars long"]
        );
        assert_eq!(
            e(json!({"name": "AB"})),
            vec!["spec.name: Invalid value: \"AB\": spec.name in body should match '^[a-z]+$'"]
        );
        // Go's \d is ASCII only.
        assert_eq!(e(json!({"digits": "123"})), Vec::<String>::new());
        assert_eq!(
            e(json!({"digits": "١٢٣"})),
            vec!["spec.digits: Invalid value: \"١٢٣\": spec.digits in body should match '^\\d+$'"]
        );
        assert_eq!(
            e(json!({"mode": "c"})),
            vec!["spec.mode: Unsupported value: \"c\": supported values: \"a\", \"b\""]
        );
        assert_eq!(
            e(json!({"level": 3})),
            vec!["spec.level: Unsupported value: 3: supported values: \"1\", \"2\""]
        );
        assert_eq!(e(json!({"level": 2.0})), Vec::<String>::new());
        assert_eq!(
            e(json!({"tags": []})),
            vec!["spec.tags: Invalid value: 0: spec.tags in body should have at least 1 items"]
        );
        assert_eq!(
            e(json!({"tags": ["a", "b", "c"]})),
            vec!["spec.tags: Too many: 3: must have at most 2 items"]
        );
        assert_eq!(
            e(json!({"labels": {}})),
            vec!["spec.labels: Invalid value: 0: spec.labels in body should have at least 1 properties"]
        );
        assert_eq!(
            e(json!({"labels": {"a": "1", "b": "2", "c": "3"}})),
            vec!["spec.labels: Too many: 3: must have at most 2 items"]
        );
        assert_eq!(
            e(json!({"labels": {"a": 1}})),
            vec!["spec.labels.a: Invalid value: \"integer\": spec.labels.a in body must be of type string: \"integer\""]
        );
        assert_eq!(
            e(json!({"closed": {"x": 1}})),
            vec![
                "spec.closed: Invalid value: \"x\": spec.closed.x in body is a forbidden property"
            ]
        );
    }

    #[test]
    fn nullable_and_int_or_string() {
        let s = validation_schema();
        assert_eq!(
            errors(&s, json!({"spec": {"replicas": 1, "maybe": null}})),
            Vec::<String>::new()
        );
        assert_eq!(
            errors(&s, json!({"spec": {"replicas": 1, "never": null}})),
            vec!["spec.never: Invalid value: \"null\": spec.never in body must be of type string: \"null\""]
        );
        for ok in [json!(80), json!("http")] {
            assert_eq!(
                errors(&s, json!({"spec": {"replicas": 1, "port": ok}})),
                Vec::<String>::new()
            );
        }
        for (bad, t) in [
            (json!(true), "boolean"),
            (json!(1.2), "number"),
            (json!({}), "object"),
            (json!(null), "null"),
        ] {
            assert_eq!(
                errors(&s, json!({"spec": {"replicas": 1, "port": bad}})),
                vec![format!(
                    "spec.port: Invalid value: \"{t}\": spec.port in body must be of type integer,string: \"{t}\""
                )]
            );
        }
        // Upstream's own expectations for int-or-string with an explicit anyOf.
        let s = schema(obj_schema(json!({"field": {
            "nullable": true,
            "x-kubernetes-int-or-string": true,
            "anyOf": [{"type": "integer"}, {"type": "string"}]
        }})));
        assert_eq!(errors(&s, json!({"field": null})), Vec::<String>::new());
        assert_eq!(
            errors(&s, json!({"field": 1.2})),
            sorted(&[
                "<nil>: Invalid value: \"\": \"field\" must validate at least one schema (anyOf)",
                "field: Invalid value: \"number\": field in body must be of type integer,string: \"number\"",
                "field: Invalid value: \"number\": field in body must be of type integer: \"number\"",
                "<nil>: Invalid value: \"\": Checked value must be of type integer (default format) in field",
            ])
        );
        let s = schema(obj_schema(json!({"field": {
            "nullable": true,
            "x-kubernetes-int-or-string": true,
            "allOf": [{"anyOf": [{"type": "integer"}, {"type": "string"}]}]
        }})));
        assert_eq!(
            errors(&s, json!({"field": true})),
            sorted(&[
                "<nil>: Invalid value: \"\": \"field\" must validate all the schemas (allOf). None validated",
                "<nil>: Invalid value: \"\": \"field\" must validate at least one schema (anyOf)",
                "field: Invalid value: \"boolean\": field in body must be of type integer,string: \"boolean\"",
                "field: Invalid value: \"boolean\": field in body must be of type integer: \"boolean\"",
            ])
        );
    }

    #[test]
    fn formats() {
        let s = schema(obj_schema(json!({
            "i32": {"type": "integer", "format": "int32"},
            "i64": {"type": "integer", "format": "int64"},
            "f32": {"type": "number", "format": "float"},
            "day": {"type": "string", "format": "date"},
            "at": {"type": "string", "format": "date-time"},
            "id": {"type": "string", "format": "uuid"},
            "data": {"type": "string", "format": "byte"},
            "ip": {"type": "string", "format": "ipv4"},
            "ip6": {"type": "string", "format": "ipv6"},
            "net": {"type": "string", "format": "cidr"},
            "mail": {"type": "string", "format": "email"},
            "host": {"type": "string", "format": "hostname"},
            "link": {"type": "string", "format": "uri"},
            "wait": {"type": "string", "format": "duration"},
            "mac": {"type": "string", "format": "mac"},
            "other": {"type": "string", "format": "no-such-format"}
        })));
        let good = json!({
            "i32": 2147483647, "i64": 9223372036854775807i64, "f32": 1.5,
            "day": "2024-02-29", "at": "2024-02-29T12:30:00Z",
            "id": "123e4567-e89b-12d3-a456-426614174000", "data": "aGVsbG8=",
            "ip": "10.0.0.1", "ip6": "fe80::1", "net": "10.0.0.0/8",
            "mail": "a.b@example.com", "host": "example.com",
            "link": "https://example.com/x?y=1", "wait": "1h30m",
            "mac": "00:1a:2b:3c:4d:5e", "other": "anything"
        });
        assert_eq!(errors(&s, good), Vec::<String>::new());
        assert_eq!(
            errors(&s, json!({"wait": "5 minutes"})),
            Vec::<String>::new()
        );
        assert_eq!(
            errors(&s, json!({"i32": 2147483648i64})),
            vec!["<nil>: Invalid value: \"\": Checked value must be of type integer with format int32 in i32"]
        );
        assert_eq!(
            errors(&s, json!({"f32": 1e39})),
            vec!["<nil>: Invalid value: \"\": Checked value must be of type number with format float in f32"]
        );
        assert_eq!(
            errors(&s, json!({"i64": 1.5})),
            sorted(&[
                "<nil>: Invalid value: \"\": Checked value must be of type integer with format int64 in i64",
                "i64: Invalid value: \"float64\": i64 in body must be of type int64: \"float64\"",
            ])
        );
        for (field, bad, format) in [
            ("day", "2023-02-29", "date"),
            ("at", "2024-02-29 12:30", "date-time"),
            ("id", "not-a-uuid", "uuid"),
            ("data", "!!", "byte"),
            ("ip", "10.0.0", "ipv4"),
            ("ip6", "10.0.0.1", "ipv6"),
            ("net", "10.0.0.0/33", "cidr"),
            ("mail", "nobody", "email"),
            ("host", "-bad-", "hostname"),
            ("link", "relative/path", "uri"),
            ("wait", "soon", "duration"),
            ("mac", "00:1a:2b", "mac"),
        ] {
            assert_eq!(
                errors(&s, json!({ field: bad })),
                vec![format!(
                    "{field}: Invalid value: \"{bad}\": {field} in body must be of type {format}: \"{bad}\""
                )],
                "{field}"
            );
        }
        assert_eq!(
            errors(&s, json!({"day": 5})),
            vec!["day: Invalid value: \"int64\": day in body must be of type date: \"int64\""]
        );
    }

    #[test]
    fn junctors() {
        let s = schema(obj_schema(json!({"spec": {
            "type": "object",
            "properties": {
                "a": {"type": "string"},
                "b": {"type": "string"},
                "n": {"type": "integer", "not": {"minimum": 5}},
                "both": {"type": "integer", "allOf": [{"minimum": 1}, {"maximum": 3}]}
            },
            "anyOf": [{"required": ["a"]}, {"required": ["b"]}],
            "oneOf": [{"required": ["a"]}, {"required": ["b"]}]
        }})));
        assert_eq!(
            errors(&s, json!({"spec": {"a": "x"}})),
            Vec::<String>::new()
        );
        assert_eq!(
            errors(&s, json!({"spec": {}})),
            sorted(&[
                "<nil>: Invalid value: \"\": \"spec\" must validate at least one schema (anyOf)",
                "<nil>: Invalid value: \"\": \"spec\" must validate one and only one schema (oneOf). Found none valid",
                "spec.a: Required value",
            ])
        );
        assert_eq!(
            errors(&s, json!({"spec": {"a": "x", "b": "y"}})),
            vec!["<nil>: Invalid value: \"\": \"spec\" must validate one and only one schema (oneOf). Found 2 valid alternatives"]
        );
        assert_eq!(
            errors(&s, json!({"spec": {"a": "x", "n": 7, "both": 5}})),
            sorted(&[
                "<nil>: Invalid value: \"\": \"spec.n\" must not validate the schema (not)",
                "<nil>: Invalid value: \"\": \"spec.both\" must validate all the schemas (allOf)",
                "spec.both: Invalid value: 5: spec.both in body should be less than or equal to 3",
            ])
        );
    }

    #[test]
    fn list_type_set_and_map() {
        let s = schema(obj_schema(json!({
            "set": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "ports": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string"}, "port": {"type": "integer"}
                }}
            },
            "pairs": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["a", "b"],
                "items": {"type": "object", "required": ["a", "b"], "properties": {
                    "a": {"type": "string"}, "b": {"type": "integer"}
                }}
            }
        })));
        assert_eq!(
            errors(&s, json!({"set": ["a", "b", "a", "a"]})),
            vec!["set[2]: Duplicate value: \"a\""]
        );
        assert_eq!(
            errors(
                &s,
                json!({"ports": [{"name": "http", "port": 80}, {"name": "http", "port": 81}]})
            ),
            vec!["ports[1]: Duplicate value: {\"name\":\"http\"}"]
        );
        assert_eq!(
            errors(
                &s,
                json!({"pairs": [{"a": "x", "b": 1}, {"b": 1, "a": "x"}, {"a": "x", "b": 2}]})
            ),
            vec!["pairs[1]: Duplicate value: {\"a\":\"x\",\"b\":1}"]
        );
        assert_eq!(
            errors(
                &s,
                json!({"set": ["a", "b"], "ports": [{"name": "a"}, {"name": "b"}]})
            ),
            Vec::<String>::new()
        );
    }

    #[test]
    fn embedded_resource() {
        let s = schema(obj_schema(
            json!({"spec": {"type": "object", "properties": {
                "template": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": true,
                    "x-kubernetes-preserve-unknown-fields": true
                }
            }}}),
        ));
        assert_eq!(
            errors(&s, json!({"spec": {"template": {"spec": {}}}})),
            sorted(&[
                "spec.template.apiVersion: Required value",
                "spec.template.kind: Required value",
            ])
        );
        assert_eq!(
            errors(&s, json!({"spec": {"template": {
                "apiVersion": "a/b/c", "kind": "Bad_Kind",
                "metadata": {"name": "a/b", "labels": {"x": "-"}}
            }}})),
            sorted(&[
                "spec.template.apiVersion: Invalid value: \"a/b/c\": unexpected GroupVersion string: a/b/c",
                "spec.template.kind: Invalid value: \"Bad_Kind\": may have mixed case, but should otherwise match: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
                "spec.template.metadata.name: Invalid value: \"a/b\": may not contain '/'",
                "spec.template.metadata.labels: Invalid value: \"-\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            ])
        );
        assert_eq!(
            errors(&s, json!({"spec": {"template": {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": 5}
            }}})),
            vec!["spec.template.metadata: Invalid value: {\"name\":5}: json: cannot unmarshal number 5 into Go struct field ObjectMeta.name of type string"]
        );
        assert_eq!(
            errors(
                &s,
                json!({"spec": {"template": {
                    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": 1}
                }}})
            ),
            Vec::<String>::new()
        );
        let e = rejected(obj_schema(
            json!({"t": {"type": "string", "x-kubernetes-embedded-resource": true}}),
        ));
        assert_eq!(
            e,
            sorted(&[
                &format!("{ROOT}.properties[t].properties: Required value: must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields"),
                &format!("{ROOT}.properties[t].type: Invalid value: \"string\": must be object if x-kubernetes-embedded-resource is true"),
            ])
        );
    }

    #[test]
    fn status_is_validated_relative_to_status() {
        let s = schema(obj_schema(json!({
            "spec": {"type": "object"},
            "status": {"type": "object", "properties": {"num": {"type": "integer", "maximum": 10}}}
        })));
        assert_eq!(
            strings(&s.validate_status(&json!({"status": {"num": 15}}))),
            vec!["status.num: Invalid value: 15: num in body should be less than or equal to 10"]
        );
        assert_eq!(
            errors(&s, json!({"status": {"num": 15}})),
            vec!["status.num: Invalid value: 15: status.num in body should be less than or equal to 10"]
        );
        assert!(s.validate_status(&json!({"spec": {}})).is_empty());
    }

    // --- pruning ----------------------------------------------------------

    #[test]
    fn prune_unknown_fields_and_preserve_nested() {
        // Upstream's "nested x-kubernetes-preserve-unknown-fields" case.
        let s = raw(json!({
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
            "properties": {
                "alpha": {"type": "string"},
                "beta": {"type": "number"},
                "pruning": {"type": "object", "properties": {
                    "preserving": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "pruning": {"type": "object"}
                }},
                "preserving": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {
                    "preserving": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "preservingUnknownType": {"x-kubernetes-preserve-unknown-fields": true},
                    "pruning": {"type": "object"}
                }},
                "preservingAdditionalPropertiesNotInheritingXPreserveUnknownFields": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": true,
                    "additionalProperties": {"type": "object", "properties": {"specified": {"type": "object"}}}
                },
                "preservingAdditionalPropertiesKeyPruneValues": {
                    "type": "object",
                    "additionalProperties": {"type": "object", "properties": {"specified": {"type": "object"}}}
                }
            }
        }));
        let mut obj = json!({
            "unspecified": "bar",
            "alpha": "abc",
            "beta": 42.0,
            "unspecifiedObject": {"unspecified": "bar"},
            "pruning": {
                "unspecified": "bar",
                "unspecifiedObject": {"unspecified": "bar"},
                "pruning": {"unspecified": "bar"},
                "apiVersion": "unknown",
                "preserving": {"unspecified": "bar"}
            },
            "preserving": {
                "unspecified": "bar",
                "unspecifiedObject": {"unspecified": "bar"},
                "pruning": {"unspecified": "bar"},
                "preserving": {"unspecified": "bar"},
                "preservingUnknownType": [{"foo": true}, {"bar": true}]
            },
            "preservingAdditionalPropertiesNotInheritingXPreserveUnknownFields": {
                "foo": {"specified": {"unspecified": "bar"}, "unspecified": "bar"}
            },
            "preservingAdditionalPropertiesKeyPruneValues": {
                "foo": {"specified": {"unspecified": "bar"}, "unspecified": "bar"}
            }
        });
        let pruned = s.prune(&mut obj);
        assert_eq!(
            obj,
            json!({
                "unspecified": "bar",
                "alpha": "abc",
                "beta": 42.0,
                "unspecifiedObject": {"unspecified": "bar"},
                "pruning": {"pruning": {}, "preserving": {"unspecified": "bar"}},
                "preserving": {
                    "unspecified": "bar",
                    "unspecifiedObject": {"unspecified": "bar"},
                    "pruning": {},
                    "preserving": {"unspecified": "bar"},
                    "preservingUnknownType": [{"foo": true}, {"bar": true}]
                },
                "preservingAdditionalPropertiesNotInheritingXPreserveUnknownFields": {"foo": {"specified": {}}},
                "preservingAdditionalPropertiesKeyPruneValues": {"foo": {"specified": {}}}
            })
        );
        assert_eq!(
            pruned,
            vec![
                "preserving.pruning.unspecified",
                "preservingAdditionalPropertiesKeyPruneValues.foo.specified.unspecified",
                "preservingAdditionalPropertiesKeyPruneValues.foo.unspecified",
                "preservingAdditionalPropertiesNotInheritingXPreserveUnknownFields.foo.specified.unspecified",
                "preservingAdditionalPropertiesNotInheritingXPreserveUnknownFields.foo.unspecified",
                "pruning.apiVersion",
                "pruning.pruning.unspecified",
                "pruning.unspecified",
                "pruning.unspecifiedObject",
            ]
        );
    }

    #[test]
    fn prune_keeps_root_meta_and_coerces_embedded_metadata() {
        let s = schema(obj_schema(
            json!({"spec": {"type": "object", "properties": {
                "replicas": {"type": "integer"},
                "list": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
                "template": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": true,
                    "properties": {"spec": {"type": "object", "properties": {"image": {"type": "string"}}}}
                },
                "nothing": {"type": "string"}
            }}}),
        ));
        let mut obj = json!({
            "apiVersion": "example.com/v1",
            "kind": "Thing",
            "metadata": {"name": "t", "weird": 1},
            "spec": {
                "replicas": 1,
                "junk": true,
                "nothing": null,
                "list": [{"name": "a", "extra": 1}],
                "template": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": "p", "bogus": "x", "labels": {}, "creationTimestamp": null},
                    "spec": {"image": "i", "other": 2},
                    "status": {}
                }
            },
            "extra": 1
        });
        let pruned = s.prune(&mut obj);
        assert_eq!(
            pruned,
            vec![
                "extra",
                "spec.junk",
                "spec.list[0].extra",
                "spec.template.spec.other",
                "spec.template.status",
                "spec.template.metadata.bogus",
            ]
        );
        assert_eq!(
            obj,
            json!({
                "apiVersion": "example.com/v1",
                "kind": "Thing",
                "metadata": {"name": "t", "weird": 1},
                "spec": {
                    "replicas": 1,
                    "list": [{"name": "a"}],
                    "template": {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {"name": "p"},
                        "spec": {"image": "i"}
                    }
                }
            })
        );
    }

    // --- defaulting -------------------------------------------------------

    #[test]
    fn defaults_nested_objects_and_array_items() {
        let s = schema(obj_schema(json!({"spec": {
            "type": "object",
            "default": {},
            "properties": {
                "replicas": {"type": "integer", "default": 1},
                "strategy": {
                    "type": "object",
                    "default": {"type": "RollingUpdate"},
                    "properties": {
                        "type": {"type": "string"},
                        "maxSurge": {"type": "integer", "default": 25}
                    }
                },
                "containers": {"type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "pull": {"type": "string", "default": "IfNotPresent"}
                    }
                }},
                "counts": {"type": "array", "items": {"type": "integer", "default": 7}},
                "maybe": {"type": "string", "nullable": true, "default": "m"},
                "never": {"type": "string", "default": "n"},
                "gone": {"type": "string"}
            }
        }})));
        let mut obj = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"}});
        s.apply_defaults(&mut obj);
        assert_eq!(
            obj["spec"],
            json!({
                "replicas": 1,
                "strategy": {"type": "RollingUpdate", "maxSurge": 25},
                "never": "n",
                "maybe": "m"
            })
        );
        let mut obj = json!({"spec": {
            "replicas": 3,
            "strategy": {"type": "Recreate"},
            "containers": [{"name": "a"}, {"name": "b", "pull": "Always"}],
            "counts": [1, null],
            "maybe": null,
            "never": null,
            "gone": null
        }});
        s.apply_defaults(&mut obj);
        assert_eq!(
            obj,
            json!({"spec": {
                "replicas": 3,
                "strategy": {"type": "Recreate", "maxSurge": 25},
                "containers": [{"name": "a", "pull": "IfNotPresent"}, {"name": "b", "pull": "Always"}],
                "counts": [1, 7],
                "maybe": null,
                "never": "n"
            }})
        );
        assert_eq!(s.validate(&obj), Vec::<Cause>::new());
    }

    #[test]
    fn defaults_upstream_cases() {
        // pkg/apiserver/schema/defaulting/algorithm_test.go
        let s = raw(json!({"properties": {
            "array": {"items": {"properties": {"a": {"default": "A"}, "b": {"default": "B"}}}},
            "object": {"properties": {"a": {"default": "N"}, "b": {"default": "O"}}},
            "additionalProperties": {"additionalProperties": {"properties": {
                "a": {"default": "alpha"}, "b": {"default": "beta"}
            }}},
            "foo": {"default": "bar"}
        }}));
        let mut obj = json!({
            "array": [{"a": 1}, {"b": 2}],
            "object": {"a": 1},
            "additionalProperties": {"x": {"a": 1}, "y": {"b": 2}}
        });
        apply_defaults_walk(&mut obj, &s.root);
        assert_eq!(
            obj,
            json!({
                "array": [{"a": 1, "b": "B"}, {"a": "A", "b": 2}],
                "object": {"a": 1, "b": "O"},
                "additionalProperties": {"x": {"a": 1, "b": "beta"}, "y": {"a": "alpha", "b": 2}},
                "foo": "bar"
            })
        );
        let s = raw(json!({"items": {"properties": {"a": {"default": "A"}}}}));
        let mut obj = json!([{}, {"a": 1}, {"a": 0}, {"a": 0.0}, {"a": ""}, {"a": null}, {"a": []}, {"a": {}}]);
        apply_defaults_walk(&mut obj, &s.root);
        assert_eq!(
            obj,
            json!([{"a": "A"}, {"a": 1}, {"a": 0}, {"a": 0.0}, {"a": ""}, {"a": "A"}, {"a": []}, {"a": {}}])
        );
        let s = raw(json!({"additionalProperties": {"nullable": true, "default": "A"}}));
        let mut obj = json!({"a": null});
        apply_defaults_walk(&mut obj, &s.root);
        assert_eq!(obj, json!({"a": null}));
        let s = raw(json!({"additionalProperties": {"default": "A"}}));
        apply_defaults_walk(&mut obj, &s.root);
        assert_eq!(obj, json!({"a": "A"}));
    }

    #[test]
    fn format_edge_cases() {
        for (f, good, bad) in [
            (
                "duration",
                &["1.5h", "-1s", ".5s", "1h2m3.5s", "0", "3 days"][..],
                &["1", "soon", ""][..],
            ),
            (
                "uri",
                &["mailto:a@b", "/path", "http://h:8080/p", "urn:x"],
                &["http://h:port/", "", "a b"],
            ),
            (
                "ipv4",
                &["010.0.0.1", "::ffff:1.2.3.4"],
                &["1.2.3.256", "::1"],
            ),
            (
                "cidr",
                &["10.0.0.0/08", "fe80::/64"],
                &["10.0.0.0", "10.0.0.0/x"],
            ),
            (
                "date",
                &["2000-02-29"],
                &["1900-02-29", "2024-1-01", "2024-0é-1"],
            ),
            (
                "datetime",
                &["2024-01-01T23:59:59.123+02:00", "2024-01-01t00:00:00z"],
                &["2024-01-01T24:00:00Z", "2024-01-01"],
            ),
            (
                "isbn",
                &["0-321-75104-3", "978-0321751041"],
                &["0321751044"],
            ),
            (
                "creditcard",
                &["4111 1111 1111 1111"],
                &["4111 1111 1111 1112"],
            ),
            ("ssn", &["123-45-6789"], &["123456789"]),
            (
                "mac",
                &["00-1A-2B-3C-4D-5E", "0000.5e00.5301"],
                &["00:1A:2B:3C:4D"],
            ),
            (
                "email",
                &["Name <a@b.c>", "\"x y\"@b.c"],
                &["a@", "@b", "a b@c"],
            ),
            ("hexcolor", &["#fff", "A0B0C0"], &["#ffff"]),
            ("rgbcolor", &["rgb(0, 128,255)"], &["rgb(256,0,0)"]),
            (
                "bsonobjectid",
                &["507f1f77bcf86cd799439011"],
                &["507f1f77bcf86cd79943901"],
            ),
        ] {
            for g in good {
                assert!(check_format(f, g), "{f}: {g} should pass");
            }
            for b in bad {
                assert!(!check_format(f, b), "{f}: {b} should fail");
            }
        }
    }

    // --- helpers ----------------------------------------------------------

    #[test]
    fn schema_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<StructuralSchema>();
    }

    #[test]
    fn go_formatting() {
        assert_eq!(go_float(1.0), "1");
        assert_eq!(go_float(0.5), "0.5");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(1e20), "100000000000000000000");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(
            go_json(&json!({"b": 1.0, "a": "<"})),
            "{\"a\":\"\\u003c\",\"b\":1}"
        );
        assert_eq!(go_quote("a\"b\n\u{1b}"), "\"a\\\"b\\n\\x1b\"");
    }

    #[test]
    fn go_regex_translation() {
        let ok = |p: &str, s: &str| compile_go_regex(p).map(|r| r.is_match(s));
        assert_eq!(ok(r"^\w+$", "héllo"), Ok(false));
        assert_eq!(ok(r"^\w+$", "hello_1"), Ok(true));
        assert_eq!(ok(r"^[\d.]+$", "1.2"), Ok(true));
        assert_eq!(ok(r"^[a&&b]$", "&"), Ok(true));
        assert_eq!(ok(r"^[[:alpha:]]+$", "abc"), Ok(true));
        assert_eq!(ok(r"^[]a]+$", "]a"), Ok(true));
        assert_eq!(ok(r"^[]]$", "]"), Ok(true));
        assert_eq!(ok(r"^\p{Greek}+$", "αβ"), Ok(true));
        assert_eq!(ok(r"^[\p{L}\d]+$", "é1"), Ok(true));
        assert_eq!(ok(r"^\x{41}$", "A"), Ok(true));
        assert_eq!(ok(r"^[[:^digit:]]$", "a"), Ok(true));
        assert_eq!(ok(r"^[a-z]{2,3}$", "abc"), Ok(true));
        assert_eq!(ok(r"^{x}$", "{x}"), Ok(true));
        assert_eq!(ok(r"^a{2}$", "aa"), Ok(true));
        assert_eq!(ok(r"\bfoo\b", "a foo b"), Ok(true));
        assert_eq!(ok(r"^\Qa.b\E$", "a.b"), Ok(true));
        assert_eq!(ok(r"^\Qa.b\E$", "axb"), Ok(false));
        assert!(compile_go_regex("+").is_err());
    }

    #[test]
    fn deep_schemas_are_refused() {
        let mut v = json!({"type": "string"});
        for _ in 0..(MAX_DEPTH + 5) {
            v = json!({"type": "object", "properties": {"a": v}});
        }
        let e = rejected(v);
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("must not be nested more than"), "{e:?}");
    }
}
