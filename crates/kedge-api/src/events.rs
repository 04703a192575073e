//! `core/v1` Events and `events.k8s.io/v1` Events are two views of the same
//! stored objects (stored in the core form), as upstream serves them.

use serde_json::{Map, Value};

/// (core field, events.k8s.io field) pairs that only change name.
const RENAMES: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

/// Fields with the same name in both.
const SAME: &[&str] = &[
    "metadata",
    "eventTime",
    "series",
    "reportingInstance",
    "action",
    "reason",
    "related",
    "type",
];

fn convert(obj: &Value, to_events: bool) -> Value {
    let Some(src) = obj.as_object() else {
        return obj.clone();
    };
    let mut out = Map::new();
    if to_events {
        out.insert("kind".into(), Value::from("Event"));
        out.insert("apiVersion".into(), Value::from("events.k8s.io/v1"));
    } else {
        out.insert("kind".into(), Value::from("Event"));
        out.insert("apiVersion".into(), Value::from("v1"));
    }
    for f in SAME {
        if let Some(v) = src.get(*f) {
            out.insert((*f).into(), v.clone());
        }
    }
    for (core, ev) in RENAMES {
        let (from, to) = if to_events { (core, ev) } else { (ev, core) };
        if let Some(v) = src.get(*from) {
            out.insert((*to).into(), v.clone());
        }
    }
    Value::Object(out)
}

/// The `events.k8s.io/v1` view of a stored core Event.
pub fn core_to_events(obj: &Value) -> Value {
    convert(obj, true)
}

/// The stored core form of an `events.k8s.io/v1` Event.
pub fn events_to_core(obj: &Value) -> Value {
    convert(obj, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip() {
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "d"},
            "involvedObject": {"kind": "Pod", "name": "p"}, "message": "hi", "reason": "Started",
            "source": {"component": "kubelet"}, "count": 3, "type": "Normal",
            "firstTimestamp": "2026-01-01T00:00:00Z", "reportingComponent": "kubelet"});
        let ev = core_to_events(&core);
        assert_eq!(ev["apiVersion"], "events.k8s.io/v1");
        assert_eq!(ev["regarding"]["name"], "p");
        assert_eq!(ev["note"], "hi");
        assert_eq!(ev["deprecatedCount"], 3);
        assert_eq!(ev["reportingController"], "kubelet");
        assert!(ev.get("message").is_none());
        assert_eq!(events_to_core(&ev), core);
    }
}
