//! Seeded workloads for the benchmark and the property test: a small
//! deterministic generator (SplitMix64) and a cluster of identical nodes
//! with pods of mixed sizes, like kube-scheduler's scheduler_perf
//! "SchedulingBasic" with varied requests.

use crate::model::{NodeInfo, PendingPod, Resources};

/// SplitMix64 (Steele, Lea and Flood, 2014): tiny, fast, and the same
/// sequence on every platform for a seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0; 0 gives 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// Picks from `(weight, value)` pairs.
    pub fn weighted<T: Copy>(&mut self, choices: &[(u64, T)]) -> Option<T> {
        let total: u64 = choices.iter().map(|(w, _)| w).sum();
        let mut r = self.below(total);
        for (w, v) in choices {
            if r < *w {
                return Some(*v);
            }
            r -= w;
        }
        None
    }
}

/// Allocatable of a benchmark node: 4 cpu, 16Gi, 110 pods (kubemark's
/// hollow node default shape).
pub const BENCH_NODE: Resources = Resources {
    cpu_millis: 4000,
    memory: 16 << 30,
    ephemeral_storage: 100 << 30,
    pods: 110,
};

/// `count` identical nodes named `node-00000`…
pub fn nodes(count: usize) -> Vec<NodeInfo> {
    (0..count)
        .map(|i| NodeInfo {
            name: format!("node-{i:05}"),
            allocatable: BENCH_NODE,
            labels: [
                ("kubernetes.io/hostname".to_string(), format!("node-{i:05}")),
                (
                    "topology.kubernetes.io/zone".to_string(),
                    format!("zone-{}", i % 3),
                ),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        })
        .collect()
}

/// Mixed pod sizes, mostly small: about 0.32 cpu and 0.5Gi on average, so
/// 50,000 pods need about 4,000 of the 4-cpu nodes.
pub fn pods(count: usize, seed: u64) -> Vec<PendingPod> {
    let mut rng = Rng::new(seed);
    let cpu = [(40, 100), (30, 200), (20, 500), (8, 1000), (2, 2000)];
    let mem_mi = [(35, 128), (30, 256), (20, 512), (10, 1024), (5, 4096)];
    (0..count)
        .map(|i| PendingPod {
            key: format!("bench/pod-{i:06}"),
            namespace: "bench".into(),
            requests: Resources {
                cpu_millis: rng.weighted(&cpu).unwrap_or(100),
                memory: rng.weighted(&mem_mi).unwrap_or(128) << 20,
                ephemeral_storage: 0,
                pods: 1,
            },
            ..Default::default()
        })
        .collect()
}
