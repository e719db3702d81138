//! The ReplicaSet controller's I/O: informer handlers that queue keys and
//! observe expectations, and the API calls that carry out a [`Plan`].
//!
//! ```text
//!  ReplicaSet events ──> key of the ReplicaSet
//!  Pod events ──> key of its controller (or of every ReplicaSet selecting
//!                 an orphan); observe expected creations/deletions
//!  reconcile(key) ──> core::reconcile ──> adopt/release (PATCH pod),
//!                     create (POST pod, slow start), delete (DELETE pod,
//!                     uid precondition, all at once), PATCH replicasets/status
//! ```
//!
//! Each pod's `SuccessfulCreate`/`SuccessfulDelete` event is written right
//! after its own call, concurrently with the other pods' calls: written one
//! after another (and the deletions too) they held a 10,000-pod scale-up
//! to ~100 pods/s and a scale-down to ~25 pods/s (`skiff bench
//! controllers`).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::Event;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::error::{is_status, ControllerError};
use crate::events;
use crate::expectations::Expectations;
use crate::names::generate_name;
use crate::owner::{controller_ref, new_controller_ref};
use crate::pod_util::millis;
use crate::replicaset::core::{self, Input, Plan, PodRef};
use crate::runtime::{informer::event_objects, key_of, split_key, Informer, Reconciler, WorkQueue};
use crate::selector;
use crate::slim_pod::SlimPod;

/// The controller's name in logs and events.
pub const NAME: &str = "replicaset";

/// The ReplicaSet controller.
pub struct ReplicaSetController {
    client: Client,
    replicasets: Store<ReplicaSet>,
    pods: Store<SlimPod>,
    expectations: Arc<Expectations>,
}

impl ReplicaSetController {
    /// Builds the controller on shared informers and registers its event
    /// handlers, which feed `queue`.
    pub fn new(
        client: Client,
        rs_informer: &mut Informer<ReplicaSet>,
        pod_informer: &mut Informer<SlimPod>,
        queue: &WorkQueue,
    ) -> Arc<ReplicaSetController> {
        let expectations = Arc::new(Expectations::default());
        let replicasets = rs_informer.store();
        {
            let queue = queue.clone();
            let expectations = expectations.clone();
            rs_informer.on_event(move |e| {
                if let Event::Delete(rs) = e {
                    expectations.forget(&key_of(rs));
                }
                if let Some(rs) = event_objects(e) {
                    queue.add(key_of(rs));
                }
            });
        }
        {
            let queue = queue.clone();
            let expectations = expectations.clone();
            let replicasets = replicasets.clone();
            pod_informer.on_event(move |e| {
                let Some(pod) = event_objects(e) else { return };
                let ns = pod.namespace().unwrap_or_default();
                match controller_ref(&pod.metadata) {
                    Some(r) if r.kind == "ReplicaSet" => {
                        let owner = format!("{ns}/{}", r.name);
                        let name = pod.name_any();
                        let gone = matches!(e, Event::Delete(_))
                            || pod.metadata.deletion_timestamp.is_some();
                        if gone {
                            expectations.deletion_observed(
                                &owner,
                                &name,
                                pod.metadata.uid.as_deref().unwrap_or_default(),
                            );
                        } else {
                            expectations.creation_observed(&owner, &name);
                        }
                        queue.add(owner);
                    }
                    Some(_) => {}
                    None => {
                        // An orphan: every ReplicaSet that selects it may adopt it.
                        for rs in replicasets.state() {
                            if rs.namespace().as_deref() == Some(ns.as_str())
                                && selector::matches(
                                    &rs.spec.selector,
                                    pod.metadata.labels.as_ref(),
                                )
                            {
                                queue.add(key_of(rs.as_ref()));
                            }
                        }
                    }
                }
            });
        }
        Arc::new(ReplicaSetController {
            client,
            replicasets,
            pods: pod_informer.store(),
            expectations,
        })
    }

    async fn adopt_or_release(
        &self,
        ns: &str,
        rs: &ReplicaSet,
        pod: &PodRef,
        adopt: bool,
    ) -> Result<(), ControllerError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let Some(current) = self
            .pods
            .get(&ObjectRef::new(&pod.name).within(ns))
            .filter(|p| p.metadata.uid.as_deref() == Some(pod.uid.as_str()))
        else {
            return Ok(());
        };
        let rs_uid = rs.metadata.uid.clone().unwrap_or_default();
        let mut refs: Vec<OwnerReference> = current
            .metadata
            .owner_references
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.uid != rs_uid)
            .collect();
        if adopt {
            if let Some(r) = new_controller_ref("apps/v1", "ReplicaSet", &rs.metadata) {
                refs.push(r);
            }
        }
        // resourceVersion makes the merge patch conditional: if the pod
        // changed since our cache saw it, the API answers 409 and we retry.
        let patch = json!({"metadata": {
            "ownerReferences": refs,
            "resourceVersion": current.metadata.resource_version,
        }});
        match api
            .patch(&pod.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(ControllerError::api(
                format!(
                    "{} pod {ns}/{}",
                    if adopt { "adopting" } else { "releasing" },
                    pod.name
                ),
                e,
            )),
        }
    }

    /// Creates `count` pods in batches of 1, 2, 4, … (Kubernetes'
    /// `slowStartBatch`), stopping at the first failing batch so a quota or
    /// admission error costs one call, not hundreds.
    async fn create_pods(
        &self,
        key: &str,
        rs: &ReplicaSet,
        count: i32,
    ) -> Result<(), ControllerError> {
        let ns = rs.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let base = format!("{}-", rs.name_any());
        let names: Vec<String> = (0..count).map(|_| generate_name(&base)).collect();
        self.expectations.expect(key, &names, &[]);
        let mut start = 0usize;
        let mut batch = 1usize;
        let mut first_error = None;
        while start < names.len() {
            let end = (start + batch).min(names.len());
            // Each pod's event is written as soon as its create returns, in
            // parallel with the others (Kubernetes' recorder never blocks
            // the controller on event writes).
            let calls = names[start..end].iter().map(|name| {
                let pod = core::pod_from_template(rs, name);
                let api = api.clone();
                async move {
                    let result = api.create(&PostParams::default(), &pod).await;
                    let (type_, reason, message) = match &result {
                        Ok(_) => ("Normal", "SuccessfulCreate", format!("Created pod: {name}")),
                        Err(e) => ("Warning", "FailedCreate", format!("Error creating: {e}")),
                    };
                    events::record(&self.client, NAME, rs, type_, reason, &message).await;
                    (name, result)
                }
            });
            for (name, r) in futures::future::join_all(calls).await {
                if let Err(e) = r {
                    self.expectations.creation_observed(key, name);
                    first_error.get_or_insert(ControllerError::api(
                        format!("creating pod {ns}/{name}"),
                        e,
                    ));
                }
            }
            if first_error.is_some() {
                // The rest will never be created in this round.
                for name in &names[end..] {
                    self.expectations.creation_observed(key, name);
                }
                break;
            }
            start = end;
            batch *= 2;
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn delete_pods(
        &self,
        key: &str,
        rs: &ReplicaSet,
        pods: &[PodRef],
    ) -> Result<(), ControllerError> {
        let ns = rs.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let uids: Vec<String> = pods.iter().map(|p| p.uid.clone()).collect();
        self.expectations.expect(key, &[], &uids);
        // All deletions of one reconcile at once, as Kubernetes'
        // `manageReplicas` does (one goroutine per pod).
        let calls = pods.iter().map(|pod| {
            let api = api.clone();
            async move {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(pod.uid.clone()),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                let result = api.delete(&pod.name, &params).await;
                if result.is_ok() {
                    let message = format!("Deleted pod: {}", pod.name);
                    events::record(
                        &self.client,
                        NAME,
                        rs,
                        "Normal",
                        "SuccessfulDelete",
                        &message,
                    )
                    .await;
                }
                (pod, result)
            }
        });
        let mut first_error = None;
        for (pod, r) in futures::future::join_all(calls).await {
            if let Err(e) = r {
                self.expectations
                    .deletion_observed(key, &pod.name, &pod.uid);
                if !is_status(&e, 404) {
                    first_error.get_or_insert(ControllerError::api(
                        format!("deleting pod {ns}/{}", pod.name),
                        e,
                    ));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn write_status(
        &self,
        rs: &ReplicaSet,
        status: &ReplicaSetStatus,
    ) -> Result<(), ControllerError> {
        crate::status::write_status(&self.client, rs, status).await
    }

    async fn execute(
        &self,
        key: &str,
        rs: &ReplicaSet,
        plan: &Plan,
    ) -> Result<(), ControllerError> {
        let ns = rs.namespace().unwrap_or_default();
        let mut first_error = None;
        for pod in &plan.adopt {
            if let Err(e) = self.adopt_or_release(&ns, rs, pod, true).await {
                first_error.get_or_insert(e);
            }
        }
        for pod in &plan.release {
            if let Err(e) = self.adopt_or_release(&ns, rs, pod, false).await {
                first_error.get_or_insert(e);
            }
        }
        if plan.create > 0 {
            if let Err(e) = self.create_pods(key, rs, plan.create).await {
                first_error.get_or_insert(e);
            }
        }
        if !plan.delete.is_empty() {
            if let Err(e) = self.delete_pods(key, rs, &plan.delete).await {
                first_error.get_or_insert(e);
            }
        }
        if let Some(status) = &plan.status {
            if let Err(e) = self.write_status(rs, status).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[async_trait::async_trait]
impl Reconciler for ReplicaSetController {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ControllerError> {
        let (ns, name) = split_key(key);
        let Some(rs) = self.replicasets.get(&ObjectRef::new(name).within(ns)) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let all = self.pods.state();
        let pods: Vec<&SlimPod> = all
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .collect();
        let plan = core::reconcile(&Input {
            rs: &rs,
            pods: &pods,
            may_manage: self.expectations.satisfied(key),
            now_ms: millis(&Timestamp::now()),
        });
        if plan.create > 0 || !plan.delete.is_empty() {
            tracing::info!(replicaset = %key, create = plan.create, delete = plan.delete.len(), "scaling pods");
        }
        self.execute(key, &rs, &plan).await?;
        Ok(plan
            .requeue_after_ms
            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0) + 10)))
    }
}
