//! The etcd data model: revisions, metadata, ranges, deletes, txns, compaction.

mod common;

use common::*;
use skiff_store::{
    CompareResult, CompareTarget, DeleteRangeRequest, Kv, LeaseGrantRequest, RangeRequest,
    RequestOp, ResponseOp, StoreError, TxnRequest, MAX_VALUE_BYTES,
};

async fn revisions_and_metadata(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(backend, dir.path()).await;
    // etcd starts at revision 1.
    assert_eq!(s.current_revision().await.unwrap(), 1);

    let r1 = put(&s, "a", "1").await;
    assert_eq!(r1, 2);
    let r2 = put(&s, "a", "2").await;
    assert_eq!(r2, 3);
    let r3 = put(&s, "b", "x").await;
    assert_eq!(r3, 4);

    let got = s.range(get_req("a")).await.unwrap();
    assert_eq!(got.revision, 4);
    assert_eq!(got.count, 1);
    let kv = &got.kvs[0];
    assert_eq!(kv.value, b"2");
    assert_eq!(kv.create_revision, 2);
    assert_eq!(kv.mod_revision, 3);
    assert_eq!(kv.version, 2);
    assert_eq!(kv.lease, 0);

    // prev_kv on put.
    let mut req = put_req("a", "3");
    req.prev_kv = true;
    req.lease = 7;
    // A lease grant does not change the revision.
    s.lease_grant(LeaseGrantRequest { id: 7, ttl: 60 })
        .await
        .unwrap();
    let resp = s.put(req).await.unwrap();
    assert_eq!(resp.revision, 5);
    assert_eq!(resp.prev_kv.unwrap().value, b"2");
    let kv = s.range(get_req("a")).await.unwrap().kvs.remove(0);
    assert_eq!((kv.version, kv.lease, kv.mod_revision), (3, 7, 5));

    // Delete, then re-create: create_revision and version start over.
    let d = s.delete_range(del_req("a")).await.unwrap();
    assert_eq!((d.deleted, d.revision), (1, 6));
    assert_eq!(s.range(get_req("a")).await.unwrap().count, 0);
    put(&s, "a", "again").await;
    let kv = s.range(get_req("a")).await.unwrap().kvs.remove(0);
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (7, 7, 1));

    // A delete of nothing does not bump the revision.
    let d = s.delete_range(del_req("nope")).await.unwrap();
    assert_eq!((d.deleted, d.revision), (0, 7));
    assert_eq!(s.current_revision().await.unwrap(), 7);
    s.shutdown().await;
}

async fn range_prefix_limit_count_keys_only_and_past_revision(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(backend, dir.path()).await;
    for i in 0..5 {
        put(&s, &format!("/registry/pods/ns/p{i}"), &format!("v{i}")).await;
    }
    put(&s, "/registry/podsx", "not in prefix").await;
    put(&s, "/registry/services/ns/s", "svc").await;
    let rev_before = s.current_revision().await.unwrap();

    let all = s.range(prefix_req("/registry/pods/")).await.unwrap();
    assert_eq!(all.count, 5);
    assert!(!all.more);
    let keys: Vec<String> = all.kvs.iter().map(|k| value_of(&k.key)).collect();
    assert_eq!(keys[0], "/registry/pods/ns/p0");
    assert_eq!(keys[4], "/registry/pods/ns/p4");

    let mut req = prefix_req("/registry/pods/");
    req.limit = 2;
    let lim = s.range(req).await.unwrap();
    assert_eq!((lim.kvs.len(), lim.count, lim.more), (2, 5, true));

    let mut req = prefix_req("/registry/pods/");
    req.count_only = true;
    let c = s.range(req).await.unwrap();
    assert_eq!((c.kvs.len(), c.count), (0, 5));

    let mut req = prefix_req("/registry/pods/");
    req.keys_only = true;
    let k = s.range(req).await.unwrap();
    assert!(k.kvs.iter().all(|kv| kv.value.is_empty()));

    // "\0" as range_end: every key >= key.
    let everything = s
        .range(RangeRequest {
            key: b"/registry/pods/ns/p3".to_vec(),
            range_end: vec![0],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(everything.count, 4); // p3, p4, podsx, services

    // Change things, then read the past.
    put(&s, "/registry/pods/ns/p0", "changed").await;
    s.delete_range(del_req("/registry/pods/ns/p1"))
        .await
        .unwrap();
    put(&s, "/registry/pods/ns/p9", "new").await;

    let mut req = prefix_req("/registry/pods/");
    req.revision = rev_before;
    let past = s.range(req).await.unwrap();
    assert_eq!(past.count, 5);
    assert_eq!(past.kvs[0].value, b"v0");
    assert_eq!(past.kvs[1].key, b"/registry/pods/ns/p1");
    assert!(
        past.revision > rev_before,
        "header carries the current revision"
    );

    let now = s.range(prefix_req("/registry/pods/")).await.unwrap();
    assert_eq!(now.count, 5);
    assert_eq!(now.kvs[0].value, b"changed");

    let mut req = get_req("x");
    req.revision = now.revision + 10;
    assert!(matches!(
        s.range(req).await,
        Err(StoreError::FutureRevision { .. })
    ));
    s.shutdown().await;
}

async fn delete_range_with_prev_kvs(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(backend, dir.path()).await;
    for k in ["a/1", "a/2", "a/3", "b/1"] {
        put(&s, k, k).await;
    }
    let before = s.current_revision().await.unwrap();
    let d = s
        .delete_range(DeleteRangeRequest {
            key: b"a/".to_vec(),
            range_end: skiff_store::prefix_end(b"a/"),
            prev_kv: true,
        })
        .await
        .unwrap();
    assert_eq!(d.deleted, 3);
    assert_eq!(d.prev_kvs.len(), 3);
    // One delete of three keys is one revision.
    assert_eq!(d.revision, before + 1);
    assert_eq!(s.range(prefix_req("a/")).await.unwrap().count, 0);
    assert_eq!(s.range(prefix_req("b/")).await.unwrap().count, 1);
    s.shutdown().await;
}

async fn txn_create_if_absent_cas_and_failure_branch(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(backend, dir.path()).await;

    // Create-if-absent (Kubernetes' create: mod_revision == 0).
    let create = |v: &str| TxnRequest {
        compare: vec![cmp(
            "/k",
            CompareResult::Equal,
            CompareTarget::ModRevision(0),
        )],
        success: vec![RequestOp::Put(put_req("/k", v))],
        failure: vec![RequestOp::Range(get_req("/k"))],
    };
    let t = s.txn(create("first")).await.unwrap();
    assert!(t.succeeded);
    let created_rev = t.revision;
    let t = s.txn(create("second")).await.unwrap();
    assert!(!t.succeeded);
    assert_eq!(
        t.revision, created_rev,
        "a failed txn with only reads keeps the revision"
    );
    match &t.responses[0] {
        ResponseOp::Range(r) => assert_eq!(r.kvs[0].value, b"first"),
        other => panic!("unexpected {other:?}"),
    }

    // CAS on mod_revision (Kubernetes' update).
    let update = |rev: i64, v: &str| TxnRequest {
        compare: vec![cmp(
            "/k",
            CompareResult::Equal,
            CompareTarget::ModRevision(rev),
        )],
        success: vec![RequestOp::Put(put_req("/k", v))],
        failure: vec![],
    };
    let t = s.txn(update(created_rev, "updated")).await.unwrap();
    assert!(t.succeeded);
    let t2 = s.txn(update(created_rev, "stale")).await.unwrap();
    assert!(!t2.succeeded);
    let kv = s.range(get_req("/k")).await.unwrap().kvs.remove(0);
    assert_eq!(kv.value, b"updated");
    assert_eq!(kv.version, 2);

    // Other compare targets.
    let checks = [
        (CompareResult::Equal, CompareTarget::Version(2), true),
        (CompareResult::Greater, CompareTarget::Version(1), true),
        (CompareResult::Less, CompareTarget::Version(2), false),
        (
            CompareResult::Equal,
            CompareTarget::CreateRevision(created_rev),
            true,
        ),
        (
            CompareResult::Equal,
            CompareTarget::Value(b"updated".to_vec()),
            true,
        ),
        (
            CompareResult::NotEqual,
            CompareTarget::Value(b"updated".to_vec()),
            false,
        ),
        (CompareResult::Equal, CompareTarget::Lease(0), true),
    ];
    for (result, target, want) in checks {
        let t = s
            .txn(TxnRequest {
                compare: vec![cmp("/k", result, target.clone())],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(t.succeeded, want, "{result:?} {target:?}");
    }
    // A value compare on a missing key never holds.
    let t = s
        .txn(TxnRequest {
            compare: vec![cmp(
                "/none",
                CompareResult::NotEqual,
                CompareTarget::Value(b"x".to_vec()),
            )],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!t.succeeded);

    // Several writes share one revision; later ops read earlier ones.
    let before = s.current_revision().await.unwrap();
    let t = s
        .txn(TxnRequest {
            compare: vec![],
            success: vec![
                RequestOp::Put(put_req("/t/a", "1")),
                RequestOp::Put(put_req("/t/b", "2")),
                RequestOp::Range(prefix_req("/t/")),
                RequestOp::DeleteRange(del_req("/k")),
            ],
            failure: vec![],
        })
        .await
        .unwrap();
    assert!(t.succeeded);
    assert_eq!(t.revision, before + 1);
    match &t.responses[2] {
        ResponseOp::Range(r) => assert_eq!(r.count, 2),
        other => panic!("unexpected {other:?}"),
    }
    let all = s.range(prefix_req("/t/")).await.unwrap();
    assert!(all.kvs.iter().all(|kv| kv.mod_revision == before + 1));
    assert_eq!(s.range(get_req("/k")).await.unwrap().count, 0);
    s.shutdown().await;
}

async fn value_over_limit_is_refused(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(backend, dir.path()).await;
    let mut req = put_req("/big", "");
    req.value = vec![b'x'; MAX_VALUE_BYTES + 1];
    match s.put(req).await {
        Err(StoreError::InvalidRequest(m)) => assert!(m.contains("1.5 MiB"), "{m}"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        s.put(put_req("", "v")).await,
        Err(StoreError::InvalidRequest(_))
    ));
    let mut ok = put_req("/big", "");
    ok.value = vec![b'x'; MAX_VALUE_BYTES];
    s.put(ok).await.unwrap();
    s.shutdown().await;
}

async fn compaction_refuses_old_reads(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(backend, dir.path()).await;
    for i in 0..10 {
        put(&s, "/c", &format!("{i}")).await;
    }
    let cur = s.current_revision().await.unwrap(); // 11
    s.compact(cur - 3).await.unwrap();

    let mut req = get_req("/c");
    req.revision = cur - 4;
    match s.range(req).await {
        Err(StoreError::Compacted {
            requested,
            compact_revision,
        }) => {
            assert_eq!((requested, compact_revision), (cur - 4, cur - 3));
        }
        other => panic!("unexpected {other:?}"),
    }
    // At and after the compaction point, reads work.
    let mut req = get_req("/c");
    req.revision = cur - 3;
    let r = s.range(req).await.unwrap();
    assert_eq!(r.kvs[0].mod_revision, cur - 3);

    // Compacting again at or below the point, or into the future, fails.
    assert!(matches!(
        s.compact(cur - 3).await,
        Err(StoreError::Compacted { .. })
    ));
    assert!(matches!(
        s.compact(cur + 1).await,
        Err(StoreError::FutureRevision { .. })
    ));
    // The latest value is kept.
    assert_eq!(s.range(get_req("/c")).await.unwrap().kvs[0].value, b"9");
    s.shutdown().await;
}

/// Embedded store only: automatic compaction is the server's setting, not
/// part of the key-value contract (etcd's revision-mode auto-compaction
/// runs every 5 minutes, too slow for a test).
#[tokio::test]
async fn automatic_compaction_keeps_the_last_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = skiff_store::StoreConfig::new(dir.path());
    cfg.auto_compaction_retain = 20;
    let s = skiff_store::Store::open(cfg).await.unwrap();
    for i in 0..60 {
        put(&s, "/a", &format!("{i}")).await;
    }
    let cur = s.current_revision().await.unwrap();
    let mut req = get_req("/a");
    req.revision = cur - 20;
    s.range(req).await.unwrap();
    let mut req = get_req("/a");
    req.revision = 2;
    assert!(matches!(
        s.range(req).await,
        Err(StoreError::Compacted { .. })
    ));
    s.shutdown().await;
}

/// Concurrent compare-and-swap increments on one key: writes that share a
/// raft entry (group commit) must still see each other, so exactly the
/// successful CASes are counted and revisions stay unique.
async fn concurrent_cas_increments_are_serializable(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(backend, dir.path()).await;
    put(&s, "/counter", "0").await;
    const TASKS: usize = 16;
    const INCREMENTS: usize = 20;
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            let mut done = 0;
            while done < INCREMENTS {
                let cur = s.range(get_req("/counter")).await.unwrap().kvs.remove(0);
                let n: u64 = value_of(&cur.value).parse().unwrap();
                let t = s
                    .txn(TxnRequest {
                        compare: vec![cmp(
                            "/counter",
                            CompareResult::Equal,
                            CompareTarget::ModRevision(cur.mod_revision),
                        )],
                        success: vec![RequestOp::Put(put_req("/counter", &(n + 1).to_string()))],
                        failure: vec![],
                    })
                    .await
                    .unwrap();
                if t.succeeded {
                    done += 1;
                    revs.push(t.revision);
                }
            }
            revs
        }));
    }
    let mut all_revs = Vec::new();
    for h in handles {
        all_revs.extend(h.await.unwrap());
    }
    let kv = s.range(get_req("/counter")).await.unwrap().kvs.remove(0);
    assert_eq!(value_of(&kv.value), (TASKS * INCREMENTS).to_string());
    assert_eq!(kv.version as usize, TASKS * INCREMENTS + 1);
    all_revs.sort();
    all_revs.dedup();
    assert_eq!(
        all_revs.len(),
        TASKS * INCREMENTS,
        "every successful txn has its own revision"
    );
    s.shutdown().await;
}

/// Under concurrent writes, a Range never returns a key newer than the
/// revision it reports (a list's resourceVersion must cover its items).
async fn range_is_a_consistent_snapshot_under_writes(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(backend, dir.path()).await;
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..600 {
                put(&s, &format!("/cs/{}", i % 50), &i.to_string()).await;
            }
        })
    };
    while !writer.is_finished() {
        let r = s.range(prefix_req("/cs/")).await.unwrap();
        for kv in &r.kvs {
            assert!(
                kv.mod_revision <= r.revision,
                "{} > {}",
                kv.mod_revision,
                r.revision
            );
        }
    }
    writer.await.unwrap();
    s.shutdown().await;
}

/// A range whose end is before its start is empty, not a panic.
async fn inverted_range_is_empty(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(backend, dir.path()).await;
    put(&s, "/b", "1").await;
    let r = s
        .range(RangeRequest {
            key: b"/z".to_vec(),
            range_end: b"/a".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.count, 0);
    let d = s
        .delete_range(DeleteRangeRequest {
            key: b"/z".to_vec(),
            range_end: b"/a".to_vec(),
            prev_kv: false,
        })
        .await
        .unwrap();
    assert_eq!(d.deleted, 0);
    let mut past = RangeRequest {
        key: b"/z".to_vec(),
        range_end: b"/a".to_vec(),
        ..Default::default()
    };
    past.revision = 1;
    assert_eq!(s.range(past).await.unwrap().count, 0);
    s.shutdown().await;
}

/// etcd reads the newest revision for any revision of 0 or less
/// (`mvcc/kvstore_txn.go`, `rangeKeys`), in a Range and in a Txn's Range.
async fn a_negative_revision_reads_the_newest(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(backend, dir.path()).await;
    put(&s, "/n", "1").await;
    put(&s, "/n", "2").await;
    let mut req = get_req("/n");
    req.revision = -1;
    let r = s.range(req.clone()).await.unwrap();
    assert_eq!(value_of(&r.kvs[0].value), "2");
    let t = s
        .txn(TxnRequest {
            success: vec![RequestOp::Range(req)],
            ..Default::default()
        })
        .await
        .unwrap();
    let [ResponseOp::Range(r)] = t.responses.as_slice() else {
        panic!("one range answer: {t:?}")
    };
    assert_eq!(value_of(&r.kvs[0].value), "2");
    s.shutdown().await;
}

both_backends!(
    a_negative_revision_reads_the_newest,
    revisions_and_metadata,
    range_prefix_limit_count_keys_only_and_past_revision,
    delete_range_with_prev_kvs,
    txn_create_if_absent_cas_and_failure_branch,
    value_over_limit_is_refused,
    compaction_refuses_old_reads,
    concurrent_cas_increments_are_serializable,
    range_is_a_consistent_snapshot_under_writes,
    inverted_range_is_empty,
);
