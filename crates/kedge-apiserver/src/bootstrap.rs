//! What exists from the first start: the system namespaces and the
//! `kubernetes` Service with its Endpoints and EndpointSlice.

use kedge_api::registry::{self, ResourceInfo};
use kedge_api::{meta, ApiError};
use kedge_store::Store;
use serde_json::{json, Value};

use crate::handler::{create_object, guaranteed_update, Created};
use crate::server::ApiServer;

/// Namespaces that may not be deleted (upstream's immortal namespaces).
pub const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

fn ri(group: &str, plural: &str) -> Result<&'static ResourceInfo, ApiError> {
    registry::lookup(group, "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} not registered")))
}

/// Create `obj` unless it exists.
async fn ensure(
    srv: &ApiServer,
    ri: &'static ResourceInfo,
    ns: Option<&str>,
    obj: Value,
) -> Result<bool, ApiError> {
    let name = meta::name(&obj).to_string();
    if srv
        .store
        .get(&ri.key(ns, &name))
        .map_err(ApiError::internal)?
        .is_some()
    {
        return Ok(false);
    }
    match create_object(srv, ri, ns, obj, false, None).await {
        Ok(Created::Stored(_)) | Ok(Created::DryRun(_)) => {
            tracing::info!(resource = ri.plural, name = %name, "created at bootstrap");
            Ok(true)
        }
        Err(e) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

pub async fn run(srv: &ApiServer) -> Result<(), ApiError> {
    let ns_ri = ri("", "namespaces")?;
    for ns in SYSTEM_NAMESPACES {
        ensure(
            srv,
            ns_ri,
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await?;
    }
    let pc = registry::lookup("scheduling.k8s.io", "v1", "priorityclasses")
        .ok_or_else(|| ApiError::internal("priorityclasses not registered"))?;
    for (name, value, description) in crate::admission_priority::SYSTEM_PRIORITY_CLASSES {
        ensure(
            srv,
            pc,
            None,
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": value, "description": description, "preemptionPolicy": "PreemptLowerPriority"}),
        )
        .await?;
    }
    let ip = srv.config.service_cidr.nth(1).to_string();
    let port = srv.config.port;
    ensure(
        srv,
        ri("", "services")?,
        Some("default"),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": ip, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}], "sessionAffinity": "None"},
        }),
    )
    .await?;
    let addr = srv.config.advertise_address.clone();
    let subsets = json!([{"addresses": [{"ip": addr}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]);
    let ep = ri("", "endpoints")?;
    let created = ensure(
        srv,
        ep,
        Some("default"),
        json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}}, "subsets": subsets}),
    )
    .await?;
    if !created {
        // The advertise address or port may have changed since the last start.
        let want = subsets.clone();
        guaranteed_update(srv, ep, Some("default"), "kubernetes", move |mut cur| {
            if let Some(o) = cur.as_object_mut() {
                o.insert("subsets".into(), want.clone());
            }
            Ok(cur)
        })
        .await?;
    }
    let eps = ri("discovery.k8s.io", "endpointslices")?;
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [addr], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    if !ensure(srv, eps, Some("default"), slice.clone()).await? {
        guaranteed_update(srv, eps, Some("default"), "kubernetes", move |mut cur| {
            if let Some(o) = cur.as_object_mut() {
                o.insert("endpoints".into(), slice["endpoints"].clone());
                o.insert("ports".into(), slice["ports"].clone());
            }
            Ok(cur)
        })
        .await?;
    }
    Ok(())
}
