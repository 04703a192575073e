//! The Endpoints controller (upstream `pkg/controller/endpoint`), and the
//! loop that drives it together with the EndpointSlice controller
//! ([`crate::endpointslice`]): both follow the same Services and Pods, so on
//! an edge box they share one set of caches instead of two.
//!
//! For every Service with a selector the controller keeps an Endpoints
//! object of the same name: each selected pod with an IP is an address
//! (`notReadyAddresses` while not Ready, unless the Service publishes
//! not-ready addresses), with its node, its hostname when the pod's
//! subdomain is the Service, and a `targetRef`; ports are the Service's
//! ports with named target ports resolved in each pod. Services without a
//! selector (such as `default/kubernetes`, kept by the API server) are left
//! alone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Node, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use tokio::time::Instant;

use crate::endpointslice;
use crate::util::informer;
use crate::util::pods::{is_pod_ready, phase};

/// Label upstream (1.33) puts on the Endpoints its controller manages.
pub const ENDPOINTS_MANAGED_BY_LABEL: &str = "endpoints.kubernetes.io/managed-by";
pub const ENDPOINTS_CONTROLLER_NAME: &str = "endpoint-controller";
/// Label of headless Services' Endpoints and EndpointSlices.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

#[derive(Debug, thiserror::Error)]
pub enum EndpointsError {
    #[error("{what} {namespace}/{name}: {source}")]
    Api {
        what: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the cache of {namespace}/{name}'s slices is behind this controller's writes")]
    StaleCache { namespace: String, name: String },
    #[error("node {node} of pod {namespace}/{pod} is not known yet")]
    UnknownNode {
        namespace: String,
        pod: String,
        node: String,
    },
}

pub type Result<T> = std::result::Result<T, EndpointsError>;

pub(crate) fn api_err(
    what: &'static str,
    namespace: &str,
    name: &str,
) -> impl FnOnce(kube::Error) -> EndpointsError {
    let (namespace, name) = (namespace.to_string(), name.to_string());
    move |source| EndpointsError::Api {
        what,
        namespace,
        name,
        source,
    }
}

/// Upstream's `endpointsliceutil.ShouldPodBeInEndpoints`.
pub(crate) fn should_pod_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let restart = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    let terminal = match restart {
        "Never" => matches!(phase(pod), "Failed" | "Succeeded"),
        "OnFailure" => phase(pod) == "Succeeded",
        _ => false,
    };
    if terminal {
        return false;
    }
    if pod_ips(pod).is_empty() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

fn pod_ips(pod: &Pod) -> Vec<String> {
    let Some(st) = pod.status.as_ref() else {
        return Vec::new();
    };
    let mut ips: Vec<String> = st
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.clone())
        .filter(|ip| !ip.is_empty())
        .collect();
    if ips.is_empty() {
        if let Some(ip) = st.pod_ip.as_ref().filter(|s| !s.is_empty()) {
            ips.push(ip.clone());
        }
    }
    ips
}

/// The pod's address in the Service's primary IP family.
pub(crate) fn pod_ip_for(service: &Service, pod: &Pod) -> Option<String> {
    let want_v6 = service
        .spec
        .as_ref()
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first())
        .map(|f| f == "IPv6")
        .unwrap_or_else(|| {
            service
                .spec
                .as_ref()
                .and_then(|s| s.cluster_ip.as_deref())
                .is_some_and(|ip| ip.contains(':'))
        });
    pod_ips(pod)
        .into_iter()
        .find(|ip| ip.contains(':') == want_v6)
}

/// Upstream's `podutil.FindPort`: the pod's port for a Service port.
pub(crate) fn find_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    let protocol = sp.protocol.as_deref().unwrap_or("TCP");
    match &sp.target_port {
        Some(IntOrString::String(name)) => {
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
        Some(IntOrString::Int(n)) => Some(*n),
        None => Some(sp.port),
    }
}

/// Whether a Service's selector selects these labels; `None` for Services
/// without a selector (their endpoints are not ours).
pub(crate) fn selects(
    service: &Service,
    labels: Option<&BTreeMap<String, String>>,
) -> Option<bool> {
    let sel = service.spec.as_ref()?.selector.as_ref()?;
    Some(
        sel.iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v)),
    )
}

pub(crate) fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// The pod's DNS hostname in this Service: upstream sets it only when the
/// pod's subdomain names the Service.
pub(crate) fn hostname_for(service: &Service, pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let host = spec.hostname.as_ref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == service.metadata.name.as_deref()
        && pod.metadata.namespace == service.metadata.namespace)
        .then(|| host.clone())
}

pub(crate) fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The subsets of a Service's Endpoints (upstream's `syncService`, then
/// `RepackSubsets`): addresses grouped by identical port sets, sorted.
pub fn desired_subsets(service: &Service, pods: &[&Pod]) -> Vec<EndpointSubset> {
    let tolerate_unready = service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let ports: Vec<ServicePort> = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    // port set -> (ready, not ready)
    let mut groups: BTreeMap<Vec<PortKey>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    for pod in pods {
        if !tolerate_unready && pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if !should_pod_be_in_endpoints(pod, tolerate_unready) {
            continue;
        }
        let Some(ip) = pod_ip_for(service, pod) else {
            continue;
        };
        let address = EndpointAddress {
            ip,
            hostname: hostname_for(service, pod),
            node_name: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            target_ref: Some(pod_ref(pod)),
        };
        let mut set: Vec<PortKey> = Vec::new();
        if ports.is_empty() {
            if !is_headless(service) {
                continue;
            }
        } else {
            for sp in &ports {
                let Some(port) = find_port(pod, sp) else {
                    tracing::debug!(pod = ?pod.metadata.name, port = ?sp.name, "no suitable port");
                    continue;
                };
                set.push(PortKey {
                    name: sp.name.clone().unwrap_or_default(),
                    port,
                    protocol: sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    app_protocol: sp.app_protocol.clone(),
                });
            }
            if set.is_empty() {
                continue;
            }
        }
        set.sort();
        set.dedup();
        let group = groups.entry(set).or_default();
        if tolerate_unready || is_pod_ready(pod) {
            group.0.push(address);
        } else {
            group.1.push(address);
        }
    }
    groups
        .into_iter()
        .map(|(ports, (mut ready, mut not_ready))| {
            sort_addresses(&mut ready);
            sort_addresses(&mut not_ready);
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty())
                    .then(|| ports.into_iter().map(PortKey::into_port).collect()),
            }
        })
        .collect()
}

fn sort_addresses(a: &mut [EndpointAddress]) {
    a.sort_by(|x, y| {
        (
            x.ip.as_str(),
            x.target_ref.as_ref().and_then(|r| r.uid.as_deref()),
        )
            .cmp(&(
                y.ip.as_str(),
                y.target_ref.as_ref().and_then(|r| r.uid.as_deref()),
            ))
    });
}

/// One resolved port of an endpoint, ordered for grouping.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PortKey {
    pub name: String,
    pub port: i32,
    pub protocol: String,
    pub app_protocol: Option<String>,
}

impl PortKey {
    fn into_port(self) -> EndpointPort {
        EndpointPort {
            name: (!self.name.is_empty()).then_some(self.name),
            port: self.port,
            protocol: Some(self.protocol),
            app_protocol: self.app_protocol,
        }
    }
}

/// The labels of a Service's Endpoints: the Service's own, plus upstream's.
fn desired_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    labels.insert(
        ENDPOINTS_MANAGED_BY_LABEL.into(),
        ENDPOINTS_CONTROLLER_NAME.into(),
    );
    labels
}

fn normalized(subsets: &Option<Vec<EndpointSubset>>) -> Vec<EndpointSubset> {
    subsets.clone().unwrap_or_default()
}

/// Make the Endpoints of one Service what its pods say.
async fn sync_endpoints(
    client: &kube::Client,
    service: &Service,
    pods: &[&Pod],
    current: Option<&Endpoints>,
) -> Result<()> {
    let (ns, name) = informer::key_of(service);
    let api: Api<Endpoints> = Api::namespaced(client.clone(), &ns);
    let subsets = desired_subsets(service, pods);
    let labels = desired_labels(service);
    match current {
        None => {
            let ep = Endpoints {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    ..Default::default()
                },
                subsets: (!subsets.is_empty()).then_some(subsets),
            };
            match api.create(&PostParams::default(), &ep).await {
                Ok(_) => Ok(()),
                // Our cache is behind: the watch brings it and we sync again.
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                Err(e) => Err(api_err("endpoints", &ns, &name)(e)),
            }
        }
        Some(cur) => {
            let cur_labels = cur.metadata.labels.clone().unwrap_or_default();
            if normalized(&cur.subsets) == subsets && cur_labels == labels {
                return Ok(());
            }
            let mut ep = cur.clone();
            ep.metadata.labels = Some(labels);
            ep.subsets = (!subsets.is_empty()).then_some(subsets);
            ep.metadata.managed_fields = None;
            api.replace(&name, &PostParams::default(), &ep)
                .await
                .map(|_| ())
                .map_err(api_err("endpoints", &ns, &name))
        }
    }
}

/// The Service is gone: remove the Endpoints this controller made for it.
async fn delete_endpoints(client: &kube::Client, current: &Endpoints) -> Result<()> {
    let (ns, name) = informer::key_of(current);
    let ours = current
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(ENDPOINTS_MANAGED_BY_LABEL))
        .is_some_and(|v| v == ENDPOINTS_CONTROLLER_NAME);
    if !ours {
        return Ok(());
    }
    let api: Api<Endpoints> = Api::namespaced(client.clone(), &ns);
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(api_err("endpoints", &ns, &name)(e)),
    }
}

/// What the caches hold, as the reconcilers read it.
pub(crate) struct Caches {
    pub services: Store<Service>,
    pub pods: Store<Pod>,
    pub endpoints: Store<Endpoints>,
    pub slices: Store<EndpointSlice>,
    pub nodes: Store<Node>,
    pub expectations: endpointslice::Expectations,
}

/// Reconcile one Service key: its Endpoints and its EndpointSlices.
async fn sync_service(client: &kube::Client, c: &Caches, ns: &str, name: &str) -> Result<()> {
    let service = c.services.get(&ObjectRef::new(name).within(ns));
    let current = c.endpoints.get(&ObjectRef::new(name).within(ns));
    let Some(service) = service else {
        if let Some(cur) = current {
            delete_endpoints(client, &cur).await?;
        }
        return endpointslice::delete_for_service(client, &c.slices, ns, name).await;
    };
    if service
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_none()
        || service.metadata.deletion_timestamp.is_some()
    {
        return Ok(());
    }
    let pods: Vec<std::sync::Arc<Pod>> = c.pods.state_filter(|p| {
        p.metadata.namespace.as_deref() == Some(ns)
            && selects(&service, p.metadata.labels.as_ref()) == Some(true)
    });
    let mut pods: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let a = sync_endpoints(client, &service, &pods, current.as_deref()).await;
    let b = endpointslice::sync(client, c, &service, &pods).await;
    a.and(b)
}

enum Change {
    Service(String, String),
    Pod {
        ns: String,
        name: String,
        labels: Option<BTreeMap<String, String>>,
    },
    PodGone(String, String),
    /// Endpoints or slices changed under us: check their Service.
    Owned(String, String),
    /// A cache was (re)listed.
    Relisted,
    Other,
}

fn service_change(ev: watcher::Event<Service>) -> Change {
    match ev {
        watcher::Event::Apply(s) | watcher::Event::Delete(s) | watcher::Event::InitApply(s) => {
            let (ns, name) = informer::key_of(&s);
            Change::Service(ns, name)
        }
        watcher::Event::InitDone => Change::Relisted,
        watcher::Event::Init => Change::Other,
    }
}

fn pod_change(ev: watcher::Event<Pod>) -> Change {
    match ev {
        watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
            let (ns, name) = informer::key_of(&p);
            Change::Pod {
                ns,
                name,
                labels: p.metadata.labels.clone(),
            }
        }
        watcher::Event::Delete(p) => {
            let (ns, name) = informer::key_of(&p);
            Change::PodGone(ns, name)
        }
        watcher::Event::InitDone => Change::Relisted,
        watcher::Event::Init => Change::Other,
    }
}

/// Runs the Endpoints and EndpointSlice controllers until dropped.
pub async fn run(client: kube::Client) {
    let (services, svc_ev) = informer::watch_all::<Service>(&client, watcher::Config::default());
    let (pods, pod_ev) = informer::watch_all::<Pod>(&client, watcher::Config::default());
    let (endpoints, ep_ev) = informer::watch_all::<Endpoints>(
        &client,
        watcher::Config::default().labels(&format!(
            "{ENDPOINTS_MANAGED_BY_LABEL}={ENDPOINTS_CONTROLLER_NAME}"
        )),
    );
    let (slices, slice_ev) = informer::watch_all::<EndpointSlice>(
        &client,
        watcher::Config::default().labels(&format!(
            "{}={}",
            endpointslice::MANAGED_BY_LABEL,
            endpointslice::CONTROLLER_NAME
        )),
    );
    let (nodes, node_ev) = informer::watch_all::<Node>(&client, watcher::Config::default());
    let caches = Caches {
        services,
        pods,
        endpoints,
        slices,
        nodes,
        expectations: Default::default(),
    };
    let owned = |ns: Option<String>, name: String| Change::Owned(ns.unwrap_or_default(), name);
    let ep_changes = ep_ev.map(move |ev| match ev {
        watcher::Event::Apply(e) | watcher::Event::Delete(e) => owned(
            e.metadata.namespace.clone(),
            e.metadata.name.clone().unwrap_or_default(),
        ),
        watcher::Event::InitDone => Change::Relisted,
        _ => Change::Other,
    });
    let slice_changes = slice_ev.map(|ev| match ev {
        watcher::Event::Apply(s) | watcher::Event::Delete(s) => {
            match s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(endpointslice::SERVICE_NAME_LABEL))
            {
                Some(svc) => Change::Owned(
                    s.metadata.namespace.clone().unwrap_or_default(),
                    svc.clone(),
                ),
                None => Change::Other,
            }
        }
        watcher::Event::InitDone => Change::Relisted,
        _ => Change::Other,
    });
    let node_changes = node_ev.map(|ev| match ev {
        watcher::Event::InitDone => Change::Relisted,
        // A node appearing may admit pods that were waiting for it.
        watcher::Event::Apply(_) => Change::Relisted,
        _ => Change::Other,
    });
    let mut changes = futures::stream::select_all(vec![
        svc_ev.map(service_change).boxed(),
        pod_ev.map(pod_change).boxed(),
        ep_changes.boxed(),
        slice_changes.boxed(),
        node_changes.boxed(),
    ]);
    const CACHES: usize = 5;
    let mut listed = 0usize;
    let mut dirty: BTreeSet<(String, String)> = BTreeSet::new();
    let mut all_dirty = false;
    let mut pod_labels: HashMap<(String, String), Option<BTreeMap<String, String>>> =
        HashMap::new();
    let mut retry: BTreeMap<(String, String), (Instant, u32)> = BTreeMap::new();
    const RESYNC: Duration = Duration::from_secs(60);
    let mut next_resync = Instant::now() + RESYNC;
    let mut flush_at: Option<Instant> = None;
    loop {
        let ready = listed >= CACHES;
        let wake = if ready && (all_dirty || !dirty.is_empty()) {
            // Gather a burst of changes before writing.
            *flush_at.get_or_insert_with(|| Instant::now() + Duration::from_millis(20))
        } else {
            retry
                .values()
                .map(|(at, _)| *at)
                .min()
                .unwrap_or(next_resync)
                .min(next_resync)
        };
        tokio::select! {
            ch = changes.next() => {
                let Some(ch) = ch else { return };
                match ch {
                    Change::Service(ns, name) | Change::Owned(ns, name) => {
                        dirty.insert((ns, name));
                    }
                    Change::Pod { ns, name, labels } => {
                        let old = pod_labels.insert((ns.clone(), name), labels.clone()).flatten();
                        for s in caches.services.state() {
                            if s.metadata.namespace.as_deref() != Some(ns.as_str()) {
                                continue;
                            }
                            let hit = selects(&s, labels.as_ref()) == Some(true)
                                || selects(&s, old.as_ref()) == Some(true);
                            if hit {
                                dirty.insert(informer::key_of(s.as_ref()));
                            }
                        }
                    }
                    Change::PodGone(ns, name) => {
                        let old = pod_labels.remove(&(ns.clone(), name)).flatten();
                        for s in caches.services.state() {
                            if s.metadata.namespace.as_deref() == Some(ns.as_str())
                                && selects(&s, old.as_ref()) == Some(true)
                            {
                                dirty.insert(informer::key_of(s.as_ref()));
                            }
                        }
                    }
                    Change::Relisted => {
                        listed += 1;
                        all_dirty = true;
                    }
                    Change::Other => {}
                }
                continue;
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
        if !ready {
            continue;
        }
        flush_at = None;
        let now = Instant::now();
        if now >= next_resync {
            all_dirty = true;
            next_resync = now + RESYNC;
        }
        if all_dirty {
            all_dirty = false;
            for s in caches.services.state() {
                dirty.insert(informer::key_of(s.as_ref()));
            }
            for e in caches.endpoints.state() {
                dirty.insert(informer::key_of(e.as_ref()));
            }
            for s in caches.slices.state() {
                if let Some(svc) = s
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(endpointslice::SERVICE_NAME_LABEL))
                {
                    dirty.insert((
                        s.metadata.namespace.clone().unwrap_or_default(),
                        svc.clone(),
                    ));
                }
            }
        }
        let due: Vec<(String, String)> = retry
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        dirty.extend(due);
        for (ns, name) in std::mem::take(&mut dirty) {
            match sync_service(&client, &caches, &ns, &name).await {
                Ok(()) => {
                    retry.remove(&(ns, name));
                }
                Err(e) => {
                    let attempts = retry.get(&(ns.clone(), name.clone())).map_or(0, |r| r.1) + 1;
                    let backoff = Duration::from_millis(100 * 2u64.pow(attempts.min(8)));
                    tracing::debug!(service = %format!("{ns}/{name}"), error = %e, "endpoints sync failed; retrying");
                    retry.insert((ns, name), (Instant::now() + backoff, attempts));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
