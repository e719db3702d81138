//! The DaemonSet controller's I/O: informer handlers, the template history
//! (ControllerRevisions), and the API calls that carry out a [`Plan`].
//!
//! ```text
//!  DaemonSet events ──> its key      Node events ──> every DaemonSet's key
//!  Pod events ──> key of its controlling DaemonSet; observe expectations
//!  reconcile(key) ──> revisions (create / renumber / trim)
//!                 ──> core::reconcile ──> POST pods, DELETE pods (uid
//!                     precondition), PATCH daemonsets/status
//! ```

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::Event;
use kube::{Api, Client, ResourceExt};

use crate::clock::{system_clock, Clock};
use crate::daemonset::core::{self, Input, Plan};
use crate::error::{is_status, ControllerError};
use crate::events;
use crate::expectations::Expectations;
use crate::names::generate_name;
use crate::owner::controller_ref;
use crate::revision::{self, CONTROLLER_REVISION_HASH_LABEL};
use crate::runtime::{informer::event_objects, key_of, split_key, Informer, Reconciler, WorkQueue};
use crate::slim_pod::SlimPod;

/// The controller's name in logs and events.
pub const NAME: &str = "daemonset";

/// The DaemonSet controller.
pub struct DaemonSetController {
    client: Client,
    daemonsets: Store<DaemonSet>,
    pods: Store<SlimPod>,
    nodes: Store<Node>,
    revisions: Store<ControllerRevision>,
    expectations: Arc<Expectations>,
    clock: Clock,
}

impl DaemonSetController {
    /// Builds the controller on shared informers and registers its event
    /// handlers, which feed `queue`.
    pub fn new(
        client: Client,
        ds_informer: &mut Informer<DaemonSet>,
        pod_informer: &mut Informer<SlimPod>,
        node_informer: &mut Informer<Node>,
        revision_informer: &mut Informer<ControllerRevision>,
        queue: &WorkQueue,
    ) -> Arc<DaemonSetController> {
        let expectations = Arc::new(Expectations::default());
        let daemonsets = ds_informer.store();
        {
            let queue = queue.clone();
            let expectations = expectations.clone();
            ds_informer.on_event(move |e| {
                if let Event::Delete(ds) = e {
                    expectations.forget(&key_of(ds));
                }
                if let Some(ds) = event_objects(e) {
                    queue.add(key_of(ds));
                }
            });
        }
        {
            let queue = queue.clone();
            let expectations = expectations.clone();
            pod_informer.on_event(move |e| {
                let Some(pod) = event_objects(e) else { return };
                let Some(r) = controller_ref(&pod.metadata).filter(|r| r.kind == "DaemonSet")
                else {
                    return;
                };
                let owner = format!("{}/{}", pod.namespace().unwrap_or_default(), r.name);
                let name = pod.name_any();
                if matches!(e, Event::Delete(_)) || pod.metadata.deletion_timestamp.is_some() {
                    expectations.deletion_observed(
                        &owner,
                        &name,
                        pod.metadata.uid.as_deref().unwrap_or_default(),
                    );
                } else {
                    expectations.creation_observed(&owner, &name);
                }
                queue.add(owner);
            });
        }
        {
            let queue = queue.clone();
            let daemonsets = daemonsets.clone();
            node_informer.on_event(move |e| {
                if event_objects(e).is_some() {
                    for ds in daemonsets.state() {
                        queue.add(key_of(ds.as_ref()));
                    }
                }
            });
        }
        Arc::new(DaemonSetController {
            client,
            daemonsets,
            pods: pod_informer.store(),
            nodes: node_informer.store(),
            revisions: revision_informer.store(),
            expectations,
            clock: system_clock(),
        })
    }

    async fn execute(
        &self,
        key: &str,
        ds: &DaemonSet,
        hash: &str,
        plan: &Plan,
    ) -> Result<(), ControllerError> {
        let ns = ds.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let mut first_error = None;
        if !plan.create.is_empty() {
            let named: Vec<(String, &String)> = plan
                .create
                .iter()
                .map(|node| (generate_name(&format!("{}-", ds.name_any())), node))
                .collect();
            let names: Vec<String> = named.iter().map(|(n, _)| n.clone()).collect();
            self.expectations.expect(key, &names, &[]);
            let calls = named.iter().map(|(name, node)| {
                let pod = core::pod_from_template(ds, name, node, hash);
                let api = api.clone();
                async move { (name, api.create(&PostParams::default(), &pod).await) }
            });
            for (name, r) in futures::future::join_all(calls).await {
                match r {
                    Ok(_) => {
                        events::record(
                            &self.client,
                            NAME,
                            ds,
                            "Normal",
                            "SuccessfulCreate",
                            &format!("Created pod: {name}"),
                        )
                        .await
                    }
                    Err(e) => {
                        self.expectations.creation_observed(key, name);
                        events::record(
                            &self.client,
                            NAME,
                            ds,
                            "Warning",
                            "FailedCreate",
                            &format!("Error creating: {e}"),
                        )
                        .await;
                        first_error.get_or_insert(ControllerError::api(
                            format!("creating pod {ns}/{name}"),
                            e,
                        ));
                    }
                }
            }
        }
        if !plan.delete.is_empty() {
            let uids: Vec<String> = plan.delete.iter().map(|p| p.uid.clone()).collect();
            self.expectations.expect(key, &[], &uids);
            for pod in &plan.delete {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(pod.uid.clone()),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match api.delete(&pod.name, &params).await {
                    Ok(_) => {
                        events::record(
                            &self.client,
                            NAME,
                            ds,
                            "Normal",
                            "SuccessfulDelete",
                            &format!("Deleted pod: {}", pod.name),
                        )
                        .await
                    }
                    Err(e) => {
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
            }
        }
        if let Some(status) = &plan.status {
            if let Err(e) = crate::status::write_status(&self.client, ds, status).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[async_trait::async_trait]
impl Reconciler for DaemonSetController {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ControllerError> {
        let (ns, name) = split_key(key);
        let Some(ds) = self.daemonsets.get(&ObjectRef::new(name).within(ns)) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let all = self.pods.state();
        let pods: Vec<&SlimPod> = all
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .filter(|p| controller_ref(&p.metadata).is_some_and(|r| r.uid == uid))
            .collect();
        let in_use: Vec<&str> = pods
            .iter()
            .filter_map(|p| {
                p.metadata
                    .labels
                    .as_ref()?
                    .get(CONTROLLER_REVISION_HASH_LABEL)
                    .map(String::as_str)
            })
            .collect();
        let owner = revision::Owner {
            kind: "DaemonSet",
            meta: &ds.metadata,
            template: &ds.spec.template,
            collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
            history_limit: ds.spec.revision_history_limit.unwrap_or(10),
        };
        let hash = revision::sync_revisions(&self.client, &self.revisions, &owner, &in_use).await?;
        let node_objs = self.nodes.state();
        let nodes: Vec<&Node> = node_objs.iter().map(|n| n.as_ref()).collect();
        let plan = core::reconcile(&Input {
            ds: &ds,
            nodes: &nodes,
            pods: &pods,
            hash: &hash,
            may_manage: self.expectations.satisfied(key),
            now_ms: (self.clock)(),
        });
        if !plan.create.is_empty() || !plan.delete.is_empty() {
            tracing::info!(daemonset = %key, create = plan.create.len(), delete = plan.delete.len(), "managing daemon pods");
        }
        self.execute(key, &ds, &hash, &plan).await?;
        Ok(plan
            .requeue_after_ms
            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0) + 10)))
    }
}
