//! Integration test of the DaemonSet controller on hollow nodes: a real
//! `skiff server --no-agent` (its controllers and scheduler under test)
//! and `skiff agent --simulate N` processes, which register nodes and
//! report the pods bound to them Running and Ready.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::*;

const TIMEOUT: Duration = Duration::from_secs(120);

/// A `skiff agent --simulate` process, killed on drop.
struct Hollow(Child);

impl Hollow {
    fn start(server: &Server, prefix: &str, count: usize) -> anyhow::Result<Hollow> {
        let kc = kube::config::Kubeconfig::read_from(server.kubeconfig())?;
        let url = kc.clusters[0]
            .cluster
            .as_ref()
            .and_then(|c| c.server.clone())
            .ok_or_else(|| anyhow::anyhow!("no server in the kubeconfig"))?;
        let log = std::fs::File::create(server.dir.path().join(format!("{prefix}.log")))?;
        let child = Command::new(skiff_bin())
            .args(["agent", "--server", &url, "--token-file"])
            .arg(server.dir.path().join("data/node-token"))
            .arg("--data-dir")
            .arg(server.dir.path().join(prefix))
            .args(["--node-name", prefix, "--simulate", &count.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        Ok(Hollow(child))
    }
}

impl Drop for Hollow {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        std::thread::sleep(Duration::from_millis(300));
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Nodes of the running daemon pods, sorted.
async fn daemon_nodes(pods: &Api<Pod>, hash: Option<&str>) -> anyhow::Result<Vec<String>> {
    let mut nodes: Vec<String> = pods
        .list(&ListParams::default().labels("app=logger"))
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            hash.is_none_or(|h| {
                p.labels()
                    .get("controller-revision-hash")
                    .map(String::as_str)
                    == Some(h)
            })
        })
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter_map(|p| p.spec.and_then(|s| s.node_name))
        .collect();
    nodes.sort();
    Ok(nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonset_runs_on_every_node_follows_new_nodes_and_rolls_out() -> anyhow::Result<()> {
    let server = Server::start()?;
    let client = server.client().await?;
    let _first = Hollow::start(&server, "skw-a", 3)?;
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for("3 hollow nodes", TIMEOUT, || async {
        Ok((nodes.list(&ListParams::default()).await?.items.len() == 3).then_some(()))
    })
    .await?;
    // One node is tainted: no daemon pod there (the template tolerates nothing).
    let taint =
        json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}});
    nodes
        .patch(
            "skw-a-00002",
            &PatchParams::default(),
            &Patch::Merge(&taint),
        )
        .await?;

    let dss: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let ds: DaemonSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "logger"},
        "spec": {
            "selector": {"matchLabels": {"app": "logger"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "logger"}},
                "spec": {"containers": [{"name": "c", "image": "busybox:v1"}]},
            },
        },
    }))?;
    dss.create(&PostParams::default(), &ds).await?;
    let want = vec!["skw-a-00000".to_string(), "skw-a-00001".to_string()];
    wait_for(
        "daemon pods on the two untainted nodes",
        TIMEOUT,
        || async { Ok((daemon_nodes(&pods, None).await? == want).then_some(())) },
    )
    .await?;
    wait_for("daemonset status", TIMEOUT, || async {
        let s = dss.get("logger").await?.status.unwrap_or_default();
        Ok((s.desired_number_scheduled == 2
            && s.current_number_scheduled == 2
            && s.number_ready == 2
            && s.number_available == Some(2)
            && s.updated_number_scheduled == Some(2))
        .then_some(()))
    })
    .await?;
    // The pods were placed by the scheduler through their node affinity.
    for p in pods
        .list(&ListParams::default().labels("app=logger"))
        .await?
        .items
    {
        let terms = &p
            .spec
            .as_ref()
            .unwrap()
            .affinity
            .as_ref()
            .unwrap()
            .node_affinity
            .as_ref()
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()
            .node_selector_terms;
        let f = &terms[0].match_fields.as_ref().unwrap()[0];
        assert_eq!(f.key, "metadata.name");
        assert_eq!(
            f.values.as_ref().unwrap()[0],
            p.spec.as_ref().unwrap().node_name.clone().unwrap()
        );
    }

    // A node joining later gets its pod.
    let late = Hollow::start(&server, "skw-b", 1)?;
    let want3 = vec![
        "skw-a-00000".to_string(),
        "skw-a-00001".to_string(),
        "skw-b-00000".to_string(),
    ];
    wait_for("a daemon pod on the new node", TIMEOUT, || async {
        Ok((daemon_nodes(&pods, None).await? == want3).then_some(()))
    })
    .await?;

    // Rolling update to a new template: every pod replaced, history kept.
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:v2"}]}}}});
    dss.patch("logger", &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), "default");
    let new_hash = wait_for("a second revision", TIMEOUT, || async {
        let list = revisions.list(&ListParams::default()).await?.items;
        Ok(list
            .iter()
            .find(|r| r.revision == Some(2))
            .and_then(|r| r.labels().get("controller-revision-hash").cloned()))
    })
    .await?;
    wait_for("all daemon pods updated", TIMEOUT, || async {
        Ok((daemon_nodes(&pods, Some(&new_hash)).await? == want3
            && daemon_nodes(&pods, None).await?.len() == 3)
            .then_some(()))
    })
    .await?;
    let out = kubectl(
        &server,
        &["rollout", "status", "ds/logger", "--timeout=60s"],
    )
    .await?;
    assert!(out.contains("successfully rolled out"), "{out}");
    let history = kubectl(&server, &["rollout", "history", "ds/logger"]).await?;
    assert!(history.contains('1') && history.contains('2'), "{history}");

    // A node that leaves loses its pod.
    drop(late);
    nodes
        .delete("skw-b-00000", &DeleteParams::default())
        .await?;
    wait_for("the departed node's pod deleted", TIMEOUT, || async {
        Ok((daemon_nodes(&pods, None).await? == want).then_some(()))
    })
    .await?;
    Ok(())
}

async fn kubectl(server: &Server, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("kubectl")
        .env("KUBECONFIG", server.kubeconfig())
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "kubectl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
