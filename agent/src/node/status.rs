//! The Node's status as a pure function of host facts and runtime health
//! (kubelet `pkg/kubelet/nodestatus/setters.go`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::eviction::PressureState;
use super::facts::{kube_arch, HostFacts};

/// `nodeInfo.kubeletVersion` Skiff reports: the Kubernetes API level it
/// follows, marked as Skiff's.
pub const KUBELET_VERSION: &str = "v1.32.0-skiff";
/// Pods per node (kubelet `--max-pods` default).
pub const MAX_PODS: u32 = 110;

/// Settings of this agent that appear in the Node.
#[derive(Clone, Debug)]
pub struct NodeParams {
    /// Node name.
    pub node_name: String,
    /// `InternalIP`.
    pub node_ip: IpAddr,
    /// The agent's HTTPS port (`daemonEndpoints.kubeletEndpoint.Port`).
    pub kubelet_port: u16,
    /// Data dir (for the ephemeral-storage figure).
    pub data_dir: PathBuf,
}

/// Whether the container runtime answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuntimeHealth {
    /// It does; `version` is `containerd://<version>`.
    Up {
        /// `containerRuntimeVersion`.
        version: String,
    },
    /// It does not.
    Down {
        /// The error.
        message: String,
    },
}

fn condition(
    prev: Option<&NodeStatus>,
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &Timestamp,
) -> NodeCondition {
    let old = prev
        .and_then(|p| p.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == kind));
    // lastTransitionTime only moves when the status flips.
    let transition = old
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(*now));
    NodeCondition {
        type_: kind.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(Time(*now)),
        last_transition_time: Some(transition),
    }
}

/// The Node status: capacity, conditions, addresses, endpoints, nodeInfo.
pub fn node_status(
    params: &NodeParams,
    facts: &HostFacts,
    health: &RuntimeHealth,
    pressure: PressureState,
    prev: Option<&NodeStatus>,
    now: Timestamp,
) -> NodeStatus {
    let resources = BTreeMap::from([
        ("cpu".to_string(), Quantity(facts.cpu_cores.to_string())),
        (
            "memory".to_string(),
            Quantity(format!("{}Ki", facts.memory_kib)),
        ),
        ("pods".to_string(), Quantity(MAX_PODS.to_string())),
        (
            "ephemeral-storage".to_string(),
            Quantity(format!("{}Ki", facts.ephemeral_storage_kib)),
        ),
    ]);
    let (ready, ready_reason, ready_message, runtime_version) = match health {
        RuntimeHealth::Up { version } => (
            "True",
            "KubeletReady",
            "skiff agent is posting ready status".to_string(),
            version.clone(),
        ),
        RuntimeHealth::Down { message } => (
            "False",
            "KubeletNotReady",
            format!("container runtime is down: {message}"),
            prev.and_then(|p| p.node_info.as_ref())
                .map(|i| i.container_runtime_version.clone())
                .unwrap_or_default(),
        ),
    };
    let conditions = vec![
        if pressure.memory {
            condition(
                prev,
                "MemoryPressure",
                "True",
                "KubeletHasInsufficientMemory",
                "skiff agent has insufficient memory available",
                &now,
            )
        } else {
            condition(
                prev,
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "skiff agent has sufficient memory available",
                &now,
            )
        },
        if pressure.disk {
            condition(
                prev,
                "DiskPressure",
                "True",
                "KubeletHasDiskPressure",
                "skiff agent has disk pressure",
                &now,
            )
        } else {
            condition(
                prev,
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "skiff agent has no disk pressure",
                &now,
            )
        },
        condition(
            prev,
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "skiff agent has sufficient PID available",
            &now,
        ),
        condition(prev, "Ready", ready, ready_reason, &ready_message, &now),
    ];
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        conditions: Some(conditions),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: params.node_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: params.node_name.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(params.kubelet_port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: kube_arch().into(),
            boot_id: facts.boot_id.clone(),
            container_runtime_version: runtime_version,
            kernel_version: facts.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: facts.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: facts.os_image.clone(),
            system_uuid: facts.system_uuid.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Whether two statuses differ only in heartbeat times.
pub fn same_ignoring_heartbeat(a: &NodeStatus, b: &NodeStatus) -> bool {
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_heartbeat_time = None;
        }
        s
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> NodeParams {
        NodeParams {
            node_name: "n1".into(),
            node_ip: "192.0.2.10".parse().unwrap(),
            kubelet_port: 10250,
            data_dir: "/tmp".into(),
        }
    }

    fn facts() -> HostFacts {
        HostFacts {
            cpu_cores: 2,
            memory_kib: 1024,
            ephemeral_storage_kib: 2048,
            ..Default::default()
        }
    }

    #[test]
    fn ready_when_runtime_up_and_transition_time_is_stable() {
        let up = RuntimeHealth::Up {
            version: "containerd://1.6.20".into(),
        };
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let s0 = node_status(&params(), &facts(), &up, PressureState::default(), None, t0);
        let s1 = node_status(
            &params(),
            &facts(),
            &up,
            PressureState::default(),
            Some(&s0),
            t1,
        );
        let ready = |s: &NodeStatus| {
            s.conditions
                .clone()
                .unwrap()
                .into_iter()
                .find(|c| c.type_ == "Ready")
                .unwrap()
        };
        assert_eq!(ready(&s1).status, "True");
        assert_eq!(ready(&s1).last_transition_time, Some(Time(t0)));
        assert_eq!(ready(&s1).last_heartbeat_time, Some(Time(t1)));
        assert!(same_ignoring_heartbeat(&s0, &s1));
        let cap = s1.capacity.clone().unwrap();
        assert_eq!(cap["memory"], Quantity("1024Ki".into()));
        assert_eq!(cap["pods"], Quantity("110".into()));
        assert_eq!(
            s1.node_info.clone().unwrap().container_runtime_version,
            "containerd://1.6.20"
        );
        assert_eq!(
            s1.daemon_endpoints
                .clone()
                .unwrap()
                .kubelet_endpoint
                .unwrap()
                .port,
            10250
        );

        let down = RuntimeHealth::Down {
            message: "refused".into(),
        };
        let s2 = node_status(
            &params(),
            &facts(),
            &down,
            PressureState::default(),
            Some(&s1),
            t1,
        );
        assert_eq!(ready(&s2).status, "False");
        assert_eq!(ready(&s2).last_transition_time, Some(Time(t1)));
        assert!(!same_ignoring_heartbeat(&s1, &s2));
    }
}
