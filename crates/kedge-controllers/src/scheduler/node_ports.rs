//! `NodePorts`: a pod's host ports must be free on the node.

use k8s_openapi::api::core::v1::PodSpec;

pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";

/// One host port a pod takes: (host IP, protocol, port).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Upstream's `HostPortInfo.CheckConflict`: same protocol and port, and
    /// the same IP or either one the wildcard.
    pub fn conflicts(&self, o: &HostPort) -> bool {
        self.port == o.port
            && self.protocol == o.protocol
            && (self.ip == o.ip || self.ip == "0.0.0.0" || o.ip == "0.0.0.0")
    }
}

/// The host ports of a pod's containers (and its sidecars).
pub fn host_ports(spec: &PodSpec) -> Vec<HostPort> {
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.is_some_and(|h| h > 0))
        .map(|p| HostPort {
            ip: p
                .host_ip
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "0.0.0.0".to_string()),
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
            port: p.host_port.unwrap_or(0),
        })
        .collect()
}

/// The filter: whether any wanted port conflicts with one in use.
pub fn conflicts(wanted: &[HostPort], used: &[HostPort]) -> bool {
    wanted.iter().any(|w| used.iter().any(|u| w.conflicts(u)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ports(v: serde_json::Value) -> Vec<HostPort> {
        let spec: PodSpec =
            serde_json::from_value(json!({"containers": [{"name": "c", "ports": v}]}))
                .expect("spec");
        host_ports(&spec)
    }

    #[test]
    fn host_port_conflicts() {
        let used = ports(
            json!([{"containerPort": 80, "hostPort": 8080}, {"containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "10.0.0.1"}]),
        );
        assert_eq!(used.len(), 2);
        assert!(conflicts(
            &ports(json!([{"containerPort": 1, "hostPort": 8080}])),
            &used
        ));
        assert!(conflicts(
            &ports(json!([{"containerPort": 1, "hostPort": 8080, "hostIP": "127.0.0.1"}])),
            &used
        ));
        assert!(!conflicts(
            &ports(json!([{"containerPort": 1, "hostPort": 8080, "protocol": "UDP"}])),
            &used
        ));
        assert!(!conflicts(
            &ports(
                json!([{"containerPort": 1, "hostPort": 53, "protocol": "UDP", "hostIP": "10.0.0.2"}])
            ),
            &used
        ));
        assert!(conflicts(
            &ports(json!([{"containerPort": 1, "hostPort": 53, "protocol": "UDP"}])),
            &used
        ));
        // Container ports without a host port take nothing.
        assert!(ports(json!([{"containerPort": 80}])).is_empty());
    }
}
