//! A de-duplicating work queue of object keys, after client-go's
//! `workqueue`: a key waiting in the queue is held once however many events
//! name it, a key being processed is never handed to a second worker, and a
//! key added while it is processed is queued again when the worker is done
//! (so no change is lost and no two workers reconcile one object at once).
//!
//! Failed keys come back after a per-key exponential back-off
//! (`ItemExponentialFailureRateLimiter`: 5 ms doubling up to 1000 s in
//! client-go; Skiff caps at [`MAX_BACKOFF`] because its objects are few).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// First retry delay of a failing key (client-go's base delay).
pub const BASE_BACKOFF: Duration = Duration::from_millis(5);
/// Longest retry delay of a failing key.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Inner {
    /// Keys ready to be handed out, in arrival order.
    ready: VecDeque<String>,
    /// Keys in `ready` or waiting to re-enter it after processing.
    dirty: HashSet<String>,
    /// Keys a worker holds right now.
    processing: HashSet<String>,
    /// Keys to add at a later instant (the `u64` keeps equal instants apart).
    delayed: BTreeMap<(Instant, u64), String>,
    /// The earliest instant each delayed key is wanted at (later adds of
    /// the same key only ever move it earlier).
    delayed_at: HashMap<String, Instant>,
    seq: u64,
    /// Consecutive failures per key, for the back-off.
    failures: HashMap<String, u32>,
    shut_down: bool,
}

/// A cloneable handle on one queue.
#[derive(Clone, Default)]
pub struct WorkQueue {
    inner: Arc<Mutex<Inner>>,
    notify: Arc<Notify>,
}

impl WorkQueue {
    /// An empty queue.
    pub fn new() -> WorkQueue {
        WorkQueue::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means a worker panicked mid-update; the
        // sets stay consistent at every await-free step, so keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `key` now (a no-op if it is already waiting).
    pub fn add(&self, key: impl Into<String>) {
        let key = key.into();
        let mut q = self.lock();
        if q.shut_down || q.dirty.contains(&key) {
            return;
        }
        q.dirty.insert(key.clone());
        if !q.processing.contains(&key) {
            q.ready.push_back(key);
        }
        drop(q);
        self.notify.notify_one();
    }

    /// Queues `key` after `delay`.
    pub fn add_after(&self, key: impl Into<String>, delay: Duration) {
        let key = key.into();
        if delay.is_zero() {
            return self.add(key);
        }
        let at = Instant::now() + delay;
        let mut q = self.lock();
        if q.shut_down {
            return;
        }
        if q.delayed_at.get(&key).is_some_and(|t| *t <= at) {
            return;
        }
        q.seq += 1;
        let seq = q.seq;
        q.delayed_at.insert(key.clone(), at);
        q.delayed.insert((at, seq), key);
        drop(q);
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// Queues `key` after its next back-off delay (after a failure).
    pub fn add_rate_limited(&self, key: impl Into<String>) {
        let key = key.into();
        let delay = {
            let mut q = self.lock();
            let n = q.failures.entry(key.clone()).or_insert(0);
            let delay = backoff(*n);
            *n = n.saturating_add(1);
            delay
        };
        self.add_after(key, delay);
    }

    /// Forgets `key`'s failures (after a success).
    pub fn forget(&self, key: &str) {
        self.lock().failures.remove(key);
    }

    /// How many times `key` failed in a row.
    pub fn failures(&self, key: &str) -> u32 {
        self.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// Marks `key` done; if it was added meanwhile it is queued again.
    pub fn done(&self, key: &str) {
        let mut q = self.lock();
        q.processing.remove(key);
        if q.dirty.contains(key) {
            q.ready.push_back(key.to_string());
            drop(q);
            self.notify.notify_one();
        }
    }

    /// Stops handing out keys; [`WorkQueue::get`] then returns `None`.
    pub fn shut_down(&self) {
        self.lock().shut_down = true;
        self.notify.notify_waiters();
    }

    /// Number of keys ready now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().ready.len()
    }

    /// Whether no key is ready now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves every delayed key that is due into the ready queue; returns the
    /// instant the next one is due.
    fn promote_due(q: &mut Inner, now: Instant) -> Option<Instant> {
        while let Some((&(at, seq), _)) = q.delayed.iter().next() {
            if at > now {
                return Some(at);
            }
            let Some(key) = q.delayed.remove(&(at, seq)) else {
                break;
            };
            if q.delayed_at.get(&key) == Some(&at) {
                q.delayed_at.remove(&key);
            }
            if q.dirty.insert(key.clone()) && !q.processing.contains(&key) {
                q.ready.push_back(key);
            }
        }
        None
    }

    /// Waits for the next key; the caller must call [`WorkQueue::done`].
    /// Returns `None` once the queue is shut down.
    pub async fn get(&self) -> Option<String> {
        loop {
            let notified = self.notify.notified();
            let next_due = {
                let mut q = self.lock();
                if q.shut_down {
                    return None;
                }
                let next_due = Self::promote_due(&mut q, Instant::now());
                if let Some(key) = q.ready.pop_front() {
                    q.dirty.remove(&key);
                    q.processing.insert(key.clone());
                    return Some(key);
                }
                next_due
            };
            match next_due {
                Some(at) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

/// The back-off before retry number `failures + 1`.
pub fn backoff(failures: u32) -> Duration {
    let factor = 1u64.checked_shl(failures.min(32)).unwrap_or(u64::MAX);
    let millis = (BASE_BACKOFF.as_millis() as u64).saturating_mul(factor);
    Duration::from_millis(millis).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn duplicates_collapse_and_processing_keys_wait() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        let a = q.get().await;
        assert_eq!(a.as_deref(), Some("a"));
        // Added while processed: not handed out until done.
        q.add("a");
        assert_eq!(q.get().await.as_deref(), Some("b"));
        assert!(q.is_empty());
        q.done("a");
        assert_eq!(q.get().await.as_deref(), Some("a"));
        q.done("a");
        q.done("b");
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_keys_arrive_when_due() {
        let q = WorkQueue::new();
        q.add_after("late", Duration::from_secs(10));
        q.add_after("late", Duration::from_secs(20)); // later: ignored
        q.add_after("soon", Duration::from_secs(1));
        let start = Instant::now();
        assert_eq!(q.get().await.as_deref(), Some("soon"));
        assert_eq!(q.get().await.as_deref(), Some("late"));
        assert_eq!(start.elapsed().as_secs(), 10);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_millis(5));
        assert_eq!(backoff(3), Duration::from_millis(40));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }

    #[tokio::test]
    async fn shut_down_releases_waiters() {
        let q = WorkQueue::new();
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.get().await });
        tokio::task::yield_now().await;
        q.shut_down();
        assert_eq!(waiter.await.ok().flatten(), None);
    }
}
