//! Integration tests of the Job controller: a real `skiff server
//! --no-agent` (whose own controllers are under test) with a fake node and
//! a fake kubelet that runs each bound pod to the outcome its `outcome`
//! label asks for (`Succeeded` or `Failed`).

mod support;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use support::*;

const TIMEOUT: Duration = Duration::from_secs(90);

/// A kubelet for `node` that finishes every bound pod: phase from its
/// `outcome` label (default `Succeeded`), exit code 0 or 1.
fn spawn_finishing_kubelet(client: Client, node: &str) -> tokio::task::JoinHandle<()> {
    let node = node.to_string();
    tokio::spawn(async move {
        let api: Api<Pod> = Api::all(client.clone());
        // With back-off: once the test's server is gone, a watcher without
        // it retries in a tight loop that never yields, and the test's
        // runtime then cannot shut down (seen as a CI hang).
        let mut events = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(e) = events.next().await {
            let pod = match e {
                Ok(Event::Apply(p)) | Ok(Event::InitApply(p)) => p,
                _ => continue,
            };
            if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node.as_str()) {
                continue;
            }
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if matches!(phase, Some("Succeeded") | Some("Failed")) {
                continue;
            }
            let outcome = pod
                .labels()
                .get("outcome")
                .cloned()
                .unwrap_or_else(|| "Succeeded".into());
            let code = if outcome == "Succeeded" { 0 } else { 1 };
            let now = k8s_openapi::jiff::Timestamp::now().to_string();
            let status = json!({"status": {
                "phase": outcome,
                "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now}],
                "containerStatuses": [{"name": "c", "image": "busybox", "imageID": "", "ready": false,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": code, "startedAt": now, "finishedAt": now}}}],
            }});
            let pods: Api<Pod> =
                Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
            let _ = pods
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&status),
                )
                .await;
        }
    })
}

fn job(name: &str, spec: serde_json::Value, outcome: &str) -> anyhow::Result<Job> {
    let mut spec = spec;
    spec["template"] = json!({
        "metadata": {"labels": {"outcome": outcome}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]},
    });
    Ok(serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name}, "spec": spec,
    }))?)
}

fn condition(j: &Job, type_: &str) -> Option<String> {
    j.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| c.reason.clone().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_complete_fail_after_backoff_and_expire() -> anyhow::Result<()> {
    let server = Server::start()?;
    let client = server.client().await?;
    create_node(&client, "batch-1").await?;
    let _kubelet = spawn_finishing_kubelet(client.clone(), "batch-1");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // Indexed, 4 completions, 2 at a time: Complete, every index once.
    jobs.create(
        &PostParams::default(),
        &job(
            "idx",
            json!({"completions": 4, "parallelism": 2, "completionMode": "Indexed"}),
            "Succeeded",
        )?,
    )
    .await?;
    // Fails every time, backoffLimit 1: Failed after two pods.
    jobs.create(
        &PostParams::default(),
        &job("bad", json!({"backoffLimit": 1}), "Failed")?,
    )
    .await?;
    // Deleted 2 s after it completes.
    jobs.create(
        &PostParams::default(),
        &job("short", json!({"ttlSecondsAfterFinished": 2}), "Succeeded")?,
    )
    .await?;

    let done = wait_for("job idx to complete", TIMEOUT, || async {
        let j = jobs.get("idx").await?;
        Ok(condition(&j, "Complete").map(|_| j))
    })
    .await?;
    let st = done.status.clone().unwrap_or_default();
    assert_eq!(st.succeeded, Some(4));
    assert_eq!(st.completed_indexes.as_deref(), Some("0-3"));
    assert!(st.completion_time.is_some() && st.start_time.is_some());
    let idx_pods = pods
        .list(&ListParams::default().labels("batch.kubernetes.io/job-name=idx"))
        .await?;
    let mut indexes: Vec<String> = idx_pods
        .items
        .iter()
        .map(|p| p.annotations()["batch.kubernetes.io/job-completion-index"].clone())
        .collect();
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2", "3"], "one pod per index");
    for p in &idx_pods.items {
        let env = p.spec.as_ref().unwrap().containers[0]
            .env
            .clone()
            .unwrap_or_default();
        let i = &p.annotations()["batch.kubernetes.io/job-completion-index"];
        assert!(env
            .iter()
            .any(|e| e.name == "JOB_COMPLETION_INDEX" && e.value.as_ref() == Some(i)));
    }

    let failed = wait_for("job bad to fail", TIMEOUT, || async {
        let j = jobs.get("bad").await?;
        Ok(condition(&j, "Failed").map(|r| (j, r)))
    })
    .await?;
    assert_eq!(failed.1, "BackoffLimitExceeded");
    assert_eq!(failed.0.status.unwrap().failed, Some(2));

    wait_for("job short to be deleted by its TTL", TIMEOUT, || async {
        Ok(jobs.get_opt("short").await?.is_none().then_some(()))
    })
    .await?;
    Ok(())
}
