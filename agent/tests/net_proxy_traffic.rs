//! The proxy's rules carry real TCP traffic: the throughput benchmark's
//! three namespaces (client, router with the rendered table, backend), run
//! briefly. It fails unless a ClusterIP with two endpoints is DNATed
//! through the numgen map, replies find their way back through conntrack,
//! and a backend reaching itself through its service (hairpin) is
//! masqueraded. Throughput figures are printed, not asserted.

use skiff_agent::net::bench_tcp::{bench_throughput, ThroughputBench};

#[test]
fn cluster_ip_and_hairpin_traffic_flow_through_the_rendered_rules() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bench = ThroughputBench {
        services: 20,
        endpoints: 3,
        runs: 1,
        seconds: 0.3,
    };
    let report = rt
        .block_on(bench_throughput(&bench))
        .unwrap_or_else(|e| panic!("traffic through the proxy failed: {e}"));
    println!("{report}");
    assert!(report.contains("hairpin ok"), "{report}");
}
