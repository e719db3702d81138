//! Durability: data survives restarts and crashes; torn tails are tolerated;
//! foreign or damaged directories are refused.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use common::*;
use skiff_store::{Kv, Store, StoreConfig, StoreError};

#[tokio::test]
async fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_store(dir.path()).await;
    for i in 0..20 {
        put(&s, &format!("/p/{i}"), &format!("v{i}")).await;
    }
    s.delete_range(del_req("/p/3")).await.unwrap();
    let rev = s.current_revision().await.unwrap();
    s.shutdown().await;
    assert!(matches!(
        s.put(put_req("/x", "y")).await,
        Err(StoreError::Stopped(_))
    ));
    // A clean shutdown leaves the mark that lets the next open trust sled;
    // the open takes it away again.
    assert!(dir.path().join("sm-clean").exists());

    let s = open_store(dir.path()).await;
    assert!(!dir.path().join("sm-clean").exists());
    assert_eq!(s.current_revision().await.unwrap(), rev);
    let all = s.range(prefix_req("/p/")).await.unwrap();
    assert_eq!(all.count, 19);
    // History survives too: a past read still works.
    let mut req = get_req("/p/3");
    req.revision = rev - 1;
    assert_eq!(s.range(req).await.unwrap().kvs[0].value, b"v3");
    // Revisions continue.
    assert_eq!(put(&s, "/p/new", "n").await, rev + 1);
    s.shutdown().await;
}

/// Writes acknowledged just before the process vanishes are there after a
/// restart: the store's runtime is dropped mid-flight (every task aborted,
/// no shutdown), then the directory is reopened.
#[test]
fn acknowledged_writes_survive_dropping_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let acked = acked.clone();
        rt.block_on(async move {
            let s = open_store(&path).await;
            for t in 0..64 {
                let s = s.clone();
                let acked = acked.clone();
                tokio::spawn(async move {
                    for i in 0.. {
                        let key = format!("/d/{t}/{i}");
                        if s.put(put_req(&key, "v")).await.is_err() {
                            return;
                        }
                        acked.lock().unwrap().push(key);
                    }
                });
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        });
        // Dropping the runtime aborts every task, raft's included.
        rt.shutdown_timeout(Duration::from_millis(0));
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "only {} writes acknowledged",
        acked.len()
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // The old node's file lock may take a moment to be released.
        let s = reopen_with_retry(dir.path()).await;
        for key in &acked {
            let r = s.range(get_req(key)).await.unwrap();
            assert_eq!(r.count, 1, "acknowledged write {key} lost");
        }
        s.shutdown().await;
    });
}

async fn reopen_with_retry(dir: &std::path::Path) -> Store {
    let mut last = None;
    for _ in 0..50 {
        match Store::open(StoreConfig::new(dir)).await {
            Ok(s) => return s,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("reopen failed: {last:?}");
}

/// The child half of `acknowledged_writes_survive_sigkill`: writes from 64
/// tasks and prints every acknowledged key until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by acknowledged_writes_survive_sigkill as a child process"]
async fn crash_child() {
    let Ok(dir) = std::env::var("SKIFF_STORE_CRASH_DIR") else {
        return;
    };
    // sled never flushes on its own here, and snapshots come often: after
    // the kill, everything acknowledged must come back from the last
    // snapshot plus the raft log after it.
    let mut cfg = StoreConfig::new(&dir);
    cfg.sled_flush_interval = None;
    cfg.snapshot_logs_since_last = 50;
    let s = Store::open(cfg).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for t in 0..64 {
        let s = s.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            for i in 0..100_000 {
                let key = format!("/k/{t}/{i}");
                if s.put(put_req(&key, &long_value(&key))).await.is_ok() {
                    let _ = tx.send(key);
                }
            }
        });
    }
    let mut out = std::io::stdout();
    while let Some(key) = rx.recv().await {
        let _ = writeln!(out, "ACK {key}");
        let _ = out.flush();
    }
}

/// A value too long to stay inline in sled: it lives in the value log.
fn long_value(key: &str) -> String {
    format!("{key}:{}", "x".repeat(100))
}

/// A real crash: a child process writes concurrently and is killed with
/// SIGKILL; every write it reported as acknowledged must be there.
#[tokio::test]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    // The child dies even if an assertion below fails.
    let mut guard = skiff_store::test_child::TestChild::spawn(
        "crash_child",
        &[("SKIFF_STORE_CRASH_DIR", dir.path().as_os_str())],
    )
    .unwrap();
    let stdout = guard.take_stdout().unwrap();
    let reader = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(k) = line.strip_prefix("ACK ") {
                acked.push(k.to_string());
            }
        }
        acked
    });
    // Let it run until it has acknowledged a good number of writes.
    let started = std::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let log = dir.path().join("raft-log");
        let size = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let snapshot = dir.path().join("snapshot.bin").exists();
        if (size > 200_000 && snapshot) || started.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    guard.kill().unwrap(); // SIGKILL
    let acked = reader.join().unwrap();
    assert!(
        acked.len() > 100,
        "only {} writes acknowledged",
        acked.len()
    );
    eprintln!("child acknowledged {} writes before SIGKILL", acked.len());
    assert!(
        dir.path().join("snapshot.bin").exists(),
        "the child built no snapshot before it was killed"
    );
    assert!(
        !dir.path().join("sm-clean").exists(),
        "a killed store must not look cleanly shut down"
    );

    let s = open_store(dir.path()).await;
    let mut missing = 0;
    for key in &acked {
        let r = s.range(get_req(key)).await.unwrap();
        if r.count != 1 || r.kvs[0].value != long_value(key).as_bytes() {
            missing += 1;
        }
    }
    assert_eq!(
        missing,
        0,
        "{missing} of {} acknowledged writes lost",
        acked.len()
    );
    s.shutdown().await;
}

#[tokio::test]
async fn torn_log_tail_is_tolerated() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_store(dir.path()).await;
    for i in 0..10 {
        put(&s, &format!("/t/{i}"), "v").await;
    }
    s.shutdown().await;
    let log = dir.path().join("raft-log");
    let good_len = std::fs::metadata(&log).unwrap().len();
    // A record header promising 100 bytes, followed by only 10 of them.
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(&100u32.to_le_bytes()).unwrap();
    f.write_all(&0xdeadbeefu32.to_le_bytes()).unwrap();
    f.write_all(&[7u8; 10]).unwrap();
    drop(f);

    let s = open_store(dir.path()).await;
    assert_eq!(s.range(prefix_req("/t/")).await.unwrap().count, 10);
    put(&s, "/t/after", "v").await;
    s.shutdown().await;
    assert!(std::fs::metadata(&log).unwrap().len() > good_len);

    // A complete last record with a bad checksum is torn too.
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(&4u32.to_le_bytes()).unwrap();
    f.write_all(&1u32.to_le_bytes()).unwrap();
    f.write_all(b"junk").unwrap();
    drop(f);
    let s = open_store(dir.path()).await;
    assert_eq!(s.range(prefix_req("/t/")).await.unwrap().count, 11);
    s.shutdown().await;
}

#[tokio::test]
async fn corrupt_log_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_store(dir.path()).await;
    for i in 0..10 {
        put(&s, &format!("/t/{i}"), "v").await;
    }
    s.shutdown().await;
    let log = dir.path().join("raft-log");
    let mut data = std::fs::read(&log).unwrap();
    data[12] ^= 0xff; // inside the first record's payload
    std::fs::write(&log, &data).unwrap();
    match Store::open(StoreConfig::new(dir.path())).await {
        Err(StoreError::BadDataDir { reason, .. }) => {
            assert!(reason.contains("raft-log"), "{reason}")
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened a corrupt log"),
    }
}

#[tokio::test]
async fn corrupt_vote_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_store(dir.path()).await;
    s.shutdown().await;
    std::fs::write(dir.path().join("raft-vote"), b"garbage!").unwrap();
    assert!(matches!(
        Store::open(StoreConfig::new(dir.path())).await,
        Err(StoreError::BadDataDir { .. })
    ));
}

#[tokio::test]
async fn foreign_data_dir_is_refused() {
    // Files but no marker.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("member"), b"etcd data?").unwrap();
    match Store::open(StoreConfig::new(dir.path())).await {
        Err(StoreError::BadDataDir { reason, .. }) => {
            assert!(reason.contains("skiff-store.json"), "{reason}");
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened a foreign directory"),
    }
    assert!(
        !dir.path().join("raft-log").exists(),
        "nothing written over it"
    );

    // A marker that is not ours.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("skiff-store.json"), b"{\"hello\": 1}").unwrap();
    assert!(matches!(
        Store::open(StoreConfig::new(dir.path())).await,
        Err(StoreError::BadDataDir { .. })
    ));

    // A store of another node.
    let dir = tempfile::tempdir().unwrap();
    open_store(dir.path()).await.shutdown().await;
    let mut cfg = StoreConfig::new(dir.path());
    cfg.node_id = 2;
    assert!(matches!(
        Store::open(cfg).await,
        Err(StoreError::BadDataDir { .. })
    ));
}

#[tokio::test]
async fn missing_path_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/c");
    let s = open_store(&nested).await;
    put(&s, "/x", "y").await;
    s.shutdown().await;
    assert!(nested.join("skiff-store.json").exists());
}

/// Enough entries to trigger a raft snapshot (and log purge); the data and
/// its history must survive a reopen from the purged log plus sled.
#[tokio::test]
async fn snapshot_and_log_purge_then_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::new(dir.path());
    cfg.snapshot_logs_since_last = 2_000;
    let s = Store::open(cfg).await.unwrap();
    // Values long enough for the value log: the snapshot must carry them.
    let padded = |i: i32| format!("{i}{}", ".".repeat(100));
    for i in 0..2_300 {
        put(&s, &format!("/s/{}", i % 100), &padded(i)).await;
    }
    let rev = s.current_revision().await.unwrap();
    // The snapshot is built in the background.
    for _ in 0..100 {
        if dir.path().join("snapshot.bin").exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        dir.path().join("snapshot.bin").exists(),
        "no snapshot was built"
    );
    for i in 0..10 {
        put(&s, &format!("/after/{i}"), "v").await;
    }
    s.shutdown().await;

    let s = open_store(dir.path()).await;
    assert_eq!(s.current_revision().await.unwrap(), rev + 10);
    let r = s.range(prefix_req("/s/")).await.unwrap();
    assert_eq!(r.count, 100);
    assert_eq!(value_of(&r.kvs[0].value), padded(2200));
    assert_eq!(s.range(prefix_req("/after/")).await.unwrap().count, 10);
    let mut past = get_req("/s/0");
    past.revision = rev - 200;
    assert_eq!(
        value_of(&s.range(past).await.unwrap().kvs[0].value),
        padded(2000)
    );
    s.shutdown().await;
}

#[tokio::test]
async fn missing_state_machine_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_store(dir.path()).await;
    put(&s, "/x", "y").await;
    s.shutdown().await;
    drop(s);
    std::fs::remove_dir_all(dir.path().join("sm")).unwrap();
    match Store::open(StoreConfig::new(dir.path())).await {
        Err(StoreError::BadDataDir { reason, .. }) => assert!(reason.contains("sm/"), "{reason}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened a store without its state machine"),
    }
}

#[tokio::test]
async fn missing_value_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_store(dir.path()).await;
    put(&s, "/x", &long_value("/x")).await;
    s.shutdown().await;
    drop(s);
    let values = dir.path().join("sm-values");
    // A segment gone: the pointer to it is found at open.
    for f in std::fs::read_dir(&values).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    match Store::open(StoreConfig::new(dir.path())).await {
        Err(StoreError::BadDataDir { reason, .. }) => {
            assert!(reason.contains("value log: damaged"), "{reason}")
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened a store whose values are gone"),
    }
    // The whole directory gone.
    let s = open_store(dir.path()).await; // the failed open left no mark: rebuilt
    assert_eq!(
        value_of(&s.range(get_req("/x")).await.unwrap().kvs[0].value),
        long_value("/x")
    );
    s.shutdown().await;
    drop(s);
    std::fs::remove_dir_all(&values).unwrap();
    match Store::open(StoreConfig::new(dir.path())).await {
        Err(StoreError::BadDataDir { reason, .. }) => {
            assert!(reason.contains("sm-values/"), "{reason}")
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened a store without its value log"),
    }
}

/// Dropping every handle without `shutdown` stops the node in the
/// background; reopening right away waits for it to let go of the directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_right_after_dropping_without_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_store(dir.path()).await;
    let mut writers = Vec::new();
    for t in 0..16 {
        let s = s.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..20 {
                put(&s, &format!("/drop/{t}/{i}"), "v").await;
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    drop(s);
    let s = open_store(dir.path()).await;
    assert_eq!(s.range(prefix_req("/drop/")).await.unwrap().count, 320);
    s.shutdown().await;
}

#[tokio::test]
async fn corrupt_snapshot_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_store(dir.path()).await;
    s.shutdown().await;
    std::fs::write(dir.path().join("snapshot.bin"), b"SKIFFSN2 but not really").unwrap();
    match Store::open(StoreConfig::new(dir.path())).await {
        Err(StoreError::BadDataDir { reason, .. }) => {
            assert!(reason.contains("snapshot"), "{reason}")
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened a store with a damaged snapshot"),
    }
}
