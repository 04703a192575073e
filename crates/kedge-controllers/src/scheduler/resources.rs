//! Resources: quantities, what a pod requests (upstream's
//! `computePodResourceRequest`), the `NodeResourcesFit` filter and the
//! `LeastAllocated` and `NodeResourcesBalancedAllocation` scores.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Upstream's `MaxNodeScore`.
pub const MAX_NODE_SCORE: i64 = 100;
/// CPU a container without a cpu request counts as when scoring (100m).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory a container without a memory request counts as when scoring (200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Amounts of the resources the scheduler accounts: cpu in millicores,
/// memory and ephemeral storage in bytes, the pod count, and scalar
/// (extended, hugepages) resources in their integer units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub allowed_pods: i64,
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// Parses a `ResourceList` (node allocatable, container requests).
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list {
            r.set(name, &q.0);
        }
        r
    }

    fn set(&mut self, name: &str, q: &str) {
        match name {
            "cpu" => self.milli_cpu = parse_milli(q).unwrap_or(0),
            "memory" => self.memory = parse_value(q).unwrap_or(0),
            "ephemeral-storage" => self.ephemeral_storage = parse_value(q).unwrap_or(0),
            "pods" => self.allowed_pods = parse_value(q).unwrap_or(0),
            n if is_scalar(n) => {
                self.scalar
                    .insert(n.to_string(), parse_value(q).unwrap_or(0));
            }
            _ => {}
        }
    }

    pub fn add(&mut self, o: &Resources) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    pub fn sub(&mut self, o: &Resources) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Each field the larger of the two (the init container rule).
    fn max_with(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar.get(name).copied().unwrap_or(0)
    }

    fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }
}

/// Extended resources (`vendor.example/thing`, not `kubernetes.io/`),
/// hugepages and attachable volumes: upstream's scalar resources.
pub fn is_scalar(name: &str) -> bool {
    name.starts_with("hugepages-") || name.starts_with("attachable-volumes-") || is_extended(name)
}

/// Upstream's `IsExtendedResourceName`: a domain-qualified name outside
/// the `kubernetes.io/` namespace, and not a quota `requests.` name.
pub fn is_extended(name: &str) -> bool {
    match name.split_once('/') {
        Some((domain, _)) => {
            let kubernetes = domain == "kubernetes.io" || domain.ends_with(".kubernetes.io");
            !kubernetes && !name.starts_with("requests.")
        }
        None => false,
    }
}

/// What a pod asks for: exact requests (for fitting) and requests with
/// upstream's non-zero defaults (cpu and memory, for scoring).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRequests {
    pub requests: Resources,
    pub non_zero_milli_cpu: i64,
    pub non_zero_memory: i64,
}

/// A container's requests; a resource with a limit and no request
/// requests its limit (as the API server's defaulting makes it).
fn container_requests(c: &Container) -> Resources {
    let mut r = Resources::default();
    let Some(res) = &c.resources else { return r };
    if let Some(limits) = &res.limits {
        for (name, q) in limits {
            r.set(name, &q.0);
        }
    }
    if let Some(requests) = &res.requests {
        for (name, q) in requests {
            r.set(name, &q.0);
        }
    }
    r.allowed_pods = 0;
    r
}

fn non_zero(r: &Resources) -> (i64, i64) {
    (
        if r.milli_cpu == 0 {
            DEFAULT_MILLI_CPU_REQUEST
        } else {
            r.milli_cpu
        },
        if r.memory == 0 {
            DEFAULT_MEMORY_REQUEST
        } else {
            r.memory
        },
    )
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// Upstream's `PodRequests` (k8s.io/component-helpers resource helpers):
/// the sum of the app containers and the sidecars (restartable init
/// containers), or, if larger, each plain init container plus the sidecars
/// started before it; then the pod overhead.
pub fn pod_requests(spec: &PodSpec) -> PodRequests {
    let mut sum = Resources::default();
    let (mut nz_cpu, mut nz_mem) = (0i64, 0i64);
    for c in &spec.containers {
        let r = container_requests(c);
        let (a, b) = non_zero(&r);
        nz_cpu += a;
        nz_mem += b;
        sum.add(&r);
    }
    let mut sidecars = Resources::default();
    let (mut sc_cpu, mut sc_mem) = (0i64, 0i64);
    let mut init_max = Resources::default();
    let (mut init_cpu, mut init_mem) = (0i64, 0i64);
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c);
        let (a, b) = non_zero(&r);
        if is_sidecar(c) {
            sidecars.add(&r);
            sc_cpu += a;
            sc_mem += b;
            // A sidecar runs with the init containers after it too.
            init_max.max_with(&sidecars);
            init_cpu = init_cpu.max(sc_cpu);
            init_mem = init_mem.max(sc_mem);
        } else {
            let mut with = r.clone();
            with.add(&sidecars);
            init_max.max_with(&with);
            init_cpu = init_cpu.max(a + sc_cpu);
            init_mem = init_mem.max(b + sc_mem);
        }
    }
    sum.add(&sidecars);
    nz_cpu += sc_cpu;
    nz_mem += sc_mem;
    sum.max_with(&init_max);
    nz_cpu = nz_cpu.max(init_cpu);
    nz_mem = nz_mem.max(init_mem);
    if let Some(overhead) = &spec.overhead {
        let o = Resources::from_list(overhead);
        sum.add(&o);
        nz_cpu += o.milli_cpu;
        nz_mem += o.memory;
    }
    PodRequests {
        requests: sum,
        non_zero_milli_cpu: nz_cpu,
        non_zero_memory: nz_mem,
    }
}

/// The `NodeResourcesFit` filter: the reasons (upstream's words) this pod
/// does not fit next to what is already `requested` on a node with
/// `allocatable` and `pod_count` pods. Empty when it fits.
pub fn insufficient(
    pod: &Resources,
    allocatable: &Resources,
    requested: &Resources,
    pod_count: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    if pod_count as i64 + 1 > allocatable.allowed_pods {
        out.push("Too many pods".to_string());
    }
    if pod.is_zero() {
        return out;
    }
    if allocatable.milli_cpu < pod.milli_cpu + requested.milli_cpu {
        out.push("Insufficient cpu".to_string());
    }
    if allocatable.memory < pod.memory + requested.memory {
        out.push("Insufficient memory".to_string());
    }
    if allocatable.ephemeral_storage < pod.ephemeral_storage + requested.ephemeral_storage {
        out.push("Insufficient ephemeral-storage".to_string());
    }
    for (name, want) in &pod.scalar {
        if *want == 0 {
            continue;
        }
        if allocatable.scalar(name) < want + requested.scalar(name) {
            out.push(format!("Insufficient {name}"));
        }
    }
    out
}

/// `LeastAllocated`: for cpu and memory (weight 1 each), the share left
/// free after placing the pod, scaled to 0..100, weighted average.
pub fn least_allocated_score(requested: [i64; 2], allocatable: [i64; 2]) -> i64 {
    let (mut score, mut weights) = (0i64, 0i64);
    for i in 0..2 {
        if allocatable[i] == 0 {
            continue;
        }
        let s = if requested[i] > allocatable[i] {
            0
        } else {
            (allocatable[i] - requested[i]) * MAX_NODE_SCORE / allocatable[i]
        };
        score += s;
        weights += 1;
    }
    if weights == 0 {
        0
    } else {
        score / weights
    }
}

/// `NodeResourcesBalancedAllocation`: 100 × (1 − the standard deviation of
/// the cpu and memory fractions in use after placing the pod).
pub fn balanced_allocation_score(requested: [i64; 2], allocatable: [i64; 2]) -> i64 {
    let mut fractions = Vec::with_capacity(2);
    for i in 0..2 {
        if allocatable[i] == 0 {
            continue;
        }
        fractions.push((requested[i] as f64 / allocatable[i] as f64).min(1.0));
    }
    let std = if fractions.len() == 2 {
        ((fractions[0] - fractions[1]) / 2.0).abs()
    } else {
        0.0
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

/// Whether balanced allocation skips this pod: it requests neither cpu
/// nor memory (upstream skips best-effort pods so they do not pile up).
pub fn balanced_allocation_skips(pod: &Resources) -> bool {
    pod.milli_cpu == 0 && pod.memory == 0
}

// ---- quantities ----

/// A parsed quantity: `digits × 10^exp10 × 2^exp2`, negative if `neg`.
struct Parsed {
    neg: bool,
    digits: i128,
    exp10: i32,
    exp2: u32,
}

fn parse(q: &str) -> Option<Parsed> {
    let q = q.trim();
    let (neg, rest) = match q.as_bytes().first()? {
        b'-' => (true, &q[1..]),
        b'+' => (false, &q[1..]),
        _ => (false, q),
    };
    let num_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (num, suffix) = rest.split_at(num_end);
    if num.is_empty() || num == "." {
        return None;
    }
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if frac.contains('.') {
        return None;
    }
    let mut digits: i128 = 0;
    let mut exp10: i32 = 0;
    for c in int.chars().chain(frac.chars()) {
        let d = i128::from(c.to_digit(10)?);
        if digits > i128::MAX / 100 {
            // Beyond any real quantity's precision: drop the digit.
            exp10 += 1;
            continue;
        }
        digits = digits * 10 + d;
    }
    exp10 -= i32::try_from(frac.len()).ok()?;
    let (e10, e2) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        s if s.starts_with(['e', 'E']) => (s[1..].parse::<i32>().ok()?, 0),
        _ => return None,
    };
    Some(Parsed {
        neg,
        digits,
        exp10: exp10 + e10,
        exp2: e2,
    })
}

/// `ceil(q × 10^scale)`, saturated to i64.
fn scaled(q: &str, scale: i32) -> Option<i64> {
    let p = parse(q)?;
    let mut num = p.digits;
    for _ in 0..p.exp2 {
        num = num.saturating_mul(2);
    }
    let e = p.exp10 + scale;
    let mut den: i128 = 1;
    if e >= 0 {
        for _ in 0..e.min(40) {
            num = num.saturating_mul(10);
        }
    } else {
        for _ in 0..(-e).min(38) {
            den *= 10;
        }
    }
    let mut v = num / den;
    if p.neg {
        v = -v;
    } else if num % den != 0 {
        v += 1;
    }
    Some(i64::try_from(v).unwrap_or(if p.neg { i64::MIN } else { i64::MAX }))
}

/// The quantity rounded up to an integer (upstream's `Value()`).
pub fn parse_value(q: &str) -> Option<i64> {
    scaled(q, 0)
}

/// The quantity in thousandths, rounded up (upstream's `MilliValue()`).
pub fn parse_milli(q: &str) -> Option<i64> {
    scaled(q, 3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).expect("pod spec")
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_milli("100m"), Some(100));
        assert_eq!(parse_milli("1"), Some(1000));
        assert_eq!(parse_milli("1.5"), Some(1500));
        assert_eq!(parse_milli("0.0001"), Some(1)); // rounded up
        assert_eq!(parse_value("1Gi"), Some(1 << 30));
        assert_eq!(parse_value("1.5Gi"), Some(3 << 29));
        assert_eq!(parse_value("500M"), Some(500_000_000));
        assert_eq!(parse_value("1e3"), Some(1000));
        assert_eq!(parse_value("2E2"), Some(200));
        assert_eq!(parse_value("128974848"), Some(128_974_848));
        assert_eq!(parse_value("129e6"), Some(129_000_000));
        assert_eq!(parse_value("123Mi"), Some(123 * 1024 * 1024));
        assert_eq!(parse_value("1k"), Some(1000));
        assert_eq!(parse_value("-1"), Some(-1));
        assert_eq!(parse_value("abc"), None);
        assert_eq!(parse_value("1Qi"), None);
        assert_eq!(parse_value(""), None);
    }

    #[test]
    fn requests_sum_containers_and_take_init_max_and_overhead() {
        let s = spec(json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "200m", "nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1", "memory": "50Mi"}}},
            ],
            "initContainers": [
                {"name": "i", "resources": {"requests": {"cpu": "1", "memory": "10Mi"}}},
            ],
            "overhead": {"cpu": "10m", "memory": "1Mi"},
        }));
        let r = pod_requests(&s);
        // cpu: max(100m+200m, 1000m) + 10m; memory: max(100Mi+50Mi (limit
        // as request), 10Mi) + 1Mi.
        assert_eq!(r.requests.milli_cpu, 1010);
        assert_eq!(r.requests.memory, 151 * 1024 * 1024);
        assert_eq!(r.requests.scalar("nvidia.com/gpu"), 1);
        // non-zero: both app containers have cpu; b's memory is its limit.
        assert_eq!(r.non_zero_milli_cpu, 1010);
    }

    #[test]
    fn sidecars_add_to_the_sum_and_to_later_init_containers() {
        let s = spec(json!({
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}],
            "initContainers": [
                {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "300m"}}},
                {"name": "init", "resources": {"requests": {"cpu": "500m"}}},
            ],
        }));
        // app + sidecar = 400m; init after the sidecar = 800m.
        assert_eq!(pod_requests(&s).requests.milli_cpu, 800);
        let s = spec(json!({
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}],
            "initContainers": [
                {"name": "init", "resources": {"requests": {"cpu": "500m"}}},
                {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "300m"}}},
            ],
        }));
        assert_eq!(pod_requests(&s).requests.milli_cpu, 1300);
    }

    #[test]
    fn best_effort_pods_score_with_defaults() {
        let r = pod_requests(&spec(json!({"containers": [{"name": "a"}, {"name": "b"}]})));
        assert!(r.requests.is_zero());
        assert_eq!(r.non_zero_milli_cpu, 200);
        assert_eq!(r.non_zero_memory, 2 * DEFAULT_MEMORY_REQUEST);
        assert!(balanced_allocation_skips(&r.requests));
    }

    #[test]
    fn fit_reports_each_insufficient_resource() {
        let alloc = Resources::from_list(
            &serde_json::from_value(
                json!({"cpu": "2", "memory": "1Gi", "pods": "3", "nvidia.com/gpu": "1"}),
            )
            .expect("list"),
        );
        let gpu1: BTreeMap<String, i64> = [("nvidia.com/gpu".to_string(), 1)].into();
        let used = Resources {
            milli_cpu: 1500,
            scalar: gpu1.clone(),
            ..Default::default()
        };
        let mut pod = Resources {
            milli_cpu: 600,
            memory: 100,
            scalar: gpu1,
            ..Default::default()
        };
        assert_eq!(
            insufficient(&pod, &alloc, &used, 3),
            vec![
                "Too many pods",
                "Insufficient cpu",
                "Insufficient nvidia.com/gpu"
            ]
        );
        pod.milli_cpu = 500;
        pod.scalar.clear();
        assert!(insufficient(&pod, &alloc, &used, 2).is_empty());
        // A node without the extended resource at all.
        let mut gpu = Resources::default();
        gpu.scalar.insert("example.com/tpu".into(), 1);
        assert_eq!(
            insufficient(&gpu, &alloc, &Resources::default(), 0),
            vec!["Insufficient example.com/tpu"]
        );
    }

    #[test]
    fn extended_names() {
        assert!(is_extended("nvidia.com/gpu"));
        assert!(!is_extended("kubernetes.io/foo"));
        assert!(!is_extended("cpu"));
        assert!(is_scalar("hugepages-2Mi"));
    }

    #[test]
    fn scores_match_upstream_formulas() {
        // Upstream's least allocated example: node 4000m/10000, requested
        // 3000m/5000 → ((1000*100/4000) + (5000*100/10000)) / 2 = 37.
        assert_eq!(least_allocated_score([3000, 5000], [4000, 10000]), 37);
        assert_eq!(least_allocated_score([5000, 0], [4000, 10000]), 50);
        // Balanced: fractions 0.75 and 0.5 → std 0.125 → 87.
        assert_eq!(balanced_allocation_score([3000, 5000], [4000, 10000]), 87);
        assert_eq!(balanced_allocation_score([2000, 5000], [4000, 10000]), 100);
    }
}
