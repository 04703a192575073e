//! The StatefulSet controller (upstream `pkg/controller/statefulset`, 1.33
//! semantics): pods `<set>-<ordinal>` with stable hostnames, one PVC per
//! volumeClaimTemplate and ordinal (`<claim>-<set>-<ordinal>`, created
//! before the pod, never waited on), OrderedReady and Parallel pod
//! management, RollingUpdate with partition and OnDelete, ControllerRevisions
//! (`currentRevision`/`updateRevision`), `persistentVolumeClaimRetentionPolicy`
//! and the status counters `kubectl rollout status sts` reads.
//!
//! `maxUnavailable` is ignored, as upstream 1.33 does by default (its
//! `MaxUnavailableStatefulSet` gate is alpha): updates replace one pod at a
//! time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};

use crate::daemonset::history::{self, REVISION_HASH_LABEL};
use crate::util::pods::{self as podutil, PodName};
use crate::util::selector::label_selector_query;
use crate::util::workload::{
    error_policy, requeue_on_conflict, requeue_sooner, Context, Error, ObjectSync,
};

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// Runs the StatefulSet controller (until its task is aborted).
pub async fn run(client: Client) {
    let ctx = Context::new(client.clone(), "statefulset-controller");
    Controller::new(
        Api::<StatefulSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Pod>::all(client.clone()), watcher::Config::default())
    .owns(
        Api::<ControllerRevision>::all(client),
        watcher::Config::default(),
    )
    .run(reconcile, error_policy, ctx)
    .for_each(|_| async {})
    .await;
}

/// The ordinal of `<set>-<n>`, if the name is one of the set's.
pub fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let rest = pod.strip_prefix(set)?.strip_prefix('-')?;
    if rest.is_empty() || (rest.len() > 1 && rest.starts_with('0')) {
        return None;
    }
    rest.parse::<i32>().ok().filter(|n| *n >= 0)
}

pub fn claim_name(claim: &str, set: &str, ordinal: i32) -> String {
    format!("{claim}-{set}-{ordinal}")
}

/// Which revision a new pod of `ordinal` gets (upstream
/// `newVersionedStatefulSetPod`): below the partition, the current one.
pub fn uses_current_revision(
    rolling: bool,
    partition: Option<i32>,
    current_replicas: i32,
    ordinal: i32,
) -> bool {
    rolling
        && match partition {
            None => ordinal < current_replicas,
            Some(p) => ordinal < p,
        }
}

/// The pod for an ordinal from a template (upstream `newStatefulSetPod`
/// plus `updateIdentity` and `updateStorage`).
pub fn new_pod(
    set: &StatefulSet,
    template: &PodTemplateSpec,
    revision: &str,
    ordinal: i32,
) -> Value {
    let set_name = set.name_any();
    let pod_name = format!("{set_name}-{ordinal}");
    let spec = set.spec.clone().unwrap_or_default();
    let mut tpl = template.clone();
    let meta = tpl.metadata.get_or_insert_with(Default::default);
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.into(), pod_name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_HASH_LABEL.into(), revision.into());
    if let Some(ps) = tpl.spec.as_mut() {
        ps.hostname = Some(pod_name.clone());
        if let Some(svc) = spec.service_name.as_deref().filter(|s| !s.is_empty()) {
            ps.subdomain = Some(svc.into());
        }
        let volumes = ps.volumes.get_or_insert_with(Vec::new);
        for claim in spec.volume_claim_templates.iter().flatten() {
            let cname = claim.metadata.name.clone().unwrap_or_default();
            let source = PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(&cname, &set_name, ordinal),
                read_only: Some(false),
            };
            match volumes.iter_mut().find(|v| v.name == cname) {
                Some(v) => {
                    *v = Volume {
                        name: cname.clone(),
                        persistent_volume_claim: Some(source),
                        ..Default::default()
                    }
                }
                None => volumes.push(Volume {
                    name: cname.clone(),
                    persistent_volume_claim: Some(source),
                    ..Default::default()
                }),
            }
        }
        if volumes.is_empty() {
            ps.volumes = None;
        }
    }
    podutil::pod_from_typed_template(
        &tpl,
        &podutil::controller_ref_to(set),
        PodName::Fixed(&pod_name),
    )
}

fn revision_of(pod: &Pod) -> &str {
    pod.labels()
        .get(REVISION_HASH_LABEL)
        .map(String::as_str)
        .unwrap_or("")
}

fn running_and_ready(pod: &Pod) -> bool {
    podutil::phase(pod) == "Running" && podutil::is_pod_ready(pod)
}

fn healthy(pod: &Pod, min_ready: i32, now: Timestamp) -> bool {
    running_and_ready(pod)
        && !podutil::is_pod_terminating(pod)
        && podutil::is_pod_available(pod, min_ready, now)
}

/// The template a revision stores.
fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Some(o) = t.as_object_mut() {
        o.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

type Sync<'a> = ObjectSync<'a, StatefulSet>;

impl Sync<'_> {
    fn pods(&self) -> Api<Pod> {
        self.api()
    }

    fn claims(&self) -> Api<PersistentVolumeClaim> {
        self.api()
    }

    fn retention(&self) -> (String, String) {
        let p = self
            .obj
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
        (
            p.and_then(|p| p.when_deleted.clone())
                .unwrap_or_else(|| "Retain".into()),
            p.and_then(|p| p.when_scaled.clone())
                .unwrap_or_else(|| "Retain".into()),
        )
    }

    /// Creates the ordinal's missing claims (upstream `createPersistentVolumeClaims`).
    async fn create_claims(&self, ordinal: i32) -> Result<(), kube::Error> {
        let spec = self.obj.spec.clone().unwrap_or_default();
        let match_labels = spec.selector.match_labels.clone().unwrap_or_default();
        let (when_deleted, _) = self.retention();
        for tpl in spec.volume_claim_templates.iter().flatten() {
            let cname = claim_name(
                tpl.metadata.name.as_deref().unwrap_or(""),
                &self.name,
                ordinal,
            );
            if self.claims().get_opt(&cname).await?.is_some() {
                continue;
            }
            let mut claim = tpl.clone();
            claim.status = None;
            claim.metadata = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(cname.clone()),
                namespace: Some(self.ns.clone()),
                labels: Some({
                    let mut l = tpl.metadata.labels.clone().unwrap_or_default();
                    l.extend(match_labels.clone());
                    l
                }),
                annotations: tpl.metadata.annotations.clone(),
                owner_references: (when_deleted == "Delete").then(|| vec![self.set_ref()]),
                ..Default::default()
            };
            match self.claims().create(&PostParams::default(), &claim).await {
                Ok(_) => {
                    self.event(
                        EventType::Normal,
                        "SuccessfulCreate",
                        format!(
                            "create Claim {cname} Pod {}-{ordinal} in StatefulSet {} success",
                            self.name, self.name
                        ),
                    )
                    .await
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => {
                    self.event(
                        EventType::Warning,
                        "FailedCreate",
                        format!(
                            "create Claim {cname} for Pod {}-{ordinal} in StatefulSet {} failed error: {e}",
                            self.name, self.name
                        ),
                    )
                    .await;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The set as a (non-controller) owner of its claims.
    fn set_ref(&self) -> OwnerReference {
        let mut r = podutil::controller_ref_to(&self.obj);
        r.controller = None;
        r.block_owner_deletion = None;
        r
    }

    /// Upstream's `updateClaimOwnerRefForSetAndPod`: claims owned by the set
    /// under `whenDeleted: Delete`, by a condemned pod under `whenScaled:
    /// Delete`.
    async fn update_claim_owners(
        &self,
        ordinal: i32,
        pod: Option<&Pod>,
        condemned: bool,
    ) -> Result<(), kube::Error> {
        let spec = self.obj.spec.clone().unwrap_or_default();
        let (when_deleted, when_scaled) = self.retention();
        let set_uid = self.obj.metadata.uid.clone().unwrap_or_default();
        for tpl in spec.volume_claim_templates.iter().flatten() {
            let cname = claim_name(
                tpl.metadata.name.as_deref().unwrap_or(""),
                &self.name,
                ordinal,
            );
            let Some(claim) = self.claims().get_opt(&cname).await? else {
                continue;
            };
            let old = claim.metadata.owner_references.clone().unwrap_or_default();
            let pod_uid = pod.and_then(|p| p.metadata.uid.clone()).unwrap_or_default();
            let mut refs: Vec<OwnerReference> = old
                .iter()
                .filter(|r| r.uid != set_uid && !(r.kind == "Pod" && r.uid == pod_uid))
                .cloned()
                .collect();
            let scaled_away = when_scaled == "Delete" && condemned;
            if when_deleted == "Delete" && !scaled_away {
                refs.push(self.set_ref());
            }
            if scaled_away {
                if let Some(p) = pod {
                    refs.push(OwnerReference {
                        api_version: "v1".into(),
                        kind: "Pod".into(),
                        name: p.name_any(),
                        uid: pod_uid.clone(),
                        controller: None,
                        block_owner_deletion: None,
                    });
                }
            }
            if refs != old {
                let patch = json!({"metadata": {
                    "resourceVersion": claim.metadata.resource_version,
                    "ownerReferences": refs,
                }});
                self.claims()
                    .patch(&cname, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
        }
        Ok(())
    }

    async fn create_pod(&self, pod: Value, ordinal: i32) -> Result<(), kube::Error> {
        self.create_claims(ordinal).await?;
        let pod: Pod = serde_json::from_value(pod).map_err(kube::Error::SerdeError)?;
        let pod_name = pod.name_any();
        match self.pods().create(&PostParams::default(), &pod).await {
            Ok(_) => {
                self.event(
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!(
                        "create Pod {pod_name} in StatefulSet {} successful",
                        self.name
                    ),
                )
                .await;
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => {
                self.event(
                    EventType::Warning,
                    "FailedCreate",
                    format!(
                        "create Pod {pod_name} in StatefulSet {} failed error: {e}",
                        self.name
                    ),
                )
                .await;
                Err(e)
            }
        }
    }

    async fn delete_pod(&self, pod: &Pod) -> Result<(), kube::Error> {
        let name = pod.name_any();
        self.delete_recorded::<Pod>(
            &name,
            &DeleteParams::default(),
            format!("delete Pod {name} in StatefulSet {} successful", self.name),
            |e| {
                format!(
                    "delete Pod {name} in StatefulSet {} failed error: {e}",
                    self.name
                )
            },
        )
        .await
    }
}

async fn reconcile(cached: Arc<StatefulSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    match ObjectSync::fetch(&ctx, cached.as_ref()).await? {
        Some(s) if s.obj.metadata.deletion_timestamp.is_none() => {
            requeue_on_conflict(sync(&s).await)
        }
        _ => Ok(Action::await_change()),
    }
}

async fn sync(s: &Sync<'_>) -> Result<Action, Error> {
    let Some(spec) = s.obj.spec.clone() else {
        return Ok(Action::await_change());
    };
    let now = Timestamp::now();
    let status = s.obj.status.clone().unwrap_or_default();

    // Revisions.
    let cr_api: Api<ControllerRevision> = s.api();
    let cur = history::current_for(&cr_api, &s.obj, &spec.template, status.collision_count)
        .await
        .map_err(s.err())?;
    let update_rev = cur.revision.name_any();
    let current_rev_obj = status
        .current_revision
        .as_deref()
        .and_then(|n| cur.old.iter().find(|r| r.name_any() == n))
        .cloned();
    let (current_rev, current_tpl) = match &current_rev_obj {
        Some(r) => (
            r.name_any(),
            template_of(r).unwrap_or_else(|| spec.template.clone()),
        ),
        None => (update_rev.clone(), spec.template.clone()),
    };

    let selector = label_selector_query(&spec.selector).unwrap_or_default();
    let pods: Vec<Pod> = s.list_controlled(&selector).await?;
    let replicas = spec.replicas.unwrap_or(1);
    let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let us = spec.update_strategy.clone().unwrap_or_default();
    let rolling = us.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate";
    let partition = us.rolling_update.as_ref().and_then(|r| r.partition);

    let mut by_ord: BTreeMap<i32, &Pod> = BTreeMap::new();
    let mut condemned: Vec<(i32, &Pod)> = Vec::new();
    for p in &pods {
        match ordinal_of(&s.name, &p.name_any()) {
            Some(o) if o >= start && o < start + replicas => {
                by_ord.insert(o, p);
            }
            Some(o) => condemned.push((o, p)),
            None => {}
        }
    }
    condemned.sort_by_key(|c| std::cmp::Reverse(c.0));

    let mut requeue: Option<Duration> = None;
    let wait_ready = |p: &Pod, requeue: &mut Option<Duration>| {
        if running_and_ready(p) && !podutil::is_pod_available(p, min_ready, now) {
            if let Some(d) = podutil::until_available(p, min_ready, now) {
                requeue_sooner(requeue, d + Duration::from_millis(100));
            }
        }
    };
    let current_replicas = status.current_replicas.unwrap_or(0);
    let mut blocked = false;
    // Create, recreate and wait, in ordinal order.
    for ord in start..start + replicas {
        if blocked {
            break;
        }
        match by_ord.get(&ord) {
            Some(p)
                if matches!(podutil::phase(p), "Failed" | "Succeeded")
                    && !podutil::is_pod_terminating(p) =>
            {
                let reason = if podutil::phase(p) == "Failed" {
                    "RecreatingFailedPod"
                } else {
                    "RecreatingTerminatedPod"
                };
                s.event(
                    EventType::Warning,
                    reason,
                    format!(
                        "StatefulSet {}/{} is recreating {} Pod {}",
                        s.ns,
                        s.name,
                        podutil::phase(p).to_lowercase(),
                        p.name_any()
                    ),
                )
                .await;
                s.delete_pod(p).await.map_err(s.err())?;
                if !parallel {
                    blocked = true;
                }
            }
            Some(p) => {
                s.update_claim_owners(ord, Some(p), false)
                    .await
                    .map_err(s.err())?;
                if podutil::is_pod_terminating(p) && !parallel {
                    blocked = true;
                } else if !parallel && !healthy(p, min_ready, now) {
                    wait_ready(p, &mut requeue);
                    blocked = true;
                }
            }
            None => {
                let use_current = current_rev != update_rev
                    && uses_current_revision(rolling, partition, current_replicas, ord);
                let (tpl, rev) = if use_current {
                    (&current_tpl, current_rev.as_str())
                } else {
                    (&spec.template, update_rev.as_str())
                };
                s.create_pod(new_pod(&s.obj, tpl, rev, ord), ord)
                    .await
                    .map_err(s.err())?;
                if !parallel {
                    blocked = true;
                }
            }
        }
    }
    // Scale down: highest ordinal first; OrderedReady waits for health.
    if !blocked {
        for (ord, p) in &condemned {
            if podutil::is_pod_terminating(p) {
                if !parallel {
                    blocked = true;
                    break;
                }
                continue;
            }
            if !parallel && !healthy(p, min_ready, now) {
                // Upstream waits for an unhealthy condemned pod unless it
                // is the one being deleted.
                if !running_and_ready(p) && podutil::phase(p) != "Failed" {
                    blocked = true;
                    break;
                }
            }
            s.update_claim_owners(*ord, Some(p), true)
                .await
                .map_err(s.err())?;
            s.delete_pod(p).await.map_err(s.err())?;
            if !parallel {
                blocked = true;
                break;
            }
        }
    }
    // Rolling update: highest ordinal first, down to the partition.
    if !blocked && rolling {
        let min = start + partition.unwrap_or(0).max(0);
        for ord in (start..start + replicas).rev() {
            if ord < min {
                break;
            }
            let Some(p) = by_ord.get(&ord) else { break };
            if revision_of(p) != update_rev && !podutil::is_pod_terminating(p) {
                s.delete_pod(p).await.map_err(s.err())?;
                break;
            }
            if !healthy(p, min_ready, now) {
                wait_ready(p, &mut requeue);
                break;
            }
        }
    }

    // Status from fresh pods (upstream `computeReplicaStatus`).
    let pods: Vec<Pod> = s
        .list_controlled::<Pod>(&selector)
        .await?
        .into_iter()
        .filter(|p| ordinal_of(&s.name, &p.name_any()).is_some())
        .collect();
    let (mut n, mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0, 0);
    for p in &pods {
        n += 1;
        if running_and_ready(p) {
            ready += 1;
            if podutil::is_pod_available(p, min_ready, now) {
                available += 1;
            } else {
                wait_ready(p, &mut requeue);
            }
        }
        if !podutil::is_pod_terminating(p) {
            if revision_of(p) == current_rev {
                current += 1;
            }
            if revision_of(p) == update_rev {
                updated += 1;
            }
        }
    }
    let (mut current_rev_out, mut current_out) = (current_rev.clone(), current);
    if rolling && updated == n && ready == n {
        current_rev_out = update_rev.clone();
        current_out = updated;
    }
    let mut st = json!({
        "observedGeneration": s.obj.metadata.generation,
        "replicas": n,
        "readyReplicas": ready,
        "availableReplicas": available,
        "currentReplicas": current_out,
        "updatedReplicas": updated,
        "currentRevision": current_rev_out,
        "updateRevision": update_rev,
    });
    if let Some(c) = cur.collision_count {
        st["collisionCount"] = json!(c);
    }
    let old = serde_json::to_value(&status).unwrap_or_default();
    s.patch_status_if_changed(&old, st).await?;

    // History: keep revisionHistoryLimit revisions no pod uses.
    let in_use: std::collections::HashSet<String> = pods
        .iter()
        .map(|p| revision_of(p).to_string())
        .chain([current_rev_out, update_rev])
        .collect();
    if let Err(e) = history::trim(
        &cr_api,
        &cur.old,
        &in_use,
        spec.revision_history_limit.unwrap_or(10),
    )
    .await
    {
        tracing::debug!(error = %e, statefulset = %s.name, "cannot trim history");
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-01"), None);
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "webx-1"), None);
        assert_eq!(ordinal_of("web", "web-"), None);
        assert_eq!(ordinal_of("web-1", "web-1-2"), Some(2));
        assert_eq!(claim_name("data", "web", 3), "data-web-3");
    }

    #[test]
    fn partition_picks_the_revision() {
        assert!(uses_current_revision(true, Some(2), 0, 1));
        assert!(!uses_current_revision(true, Some(2), 0, 2));
        assert!(uses_current_revision(true, None, 3, 2));
        assert!(!uses_current_revision(false, Some(2), 3, 1));
    }

    #[test]
    fn pods_get_identity_and_claims() {
        let set: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u"},
            "spec": {
                "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                    "containers": [{"name": "c", "image": "i", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]
            }
        }))
        .expect("set");
        let tpl = set
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .expect("template");
        let pod = new_pod(&set, &tpl, "web-abc", 1);
        assert_eq!(pod["metadata"]["name"], json!("web-1"));
        assert_eq!(pod["metadata"]["labels"][POD_NAME_LABEL], json!("web-1"));
        assert_eq!(pod["metadata"]["labels"][POD_INDEX_LABEL], json!("1"));
        assert_eq!(
            pod["metadata"]["labels"][REVISION_HASH_LABEL],
            json!("web-abc")
        );
        assert_eq!(pod["spec"]["hostname"], json!("web-1"));
        assert_eq!(pod["spec"]["subdomain"], json!("nginx"));
        assert_eq!(
            pod["spec"]["volumes"],
            json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data-web-1", "readOnly": false}}])
        );
        assert_eq!(
            pod["metadata"]["ownerReferences"][0]["kind"],
            json!("StatefulSet")
        );
    }

    #[test]
    fn revision_templates_round_trip() {
        let tpl: PodTemplateSpec =
            serde_json::from_value(json!({"spec": {"containers": [{"name": "c", "image": "i"}]}}))
                .expect("template");
        let rev = ControllerRevision {
            data: Some(k8s_openapi::apimachinery::pkg::runtime::RawExtension(
                history::template_patch(&tpl),
            )),
            ..Default::default()
        };
        assert_eq!(template_of(&rev), Some(tpl));
    }
}
