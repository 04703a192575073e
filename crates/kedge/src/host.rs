//! Facts about the host: its name and its addresses.

use std::net::{IpAddr, Ipv4Addr};

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The first non-loopback IPv4 address of an interface that is up, read
/// from `/proc/net/fib_trie`'s local host routes; loopback if none.
pub fn primary_ipv4() -> IpAddr {
    let trie = std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
    let mut last_ip: Option<Ipv4Addr> = None;
    for line in trie.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("|-- ") {
            last_ip = rest.parse().ok();
        } else if t.contains("/32 host LOCAL") {
            if let Some(ip) = last_ip {
                if !ip.is_loopback() && !ip.is_unspecified() {
                    return IpAddr::V4(ip);
                }
            }
        }
    }
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}
