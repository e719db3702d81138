//! Recording `core/v1` Events about the objects controllers act on, as
//! Kubernetes' controllers do (`SuccessfulCreate`, `ScalingReplicaSet`,
//! …), so `kubectl describe` and `kubectl get events` show them.
//! Best effort: a failed event write is logged, never an error.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client, Resource, ResourceExt};

/// The `source.component` of events from Skiff's controllers (Kubernetes
/// uses one name per controller, e.g. `replicaset-controller`).
pub fn component(controller: &str) -> String {
    format!("{controller}-controller")
}

/// Records an event of `type_` (`Normal` or `Warning`) about `obj`.
pub async fn record<K>(
    client: &Client,
    controller: &str,
    obj: &K,
    type_: &str,
    reason: &str,
    message: &str,
) where
    K: Resource<DynamicType = ()>,
{
    let ns = obj.namespace().unwrap_or_else(|| "default".to_string());
    let name = obj.name_any();
    let now = Time(Timestamp::now());
    let component = component(controller);
    // Named as Kubernetes' event recorder names events: `<object>.<unix
    // nanoseconds in hex>` (unique enough, and no generateName round trip).
    let nanos = now.0.as_nanosecond();
    let event = Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{nanos:x}")),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some(K::api_version(&()).into_owned()),
            kind: Some(K::kind(&()).into_owned()),
            name: Some(name.clone()),
            namespace: obj.namespace(),
            uid: obj.uid(),
            resource_version: obj.resource_version(),
            ..Default::default()
        },
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        type_: Some(type_.to_string()),
        source: Some(EventSource {
            component: Some(component.clone()),
            host: None,
        }),
        reporting_component: Some(component),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now.clone()),
        event_time: Some(MicroTime(now.0)),
        count: Some(1),
        ..Default::default()
    };
    let api: Api<Event> = Api::namespaced(client.clone(), &ns);
    if let Err(e) = api.create(&PostParams::default(), &event).await {
        tracing::debug!(%name, %reason, error = %e, "could not record event");
    }
}
