//! The resource-quota controller's I/O. The work-queue key is a
//! namespace: one reconcile recomputes every quota in it.
//!
//! ```text
//!  ResourceQuota added, or spec.hard ≠ status.hard ──┐
//!  Pod deleted, terminal, or being deleted          ├─> queue its namespace (if it has quotas)
//!  Service / PersistentVolumeClaim deleted          ┘
//!  reconcile(ns): GET each quota ─> list what any of them counts, once
//!    (live, consistent reads) ─> per quota: core::reconcile ─> PUT
//!    resourcequotas/status with its resourceVersion (an admission charge
//!    meanwhile: 409, retried)
//!  every RESYNC_PERIOD: again (object counts of other kinds, drift)
//! ```
//!
//! Creations are not triggers: admission already charged them, and a
//! recount that raced a charge (quota written, object not yet) could give
//! the charge back too early. Upstream's replenishment controller makes the
//! same choice.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ResourceQuota, Service};
use kube::api::{ApiResource, DynamicObject, ListParams, PostParams};
use kube::runtime::reflector::Store;
use kube::runtime::watcher::Event;
use kube::{Api, Client, ResourceExt};

use crate::error::{is_status, ControllerError};
use crate::quota::core::{self, Objects, Source};
use crate::runtime::{Informer, Reconciler, WorkQueue};
use crate::slim_pod::SlimPod;

/// The controller's name in logs.
pub const NAME: &str = "resourcequota";
/// How often every quota is recomputed although nothing triggered it
/// (kube-controller-manager's `--resource-quota-sync-period`, 5 min): the
/// counts of kinds the controller does not watch come back this late.
pub const RESYNC_PERIOD: Duration = Duration::from_secs(300);

/// The resource-quota controller.
pub struct QuotaController {
    client: Client,
    quotas: Store<ResourceQuota>,
    /// Discovered `(group, resource)` → how to list it.
    resources: Mutex<HashMap<(String, String), ApiResource>>,
}

/// Queues `ns` if a quota lives there.
fn queue_if_quoted(quotas: &Store<ResourceQuota>, queue: &WorkQueue, ns: &str) {
    if quotas
        .state()
        .iter()
        .any(|q| q.metadata.namespace.as_deref() == Some(ns))
    {
        queue.add(ns.to_string());
    }
}

/// Registers a handler that queues the namespace of objects `gone` says
/// give usage back (deleted ones always).
fn follow<K>(
    informer: &mut Informer<K>,
    quotas: &Store<ResourceQuota>,
    queue: &WorkQueue,
    gone: fn(&K) -> bool,
) where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
    K: serde::de::DeserializeOwned,
{
    let (quotas, queue) = (quotas.clone(), queue.clone());
    informer.on_event(move |e| {
        let obj = match e {
            Event::Delete(o) => o,
            Event::Apply(o) if gone(o) => o,
            _ => return,
        };
        if let Some(ns) = obj.meta().namespace.as_deref() {
            queue_if_quoted(&quotas, &queue, ns);
        }
    });
}

/// Whether a pod update may have lowered its usage: it finished or is
/// being deleted.
fn pod_released(p: &SlimPod) -> bool {
    p.metadata.deletion_timestamp.is_some()
        || matches!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

/// Whether a quota needs its status (re)computed now: new, or its hard
/// limits changed.
fn quota_changed(q: &ResourceQuota) -> bool {
    let spec_hard = q.spec.as_ref().and_then(|s| s.hard.as_ref());
    let status_hard = q.status.as_ref().and_then(|s| s.hard.as_ref());
    match (spec_hard, status_hard) {
        (_, None) => true,
        (None, Some(h)) => !h.is_empty(),
        (Some(a), Some(b)) => {
            let parse = |m| skiff_api::quota::resources::parse_list(m);
            !a.keys().eq(b.keys()) || parse(a) != parse(b)
        }
    }
}

impl QuotaController {
    /// Builds the controller on shared informers and registers its
    /// handlers, which feed `queue` with namespaces.
    pub fn new(
        client: Client,
        quotas: &mut Informer<ResourceQuota>,
        pods: &mut Informer<SlimPod>,
        services: &mut Informer<Service>,
        claims: &mut Informer<PersistentVolumeClaim>,
        queue: &WorkQueue,
    ) -> Arc<QuotaController> {
        {
            let queue = queue.clone();
            quotas.on_event(move |e| match e {
                // The first list: every namespace with a quota, which then
                // resyncs itself.
                Event::InitApply(q) => queue.add(q.namespace().unwrap_or_default()),
                Event::Apply(q) if quota_changed(q) => queue.add(q.namespace().unwrap_or_default()),
                _ => {}
            });
        }
        let store = quotas.store();
        follow(pods, &store, queue, pod_released);
        follow(services, &store, queue, |_| false);
        follow(claims, &store, queue, |_| false);
        Arc::new(QuotaController {
            client,
            quotas: store,
            resources: Mutex::new(HashMap::new()),
        })
    }

    /// How to list `resource` of `group`, from discovery (remembered).
    async fn api_resource(&self, group: &str, resource: &str) -> Option<ApiResource> {
        let key = (group.to_string(), resource.to_string());
        if let Some(ar) = self.lock().get(&key) {
            return Some(ar.clone());
        }
        let found = kube::discovery::oneshot::group(&self.client, group)
            .await
            .ok()?
            .recommended_resources()
            .into_iter()
            .map(|(ar, _)| ar)
            .find(|ar| ar.plural == resource)?;
        self.lock().insert(key, found.clone());
        Some(found)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), ApiResource>> {
        self.resources.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every `K` in `ns`, read live (a consistent list).
    async fn list<K>(&self, ns: &str) -> Result<Vec<K>, ControllerError>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
        K: Clone + std::fmt::Debug + serde::de::DeserializeOwned,
    {
        Api::<K>::namespaced(self.client.clone(), ns)
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .map_err(|e| {
                let what = K::plural(&()).to_string();
                ControllerError::api(format!("listing {what} in {ns}"), e)
            })
    }

    /// Reads quota `name` in `ns` live, so the resourceVersion its status
    /// is written against is recent; `None` if it is gone.
    async fn get_quota(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<ResourceQuota>, ControllerError> {
        Api::<ResourceQuota>::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await
            .map_err(|e| ControllerError::api(format!("reading resourcequota {ns}/{name}"), e))
    }

    /// Lists what `sources` name in `ns`, each once whatever the number of
    /// quotas that count it.
    async fn gather(&self, ns: &str, sources: &[Source]) -> Result<Listed, ControllerError> {
        let mut listed = Listed::default();
        for source in sources {
            match source {
                Source::Pods => listed.pods = self.list(ns).await?,
                Source::Services => listed.services = self.list(ns).await?,
                Source::Claims => listed.claims = self.list(ns).await?,
                Source::Count { group, resource } => {
                    let Some(ar) = self.api_resource(group, resource).await else {
                        tracing::debug!(%group, %resource, "quota counts a resource that is not served");
                        continue;
                    };
                    // Whole objects: Skiff's API server serves no
                    // metadata-only (PartialObjectMetadataList) lists.
                    let n = Api::<DynamicObject>::namespaced_with(self.client.clone(), ns, &ar)
                        .list(&ListParams::default())
                        .await
                        .map_err(|e| {
                            ControllerError::api(format!("listing {resource} in {ns}"), e)
                        })?
                        .items
                        .len();
                    listed
                        .counts
                        .insert((group.clone(), resource.clone()), n as i64);
                }
            }
        }
        Ok(listed)
    }

    /// Recomputes `quota`'s status over `listed` and writes it if it changed.
    async fn write_status(
        &self,
        quota: &ResourceQuota,
        listed: &Listed,
    ) -> Result<(), ControllerError> {
        let ns = quota.namespace().unwrap_or_default();
        let name = quota.name_any();
        let objects = Objects {
            pods: listed.pods.iter().collect(),
            services: listed.services.iter().collect(),
            claims: listed.claims.iter().collect(),
            counts: listed.counts.clone(),
        };
        let now = k8s_openapi::jiff::Timestamp::now().as_second();
        let Some(status) = core::reconcile(quota, &objects, now) else {
            return Ok(());
        };
        let mut updated = quota.clone();
        updated.status = Some(status);
        let api: Api<ResourceQuota> = Api::namespaced(self.client.clone(), &ns);
        match api
            .replace_status(&name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            // 409: an admission charged the quota meanwhile; the queue
            // retries the namespace with back-off.
            Err(e) => Err(ControllerError::api(
                format!("updating status of resourcequota {ns}/{name}"),
                e,
            )),
        }
    }
}

/// What one reconcile of a namespace listed.
#[derive(Default)]
struct Listed {
    pods: Vec<Pod>,
    services: Vec<Service>,
    claims: Vec<PersistentVolumeClaim>,
    counts: BTreeMap<(String, String), i64>,
}

#[async_trait::async_trait]
impl Reconciler for QuotaController {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, ns: &str) -> Result<Option<Duration>, ControllerError> {
        let names: Vec<String> = self
            .quotas
            .state()
            .iter()
            .filter(|q| q.metadata.namespace.as_deref() == Some(ns))
            .map(|q| q.name_any())
            .collect();
        if names.is_empty() {
            return Ok(None);
        }
        let mut quotas = Vec::new();
        for name in &names {
            if let Some(q) = self.get_quota(ns, name).await? {
                quotas.push(q);
            }
        }
        let mut sources: Vec<Source> = quotas.iter().flat_map(core::sources).collect();
        sources.sort();
        sources.dedup();
        let listed = self.gather(ns, &sources).await?;
        for quota in &quotas {
            self.write_status(quota, &listed).await?;
        }
        Ok(Some(RESYNC_PERIOD))
    }
}
