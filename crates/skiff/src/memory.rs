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
//! The server's per-thread caches of freed small blocks are made larger
//! ([`enlarge_thread_cache`]): glibc's default of 7 per size sent ~90% of
//! a busy server's mallocs down the slow path.
//! After `skiff bench apiserver` (10,000 pods, lists, 1,000 watchers) a
//! trim took the server from 237 to 199 MiB.

use std::time::Duration;

/// Allocations this large or larger get pages of their own from the kernel
/// (glibc's initial `M_MMAP_THRESHOLD`, 128 KiB).
pub const MMAP_THRESHOLD: usize = 128 * 1024;

/// How many freed blocks of each size (up to 1 KiB) glibc's per-thread
/// cache keeps (its `tcache`; default 7).
///
/// Decoding one pod's JSON into a `serde_json::Value` allocates hundreds
/// of small blocks and frees them together; with 7 per size most of them
/// overflow into the arena's bins, and under the scheduler benchmark
/// (5,000 hollow nodes, 20,000 pods) `_int_malloc` was 25% of the server's
/// CPU while the cache's fast path served ~2%. `skiff bench apiserver`
/// (10,000 pods, medians of 6 runs): server CPU per create 0.169 → 0.145
/// ms with 64, RSS with the pods 133.3 → 137.2 MiB; 1,024 saved no more
/// CPU and cost ~20 MiB (NOTES.md, "Memory").
pub const TCACHE_COUNT: u32 = 64;

/// The environment variable glibc reads its tunables from, once, at start.
const GLIBC_TUNABLES: &str = "GLIBC_TUNABLES";

/// Makes glibc's per-thread cache hold [`TCACHE_COUNT`] blocks per size.
///
/// glibc reads `GLIBC_TUNABLES` only when the process starts and has no
/// call to change the cache later, so unless the environment already sets
/// `GLIBC_TUNABLES` (an operator's own choice, or this very step) the
/// program executes itself again, once, with it set. Call it first thing in
/// `main`, before any thread starts (`skiff server` only). If the exec
/// fails the program goes on with glibc's defaults.
pub fn enlarge_thread_cache() {
    if std::env::var_os(GLIBC_TUNABLES).is_some() {
        return;
    }
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    let error = std::process::Command::new("/proc/self/exe")
        .arg0(argv0)
        .args(args)
        .env(
            GLIBC_TUNABLES,
            format!("glibc.malloc.tcache_count={TCACHE_COUNT}"),
        )
        .exec();
    eprintln!("note: could not re-execute with a larger malloc cache ({error}); going on");
}

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

/// When `skiff agent` sheds the binary's pages it has touched so far
/// ([`shed_binary_text`]): after registration, the first pod syncs and the
/// TLS and CRI setup, whose code is not needed again.
pub const DEFAULT_SHED_TEXT_AFTER: Duration = Duration::from_secs(60);

/// How often `skiff agent` sheds again after the first time: code that ran
/// for a burst (a hundred pod starts, a drain) comes back only when it runs
/// again, and what the agent runs every few seconds comes back at once,
/// from the packed region at the start of `.text` (`build.rs`). A shed
/// costs one `madvise`, then the faults that bring the code in use back:
/// read from the file again when no other process maps those pages (the
/// shed drops them from the page cache too), ~3 MiB for the packed code.
pub const DEFAULT_SHED_TEXT_EVERY: Duration = Duration::from_secs(600);

/// Lets the kernel take back the pages of this program's own file (code and
/// read-only data) that it has mapped so far.
///
/// The `skiff` binary holds the server, the agent and every tool (~42 MB
/// of code), and the kernel maps 64 KiB around each fault (more when its
/// cache holds the file in large folios), so by the time an agent has
/// registered, set up TLS and CRI and started its first pods it counts
/// ~25 MiB of the binary in its resident set, a third of it code that will
/// not run again. `MADV_PAGEOUT` on each read-only mapping of the binary
/// unmaps those pages (and drops from the page cache the ones no other
/// process maps); code still in use comes back on its next use. Measured
/// with 50 pods (NOTES.md, #5): the agent's file-backed resident set went
/// from 25.4 to 18.6 MiB and stayed there (VmRSS 33.3 → 26.6 MiB); what
/// comes back is the code the agent runs every few seconds. Returns how
/// many bytes of mappings were advised, or why reading `/proc/self/maps`
/// failed.
pub fn shed_binary_text() -> std::io::Result<usize> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let exe = exe.to_string_lossy();
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut advised = 0;
    for line in maps.lines() {
        // start-end perms offset dev inode path
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let path = fields.nth(3).unwrap_or("");
        if path != exe || perms.contains('w') {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        // SAFETY: the range is one whole mapping of this process (page
        // aligned, from the kernel's own list) and read-only: MADV_PAGEOUT
        // changes only which of its pages are resident, never the contents
        // a later access sees.
        #[allow(unsafe_code)]
        let _ =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_PAGEOUT) };
        advised += end - start;
    }
    Ok(advised)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rss_file_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("RssFile:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    #[test]
    fn shedding_the_binary_keeps_the_program_working() {
        let before = rss_file_kib();
        let advised = shed_binary_text().unwrap();
        assert!(advised > 0, "no mapping of the test binary found");
        // The code runs on: its pages come back as they are used.
        let v: Vec<String> = (0..1000).map(|i| format!("{i}")).collect();
        assert_eq!(v.join("").len(), 2890);
        let after = rss_file_kib();
        eprintln!("RssFile {before} KiB before, {after} KiB after shedding");
    }
}
