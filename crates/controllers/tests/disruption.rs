//! `kubectl drain` against PodDisruptionBudgets: a real `skiff server`
//! (its own controllers and scheduler) with fake nodes and a fake kubelet.
//! The eviction check lives in the API server, the budget's status comes
//! from the disruption controller; this test needs both.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use support::*;

const TIMEOUT: Duration = Duration::from_secs(60);

fn ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Ready web pods: (on node n1, anywhere).
async fn ready_web(client: &Client) -> anyhow::Result<(usize, usize)> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let list = pods.list(&ListParams::default().labels("app=web")).await?;
    let ready: Vec<&Pod> = list.items.iter().filter(|p| ready(p)).collect();
    let on_n1 = ready
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("n1"))
        .count();
    Ok((on_n1, ready.len()))
}

async fn budget_status(
    budgets: &Api<PodDisruptionBudget>,
    generation: i64,
    allowed: i32,
) -> anyhow::Result<PodDisruptionBudget> {
    wait_for(
        &format!("the budget's status at generation {generation} to allow {allowed}"),
        TIMEOUT,
        || async {
            let b = budgets.get("web").await?;
            let s = b.status.clone().unwrap_or_default();
            Ok((s.observed_generation == Some(generation)
                && s.disruptions_allowed == Some(allowed))
            .then_some(b))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_respects_a_pod_disruption_budget() -> anyhow::Result<()> {
    let server = Server::start()?;
    let client = server.client().await?;
    create_node(&client, "n1").await?;
    create_node(&client, "n2").await?;
    let kubelet = spawn_fake_kubelet(client.clone(), vec!["n1".into(), "n2".into()]);

    // Both replicas on n1: n2 is cordoned while they are placed.
    let (ok, out) = kubectl(&server, &["cordon", "n2"]).await?;
    assert!(ok, "{out}");
    let (ok, out) = kubectl(
        &server,
        &[
            "create",
            "deployment",
            "web",
            "--image=busybox",
            "--replicas=2",
        ],
    )
    .await?;
    assert!(ok, "{out}");
    wait_for("2 ready web pods on n1", TIMEOUT, || async {
        Ok((ready_web(&client).await? == (2, 2)).then_some(()))
    })
    .await?;
    let (ok, out) = kubectl(&server, &["uncordon", "n2"]).await?;
    assert!(ok, "{out}");

    // A budget that allows no disruption: drain gives up, nothing evicted.
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "web"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
    }))?;
    budgets.create(&PostParams::default(), &pdb).await?;
    let b = budget_status(&budgets, 1, 0).await?;
    let s = b.status.unwrap();
    assert_eq!(
        (s.current_healthy, s.desired_healthy, s.expected_pods),
        (Some(2), Some(2), Some(2))
    );
    let (ok, out) = kubectl(
        &server,
        &["drain", "n1", "--ignore-daemonsets", "--timeout=12s"],
    )
    .await?;
    assert!(!ok, "drain should have failed: {out}");
    assert!(
        out.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{out}"
    );
    assert_eq!(ready_web(&client).await?, (2, 2), "no pod was evicted");

    // One disruption allowed: drain moves the pods one at a time, and
    // never fewer than one is ready.
    budgets
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"minAvailable": 1}})),
        )
        .await?;
    budget_status(&budgets, 2, 1).await?;
    let min_ready = Arc::new(AtomicUsize::new(usize::MAX));
    let sampler = {
        let (client, min_ready) = (client.clone(), min_ready.clone());
        tokio::spawn(async move {
            loop {
                if let Ok((_, n)) = ready_web(&client).await {
                    min_ready.fetch_min(n, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let (ok, out) = kubectl(
        &server,
        &["drain", "n1", "--ignore-daemonsets", "--timeout=90s"],
    )
    .await?;
    sampler.abort();
    assert!(ok, "drain failed: {out}\n{}", server.log());
    assert!(out.contains("node/n1 drained"), "{out}");
    wait_for("2 ready web pods on n2", TIMEOUT, || async {
        Ok((ready_web(&client).await? == (0, 2)).then_some(()))
    })
    .await?;
    kubelet.abort();
    let min = min_ready.load(Ordering::Relaxed);
    assert!(min >= 1, "ready web pods fell to {min} during the drain");
    Ok(())
}
