//! The ReplicaSet and ReplicationController controllers (upstream
//! `pkg/controller/replicaset`, which serves both): keep `spec.replicas` pods
//! that match the selector, adopting orphans and releasing pods that no
//! longer match, creating in slow-start batches and deleting the pods that
//! upstream's ranking puts first, and report replicas, fullyLabeledReplicas,
//! readyReplicas, availableReplicas, observedGeneration and the
//! ReplicaFailure condition.
//!
//! Watch-driven: one pod watch feeds both controllers; a pod that becomes
//! Ready requeues its owner when it will become available (minReadySeconds).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::{json, Value};

use crate::util::expectations::Expectations;
use crate::util::informer::{self, Cache, Change};
use crate::util::pods::{
    controller_ref, generate_name_prefix, is_pod_active, is_pod_available, is_pod_ready, labels,
    new_controller_ref, pod_from_template, pod_key, pods_to_delete, until_available, PodName,
};
use crate::util::queue::WorkQueue;
use crate::util::raw::{self, PatchType};
use crate::util::selector::{Labels, Selector};

/// upstream `BurstReplicas`: the most pods created or deleted in one sync.
pub const BURST_REPLICAS: usize = 500;
/// upstream `SlowStartInitialBatchSize`.
const SLOW_START_INITIAL_BATCH: usize = 1;
/// Workers per controller (upstream `--concurrent-replicaset-syncs` is 5).
const WORKERS: usize = 3;
/// Every owner is synced again this often even without events (a safety
/// net for lost events and expired expectations, not a poll).
const RESYNC: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error("{kind} {key} is malformed: {reason}")]
    Malformed {
        kind: &'static str,
        key: String,
        reason: String,
    },
    #[error("{0}")]
    Adoption(String),
    #[error("unable to create pods, no labels")]
    NoLabels,
    #[error("{kind} {key} has no pod template")]
    NoTemplate { kind: &'static str, key: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which of the two kinds a controller serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerKind {
    ReplicaSet,
    ReplicationController,
}

impl OwnerKind {
    pub fn kind(self) -> &'static str {
        match self {
            OwnerKind::ReplicaSet => "ReplicaSet",
            OwnerKind::ReplicationController => "ReplicationController",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            OwnerKind::ReplicaSet => "apps/v1",
            OwnerKind::ReplicationController => "v1",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            OwnerKind::ReplicaSet => "replicasets",
            OwnerKind::ReplicationController => "replicationcontrollers",
        }
    }

    pub fn api_resource(self) -> ApiResource {
        let (group, version) = match self {
            OwnerKind::ReplicaSet => ("apps", "v1"),
            OwnerKind::ReplicationController => ("", "v1"),
        };
        ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: self.api_version().into(),
            kind: self.kind().into(),
            plural: self.plural().into(),
        }
    }
}

/// A ReplicaSet or ReplicationController, the fields this controller reads.
#[derive(Debug, Clone)]
pub struct Owner {
    pub kind: OwnerKind,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub generation: i64,
    pub deleting: bool,
    pub replicas: i32,
    pub min_ready_seconds: i32,
    pub selector: Selector,
    /// The raw pod template (`Null` when an RC has none).
    pub template: Value,
    pub status: Value,
    /// The UID of this owner's own controller (a Deployment), if any.
    pub controller_uid: Option<String>,
}

impl Owner {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn path(&self) -> String {
        format!(
            "{}/{}",
            raw::collection_path(self.kind.api_version(), self.kind.plural(), &self.namespace),
            self.name
        )
    }

    pub fn template_labels(&self) -> Labels {
        self.template
            .pointer("/metadata/labels")
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .unwrap_or_default()
    }

    pub fn parse(kind: OwnerKind, obj: &DynamicObject) -> Result<Owner> {
        let key = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
        let malformed = |reason: String| Error::Malformed {
            kind: kind.kind(),
            key: key.clone(),
            reason,
        };
        let spec = obj.data.get("spec").cloned().unwrap_or(Value::Null);
        let template = spec.get("template").cloned().unwrap_or(Value::Null);
        let selector = match kind {
            OwnerKind::ReplicaSet => {
                let s: LabelSelector = serde_json::from_value(
                    spec.get("selector").cloned().unwrap_or_else(|| json!({})),
                )
                .map_err(|e| malformed(format!("spec.selector: {e}")))?;
                Selector::Label(s)
            }
            OwnerKind::ReplicationController => {
                let set: Labels = match spec.get("selector") {
                    Some(Value::Object(_)) => serde_json::from_value(spec["selector"].clone())
                        .map_err(|e| malformed(format!("spec.selector: {e}")))?,
                    _ => Labels::new(),
                };
                if set.is_empty() {
                    // Defaulting fills it from the template's labels.
                    Selector::Set(
                        template
                            .pointer("/metadata/labels")
                            .and_then(|l| serde_json::from_value(l.clone()).ok())
                            .unwrap_or_default(),
                    )
                } else {
                    Selector::Set(set)
                }
            }
        };
        let int = |v: Option<&Value>, default: i64| v.and_then(Value::as_i64).unwrap_or(default);
        Ok(Owner {
            kind,
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
            uid: obj.metadata.uid.clone().unwrap_or_default(),
            generation: obj.metadata.generation.unwrap_or(0),
            deleting: obj.metadata.deletion_timestamp.is_some(),
            replicas: int(spec.get("replicas"), 1) as i32,
            min_ready_seconds: int(spec.get("minReadySeconds"), 0) as i32,
            selector,
            template,
            status: obj.data.get("status").cloned().unwrap_or_else(|| json!({})),
            controller_uid: obj
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|r| r.controller == Some(true))
                .map(|r| r.uid.clone()),
        })
    }
}

/// The status counters of a ReplicaSet/RC.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplicaStatus {
    pub replicas: i64,
    pub fully_labeled_replicas: i64,
    pub ready_replicas: i64,
    pub available_replicas: i64,
    pub observed_generation: i64,
    pub conditions: Vec<Value>,
}

impl ReplicaStatus {
    pub fn from_json(status: &Value) -> ReplicaStatus {
        let n = |f: &str| status.get(f).and_then(Value::as_i64).unwrap_or(0);
        ReplicaStatus {
            replicas: n("replicas"),
            fully_labeled_replicas: n("fullyLabeledReplicas"),
            ready_replicas: n("readyReplicas"),
            available_replicas: n("availableReplicas"),
            observed_generation: n("observedGeneration"),
            conditions: status
                .get("conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// The status as a merge patch: zero counters are omitted upstream
    /// (`omitempty`), so they are removed here (`replicas` always stays).
    pub fn to_patch(&self) -> Value {
        let opt = |n: i64| if n == 0 { Value::Null } else { json!(n) };
        json!({"status": {
            "replicas": self.replicas,
            "fullyLabeledReplicas": opt(self.fully_labeled_replicas),
            "readyReplicas": opt(self.ready_replicas),
            "availableReplicas": opt(self.available_replicas),
            "observedGeneration": opt(self.observed_generation),
            "conditions": if self.conditions.is_empty() { Value::Null } else { json!(self.conditions) },
        }})
    }
}

fn now_string(now: Timestamp) -> String {
    now.round(jiff::Unit::Second)
        .unwrap_or(now)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// `calculateStatus`: counts over the owner's active pods, and the
/// ReplicaFailure condition set on a create/delete error, removed after a
/// clean sync.
pub fn calculate_status(
    owner: &Owner,
    pods: &[Arc<Pod>],
    manage_error: Option<&str>,
    now: Timestamp,
) -> ReplicaStatus {
    let mut status = ReplicaStatus::from_json(&owner.status);
    let template_labels = owner.template_labels();
    let mut fully = 0;
    let mut ready = 0;
    let mut available = 0;
    for pod in pods {
        let pl = labels(&pod.metadata);
        if template_labels.iter().all(|(k, v)| pl.get(k) == Some(v)) {
            fully += 1;
        }
        if is_pod_ready(pod) {
            ready += 1;
            if is_pod_available(pod, owner.min_ready_seconds, now) {
                available += 1;
            }
        }
    }
    let has_failure = status
        .conditions
        .iter()
        .any(|c| c["type"] == "ReplicaFailure");
    match manage_error {
        Some(message) if !has_failure => {
            let diff = pods.len() as i64 - i64::from(owner.replicas);
            let reason = if diff < 0 {
                "FailedCreate"
            } else if diff > 0 {
                "FailedDelete"
            } else {
                ""
            };
            status.conditions.push(json!({
                "type": "ReplicaFailure",
                "status": "True",
                "lastTransitionTime": now_string(now),
                "reason": reason,
                "message": message,
            }));
        }
        None if has_failure => status.conditions.retain(|c| c["type"] != "ReplicaFailure"),
        _ => {}
    }
    status.replicas = pods.len() as i64;
    status.fully_labeled_replicas = fully;
    status.ready_replicas = ready;
    status.available_replicas = available;
    status.observed_generation = owner.generation;
    status
}

struct Controller {
    client: kube::Client,
    kind: OwnerKind,
    owners: Cache<DynamicObject>,
    pods: Cache<Pod>,
    queue: WorkQueue<String>,
    expectations: Expectations,
}

/// The watch-fed caches the workload controllers share.
#[derive(Clone, Default)]
pub struct Caches {
    pub pods: Cache<Pod>,
    pub replicasets: Cache<DynamicObject>,
    pub replication_controllers: Cache<DynamicObject>,
}

/// Another controller that wants the pod and ReplicaSet changes these
/// controllers watch (the Deployment controller).
pub trait Listener: Send + Sync {
    fn on_pod(&self, change: &Change<Pod>);
    fn on_replicaset(&self, change: &Change<DynamicObject>);
}

/// Runs the ReplicaSet and ReplicationController controllers until
/// `shutdown` resolves.
pub async fn run(client: kube::Client, shutdown: impl Future<Output = ()>) {
    run_with(client, Caches::default(), None, shutdown).await
}

/// [`run`] with caches shared with, and changes passed on to, `listener`.
pub async fn run_with(
    client: kube::Client,
    caches: Caches,
    listener: Option<Arc<dyn Listener>>,
    shutdown: impl Future<Output = ()>,
) {
    let pods = caches.pods.clone();
    let controllers: Vec<Arc<Controller>> = [
        (OwnerKind::ReplicaSet, caches.replicasets.clone()),
        (
            OwnerKind::ReplicationController,
            caches.replication_controllers.clone(),
        ),
    ]
    .into_iter()
    .map(|(kind, owners)| {
        Arc::new(Controller {
            client: client.clone(),
            kind,
            owners,
            pods: pods.clone(),
            queue: WorkQueue::new(),
            expectations: Expectations::new(),
        })
    })
    .collect();
    let mut tasks = tokio::task::JoinSet::new();
    {
        let controllers = controllers.clone();
        let listener = listener.clone();
        tasks.spawn(informer::run(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default(),
            pods.clone(),
            move |change| {
                for c in &controllers {
                    c.on_pod(&change);
                }
                if let Some(l) = &listener {
                    l.on_pod(&change);
                }
            },
        ));
    }
    for c in &controllers {
        let ar = c.kind.api_resource();
        let api = Api::<DynamicObject>::all_with(client.clone(), &ar);
        let handler = c.clone();
        let listener = if c.kind == OwnerKind::ReplicaSet {
            listener.clone()
        } else {
            None
        };
        tasks.spawn(informer::run(
            api,
            watcher::Config::default(),
            c.owners.clone(),
            move |change| {
                if let Some(l) = &listener {
                    l.on_replicaset(&change);
                }
                handler.on_owner(change);
            },
        ));
        for _ in 0..WORKERS {
            let c = c.clone();
            tasks.spawn(async move { c.work().await });
        }
        let c = c.clone();
        tasks.spawn(async move {
            loop {
                tokio::time::sleep(RESYNC).await;
                c.enqueue_all();
            }
        });
    }
    shutdown.await;
    for c in &controllers {
        c.queue.shut_down();
    }
    tasks.shutdown().await;
}

impl Controller {
    fn enqueue_all(&self) {
        for o in self.owners.list() {
            self.queue.add(format!(
                "{}/{}",
                o.namespace().unwrap_or_default(),
                o.name_any()
            ));
        }
    }

    fn on_owner(&self, change: Change<DynamicObject>) {
        match change {
            Change::Added(o) | Change::Updated { new: o, .. } => {
                self.queue.add(format!(
                    "{}/{}",
                    o.namespace().unwrap_or_default(),
                    o.name_any()
                ));
            }
            Change::Deleted(o) => {
                let key = format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any());
                self.expectations.delete(&key);
                self.queue.add(key);
            }
            Change::Synced => self.enqueue_all(),
        }
    }

    /// The owner a controller reference points to, if it is one of ours and
    /// still the same object.
    fn resolve(&self, namespace: &str, pod: &Pod) -> Option<Owner> {
        let r = controller_ref(&pod.metadata)?;
        self.resolve_ref(namespace, r)
    }

    fn resolve_ref(
        &self,
        namespace: &str,
        r: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    ) -> Option<Owner> {
        if r.kind != self.kind.kind() {
            return None;
        }
        let obj = self.owners.get(namespace, &r.name)?;
        if obj.metadata.uid.as_deref() != Some(r.uid.as_str()) {
            return None;
        }
        Owner::parse(self.kind, &obj).ok()
    }

    /// The owners whose selector matches an orphan pod.
    fn matching_owners(&self, pod: &Pod) -> Vec<Owner> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let pl = labels(&pod.metadata);
        self.owners
            .list_namespace(ns)
            .iter()
            .filter_map(|o| Owner::parse(self.kind, o).ok())
            .filter(|o| o.selector.matches(&pl))
            .collect()
    }

    fn pod_gone(&self, pod: &Pod) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        if let Some(owner) = self.resolve(ns, pod) {
            let key = owner.key();
            self.expectations.deletion_observed(&key, &pod_key(pod));
            self.queue.add(key);
        }
    }

    fn on_pod(&self, change: &Change<Pod>) {
        match change {
            Change::Added(pod) => {
                if pod.metadata.deletion_timestamp.is_some() {
                    self.pod_gone(pod);
                    return;
                }
                let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
                if controller_ref(&pod.metadata).is_some() {
                    if let Some(owner) = self.resolve(ns, pod) {
                        let key = owner.key();
                        self.expectations.creation_observed(&key);
                        self.queue.add(key);
                    }
                    return;
                }
                for o in self.matching_owners(pod) {
                    self.queue.add(o.key());
                }
            }
            Change::Updated { old, new } => {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return;
                }
                let label_changed = old.metadata.labels != new.metadata.labels;
                if new.metadata.deletion_timestamp.is_some() {
                    self.pod_gone(new);
                    if label_changed {
                        self.pod_gone(old);
                    }
                    return;
                }
                let ns = new.metadata.namespace.as_deref().unwrap_or_default();
                let cur_ref = controller_ref(&new.metadata);
                let old_ref = controller_ref(&old.metadata);
                let ref_changed = cur_ref != old_ref;
                if ref_changed {
                    if let Some(o) = old_ref.and_then(|r| self.resolve_ref(ns, r)) {
                        self.queue.add(o.key());
                    }
                }
                if let Some(r) = cur_ref {
                    if let Some(o) = self.resolve_ref(ns, r) {
                        self.queue.add(o.key());
                        if !is_pod_ready(old) && is_pod_ready(new) && o.min_ready_seconds > 0 {
                            self.queue.add_after(
                                o.key(),
                                Duration::from_secs(o.min_ready_seconds as u64)
                                    + Duration::from_millis(100),
                            );
                        }
                    }
                    return;
                }
                if label_changed || ref_changed {
                    for o in self.matching_owners(new) {
                        self.queue.add(o.key());
                    }
                }
            }
            Change::Deleted(pod) => self.pod_gone(pod),
            Change::Synced => self.enqueue_all(),
        }
    }

    async fn work(&self) {
        self.owners.wait_ready().await;
        self.pods.wait_ready().await;
        while let Some(key) = self.queue.next().await {
            match self.sync(&key).await {
                Ok(()) => self.queue.forget(&key),
                Err(e) => {
                    tracing::warn!(kind = self.kind.kind(), key, error = %e, "sync failed; retrying");
                    self.queue.add_rate_limited(key.clone());
                }
            }
            self.queue.done(&key);
        }
    }

    async fn sync(&self, key: &str) -> Result<()> {
        let Some((ns, name)) = key.split_once('/') else {
            return Ok(());
        };
        let Some(obj) = self.owners.get(ns, name) else {
            self.expectations.delete(key);
            return Ok(());
        };
        let owner = Owner::parse(self.kind, &obj)?;
        let needs_sync = self.expectations.satisfied(key);
        let active: Vec<Arc<Pod>> = self
            .pods
            .list_namespace(ns)
            .into_iter()
            .filter(|p| is_pod_active(p))
            .collect();
        let (claimed, claim_error) = self.claim_pods(&owner, active).await;
        let mut manage_error = None;
        if needs_sync && !owner.deleting {
            if let Err(e) = self.manage_replicas(&owner, &claimed).await {
                manage_error = Some(e);
            }
        }
        let now = Timestamp::now();
        let message = manage_error.as_ref().map(|e| match e {
            Error::Api(e) => raw::message(e),
            other => other.to_string(),
        });
        let status = calculate_status(&owner, &claimed, message.as_deref(), now);
        let current = ReplicaStatus::from_json(&owner.status);
        if status != current {
            let path = format!("{}/status", owner.path());
            match raw::patch(&self.client, &path, PatchType::Merge, &status.to_patch()).await {
                Ok(_) => {}
                Err(e) if raw::is_not_found(&e) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        // Come back when the next Ready pod becomes available.
        if manage_error.is_none() && owner.min_ready_seconds > 0 {
            if let Some(wait) = claimed
                .iter()
                .filter_map(|p| until_available(p, owner.min_ready_seconds, now))
                .min()
            {
                self.queue
                    .add_after(key.to_string(), wait + Duration::from_millis(100));
            }
        }
        if let Some(e) = manage_error {
            return Err(e);
        }
        if let Some(e) = claim_error {
            return Err(e);
        }
        Ok(())
    }

    /// `ClaimPods`: the active pods this owner controls after adopting
    /// matching orphans and releasing owned pods that no longer match.
    async fn claim_pods(
        &self,
        owner: &Owner,
        pods: Vec<Arc<Pod>>,
    ) -> (Vec<Arc<Pod>>, Option<Error>) {
        let mut claimed = Vec::new();
        let mut error = None;
        let mut adoption_checked: Option<Result<(), String>> = None;
        for pod in pods {
            let pl = labels(&pod.metadata);
            let matches = owner.selector.matches(&pl);
            match controller_ref(&pod.metadata) {
                Some(r) if r.uid == owner.uid => {
                    if matches {
                        claimed.push(pod);
                    } else if !owner.deleting {
                        if let Err(e) = self.release(owner, &pod).await {
                            error = Some(e);
                        }
                    }
                }
                Some(_) => {}
                None => {
                    if owner.deleting || !matches || pod.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    if adoption_checked.is_none() {
                        adoption_checked = Some(self.can_adopt(owner).await);
                    }
                    if let Some(Err(reason)) = &adoption_checked {
                        error = Some(Error::Adoption(reason.clone()));
                        continue;
                    }
                    match self.adopt(owner, &pod).await {
                        Ok(true) => claimed.push(pod),
                        Ok(false) => {}
                        Err(e) => error = Some(e),
                    }
                }
            }
        }
        (claimed, error)
    }

    /// `RecheckDeletionTimestamp`: a fresh read, so a deleted-and-recreated
    /// owner adopts nothing meant for its predecessor.
    async fn can_adopt(&self, owner: &Owner) -> Result<(), String> {
        let fresh = raw::get(&self.client, &owner.path())
            .await
            .map_err(|e| e.to_string())?;
        let uid = fresh
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("");
        if uid != owner.uid {
            return Err(format!(
                "original {} {} is gone: got uid {uid}, wanted {}",
                owner.kind.kind(),
                owner.key(),
                owner.uid
            ));
        }
        if let Some(ts) = fresh.pointer("/metadata/deletionTimestamp") {
            return Err(format!(
                "{} {} has just been deleted at {ts}",
                owner.kind.kind(),
                owner.key()
            ));
        }
        Ok(())
    }

    fn pod_path(pod: &Pod) -> String {
        format!(
            "{}/{}",
            raw::collection_path(
                "v1",
                "pods",
                pod.metadata.namespace.as_deref().unwrap_or_default()
            ),
            pod.metadata.name.as_deref().unwrap_or_default()
        )
    }

    async fn adopt(&self, owner: &Owner, pod: &Pod) -> Result<bool> {
        let patch = json!({"metadata": {
            "ownerReferences": [new_controller_ref(owner.kind.api_version(), owner.kind.kind(), &owner.name, &owner.uid)],
            "uid": pod.metadata.uid,
        }});
        match raw::patch(
            &self.client,
            &Self::pod_path(pod),
            PatchType::Strategic,
            &patch,
        )
        .await
        {
            Ok(_) => {
                tracing::info!(kind = owner.kind.kind(), owner = %owner.key(), pod = %pod_key(pod), "adopted pod");
                Ok(true)
            }
            Err(e) if raw::is_not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn release(&self, owner: &Owner, pod: &Pod) -> Result<()> {
        let patch = json!({"metadata": {
            "ownerReferences": [{"$patch": "delete", "uid": owner.uid}],
            "uid": pod.metadata.uid,
        }});
        match raw::patch(
            &self.client,
            &Self::pod_path(pod),
            PatchType::Strategic,
            &patch,
        )
        .await
        {
            Ok(_) => {
                tracing::info!(kind = owner.kind.kind(), owner = %owner.key(), pod = %pod_key(pod), "released pod");
                Ok(())
            }
            // Gone, or already changed so that the patch no longer applies.
            Err(e) if raw::is_not_found(&e) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 422 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The active pods of this owner's siblings (owners with the same
    /// controller), for the doubled-up ranking.
    fn related_pods(&self, owner: &Owner, own: &[Arc<Pod>]) -> Vec<Arc<Pod>> {
        let Some(parent) = &owner.controller_uid else {
            return own.to_vec();
        };
        let sibling_uids: Vec<String> = self
            .owners
            .list_namespace(&owner.namespace)
            .iter()
            .filter_map(|o| Owner::parse(self.kind, o).ok())
            .filter(|o| o.controller_uid.as_ref() == Some(parent))
            .map(|o| o.uid)
            .collect();
        self.pods
            .list_namespace(&owner.namespace)
            .into_iter()
            .filter(|p| controller_ref(&p.metadata).is_some_and(|r| sibling_uids.contains(&r.uid)))
            .collect()
    }

    async fn manage_replicas(&self, owner: &Owner, pods: &[Arc<Pod>]) -> Result<()> {
        let key = owner.key();
        let diff = pods.len() as i64 - i64::from(owner.replicas);
        if diff < 0 {
            let count = ((-diff) as usize).min(BURST_REPLICAS);
            if owner.template.is_null() {
                return Err(Error::NoTemplate {
                    kind: owner.kind.kind(),
                    key,
                });
            }
            self.expectations.expect_creations(&key, count);
            tracing::debug!(kind = owner.kind.kind(), owner = %key, need = owner.replicas, creating = count, "too few replicas");
            let (created, result) = self.slow_start_create(owner, count).await;
            for _ in created..count {
                self.expectations.creation_observed(&key);
            }
            result
        } else if diff > 0 {
            let count = (diff as usize).min(BURST_REPLICAS);
            let related = self.related_pods(owner, pods);
            let own: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
            let rel: Vec<&Pod> = related.iter().map(|p| p.as_ref()).collect();
            let victims = pods_to_delete(&own, &rel, count, Timestamp::now());
            self.expectations
                .expect_deletions(&key, victims.iter().map(|p| pod_key(p)));
            tracing::debug!(kind = owner.kind.kind(), owner = %key, need = owner.replicas, deleting = count, "too many replicas");
            let results = join_all(victims.iter().map(|pod| async move {
                let r = raw::delete(&self.client, &Self::pod_path(pod), None).await;
                (pod, r)
            }))
            .await;
            let mut first_error = None;
            for (pod, r) in results {
                if let Err(e) = r {
                    self.expectations.deletion_observed(&key, &pod_key(pod));
                    if !raw::is_not_found(&e) && first_error.is_none() {
                        first_error = Some(e.into());
                    }
                }
            }
            first_error.map_or(Ok(()), Err)
        } else {
            Ok(())
        }
    }

    /// `slowStartBatch`: batches of 1, 2, 4, ... pods; stops at the first
    /// batch with an error. Returns how many were created.
    async fn slow_start_create(&self, owner: &Owner, count: usize) -> (usize, Result<()>) {
        let template_labels = owner.template_labels();
        if template_labels.is_empty() {
            return (0, Err(Error::NoLabels));
        }
        let controller = new_controller_ref(
            owner.kind.api_version(),
            owner.kind.kind(),
            &owner.name,
            &owner.uid,
        );
        let pod = pod_from_template(
            &owner.template,
            controller,
            PodName::Generate(&generate_name_prefix(&owner.name)),
        );
        let collection = raw::collection_path("v1", "pods", &owner.namespace);
        let mut remaining = count;
        let mut batch = remaining.min(SLOW_START_INITIAL_BATCH);
        let mut created = 0;
        while batch > 0 {
            let results =
                join_all((0..batch).map(|_| raw::create(&self.client, &collection, &pod))).await;
            let mut first_error = None;
            for r in results {
                match r {
                    Ok(_) => created += 1,
                    // Creating in a terminating namespace is not an error.
                    Err(e) if raw::is_namespace_terminating(&e) => {}
                    Err(e) => {
                        if first_error.is_none() {
                            first_error = Some(e);
                        }
                    }
                }
            }
            if let Some(e) = first_error {
                tracing::warn!(kind = owner.kind.kind(), owner = %owner.key(), error = %e, "failed to create pod");
                return (created, Err(e.into()));
            }
            remaining -= batch;
            batch = remaining.min(2 * batch);
        }
        (created, Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(replicas: i64, min_ready: i64) -> Owner {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "generation": 3},
            "spec": {"replicas": replicas, "minReadySeconds": min_ready,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]}}},
            "status": {"replicas": 0}
        }))
        .unwrap();
        Owner::parse(OwnerKind::ReplicaSet, &obj).unwrap()
    }

    fn pod(name: &str, labels: Value, ready_secs_ago: Option<i64>, now: Timestamp) -> Arc<Pod> {
        let conditions: Vec<Value> = ready_secs_ago
            .map(|s| {
                json!({"type": "Ready", "status": "True",
                "lastTransitionTime": (now - jiff::SignedDuration::from_secs(s)).to_string()})
            })
            .into_iter()
            .collect();
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns", "labels": labels},
                "status": {"phase": "Running", "conditions": conditions}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn status_counts_labels_readiness_and_availability() {
        let now = Timestamp::now();
        let owner = rs(3, 10);
        let pods = vec![
            pod("a", json!({"app": "web", "tier": "fe"}), Some(60), now),
            pod("b", json!({"app": "web"}), Some(2), now),
            pod("c", json!({"app": "web", "tier": "fe"}), None, now),
        ];
        let s = calculate_status(&owner, &pods, None, now);
        assert_eq!(
            (
                s.replicas,
                s.fully_labeled_replicas,
                s.ready_replicas,
                s.available_replicas
            ),
            (3, 2, 2, 1)
        );
        assert_eq!(s.observed_generation, 3);
        assert!(s.conditions.is_empty());
        let patch = s.to_patch();
        assert_eq!(patch["status"]["availableReplicas"], 1);
    }

    #[test]
    fn replica_failure_condition_is_set_then_cleared() {
        let now = Timestamp::now();
        let mut owner = rs(2, 0);
        let s = calculate_status(&owner, &[], Some("pods \"x\" is forbidden: quota"), now);
        assert_eq!(s.conditions.len(), 1);
        assert_eq!(s.conditions[0]["reason"], "FailedCreate");
        assert_eq!(s.conditions[0]["message"], "pods \"x\" is forbidden: quota");
        owner.status = s.to_patch()["status"].clone();
        let again = calculate_status(&owner, &[], Some("other"), now);
        assert_eq!(
            again.conditions[0]["message"], "pods \"x\" is forbidden: quota",
            "kept while it persists"
        );
        let cleared = calculate_status(&owner, &[], None, now);
        assert!(cleared.conditions.is_empty());
        // Zero counters are removed from the stored status.
        assert!(cleared.to_patch()["status"]["readyReplicas"].is_null());
        assert_eq!(cleared.to_patch()["status"]["replicas"], 0);
    }

    #[test]
    fn replication_controllers_select_by_map() {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ReplicationController",
            "metadata": {"name": "rc", "namespace": "ns", "uid": "u2"},
            "spec": {"template": {"metadata": {"labels": {"app": "x"}}, "spec": {}}}
        }))
        .unwrap();
        let o = Owner::parse(OwnerKind::ReplicationController, &obj).unwrap();
        assert_eq!(o.replicas, 1);
        let l: Labels = [("app".to_string(), "x".to_string())].into();
        assert!(o.selector.matches(&l));
        assert!(!o.selector.matches(&Labels::new()));
    }
}
