//! Name, label-key and label-value validation with upstream's exact messages.
//!
//! Every `is_*` function returns the list of error messages that
//! `k8s.io/apimachinery/pkg/util/validation` (Kubernetes 1.33) returns for the
//! same input: empty means valid. The texts, including the
//! `(e.g. 'my-name',  or ..., regex used for validation is '...')` suffixes,
//! are byte-for-byte upstream's, because clients and tests match on them.
//!
//! The regular expressions are implemented as small hand-written matchers;
//! they are all "first and last character from one class, middle from a
//! wider class", which a scan over the bytes decides exactly. Lengths are in
//! bytes, as Go's `len` counts them.

use serde_json::{Map, Value};

use crate::status::Cause;

/// Longest DNS-1123 subdomain (RFC 1123).
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// Longest DNS-1123 label (RFC 1123).
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Longest name part of a qualified name (label or annotation key).
pub const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
/// Longest label value.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// `must be no more than N characters` (upstream `MaxLenError`).
pub fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// `must be non-empty` (upstream `EmptyError`).
pub fn empty_error() -> String {
    "must be non-empty".to_string()
}

/// Upstream `RegexError`: the message, the examples and the regex, with the
/// examples joined exactly as Go joins them (`'a',  or 'b', `).
pub fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut out = String::with_capacity(msg.len() + fmt.len() + 64);
    out.push_str(msg);
    out.push_str(" (e.g. ");
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push('\'');
        out.push_str(example);
        out.push_str("', ");
    }
    out.push_str("regex used for validation is '");
    out.push_str(fmt);
    out.push_str("')");
    out
}

/// `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
fn matches_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match (b.first(), b.last()) {
        (Some(&first), Some(&last)) => {
            edge(first) && edge(last) && b.iter().all(|&c| edge(c) || c == b'-')
        }
        _ => false,
    }
}

/// `^label(\.label)*$` with `label` as in [`matches_dns1123_label`].
fn matches_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(matches_dns1123_label)
}

/// `^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`
fn matches_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter()
                    .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// A DNS subdomain (RFC 1123): most object names. At most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(s) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// A DNS label (RFC 1123): namespaces, services, container names. At most 63
/// characters.
pub fn is_dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(s) {
        if matches_dns1123_subdomain(s) {
            // A valid subdomain that is not a valid label has dots.
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_ERR_MSG,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// A name that can be one segment of a URL path (upstream
/// `apimachinery/pkg/api/validation/path.IsValidPathSegmentName`): not `.` or
/// `..`, and no `/` or `%`.
pub fn is_path_segment_name(s: &str) -> Vec<String> {
    for illegal in [".", ".."] {
        if s == illegal {
            return vec![format!("may not be '{illegal}'")];
        }
    }
    let mut errs = Vec::new();
    for illegal in ['/', '%'] {
        if s.contains(illegal) {
            errs.push(format!("may not contain '{illegal}'"));
        }
    }
    errs
}

/// A qualified name, the syntax of label and annotation keys: an optional DNS
/// subdomain prefix and `/`, then a name part of at most 63 characters.
pub fn is_qualified_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push(format!("prefix part {}", empty_error()));
            } else {
                for msg in is_dns1123_subdomain(prefix) {
                    errs.push(format!("prefix part {msg}"));
                }
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_ERR_MSG,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push(format!("name part {}", empty_error()));
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(format!(
            "name part {}",
            max_len_error(QUALIFIED_NAME_MAX_LENGTH)
        ));
    }
    if !matches_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// A label value: empty, or a qualified name part of at most 63 characters.
pub fn is_valid_label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !s.is_empty() && !matches_qualified_name_part(s) {
        errs.push(regex_error(
            LABEL_VALUE_ERR_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// Validates a `labels` map the way upstream `ValidateLabels` does, for an
/// object (`field` is usually `"metadata.labels"`) or any other label map
/// (`"spec.template.metadata.labels"`, `"spec.selector"`...).
///
/// Each bad key gives one `Invalid` cause per message with the key as the
/// value, each bad value one per message with the value; all causes name the
/// map itself as the field, as upstream does. A value that is not a JSON
/// string (which the typed upstream API cannot even decode) gives one cause
/// `label values must be strings`. Order follows the map's order.
pub fn validate_labels(labels: &Map<String, Value>, field: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (key, value) in labels {
        for msg in is_qualified_name(key) {
            causes.push(Cause::invalid(field, &Value::String(key.clone()), &msg));
        }
        match value.as_str() {
            Some(v) => {
                for msg in is_valid_label_value(v) {
                    causes.push(Cause::invalid(field, value, &msg));
                }
            }
            None => causes.push(Cause::invalid(field, value, "label values must be strings")),
        }
    }
    causes
}

/// [`validate_labels`] for an object's `metadata.labels`.
pub fn validate_object_meta_labels(labels: &Map<String, Value>) -> Vec<Cause> {
    validate_labels(labels, "metadata.labels")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SUBDOMAIN_REGEX_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    const LABEL_REGEX_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
    const NAME_PART_REGEX_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const LABEL_VALUE_REGEX_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    #[test]
    fn dns1123_label_accepts_upstream_good_examples() {
        for s in [
            "a",
            "ab",
            "abc",
            "a1",
            "a-1",
            "a--1--2--b",
            "0",
            "01",
            "012",
            "1a",
            "1-a",
            "1--a--b--2",
            &"a".repeat(63),
        ] {
            assert!(is_dns1123_label(s).is_empty(), "{s} should be valid");
        }
    }

    #[test]
    fn dns1123_label_rejects_upstream_bad_examples() {
        for s in [
            "", "A", "ABC", "aBc", "A1", "A-1", "1-A", "-", "a-", "-a", "1-", "-1", "_", "a_",
            "_a", "a_b", "1_", "_1", "1_2", ".", "a.", ".a", "a.b", "1.", ".1", "1.2", " ", "a ",
            " a", "a b", "1 ", " 1", "1 2", "é",
        ] {
            assert!(!is_dns1123_label(s).is_empty(), "{s:?} should be invalid");
        }
        assert_eq!(
            is_dns1123_label(&"a".repeat(64)),
            vec!["must be no more than 63 characters"]
        );
    }

    #[test]
    fn dns1123_label_messages_are_upstreams() {
        assert_eq!(is_dns1123_label("a.b"), vec!["must not contain dots"]);
        assert_eq!(is_dns1123_label("Foo"), vec![LABEL_REGEX_MSG]);
        assert_eq!(is_dns1123_label(""), vec![LABEL_REGEX_MSG]);
        let long_with_dots = format!("{}.b", "a".repeat(63));
        assert_eq!(
            is_dns1123_label(&long_with_dots),
            vec![
                "must be no more than 63 characters".to_string(),
                "must not contain dots".to_string()
            ]
        );
    }

    #[test]
    fn dns1123_subdomain_good_and_bad() {
        for s in [
            "a",
            "ab",
            "a1",
            "a-1",
            "a.a",
            "a.1",
            "1.a",
            "a--1--2--b",
            "11.22.33",
            "a.b.c.d.e",
            &"a".repeat(253),
        ] {
            assert!(is_dns1123_subdomain(s).is_empty(), "{s} should be valid");
        }
        for s in [
            "", "A", "a..b", ".a", "a.", "-a", "a-", "a.-b", "a-.b", "a_b", "a b", "A.b", "ä",
        ] {
            assert_eq!(
                is_dns1123_subdomain(s),
                vec![SUBDOMAIN_REGEX_MSG],
                "{s:?} should be invalid"
            );
        }
        assert_eq!(
            is_dns1123_subdomain(&"a".repeat(254)),
            vec!["must be no more than 253 characters"]
        );
        assert_eq!(
            is_dns1123_subdomain(&"A".repeat(254)),
            vec![
                "must be no more than 253 characters".to_string(),
                SUBDOMAIN_REGEX_MSG.to_string()
            ]
        );
    }

    #[test]
    fn path_segment_names() {
        assert!(is_path_segment_name("a.b").is_empty());
        assert!(is_path_segment_name("...").is_empty());
        assert!(is_path_segment_name("Weird Name!").is_empty());
        assert_eq!(is_path_segment_name("."), vec!["may not be '.'"]);
        assert_eq!(is_path_segment_name(".."), vec!["may not be '..'"]);
        assert_eq!(is_path_segment_name("a/b"), vec!["may not contain '/'"]);
        assert_eq!(is_path_segment_name("a%b"), vec!["may not contain '%'"]);
        assert_eq!(
            is_path_segment_name("a/%b"),
            vec!["may not contain '/'", "may not contain '%'"]
        );
    }

    #[test]
    fn qualified_names_from_upstream_tests() {
        for s in [
            "simple",
            "now-with-dashes",
            "1-starts-with-num",
            "1234",
            "simple/simple",
            "now-with-dashes/simple",
            "now-with-dashes/now-with-dashes",
            "now.with.dots/simple",
            "now-with.dashes-and.dots/simple",
            "1-num.2-num/3-num",
            "1234/5678",
            "1.2.3.4/5678",
            "Uppercase_Is_OK_123",
            "example.com/Uppercase_Is_OK_123",
            "requests.storage-foo",
            &"a".repeat(63),
            &format!("{}/b", "a".repeat(253)),
        ] {
            assert!(is_qualified_name(s).is_empty(), "{s} should be valid");
        }
        for s in [
            "nospecialchars%^=@",
            "cantendwithadash-",
            "-cantstartwithadash-",
            "only/one/slash",
            "Example.com/abc",
            "example_com/abc",
            "example.com/",
            "/simple",
            &"a".repeat(64),
            &format!("{}/b", "a".repeat(254)),
        ] {
            assert!(!is_qualified_name(s).is_empty(), "{s} should be invalid");
        }
    }

    #[test]
    fn qualified_name_messages_are_upstreams() {
        assert_eq!(is_qualified_name("-bad"), vec![NAME_PART_REGEX_MSG]);
        assert_eq!(
            is_qualified_name("example.com/"),
            vec![
                "name part must be non-empty".to_string(),
                NAME_PART_REGEX_MSG.to_string()
            ]
        );
        assert_eq!(
            is_qualified_name("/simple"),
            vec!["prefix part must be non-empty"]
        );
        assert_eq!(
            is_qualified_name("Example.com/abc"),
            vec![format!("prefix part {SUBDOMAIN_REGEX_MSG}")]
        );
        assert_eq!(
            is_qualified_name(&"a".repeat(64)),
            vec!["name part must be no more than 63 characters"]
        );
        assert_eq!(
            is_qualified_name("a/b/c"),
            vec!["a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
        );
    }

    #[test]
    fn label_values() {
        for s in [
            "",
            "simple",
            "now-with-dashes",
            "1-starts-with-num",
            "end-with-num-1",
            "1234",
            "a",
            "A",
            "1",
            "Uppercase_Is_OK_123",
            &"a".repeat(63),
        ] {
            assert!(is_valid_label_value(s).is_empty(), "{s:?} should be valid");
        }
        for s in [
            "nospecialchars%^=@",
            "Tama-nui-te-rā.is.Māori.sun",
            "\\backslashes\\are\\bad",
            "-starts-with-dash",
            "ends-with-dash-",
            ".starts.with.dot",
            "ends.with.dot.",
            "a b",
        ] {
            assert_eq!(
                is_valid_label_value(s),
                vec![LABEL_VALUE_REGEX_MSG],
                "{s:?} should be invalid"
            );
        }
        assert_eq!(
            is_valid_label_value(&"a".repeat(64)),
            vec!["must be no more than 63 characters"]
        );
    }

    #[test]
    fn regex_error_formats_like_go() {
        assert_eq!(
            regex_error("m", "f", &[]),
            "m (regex used for validation is 'f')"
        );
        assert_eq!(
            regex_error("m", "f", &["a", "b"]),
            "m (e.g. 'a',  or 'b', regex used for validation is 'f')"
        );
    }

    #[test]
    fn object_meta_labels_report_every_bad_key_and_value() {
        let labels = json!({"good": "ok", "bad/key/x": "v", "k": "-bad", "n": 5});
        let labels = labels.as_object().cloned().unwrap_or_default();
        let causes = validate_object_meta_labels(&labels);
        assert_eq!(causes.len(), 3);
        assert!(causes.iter().all(|c| c.field == "metadata.labels"));
        assert!(causes[0]
            .message
            .starts_with("Invalid value: \"bad/key/x\": a qualified name"));
        assert!(causes[1]
            .message
            .starts_with("Invalid value: \"-bad\": a valid label"));
        assert!(causes[2].message.ends_with("label values must be strings"));
        assert!(validate_labels(&Map::new(), "spec.selector").is_empty());
    }
}
