//! The DaemonSet controller (upstream `pkg/controller/daemon`, 1.33
//! semantics): one pod per eligible node, pinned to it with required node
//! affinity on `metadata.name` (the scheduler binds it), RollingUpdate
//! (maxUnavailable, maxSurge) and OnDelete, ControllerRevisions, and the
//! status counters `kubectl rollout status ds` reads.
//!
//! Syncs are driven by DaemonSet, pod, node and ControllerRevision watch
//! events (plus a timer while a pod waits out `minReadySeconds`); each sync
//! reads its objects fresh from the API server.

pub mod history;
pub mod placement;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use self::history::REVISION_HASH_LABEL;
use crate::util::pods::{self as podutil, PodName};
use crate::util::selector::label_selector_query;
use crate::util::workload::{
    error_policy, requeue_on_conflict, requeue_sooner, Context, Error, ObjectSync,
};

/// The deprecated template generation annotation and its pod label.
const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// Runs the DaemonSet controller (until its task is aborted).
pub async fn run(client: Client) {
    let ctx = Context::new(client.clone(), "daemonset-controller");
    let controller = Controller::new(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let store = controller.store();
    controller
        .owns(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .owns(
            Api::<ControllerRevision>::all(client.clone()),
            watcher::Config::default(),
        )
        .watches(
            Api::<Node>::all(client),
            watcher::Config::default(),
            move |_node| {
                store
                    .state()
                    .into_iter()
                    .map(|ds| ObjectRef::from_obj(&*ds))
                    .collect::<Vec<_>>()
            },
        )
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// Upstream's `GetScaledValueFromIntOrPercent(v, total, roundUp=true)`.
pub fn scaled(v: Option<&IntOrString>, total: i32, default: i32) -> i32 {
    match v {
        None => default,
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
                Some(p) => ((p * i64::from(total) + 99) / 100) as i32,
                None => default,
            }
        }
    }
}

fn pod_hash(pod: &Pod) -> Option<&str> {
    pod.labels().get(REVISION_HASH_LABEL).map(String::as_str)
}

type Sync<'a> = ObjectSync<'a, DaemonSet>;

impl Sync<'_> {
    fn pods(&self) -> Api<Pod> {
        self.api()
    }

    async fn delete_pod(&self, pod: &Pod) -> Result<(), kube::Error> {
        let name = pod.name_any();
        self.delete_recorded::<Pod>(
            &name,
            &DeleteParams::default(),
            format!("Deleted pod: {name}"),
            |e| format!("Error deleting: {e}"),
        )
        .await
    }

    async fn create_pod(&self, node: &str, hash: &str) -> Result<(), kube::Error> {
        let Some(spec) = self.obj.spec.as_ref() else {
            return Ok(());
        };
        let mut tpl = spec.template.clone();
        let meta = tpl.metadata.get_or_insert_with(Default::default);
        let labels = meta.labels.get_or_insert_with(BTreeMap::new);
        labels.insert(REVISION_HASH_LABEL.into(), hash.into());
        if let Some(g) = self.obj.annotations().get(TEMPLATE_GENERATION_ANNOTATION) {
            labels.insert(TEMPLATE_GENERATION_LABEL.into(), g.clone());
        }
        if let Some(ps) = tpl.spec.as_mut() {
            placement::add_default_tolerations(ps);
            placement::pin_to_node(ps, node);
        }
        let raw = podutil::pod_from_typed_template(
            &tpl,
            &podutil::controller_ref_to(&self.obj),
            PodName::Generate(&podutil::generate_name_prefix(&self.name)),
        );
        let pod: Pod = serde_json::from_value(raw).map_err(kube::Error::SerdeError)?;
        match self.pods().create(&PostParams::default(), &pod).await {
            Ok(p) => {
                self.event(
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("Created pod: {}", p.name_any()),
                )
                .await;
                Ok(())
            }
            Err(e) => {
                self.event(
                    EventType::Warning,
                    "FailedCreate",
                    format!("Error creating: {e}"),
                )
                .await;
                Err(e)
            }
        }
    }
}

async fn reconcile(cached: Arc<DaemonSet>, ctx: Arc<Context>) -> Result<Action, Error> {
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
    let nodes: Vec<Node> = Api::<Node>::all(s.ctx.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(s.err())?
        .items;
    let selector = label_selector_query(&spec.selector).unwrap_or_default();
    let pods: Vec<Pod> = s.list_controlled(&selector).await?;

    // History: the current revision and its hash.
    let cr_api: Api<ControllerRevision> = s.api();
    let collision = s.obj.status.as_ref().and_then(|st| st.collision_count);
    let cur = history::current_for(&cr_api, &s.obj, &spec.template, collision)
        .await
        .map_err(s.err())?;
    let hash = cur
        .revision
        .labels()
        .get(REVISION_HASH_LABEL)
        .cloned()
        .unwrap_or_default();

    // Pods by the node they are meant for.
    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for p in &pods {
        if let Some(n) = p.spec.as_ref().and_then(placement::target_node) {
            by_node.entry(n).or_default().push(p);
        }
    }
    for list in by_node.values_mut() {
        list.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
    }
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    let ru = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.rolling_update.as_ref());

    let mut to_create: Vec<String> = Vec::new();
    let mut to_delete: Vec<&Pod> = Vec::new();
    let mut desired = 0;
    for node in &nodes {
        let node_name = node.name_any();
        let (run, keep) = placement::should_run(&spec.template, node);
        if run {
            desired += 1;
        }
        let on_node = by_node.get(&node_name).cloned().unwrap_or_default();
        if run && on_node.is_empty() {
            to_create.push(node_name.clone());
            continue;
        }
        if keep {
            let mut running = Vec::new();
            for p in on_node {
                if podutil::is_pod_terminating(p) {
                    continue;
                }
                if podutil::phase(p) == "Failed" {
                    s.event(
                        EventType::Warning,
                        "FailedDaemonPod",
                        format!(
                            "Found failed daemon pod {}/{} on node {node_name}, will try to kill it",
                            s.ns,
                            p.name_any()
                        ),
                    )
                    .await;
                    to_delete.push(p);
                } else {
                    running.push(p);
                }
            }
            // One pod per node: keep the oldest (with surge, the oldest
            // old one and the oldest updated one).
            let surge = rolling && scaled(ru.and_then(|r| r.max_surge.as_ref()), 1, 0) > 0;
            if surge {
                let (mut new, mut old): (Vec<&Pod>, Vec<&Pod>) = running
                    .into_iter()
                    .partition(|p| pod_hash(p) == Some(&hash));
                if new.len() > 1 {
                    to_delete.extend(new.drain(1..));
                }
                if old.len() > 1 {
                    to_delete.extend(old.drain(1..));
                }
            } else if running.len() > 1 {
                to_delete.extend(running.drain(1..));
            }
        } else {
            to_delete.extend(
                on_node
                    .into_iter()
                    .filter(|p| !podutil::is_pod_terminating(p)),
            );
        }
    }
    // Pods meant for nodes that do not exist and never got scheduled.
    let node_names: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
    for (n, list) in &by_node {
        if !node_names.contains(n) {
            to_delete.extend(list.iter().filter(|p| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_none_or(str::is_empty)
                    && !podutil::is_pod_terminating(p)
            }));
        }
    }

    let mut first_err = None;
    for p in &to_delete {
        if let Err(e) = s.delete_pod(p).await {
            first_err.get_or_insert(e);
        }
    }
    // Slow start, as upstream: batches of 1, 2, 4, ...
    let mut batch = 1usize;
    let mut queue = to_create.iter();
    'create: loop {
        let chunk: Vec<&String> = queue.by_ref().take(batch).collect();
        if chunk.is_empty() {
            break;
        }
        for n in chunk {
            if let Err(e) = s.create_pod(n, &hash).await {
                first_err.get_or_insert(e);
                break 'create;
            }
        }
        batch *= 2;
    }

    let mut requeue: Option<Duration> = None;
    if rolling && to_delete.is_empty() && to_create.is_empty() {
        requeue = rolling_update(s, &nodes, &by_node, &hash, desired, ru, min_ready, now).await;
    }

    // History clean-up: revisions that no live pod uses, past the limit.
    let in_use: HashSet<String> = pods
        .iter()
        .filter_map(|p| pod_hash(p).map(str::to_string))
        .chain(std::iter::once(hash.clone()))
        .collect();
    if let Err(e) = history::trim(
        &cr_api,
        &cur.old,
        &in_use,
        spec.revision_history_limit.unwrap_or(10),
    )
    .await
    {
        tracing::debug!(error = %e, daemonset = %s.name, "cannot trim history");
    }

    // Status from fresh pods.
    let pods: Vec<Pod> = s.list_controlled(&selector).await?;
    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for p in &pods {
        if let Some(n) = p.spec.as_ref().and_then(placement::target_node) {
            by_node.entry(n).or_default().push(p);
        }
    }
    let (mut current, mut misscheduled, mut ready, mut available, mut updated) = (0, 0, 0, 0, 0);
    for node in &nodes {
        let (run, _) = placement::should_run(&spec.template, node);
        let Some(list) = by_node.get(&node.name_any()).filter(|l| !l.is_empty()) else {
            continue;
        };
        if !run {
            misscheduled += 1;
            continue;
        }
        current += 1;
        let mut list = list.clone();
        list.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let pod = list[0];
        if podutil::is_pod_ready(pod) {
            ready += 1;
            if podutil::is_pod_available(pod, min_ready, now) {
                available += 1;
            } else if let Some(d) = podutil::until_available(pod, min_ready, now) {
                requeue_sooner(&mut requeue, d + Duration::from_millis(100));
            }
        }
        if list.iter().any(|p| pod_hash(p) == Some(&hash)) {
            updated += 1;
        }
    }
    let mut status = json!({
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": current,
        "numberMisscheduled": misscheduled,
        "numberReady": ready,
        "numberAvailable": available,
        "numberUnavailable": desired - available,
        "updatedNumberScheduled": updated,
        "observedGeneration": s.obj.metadata.generation,
    });
    if let Some(c) = cur.collision_count {
        status["collisionCount"] = json!(c);
    }
    let old = serde_json::to_value(s.obj.status.clone().unwrap_or_default()).unwrap_or_default();
    s.patch_status_if_changed(&old, status).await?;
    if let Some(e) = first_err {
        return Err(s.err()(e));
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Upstream's `rollingUpdate`: replace old pods node by node within
/// maxUnavailable (delete then create) or maxSurge (create then delete).
#[allow(clippy::too_many_arguments)]
async fn rolling_update(
    s: &Sync<'_>,
    nodes: &[Node],
    by_node: &BTreeMap<String, Vec<&Pod>>,
    hash: &str,
    desired: i32,
    ru: Option<&k8s_openapi::api::apps::v1::RollingUpdateDaemonSet>,
    min_ready: i32,
    now: Timestamp,
) -> Option<Duration> {
    let mut max_surge = scaled(ru.and_then(|r| r.max_surge.as_ref()), desired, 0);
    let mut max_unavailable = scaled(ru.and_then(|r| r.max_unavailable.as_ref()), desired, 1);
    if max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }
    if max_surge > 0 {
        max_unavailable = 0;
    } else {
        max_surge = 0;
    }
    let spec = s.obj.spec.as_ref()?;
    let mut unavailable = 0;
    let mut candidates: Vec<&Pod> = Vec::new();
    let mut surge_candidates: Vec<String> = Vec::new();
    let mut surging = 0;
    let mut delete_now: Vec<&Pod> = Vec::new();
    for node in nodes {
        let (run, _) = placement::should_run(&spec.template, node);
        if !run {
            continue;
        }
        let list: Vec<&Pod> = by_node
            .get(&node.name_any())
            .into_iter()
            .flatten()
            .copied()
            .filter(|p| !podutil::is_pod_terminating(p))
            .collect();
        let new = list.iter().find(|p| pod_hash(p) == Some(hash)).copied();
        let old = list.iter().find(|p| pod_hash(p) != Some(hash)).copied();
        let avail = |p: &Pod| podutil::is_pod_available(p, min_ready, now);
        if max_surge == 0 {
            match (old, new) {
                (None, Some(n)) if !avail(n) => unavailable += 1,
                (None, None) => unavailable += 1,
                (Some(o), _) if !avail(o) => {
                    unavailable += 1;
                    delete_now.push(o);
                }
                (Some(o), _) => candidates.push(o),
                _ => {}
            }
        } else {
            match (old, new) {
                (Some(o), None) => {
                    if !avail(o) {
                        surge_candidates.insert(0, node.name_any());
                    } else {
                        surge_candidates.push(node.name_any());
                    }
                }
                (Some(o), Some(n)) => {
                    if avail(n) {
                        delete_now.push(o);
                    } else {
                        surging += 1;
                    }
                }
                _ => {}
            }
        }
    }
    if max_surge == 0 {
        let room = (max_unavailable - unavailable).max(0) as usize;
        delete_now.extend(candidates.into_iter().take(room));
    }
    for p in delete_now {
        let _ = s.delete_pod(p).await;
    }
    if max_surge > 0 {
        let room = (max_surge - surging).max(0) as usize;
        for n in surge_candidates.into_iter().take(room) {
            let _ = s.create_pod(&n, hash).await;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_up() {
        assert_eq!(scaled(Some(&IntOrString::String("25%".into())), 5, 0), 2);
        assert_eq!(scaled(Some(&IntOrString::String("0%".into())), 5, 1), 0);
        assert_eq!(scaled(Some(&IntOrString::Int(3)), 5, 0), 3);
        assert_eq!(scaled(None, 5, 1), 1);
    }
}
