//! Handing freed heap memory back to the operating system.
//!
//! Rust allocates through glibc's malloc, which keeps what is freed in its
//! arenas for reuse and returns to the kernel only the free top of each
//! heap. After a burst (10,000 pod creates: request bodies, decoded
//! objects, raft entries, list pages of the controllers' informers) most of
//! that garbage sits between live objects, so the resident set stays at
//! the burst's high-water mark. `malloc_trim(0)` walks every arena and
//! releases each whole free page (`madvise(MADV_DONTNEED)`), which is what
//! the server does every [`DEFAULT_TRIM_INTERVAL`]. After `skiff bench
//! apiserver` (10,000 pods, lists, 1,000 watchers) a trim took the server
//! from 237 to 199 MiB.

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

/// The address ranges of `exe`'s read-only mappings (text and rodata) in a
/// `/proc/PID/maps` listing.
fn read_only_ranges(maps: &str, exe: &str) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            // start-end perms offset dev inode path
            let mut fields = line.split_whitespace();
            let (range, perms) = (fields.next()?, fields.next()?);
            let path = fields.nth(3)?;
            if path != exe || perms.as_bytes().get(1) != Some(&b'-') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (end > start).then_some((start, end))
        })
        .collect()
}

/// Turns off read-around for this executable's own read-only mappings
/// (`madvise(MADV_RANDOM)`), so a page fault in them maps the page faulted
/// and what is already cached beside it, not the 128 KiB the kernel would
/// otherwise read around it. The one `skiff` binary holds the whole
/// control plane; an agent executes a small part of it, scattered through
/// 40 MiB of text, and read-around made it resident in 64–128 KiB pieces.
/// Returns how many mappings were advised.
pub fn no_readaround_for_own_text() -> std::io::Result<usize> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let ranges = read_only_ranges(&maps, &exe.to_string_lossy());
    for &(start, end) in &ranges {
        // SAFETY: MADV_RANDOM only changes the kernel's read-ahead policy
        // for this range of our own file mapping; memory contents and
        // permissions are unchanged.
        #[allow(unsafe_code)]
        let rc =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_RANDOM) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(ranges.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_executables_read_only_mappings_are_picked() {
        let maps = "\
55d0a0000000-55d0a0100000 r--p 00000000 fd:00 123 /usr/bin/skiff
55d0a0100000-55d0a2900000 r-xp 00100000 fd:00 123 /usr/bin/skiff
55d0a2900000-55d0a2a00000 rw-p 02900000 fd:00 123 /usr/bin/skiff
7f0000000000-7f0000100000 r-xp 00000000 fd:00 456 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000200000-7f0000300000 rw-p 00000000 00:00 0
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0 [stack]
";
        assert_eq!(
            read_only_ranges(maps, "/usr/bin/skiff"),
            vec![
                (0x55d0a0000000, 0x55d0a0100000),
                (0x55d0a0100000, 0x55d0a2900000)
            ]
        );
        assert!(read_only_ranges(maps, "/other").is_empty());
        assert!(read_only_ranges("garbage\n\n1-0 r--p 0 0 0 /x", "/x").is_empty());
    }
}
