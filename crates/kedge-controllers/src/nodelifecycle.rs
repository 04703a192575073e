//! The node lifecycle controller (upstream
//! `pkg/controller/nodelifecycle`), with the taint eviction controller
//! (`pkg/controller/tainteviction`) and the pod garbage collector
//! (`pkg/controller/podgc`) sharing its caches.
//!
//! * **Health.** A node is healthy while its agent renews its Lease in
//!   `kube-node-lease` or posts status. Both are judged by *this* server's
//!   clock, at the moment a change is seen (so clock skew between the node
//!   and the server does not matter). After the grace period with neither,
//!   every condition (Ready, MemoryPressure, DiskPressure, PIDPressure) turns
//!   `Unknown` with reason `NodeStatusUnknown` and the pods on the node are
//!   marked not Ready.
//! * **Taints.** Ready=False gives `node.kubernetes.io/not-ready`, Unknown
//!   `node.kubernetes.io/unreachable`, both NoExecute and NoSchedule; the
//!   pressure conditions and `spec.unschedulable` give their NoSchedule
//!   taints (TaintNodesByCondition).
//! * **Taint eviction** ([`tainteviction`]): pods on a node with NoExecute
//!   taints they do not tolerate are deleted at once, those that tolerate
//!   them for `tolerationSeconds` after that.
//! * **Pod GC** ([`podgc`]): pods bound to nodes that no longer exist, and
//!   terminating pods on out-of-service nodes, are force-deleted.
//!
//! kedge's default grace period is 15 s (upstream 40 s); with admission's
//! default tolerations (20 s, upstream 300 s) a lost node's pods are
//! evicted 25-35 s after its last heartbeat (agents renew every 10 s)
//! rather than upstream's five to six minutes.

mod podgc;
mod tainteviction;
pub(crate) mod taints;

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use serde_json::json;
use tokio::time::Instant;

use crate::util::informer;

/// kedge's `--node-monitor-grace-period` default (upstream: 40 s).
pub const DEFAULT_NODE_MONITOR_GRACE_PERIOD: Duration = Duration::from_secs(15);
/// How often node health is checked (upstream's `--node-monitor-period` is 5 s).
pub const NODE_MONITOR_PERIOD: Duration = Duration::from_secs(1);
/// Grace for a node that never posted status (upstream's
/// `--node-startup-grace-period`).
pub const NODE_STARTUP_GRACE_PERIOD: Duration = Duration::from_secs(60);
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// The conditions a silent node's agent is no longer vouching for.
const MONITORED_CONDITIONS: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

#[derive(Debug, thiserror::Error)]
pub enum NodeLifecycleError {
    #[error("{what} {name}: {source}")]
    Api {
        what: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
}

pub type Result<T> = std::result::Result<T, NodeLifecycleError>;

fn api_err(what: &'static str, name: &str) -> impl FnOnce(kube::Error) -> NodeLifecycleError {
    let name = name.to_string();
    move |source| NodeLifecycleError::Api { what, name, source }
}

/// What was last seen of a node's heartbeats, and when (our clock).
#[derive(Debug, Clone)]
struct Health {
    heartbeat: Option<Time>,
    transition: Option<Time>,
    lease_renew: Option<MicroTime>,
    probed_at: Instant,
}

pub(crate) struct Caches {
    pub nodes: Store<Node>,
    pub leases: Store<Lease>,
    pub pods: Store<Pod>,
}

fn now_time() -> Time {
    let now = jiff::Timestamp::now();
    Time(jiff::Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// Conditions of a node whose agent has gone silent: each monitored one
/// `Unknown` (upstream's `tryUpdateNodeHealth`). `None` when they already are.
fn unknown_conditions(node: &Node, now: &Time) -> Option<Vec<NodeCondition>> {
    let mut conds: Vec<NodeCondition> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    for t in MONITORED_CONDITIONS {
        match conds.iter_mut().find(|c| c.type_ == *t) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(now.clone());
                changed = true;
            }
            None => {
                conds.push(NodeCondition {
                    type_: (*t).to_string(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(now.clone()),
                });
                changed = true;
            }
        }
    }
    changed.then_some(conds)
}

pub(crate) struct NodeLifecycle {
    client: kube::Client,
    grace: Duration,
    health: HashMap<String, Health>,
}

impl NodeLifecycle {
    /// Record heartbeats; mark nodes silent past the grace period Unknown.
    async fn monitor(&mut self, caches: &Caches) {
        let now = Instant::now();
        let nodes = caches.nodes.state();
        self.health.retain(|name, _| {
            nodes
                .iter()
                .any(|n| n.metadata.name.as_deref() == Some(name))
        });
        for node in nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            let ready = taints::condition(&node, "Ready");
            let heartbeat = ready.and_then(|c| c.last_heartbeat_time.clone());
            let transition = ready.and_then(|c| c.last_transition_time.clone());
            let lease_renew = caches
                .leases
                .get(&ObjectRef::new(&name).within(NODE_LEASE_NAMESPACE))
                .and_then(|l| l.spec.as_ref().and_then(|s| s.renew_time.clone()));
            let h = self.health.entry(name.clone()).or_insert_with(|| Health {
                heartbeat: heartbeat.clone(),
                transition: transition.clone(),
                lease_renew: lease_renew.clone(),
                probed_at: now,
            });
            if h.heartbeat != heartbeat
                || h.transition != transition
                || h.lease_renew != lease_renew
            {
                *h = Health {
                    heartbeat,
                    transition,
                    lease_renew,
                    probed_at: now,
                };
            }
            let grace = if ready.is_none() {
                NODE_STARTUP_GRACE_PERIOD.max(self.grace)
            } else {
                self.grace
            };
            if now.duration_since(h.probed_at) <= grace {
                continue;
            }
            if let Some(conds) = unknown_conditions(&node, &now_time()) {
                tracing::info!(node = %name, "node stopped posting status: marking it Unknown");
                if let Err(e) = self.write_conditions(&node, conds).await {
                    tracing::warn!(node = %name, error = %e, "cannot mark the node Unknown");
                }
            }
        }
    }

    async fn write_conditions(&self, node: &Node, conds: Vec<NodeCondition>) -> Result<()> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = json!({
            "metadata": {"resourceVersion": node.metadata.resource_version},
            "status": {"conditions": conds},
        });
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(api_err("node", &name))
    }

    /// Taints from conditions; pods of nodes that are not Ready marked so.
    async fn taint_and_mark(&self, caches: &Caches) {
        for node in caches.nodes.state() {
            let name = node.metadata.name.clone().unwrap_or_default();
            if let Some(next) = taints::reconcile_taints(&node, &now_time()) {
                let api: Api<Node> = Api::all(self.client.clone());
                let patch = json!({
                    "metadata": {"resourceVersion": node.metadata.resource_version},
                    "spec": {"taints": next},
                });
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {
                        tracing::info!(node = %name, taints = ?next.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect::<Vec<_>>(), "node taints updated")
                    }
                    // A newer node is on its way through the watch.
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => {
                        tracing::warn!(node = %name, error = %e, "cannot update the node's taints")
                    }
                }
            }
            if matches!(taints::ready_status(&node), Some("False" | "Unknown")) {
                self.mark_pods_not_ready(caches, &name).await;
            }
        }
    }

    /// Upstream's `MarkPodsNotReady`: pods on a node that is not Ready are
    /// not Ready either, whatever their silent agent last said.
    async fn mark_pods_not_ready(&self, caches: &Caches, node: &str) {
        let pods = caches.pods.state_filter(|p| {
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
                && crate::util::pods::is_pod_ready(p)
        });
        for pod in pods {
            let (ns, name) = informer::key_of(pod.as_ref());
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            let patch = json!({
                "status": {"conditions": [{
                    "type": "Ready",
                    "status": "False",
                    "lastTransitionTime": now_time(),
                }]},
            });
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                Ok(_) => {
                    tracing::info!(pod = %format!("{ns}/{name}"), node, "marked pod not ready")
                }
                Err(e) => {
                    tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "cannot mark pod not ready")
                }
            }
        }
    }
}

/// Runs the node lifecycle, taint eviction and pod GC controllers until
/// dropped.
pub async fn run(client: kube::Client, grace: Duration) {
    let (nodes, node_ev) = informer::watch_all::<Node>(&client, watcher::Config::default());
    let (leases, lease_ev) = informer::watch_all::<Lease>(&client, watcher::Config::default());
    let (pods, pod_ev) = informer::watch_all::<Pod>(&client, watcher::Config::default());
    let caches = Caches {
        nodes,
        leases,
        pods,
    };
    fn kind<K>(ev: &watcher::Event<K>) -> u8 {
        match ev {
            watcher::Event::InitDone => 1,
            watcher::Event::Init | watcher::Event::InitApply(_) => 0,
            _ => 2,
        }
    }
    let mut events = futures::stream::select_all(vec![
        node_ev.map(|e| kind(&e)).boxed(),
        lease_ev.map(|e| kind(&e)).boxed(),
        pod_ev.map(|e| kind(&e)).boxed(),
    ]);
    let mut lifecycle = NodeLifecycle {
        client: client.clone(),
        grace,
        health: HashMap::new(),
    };
    let mut eviction = tainteviction::TaintEviction::new(client.clone());
    let mut gc = podgc::PodGc::new(client.clone());
    let mut listed = 0;
    let mut next_monitor = Instant::now();
    let mut pass_at: Option<Instant> = None;
    loop {
        let wake = [Some(next_monitor), pass_at, eviction.next_due()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(next_monitor);
        tokio::select! {
            ev = events.next() => {
                match ev {
                    None => return,
                    Some(1) => listed += 1,
                    Some(2) if listed >= 3 => {
                        // Changes matter at once: a new taint evicts, a pod
                        // that stops tolerating goes.
                        pass_at.get_or_insert_with(|| Instant::now() + Duration::from_millis(20));
                    }
                    _ => {}
                }
                continue;
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
        if listed < 3 {
            next_monitor = Instant::now() + NODE_MONITOR_PERIOD;
            continue;
        }
        let now = Instant::now();
        if now >= next_monitor {
            lifecycle.monitor(&caches).await;
            gc.pass(&caches).await;
            next_monitor = Instant::now() + NODE_MONITOR_PERIOD;
        }
        pass_at = None;
        lifecycle.taint_and_mark(&caches).await;
        eviction.pass(&caches).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeStatus;

    #[test]
    fn silent_node_conditions_become_unknown() {
        let node = Node {
            status: Some(NodeStatus {
                conditions: Some(vec![
                    NodeCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        reason: Some("KubeletReady".into()),
                        ..Default::default()
                    },
                    NodeCondition {
                        type_: "MemoryPressure".into(),
                        status: "False".into(),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let now = now_time();
        let conds = unknown_conditions(&node, &now).expect("changed");
        let ready = conds.iter().find(|c| c.type_ == "Ready").expect("ready");
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            ready.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        let disk = conds
            .iter()
            .find(|c| c.type_ == "DiskPressure")
            .expect("added");
        assert_eq!(disk.reason.as_deref(), Some("NodeStatusNeverUpdated"));
        assert_eq!(conds.len(), 4);
        let mut n2 = node.clone();
        n2.status = Some(NodeStatus {
            conditions: Some(conds),
            ..Default::default()
        });
        assert!(unknown_conditions(&n2, &now).is_none(), "idempotent");
    }
}
