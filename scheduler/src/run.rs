//! The scheduler's loop: watch nodes and pods, run the core, bind.
//!
//! ```text
//!  watch nodes ─┐                         ┌─> POST pods/<name>/binding
//!               ├─> snapshot ─> core ─────┤
//!  watch pods ──┘                         └─> FailedScheduling event +
//!                                              PodScheduled=False condition
//! ```
//!
//! Unschedulable pods are retried only after the cluster changed (a node
//! changed, or a bound pod was deleted or finished), never in a busy loop.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

use futures::{stream, StreamExt};
use k8s_openapi::api::core::v1::{Binding, Event as CoreEvent, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::Client;

use crate::core::{schedule, Placement};
use crate::snapshot::{
    holds_resources, node_info, pending_pod, pod_key, wants_scheduling, DEFAULT_SCHEDULER_NAME,
};

/// What can stop the scheduler loop.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// A watch stream ended, which only happens when the client is dropped.
    #[error("watch of {0} ended")]
    WatchEnded(&'static str),
}

enum Change {
    Node(Box<Event<Node>>),
    Pod(Box<Event<Pod>>),
}

/// Cluster state as seen through the watches.
#[derive(Default)]
struct Cache {
    nodes: BTreeMap<String, Node>,
    pods: HashMap<String, Pod>,
    /// Bumped whenever something that could make room or add a node changes.
    epoch: u64,
    /// Pods that fit nowhere, with the epoch at which they were tried.
    unschedulable: HashMap<String, u64>,
}

impl Cache {
    fn apply(&mut self, change: Change) {
        match change {
            Change::Node(e) => self.apply_node(*e),
            Change::Pod(e) => self.apply_pod(*e),
        }
    }

    fn apply_node(&mut self, event: Event<Node>) {
        match event {
            Event::Apply(n) | Event::InitApply(n) => {
                self.epoch += 1;
                self.nodes
                    .insert(n.metadata.name.clone().unwrap_or_default(), n);
            }
            Event::Delete(n) => {
                self.epoch += 1;
                self.nodes
                    .remove(n.metadata.name.as_deref().unwrap_or_default());
            }
            Event::Init => self.nodes.clear(),
            Event::InitDone => self.epoch += 1,
        }
    }

    fn apply_pod(&mut self, event: Event<Pod>) {
        match event {
            Event::Apply(p) | Event::InitApply(p) => {
                let key = pod_key(&p);
                // A pod that stopped holding resources frees room.
                if self
                    .pods
                    .get(&key)
                    .is_some_and(|old| holds_resources(old) && !holds_resources(&p))
                {
                    self.epoch += 1;
                }
                self.pods.insert(key, p);
            }
            Event::Delete(p) => {
                let key = pod_key(&p);
                if self
                    .pods
                    .remove(&key)
                    .is_some_and(|old| holds_resources(&old))
                {
                    self.epoch += 1;
                }
                self.unschedulable.remove(&key);
            }
            Event::Init => self.pods.clear(),
            Event::InitDone => self.epoch += 1,
        }
    }
}

/// Runs the scheduler until `shutdown` completes.
pub async fn run(
    client: Client,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), SchedulerError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let node_events = watcher::watcher(nodes, watcher::Config::default())
        .map(|e| e.map(|e| Change::Node(Box::new(e))))
        .boxed();
    let pod_events = watcher::watcher(pods, watcher::Config::default())
        .map(|e| e.map(|e| Change::Pod(Box::new(e))))
        .boxed();
    let mut changes = stream::select(node_events, pod_events);
    let mut cache = Cache::default();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            next = changes.next() => {
                match next {
                    None => return Err(SchedulerError::WatchEnded("nodes/pods")),
                    Some(Ok(change)) => cache.apply(change),
                    Some(Err(e)) => {
                        // kube's watcher retries by itself; back off a little.
                        tracing::warn!(error = %e, "scheduler watch error");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                }
                // Take every change already waiting before one pass, so a burst
                // of pod creations is placed as one batch.
                while let Some(Some(Ok(change))) = changes.next().now_or_never_ready() {
                    cache.apply(change);
                }
                schedule_pass(&client, &mut cache).await;
            }
        }
    }
}

/// `StreamExt::next().now_or_never()` spelled for readability.
trait NowOrNever: Future + Sized {
    fn now_or_never_ready(self) -> Option<Self::Output> {
        futures::FutureExt::now_or_never(self)
    }
}
impl<F: Future> NowOrNever for F {}

async fn schedule_pass(client: &Client, cache: &mut Cache) {
    let epoch = cache.epoch;
    let mut pending: Vec<&Pod> = cache
        .pods
        .values()
        .filter(|p| wants_scheduling(p))
        .filter(|p| {
            cache
                .unschedulable
                .get(&pod_key(p))
                .is_none_or(|tried| *tried < epoch)
        })
        .collect();
    if pending.is_empty() {
        return;
    }
    // Oldest first, as kube-scheduler's default queue sort (by creation, then name).
    pending.sort_by(|a, b| {
        (
            a.metadata.creation_timestamp.as_ref().map(|t| t.0),
            pod_key(a),
        )
            .cmp(&(
                b.metadata.creation_timestamp.as_ref().map(|t| t.0),
                pod_key(b),
            ))
    });
    let mut nodes: Vec<_> = cache.nodes.values().map(node_info).collect();
    let index: HashMap<String, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.clone(), i))
        .collect();
    for pod in cache.pods.values().filter(|p| holds_resources(p)) {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or_default();
        if let Some(&i) = index.get(node) {
            let r = crate::snapshot::pod_requests(pod);
            let n = &mut nodes[i].requested;
            n.cpu_millis += r.cpu_millis;
            n.memory += r.memory;
            n.pods += r.pods;
        }
    }
    let inputs: Vec<_> = pending.iter().map(|p| pending_pod(p)).collect();
    let placements = schedule(&mut nodes, &inputs);
    for placement in placements {
        match placement {
            Placement::Bind { pod, node } => {
                if let Err(e) = bind(client, &pod, &node).await {
                    tracing::warn!(%pod, %node, error = %e, "binding failed; will retry on the next change");
                    continue;
                }
                cache.unschedulable.remove(&pod);
                // Assume the binding so the next pass counts it before the watch
                // delivers the update.
                if let Some(p) = cache.pods.get_mut(&pod) {
                    if let Some(spec) = p.spec.as_mut() {
                        spec.node_name = Some(node.clone());
                    }
                }
                tracing::info!(%pod, %node, "bound");
            }
            Placement::Unschedulable { pod, message } => {
                let first_time = !cache.unschedulable.contains_key(&pod);
                cache.unschedulable.insert(pod.clone(), epoch);
                if let Some(p) = cache.pods.get(&pod) {
                    report_unschedulable(client, p, &message, first_time).await;
                }
            }
        }
    }
}

fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("default", key))
}

async fn bind(client: &Client, key: &str, node: &str) -> Result<(), kube::Error> {
    let (ns, name) = split_key(key);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(ns.to_string()),
            ..Default::default()
        },
        target: ObjectReference {
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            api_version: Some("v1".into()),
            ..Default::default()
        },
    };
    let _: serde_json::Value = pods
        .create_subresource("binding", name, &PostParams::default(), &binding)
        .await?;
    Ok(())
}

/// Sets `PodScheduled=False` with reason `Unschedulable` and records a
/// `FailedScheduling` warning event, as kube-scheduler does.
async fn report_unschedulable(client: &Client, pod: &Pod, message: &str, first_time: bool) {
    let key = pod_key(pod);
    let (ns, name) = split_key(&key);
    let (ns, name) = (ns.to_string(), name.to_string());
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = serde_json::json!({"status": {"conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": message, "lastTransitionTime": now, "lastProbeTime": null,
    }]}});
    if let Err(e) = pods
        .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&status))
        .await
    {
        tracing::warn!(pod = %name, error = %e, "could not set PodScheduled=False");
    }
    if !first_time {
        return;
    }
    let events: Api<CoreEvent> = Api::namespaced(client.clone(), &ns);
    let event = CoreEvent {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}.")),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            kind: Some("Pod".into()),
            api_version: Some("v1".into()),
            namespace: Some(ns.clone()),
            name: Some(name.clone()),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        },
        reason: Some("FailedScheduling".into()),
        message: Some(message.to_string()),
        type_: Some("Warning".into()),
        reporting_component: Some(DEFAULT_SCHEDULER_NAME.into()),
        source: Some(k8s_openapi::api::core::v1::EventSource {
            component: Some(DEFAULT_SCHEDULER_NAME.into()),
            host: None,
        }),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now.clone()),
        event_time: Some(MicroTime(now.0)),
        count: Some(1),
        ..Default::default()
    };
    if let Err(e) = events.create(&PostParams::default(), &event).await {
        tracing::warn!(pod = %name, error = %e, "could not record FailedScheduling event");
    }
}
