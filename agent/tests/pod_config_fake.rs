//! Missing ConfigMaps on the fake CRI: an env reference gives the container
//! `CreateContainerConfigError` with Kubernetes' message; a volume keeps the
//! pod in `ContainerCreating` with kubelet's `MountVolume.SetUp failed`
//! message and no sandbox; once the object exists, the pod starts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};
use skiff_agent::cri::fake::FakeRuntime;
use skiff_agent::pod::worker::{run_pod_worker, PodUpdate, WorkerContext};
use tokio::sync::{watch, Semaphore};

type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

/// GET of a ConfigMap: 404 until `present` is set; anything else: 200.
fn fake_api(seen: Seen, present: Arc<Mutex<bool>>) -> kube::Client {
    let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let seen = seen.clone();
        let present = present.clone();
        async move {
            let method = req.method().to_string();
            let path = req.uri().path().to_string();
            let body = req.into_body().collect().await?.to_bytes();
            let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
            seen.lock()
                .unwrap()
                .push((method.clone(), path.clone(), json));
            let (code, out) = if method == "GET" && path.contains("/configmaps/") {
                if *present.lock().unwrap() {
                    (
                        200,
                        json!({"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": "cfg"}, "data": {"k": "v"}}),
                    )
                } else {
                    (
                        404,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                 "reason": "NotFound", "code": 404,
                                 "message": "configmaps \"cfg\" not found"}),
                    )
                }
            } else {
                (
                    200,
                    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}}),
                )
            };
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                http::Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(out.to_string())))
                    .unwrap(),
            )
        }
    });
    kube::Client::new(svc, "default")
}

fn waiting(seen: &Seen, name: &str) -> Option<(String, String)> {
    let seen = seen.lock().unwrap();
    let (_, _, b) = seen
        .iter()
        .rev()
        .find(|(m, p, _)| m == "PATCH" && p.ends_with("/status"))?;
    let c = b["status"]["containerStatuses"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)?
        .clone();
    let w = &c["state"]["waiting"];
    Some((
        w["reason"].as_str()?.to_string(),
        w["message"].as_str().unwrap_or_default().to_string(),
    ))
}

async fn run(pod: Value, data: &std::path::Path) -> (Seen, Arc<Mutex<bool>>, Arc<FakeRuntime>) {
    let seen: Seen = Arc::default();
    let present = Arc::new(Mutex::new(false));
    let cri = Arc::new(FakeRuntime::with_images(&["skiff.local/busybox:1"]));
    let ctx = Arc::new(WorkerContext {
        cri: cri.clone(),
        client: fake_api(seen.clone(), present.clone()),
        data_dir: data.to_path_buf(),
        host_ip: "192.0.2.10".into(),
        node_name: "testnode".into(),
        cluster_dns: None,
        pod_starts: Arc::new(Semaphore::new(4)),
        pod_events: None,
    });
    let pod: Pod = serde_json::from_value(pod).unwrap();
    let (tx, rx) = watch::channel(PodUpdate {
        pod: Arc::new(pod),
        removed: false,
        eviction: None,
    });
    tokio::spawn(async move {
        run_pod_worker(ctx, rx).await;
        drop(tx);
    });
    (seen, present, cri)
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..150 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn missing_config_map_in_env_is_a_create_container_config_error() {
    let data = tempfile::tempdir().unwrap();
    let (seen, present, cri) = run(
        json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "uid-env"},
            "spec": {"containers": [{"name": "app", "image": "skiff.local/busybox:1",
                "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}]}]},
        }),
        data.path(),
    )
    .await;
    wait_until("CreateContainerConfigError", || {
        waiting(&seen, "app").is_some_and(|(r, m)| {
            r == "CreateContainerConfigError" && m == "configmap \"cfg\" not found"
        })
    })
    .await;
    // The sandbox exists (as in kubelet), no container was created.
    assert_eq!(cri.sandbox_count(), 1);
    assert!(cri.container_ids().is_empty());
    // It appears: the container starts (after the cache's resync period).
    *present.lock().unwrap() = true;
    wait_until("container created", || !cri.container_ids().is_empty()).await;
    let id = cri.container_ids()[0].clone();
    let config = cri.created_config(&id).unwrap();
    assert!(config.envs.iter().any(|e| e.key == "X" && e.value == "v"));
}

#[tokio::test]
async fn missing_config_map_volume_keeps_the_pod_container_creating() {
    let data = tempfile::tempdir().unwrap();
    let (seen, _present, cri) = run(
        json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "uid-vol"},
            "spec": {
                "volumes": [{"name": "v", "configMap": {"name": "cfg"}}],
                "containers": [{"name": "app", "image": "skiff.local/busybox:1",
                                "volumeMounts": [{"name": "v", "mountPath": "/etc/v"}]}]},
        }),
        data.path(),
    )
    .await;
    wait_until("FailedMount message", || {
        waiting(&seen, "app").is_some_and(|(r, m)| {
            r == "ContainerCreating"
                && m == "MountVolume.SetUp failed for volume \"v\" : configmap \"cfg\" not found"
        })
    })
    .await;
    assert_eq!(cri.sandbox_count(), 0);
}
