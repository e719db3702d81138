//! The Deployment controller's I/O: informer handlers that queue keys, and
//! the API calls that carry out a [`Plan`].
//!
//! ```text
//!  Deployment events ──> its key
//!  ReplicaSet events ──> key of its controlling Deployment (or of every
//!                        Deployment selecting an orphan)
//!  Pod deletions ──────> key of the Deployment above the pod's ReplicaSet
//!                        (Recreate waits for old pods to go)
//!  reconcile(key) ──> core::reconcile ──> POST/PATCH/DELETE replicasets,
//!                     PATCH the revision annotation, PATCH deployments/status
//! ```

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::Event;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::deployment::core::{self, Action, Input, Plan};
use crate::deployment::util::{rs_replicas, REVISION_ANNOTATION};
use crate::error::{is_status, ControllerError};
use crate::events;
use crate::owner::{controller_ref, new_controller_ref};
use crate::pod_util::millis;
use crate::runtime::{informer::event_objects, key_of, split_key, Informer, Reconciler, WorkQueue};
use crate::selector;
use crate::slim_pod::SlimPod;

/// The controller's name in logs and events.
pub const NAME: &str = "deployment";

/// The Deployment controller.
pub struct DeploymentController {
    client: Client,
    deployments: Store<Deployment>,
    replicasets: Store<ReplicaSet>,
    pods: Store<SlimPod>,
}

impl DeploymentController {
    /// Builds the controller on shared informers and registers its handlers.
    pub fn new(
        client: Client,
        d_informer: &mut Informer<Deployment>,
        rs_informer: &mut Informer<ReplicaSet>,
        pod_informer: &mut Informer<SlimPod>,
        queue: &WorkQueue,
    ) -> Arc<DeploymentController> {
        let deployments = d_informer.store();
        let replicasets = rs_informer.store();
        {
            let queue = queue.clone();
            d_informer.on_event(move |e| {
                if let Some(d) = event_objects(e) {
                    queue.add(key_of(d));
                }
            });
        }
        {
            let queue = queue.clone();
            let deployments = deployments.clone();
            rs_informer.on_event(move |e| {
                let Some(rs) = event_objects(e) else { return };
                let ns = rs.namespace().unwrap_or_default();
                match controller_ref(&rs.metadata) {
                    Some(r) if r.kind == "Deployment" => queue.add(format!("{ns}/{}", r.name)),
                    Some(_) => {}
                    None => {
                        for d in deployments.state() {
                            if d.namespace().as_deref() == Some(ns.as_str())
                                && selector::matches(&d.spec.selector, rs.metadata.labels.as_ref())
                            {
                                queue.add(key_of(d.as_ref()));
                            }
                        }
                    }
                }
            });
        }
        {
            let queue = queue.clone();
            let replicasets = replicasets.clone();
            pod_informer.on_event(move |e| {
                let Event::Delete(pod) = e else { return };
                let ns = pod.namespace().unwrap_or_default();
                let Some(r) = controller_ref(&pod.metadata).filter(|r| r.kind == "ReplicaSet")
                else {
                    return;
                };
                if let Some(rs) = replicasets.get(&ObjectRef::new(&r.name).within(&ns)) {
                    if let Some(d) = controller_ref(&rs.metadata).filter(|r| r.kind == "Deployment")
                    {
                        queue.add(format!("{ns}/{}", d.name));
                    }
                }
            });
        }
        Arc::new(DeploymentController {
            client,
            deployments,
            replicasets,
            pods: pod_informer.store(),
        })
    }

    fn rs_api(&self, ns: &str) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), ns)
    }

    async fn set_owner(
        &self,
        d: &Deployment,
        name: &str,
        adopt: bool,
    ) -> Result<(), ControllerError> {
        let ns = d.namespace().unwrap_or_default();
        let Some(rs) = self.replicasets.get(&ObjectRef::new(name).within(&ns)) else {
            return Ok(());
        };
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let mut refs: Vec<OwnerReference> = rs
            .metadata
            .owner_references
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.uid != uid)
            .collect();
        if adopt {
            refs.extend(new_controller_ref("apps/v1", "Deployment", &d.metadata));
        }
        let patch = json!({"metadata": {
            "ownerReferences": refs,
            "resourceVersion": rs.metadata.resource_version,
        }});
        match self
            .rs_api(&ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(ControllerError::api(
                format!("claiming replicaset {ns}/{name}"),
                e,
            )),
        }
    }

    async fn apply(&self, d: &Deployment, action: &Action) -> Result<(), ControllerError> {
        let ns = d.namespace().unwrap_or_default();
        let api = self.rs_api(&ns);
        match action {
            Action::Adopt { name } => self.set_owner(d, name, true).await,
            Action::Release { name } => self.set_owner(d, name, false).await,
            Action::Create(rs) => {
                let name = rs.name_any();
                api.create(&PostParams::default(), rs).await.map_err(|e| {
                    ControllerError::api(format!("creating replicaset {ns}/{name}"), e)
                })?;
                let n = rs_replicas(rs);
                if n > 0 {
                    events::record(
                        &self.client,
                        NAME,
                        d,
                        "Normal",
                        "ScalingReplicaSet",
                        &format!("Scaled up replica set {name} from 0 to {n}"),
                    )
                    .await;
                }
                Ok(())
            }
            Action::Update { rs, from } => {
                let name = rs.name_any();
                let patch = json!({
                    "metadata": {
                        "annotations": rs.metadata.annotations,
                        "resourceVersion": rs.metadata.resource_version,
                    },
                    "spec": {
                        "replicas": rs.spec.replicas,
                        "minReadySeconds": rs.spec.min_ready_seconds,
                    },
                });
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| {
                        ControllerError::api(format!("updating replicaset {ns}/{name}"), e)
                    })?;
                if let Some(from) = from {
                    let to = rs_replicas(rs);
                    let dir = if to > *from { "up" } else { "down" };
                    events::record(
                        &self.client,
                        NAME,
                        d,
                        "Normal",
                        "ScalingReplicaSet",
                        &format!("Scaled {dir} replica set {name} from {from} to {to}"),
                    )
                    .await;
                }
                Ok(())
            }
            Action::Delete { name, uid } => {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(uid.clone()),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match api.delete(name, &params).await {
                    Ok(_) => Ok(()),
                    Err(e) if is_status(&e, 404) => Ok(()),
                    Err(e) => Err(ControllerError::api(
                        format!("deleting old replicaset {ns}/{name}"),
                        e,
                    )),
                }
            }
        }
    }

    async fn write_revision(&self, d: &Deployment, revision: &str) -> Result<(), ControllerError> {
        let ns = d.namespace().unwrap_or_default();
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
        let patch = json!({"metadata": {"annotations": {REVISION_ANNOTATION: revision}}});
        match api
            .patch(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(ControllerError::api(
                format!("annotating deployment {ns}/{}", d.name_any()),
                e,
            )),
        }
    }

    async fn write_status(
        &self,
        d: &Deployment,
        status: &DeploymentStatus,
    ) -> Result<(), ControllerError> {
        crate::status::write_status(&self.client, d, status).await
    }

    async fn execute(&self, d: &Deployment, plan: &Plan) -> Result<(), ControllerError> {
        // Stop at the first failed action: later ones were planned assuming
        // the earlier ones happened (e.g. scale down after scale up).
        for action in &plan.actions {
            self.apply(d, action).await?;
        }
        if let Some(rev) = &plan.revision {
            self.write_revision(d, rev).await?;
        }
        if let Some(status) = &plan.status {
            self.write_status(d, status).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Reconciler for DeploymentController {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ControllerError> {
        let (ns, name) = split_key(key);
        let Some(d) = self.deployments.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(None);
        };
        let all_rs = self.replicasets.state();
        let rss: Vec<&ReplicaSet> = all_rs
            .iter()
            .map(|r| r.as_ref())
            .filter(|r| r.metadata.namespace.as_deref() == Some(ns))
            .collect();
        let all_pods = self.pods.state();
        let pods: Vec<&SlimPod> = all_pods
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .collect();
        let plan = core::reconcile(&Input {
            deployment: &d,
            replicasets: &rss,
            pods: &pods,
            now_ms: millis(&Timestamp::now()),
        });
        self.execute(&d, &plan).await?;
        Ok(plan
            .requeue_after_ms
            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))))
    }
}
