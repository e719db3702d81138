//! `GET pods/<name>/log`: proxied to the node agent that runs the pod, the
//! way kube-apiserver proxies to the kubelet.
//!
//! The pod's `spec.nodeName` names a Node; its `status.addresses`
//! (InternalIP first, then ExternalIP, then Hostname) and
//! `status.daemonEndpoints.kubeletEndpoint.Port` (10250 if unset) give the
//! agent's address. The server asks
//! `GET https://IP:PORT/containerLogs/<ns>/<pod>/<container>?<options>`
//! with `Authorization: Bearer <node token>` and streams the body back as
//! `text/plain`. Agent errors pass through with the agent's code and text.
//!
//! Caveat (as kube-apiserver without `--kubelet-certificate-authority`):
//! the agent's self-signed serving certificate is not verified. The
//! connection is encrypted but not authenticated.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::dispatch::ApiState;
use crate::error::ApiError;
use crate::request::RequestContext;
use crate::resources::find;
use crate::response::{self, Body};

/// The kubelet's default port, used when a Node does not say.
pub const DEFAULT_KUBELET_PORT: u64 = 10250;

/// How long connecting to an agent may take.
const AGENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes of an agent's error body passed on.
const MAX_AGENT_ERROR_BYTES: usize = 64 * 1024;

/// Log options passed through to the agent (kubelet's `PodLogOptions`).
const PASSED_OPTIONS: &[&str] = &[
    "follow",
    "tailLines",
    "timestamps",
    "previous",
    "sinceSeconds",
    "sinceTime",
    "limitBytes",
];

/// Picks the container: the one asked for, or the only one (Kubernetes'
/// `validateContainer` messages).
pub fn choose_container(
    pod: &Value,
    pod_name: &str,
    asked: Option<&str>,
) -> Result<String, ApiError> {
    let names = |f: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{f}"))
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let containers = names("containers");
    match asked.filter(|c| !c.is_empty()) {
        Some(c) => {
            let all = [
                containers.clone(),
                names("initContainers"),
                names("ephemeralContainers"),
            ]
            .concat();
            if all.iter().any(|n| n == c) {
                Ok(c.to_string())
            } else {
                Err(ApiError::BadRequest(format!(
                    "container {c} is not valid for pod {pod_name}"
                )))
            }
        }
        None => match containers.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(ApiError::BadRequest(format!(
                "pod {pod_name} has no containers"
            ))),
            many => Err(ApiError::BadRequest(format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                many.join(" ")
            ))),
        },
    }
}

/// The agent's `host:port` from a Node object.
pub fn agent_address(node: &Value) -> Option<(String, u64)> {
    let addrs = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)?;
    let pick = |ty: &str| {
        addrs
            .iter()
            .find(|a| a.get("type").and_then(Value::as_str) == Some(ty))
            .and_then(|a| a.get("address").and_then(Value::as_str))
            .filter(|a| !a.is_empty())
    };
    let host = pick("InternalIP")
        .or_else(|| pick("ExternalIP"))
        .or_else(|| pick("Hostname"))?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Some((host.to_string(), port))
}

/// Where a pod's agent listens: the pod (as stored) and the agent's
/// `host` and `port`, from the pod's node.
pub(crate) async fn locate(
    state: &ApiState,
    ns: &str,
    name: &str,
) -> Result<(Value, String, u64), ApiError> {
    let pods = find("", "v1", "pods").ok_or(ApiError::PathNotFound)?;
    let nodes = find("", "v1", "nodes").ok_or(ApiError::PathNotFound)?;
    let pod = state.registry.get_required(pods, Some(ns), name).await?.obj;
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if node_name.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let node = state
        .registry
        .get_required(nodes, None, &node_name)
        .await?
        .obj;
    let (host, port) = agent_address(&node).ok_or_else(|| {
        ApiError::Internal(format!(
            "node {node_name} has no InternalIP, ExternalIP or Hostname address"
        ))
    })?;
    Ok((pod, host, port))
}

/// Serves `GET namespaces/<ns>/pods/<name>/log`.
pub async fn serve(
    ctx: &mut RequestContext,
    ns: &str,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let (pod, host, port) = locate(&ctx.state, ns, name).await?;
    let container = choose_container(&pod, name, ctx.query.get("container"))?;

    let mut query = Vec::new();
    for key in PASSED_OPTIONS {
        if let Some(v) = ctx.query.get(key) {
            if matches!(*key, "tailLines" | "sinceSeconds" | "limitBytes") {
                ctx.query.int(key)?;
            }
            query.push(format!("{key}={}", encode_component(v)));
        }
    }
    let mut path = format!("/containerLogs/{ns}/{name}/{container}");
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query.join("&"));
    }
    let token = ctx.state.node_token.clone();
    let rx = fetch(&host, port, &path, &token).await?;
    Ok(response::stream(200, "text/plain", rx))
}

/// Serves `GET /api/v1/nodes/<node>/proxy/<path>` (kubectl get --raw
/// /api/v1/nodes/N/proxy/metrics): the agent's answer, streamed.
pub async fn proxy_to_node(
    state: &ApiState,
    node: &str,
    path: &str,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let nodes = find("", "v1", "nodes").ok_or(ApiError::PathNotFound)?;
    let stored = state
        .registry
        .get(nodes, None, node)
        .await?
        .ok_or_else(|| ApiError::NotFound(crate::error::Target::new(nodes, node)))?;
    let (host, port) = agent_address(&stored.obj).ok_or_else(|| {
        ApiError::Internal(format!(
            "node {node} has no InternalIP, ExternalIP or Hostname address"
        ))
    })?;
    let mut agent_path = format!("/{path}");
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        agent_path.push('?');
        agent_path.push_str(q);
    }
    let rx = fetch(&host, port, &agent_path, &state.node_token).await?;
    let content_type = if path == "metrics" {
        "text/plain; version=0.0.4"
    } else {
        "text/plain"
    };
    Ok(response::stream(200, content_type, rx))
}

/// Percent-encodes a query value (RFC 3986 unreserved characters kept).
pub(crate) fn encode_component(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Opens a TLS connection (HTTP/1.1) to the agent at `host:port`; `path`
/// only names the request in errors.
pub(crate) async fn dial(
    host: &str,
    port: u64,
    path: &str,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, ApiError> {
    let url = format!("https://{host}:{port}{path}");
    let unreachable = |e: &dyn std::fmt::Display| ApiError::Internal(format!("Get \"{url}\": {e}"));
    let port = u16::try_from(port).map_err(|_| unreachable(&"invalid port"))?;
    let tcp = tokio::time::timeout(
        AGENT_CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    .map_err(|_| unreachable(&"dial tcp: i/o timeout"))?
    .map_err(|e| unreachable(&e))?;
    let _ = tcp.set_nodelay(true);
    // The agent's serving certificate is self-signed and not verified (see
    // the module caveat); `skiff_client` says why in one place.
    let tls = skiff_client::unverified_tls_config(&[b"http/1.1"])
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let server_name = ServerName::try_from(host.to_string()).map_err(|e| unreachable(&e))?;
    tls.connect(server_name, tcp)
        .await
        .map_err(|e| unreachable(&e))
}

/// GETs `path` from the agent and streams the body into a channel.
pub(crate) async fn fetch(
    host: &str,
    port: u64,
    path: &str,
    token: &str,
) -> Result<mpsc::Receiver<Bytes>, ApiError> {
    let stream = dial(host, port, path).await?;
    let url = format!("https://{host}:{port}{path}");
    let unreachable = |e: &dyn std::fmt::Display| ApiError::Internal(format!("Get \"{url}\": {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(async move {
        // Ends with the response or when the body is dropped.
        let _ = conn.await;
    });
    let req = Request::get(path)
        .header(http::header::HOST, format!("{host}:{port}"))
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Empty::<Bytes>::new())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| unreachable(&e))?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    if !(200..300).contains(&status) {
        let mut text = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(d) = frame.data_ref() {
                text.extend_from_slice(d);
                if text.len() > MAX_AGENT_ERROR_BYTES {
                    text.truncate(MAX_AGENT_ERROR_BYTES);
                    break;
                }
            }
        }
        let message = String::from_utf8_lossy(&text).trim().to_string();
        return Err(ApiError::Upstream {
            code: status,
            message,
        });
    }
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                frame = body.frame() => match frame {
                    Some(Ok(f)) => {
                        if let Ok(d) = f.into_data() {
                            if tx.send(d).await.is_err() {
                                return;
                            }
                        }
                    }
                    _ => return,
                },
            }
        }
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_choice() {
        let one = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(choose_container(&one, "p", None).unwrap(), "a");
        let two = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}]}});
        let e = choose_container(&two, "p", None).unwrap_err();
        assert_eq!(e.status_code(), 400);
        assert_eq!(
            e.to_string(),
            "a container name must be specified for pod p, choose one of: [a b]"
        );
        assert_eq!(choose_container(&two, "p", Some("i")).unwrap(), "i");
        assert_eq!(
            choose_container(&two, "p", Some("z"))
                .unwrap_err()
                .to_string(),
            "container z is not valid for pod p"
        );
    }

    #[test]
    fn agent_address_prefers_internal_ip() {
        let node = json!({"status": {"addresses": [{"type": "Hostname", "address": "h"}, {"type": "InternalIP", "address": "10.0.0.2"}],
                                     "daemonEndpoints": {"kubeletEndpoint": {"Port": 10260}}}});
        assert_eq!(agent_address(&node), Some(("10.0.0.2".into(), 10260)));
        let bare = json!({"status": {"addresses": [{"type": "Hostname", "address": "h"}]}});
        assert_eq!(
            agent_address(&bare),
            Some(("h".into(), DEFAULT_KUBELET_PORT))
        );
        assert_eq!(agent_address(&json!({})), None);
    }
}
