//! The pod manager: watches the pods bound to this node and keeps one
//! worker per pod UID (kubelet's `syncLoop` + `podWorkers.UpdatePod`).
//!
//! ```text
//!  watch pods spec.nodeName=<node> ──► Apply / Delete / relist
//!          │                             │
//!          ▼                             ▼
//!   workers: uid → watch::Sender<PodUpdate>   housekeeping (10 s): reap
//!                                             finished workers; tear down
//!                                             sandboxes whose pod is unknown
//! ```
//!
//! The watch keeps the agent's own client; the workers get one whose
//! requests time out ([`API_REQUEST_TIMEOUT`]), so a silent uplink cannot
//! stall a pod's sync.
//!
//! A pod that disappears from the watch (a `Delete` event, or missing from
//! a relist) is told `removed`, and its worker tears it down without an API
//! delete. Sandboxes in CRI that belong to no known pod (left over from an
//! agent restart while their pod was deleted) get a worker that only tears
//! them down: kubelet's `HandlePodCleanups`. They are looked for right after
//! the first list and then every [`HOUSEKEEPING_PERIOD`].

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::worker::{run_pod_worker, PodUpdate, WorkerContext, API_REQUEST_TIMEOUT};
use crate::cri::labels;
use crate::node::evict::Eviction;

/// How often finished workers are reaped and orphaned sandboxes looked for.
pub const HOUSEKEEPING_PERIOD: Duration = Duration::from_secs(10);

/// Grace period for sandboxes whose pod object is unknown.
const ORPHAN_GRACE_PERIOD_SECONDS: i64 = 2;

/// Why the pod manager stopped.
#[derive(Debug, thiserror::Error)]
pub enum PodManagerError {
    /// The watch stream ended (it normally never does: kube-rs re-lists).
    #[error("pod watch ended unexpectedly")]
    WatchEnded,
}

struct Worker {
    updates: watch::Sender<PodUpdate>,
    task: JoinHandle<()>,
}

/// Keeps one worker per pod bound to this node.
pub struct PodManager {
    ctx: Arc<WorkerContext>,
    node_name: String,
    workers: HashMap<String, Worker>,
    /// UIDs whose worker finished after a graceful delete, so late `Apply`
    /// events for them do not start a new worker; cleared on `Delete`.
    finished: HashSet<String>,
    housekeeping_period: Duration,
    /// Pods the eviction manager wants gone ([`crate::node::evict`]).
    evictions: Option<mpsc::Receiver<Eviction>>,
}

impl PodManager {
    /// A manager for the pods of the context's node.
    pub fn new(ctx: Arc<WorkerContext>) -> Self {
        PodManager {
            node_name: ctx.node_name.clone(),
            ctx,
            workers: HashMap::new(),
            finished: HashSet::new(),
            housekeeping_period: HOUSEKEEPING_PERIOD,
            evictions: None,
        }
    }

    /// Takes eviction requests from `rx`: the pod's worker stops it and
    /// marks it `Failed` with reason `Evicted`.
    pub fn with_evictions(mut self, rx: mpsc::Receiver<Eviction>) -> Self {
        self.evictions = Some(rx);
        self
    }

    /// Sets how often housekeeping runs (tests use a short period).
    pub fn with_housekeeping_period(mut self, period: Duration) -> Self {
        self.housekeeping_period = period;
        self
    }

    /// Runs until `shutdown` resolves. Workers then stop without touching
    /// their pods: containers keep running when the agent exits.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), PodManagerError> {
        let api: Api<Pod> = Api::all(self.ctx.client.clone());
        // The watch above stays open; the workers' requests must not hang
        // when the uplink goes silent (see API_REQUEST_TIMEOUT).
        self.ctx = Arc::new(self.ctx.with_request_timeout(API_REQUEST_TIMEOUT));
        let config =
            watcher::Config::default().fields(&format!("spec.nodeName={}", self.node_name));
        let mut events = watcher(api, config).default_backoff().boxed();
        let mut housekeeping = tokio::time::interval(self.housekeeping_period);
        let mut relist: Option<HashSet<String>> = None;
        let mut synced = false;
        let mut evictions = self.evictions.take();
        tokio::pin!(shutdown);
        let result = loop {
            tokio::select! {
                _ = &mut shutdown => break Ok(()),
                Some(e) = async {
                    match evictions.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => self.evict(e),
                event = events.next() => match event {
                    None => break Err(PodManagerError::WatchEnded),
                    Some(Err(e)) => warn!("pod watch: {e}"),
                    Some(Ok(Event::Init)) => relist = Some(HashSet::new()),
                    Some(Ok(Event::InitApply(pod))) => {
                        if let (Some(seen), Some(uid)) = (relist.as_mut(), pod.metadata.uid.clone()) {
                            seen.insert(uid);
                        }
                        self.apply(pod);
                    }
                    Some(Ok(Event::InitDone)) => {
                        if let Some(seen) = relist.take() {
                            let gone: Vec<String> = self
                                .workers
                                .keys()
                                .filter(|uid| !seen.contains(*uid))
                                .cloned()
                                .collect();
                            for uid in gone {
                                self.remove(&uid, None);
                            }
                        }
                        if !synced {
                            // Right after the first list, not a housekeeping
                            // period later: after an agent restart this is
                            // when pods deleted meanwhile are found.
                            synced = true;
                            self.adopt_orphans().await;
                        }
                    }
                    Some(Ok(Event::Apply(pod))) => self.apply(pod),
                    Some(Ok(Event::Delete(pod))) => {
                        if let Some(uid) = pod.metadata.uid.clone() {
                            self.finished.remove(&uid);
                            self.remove(&uid, Some(pod));
                        }
                    }
                },
                _ = housekeeping.tick() => {
                    self.reap();
                    if synced {
                        self.adopt_orphans().await;
                    }
                }
            }
        };
        // Dropping the senders ends every worker at its next wait.
        self.workers.clear();
        result
    }

    /// Hands the newest object to its worker, starting one if needed.
    fn apply(&mut self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let mut update = PodUpdate {
            pod: Arc::new(pod),
            removed: false,
            eviction: None,
        };
        if let Some(w) = self.workers.get(&uid) {
            if !w.task.is_finished() {
                // An eviction outlives newer objects of the pod.
                update.eviction = w.updates.borrow().eviction.clone();
                w.updates.send_replace(update);
                return;
            }
        }
        if self.finished.contains(&uid) {
            return;
        }
        self.spawn(uid, update);
    }

    /// Tells a worker its pod is gone. `last` is the deleted object, if known.
    fn remove(&mut self, uid: &str, last: Option<Pod>) {
        let Some(w) = self.workers.get(uid) else {
            return;
        };
        let pod = match last {
            Some(p) => Arc::new(p),
            None => w.updates.borrow().pod.clone(),
        };
        let eviction = w.updates.borrow().eviction.clone();
        w.updates.send_replace(PodUpdate {
            pod,
            removed: true,
            eviction,
        });
    }

    /// Hands an eviction to the pod's worker.
    fn evict(&mut self, e: Eviction) {
        match self.workers.get(&e.uid) {
            Some(w) if !w.task.is_finished() => {
                w.updates.send_modify(|u| u.eviction = Some(Arc::new(e)));
            }
            _ => debug!(uid = %e.uid, "eviction of a pod without a worker ignored"),
        }
    }

    fn spawn(&mut self, uid: String, update: PodUpdate) {
        debug!(pod = ?update.pod.metadata.name, %uid, "pod worker started");
        let (tx, rx) = watch::channel(update);
        let task = tokio::spawn(run_pod_worker(self.ctx.clone(), rx));
        self.workers.insert(uid, Worker { updates: tx, task });
    }

    /// Drops workers whose task ended; remembers pods that were terminated
    /// while their object may still show up in the watch.
    fn reap(&mut self) {
        let done: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, w)| w.task.is_finished())
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in done {
            if let Some(w) = self.workers.remove(&uid) {
                if !w.updates.borrow().removed {
                    self.finished.insert(uid);
                }
            }
        }
    }

    /// Starts a teardown-only worker for every sandbox whose pod UID is not
    /// known to the manager.
    async fn adopt_orphans(&mut self) {
        let filter = k8s_cri::v1::PodSandboxFilter {
            label_selector: [(labels::SKIFF_NODE.to_string(), self.node_name.clone())].into(),
            ..Default::default()
        };
        let sandboxes = match self.ctx.cri.list_pod_sandbox(Some(filter)).await {
            Ok(s) => s,
            Err(e) => {
                warn!("housekeeping: listing sandboxes: {e}");
                return;
            }
        };
        for sb in sandboxes {
            let Some(uid) = sb.labels.get(labels::POD_UID).cloned() else {
                continue;
            };
            if self.workers.contains_key(&uid) {
                continue;
            }
            info!(%uid, sandbox = %sb.id, "tearing down sandbox of an unknown pod");
            let mut pod = Pod::default();
            pod.metadata.uid = Some(uid.clone());
            pod.metadata.name = sb
                .labels
                .get(labels::POD_NAME)
                .cloned()
                .or(Some(uid.clone()));
            pod.metadata.namespace = sb.labels.get(labels::POD_NAMESPACE).cloned();
            pod.metadata.deletion_grace_period_seconds = Some(ORPHAN_GRACE_PERIOD_SECONDS);
            self.spawn(
                uid,
                PodUpdate {
                    pod: Arc::new(pod),
                    removed: true,
                    eviction: None,
                },
            );
        }
    }
}
