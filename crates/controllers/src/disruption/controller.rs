//! The disruption controller's I/O: informers that queue the budgets of a
//! namespace when its pods or workloads change, the scale lookup over the
//! caches, and the status write.
//!
//! ```text
//!  PodDisruptionBudget events ──> its key
//!  Pod, ReplicaSet, Deployment, StatefulSet events ──> every budget of the namespace
//!  reconcile(key) ──> core::reconcile ──> PUT poddisruptionbudgets/status
//!                     (resourceVersion: an eviction that spent a disruption
//!                      meanwhile makes it a 409, and the key is retried)
//! ```

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::PostParams;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};

use crate::clock::{system_clock, Clock};
use crate::disruption::core::{self, Input, ScaleSource};
use crate::error::{is_status, ControllerError};
use crate::events;
use crate::owner::controller_ref;
use crate::runtime::{informer::event_objects, split_key, Informer, Reconciler, WorkQueue};
use crate::selector;
use crate::slim_pod::SlimPod;

/// The controller's name in logs and events.
pub const NAME: &str = "disruption";

/// The disruption controller.
pub struct DisruptionController {
    client: Client,
    budgets: Store<PodDisruptionBudget>,
    pods: Store<SlimPod>,
    replicasets: Store<ReplicaSet>,
    deployments: Store<Deployment>,
    statefulsets: Store<StatefulSet>,
    clock: Clock,
}

/// Queues every budget of `ns`: budgets are few, and a pod whose labels
/// changed may have left one budget for another.
fn queue_namespace(budgets: &Store<PodDisruptionBudget>, queue: &WorkQueue, ns: &str) {
    for b in budgets.state() {
        if b.metadata.namespace.as_deref() == Some(ns) {
            queue.add(format!("{ns}/{}", b.name_any()));
        }
    }
}

/// Registers a handler on `informer` that queues the budgets of the
/// namespace of every object it sees.
fn follow<K>(informer: &mut Informer<K>, budgets: &Store<PodDisruptionBudget>, queue: &WorkQueue)
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
    K: serde::de::DeserializeOwned,
{
    let (budgets, queue) = (budgets.clone(), queue.clone());
    informer.on_event(move |e| {
        if let Some(ns) = event_objects(e).and_then(|o| o.meta().namespace.clone()) {
            queue_namespace(&budgets, &queue, &ns);
        }
    });
}

/// The informers the controller reads.
pub struct Informers<'a> {
    /// PodDisruptionBudgets.
    pub budgets: &'a mut Informer<PodDisruptionBudget>,
    /// Pods.
    pub pods: &'a mut Informer<SlimPod>,
    /// ReplicaSets (scale of pods they own).
    pub replicasets: &'a mut Informer<ReplicaSet>,
    /// Deployments (scale of the ReplicaSets they own).
    pub deployments: &'a mut Informer<Deployment>,
    /// StatefulSets.
    pub statefulsets: &'a mut Informer<StatefulSet>,
}

impl DisruptionController {
    /// Builds the controller on shared informers and registers its event
    /// handlers, which feed `queue`.
    pub fn new(client: Client, inf: Informers, queue: &WorkQueue) -> Arc<DisruptionController> {
        let budgets = inf.budgets.store();
        {
            let queue = queue.clone();
            inf.budgets.on_event(move |e| {
                if let Some(b) = event_objects(e) {
                    queue.add(crate::runtime::key_of(b));
                }
            });
        }
        follow(inf.pods, &budgets, queue);
        follow(inf.replicasets, &budgets, queue);
        follow(inf.deployments, &budgets, queue);
        follow(inf.statefulsets, &budgets, queue);
        Arc::new(DisruptionController {
            client,
            budgets,
            pods: inf.pods.store(),
            replicasets: inf.replicasets.store(),
            deployments: inf.deployments.store(),
            statefulsets: inf.statefulsets.store(),
            clock: system_clock(),
        })
    }

    /// The scalable controller behind a pod's controller reference in
    /// `ns`: a ReplicaSet's owning Deployment if it has one, else the
    /// ReplicaSet; a StatefulSet. The uid must match the reference.
    fn scale_of(&self, ns: &str, r: &OwnerReference) -> Option<ScaleSource> {
        let source = |uid: Option<&String>, replicas: Option<i32>| ScaleSource {
            uid: uid.cloned().unwrap_or_default(),
            replicas: replicas.unwrap_or(1),
        };
        match r.kind.as_str() {
            "ReplicaSet" => {
                let rs = self
                    .replicasets
                    .get(&ObjectRef::new(&r.name).within(ns))
                    .filter(|rs| rs.metadata.uid.as_deref() == Some(&r.uid))?;
                if let Some(d_ref) = controller_ref(&rs.metadata).filter(|d| d.kind == "Deployment")
                {
                    let d = self
                        .deployments
                        .get(&ObjectRef::new(&d_ref.name).within(ns))
                        .filter(|d| d.metadata.uid.as_deref() == Some(&d_ref.uid))?;
                    let replicas = d.spec.replicas;
                    return Some(source(d.metadata.uid.as_ref(), replicas));
                }
                let replicas = rs.spec.replicas;
                Some(source(rs.metadata.uid.as_ref(), replicas))
            }
            "StatefulSet" => {
                let s = self
                    .statefulsets
                    .get(&ObjectRef::new(&r.name).within(ns))
                    .filter(|s| s.metadata.uid.as_deref() == Some(&r.uid))?;
                let replicas = s.spec.replicas;
                Some(source(s.metadata.uid.as_ref(), replicas))
            }
            _ => None,
        }
    }

    async fn write_status(&self, pdb: &PodDisruptionBudget) -> Result<(), ControllerError> {
        let ns = pdb.namespace().unwrap_or_default();
        let api: Api<PodDisruptionBudget> = Api::namespaced(self.client.clone(), &ns);
        match api
            .replace_status(&pdb.name_any(), &PostParams::default(), pdb)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(ControllerError::api(
                format!(
                    "updating status of poddisruptionbudget {ns}/{}",
                    pdb.name_any()
                ),
                e,
            )),
        }
    }
}

#[async_trait::async_trait]
impl Reconciler for DisruptionController {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ControllerError> {
        let (ns, name) = split_key(key);
        let Some(pdb) = self.budgets.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(None);
        };
        let all = self.pods.state();
        let pods: Vec<&SlimPod> = match pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) {
            // policy/v1: a missing selector selects nothing, an empty one
            // every pod of the namespace.
            None => Vec::new(),
            Some(sel) => {
                let empty = sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
                    && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty());
                all.iter()
                    .map(|p| p.as_ref())
                    .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
                    .filter(|p| empty || selector::matches(sel, p.metadata.labels.as_ref()))
                    .collect()
            }
        };
        let scale = |r: &OwnerReference| self.scale_of(ns, r);
        let plan = core::reconcile(&Input {
            pdb: &pdb,
            pods: &pods,
            scale: &scale,
            now_ms: (self.clock)(),
        });
        if let Some(w) = &plan.warning {
            events::record(
                &self.client,
                NAME,
                pdb.as_ref(),
                "Warning",
                w.reason,
                &w.message,
            )
            .await;
        }
        if let Some(status) = plan.status {
            let mut updated = (*pdb).clone();
            updated.status = Some(status);
            // A 409 means an eviction (or another write) came first: the
            // work queue retries with the fresh budget from the watch.
            self.write_status(&updated).await?;
        }
        Ok(plan
            .requeue_after_ms
            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0) + 10)))
    }
}
