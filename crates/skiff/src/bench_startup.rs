//! `skiff bench startup`: pod startup latency on one real node, the
//! Kubernetes SLI (creation → Running as seen through a watch), and the
//! agent's resident memory with a given number of pods.
//!
//! Pods (`skiff.local/busybox:1`, `sleep`) are created at a fixed rate in a
//! namespace of their own; a watch records when each one is first reported
//! `Running`; latency is measured from just before the create request was
//! sent (creationTimestamp has only second resolution). Then pods are
//! deleted down to `--rss-pods` and the agent's `VmRSS` is read from
//! `/proc/<agent-pid>/status` (run `skiff server --no-agent` and a separate
//! `skiff agent` to measure the agent alone; with an embedded agent the
//! figure is the whole server's). `scripts/bench_startup_cgroups.sh` runs
//! it that way, with the server, the agent and containerd's tree in cpuacct
//! cgroups of their own, and prints CPU-seconds per component.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use skiff_client::quantile;

/// How long all pods may take to be Running before the run is abandoned.
const RUNNING_TIMEOUT: Duration = Duration::from_secs(300);
/// How long deleted pods may take to disappear.
const DELETE_TIMEOUT: Duration = Duration::from_secs(120);

/// What to run.
pub struct StartupBench {
    /// Pods to create.
    pub pods: usize,
    /// Creations per second.
    pub rate: f64,
    /// Pods left running when the agent's memory is read.
    pub rss_pods: usize,
    /// The agent's process id, for its resident memory.
    pub agent_pid: Option<u32>,
}

fn pod(name: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench-startup"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": "skiff.local/busybox:1", "command": ["sleep", "3600"]}],
        },
    }))?)
}

fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Runs the benchmark with `client`; returns the table.
pub async fn run(client: kube::Client, cfg: &StartupBench) -> anyhow::Result<String> {
    let ns_name = format!("bench-startup-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": ns_name}}))?,
        )
        .await
        .context("creating the benchmark namespace")?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns_name);
    let result = measure(&pods, cfg).await;
    // Clean up whatever happened.
    let _ = pods
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
    let deadline = Instant::now() + DELETE_TIMEOUT;
    while Instant::now() < deadline {
        match pods.list(&ListParams::default()).await {
            Ok(l) if l.items.is_empty() => break,
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    let _ = namespaces.delete(&ns_name, &DeleteParams::default()).await;
    result
}

async fn measure(pods: &Api<Pod>, cfg: &StartupBench) -> anyhow::Result<String> {
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Default::default();
    let running: Arc<Mutex<HashMap<String, Duration>>> = Default::default();

    // The watch first, so no Running update is missed.
    let mut stream = pods
        .watch(&WatchParams::default(), "0")
        .await
        .context("watching pods")?
        .boxed();
    let (sent_w, running_w) = (sent.clone(), running.clone());
    let watcher = tokio::spawn(async move {
        while let Some(ev) = stream.next().await {
            let (WatchEvent::Added(p) | WatchEvent::Modified(p)) = (match ev {
                Ok(e) => e,
                Err(_) => break,
            }) else {
                continue;
            };
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            let name = p.metadata.name.clone().unwrap_or_default();
            if phase == Some("Running") {
                let at = sent_w.lock().unwrap().get(&name).copied();
                if let Some(at) = at {
                    running_w
                        .lock()
                        .unwrap()
                        .entry(name)
                        .or_insert(at.elapsed());
                }
            }
        }
    });

    let interval = Duration::from_secs_f64(1.0 / cfg.rate.max(0.1));
    let start = Instant::now();
    let mut creates = Vec::new();
    for i in 0..cfg.pods {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let name = format!("p{i:04}");
        let body = pod(&name)?;
        sent.lock().unwrap().insert(name.clone(), Instant::now());
        let pods = pods.clone();
        creates.push(tokio::spawn(async move {
            pods.create(&PostParams::default(), &body).await
        }));
    }
    for c in creates {
        c.await?.context("creating a pod")?;
    }
    let create_secs = start.elapsed().as_secs_f64();
    let deadline = Instant::now() + RUNNING_TIMEOUT;
    while running.lock().unwrap().len() < cfg.pods {
        if Instant::now() > deadline {
            watcher.abort();
            anyhow::bail!(
                "only {} of {} pods Running after {RUNNING_TIMEOUT:?}",
                running.lock().unwrap().len(),
                cfg.pods
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watcher.abort();
    let mut lat: Vec<Duration> = running.lock().unwrap().values().copied().collect();
    lat.sort();
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);

    let mut table = String::new();
    table.push_str(&format!(
        "pod startup latency (creation → Running through a watch), {} pods at {}/s (created in {create_secs:.1} s)\n",
        cfg.pods, cfg.rate
    ));
    table.push_str("| p50 | p90 | p99 | max |\n|---|---|---|---|\n");
    table.push_str(&format!(
        "| {} | {} | {} | {} |\n",
        ms(quantile(&lat, 0.5)),
        ms(quantile(&lat, 0.9)),
        ms(quantile(&lat, 0.99)),
        ms(quantile(&lat, 1.0))
    ));

    if let Some(pid) = cfg.agent_pid {
        let at_all = rss_kib(pid);
        // Delete down to rss_pods, wait until they are gone, read again.
        for i in cfg.rss_pods..cfg.pods {
            let _ = pods
                .delete(&format!("p{i:04}"), &DeleteParams::default())
                .await;
        }
        let deadline = Instant::now() + DELETE_TIMEOUT;
        loop {
            let left = pods.list(&ListParams::default()).await?.items.len();
            if left <= cfg.rss_pods || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // Let the agent settle (workers of deleted pods end).
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mib =
            |k: Option<u64>| k.map_or("?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
        table.push_str(&format!(
            "\nagent pid {pid} resident memory (VmRSS)\n| pods | RSS |\n|---|---|\n| {} | {} |\n| {} | {} |\n",
            cfg.pods,
            mib(at_all),
            cfg.rss_pods,
            mib(rss_kib(pid))
        ));
    }
    Ok(table)
}

/// The client for `kubeconfig` (URL, CA and token of Skiff's admin config).
pub fn client(url: &str, ca_pem: &str, token: &str) -> anyhow::Result<kube::Client> {
    Ok(skiff_client::kube_client(url, ca_pem, token)?)
}
