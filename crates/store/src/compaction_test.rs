//! Compaction keeps exactly the versions that later events or live keys
//! point to (`apply.rs`'s `compact_history`), checked on the sled tree
//! itself: the behaviour tests see only what the API returns.

use crate::mvcc::{history_events, Mvcc};
use crate::raft_types::Command;
use crate::test_commands::{delete, entry, put};

/// Every (key, value) left in history, in revision order.
fn history(m: &Mvcc) -> Vec<(String, String)> {
    history_events(&m.tree)
        .map(|item| {
            let (_, ev) = item.unwrap();
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            (text(&ev.kv.key), text(&ev.kv.value))
        })
        .collect()
}

#[test]
fn compaction_keeps_only_the_versions_still_pointed_to() {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let values = crate::value_log::ValueLog::open(dir.path()).unwrap();
    let m = Mvcc::open(db.open_tree("t").unwrap(), values).unwrap();
    let cmds = [
        put("x", "a"), // rev 2
        put("y", "1"), // 3
        put("x", "b"), // 4
        delete("y"),   // 5
        put("z", "q"), // 6
        Command::Compact(6),
        put("x", "c"), // 7
        put("w", "w"), // 8
        Command::Compact(8),
    ];
    for (i, cmd) in cmds.into_iter().enumerate() {
        m.apply_entry(&entry(i as u64 + 1, cmd), 0).unwrap();
    }
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    // Compact(6): x's "a" is superseded and y was deleted; "b" stays (x's
    // newest below 6). Compact(8) scans only [6, 8): x's "c" (rev 7)
    // points to "b", which goes.
    assert_eq!(
        history(&m),
        vec![pair("z", "q"), pair("x", "c"), pair("w", "w")]
    );
    assert_eq!(m.compact_revision().unwrap(), 8);
}

/// The latest value of every key, read through the public read path.
fn latest(m: &Mvcc) -> Vec<(Vec<u8>, Vec<u8>)> {
    let req = crate::kv::RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    };
    let resp = m.range(&req).unwrap();
    resp.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect()
}

fn value(key: usize, round: usize) -> String {
    format!("{key}-{round}-{}", "v".repeat(300))
}

#[test]
fn long_values_live_in_the_value_log_and_compaction_frees_it() {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let segment = 4096;
    let values = crate::value_log::ValueLog::open_sized(dir.path(), segment).unwrap();
    let m = Mvcc::open(db.open_tree("t").unwrap(), values.clone()).unwrap();
    let mut index = 0;
    let mut apply = |cmd: Command| {
        index += 1;
        m.apply_entry(&entry(index, cmd), 0).unwrap();
    };
    // Key 0 is written once and stays: its value pins the first segment
    // until that segment is sparse enough to be moved.
    apply(put("k0", &value(0, 0)));
    apply(put("small", "tiny"));
    for round in 0..20 {
        for key in 1..10 {
            apply(put(&format!("k{key}"), &value(key, round)));
        }
    }
    // Compacting at a revision whose event is inline leaves exactly the
    // latest long values (etcd keeps each key's newest version below the
    // point, here the latest one).
    apply(put("small", "last"));
    let rev = m.revision().unwrap();
    assert!(values.segment_count() > 10, "the values were logged");
    apply(Command::Compact(rev));

    let mut want: Vec<(Vec<u8>, Vec<u8>)> = (1..10)
        .map(|k| (format!("k{k}").into_bytes(), value(k, 19).into_bytes()))
        .collect();
    want.insert(0, (b"k0".to_vec(), value(0, 0).into_bytes()));
    want.push((b"small".to_vec(), b"last".to_vec()));
    assert_eq!(latest(&m), want);
    // Compaction released the old versions; emptied and sparse segments
    // went (the first one's live value moved to the head).
    let (len, live) = values.usage();
    let live_want: u64 = want
        .iter()
        .filter(|(_, v)| v.len() > crate::value_log::INLINE_MAX)
        .map(|(_, v)| v.len() as u64)
        .sum();
    assert_eq!(live, live_want);
    assert!(
        len <= 4 * live + 2 * segment,
        "{len} bytes on disk for {live} live"
    );

    assert!(
        !dir.path().join("00000001.vlog").exists(),
        "k0's sparse segment was moved and deleted"
    );

    // Reopening counts the same live bytes from the events.
    drop(m);
    let values = crate::value_log::ValueLog::open_sized(dir.path(), segment).unwrap();
    let m = Mvcc::open(db.open_tree("t").unwrap(), values.clone()).unwrap();
    assert_eq!(values.usage().1, live_want);
    assert_eq!(latest(&m), want);

    // A snapshot's portable form carries the values; importing it into
    // another store logs them there.
    let pairs: Vec<_> = m.export().map(|p| p.unwrap()).collect();
    let other_dir = tempfile::tempdir().unwrap();
    let other = Mvcc::open(
        db.open_tree("u").unwrap(),
        crate::value_log::ValueLog::open_sized(other_dir.path(), segment).unwrap(),
    )
    .unwrap();
    other.import(pairs.clone()).unwrap();
    assert_eq!(latest(&other), want);
    assert_eq!(
        other.export().map(|p| p.unwrap()).collect::<Vec<_>>(),
        pairs
    );

    // A pointer into a segment that is gone is an error at open, not a
    // store that starts with values missing.
    drop(m);
    for f in std::fs::read_dir(dir.path()).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let values = crate::value_log::ValueLog::open_sized(dir.path(), segment).unwrap();
    assert!(Mvcc::open(db.open_tree("t").unwrap(), values).is_err());
}
