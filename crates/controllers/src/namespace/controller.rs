//! The namespace controller's I/O. A namespace event queues its name; the
//! reconcile of a Terminating namespace that still has the `kubernetes`
//! finalizer:
//!
//! ```text
//!  discovery ─> namespaced resources with list+delete (built-ins and CRDs)
//!    ─> list each in the namespace (metadata only) ─> DELETE what is not
//!       deleting yet (Background; pods keep their grace period)
//!    ─> list again (if anything was deleted) ─> core::assess ─> PATCH status.conditions (if changed)
//!    ─> empty: PUT namespaces/<n>/finalize without `kubernetes`
//!       else: again after RECHECK_PERIOD
//! ```

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::discovery::{verbs, Discovery, Scope};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::error::{is_status, ControllerError};
use crate::namespace::core::{self, Contents, Item, Observed};
use crate::runtime::{informer::event_objects, Informer, Reconciler, WorkQueue};

/// The controller's name in logs.
pub const NAME: &str = "namespace";
/// How soon a namespace that still has content is looked at again (pods
/// in their grace period, objects held by finalizers).
pub const RECHECK_PERIOD: Duration = Duration::from_secs(1);

/// The namespace controller.
pub struct NamespaceController {
    client: Client,
    namespaces: Store<Namespace>,
}

fn terminating(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_some()
}

impl NamespaceController {
    /// Builds the controller and registers its handler: Terminating
    /// namespaces are queued.
    pub fn new(
        client: Client,
        ns_informer: &mut Informer<Namespace>,
        queue: &WorkQueue,
    ) -> Arc<NamespaceController> {
        let q = queue.clone();
        ns_informer.on_event(move |e| {
            if let Some(ns) = event_objects(e).filter(|n| terminating(n)) {
                q.add(ns.name_any());
            }
        });
        Arc::new(NamespaceController {
            client,
            namespaces: ns_informer.store(),
        })
    }

    /// Namespaced resources that can be listed and deleted; `Err`: the
    /// discovery failure, for the condition.
    async fn discover(&self) -> Result<Vec<ApiResource>, String> {
        let discovery = Discovery::new(self.client.clone())
            .run()
            .await
            .map_err(|e| e.to_string())?;
        Ok(discovery
            .groups()
            .flat_map(|g| g.recommended_resources())
            .filter(|(_, caps)| {
                caps.scope == Scope::Namespaced
                    && caps.supports_operation(verbs::LIST)
                    && caps.supports_operation(verbs::DELETE)
            })
            .map(|(ar, _)| ar)
            .collect())
    }

    /// What each resource holds in `ns`; resources that fail to list go to
    /// `failures`.
    async fn list(
        &self,
        ns: &str,
        resources: &[ApiResource],
        failures: &mut Vec<String>,
    ) -> Vec<Contents> {
        let mut out = Vec::with_capacity(resources.len());
        for ar in resources {
            let label = format!("{}.{}", ar.plural, ar.group);
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, ar);
            // Names, deletion marks and finalizers are all it reads: the
            // metadata-only list (PartialObjectMetadataList) leaves out
            // specs and statuses, which for 10,000 pods is most of the bytes.
            let items = match api.list_metadata(&ListParams::default()).await {
                Ok(list) => list
                    .items
                    .iter()
                    .map(|o| Item {
                        name: o.name_any(),
                        deleting: o.metadata.deletion_timestamp.is_some(),
                        finalizers: o.finalizers().to_vec(),
                    })
                    .collect(),
                // Served in discovery but gone (a CRD deleted meanwhile).
                Err(e) if is_status(&e, 404) || is_status(&e, 405) => Vec::new(),
                Err(e) => {
                    tracing::warn!(namespace = %ns, resource = %label, error = %e, "listing namespace content failed");
                    failures.push(label.clone());
                    Vec::new()
                }
            };
            out.push(Contents {
                resource: label,
                items,
            });
        }
        out
    }

    /// Writes the conditions if they differ from the namespace's.
    async fn write_conditions(
        &self,
        ns: &Namespace,
        conditions: &[core::Condition],
    ) -> Result<(), ControllerError> {
        let old = ns
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let now = crate::clock::time((crate::clock::system_clock())());
        let mut changed = old.len() != conditions.len();
        let next: Vec<NamespaceCondition> = conditions
            .iter()
            .map(|c| {
                let prev = old.iter().find(|o| o.type_ == c.type_);
                let same = prev.is_some_and(|p| {
                    p.status == c.status
                        && p.reason.as_deref() == Some(c.reason)
                        && p.message.as_deref() == Some(c.message.as_str())
                });
                changed |= !same;
                let since = prev
                    .filter(|p| p.status == c.status)
                    .and_then(|p| p.last_transition_time.clone())
                    .unwrap_or_else(|| now.clone());
                NamespaceCondition {
                    type_: c.type_.into(),
                    status: c.status.into(),
                    reason: Some(c.reason.into()),
                    message: Some(c.message.clone()),
                    last_transition_time: Some(since),
                }
            })
            .collect();
        if !changed {
            return Ok(());
        }
        let name = ns.name_any();
        let api: Api<Namespace> = Api::all(self.client.clone());
        let patch = json!({"status": {"conditions": next}});
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(ControllerError::api(
                format!("updating namespace {name} status"),
                e,
            )),
        }
    }
}

#[async_trait::async_trait]
impl Reconciler for NamespaceController {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ControllerError> {
        let Some(ns) = self.namespaces.get(&ObjectRef::new(key)) else {
            return Ok(None);
        };
        let spec_finalizers = ns
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.clone())
            .unwrap_or_default();
        let (true, Some(rest)) = (terminating(&ns), core::without_kubernetes(&spec_finalizers))
        else {
            return Ok(None);
        };
        let mut observed = Observed::default();
        let resources = match self.discover().await {
            Ok(r) => r,
            Err(e) => {
                observed.discovery_failures.push(e);
                Vec::new()
            }
        };
        let mut failures = Vec::new();
        let contents = self.list(key, &resources, &mut failures).await;
        let deletes = core::to_delete(&contents);
        let deleted_any = !deletes.is_empty();
        for (i, name) in deletes {
            let ar = &resources[i];
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), key, ar);
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
                Err(e) => {
                    tracing::warn!(namespace = %key, resource = %ar.plural, %name, error = %e, "deleting namespace content failed");
                    failures.push(contents[i].resource.clone());
                }
            }
        }
        // Nothing asked to go this pass: what remains is what was listed.
        observed.remaining = if deleted_any {
            self.list(key, &resources, &mut failures).await
        } else {
            contents
        };
        observed.content_failures = failures;
        let assessment = core::assess(&observed);
        self.write_conditions(&ns, &assessment.conditions).await?;
        if !assessment.finalize {
            return Ok(Some(RECHECK_PERIOD));
        }
        let mut body = (*ns).clone();
        body.spec.get_or_insert_with(Default::default).finalizers = Some(rest);
        let api: Api<Namespace> = Api::all(self.client.clone());
        match api
            .replace_subresource("finalize", key, &PostParams::default(), &body)
            .await
        {
            Ok(_) => {
                tracing::info!(namespace = %key, "namespace emptied and finalized");
                Ok(None)
            }
            Err(e) if is_status(&e, 404) => Ok(None),
            Err(e) => Err(ControllerError::api(
                format!("finalizing namespace {key}"),
                e,
            )),
        }
    }
}
