//! Compaction keeps exactly the versions that later events or live keys
//! point to (`apply.rs`'s `compact_history`), checked on the sled tree
//! itself: the behaviour tests see only what the API returns.

use openraft::{CommittedLeaderId, EntryPayload, LogId};

use crate::keys;
use crate::kv::{DeleteRangeRequest, PutRequest};
use crate::mvcc::{decode, Mvcc, StoredEvent};
use crate::raft_types::{Command, Entry};

fn entry(index: u64, cmd: Command) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(cmd),
    }
}

fn put(key: &str, value: &str) -> Command {
    Command::Put(PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    })
}

/// Every (key, value) left in history, in revision order.
fn history(m: &Mvcc) -> Vec<(String, String)> {
    m.tree
        .scan_prefix([keys::HISTORY_PREFIX])
        .map(|item| {
            let (_, v) = item.unwrap();
            let ev: StoredEvent = decode("history event", &v).unwrap();
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            (text(&ev.kv.key), text(&ev.kv.value))
        })
        .collect()
}

#[test]
fn compaction_keeps_only_the_versions_still_pointed_to() {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let m = Mvcc::new(db.open_tree("t").unwrap());
    let cmds = [
        put("x", "a"), // rev 2
        put("y", "1"), // 3
        put("x", "b"), // 4
        Command::DeleteRange(DeleteRangeRequest {
            key: "y".into(),
            ..Default::default()
        }), // 5
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
