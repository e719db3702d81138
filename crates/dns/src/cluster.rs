//! The cluster's names (pure): what the DNS server knows about Services
//! and EndpointSlices, and the answer to one question (the Kubernetes DNS
//! specification, `dns-spec.md` in kubernetes/dns, as CoreDNS's
//! `kubernetes` plugin implements it).
//!
//! | name | answer |
//! |---|---|
//! | `<svc>.<ns>.svc.<domain>` A | the cluster IP; for a headless Service the ready endpoint IPs |
//! | `<svc>.<ns>.svc.<domain>` | CNAME to `externalName` for ExternalName Services |
//! | `_<port>._<proto>.<svc>.<ns>.svc.<domain>` SRV | per named port: `<svc>…` for a cluster IP, one per ready endpoint (`<hostname or a-b-c-d>.<svc>…`) when headless |
//! | `<host>.<svc>.<ns>.svc.<domain>` A | a headless Service's endpoint: its `hostname`, or its IP written `a-b-c-d` |
//! | `<a-b-c-d>.<ns>.pod.<domain>` A | `a.b.c.d` (CoreDNS's `pods insecure`: not checked against pods) |
//! | other names under `<domain>` | NXDOMAIN (NODATA for names that exist with other types) |
//!
//! Everything else is not ours ([`Resolution::Forward`]).

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::wire::{Answer, RData, Record, TYPE_A, TYPE_ANY, TYPE_CNAME, TYPE_SRV};

/// TTL of every answer, seconds (CoreDNS's `kubernetes` plugin default).
pub const TTL_SECS: u32 = 5;

/// A Service as DNS needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceInfo {
    /// The cluster IP (None: headless or ExternalName).
    pub cluster_ip: Option<Ipv4Addr>,
    /// `spec.clusterIP: None`.
    pub headless: bool,
    /// `spec.externalName` of an ExternalName Service.
    pub external_name: Option<String>,
    /// Named ports: (name, protocol lowercased, port).
    pub ports: Vec<(String, String, u16)>,
}

/// One endpoint of a slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointInfo {
    /// Its IPv4 address.
    pub ip: Ipv4Addr,
    /// `hostname`, if set.
    pub hostname: Option<String>,
    /// `conditions.ready` (absent counts as ready).
    pub ready: bool,
}

/// A slice as DNS needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SliceInfo {
    /// The Service it belongs to.
    pub service: String,
    /// Its endpoints.
    pub endpoints: Vec<EndpointInfo>,
    /// Its named ports: (name, protocol lowercased, port).
    pub ports: Vec<(String, String, u16)>,
}

/// What to do with a question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Answer with these records (empty: NODATA).
    Answer(Answer),
    /// The name is in the cluster domain and does not exist.
    NxDomain,
    /// Not a cluster name: ask the host's resolvers.
    Forward,
}

/// Everything the server knows, keyed by namespace and name.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    domain: String,
    services: HashMap<(String, String), ServiceInfo>,
    slices: HashMap<(String, String), SliceInfo>,
    /// Slice names per Service, to answer headless queries without a scan.
    by_service: HashMap<(String, String), BTreeSet<String>>,
}

/// Parses a Service into what DNS needs.
pub fn service_info(svc: &Service) -> ServiceInfo {
    let spec = svc.spec.clone().unwrap_or_default();
    let ip = spec.cluster_ip.as_deref().unwrap_or("");
    ServiceInfo {
        cluster_ip: ip.parse().ok(),
        headless: ip == "None",
        external_name: (spec.type_.as_deref() == Some("ExternalName"))
            .then(|| spec.external_name.clone())
            .flatten()
            .map(|n| n.trim_end_matches('.').to_ascii_lowercase()),
        ports: spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                let name = p.name.clone().filter(|n| !n.is_empty())?;
                let proto = p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
                Some((name, proto, u16::try_from(p.port).ok()?))
            })
            .collect(),
    }
}

/// Parses an EndpointSlice into what DNS needs (IPv4 slices only).
pub fn slice_info(slice: &EndpointSlice) -> Option<SliceInfo> {
    let service = slice
        .metadata
        .labels
        .as_ref()?
        .get("kubernetes.io/service-name")?
        .clone();
    if slice.address_type != "IPv4" {
        return None;
    }
    Some(SliceInfo {
        service,
        endpoints: slice
            .endpoints
            .iter()
            .flatten()
            .filter_map(|e| {
                Some(EndpointInfo {
                    ip: e.addresses.first()?.parse().ok()?,
                    hostname: e.hostname.clone().map(|h| h.to_ascii_lowercase()),
                    ready: e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
                })
            })
            .collect(),
        ports: slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                let name = p.name.clone().filter(|n| !n.is_empty())?;
                let proto = p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
                Some((name, proto, u16::try_from(p.port?).ok()?))
            })
            .collect(),
    })
}

fn dashed(ip: Ipv4Addr) -> String {
    ip.to_string().replace('.', "-")
}

impl Cluster {
    /// An empty cluster under `domain` (e.g. `cluster.local`).
    pub fn new(domain: &str) -> Cluster {
        Cluster {
            domain: domain.trim_matches('.').to_ascii_lowercase(),
            ..Default::default()
        }
    }

    /// The cluster domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Adds or replaces a Service.
    pub fn set_service(&mut self, ns: &str, name: &str, info: ServiceInfo) {
        self.services.insert((ns.into(), name.into()), info);
    }

    /// Removes a Service.
    pub fn remove_service(&mut self, ns: &str, name: &str) {
        self.services.remove(&(ns.into(), name.into()));
    }

    /// Adds or replaces a slice.
    pub fn set_slice(&mut self, ns: &str, name: &str, info: SliceInfo) {
        self.remove_slice(ns, name);
        self.by_service
            .entry((ns.into(), info.service.clone()))
            .or_default()
            .insert(name.into());
        self.slices.insert((ns.into(), name.into()), info);
    }

    /// Removes a slice.
    pub fn remove_slice(&mut self, ns: &str, name: &str) {
        if let Some(old) = self.slices.remove(&(ns.into(), name.into())) {
            let key = (ns.to_string(), old.service);
            if let Some(set) = self.by_service.get_mut(&key) {
                set.remove(name);
                if set.is_empty() {
                    self.by_service.remove(&key);
                }
            }
        }
    }

    /// Service keys known (for resyncs).
    pub fn service_keys(&self) -> Vec<(String, String)> {
        self.services.keys().cloned().collect()
    }

    /// Slice keys known (for resyncs).
    pub fn slice_keys(&self) -> Vec<(String, String)> {
        self.slices.keys().cloned().collect()
    }

    /// Ready endpoints of a Service, with their slice's ports, in a stable
    /// order.
    fn endpoints(&self, ns: &str, svc: &str) -> Vec<(&EndpointInfo, &SliceInfo)> {
        let mut out: Vec<(&EndpointInfo, &SliceInfo)> = self
            .by_service
            .get(&(ns.to_string(), svc.to_string()))
            .into_iter()
            .flatten()
            .filter_map(|s| self.slices.get(&(ns.to_string(), s.clone())))
            .flat_map(|s| s.endpoints.iter().filter(|e| e.ready).map(move |e| (e, s)))
            .collect();
        out.sort_by_key(|(e, _)| e.ip);
        out.dedup_by_key(|(e, _)| e.ip);
        out
    }

    fn a(name: &str, ip: Ipv4Addr) -> Record {
        Record {
            name: name.to_string(),
            ttl: TTL_SECS,
            data: RData::A(ip),
        }
    }

    /// The records of one name and type: `Some(records)` when the name
    /// exists (records may be empty: NODATA), `None` when it does not.
    fn lookup(&self, name: &str, qtype: u16) -> Option<Answer> {
        let rel = if name == self.domain {
            ""
        } else {
            name.strip_suffix(&self.domain)?.strip_suffix('.')?
        };
        let labels: Vec<&str> = if rel.is_empty() {
            vec![]
        } else {
            rel.split('.').collect()
        };
        let wants = |t: u16| qtype == t || qtype == TYPE_ANY;
        let mut ans = Answer::default();
        match labels.as_slice() {
            // The domain itself, `svc.<domain>`, `pod.<domain>`, `<ns>.svc…`.
            [] | ["svc"] | ["pod"] | [_, "svc"] | [_, "pod"] => Some(ans),
            [pod_ip, _ns, "pod"] => {
                let ip: Ipv4Addr = pod_ip.replace('-', ".").parse().ok()?;
                if wants(TYPE_A) {
                    ans.answers.push(Self::a(name, ip));
                }
                Some(ans)
            }
            [svc, ns, "svc"] => {
                let info = self.services.get(&(ns.to_string(), svc.to_string()))?;
                if let Some(ext) = &info.external_name {
                    if wants(TYPE_CNAME) || wants(TYPE_A) {
                        ans.answers.push(Record {
                            name: name.into(),
                            ttl: TTL_SECS,
                            data: RData::Cname(ext.clone()),
                        });
                    }
                } else if let Some(ip) = info.cluster_ip {
                    if wants(TYPE_A) {
                        ans.answers.push(Self::a(name, ip));
                    }
                } else if info.headless && wants(TYPE_A) {
                    for (e, _) in self.endpoints(ns, svc) {
                        ans.answers.push(Self::a(name, e.ip));
                    }
                }
                Some(ans)
            }
            [port, proto, svc, ns, "svc"] if port.starts_with('_') && proto.starts_with('_') => {
                let (port, proto) = (&port[1..], &proto[1..]);
                let info = self.services.get(&(ns.to_string(), svc.to_string()))?;
                let base = format!("{svc}.{ns}.svc.{}", self.domain);
                if let Some(ip) = info.cluster_ip {
                    let (_, _, p) = info
                        .ports
                        .iter()
                        .find(|(n, pr, _)| n == port && pr == proto)?;
                    if wants(TYPE_SRV) {
                        ans.answers.push(Record {
                            name: name.into(),
                            ttl: TTL_SECS,
                            data: RData::Srv {
                                priority: 0,
                                weight: 100,
                                port: *p,
                                target: base.clone(),
                            },
                        });
                        ans.additional.push(Self::a(&base, ip));
                    }
                    return Some(ans);
                }
                let mut found = false;
                for (e, slice) in self.endpoints(ns, svc) {
                    let Some((_, _, p)) = slice
                        .ports
                        .iter()
                        .find(|(n, pr, _)| n == port && pr == proto)
                    else {
                        continue;
                    };
                    found = true;
                    if wants(TYPE_SRV) {
                        let host = e.hostname.clone().unwrap_or_else(|| dashed(e.ip));
                        let target = format!("{host}.{base}");
                        ans.answers.push(Record {
                            name: name.into(),
                            ttl: TTL_SECS,
                            data: RData::Srv {
                                priority: 0,
                                weight: 100,
                                port: *p,
                                target: target.clone(),
                            },
                        });
                        ans.additional.push(Self::a(&target, e.ip));
                    }
                }
                found.then_some(ans)
            }
            [host, svc, ns, "svc"] => {
                let info = self.services.get(&(ns.to_string(), svc.to_string()))?;
                if !info.headless {
                    return None;
                }
                let ips: BTreeSet<Ipv4Addr> = self
                    .endpoints(ns, svc)
                    .into_iter()
                    .filter(|(e, _)| e.hostname.as_deref() == Some(*host) || dashed(e.ip) == *host)
                    .map(|(e, _)| e.ip)
                    .collect();
                if ips.is_empty() {
                    return None;
                }
                if wants(TYPE_A) {
                    ans.answers
                        .extend(ips.into_iter().map(|ip| Self::a(name, ip)));
                }
                Some(ans)
            }
            _ => None,
        }
    }

    /// Resolves one question (`name` lowercased, without trailing dot).
    pub fn resolve(&self, name: &str, qtype: u16) -> Resolution {
        let ours = name == self.domain || name.ends_with(&format!(".{}", self.domain));
        if !ours {
            return Resolution::Forward;
        }
        match self.lookup(name, qtype) {
            Some(mut a) => {
                if a.answers.is_empty() {
                    a.authority.push(self.soa());
                }
                Resolution::Answer(a)
            }
            None => Resolution::NxDomain,
        }
    }

    /// The zone's SOA, for negative answers (RFC 2308).
    pub fn soa(&self) -> Record {
        Record {
            name: self.domain.clone(),
            ttl: TTL_SECS,
            data: RData::Soa {
                mname: format!("ns.dns.{}", self.domain),
                rname: format!("hostmaster.{}", self.domain),
                serial: 1,
                minimum: TTL_SECS,
            },
        }
    }

    /// Sizes, for logs and tests: (services, slices).
    pub fn len(&self) -> (usize, usize) {
        (self.services.len(), self.slices.len())
    }

    /// Whether nothing is known.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty() && self.slices.is_empty()
    }
}

#[cfg(test)]
#[path = "cluster_test.rs"]
mod tests;
