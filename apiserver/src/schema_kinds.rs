//! The one place that maps a served kind to its `k8s-openapi` Rust type.
//!
//! OpenAPI generation, decoding for validation and unknown-field detection
//! all need "the type for (group, version, kind)"; a [`KindVisitor`] is
//! called with that type so each caller writes its generic code once.

use schemars::JsonSchema;
use serde::{de::DeserializeOwned, Serialize};

/// Generic code run against the Rust type of one kind.
pub trait KindVisitor {
    /// What the visit produces.
    type Output;
    /// Called with `T`, the kind's `k8s-openapi` type.
    fn visit<T: JsonSchema + DeserializeOwned + Serialize>(self) -> Self::Output;
}

/// Runs `visitor` with the type of `group/version, kind`; `None` when Skiff
/// has no type for it. Add a line here when adding a kind to `RESOURCES`.
pub fn visit_kind<V: KindVisitor>(
    group: &str,
    version: &str,
    kind: &str,
    visitor: V,
) -> Option<V::Output> {
    use k8s_openapi::api::coordination::v1 as coordination;
    use k8s_openapi::api::core::v1 as core;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
    let out = match (group, version, kind) {
        ("", "v1", "Namespace") => visitor.visit::<core::Namespace>(),
        ("", "v1", "Node") => visitor.visit::<core::Node>(),
        ("", "v1", "Pod") => visitor.visit::<core::Pod>(),
        ("", "v1", "ConfigMap") => visitor.visit::<core::ConfigMap>(),
        ("", "v1", "Secret") => visitor.visit::<core::Secret>(),
        ("", "v1", "ServiceAccount") => visitor.visit::<core::ServiceAccount>(),
        ("", "v1", "Event") => visitor.visit::<core::Event>(),
        ("", "v1", "Service") => visitor.visit::<core::Service>(),
        ("", "v1", "Endpoints") => visitor.visit::<core::Endpoints>(),
        ("", "v1", "PersistentVolume") => visitor.visit::<core::PersistentVolume>(),
        ("", "v1", "PersistentVolumeClaim") => visitor.visit::<core::PersistentVolumeClaim>(),
        ("", "v1", "Binding") => visitor.visit::<core::Binding>(),
        ("", "v1", "Status") | ("meta.k8s.io", "v1", "Status") => visitor.visit::<meta::Status>(),
        ("", "v1", "DeleteOptions") | ("meta.k8s.io", "v1", "DeleteOptions") => {
            visitor.visit::<meta::DeleteOptions>()
        }
        ("coordination.k8s.io", "v1", "Lease") => visitor.visit::<coordination::Lease>(),
        ("apps", "v1", "Deployment") => visitor.visit::<k8s_openapi::api::apps::v1::Deployment>(),
        ("apps", "v1", "ReplicaSet") => visitor.visit::<k8s_openapi::api::apps::v1::ReplicaSet>(),
        ("apps", "v1", "DaemonSet") => visitor.visit::<k8s_openapi::api::apps::v1::DaemonSet>(),
        ("apps", "v1", "StatefulSet") => visitor.visit::<k8s_openapi::api::apps::v1::StatefulSet>(),
        ("batch", "v1", "Job") => visitor.visit::<k8s_openapi::api::batch::v1::Job>(),
        ("events.k8s.io", "v1", "Event") => visitor.visit::<k8s_openapi::api::events::v1::Event>(),
        _ => return None,
    };
    Some(out)
}
