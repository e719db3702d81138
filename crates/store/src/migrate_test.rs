//! A format-3 directory, built here by writing the old layout into a
//! directory this build wrote (the `k<key>` entries in sled and in the
//! snapshot, marker 3), opens and reads the same, also after a crash
//! (SIGKILL) in the middle of its migration.

use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

use crate::key_index::KeyIndex;
use crate::keys;
use crate::kv::{DeleteRangeRequest, KeyValue, PutRequest, RangeRequest};
use crate::marker::{self, Marker, MARKER_FILE};
use crate::mvcc::history_events;
use crate::store::{SLED_DIR, SLED_TREE};
use crate::{Kv, Store, StoreConfig};

/// Set in the child of `a_crash_during_migration_leaves_a_dir_that_opens`:
/// after this many deletions the migration flushes sled, says so on
/// stdout and waits to be killed.
const PAUSE_ENV: &str = "SKIFF_STORE_TEST_PAUSE_MIGRATION_AFTER";
const PAUSED: &str = "MIGRATION PAUSED";

/// Called by the migration after each deletion (tests only).
pub(super) fn pause_point(tree: &sled::Tree, removed: usize) {
    let Some(after) = std::env::var(PAUSE_ENV)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    else {
        return;
    };
    if removed == after {
        tree.flush().unwrap();
        println!("{PAUSED}");
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

fn config(dir: &Path) -> StoreConfig {
    let mut cfg = StoreConfig::new(dir);
    // Snapshots come often, so the directory has one to rebuild from.
    cfg.snapshot_logs_since_last = 50;
    cfg.snapshot_log_bytes_min = 0;
    cfg
}

/// Open `dir`, waiting for a previous holder of its locks to let go.
async fn open(dir: &Path) -> Store {
    let mut last = None;
    for _ in 0..100 {
        match Store::open(config(dir)).await {
            Ok(s) => return s,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("open failed: {last:?}");
}

/// Every live key-value and the revision.
async fn everything(s: &Store) -> (i64, Vec<KeyValue>) {
    let resp = s
        .range(RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        })
        .await
        .unwrap();
    (resp.revision, resp.kvs)
}

/// Write `keys` keys (every third with a value for the value log), delete
/// some, shut down cleanly; returns what a read of everything answered.
async fn write_store(dir: &Path, keys: usize) -> (i64, Vec<KeyValue>) {
    let s = open(dir).await;
    for i in 0..keys {
        let value = if i % 3 == 0 {
            format!("{i}-{}", "long".repeat(40))
        } else {
            format!("v{i}")
        };
        let put = PutRequest {
            key: format!("/m/{i:05}").into_bytes(),
            value: value.into_bytes(),
            ..Default::default()
        };
        s.put(put).await.unwrap();
    }
    for i in (0..keys).step_by(7) {
        let del = DeleteRangeRequest {
            key: format!("/m/{i:05}").into_bytes(),
            ..Default::default()
        };
        s.delete_range(del).await.unwrap();
    }
    let seen = everything(&s).await;
    s.shutdown().await;
    seen
}

/// Sled's database in `dir`, waiting for its lock.
fn open_sled(dir: &Path) -> sled::Db {
    for _ in 0..100 {
        match sled::Config::new().path(dir.join(SLED_DIR)).open() {
            Ok(db) => return db,
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    panic!("sled stays locked");
}

/// `k<key> -> h<rev><sub>` for each live key of `tree`, format 3's entries.
fn format3_pairs(tree: &sled::Tree) -> Vec<(Vec<u8>, Vec<u8>)> {
    let index = KeyIndex::rebuild(history_events(tree), 0).unwrap();
    index
        .range(&keys::KeyRange::new(&[0], &[0]))
        .map(|(key, latest)| {
            let mut k = vec![keys::FORMAT3_KV_PREFIX];
            k.extend_from_slice(key);
            (k, latest.history_key())
        })
        .collect()
}

fn format3_entries(dir: &Path) -> usize {
    let db = open_sled(dir);
    db.open_tree(SLED_TREE)
        .unwrap()
        .scan_prefix([keys::FORMAT3_KV_PREFIX])
        .count()
}

fn marker_version(dir: &Path) -> u32 {
    let m: Marker = serde_json::from_slice(&std::fs::read(dir.join(MARKER_FILE)).unwrap()).unwrap();
    m.format_version
}

/// Turn the cleanly shut down store in `dir` into what format 3 wrote:
/// `k` entries in sled and in the snapshot, marker 3.
fn make_format3(dir: &Path) {
    let db = open_sled(dir);
    let tree = db.open_tree(SLED_TREE).unwrap();
    for (k, v) in format3_pairs(&tree) {
        tree.insert(k, v).unwrap();
    }
    db.flush().unwrap();
    drop(tree);
    drop(db);

    let path = dir.join(crate::state_machine::SNAPSHOT_FILE);
    let (meta, mut pairs) = crate::snapshot_file::read_all(&std::fs::read(&path).unwrap()).unwrap();
    let snap_db = sled::Config::new().temporary(true).open().unwrap();
    let snap_tree = snap_db.open_tree("t").unwrap();
    for (k, v) in &pairs {
        snap_tree.insert(k.as_slice(), v.as_slice()).unwrap();
    }
    pairs.extend(format3_pairs(&snap_tree));
    pairs.sort();
    crate::snapshot_file::write(&path, &meta, pairs.into_iter().map(Ok)).unwrap();

    let mut m: Marker =
        serde_json::from_slice(&std::fs::read(dir.join(MARKER_FILE)).unwrap()).unwrap();
    m.format_version = 3;
    std::fs::write(dir.join(MARKER_FILE), serde_json::to_vec(&m).unwrap()).unwrap();
}

/// A new temporary directory holding a format-3 store of 300 keys, and
/// what it holds.
async fn format3_dir() -> (tempfile::TempDir, (i64, Vec<KeyValue>)) {
    let dir = tempfile::tempdir().unwrap();
    let before = write_store(dir.path(), 300).await;
    make_format3(dir.path());
    (dir, before)
}

#[tokio::test]
async fn a_format3_dir_is_migrated_at_open_and_reads_the_same() {
    let (dir, before) = format3_dir().await;
    let live = before.1.len();
    assert_eq!(format3_entries(dir.path()), live);

    let s = open(dir.path()).await;
    assert_eq!(everything(&s).await, before);
    assert_eq!(marker_version(dir.path()), marker::FORMAT_VERSION);
    s.shutdown().await;
    assert_eq!(format3_entries(dir.path()), 0, "the k entries are gone");

    // A format-3 directory that crashed (no clean mark) is rebuilt from
    // its snapshot, whose k pairs are skipped, and its log.
    let (dir, before) = format3_dir().await;
    std::fs::remove_file(dir.path().join(crate::state_machine::CLEAN_MARK)).unwrap();
    let s = open(dir.path()).await;
    assert_eq!(everything(&s).await, before);
    s.shutdown().await;
    assert_eq!(format3_entries(dir.path()), 0);
}

/// The child of `a_crash_during_migration_leaves_a_dir_that_opens`.
#[tokio::test]
#[ignore = "run by a_crash_during_migration_leaves_a_dir_that_opens as a child process"]
async fn migration_child() {
    let Ok(dir) = std::env::var("SKIFF_STORE_MIGRATION_DIR") else {
        return;
    };
    let _ = Store::open(config(Path::new(&dir))).await;
}

#[tokio::test]
async fn a_crash_during_migration_leaves_a_dir_that_opens() {
    let (dir, before) = format3_dir().await;
    let live = before.1.len();

    let pause = (live / 2).to_string();
    let mut child = crate::test_child::TestChild::spawn(
        "migrate::tests::migration_child",
        &[
            ("SKIFF_STORE_MIGRATION_DIR", dir.path().as_os_str()),
            (PAUSE_ENV, pause.as_ref()),
        ],
    )
    .unwrap();
    let stdout = child.take_stdout().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains(PAUSED) {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("the child paused mid-migration");
    child.kill().unwrap(); // SIGKILL
    drop(child);

    assert_eq!(marker_version(dir.path()), 3, "killed before the marker");
    let left = format3_entries(dir.path());
    assert!(left > 0 && left < live, "{left} of {live} k entries left");
    assert!(!dir.path().join(crate::state_machine::CLEAN_MARK).exists());

    let s = open(dir.path()).await;
    assert_eq!(everything(&s).await, before);
    assert_eq!(marker_version(dir.path()), marker::FORMAT_VERSION);
    s.shutdown().await;
    assert_eq!(format3_entries(dir.path()), 0);
}
