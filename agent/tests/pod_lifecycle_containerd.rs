//! The deeper pod lifecycle on a real containerd (private instance, real
//! runc and CNI bridge) with a fake API server that serves one ConfigMap
//! and one Secret: an init container fills an emptyDir that the main
//! container serves over HTTP; readiness waits for a file; a failing
//! liveness probe restarts a container; a 16Mi memory limit gets a
//! container OOM-killed; env comes from the ConfigMap, the Secret, the
//! downward API and `$(VAR)` expansion; an update of the ConfigMap reaches
//! the running container's volume; postStart and preStop hooks run; a
//! securityContext (UID, read-only root) applies; `runAsNonRoot` on a root
//! image and `imagePullPolicy: Never` on a missing image give kubelet's
//! reasons; a `medium: Memory` emptyDir is a tmpfs; deletion leaves
//! nothing behind.
//!
//! Needs root, containerd, runc, containernetworking-plugins and
//! busybox-static; skips otherwise. Everything is removed by `Cleanup`,
//! also when an assertion fails.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};
use skiff_agent::cni::{self, CniNetwork};
use skiff_agent::containerd::{self, ContainerdOptions, ManagedContainerd};
use skiff_agent::cri::{RemoteRuntime, RuntimeService};
use skiff_agent::images::{self, BUSYBOX_IMAGE, PAUSE_IMAGE};
use skiff_agent::pod::worker::{run_pod_worker, PodUpdate, WorkerContext};
use tokio::sync::watch;

struct Cleanup {
    dir: Option<tempfile::TempDir>,
    state_dir: PathBuf,
    bridge: String,
    socket: Option<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(socket) = self.socket.take() {
            // Best effort: stop pods before containerd goes (tests may fail
            // midway). A thread of its own: we may be inside the test's runtime.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    let _ = rt.block_on(skiff_agent::cleanup_all_pods(&socket));
                }
            })
            .join();
        }
        containerd::force_cleanup(&self.state_dir);
        cni::remove_bridge(&self.bridge);
        if let Some(dir) = self.dir.take() {
            // Pod volumes (a tmpfs among them) of a test that failed midway.
            let volumes = dir.path().join("agent/pod-volumes");
            for e in std::fs::read_dir(volumes).into_iter().flatten().flatten() {
                let _ = skiff_agent::pod::volumes::teardown(&e.path());
            }
            let _ = dir.close();
        }
    }
}

type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;
type Objects = Arc<Mutex<BTreeMap<String, Value>>>;

/// A fake API server: GETs of objects in `objects` (by path), 404 Status
/// for other GETs, and 200 with a pod for everything else.
fn fake_api(seen: Seen, objects: Objects) -> kube::Client {
    let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let seen = seen.clone();
        let objects = objects.clone();
        async move {
            let method = req.method().to_string();
            let path = req.uri().path().to_string();
            let body = req.into_body().collect().await?.to_bytes();
            let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
            seen.lock()
                .unwrap()
                .push((method.clone(), path.clone(), json));
            let (code, out) = if method == "GET" {
                match objects.lock().unwrap().get(&path) {
                    Some(o) => (200, o.clone()),
                    None => (
                        404,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "reason": "NotFound", "code": 404, "message": "not found"}),
                    ),
                }
            } else {
                (
                    200,
                    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "life"}}),
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

fn config_map(greeting: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "cfg", "namespace": "default"},
           "data": {"greeting": greeting}})
}

fn last_status(seen: &Seen) -> Value {
    let seen = seen.lock().unwrap();
    seen.iter()
        .rev()
        .find(|(m, p, _)| m == "PATCH" && p.ends_with("/status"))
        .map(|(_, _, b)| b["status"].clone())
        .unwrap_or(Value::Null)
}

fn container<'a>(status: &'a Value, name: &str) -> &'a Value {
    ["containerStatuses", "initContainerStatuses"]
        .iter()
        .filter_map(|k| status[*k].as_array())
        .flatten()
        .find(|c| c["name"] == name)
        .unwrap_or(&Value::Null)
}

async fn wait_for(what: &str, secs: u64, seen: &Seen, mut f: impl FnMut(&Value) -> bool) {
    for _ in 0..secs * 10 {
        if f(&last_status(seen)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "timed out waiting for {what}; last status: {}",
        serde_json::to_string_pretty(&last_status(seen)).unwrap()
    );
}

fn pod(uid: &str, host_dir: &str) -> Pod {
    let sh = |script: &str| json!(["sh", "-c", script]);
    serde_json::from_value(json!({
        "metadata": {"name": "life", "namespace": "default", "uid": uid,
                     "labels": {"app": "life"}},
        "spec": {
            "nodeName": "testnode",
            "terminationGracePeriodSeconds": 1,
            "volumes": [
                {"name": "shared", "emptyDir": {}},
                {"name": "cfg", "configMap": {"name": "cfg"}},
                {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                {"name": "host", "hostPath": {"path": host_dir, "type": "DirectoryOrCreate"}},
            ],
            "initContainers": [{
                "name": "init", "image": BUSYBOX_IMAGE,
                "command": sh("echo from-init > /shared/index.html"),
                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
            }],
            "containers": [
                {
                    "name": "web", "image": BUSYBOX_IMAGE, "imagePullPolicy": "Never",
                    "command": ["httpd", "-f", "-p", "8080", "-h", "/shared"],
                    "volumeMounts": [
                        {"name": "shared", "mountPath": "/shared"},
                        {"name": "cfg", "mountPath": "/etc/cfg"},
                        {"name": "host", "mountPath": "/host"},
                    ],
                    "lifecycle": {
                        "postStart": {"exec": {"command": ["sh", "-c", "echo started > /host/poststart"]}},
                        "preStop": {"exec": {"command": ["sh", "-c", "echo bye > /host/prestop"]}},
                    },
                    "readinessProbe": {"exec": {"command": ["test", "-f", "/shared/ready"]},
                                       "periodSeconds": 1},
                    "livenessProbe": {"httpGet": {"path": "/index.html", "port": 8080},
                                      "periodSeconds": 2},
                },
                {
                    "name": "env", "image": BUSYBOX_IMAGE,
                    "command": sh("echo \"$CM $SEC $POD_NAME $NODE $POD_IP $EXPANDED $CFG_greeting $(CM)\" > /shared/env.txt; exec sleep 3600"),
                    "env": [
                        {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
                        {"name": "SEC", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "EXPANDED", "value": "x-$(CM)-$(UNKNOWN)"},
                    ],
                    "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
                    "volumeMounts": [
                        {"name": "shared", "mountPath": "/shared"},
                        {"name": "mem", "mountPath": "/mem"},
                    ],
                },
                {
                    "name": "sec", "image": BUSYBOX_IMAGE,
                    "command": sh("id -u > /shared/sec.txt; if touch /rootfs-probe 2>/dev/null; then echo rw; else echo ro; fi >> /shared/sec.txt; exec sleep 3600"),
                    "securityContext": {"runAsUser": 1000, "readOnlyRootFilesystem": true,
                                        "allowPrivilegeEscalation": false,
                                        "capabilities": {"drop": ["ALL"]}},
                    "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
                },
                {
                    "name": "nonroot", "image": BUSYBOX_IMAGE, "command": ["sleep", "3600"],
                    "securityContext": {"runAsNonRoot": true},
                },
                {
                    "name": "never", "image": "skiff.local/absent:1", "imagePullPolicy": "Never",
                },
                {
                    "name": "live", "image": BUSYBOX_IMAGE,
                    "command": ["sleep", "3600"],
                    "livenessProbe": {"exec": {"command": ["false"]},
                                      "periodSeconds": 1, "failureThreshold": 1},
                },
                {
                    "name": "oom", "image": BUSYBOX_IMAGE,
                    "command": sh("head -c 100m /dev/zero | tail"),
                    "resources": {"limits": {"memory": "16Mi"}},
                },
            ],
        },
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_lifecycle_on_real_containerd() {
    if !nix::unistd::geteuid().is_root() || which("containerd").is_none() || which("runc").is_none()
    {
        eprintln!("skipping: needs root, containerd and runc");
        return;
    }
    let suffix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        ^ std::process::id();
    let dir = tempfile::Builder::new()
        .prefix("skl")
        .tempdir_in("/tmp")
        .unwrap();
    let root = dir.path().to_path_buf();
    let state_dir = root.join("containerd");
    let bridge = format!("skl{:06x}", suffix & 0xff_ffff);
    let subnet = 20 + (suffix >> 8) % 200;
    let mut cleanup = Cleanup {
        dir: Some(dir),
        state_dir: state_dir.clone(),
        bridge: bridge.clone(),
        socket: None,
    };
    let conf_dir = root.join("net.d");
    cni::write_config(
        &conf_dir,
        &CniNetwork {
            name: "skiff-ltest".into(),
            bridge,
            pod_cidr: format!("10.197.{subnet}.0/24"),
            ipam_data_dir: root.join("ipam"),
            mtu: None,
        },
    )
    .unwrap();
    let managed = ManagedContainerd::start(ContainerdOptions {
        state_dir: state_dir.clone(),
        sandbox_image: PAUSE_IMAGE.into(),
        cni_bin_dir: "/usr/lib/cni".into(),
        cni_conf_dir: conf_dir,
        log_level: "info".into(),
    })
    .await
    .unwrap();
    let socket = managed.socket().to_path_buf();
    cleanup.socket = Some(socket.clone());
    images::ensure_builtin_images(&socket, &root.join("work"))
        .await
        .unwrap();
    let cri = Arc::new(RemoteRuntime::connect(&socket).await.unwrap());

    let seen: Seen = Arc::default();
    let objects: Objects = Arc::default();
    objects.lock().unwrap().extend([
        (
            "/api/v1/namespaces/default/configmaps/cfg".to_string(),
            config_map("v1"),
        ),
        (
            "/api/v1/namespaces/default/secrets/sec".to_string(),
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "sec", "namespace": "default"},
                   "data": {"password": "czNjcjN0"}}),
        ),
    ]);
    let data = root.join("agent");
    let ctx = Arc::new(WorkerContext {
        cri: cri.clone(),
        client: fake_api(seen.clone(), objects.clone()),
        data_dir: data.clone(),
        host_ip: "127.0.0.1".into(),
        node_name: "testnode".into(),
        cluster_dns: None,
        pod_starts: Arc::new(tokio::sync::Semaphore::new(4)),
        pod_events: None,
    });
    let uid = format!("uid-life-{}", std::process::id());
    let host_dir = root.join("hostdir");
    let p = pod(&uid, &host_dir.display().to_string());
    let (tx, rx) = watch::channel(PodUpdate {
        pod: Arc::new(p.clone()),
        removed: false,
        eviction: None,
    });
    let worker = tokio::spawn(run_pod_worker(ctx, rx));

    // Init container ran to completion first; web serves what it wrote.
    wait_for("web running", 60, &seen, |st| {
        container(st, "web")["state"]["running"].is_object()
    })
    .await;
    let st = last_status(&seen);
    assert_eq!(
        container(&st, "init")["state"]["terminated"]["reason"],
        "Completed"
    );
    assert_eq!(st["qosClass"], "Burstable");
    let ip = st["podIP"].as_str().unwrap_or_default().to_string();
    assert!(ip.starts_with("10.197."), "podIP {ip}");
    let body = http_get(&ip, 8080, "/index.html").await;
    assert!(body.ends_with("from-init\n"), "{body:?}");
    // postStart ran (hostPath volume, created by DirectoryOrCreate).
    assert_eq!(
        std::fs::read_to_string(host_dir.join("poststart")).unwrap(),
        "started\n"
    );

    // Readiness: not ready until /shared/ready exists (written from the
    // host into the emptyDir, which all containers share).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(container(&last_status(&seen), "web")["ready"], false);
    let shared = data.join(format!(
        "pod-volumes/{uid}/volumes/kubernetes.io~empty-dir/shared"
    ));
    std::fs::write(shared.join("ready"), b"yes").unwrap();
    wait_for("web ready", 20, &seen, |st| {
        container(st, "web")["ready"] == true
    })
    .await;

    // Env from ConfigMap, Secret, downward API, envFrom, $(VAR) expansion.
    let env_txt = std::fs::read_to_string(shared.join("env.txt")).unwrap();
    assert_eq!(
        env_txt.trim(),
        format!("v1 s3cr3t life testnode {ip} x-v1-$(UNKNOWN) v1 v1")
    );

    // securityContext: UID 1000, read-only root file system.
    let sec = std::fs::read_to_string(shared.join("sec.txt")).unwrap();
    assert_eq!(sec, "1000\nro\n");
    // runAsNonRoot with a root image, and pull policy Never: kubelet's reasons.
    let st = last_status(&seen);
    let w = &container(&st, "nonroot")["state"]["waiting"];
    assert_eq!(w["reason"], "CreateContainerConfigError", "{w}");
    assert!(w["message"]
        .as_str()
        .unwrap_or_default()
        .starts_with("container has runAsNonRoot and image will run as root"));
    let w = &container(&st, "never")["state"]["waiting"];
    assert_eq!(w["reason"], "ErrImageNeverPull", "{w}");
    // medium: Memory is a tmpfs on the host.
    let mem_dir = data.join(format!(
        "pod-volumes/{uid}/volumes/kubernetes.io~empty-dir/mem"
    ));
    assert!(is_mounted(&mem_dir), "{} is not a mount", mem_dir.display());

    // Liveness failure restarts `live`, with the reason in lastState.
    wait_for("live restarted", 40, &seen, |st| {
        container(st, "live")["restartCount"].as_i64().unwrap_or(0) >= 1
    })
    .await;
    let st = last_status(&seen);
    let msg = container(&st, "live")["lastState"]["terminated"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(msg.contains("liveness"), "{}", container(&st, "live"));
    // web's own liveness (httpGet) keeps passing.
    assert_eq!(container(&st, "web")["restartCount"], 0);

    // OOM: the 16Mi limit kills the allocation; the runtime says OOMKilled.
    wait_for("oom OOMKilled", 40, &seen, |st| {
        let c = container(st, "oom");
        c["state"]["terminated"]["reason"] == "OOMKilled"
            || c["lastState"]["terminated"]["reason"] == "OOMKilled"
    })
    .await;

    // A ConfigMap update reaches the running container's volume.
    let cat = |cri: Arc<RemoteRuntime>, seen: Seen| async move {
        let id = container(&last_status(&seen), "web")["containerID"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("containerd://")
            .to_string();
        let r = cri
            .exec_sync(&id, vec!["cat".into(), "/etc/cfg/greeting".into()], 5)
            .await
            .unwrap();
        String::from_utf8_lossy(&r.stdout).into_owned()
    };
    assert_eq!(cat(cri.clone(), seen.clone()).await, "v1");
    objects.lock().unwrap().insert(
        "/api/v1/namespaces/default/configmaps/cfg".into(),
        config_map("v2"),
    );
    let mut updated = false;
    for _ in 0..40 {
        if cat(cri.clone(), seen.clone()).await == "v2" {
            updated = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(updated, "configMap update did not reach the container");

    // Graceful deletion: everything goes, including the pod's volumes.
    let mut deleting = p.clone();
    deleting.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    deleting.metadata.deletion_grace_period_seconds = Some(1);
    tx.send_replace(PodUpdate {
        pod: Arc::new(deleting),
        removed: false,
        eviction: None,
    });
    tokio::time::timeout(Duration::from_secs(30), worker)
        .await
        .unwrap()
        .unwrap();
    assert!(cri.list_containers(None).await.unwrap().is_empty());
    assert!(cri.list_pod_sandbox(None).await.unwrap().is_empty());
    assert!(!data.join(format!("pod-volumes/{uid}")).exists());
    assert!(!is_mounted(&mem_dir));
    // preStop ran before the stop.
    assert_eq!(
        std::fs::read_to_string(host_dir.join("prestop")).unwrap(),
        "bye\n"
    );

    skiff_agent::cleanup_all_pods(&socket).await.unwrap();
    cleanup.socket = None;
    managed.stop().await;
}

async fn http_get(ip: &str, port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect((ip, port)).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn is_mounted(dir: &std::path::Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = dir.display().to_string();
    mounts
        .lines()
        .any(|l| l.split_whitespace().nth(4) == Some(want.as_str()))
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(bin))
        .find(|p| p.is_file())
}
