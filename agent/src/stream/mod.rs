//! Interactive streams: `kubectl exec`, `attach`, `cp` (exec of `tar`) and
//! `port-forward`, served on the agent's HTTPS port at kubelet's paths.
//!
//! ```text
//!  kubectl ─WS/SPDY upgrade─► apiserver (pods/exec|attach|portforward)
//!             ─same upgrade, Bearer node token─► agent /exec/ns/pod/c?command=…
//!                 CRI Exec/Attach/PortForward → http://127.0.0.1:P/<token> (containerd)
//!                 agent ─POST, Upgrade: SPDY/3.1─► containerd streaming server
//! ```
//!
//! # Design
//! The API server does what kube-apiserver does for these subresources: it
//! proxies the HTTP upgrade to the node and then copies bytes both ways,
//! not caring which protocol they carry (`apiserver/src/streams.rs`). The
//! agent picks the protocol from the request, like kubelet, and answers:
//!
//! | client asks for | agent does |
//! | --- | --- |
//! | WebSocket `v5.channel.k8s.io` / `v4.channel.k8s.io` (exec, attach; kubectl 1.30+ default) | translates channels ↔ SPDY streams to the runtime ([`remotecommand`]) |
//! | WebSocket `SPDY/3.1+portforward.k8s.io` (port-forward; kubectl 1.31+ default) | unwraps the tunnelled SPDY bytes and pipes them to the runtime ([`portforward`]) |
//! | `Upgrade: SPDY/3.1` (kubectl's fallback, `KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`, older clients) | upgrades to the runtime with the same offered protocols and pipes raw bytes |
//!
//! Why the translation is on the node and the runtime keeps serving: the
//! runtime's streaming server is what enters the container (exec with the
//! container's namespaces, cgroups and user; port-forward inside the pod's
//! network namespace), so the agent does not need `setns` or privileges of
//! its own. containerd 1.6's server speaks SPDY and WebSocket up to v4
//! only, and v4 cannot half-close stdin, so the agent is the SPDY client
//! for exec and attach. Port-forward uses CRI `PortForward` too rather than
//! dialing the pod IP, so that ports bound to the pod's loopback work, as
//! in Kubernetes.
//!
//! Errors before the upgrade (no such container, runtime refused) are plain
//! HTTP errors, which the API server turns into a `Status`; after it, the
//! runtime's `Status` travels on the error channel (exit codes included).

pub mod portforward;
pub mod remotecommand;
pub mod spdy;
pub mod upgrade;
pub mod websocket;

use std::sync::Arc;

use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use tracing::debug;

use crate::cri::labels;
use crate::server::{percent_decode, Body, RequestError, ServerState};
use remotecommand::StreamOptions;

/// Which subresource a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `exec`: run a new process in the container.
    Exec,
    /// `attach`: the container's main process.
    Attach,
    /// `portForward`: TCP into the pod's network namespace.
    PortForward,
}

/// The upgrade a client asked for.
enum Wanted {
    /// WebSocket with the chosen sub-protocol and the client's key.
    WebSocket { protocol: &'static str, key: String },
    /// SPDY with the offered `X-Stream-Protocol-Version`s.
    Spdy(Vec<String>),
}

/// Values of a (possibly repeated) comma-separated header.
fn header_list(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

fn wanted(kind: Kind, headers: &HeaderMap) -> Result<Wanted, RequestError> {
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    match upgrade.as_str() {
        "websocket" => {
            let key = headers
                .get("sec-websocket-key")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| RequestError::BadRequest("missing Sec-WebSocket-Key".into()))?
                .to_string();
            let offered = header_list(headers, "sec-websocket-protocol");
            let protocol = match kind {
                Kind::PortForward => offered
                    .iter()
                    .any(|p| p == portforward::TUNNEL_PROTOCOL)
                    .then_some(portforward::TUNNEL_PROTOCOL),
                Kind::Exec | Kind::Attach => {
                    remotecommand::choose_protocol(offered.iter().map(String::as_str))
                }
            };
            let protocol = protocol.ok_or_else(|| {
                RequestError::BadRequest(format!(
                    "unsupported WebSocket sub-protocols {offered:?}; supported: {}",
                    match kind {
                        Kind::PortForward => portforward::TUNNEL_PROTOCOL.to_string(),
                        _ => format!("{}, {}", remotecommand::V5, remotecommand::V4),
                    }
                ))
            })?;
            Ok(Wanted::WebSocket { protocol, key })
        }
        "spdy/3.1" => Ok(Wanted::Spdy(header_list(
            headers,
            upgrade::STREAM_PROTOCOL_HEADER,
        ))),
        _ => Err(RequestError::BadRequest("Upgrade request required".into())),
    }
}

/// Parses the exec/attach query (`command` repeated; `stdin`, `stdout`,
/// `stderr`, `tty`, or kubelet's `input`, `output`, `error`).
pub fn parse_query(query: &str) -> (Vec<String>, StreamOptions) {
    let mut command = Vec::new();
    let mut o = StreamOptions::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
        let v = percent_decode(v);
        let on = matches!(v.as_str(), "true" | "1" | "True" | "TRUE");
        match k {
            "command" => command.push(v),
            "stdin" | "input" => o.stdin = on,
            "stdout" | "output" => o.stdout = on,
            "stderr" | "error" => o.stderr = on,
            "tty" => o.tty = on,
            _ => {}
        }
    }
    (command, o)
}

/// Serves one exec/attach/portForward request.
pub(crate) async fn serve(
    state: Arc<ServerState>,
    mut req: Request<Incoming>,
    kind: Kind,
    ns: &str,
    pod: &str,
    container: Option<&str>,
) -> Result<Response<Body>, RequestError> {
    let wanted = wanted(kind, req.headers())?;
    let (command, opts) = parse_query(req.uri().query().unwrap_or(""));
    let runtime_err = |e: crate::cri::CriError| RequestError::Internal(e.message());
    let url = match kind {
        Kind::Exec | Kind::Attach => {
            let container = container.unwrap_or_default();
            if kind == Kind::Exec && command.is_empty() {
                return Err(RequestError::BadRequest(
                    "you must specify at least one command for the container".into(),
                ));
            }
            if !(opts.stdin || opts.stdout || opts.stderr) {
                return Err(RequestError::BadRequest(
                    "you must specify at least 1 of stdin, stdout, stderr".into(),
                ));
            }
            let (id, _) = crate::server::find_container(&state, ns, pod, container, false).await?;
            if kind == Kind::Exec {
                state
                    .cri
                    .exec(cri::ExecRequest {
                        container_id: id,
                        cmd: command,
                        tty: opts.tty,
                        stdin: opts.stdin,
                        stdout: opts.stdout,
                        stderr: opts.stderr && !opts.tty,
                    })
                    .await
                    .map_err(runtime_err)?
            } else {
                state
                    .cri
                    .attach(cri::AttachRequest {
                        container_id: id,
                        stdin: opts.stdin,
                        tty: opts.tty,
                        stdout: opts.stdout,
                        stderr: opts.stderr && !opts.tty,
                    })
                    .await
                    .map_err(runtime_err)?
            }
        }
        Kind::PortForward => {
            let sandbox = find_sandbox(&state, ns, pod).await?;
            state
                .cri
                .port_forward(cri::PortForwardRequest {
                    pod_sandbox_id: sandbox,
                    port: Vec::new(),
                })
                .await
                .map_err(runtime_err)?
        }
    };

    let offered: Vec<String> = match (&wanted, kind) {
        (Wanted::Spdy(p), _) => p.clone(),
        (Wanted::WebSocket { .. }, Kind::PortForward) => {
            vec![portforward::RUNTIME_PROTOCOL.to_string()]
        }
        (Wanted::WebSocket { .. }, _) => vec![remotecommand::RUNTIME_PROTOCOL.to_string()],
    };
    let offered_refs: Vec<&str> = offered.iter().map(String::as_str).collect();
    let runtime = upgrade::spdy(&url, &offered_refs)
        .await
        .map_err(|e| match e {
            upgrade::UpgradeError::Refused { status, body } if status.is_client_error() => {
                RequestError::BadRequest(body)
            }
            other => RequestError::Internal(other.to_string()),
        })?;

    let on_upgrade = hyper::upgrade::on(&mut req);
    let mut resp = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    let set = |h: &mut HeaderMap, name: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(name, v);
        }
    };
    match &wanted {
        Wanted::WebSocket { protocol, key } => {
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            set(h, "sec-websocket-accept", &websocket::accept_key(key));
            set(h, "sec-websocket-protocol", protocol);
        }
        Wanted::Spdy(_) => {
            h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
            set(h, upgrade::STREAM_PROTOCOL_HEADER, &runtime.protocol);
        }
    }

    tokio::spawn(async move {
        let client = match on_upgrade.await {
            Ok(u) => TokioIo::new(u),
            Err(e) => {
                debug!("client upgrade failed: {e}");
                return;
            }
        };
        match wanted {
            Wanted::WebSocket { protocol, .. } if kind == Kind::PortForward => {
                let _ = protocol;
                portforward::tunnel(client, runtime.io).await
            }
            Wanted::WebSocket { protocol, .. } => {
                remotecommand::bridge(client, runtime.io, protocol, opts).await
            }
            Wanted::Spdy(_) => {
                let (mut a, mut b) = (client, runtime.io);
                let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
            }
        }
    });
    Ok(resp)
}

/// The pod's ready sandbox, found through CRI labels.
async fn find_sandbox(state: &ServerState, ns: &str, pod: &str) -> Result<String, RequestError> {
    let selector = [
        (labels::POD_NAMESPACE, ns),
        (labels::POD_NAME, pod),
        (labels::SKIFF_NODE, state.node_name.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let found = state
        .cri
        .list_pod_sandbox(Some(cri::PodSandboxFilter {
            label_selector: selector,
            state: Some(cri::PodSandboxStateValue {
                state: cri::PodSandboxState::SandboxReady as i32,
            }),
            ..Default::default()
        }))
        .await
        .map_err(|e| RequestError::Internal(e.to_string()))?;
    found
        .into_iter()
        .max_by_key(|s| s.created_at)
        .map(|s| s.id)
        .ok_or_else(|| RequestError::NotFound(format!("pod \"{pod}\" has no running sandbox")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exec_query() {
        let (cmd, o) = parse_query("command=sh&command=-c&command=exit%203&stdin=true&stdout=true&stderr=true&tty=false&container=c");
        assert_eq!(cmd, vec!["sh", "-c", "exit 3"]);
        assert_eq!(
            o,
            StreamOptions {
                stdin: true,
                stdout: true,
                stderr: true,
                tty: false
            }
        );
        let (_, o) = parse_query("output=1&tty=1");
        assert!(o.stdout && o.tty && !o.stdin);
    }

    #[test]
    fn chooses_upgrade() {
        let mut h = HeaderMap::new();
        assert!(wanted(Kind::Exec, &h).is_err());
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("sec-websocket-key", HeaderValue::from_static("k"));
        h.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("v4.channel.k8s.io, v5.channel.k8s.io"),
        );
        assert!(matches!(
            wanted(Kind::Exec, &h),
            Ok(Wanted::WebSocket {
                protocol: "v5.channel.k8s.io",
                ..
            })
        ));
        assert!(wanted(Kind::PortForward, &h).is_err());
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        h.append(
            upgrade::STREAM_PROTOCOL_HEADER,
            HeaderValue::from_static("v4.channel.k8s.io"),
        );
        assert!(
            matches!(wanted(Kind::Exec, &h), Ok(Wanted::Spdy(p)) if p == ["v4.channel.k8s.io"])
        );
    }
}
