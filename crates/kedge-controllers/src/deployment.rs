//! The Deployment controller (upstream `pkg/controller/deployment`):
//! RollingUpdate and Recreate rollouts through ReplicaSets named
//! `<deployment>-<pod-template-hash>`, revisions and their annotations,
//! proportional scaling, pause, history clean-up, and a status whose
//! counters and Progressing/Available conditions `kubectl rollout status`
//! and `kubectl wait` read. Rollbacks are done by kubectl itself (it patches
//! the template back), so there is nothing to do for them here.
//!
//! [`run`] also runs the ReplicaSet and ReplicationController controllers,
//! sharing their pod and ReplicaSet watches.

pub mod util;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::{json, Value};

use crate::replicaset::{self, Caches, Listener};
use crate::util::hash::{compute_hash, equal_ignore_hash, POD_TEMPLATE_HASH_LABEL};
use crate::util::informer::{self, Cache, Change};
use crate::util::pods::{controller_ref, new_controller_ref};
use crate::util::queue::WorkQueue;
use crate::util::raw::{self, PatchType};
use crate::util::selector::{label_selector_matches, Selector};
use util::{
    actual_replicas, available_replicas, by_creation, by_revision, calculate_status,
    deployment_complete, deployment_progressing, deployment_timed_out, is_saturated, max_revision,
    new_rs_new_replicas, proportional_sizes, replicas_annotations_need_update,
    set_new_replica_set_annotations, set_replicas_annotations, spec_replicas, Condition,
    Deployment, Rs, Strategy,
};

const WORKERS: usize = 3;
const RESYNC: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error("deployment {key} is malformed: {reason}")]
    Malformed { key: String, reason: String },
    #[error("{0}")]
    Adoption(String),
    #[error("hash collision creating ReplicaSet {0}; retrying with a new collision count")]
    Collision(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn deployment_resource() -> ApiResource {
    ApiResource {
        group: "apps".into(),
        version: "v1".into(),
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        plural: "deployments".into(),
    }
}

fn deployment_path(namespace: &str, name: &str) -> String {
    format!(
        "{}/{name}",
        raw::collection_path("apps/v1", "deployments", namespace)
    )
}

fn rs_path(namespace: &str, name: &str) -> String {
    format!(
        "{}/{name}",
        raw::collection_path("apps/v1", "replicasets", namespace)
    )
}

struct Controller {
    client: kube::Client,
    deployments: Cache<DynamicObject>,
    replicasets: Cache<DynamicObject>,
    queue: WorkQueue<String>,
}

/// Runs the Deployment, ReplicaSet and ReplicationController controllers
/// until `shutdown` resolves.
pub async fn run(client: kube::Client, shutdown: impl Future<Output = ()>) {
    let caches = Caches::default();
    let c = Arc::new(Controller {
        client: client.clone(),
        deployments: Cache::new(),
        replicasets: caches.replicasets.clone(),
        queue: WorkQueue::new(),
    });
    let mut tasks = tokio::task::JoinSet::new();
    {
        let handler = c.clone();
        tasks.spawn(informer::run(
            Api::<DynamicObject>::all_with(client.clone(), &deployment_resource()),
            watcher::Config::default(),
            c.deployments.clone(),
            move |change| handler.on_deployment(change),
        ));
    }
    for _ in 0..WORKERS {
        let c = c.clone();
        tasks.spawn(async move { c.work().await });
    }
    {
        let c = c.clone();
        tasks.spawn(async move {
            loop {
                tokio::time::sleep(RESYNC).await;
                c.enqueue_all();
            }
        });
    }
    replicaset::run_with(
        client,
        caches,
        Some(c.clone() as Arc<dyn Listener>),
        shutdown,
    )
    .await;
    c.queue.shut_down();
    tasks.shutdown().await;
}

fn key_of(o: &DynamicObject) -> String {
    format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any())
}

impl Listener for Controller {
    fn on_pod(&self, change: &Change<Pod>) {
        // Only Recreate waits for pods to be gone (upstream `deletePod`).
        let Change::Deleted(pod) = change else { return };
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let Some(r) = controller_ref(&pod.metadata).filter(|r| r.kind == "ReplicaSet") else {
            return;
        };
        let Some(rs) = self.replicasets.get(ns, &r.name) else {
            return;
        };
        if let Some(d) = self.owner_of_rs(&rs) {
            if d.strategy == Strategy::Recreate {
                self.queue.add(d.key());
            }
        }
    }

    fn on_replicaset(&self, change: &Change<DynamicObject>) {
        match change {
            Change::Added(rs) | Change::Deleted(rs) => {
                if let Some(d) = self.owner_of_rs(rs) {
                    self.queue.add(d.key());
                } else if controller_ref(&rs.metadata).is_none() {
                    for d in self.matching_deployments(rs) {
                        self.queue.add(d.key());
                    }
                }
            }
            Change::Updated { old, new } => {
                let cur_ref = controller_ref(&new.metadata);
                let old_ref = controller_ref(&old.metadata);
                if cur_ref != old_ref {
                    if let Some(d) = self.owner_of_rs(old) {
                        self.queue.add(d.key());
                    }
                }
                if let Some(d) = self.owner_of_rs(new) {
                    self.queue.add(d.key());
                } else if cur_ref.is_none()
                    && (old.metadata.labels != new.metadata.labels || cur_ref != old_ref)
                {
                    for d in self.matching_deployments(new) {
                        self.queue.add(d.key());
                    }
                }
            }
            Change::Synced => {}
        }
    }
}

impl Controller {
    fn enqueue_all(&self) {
        for d in self.deployments.list() {
            self.queue.add(key_of(&d));
        }
    }

    fn on_deployment(&self, change: Change<DynamicObject>) {
        match change {
            Change::Added(d) | Change::Updated { new: d, .. } | Change::Deleted(d) => {
                self.queue.add(key_of(&d))
            }
            Change::Synced => self.enqueue_all(),
        }
    }

    /// The Deployment controlling a ReplicaSet, if it still exists.
    fn owner_of_rs(&self, rs: &DynamicObject) -> Option<Deployment> {
        let r = controller_ref(&rs.metadata).filter(|r| r.kind == "Deployment")?;
        let d = self
            .deployments
            .get(&rs.namespace().unwrap_or_default(), &r.name)?;
        if d.metadata.uid.as_deref() != Some(r.uid.as_str()) {
            return None;
        }
        Deployment::parse(&d).ok()
    }

    fn matching_deployments(&self, rs: &DynamicObject) -> Vec<Deployment> {
        let labels = rs.metadata.labels.clone().unwrap_or_default();
        self.deployments
            .list_namespace(&rs.namespace().unwrap_or_default())
            .iter()
            .filter_map(|d| Deployment::parse(d).ok())
            .filter(|d| {
                let s = Selector::Label(d.selector.clone());
                !s.is_everything() && label_selector_matches(&d.selector, &labels)
            })
            .collect()
    }

    async fn work(&self) {
        self.deployments.wait_ready().await;
        self.replicasets.wait_ready().await;
        while let Some(key) = self.queue.next().await {
            match self.sync(&key).await {
                Ok(()) => self.queue.forget(&key),
                Err(e) => {
                    tracing::warn!(deployment = key, error = %e, "sync failed; retrying");
                    self.queue.add_rate_limited(key.clone());
                }
            }
            self.queue.done(&key);
        }
    }

    /// `syncDeployment`.
    async fn sync(&self, key: &str) -> Result<()> {
        let Some((ns, name)) = key.split_once('/') else {
            return Ok(());
        };
        let Some(obj) = self.deployments.get(ns, name) else {
            return Ok(());
        };
        let mut d = Deployment::parse(&obj).map_err(|reason| Error::Malformed {
            key: key.to_string(),
            reason,
        })?;
        if Selector::Label(d.selector.clone()).is_everything() {
            tracing::warn!(
                deployment = key,
                "This deployment is selecting all pods. A non-empty selector is required."
            );
            if d.status.observed_generation < d.generation {
                let mut s = d.status.clone();
                s.observed_generation = d.generation;
                self.update_status(&mut d, s).await?;
            }
            return Ok(());
        }
        let mut rss = self.claim_replica_sets(&d).await?;
        if d.deleting {
            let (new_rs, old) = self
                .replica_sets_and_sync_revision(&mut d, &mut rss, false)
                .await?;
            return self
                .sync_status_only(&mut d, &rss, new_rs.as_deref(), &old)
                .await;
        }
        self.check_paused_conditions(&mut d).await?;
        if d.paused {
            return self.sync_scale(&mut d, &mut rss).await;
        }
        if self.is_scaling_event(&mut d, &mut rss).await? {
            return self.sync_scale(&mut d, &mut rss).await;
        }
        match d.strategy {
            Strategy::Recreate => self.rollout_recreate(&mut d, &mut rss).await,
            Strategy::RollingUpdate { .. } => self.rollout_rolling(&mut d, &mut rss).await,
        }
    }

    /// `getReplicaSetsForDeployment`: adopt matching orphans, release owned
    /// ReplicaSets that no longer match.
    async fn claim_replica_sets(&self, d: &Deployment) -> Result<Vec<Rs>> {
        let mut out = Vec::new();
        let mut checked: Option<Result<(), String>> = None;
        for obj in self.replicasets.list_namespace(&d.namespace) {
            let rs = Rs::parse(&obj);
            let matches = label_selector_matches(&d.selector, &rs.labels);
            match &rs.controller_uid {
                Some(uid) if *uid == d.uid => {
                    if matches {
                        out.push(rs);
                    } else if !d.deleting {
                        let patch = json!({"metadata": {
                            "ownerReferences": [{"$patch": "delete", "uid": d.uid}],
                            "uid": rs.uid}});
                        match raw::patch(
                            &self.client,
                            &rs_path(&rs.namespace, &rs.name),
                            PatchType::Strategic,
                            &patch,
                        )
                        .await
                        {
                            Ok(_) => {}
                            Err(e) if raw::is_not_found(&e) => {}
                            Err(kube::Error::Api(s)) if s.code == 422 => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                Some(_) => {}
                None => {
                    if d.deleting || !matches || rs.deleting {
                        continue;
                    }
                    if checked.is_none() {
                        checked = Some(self.can_adopt(d).await);
                    }
                    if let Some(Err(e)) = &checked {
                        return Err(Error::Adoption(e.clone()));
                    }
                    let patch = json!({"metadata": {
                        "ownerReferences": [new_controller_ref("apps/v1", "Deployment", &d.name, &d.uid)],
                        "uid": rs.uid}});
                    match raw::patch(
                        &self.client,
                        &rs_path(&rs.namespace, &rs.name),
                        PatchType::Strategic,
                        &patch,
                    )
                    .await
                    {
                        Ok(v) => {
                            tracing::info!(deployment = %d.key(), replicaset = rs.name, "adopted ReplicaSet");
                            out.push(parse_rs_value(v).unwrap_or(rs));
                        }
                        Err(e) if raw::is_not_found(&e) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(out)
    }

    async fn can_adopt(&self, d: &Deployment) -> Result<(), String> {
        let fresh = raw::get(&self.client, &deployment_path(&d.namespace, &d.name))
            .await
            .map_err(|e| e.to_string())?;
        let uid = fresh
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("");
        if uid != d.uid {
            return Err(format!(
                "original Deployment {} is gone: got uid {uid}, wanted {}",
                d.key(),
                d.uid
            ));
        }
        if fresh.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(format!("Deployment {} has just been deleted", d.key()));
        }
        Ok(())
    }

    async fn update_status(
        &self,
        d: &mut Deployment,
        status: util::DeploymentStatus,
    ) -> Result<()> {
        let path = format!("{}/status", deployment_path(&d.namespace, &d.name));
        raw::patch(&self.client, &path, PatchType::Merge, &status.to_patch()).await?;
        d.status = status;
        Ok(())
    }

    /// Sets the Deployment's revision annotation (`SetDeploymentRevision`).
    async fn set_deployment_revision(&self, d: &mut Deployment, revision: &str) -> Result<()> {
        if d.annotations
            .get(util::REVISION_ANNOTATION)
            .map(String::as_str)
            == Some(revision)
        {
            return Ok(());
        }
        let patch = json!({"metadata": {"annotations": {util::REVISION_ANNOTATION: revision}}});
        raw::patch(
            &self.client,
            &deployment_path(&d.namespace, &d.name),
            PatchType::Merge,
            &patch,
        )
        .await?;
        d.annotations
            .insert(util::REVISION_ANNOTATION.into(), revision.into());
        Ok(())
    }

    /// `checkPausedConditions`.
    async fn check_paused_conditions(&self, d: &mut Deployment) -> Result<()> {
        if !d.has_progress_deadline() {
            return Ok(());
        }
        let cond = d.status.condition("Progressing");
        if cond.is_some_and(|c| c.reason == util::TIMED_OUT_REASON) {
            return Ok(());
        }
        let paused_cond = cond.is_some_and(|c| c.reason == util::PAUSED_REASON);
        let now = Timestamp::now();
        let mut status = d.status.clone();
        if d.paused && !paused_cond {
            status.set_condition(Condition::new(
                "Progressing",
                "Unknown",
                util::PAUSED_REASON,
                "Deployment is paused".into(),
                now,
            ));
        } else if !d.paused && paused_cond {
            status.set_condition(Condition::new(
                "Progressing",
                "Unknown",
                util::RESUMED_REASON,
                "Deployment is resumed".into(),
                now,
            ));
        } else {
            return Ok(());
        }
        self.update_status(d, status).await
    }

    /// `getAllReplicaSetsAndSyncRevision`: the new ReplicaSet (created when
    /// asked and missing) and the old ones.
    async fn replica_sets_and_sync_revision(
        &self,
        d: &mut Deployment,
        rss: &mut Vec<Rs>,
        create: bool,
    ) -> Result<(Option<Box<Rs>>, Vec<Rs>)> {
        rss.sort_by(by_creation);
        let new_idx = rss
            .iter()
            .position(|r| equal_ignore_hash(&r.template, &d.template));
        let old: Vec<Rs> = rss
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != new_idx)
            .map(|(_, r)| r.clone())
            .collect();
        let old_refs: Vec<&Rs> = old.iter().collect();
        let new_revision = max_revision(&old_refs) + 1;
        let now = Timestamp::now();
        if let Some(i) = new_idx {
            let mut rs = rss[i].clone();
            let mut annotations = rs.annotations.clone();
            let changed = set_new_replica_set_annotations(d, &mut annotations, new_revision, true);
            if changed || rs.min_ready_seconds != d.min_ready_seconds {
                let patch = json!({
                    "metadata": {"annotations": annotations},
                    "spec": {"minReadySeconds": d.min_ready_seconds},
                });
                let v = raw::patch(
                    &self.client,
                    &rs_path(&rs.namespace, &rs.name),
                    PatchType::Merge,
                    &patch,
                )
                .await?;
                rs = parse_rs_value(v).unwrap_or(rs);
                rss[i] = rs.clone();
                return Ok((Some(Box::new(rs)), old));
            }
            let revision = rs
                .annotations
                .get(util::REVISION_ANNOTATION)
                .cloned()
                .unwrap_or_default();
            self.set_deployment_revision(d, &revision).await?;
            if d.has_progress_deadline() && d.status.condition("Progressing").is_none() {
                let mut status = d.status.clone();
                status.set_condition(Condition::new(
                    "Progressing",
                    "True",
                    util::FOUND_NEW_RS_REASON,
                    format!("Found new replica set {:?}", rs.name),
                    now,
                ));
                self.update_status(d, status).await?;
            }
            return Ok((Some(Box::new(rs)), old));
        }
        if !create {
            return Ok((None, old));
        }
        // Create the new ReplicaSet.
        let hash = compute_hash(&d.template, d.status.collision_count);
        let mut template = d.template.clone();
        if let Some(m) = template.as_object_mut() {
            let meta = m.entry("metadata").or_insert_with(|| json!({}));
            if let Some(meta) = meta.as_object_mut() {
                let labels = meta.entry("labels").or_insert_with(|| json!({}));
                if let Some(l) = labels.as_object_mut() {
                    l.insert(POD_TEMPLATE_HASH_LABEL.into(), json!(hash));
                }
            }
        }
        let mut selector = serde_json::to_value(&d.selector).unwrap_or_else(|_| json!({}));
        if let Some(s) = selector.as_object_mut() {
            let ml = s.entry("matchLabels").or_insert_with(|| json!({}));
            if let Some(ml) = ml.as_object_mut() {
                ml.insert(POD_TEMPLATE_HASH_LABEL.into(), json!(hash));
            }
        }
        let name = format!("{}-{hash}", d.name);
        let mut annotations = BTreeMap::new();
        let mut probe = Rs::parse(&DynamicObject::new(&name, &util_rs_resource()));
        probe.replicas = 0;
        let mut all: Vec<&Rs> = old.iter().collect();
        all.push(&probe);
        let replicas = new_rs_new_replicas(d, &all, 0);
        set_new_replica_set_annotations(d, &mut annotations, new_revision, false);
        let body = json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": d.namespace,
                "labels": template.pointer("/metadata/labels").cloned().unwrap_or_else(|| json!({})),
                "annotations": annotations,
                "ownerReferences": [new_controller_ref("apps/v1", "Deployment", &d.name, &d.uid)],
            },
            "spec": {
                "replicas": replicas,
                "minReadySeconds": d.min_ready_seconds,
                "selector": selector,
                "template": template,
            },
        });
        let collection = raw::collection_path("apps/v1", "replicasets", &d.namespace);
        let (created, already_existed) = match raw::create(&self.client, &collection, &body).await {
            Ok(v) => (parse_rs_value(v), false),
            Err(e) if raw::is_already_exists(&e) => {
                let existing = raw::get(&self.client, &rs_path(&d.namespace, &name)).await?;
                let rs = parse_rs_value(existing);
                match rs {
                    Some(rs)
                        if rs.controller_uid.as_deref() == Some(d.uid.as_str())
                            && equal_ignore_hash(&rs.template, &d.template) =>
                    {
                        (Some(rs), true)
                    }
                    _ => {
                        // A hash collision: bump collisionCount and retry.
                        let mut status = d.status.clone();
                        status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                        self.update_status(d, status).await?;
                        tracing::info!(deployment = %d.key(), replicaset = name, "found a hash collision");
                        return Err(Error::Collision(name));
                    }
                }
            }
            Err(e) if raw::is_namespace_terminating(&e) => return Err(e.into()),
            Err(e) => {
                let msg = format!(
                    "Failed to create new replica set {name:?}: {}",
                    raw::message(&e)
                );
                if d.has_progress_deadline() {
                    let mut status = d.status.clone();
                    status.set_condition(Condition::new(
                        "Progressing",
                        "False",
                        util::FAILED_RS_CREATE_REASON,
                        msg,
                        now,
                    ));
                    self.update_status(d, status).await?;
                }
                return Err(e.into());
            }
        };
        let Some(created) = created else {
            return Ok((None, old));
        };
        if !already_existed && replicas > 0 {
            tracing::info!(deployment = %d.key(), replicaset = created.name, replicas, "Scaled up replica set");
        }
        self.set_deployment_revision(d, &new_revision.to_string())
            .await?;
        if !already_existed && d.has_progress_deadline() {
            let mut status = d.status.clone();
            status.set_condition(Condition::new(
                "Progressing",
                "True",
                util::NEW_RS_REASON,
                format!("Created new replica set {:?}", created.name),
                now,
            ));
            self.update_status(d, status).await?;
        }
        rss.push(created.clone());
        Ok((Some(Box::new(created)), old))
    }

    /// `scaleReplicaSet`: sets the size and the desired/max annotations.
    /// Whether the size changed.
    async fn scale_rs(&self, rs: &mut Rs, size: i32, d: &Deployment) -> Result<bool> {
        let size_changed = rs.replicas != size;
        let max = d.replicas + d.max_surge();
        if !size_changed && !replicas_annotations_need_update(rs, d.replicas, max) {
            return Ok(false);
        }
        let mut annotations = BTreeMap::new();
        set_replicas_annotations(&mut annotations, d.replicas, max);
        let patch = json!({"metadata": {"annotations": annotations}, "spec": {"replicas": size}});
        let v = raw::patch(
            &self.client,
            &rs_path(&rs.namespace, &rs.name),
            PatchType::Merge,
            &patch,
        )
        .await?;
        if let Some(updated) = parse_rs_value(v) {
            *rs = updated;
        }
        if size_changed {
            let op = if size > rs.status_replicas.max(0) {
                "up"
            } else {
                "down"
            };
            tracing::info!(deployment = %d.key(), replicaset = rs.name, size, op, "Scaled replica set");
        }
        Ok(size_changed)
    }

    /// `scaleReplicaSetAndRecordEvent`.
    async fn scale_rs_if_needed(&self, rs: &mut Rs, size: i32, d: &Deployment) -> Result<bool> {
        if rs.replicas == size {
            return Ok(false);
        }
        self.scale_rs(rs, size, d).await
    }

    /// `isScalingEvent`.
    async fn is_scaling_event(&self, d: &mut Deployment, rss: &mut Vec<Rs>) -> Result<bool> {
        let (new_rs, old) = self.replica_sets_and_sync_revision(d, rss, false).await?;
        let all = new_rs.iter().map(|b| b.as_ref()).chain(old.iter());
        for rs in all.filter(|r| r.replicas > 0) {
            if let Some(desired) = rs
                .annotations
                .get(util::DESIRED_REPLICAS_ANNOTATION)
                .and_then(|v| v.parse::<i32>().ok())
            {
                if desired != d.replicas {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// `sync`: scaling events and paused Deployments.
    async fn sync_scale(&self, d: &mut Deployment, rss: &mut Vec<Rs>) -> Result<()> {
        let (mut new_rs, mut old) = self.replica_sets_and_sync_revision(d, rss, false).await?;
        self.scale(d, new_rs.as_deref_mut(), &mut old).await?;
        if d.paused {
            self.cleanup(d, &old).await?;
        }
        self.sync_status_only(d, rss, new_rs.as_deref(), &old).await
    }

    async fn sync_status_only(
        &self,
        d: &mut Deployment,
        _rss: &[Rs],
        new_rs: Option<&Rs>,
        old: &[Rs],
    ) -> Result<()> {
        let mut all: Vec<&Rs> = old.iter().collect();
        if let Some(n) = new_rs {
            all.push(n);
        }
        let status = calculate_status(&all, new_rs, d, Timestamp::now());
        if status != d.status {
            self.update_status(d, status).await?;
        }
        Ok(())
    }

    /// `scale`.
    async fn scale(&self, d: &Deployment, new_rs: Option<&mut Rs>, old: &mut [Rs]) -> Result<()> {
        // One active (or, with none, the newest) ReplicaSet takes it all.
        let active_count = new_rs.as_ref().map_or(0, |r| usize::from(r.replicas > 0))
            + old.iter().filter(|r| r.replicas > 0).count();
        if active_count <= 1 && (new_rs.is_some() || !old.is_empty()) {
            let target: &mut Rs = if active_count == 1 {
                match new_rs {
                    Some(n) if n.replicas > 0 => n,
                    _ => match old.iter_mut().find(|r| r.replicas > 0) {
                        Some(r) => r,
                        None => return Ok(()),
                    },
                }
            } else {
                match new_rs {
                    Some(n) => n,
                    None => {
                        old.sort_by(|a, b| by_creation(b, a));
                        &mut old[0]
                    }
                }
            };
            if target.replicas == d.replicas {
                return Ok(());
            }
            self.scale_rs_if_needed(target, d.replicas, d).await?;
            return Ok(());
        }
        if is_saturated(d, new_rs.as_deref()) {
            for rs in old.iter_mut().filter(|r| r.replicas > 0) {
                self.scale_rs_if_needed(rs, 0, d).await?;
            }
            return Ok(());
        }
        if d.is_rolling_update() {
            let mut active: Vec<&mut Rs> = old.iter_mut().filter(|r| r.replicas > 0).collect();
            if let Some(n) = new_rs {
                if n.replicas > 0 {
                    active.push(n);
                }
            }
            let snapshot: Vec<Rs> = active.iter().map(|r| (**r).clone()).collect();
            let refs: Vec<&Rs> = snapshot.iter().collect();
            let (sizes, _op) = proportional_sizes(d, &refs);
            for (name, size) in sizes {
                if let Some(rs) = active.iter_mut().find(|r| r.name == name) {
                    self.scale_rs(rs, size, d).await?;
                }
            }
        }
        Ok(())
    }

    /// `cleanupDeployment`: old ReplicaSets beyond revisionHistoryLimit.
    async fn cleanup(&self, d: &Deployment, old: &[Rs]) -> Result<()> {
        let Some(limit) = d.revision_history_limit() else {
            return Ok(());
        };
        let mut cleanable: Vec<&Rs> = old.iter().filter(|r| !r.deleting).collect();
        let diff = cleanable.len() as i64 - i64::from(limit);
        if diff <= 0 {
            return Ok(());
        }
        cleanable.sort_by(|a, b| by_revision(a, b));
        for rs in cleanable.iter().take(diff as usize) {
            if rs.status_replicas != 0
                || rs.replicas != 0
                || rs.generation > rs.observed_generation
                || rs.deleting
            {
                continue;
            }
            tracing::info!(deployment = %d.key(), replicaset = rs.name, "deleting old ReplicaSet");
            match raw::delete(
                &self.client,
                &rs_path(&rs.namespace, &rs.name),
                Some(&rs.uid),
            )
            .await
            {
                Ok(()) => {}
                Err(e) if raw::is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// `rolloutRolling`.
    async fn rollout_rolling(&self, d: &mut Deployment, rss: &mut Vec<Rs>) -> Result<()> {
        let (new_rs, mut old) = self.replica_sets_and_sync_revision(d, rss, true).await?;
        let Some(mut new_rs) = new_rs else {
            return self.sync_rollout_status(d, None, &old).await;
        };
        // Scale up the new ReplicaSet.
        let mut scaled_up = false;
        if new_rs.replicas != d.replicas {
            let size = if new_rs.replicas > d.replicas {
                d.replicas
            } else {
                let mut all: Vec<&Rs> = old.iter().collect();
                all.push(&new_rs);
                new_rs_new_replicas(d, &all, new_rs.replicas)
            };
            scaled_up = self.scale_rs_if_needed(&mut new_rs, size, d).await?;
        }
        if scaled_up {
            return self.sync_rollout_status(d, Some(&new_rs), &old).await;
        }
        // Scale down old ReplicaSets.
        if self.reconcile_old(d, &mut old, &new_rs).await? {
            return self.sync_rollout_status(d, Some(&new_rs), &old).await;
        }
        if deployment_complete(d, &d.status) {
            self.cleanup(d, &old).await?;
        }
        self.sync_rollout_status(d, Some(&new_rs), &old).await
    }

    /// `reconcileOldReplicaSets`.
    async fn reconcile_old(&self, d: &Deployment, old: &mut [Rs], new_rs: &Rs) -> Result<bool> {
        let old_refs: Vec<&Rs> = old.iter().collect();
        let old_pods = spec_replicas(&old_refs);
        if old_pods == 0 {
            return Ok(false);
        }
        let all_pods = old_pods + new_rs.replicas;
        let min_available = d.replicas - d.max_unavailable();
        let new_unavailable = new_rs.replicas - new_rs.available_replicas;
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        // Clean up unhealthy replicas first (oldest first).
        old.sort_by(by_creation);
        let mut cleaned = 0;
        for rs in old.iter_mut() {
            if cleaned >= max_scaled_down {
                break;
            }
            if rs.replicas == 0 || rs.replicas == rs.available_replicas {
                continue;
            }
            let n = (max_scaled_down - cleaned).min(rs.replicas - rs.available_replicas);
            let size = rs.replicas - n;
            self.scale_rs_if_needed(rs, size, d).await?;
            cleaned += n;
        }
        // Then scale down healthy ones while availability allows.
        let mut all: Vec<&Rs> = old.iter().collect();
        all.push(new_rs);
        let available = available_replicas(&all);
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for rs in old.iter_mut() {
                if scaled >= total {
                    break;
                }
                if rs.replicas == 0 {
                    continue;
                }
                let n = rs.replicas.min(total - scaled);
                let size = rs.replicas - n;
                self.scale_rs_if_needed(rs, size, d).await?;
                scaled += n;
            }
        }
        Ok(cleaned + scaled > 0)
    }

    /// `rolloutRecreate`.
    async fn rollout_recreate(&self, d: &mut Deployment, rss: &mut Vec<Rs>) -> Result<()> {
        let (mut new_rs, mut old) = self.replica_sets_and_sync_revision(d, rss, false).await?;
        let mut scaled_down = false;
        for rs in old.iter_mut().filter(|r| r.replicas > 0) {
            scaled_down |= self.scale_rs_if_needed(rs, 0, d).await?;
        }
        if scaled_down {
            return self.sync_rollout_status(d, new_rs.as_deref(), &old).await;
        }
        if self.old_pods_running(d, new_rs.as_deref(), &old).await? {
            return self.sync_rollout_status(d, new_rs.as_deref(), &old).await;
        }
        if new_rs.is_none() {
            let (n, o) = self.replica_sets_and_sync_revision(d, rss, true).await?;
            new_rs = n;
            old = o;
        }
        if let Some(n) = new_rs.as_deref_mut() {
            self.scale_rs_if_needed(n, d.replicas, d).await?;
        }
        if deployment_complete(d, &d.status) {
            self.cleanup(d, &old).await?;
        }
        self.sync_rollout_status(d, new_rs.as_deref(), &old).await
    }

    /// `oldPodsRunning`: old ReplicaSets still report pods, or pods of them
    /// that are not finished still exist.
    async fn old_pods_running(
        &self,
        d: &Deployment,
        new_rs: Option<&Rs>,
        old: &[Rs],
    ) -> Result<bool> {
        let refs: Vec<&Rs> = old.iter().collect();
        if actual_replicas(&refs) > 0 {
            return Ok(true);
        }
        let selector = Selector::Label(d.selector.clone()).to_query();
        let path = format!(
            "{}?labelSelector={}",
            raw::collection_path("v1", "pods", &d.namespace),
            form_encode(&selector)
        );
        let list = raw::get(&self.client, &path).await?;
        let old_uids: Vec<&str> = old.iter().map(|r| r.uid.as_str()).collect();
        for pod in list
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let owner = pod
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|r| r.get("controller") == Some(&json!(true)))
                .and_then(|r| r.get("uid"))
                .and_then(Value::as_str);
            let Some(owner) = owner else { continue };
            if new_rs.is_some_and(|n| n.uid == owner) || !old_uids.contains(&owner) {
                continue;
            }
            match pod.pointer("/status/phase").and_then(Value::as_str) {
                Some("Failed") | Some("Succeeded") => continue,
                _ => return Ok(true),
            }
        }
        Ok(false)
    }

    /// `syncRolloutStatus`.
    async fn sync_rollout_status(
        &self,
        d: &mut Deployment,
        new_rs: Option<&Rs>,
        old: &[Rs],
    ) -> Result<()> {
        let now = Timestamp::now();
        let mut all: Vec<&Rs> = old.iter().collect();
        if let Some(n) = new_rs {
            all.push(n);
        }
        let mut status = calculate_status(&all, new_rs, d, now);
        if !d.has_progress_deadline() {
            status.remove_condition("Progressing");
        }
        let current = d.status.condition("Progressing").cloned();
        let complete_already = status.replicas == status.updated_replicas
            && current
                .as_ref()
                .is_some_and(|c| c.reason == util::NEW_RS_AVAILABLE_REASON);
        if d.has_progress_deadline() && !complete_already {
            let what = |fallback: String, f: &dyn Fn(&str) -> String| match new_rs {
                Some(n) => f(&format!("ReplicaSet {:?}", n.name)),
                None => f(&fallback),
            };
            let deployment_name = format!("Deployment {:?}", d.name);
            if deployment_complete(d, &status) {
                let msg = what(deployment_name, &|s| {
                    format!("{s} has successfully progressed.")
                });
                status.set_condition(Condition::new(
                    "Progressing",
                    "True",
                    util::NEW_RS_AVAILABLE_REASON,
                    msg,
                    now,
                ));
            } else if deployment_progressing(d, &status) {
                let msg = what(deployment_name, &|s| format!("{s} is progressing."));
                let mut c =
                    Condition::new("Progressing", "True", util::RS_UPDATED_REASON, msg, now);
                if let Some(cur) = &current {
                    if cur.status == "True" {
                        c.last_transition_time = cur.last_transition_time.clone();
                    }
                    status.remove_condition("Progressing");
                }
                status.set_condition(c);
            } else if deployment_timed_out(d, &status, now) {
                let msg = what(deployment_name, &|s| {
                    format!("{s} has timed out progressing.")
                });
                status.set_condition(Condition::new(
                    "Progressing",
                    "False",
                    util::TIMED_OUT_REASON,
                    msg,
                    now,
                ));
            }
        }
        // ReplicaFailure conditions of the ReplicaSets (the new one first).
        let failure = new_rs
            .into_iter()
            .chain(old.iter())
            .flat_map(|r| r.conditions.iter())
            .find(|c| c["type"] == "ReplicaFailure");
        match failure {
            Some(c) => {
                let s = |f: &str| c.get(f).and_then(Value::as_str).unwrap_or("").to_string();
                status.set_condition(Condition {
                    type_: "ReplicaFailure".into(),
                    status: s("status"),
                    last_update_time: s("lastTransitionTime"),
                    last_transition_time: s("lastTransitionTime"),
                    reason: s("reason"),
                    message: s("message"),
                });
            }
            None => status.remove_condition("ReplicaFailure"),
        }
        if status == d.status {
            self.requeue_stuck(d, &status, now);
            return Ok(());
        }
        self.update_status(d, status).await
    }

    /// `requeueStuckDeployment`: come back when the progress deadline passes.
    fn requeue_stuck(&self, d: &Deployment, status: &util::DeploymentStatus, now: Timestamp) {
        let Some(cur) = d.status.condition("Progressing") else {
            return;
        };
        if !d.has_progress_deadline()
            || deployment_complete(d, status)
            || cur.reason == util::TIMED_OUT_REASON
        {
            return;
        }
        let Ok(updated) = cur.last_update_time.parse::<Timestamp>() else {
            return;
        };
        let deadline = updated
            + jiff::SignedDuration::from_secs(i64::from(d.progress_deadline_seconds.unwrap_or(0)));
        let after = deadline.duration_since(now);
        if after < jiff::SignedDuration::from_secs(1) {
            self.queue.add_rate_limited(d.key());
        } else {
            let wait = Duration::try_from(after).unwrap_or_default() + Duration::from_secs(1);
            self.queue.add_after(d.key(), wait);
        }
    }
}

fn util_rs_resource() -> ApiResource {
    ApiResource {
        group: "apps".into(),
        version: "v1".into(),
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        plural: "replicasets".into(),
    }
}

fn parse_rs_value(v: Value) -> Option<Rs> {
    serde_json::from_value::<DynamicObject>(v)
        .ok()
        .map(|o| Rs::parse(&o))
}

/// Percent-encodes a query value.
fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
