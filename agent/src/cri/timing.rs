//! A tower layer under the CRI client that logs how long each call took.
//!
//! Kubelet exports the same figure as `kubelet_runtime_operations_duration_seconds`;
//! here it is a `debug` event on target `skiff_agent::cri::timing` with the
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

impl<S, B> Service<http::Request<B>> for Timed<S>
where
    S: Service<http::Request<B>>,
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
            tracing::debug!(
                %method,
                ms = start.elapsed().as_secs_f64() * 1000.0,
                ok = result.is_ok(),
                "CRI call"
            );
            result
        })
    }
}
