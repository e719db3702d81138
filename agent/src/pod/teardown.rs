//! Killing a pod in CRI: the order kubelet uses (`killPodWithSyncResult`):
//! stop every container (SIGTERM, SIGKILL after the grace period), stop the
//! sandbox (its network goes), then remove containers and sandbox.
//! "Not found" counts as done at every step, so a teardown can be retried
//! or raced by the runtime's own cleanup.

use futures::future::join_all;
use k8s_cri::v1 as cri;

use super::observed::{observe, ObserveCache, RunState};
use crate::cri::{Cri, CriError, CriResult};

fn gone_ok(r: CriResult<()>) -> CriResult<()> {
    match r {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// Stops and removes every container and sandbox labelled with this pod UID.
/// Containers are stopped in parallel, each with `grace_period_seconds`.
pub async fn teardown_pod(rt: &dyn Cri, uid: &str, grace_period_seconds: i64) -> CriResult<()> {
    let observed = observe(rt, uid, &mut ObserveCache::default()).await?;
    let stops = observed
        .containers
        .iter()
        .filter(|c| matches!(c.state, RunState::Running | RunState::Unknown))
        .map(|c| rt.stop_container(&c.id, grace_period_seconds));
    for r in join_all(stops).await {
        gone_ok(r)?;
    }
    for sb in &observed.sandboxes {
        gone_ok(rt.stop_pod_sandbox(&sb.id).await)?;
    }
    for c in &observed.containers {
        gone_ok(rt.remove_container(&c.id).await)?;
    }
    for sb in &observed.sandboxes {
        gone_ok(rt.remove_pod_sandbox(&sb.id).await)?;
    }
    Ok(())
}

/// Stops and removes every sandbox and container the runtime has, whoever
/// made them (for test harnesses and `skiff agent --cleanup`-style tools).
pub async fn teardown_everything(rt: &dyn Cri) -> CriResult<()> {
    let containers = rt.list_containers(None).await?;
    let stops = containers
        .iter()
        .filter(|c| crate::cri::container_state(c.state) != cri::ContainerState::ContainerExited)
        .map(|c| rt.stop_container(&c.id, 0));
    let mut first_err: Option<CriError> = None;
    for r in join_all(stops).await {
        if let Err(e) = gone_ok(r) {
            first_err.get_or_insert(e);
        }
    }
    let sandboxes = rt.list_pod_sandbox(None).await?;
    for sb in &sandboxes {
        if let Err(e) = gone_ok(rt.stop_pod_sandbox(&sb.id).await) {
            first_err.get_or_insert(e);
        }
    }
    for c in &containers {
        if let Err(e) = gone_ok(rt.remove_container(&c.id).await) {
            first_err.get_or_insert(e);
        }
    }
    for sb in &sandboxes {
        if let Err(e) = gone_ok(rt.remove_pod_sandbox(&sb.id).await) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}
