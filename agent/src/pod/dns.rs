//! A pod's `resolv.conf` as a CRI `DNSConfig` (kubelet's
//! `pkg/kubelet/network/dns`): the node-local cluster DNS server
//! (`skiff_dns`, on the pod bridge's gateway) with the Kubernetes search
//! path for `dnsPolicy: ClusterFirst`, the host's resolv.conf for
//! `Default`, only `spec.dnsConfig` for `None`; `spec.dnsConfig` is merged
//! into the others.
//!
//! Caveat: with `Default`, kubelet merges `dnsConfig` into the host's
//! resolv.conf; here a `Default` pod with a `dnsConfig` gets only the
//! `dnsConfig` (no `dnsConfig`: containerd copies the host's file).

use std::net::IpAddr;

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::Pod;

/// The cluster DNS the agent serves to its pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterDns {
    /// The server's address (the node's pod gateway).
    pub server: IpAddr,
    /// The cluster domain, e.g. `cluster.local`.
    pub domain: String,
}

/// Kubernetes' `ndots` for cluster DNS: names with fewer dots try the
/// search path first, so `web` and `web.default` resolve.
pub const CLUSTER_NDOTS: &str = "ndots:5";

/// The sandbox DNS config of `pod`; `None` leaves containerd to copy the
/// host's resolv.conf.
pub fn dns_config(pod: &Pod, cluster: Option<&ClusterDns>) -> Option<cri::DnsConfig> {
    let spec = pod.spec.as_ref()?;
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let host_network = spec.host_network.unwrap_or(false);
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut base = match (policy, cluster) {
        ("ClusterFirst", Some(c)) if !host_network => Some(cluster_config(ns, c)),
        ("ClusterFirstWithHostNet", Some(c)) => Some(cluster_config(ns, c)),
        ("None", _) => Some(cri::DnsConfig::default()),
        _ => None,
    };
    if let Some(extra) = &spec.dns_config {
        let cfg = base.get_or_insert_with(cri::DnsConfig::default);
        for s in extra.nameservers.iter().flatten() {
            if !cfg.servers.contains(s) {
                cfg.servers.push(s.clone());
            }
        }
        for s in extra.searches.iter().flatten() {
            if !cfg.searches.contains(s) {
                cfg.searches.push(s.clone());
            }
        }
        for o in extra.options.iter().flatten() {
            let text = match &o.value {
                Some(v) => format!("{}:{v}", o.name.as_deref().unwrap_or("")),
                None => o.name.clone().unwrap_or_default(),
            };
            let name = o.name.as_deref().unwrap_or("");
            // A pod's option replaces the default one of the same name.
            cfg.options.retain(|x| x.split(':').next() != Some(name));
            cfg.options.push(text);
        }
    }
    base
}

fn cluster_config(ns: &str, c: &ClusterDns) -> cri::DnsConfig {
    let d = &c.domain;
    cri::DnsConfig {
        servers: vec![c.server.to_string()],
        searches: vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()],
        options: vec![CLUSTER_NDOTS.into()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodDNSConfig, PodDNSConfigOption, PodSpec};

    fn pod(policy: Option<&str>, host_network: bool, extra: Option<PodDNSConfig>) -> Pod {
        let mut p = Pod::default();
        p.metadata.namespace = Some("shop".into());
        p.spec = Some(PodSpec {
            dns_policy: policy.map(str::to_string),
            host_network: Some(host_network),
            dns_config: extra,
            ..Default::default()
        });
        p
    }

    #[test]
    fn policies() {
        let c = ClusterDns {
            server: "10.42.0.1".parse().unwrap(),
            domain: "cluster.local".into(),
        };
        let cluster = Some(cluster_config("shop", &c));
        assert_eq!(
            cluster.as_ref().unwrap().searches,
            vec![
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ]
        );
        let cases = [
            (None, false, cluster.clone()),
            (Some("ClusterFirst"), false, cluster.clone()),
            (Some("ClusterFirst"), true, None),
            (Some("ClusterFirstWithHostNet"), true, cluster.clone()),
            (Some("Default"), false, None),
            (Some("None"), false, Some(cri::DnsConfig::default())),
        ];
        for (policy, hn, want) in cases {
            assert_eq!(
                dns_config(&pod(policy, hn, None), Some(&c)),
                want,
                "{policy:?} {hn}"
            );
        }
        // No cluster DNS on this node: the host's resolv.conf.
        assert_eq!(dns_config(&pod(None, false, None), None), None);
    }

    #[test]
    fn dns_config_is_merged() {
        let c = ClusterDns {
            server: "10.42.0.1".parse().unwrap(),
            domain: "cluster.local".into(),
        };
        let extra = PodDNSConfig {
            nameservers: Some(vec!["1.1.1.1".into()]),
            searches: Some(vec!["corp.example".into()]),
            options: Some(vec![
                PodDNSConfigOption {
                    name: Some("ndots".into()),
                    value: Some("2".into()),
                },
                PodDNSConfigOption {
                    name: Some("edns0".into()),
                    value: None,
                },
            ]),
        };
        let got = dns_config(&pod(None, false, Some(extra)), Some(&c)).unwrap();
        assert_eq!(got.servers, vec!["10.42.0.1", "1.1.1.1"]);
        assert_eq!(got.searches.last().unwrap(), "corp.example");
        assert_eq!(got.options, vec!["ndots:2", "edns0"]);
    }
}
