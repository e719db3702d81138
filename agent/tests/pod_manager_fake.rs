//! The pod manager on the fake CRI and a fake API server that serves a
//! pod list and a watch: workers start for listed and added pods, a pod
//! deleted from the API is torn down without an API delete, a graceful
//! deletion ends with the final delete, and a sandbox of an unknown pod left
//! in the runtime is removed by housekeeping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use k8s_cri::v1 as cri;
use serde_json::{json, Value};
use skiff_agent::cri::fake::FakeRuntime;
use skiff_agent::cri::{labels, RuntimeService};
use skiff_agent::pod::worker::WorkerContext;
use skiff_agent::pod::PodManager;
use tokio::sync::mpsc;

type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;
type Error = Box<dyn std::error::Error + Send + Sync>;

fn pod_json(name: &str, rv: u32, deleting: bool) -> Value {
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                     "resourceVersion": rv.to_string()},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "skiff.local/busybox:1"}]}
    });
    if deleting {
        p["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        p["metadata"]["deletionGracePeriodSeconds"] = json!(1);
    }
    p
}

/// A fake API: `GET /api/v1/pods` lists pod "a"; with `watch=true` it
/// streams what the test sends; everything else answers with a pod.
fn fake_api(seen: Seen, watch_rx: mpsc::UnboundedReceiver<Value>) -> kube::Client {
    let watch_rx = Arc::new(Mutex::new(Some(watch_rx)));
    let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let seen = seen.clone();
        let watch_rx = watch_rx.clone();
        async move {
            let method = req.method().to_string();
            let uri = req.uri().to_string();
            let body = req.into_body().collect().await?.to_bytes();
            let json_body = serde_json::from_slice(&body).unwrap_or(Value::Null);
            seen.lock()
                .unwrap()
                .push((method.clone(), uri.clone(), json_body));
            let ok = |v: Value| -> BoxBody<Bytes, Error> {
                Full::new(Bytes::from(v.to_string()))
                    .map_err(|e| match e {})
                    .boxed()
            };
            let body = if method == "GET"
                && uri.starts_with("/api/v1/pods")
                && uri.contains("watch=true")
            {
                match watch_rx.lock().unwrap().take() {
                    Some(rx) => {
                        let events = tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
                            .map(|ev| Ok::<_, Error>(Frame::data(Bytes::from(format!("{ev}\n")))));
                        BodyExt::boxed(StreamBody::new(events))
                    }
                    // A re-watch: hang, like a quiet watch.
                    None => BodyExt::boxed(StreamBody::new(futures::stream::pending::<
                        Result<Frame<Bytes>, Error>,
                    >())),
                }
            } else if method == "GET" && uri.starts_with("/api/v1/pods") {
                assert!(uri.contains("fieldSelector=spec.nodeName%3Dn1"), "{uri}");
                ok(
                    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"},
                          "items": [pod_json("a", 1, false)]}),
                )
            } else {
                ok(pod_json("x", 1, false))
            };
            Ok::<_, Error>(
                http::Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(body)
                    .unwrap(),
            )
        }
    });
    kube::Client::new(svc, "default")
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..150 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn sandbox_uids(cri: &FakeRuntime) -> Vec<String> {
    let rt = tokio::runtime::Handle::current();
    let list = tokio::task::block_in_place(|| rt.block_on(cri.list_pod_sandbox(None))).unwrap();
    let mut uids: Vec<String> = list
        .into_iter()
        .filter(|s| s.state == cri::PodSandboxState::SandboxReady as i32)
        .filter_map(|s| s.labels.get(labels::POD_UID).cloned())
        .collect();
    uids.sort();
    uids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_follows_the_watch() {
    let cri = Arc::new(FakeRuntime::with_images(&["skiff.local/busybox:1"]));
    // A sandbox of a pod the API no longer has (left by an earlier agent).
    let ghost_labels: HashMap<String, String> = [
        (labels::POD_UID, "uid-ghost"),
        (labels::POD_NAME, "ghost"),
        (labels::POD_NAMESPACE, "default"),
        (labels::SKIFF_NODE, "n1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    cri.run_pod_sandbox(cri::PodSandboxConfig {
        labels: ghost_labels,
        ..Default::default()
    })
    .await
    .unwrap();
    // Another node's sandbox in the same runtime: never touched.
    cri.run_pod_sandbox(cri::PodSandboxConfig {
        labels: [
            (labels::POD_UID.to_string(), "uid-other".to_string()),
            (labels::SKIFF_NODE.to_string(), "n2".to_string()),
        ]
        .into(),
        ..Default::default()
    })
    .await
    .unwrap();

    let seen: Seen = Arc::default();
    let (watch_tx, watch_rx) = mpsc::unbounded_channel();
    let data = tempfile::tempdir().unwrap();
    let ctx = Arc::new(WorkerContext {
        cri: cri.clone(),
        client: fake_api(seen.clone(), watch_rx),
        data_dir: data.path().to_path_buf(),
        host_ip: "192.0.2.10".into(),
        node_name: "n1".into(),
        cluster_dns: None,
        pod_starts: Arc::new(tokio::sync::Semaphore::new(4)),
        pod_events: None,
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let manager = tokio::spawn(
        PodManager::new(ctx)
            .with_housekeeping_period(Duration::from_millis(300))
            .run(async {
                let _ = stop_rx.await;
            }),
    );

    // The listed pod runs; the ghost is torn down; the other node's stays.
    wait_for("a running, ghost gone", || {
        sandbox_uids(&cri) == ["uid-a", "uid-other"]
    })
    .await;

    // An added pod runs too.
    watch_tx
        .send(json!({"type": "ADDED", "object": pod_json("b", 2, false)}))
        .unwrap();
    wait_for("b running", || {
        sandbox_uids(&cri) == ["uid-a", "uid-b", "uid-other"]
    })
    .await;

    // "a" vanishes from the API (force delete): torn down, no API delete.
    watch_tx
        .send(json!({"type": "DELETED", "object": pod_json("a", 3, false)}))
        .unwrap();
    wait_for("a gone", || sandbox_uids(&cri) == ["uid-b", "uid-other"]).await;
    assert!(!seen
        .lock()
        .unwrap()
        .iter()
        .any(|(m, u, _)| m == "DELETE" && u.contains("/pods/a")));

    // "b" is deleted gracefully: torn down, then the final delete.
    watch_tx
        .send(json!({"type": "MODIFIED", "object": pod_json("b", 4, true)}))
        .unwrap();
    wait_for("b final delete", || {
        seen.lock().unwrap().iter().any(|(m, u, b)| {
            m == "DELETE"
                && u.contains("/namespaces/default/pods/b")
                && b["gracePeriodSeconds"] == 0
        })
    })
    .await;
    assert_eq!(sandbox_uids(&cri), ["uid-other"]);

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), manager)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
