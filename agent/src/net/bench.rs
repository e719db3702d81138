//! `skiff bench proxy`: how long one sync of the service proxy takes for a
//! synthetic cluster — render (pure), transaction text, and `nft -f -` in a
//! private network namespace — for the first (full) sync and for a sync
//! after one endpoint changed. Medians over the runs; nothing is asserted.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::model::{Endpoint, Protocol, ServicePort};
use super::nft::{self, NftError};
use super::proxy::{self, ProxyInput};
use super::ruleset::{self, Ruleset};

/// Synthetic service ports: `services` ClusterIPs in 10.43/16, each with
/// `endpoints` pods spread over 10.42/16 on 10 nodes; every tenth is a NodePort.
pub fn synthetic_services(services: usize, endpoints: usize) -> Vec<ServicePort> {
    (0..services)
        .map(|i| {
            let ip = u32::from(Ipv4Addr::new(10, 43, 0, 0)) + 1 + i as u32;
            ServicePort {
                namespace: "bench".into(),
                name: format!("svc-{i}"),
                port_name: "http".into(),
                protocol: Protocol::Tcp,
                cluster_ip: Ipv4Addr::from(ip),
                port: 80,
                node_port: (i % 10 == 0 && i / 10 < 2768).then(|| 30000 + (i / 10) as u16),
                load_balancer_ips: Vec::new(),
                external_local: false,
                affinity_timeout: None,
                endpoints: (0..endpoints)
                    .map(|e| {
                        let n = (i * endpoints + e) as u32;
                        Endpoint {
                            ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 42, 0, 2)) + n % 60000),
                            port: 8080,
                            node: Some(format!("node-{}", n % 10)),
                        }
                    })
                    .collect(),
            }
        })
        .collect()
}

fn render(services: &[ServicePort]) -> Ruleset {
    let cidrs = proxy::pod_cidrs(std::iter::once("10.42.0.0/16"));
    let mut rs = Ruleset::default();
    proxy::render(
        &ProxyInput {
            node_name: "node-0",
            bridge: "skiff0",
            pod_cidrs: &cidrs,
            services,
        },
        &mut rs,
    );
    rs
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Runs the benchmark in network namespace `netns` (which must exist) and
/// returns the table.
pub async fn bench_proxy(
    netns: &str,
    services: usize,
    endpoints: usize,
    runs: usize,
) -> Result<String, NftError> {
    let table = "skiff-bench";
    let svcs = synthetic_services(services, endpoints);
    let mut changed = svcs.clone();
    if let Some(ep) = changed.first_mut().and_then(|s| s.endpoints.first_mut()) {
        ep.ip = Ipv4Addr::new(10, 42, 255, 254);
    }
    let (mut t_render, mut t_text, mut t_full, mut t_incr) = (vec![], vec![], vec![], vec![]);
    let (mut rules, mut bytes_full, mut bytes_incr) = (0, 0, 0);
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        let rs = render(&svcs);
        t_render.push(start.elapsed());
        let start = Instant::now();
        let text = ruleset::transaction(table, None, &rs);
        t_text.push(start.elapsed());
        let start = Instant::now();
        nft::apply_in(Some(netns), &text).await?;
        t_full.push(start.elapsed());

        let start = Instant::now();
        let next = render(&changed);
        let incr = ruleset::transaction(table, Some(&rs), &next);
        nft::apply_in(Some(netns), &incr).await?;
        t_incr.push(start.elapsed());
        rules = rs.rule_count();
        bytes_full = text.len();
        bytes_incr = incr.len();
    }
    nft::apply_in(Some(netns), &ruleset::delete_transaction(table)).await?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "proxy sync: {services} services x {endpoints} endpoints = {rules} rules, {} chains-worth of text ({bytes_full} bytes full, {bytes_incr} bytes after one endpoint change); median of {runs}",
        services * (endpoints + 1)
    );
    let _ = writeln!(out, "{:<44} {:>10}", "phase", "median");
    for (name, v) in [
        ("render (pure)", t_render),
        ("transaction text", t_text),
        ("nft -f - first sync (whole table)", t_full),
        ("render + nft after one endpoint change", t_incr),
    ] {
        let _ = writeln!(out, "{name:<44} {:>8.1}ms", median(v).as_secs_f64() * 1e3);
    }
    Ok(out)
}
