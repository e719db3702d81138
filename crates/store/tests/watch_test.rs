//! Watch: replay, live delivery, order, prev_kv, resume, no gaps or duplicates.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use skiff_store::{Event, EventType, StoreError, WatchRequest, WatchStream};

fn watch_prefix(prefix: &str, start_revision: i64, prev_kv: bool) -> WatchRequest {
    WatchRequest {
        key: prefix.as_bytes().to_vec(),
        range_end: skiff_store::prefix_end(prefix.as_bytes()),
        start_revision,
        prev_kv,
    }
}

/// Read events until `n` have arrived (or panic after a timeout).
async fn take_events(w: &mut WatchStream, n: usize) -> Vec<Event> {
    let mut out = Vec::new();
    while out.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(20), w.next())
            .await
            .expect("watch timed out");
        let resp = next.expect("stream ended").expect("watch error");
        out.extend(resp.events);
    }
    out
}

async fn live_events_in_order_with_prev_kv(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(backend, dir.path()).await;
    let mut w = s.watch(watch_prefix("/w/", 0, true)).await.unwrap();
    put(&s, "/w/a", "1").await;
    put(&s, "/other", "x").await; // outside the watched range
    put(&s, "/w/a", "2").await;
    s.delete_range(del_req("/w/a")).await.unwrap();

    let ev = take_events(&mut w, 3).await;
    assert_eq!(ev.len(), 3);
    assert_eq!(ev[0].kind, EventType::Put);
    assert_eq!(ev[0].kv.value, b"1");
    assert!(ev[0].prev_kv.is_none());
    assert_eq!(ev[1].prev_kv.as_ref().unwrap().value, b"1");
    assert_eq!(ev[2].kind, EventType::Delete);
    assert_eq!(ev[2].prev_kv.as_ref().unwrap().value, b"2");
    assert!(ev[0].kv.mod_revision < ev[1].kv.mod_revision);
    assert_eq!(ev[2].kv.mod_revision, ev[1].kv.mod_revision + 1);

    // Without prev_kv, none is sent.
    let mut w2 = s.watch(watch_prefix("/w/", 0, false)).await.unwrap();
    put(&s, "/w/b", "1").await;
    put(&s, "/w/b", "2").await;
    let ev = take_events(&mut w2, 2).await;
    assert!(ev.iter().all(|e| e.prev_kv.is_none()));
    s.shutdown().await;
}

async fn resume_from_a_revision_replays_then_goes_live(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(backend, dir.path()).await;
    let first = put(&s, "/r/a", "1").await;
    put(&s, "/r/b", "1").await;
    put(&s, "/r/a", "2").await;

    let mut w = s.watch(watch_prefix("/r/", first + 1, true)).await.unwrap();
    put(&s, "/r/c", "live").await;
    let ev = take_events(&mut w, 3).await;
    let got: Vec<(String, String)> = ev
        .iter()
        .map(|e| (value_of(&e.kv.key), value_of(&e.kv.value)))
        .collect();
    assert_eq!(
        got,
        vec![
            ("/r/b".into(), "1".into()),
            ("/r/a".into(), "2".into()),
            ("/r/c".into(), "live".into())
        ]
    );
    assert_eq!(ev[1].prev_kv.as_ref().unwrap().value, b"1");
    s.shutdown().await;
}

async fn watch_before_compaction_point_fails(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(backend, dir.path()).await;
    for i in 0..5 {
        put(&s, "/c", &i.to_string()).await;
    }
    s.compact(4).await.unwrap();
    match s.watch(watch_prefix("/c", 2, false)).await {
        Err(StoreError::Compacted {
            requested: 2,
            compact_revision: 4,
        }) => {}
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("watch below the compaction point succeeded"),
    }
    let mut w = s.watch(watch_prefix("/c", 4, false)).await.unwrap();
    let ev = take_events(&mut w, 3).await;
    assert_eq!(ev[0].kv.mod_revision, 4);
    s.shutdown().await;
}

/// Writers race the watcher's start; the watcher also stops reading for a
/// while so it overruns the live ring and must catch up from history.
async fn no_gaps_or_duplicates_under_concurrent_writes(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(backend, dir.path()).await;
    const TASKS: usize = 32;
    const PER_TASK: usize = 50;
    let start = s.current_revision().await.unwrap() + 1;

    let mut writers = Vec::new();
    for t in 0..TASKS {
        let s = s.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..PER_TASK {
                put(&s, &format!("/g/{t}/{i}"), "v").await;
            }
        }));
    }
    // Start watching mid-stream, from the revision before any writer ran.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut w = s.watch(watch_prefix("/g/", start, false)).await.unwrap();
    let mut late = s.watch(watch_prefix("/g/", start, false)).await.unwrap();
    let ev = take_events(&mut w, TASKS * PER_TASK).await;
    for h in writers {
        h.await.unwrap();
    }
    // A second burst larger than the live ring while `late` is not read.
    for i in 0..1200 {
        put(&s, &format!("/g/burst/{i}"), "v").await;
    }
    let revs: Vec<i64> = ev.iter().map(|e| e.kv.mod_revision).collect();
    let want: Vec<i64> = (start..start + (TASKS * PER_TASK) as i64).collect();
    assert_eq!(revs, want, "every revision once, in order");

    let late_ev = take_events(&mut late, TASKS * PER_TASK + 1200).await;
    let revs: Vec<i64> = late_ev.iter().map(|e| e.kv.mod_revision).collect();
    let want: Vec<i64> = (start..start + (TASKS * PER_TASK) as i64 + 1200).collect();
    assert_eq!(revs, want, "a lagging watcher catches up without gaps");
    s.shutdown().await;
}

async fn shutdown_ends_watch_streams(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(backend, dir.path()).await;
    let mut w = s.watch(watch_prefix("/", 0, false)).await.unwrap();
    s.shutdown().await;
    let end = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap();
    assert!(matches!(end, Some(Err(StoreError::Stopped(_)))), "{end:?}");
}

/// A Txn's writes share one revision and reach a watcher together, in the
/// order of the Txn's operations.
async fn txn_events_share_a_revision(backend: Backend) {
    use skiff_store::{RequestOp, TxnRequest};
    let dir = tempfile::tempdir().unwrap();
    let s = open(backend, dir.path()).await;
    put(&s, "/x/old", "1").await;
    let mut w = s.watch(watch_prefix("/x/", 0, true)).await.unwrap();
    let t = s
        .txn(TxnRequest {
            compare: vec![],
            success: vec![
                RequestOp::Put(put_req("/x/b", "1")),
                RequestOp::DeleteRange(del_req("/x/old")),
                RequestOp::Put(put_req("/x/a", "1")),
            ],
            failure: vec![],
        })
        .await
        .unwrap();
    let ev = take_events(&mut w, 3).await;
    let got: Vec<(EventType, String)> = ev.iter().map(|e| (e.kind, value_of(&e.kv.key))).collect();
    assert_eq!(
        got,
        vec![
            (EventType::Put, "/x/b".to_string()),
            (EventType::Delete, "/x/old".to_string()),
            (EventType::Put, "/x/a".to_string())
        ]
    );
    assert!(ev.iter().all(|e| e.kv.mod_revision == t.revision));
    assert_eq!(ev[1].prev_kv.as_ref().unwrap().value, b"1");
    s.shutdown().await;
}

/// After a compaction, an event's `prev_kv` is still there when that
/// previous version is older than the compaction point, and a read at the
/// point sees every key live there, while versions that nothing needs any
/// more go (etcd keeps each key's newest version below the point; the
/// embedded store's events point to it).
async fn compaction_keeps_the_versions_later_events_point_to(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(backend, dir.path()).await;
    let first = put(&s, "/p/x", "a").await;
    put(&s, "/p/y", "1").await;
    put(&s, "/p/x", "b").await;
    s.delete_range(del_req("/p/y")).await.unwrap();
    let point = put(&s, "/p/z", "q").await;
    put(&s, "/p/x", "c").await;
    let last = put(&s, "/p/y", "2").await;
    assert_eq!((point, last), (first + 4, first + 6));
    s.compact(point).await.unwrap();

    let at_rev = |rev: i64| {
        let mut req = prefix_req("/p/");
        req.revision = rev;
        req
    };
    let kvs = |r: skiff_store::RangeResponse| -> Vec<(String, String)> {
        r.kvs
            .iter()
            .map(|kv| (value_of(&kv.key), value_of(&kv.value)))
            .collect()
    };
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    let prev = |e: &Event| e.prev_kv.as_ref().map(|p| value_of(&p.value));
    assert_eq!(
        kvs(s.range(at_rev(point)).await.unwrap()),
        vec![pair("/p/x", "b"), pair("/p/z", "q")]
    );
    let mut w = s.watch(watch_prefix("/p/", point, true)).await.unwrap();
    let ev = take_events(&mut w, 3).await;
    let got: Vec<_> = ev
        .iter()
        .map(|e| (value_of(&e.kv.value), prev(e)))
        .collect();
    assert_eq!(
        got,
        vec![
            ("q".to_string(), None),
            ("c".to_string(), Some("b".to_string())),
            ("2".to_string(), None), // /p/y was deleted before
        ]
    );

    // A second compaction drops what the first kept for /p/x ("b"); "c"
    // stays, as the value at the point and the next write's previous one.
    s.compact(last).await.unwrap();
    put(&s, "/p/x", "d").await;
    let mut w = s.watch(watch_prefix("/p/", last + 1, true)).await.unwrap();
    let ev = take_events(&mut w, 1).await;
    assert_eq!(prev(&ev[0]), Some("c".to_string()));
    assert_eq!(
        kvs(s.range(at_rev(last)).await.unwrap()),
        vec![pair("/p/x", "c"), pair("/p/y", "2"), pair("/p/z", "q")]
    );
    assert_eq!(
        kvs(s.range(prefix_req("/p/")).await.unwrap()),
        vec![pair("/p/x", "d"), pair("/p/y", "2"), pair("/p/z", "q")]
    );
    s.shutdown().await;
}

both_backends!(
    live_events_in_order_with_prev_kv,
    resume_from_a_revision_replays_then_goes_live,
    watch_before_compaction_point_fails,
    no_gaps_or_duplicates_under_concurrent_writes,
    shutdown_ends_watch_streams,
    txn_events_share_a_revision,
    compaction_keeps_the_versions_later_events_point_to,
);
