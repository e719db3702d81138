//! A StatefulSet pod's stable identity: its name `<sts>-<ordinal>`, its
//! hostname and subdomain (so `<pod>.<serviceName>.<ns>.svc` resolves once
//! a headless Service selects it), the `statefulset.kubernetes.io/pod-name`
//! and `apps.kubernetes.io/pod-index` labels, and its claims
//! `<template>-<sts>-<ordinal>` (`pkg/controller/statefulset/stateful_set_utils.go`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::owner::new_controller_ref;
use crate::revision::CONTROLLER_REVISION_HASH_LABEL;
use crate::slim_pod::SlimPod;

/// The pod label with the pod's own name (`StatefulSetPodNameLabel`), for
/// a per-pod Service.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The pod label with the ordinal (`PodIndexLabel`, Kubernetes 1.28+).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// The name of the pod with `ordinal`.
pub fn pod_name(sts: &str, ordinal: i32) -> String {
    format!("{sts}-{ordinal}")
}

/// The ordinal of a pod named `<sts>-<n>`, or `None` when the name has
/// another shape (`getParentNameAndOrdinal`).
pub fn ordinal_of(sts: &str, pod: &str) -> Option<i32> {
    let n = pod.strip_prefix(sts)?.strip_prefix('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || (n.len() > 1 && n.starts_with('0'))
    {
        return None;
    }
    n.parse().ok()
}

/// The name of the claim of volume template `template` for `ordinal`.
pub fn claim_name(template: &str, sts: &str, ordinal: i32) -> String {
    format!("{template}-{}", pod_name(sts, ordinal))
}

/// The revision a pod was made from (its `controller-revision-hash`
/// label, which for StatefulSets holds the revision's name).
pub fn pod_revision(pod: &SlimPod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(CONTROLLER_REVISION_HASH_LABEL)
        .map(String::as_str)
}

fn sts_name(sts: &StatefulSet) -> &str {
    sts.metadata.name.as_deref().unwrap_or_default()
}

/// Whether the retention policy deletes claims when `when` happens
/// (`"whenDeleted"` or `"whenScaled"`); `Retain` is the default.
pub fn retention_deletes(sts: &StatefulSet, when_scaled: bool) -> bool {
    let p = sts.spec.persistent_volume_claim_retention_policy.as_ref();
    let v = if when_scaled {
        p.and_then(|p| p.when_scaled.as_deref())
    } else {
        p.and_then(|p| p.when_deleted.as_deref())
    };
    v == Some("Delete")
}

/// The claims pod `ordinal` needs (`getPersistentVolumeClaims`): one per
/// `volumeClaimTemplates` entry, labelled with the selector's labels. With
/// `whenDeleted: Delete` the StatefulSet owns them, so the garbage
/// collector removes them with it.
pub fn claims_for(sts: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let name = sts_name(sts);
    let selector = sts.spec.selector.match_labels.clone().unwrap_or_default();
    let owner = retention_deletes(sts, false)
        .then(|| new_controller_ref("apps/v1", "StatefulSet", &sts.metadata))
        .flatten()
        .map(|mut r| {
            r.controller = Some(false);
            vec![r]
        });
    sts.spec
        .volume_claim_templates
        .iter()
        .flatten()
        .map(|t| {
            let tname = t.metadata.name.as_deref().unwrap_or_default();
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            labels.extend(selector.clone());
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(tname, name, ordinal)),
                    namespace: sts.metadata.namespace.clone(),
                    labels: Some(labels),
                    annotations: t.metadata.annotations.clone(),
                    owner_references: owner.clone(),
                    ..Default::default()
                },
                spec: t.spec.clone(),
                status: None,
            }
        })
        .collect()
}

/// Pod `ordinal` made from `template` at revision `revision`
/// (`newVersionedStatefulSetPod`): the template's labels plus the identity
/// labels and the revision, hostname `<sts>-<ordinal>`, subdomain
/// `serviceName`, and each claim template as a `persistentVolumeClaim`
/// volume of the same name (replacing a template volume of that name).
pub fn new_pod(sts: &StatefulSet, template: &PodTemplateSpec, ordinal: i32, revision: &str) -> Pod {
    let name = pod_name(sts_name(sts), ordinal);
    let tmeta = template.metadata.as_ref();
    let mut labels: BTreeMap<String, String> =
        tmeta.and_then(|m| m.labels.clone()).unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(CONTROLLER_REVISION_HASH_LABEL.into(), revision.into());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    spec.subdomain = sts.spec.service_name.clone().filter(|s| !s.is_empty());
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    for t in sts.spec.volume_claim_templates.iter().flatten() {
        let tname = t.metadata.name.clone().unwrap_or_default();
        volumes.retain(|v| v.name != tname);
        volumes.push(Volume {
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(&tname, sts_name(sts), ordinal),
                read_only: None,
            }),
            name: tname,
            ..Default::default()
        });
    }
    if volumes.is_empty() {
        spec.volumes = None;
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: sts.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tmeta.and_then(|m| m.annotations.clone()),
            owner_references: new_controller_ref("apps/v1", "StatefulSet", &sts.metadata)
                .map(|r| vec![r]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}
