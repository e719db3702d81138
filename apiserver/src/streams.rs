//! `pods/<name>/exec`, `pods/<name>/attach` and `pods/<name>/portforward`:
//! the HTTP upgrade is proxied to the agent running the pod, then bytes are
//! copied both ways, whatever protocol they carry (kube-apiserver's
//! `UpgradeAwareHandler`).
//!
//! ```text
//!  kubectl ──GET/POST …/pods/web/exec?command=sh&stdin=true…, Upgrade: websocket|SPDY/3.1──► apiserver
//!  apiserver ──TLS, Bearer <node token>, same method and upgrade headers──► agent /exec/ns/web/<container>?…
//!  agent ──101──► apiserver ──101 (its upgrade headers)──► kubectl; then a byte pipe
//! ```
//!
//! Which protocol is spoken (WebSocket `v5.channel.k8s.io`, WebSocket-
//! tunnelled SPDY for port-forward, or plain SPDY when kubectl falls back)
//! is the agent's business (`agent/src/stream/`): kube-apiserver translates
//! WebSocket to SPDY itself (`StreamTranslatorProxy`), Skiff's agents
//! speak both, so the API server stays a pipe.
//!
//! Checked here, as kube-apiserver does, before anything reaches the node:
//! the pod exists and is bound, the container is one of the pod's (or the
//! only one), `exec` has a command, and the request is an upgrade. Errors
//! from the agent before the upgrade come back as a `Status` with the
//! agent's code and message.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::dispatch::ApiState;
use crate::error::ApiError;
use crate::logs::{choose_container, dial, encode_component, locate};
use crate::response::{self, Body};
use crate::router::ResourcePath;

/// Headers of the upgrade handshake passed to the agent.
const REQUEST_HEADERS: &[&str] = &[
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];
/// Headers of the agent's 101 passed back to the client.
const RESPONSE_HEADERS: &[&str] = &[
    "upgrade",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];

/// Most bytes of an agent's refusal kept.
const MAX_AGENT_ERROR_BYTES: usize = 64 * 1024;

/// Whether `path` is one of the streaming subresources of a pod.
pub fn is_stream(path: &ResourcePath) -> bool {
    path.resource.group.is_empty()
        && path.resource.plural == "pods"
        && path.name.is_some()
        && matches!(
            path.subresource.as_deref(),
            Some("exec" | "attach" | "portforward")
        )
}

/// Whether the request asks for a connection upgrade (RFC 9110 §7.8).
fn is_upgrade(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade && headers.contains_key(header::UPGRADE)
}

/// The query of the agent request: everything the client sent except
/// `container`, which moves into the path; values re-encoded.
fn agent_query(raw: &str) -> (String, Option<String>, Vec<String>) {
    let mut container = None;
    let mut commands = Vec::new();
    let mut kept = Vec::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let value = crate::request::Query::parse(Some(&format!("v={v}")))
            .get("v")
            .unwrap_or_default()
            .to_string();
        match k {
            "container" => container = Some(value),
            _ => {
                if k == "command" {
                    commands.push(value.clone());
                }
                kept.push(format!("{k}={}", encode_component(&value)));
            }
        }
    }
    (kept.join("&"), container, commands)
}

/// Serves one streaming request (already authenticated and authorized).
pub async fn serve(
    state: Arc<ApiState>,
    mut req: Request<Incoming>,
    path: &ResourcePath,
) -> Result<Response<Body>, ApiError> {
    if !matches!(*req.method(), Method::GET | Method::POST) {
        return Err(ApiError::MethodNotAllowed);
    }
    let ns = path.namespace.as_deref().unwrap_or_default();
    let name = path.name.as_deref().unwrap_or_default();
    let sub = path.subresource.as_deref().unwrap_or_default();
    let (query, container, commands) = agent_query(req.uri().query().unwrap_or(""));
    let (pod, host, port) = locate(&state, ns, name).await?;
    let agent_path = match sub {
        "portforward" => format!("/portForward/{ns}/{name}"),
        _ => {
            let container = choose_container(&pod, name, container.as_deref())?;
            if sub == "exec" && commands.is_empty() {
                return Err(ApiError::BadRequest(
                    "you must specify at least one command for the container".into(),
                ));
            }
            format!("/{sub}/{ns}/{name}/{container}")
        }
    };
    if !is_upgrade(req.headers()) {
        return Err(ApiError::BadRequest("Upgrade request required".into()));
    }
    let agent_uri = if query.is_empty() {
        agent_path.clone()
    } else {
        format!("{agent_path}?{query}")
    };

    let tls = dial(&host, port, &agent_path).await?;
    let url = format!("https://{host}:{port}{agent_path}");
    let failed = |e: &dyn std::fmt::Display| ApiError::Internal(format!("{url}: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| failed(&e))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut out = Request::builder()
        .method(req.method().clone())
        .uri(agent_uri)
        .header(header::HOST, format!("{host}:{port}"))
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", state.node_token),
        )
        .header(header::CONNECTION, "Upgrade");
    for name in REQUEST_HEADERS {
        for v in req.headers().get_all(*name) {
            out = out.header(*name, v);
        }
    }
    let out = out
        .body(Empty::<Bytes>::new())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut agent_resp = sender.send_request(out).await.map_err(|e| failed(&e))?;

    if agent_resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let code = agent_resp.status().as_u16();
        let mut text = Vec::new();
        let mut body = agent_resp.into_body();
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(d) = frame.data_ref() {
                text.extend_from_slice(d);
                if text.len() > MAX_AGENT_ERROR_BYTES {
                    break;
                }
            }
        }
        text.truncate(MAX_AGENT_ERROR_BYTES);
        return Err(ApiError::Upstream {
            code,
            message: String::from_utf8_lossy(&text).trim().to_string(),
        });
    }

    let mut resp = Response::new(response::full(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    for name in RESPONSE_HEADERS {
        for v in agent_resp.headers().get_all(*name) {
            resp.headers_mut().append(*name, v.clone());
        }
    }
    let client_upgrade = hyper::upgrade::on(&mut req);
    let agent_upgrade = hyper::upgrade::on(&mut agent_resp);
    tokio::spawn(async move {
        let (client, agent) = tokio::join!(client_upgrade, agent_upgrade);
        let (Ok(client), Ok(agent)) = (client, agent) else {
            tracing::debug!("stream upgrade did not complete");
            return;
        };
        let (mut client, mut agent) = (TokioIo::new(client), TokioIo::new(agent));
        let _ = tokio::io::copy_bidirectional(&mut client, &mut agent).await;
    });
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_agent_query() {
        let (q, c, cmds) = agent_query(
            "command=sh&command=-c&command=exit%203&container=app&stdin=true&tty=false",
        );
        assert_eq!(
            q,
            "command=sh&command=-c&command=exit%203&stdin=true&tty=false"
        );
        assert_eq!(c.as_deref(), Some("app"));
        assert_eq!(cmds, vec!["sh", "-c", "exit 3"]);
    }

    #[test]
    fn recognises_upgrades() {
        let mut h = HeaderMap::new();
        assert!(!is_upgrade(&h));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&h));
    }
}
