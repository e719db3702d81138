//! Events expire after `--event-ttl` (kube-apiserver's default 1 h): both
//! Event kinds are written attached to a store lease, other objects are
//! not, and the store deletes expired events while the rest stays.

mod common;

use std::time::{Duration, Instant};

use common::{with_server, with_server_configured, Harness};
use serde_json::json;
use skiff_store::{Kv, Lease, LeaseId, RangeRequest};

const CORE_EVENT: &str = r#"
apiVersion: v1
kind: Event
metadata:
  name: e1
  namespace: default
involvedObject:
  kind: Pod
  name: p
  namespace: default
reason: Tested
message: an event that expires
type: Normal
"#;

/// The lease the object at `key` is attached to (0: none); `None` if absent.
async fn lease_of(h: &Harness, key: &str) -> Option<LeaseId> {
    let resp = h
        .store
        .range(RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    resp.kvs.first().map(|kv| kv.lease)
}

async fn create_events(h: &Harness) {
    h.kubectl_ok(&["apply", "-f", "-"], Some(CORE_EVENT)).await;
    let (code, body) = h
        .call(
            "POST",
            "/apis/events.k8s.io/v1/namespaces/default/events",
            Some(json!({
                "apiVersion": "events.k8s.io/v1",
                "kind": "Event",
                "metadata": {"name": "e2"},
                "eventTime": "2026-11-23T00:00:00.000000Z",
                "reportingController": "skiff.test/ttl",
                "reportingInstance": "t1",
                "action": "Testing",
                "reason": "Tested",
                "regarding": {"kind": "Pod", "name": "p", "namespace": "default"},
                "type": "Normal",
                "note": "another event that expires",
            })),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    h.kubectl_ok(&["create", "configmap", "stays"], None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_expire_after_the_ttl_and_nothing_else_does() {
    with_server_configured(
        |c| c.event_ttl = Duration::from_secs(3),
        async |h| {
            create_events(h).await;
            let core = "/registry/core/events/default/e1";
            let new = "/registry/events.k8s.io/events/default/e2";
            let cm = "/registry/core/configmaps/default/stays";
            assert_ne!(lease_of(h, core).await, Some(0), "core event has a lease");
            assert_ne!(lease_of(h, new).await, Some(0), "events.k8s.io event too");
            assert_eq!(lease_of(h, cm).await, Some(0), "a configmap has none");

            let start = Instant::now();
            while lease_of(h, core).await.is_some() || lease_of(h, new).await.is_some() {
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "events still there after 60 s with a 3 s TTL"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            eprintln!("events gone {:?} after creation", start.elapsed());
            let out = h.kubectl(&["get", "event", "e1"], None).await;
            assert!(!out.ok && out.stderr.contains("NotFound"), "{out:?}");
            h.kubectl_ok(&["get", "configmap", "stays"], None).await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_events_live_an_hour_and_share_leases() {
    with_server(async |h| {
        create_events(h).await;
        let id = lease_of(h, "/registry/core/events/default/e1")
            .await
            .expect("event stored");
        let ttl = h.store.lease_time_to_live(id, true).await.unwrap();
        // One hour, plus the one-minute window in which writes share it.
        assert_eq!(ttl.granted_ttl, 3660);
        // An update re-attaches the event: it is written under a lease
        // again (the same one within the window, else a newer one).
        h.kubectl_ok(&["annotate", "event", "e1", "touched=yes"], None)
            .await;
        let after = lease_of(h, "/registry/core/events/default/e1")
            .await
            .expect("event stored");
        assert_ne!(after, 0);
        // Events written within the window share its lease.
        let other = lease_of(h, "/registry/events.k8s.io/events/default/e2")
            .await
            .expect("event stored");
        let leases = h.store.lease_leases().await.unwrap();
        assert!(leases.contains(&other));
        assert!(
            leases.len() <= 2,
            "writes within a minute share a lease: {leases:?}"
        );
    })
    .await;
}
