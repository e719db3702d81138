//! `skiff bench scheduler` (core part): how fast the pure core places pods
//! and how tightly it packs them, against a lower bound and against
//! First-Fit-Decreasing on the same input.

use std::fmt::Write;
use std::time::Instant;

use crate::cluster::Cluster;
use crate::core::schedule;
use crate::model::{PendingPod, Placement, Resources};
use crate::score::{BatchOrder, Config};
use crate::workload::{self, BENCH_NODE};

/// The nodes needed at least: for each resource, total requests over one
/// node's allocatable, rounded up; the largest of these.
pub fn lower_bound(pods: &[PendingPod], node: Resources) -> usize {
    let total = pods
        .iter()
        .fold(Resources::default(), |acc, p| acc.plus(p.requests));
    let need = |t: i64, per: i64| if per > 0 { (t + per - 1) / per } else { 0 };
    [
        need(total.cpu_millis, node.cpu_millis),
        need(total.memory, node.memory),
        need(total.pods, node.pods),
    ]
    .into_iter()
    .max()
    .unwrap_or(0) as usize
}

/// First-Fit-Decreasing on identical nodes: pods by decreasing dominant
/// share, each into the first node with room. Returns the nodes used.
pub fn first_fit_decreasing(pods: &[PendingPod], node: Resources) -> usize {
    let share = |p: &PendingPod| {
        (p.requests.cpu_millis as f64 / node.cpu_millis as f64)
            .max(p.requests.memory as f64 / node.memory as f64)
    };
    let mut order: Vec<&PendingPod> = pods.iter().collect();
    order.sort_by(|a, b| share(b).total_cmp(&share(a)).then(a.key.cmp(&b.key)));
    let mut bins: Vec<Resources> = Vec::new();
    for p in order {
        let r = p.requests;
        let slot = bins.iter().position(|b| {
            b.cpu_millis + r.cpu_millis <= node.cpu_millis
                && b.memory + r.memory <= node.memory
                && b.pods + r.pods <= node.pods
        });
        match slot {
            Some(i) => bins[i] = bins[i].plus(r),
            None => bins.push(r),
        }
    }
    bins.len()
}

/// One measured run of the core.
struct Run {
    label: String,
    seconds: f64,
    placed: usize,
    nodes_used: usize,
}

fn run_core(label: &str, nodes: usize, pods: &[PendingPod], config: &Config, batch: usize) -> Run {
    let mut cluster = Cluster::new(workload::nodes(nodes));
    let start = Instant::now();
    let mut placed = 0;
    for chunk in pods.chunks(batch.max(1)) {
        placed += schedule(&mut cluster, chunk, config)
            .iter()
            .filter(|p| matches!(p, Placement::Bind { .. }))
            .count();
    }
    let seconds = start.elapsed().as_secs_f64();
    let nodes_used = (0..cluster.nodes().len())
        .filter(|&i| cluster.pods_on(i).next().is_some())
        .count();
    Run {
        label: label.to_string(),
        seconds,
        placed,
        nodes_used,
    }
}

/// Runs the core on `nodes` hollow-sized nodes (4 cpu, 16Gi, 110 pods) and
/// `pods` seeded pods of mixed sizes, and returns a table: pods/s, nodes
/// used, the lower bound, FFD's nodes and the ratios, next to the published
/// figures of kube-scheduler and Nomad.
pub fn bench_core(nodes: usize, pods: usize, seed: u64) -> String {
    let input = workload::pods(pods, seed);
    let bound = lower_bound(&input, BENCH_NODE);
    let ffd = first_fit_decreasing(&input, BENCH_NODE);
    let decreasing = Config {
        order: BatchOrder::DecreasingSize,
        ..Config::default()
    };
    let runs = [
        run_core(
            "one batch, arrival order",
            nodes,
            &input,
            &Config::default(),
            pods,
        ),
        run_core(
            "batches of 1000, arrival order",
            nodes,
            &input,
            &Config::default(),
            1000,
        ),
        run_core("one batch, largest first", nodes, &input, &decreasing, pods),
    ];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "scheduler core: {nodes} nodes (4 cpu, 16Gi, 110 pods each), {pods} pods of mixed sizes, seed {seed}"
    );
    let _ = writeln!(
        out,
        "{:<34} {:>10} {:>8} {:>10} {:>11} {:>9} {:>9} {:>9}",
        "run", "pods/s", "placed", "nodes used", "lower bound", "FFD nodes", "÷bound", "÷FFD"
    );
    for r in &runs {
        let _ = writeln!(
            out,
            "{:<34} {:>10.0} {:>8} {:>10} {:>11} {:>9} {:>9.3} {:>9.3}",
            r.label,
            r.placed as f64 / r.seconds.max(1e-9),
            r.placed,
            r.nodes_used,
            bound,
            ffd,
            r.nodes_used as f64 / bound.max(1) as f64,
            r.nodes_used as f64 / ffd.max(1) as f64,
        );
    }
    let _ = writeln!(
        out,
        "targets: core ≥ 10,000 pods/s; nodes used ≤ 1.05 × lower bound and ≤ FFD"
    );
    let _ = writeln!(
        out,
        "for reference: kube-scheduler scheduler_perf thresholds at 5,000 nodes: 680 pods/s (10k pods), 810 pods/s (50k pods), end to end on larger machines; Nomad C1M: about 3,750 containers/s across a 5-server cluster"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bench_packs_within_bounds() {
        let input = workload::pods(2000, 7);
        let bound = lower_bound(&input, BENCH_NODE);
        let ffd = first_fit_decreasing(&input, BENCH_NODE);
        let run = run_core("t", 400, &input, &Config::default(), 2000);
        assert_eq!(run.placed, 2000);
        assert!(run.nodes_used <= ffd, "{} > FFD {ffd}", run.nodes_used);
        assert!(bound <= run.nodes_used);
        assert!(bench_core(50, 200, 1).contains("lower bound"));
    }
}
