//! An exclusive lock on the data directory, so two stores (two processes,
//! or a new store while the old one in this process is still stopping)
//! never write the same raft log.
//!
//! `flock(2)` on `skiff-store.lock`: the kernel drops it when the process
//! dies, so a crash never leaves a stale lock. The log store and the state
//! machine each hold the lock (an `Arc`); it is released when openraft has
//! dropped both.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::StoreError;

/// File name of the lock inside the data directory.
pub(crate) const LOCK_FILE: &str = "skiff-store.lock";
/// Pause between attempts while another holder finishes stopping.
const RETRY_INTERVAL: Duration = Duration::from_millis(25);

/// The held lock; released on drop.
pub(crate) struct DirLock {
    _flock: Flock<File>,
}

/// Take the lock on `dir`, waiting up to `wait` for a current holder (for
/// example a store of this process that is still shutting down).
pub(crate) async fn acquire(dir: &Path, wait: Duration) -> Result<Arc<DirLock>, StoreError> {
    let path = dir.join(LOCK_FILE);
    let deadline = Instant::now() + wait;
    loop {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::Storage(format!("{}: {e}", path.display())))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(flock) => return Ok(Arc::new(DirLock { _flock: flock })),
            Err((_, Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                tokio::time::sleep(RETRY_INTERVAL).await;
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(StoreError::Storage(format!(
                    "{} is in use by another store (lock {LOCK_FILE} held)",
                    dir.display()
                )));
            }
            Err((_, errno)) => {
                return Err(StoreError::Storage(format!(
                    "locking {}: {errno}",
                    path.display()
                )));
            }
        }
    }
}
