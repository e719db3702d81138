//! The root CA publisher (kube-controller-manager's
//! `root-ca-cert-publisher`): every active namespace has a ConfigMap
//! `kube-root-ca.crt` whose `ca.crt` is the API server's CA, which the
//! token volume of every pod projects (see the API server's
//! `serviceaccount_admission.rs`) so that in-cluster clients can verify
//! the server.
//!
//! Level-triggered on namespace keys: a namespace event, or a change to or
//! deletion of a `kube-root-ca.crt` ConfigMap, queues the namespace; the
//! reconcile compares the cached ConfigMap with [`desired`] and creates or
//! replaces it. Only ConfigMaps of that name are watched.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::PostParams;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

use crate::error::{is_status, ControllerError};
use crate::runtime::{informer::event_objects, Informer, Reconciler, WorkQueue};

/// The controller's name in logs.
pub const NAME: &str = "root-ca-cert-publisher";
/// The ConfigMap's name.
pub const CONFIG_MAP: &str = "kube-root-ca.crt";
/// Its key holding the CA bundle.
pub const CA_KEY: &str = "ca.crt";
/// The annotation kube-controller-manager writes on it…
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
/// …with this text.
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// What to write for a namespace.
#[derive(Clone, Debug, PartialEq)]
pub enum Publish {
    /// The ConfigMap is right.
    Nothing,
    /// Create it.
    Create(ConfigMap),
    /// Replace it (data and annotation set, the rest kept).
    Update(ConfigMap),
}

/// The write that makes namespace `ns`'s ConfigMap (`existing`) carry `ca`.
pub fn desired(ns: &str, existing: Option<&ConfigMap>, ca: &str) -> Publish {
    let data = BTreeMap::from([(CA_KEY.to_string(), ca.to_string())]);
    match existing {
        None => {
            let mut cm = ConfigMap {
                data: Some(data),
                ..Default::default()
            };
            cm.metadata.name = Some(CONFIG_MAP.into());
            cm.metadata.namespace = Some(ns.into());
            cm.metadata.annotations = Some(BTreeMap::from([(
                DESCRIPTION_ANNOTATION.to_string(),
                DESCRIPTION.to_string(),
            )]));
            Publish::Create(cm)
        }
        Some(cm) => {
            let described = cm
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
                .is_some_and(|d| !d.is_empty());
            if cm.data.as_ref() == Some(&data) && described {
                return Publish::Nothing;
            }
            let mut cm = cm.clone();
            cm.data = Some(data);
            cm.binary_data = None;
            cm.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
            Publish::Update(cm)
        }
    }
}

/// The root CA publisher.
pub struct RootCaPublisher {
    client: Client,
    ca: String,
    namespaces: Store<Namespace>,
    config_maps: Store<ConfigMap>,
}

impl RootCaPublisher {
    /// Builds the publisher of `ca` (PEM) and registers its handlers;
    /// `cm_informer` should watch only [`CONFIG_MAP`]s
    /// ([`config_map_watch`]).
    pub fn new(
        client: Client,
        ca: String,
        ns_informer: &mut Informer<Namespace>,
        cm_informer: &mut Informer<ConfigMap>,
        queue: &WorkQueue,
    ) -> Arc<RootCaPublisher> {
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
            cm_informer.on_event(move |e| {
                if let Some(cm) = event_objects(e) {
                    queue.add(cm.namespace().unwrap_or_default());
                }
            });
        }
        Arc::new(RootCaPublisher {
            client,
            ca,
            namespaces: ns_informer.store(),
            config_maps: cm_informer.store(),
        })
    }
}

/// The watch the publisher's ConfigMap informer needs.
pub fn config_map_watch(base: kube::runtime::watcher::Config) -> kube::runtime::watcher::Config {
    base.fields(&format!("metadata.name={CONFIG_MAP}"))
}

#[async_trait::async_trait]
impl Reconciler for RootCaPublisher {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ControllerError> {
        let Some(ns) = self.namespaces.get(&ObjectRef::new(key)) else {
            return Ok(None);
        };
        let terminating = ns.metadata.deletion_timestamp.is_some()
            || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
        if terminating {
            return Ok(None);
        }
        let existing = self
            .config_maps
            .get(&ObjectRef::new(CONFIG_MAP).within(key));
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), key);
        let result = match desired(key, existing.as_deref(), &self.ca) {
            Publish::Nothing => return Ok(None),
            Publish::Create(cm) => api.create(&PostParams::default(), &cm).await.map(drop),
            Publish::Update(cm) => api
                .replace(CONFIG_MAP, &PostParams::default(), &cm)
                .await
                .map(drop),
        };
        match result {
            Ok(()) => {
                tracing::debug!(namespace = %key, "published {CONFIG_MAP}");
                Ok(None)
            }
            // The namespace is gone or going (404, 403 NamespaceTerminating),
            // or our cache lagged (409): the next event brings us back.
            Err(e) if is_status(&e, 404) || is_status(&e, 403) || is_status(&e, 409) => Ok(None),
            Err(e) => Err(ControllerError::api(
                format!("publishing {key}/{CONFIG_MAP}"),
                e,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_then_repairs_the_config_map() {
        let ca = "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n";
        let Publish::Create(cm) = desired("team", None, ca) else {
            panic!("expected a create")
        };
        assert_eq!(cm.metadata.name.as_deref(), Some(CONFIG_MAP));
        assert_eq!(cm.data.as_ref().unwrap()[CA_KEY], ca);
        assert_eq!(desired("team", Some(&cm), ca), Publish::Nothing);
        // Edited data or a dropped annotation is put back; labels stay.
        let mut edited = cm.clone();
        edited
            .data
            .as_mut()
            .unwrap()
            .insert("extra".into(), "1".into());
        edited.metadata.labels = Some(BTreeMap::from([("a".into(), "b".into())]));
        let Publish::Update(fixed) = desired("team", Some(&edited), ca) else {
            panic!("expected an update")
        };
        assert_eq!(fixed.data, cm.data);
        assert_eq!(fixed.metadata.labels, edited.metadata.labels);
        let mut bare = cm.clone();
        bare.metadata.annotations = None;
        assert!(matches!(
            desired("team", Some(&bare), ca),
            Publish::Update(_)
        ));
        // A new CA replaces the old one.
        assert!(matches!(
            desired("team", Some(&cm), "other"),
            Publish::Update(_)
        ));
    }
}
