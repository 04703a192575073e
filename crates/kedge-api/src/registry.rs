//! The table of resources kedge serves. Adding a built-in kind is one row
//! here plus, where it needs one, a strategy in `strategy.rs`.

/// How object names of a kind are validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// DNS-1123 subdomain (most kinds).
    Subdomain,
    /// DNS-1123 label (namespaces).
    Label,
    /// DNS-1035 label (services: must start with a letter).
    Label1035,
    /// Any path segment (RBAC kinds).
    PathSegment,
}

/// One served resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group, "" for the legacy core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The resource name in URLs.
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Served subresources: "status", "scale", "binding", "finalize".
    pub subresources: &'static [&'static str],
    /// Whether `metadata.generation` tracks spec changes.
    pub has_generation: bool,
    pub name_rule: NameRule,
}

pub const STANDARD_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl ResourceInfo {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.contains(&sub)
    }

    pub fn has_status(&self) -> bool {
        self.has_subresource("status")
    }

    /// The storage key prefix of this resource: `<group or core>/<plural>/`.
    pub fn key_prefix(&self) -> String {
        // Both Event APIs are views of the same stored core Events.
        if self.is_events_view() {
            return "/core/events/".to_string();
        }
        let g = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        format!("/{g}/{}/", self.plural)
    }

    /// `events.k8s.io/v1` Events, stored as core Events.
    pub fn is_events_view(&self) -> bool {
        self.group == "events.k8s.io" && self.plural == "events"
    }

    /// `autoscaling/v1` HorizontalPodAutoscalers: a view of the stored
    /// `autoscaling/v2` objects (same key prefix), converted on the way in
    /// and out by [`crate::hpa`].
    pub fn is_hpa_v1_view(&self) -> bool {
        self.group == "autoscaling"
            && self.version == "v1"
            && self.plural == "horizontalpodautoscalers"
    }

    /// Key prefix for listing in one namespace (or all, if `ns` is None).
    pub fn list_prefix(&self, ns: Option<&str>) -> String {
        match (self.namespaced, ns) {
            (true, Some(ns)) => format!("{}{ns}/", self.key_prefix()),
            _ => self.key_prefix(),
        }
    }

    /// The storage key of one object.
    pub fn key(&self, ns: Option<&str>, name: &str) -> String {
        match (self.namespaced, ns) {
            (true, Some(ns)) => format!("{}{ns}/{name}", self.key_prefix()),
            _ => format!("{}{name}", self.key_prefix()),
        }
    }
}

const fn r(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
) -> ResourceInfo {
    ResourceInfo {
        group,
        version: "v1",
        kind,
        plural,
        singular,
        namespaced,
        short_names: &[],
        categories: &[],
        subresources: &[],
        has_generation: false,
        name_rule: NameRule::Subdomain,
    }
}

const fn short(mut ri: ResourceInfo, s: &'static [&'static str]) -> ResourceInfo {
    ri.short_names = s;
    ri
}
const fn cats(mut ri: ResourceInfo, c: &'static [&'static str]) -> ResourceInfo {
    ri.categories = c;
    ri
}
const fn subs(mut ri: ResourceInfo, s: &'static [&'static str]) -> ResourceInfo {
    ri.subresources = s;
    ri
}
const fn gen(mut ri: ResourceInfo) -> ResourceInfo {
    ri.has_generation = true;
    ri
}
const fn names(mut ri: ResourceInfo, rule: NameRule) -> ResourceInfo {
    ri.name_rule = rule;
    ri
}
const fn ver(mut ri: ResourceInfo, version: &'static str) -> ResourceInfo {
    ri.version = version;
    ri
}

const ALL: &[&str] = &["all"];
const API_EXTENSIONS: &[&str] = &["api-extensions"];
const STATUS: &[&str] = &["status"];
const STATUS_SCALE: &[&str] = &["status", "scale"];

/// Every built-in resource, in discovery order within each group.
pub static RESOURCES: &[ResourceInfo] = &[
    // core/v1
    names(
        short(
            subs(
                r("", "Namespace", "namespaces", "namespace", false),
                &["status", "finalize"],
            ),
            &["ns"],
        ),
        NameRule::Label,
    ),
    cats(
        short(
            subs(
                r("", "Pod", "pods", "pod", true),
                &[
                    "attach",
                    "binding",
                    "eviction",
                    "exec",
                    "log",
                    "portforward",
                    "status",
                ],
            ),
            &["po"],
        ),
        ALL,
    ),
    r("", "Binding", "bindings", "binding", true),
    short(subs(r("", "Node", "nodes", "node", false), STATUS), &["no"]),
    names(
        cats(
            short(
                subs(r("", "Service", "services", "service", true), STATUS),
                &["svc"],
            ),
            ALL,
        ),
        NameRule::Label1035,
    ),
    short(r("", "Endpoints", "endpoints", "endpoints", true), &["ep"]),
    short(r("", "ConfigMap", "configmaps", "configmap", true), &["cm"]),
    r("", "Secret", "secrets", "secret", true),
    short(
        subs(
            r(
                "",
                "ServiceAccount",
                "serviceaccounts",
                "serviceaccount",
                true,
            ),
            &["token"],
        ),
        &["sa"],
    ),
    short(r("", "Event", "events", "event", true), &["ev"]),
    r("", "PodTemplate", "podtemplates", "podtemplate", true),
    short(
        r("", "LimitRange", "limitranges", "limitrange", true),
        &["limits"],
    ),
    short(
        subs(
            r("", "ResourceQuota", "resourcequotas", "resourcequota", true),
            STATUS,
        ),
        &["quota"],
    ),
    short(
        subs(
            r(
                "",
                "PersistentVolume",
                "persistentvolumes",
                "persistentvolume",
                false,
            ),
            STATUS,
        ),
        &["pv"],
    ),
    short(
        subs(
            r(
                "",
                "PersistentVolumeClaim",
                "persistentvolumeclaims",
                "persistentvolumeclaim",
                true,
            ),
            STATUS,
        ),
        &["pvc"],
    ),
    gen(cats(
        short(
            subs(
                r(
                    "",
                    "ReplicationController",
                    "replicationcontrollers",
                    "replicationcontroller",
                    true,
                ),
                STATUS_SCALE,
            ),
            &["rc"],
        ),
        ALL,
    )),
    // apps/v1
    gen(cats(
        short(
            subs(
                r("apps", "Deployment", "deployments", "deployment", true),
                STATUS_SCALE,
            ),
            &["deploy"],
        ),
        ALL,
    )),
    gen(cats(
        short(
            subs(
                r("apps", "ReplicaSet", "replicasets", "replicaset", true),
                STATUS_SCALE,
            ),
            &["rs"],
        ),
        ALL,
    )),
    gen(cats(
        short(
            subs(
                r("apps", "DaemonSet", "daemonsets", "daemonset", true),
                STATUS,
            ),
            &["ds"],
        ),
        ALL,
    )),
    gen(cats(
        short(
            subs(
                r("apps", "StatefulSet", "statefulsets", "statefulset", true),
                STATUS_SCALE,
            ),
            &["sts"],
        ),
        ALL,
    )),
    r(
        "apps",
        "ControllerRevision",
        "controllerrevisions",
        "controllerrevision",
        true,
    ),
    // batch/v1
    gen(cats(
        subs(r("batch", "Job", "jobs", "job", true), STATUS),
        ALL,
    )),
    gen(cats(
        short(
            subs(r("batch", "CronJob", "cronjobs", "cronjob", true), STATUS),
            &["cj"],
        ),
        ALL,
    )),
    // autoscaling/v2 and autoscaling/v1: one storage (the v2 form, key
    // `/autoscaling/horizontalpodautoscalers/`); v1 is a converted view
    // (`is_hpa_v1_view`, `crate::hpa`). v2 comes first so that code finding
    // "the" resource of a storage key (garbage collection) gets the storage
    // version.
    cats(
        short(
            subs(
                ver(
                    r(
                        "autoscaling",
                        "HorizontalPodAutoscaler",
                        "horizontalpodautoscalers",
                        "horizontalpodautoscaler",
                        true,
                    ),
                    "v2",
                ),
                STATUS,
            ),
            &["hpa"],
        ),
        ALL,
    ),
    cats(
        short(
            subs(
                r(
                    "autoscaling",
                    "HorizontalPodAutoscaler",
                    "horizontalpodautoscalers",
                    "horizontalpodautoscaler",
                    true,
                ),
                STATUS,
            ),
            &["hpa"],
        ),
        ALL,
    ),
    // coordination.k8s.io/v1
    r("coordination.k8s.io", "Lease", "leases", "lease", true),
    // discovery.k8s.io/v1
    r(
        "discovery.k8s.io",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        true,
    ),
    // events.k8s.io/v1
    short(
        r("events.k8s.io", "Event", "events", "event", true),
        &["ev"],
    ),
    // rbac.authorization.k8s.io/v1
    names(
        r(
            "rbac.authorization.k8s.io",
            "ClusterRoleBinding",
            "clusterrolebindings",
            "clusterrolebinding",
            false,
        ),
        NameRule::PathSegment,
    ),
    names(
        r(
            "rbac.authorization.k8s.io",
            "ClusterRole",
            "clusterroles",
            "clusterrole",
            false,
        ),
        NameRule::PathSegment,
    ),
    names(
        r(
            "rbac.authorization.k8s.io",
            "RoleBinding",
            "rolebindings",
            "rolebinding",
            true,
        ),
        NameRule::PathSegment,
    ),
    names(
        r("rbac.authorization.k8s.io", "Role", "roles", "role", true),
        NameRule::PathSegment,
    ),
    // node.k8s.io/v1
    r(
        "node.k8s.io",
        "RuntimeClass",
        "runtimeclasses",
        "runtimeclass",
        false,
    ),
    // scheduling.k8s.io/v1
    short(
        r(
            "scheduling.k8s.io",
            "PriorityClass",
            "priorityclasses",
            "priorityclass",
            false,
        ),
        &["pc"],
    ),
    // policy/v1
    gen(short(
        subs(
            r(
                "policy",
                "PodDisruptionBudget",
                "poddisruptionbudgets",
                "poddisruptionbudget",
                true,
            ),
            STATUS,
        ),
        &["pdb"],
    )),
    // networking.k8s.io/v1
    gen(short(
        subs(
            r("networking.k8s.io", "Ingress", "ingresses", "ingress", true),
            STATUS,
        ),
        &["ing"],
    )),
    r(
        "networking.k8s.io",
        "IngressClass",
        "ingressclasses",
        "ingressclass",
        false,
    ),
    gen(short(
        r(
            "networking.k8s.io",
            "NetworkPolicy",
            "networkpolicies",
            "networkpolicy",
            true,
        ),
        &["netpol"],
    )),
    // storage.k8s.io/v1
    short(
        r(
            "storage.k8s.io",
            "StorageClass",
            "storageclasses",
            "storageclass",
            false,
        ),
        &["sc"],
    ),
    r(
        "storage.k8s.io",
        "CSIDriver",
        "csidrivers",
        "csidriver",
        false,
    ),
    // Stored only: kedge runs no attach/detach controller or CSI external
    // components that would act on these.
    r("storage.k8s.io", "CSINode", "csinodes", "csinode", false),
    r(
        "storage.k8s.io",
        "CSIStorageCapacity",
        "csistoragecapacities",
        "csistoragecapacity",
        true,
    ),
    subs(
        r(
            "storage.k8s.io",
            "VolumeAttachment",
            "volumeattachments",
            "volumeattachment",
            false,
        ),
        STATUS,
    ),
    // admissionregistration.k8s.io/v1: stored and validated only. Admission
    // webhooks are not called and admission policies are not evaluated yet:
    // creating these changes no request's outcome.
    gen(cats(
        r(
            "admissionregistration.k8s.io",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            "mutatingwebhookconfiguration",
            false,
        ),
        API_EXTENSIONS,
    )),
    gen(cats(
        r(
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            "validatingwebhookconfiguration",
            false,
        ),
        API_EXTENSIONS,
    )),
    gen(cats(
        subs(
            r(
                "admissionregistration.k8s.io",
                "ValidatingAdmissionPolicy",
                "validatingadmissionpolicies",
                "validatingadmissionpolicy",
                false,
            ),
            STATUS,
        ),
        API_EXTENSIONS,
    )),
    gen(cats(
        r(
            "admissionregistration.k8s.io",
            "ValidatingAdmissionPolicyBinding",
            "validatingadmissionpolicybindings",
            "validatingadmissionpolicybinding",
            false,
        ),
        API_EXTENSIONS,
    )),
    // apiregistration.k8s.io/v1: stored only. There is no API aggregation:
    // an APIService does not make kedge proxy its group-version.
    names(
        cats(
            subs(
                r(
                    "apiregistration.k8s.io",
                    "APIService",
                    "apiservices",
                    "apiservice",
                    false,
                ),
                STATUS,
            ),
            API_EXTENSIONS,
        ),
        NameRule::PathSegment,
    ),
    // flowcontrol.apiserver.k8s.io/v1: stored only. kedge has no API
    // priority and fairness: these configure nothing, and the mandatory and
    // suggested objects upstream maintains are not created.
    gen(subs(
        r(
            "flowcontrol.apiserver.k8s.io",
            "FlowSchema",
            "flowschemas",
            "flowschema",
            false,
        ),
        STATUS,
    )),
    gen(subs(
        r(
            "flowcontrol.apiserver.k8s.io",
            "PriorityLevelConfiguration",
            "prioritylevelconfigurations",
            "prioritylevelconfiguration",
            false,
        ),
        STATUS,
    )),
    // certificates.k8s.io/v1
    short(
        subs(
            r(
                "certificates.k8s.io",
                "CertificateSigningRequest",
                "certificatesigningrequests",
                "certificatesigningrequest",
                false,
            ),
            &["status", "approval"],
        ),
        &["csr"],
    ),
    // authentication.k8s.io and authorization.k8s.io: create-only reviews
    r(
        "authentication.k8s.io",
        "TokenReview",
        "tokenreviews",
        "tokenreview",
        false,
    ),
    r(
        "authentication.k8s.io",
        "SelfSubjectReview",
        "selfsubjectreviews",
        "selfsubjectreview",
        false,
    ),
    ver(
        r(
            "authentication.k8s.io",
            "SelfSubjectReview",
            "selfsubjectreviews",
            "selfsubjectreview",
            false,
        ),
        "v1beta1",
    ),
    r(
        "authorization.k8s.io",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        "localsubjectaccessreview",
        true,
    ),
    r(
        "authorization.k8s.io",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        "selfsubjectaccessreview",
        false,
    ),
    r(
        "authorization.k8s.io",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        "selfsubjectrulesreview",
        false,
    ),
    r(
        "authorization.k8s.io",
        "SubjectAccessReview",
        "subjectaccessreviews",
        "subjectaccessreview",
        false,
    ),
    // apiextensions.k8s.io/v1
    gen(cats(
        short(
            subs(
                r(
                    "apiextensions.k8s.io",
                    "CustomResourceDefinition",
                    "customresourcedefinitions",
                    "customresourcedefinition",
                    false,
                ),
                STATUS,
            ),
            &["crd", "crds"],
        ),
        &["api-extensions"],
    )),
];

/// The API groups served, in discovery order (core first, as "").
pub fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&r.group) {
            out.push(r.group);
        }
    }
    out
}

/// Resources of one group/version.
pub fn resources_in<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static ResourceInfo> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

/// Look a resource up by its URL coordinates.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Whether any resource is served in this group/version.
pub fn serves(group: &str, version: &str) -> bool {
    resources_in(group, version).next().is_some()
}

/// Verbs a resource supports in discovery.
pub fn verbs(ri: &ResourceInfo) -> &'static [&'static str] {
    if is_create_only(ri) {
        &["create"]
    } else {
        STANDARD_VERBS
    }
}

/// Resources that only answer POSTs and store nothing (bindings write the pod).
pub fn is_create_only(ri: &ResourceInfo) -> bool {
    ri.plural == "bindings" || is_review(ri)
}

/// Access and token reviews: computed answers, never stored.
pub fn is_review(ri: &ResourceInfo) -> bool {
    matches!(ri.group, "authentication.k8s.io" | "authorization.k8s.io")
}

/// The kind, group and version a subresource answers with, and its verbs.
pub fn subresource_info(
    ri: &ResourceInfo,
    sub: &str,
) -> (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
) {
    match sub {
        "scale" => ("autoscaling", "v1", "Scale", &["get", "patch", "update"]),
        "binding" => ("", "v1", "Binding", &["create"]),
        "eviction" => ("policy", "v1", "Eviction", &["create"]),
        "attach" => ("", "v1", "PodAttachOptions", &["create", "get"]),
        "exec" => ("", "v1", "PodExecOptions", &["create", "get"]),
        "log" => ("", "v1", "Pod", &["get"]),
        "portforward" => ("", "v1", "PodPortForwardOptions", &["create", "get"]),
        "token" => ("authentication.k8s.io", "v1", "TokenRequest", &["create"]),
        "finalize" => ("", "v1", "Namespace", &["update"]),
        "approval" => (ri.group, ri.version, ri.kind, &["get", "patch", "update"]),
        _ => (ri.group, ri.version, ri.kind, &["get", "patch", "update"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_prefixes() {
        let pods = lookup("", "v1", "pods").expect("pods served");
        assert_eq!(pods.key(Some("default"), "a"), "/core/pods/default/a");
        assert_eq!(pods.list_prefix(Some("default")), "/core/pods/default/");
        assert_eq!(pods.list_prefix(None), "/core/pods/");
        let ns = lookup("", "v1", "namespaces").expect("namespaces served");
        assert_eq!(ns.key(None, "x"), "/core/namespaces/x");
        let dep = lookup("apps", "v1", "deployments").expect("deployments served");
        assert_eq!(dep.api_version(), "apps/v1");
        assert!(dep.has_subresource("scale"));
    }

    #[test]
    fn no_duplicate_resources() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert!(
                    !(a.group == b.group && a.version == b.version && a.plural == b.plural),
                    "{} served twice",
                    a.plural
                );
            }
        }
        assert!(groups().contains(&"apiextensions.k8s.io"));
    }

    #[test]
    fn hpa_versions_share_one_storage() {
        let v2 = lookup("autoscaling", "v2", "horizontalpodautoscalers").expect("v2 served");
        let v1 = lookup("autoscaling", "v1", "horizontalpodautoscalers").expect("v1 served");
        assert_eq!(v1.key(Some("d"), "h"), v2.key(Some("d"), "h"));
        assert_eq!(v2.key_prefix(), "/autoscaling/horizontalpodautoscalers/");
        assert!(v1.is_hpa_v1_view() && !v2.is_hpa_v1_view());
        assert!(!v1.is_events_view());
        // The storage version is the first row of its storage prefix.
        let first = RESOURCES
            .iter()
            .find(|r| r.group == "autoscaling" && r.plural == "horizontalpodautoscalers")
            .expect("hpa served");
        assert_eq!(first.version, "v2");
        let apis = lookup("apiregistration.k8s.io", "v1", "apiservices").expect("apiservices");
        assert_eq!(apis.name_rule, NameRule::PathSegment);
        assert!(!lookup("storage.k8s.io", "v1", "csistoragecapacities")
            .expect("csistoragecapacities")
            .has_status());
    }
}
