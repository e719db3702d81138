//! The scheduler's loop: watch the API, run the core, write the results.
//!
//! ```text
//!  watch nodes ──────────┐                       ┌─> POST pods/<name>/binding   (≤ max_in_flight at once)
//!  watch pods ───────────┤                       ├─> PATCH status.nominatedNodeName,
//!  watch priorityclasses ┼─> State ─> core ──────┤   POST pods/<victim>/eviction
//!  watch pdbs ───────────┘  (incremental         └─> FailedScheduling event +
//!                            Cluster)                 PodScheduled=False
//!  Lease kube-system/skiff-scheduler ─> leading? (only the leader schedules)
//! ```
//!
//! - **Incremental**: the core's [`Cluster`] is kept up to date from watch
//!   events (a bound pod added or removed is one update); it is rebuilt only
//!   when a node's scheduling-relevant fields change (heartbeats do not).
//! - **Batches**: every change already waiting is applied before one pass,
//!   so a burst of creations (a ReplicaSet or Job scaling up) is placed as
//!   one batch, and its bindings go out concurrently (up to
//!   [`SchedulerOptions::max_in_flight`]) rather than one round trip at a
//!   time. A binding in flight is *assumed* in the cluster until the watch
//!   shows the pod bound; a failed binding is forgotten and retried.
//! - **Retry on change**: a pod that fits nowhere is tried again only after
//!   the cluster changed (a node changed, a bound pod went away or
//!   finished), never in a busy loop.
//! - **Priority**: `spec.priority`, or the pod's `priorityClassName` looked
//!   up in the watched PriorityClasses (the API server's Priority admission
//!   may not have resolved it).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use futures::{stream, FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::actions;
use crate::cluster::Cluster;
use crate::core::schedule;
use crate::model::{BoundPod, DisruptionBudget, NodeInfo, PendingPod, Placement};
use crate::score::Config;
use crate::slim_pod::SlimPod;
use crate::snapshot::{
    bound_pod, holds_resources, label_selector, node_info, pending_pod, pod_key, pod_priority,
    wants_scheduling,
};
use crate::volumes::VolumeState;

/// What can stop the scheduler loop.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// A watch stream ended, which only happens when the client is dropped.
    #[error("watch of {0} ended")]
    WatchEnded(&'static str),
}

/// How the loop runs.
#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    /// The core's configuration (scoring strategy, weights, batch order).
    pub config: Config,
    /// Most API writes (bindings, evictions, events) in flight at once.
    /// kube-scheduler binds each pod in a goroutine of its own, unbounded;
    /// 128 keeps a burst's bindings flowing while each waits ~30 ms for its
    /// store commit under load (32 capped a 5,000-node benchmark at ~700
    /// bindings/s with a core idle).
    pub max_in_flight: usize,
    /// Take part in leader election under this identity; `None` schedules
    /// unconditionally (one server, or tests).
    pub leader_identity: Option<String>,
}

impl Default for SchedulerOptions {
    fn default() -> SchedulerOptions {
        SchedulerOptions {
            config: Config::default(),
            max_in_flight: 128,
            leader_identity: Some(default_identity()),
        }
    }
}

/// `<hostname>_<pid>`, client-go's usual leader identity shape.
pub fn default_identity() -> String {
    skiff_client::leader::default_identity()
}

enum Change {
    Node(Box<Event<Node>>),
    Pod(Box<Event<SlimPod>>),
    Class(Box<Event<PriorityClass>>),
    Budget(Box<Event<PodDisruptionBudget>>),
    Claim(Box<Event<PersistentVolumeClaim>>),
    Volume(Box<Event<PersistentVolume>>),
    StorageClass(Box<Event<StorageClass>>),
}

/// An API write finished.
enum Done {
    Bound { pod: String, ok: bool },
    Preempted { pod: String },
    Reported,
}

/// What a pass decided to write.
enum Action {
    Bind {
        pod: String,
        node: String,
        /// `WaitForFirstConsumer` claims to annotate with the node first.
        claims: Vec<String>,
    },
    Preempt {
        pod: String,
        node: String,
        victims: Vec<String>,
        message: String,
        uid: Option<String>,
    },
    Unschedulable {
        pod: String,
        message: String,
        uid: Option<String>,
        first: bool,
    },
}

/// Cluster state as seen through the watches, plus the scheduler's own
/// bookkeeping.
#[derive(Default)]
struct State {
    nodes: BTreeMap<String, NodeInfo>,
    bound: HashMap<String, BoundPod>,
    pending: HashMap<String, SlimPod>,
    /// Bindings written but not yet seen through the watch.
    assumed: HashMap<String, BoundPod>,
    /// Pods with an API write in flight (binding or preemption).
    in_flight: HashSet<String>,
    /// Keys of `pending` pods with no write in flight: what a pass looks
    /// at. Kept alongside so a pass costs the pods it can place, not every
    /// pod still waiting for its binding to come back through the watch.
    candidates: HashSet<String>,
    cluster: Cluster,
    dirty: bool,
    /// Bumped whenever something that could make room changes.
    epoch: u64,
    /// Pods that fit nowhere, with the epoch at which they were tried.
    unschedulable: HashMap<String, u64>,
    classes: HashMap<String, i32>,
    global_default: Option<(String, i32)>,
    budgets: BTreeMap<String, DisruptionBudget>,
    volumes: VolumeState,
    nodes_synced: bool,
    pods_synced: bool,
}

fn obj_name(meta: &kube::api::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or("")
    )
}

impl State {
    fn priority(&self, pod: &SlimPod) -> i32 {
        pod_priority(
            pod,
            &self.classes,
            self.global_default.as_ref().map_or(0, |g| g.1),
        )
    }

    fn apply(&mut self, change: Change) {
        match change {
            Change::Node(e) => self.apply_node(*e),
            Change::Pod(e) => self.apply_pod(*e),
            Change::Class(e) => self.apply_class(*e),
            Change::Budget(e) => self.apply_budget(*e),
            // A claim, volume or class that changes may let a pod fit.
            Change::Claim(e) => {
                self.volumes.apply_claim(*e);
                self.epoch += 1;
            }
            Change::Volume(e) => {
                self.volumes.apply_volume(*e);
                self.epoch += 1;
            }
            Change::StorageClass(e) => {
                self.volumes.apply_class(*e);
                self.epoch += 1;
            }
        }
    }

    fn apply_node(&mut self, event: Event<Node>) {
        match event {
            Event::Apply(n) | Event::InitApply(n) => {
                let info = node_info(&n);
                if self.nodes.get(&info.name) != Some(&info) {
                    self.nodes.insert(info.name.clone(), info);
                    self.dirty = true;
                    self.epoch += 1;
                }
            }
            Event::Delete(n) => {
                if self
                    .nodes
                    .remove(n.metadata.name.as_deref().unwrap_or_default())
                    .is_some()
                {
                    self.dirty = true;
                    self.epoch += 1;
                }
            }
            Event::Init => {
                self.nodes.clear();
                self.nodes_synced = false;
            }
            Event::InitDone => {
                self.nodes_synced = true;
                self.dirty = true;
                self.epoch += 1;
            }
        }
    }

    fn forget_pending(&mut self, key: &str) {
        self.pending.remove(key);
        self.candidates.remove(key);
        self.unschedulable.remove(key);
    }

    /// An API write for `key` went out: no pass looks at it until it ends.
    fn start_write(&mut self, key: &str) {
        self.in_flight.insert(key.to_string());
        self.candidates.remove(key);
    }

    /// The write for `key` ended without the watch showing it bound.
    fn end_write(&mut self, key: &str) {
        self.in_flight.remove(key);
        if self.pending.contains_key(key) {
            self.candidates.insert(key.to_string());
        }
    }

    fn forget_bound(&mut self, key: &str) {
        if self.bound.remove(key).is_some() {
            if !self.dirty {
                self.cluster.remove_pod(key);
            }
            self.epoch += 1;
        }
    }

    fn apply_pod(&mut self, event: Event<SlimPod>) {
        match event {
            Event::Apply(p) | Event::InitApply(p) => {
                let key = pod_key(&p);
                if wants_scheduling(&p) {
                    if !self.in_flight.contains(&key) {
                        self.candidates.insert(key.clone());
                    }
                    self.pending.insert(key, p);
                    return;
                }
                self.forget_pending(&key);
                if let Some(b) = holds_resources(&p)
                    .then(|| bound_pod(&p, self.priority(&p)))
                    .flatten()
                {
                    self.in_flight.remove(&key);
                    self.assumed.remove(&key);
                    if self.bound.get(&key) != Some(&b) {
                        if !self.dirty {
                            self.cluster.add_pod(b.clone());
                        }
                        self.bound.insert(key, b);
                    }
                } else {
                    // Finished (Succeeded/Failed) or unbound and being deleted.
                    self.forget_bound(&key);
                }
            }
            Event::Delete(p) => {
                let key = pod_key(&p);
                self.forget_pending(&key);
                if self.assumed.remove(&key).is_some() && !self.dirty {
                    self.cluster.remove_pod(&key);
                }
                self.forget_bound(&key);
            }
            Event::Init => {
                self.pending.clear();
                self.candidates.clear();
                self.bound.clear();
                self.pods_synced = false;
                self.dirty = true;
            }
            Event::InitDone => {
                self.pods_synced = true;
                self.dirty = true;
                self.epoch += 1;
            }
        }
    }

    fn apply_class(&mut self, event: Event<PriorityClass>) {
        match event {
            Event::Apply(c) | Event::InitApply(c) => {
                let name = c.metadata.name.clone().unwrap_or_default();
                if c.global_default == Some(true) {
                    self.global_default = Some((name.clone(), c.value.unwrap_or(0)));
                } else if self.global_default.as_ref().is_some_and(|g| g.0 == name) {
                    self.global_default = None;
                }
                self.classes.insert(name, c.value.unwrap_or(0));
            }
            Event::Delete(c) => {
                let name = c.metadata.name.clone().unwrap_or_default();
                self.classes.remove(&name);
                if self.global_default.as_ref().is_some_and(|g| g.0 == name) {
                    self.global_default = None;
                }
            }
            Event::Init => {
                self.classes.clear();
                self.global_default = None;
            }
            Event::InitDone => {}
        }
    }

    fn apply_budget(&mut self, event: Event<PodDisruptionBudget>) {
        match event {
            Event::Apply(b) | Event::InitApply(b) => {
                let budget = DisruptionBudget {
                    namespace: b.metadata.namespace.clone().unwrap_or_default(),
                    selector: b
                        .spec
                        .as_ref()
                        .and_then(|s| s.selector.as_ref())
                        .map(label_selector)
                        .unwrap_or_default(),
                    disruptions_allowed: b
                        .status
                        .as_ref()
                        .map_or(0, |s| s.disruptions_allowed.unwrap_or(0)),
                };
                self.budgets.insert(obj_name(&b.metadata), budget);
            }
            Event::Delete(b) => {
                self.budgets.remove(&obj_name(&b.metadata));
            }
            Event::Init => self.budgets.clear(),
            Event::InitDone => {}
        }
    }

    fn rebuild(&mut self) {
        let mut cluster = Cluster::new(self.nodes.values().cloned().collect());
        for b in self.bound.values().chain(self.assumed.values()) {
            cluster.add_pod(b.clone());
        }
        self.cluster = cluster;
        self.dirty = false;
    }

    /// One scheduling pass over the pods waiting now.
    fn pass(&mut self, config: &Config) -> Vec<Action> {
        if !(self.nodes_synced && self.pods_synced) {
            return Vec::new();
        }
        let epoch = self.epoch;
        let mut waiting: Vec<&SlimPod> = self
            .candidates
            .iter()
            .filter(|k| self.unschedulable.get(*k).is_none_or(|t| *t < epoch))
            .filter_map(|k| self.pending.get(k))
            .collect();
        if waiting.is_empty() {
            return Vec::new();
        }
        // kube-scheduler's queue order within a priority: oldest first.
        waiting.sort_by_cached_key(|p| {
            (
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                pod_key(p),
            )
        });
        let mut actions = Vec::new();
        let mut delayed: HashMap<String, Vec<String>> = HashMap::new();
        let mut inputs: Vec<PendingPod> = Vec::with_capacity(waiting.len());
        for p in &waiting {
            let check = self.volumes.check(p);
            let key = pod_key(p);
            if let Some(reason) = check.unschedulable {
                let first = !self.unschedulable.contains_key(&key);
                self.unschedulable.insert(key.clone(), epoch);
                let n = self.nodes.len();
                actions.push(Action::Unschedulable {
                    pod: key,
                    message: format!("0/{n} nodes are available: {reason}. preemption: 0/{n} nodes are available: {n} Preemption is not helpful for scheduling."),
                    uid: p.metadata.uid.clone(),
                    first,
                });
                continue;
            }
            let mut input = pending_pod(p, self.priority(p));
            input.volume_node_affinity = check.affinity;
            if !check.delayed.is_empty() {
                delayed.insert(key, check.delayed);
            }
            inputs.push(input);
        }
        let uids: HashMap<String, Option<String>> = waiting
            .iter()
            .map(|p| (pod_key(p), p.metadata.uid.clone()))
            .collect();
        if self.dirty {
            self.rebuild();
        }
        self.cluster.budgets = self.budgets.values().cloned().collect();
        let by_key: HashMap<&str, &PendingPod> =
            inputs.iter().map(|p| (p.key.as_str(), p)).collect();
        for placement in schedule(&mut self.cluster, &inputs, config) {
            match placement {
                Placement::Bind { pod, node } => {
                    if let Some(p) = by_key.get(pod.as_str()) {
                        self.assumed.insert(pod.clone(), p.bound_to(&node));
                    }
                    self.start_write(&pod);
                    let claims = delayed.remove(&pod).unwrap_or_default();
                    actions.push(Action::Bind { pod, node, claims });
                }
                Placement::Preempt {
                    pod,
                    node,
                    victims,
                    message,
                } => {
                    // The victims stay counted until the watch shows them
                    // gone; the pod is retried then (the epoch moves).
                    self.cluster.remove_pod(&pod);
                    for v in &victims {
                        if let Some(b) = self.bound.get(v) {
                            self.cluster.add_pod(b.clone());
                        }
                    }
                    self.unschedulable.insert(pod.clone(), epoch);
                    self.start_write(&pod);
                    let uid = uids.get(&pod).cloned().flatten();
                    actions.push(Action::Preempt {
                        pod,
                        node,
                        victims,
                        message,
                        uid,
                    });
                }
                Placement::Unschedulable { pod, message } => {
                    let first = !self.unschedulable.contains_key(&pod);
                    self.unschedulable.insert(pod.clone(), epoch);
                    let uid = uids.get(&pod).cloned().flatten();
                    actions.push(Action::Unschedulable {
                        pod,
                        message,
                        uid,
                        first,
                    });
                }
            }
        }
        actions
    }

    fn done(&mut self, done: Done) {
        match done {
            Done::Bound { pod, ok: true } => tracing::debug!(%pod, "bound"),
            Done::Bound { pod, ok: false } => {
                self.end_write(&pod);
                if self.assumed.remove(&pod).is_some() && !self.dirty {
                    self.cluster.remove_pod(&pod);
                }
            }
            Done::Preempted { pod } => {
                self.end_write(&pod);
            }
            Done::Reported => {}
        }
    }
}

/// Runs the scheduler with [`SchedulerOptions::default`] until `shutdown`
/// completes.
pub async fn run(
    client: Client,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), SchedulerError> {
    run_with(client, SchedulerOptions::default(), shutdown).await
}

fn changes(client: &Client) -> impl futures::Stream<Item = Change> + Send + Unpin {
    // Each watch backs off by itself on errors; an API without PriorityClass
    // or PDB support only costs a retry now and then.
    fn watch<K>(api: Api<K>, f: fn(Event<K>) -> Change) -> stream::BoxStream<'static, Change>
    where
        K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    {
        watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .filter_map(move |e| {
                let out = match e {
                    Ok(e) => Some(f(e)),
                    Err(err) => {
                        tracing::debug!(error = %err, "scheduler watch error");
                        None
                    }
                };
                futures::future::ready(out)
            })
            .boxed()
    }
    stream::select_all(vec![
        watch(Api::<Node>::all(client.clone()), |e| {
            Change::Node(Box::new(e))
        }),
        watch(Api::<SlimPod>::all(client.clone()), |e| {
            Change::Pod(Box::new(e))
        }),
        watch(Api::<PriorityClass>::all(client.clone()), |e| {
            Change::Class(Box::new(e))
        }),
        watch(Api::<PodDisruptionBudget>::all(client.clone()), |e| {
            Change::Budget(Box::new(e))
        }),
        watch(Api::<PersistentVolumeClaim>::all(client.clone()), |e| {
            Change::Claim(Box::new(e))
        }),
        watch(Api::<PersistentVolume>::all(client.clone()), |e| {
            Change::Volume(Box::new(e))
        }),
        watch(Api::<StorageClass>::all(client.clone()), |e| {
            Change::StorageClass(Box::new(e))
        }),
    ])
}

/// Runs the scheduler until `shutdown` completes.
pub async fn run_with(
    client: Client,
    options: SchedulerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), SchedulerError> {
    let (leading_tx, mut leading) = watch::channel(options.leader_identity.is_none());
    let (stop_tx, stop_rx) = watch::channel(false);
    let elector = options.leader_identity.clone().map(|id| {
        tokio::spawn(crate::leader::elect(
            client.clone(),
            id,
            leading_tx,
            stop_rx,
        ))
    });
    let mut changes = changes(&client);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let slots = Arc::new(Semaphore::new(options.max_in_flight.max(1)));
    let mut state = State::default();
    tokio::pin!(shutdown);
    let result = loop {
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            next = changes.next() => {
                let Some(change) = next else {
                    break Err(SchedulerError::WatchEnded("nodes/pods"));
                };
                state.apply(change);
                // Take every change already waiting before one pass, so a
                // burst of pod creations is placed as one batch.
                while let Some(Some(change)) = changes.next().now_or_never() {
                    state.apply(change);
                }
            }
            Some(done) = done_rx.recv() => {
                state.done(done);
                while let Ok(done) = done_rx.try_recv() {
                    state.done(done);
                }
            }
            Ok(()) = leading.changed() => {
                if *leading.borrow() {
                    state.epoch += 1;
                }
            }
        }
        if !*leading.borrow() {
            continue;
        }
        for action in state.pass(&options.config) {
            spawn_action(&client, action, &slots, &done_tx);
        }
    };
    let _ = stop_tx.send(true);
    if let Some(elector) = elector {
        let _ = elector.await;
    }
    result
}

fn spawn_action(
    client: &Client,
    action: Action,
    slots: &Arc<Semaphore>,
    done: &mpsc::UnboundedSender<Done>,
) {
    let client = client.clone();
    let slots = slots.clone();
    let done = done.clone();
    tokio::spawn(async move {
        // The semaphore is never closed, so acquiring only waits.
        let Ok(_permit) = slots.acquire_owned().await else {
            return;
        };
        let result = match action {
            Action::Bind { pod, node, claims } => {
                // PreBind: the provisioner learns the node from the claim.
                let selected = actions::select_node(&client, &claims, &node).await;
                let bound = match selected {
                    Ok(()) => actions::bind(&client, &pod, &node).await,
                    Err(e) => Err(e),
                };
                let ok = match bound {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(%pod, %node, error = %e, "binding failed; will retry");
                        false
                    }
                };
                Done::Bound { pod, ok }
            }
            Action::Preempt {
                pod,
                node,
                victims,
                message,
                uid,
            } => {
                actions::report_unschedulable(&client, &pod, uid.clone(), &message, true).await;
                if let Err(e) = actions::nominate(&client, &pod, &node).await {
                    tracing::warn!(%pod, error = %e, "could not set nominatedNodeName");
                }
                for v in &victims {
                    match actions::evict(&client, v).await {
                        Ok(()) => {
                            actions::record_event(
                                &client,
                                v,
                                None,
                                "Normal",
                                "Preempted",
                                &format!("Preempted by pod {pod} on node {node}"),
                            )
                            .await
                        }
                        Err(e) => tracing::warn!(victim = %v, error = %e, "could not evict"),
                    }
                }
                tracing::info!(%pod, %node, ?victims, "preempting");
                Done::Preempted { pod }
            }
            Action::Unschedulable {
                pod,
                message,
                uid,
                first,
            } => {
                actions::report_unschedulable(&client, &pod, uid, &message, first).await;
                Done::Reported
            }
        };
        let _ = done.send(result);
    });
}

#[cfg(test)]
#[path = "run_test.rs"]
mod tests;
