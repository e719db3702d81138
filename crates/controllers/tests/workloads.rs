//! Integration tests: the controllers, run in-process against a real
//! `skiff server --no-agent --no-controllers` (the test runs its own
//! controller set, with shorter timings), with fake nodes and a fake kubelet.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use skiff_controllers::ControllersConfig;
use support::*;

const TIMEOUT: Duration = Duration::from_secs(60);

async fn active_pods(client: &Client, selector: &str) -> anyhow::Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    Ok(pods
        .list(&ListParams::default().labels(selector))
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect())
}

/// Runs the real kubectl against the server; returns its stdout.
async fn kubectl(server: &Server, args: &[&str]) -> anyhow::Result<String> {
    let kubeconfig = server.kubeconfig();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("kubectl")
            .env("KUBECONFIG", kubeconfig)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
    })
    .await??;
    anyhow::ensure!(
        out.status.success(),
        "kubectl failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn wait_rolled_out(
    deployments: &Api<Deployment>,
    name: &str,
    replicas: i32,
) -> anyhow::Result<Deployment> {
    wait_for(
        &format!("deployment {name} to roll out {replicas}"),
        TIMEOUT,
        || async {
            let d = deployments.get(name).await?;
            let s = d.status.clone().unwrap_or_default();
            let done = s.observed_generation >= d.metadata.generation
                && s.updated_replicas == Some(replicas)
                && s.replicas == Some(replicas)
                && s.available_replicas == Some(replicas);
            Ok(done.then_some(d))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_rolls_out_replaces_pods_and_is_garbage_collected() -> anyhow::Result<()> {
    let server = Server::start_with(&["--no-controllers"])?;
    let client = server.client().await?;
    create_node(&client, "fake-1").await?;
    let kubelet = spawn_fake_kubelet(client.clone(), vec!["fake-1".into()]);
    // fake-1 sends no heartbeats: keep node lifecycle out of this test.
    let config = ControllersConfig {
        node_monitor_grace_period: Duration::from_secs(3600),
        ..Default::default()
    };
    let (stop, controllers) = start_controllers(&client, config);

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox:v1"}]},
            },
        },
    }))?;
    deployments.create(&PostParams::default(), &d).await?;
    let d = wait_rolled_out(&deployments, "web", 3).await?;
    assert_eq!(
        d.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("1")
    );
    let list = rss.list(&ListParams::default()).await?.items;
    assert_eq!(list.len(), 1, "one ReplicaSet");
    let rs = &list[0];
    let hash = rs.labels()["pod-template-hash"].clone();
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    let running = active_pods(&client, "app=web").await?;
    assert_eq!(running.len(), 3);
    for p in &running {
        assert!(p.name_any().starts_with(&format!("web-{hash}-")));
        let r = &p.owner_references()[0];
        assert_eq!(
            (
                r.kind.as_str(),
                r.name.as_str(),
                r.controller,
                r.block_owner_deletion
            ),
            ("ReplicaSet", rs.name_any().as_str(), Some(true), Some(true))
        );
    }

    // A pod that dies is replaced.
    let victim = running[0].name_any();
    pods.delete(&victim, &DeleteParams::default()).await?;
    wait_for("replacement pod", TIMEOUT, || async {
        let now = active_pods(&client, "app=web").await?;
        Ok(
            (now.len() == 3 && now.iter().all(|p| p.name_any() != victim) && now.iter().all(ready))
                .then_some(()),
        )
    })
    .await?;

    // Rolling update: never fewer than replicas - maxUnavailable = 3 ready.
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:v2"}]}}}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    let min_ready = std::sync::atomic::AtomicI32::new(i32::MAX);
    wait_for("rollout to v2", TIMEOUT, || async {
        let now = active_pods(&client, "app=web").await?;
        min_ready.fetch_min(
            now.iter().filter(|p| ready(p)).count() as i32,
            std::sync::atomic::Ordering::Relaxed,
        );
        let d = deployments.get("web").await?;
        let s = d.status.clone().unwrap_or_default();
        Ok((s.observed_generation >= d.metadata.generation
            && s.updated_replicas == Some(3)
            && s.replicas == Some(3)
            && s.available_replicas == Some(3))
        .then_some(()))
    })
    .await?;
    let min_ready = min_ready.into_inner();
    assert!(
        min_ready >= 3,
        "ready pods dropped to {min_ready} during the rollout"
    );
    let list = rss.list(&ListParams::default()).await?.items;
    assert_eq!(list.len(), 2);
    let new = list
        .iter()
        .find(|r| r.name_any() != rs.name_any())
        .expect("new ReplicaSet");
    assert_eq!(
        new.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("2")
    );
    let old = rss.get(&rs.name_any()).await?;
    assert_eq!(old.spec.replicas, Some(0));

    // The real kubectl reads what the controllers wrote.
    let status = kubectl(
        &server,
        &["rollout", "status", "deployment/web", "--timeout=30s"],
    )
    .await?;
    assert!(status.contains("successfully rolled out"), "{status}");
    let history = kubectl(&server, &["rollout", "history", "deployment/web"]).await?;
    assert!(history.contains('1') && history.contains('2'), "{history}");
    // rollout undo: kubectl finds revision 1's ReplicaSet and copies its
    // template back; the controller reuses that ReplicaSet as revision 3.
    kubectl(&server, &["rollout", "undo", "deployment/web"]).await?;
    let d = wait_for("undo to roll out", TIMEOUT, || async {
        let d = deployments.get("web").await?;
        let s = d.status.clone().unwrap_or_default();
        let image = d
            .spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.containers[0].image.clone());
        let done = image.as_deref() == Some("busybox:v1")
            && s.observed_generation >= d.metadata.generation
            && s.updated_replicas == Some(3)
            && s.replicas == Some(3)
            && s.available_replicas == Some(3);
        Ok(done.then_some(d))
    })
    .await?;
    assert_eq!(
        d.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("3")
    );
    assert_eq!(
        rss.list(&ListParams::default()).await?.items.len(),
        2,
        "the old ReplicaSet was reused"
    );
    assert_eq!(rss.get(&rs.name_any()).await?.spec.replicas, Some(3));

    // kubectl scale works through the Deployment.
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 5}})),
        )
        .await?;
    wait_rolled_out(&deployments, "web", 5).await?;

    // Deleting the Deployment (background propagation, kubectl's default)
    // lets the garbage collector remove the ReplicaSets and their pods.
    deployments
        .delete("web", &DeleteParams::background())
        .await?;
    wait_for("garbage collection", TIMEOUT, || async {
        let left_rs = rss.list(&ListParams::default()).await?.items.len();
        let left_pods = pods
            .list(&ListParams::default().labels("app=web"))
            .await?
            .items
            .len();
        Ok((left_rs == 0 && left_pods == 0).then_some(()))
    })
    .await?;

    let _ = stop.send(());
    controllers.await?;
    kubelet.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_get_a_default_service_account() -> anyhow::Result<()> {
    let server = Server::start_with(&["--no-controllers"])?;
    let client = server.client().await?;
    let (stop, controllers) = start_controllers(&client, ControllersConfig::default());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}),
    )?;
    namespaces.create(&PostParams::default(), &ns).await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "team-a");
    wait_for("default ServiceAccount", TIMEOUT, || async {
        Ok(accounts.get_opt("default").await?)
    })
    .await?;
    // Deleted, it comes back.
    accounts.delete("default", &DeleteParams::default()).await?;
    wait_for("default ServiceAccount again", TIMEOUT, || async {
        Ok(accounts.get_opt("default").await?)
    })
    .await?;
    let _ = stop.send(());
    controllers.await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_node_is_tainted_and_its_pods_evicted_then_replaced() -> anyhow::Result<()> {
    let server = Server::start_with(&["--no-controllers"])?;
    let client = server.client().await?;
    create_node(&client, "fake-a").await?;
    let kubelet = spawn_fake_kubelet(client.clone(), vec!["fake-a".into(), "fake-b".into()]);
    let config = ControllersConfig {
        node_monitor_period: Duration::from_millis(500),
        node_monitor_grace_period: Duration::from_secs(3),
        ..Default::default()
    };
    let (stop, controllers) = start_controllers(&client, config);
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let rs: ReplicaSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {
                    "containers": [{"name": "c", "image": "busybox"}],
                    "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}],
                },
            },
        },
    }))?;
    rss.create(&PostParams::default(), &rs).await?;
    wait_for("2 ready pods on fake-a", TIMEOUT, || async {
        let p = active_pods(&client, "app=db").await?;
        Ok((p.len() == 2 && p.iter().all(ready)).then_some(()))
    })
    .await?;
    // A second node appears; fake-a never heartbeats again (no Lease, its
    // Ready heartbeat frozen).
    create_node(&client, "fake-b").await?;
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for("fake-a Unknown and tainted", TIMEOUT, || async {
        let n = nodes.get("fake-a").await?;
        let unknown = n
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Ready" && c.status == "Unknown")
            });
        let tainted = n
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|ts| {
                ts.iter()
                    .any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute")
            });
        Ok((unknown && tainted).then_some(()))
    })
    .await?;
    // fake-b keeps heartbeating so it stays Ready: renew its Ready heartbeat.
    let heartbeat = {
        let nodes = nodes.clone();
        tokio::spawn(async move {
            loop {
                let now = k8s_openapi::jiff::Timestamp::now().to_string();
                let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now, "lastTransitionTime": now}]}});
                let _ = nodes
                    .patch_status("fake-b", &PatchParams::default(), &Patch::Merge(&status))
                    .await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    // Pods on fake-a are evicted after tolerationSeconds, and the
    // ReplicaSet replaces them on fake-b (the only untainted node).
    wait_for("pods replaced on fake-b", TIMEOUT, || async {
        let p = active_pods(&client, "app=db").await?;
        let on_b = p
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("fake-b"))
            .count();
        Ok((p.len() == 2 && on_b == 2).then_some(()))
    })
    .await?;
    heartbeat.abort();
    let _ = stop.send(());
    controllers.await?;
    kubelet.abort();
    Ok(())
}
