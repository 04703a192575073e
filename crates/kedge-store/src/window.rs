//! The in-memory window of recent changes that watches start from.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::broadcast;

use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One change, as kept in the window and sent to watchers.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub kind: EventType,
    pub key: String,
    /// The new state; for a deletion, the last state with the deletion's
    /// revision as its resourceVersion.
    pub value: Bytes,
    /// The state before this change (none for an addition).
    pub prev: Option<Bytes>,
    pub revision: i64,
}

struct Inner {
    events: VecDeque<Arc<WatchEvent>>,
    /// Every event with a revision above `floor` is in `events`.
    floor: i64,
}

/// A bounded window of the most recent events plus a broadcast to live
/// watchers. Publishing and subscribing happen under one lock so a new
/// watcher sees each event exactly once: from the backlog or live.
pub struct WatchWindow {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<WatchEvent>>,
    capacity: usize,
}

impl WatchWindow {
    /// A window that starts empty at `revision` and keeps `capacity` events.
    pub fn new(revision: i64, capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.clamp(16, 8192));
        WatchWindow {
            inner: Mutex::new(Inner {
                events: VecDeque::new(),
                floor: revision,
            }),
            tx,
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves the deque consistent (all
        // mutations are single push/pop calls), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Append committed events, in revision order.
    pub fn publish(&self, events: Vec<WatchEvent>) {
        let mut inner = self.lock();
        for ev in events {
            let ev = Arc::new(ev);
            inner.events.push_back(ev.clone());
            while inner.events.len() > self.capacity {
                if let Some(old) = inner.events.pop_front() {
                    inner.floor = old.revision;
                }
            }
            // No receivers is fine.
            let _ = self.tx.send(ev);
        }
    }

    /// The oldest revision a watch may start after.
    pub fn floor(&self) -> i64 {
        self.lock().floor
    }

    /// Events under `prefix` with revision > `after`: the backlog now, then live.
    pub fn watch(&self, prefix: &str, after: i64) -> Result<WatchStream> {
        let inner = self.lock();
        if after < inner.floor {
            return Err(Error::TooOld {
                requested: after,
                oldest: inner.floor,
            });
        }
        let backlog = inner
            .events
            .iter()
            .filter(|e| e.revision > after && e.key.starts_with(prefix))
            .cloned()
            .collect();
        let rx = self.tx.subscribe();
        drop(inner);
        Ok(WatchStream {
            backlog,
            rx,
            prefix: prefix.to_string(),
            after,
        })
    }
}

/// A stream of events for one watcher.
pub struct WatchStream {
    backlog: VecDeque<Arc<WatchEvent>>,
    rx: broadcast::Receiver<Arc<WatchEvent>>,
    prefix: String,
    after: i64,
}

impl WatchStream {
    /// The next event if one is ready now, without waiting.
    pub fn try_next(&mut self) -> Option<Result<Arc<WatchEvent>>> {
        if let Some(ev) = self.backlog.pop_front() {
            self.after = ev.revision;
            return Some(Ok(ev));
        }
        loop {
            match self.rx.try_recv() {
                Ok(ev) => {
                    if ev.revision > self.after && ev.key.starts_with(&self.prefix) {
                        self.after = ev.revision;
                        return Some(Ok(ev));
                    }
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => {
                    return Some(Err(Error::TooOld {
                        requested: self.after,
                        oldest: self.after + 1,
                    }))
                }
                Err(_) => return None,
            }
        }
    }

    /// The next event; `None` when the store closed; `Err(TooOld)` when this
    /// watcher fell too far behind and must start again.
    pub async fn next(&mut self) -> Option<Result<Arc<WatchEvent>>> {
        if let Some(ev) = self.backlog.pop_front() {
            self.after = ev.revision;
            return Some(Ok(ev));
        }
        loop {
            match self.rx.recv().await {
                Ok(ev) => {
                    if ev.revision > self.after && ev.key.starts_with(&self.prefix) {
                        self.after = ev.revision;
                        return Some(Ok(ev));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    return Some(Err(Error::TooOld {
                        requested: self.after,
                        oldest: self.after + 1,
                    }))
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(rev: i64, key: &str) -> WatchEvent {
        WatchEvent {
            kind: EventType::Added,
            key: key.into(),
            value: Bytes::from_static(b"{}"),
            prev: None,
            revision: rev,
        }
    }

    #[tokio::test]
    async fn backlog_then_live_without_gaps_or_duplicates() {
        let w = WatchWindow::new(10, 100);
        w.publish(vec![ev(11, "/a/1"), ev(12, "/b/1"), ev(13, "/a/2")]);
        let mut s = w.watch("/a/", 11).expect("in window");
        w.publish(vec![ev(14, "/a/3")]);
        let got: Vec<i64> = [
            s.next().await.expect("ev").expect("ok").revision,
            s.next().await.expect("ev").expect("ok").revision,
        ]
        .to_vec();
        assert_eq!(got, vec![13, 14]);
    }

    #[test]
    fn too_old_after_eviction() {
        let w = WatchWindow::new(0, 2);
        w.publish(vec![ev(1, "/a"), ev(2, "/a"), ev(3, "/a")]);
        assert_eq!(w.floor(), 1);
        assert!(matches!(w.watch("/", 0), Err(Error::TooOld { .. })));
        assert!(w.watch("/", 1).is_ok());
    }
}
