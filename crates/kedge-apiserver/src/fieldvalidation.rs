//! `fieldValidation=Ignore|Warn|Strict`: unknown and duplicate fields in
//! request bodies. As upstream, unknown fields are never stored: built-in
//! kinds drop what their schema does not declare, custom resources what
//! their structural schema prunes. `Warn` (the default) reports them in
//! `Warning` headers, `Strict` rejects the request with 400.

use kedge_api::patch_meta::{self, Schema, SchemaKind};
use kedge_api::registry::ResourceInfo;
use kedge_api::ApiError;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::crd::CustomResource;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(v: Option<&str>) -> Result<Self, ApiError> {
        match v {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other}. Supported values are Ignore, Warn, Strict"
            ))),
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Remove fields the schema does not declare; return their paths.
fn prune_builtin(obj: &mut Value, schema: Schema<'_>, path: &str, out: &mut Vec<String>) {
    match schema.kind() {
        SchemaKind::Object => {
            if schema.preserves_unknown_fields() {
                return;
            }
            let Some(m) = obj.as_object_mut() else { return };
            let unknown: Vec<String> = m
                .keys()
                .filter(|k| !schema.has_property(k))
                .cloned()
                .collect();
            for k in unknown {
                m.remove(&k);
                out.push(join(path, &k));
            }
            for (k, v) in m.iter_mut() {
                if let Some(s) = schema.field(k) {
                    prune_builtin(v, s, &join(path, k), out);
                }
            }
        }
        SchemaKind::List => {
            let (Some(items), Some(arr)) = (schema.items(), obj.as_array_mut()) else {
                return;
            };
            for (i, v) in arr.iter_mut().enumerate() {
                prune_builtin(v, items, &format!("{path}[{i}]"), out);
            }
        }
        SchemaKind::Map => {
            let (Some(values), Some(m)) = (schema.values(), obj.as_object_mut()) else {
                return;
            };
            for (k, v) in m.iter_mut() {
                prune_builtin(v, values, &join(path, k), out);
            }
        }
        _ => {}
    }
}

/// Drop unknown fields from a request object and report them as `fv`
/// asks: warnings to send back, or a 400.
pub fn unknown_fields(
    ri: &ResourceInfo,
    cr: Option<&CustomResource>,
    obj: &mut Value,
    fv: FieldValidation,
) -> Result<Vec<String>, ApiError> {
    unknown_and_duplicate(ri, cr, obj, Vec::new(), fv)
}

/// Unknown fields of `obj` and the duplicate fields already found in its
/// body, reported together as upstream does.
pub fn unknown_and_duplicate(
    ri: &ResourceInfo,
    cr: Option<&CustomResource>,
    obj: &mut Value,
    duplicates: Vec<String>,
    fv: FieldValidation,
) -> Result<Vec<String>, ApiError> {
    let mut paths = Vec::new();
    match cr {
        Some(cr) => {
            if let Some(schema) = &cr.schema {
                paths = schema.prune(obj);
            }
            // Root metadata is ObjectMeta whatever the schema says.
            if let (Some(md), Some(om)) = (
                obj.get_mut("metadata"),
                patch_meta::definition("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
            ) {
                prune_builtin(md, om, "metadata", &mut paths);
            }
        }
        None => {
            if let Some(schema) = patch_meta::root(ri.group, ri.version, ri.kind) {
                prune_builtin(obj, schema, "", &mut paths);
            }
        }
    }
    let mut problems: Vec<String> = paths
        .into_iter()
        .map(|p| format!("unknown field \"{p}\""))
        .collect();
    problems.extend(duplicates);
    report(ri, problems, fv)
}

fn report(
    ri: &ResourceInfo,
    problems: Vec<String>,
    fv: FieldValidation,
) -> Result<Vec<String>, ApiError> {
    if problems.is_empty() || fv == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    if fv == FieldValidation::Strict {
        return Err(ApiError::bad_request(format!(
            "{kind} in version \"{v}\" cannot be handled as a {kind}: strict decoding error: {}",
            problems.join(", "),
            kind = ri.kind,
            v = ri.version,
        )));
    }
    Ok(problems)
}

/// Duplicate keys in a YAML body, as upstream's YAML decoder words them:
/// `line 11: key "foo" already set in map` (the line of the second key).
pub fn yaml_duplicate(body: &[u8]) -> Option<String> {
    let e = serde_yaml::from_slice::<serde_yaml::Value>(body).err()?;
    let msg = e.to_string();
    let key = msg
        .split("duplicate entry with key \"")
        .nth(1)?
        .split('"')
        .next()?
        .to_string();
    // The error's location is where the mapping starts: find the key's
    // second occurrence at that indentation within the mapping.
    let (start, column) = e.location().map(|l| (l.line(), l.column()))?;
    let text = String::from_utf8_lossy(body);
    let indent = column.saturating_sub(1);
    let mut seen = 0;
    let mut line = start;
    for (i, l) in text.lines().enumerate().skip(start.saturating_sub(1)) {
        let trimmed = l.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let at = l.len() - trimmed.len();
        if at < indent {
            break;
        }
        if at == indent
            && (trimmed.starts_with(&format!("{key}:"))
                || trimmed.starts_with(&format!("\"{key}\":")))
        {
            seen += 1;
            if seen == 2 {
                line = i + 1;
                break;
            }
        }
    }
    Some(format!("line {line}: key \"{key}\" already set in map"))
}

/// Duplicate keys in a JSON body (which the JSON decoder would silently
/// collapse), as `duplicate field "a.b"` messages, to pass on to
/// [`unknown_and_duplicate`].
pub fn duplicate_fields(body: &[u8], is_json: bool, fv: FieldValidation) -> Vec<String> {
    if !is_json || fv == FieldValidation::Ignore {
        return Vec::new();
    }
    let mut found = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    // A malformed body is reported by the real decode.
    let _ = Walk {
        path: String::new(),
        found: &mut found,
        depth: 0,
    }
    .deserialize(&mut de);
    found
        .into_iter()
        .map(|p| format!("duplicate field \"{p}\""))
        .collect()
}

struct Walk<'a> {
    path: String,
    found: &'a mut Vec<String>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            let path = format!("{}[{i}]", self.path);
            let next = Walk {
                path,
                found: &mut *self.found,
                depth: self.depth + 1,
            };
            if self.depth > 64 {
                return Ok(());
            }
            match seq.next_element_seed(next)? {
                Some(()) => i += 1,
                None => return Ok(()),
            }
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: Map<String, Value> = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let path = join(&self.path, &k);
            if seen.insert(k, Value::Null).is_some() {
                self.found.push(path.clone());
            }
            if self.depth > 64 {
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            }
            map.next_value_seed(Walk {
                path,
                found: &mut *self.found,
                depth: self.depth + 1,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pods() -> &'static ResourceInfo {
        kedge_api::registry::lookup("", "v1", "pods").expect("pods")
    }

    #[test]
    fn unknown_fields_dropped_and_reported() {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "bogus": 1},
            "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolcy": "Always"}], "nodeSelector": {"any-key": "ok"}}});
        let w = unknown_fields(pods(), None, &mut p, FieldValidation::Warn).expect("warn");
        assert_eq!(
            w,
            vec![
                "unknown field \"metadata.bogus\"",
                "unknown field \"spec.containers[0].imagePullPolcy\""
            ]
        );
        assert!(p["spec"]["containers"][0].get("imagePullPolcy").is_none());
        assert_eq!(p["spec"]["nodeSelector"]["any-key"], "ok");
        let mut p2 = json!({"spec": {"bogus": true}});
        let e = unknown_fields(pods(), None, &mut p2, FieldValidation::Strict).expect_err("strict");
        assert_eq!(e.code, 400);
        assert!(
            e.message
                .contains("strict decoding error: unknown field \"spec.bogus\""),
            "{}",
            e.message
        );
        let mut p3 = json!({"spec": {"bogus": true}});
        assert!(
            unknown_fields(pods(), None, &mut p3, FieldValidation::Ignore)
                .expect("ignore")
                .is_empty()
        );
        assert!(p3["spec"].get("bogus").is_none());
    }

    #[test]
    fn yaml_duplicates_name_the_second_line() {
        let body = b"x: 1\nspec:\n  foo: 1\n  bar: 2\n  foo: 3\n";
        assert_eq!(
            yaml_duplicate(body).as_deref(),
            Some("line 5: key \"foo\" already set in map")
        );
        assert_eq!(yaml_duplicate(b"a: 1\n"), None);
        let body = b"\napiVersion: a/v1\nspec:\n  unknown: 1\n  foo: 1\n  foo: 2\n";
        assert_eq!(
            yaml_duplicate(body).as_deref(),
            Some("line 6: key \"foo\" already set in map")
        );
    }

    #[test]
    fn duplicates_found_with_paths() {
        let body = br#"{"metadata": {"name": "a", "name": "b"}, "spec": {"containers": [{"name": "c", "name": "d"}]}}"#;
        let w = duplicate_fields(body, true, FieldValidation::Warn);
        assert_eq!(
            w,
            vec![
                "duplicate field \"metadata.name\"",
                "duplicate field \"spec.containers[0].name\""
            ]
        );
        let mut obj: Value = serde_json::from_slice(body).expect("json");
        obj["spec"]["bogus"] = serde_json::json!(1);
        let e = unknown_and_duplicate(pods(), None, &mut obj, w, FieldValidation::Strict)
            .expect_err("strict");
        assert!(
            e.message
                .contains("unknown field \"spec.bogus\", duplicate field \"metadata.name\""),
            "{}",
            e.message
        );
    }
}
