//! A work queue with client-go's semantics: a key is queued at most once, is
//! never handed to two workers at the same time (a key added while it is
//! being processed is queued again when its worker calls [`WorkQueue::done`]),
//! can be added after a delay, and retried with a per-key exponential backoff.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The first retry delay of [`WorkQueue::add_rate_limited`] (client-go: 5 ms).
const BASE_DELAY: Duration = Duration::from_millis(5);
/// The longest retry delay (client-go: 1000 s; an edge box wants to heal sooner).
const MAX_DELAY: Duration = Duration::from_secs(60);

/// A de-duplicating queue of keys, cheap to clone.
pub struct WorkQueue<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        WorkQueue {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<K> {
    state: Mutex<State<K>>,
    notify: Notify,
}

struct State<K> {
    queue: VecDeque<K>,
    dirty: HashSet<K>,
    processing: HashSet<K>,
    /// The earliest pending delayed add of each key.
    delayed: HashMap<K, Instant>,
    failures: HashMap<K, u32>,
    shut_down: bool,
}

impl<K: Clone + Eq + Hash + Send + 'static> Default for WorkQueue<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Eq + Hash + Send + 'static> WorkQueue<K> {
    pub fn new() -> Self {
        WorkQueue {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    dirty: HashSet::new(),
                    processing: HashSet::new(),
                    delayed: HashMap::new(),
                    failures: HashMap::new(),
                    shut_down: false,
                }),
                notify: Notify::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<K>> {
        // A panic while holding this lock leaves only plain collections behind.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `key` unless it is queued already.
    pub fn add(&self, key: K) {
        let mut s = self.lock();
        if s.shut_down || s.dirty.contains(&key) {
            return;
        }
        s.dirty.insert(key.clone());
        if s.processing.contains(&key) {
            return;
        }
        s.queue.push_back(key);
        drop(s);
        self.inner.notify.notify_one();
    }

    /// Queues `key` after `delay`; of several pending delayed adds of one key
    /// only the earliest stays.
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            self.add(key);
            return;
        }
        let at = Instant::now() + delay;
        {
            let mut s = self.lock();
            if s.shut_down {
                return;
            }
            match s.delayed.get(&key) {
                Some(existing) if *existing <= at => return,
                _ => {
                    s.delayed.insert(key.clone(), at);
                }
            }
        }
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let due = {
                let mut s = queue.lock();
                if s.delayed.get(&key) == Some(&at) {
                    s.delayed.remove(&key);
                    true
                } else {
                    false
                }
            };
            if due {
                queue.add(key);
            }
        });
    }

    /// Queues `key` again after its next backoff delay.
    pub fn add_rate_limited(&self, key: K) {
        let delay = {
            let mut s = self.lock();
            let n = s.failures.entry(key.clone()).or_insert(0);
            let delay = BASE_DELAY
                .checked_mul(1u32 << (*n).min(20))
                .unwrap_or(MAX_DELAY)
                .min(MAX_DELAY);
            *n = n.saturating_add(1);
            delay
        };
        self.add_after(key, delay);
    }

    /// Forgets the failures of `key` (after a successful sync).
    pub fn forget(&self, key: &K) {
        self.lock().failures.remove(key);
    }

    /// The next key to process, or `None` once shut down.
    pub async fn next(&self) -> Option<K> {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.lock();
                if s.shut_down {
                    return None;
                }
                if let Some(key) = s.queue.pop_front() {
                    s.dirty.remove(&key);
                    s.processing.insert(key.clone());
                    let more = !s.queue.is_empty();
                    drop(s);
                    if more {
                        self.inner.notify.notify_one();
                    }
                    return Some(key);
                }
            }
            notified.await;
        }
    }

    /// Marks `key` processed; queues it again if it was added meanwhile.
    pub fn done(&self, key: &K) {
        let mut s = self.lock();
        s.processing.remove(key);
        if s.dirty.contains(key) {
            s.queue.push_back(key.clone());
            drop(s);
            self.inner.notify.notify_one();
        }
    }

    /// Wakes every waiting worker with `None`.
    pub fn shut_down(&self) {
        self.lock().shut_down = true;
        self.inner.notify.notify_waiters();
    }

    /// How many keys wait (for tests).
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deduplicates_and_requeues_keys_added_while_processing() {
        let q: WorkQueue<String> = WorkQueue::new();
        q.add("a".into());
        q.add("a".into());
        q.add("b".into());
        assert_eq!(q.len(), 2);
        let a = q.next().await.unwrap();
        assert_eq!(a, "a");
        q.add("a".into());
        // "a" is being processed: not handed out again until done.
        assert_eq!(q.next().await.unwrap(), "b");
        assert!(q.is_empty());
        q.done(&a);
        assert_eq!(q.next().await.unwrap(), "a");
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_adds_keep_the_earliest() {
        let q: WorkQueue<u32> = WorkQueue::new();
        q.add_after(1, Duration::from_secs(10));
        q.add_after(1, Duration::from_secs(2));
        q.add_after(1, Duration::from_secs(5));
        let started = Instant::now();
        assert_eq!(q.next().await, Some(1));
        assert_eq!(started.elapsed().as_secs(), 2);
        q.done(&1);
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(q.is_empty(), "later delayed adds were dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limited_retries_back_off_exponentially() {
        let q: WorkQueue<u32> = WorkQueue::new();
        for expected_ms in [5u64, 10, 20, 40] {
            let started = Instant::now();
            q.add_rate_limited(7);
            assert_eq!(q.next().await, Some(7));
            assert_eq!(started.elapsed().as_millis() as u64, expected_ms);
            q.done(&7);
        }
        q.forget(&7);
        let started = Instant::now();
        q.add_rate_limited(7);
        assert_eq!(q.next().await, Some(7));
        assert_eq!(started.elapsed().as_millis(), 5);
    }

    #[tokio::test]
    async fn shut_down_wakes_workers() {
        let q: WorkQueue<u32> = WorkQueue::new();
        let worker = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        q.shut_down();
        assert_eq!(worker.await.unwrap(), None);
    }
}
