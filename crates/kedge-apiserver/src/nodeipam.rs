//! Node IPAM: every Node gets a pod range (`spec.podCIDR`, `spec.podCIDRs`)
//! carved out of `--cluster-cidr`, as kube-controller-manager's range
//! allocator does for K3s (`--allocate-node-cidrs`).
//!
//! * The cluster CIDR is cut into `/24`s (`--node-cidr-mask-size-ipv4`'s
//!   default). A cluster CIDR narrower than that is one range, for one node.
//! * Allocation walks the ranges from the one after the last allocated,
//!   wrapping around (upstream's `cidrset`), so a range freed by a deleted
//!   node is handed out again only after the others: a new node does not
//!   inherit routes or pod IPs that may still linger for the old one.
//! * Nothing is persisted besides the Nodes: at start (and after a watch
//!   fell out of the window) the used ranges are read back from every
//!   Node's `spec.podCIDRs`, so allocations are stable across restarts.
//! * A Node that already names a podCIDR keeps it (once set it is
//!   immutable); a range outside the cluster CIDR is left alone and logged.
//!
//! The controller works on the store directly, like the other in-process
//! controllers ([`crate::lifecycle`]): a list, then the watch window; writes
//! go through [`guaranteed_update`] so they race safely with the node agent's
//! own writes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use kedge_api::registry::ResourceInfo;
use kedge_api::{meta, ApiError};
use kedge_store::{EventType, Store};
use serde_json::{json, Value};

use crate::handler::guaranteed_update;
use crate::ipalloc::Cidr;
use crate::server::ApiServer;

/// `--node-cidr-mask-size-ipv4`'s default in kube-controller-manager and K3s.
pub const NODE_CIDR_MASK_SIZE_V4: u8 = 24;

/// How often Nodes still waiting for a range (the cluster CIDR was full, or
/// a write failed) are looked at again.
const RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// Errors of the range allocator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeIpamError {
    #[error("invalid pod CIDR {cidr:?}: {reason}")]
    InvalidCidr { cidr: String, reason: &'static str },
    #[error("pod CIDR {cidr} is outside the cluster CIDR {cluster}")]
    OutOfRange { cidr: String, cluster: Cidr },
    #[error("the cluster CIDR {cluster} has no free /{mask} range left")]
    Full { cluster: Cidr, mask: u8 },
}

/// An IPv4 network as written in `spec.podCIDR`, any prefix 0..=32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    base: u32,
    prefix: u8,
}

impl Network {
    fn parse(s: &str) -> Result<Network, NodeIpamError> {
        let invalid = |reason| NodeIpamError::InvalidCidr {
            cidr: s.to_owned(),
            reason,
        };
        let (ip, len) = s.split_once('/').ok_or_else(|| invalid("no /prefix"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| invalid("not an IPv4 address"))?;
        let prefix: u8 = len
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| invalid("prefix is not 0..32"))?;
        Ok(Network {
            base: u32::from(ip) & mask(prefix),
            prefix,
        })
    }

    fn last(&self) -> u32 {
        self.base | !mask(self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

/// Which node ranges of one cluster CIDR are taken (upstream's `cidrset`).
#[derive(Debug, Clone)]
pub struct RangeAllocator {
    cluster: Cidr,
    node_prefix: u8,
    used: BTreeSet<u32>,
    next_candidate: u32,
}

impl RangeAllocator {
    /// Ranges of `/node_prefix` in `cluster`; a `node_prefix` shorter than
    /// the cluster's own prefix is raised to it (one range).
    pub fn new(cluster: Cidr, node_prefix: u8) -> RangeAllocator {
        RangeAllocator {
            cluster,
            node_prefix: node_prefix.clamp(cluster.prefix, 32),
            used: BTreeSet::new(),
            next_candidate: 0,
        }
    }

    /// The prefix length of every range handed out.
    pub fn node_prefix(&self) -> u8 {
        self.node_prefix
    }

    /// How many ranges the cluster CIDR holds.
    pub fn capacity(&self) -> u32 {
        1u32 << (self.node_prefix - self.cluster.prefix)
    }

    /// How many ranges are taken.
    pub fn used(&self) -> usize {
        self.used.len()
    }

    fn range(&self, index: u32) -> Cidr {
        let step = 1u64 << (32 - u32::from(self.node_prefix));
        let base = u64::from(u32::from(self.cluster.base)) + u64::from(index) * step;
        Cidr {
            base: Ipv4Addr::from(base as u32),
            prefix: self.node_prefix,
        }
    }

    /// The indexes of the ranges that `cidr` overlaps.
    fn indexes(&self, cidr: &str) -> Result<std::ops::RangeInclusive<u32>, NodeIpamError> {
        let net = Network::parse(cidr)?;
        let cluster = Network {
            base: u32::from(self.cluster.base),
            prefix: self.cluster.prefix,
        };
        if net.last() < cluster.base || net.base > cluster.last() {
            return Err(NodeIpamError::OutOfRange {
                cidr: cidr.to_owned(),
                cluster: self.cluster,
            });
        }
        let shift = 32 - u32::from(self.node_prefix);
        let first = net.base.max(cluster.base) - cluster.base;
        let last = net.last().min(cluster.last()) - cluster.base;
        Ok((first >> shift)..=(last >> shift))
    }

    /// Mark the ranges `cidr` overlaps as taken (a Node already has it).
    pub fn occupy(&mut self, cidr: &str) -> Result<(), NodeIpamError> {
        for i in self.indexes(cidr)? {
            self.used.insert(i);
        }
        Ok(())
    }

    /// Free the ranges `cidr` overlaps.
    pub fn release(&mut self, cidr: &str) -> Result<(), NodeIpamError> {
        for i in self.indexes(cidr)? {
            self.used.remove(&i);
        }
        Ok(())
    }

    /// Take the next free range after the last one handed out, wrapping.
    pub fn allocate_next(&mut self) -> Result<Cidr, NodeIpamError> {
        let count = self.capacity();
        for offset in 0..count {
            let candidate = (self.next_candidate.wrapping_add(offset)) % count;
            if self.used.insert(candidate) {
                self.next_candidate = (candidate + 1) % count;
                return Ok(self.range(candidate));
            }
        }
        Err(NodeIpamError::Full {
            cluster: self.cluster,
            mask: self.node_prefix,
        })
    }
}

/// The pod CIDRs a Node names: `spec.podCIDRs`, else `spec.podCIDR`.
fn node_pod_cidrs(node: &Value) -> Vec<String> {
    let listed: Vec<String> = node
        .pointer("/spec/podCIDRs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if !listed.is_empty() {
        return listed;
    }
    node.pointer("/spec/podCIDR")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(|s| vec![s.to_owned()])
        .unwrap_or_default()
}

/// The controller's view: which ranges each Node holds, which Nodes wait.
struct NodeIpam {
    allocator: RangeAllocator,
    /// Node name -> the pod CIDRs it holds (inside the cluster CIDR).
    held: BTreeMap<String, Vec<String>>,
    /// Nodes without a range.
    pending: BTreeSet<String>,
}

impl NodeIpam {
    fn new(cluster: Cidr) -> NodeIpam {
        let allocator = RangeAllocator::new(cluster, NODE_CIDR_MASK_SIZE_V4);
        if allocator.node_prefix() != NODE_CIDR_MASK_SIZE_V4 {
            tracing::warn!(
                cluster_cidr = %cluster,
                "the cluster CIDR is narrower than a /{NODE_CIDR_MASK_SIZE_V4}: it is one pod range, for one node"
            );
        }
        NodeIpam {
            allocator,
            held: BTreeMap::new(),
            pending: BTreeSet::new(),
        }
    }

    /// A Node was added or changed.
    fn observe(&mut self, node: &Value) {
        let name = meta::name(node).to_owned();
        let cidrs = node_pod_cidrs(node);
        if cidrs.is_empty() {
            if meta::deletion_timestamp(node).is_none() {
                self.pending.insert(name);
            }
            return;
        }
        self.pending.remove(&name);
        let mut inside = Vec::new();
        for cidr in cidrs {
            match self.allocator.occupy(&cidr) {
                Ok(()) => inside.push(cidr),
                Err(e) => {
                    tracing::warn!(node = %name, error = %e, "node IPAM: not tracking this pod CIDR")
                }
            }
        }
        let before = self.held.insert(name, inside.clone()).unwrap_or_default();
        for old in before.iter().filter(|c| !inside.contains(c)) {
            self.release_unless_held(old);
        }
    }

    /// A Node was deleted: its ranges are free again.
    fn forget(&mut self, name: &str) {
        self.pending.remove(name);
        if let Some(cidrs) = self.held.remove(name) {
            for cidr in &cidrs {
                self.release_unless_held(cidr);
            }
        }
    }

    fn release_unless_held(&mut self, cidr: &str) {
        if self.held.values().any(|c| c.iter().any(|c| c == cidr)) {
            return;
        }
        let _ = self.allocator.release(cidr);
    }

    /// Give every waiting Node a range.
    async fn allocate_pending(&mut self, srv: &ApiServer, ri: &'static ResourceInfo) {
        let pending: Vec<String> = self.pending.iter().cloned().collect();
        for name in pending {
            let cidr = match self.allocator.allocate_next() {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(node = %name, error = %e, "node IPAM: CIDRNotAvailable");
                    return;
                }
            };
            match assign(srv, ri, &name, cidr).await {
                Ok(node) => {
                    let got = node_pod_cidrs(&node);
                    if got.iter().any(|c| *c == cidr.to_string()) {
                        tracing::info!(
                            node = %name,
                            pod_cidr = %cidr,
                            used = self.allocator.used(),
                            capacity = self.allocator.capacity(),
                            "node IPAM: allocated a pod CIDR"
                        );
                    } else {
                        // Someone else set it first; theirs counts, ours is free.
                        let _ = self.allocator.release(&cidr.to_string());
                    }
                    self.observe(&node);
                }
                Err(e) if e.code == 404 => {
                    let _ = self.allocator.release(&cidr.to_string());
                    self.pending.remove(&name);
                }
                Err(e) => {
                    let _ = self.allocator.release(&cidr.to_string());
                    tracing::warn!(node = %name, error = %e.message, "node IPAM: cannot set the pod CIDR; will retry");
                }
            }
        }
    }
}

/// Set `spec.podCIDR(s)` of a Node that has none; returns the Node as stored.
async fn assign(
    srv: &ApiServer,
    ri: &'static ResourceInfo,
    name: &str,
    cidr: Cidr,
) -> Result<Value, ApiError> {
    let value = cidr.to_string();
    let stored = guaranteed_update(srv, ri, None, name, move |mut node| {
        if !node_pod_cidrs(&node).is_empty() || meta::deletion_timestamp(&node).is_some() {
            return Ok(node);
        }
        if let Some(o) = node.as_object_mut() {
            let spec = o.entry("spec").or_insert_with(|| json!({}));
            if !spec.is_object() {
                *spec = json!({});
            }
            if let Some(spec) = spec.as_object_mut() {
                spec.insert("podCIDR".into(), json!(value));
                spec.insert("podCIDRs".into(), json!([value]));
            }
        }
        Ok(node)
    })
    .await?;
    serde_json::from_slice(&stored.value).map_err(ApiError::internal)
}

/// Run the node IPAM controller until the process ends.
pub async fn run(srv: Arc<ApiServer>) {
    let Some(ri) = srv.lookup("", "v1", "nodes") else {
        tracing::error!("node IPAM: the API serves no nodes");
        return;
    };
    let prefix = ri.list_prefix(None);
    loop {
        let rev = srv.store.revision();
        let mut ipam = NodeIpam::new(srv.config.cluster_cidr);
        match srv.store.list(&prefix, None, 0) {
            Ok(page) => {
                for s in page.items {
                    if let Ok(node) = serde_json::from_slice::<Value>(&s.value) {
                        ipam.observe(&node);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "node IPAM: cannot list nodes");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        let mut watch = match srv.store.watch(&prefix, rev) {
            Ok(w) => w,
            Err(e) => {
                tracing::debug!(error = %e, "node IPAM: watch failed; listing again");
                continue;
            }
        };
        let mut retry = tokio::time::interval(RETRY_INTERVAL);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ipam.allocate_pending(&srv, ri).await;
            tokio::select! {
                ev = watch.next() => match ev {
                    Some(Ok(ev)) => {
                        apply_event(&mut ipam, ev.kind, &ev.value);
                        while let Some(Ok(ev)) = watch.try_next() {
                            apply_event(&mut ipam, ev.kind, &ev.value);
                        }
                    }
                    // Fell out of the window (or the store closed): start over.
                    Some(Err(_)) | None => break,
                },
                _ = retry.tick() => {}
            }
        }
    }
}

fn apply_event(ipam: &mut NodeIpam, kind: EventType, value: &[u8]) {
    let Ok(node) = serde_json::from_slice::<Value>(value) else {
        return;
    };
    match kind {
        EventType::Deleted => ipam.forget(meta::name(&node)),
        _ => ipam.observe(&node),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().expect("cidr")
    }

    #[test]
    fn allocates_24s_in_order() {
        let mut a = RangeAllocator::new(cidr("10.42.0.0/16"), 24);
        assert_eq!(a.capacity(), 256);
        assert_eq!(
            a.allocate_next().map(|c| c.to_string()),
            Ok("10.42.0.0/24".into())
        );
        assert_eq!(
            a.allocate_next().map(|c| c.to_string()),
            Ok("10.42.1.0/24".into())
        );
        assert_eq!(a.used(), 2);
    }

    #[test]
    fn occupied_ranges_are_skipped() {
        let mut a = RangeAllocator::new(cidr("10.42.0.0/16"), 24);
        a.occupy("10.42.0.0/24").expect("occupy");
        a.occupy("10.42.2.0/23").expect("occupy a wider range");
        assert_eq!(a.used(), 3);
        assert_eq!(
            a.allocate_next().map(|c| c.to_string()),
            Ok("10.42.1.0/24".into())
        );
        assert_eq!(
            a.allocate_next().map(|c| c.to_string()),
            Ok("10.42.4.0/24".into())
        );
        // A narrower range takes the /24 it is in.
        a.occupy("10.42.9.128/25").expect("occupy");
        for _ in 5..9 {
            a.allocate_next().expect("free range");
        }
        assert_eq!(
            a.allocate_next().map(|c| c.to_string()),
            Ok("10.42.10.0/24".into())
        );
    }

    #[test]
    fn freed_ranges_come_back_after_the_others() {
        let mut a = RangeAllocator::new(cidr("10.42.0.0/22"), 24);
        let first = a.allocate_next().expect("first");
        let second = a.allocate_next().expect("second");
        a.release(&first.to_string()).expect("release");
        // Upstream's cidrset goes on after the last allocation, then wraps.
        assert_eq!(
            a.allocate_next().map(|c| c.to_string()),
            Ok("10.42.2.0/24".into())
        );
        assert_eq!(
            a.allocate_next().map(|c| c.to_string()),
            Ok("10.42.3.0/24".into())
        );
        assert_eq!(a.allocate_next(), Ok(first));
        assert_eq!(
            a.allocate_next(),
            Err(NodeIpamError::Full {
                cluster: cidr("10.42.0.0/22"),
                mask: 24
            })
        );
        a.release(&second.to_string()).expect("release");
        assert_eq!(a.allocate_next(), Ok(second));
    }

    #[test]
    fn out_of_range_and_invalid_cidrs_are_refused() {
        let mut a = RangeAllocator::new(cidr("10.42.0.0/16"), 24);
        assert!(matches!(
            a.occupy("10.43.0.0/24"),
            Err(NodeIpamError::OutOfRange { .. })
        ));
        assert!(matches!(
            a.occupy("10.42.0.0"),
            Err(NodeIpamError::InvalidCidr { .. })
        ));
        assert!(matches!(
            a.occupy("fd00::/64"),
            Err(NodeIpamError::InvalidCidr { .. })
        ));
        assert_eq!(a.used(), 0);
        // A range that overlaps the cluster CIDR only in part takes that part.
        a.occupy("10.0.0.0/8").expect("a covering range");
        assert_eq!(a.used(), 256);
    }

    #[test]
    fn a_narrow_cluster_cidr_is_one_range() {
        let mut a = RangeAllocator::new(cidr("10.42.0.0/26"), 24);
        assert_eq!(a.node_prefix(), 26);
        assert_eq!(a.capacity(), 1);
        assert_eq!(
            a.allocate_next().map(|c| c.to_string()),
            Ok("10.42.0.0/26".into())
        );
        assert!(a.allocate_next().is_err());
    }

    fn node(name: &str, pod_cidr: Option<&str>) -> Value {
        let mut n =
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {}});
        if let Some(c) = pod_cidr {
            n["spec"]["podCIDR"] = json!(c);
            n["spec"]["podCIDRs"] = json!([c]);
        }
        n
    }

    #[test]
    fn the_view_follows_nodes() {
        let mut ipam = NodeIpam::new(cidr("10.42.0.0/16"));
        ipam.observe(&node("a", Some("10.42.0.0/24")));
        ipam.observe(&node("b", None));
        ipam.observe(&node("c", Some("192.168.0.0/24")));
        assert_eq!(ipam.pending.iter().collect::<Vec<_>>(), ["b"]);
        assert_eq!(ipam.allocator.used(), 1);
        // Only podCIDR (an old writer) counts too.
        let mut d = node("d", None);
        d["spec"]["podCIDR"] = json!("10.42.7.0/24");
        ipam.observe(&d);
        assert_eq!(ipam.allocator.used(), 2);
        ipam.forget("a");
        assert_eq!(ipam.allocator.used(), 1);
        ipam.forget("b");
        assert!(ipam.pending.is_empty());
        // A node being deleted does not wait for a range.
        let mut e = node("e", None);
        e["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        ipam.observe(&e);
        assert!(ipam.pending.is_empty());
    }

    #[test]
    fn a_range_two_nodes_claim_stays_used_until_both_go() {
        let mut ipam = NodeIpam::new(cidr("10.42.0.0/16"));
        ipam.observe(&node("a", Some("10.42.0.0/24")));
        ipam.observe(&node("b", Some("10.42.0.0/24")));
        ipam.forget("a");
        assert_eq!(ipam.allocator.used(), 1);
        ipam.forget("b");
        assert_eq!(ipam.allocator.used(), 0);
    }
}
