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
    use k8s_openapi::api::apps::v1 as apps;
    use k8s_openapi::api::authentication::v1 as authentication;
    use k8s_openapi::api::authorization::v1 as authorization;
    use k8s_openapi::api::autoscaling::{v1 as autoscaling1, v2 as autoscaling2};
    use k8s_openapi::api::batch::v1 as batch;
    use k8s_openapi::api::coordination::v1 as coordination;
    use k8s_openapi::api::core::v1 as core;
    use k8s_openapi::api::discovery::v1 as discovery;
    use k8s_openapi::api::events::v1 as events;
    use k8s_openapi::api::networking::v1 as networking;
    use k8s_openapi::api::policy::v1 as policy;
    use k8s_openapi::api::rbac::v1 as rbac;
    use k8s_openapi::api::scheduling::v1 as scheduling;
    use k8s_openapi::api::storage::v1 as storage;
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
        ("", "v1", "ResourceQuota") => visitor.visit::<core::ResourceQuota>(),
        ("", "v1", "LimitRange") => visitor.visit::<core::LimitRange>(),
        ("", "v1", "PersistentVolume") => visitor.visit::<core::PersistentVolume>(),
        ("", "v1", "PersistentVolumeClaim") => visitor.visit::<core::PersistentVolumeClaim>(),
        ("", "v1", "Binding") => visitor.visit::<core::Binding>(),
        ("", "v1", "Status") | ("meta.k8s.io", "v1", "Status") => visitor.visit::<meta::Status>(),
        ("", "v1", "DeleteOptions") | ("meta.k8s.io", "v1", "DeleteOptions") => {
            visitor.visit::<meta::DeleteOptions>()
        }
        ("coordination.k8s.io", "v1", "Lease") => visitor.visit::<coordination::Lease>(),
        ("apps", "v1", "Deployment") => visitor.visit::<apps::Deployment>(),
        ("apps", "v1", "ReplicaSet") => visitor.visit::<apps::ReplicaSet>(),
        ("apps", "v1", "DaemonSet") => visitor.visit::<apps::DaemonSet>(),
        ("apps", "v1", "StatefulSet") => visitor.visit::<apps::StatefulSet>(),
        ("apps", "v1", "ControllerRevision") => visitor.visit::<apps::ControllerRevision>(),
        ("batch", "v1", "Job") => visitor.visit::<batch::Job>(),
        ("batch", "v1", "CronJob") => visitor.visit::<batch::CronJob>(),
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => {
            visitor.visit::<autoscaling1::HorizontalPodAutoscaler>()
        }
        ("autoscaling", "v2", "HorizontalPodAutoscaler") => {
            visitor.visit::<autoscaling2::HorizontalPodAutoscaler>()
        }
        ("autoscaling", "v1", "Scale") => visitor.visit::<autoscaling1::Scale>(),
        ("policy", "v1", "PodDisruptionBudget") => visitor.visit::<policy::PodDisruptionBudget>(),
        ("policy", "v1", "Eviction") => visitor.visit::<policy::Eviction>(),
        ("discovery.k8s.io", "v1", "EndpointSlice") => visitor.visit::<discovery::EndpointSlice>(),
        ("networking.k8s.io", "v1", "NetworkPolicy") => {
            visitor.visit::<networking::NetworkPolicy>()
        }
        ("events.k8s.io", "v1", "Event") => visitor.visit::<events::Event>(),
        ("scheduling.k8s.io", "v1", "PriorityClass") => {
            visitor.visit::<scheduling::PriorityClass>()
        }
        ("storage.k8s.io", "v1", "StorageClass") => visitor.visit::<storage::StorageClass>(),
        ("apiextensions.k8s.io", "v1", "CustomResourceDefinition") => visitor.visit::<
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
        >(),
        ("rbac.authorization.k8s.io", "v1", "Role") => visitor.visit::<rbac::Role>(),
        ("rbac.authorization.k8s.io", "v1", "RoleBinding") => visitor.visit::<rbac::RoleBinding>(),
        ("rbac.authorization.k8s.io", "v1", "ClusterRole") => visitor.visit::<rbac::ClusterRole>(),
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => {
            visitor.visit::<rbac::ClusterRoleBinding>()
        }
        ("authentication.k8s.io", "v1", "TokenRequest") => {
            visitor.visit::<authentication::TokenRequest>()
        }
        ("authentication.k8s.io", "v1", "TokenReview") => {
            visitor.visit::<authentication::TokenReview>()
        }
        ("authentication.k8s.io", "v1", "SelfSubjectReview") => {
            visitor.visit::<authentication::SelfSubjectReview>()
        }
        ("authorization.k8s.io", "v1", "LocalSubjectAccessReview") => {
            visitor.visit::<authorization::LocalSubjectAccessReview>()
        }
        ("authorization.k8s.io", "v1", "SelfSubjectAccessReview") => {
            visitor.visit::<authorization::SelfSubjectAccessReview>()
        }
        ("authorization.k8s.io", "v1", "SelfSubjectRulesReview") => {
            visitor.visit::<authorization::SelfSubjectRulesReview>()
        }
        ("authorization.k8s.io", "v1", "SubjectAccessReview") => {
            visitor.visit::<authorization::SubjectAccessReview>()
        }
        _ => return None,
    };
    Some(out)
}
