//! `skiff bench apiserver`: the API server under load, measured from the
//! outside with kube-rs like any client: pod creates from concurrent
//! clients, a full list, many watchers each receiving one update, and the
//! server's resident memory (from `/proc/PID/status` when given its pid).
//!
//! Pods go into a fresh namespace with `spec.nodeName` set to a node that
//! does not exist, so neither the scheduler nor an agent acts on them; the
//! namespace is deleted at the end.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent};
use serde_json::json;
use skiff_client::quantile;

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Pods to create.
    pub pods: usize,
    /// Concurrent creating clients.
    pub clients: usize,
    /// Watchers that each wait for one update.
    pub watchers: usize,
    /// The server's pid, to report its resident memory.
    pub server_pid: Option<u32>,
    /// Leave the namespace and its pods in place afterwards (to inspect or
    /// time by hand); it is deleted otherwise.
    pub keep_namespace: bool,
}

/// Why the benchmark stopped.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The client could not be built (URL, CA, token).
    #[error("client: {0}")]
    Client(String),
    /// A request failed.
    #[error("{what}: {source}")]
    Request {
        /// The step.
        what: &'static str,
        /// The cause.
        source: kube::Error,
    },
    /// A watcher did not see the update in time.
    #[error("watchers: {0}")]
    Watch(String),
}

/// How long a watcher may wait for the update.
const WATCH_WAIT: Duration = Duration::from_secs(60);

fn client(url: &str, ca_pem: &str, token: &str) -> Result<kube::Client, BenchError> {
    skiff_client::kube_client(url, ca_pem, token).map_err(|e| BenchError::Client(e.to_string()))
}

/// Resident memory of `pid` in MiB (`VmRSS`).
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU seconds `pid` has used so far (utime + stime from
/// `/proc/PID/stat`; Linux counts them in `USER_HZ` ticks, 100 on every
/// architecture Skiff builds for).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its ')'.
    // utime and stime are fields 14 and 15, the 12th and 13th after it.
    let (_, after) = stat.rsplit_once(')')?;
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn pod(name: &str) -> Result<Pod, BenchError> {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {
            "nodeName": "skiff-bench-no-such-node",
            "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"],
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}],
        },
    }))
    .map_err(|e| BenchError::Client(e.to_string()))
}

/// Runs the benchmark against the server at `url` and returns a table of
/// results.
pub async fn bench_api(
    url: &str,
    ca_pem: &str,
    token: &str,
    config: &BenchConfig,
) -> Result<String, BenchError> {
    let client = client(url, ca_pem, token)?;
    let ns_name = format!("skiff-bench-{}", rand::random::<u32>());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": ns_name}}))
        .map_err(|e| BenchError::Client(e.to_string()))?;
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .map_err(|source| BenchError::Request {
            what: "create namespace",
            source,
        })?;
    let result = run(&client, &ns_name, config).await;
    if !config.keep_namespace {
        // Namespace deletion removes every pod at once.
        let _ = namespaces.delete(&ns_name, &DeleteParams::default()).await;
    }
    result
}

async fn run(client: &kube::Client, ns: &str, config: &BenchConfig) -> Result<String, BenchError> {
    let mut out = String::new();
    let rss = |label: &str, out: &mut String| {
        if let Some(mib) = config.server_pid.and_then(rss_mib) {
            out.push_str(&format!("{label:<34} {mib:>10.1} MiB\n"));
        }
    };
    out.push_str(&format!(
        "skiff bench apiserver: {} pods, {} clients, {} watchers\n",
        config.pods, config.clients, config.watchers
    ));
    rss("server RSS before", &mut out);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);

    // Creates from `clients` concurrent tasks.
    let cpu_before = config.server_pid.and_then(cpu_seconds);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..config.clients.max(1) {
        let (pods, next, total) = (pods.clone(), next.clone(), config.pods);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, BenchError>(lat);
                }
                let p = pod(&format!("bench-{i:06}"))?;
                let t = Instant::now();
                pods.create(&PostParams::default(), &p)
                    .await
                    .map_err(|source| BenchError::Request {
                        what: "create pod",
                        source,
                    })?;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(
            t.await
                .map_err(|e| BenchError::Client(format!("create task: {e}")))??,
        );
    }
    let elapsed = started.elapsed();
    lat.sort();
    out.push_str(&format!(
        "{:<34} {:>10.0} /s\n{:<34} {:>13}\n{:<34} {:>13}\n",
        "pod creates",
        config.pods as f64 / elapsed.as_secs_f64().max(1e-9),
        "create latency p50",
        ms(quantile(&lat, 0.5)),
        "create latency p99",
        ms(quantile(&lat, 0.99)),
    ));
    // CPU per create holds up on a busy machine, where the rate does not.
    if let (Some(before), Some(after)) = (cpu_before, config.server_pid.and_then(cpu_seconds)) {
        out.push_str(&format!(
            "{:<34} {:>10.3} ms\n",
            "server CPU per create",
            (after - before) * 1000.0 / config.pods.max(1) as f64
        ));
    }
    rss("server RSS with the pods", &mut out);

    // Lists: the median of three, timed to the last byte of the raw
    // response (decoding into typed Pods would measure the client).
    let mut lists = Vec::new();
    let mut count = 0;
    let mut list_rv = String::new();
    for _ in 0..3 {
        let req = http::Request::get(format!("/api/v1/namespaces/{ns}/pods"))
            .body(Vec::new())
            .map_err(|e| BenchError::Client(e.to_string()))?;
        let t = Instant::now();
        let text = client
            .request_text(req)
            .await
            .map_err(|source| BenchError::Request {
                what: "list pods",
                source,
            })?;
        lists.push(t.elapsed());
        let l: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| BenchError::Client(e.to_string()))?;
        count = l["items"].as_array().map_or(0, Vec::len);
        list_rv = l["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
    }
    lists.sort();
    out.push_str(&format!(
        "{:<34} {:>13}\n",
        format!("list {count} pods (median of 3)"),
        ms(lists[1])
    ));
    rss("server RSS after lists", &mut out);

    // Watchers, each waiting for one update of one pod.
    if config.watchers > 0 && config.pods > 0 {
        let mut streams = Vec::new();
        let wp = kube::api::WatchParams::default()
            .fields("metadata.name=bench-000000")
            .timeout(120);
        for _ in 0..config.watchers {
            let s = pods
                .watch(&wp, &list_rv)
                .await
                .map_err(|source| BenchError::Request {
                    what: "watch pods",
                    source,
                })?;
            streams.push(s.boxed());
        }
        rss("server RSS with the watchers", &mut out);
        let patch = json!({"metadata": {"labels": {"touched": "yes"}}});
        let sent = Instant::now();
        pods.patch(
            "bench-000000",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|source| BenchError::Request {
            what: "patch pod",
            source,
        })?;
        let waits: Vec<_> = streams
            .into_iter()
            .map(|mut s| {
                tokio::spawn(async move {
                    loop {
                        match tokio::time::timeout(WATCH_WAIT, s.next()).await {
                            Ok(Some(Ok(WatchEvent::Modified(_)))) => return Some(sent.elapsed()),
                            Ok(Some(Ok(WatchEvent::Bookmark(_)))) => continue,
                            _ => return None,
                        }
                    }
                })
            })
            .collect();
        let mut got = Vec::new();
        for w in waits {
            if let Ok(Some(d)) = w.await {
                got.push(d);
            }
        }
        got.sort();
        if got.len() < config.watchers {
            return Err(BenchError::Watch(format!(
                "only {} of {} watchers saw the update",
                got.len(),
                config.watchers
            )));
        }
        out.push_str(&format!(
            "{:<34} {:>13}\n{:<34} {:>13}\n{:<34} {:>13}\n",
            format!("{} watchers: update seen p50", got.len()),
            ms(quantile(&got, 0.5)),
            "update seen p99",
            ms(quantile(&got, 0.99)),
            "update seen by all",
            ms(got.last().copied().unwrap_or_default()),
        ));
    }
    Ok(out)
}
