//! The in-process transport: a kube-rs [`kube::Client`] for components that
//! run inside the server's own process (the scheduler and the
//! controllers), whose requests reach [`crate::dispatch::serve`] through an
//! in-memory pipe instead of TLS over loopback TCP.
//!
//! ```text
//!  scheduler / controllers ─ kube::Client ─ hyper client pool
//!        │ connect() = tokio::io::duplex pair (no socket, no TLS)
//!        ▼
//!  HTTP/1.1 server connection on the other end ─► dispatch::serve (same
//!  authentication, authorization, admission and watch code as over TCP)
//! ```
//!
//! Only the transport differs: every request still carries the bearer token
//! and goes through the same handler, so behaviour cannot drift between
//! local and remote clients. Under the scheduler benchmark, TLS record
//! handling and socket system calls of these components were a sizeable part
//! of the server's CPU (NOTES.md, "#6").
//!
//! Caveats: streaming upgrades (exec, attach, port-forward) are not served
//! on this transport (no in-process component uses them); a pipe's
//! connection ends when the server stops.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use http::{header, HeaderValue, Request, Uri};
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

use crate::dispatch::{self, ApiState};

/// Bytes buffered in each direction of a pipe.
const PIPE_BUFFER: usize = 256 * 1024;
/// The authority local requests are addressed to (the pool's key; nothing
/// resolves it).
const LOCAL_AUTHORITY: &str = "skiff.local";

/// One end of an in-memory connection.
pub struct Pipe(DuplexStream);

impl Connection for Pipe {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for Pipe {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Opens pipes to the API server: each `call` starts a server connection
/// task on one end and returns the other.
#[derive(Clone)]
pub struct LocalConnector {
    state: Weak<ApiState>,
}

impl tower::Service<Uri> for LocalConnector {
    type Response = TokioIo<Pipe>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let state = self.state.upgrade();
        Box::pin(async move {
            let state = state.ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotConnected, "the API server stopped")
            })?;
            let (client_end, server_end) = tokio::io::duplex(PIPE_BUFFER);
            tokio::spawn(serve_pipe(state, server_end));
            Ok(TokioIo::new(Pipe(client_end)))
        })
    }
}

/// Serves one pipe's HTTP/1.1 connection until the client closes it or the
/// server stops.
async fn serve_pipe(state: Arc<ApiState>, end: DuplexStream) {
    let mut stopping = state.stopping.clone();
    let handler_state = state.clone();
    let svc = service_fn(move |req| {
        let state = handler_state.clone();
        async move { Ok::<_, Infallible>(dispatch::serve(state, req).await) }
    });
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(Pipe(end)), svc);
    drop(state);
    tokio::select! {
        r = conn => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "local connection ended with an error");
            }
        }
        _ = stopping.wait_for(|s| *s) => {}
    }
}

/// A kube-rs client whose requests reach `state`'s handler in memory,
/// authenticated by `token` like any other client, sending `user_agent`.
pub(crate) fn client(
    state: &Arc<ApiState>,
    token: &str,
    user_agent: &str,
) -> Result<kube::Client, String> {
    let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|e| format!("the token is not a valid header value: {e}"))?;
    let agent = HeaderValue::from_str(user_agent)
        .map_err(|e| format!("the user agent is not a valid header value: {e}"))?;
    let connector = LocalConnector {
        state: Arc::downgrade(state),
    };
    let pool = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build::<_, kube::client::Body>(connector);
    let service = tower::ServiceBuilder::new()
        .map_request(move |mut req: Request<kube::client::Body>| {
            // kube sends origin-form URIs; the pool needs an authority.
            let mut parts = req.uri().clone().into_parts();
            parts.scheme = Some(http::uri::Scheme::HTTP);
            parts.authority = Some(http::uri::Authority::from_static(LOCAL_AUTHORITY));
            if parts.path_and_query.is_none() {
                parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
            }
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
            req.headers_mut()
                .insert(header::AUTHORIZATION, bearer.clone());
            req.headers_mut().insert(header::USER_AGENT, agent.clone());
            req
        })
        .service(pool);
    Ok(kube::Client::new(service, "default"))
}
