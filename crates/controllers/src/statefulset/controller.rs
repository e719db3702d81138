//! The StatefulSet controller's I/O: informer handlers, the template
//! history (ControllerRevisions), and the API calls that carry out a
//! [`Plan`].
//!
//! ```text
//!  StatefulSet events ──> its key
//!  Pod events ──> key of its controlling StatefulSet; observe expectations
//!  reconcile(key) ──> revisions (create / renumber / trim)
//!                 ──> core::reconcile ──> POST persistentvolumeclaims,
//!                     POST pods (in order), DELETE pods (uid precondition),
//!                     PATCH statefulsets/status
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::Event;
use kube::{Api, Client, ResourceExt};

use crate::clock::{system_clock, Clock};
use crate::error::{is_status, ControllerError};
use crate::events;
use crate::expectations::Expectations;
use crate::owner::controller_ref;
use crate::revision::{self, owned_revisions, revision_template};
use crate::runtime::{informer::event_objects, key_of, split_key, Informer, Reconciler, WorkQueue};
use crate::slim_pod::SlimPod;
use crate::statefulset::core::{self, Input, Plan, Revision};
use crate::statefulset::identity::pod_revision;

/// The controller's name in logs and events.
pub const NAME: &str = "statefulset";

/// The StatefulSet controller.
pub struct StatefulSetController {
    client: Client,
    statefulsets: Store<StatefulSet>,
    pods: Store<SlimPod>,
    claims: Store<PersistentVolumeClaim>,
    revisions: Store<ControllerRevision>,
    expectations: Arc<Expectations>,
    clock: Clock,
}

impl StatefulSetController {
    /// Builds the controller on shared informers and registers its event
    /// handlers, which feed `queue`.
    pub fn new(
        client: Client,
        sts_informer: &mut Informer<StatefulSet>,
        pod_informer: &mut Informer<SlimPod>,
        claims: Store<PersistentVolumeClaim>,
        revisions: Store<ControllerRevision>,
        queue: &WorkQueue,
    ) -> Arc<StatefulSetController> {
        let expectations = Arc::new(Expectations::default());
        {
            let queue = queue.clone();
            let expectations = expectations.clone();
            sts_informer.on_event(move |e| {
                if let Event::Delete(s) = e {
                    expectations.forget(&key_of(s));
                }
                if let Some(s) = event_objects(e) {
                    queue.add(key_of(s));
                }
            });
        }
        {
            let queue = queue.clone();
            let expectations = expectations.clone();
            pod_informer.on_event(move |e| {
                let Some(pod) = event_objects(e) else { return };
                let Some(r) = controller_ref(&pod.metadata).filter(|r| r.kind == "StatefulSet")
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
        Arc::new(StatefulSetController {
            client,
            statefulsets: sts_informer.store(),
            pods: pod_informer.store(),
            claims,
            revisions,
            expectations,
            clock: system_clock(),
        })
    }

    async fn record(&self, sts: &StatefulSet, type_: &str, reason: &str, message: String) {
        events::record(&self.client, NAME, sts, type_, reason, &message).await;
    }

    /// Carries out the plan in Kubernetes' order: claims, then pods to
    /// create (stopping at the first failure, so ordinals stay in order),
    /// then deletions, then the status.
    async fn execute(
        &self,
        key: &str,
        sts: &StatefulSet,
        plan: &Plan,
    ) -> Result<(), ControllerError> {
        let ns = sts.namespace().unwrap_or_default();
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        for claim in &plan.create_claims {
            let name = claim.name_any();
            match claims.create(&PostParams::default(), claim).await {
                Ok(_) => {
                    self.record(
                        sts,
                        "Normal",
                        "SuccessfulCreate",
                        format!(
                            "create Claim {name} in StatefulSet {} success",
                            sts.name_any()
                        ),
                    )
                    .await
                }
                Err(e) if is_status(&e, 409) => {}
                Err(e) => {
                    self.record(
                        sts,
                        "Warning",
                        "FailedCreate",
                        format!(
                            "create Claim {name} in StatefulSet {} failed error: {e}",
                            sts.name_any()
                        ),
                    )
                    .await;
                    return Err(ControllerError::api(
                        format!("creating claim {ns}/{name}"),
                        e,
                    ));
                }
            }
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        for pod in &plan.create {
            let name = pod.name_any();
            self.expectations
                .expect(key, std::slice::from_ref(&name), &[]);
            match pods.create(&PostParams::default(), pod).await {
                Ok(_) => {
                    self.record(
                        sts,
                        "Normal",
                        "SuccessfulCreate",
                        format!(
                            "create Pod {name} in StatefulSet {} successful",
                            sts.name_any()
                        ),
                    )
                    .await
                }
                Err(e) => {
                    self.expectations.creation_observed(key, &name);
                    if is_status(&e, 409) {
                        // An older pod of this name is still going away.
                        continue;
                    }
                    self.record(
                        sts,
                        "Warning",
                        "FailedCreate",
                        format!(
                            "create Pod {name} in StatefulSet {} failed error: {e}",
                            sts.name_any()
                        ),
                    )
                    .await;
                    return Err(ControllerError::api(format!("creating pod {ns}/{name}"), e));
                }
            }
        }
        if !plan.delete.is_empty() {
            let uids: Vec<String> = plan.delete.iter().map(|p| p.uid.clone()).collect();
            self.expectations.expect(key, &[], &uids);
        }
        for pod in &plan.delete {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(pod.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match pods.delete(&pod.name, &params).await {
                Ok(_) => {
                    self.record(
                        sts,
                        "Normal",
                        "SuccessfulDelete",
                        format!(
                            "delete Pod {} in StatefulSet {} successful",
                            pod.name,
                            sts.name_any()
                        ),
                    )
                    .await
                }
                Err(e) => {
                    self.expectations
                        .deletion_observed(key, &pod.name, &pod.uid);
                    if !is_status(&e, 404) && !is_status(&e, 409) {
                        return Err(ControllerError::api(
                            format!("deleting pod {ns}/{}", pod.name),
                            e,
                        ));
                    }
                }
            }
        }
        for name in &plan.delete_claims {
            if let Err(e) = claims.delete(name, &DeleteParams::default()).await {
                if !is_status(&e, 404) {
                    return Err(ControllerError::api(
                        format!("deleting claim {ns}/{name}"),
                        e,
                    ));
                }
            }
        }
        if let Some(status) = &plan.status {
            crate::status::write_status(&self.client, sts, status).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Reconciler for StatefulSetController {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ControllerError> {
        let (ns, name) = split_key(key);
        let Some(sts) = self.statefulsets.get(&ObjectRef::new(name).within(ns)) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let uid = sts.metadata.uid.clone().unwrap_or_default();
        let all = self.pods.state();
        let pods: Vec<&SlimPod> = all
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .filter(|p| controller_ref(&p.metadata).is_some_and(|r| r.uid == uid))
            .collect();
        // Pods carry the revision's name; the history keeps revisions by hash.
        let prefix = format!("{name}-");
        let current_name = sts.status.as_ref().and_then(|s| s.current_revision.clone());
        let in_use: Vec<&str> = pods
            .iter()
            .filter_map(|p| pod_revision(p))
            .chain(current_name.as_deref())
            .filter_map(|r| r.strip_prefix(&prefix))
            .collect();
        let owner = revision::Owner {
            kind: "StatefulSet",
            meta: &sts.metadata,
            template: &sts.spec.template,
            collision_count: sts.status.as_ref().and_then(|s| s.collision_count),
            history_limit: sts.spec.revision_history_limit.unwrap_or(10),
        };
        let hash = revision::sync_revisions(&self.client, &self.revisions, &owner, &in_use).await?;
        let update_name = format!("{prefix}{hash}");
        // The current revision's template, if its revision is still there.
        let current = current_name.filter(|n| *n != update_name).and_then(|n| {
            owned_revisions(&self.revisions, &sts.metadata)
                .iter()
                .find(|r| r.metadata.name.as_deref() == Some(n.as_str()))
                .and_then(|r| revision_template(r))
                .map(|t| (n, t))
        });
        let claim_objs = self.claims.state();
        let claims: BTreeSet<String> = claim_objs
            .iter()
            .filter(|c| c.metadata.namespace.as_deref() == Some(ns))
            .filter(|c| c.metadata.deletion_timestamp.is_none())
            .map(|c| c.name_any())
            .collect();
        let update = Revision {
            name: &update_name,
            template: &sts.spec.template,
        };
        let plan = core::reconcile(&Input {
            sts: &sts,
            pods: &pods,
            claims: &claims,
            current: current.as_ref().map_or(update, |(n, t)| Revision {
                name: n,
                template: t,
            }),
            update,
            may_manage: self.expectations.satisfied(key),
            now_ms: (self.clock)(),
        });
        if !plan.create.is_empty() || !plan.delete.is_empty() {
            tracing::info!(statefulset = %key, create = plan.create.len(), delete = plan.delete.len(), "managing stateful pods");
        }
        self.execute(key, &sts, &plan).await?;
        Ok(plan
            .requeue_after_ms
            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0) + 10)))
    }
}
