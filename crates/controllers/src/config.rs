//! Settings of the controllers, with kube-controller-manager's defaults.

use std::time::Duration;

/// k3s's default `--cluster-cidr`.
pub const DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";

/// What `run_controllers` runs and how.
#[derive(Clone, Debug)]
pub struct ControllersConfig {
    /// Workers per queue-driven controller (`--concurrent-*-syncs`;
    /// Kubernetes defaults to 5, Skiff to 2 for its 2-core targets).
    pub workers: usize,
    /// How often node health is checked (`--node-monitor-period`, 5 s).
    pub node_monitor_period: Duration,
    /// How long a node may miss heartbeats before it is `Unknown`
    /// (`--node-monitor-grace-period`, 40 s).
    pub node_monitor_grace_period: Duration,
    /// `tolerationSeconds` assumed for pods without a toleration of the
    /// `not-ready`/`unreachable` taints (the `DefaultTolerationSeconds`
    /// admission plugin's 300 s).
    pub default_toleration_seconds: i64,
    /// How often the garbage collector rescans for dependents whose owners
    /// are gone (it also reacts to watch events).
    pub gc_resync_period: Duration,
    /// The cluster CIDR node pod CIDRs are carved from (`--cluster-cidr`);
    /// `None` leaves `spec.podCIDR` alone.
    pub cluster_cidr: Option<String>,
    /// Prefix length of each node's pod CIDR (`--node-cidr-mask-size`, 24).
    pub node_cidr_mask_size: u8,
    /// The API server's CA (PEM), published in every namespace as the
    /// ConfigMap `kube-root-ca.crt` ([`crate::rootca`]); `None`: not
    /// published.
    pub root_ca_pem: Option<String>,
    /// Finished pods kept before PodGC deletes the oldest
    /// (`--terminated-pod-gc-threshold`, 12,500; 0 keeps them all).
    pub terminated_pod_gc_threshold: usize,
}

impl Default for ControllersConfig {
    fn default() -> Self {
        ControllersConfig {
            workers: 2,
            node_monitor_period: Duration::from_secs(5),
            node_monitor_grace_period: Duration::from_secs(40),
            default_toleration_seconds: 300,
            gc_resync_period: Duration::from_secs(60),
            cluster_cidr: Some(DEFAULT_CLUSTER_CIDR.into()),
            node_cidr_mask_size: 24,
            root_ca_pem: None,
            terminated_pod_gc_threshold: 12_500,
        }
    }
}
