//! `kubectl logs` through the server to a stand-in agent: a loopback HTTPS
//! server with a self-signed certificate that answers `/containerLogs`.

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::with_server;
use http_body_util::Full;
use hyper::{body::Incoming, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

/// Starts the stand-in agent; returns its port and the requests it saw.
async fn fake_agent() -> (
    u16,
    Arc<Mutex<Vec<(String, String)>>>,
    tokio::task::JoinHandle<()>,
) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let certs = vec![cert.der().clone()];
    let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let Ok(tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let seen = seen2.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let auth = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let uri = req.uri().to_string();
                        seen.lock().unwrap().push((uri.clone(), auth));
                        let resp = if uri.starts_with("/containerLogs/default/l/app") {
                            Response::new(Full::new(Bytes::from("hello\nworld\n")))
                        } else {
                            let mut r = Response::new(Full::new(Bytes::from("container \"x\" in pod \"l\" is waiting to start: ContainerCreating")));
                            *r.status_mut() = hyper::StatusCode::BAD_REQUEST;
                            r
                        };
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (port, seen, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_is_proxied_to_the_agent() {
    let (port, seen, agent) = fake_agent().await;
    with_server(async |h| {
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
            "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}});
        let (code, s) = h.call("POST", "/api/v1/nodes", Some(node)).await;
        assert_eq!(code, 201, "{s}");
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "l"},
            "spec": {"containers": [{"name": "app", "image": "busybox"}], "initContainers": [{"name": "init", "image": "busybox"}]}});
        let (code, s) = h.call("POST", "/api/v1/namespaces/default/pods", Some(pod)).await;
        assert_eq!(code, 201, "{s}");

        // Not bound yet: 400.
        let out = h.kubectl(&["logs", "l"], None).await;
        assert!(!out.ok && out.stderr.contains("does not have a host assigned"), "{out:?}");

        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "l"}, "target": {"kind": "Node", "name": "n1"}});
        let (code, _) = h.call("POST", "/api/v1/namespaces/default/pods/l/binding", Some(binding)).await;
        assert_eq!(code, 201);

        let logs = h.kubectl_ok(&["logs", "l", "--tail=5"], None).await;
        assert_eq!(logs, "hello\nworld\n");
        let (uri, auth) = seen.lock().unwrap().last().cloned().unwrap();
        assert_eq!(uri, "/containerLogs/default/l/app?tailLines=5");
        assert_eq!(auth, format!("Bearer {}", h.server.as_ref().unwrap().node_token()));

        // An agent error passes through with its code and text.
        let (code, s) = h.call("GET", "/api/v1/namespaces/default/pods/l/log?container=init", None).await;
        assert_eq!(code, 400, "{s}");
        assert_eq!(s["reason"], "BadRequest");
        assert!(s["message"].as_str().unwrap().contains("is waiting to start"), "{s}");
        let (code, s) = h.call("GET", "/api/v1/namespaces/default/pods/l/log?container=nope", None).await;
        assert_eq!(code, 400);
        assert_eq!(s["message"], "container nope is not valid for pod l");
    })
    .await;
    agent.abort();
}
