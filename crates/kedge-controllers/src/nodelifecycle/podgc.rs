//! The parts of upstream's pod garbage collector (`pkg/controller/podgc`)
//! that a lost node needs: pods bound to a node that no longer exists
//! (after a quarantine, in case the node is only being re-created), and
//! terminating pods on a node that is not Ready and carries the
//! `node.kubernetes.io/out-of-service` taint, are force-deleted, with the
//! `DisruptionTarget` condition first; terminating pods that were never
//! scheduled go at once.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;
use tokio::time::Instant;

use super::taints::{self, TAINT_OUT_OF_SERVICE};
use super::Caches;
use crate::util::informer;

/// How long a pod's node must be missing before the pod goes (upstream
/// re-reads the node after 40 s).
const ORPHAN_QUARANTINE: Duration = Duration::from_secs(40);
/// How often the collector looks (upstream: 20 s).
const GC_PERIOD: Duration = Duration::from_secs(10);

pub(crate) struct PodGc {
    client: kube::Client,
    /// Node name -> when this collector first saw it missing.
    missing_since: HashMap<String, Instant>,
    next: Instant,
}

impl PodGc {
    pub fn new(client: kube::Client) -> Self {
        PodGc {
            client,
            missing_since: HashMap::new(),
            next: Instant::now(),
        }
    }

    pub async fn pass(&mut self, caches: &Caches) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next = now + GC_PERIOD;
        let mut still_missing = HashMap::new();
        for pod in caches.pods.state() {
            let node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            let terminating = pod.metadata.deletion_timestamp.is_some();
            if node.is_empty() {
                if terminating {
                    self.force_delete(&pod, None).await;
                }
                continue;
            }
            match caches.nodes.get(&ObjectRef::new(&node)) {
                None => {
                    let since = *self.missing_since.get(&node).unwrap_or(&now);
                    still_missing.insert(node.clone(), since);
                    if now.duration_since(since) >= ORPHAN_QUARANTINE {
                        self.force_delete(&pod, Some("PodGC: node no longer exists"))
                            .await;
                    }
                }
                Some(n) => {
                    let out_of_service = n
                        .spec
                        .as_ref()
                        .and_then(|s| s.taints.as_ref())
                        .is_some_and(|ts| ts.iter().any(|t| t.key == TAINT_OUT_OF_SERVICE));
                    if terminating && out_of_service && taints::ready_status(&n) != Some("True") {
                        self.force_delete(&pod, Some("PodGC: node is out-of-service"))
                            .await;
                    }
                }
            }
        }
        self.missing_since = still_missing;
    }

    async fn force_delete(&self, pod: &Pod, why: Option<&str>) {
        let (ns, name) = informer::key_of(pod);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let terminal = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if let (Some(message), false) = (why, terminal) {
            let patch = json!({
                "status": {"conditions": [{
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "DeletionByPodGC",
                    "message": message,
                    "lastTransitionTime": super::now_time(),
                }]},
            });
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "cannot add the DisruptionTarget condition");
            }
        }
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(kube::api::Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => {
                tracing::info!(pod = %format!("{ns}/{name}"), reason = why.unwrap_or("unscheduled and terminating"), "force-deleted pod")
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "cannot force-delete the pod")
            }
        }
    }
}
