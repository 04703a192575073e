//! The pure part of the Deployment controller (upstream
//! `pkg/controller/deployment/util`): the parsed views of Deployments and
//! ReplicaSets, surge/unavailable math, revisions and their annotations,
//! proportional scaling, status and conditions.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::DynamicObject;
use kube::ResourceExt;
use serde_json::{json, Value};

pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
pub const ROLLBACK_TO_ANNOTATION: &str = "deprecated.deployment.rollback.to";
/// upstream `maxRevHistoryLengthInChars`.
pub const MAX_REV_HISTORY_LENGTH: usize = 2000;

pub const NEW_RS_REASON: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS_REASON: &str = "FoundNewReplicaSet";
pub const RS_UPDATED_REASON: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE_REASON: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT_REASON: &str = "ProgressDeadlineExceeded";
pub const PAUSED_REASON: &str = "DeploymentPaused";
pub const RESUMED_REASON: &str = "DeploymentResumed";
pub const FAILED_RS_CREATE_REASON: &str = "ReplicaSetCreateError";
pub const MIN_AVAILABLE_REASON: &str = "MinimumReplicasAvailable";
pub const MIN_UNAVAILABLE_REASON: &str = "MinimumReplicasUnavailable";

/// A ReplicaSet as the Deployment controller reads it.
#[derive(Debug, Clone)]
pub struct Rs {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub created: Option<Timestamp>,
    pub generation: i64,
    pub deleting: bool,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub controller_uid: Option<String>,
    pub replicas: i32,
    pub min_ready_seconds: i32,
    pub template: Value,
    pub status_replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    pub observed_generation: i64,
    pub conditions: Vec<Value>,
}

fn int(v: Option<&Value>, default: i64) -> i64 {
    v.and_then(Value::as_i64).unwrap_or(default)
}

impl Rs {
    pub fn parse(obj: &DynamicObject) -> Rs {
        let spec = obj.data.get("spec").cloned().unwrap_or(Value::Null);
        let status = obj.data.get("status").cloned().unwrap_or(Value::Null);
        let cref = obj
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true));
        Rs {
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
            uid: obj.metadata.uid.clone().unwrap_or_default(),
            created: obj.metadata.creation_timestamp.as_ref().map(|t| t.0),
            generation: obj.metadata.generation.unwrap_or(0),
            deleting: obj.metadata.deletion_timestamp.is_some(),
            labels: obj.metadata.labels.clone().unwrap_or_default(),
            annotations: obj.metadata.annotations.clone().unwrap_or_default(),
            controller_uid: cref.map(|r| r.uid.clone()),
            replicas: int(spec.get("replicas"), 1) as i32,
            min_ready_seconds: int(spec.get("minReadySeconds"), 0) as i32,
            template: spec.get("template").cloned().unwrap_or(Value::Null),
            status_replicas: int(status.get("replicas"), 0) as i32,
            ready_replicas: int(status.get("readyReplicas"), 0) as i32,
            available_replicas: int(status.get("availableReplicas"), 0) as i32,
            observed_generation: int(status.get("observedGeneration"), 0),
            conditions: status
                .get("conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// `Revision(rs)`: 0 when absent, an error text when malformed.
    pub fn revision(&self) -> Result<i64, String> {
        match self.annotations.get(REVISION_ANNOTATION) {
            None => Ok(0),
            Some(v) => v.parse().map_err(|e| format!("{v:?}: {e}")),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    Recreate,
    RollingUpdate {
        max_surge: IntOrString,
        max_unavailable: IntOrString,
    },
}

/// A Deployment condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub type_: String,
    pub status: String,
    pub last_update_time: String,
    pub last_transition_time: String,
    pub reason: String,
    pub message: String,
}

impl Condition {
    pub fn new(type_: &str, status: &str, reason: &str, message: String, now: Timestamp) -> Self {
        let t = time_string(now);
        Condition {
            type_: type_.into(),
            status: status.into(),
            last_update_time: t.clone(),
            last_transition_time: t,
            reason: reason.into(),
            message,
        }
    }

    fn from_json(v: &Value) -> Condition {
        let s = |f: &str| v.get(f).and_then(Value::as_str).unwrap_or("").to_string();
        Condition {
            type_: s("type"),
            status: s("status"),
            last_update_time: s("lastUpdateTime"),
            last_transition_time: s("lastTransitionTime"),
            reason: s("reason"),
            message: s("message"),
        }
    }

    fn to_json(&self) -> Value {
        let mut o = json!({"type": self.type_, "status": self.status});
        let m = o.as_object_mut().expect("an object literal");
        for (k, v) in [
            ("lastUpdateTime", &self.last_update_time),
            ("lastTransitionTime", &self.last_transition_time),
            ("reason", &self.reason),
            ("message", &self.message),
        ] {
            if !v.is_empty() {
                m.insert(k.into(), json!(v));
            }
        }
        o
    }

    fn last_update(&self) -> Option<Timestamp> {
        self.last_update_time.parse().ok()
    }
}

/// metav1.Time's wire form: RFC 3339 in whole seconds, UTC.
pub fn time_string(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeploymentStatus {
    pub observed_generation: i64,
    pub replicas: i32,
    pub updated_replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    pub unavailable_replicas: i32,
    pub collision_count: Option<i32>,
    pub conditions: Vec<Condition>,
}

impl DeploymentStatus {
    pub fn from_json(v: &Value) -> Self {
        let n = |f: &str| int(v.get(f), 0) as i32;
        DeploymentStatus {
            observed_generation: int(v.get("observedGeneration"), 0),
            replicas: n("replicas"),
            updated_replicas: n("updatedReplicas"),
            ready_replicas: n("readyReplicas"),
            available_replicas: n("availableReplicas"),
            unavailable_replicas: n("unavailableReplicas"),
            collision_count: v
                .get("collisionCount")
                .and_then(Value::as_i64)
                .map(|c| c as i32),
            conditions: v
                .get("conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(Condition::from_json)
                .collect(),
        }
    }

    /// The status as a merge patch; zero counters are removed, as upstream
    /// omits them.
    pub fn to_patch(&self) -> Value {
        let opt = |n: i64| if n == 0 { Value::Null } else { json!(n) };
        json!({"status": {
            "observedGeneration": opt(self.observed_generation),
            "replicas": opt(self.replicas.into()),
            "updatedReplicas": opt(self.updated_replicas.into()),
            "readyReplicas": opt(self.ready_replicas.into()),
            "availableReplicas": opt(self.available_replicas.into()),
            "unavailableReplicas": opt(self.unavailable_replicas.into()),
            "collisionCount": self.collision_count,
            "conditions": if self.conditions.is_empty() { Value::Null }
                else { Value::Array(self.conditions.iter().map(Condition::to_json).collect()) },
        }})
    }

    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// `SetDeploymentCondition`: no change when status and reason are the
    /// same; keeps the transition time when only the reason changes.
    pub fn set_condition(&mut self, mut c: Condition) {
        if let Some(cur) = self.condition(&c.type_) {
            if cur.status == c.status && cur.reason == c.reason {
                return;
            }
            if cur.status == c.status {
                c.last_transition_time = cur.last_transition_time.clone();
            }
        }
        self.conditions.retain(|x| x.type_ != c.type_);
        self.conditions.push(c);
    }

    pub fn remove_condition(&mut self, type_: &str) {
        self.conditions.retain(|x| x.type_ != type_);
    }
}

/// A Deployment as its controller reads it.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub generation: i64,
    pub deleting: bool,
    pub annotations: BTreeMap<String, String>,
    pub replicas: i32,
    pub selector: LabelSelector,
    pub template: Value,
    pub strategy: Strategy,
    pub min_ready_seconds: i32,
    pub revision_history_limit: Option<i32>,
    pub progress_deadline_seconds: Option<i32>,
    pub paused: bool,
    pub status: DeploymentStatus,
}

fn int_or_string(v: Option<&Value>, default: &str) -> IntOrString {
    match v {
        Some(Value::Number(n)) => IntOrString::Int(n.as_i64().unwrap_or(0) as i32),
        Some(Value::String(s)) => IntOrString::String(s.clone()),
        _ => IntOrString::String(default.into()),
    }
}

impl Deployment {
    pub fn parse(obj: &DynamicObject) -> Result<Deployment, String> {
        let spec = obj.data.get("spec").cloned().unwrap_or(Value::Null);
        let selector: LabelSelector =
            serde_json::from_value(spec.get("selector").cloned().unwrap_or_else(|| json!({})))
                .map_err(|e| format!("spec.selector: {e}"))?;
        let strategy = match spec.pointer("/strategy/type").and_then(Value::as_str) {
            Some("Recreate") => Strategy::Recreate,
            _ => Strategy::RollingUpdate {
                max_surge: int_or_string(spec.pointer("/strategy/rollingUpdate/maxSurge"), "25%"),
                max_unavailable: int_or_string(
                    spec.pointer("/strategy/rollingUpdate/maxUnavailable"),
                    "25%",
                ),
            },
        };
        let opt = |f: &str| spec.get(f).and_then(Value::as_i64).map(|v| v as i32);
        Ok(Deployment {
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
            uid: obj.metadata.uid.clone().unwrap_or_default(),
            generation: obj.metadata.generation.unwrap_or(0),
            deleting: obj.metadata.deletion_timestamp.is_some(),
            annotations: obj.metadata.annotations.clone().unwrap_or_default(),
            replicas: opt("replicas").unwrap_or(1),
            selector,
            template: spec.get("template").cloned().unwrap_or(Value::Null),
            strategy,
            min_ready_seconds: opt("minReadySeconds").unwrap_or(0),
            revision_history_limit: opt("revisionHistoryLimit"),
            progress_deadline_seconds: opt("progressDeadlineSeconds"),
            paused: spec.get("paused").and_then(Value::as_bool).unwrap_or(false),
            status: DeploymentStatus::from_json(obj.data.get("status").unwrap_or(&Value::Null)),
        })
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// `HasProgressDeadline`.
    pub fn has_progress_deadline(&self) -> bool {
        self.progress_deadline_seconds
            .is_some_and(|s| s != i32::MAX)
    }

    /// `HasRevisionHistoryLimit`.
    pub fn revision_history_limit(&self) -> Option<i32> {
        self.revision_history_limit.filter(|l| *l != i32::MAX)
    }

    pub fn is_rolling_update(&self) -> bool {
        matches!(self.strategy, Strategy::RollingUpdate { .. })
    }

    /// `MaxSurge`.
    pub fn max_surge(&self) -> i32 {
        match &self.strategy {
            Strategy::RollingUpdate {
                max_surge,
                max_unavailable,
            } => resolve_fenceposts(max_surge, max_unavailable, self.replicas).0,
            Strategy::Recreate => 0,
        }
    }

    /// `MaxUnavailable`.
    pub fn max_unavailable(&self) -> i32 {
        match &self.strategy {
            Strategy::RollingUpdate {
                max_surge,
                max_unavailable,
            } if self.replicas > 0 => resolve_fenceposts(max_surge, max_unavailable, self.replicas)
                .1
                .min(self.replicas),
            _ => 0,
        }
    }
}

/// `GetScaledValueFromIntOrPercent`: percentages of `total`, rounded up or
/// down; a malformed string counts as 0.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> i32 {
    match v {
        IntOrString::Int(i) => *i,
        IntOrString::String(s) => {
            let Some(p) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return 0;
            };
            let x = p as f64 * f64::from(total) / 100.0;
            if round_up {
                x.ceil() as i32
            } else {
                x.floor() as i32
            }
        }
    }
}

/// `ResolveFenceposts`: maxSurge rounds up, maxUnavailable down; both zero
/// means one unavailable pod is allowed.
pub fn resolve_fenceposts(
    max_surge: &IntOrString,
    max_unavailable: &IntOrString,
    desired: i32,
) -> (i32, i32) {
    let surge = scaled_value(max_surge, desired, true);
    let mut unavailable = scaled_value(max_unavailable, desired, false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

pub fn spec_replicas(rss: &[&Rs]) -> i32 {
    rss.iter().map(|r| r.replicas).sum()
}

pub fn actual_replicas(rss: &[&Rs]) -> i32 {
    rss.iter().map(|r| r.status_replicas).sum()
}

pub fn ready_replicas(rss: &[&Rs]) -> i32 {
    rss.iter().map(|r| r.ready_replicas).sum()
}

pub fn available_replicas(rss: &[&Rs]) -> i32 {
    rss.iter().map(|r| r.available_replicas).sum()
}

/// `NewRSNewReplicas`: how big the new ReplicaSet may be now.
pub fn new_rs_new_replicas(d: &Deployment, all: &[&Rs], new_rs_replicas: i32) -> i32 {
    match &d.strategy {
        Strategy::RollingUpdate { max_surge, .. } => {
            let surge = scaled_value(max_surge, d.replicas, true);
            let current = spec_replicas(all);
            let max_total = d.replicas + surge;
            if current >= max_total {
                return new_rs_replicas;
            }
            let up = (max_total - current).min(d.replicas - new_rs_replicas);
            new_rs_replicas + up
        }
        Strategy::Recreate => d.replicas,
    }
}

/// `ReplicaSetsByCreationTimestamp`: oldest first, then by name.
pub fn by_creation(a: &Rs, b: &Rs) -> Ordering {
    match (a.created, b.created) {
        (x, y) if x == y => a.name.cmp(&b.name),
        (x, y) => x.cmp(&y),
    }
}

/// `ReplicaSetsBySizeOlder`: larger first, older first among equals.
pub fn by_size_older(a: &Rs, b: &Rs) -> Ordering {
    b.replicas.cmp(&a.replicas).then_with(|| by_creation(a, b))
}

/// `ReplicaSetsBySizeNewer`: larger first, newer first among equals.
pub fn by_size_newer(a: &Rs, b: &Rs) -> Ordering {
    b.replicas.cmp(&a.replicas).then_with(|| by_creation(b, a))
}

/// `ReplicaSetsByRevision`: lowest revision first, then by creation.
pub fn by_revision(a: &Rs, b: &Rs) -> Ordering {
    let ra = a.revision().unwrap_or(0);
    let rb = b.revision().unwrap_or(0);
    ra.cmp(&rb).then_with(|| by_creation(a, b))
}

pub fn max_revision(rss: &[&Rs]) -> i64 {
    rss.iter()
        .filter_map(|r| r.revision().ok())
        .max()
        .unwrap_or(0)
}

fn annotation_int(rs: &Rs, key: &str) -> Option<i32> {
    rs.annotations.get(key)?.parse().ok()
}

/// `IsSaturated`.
pub fn is_saturated(d: &Deployment, rs: Option<&Rs>) -> bool {
    let Some(rs) = rs else { return false };
    let Some(desired) = annotation_int(rs, DESIRED_REPLICAS_ANNOTATION) else {
        return false;
    };
    rs.replicas == d.replicas && desired == d.replicas && rs.available_replicas == d.replicas
}

/// `ReplicasAnnotationsNeedUpdate`.
pub fn replicas_annotations_need_update(rs: &Rs, desired: i32, max: i32) -> bool {
    rs.annotations.get(DESIRED_REPLICAS_ANNOTATION) != Some(&desired.to_string())
        || rs.annotations.get(MAX_REPLICAS_ANNOTATION) != Some(&max.to_string())
}

/// `getReplicaSetFraction`.
fn replica_set_fraction(rs: &Rs, d: &Deployment) -> i32 {
    if d.replicas == 0 {
        return -rs.replicas;
    }
    let max = d.replicas + d.max_surge();
    let before = match annotation_int(rs, MAX_REPLICAS_ANNOTATION) {
        Some(m) if m != 0 => m,
        _ => {
            if d.status.replicas == 0 {
                return 0;
            }
            d.status.replicas
        }
    };
    let size = f64::from(rs.replicas) * f64::from(max) / f64::from(before);
    round_to_i32(size) - rs.replicas
}

fn round_to_i32(a: f64) -> i32 {
    if a < 0.0 {
        (a - 0.5) as i32
    } else {
        (a + 0.5) as i32
    }
}

/// `GetProportion`: this ReplicaSet's share of `to_add`, bounded by what is
/// left to add.
pub fn proportion(rs: &Rs, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if rs.replicas == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = replica_set_fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// The new sizes of the active ReplicaSets when a rolling Deployment is
/// scaled mid-rollout (the proportional part of upstream `scale`), in the
/// order they are to be updated, with the scaling direction.
pub fn proportional_sizes(d: &Deployment, active: &[&Rs]) -> (Vec<(String, i32)>, &'static str) {
    let mut rss: Vec<&Rs> = active.to_vec();
    let total = spec_replicas(&rss);
    let allowed = if d.replicas > 0 {
        d.replicas + d.max_surge()
    } else {
        0
    };
    let to_add = allowed - total;
    let op = match to_add.cmp(&0) {
        Ordering::Greater => {
            rss.sort_by(|a, b| by_size_newer(a, b));
            "up"
        }
        Ordering::Less => {
            rss.sort_by(|a, b| by_size_older(a, b));
            "down"
        }
        Ordering::Equal => "",
    };
    let mut added = 0;
    let mut sizes: Vec<(String, i32)> = Vec::new();
    for rs in &rss {
        if to_add != 0 {
            let p = proportion(rs, d, to_add, added);
            sizes.push((rs.name.clone(), rs.replicas + p));
            added += p;
        } else {
            sizes.push((rs.name.clone(), rs.replicas));
        }
    }
    if to_add != 0 {
        if let Some(first) = sizes.first_mut() {
            first.1 = (first.1 + to_add - added).max(0);
        }
    }
    (sizes, op)
}

/// `calculateStatus`: counters over all ReplicaSets and the Available
/// condition.
pub fn calculate_status(
    all: &[&Rs],
    new_rs: Option<&Rs>,
    d: &Deployment,
    now: Timestamp,
) -> DeploymentStatus {
    let available = available_replicas(all);
    let total = spec_replicas(all);
    let mut status = DeploymentStatus {
        observed_generation: d.generation,
        replicas: actual_replicas(all),
        updated_replicas: new_rs.map_or(0, |r| r.status_replicas),
        ready_replicas: ready_replicas(all),
        available_replicas: available,
        unavailable_replicas: (total - available).max(0),
        collision_count: d.status.collision_count,
        conditions: d.status.conditions.clone(),
    };
    if available >= d.replicas - d.max_unavailable() {
        status.set_condition(Condition::new(
            "Available",
            "True",
            MIN_AVAILABLE_REASON,
            "Deployment has minimum availability.".into(),
            now,
        ));
    } else {
        status.set_condition(Condition::new(
            "Available",
            "False",
            MIN_UNAVAILABLE_REASON,
            "Deployment does not have minimum availability.".into(),
            now,
        ));
    }
    status
}

/// `DeploymentComplete`.
pub fn deployment_complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    s.updated_replicas == d.replicas
        && s.replicas == d.replicas
        && s.available_replicas == d.replicas
        && s.observed_generation >= d.generation
}

/// `DeploymentProgressing`: the new status shows progress over the old.
pub fn deployment_progressing(d: &Deployment, s: &DeploymentStatus) -> bool {
    let old = &d.status;
    let old_old = old.replicas - old.updated_replicas;
    let new_old = s.replicas - s.updated_replicas;
    s.updated_replicas > old.updated_replicas
        || new_old < old_old
        || s.ready_replicas > old.ready_replicas
        || s.available_replicas > old.available_replicas
}

/// `DeploymentTimedOut`.
pub fn deployment_timed_out(d: &Deployment, s: &DeploymentStatus, now: Timestamp) -> bool {
    if !d.has_progress_deadline() {
        return false;
    }
    let Some(c) = s.condition("Progressing") else {
        return false;
    };
    if c.reason == NEW_RS_AVAILABLE_REASON {
        return false;
    }
    if c.reason == TIMED_OUT_REASON {
        return true;
    }
    let Some(from) = c.last_update() else {
        return false;
    };
    let deadline =
        jiff::SignedDuration::from_secs(i64::from(d.progress_deadline_seconds.unwrap_or(0)));
    from + deadline < now
}

/// Which annotations a Deployment does not copy to its ReplicaSets.
fn skip_copy_annotation(key: &str) -> bool {
    matches!(
        key,
        LAST_APPLIED_ANNOTATION
            | REVISION_ANNOTATION
            | REVISION_HISTORY_ANNOTATION
            | DESIRED_REPLICAS_ANNOTATION
            | MAX_REPLICAS_ANNOTATION
            | ROLLBACK_TO_ANNOTATION
    )
}

/// `SetReplicasAnnotations`.
pub fn set_replicas_annotations(a: &mut BTreeMap<String, String>, desired: i32, max: i32) -> bool {
    let mut changed = false;
    for (k, v) in [
        (DESIRED_REPLICAS_ANNOTATION, desired),
        (MAX_REPLICAS_ANNOTATION, max),
    ] {
        let v = v.to_string();
        if a.get(k) != Some(&v) {
            a.insert(k.into(), v);
            changed = true;
        }
    }
    changed
}

/// `SetNewReplicaSetAnnotations`: copies the Deployment's annotations,
/// raises the revision (keeping the old one in revision-history when a
/// rollback reuses this ReplicaSet), and for a ReplicaSet about to be
/// created sets desired/max replicas. Whether anything changed.
pub fn set_new_replica_set_annotations(
    d: &Deployment,
    a: &mut BTreeMap<String, String>,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = false;
    for (k, v) in &d.annotations {
        if skip_copy_annotation(k) || a.get(k) == Some(v) {
            continue;
        }
        a.insert(k.clone(), v.clone());
        changed = true;
    }
    let old = a.get(REVISION_ANNOTATION).cloned();
    let old_int = match &old {
        None => 0,
        Some(s) => match s.parse::<i64>() {
            Ok(v) => v,
            Err(_) => return false,
        },
    };
    if old_int < new_revision {
        a.insert(REVISION_ANNOTATION.into(), new_revision.to_string());
        changed = true;
    }
    if let Some(old) = old.filter(|_| old_int < new_revision) {
        let history = a
            .get(REVISION_HISTORY_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        if history.is_empty() {
            a.insert(REVISION_HISTORY_ANNOTATION.into(), old);
        } else {
            let mut revs: Vec<&str> = history.split(',').collect();
            let mut total = history.len() + old.len() + 1;
            let mut start = 0;
            while total > MAX_REV_HISTORY_LENGTH && start < revs.len() {
                total -= revs[start].len() + 1;
                start += 1;
            }
            if total <= MAX_REV_HISTORY_LENGTH {
                revs = revs.split_off(start);
                revs.push(&old);
                a.insert(REVISION_HISTORY_ANNOTATION.into(), revs.join(","));
            } else {
                tracing::warn!(
                    "not appending revision {old} to the revision history: it is too long"
                );
            }
        }
    }
    if !exists && set_replicas_annotations(a, d.replicas, d.replicas + d.max_surge()) {
        changed = true;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    fn deployment(replicas: i32, surge: IntOrString, unavailable: IntOrString) -> Deployment {
        Deployment {
            namespace: "ns".into(),
            name: "web".into(),
            uid: "d1".into(),
            generation: 1,
            deleting: false,
            annotations: BTreeMap::new(),
            replicas,
            selector: LabelSelector::default(),
            template: Value::Null,
            strategy: Strategy::RollingUpdate {
                max_surge: surge,
                max_unavailable: unavailable,
            },
            min_ready_seconds: 0,
            revision_history_limit: Some(10),
            progress_deadline_seconds: Some(600),
            paused: false,
            status: DeploymentStatus::default(),
        }
    }

    fn rs(name: &str, replicas: i32, available: i32, created_secs: i64) -> Rs {
        Rs {
            namespace: "ns".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            created: Some(Timestamp::from_second(1_700_000_000 + created_secs).unwrap()),
            generation: 1,
            deleting: false,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            controller_uid: Some("d1".into()),
            replicas,
            min_ready_seconds: 0,
            template: Value::Null,
            status_replicas: replicas,
            ready_replicas: available,
            available_replicas: available,
            observed_generation: 1,
            conditions: vec![],
        }
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down() {
        assert_eq!(resolve_fenceposts(&pct("25%"), &pct("25%"), 10), (3, 2));
        assert_eq!(resolve_fenceposts(&pct("25%"), &pct("25%"), 1), (1, 0));
        assert_eq!(
            resolve_fenceposts(&IntOrString::Int(0), &IntOrString::Int(0), 5),
            (0, 1)
        );
        assert_eq!(resolve_fenceposts(&pct("0%"), &pct("10%"), 5), (0, 1));
        assert_eq!(resolve_fenceposts(&pct("50%"), &pct("30%"), 3), (2, 0));
        let d = deployment(2, IntOrString::Int(0), IntOrString::Int(5));
        assert_eq!(d.max_unavailable(), 2, "capped at replicas");
        assert_eq!(deployment(0, pct("25%"), pct("25%")).max_unavailable(), 0);
    }

    #[test]
    fn new_replica_set_grows_within_surge() {
        let d = deployment(10, pct("25%"), pct("25%"));
        let old = rs("old", 10, 10, 0);
        let new = rs("new", 0, 0, 10);
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], 0), 3);
        let new3 = rs("new", 3, 0, 10);
        assert_eq!(
            new_rs_new_replicas(&d, &[&old, &new3], 3),
            3,
            "at max total"
        );
        let old5 = rs("old", 5, 5, 0);
        assert_eq!(new_rs_new_replicas(&d, &[&old5, &new3], 3), 8);
        let old0 = rs("old", 0, 0, 0);
        assert_eq!(
            new_rs_new_replicas(&d, &[&old0, &new3], 3),
            10,
            "never past replicas"
        );
    }

    #[test]
    fn proportional_scaling_as_upstream() {
        // Upstream's example: 10 replicas, surge 3, mid-rollout at 8 old + 5
        // new (13); scaled to 15 (max 18), 5 more go 3:2 to old and new.
        let mut d = deployment(15, IntOrString::Int(3), IntOrString::Int(2));
        d.status.replicas = 13;
        let mut old = rs("old", 8, 8, 0);
        let mut new = rs("new", 5, 0, 10);
        for r in [&mut old, &mut new] {
            r.annotations
                .insert(MAX_REPLICAS_ANNOTATION.into(), "13".into());
            r.annotations
                .insert(DESIRED_REPLICAS_ANNOTATION.into(), "10".into());
        }
        let (sizes, op) = proportional_sizes(&d, &[&old, &new]);
        assert_eq!(op, "up");
        let m: BTreeMap<String, i32> = sizes.into_iter().collect();
        assert_eq!(m["old"] + m["new"], 18);
        assert_eq!((m["old"], m["new"]), (11, 7));

        // Scaling down to 0 empties everything.
        let d0 = deployment(0, IntOrString::Int(3), IntOrString::Int(2));
        let (sizes, op) = proportional_sizes(&d0, &[&old, &new]);
        assert_eq!(op, "down");
        assert!(sizes.iter().all(|(_, s)| *s == 0), "{sizes:?}");
    }

    #[test]
    fn revision_annotations_and_history() {
        let mut d = deployment(3, pct("25%"), pct("25%"));
        d.annotations.insert("team".into(), "a".into());
        d.annotations
            .insert(LAST_APPLIED_ANNOTATION.into(), "{}".into());
        let mut a = BTreeMap::new();
        assert!(set_new_replica_set_annotations(&d, &mut a, 1, false));
        assert_eq!(a[REVISION_ANNOTATION], "1");
        assert_eq!(a["team"], "a");
        assert_eq!(a[DESIRED_REPLICAS_ANNOTATION], "3");
        assert_eq!(a[MAX_REPLICAS_ANNOTATION], "4");
        assert!(!a.contains_key(LAST_APPLIED_ANNOTATION));
        assert!(!set_new_replica_set_annotations(&d, &mut a, 1, true));
        // Rolled back to: revision 1 becomes 3, history keeps 1, then 3 -> 5.
        assert!(set_new_replica_set_annotations(&d, &mut a, 3, true));
        assert_eq!(a[REVISION_ANNOTATION], "3");
        assert_eq!(a[REVISION_HISTORY_ANNOTATION], "1");
        set_new_replica_set_annotations(&d, &mut a, 5, true);
        assert_eq!(a[REVISION_HISTORY_ANNOTATION], "1,3");
    }

    #[test]
    fn status_and_available_condition() {
        let d = deployment(4, pct("25%"), pct("25%"));
        let old = rs("old", 2, 2, 0);
        let mut new = rs("new", 3, 1, 10);
        new.status_replicas = 3;
        let now = Timestamp::now();
        let s = calculate_status(&[&old, &new], Some(&new), &d, now);
        assert_eq!(
            (
                s.replicas,
                s.updated_replicas,
                s.ready_replicas,
                s.available_replicas,
                s.unavailable_replicas
            ),
            (5, 3, 3, 3, 2)
        );
        let c = s.condition("Available").unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", MIN_AVAILABLE_REASON)
        );
        assert_eq!(c.message, "Deployment has minimum availability.");
        let old0 = rs("old", 2, 0, 0);
        let s = calculate_status(&[&old0, &new], Some(&new), &d, now);
        let c = s.condition("Available").unwrap();
        assert_eq!(c.reason, MIN_UNAVAILABLE_REASON);
        assert_eq!(c.message, "Deployment does not have minimum availability.");
        // The patch removes zero counters.
        let p = DeploymentStatus::default().to_patch();
        assert!(p["status"]["replicas"].is_null());
    }

    #[test]
    fn progress_and_timeout() {
        let now = Timestamp::now();
        let mut d = deployment(2, pct("25%"), pct("25%"));
        d.progress_deadline_seconds = Some(30);
        let mut s = DeploymentStatus {
            updated_replicas: 1,
            ..Default::default()
        };
        assert!(deployment_progressing(&d, &s));
        s.set_condition(Condition::new(
            "Progressing",
            "True",
            RS_UPDATED_REASON,
            "x".into(),
            now - jiff::SignedDuration::from_secs(31),
        ));
        assert!(deployment_timed_out(&d, &s, now));
        assert!(!deployment_timed_out(
            &d,
            &s,
            now - jiff::SignedDuration::from_secs(2)
        ));
        d.progress_deadline_seconds = Some(i32::MAX);
        assert!(!deployment_timed_out(&d, &s, now));
    }

    #[test]
    fn sort_orders() {
        let a = rs("a", 3, 0, 0);
        let b = rs("b", 3, 0, 5);
        let c = rs("c", 5, 0, 9);
        let mut v = [&a, &b, &c];
        v.sort_by(|x, y| by_size_newer(x, y));
        assert_eq!(
            v.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["c", "b", "a"]
        );
        v.sort_by(|x, y| by_size_older(x, y));
        assert_eq!(
            v.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["c", "a", "b"]
        );
    }
}
