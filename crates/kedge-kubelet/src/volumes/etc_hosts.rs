//! The pod's `/etc/hosts` (upstream `ensureHostsFile` in
//! `pkg/kubelet/kubelet_pods.go`), written to `<pod-dir>/etc-hosts` and
//! bind-mounted into every container that does not mount `/etc/hosts`
//! itself.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

const MANAGED_HOSTS_HEADER: &str = "# Kubernetes-managed hosts file.\n";
const MANAGED_HOSTS_HEADER_WITH_HOST_NETWORK: &str =
    "# Kubernetes-managed hosts file (host network).\n";

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// `shouldMountHostsFile`: the pod has IPs, or uses the host's network.
pub fn manages_etc_hosts(pod: &Value, pod_ips: &[String]) -> bool {
    !pod_ips.is_empty() || host_network(pod)
}

fn host_network(pod: &Value) -> bool {
    pod.pointer("/spec/hostNetwork")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// `GeneratePodHostNameAndDomain`: the name (or `spec.hostname`) cut to 63
/// characters without a trailing `-`/`.`, and
/// `<subdomain>.<namespace>.svc.<cluster-domain>` when a subdomain is set.
pub fn pod_host_name_and_domain(pod: &Value, cluster_domain: &str) -> (String, String) {
    let mut hostname = match s(pod, "/spec/hostname") {
        "" => s(pod, "/metadata/name").to_string(),
        h => h.to_string(),
    };
    if hostname.len() > 63 {
        let mut cut = 63;
        while !hostname.is_char_boundary(cut) {
            cut -= 1;
        }
        hostname.truncate(cut);
        while hostname.ends_with(['-', '.']) {
            hostname.pop();
        }
    }
    let domain = match s(pod, "/spec/subdomain") {
        "" => String::new(),
        sub => format!(
            "{sub}.{}.svc.{cluster_domain}",
            s(pod, "/metadata/namespace")
        ),
    };
    (hostname, domain)
}

/// `hostsEntriesFromHostAliases`: a blank line, a comment, then one line
/// per alias IP with all its names.
fn host_alias_entries(pod: &Value) -> String {
    let aliases = pod
        .pointer("/spec/hostAliases")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if aliases.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for a in aliases {
        let names: Vec<&str> = a
            .get("hostnames")
            .and_then(Value::as_array)
            .map(|h| h.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        out.push_str(&format!("{}\t{}\n", s(a, "/ip"), names.join("\t")));
    }
    out
}

/// `managedHostsFileContent`.
pub fn managed_hosts_content(pod: &Value, pod_ips: &[String], cluster_domain: &str) -> String {
    let (hostname, domain) = pod_host_name_and_domain(pod, cluster_domain);
    let mut out = String::from(MANAGED_HOSTS_HEADER);
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    for ip in pod_ips {
        if domain.is_empty() {
            out.push_str(&format!("{ip}\t{hostname}\n"));
        } else {
            out.push_str(&format!("{ip}\t{hostname}.{domain}\t{hostname}\n"));
        }
    }
    out.push_str(&host_alias_entries(pod));
    out
}

/// Writes `<pod_dir>/etc-hosts` (mode 0644) and returns its path: the
/// node's own file under a header for hostNetwork pods, the managed content
/// otherwise; host aliases appended in both cases. The file is rewritten in
/// place, so containers that bind-mount it see updates.
pub fn write_etc_hosts(
    pod: &Value,
    pod_dir: &Path,
    pod_ips: &[String],
    host_etc_hosts: &Path,
    cluster_domain: &str,
) -> io::Result<PathBuf> {
    let content = if host_network(pod) {
        let node = fs::read(host_etc_hosts)?;
        let mut out = MANAGED_HOSTS_HEADER_WITH_HOST_NETWORK.as_bytes().to_vec();
        out.extend_from_slice(&node);
        out.extend_from_slice(host_alias_entries(pod).as_bytes());
        out
    } else {
        managed_hosts_content(pod, pod_ips, cluster_domain).into_bytes()
    };
    fs::create_dir_all(pod_dir)?;
    let path = pod_dir.join("etc-hosts");
    fs::write(&path, content)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LOCAL: &str = "# Kubernetes-managed hosts file.\n\
        127.0.0.1\tlocalhost\n\
        ::1\tlocalhost ip6-localhost ip6-loopback\n\
        fe00::0\tip6-localnet\n\
        fe00::0\tip6-mcastprefix\n\
        fe00::1\tip6-allnodes\n\
        fe00::2\tip6-allrouters\n";

    #[test]
    fn managed_file() {
        let tmp = tempfile::tempdir().unwrap();
        let pod = json!({"metadata": {"name": "web-0", "namespace": "ns"}, "spec": {}});
        let ips = vec!["10.42.0.5".to_string(), "fd00::5".to_string()];
        let path = write_etc_hosts(
            &pod,
            tmp.path(),
            &ips,
            Path::new("/nonexistent"),
            "cluster.local",
        )
        .unwrap();
        assert_eq!(path, tmp.path().join("etc-hosts"));
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{LOCAL}10.42.0.5\tweb-0\nfd00::5\tweb-0\n")
        );
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );

        let pod = json!({
            "metadata": {"name": "web-0", "namespace": "ns"},
            "spec": {
                "hostname": "h", "subdomain": "svc1",
                "hostAliases": [
                    {"ip": "1.2.3.4", "hostnames": ["a.example", "b.example"]},
                    {"ip": "::2", "hostnames": ["c"]},
                ],
            },
        });
        assert_eq!(
            managed_hosts_content(&pod, &ips[..1], "edge.local"),
            format!(
                "{LOCAL}10.42.0.5\th.svc1.ns.svc.edge.local\th\n\n\
                 # Entries added by HostAliases.\n1.2.3.4\ta.example\tb.example\n::2\tc\n"
            )
        );
    }

    #[test]
    fn host_network_file() {
        let tmp = tempfile::tempdir().unwrap();
        let node = tmp.path().join("hosts");
        fs::write(&node, "127.0.0.1 localhost\n10.0.0.1 gateway\n").unwrap();
        let pod = json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"hostNetwork": true, "hostAliases": [{"ip": "1.1.1.1", "hostnames": ["one"]}]},
        });
        assert!(manages_etc_hosts(&pod, &[]));
        let path =
            write_etc_hosts(&pod, &tmp.path().join("pod"), &[], &node, "cluster.local").unwrap();
        assert_eq!(
            fs::read_to_string(path).unwrap(),
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n10.0.0.1 gateway\n\n\
             # Entries added by HostAliases.\n1.1.1.1\tone\n"
        );
        let missing = write_etc_hosts(&pod, tmp.path(), &[], &tmp.path().join("x"), "c");
        assert!(missing.is_err());
        assert!(!manages_etc_hosts(&json!({"spec": {}}), &[]));
    }

    #[test]
    fn long_names_are_cut() {
        let name = format!("{}-{}", "a".repeat(62), "b".repeat(10));
        let pod = json!({"metadata": {"name": name, "namespace": "ns"}});
        let (h, d) = pod_host_name_and_domain(&pod, "cluster.local");
        assert_eq!(h, "a".repeat(62));
        assert_eq!(d, "");
    }
}
