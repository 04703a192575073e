//! Server-side printing: the columns and cells of the `meta.k8s.io/v1`
//! Table that `kubectl get` asks for
//! (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`).
//!
//! The columns, their types, priorities and the cell contents follow
//! kube-apiserver 1.33 (`pkg/printers/internalversion/printers.go`, and the
//! generic `rest.DefaultTableConvertor` for kinds without a printer). Like
//! the API server, which prints with `Wide: true`, every cell is produced,
//! including those of the priority-1 (`-o wide`) columns; kubectl hides them
//! unless asked.
//!
//! Everything here reads raw stored JSON and must cope with partial or
//! malformed objects: a missing or mistyped field reads as Go's zero value
//! (as the typed conversion would give), never as a panic.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value};

/// One column of a Table (`TableColumnDefinition`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ColumnDefinition {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i32,
}

/// The columns kube-apiserver prints for `resource` (plural) of `group`
/// ("" for the core group).
pub fn columns(group: &str, resource: &str) -> Vec<ColumnDefinition> {
    let cols = match printer(group, resource) {
        Some(p) => p.columns,
        None => DEFAULT_COLUMNS,
    };
    cols.iter().map(Column::definition).collect()
}

/// The cells of one row for `obj`, in the order of [`columns`]; ages are
/// measured up to `now`.
pub fn cells(group: &str, resource: &str, obj: &Value, now: Timestamp) -> Vec<Value> {
    match printer(group, resource) {
        Some(p) => (p.cells)(obj, now),
        None => default_cells(obj, now),
    }
}

/// A duration as `kubectl get` prints ages: `duration.HumanDuration` from
/// k8s.io/apimachinery/pkg/util/duration, with ~2-3 significant figures.
pub fn human_duration(d: SignedDuration) -> String {
    // Go's time.Duration is an int64 of nanoseconds and time.Since
    // saturates, so anything longer reads as ~292 years.
    let go_max = SignedDuration::from_nanos(i64::MAX);
    let go_min = SignedDuration::from_nanos(i64::MIN);
    let d = d.clamp(go_min, go_max);
    // Up to two seconds in the future counts as now (clock skew).
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        return format!("{hours}h{m}m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{}d", hours / 24);
        }
        return format!("{}d{h}h", hours / 24);
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            return format!("{}y", hours / 24 / 365);
        }
        return format!("{}y{dy}d", hours / 24 / 365);
    }
    format!("{}y", hours / 24 / 365)
}

// ---------------------------------------------------------------------------
// Column definitions

struct Column {
    name: &'static str,
    type_: &'static str,
    format: &'static str,
    priority: i32,
    description: &'static str,
}

impl Column {
    fn definition(&self) -> ColumnDefinition {
        ColumnDefinition {
            name: self.name.to_string(),
            type_: self.type_.to_string(),
            format: self.format.to_string(),
            description: self.description.to_string(),
            priority: self.priority,
        }
    }
}

const STRING: &str = "string";
const INTEGER: &str = "integer";
const BOOLEAN: &str = "boolean";

/// A column shown by plain `kubectl get`.
const fn col(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        priority: 0,
        description,
    }
}

/// A column shown only by `kubectl get -o wide`.
const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        priority: 1,
        description,
    }
}

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const CREATED_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const CONTAINERS_DESC: &str = "Names of each container in the template.";
const IMAGES_DESC: &str = "Images referenced by each container in the template.";
const SELECTOR_DESC: &str = "A label query over pods that should match the replicas count.";

const NAME: Column = Column {
    name: "Name",
    type_: STRING,
    format: "name",
    priority: 0,
    description: NAME_DESC,
};
const AGE: Column = col("Age", STRING, CREATED_DESC);
const WIDE_CONTAINERS: Column = wide("Containers", STRING, CONTAINERS_DESC);
const WIDE_IMAGES: Column = wide("Images", STRING, IMAGES_DESC);
const WIDE_SELECTOR: Column = wide("Selector", STRING, SELECTOR_DESC);

/// `rest.DefaultTableConvertor`: kinds without a printer.
const DEFAULT_COLUMNS: &[Column] = &[NAME, col("Created At", "date", CREATED_DESC)];

/// Prints one object's cells, given the time ages are measured up to.
type CellsFn = fn(&Value, Timestamp) -> Vec<Value>;

struct Printer {
    columns: &'static [Column],
    cells: CellsFn,
}

macro_rules! row {
    ($($cell:expr),* $(,)?) => {
        vec![$(Value::from($cell)),*]
    };
}

fn printer(group: &str, resource: &str) -> Option<Printer> {
    let (columns, cells): (&'static [Column], CellsFn) = match (group, resource) {
        ("", "pods") => (POD_COLUMNS, pod_cells),
        ("", "podtemplates") => (POD_TEMPLATE_COLUMNS, pod_template_cells),
        ("", "replicationcontrollers") => {
            (REPLICATION_CONTROLLER_COLUMNS, replication_controller_cells)
        }
        ("", "services") => (SERVICE_COLUMNS, service_cells),
        ("", "endpoints") => (ENDPOINTS_COLUMNS, endpoints_cells),
        ("", "nodes") => (NODE_COLUMNS, node_cells),
        ("", "events") | ("events.k8s.io", "events") => (EVENT_COLUMNS, event_cells),
        ("", "namespaces") => (NAMESPACE_COLUMNS, namespace_cells),
        ("", "secrets") => (SECRET_COLUMNS, secret_cells),
        ("", "serviceaccounts") => (SERVICE_ACCOUNT_COLUMNS, service_account_cells),
        ("", "persistentvolumes") => (PERSISTENT_VOLUME_COLUMNS, persistent_volume_cells),
        ("", "persistentvolumeclaims") => (PVC_COLUMNS, pvc_cells),
        ("", "componentstatuses") => (COMPONENT_STATUS_COLUMNS, component_status_cells),
        ("", "configmaps") => (CONFIG_MAP_COLUMNS, config_map_cells),
        ("", "resourcequotas") => (RESOURCE_QUOTA_COLUMNS, resource_quota_cells),
        ("apps", "deployments") => (DEPLOYMENT_COLUMNS, deployment_cells),
        ("apps", "replicasets") => (REPLICA_SET_COLUMNS, replica_set_cells),
        ("apps", "daemonsets") => (DAEMON_SET_COLUMNS, daemon_set_cells),
        ("apps", "statefulsets") => (STATEFUL_SET_COLUMNS, stateful_set_cells),
        ("apps", "controllerrevisions") => (CONTROLLER_REVISION_COLUMNS, controller_revision_cells),
        ("batch", "jobs") => (JOB_COLUMNS, job_cells),
        ("batch", "cronjobs") => (CRON_JOB_COLUMNS, cron_job_cells),
        ("policy", "poddisruptionbudgets") => (PDB_COLUMNS, pdb_cells),
        ("autoscaling", "horizontalpodautoscalers") => (HPA_COLUMNS, hpa_cells),
        ("networking.k8s.io", "ingresses") => (INGRESS_COLUMNS, ingress_cells),
        ("networking.k8s.io", "ingressclasses") => (INGRESS_CLASS_COLUMNS, ingress_class_cells),
        ("networking.k8s.io", "networkpolicies") => (NETWORK_POLICY_COLUMNS, network_policy_cells),
        ("networking.k8s.io", "servicecidrs") => (SERVICE_CIDR_COLUMNS, service_cidr_cells),
        ("networking.k8s.io", "ipaddresses") => (IP_ADDRESS_COLUMNS, ip_address_cells),
        ("rbac.authorization.k8s.io", "rolebindings") => (ROLE_BINDING_COLUMNS, role_binding_cells),
        ("rbac.authorization.k8s.io", "clusterrolebindings") => {
            (CLUSTER_ROLE_BINDING_COLUMNS, role_binding_cells)
        }
        ("certificates.k8s.io", "certificatesigningrequests") => (CSR_COLUMNS, csr_cells),
        ("certificates.k8s.io", "clustertrustbundles") => {
            (CLUSTER_TRUST_BUNDLE_COLUMNS, cluster_trust_bundle_cells)
        }
        ("coordination.k8s.io", "leases") => (LEASE_COLUMNS, lease_cells),
        ("coordination.k8s.io", "leasecandidates") => {
            (LEASE_CANDIDATE_COLUMNS, lease_candidate_cells)
        }
        ("storage.k8s.io", "storageclasses") => (STORAGE_CLASS_COLUMNS, storage_class_cells),
        ("storage.k8s.io", "volumeattributesclasses") => (
            VOLUME_ATTRIBUTES_CLASS_COLUMNS,
            volume_attributes_class_cells,
        ),
        ("storage.k8s.io", "volumeattachments") => {
            (VOLUME_ATTACHMENT_COLUMNS, volume_attachment_cells)
        }
        ("storage.k8s.io", "csinodes") => (CSI_NODE_COLUMNS, csi_node_cells),
        ("storage.k8s.io", "csidrivers") => (CSI_DRIVER_COLUMNS, csi_driver_cells),
        // csistoragecapacities: upstream's store registers
        // rest.NewDefaultTableConvertor although printers.go has a handler.
        ("scheduling.k8s.io", "priorityclasses") => (PRIORITY_CLASS_COLUMNS, priority_class_cells),
        ("node.k8s.io", "runtimeclasses") => (RUNTIME_CLASS_COLUMNS, runtime_class_cells),
        ("discovery.k8s.io", "endpointslices") => (ENDPOINT_SLICE_COLUMNS, endpoint_slice_cells),
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations")
        | ("admissionregistration.k8s.io", "validatingwebhookconfigurations") => {
            (WEBHOOK_CONFIGURATION_COLUMNS, webhook_configuration_cells)
        }
        ("admissionregistration.k8s.io", "validatingadmissionpolicies") => (
            VALIDATING_ADMISSION_POLICY_COLUMNS,
            validating_admission_policy_cells,
        ),
        ("admissionregistration.k8s.io", "mutatingadmissionpolicies") => (
            MUTATING_ADMISSION_POLICY_COLUMNS,
            mutating_admission_policy_cells,
        ),
        ("admissionregistration.k8s.io", "validatingadmissionpolicybindings")
        | ("admissionregistration.k8s.io", "mutatingadmissionpolicybindings") => (
            ADMISSION_POLICY_BINDING_COLUMNS,
            admission_policy_binding_cells,
        ),
        ("apiregistration.k8s.io", "apiservices") => (API_SERVICE_COLUMNS, api_service_cells),
        ("flowcontrol.apiserver.k8s.io", "flowschemas") => (FLOW_SCHEMA_COLUMNS, flow_schema_cells),
        ("flowcontrol.apiserver.k8s.io", "prioritylevelconfigurations") => {
            (PRIORITY_LEVEL_COLUMNS, priority_level_cells)
        }
        ("internal.apiserver.k8s.io", "storageversions") => {
            (STORAGE_VERSION_COLUMNS, storage_version_cells)
        }
        ("resource.k8s.io", "deviceclasses") | ("resource.k8s.io", "resourceclaimtemplates") => {
            (NAME_AGE_COLUMNS, name_age_cells)
        }
        ("resource.k8s.io", "resourceclaims") => (RESOURCE_CLAIM_COLUMNS, resource_claim_cells),
        ("resource.k8s.io", "resourceslices") => (RESOURCE_SLICE_COLUMNS, resource_slice_cells),
        ("storagemigration.k8s.io", "storageversionmigrations") => (
            STORAGE_VERSION_MIGRATION_COLUMNS,
            storage_version_migration_cells,
        ),
        _ => return None,
    };
    Some(Printer { columns, cells })
}

// ---------------------------------------------------------------------------
// Reading raw JSON

/// The value at `path`, if present and not `null`.
fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(v, |v, key| v.get(*key))
        .filter(|v| !v.is_null())
}

fn has(v: &Value, path: &[&str]) -> bool {
    at(v, path).is_some()
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path).and_then(Value::as_str).unwrap_or("")
}

fn opt_str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

fn as_int(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX)))
        // Truncation toward zero, saturating: what a float in an int field decodes to at best.
        .or_else(|| v.as_f64().map(|f| f as i64))
}

fn int_at(v: &Value, path: &[&str]) -> i64 {
    opt_int_at(v, path).unwrap_or(0)
}

fn opt_int_at(v: &Value, path: &[&str]) -> Option<i64> {
    at(v, path).and_then(as_int)
}

fn opt_bool_at(v: &Value, path: &[&str]) -> Option<bool> {
    at(v, path).and_then(Value::as_bool)
}

fn bool_at(v: &Value, path: &[&str]) -> bool {
    opt_bool_at(v, path).unwrap_or(false)
}

fn list_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn map_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Map<String, Value>> {
    at(v, path).and_then(Value::as_object)
}

/// The number of entries of a map (or list) field.
fn len_at(v: &Value, path: &[&str]) -> i64 {
    let n = match at(v, path) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    };
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A scalar as Go would print the string it holds.
fn scalar_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn name_of(obj: &Value) -> &str {
    str_at(obj, &["metadata", "name"])
}

fn is_deleting(obj: &Value) -> bool {
    has(obj, &["metadata", "deletionTimestamp"])
}

fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    map_at(obj, &["metadata", "annotations"])?
        .get(key)?
        .as_str()
}

/// Go's zero `time.Time`, which metav1.Time treats as unset.
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

fn parse_time(s: &str) -> Option<Timestamp> {
    let t: Timestamp = s.trim().parse().ok()?;
    if t.as_second() == GO_ZERO_TIME_SECONDS && t.subsec_nanosecond() == 0 {
        return None;
    }
    Some(t)
}

fn time_at(v: &Value, path: &[&str]) -> Option<Timestamp> {
    opt_str_at(v, path).and_then(parse_time)
}

/// `translateTimestampSince`: the age of `t`, or `<unknown>` when unset.
fn since(t: Option<Timestamp>, now: Timestamp) -> String {
    match t {
        Some(t) => human_duration(now.duration_since(t)),
        None => "<unknown>".to_string(),
    }
}

fn age(obj: &Value, now: Timestamp) -> String {
    since(time_at(obj, &["metadata", "creationTimestamp"]), now)
}

/// The later of two optional times (an unset time is the earliest).
fn later(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b > a { b } else { a }),
        (a, None) => a,
        (None, b) => b,
    }
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s.to_string()
    }
}

fn ptr_or_unset(v: &Value, path: &[&str]) -> String {
    match at(v, path) {
        Some(x) => scalar_string(x),
        None => "<unset>".to_string(),
    }
}

/// `printBoolPtr`.
fn bool_ptr(v: &Value, path: &[&str]) -> String {
    match opt_bool_at(v, path) {
        Some(true) => "True".to_string(),
        Some(false) => "False".to_string(),
        None => "<unset>".to_string(),
    }
}

/// `layoutContainerCells`: container names and images, comma-separated.
fn container_cells(pod_spec: Option<&Value>) -> (String, String) {
    let containers = pod_spec.map_or(&[][..], |s| list_at(s, &["containers"]));
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

/// `labels.FormatLabels`: `k=v` sorted by key, or `<none>`.
fn format_labels(m: Option<&Map<String, Value>>) -> String {
    let Some(m) = m else {
        return "<none>".to_string();
    };
    let mut pairs: Vec<(&String, String)> = m.iter().map(|(k, v)| (k, scalar_string(v))).collect();
    pairs.sort();
    let s = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    or_none(&s)
}

fn string_list(v: &Value, path: &[&str]) -> Vec<String> {
    list_at(v, path).iter().map(scalar_string).collect()
}

// ---------------------------------------------------------------------------
// Label selectors (`metav1.LabelSelectorAsSelector(...).String()`)

/// The selector string, `""` for a nil or empty selector, `Err` where the
/// API server could not turn it into a selector.
fn label_selector_string(sel: Option<&Value>) -> Result<String, ()> {
    let Some(sel) = sel else {
        return Ok(String::new());
    };
    if !sel.is_object() {
        return Err(());
    }
    let match_labels = map_at(sel, &["matchLabels"]);
    let exprs = list_at(sel, &["matchExpressions"]);
    if match_labels.map_or(0, Map::len) + exprs.len() == 0 {
        return Ok(String::new());
    }
    let mut reqs: Vec<(String, String)> = Vec::new();
    for (k, v) in match_labels.into_iter().flatten() {
        let v = v.as_str().ok_or(())?;
        if !valid_label_key(k) || !valid_label_value(v) {
            return Err(());
        }
        reqs.push((k.clone(), format!("{k}={v}")));
    }
    for e in exprs {
        let key = str_at(e, &["key"]);
        if !valid_label_key(key) {
            return Err(());
        }
        let mut values = Vec::new();
        for v in list_at(e, &["values"]) {
            let v = v.as_str().ok_or(())?;
            if !valid_label_value(v) {
                return Err(());
            }
            values.push(v);
        }
        values.sort_unstable();
        let joined = values.join(",");
        let s = match str_at(e, &["operator"]) {
            "In" | "NotIn" if values.is_empty() => return Err(()),
            "In" => format!("{key} in ({joined})"),
            "NotIn" => format!("{key} notin ({joined})"),
            "Exists" | "DoesNotExist" if !values.is_empty() => return Err(()),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return Err(()),
        };
        reqs.push((key.to_string(), s));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(reqs
        .into_iter()
        .map(|(_, s)| s)
        .collect::<Vec<_>>()
        .join(","))
}

/// `metav1.FormatLabelSelector`.
fn format_label_selector(sel: Option<&Value>) -> String {
    match label_selector_string(sel) {
        Ok(s) if s.is_empty() => "<none>".to_string(),
        Ok(s) => s,
        Err(()) => "<error>".to_string(),
    }
}

fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

fn valid_label_key(k: &str) -> bool {
    match k.split_once('/') {
        None => is_label_name(k),
        Some((prefix, name)) => is_dns1123_subdomain(prefix) && is_label_name(name),
    }
}

fn valid_label_value(v: &str) -> bool {
    v.is_empty() || is_label_name(v)
}

/// `LabelSelector.String()` as gogo-protobuf generates it (used where the
/// API server prints a selector struct rather than a selector).
fn label_selector_struct_string(sel: &Value) -> String {
    let mut labels: Vec<(&String, String)> = map_at(sel, &["matchLabels"])
        .into_iter()
        .flatten()
        .map(|(k, v)| (k, scalar_string(v)))
        .collect();
    labels.sort();
    let labels: String = labels.iter().map(|(k, v)| format!("{k}: {v},")).collect();
    let exprs: String = list_at(sel, &["matchExpressions"])
        .iter()
        .map(|e| {
            format!(
                "LabelSelectorRequirement{{Key:{},Operator:{},Values:[{}],}},",
                str_at(e, &["key"]),
                str_at(e, &["operator"]),
                string_list(e, &["values"]).join(" ")
            )
        })
        .collect();
    format!(
        "&LabelSelector{{MatchLabels:map[string]string{{{labels}}},MatchExpressions:[]LabelSelectorRequirement{{{exprs}}},}}"
    )
}

// ---------------------------------------------------------------------------
// Quantities (`resource.Quantity.String()`)

#[derive(Clone, Copy, PartialEq, Eq)]
enum QuantityFormat {
    DecimalSi,
    BinarySi,
    DecimalExponent,
}

/// A quantity field as the API server prints it: canonical form, `"0"` when
/// unset.
fn quantity_at(v: &Value, path: &[&str]) -> String {
    match at(v, path) {
        Some(q) => quantity_string(q),
        None => "0".to_string(),
    }
}

/// A `*Quantity` field: `<nil>` when unset.
fn quantity_ptr_at(v: &Value, path: &[&str]) -> String {
    match at(v, path) {
        Some(q) => quantity_string(q),
        None => "<nil>".to_string(),
    }
}

fn quantity_string(q: &Value) -> String {
    let raw = scalar_string(q);
    canonical_quantity(&raw).unwrap_or(raw)
}

/// Parses a quantity the way `resource.ParseQuantity` does and prints it
/// the way `Quantity.String()` does; `None` if it does not parse (or is too
/// large to handle here).
fn canonical_quantity(s: &str) -> Option<String> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.is_empty() {
        return None;
    }
    let mut pos = 0;
    let mut negative = false;
    match b[0] {
        b'-' => {
            negative = true;
            pos = 1;
        }
        b'+' => pos = 1,
        _ => {}
    }
    while pos < b.len() && b[pos] == b'0' {
        pos += 1;
    }
    let num_start = pos;
    while pos < b.len() && b[pos].is_ascii_digit() {
        pos += 1;
    }
    let num = if pos == num_start {
        "0"
    } else {
        &s[num_start..pos]
    };
    let mut denom = "";
    if pos < b.len() && b[pos] == b'.' {
        pos += 1;
        let denom_start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        denom = &s[denom_start..pos];
    }
    let suffix_start = pos;
    while pos < b.len() && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < b.len() && matches!(b[pos], b'-' | b'+') {
        pos += 1;
    }
    while pos < b.len() && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos < b.len() {
        return None;
    }
    let suffix = &s[suffix_start..];
    let (base, exponent, format): (u32, i32, QuantityFormat) = match suffix {
        "n" => (10, -9, QuantityFormat::DecimalSi),
        "u" => (10, -6, QuantityFormat::DecimalSi),
        "m" => (10, -3, QuantityFormat::DecimalSi),
        "" => (10, 0, QuantityFormat::DecimalSi),
        "k" => (10, 3, QuantityFormat::DecimalSi),
        "M" => (10, 6, QuantityFormat::DecimalSi),
        "G" => (10, 9, QuantityFormat::DecimalSi),
        "T" => (10, 12, QuantityFormat::DecimalSi),
        "P" => (10, 15, QuantityFormat::DecimalSi),
        "E" => (10, 18, QuantityFormat::DecimalSi),
        "Ki" => (2, 10, QuantityFormat::BinarySi),
        "Mi" => (2, 20, QuantityFormat::BinarySi),
        "Gi" => (2, 30, QuantityFormat::BinarySi),
        "Ti" => (2, 40, QuantityFormat::BinarySi),
        "Pi" => (2, 50, QuantityFormat::BinarySi),
        "Ei" => (2, 60, QuantityFormat::BinarySi),
        _ if suffix.len() > 1 && (suffix.starts_with('e') || suffix.starts_with('E')) => {
            let e: i64 = suffix[1..].parse().ok()?;
            (10, i32::try_from(e).ok()?, QuantityFormat::DecimalExponent)
        }
        _ => return None,
    };
    let digits = format!("{num}{denom}");
    let denom_len = i32::try_from(denom.len()).ok()?;
    let digits_len = i32::try_from(digits.len()).ok()?;

    // ParseQuantity keeps the string as written when it is already in
    // canonical form (and "canonical" is judged loosely: a leading "+" or
    // zeros survive).
    let keeps_input = match format {
        QuantityFormat::DecimalSi | QuantityFormat::DecimalExponent => {
            let scale = exponent - denom_len;
            18 - digits_len >= 0
                && scale >= -9
                && scale % 3 == 0
                && !digits.ends_with("000")
                && !digits.starts_with('0')
        }
        QuantityFormat::BinarySi => {
            let precision = 15 - digits_len - (exponent as f32 * 3.0 / 10.0) as i32 - 1;
            denom.is_empty()
                && precision >= 0
                && digits
                    .parse::<i64>()
                    .is_ok_and(|v| v.checked_mul(1i64 << exponent).is_some() && v & 0x07 != 0)
        }
    };
    if keeps_input {
        return Some(s.to_string());
    }

    // The exact value: mantissa * 10^exp10.
    let mut mantissa: u128 = digits.parse().ok()?;
    let mut exp10 = -denom_len;
    if base == 10 {
        exp10 = exp10.checked_add(exponent)?;
    } else {
        mantissa = mantissa.checked_mul(1u128 << exponent)?;
    }
    // Round anything finer than a nano up to the next nano.
    if exp10 < -9 {
        let drop = u32::try_from(-9 - exp10).ok()?;
        mantissa = match 10u128.checked_pow(drop) {
            Some(div) => mantissa / div + u128::from(!divides(div, mantissa)),
            None => u128::from(mantissa != 0),
        };
        exp10 = -9;
    }
    if mantissa == 0 {
        return Some("0".to_string());
    }
    let (int_part, exact) = split_decimal(mantissa, exp10)?;
    let mut format = format;
    if format == QuantityFormat::BinarySi {
        const MAX_ALLOWED: u128 = i64::MAX as u128;
        if int_part > MAX_ALLOWED || (int_part == MAX_ALLOWED && !exact) {
            mantissa = MAX_ALLOWED;
            exp10 = 0;
        } else if int_part < 1024 || !exact {
            format = QuantityFormat::DecimalSi;
        }
    }
    let sign = if negative { "-" } else { "" };
    if format == QuantityFormat::BinarySi {
        let (mut n, _) = split_decimal(mantissa, exp10)?;
        let mut times = 0;
        while divides(1024, n) {
            n /= 1024;
            times += 1;
        }
        let suffix = match times {
            1 => "Ki",
            2 => "Mi",
            3 => "Gi",
            4 => "Ti",
            5 => "Pi",
            6 => "Ei",
            _ => "",
        };
        return Some(format!("{sign}{n}{suffix}"));
    }
    while divides(10, mantissa) {
        mantissa /= 10;
        exp10 += 1;
    }
    while exp10 % 3 != 0 {
        mantissa = mantissa.checked_mul(10)?;
        exp10 -= 1;
    }
    let suffix = match format {
        QuantityFormat::DecimalExponent if exp10 == 0 => String::new(),
        QuantityFormat::DecimalExponent => format!("e{exp10}"),
        _ => match exp10 {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            _ => "",
        }
        .to_string(),
    };
    Some(format!("{sign}{mantissa}{suffix}"))
}

/// Whether `d` divides `n` (`d` > 0).
fn divides(d: u128, n: u128) -> bool {
    n.checked_rem(d) == Some(0)
}

/// The integer part of `mantissa * 10^exp10` and whether that is exact.
fn split_decimal(mantissa: u128, exp10: i32) -> Option<(u128, bool)> {
    if exp10 >= 0 {
        let mul = 10u128.checked_pow(u32::try_from(exp10).ok()?)?;
        return Some((mantissa.checked_mul(mul)?, true));
    }
    match 10u128.checked_pow(u32::try_from(-exp10).ok()?) {
        Some(div) => Some((mantissa / div, divides(div, mantissa))),
        None => Some((0, mantissa == 0)),
    }
}

/// `intstr.IntOrString.String()`.
fn int_or_string(v: &Value) -> String {
    scalar_string(v)
}

// ---------------------------------------------------------------------------
// Default table (`rest.DefaultTableConvertor`)

fn default_cells(obj: &Value, _now: Timestamp) -> Vec<Value> {
    let created = time_at(obj, &["metadata", "creationTimestamp"])
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string());
    row![name_of(obj), created]
}

const NAME_AGE_COLUMNS: &[Column] = &[NAME, AGE];

fn name_age_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    row![name_of(obj), age(obj, now)]
}

// ---------------------------------------------------------------------------
// Pods

const POD_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Ready",
        STRING,
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    col(
        "Status",
        STRING,
        "The aggregate status of the containers in this pod.",
    ),
    col(
        "Restarts",
        STRING,
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    wide(
        "IP",
        STRING,
        "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
    ),
    wide(
        "Node",
        STRING,
        "NodeName indicates in which node this pod is scheduled.",
    ),
    wide(
        "Nominated Node",
        STRING,
        "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.",
    ),
    wide(
        "Readiness Gates",
        STRING,
        "If specified, all readiness gates will be evaluated for pod readiness.",
    ),
];

/// The status of the first condition of `type_`, if any.
fn condition_status<'a>(obj: &'a Value, path: &[&str], type_: &str) -> Option<&'a str> {
    list_at(obj, path)
        .iter()
        .find(|c| str_at(c, &["type"]) == type_)
        .map(|c| str_at(c, &["status"]))
}

fn condition_true(obj: &Value, path: &[&str], type_: &str) -> bool {
    condition_status(obj, path, type_) == Some("True")
}

/// The STATUS column of a pod, as `printPod` works it out.
struct PodSummary {
    ready: i64,
    total: i64,
    reason: String,
    restarts: i64,
    last_restart: Option<Timestamp>,
}

fn summarize_pod(pod: &Value) -> PodSummary {
    let containers = list_at(pod, &["spec", "containers"]);
    let init_specs = list_at(pod, &["spec", "initContainers"]);
    let mut total = i64::try_from(containers.len()).unwrap_or(i64::MAX);
    let is_sidecar_spec = |c: &Value| str_at(c, &["restartPolicy"]) == "Always";
    total += i64::try_from(init_specs.iter().filter(|c| is_sidecar_spec(c)).count()).unwrap_or(0);
    // A later entry of the same name wins, as in the map upstream builds.
    let is_sidecar = |name: &str| {
        init_specs
            .iter()
            .rev()
            .find(|c| str_at(c, &["name"]) == name)
            .is_some_and(is_sidecar_spec)
    };

    let phase = str_at(pod, &["status", "phase"]);
    let status_reason = str_at(pod, &["status", "reason"]);
    let mut reason = if status_reason.is_empty() {
        phase.to_string()
    } else {
        status_reason.to_string()
    };
    for c in list_at(pod, &["status", "conditions"]) {
        if str_at(c, &["type"]) == "PodScheduled" && str_at(c, &["reason"]) == "SchedulingGated" {
            reason = "SchedulingGated".to_string();
        }
    }

    let mut ready = 0i64;
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut last_restart = None;
    let mut last_sidecar_restart = None;
    let mut initializing = false;
    for (i, cs) in list_at(pod, &["status", "initContainerStatuses"])
        .iter()
        .enumerate()
    {
        let count = int_at(cs, &["restartCount"]);
        let finished = time_at(cs, &["lastState", "terminated", "finishedAt"]);
        restarts = restarts.saturating_add(count);
        last_restart = later(last_restart, finished);
        let sidecar = is_sidecar(str_at(cs, &["name"]));
        if sidecar {
            sidecar_restarts = sidecar_restarts.saturating_add(count);
            last_sidecar_restart = later(last_sidecar_restart, finished);
        }
        let terminated = at(cs, &["state", "terminated"]);
        let waiting_reason = str_at(cs, &["state", "waiting", "reason"]);
        if terminated.is_some_and(|t| int_at(t, &["exitCode"]) == 0) {
            continue;
        }
        if sidecar && bool_at(cs, &["started"]) {
            if bool_at(cs, &["ready"]) {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(t) = terminated {
            let r = str_at(t, &["reason"]);
            if !r.is_empty() {
                format!("Init:{r}")
            } else if int_at(t, &["signal"]) != 0 {
                format!("Init:Signal:{}", int_at(t, &["signal"]))
            } else {
                format!("Init:ExitCode:{}", int_at(t, &["exitCode"]))
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || condition_true(pod, &["status", "conditions"], "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for cs in list_at(pod, &["status", "containerStatuses"]).iter().rev() {
            restarts = restarts.saturating_add(int_at(cs, &["restartCount"]));
            last_restart = later(
                last_restart,
                time_at(cs, &["lastState", "terminated", "finishedAt"]),
            );
            let waiting_reason = str_at(cs, &["state", "waiting", "reason"]);
            let terminated = at(cs, &["state", "terminated"]);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                let r = str_at(t, &["reason"]);
                reason = if !r.is_empty() {
                    r.to_string()
                } else if int_at(t, &["signal"]) != 0 {
                    format!("Signal:{}", int_at(t, &["signal"]))
                } else {
                    format!("ExitCode:{}", int_at(t, &["exitCode"]))
                };
            } else if bool_at(cs, &["ready"]) && has(cs, &["state", "running"]) {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose main container completed but that still has a
        // running one is not "Completed".
        if reason == "Completed" && has_running {
            let ready_condition = list_at(pod, &["status", "conditions"])
                .iter()
                .any(|c| str_at(c, &["type"]) == "Ready" && str_at(c, &["status"]) == "True");
            reason = if ready_condition {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    if is_deleting(pod) && status_reason == "NodeLost" {
        reason = "Unknown".to_string();
    } else if is_deleting(pod) && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    PodSummary {
        ready,
        total,
        reason,
        restarts,
        last_restart,
    }
}

fn pod_cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let s = summarize_pod(pod);
    let restarts = match s.last_restart {
        Some(t) if s.restarts != 0 => format!("{} ({} ago)", s.restarts, since(Some(t), now)),
        _ => s.restarts.to_string(),
    };
    // The typed conversion fills podIPs from the older podIP field.
    let ip = match list_at(pod, &["status", "podIPs"]).first() {
        Some(p) => str_at(p, &["ip"]),
        None => str_at(pod, &["status", "podIP"]),
    };
    let gates = list_at(pod, &["spec", "readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = list_at(pod, &["status", "conditions"]);
        let true_count = gates
            .iter()
            .filter(|g| {
                let t = str_at(g, &["conditionType"]);
                conditions
                    .iter()
                    .find(|c| str_at(c, &["type"]) == t)
                    .is_some_and(|c| str_at(c, &["status"]) == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };
    row![
        name_of(pod),
        format!("{}/{}", s.ready, s.total),
        s.reason,
        restarts,
        age(pod, now),
        or_none(ip),
        or_none(str_at(pod, &["spec", "nodeName"])),
        or_none(str_at(pod, &["status", "nominatedNodeName"])),
        readiness_gates,
    ]
}

const POD_TEMPLATE_COLUMNS: &[Column] = &[
    NAME,
    col("Containers", STRING, CONTAINERS_DESC),
    col("Images", STRING, IMAGES_DESC),
    col("Pod Labels", STRING, "The labels for the pod template."),
];

fn pod_template_cells(obj: &Value, _now: Timestamp) -> Vec<Value> {
    let (names, images) = container_cells(at(obj, &["template", "spec"]));
    row![
        name_of(obj),
        names,
        images,
        format_labels(map_at(obj, &["template", "metadata", "labels"])),
    ]
}

// ---------------------------------------------------------------------------
// Workloads

const REPLICATION_CONTROLLER_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Desired",
        INTEGER,
        "Replicas is the number of desired replicas.",
    ),
    col(
        "Current",
        INTEGER,
        "Replicas is the most recently observed number of replicas.",
    ),
    col(
        "Ready",
        INTEGER,
        "The number of ready replicas for this replication controller.",
    ),
    AGE,
    WIDE_CONTAINERS,
    WIDE_IMAGES,
    WIDE_SELECTOR,
];

fn replication_controller_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = container_cells(at(obj, &["spec", "template", "spec"]));
    row![
        name_of(obj),
        int_at(obj, &["spec", "replicas"]),
        int_at(obj, &["status", "replicas"]),
        int_at(obj, &["status", "readyReplicas"]),
        age(obj, now),
        names,
        images,
        format_labels(map_at(obj, &["spec", "selector"])),
    ]
}

const REPLICA_SET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Desired",
        INTEGER,
        "Replicas is the number of desired replicas.",
    ),
    col(
        "Current",
        INTEGER,
        "Replicas is the most recently observed number of replicas.",
    ),
    col(
        "Ready",
        INTEGER,
        "The number of ready replicas for this replica set.",
    ),
    AGE,
    WIDE_CONTAINERS,
    WIDE_IMAGES,
    WIDE_SELECTOR,
];

fn replica_set_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = container_cells(at(obj, &["spec", "template", "spec"]));
    row![
        name_of(obj),
        int_at(obj, &["spec", "replicas"]),
        int_at(obj, &["status", "replicas"]),
        int_at(obj, &["status", "readyReplicas"]),
        age(obj, now),
        names,
        images,
        format_label_selector(at(obj, &["spec", "selector"])),
    ]
}

const DAEMON_SET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Desired",
        INTEGER,
        "The total number of nodes that should be running the daemon pod.",
    ),
    col(
        "Current",
        INTEGER,
        "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
    ),
    col(
        "Ready",
        INTEGER,
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
    ),
    col(
        "Up-to-date",
        INTEGER,
        "The total number of nodes that are running updated daemon pod",
    ),
    col(
        "Available",
        INTEGER,
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.",
    ),
    col(
        "Node Selector",
        STRING,
        "NodeSelector is a selector which must be true for the pod to fit on a node.",
    ),
    AGE,
    WIDE_CONTAINERS,
    WIDE_IMAGES,
    WIDE_SELECTOR,
];

fn daemon_set_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = container_cells(at(obj, &["spec", "template", "spec"]));
    row![
        name_of(obj),
        int_at(obj, &["status", "desiredNumberScheduled"]),
        int_at(obj, &["status", "currentNumberScheduled"]),
        int_at(obj, &["status", "numberReady"]),
        int_at(obj, &["status", "updatedNumberScheduled"]),
        int_at(obj, &["status", "numberAvailable"]),
        format_labels(map_at(obj, &["spec", "template", "spec", "nodeSelector"])),
        age(obj, now),
        names,
        images,
        format_label_selector(at(obj, &["spec", "selector"])),
    ]
}

const STATEFUL_SET_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", STRING, "Number of the pod with ready state"),
    AGE,
    WIDE_CONTAINERS,
    WIDE_IMAGES,
];

fn stateful_set_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = container_cells(at(obj, &["spec", "template", "spec"]));
    row![
        name_of(obj),
        format!(
            "{}/{}",
            int_at(obj, &["status", "readyReplicas"]),
            int_at(obj, &["spec", "replicas"])
        ),
        age(obj, now),
        names,
        images,
    ]
}

const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", STRING, "Number of the pod with ready state"),
    col(
        "Up-to-date",
        STRING,
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
    ),
    col(
        "Available",
        STRING,
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE,
    WIDE_CONTAINERS,
    WIDE_IMAGES,
    wide(
        "Selector",
        STRING,
        "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
    ),
];

fn deployment_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = container_cells(at(obj, &["spec", "template", "spec"]));
    let selector = label_selector_string(at(obj, &["spec", "selector"]))
        .unwrap_or_else(|()| "<invalid>".to_string());
    row![
        name_of(obj),
        format!(
            "{}/{}",
            int_at(obj, &["status", "readyReplicas"]),
            int_at(obj, &["spec", "replicas"])
        ),
        int_at(obj, &["status", "updatedReplicas"]),
        int_at(obj, &["status", "availableReplicas"]),
        age(obj, now),
        names,
        images,
        selector,
    ]
}

const CONTROLLER_REVISION_COLUMNS: &[Column] = &[
    NAME,
    col("Controller", STRING, "Controller of the object"),
    col(
        "Revision",
        STRING,
        "Revision indicates the revision of the state represented by Data.",
    ),
    AGE,
];

fn controller_revision_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let controller = list_at(obj, &["metadata", "ownerReferences"])
        .iter()
        .find(|r| bool_at(r, &["controller"]));
    let controller_name = match controller {
        None => "<none>".to_string(),
        Some(r) => {
            let name = str_at(r, &["name"]);
            let kind = str_at(r, &["kind"]);
            let api_version = str_at(r, &["apiVersion"]);
            // schema.ParseGroupVersion, then GroupKind.String().
            let group = match api_version.matches('/').count() {
                _ if api_version.is_empty() || api_version == "/" => Some(""),
                0 => Some(""),
                1 => api_version.split_once('/').map(|(g, _)| g),
                _ => None,
            };
            match group {
                Some("") if kind.is_empty() => name.to_string(),
                Some("") => format!("{}/{name}", kind.to_lowercase()),
                Some(g) => format!("{}.{}/{name}", kind.to_lowercase(), g.to_lowercase()),
                None => "<none>".to_string(),
            }
        }
    };
    row![
        name_of(obj),
        controller_name,
        int_at(obj, &["revision"]),
        age(obj, now),
    ]
}

const JOB_COLUMNS: &[Column] = &[
    NAME,
    col("Status", STRING, "Status of the job."),
    col(
        "Completions",
        STRING,
        "The number of pods which reached phase Succeeded.",
    ),
    col("Duration", STRING, "Time required to complete the job."),
    AGE,
    WIDE_CONTAINERS,
    WIDE_IMAGES,
    WIDE_SELECTOR,
];

fn job_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let succeeded = int_at(obj, &["status", "succeeded"]);
    let completions = match opt_int_at(obj, &["spec", "completions"]) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int_at(obj, &["spec", "parallelism"]) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let start = time_at(obj, &["status", "startTime"]);
    let completion = time_at(obj, &["status", "completionTime"]);
    let duration = match (start, completion) {
        (None, _) => String::new(),
        (Some(s), None) => human_duration(now.duration_since(s)),
        (Some(s), Some(c)) => human_duration(c.duration_since(s)),
    };
    let conditions = &["status", "conditions"];
    let status = if condition_true(obj, conditions, "Complete") {
        "Complete"
    } else if condition_true(obj, conditions, "Failed") {
        "Failed"
    } else if is_deleting(obj) {
        "Terminating"
    } else if condition_true(obj, conditions, "Suspended") {
        "Suspended"
    } else if condition_true(obj, conditions, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = container_cells(at(obj, &["spec", "template", "spec"]));
    row![
        name_of(obj),
        status,
        completions,
        duration,
        age(obj, now),
        names,
        images,
        format_label_selector(at(obj, &["spec", "selector"])),
    ]
}

const CRON_JOB_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Schedule",
        STRING,
        "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
    ),
    col(
        "Timezone",
        STRING,
        "The time zone name for the given schedule.",
    ),
    col(
        "Suspend",
        BOOLEAN,
        "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.",
    ),
    col("Active", INTEGER, "A list of pointers to currently running jobs."),
    col(
        "Last Schedule",
        STRING,
        "Information when was the last time the job was successfully scheduled.",
    ),
    AGE,
    WIDE_CONTAINERS,
    WIDE_IMAGES,
    WIDE_SELECTOR,
];

fn cron_job_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let last_schedule = if has(obj, &["status", "lastScheduleTime"]) {
        since(time_at(obj, &["status", "lastScheduleTime"]), now)
    } else {
        "<none>".to_string()
    };
    let job_spec = at(obj, &["spec", "jobTemplate", "spec"]);
    let (names, images) = container_cells(job_spec.and_then(|j| at(j, &["template", "spec"])));
    row![
        name_of(obj),
        str_at(obj, &["spec", "schedule"]),
        opt_str_at(obj, &["spec", "timeZone"]).unwrap_or("<none>"),
        bool_ptr(obj, &["spec", "suspend"]),
        len_at(obj, &["status", "active"]),
        last_schedule,
        age(obj, now),
        names,
        images,
        format_label_selector(job_spec.and_then(|j| at(j, &["selector"]))),
    ]
}

const PDB_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Min Available",
        STRING,
        "The minimum number of pods that must be available.",
    ),
    col(
        "Max Unavailable",
        STRING,
        "The maximum number of pods that may be unavailable.",
    ),
    col(
        "Allowed Disruptions",
        INTEGER,
        "Calculated number of pods that may be disrupted at this time.",
    ),
    AGE,
];

fn pdb_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let or_na = |path: &[&str]| at(obj, path).map_or_else(|| "N/A".to_string(), int_or_string);
    row![
        name_of(obj),
        or_na(&["spec", "minAvailable"]),
        or_na(&["spec", "maxUnavailable"]),
        int_at(obj, &["status", "disruptionsAllowed"]),
        age(obj, now),
    ]
}

const HPA_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Reference",
        STRING,
        "scaleTargetRef points to the target resource to scale.",
    ),
    col(
        "Targets",
        STRING,
        "metrics contains the specifications for which to use to calculate the desired replica count.",
    ),
    col(
        "MinPods",
        STRING,
        "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.",
    ),
    col(
        "MaxPods",
        STRING,
        "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up.",
    ),
    col(
        "Replicas",
        STRING,
        "currentReplicas is current number of replicas of pods managed by this autoscaler.",
    ),
    AGE,
];

fn hpa_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let reference = format!(
        "{}/{}",
        str_at(obj, &["spec", "scaleTargetRef", "kind"]),
        str_at(obj, &["spec", "scaleTargetRef", "name"])
    );
    let min_pods = opt_int_at(obj, &["spec", "minReplicas"])
        .map_or_else(|| "<unset>".to_string(), |m| m.to_string());
    row![
        name_of(obj),
        reference,
        hpa_targets(obj),
        min_pods,
        int_at(obj, &["spec", "maxReplicas"]),
        int_at(obj, &["status", "currentReplicas"]),
        age(obj, now),
    ]
}

/// `formatHPAMetrics`, reading autoscaling/v2 objects (and the CPU target of
/// autoscaling/v1 ones, as their conversion does).
fn hpa_targets(obj: &Value) -> String {
    let mut specs: Vec<Value> = list_at(obj, &["spec", "metrics"]).to_vec();
    let mut statuses: Vec<Value> = list_at(obj, &["status", "currentMetrics"]).to_vec();
    if specs.is_empty() {
        if let Some(target) = opt_int_at(obj, &["spec", "targetCPUUtilizationPercentage"]) {
            specs.push(serde_json::json!({"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}}));
        }
    }
    if statuses.is_empty() {
        if let Some(current) = opt_int_at(obj, &["status", "currentCPUUtilizationPercentage"]) {
            statuses.push(serde_json::json!({"type": "Resource", "resource": {
                "name": "cpu", "current": {"averageUtilization": current}}}));
        }
    }
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let unknown = || "<unknown>".to_string();
    let mut list: Vec<String> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let status = statuses.get(i);
        let status_of = |source: &str| status.and_then(|s| at(s, &[source]));
        let entry = match str_at(spec, &["type"]) {
            kind @ ("External" | "Object") => {
                let source = if kind == "External" {
                    "external"
                } else {
                    "object"
                };
                if has(spec, &[source, "target", "averageValue"]) {
                    let current = status_of(source)
                        .filter(|s| has(s, &["current", "averageValue"]))
                        .map_or_else(unknown, |s| {
                            quantity_ptr_at(s, &["current", "averageValue"])
                        });
                    format!(
                        "{current}/{} (avg)",
                        quantity_ptr_at(spec, &[source, "target", "averageValue"])
                    )
                } else {
                    let current = status_of(source)
                        .map_or_else(unknown, |s| quantity_ptr_at(s, &["current", "value"]));
                    format!(
                        "{current}/{}",
                        quantity_ptr_at(spec, &[source, "target", "value"])
                    )
                }
            }
            "Pods" => {
                let current = status_of("pods").map_or_else(unknown, |s| {
                    quantity_ptr_at(s, &["current", "averageValue"])
                });
                format!(
                    "{current}/{}",
                    quantity_ptr_at(spec, &["pods", "target", "averageValue"])
                )
            }
            kind @ ("Resource" | "ContainerResource") => {
                let source = if kind == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let name = str_at(spec, &[source, "name"]);
                if has(spec, &[source, "target", "averageValue"]) {
                    let current = status_of(source).map_or_else(unknown, |s| {
                        quantity_ptr_at(s, &["current", "averageValue"])
                    });
                    format!(
                        "{name}: {current}/{}",
                        quantity_ptr_at(spec, &[source, "target", "averageValue"])
                    )
                } else {
                    let current = status_of(source)
                        .and_then(|s| opt_int_at(s, &["current", "averageUtilization"]))
                        .map_or_else(unknown, |u| format!("{u}%"));
                    let target = opt_int_at(spec, &[source, "target", "averageUtilization"])
                        .map_or_else(|| "<auto>".to_string(), |u| format!("{u}%"));
                    format!("{name}: {current}/{target}")
                }
            }
            _ => "<unknown type>".to_string(),
        };
        list.push(entry);
    }
    const MAX: usize = 2;
    if list.len() > MAX {
        let more = list.len() - MAX;
        return format!("{} + {more} more...", list[..MAX].join(", "));
    }
    list.join(", ")
}

// ---------------------------------------------------------------------------
// Services and networking

const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Type",
        STRING,
        "type determines how the Service is exposed. Defaults to ClusterIP.",
    ),
    col(
        "Cluster-IP",
        STRING,
        "clusterIP is the IP address of the service and is usually assigned randomly.",
    ),
    col(
        "External-IP",
        STRING,
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
    ),
    col(
        "Port(s)",
        STRING,
        "The list of ports that are exposed by this service.",
    ),
    AGE,
    wide(
        "Selector",
        STRING,
        "Route service traffic to pods with label keys and values matching this selector.",
    ),
];

/// `loadBalancerStatusStringer` (wide): the sorted, distinct IPs or
/// hostnames of a load balancer status.
fn load_balancer_ingress(obj: &Value) -> String {
    let set: BTreeSet<&str> = list_at(obj, &["status", "loadBalancer", "ingress"])
        .iter()
        .filter_map(|i| {
            let ip = str_at(i, &["ip"]);
            let host = str_at(i, &["hostname"]);
            if !ip.is_empty() {
                Some(ip)
            } else if !host.is_empty() {
                Some(host)
            } else {
                None
            }
        })
        .collect();
    set.into_iter().collect::<Vec<_>>().join(",")
}

fn service_external_ip(svc: &Value) -> String {
    let external_ips = string_list(svc, &["spec", "externalIPs"]);
    match str_at(svc, &["spec", "type"]) {
        "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".to_string()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let lb = load_balancer_ingress(svc);
            if !external_ips.is_empty() {
                let mut results: Vec<String> = Vec::new();
                if !lb.is_empty() {
                    results.extend(lb.split(',').map(str::to_string));
                }
                results.extend(external_ips);
                results.join(",")
            } else if !lb.is_empty() {
                lb
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => str_at(svc, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// `makePortString`: `port/proto` or `port:nodePort/proto`, comma-separated.
fn service_ports(svc: &Value) -> String {
    list_at(svc, &["spec", "ports"])
        .iter()
        .map(|p| {
            let port = int_at(p, &["port"]);
            let node_port = int_at(p, &["nodePort"]);
            let protocol = str_at(p, &["protocol"]);
            if node_port > 0 {
                format!("{port}:{node_port}/{protocol}")
            } else {
                format!("{port}/{protocol}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn service_cells(svc: &Value, now: Timestamp) -> Vec<Value> {
    // The typed conversion fills clusterIPs from the older clusterIP field.
    let cluster_ip = match list_at(svc, &["spec", "clusterIPs"]).first() {
        Some(ip) => scalar_string(ip),
        None => or_none(str_at(svc, &["spec", "clusterIP"])),
    };
    row![
        name_of(svc),
        str_at(svc, &["spec", "type"]),
        cluster_ip,
        service_external_ip(svc),
        or_none(&service_ports(svc)),
        age(svc, now),
        format_labels(map_at(svc, &["spec", "selector"])),
    ]
}

const ENDPOINTS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Endpoints",
        STRING,
        "The set of all endpoints is the union of all subsets.",
    ),
    AGE,
];

/// `net.JoinHostPort`.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn list_with_more(list: &[String], more: bool, count: usize, max: usize) -> String {
    let ret = list.join(",");
    if more {
        return format!("{ret} + {} more...", count.saturating_sub(max));
    }
    if ret.is_empty() {
        return "<unset>".to_string();
    }
    ret
}

/// `formatEndpoints`: up to three `ip:port`, then a count of the rest.
fn format_endpoints(obj: &Value) -> String {
    let subsets = list_at(obj, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for ss in subsets {
        let addresses = list_at(ss, &["addresses"]);
        let ports = list_at(ss, &["ports"]);
        if ports.is_empty() {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(str_at(a, &["ip"]).to_string());
            }
            continue;
        }
        for p in ports {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(join_host_port(str_at(a, &["ip"]), int_at(p, &["port"])));
            }
        }
    }
    let ret = list.join(",");
    if more {
        return format!("{ret} + {} more...", count.saturating_sub(MAX));
    }
    ret
}

fn endpoints_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    row![name_of(obj), format_endpoints(obj), age(obj, now)]
}

const ENDPOINT_SLICE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "AddressType",
        STRING,
        "addressType specifies the type of address carried by this EndpointSlice.",
    ),
    col(
        "Ports",
        STRING,
        "ports specifies the list of network ports exposed by each endpoint in this slice.",
    ),
    col(
        "Endpoints",
        STRING,
        "endpoints is a list of unique endpoints in this slice.",
    ),
    AGE,
];

fn endpoint_slice_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    const MAX: usize = 3;
    let mut ports: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    for p in list_at(obj, &["ports"]) {
        if ports.len() < MAX {
            let s = match (opt_int_at(p, &["port"]), opt_str_at(p, &["name"])) {
                (Some(n), _) => n.to_string(),
                (None, Some(name)) => name.to_string(),
                (None, None) => "*".to_string(),
            };
            ports.push(s);
        } else if ports.len() == MAX {
            more = true;
        }
        count += 1;
    }
    let ports = list_with_more(&ports, more, count, MAX);

    let mut addresses: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    for e in list_at(obj, &["endpoints"]) {
        for a in list_at(e, &["addresses"]) {
            if addresses.len() < MAX {
                addresses.push(scalar_string(a));
            } else if addresses.len() == MAX {
                more = true;
            }
            count += 1;
        }
    }
    let endpoints = list_with_more(&addresses, more, count, MAX);
    row![
        name_of(obj),
        str_at(obj, &["addressType"]),
        ports,
        endpoints,
        age(obj, now),
    ]
}

const INGRESS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Class",
        STRING,
        "The name of the IngressClass resource that should be used for additional configuration",
    ),
    col(
        "Hosts",
        STRING,
        "Hosts that incoming requests are matched against before the ingress rule",
    ),
    col(
        "Address",
        STRING,
        "Address is a list containing ingress points for the load-balancer",
    ),
    col("Ports", STRING, "Ports of TLS configurations that open"),
    AGE,
];

fn ingress_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    const MAX: usize = 3;
    let rules = list_at(obj, &["spec", "rules"]);
    let mut list: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if list.len() == MAX {
            more = true;
        }
        let host = str_at(rule, &["host"]);
        if !more && !host.is_empty() {
            list.push(host);
        }
    }
    let hosts = if list.is_empty() {
        "*".to_string()
    } else if more {
        format!("{} + {} more...", list.join(","), rules.len() - MAX)
    } else {
        list.join(",")
    };
    let ports = if list_at(obj, &["spec", "tls"]).is_empty() {
        "80"
    } else {
        "80, 443"
    };
    row![
        name_of(obj),
        opt_str_at(obj, &["spec", "ingressClassName"]).unwrap_or("<none>"),
        hosts,
        load_balancer_ingress(obj),
        ports,
        age(obj, now),
    ]
}

const INGRESS_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Controller",
        STRING,
        "Controller that is responsible for handling this class",
    ),
    col(
        "Parameters",
        STRING,
        "A reference to a resource with additional parameters",
    ),
    AGE,
];

fn ingress_class_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let parameters = match at(obj, &["spec", "parameters"]) {
        None => "<none>".to_string(),
        Some(p) => {
            let mut s = str_at(p, &["kind"]).to_string();
            if let Some(g) = opt_str_at(p, &["apiGroup"]) {
                s = format!("{s}.{g}");
            }
            format!("{s}/{}", str_at(p, &["name"]))
        }
    };
    row![
        name_of(obj),
        str_at(obj, &["spec", "controller"]),
        parameters,
        age(obj, now),
    ]
}

const NETWORK_POLICY_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Pod-Selector",
        STRING,
        "Selects the pods to which this NetworkPolicy object applies.",
    ),
    AGE,
];

fn network_policy_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    // podSelector is not a pointer: unset reads as the empty selector.
    let empty = Value::Object(Map::new());
    let selector = at(obj, &["spec", "podSelector"]).unwrap_or(&empty);
    row![
        name_of(obj),
        format_label_selector(Some(selector)),
        age(obj, now),
    ]
}

const SERVICE_CIDR_COLUMNS: &[Column] = &[
    NAME,
    col(
        "CIDRs",
        STRING,
        "CIDRs defines the IP blocks in CIDR notation from which to assign service cluster IPs.",
    ),
    AGE,
];

fn service_cidr_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    row![
        name_of(obj),
        string_list(obj, &["spec", "cidrs"]).join(","),
        age(obj, now),
    ]
}

const IP_ADDRESS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "ParentRef",
        STRING,
        "ParentRef references the resource that an IPAddress is attached to.",
    ),
];

/// As upstream, one more cell (the age) than there are columns; kubectl
/// ignores it.
fn ip_address_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let parent = match at(obj, &["spec", "parentRef"]) {
        None => "<none>".to_string(),
        Some(p) => {
            let group = str_at(p, &["group"]);
            let resource = str_at(p, &["resource"]);
            let mut s = if group.is_empty() {
                resource.to_lowercase()
            } else {
                format!("{resource}.{group}").to_lowercase()
            };
            let namespace = str_at(p, &["namespace"]);
            if !namespace.is_empty() {
                s = format!("{s}/{namespace}");
            }
            format!("{s}/{}", str_at(p, &["name"]))
        }
    };
    row![name_of(obj), parent, age(obj, now)]
}

// ---------------------------------------------------------------------------
// Nodes, namespaces, events

const NODE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", STRING, "The status of the node"),
    col("Roles", STRING, "The roles of the node"),
    AGE,
    col("Version", STRING, "Kubelet Version reported by the node."),
    wide(
        "Internal-IP",
        STRING,
        "List of addresses reachable to the node.",
    ),
    wide(
        "External-IP",
        STRING,
        "List of addresses reachable to the node.",
    ),
    wide(
        "OS-Image",
        STRING,
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    ),
    wide(
        "Kernel-Version",
        STRING,
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    ),
    wide(
        "Container-Runtime",
        STRING,
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
    ),
];

const LABEL_NODE_ROLE_PREFIX: &str = "node-role.kubernetes.io/";
const NODE_LABEL_ROLE: &str = "kubernetes.io/role";

/// `findNodeRoles`: from `node-role.kubernetes.io/<role>` label keys and the
/// `kubernetes.io/role` label's value, sorted and distinct.
fn node_roles(node: &Value) -> Vec<String> {
    let mut roles = BTreeSet::new();
    for (k, v) in map_at(node, &["metadata", "labels"]).into_iter().flatten() {
        if let Some(role) = k.strip_prefix(LABEL_NODE_ROLE_PREFIX) {
            if !role.is_empty() {
                roles.insert(role.to_string());
            }
        } else if k == NODE_LABEL_ROLE {
            let v = scalar_string(v);
            if !v.is_empty() {
                roles.insert(v);
            }
        }
    }
    roles.into_iter().collect()
}

fn node_status(node: &Value) -> String {
    // The last condition of a type wins, as in the map upstream builds.
    let ready = list_at(node, &["status", "conditions"])
        .iter()
        .rev()
        .find(|c| str_at(c, &["type"]) == "Ready");
    let mut status = vec![match ready {
        Some(c) if str_at(c, &["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if bool_at(node, &["spec", "unschedulable"]) {
        status.push("SchedulingDisabled");
    }
    status.join(",")
}

fn node_address(node: &Value, type_: &str) -> String {
    list_at(node, &["status", "addresses"])
        .iter()
        .find(|a| str_at(a, &["type"]) == type_)
        .map_or_else(
            || "<none>".to_string(),
            |a| str_at(a, &["address"]).to_string(),
        )
}

fn node_cells(node: &Value, now: Timestamp) -> Vec<Value> {
    let info = |field: &str| {
        let v = str_at(node, &["status", "nodeInfo", field]);
        if v.is_empty() {
            "<unknown>".to_string()
        } else {
            v.to_string()
        }
    };
    row![
        name_of(node),
        node_status(node),
        or_none(&node_roles(node).join(",")),
        age(node, now),
        str_at(node, &["status", "nodeInfo", "kubeletVersion"]),
        node_address(node, "InternalIP"),
        node_address(node, "ExternalIP"),
        info("osImage"),
        info("kernelVersion"),
        info("containerRuntimeVersion"),
    ]
}

const NAMESPACE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", STRING, "The status of the namespace"),
    AGE,
];

fn namespace_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    row![
        name_of(obj),
        str_at(obj, &["status", "phase"]),
        age(obj, now),
    ]
}

const EVENT_COLUMNS: &[Column] = &[
    col(
        "Last Seen",
        STRING,
        "The time at which the most recent occurrence of this event was recorded.",
    ),
    col("Type", STRING, "Type of this event (Normal, Warning)."),
    col(
        "Reason",
        STRING,
        "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
    ),
    col("Object", STRING, "The object that this event is about."),
    wide(
        "Subobject",
        STRING,
        "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].",
    ),
    wide(
        "Source",
        STRING,
        "The component reporting this event. Should be a short machine understandable string.",
    ),
    col(
        "Message",
        STRING,
        "A human-readable description of the status of this operation.",
    ),
    wide(
        "First Seen",
        STRING,
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
    ),
    wide(
        "Count",
        STRING,
        "The number of times this event has occurred.",
    ),
    Column {
        name: "Name",
        type_: STRING,
        format: "name",
        priority: 1,
        description: NAME_DESC,
    },
];

/// The first of the (core/v1, events.k8s.io/v1) spellings of a field that
/// is present: both kinds of Event print alike.
fn event_field<'a>(ev: &'a Value, core: &[&str], events_v1: &[&str]) -> Option<&'a Value> {
    at(ev, core).or_else(|| at(ev, events_v1))
}

fn event_cells(ev: &Value, now: Timestamp) -> Vec<Value> {
    let field_str = |core: &[&str], v1: &[&str]| {
        event_field(ev, core, v1)
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let field_time = |core: &[&str], v1: &[&str]| {
        event_field(ev, core, v1)
            .and_then(Value::as_str)
            .and_then(parse_time)
    };
    let first_seen = field_time(&["firstTimestamp"], &["deprecatedFirstTimestamp"]);
    let first = match first_seen {
        Some(t) => since(Some(t), now),
        None => since(time_at(ev, &["eventTime"]), now),
    };
    let mut last = match field_time(&["lastTimestamp"], &["deprecatedLastTimestamp"]) {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = event_field(ev, &["count"], &["deprecatedCount"])
        .and_then(as_int)
        .unwrap_or(0);
    if let Some(series) = at(ev, &["series"]) {
        last = since(time_at(series, &["lastObservedTime"]), now);
        count = int_at(series, &["count"]);
    } else if count == 0 {
        // Singleton events of the new API carry no count.
        count = 1;
    }
    let kind = field_str(&["involvedObject", "kind"], &["regarding", "kind"]).to_lowercase();
    let object_name = field_str(&["involvedObject", "name"], &["regarding", "name"]);
    let target = if object_name.is_empty() {
        kind
    } else {
        format!("{kind}/{object_name}")
    };
    let first_non_empty = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_string()
        } else {
            a.to_string()
        }
    };
    let component = first_non_empty(
        field_str(&["source", "component"], &["deprecatedSource", "component"]),
        str_at(ev, &["reportingController"]),
    );
    let host = first_non_empty(
        field_str(&["source", "host"], &["deprecatedSource", "host"]),
        str_at(ev, &["reportingInstance"]),
    );
    let source = if host.is_empty() {
        component
    } else {
        format!("{component}, {host}")
    };
    row![
        last,
        str_at(ev, &["type"]),
        str_at(ev, &["reason"]),
        target,
        field_str(
            &["involvedObject", "fieldPath"],
            &["regarding", "fieldPath"]
        ),
        source,
        field_str(&["message"], &["note"]).trim(),
        first,
        count,
        name_of(ev),
    ]
}

const COMPONENT_STATUS_COLUMNS: &[Column] = &[
    NAME,
    col("Status", STRING, "Status of the component conditions"),
    col("Message", STRING, "Message of the component conditions"),
    col("Error", STRING, "Error of the component conditions"),
];

fn component_status_cells(obj: &Value, _now: Timestamp) -> Vec<Value> {
    let healthy = list_at(obj, &["conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == "Healthy");
    let (status, message, error) = match healthy {
        None => ("Unknown", "", ""),
        Some(c) => (
            if str_at(c, &["status"]) == "True" {
                "Healthy"
            } else {
                "Unhealthy"
            },
            str_at(c, &["message"]),
            str_at(c, &["error"]),
        ),
    };
    row![name_of(obj), status, message, error]
}

// ---------------------------------------------------------------------------
// Configuration and access

const CONFIG_MAP_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Data",
        STRING,
        "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'.",
    ),
    AGE,
];

fn config_map_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    row![
        name_of(obj),
        len_at(obj, &["data"]).saturating_add(len_at(obj, &["binaryData"])),
        age(obj, now),
    ]
}

const SECRET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Type",
        STRING,
        "Used to facilitate programmatic handling of secret data.",
    ),
    col(
        "Data",
        STRING,
        "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'.",
    ),
    AGE,
];

fn secret_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    // stringData is merged into data by the typed conversion.
    let mut keys: BTreeSet<&str> = BTreeSet::new();
    for field in ["data", "stringData"] {
        keys.extend(
            map_at(obj, &[field])
                .into_iter()
                .flatten()
                .map(|(k, _)| k.as_str()),
        );
    }
    row![
        name_of(obj),
        str_at(obj, &["type"]),
        i64::try_from(keys.len()).unwrap_or(i64::MAX),
        age(obj, now),
    ]
}

const SERVICE_ACCOUNT_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Secrets",
        STRING,
        "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
    ),
    AGE,
];

fn service_account_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    row![name_of(obj), len_at(obj, &["secrets"]), age(obj, now)]
}

const RESOURCE_QUOTA_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Request",
        STRING,
        "Request represents a minimum amount of cpu/memory that a container may consume.",
    ),
    col(
        "Limit",
        STRING,
        "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
    ),
    AGE,
];

fn resource_quota_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let mut names: Vec<&String> = map_at(obj, &["status", "hard"])
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
        .collect();
    names.sort();
    let mut request: Vec<String> = Vec::new();
    let mut limit: Vec<String> = Vec::new();
    for name in names {
        let entry = format!(
            "{name}: {}/{}",
            quantity_at(obj, &["status", "used", name]),
            quantity_at(obj, &["status", "hard", name])
        );
        let is_limit = name
            .split_once('.')
            .is_some_and(|(first, _)| first == "limits");
        if is_limit {
            limit.push(entry);
        } else {
            request.push(entry);
        }
    }
    row![
        name_of(obj),
        request.join(", "),
        limit.join(", "),
        age(obj, now),
    ]
}

const ROLE_BINDING_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Role",
        STRING,
        "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
    ),
    AGE,
    wide("Users", STRING, "Users in the roleBinding"),
    wide("Groups", STRING, "Groups in the roleBinding"),
    wide("ServiceAccounts", STRING, "ServiceAccounts in the roleBinding"),
];

const CLUSTER_ROLE_BINDING_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Role",
        STRING,
        "RoleRef can only reference a ClusterRole in the global namespace.",
    ),
    AGE,
    wide("Users", STRING, "Users in the clusterRoleBinding"),
    wide("Groups", STRING, "Groups in the clusterRoleBinding"),
    wide(
        "ServiceAccounts",
        STRING,
        "ServiceAccounts in the clusterRoleBinding",
    ),
];

fn role_binding_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let mut users = Vec::new();
    let mut groups = Vec::new();
    let mut service_accounts = Vec::new();
    for s in list_at(obj, &["subjects"]) {
        let name = str_at(s, &["name"]);
        match str_at(s, &["kind"]) {
            "ServiceAccount" => {
                service_accounts.push(format!("{}/{name}", str_at(s, &["namespace"])));
            }
            "User" => users.push(name.to_string()),
            "Group" => groups.push(name.to_string()),
            _ => {}
        }
    }
    row![
        name_of(obj),
        format!(
            "{}/{}",
            str_at(obj, &["roleRef", "kind"]),
            str_at(obj, &["roleRef", "name"])
        ),
        age(obj, now),
        users.join(", "),
        groups.join(", "),
        service_accounts.join(", "),
    ]
}

const CSR_COLUMNS: &[Column] = &[
    NAME,
    AGE,
    col("SignerName", STRING, "Requested signer for the request."),
    col("Requestor", STRING, "The user that created the request."),
    col(
        "RequestedDuration",
        STRING,
        "expirationSeconds is the requested duration of validity of the issued certificate.",
    ),
    col(
        "Condition",
        STRING,
        "Conditions applied to the request, such as approval or denial.",
    ),
];

fn csr_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (mut approved, mut denied, mut failed) = (false, false, false);
    for c in list_at(obj, &["status", "conditions"]) {
        match str_at(c, &["type"]) {
            "Approved" => approved = true,
            "Denied" => denied = true,
            "Failed" => failed = true,
            _ => {}
        }
    }
    let mut condition = if denied {
        "Denied"
    } else if approved {
        "Approved"
    } else {
        "Pending"
    }
    .to_string();
    if failed {
        condition.push_str(",Failed");
    }
    if !str_at(obj, &["status", "certificate"]).is_empty() {
        condition.push_str(",Issued");
    }
    let requested = opt_int_at(obj, &["spec", "expirationSeconds"]).map_or_else(
        || "<none>".to_string(),
        |s| human_duration(SignedDuration::from_secs(s)),
    );
    row![
        name_of(obj),
        age(obj, now),
        or_none(str_at(obj, &["spec", "signerName"])),
        str_at(obj, &["spec", "username"]),
        requested,
        condition,
    ]
}

const CLUSTER_TRUST_BUNDLE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "SignerName",
        STRING,
        "signerName indicates the associated signer, if any.",
    ),
];

fn cluster_trust_bundle_cells(obj: &Value, _now: Timestamp) -> Vec<Value> {
    row![name_of(obj), or_none(str_at(obj, &["spec", "signerName"]))]
}

const LEASE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Holder",
        STRING,
        "holderIdentity contains the identity of the holder of a current lease.",
    ),
    AGE,
];

fn lease_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    row![
        name_of(obj),
        str_at(obj, &["spec", "holderIdentity"]),
        age(obj, now),
    ]
}

const LEASE_CANDIDATE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "LeaseName",
        STRING,
        "LeaseName is the name of the lease for which this candidate is contending.",
    ),
    col(
        "BinaryVersion",
        STRING,
        "BinaryVersion is the binary version.",
    ),
    col(
        "EmulationVersion",
        STRING,
        "EmulationVersion is the emulation version.",
    ),
    AGE,
];

fn lease_candidate_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    row![
        name_of(obj),
        str_at(obj, &["spec", "leaseName"]),
        str_at(obj, &["spec", "binaryVersion"]),
        str_at(obj, &["spec", "emulationVersion"]),
        age(obj, now),
    ]
}

// ---------------------------------------------------------------------------
// Storage

const PERSISTENT_VOLUME_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Capacity",
        STRING,
        "capacity is the description of the persistent volume's resources and capacity.",
    ),
    col(
        "Access Modes",
        STRING,
        "accessModes contains all ways the volume can be mounted.",
    ),
    col(
        "Reclaim Policy",
        STRING,
        "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.",
    ),
    col(
        "Status",
        STRING,
        "phase indicates if a volume is available, bound to a claim, or released by a claim.",
    ),
    col(
        "Claim",
        STRING,
        "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
    ),
    col("StorageClass", STRING, "StorageClass of the pv"),
    col(
        "VolumeAttributesClass",
        STRING,
        "VolumeAttributesClass of the pv",
    ),
    col(
        "Reason",
        STRING,
        "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.",
    ),
    AGE,
    wide(
        "VolumeMode",
        STRING,
        "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.",
    ),
];

const BETA_STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

/// `helper.GetAccessModesAsString`: in a fixed order, whatever the object's.
fn access_modes(obj: &Value, path: &[&str]) -> String {
    let modes = string_list(obj, path);
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| modes.iter().any(|m| m == mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

fn persistent_volume_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let claim = match at(obj, &["spec", "claimRef"]) {
        Some(r) => format!("{}/{}", str_at(r, &["namespace"]), str_at(r, &["name"])),
        None => String::new(),
    };
    let phase = if is_deleting(obj) {
        "Terminating"
    } else {
        str_at(obj, &["status", "phase"])
    };
    let class = annotation(obj, BETA_STORAGE_CLASS_ANNOTATION)
        .unwrap_or_else(|| str_at(obj, &["spec", "storageClassName"]));
    row![
        name_of(obj),
        quantity_at(obj, &["spec", "capacity", "storage"]),
        access_modes(obj, &["spec", "accessModes"]),
        str_at(obj, &["spec", "persistentVolumeReclaimPolicy"]),
        phase,
        claim,
        class,
        ptr_or_unset(obj, &["spec", "volumeAttributesClassName"]),
        str_at(obj, &["status", "reason"]),
        age(obj, now),
        ptr_or_unset(obj, &["spec", "volumeMode"]),
    ]
}

const PVC_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Status",
        STRING,
        "phase represents the current phase of PersistentVolumeClaim.",
    ),
    col(
        "Volume",
        STRING,
        "volumeName is the binding reference to the PersistentVolume backing this claim.",
    ),
    col(
        "Capacity",
        STRING,
        "capacity represents the actual resources of the underlying volume.",
    ),
    col(
        "Access Modes",
        STRING,
        "accessModes contains the actual access modes the volume backing the PVC has.",
    ),
    col("StorageClass", STRING, "StorageClass of the pvc"),
    col(
        "VolumeAttributesClass",
        STRING,
        "VolumeAttributesClass of the pvc",
    ),
    AGE,
    wide(
        "VolumeMode",
        STRING,
        "volumeMode defines what type of volume is required by the claim.",
    ),
];

fn pvc_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let phase = if is_deleting(obj) {
        "Terminating"
    } else {
        str_at(obj, &["status", "phase"])
    };
    let volume = str_at(obj, &["spec", "volumeName"]);
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity_at(obj, &["status", "capacity", "storage"]),
            access_modes(obj, &["status", "accessModes"]),
        )
    };
    let class = annotation(obj, BETA_STORAGE_CLASS_ANNOTATION)
        .unwrap_or_else(|| str_at(obj, &["spec", "storageClassName"]));
    row![
        name_of(obj),
        phase,
        volume,
        capacity,
        modes,
        class,
        ptr_or_unset(obj, &["spec", "volumeAttributesClassName"]),
        age(obj, now),
        ptr_or_unset(obj, &["spec", "volumeMode"]),
    ]
}

const STORAGE_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Provisioner",
        STRING,
        "provisioner indicates the type of the provisioner.",
    ),
    col(
        "ReclaimPolicy",
        STRING,
        "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class.",
    ),
    col(
        "VolumeBindingMode",
        STRING,
        "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.",
    ),
    col(
        "AllowVolumeExpansion",
        STRING,
        "allowVolumeExpansion shows whether the storage class allow volume expand.",
    ),
    AGE,
];

fn storage_class_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let is_default = annotation(obj, "storageclass.kubernetes.io/is-default-class") == Some("true")
        || annotation(obj, "storageclass.beta.kubernetes.io/is-default-class") == Some("true");
    let mut name = name_of(obj).to_string();
    if is_default {
        name.push_str(" (default)");
    }
    row![
        name,
        str_at(obj, &["provisioner"]),
        opt_str_at(obj, &["reclaimPolicy"]).unwrap_or("Delete"),
        opt_str_at(obj, &["volumeBindingMode"]).unwrap_or("Immediate"),
        bool_at(obj, &["allowVolumeExpansion"]),
        age(obj, now),
    ]
}

const VOLUME_ATTRIBUTES_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "DriverName",
        STRING,
        "Name of the CSI driver This field is immutable.",
    ),
    AGE,
];

fn volume_attributes_class_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let is_default = annotation(
        obj,
        "storage.kubernetes.io/is-default-volume-attributes-class",
    ) == Some("true");
    let mut name = name_of(obj).to_string();
    if is_default {
        name.push_str(" (default)");
    }
    row![name, str_at(obj, &["driverName"]), age(obj, now)]
}

const VOLUME_ATTACHMENT_COLUMNS: &[Column] = &[
    NAME,
    Column {
        name: "Attacher",
        type_: STRING,
        format: "name",
        priority: 0,
        description:
            "Attacher indicates the name of the volume driver that MUST handle this request.",
    },
    col(
        "PV",
        STRING,
        "persistentVolumeName represents the name of the persistent volume to attach.",
    ),
    col(
        "Node",
        STRING,
        "nodeName represents the node that the volume should be attached to.",
    ),
    col(
        "Attached",
        BOOLEAN,
        "attached indicates the volume is successfully attached.",
    ),
    AGE,
];

fn volume_attachment_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    row![
        name_of(obj),
        str_at(obj, &["spec", "attacher"]),
        str_at(obj, &["spec", "source", "persistentVolumeName"]),
        str_at(obj, &["spec", "nodeName"]),
        bool_at(obj, &["status", "attached"]),
        age(obj, now),
    ]
}

const CSI_NODE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Drivers",
        INTEGER,
        "Drivers indicates the number of CSI drivers registered on the node",
    ),
    AGE,
];

fn csi_node_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    row![
        name_of(obj),
        len_at(obj, &["spec", "drivers"]),
        age(obj, now),
    ]
}

const CSI_DRIVER_COLUMNS: &[Column] = &[
    NAME,
    col(
        "AttachRequired",
        BOOLEAN,
        "attachRequired indicates this CSI volume driver requires an attach operation.",
    ),
    col(
        "PodInfoOnMount",
        BOOLEAN,
        "podInfoOnMount indicates this CSI volume driver requires additional pod information during mount operations.",
    ),
    col(
        "StorageCapacity",
        BOOLEAN,
        "storageCapacity indicates that the CSI volume driver wants pod scheduling to consider the storage capacity that the driver deployment will report.",
    ),
    col(
        "TokenRequests",
        STRING,
        "tokenRequests indicates the CSI driver needs pods' service account tokens it is mounting volume for to do necessary authentication.",
    ),
    col(
        "RequiresRepublish",
        BOOLEAN,
        "requiresRepublish indicates the CSI driver wants NodePublishVolume being periodically called to reflect any possible change in the mounted volume.",
    ),
    col(
        "Modes",
        STRING,
        "volumeLifecycleModes defines what kind of volumes this CSI volume driver supports.",
    ),
    AGE,
];

fn csi_driver_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let modes = string_list(obj, &["spec", "volumeLifecycleModes"]).join(",");
    let token_requests = if has(obj, &["spec", "tokenRequests"]) {
        list_at(obj, &["spec", "tokenRequests"])
            .iter()
            .map(|t| str_at(t, &["audience"]))
            .collect::<Vec<_>>()
            .join(",")
    } else {
        "<unset>".to_string()
    };
    row![
        name_of(obj),
        opt_bool_at(obj, &["spec", "attachRequired"]).unwrap_or(true),
        bool_at(obj, &["spec", "podInfoOnMount"]),
        bool_at(obj, &["spec", "storageCapacity"]),
        token_requests,
        bool_at(obj, &["spec", "requiresRepublish"]),
        or_none(&modes),
        age(obj, now),
    ]
}

/// kube-aggregator's `apiservice/etcd.REST.ConvertToTable`.
const API_SERVICE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Service",
        STRING,
        "The reference to the service that hosts this API endpoint.",
    ),
    col("Available", STRING, "Whether this service is available."),
    AGE,
];

fn api_service_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let service = match at(obj, &["spec", "service"]) {
        Some(svc) => format!("{}/{}", str_at(svc, &["namespace"]), str_at(svc, &["name"])),
        None => "Local".to_string(),
    };
    let available = list_at(obj, &["status", "conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == "Available")
        .map_or_else(
            || "Unknown".to_string(),
            |c| {
                let status = str_at(c, &["status"]);
                let reason = str_at(c, &["reason"]);
                if status == "True" || reason.is_empty() {
                    status.to_string()
                } else {
                    format!("{status} ({reason})")
                }
            },
        );
    row![name_of(obj), service, available, age(obj, now)]
}

const STORAGE_VERSION_MIGRATION_COLUMNS: &[Column] = &[
    col("Name", STRING, NAME_DESC),
    col("Resource", STRING, "Fully qualified resource to migrate"),
];

fn storage_version_migration_cells(obj: &Value, _now: Timestamp) -> Vec<Value> {
    let r = |f: &str| str_at(obj, &["spec", "resource", f]);
    row![
        name_of(obj),
        format!("{}.{}.{}", r("resource"), r("version"), r("group")),
    ]
}

// ---------------------------------------------------------------------------
// Scheduling, node, admission, flow control, DRA

const PRIORITY_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Value",
        INTEGER,
        "value represents the integer value of this priority class.",
    ),
    col(
        "Global-Default",
        BOOLEAN,
        "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class.",
    ),
    AGE,
    col(
        "PreemptionPolicy",
        STRING,
        "preemptionPolicy is the Policy for preempting pods with lower priority.",
    ),
];

fn priority_class_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    row![
        name_of(obj),
        int_at(obj, &["value"]),
        bool_at(obj, &["globalDefault"]),
        age(obj, now),
        str_at(obj, &["preemptionPolicy"]),
    ]
}

const RUNTIME_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Handler",
        STRING,
        "handler specifies the underlying runtime and configuration that the CRI implementation will use to handle pods of this class.",
    ),
    AGE,
];

fn runtime_class_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    row![name_of(obj), str_at(obj, &["handler"]), age(obj, now)]
}

const WEBHOOK_CONFIGURATION_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Webhooks",
        INTEGER,
        "Webhooks indicates the number of webhooks registered in this configuration",
    ),
    AGE,
];

fn webhook_configuration_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    row![name_of(obj), len_at(obj, &["webhooks"]), age(obj, now)]
}

const VALIDATING_ADMISSION_POLICY_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Validations",
        INTEGER,
        "Validations indicates the number of validation rules defined in this configuration",
    ),
    col(
        "ParamKind",
        STRING,
        "ParamKind specifies the kind of resources used to parameterize this policy",
    ),
    AGE,
];

const MUTATING_ADMISSION_POLICY_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Mutations",
        INTEGER,
        "Mutation indicates the number of mutations rules defined in this configuration",
    ),
    col(
        "ParamKind",
        STRING,
        "ParamKind specifies the kind of resources used to parameterize this policy",
    ),
    AGE,
];

fn param_kind(obj: &Value) -> String {
    match at(obj, &["spec", "paramKind"]) {
        Some(p) => format!("{}/{}", str_at(p, &["apiVersion"]), str_at(p, &["kind"])),
        None => "<unset>".to_string(),
    }
}

fn validating_admission_policy_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    row![
        name_of(obj),
        len_at(obj, &["spec", "validations"]),
        param_kind(obj),
        age(obj, now),
    ]
}

fn mutating_admission_policy_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    row![
        name_of(obj),
        len_at(obj, &["spec", "mutations"]),
        param_kind(obj),
        age(obj, now),
    ]
}

const ADMISSION_POLICY_BINDING_COLUMNS: &[Column] = &[
    NAME,
    col(
        "PolicyName",
        STRING,
        "PolicyName indicates the policy definition which the policy binding binded to",
    ),
    col(
        "ParamRef",
        STRING,
        "ParamRef indicates the param resource which sets the configration param",
    ),
    AGE,
];

fn admission_policy_binding_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let param = match at(obj, &["spec", "paramRef"]) {
        None => "<unset>".to_string(),
        Some(p) => {
            let name = str_at(p, &["name"]);
            let namespace = str_at(p, &["namespace"]);
            if !name.is_empty() {
                if namespace.is_empty() {
                    // Cluster-scoped or not, a param without a namespace
                    // prints with "*".
                    format!("*/{name}")
                } else {
                    format!("{namespace}/{name}")
                }
            } else if let Some(sel) = at(p, &["selector"]) {
                label_selector_struct_string(sel)
            } else {
                "<unset>".to_string()
            }
        }
    };
    row![
        name_of(obj),
        str_at(obj, &["spec", "policyName"]),
        param,
        age(obj, now),
    ]
}

const FLOW_SCHEMA_COLUMNS: &[Column] = &[
    NAME,
    col(
        "PriorityLevel",
        STRING,
        "`name` is the name of the priority level configuration being referenced Required.",
    ),
    col(
        "MatchingPrecedence",
        STRING,
        "`matchingPrecedence` is used to choose among the FlowSchemas that match a given request.",
    ),
    col(
        "DistinguisherMethod",
        STRING,
        "`distinguisherMethod` defines how to compute the flow distinguisher for requests that match this schema.",
    ),
    AGE,
    col(
        "MissingPL",
        STRING,
        "references a broken or non-existent PriorityLevelConfiguration",
    ),
];

fn flow_schema_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let distinguisher = match at(obj, &["spec", "distinguisherMethod"]) {
        Some(d) => str_at(d, &["type"]).to_string(),
        None => "<none>".to_string(),
    };
    let missing = condition_status(obj, &["status", "conditions"], "Dangling").unwrap_or("?");
    row![
        name_of(obj),
        str_at(obj, &["spec", "priorityLevelConfiguration", "name"]),
        int_at(obj, &["spec", "matchingPrecedence"]),
        distinguisher,
        age(obj, now),
        missing,
    ]
}

const PRIORITY_LEVEL_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Type",
        STRING,
        "`type` indicates whether this priority level is subject to limitation on request execution.",
    ),
    col(
        "NominalConcurrencyShares",
        STRING,
        "`nominalConcurrencyShares` (NCS) contributes to the computation of the NominalConcurrencyLimit (NominalCL) of this level.",
    ),
    col(
        "Queues",
        STRING,
        "`queues` is the number of queues for this priority level.",
    ),
    col(
        "HandSize",
        STRING,
        "`handSize` is a small positive number that configures the shuffle sharding of requests into queues.",
    ),
    col(
        "QueueLengthLimit",
        STRING,
        "`queueLengthLimit` is the maximum number of requests allowed to be waiting in a given queue of this priority level at a time.",
    ),
    AGE,
];

fn priority_level_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let none = || Value::from("<none>");
    let (mut ncs, mut queues, mut hand_size, mut queue_length) = (none(), none(), none(), none());
    if let Some(limited) = at(obj, &["spec", "limited"]) {
        ncs = Value::from(int_at(limited, &["nominalConcurrencyShares"]));
        if let Some(q) = at(limited, &["limitResponse", "queuing"]) {
            queues = Value::from(int_at(q, &["queues"]));
            hand_size = Value::from(int_at(q, &["handSize"]));
            queue_length = Value::from(int_at(q, &["queueLengthLimit"]));
        }
    }
    vec![
        Value::from(name_of(obj)),
        Value::from(str_at(obj, &["spec", "type"])),
        ncs,
        queues,
        hand_size,
        queue_length,
        Value::from(age(obj, now)),
    ]
}

const STORAGE_VERSION_COLUMNS: &[Column] = &[
    NAME,
    col(
        "CommonEncodingVersion",
        STRING,
        "If all API server instances agree on the same encoding storage version, then this field is set to that version.",
    ),
    col(
        "StorageVersions",
        STRING,
        "The reported versions per API server instance.",
    ),
    AGE,
];

fn storage_version_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    for sv in list_at(obj, &["status", "storageVersions"]) {
        if list.len() < MAX {
            list.push(format!(
                "{}={}",
                str_at(sv, &["apiServerID"]),
                str_at(sv, &["encodingVersion"])
            ));
        } else if list.len() == MAX {
            more = true;
        }
        count += 1;
    }
    row![
        name_of(obj),
        ptr_or_unset(obj, &["status", "commonEncodingVersion"]),
        list_with_more(&list, more, count, MAX),
        age(obj, now),
    ]
}

const RESOURCE_CLAIM_COLUMNS: &[Column] = &[
    NAME,
    col(
        "State",
        STRING,
        "A summary of the current state (allocated, pending, reserved, etc.).",
    ),
    AGE,
];

fn resource_claim_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let mut states = Vec::new();
    if is_deleting(obj) {
        states.push("deleted");
    }
    if has(obj, &["status", "allocation"]) {
        states.push("allocated");
        if !list_at(obj, &["status", "reservedFor"]).is_empty() {
            states.push("reserved");
        }
    } else if !is_deleting(obj) {
        states.push("pending");
    }
    row![name_of(obj), states.join(","), age(obj, now)]
}

const RESOURCE_SLICE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Node",
        STRING,
        "NodeName identifies the node which provides the resources in this pool.",
    ),
    col(
        "Driver",
        STRING,
        "Driver identifies the DRA driver providing the capacity information.",
    ),
    col("Pool", STRING, "Name is used to identify the pool."),
    AGE,
];

fn resource_slice_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    row![
        name_of(obj),
        str_at(obj, &["spec", "nodeName"]),
        str_at(obj, &["spec", "driver"]),
        str_at(obj, &["spec", "pool", "name"]),
        age(obj, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2025-01-01T12:00:00Z".parse().expect("valid timestamp")
    }

    /// `now` minus a number of seconds, as an RFC 3339 string.
    fn ago(secs: i64) -> String {
        (now() - SignedDuration::from_secs(secs)).to_string()
    }

    fn names(group: &str, resource: &str) -> Vec<String> {
        columns(group, resource)
            .into_iter()
            .map(|c| c.name)
            .collect()
    }

    fn cell(group: &str, resource: &str, obj: &Value, column: &str) -> Value {
        let i = names(group, resource)
            .iter()
            .position(|n| n == column)
            .unwrap_or_else(|| panic!("no column {column} for {group}/{resource}"));
        cells(group, resource, obj, now())[i].clone()
    }

    // Every (group, resource) with a printer.
    const PRINTED: &[(&str, &str)] = &[
        ("", "pods"),
        ("", "podtemplates"),
        ("", "replicationcontrollers"),
        ("", "services"),
        ("", "endpoints"),
        ("", "nodes"),
        ("", "events"),
        ("events.k8s.io", "events"),
        ("", "namespaces"),
        ("", "secrets"),
        ("", "serviceaccounts"),
        ("", "persistentvolumes"),
        ("", "persistentvolumeclaims"),
        ("", "componentstatuses"),
        ("", "configmaps"),
        ("", "resourcequotas"),
        ("apps", "deployments"),
        ("apps", "replicasets"),
        ("apps", "daemonsets"),
        ("apps", "statefulsets"),
        ("apps", "controllerrevisions"),
        ("batch", "jobs"),
        ("batch", "cronjobs"),
        ("policy", "poddisruptionbudgets"),
        ("autoscaling", "horizontalpodautoscalers"),
        ("networking.k8s.io", "ingresses"),
        ("networking.k8s.io", "ingressclasses"),
        ("networking.k8s.io", "networkpolicies"),
        ("networking.k8s.io", "servicecidrs"),
        ("networking.k8s.io", "ipaddresses"),
        ("rbac.authorization.k8s.io", "rolebindings"),
        ("rbac.authorization.k8s.io", "clusterrolebindings"),
        ("certificates.k8s.io", "certificatesigningrequests"),
        ("certificates.k8s.io", "clustertrustbundles"),
        ("coordination.k8s.io", "leases"),
        ("coordination.k8s.io", "leasecandidates"),
        ("storage.k8s.io", "storageclasses"),
        ("storage.k8s.io", "volumeattributesclasses"),
        ("storage.k8s.io", "volumeattachments"),
        ("storage.k8s.io", "csinodes"),
        ("storage.k8s.io", "csidrivers"),
        ("scheduling.k8s.io", "priorityclasses"),
        ("node.k8s.io", "runtimeclasses"),
        ("discovery.k8s.io", "endpointslices"),
        (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
        ),
        (
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
        ),
        (
            "admissionregistration.k8s.io",
            "validatingadmissionpolicies",
        ),
        (
            "admissionregistration.k8s.io",
            "validatingadmissionpolicybindings",
        ),
        ("admissionregistration.k8s.io", "mutatingadmissionpolicies"),
        (
            "admissionregistration.k8s.io",
            "mutatingadmissionpolicybindings",
        ),
        ("apiregistration.k8s.io", "apiservices"),
        ("flowcontrol.apiserver.k8s.io", "flowschemas"),
        (
            "flowcontrol.apiserver.k8s.io",
            "prioritylevelconfigurations",
        ),
        ("internal.apiserver.k8s.io", "storageversions"),
        ("resource.k8s.io", "deviceclasses"),
        ("resource.k8s.io", "resourceclaims"),
        ("resource.k8s.io", "resourceclaimtemplates"),
        ("resource.k8s.io", "resourceslices"),
        ("storagemigration.k8s.io", "storageversionmigrations"),
    ];

    #[test]
    fn human_duration_matches_upstream_tables() {
        let s = SignedDuration::from_secs;
        let ms = SignedDuration::from_millis;
        let ns = SignedDuration::from_nanos;
        let (minute, hour, day) = (60, 3600, 86400);
        let year = 365 * day;
        let cases: &[(SignedDuration, &str)] = &[
            // TestHumanDuration
            (s(1), "1s"),
            (s(70), "70s"),
            (s(190), "3m10s"),
            (s(70 * minute), "70m"),
            (s(47 * hour), "47h"),
            (s(49 * hour), "2d1h"),
            (s((8 * 24 + 2) * hour), "8d"),
            (s(367 * day), "367d"),
            (s((365 * 2 * 24 + 25) * hour), "2y1d"),
            (s((365 * 8 * 24 + 2) * hour), "8y"),
            // TestHumanDurationBoundaries
            (s(-2), "<invalid>"),
            (ns(-2_000_000_000 + 1), "0s"),
            (s(0), "0s"),
            (ms(999), "0s"),
            (ms(2 * 60_000 - 1), "119s"),
            (s(2 * minute), "2m"),
            (s(2 * minute + 1), "2m1s"),
            (ms(10 * 60_000 - 1), "9m59s"),
            (s(10 * minute), "10m"),
            (s(10 * minute + 1), "10m"),
            (ms(3 * 3_600_000 - 1), "179m"),
            (s(3 * hour), "3h"),
            (s(3 * hour + minute), "3h1m"),
            (ms(8 * 3_600_000 - 1), "7h59m"),
            (s(8 * hour), "8h"),
            (s(8 * hour + 59 * minute), "8h"),
            (ms(2 * 86_400_000 - 1), "47h"),
            (s(2 * day), "2d"),
            (s(2 * day + hour), "2d1h"),
            (ms(8 * 86_400_000 - 1), "7d23h"),
            (s(8 * day), "8d"),
            (s(8 * day + 23 * hour), "8d"),
            (ms(2 * year * 1000 - 1), "729d"),
            (s(2 * year), "2y"),
            (s(2 * year + 23 * hour), "2y"),
            (s(2 * year + 23 * hour + 59 * minute), "2y"),
            (ms((2 * year + day) * 1000 - 1), "2y"),
            (s(2 * year + day), "2y1d"),
            (s(3 * year), "3y"),
            (s(4 * year), "4y"),
            (s(5 * year), "5y"),
            (s(6 * year), "6y"),
            (s(7 * year), "7y"),
            (ms(8 * year * 1000 - 1), "7y364d"),
            (s(8 * year), "8y"),
            (s(8 * year + 364 * day), "8y"),
            (s(9 * year), "9y"),
            // The brief's examples.
            (s(119), "119s"),
            (s(5 * minute + 30), "5m30s"),
            (s(7 * hour + 5 * minute), "7h5m"),
            (s(50 * hour), "2d2h"),
            (s(400 * day), "400d"),
            // Go's Duration saturates at ~292 years.
            (s(1000 * year), "292y"),
            (SignedDuration::MIN, "<invalid>"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration(*d), *want, "{d:?}");
        }
    }

    #[test]
    fn ages_and_unknown_timestamps() {
        let obj = json!({"metadata": {"name": "a", "creationTimestamp": ago(3 * 3600)}});
        assert_eq!(cell("", "configmaps", &obj, "Age"), json!("3h"));
        let obj = json!({"metadata": {"name": "a"}});
        assert_eq!(cell("", "configmaps", &obj, "Age"), json!("<unknown>"));
        let obj = json!({"metadata": {"name": "a", "creationTimestamp": "not a time"}});
        assert_eq!(cell("", "configmaps", &obj, "Age"), json!("<unknown>"));
        let obj = json!({"metadata": {"creationTimestamp": "0001-01-01T00:00:00Z"}});
        assert_eq!(cell("", "configmaps", &obj, "Age"), json!("<unknown>"));
    }

    fn running_container(name: &str, restarts: i64) -> Value {
        json!({"name": name, "ready": true, "restartCount": restarts,
               "state": {"running": {"startedAt": ago(600)}}})
    }

    #[test]
    fn pod_running() {
        let pod = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(90)},
            "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.5",
                       "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [running_container("a", 0), running_container("b", 0)]}
        });
        assert_eq!(
            cells("", "pods", &pod, now()),
            vec![
                json!("web"),
                json!("2/2"),
                json!("Running"),
                json!("0"),
                json!("90s"),
                json!("10.0.0.5"),
                json!("n1"),
                json!("<none>"),
                json!("<none>"),
            ]
        );
    }

    #[test]
    fn pod_crash_loop_with_restarts_ago() {
        let pod = json!({
            "metadata": {"name": "crashy"},
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "a", "ready": false, "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(300)}}
            }]}
        });
        let c = cells("", "pods", &pod, now());
        assert_eq!(c[1], json!("0/1"));
        assert_eq!(c[2], json!("CrashLoopBackOff"));
        assert_eq!(c[3], json!("3 (5m ago)"));
    }

    #[test]
    fn pod_completed_and_not_ready() {
        let done = json!({"name": "a", "ready": false, "restartCount": 0,
                          "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
        let pod = json!({
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [done]}
        });
        assert_eq!(cell("", "pods", &pod, "Status"), json!("Completed"));
        assert_eq!(cell("", "pods", &pod, "Ready"), json!("0/1"));

        // One container completed, one still running: not "Completed".
        let pod = json!({
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "containerStatuses": [done, running_container("b", 0)]}
        });
        assert_eq!(cell("", "pods", &pod, "Status"), json!("NotReady"));
        let mut ready = pod.clone();
        ready["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        assert_eq!(cell("", "pods", &ready, "Status"), json!("Running"));

        let pod = json!({
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Failed", "containerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}
        });
        assert_eq!(cell("", "pods", &pod, "Status"), json!("Signal:9"));
    }

    #[test]
    fn pod_init_containers() {
        let pod = json!({
            "spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Pending",
                "initContainerStatuses": [{"name": "init", "restartCount": 0,
                    "state": {"running": {}}}],
                "containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "PodInitializing"}}}]}
        });
        assert_eq!(cell("", "pods", &pod, "Status"), json!("Init:0/1"));
        assert_eq!(cell("", "pods", &pod, "Ready"), json!("0/1"));

        let mut failing = pod.clone();
        failing["status"]["initContainerStatuses"][0]["state"] =
            json!({"waiting": {"reason": "CrashLoopBackOff"}});
        assert_eq!(
            cell("", "pods", &failing, "Status"),
            json!("Init:CrashLoopBackOff")
        );
        failing["status"]["initContainerStatuses"][0]["state"] =
            json!({"terminated": {"exitCode": 2}});
        assert_eq!(
            cell("", "pods", &failing, "Status"),
            json!("Init:ExitCode:2")
        );

        // A started sidecar (restartable init container) counts towards READY.
        let pod = json!({
            "spec": {"initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
                     "containers": [{"name": "a"}]},
            "status": {"phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}],
                "initContainerStatuses": [{"name": "proxy", "started": true, "ready": true,
                    "restartCount": 1, "state": {"running": {}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(7200)}}}],
                "containerStatuses": [running_container("a", 0)]}
        });
        let c = cells("", "pods", &pod, now());
        assert_eq!(c[1], json!("2/2"));
        assert_eq!(c[2], json!("Running"));
        assert_eq!(c[3], json!("1 (120m ago)"));
    }

    #[test]
    fn pod_terminating_unknown_and_gated() {
        let mut pod = json!({
            "metadata": {"deletionTimestamp": ago(5)},
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running", "containerStatuses": [running_container("a", 0)]}
        });
        assert_eq!(cell("", "pods", &pod, "Status"), json!("Terminating"));
        pod["status"]["reason"] = json!("NodeLost");
        assert_eq!(cell("", "pods", &pod, "Status"), json!("Unknown"));
        // Terminal pods being deleted keep their phase.
        let pod =
            json!({"metadata": {"deletionTimestamp": ago(5)}, "status": {"phase": "Succeeded"}});
        assert_eq!(cell("", "pods", &pod, "Status"), json!("Succeeded"));

        let pod = json!({"status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}});
        assert_eq!(cell("", "pods", &pod, "Status"), json!("SchedulingGated"));
    }

    #[test]
    fn pod_wide_cells() {
        let pod = json!({
            "spec": {"readinessGates": [{"conditionType": "a"}, {"conditionType": "b"}]},
            "status": {"podIPs": [{"ip": "fd00::1"}, {"ip": "10.0.0.1"}], "podIP": "10.0.0.1",
                       "nominatedNodeName": "n2",
                       "conditions": [{"type": "a", "status": "True"}, {"type": "b", "status": "False"}]}
        });
        assert_eq!(cell("", "pods", &pod, "IP"), json!("fd00::1"));
        assert_eq!(cell("", "pods", &pod, "Node"), json!("<none>"));
        assert_eq!(cell("", "pods", &pod, "Nominated Node"), json!("n2"));
        assert_eq!(cell("", "pods", &pod, "Readiness Gates"), json!("1/2"));
    }

    #[test]
    fn wide_columns_have_priority_one() {
        let wide_of = |g: &str, r: &str| -> Vec<String> {
            columns(g, r)
                .into_iter()
                .filter(|c| c.priority == 1)
                .map(|c| c.name)
                .collect()
        };
        assert_eq!(
            wide_of("", "pods"),
            ["IP", "Node", "Nominated Node", "Readiness Gates"]
        );
        assert_eq!(
            wide_of("", "nodes"),
            [
                "Internal-IP",
                "External-IP",
                "OS-Image",
                "Kernel-Version",
                "Container-Runtime"
            ]
        );
        assert_eq!(wide_of("", "services"), ["Selector"]);
        assert_eq!(
            wide_of("apps", "deployments"),
            ["Containers", "Images", "Selector"]
        );
        assert_eq!(
            wide_of("", "events"),
            ["Subobject", "Source", "First Seen", "Count", "Name"]
        );
        assert_eq!(wide_of("", "persistentvolumeclaims"), ["VolumeMode"]);
        assert!(columns("", "configmaps").iter().all(|c| c.priority == 0));

        let pod_columns = columns("", "pods");
        assert_eq!(pod_columns[0].name, "Name");
        assert_eq!(pod_columns[0].format, "name");
        assert_eq!(
            names("", "pods")[..5],
            ["Name", "Ready", "Status", "Restarts", "Age"]
        );
    }

    #[test]
    fn node_status_roles_and_wide() {
        let node = json!({
            "metadata": {"name": "n1", "creationTimestamp": ago(50 * 3600), "labels": {
                "node-role.kubernetes.io/control-plane": "",
                "node-role.kubernetes.io/master": "true",
                "node-role.kubernetes.io/": "",
                "kubernetes.io/role": "edge",
                "kubernetes.io/hostname": "n1"}},
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"},
                               {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "Hostname", "address": "n1"},
                              {"type": "InternalIP", "address": "192.168.1.10"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian GNU/Linux 12",
                             "containerRuntimeVersion": "containerd://2.0.0"}}
        });
        assert_eq!(
            cells("", "nodes", &node, now()),
            vec![
                json!("n1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,edge,master"),
                json!("2d2h"),
                json!("v1.33.0"),
                json!("192.168.1.10"),
                json!("<none>"),
                json!("Debian GNU/Linux 12"),
                json!("<unknown>"),
                json!("containerd://2.0.0"),
            ]
        );
        let node = json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        assert_eq!(cell("", "nodes", &node, "Status"), json!("NotReady"));
        assert_eq!(cell("", "nodes", &node, "Roles"), json!("<none>"));
        assert_eq!(cell("", "nodes", &json!({}), "Status"), json!("Unknown"));
    }

    #[test]
    fn service_ports_and_addresses() {
        let svc = json!({
            "metadata": {"name": "web"},
            "spec": {"type": "NodePort", "clusterIP": "10.43.0.10", "clusterIPs": ["10.43.0.10"],
                     "ports": [{"port": 80, "protocol": "TCP"},
                               {"port": 443, "nodePort": 30443, "protocol": "TCP"}],
                     "selector": {"b": "2", "a": "1"}}
        });
        let c = cells("", "services", &svc, now());
        assert_eq!(c[1], json!("NodePort"));
        assert_eq!(c[2], json!("10.43.0.10"));
        assert_eq!(c[3], json!("<none>"));
        assert_eq!(c[4], json!("80/TCP,443:30443/TCP"));
        assert_eq!(c[6], json!("a=1,b=2"));

        let lb = json!({"spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.11",
                                 "ports": [{"port": 53, "protocol": "UDP"}]}});
        assert_eq!(cell("", "services", &lb, "External-IP"), json!("<pending>"));
        assert_eq!(cell("", "services", &lb, "Cluster-IP"), json!("10.43.0.11"));
        let mut lb = lb;
        lb["status"] = json!({"loadBalancer": {"ingress": [
            {"ip": "203.0.113.9"}, {"hostname": "lb.example.com"}, {"ip": "203.0.113.9"}]}});
        lb["spec"]["externalIPs"] = json!(["198.51.100.1"]);
        assert_eq!(
            cell("", "services", &lb, "External-IP"),
            json!("203.0.113.9,lb.example.com,198.51.100.1")
        );
        let ext = json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}});
        assert_eq!(
            cell("", "services", &ext, "External-IP"),
            json!("db.example.com")
        );
        assert_eq!(cell("", "services", &ext, "Cluster-IP"), json!("<none>"));
        assert_eq!(cell("", "services", &ext, "Port(s)"), json!("<none>"));
        assert_eq!(cell("", "services", &ext, "Selector"), json!("<none>"));
    }

    #[test]
    fn deployment_ready_and_selector() {
        let d = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(3600)},
            "spec": {"replicas": 3,
                     "selector": {"matchLabels": {"app": "web"},
                                  "matchExpressions": [{"key": "tier", "operator": "In",
                                                        "values": ["z", "a"]}]},
                     "template": {"spec": {"containers": [
                         {"name": "nginx", "image": "nginx:1.27"},
                         {"name": "sidecar", "image": "busybox"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
        });
        assert_eq!(
            cells("apps", "deployments", &d, now()),
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("60m"),
                json!("nginx,sidecar"),
                json!("nginx:1.27,busybox"),
                json!("app=web,tier in (a,z)"),
            ]
        );
        let bad = json!({"spec": {"selector": {"matchExpressions": [
            {"key": "a", "operator": "Bogus"}]}}});
        assert_eq!(
            cell("apps", "deployments", &bad, "Selector"),
            json!("<invalid>")
        );
        assert_eq!(
            cell("apps", "replicasets", &bad, "Selector"),
            json!("<error>")
        );
        assert_eq!(
            cell("apps", "deployments", &json!({}), "Selector"),
            json!("")
        );
        assert_eq!(
            cell("apps", "replicasets", &json!({}), "Selector"),
            json!("<none>")
        );
        assert_eq!(
            cell("apps", "deployments", &json!({}), "Ready"),
            json!("0/0")
        );
    }

    #[test]
    fn integer_columns_are_json_numbers() {
        let cm = json!({"data": {"a": "1", "b": "2"}, "binaryData": {"c": ""}});
        assert_eq!(cell("", "configmaps", &cm, "Data"), json!(3));
        let secret = json!({"type": "Opaque", "data": {"a": "eA=="}, "stringData": {"b": "y"}});
        assert_eq!(cell("", "secrets", &secret, "Data"), json!(2));
        assert_eq!(cell("", "secrets", &secret, "Type"), json!("Opaque"));
        let sa = json!({"secrets": [{"name": "t"}]});
        assert_eq!(cell("", "serviceaccounts", &sa, "Secrets"), json!(1));
        let rs = json!({"spec": {"replicas": 2}, "status": {"replicas": 2, "readyReplicas": 1}});
        assert_eq!(
            cells("apps", "replicasets", &rs, now())[1..4],
            [json!(2), json!(2), json!(1)]
        );
        let ds = json!({"status": {"desiredNumberScheduled": 3, "numberReady": 2}});
        assert_eq!(cell("apps", "daemonsets", &ds, "Desired"), json!(3));
        assert_eq!(
            cell("apps", "daemonsets", &ds, "Node Selector"),
            json!("<none>")
        );
        let pc = json!({"value": 1000000000, "globalDefault": false});
        assert_eq!(
            cell("scheduling.k8s.io", "priorityclasses", &pc, "Value"),
            json!(1000000000)
        );
        assert_eq!(
            cell(
                "scheduling.k8s.io",
                "priorityclasses",
                &pc,
                "Global-Default"
            ),
            json!(false)
        );
    }

    #[test]
    fn statefulsets_jobs_and_cronjobs() {
        let sts = json!({"spec": {"replicas": 3}, "status": {"readyReplicas": 1}});
        assert_eq!(cell("apps", "statefulsets", &sts, "Ready"), json!("1/3"));

        let job = json!({
            "spec": {"completions": 3, "parallelism": 1, "selector": {"matchLabels": {
                "batch.kubernetes.io/controller-uid": "abc"}}},
            "status": {"succeeded": 3, "startTime": ago(600), "completionTime": ago(470),
                       "conditions": [{"type": "SuccessCriteriaMet", "status": "True"},
                                      {"type": "Complete", "status": "True"}]}
        });
        let c = cells("batch", "jobs", &job, now());
        assert_eq!(c[1..4], [json!("Complete"), json!("3/3"), json!("2m10s")]);
        assert_eq!(c[7], json!("batch.kubernetes.io/controller-uid=abc"));

        let running = json!({"spec": {"parallelism": 2}, "status": {"startTime": ago(30)}});
        let c = cells("batch", "jobs", &running, now());
        assert_eq!(c[1..4], [json!("Running"), json!("0/1 of 2"), json!("30s")]);
        let failed = json!({"status": {"conditions": [{"type": "Failed", "status": "True"}]}});
        let c = cells("batch", "jobs", &failed, now());
        assert_eq!(c[1..4], [json!("Failed"), json!("0/1"), json!("")]);
        let suspended =
            json!({"status": {"conditions": [{"type": "Suspended", "status": "True"}]}});
        assert_eq!(
            cell("batch", "jobs", &suspended, "Status"),
            json!("Suspended")
        );

        let cj = json!({"spec": {"schedule": "*/5 * * * *", "suspend": false,
                                 "jobTemplate": {"spec": {"template": {"spec": {
                                     "containers": [{"name": "c", "image": "busybox"}]}}}}},
                        "status": {"active": [{"name": "j1"}], "lastScheduleTime": ago(65)}});
        let c = cells("batch", "cronjobs", &cj, now());
        assert_eq!(
            c[1..6],
            [
                json!("*/5 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("65s")
            ]
        );
        assert_eq!(c[7..], [json!("c"), json!("busybox"), json!("<none>")]);
        let c = cells("batch", "cronjobs", &json!({}), now());
        assert_eq!(c[3], json!("<unset>"));
        assert_eq!(c[5], json!("<none>"));
    }

    #[test]
    fn events_core_and_events_k8s_io() {
        let ev = json!({
            "metadata": {"name": "web.17f"},
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{a}"},
            "reason": "Pulled", "type": "Normal", "message": "  pulled image \n",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": ago(600), "lastTimestamp": ago(60), "count": 4
        });
        assert_eq!(
            cells("", "events", &ev, now()),
            vec![
                json!("60s"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/web"),
                json!("spec.containers{a}"),
                json!("kubelet, n1"),
                json!("pulled image"),
                json!("10m"),
                json!(4),
                json!("web.17f"),
            ]
        );
        let ev = json!({
            "metadata": {"name": "x"}, "eventTime": "2025-01-01T11:59:00.000000Z",
            "regarding": {"kind": "Node", "name": "n1"}, "note": "hello",
            "reason": "Starting", "type": "Normal", "reportingController": "kedge"
        });
        let c = cells("events.k8s.io", "events", &ev, now());
        assert_eq!(c[0], json!("60s"));
        assert_eq!(c[3], json!("node/n1"));
        assert_eq!(c[5], json!("kedge"));
        assert_eq!(c[6], json!("hello"));
        assert_eq!(c[7], json!("60s"));
        assert_eq!(c[8], json!(1));
        let ev = json!({"series": {"count": 7, "lastObservedTime": "2025-01-01T11:58:00.000000Z"},
                        "eventTime": "2025-01-01T11:00:00.000000Z"});
        let c = cells("", "events", &ev, now());
        assert_eq!(c[0], json!("2m"));
        assert_eq!(c[7], json!("60m"));
        assert_eq!(c[8], json!(7));
        assert_eq!(
            cells("", "events", &json!({}), now())[0],
            json!("<unknown>")
        );
    }

    #[test]
    fn endpoints_and_slices() {
        let ep = json!({"subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::2"}],
             "ports": [{"port": 80}, {"port": 443}]}]});
        assert_eq!(
            cell("", "endpoints", &ep, "Endpoints"),
            json!("10.0.0.1:80,[fd00::2]:80,10.0.0.1:443 + 1 more...")
        );
        let headless = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}]}]});
        assert_eq!(
            cell("", "endpoints", &headless, "Endpoints"),
            json!("10.0.0.1")
        );
        assert_eq!(
            cell("", "endpoints", &json!({}), "Endpoints"),
            json!("<none>")
        );

        let slice = json!({"addressType": "IPv4",
            "ports": [{"port": 80}, {"name": "dns"}, {}, {"port": 9}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]});
        let c = cells("discovery.k8s.io", "endpointslices", &slice, now());
        assert_eq!(
            c[1..4],
            [
                json!("IPv4"),
                json!("80,dns,* + 1 more..."),
                json!("10.0.0.1,10.0.0.2")
            ]
        );
        let c = cells("discovery.k8s.io", "endpointslices", &json!({}), now());
        assert_eq!(c[2..4], [json!("<unset>"), json!("<unset>")]);
    }

    #[test]
    fn storage_and_quota() {
        let pv = json!({"metadata": {"name": "pv1"},
            "spec": {"capacity": {"storage": "1024Mi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "local",
                     "claimRef": {"namespace": "default", "name": "data"}},
            "status": {"phase": "Bound"}});
        let c = cells("", "persistentvolumes", &pv, now());
        assert_eq!(
            c[1..9],
            [
                json!("1Gi"),
                json!("RWO,RWX"),
                json!("Retain"),
                json!("Bound"),
                json!("default/data"),
                json!("local"),
                json!("<unset>"),
                json!("")
            ]
        );
        assert_eq!(c[10], json!("<unset>"));

        let pending = json!({"spec": {"resources": {"requests": {"storage": "5Gi"}}}, "status": {"phase": "Pending"}});
        let c = cells("", "persistentvolumeclaims", &pending, now());
        assert_eq!(
            c[1..6],
            [json!("Pending"), json!(""), json!(""), json!(""), json!("")]
        );
        let bound = json!({"metadata": {"annotations": {"volume.beta.kubernetes.io/storage-class": "old"}},
            "spec": {"volumeName": "pv1", "storageClassName": "new", "volumeMode": "Filesystem"},
            "status": {"phase": "Bound", "capacity": {"storage": "2000M"}, "accessModes": ["ReadWriteOncePod"]}});
        let c = cells("", "persistentvolumeclaims", &bound, now());
        assert_eq!(
            c[1..6],
            [
                json!("Bound"),
                json!("pv1"),
                json!("2G"),
                json!("RWOP"),
                json!("old")
            ]
        );
        assert_eq!(c[8], json!("Filesystem"));

        let sc = json!({"metadata": {"name": "local-path", "annotations": {
                "storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"});
        let c = cells("storage.k8s.io", "storageclasses", &sc, now());
        assert_eq!(
            c[..5],
            [
                json!("local-path (default)"),
                json!("rancher.io/local-path"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(false)
            ]
        );

        let quota = json!({"status": {
            "hard": {"pods": "10", "limits.memory": "2Gi", "requests.cpu": "1000m", "limits.cpu": "2"},
            "used": {"pods": "3", "requests.cpu": "250m", "limits.memory": "512Mi"}}});
        let c = cells("", "resourcequotas", &quota, now());
        assert_eq!(c[1], json!("pods: 3/10, requests.cpu: 250m/1"));
        assert_eq!(c[2], json!("limits.cpu: 0/2, limits.memory: 512Mi/2Gi"));
    }

    #[test]
    fn quantities_print_canonically() {
        let cases = [
            ("1Gi", "1Gi"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("0.5Gi", "512Mi"),
            ("1.5Ki", "1536"),
            ("0.5Ki", "512"),
            ("100Mi", "100Mi"),
            ("1000m", "1"),
            ("1500m", "1500m"),
            ("1.5", "1500m"),
            ("0.1", "100m"),
            ("1000", "1k"),
            ("10", "10"),
            ("0", "0"),
            ("0Gi", "0"),
            ("-0", "0"),
            ("5G", "5G"),
            ("1e3", "1e3"),
            ("1000e3", "1e6"),
            ("1.5k", "1500"),
            ("0.0000000001", "1n"),
            ("100u", "100u"),
            ("-250m", "-250m"),
            ("+1Gi", "+1Gi"),
            ("1Ei", "1Ei"),
        ];
        for (input, want) in cases {
            assert_eq!(canonical_quantity(input).as_deref(), Some(want), "{input}");
        }
        assert_eq!(canonical_quantity("12 apples"), None);
        assert_eq!(canonical_quantity("1Xi"), None);
        assert_eq!(quantity_string(&json!(5)), "5");
        assert_eq!(quantity_string(&json!("garbage")), "garbage");
    }

    #[test]
    fn label_selector_strings() {
        let sel = json!({"matchLabels": {"b": "2", "a": "1"}, "matchExpressions": [
            {"key": "c", "operator": "NotIn", "values": ["y", "x"]},
            {"key": "d", "operator": "Exists"},
            {"key": "e", "operator": "DoesNotExist"}]});
        assert_eq!(
            label_selector_string(Some(&sel)),
            Ok("a=1,b=2,c notin (x,y),d,!e".to_string())
        );
        assert_eq!(label_selector_string(Some(&json!({}))), Ok(String::new()));
        let empty_in = json!({"matchExpressions": [{"key": "a", "operator": "In"}]});
        assert_eq!(label_selector_string(Some(&empty_in)), Err(()));
        let bad_key = json!({"matchLabels": {"-a": "1"}});
        assert_eq!(format_label_selector(Some(&bad_key)), "<error>");
        assert_eq!(
            label_selector_struct_string(&json!({"matchLabels": {"a": "b"},
                "matchExpressions": [{"key": "k", "operator": "In", "values": ["x", "y"]}]})),
            "&LabelSelector{MatchLabels:map[string]string{a: b,},MatchExpressions:[]LabelSelectorRequirement{LabelSelectorRequirement{Key:k,Operator:In,Values:[x y],},},}"
        );
    }

    #[test]
    fn default_table_for_kinds_without_a_printer() {
        for (g, r) in [
            ("rbac.authorization.k8s.io", "roles"),
            ("rbac.authorization.k8s.io", "clusterroles"),
            ("", "limitranges"),
            ("apiextensions.k8s.io", "customresourcedefinitions"),
            ("storage.k8s.io", "csistoragecapacities"),
            ("example.com", "widgets"),
        ] {
            let cols = columns(g, r);
            assert_eq!(cols.len(), 2, "{g}/{r}");
            assert_eq!(
                (cols[0].name.as_str(), cols[0].format.as_str()),
                ("Name", "name")
            );
            assert_eq!(
                (cols[1].name.as_str(), cols[1].type_.as_str()),
                ("Created At", "date")
            );
        }
        let role =
            json!({"metadata": {"name": "r", "creationTimestamp": "2024-05-06T07:08:09.123Z"}});
        assert_eq!(
            cells("rbac.authorization.k8s.io", "roles", &role, now()),
            vec![json!("r"), json!("2024-05-06T07:08:09Z")]
        );
        assert_eq!(
            cells("", "limitranges", &json!({}), now()),
            vec![json!(""), json!("0001-01-01T00:00:00Z")]
        );
        let def = &columns("", "limitranges")[1];
        let v = serde_json::to_value(def).expect("serializes");
        assert_eq!(v["type"], json!("date"));
        assert!(v.get("type_").is_none());
    }

    #[test]
    fn api_services() {
        let names: Vec<String> = columns("apiregistration.k8s.io", "apiservices")
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["Name", "Service", "Available", "Age"]);
        let local = json!({"metadata": {"name": "v1.apps", "creationTimestamp": ago(90)},
            "status": {"conditions": [{"type": "Available", "status": "True", "reason": "Local"}]}});
        assert_eq!(
            cells("apiregistration.k8s.io", "apiservices", &local, now()),
            vec![
                json!("v1.apps"),
                json!("Local"),
                json!("True"),
                json!("90s")
            ]
        );
        let remote = json!({"metadata": {"name": "v1beta1.metrics.k8s.io"},
            "spec": {"service": {"namespace": "kube-system", "name": "metrics-server"}},
            "status": {"conditions": [{"type": "Available", "status": "False",
                "reason": "MissingEndpoints"}]}});
        let c = cells("apiregistration.k8s.io", "apiservices", &remote, now());
        assert_eq!(c[1], json!("kube-system/metrics-server"));
        assert_eq!(c[2], json!("False (MissingEndpoints)"));
        let unknown = json!({"metadata": {"name": "x"}, "spec": {"service": {}}});
        assert_eq!(
            cells("apiregistration.k8s.io", "apiservices", &unknown, now())[1..3],
            [json!("/"), json!("Unknown")]
        );
    }

    #[test]
    fn rbac_csr_and_misc() {
        let rb = json!({"roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [
            {"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"},
            {"kind": "ServiceAccount", "namespace": "ci", "name": "runner"},
            {"kind": "User", "name": "bob"}]});
        let c = cells("rbac.authorization.k8s.io", "rolebindings", &rb, now());
        assert_eq!(c[1], json!("ClusterRole/view"));
        assert_eq!(
            c[3..],
            [json!("alice, bob"), json!("devs"), json!("ci/runner")]
        );

        let csr = json!({"spec": {"signerName": "kubernetes.io/kubelet-serving", "username": "system:node:n1",
                                  "expirationSeconds": 86400},
                         "status": {"conditions": [{"type": "Approved"}], "certificate": "LS0t"}});
        let c = cells(
            "certificates.k8s.io",
            "certificatesigningrequests",
            &csr,
            now(),
        );
        assert_eq!(
            c[2..],
            [
                json!("kubernetes.io/kubelet-serving"),
                json!("system:node:n1"),
                json!("24h"),
                json!("Approved,Issued")
            ]
        );

        let cr = json!({"metadata": {"ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "controller": true}]},
            "revision": 4});
        let c = cells("apps", "controllerrevisions", &cr, now());
        assert_eq!(c[1..3], [json!("daemonset.apps/ds"), json!(4)]);

        let pdb = json!({"spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}});
        let c = cells("policy", "poddisruptionbudgets", &pdb, now());
        assert_eq!(c[1..4], [json!("50%"), json!("N/A"), json!(1)]);

        let ing = json!({"spec": {"ingressClassName": "traefik", "tls": [{}],
            "rules": [{"host": "a"}, {}, {"host": "b"}, {"host": "c"}, {"host": "d"}]}});
        let c = cells("networking.k8s.io", "ingresses", &ing, now());
        assert_eq!(
            c[1..5],
            [
                json!("traefik"),
                json!("a,b,c + 2 more..."),
                json!(""),
                json!("80, 443")
            ]
        );

        let np = json!({"spec": {}});
        assert_eq!(
            cell("networking.k8s.io", "networkpolicies", &np, "Pod-Selector"),
            json!("<none>")
        );

        let lease = json!({"spec": {"holderIdentity": "n1"}});
        assert_eq!(
            cell("coordination.k8s.io", "leases", &lease, "Holder"),
            json!("n1")
        );

        let csi = json!({"spec": {"volumeLifecycleModes": ["Persistent", "Ephemeral"]}});
        let c = cells("storage.k8s.io", "csidrivers", &csi, now());
        assert_eq!(
            c[1..7],
            [
                json!(true),
                json!(false),
                json!(false),
                json!("<unset>"),
                json!(false),
                json!("Persistent,Ephemeral")
            ]
        );

        let hpa = json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5,
            "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
                {"type": "Pods", "pods": {"target": {"averageValue": "1k"}}},
                {"type": "External", "external": {"target": {"value": "10"}}}]},
            "status": {"currentReplicas": 2, "currentMetrics": [
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 12}}}]}});
        let c = cells("autoscaling", "horizontalpodautoscalers", &hpa, now());
        assert_eq!(
            c[1..6],
            [
                json!("Deployment/web"),
                json!("cpu: 12%/80%, <unknown>/1k + 1 more..."),
                json!("<unset>"),
                json!(5),
                json!(2)
            ]
        );
        let v1 = json!({"spec": {"targetCPUUtilizationPercentage": 50}});
        assert_eq!(
            cell("autoscaling", "horizontalpodautoscalers", &v1, "Targets"),
            json!("cpu: <unknown>/50%")
        );
    }

    #[test]
    fn every_printer_survives_partial_objects() {
        let odd_inputs = [
            json!(null),
            json!({}),
            json!([]),
            json!("pod"),
            json!({"metadata": 5, "spec": [], "status": "x"}),
            json!({"metadata": {"name": 7, "labels": {"a": 1}, "ownerReferences": [{"controller": true,
                "apiVersion": "a/b/c"}]},
                   "spec": {"containers": {}, "replicas": "three", "selector": {"matchLabels": []},
                            "ports": [5, {"port": "x"}], "metrics": [{"type": "Object"}, {"type": "External"}],
                            "paramRef": {"selector": {}}, "limited": {"limitResponse": {"queuing": {}}}},
                   "status": {"containerStatuses": [null, {"state": {"terminated": null}}],
                              "initContainerStatuses": [{"state": {"terminated": {}}}],
                              "conditions": "bad", "hard": {"cpu": {"x": 1}}, "podIPs": [{}]},
                   "subsets": [{"ports": [{}], "addresses": [{}]}], "series": {}, "data": null}),
        ];
        for (g, r) in PRINTED {
            let cols = columns(g, r);
            assert!(!cols.is_empty(), "{g}/{r}");
            for input in &odd_inputs {
                let c = cells(g, r, input, now());
                let expected = if *r == "ipaddresses" {
                    cols.len() + 1
                } else {
                    cols.len()
                };
                assert_eq!(c.len(), expected, "{g}/{r} on {input}");
            }
        }
        // Name first (with format name) everywhere but events.
        for (g, r) in PRINTED {
            let cols = columns(g, r);
            if *r == "events" {
                assert_eq!(cols.last().map(|c| c.format.as_str()), Some("name"));
                continue;
            }
            assert_eq!(cols[0].name, "Name", "{g}/{r}");
        }
    }
}
