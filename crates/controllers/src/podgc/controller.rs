//! The PodGC loop: every [`CHECK_PERIOD`], a snapshot of the pod and node
//! caches goes through [`super::core`]; nodes missing past the quarantine
//! are confirmed gone with a live read; each collected pod still running
//! is marked `Failed` (through `pods/status`) and then deleted with grace
//! period 0 and its UID as precondition.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::slim_pod::SlimPod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::Store;
use kube::{Api, Client};
use serde_json::json;

use crate::clock::time;
use crate::error::{is_status, ControllerError};
use crate::pod_util::{created_ms, millis, phase};
use crate::podgc::core::{plan, PodView, Quarantine, Reason};

/// The controller's name in logs.
pub const NAME: &str = "pod-garbage-collector";
/// How often it looks (kube-controller-manager's `gcCheckPeriod`).
pub const CHECK_PERIOD: Duration = Duration::from_secs(20);

/// The PodGC controller.
pub struct PodGcController {
    client: Client,
    pods: Store<SlimPod>,
    nodes: Store<Node>,
    /// `--terminated-pod-gc-threshold` (0: finished pods are kept).
    threshold: usize,
    quarantine: Mutex<Quarantine>,
}

/// What PodGC reads of a cached pod.
fn view(pod: &SlimPod) -> PodView {
    let meta = &pod.metadata;
    PodView {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        node_name: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        deleting: meta.deletion_timestamp.is_some(),
        terminal: matches!(phase(pod), "Succeeded" | "Failed"),
        evicted: pod.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted"),
        created_ms: created_ms(meta),
    }
}

impl PodGcController {
    /// Builds the controller on the caches.
    pub fn new(client: Client, pods: Store<SlimPod>, nodes: Store<Node>, threshold: usize) -> Self {
        PodGcController {
            client,
            pods,
            nodes,
            threshold,
            quarantine: Mutex::new(Quarantine::default()),
        }
    }

    /// One pass; returns the first error (the pass goes on past it).
    pub async fn gc_once(&self) -> Result<(), ControllerError> {
        let now = millis(&Timestamp::now());
        let pods: Vec<PodView> = self.pods.state().iter().map(|p| view(p)).collect();
        let nodes = self.nodes.state();
        let names: HashSet<&str> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.as_deref())
            .collect();
        let due = self
            .quarantine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(&pods, &names, now);
        let mut gone = HashSet::new();
        let mut first_error = None;
        let api: Api<Node> = Api::all(self.client.clone());
        for node in &due {
            // The cache may lag: only a live 404 makes a node gone.
            match api.get_opt(node).await {
                Ok(None) => {
                    gone.insert(node.as_str());
                }
                Ok(Some(_)) => self
                    .quarantine
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .found(node),
                Err(e) => {
                    first_error
                        .get_or_insert(ControllerError::api(format!("reading node {node}"), e));
                }
            }
        }
        for (i, reason) in plan(&pods, &gone, self.threshold) {
            if let Err(e) = self.collect(&pods[i], reason, now).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn collect(
        &self,
        pod: &PodView,
        reason: Reason,
        now: i64,
    ) -> Result<(), ControllerError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let what = format!("{}/{}", pod.namespace, pod.name);
        tracing::info!(pod = %what, node = %pod.node_name, ?reason, "garbage-collecting pod");
        if !pod.terminal {
            let mut status = json!({"phase": "Failed"});
            if let Some(message) = reason.condition_message() {
                status["conditions"] = json!([{
                    "type": "DisruptionTarget", "status": "True",
                    "reason": "DeletionByPodGC", "message": message,
                    "lastTransitionTime": time(now),
                }]);
            }
            let patch = json!({ "status": status });
            match api
                .patch_status(
                    &pod.name,
                    &PatchParams::default(),
                    &Patch::Strategic(&patch),
                )
                .await
            {
                Ok(_) => {}
                Err(e) if is_status(&e, 404) => return Ok(()),
                Err(e) => {
                    return Err(ControllerError::api(
                        format!("marking pod {what} failed"),
                        e,
                    ))
                }
            }
        }
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(pod.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&pod.name, &params).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(()),
            Err(e) => Err(ControllerError::api(format!("deleting pod {what}"), e)),
        }
    }

    /// Runs [`Self::gc_once`] every [`CHECK_PERIOD`] forever.
    pub async fn run(self) {
        let mut tick = tokio::time::interval(CHECK_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.gc_once().await {
                tracing::warn!(error = %e, "pod garbage collection pass failed");
            }
        }
    }
}
