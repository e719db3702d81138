//! The networking code's view of the cluster: plain data taken from API
//! objects (Services, EndpointSlices, Nodes, Pods, Namespaces), so the rule
//! renderers are pure functions of small values that tests can write by hand.
//!
//! The extraction follows kube-proxy's rules:
//! - a Service without a ClusterIP (`None`: headless) or of type
//!   `ExternalName`, or labelled `service.kubernetes.io/service-proxy-name`
//!   (owned by another proxy), gets no rules;
//! - a slice belongs to the Service named by its `kubernetes.io/service-name`
//!   label; only `IPv4` slices are read;
//! - endpoints with `conditions.ready` (absent means ready) are used; when a
//!   service port has none, serving-and-terminating ones are used instead
//!   (KEP-1669, "ProxyTerminatingEndpoints");
//! - a slice port matches a service port by name (both empty for an unnamed
//!   single port).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// Label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label by which a Service opts out of the default proxy (kube-proxy skips it).
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// `sessionAffinityConfig.clientIP.timeoutSeconds` when not given (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10800;

/// A transport protocol a Service port can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Parses the API's spelling (`TCP`, `UDP`, `SCTP`); absent means TCP.
    pub fn from_api(p: Option<&str>) -> Option<Protocol> {
        match p.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// nftables' keyword for it.
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One backend of a service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// The target port on the pod.
    pub port: u16,
    /// The node the endpoint runs on (`nodeName`), if the slice says.
    pub node: Option<String>,
}

/// One port of one Service, with the endpoints that serve it: the unit the
/// proxy renders rules for (kube-proxy's `ServicePortName`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// The port's name (may be empty for a single unnamed port).
    pub port_name: String,
    /// Its protocol.
    pub protocol: Protocol,
    /// The ClusterIP.
    pub cluster_ip: Ipv4Addr,
    /// The service port.
    pub port: u16,
    /// The NodePort, for `NodePort` and `LoadBalancer` services.
    pub node_port: Option<u16>,
    /// `status.loadBalancer.ingress[].ip`: traffic to these on `port` is
    /// treated as external, like a NodePort.
    pub load_balancer_ips: Vec<Ipv4Addr>,
    /// `externalTrafficPolicy: Local`: external traffic goes only to this
    /// node's endpoints, unmasqueraded.
    pub external_local: bool,
    /// `sessionAffinity: ClientIP` with this timeout in seconds.
    pub affinity_timeout: Option<u32>,
    /// The usable endpoints, sorted and without duplicates.
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// `namespace/name/protocol/port`: unique per service port, used in
    /// nftables chain names (characters all valid in nft identifiers).
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.namespace,
            self.name,
            self.protocol.nft(),
            self.port
        )
    }
}

/// Whether the proxy programs anything for this Service.
pub fn is_proxied(svc: &Service) -> bool {
    let Some(spec) = &svc.spec else {
        return false;
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return false;
    }
    let opted_out = svc
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(SERVICE_PROXY_NAME_LABEL));
    let has_ip = spec
        .cluster_ip
        .as_deref()
        .is_some_and(|ip| ip.parse::<Ipv4Addr>().is_ok());
    !opted_out && has_ip
}

/// The service ports of `svc` with their endpoints from `slices` (any slices;
/// those of other Services are ignored). Empty for services the proxy skips.
pub fn service_ports(svc: &Service, slices: &[&EndpointSlice]) -> Vec<ServicePort> {
    if !is_proxied(svc) {
        return Vec::new();
    }
    let (Some(spec), Some(namespace), Some(name)) = (
        &svc.spec,
        svc.metadata.namespace.as_deref(),
        svc.metadata.name.as_deref(),
    ) else {
        return Vec::new();
    };
    let Some(cluster_ip) = spec.cluster_ip.as_deref().and_then(|s| s.parse().ok()) else {
        return Vec::new();
    };
    let mine: Vec<&EndpointSlice> = slices
        .iter()
        .copied()
        .filter(|s| {
            s.metadata.namespace.as_deref() == Some(namespace)
                && s.address_type == "IPv4"
                && s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL))
                    .map(String::as_str)
                    == Some(name)
        })
        .collect();
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECONDS)
    });
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
    let load_balancer_ips: Vec<Ipv4Addr> = match spec.type_.as_deref() {
        Some("LoadBalancer") => svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .map(|ing| {
                ing.iter()
                    .filter_map(|i| i.ip.as_deref()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let is_node_port = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
    let mut out = Vec::new();
    for p in spec.ports.iter().flatten() {
        let (Some(protocol), Ok(port)) = (
            Protocol::from_api(p.protocol.as_deref()),
            u16::try_from(p.port),
        ) else {
            continue;
        };
        let port_name = p.name.clone().unwrap_or_default();
        let node_port = p
            .node_port
            .and_then(|n| u16::try_from(n).ok())
            .filter(|_| is_node_port);
        out.push(ServicePort {
            namespace: namespace.to_string(),
            name: name.to_string(),
            endpoints: endpoints_for(&mine, &port_name, protocol),
            port_name,
            protocol,
            cluster_ip,
            port,
            node_port,
            load_balancer_ips: load_balancer_ips.clone(),
            external_local,
            affinity_timeout,
        });
    }
    out
}

/// Endpoints of one service port: ready ones, else serving-and-terminating.
fn endpoints_for(slices: &[&EndpointSlice], port_name: &str, protocol: Protocol) -> Vec<Endpoint> {
    let mut ready = Vec::new();
    let mut terminating = Vec::new();
    for slice in slices {
        let Some(port) = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port_name
                && Protocol::from_api(p.protocol.as_deref()) == Some(protocol)
        }) else {
            continue;
        };
        let Some(port) = port.port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for ep in slice.endpoints.iter().flatten() {
            let c = ep.conditions.as_ref();
            let is_ready = c.and_then(|c| c.ready).unwrap_or(true);
            let serving = c.and_then(|c| c.serving).unwrap_or(is_ready);
            let is_terminating = c.and_then(|c| c.terminating).unwrap_or(false);
            for addr in &ep.addresses {
                let Ok(ip) = addr.parse::<Ipv4Addr>() else {
                    continue;
                };
                let e = Endpoint {
                    ip,
                    port,
                    node: ep.node_name.clone(),
                };
                if is_ready {
                    ready.push(e);
                } else if serving && is_terminating {
                    terminating.push(e);
                }
            }
        }
    }
    let mut eps = if ready.is_empty() { terminating } else { ready };
    eps.sort();
    eps.dedup_by(|a, b| a.ip == b.ip && a.port == b.port);
    eps
}

/// What routing needs of a Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's name.
    pub name: String,
    /// Its first `InternalIP` (IPv4).
    pub internal_ip: Option<Ipv4Addr>,
    /// `spec.podCIDR`.
    pub pod_cidr: Option<String>,
    /// Whether its `Ready` condition is `True`.
    pub ready: bool,
}

/// Extracts a [`NodeInfo`].
pub fn node_info(node: &Node) -> NodeInfo {
    let status = node.status.as_ref();
    let internal_ip = status.and_then(|s| s.addresses.as_ref()).and_then(|a| {
        a.iter()
            .filter(|a| a.type_ == "InternalIP")
            .find_map(|a| a.address.parse().ok())
    });
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    NodeInfo {
        name: node.metadata.name.clone().unwrap_or_default(),
        internal_ip,
        pod_cidr: node.spec.as_ref().and_then(|s| s.pod_cidr.clone()),
        ready,
    }
}

/// A named container port of a pod (for NetworkPolicy named ports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPort {
    /// The port's name.
    pub name: String,
    /// Its protocol.
    pub protocol: Protocol,
    /// The container port.
    pub port: u16,
}

/// What NetworkPolicy needs of a Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The pod's IPv4 address.
    pub ip: Ipv4Addr,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its named container ports.
    pub ports: Vec<NamedPort>,
}

/// Extracts a [`PodInfo`]: `None` for pods without an IPv4 address, on the
/// host network, or finished (their IP may already belong to another pod).
pub fn pod_info(pod: &Pod) -> Option<PodInfo> {
    let spec = pod.spec.as_ref()?;
    if spec.host_network == Some(true) {
        return None;
    }
    let status = pod.status.as_ref()?;
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    let ip = status.pod_ip.as_deref()?.parse().ok()?;
    let ports = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            Some(NamedPort {
                name: p.name.clone()?,
                protocol: Protocol::from_api(p.protocol.as_deref())?,
                port: u16::try_from(p.container_port).ok()?,
            })
        })
        .collect();
    Some(PodInfo {
        namespace: pod.metadata.namespace.clone()?,
        name: pod.metadata.name.clone()?,
        ip,
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        ports,
    })
}

/// A parsed IPv4 CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    /// Network address.
    pub addr: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
}

impl Ipv4Cidr {
    /// Parses `a.b.c.d/n` (host bits are masked off) or a bare address (/32).
    pub fn parse(s: &str) -> Option<Ipv4Cidr> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a.parse::<Ipv4Addr>().ok()?, p.parse::<u8>().ok()?),
            None => (s.trim().parse::<Ipv4Addr>().ok()?, 32),
        };
        if prefix > 32 {
            return None;
        }
        let mask = Self::mask(prefix);
        Some(Ipv4Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }

    fn mask(prefix: u8) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
    }

    /// Whether `ip` lies in this range.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask(self.prefix) == u32::from(self.addr)
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}
