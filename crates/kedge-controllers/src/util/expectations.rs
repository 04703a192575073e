//! Controller expectations (upstream `UIDTrackingControllerExpectations`):
//! after a controller creates or deletes pods it waits until its watch has
//! seen those changes before acting on its (possibly stale) cache again.
//! Creations are counted; deletions are tracked by pod key so a delete seen
//! twice is counted once. Expectations expire after five minutes so a lost
//! event cannot wedge a controller.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// upstream `ExpectationsTimeout`.
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Expectation {
    adds: i64,
    deletes: HashSet<String>,
    stamp: Instant,
}

/// Expectations of every controller object, by its `namespace/name` key.
#[derive(Debug, Default)]
pub struct Expectations {
    map: Mutex<HashMap<String, Expectation>>,
}

impl Expectations {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Expectation>> {
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the controller may sync `key`: nothing pending, expired, or
    /// never recorded.
    pub fn satisfied(&self, key: &str) -> bool {
        match self.lock().get(key) {
            None => true,
            Some(e) => {
                (e.adds <= 0 && e.deletes.is_empty()) || e.stamp.elapsed() > EXPECTATIONS_TIMEOUT
            }
        }
    }

    /// Expects `adds` pod creations.
    pub fn expect_creations(&self, key: &str, adds: usize) {
        self.lock().insert(
            key.to_string(),
            Expectation {
                adds: adds as i64,
                deletes: HashSet::new(),
                stamp: Instant::now(),
            },
        );
    }

    /// Expects the deletion of these pods (`namespace/name`).
    pub fn expect_deletions(&self, key: &str, pods: impl IntoIterator<Item = String>) {
        self.lock().insert(
            key.to_string(),
            Expectation {
                adds: 0,
                deletes: pods.into_iter().collect(),
                stamp: Instant::now(),
            },
        );
    }

    /// One expected creation was seen (or will never happen).
    pub fn creation_observed(&self, key: &str) {
        if let Some(e) = self.lock().get_mut(key) {
            e.adds -= 1;
        }
    }

    /// The deletion of `pod` was seen (or will never happen).
    pub fn deletion_observed(&self, key: &str, pod: &str) {
        if let Some(e) = self.lock().get_mut(key) {
            e.deletes.remove(pod);
        }
    }

    /// Forgets `key` (its controller object was deleted).
    pub fn delete(&self, key: &str) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_and_deletions_must_be_observed() {
        let e = Expectations::new();
        assert!(e.satisfied("ns/rs"));
        e.expect_creations("ns/rs", 2);
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(e.satisfied("ns/rs"));

        e.expect_deletions("ns/rs", ["ns/a".to_string(), "ns/b".to_string()]);
        e.deletion_observed("ns/rs", "ns/a");
        e.deletion_observed("ns/rs", "ns/a");
        assert!(!e.satisfied("ns/rs"), "a repeated delete counts once");
        e.deletion_observed("ns/rs", "ns/b");
        assert!(e.satisfied("ns/rs"));
    }

    #[tokio::test(start_paused = true)]
    async fn expectations_expire() {
        let e = Expectations::new();
        e.expect_creations("ns/rs", 1);
        tokio::time::advance(EXPECTATIONS_TIMEOUT - Duration::from_secs(1)).await;
        assert!(!e.satisfied("ns/rs"));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(e.satisfied("ns/rs"));
        e.delete("ns/rs");
        assert!(e.satisfied("ns/rs"));
    }
}
