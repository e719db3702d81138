//! The agent's configuration and its defaults.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

/// Kubelet's HTTPS port.
pub const DEFAULT_LISTEN_PORT: u16 = 10250;
/// Pod CIDR used when the Node has no `spec.podCIDR` (k3s's first /24).
pub const DEFAULT_POD_CIDR: &str = "10.42.0.0/24";
/// Name of the Linux bridge the CNI `bridge` plugin creates.
pub const DEFAULT_CNI_BRIDGE: &str = "skiff0";

/// Everything the agent needs to join a cluster.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// API server URL, e.g. `https://127.0.0.1:6443`.
    pub server_url: String,
    /// Node token, `SK10<sha256 of the CA cert DER>::node:<secret>`.
    pub token: String,
    /// The cluster CA as PEM, when the caller has it (the embedded agent of
    /// `skiff server`); otherwise fetched from `/cacerts` and checked
    /// against the token's hash.
    pub ca_pem: Option<String>,
    /// Where the agent keeps its state: containerd's root, CNI state, pod
    /// logs, images to import, its TLS key.
    pub data_dir: PathBuf,
    /// Node name; default: the hostname, lowercased.
    pub node_name: String,
    /// Node IP; default: the IPv4 address of the interface holding the
    /// default route, else 127.0.0.1 (see [`default_node_ip`]).
    pub node_ip: Option<IpAddr>,
    /// Port of the agent's HTTPS endpoint; 0 picks a free one.
    pub listen_port: u16,
    /// An existing CRI socket to use instead of starting containerd.
    pub containerd_socket: Option<PathBuf>,
    /// Pod CIDR for the CNI config; `node.spec.podCIDR` wins when set.
    pub pod_cidr: String,
    /// CNI bridge name.
    pub cni_bridge: String,
    /// The cluster domain (`--cluster-domain`).
    pub cluster_domain: String,
    /// Run the node-local cluster DNS on the pod gateway (`:53`) and point
    /// `ClusterFirst` pods at it.
    pub cluster_dns: bool,
    /// How long to wait after registration for the server to assign
    /// `spec.podCIDR` before falling back to [`AgentConfig::pod_cidr`].
    pub pod_cidr_wait: std::time::Duration,
    /// How many pods may be in their first start (sandbox, then their
    /// containers) at once; the others wait their turn in arrival order.
    pub max_parallel_pod_starts: usize,
    /// Hard eviction thresholds (`--eviction-hard`; see
    /// [`crate::node::eviction`]); empty: never evict.
    pub eviction_hard: Vec<crate::node::eviction::Threshold>,
    /// Soft eviction thresholds with their grace periods (`--eviction-soft`,
    /// `--eviction-soft-grace-period`); empty by default, as in kubelet.
    pub eviction_soft: Vec<crate::node::eviction::Threshold>,
    /// The longest grace period a pod evicted for a soft threshold gets
    /// (`--eviction-max-pod-grace-period`, seconds; kubelet's default 0).
    pub eviction_max_pod_grace_period_seconds: i64,
    /// How long a pressure condition stays after its threshold was last
    /// met (`--eviction-pressure-transition-period`).
    pub eviction_pressure_transition_period: std::time::Duration,
    /// When unused images are removed ([`crate::node::image_gc`]).
    pub image_gc: crate::node::image_gc::ImageGcPolicy,
}

/// Pods started at once by default. With every pod of a burst in flight,
/// containerd, runc and the CNI plugins share the CPU between all of them
/// and every pod finishes late; a limited number in arrival order finishes
/// the early ones early. The limit must not be too low, because much of a
/// start is waiting (fork/exec, shim start-up), not CPU. Measured with
/// `skiff bench startup` (100 pods at 20/s, 2-core machine shared with
/// other builds, load 20-30), median of 3 runs each, release build: 16
/// gave p50 7.2 s / p99 12.0 s against 11.3 s / 13.2 s without a limit;
/// 4 (debug build) halved the throughput and doubled p99.
pub const DEFAULT_MAX_PARALLEL_POD_STARTS: usize = 16;

/// The default cluster domain.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
/// How long the agent waits for the server's node IPAM by default (it
/// normally takes well under a second).
pub const DEFAULT_POD_CIDR_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

impl AgentConfig {
    /// A config with every default filled in.
    pub fn new(
        server_url: impl Into<String>,
        token: impl Into<String>,
        data_dir: impl Into<PathBuf>,
    ) -> Self {
        AgentConfig {
            server_url: server_url.into(),
            token: token.into(),
            ca_pem: None,
            data_dir: data_dir.into(),
            node_name: default_node_name(),
            node_ip: None,
            listen_port: DEFAULT_LISTEN_PORT,
            containerd_socket: None,
            pod_cidr: DEFAULT_POD_CIDR.into(),
            cni_bridge: DEFAULT_CNI_BRIDGE.into(),
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.into(),
            cluster_dns: true,
            pod_cidr_wait: DEFAULT_POD_CIDR_WAIT,
            max_parallel_pod_starts: DEFAULT_MAX_PARALLEL_POD_STARTS,
            eviction_hard: default_eviction_hard(),
            eviction_soft: Vec::new(),
            eviction_max_pod_grace_period_seconds: 0,
            eviction_pressure_transition_period:
                crate::node::eviction::DEFAULT_PRESSURE_TRANSITION_PERIOD,
            image_gc: Default::default(),
        }
    }

    /// The node IP to use: the configured one, else [`default_node_ip`].
    pub fn effective_node_ip(&self) -> IpAddr {
        self.node_ip.unwrap_or_else(default_node_ip)
    }
}

/// Kubelet's default hard thresholds.
pub fn default_eviction_hard() -> Vec<crate::node::eviction::Threshold> {
    crate::node::eviction::parse_thresholds(crate::node::eviction::DEFAULT_EVICTION_HARD)
        .unwrap_or_default()
}

/// The hostname, lowercased (node names are DNS subdomains), or `localhost`.
pub fn default_node_name() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.to_lowercase())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The interface of the IPv4 default route, from the text of `/proc/net/route`
/// (destination `00000000`, mask `00000000`).
pub fn default_route_interface(proc_net_route: &str) -> Option<String> {
    proc_net_route.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 7 && f[1] == "00000000" && f[7] == "00000000").then(|| f[0].to_string())
    })
}

/// The IPv4 address of the default-route interface, else 127.0.0.1. Read
/// from `/proc/net/route` and `getifaddrs`, without sending any packet.
pub fn default_node_ip() -> IpAddr {
    let iface = std::fs::read_to_string("/proc/net/route")
        .ok()
        .and_then(|t| default_route_interface(&t));
    let found = iface.and_then(|iface| {
        nix::ifaddrs::getifaddrs().ok()?.find_map(|ifa| {
            if ifa.interface_name != iface {
                return None;
            }
            let sin = ifa.address?;
            sin.as_sockaddr_in().map(|a| IpAddr::V4(a.ip()))
        })
    });
    found.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_default_route_interface() {
        let route =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                     eth1\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(default_route_interface(route).as_deref(), Some("eth1"));
        assert_eq!(default_route_interface("Iface\n"), None);
    }

    #[test]
    fn default_node_ip_is_some_address() {
        // Either the default route's address or loopback; never panics.
        let _ = default_node_ip();
    }
}
