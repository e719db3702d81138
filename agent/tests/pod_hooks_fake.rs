//! Lifecycle hooks on the fake CRI: a failing postStart kills the
//! container (`PostStartHookError`); preStop runs before the runtime's stop
//! on deletion.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};
use skiff_agent::cri::fake::FakeRuntime;
use skiff_agent::pod::worker::{run_pod_worker, PodUpdate, WorkerContext};
use tokio::sync::watch;

type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

fn fake_api(seen: Seen) -> kube::Client {
    let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let seen = seen.clone();
        async move {
            let method = req.method().to_string();
            let path = req.uri().to_string();
            let body = req.into_body().collect().await?.to_bytes();
            let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
            seen.lock().unwrap().push((method, path, json));
            let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}});
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                http::Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(pod.to_string())))
                    .unwrap(),
            )
        }
    });
    kube::Client::new(svc, "default")
}

fn pod() -> Pod {
    let hook = |cmd: &str| json!({"exec": {"command": [cmd]}});
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "uid-h"},
        "spec": {"containers": [
            {"name": "bad", "image": "skiff.local/busybox:1",
             "lifecycle": {"postStart": hook("fail-hook")}},
            {"name": "good", "image": "skiff.local/busybox:1",
             "lifecycle": {"postStart": hook("post-hook"), "preStop": hook("stop-hook")}},
        ]},
    }))
    .unwrap()
}

fn waiting_reason(seen: &Seen, name: &str) -> Option<String> {
    let seen = seen.lock().unwrap();
    let (_, _, b) = seen
        .iter()
        .rev()
        .find(|(m, p, _)| m == "PATCH" && p.contains("/status"))?;
    let c = b["status"]["containerStatuses"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)?
        .clone();
    let last = c["lastState"]["terminated"]["message"]
        .as_str()
        .unwrap_or_default();
    Some(format!(
        "{} {last}",
        c["state"]["waiting"]["reason"].as_str()?
    ))
}

/// After a failed postStart the container backs off; its last attempt
/// carries the hook's failure.
fn hook_failed(s: Option<String>) -> bool {
    s.is_some_and(|s| {
        (s.starts_with("PostStartHookError") || s.starts_with("CrashLoopBackOff"))
            && s.contains(" PostStartHookError: ")
    })
}

#[tokio::test]
async fn post_start_failure_kills_and_pre_stop_runs_before_stop() {
    let seen: Seen = Arc::default();
    let cri = Arc::new(FakeRuntime::with_images(&["skiff.local/busybox:1"]));
    cri.set_exec_exit_code("bad", 1);
    let data = tempfile::tempdir().unwrap();
    let ctx = Arc::new(WorkerContext {
        cri: cri.clone(),
        client: fake_api(seen.clone()),
        data_dir: data.path().to_path_buf(),
        host_ip: "192.0.2.10".into(),
        node_name: "testnode".into(),
        cluster_dns: None,
        pod_starts: Arc::new(tokio::sync::Semaphore::new(4)),
        pod_events: None,
    });
    let p = pod();
    let (tx, rx) = watch::channel(PodUpdate {
        pod: Arc::new(p.clone()),
        removed: false,
        eviction: None,
    });
    let worker = tokio::spawn(run_pod_worker(ctx, rx));
    for _ in 0..100 {
        if hook_failed(waiting_reason(&seen, "bad")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reason = waiting_reason(&seen, "bad");
    assert!(hook_failed(reason.clone()), "{reason:?}");
    let calls = cri.calls();
    let hook = calls.iter().position(|c| c.ends_with("fail-hook")).unwrap();
    assert!(
        calls[hook..].iter().any(|c| c.starts_with("StopContainer")),
        "{calls:?}"
    );

    let mut deleting = p.clone();
    deleting.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    deleting.metadata.deletion_grace_period_seconds = Some(10);
    tx.send_replace(PodUpdate {
        pod: Arc::new(deleting),
        removed: false,
        eviction: None,
    });
    tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .unwrap()
        .unwrap();
    let calls = cri.calls();
    let pre_stop = calls
        .iter()
        .rposition(|c| c.ends_with("stop-hook"))
        .unwrap();
    let last_stop = calls
        .iter()
        .rposition(|c| c.starts_with("StopContainer"))
        .unwrap();
    assert!(pre_stop < last_stop, "{calls:?}");
    assert_eq!(cri.sandbox_count(), 0);
}
