//! What the slim pod types of the scheduler (`skiff_scheduler::slim_pod`)
//! and the controllers (`skiff_controllers::slim_pod`) share: each
//! component deserializes pods into its own cut-down type, with only the
//! fields it reads, instead of k8s-openapi's `Pod` (about 2.4 KB inline,
//! 2.3 KB more per container). [`impl_slim_pod!`](crate::impl_slim_pod)
//! makes such a type a `kube::Resource` addressed as core/v1 `pods` and
//! convertible from a full `Pod`; [`SlimContainer`] is the container both
//! keep; [`null_as_default`] reads `null` lists as k8s-openapi does;
//! [`meta_without_managed_fields`] reads `metadata` skipping
//! `managedFields`, which no slim reader uses.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ContainerPort, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde::{Deserialize, Deserializer};

#[doc(hidden)]
pub use {k8s_openapi, kube, serde_json};

/// `Container`, cut down to its name, ports and resources: the scheduler
/// reads requests and host ports, the controllers named ports (Endpoints)
/// and requests (HPA).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct SlimContainer {
    /// The container's name.
    #[serde(default)]
    pub name: String,
    /// The ports it declares.
    pub ports: Option<Vec<ContainerPort>>,
    /// Its requests and limits.
    pub resources: Option<ResourceRequirements>,
}

/// For `#[serde(deserialize_with = …)]`: `null` where a list is expected
/// reads as an empty list, as with k8s-openapi's types.
pub fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `ObjectMeta` as JSON carries it, but for `managedFields`: serde skips
/// that without building it (k8s-openapi decodes every entry's
/// `fieldsV1` into a `serde_json::Value` tree, ~40% of a pod's JSON, only
/// for informers to drop it).
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetaWithoutManagedFields {
    annotations: Option<BTreeMap<String, String>>,
    creation_timestamp: Option<Time>,
    deletion_grace_period_seconds: Option<i64>,
    deletion_timestamp: Option<Time>,
    finalizers: Option<Vec<String>>,
    generate_name: Option<String>,
    generation: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    name: Option<String>,
    namespace: Option<String>,
    owner_references: Option<Vec<OwnerReference>>,
    resource_version: Option<String>,
    self_link: Option<String>,
    uid: Option<String>,
}

/// For `#[serde(default, deserialize_with = …)]` on a slim type's
/// `metadata`: every field of `ObjectMeta` but `managedFields` (left
/// `None`); `null` reads as the default.
pub fn meta_without_managed_fields<'de, D>(d: D) -> Result<ObjectMeta, D::Error>
where
    D: Deserializer<'de>,
{
    let m = Option::<MetaWithoutManagedFields>::deserialize(d)?.unwrap_or_default();
    Ok(ObjectMeta {
        annotations: m.annotations,
        creation_timestamp: m.creation_timestamp,
        deletion_grace_period_seconds: m.deletion_grace_period_seconds,
        deletion_timestamp: m.deletion_timestamp,
        finalizers: m.finalizers,
        generate_name: m.generate_name,
        generation: m.generation,
        labels: m.labels,
        managed_fields: None,
        name: m.name,
        namespace: m.namespace,
        owner_references: m.owner_references,
        resource_version: m.resource_version,
        self_link: m.self_link,
        uid: m.uid,
    })
}

/// Implements, for a slim pod type `$t` (a struct with
/// `metadata: ObjectMeta` that derives `Deserialize`):
/// - `kube::Resource`, as core/v1 `pods` (namespaced, no dynamic type), so
///   `Api<$t>`, watchers and reflector stores work with it;
/// - in the expanding crate's unit tests only, `From<&Pod>` and
///   `From<Pod>`, through JSON as a watch makes it (tests and fixtures
///   build full pods). The conversion cannot fail when every field of `$t`
///   has the type of the same field of a `Pod`.
#[macro_export]
macro_rules! impl_slim_pod {
    ($t:ty) => {
        impl $crate::slim_pod::kube::Resource for $t {
            type DynamicType = ();
            type Scope = $crate::slim_pod::k8s_openapi::NamespaceResourceScope;

            fn kind(_: &()) -> ::std::borrow::Cow<'_, str> {
                "Pod".into()
            }
            fn group(_: &()) -> ::std::borrow::Cow<'_, str> {
                "".into()
            }
            fn version(_: &()) -> ::std::borrow::Cow<'_, str> {
                "v1".into()
            }
            fn plural(_: &()) -> ::std::borrow::Cow<'_, str> {
                "pods".into()
            }
            fn meta(&self) -> &$crate::slim_pod::kube::api::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut $crate::slim_pod::kube::api::ObjectMeta {
                &mut self.metadata
            }
        }

        // Unit tests only (`cfg(test)` of the crate that expands the
        // macro): production code reads slim pods from the API server and
        // never needs to panic on a conversion.
        #[cfg(test)]
        impl From<&$crate::slim_pod::k8s_openapi::api::core::v1::Pod> for $t {
            fn from(pod: &$crate::slim_pod::k8s_openapi::api::core::v1::Pod) -> $t {
                let json =
                    $crate::slim_pod::serde_json::to_value(pod).expect("a Pod serializes to JSON");
                $crate::slim_pod::serde_json::from_value(json)
                    .expect("a Pod's JSON reads as the slim pod type")
            }
        }

        #[cfg(test)]
        impl From<$crate::slim_pod::k8s_openapi::api::core::v1::Pod> for $t {
            fn from(pod: $crate::slim_pod::k8s_openapi::api::core::v1::Pod) -> $t {
                <$t>::from(&pod)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Slim {
        #[serde(default, deserialize_with = "meta_without_managed_fields")]
        metadata: ObjectMeta,
    }

    #[test]
    fn metadata_reads_as_object_meta_without_managed_fields() {
        let meta = serde_json::json!({
            "name": "p", "namespace": "ns", "uid": "u", "resourceVersion": "9",
            "generation": 2, "generateName": "p-", "selfLink": "/x",
            "labels": {"a": "1"}, "annotations": {"b": "2"}, "finalizers": ["f"],
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "deletionTimestamp": "2026-01-01T00:01:00Z", "deletionGracePeriodSeconds": 30,
            "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "o", "uid": "ou"}],
            "managedFields": [{"manager": "m", "operation": "Update",
                               "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}],
            "someFutureField": {"x": 1}
        });
        let full: ObjectMeta = serde_json::from_value(meta.clone()).expect("full");
        let slim: Slim =
            serde_json::from_value(serde_json::json!({ "metadata": meta })).expect("slim");
        assert!(full.managed_fields.is_some());
        assert_eq!(
            slim.metadata,
            ObjectMeta {
                managed_fields: None,
                ..full
            }
        );
        for absent in [serde_json::json!({}), serde_json::json!({"metadata": null})] {
            let s: Slim = serde_json::from_value(absent).expect("absent");
            assert_eq!(s.metadata, ObjectMeta::default());
        }
    }
}
