//! What the node is made of, read from the host: the facts cAdvisor gives
//! the upstream kubelet (cores, memory, hugepages, machine and boot ids,
//! kernel, OS image) and the signals its eviction manager watches (memory
//! working set, filesystem and PID usage).
//!
//! Everything under `/proc`, `/sys` and `/etc` is read through a
//! [`HostRoot`], so tests point it at a directory holding a fake host.
//! Filesystem usage is read with `statvfs(2)` on the agent's own
//! directories, which are real paths.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{NodeError, Result};

/// The directory the host's `/proc`, `/sys` and `/etc` are read under
/// (`/` in production).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoot(PathBuf);

impl HostRoot {
    pub fn new(root: impl Into<PathBuf>) -> HostRoot {
        HostRoot(root.into())
    }

    /// `rel` (such as `proc/meminfo`) under the root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel.trim_start_matches('/'))
    }

    fn read(&self, rel: &str) -> Result<String> {
        let path = self.path(rel);
        fs::read_to_string(&path).map_err(|source| NodeError::HostRead { path, source })
    }

    fn read_opt(&self, rel: &str) -> Option<String> {
        fs::read_to_string(self.path(rel)).ok()
    }
}

impl Default for HostRoot {
    fn default() -> HostRoot {
        HostRoot::new("/")
    }
}

/// Static facts about the machine (they change at most with a reboot or a
/// hugepage reservation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineInfo {
    pub num_cores: u64,
    /// `MemTotal` in bytes.
    pub memory_bytes: u64,
    /// `SwapTotal` in bytes.
    pub swap_bytes: u64,
    /// Pre-allocated hugepages: (page size in bytes, bytes reserved).
    pub hugepages: Vec<(u64, u64)>,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    pub kernel_version: String,
    pub os_image: String,
}

/// The fields of `/proc/meminfo` the agent uses, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemInfo {
    pub total: u64,
    pub free: u64,
    pub available: Option<u64>,
    pub swap_total: u64,
}

/// Parse `/proc/meminfo` (values in kB, that is KiB).
pub fn parse_meminfo(text: &str) -> Option<MemInfo> {
    let mut info = MemInfo::default();
    let mut seen_total = false;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let Some(value) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        else {
            continue;
        };
        let bytes = value.saturating_mul(1024);
        match key.trim() {
            "MemTotal" => {
                info.total = bytes;
                seen_total = true;
            }
            "MemFree" => info.free = bytes,
            "MemAvailable" => info.available = Some(bytes),
            "SwapTotal" => info.swap_total = bytes,
            _ => {}
        }
    }
    seen_total.then_some(info)
}

/// Count the CPUs of a kernel CPU list such as `0-3,6,8-9`.
pub fn count_cpu_list(list: &str) -> Option<u64> {
    let mut count = 0u64;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let a: u64 = a.trim().parse().ok()?;
                let b: u64 = b.trim().parse().ok()?;
                if b < a {
                    return None;
                }
                count += b - a + 1;
            }
            None => {
                part.trim().parse::<u64>().ok()?;
                count += 1;
            }
        }
    }
    (count > 0).then_some(count)
}

/// `PRETTY_NAME` of an os-release file, unquoted.
pub fn os_release_pretty_name(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line.trim().strip_prefix("PRETTY_NAME=")?;
        let value = value.trim();
        let unquoted = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        Some(unquoted.to_owned())
    })
}

/// A value of a flat `key value` file such as cgroup's `memory.stat`.
fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

impl HostRoot {
    /// Read the machine's facts. Only memory is required; the ids and
    /// versions are empty where the host does not have them.
    pub fn machine_info(&self) -> Result<MachineInfo> {
        let meminfo_text = self.read("proc/meminfo")?;
        let meminfo = parse_meminfo(&meminfo_text).ok_or_else(|| NodeError::HostParse {
            path: self.path("proc/meminfo"),
            what: "MemTotal",
        })?;
        Ok(MachineInfo {
            num_cores: self.num_cores(),
            memory_bytes: meminfo.total,
            swap_bytes: meminfo.swap_total,
            hugepages: self.hugepages(),
            machine_id: self.first_line(&["etc/machine-id", "var/lib/dbus/machine-id"]),
            system_uuid: self.first_line(&[
                "sys/class/dmi/id/product_uuid",
                "proc/device-tree/system-id",
                "proc/device-tree/vm,uuid",
            ]),
            boot_id: self.first_line(&["proc/sys/kernel/random/boot_id"]),
            kernel_version: self.first_line(&["proc/sys/kernel/osrelease"]),
            os_image: self
                .read_opt("etc/os-release")
                .or_else(|| self.read_opt("usr/lib/os-release"))
                .and_then(|t| os_release_pretty_name(&t))
                .unwrap_or_else(|| "Linux".to_owned()),
        })
    }

    /// The first non-empty first line of these files (device-tree strings
    /// end in NUL), or "".
    fn first_line(&self, candidates: &[&str]) -> String {
        candidates
            .iter()
            .filter_map(|rel| self.read_opt(rel))
            .map(|t| {
                t.trim_matches(|c: char| c == '\0' || c.is_whitespace())
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned()
            })
            .find(|s| !s.is_empty())
            .unwrap_or_default()
    }

    /// Online CPUs (`/sys/devices/system/cpu/online`), else the processors
    /// of `/proc/cpuinfo`, else what the process may use.
    fn num_cores(&self) -> u64 {
        if let Some(n) = self
            .read_opt("sys/devices/system/cpu/online")
            .and_then(|t| count_cpu_list(&t))
        {
            return n;
        }
        if let Some(text) = self.read_opt("proc/cpuinfo") {
            let n = text
                .lines()
                .filter(|l| l.split(':').next().map(str::trim) == Some("processor"))
                .count() as u64;
            if n > 0 {
                return n;
            }
        }
        std::thread::available_parallelism()
            .map(|n| n.get() as u64)
            .unwrap_or(1)
    }

    /// `/sys/kernel/mm/hugepages/hugepages-<size>kB/nr_hugepages`, by page size.
    fn hugepages(&self) -> Vec<(u64, u64)> {
        let Ok(entries) = fs::read_dir(self.path("sys/kernel/mm/hugepages")) else {
            return Vec::new();
        };
        let mut sizes: Vec<(u64, u64)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let kib: u64 = name
                    .strip_prefix("hugepages-")?
                    .strip_suffix("kB")?
                    .parse()
                    .ok()?;
                let pages: u64 = fs::read_to_string(e.path().join("nr_hugepages"))
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                    .unwrap_or(0);
                let page = kib.saturating_mul(1024);
                Some((page, page.saturating_mul(pages)))
            })
            .collect();
        sizes.sort_unstable();
        sizes
    }

    /// The memory working set of the whole machine, in bytes, as cAdvisor
    /// reports it for the root cgroup: usage minus inactive file pages.
    pub fn memory_working_set(&self, meminfo: &MemInfo) -> u64 {
        // cgroup v1: the root memory cgroup has usage_in_bytes.
        if let (Some(usage), Some(stat)) = (
            self.read_opt("sys/fs/cgroup/memory/memory.usage_in_bytes")
                .and_then(|t| t.trim().parse::<u64>().ok()),
            self.read_opt("sys/fs/cgroup/memory/memory.stat"),
        ) {
            let inactive = stat_value(&stat, "total_inactive_file").unwrap_or(0);
            return usage.saturating_sub(inactive);
        }
        // cgroup v2: the root has no memory.current; runc takes usage from
        // meminfo and inactive_file from the root memory.stat.
        if let Some(stat) = self.read_opt("sys/fs/cgroup/memory.stat") {
            let usage = meminfo.total.saturating_sub(meminfo.free);
            let inactive = stat_value(&stat, "inactive_file").unwrap_or(0);
            return usage.saturating_sub(inactive);
        }
        match meminfo.available {
            Some(available) => meminfo.total.saturating_sub(available),
            None => meminfo.total.saturating_sub(meminfo.free),
        }
    }

    /// Current `/proc/meminfo`.
    pub fn meminfo(&self) -> Result<MemInfo> {
        let text = self.read("proc/meminfo")?;
        parse_meminfo(&text).ok_or_else(|| NodeError::HostParse {
            path: self.path("proc/meminfo"),
            what: "MemTotal",
        })
    }

    /// (max tasks, tasks now) as the kubelet's `pidlimit` reads them: the
    /// smaller of `pid_max` and `threads-max`, and the task count of
    /// `/proc/loadavg`.
    pub fn pid_stats(&self) -> Option<(u64, u64)> {
        let max = ["proc/sys/kernel/pid_max", "proc/sys/kernel/threads-max"]
            .iter()
            .filter_map(|rel| self.read_opt(rel))
            .filter_map(|t| t.trim().parse::<u64>().ok())
            .min()?;
        let running = self
            .read_opt("proc/loadavg")?
            .split_whitespace()
            .nth(3)?
            .split_once('/')?
            .1
            .parse::<u64>()
            .ok()?;
        Some((max, running))
    }
}

/// Usage of one filesystem, from `statvfs(2)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsStats {
    pub capacity_bytes: u64,
    pub available_bytes: u64,
    pub inodes: u64,
    pub inodes_free: u64,
}

/// `statvfs(2)` of the filesystem holding `path`.
pub fn fs_stats(path: &Path) -> Result<FsStats> {
    let wrap = |source| NodeError::Statvfs {
        path: path.to_owned(),
        source,
    };
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| wrap(std::io::Error::from(std::io::ErrorKind::InvalidInput)))?;
    let mut out = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call and
    // `out` points to writable memory the size of a `statvfs`; the kernel
    // fills it completely when the call returns 0, and it is only read then.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), out.as_mut_ptr()) };
    if rc != 0 {
        return Err(wrap(std::io::Error::last_os_error()));
    }
    // SAFETY: statvfs returned 0, so it initialised `out`.
    let s = unsafe { out.assume_init() };
    // The field types are narrower than u64 on 32-bit targets.
    #[allow(clippy::unnecessary_cast)]
    let stats = FsStats {
        capacity_bytes: (s.f_frsize as u64).saturating_mul(s.f_blocks as u64),
        available_bytes: (s.f_frsize as u64).saturating_mul(s.f_bavail as u64),
        inodes: s.f_files as u64,
        inodes_free: s.f_ffree as u64,
    };
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_is_parsed_in_bytes() {
        let text = "MemTotal:       16331672 kB\nMemFree:         1000000 kB\nMemAvailable:    8000000 kB\nSwapTotal:             0 kB\n";
        let m = parse_meminfo(text).expect("meminfo");
        assert_eq!(m.total, 16_331_672 * 1024);
        assert_eq!(m.free, 1_000_000 * 1024);
        assert_eq!(m.available, Some(8_000_000 * 1024));
        assert!(parse_meminfo("MemFree: 1 kB\n").is_none());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpu_list("0-3\n"), Some(4));
        assert_eq!(count_cpu_list("0-3,6,8-9"), Some(7));
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list(""), None);
        assert_eq!(count_cpu_list("3-1"), None);
    }

    #[test]
    fn pretty_name() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            os_release_pretty_name(text).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(
            os_release_pretty_name("PRETTY_NAME=Alpine").as_deref(),
            Some("Alpine")
        );
        assert_eq!(os_release_pretty_name("NAME=x"), None);
    }

    #[test]
    fn statvfs_of_a_real_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = fs_stats(dir.path()).expect("statvfs");
        assert!(s.capacity_bytes > 0);
        assert!(s.available_bytes <= s.capacity_bytes);
        assert!(fs_stats(&dir.path().join("missing")).is_err());
    }
}
