//! The scheduling queue, as upstream's: an active queue ordered by priority
//! then time queued, a backoff queue (1 s doubling to 10 s per failed
//! attempt), and the unschedulable pods that wait for a cluster change
//! (or 5 minutes) before they are tried again.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::cache::PodInfo;

/// Upstream's `podInitialBackoffSeconds` and `podMaxBackoffSeconds`.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Upstream's `podMaxInUnschedulablePodsDuration`.
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active(u64),
    Backoff,
    Unschedulable(Instant),
    InFlight,
}

#[derive(Debug, Clone)]
struct Queued {
    pod: Arc<PodInfo>,
    attempts: u32,
    backoff_until: Option<Instant>,
    place: Place,
    /// A spec or label change arrived while the pod was being scheduled.
    updated_in_flight: bool,
}

/// The backoff after `attempts` failed attempts.
pub fn backoff(attempts: u32) -> Duration {
    let shift = attempts.saturating_sub(1).min(16);
    (INITIAL_BACKOFF * (1u32 << shift)).min(MAX_BACKOFF)
}

#[derive(Debug, Default)]
pub struct SchedulingQueue {
    pods: HashMap<String, Queued>,
    active: BinaryHeap<(i32, Reverse<u64>, String)>,
    seq: u64,
    /// Bumped by every cluster change that may make pods schedulable.
    move_cycle: u64,
}

/// Whether an update changes what scheduling looks at (not just status).
fn changed_for_scheduling(old: &PodInfo, new: &PodInfo) -> bool {
    old.labels != new.labels || old.spec != new.spec
}

impl SchedulingQueue {
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    fn push_active(&mut self, uid: &str) {
        self.seq += 1;
        let seq = self.seq;
        if let Some(q) = self.pods.get_mut(uid) {
            q.place = Place::Active(seq);
            self.active
                .push((q.pod.priority, Reverse(seq), uid.to_string()));
        }
    }

    /// A pending pod was added or changed.
    pub fn upsert(&mut self, pod: Arc<PodInfo>, now: Instant) {
        let uid = pod.uid.clone();
        match self.pods.get_mut(&uid) {
            None => {
                self.pods.insert(
                    uid.clone(),
                    Queued {
                        pod,
                        attempts: 0,
                        backoff_until: None,
                        place: Place::InFlight,
                        updated_in_flight: false,
                    },
                );
                self.push_active(&uid);
            }
            Some(q) => {
                let changed = changed_for_scheduling(&q.pod, &pod);
                let priority_changed = q.pod.priority != pod.priority;
                q.pod = pod;
                match q.place {
                    Place::Unschedulable(_) if changed => {
                        if q.backoff_until.is_some_and(|t| t > now) {
                            q.place = Place::Backoff;
                        } else {
                            self.push_active(&uid);
                        }
                    }
                    Place::InFlight if changed => q.updated_in_flight = true,
                    Place::Active(_) if priority_changed => self.push_active(&uid),
                    _ => {}
                }
            }
        }
    }

    pub fn remove(&mut self, uid: &str) {
        self.pods.remove(uid);
    }

    /// The pod's latest version, if it is queued.
    pub fn get(&self, uid: &str) -> Option<Arc<PodInfo>> {
        self.pods.get(uid).map(|q| q.pod.clone())
    }

    fn flush_backoff(&mut self, now: Instant) {
        let ready: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, q)| q.place == Place::Backoff && q.backoff_until.is_none_or(|t| t <= now))
            .map(|(u, _)| u.clone())
            .collect();
        for u in ready {
            self.push_active(&u);
        }
    }

    /// The next pod to schedule and the move cycle it was popped in.
    pub fn pop(&mut self, now: Instant) -> Option<(Arc<PodInfo>, u64)> {
        self.flush_backoff(now);
        while let Some((_, Reverse(seq), uid)) = self.active.pop() {
            let Some(q) = self.pods.get_mut(&uid) else {
                continue;
            };
            if q.place != Place::Active(seq) {
                continue;
            }
            q.place = Place::InFlight;
            q.updated_in_flight = false;
            return Some((q.pod.clone(), self.move_cycle));
        }
        None
    }

    /// When the earliest backing-off pod becomes ready, or an unschedulable
    /// one is due for its periodic retry.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.pods
            .values()
            .filter_map(|q| match q.place {
                Place::Backoff => Some(q.backoff_until.unwrap_or_else(Instant::now)),
                Place::Unschedulable(since) => Some(since + MAX_UNSCHEDULABLE),
                _ => None,
            })
            .min()
    }

    /// A scheduling attempt failed. `unschedulable` (no node fits) parks
    /// the pod until the cluster changes; an error backs it off.
    pub fn failed(&mut self, uid: &str, unschedulable: bool, popped_cycle: u64, now: Instant) {
        let moved = self.move_cycle > popped_cycle;
        let Some(q) = self.pods.get_mut(uid) else {
            return;
        };
        q.attempts += 1;
        q.backoff_until = Some(now + backoff(q.attempts));
        if unschedulable && !moved && !q.updated_in_flight {
            q.place = Place::Unschedulable(now);
        } else {
            q.place = Place::Backoff;
        }
    }

    /// The pod is bound (or assumed): it leaves the queue.
    pub fn done(&mut self, uid: &str) {
        self.pods.remove(uid);
    }

    /// A cluster change: every unschedulable pod is tried again (after its
    /// backoff).
    pub fn move_all(&mut self, now: Instant) {
        self.move_cycle += 1;
        let parked: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, q)| matches!(q.place, Place::Unschedulable(_)))
            .map(|(u, _)| u.clone())
            .collect();
        for u in parked {
            let backing_off = self.pods[&u].backoff_until.is_some_and(|t| t > now);
            if backing_off {
                if let Some(q) = self.pods.get_mut(&u) {
                    q.place = Place::Backoff;
                }
            } else {
                self.push_active(&u);
            }
        }
    }

    /// Pods unschedulable for longer than 5 minutes are tried again.
    pub fn flush_unschedulable(&mut self, now: Instant) {
        let due: Vec<String> = self
            .pods
            .iter()
            .filter(
                |(_, q)| matches!(q.place, Place::Unschedulable(s) if s + MAX_UNSCHEDULABLE <= now),
            )
            .map(|(u, _)| u.clone())
            .collect();
        for u in due {
            self.push_active(&u);
        }
    }

    /// Pods parked as unschedulable (for tests and metrics).
    pub fn unschedulable_count(&self) -> usize {
        self.pods
            .values()
            .filter(|q| matches!(q.place, Place::Unschedulable(_)))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::super::framework::tests::pod;
    use super::*;
    use serde_json::json;

    fn p(name: &str, prio: i32) -> Arc<PodInfo> {
        Arc::new(pod(
            json!({"metadata": {"name": name, "uid": name}, "spec": {"priority": prio}}),
        ))
    }

    #[test]
    fn backoff_doubles_to_ten_seconds() {
        let secs: Vec<u64> = (1..=6).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 10, 10]);
    }

    #[tokio::test(start_paused = true)]
    async fn priority_then_fifo() {
        let mut q = SchedulingQueue::default();
        let now = Instant::now();
        q.upsert(p("a", 0), now);
        q.upsert(p("b", 10), now);
        q.upsert(p("c", 0), now);
        let order: Vec<String> =
            std::iter::from_fn(|| q.pop(now).map(|(p, _)| p.name.clone())).collect();
        assert_eq!(order, vec!["b", "a", "c"]);
    }

    #[tokio::test(start_paused = true)]
    async fn unschedulable_waits_for_a_move_then_backoff() {
        let mut q = SchedulingQueue::default();
        let now = Instant::now();
        q.upsert(p("a", 0), now);
        let (_, cycle) = q.pop(now).expect("a");
        q.failed("a", true, cycle, now);
        assert_eq!(q.unschedulable_count(), 1);
        assert!(
            q.pop(now + Duration::from_secs(30)).is_none(),
            "parked until a change"
        );
        // A change within the backoff: the pod waits out its 1 s.
        q.move_all(now + Duration::from_millis(500));
        assert!(q.pop(now + Duration::from_millis(600)).is_none());
        let (got, cycle) = q
            .pop(now + Duration::from_millis(1000))
            .expect("after backoff");
        assert_eq!(got.name, "a");
        // A change during the attempt sends a failure to backoff, not parking.
        q.move_all(now);
        q.failed("a", true, cycle, now);
        assert_eq!(q.unschedulable_count(), 0);
        assert!(
            q.pop(now + Duration::from_secs(2)).is_some(),
            "2 s backoff after attempt 2"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn updates_wake_parked_pods_and_periodic_flush() {
        let mut q = SchedulingQueue::default();
        let now = Instant::now();
        q.upsert(p("a", 0), now);
        let (_, c) = q.pop(now).expect("a");
        q.failed("a", true, c, now);
        // A status-only update does nothing; a label change wakes it.
        q.upsert(p("a", 0), now + Duration::from_secs(5));
        assert!(q.pop(now + Duration::from_secs(5)).is_none());
        let mut changed = (*p("a", 0)).clone();
        changed.labels.insert("x".into(), "y".into());
        q.upsert(Arc::new(changed), now + Duration::from_secs(5));
        assert!(q.pop(now + Duration::from_secs(5)).is_some());
        q.failed("a", true, c + 5, now);
        assert_eq!(q.next_wakeup(), Some(now + MAX_UNSCHEDULABLE));
        q.flush_unschedulable(now + MAX_UNSCHEDULABLE);
        assert!(q.pop(now + MAX_UNSCHEDULABLE).is_some());
    }
}
