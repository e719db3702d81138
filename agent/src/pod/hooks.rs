//! Container lifecycle hooks (kubelet `pkg/kubelet/lifecycle/handlers.go`):
//! `postStart` runs right after `StartContainer` (a failure kills the
//! container: `PostStartHookError`), `preStop` runs before the runtime's
//! SIGTERM and eats into the grace period.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};

use super::probe::{run_handler, Handler};
use crate::cri::Cri;

/// The waiting reason for a failed postStart hook.
pub const POST_START_HOOK_ERROR: &str = "PostStartHookError";

/// Kubelet's floor for what is left of the grace period after a preStop
/// hook (`minimumGracePeriodInSeconds`).
pub const MIN_GRACE_AFTER_HOOK_SECONDS: i64 = 2;

/// Which hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// `lifecycle.postStart`.
    PostStart,
    /// `lifecycle.preStop`.
    PreStop,
}

/// The handler of `hook` on a container, if any.
pub fn handler(c: &Container, hook: Hook) -> Option<&LifecycleHandler> {
    let l = c.lifecycle.as_ref()?;
    match hook {
        Hook::PostStart => l.post_start.as_ref(),
        Hook::PreStop => l.pre_stop.as_ref(),
    }
}

/// Runs a hook handler within `timeout`. `sleep` handlers just wait.
pub async fn run_hook(
    cri: &dyn Cri,
    container_id: &str,
    c: &Container,
    pod_ip: &str,
    h: &LifecycleHandler,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(s) = &h.sleep {
        let d = Duration::from_secs(u64::try_from(s.seconds.max(0)).unwrap_or(0)).min(timeout);
        tokio::time::sleep(d).await;
        return Ok(());
    }
    let handler = Handler {
        exec: h.exec.as_ref().and_then(|e| e.command.as_ref()),
        http: h.http_get.as_ref(),
        tcp: h.tcp_socket.as_ref(),
    };
    match tokio::time::timeout(
        timeout,
        run_handler(cri, container_id, c, pod_ip, handler, timeout),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(format!("hook timed out after {}s", timeout.as_secs())),
    }
}

/// The grace left for `StopContainer` after a preStop hook that took
/// `used` of `grace_seconds` (never below kubelet's 2 s floor).
pub fn grace_after_hook(grace_seconds: i64, used: Duration) -> i64 {
    let used = i64::try_from(used.as_secs()).unwrap_or(i64::MAX);
    grace_seconds
        .saturating_sub(used)
        .max(MIN_GRACE_AFTER_HOOK_SECONDS)
}
