//! The ServiceAccount controller: every active namespace has a
//! ServiceAccount named `default` (kube-controller-manager's
//! `serviceaccount-controller`), which pods use when they name none.
//!
//! Level-triggered on namespace keys: a namespace event or the deletion of
//! a `default` ServiceAccount queues the namespace, and the reconcile
//! creates the account if the cache lacks it (`AlreadyExists` is success).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::Event;
use kube::{Api, Client, ResourceExt};

use crate::error::{is_status, ControllerError};
use crate::runtime::{informer::event_objects, Informer, Reconciler, WorkQueue};

/// The controller's name in logs.
pub const NAME: &str = "serviceaccount";
/// The account every namespace gets.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// Whether a namespace should have its default account: it exists and is
/// not being deleted.
pub fn wants_default_account(ns: Option<&Namespace>, accounts: &[&ServiceAccount]) -> bool {
    let Some(ns) = ns else { return false };
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    !terminating
        && !accounts
            .iter()
            .any(|sa| sa.metadata.name.as_deref() == Some(DEFAULT_SERVICE_ACCOUNT))
}

/// The ServiceAccount controller.
pub struct ServiceAccountController {
    client: Client,
    namespaces: Store<Namespace>,
    accounts: Store<ServiceAccount>,
}

impl ServiceAccountController {
    /// Builds the controller and registers its handlers.
    pub fn new(
        client: Client,
        ns_informer: &mut Informer<Namespace>,
        sa_informer: &mut Informer<ServiceAccount>,
        queue: &WorkQueue,
    ) -> Arc<ServiceAccountController> {
        {
            let queue = queue.clone();
            ns_informer.on_event(move |e| {
                if let Some(ns) = event_objects(e) {
                    queue.add(ns.name_any());
                }
            });
        }
        {
            let queue = queue.clone();
            sa_informer.on_event(move |e| {
                if let Event::Delete(sa) = e {
                    if sa.name_any() == DEFAULT_SERVICE_ACCOUNT {
                        queue.add(sa.namespace().unwrap_or_default());
                    }
                }
            });
        }
        Arc::new(ServiceAccountController {
            client,
            namespaces: ns_informer.store(),
            accounts: sa_informer.store(),
        })
    }
}

#[async_trait::async_trait]
impl Reconciler for ServiceAccountController {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ControllerError> {
        let ns = self.namespaces.get(&ObjectRef::new(key));
        let all = self.accounts.state();
        let accounts: Vec<&ServiceAccount> = all
            .iter()
            .map(|a| a.as_ref())
            .filter(|a| a.metadata.namespace.as_deref() == Some(key))
            .collect();
        if !wants_default_account(ns.as_deref(), &accounts) {
            return Ok(None);
        }
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), key);
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(DEFAULT_SERVICE_ACCOUNT.into()),
                namespace: Some(key.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => {
                tracing::info!(namespace = %key, "created the default ServiceAccount");
                Ok(None)
            }
            // Already there (our cache lagged), or the namespace is gone.
            Err(e) if is_status(&e, 409) || is_status(&e, 404) => Ok(None),
            Err(e) => Err(ControllerError::api(
                format!("creating serviceaccount {key}/default"),
                e,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(terminating: bool) -> Namespace {
        let mut n = Namespace::default();
        n.metadata.name = Some("team".into());
        if terminating {
            n.metadata.deletion_timestamp = Some(crate::clock::time(0));
        }
        n
    }

    #[test]
    fn decides_when_to_create() {
        let mut default = ServiceAccount::default();
        default.metadata.name = Some("default".into());
        let mut other = ServiceAccount::default();
        other.metadata.name = Some("builder".into());
        assert!(wants_default_account(Some(&ns(false)), &[]));
        assert!(wants_default_account(Some(&ns(false)), &[&other]));
        assert!(!wants_default_account(Some(&ns(false)), &[&default]));
        assert!(!wants_default_account(Some(&ns(true)), &[]));
        assert!(!wants_default_account(None, &[]));
    }
}
