//! The pod worker on a real containerd (private instance, real runc and CNI
//! bridge) with a fake API server: a pod runs, its status is right, its logs
//! are served over the agent's HTTPS endpoint, a crashing container backs
//! off with its real exit code, and graceful deletion leaves nothing in
//! containerd.
//!
//! Needs root, containerd, runc, containernetworking-plugins and
//! busybox-static; skips otherwise. Everything is removed by `Cleanup`, also
//! when an assertion fails.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::Value;
use skiff_agent::cni::{self, CniNetwork};
use skiff_agent::containerd::{self, ContainerdOptions, ManagedContainerd};
use skiff_agent::cri::{RemoteRuntime, RuntimeService};
use skiff_agent::images::{self, BUSYBOX_IMAGE, PAUSE_IMAGE};
use skiff_agent::pod::worker::{run_pod_worker, PodUpdate, WorkerContext};
use skiff_agent::server::{AgentServer, ServerState};
use tokio::sync::watch;

const TOKEN: &str =
    "SK10aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa::node:test";

struct Cleanup {
    dir: Option<tempfile::TempDir>,
    state_dir: PathBuf,
    bridge: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        containerd::force_cleanup(&self.state_dir);
        cni::remove_bridge(&self.bridge);
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

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
            let pod =
                serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}});
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

fn last_status(seen: &Seen) -> Value {
    let seen = seen.lock().unwrap();
    seen.iter()
        .rev()
        .find(|(m, p, _)| m == "PATCH" && p.contains("/status"))
        .map(|(_, _, b)| b["status"].clone())
        .unwrap_or(Value::Null)
}

fn container<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["containerStatuses"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

async fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    for _ in 0..secs * 10 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// GET over HTTPS; returns status and, unless `max_body` cuts it, the body.
async fn https_get(port: u16, path: &str, token: Option<&str>, max_body: usize) -> (u16, String) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let mut req = http::Request::get(path).header("host", "localhost");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = sender
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while out.len() < max_body {
        match tokio::time::timeout(Duration::from_secs(10), body.frame()).await {
            Ok(Some(Ok(f))) => {
                if let Ok(d) = f.into_data() {
                    out.extend_from_slice(&d);
                }
            }
            _ => break,
        }
    }
    // Dropping the body and the connection is "the client goes away".
    drop(body);
    conn.abort();
    (status, String::from_utf8_lossy(&out).into_owned())
}

fn pod() -> Pod {
    let mut p = Pod::default();
    p.metadata.name = Some("web".into());
    p.metadata.namespace = Some("default".into());
    p.metadata.uid = Some(format!("uid-{}", std::process::id()));
    let c = |name: &str, script: &str| Container {
        name: name.into(),
        image: Some(BUSYBOX_IMAGE.into()),
        command: Some(vec!["sh".into(), "-c".into()]),
        args: Some(vec![script.into()]),
        ..Default::default()
    };
    p.spec = Some(PodSpec {
        containers: vec![
            c("app", "echo hello-$GREETING; i=0; while true; do echo line$i; i=$((i+1)); sleep 0.2; done"),
            c("crash", "echo bye; exit 3"),
        ],
        ..Default::default()
    });
    if let Some(spec) = p.spec.as_mut() {
        spec.containers[0].env = Some(vec![k8s_openapi::api::core::v1::EnvVar {
            name: "GREETING".into(),
            value: Some("skiff".into()),
            ..Default::default()
        }]);
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_on_real_containerd() {
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
        .prefix("skw")
        .tempdir_in("/tmp")
        .unwrap();
    let root = dir.path().to_path_buf();
    let state_dir = root.join("containerd");
    let bridge = format!("skw{:06x}", suffix & 0xff_ffff);
    let subnet = 20 + (suffix >> 8) % 200;
    let _cleanup = Cleanup {
        dir: Some(dir),
        state_dir: state_dir.clone(),
        bridge: bridge.clone(),
    };
    let conf_dir = root.join("net.d");
    cni::write_config(
        &conf_dir,
        &CniNetwork {
            name: "skiff-wtest".into(),
            bridge,
            pod_cidr: format!("10.198.{subnet}.0/24"),
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
    images::ensure_builtin_images(&socket, &root.join("work"))
        .await
        .unwrap();
    let cri = Arc::new(RemoteRuntime::connect(&socket).await.unwrap());
    let v = cri.version().await.unwrap();
    eprintln!("runtime: {} {}", v.runtime_name, v.runtime_version);

    let seen: Seen = Arc::default();
    let data = root.join("agent");
    let ctx = Arc::new(WorkerContext {
        cri: cri.clone(),
        client: fake_api(seen.clone()),
        data_dir: data.clone(),
        host_ip: "127.0.0.1".into(),
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

    wait_for("app running", 30, || {
        container(&last_status(&seen), "app")["state"]["running"].is_object()
    })
    .await;
    let st = last_status(&seen);
    eprintln!("status: {}", serde_json::to_string_pretty(&st).unwrap());
    let ip = st["podIP"].as_str().unwrap_or_default().to_string();
    assert!(ip.starts_with(&format!("10.198.{subnet}.")), "podIP {ip}");
    assert!(container(&st, "app")["containerID"]
        .as_str()
        .unwrap()
        .starts_with("containerd://"));
    assert!(container(&st, "app")["imageID"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));

    // The crashing container: real exit code 3, then CrashLoopBackOff.
    wait_for("crash in CrashLoopBackOff", 40, || {
        let st = last_status(&seen);
        let c = container(&st, "crash");
        c["state"]["waiting"]["reason"] == "CrashLoopBackOff"
            && c["lastState"]["terminated"]["exitCode"] == 3
    })
    .await;
    let st = last_status(&seen);
    eprintln!("crash status: {}", container(&st, "crash"));
    assert_eq!(st["phase"], "Running");

    // Logs over the agent's HTTPS endpoint.
    let server = AgentServer::start(
        "127.0.0.1:0".parse().unwrap(),
        skiff_agent::tls::server_config(
            &data.join("pki"),
            "testnode",
            "127.0.0.1".parse().unwrap(),
        )
        .unwrap(),
        Arc::new(ServerState {
            cri: cri.clone(),
            token: TOKEN.into(),
            data_dir: data.clone(),
            node_name: "testnode".into(),
            stats: Default::default(),
        }),
    )
    .await
    .unwrap();
    let port = server.local_addr.port();
    assert_eq!(
        https_get(port, "/healthz", None, 100).await,
        (200, "ok".into())
    );
    let (code, _) = https_get(port, "/containerLogs/default/web/app", None, 100).await;
    assert_eq!(code, 401);
    let (code, _) = https_get(
        port,
        "/containerLogs/default/web/app",
        Some("SK10wrong"),
        100,
    )
    .await;
    assert_eq!(code, 401);
    let (code, body) =
        https_get(port, "/containerLogs/default/web/app", Some(TOKEN), 1 << 20).await;
    assert_eq!(code, 200);
    assert!(body.starts_with("hello-skiff\nline0\n"), "{body:?}");
    let (_, body) = https_get(
        port,
        "/containerLogs/default/web/app?tailLines=1&timestamps=true",
        Some(TOKEN),
        1 << 20,
    )
    .await;
    assert_eq!(body.lines().count(), 1, "{body:?}");
    assert!(body.contains("Z line"), "{body:?}");
    let (_, body) = https_get(
        port,
        "/containerLogs/default/web/crash?previous=false",
        Some(TOKEN),
        1 << 20,
    )
    .await;
    assert_eq!(body, "bye\n");
    // follow: new lines keep coming after what was there.
    let (_, before) = https_get(port, "/containerLogs/default/web/app", Some(TOKEN), 1 << 20).await;
    let (_, followed) = https_get(
        port,
        "/containerLogs/default/web/app?follow=true",
        Some(TOKEN),
        before.len() + 40,
    )
    .await;
    assert!(
        followed.len() >= before.len() + 40,
        "follow stalled: {} vs {}",
        followed.len(),
        before.len()
    );
    let (code, _) = https_get(port, "/containerLogs/default/web/nope", Some(TOKEN), 100).await;
    assert_eq!(code, 404);

    // Graceful deletion: `sh` as PID 1 ignores SIGTERM, so the grace period
    // (1 s) runs out and the runtime kills it.
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
    assert!(seen
        .lock()
        .unwrap()
        .iter()
        .any(|(m, _, b)| m == "DELETE" && b["gracePeriodSeconds"] == 0));

    server.stop();
    skiff_agent::cleanup_all_pods(&socket).await.unwrap();
    managed.stop().await;
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(bin))
        .find(|p| p.is_file())
}
