//! What the slim pod types of the scheduler (`skiff_scheduler::slim_pod`)
//! and the controllers (`skiff_controllers::slim_pod`) share: each
//! component deserializes pods into its own cut-down type, with only the
//! fields it reads, instead of k8s-openapi's `Pod` (about 2.4 KB inline,
//! 2.3 KB more per container). [`impl_slim_pod!`](crate::impl_slim_pod)
//! makes such a type a `kube::Resource` addressed as core/v1 `pods` and
//! convertible from a full `Pod`; [`SlimContainer`] is the container both
//! keep; [`null_as_default`] reads `null` lists as k8s-openapi does.

use k8s_openapi::api::core::v1::{ContainerPort, ResourceRequirements};
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
