use super::*;

fn node(name: &str, cpu: i64, mem: i64) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        allocatable: Resources {
            cpu_millis: cpu,
            memory: mem,
            pods: 110,
        },
        ..Default::default()
    }
}

fn pod(key: &str, cpu: i64, mem: i64) -> PendingPod {
    PendingPod {
        key: key.into(),
        requests: Resources {
            cpu_millis: cpu,
            memory: mem,
            pods: 1,
        },
        ..Default::default()
    }
}

#[test]
fn packs_onto_the_fullest_node_that_fits() {
    let mut nodes = vec![node("a", 4000, 8 << 30), node("b", 4000, 8 << 30)];
    nodes[1].requested = Resources {
        cpu_millis: 2000,
        memory: 4 << 30,
        pods: 1,
    };
    let placed = schedule(&mut nodes, &[pod("ns/p", 1000, 1 << 30)]);
    assert_eq!(
        placed,
        vec![Placement::Bind {
            pod: "ns/p".into(),
            node: "b".into()
        }]
    );
    assert_eq!(nodes[1].requested.cpu_millis, 3000);
}

#[test]
fn ties_break_by_node_name() {
    let mut nodes = vec![node("z", 1000, 1 << 30), node("m", 1000, 1 << 30)];
    let placed = schedule(&mut nodes, &[pod("ns/p", 0, 0)]);
    assert_eq!(
        placed,
        vec![Placement::Bind {
            pod: "ns/p".into(),
            node: "m".into()
        }]
    );
}

#[test]
fn later_pods_see_space_taken_by_earlier_ones() {
    let mut nodes = vec![node("a", 1000, 1 << 30), node("b", 1000, 1 << 30)];
    let placed = schedule(&mut nodes, &[pod("ns/1", 600, 0), pod("ns/2", 600, 0)]);
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
fn unschedulable_message_counts_each_reason() {
    let mut nodes = vec![
        node("a", 100, 1 << 30),
        node("b", 100, 1 << 30),
        node("c", 4000, 1 << 30),
    ];
    nodes[2].unschedulable = true;
    nodes[1].taints.push(Taint {
        key: "dedicated".into(),
        value: "gpu".into(),
        effect: "NoSchedule".into(),
    });
    let placed = schedule(&mut nodes, &[pod("ns/p", 500, 0)]);
    assert_eq!(
        placed,
        vec![Placement::Unschedulable {
            pod: "ns/p".into(),
            message: "0/3 nodes are available: 1 node(s) had untolerated taint, 1 node(s) were unschedulable, 2 Insufficient cpu.".into(),
        }]
    );
}

#[test]
fn filters_table() {
    struct Case {
        name: &'static str,
        node: NodeInfo,
        pod: PendingPod,
        fits: bool,
    }
    let mut labelled = node("l", 1000, 1 << 30);
    labelled.labels.insert("disk".into(), "ssd".into());
    let mut wants_ssd = pod("ns/p", 0, 0);
    wants_ssd.node_selector.insert("disk".into(), "ssd".into());
    let mut tainted = node("t", 1000, 1 << 30);
    tainted.taints.push(Taint {
        key: "k".into(),
        value: "v".into(),
        effect: "NoExecute".into(),
    });
    let mut tolerant = pod("ns/p", 0, 0);
    tolerant.tolerations.push(Toleration {
        key: "k".into(),
        operator: "Exists".into(),
        ..Default::default()
    });
    let mut soft = node("s", 1000, 1 << 30);
    soft.taints.push(Taint {
        key: "k".into(),
        value: "v".into(),
        effect: "PreferNoSchedule".into(),
    });
    let mut full = node("f", 1000, 1 << 30);
    full.requested.pods = 110;
    let cases = vec![
        Case {
            name: "fits",
            node: node("a", 1000, 1 << 30),
            pod: pod("ns/p", 1000, 1 << 30),
            fits: true,
        },
        Case {
            name: "cpu",
            node: node("a", 999, 1 << 30),
            pod: pod("ns/p", 1000, 0),
            fits: false,
        },
        Case {
            name: "memory",
            node: node("a", 1000, 10),
            pod: pod("ns/p", 0, 11),
            fits: false,
        },
        Case {
            name: "pods",
            node: full,
            pod: pod("ns/p", 0, 0),
            fits: false,
        },
        Case {
            name: "selector match",
            node: labelled.clone(),
            pod: wants_ssd.clone(),
            fits: true,
        },
        Case {
            name: "selector miss",
            node: node("a", 1000, 1 << 30),
            pod: wants_ssd,
            fits: false,
        },
        Case {
            name: "taint untolerated",
            node: tainted.clone(),
            pod: pod("ns/p", 0, 0),
            fits: false,
        },
        Case {
            name: "taint tolerated",
            node: tainted,
            pod: tolerant,
            fits: true,
        },
        Case {
            name: "prefer-no-schedule is not a filter",
            node: soft,
            pod: pod("ns/p", 0, 0),
            fits: true,
        },
    ];
    for c in cases {
        assert_eq!(filter(&c.node, &c.pod).is_empty(), c.fits, "{}", c.name);
    }
}

#[test]
fn toleration_matching() {
    let taint = Taint {
        key: "k".into(),
        value: "v".into(),
        effect: "NoSchedule".into(),
    };
    let t = |key: &str, op: &str, value: &str, effect: &str| Toleration {
        key: key.into(),
        operator: op.into(),
        value: value.into(),
        effect: effect.into(),
    };
    assert!(t("k", "Equal", "v", "NoSchedule").tolerates(&taint));
    assert!(t("k", "", "v", "").tolerates(&taint));
    assert!(t("", "Exists", "", "").tolerates(&taint));
    assert!(!t("k", "Equal", "w", "").tolerates(&taint));
    assert!(!t("k", "Exists", "", "NoExecute").tolerates(&taint));
}
