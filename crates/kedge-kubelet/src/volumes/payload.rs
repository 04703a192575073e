//! What a configMap, secret or downwardAPI source projects into a volume:
//! upstream's `configmap.MakePayload`, `secret.MakePayload` and
//! `downwardapi.CollectData`, over raw JSON objects.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::Value;

use crate::podspec::Quantity;

/// One file of a volume (`volumeutil.FileProjection`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
    /// Owner of the file when set (projected service account tokens).
    pub fs_user: Option<u32>,
}

/// Volume-relative path → file.
pub(crate) type Payload = BTreeMap<String, FileProjection>;

/// The mode API fields hold (int32, validated to 0..=0777 by the API
/// server); `None` when unset or out of range.
pub(crate) fn mode_field(v: Option<&Value>) -> Option<u32> {
    v.and_then(Value::as_i64)
        .filter(|m| (0..=0o7777).contains(m))
        .map(|m| m as u32)
}

/// `utilerrors.NewAggregate(errs).Error()`: one message alone, several in
/// brackets.
pub(crate) fn aggregate(errs: &[String]) -> String {
    match errs {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

fn str_map(obj: Option<&Value>, key: &str) -> BTreeMap<String, String> {
    obj.and_then(|o| o.get(key))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn b64_map(
    obj: Option<&Value>,
    key: &str,
    what: &str,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    str_map(obj, key)
        .into_iter()
        .map(|(k, v)| {
            base64::engine::general_purpose::STANDARD
                .decode(v.as_bytes())
                .map(|d| (k.clone(), d))
                .map_err(|e| format!("{what} key {k} is not valid base64: {e}"))
        })
        .collect()
}

fn key_to_paths(
    items: &[Value],
    default_mode: u32,
    optional: bool,
    lookup: impl Fn(&str) -> Option<Vec<u8>>,
    missing: impl Fn(&str) -> String,
) -> Result<Payload, String> {
    let mut payload = Payload::new();
    for ktp in items {
        let key = ktp.get("key").and_then(Value::as_str).unwrap_or("");
        let path = ktp.get("path").and_then(Value::as_str).unwrap_or("");
        let Some(data) = lookup(key) else {
            if optional {
                continue;
            }
            return Err(missing(key));
        };
        let mode = mode_field(ktp.get("mode")).unwrap_or(default_mode);
        payload.insert(
            path.to_string(),
            FileProjection {
                data,
                mode,
                fs_user: None,
            },
        );
    }
    Ok(payload)
}

/// `configmap.MakePayload`: every key of `data` and `binaryData` under its
/// own name, or the listed `items` (key → path, mode).
pub(crate) fn config_map_payload(
    items: &[Value],
    config_map: Option<&Value>,
    default_mode: u32,
    optional: bool,
) -> Result<Payload, String> {
    let data = str_map(config_map, "data");
    let binary = b64_map(config_map, "binaryData", "configmap binaryData")?;
    if items.is_empty() {
        let mut payload = Payload::new();
        let all = data
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .chain(binary);
        for (k, data) in all {
            payload.insert(
                k,
                FileProjection {
                    data,
                    mode: default_mode,
                    fs_user: None,
                },
            );
        }
        return Ok(payload);
    }
    key_to_paths(
        items,
        default_mode,
        optional,
        |k| {
            data.get(k)
                .map(|s| s.clone().into_bytes())
                .or_else(|| binary.get(k).cloned())
        },
        |k| format!("configmap references non-existent config key: {k}"),
    )
}

/// `secret.MakePayload`: like ConfigMaps, over the decoded `data`.
pub(crate) fn secret_payload(
    items: &[Value],
    secret: Option<&Value>,
    default_mode: u32,
    optional: bool,
) -> Result<Payload, String> {
    let data = b64_map(secret, "data", "secret data")?;
    if items.is_empty() {
        return Ok(data
            .into_iter()
            .map(|(k, data)| {
                (
                    k,
                    FileProjection {
                        data,
                        mode: default_mode,
                        fs_user: None,
                    },
                )
            })
            .collect());
    }
    key_to_paths(
        items,
        default_mode,
        optional,
        |k| data.get(k).cloned(),
        |k| format!("references non-existent secret key: {k}"),
    )
}

/// Go's `strconv.Quote` (what `%q` prints): printable characters as they
/// are, the rest escaped.
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
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if !go_printable(c) => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `unicode.IsPrint` for what label and annotation values hold: everything
/// but control and format characters, non-ASCII spaces, line/paragraph
/// separators and private-use code points.
fn go_printable(c: char) -> bool {
    let u = c as u32;
    !(c.is_control()
        || matches!(u, 0xa0 | 0xad | 0x1680 | 0x180e | 0x2000..=0x200f | 0x2028..=0x202f
            | 0x205f..=0x206f | 0x3000 | 0xfeff | 0xfff9..=0xfffb | 0xe000..=0xf8ff
            | 0xf0000..=0x10ffff))
}

/// `fieldpath.FormatMap`: sorted `key="value"` lines.
pub(crate) fn format_map(m: Option<&Value>) -> String {
    let Some(obj) = m.and_then(Value::as_object) else {
        return String::new();
    };
    let sorted: BTreeMap<&String, &Value> = obj.iter().collect();
    sorted
        .iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v.as_str().unwrap_or(""))))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `validation.IsQualifiedName`, reduced to a yes/no with upstream's
/// summary of the rule.
fn qualified_name_errors(s: &str) -> Option<String> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.len() <= 63
            && n.starts_with(|c: char| c.is_ascii_alphanumeric())
            && n.ends_with(|c: char| c.is_ascii_alphanumeric())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let prefix_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && l.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && l.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
    };
    let ok = match s.split_once('/') {
        Some((p, n)) => prefix_ok(p) && name_ok(n),
        None => name_ok(s),
    };
    (!ok).then(|| {
        "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character".to_string()
    })
}

/// `fieldpath.ExtractFieldPathAsString` on a pod: what a downwardAPI
/// volume's `fieldRef` may read.
pub(crate) fn extract_field_path(pod: &Value, field_path: &str) -> Result<String, String> {
    let meta = |k: &str| {
        pod.pointer(&format!("/metadata/{k}"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    if let Some(s) = field_path.strip_suffix("']") {
        if let Some((path, subscript)) = s.split_once("['").filter(|(p, _)| !p.is_empty()) {
            let (map, key) = match path {
                "metadata.annotations" => ("annotations", subscript.to_lowercase()),
                "metadata.labels" => ("labels", subscript.to_string()),
                _ => {
                    return Err(format!(
                        "fieldPath {field_path:?} does not support subscript"
                    ))
                }
            };
            if let Some(e) = qualified_name_errors(&key) {
                return Err(format!("invalid key subscript in {field_path}: {e}"));
            }
            return Ok(pod
                .get("metadata")
                .and_then(|m| m.get(map))
                .and_then(|m| m.get(subscript))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string());
        }
    }
    Ok(match field_path {
        "metadata.annotations" => format_map(pod.pointer("/metadata/annotations")),
        "metadata.labels" => format_map(pod.pointer("/metadata/labels")),
        "metadata.name" => meta("name"),
        "metadata.namespace" => meta("namespace"),
        "metadata.uid" => meta("uid"),
        other => return Err(format!("unsupported fieldPath: {other}")),
    })
}

fn quantity(v: &Value) -> Option<Quantity> {
    match v {
        Value::String(s) => Quantity::parse(s).ok(),
        Value::Number(n) => Quantity::parse(&n.to_string()).ok(),
        _ => None,
    }
}

/// `int64(math.Ceil(float64(a) / float64(b)))`.
fn ceil_ratio(a: i64, b: i64) -> i64 {
    if b == 0 {
        return 0;
    }
    (a as f64 / b as f64).ceil() as i64
}

/// `resource.ExtractResourceValueByContainerNameAndNodeAllocatable`.
pub(crate) fn extract_resource_value(
    fs: &Value,
    pod: &Value,
    node_allocatable: &BTreeMap<String, Quantity>,
) -> Result<String, String> {
    let container_name = fs
        .get("containerName")
        .and_then(Value::as_str)
        .unwrap_or("");
    let named = |list: &str| {
        pod.pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.get("name").and_then(Value::as_str) == Some(container_name))
            })
    };
    let container = named("containers")
        .or_else(|| named("initContainers"))
        .ok_or_else(|| format!("container {container_name} not found"))?;
    let one = Quantity::parse("1").map_err(|e| e.to_string())?;
    let divisor = match fs.get("divisor").filter(|d| !d.is_null()) {
        None => one,
        Some(d) => {
            let q = quantity(d).ok_or_else(|| format!("invalid divisor {d}"))?;
            if q.is_zero() {
                one
            } else {
                q
            }
        }
    };
    let resource = fs.get("resource").and_then(Value::as_str).unwrap_or("");
    let get = |kind: &str, name: &str| -> Option<Quantity> {
        container
            .pointer(&format!("/resources/{kind}/{name}"))
            .and_then(quantity)
    };
    // MergeContainerResourceLimits: unset or zero cpu, memory and
    // ephemeral-storage limits default to node allocatable.
    let limit = |name: &str| -> Option<Quantity> {
        match get("limits", name) {
            Some(q) if !q.is_zero() => Some(q),
            other => {
                if matches!(name, "cpu" | "memory" | "ephemeral-storage") {
                    node_allocatable.get(name).copied().or(other)
                } else {
                    other
                }
            }
        }
    };
    let zero = Quantity::parse("0").map_err(|e| e.to_string())?;
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource : {resource}"))?;
    let value = match kind {
        "limits" => limit(name),
        "requests" => get("requests", name),
        _ => return Err(format!("unsupported container resource : {resource}")),
    }
    .unwrap_or(zero);
    let n = match name {
        "cpu" => ceil_ratio(value.milli_value(), divisor.milli_value()),
        "memory" | "ephemeral-storage" => ceil_ratio(value.value(), divisor.value()),
        n if n.starts_with("hugepages-") => ceil_ratio(value.value(), divisor.value()),
        _ => return Err(format!("unsupported container resource : {resource}")),
    };
    Ok(n.to_string())
}

/// `downwardapi.CollectData`: one file per item, from a `fieldRef` or a
/// `resourceFieldRef`; every failing item is reported.
pub(crate) fn downward_api_payload(
    items: &[Value],
    pod: &Value,
    default_mode: u32,
    node_allocatable: &BTreeMap<String, Quantity>,
) -> Result<Payload, String> {
    let mut errs = Vec::new();
    let mut payload = Payload::new();
    for item in items {
        let path = item.get("path").and_then(Value::as_str).unwrap_or("");
        let mode = mode_field(item.get("mode")).unwrap_or(default_mode);
        let mut data = Vec::new();
        if let Some(fr) = item.get("fieldRef").filter(|v| !v.is_null()) {
            let fp = fr.get("fieldPath").and_then(Value::as_str).unwrap_or("");
            match extract_field_path(pod, fp) {
                Ok(v) => data = v.into_bytes(),
                Err(e) => errs.push(e),
            }
        } else if let Some(rf) = item.get("resourceFieldRef").filter(|v| !v.is_null()) {
            match extract_resource_value(rf, pod, node_allocatable) {
                Ok(v) => data = v.into_bytes(),
                Err(e) => errs.push(e),
            }
        }
        payload.insert(
            super::atomic_writer::clean_path(path),
            FileProjection {
                data,
                mode,
                fs_user: None,
            },
        );
    }
    if errs.is_empty() {
        Ok(payload)
    } else {
        Err(aggregate(&errs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(p: &Payload, k: &str) -> String {
        String::from_utf8(p[k].data.clone()).unwrap()
    }

    #[test]
    fn config_map_all_keys_and_items() {
        let cm = json!({"data": {"a": "1", "b": "2"}, "binaryData": {"bin": "AAEC"}});
        let p = config_map_payload(&[], Some(&cm), 0o644, false).unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["a", "b", "bin"]);
        assert_eq!(p["bin"].data, vec![0, 1, 2]);
        assert!(p.values().all(|f| f.mode == 0o644));

        let items = [
            json!({"key": "a", "path": "dir/x"}),
            json!({"key": "bin", "path": "y", "mode": 0o400}),
        ];
        let p = config_map_payload(&items, Some(&cm), 0o644, false).unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["dir/x", "y"]);
        assert_eq!(text(&p, "dir/x"), "1");
        assert_eq!(p["dir/x"].mode, 0o644);
        assert_eq!(p["y"].mode, 0o400);

        let missing = [json!({"key": "nope", "path": "n"})];
        assert_eq!(
            config_map_payload(&missing, Some(&cm), 0o644, false).unwrap_err(),
            "configmap references non-existent config key: nope"
        );
        assert!(config_map_payload(&missing, Some(&cm), 0o644, true)
            .unwrap()
            .is_empty());
        // An optional ConfigMap that does not exist projects nothing.
        assert!(config_map_payload(&[], None, 0o644, true)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn secret_keys_are_decoded() {
        let s = json!({"data": {"user": "YWRtaW4=", "pw": "c2VjcmV0"}});
        let p = secret_payload(&[], Some(&s), 0o600, false).unwrap();
        assert_eq!(text(&p, "user"), "admin");
        assert_eq!(p["pw"].mode, 0o600);
        let items = [json!({"key": "missing", "path": "m"})];
        assert_eq!(
            secret_payload(&items, Some(&s), 0o644, false).unwrap_err(),
            "references non-existent secret key: missing"
        );
        let bad = json!({"data": {"k": "!!!"}});
        assert!(secret_payload(&[], Some(&bad), 0o644, false)
            .unwrap_err()
            .contains("not valid base64"));
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote("plain"), "\"plain\"");
        assert_eq!(go_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(go_quote("l1\nl2\t\u{1}"), "\"l1\\nl2\\t\\x01\"");
        assert_eq!(go_quote("héllo ☃"), "\"héllo ☃\"");
        assert_eq!(go_quote("\u{a0}\u{85}"), "\"\\u00a0\\u0085\"");
    }

    fn pod() -> Value {
        json!({
            "metadata": {
                "name": "p", "namespace": "ns", "uid": "u-1",
                "labels": {"zone": "b", "app": "web"},
                "annotations": {"note": "say \"hi\"\nbye", "Key.Upper": "v"},
            },
            "spec": {
                "containers": [{
                    "name": "c",
                    "resources": {
                        "requests": {"cpu": "250m", "memory": "64Mi"},
                        "limits": {"memory": "128Mi"},
                    },
                }],
                "initContainers": [{"name": "init", "resources": {"limits": {"cpu": "2"}}}],
            },
        })
    }

    #[test]
    fn field_paths() {
        let p = pod();
        assert_eq!(
            extract_field_path(&p, "metadata.labels").unwrap(),
            "app=\"web\"\nzone=\"b\""
        );
        assert_eq!(
            extract_field_path(&p, "metadata.annotations").unwrap(),
            "Key.Upper=\"v\"\nnote=\"say \\\"hi\\\"\\nbye\""
        );
        assert_eq!(
            extract_field_path(&p, "metadata.labels['zone']").unwrap(),
            "b"
        );
        assert_eq!(
            extract_field_path(&p, "metadata.labels['none']").unwrap(),
            ""
        );
        assert_eq!(
            extract_field_path(&p, "metadata.annotations['Key.Upper']").unwrap(),
            "v"
        );
        assert_eq!(extract_field_path(&p, "metadata.uid").unwrap(), "u-1");
        assert_eq!(extract_field_path(&p, "metadata.namespace").unwrap(), "ns");
        assert_eq!(
            extract_field_path(&p, "spec.nodeName").unwrap_err(),
            "unsupported fieldPath: spec.nodeName"
        );
        assert!(extract_field_path(&p, "metadata.labels['bad key']")
            .unwrap_err()
            .starts_with("invalid key subscript in metadata.labels['bad key']"));
        assert_eq!(
            extract_field_path(&p, "metadata.name['x']").unwrap_err(),
            "fieldPath \"metadata.name['x']\" does not support subscript"
        );
    }

    #[test]
    fn resource_values_with_divisors_and_allocatable() {
        let p = pod();
        let mut alloc = BTreeMap::new();
        alloc.insert("cpu".to_string(), Quantity::parse("4").unwrap());
        alloc.insert("memory".to_string(), Quantity::parse("8Gi").unwrap());
        let v = |res: &str, container: &str, divisor: Option<&str>| {
            let mut fs = json!({"resource": res, "containerName": container});
            if let Some(d) = divisor {
                fs["divisor"] = json!(d);
            }
            extract_resource_value(&fs, &p, &alloc)
        };
        assert_eq!(v("requests.cpu", "c", None).unwrap(), "1");
        assert_eq!(v("requests.cpu", "c", Some("1m")).unwrap(), "250");
        assert_eq!(v("limits.cpu", "c", None).unwrap(), "4");
        assert_eq!(v("limits.memory", "c", Some("1Mi")).unwrap(), "128");
        assert_eq!(v("requests.memory", "c", None).unwrap(), "67108864");
        assert_eq!(v("limits.cpu", "init", Some("1m")).unwrap(), "2000");
        assert_eq!(v("limits.memory", "init", Some("1Gi")).unwrap(), "8");
        assert_eq!(v("requests.ephemeral-storage", "c", None).unwrap(), "0");
        assert_eq!(
            v("limits.cpu", "other", None).unwrap_err(),
            "container other not found"
        );
        assert_eq!(
            v("limits.gpu", "c", None).unwrap_err(),
            "unsupported container resource : limits.gpu"
        );
    }

    #[test]
    fn downward_api_items_and_errors() {
        let p = pod();
        let items = [
            json!({"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}),
            json!({"path": "./sub/../name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o400}),
            json!({"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "requests.cpu", "divisor": "1m"}}),
        ];
        let out = downward_api_payload(&items, &p, 0o644, &BTreeMap::new()).unwrap();
        assert_eq!(out.keys().collect::<Vec<_>>(), ["cpu", "labels", "name"]);
        assert_eq!(text(&out, "cpu"), "250");
        assert_eq!(out["name"].mode, 0o400);
        assert_eq!(out["labels"].mode, 0o644);
        let bad = [
            json!({"path": "a", "fieldRef": {"fieldPath": "status.podIP"}}),
            json!({"path": "b", "resourceFieldRef": {"containerName": "x", "resource": "limits.cpu"}}),
        ];
        assert_eq!(
            downward_api_payload(&bad, &p, 0o644, &BTreeMap::new()).unwrap_err(),
            "[unsupported fieldPath: status.podIP, container x not found]"
        );
    }
}
