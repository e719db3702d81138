//! A tower layer under the CRI client that logs how long each call took.
//!
//! Kubelet exports the same figure as `kubelet_runtime_operations_duration_seconds`;
//! so does the agent ([`crate::metrics`]), and it is also a `debug` event on target `skiff_agent::cri::timing` with the
//! gRPC method and its latency, so `RUST_LOG=skiff_agent::cri::timing=debug`
//! shows where a pod's startup time goes (RunPodSandbox, CreateContainer, …).
//! The time is measured until the response headers arrive, which for CRI's
//! unary calls is when containerd has finished the work.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tower::Service;

/// Wraps a gRPC channel and times every request through it.
#[derive(Clone, Debug)]
pub struct Timed<S>(pub S);

impl<S, B, RB> Service<http::Request<B>> for Timed<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // "/runtime.v1.RuntimeService/RunPodSandbox" → "RunPodSandbox".
        let path = req.uri().path();
        let method = path.rsplit('/').next().unwrap_or(path).to_string();
        let start = Instant::now();
        let call = self.0.call(req);
        Box::pin(async move {
            let result = call.await;
            // A failed call is a transport error, or (gRPC errors are
            // "trailers-only" responses) a non-zero grpc-status header.
            let ok = result.as_ref().is_ok_and(|r| {
                r.headers()
                    .get("grpc-status")
                    .is_none_or(|s| s.as_bytes() == b"0")
            });
            let took = start.elapsed();
            crate::metrics::global().runtime_operation(&method, took, ok);
            tracing::debug!(
                %method,
                ms = took.as_secs_f64() * 1000.0,
                ok,
                "CRI call"
            );
            result
        })
    }
}
