//! The log store beyond openraft's suite: entries read back from the file
//! after leaving the cache, the file rewrite after a purge, and replay.

use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, EntryPayload, LogId};

use crate::kv::PutRequest;
use crate::log_store::{LogStore, LOG_FILE};
use crate::raft_types::{Command, Entry};

fn entry(index: u64, value_bytes: usize) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Command::Put(PutRequest {
            key: format!("/k/{index}").into_bytes(),
            value: vec![(index % 251) as u8; value_bytes],
            ..Default::default()
        })),
    }
}

async fn open_log(dir: &std::path::Path) -> LogStore {
    let lock = crate::dir_lock::acquire(dir, std::time::Duration::ZERO)
        .await
        .unwrap();
    LogStore::open(dir, lock).unwrap()
}

fn value_of(e: &Entry) -> Vec<u8> {
    match &e.payload {
        EntryPayload::Normal(Command::Put(p)) => p.value.clone(),
        other => panic!("unexpected payload {other:?}"),
    }
}

#[tokio::test]
async fn entries_beyond_the_cache_are_read_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_log(dir.path()).await;
    // 12 MiB of entries: three times the cache.
    for i in 1..=48 {
        log.blocking_append(vec![entry(i, 256 << 10)])
            .await
            .unwrap();
    }
    let all = log.try_get_log_entries(1..=48).await.unwrap();
    assert_eq!(all.len(), 48);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.log_id.index, i as u64 + 1);
        assert_eq!(value_of(e), vec![((i as u64 + 1) % 251) as u8; 256 << 10]);
    }
    // Truncate a suffix, append a replacement, purge a prefix, then reopen.
    log.truncate(LogId::new(CommittedLeaderId::new(1, 1), 40))
        .await
        .unwrap();
    log.blocking_append(vec![entry(40, 10)]).await.unwrap();
    log.purge(LogId::new(CommittedLeaderId::new(1, 1), 10))
        .await
        .unwrap();
    drop(log);

    let mut log = open_log(dir.path()).await;
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(10));
    assert_eq!(state.last_log_id.map(|l| l.index), Some(40));
    let all = log.try_get_log_entries(0..100).await.unwrap();
    assert_eq!(all.first().map(|e| e.log_id.index), Some(11));
    assert_eq!(all.len(), 30);
    assert_eq!(value_of(&all[29]).len(), 10);
}

#[tokio::test]
async fn purge_rewrites_a_mostly_dead_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_log(dir.path()).await;
    // 40 MiB of entries, then purge all but the last few.
    for i in 1..=40 {
        log.blocking_append(vec![entry(i, 1 << 20)]).await.unwrap();
    }
    let before = std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
    log.purge(LogId::new(CommittedLeaderId::new(1, 1), 36))
        .await
        .unwrap();
    let after = std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
    assert!(
        after < before / 4,
        "file not rewritten: {before} -> {after}"
    );
    // The survivors read back, from cache and from the new file.
    log.blocking_append(vec![entry(41, 100)]).await.unwrap();
    let all = log.try_get_log_entries(0..100).await.unwrap();
    let idx: Vec<u64> = all.iter().map(|e| e.log_id.index).collect();
    assert_eq!(idx, vec![37, 38, 39, 40, 41]);
    drop(log);
    let mut log = open_log(dir.path()).await;
    let all = log.try_get_log_entries(0..100).await.unwrap();
    let idx: Vec<u64> = all.iter().map(|e| e.log_id.index).collect();
    assert_eq!(idx, vec![37, 38, 39, 40, 41]);
    assert_eq!(value_of(&all[0]), vec![37u8; 1 << 20]);
}
