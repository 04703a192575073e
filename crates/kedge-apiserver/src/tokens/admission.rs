//! Upstream's `ServiceAccount` admission plugin on pod create
//! (`plugin/pkg/admission/serviceaccount`): default the service account to
//! `default`, require it to exist, mount the projected
//! `kube-api-access-<suffix>` token volume unless automounting is off, copy
//! the account's image pull secrets, and keep mirror pods away from
//! service accounts and secrets.

use std::time::Duration;

use kedge_api::{meta, registry, ApiError};
use kedge_store::Store;
use serde_json::{json, Map, Value};

use super::WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS;
use crate::handler;
use crate::server::ApiServer;

pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// Prefix of the token volume's name.
pub const VOLUME_PREFIX: &str = "kube-api-access-";
/// Where containers find `token`, `ca.crt` and `namespace`.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";
const ENFORCE_MOUNTABLE_SECRETS: &str = "kubernetes.io/enforce-mountable-secrets";
/// Lookups of the `default` account: it may not exist yet right after its
/// namespace was created (upstream tries ten times).
const DEFAULT_ATTEMPTS: usize = 10;

/// The projected volume upstream's `TokenVolumeSource` describes.
pub fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    })
}

fn forbidden(pod: &Value, why: &str) -> ApiError {
    // Upstream names the pod by its generateName when it has one, as the
    // name is generated only after admission.
    let generate = meta::meta_str(pod, "generateName").unwrap_or("");
    let name = if generate.is_empty() {
        meta::name(pod)
    } else {
        generate
    };
    ApiError::forbidden("", "pods", name, why)
}

/// Admit a pod being created in `ns`, changing it as upstream does.
pub(crate) async fn admit_pod(srv: &ApiServer, ns: &str, pod: &mut Value) -> Result<(), ApiError> {
    let mirror = meta::metadata(pod)
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(MIRROR_POD_ANNOTATION))
        .is_some();
    if mirror {
        return validate_mirror_pod(pod);
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    // `serviceAccount` is the deprecated spelling; `serviceAccountName` wins.
    let str_of = |spec: &Map<String, Value>, k: &str| {
        spec.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let sa_name = str_of(spec, "serviceAccountName")
        .or_else(|| str_of(spec, "serviceAccount"))
        .unwrap_or_else(|| DEFAULT_SERVICE_ACCOUNT.to_string());
    spec.insert("serviceAccountName".into(), json!(sa_name));
    spec.insert("serviceAccount".into(), json!(sa_name));

    let sa = match service_account(srv, ns, &sa_name).await {
        Ok(sa) => sa,
        Err(e) => {
            return Err(forbidden(
                pod,
                &format!("error looking up service account {ns}/{sa_name}: {e}"),
            ))
        }
    };
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    if should_automount(&sa, spec) {
        let mut rng = rand::rng();
        let suffix = meta::random_suffix(|| rand::Rng::random::<u32>(&mut rng));
        mount_token(spec, &format!("{VOLUME_PREFIX}{suffix}"));
    }
    let pod_pull = spec
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if !pod_pull {
        let sa_pull: Vec<Value> = sa
            .get("imagePullSecrets")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|r| json!({"name": r.get("name").cloned().unwrap_or(json!(""))}))
                    .collect()
            })
            .unwrap_or_default();
        if !sa_pull.is_empty() {
            spec.insert("imagePullSecrets".into(), Value::Array(sa_pull));
        }
    }
    let enforce = meta::metadata(&sa)
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(ENFORCE_MOUNTABLE_SECRETS))
        .and_then(Value::as_str)
        .is_some_and(|v| matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True"));
    if enforce {
        if let Err(why) = limit_secret_references(&sa, spec) {
            return Err(forbidden(pod, &why));
        }
    }
    Ok(())
}

/// The service account, retrying `default` for a while (it is created by
/// the namespace controller just after its namespace).
async fn service_account(srv: &ApiServer, ns: &str, name: &str) -> Result<Value, String> {
    let ri = registry::lookup("", "v1", "serviceaccounts")
        .ok_or_else(|| "serviceaccounts not registered".to_string())?;
    let attempts = if name == DEFAULT_SERVICE_ACCOUNT {
        DEFAULT_ATTEMPTS
    } else {
        1
    };
    let pause = Duration::from_millis(100 + rand::random::<u64>() % 100);
    for i in 0..attempts {
        if i != 0 {
            tokio::time::sleep(pause).await;
        }
        match srv.store.get(&ri.key(Some(ns), name)) {
            Ok(Some(s)) => return handler::parse_stored(&s).map_err(|e| e.message),
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!("serviceaccount \"{name}\" not found"))
}

fn should_automount(sa: &Value, spec: &Map<String, Value>) -> bool {
    if let Some(b) = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
    {
        return b;
    }
    sa.get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .unwrap_or(true)
}

/// Mount the token volume read-only at [`MOUNT_PATH`] in every init and
/// app container that has nothing there yet; add the volume (named
/// `new_name` unless the pod already has a `kube-api-access-` volume) when
/// some container needs it.
pub fn mount_token(spec: &mut Map<String, Value>, new_name: &str) {
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .and_then(|vs| {
            vs.iter()
                .filter_map(|v| v.get("name").and_then(Value::as_str))
                .find(|n| n.starts_with(VOLUME_PREFIX))
                .map(str::to_string)
        });
    let name = existing.clone().unwrap_or_else(|| new_name.to_string());
    let mount = json!({"name": name, "readOnly": true, "mountPath": MOUNT_PATH});
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        let Some(Value::Array(cs)) = spec.get_mut(list) else {
            continue;
        };
        for c in cs.iter_mut().filter_map(Value::as_object_mut) {
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            if mounts.is_null() {
                *mounts = json!([]);
            }
            let Some(mounts) = mounts.as_array_mut() else {
                continue;
            };
            let has = mounts
                .iter()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(MOUNT_PATH));
            if !has {
                mounts.push(mount.clone());
                needed = true;
            }
        }
    }
    if existing.is_none() && needed {
        let vols = spec.entry("volumes").or_insert_with(|| json!([]));
        if vols.is_null() {
            *vols = json!([]);
        }
        if let Some(v) = vols.as_array_mut() {
            v.push(token_volume(&name));
        }
    }
}

/// Every secret a pod names (`podutil.VisitPodSecretNames`, all containers).
fn secret_names(spec: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |v: Option<&Value>| {
        if let Some(s) = v.and_then(Value::as_str).filter(|s| !s.is_empty()) {
            out.push(s.to_string());
        }
    };
    for r in spec
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        add(r.get("name"));
    }
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for e in c
                .get("envFrom")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                add(e.pointer("/secretRef/name"));
            }
            for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
                add(e.pointer("/valueFrom/secretKeyRef/name"));
            }
        }
    }
    for v in spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        add(v.pointer("/secret/secretName"));
        for src in v
            .pointer("/projected/sources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            add(src.pointer("/secret/name"));
        }
        for p in [
            "/azureFile/secretName",
            "/cephfs/secretRef/name",
            "/cinder/secretRef/name",
            "/flexVolume/secretRef/name",
            "/rbd/secretRef/name",
            "/scaleIO/secretRef/name",
            "/iscsi/secretRef/name",
            "/storageos/secretRef/name",
            "/csi/nodePublishSecretRef/name",
        ] {
            add(v.pointer(p));
        }
    }
    out
}

fn validate_mirror_pod(pod: &Value) -> Result<(), ApiError> {
    let spec = pod.get("spec").cloned().unwrap_or(Value::Null);
    let sa = |k: &str| spec.get(k).and_then(Value::as_str).unwrap_or("");
    if !sa("serviceAccountName").is_empty() || !sa("serviceAccount").is_empty() {
        return Err(forbidden(
            pod,
            "a mirror pod may not reference service accounts",
        ));
    }
    if !secret_names(&spec).is_empty() {
        return Err(forbidden(pod, "a mirror pod may not reference secrets"));
    }
    let projects_token = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.pointer("/projected/sources").and_then(Value::as_array))
        .flatten()
        .any(|s| s.get("serviceAccountToken").is_some_and(|t| !t.is_null()));
    if projects_token {
        return Err(forbidden(
            pod,
            "a mirror pod may not use ServiceAccountToken volume projections",
        ));
    }
    Ok(())
}

/// With `kubernetes.io/enforce-mountable-secrets: "true"` on the account,
/// a pod may use only the secrets the account lists.
fn limit_secret_references(sa: &Value, spec: &Map<String, Value>) -> Result<(), String> {
    let names = |k: &str| -> Vec<String> {
        sa.get(k)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r.get("name").and_then(Value::as_str).map(str::to_string))
            .collect()
    };
    let mountable = names("secrets");
    let sa_name = meta::name(sa);
    let not_allowed = |s: &str| !mountable.iter().any(|m| m == s);
    for v in spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(s) = v.pointer("/secret/secretName").and_then(Value::as_str) {
            if not_allowed(s) {
                return Err(format!("volume with secret.secretName=\"{s}\" is not allowed because service account {sa_name} does not reference that secret"));
            }
        }
    }
    for (list, what) in [
        ("initContainers", "init container"),
        ("containers", "container"),
    ] {
        for c in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let cname = c.get("name").and_then(Value::as_str).unwrap_or("");
            for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
                if let Some(s) = e
                    .pointer("/valueFrom/secretKeyRef/name")
                    .and_then(Value::as_str)
                {
                    if not_allowed(s) {
                        let env = e.get("name").and_then(Value::as_str).unwrap_or("");
                        return Err(format!("{what} {cname} with envVar {env} referencing secret.secretName=\"{s}\" is not allowed because service account {sa_name} does not reference that secret"));
                    }
                }
            }
            for e in c
                .get("envFrom")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(s) = e.pointer("/secretRef/name").and_then(Value::as_str) {
                    if not_allowed(s) {
                        return Err(format!("{what} {cname} with envFrom referencing secret.secretName=\"{s}\" is not allowed because service account {sa_name} does not reference that secret"));
                    }
                }
            }
        }
    }
    let pull = names("imagePullSecrets");
    for (i, r) in spec
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let n = r.get("name").and_then(Value::as_str).unwrap_or("");
        if !pull.iter().any(|p| p == n) {
            return Err(format!("imagePullSecrets[{i}].name=\"{n}\" is not allowed because service account {sa_name} does not reference that imagePullSecret"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn mounts_into_every_container_once() {
        let mut s = spec(json!({
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [
                {"name": "a", "image": "busybox", "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "b", "image": "busybox", "volumeMounts": [{"name": "mine", "mountPath": MOUNT_PATH}]},
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
        }));
        mount_token(&mut s, "kube-api-access-x2b4z");
        let want_mount =
            json!({"name": "kube-api-access-x2b4z", "readOnly": true, "mountPath": MOUNT_PATH});
        assert_eq!(s["initContainers"][0]["volumeMounts"], json!([want_mount]));
        assert_eq!(s["containers"][0]["volumeMounts"][1], want_mount);
        // A container that mounts something at the path keeps only its own.
        assert_eq!(
            s["containers"][1]["volumeMounts"].as_array().unwrap().len(),
            1
        );
        let vols = s["volumes"].as_array().unwrap();
        assert_eq!(vols.len(), 2);
        assert_eq!(
            vols[1],
            json!({"name": "kube-api-access-x2b4z", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ]}})
        );
    }

    #[test]
    fn reuses_an_existing_token_volume_and_skips_unneeded_ones() {
        let mut s = spec(json!({
            "containers": [{"name": "a", "image": "i"}],
            "volumes": [{"name": "kube-api-access-abcde", "projected": {"sources": []}}],
        }));
        mount_token(&mut s, "kube-api-access-zzzzz");
        assert_eq!(s["volumes"].as_array().unwrap().len(), 1);
        assert_eq!(
            s["containers"][0]["volumeMounts"][0]["name"],
            "kube-api-access-abcde"
        );

        let mut s = spec(json!({
            "containers": [{"name": "a", "image": "i", "volumeMounts": [{"name": "x", "mountPath": MOUNT_PATH}]}],
        }));
        mount_token(&mut s, "kube-api-access-zzzzz");
        assert!(s.get("volumes").is_none(), "{s:?}");
    }

    #[test]
    fn automount_preference() {
        let sa_off = json!({"automountServiceAccountToken": false});
        let sa_on = json!({});
        assert!(should_automount(&sa_on, &spec(json!({}))));
        assert!(!should_automount(&sa_off, &spec(json!({}))));
        // The pod's preference wins over the account's.
        assert!(should_automount(
            &sa_off,
            &spec(json!({"automountServiceAccountToken": true}))
        ));
        assert!(!should_automount(
            &sa_on,
            &spec(json!({"automountServiceAccountToken": false}))
        ));
    }

    #[test]
    fn mirror_pods() {
        let ok = json!({"metadata": {"name": "m", "annotations": {MIRROR_POD_ANNOTATION: "x"}},
                        "spec": {"containers": [{"name": "a"}]}});
        assert!(validate_mirror_pod(&ok).is_ok());
        let sa = json!({"metadata": {"name": "m"}, "spec": {"serviceAccountName": "x"}});
        let e = validate_mirror_pod(&sa).unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "pods \"m\" is forbidden: a mirror pod may not reference service accounts"
        );
        let sec = json!({"metadata": {"name": "m"}, "spec": {"containers": [
            {"name": "a", "env": [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}]}});
        assert!(validate_mirror_pod(&sec)
            .unwrap_err()
            .message
            .ends_with("a mirror pod may not reference secrets"));
        let tok = json!({"metadata": {"name": "m"}, "spec": {"volumes": [token_volume("kube-api-access-q")]}});
        assert!(validate_mirror_pod(&tok)
            .unwrap_err()
            .message
            .ends_with("a mirror pod may not use ServiceAccountToken volume projections"));
    }

    #[test]
    fn mountable_secrets() {
        let sa = json!({"metadata": {"name": "robot"}, "secrets": [{"name": "ok"}]});
        let good = spec(json!({"volumes": [{"name": "v", "secret": {"secretName": "ok"}}]}));
        assert!(limit_secret_references(&sa, &good).is_ok());
        let bad = spec(
            json!({"containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "nope"}}]}]}),
        );
        assert_eq!(
            limit_secret_references(&sa, &bad).unwrap_err(),
            "container c with envFrom referencing secret.secretName=\"nope\" is not allowed because service account robot does not reference that secret"
        );
    }
}
