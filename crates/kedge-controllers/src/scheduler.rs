//! The scheduler: places pods that name no node (and ask for
//! `default-scheduler`) on nodes, as upstream's kube-scheduler 1.33 does
//! with its default plugins, and binds them through `pods/binding`.
//!
//! Four watches (pods, nodes, PriorityClasses, namespaces) feed a cache of
//! nodes and the pods placed on them and a scheduling queue. One loop pops
//! the most important pending pod, runs the filters on every node, scores
//! the feasible ones, assumes the pod onto the best (so the next pod sees
//! the room taken) and hands the binding to a task of its own. A pod that
//! fits nowhere gets PodScheduled=False (reason Unschedulable, upstream's
//! message), a `FailedScheduling` event, possibly preemption of
//! lower-priority pods, and waits for a cluster change to be tried again.
//!
//! Plugins, one module each: [`resources`] (NodeResourcesFit, least
//! allocated, balanced allocation), [`node_affinity`], [`inter_pod_affinity`],
//! [`taints`], [`node_ports`], [`node_unschedulable`], [`spread`] (pod
//! topology spread and the default spreading of one owner's pods), and
//! [`preemption`]. [`framework`] runs them; [`queue`] orders the pods.

pub mod api;
pub mod cache;
pub mod events;
pub mod framework;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_ports;
pub mod node_unschedulable;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod spread;
pub mod taints;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use self::api::SchedulerApi;
use self::cache::{ClusterCache, PodInfo, PriorityClasses, DEFAULT_SCHEDULER};
use self::events::EventRecorder;
use self::framework::{CycleState, NodeStatus, Nominated};
use self::preemption::Outcome;
use self::queue::SchedulingQueue;

/// Errors of the scheduler's API calls.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("building the request for {what}: {source}")]
    Request {
        what: String,
        #[source]
        source: http::Error,
    },
    #[error("encoding the body for {what}: {source}")]
    Encode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Settings of the scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// This server's identity: events say `default-scheduler-<identity>`.
    pub identity: String,
    /// Bindings in flight at once.
    pub parallel_bindings: usize,
}

impl SchedulerOptions {
    pub fn new(identity: impl Into<String>) -> SchedulerOptions {
        SchedulerOptions {
            identity: identity.into(),
            parallel_bindings: 32,
        }
    }
}

const NO_NODES: &str = "no nodes available to schedule pods";
/// The four watches that must have listed before the first cycle.
const WATCHES: usize = 4;

#[derive(Debug, Default)]
struct State {
    cache: ClusterCache,
    queue: SchedulingQueue,
    classes: PriorityClasses,
    /// Pods nominated to a node by preemption: uid → (node, pod).
    nominated: HashMap<String, (String, Arc<PodInfo>)>,
    synced: usize,
}

impl State {
    /// The room on each node claimed by nominated pods at least as
    /// important as `pod`.
    fn nominated_for(&self, pod: &PodInfo) -> HashMap<String, Nominated> {
        let mut out: HashMap<String, Nominated> = HashMap::new();
        for (uid, (node, p)) in &self.nominated {
            if *uid == pod.uid || p.priority < pod.priority {
                continue;
            }
            let e = out.entry(node.clone()).or_default();
            e.requests.add(&p.requests.requests);
            e.pods += 1;
            e.ports.extend(p.host_ports.iter().cloned());
        }
        out
    }
}

struct Shared {
    state: Mutex<State>,
    wake: Notify,
    api: SchedulerApi,
    events: EventRecorder,
    binds: Arc<Semaphore>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; carry on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs the scheduler until `shutdown` resolves.
///
/// Leader election: call this only while this server leads (the shared
/// Lease elector decides); dropping the future (or resolving `shutdown`)
/// stops it cleanly, so a lost lease can stop it the same way.
pub async fn run(
    client: kube::Client,
    options: SchedulerOptions,
    shutdown: impl Future<Output = ()>,
) {
    let api = SchedulerApi::new(client.clone());
    let instance = format!("{}-{}", events::COMPONENT, options.identity);
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        wake: Notify::new(),
        events: EventRecorder::start(api.clone(), instance),
        api,
        binds: Arc::new(Semaphore::new(options.parallel_bindings.max(1))),
    });
    // Aborted when this future ends or is dropped (leadership lost).
    let _tasks = AbortOnDrop(vec![
        tokio::spawn(watch_loop::<PriorityClass>(
            client.clone(),
            shared.clone(),
            apply_class,
        )),
        tokio::spawn(watch_loop::<Namespace>(
            client.clone(),
            shared.clone(),
            apply_namespace,
        )),
        tokio::spawn(watch_loop::<Node>(
            client.clone(),
            shared.clone(),
            apply_node,
        )),
        tokio::spawn(watch_loop::<Pod>(client, shared.clone(), apply_pod)),
    ]);
    tokio::select! {
        _ = shutdown => {}
        _ = schedule_loop(shared.clone()) => {}
    }
    tracing::info!("scheduler stopped");
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

// ---- watches ----

/// One watch event, applied to the state.
enum Change<K> {
    Apply(K),
    Delete(K),
    /// A (re)list finished: these keys are all that exist.
    Relisted(HashSet<String>),
}

type Apply<K> = fn(&Shared, &mut State, Change<K>, Instant);

/// The keys a listed object is known by: its uid and `namespace/name`.
fn keys_of<K: kube::Resource>(o: &K) -> [String; 2] {
    let m = o.meta();
    [
        m.uid.clone().unwrap_or_default(),
        format!(
            "{}/{}",
            m.namespace.as_deref().unwrap_or(""),
            m.name.as_deref().unwrap_or("")
        ),
    ]
}

async fn watch_loop<K>(client: kube::Client, shared: Arc<Shared>, apply: Apply<K>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    let api: kube::Api<K> = kube::Api::all(client);
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    let mut listing: Option<HashSet<String>> = None;
    let mut first = true;
    while let Some(ev) = stream.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(error = %e, kind = %K::kind(&()), "scheduler watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let now = Instant::now();
        let change = match ev {
            watcher::Event::Init => {
                listing = Some(HashSet::new());
                continue;
            }
            watcher::Event::InitApply(o) => {
                if let Some(l) = listing.as_mut() {
                    l.extend(keys_of(&o));
                }
                Change::Apply(o)
            }
            watcher::Event::Apply(o) => Change::Apply(o),
            watcher::Event::Delete(o) => Change::Delete(o),
            watcher::Event::InitDone => Change::Relisted(listing.take().unwrap_or_default()),
        };
        let relisted = matches!(change, Change::Relisted(_));
        {
            let mut st = shared.lock();
            apply(&shared, &mut st, change, now);
            if relisted && first {
                st.synced += 1;
            }
        }
        if relisted {
            first = false;
        }
        shared.wake.notify_one();
    }
}

fn apply_class(_: &Shared, st: &mut State, c: Change<PriorityClass>, _: Instant) {
    match c {
        Change::Apply(pc) => {
            let name = pc.metadata.name.clone().unwrap_or_default();
            st.classes
                .by_name
                .insert(name.clone(), (pc.value, pc.preemption_policy.clone()));
            if pc.global_default == Some(true) {
                st.classes.global_default = Some((name, pc.value, pc.preemption_policy));
            } else if st
                .classes
                .global_default
                .as_ref()
                .is_some_and(|g| g.0 == name)
            {
                st.classes.global_default = None;
            }
        }
        Change::Delete(pc) => {
            let name = pc.metadata.name.unwrap_or_default();
            st.classes.by_name.remove(&name);
            if st
                .classes
                .global_default
                .as_ref()
                .is_some_and(|g| g.0 == name)
            {
                st.classes.global_default = None;
            }
        }
        Change::Relisted(_) => {}
    }
}

fn apply_namespace(_: &Shared, st: &mut State, c: Change<Namespace>, now: Instant) {
    match c {
        Change::Apply(ns) => {
            let name = ns.metadata.name.clone().unwrap_or_default();
            let labels = ns.metadata.labels.unwrap_or_default();
            let old = st.cache.namespaces.insert(name, labels.clone());
            if old.is_some_and(|o| o != labels) {
                // Namespace selectors of affinity terms may match now.
                st.queue.move_all(now);
            }
        }
        Change::Delete(ns) => {
            st.cache
                .namespaces
                .remove(&ns.metadata.name.unwrap_or_default());
        }
        Change::Relisted(_) => {}
    }
}

/// Whether a node change can make a pod fit (not a heartbeat).
fn node_changed(old: Option<&cache::NodeInfo>, new: &cache::NodeInfo) -> bool {
    match old {
        None => true,
        Some(o) => {
            !o.present
                || o.labels != new.labels
                || o.taints != new.taints
                || o.unschedulable != new.unschedulable
                || o.allocatable != new.allocatable
        }
    }
}

fn apply_node(_: &Shared, st: &mut State, c: Change<Node>, now: Instant) {
    match c {
        Change::Apply(node) => {
            let name = node.metadata.name.clone().unwrap_or_default();
            let old = st.cache.nodes.get(&name).cloned();
            st.cache.upsert_node(&node);
            if let Some(new) = st.cache.nodes.get(&name) {
                if node_changed(old.as_ref(), new) {
                    st.queue.move_all(now);
                }
            }
        }
        Change::Delete(node) => st
            .cache
            .remove_node(&node.metadata.name.unwrap_or_default()),
        Change::Relisted(keys) => {
            let gone: Vec<String> = st
                .cache
                .nodes
                .values()
                .filter(|n| n.present && !keys.contains(&format!("/{}", n.name)))
                .map(|n| n.name.clone())
                .collect();
            for n in gone {
                st.cache.remove_node(&n);
            }
        }
    }
}

fn apply_pod(_: &Shared, st: &mut State, c: Change<Pod>, now: Instant) {
    match c {
        Change::Apply(pod) => {
            let Some(info) = PodInfo::from_pod(&pod, &st.classes) else {
                return;
            };
            upsert_pod(st, Arc::new(info), now);
        }
        Change::Delete(pod) => {
            let uid = pod.metadata.uid.unwrap_or_default();
            delete_pod(st, &uid, now);
        }
        Change::Relisted(uids) => {
            let gone: Vec<String> = st
                .cache
                .placed
                .keys()
                .filter(|u| !uids.contains(*u) && !st.cache.assumed.contains_key(*u))
                .cloned()
                .collect();
            for u in gone {
                delete_pod(st, &u, now);
            }
        }
    }
}

fn delete_pod(st: &mut State, uid: &str, now: Instant) {
    st.queue.remove(uid);
    st.nominated.remove(uid);
    if st.cache.unplace(uid) {
        // Room was freed.
        st.queue.move_all(now);
    }
}

fn upsert_pod(st: &mut State, info: Arc<PodInfo>, now: Instant) {
    let uid = info.uid.clone();
    if info.terminal {
        st.queue.remove(&uid);
        st.nominated.remove(&uid);
        if st.cache.unplace(&uid) {
            st.queue.move_all(now);
        }
        return;
    }
    if let Some(node) = info.node_name.clone() {
        st.queue.remove(&uid);
        st.nominated.remove(&uid);
        let was_ours = st.cache.assumed.remove(&uid).is_some();
        let labels_changed = st
            .cache
            .placed
            .get(&uid)
            .and_then(|n| st.cache.nodes.get(n))
            .and_then(|n| n.pods.get(&uid))
            .is_none_or(|old| old.labels != info.labels);
        st.cache.place(info, &node);
        if !was_ours && labels_changed && st.queue.unschedulable_count() > 0 {
            // A new or relabelled pod may satisfy pending affinity terms.
            st.queue.move_all(now);
        }
        return;
    }
    // Pending.
    if st.cache.assumed.contains_key(&uid) {
        // Our binding is in flight; this is an older view of the pod.
        return;
    }
    if info.terminating || info.scheduler_name() != DEFAULT_SCHEDULER {
        st.queue.remove(&uid);
        st.nominated.remove(&uid);
        return;
    }
    match &info.nominated_node {
        Some(n) => {
            st.nominated.insert(uid.clone(), (n.clone(), info.clone()));
        }
        None => {
            st.nominated.remove(&uid);
        }
    }
    st.queue.upsert(info, now);
}

// ---- scheduling ----

async fn schedule_loop(shared: Arc<Shared>) {
    loop {
        let popped = {
            let mut st = shared.lock();
            if st.synced < WATCHES {
                None
            } else {
                let now = Instant::now();
                st.queue.flush_unschedulable(now);
                st.queue.pop(now).map(|p| (p, st.queue.next_wakeup()))
            }
        };
        let Some(((pod, cycle), _)) = popped else {
            let wakeup = shared.lock().queue.next_wakeup();
            let sleep = match wakeup {
                Some(t) => tokio::time::sleep_until(t),
                None => tokio::time::sleep(Duration::from_secs(3600)),
            };
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = sleep => {}
            }
            continue;
        };
        // Bindings in flight are bounded: wait for room before placing.
        let Ok(permit) = shared.binds.clone().acquire_owned().await else {
            return;
        };
        schedule_one(&shared, pod, cycle, permit);
        tokio::task::yield_now().await;
    }
}

/// What one cycle decided, carried out after the lock is released.
enum Decision {
    Bind {
        pod: Arc<PodInfo>,
        node: String,
    },
    Unschedulable {
        pod: Arc<PodInfo>,
        message: String,
        reason: &'static str,
        /// `Some(Some(n))`: nominate n; `Some(None)`: clear; `None`: keep.
        nominate: Option<Option<String>>,
        victims: Vec<Arc<PodInfo>>,
        lower_nominated: Vec<Arc<PodInfo>>,
    },
}

fn schedule_one(
    shared: &Arc<Shared>,
    pod: Arc<PodInfo>,
    cycle: u64,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let decision = {
        let mut st = shared.lock();
        let now = Instant::now();
        let d = decide(&mut st, &pod, &mut rand::rng());
        match &d {
            Decision::Bind { pod, node } => {
                let mut placed = (**pod).clone();
                placed.node_name = Some(node.clone());
                st.cache.place(Arc::new(placed), node);
                st.cache.assumed.insert(pod.uid.clone(), node.clone());
                st.queue.done(&pod.uid);
                st.nominated.remove(&pod.uid);
            }
            Decision::Unschedulable {
                pod,
                nominate,
                lower_nominated,
                ..
            } => {
                match nominate {
                    Some(Some(n)) => {
                        st.nominated
                            .insert(pod.uid.clone(), (n.clone(), pod.clone()));
                    }
                    Some(None) => {
                        st.nominated.remove(&pod.uid);
                    }
                    None => {}
                }
                for p in lower_nominated {
                    st.nominated.remove(&p.uid);
                }
                st.queue.failed(&pod.uid, true, cycle, now);
            }
        }
        d
    };
    match decision {
        Decision::Bind { pod, node } => {
            let shared = shared.clone();
            tokio::spawn(async move {
                bind(&shared, &pod, &node).await;
                drop(permit);
            });
        }
        Decision::Unschedulable {
            pod,
            message,
            reason,
            nominate,
            victims,
            lower_nominated,
        } => {
            drop(permit);
            let shared = shared.clone();
            tokio::spawn(async move {
                if let Some(Some(node)) = &nominate {
                    preempt_victims(&shared, &pod, node, &victims, &lower_nominated).await;
                }
                record_failure(&shared, &pod, reason, &message, nominate).await;
            });
        }
    }
}

/// The scheduling cycle proper: filters, scores, or the failure and
/// preemption. Pure over the state.
fn decide(st: &mut State, pod: &Arc<PodInfo>, rng: &mut impl rand::Rng) -> Decision {
    let nodes: Vec<&cache::NodeInfo> = st.cache.nodes.values().filter(|n| n.present).collect();
    if nodes.is_empty() {
        return Decision::Unschedulable {
            pod: pod.clone(),
            message: NO_NODES.to_string(),
            reason: "SchedulerError",
            nominate: None,
            victims: Vec::new(),
            lower_nominated: Vec::new(),
        };
    }
    let state = CycleState::new(pod, &st.cache);
    let nominated = st.nominated_for(pod);
    let mut feasible = Vec::new();
    let mut statuses: HashMap<String, NodeStatus> = HashMap::new();
    for n in &nodes {
        match framework::filter(pod, &state, n, nominated.get(&n.name)) {
            Ok(()) => feasible.push(*n),
            Err(s) => {
                statuses.insert(n.name.clone(), s);
            }
        }
    }
    if !feasible.is_empty() {
        let node = if feasible.len() == 1 {
            feasible[0].name.clone()
        } else {
            let scores = framework::score(pod, &st.cache, &feasible);
            let i = framework::select(&scores, rng).unwrap_or(0);
            feasible[i].name.clone()
        };
        return Decision::Bind {
            pod: pod.clone(),
            node,
        };
    }
    let num = nodes.len();
    let filter_msg = framework::fit_error_message(num, statuses.values(), None);
    match preemption::preempt(pod, &st.cache, &statuses, &nominated) {
        Outcome::Preempt { node, victims } => {
            let lower_nominated = st
                .nominated
                .iter()
                .filter(|(uid, (n, p))| **uid != pod.uid && *n == node && p.priority < pod.priority)
                .map(|(_, (_, p))| p.clone())
                .collect();
            Decision::Unschedulable {
                pod: pod.clone(),
                message: filter_msg,
                reason: "Unschedulable",
                nominate: Some(Some(node)),
                victims,
                lower_nominated,
            }
        }
        Outcome::NotPossible {
            message: post,
            clear_nomination,
        } => {
            let message = framework::fit_error_message(num, statuses.values(), Some(&post));
            Decision::Unschedulable {
                pod: pod.clone(),
                message,
                reason: "Unschedulable",
                // Upstream clears a nomination that no longer helps.
                nominate: (clear_nomination && pod.nominated_node.is_some()).then_some(None),
                victims: Vec::new(),
                lower_nominated: Vec::new(),
            }
        }
    }
}

async fn bind(shared: &Arc<Shared>, pod: &Arc<PodInfo>, node: &str) {
    match shared
        .api
        .bind(&pod.namespace, &pod.name, &pod.uid, node)
        .await
    {
        Ok(()) => {
            tracing::debug!(pod = %pod.key(), node, "bound");
            shared.events.pod(
                pod,
                "Normal",
                "Scheduled",
                "Binding",
                &format!(
                    "Successfully assigned {}/{} to {}",
                    pod.namespace, pod.name, node
                ),
                None,
            );
        }
        Err(e) => {
            let code = api::status_code(&e);
            tracing::info!(pod = %pod.key(), node, error = %e, "binding failed");
            let requeue = {
                let mut st = shared.lock();
                if st.cache.assumed.contains_key(&pod.uid) {
                    st.cache.unplace(&pod.uid);
                }
                // 404: the pod is gone; 409: already bound or being
                // deleted. The watch brings the truth either way.
                let requeue = !matches!(code, Some(404 | 409));
                if requeue {
                    let now = Instant::now();
                    st.queue.upsert(pod.clone(), now);
                    st.queue.failed(&pod.uid, false, u64::MAX, now);
                    st.queue.move_all(now);
                }
                requeue
            };
            shared.wake.notify_one();
            if requeue {
                let msg = format!("Binding rejected: {e}");
                shared
                    .events
                    .pod(pod, "Warning", "FailedScheduling", "Scheduling", &msg, None);
            }
        }
    }
}

/// PodScheduled=False with upstream's reason and message, the nominated
/// node, and a `FailedScheduling` event.
async fn record_failure(
    shared: &Arc<Shared>,
    pod: &Arc<PodInfo>,
    reason: &'static str,
    message: &str,
    nominate: Option<Option<String>>,
) {
    tracing::debug!(pod = %pod.key(), message, "unschedulable");
    shared.events.pod(
        pod,
        "Warning",
        "FailedScheduling",
        "Scheduling",
        message,
        None,
    );
    let same_condition = pod
        .scheduled_condition
        .as_ref()
        .is_some_and(|(s, r, m)| s == "False" && r == reason && m == message);
    let nominate_changes = match &nominate {
        None => false,
        Some(n) => n.as_ref() != pod.nominated_node.as_ref(),
    };
    if same_condition && !nominate_changes {
        return;
    }
    let mut cond = json!({
        "type": "PodScheduled",
        "status": "False",
        "reason": reason,
        "message": message,
        "lastProbeTime": null,
    });
    if pod
        .scheduled_condition
        .as_ref()
        .is_none_or(|(s, _, _)| s != "False")
    {
        cond["lastTransitionTime"] = json!(jiff::fmt::strtime::format(
            "%Y-%m-%dT%H:%M:%SZ",
            jiff::Timestamp::now()
        )
        .unwrap_or_default());
    }
    let mut status = json!({"conditions": [cond]});
    if let Some(n) = nominate {
        status["nominatedNodeName"] = n.map_or(Value::Null, Value::from);
    }
    if let Err(e) = shared
        .api
        .patch_status(&pod.namespace, &pod.name, &status)
        .await
    {
        if api::status_code(&e) != Some(404) {
            tracing::warn!(pod = %pod.key(), error = %e, "cannot update the PodScheduled condition");
        }
    }
}

/// Upstream's preemption side effects: each victim gets a DisruptionTarget
/// condition, a `Preempted` event and a graceful delete; lower-priority
/// pods nominated to the node lose their nomination.
async fn preempt_victims(
    shared: &Arc<Shared>,
    pod: &Arc<PodInfo>,
    node: &str,
    victims: &[Arc<PodInfo>],
    lower_nominated: &[Arc<PodInfo>],
) {
    for v in victims {
        tracing::info!(victim = %v.key(), preemptor = %pod.key(), node, "preempting");
        let cond = json!({"conditions": [{
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "PreemptionByScheduler",
            "message": format!("{}: preempting to accommodate a higher priority pod", events::COMPONENT),
            "lastTransitionTime": jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", jiff::Timestamp::now()).unwrap_or_default(),
        }]});
        if let Err(e) = shared.api.patch_status(&v.namespace, &v.name, &cond).await {
            tracing::debug!(victim = %v.key(), error = %e, "cannot set DisruptionTarget");
        }
        match shared.api.delete_pod(&v.namespace, &v.name, &v.uid).await {
            Ok(()) => shared.events.pod(
                v,
                "Normal",
                "Preempted",
                "Preempting",
                &format!("Preempted by pod {} on node {}", pod.uid, node),
                Some(pod),
            ),
            Err(e) if api::status_code(&e) == Some(404) => {}
            Err(e) => {
                tracing::warn!(victim = %v.key(), error = %e, "cannot delete a preemption victim")
            }
        }
    }
    for p in lower_nominated {
        let status = json!({"nominatedNodeName": null});
        if let Err(e) = shared
            .api
            .patch_status(&p.namespace, &p.name, &status)
            .await
        {
            tracing::debug!(pod = %p.key(), error = %e, "cannot clear a nomination");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cpu: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "uid": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"}},
        }))
        .expect("node")
    }

    fn pod(name: &str, cpu: &str, node_name: Option<&str>) -> Pod {
        let mut v = json!({
            "metadata": {"name": name, "namespace": "default", "uid": name},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
        });
        if let Some(n) = node_name {
            v["spec"]["nodeName"] = json!(n);
        }
        serde_json::from_value(v).expect("pod")
    }

    fn info(p: &Pod) -> Arc<PodInfo> {
        Arc::new(PodInfo::from_pod(p, &PriorityClasses::default()).expect("info"))
    }

    #[test]
    fn assumed_pods_take_room_for_the_next_cycle() {
        let mut st = State::default();
        st.cache.upsert_node(&node("a", "1"));
        let now = Instant::now();
        let p1 = info(&pod("p1", "800m", None));
        let d = decide(&mut st, &p1, &mut rand::rng());
        let Decision::Bind { node, .. } = d else {
            panic!("p1 should fit")
        };
        let mut placed = (*p1).clone();
        placed.node_name = Some(node.clone());
        st.cache.place(Arc::new(placed), &node);
        st.cache.assumed.insert("p1".into(), node);
        let p2 = info(&pod("p2", "800m", None));
        match decide(&mut st, &p2, &mut rand::rng()) {
            Decision::Unschedulable { message, .. } => assert_eq!(
                message,
                "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
            ),
            _ => panic!("p2 must not fit"),
        }
        // The watch confirming the binding replaces the assumed copy.
        upsert_pod(&mut st, info(&pod("p1", "800m", Some("a"))), now);
        assert!(st.cache.assumed.is_empty());
        assert_eq!(st.cache.nodes["a"].requested.milli_cpu, 800);
        // Deleting it frees the room and wakes parked pods.
        st.queue.upsert(p2.clone(), now);
        let (_, c) = st.queue.pop(now).expect("p2");
        st.queue.failed("p2", true, c, now);
        assert_eq!(st.queue.unschedulable_count(), 1);
        delete_pod(&mut st, "p1", now);
        assert_eq!(st.cache.nodes["a"].requested.milli_cpu, 0);
        assert_eq!(st.queue.unschedulable_count(), 0);
    }

    #[test]
    fn no_nodes_is_a_scheduler_error() {
        let mut st = State::default();
        match decide(&mut st, &info(&pod("p", "1", None)), &mut rand::rng()) {
            Decision::Unschedulable {
                message, reason, ..
            } => {
                assert_eq!(message, NO_NODES);
                assert_eq!(reason, "SchedulerError");
            }
            _ => panic!("no node to bind to"),
        }
    }

    #[test]
    fn other_schedulers_and_heartbeats_are_ignored() {
        let mut st = State::default();
        let now = Instant::now();
        let mut p = pod("x", "1", None);
        if let Some(s) = p.spec.as_mut() {
            s.scheduler_name = Some("other".into());
        }
        upsert_pod(&mut st, info(&p), now);
        assert!(st.queue.is_empty());
        upsert_pod(&mut st, info(&pod("y", "1", None)), now);
        assert_eq!(st.queue.len(), 1);
        let n = node("a", "1");
        st.cache.upsert_node(&n);
        let before = st.cache.nodes.get("a").cloned();
        let mut beat = n.clone();
        beat.metadata.resource_version = Some("99".into());
        st.cache.upsert_node(&beat);
        assert!(!node_changed(before.as_ref(), &st.cache.nodes["a"]));
        st.cache.upsert_node(&node("a", "2"));
        assert!(node_changed(before.as_ref(), &st.cache.nodes["a"]));
    }
}
