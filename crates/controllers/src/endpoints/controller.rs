//! The Endpoints and EndpointSlice controllers' I/O: informer handlers that
//! turn Service, Pod, Endpoints and EndpointSlice events into Service keys,
//! and the API calls that carry out the pure plans.
//!
//! ```text
//!  Service events ─────────────> its key
//!  Pod events ─────────────────> every Service with a selector in the pod's
//!                                namespace (a relabelled pod must also
//!                                leave the Services that used to select it)
//!  Endpoints / slice events ───> the Service they belong to (repairs edits)
//!  reconcile(key) ─> core::backends ─> subsets::plan  ─> POST/PUT/DELETE endpoints
//!                                  └─> slices::plan   ─> POST/PUT/DELETE endpointslices
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

use super::core::{backends, has_selector};
use super::slices::{self, SERVICE_NAME_LABEL};
use super::subsets::{self, Plan as EndpointsPlan};
use crate::error::{is_status, ControllerError};
use crate::owner::new_controller_ref;
use crate::runtime::{informer::event_objects, key_of, split_key, Informer, Reconciler, WorkQueue};
use crate::slim_pod::SlimPod;

/// The Endpoints controller's name in logs.
pub const ENDPOINTS: &str = "endpoints";
/// The EndpointSlice controller's name in logs.
pub const ENDPOINT_SLICES: &str = "endpointslice";

/// Registers the handlers that queue Service keys on `queue` for a
/// controller whose own objects come from `own` (Endpoints or slices).
fn queue_services<K>(
    queue: &WorkQueue,
    services: &mut Informer<Service>,
    pods: &mut Informer<SlimPod>,
    own: &mut Informer<K>,
    service_of: fn(&K) -> Option<String>,
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    {
        let queue = queue.clone();
        services.on_event(move |e| {
            if let Some(s) = event_objects(e) {
                queue.add(key_of(s));
            }
        });
    }
    {
        let queue = queue.clone();
        let store = services.store();
        pods.on_event(move |e| {
            let Some(pod) = event_objects(e) else { return };
            let ns = pod.namespace().unwrap_or_default();
            for svc in store.state() {
                if svc.namespace().as_deref() == Some(ns.as_str()) && has_selector(&svc) {
                    queue.add(key_of(svc.as_ref()));
                }
            }
        });
    }
    {
        let queue = queue.clone();
        own.on_event(move |e| {
            if let Some(o) = event_objects(e) {
                if let Some(name) = service_of(o) {
                    let ns = o.meta().namespace.clone().unwrap_or_default();
                    queue.add(format!("{ns}/{name}"));
                }
            }
        });
    }
}

fn pods_in<'a>(all: &'a [Arc<SlimPod>], ns: &str) -> Vec<&'a SlimPod> {
    all.iter()
        .map(|p| p.as_ref())
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
        .collect()
}

/// Keeps each selecting Service's Endpoints object up to date.
pub struct EndpointsController {
    client: Client,
    services: Store<Service>,
    pods: Store<SlimPod>,
    endpoints: Store<Endpoints>,
}

impl EndpointsController {
    /// Builds the controller on shared informers and registers its handlers.
    pub fn new(
        client: Client,
        services: &mut Informer<Service>,
        pods: &mut Informer<SlimPod>,
        endpoints: &mut Informer<Endpoints>,
        queue: &WorkQueue,
    ) -> Arc<EndpointsController> {
        queue_services(queue, services, pods, endpoints, |ep| {
            ep.metadata.name.clone()
        });
        Arc::new(EndpointsController {
            client,
            services: services.store(),
            pods: pods.store(),
            endpoints: endpoints.store(),
        })
    }
}

#[async_trait::async_trait]
impl Reconciler for EndpointsController {
    fn name(&self) -> &'static str {
        ENDPOINTS
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ControllerError> {
        let (ns, name) = split_key(key);
        let svc = self.services.get(&ObjectRef::new(name).within(ns));
        let current = self.endpoints.get(&ObjectRef::new(name).within(ns));
        let all = self.pods.state();
        let found = svc
            .as_deref()
            .map(|s| backends(s, &pods_in(&all, ns)))
            .unwrap_or_default();
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), ns);
        let what = |verb: &str| format!("{verb} endpoints {key}");
        match subsets::plan(svc.as_deref(), found, current.as_deref()) {
            EndpointsPlan::Keep => Ok(None),
            EndpointsPlan::Create(ep) => match api.create(&PostParams::default(), &ep).await {
                Ok(_) => Ok(None),
                // Our cache lagged: the next event brings it and we update.
                Err(e) if is_status(&e, 409) => Ok(Some(Duration::from_millis(200))),
                Err(e) => Err(ControllerError::api(what("creating"), e)),
            },
            EndpointsPlan::Update(ep) => {
                // `ep` carries the cached resourceVersion: a stale cache is a
                // 409 and a retry, never a lost write.
                match api.replace(name, &PostParams::default(), &ep).await {
                    Ok(_) => Ok(None),
                    Err(e) => Err(ControllerError::api(what("updating"), e)),
                }
            }
            EndpointsPlan::Delete => match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => Ok(None),
                Err(e) if is_status(&e, 404) => Ok(None),
                Err(e) => Err(ControllerError::api(what("deleting"), e)),
            },
        }
    }
}

/// Keeps each selecting Service's EndpointSlices up to date.
pub struct EndpointSliceController {
    client: Client,
    services: Store<Service>,
    pods: Store<SlimPod>,
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    /// Slices created but not yet in the cache, per Service key, with when
    /// (like Kubernetes' `EndpointSliceTracker`): a reconcile waits for
    /// them rather than creating duplicates from a lagging cache.
    pending: std::sync::Mutex<BTreeMap<String, (Vec<String>, std::time::Instant)>>,
}

/// How long a created slice may take to show up in the cache before the
/// controller stops waiting for it.
pub const PENDING_CREATE_TIMEOUT: Duration = Duration::from_secs(5);

impl EndpointSliceController {
    /// Builds the controller on shared informers and registers its handlers.
    pub fn new(
        client: Client,
        services: &mut Informer<Service>,
        pods: &mut Informer<SlimPod>,
        slices: &mut Informer<EndpointSlice>,
        nodes: &Informer<Node>,
        queue: &WorkQueue,
    ) -> Arc<EndpointSliceController> {
        queue_services(queue, services, pods, slices, |s| {
            s.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL).cloned()
        });
        Arc::new(EndpointSliceController {
            client,
            services: services.store(),
            pods: pods.store(),
            slices: slices.store(),
            nodes: nodes.store(),
            pending: Default::default(),
        })
    }

    fn zones(&self) -> BTreeMap<String, String> {
        self.nodes
            .state()
            .iter()
            .filter_map(|n| {
                let zone = n.metadata.labels.as_ref()?.get(slices::ZONE_LABEL)?;
                Some((n.name_any(), zone.clone()))
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl Reconciler for EndpointSliceController {
    fn name(&self) -> &'static str {
        ENDPOINT_SLICES
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ControllerError> {
        let (ns, name) = split_key(key);
        let svc = self.services.get(&ObjectRef::new(name).within(ns));
        let all_slices = self.slices.state();
        let existing: Vec<&EndpointSlice> = all_slices
            .iter()
            .map(|s| s.as_ref())
            .filter(|s| {
                s.metadata.namespace.as_deref() == Some(ns) && slices::is_managed_for(s, name)
            })
            .collect();
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((names, since)) = pending.get(key) {
                let seen = names
                    .iter()
                    .all(|n| existing.iter().any(|s| s.metadata.name.as_ref() == Some(n)));
                if !seen && since.elapsed() < PENDING_CREATE_TIMEOUT {
                    return Ok(Some(Duration::from_millis(100)));
                }
                pending.remove(key);
            }
        }
        let all = self.pods.state();
        let found = svc
            .as_deref()
            .map(|s| backends(s, &pods_in(&all, ns)))
            .unwrap_or_default();
        let owner = svc
            .as_deref()
            .and_then(|s| new_controller_ref("v1", "Service", &s.metadata));
        let plan = slices::plan(svc.as_deref(), found, &existing, &self.zones(), owner);
        if plan.is_empty() {
            return Ok(None);
        }
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), ns);
        let mut first_error = None;
        for s in &plan.update {
            let n = s.name_any();
            if let Err(e) = api.replace(&n, &PostParams::default(), s).await {
                first_error.get_or_insert(ControllerError::api(
                    format!("updating endpointslice {ns}/{n}"),
                    e,
                ));
            }
        }
        let mut created = Vec::new();
        for s in &plan.create {
            match api.create(&PostParams::default(), s).await {
                Ok(made) => created.push(made.name_any()),
                Err(e) => {
                    first_error.get_or_insert(ControllerError::api(
                        format!("creating an endpointslice for {key}"),
                        e,
                    ));
                }
            }
        }
        if !created.is_empty() {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.insert(key.to_string(), (created, std::time::Instant::now()));
        }
        for n in &plan.delete {
            match api.delete(n, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_status(&e, 404) => {}
                Err(e) => {
                    first_error.get_or_insert(ControllerError::api(
                        format!("deleting endpointslice {ns}/{n}"),
                        e,
                    ));
                }
            }
        }
        first_error.map_or(Ok(None), Err)
    }
}
