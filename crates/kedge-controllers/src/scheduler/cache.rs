//! The scheduler's view of the cluster: nodes with the pods bound (or
//! assumed bound) to them and the totals the plugins need, built from the
//! watches. Pure data; no I/O.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, PodSpec, Taint, Toleration};

use super::node_ports::{self, HostPort};
use super::resources::{self, PodRequests, Resources};

pub const DEFAULT_SCHEDULER: &str = "default-scheduler";

/// What the scheduler keeps of a pod.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub labels: BTreeMap<String, String>,
    pub spec: PodSpec,
    pub node_name: Option<String>,
    pub priority: i32,
    pub preempt_never: bool,
    pub requests: PodRequests,
    pub host_ports: Vec<HostPort>,
    /// `ownerReferences[0].uid`: pods of one owner are spread.
    pub owner_uid: Option<String>,
    pub terminating: bool,
    /// Succeeded or Failed: holds nothing on its node.
    pub terminal: bool,
    pub nominated_node: Option<String>,
    /// `status.startTime`, else the creation time.
    pub start_time: jiff::Timestamp,
    /// The PodScheduled condition: (status, reason, message).
    pub scheduled_condition: Option<(String, String, String)>,
    pub has_affinity: bool,
}

/// Priorities of the PriorityClasses, to resolve `priorityClassName` where
/// admission did not set `spec.priority`.
#[derive(Debug, Clone, Default)]
pub struct PriorityClasses {
    pub by_name: HashMap<String, (i32, Option<String>)>,
    pub global_default: Option<(String, i32, Option<String>)>,
}

impl PriorityClasses {
    /// (priority, preemptionPolicy) of a class; the two system classes
    /// exist even when no object was created for them.
    fn lookup(&self, name: &str) -> Option<(i32, Option<String>)> {
        if let Some(v) = self.by_name.get(name) {
            return Some(v.clone());
        }
        match name {
            "system-node-critical" => Some((2_000_001_000, None)),
            "system-cluster-critical" => Some((2_000_000_000, None)),
            _ => None,
        }
    }
}

impl PodInfo {
    pub fn from_pod(pod: &Pod, classes: &PriorityClasses) -> Option<PodInfo> {
        let md = &pod.metadata;
        let spec = pod.spec.clone()?;
        let status = pod.status.as_ref();
        // Upstream's Priority admission makes spec.priority the class's
        // value (or the global default's) and rejects any other; kedge's
        // API server defaults it to 0 without looking at the class, so the
        // class is resolved here and wins.
        let class = spec
            .priority_class_name
            .as_deref()
            .filter(|s| !s.is_empty());
        let resolved = match class {
            Some(c) => classes.lookup(c),
            None => classes
                .global_default
                .as_ref()
                .map(|(_, p, pol)| (*p, pol.clone())),
        };
        let priority = resolved
            .as_ref()
            .map(|(p, _)| *p)
            .or(spec.priority)
            .unwrap_or(0);
        let preempt_never = spec.preemption_policy.as_deref() == Some("Never")
            || resolved.and_then(|(_, pol)| pol).as_deref() == Some("Never");
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
        let created = md
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let start_time = status
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0)
            .unwrap_or(created);
        let scheduled_condition = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
            .map(|c| {
                (
                    c.status.clone(),
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default(),
                )
            });
        let has_affinity = spec
            .affinity
            .as_ref()
            .is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some());
        Some(PodInfo {
            namespace: md.namespace.clone().unwrap_or_default(),
            name: md.name.clone().unwrap_or_default(),
            uid: md.uid.clone().unwrap_or_default(),
            resource_version: md.resource_version.clone().unwrap_or_default(),
            labels: md.labels.clone().unwrap_or_default(),
            node_name: spec.node_name.clone().filter(|n| !n.is_empty()),
            priority,
            preempt_never,
            requests: resources::pod_requests(&spec),
            host_ports: node_ports::host_ports(&spec),
            owner_uid: md
                .owner_references
                .as_ref()
                .and_then(|o| o.first())
                .map(|o| o.uid.clone()),
            terminating: md.deletion_timestamp.is_some(),
            terminal: phase == "Succeeded" || phase == "Failed",
            nominated_node: status
                .and_then(|s| s.nominated_node_name.clone())
                .filter(|n| !n.is_empty()),
            start_time,
            scheduled_condition,
            has_affinity,
            spec,
        })
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn scheduler_name(&self) -> &str {
        self.spec
            .scheduler_name
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_SCHEDULER)
    }

    pub fn tolerations(&self) -> &[Toleration] {
        self.spec.tolerations.as_deref().unwrap_or_default()
    }
}

/// A node and what is placed on it.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    pub name: String,
    /// False while only pods name this node (the Node is not, or no
    /// longer, known).
    pub present: bool,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    pub pods: BTreeMap<String, Arc<PodInfo>>,
    pub requested: Resources,
    pub non_zero_requested: [i64; 2],
    pub used_ports: Vec<HostPort>,
    pub pods_with_affinity: usize,
    /// Pods per `ownerReferences[0].uid`.
    pub owners: HashMap<String, usize>,
}

impl NodeInfo {
    pub fn set_node(&mut self, node: &Node) {
        self.present = true;
        self.name = node.metadata.name.clone().unwrap_or_default();
        self.labels = node.metadata.labels.clone().unwrap_or_default();
        let spec = node.spec.as_ref();
        self.taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        self.allocatable = node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .map(Resources::from_list)
            .unwrap_or_default();
    }

    pub fn add_pod(&mut self, p: Arc<PodInfo>) {
        if let Some(old) = self.pods.remove(&p.uid) {
            self.account(&old, -1);
        }
        self.account(&p, 1);
        self.pods.insert(p.uid.clone(), p);
    }

    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let old = self.pods.remove(uid)?;
        self.account(&old, -1);
        Some(old)
    }

    fn account(&mut self, p: &PodInfo, sign: i64) {
        if sign > 0 {
            self.requested.add(&p.requests.requests);
            self.used_ports.extend(p.host_ports.iter().cloned());
        } else {
            self.requested.sub(&p.requests.requests);
            for hp in &p.host_ports {
                if let Some(i) = self.used_ports.iter().position(|u| u == hp) {
                    self.used_ports.swap_remove(i);
                }
            }
        }
        self.non_zero_requested[0] += sign * p.requests.non_zero_milli_cpu;
        self.non_zero_requested[1] += sign * p.requests.non_zero_memory;
        if p.has_affinity {
            self.pods_with_affinity = (self.pods_with_affinity as i64 + sign) as usize;
        }
        if let Some(o) = &p.owner_uid {
            let e = self.owners.entry(o.clone()).or_default();
            *e = (*e as i64 + sign).max(0) as usize;
            if *e == 0 {
                self.owners.remove(o);
            }
        }
    }
}

/// Nodes by name, and where each placed pod is.
#[derive(Debug, Default)]
pub struct ClusterCache {
    pub nodes: BTreeMap<String, NodeInfo>,
    /// uid → node name, for every pod placed (bound or assumed).
    pub placed: HashMap<String, String>,
    /// Pods assumed bound whose binding the watch has not shown yet.
    pub assumed: HashMap<String, String>,
    /// Pods with affinity terms anywhere in the cluster (a fast path).
    pub pods_with_affinity: usize,
    pub namespaces: HashMap<String, BTreeMap<String, String>>,
}

impl ClusterCache {
    pub fn upsert_node(&mut self, node: &Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let e = self.nodes.entry(name.clone()).or_insert_with(|| NodeInfo {
            name,
            ..Default::default()
        });
        e.set_node(node);
    }

    pub fn remove_node(&mut self, name: &str) {
        if let Some(n) = self.nodes.get_mut(name) {
            if n.pods.is_empty() {
                self.nodes.remove(name);
            } else {
                n.present = false;
            }
        }
    }

    /// Places a pod (bound, or assumed by this scheduler) on its node.
    pub fn place(&mut self, p: Arc<PodInfo>, node: &str) {
        self.unplace(&p.uid);
        if p.has_affinity {
            self.pods_with_affinity += 1;
        }
        self.placed.insert(p.uid.clone(), node.to_string());
        self.nodes
            .entry(node.to_string())
            .or_insert_with(|| NodeInfo {
                name: node.to_string(),
                ..Default::default()
            })
            .add_pod(p);
    }

    /// Takes a pod off its node; whether it was placed.
    pub fn unplace(&mut self, uid: &str) -> bool {
        let Some(node) = self.placed.remove(uid) else {
            return false;
        };
        self.assumed.remove(uid);
        if let Some(n) = self.nodes.get_mut(&node) {
            if let Some(old) = n.remove_pod(uid) {
                if old.has_affinity {
                    self.pods_with_affinity = self.pods_with_affinity.saturating_sub(1);
                }
            }
            if !n.present && n.pods.is_empty() {
                self.nodes.remove(&node);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c"}]);
        serde_json::from_value(json!({"metadata": {"name": "p", "uid": "u"}, "spec": spec}))
            .expect("pod")
    }

    #[test]
    fn priority_comes_from_the_class() {
        let mut classes = PriorityClasses::default();
        classes.by_name.insert("high".into(), (1000, None));
        classes
            .by_name
            .insert("polite".into(), (500, Some("Never".into())));
        // The class wins over the 0 kedge's API server defaults.
        let p = PodInfo::from_pod(
            &pod(json!({"priorityClassName": "high", "priority": 0})),
            &classes,
        )
        .expect("info");
        assert_eq!(p.priority, 1000);
        assert!(!p.preempt_never);
        let p = PodInfo::from_pod(
            &pod(
                json!({"priorityClassName": "polite", "preemptionPolicy": "PreemptLowerPriority"}),
            ),
            &classes,
        )
        .expect("info");
        assert_eq!(p.priority, 500);
        assert!(p.preempt_never);
        let p = PodInfo::from_pod(
            &pod(json!({"priorityClassName": "system-node-critical"})),
            &classes,
        )
        .expect("info");
        assert_eq!(p.priority, 2_000_001_000);
        // No class: the global default, else spec.priority.
        let p = PodInfo::from_pod(&pod(json!({"priority": 7})), &classes).expect("info");
        assert_eq!(p.priority, 7);
        classes.global_default = Some(("dflt".into(), 100, None));
        let p = PodInfo::from_pod(&pod(json!({"priority": 0})), &classes).expect("info");
        assert_eq!(p.priority, 100);
    }

    #[test]
    fn node_info_accounts_and_releases_pods() {
        let mut c = ClusterCache::default();
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "status": {"allocatable": {"cpu": "2", "memory": "1Gi", "pods": "10"}},
        }))
        .expect("node");
        c.upsert_node(&node);
        let mut spec = json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "250m"}},
                                               "ports": [{"containerPort": 80, "hostPort": 80}]}]});
        spec["nodeName"] = json!("n");
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "uid": "u", "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "o", "uid": "owner"}]},
            "spec": spec,
        }))
        .expect("pod");
        let info = Arc::new(PodInfo::from_pod(&p, &PriorityClasses::default()).expect("info"));
        c.place(info.clone(), "n");
        c.place(info, "n"); // idempotent
        let n = &c.nodes["n"];
        assert_eq!(n.requested.milli_cpu, 250);
        assert_eq!(n.non_zero_requested[1], resources::DEFAULT_MEMORY_REQUEST);
        assert_eq!(n.used_ports.len(), 1);
        assert_eq!(n.owners["owner"], 1);
        assert!(c.unplace("u"));
        let n = &c.nodes["n"];
        assert_eq!(
            (n.requested.milli_cpu, n.used_ports.len(), n.owners.len()),
            (0, 0, 0)
        );
        assert!(!c.unplace("u"));
        // A node removed while pods still name it lingers until they go.
        c.remove_node("n");
        assert!(!c.nodes.contains_key("n"));
    }
}
