//! End to end on hollow nodes: a real `skiff server --no-agent` (its
//! embedded scheduler), five hollow nodes in this process, and pods created
//! through the API: they are bound and packed, unschedulable ones get
//! FailedScheduling events in kube-scheduler's words, and a high-priority
//! pod preempts a low-priority one.
//!
//! The `skiff` binary is found like the e2e kit does: `SKIFF_BIN`, else
//! `$CARGO_TARGET_DIR/debug/skiff`, else `<workspace>/target/debug/skiff`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;

fn skiff_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SKIFF_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("debug/skiff")
}

/// The server process; killed (and its directory removed) on drop, also
/// when the test fails.
struct Server {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

fn start_server() -> anyhow::Result<Server> {
    let dir = tempfile::Builder::new()
        .prefix("skiff-sched-e2e-")
        .tempdir_in("/var/tmp")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let log = std::fs::File::create(dir.path().join("server.log"))?;
    let child = Command::new(skiff_bin())
        .args(["server", "--no-agent", "--no-etcd-api"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", skiff_bin().display()))?;
    Ok(Server { child, dir })
}

async fn client_for(server: &Server) -> anyhow::Result<Client> {
    let path = server.dir.path().join("data/admin.kubeconfig");
    for _ in 0..300 {
        if path.exists() {
            let kc = Kubeconfig::read_from(&path)?;
            let config =
                kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
            let client = Client::try_from(config)?;
            let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
            if ns.get_opt("kube-system").await.ok().flatten().is_some() {
                return Ok(client);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("server did not come up:\n{}", server.log())
}

/// Polls `f` every 200 ms until it returns `Some`, for at most `secs`.
async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn pod(name: &str, cpu: &str, extra: serde_json::Value) -> anyhow::Result<Pod> {
    let mut v = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox",
            "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]},
    });
    if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), extra.as_object()) {
        for (k, x) in extra {
            spec.insert(k.clone(), x.clone());
        }
    }
    Ok(serde_json::from_value(v)?)
}

async fn failed_scheduling(events: &Api<Event>, pod: &str) -> anyhow::Result<Option<String>> {
    let list = events.list(&ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .find(|e| {
            e.involved_object.name.as_deref() == Some(pod)
                && e.reason.as_deref() == Some("FailedScheduling")
        })
        .and_then(|e| e.message))
}

async fn node_of(pods: &Api<Pod>, name: &str) -> anyhow::Result<Option<String>> {
    Ok(pods
        .get_opt(name)
        .await?
        .and_then(|p| p.spec.and_then(|s| s.node_name)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_onto_hollow_nodes() -> anyhow::Result<()> {
    let server = start_server()?;
    let result = scenario(&server).await;
    if result.is_err() {
        eprintln!("--- server log ---\n{}", server.log());
    }
    result
}

async fn scenario(server: &Server) -> anyhow::Result<()> {
    let client = client_for(server).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let hollow = tokio::spawn(skiff_agent::hollow::run_hollow_nodes(
        client.clone(),
        5,
        "hollow-",
        async move {
            let _ = stop_rx.await;
        },
    ));
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for(60, "5 ready hollow nodes", || async {
        let list = nodes.list(&ListParams::default()).await?;
        let ready = list
            .items
            .iter()
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        Ok((ready == 5).then_some(()))
    })
    .await?;

    // 30 pods of 500m: 15 cpu on 5 × 4 cpu, packed onto 4 nodes.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..30 {
        pods.create(
            &PostParams::default(),
            &pod(&format!("p{i:02}"), "500m", serde_json::json!({}))?,
        )
        .await?;
    }
    let used = wait_for(60, "30 pods bound and running", || async {
        let list = pods.list(&ListParams::default()).await?;
        let running: Vec<String> = list
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
            .collect();
        Ok((running.len() == 30).then_some(running))
    })
    .await?;
    let mut distinct = used.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "bin packing uses 4 nodes: {distinct:?}");
    let p0 = pods.get("p00").await?;
    assert!(p0
        .status
        .and_then(|s| s.pod_ip)
        .is_some_and(|ip| ip.starts_with("10.")));

    // Pods that fit nowhere: kube-scheduler's words.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    pods.create(
        &PostParams::default(),
        &pod("too-big", "100", serde_json::json!({}))?,
    )
    .await?;
    pods.create(
        &PostParams::default(),
        &pod(
            "wants-ssd",
            "100m",
            serde_json::json!({"nodeSelector": {"disk": "ssd"}}),
        )?,
    )
    .await?;
    let msg = wait_for(30, "FailedScheduling for too-big", || {
        failed_scheduling(&events, "too-big")
    })
    .await?;
    assert_eq!(
        msg,
        "0/5 nodes are available: 5 Insufficient cpu. preemption: 0/5 nodes are available: 5 No preemption victims found for incoming pod."
    );
    let msg = wait_for(30, "FailedScheduling for wants-ssd", || {
        failed_scheduling(&events, "wants-ssd")
    })
    .await?;
    assert_eq!(
        msg,
        "0/5 nodes are available: 5 node(s) didn't match Pod's node affinity/selector. preemption: 0/5 nodes are available: 5 Preemption is not helpful for scheduling."
    );
    pods.delete("too-big", &Default::default()).await?;
    pods.delete("wants-ssd", &Default::default()).await?;

    // Preemption: fill the empty node with one low-priority pod, then a
    // high-priority pod that fits nowhere evicts it (the fewest victims).
    pods.create(
        &PostParams::default(),
        &pod("filler", "3900m", serde_json::json!({}))?,
    )
    .await?;
    let filler_node = wait_for(30, "filler bound", || node_of(&pods, "filler")).await?;
    let classes: Api<PriorityClass> = Api::all(client.clone());
    let high: PriorityClass = serde_json::from_value(serde_json::json!({
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": "high"}, "value": 1000,
    }))?;
    classes.create(&PostParams::default(), &high).await?;
    // Let the scheduler's PriorityClass watch see it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    pods.create(
        &PostParams::default(),
        &pod("vip", "2", serde_json::json!({"priorityClassName": "high"}))?,
    )
    .await?;
    let vip_node = wait_for(60, "vip bound after preemption", || node_of(&pods, "vip")).await?;
    assert_eq!(vip_node, filler_node);
    wait_for(30, "filler gone", || async {
        Ok(pods.get_opt("filler").await?.is_none().then_some(()))
    })
    .await?;

    // Only the Lease holder schedules.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let lease = leases.get("skiff-scheduler").await?;
    assert!(lease
        .spec
        .and_then(|s| s.holder_identity)
        .is_some_and(|h| !h.is_empty()));

    let _ = stop_tx.send(());
    hollow.await??;
    Ok(())
}
