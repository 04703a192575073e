//! ControllerRevisions for DaemonSets and StatefulSets (upstream
//! `pkg/controller/history`): a revision stores the owner's pod template as
//! a strategic-merge patch (`{"spec":{"template":{..., "$patch":"replace"}}}`)
//! so `kubectl rollout undo` can apply it; its name is
//! `<owner>-<hash>`, its `revision` counts up, and a template that returns
//! to an older revision moves that revision to the top.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::{json, Value};

use crate::util::hash::hash_with_collisions;
use crate::util::pods::{self as podutil, controlled_by};

/// The label naming a pod's revision.
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// FNV-32a of the value's JSON (typed serialization: stable field order),
/// then the collision count as 4 little-endian bytes, rendered as
/// upstream renders `ComputeHash`.
///
/// Upstream's `HashControllerRevision` differs (FNV-1, the collision count
/// as decimal text), but its input is Go's JSON of the template, which
/// kedge cannot reproduce byte for byte anyway; what must not change is
/// the hash of revisions kedge has already stored (see the test below).
pub fn hash(value: &Value, collision_count: Option<i32>) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    hash_with_collisions(&bytes, collision_count)
}

/// The revision data of a template: the patch `kubectl rollout undo`
/// applies.
pub fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(o) = t.as_object_mut() {
        o.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The owner's revisions, oldest first.
pub async fn list(
    api: &Api<ControllerRevision>,
    owner_uid: &str,
) -> Result<Vec<ControllerRevision>, kube::Error> {
    let mut revs: Vec<ControllerRevision> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|r| controlled_by(&r.metadata, owner_uid))
        .collect();
    revs.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then(a.name_any().cmp(&b.name_any()))
    });
    Ok(revs)
}

/// What [`ensure`] settled on.
pub struct Current {
    pub revision: ControllerRevision,
    /// The other revisions, oldest first.
    pub old: Vec<ControllerRevision>,
    /// The collision count to record in the owner's status, if it changed.
    pub collision_count: Option<i32>,
}

/// Finds or creates the revision for `data` (upstream
/// `constructHistory`/`getStatefulSetRevisions`): an equal revision is
/// reused (and moved to the top when older), a name taken by different
/// data bumps the collision count.
pub async fn ensure(
    api: &Api<ControllerRevision>,
    owner_name: &str,
    owner: OwnerReference,
    labels: BTreeMap<String, String>,
    data: Value,
    mut collision_count: Option<i32>,
    revs: Vec<ControllerRevision>,
) -> Result<Current, kube::Error> {
    let max = revs.iter().map(|r| r.revision).max().unwrap_or(0);
    let equal: Vec<&ControllerRevision> = revs
        .iter()
        .filter(|r| r.data.as_ref().map(|d| &d.0) == Some(&data))
        .collect();
    let start_count = collision_count;
    let current = if let Some(last) = equal.last() {
        let mut cur = (*last).clone();
        if cur.revision < max {
            let patch = json!({"revision": max + 1});
            cur = api
                .patch(
                    &cur.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
        }
        cur
    } else {
        loop {
            let h = hash(&data, collision_count);
            let name = format!("{owner_name}-{h}");
            let mut l = labels.clone();
            l.insert(REVISION_HASH_LABEL.into(), h.clone());
            let cr = ControllerRevision {
                metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some(l),
                    owner_references: Some(vec![owner.clone()]),
                    ..Default::default()
                },
                data: Some(RawExtension(data.clone())),
                revision: max + 1,
            };
            match api.create(&PostParams::default(), &cr).await {
                Ok(c) => break c,
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    let existing = api.get(&name).await?;
                    let same = existing.data.as_ref().map(|d| &d.0) == Some(&data)
                        && controlled_by(&existing.metadata, owner.uid.as_str());
                    if same {
                        break existing;
                    }
                    collision_count = Some(collision_count.unwrap_or(0) + 1);
                }
                Err(e) => return Err(e),
            }
        }
    };
    let old = revs
        .into_iter()
        .filter(|r| r.metadata.uid != current.metadata.uid)
        .collect();
    Ok(Current {
        revision: current,
        old,
        collision_count: (collision_count != start_count).then_some(collision_count.unwrap_or(0)),
    })
}

/// The revision of `owner`'s current `template` ([`list`] then
/// [`ensure`]), labelled with the template's labels.
pub async fn current_for<K: Resource<DynamicType = ()>>(
    api: &Api<ControllerRevision>,
    owner: &K,
    template: &PodTemplateSpec,
    collision_count: Option<i32>,
) -> Result<Current, kube::Error> {
    let meta = owner.meta();
    let revs = list(api, meta.uid.as_deref().unwrap_or("")).await?;
    let labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    ensure(
        api,
        meta.name.as_deref().unwrap_or(""),
        podutil::controller_ref_to(owner),
        labels,
        template_patch(template),
        collision_count,
        revs,
    )
    .await
}

/// Deletes the oldest revisions beyond `limit` that no live pod uses.
pub async fn trim(
    api: &Api<ControllerRevision>,
    old: &[ControllerRevision],
    in_use: &std::collections::HashSet<String>,
    limit: i32,
) -> Result<(), kube::Error> {
    let unused: Vec<&ControllerRevision> = old
        .iter()
        .filter(|r| {
            let h = r
                .labels()
                .get(REVISION_HASH_LABEL)
                .cloned()
                .unwrap_or_default();
            !in_use.contains(&h) && !in_use.contains(&r.name_any())
        })
        .collect();
    let excess = unused.len().saturating_sub(limit.max(0) as usize);
    for r in unused.into_iter().take(excess) {
        match api.delete(&r.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_and_depend_on_collisions() {
        let tpl: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}
        }))
        .expect("template");
        let data = template_patch(&tpl);
        assert_eq!(data["spec"]["template"]["$patch"], json!("replace"));
        let h = hash(&data, None);
        assert_eq!(h, hash(&data, None));
        assert_ne!(h, hash(&data, Some(1)));
        assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        let mut other = tpl.clone();
        if let Some(s) = other.spec.as_mut() {
            s.containers[0].image = Some("j".into());
        }
        assert_ne!(h, hash(&template_patch(&other), None));
    }

    #[test]
    fn hashes_stay_what_is_already_stored() {
        // Revision names and pod labels written by earlier releases carry
        // these hashes: changing the algorithm would re-create revisions.
        let data = json!({"spec": {"template": {"metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"image": "i", "name": "c"}]}, "$patch": "replace"}}});
        assert_eq!(hash(&data, None), "8598c7b866");
        assert_eq!(hash(&data, Some(1)), "7df8d9b787");
        assert_eq!(hash(&data, Some(-3)), "fbcdbbdd4");
    }
}
