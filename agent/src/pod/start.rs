//! Starting one container the way kubelet's `startContainer` does
//! (`kuberuntime_container.go`): image (honouring `imagePullPolicy`), the
//! `runAsNonRoot` check, environment and mounts, `CreateContainer`,
//! `StartContainer`, then the postStart hook. And killing one: preStop
//! hook, then `StopContainer` with what is left of the grace period.
//! Failures become waiting reasons, not errors: the pod keeps going.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use tracing::{debug, info};

use super::config::{container_config, pod_log_dir, sandbox_config, PodRef, Resolved};
use super::env::{container_env, EnvSources, CREATE_CONTAINER_CONFIG_ERROR};
use super::hooks::{grace_after_hook, handler, run_hook, Hook, POST_START_HOOK_ERROR};
use super::observed::ObservedPod;
use super::security::verify_run_as_non_root;
use super::volumes::container_mounts;
use super::worker::{set_waiting, Memory, SyncError, WorkerContext};
use crate::cri::Cri;

/// Everything one start reads.
pub(super) struct StartInput<'a> {
    pub ctx: &'a WorkerContext,
    pub pod: &'a Pod,
    pub r: &'a PodRef,
    pub observed: &'a ObservedPod,
    pub sources: &'a EnvSources,
    pub pod_dir: &'a Path,
    pub grace_seconds: i64,
}

/// The spec of container `name`, app or init.
pub fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    pod.spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
        .find(|c| c.name == name)
}

/// Ensure the image, create, start, postStart. Returns whether CRI changed.
pub(super) async fn start_container(
    input: &StartInput<'_>,
    mem: &mut Memory,
    name: &str,
    attempt: u32,
) -> Result<bool, SyncError> {
    let StartInput {
        ctx,
        pod,
        r,
        observed,
        sources,
        pod_dir,
        grace_seconds,
    } = *input;
    let cri = ctx.cri.as_ref();
    let Some(spec) = find_container(pod, name) else {
        return Ok(false);
    };
    let Some(sandbox) = observed.sandbox().filter(|s| s.ready) else {
        return Ok(false);
    };
    let now = Instant::now();
    let image = spec.image.clone().unwrap_or_default();
    let sb_config = sandbox_config(
        &ctx.node_name,
        pod,
        r,
        &ctx.data_dir,
        sandbox.attempt,
        ctx.cluster_dns.as_ref(),
    );

    // Image: present → use it; else pull (which fails on a node without a
    // registry, which is the expected path for un-imported images).
    let status = match cri.image_status(&image).await {
        Ok(i) => i,
        Err(e) => {
            set_waiting(mem, name, "ErrImagePull", e.message());
            mem.pull_backoff.next(name, now);
            return Ok(false);
        }
    };
    let present = status.is_some();
    let policy = spec.image_pull_policy.as_deref();
    if policy == Some("Never") && !present {
        // Kubelet's `ErrImageNeverPull`, with its message; no pull back-off
        // (nothing is pulled), the image is looked for again each sync.
        set_waiting(
            mem,
            name,
            "ErrImageNeverPull",
            format!("Container image \"{image}\" is not present with pull policy of Never"),
        );
        return Ok(false);
    }
    let mut image_status = status;
    if !present || policy == Some("Always") {
        match cri.pull_image(&image, Some(sb_config.clone())).await {
            Ok(_) => {
                mem.pull_backoff.reset(name);
                if !present {
                    image_status = cri.image_status(&image).await.ok().flatten();
                }
            }
            // Caveat: kubelet fails an `Always` pull even when the image is
            // present; an edge node without a registry uses the local copy.
            Err(e) if present => {
                debug!(%image, "pull failed, using the local image: {e}");
            }
            Err(e) => {
                info!(pod = %r.name, container = %name, %image, "image pull failed: {e}");
                set_waiting(mem, name, "ErrImagePull", e.message());
                mem.pull_backoff.next(name, now);
                return Ok(false);
            }
        }
    }

    // The container's config: runAsNonRoot, env, mounts (kubelet's
    // `CreateContainerConfigError` for each of them).
    let image_uid = image_status
        .as_ref()
        .and_then(|i| i.uid.as_ref())
        .map(|u| u.value);
    let image_user = image_status
        .as_ref()
        .map(|i| i.username.clone())
        .unwrap_or_default();
    let config = verify_run_as_non_root(pod, spec, image_uid, &image_user)
        .and_then(|()| container_env(pod, spec, sources))
        .and_then(|env| {
            Ok(Resolved {
                env,
                mounts: container_mounts(pod, spec, pod_dir)?,
            })
        })
        .and_then(|resolved| container_config(&ctx.node_name, pod, r, spec, attempt, &resolved));
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            set_waiting(mem, name, CREATE_CONTAINER_CONFIG_ERROR, e.0);
            return Ok(false);
        }
    };

    tokio::fs::create_dir_all(pod_log_dir(&ctx.data_dir, r).join(name)).await?;
    if attempt > 0 || mem.restart_backoff.delay(name).is_some() {
        // A restart: grow the back-off for the one after it.
        mem.restart_backoff.next(name, now);
    }
    let id = match cri.create_container(&sandbox.id, config, sb_config).await {
        Ok(id) => id,
        Err(e) => {
            set_waiting(mem, name, "CreateContainerError", e.message());
            mem.restart_backoff.next(name, now);
            return Ok(false);
        }
    };
    if let Err(e) = cri.start_container(&id).await {
        set_waiting(mem, name, "RunContainerError", e.message());
        mem.restart_backoff.next(name, now);
        // Remove it so the next attempt starts clean.
        super::worker::not_found_ok(cri.remove_container(&id).await)?;
        return Ok(true);
    }
    info!(pod = %r.name, ns = %r.namespace, container = %name, attempt, "container started");
    mem.waiting.remove(name);

    // postStart runs before the container counts as started; if it fails,
    // kubelet kills the container and the restart policy takes over.
    if let Some(h) = handler(spec, Hook::PostStart) {
        let pod_ip = pod_ip(ctx, pod, observed);
        let timeout = Duration::from_secs(grace_seconds.max(1).unsigned_abs());
        if let Err(e) = run_hook(cri, &id, spec, &pod_ip, h, timeout).await {
            info!(pod = %r.name, container = %name, "postStart hook failed: {e}");
            let message = format!("PostStartHookError: {e}");
            mem.kill_messages.insert(id.clone(), message.clone());
            kill_container(cri, Some(spec), &id, &pod_ip, grace_seconds).await?;
            set_waiting(mem, name, POST_START_HOOK_ERROR, message);
            mem.restart_backoff.next(name, now);
        }
    }
    Ok(true)
}

/// The IP probes and hooks use: the pod's, or the node's for hostNetwork.
pub(super) fn pod_ip(ctx: &WorkerContext, pod: &Pod, observed: &ObservedPod) -> String {
    if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
        return ctx.host_ip.clone();
    }
    observed
        .sandbox()
        .and_then(|s| s.ips.first().cloned())
        .unwrap_or_default()
}

/// preStop (if the container has one), then `StopContainer` with the rest
/// of `grace_seconds` (kubelet `killContainer`).
pub(super) async fn kill_container(
    cri: &dyn Cri,
    spec: Option<&Container>,
    id: &str,
    pod_ip: &str,
    grace_seconds: i64,
) -> Result<(), crate::cri::CriError> {
    let mut grace = grace_seconds.max(0);
    if let Some((c, h)) = spec.and_then(|c| handler(c, Hook::PreStop).map(|h| (c, h))) {
        let t0 = Instant::now();
        let budget = Duration::from_secs(grace.unsigned_abs());
        if let Err(e) = run_hook(cri, id, c, pod_ip, h, budget).await {
            info!(container = %c.name, "preStop hook failed: {e}");
        }
        grace = grace_after_hook(grace, t0.elapsed());
    }
    super::worker::not_found_ok(cri.stop_container(id, grace).await)
}
