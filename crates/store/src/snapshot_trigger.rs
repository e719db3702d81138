//! When to build a snapshot.
//!
//! openraft's own policy counts entries, but an entry is one write at low
//! load and a group-commit batch of hundreds at high load. A count alone
//! either rewrites a large state far too often (every snapshot rewrites all
//! of `snapshot.bin`: disk wear on SD cards) or lets the log grow without
//! bound. So the count stays as a cap ([`StoreConfig::snapshot_logs_since_last`])
//! and this loop adds a byte rule: once the log appended since the last
//! snapshot is as large as that snapshot (and at least
//! [`StoreConfig::snapshot_log_bytes_min`]), build the next one. Snapshot
//! writes then cost at most as many bytes as the log itself, and the log
//! stays within about the size of the state.
//!
//! [`StoreConfig::snapshot_logs_since_last`]: crate::StoreConfig::snapshot_logs_since_last
//! [`StoreConfig::snapshot_log_bytes_min`]: crate::StoreConfig::snapshot_log_bytes_min

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::log_store::LogStore;
use crate::raft_types::TypeConfig;
use crate::state_machine::SNAPSHOT_FILE;

/// How often the rule is checked.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The byte rule: `appended` log bytes since the last snapshot, which was
/// `snapshot` bytes long.
pub(crate) fn due(appended: u64, snapshot: u64, min: u64) -> bool {
    appended >= snapshot.max(min)
}

/// Checks the byte rule every second until `stop` turns true or raft
/// stops, and asks openraft for a snapshot when it holds.
pub(crate) async fn run(
    raft: openraft::Raft<TypeConfig>,
    log: LogStore,
    dir: PathBuf,
    min: u64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let file = dir.join(SNAPSHOT_FILE);
    let stat = |f: &PathBuf| -> (u64, Option<SystemTime>) {
        std::fs::metadata(f).map_or((0, None), |m| (m.len(), m.modified().ok()))
    };
    let mut seen = stat(&file);
    let mut mark = log.appended_bytes();
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let appended = log.appended_bytes();
        let now = stat(&file);
        if now != seen {
            // A snapshot was built (by either rule) or installed.
            seen = now;
            mark = appended;
            continue;
        }
        if due(appended - mark, seen.0, min) {
            if raft.trigger().snapshot().await.is_err() {
                return; // raft has stopped
            }
            mark = appended;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::due;

    #[test]
    fn waits_for_the_larger_of_the_snapshot_and_the_minimum() {
        let min = 8 << 20;
        assert!(!due(0, 0, min));
        assert!(!due(min - 1, 0, min));
        assert!(due(min, 0, min));
        assert!(!due(min, 3 * min, min));
        assert!(due(3 * min, 3 * min, min));
    }
}
