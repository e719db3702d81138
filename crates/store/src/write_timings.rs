//! Where a write's time goes on this server, for profiling: running sums
//! of each stage, logged at `debug` (target `skiff_store::write_timings`)
//! at most every [`REPORT_EVERY`].
//!
//! ```text
//!  queue    a command waits in the proposer for a submission slot
//!  raft     the proposer's client_write: log append (fdatasync) ‖ replication, commit, apply
//!  fsync    one fdatasync of the raft log (flusher thread)
//!  apply    one entry's apply_entry (sled, value log, key index)
//! ```
//!
//! Process-wide (several stores in one process add up); a few atomic
//! additions per entry, nothing per read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the sums are logged (and reset), at most.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// One stage's count and total time since the last report.
pub(crate) struct Stage {
    count: AtomicU64,
    micros: AtomicU64,
}

impl Stage {
    const fn new() -> Stage {
        Stage {
            count: AtomicU64::new(0),
            micros: AtomicU64::new(0),
        }
    }

    pub(crate) fn add(&self, n: u64, took: Duration) {
        self.count.fetch_add(n, Ordering::Relaxed);
        self.micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// (count, mean µs) since the last call, and reset.
    fn take(&self) -> (u64, u64) {
        let n = self.count.swap(0, Ordering::Relaxed);
        let us = self.micros.swap(0, Ordering::Relaxed);
        (n, us.checked_div(n).unwrap_or(0))
    }
}

/// Commands' time in the proposer's queue (summed per command).
static QUEUE: Stage = Stage::new();
/// Entries' time in `client_write` (summed per entry).
static RAFT: Stage = Stage::new();
/// fdatasync calls of the raft log.
pub(crate) static FSYNC: Stage = Stage::new();
/// Entries applied.
static APPLY: Stage = Stage::new();

static LAST_REPORT: Mutex<Option<Instant>> = Mutex::new(None);

/// Record `n` commands that waited `took` in the queue between them.
pub(crate) fn queued(n: u64, took: Duration) {
    QUEUE.add(n, took);
}

/// Record one entry's `client_write`.
pub(crate) fn raft(took: Duration) {
    RAFT.add(1, took);
}

/// Record one applied entry, then log the sums if due (every server
/// applies, so every server reports).
pub(crate) fn applied(took: Duration) {
    APPLY.add(1, took);
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let mut last = LAST_REPORT.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    if last.is_some_and(|t| now.duration_since(t) < REPORT_EVERY) {
        return;
    }
    *last = Some(now);
    let (commands, queue_us) = QUEUE.take();
    let (entries, raft_us) = RAFT.take();
    let (fsyncs, fsync_us) = FSYNC.take();
    let (applied, apply_us) = APPLY.take();
    tracing::debug!(
        commands,
        queue_us,
        entries,
        raft_us,
        fsyncs,
        fsync_us,
        applied,
        apply_us,
        "write timings (counts and mean µs since the last report)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_reports_the_mean_since_the_last_take_and_resets() {
        let s = Stage::new();
        assert_eq!(s.take(), (0, 0), "nothing recorded: no division by zero");
        s.add(1, Duration::from_micros(100));
        s.add(3, Duration::from_micros(500));
        assert_eq!(s.take(), (4, 150));
        assert_eq!(s.take(), (0, 0));
    }
}
