//! Skiff's local-path provisioner (after Rancher's `local-path-provisioner`,
//! which k3s ships): volumes are plain directories on one node.
//!
//! The agent advertises where on its node such directories go with the
//! Node annotation [`ROOT_ANNOTATION`] (`<agent data dir>/local-path`);
//! the provisioner names the directory and pins the PV to the node with a
//! required node affinity, so the scheduler sends later pods of the claim
//! there.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec,
    VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client};

use crate::error::{is_status, ControllerError};

/// The StorageClass created at start.
pub const CLASS_NAME: &str = "local-path";
/// Its provisioner name.
pub const PROVISIONER: &str = "skiff.io/local-path";
/// The annotation marking the default StorageClass.
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
/// The claim annotation with the node the scheduler chose for its first
/// consumer (`volume.kubernetes.io/selected-node`).
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";
/// The PV annotation naming its provisioner.
pub const PROVISIONED_BY_ANNOTATION: &str = "pv.kubernetes.io/provisioned-by";
/// The Node annotation with the directory local-path volumes go under.
pub const ROOT_ANNOTATION: &str = "local-path.skiff.io/root";
/// The node label the PV's affinity uses.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// The `local-path` StorageClass: the default class, `WaitForFirstConsumer`
/// (a directory can only be made once the pod's node is known), `Delete`.
pub fn storage_class() -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(CLASS_NAME.into()),
            annotations: Some(BTreeMap::from([(
                DEFAULT_CLASS_ANNOTATION.to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        },
        provisioner: PROVISIONER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("WaitForFirstConsumer".into()),
        ..Default::default()
    }
}

/// Creates the `local-path` StorageClass unless it exists (a user's
/// changes to it are kept). An API server without `storage.k8s.io/v1`
/// (404) is not an error: the class is built in ([`storage_class`]'s
/// defaults apply to claims of that name, and to claims without a class).
pub async fn ensure_storage_class(client: &Client) -> Result<(), ControllerError> {
    let api: Api<StorageClass> = Api::all(client.clone());
    match api.create(&PostParams::default(), &storage_class()).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 409) => Ok(()),
        Err(e) if is_status(&e, 404) => {
            tracing::info!("the API serves no StorageClasses; local-path is built in");
            Ok(())
        }
        Err(e) => Err(ControllerError::api("creating storageclass local-path", e)),
    }
}

/// The directory of the claim's volume under `root`.
pub fn volume_dir(root: &str, claim: &PersistentVolumeClaim, uid: &str) -> String {
    format!(
        "{}/pvc-{uid}_{}_{}",
        root.trim_end_matches('/'),
        claim.metadata.namespace.as_deref().unwrap_or_default(),
        claim.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The local-path root a node advertises.
pub fn node_root(node: &Node) -> Option<&str> {
    node.metadata
        .annotations
        .as_ref()?
        .get(ROOT_ANNOTATION)
        .map(String::as_str)
        .filter(|r| r.starts_with('/'))
}

/// The PV for `claim` on `node` (named `pvc-<claim uid>`, as external
/// provisioners name theirs), already reserved for the claim by its
/// `claimRef`.
pub fn provision(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
    root: &str,
) -> PersistentVolume {
    let uid = claim.metadata.uid.clone().unwrap_or_default();
    let spec = claim.spec.clone().unwrap_or_default();
    let size = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage").cloned())
        .unwrap_or_else(|| Quantity("1Gi".into()));
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(format!("pvc-{uid}")),
            annotations: Some(BTreeMap::from([(
                PROVISIONED_BY_ANNOTATION.to_string(),
                PROVISIONER.to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([("storage".to_string(), size)])),
            access_modes: spec
                .access_modes
                .clone()
                .or_else(|| Some(vec!["ReadWriteOnce".into()])),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            storage_class_name: class.metadata.name.clone(),
            volume_mode: spec.volume_mode.clone(),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: claim.metadata.namespace.clone(),
                name: claim.metadata.name.clone(),
                uid: Some(uid.clone()),
                ..Default::default()
            }),
            host_path: Some(HostPathVolumeSource {
                path: volume_dir(root, claim, &uid),
                type_: Some("DirectoryOrCreate".into()),
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: HOSTNAME_LABEL.into(),
                            operator: "In".into(),
                            values: Some(vec![node.to_string()]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}
