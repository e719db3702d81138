//! Restart and image-pull back-off, kubelet style.
//!
//! Kubelet (`pkg/kubelet/kubelet.go`, `flowcontrol.Backoff`) delays the
//! restart of a crashing container: the first restart is immediate, then
//! each next one waits 10 s, 20 s, 40 s … capped at 5 minutes, and an entry
//! that has not been used for twice the cap is forgotten (so a container that
//! ran fine for a while starts again from 10 s). Image pulls use the same
//! shape. The clock is passed in, so this stays pure.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// First delay (kubelet `initialBackOff`).
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
/// Cap (kubelet `MaxContainerBackOff`).
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    last: Instant,
    delay: Duration,
}

/// Back-off entries keyed by a string (container name).
#[derive(Clone, Debug, Default)]
pub struct BackOff {
    entries: HashMap<String, Entry>,
}

impl BackOff {
    /// If `key` must still wait at `now`, the instant it may go again.
    pub fn not_before(&self, key: &str, now: Instant) -> Option<Instant> {
        let e = self.entries.get(key)?;
        if now.saturating_duration_since(e.last) >= MAX_BACKOFF * 2 {
            return None;
        }
        let at = e.last + e.delay;
        (at > now).then_some(at)
    }

    /// The current delay for `key` (what the next wait will be), if any.
    pub fn delay(&self, key: &str) -> Option<Duration> {
        self.entries.get(key).map(|e| e.delay)
    }

    /// Records an attempt at `now` and grows the next delay: first 10 s,
    /// then doubling up to 5 min; restarts from 10 s after a quiet period.
    pub fn next(&mut self, key: &str, now: Instant) {
        let delay = match self.entries.get(key) {
            Some(e) if now.saturating_duration_since(e.last) < MAX_BACKOFF * 2 => {
                (e.delay * 2).min(MAX_BACKOFF)
            }
            _ => INITIAL_BACKOFF,
        };
        self.entries.insert(key.into(), Entry { last: now, delay });
    }

    /// Forgets `key` (after a successful pull, for example).
    pub fn reset(&mut self, key: &str) {
        self.entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_resets_after_quiet_period() {
        let t0 = Instant::now();
        let mut b = BackOff::default();
        assert_eq!(b.not_before("c", t0), None);
        b.next("c", t0);
        assert_eq!(b.not_before("c", t0), Some(t0 + INITIAL_BACKOFF));
        assert_eq!(b.not_before("c", t0 + INITIAL_BACKOFF), None);
        let mut t = t0;
        let mut delays = vec![];
        for _ in 0..7 {
            t += Duration::from_secs(1);
            b.next("c", t);
            delays.push(b.delay("c").map(|d| d.as_secs()));
        }
        assert_eq!(delays, [20, 40, 80, 160, 300, 300, 300].map(Some).to_vec());
        let later = t + MAX_BACKOFF * 2;
        assert_eq!(b.not_before("c", later), None);
        b.next("c", later);
        assert_eq!(b.delay("c"), Some(INITIAL_BACKOFF));
    }
}
