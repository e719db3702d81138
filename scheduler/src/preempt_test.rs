use std::collections::BTreeMap;

use crate::cluster::Cluster;
use crate::core::schedule;
use crate::model::{
    BoundPod, DisruptionBudget, LabelSelector, NodeInfo, PendingPod, Placement, Resources,
};
use crate::score::Config;

fn node(name: &str, cpu: i64) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        allocatable: Resources {
            cpu_millis: cpu,
            memory: 8 << 30,
            ephemeral_storage: 0,
            pods: 110,
        },
        ..Default::default()
    }
}

fn pending(key: &str, cpu: i64, priority: i32) -> PendingPod {
    PendingPod {
        key: key.into(),
        namespace: "ns".into(),
        requests: Resources {
            cpu_millis: cpu,
            pods: 1,
            ..Default::default()
        },
        priority,
        ..Default::default()
    }
}

fn running(key: &str, node: &str, cpu: i64, priority: i32) -> BoundPod {
    let mut p = pending(key, cpu, priority).bound_to(node);
    p.labels = BTreeMap::from([("app".to_string(), key.trim_start_matches("ns/").to_string())]);
    p
}

fn cluster(nodes: Vec<NodeInfo>, pods: Vec<BoundPod>) -> Cluster {
    let mut c = Cluster::new(nodes);
    for p in pods {
        c.add_pod(p);
    }
    c
}

#[test]
fn evicts_the_fewest_least_important_pods() {
    let mut c = cluster(
        vec![node("a", 4000)],
        vec![
            running("ns/low1", "a", 1000, 0),
            running("ns/low2", "a", 2000, 0),
            running("ns/mid", "a", 1000, 5),
        ],
    );
    let placed = schedule(&mut c, &[pending("ns/high", 2000, 10)], &Config::default());
    match &placed[0] {
        Placement::Preempt {
            node,
            victims,
            message,
            ..
        } => {
            assert_eq!(node, "a");
            assert_eq!(victims, &vec!["ns/low2".to_string()]);
            assert_eq!(message, "0/1 nodes are available: 1 Insufficient cpu.");
        }
        other => panic!("{other:?}"),
    }
    // The preemptor is assumed on the node, the victim is gone.
    assert!(c.pods().contains_key("ns/high"));
    assert!(!c.pods().contains_key("ns/low2"));
}

#[test]
fn never_evicts_equal_or_higher_priority() {
    let mut c = cluster(
        vec![node("a", 1000)],
        vec![running("ns/same", "a", 1000, 10)],
    );
    let placed = schedule(&mut c, &[pending("ns/p", 500, 10)], &Config::default());
    assert_eq!(
        placed[0],
        Placement::Unschedulable {
            pod: "ns/p".into(),
            message: "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.".into()
        }
    );
}

#[test]
fn prefers_the_node_without_budget_violations() {
    let mut c = cluster(
        vec![node("a", 1000), node("b", 1000)],
        vec![
            running("ns/guarded", "a", 1000, 0),
            running("ns/free", "b", 1000, 0),
        ],
    );
    c.budgets.push(DisruptionBudget {
        namespace: "ns".into(),
        selector: LabelSelector {
            match_labels: BTreeMap::from([("app".to_string(), "guarded".to_string())]),
            ..Default::default()
        },
        disruptions_allowed: 0,
    });
    let placed = schedule(&mut c, &[pending("ns/p", 1000, 1)], &Config::default());
    assert!(
        matches!(&placed[0], Placement::Preempt { node, victims, .. } if node == "b" && victims == &vec!["ns/free".to_string()]),
        "{placed:?}"
    );
}

#[test]
fn violates_a_budget_only_when_it_must() {
    let mut c = cluster(
        vec![node("a", 1000)],
        vec![running("ns/guarded", "a", 1000, 0)],
    );
    c.budgets.push(DisruptionBudget {
        namespace: "ns".into(),
        selector: LabelSelector::default(),
        disruptions_allowed: 0,
    });
    let placed = schedule(&mut c, &[pending("ns/p", 1000, 1)], &Config::default());
    assert!(matches!(&placed[0], Placement::Preempt { victims, .. } if victims.len() == 1));
}

#[test]
fn prefers_lower_priority_victims() {
    let mut c = cluster(
        vec![node("a", 1000), node("b", 1000)],
        vec![
            running("ns/five", "a", 1000, 5),
            running("ns/one", "b", 1000, 1),
        ],
    );
    let placed = schedule(&mut c, &[pending("ns/p", 1000, 10)], &Config::default());
    assert!(
        matches!(&placed[0], Placement::Preempt { node, .. } if node == "b"),
        "{placed:?}"
    );
}

#[test]
fn terminating_pods_make_room_without_new_victims() {
    let mut gone = running("ns/old", "a", 1000, 100);
    gone.terminating = true;
    let mut c = cluster(vec![node("a", 1000)], vec![gone]);
    let placed = schedule(&mut c, &[pending("ns/p", 1000, 0)], &Config::default());
    assert!(
        matches!(&placed[0], Placement::Preempt { node, victims, .. } if node == "a" && victims.is_empty()),
        "{placed:?}"
    );
}

#[test]
fn unresolvable_nodes_are_not_candidates() {
    let mut n = node("a", 1000);
    n.unschedulable = true;
    let mut c = cluster(vec![n], vec![running("ns/low", "a", 1000, 0)]);
    let placed = schedule(&mut c, &[pending("ns/p", 1000, 10)], &Config::default());
    assert_eq!(
        placed[0],
        Placement::Unschedulable {
            pod: "ns/p".into(),
            message: "0/1 nodes are available: 1 node(s) were unschedulable. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.".into()
        }
    );
}
