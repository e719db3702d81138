//! Node health, decided purely (`pkg/controller/nodelifecycle`,
//! `monitorNodeHealth` and `tryUpdateNodeHealth`).
//!
//! The controller remembers, per node, the last heartbeat it saw — the
//! node Lease's `renewTime` (KEP-589) and the `Ready` condition's
//! `lastHeartbeatTime` — and *when it saw it change*, on its own clock
//! (the "probe timestamp"), so clock skew between node and server does
//! not matter. A node whose heartbeat has not changed for the grace period
//! gets its conditions set to `Unknown`. The taints follow the `Ready`
//! condition: `False` → `node.kubernetes.io/not-ready`, `Unknown` →
//! `node.kubernetes.io/unreachable`, `True` → neither; each with both
//! effects, `NoSchedule` and `NoExecute`.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint};

use crate::clock::time;
use crate::pod_util::millis;

/// Taint of a node whose `Ready` condition is `False`.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Taint of a node whose `Ready` condition is `Unknown`.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The conditions the controller sets to `Unknown` (the agent's ones).
pub const MONITORED_CONDITIONS: &[&str] =
    &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// What the controller last saw of a node's heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// The Lease's `renewTime`, ms.
    pub lease_renew_ms: Option<i64>,
    /// The `Ready` condition's `lastHeartbeatTime`, ms.
    pub ready_heartbeat_ms: Option<i64>,
    /// When (controller clock, ms) either last changed.
    pub probe_ms: i64,
}

/// Updates the record with what the caches show now. A node seen for the
/// first time gets a full grace period from now (as Kubernetes does after
/// a controller restart).
pub fn observe(prev: Option<&Health>, node: &Node, lease: Option<&Lease>, now_ms: i64) -> Health {
    let lease_renew_ms = lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| millis(&t.0));
    let ready_heartbeat_ms = ready_condition(node)
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| millis(&t.0));
    match prev {
        Some(p)
            if p.lease_renew_ms == lease_renew_ms && p.ready_heartbeat_ms == ready_heartbeat_ms =>
        {
            p.clone()
        }
        _ => Health {
            lease_renew_ms,
            ready_heartbeat_ms,
            probe_ms: now_ms,
        },
    }
}

/// The node's `Ready` condition.
pub fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// What to write for one node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeUpdate {
    /// New `status.conditions`, if they change.
    pub conditions: Option<Vec<NodeCondition>>,
    /// New `spec.taints`, if they change.
    pub taints: Option<Vec<Taint>>,
    /// The node just became `Unknown`: mark its pods not ready
    /// (`MarkPodsNotReady`).
    pub mark_pods_not_ready: bool,
}

/// Decides the conditions and taints of one node.
pub fn decide(node: &Node, health: &Health, now_ms: i64, grace_ms: i64) -> NodeUpdate {
    let mut update = NodeUpdate::default();
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    if now_ms - health.probe_ms > grace_ms {
        let mut changed = false;
        for type_ in MONITORED_CONDITIONS {
            match conditions.iter_mut().find(|c| c.type_ == *type_) {
                Some(c) if c.status != "Unknown" => {
                    if *type_ == "Ready" {
                        update.mark_pods_not_ready = true;
                    }
                    c.status = "Unknown".into();
                    c.reason = Some("NodeStatusUnknown".into());
                    c.message = Some("Kubelet stopped posting node status.".into());
                    c.last_transition_time = Some(time(now_ms));
                    changed = true;
                }
                Some(_) => {}
                None => {
                    conditions.push(NodeCondition {
                        type_: type_.to_string(),
                        status: "Unknown".into(),
                        reason: Some("NodeStatusNeverUpdated".into()),
                        message: Some("Kubelet never posted node status.".into()),
                        last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                        last_transition_time: Some(time(now_ms)),
                    });
                    changed = true;
                }
            }
        }
        if changed {
            update.conditions = Some(conditions.clone());
        }
    }
    let ready = conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str());
    let wanted = match ready {
        Some("False") => Some(TAINT_NOT_READY),
        Some("Unknown") => Some(TAINT_UNREACHABLE),
        _ => None,
    };
    let current = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    // Both effects, as Kubernetes: `NoExecute` evicts (after the pods'
    // tolerationSeconds), `NoSchedule` (TaintNodesByCondition) keeps new
    // pods away even when they tolerate the NoExecute taint for a while.
    let is_health_taint = |t: &Taint| {
        (t.effect == "NoExecute" || t.effect == "NoSchedule")
            && (t.key == TAINT_NOT_READY || t.key == TAINT_UNREACHABLE)
    };
    let mut taints: Vec<Taint> = current
        .iter()
        .filter(|t| !is_health_taint(t) || Some(t.key.as_str()) == wanted)
        .cloned()
        .collect();
    if let Some(key) = wanted {
        for effect in ["NoSchedule", "NoExecute"] {
            if !taints.iter().any(|t| t.key == key && t.effect == effect) {
                taints.push(Taint {
                    key: key.into(),
                    effect: effect.into(),
                    value: None,
                    time_added: Some(time(now_ms)),
                });
            }
        }
    }
    if taints != current {
        update.taints = Some(taints);
    }
    update
}
