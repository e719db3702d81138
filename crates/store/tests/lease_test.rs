//! Leases: grant, attach, keep-alive, expiry (decided by the leader, applied
//! as a revoke through raft), revoke, and TTLs across a restart.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use skiff_store::{
    EventType, LeaseGrantRequest, RequestOp, StoreError, TxnRequest, WatchRequest,
    MIN_LEASE_TTL_SECS,
};

fn grant(id: i64, ttl: i64) -> LeaseGrantRequest {
    LeaseGrantRequest { id, ttl }
}

async fn exists(s: &Subject, key: &str) -> bool {
    s.range(get_req(key)).await.unwrap().count == 1
}

async fn grant_attach_revoke(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(backend, dir.path()).await;
    let rev0 = s.current_revision().await.unwrap();

    // The store picks ids when asked to, never reusing one (the embedded
    // store counts up, etcd picks at random).
    let a = s.lease_grant(grant(0, 60)).await.unwrap();
    let b = s.lease_grant(grant(0, 60)).await.unwrap();
    assert!(a.id > 0 && b.id > 0 && b.id != a.id, "{a:?} {b:?}");
    assert_eq!(a.ttl, 60);
    // A grant does not change the revision.
    assert_eq!(b.revision, rev0);
    // A chosen id is kept; a taken one is refused.
    assert_eq!(s.lease_grant(grant(1000, 60)).await.unwrap().id, 1000);
    assert!(matches!(
        s.lease_grant(grant(1000, 60)).await,
        Err(StoreError::LeaseExists(1000))
    ));
    // Too short a TTL is raised to the minimum, as etcd does.
    let short = s.lease_grant(grant(0, 1)).await.unwrap();
    assert_eq!(short.ttl, MIN_LEASE_TTL_SECS);
    let mut ids = s.lease_leases().await.unwrap();
    ids.sort();
    let mut want = vec![a.id, b.id, short.id, 1000];
    want.sort();
    assert_eq!(ids, want);

    // Put with a lease attaches; a later put may move the key elsewhere.
    for (k, l) in [
        ("/l/1", a.id),
        ("/l/2", a.id),
        ("/l/3", a.id),
        ("/other", 0),
    ] {
        let mut req = put_req(k, "v");
        req.lease = l;
        s.put(req).await.unwrap();
    }
    let mut req = put_req("/l/3", "moved");
    req.lease = b.id;
    s.put(req).await.unwrap();
    let ttl = s.lease_time_to_live(a.id, true).await.unwrap();
    assert_eq!(ttl.granted_ttl, 60);
    assert!((58..=60).contains(&ttl.ttl), "{ttl:?}");
    // etcd lists a lease's keys in map order, so compare them sorted.
    let mut keys = ttl.keys.clone();
    keys.sort();
    assert_eq!(keys, vec![b"/l/1".to_vec(), b"/l/2".to_vec()]);
    // Deleting a key detaches it.
    s.delete_range(del_req("/l/2")).await.unwrap();
    assert_eq!(
        s.lease_time_to_live(a.id, true).await.unwrap().keys,
        vec![b"/l/1".to_vec()]
    );

    // Revoke deletes the attached keys in one revision.
    let mut w = s
        .watch(WatchRequest {
            key: b"/".to_vec(),
            range_end: skiff_store::prefix_end(b"/"),
            ..Default::default()
        })
        .await
        .unwrap();
    let before = s.current_revision().await.unwrap();
    s.put(put_req("/l/9", "x")).await.unwrap();
    let mut req = put_req("/l/9", "x");
    req.lease = a.id;
    s.put(req).await.unwrap();
    let r = s.lease_revoke(a.id).await.unwrap();
    assert_eq!(r.revision, before + 3);
    assert!(!exists(&s, "/l/1").await && !exists(&s, "/l/9").await);
    assert!(exists(&s, "/l/3").await && exists(&s, "/other").await);
    let mut deletes = Vec::new();
    while deletes.len() < 2 {
        let batch = tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        for e in batch.events {
            if e.kind == EventType::Delete {
                assert_eq!(e.kv.mod_revision, r.revision);
                deletes.push(value_of(&e.kv.key));
            }
        }
    }
    assert_eq!(deletes, vec!["/l/1", "/l/9"]);

    // The lease is gone.
    assert!(matches!(
        s.lease_time_to_live(a.id, false).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    assert!(matches!(
        s.lease_revoke(a.id).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    assert!(matches!(
        s.lease_keep_alive(a.id).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    // Revoking a lease without keys leaves the revision alone.
    let rev = s.current_revision().await.unwrap();
    assert_eq!(s.lease_revoke(1000).await.unwrap().revision, rev);
    s.shutdown().await;
}

async fn unknown_lease_is_refused(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(backend, dir.path()).await;
    let rev = s.current_revision().await.unwrap();
    let mut req = put_req("/k", "v");
    req.lease = 77;
    assert!(matches!(
        s.put(req.clone()).await,
        Err(StoreError::LeaseNotFound(77))
    ));
    // In a txn, the refusal leaves nothing half-done.
    let txn = TxnRequest {
        compare: vec![],
        success: vec![RequestOp::Put(put_req("/first", "v")), RequestOp::Put(req)],
        failure: vec![],
    };
    assert!(matches!(
        s.txn(txn).await,
        Err(StoreError::LeaseNotFound(77))
    ));
    assert!(!exists(&s, "/first").await);
    assert_eq!(s.current_revision().await.unwrap(), rev);
    s.shutdown().await;
}

/// Wait until `key` is gone; returns how long it took.
async fn wait_gone(s: &Subject, key: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    while exists(s, key).await {
        assert!(start.elapsed() < limit, "{key} still there after {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start.elapsed()
}

async fn keep_alive_extends_and_expiry_deletes(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(backend, dir.path()).await;
    let l = s.lease_grant(grant(0, 2)).await.unwrap();
    let mut req = put_req("/session", "alive");
    req.lease = l.id;
    s.put(req).await.unwrap();
    let mut w = s
        .watch(WatchRequest {
            key: b"/session".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();

    // Kept alive for longer than its TTL, the key stays.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(900)).await;
        let k = s.lease_keep_alive(l.id).await.unwrap();
        assert_eq!(k.ttl, 2);
        assert!(exists(&s, "/session").await);
    }
    let left = s.lease_time_to_live(l.id, false).await.unwrap().ttl;
    assert!((1..=2).contains(&left), "remaining {left}");

    // Left alone, it expires: the leader revokes it through raft, within
    // the TTL plus a check interval (and some slack for a busy machine).
    let took = wait_gone(&s, "/session", Duration::from_secs(8)).await;
    assert!(
        took >= Duration::from_millis(1000),
        "expired early: {took:?}"
    );
    let batch = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(batch.events.len(), 1);
    assert_eq!(batch.events[0].kind, EventType::Delete);
    assert!(matches!(
        s.lease_time_to_live(l.id, false).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    s.shutdown().await;
}

async fn leases_survive_a_restart_with_a_fresh_ttl(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(backend, dir.path()).await;
    let long = s.lease_grant(grant(5, 100)).await.unwrap();
    let short = s.lease_grant(grant(6, 2)).await.unwrap();
    for (k, l) in [("/long", long.id), ("/short", short.id)] {
        let mut req = put_req(k, "v");
        req.lease = l;
        s.put(req).await.unwrap();
    }
    s.shutdown().await;
    drop(s);

    let s = open(backend, dir.path()).await;
    // Like etcd after a leader change, every lease restarts its full TTL.
    let t = s.lease_time_to_live(5, true).await.unwrap();
    assert_eq!(
        (t.granted_ttl, t.keys.clone()),
        (100, vec![b"/long".to_vec()])
    );
    assert!((99..=100).contains(&t.ttl), "{t:?}");
    let mut ids = s.lease_leases().await.unwrap();
    ids.sort();
    assert_eq!(ids, vec![5, 6]);
    // The new lessor still expires the short one.
    wait_gone(&s, "/short", Duration::from_secs(8)).await;
    assert!(exists(&s, "/long").await);
    // The id counter was replicated too: a new lease does not reuse 5 or 6.
    let next = s.lease_grant(grant(0, 60)).await.unwrap();
    assert!(next.id != 5 && next.id != 6);
    s.shutdown().await;
}

both_backends!(
    grant_attach_revoke,
    unknown_lease_is_refused,
    keep_alive_extends_and_expiry_deletes,
    leases_survive_a_restart_with_a_fresh_ttl,
);
