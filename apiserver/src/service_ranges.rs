//! Cluster IPs and node ports of Services: the pure decision of which
//! addresses and ports a Service gets, keeps and gives back
//! (kube-apiserver's `ipallocator` and `portallocator` with the service
//! REST's `allocateCreate`/`allocateUpdate`, without the I/O).
//!
//! Every allocated IP or port is one store key
//! (`/skiff/ranges/serviceips/<ip>`, `/skiff/ranges/servicenodeports/<port>`)
//! whose value names the owning Service and its uid. [`crate::services`]
//! writes those keys in the same Txn as the Service itself, each guarded by
//! "still absent" (or "still the stale value we saw"), so two concurrent
//! creates can never get the same IP: one Txn fails and retries. Keys live
//! outside `/registry/`, so the watch cache never sees them.
//!
//! Rules (Kubernetes' words in the errors):
//! - `spec.clusterIP: None` is a headless Service, `ExternalName` gets no
//!   IP; every other Service gets one IPv4 address from the service CIDR,
//!   a requested one if it is in range and free, else a random free one.
//!   The first address of the range is kept for the `kubernetes` Service.
//! - `NodePort` and `LoadBalancer` Services get a node port per port
//!   (30000–32767 by default): the requested one if free, else random. One
//!   Service may use the same number for two protocols.
//! - On update the cluster IP is immutable (an update that leaves it empty
//!   keeps the old one, as kubectl apply and PUT without it expect), node
//!   ports left at 0 keep the old port of the same `port`/`protocol`, and
//!   ports no longer used (type changed to `ClusterIP`, port removed) are
//!   released.
//!
//! Caveats: IPv4 single-stack only (`ipFamilies: [IPv4]`); no static/dynamic
//! band split of the range (KEP-3070); `ExternalName` ↔ other type changes
//! release or allocate like any other change.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde_json::{json, Value};

use crate::validation::FieldError;

/// Store prefix of allocated cluster IPs.
pub const IP_PREFIX: &str = "/skiff/ranges/serviceips/";
/// Store prefix of allocated node ports.
pub const PORT_PREFIX: &str = "/skiff/ranges/servicenodeports/";
/// Kubernetes' default `--service-node-port-range`.
pub const DEFAULT_NODE_PORTS: (u16, u16) = (30000, 32767);
/// k3s's default `--service-cidr`.
pub const DEFAULT_SERVICE_CIDR: &str = "10.43.0.0/16";

/// An IPv4 network, `ADDRESS/PREFIX` with host bits zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Net {
    /// The network address.
    pub addr: Ipv4Addr,
    /// The prefix length (0–32).
    pub prefix: u8,
}

impl Ipv4Net {
    /// Parses `10.43.0.0/16`; host bits must be zero.
    pub fn parse(s: &str) -> Result<Ipv4Net, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not ADDRESS/PREFIX"))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IPv4 address"))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{p:?} is not a prefix length"))?;
        let net = Ipv4Net { addr, prefix };
        if u32::from(addr) & !net.mask() != 0 {
            return Err(format!("{s:?} has host bits set"));
        }
        Ok(net)
    }

    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    /// Whether `ip` is inside the network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    /// Number of addresses (network and broadcast included).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The address at `offset` from the network address.
    pub fn nth(&self, offset: u64) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr).wrapping_add(offset as u32))
    }

    /// The first host address (the `kubernetes` Service's IP, the pod
    /// network's gateway).
    pub fn first_host(&self) -> Ipv4Addr {
        self.nth(1)
    }
}

impl std::fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Where cluster IPs and node ports come from (`--service-cidr`,
/// `--service-node-port-range`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceRanges {
    /// The service CIDR.
    pub cluster_ips: Ipv4Net,
    /// The node port range, inclusive.
    pub node_ports: (u16, u16),
}

impl Default for ServiceRanges {
    fn default() -> Self {
        ServiceRanges {
            cluster_ips: Ipv4Net {
                addr: Ipv4Addr::new(10, 43, 0, 0),
                prefix: 16,
            },
            node_ports: DEFAULT_NODE_PORTS,
        }
    }
}

/// Allocations held by other Services (keys whose owner is alive), as
/// read from the store.
#[derive(Clone, Debug, Default)]
pub struct Used {
    /// Cluster IPs in use.
    pub ips: BTreeSet<Ipv4Addr>,
    /// Node ports in use.
    pub ports: BTreeSet<u16>,
}

/// What one create or update changes in the allocation keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// Cluster IPs to take (new keys).
    pub take_ips: Vec<Ipv4Addr>,
    /// Node ports to take.
    pub take_ports: Vec<u16>,
    /// Cluster IPs to give back.
    pub release_ips: Vec<Ipv4Addr>,
    /// Node ports to give back.
    pub release_ports: Vec<u16>,
}

/// The store key of a cluster IP.
pub fn ip_key(ip: Ipv4Addr) -> String {
    format!("{IP_PREFIX}{ip}")
}

/// The store key of a node port.
pub fn port_key(port: u16) -> String {
    format!("{PORT_PREFIX}{port}")
}

/// The value of an allocation key: who holds it.
pub fn owner_value(ns: &str, name: &str, uid: &str) -> Vec<u8> {
    json!({"namespace": ns, "name": name, "uid": uid})
        .to_string()
        .into_bytes()
}

fn quote(s: &str) -> String {
    format!("{s:?}")
}

fn spec_str<'a>(svc: &'a Value, field: &str) -> &'a str {
    svc.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The cluster IP a Service holds (`None` for headless, ExternalName or
/// unset).
pub fn cluster_ip_of(svc: &Value) -> Option<Ipv4Addr> {
    spec_str(svc, "clusterIP").parse().ok()
}

/// The node ports a Service holds.
pub fn node_ports_of(svc: &Value) -> BTreeSet<u16> {
    ports(svc)
        .iter()
        .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
        .filter_map(|n| u16::try_from(n).ok())
        .filter(|n| *n != 0)
        .collect()
}

fn ports(svc: &Value) -> Vec<Value> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn wants_node_ports(svc: &Value) -> bool {
    matches!(spec_str(svc, "type"), "NodePort" | "LoadBalancer")
}

/// Fills in `svc`'s cluster IP and node ports (create when `old` is
/// `None`, else update) and says which keys to take and release. `pick`
/// seeds the random choice (the caller passes a random number; tests a
/// fixed one). Errors are the 422 causes, in Kubernetes' words.
pub fn allocate(
    ranges: &ServiceRanges,
    svc: &mut Value,
    old: Option<&Value>,
    used: &Used,
    pick: u64,
) -> Result<Change, Vec<FieldError>> {
    let mut change = Change::default();
    let mut errs = Vec::new();
    allocate_ip(ranges, svc, old, used, pick, &mut change, &mut errs);
    allocate_ports(ranges, svc, old, used, pick, &mut change, &mut errs);
    if errs.is_empty() {
        Ok(change)
    } else {
        Err(errs)
    }
}

fn allocate_ip(
    ranges: &ServiceRanges,
    svc: &mut Value,
    old: Option<&Value>,
    used: &Used,
    pick: u64,
    change: &mut Change,
    errs: &mut Vec<FieldError>,
) {
    let requested = match spec_str(svc, "clusterIP") {
        "" => svc
            .pointer("/spec/clusterIPs/0")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        ip => ip.to_string(),
    };
    let old_ip = old.map(|o| spec_str(o, "clusterIP").to_string());
    let external = spec_str(svc, "type") == "ExternalName";
    let field = "spec.clusterIPs[0]";
    if let Some(old_ip) = old_ip.as_deref().filter(|ip| !ip.is_empty()) {
        // Update: keep what the Service had; changing it is an error.
        if external {
            if let Ok(ip) = old_ip.parse() {
                change.release_ips.push(ip);
            }
            clear_ips(svc);
            return;
        }
        if requested.is_empty() || requested == old_ip {
            set_ips(svc, old_ip);
            return;
        }
        errs.push(FieldError::invalid(
            field,
            quote(&requested),
            "may not change once set",
        ));
        return;
    }
    if external {
        clear_ips(svc);
        return;
    }
    if requested == "None" {
        set_ips(svc, "None");
        return;
    }
    let ip = if requested.is_empty() {
        match free_ip(ranges, used, pick) {
            Some(ip) => ip,
            None => {
                errs.push(FieldError::invalid(
                    field,
                    quote(""),
                    format!(
                        "failed to allocate a serviceIP: range is full ({})",
                        ranges.cluster_ips
                    ),
                ));
                return;
            }
        }
    } else {
        let Ok(ip) = requested.parse::<Ipv4Addr>() else {
            errs.push(FieldError::invalid(
                field,
                quote(&requested),
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
            return;
        };
        let net = ranges.cluster_ips;
        let broadcast = net.nth(net.size() - 1);
        if !net.contains(ip) || ip == net.addr || ip == broadcast {
            errs.push(FieldError::invalid(
                field,
                quote(&requested),
                format!(
                    "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {net}"
                ),
            ));
            return;
        }
        if used.ips.contains(&ip) {
            errs.push(FieldError::invalid(
                field,
                quote(&requested),
                format!("failed to allocate IP {ip}: provided IP is already allocated"),
            ));
            return;
        }
        ip
    };
    change.take_ips.push(ip);
    set_ips(svc, &ip.to_string());
}

/// A free address, scanning from a random offset; never the network
/// address, the broadcast address or the first host (the `kubernetes`
/// Service's).
fn free_ip(ranges: &ServiceRanges, used: &Used, pick: u64) -> Option<Ipv4Addr> {
    let net = ranges.cluster_ips;
    let size = net.size();
    if size < 4 {
        return None;
    }
    let hosts = size - 3; // offsets 2 ..= size-2
    (0..hosts)
        .map(|i| net.nth(2 + (pick + i) % hosts))
        .find(|ip| !used.ips.contains(ip))
}

fn set_ips(svc: &mut Value, ip: &str) {
    if let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("clusterIP".into(), json!(ip));
        spec.insert("clusterIPs".into(), json!([ip]));
        if ip != "None" {
            spec.insert("ipFamilies".into(), json!(["IPv4"]));
            spec.entry("ipFamilyPolicy")
                .or_insert_with(|| json!("SingleStack"));
        } else {
            spec.entry("ipFamilies").or_insert_with(|| json!(["IPv4"]));
            spec.entry("ipFamilyPolicy")
                .or_insert_with(|| json!("SingleStack"));
        }
    }
}

fn clear_ips(svc: &mut Value) {
    if let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
}

fn allocate_ports(
    ranges: &ServiceRanges,
    svc: &mut Value,
    old: Option<&Value>,
    used: &Used,
    pick: u64,
    change: &mut Change,
    errs: &mut Vec<FieldError>,
) {
    let old_ports = old.map(node_ports_of).unwrap_or_default();
    // The old node port of each (port, protocol), for ports left at 0.
    let old_by_port: BTreeMap<(i64, String), u16> = old
        .map(ports)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| {
            let np = p.get("nodePort").and_then(Value::as_u64)?;
            let key = (
                p.get("port").and_then(Value::as_i64).unwrap_or(0),
                p.get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("TCP")
                    .to_string(),
            );
            Some((key, u16::try_from(np).ok()?))
        })
        .collect();
    let want = wants_node_ports(svc);
    let mut list = ports(svc);
    // Ports this Service holds after the change, by protocol.
    let mut mine: BTreeMap<u16, BTreeSet<String>> = BTreeMap::new();
    let (lo, hi) = ranges.node_ports;
    for (i, p) in list.iter_mut().enumerate() {
        let Some(m) = p.as_object_mut() else { continue };
        if !want {
            m.remove("nodePort");
            continue;
        }
        let proto = m
            .get("protocol")
            .and_then(Value::as_str)
            .unwrap_or("TCP")
            .to_string();
        let port = m.get("port").and_then(Value::as_i64).unwrap_or(0);
        let requested = m.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
        let field = format!("spec.ports[{i}].nodePort");
        let chosen = if requested != 0 {
            let Some(n) = u16::try_from(requested)
                .ok()
                .filter(|n| (lo..=hi).contains(n))
            else {
                errs.push(FieldError::invalid(
                    field,
                    requested.to_string(),
                    format!("provided port is not in the valid range. The range of valid ports is {lo}-{hi}"),
                ));
                continue;
            };
            let taken_here = mine.get(&n).is_some_and(|p| p.contains(&proto));
            if taken_here || (used.ports.contains(&n) && !old_ports.contains(&n)) {
                errs.push(FieldError::invalid(
                    field,
                    requested.to_string(),
                    "provided port is already allocated",
                ));
                continue;
            }
            n
        } else if let Some(n) = old_by_port
            .get(&(port, proto.clone()))
            .filter(|n| !mine.get(n).is_some_and(|p| p.contains(&proto)))
        {
            *n
        } else {
            let span = u64::from(hi - lo) + 1;
            let free = (0..span)
                .map(|k| lo + ((pick.wrapping_add(k)) % span) as u16)
                .find(|n| {
                    !used.ports.contains(n) && !mine.contains_key(n) && !old_ports.contains(n)
                });
            let Some(n) = free else {
                errs.push(FieldError::invalid(
                    field,
                    "0",
                    format!("failed to allocate a nodePort: range is full ({lo}-{hi})"),
                ));
                continue;
            };
            n
        };
        m.insert("nodePort".into(), json!(chosen));
        mine.entry(chosen).or_default().insert(proto);
    }
    if let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) {
        if spec.contains_key("ports") {
            spec.insert("ports".into(), Value::Array(list));
        }
    }
    for n in mine.keys() {
        if !old_ports.contains(n) {
            change.take_ports.push(*n);
        }
    }
    for n in &old_ports {
        if !mine.contains_key(n) {
            change.release_ports.push(*n);
        }
    }
}

#[cfg(test)]
#[path = "service_ranges_test.rs"]
mod tests;
