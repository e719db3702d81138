//! The garbage collector's I/O: discovery of every resource that can be
//! listed, watched and deleted; one watch per resource feeding the
//! [`Graph`]; a work queue of uids; and the deletes and patches.
//!
//! ```text
//!  discovery ─> watch(resource) × N ─> Graph ─> uids ─> WorkQueue ─> reconcile(uid)
//!                                                          ▲   DELETE dependent (Background/Foreground)
//!          resync every gc_resync_period ─────────────────┘   PATCH ownerReferences / finalizers
//! ```
//!
//! An owner missing from the graph is confirmed with a live GET before a
//! dependent is deleted (Kubernetes does the same), so a watch that lags
//! or has not listed yet never causes a wrongful deletion.
//!
//! The watches decode only `metadata` (`WatchedObject`), without
//! `managedFields`: decoding every event of every resource into a
//! `DynamicObject` (the whole object as a `serde_json::Value` tree) cost
//! ~3% of a busy server's CPU for fields the graph never reads.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::discovery::{verbs, Discovery, Scope};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::config::ControllersConfig;
use crate::error::{is_status, ControllerError};
use crate::gc::core::{
    decide_dependent, finalizer_to_remove, DependentAction, OwnerState, FOREGROUND_FINALIZER,
    ORPHAN_FINALIZER,
};
use crate::gc::graph::{GcNode, Graph};
use crate::runtime::{run_workers, Reconciler, WorkQueue};

/// The controller's name in logs.
pub const NAME: &str = "garbage-collector";

/// An object of any resource as the graph's watches read it: its metadata
/// without `managedFields`; serde skips the rest of each event unbuilt.
#[derive(Clone, Debug, Default, serde::Deserialize)]
struct WatchedObject {
    #[serde(
        default,
        deserialize_with = "skiff_client::slim_pod::meta_without_managed_fields"
    )]
    metadata: ObjectMeta,
}

impl kube::Resource for WatchedObject {
    type DynamicType = ApiResource;
    type Scope = kube::core::DynamicResourceScope;

    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }

    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }

    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }

    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}
/// How often discovery runs again to pick up new resources.
pub const REDISCOVERY_PERIOD: Duration = Duration::from_secs(300);

/// Resources the collector does not watch: events never own anything and
/// are many (Kubernetes' `ignoredResources` lists them too).
const IGNORED: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

/// A watched resource.
#[derive(Clone, Debug)]
struct Watched {
    ar: ApiResource,
    namespaced: bool,
}

/// The garbage collector.
pub struct GarbageCollector {
    client: Client,
    config: ControllersConfig,
    graph: Mutex<Graph>,
    resources: Mutex<Vec<Watched>>,
    queue: WorkQueue,
}

impl GarbageCollector {
    /// A collector; [`GarbageCollector::run`] starts it.
    pub fn new(client: Client, config: ControllersConfig) -> Arc<GarbageCollector> {
        Arc::new(GarbageCollector {
            client,
            config,
            graph: Mutex::new(Graph::default()),
            resources: Mutex::new(Vec::new()),
            queue: WorkQueue::new(),
        })
    }

    fn graph(&self) -> std::sync::MutexGuard<'_, Graph> {
        // Poison only follows a panic inside a short map update.
        self.graph.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn resources(&self) -> std::sync::MutexGuard<'_, Vec<Watched>> {
        self.resources.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs discovery, watches, workers and the resync until aborted.
    pub async fn run(self: Arc<Self>) {
        let workers = tokio::spawn(run_workers(
            self.clone(),
            self.queue.clone(),
            self.config.workers,
        ));
        let mut watches = tokio::task::JoinSet::new();
        let mut resync = tokio::time::interval(self.config.gc_resync_period);
        let mut rediscover = tokio::time::interval(REDISCOVERY_PERIOD);
        loop {
            tokio::select! {
                _ = rediscover.tick() => {
                    match self.discover().await {
                        Ok(new) => {
                            for idx in new {
                                watches.spawn(self.clone().watch(idx));
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "garbage collector discovery failed; retrying");
                            rediscover.reset_after(Duration::from_secs(5));
                        }
                    }
                }
                _ = resync.tick() => {
                    for uid in self.graph().interesting() {
                        self.queue.add(uid);
                    }
                }
            }
            // Keep the JoinSet from growing with finished entries (watches
            // never finish, but be tidy if one does).
            while let Some(Some(_)) = futures::FutureExt::now_or_never(watches.join_next()) {}
            if workers.is_finished() {
                break;
            }
        }
    }

    /// Adds resources not yet watched; returns their indices.
    async fn discover(&self) -> Result<Vec<usize>, ControllerError> {
        let discovery = Discovery::new(self.client.clone())
            .run()
            .await
            .map_err(|e| ControllerError::api("discovering resources", e))?;
        let mut resources = self.resources();
        let mut new = Vec::new();
        for group in discovery.groups() {
            for (ar, caps) in group.recommended_resources() {
                let wanted = [verbs::LIST, verbs::WATCH, verbs::DELETE]
                    .iter()
                    .all(|v| caps.supports_operation(v));
                let ignored = IGNORED
                    .iter()
                    .any(|(g, p)| ar.group == *g && ar.plural == *p);
                let known = resources
                    .iter()
                    .any(|w| w.ar.group == ar.group && w.ar.plural == ar.plural);
                if wanted && !ignored && !known {
                    resources.push(Watched {
                        namespaced: caps.scope == Scope::Namespaced,
                        ar,
                    });
                    new.push(resources.len() - 1);
                }
            }
        }
        Ok(new)
    }

    /// Keeps the graph in step with one resource.
    async fn watch(self: Arc<Self>, idx: usize) {
        let Some(w) = self.resources().get(idx).cloned() else {
            return;
        };
        let api: Api<WatchedObject> = Api::all_with(self.client.clone(), &w.ar);
        let mut events = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut listed: HashSet<String> = HashSet::new();
        while let Some(event) = events.next().await {
            let touched = match event {
                Ok(Event::Init) => {
                    listed.clear();
                    Vec::new()
                }
                Ok(Event::InitApply(obj)) => {
                    if let Some(uid) = obj.uid() {
                        listed.insert(uid);
                    }
                    self.upsert(idx, &obj)
                }
                Ok(Event::InitDone) => {
                    // Objects deleted while the watch was down vanish now.
                    let mut graph = self.graph();
                    let gone: Vec<String> = graph
                        .uids_of(idx)
                        .into_iter()
                        .filter(|u| !listed.contains(u))
                        .collect();
                    gone.iter().flat_map(|u| graph.remove(u)).collect()
                }
                Ok(Event::Apply(obj)) => self.upsert(idx, &obj),
                Ok(Event::Delete(obj)) => obj
                    .uid()
                    .map(|u| self.graph().remove(&u))
                    .unwrap_or_default(),
                Err(e) => {
                    tracing::debug!(resource = %w.ar.plural, error = %e, "gc watch error; retrying");
                    Vec::new()
                }
            };
            for uid in touched {
                self.queue.add(uid);
            }
        }
    }

    fn upsert(&self, idx: usize, obj: &WatchedObject) -> Vec<String> {
        let Some(uid) = obj.uid() else {
            return Vec::new();
        };
        let m = &obj.metadata;
        let node = GcNode {
            resource: idx,
            namespace: m.namespace.clone(),
            name: obj.name_any(),
            resource_version: m.resource_version.clone(),
            owners: m.owner_references.clone().unwrap_or_default(),
            deleting: m.deletion_timestamp.is_some(),
            finalizers: m.finalizers.clone().unwrap_or_default(),
        };
        self.graph().upsert(uid, node)
    }

    fn api_for(&self, idx: usize, namespace: Option<&str>) -> Option<Api<DynamicObject>> {
        let w = self.resources().get(idx).cloned()?;
        Some(match (w.namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &w.ar),
            _ => Api::all_with(self.client.clone(), &w.ar),
        })
    }

    /// The state of one owner of a dependent in `namespace`.
    async fn owner_state(
        &self,
        owner: &OwnerReference,
        namespace: Option<&str>,
    ) -> Result<OwnerState, ControllerError> {
        if let Some(n) = self.graph().get(&owner.uid) {
            return Ok(
                if n.deleting && n.finalizers.iter().any(|f| f == ORPHAN_FINALIZER) {
                    OwnerState::Orphaning
                } else if n.deleting && n.finalizers.iter().any(|f| f == FOREGROUND_FINALIZER) {
                    OwnerState::WaitingForDependents
                } else {
                    OwnerState::Present
                },
            );
        }
        // Not in the graph: ask the API server (the watch may lag).
        let (group, version) = match owner.api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", owner.api_version.as_str()),
        };
        let found = self.resources().iter().position(|w| {
            w.ar.group == group && w.ar.version == version && w.ar.kind == owner.kind
        });
        let Some(idx) = found else {
            // An owner kind the server does not serve (or not yet
            // discovered): keep the dependent, as deleting would be
            // irreversible.
            return Ok(OwnerState::Present);
        };
        let namespaced = self.resources().get(idx).is_some_and(|w| w.namespaced);
        let Some(api) = self.api_for(idx, if namespaced { namespace } else { None }) else {
            return Ok(OwnerState::Present);
        };
        match api.get(&owner.name).await {
            Ok(o) if o.uid().as_deref() == Some(owner.uid.as_str()) => Ok(OwnerState::Present),
            Ok(_) => Ok(OwnerState::Absent),
            Err(e) if is_status(&e, 404) => Ok(OwnerState::Absent),
            Err(e) => Err(ControllerError::api(
                format!("looking up owner {} {}", owner.kind, owner.name),
                e,
            )),
        }
    }

    async fn handle_dependent(&self, uid: &str, node: &GcNode) -> Result<(), ControllerError> {
        let mut states = Vec::new();
        for o in &node.owners {
            states.push((
                o.uid.clone(),
                self.owner_state(o, node.namespace.as_deref()).await?,
            ));
        }
        let action = decide_dependent(&node.owners, |o| {
            states
                .iter()
                .find(|(u, _)| *u == o.uid)
                .map_or(OwnerState::Present, |(_, s)| *s)
        });
        let Some(api) = self.api_for(node.resource, node.namespace.as_deref()) else {
            return Ok(());
        };
        let what = format!("{}/{}", node.namespace.as_deref().unwrap_or(""), node.name);
        match action {
            DependentAction::Keep => Ok(()),
            DependentAction::Delete { .. } if node.deleting => Ok(()),
            DependentAction::Delete { foreground } => {
                tracing::info!(object = %what, foreground, "deleting dependent whose owners are gone");
                let params = DeleteParams {
                    propagation_policy: Some(if foreground {
                        PropagationPolicy::Foreground
                    } else {
                        PropagationPolicy::Background
                    }),
                    preconditions: Some(Preconditions {
                        uid: Some(uid.to_string()),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match api.delete(&node.name, &params).await {
                    Ok(_) => Ok(()),
                    Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(()),
                    Err(e) => Err(ControllerError::api(format!("deleting {what}"), e)),
                }
            }
            DependentAction::RemoveOwnerRefs(uids) => {
                let keep: Vec<&OwnerReference> = node
                    .owners
                    .iter()
                    .filter(|o| !uids.contains(&o.uid))
                    .collect();
                tracing::info!(object = %what, removed = uids.len(), "removing owner references");
                let patch = json!({"metadata": {
                    "ownerReferences": keep,
                    "resourceVersion": node.resource_version,
                }});
                match api
                    .patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if is_status(&e, 404) => Ok(()),
                    Err(e) => Err(ControllerError::api(
                        format!("removing owner references of {what}"),
                        e,
                    )),
                }
            }
        }
    }

    async fn handle_owner(&self, node: &GcNode, dependents: usize) -> Result<(), ControllerError> {
        let Some(f) = finalizer_to_remove(node.deleting, &node.finalizers, dependents) else {
            return Ok(());
        };
        let Some(api) = self.api_for(node.resource, node.namespace.as_deref()) else {
            return Ok(());
        };
        let rest: Vec<&String> = node.finalizers.iter().filter(|x| *x != f).collect();
        let patch =
            json!({"metadata": {"finalizers": rest, "resourceVersion": node.resource_version}});
        match api
            .patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(ControllerError::api(
                format!("removing finalizer {f} of {}", node.name),
                e,
            )),
        }
    }
}

#[async_trait::async_trait]
impl Reconciler for GarbageCollector {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, uid: &str) -> Result<Option<Duration>, ControllerError> {
        let (node, dependents) = {
            let graph = self.graph();
            let Some(node) = graph.get(uid).cloned() else {
                return Ok(None);
            };
            (node, graph.dependent_count(uid))
        };
        if !node.owners.is_empty() {
            self.handle_dependent(uid, &node).await?;
        }
        if node.has_gc_finalizer() {
            self.handle_owner(&node, dependents).await?;
        }
        Ok(None)
    }
}
