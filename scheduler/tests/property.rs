//! Property test of the pure core over many seeded random clusters: no node
//! is ever over-committed (cpu, memory, pods, GPUs, host ports, required
//! anti-affinity, untolerated taints) and no pod is placed twice, through
//! several batches with retries and preemption.

use std::collections::{BTreeMap, HashMap, HashSet};

use skiff_scheduler::cluster::Cluster;
use skiff_scheduler::core::schedule;
use skiff_scheduler::model::{
    HostPort, LabelSelector, NodeInfo, PendingPod, Placement, PodAffinityTerm, Resources, Taint,
    Toleration,
};
use skiff_scheduler::score::{BatchOrder, Config, ScoringStrategy};
use skiff_scheduler::workload::Rng;

const GPU: &str = "nvidia.com/gpu";

fn random_nodes(rng: &mut Rng) -> Vec<NodeInfo> {
    let count = 1 + rng.below(25) as usize;
    (0..count)
        .map(|i| {
            let mut n = NodeInfo {
                name: format!("n{i:02}"),
                allocatable: Resources {
                    cpu_millis: 500 + 500 * rng.below(8) as i64,
                    memory: (1 + rng.below(16) as i64) << 30,
                    ephemeral_storage: 10 << 30,
                    pods: 1 + rng.below(12) as i64,
                },
                ..Default::default()
            };
            n.labels
                .insert("kubernetes.io/hostname".into(), n.name.clone());
            n.labels.insert("zone".into(), format!("z{}", rng.below(3)));
            if rng.below(4) == 0 {
                n.extended_allocatable
                    .insert(GPU.into(), rng.below(3) as i64);
            }
            if rng.below(6) == 0 {
                n.taints.push(Taint {
                    key: "dedicated".into(),
                    value: "x".into(),
                    effect: "NoSchedule".into(),
                });
            }
            n.unschedulable = rng.below(10) == 0;
            n
        })
        .collect()
}

fn random_pod(rng: &mut Rng, id: usize) -> PendingPod {
    let mut p = PendingPod {
        key: format!("ns/p{id:04}"),
        namespace: "ns".into(),
        requests: Resources {
            cpu_millis: 100 * rng.below(20) as i64,
            memory: (rng.below(2048) as i64) << 20,
            ephemeral_storage: 0,
            pods: 1,
        },
        priority: rng.below(3) as i32 * 100,
        ..Default::default()
    };
    p.labels.insert("app".into(), format!("a{}", rng.below(4)));
    if rng.below(8) == 0 {
        p.extended.insert(GPU.into(), 1 + rng.below(2) as i64);
    }
    if rng.below(6) == 0 {
        p.host_ports.push(HostPort {
            protocol: "TCP".into(),
            host_ip: String::new(),
            port: 8000 + rng.below(3) as i32,
        });
    }
    if rng.below(6) == 0 {
        let app = p.labels["app"].clone();
        p.pod_anti_affinity.push(PodAffinityTerm {
            selector: Some(LabelSelector {
                match_labels: BTreeMap::from([("app".to_string(), app)]),
                ..Default::default()
            }),
            topology_key: "kubernetes.io/hostname".into(),
            ..Default::default()
        });
    }
    if rng.below(5) == 0 {
        p.tolerations.push(Toleration {
            key: "dedicated".into(),
            operator: "Exists".into(),
            ..Default::default()
        });
    }
    p
}

/// Checks the placed pods against the nodes, from scratch.
fn check(nodes: &[NodeInfo], placed: &HashMap<String, (PendingPod, String)>, seed: u64) {
    let mut per_node: HashMap<&str, Vec<&PendingPod>> = HashMap::new();
    for (pod, node) in placed.values() {
        per_node.entry(node.as_str()).or_default().push(pod);
    }
    for n in nodes {
        let pods = per_node.get(n.name.as_str()).cloned().unwrap_or_default();
        let sum = pods
            .iter()
            .fold(Resources::default(), |a, p| a.plus(p.requests));
        assert!(
            sum.cpu_millis <= n.allocatable.cpu_millis,
            "seed {seed}: cpu over-committed on {}",
            n.name
        );
        assert!(
            sum.memory <= n.allocatable.memory,
            "seed {seed}: memory over-committed on {}",
            n.name
        );
        assert!(
            sum.pods <= n.allocatable.pods,
            "seed {seed}: pods over-committed on {}",
            n.name
        );
        let gpus: i64 = pods
            .iter()
            .map(|p| p.extended.get(GPU).copied().unwrap_or(0))
            .sum();
        assert!(
            gpus <= n.extended_allocatable.get(GPU).copied().unwrap_or(0),
            "seed {seed}: gpus on {}",
            n.name
        );
        let mut ports = HashSet::new();
        for p in &pods {
            for hp in &p.host_ports {
                assert!(
                    ports.insert(hp.port),
                    "seed {seed}: host port {} twice on {}",
                    hp.port,
                    n.name
                );
            }
            for t in &n.taints {
                assert!(
                    p.tolerations.iter().any(|tol| tol.tolerates(t)),
                    "seed {seed}: untolerated taint"
                );
            }
            for term in &p.pod_anti_affinity {
                let app = &term.selector.as_ref().expect("generated").match_labels["app"];
                let same = pods
                    .iter()
                    .filter(|o| o.key != p.key && &o.labels["app"] == app)
                    .count();
                assert_eq!(same, 0, "seed {seed}: anti-affinity broken on {}", n.name);
            }
        }
    }
}

#[test]
fn never_over_commits_and_never_places_twice() {
    for seed in 0..300u64 {
        let mut rng = Rng::new(seed);
        let nodes = random_nodes(&mut rng);
        let config = Config {
            strategy: if seed % 2 == 0 {
                ScoringStrategy::MostAllocated
            } else {
                ScoringStrategy::LeastAllocated
            },
            order: if seed % 3 == 0 {
                BatchOrder::DecreasingSize
            } else {
                BatchOrder::Arrival
            },
            ..Config::default()
        };
        let mut placed: HashMap<String, (PendingPod, String)> = HashMap::new();
        let mut waiting: Vec<PendingPod> = Vec::new();
        let mut next_id = 0;
        for _batch in 0..4 {
            // The cluster as the loop would rebuild it from the API.
            let mut cluster = Cluster::new(nodes.clone());
            for (pod, node) in placed.values() {
                cluster.add_pod(pod.bound_to(node));
            }
            for _ in 0..rng.below(40) {
                waiting.push(random_pod(&mut rng, next_id));
                next_id += 1;
            }
            let out = schedule(&mut cluster, &waiting, &config);
            let expected = waiting.len();
            let mut seen = HashSet::new();
            let by_key: HashMap<String, PendingPod> =
                waiting.iter().map(|p| (p.key.clone(), p.clone())).collect();
            for placement in &out {
                assert!(
                    seen.insert(placement.pod().to_string()),
                    "seed {seed}: a pod placed twice in one batch"
                );
                assert!(
                    !placed.contains_key(placement.pod()),
                    "seed {seed}: a bound pod placed again"
                );
                match placement {
                    Placement::Bind { pod, node } => {
                        placed.insert(pod.clone(), (by_key[pod].clone(), node.clone()));
                    }
                    Placement::Preempt {
                        pod, node, victims, ..
                    } => {
                        for v in victims {
                            let (victim, _) = placed.remove(v).expect("victims are placed pods");
                            assert!(
                                victim.priority < by_key[pod].priority,
                                "seed {seed}: evicted an equal or higher priority pod"
                            );
                            waiting.push(victim);
                        }
                        // Nominated: counted on the node, as the core assumes it.
                        placed.insert(pod.clone(), (by_key[pod].clone(), node.clone()));
                    }
                    Placement::Unschedulable { message, .. } => {
                        assert!(
                            message.starts_with(&format!("0/{} nodes are available", nodes.len())),
                            "{message}"
                        );
                    }
                }
            }
            assert_eq!(seen.len(), expected, "seed {seed}: one placement per pod");
            waiting.retain(|p| !placed.contains_key(&p.key));
            check(&nodes, &placed, seed);
        }
    }
}
