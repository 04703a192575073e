//! Upstream's `flowcontrol.Backoff` as the kubelet uses it for crash loops
//! and image pulls: per key, 10 s doubling up to 5 min; an entry not touched
//! for twice the maximum counts as expired (the container has been stable).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// The kubelet's crash-loop and image-pull back-off: 10 s initial, 300 s max.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy)]
struct Entry {
    backoff: Duration,
    last_update: SystemTime,
}

/// Per-key exponential back-off. Times are wall-clock because the events
/// they compare with (a container's `finishedAt`) come from the runtime.
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF)
    }
}

fn since(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or(Duration::ZERO)
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn expired(&self, event_time: SystemTime, last_update: SystemTime) -> bool {
        since(event_time, last_update) > self.max * 2
    }

    /// Records an event at `event_time`: the first (or first after expiry)
    /// sets the initial delay, each further one doubles it up to the maximum.
    pub fn next(&self, key: &str, event_time: SystemTime, now: SystemTime) {
        let mut entries = self.lock();
        let entry = match entries.get(key) {
            Some(e) if !self.expired(event_time, e.last_update) => Entry {
                backoff: (e.backoff * 2).min(self.max),
                last_update: now,
            },
            _ => Entry {
                backoff: self.initial,
                last_update: now,
            },
        };
        entries.insert(key.to_owned(), entry);
    }

    /// Whether `now` is still within the current delay counted from
    /// `event_time`.
    pub fn is_in_backoff_since(&self, key: &str, event_time: SystemTime, now: SystemTime) -> bool {
        match self.lock().get(key) {
            Some(e) if !self.expired(event_time, e.last_update) => {
                since(now, event_time) < e.backoff
            }
            _ => false,
        }
    }

    /// Whether `now` is within the current delay counted from the last
    /// `next` (image pulls: from the last failure).
    pub fn is_in_backoff_since_update(&self, key: &str, now: SystemTime) -> bool {
        match self.lock().get(key) {
            Some(e) if !self.expired(now, e.last_update) => since(now, e.last_update) < e.backoff,
            _ => false,
        }
    }

    /// The current delay for `key` (zero when there is none).
    pub fn get(&self, key: &str) -> Duration {
        self.lock().get(key).map(|e| e.backoff).unwrap_or_default()
    }

    /// When the back-off that started at `event_time` ends, if `key` has one.
    pub fn ends_at(&self, key: &str, event_time: SystemTime) -> Option<SystemTime> {
        self.lock().get(key).map(|e| event_time + e.backoff)
    }

    /// Forget every key that starts with `prefix` (a pod's keys when it goes).
    pub fn forget_prefix(&self, prefix: &str) {
        self.lock().retain(|k, _| !k.starts_with(prefix));
    }

    /// Drop entries untouched for twice the maximum.
    pub fn gc(&self, now: SystemTime) {
        let max = self.max;
        self.lock()
            .retain(|_, e| since(now, e.last_update) <= max * 2);
    }
}

/// Formats a delay as Go's `time.Duration.String()` does for whole seconds
/// and minutes (`10s`, `1m20s`, `5m0s`), as upstream's messages show it.
pub fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let frac = d.subsec_millis();
    if secs >= 3600 {
        format!("{}h{}m{}s", secs / 3600, (secs % 3600) / 60, secs % 60)
    } else if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else if frac == 0 {
        format!("{secs}s")
    } else {
        let s = format!("{secs}.{frac:03}");
        format!("{}s", s.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    #[test]
    fn crash_loop_delays_double_from_10s_to_5m() {
        let b = Backoff::default();
        let key = "uid_app";
        // First exit: no entry, so no back-off; the restart records 10 s.
        assert!(!b.is_in_backoff_since(key, t(0), t(0)));
        b.next(key, t(0), t(0));
        assert_eq!(b.get(key), Duration::from_secs(10));
        // Second exit at 1 s: in back-off until 11 s.
        assert!(b.is_in_backoff_since(key, t(1), t(5)));
        assert!(!b.is_in_backoff_since(key, t(1), t(11)));
        let mut expected = 10;
        let mut now = 11;
        for _ in 0..8 {
            b.next(key, t(now), t(now));
            expected = (expected * 2).min(300);
            assert_eq!(b.get(key), Duration::from_secs(expected));
            now += expected;
        }
        assert_eq!(b.get(key), MAX_BACKOFF);
    }

    #[test]
    fn a_stable_container_starts_over() {
        let b = Backoff::default();
        b.next("k", t(0), t(0));
        b.next("k", t(10), t(10));
        assert_eq!(b.get("k"), Duration::from_secs(20));
        // Ran for more than 10 minutes since the last update: expired.
        assert!(!b.is_in_backoff_since("k", t(700), t(701)));
        b.next("k", t(700), t(700));
        assert_eq!(b.get("k"), Duration::from_secs(10));
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    }
}
