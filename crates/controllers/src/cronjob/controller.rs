//! The CronJob controller's I/O: informer handlers that queue keys, and the
//! API calls that carry out a [`Plan`]. The clock is a [`Clock`], so tests
//! can move time; the reconcile asks to be called again at the next
//! scheduled time.
//!
//! ```text
//!  CronJob events ──> key of the CronJob
//!  Job events ──> key of its controlling CronJob
//!  reconcile(key) ──> core::reconcile ──> POST jobs, DELETE jobs
//!                     (background), PATCH cronjobs/status
//! ```

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{DeleteParams, PostParams, Preconditions, PropagationPolicy};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

use crate::clock::Clock;
use crate::cronjob::core::{self, Input, Plan};
use crate::cronjob::schedule::time_zone;
use crate::error::{is_status, ControllerError};
use crate::events;
use crate::owner::controller_ref;
use crate::runtime::{informer::event_objects, key_of, split_key, Informer, Reconciler, WorkQueue};

/// The controller's name in logs and events.
pub const NAME: &str = "cronjob";

/// The CronJob controller.
pub struct CronJobController {
    client: Client,
    cronjobs: Store<CronJob>,
    jobs: Store<Job>,
    clock: Clock,
}

impl CronJobController {
    /// Builds the controller on shared informers and registers its event
    /// handlers, which feed `queue`.
    pub fn new(
        client: Client,
        cj_informer: &mut Informer<CronJob>,
        job_informer: &mut Informer<Job>,
        queue: &WorkQueue,
        clock: Clock,
    ) -> Arc<CronJobController> {
        {
            let queue = queue.clone();
            cj_informer.on_event(move |e| {
                if let Some(cj) = event_objects(e) {
                    queue.add(key_of(cj));
                }
            });
        }
        {
            let queue = queue.clone();
            job_informer.on_event(move |e| {
                let Some(job) = event_objects(e) else { return };
                if let Some(r) = controller_ref(&job.metadata).filter(|r| r.kind == "CronJob") {
                    queue.add(format!(
                        "{}/{}",
                        job.namespace().unwrap_or_default(),
                        r.name
                    ));
                }
            });
        }
        Arc::new(CronJobController {
            client,
            cronjobs: cj_informer.store(),
            jobs: job_informer.store(),
            clock,
        })
    }

    async fn execute(
        &self,
        cj: &CronJob,
        plan: &Plan,
        tz: Option<&k8s_openapi::jiff::tz::TimeZone>,
    ) -> Result<(), ControllerError> {
        let ns = cj.namespace().unwrap_or_default();
        let api: Api<Job> = Api::namespaced(self.client.clone(), &ns);
        let mut first_error = None;
        for j in &plan.delete {
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                preconditions: Some(Preconditions {
                    uid: Some(j.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&j.name, &params).await {
                Ok(_) => {
                    events::record(
                        &self.client,
                        NAME,
                        cj,
                        "Normal",
                        "SuccessfulDelete",
                        &format!("Deleted job {}", j.name),
                    )
                    .await
                }
                Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
                Err(e) => {
                    first_error.get_or_insert(ControllerError::api(
                        format!("deleting job {ns}/{}", j.name),
                        e,
                    ));
                }
            }
        }
        let mut status = plan.status.clone();
        if let (Some(at), Some(tz)) = (plan.create_at, tz) {
            let job = core::job_from_template(cj, at, tz);
            let name = job.name_any();
            match api.create(&PostParams::default(), &job).await {
                Ok(created) => {
                    events::record(
                        &self.client,
                        NAME,
                        cj,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("Created job {name}"),
                    )
                    .await;
                    // The new Job joins `active` now, as Kubernetes does,
                    // so kubectl shows it before the watch brings it.
                    if let Some(st) = status.as_mut() {
                        let mut active = st.active.take().unwrap_or_default();
                        active.push(k8s_openapi::api::core::v1::ObjectReference {
                            api_version: Some("batch/v1".into()),
                            kind: Some("Job".into()),
                            name: created.metadata.name.clone(),
                            namespace: created.metadata.namespace.clone(),
                            uid: created.metadata.uid.clone(),
                            resource_version: created.metadata.resource_version.clone(),
                            ..Default::default()
                        });
                        st.active = Some(active);
                    }
                }
                Err(e) if is_status(&e, 409) => {}
                Err(e) => {
                    events::record(
                        &self.client,
                        NAME,
                        cj,
                        "Warning",
                        "FailedCreate",
                        &format!("Error creating job: {e}"),
                    )
                    .await;
                    // Do not record the schedule time: retry it.
                    return Err(ControllerError::api(format!("creating job {ns}/{name}"), e));
                }
            }
        }
        for (type_, reason, message) in &plan.events {
            events::record(&self.client, NAME, cj, type_, reason, message).await;
        }
        if let Some(status) = &status {
            if let Err(e) = crate::status::write_status(&self.client, cj, status).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[async_trait::async_trait]
impl Reconciler for CronJobController {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ControllerError> {
        let (ns, name) = split_key(key);
        let Some(cj) = self.cronjobs.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(None);
        };
        let uid = cj.metadata.uid.clone().unwrap_or_default();
        let all = self.jobs.state();
        let jobs: Vec<&Job> = all
            .iter()
            .map(|j| j.as_ref())
            .filter(|j| j.metadata.namespace.as_deref() == Some(ns))
            .filter(|j| controller_ref(&j.metadata).is_some_and(|r| r.uid == uid))
            .collect();
        let tz = time_zone(cj.spec.time_zone.as_deref());
        let plan = core::reconcile(&Input {
            cronjob: &cj,
            jobs: &jobs,
            time_zone: tz.as_ref().map_err(String::as_str),
            now_ms: (self.clock)(),
        });
        if let Some(at) = plan.create_at {
            tracing::info!(cronjob = %key, job = %core::job_name(&cj, at), "starting scheduled job");
        }
        self.execute(&cj, &plan, tz.as_ref().ok()).await?;
        // A little past the scheduled time, so the clock has reached it.
        Ok(plan
            .requeue_after_ms
            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0) + 100)))
    }
}
