//! Builders for the unit tests of the pure cores.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{
    Container, Pod, PodCondition, PodSpec, PodStatus, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};

use crate::slim_pod::SlimPod;

/// A fixed "now": 2026-01-01T00:00:00Z in milliseconds.
pub const NOW_MS: i64 = 1_767_225_600_000;

pub use crate::clock::time;

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(&[("app", "web")])),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some(image.into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

pub fn replicaset(name: &str, replicas: i32) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            labels: Some(labels(&[("app", "web")])),
            generation: Some(1),
            creation_timestamp: Some(time(NOW_MS - 3_600_000)),
            ..Default::default()
        },
        spec: ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            },
            template: Some(template("busybox")),
            min_ready_seconds: None,
        },
        status: Some(ReplicaSetStatus::default()),
    }
}

/// How a test pod looks.
#[derive(Clone, Copy)]
pub struct PodState {
    pub node: Option<&'static str>,
    pub phase: &'static str,
    /// Ready since this many seconds before NOW (None: not ready).
    pub ready_for_s: Option<i64>,
    pub created_s_ago: i64,
    pub restarts: i32,
}

pub const RUNNING_READY: PodState = PodState {
    node: Some("n1"),
    phase: "Running",
    ready_for_s: Some(600),
    created_s_ago: 700,
    restarts: 0,
};

/// A pod in state `st`, as the controllers' cache holds it.
pub fn pod(name: &str, owner: Option<&str>, st: PodState) -> SlimPod {
    full_pod(name, owner, st).into()
}

/// The same pod as the API server serves it.
pub fn full_pod(name: &str, owner: Option<&str>, st: PodState) -> Pod {
    let ready = st.ready_for_s.map(|s| PodCondition {
        type_: "Ready".into(),
        status: "True".into(),
        last_transition_time: Some(time(NOW_MS - s * 1000)),
        ..Default::default()
    });
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            labels: Some(labels(&[("app", "web")])),
            creation_timestamp: Some(time(NOW_MS - st.created_s_ago * 1000)),
            owner_references: owner.map(|o| {
                vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: o.into(),
                    uid: format!("uid-{o}"),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]
            }),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: st.node.map(str::to_string),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some(st.phase.into()),
            conditions: ready.map(|c| vec![c]),
            container_statuses: Some(vec![k8s_openapi::api::core::v1::ContainerStatus {
                name: "c".into(),
                restart_count: st.restarts,
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}
