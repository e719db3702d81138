//! Handing freed heap memory back to the operating system.
//!
//! Rust allocates through glibc's malloc, which keeps what is freed in its
//! arenas for reuse and returns to the kernel only the free top of each
//! heap. After a burst (10,000 pod creates: request bodies, decoded
//! objects, raft entries, list pages of the controllers' informers) most of
//! that garbage sits between live objects, so the resident set stays at
//! the burst's high-water mark. `malloc_trim(0)` walks every arena and
//! releases each whole free page (`madvise(MADV_DONTNEED)`), which is what
//! the server does every [`DEFAULT_TRIM_INTERVAL`] (`skiff agent` too).
//! After `skiff bench apiserver` (10,000 pods, lists, 1,000 watchers) a
//! trim took the server from 237 to 199 MiB.

use std::time::Duration;

/// How often the server trims: the resident set follows a burst down
/// within seconds. Measured with 10,000 pods (NOTES.md, issue #4): a trim
/// takes ~3 ms of CPU when there is little to give back (0.06% of a core
/// at this interval) and ~8 ms when it releases 35 MiB.
pub const DEFAULT_TRIM_INTERVAL: Duration = Duration::from_secs(5);

/// Releases free heap pages to the OS; returns whether any were released.
pub fn trim() -> bool {
    // SAFETY: malloc_trim only reorganises glibc's own free lists; it is
    // thread-safe (it takes each arena's lock) and has no preconditions.
    #[allow(unsafe_code)]
    let released = unsafe { libc::malloc_trim(0) };
    released == 1
}

/// Trims every `interval` until `stop` completes.
pub async fn trim_periodically(interval: Duration, stop: impl std::future::Future<Output = ()>) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {
                // Off the async workers: the trim holds each arena's lock.
                let _ = tokio::task::spawn_blocking(trim).await;
            }
        }
    }
}
