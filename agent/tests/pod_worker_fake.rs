//! A pod worker driven end to end on the fake CRI and a fake API server:
//! start, image pull failure and back-off, crash and restart, graceful
//! deletion with kubelet's final delete; the start permits that make pods
//! of a burst start in turn; restarts while the API server does not answer;
//! with the relist (`pod::pleg`), no polling of a steady pod and a wake-up
//! on an exit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;
use skiff_agent::cri::fake::FakeRuntime;
use skiff_agent::pod::worker::{run_pod_worker, PodUpdate, WorkerContext};
use tokio::sync::{watch, Semaphore};

/// Requests the fake API server saw: (method, path?query, JSON body).
type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

fn fake_api(seen: Seen) -> kube::Client {
    let (up, gate) = watch::channel(true);
    fake_api_gated(seen, gate, Some(up))
}

/// A fake API server that holds every request until `gate` is true (an
/// uplink gone silent, then back). `keep` keeps the gate's sender alive.
fn fake_api_gated(
    seen: Seen,
    gate: watch::Receiver<bool>,
    keep: Option<watch::Sender<bool>>,
) -> kube::Client {
    let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let _ = &keep;
        let seen = seen.clone();
        let mut gate = gate.clone();
        async move {
            let _ = gate.wait_for(|up| *up).await;
            let method = req.method().to_string();
            let path = req.uri().to_string();
            let body = req.into_body().collect().await?.to_bytes();
            let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
            seen.lock().unwrap().push((method, path, json));
            let pod = serde_json::json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web", "namespace": "default", "uid": "uid-1"}
            });
            let resp = http::Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(pod.to_string())))
                .unwrap();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(resp)
        }
    });
    kube::Client::new(svc, "default")
}

fn pod() -> Pod {
    let mut p = Pod::default();
    p.metadata.name = Some("web".into());
    p.metadata.namespace = Some("default".into());
    p.metadata.uid = Some("uid-1".into());
    let c = |name: &str, image: &str| Container {
        name: name.into(),
        image: Some(image.into()),
        ..Default::default()
    };
    p.spec = Some(PodSpec {
        containers: vec![
            c("app", "skiff.local/busybox:1"),
            c("side", "example.com/missing:1"),
        ],
        ..Default::default()
    });
    p
}

/// The newest status patch's view of one container: (state key, reason).
fn last_state(seen: &Seen, container: &str) -> Option<(String, String, i64)> {
    let seen = seen.lock().unwrap();
    let (_, _, body) = seen
        .iter()
        .rev()
        .find(|(m, p, _)| m == "PATCH" && p.contains("/status"))?;
    let cs = body["status"]["containerStatuses"].as_array()?;
    let c = cs.iter().find(|c| c["name"] == container)?;
    let state = c["state"].as_object()?;
    let (key, v) = state.iter().next()?;
    Some((
        key.clone(),
        v["reason"].as_str().unwrap_or_default().to_string(),
        c["restartCount"].as_i64().unwrap_or(-1),
    ))
}

/// Whether any status patch showed `container` waiting with `reason`.
fn ever_reason(seen: &Seen, container: &str, reason: &str) -> bool {
    let seen = seen.lock().unwrap();
    seen.iter()
        .filter(|(m, p, _)| m == "PATCH" && p.contains("/status"))
        .filter_map(|(_, _, body)| body["status"]["containerStatuses"].as_array())
        .flatten()
        .any(|c| c["name"] == container && c["state"]["waiting"]["reason"] == reason)
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..100 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn pod_worker_runs_restarts_and_deletes_a_pod() {
    let seen: Seen = Arc::default();
    let cri = Arc::new(FakeRuntime::with_images(&["skiff.local/busybox:1"]));
    let data = tempfile::tempdir().unwrap();
    let ctx = Arc::new(WorkerContext {
        cri: cri.clone(),
        client: fake_api(seen.clone()),
        data_dir: data.path().to_path_buf(),
        host_ip: "192.0.2.10".into(),
        node_name: "testnode".into(),
        cluster_dns: None,
        pod_starts: Arc::new(Semaphore::new(4)),
        pod_events: None,
    });
    let (tx, rx) = watch::channel(PodUpdate {
        pod: Arc::new(pod()),
        removed: false,
        eviction: None,
    });
    let worker = tokio::spawn(run_pod_worker(ctx, rx));

    // The present image runs; the missing one fails to pull, then backs off.
    // A loaded machine may poll after the back-off patch already replaced the
    // ErrImagePull one, so look through every patch, not only the newest.
    wait_for("app running, side ErrImagePull", || {
        last_state(&seen, "app").is_some_and(|s| s.0 == "running")
            && ever_reason(&seen, "side", "ErrImagePull")
    })
    .await;
    wait_for("side ImagePullBackOff", || {
        last_state(&seen, "side").is_some_and(|s| s.1 == "ImagePullBackOff")
    })
    .await;
    assert!(data.path().join("pods/default_web_uid-1/app").is_dir());

    // The first crash restarts at once; the second waits in CrashLoopBackOff.
    let first = cri.container_ids()[0].clone();
    cri.exit_container(&first, 1);
    wait_for("app restarted", || {
        last_state(&seen, "app") == Some(("running".into(), String::new(), 1))
    })
    .await;
    let second = cri.container_ids()[1].clone();
    cri.exit_container(&second, 1);
    wait_for("app CrashLoopBackOff", || {
        last_state(&seen, "app").is_some_and(|s| s.1 == "CrashLoopBackOff" && s.2 == 1)
    })
    .await;

    // Graceful deletion: stop with the deletion's grace period, remove, final delete.
    let mut deleting = pod();
    deleting.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    deleting.metadata.deletion_grace_period_seconds = Some(7);
    tx.send_replace(PodUpdate {
        pod: Arc::new(deleting),
        removed: false,
        eviction: None,
    });
    tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cri.sandbox_count(), 0);
    assert!(cri.container_ids().is_empty());
    let seen = seen.lock().unwrap();
    let (_, path, body) = seen
        .iter()
        .rev()
        .find(|(m, _, _)| m == "DELETE")
        .expect("final delete");
    assert!(path.contains("/namespaces/default/pods/web"), "{path}");
    assert_eq!(body["gracePeriodSeconds"], 0);
    assert_eq!(body["preconditions"]["uid"], "uid-1");
    assert!(!data.path().join("pods/default_web_uid-1").exists());
}

#[tokio::test]
async fn removed_pod_is_torn_down_without_api_delete() {
    let seen: Seen = Arc::default();
    let cri = Arc::new(FakeRuntime::with_images(&["skiff.local/busybox:1"]));
    let data = tempfile::tempdir().unwrap();
    let ctx = Arc::new(WorkerContext {
        cri: cri.clone(),
        client: fake_api(seen.clone()),
        data_dir: data.path().to_path_buf(),
        host_ip: "192.0.2.10".into(),
        node_name: "testnode".into(),
        cluster_dns: None,
        pod_starts: Arc::new(Semaphore::new(4)),
        pod_events: None,
    });
    let mut p = pod();
    p.spec.as_mut().unwrap().containers.truncate(1);
    let (tx, rx) = watch::channel(PodUpdate {
        pod: Arc::new(p.clone()),
        removed: false,
        eviction: None,
    });
    let worker = tokio::spawn(run_pod_worker(ctx, rx));
    wait_for("running", || {
        last_state(&seen, "app").is_some_and(|s| s.0 == "running")
    })
    .await;
    // Force-deleted with grace 7: the running container gets those 7 s.
    p.metadata.deletion_grace_period_seconds = Some(7);
    tx.send_replace(PodUpdate {
        pod: Arc::new(p),
        removed: true,
        eviction: None,
    });
    tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cri.sandbox_count(), 0);
    let calls = cri.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("StopContainer") && c.ends_with(" 7")),
        "{calls:?}"
    );
    assert!(!seen.lock().unwrap().iter().any(|(m, _, _)| m == "DELETE"));
}

#[tokio::test]
async fn a_new_pod_waits_for_a_start_permit_and_a_deletion_ends_the_wait() {
    let seen: Seen = Arc::default();
    let cri = Arc::new(FakeRuntime::with_images(&["skiff.local/busybox:1"]));
    let data = tempfile::tempdir().unwrap();
    let permits = Arc::new(Semaphore::new(1));
    let ctx = Arc::new(WorkerContext {
        cri: cri.clone(),
        client: fake_api(seen.clone()),
        data_dir: data.path().to_path_buf(),
        host_ip: "192.0.2.10".into(),
        node_name: "testnode".into(),
        cluster_dns: None,
        pod_starts: permits.clone(),
        pod_events: None,
    });
    let mut p = pod();
    p.spec.as_mut().unwrap().containers.truncate(1);

    // Another pod is starting (the test holds the only permit): nothing
    // happens in CRI until it is done.
    let busy = permits.clone().acquire_owned().await.unwrap();
    let (_tx, rx) = watch::channel(PodUpdate {
        pod: Arc::new(p.clone()),
        removed: false,
        eviction: None,
    });
    let worker = tokio::spawn(run_pod_worker(ctx.clone(), rx));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(cri.calls().is_empty(), "{:?}", cri.calls());
    drop(busy);
    wait_for("running", || {
        last_state(&seen, "app").is_some_and(|s| s.0 == "running")
    })
    .await;
    // Started: the permit is back for the next pod, although the worker
    // goes on looking after its pod.
    wait_for("permit returned", || permits.available_permits() == 1).await;
    assert!(!worker.is_finished());
    // One status write for the whole start (sandbox and container), not one
    // per step.
    let patches = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(m, p, _)| m == "PATCH" && p.contains("/status"))
        .count();
    assert_eq!(patches, 1);
    worker.abort();

    // A pod deleted while waiting for its turn never reaches CRI.
    let cri2 = Arc::new(FakeRuntime::with_images(&["skiff.local/busybox:1"]));
    let ctx2 = Arc::new(WorkerContext {
        cri: cri2.clone(),
        client: ctx.client.clone(),
        data_dir: ctx.data_dir.clone(),
        host_ip: ctx.host_ip.clone(),
        node_name: ctx.node_name.clone(),
        cluster_dns: None,
        pod_starts: permits.clone(),
        pod_events: None,
    });
    let _busy = permits.clone().acquire_owned().await.unwrap();
    let (tx, rx) = watch::channel(PodUpdate {
        pod: Arc::new(p.clone()),
        removed: false,
        eviction: None,
    });
    let worker = tokio::spawn(run_pod_worker(ctx2, rx));
    tx.send_replace(PodUpdate {
        pod: Arc::new(p),
        removed: true,
        eviction: None,
    });
    tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .unwrap()
        .unwrap();
    assert!(
        !cri2.calls().iter().any(|c| c.starts_with("RunPodSandbox")),
        "{:?}",
        cri2.calls()
    );
}

/// Regression: a status write over an uplink gone silent held up the pod's
/// sync, so a crashed container was not restarted until the server came
/// back (`tests/tests/agent_resilience.rs` found it on a real node).
#[tokio::test]
async fn containers_restart_while_the_api_server_does_not_answer() {
    let seen: Seen = Arc::default();
    let (up, gate) = watch::channel(false);
    let cri = Arc::new(FakeRuntime::with_images(&["skiff.local/busybox:1"]));
    let data = tempfile::tempdir().unwrap();
    let ctx = Arc::new(WorkerContext {
        cri: cri.clone(),
        client: fake_api_gated(seen.clone(), gate, None),
        data_dir: data.path().to_path_buf(),
        host_ip: "192.0.2.10".into(),
        node_name: "testnode".into(),
        cluster_dns: None,
        pod_starts: Arc::new(Semaphore::new(4)),
        pod_events: None,
    });
    let mut p = pod();
    p.spec.as_mut().unwrap().containers.truncate(1);
    let (_tx, rx) = watch::channel(PodUpdate {
        pod: Arc::new(p),
        removed: false,
        eviction: None,
    });
    let worker = tokio::spawn(run_pod_worker(ctx, rx));
    wait_for("app started", || cri.container_ids().len() == 1).await;
    let first = cri.container_ids()[0].clone();
    cri.exit_container(&first, 1);
    wait_for("app restarted without the API server", || {
        cri.container_ids().len() == 2
    })
    .await;
    assert!(seen.lock().unwrap().is_empty(), "no request was answered");

    // The server answers again: the newest status (one restart) goes out.
    up.send_replace(true);
    wait_for("status with the restart", || {
        last_state(&seen, "app") == Some(("running".into(), String::new(), 1))
    })
    .await;
    worker.abort();
}

/// Per-pod list calls (a worker observing its own pod) so far.
fn pod_lists(cri: &FakeRuntime) -> usize {
    cri.list_calls()
        .iter()
        .filter(|c| c.contains("io.kubernetes.pod.uid=uid-1"))
        .count()
}

#[tokio::test]
async fn with_the_relist_a_steady_pod_is_not_polled_and_an_exit_wakes_it() {
    use skiff_agent::pod::pleg::{relist_loop, PodEvents};
    let seen: Seen = Arc::default();
    let cri = Arc::new(FakeRuntime::with_images(&["skiff.local/busybox:1"]));
    let data = tempfile::tempdir().unwrap();
    let events = Arc::new(PodEvents::default());
    let relist = tokio::spawn(relist_loop(cri.clone(), "testnode".into(), events.clone()));
    let ctx = Arc::new(WorkerContext {
        cri: cri.clone(),
        client: fake_api(seen.clone()),
        data_dir: data.path().to_path_buf(),
        host_ip: "192.0.2.10".into(),
        node_name: "testnode".into(),
        cluster_dns: None,
        pod_starts: Arc::new(Semaphore::new(4)),
        pod_events: Some(events),
    });
    let mut p = pod();
    p.spec.as_mut().unwrap().containers.truncate(1);
    let (_tx, rx) = watch::channel(PodUpdate {
        pod: Arc::new(p),
        removed: false,
        eviction: None,
    });
    let worker = tokio::spawn(run_pod_worker(ctx, rx));
    wait_for("app running", || {
        last_state(&seen, "app").is_some_and(|s| s.0 == "running")
    })
    .await;

    // Settled (the status write checked, the relist's own wake-up for the
    // start consumed), the worker sleeps: polling would list the pod twice
    // a second, the relist lists the node instead.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = pod_lists(&cri);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let polled = pod_lists(&cri) - before;
    assert!(polled <= 2, "{polled} per-pod lists in 3 s of a steady pod");
    assert!(
        cri.list_calls()
            .iter()
            .any(|c| c == "ListContainers io.skiff.node=testnode"),
        "the relist lists the node's containers"
    );

    // An exit is seen by the next relist (1 s), which wakes the worker; its
    // resync (10 s after its last sync, 4 s or more before the exit) is
    // still 5 s or more away.
    let first = cri.container_ids()[0].clone();
    let exited = std::time::Instant::now();
    cri.exit_container(&first, 1);
    wait_for("app restarted", || cri.container_ids().len() == 2).await;
    // Under the 5 s until that resync, with room for a loaded machine.
    assert!(
        exited.elapsed() < Duration::from_millis(4500),
        "restarted {:?} after the exit: the relist should have woken the worker",
        exited.elapsed()
    );
    worker.abort();
    relist.abort();
}
