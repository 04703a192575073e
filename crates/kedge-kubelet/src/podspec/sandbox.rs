//! `generatePodSandboxConfig` and the DNS configurer
//! (`pkg/kubelet/network/dns`).

use std::collections::HashMap;

use serde_json::Value;

use super::container::{linux_resources, quantity_at, security_profile};
use super::{all_containers, array_at, at, bool_at, str_at};
use crate::cri::api::{
    self, DnsConfig, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode,
    NamespaceOption, PodSandboxConfig, PodSandboxMetadata, PortMapping,
};

/// upstream's `validation.MaxDNSSearchPaths` (since 1.28).
const MAX_DNS_SEARCH_PATHS: usize = 32;

/// The host's resolver configuration (`/etc/resolv.conf`, or the kubelet's
/// `--resolv-conf`), used for `dnsPolicy: Default` and appended to
/// ClusterFirst searches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostDns {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// What the kubelet knows that the pod does not say.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// The sandbox attempt (0 for the first sandbox of a pod).
    pub attempt: u32,
    /// The pod's cgroup parent (the QoS/pod cgroup the agent manages).
    pub cgroup_parent: String,
    /// The cluster DNS servers (`--cluster-dns`); empty means ClusterFirst
    /// falls back to the host's configuration, as upstream does.
    pub cluster_dns: Vec<String>,
    /// `--cluster-domain`, `cluster.local` by default.
    pub cluster_domain: String,
    pub host_dns: HostDns,
    /// `/var/log/pods` upstream.
    pub pod_logs_root: String,
    /// Where `Localhost` seccomp profiles live (`<root-dir>/seccomp`).
    pub seccomp_root: String,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            attempt: 0,
            cgroup_parent: String::new(),
            cluster_dns: Vec::new(),
            cluster_domain: "cluster.local".into(),
            host_dns: HostDns::default(),
            pod_logs_root: "/var/log/pods".into(),
            seccomp_root: "/var/lib/kubelet/seccomp".into(),
        }
    }
}

/// Parses resolv.conf text as upstream's `parseResolvConf`: `nameserver`,
/// `search` (the last one wins) and `options` lines; comments dropped.
pub fn parse_resolv_conf(text: &str) -> HostDns {
    let mut dns = HostDns::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.first() {
            Some(&"nameserver") if fields.len() > 1 => dns.servers.push(fields[1].to_string()),
            Some(&"search") => {
                dns.searches = fields[1..]
                    .iter()
                    .map(|s| s.trim_end_matches('.').to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
            }
            Some(&"options") => dns.options = merge_options(&dns.options, &fields[1..]),
            _ => {}
        }
    }
    dns
}

/// Options merged by name, a later value replacing an earlier one
/// (`mergeDNSOptions`).
fn merge_options(existing: &[String], extra: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = existing.to_vec();
    for o in extra {
        let name = o.split(':').next().unwrap_or("");
        match out
            .iter_mut()
            .find(|e| e.split(':').next().unwrap_or("") == name)
        {
            Some(e) => *e = o.to_string(),
            None => out.push(o.to_string()),
        }
    }
    out
}

fn push_unique(v: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for i in items {
        if !v.contains(&i) {
            v.push(i);
        }
    }
}

/// The pod's DNS configuration (`Configurer.GetPodDNS`).
pub fn pod_dns_config(pod: &Value, opts: &SandboxOptions) -> DnsConfig {
    let host_network = bool_at(pod, &["spec", "hostNetwork"]);
    let policy = match str_at(pod, &["spec", "dnsPolicy"]) {
        "" => "ClusterFirst",
        p => p,
    };
    #[derive(PartialEq)]
    enum Kind {
        Cluster,
        Host,
        None,
    }
    let mut kind = match policy {
        "None" => Kind::None,
        "ClusterFirstWithHostNet" => Kind::Cluster,
        "ClusterFirst" if !host_network => Kind::Cluster,
        _ => Kind::Host,
    };
    if kind == Kind::Cluster && opts.cluster_dns.is_empty() {
        // upstream records a MissingClusterDNS event and uses the host's.
        kind = Kind::Host;
    }
    let mut cfg = DnsConfig::default();
    match kind {
        Kind::Cluster => {
            cfg.servers = opts.cluster_dns.clone();
            let ns = str_at(pod, &["metadata", "namespace"]);
            let d = &opts.cluster_domain;
            cfg.searches = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
            push_unique(&mut cfg.searches, opts.host_dns.searches.iter().cloned());
            cfg.options = vec!["ndots:5".into()];
        }
        Kind::Host => {
            cfg.servers = opts.host_dns.servers.clone();
            cfg.searches = opts.host_dns.searches.clone();
            cfg.options = opts.host_dns.options.clone();
        }
        Kind::None => {}
    }
    if let Some(extra) = at(pod, &["spec", "dnsConfig"]) {
        let strings = |key: &str| -> Vec<String> {
            array_at(extra, &[key])
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        };
        push_unique(&mut cfg.servers, strings("nameservers"));
        push_unique(&mut cfg.searches, strings("searches"));
        let opts: Vec<String> = array_at(extra, &["options"])
            .iter()
            .map(|o| {
                let name = str_at(o, &["name"]);
                match at(o, &["value"]).and_then(Value::as_str) {
                    Some(v) => format!("{name}:{v}"),
                    None => name.to_string(),
                }
            })
            .collect();
        let refs: Vec<&str> = opts.iter().map(String::as_str).collect();
        cfg.options = merge_options(&cfg.options, &refs);
    }
    cfg.searches.truncate(MAX_DNS_SEARCH_PATHS);
    cfg
}

/// upstream's `GeneratePodHostNameAndDomain` plus `GetNodenameForKernel`:
/// the pod name (or `spec.hostname`) cut to 63 characters without a
/// trailing `-`/`.`, and the FQDN when `setHostnameAsFQDN`.
pub(crate) fn pod_hostname(pod: &Value, cluster_domain: &str) -> (String, String) {
    let mut hostname = match str_at(pod, &["spec", "hostname"]) {
        "" => str_at(pod, &["metadata", "name"]).to_string(),
        h => h.to_string(),
    };
    if hostname.len() > 63 {
        hostname.truncate(63);
        while hostname.ends_with(['-', '.']) {
            hostname.pop();
        }
    }
    let domain = match str_at(pod, &["spec", "subdomain"]) {
        "" => String::new(),
        sub => format!(
            "{sub}.{}.svc.{cluster_domain}",
            str_at(pod, &["metadata", "namespace"])
        ),
    };
    (hostname, domain)
}

fn namespace_options(pod: &Value) -> NamespaceOption {
    let mode = |host: bool, otherwise: NamespaceMode| {
        if host {
            NamespaceMode::Node as i32
        } else {
            otherwise as i32
        }
    };
    let shared_pid = bool_at(pod, &["spec", "shareProcessNamespace"]);
    NamespaceOption {
        network: mode(bool_at(pod, &["spec", "hostNetwork"]), NamespaceMode::Pod),
        pid: mode(
            bool_at(pod, &["spec", "hostPID"]),
            if shared_pid {
                NamespaceMode::Pod
            } else {
                NamespaceMode::Container
            },
        ),
        ipc: mode(bool_at(pod, &["spec", "hostIPC"]), NamespaceMode::Pod),
        ..Default::default()
    }
}

pub(crate) fn pod_namespace_options(pod: &Value) -> NamespaceOption {
    namespace_options(pod)
}

fn protocol(p: &str) -> i32 {
    match p {
        "UDP" => api::Protocol::Udp as i32,
        "SCTP" => api::Protocol::Sctp as i32,
        _ => api::Protocol::Tcp as i32,
    }
}

/// Builds the `RunPodSandbox` config of `pod`.
pub fn sandbox_config(pod: &Value, opts: &SandboxOptions) -> PodSandboxConfig {
    let name = str_at(pod, &["metadata", "name"]);
    let namespace = str_at(pod, &["metadata", "namespace"]);
    let uid = str_at(pod, &["metadata", "uid"]);
    let host_network = bool_at(pod, &["spec", "hostNetwork"]);

    let hostname = if host_network {
        String::new()
    } else {
        let (h, d) = pod_hostname(pod, &opts.cluster_domain);
        if bool_at(pod, &["spec", "setHostnameAsFQDN"]) && !d.is_empty() {
            format!("{h}.{d}")
        } else {
            h
        }
    };

    let mut labels: HashMap<String, String> = HashMap::new();
    if let Some(l) = at(pod, &["metadata", "labels"]).and_then(Value::as_object) {
        for (k, v) in l {
            labels.insert(k.clone(), v.as_str().unwrap_or("").to_string());
        }
    }
    labels.insert(super::POD_NAME_LABEL.into(), name.into());
    labels.insert(super::POD_NAMESPACE_LABEL.into(), namespace.into());
    labels.insert(super::POD_UID_LABEL.into(), uid.into());
    let mut annotations: HashMap<String, String> = HashMap::new();
    if let Some(a) = at(pod, &["metadata", "annotations"]).and_then(Value::as_object) {
        for (k, v) in a {
            annotations.insert(k.clone(), v.as_str().unwrap_or("").to_string());
        }
    }

    let mut port_mappings = Vec::new();
    for c in array_at(pod, &["spec", "containers"]) {
        for p in array_at(c, &["ports"]) {
            port_mappings.push(PortMapping {
                protocol: protocol(str_at(p, &["protocol"])),
                container_port: at(p, &["containerPort"])
                    .and_then(Value::as_i64)
                    .unwrap_or(0) as i32,
                host_port: at(p, &["hostPort"]).and_then(Value::as_i64).unwrap_or(0) as i32,
                host_ip: str_at(p, &["hostIP"]).to_string(),
            });
        }
    }

    let psc = at(pod, &["spec", "securityContext"]);
    let int = |k: &str| {
        psc.and_then(|s| at(s, &[k]))
            .and_then(Value::as_i64)
            .map(|value| api::Int64Value { value })
    };
    let mut supplemental_groups = Vec::new();
    if let Some(g) = psc
        .and_then(|s| at(s, &["fsGroup"]))
        .and_then(Value::as_i64)
    {
        supplemental_groups.push(g);
    }
    if let Some(s) = psc {
        supplemental_groups.extend(
            array_at(s, &["supplementalGroups"])
                .iter()
                .filter_map(Value::as_i64),
        );
    }
    let sysctls: HashMap<String, String> = psc
        .map(|s| array_at(s, &["sysctls"]))
        .unwrap_or(&[])
        .iter()
        .map(|s| {
            (
                str_at(s, &["name"]).to_string(),
                str_at(s, &["value"]).to_string(),
            )
        })
        .collect();
    let privileged = all_containers(pod).any(|c| bool_at(c, &["securityContext", "privileged"]));
    let security_context = LinuxSandboxSecurityContext {
        namespace_options: Some(namespace_options(pod)),
        run_as_user: int("runAsUser"),
        run_as_group: int("runAsGroup"),
        supplemental_groups,
        privileged,
        seccomp: Some(security_profile(
            psc.and_then(|s| at(s, &["seccompProfile"])),
            &opts.seccomp_root,
        )),
        ..Default::default()
    };

    // Overhead, and the pod's resources without it (`calculateSandboxResources`).
    let overhead = at(pod, &["spec", "overhead"]).map(|o| {
        let cpu = quantity_at(o, "cpu");
        linux_resources(cpu, cpu, quantity_at(o, "memory"))
    });
    // upstream's `PodRequests`/`PodLimits` also weigh init containers; the
    // app containers' sum is what matters for a running pod.
    let sum = |kind: &str, res: &str| -> Option<super::Quantity> {
        let mut total: i64 = 0;
        let mut any = false;
        let mut all = true;
        for c in array_at(pod, &["spec", "containers"]) {
            match at(c, &["resources", kind]).and_then(|r| quantity_at(r, res)) {
                Some(q) => {
                    any = true;
                    total += if res == "cpu" {
                        q.milli_value()
                    } else {
                        q.value()
                    };
                }
                None => all = false,
            }
        }
        // A pod limit exists only when every container sets one.
        if !any || (kind == "limits" && !all) {
            return None;
        }
        let text = if res == "cpu" {
            format!("{total}m")
        } else {
            total.to_string()
        };
        super::Quantity::parse(&text).ok()
    };
    let resources = linux_resources(
        sum("requests", "cpu"),
        sum("limits", "cpu"),
        sum("limits", "memory"),
    );

    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: namespace.into(),
            attempt: opts.attempt,
        }),
        hostname,
        log_directory: format!("{}/{namespace}_{name}_{uid}", opts.pod_logs_root),
        dns_config: Some(pod_dns_config(pod, opts)),
        port_mappings,
        labels,
        annotations,
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: opts.cgroup_parent.clone(),
            security_context: Some(security_context),
            sysctls,
            overhead,
            resources: Some(resources),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn opts() -> SandboxOptions {
        SandboxOptions {
            cluster_dns: vec!["10.43.0.10".into()],
            host_dns: HostDns {
                servers: vec!["192.168.1.1".into()],
                searches: vec!["lan".into()],
                options: vec!["edns0".into()],
            },
            cgroup_parent: "/kubepods/burstable/podu1".into(),
            ..Default::default()
        }
    }

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "ns1", "uid": "u1",
            "labels": {"app": "web"}, "annotations": {"a": "b"}}, "spec": spec})
    }

    #[test]
    fn dns_cluster_first() {
        let d = pod_dns_config(&pod(json!({"containers": []})), &opts());
        assert_eq!(d.servers, vec!["10.43.0.10"]);
        assert_eq!(
            d.searches,
            vec![
                "ns1.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "lan"
            ]
        );
        assert_eq!(d.options, vec!["ndots:5"]);
    }

    #[test]
    fn dns_cluster_first_on_host_network_is_default() {
        let d = pod_dns_config(&pod(json!({"hostNetwork": true})), &opts());
        assert_eq!(d.servers, vec!["192.168.1.1"]);
        assert_eq!(d.searches, vec!["lan"]);
        assert_eq!(d.options, vec!["edns0"]);
        let d = pod_dns_config(
            &pod(json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"})),
            &opts(),
        );
        assert_eq!(d.servers, vec!["10.43.0.10"]);
    }

    #[test]
    fn dns_default_and_missing_cluster_dns() {
        let d = pod_dns_config(&pod(json!({"dnsPolicy": "Default"})), &opts());
        assert_eq!(d.servers, vec!["192.168.1.1"]);
        let mut o = opts();
        o.cluster_dns.clear();
        let d = pod_dns_config(&pod(json!({})), &o);
        assert_eq!(d.servers, vec!["192.168.1.1"]);
        assert_eq!(d.options, vec!["edns0"]);
    }

    #[test]
    fn dns_none_and_dns_config_merge() {
        let d = pod_dns_config(
            &pod(json!({"dnsPolicy": "None", "dnsConfig": {
                "nameservers": ["1.1.1.1"], "searches": ["a.example"],
                "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}})),
            &opts(),
        );
        assert_eq!(d.servers, vec!["1.1.1.1"]);
        assert_eq!(d.searches, vec!["a.example"]);
        assert_eq!(d.options, vec!["ndots:2", "edns0"]);
        // ClusterFirst plus dnsConfig: options merged by name, duplicates dropped.
        let d = pod_dns_config(
            &pod(
                json!({"dnsConfig": {"nameservers": ["10.43.0.10", "8.8.8.8"],
                "searches": ["cluster.local", "x"], "options": [{"name": "ndots", "value": "1"}]}}),
            ),
            &opts(),
        );
        assert_eq!(d.servers, vec!["10.43.0.10", "8.8.8.8"]);
        assert_eq!(d.searches.len(), 5);
        assert_eq!(d.searches[4], "x");
        assert_eq!(d.options, vec!["ndots:1"]);
    }

    #[test]
    fn resolv_conf() {
        let d = parse_resolv_conf(
            "# c\nnameserver 1.2.3.4\nnameserver 5.6.7.8 # x\nsearch a.b. c\noptions ndots:2 rotate\noptions ndots:3\n",
        );
        assert_eq!(d.servers, vec!["1.2.3.4", "5.6.7.8"]);
        assert_eq!(d.searches, vec!["a.b", "c"]);
        assert_eq!(d.options, vec!["ndots:3", "rotate"]);
    }

    #[test]
    fn sandbox() {
        let p = pod(json!({
            "hostname": "h", "subdomain": "sub", "setHostnameAsFQDN": true,
            "securityContext": {"runAsUser": 1000, "fsGroup": 2000, "supplementalGroups": [3000],
                "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]},
            "containers": [{"name": "c", "ports": [
                {"containerPort": 80, "hostPort": 8080, "protocol": "TCP"},
                {"containerPort": 53, "protocol": "UDP"}],
                "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}}}],
            "initContainers": [{"name": "i", "securityContext": {"privileged": true}}],
            "overhead": {"cpu": "100m", "memory": "10Mi"}
        }));
        let s = sandbox_config(&p, &opts());
        let m = s.metadata.as_ref().unwrap();
        assert_eq!(
            (&*m.name, &*m.namespace, &*m.uid, m.attempt),
            ("web", "ns1", "u1", 0)
        );
        assert_eq!(s.hostname, "h.sub.ns1.svc.cluster.local");
        assert_eq!(s.log_directory, "/var/log/pods/ns1_web_u1");
        assert_eq!(s.labels["io.kubernetes.pod.name"], "web");
        assert_eq!(s.labels["io.kubernetes.pod.namespace"], "ns1");
        assert_eq!(s.labels["io.kubernetes.pod.uid"], "u1");
        assert_eq!(s.labels["app"], "web");
        assert_eq!(s.annotations["a"], "b");
        assert_eq!(s.port_mappings.len(), 2);
        assert_eq!(s.port_mappings[0].host_port, 8080);
        assert_eq!(s.port_mappings[1].protocol, api::Protocol::Udp as i32);
        let l = s.linux.unwrap();
        assert_eq!(l.cgroup_parent, "/kubepods/burstable/podu1");
        assert_eq!(l.sysctls["net.ipv4.ip_unprivileged_port_start"], "0");
        let sc = l.security_context.unwrap();
        assert!(sc.privileged);
        assert_eq!(sc.run_as_user.unwrap().value, 1000);
        assert_eq!(sc.supplemental_groups, vec![2000, 3000]);
        let ns = sc.namespace_options.unwrap();
        assert_eq!(ns.network, NamespaceMode::Pod as i32);
        assert_eq!(ns.pid, NamespaceMode::Container as i32);
        assert_eq!(ns.ipc, NamespaceMode::Pod as i32);
        let o = l.overhead.unwrap();
        assert_eq!(o.cpu_shares, 102);
        assert_eq!(o.cpu_quota, 10_000);
        assert_eq!(o.memory_limit_in_bytes, 10 << 20);
        let r = l.resources.unwrap();
        assert_eq!(r.cpu_shares, 256);
        assert_eq!(r.cpu_quota, 50_000);
        assert_eq!(r.cpu_period, 100_000);
        assert_eq!(r.memory_limit_in_bytes, 64 << 20);
    }

    #[test]
    fn sandbox_host_namespaces() {
        let p = pod(
            json!({"hostNetwork": true, "hostPID": true, "hostIPC": true,
            "containers": [{"name": "c"}]}),
        );
        let s = sandbox_config(&p, &opts());
        assert_eq!(s.hostname, "");
        let ns = s
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(
            (ns.network, ns.pid, ns.ipc),
            (
                NamespaceMode::Node as i32,
                NamespaceMode::Node as i32,
                NamespaceMode::Node as i32
            )
        );
        let p = pod(json!({"shareProcessNamespace": true, "containers": []}));
        let ns = namespace_options(&p);
        assert_eq!(ns.pid, NamespaceMode::Pod as i32);
        let long = "a".repeat(62) + "-bc";
        let (h, _) = pod_hostname(&json!({"metadata": {"name": long}}), "cluster.local");
        assert_eq!(h, "a".repeat(62));
    }
}
