//! Subject alternative names of the API server's serving certificate.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rcgen::SanType;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::error::{Error, Result};

/// The DNS names every serving certificate carries, as in K3s.
const DEFAULT_DNS_NAMES: [&str; 5] = [
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// One subject alternative name, normalised so that equal names compare equal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum San {
    /// A lower-case DNS name, possibly with a leading `*` label.
    Dns(String),
    Ip(IpAddr),
}

impl San {
    /// Parses a name given by an operator: an IP address if it parses as one, else a DNS name.
    pub(crate) fn parse(input: &str) -> Result<San> {
        let trimmed = input.trim();
        if let Ok(ip) = trimmed.parse::<IpAddr>() {
            return Ok(San::Ip(ip));
        }
        let invalid = |reason| Error::InvalidSan {
            san: input.to_string(),
            reason,
        };
        let name = trimmed.strip_suffix('.').unwrap_or(trimmed);
        if name.is_empty() {
            return Err(invalid("empty name"));
        }
        if name.len() > 253 {
            return Err(invalid("longer than 253 characters"));
        }
        for (i, label) in name.split('.').enumerate() {
            if label.is_empty() {
                return Err(invalid("empty label"));
            }
            if label.len() > 63 {
                return Err(invalid("label longer than 63 characters"));
            }
            if label == "*" {
                if i != 0 {
                    return Err(invalid("a wildcard may only be the leftmost label"));
                }
                continue;
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(invalid(
                    "not an IP address, and not a DNS name (letters, digits, '-', '_', '.')",
                ));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(invalid("a label may not start or end with '-'"));
            }
        }
        Ok(San::Dns(name.to_ascii_lowercase()))
    }

    pub(crate) fn to_rcgen(&self) -> Result<SanType> {
        match self {
            San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
            San::Dns(name) => {
                name.clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|_| Error::InvalidSan {
                        san: name.clone(),
                        reason: "not ASCII",
                    })
            }
        }
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(name) => f.write_str(name),
            San::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// The names every serving certificate must carry: K3s's defaults, the loopback
/// addresses, this machine's hostname, and the operator's `extra` names.
pub(crate) fn required_serving_sans(extra: &[String]) -> Result<BTreeSet<San>> {
    let mut sans: BTreeSet<San> = DEFAULT_DNS_NAMES
        .iter()
        .map(|name| San::Dns((*name).to_string()))
        .collect();
    sans.insert(San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    sans.insert(San::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    match hostname() {
        Ok(host) => match San::parse(&host) {
            Ok(san) => {
                sans.insert(san);
            }
            Err(e) => {
                tracing::warn!(error = %e, "hostname is not a valid certificate name; leaving it out")
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the hostname; leaving it out of the serving certificate")
        }
    }
    for name in extra {
        sans.insert(San::parse(name)?);
    }
    Ok(sans)
}

/// The DNS and IP subject alternative names of `cert`; other kinds are ignored.
pub(crate) fn sans_of(cert: &X509Certificate<'_>, what: &str) -> Result<BTreeSet<San>> {
    let ext = cert
        .subject_alternative_name()
        .map_err(|e| Error::ParseCertificate {
            what: what.to_string(),
            reason: format!("subjectAltName extension: {e}"),
        })?;
    let mut sans = BTreeSet::new();
    let Some(ext) = ext else {
        return Ok(sans);
    };
    for name in &ext.value.general_names {
        match name {
            GeneralName::DNSName(dns) => {
                sans.insert(San::Dns(dns.to_ascii_lowercase()));
            }
            GeneralName::IPAddress(bytes) => {
                if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                    sans.insert(San::Ip(IpAddr::from(v4)));
                } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                    sans.insert(San::Ip(IpAddr::from(v6)));
                }
            }
            _ => {}
        }
    }
    Ok(sans)
}

/// This machine's hostname, lower-cased like K3s's node name.
pub(crate) fn hostname() -> std::io::Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is a live, writable buffer of exactly `buf.len()` bytes, and
    // gethostname(2) writes at most `len` bytes into the buffer it is given.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // POSIX leaves termination unspecified on truncation; stop at the first NUL or the end.
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = std::str::from_utf8(&buf[..end])
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(name.trim().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_addresses_and_dns_names() {
        assert_eq!(
            San::parse("10.0.0.1").unwrap(),
            San::Ip("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            San::parse("fd00::1").unwrap(),
            San::Ip("fd00::1".parse().unwrap())
        );
        assert_eq!(
            San::parse(" Gateway.Example.COM. ").unwrap(),
            San::Dns("gateway.example.com".into())
        );
        assert_eq!(
            San::parse("*.edge.local").unwrap(),
            San::Dns("*.edge.local".into())
        );
        assert_eq!(San::parse("store_17").unwrap(), San::Dns("store_17".into()));
    }

    #[test]
    fn rejects_invalid_names() {
        for bad in [
            "",
            " ",
            "a..b",
            "foo.*.bar",
            "-a.b",
            "a b",
            "héllo",
            "http://x",
        ] {
            assert!(
                matches!(San::parse(bad), Err(Error::InvalidSan { .. })),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn required_sans_hold_defaults_and_extras() {
        let sans = required_serving_sans(&["192.168.1.10".into(), "edge-1.lan".into()]).unwrap();
        for name in DEFAULT_DNS_NAMES {
            assert!(sans.contains(&San::Dns(name.into())), "{name}");
        }
        assert!(sans.contains(&San::Ip("127.0.0.1".parse().unwrap())));
        assert!(sans.contains(&San::Ip("::1".parse().unwrap())));
        assert!(sans.contains(&San::Ip("192.168.1.10".parse().unwrap())));
        assert!(sans.contains(&San::Dns("edge-1.lan".into())));
        let host = hostname().unwrap();
        if let Ok(san) = San::parse(&host) {
            assert!(sans.contains(&san));
        }
    }
}
