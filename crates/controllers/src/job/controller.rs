//! The Job controller's I/O: informer handlers that queue keys and observe
//! expectations, and the API calls that carry out a [`Plan`].
//!
//! ```text
//!  Job events ──> key of the Job
//!  Pod events ──> key of its controlling Job; observe expectations
//!  reconcile(key) ──> core::reconcile ──> POST pods, DELETE pods (uid
//!                     precondition), PATCH jobs/status, DELETE the Job
//!                     (TTL, background propagation)
//! ```

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, PostParams, Preconditions, PropagationPolicy};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::Event;
use kube::{Api, Client, ResourceExt};

use crate::clock::{system_clock, Clock};
use crate::error::{is_status, ControllerError};
use crate::events;
use crate::expectations::Expectations;
use crate::job::core::{self, Input, Plan};
use crate::names::generate_name;
use crate::owner::controller_ref;
use crate::replicaset::core::PodRef;
use crate::runtime::{informer::event_objects, key_of, split_key, Informer, Reconciler, WorkQueue};
use crate::slim_pod::SlimPod;

/// The controller's name in logs and events.
pub const NAME: &str = "job";

/// The Job controller.
pub struct JobController {
    client: Client,
    jobs: Store<Job>,
    pods: Store<SlimPod>,
    expectations: Arc<Expectations>,
    clock: Clock,
}

impl JobController {
    /// Builds the controller on shared informers and registers its event
    /// handlers, which feed `queue`.
    pub fn new(
        client: Client,
        job_informer: &mut Informer<Job>,
        pod_informer: &mut Informer<SlimPod>,
        queue: &WorkQueue,
    ) -> Arc<JobController> {
        let expectations = Arc::new(Expectations::default());
        {
            let queue = queue.clone();
            let expectations = expectations.clone();
            job_informer.on_event(move |e| {
                if let Event::Delete(j) = e {
                    expectations.forget(&key_of(j));
                }
                if let Some(j) = event_objects(e) {
                    queue.add(key_of(j));
                }
            });
        }
        {
            let queue = queue.clone();
            let expectations = expectations.clone();
            pod_informer.on_event(move |e| {
                let Some(pod) = event_objects(e) else { return };
                let Some(r) = controller_ref(&pod.metadata).filter(|r| r.kind == "Job") else {
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
        Arc::new(JobController {
            client,
            jobs: job_informer.store(),
            pods: pod_informer.store(),
            expectations,
            clock: system_clock(),
        })
    }

    async fn create_pods(
        &self,
        key: &str,
        job: &Job,
        slots: &[Option<i32>],
    ) -> Result<(), ControllerError> {
        let ns = job.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let named: Vec<(String, Option<i32>)> = slots
            .iter()
            .map(|i| (generate_name(&core::pod_name_base(job, *i)), *i))
            .collect();
        let names: Vec<String> = named.iter().map(|(n, _)| n.clone()).collect();
        self.expectations.expect(key, &names, &[]);
        let calls = named.iter().map(|(name, index)| {
            let pod = core::pod_from_template(job, name, *index);
            let api = api.clone();
            async move { (name, api.create(&PostParams::default(), &pod).await) }
        });
        let mut first_error = None;
        for (name, r) in futures::future::join_all(calls).await {
            match r {
                Ok(_) => {
                    events::record(
                        &self.client,
                        NAME,
                        job,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("Created pod: {name}"),
                    )
                    .await;
                }
                Err(e) => {
                    self.expectations.creation_observed(key, name);
                    events::record(
                        &self.client,
                        NAME,
                        job,
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
        first_error.map_or(Ok(()), Err)
    }

    async fn delete_pods(
        &self,
        key: &str,
        job: &Job,
        pods: &[PodRef],
    ) -> Result<(), ControllerError> {
        let ns = job.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let uids: Vec<String> = pods.iter().map(|p| p.uid.clone()).collect();
        self.expectations.expect(key, &[], &uids);
        let mut first_error = None;
        for pod in pods {
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
                        job,
                        "Normal",
                        "SuccessfulDelete",
                        &format!("Deleted pod: {}", pod.name),
                    )
                    .await;
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
        first_error.map_or(Ok(()), Err)
    }

    async fn delete_job(&self, job: &Job) -> Result<(), ControllerError> {
        let ns = job.namespace().unwrap_or_default();
        let api: Api<Job> = Api::namespaced(self.client.clone(), &ns);
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: Some(Preconditions {
                uid: job.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        tracing::info!(job = %job.name_any(), namespace = %ns, "deleting finished job: ttlSecondsAfterFinished passed");
        match api.delete(&job.name_any(), &params).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(()),
            Err(e) => Err(ControllerError::api(
                format!("deleting job {ns}/{}", job.name_any()),
                e,
            )),
        }
    }

    async fn execute(&self, key: &str, job: &Job, plan: &Plan) -> Result<(), ControllerError> {
        if plan.delete_job {
            return self.delete_job(job).await;
        }
        let mut first_error = None;
        if !plan.create.is_empty() {
            if let Err(e) = self.create_pods(key, job, &plan.create).await {
                first_error.get_or_insert(e);
            }
        }
        if !plan.delete.is_empty() {
            if let Err(e) = self.delete_pods(key, job, &plan.delete).await {
                first_error.get_or_insert(e);
            }
        }
        if let Some(status) = &plan.status {
            if let Err(e) = crate::status::write_status(&self.client, job, status).await {
                first_error.get_or_insert(e);
            }
        }
        if let Some((type_, reason, message)) = &plan.event {
            if plan.status.is_some() {
                events::record(&self.client, NAME, job, type_, reason, message).await;
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[async_trait::async_trait]
impl Reconciler for JobController {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ControllerError> {
        let (ns, name) = split_key(key);
        let Some(job) = self.jobs.get(&ObjectRef::new(name).within(ns)) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let all = self.pods.state();
        let pods: Vec<&SlimPod> = all
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .filter(|p| controller_ref(&p.metadata).is_some_and(|r| r.uid == uid))
            .collect();
        let plan = core::reconcile(&Input {
            job: &job,
            pods: &pods,
            may_manage: self.expectations.satisfied(key)
                && job.metadata.deletion_timestamp.is_none(),
            now_ms: (self.clock)(),
        });
        if !plan.create.is_empty() || !plan.delete.is_empty() {
            tracing::info!(job = %key, create = plan.create.len(), delete = plan.delete.len(), "managing job pods");
        }
        self.execute(key, &job, &plan).await?;
        Ok(plan
            .requeue_after_ms
            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0) + 10)))
    }
}
