//! A golden trace of the state machine: a scripted series of writes and the
//! watch events and answers they produce. The expected text lives in
//! `tests/golden/apply_trace.txt`; after an intended change, regenerate it
//! with `SKIFF_BLESS=1 cargo test -p skiff-store --test trace_test` and review
//! the diff.

mod common;

use std::fmt::Write as _;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use skiff_store::{
    CompareResult, CompareTarget, DeleteRangeRequest, Event, EventType, KeyValue, Kv, Lease,
    LeaseGrantRequest, RequestOp, ResponseOp, TxnRequest, WatchRequest,
};

fn kv_text(kv: &KeyValue) -> String {
    format!(
        "{}={:?} create={} mod={} ver={} lease={}",
        value_of(&kv.key),
        value_of(&kv.value),
        kv.create_revision,
        kv.mod_revision,
        kv.version,
        kv.lease
    )
}

fn event_text(e: &Event) -> String {
    let kind = match e.kind {
        EventType::Put => "PUT",
        EventType::Delete => "DELETE",
    };
    let prev = e.prev_kv.as_ref().map_or("-".to_string(), kv_text);
    format!("  event {kind} {} | prev {prev}", kv_text(&e.kv))
}

#[tokio::test]
async fn apply_trace_matches_golden() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_store(dir.path()).await;
    let mut w = s
        .watch(WatchRequest {
            key: vec![0],
            range_end: vec![0],
            start_revision: 1,
            prev_kv: true,
        })
        .await
        .unwrap();
    let mut out = String::new();

    let r = s.put(put_req("/a", "1")).await.unwrap();
    writeln!(out, "put /a=1 -> revision {}", r.revision).unwrap();
    let mut req = put_req("/a", "2");
    req.lease = 42;
    s.lease_grant(LeaseGrantRequest { id: 42, ttl: 60 })
        .await
        .unwrap();
    let r = s.put(req).await.unwrap();
    writeln!(out, "put /a=2 lease 42 -> revision {}", r.revision).unwrap();
    let r = s.put(put_req("/b", "1")).await.unwrap();
    writeln!(out, "put /b=1 -> revision {}", r.revision).unwrap();

    for (name, value) in [("create /c (absent)", "c1"), ("create /c (present)", "c2")] {
        let t = s
            .txn(TxnRequest {
                compare: vec![cmp(
                    "/c",
                    CompareResult::Equal,
                    CompareTarget::ModRevision(0),
                )],
                success: vec![RequestOp::Put(put_req("/c", value))],
                failure: vec![RequestOp::Range(get_req("/c"))],
            })
            .await
            .unwrap();
        let detail = match t.responses.first() {
            Some(ResponseOp::Range(r)) => format!(" (read {} keys)", r.count),
            _ => String::new(),
        };
        writeln!(
            out,
            "txn {name} -> succeeded={} revision {}{detail}",
            t.succeeded, t.revision
        )
        .unwrap();
    }

    let t = s
        .txn(TxnRequest {
            compare: vec![cmp("/a", CompareResult::Equal, CompareTarget::Version(2))],
            success: vec![
                RequestOp::Put(put_req("/a", "3")),
                RequestOp::Put(put_req("/d", "1")),
                RequestOp::DeleteRange(del_req("/b")),
            ],
            failure: vec![],
        })
        .await
        .unwrap();
    writeln!(
        out,
        "txn cas /a version=2 -> succeeded={} revision {}",
        t.succeeded, t.revision
    )
    .unwrap();

    let d = s
        .delete_range(DeleteRangeRequest {
            key: b"/".to_vec(),
            range_end: skiff_store::prefix_end(b"/"),
            prev_kv: false,
        })
        .await
        .unwrap();
    writeln!(
        out,
        "delete / prefix -> deleted {} revision {}",
        d.deleted, d.revision
    )
    .unwrap();
    let d = s.delete_range(del_req("/a")).await.unwrap();
    writeln!(
        out,
        "delete /a again -> deleted {} revision {}",
        d.deleted, d.revision
    )
    .unwrap();
    let r = s.put(put_req("/a", "new")).await.unwrap();
    writeln!(out, "put /a=new -> revision {}", r.revision).unwrap();

    writeln!(out, "watch from revision 1:").unwrap();
    let mut seen = 0;
    while seen < 11 {
        let resp = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        for e in &resp.events {
            writeln!(out, "{}", event_text(e)).unwrap();
            seen += 1;
        }
    }
    s.compact(r.revision - 1).await.unwrap();
    writeln!(out, "compact {} -> ok", r.revision - 1).unwrap();
    match s
        .watch(WatchRequest {
            start_revision: 1,
            ..Default::default()
        })
        .await
    {
        Err(e) => writeln!(out, "watch from revision 1 -> {e}").unwrap(),
        Ok(_) => writeln!(out, "watch from revision 1 -> started").unwrap(),
    }
    let mut past = get_req("/a");
    past.revision = r.revision - 2;
    match s.range(past).await {
        Err(e) => writeln!(out, "range /a at {} -> {e}", r.revision - 2).unwrap(),
        Ok(resp) => writeln!(out, "range /a at {} -> {} keys", r.revision - 2, resp.count).unwrap(),
    }
    s.shutdown().await;

    let golden =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/apply_trace.txt");
    if std::env::var_os("SKIFF_BLESS").is_some() {
        std::fs::write(&golden, &out).unwrap();
    }
    let want = std::fs::read_to_string(&golden).unwrap_or_default();
    assert_eq!(
        out,
        want,
        "trace differs from {}; rerun with SKIFF_BLESS=1 to update",
        golden.display()
    );
}
