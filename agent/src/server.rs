//! The agent's HTTPS endpoint (kubelet's port 10250): `/healthz`,
//! `/containerLogs/{namespace}/{pod}/{container}`, which the API server
//! proxies `kubectl logs` to, and kubelet's streaming paths
//! `/exec/{namespace}/{pod}/{container}?command=…`,
//! `/attach/{namespace}/{pod}/{container}` and
//! `/portForward/{namespace}/{pod}` (HTTP upgrades, see [`crate::stream`]),
//! and `/stats/summary` (usage for `kubectl top`, see [`crate::stats`]).
//!
//! ```text
//!  apiserver ──HTTPS, Bearer <node token>──► /containerLogs/ns/pod/c?follow=…
//!        find the container in CRI by labels → its log file → LogAssembler → stream
//! ```
//!
//! Authentication: the request must carry `Authorization: Bearer <node
//! token>` (compared in constant time). Kubelet instead checks client certs
//! or TokenReview/SubjectAccessReview; Skiff's cluster shares one node
//! token, so the API server presents that.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_cri::v1 as cri;
use k8s_openapi::jiff::Timestamp;
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::cri::{container_state, labels, Cri};
use crate::logs::{ByteLimit, LogAssembler, LogOptions, Tail};
use crate::pod::config::{pod_log_dir, PodRef};
use crate::stream;

/// How often a followed log file is checked for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// How often a followed container is checked for having exited.
const FOLLOW_STATE_CHECK: Duration = Duration::from_secs(1);

/// Response bodies.
pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding the port failed.
    #[error("binding the agent HTTPS port {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A failed request; the one place these become HTTP responses is
/// [`RequestError::into_response`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Internal(String),
}

impl RequestError {
    fn into_response(self) -> Response<Body> {
        let status = match self {
            RequestError::Unauthorized => StatusCode::UNAUTHORIZED,
            RequestError::NotFound(_) => StatusCode::NOT_FOUND,
            RequestError::BadRequest(_) => StatusCode::BAD_REQUEST,
            RequestError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        text(status, format!("{self}\n"))
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// What request handlers need.
pub struct ServerState {
    /// The runtime (to find containers and their log files).
    pub cri: Arc<dyn Cri>,
    /// The node token callers must present.
    pub token: String,
    /// Agent data dir (pod log dirs).
    pub data_dir: PathBuf,
    /// This node's name: only its own containers are served.
    pub node_name: String,
    /// Previous cpu samples for `/stats/summary` rates.
    pub stats: crate::stats::CpuRates,
}

/// A running server.
pub struct AgentServer {
    /// The bound address (the real port when 0 was asked for).
    pub local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl AgentServer {
    /// Binds and starts serving.
    pub async fn start(
        addr: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
        state: Arc<ServerState>,
    ) -> Result<AgentServer, ServerError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        let task = tokio::spawn(accept_loop(
            listener,
            tokio_rustls::TlsAcceptor::from(tls),
            state,
        ));
        Ok(AgentServer { local_addr, task })
    }

    /// Stops accepting and drops open connections.
    pub fn stop(self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<ServerState>,
) {
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!("agent server accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Reap finished connections so the set stays small.
        while conns.try_join_next().is_some() {}
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let state = state.clone();
        conns.spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(state, req).await) }
            });
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                debug!(%peer, "agent connection: {e}");
            }
        });
    }
}

/// Constant-time equality, so response timing does not reveal how much of
/// a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(state: &ServerState, req: &Request<Incoming>) -> bool {
    let Some(value) = req.headers().get(http::header::AUTHORIZATION) else {
        return false;
    };
    let expected = format!("Bearer {}", state.token);
    constant_time_eq(value.as_bytes(), expected.as_bytes())
}

async fn handle(state: Arc<ServerState>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let result = match (req.method(), segments.as_slice()) {
        (&Method::GET, ["healthz"]) => Ok(text(StatusCode::OK, "ok".into())),
        (&Method::GET, ["containerLogs", ns, pod, container]) => {
            if !authorized(&state, &req) {
                Err(RequestError::Unauthorized)
            } else {
                match parse_log_options(req.uri().query().unwrap_or("")) {
                    Ok(opts) => container_logs(state.clone(), ns, pod, container, opts).await,
                    Err(e) => Err(e),
                }
            }
        }
        (&Method::GET | &Method::POST, [sub @ ("exec" | "attach"), ns, pod, container]) => {
            let kind = if *sub == "exec" {
                stream::Kind::Exec
            } else {
                stream::Kind::Attach
            };
            if !authorized(&state, &req) {
                Err(RequestError::Unauthorized)
            } else {
                let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
                stream::serve(state.clone(), req, kind, &ns, &pod, Some(&container)).await
            }
        }
        (&Method::GET, ["stats", "summary"]) => {
            if !authorized(&state, &req) {
                Err(RequestError::Unauthorized)
            } else {
                match state
                    .stats
                    .summary(state.cri.as_ref(), &state.node_name)
                    .await
                {
                    Ok(v) => {
                        let mut r = text(StatusCode::OK, v.to_string());
                        r.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("application/json"),
                        );
                        Ok(r)
                    }
                    Err(e) => Err(RequestError::Internal(e.to_string())),
                }
            }
        }
        (&Method::GET, ["metrics"]) => {
            if !authorized(&state, &req) {
                Err(RequestError::Unauthorized)
            } else {
                let body = crate::metrics::render_all(state.cri.as_ref(), &state.node_name).await;
                let mut r = text(StatusCode::OK, body);
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                Ok(r)
            }
        }
        (&Method::GET | &Method::POST, ["portForward", ns, pod]) => {
            if !authorized(&state, &req) {
                Err(RequestError::Unauthorized)
            } else {
                let (ns, pod) = (ns.to_string(), pod.to_string());
                stream::serve(
                    state.clone(),
                    req,
                    stream::Kind::PortForward,
                    &ns,
                    &pod,
                    None,
                )
                .await
            }
        }
        _ => Err(RequestError::NotFound(format!(
            "no handler for {} {path}",
            req.method()
        ))),
    };
    result.unwrap_or_else(RequestError::into_response)
}

fn parse_bool(v: &str) -> bool {
    matches!(v, "true" | "1" | "True" | "TRUE")
}

/// Decodes `%XX` escapes and `+` in a query value (RFC 3986 / HTML forms);
/// malformed escapes are kept as they are.
pub(crate) fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        // Two hex digits make one byte (< 256).
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_log_options(query: &str) -> Result<LogOptions, RequestError> {
    let mut o = LogOptions::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
        let v = percent_decode(v);
        let v = v.as_str();
        let num = |v: &str| {
            v.parse::<i64>()
                .map_err(|_| RequestError::BadRequest(format!("{k}: not a number: {v:?}")))
        };
        match k {
            "follow" => o.follow = parse_bool(v),
            "timestamps" => o.timestamps = parse_bool(v),
            "previous" => o.previous = parse_bool(v),
            "tailLines" => o.tail_lines = Some(usize::try_from(num(v)?.max(0)).unwrap_or(0)),
            "sinceSeconds" => o.since_seconds = Some(num(v)?.max(0)),
            "sinceTime" => {
                o.since_time = Some(v.parse().map_err(|_| {
                    RequestError::BadRequest(format!("sinceTime: not an RFC 3339 time: {v:?}"))
                })?)
            }
            "limitBytes" => o.limit_bytes = Some(usize::try_from(num(v)?.max(0)).unwrap_or(0)),
            _ => {}
        }
    }
    Ok(o)
}

/// The log file and id of a pod's container (newest attempt, or the one
/// before with `previous`), found through CRI labels.
pub(crate) async fn find_container(
    state: &ServerState,
    ns: &str,
    pod: &str,
    container: &str,
    previous: bool,
) -> Result<(String, PathBuf), RequestError> {
    let selector = [
        (labels::POD_NAMESPACE, ns),
        (labels::POD_NAME, pod),
        (labels::CONTAINER_NAME, container),
        (labels::SKIFF_NODE, &state.node_name),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut found = state
        .cri
        .list_containers(Some(cri::ContainerFilter {
            label_selector: selector,
            ..Default::default()
        }))
        .await
        .map_err(|e| RequestError::Internal(e.to_string()))?;
    found.sort_by_key(|c| {
        std::cmp::Reverse((c.metadata.as_ref().map_or(0, |m| m.attempt), c.created_at))
    });
    let idx = usize::from(previous);
    let c = found.get(idx).ok_or_else(|| {
        RequestError::NotFound(if previous {
            format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")
        } else {
            format!("container \"{container}\" in pod \"{pod}\" is not available")
        })
    })?;
    let status = state
        .cri
        .container_status(&c.id)
        .await
        .map_err(|e| RequestError::NotFound(e.to_string()))?;
    let mut path = PathBuf::from(&status.log_path);
    if path.is_relative() {
        // containerd reports the joined path; other runtimes may not.
        let uid = c.labels.get(labels::POD_UID).cloned().unwrap_or_default();
        let r = PodRef {
            namespace: ns.into(),
            name: pod.into(),
            uid,
        };
        path = pod_log_dir(&state.data_dir, &r).join(path);
    }
    Ok((c.id.clone(), path))
}

async fn container_logs(
    state: Arc<ServerState>,
    ns: &str,
    pod: &str,
    container: &str,
    opts: LogOptions,
) -> Result<Response<Body>, RequestError> {
    let (id, path) = find_container(&state, ns, pod, container, opts.previous).await?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| RequestError::NotFound(format!("log file {}: {e}", path.display())))?;
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(stream_log_file(state, id, file, opts, tx));
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx)
        .map(|b| Ok::<_, Infallible>(Frame::data(b)));
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(r)
}

/// Sends the log's lines; with `follow`, keeps going until the container is
/// no longer running (then drains what is left) or the client goes away.
async fn stream_log_file(
    state: Arc<ServerState>,
    container_id: String,
    file: tokio::fs::File,
    opts: LogOptions,
    tx: mpsc::Sender<Bytes>,
) {
    let mut reader = tokio::io::BufReader::new(file);
    let mut asm = LogAssembler::new(&opts, Timestamp::now());
    let mut limit = ByteLimit::new(opts.limit_bytes);
    let mut tail = opts.tail_lines.map(Tail::new);
    let mut buf = String::new();
    let mut caught_up = false;
    let mut exited = false;
    let mut last_check = tokio::time::Instant::now();

    let send = |line: String, limit: &mut ByteLimit| {
        let chunk = limit.take(line);
        let tx = tx.clone();
        async move {
            match chunk {
                Some(c) if !c.is_empty() => tx.send(Bytes::from(c)).await.is_ok(),
                Some(_) => true,
                None => false,
            }
        }
    };

    loop {
        let n = match reader.read_line(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                debug!(path = ?Path::new(&container_id), "reading log: {e}");
                return;
            }
        };
        if n > 0 {
            if !buf.ends_with('\n') {
                // A line still being written: wait for its end.
                continue;
            }
            let line = asm.push(buf.trim_end_matches('\n'));
            buf.clear();
            if let Some(line) = line {
                match (&mut tail, caught_up) {
                    (Some(t), false) => t.push(line),
                    _ => {
                        if !send(line, &mut limit).await {
                            return;
                        }
                    }
                }
            }
            continue;
        }
        // End of file.
        if !caught_up {
            caught_up = true;
            if let Some(t) = tail.take() {
                for line in t.into_lines() {
                    if !send(line, &mut limit).await {
                        return;
                    }
                }
            }
        }
        if !opts.follow || exited || limit.exhausted() {
            return;
        }
        if tx.is_closed() {
            return;
        }
        if last_check.elapsed() >= FOLLOW_STATE_CHECK {
            last_check = tokio::time::Instant::now();
            let running = matches!(
                state.cri.container_status(&container_id).await,
                Ok(s) if container_state(s.state) == cri::ContainerState::ContainerRunning
            );
            if !running {
                // One more pass to drain what was written before the exit.
                exited = true;
                continue;
            }
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_query() {
        let o = parse_log_options(
            "follow=true&tailLines=10&timestamps=1&previous=false&sinceSeconds=5&limitBytes=100&x=y&sinceTime=2024-01-01T00%3A00%3A00Z",
        )
        .unwrap();
        assert_eq!(
            o,
            LogOptions {
                follow: true,
                tail_lines: Some(10),
                timestamps: true,
                previous: false,
                since_seconds: Some(5),
                limit_bytes: Some(100),
                since_time: Some("2024-01-01T00:00:00Z".parse().unwrap()),
            }
        );
        assert!(parse_log_options("tailLines=abc").is_err());
        assert!(parse_log_options("sinceTime=yesterday").is_err());
        assert_eq!(percent_decode("a%3Ab+c%zz%4"), "a:b c%zz%4");
        assert_eq!(parse_log_options("").unwrap(), LogOptions::default());
    }

    #[test]
    fn compares_in_constant_time_shape() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
