//! The PV controller's I/O: one work queue with claim keys
//! (`claim/<ns>/<name>`) and volume keys (`volume/<name>`).
//!
//! ```text
//!  PVC events ──> claim key (+ the volume it names)
//!  PV events  ──> volume key (+ the claim its claimRef names)
//!  claim key ──> binder::claim_action ──> PATCH pvc (class, volumeName,
//!                status), PATCH pv (claimRef, status), POST pv
//!  volume key ──> binder::volume_action ──> PATCH pv status, DELETE pv
//!                 (after a live GET confirms the claim is gone)
//! ```

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::error::{is_status, ControllerError};
use crate::events;
use crate::runtime::{informer::event_objects, Informer, Reconciler, WorkQueue};
use crate::volume::binder::{claim_action, volume_action, ClaimAction, VolumeAction};

/// The controller's name in logs and events.
pub const NAME: &str = "persistentvolume-binder";

/// How long a claim that waits for something outside the controller
/// (a node's local-path root, a matching volume) waits before another look.
pub const WAIT_RETRY: Duration = Duration::from_secs(5);

/// The PV controller with the local-path provisioner.
pub struct VolumeController {
    client: Client,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    nodes: Store<Node>,
}

fn claim_key(ns: &str, name: &str) -> String {
    format!("claim/{ns}/{name}")
}

impl VolumeController {
    /// Builds the controller on shared informers and registers its event
    /// handlers, which feed `queue`.
    pub fn new(
        client: Client,
        claim_informer: &mut Informer<PersistentVolumeClaim>,
        volume_informer: &mut Informer<PersistentVolume>,
        classes: Store<StorageClass>,
        nodes: Store<Node>,
        queue: &WorkQueue,
    ) -> Arc<VolumeController> {
        {
            let queue = queue.clone();
            claim_informer.on_event(move |e| {
                let Some(c) = event_objects(e) else { return };
                queue.add(claim_key(
                    c.metadata.namespace.as_deref().unwrap_or_default(),
                    &c.name_any(),
                ));
                if let Some(v) = c.spec.as_ref().and_then(|s| s.volume_name.as_deref()) {
                    queue.add(format!("volume/{v}"));
                }
            });
        }
        let volumes = volume_informer.store();
        {
            let queue = queue.clone();
            volume_informer.on_event(move |e| {
                let Some(v) = event_objects(e) else { return };
                queue.add(format!("volume/{}", v.name_any()));
                if let Some(r) = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
                    queue.add(claim_key(
                        r.namespace.as_deref().unwrap_or_default(),
                        r.name.as_deref().unwrap_or_default(),
                    ));
                }
            });
        }
        Arc::new(VolumeController {
            client,
            claims: claim_informer.store(),
            volumes,
            classes,
            nodes,
        })
    }

    async fn sync_claim(&self, ns: &str, name: &str) -> Result<Option<Duration>, ControllerError> {
        let Some(claim) = self.claims.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(None);
        };
        let (vols, classes, nodes) = (
            self.volumes.state(),
            self.classes.state(),
            self.nodes.state(),
        );
        let action = claim_action(
            &claim,
            &vols.iter().map(|v| v.as_ref()).collect::<Vec<_>>(),
            &classes.iter().map(|c| c.as_ref()).collect::<Vec<_>>(),
            &nodes.iter().map(|n| n.as_ref()).collect::<Vec<_>>(),
        );
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        let pvs: Api<PersistentVolume> = Api::all(self.client.clone());
        let merge = PatchParams::default();
        let what = |verb: &str| format!("{verb} for claim {ns}/{name}");
        match action {
            ClaimAction::Nothing => {}
            ClaimAction::Wait(message) => {
                events::record(
                    &self.client,
                    NAME,
                    claim.as_ref(),
                    "Normal",
                    "FailedBinding",
                    &message,
                )
                .await;
                return Ok(Some(WAIT_RETRY));
            }
            ClaimAction::SetClass(class) => {
                let patch = json!({"spec": {"storageClassName": class}});
                claims
                    .patch(name, &merge, &Patch::Merge(&patch))
                    .await
                    .map_err(|e| ControllerError::api(what("setting the default class"), e))?;
            }
            ClaimAction::Reserve(volume) => {
                let patch = json!({"spec": {"claimRef": {
                    "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "namespace": ns, "name": name, "uid": claim.metadata.uid,
                }}});
                pvs.patch(&volume, &merge, &Patch::Merge(&patch))
                    .await
                    .map_err(|e| ControllerError::api(what("reserving a volume"), e))?;
            }
            ClaimAction::Provision(pv) => {
                let pv_name = pv.name_any();
                match pvs.create(&PostParams::default(), &pv).await {
                    Ok(_) => {
                        let msg = format!("Successfully provisioned volume {pv_name}");
                        events::record(
                            &self.client,
                            NAME,
                            claim.as_ref(),
                            "Normal",
                            "ProvisioningSucceeded",
                            &msg,
                        )
                        .await;
                    }
                    Err(e) if is_status(&e, 409) => {}
                    Err(e) => return Err(ControllerError::api(what("provisioning"), e)),
                }
            }
            ClaimAction::Bind {
                volume,
                capacity,
                access_modes,
            } => {
                let patch = json!({
                    "metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes"}},
                    "spec": {"volumeName": volume},
                });
                claims
                    .patch(name, &merge, &Patch::Merge(&patch))
                    .await
                    .map_err(|e| ControllerError::api(what("binding"), e))?;
                let status = json!({"status": {
                    "phase": "Bound", "capacity": capacity, "accessModes": access_modes,
                }});
                claims
                    .patch_status(name, &merge, &Patch::Merge(&status))
                    .await
                    .map_err(|e| ControllerError::api(what("writing status"), e))?;
                let status = json!({"status": {"phase": "Bound"}});
                pvs.patch_status(&volume, &merge, &Patch::Merge(&status))
                    .await
                    .map_err(|e| {
                        ControllerError::api(format!("marking volume {volume} bound"), e)
                    })?;
            }
        }
        Ok(None)
    }

    async fn sync_volume(&self, name: &str) -> Result<Option<Duration>, ControllerError> {
        let Some(pv) = self.volumes.get(&ObjectRef::new(name)) else {
            return Ok(None);
        };
        let claim = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .and_then(|r| {
                self.claims.get(
                    &ObjectRef::new(r.name.as_deref().unwrap_or_default())
                        .within(r.namespace.as_deref().unwrap_or_default()),
                )
            });
        let pvs: Api<PersistentVolume> = Api::all(self.client.clone());
        match volume_action(&pv, claim.as_deref()) {
            VolumeAction::Nothing => {}
            VolumeAction::Phase(phase) => {
                let status = json!({"status": {"phase": phase}});
                pvs.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
                    .await
                    .map_err(|e| ControllerError::api(format!("updating volume {name}"), e))?;
            }
            VolumeAction::Delete => {
                // The cache may lag: confirm the claim is really gone.
                let r = pv
                    .spec
                    .as_ref()
                    .and_then(|s| s.claim_ref.clone())
                    .unwrap_or_default();
                let api: Api<PersistentVolumeClaim> = Api::namespaced(
                    self.client.clone(),
                    r.namespace.as_deref().unwrap_or_default(),
                );
                match api.get_opt(r.name.as_deref().unwrap_or_default()).await {
                    Ok(Some(c)) if c.metadata.uid == r.uid => return Ok(None),
                    Ok(_) => {}
                    Err(e) => {
                        return Err(ControllerError::api(
                            format!("checking the claim of volume {name}"),
                            e,
                        ))
                    }
                }
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: pv.metadata.uid.clone(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match pvs.delete(name, &params).await {
                    Ok(_) => tracing::info!(volume = %name, "deleted released volume"),
                    Err(e) if is_status(&e, 404) => {}
                    Err(e) => {
                        return Err(ControllerError::api(format!("deleting volume {name}"), e))
                    }
                }
            }
        }
        Ok(None)
    }
}

#[async_trait::async_trait]
impl Reconciler for VolumeController {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ControllerError> {
        if let Some(rest) = key.strip_prefix("claim/") {
            let (ns, name) = rest.split_once('/').unwrap_or(("", rest));
            return self.sync_claim(ns, name).await;
        }
        match key.strip_prefix("volume/") {
            Some(name) => self.sync_volume(name).await,
            None => Ok(None),
        }
    }
}
