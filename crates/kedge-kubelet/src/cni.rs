//! The node's CNI configuration: a bridge with host-local IPAM on the node's
//! podCIDR(s), chained with portmap (hostPort), plus a loopback network.
//!
//! Two files in the runtime's CNI `conf_dir`:
//!
//! - `10-<name>.conflist`: `bridge` (+ `host-local`) then `portmap`. This is
//!   the pod network. containerd (`max_conf_num = 1`) loads the first file in
//!   lexical order, so this one must sort first.
//! - `99-loopback.conf`: `loopback`. containerd and CRI-O bring `lo` up in
//!   every pod themselves; this file is for runtimes behind
//!   `--container-runtime-endpoint` that load every network in the directory.
//!
//! Both are written atomically (temporary file and rename): containerd
//! watches the directory and must never load a half-written file.

use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// The CNI spec version written (CNI plugins 1.x and containerd 1.6 speak it).
pub const CNI_VERSION: &str = "1.0.0";
/// The pod network's default name.
pub const DEFAULT_NETWORK_NAME: &str = "kedge";
/// The pod bridge's default name.
pub const DEFAULT_BRIDGE: &str = "kedge0";
/// Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;

/// Errors of the CNI configuration writer.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("invalid pod CIDR {cidr:?}: {reason}")]
    InvalidCidr { cidr: String, reason: &'static str },
    #[error("a CNI network needs at least one pod CIDR")]
    NoCidr,
    #[error("invalid bridge name {name:?}: {reason}")]
    InvalidBridge { name: String, reason: &'static str },
    #[error("invalid network name {name:?}: only letters, digits, '-', '_' and '.' are allowed")]
    InvalidNetworkName { name: String },
    #[error("cannot create CNI conf_dir {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    WriteFile { path: PathBuf, source: io::Error },
}

pub type Result<T, E = CniError> = std::result::Result<T, E>;

/// A validated `address/prefix` network with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodCidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl PodCidr {
    pub fn parse(cidr: &str) -> Result<PodCidr> {
        let invalid = |reason| CniError::InvalidCidr {
            cidr: cidr.to_owned(),
            reason,
        };
        let (addr, prefix) = cidr.split_once('/').ok_or_else(|| invalid("no /prefix"))?;
        let addr: IpAddr = addr.parse().map_err(|_| invalid("not an IP address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| invalid("prefix is not a number"))?;
        let bits = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix > bits {
            return Err(invalid("prefix longer than the address"));
        }
        // host-local needs room for the gateway, the broadcast and some pods.
        if bits - prefix < 2 {
            return Err(invalid("too small for pods"));
        }
        let host_bits_set = match addr {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
                u32::from(v4) & mask != 0
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
                u128::from(v6) & mask != 0
            }
        };
        if host_bits_set {
            return Err(invalid("host bits are set"));
        }
        Ok(PodCidr { addr, prefix })
    }

    fn default_route(&self) -> &'static str {
        match self.addr {
            IpAddr::V4(_) => "0.0.0.0/0",
            IpAddr::V6(_) => "::/0",
        }
    }
}

impl std::fmt::Display for PodCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The pod network of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniConfig {
    /// The network's name (also host-local's allocation directory name).
    pub network_name: String,
    /// The Linux bridge pods attach to.
    pub bridge: String,
    /// The node's podCIDRs: one, or an IPv4 and an IPv6 one (dual stack).
    pub pod_cidrs: Vec<PodCidr>,
    /// Give the bridge the first address of each range and route pods
    /// through it (the node reaches pods; pods reach the node and beyond).
    /// The bridge plugin then turns on IP forwarding on the host.
    pub is_gateway: bool,
    /// Masquerade pod traffic leaving the pod network.
    pub ip_masq: bool,
    /// Let a pod reach itself through a Service (hairpin on the bridge port).
    pub hairpin: bool,
    /// The MTU of the bridge and the pods' interfaces; `None` is the plugin's default.
    pub mtu: Option<u32>,
    /// host-local's allocation directory; `None` is `/var/lib/cni/networks`.
    pub ipam_data_dir: Option<PathBuf>,
}

impl CniConfig {
    /// The default node network on `pod_cidr`: bridge `kedge0`, gateway,
    /// masquerade, hairpin.
    pub fn new(pod_cidr: &str) -> Result<CniConfig> {
        Ok(CniConfig {
            network_name: DEFAULT_NETWORK_NAME.to_owned(),
            bridge: DEFAULT_BRIDGE.to_owned(),
            pod_cidrs: vec![PodCidr::parse(pod_cidr)?],
            is_gateway: true,
            ip_masq: true,
            hairpin: true,
            mtu: None,
            ipam_data_dir: None,
        })
    }

    fn validate(&self) -> Result<()> {
        if self.pod_cidrs.is_empty() {
            return Err(CniError::NoCidr);
        }
        let bad_bridge = |reason| CniError::InvalidBridge {
            name: self.bridge.clone(),
            reason,
        };
        if self.bridge.is_empty() {
            return Err(bad_bridge("empty"));
        }
        if self.bridge.len() > MAX_IFNAME {
            return Err(bad_bridge("longer than 15 bytes"));
        }
        if self
            .bridge
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || !b.is_ascii_graphic())
        {
            return Err(bad_bridge("contains '/', ':', whitespace or non-ASCII"));
        }
        let name_ok = !self.network_name.is_empty()
            && self
                .network_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !name_ok {
            return Err(CniError::InvalidNetworkName {
                name: self.network_name.clone(),
            });
        }
        Ok(())
    }

    /// The pod network's conflist (bridge + host-local, then portmap).
    pub fn conflist(&self) -> Result<Value> {
        self.validate()?;
        let ranges: Vec<Value> = self
            .pod_cidrs
            .iter()
            .map(|cidr| json!([{ "subnet": cidr.to_string() }]))
            .collect();
        let mut ipam = json!({
            "type": "host-local",
            "ranges": ranges,
        });
        if self.is_gateway {
            let mut routes: Vec<Value> = Vec::new();
            for cidr in &self.pod_cidrs {
                let route = json!({ "dst": cidr.default_route() });
                if !routes.contains(&route) {
                    routes.push(route);
                }
            }
            ipam["routes"] = Value::Array(routes);
        }
        if let Some(dir) = &self.ipam_data_dir {
            ipam["dataDir"] = json!(dir.display().to_string());
        }
        let mut bridge = json!({
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": self.is_gateway,
            "ipMasq": self.ip_masq,
            "hairpinMode": self.hairpin,
            "ipam": ipam,
        });
        if let Some(mtu) = self.mtu {
            bridge["mtu"] = json!(mtu);
        }
        Ok(json!({
            "cniVersion": CNI_VERSION,
            "name": self.network_name,
            "plugins": [
                bridge,
                { "type": "portmap", "capabilities": { "portMappings": true } },
            ],
        }))
    }

    /// The loopback network.
    pub fn loopback() -> Value {
        json!({ "cniVersion": CNI_VERSION, "name": "lo", "type": "loopback" })
    }

    /// The pod network's file name in the conf_dir.
    pub fn conflist_file_name(&self) -> String {
        format!("10-{}.conflist", self.network_name)
    }

    /// Write both files into `conf_dir` (created if missing). Returns their paths,
    /// the pod network first.
    pub fn write(&self, conf_dir: &Path) -> Result<[PathBuf; 2]> {
        let conflist = self.conflist()?;
        fs::create_dir_all(conf_dir).map_err(|source| CniError::CreateDir {
            path: conf_dir.to_owned(),
            source,
        })?;
        let network = conf_dir.join(self.conflist_file_name());
        let loopback = conf_dir.join("99-loopback.conf");
        write_json(&network, &conflist)?;
        write_json(&loopback, &CniConfig::loopback())?;
        tracing::debug!(path = %network.display(), bridge = %self.bridge, "wrote CNI configuration");
        Ok([network, loopback])
    }
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    text.push('\n');
    // Not `.conflist`/`.conf`/`.json` while partial: containerd ignores it.
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let wrap = |source| CniError::WriteFile {
        path: path.to_owned(),
        source,
    };
    fs::write(&tmp, text).map_err(wrap)?;
    fs::rename(&tmp, path).map_err(|source| {
        let _ = fs::remove_file(&tmp);
        wrap(source)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_are_validated() {
        let c = PodCidr::parse("10.42.0.0/24").expect("v4");
        assert_eq!(c.to_string(), "10.42.0.0/24");
        let c = PodCidr::parse("fd00:42::/64").expect("v6");
        assert_eq!(c.to_string(), "fd00:42::/64");
        for bad in [
            "10.42.0.0",
            "10.42.0.1/24",
            "10.42.0.0/33",
            "10.42.0.0/32",
            "nope/24",
            "10.42.0.0/x",
            "fd00::1/64",
        ] {
            assert!(PodCidr::parse(bad).is_err(), "{bad} accepted");
        }
        assert!(PodCidr::parse("0.0.0.0/0").is_ok());
    }

    #[test]
    fn default_conflist_is_bridge_host_local_portmap() {
        let config = CniConfig::new("10.42.0.0/24").expect("config");
        let v = config.conflist().expect("conflist");
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["name"], "kedge");
        let bridge = &v["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["bridge"], "kedge0");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipMasq"], true);
        assert_eq!(bridge["hairpinMode"], true);
        assert_eq!(bridge["ipam"]["type"], "host-local");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.42.0.0/24");
        assert_eq!(bridge["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
        assert!(bridge["ipam"].get("dataDir").is_none());
        assert!(bridge.get("mtu").is_none());
        let portmap = &v["plugins"][1];
        assert_eq!(portmap["type"], "portmap");
        assert_eq!(portmap["capabilities"]["portMappings"], true);
        assert_eq!(v["plugins"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn dual_stack_and_options() {
        let mut config = CniConfig::new("10.42.0.0/24").expect("config");
        config
            .pod_cidrs
            .push(PodCidr::parse("fd00:42::/64").expect("v6"));
        config.mtu = Some(1400);
        config.ipam_data_dir = Some(PathBuf::from("/tmp/ipam"));
        config.is_gateway = false;
        config.ip_masq = false;
        let v = config.conflist().expect("conflist");
        let bridge = &v["plugins"][0];
        assert_eq!(bridge["ipam"]["ranges"][1][0]["subnet"], "fd00:42::/64");
        assert!(bridge["ipam"].get("routes").is_none());
        assert_eq!(bridge["ipam"]["dataDir"], "/tmp/ipam");
        assert_eq!(bridge["mtu"], 1400);
        assert_eq!(bridge["ipMasq"], false);

        config.is_gateway = true;
        let v = config.conflist().expect("conflist");
        let routes = &v["plugins"][0]["ipam"]["routes"];
        assert_eq!(routes[0]["dst"], "0.0.0.0/0");
        assert_eq!(routes[1]["dst"], "::/0");
    }

    #[test]
    fn bad_names_are_refused() {
        let mut config = CniConfig::new("10.42.0.0/24").expect("config");
        config.bridge = "a-very-long-bridge-name".to_owned();
        assert!(matches!(
            config.conflist(),
            Err(CniError::InvalidBridge { .. })
        ));
        config.bridge = "br/0".to_owned();
        assert!(matches!(
            config.conflist(),
            Err(CniError::InvalidBridge { .. })
        ));
        config.bridge = "kedge0".to_owned();
        config.network_name = "bad name".to_owned();
        assert!(matches!(
            config.conflist(),
            Err(CniError::InvalidNetworkName { .. })
        ));
        config.network_name = "kedge".to_owned();
        config.pod_cidrs.clear();
        assert!(matches!(config.conflist(), Err(CniError::NoCidr)));
    }

    #[test]
    fn write_puts_both_files_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf_dir = dir.path().join("net.d");
        let config = CniConfig::new("10.42.0.0/24").expect("config");
        let [network, loopback] = config.write(&conf_dir).expect("write");
        assert_eq!(
            network.file_name().and_then(|n| n.to_str()),
            Some("10-kedge.conflist")
        );
        let parsed: Value =
            serde_json::from_slice(&fs::read(&network).expect("read")).expect("json");
        assert_eq!(parsed, config.conflist().expect("conflist"));
        let lo: Value = serde_json::from_slice(&fs::read(&loopback).expect("read")).expect("json");
        assert_eq!(lo["type"], "loopback");
        let mut names: Vec<String> = fs::read_dir(&conf_dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["10-kedge.conflist", "99-loopback.conf"]);
    }
}
