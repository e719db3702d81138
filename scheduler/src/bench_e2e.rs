//! `skiff bench scheduler` (end-to-end part): pods created through the API
//! until every one is bound, on nodes the caller registered (hollow nodes,
//! `skiff_agent::hollow`), with the scheduler of a running server.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use skiff_client::quantile;

use crate::bench::{first_fit_decreasing, lower_bound};
use crate::workload::{self, BENCH_NODE};

/// Namespace the benchmark's pods live in.
pub const BENCH_NAMESPACE: &str = "skiff-bench";
/// Pod creations in flight at once. 256 created 20,000 pods in ~5 s but
/// bound them slower (895–1,161 pods/s against 1,175–1,710 with 64, quiet
/// machine, session 10): the burst overflows watchers, whose re-lists read
/// the store at a past revision.
const CREATE_IN_FLIGHT: usize = 64;

/// Why the end-to-end benchmark failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An API call failed.
    #[error("API call failed: {0}")]
    Api(#[from] kube::Error),
    /// Not every pod was bound in time.
    #[error("only {bound} of {total} pods were bound after {waited:?}")]
    Timeout {
        /// Pods bound.
        bound: usize,
        /// Pods created.
        total: usize,
        /// How long we waited.
        waited: Duration,
    },
    /// The pod watch ended early.
    #[error("the pod watch ended")]
    WatchEnded,
}

/// What the bench reads of each pod event: the name, whether it is bound,
/// and whether the scheduler reported it unschedulable. Decoding only
/// that keeps the bench's own CPU (on the same cores as the server) low.
#[derive(Clone, Debug, Default, serde::Deserialize)]
struct BenchPod {
    #[serde(
        default,
        deserialize_with = "skiff_client::slim_pod::meta_without_managed_fields"
    )]
    metadata: ObjectMeta,
    spec: Option<BenchPodSpec>,
    status: Option<BenchPodStatus>,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct BenchPodSpec {
    node_name: Option<String>,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
struct BenchPodStatus {
    #[serde(default, deserialize_with = "skiff_client::slim_pod::null_as_default")]
    conditions: Vec<BenchCondition>,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
struct BenchCondition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
}

skiff_client::impl_slim_pod!(BenchPod);

fn pod_object(name: &str, cpu_millis: i64, memory: i64) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(BENCH_NAMESPACE.into()),
            labels: Some([("app".to_string(), "skiff-bench".to_string())].into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some("docker.io/library/busybox:latest".into()),
                resources: Some(ResourceRequirements {
                    requests: Some(
                        [
                            ("cpu".to_string(), Quantity(format!("{cpu_millis}m"))),
                            ("memory".to_string(), Quantity(memory.to_string())),
                        ]
                        .into(),
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates `pods` seeded pods of mixed sizes through the API and waits until
/// all are bound (at most `timeout`); `nodes` is how many nodes of
/// [`BENCH_NODE`]'s shape the caller registered. Returns a table: pods/s
/// end to end, nodes used, the lower bound and FFD's count. Deletes the
/// namespace's pods afterwards.
pub async fn bench_end_to_end(
    client: Client,
    nodes: usize,
    pods: usize,
    seed: u64,
    timeout: Duration,
) -> Result<String, BenchError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(BENCH_NAMESPACE.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let input = workload::pods(pods, seed);
    let api: Api<Pod> = Api::namespaced(client.clone(), BENCH_NAMESPACE);
    // Watch first, so no binding is missed.
    let watched: Api<BenchPod> = Api::namespaced(client.clone(), BENCH_NAMESPACE);
    let mut events = watcher::watcher(watched, watcher::Config::default())
        .default_backoff()
        .boxed();
    let start = Instant::now();
    let create = {
        let api = api.clone();
        let objects: Vec<Pod> = input
            .iter()
            .enumerate()
            .map(|(i, p)| {
                pod_object(
                    &format!("pod-{i:06}"),
                    p.requests.cpu_millis,
                    p.requests.memory,
                )
            })
            .collect();
        tokio::spawn(async move {
            let results = futures::stream::iter(objects)
                .map(|p| {
                    let api = api.clone();
                    async move {
                        let sent = Instant::now();
                        let result = api.create(&PostParams::default(), &p).await;
                        result.map(|_| sent.elapsed())
                    }
                })
                .buffer_unordered(CREATE_IN_FLIGHT)
                .collect::<Vec<_>>()
                .await;
            (results, start.elapsed())
        })
    };
    let mut bound: HashMap<String, String> = HashMap::new();
    // Pods the scheduler reported unschedulable (PodScheduled=False): the
    // run ends when every pod is bound or reported.
    let mut unschedulable: HashSet<String> = HashSet::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while bound.len() + unschedulable.len() < pods {
        let next = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                return Err(BenchError::Timeout { bound: bound.len(), total: pods, waited: timeout });
            }
            next = events.next() => next,
        };
        match next {
            None => return Err(BenchError::WatchEnded),
            Some(Ok(Event::Apply(p) | Event::InitApply(p))) => {
                let name = p.metadata.name.clone().unwrap_or_default();
                if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
                    unschedulable.remove(&name);
                    bound.insert(name, node);
                } else if p.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "PodScheduled" && c.status == "False")
                }) {
                    unschedulable.insert(name);
                }
            }
            Some(_) => {}
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let (created, creating) = create.await.unwrap_or_default();
    let failures = created.iter().filter(|r| r.is_err()).count();
    let mut latencies: Vec<Duration> = created
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .copied()
        .collect();
    latencies.sort();
    let used: HashSet<&String> = bound.values().collect();
    let bound_lb = lower_bound(&input, BENCH_NODE);
    let ffd = first_fit_decreasing(&input, BENCH_NODE);
    let mut out = String::new();
    let _ = writeln!(out, "scheduler end to end: {nodes} hollow nodes, {pods} pods created through the API until bound, seed {seed}");
    let _ = writeln!(
        out,
        "{:>10} {:>8} {:>10} {:>11} {:>9} {:>9} {:>9}",
        "pods/s", "bound", "nodes used", "lower bound", "FFD nodes", "÷bound", "÷FFD"
    );
    let _ = writeln!(
        out,
        "{:>10.0} {:>8} {:>10} {:>11} {:>9} {:>9.3} {:>9.3}",
        bound.len() as f64 / seconds.max(1e-9),
        bound.len(),
        used.len(),
        bound_lb,
        ffd,
        used.len() as f64 / bound_lb.max(1) as f64,
        used.len() as f64 / ffd.max(1) as f64,
    );
    let _ = writeln!(
        out,
        "(every pod created after {:.1} s: {:.0} creates/s, {CREATE_IN_FLIGHT} in flight, create p50 {:.1} ms, p99 {:.1} ms)",
        creating.as_secs_f64(),
        created.len() as f64 / creating.as_secs_f64().max(1e-9),
        quantile(&latencies, 0.50).as_secs_f64() * 1e3,
        quantile(&latencies, 0.99).as_secs_f64() * 1e3,
    );
    if !unschedulable.is_empty() {
        let _ = writeln!(out, "({} pods were unschedulable)", unschedulable.len());
    }
    if failures > 0 {
        let _ = writeln!(out, "({failures} pod creations failed)");
    }
    let _ = writeln!(out, "target: end to end ≥ 2,000 pods/s; kube-scheduler scheduler_perf at 5,000 nodes: 680 pods/s (10k pods), 810 pods/s (50k pods) on larger machines; Nomad C1M: about 3,750 containers/s across 5 servers");
    // Clean up: delete the pods at once (hollow nodes finish deletions).
    // The line below lets scripts tell the run from the clean-up.
    tracing::info!(pods, seconds, "every pod bound; deleting the pods");
    if let Err(e) = delete_all_pods(&client).await {
        tracing::warn!(error = %e, "could not delete the benchmark's pods");
    }
    Ok(out)
}

/// Deletes every pod of [`BENCH_NAMESPACE`] with one `deletecollection`.
/// Its answer lists every deleted pod (~150 MB for 50,000 pods); it is read
/// and thrown away as it arrives rather than decoded into `Pod`s, which
/// took the bench process to ~4 GB.
async fn delete_all_pods(client: &Client) -> Result<(), kube::Error> {
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    let request = kube::core::Request::new(format!("/api/v1/namespaces/{BENCH_NAMESPACE}/pods"))
        .delete_collection(&dp, &Default::default())
        .map_err(kube::Error::BuildRequest)?;
    let body = client.request_stream(request).await?;
    futures::io::copy_buf(body, &mut futures::io::sink())
        .await
        .map_err(kube::Error::ReadEvents)?;
    Ok(())
}
