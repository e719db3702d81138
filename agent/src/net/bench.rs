//! `skiff bench proxy`: how long one sync of the service proxy takes for a
//! synthetic cluster — render (pure), transaction text, and `nft -f -` in a
//! private network namespace (`sknp-s-<pid>`) — for the first (full) sync
//! and for a one-service endpoint change sent as a delta, and the same
//! change as a full rewrite. Medians over the runs; nothing is asserted.
//! The throughput half (`--throughput`) is [`super::bench_tcp`]; the
//! namespace helper and synthetic services here serve both.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::delta;
use super::model::{Endpoint, Protocol, ServicePort};
use super::nft::{self, NftError};
use super::proxy::{self, ProxyInput};
use super::ruleset::{self, Ruleset};

/// The pod network of [`synthetic_services`].
pub(crate) const SYNTHETIC_POD_CIDRS: &[&str] = &["10.42.0.0/16"];

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

/// The proxy's rules for `services` on node `node-0` of a cluster whose pod
/// network is `pod_cidrs`.
pub(crate) fn render(services: &[ServicePort], pod_cidrs: &[&str]) -> Ruleset {
    let cidrs = proxy::pod_cidrs(pod_cidrs.iter().copied());
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

/// The median of `v` (the upper one for an even count).
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Errors of the proxy benchmarks.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Setting up the namespaces failed (`ip`, `sysctl`).
    #[error("{0}")]
    Setup(String),
    /// Loading the rules failed.
    #[error(transparent)]
    Nft(#[from] NftError),
    /// A socket or thread failed during a measurement.
    #[error("{0}: {1}")]
    Io(&'static str, #[source] std::io::Error),
}

/// Runs `program args…`; its stderr becomes the error.
pub(crate) fn command(program: &str, args: &[&str]) -> Result<(), BenchError> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| BenchError::Setup(format!("running {program}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(BenchError::Setup(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// A network namespace the benchmark made (names start with `sknp`);
/// deleted on drop, with everything in it.
pub(crate) struct Netns(pub String);

impl Netns {
    /// `ip netns add name`.
    pub(crate) fn add(name: &str) -> Result<Netns, BenchError> {
        command("ip", &["netns", "add", name])?;
        Ok(Netns(name.to_string()))
    }

    /// `ip -n <ns> args…`.
    pub(crate) fn ip(&self, args: &[&str]) -> Result<(), BenchError> {
        let mut all = vec!["-n", &self.0];
        all.extend_from_slice(args);
        command("ip", &all)
    }

    /// `sysctl -w key=value` inside the namespace.
    pub(crate) fn sysctl(&self, setting: &str) -> Result<(), BenchError> {
        command(
            "ip",
            &["netns", "exec", &self.0, "sysctl", "-q", "-w", setting],
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = command("ip", &["netns", "del", &self.0]);
    }
}

/// CPU time used so far by this process and its waited-for children (the
/// `nft` runs): unlike wall time, it does not grow when other work shares
/// the machine.
fn cpu_time() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    [UsageWho::RUSAGE_SELF, UsageWho::RUSAGE_CHILDREN]
        .into_iter()
        .filter_map(|who| getrusage(who).ok())
        .flat_map(|u| [u.user_time(), u.system_time()])
        .map(|t| Duration::from_micros(t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64))
        .sum()
}

/// Wall and CPU time since a [`Mark`].
#[derive(Clone, Copy)]
struct Mark(Instant, Duration);

impl Mark {
    fn now() -> Mark {
        Mark(Instant::now(), cpu_time())
    }

    fn since(self, start: Mark) -> (Duration, Duration) {
        (self.0 - start.0, self.1.saturating_sub(start.1))
    }
}

/// Runs the sync benchmark in a network namespace of its own and returns
/// the report: a full load, then a one-service endpoint change sent as a
/// delta, then the same change as a full rewrite (the pre-delta way).
pub async fn bench_proxy(
    services: usize,
    endpoints: usize,
    runs: usize,
) -> Result<String, BenchError> {
    let netns = Netns::add(&format!("sknp-s-{}", std::process::id()))?;
    let ns = Some(netns.0.as_str());
    let table = "skiff-bench";
    let svcs = synthetic_services(services, endpoints);
    let mut changed = svcs.clone();
    if let Some(ep) = changed.first_mut().and_then(|s| s.endpoints.first_mut()) {
        ep.ip = Ipv4Addr::new(10, 42, 255, 254);
    }
    let runs = runs.max(1);
    let mut rows: [(&str, Vec<Duration>, Vec<Duration>); 9] = [
        ("full: render (pure)", vec![], vec![]),
        ("full: transaction text", vec![], vec![]),
        ("full: nft -f - (whole table)", vec![], vec![]),
        ("full sync (render + text + nft)", vec![], vec![]),
        ("change: render (pure)", vec![], vec![]),
        ("change: delta + its text (pure)", vec![], vec![]),
        ("change: nft -f - (delta)", vec![], vec![]),
        ("one-service endpoint change, delta sync", vec![], vec![]),
        ("same change as a full rewrite (flush)", vec![], vec![]),
    ];
    let (mut rules, mut chains, mut bytes_full, mut bytes_delta) = (0, 0, 0, 0);
    for _ in 0..runs {
        let m0 = Mark::now();
        let rs = render(&svcs, SYNTHETIC_POD_CIDRS);
        let m1 = Mark::now();
        let text = ruleset::transaction(table, None, &rs);
        let m2 = Mark::now();
        nft::apply_in(ns, &text).await?;
        let m3 = Mark::now();

        let next = render(&changed, SYNTHETIC_POD_CIDRS);
        let m4 = Mark::now();
        let delta = delta::delta(&rs, &next).expect("an endpoint change is a delta");
        let incr = delta.transaction(table, &rs, &next);
        let m5 = Mark::now();
        nft::apply_in(ns, &incr).await?;
        let m6 = Mark::now();
        nft::rewrite_table(ns, table, Some(&next), &rs).await?;
        let m7 = Mark::now();

        for (row, (wall, cpu)) in rows.iter_mut().zip([
            m1.since(m0),
            m2.since(m1),
            m3.since(m2),
            m3.since(m0),
            m4.since(m3),
            m5.since(m4),
            m6.since(m5),
            m6.since(m3),
            m7.since(m6),
        ]) {
            row.1.push(wall);
            row.2.push(cpu);
        }
        rules = rs.rule_count();
        chains = rs.chains.len();
        bytes_full = text.len();
        bytes_delta = incr.len();
    }
    nft::apply_in(ns, &ruleset::delete_transaction(table)).await?;
    drop(netns);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "proxy sync: {services} services x {endpoints} endpoints = {chains} chains, {rules} rules ({bytes_full} bytes full, {bytes_delta} bytes delta after one endpoint change); median of {runs}"
    );
    let _ = writeln!(
        out,
        "(cpu = this process + nft; wall - cpu is mostly waiting for a busy CPU)"
    );
    let _ = writeln!(out, "{:<44} {:>10} {:>10}", "phase", "wall", "cpu");
    for (name, wall, cpu) in rows {
        let ms = |v| median(v).as_secs_f64() * 1e3;
        let _ = writeln!(out, "{name:<44} {:>8.1}ms {:>8.1}ms", ms(wall), ms(cpu));
    }
    Ok(out)
}
