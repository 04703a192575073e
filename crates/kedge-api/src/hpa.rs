//! `autoscaling/v2` and `autoscaling/v1` HorizontalPodAutoscalers are two
//! views of the same stored objects, stored in the v2 form, as upstream
//! serves them (its storage version is v2 too).
//!
//! The conversion follows upstream's `pkg/apis/autoscaling/v1/conversion.go`
//! (Kubernetes 1.33): v1's `targetCPUUtilizationPercentage` is the first
//! `Resource` metric on `cpu` with an `averageUtilization` target, and
//! `currentCPUUtilizationPercentage` the last such current metric. What v1
//! cannot express travels, as upstream's does, in round-trip annotations on
//! the v1 view, so that a v1 client that reads, edits and writes an object
//! back loses nothing:
//!
//! - `autoscaling.alpha.kubernetes.io/metrics`: the other metrics, in v1's
//!   (v2beta1-shaped) `MetricSpec` form;
//! - `autoscaling.alpha.kubernetes.io/current-metrics`: every current metric,
//!   in v1's `MetricStatus` form;
//! - `autoscaling.alpha.kubernetes.io/conditions`: the status conditions;
//! - `autoscaling.alpha.kubernetes.io/behavior`: `spec.behavior`, marshalled
//!   (as upstream does, with a TODO) from Go's internal type, which has no
//!   JSON tags: its keys are the Go field names (`ScaleUp`,
//!   `StabilizationWindowSeconds`, ...), read back case-insensitively as
//!   `encoding/json` does.
//!
//! The stored v2 form never carries these annotations: writing through v1
//! consumes them, and the v2 view drops any left over.
//!
//! Departures: an annotation that does not parse is dropped (upstream fails
//! the decode); like upstream, quantities and selectors are carried as they
//! are, not re-canonicalised.

use serde_json::{json, Map, Value};

/// `autoscaling.MetricSpecsAnnotation`.
pub const METRIC_SPECS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
/// `autoscaling.MetricStatusesAnnotation`.
pub const METRIC_STATUSES_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
/// `autoscaling.HorizontalPodAutoscalerConditionsAnnotation`.
pub const CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";
/// `autoscaling.BehaviorSpecsAnnotation`.
pub const BEHAVIOR_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/behavior";
/// `autoscaling.DefaultCPUUtilization`: v1's implicit CPU target.
pub const DEFAULT_CPU_UTILIZATION: i64 = 80;

/// What `DropRoundTripHorizontalPodAutoscalerAnnotations` removes.
const ROUND_TRIP: [&str; 4] = [
    METRIC_SPECS_ANNOTATION,
    BEHAVIOR_ANNOTATION,
    METRIC_STATUSES_ANNOTATION,
    CONDITIONS_ANNOTATION,
];

/// The `autoscaling/v1` view of a stored (`autoscaling/v2`) object.
pub fn v2_to_v1(obj: &Value) -> Value {
    let Some(src) = obj.as_object() else {
        return obj.clone();
    };
    let mut out = Map::new();
    out.insert("kind".into(), json!("HorizontalPodAutoscaler"));
    out.insert("apiVersion".into(), json!("autoscaling/v1"));
    let spec = src.get("spec").filter(|v| v.is_object());
    let status = src.get("status").filter(|v| v.is_object());
    let metrics = list(spec, "metrics");
    let current = list(status, "currentMetrics");
    let conditions = list(status, "conditions");

    let mut annotations: Vec<(&str, String)> = Vec::new();
    if let Some(b) = spec.and_then(|s| present(s, "behavior")) {
        annotations.push((BEHAVIOR_ANNOTATION, behavior_to_internal(b).to_string()));
    }
    if !conditions.is_empty() {
        let c: Vec<Value> = conditions.iter().map(condition_to_v1).collect();
        annotations.push((CONDITIONS_ANNOTATION, Value::Array(c).to_string()));
    }
    if !current.is_empty() {
        let c: Vec<Value> = current.iter().map(metric_status_to_v1).collect();
        annotations.push((METRIC_STATUSES_ANNOTATION, Value::Array(c).to_string()));
    }
    let others: Vec<Value> = metrics
        .iter()
        .filter(|m| !is_cpu_utilization(m, "target"))
        .map(metric_spec_to_v1)
        .collect();
    if !others.is_empty() {
        annotations.push((METRIC_SPECS_ANNOTATION, Value::Array(others).to_string()));
    }
    if let Some(md) = src.get("metadata") {
        let mut md = md.clone();
        drop_round_trip(&mut md);
        if !annotations.is_empty() {
            if let Some(m) = md.as_object_mut() {
                let a = m.entry("annotations").or_insert_with(|| json!({}));
                if !a.is_object() {
                    *a = json!({});
                }
                if let Some(a) = a.as_object_mut() {
                    for (k, v) in annotations {
                        a.insert(k.into(), Value::String(v));
                    }
                }
            }
        }
        out.insert("metadata".into(), md);
    }

    if let Some(spec) = spec {
        let mut s = Map::new();
        copy(spec, &mut s, "scaleTargetRef");
        copy(spec, &mut s, "minReplicas");
        copy(spec, &mut s, "maxReplicas");
        let cpu = metrics
            .iter()
            .find(|m| str_of(m, "type") == "Resource" && resource_name(m, "resource") == "cpu");
        if let Some(u) = cpu.and_then(|m| m.pointer("/resource/target/averageUtilization")) {
            if !u.is_null() {
                s.insert("targetCPUUtilizationPercentage".into(), u.clone());
            }
        }
        out.insert("spec".into(), Value::Object(s));
    }

    if let Some(status) = status {
        let mut s = Map::new();
        copy(status, &mut s, "observedGeneration");
        copy(status, &mut s, "lastScaleTime");
        s.insert(
            "currentReplicas".into(),
            present(status, "currentReplicas")
                .cloned()
                .unwrap_or(json!(0)),
        );
        s.insert(
            "desiredReplicas".into(),
            present(status, "desiredReplicas")
                .cloned()
                .unwrap_or(json!(0)),
        );
        // Upstream keeps the last CPU utilization among the current metrics.
        let cpu = current
            .iter()
            .rev()
            .filter(|m| str_of(m, "type") == "Resource" && resource_name(m, "resource") == "cpu")
            .filter_map(|m| m.pointer("/resource/current/averageUtilization"))
            .find(|u| !u.is_null());
        if let Some(u) = cpu {
            s.insert("currentCPUUtilizationPercentage".into(), u.clone());
        }
        out.insert("status".into(), Value::Object(s));
    }
    Value::Object(out)
}

/// The stored (`autoscaling/v2`) form of an `autoscaling/v1` object.
pub fn v1_to_v2(obj: &Value) -> Value {
    let Some(src) = obj.as_object() else {
        return obj.clone();
    };
    let mut out = Map::new();
    out.insert("kind".into(), json!("HorizontalPodAutoscaler"));
    out.insert("apiVersion".into(), json!("autoscaling/v2"));
    let annotation = |key: &str| -> Option<Value> {
        let s = src
            .get("metadata")?
            .get("annotations")?
            .get(key)?
            .as_str()?;
        serde_json::from_str(s).ok()
    };
    if let Some(md) = src.get("metadata") {
        let mut md = md.clone();
        drop_round_trip(&mut md);
        out.insert("metadata".into(), md);
    }

    let spec = src.get("spec").filter(|v| v.is_object());
    let mut s = Map::new();
    if let Some(spec) = spec {
        copy(spec, &mut s, "scaleTargetRef");
        copy(spec, &mut s, "minReplicas");
        copy(spec, &mut s, "maxReplicas");
    }
    let mut metrics: Vec<Value> = match annotation(METRIC_SPECS_ANNOTATION) {
        Some(Value::Array(a)) => a.iter().map(metric_spec_to_v2).collect(),
        _ => Vec::new(),
    };
    let target = spec.and_then(|s| present(s, "targetCPUUtilizationPercentage"));
    if let Some(t) = target {
        metrics.push(cpu_utilization_metric(t.clone()));
    }
    if metrics.is_empty() {
        // v1's implicit default, made explicit as upstream's conversion does.
        metrics.push(cpu_utilization_metric(json!(DEFAULT_CPU_UTILIZATION)));
    }
    s.insert("metrics".into(), Value::Array(metrics));
    if let Some(b) = annotation(BEHAVIOR_ANNOTATION).and_then(|b| behavior_from_internal(&b)) {
        s.insert("behavior".into(), b);
    }
    out.insert("spec".into(), Value::Object(s));

    if let Some(status) = src.get("status").filter(|v| v.is_object()) {
        let mut st = Map::new();
        copy(status, &mut st, "observedGeneration");
        copy(status, &mut st, "lastScaleTime");
        if let Some(n) = present(status, "currentReplicas").filter(|n| n.as_i64() != Some(0)) {
            st.insert("currentReplicas".into(), n.clone());
        }
        st.insert(
            "desiredReplicas".into(),
            present(status, "desiredReplicas")
                .cloned()
                .unwrap_or(json!(0)),
        );
        let current = match annotation(METRIC_STATUSES_ANNOTATION) {
            // The annotation has more than the CPU utilization: it wins.
            Some(Value::Array(a)) => Value::Array(a.iter().map(metric_status_to_v2).collect()),
            _ => match present(status, "currentCPUUtilizationPercentage") {
                Some(u) => json!([{"type": "Resource", "resource": {
                    "name": "cpu", "current": {"averageUtilization": u}}}]),
                None => Value::Null,
            },
        };
        st.insert("currentMetrics".into(), current);
        if let Some(Value::Array(c)) = annotation(CONDITIONS_ANNOTATION) {
            let c: Vec<Value> = c.iter().map(condition_to_v2).collect();
            if !c.is_empty() {
                st.insert("conditions".into(), Value::Array(c));
            }
        }
        out.insert("status".into(), Value::Object(st));
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------
// Helpers

/// A field that is present and not `null`.
fn present<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn list<'a>(v: Option<&'a Value>, key: &str) -> &'a [Value] {
    v.and_then(|v| v.get(key))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn copy(from: &Value, to: &mut Map<String, Value>, key: &str) {
    if let Some(v) = present(from, key) {
        to.insert(key.into(), v.clone());
    }
}

fn copy_as(from: &Value, key: &str, to: &mut Map<String, Value>, as_key: &str) {
    if let Some(v) = present(from, key) {
        to.insert(as_key.into(), v.clone());
    }
}

/// A Go `resource.Quantity` that is not a pointer: absent marshals as "0".
fn quantity(from: &Value, key: &str) -> Value {
    present(from, key).cloned().unwrap_or_else(|| json!("0"))
}

fn resource_name<'a>(m: &'a Value, source: &str) -> &'a str {
    m.get(source).map_or("", |r| str_of(r, "name"))
}

/// A CPU `Resource` metric whose `target` (or `current`) is a utilization:
/// what v1's CPU percentage fields stand for.
fn is_cpu_utilization(m: &Value, which: &str) -> bool {
    str_of(m, "type") == "Resource"
        && resource_name(m, "resource") == "cpu"
        && m.get("resource")
            .and_then(|r| r.get(which))
            .and_then(|t| present(t, "averageUtilization"))
            .is_some()
}

fn cpu_utilization_metric(percent: Value) -> Value {
    json!({"type": "Resource", "resource": {"name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": percent}}})
}

fn drop_round_trip(md: &mut Value) {
    let Some(m) = md.as_object_mut() else { return };
    let Some(a) = m.get_mut("annotations").and_then(Value::as_object_mut) else {
        return;
    };
    if !ROUND_TRIP.iter().any(|k| a.contains_key(*k)) {
        return;
    }
    for k in ROUND_TRIP {
        a.remove(k);
    }
    if a.is_empty() {
        m.remove("annotations");
    }
}

/// v2 `CrossVersionObjectReference` fields in Go order.
fn object_ref(r: Option<&Value>) -> Value {
    let r = r.cloned().unwrap_or_else(|| json!({}));
    let mut o = Map::new();
    o.insert("kind".into(), r.get("kind").cloned().unwrap_or(json!("")));
    o.insert("name".into(), r.get("name").cloned().unwrap_or(json!("")));
    if let Some(v) = present(&r, "apiVersion").filter(|v| v.as_str() != Some("")) {
        o.insert("apiVersion".into(), v.clone());
    }
    Value::Object(o)
}

/// v2 `MetricIdentifier` from a v1 source's name and selector fields.
fn identifier(src: &Value, name_key: &str, selector_key: &str) -> Value {
    let mut o = Map::new();
    o.insert(
        "name".into(),
        src.get(name_key).cloned().unwrap_or(json!("")),
    );
    copy_as(src, selector_key, &mut o, "selector");
    Value::Object(o)
}

const SOURCES: [&str; 5] = [
    "object",
    "pods",
    "resource",
    "containerResource",
    "external",
];

/// `Convert_autoscaling_MetricSpec_To_v1_MetricSpec`.
fn metric_spec_to_v1(m: &Value) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), m.get("type").cloned().unwrap_or(json!("")));
    for source in SOURCES {
        let Some(src) = present(m, source) else {
            continue;
        };
        let metric = src.get("metric").cloned().unwrap_or(Value::Null);
        let target = src.get("target").cloned().unwrap_or(Value::Null);
        let mut o = Map::new();
        match source {
            "object" => {
                o.insert("target".into(), object_ref(src.get("describedObject")));
                o.insert(
                    "metricName".into(),
                    metric.get("name").cloned().unwrap_or(json!("")),
                );
                o.insert("targetValue".into(), quantity(&target, "value"));
                copy(&metric, &mut o, "selector");
                copy(&target, &mut o, "averageValue");
            }
            "pods" => {
                o.insert(
                    "metricName".into(),
                    metric.get("name").cloned().unwrap_or(json!("")),
                );
                o.insert(
                    "targetAverageValue".into(),
                    quantity(&target, "averageValue"),
                );
                copy(&metric, &mut o, "selector");
            }
            "resource" | "containerResource" => {
                o.insert("name".into(), src.get("name").cloned().unwrap_or(json!("")));
                copy_as(
                    &target,
                    "averageUtilization",
                    &mut o,
                    "targetAverageUtilization",
                );
                copy_as(&target, "averageValue", &mut o, "targetAverageValue");
                if source == "containerResource" {
                    o.insert(
                        "container".into(),
                        src.get("container").cloned().unwrap_or(json!("")),
                    );
                }
            }
            _ => {
                o.insert(
                    "metricName".into(),
                    metric.get("name").cloned().unwrap_or(json!("")),
                );
                copy_as(&metric, "selector", &mut o, "metricSelector");
                copy_as(&target, "value", &mut o, "targetValue");
                copy_as(&target, "averageValue", &mut o, "targetAverageValue");
            }
        }
        out.insert(source.into(), Value::Object(o));
    }
    Value::Object(out)
}

/// `Convert_v1_MetricSpec_To_autoscaling_MetricSpec`.
fn metric_spec_to_v2(m: &Value) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), m.get("type").cloned().unwrap_or(json!("")));
    for source in SOURCES {
        let Some(src) = present(m, source) else {
            continue;
        };
        let mut o = Map::new();
        let mut target = Map::new();
        match source {
            "object" => {
                let t = if present(src, "averageValue").is_none() {
                    "Value"
                } else {
                    "AverageValue"
                };
                target.insert("type".into(), json!(t));
                target.insert("value".into(), quantity(src, "targetValue"));
                copy(src, &mut target, "averageValue");
                o.insert("describedObject".into(), object_ref(src.get("target")));
                o.insert("target".into(), Value::Object(target));
                o.insert("metric".into(), identifier(src, "metricName", "selector"));
            }
            "pods" => {
                target.insert("type".into(), json!("AverageValue"));
                target.insert("averageValue".into(), quantity(src, "targetAverageValue"));
                o.insert("metric".into(), identifier(src, "metricName", "selector"));
                o.insert("target".into(), Value::Object(target));
            }
            "resource" | "containerResource" => {
                let t = if present(src, "targetAverageUtilization").is_none() {
                    "AverageValue"
                } else {
                    "Utilization"
                };
                target.insert("type".into(), json!(t));
                copy_as(src, "targetAverageValue", &mut target, "averageValue");
                copy_as(
                    src,
                    "targetAverageUtilization",
                    &mut target,
                    "averageUtilization",
                );
                o.insert("name".into(), src.get("name").cloned().unwrap_or(json!("")));
                o.insert("target".into(), Value::Object(target));
                if source == "containerResource" {
                    o.insert(
                        "container".into(),
                        src.get("container").cloned().unwrap_or(json!("")),
                    );
                }
            }
            _ => {
                let t = if present(src, "targetValue").is_none() {
                    "AverageValue"
                } else {
                    "Value"
                };
                target.insert("type".into(), json!(t));
                copy_as(src, "targetValue", &mut target, "value");
                copy_as(src, "targetAverageValue", &mut target, "averageValue");
                o.insert(
                    "metric".into(),
                    identifier(src, "metricName", "metricSelector"),
                );
                o.insert("target".into(), Value::Object(target));
            }
        }
        out.insert(source.into(), Value::Object(o));
    }
    Value::Object(out)
}

/// `Convert_autoscaling_MetricStatus_To_v1_MetricStatus`.
fn metric_status_to_v1(m: &Value) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), m.get("type").cloned().unwrap_or(json!("")));
    for source in SOURCES {
        let Some(src) = present(m, source) else {
            continue;
        };
        let metric = src.get("metric").cloned().unwrap_or(Value::Null);
        let current = src.get("current").cloned().unwrap_or(Value::Null);
        let mut o = Map::new();
        match source {
            "object" => {
                o.insert("target".into(), object_ref(src.get("describedObject")));
                o.insert(
                    "metricName".into(),
                    metric.get("name").cloned().unwrap_or(json!("")),
                );
                o.insert("currentValue".into(), quantity(&current, "value"));
                copy(&metric, &mut o, "selector");
                copy(&current, &mut o, "averageValue");
            }
            "pods" => {
                o.insert(
                    "metricName".into(),
                    metric.get("name").cloned().unwrap_or(json!("")),
                );
                o.insert(
                    "currentAverageValue".into(),
                    quantity(&current, "averageValue"),
                );
                copy(&metric, &mut o, "selector");
            }
            "resource" | "containerResource" => {
                o.insert("name".into(), src.get("name").cloned().unwrap_or(json!("")));
                copy_as(
                    &current,
                    "averageUtilization",
                    &mut o,
                    "currentAverageUtilization",
                );
                o.insert(
                    "currentAverageValue".into(),
                    quantity(&current, "averageValue"),
                );
                if source == "containerResource" {
                    o.insert(
                        "container".into(),
                        src.get("container").cloned().unwrap_or(json!("")),
                    );
                }
            }
            _ => {
                o.insert(
                    "metricName".into(),
                    metric.get("name").cloned().unwrap_or(json!("")),
                );
                copy_as(&metric, "selector", &mut o, "metricSelector");
                o.insert("currentValue".into(), quantity(&current, "value"));
                copy_as(&current, "averageValue", &mut o, "currentAverageValue");
            }
        }
        out.insert(source.into(), Value::Object(o));
    }
    Value::Object(out)
}

/// `Convert_v1_MetricStatus_To_autoscaling_MetricStatus`.
fn metric_status_to_v2(m: &Value) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), m.get("type").cloned().unwrap_or(json!("")));
    for source in SOURCES {
        let Some(src) = present(m, source) else {
            continue;
        };
        let mut o = Map::new();
        let mut current = Map::new();
        match source {
            "object" => {
                current.insert("value".into(), quantity(src, "currentValue"));
                copy(src, &mut current, "averageValue");
                o.insert("metric".into(), identifier(src, "metricName", "selector"));
                o.insert("current".into(), Value::Object(current));
                o.insert("describedObject".into(), object_ref(src.get("target")));
            }
            "pods" => {
                current.insert("averageValue".into(), quantity(src, "currentAverageValue"));
                o.insert("metric".into(), identifier(src, "metricName", "selector"));
                o.insert("current".into(), Value::Object(current));
            }
            "resource" | "containerResource" => {
                current.insert("averageValue".into(), quantity(src, "currentAverageValue"));
                copy_as(
                    src,
                    "currentAverageUtilization",
                    &mut current,
                    "averageUtilization",
                );
                o.insert("name".into(), src.get("name").cloned().unwrap_or(json!("")));
                o.insert("current".into(), Value::Object(current));
                if source == "containerResource" {
                    o.insert(
                        "container".into(),
                        src.get("container").cloned().unwrap_or(json!("")),
                    );
                }
            }
            _ => {
                current.insert("value".into(), quantity(src, "currentValue"));
                copy_as(src, "currentAverageValue", &mut current, "averageValue");
                o.insert(
                    "metric".into(),
                    identifier(src, "metricName", "metricSelector"),
                );
                o.insert("current".into(), Value::Object(current));
            }
        }
        out.insert(source.into(), Value::Object(o));
    }
    Value::Object(out)
}

/// A condition as v1's (identical) type marshals it: `lastTransitionTime` is
/// a non-pointer `metav1.Time`, `null` when zero.
fn condition_to_v1(c: &Value) -> Value {
    let mut o = Map::new();
    o.insert("type".into(), c.get("type").cloned().unwrap_or(json!("")));
    o.insert(
        "status".into(),
        c.get("status").cloned().unwrap_or(json!("")),
    );
    o.insert(
        "lastTransitionTime".into(),
        c.get("lastTransitionTime").cloned().unwrap_or(Value::Null),
    );
    for f in ["reason", "message"] {
        if let Some(v) = present(c, f).filter(|v| v.as_str() != Some("")) {
            o.insert(f.into(), v.clone());
        }
    }
    Value::Object(o)
}

fn condition_to_v2(c: &Value) -> Value {
    let mut o = Map::new();
    o.insert("type".into(), c.get("type").cloned().unwrap_or(json!("")));
    o.insert(
        "status".into(),
        c.get("status").cloned().unwrap_or(json!("")),
    );
    for f in ["lastTransitionTime", "reason", "message"] {
        if let Some(v) = present(c, f).filter(|v| v.as_str() != Some("")) {
            o.insert(f.into(), v.clone());
        }
    }
    Value::Object(o)
}

/// (v2 JSON name, Go field name) of `HPAScalingRules` and `HPAScalingPolicy`.
const RULE_FIELDS: [(&str, &str); 4] = [
    ("stabilizationWindowSeconds", "StabilizationWindowSeconds"),
    ("selectPolicy", "SelectPolicy"),
    ("policies", "Policies"),
    ("tolerance", "Tolerance"),
];
const POLICY_FIELDS: [(&str, &str); 3] = [
    ("type", "Type"),
    ("value", "Value"),
    ("periodSeconds", "PeriodSeconds"),
];

/// `json.Marshal` of Go's internal `HorizontalPodAutoscalerBehavior`: Go
/// field names, nil pointers and slices as `null`, zero values written out.
fn behavior_to_internal(b: &Value) -> Value {
    let rules = |r: Option<&Value>| -> Value {
        let Some(r) = r.filter(|r| r.is_object()) else {
            return Value::Null;
        };
        let mut o = Map::new();
        for (json_name, go_name) in RULE_FIELDS {
            let v = match (json_name, present(r, json_name)) {
                ("policies", Some(Value::Array(ps))) => Value::Array(
                    ps.iter()
                        .map(|p| {
                            let mut po = Map::new();
                            for (jn, gn) in POLICY_FIELDS {
                                let zero = if jn == "type" { json!("") } else { json!(0) };
                                po.insert(gn.into(), present(p, jn).cloned().unwrap_or(zero));
                            }
                            Value::Object(po)
                        })
                        .collect(),
                ),
                (_, v) => v.cloned().unwrap_or(Value::Null),
            };
            o.insert(go_name.into(), v);
        }
        Value::Object(o)
    };
    json!({"ScaleUp": rules(b.get("scaleUp")), "ScaleDown": rules(b.get("scaleDown"))})
}

/// A field of a Go-marshalled struct, matched case-insensitively as
/// `encoding/json` matches keys.
fn go_field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    let o = v.as_object()?;
    o.get(name)
        .or_else(|| {
            o.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_null())
}

/// The v2 `spec.behavior` from the behavior annotation; `None` when it holds
/// neither rule set (upstream ignores an empty behavior).
fn behavior_from_internal(b: &Value) -> Option<Value> {
    let rules = |r: &Value| -> Option<Value> {
        let r = r.as_object().map(|_| r)?;
        let mut o = Map::new();
        for (json_name, go_name) in RULE_FIELDS {
            let Some(v) = go_field(r, go_name) else {
                continue;
            };
            let v = match (json_name, v) {
                ("policies", Value::Array(ps)) => Value::Array(
                    ps.iter()
                        .map(|p| {
                            let mut po = Map::new();
                            for (jn, gn) in POLICY_FIELDS {
                                if let Some(x) = go_field(p, gn) {
                                    po.insert(jn.into(), x.clone());
                                }
                            }
                            Value::Object(po)
                        })
                        .collect(),
                ),
                (_, v) => v.clone(),
            };
            o.insert(json_name.into(), v);
        }
        Some(Value::Object(o))
    };
    let up = go_field(b, "ScaleUp").and_then(rules);
    let down = go_field(b, "ScaleDown").and_then(rules);
    if up.is_none() && down.is_none() {
        return None;
    }
    let mut o = Map::new();
    if let Some(u) = up {
        o.insert("scaleUp".into(), u);
    }
    if let Some(d) = down {
        o.insert("scaleDown".into(), d);
    }
    Some(Value::Object(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotation(obj: &Value, key: &str) -> Value {
        let s = obj["metadata"]["annotations"][key]
            .as_str()
            .unwrap_or_else(|| panic!("no annotation {key} in {obj}"));
        serde_json::from_str(s).expect("annotation is JSON")
    }

    #[test]
    fn cpu_target_maps_both_ways() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "h", "namespace": "d"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 60}});
        let v2 = v1_to_v2(&v1);
        assert_eq!(v2["apiVersion"], "autoscaling/v2");
        assert_eq!(
            v2["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 60}}}])
        );
        assert!(v2.get("status").is_none());
        // Only the CPU metric: nothing to carry in annotations.
        assert_eq!(v2_to_v1(&v2), v1);
    }

    #[test]
    fn v1_without_target_gets_the_implicit_default() {
        let v1 = json!({"metadata": {"name": "h"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3}});
        let v2 = v1_to_v2(&v1);
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            DEFAULT_CPU_UTILIZATION
        );
        assert_eq!(v2_to_v1(&v2)["spec"]["targetCPUUtilizationPercentage"], 80);
    }

    #[test]
    fn v2_only_fields_round_trip_through_v1_annotations() {
        let v2 = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "h", "namespace": "d", "annotations": {"keep": "me"}},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2, "maxReplicas": 10,
            "metrics": [
                {"type": "Pods", "pods": {"metric": {"name": "qps"},
                    "target": {"type": "AverageValue", "averageValue": "1k"}}},
                {"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 70}}},
                {"type": "External", "external": {
                    "metric": {"name": "queue", "selector": {"matchLabels": {"q": "a"}}},
                    "target": {"type": "Value", "value": "30"}}},
                {"type": "Object", "object": {
                    "describedObject": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "main"},
                    "metric": {"name": "rps"},
                    "target": {"type": "Value", "value": "2k"}}},
                {"type": "ContainerResource", "containerResource": {"name": "memory",
                    "container": "app", "target": {"type": "AverageValue", "averageValue": "500Mi"}}}
            ],
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                    "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                                 {"type": "Percent", "value": 100, "periodSeconds": 15}]},
                "scaleDown": {"selectPolicy": "Max",
                    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}
            }
        },
        "status": {
            "observedGeneration": 3, "currentReplicas": 2, "desiredReplicas": 3,
            "currentMetrics": [
                {"type": "Resource", "resource": {"name": "cpu",
                    "current": {"averageValue": "250m", "averageUtilization": 55}}},
                {"type": "Pods", "pods": {"metric": {"name": "qps"},
                    "current": {"averageValue": "900"}}}
            ],
            "conditions": [{"type": "AbleToScale", "status": "True",
                "lastTransitionTime": "2025-01-01T00:00:00Z", "reason": "ReadyForNewScale"}]
        }});
        let v1 = v2_to_v1(&v2);
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 70);
        assert!(v1["spec"].get("metrics").is_none());
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 55);
        assert_eq!(v1["status"]["currentReplicas"], 2);
        assert_eq!(v1["metadata"]["annotations"]["keep"], "me");
        // The other metrics, in v1's MetricSpec form.
        let others = annotation(&v1, METRIC_SPECS_ANNOTATION);
        assert_eq!(others.as_array().map(Vec::len), Some(4));
        assert_eq!(
            others[0],
            json!({"type": "Pods", "pods": {"metricName": "qps", "targetAverageValue": "1k"}})
        );
        assert_eq!(
            others[1],
            json!({"type": "External", "external": {"metricName": "queue",
                "metricSelector": {"matchLabels": {"q": "a"}}, "targetValue": "30"}})
        );
        assert_eq!(
            others[2],
            json!({"type": "Object", "object": {"target": {"kind": "Ingress", "name": "main",
                "apiVersion": "networking.k8s.io/v1"}, "metricName": "rps", "targetValue": "2k"}})
        );
        // The behavior annotation holds Go's internal field names.
        let b = annotation(&v1, BEHAVIOR_ANNOTATION);
        assert_eq!(b["ScaleUp"]["Policies"][0]["PeriodSeconds"], 15);
        assert_eq!(b["ScaleDown"]["StabilizationWindowSeconds"], Value::Null);
        assert_eq!(
            annotation(&v1, CONDITIONS_ANNOTATION)[0]["reason"],
            "ReadyForNewScale"
        );
        assert_eq!(
            annotation(&v1, METRIC_STATUSES_ANNOTATION)[1],
            json!({"type": "Pods", "pods": {"metricName": "qps", "currentAverageValue": "900"}})
        );

        // Back to v2: the CPU metric goes last (upstream appends it after the
        // annotation's metrics), the rest is as it was.
        let back = v1_to_v2(&v1);
        assert_eq!(back["metadata"], v2["metadata"]);
        let m = back["spec"]["metrics"].as_array().expect("metrics");
        assert_eq!(m.len(), 5);
        assert_eq!(m[4], v2["spec"]["metrics"][1]);
        assert_eq!(m[0], v2["spec"]["metrics"][0]);
        assert_eq!(m[1], v2["spec"]["metrics"][2]);
        assert_eq!(m[3], v2["spec"]["metrics"][4]);
        // v1's ObjectMetricSource.targetValue is not a pointer: Value stays.
        assert_eq!(m[2], v2["spec"]["metrics"][3]);
        assert_eq!(back["spec"]["behavior"], v2["spec"]["behavior"]);
        assert_eq!(back["status"]["conditions"], v2["status"]["conditions"]);
        assert_eq!(back["status"]["currentReplicas"], 2);
        assert_eq!(back["status"]["observedGeneration"], 3);
        // Upstream's lossy bit: v1's currentAverageValue is not a pointer.
        assert_eq!(
            back["status"]["currentMetrics"][1],
            json!({"type": "Pods", "pods": {"metric": {"name": "qps"},
                "current": {"averageValue": "900"}}})
        );
        assert_eq!(
            back["status"]["currentMetrics"][0],
            v2["status"]["currentMetrics"][0]
        );
        // And the v1 view of that is the same v1 view.
        assert_eq!(v2_to_v1(&back), v1);
    }

    #[test]
    fn stray_round_trip_annotations_are_dropped() {
        let v2 = json!({"metadata": {"name": "h", "annotations": {
                METRIC_SPECS_ANNOTATION: "[]", CONDITIONS_ANNOTATION: "not json"}},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 2,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 50}}}]}});
        let v1 = v2_to_v1(&v2);
        assert!(v1["metadata"].get("annotations").is_none(), "{v1}");
        // An unparsable annotation is dropped on the way in too.
        let mut w = v1.clone();
        w["metadata"]["annotations"] =
            json!({CONDITIONS_ANNOTATION: "{", BEHAVIOR_ANNOTATION: "{}"});
        w["status"] = json!({"currentReplicas": 0, "desiredReplicas": 0});
        let back = v1_to_v2(&w);
        assert!(back["metadata"].get("annotations").is_none());
        assert!(back["spec"].get("behavior").is_none());
        assert_eq!(
            back["status"],
            json!({"desiredReplicas": 0, "currentMetrics": null})
        );
    }

    #[test]
    fn status_cpu_utilization_without_annotation() {
        let v1 = json!({"metadata": {"name": "h"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 2,
                     "targetCPUUtilizationPercentage": 50},
            "status": {"currentReplicas": 1, "desiredReplicas": 2, "currentCPUUtilizationPercentage": 75}});
        let v2 = v1_to_v2(&v1);
        assert_eq!(
            v2["status"]["currentMetrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "current": {"averageUtilization": 75}}}])
        );
        let view = v2_to_v1(&v2);
        assert_eq!(view["status"]["currentCPUUtilizationPercentage"], 75);
        // The v1 view records the current metrics it came from.
        assert_eq!(
            annotation(&view, METRIC_STATUSES_ANNOTATION),
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "currentAverageUtilization": 75, "currentAverageValue": "0"}}])
        );
    }

    #[test]
    fn behavior_annotation_keys_match_case_insensitively() {
        let b = json!({"scaleup": {"stabilizationwindowseconds": 10,
            "POLICIES": [{"type": "Pods", "value": 1, "periodseconds": 60}]}, "ScaleDown": null});
        assert_eq!(
            behavior_from_internal(&b),
            Some(json!({"scaleUp": {"stabilizationWindowSeconds": 10,
                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}}))
        );
        assert_eq!(behavior_from_internal(&json!({})), None);
    }

    #[test]
    fn non_objects_pass_through() {
        assert_eq!(v1_to_v2(&Value::Null), Value::Null);
        assert_eq!(v2_to_v1(&json!([1])), json!([1]));
    }
}
