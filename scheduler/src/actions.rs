//! The scheduler's writes to the API, one function per kube-scheduler act:
//! bind (`pods/binding`), report a pod unschedulable (`PodScheduled=False`
//! and a `FailedScheduling` event), nominate (`status.nominatedNodeName`)
//! and evict preemption victims (`pods/eviction`, falling back to delete);
//! annotate `WaitForFirstConsumer` claims with the chosen node.

use k8s_openapi::api::core::v1::{
    Binding, Event as CoreEvent, EventSource, ObjectReference, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::policy::v1::Eviction;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::Client;

use crate::snapshot::DEFAULT_SCHEDULER_NAME;

/// Splits `namespace/name`.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("default", key))
}

/// POSTs a `Binding` to `pods/<name>/binding` (the API server sets
/// `spec.nodeName` and `PodScheduled=True`).
pub async fn bind(client: &Client, key: &str, node: &str) -> Result<(), kube::Error> {
    let (ns, name) = split_key(key);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(ns.to_string()),
            ..Default::default()
        },
        target: ObjectReference {
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            api_version: Some("v1".into()),
            ..Default::default()
        },
    };
    let _: serde_json::Value = pods
        .create_subresource("binding", name, &PostParams::default(), &binding)
        .await?;
    Ok(())
}

/// Annotates each claim (`namespace/name`) with the node its first
/// consumer goes to (`volume.kubernetes.io/selected-node`), as
/// VolumeBinding's PreBind does for `WaitForFirstConsumer` classes.
pub async fn select_node(
    client: &Client,
    claims: &[String],
    node: &str,
) -> Result<(), kube::Error> {
    for claim in claims {
        let (ns, name) = split_key(claim);
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
        let patch = serde_json::json!({"metadata": {"annotations": {
            crate::volumes::SELECTED_NODE_ANNOTATION: node,
        }}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(())
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Records an event about a pod, as kube-scheduler's event recorder does.
pub async fn record_event(
    client: &Client,
    key: &str,
    uid: Option<String>,
    type_: &str,
    reason: &str,
    message: &str,
) {
    let (ns, name) = split_key(key);
    let events: Api<CoreEvent> = Api::namespaced(client.clone(), ns);
    let now = now();
    // client-go's recorder names events `<object>.<unix nanos in hex>`.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let event = CoreEvent {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{nanos:x}")),
            namespace: Some(ns.to_string()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            kind: Some("Pod".into()),
            api_version: Some("v1".into()),
            namespace: Some(ns.to_string()),
            name: Some(name.to_string()),
            uid,
            ..Default::default()
        },
        reason: Some(reason.into()),
        message: Some(message.to_string()),
        type_: Some(type_.into()),
        reporting_component: Some(DEFAULT_SCHEDULER_NAME.into()),
        source: Some(EventSource {
            component: Some(DEFAULT_SCHEDULER_NAME.into()),
            host: None,
        }),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now.clone()),
        event_time: Some(MicroTime(now.0)),
        count: Some(1),
        ..Default::default()
    };
    if let Err(e) = events.create(&PostParams::default(), &event).await {
        tracing::warn!(pod = %key, error = %e, "could not record {reason} event");
    }
}

/// Sets `PodScheduled=False` (reason `Unschedulable`) and, the first time,
/// records a `FailedScheduling` warning event, as kube-scheduler does.
pub async fn report_unschedulable(
    client: &Client,
    key: &str,
    uid: Option<String>,
    message: &str,
    first_time: bool,
) {
    let (ns, name) = split_key(key);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let status = serde_json::json!({"status": {"conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": message, "lastTransitionTime": now(), "lastProbeTime": null,
    }]}});
    if let Err(e) = pods
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(&status))
        .await
    {
        tracing::warn!(pod = %key, error = %e, "could not set PodScheduled=False");
    }
    if first_time {
        record_event(client, key, uid, "Warning", "FailedScheduling", message).await;
    }
}

/// Writes `status.nominatedNodeName` (kube-scheduler does this before it
/// deletes the victims, so the pod's claim on the node is visible).
pub async fn nominate(client: &Client, key: &str, node: &str) -> Result<(), kube::Error> {
    let (ns, name) = split_key(key);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let patch = serde_json::json!({"status": {"nominatedNodeName": node}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// Evicts a preemption victim through the Eviction API. When the API server
/// has no eviction subresource (404/405), or a PodDisruptionBudget refuses
/// (429) — preemption already chose to violate it only because no other
/// node would do, as kube-scheduler, which deletes victims outright —
/// the pod is deleted instead.
pub async fn evict(client: &Client, key: &str) -> Result<(), kube::Error> {
    let (ns, name) = split_key(key);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let eviction = Eviction {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(ns.to_string()),
            ..Default::default()
        },
        delete_options: None,
    };
    let res: Result<serde_json::Value, _> = pods
        .create_subresource("eviction", name, &PostParams::default(), &eviction)
        .await;
    match res {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if matches!(s.code, 404 | 405 | 429) => {
            match pods.delete(name, &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}
