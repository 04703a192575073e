//! The API server's own lifecycle controllers, run in-process against the
//! same code paths as API requests:
//!
//! * garbage collection by `ownerReferences` (background, foreground with
//!   `blockOwnerDeletion`, orphan; dependents of several owners live until
//!   the last owner goes);
//! * namespaces: a deleted namespace is `Terminating` while everything in it
//!   is deleted, reports its progress in status conditions, then goes;
//! * every active namespace has the `default` ServiceAccount and the
//!   `kube-root-ca.crt` ConfigMap.
//!
//! They keep an index of every object's uid and owners, built from a list of
//! the whole store and kept current from its watch; a watch that falls out
//! of the window starts over with a fresh list.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kedge_api::registry::ResourceInfo;
use kedge_api::{meta, ApiError};
use kedge_store::{EventType, Store};
use serde_json::{json, Value};

use crate::handler::{self, create_object, delete_object, guaranteed_update, DeleteOptions};
use crate::server::ApiServer;

pub const ORPHAN_FINALIZER: &str = "orphan";
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
const NAMESPACE_FINALIZER: &str = "kubernetes";

#[derive(Debug, Clone)]
struct Node {
    key: String,
    owners: Vec<(String, bool)>,
}

#[derive(Default)]
struct Index {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, HashSet<String>>,
}

fn owner_refs(obj: &Value) -> Vec<(String, bool)> {
    meta::metadata(obj)
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| {
                    let uid = r.get("uid")?.as_str()?.to_string();
                    let block = r
                        .get("blockOwnerDeletion")
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    Some((uid, block))
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Index {
    fn remove(&mut self, uid: &str) -> Option<Node> {
        let node = self.nodes.remove(uid)?;
        for (o, _) in &node.owners {
            if let Some(d) = self.dependents.get_mut(o) {
                d.remove(uid);
                if d.is_empty() {
                    self.dependents.remove(o);
                }
            }
        }
        Some(node)
    }

    fn upsert(&mut self, uid: &str, key: &str, obj: &Value) {
        self.remove(uid);
        let owners = owner_refs(obj);
        for (o, _) in &owners {
            self.dependents
                .entry(o.clone())
                .or_default()
                .insert(uid.to_string());
        }
        self.nodes.insert(
            uid.to_string(),
            Node {
                key: key.to_string(),
                owners,
            },
        );
    }
}

/// What needs another look.
#[derive(Default)]
struct Dirty {
    uids: BTreeSet<String>,
    namespaces: BTreeSet<String>,
}

/// The namespace of a key `/<group>/<plural>/<ns>/<name>` if it has one.
fn key_namespace(key: &str) -> Option<&str> {
    let parts: Vec<&str> = key.trim_start_matches('/').split('/').collect();
    (parts.len() == 4).then(|| parts[2])
}

fn note_object(dirty: &mut Dirty, key: &str, obj: &Value, uid: &str) {
    dirty.uids.insert(uid.to_string());
    if key.starts_with("/core/namespaces/") {
        dirty.namespaces.insert(meta::name(obj).to_string());
    } else if let Some(ns) = key_namespace(key) {
        // Deletions inside a terminating namespace move it along; the
        // default ServiceAccount and root CA ConfigMap are restored.
        dirty.namespaces.insert(ns.to_string());
    }
}

pub async fn run(srv: Arc<ApiServer>) {
    loop {
        let rev = srv.store.revision();
        let mut index = Index::default();
        let mut dirty = Dirty::default();
        match srv.store.list("/", None, 0) {
            Ok(page) => {
                for s in page.items {
                    let Ok(obj) = serde_json::from_slice::<Value>(&s.value) else {
                        continue;
                    };
                    let uid = meta::uid(&obj).to_string();
                    if uid.is_empty() {
                        continue;
                    }
                    index.upsert(&uid, &s.key, &obj);
                    note_object(&mut dirty, &s.key, &obj, &uid);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "lifecycle controllers: cannot list the store");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        let mut watch = match srv.store.watch("/", rev) {
            Ok(w) => w,
            Err(_) => continue,
        };
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            reconcile(&srv, &mut index, &mut dirty).await;
            tokio::select! {
                ev = watch.next() => match ev {
                    Some(Ok(ev)) => {
                        let Ok(obj) = serde_json::from_slice::<Value>(&ev.value) else { continue };
                        let uid = meta::uid(&obj).to_string();
                        if uid.is_empty() { continue; }
                        match ev.kind {
                            EventType::Deleted => {
                                if let Some(node) = index.remove(&uid) {
                                    // Its dependents and its owners need a look.
                                    if let Some(deps) = index.dependents.get(&uid) {
                                        dirty.uids.extend(deps.iter().cloned());
                                    }
                                    dirty.uids.extend(node.owners.into_iter().map(|(o, _)| o));
                                }
                                note_object(&mut dirty, &ev.key, &obj, &uid);
                            }
                            _ => {
                                index.upsert(&uid, &ev.key, &obj);
                                note_object(&mut dirty, &ev.key, &obj, &uid);
                            }
                        }
                        // Take everything else already queued before reconciling.
                        while let Some(Ok(ev)) = watch.try_next() {
                            let Ok(obj) = serde_json::from_slice::<Value>(&ev.value) else { continue };
                            let uid = meta::uid(&obj).to_string();
                            if uid.is_empty() { continue; }
                            if ev.kind == EventType::Deleted {
                                if let Some(node) = index.remove(&uid) {
                                    if let Some(deps) = index.dependents.get(&uid) {
                                        dirty.uids.extend(deps.iter().cloned());
                                    }
                                    dirty.uids.extend(node.owners.into_iter().map(|(o, _)| o));
                                }
                            } else {
                                index.upsert(&uid, &ev.key, &obj);
                            }
                            note_object(&mut dirty, &ev.key, &obj, &uid);
                        }
                    }
                    Some(Err(_)) | None => break,
                },
                _ = tick.tick() => {
                    // Retry what is still waiting: terminating namespaces and
                    // objects held by GC finalizers.
                    for node in index.nodes.values() {
                        if node.key.starts_with("/core/namespaces/") {
                            if let Some(n) = node.key.rsplit('/').next() { dirty.namespaces.insert(n.to_string()); }
                        }
                    }
                    let pending: Vec<String> = index.dependents.keys().cloned().collect();
                    dirty.uids.extend(pending);
                }
            }
        }
    }
}

/// The resource a storage key belongs to.
fn resource_of_key(
    srv: &ApiServer,
    key: &str,
) -> Option<(&'static ResourceInfo, Option<String>, String)> {
    let parts: Vec<&str> = key.trim_start_matches('/').split('/').collect();
    let (group, plural) = (*parts.first()?, *parts.get(1)?);
    let group = if group == "core" { "" } else { group };
    let ri = srv
        .resources()
        .into_iter()
        .find(|r| r.group == group && r.plural == plural)?;
    match (ri.namespaced, parts.len()) {
        (true, 4) => Some((ri, Some(parts[2].to_string()), parts[3].to_string())),
        (false, 3) => Some((ri, None, parts[2].to_string())),
        _ => None,
    }
}

async fn reconcile(srv: &ApiServer, index: &mut Index, dirty: &mut Dirty) {
    let uids = std::mem::take(&mut dirty.uids);
    for uid in uids {
        if let Err(e) = reconcile_object(srv, index, &uid).await {
            if e.code != 404 && e.code != 409 {
                tracing::warn!(%uid, error = %e.message, "garbage collector");
            }
        }
    }
    let namespaces = std::mem::take(&mut dirty.namespaces);
    for ns in namespaces {
        if let Err(e) = reconcile_namespace(srv, &ns).await {
            if e.code != 404 && e.code != 409 {
                tracing::warn!(namespace = %ns, error = %e.message, "namespace controller");
            }
        }
    }
}

fn remove_finalizer(mut obj: Value, f: &str) -> Result<Value, ApiError> {
    if let Some(Value::Array(a)) = obj.pointer_mut("/metadata/finalizers") {
        a.retain(|x| x != f);
    }
    Ok(obj)
}

/// Drop owner references whose uid is in `gone`.
fn drop_owner_refs(mut obj: Value, gone: &HashSet<String>) -> Result<Value, ApiError> {
    if let Some(Value::Array(refs)) = obj.pointer_mut("/metadata/ownerReferences") {
        refs.retain(|r| {
            r.get("uid")
                .and_then(Value::as_str)
                .is_none_or(|u| !gone.contains(u))
        });
    }
    if obj
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
    {
        meta::metadata_mut(&mut obj).remove("ownerReferences");
    }
    Ok(obj)
}

async fn reconcile_object(srv: &ApiServer, index: &Index, uid: &str) -> Result<(), ApiError> {
    let Some(node) = index.nodes.get(uid).cloned() else {
        return Ok(());
    };
    let Some((ri, ns, name)) = resource_of_key(srv, &node.key) else {
        return Ok(());
    };
    let (_, obj) = handler::fetch(srv, ri, ns.as_deref(), &name)?;
    if meta::uid(&obj) != uid {
        return Ok(());
    }
    let finalizers = meta::finalizers(&obj);
    let deleting = meta::deletion_timestamp(&obj).is_some();
    let deps: Vec<String> = index
        .dependents
        .get(uid)
        .map(|d| d.iter().cloned().collect())
        .unwrap_or_default();
    let only_me: HashSet<String> = [uid.to_string()].into();

    if deleting && finalizers.iter().any(|f| f == ORPHAN_FINALIZER) {
        for d in &deps {
            if let Some(dn) = index.nodes.get(d) {
                if let Some((dri, dns, dname)) = resource_of_key(srv, &dn.key) {
                    let gone = only_me.clone();
                    let _ = guaranteed_update(srv, dri, dns.as_deref(), &dname, move |o| {
                        drop_owner_refs(o, &gone)
                    })
                    .await;
                }
            }
        }
        guaranteed_update(srv, ri, ns.as_deref(), &name, |o| {
            remove_finalizer(o, ORPHAN_FINALIZER)
        })
        .await?;
        return Ok(());
    }

    if deleting && finalizers.iter().any(|f| f == FOREGROUND_FINALIZER) {
        let mut blocking = 0;
        for d in &deps {
            let Some(dn) = index.nodes.get(d) else {
                continue;
            };
            if dn.owners.iter().any(|(o, block)| o == uid && *block) {
                blocking += 1;
            }
            let Some((dri, dns, dname)) = resource_of_key(srv, &dn.key) else {
                continue;
            };
            // A dependent that still has another live owner only loses its
            // reference to this one.
            let other_owner = dn
                .owners
                .iter()
                .any(|(o, _)| o != uid && index.nodes.contains_key(o));
            if other_owner {
                let gone = only_me.clone();
                let _ = guaranteed_update(srv, dri, dns.as_deref(), &dname, move |o| {
                    drop_owner_refs(o, &gone)
                })
                .await;
            } else {
                let opts = DeleteOptions {
                    propagation: Some("Background".into()),
                    ..Default::default()
                };
                let _ = delete_object(srv, dri, dns.as_deref(), &dname, &opts).await;
            }
        }
        if blocking == 0 {
            guaranteed_update(srv, ri, ns.as_deref(), &name, |o| {
                remove_finalizer(o, FOREGROUND_FINALIZER)
            })
            .await?;
        }
        return Ok(());
    }

    // A dependent whose owners are all gone goes too; one that still has an
    // owner loses only the references to the missing ones.
    if !node.owners.is_empty() {
        let missing: HashSet<String> = node
            .owners
            .iter()
            .filter(|(o, _)| !index.nodes.contains_key(o))
            .map(|(o, _)| o.clone())
            .collect();
        if missing.len() == node.owners.len() {
            if !deleting {
                let opts = DeleteOptions {
                    propagation: Some("Background".into()),
                    ..Default::default()
                };
                delete_object(srv, ri, ns.as_deref(), &name, &opts).await?;
            }
        } else if !missing.is_empty() {
            guaranteed_update(srv, ri, ns.as_deref(), &name, move |o| {
                drop_owner_refs(o, &missing)
            })
            .await?;
        }
    }
    Ok(())
}

fn condition(t: &str, status: bool, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": t, "status": if status { "True" } else { "False" }, "lastTransitionTime": now, "reason": reason, "message": message})
}

async fn reconcile_namespace(srv: &ApiServer, ns: &str) -> Result<(), ApiError> {
    let Some(nsri) = srv.lookup("", "v1", "namespaces") else {
        return Ok(());
    };
    let obj = match handler::fetch(srv, nsri, None, ns) {
        Ok((_, o)) => o,
        Err(e) if e.code == 404 => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta::deletion_timestamp(&obj).is_none() {
        return ensure_namespace_defaults(srv, ns).await;
    }
    // Terminating: delete everything inside, then let the namespace go.
    let mut remaining = 0usize;
    let mut with_finalizers: BTreeSet<String> = BTreeSet::new();
    let mut failures = Vec::new();
    for ri in srv
        .resources()
        .into_iter()
        .filter(|r| r.namespaced && r.plural != "bindings")
    {
        let page = match srv.store.list(&ri.list_prefix(Some(ns)), None, 0) {
            Ok(p) => p,
            Err(e) => {
                failures.push(e.to_string());
                continue;
            }
        };
        for s in page.items {
            let Ok(o) = serde_json::from_slice::<Value>(&s.value) else {
                continue;
            };
            remaining += 1;
            for f in meta::finalizers(&o) {
                with_finalizers.insert(f);
            }
            if meta::deletion_timestamp(&o).is_none() {
                let opts = DeleteOptions {
                    propagation: Some("Background".into()),
                    ..Default::default()
                };
                match delete_object(srv, ri, Some(ns), meta::name(&o), &opts).await {
                    Ok(_) => {}
                    Err(e) if e.code == 404 || e.code == 409 => {}
                    Err(e) => failures.push(e.message),
                }
            }
        }
    }
    let now = meta::now_rfc3339();
    let conditions = [
        condition(
            "NamespaceDeletionDiscoveryFailure",
            false,
            "ResourcesDiscovered",
            "All resources successfully discovered",
            &now,
        ),
        condition(
            "NamespaceDeletionGroupVersionParsingFailure",
            false,
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed",
            &now,
        ),
        if failures.is_empty() {
            condition(
                "NamespaceDeletionContentFailure",
                false,
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization",
                &now,
            )
        } else {
            condition(
                "NamespaceDeletionContentFailure",
                true,
                "ContentDeletionFailed",
                &failures.join("; "),
                &now,
            )
        },
        if remaining == 0 {
            condition(
                "NamespaceContentRemaining",
                false,
                "ContentRemoved",
                "All content successfully removed",
                &now,
            )
        } else {
            condition(
                "NamespaceContentRemaining",
                true,
                "SomeResourcesRemain",
                &format!("Some resources are remaining: {remaining} objects"),
                &now,
            )
        },
        if with_finalizers.is_empty() {
            condition(
                "NamespaceFinalizersRemaining",
                false,
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished",
                &now,
            )
        } else {
            condition(
                "NamespaceFinalizersRemaining",
                true,
                "SomeFinalizersRemain",
                &format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    with_finalizers.into_iter().collect::<Vec<_>>().join(", ")
                ),
                &now,
            )
        },
    ];
    let done = remaining == 0;
    guaranteed_update(srv, nsri, None, ns, move |mut cur| {
        if let Some(o) = cur.as_object_mut() {
            let st = o.entry("status").or_insert_with(|| json!({}));
            if let Some(st) = st.as_object_mut() {
                st.insert("phase".into(), json!("Terminating"));
                // Keep transition times of conditions that did not change.
                let old: Vec<Value> = st
                    .get("conditions")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let merged: Vec<Value> = conditions
                    .iter()
                    .map(|c| {
                        match old.iter().find(|o| {
                            o["type"] == c["type"]
                                && o["status"] == c["status"]
                                && o["reason"] == c["reason"]
                        }) {
                            Some(o) => {
                                let mut c = c.clone();
                                c["lastTransitionTime"] = o["lastTransitionTime"].clone();
                                c
                            }
                            None => c.clone(),
                        }
                    })
                    .collect();
                st.insert("conditions".into(), json!(merged));
            }
        }
        if done {
            if let Some(Value::Array(f)) = cur.pointer_mut("/spec/finalizers") {
                f.retain(|x| x != NAMESPACE_FINALIZER);
            }
        }
        Ok(cur)
    })
    .await?;
    Ok(())
}

/// Before the server reports ready: every active namespace has its defaults.
pub async fn prepare(srv: &ApiServer) -> Result<(), ApiError> {
    let Some(nsri) = srv.lookup("", "v1", "namespaces") else {
        return Ok(());
    };
    let page = srv
        .store
        .list(&nsri.list_prefix(None), None, 0)
        .map_err(ApiError::internal)?;
    for s in page.items {
        let obj = handler::parse_stored(&s)?;
        if meta::deletion_timestamp(&obj).is_none() {
            ensure_namespace_defaults(srv, meta::name(&obj)).await?;
        }
    }
    Ok(())
}

/// The `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap.
async fn ensure_namespace_defaults(srv: &ApiServer, ns: &str) -> Result<(), ApiError> {
    if let Some(sa) = srv.lookup("", "v1", "serviceaccounts") {
        if srv
            .store
            .get(&sa.key(Some(ns), "default"))
            .map_err(ApiError::internal)?
            .is_none()
        {
            let obj = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}});
            match create_object(srv, sa, Some(ns), obj, false, None).await {
                Ok(_) => {}
                Err(e) if e.code == 409 || e.code == 403 || e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
    }
    let ca = srv.config.root_ca_pem.clone();
    if ca.is_empty() {
        return Ok(());
    }
    if let Some(cm) = srv.lookup("", "v1", "configmaps") {
        let want = json!({"ca.crt": ca});
        match srv
            .store
            .get(&cm.key(Some(ns), "kube-root-ca.crt"))
            .map_err(ApiError::internal)?
        {
            None => {
                let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "kube-root-ca.crt", "namespace": ns, "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                    "data": want});
                match create_object(srv, cm, Some(ns), obj, false, None).await {
                    Ok(_) => {}
                    Err(e) if e.code == 409 || e.code == 403 || e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            Some(s) => {
                let cur: Value = handler::parse_stored(&s)?;
                if cur.get("data") != Some(&want) {
                    guaranteed_update(srv, cm, Some(ns), "kube-root-ca.crt", move |mut o| {
                        if let Some(m) = o.as_object_mut() {
                            m.insert("data".into(), want.clone());
                        }
                        Ok(o)
                    })
                    .await?;
                }
            }
        }
    }
    Ok(())
}
