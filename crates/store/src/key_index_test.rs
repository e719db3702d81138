//! The key index: built from history, kept in step by apply (through
//! compaction and value-log garbage collection), rebuilt after an import,
//! the reads served from it, and what it costs per key.

use std::collections::BTreeMap;

use super::*;
use crate::kv::{
    Compare, CompareResult, CompareTarget, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use crate::mvcc::{history_events, Mvcc, Overlay};
use crate::raft_types::Command;
use crate::test_commands::{delete, entry, put};

/// A store with small value-log segments, so garbage collection runs.
fn open(dir: &std::path::Path) -> (sled::Db, Mvcc) {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let values = crate::value_log::ValueLog::open_sized(dir, 4096).unwrap();
    let m = Mvcc::open(db.open_tree("t").unwrap(), values).unwrap();
    (db, m)
}

/// The index must equal one built afresh from history, and the reads
/// served from it must agree with history.
fn check_index(m: &Mvcc) {
    let rebuilt = KeyIndex::rebuild(history_events(&m.tree), m.revision().unwrap()).unwrap();
    assert_eq!(
        *m.index(),
        rebuilt,
        "apply's index equals one rebuilt from history"
    );
    check_reads(m);
}

/// Every read at the current revision (everything, a prefix, each key,
/// with a limit, counting only, keys only, and a past read at the current
/// revision) answers the live keys found by replaying history.
fn check_reads(m: &Mvcc) {
    let mut want: BTreeMap<Vec<u8>, KeyValue> = BTreeMap::new();
    for item in history_events(&m.tree) {
        let (_, ev) = item.unwrap();
        match ev.kind {
            EventType::Put => {
                let kv = m.key_value(ev).unwrap();
                want.insert(kv.key.clone(), kv);
            }
            EventType::Delete => {
                want.remove(&ev.kv.key);
            }
        }
    }
    let want_all: Vec<KeyValue> = want.values().cloned().collect();
    let current = m.revision().unwrap();
    let read = |key: &[u8], range_end: &[u8], shape: fn(&mut RangeRequest)| {
        let mut req = RangeRequest {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            ..Default::default()
        };
        shape(&mut req);
        let resp = m.range(&req).unwrap();
        assert_eq!(resp.revision, current);
        resp
    };
    let all = read(&[0], &[0], |_| {});
    assert_eq!(all.kvs, want_all, "everything");
    assert_eq!(all.count, want.len() as i64);
    assert!(!all.more);
    let newest = read(&[0], &[0], |r| r.revision = -1);
    assert_eq!(newest.kvs, want_all, "a revision below 1 means the newest");
    let at_current = m
        .range(&RangeRequest {
            key: vec![0],
            range_end: vec![0],
            revision: current,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        at_current.kvs, want_all,
        "at the current revision, by number"
    );
    let limited = read(&[0], &[0], |r| r.limit = 2);
    assert_eq!(limited.kvs, want_all[..want.len().min(2)], "limit 2");
    assert_eq!(
        (limited.count, limited.more),
        (want.len() as i64, want.len() > 2)
    );
    let counted = read(&[0], &[0], |r| r.count_only = true);
    assert!(counted.kvs.is_empty());
    assert_eq!(counted.count, want.len() as i64);
    let keys_only = read(&[0], &[0], |r| r.keys_only = true);
    let stripped: Vec<KeyValue> = want_all
        .iter()
        .map(|kv| KeyValue {
            value: Vec::new(),
            ..kv.clone()
        })
        .collect();
    assert_eq!(keys_only.kvs, stripped, "keys only");
    let prefixed = read(b"k", b"l", |_| {});
    let want_k: Vec<KeyValue> = want_all
        .iter()
        .filter(|kv| kv.key.starts_with(b"k"))
        .cloned()
        .collect();
    assert_eq!(prefixed.kvs, want_k, "prefix k");
    for (key, kv) in &want {
        assert_eq!(
            read(key, b"", |_| {}).kvs,
            std::slice::from_ref(kv),
            "get {key:?}"
        );
    }
    assert!(read(b"absent", b"", |_| {}).kvs.is_empty());
    assert!(
        read(b"z", b"a", |_| {}).kvs.is_empty(),
        "a range ending before it starts"
    );
    let past = m
        .read_view(|m| {
            m.materialize(
                &crate::keys::KeyRange::new(&[0], &[0]),
                current,
                &Overlay::default(),
            )
        })
        .unwrap();
    assert_eq!(past, want, "a past read at the current revision");
}

#[test]
fn rebuilding_from_history_keeps_each_live_keys_latest_put() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, m) = open(dir.path());
    let cmds = [
        put("a", "1"),              // rev 2
        put("b", "1"),              // 3
        put("a", "2"),              // 4
        delete("b"),                // 5
        put("c", "1"),              // 6
        delete("c"),                // 7
        put("c", "again"),          // 8: created anew
        put("d", &"x".repeat(200)), // 9: in the value log
    ];
    for (i, cmd) in cmds.into_iter().enumerate() {
        m.apply_entry(&entry(i as u64 + 1, cmd), 0).unwrap();
    }
    check_index(&m);
    let index = m.index();
    assert!(index.get(b"b").is_none(), "deleted");
    let a = index.get(b"a").unwrap();
    assert_eq!((a.rev, a.create_revision, a.version), (4, 2, 2));
    assert_eq!(a.value, Held::Inline(b"2".to_vec().into_boxed_slice()));
    let c = index.get(b"c").unwrap();
    assert_eq!((c.rev, c.create_revision, c.version), (8, 8, 1));
    assert!(matches!(index.get(b"d").unwrap().value, Held::Logged(_)));
}

#[test]
fn apply_keeps_the_index_in_step_through_txns_compaction_and_value_moves() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, m) = open(dir.path());
    let mut index = 0;
    let mut apply = |cmd: Command| {
        index += 1;
        m.apply_entry(&entry(index, cmd), 20).unwrap();
    };
    // Key 0 is written once: its long value pins the first value-log
    // segment until garbage collection moves it (and the index follows).
    apply(put("k0", &"first".repeat(40)));
    for round in 0..60usize {
        for key in 1..6usize {
            let k = format!("k{key}");
            let v = format!(
                "{round}-{}",
                "v".repeat(if key % 2 == 0 { 10 } else { 150 })
            );
            match (round + key) % 7 {
                0 => apply(delete(&k)),
                // A Txn: compare the version, put two keys in one revision.
                1 => apply(Command::Txn(TxnRequest {
                    compare: vec![Compare {
                        key: k.clone().into(),
                        result: CompareResult::Greater,
                        target: CompareTarget::Version(0),
                    }],
                    success: vec![
                        RequestOp::Put(PutRequest {
                            key: k.clone().into(),
                            value: v.clone().into(),
                            ..Default::default()
                        }),
                        RequestOp::Put(PutRequest {
                            key: format!("t{key}").into(),
                            value: v.clone().into(),
                            ..Default::default()
                        }),
                    ],
                    failure: vec![RequestOp::Put(PutRequest {
                        key: k.clone().into(),
                        value: "created by the failure branch".into(),
                        ..Default::default()
                    })],
                })),
                _ => apply(put(&k, &v)),
            }
        }
        // One entry that puts and deletes the same key: it ends deleted.
        apply(Command::Batch(vec![put("tmp", "x"), delete("tmp")]));
    }
    assert!(m.compact_revision().unwrap() > 100, "auto compaction ran");
    check_index(&m);
    let k0 = m.index().get(b"k0").cloned().unwrap();
    let Held::Logged(at) = k0.value else {
        panic!("k0's value is in the value log")
    };
    assert_ne!(
        at.segment, 0,
        "k0's value was moved out of the first segment"
    );
    assert_eq!(
        k0.key_value(b"k0", &m.values).unwrap().value,
        "first".repeat(40).as_bytes()
    );
}

#[test]
fn an_import_rebuilds_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, source) = open(dir.path());
    for (i, cmd) in [
        put("a", "1"),
        put("b", &"b".repeat(100)),
        delete("a"),
        put("c", "3"),
    ]
    .into_iter()
    .enumerate()
    {
        source.apply_entry(&entry(i as u64 + 1, cmd), 0).unwrap();
    }
    let mut pairs: Vec<_> = source.export().map(Result::unwrap).collect();
    // A format-3 snapshot also held `k<key>` pairs: import skips them.
    for (key, latest) in source
        .index()
        .range(&crate::keys::KeyRange::new(&[0], &[0]))
    {
        let mut k = vec![keys::FORMAT3_KV_PREFIX];
        k.extend_from_slice(key);
        pairs.push((k, latest.history_key()));
    }
    pairs.sort();
    let other_dir = tempfile::tempdir().unwrap();
    let (_db2, other) = open(other_dir.path());
    other
        .apply_entry(&entry(1, put("stale", "gone after import")), 0)
        .unwrap();
    other.import(pairs).unwrap();
    check_index(&other);
    assert_eq!(
        other.tree.scan_prefix([keys::FORMAT3_KV_PREFIX]).count(),
        0,
        "no k entries imported"
    );
    assert_eq!(other.index().revision, source.index().revision);
    let keys: Vec<&[u8]> = vec![b"a", b"b", b"c", b"stale"];
    let live: Vec<bool> = keys
        .iter()
        .map(|k| other.index().get(k).is_some())
        .collect();
    assert_eq!(live, [false, true, true, false]);
}

/// Resident memory of this process, in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kib * 1024
}

/// Prints what the index costs per key with 100,000 keys shaped like
/// Kubernetes' (`/registry/pods/<namespace>/<name>`, 1 KiB values in the
/// value log). Run alone (`-- --ignored --test-threads=1
/// index_memory_per_key --nocapture`): other tests in the process move its
/// resident memory.
#[test]
#[ignore = "measures this process's resident memory: run it alone"]
fn index_memory_per_key() {
    const KEYS: usize = 100_000;
    let before = rss_bytes();
    let mut index = KeyIndex::default();
    let mut key_bytes = 0;
    for i in 0..KEYS {
        let key = format!("/registry/pods/namespace-{}/pod-{i:06}", i % 50);
        key_bytes += key.len();
        index.set(
            key.as_bytes(),
            Latest {
                rev: i as i64 + 2,
                sub: 0,
                create_revision: i as i64 + 2,
                version: 1,
                lease: 0,
                value: Held::Logged(ValueRef {
                    segment: 1,
                    offset: i as u64 * 1024,
                    len: 1024,
                    crc: 0,
                }),
            },
        );
    }
    let grown = rss_bytes().saturating_sub(before);
    println!(
        "key index: {KEYS} keys ({} B of key on average): RSS grew {} KiB, {} B per key \
         (size_of Latest = {} B)",
        key_bytes / KEYS,
        grown / 1024,
        grown / KEYS as u64,
        std::mem::size_of::<Latest>()
    );
    assert_eq!(index.len(), KEYS);
    assert!(grown / (KEYS as u64) < 1024, "under 1 KiB per key");
}

/// Put latencies (apply of one entry) while `reader` runs in a loop on
/// another thread: (p50, p99, max) in µs, and the reader's median time per
/// call in µs.
fn put_latencies_beside(m: &Mvcc, first: u64, reader: impl Fn() + Send + Sync) -> [u128; 4] {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let reads = s.spawn(|| {
            let mut took = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                reader();
                took.push(t.elapsed().as_micros());
            }
            took.sort();
            took.get(took.len() / 2).copied().unwrap_or(0)
        });
        let mut lat = Vec::new();
        for i in 0..20_000u64 {
            let key = format!("/registry/pods/other/p{}", i % 100);
            let t = Instant::now();
            m.apply_entry(&entry(first + i, put(&key, &"w".repeat(1024))), 0)
                .unwrap();
            lat.push(t.elapsed().as_micros());
        }
        stop.store(true, Ordering::Relaxed);
        let read = reads.join().unwrap();
        lat.sort();
        [
            lat[lat.len() / 2],
            lat[lat.len() * 99 / 100],
            lat[lat.len() - 1],
            read,
        ]
    })
}

/// Prints how much a Range over 10,000 keys (1 KiB values, in the value
/// log) running in a loop delays apply: reads copy from the index under
/// its read lock and read values after, against the same Range held under
/// the gate for its whole length (how reads ran before the index served
/// them). Run alone (`-- --ignored --test-threads=1
/// a_range_over_10000_keys_barely_delays_apply --nocapture`).
#[test]
#[ignore = "measures timing: run it alone"]
fn a_range_over_10000_keys_barely_delays_apply() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let values = crate::value_log::ValueLog::open(dir.path()).unwrap();
    let m = Mvcc::open(db.open_tree("t").unwrap(), values).unwrap();
    let value = "v".repeat(1024);
    let mut index = 0;
    for chunk in 0..100 {
        let cmds = (0..100)
            .map(|i| {
                put(
                    &format!("/registry/pods/ns/pod-{:05}", chunk * 100 + i),
                    &value,
                )
            })
            .collect();
        index += 1;
        m.apply_entry(&entry(index, Command::Batch(cmds)), 0)
            .unwrap();
    }
    let req = RangeRequest {
        key: b"/registry/pods/ns/".to_vec(),
        range_end: b"/registry/pods/ns0".to_vec(),
        ..Default::default()
    };
    assert_eq!(m.range(&req).unwrap().count, 10_000);
    let alone = put_latencies_beside(&m, index + 1, || {});
    let indexed = put_latencies_beside(&m, index + 100_001, || {
        m.range(&req).unwrap();
    });
    let gated = put_latencies_beside(&m, index + 200_001, || {
        m.read_view(|m| m.range(&req).unwrap());
    });
    for (name, [p50, p99, max, read]) in [
        ("no reader", alone),
        ("10,000-key ranges from the index", indexed),
        ("the same ranges holding the gate", gated),
    ] {
        println!(
            "put apply latency beside {name}: p50 {p50} µs, p99 {p99} µs, max {max} µs; \
             one range {read} µs"
        );
    }
    assert!(indexed[3] > 0, "the ranges ran");
}

/// A Range at a past revision merges the index with the keys changed since
/// (`Mvcc::range_past`); it must answer what materializing the whole range
/// answers, for every past revision, limit and shape, across puts of short
/// and logged values, deletes and re-creations, and Txns of two puts.
#[test]
fn past_ranges_answer_what_materializing_the_range_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, m) = open(dir.path());
    // A small deterministic generator (no clock, no seed from outside).
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    for index in 1..=400u64 {
        let key = format!("k{:02}", next(40));
        let len = if next(3) == 0 { 150 } else { 8 };
        let cmd = match next(6) {
            0 => delete(&key),
            1 => Command::Txn(TxnRequest {
                compare: vec![],
                success: vec![
                    RequestOp::Put(PutRequest {
                        key: key.clone().into(),
                        value: "t".repeat(len).into(),
                        ..Default::default()
                    }),
                    RequestOp::Put(PutRequest {
                        key: format!("j{:02}", next(10)).into(),
                        value: format!("{index}").into(),
                        ..Default::default()
                    }),
                ],
                failure: vec![],
            }),
            _ => put(&key, &format!("{index}-{}", "v".repeat(len))),
        };
        m.apply_entry(&entry(index, cmd), 0).unwrap();
    }
    let current = m.revision().unwrap();
    let ranges: [(&[u8], &[u8]); 4] = [(&[0], &[0]), (b"k", b"l"), (b"k10", b"k30"), (b"j05", b"")];
    for at in (1..=current).step_by(3).chain([current]) {
        for (key, end) in ranges {
            for (limit, keys_only, count_only) in [
                (0, false, false),
                (1, false, false),
                (7, true, false),
                (25, false, false),
                (0, false, true),
            ] {
                let req = RangeRequest {
                    key: key.to_vec(),
                    range_end: end.to_vec(),
                    revision: at,
                    limit,
                    keys_only,
                    count_only,
                };
                let got = m.range(&req).unwrap();
                let want = m
                    .read_view(|m| {
                        let map = m.materialize(
                            &crate::keys::KeyRange::new(key, end),
                            at,
                            &Overlay::default(),
                        )?;
                        Ok::<_, crate::mvcc::MvccError>(crate::mvcc::respond(map, &req, current))
                    })
                    .unwrap();
                assert_eq!(got, want, "at {at}, {key:?}..{end:?}, limit {limit}");
            }
        }
    }
}
