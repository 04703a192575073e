//! Taint-based eviction (upstream `pkg/controller/tainteviction`): a pod on
//! a node with NoExecute taints is deleted at once when some taint is not
//! tolerated, and after the smallest `tolerationSeconds` of the tolerations
//! used when all are (never, when none of them has a limit). The clock for
//! a pod starts when its eviction is first scheduled; it is cancelled when
//! the taints go or the pod comes to tolerate them forever. Before the
//! delete the pod gets upstream's `DisruptionTarget` condition and an event
//! `TaintManagerEviction`.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Taint};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::Resource;
use serde_json::json;
use tokio::time::Instant;

use super::taints::{self, NO_EXECUTE};
use super::Caches;
use crate::util::informer;

#[derive(Debug, Clone)]
struct Scheduled {
    ns: String,
    name: String,
    created: Instant,
    fire_at: Instant,
}

pub(crate) struct TaintEviction {
    client: kube::Client,
    recorder: Recorder,
    /// By pod UID.
    scheduled: HashMap<String, Scheduled>,
    /// Pods already deleted by us (UID), so a slow watch does not make us
    /// delete twice.
    evicted: HashMap<String, Instant>,
}

impl TaintEviction {
    pub fn new(client: kube::Client) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "taint-eviction-controller".into(),
                instance: None,
            },
        );
        TaintEviction {
            client,
            recorder,
            scheduled: HashMap::new(),
            evicted: HashMap::new(),
        }
    }

    /// When the next scheduled eviction is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.scheduled.values().map(|s| s.fire_at).min()
    }

    /// Schedule, cancel and carry out evictions for every bound pod.
    pub async fn pass(&mut self, caches: &Caches) {
        let now = Instant::now();
        self.evicted
            .retain(|_, at| now.duration_since(*at) < Duration::from_secs(60));
        let mut evict_now: Vec<(String, String, String)> = Vec::new();
        for pod in caches.pods.state() {
            let Some(node) = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty())
            else {
                continue;
            };
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if self.evicted.contains_key(&uid) {
                continue;
            }
            let (ns, name) = informer::key_of(pod.as_ref());
            let taints: Vec<Taint> = caches
                .nodes
                .get(&ObjectRef::new(&node))
                .and_then(|n| n.spec.as_ref().and_then(|s| s.taints.clone()))
                .unwrap_or_default();
            let no_execute: Vec<&Taint> =
                taints.iter().filter(|t| t.effect == NO_EXECUTE).collect();
            if no_execute.is_empty() {
                self.cancel(&uid, &pod).await;
                continue;
            }
            let tolerations = pod
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.clone())
                .unwrap_or_default();
            match taints::toleration_time(&tolerations, &no_execute) {
                None => evict_now.push((uid.clone(), ns, name)),
                Some(None) => self.cancel(&uid, &pod).await,
                Some(Some(d)) => {
                    let created = self.scheduled.get(&uid).map_or(now, |s| s.created);
                    self.scheduled.insert(
                        uid.clone(),
                        Scheduled {
                            ns,
                            name,
                            created,
                            fire_at: created + d,
                        },
                    );
                }
            }
        }
        // Pods gone from the cache need no eviction.
        let live: std::collections::HashSet<String> = caches
            .pods
            .state()
            .iter()
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        self.scheduled.retain(|uid, _| live.contains(uid));
        let due: Vec<(String, Scheduled)> = self
            .scheduled
            .iter()
            .filter(|(_, s)| s.fire_at <= now)
            .map(|(u, s)| (u.clone(), s.clone()))
            .collect();
        for (uid, s) in due {
            self.scheduled.remove(&uid);
            evict_now.push((uid, s.ns, s.name));
        }
        for (uid, ns, name) in evict_now {
            let was = self.scheduled.remove(&uid);
            if self.evict(&caches.pods, &uid, &ns, &name).await {
                self.evicted.insert(uid, Instant::now());
            } else {
                // Try again shortly, keeping the pod's clock.
                let retry = Instant::now() + Duration::from_secs(1);
                let created = was.map_or(now, |s| s.created);
                self.scheduled.insert(
                    uid,
                    Scheduled {
                        ns,
                        name,
                        created,
                        fire_at: retry,
                    },
                );
            }
        }
    }

    async fn cancel(&mut self, uid: &str, pod: &Pod) {
        if self.scheduled.remove(uid).is_some() {
            let (ns, name) = informer::key_of(pod);
            self.event(pod, "Cancelling deletion of Pod", &ns, &name, "Cancel")
                .await;
        }
    }

    async fn event(&self, pod: &Pod, what: &str, ns: &str, name: &str, action: &str) {
        let ev = Event {
            type_: EventType::Normal,
            reason: "TaintManagerEviction".into(),
            note: Some(format!("{what} {ns}/{name}")),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &pod.object_ref(&())).await {
            tracing::debug!(error = %e, "cannot record the eviction event");
        }
    }

    /// Upstream's `addConditionAndDeletePod`. `true` once the delete was
    /// accepted (or the pod is gone).
    async fn evict(
        &self,
        pods: &kube::runtime::reflector::Store<Pod>,
        uid: &str,
        ns: &str,
        name: &str,
    ) -> bool {
        let Some(pod) = pods.get(&ObjectRef::new(name).within(ns)) else {
            return true;
        };
        if pod.metadata.uid.as_deref() != Some(uid) {
            return true;
        }
        tracing::info!(pod = %format!("{ns}/{name}"), "evicting pod from a NoExecute-tainted node");
        self.event(&pod, "Marking for deletion Pod", ns, name, "Delete")
            .await;
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let condition = json!({
            "status": {"conditions": [{
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint",
                "lastTransitionTime": super::now_time(),
            }]},
        });
        if let Err(e) = api
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(&condition))
            .await
        {
            tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "cannot add the DisruptionTarget condition");
        }
        let dp = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(name, &dp).await {
            Ok(_) => true,
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => true,
            Err(e) => {
                tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "cannot evict the pod");
                false
            }
        }
    }
}
