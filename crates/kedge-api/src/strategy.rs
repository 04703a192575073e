//! Per-kind behaviour of the generic REST handler: what create resets, what
//! update may change, defaulting and validation. Works on raw JSON so that
//! unknown fields survive.

use serde_json::{json, Map, Value};

use crate::meta;
use crate::names;
use crate::registry::{NameRule, ResourceInfo};
use crate::status::Cause;

/// Validate an object name for a kind; causes on `metadata.name`.
pub fn validate_name(ri: &ResourceInfo, name: &str, field: &str) -> Vec<Cause> {
    let errs = match ri.name_rule {
        NameRule::Subdomain => names::is_dns1123_subdomain(name),
        NameRule::Label => names::is_dns1123_label(name),
        NameRule::Label1035 => dns1035_label(name),
        NameRule::PathSegment => names::is_path_segment_name(name),
    };
    errs.into_iter()
        .map(|e| Cause::invalid(field, &json!(name), &e))
        .collect()
}

/// DNS-1035 label (`k8s.io/apimachinery/pkg/util/validation.IsDNS1035Label`).
fn dns1035_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    if !ok {
        errs.push("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".to_string());
    }
    errs
}

/// Fill in what the server sets on create for this kind, before validation.
/// The handler has already set uid, creationTimestamp and name.
pub fn prepare_for_create(ri: &ResourceInfo, obj: &mut Value) {
    if ri.has_generation {
        meta::metadata_mut(obj).insert("generation".into(), json!(1));
    }
    let Some(o) = obj.as_object_mut() else { return };
    default_other(ri, o);
    match (ri.group, ri.plural) {
        ("", "namespaces") => {
            let spec = child(o, "spec");
            spec.insert("finalizers".into(), json!(["kubernetes"]));
            o.insert("status".into(), json!({"phase": "Active"}));
        }
        ("", "pods") => {
            let spec = child(o, "spec");
            default_pod_spec(spec);
            // What the Priority admission plugin sets on pods.
            set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
            set_default(spec, "priority", json!(0));
            let qos = qos_class(o.get("spec"));
            o.insert(
                "status".into(),
                json!({"phase": "Pending", "qosClass": qos}),
            );
        }
        ("", "services") => {
            default_service_spec(child(o, "spec"));
            o.insert("status".into(), json!({"loadBalancer": {}}));
        }
        ("", "persistentvolumes") | ("", "persistentvolumeclaims") => {
            o.insert("status".into(), json!({"phase": "Pending"}));
        }
        ("", "nodes") => {}
        ("apps", _) | ("batch", _) | ("", "replicationcontrollers" | "podtemplates") => {
            default_workload(ri.plural, o);
            if ri.has_status() {
                o.remove("status");
            }
        }
        ("", "secrets") => {
            set_default(o, "type", json!("Opaque"));
            fold_string_data(o);
        }
        _ => {
            if ri.has_status() {
                o.remove("status");
                if ri.group == "apiextensions.k8s.io" || ri.group == "certificates.k8s.io" {
                    o.insert("status".into(), json!({}));
                }
                if let Some(s) = initial_status(ri, o) {
                    o.insert("status".into(), s);
                }
            }
            if ri.group == "autoscaling" {
                drop_hpa_tolerance(o, None);
            }
        }
    }
    if ri.group == "batch" && ri.plural == "jobs" {
        generate_job_selector(obj);
    }
    if ri.plural == "namespaces" {
        // Upstream labels every namespace with its own name.
        let name = meta::name(obj).to_string();
        let md = meta::metadata_mut(obj);
        let labels = md.entry("labels").or_insert_with(|| json!({}));
        if let Some(l) = labels.as_object_mut() {
            l.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
    }
}

/// Carry over what an update of the main resource may not change, and bump
/// `generation` when the spec (everything but metadata and status) changed.
pub fn prepare_for_update(ri: &ResourceInfo, new: &mut Value, old: &Value) {
    if ri.has_status() {
        match old.get("status") {
            Some(s) => {
                if let Some(o) = new.as_object_mut() {
                    o.insert("status".into(), s.clone());
                }
            }
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    if ri.plural == "namespaces" && ri.group.is_empty() {
        // spec.finalizers changes only through /finalize.
        if let (Some(n), Some(spec)) = (new.as_object_mut(), old.get("spec")) {
            n.insert("spec".into(), spec.clone());
        }
        let name = meta::name(old).to_string();
        let md = meta::metadata_mut(new);
        let labels = md.entry("labels").or_insert_with(|| json!({}));
        if let Some(l) = labels.as_object_mut() {
            l.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
    }
    if let Some(o) = new.as_object_mut() {
        // Defaulting applies to every write, as upstream decodes every body
        // through its defaulters.
        match (ri.group, ri.plural) {
            ("apps", _) | ("batch", _) | ("", "replicationcontrollers" | "podtemplates") => {
                default_workload(ri.plural, o)
            }
            ("", "services") => default_service_spec(child(o, "spec")),
            ("", "pods") => default_pod_spec(child(o, "spec")),
            _ => default_other(ri, o),
        }
    }
    if ri.group == "autoscaling" {
        if let Some(o) = new.as_object_mut() {
            drop_hpa_tolerance(o, Some(old));
        }
    }
    if ri.plural == "secrets" && ri.group.is_empty() {
        if let Some(o) = new.as_object_mut() {
            set_default(
                o,
                "type",
                old.get("type").cloned().unwrap_or(json!("Opaque")),
            );
            fold_string_data(o);
        }
    }
    let old_gen = meta::generation(old);
    if ri.has_generation {
        let changed = strip_meta_status(new) != strip_meta_status(old);
        let g = if changed { old_gen + 1 } else { old_gen.max(1) };
        meta::metadata_mut(new).insert("generation".into(), json!(g));
    } else if old_gen != 0 {
        meta::metadata_mut(new).insert("generation".into(), json!(old_gen));
    }
}

/// For a `status` subresource update: keep everything from `old` but status
/// (and the few metadata fields status writers may touch).
pub fn prepare_for_status_update(new: &mut Value, old: &Value) {
    let status = new.get("status").cloned();
    let new_meta = meta::metadata(new).cloned();
    let mut merged = old.clone();
    if let Some(o) = merged.as_object_mut() {
        match status {
            Some(s) => {
                o.insert("status".into(), s);
            }
            None => {
                o.remove("status");
            }
        }
    }
    if let Some(nm) = new_meta {
        // resourceVersion is the precondition; carry it for the conflict check.
        if let Some(rv) = nm.get("resourceVersion") {
            meta::metadata_mut(&mut merged).insert("resourceVersion".into(), rv.clone());
        }
    }
    *new = merged;
}

fn strip_meta_status(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("metadata");
        o.remove("status");
    }
    v
}

fn child<'a>(o: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let e = o.entry(key).or_insert_with(|| json!({}));
    if !e.is_object() {
        *e = json!({});
    }
    match e {
        Value::Object(m) => m,
        _ => unreachable!("made an object above"),
    }
}

fn set_default(o: &mut Map<String, Value>, key: &str, v: Value) {
    if !o.contains_key(key) {
        o.insert(key.into(), v);
    }
}

/// Upstream's `SetDefaults_*` for the remaining built-in kinds with defaults.
fn default_other(ri: &ResourceInfo, o: &mut Map<String, Value>) {
    match (ri.group, ri.plural) {
        ("", "persistentvolumes") => {
            let spec = child(o, "spec");
            set_default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
            set_default(spec, "volumeMode", json!("Filesystem"));
        }
        ("", "persistentvolumeclaims") => {
            set_default(child(o, "spec"), "volumeMode", json!("Filesystem"));
        }
        ("", "endpoints") => {
            if let Some(Value::Array(subsets)) = o.get_mut("subsets") {
                for ss in subsets.iter_mut().filter_map(Value::as_object_mut) {
                    if let Some(Value::Array(ports)) = ss.get_mut("ports") {
                        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                            set_default(p, "protocol", json!("TCP"));
                        }
                    }
                }
            }
        }
        ("discovery.k8s.io", "endpointslices") => {
            if let Some(Value::Array(ports)) = o.get_mut("ports") {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    set_default(p, "protocol", json!("TCP"));
                    set_default(p, "name", json!(""));
                }
            }
        }
        ("storage.k8s.io", "storageclasses") => {
            set_default(o, "reclaimPolicy", json!("Delete"));
            set_default(o, "volumeBindingMode", json!("Immediate"));
        }
        ("storage.k8s.io", "csidrivers") => {
            let spec = child(o, "spec");
            set_default(spec, "attachRequired", json!(true));
            set_default(spec, "podInfoOnMount", json!(false));
            set_default(spec, "storageCapacity", json!(false));
            set_default(spec, "fsGroupPolicy", json!("ReadWriteOnceWithFSType"));
            set_default(spec, "volumeLifecycleModes", json!(["Persistent"]));
            set_default(spec, "requiresRepublish", json!(false));
            set_default(spec, "seLinuxMount", json!(false));
        }
        ("scheduling.k8s.io", "priorityclasses") => {
            set_default(o, "preemptionPolicy", json!("PreemptLowerPriority"));
        }
        ("networking.k8s.io", "networkpolicies") => {
            let spec = child(o, "spec");
            if !spec.contains_key("policyTypes") {
                let mut types = vec![json!("Ingress")];
                if spec
                    .get("egress")
                    .is_some_and(|e| e.as_array().is_some_and(|a| !a.is_empty()))
                {
                    types.push(json!("Egress"));
                }
                spec.insert("policyTypes".into(), Value::Array(types));
            }
        }
        ("networking.k8s.io", "ingresses") => {
            let rules = o
                .get_mut("spec")
                .and_then(|s| s.get_mut("rules"))
                .and_then(Value::as_array_mut);
            for r in rules.into_iter().flatten() {
                let paths = r.pointer_mut("/http/paths").and_then(Value::as_array_mut);
                for p in paths.into_iter().flatten().filter_map(Value::as_object_mut) {
                    set_default(p, "pathType", json!("ImplementationSpecific"));
                }
            }
        }
        ("autoscaling", "horizontalpodautoscalers") => default_hpa(o),
        ("admissionregistration.k8s.io", _) => default_admission(ri.plural, o),
        ("apiregistration.k8s.io", "apiservices") => {
            if let Some(svc) = o
                .get_mut("spec")
                .and_then(|s| s.get_mut("service"))
                .and_then(Value::as_object_mut)
            {
                set_default(svc, "port", json!(443));
            }
        }
        ("flowcontrol.apiserver.k8s.io", _) => default_flowcontrol(ri.plural, o),
        _ => {}
    }
}

/// The pod template inside a workload object, if any.
fn template_spec<'a>(
    plural: &str,
    o: &'a mut Map<String, Value>,
) -> Option<&'a mut Map<String, Value>> {
    let tpl = match plural {
        "podtemplates" => o.get_mut("template"),
        "cronjobs" => o
            .get_mut("spec")?
            .get_mut("jobTemplate")?
            .get_mut("spec")?
            .get_mut("template"),
        _ => o.get_mut("spec")?.get_mut("template"),
    }?;
    tpl.as_object_mut()?.get_mut("spec")?.as_object_mut()
}

/// Upstream's `SetDefaults_*` for the workload kinds (apps/v1, batch/v1, RCs).
fn default_workload(plural: &str, o: &mut Map<String, Value>) {
    if let Some(ps) = template_spec(plural, o) {
        default_pod_spec(ps);
    }
    if plural == "podtemplates" || plural == "controllerrevisions" {
        return;
    }
    let spec = child(o, "spec");
    match plural {
        "deployments" => {
            set_default(spec, "replicas", json!(1));
            let strategy = child(spec, "strategy");
            set_default(strategy, "type", json!("RollingUpdate"));
            if strategy.get("type") == Some(&json!("RollingUpdate")) {
                let ru = child(strategy, "rollingUpdate");
                set_default(ru, "maxUnavailable", json!("25%"));
                set_default(ru, "maxSurge", json!("25%"));
            }
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
        }
        "replicasets" => set_default(spec, "replicas", json!(1)),
        "replicationcontrollers" => {
            set_default(spec, "replicas", json!(1));
            let labels = spec
                .get("template")
                .and_then(|t| t.pointer("/metadata/labels"))
                .cloned();
            if let Some(l) = labels {
                if spec
                    .get("selector")
                    .is_none_or(|s| s.as_object().is_none_or(Map::is_empty))
                {
                    spec.insert("selector".into(), l);
                }
            }
        }
        "statefulsets" => {
            set_default(spec, "replicas", json!(1));
            set_default(spec, "podManagementPolicy", json!("OrderedReady"));
            let us = child(spec, "updateStrategy");
            set_default(us, "type", json!("RollingUpdate"));
            if us.get("type") == Some(&json!("RollingUpdate")) {
                set_default(child(us, "rollingUpdate"), "partition", json!(0));
            }
            set_default(spec, "revisionHistoryLimit", json!(10));
            let ret = child(spec, "persistentVolumeClaimRetentionPolicy");
            set_default(ret, "whenDeleted", json!("Retain"));
            set_default(ret, "whenScaled", json!("Retain"));
        }
        "daemonsets" => {
            let us = child(spec, "updateStrategy");
            set_default(us, "type", json!("RollingUpdate"));
            if us.get("type") == Some(&json!("RollingUpdate")) {
                let ru = child(us, "rollingUpdate");
                set_default(ru, "maxUnavailable", json!(1));
                set_default(ru, "maxSurge", json!(0));
            }
            set_default(spec, "revisionHistoryLimit", json!(10));
        }
        "jobs" => default_job_spec(spec),
        "cronjobs" => {
            set_default(spec, "concurrencyPolicy", json!("Allow"));
            set_default(spec, "suspend", json!(false));
            set_default(spec, "successfulJobsHistoryLimit", json!(3));
            set_default(spec, "failedJobsHistoryLimit", json!(1));
            if let Some(js) = spec
                .get_mut("jobTemplate")
                .and_then(|t| t.get_mut("spec"))
                .and_then(Value::as_object_mut)
            {
                default_job_spec(js);
            }
        }
        _ => {}
    }
}

fn default_job_spec(spec: &mut Map<String, Value>) {
    if !spec.contains_key("completions") && !spec.contains_key("parallelism") {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    }
    set_default(spec, "parallelism", json!(1));
    set_default(spec, "backoffLimit", json!(6));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "manualSelector", json!(false));
    set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
}

/// A Job's generated selector: its template and selector carry the job's
/// uid and name (`batch.kubernetes.io/controller-uid`, `.../job-name` and the
/// legacy unprefixed labels), unless `manualSelector` is set.
pub fn generate_job_selector(obj: &mut Value) {
    let uid = meta::uid(obj).to_string();
    let name = meta::name(obj).to_string();
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if spec.get("manualSelector") == Some(&json!(true)) || uid.is_empty() {
        return;
    }
    let labels = json!({
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    });
    if let Some(tpl_labels) = spec
        .get_mut("template")
        .and_then(Value::as_object_mut)
        .map(|t| child(t, "metadata"))
        .map(|m| child(m, "labels"))
    {
        if let Some(l) = labels.as_object() {
            for (k, v) in l {
                tpl_labels.insert(k.clone(), v.clone());
            }
        }
    }
    if !spec.contains_key("selector") {
        spec.insert(
            "selector".into(),
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
        );
    }
}

/// Secrets: `stringData` is write-only sugar for `data` (base64).
fn fold_string_data(o: &mut Map<String, Value>) {
    use base64::Engine;
    let Some(Value::Object(sd)) = o.remove("stringData") else {
        return;
    };
    let data = child(o, "data");
    for (k, v) in sd {
        if let Some(s) = v.as_str() {
            data.insert(
                k,
                json!(base64::engine::general_purpose::STANDARD.encode(s.as_bytes())),
            );
        }
    }
}

fn default_pod_spec(spec: &mut Map<String, Value>) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "enableServiceLinks", json!(true));
    if let Some(sa) = spec.get("serviceAccountName").cloned() {
        set_default(spec, "serviceAccount", sa);
    }
    for list in ["initContainers", "containers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
                set_default(c, "terminationMessagePolicy", json!("File"));
                set_default(c, "resources", json!({}));
                if !c.contains_key("imagePullPolicy") {
                    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
                    let policy = if image_tag(image).is_none_or(|t| t == "latest") {
                        "Always"
                    } else {
                        "IfNotPresent"
                    };
                    c.insert("imagePullPolicy".into(), json!(policy));
                }
                if let Some(Value::Array(ports)) = c.get_mut("ports") {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        set_default(p, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

/// The tag of an image reference, if it has one (a digest counts as pinned).
fn image_tag(image: &str) -> Option<&str> {
    if image.contains('@') {
        return Some("@digest");
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split_once(':').map(|(_, t)| t)
}

/// The pod QoS class from its containers' resources.
pub fn qos_class(spec: Option<&Value>) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    let containers = spec
        .into_iter()
        .flat_map(|s| {
            ["initContainers", "containers"]
                .into_iter()
                .filter_map(move |k| s.get(k).and_then(Value::as_array))
        })
        .flatten();
    for c in containers {
        let res = c.get("resources");
        let limits = res.and_then(|r| r.get("limits")).and_then(Value::as_object);
        let requests = res
            .and_then(|r| r.get("requests"))
            .and_then(Value::as_object);
        for r in ["cpu", "memory"] {
            let l = limits.and_then(|m| m.get(r));
            let q = requests.and_then(|m| m.get(r)).or(l);
            if l.is_some() || q.is_some() {
                any = true;
            }
            if l.is_none() || q != l {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn default_service_spec(spec: &mut Map<String, Value>) {
    let external_name = spec.get("type").and_then(Value::as_str) == Some("ExternalName");
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    if !external_name {
        set_default(spec, "ipFamilies", json!(["IPv4"]));
        set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            set_default(p, "protocol", json!("TCP"));
            // Protobuf clients send 0 or "" for an unset targetPort.
            let unset = match p.get("targetPort") {
                None | Some(Value::Null) => true,
                Some(Value::Number(n)) => n.as_i64() == Some(0),
                Some(Value::String(s)) => s.is_empty(),
                Some(_) => false,
            };
            if let (true, Some(port)) = (unset, p.get("port").cloned()) {
                p.insert("targetPort".into(), port);
            }
        }
    }
}

/// Validate required fields and shapes of a built-in kind. Returns causes
/// with upstream's field paths; empty when valid.
pub fn validate(ri: &ResourceInfo, obj: &Value) -> Vec<Cause> {
    let mut c = Vec::new();
    validate_meta(obj, &mut c);
    let spec = obj.get("spec");
    match (ri.group, ri.plural) {
        ("", "pods") => validate_pod_spec(spec, "spec", &mut c),
        ("", "podtemplates") => validate_template(obj.get("template"), "template", &mut c),
        ("", "services") => validate_service(spec, &mut c),
        ("", "configmaps") => {
            for f in ["data", "binaryData"] {
                validate_config_keys(obj.get(f), f, &mut c);
            }
        }
        ("", "secrets") => {
            validate_config_keys(obj.get("data"), "data", &mut c);
            validate_config_keys(obj.get("stringData"), "stringData", &mut c);
        }
        ("", "replicationcontrollers") => {
            non_negative(spec, "replicas", "spec.replicas", &mut c);
            validate_template(
                spec.and_then(|s| s.get("template")),
                "spec.template",
                &mut c,
            );
        }
        ("apps", "deployments" | "replicasets" | "daemonsets" | "statefulsets") => {
            validate_workload(ri.plural, spec, &mut c)
        }
        ("batch", "jobs") => validate_job_spec(spec, "spec", &mut c),
        ("batch", "cronjobs") => {
            let schedule = spec.and_then(|s| s.get("schedule")).and_then(Value::as_str);
            if schedule.is_none_or(str::is_empty) {
                c.push(Cause::required("spec.schedule"));
            }
            match spec.and_then(|s| s.get("jobTemplate")) {
                None => c.push(Cause::required("spec.jobTemplate")),
                Some(jt) => validate_job_spec(jt.get("spec"), "spec.jobTemplate.spec", &mut c),
            }
        }
        ("discovery.k8s.io", "endpointslices") => {
            match obj.get("addressType").and_then(Value::as_str) {
                None => c.push(Cause::required("addressType")),
                Some(t) if !["IPv4", "IPv6", "FQDN"].contains(&t) => c.push(Cause::not_supported(
                    "addressType",
                    &json!(t),
                    &["FQDN", "IPv4", "IPv6"],
                )),
                _ => {}
            }
        }
        ("node.k8s.io", "runtimeclasses") => required_string(obj, "handler", &mut c),
        ("scheduling.k8s.io", "priorityclasses")
            if !obj.get("value").is_some_and(Value::is_i64) =>
        {
            c.push(Cause::required("value"));
        }
        ("storage.k8s.io", "storageclasses") => required_string(obj, "provisioner", &mut c),
        ("certificates.k8s.io", "certificatesigningrequests") => {
            for f in ["request", "signerName"] {
                if spec.and_then(|s| s.get(f)).is_none() {
                    c.push(Cause::required(&format!("spec.{f}")));
                }
            }
        }
        ("", "persistentvolumeclaims") => {
            let modes = spec
                .and_then(|s| s.get("accessModes"))
                .and_then(Value::as_array);
            if modes.is_none_or(Vec::is_empty) {
                c.push(Cause::required_msg(
                    "spec.accessModes",
                    "at least 1 access mode is required",
                ));
            }
            if spec
                .and_then(|s| s.pointer("/resources/requests/storage"))
                .is_none()
            {
                c.push(Cause::required("spec.resources[storage]"));
            }
        }
        ("", "persistentvolumes") => {
            let modes = spec
                .and_then(|s| s.get("accessModes"))
                .and_then(Value::as_array);
            if modes.is_none_or(Vec::is_empty) {
                c.push(Cause::required_msg(
                    "spec.accessModes",
                    "must specify at least 1 access mode",
                ));
            }
            if spec.and_then(|s| s.pointer("/capacity/storage")).is_none() {
                c.push(Cause::required("spec.capacity"));
            }
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => validate_crd(obj, &mut c),
        ("autoscaling", "horizontalpodautoscalers") => validate_hpa(obj, &mut c),
        ("admissionregistration.k8s.io", _) => validate_admission(ri.plural, obj, &mut c),
        ("apiregistration.k8s.io", "apiservices") => validate_api_service(obj, &mut c),
        ("storage.k8s.io", "csinodes" | "volumeattachments" | "csistoragecapacities") => {
            validate_storage_attachment(ri.plural, obj, &mut c)
        }
        ("flowcontrol.apiserver.k8s.io", _) => validate_flowcontrol(ri.plural, obj, &mut c),
        _ => {}
    }
    c
}

fn required_string(obj: &Value, field: &str, c: &mut Vec<Cause>) {
    if obj
        .get(field)
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        c.push(Cause::required(field));
    }
}

/// What an update may not change, per kind (upstream's `ValidateUpdate`).
/// Returns causes with upstream's messages; empty when the change is allowed.
pub fn validate_update(ri: &ResourceInfo, new: &Value, old: &Value) -> Vec<Cause> {
    let mut c = Vec::new();
    let immutable = |c: &mut Vec<Cause>, path: &str| {
        let ptr = format!("/{}", path.replace('.', "/"));
        if new.pointer(&ptr) != old.pointer(&ptr) {
            c.push(Cause::invalid(
                path,
                new.pointer(&ptr).unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
    };
    match (ri.group, ri.plural) {
        ("", "configmaps") | ("", "secrets") => {
            if old.get("immutable") == Some(&json!(true)) {
                for f in ["data", "binaryData"] {
                    if new.get(f) != old.get(f) {
                        c.push(Cause::forbidden(
                            f,
                            "field is immutable when `immutable` is set",
                        ));
                    }
                }
                if new.get("immutable") != Some(&json!(true)) {
                    c.push(Cause::forbidden(
                        "immutable",
                        "field is immutable when `immutable` is set",
                    ));
                }
            }
            if ri.plural == "secrets" && new.get("type") != old.get("type") {
                c.push(Cause::invalid(
                    "type",
                    new.get("type").unwrap_or(&Value::Null),
                    "field is immutable",
                ));
            }
        }
        ("apps", "deployments" | "replicasets" | "daemonsets" | "statefulsets") => {
            immutable(&mut c, "spec.selector");
            if ri.plural == "statefulsets" {
                let strip = |v: &Value| {
                    let mut s = v.get("spec").cloned().unwrap_or(Value::Null);
                    if let Some(o) = s.as_object_mut() {
                        for f in [
                            "replicas",
                            "ordinals",
                            "template",
                            "updateStrategy",
                            "persistentVolumeClaimRetentionPolicy",
                            "minReadySeconds",
                        ] {
                            o.remove(f);
                        }
                    }
                    s
                };
                if strip(new) != strip(old) {
                    c.push(Cause::forbidden("spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"));
                }
            }
        }
        ("batch", "jobs") => {
            immutable(&mut c, "spec.selector");
            immutable(&mut c, "spec.completions");
            immutable(&mut c, "spec.completionMode");
        }
        ("", "pods") => validate_pod_update(new, old, &mut c),
        ("", "services")
            if new
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty()) =>
        {
            immutable(&mut c, "spec.clusterIP")
        }
        ("", "persistentvolumeclaims") => {
            let strip = |v: &Value| {
                let mut s = v.get("spec").cloned().unwrap_or(Value::Null);
                if let Some(o) = s.as_object_mut() {
                    o.remove("resources");
                    o.remove("volumeAttributesClassName");
                    if old
                        .pointer("/spec/volumeName")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        o.remove("volumeName");
                    }
                }
                s
            };
            if strip(new) != strip(old) {
                c.push(Cause::forbidden("spec", "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"));
            }
        }
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => {
            immutable(&mut c, "roleRef")
        }
        ("storage.k8s.io", "storageclasses") => {
            for f in [
                "parameters",
                "provisioner",
                "reclaimPolicy",
                "volumeBindingMode",
            ] {
                if new.get(f) != old.get(f) {
                    c.push(Cause::forbidden(f, "updates to parameters are forbidden."));
                    break;
                }
            }
        }
        ("scheduling.k8s.io", "priorityclasses") if new.get("value") != old.get("value") => {
            c.push(Cause::forbidden(
                "value",
                "may not be changed in an update.",
            ));
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            immutable(&mut c, "spec.scope");
            immutable(&mut c, "spec.group");
            immutable(&mut c, "spec.names.plural");
        }
        ("storage.k8s.io", "volumeattachments") => immutable(&mut c, "spec"),
        ("storage.k8s.io", "csistoragecapacities") => {
            immutable(&mut c, "nodeTopology");
            immutable(&mut c, "storageClassName");
        }
        _ => {}
    }
    c
}

/// Pod updates may change only images, activeDeadlineSeconds, added
/// tolerations and a few more (upstream's `ValidatePodUpdate`).
fn validate_pod_update(new: &Value, old: &Value, c: &mut Vec<Cause>) {
    let normalise = |v: &Value, other: &Value| -> Value {
        let mut s = v.get("spec").cloned().unwrap_or(Value::Null);
        if let Some(o) = s.as_object_mut() {
            for list in ["containers", "initContainers"] {
                if let Some(Value::Array(cs)) = o.get_mut(list) {
                    for m in cs.iter_mut().filter_map(Value::as_object_mut) {
                        m.remove("image");
                    }
                }
            }
            o.remove("activeDeadlineSeconds");
            o.remove("tolerations");
            o.remove("terminationGracePeriodSeconds");
            o.remove("schedulingGates");
            // nodeName is set once, through binding.
            if other.pointer("/spec/nodeName").is_none() || v.pointer("/spec/nodeName").is_none() {
                o.remove("nodeName");
            }
        }
        s
    };
    if normalise(new, old) != normalise(old, new) {
        c.push(Cause::forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
        ));
    }
    // Tolerations may only be added.
    let old_t = old
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let new_t = new
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if old_t.iter().any(|t| !new_t.contains(t)) {
        c.push(Cause::forbidden(
            "spec.tolerations",
            "existing toleration can not be modified except its tolerationSeconds",
        ));
    }
}

fn validate_meta(obj: &Value, c: &mut Vec<Cause>) {
    let Some(md) = meta::metadata(obj) else {
        return;
    };
    if let Some(labels) = md.get("labels") {
        match labels.as_object() {
            Some(l) => {
                for (k, v) in l {
                    for e in names::is_qualified_name(k) {
                        c.push(Cause::invalid("metadata.labels", &json!(k), &e));
                    }
                    match v.as_str() {
                        Some(s) => {
                            for e in names::is_valid_label_value(s) {
                                c.push(Cause::invalid("metadata.labels", &json!(s), &e));
                            }
                        }
                        None => c.push(Cause::invalid(
                            "metadata.labels",
                            v,
                            "label values must be strings",
                        )),
                    }
                }
            }
            None if labels.is_null() => {}
            None => c.push(Cause::invalid("metadata.labels", labels, "must be a map")),
        }
    }
    if let Some(Value::Object(ann)) = md.get("annotations") {
        let mut total = 0usize;
        for (k, v) in ann {
            for e in names::is_qualified_name(&k.to_lowercase()) {
                c.push(Cause::invalid("metadata.annotations", &json!(k), &e));
            }
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > 256 * 1024 {
            c.push(Cause {
                reason: "FieldValueTooLong".into(),
                message: "Too long: must have at most 262144 bytes".into(),
                field: "metadata.annotations".into(),
            });
        }
    }
}

fn non_negative(spec: Option<&Value>, field: &str, path: &str, c: &mut Vec<Cause>) {
    if let Some(v) = spec.and_then(|s| s.get(field)) {
        if v.as_i64().is_none_or(|n| n < 0) {
            c.push(Cause::invalid(
                path,
                v,
                "must be greater than or equal to 0",
            ));
        }
    }
}

fn validate_container_list(list: Option<&Value>, path: &str, required: bool, c: &mut Vec<Cause>) {
    let items = list.and_then(Value::as_array);
    match items {
        Some(items) if !items.is_empty() => {
            let mut seen = Vec::new();
            for (i, ct) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                match ct.get("name").and_then(Value::as_str) {
                    None | Some("") => c.push(Cause::required(&format!("{p}.name"))),
                    Some(n) => {
                        for e in names::is_dns1123_label(n) {
                            c.push(Cause::invalid(&format!("{p}.name"), &json!(n), &e));
                        }
                        if seen.contains(&n) {
                            c.push(Cause::duplicate(&format!("{p}.name"), &json!(n)));
                        }
                        seen.push(n);
                    }
                }
                if ct
                    .get("image")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    c.push(Cause::required(&format!("{p}.image")));
                }
                if let Some(ports) = ct.get("ports").and_then(Value::as_array) {
                    for (j, port) in ports.iter().enumerate() {
                        let pp = format!("{p}.ports[{j}].containerPort");
                        match port.get("containerPort").and_then(Value::as_i64) {
                            None => c.push(Cause::required(&pp)),
                            Some(n) if !(1..=65535).contains(&n) => c.push(Cause::invalid(
                                &pp,
                                &json!(n),
                                "must be between 1 and 65535, inclusive",
                            )),
                            _ => {}
                        }
                    }
                }
            }
        }
        _ => {
            if required {
                c.push(Cause::required(path));
            }
        }
    }
}

fn validate_pod_spec(spec: Option<&Value>, path: &str, c: &mut Vec<Cause>) {
    let Some(spec) = spec else {
        c.push(Cause::required(&format!("{path}.containers")));
        return;
    };
    validate_container_list(
        spec.get("containers"),
        &format!("{path}.containers"),
        true,
        c,
    );
    validate_container_list(
        spec.get("initContainers"),
        &format!("{path}.initContainers"),
        false,
        c,
    );
    if let Some(rp) = spec.get("restartPolicy") {
        if !["Always", "OnFailure", "Never"].contains(&rp.as_str().unwrap_or("")) {
            c.push(Cause::not_supported(
                &format!("{path}.restartPolicy"),
                rp,
                &["Always", "Never", "OnFailure"],
            ));
        }
    }
    if let Some(dp) = spec.get("dnsPolicy") {
        let ok = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
        if !ok.contains(&dp.as_str().unwrap_or("")) {
            c.push(Cause::not_supported(&format!("{path}.dnsPolicy"), dp, &ok));
        }
    }
}

fn validate_template(tpl: Option<&Value>, path: &str, c: &mut Vec<Cause>) {
    match tpl {
        None => c.push(Cause::required(path)),
        Some(t) => validate_pod_spec(t.get("spec"), &format!("{path}.spec"), c),
    }
}

fn validate_workload(plural: &str, spec: Option<&Value>, c: &mut Vec<Cause>) {
    if plural != "daemonsets" {
        non_negative(spec, "replicas", "spec.replicas", c);
    }
    let selector = spec.and_then(|s| s.get("selector"));
    let sel = match selector {
        None => {
            c.push(Cause::required("spec.selector"));
            None
        }
        Some(s) => match crate::selectors::label_selector_from_json(s) {
            Ok(sel) if sel.is_empty() => {
                c.push(Cause::invalid(
                    "spec.selector",
                    s,
                    "empty selector is invalid for deployment",
                ));
                None
            }
            Ok(sel) => Some(sel),
            Err(e) => {
                c.push(Cause::invalid("spec.selector", s, &e));
                None
            }
        },
    };
    let tpl = spec.and_then(|s| s.get("template"));
    validate_template(tpl, "spec.template", c);
    if let (Some(sel), Some(t)) = (sel, tpl) {
        let labels = t.pointer("/metadata/labels").and_then(Value::as_object);
        if !sel.matches(labels) {
            c.push(Cause::invalid(
                "spec.template.metadata.labels",
                &labels
                    .map(|l| Value::Object(l.clone()))
                    .unwrap_or(Value::Null),
                "`selector` does not match template `labels`",
            ));
        }
    }
    if plural == "statefulsets"
        && spec
            .and_then(|s| s.get("serviceName"))
            .is_some_and(|v| !v.is_string())
    {
        c.push(Cause::invalid(
            "spec.serviceName",
            &Value::Null,
            "must be a string",
        ));
    }
}

fn validate_job_spec(spec: Option<&Value>, path: &str, c: &mut Vec<Cause>) {
    for f in ["parallelism", "completions", "backoffLimit"] {
        non_negative(spec, f, &format!("{path}.{f}"), c);
    }
    let tpl = spec.and_then(|s| s.get("template"));
    validate_template(tpl, &format!("{path}.template"), c);
    if let Some(t) = tpl {
        let rp = t.pointer("/spec/restartPolicy");
        if !matches!(rp.and_then(Value::as_str), Some("OnFailure" | "Never")) {
            c.push(Cause::not_supported(
                &format!("{path}.template.spec.restartPolicy"),
                rp.unwrap_or(&json!("Always")),
                &["OnFailure", "Never"],
            ));
        }
    }
}

fn validate_service(spec: Option<&Value>, c: &mut Vec<Cause>) {
    let ty = spec
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let types = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
    if !types.contains(&ty) {
        c.push(Cause::not_supported("spec.type", &json!(ty), &types));
    }
    let headless = spec
        .and_then(|s| s.get("clusterIP"))
        .and_then(Value::as_str)
        == Some("None");
    let ports = spec.and_then(|s| s.get("ports")).and_then(Value::as_array);
    if ty == "ExternalName" {
        if spec
            .and_then(|s| s.get("externalName"))
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            c.push(Cause::required("spec.externalName"));
        }
    } else if ports.is_none_or(Vec::is_empty) && !headless {
        c.push(Cause::required("spec.ports"));
    }
    for (i, p) in ports.into_iter().flatten().enumerate() {
        let pp = format!("spec.ports[{i}].port");
        match p.get("port").and_then(Value::as_i64) {
            None => c.push(Cause::required(&pp)),
            Some(n) if !(1..=65535).contains(&n) => c.push(Cause::invalid(
                &pp,
                &json!(n),
                "must be between 1 and 65535, inclusive",
            )),
            _ => {}
        }
        if ports.is_some_and(|ps| ps.len() > 1)
            && p.get("name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            c.push(Cause::required(&format!("spec.ports[{i}].name")));
        }
        if let Some(proto) = p.get("protocol") {
            let ok = ["TCP", "UDP", "SCTP"];
            if !ok.contains(&proto.as_str().unwrap_or("")) {
                c.push(Cause::not_supported(
                    &format!("spec.ports[{i}].protocol"),
                    proto,
                    &ok,
                ));
            }
        }
    }
}

/// ConfigMap and Secret keys (`IsConfigMapKey`).
fn validate_config_keys(data: Option<&Value>, field: &str, c: &mut Vec<Cause>) {
    let Some(m) = data.and_then(Value::as_object) else {
        return;
    };
    for k in m.keys() {
        let ok = !k.is_empty()
            && k.len() <= 253
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            && k != "."
            && k != ".."
            && !k.starts_with("..");
        if !ok {
            c.push(Cause::invalid(
                &format!("{field}[{k}]"),
                &json!(k),
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            ));
        }
    }
}

fn validate_crd(obj: &Value, c: &mut Vec<Cause>) {
    let spec = obj.get("spec");
    let group = spec.and_then(|s| s.get("group")).and_then(Value::as_str);
    let plural = spec
        .and_then(|s| s.pointer("/names/plural"))
        .and_then(Value::as_str);
    if group.is_none_or(str::is_empty) {
        c.push(Cause::required("spec.group"));
    }
    if plural.is_none_or(str::is_empty) {
        c.push(Cause::required("spec.names.plural"));
    }
    if spec
        .and_then(|s| s.pointer("/names/kind"))
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        c.push(Cause::required("spec.names.kind"));
    }
    match spec.and_then(|s| s.get("scope")).and_then(Value::as_str) {
        Some("Namespaced" | "Cluster") => {}
        Some(other) => c.push(Cause::not_supported(
            "spec.scope",
            &json!(other),
            &["Cluster", "Namespaced"],
        )),
        None => c.push(Cause::required("spec.scope")),
    }
    let versions = spec
        .and_then(|s| s.get("versions"))
        .and_then(Value::as_array);
    match versions {
        None => c.push(Cause::required("spec.versions")),
        Some(vs) if vs.is_empty() => c.push(Cause::required("spec.versions")),
        Some(vs) => {
            let storage = vs
                .iter()
                .filter(|v| v.get("storage") == Some(&json!(true)))
                .count();
            if storage != 1 {
                c.push(Cause::invalid(
                    "spec.versions",
                    &Value::Array(vs.clone()),
                    "must have exactly one version marked as storage version",
                ));
            }
            let mut seen = Vec::new();
            for (i, v) in vs.iter().enumerate() {
                let name = v.get("name").and_then(Value::as_str).unwrap_or("");
                if name.is_empty() {
                    c.push(Cause::required(&format!("spec.versions[{i}].name")));
                } else if seen.contains(&name) {
                    c.push(Cause::duplicate(
                        &format!("spec.versions[{i}].name"),
                        &json!(name),
                    ));
                }
                seen.push(name);
                match v.pointer("/schema/openAPIV3Schema") {
                    Some(schema) => {
                        let field = format!("spec.versions[{i}].schema.openAPIV3Schema");
                        if let Err(errs) =
                            crate::crd_schema::StructuralSchema::from_json(schema, &field)
                        {
                            c.extend(errs);
                        }
                    }
                    None => c.push(Cause::required(&format!(
                        "spec.versions[{i}].schema.openAPIV3Schema"
                    ))),
                }
            }
        }
    }
    if let (Some(g), Some(p)) = (group, plural) {
        let want = format!("{p}.{g}");
        let name = meta::name(obj);
        if name != want {
            c.push(Cause::invalid(
                "metadata.name",
                &json!(name),
                "must be spec.names.plural+\".\"+spec.group",
            ));
        }
    }
}

// ---------------------------------------------------------------------------
// Kinds stored for API completeness: autoscaling, admission registration,
// API registration, CSI storage objects and API priority and fairness.
// kedge does not act on them (no HPA controller, no admission webhooks or
// policies, no aggregation, no CSI attach, no priority and fairness); the
// defaults and checks below are upstream's, so that objects read back as
// they would from kube-apiserver. CEL expressions, label selectors and
// quantities inside them are not checked.

/// The status a new object starts with (upstream resets status on create and
/// its zero value marshals as below).
fn initial_status(ri: &ResourceInfo, o: &Map<String, Value>) -> Option<Value> {
    match (ri.group, ri.plural) {
        ("autoscaling", _) => Some(json!({"desiredReplicas": 0, "currentMetrics": null})),
        ("storage.k8s.io", "volumeattachments") => Some(json!({"attached": false})),
        ("apiregistration.k8s.io", _) => {
            // Local APIServices (no spec.service) are available at once.
            let local = o
                .get("spec")
                .and_then(|s| s.get("service"))
                .is_none_or(Value::is_null);
            if !local {
                return Some(json!({}));
            }
            Some(
                json!({"conditions": [{"type": "Available", "status": "True",
                "lastTransitionTime": meta::now_rfc3339(), "reason": "Local",
                "message": "Local APIServices are always available"}]}),
            )
        }
        ("admissionregistration.k8s.io", _) | ("flowcontrol.apiserver.k8s.io", _) => {
            Some(json!({}))
        }
        _ => None,
    }
}

/// `behavior.*.tolerance` needs the alpha HPAConfigurableTolerance gate
/// (off in 1.33): dropped unless the old object already uses it.
fn drop_hpa_tolerance(o: &mut Map<String, Value>, old: Option<&Value>) {
    let uses = |v: &Value| {
        ["scaleUp", "scaleDown"].iter().any(|r| {
            v.pointer(&format!("/spec/behavior/{r}/tolerance"))
                .is_some()
        })
    };
    if old.is_some_and(uses) {
        return;
    }
    let Some(b) = o.get_mut("spec").and_then(|s| s.get_mut("behavior")) else {
        return;
    };
    for r in ["scaleUp", "scaleDown"] {
        if let Some(rules) = b.get_mut(r).and_then(Value::as_object_mut) {
            rules.remove("tolerance");
        }
    }
}

/// `SetDefaults_HorizontalPodAutoscaler` (autoscaling/v2).
fn default_hpa(o: &mut Map<String, Value>) {
    let spec = child(o, "spec");
    set_default(spec, "minReplicas", json!(1));
    if spec
        .get("metrics")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        spec.insert(
            "metrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80}}}]),
        );
    }
    if let Some(b) = spec.get_mut("behavior").and_then(Value::as_object_mut) {
        let up = json!({"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 15},
            {"type": "Percent", "value": 100, "periodSeconds": 15}]});
        // No default scale-down window: the controller's flag decides.
        let down = json!({"selectPolicy": "Max", "policies": [
            {"type": "Percent", "value": 100, "periodSeconds": 15}]});
        for (key, defaults) in [("scaleUp", up), ("scaleDown", down)] {
            let rules = child(b, key);
            if let Value::Object(d) = defaults {
                for (k, v) in d {
                    if rules.get(&k).is_none_or(Value::is_null) {
                        rules.insert(k, v);
                    }
                }
            }
        }
    }
}

/// `SetDefaults_Rule`: a rule (its fields are inline) matches all scopes.
fn default_rules(list: Option<&mut Value>) {
    for r in list
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
    {
        set_default(r, "scope", json!("*"));
    }
}

/// `SetDefaults_MatchResources`.
fn default_match_resources(m: &mut Map<String, Value>) {
    set_default(m, "matchPolicy", json!("Equivalent"));
    set_default(m, "namespaceSelector", json!({}));
    set_default(m, "objectSelector", json!({}));
    default_rules(m.get_mut("resourceRules"));
    default_rules(m.get_mut("excludeResourceRules"));
}

/// admissionregistration.k8s.io/v1 defaults.
fn default_admission(plural: &str, o: &mut Map<String, Value>) {
    match plural {
        "mutatingwebhookconfigurations" | "validatingwebhookconfigurations" => {
            let hooks = o.get_mut("webhooks").and_then(Value::as_array_mut);
            for h in hooks.into_iter().flatten().filter_map(Value::as_object_mut) {
                set_default(h, "failurePolicy", json!("Fail"));
                set_default(h, "matchPolicy", json!("Equivalent"));
                set_default(h, "namespaceSelector", json!({}));
                set_default(h, "objectSelector", json!({}));
                set_default(h, "timeoutSeconds", json!(10));
                if plural == "mutatingwebhookconfigurations" {
                    set_default(h, "reinvocationPolicy", json!("Never"));
                }
                default_rules(h.get_mut("rules"));
                if let Some(svc) = h
                    .get_mut("clientConfig")
                    .and_then(|c| c.get_mut("service"))
                    .and_then(Value::as_object_mut)
                {
                    set_default(svc, "port", json!(443));
                }
            }
        }
        "validatingadmissionpolicies" => {
            let spec = child(o, "spec");
            set_default(spec, "failurePolicy", json!("Fail"));
            if let Some(m) = spec
                .get_mut("matchConstraints")
                .and_then(Value::as_object_mut)
            {
                default_match_resources(m);
            }
        }
        "validatingadmissionpolicybindings" => {
            if let Some(m) = o
                .get_mut("spec")
                .and_then(|s| s.get_mut("matchResources"))
                .and_then(Value::as_object_mut)
            {
                default_match_resources(m);
            }
        }
        _ => {}
    }
}

/// flowcontrol.apiserver.k8s.io/v1 defaults.
fn default_flowcontrol(plural: &str, o: &mut Map<String, Value>) {
    let spec = child(o, "spec");
    if plural == "flowschemas" {
        if spec
            .get("matchingPrecedence")
            .is_none_or(|p| p.is_null() || p.as_i64() == Some(0))
        {
            spec.insert("matchingPrecedence".into(), json!(1000));
        }
        return;
    }
    if let Some(e) = spec.get_mut("exempt").and_then(Value::as_object_mut) {
        set_default(e, "nominalConcurrencyShares", json!(0));
        set_default(e, "lendablePercent", json!(0));
    }
    if let Some(l) = spec.get_mut("limited").and_then(Value::as_object_mut) {
        set_default(l, "nominalConcurrencyShares", json!(30));
        set_default(l, "lendablePercent", json!(0));
        if let Some(q) = l
            .get_mut("limitResponse")
            .and_then(|r| r.get_mut("queuing"))
            .and_then(Value::as_object_mut)
        {
            for (k, d) in [("handSize", 8), ("queues", 64), ("queueLengthLimit", 50)] {
                if q.get(k)
                    .is_none_or(|v| v.is_null() || v.as_i64() == Some(0))
                {
                    q.insert(k.into(), json!(d));
                }
            }
        }
    }
}

/// A string field, or "" when absent or not a string.
fn str_field<'a>(v: Option<&'a Value>, key: &str) -> &'a str {
    v.and_then(|v| v.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn int_field(v: Option<&Value>, key: &str) -> Option<i64> {
    v.and_then(|v| v.get(key)).and_then(Value::as_i64)
}

fn array_field<'a>(v: Option<&'a Value>, key: &str) -> &'a [Value] {
    v.and_then(|v| v.get(key))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// A required name-like string, validated by `rule` when present.
fn required_name(
    v: Option<&Value>,
    key: &str,
    path: &str,
    detail: &str,
    rule: fn(&str) -> Vec<String>,
    c: &mut Vec<Cause>,
) {
    let s = str_field(v, key);
    if s.is_empty() {
        c.push(Cause::required_msg(path, detail));
        return;
    }
    for e in rule(s) {
        c.push(Cause::invalid(path, &json!(s), &e));
    }
}

fn no_check(_: &str) -> Vec<String> {
    Vec::new()
}

/// `ValidateHorizontalPodAutoscaler` (spec and status), without the
/// quantity sign checks and the scale target's apiVersion check.
fn validate_hpa(obj: &Value, c: &mut Vec<Cause>) {
    let spec = obj.get("spec");
    let min = int_field(spec, "minReplicas");
    let max = int_field(spec, "maxReplicas").unwrap_or(0);
    if let Some(m) = min.filter(|m| *m < 1) {
        c.push(Cause::invalid(
            "spec.minReplicas",
            &json!(m),
            "must be greater than or equal to 1",
        ));
    }
    if max < 1 {
        c.push(Cause::invalid(
            "spec.maxReplicas",
            &json!(max),
            "must be greater than 0",
        ));
    }
    if min.is_some_and(|m| max < m) {
        c.push(Cause::invalid(
            "spec.maxReplicas",
            &json!(max),
            "must be greater than or equal to `minReplicas`",
        ));
    }
    let target = spec.and_then(|s| s.get("scaleTargetRef"));
    hpa_object_ref(target, "spec.scaleTargetRef", c);
    for (i, m) in array_field(spec, "metrics").iter().enumerate() {
        validate_hpa_metric(m, &format!("spec.metrics[{i}]"), c);
    }
    if let Some(b) = spec
        .and_then(|s| s.get("behavior"))
        .filter(|b| !b.is_null())
    {
        for r in ["scaleUp", "scaleDown"] {
            if let Some(rules) = b.get(r).filter(|v| !v.is_null()) {
                validate_hpa_rules(rules, &format!("spec.behavior.{r}"), c);
            }
        }
    }
    let status = obj.get("status");
    for f in ["currentReplicas", "desiredReplicas"] {
        if let Some(n) = int_field(status, f).filter(|n| *n < 0) {
            c.push(Cause::invalid(
                &format!("status.{f}"),
                &json!(n),
                "must be greater than or equal to 0",
            ));
        }
    }
}

fn hpa_object_ref(r: Option<&Value>, path: &str, c: &mut Vec<Cause>) {
    for f in ["kind", "name"] {
        let p = format!("{path}.{f}");
        required_name(r, f, &p, "", names::is_path_segment_name, c);
    }
}

fn validate_hpa_metric(m: &Value, path: &str, c: &mut Vec<Cause>) {
    const TYPES: [&str; 5] = [
        "ContainerResource",
        "External",
        "Object",
        "Pods",
        "Resource",
    ];
    let t = str_field(Some(m), "type");
    if t.is_empty() {
        c.push(Cause::required_msg(
            &format!("{path}.type"),
            "must specify a metric source type",
        ));
    }
    if !TYPES.contains(&t) {
        c.push(Cause::not_supported(
            &format!("{path}.type"),
            &json!(t),
            &TYPES,
        ));
        return;
    }
    let present: Vec<&str> = [
        "object",
        "external",
        "pods",
        "resource",
        "containerResource",
    ]
    .into_iter()
    .filter(|s| m.get(*s).is_some_and(|v| !v.is_null()))
    .collect();
    if let Some(first) = present.first() {
        let src = &m[*first];
        let p = format!("{path}.{first}");
        let target = src.get("target");
        let tp = format!("{p}.target");
        if *first != "resource" && *first != "containerResource" {
            let mp = format!("{p}.metric.name");
            let metric = src.get("metric");
            required_name(
                metric,
                "name",
                &mp,
                "must specify a metric name",
                names::is_path_segment_name,
                c,
            );
        }
        match *first {
            "object" => hpa_object_ref(
                src.get("describedObject"),
                &format!("{p}.describedObject"),
                c,
            ),
            "resource" | "containerResource" => {
                required_name(
                    Some(src),
                    "name",
                    &format!("{p}.name"),
                    "must specify a resource name",
                    no_check,
                    c,
                );
                if *first == "containerResource" {
                    required_name(
                        Some(src),
                        "container",
                        &format!("{p}.container"),
                        "must specify a container",
                        names::is_dns1123_label,
                        c,
                    );
                }
            }
            _ => {}
        }
        validate_hpa_target(target, &tp, c);
        let has = |f: &str| target.and_then(|t| t.get(f)).is_some_and(|v| !v.is_null());
        match *first {
            "object" if !has("value") && !has("averageValue") => c.push(Cause::required_msg(
                &format!("{tp}.averageValue"),
                "must set either a target value or averageValue",
            )),
            "external" if !has("value") && !has("averageValue") => c.push(Cause::required_msg(
                &format!("{tp}.averageValue"),
                "must set either a target value for metric or a per-pod target",
            )),
            "external" if has("value") && has("averageValue") => c.push(Cause::forbidden(
                &format!("{tp}.value"),
                "may not set both a target value for metric and a per-pod target",
            )),
            "pods" if !has("averageValue") => c.push(Cause::required_msg(
                &format!("{tp}.averageValue"),
                "must specify a positive target averageValue",
            )),
            "resource" | "containerResource" => {
                if !has("averageUtilization") && !has("averageValue") {
                    c.push(Cause::required_msg(
                        &format!("{tp}.averageUtilization"),
                        "must set either a target raw value or a target utilization",
                    ));
                }
                if has("averageUtilization") && has("averageValue") {
                    c.push(Cause::forbidden(
                        &format!("{tp}.averageValue"),
                        "may not set both a target raw value and a target utilization",
                    ));
                }
            }
            _ => {}
        }
    }
    let expected = match t {
        "ContainerResource" => "containerResource".to_string(),
        other => other.to_ascii_lowercase(),
    };
    if !present.contains(&expected.as_str()) {
        c.push(Cause::required_msg(
            &format!("{path}.{expected}"),
            "must populate information for the given metric source",
        ));
    }
    if present.len() != 1 {
        for s in present.iter().filter(|s| **s != expected) {
            c.push(Cause::forbidden(
                &format!("{path}.{s}"),
                "must populate the given metric source only",
            ));
        }
    }
}

fn validate_hpa_target(t: Option<&Value>, path: &str, c: &mut Vec<Cause>) {
    let ty = str_field(t, "type");
    if ty.is_empty() {
        c.push(Cause::required_msg(
            &format!("{path}.type"),
            "must specify a metric target type",
        ));
    }
    if !["Utilization", "Value", "AverageValue"].contains(&ty) {
        c.push(Cause::invalid(
            &format!("{path}.type"),
            &json!(ty),
            "must be either Utilization, Value, or AverageValue",
        ));
    }
    if let Some(u) = int_field(t, "averageUtilization").filter(|u| *u < 1) {
        c.push(Cause::invalid(
            &format!("{path}.averageUtilization"),
            &json!(u),
            "must be greater than 0",
        ));
    }
}

fn validate_hpa_rules(r: &Value, path: &str, c: &mut Vec<Cause>) {
    if let Some(w) = int_field(Some(r), "stabilizationWindowSeconds") {
        let p = format!("{path}.stabilizationWindowSeconds");
        if w < 0 {
            c.push(Cause::invalid(
                &p,
                &json!(w),
                "must be greater than or equal to zero",
            ));
        }
        if w > 3600 {
            c.push(Cause::invalid(
                &p,
                &json!(w),
                "must be less than or equal to 3600",
            ));
        }
    }
    if let Some(sp) = r.get("selectPolicy").filter(|v| !v.is_null()) {
        if !["Disabled", "Max", "Min"].contains(&sp.as_str().unwrap_or("")) {
            c.push(Cause::not_supported(
                &format!("{path}.selectPolicy"),
                sp,
                &["Disabled", "Max", "Min"],
            ));
        }
    }
    let policies = array_field(Some(r), "policies");
    if policies.is_empty() {
        c.push(Cause::required_msg(
            &format!("{path}.policies"),
            "must specify at least one Policy",
        ));
    }
    for (i, p) in policies.iter().enumerate() {
        let pp = format!("{path}.policies[{i}]");
        let t = str_field(Some(p), "type");
        if t != "Pods" && t != "Percent" {
            c.push(Cause::not_supported(
                &format!("{pp}.type"),
                &json!(t),
                &["Percent", "Pods"],
            ));
        }
        let value = int_field(Some(p), "value").unwrap_or(0);
        if value <= 0 {
            c.push(Cause::invalid(
                &format!("{pp}.value"),
                &json!(value),
                "must be greater than zero",
            ));
        }
        let period = int_field(Some(p), "periodSeconds").unwrap_or(0);
        let pp = format!("{pp}.periodSeconds");
        if period <= 0 {
            c.push(Cause::invalid(
                &pp,
                &json!(period),
                "must be greater than zero",
            ));
        }
        if period > 1800 {
            c.push(Cause::invalid(
                &pp,
                &json!(period),
                "must be less than or equal to 1800",
            ));
        }
    }
}

/// `IsFullyQualifiedName`: webhook names are domains of three or more parts.
fn fully_qualified_name(name: &str, path: &str, c: &mut Vec<Cause>) {
    if name.is_empty() {
        c.push(Cause::required(path));
        return;
    }
    let errs = names::is_dns1123_subdomain(name);
    if !errs.is_empty() {
        c.push(Cause::invalid(path, &json!(name), &errs.join(",")));
    } else if name.split('.').count() < 3 {
        c.push(Cause::invalid(
            path,
            &json!(name),
            "should be a domain with at least three segments separated by dots",
        ));
    }
}

/// One `RuleWithOperations` (or `NamedRuleWithOperations`): the required
/// lists and the supported operations and scopes.
fn validate_admission_rule(r: &Value, path: &str, c: &mut Vec<Cause>) {
    const OPS: [&str; 5] = ["*", "CONNECT", "CREATE", "DELETE", "UPDATE"];
    let ops = array_field(Some(r), "operations");
    if ops.is_empty() {
        c.push(Cause::required(&format!("{path}.operations")));
    }
    for (i, op) in ops.iter().enumerate() {
        if !OPS.contains(&op.as_str().unwrap_or("")) {
            c.push(Cause::not_supported(
                &format!("{path}.operations[{i}]"),
                op,
                &OPS,
            ));
        }
    }
    for f in ["apiGroups", "apiVersions", "resources"] {
        if array_field(Some(r), f).is_empty() {
            c.push(Cause::required(&format!("{path}.{f}")));
        }
    }
    if let Some(s) = r.get("scope").filter(|v| !v.is_null()) {
        if !["*", "Cluster", "Namespaced"].contains(&s.as_str().unwrap_or("")) {
            c.push(Cause::not_supported(
                &format!("{path}.scope"),
                s,
                &["*", "Cluster", "Namespaced"],
            ));
        }
    }
}

fn one_of(v: Option<&Value>, key: &str, path: &str, allowed: &[&str], c: &mut Vec<Cause>) {
    if let Some(x) = v.and_then(|v| v.get(key)).filter(|x| !x.is_null()) {
        if !allowed.contains(&x.as_str().unwrap_or("")) {
            c.push(Cause::not_supported(&format!("{path}.{key}"), x, allowed));
        }
    }
}

/// `MatchResources` after defaulting: policy, selectors, rules.
fn validate_match_resources(m: &Value, path: &str, c: &mut Vec<Cause>) {
    for f in ["matchPolicy", "namespaceSelector", "objectSelector"] {
        if m.get(f).is_none_or(Value::is_null) {
            c.push(Cause::required(&format!("{path}.{f}")));
        }
    }
    one_of(Some(m), "matchPolicy", path, &["Equivalent", "Exact"], c);
    for list in ["resourceRules", "excludeResourceRules"] {
        for (i, r) in array_field(Some(m), list).iter().enumerate() {
            validate_admission_rule(r, &format!("{path}.{list}[{i}]"), c);
        }
    }
}

/// admissionregistration.k8s.io/v1 validation, without CEL compilation.
fn validate_admission(plural: &str, obj: &Value, c: &mut Vec<Cause>) {
    let spec = obj.get("spec");
    match plural {
        "mutatingwebhookconfigurations" | "validatingwebhookconfigurations" => {
            let mut seen: Vec<&str> = Vec::new();
            for (i, h) in array_field(Some(obj), "webhooks").iter().enumerate() {
                let p = format!("webhooks[{i}]");
                let name = str_field(Some(h), "name");
                fully_qualified_name(name, &format!("{p}.name"), c);
                for (j, r) in array_field(Some(h), "rules").iter().enumerate() {
                    validate_admission_rule(r, &format!("{p}.rules[{j}]"), c);
                }
                let hv = Some(h);
                one_of(hv, "failurePolicy", &p, &["Fail", "Ignore"], c);
                one_of(hv, "matchPolicy", &p, &["Equivalent", "Exact"], c);
                if plural == "mutatingwebhookconfigurations" {
                    one_of(hv, "reinvocationPolicy", &p, &["IfNeeded", "Never"], c);
                }
                match h.get("sideEffects").filter(|v| !v.is_null()) {
                    None => c.push(Cause::required_msg(
                        &format!("{p}.sideEffects"),
                        "must specify one of None, NoneOnDryRun",
                    )),
                    Some(_) => one_of(hv, "sideEffects", &p, &["None", "NoneOnDryRun"], c),
                }
                if let Some(t) = int_field(hv, "timeoutSeconds").filter(|t| !(1..=30).contains(t)) {
                    c.push(Cause::invalid(
                        &format!("{p}.timeoutSeconds"),
                        &json!(t),
                        "the timeout value must be between 1 and 30 seconds",
                    ));
                }
                let cc = h.get("clientConfig");
                let has = |f: &str| cc.and_then(|x| x.get(f)).is_some_and(|v| !v.is_null());
                if has("url") == has("service") {
                    c.push(Cause::required_msg(
                        &format!("{p}.clientConfig"),
                        "exactly one of url or service is required",
                    ));
                } else if has("service") {
                    let svc = cc.and_then(|x| x.get("service"));
                    let sp = format!("{p}.clientConfig.service");
                    required_name(
                        svc,
                        "name",
                        &format!("{sp}.name"),
                        "service name is required",
                        no_check,
                        c,
                    );
                    required_name(
                        svc,
                        "namespace",
                        &format!("{sp}.namespace"),
                        "service namespace is required",
                        no_check,
                        c,
                    );
                }
                let versions = array_field(hv, "admissionReviewVersions");
                let vp = format!("{p}.admissionReviewVersions");
                if versions.is_empty() {
                    c.push(Cause::required_msg(&vp, "must specify one of v1, v1beta1"));
                } else if !versions.iter().any(|v| v == "v1" || v == "v1beta1") {
                    c.push(Cause::invalid(
                        &vp,
                        &Value::Array(versions.to_vec()),
                        "must include at least one of v1, v1beta1",
                    ));
                }
                if !name.is_empty() {
                    if seen.contains(&name) {
                        c.push(Cause::duplicate(&format!("{p}.name"), &json!(name)));
                    }
                    seen.push(name);
                }
            }
        }
        "validatingadmissionpolicies" => {
            match spec
                .and_then(|s| s.get("failurePolicy"))
                .filter(|v| !v.is_null())
            {
                None => c.push(Cause::required("spec.failurePolicy")),
                Some(_) => one_of(spec, "failurePolicy", "spec", &["Fail", "Ignore"], c),
            }
            match spec
                .and_then(|s| s.get("matchConstraints"))
                .filter(|v| !v.is_null())
            {
                None => c.push(Cause::required("spec.matchConstraints")),
                Some(m) => {
                    validate_match_resources(m, "spec.matchConstraints", c);
                    if array_field(Some(m), "resourceRules").is_empty() {
                        c.push(Cause::required("spec.matchConstraints.resourceRules"));
                    }
                }
            }
            if let Some(pk) = spec
                .and_then(|s| s.get("paramKind"))
                .filter(|v| !v.is_null())
            {
                for f in ["apiVersion", "kind"] {
                    if str_field(Some(pk), f).is_empty() {
                        c.push(Cause::required(&format!("spec.paramKind.{f}")));
                    }
                }
            }
            let validations = array_field(spec, "validations");
            let audit = array_field(spec, "auditAnnotations");
            if validations.is_empty() && audit.is_empty() {
                for f in ["validations", "auditAnnotations"] {
                    c.push(Cause::required_msg(
                        &format!("spec.{f}"),
                        "validations or auditAnnotations must contain at least one item",
                    ));
                }
            }
            for (i, v) in validations.iter().enumerate() {
                if str_field(Some(v), "expression").trim().is_empty() {
                    c.push(Cause::required_msg(
                        &format!("spec.validations[{i}].expression"),
                        "expression is not specified",
                    ));
                }
            }
            for (i, a) in audit.iter().enumerate() {
                if str_field(Some(a), "valueExpression").trim().is_empty() {
                    c.push(Cause::required_msg(
                        &format!("spec.auditAnnotations[{i}].valueExpression"),
                        "valueExpression is not specified",
                    ));
                }
            }
        }
        "validatingadmissionpolicybindings" => {
            required_name(
                spec,
                "policyName",
                "spec.policyName",
                "",
                names::is_dns1123_subdomain,
                c,
            );
            if let Some(m) = spec
                .and_then(|s| s.get("matchResources"))
                .filter(|v| !v.is_null())
            {
                validate_match_resources(m, "spec.matchResources", c);
            }
            if let Some(pr) = spec
                .and_then(|s| s.get("paramRef"))
                .filter(|v| !v.is_null())
            {
                let has = |f: &str| pr.get(f).is_some_and(|v| !v.is_null() && v != "");
                if has("name") && has("selector") {
                    c.push(Cause::forbidden(
                        "spec.paramRef.name",
                        "name and selector are mutually exclusive",
                    ));
                    c.push(Cause::forbidden(
                        "spec.paramRef.selector",
                        "name and selector are mutually exclusive",
                    ));
                }
                if !has("name") && !has("selector") {
                    c.push(Cause::required_msg(
                        "spec.paramRef",
                        "one of name or selector must be specified",
                    ));
                }
                match pr.get("parameterNotFoundAction").and_then(Value::as_str) {
                    None | Some("") => {
                        c.push(Cause::required("spec.paramRef.parameterNotFoundAction"))
                    }
                    Some(_) => one_of(
                        Some(pr),
                        "parameterNotFoundAction",
                        "spec.paramRef",
                        &["Deny", "Allow"],
                        c,
                    ),
                }
            }
            let actions = array_field(spec, "validationActions");
            if actions.is_empty() {
                c.push(Cause::required_msg(
                    "spec.validationActions",
                    "at least one validation action is required",
                ));
            }
            for (i, a) in actions.iter().enumerate() {
                if !["Audit", "Deny", "Warn"].contains(&a.as_str().unwrap_or("")) {
                    c.push(Cause::not_supported(
                        &format!("spec.validationActions[{i}]"),
                        a,
                        &["Audit", "Deny", "Warn"],
                    ));
                }
            }
        }
        _ => {}
    }
}

/// `ValidateAPIService`: the name is `<version>.<group>`.
fn validate_api_service(obj: &Value, c: &mut Vec<Cause>) {
    let spec = obj.get("spec");
    let group = str_field(spec, "group");
    let version = str_field(spec, "version");
    let required = format!("{version}.{group}");
    let name = meta::name(obj);
    if names::is_path_segment_name(name).is_empty() && name != required {
        c.push(Cause::invalid(
            "metadata.name",
            &json!(name),
            &format!("must be `spec.version+\".\"+spec.group`: {required:?}"),
        ));
    }
    if group.is_empty() && version != "v1" {
        c.push(Cause::required_msg(
            "spec.group",
            "only v1 may have an empty group and it better be legacy kube",
        ));
    }
    if !group.is_empty() {
        for e in names::is_dns1123_subdomain(group) {
            c.push(Cause::invalid("spec.group", &json!(group), &e));
        }
    }
    for e in dns1035_label(version) {
        c.push(Cause::invalid("spec.version", &json!(version), &e));
    }
    let gpm = int_field(spec, "groupPriorityMinimum").unwrap_or(0);
    if !(1..=20000).contains(&gpm) {
        c.push(Cause::invalid(
            "spec.groupPriorityMinimum",
            &json!(gpm),
            "must be positive and less than 20000",
        ));
    }
    let vp = int_field(spec, "versionPriority").unwrap_or(0);
    if !(1..=1000).contains(&vp) {
        c.push(Cause::invalid(
            "spec.versionPriority",
            &json!(vp),
            "must be positive and less than 1000",
        ));
    }
    let skip_tls = spec.and_then(|s| s.get("insecureSkipTLSVerify")) == Some(&json!(true));
    let ca = str_field(spec, "caBundle");
    match spec.and_then(|s| s.get("service")).filter(|v| !v.is_null()) {
        None => {
            if !ca.is_empty() {
                c.push(Cause::invalid(
                    "spec.caBundle",
                    &json!(format!("{} bytes", ca.len() / 4 * 3)),
                    "local APIServices may not have a caBundle",
                ));
            }
            if skip_tls {
                c.push(Cause::invalid(
                    "spec.insecureSkipTLSVerify",
                    &json!(true),
                    "local APIServices may not have insecureSkipTLSVerify",
                ));
            }
        }
        Some(svc) => {
            for f in ["namespace", "name"] {
                if str_field(Some(svc), f).is_empty() {
                    c.push(Cause::required(&format!("spec.service.{f}")));
                }
            }
            if let Some(port) = int_field(Some(svc), "port").filter(|p| !(1..=65535).contains(p)) {
                c.push(Cause::invalid(
                    "spec.service.port",
                    &json!(port),
                    "must be between 1 and 65535, inclusive",
                ));
            }
            if skip_tls && !ca.is_empty() {
                c.push(Cause::invalid(
                    "spec.insecureSkipTLSVerify",
                    &json!(true),
                    "may not be true if caBundle is present",
                ));
            }
        }
    }
}

/// CSINode, VolumeAttachment and CSIStorageCapacity required fields.
fn validate_storage_attachment(plural: &str, obj: &Value, c: &mut Vec<Cause>) {
    let spec = obj.get("spec");
    match plural {
        "csinodes" => {
            let mut seen: Vec<&str> = Vec::new();
            for (i, d) in array_field(spec, "drivers").iter().enumerate() {
                let p = format!("spec.drivers[{i}]");
                let name = str_field(Some(d), "name");
                required_name(Some(d), "name", &format!("{p}.name"), "", no_check, c);
                required_name(Some(d), "nodeID", &format!("{p}.nodeID"), "", no_check, c);
                if !name.is_empty() {
                    if seen.contains(&name) {
                        c.push(Cause::duplicate(&format!("{p}.name"), &json!(name)));
                    }
                    seen.push(name);
                }
            }
        }
        "volumeattachments" => {
            required_name(spec, "attacher", "spec.attacher", "", no_check, c);
            required_name(
                spec,
                "nodeName",
                "spec.nodeName",
                "",
                names::is_dns1123_subdomain,
                c,
            );
            let source = spec.and_then(|s| s.get("source"));
            let has = |f: &str| source.and_then(|s| s.get(f)).is_some_and(|v| !v.is_null());
            if has("persistentVolumeName") == has("inlineVolumeSpec") {
                c.push(Cause::required_msg(
                    "spec.source",
                    "must specify exactly one of inlineVolumeSpec and persistentVolumeName",
                ));
            }
        }
        _ => {
            required_name(
                Some(obj),
                "storageClassName",
                "storageClassName",
                "",
                names::is_dns1123_subdomain,
                c,
            );
        }
    }
}

/// FlowSchema and PriorityLevelConfiguration checks, without the fixed
/// specs of the mandatory objects.
fn validate_flowcontrol(plural: &str, obj: &Value, c: &mut Vec<Cause>) {
    let spec = obj.get("spec");
    let name = meta::name(obj);
    if plural == "flowschemas" {
        let prec = int_field(spec, "matchingPrecedence").unwrap_or(0);
        let p = "spec.matchingPrecedence";
        if prec <= 0 {
            c.push(Cause::invalid(p, &json!(prec), "must be a positive value"));
        }
        if prec > 10000 {
            c.push(Cause::invalid(
                p,
                &json!(prec),
                "must not be greater than 10000",
            ));
        }
        if prec == 1 && name != "exempt" {
            c.push(Cause::invalid(
                p,
                &json!(prec),
                "only the schema named 'exempt' may have matchingPrecedence 1",
            ));
        }
        if let Some(d) = spec
            .and_then(|s| s.get("distinguisherMethod"))
            .filter(|v| !v.is_null())
        {
            one_of(
                Some(d),
                "type",
                "spec.distinguisherMethod",
                &["ByNamespace", "ByUser"],
                c,
            );
        }
        let plc = spec.and_then(|s| s.get("priorityLevelConfiguration"));
        required_name(
            plc,
            "name",
            "spec.priorityLevelConfiguration.name",
            "must reference a priority level",
            names::is_dns1123_subdomain,
            c,
        );
        for (i, r) in array_field(spec, "rules").iter().enumerate() {
            let p = format!("spec.rules[{i}]");
            if array_field(Some(r), "subjects").is_empty() {
                c.push(Cause::required_msg(
                    &format!("{p}.subjects"),
                    "subjects must contain at least one value",
                ));
            }
            if array_field(Some(r), "resourceRules").is_empty()
                && array_field(Some(r), "nonResourceRules").is_empty()
            {
                c.push(Cause::required_msg(
                    &p,
                    "at least one of resourceRules and nonResourceRules has to be non-empty",
                ));
            }
        }
        return;
    }
    let t = str_field(spec, "type");
    if (name == "exempt") != (t == "Exempt") {
        c.push(Cause::invalid(
            "spec.type",
            &json!(t),
            "type must be 'Exempt' if and only if name is 'exempt'",
        ));
    }
    let limited = spec.and_then(|s| s.get("limited")).filter(|v| !v.is_null());
    match t {
        "Exempt" if limited.is_some() => c.push(Cause::forbidden(
            "spec.limited",
            "must be nil if the type is not Limited",
        )),
        "Exempt" => {}
        "Limited" => match limited {
            None => c.push(Cause::required_msg(
                "spec.limited",
                "must not be empty when type is Limited",
            )),
            Some(l) => {
                let lr = l.get("limitResponse");
                let queuing = lr.and_then(|r| r.get("queuing")).filter(|v| !v.is_null());
                match str_field(lr, "type") {
                    "Reject" if queuing.is_some() => c.push(Cause::forbidden(
                        "spec.limited.limitResponse.queuing",
                        "must be nil if limited.limitResponse.type is not Limited",
                    )),
                    "Queue" if queuing.is_none() => c.push(Cause::required_msg(
                        "spec.limited.limitResponse.queuing",
                        "must not be empty if limited.limitResponse.type is Limited",
                    )),
                    "Reject" | "Queue" => {}
                    other => c.push(Cause::not_supported(
                        "spec.limited.limitResponse.type",
                        &json!(other),
                        &["Queue", "Reject"],
                    )),
                }
            }
        },
        other => c.push(Cause::not_supported(
            "spec.type",
            &json!(other),
            &["Exempt", "Limited"],
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::lookup;

    fn ri(g: &str, p: &str) -> &'static ResourceInfo {
        lookup(g, "v1", p).expect("served")
    }

    #[test]
    fn pod_without_containers_is_invalid() {
        let c = validate(
            ri("", "pods"),
            &json!({"metadata": {"name": "a"}, "spec": {}}),
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].field, "spec.containers");
        assert_eq!(c[0].reason, "FieldValueRequired");
    }

    #[test]
    fn pod_defaults_and_qos() {
        let mut p = json!({"metadata": {"name": "a"}, "spec": {"containers": [
            {"name": "c", "image": "busybox:1.36", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}
        ]}});
        prepare_for_create(ri("", "pods"), &mut p);
        assert_eq!(p["spec"]["restartPolicy"], "Always");
        assert_eq!(
            p["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(p["status"]["qosClass"], "Guaranteed");
        assert_eq!(p["status"]["phase"], "Pending");
        assert!(validate(ri("", "pods"), &p).is_empty());
    }

    #[test]
    fn latest_tag_pulls_always() {
        let mut p = json!({"spec": {"containers": [{"name": "c", "image": "reg:5000/busybox"}]}});
        prepare_for_create(ri("", "pods"), &mut p);
        assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "Always");
    }

    #[test]
    fn update_keeps_status_and_bumps_generation() {
        let d = ri("apps", "deployments");
        let mut old = json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}});
        prepare_for_create(d, &mut old);
        old["metadata"]["generation"] = json!(3);
        old["status"] = json!({"replicas": 1});
        let mut same = json!({"metadata": {"name": "d", "labels": {"a": "b"}}, "spec": {"replicas": 1}, "status": {"replicas": 9}});
        prepare_for_update(d, &mut same, &old);
        assert_eq!(same["metadata"]["generation"], 3);
        assert_eq!(same["status"]["replicas"], 1);
        let mut changed = json!({"metadata": {"name": "d"}, "spec": {"replicas": 2}});
        prepare_for_update(d, &mut changed, &old);
        assert_eq!(changed["metadata"]["generation"], 4);
    }

    #[test]
    fn status_update_keeps_spec() {
        let old =
            json!({"metadata": {"name": "d", "resourceVersion": "5"}, "spec": {"replicas": 1}});
        let mut new = json!({"metadata": {"name": "d", "resourceVersion": "4"}, "spec": {"replicas": 7}, "status": {"replicas": 1}});
        prepare_for_status_update(&mut new, &old);
        assert_eq!(new["spec"]["replicas"], 1);
        assert_eq!(new["status"]["replicas"], 1);
        assert_eq!(new["metadata"]["resourceVersion"], "4");
    }

    #[test]
    fn selector_must_match_template() {
        let d = json!({"metadata": {"name": "d"}, "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "y"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let c = validate(ri("apps", "deployments"), &d);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].field, "spec.template.metadata.labels");
    }

    #[test]
    fn service_rules() {
        let c = validate(
            ri("", "services"),
            &json!({"metadata": {"name": "s"}, "spec": {}}),
        );
        assert_eq!(c[0].field, "spec.ports");
        assert!(validate_name(ri("", "services"), "1abc", "metadata.name").len() == 1);
        assert!(validate_name(ri("", "services"), "abc", "metadata.name").is_empty());
    }

    #[test]
    fn secret_string_data_folds_into_data() {
        let mut sec =
            json!({"metadata": {"name": "s"}, "stringData": {"u": "admin"}, "data": {"p": "cQ=="}});
        prepare_for_create(ri("", "secrets"), &mut sec);
        assert_eq!(sec["type"], "Opaque");
        assert_eq!(sec["data"]["u"], "YWRtaW4=");
        assert_eq!(sec["data"]["p"], "cQ==");
        assert!(sec.get("stringData").is_none());
    }

    #[test]
    fn workload_defaults() {
        let mut d = json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
        prepare_for_create(ri("apps", "deployments"), &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
        assert!(d["spec"]["template"]["spec"].get("priority").is_none());
        assert!(validate(ri("apps", "deployments"), &d).is_empty());

        let mut j = json!({"metadata": {"name": "j", "uid": "u1"}, "spec": {
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}});
        prepare_for_create(ri("batch", "jobs"), &mut j);
        assert_eq!(j["spec"]["completions"], 1);
        assert_eq!(j["spec"]["backoffLimit"], 6);
        assert_eq!(
            j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
            "u1"
        );
        assert_eq!(j["spec"]["template"]["metadata"]["labels"]["job-name"], "j");
        assert!(
            validate(ri("batch", "jobs"), &j).is_empty(),
            "{:?}",
            validate(ri("batch", "jobs"), &j)
        );
    }

    #[test]
    fn immutable_updates() {
        let old = json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "1"}});
        let mut new = old.clone();
        new["data"]["a"] = json!("2");
        let c = validate_update(ri("", "configmaps"), &new, &old);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].field, "data");
        assert_eq!(c[0].reason, "FieldValueForbidden");
        let d_old = json!({"spec": {"selector": {"matchLabels": {"a": "b"}}}});
        let d_new = json!({"spec": {"selector": {"matchLabels": {"a": "c"}}}});
        assert_eq!(
            validate_update(ri("apps", "deployments"), &d_new, &d_old)[0].field,
            "spec.selector"
        );
        let p_old = json!({"spec": {"containers": [{"name": "c", "image": "a"}], "restartPolicy": "Always"}});
        let mut p_new = p_old.clone();
        p_new["spec"]["containers"][0]["image"] = json!("b");
        assert!(validate_update(ri("", "pods"), &p_new, &p_old).is_empty());
        p_new["spec"]["restartPolicy"] = json!("Never");
        assert_eq!(
            validate_update(ri("", "pods"), &p_new, &p_old)[0].field,
            "spec"
        );
    }

    #[test]
    fn other_kinds_defaults() {
        let mut pv = json!({"metadata": {"name": "p"}, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}});
        prepare_for_create(ri("", "persistentvolumes"), &mut pv);
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        let mut sc = json!({"metadata": {"name": "s"}, "provisioner": "x"});
        prepare_for_create(ri("storage.k8s.io", "storageclasses"), &mut sc);
        assert_eq!(sc["volumeBindingMode"], "Immediate");
        let mut np =
            json!({"metadata": {"name": "n"}, "spec": {"podSelector": {}, "egress": [{}]}});
        prepare_for_create(ri("networking.k8s.io", "networkpolicies"), &mut np);
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    }

    #[test]
    fn job_restart_policy() {
        let j = json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let c = validate(ri("batch", "jobs"), &j);
        assert_eq!(c[0].field, "spec.template.spec.restartPolicy");
    }

    fn fields(c: &[Cause]) -> Vec<&str> {
        c.iter().map(|c| c.field.as_str()).collect()
    }

    #[test]
    fn hpa_defaults_status_and_validation() {
        let hpa = lookup("autoscaling", "v2", "horizontalpodautoscalers").expect("served");
        let mut h = json!({"metadata": {"name": "h"}, "status": {"desiredReplicas": 9},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3,
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60,
                    "tolerance": "0.1"}}}});
        prepare_for_create(hpa, &mut h);
        assert_eq!(h["spec"]["minReplicas"], 1);
        assert_eq!(
            h["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        assert_eq!(
            h["status"],
            json!({"desiredReplicas": 0, "currentMetrics": null})
        );
        let b = &h["spec"]["behavior"];
        assert_eq!(b["scaleUp"]["policies"].as_array().map(Vec::len), Some(2));
        assert_eq!(b["scaleDown"]["stabilizationWindowSeconds"], 60);
        assert_eq!(b["scaleDown"]["selectPolicy"], "Max");
        assert!(b["scaleDown"].get("tolerance").is_none());
        assert!(validate(hpa, &h).is_empty(), "{:?}", validate(hpa, &h));
        assert!(!hpa.has_generation);

        let bad = json!({"metadata": {"name": "h"}, "spec": {"minReplicas": 5, "maxReplicas": 2,
            "scaleTargetRef": {"name": "web"},
            "metrics": [{"type": "Pods", "resource": {"name": "cpu"}},
                        {"type": "Bogus"}],
            "behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": 0, "periodSeconds": 2000}]}}}});
        let c = validate(hpa, &bad);
        let f = fields(&c);
        for want in [
            "spec.maxReplicas",
            "spec.scaleTargetRef.kind",
            "spec.metrics[0].resource.target.type",
            "spec.metrics[0].pods",
            "spec.metrics[1].type",
            "spec.behavior.scaleUp.policies[0].value",
            "spec.behavior.scaleUp.policies[0].periodSeconds",
        ] {
            assert!(f.contains(&want), "{want} not in {f:?}");
        }
    }

    #[test]
    fn admission_registration_defaults_and_validation() {
        let mwc = ri(
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
        );
        let mut w = json!({"metadata": {"name": "w"}, "webhooks": [{"name": "a.example.com",
            "clientConfig": {"service": {"namespace": "ns", "name": "svc"}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["pods"]}],
            "sideEffects": "None", "admissionReviewVersions": ["v1"]}]});
        prepare_for_create(mwc, &mut w);
        let h = &w["webhooks"][0];
        assert_eq!(h["failurePolicy"], "Fail");
        assert_eq!(h["reinvocationPolicy"], "Never");
        assert_eq!(h["timeoutSeconds"], 10);
        assert_eq!(h["clientConfig"]["service"]["port"], 443);
        assert_eq!(h["rules"][0]["scope"], "*");
        assert_eq!(w["metadata"]["generation"], 1);
        assert!(validate(mwc, &w).is_empty(), "{:?}", validate(mwc, &w));
        let bad = json!({"metadata": {"name": "w"}, "webhooks": [
            {"name": "short", "clientConfig": {}},
            {"name": "short", "clientConfig": {"url": "https://x"}, "sideEffects": "Some",
             "admissionReviewVersions": ["v2"]}]});
        let f = fields(&validate(mwc, &bad)).join(" ");
        for want in [
            "webhooks[0].name",
            "webhooks[0].sideEffects",
            "webhooks[0].clientConfig",
            "webhooks[0].admissionReviewVersions",
            "webhooks[1].sideEffects",
            "webhooks[1].admissionReviewVersions",
        ] {
            assert!(f.contains(want), "{want} not in {f}");
        }

        let vap = ri(
            "admissionregistration.k8s.io",
            "validatingadmissionpolicies",
        );
        let mut p = json!({"metadata": {"name": "p"}, "spec": {
            "matchConstraints": {"resourceRules": [{"operations": ["*"], "apiGroups": ["apps"],
                "apiVersions": ["v1"], "resources": ["deployments"]}]},
            "validations": [{"expression": "object.spec.replicas <= 5"}]}});
        prepare_for_create(vap, &mut p);
        assert_eq!(p["spec"]["failurePolicy"], "Fail");
        assert_eq!(p["spec"]["matchConstraints"]["matchPolicy"], "Equivalent");
        assert_eq!(p["status"], json!({}));
        assert!(validate(vap, &p).is_empty(), "{:?}", validate(vap, &p));
        let c = validate(vap, &json!({"metadata": {"name": "p"}, "spec": {}}));
        assert_eq!(
            fields(&c),
            [
                "spec.failurePolicy",
                "spec.matchConstraints",
                "spec.validations",
                "spec.auditAnnotations"
            ]
        );

        let vapb = ri(
            "admissionregistration.k8s.io",
            "validatingadmissionpolicybindings",
        );
        let c = validate(vapb, &json!({"metadata": {"name": "b"}, "spec": {}}));
        assert_eq!(fields(&c), ["spec.policyName", "spec.validationActions"]);
    }

    #[test]
    fn api_services_local_and_remote() {
        let api = ri("apiregistration.k8s.io", "apiservices");
        let mut local = json!({"metadata": {"name": "v1.example.com"},
            "spec": {"group": "example.com", "version": "v1", "groupPriorityMinimum": 100,
                     "versionPriority": 10}});
        prepare_for_create(api, &mut local);
        assert_eq!(local["status"]["conditions"][0]["reason"], "Local");
        assert!(
            validate(api, &local).is_empty(),
            "{:?}",
            validate(api, &local)
        );
        let mut remote = local.clone();
        remote["spec"]["service"] = json!({"namespace": "ns", "name": "svc"});
        prepare_for_create(api, &mut remote);
        assert_eq!(remote["status"], json!({}));
        assert_eq!(remote["spec"]["service"]["port"], 443);
        let mut wrong = local.clone();
        wrong["metadata"]["name"] = json!("v2.example.com");
        let c = validate(api, &wrong);
        assert_eq!(fields(&c), ["metadata.name"]);
        assert!(
            c[0].message.contains("\"v1.example.com\""),
            "{}",
            c[0].message
        );
    }

    #[test]
    fn storage_attachment_kinds() {
        let va = ri("storage.k8s.io", "volumeattachments");
        let mut a = json!({"metadata": {"name": "a"}, "spec": {"attacher": "csi.example.com",
            "nodeName": "n1", "source": {"persistentVolumeName": "pv1"}},
            "status": {"attached": true}});
        prepare_for_create(va, &mut a);
        assert_eq!(a["status"], json!({"attached": false}));
        assert!(validate(va, &a).is_empty());
        let mut moved = a.clone();
        moved["spec"]["nodeName"] = json!("n2");
        assert_eq!(fields(&validate_update(va, &moved, &a)), ["spec"]);
        let c = validate(
            va,
            &json!({"metadata": {"name": "a"}, "spec": {"source": {}}}),
        );
        assert_eq!(
            fields(&c),
            ["spec.attacher", "spec.nodeName", "spec.source"]
        );

        let cap = lookup("storage.k8s.io", "v1", "csistoragecapacities").expect("served");
        let c = validate(cap, &json!({"metadata": {"name": "c"}}));
        assert_eq!(fields(&c), ["storageClassName"]);
        let node = ri("storage.k8s.io", "csinodes");
        let c = validate(
            node,
            &json!({"metadata": {"name": "n"}, "spec": {"drivers": [{}]}}),
        );
        assert_eq!(
            fields(&c),
            ["spec.drivers[0].name", "spec.drivers[0].nodeID"]
        );
    }

    #[test]
    fn flowcontrol_defaults_and_validation() {
        let fs = ri("flowcontrol.apiserver.k8s.io", "flowschemas");
        let mut f = json!({"metadata": {"name": "f"}, "spec": {
            "priorityLevelConfiguration": {"name": "workload-low"}}});
        prepare_for_create(fs, &mut f);
        assert_eq!(f["spec"]["matchingPrecedence"], 1000);
        assert_eq!(f["metadata"]["generation"], 1);
        assert!(validate(fs, &f).is_empty());
        let c = validate(
            fs,
            &json!({"metadata": {"name": "f"}, "spec": {"matchingPrecedence": 1,
            "rules": [{}]}}),
        );
        assert_eq!(
            fields(&c),
            [
                "spec.matchingPrecedence",
                "spec.priorityLevelConfiguration.name",
                "spec.rules[0].subjects",
                "spec.rules[0]"
            ]
        );

        let plc = ri(
            "flowcontrol.apiserver.k8s.io",
            "prioritylevelconfigurations",
        );
        let mut p = json!({"metadata": {"name": "p"}, "spec": {"type": "Limited", "limited": {
            "limitResponse": {"type": "Queue", "queuing": {}}}}});
        prepare_for_create(plc, &mut p);
        let l = &p["spec"]["limited"];
        assert_eq!(l["nominalConcurrencyShares"], 30);
        assert_eq!(l["lendablePercent"], 0);
        assert_eq!(
            l["limitResponse"]["queuing"],
            json!({"handSize": 8, "queues": 64, "queueLengthLimit": 50})
        );
        assert!(validate(plc, &p).is_empty());
        let c = validate(
            plc,
            &json!({"metadata": {"name": "exempt"}, "spec": {"type": "Limited"}}),
        );
        assert_eq!(fields(&c), ["spec.type", "spec.limited"]);
    }
}
