//! The etcd v3 gRPC API through the generated client: what etcdctl cannot
//! show (several watches on one stream, cancel, progress requests, status
//! codes).

mod common;

use std::time::Duration;

use skiff_store::etcd::pb::etcdserverpb as pb;
use skiff_store::etcd::pb::etcdserverpb::kv_client::KvClient;
use skiff_store::etcd::pb::etcdserverpb::lease_client::LeaseClient;
use skiff_store::etcd::pb::etcdserverpb::watch_client::WatchClient;
use skiff_store::serve_etcd_api;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

async fn serve() -> (
    String,
    skiff_store::Store,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open_store(dir.path()).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn({
        let store = store.clone();
        async move {
            serve_etcd_api(store, listener, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        }
    });
    (endpoint, store, stop, server, dir)
}

fn put(key: &str, value: &str) -> pb::PutRequest {
    pb::PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

fn create(key: &str, start_revision: i64) -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest {
                key: key.into(),
                start_revision,
                ..Default::default()
            },
        )),
    }
}

async fn next(s: &mut tonic::Streaming<pb::WatchResponse>) -> pb::WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), s.message())
        .await
        .expect("watch answer")
        .unwrap()
        .expect("stream open")
}

#[tokio::test]
async fn watches_share_a_stream_and_end_at_shutdown() {
    let (endpoint, store, stop, server, _dir) = serve().await;
    let mut kv = KvClient::connect(endpoint.clone()).await.unwrap();
    let mut watch = WatchClient::connect(endpoint).await.unwrap();
    let (tx, rx) = mpsc::channel(8);
    let mut responses = watch
        .watch(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(create("/a", 0)).await.unwrap();
    let a = next(&mut responses).await;
    assert!(a.created && !a.canceled);
    tx.send(create("/b", 0)).await.unwrap();
    let b = next(&mut responses).await;
    assert!(b.created);
    assert_ne!(a.watch_id, b.watch_id);
    let header = a.header.unwrap();
    assert_eq!((header.member_id, header.revision), (1, 1));
    assert!(header.cluster_id != 0 && header.raft_term >= 1);

    kv.put(put("/b", "1")).await.unwrap();
    kv.put(put("/a", "1")).await.unwrap();
    let r = next(&mut responses).await;
    assert_eq!(
        (r.watch_id, r.events[0].kv.as_ref().unwrap().key.as_slice()),
        (b.watch_id, &b"/b"[..])
    );
    assert_eq!(r.header.unwrap().revision, 2);
    let r = next(&mut responses).await;
    assert_eq!(r.watch_id, a.watch_id);

    // Cancel one; the other keeps going.
    tx.send(pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CancelRequest(
            pb::WatchCancelRequest {
                watch_id: a.watch_id,
            },
        )),
    })
    .await
    .unwrap();
    let r = next(&mut responses).await;
    assert!(r.canceled && r.watch_id == a.watch_id);
    kv.put(put("/a", "2")).await.unwrap();
    kv.put(put("/b", "2")).await.unwrap();
    let r = next(&mut responses).await;
    assert_eq!(r.watch_id, b.watch_id, "{r:?}");

    // A progress request is answered with the current revision, watch -1.
    tx.send(pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(
            pb::WatchProgressRequest {},
        )),
    })
    .await
    .unwrap();
    let r = next(&mut responses).await;
    assert_eq!((r.watch_id, r.header.unwrap().revision), (-1, 5));

    // Compacted history: created, then canceled with compact_revision.
    kv.compact(pb::CompactionRequest {
        revision: 4,
        physical: false,
    })
    .await
    .unwrap();
    tx.send(create("/a", 2)).await.unwrap();
    let r = next(&mut responses).await;
    assert!(r.created);
    let r = next(&mut responses).await;
    assert!(r.canceled && r.compact_revision == 4, "{r:?}");

    // Shutting the server down ends the open stream.
    stop.send(()).unwrap();
    let end = tokio::time::timeout(Duration::from_secs(10), responses.message())
        .await
        .expect("stream ends at shutdown");
    assert!(!matches!(end, Ok(Some(_))), "{end:?}");
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server stops")
        .unwrap();
    store.shutdown().await;
}

#[tokio::test]
async fn errors_carry_etcd_codes_and_messages() {
    let (endpoint, store, stop, server, _dir) = serve().await;
    let mut kv = KvClient::connect(endpoint.clone()).await.unwrap();
    let mut lease = LeaseClient::connect(endpoint).await.unwrap();

    let e = kv.put(put("", "v")).await.unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::InvalidArgument, "etcdserver: key is not provided")
    );
    let big = "x".repeat(skiff_store::MAX_VALUE_BYTES + 1);
    let e = kv.put(put("/big", &big)).await.unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::InvalidArgument, "etcdserver: request is too large")
    );
    let mut p = put("/k", "v");
    p.lease = 99;
    let e = kv.put(p).await.unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::NotFound, "etcdserver: requested lease not found")
    );
    let e = kv
        .range(pb::RangeRequest {
            key: "/k".into(),
            revision: 50,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange);

    let g = lease
        .lease_grant(pb::LeaseGrantRequest { ttl: 30, id: 7 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((g.id, g.ttl), (7, 30));
    let e = lease
        .lease_grant(pb::LeaseGrantRequest { ttl: 30, id: 7 })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::FailedPrecondition, "etcdserver: lease already exists")
    );
    // Unknown leases: keep-alive answers TTL 0, time-to-live TTL -1.
    let (tx, rx) = mpsc::channel(2);
    let mut ka = lease
        .lease_keep_alive(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(pb::LeaseKeepAliveRequest { id: 7 }).await.unwrap();
    assert_eq!(ka.message().await.unwrap().unwrap().ttl, 30);
    tx.send(pb::LeaseKeepAliveRequest { id: 8 }).await.unwrap();
    assert_eq!(ka.message().await.unwrap().unwrap().ttl, 0);
    let t = lease
        .lease_time_to_live(pb::LeaseTimeToLiveRequest { id: 8, keys: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.ttl, -1);
    drop(tx);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server stops")
        .unwrap();
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_driver_runs_against_the_api() {
    let (endpoint, store, stop, server, _dir) = serve().await;
    let addr = endpoint.trim_start_matches("http://").to_string();
    let r = skiff_store::etcd::drive_etcd_api(&addr, 4, 200, 64)
        .await
        .unwrap();
    assert_eq!(r.phases.len(), 2);
    for p in &r.phases {
        assert_eq!(p.ops, 200);
        assert!(p.ops_per_sec > 0.0 && p.p50 <= p.p99, "{r}");
    }
    let table = r.to_string();
    assert!(table.contains("put") && table.contains("range"), "{table}");
    let mut kv = KvClient::connect(endpoint).await.unwrap();
    let count = kv
        .range(pb::RangeRequest {
            key: "/skiff-bench/".into(),
            range_end: skiff_store::prefix_end(b"/skiff-bench/"),
            count_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .count;
    assert_eq!(count, 200);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server stops")
        .unwrap();
    store.shutdown().await;
}
