//! Table-driven tests of every Filter and Score, and of the FitError text.

use std::collections::BTreeMap;

use super::*;
use crate::filter::filter;
use crate::model::{
    BoundPod, HostPort, LabelSelector, NodeInfo, PodAffinityTerm, Requirement, Resources,
    SpreadConstraint, Taint,
};
use crate::score::ScoringStrategy;

pub(crate) fn node(name: &str, cpu: i64, mem: i64) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        allocatable: Resources {
            cpu_millis: cpu,
            memory: mem,
            ephemeral_storage: 10 << 30,
            pods: 110,
        },
        ..Default::default()
    }
}

pub(crate) fn pod(key: &str, cpu: i64, mem: i64) -> PendingPod {
    PendingPod {
        key: key.into(),
        namespace: key.split('/').next().unwrap_or("default").into(),
        requests: Resources {
            cpu_millis: cpu,
            memory: mem,
            ephemeral_storage: 0,
            pods: 1,
        },
        ..Default::default()
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn zoned(name: &str, zone: &str) -> NodeInfo {
    let mut n = node(name, 4000, 8 << 30);
    n.labels = labels(&[("zone", zone), ("kubernetes.io/hostname", name)]);
    n
}

fn existing(key: &str, node: &str, app: &str) -> BoundPod {
    let mut p = pod(key, 100, 0).bound_to(node);
    p.labels = labels(&[("app", app)]);
    p
}

fn term(app: &str, key: &str) -> PodAffinityTerm {
    PodAffinityTerm {
        selector: Some(LabelSelector {
            match_labels: labels(&[("app", app)]),
            ..Default::default()
        }),
        topology_key: key.into(),
        ..Default::default()
    }
}

fn req(key: &str, op: &str, values: &[&str]) -> Requirement {
    Requirement {
        key: key.into(),
        operator: op.into(),
        values: values.iter().map(|s| s.to_string()).collect(),
    }
}

fn taint(key: &str, value: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        value: value.into(),
        effect: effect.into(),
    }
}

fn cluster(nodes: Vec<NodeInfo>, pods: Vec<BoundPod>) -> Cluster {
    let mut c = Cluster::new(nodes);
    for p in pods {
        c.add_pod(p);
    }
    c
}

/// One filter case: a cluster, a pod, the node checked, and the reasons
/// expected there (empty: it fits).
struct FilterCase {
    name: &'static str,
    nodes: Vec<NodeInfo>,
    pods: Vec<BoundPod>,
    pod: PendingPod,
    on: &'static str,
    want: &'static str,
}

#[test]
fn every_filter() {
    let base = || node("n", 1000, 1 << 30);
    let with = |f: &dyn Fn(&mut NodeInfo)| {
        let mut n = base();
        f(&mut n);
        n
    };
    let p = |f: &dyn Fn(&mut PendingPod)| {
        let mut x = pod("ns/p", 100, 1 << 20);
        f(&mut x);
        x
    };
    let gpu_node = with(&|n| {
        n.extended_allocatable.insert("nvidia.com/gpu".into(), 1);
    });
    let port = |ip: &str, port: i32| HostPort {
        protocol: "TCP".into(),
        host_ip: ip.into(),
        port,
    };
    let cases = vec![
        FilterCase {
            name: "fits",
            nodes: vec![base()],
            pods: vec![],
            pod: p(&|_| {}),
            on: "n",
            want: "",
        },
        FilterCase {
            name: "cpu",
            nodes: vec![base()],
            pods: vec![],
            pod: pod("ns/p", 1001, 0),
            on: "n",
            want: "Insufficient cpu",
        },
        FilterCase {
            name: "memory",
            nodes: vec![base()],
            pods: vec![],
            pod: pod("ns/p", 0, (1 << 30) + 1),
            on: "n",
            want: "Insufficient memory",
        },
        FilterCase {
            name: "cpu and memory",
            nodes: vec![base()],
            pods: vec![],
            pod: pod("ns/p", 2000, 2 << 30),
            on: "n",
            want: "Insufficient cpu, Insufficient memory",
        },
        FilterCase {
            name: "ephemeral-storage",
            nodes: vec![base()],
            pods: vec![],
            pod: p(&|x| x.requests.ephemeral_storage = 11 << 30),
            on: "n",
            want: "Insufficient ephemeral-storage",
        },
        FilterCase {
            name: "pods",
            nodes: vec![with(&|n| n.allocatable.pods = 0)],
            pods: vec![],
            pod: pod("ns/p", 0, 0),
            on: "n",
            want: "Too many pods",
        },
        FilterCase {
            name: "gpu fits",
            nodes: vec![gpu_node.clone()],
            pods: vec![],
            pod: p(&|x| {
                x.extended.insert("nvidia.com/gpu".into(), 1);
            }),
            on: "n",
            want: "",
        },
        FilterCase {
            name: "gpu taken",
            nodes: vec![gpu_node.clone()],
            pods: vec![],
            pod: p(&|x| {
                x.extended.insert("nvidia.com/gpu".into(), 2);
            }),
            on: "n",
            want: "Insufficient nvidia.com/gpu",
        },
        FilterCase {
            name: "gpu absent",
            nodes: vec![base()],
            pods: vec![],
            pod: p(&|x| {
                x.extended.insert("nvidia.com/gpu".into(), 1);
            }),
            on: "n",
            want: "Insufficient nvidia.com/gpu",
        },
        FilterCase {
            name: "zero request on a full node",
            nodes: vec![with(&|n| n.requested.cpu_millis = 5000)],
            pods: vec![],
            pod: pod("ns/p", 0, 0),
            on: "n",
            want: "",
        },
        FilterCase {
            name: "nodeName other",
            nodes: vec![base()],
            pods: vec![],
            pod: p(&|x| x.node_name = Some("m".into())),
            on: "n",
            want: "node(s) didn't match the requested node name",
        },
        FilterCase {
            name: "nodeName same",
            nodes: vec![base()],
            pods: vec![],
            pod: p(&|x| x.node_name = Some("n".into())),
            on: "n",
            want: "",
        },
        FilterCase {
            name: "nodeSelector miss",
            nodes: vec![base()],
            pods: vec![],
            pod: p(&|x| {
                x.node_selector.insert("disk".into(), "ssd".into());
            }),
            on: "n",
            want: "node(s) didn't match Pod's node affinity/selector",
        },
        FilterCase {
            name: "nodeSelector match",
            nodes: vec![with(&|n| {
                n.labels.insert("disk".into(), "ssd".into());
            })],
            pods: vec![],
            pod: p(&|x| {
                x.node_selector.insert("disk".into(), "ssd".into());
            }),
            on: "n",
            want: "",
        },
        FilterCase {
            name: "required affinity match",
            nodes: vec![with(&|n| {
                n.labels.insert("zone".into(), "a".into());
            })],
            pods: vec![],
            pod: p(&|x| {
                x.required_node_affinity = Some(vec![NodeSelectorTerm {
                    match_expressions: vec![req("zone", "In", &["a", "b"])],
                    ..Default::default()
                }])
            }),
            on: "n",
            want: "",
        },
        FilterCase {
            name: "required affinity miss",
            nodes: vec![with(&|n| {
                n.labels.insert("zone".into(), "c".into());
            })],
            pods: vec![],
            pod: p(&|x| {
                x.required_node_affinity = Some(vec![NodeSelectorTerm {
                    match_expressions: vec![req("zone", "In", &["a", "b"])],
                    ..Default::default()
                }])
            }),
            on: "n",
            want: "node(s) didn't match Pod's node affinity/selector",
        },
        FilterCase {
            name: "required affinity terms are ORed",
            nodes: vec![with(&|n| {
                n.labels.insert("zone".into(), "c".into());
            })],
            pods: vec![],
            pod: p(&|x| {
                x.required_node_affinity = Some(vec![
                    NodeSelectorTerm {
                        match_expressions: vec![req("zone", "In", &["a"])],
                        ..Default::default()
                    },
                    NodeSelectorTerm {
                        match_expressions: vec![req("zone", "Exists", &[])],
                        ..Default::default()
                    },
                ])
            }),
            on: "n",
            want: "",
        },
        FilterCase {
            name: "NoSchedule untolerated",
            nodes: vec![with(&|n| {
                n.taints.push(taint("dedicated", "gpu", "NoSchedule"))
            })],
            pods: vec![],
            pod: p(&|_| {}),
            on: "n",
            want: "node(s) had untolerated taint {dedicated: gpu}",
        },
        FilterCase {
            name: "NoExecute untolerated",
            nodes: vec![with(&|n| n.taints.push(taint("k", "", "NoExecute")))],
            pods: vec![],
            pod: p(&|_| {}),
            on: "n",
            want: "node(s) had untolerated taint {k: }",
        },
        FilterCase {
            name: "taint tolerated",
            nodes: vec![with(&|n| n.taints.push(taint("k", "v", "NoSchedule")))],
            pods: vec![],
            pod: p(&|x| {
                x.tolerations.push(Toleration {
                    key: "k".into(),
                    operator: "Exists".into(),
                    ..Default::default()
                })
            }),
            on: "n",
            want: "",
        },
        FilterCase {
            name: "PreferNoSchedule only scores",
            nodes: vec![with(&|n| {
                n.taints.push(taint("k", "v", "PreferNoSchedule"))
            })],
            pods: vec![],
            pod: p(&|_| {}),
            on: "n",
            want: "",
        },
        FilterCase {
            name: "cordoned",
            nodes: vec![with(&|n| n.unschedulable = true)],
            pods: vec![],
            pod: p(&|_| {}),
            on: "n",
            want: "node(s) were unschedulable",
        },
        FilterCase {
            name: "cordoned but tolerated",
            nodes: vec![with(&|n| n.unschedulable = true)],
            pods: vec![],
            pod: p(&|x| {
                x.tolerations.push(Toleration {
                    key: "node.kubernetes.io/unschedulable".into(),
                    operator: "Exists".into(),
                    ..Default::default()
                })
            }),
            on: "n",
            want: "",
        },
        FilterCase {
            name: "host port taken",
            nodes: vec![with(&|n| n.used_ports.push(port("", 80)))],
            pods: vec![],
            pod: p(&|x| x.host_ports.push(port("", 80))),
            on: "n",
            want: "node(s) didn't have free ports for the requested pod ports",
        },
        FilterCase {
            name: "host port wildcard vs ip",
            nodes: vec![with(&|n| n.used_ports.push(port("10.0.0.1", 80)))],
            pods: vec![],
            pod: p(&|x| x.host_ports.push(port("0.0.0.0", 80))),
            on: "n",
            want: "node(s) didn't have free ports for the requested pod ports",
        },
        FilterCase {
            name: "host port other ip",
            nodes: vec![with(&|n| n.used_ports.push(port("10.0.0.1", 80)))],
            pods: vec![],
            pod: p(&|x| x.host_ports.push(port("10.0.0.2", 80))),
            on: "n",
            want: "",
        },
        FilterCase {
            name: "host port other port",
            nodes: vec![with(&|n| n.used_ports.push(port("", 80)))],
            pods: vec![],
            pod: p(&|x| x.host_ports.push(port("", 81))),
            on: "n",
            want: "",
        },
        FilterCase {
            name: "volume node affinity conflict",
            nodes: vec![base()],
            pods: vec![],
            pod: p(&|x| {
                x.volume_node_affinity.push(vec![NodeSelectorTerm {
                    match_expressions: vec![req("zone", "In", &["a"])],
                    ..Default::default()
                }])
            }),
            on: "n",
            want: "node(s) had volume node affinity conflict",
        },
        FilterCase {
            name: "pod affinity same zone",
            nodes: vec![zoned("a1", "a"), zoned("b1", "b")],
            pods: vec![existing("ns/db", "a1", "db")],
            pod: p(&|x| x.pod_affinity.push(term("db", "zone"))),
            on: "a1",
            want: "",
        },
        FilterCase {
            name: "pod affinity other zone",
            nodes: vec![zoned("a1", "a"), zoned("b1", "b")],
            pods: vec![existing("ns/db", "a1", "db")],
            pod: p(&|x| x.pod_affinity.push(term("db", "zone"))),
            on: "b1",
            want: "node(s) didn't match pod affinity rules",
        },
        FilterCase {
            name: "pod affinity first of its group",
            nodes: vec![zoned("a1", "a")],
            pods: vec![],
            pod: p(&|x| {
                x.labels = labels(&[("app", "db")]);
                x.pod_affinity.push(term("db", "zone"));
            }),
            on: "a1",
            want: "",
        },
        FilterCase {
            name: "pod affinity nothing to join",
            nodes: vec![zoned("a1", "a")],
            pods: vec![],
            pod: p(&|x| x.pod_affinity.push(term("db", "zone"))),
            on: "a1",
            want: "node(s) didn't match pod affinity rules",
        },
        FilterCase {
            name: "pod affinity other namespace",
            nodes: vec![zoned("a1", "a")],
            pods: vec![existing("other/db", "a1", "db")],
            pod: p(&|x| x.pod_affinity.push(term("db", "zone"))),
            on: "a1",
            want: "node(s) didn't match pod affinity rules",
        },
        FilterCase {
            name: "anti-affinity same host",
            nodes: vec![zoned("a1", "a"), zoned("a2", "a")],
            pods: vec![existing("ns/web", "a1", "web")],
            pod: p(&|x| {
                x.pod_anti_affinity
                    .push(term("web", "kubernetes.io/hostname"))
            }),
            on: "a1",
            want: "node(s) didn't match pod anti-affinity rules",
        },
        FilterCase {
            name: "anti-affinity other host",
            nodes: vec![zoned("a1", "a"), zoned("a2", "a")],
            pods: vec![existing("ns/web", "a1", "web")],
            pod: p(&|x| {
                x.pod_anti_affinity
                    .push(term("web", "kubernetes.io/hostname"))
            }),
            on: "a2",
            want: "",
        },
        FilterCase {
            name: "anti-affinity by zone",
            nodes: vec![zoned("a1", "a"), zoned("a2", "a")],
            pods: vec![existing("ns/web", "a1", "web")],
            pod: p(&|x| x.pod_anti_affinity.push(term("web", "zone"))),
            on: "a2",
            want: "node(s) didn't match pod anti-affinity rules",
        },
        FilterCase {
            name: "existing pod's anti-affinity",
            nodes: vec![zoned("a1", "a"), zoned("b1", "b")],
            pods: vec![{
                let mut e = existing("ns/solo", "a1", "solo");
                e.anti_affinity.push(term("web", "zone"));
                e
            }],
            pod: p(&|x| x.labels = labels(&[("app", "web")])),
            on: "a1",
            want: "node(s) didn't satisfy existing pods anti-affinity rules",
        },
        FilterCase {
            name: "existing pod's anti-affinity elsewhere",
            nodes: vec![zoned("a1", "a"), zoned("b1", "b")],
            pods: vec![{
                let mut e = existing("ns/solo", "a1", "solo");
                e.anti_affinity.push(term("web", "zone"));
                e
            }],
            pod: p(&|x| x.labels = labels(&[("app", "web")])),
            on: "b1",
            want: "",
        },
        FilterCase {
            name: "spread skew exceeded",
            nodes: vec![zoned("a1", "a"), zoned("b1", "b")],
            pods: vec![existing("ns/w1", "a1", "web")],
            pod: p(&|x| {
                x.labels = labels(&[("app", "web")]);
                x.spread.push(SpreadConstraint {
                    max_skew: 1,
                    topology_key: "zone".into(),
                    do_not_schedule: true,
                    selector: Some(LabelSelector {
                        match_labels: labels(&[("app", "web")]),
                        ..Default::default()
                    }),
                    min_domains: 1,
                });
            }),
            on: "a1",
            want: "node(s) didn't match pod topology spread constraints",
        },
        FilterCase {
            name: "spread within skew",
            nodes: vec![zoned("a1", "a"), zoned("b1", "b")],
            pods: vec![existing("ns/w1", "a1", "web")],
            pod: p(&|x| {
                x.labels = labels(&[("app", "web")]);
                x.spread.push(SpreadConstraint {
                    max_skew: 1,
                    topology_key: "zone".into(),
                    do_not_schedule: true,
                    selector: Some(LabelSelector {
                        match_labels: labels(&[("app", "web")]),
                        ..Default::default()
                    }),
                    min_domains: 1,
                });
            }),
            on: "b1",
            want: "",
        },
        FilterCase {
            name: "spread minDomains",
            nodes: vec![zoned("a1", "a")],
            pods: vec![existing("ns/w1", "a1", "web")],
            pod: p(&|x| {
                x.labels = labels(&[("app", "web")]);
                x.spread.push(SpreadConstraint {
                    max_skew: 1,
                    topology_key: "zone".into(),
                    do_not_schedule: true,
                    selector: Some(LabelSelector {
                        match_labels: labels(&[("app", "web")]),
                        ..Default::default()
                    }),
                    min_domains: 2,
                });
            }),
            on: "a1",
            want: "node(s) didn't match pod topology spread constraints",
        },
        FilterCase {
            name: "spread missing label",
            nodes: vec![base()],
            pods: vec![],
            pod: p(&|x| {
                x.spread.push(SpreadConstraint {
                    max_skew: 1,
                    topology_key: "zone".into(),
                    do_not_schedule: true,
                    selector: None,
                    min_domains: 1,
                })
            }),
            on: "n",
            want: "node(s) didn't match pod topology spread constraints (missing required label)",
        },
        FilterCase {
            name: "ScheduleAnyway is not a filter",
            nodes: vec![base()],
            pods: vec![],
            pod: p(&|x| {
                x.spread.push(SpreadConstraint {
                    max_skew: 1,
                    topology_key: "zone".into(),
                    do_not_schedule: false,
                    selector: None,
                    min_domains: 1,
                })
            }),
            on: "n",
            want: "",
        },
    ];
    for c in cases {
        let cl = cluster(c.nodes, c.pods);
        let i = cl.node_index(c.on).expect("node of the case");
        let state = PodState::new(&cl, &c.pod);
        let got: Vec<String> = filter(&cl, i, &c.pod, state.as_ref())
            .iter()
            .map(Reason::text)
            .collect();
        assert_eq!(got.join(", "), c.want, "case {:?}", c.name);
        // The whole pipeline agrees with the filter.
        let placed = schedule(
            &mut cl.clone(),
            std::slice::from_ref(&c.pod),
            &Config::default(),
        );
        if c.want.is_empty() {
            assert!(
                matches!(&placed[0], Placement::Bind { .. }),
                "case {:?}: {placed:?}",
                c.name
            );
        }
    }
}

/// One score case: which node wins.
struct ScoreCase {
    name: &'static str,
    nodes: Vec<NodeInfo>,
    pods: Vec<BoundPod>,
    pod: PendingPod,
    config: Config,
    want: &'static str,
}

#[test]
fn every_score() {
    let half = |name: &str| {
        let mut n = node(name, 4000, 8 << 30);
        n.requested = Resources {
            cpu_millis: 2000,
            memory: 4 << 30,
            ephemeral_storage: 0,
            pods: 1,
        };
        n
    };
    let spread = Config {
        strategy: ScoringStrategy::LeastAllocated,
        ..Config::default()
    };
    let cpu_heavy = Config {
        cpu_weight: 10.0,
        ..Config::default()
    };
    let mut cpu_full = node("cpu-full", 4000, 8 << 30);
    cpu_full.requested.cpu_millis = 3000;
    let mut mem_full = node("mem-full", 4000, 8 << 30);
    mem_full.requested.memory = 7 << 30;
    let p = |f: &dyn Fn(&mut PendingPod)| {
        let mut x = pod("ns/p", 500, 1 << 28);
        f(&mut x);
        x
    };
    let cases = vec![
        ScoreCase {
            name: "most allocated packs",
            nodes: vec![node("a", 4000, 8 << 30), half("b")],
            pods: vec![],
            pod: p(&|_| {}),
            config: Config::default(),
            want: "b",
        },
        ScoreCase {
            name: "least allocated spreads",
            nodes: vec![node("b", 4000, 8 << 30), half("a")],
            pods: vec![],
            pod: p(&|_| {}),
            config: spread,
            want: "b",
        },
        ScoreCase {
            name: "cpu weight",
            nodes: vec![cpu_full.clone(), mem_full.clone()],
            pods: vec![],
            pod: p(&|_| {}),
            config: cpu_heavy,
            want: "cpu-full",
        },
        ScoreCase {
            name: "equal weights prefer the fuller in sum",
            nodes: vec![cpu_full, mem_full],
            pods: vec![],
            pod: p(&|_| {}),
            config: Config::default(),
            want: "mem-full",
        },
        ScoreCase {
            name: "ties break by name",
            nodes: vec![node("z", 4000, 8 << 30), node("m", 4000, 8 << 30)],
            pods: vec![],
            pod: p(&|_| {}),
            config: Config::default(),
            want: "m",
        },
        ScoreCase {
            name: "preferred node affinity outweighs packing",
            nodes: vec![half("a"), {
                let mut n = node("b", 4000, 8 << 30);
                n.labels.insert("disk".into(), "ssd".into());
                n
            }],
            pods: vec![],
            pod: p(&|x| {
                x.preferred_node_affinity.push((
                    50,
                    NodeSelectorTerm {
                        match_expressions: vec![req("disk", "In", &["ssd"])],
                        ..Default::default()
                    },
                ))
            }),
            config: Config::default(),
            want: "b",
        },
        ScoreCase {
            name: "PreferNoSchedule avoided",
            nodes: vec![
                {
                    let mut n = half("a");
                    n.taints.push(taint("k", "v", "PreferNoSchedule"));
                    n
                },
                node("b", 4000, 8 << 30),
            ],
            pods: vec![],
            pod: p(&|_| {}),
            config: Config::default(),
            want: "b",
        },
        ScoreCase {
            name: "PreferNoSchedule tolerated",
            nodes: vec![
                {
                    let mut n = half("a");
                    n.taints.push(taint("k", "v", "PreferNoSchedule"));
                    n
                },
                node("b", 4000, 8 << 30),
            ],
            pods: vec![],
            pod: p(&|x| {
                x.tolerations.push(Toleration {
                    key: "k".into(),
                    operator: "Exists".into(),
                    ..Default::default()
                })
            }),
            config: Config::default(),
            want: "a",
        },
        ScoreCase {
            name: "preferred pod affinity",
            nodes: vec![zoned("a1", "a"), zoned("b1", "b")],
            pods: vec![
                existing("ns/db", "b1", "db"),
                existing("ns/x", "a1", "x"),
                existing("ns/y", "a1", "y"),
            ],
            pod: p(&|x| x.preferred_pod_affinity.push((100, term("db", "zone")))),
            config: Config::default(),
            want: "b1",
        },
        ScoreCase {
            name: "preferred pod anti-affinity",
            nodes: vec![zoned("a1", "a"), zoned("b1", "b")],
            pods: vec![existing("ns/web", "a1", "web")],
            pod: p(&|x| {
                x.preferred_pod_anti_affinity
                    .push((100, term("web", "zone")))
            }),
            config: Config::default(),
            want: "b1",
        },
        ScoreCase {
            name: "ScheduleAnyway spreads",
            nodes: vec![zoned("a1", "a"), zoned("b1", "b")],
            pods: vec![existing("ns/w1", "a1", "web")],
            pod: p(&|x| {
                x.labels = labels(&[("app", "web")]);
                x.spread.push(SpreadConstraint {
                    max_skew: 1,
                    topology_key: "zone".into(),
                    do_not_schedule: false,
                    selector: Some(LabelSelector {
                        match_labels: labels(&[("app", "web")]),
                        ..Default::default()
                    }),
                    min_domains: 1,
                });
            }),
            config: Config::default(),
            want: "b1",
        },
    ];
    for c in cases {
        let mut cl = cluster(c.nodes, c.pods);
        let placed = schedule(&mut cl, &[c.pod], &c.config);
        match &placed[0] {
            Placement::Bind { node, .. } => assert_eq!(node, c.want, "case {:?}", c.name),
            other => panic!("case {:?}: {other:?}", c.name),
        }
    }
}

#[test]
fn later_pods_see_space_taken_by_earlier_ones() {
    let mut cl = cluster(
        vec![node("a", 1000, 1 << 30), node("b", 1000, 1 << 30)],
        vec![],
    );
    let placed = schedule(
        &mut cl,
        &[pod("ns/1", 600, 0), pod("ns/2", 600, 0)],
        &Config::default(),
    );
    let targets: Vec<_> = placed
        .iter()
        .map(|p| match p {
            Placement::Bind { node, .. } => node.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(targets, vec!["a", "b"]);
}

#[test]
fn node_evaluations_are_kept_across_passes_and_bounded() {
    // Pods with a nodeSelector, one per pass: the second pass reuses the
    // first one's evaluation and still sees the room the first pod took.
    let mut a = node("a", 1000, 1 << 30);
    a.labels = labels(&[("disk", "ssd")]);
    let mut cl = cluster(vec![a, node("b", 1000, 1 << 30)], vec![]);
    let ssd = |key: &str| PendingPod {
        node_selector: labels(&[("disk", "ssd")]),
        ..pod(key, 600, 0)
    };
    let first = schedule(&mut cl, &[ssd("ns/1")], &Config::default());
    assert!(matches!(&first[0], Placement::Bind { node, .. } if node == "a"));
    assert_eq!(cl.static_evals.held(), 2);
    let second = schedule(&mut cl, &[ssd("ns/2")], &Config::default());
    assert!(matches!(second[0], Placement::Unschedulable { .. }));
    assert_eq!(cl.static_evals.held(), 2, "the shape was evaluated once");
    // A new cluster (nodes changed) starts with none.
    let mut fresh = cluster(vec![node("a", 1000, 1 << 30)], vec![]);
    assert_eq!(fresh.static_evals.held(), 0);
    // Many distinct shapes: the cache never holds more than its bound.
    let many: Vec<PendingPod> = (0..(MAX_CACHED_EVALS + 10))
        .step_by(1 << 14)
        .map(|i| PendingPod {
            node_selector: labels(&[("n", &i.to_string())]),
            ..pod(&format!("ns/{i}"), 1, 0)
        })
        .collect();
    let nodes: Vec<NodeInfo> = (0..1 << 14)
        .map(|i| node(&format!("n{i:05}"), 1, 1))
        .collect();
    fresh = cluster(nodes, vec![]);
    schedule(&mut fresh, &many, &Config::default());
    assert!(fresh.static_evals.held() <= MAX_CACHED_EVALS);
    assert!(fresh.static_evals.held() > 0);
}

#[test]
fn batch_is_placed_largest_first() {
    // FFD's order: the 700m pod goes first and takes "a"; the two 300m pods
    // fill it. In arrival order the small ones would split the big one off.
    let mut cl = cluster(
        vec![node("a", 1300, 1 << 30), node("b", 1300, 1 << 30)],
        vec![],
    );
    let pods = [
        pod("ns/s1", 300, 0),
        pod("ns/s2", 300, 0),
        pod("ns/big", 700, 0),
    ];
    let config = Config {
        order: crate::score::BatchOrder::DecreasingSize,
        ..Config::default()
    };
    let placed = schedule(&mut cl, &pods, &config);
    assert_eq!(placed[0].pod(), "ns/big");
    assert!(placed
        .iter()
        .all(|p| matches!(p, Placement::Bind { node, .. } if node == "a")));
}

#[test]
fn fit_error_in_kubernetes_words() {
    let mut a = node("a", 100, 1 << 30);
    a.labels.insert("x".into(), "y".into());
    let mut b = node("b", 100, 1 << 30);
    b.taints.push(taint("dedicated", "gpu", "NoSchedule"));
    let mut c = node("c", 4000, 1 << 30);
    c.unschedulable = true;
    let mut cl = cluster(vec![a, b, c], vec![]);
    let placed = schedule(&mut cl, &[pod("ns/p", 500, 0)], &Config::default());
    assert_eq!(
        placed,
        vec![Placement::Unschedulable {
            pod: "ns/p".into(),
            message: "0/3 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) were unschedulable. preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.".into(),
        }]
    );
}

#[test]
fn fit_error_counts_and_sorts() {
    let nodes = (0..5)
        .map(|i| {
            let mut n = node(&format!("n{i}"), 1000, 1 << 30);
            if i < 2 {
                n.taints.push(taint("k", "v", "NoSchedule"));
            }
            n
        })
        .collect();
    let mut cl = cluster(nodes, vec![]);
    let mut p = pod("ns/p", 2000, 0);
    p.never_preempt = true;
    let placed = schedule(&mut cl, &[p], &Config::default());
    assert_eq!(
        placed[0],
        Placement::Unschedulable {
            pod: "ns/p".into(),
            message: "0/5 nodes are available: 2 node(s) had untolerated taint {k: v}, 3 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never.".into(),
        }
    );
}

#[test]
fn no_nodes() {
    let mut cl = cluster(vec![], vec![]);
    let placed = schedule(&mut cl, &[pod("ns/p", 1, 0)], &Config::default());
    assert_eq!(
        placed[0],
        Placement::Unschedulable {
            pod: "ns/p".into(),
            message: "no nodes available to schedule pods".into()
        }
    );
}

#[test]
fn toleration_matching() {
    let t0 = taint("k", "v", "NoSchedule");
    let t = |key: &str, op: &str, value: &str, effect: &str| Toleration {
        key: key.into(),
        operator: op.into(),
        value: value.into(),
        effect: effect.into(),
    };
    assert!(t("k", "Equal", "v", "NoSchedule").tolerates(&t0));
    assert!(t("k", "", "v", "").tolerates(&t0));
    assert!(t("", "Exists", "", "").tolerates(&t0));
    assert!(!t("k", "Equal", "w", "").tolerates(&t0));
    assert!(!t("k", "Exists", "", "NoExecute").tolerates(&t0));
}
