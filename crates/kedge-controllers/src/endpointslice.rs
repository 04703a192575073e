//! The EndpointSlice controller (upstream `pkg/controller/endpointslice`):
//! for every Service with a selector, `discovery.k8s.io/v1` EndpointSlices
//! labelled `kubernetes.io/service-name` and managed by
//! `endpointslice-controller.k8s.io`, owned by the Service, one group of
//! slices per distinct port set and at most 100 endpoints per slice. Each
//! endpoint carries upstream's conditions: `serving` (the pod is Ready),
//! `terminating` (it is being deleted) and `ready` (serving and not
//! terminating, or always when the Service publishes not-ready addresses).
//! A Service with no endpoints keeps one empty placeholder slice.
//!
//! Existing slices are rewritten in place where they can be (fewest writes),
//! created when more are needed and deleted when no longer needed. It runs
//! in [`crate::endpoints`]' loop, sharing its caches.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::endpoints::{
    api_err, find_port, hostname_for, is_headless, pod_ip_for, pod_ref, should_pod_be_in_endpoints,
    Caches, EndpointsError, PortKey, Result, HEADLESS_LABEL,
};
use crate::util::pods::is_pod_ready;

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// Upstream's `--max-endpoints-per-slice` default.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Endpoints by the port set they serve.
pub type Groups = BTreeMap<Vec<PortKey>, Vec<Endpoint>>;

/// The endpoints of a Service grouped by port set, each group's endpoints
/// sorted by address. Pods on nodes not (yet) known are left out and named
/// in the second value, as upstream skips them until their node appears.
pub fn desired_groups(
    service: &Service,
    pods: &[&Pod],
    zone_of: impl Fn(&str) -> Option<Option<String>>,
) -> (Groups, Vec<(String, String)>) {
    let publish_not_ready = service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let mut groups: BTreeMap<Vec<PortKey>, Vec<Endpoint>> = BTreeMap::new();
    let mut missing_nodes = Vec::new();
    for pod in pods {
        if !should_pod_be_in_endpoints(pod, true) {
            continue;
        }
        let Some(ip) = pod_ip_for(service, pod) else {
            continue;
        };
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        let zone = match &node {
            Some(n) => match zone_of(n) {
                Some(z) => z,
                None => {
                    missing_nodes.push((pod.metadata.name.clone().unwrap_or_default(), n.clone()));
                    continue;
                }
            },
            None => None,
        };
        let mut set: Vec<PortKey> = ports
            .iter()
            .filter_map(|sp| {
                find_port(pod, sp).map(|port| PortKey {
                    name: sp.name.clone().unwrap_or_default(),
                    port,
                    protocol: sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        set.sort();
        set.dedup();
        let serving = is_pod_ready(pod);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let ready = publish_not_ready || (serving && !terminating);
        groups.entry(set).or_default().push(Endpoint {
            addresses: vec![ip],
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname: hostname_for(service, pod),
            node_name: node,
            zone,
            target_ref: Some(pod_ref(pod)),
            ..Default::default()
        });
    }
    for eps in groups.values_mut() {
        sort_endpoints(eps);
    }
    (groups, missing_nodes)
}

fn sort_endpoints(eps: &mut [Endpoint]) {
    eps.sort_by(|a, b| {
        let ka = (
            a.addresses.first(),
            a.target_ref.as_ref().and_then(|r| r.uid.as_ref()),
        );
        let kb = (
            b.addresses.first(),
            b.target_ref.as_ref().and_then(|r| r.uid.as_ref()),
        );
        ka.cmp(&kb)
    });
}

fn slice_ports(set: &[PortKey]) -> Vec<EndpointPort> {
    set.iter()
        .map(|p| EndpointPort {
            name: Some(p.name.clone()),
            port: Some(p.port),
            protocol: Some(p.protocol.clone()),
            app_protocol: p.app_protocol.clone(),
        })
        .collect()
}

fn port_set_of(slice: &EndpointSlice) -> Vec<PortKey> {
    let mut set: Vec<PortKey> = slice
        .ports
        .iter()
        .flatten()
        .map(|p| PortKey {
            name: p.name.clone().unwrap_or_default(),
            port: p.port.unwrap_or(0),
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            app_protocol: p.app_protocol.clone(),
        })
        .collect();
    set.sort();
    set
}

fn address_type(service: &Service) -> &'static str {
    let v6 = service
        .spec
        .as_ref()
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first())
        .is_some_and(|f| f == "IPv6");
    if v6 {
        "IPv6"
    } else {
        "IPv4"
    }
}

fn desired_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    // Reserved labels are the controller's, whatever the Service says.
    labels.remove(MANAGED_BY_LABEL);
    labels.remove(SERVICE_NAME_LABEL);
    labels.remove(HEADLESS_LABEL);
    labels.insert(
        SERVICE_NAME_LABEL.into(),
        service.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(MANAGED_BY_LABEL.into(), CONTROLLER_NAME.into());
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

fn owner(service: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: service.metadata.name.clone().unwrap_or_default(),
        uid: service.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn slices_of(store: &Store<EndpointSlice>, ns: &str, service: &str) -> Vec<EndpointSlice> {
    let mut v: Vec<EndpointSlice> = store
        .state_filter(|s| {
            s.metadata.namespace.as_deref() == Some(ns)
                && s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL))
                    .is_some_and(|n| n == service)
                && s.metadata.deletion_timestamp.is_none()
        })
        .into_iter()
        .map(|s| s.as_ref().clone())
        .collect();
    v.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    v
}

/// What this controller wrote and its cache has not shown yet (upstream's
/// `endpointSliceTracker`): until the cache catches up, a sync would work
/// from stale slices and could, say, create a second slice for the same
/// endpoints.
#[derive(Default)]
pub(crate) struct Expectations(Mutex<HashMap<(String, String), Pending>>);

/// When the last write was, and what the cache must show of the writes.
type Pending = (Instant, Vec<Expect>);

#[derive(Debug, Clone)]
pub(crate) enum Expect {
    /// Written: the cache must hold this name at this resourceVersion or later.
    Present(String, u64),
    Gone(String),
}

/// How long to trust an unmet expectation before syncing anyway.
const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(10);

fn rv_of(s: &EndpointSlice) -> u64 {
    s.metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Expectations {
    fn record(&self, ns: &str, service: &str, e: Expect) {
        if let Ok(mut m) = self.0.lock() {
            let entry = m
                .entry((ns.to_string(), service.to_string()))
                .or_insert_with(|| (Instant::now(), Vec::new()));
            entry.0 = Instant::now();
            entry.1.push(e);
        }
    }

    /// Whether the cache reflects every write made for this Service.
    fn met(&self, store: &Store<EndpointSlice>, ns: &str, service: &str) -> bool {
        let Ok(mut m) = self.0.lock() else {
            return true;
        };
        let key = (ns.to_string(), service.to_string());
        let Some((at, list)) = m.get_mut(&key) else {
            return true;
        };
        list.retain(|e| match e {
            Expect::Present(name, rv) => store
                .get(&ObjectRef::new(name).within(ns))
                .is_none_or(|s| rv_of(&s) < *rv),
            Expect::Gone(name) => store.get(&ObjectRef::new(name).within(ns)).is_some(),
        });
        if list.is_empty() || at.elapsed() > EXPECTATION_TIMEOUT {
            m.remove(&key);
            return true;
        }
        false
    }
}

/// Make the EndpointSlices of one Service what its pods say.
pub(crate) async fn sync(
    client: &kube::Client,
    caches: &Caches,
    service: &Service,
    pods: &[&Pod],
) -> Result<()> {
    let ns = service.metadata.namespace.clone().unwrap_or_default();
    let name = service.metadata.name.clone().unwrap_or_default();
    if !caches.expectations.met(&caches.slices, &ns, &name) {
        return Err(EndpointsError::StaleCache {
            namespace: ns,
            name,
        });
    }
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
    let expect = |e| caches.expectations.record(&ns, &name, e);
    let zone_of = |node: &str| {
        caches.nodes.get(&ObjectRef::new(node)).map(|n| {
            n.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(ZONE_LABEL).cloned())
        })
    };
    let (mut groups, missing) = desired_groups(service, pods, zone_of);
    if groups.is_empty() {
        // Upstream's placeholder: one slice with no endpoints and no ports.
        groups.insert(Vec::new(), Vec::new());
    }
    let labels = desired_labels(service);
    let address_type = address_type(service);
    let mut existing: BTreeMap<Vec<PortKey>, Vec<EndpointSlice>> = BTreeMap::new();
    for s in slices_of(&caches.slices, &ns, &name) {
        existing.entry(port_set_of(&s)).or_default().push(s);
    }
    let mut first_err = None;
    for (set, eps) in &groups {
        let mut have = existing.remove(set).unwrap_or_default().into_iter();
        let chunks: Vec<&[Endpoint]> = if eps.is_empty() {
            vec![&[]]
        } else {
            eps.chunks(MAX_ENDPOINTS_PER_SLICE).collect()
        };
        for chunk in chunks {
            let result = match have.next() {
                Some(cur) => {
                    let mut cur_eps = cur.endpoints.clone();
                    sort_endpoints(&mut cur_eps);
                    let same = cur_eps == chunk
                        && cur.metadata.labels.as_ref() == Some(&labels)
                        && cur.address_type == address_type
                        && cur.metadata.owner_references.as_deref() == Some(&[owner(service)][..])
                        && cur.ports.clone().unwrap_or_default() == slice_ports(set);
                    if same {
                        continue;
                    }
                    let mut s = cur.clone();
                    s.metadata.labels = Some(labels.clone());
                    s.metadata.owner_references = Some(vec![owner(service)]);
                    s.metadata.managed_fields = None;
                    s.address_type = address_type.into();
                    s.endpoints = chunk.to_vec();
                    s.ports = Some(slice_ports(set));
                    let slice_name = s.metadata.name.clone().unwrap_or_default();
                    api.replace(&slice_name, &PostParams::default(), &s)
                        .await
                        .map(|w| expect(Expect::Present(slice_name.clone(), rv_of(&w))))
                        .map_err(api_err("endpointslice", &ns, &slice_name))
                }
                None => {
                    let s = EndpointSlice {
                        metadata: ObjectMeta {
                            generate_name: Some(slice_prefix(&name)),
                            namespace: Some(ns.clone()),
                            labels: Some(labels.clone()),
                            owner_references: Some(vec![owner(service)]),
                            ..Default::default()
                        },
                        address_type: address_type.into(),
                        endpoints: chunk.to_vec(),
                        ports: Some(slice_ports(set)),
                    };
                    api.create(&PostParams::default(), &s)
                        .await
                        .map(|w| {
                            let n = w.metadata.name.clone().unwrap_or_default();
                            expect(Expect::Present(n, rv_of(&w)));
                        })
                        .map_err(api_err("endpointslice", &ns, &name))
                }
            };
            if let Err(e) = result {
                first_err.get_or_insert(e);
            }
        }
        for extra in have {
            match delete_slice(&api, &ns, &extra).await {
                Ok(()) => expect(Expect::Gone(
                    extra.metadata.name.clone().unwrap_or_default(),
                )),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
    }
    for extra in existing.into_values().flatten() {
        match delete_slice(&api, &ns, &extra).await {
            Ok(()) => expect(Expect::Gone(
                extra.metadata.name.clone().unwrap_or_default(),
            )),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    if let Some((pod, node)) = missing.into_iter().next() {
        return Err(EndpointsError::UnknownNode {
            namespace: ns,
            pod,
            node,
        });
    }
    Ok(())
}

/// Upstream's `getEndpointSlicePrefix`: the Service name, cut to leave room
/// for the generated suffix, and a dash.
fn slice_prefix(service: &str) -> String {
    let cut: String = service.chars().take(57).collect();
    format!("{cut}-")
}

async fn delete_slice(api: &Api<EndpointSlice>, ns: &str, s: &EndpointSlice) -> Result<()> {
    let name = s.metadata.name.clone().unwrap_or_default();
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(api_err("endpointslice", ns, &name)(e)),
    }
}

/// The Service is gone: remove its slices (its ownerReferences would too,
/// but not before the garbage collector gets to them).
pub(crate) async fn delete_for_service(
    client: &kube::Client,
    store: &Store<EndpointSlice>,
    ns: &str,
    service: &str,
) -> Result<()> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    for s in slices_of(store, ns, service) {
        delete_slice(&api, ns, &s).await?;
    }
    Ok(())
}
