//! The disruption controller (upstream `pkg/controller/disruption`): keeps
//! every PodDisruptionBudget's status — `currentHealthy`, `desiredHealthy`,
//! `expectedPods`, `disruptionsAllowed`, `disruptedPods`,
//! `observedGeneration` and the `DisruptionAllowed` condition — from the
//! pods it selects and, for `maxUnavailable` and percentages, the scale of
//! their controllers (a ReplicaSet counts its Deployment's replicas). The
//! eviction subresource reads that status and records the pods it lets go
//! in `disruptedPods`; entries are dropped once the pod is being deleted or
//! after two minutes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::util::informer;
use crate::util::pods::is_pod_ready;

/// How long an eviction's entry in `disruptedPods` waits for the pod's
/// deletion (upstream's `DeletionTimeout`).
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);
const RESYNC: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum DisruptionError {
    #[error("{what} {namespace}/{name}: {source}")]
    Api {
        what: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("{kind} {name} has no scale (pods of PodDisruptionBudgets with maxUnavailable or a percentage need one)")]
    Unsupported { kind: String, name: String },
    #[error("invalid {field}: {value:?}")]
    Invalid { field: &'static str, value: String },
}

pub type Result<T> = std::result::Result<T, DisruptionError>;

/// Whether a (non-empty) label selector selects these labels. An empty or
/// missing selector selects nothing, as upstream treats PDBs.
pub fn selects(sel: Option<&LabelSelector>, labels: Option<&BTreeMap<String, String>>) -> bool {
    let Some(sel) = sel else { return false };
    let exprs = sel.match_expressions.as_deref().unwrap_or(&[]);
    let ml = sel.match_labels.as_ref();
    if exprs.is_empty() && ml.is_none_or(|m| m.is_empty()) {
        return false;
    }
    let get = |k: &str| labels.and_then(|l| l.get(k));
    if let Some(ml) = ml {
        if !ml.iter().all(|(k, v)| get(k) == Some(v)) {
            return false;
        }
    }
    exprs.iter().all(|e| {
        let vals = e.values.as_deref().unwrap_or(&[]);
        match e.operator.as_str() {
            "In" => get(&e.key).is_some_and(|v| vals.contains(v)),
            "NotIn" => get(&e.key).is_none_or(|v| !vals.contains(v)),
            "Exists" => get(&e.key).is_some(),
            "DoesNotExist" => get(&e.key).is_none(),
            _ => false,
        }
    })
}

/// Upstream's `GetScaledValueFromIntOrPercent(v, total, roundUp=true)`.
pub fn scaled(v: &IntOrString, total: i32) -> Result<i32> {
    match v {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let invalid = || DisruptionError::Invalid {
                field: "percentage",
                value: s.clone(),
            };
            let pct: i64 = s
                .strip_suffix('%')
                .ok_or_else(invalid)?
                .parse()
                .map_err(|_| invalid())?;
            let v = (pct * i64::from(total) + 99) / 100;
            i32::try_from(v).map_err(|_| invalid())
        }
    }
}

/// The status numbers, from the pods and the expected count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Computed {
    pub current_healthy: i32,
    pub desired_healthy: i32,
    pub expected_pods: i32,
    pub disruptions_allowed: i32,
    pub disrupted_pods: BTreeMap<String, Time>,
    /// When an entry of `disrupted_pods` times out.
    pub recheck: Option<jiff::Timestamp>,
}

/// Upstream's `buildDisruptedPodMap`, `countHealthyPods` and
/// `updatePdbStatus` arithmetic. `expected` is (expectedCount,
/// desiredHealthy) from `getExpectedPodCount`.
pub fn compute(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    expected: (i32, i32),
    now: jiff::Timestamp,
) -> Computed {
    let old = pdb
        .status
        .as_ref()
        .and_then(|s| s.disrupted_pods.clone())
        .unwrap_or_default();
    let mut disrupted = BTreeMap::new();
    let mut recheck: Option<jiff::Timestamp> = None;
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(at) = old.get(&name) else { continue };
        let expires =
            at.0.checked_add(jiff::SignedDuration::try_from(DELETION_TIMEOUT).unwrap_or_default())
                .unwrap_or(at.0);
        if expires < now {
            tracing::info!(pod = %name, "pod was expected to be deleted but it was not");
            continue;
        }
        recheck = Some(recheck.map_or(expires, |r| r.min(expires)));
        disrupted.insert(name, at.clone());
    }
    let current_healthy = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !disrupted.contains_key(p.metadata.name.as_deref().unwrap_or("")))
        .filter(|p| is_pod_ready(p))
        .count();
    let current_healthy = i32::try_from(current_healthy).unwrap_or(i32::MAX);
    let (expected_pods, desired_healthy) = expected;
    let mut allowed = current_healthy - desired_healthy;
    if expected_pods <= 0 || allowed <= 0 {
        allowed = 0;
    }
    Computed {
        current_healthy,
        desired_healthy,
        expected_pods,
        disruptions_allowed: allowed,
        disrupted_pods: disrupted,
        recheck,
    }
}

/// The `DisruptionAllowed` condition, keeping the transition time when the
/// status stays.
fn condition(
    old: Option<&Vec<Condition>>,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> Vec<Condition> {
    let status_s = if status { "True" } else { "False" };
    let mut conds: Vec<Condition> = old.cloned().unwrap_or_default();
    let now = Time(
        jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
            .unwrap_or_else(|_| jiff::Timestamp::now()),
    );
    match conds.iter_mut().find(|c| c.type_ == "DisruptionAllowed") {
        Some(c) => {
            if c.status != status_s {
                c.last_transition_time = now;
            }
            c.status = status_s.into();
            c.reason = reason.into();
            c.message = message.into();
            c.observed_generation = generation;
        }
        None => conds.push(Condition {
            type_: "DisruptionAllowed".into(),
            status: status_s.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: generation,
            last_transition_time: now,
        }),
    }
    conds
}

struct Disruption {
    client: kube::Client,
}

fn controller_of(
    pod: &Pod,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
}

impl Disruption {
    fn err(
        what: &'static str,
        ns: &str,
        name: &str,
    ) -> impl FnOnce(kube::Error) -> DisruptionError {
        let (namespace, name) = (ns.to_string(), name.to_string());
        move |source| DisruptionError::Api {
            what,
            namespace,
            name,
            source: Box::new(source),
        }
    }

    /// Upstream's `getExpectedScale`: the summed scale of the pods'
    /// controllers, each counted once.
    async fn expected_scale(&self, ns: &str, pods: &[&Pod]) -> Result<i32> {
        let mut seen = BTreeSet::new();
        let mut total = 0i32;
        for pod in pods {
            let Some(owner) = controller_of(pod) else {
                // Upstream leaves unmanaged pods out (and reports them).
                continue;
            };
            if !seen.insert(owner.uid.clone()) {
                continue;
            }
            let replicas = match (owner.api_version.as_str(), owner.kind.as_str()) {
                ("apps/v1", "ReplicaSet") => {
                    let rs = Api::<ReplicaSet>::namespaced(self.client.clone(), ns)
                        .get(&owner.name)
                        .await
                        .map_err(Self::err("replicaset", ns, &owner.name))?;
                    let dep = rs
                        .metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .find(|o| o.controller == Some(true) && o.kind == "Deployment")
                        .cloned();
                    match dep {
                        Some(d) => {
                            if !seen.insert(d.uid.clone()) {
                                continue;
                            }
                            let dep = Api::<Deployment>::namespaced(self.client.clone(), ns)
                                .get(&d.name)
                                .await
                                .map_err(Self::err("deployment", ns, &d.name))?;
                            dep.spec.and_then(|s| s.replicas).unwrap_or(1)
                        }
                        None => rs.spec.and_then(|s| s.replicas).unwrap_or(1),
                    }
                }
                ("apps/v1", "StatefulSet") => {
                    Api::<StatefulSet>::namespaced(self.client.clone(), ns)
                        .get(&owner.name)
                        .await
                        .map_err(Self::err("statefulset", ns, &owner.name))?
                        .spec
                        .and_then(|s| s.replicas)
                        .unwrap_or(1)
                }
                ("apps/v1", "Deployment") => Api::<Deployment>::namespaced(self.client.clone(), ns)
                    .get(&owner.name)
                    .await
                    .map_err(Self::err("deployment", ns, &owner.name))?
                    .spec
                    .and_then(|s| s.replicas)
                    .unwrap_or(1),
                ("v1", "ReplicationController") => {
                    Api::<ReplicationController>::namespaced(self.client.clone(), ns)
                        .get(&owner.name)
                        .await
                        .map_err(Self::err("replicationcontroller", ns, &owner.name))?
                        .spec
                        .and_then(|s| s.replicas)
                        .unwrap_or(1)
                }
                (_, kind) => {
                    return Err(DisruptionError::Unsupported {
                        kind: kind.to_string(),
                        name: owner.name.clone(),
                    })
                }
            };
            total += replicas;
        }
        Ok(total)
    }

    /// Upstream's `getExpectedPodCount`: (expectedCount, desiredHealthy).
    async fn expected(&self, pdb: &PodDisruptionBudget, pods: &[&Pod]) -> Result<(i32, i32)> {
        let ns = pdb.metadata.namespace.clone().unwrap_or_default();
        let spec = pdb.spec.clone().unwrap_or_default();
        let pod_count = i32::try_from(pods.len()).unwrap_or(i32::MAX);
        if let Some(mu) = &spec.max_unavailable {
            let expected = self.expected_scale(&ns, pods).await?;
            let max = scaled(mu, expected)?;
            return Ok((expected, (expected - max).max(0)));
        }
        match &spec.min_available {
            Some(IntOrString::Int(n)) => Ok((pod_count, *n)),
            Some(pct @ IntOrString::String(_)) => {
                let expected = self.expected_scale(&ns, pods).await?;
                Ok((expected, scaled(pct, expected)?))
            }
            None => Ok((pod_count, 0)),
        }
    }

    /// Sync one PDB; returns when its `disruptedPods` need another look.
    async fn sync(
        &self,
        pdb: &PodDisruptionBudget,
        all_pods: &[std::sync::Arc<Pod>],
    ) -> Result<Option<jiff::Timestamp>> {
        let (ns, name) = informer::key_of(pdb);
        let sel = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
        let pods: Vec<&Pod> = all_pods
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
            .filter(|p| selects(sel, p.metadata.labels.as_ref()))
            .collect();
        let generation = pdb.metadata.generation;
        let old = pdb.status.clone().unwrap_or_default();
        let (status, recheck) = match self.expected(pdb, &pods).await {
            Ok(expected) => {
                let c = compute(pdb, &pods, expected, jiff::Timestamp::now());
                let allowed = c.disruptions_allowed > 0;
                let status = PodDisruptionBudgetStatus {
                    conditions: Some(condition(
                        old.conditions.as_ref(),
                        allowed,
                        if allowed {
                            "SufficientPods"
                        } else {
                            "InsufficientPods"
                        },
                        "",
                        generation,
                    )),
                    current_healthy: c.current_healthy,
                    desired_healthy: c.desired_healthy,
                    disrupted_pods: Some(c.disrupted_pods.clone()),
                    disruptions_allowed: c.disruptions_allowed,
                    expected_pods: c.expected_pods,
                    observed_generation: generation,
                };
                (status, c.recheck)
            }
            Err(e) => {
                tracing::debug!(pdb = %format!("{ns}/{name}"), error = %e, "cannot compute the budget");
                let mut status = old.clone();
                status.disruptions_allowed = 0;
                status.observed_generation = generation;
                status.conditions = Some(condition(
                    old.conditions.as_ref(),
                    false,
                    "SyncFailed",
                    &e.to_string(),
                    generation,
                ));
                (status, None)
            }
        };
        let same = |a: &PodDisruptionBudgetStatus, b: &PodDisruptionBudgetStatus| {
            a.current_healthy == b.current_healthy
                && a.desired_healthy == b.desired_healthy
                && a.expected_pods == b.expected_pods
                && a.disruptions_allowed == b.disruptions_allowed
                && a.observed_generation == b.observed_generation
                && a.disrupted_pods.clone().unwrap_or_default()
                    == b.disrupted_pods.clone().unwrap_or_default()
                && a.conditions.as_ref().map(|c| {
                    c.iter()
                        .map(|c| {
                            (
                                c.type_.clone(),
                                c.status.clone(),
                                c.reason.clone(),
                                c.message.clone(),
                                c.observed_generation,
                            )
                        })
                        .collect::<Vec<_>>()
                }) == b.conditions.as_ref().map(|c| {
                    c.iter()
                        .map(|c| {
                            (
                                c.type_.clone(),
                                c.status.clone(),
                                c.reason.clone(),
                                c.message.clone(),
                                c.observed_generation,
                            )
                        })
                        .collect::<Vec<_>>()
                })
        };
        if same(&status, &old) {
            return Ok(recheck);
        }
        let mut body = serde_json::to_value(&status).unwrap_or(Value::Null);
        // Entries that went away must be removed explicitly in a merge patch.
        let mut dp = serde_json::Map::new();
        for k in old.disrupted_pods.iter().flatten().map(|(k, _)| k) {
            dp.insert(k.clone(), Value::Null);
        }
        for (k, v) in status.disrupted_pods.iter().flatten() {
            dp.insert(k.clone(), json!(v));
        }
        body["disruptedPods"] = Value::Object(dp);
        let patch = json!({
            "metadata": {"resourceVersion": pdb.metadata.resource_version},
            "status": body,
        });
        Api::<PodDisruptionBudget>::namespaced(self.client.clone(), &ns)
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Self::err("poddisruptionbudget", &ns, &name))?;
        Ok(recheck)
    }
}

/// Runs the disruption controller until dropped.
pub async fn run(client: kube::Client) {
    let (pdbs, pdb_ev) =
        informer::watch_all::<PodDisruptionBudget>(&client, watcher::Config::default());
    let (pods, pod_ev) = informer::watch_all::<Pod>(&client, watcher::Config::default());
    // (namespace, or None for every namespace)
    fn ns_of<K: kube::Resource>(ev: watcher::Event<K>) -> Option<Option<String>> {
        match ev {
            watcher::Event::Apply(o) | watcher::Event::Delete(o) => {
                Some(o.meta().namespace.clone())
            }
            watcher::Event::InitDone => Some(None),
            _ => None,
        }
    }
    let mut events =
        futures::stream::select_all(vec![pdb_ev.map(ns_of).boxed(), pod_ev.map(ns_of).boxed()]);
    let controller = Disruption { client };
    let mut listed = 0;
    let mut dirty: BTreeSet<String> = BTreeSet::new();
    let mut all = false;
    let mut flush_at: Option<Instant> = None;
    let mut next_resync = Instant::now() + RESYNC;
    let mut retry_at: Option<Instant> = None;
    loop {
        let pending = listed >= 2 && (all || !dirty.is_empty());
        let wake = if pending {
            *flush_at.get_or_insert_with(|| Instant::now() + Duration::from_millis(20))
        } else {
            retry_at.map_or(next_resync, |r| r.min(next_resync))
        };
        tokio::select! {
            ev = events.next() => {
                match ev {
                    None => return,
                    Some(Some(Some(ns))) => { dirty.insert(ns); }
                    Some(Some(None)) => { listed += 1; all = true; }
                    Some(None) => {}
                }
                continue;
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
        if listed < 2 {
            continue;
        }
        flush_at = None;
        let now = Instant::now();
        if now >= next_resync || retry_at.is_some_and(|r| r <= now) {
            all = true;
            next_resync = now + RESYNC;
            retry_at = None;
        }
        let all_pods = pods.state();
        for pdb in pdbs.state() {
            let ns = pdb.metadata.namespace.clone().unwrap_or_default();
            if !all && !dirty.contains(&ns) {
                continue;
            }
            match controller.sync(&pdb, &all_pods).await {
                Ok(Some(recheck)) => {
                    let d = recheck.duration_since(jiff::Timestamp::now());
                    let wait = if d.is_negative() {
                        Duration::ZERO
                    } else {
                        d.unsigned_abs()
                    } + Duration::from_millis(100);
                    let at = Instant::now() + wait;
                    retry_at = Some(retry_at.map_or(at, |r| r.min(at)));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(pdb = ?pdb.metadata.name, error = %e, "disruption budget sync failed; retrying");
                    let at = Instant::now() + Duration::from_secs(1);
                    retry_at = Some(retry_at.map_or(at, |r| r.min(at)));
                }
            }
        }
        all = false;
        dirty.clear();
    }
}

#[cfg(test)]
mod tests;
