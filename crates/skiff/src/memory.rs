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
//! And big buffers are kept out of the heap ([`pin_mmap_threshold`]).
//! After `skiff bench apiserver` (10,000 pods, lists, 1,000 watchers) a
//! trim took the server from 237 to 199 MiB.

use std::time::Duration;

/// Allocations this large or larger get pages of their own from the kernel
/// (glibc's initial `M_MMAP_THRESHOLD`, 128 KiB).
pub const MMAP_THRESHOLD: usize = 128 * 1024;

/// Pins glibc's mmap threshold at [`MMAP_THRESHOLD`] unless the
/// environment sets `MALLOC_MMAP_THRESHOLD_`.
///
/// glibc raises the threshold each time a mapped block is freed, up to
/// 32 MiB, so after the first list response or sled buffer the big,
/// short-lived buffers land in the heap between live objects, and what
/// they leave behind is not returned even by [`trim`]. With it pinned,
/// they are unmapped when freed: with 10,000 pods `skiff bench apiserver`
/// measured the server at 132–138 MiB instead of 136–147 after the
/// creates and 138–145 instead of 152–183 after the lists (NOTES.md,
/// issue #4), at no measurable cost per create.
pub fn pin_mmap_threshold() {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
        return;
    }
    // SAFETY: mallopt only sets a glibc tunable; called before any thread
    // starts, and it is thread-safe anyway (it takes the main arena's lock).
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
    }
}

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
