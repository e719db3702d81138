//! The real kubectl against Skiff's discovery, OpenAPI v3 and Table bodies,
//! served by a throwaway loopback HTTP server (no store, no auth): checks
//! that kubectl 1.32 finds server-side field validation in the OpenAPI
//! document (it then sends `fieldValidation=Strict` instead of fetching
//! `/openapi/v2`), that `kubectl explain` renders from it, and that
//! `kubectl get` prints Skiff's tables. Skipped when kubectl is not on PATH.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, Request, Response};
use serde_json::{json, Value};
use skiff_apiserver::{discovery, openapi, resources, table};
use std::sync::{Arc, Mutex};

type Log = Arc<Mutex<Vec<String>>>;

fn reply(status: u16, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn json_reply(v: &Value) -> Response<Full<Bytes>> {
    reply(200, serde_json::to_vec(v).unwrap())
}

fn sample_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], "nodeName": "n1"},
        "status": {"phase": "Pending", "containerStatuses": [
            {"name": "c", "ready": false, "restartCount": 0, "image": "busybox", "imageID": "", "state": {"waiting": {"reason": "ContainerCreating"}}}
        ]}
    })
}

async fn handle(
    req: Request<Incoming>,
    log: Log,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let accept = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    log.lock().unwrap().push(format!("{method} {path}?{query}"));
    let resp = match (method.as_str(), path.as_str()) {
        ("GET", "/api") => json_reply(&discovery::core_api_versions("127.0.0.1")),
        ("GET", "/apis") => json_reply(&discovery::api_group_list()),
        ("GET", "/version") => json_reply(&json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0-skiff"})),
        ("GET", "/openapi/v3") => json_reply(&openapi::v3_index()),
        ("GET", p) if p.starts_with("/openapi/v3/") => match openapi::v3_document(&p["/openapi/v3/".len()..]) {
            Some(doc) => reply(200, doc.as_ref().clone()),
            None => reply(404, b"{}".to_vec()),
        },
        ("GET", "/api/v1/namespaces/default/pods") if accept.contains("as=Table") => {
            let pods = resources::find("", "v1", "pods").unwrap();
            let t = table::to_table(pods, &[sample_pod()], json!({"resourceVersion": "1"}), table::IncludeObject::Metadata, chrono::Utc::now());
            json_reply(&t)
        }
        ("GET", "/api/v1/nodes") if accept.contains("as=Table") => {
            let nodes = resources::find("", "v1", "nodes").unwrap();
            let node = json!({
                "metadata": {"name": "n1", "creationTimestamp": "2024-01-01T00:00:00Z", "labels": {"node-role.kubernetes.io/control-plane": ""}},
                "spec": {"unschedulable": true},
                "status": {"conditions": [{"type": "Ready", "status": "True"}], "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                           "nodeInfo": {"kubeletVersion": "v1.32.0-skiff", "osImage": "Debian", "kernelVersion": "6.1.0", "containerRuntimeVersion": "containerd://1.6.20"}}
            });
            json_reply(&table::to_table(nodes, &[node], json!({}), table::IncludeObject::Metadata, chrono::Utc::now()))
        }
        ("GET", "/api/v1/namespaces/default/pods/web") => {
            reply(404, serde_json::to_vec(&json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "pods \"web\" not found", "details": {"name": "web", "kind": "pods"}})).unwrap())
        }
        ("GET", p) => {
            let parts: Vec<&str> = p.trim_start_matches('/').split('/').collect();
            let found = match parts.as_slice() {
                ["api", v] => discovery::api_resource_list("", v),
                ["apis", g] => discovery::api_group(g),
                ["apis", g, v] => discovery::api_resource_list(g, v),
                _ => None,
            };
            match found {
                Some(v) => json_reply(&v),
                None => reply(404, b"{}".to_vec()),
            }
        }
        // Writes echo the object back, as a create would.
        _ => reply(201, body.to_vec()),
    };
    Ok(resp)
}

fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> (String, String) {
    let out = std::process::Command::new("kubectl")
        .args(args)
        .arg("--request-timeout=20s")
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", kubeconfig.parent().unwrap())
        .output()
        .expect("run kubectl");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_uses_schema_documents() {
    if std::process::Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        eprintln!("kubectl not found; skipping");
        return;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    let server_log = log.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let log = server_log.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle(req, log.clone()));
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
            });
        }
    });

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!("apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"http://{addr}\"}}}}]\nusers: [{{name: u, user: {{}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u, namespace: default}}}}]\ncurrent-context: c\n"),
    )
    .unwrap();
    let manifest = dir.path().join("pod.yaml");
    std::fs::write(&manifest, "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: c, image: busybox}]\n").unwrap();

    let kc = kubeconfig.clone();
    let m = manifest.clone();
    let results = tokio::task::spawn_blocking(move || {
        let m = m.to_str().unwrap().to_string();
        (
            kubectl(&kc, &["create", "-f", &m]),
            kubectl(&kc, &["apply", "-f", &m]),
            kubectl(&kc, &["explain", "pod.spec.containers"]),
            kubectl(&kc, &["explain", "leases"]),
            kubectl(&kc, &["get", "pods", "-o", "wide"]),
            kubectl(&kc, &["get", "nodes"]),
        )
    })
    .await
    .unwrap();
    server.abort();
    let (create, apply, explain, explain_lease, get, nodes) = results;
    let log = log.lock().unwrap().clone();

    assert!(
        create.0.contains("pod/web created"),
        "create: {create:?}\n{log:#?}"
    );
    assert!(apply.0.contains("pod/web created"), "apply: {apply:?}");
    let writes: Vec<&String> = log.iter().filter(|l| l.starts_with("POST")).collect();
    assert_eq!(writes.len(), 2, "{log:#?}");
    assert!(
        writes.iter().all(|w| w.contains("fieldValidation=Strict")),
        "{writes:?}"
    );
    assert!(
        !log.iter().any(|l| l.contains("/openapi/v2")),
        "kubectl fell back to v2: {log:#?}"
    );

    assert!(explain.0.contains("KIND:       Pod"), "{explain:?}");
    assert!(
        explain.0.contains("FIELD: containers <[]Container>"),
        "{explain:?}"
    );
    assert!(explain.0.contains("image\t<string>"), "{explain:?}");
    assert!(
        explain_lease.0.contains("GROUP:      coordination.k8s.io"),
        "{explain_lease:?}"
    );

    let header = get.0.lines().next().unwrap_or("");
    let cols: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(
        cols,
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED",
            "NODE",
            "READINESS",
            "GATES"
        ],
        "{get:?}"
    );
    let row: Vec<&str> = get
        .0
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        &row[..4],
        ["web", "0/1", "ContainerCreating", "0"],
        "{get:?}"
    );
    assert_eq!(row[6], "n1");

    let nodes: Vec<Vec<&str>> = nodes
        .0
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        nodes.first().map(Vec::as_slice),
        Some(&["NAME", "STATUS", "ROLES", "AGE", "VERSION"][..]),
        "{nodes:?}"
    );
    let row = &nodes[1];
    assert_eq!(
        &row[..3],
        ["n1", "Ready,SchedulingDisabled", "control-plane"]
    );
    assert_eq!(row[4], "v1.32.0-skiff");
}
