//! Test kit for the controllers' integration tests: a real
//! `skiff server --no-agent` in a temporary directory (killed and removed
//! on drop, also when a test fails), a kube client from its admin
//! kubeconfig, fake nodes, and a fake kubelet that marks bound pods
//! Running and Ready and finishes their graceful deletion, and the
//! controllers started in the test process.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// The `skiff` binary: `SKIFF_BIN`, else `$CARGO_TARGET_DIR/debug/skiff`,
/// else `<workspace>/target/debug/skiff`.
pub fn skiff_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SKIFF_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("debug/skiff")
}

/// A running `skiff server --no-agent`.
pub struct Server {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Server {
    pub fn start() -> anyhow::Result<Server> {
        Self::start_with(&[])
    }

    /// Starts the server with extra arguments (e.g. `--no-controllers` for a
    /// test that runs its own controller set).
    pub fn start_with(extra: &[&str]) -> anyhow::Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix("skiff-ctl-")
            .tempdir_in("/var/tmp")?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let child = Command::new(skiff_bin())
            .args(["server", "--no-agent", "--no-etcd-api", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", skiff_bin().display()))?;
        Ok(Server {
            dir,
            child: Some(child),
        })
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("data/admin.kubeconfig")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Waits until the API answers and returns an admin client.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last_error = String::new();
        loop {
            if self.kubeconfig().exists() {
                let kc = kube::config::Kubeconfig::read_from(self.kubeconfig())?;
                let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
                let client = Client::try_from(config)?;
                match client.apiserver_version().await {
                    Ok(_) => return Ok(client),
                    Err(e) => last_error = format!("{e:?}"),
                }
            }
            if Instant::now() > deadline {
                bail!("server did not come up ({last_error}):\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `f` every 200 ms until it returns `Some`, or fails after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Registers a Ready node with room for many pods.
pub async fn create_node(client: &Client, name: &str) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
    }))?;
    nodes.create(&PostParams::default(), &node).await?;
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = json!({"status": {
        "capacity": {"cpu": "8", "memory": "16Gi", "pods": "110"},
        "allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "lastHeartbeatTime": now, "lastTransitionTime": now}],
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

/// A fake kubelet for every node named in `nodes`: pods bound there become
/// Running and Ready; pods being deleted are removed (`gracePeriodSeconds=0`),
/// as an agent does once their containers stopped.
pub fn spawn_fake_kubelet(client: Client, nodes: Vec<String>) -> tokio::task::JoinHandle<()> {
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
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                continue;
            };
            if !nodes.contains(&node) {
                continue;
            }
            let ns = pod.namespace().unwrap_or_default();
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            if pod.metadata.deletion_timestamp.is_some() {
                let _ = pods
                    .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
                    .await;
                continue;
            }
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready {
                continue;
            }
            let now = k8s_openapi::jiff::Timestamp::now().to_string();
            let status = json!({"status": {
                "phase": "Running",
                "startTime": now,
                "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": now},
                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                ],
            }});
            let _ = pods
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Strategic(&status),
                )
                .await;
        }
    })
}

/// Runs the real kubectl; returns (success, stdout + stderr).
pub async fn kubectl(server: &Server, args: &[&str]) -> anyhow::Result<(bool, String)> {
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
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// What one kubectl run printed.
pub struct KubectlRun {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the stock kubectl against `server` with `stdin` as its input;
/// never fails on kubectl's own exit code (callers check it).
pub async fn kubectl_run(
    server: &Server,
    args: &[&str],
    stdin: &str,
) -> anyhow::Result<KubectlRun> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("kubectl")
        .env("KUBECONFIG", server.kubeconfig())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting kubectl")?;
    let mut input = child.stdin.take().context("kubectl stdin")?;
    input.write_all(stdin.as_bytes()).await?;
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .context("kubectl did not finish in 120 s")??;
    Ok(KubectlRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Starts the controllers in this process (the server runs with
/// `--no-controllers`); the returned sender stops them.
pub fn start_controllers(
    client: &Client,
    config: skiff_controllers::ControllersConfig,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    // Logs of the controllers, shown for failing tests (RUST_LOG to tune).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "skiff_controllers=debug".into()),
        )
        .with_test_writer()
        .try_init();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let client = client.clone();
    let task = tokio::spawn(async move {
        let r = skiff_controllers::run_controllers(client, config, async {
            let _ = rx.await;
        })
        .await;
        assert!(r.is_ok(), "run_controllers: {r:?}");
    });
    (tx, task)
}
