//! IPv4 CIDRs and ClusterIP allocation from `--service-cidr`.

use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network such as `10.43.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, len) = s.split_once('/').ok_or_else(|| {
            format!("invalid CIDR {s:?}: expected ADDRESS/PREFIX, e.g. 10.43.0.0/16")
        })?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("invalid CIDR {s:?}: {ip:?} is not an IPv4 address"))?;
        let prefix: u8 = len
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| format!("invalid CIDR {s:?}: prefix length must be 8..30"))?;
        let mask = u32::MAX << (32 - prefix);
        Ok(Cidr {
            base: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl Cidr {
    pub fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    /// The n-th address of the network.
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base).wrapping_add(n))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == u32::from(self.base)
    }

    /// The first free host address from `.first` on, skipping `used`.
    pub fn first_free(
        &self,
        first: u32,
        used: &std::collections::HashSet<Ipv4Addr>,
    ) -> Option<Ipv4Addr> {
        (first..self.size().saturating_sub(1))
            .map(|n| self.nth(n))
            .find(|ip| !used.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_allocate() {
        let c: Cidr = "10.43.7.9/16".parse().expect("cidr");
        assert_eq!(c.to_string(), "10.43.0.0/16");
        assert_eq!(c.nth(1), Ipv4Addr::new(10, 43, 0, 1));
        let mut used = std::collections::HashSet::new();
        used.insert(Ipv4Addr::new(10, 43, 0, 1));
        assert_eq!(c.first_free(1, &used), Some(Ipv4Addr::new(10, 43, 0, 2)));
        assert!(c.contains(Ipv4Addr::new(10, 43, 255, 1)));
        assert!(!c.contains(Ipv4Addr::new(10, 44, 0, 1)));
        assert!("10.43.0.0".parse::<Cidr>().is_err());
        assert!("10.43.0.0/40".parse::<Cidr>().is_err());
    }
}
