//! The eviction manager's signals and hard thresholds, as far as the node's
//! pressure conditions need them (pkg/kubelet/eviction upstream):
//!
//! | signal | default hard threshold | condition |
//! | --- | --- | --- |
//! | `memory.available` (capacity − working set) | `100Mi` | MemoryPressure |
//! | `nodefs.available` | `10%` | DiskPressure |
//! | `nodefs.inodesFree` | `5%` | DiskPressure |
//! | `imagefs.available` | `15%` | DiskPressure |
//! | `imagefs.inodesFree` | `5%` | DiskPressure |
//! | `pid.available` (max tasks − tasks) | none | PIDPressure |
//!
//! A threshold is met when the available amount is below it. A condition
//! turns on as soon as one of its thresholds is met and stays on until none
//! has been met for `evictionPressureTransitionPeriod` (5 minutes).
//!
//! Evicting pods is not done here; this is what the Node reports.

use std::time::{Duration, Instant};

use super::machine::FsStats;

/// An eviction threshold: an absolute amount or a share of the capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// Bytes (or inodes, or tasks).
    Quantity(u64),
    /// A share of the capacity, `0.1` for `10%`. `f32` as upstream's
    /// `ThresholdValue.Percentage`, so the reserved bytes round the same.
    Percentage(f32),
}

impl Threshold {
    /// The threshold as an amount of `capacity` (`GetThresholdQuantity`).
    pub fn amount(&self, capacity: u64) -> u64 {
        match *self {
            Threshold::Quantity(q) => q,
            Threshold::Percentage(p) => (capacity as f64 * f64::from(p)) as u64,
        }
    }
}

/// The hard eviction thresholds (`--eviction-hard`).
#[derive(Debug, Clone, PartialEq)]
pub struct EvictionThresholds {
    pub memory_available: Option<Threshold>,
    pub nodefs_available: Option<Threshold>,
    pub nodefs_inodes_free: Option<Threshold>,
    pub imagefs_available: Option<Threshold>,
    pub imagefs_inodes_free: Option<Threshold>,
    pub pid_available: Option<Threshold>,
}

impl Default for EvictionThresholds {
    /// Upstream's Linux defaults (`DefaultEvictionHard`).
    fn default() -> EvictionThresholds {
        EvictionThresholds {
            memory_available: Some(Threshold::Quantity(100 * 1024 * 1024)),
            nodefs_available: Some(Threshold::Percentage(0.10)),
            nodefs_inodes_free: Some(Threshold::Percentage(0.05)),
            imagefs_available: Some(Threshold::Percentage(0.15)),
            imagefs_inodes_free: Some(Threshold::Percentage(0.05)),
            pid_available: None,
        }
    }
}

impl EvictionThresholds {
    /// Upstream's defaults overridden by an `--eviction-hard` value such as
    /// `memory.available<200Mi,imagefs.available<5%` (signals not named keep
    /// their defaults).
    pub fn parse(spec: &str) -> Result<EvictionThresholds, String> {
        let mut t = EvictionThresholds::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (signal, value) = part.split_once('<').ok_or_else(|| {
                format!("{part:?} is not signal<quantity (such as memory.available<100Mi)")
            })?;
            let value = value.trim();
            // As upstream's parseThresholdStatement: `0%` and `100%` turn the
            // signal off (another spelling of 0 % is a threshold never met),
            // a quantity must be positive.
            let threshold = match value.strip_suffix('%') {
                Some("0" | "100") => None,
                Some(p) => {
                    let p: f32 = p
                        .parse()
                        .map_err(|_| format!("{value:?} is not a percentage"))?;
                    if !(0.0..=100.0).contains(&p) {
                        return Err(format!("{value:?} is not between 0% and 100%"));
                    }
                    Some(Threshold::Percentage(p / 100.0))
                }
                None => {
                    let q = crate::podspec::Quantity::parse(value)
                        .map_err(|_| format!("{value:?} is not a quantity"))?;
                    if q.value() <= 0 {
                        return Err(format!(
                            "{part:?}: the threshold must be positive (0% turns the signal off)"
                        ));
                    }
                    Some(Threshold::Quantity(q.value() as u64))
                }
            };
            let slot = match signal.trim() {
                "memory.available" => &mut t.memory_available,
                "nodefs.available" => &mut t.nodefs_available,
                "nodefs.inodesFree" => &mut t.nodefs_inodes_free,
                "imagefs.available" => &mut t.imagefs_available,
                "imagefs.inodesFree" => &mut t.imagefs_inodes_free,
                "pid.available" => &mut t.pid_available,
                other => return Err(format!("unknown eviction signal {other:?}")),
            };
            *slot = threshold;
        }
        Ok(t)
    }

    /// What node allocatable sets aside for the memory threshold
    /// (`hardEvictionReservation`), in bytes of `memory_capacity`.
    pub fn memory_reservation(&self, memory_capacity: u64) -> u64 {
        self.memory_available
            .map(|t| t.amount(memory_capacity))
            .unwrap_or(0)
    }

    /// What node allocatable sets aside for `nodefs.available`, in bytes.
    pub fn ephemeral_storage_reservation(&self, nodefs_capacity: u64) -> u64 {
        self.nodefs_available
            .map(|t| t.amount(nodefs_capacity))
            .unwrap_or(0)
    }
}

/// One observation of the signals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Signals {
    pub memory_capacity: u64,
    pub memory_working_set: u64,
    pub nodefs: Option<FsStats>,
    pub imagefs: Option<FsStats>,
    /// (max tasks, tasks now).
    pub pids: Option<(u64, u64)>,
}

/// Which pressure conditions hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
    pub pid: bool,
}

fn below(threshold: Option<Threshold>, available: u64, capacity: u64) -> bool {
    threshold.is_some_and(|t| t.amount(capacity) > available)
}

impl Signals {
    /// The thresholds met by this observation.
    pub fn thresholds_met(&self, t: &EvictionThresholds) -> Pressure {
        let memory_available = self.memory_capacity.saturating_sub(self.memory_working_set);
        let memory = below(t.memory_available, memory_available, self.memory_capacity);
        let fs = |stats: Option<FsStats>, bytes: Option<Threshold>, inodes: Option<Threshold>| {
            stats.is_some_and(|s| {
                below(bytes, s.available_bytes, s.capacity_bytes)
                    || (s.inodes > 0 && below(inodes, s.inodes_free, s.inodes))
            })
        };
        let disk = fs(self.nodefs, t.nodefs_available, t.nodefs_inodes_free)
            || fs(self.imagefs, t.imagefs_available, t.imagefs_inodes_free);
        let pid = self
            .pids
            .is_some_and(|(max, now)| below(t.pid_available, max.saturating_sub(now), max));
        Pressure { memory, disk, pid }
    }
}

/// The pressure conditions over time: on at once, off only after the
/// transition period without the threshold being met.
#[derive(Debug, Clone)]
pub struct PressureTracker {
    transition_period: Duration,
    last_met: [Option<Instant>; 3],
}

impl PressureTracker {
    pub fn new(transition_period: Duration) -> PressureTracker {
        PressureTracker {
            transition_period,
            last_met: [None; 3],
        }
    }

    /// Record what is met now; returns the conditions to report.
    pub fn observe(&mut self, met: Pressure, now: Instant) -> Pressure {
        let flags = [met.memory, met.disk, met.pid];
        let mut out = [false; 3];
        for i in 0..3 {
            if flags[i] {
                self.last_met[i] = Some(now);
            }
            out[i] = self.last_met[i]
                .is_some_and(|at| now.saturating_duration_since(at) < self.transition_period);
        }
        Pressure {
            memory: out[0],
            disk: out[1],
            pid: out[2],
        }
    }
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn eviction_hard_overrides_the_named_signals() {
        let t = EvictionThresholds::parse("memory.available<200Mi, imagefs.available<5%")
            .expect("parse");
        assert_eq!(
            t.memory_available,
            Some(Threshold::Quantity(200 * 1024 * 1024))
        );
        assert_eq!(t.imagefs_available, Some(Threshold::Percentage(0.05)));
        assert_eq!(t.nodefs_available, Some(Threshold::Percentage(0.10)));
        assert!(EvictionThresholds::parse("memory.available>1Gi").is_err());
        assert!(EvictionThresholds::parse("disk.free<1%").is_err());
        assert!(EvictionThresholds::parse("nodefs.available<150%").is_err());
    }

    #[test]
    fn zero_and_hundred_percent_turn_a_signal_off() {
        let t = EvictionThresholds::parse("nodefs.available<0%,imagefs.inodesFree<100%")
            .expect("parse");
        assert_eq!(t.nodefs_available, None);
        assert_eq!(t.imagefs_inodes_free, None);
        assert_eq!(t.imagefs_available, Some(Threshold::Percentage(0.15)));
        // Off means never met, however full the disk.
        let full = Signals {
            nodefs: Some(FsStats {
                capacity_bytes: 100,
                available_bytes: 0,
                inodes: 100,
                inodes_free: 0,
            }),
            ..Signals::default()
        };
        let off = EvictionThresholds::parse(
            "nodefs.available<0%,nodefs.inodesFree<0%,imagefs.available<0%,imagefs.inodesFree<0%",
        )
        .expect("parse");
        assert!(!full.thresholds_met(&off).disk);
        assert!(full.thresholds_met(&EvictionThresholds::default()).disk);
        // A zero quantity is refused, as upstream ("must be positive").
        assert!(EvictionThresholds::parse("memory.available<0").is_err());
        assert!(EvictionThresholds::parse("memory.available<-1Mi").is_err());
        let zero = EvictionThresholds::parse("nodefs.available<0.0%").expect("parse");
        assert_eq!(zero.nodefs_available, Some(Threshold::Percentage(0.0)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GI: u64 = 1024 * 1024 * 1024;
    const MI: u64 = 1024 * 1024;

    fn fs(capacity: u64, available: u64, inodes: u64, free: u64) -> FsStats {
        FsStats {
            capacity_bytes: capacity,
            available_bytes: available,
            inodes,
            inodes_free: free,
        }
    }

    fn healthy() -> Signals {
        Signals {
            memory_capacity: 4 * GI,
            memory_working_set: GI,
            nodefs: Some(fs(100 * GI, 50 * GI, 1000, 900)),
            imagefs: Some(fs(100 * GI, 50 * GI, 1000, 900)),
            pids: Some((4_194_304, 300)),
        }
    }

    #[test]
    fn percentages_round_like_upstream() {
        // float32(0.1) is a hair above 0.1; upstream truncates the product.
        let cap = 62_671_097_856u64;
        assert_eq!(Threshold::Percentage(0.10).amount(cap), 6_267_109_878);
        assert_eq!(Threshold::Quantity(100 * MI).amount(cap), 100 * MI);
        let t = EvictionThresholds::default();
        assert_eq!(t.memory_reservation(4 * GI), 100 * MI);
        assert_eq!(t.ephemeral_storage_reservation(cap), 6_267_109_878);
    }

    #[test]
    fn each_signal_raises_its_condition() {
        let t = EvictionThresholds::default();
        assert_eq!(healthy().thresholds_met(&t), Pressure::default());

        let mut s = healthy();
        s.memory_working_set = 4 * GI - 99 * MI;
        assert_eq!(
            s.thresholds_met(&t),
            Pressure {
                memory: true,
                ..Pressure::default()
            }
        );
        s.memory_working_set = 4 * GI - 100 * MI;
        assert!(
            !s.thresholds_met(&t).memory,
            "exactly at the threshold is not below it"
        );

        let mut s = healthy();
        s.nodefs = Some(fs(100 * GI, 9 * GI, 1000, 900));
        assert!(s.thresholds_met(&t).disk);
        let mut s = healthy();
        s.nodefs = Some(fs(100 * GI, 50 * GI, 1000, 40));
        assert!(s.thresholds_met(&t).disk, "inodes");
        let mut s = healthy();
        s.imagefs = Some(fs(100 * GI, 14 * GI, 1000, 900));
        assert!(s.thresholds_met(&t).disk, "imagefs 15%");
        let mut s = healthy();
        s.nodefs = Some(fs(100 * GI, 11 * GI, 0, 0));
        s.imagefs = None;
        assert!(
            !s.thresholds_met(&t).disk,
            "a filesystem without inode counts"
        );

        // No pid.available threshold by default, as upstream.
        let mut s = healthy();
        s.pids = Some((1000, 999));
        assert!(!s.thresholds_met(&t).pid);
        let t = EvictionThresholds {
            pid_available: Some(Threshold::Percentage(0.10)),
            ..EvictionThresholds::default()
        };
        assert!(s.thresholds_met(&t).pid);
    }

    #[test]
    fn conditions_hold_for_the_transition_period() {
        let start = Instant::now();
        let mut tracker = PressureTracker::new(Duration::from_secs(300));
        let on = Pressure {
            memory: true,
            ..Pressure::default()
        };
        assert_eq!(
            tracker.observe(Pressure::default(), start),
            Pressure::default()
        );
        assert_eq!(tracker.observe(on, start + Duration::from_secs(10)), on);
        assert_eq!(
            tracker.observe(Pressure::default(), start + Duration::from_secs(200)),
            on
        );
        assert_eq!(
            tracker.observe(Pressure::default(), start + Duration::from_secs(310)),
            Pressure::default()
        );
    }
}
