//! PodGC end to end: a real `skiff server --no-agent
//! --terminated-pod-gc-threshold 2` with node objects but no agents.
//!
//! - a pod bound to a node that is then deleted is marked `Failed` with
//!   the `DisruptionTarget` condition (`DeletionByPodGC`) and deleted once
//!   the node has been gone for the 40 s quarantine; so is a pod bound to a
//!   node that never existed;
//! - of three finished pods the oldest goes (threshold 2);
//! - a pod on a node that exists stays.
//!
//! Takes about a minute: the quarantine and the 20 s period are
//! Kubernetes' constants.

mod support;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::Api;
use serde_json::json;
use support::*;

const TIMEOUT: Duration = Duration::from_secs(150);

fn bound_pod(name: &str, node: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"test": "podgc"}},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 30,
                 "containers": [{"name": "c", "image": "skiff.local/busybox:1"}]}
    }))?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podgc_collects_orphans_and_finished_pods() -> anyhow::Result<()> {
    let server = Server::start_with(&["--terminated-pod-gc-threshold", "2"])?;
    let client = server.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    create_node(&client, "doomed").await?;
    create_node(&client, "keeper").await?;
    for (name, node) in [
        ("orphan", "doomed"),
        ("ghost", "never-existed"),
        ("alive", "keeper"),
        ("done-1", "keeper"),
        ("done-2", "keeper"),
        ("done-3", "keeper"),
    ] {
        pods.create(&PostParams::default(), &bound_pod(name, node)?)
            .await?;
        if name.starts_with("done") {
            let status = json!({"status": {"phase": "Succeeded"}});
            pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
                .await?;
            // Distinct creation times, oldest first (second resolution).
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
    }
    // Everything the orphan goes through, seen by a watch.
    let seen = tokio::spawn({
        let pods = pods.clone();
        async move {
            let config = watcher::Config::default().fields("metadata.name=orphan");
            let mut events = watcher::watcher(pods, config).boxed();
            let mut marked = false;
            while let Some(Ok(ev)) = events.next().await {
                match ev {
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                        let status = p.status.unwrap_or_default();
                        let condition =
                            status.conditions.unwrap_or_default().into_iter().find(|c| {
                                c.type_ == "DisruptionTarget"
                                    && c.reason.as_deref() == Some("DeletionByPodGC")
                            });
                        marked |= status.phase.as_deref() == Some("Failed") && condition.is_some();
                    }
                    watcher::Event::Delete(_) => return marked,
                    _ => {}
                }
            }
            false
        }
    });
    Api::<Node>::all(client.clone())
        .delete("doomed", &DeleteParams::default())
        .await?;
    wait_for(
        "orphan and ghost collected, oldest finished pod gone",
        TIMEOUT,
        || async {
            let names: Vec<String> = pods
                .list(&Default::default())
                .await?
                .items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .collect();
            Ok((!names
                .iter()
                .any(|n| n == "orphan" || n == "ghost" || n == "done-1"))
            .then_some(names))
        },
    )
    .await
    .map(|names| {
        assert_eq!(names, ["alive", "done-2", "done-3"], "{}", server.log());
    })?;
    let marked = tokio::time::timeout(Duration::from_secs(10), seen).await??;
    assert!(
        marked,
        "the orphan was not marked Failed with DisruptionTarget before deletion"
    );
    Ok(())
}
