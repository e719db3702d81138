//! The controller runtime: informers fill caches and queue keys, workers
//! take keys from a de-duplicating queue and reconcile them.
//!
//! ```text
//!  watch ─> Informer ─┬─> Store (cache) <──────── read ───┐
//!                     └─> handler: keys ─> WorkQueue ─> worker ─> Reconciler::reconcile(key)
//!                                              ▲                    │ Ok(Some(d)): again after d
//!                                              └── back-off ────────┘ Err: again after back-off
//! ```
//!
//! This is kube-rs's `Controller` (and client-go's informer + workqueue)
//! cut down to what Skiff needs, written out so one controller can watch
//! several kinds, share caches, and observe events for its expectations —
//! things kube-rs 5 only offers behind unstable features.
//! Reconcilers are level-triggered: they get only a key, read the current
//! state from the caches, and must be idempotent.

pub mod informer;
pub mod queue;

use std::sync::Arc;
use std::time::Duration;

use kube::Resource;

pub use informer::Informer;
pub use queue::WorkQueue;

use crate::error::ControllerError;

/// One controller's decision procedure, driven by keys.
#[async_trait::async_trait]
pub trait Reconciler: Send + Sync + 'static {
    /// A short name for logs, e.g. `replicaset`.
    fn name(&self) -> &'static str;

    /// Brings the object named by `key` (`namespace/name` or `name`) to its
    /// desired state. `Ok(Some(d))` asks to be called again after `d` (a
    /// time-driven condition such as `minReadySeconds`); errors are retried
    /// with back-off.
    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ControllerError>;
}

/// Runs `workers` workers on `queue` until it is shut down.
pub async fn run_workers<R: Reconciler>(reconciler: Arc<R>, queue: WorkQueue, workers: usize) {
    let mut tasks = Vec::new();
    for _ in 0..workers.max(1) {
        let r = reconciler.clone();
        let q = queue.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(key) = q.get().await {
                tracing::trace!(controller = r.name(), %key, "reconciling");
                match r.reconcile(&key).await {
                    Ok(again) => {
                        q.forget(&key);
                        if let Some(d) = again {
                            q.add_after(key.clone(), d);
                        }
                    }
                    Err(e) => {
                        let n = q.failures(&key);
                        if n < 5 {
                            tracing::debug!(controller = r.name(), %key, error = %e, "reconcile failed; retrying");
                        } else {
                            tracing::warn!(controller = r.name(), %key, error = %e, failures = n, "reconcile keeps failing");
                        }
                        q.add_rate_limited(key.clone());
                    }
                }
                q.done(&key);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// The queue key of an object: `namespace/name`, or `name` if cluster-scoped.
pub fn key_of<K: Resource>(obj: &K) -> String {
    let meta = obj.meta();
    let name = meta.name.as_deref().unwrap_or_default();
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

/// Splits a key into namespace (empty if cluster-scoped) and name.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Node, Pod};

    #[test]
    fn keys_round_trip() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("web".into());
        pod.metadata.namespace = Some("prod".into());
        assert_eq!(key_of(&pod), "prod/web");
        assert_eq!(split_key("prod/web"), ("prod", "web"));
        let mut node = Node::default();
        node.metadata.name = Some("n1".into());
        assert_eq!(key_of(&node), "n1");
        assert_eq!(split_key("n1"), ("", "n1"));
    }
}
