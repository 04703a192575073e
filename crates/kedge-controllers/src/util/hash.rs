//! `pod-template-hash` (upstream `controller.ComputeHash`): FNV-32a over the
//! pod template, then the collision count as 4 little-endian bytes, the
//! decimal sum rendered with `rand.SafeEncodeString`.
//!
//! Upstream feeds the hasher a `spew` dump of the Go struct; kedge feeds it
//! the template's canonical JSON (keys sorted, empty values dropped, the
//! `pod-template-hash` label removed), so the hash is stable across
//! defaulting round trips but not byte-identical to upstream's names.

use serde_json::{Map, Value};

/// The label a Deployment adds to its ReplicaSets, their selectors and pods.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// FNV-1a, 32 bits.
pub fn fnv32a(bytes: &[u8], mut h: u32) -> u32 {
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// `k8s.io/apimachinery/pkg/util/rand.SafeEncodeString`: each byte picks
/// from an alphabet without vowels (no bad words) nor confusable characters.
pub fn safe_encode_string(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// The template with empty values (null, `{}`, `[]`, `""` is kept) dropped
/// recursively, as `apiequality.Semantic.DeepEqual` treats nil and empty
/// alike.
pub fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, v) in o {
                let n = normalize(v);
                let empty = match &n {
                    Value::Null => true,
                    Value::Object(m) => m.is_empty(),
                    Value::Array(a) => a.is_empty(),
                    _ => false,
                };
                if !empty {
                    out.insert(k.clone(), n);
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

/// The template without the `pod-template-hash` label, normalized.
fn without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    normalize(&t)
}

/// `ComputeHash(template, collisionCount)`.
pub fn compute_hash(template: &Value, collision_count: Option<i32>) -> String {
    let mut bytes = Vec::new();
    canonical_json(&without_hash(template), &mut bytes);
    hash_with_collisions(&bytes, collision_count)
}

/// FNV-32a of `bytes`, then of the collision count as 4 little-endian
/// bytes when there is one, rendered with [`safe_encode_string`]: the tail
/// of `ComputeHash`, shared with the ControllerRevision names of
/// [`crate::daemonset::history`].
pub fn hash_with_collisions(bytes: &[u8], collision_count: Option<i32>) -> String {
    let mut h = fnv32a(bytes, FNV_OFFSET);
    if let Some(c) = collision_count {
        h = fnv32a(&c.to_le_bytes(), h);
    }
    safe_encode_string(&h.to_string())
}

/// JSON with object keys sorted, whatever order the map keeps them in.
fn canonical_json(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                canonical_json(&o[k], out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(x, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

/// `EqualIgnoreHash`: two templates equal but for `pod-template-hash`.
pub fn equal_ignore_hash(a: &Value, b: &Value) -> bool {
    without_hash(a) == without_hash(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fnv32a_matches_the_reference_vectors() {
        assert_eq!(fnv32a(b"", FNV_OFFSET), 0x811c9dc5);
        assert_eq!(fnv32a(b"a", FNV_OFFSET), 0xe40c292c);
        assert_eq!(fnv32a(b"foobar", FNV_OFFSET), 0xbf9cf968);
    }

    #[test]
    fn safe_encode_string_as_upstream() {
        // '0' is byte 48: 48 % 27 = 21 -> '4'; '9' is 57 % 27 = 3 -> 'f'.
        assert_eq!(safe_encode_string("0"), "4");
        assert_eq!(safe_encode_string("9"), "f");
        assert_eq!(safe_encode_string("1234"), "5678");
    }

    #[test]
    fn hashes_stay_what_is_already_stored() {
        // ReplicaSet names and pod-template-hash labels written by earlier
        // releases carry these hashes.
        let t = json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}});
        assert_eq!(compute_hash(&t, None), "67f786fd6f");
        assert_eq!(compute_hash(&t, Some(1)), "55c674fdf6");
        assert_eq!(compute_hash(&t, Some(-3)), "57bfdd5f7f");
    }

    #[test]
    fn hash_ignores_the_hash_label_and_empty_values_but_not_content() {
        let a = json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1", "resources": {}}]}});
        let b = json!({"metadata": {"labels": {"app": "web", "pod-template-hash": "xyz"}},
            "spec": {"containers": [{"image": "busybox:1", "name": "c"}], "volumes": []}});
        let c = json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox:2"}]}});
        assert_eq!(compute_hash(&a, None), compute_hash(&b, None));
        assert!(equal_ignore_hash(&a, &b));
        assert_ne!(compute_hash(&a, None), compute_hash(&c, None));
        assert!(!equal_ignore_hash(&a, &c));
        // The collision count changes the hash, and 0 differs from none.
        assert_ne!(compute_hash(&a, None), compute_hash(&a, Some(0)));
        assert_ne!(compute_hash(&a, Some(0)), compute_hash(&a, Some(1)));
        let h = compute_hash(&a, Some(1));
        assert!(!h.is_empty() && h.len() <= 10);
        assert!(h
            .bytes()
            .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)));
    }
}
