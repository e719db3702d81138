//! `skiff bench controllers`: the Deployment and ReplicaSet controllers at
//! scale (issue #7): a Deployment of tiny pods scaled from 0 to N on hollow
//! nodes, a rolling update of all N, and the scale back to 0, with the
//! server's CPU and memory during each phase.
//!
//! ```text
//!  this process                               skiff server --no-agent (pid P)
//!  ─────────────                              ─────────────────────────────
//!  hollow nodes (skiff_agent::hollow) ─────>  API server, store, scheduler,
//!  pod watch (counts Running pods per         controllers (Deployment →
//!  template revision)                         ReplicaSet → pods)
//!  PATCH deployment (replicas, template)
//!  /proc/P/stat utime+stime, /proc/P/status VmRSS/VmHWM per phase
//! ```
//!
//! The hollow nodes run in this process, so the server's CPU figures are the
//! control plane's alone. By default the server is started here on a
//! temporary data directory and killed at the end; `--kubeconfig` and
//! `--server-pid` measure a running `skiff server --no-agent` instead.
//!
//! Phases of one run, each timed from the PATCH that starts it:
//! - scale 0 → N: until the watch has seen N pods of the Deployment Running;
//! - rolling update (an env var of the template changes; maxSurge and
//!   maxUnavailable 25%): until the Deployment's status is complete
//!   (observedGeneration current, updated = available = replicas = N) and
//!   the watch sees no pod of the old template;
//! - scale N → 0: until the watch sees no pod left.
//!
//! The peak RSS of a phase is `VmHWM` after resetting it through
//! `/proc/P/clear_refs` at the phase's start (or, if that write is refused,
//! the largest `VmRSS` sampled every 100 ms).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::Client;

/// Namespace of the benchmark's Deployment.
const NAMESPACE: &str = "skiff-bench-controllers";
/// The Deployment's name.
const DEPLOYMENT: &str = "bench";
/// Env var whose value is the template revision the pod was made from.
const REVISION_ENV: &str = "BENCH_REVISION";
/// Prefix of the hollow nodes' names.
const NODE_PREFIX: &str = "bench-ctl-";
/// How long a server started here may take to answer.
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(120);
/// How often phases check their end condition and sample memory.
const POLL: Duration = Duration::from_millis(100);

/// Settings of `skiff bench controllers`.
pub struct ControllersBench {
    /// Hollow nodes to start.
    pub nodes: usize,
    /// Replicas of the Deployment.
    pub replicas: usize,
    /// Repetitions; each is printed, then the medians.
    pub runs: usize,
    /// How long one phase may take before the run is abandoned.
    pub phase_timeout: Duration,
    /// A running server to measure (its admin kubeconfig and pid) instead
    /// of one started here.
    pub server: Option<(PathBuf, u32)>,
}

/// Runs the benchmark and prints its tables.
pub async fn run(cfg: ControllersBench) -> anyhow::Result<()> {
    let (owned, kubeconfig, pid) = match &cfg.server {
        Some((kubeconfig, pid)) => (None, kubeconfig.clone(), *pid),
        None => {
            let server = OwnServer::start().await?;
            let (k, p) = (server.kubeconfig(), server.pid());
            (Some(server), k, p)
        }
    };
    let (url, ca_pem, token) = crate::bench_cmd::read_kubeconfig(&kubeconfig)?;
    let client = skiff_client::kube_client(&url, &ca_pem, &token)?;
    let result = run_against(&cfg, client.clone(), pid).await;
    if owned.is_none() {
        // A server we did not start keeps running: leave it as we found it.
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let _ = namespaces.delete(NAMESPACE, &DeleteParams::default()).await;
        skiff_agent::hollow::delete_hollow_nodes(client, cfg.nodes, NODE_PREFIX).await;
    }
    drop(owned);
    result
}

async fn run_against(cfg: &ControllersBench, client: Client, pid: u32) -> anyhow::Result<()> {
    let hollow = crate::bench_cmd::HollowNodes::start(client.clone(), cfg.nodes, NODE_PREFIX)
        .await
        .context("starting hollow nodes")?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    match namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}}))?,
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e).context("creating the benchmark namespace"),
    }
    let mut all = Vec::new();
    let mut result = Ok(());
    for run in 1..=cfg.runs {
        match one_run(cfg, &client, pid).await {
            Ok(phases) => {
                println!(
                    "run {run}: {} hollow nodes, Deployment of {} pods, server pid {pid}",
                    cfg.nodes, cfg.replicas
                );
                println!("{}", table(&phases));
                all.push(phases);
            }
            Err(e) => {
                result = Err(e.context(format!("run {run}")));
                break;
            }
        }
    }
    hollow.stop().await;
    result?;
    if cfg.runs > 1 {
        println!("median of {} runs", all.len());
        println!("{}", table(&median(&all)));
    }
    Ok(())
}

/// A `skiff server --no-agent` started by this command on a temporary data
/// directory; killed (by pid) and its directory removed when dropped.
struct OwnServer {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OwnServer {
    async fn start() -> anyhow::Result<OwnServer> {
        let dir = tempfile::Builder::new()
            .prefix("skiff-bench-controllers-")
            .tempdir_in("/var/tmp")?;
        let port = skiff_store::etcd_process::free_port()?;
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let child = Command::new(std::env::current_exe()?)
            .arg("server")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--no-etcd-api", "--no-agent"])
            // Hollow pods get fake IPs: no node IPAM needed.
            .arg("--cluster-cidr=")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting skiff server")?;
        let mut server = OwnServer { child, dir };
        let started = Instant::now();
        loop {
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "skiff server exited with {status}:\n{}",
                    crate::bench_store::log_tail(&server.dir.path().join("server.log"))
                );
            }
            if server.kubeconfig().exists() {
                let (url, ca, token) = crate::bench_cmd::read_kubeconfig(&server.kubeconfig())?;
                let client = skiff_client::kube_client(&url, &ca, &token)?;
                if client.apiserver_version().await.is_ok() {
                    eprintln!(
                        "skiff server pid {} answering after {:.1} s (data in {})",
                        server.pid(),
                        started.elapsed().as_secs_f64(),
                        server.dir.path().display()
                    );
                    return Ok(server);
                }
            }
            if started.elapsed() > SERVER_START_TIMEOUT {
                bail!("skiff server not answering after {SERVER_START_TIMEOUT:?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("data/admin.kubeconfig")
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// What one phase cost.
#[derive(Clone, Debug, Default)]
struct PhaseResult {
    name: String,
    /// Pods created or deleted (for pods/s; 0: not a rate).
    pods: usize,
    seconds: f64,
    cpu_seconds: f64,
    peak_kib: u64,
    end_kib: u64,
}

fn table(phases: &[PhaseResult]) -> String {
    let mib = |k: u64| format!("{:.0} MiB", k as f64 / 1024.0);
    let mut out = String::from(
        "| phase | seconds | pods/s | server CPU s | cores | RSS peak | RSS end |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for p in phases {
        let rate = if p.pods > 0 && p.seconds > 0.0 {
            format!("{:.0}", p.pods as f64 / p.seconds)
        } else {
            "-".into()
        };
        let cores = if p.seconds > 0.0 {
            p.cpu_seconds / p.seconds
        } else {
            0.0
        };
        let _ = writeln!(
            out,
            "| {} | {:.1} | {rate} | {:.1} | {cores:.2} | {} | {} |",
            p.name,
            p.seconds,
            p.cpu_seconds,
            mib(p.peak_kib),
            mib(p.end_kib)
        );
    }
    out
}

/// Column-wise medians of several runs (phases matched by position).
fn median(runs: &[Vec<PhaseResult>]) -> Vec<PhaseResult> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    let mid = |mut v: Vec<f64>| -> f64 {
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => 0.0,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    };
    (0..first.len())
        .map(|i| {
            let col =
                |f: &dyn Fn(&PhaseResult) -> f64| mid(runs.iter().map(|r| f(&r[i])).collect());
            PhaseResult {
                name: first[i].name.clone(),
                pods: first[i].pods,
                seconds: col(&|p| p.seconds),
                cpu_seconds: col(&|p| p.cpu_seconds),
                peak_kib: col(&|p| p.peak_kib as f64) as u64,
                end_kib: col(&|p| p.end_kib as f64) as u64,
            }
        })
        .collect()
}

/// The server's CPU seconds so far (utime + stime).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    skiff_apiserver::bench::cpu_seconds(pid)
        .with_context(|| format!("reading /proc/{pid}/stat (is the server running?)"))
}

/// A `kB` field of /proc/PID/status.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The server's resources from the start of a phase.
struct Meter {
    pid: u32,
    started: Instant,
    cpu_at_start: f64,
    /// Whether VmHWM was reset, so it is this phase's peak.
    hwm_reset: bool,
    sampled_peak_kib: u64,
}

impl Meter {
    fn start(pid: u32) -> anyhow::Result<Meter> {
        // Writing 5 to clear_refs resets the peak RSS (proc(5)).
        let hwm_reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
        Ok(Meter {
            pid,
            started: Instant::now(),
            cpu_at_start: cpu_seconds(pid)?,
            hwm_reset,
            sampled_peak_kib: 0,
        })
    }

    fn sample(&mut self) {
        if let Some(k) = status_kib(self.pid, "VmRSS:") {
            self.sampled_peak_kib = self.sampled_peak_kib.max(k);
        }
    }

    fn finish(mut self, name: &str, pods: usize) -> anyhow::Result<PhaseResult> {
        let seconds = self.started.elapsed().as_secs_f64();
        self.sample();
        let cpu = cpu_seconds(self.pid)? - self.cpu_at_start;
        let hwm = if self.hwm_reset {
            status_kib(self.pid, "VmHWM:").unwrap_or(0)
        } else {
            0
        };
        Ok(PhaseResult {
            name: name.to_string(),
            pods,
            seconds,
            cpu_seconds: cpu,
            peak_kib: hwm.max(self.sampled_peak_kib),
            end_kib: status_kib(self.pid, "VmRSS:").unwrap_or(0),
        })
    }
}

/// The benchmark namespace's pods as the watch last saw them.
#[derive(Default)]
struct PodView {
    /// False while the watch (re)lists: counts are not to be trusted.
    synced: bool,
    /// Template revision and whether Running, by pod name.
    pods: HashMap<String, (String, bool)>,
}

impl PodView {
    fn running_of(&self, revision: &str) -> usize {
        self.pods
            .values()
            .filter(|(r, running)| *running && r == revision)
            .count()
    }

    fn others_than(&self, revision: &str) -> usize {
        self.pods.values().filter(|(r, _)| r != revision).count()
    }
}

/// The guarded value, also after a panic elsewhere poisoned the lock (the
/// bench's counters stay readable).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn revision_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.env.as_ref())
        .and_then(|env| env.iter().find(|e| e.name == REVISION_ENV))
        .and_then(|e| e.value.clone())
        .unwrap_or_default()
}

/// Keeps `view` current from a watch of the benchmark namespace's pods.
fn watch_pods(client: Client) -> (Arc<Mutex<PodView>>, tokio::task::JoinHandle<()>) {
    let view: Arc<Mutex<PodView>> = Default::default();
    let api: Api<Pod> = Api::namespaced(client, NAMESPACE);
    let v = view.clone();
    let task = tokio::spawn(async move {
        let mut events = watcher::watcher(api, watcher::Config::default()).boxed();
        while let Some(event) = events.next().await {
            let Ok(event) = event else {
                // The watcher retries by relisting; wait a moment first.
                tokio::time::sleep(POLL).await;
                continue;
            };
            let mut view = lock(&v);
            match event {
                Event::Init => {
                    view.synced = false;
                    view.pods.clear();
                }
                Event::InitDone => view.synced = true,
                Event::Apply(p) | Event::InitApply(p) => {
                    let running = p.status.as_ref().and_then(|s| s.phase.as_deref())
                        == Some("Running")
                        && p.metadata.deletion_timestamp.is_none();
                    let name = p.metadata.name.clone().unwrap_or_default();
                    view.pods.insert(name, (revision_of(&p), running));
                }
                Event::Delete(p) => {
                    view.pods
                        .remove(p.metadata.name.as_deref().unwrap_or_default());
                }
            }
        }
    });
    (view, task)
}

fn deployment(replicas: usize, revision: &str) -> anyhow::Result<Deployment> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT, "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": DEPLOYMENT}},
            "template": {
                "metadata": {"labels": {"app": DEPLOYMENT}},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{
                        "name": "c",
                        "image": "skiff.local/busybox:1",
                        "command": ["sleep", "3600"],
                        "env": [{"name": REVISION_ENV, "value": revision}],
                        "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}},
                    }],
                },
            },
        },
    }))?)
}

/// Polls every [`POLL`], sampling the meter, until `done` holds; fails
/// after `timeout` with what `progress` says.
async fn wait_for(
    meter: &mut Meter,
    timeout: Duration,
    what: &str,
    mut done: impl AsyncFnMut() -> anyhow::Result<bool>,
    progress: impl Fn() -> String,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        meter.sample();
        if done().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: not done after {timeout:?} ({})", progress());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One run: create the Deployment at 0, the three phases, delete it.
async fn one_run(
    cfg: &ControllersBench,
    client: &Client,
    pid: u32,
) -> anyhow::Result<Vec<PhaseResult>> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let (view, watch) = watch_pods(client.clone());
    let result = phases(cfg, &api, &view, pid).await;
    // Whatever happened, remove the Deployment and wait for its pods to go
    // (the next run starts from an empty namespace).
    let _ = api.delete(DEPLOYMENT, &DeleteParams::background()).await;
    let deadline = Instant::now() + cfg.phase_timeout;
    while Instant::now() < deadline {
        let empty = {
            let v = lock(&view);
            v.synced && v.pods.is_empty()
        };
        if empty && matches!(api.get_opt(DEPLOYMENT).await, Ok(None)) {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    watch.abort();
    result
}

async fn phases(
    cfg: &ControllersBench,
    api: &Api<Deployment>,
    view: &Arc<Mutex<PodView>>,
    pid: u32,
) -> anyhow::Result<Vec<PhaseResult>> {
    let n = cfg.replicas;
    api.create(&PostParams::default(), &deployment(0, "1")?)
        .await
        .context("creating the Deployment")?;
    let mut results = Vec::new();

    // Scale 0 → N.
    let mut meter = Meter::start(pid)?;
    api.patch(
        DEPLOYMENT,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": n}})),
    )
    .await
    .context("scaling the Deployment up")?;
    wait_for(
        &mut meter,
        cfg.phase_timeout,
        "scale up",
        async || Ok(lock(view).running_of("1") >= n),
        || format!("{} of {n} Running", lock(view).running_of("1")),
    )
    .await?;
    results.push(meter.finish(&format!("scale 0 → {n}"), n)?);

    // Rolling update of all N.
    let mut meter = Meter::start(pid)?;
    let patched = api
        .patch(
            DEPLOYMENT,
            &PatchParams::default(),
            &Patch::Strategic(
                serde_json::json!({"spec": {"template": {"spec": {"containers": [
                    {"name": "c", "env": [{"name": REVISION_ENV, "value": "2"}]}
                ]}}}}),
            ),
        )
        .await
        .context("changing the Deployment's template")?;
    let generation = patched.metadata.generation.unwrap_or(0);
    let status_line = Arc::new(Mutex::new(String::from("no status yet")));
    wait_for(
        &mut meter,
        cfg.phase_timeout,
        "rolling update",
        async || {
            let d = api.get(DEPLOYMENT).await.context("reading the Deployment")?;
            let s = d.status.unwrap_or_default();
            *lock(&status_line) = format!(
                "observedGeneration {:?} of {generation}, replicas {:?}, updated {:?}, available {:?}, old pods {}",
                s.observed_generation,
                s.replicas,
                s.updated_replicas,
                s.available_replicas,
                lock(view).others_than("2"),
            );
            let want = Some(n as i32);
            let complete = s.observed_generation.unwrap_or(0) >= generation
                && s.replicas == want
                && s.updated_replicas == want
                && s.available_replicas == want;
            let v = lock(view);
            Ok(complete && v.synced && v.others_than("2") == 0)
        },
        || lock(&status_line).clone(),
    )
    .await?;
    results.push(meter.finish("rolling update", n)?);

    // Scale N → 0.
    let mut meter = Meter::start(pid)?;
    api.patch(
        DEPLOYMENT,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 0}})),
    )
    .await
    .context("scaling the Deployment down")?;
    wait_for(
        &mut meter,
        cfg.phase_timeout,
        "scale down",
        async || {
            let v = lock(view);
            Ok(v.synced && v.pods.is_empty())
        },
        || format!("{} pods left", lock(view).pods.len()),
    )
    .await?;
    results.push(meter.finish(&format!("scale {n} → 0"), n)?);
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(seconds: f64) -> PhaseResult {
        PhaseResult {
            name: "p".into(),
            pods: 100,
            seconds,
            cpu_seconds: seconds / 2.0,
            peak_kib: 2048,
            end_kib: 1024,
        }
    }

    #[test]
    fn medians_are_per_column() {
        let runs = vec![vec![phase(3.0)], vec![phase(1.0)], vec![phase(2.0)]];
        let m = median(&runs);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].seconds, 2.0);
        assert_eq!(m[0].cpu_seconds, 1.0);
    }

    #[test]
    fn table_shows_rate_and_cores() {
        let t = table(&[phase(2.0)]);
        assert!(
            t.contains("| p | 2.0 | 50 | 1.0 | 0.50 | 2 MiB | 1 MiB |"),
            "{t}"
        );
    }

    #[test]
    fn own_cpu_seconds_are_read() {
        assert!(cpu_seconds(std::process::id()).is_ok());
        assert!(status_kib(std::process::id(), "VmRSS:").unwrap() > 0);
    }
}
