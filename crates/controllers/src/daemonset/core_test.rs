//! Table-driven tests of the DaemonSet controller's decision.

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
};
use k8s_openapi::api::core::v1::{Node, NodeSpec, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::core::*;
use crate::revision::CONTROLLER_REVISION_HASH_LABEL;
use crate::slim_pod::SlimPod;
use crate::test_fixtures::*;

fn ds(strategy: Option<(i32, i32)>) -> DaemonSet {
    DaemonSet {
        metadata: ObjectMeta {
            name: Some("agent".into()),
            namespace: Some("default".into()),
            uid: Some("uid-agent".into()),
            generation: Some(2),
            ..Default::default()
        },
        spec: DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            },
            template: template("busybox"),
            update_strategy: Some(match strategy {
                Some((unavailable, surge)) => DaemonSetUpdateStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDaemonSet {
                        max_unavailable: Some(IntOrString::Int(unavailable)),
                        max_surge: Some(IntOrString::Int(surge)),
                    }),
                },
                None => DaemonSetUpdateStrategy {
                    type_: Some("OnDelete".into()),
                    rolling_update: None,
                },
            }),
            ..Default::default()
        },
        status: None,
    }
}

fn node(name: &str, taint: Option<&str>) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: taint.map(|effect| {
                vec![Taint {
                    key: "dedicated".into(),
                    effect: effect.into(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// A daemon pod on `node` of revision `hash`; `ready`: ready for 10 min.
fn dpod(name: &str, node: &str, hash: &str, ready: bool) -> SlimPod {
    let mut st = RUNNING_READY;
    st.node = None;
    if !ready {
        st.ready_for_s = None;
    }
    let mut p = pod(name, None, st);
    p.spec.as_mut().unwrap().node_name = Some(node.to_string());
    p.metadata.labels = Some(labels(&[
        ("app", "web"),
        (CONTROLLER_REVISION_HASH_LABEL, hash),
    ]));
    p.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "apps/v1".into(),
        kind: "DaemonSet".into(),
        name: "agent".into(),
        uid: "uid-agent".into(),
        controller: Some(true),
        ..Default::default()
    }]);
    p
}

fn run(ds: &DaemonSet, nodes: &[Node], pods: &[SlimPod]) -> Plan {
    let nodes: Vec<&Node> = nodes.iter().collect();
    let pods: Vec<&SlimPod> = pods.iter().collect();
    reconcile(&Input {
        ds,
        nodes: &nodes,
        pods: &pods,
        hash: "new",
        may_manage: true,
        now_ms: NOW_MS,
    })
}

fn names(p: &Plan) -> Vec<String> {
    p.delete.iter().map(|r| r.name.clone()).collect()
}

#[test]
fn one_pod_per_eligible_node() {
    let d = ds(Some((1, 0)));
    let nodes = [
        node("n1", None),
        node("n2", None),
        node("n3", Some("NoSchedule")),
        node("n4", Some("NoExecute")),
    ];
    let pods = [
        dpod("a", "n1", "new", true),
        dpod("a2", "n1", "new", true),
        dpod("c", "n3", "new", true),
        dpod("d", "n4", "new", true),
        dpod("gone", "n9", "new", true),
    ];
    let plan = run(&d, &nodes, &pods);
    // n2 gets a pod; n3 keeps its pod (NoSchedule came later) but gets
    // none new; n4's pod goes (NoExecute), as does the pod of a removed node
    // and the duplicate on n1.
    assert_eq!(plan.create, ["n2"]);
    let mut deleted = names(&plan);
    deleted.sort();
    // The duplicate on n1 is the newer one; both were created at the same
    // time here, so either may go: it is the second in creation order.
    assert_eq!(deleted.len(), 3, "{deleted:?}");
    assert!(deleted.contains(&"d".to_string()) && deleted.contains(&"gone".to_string()));
    let st = plan.status.unwrap();
    assert_eq!(st.desired_number_scheduled, 2);
    assert_eq!(st.current_number_scheduled, 1);
    assert_eq!(st.number_misscheduled, 1);
    assert_eq!(st.number_ready, 1);
    assert_eq!(st.observed_generation, Some(2));
}

#[test]
fn rolling_update_within_max_unavailable() {
    let nodes: Vec<Node> = (1..=4).map(|i| node(&format!("n{i}"), None)).collect();
    let old: Vec<SlimPod> = (1..=4)
        .map(|i| dpod(&format!("p{i}"), &format!("n{i}"), "old", true))
        .collect();
    // maxUnavailable 2: two old pods go at once.
    let plan = run(&ds(Some((2, 0))), &nodes, &old);
    assert_eq!(plan.delete.len(), 2);
    assert!(plan.create.is_empty());
    // One node already without a pod: only one more may go (and n1 gets its new pod).
    let plan = run(&ds(Some((2, 0))), &nodes, &old[1..]);
    assert_eq!((plan.create.len(), plan.delete.len()), (1, 1));
    // An unavailable old pod is replaced at once, and uses up the budget
    // (Kubernetes counts it unavailable).
    let mut pods = old.clone();
    pods[3] = dpod("p4", "n4", "old", false);
    let plan = run(&ds(Some((1, 0))), &nodes, &pods);
    assert_eq!(names(&plan), ["p4"]);
    let plan = run(&ds(Some((2, 0))), &nodes, &pods);
    assert_eq!(names(&plan), ["p1", "p4"]);
    // OnDelete: nothing is replaced.
    let plan = run(&ds(None), &nodes, &old);
    assert!(plan.delete.is_empty() && plan.create.is_empty());
    assert_eq!(plan.status.unwrap().updated_number_scheduled, None);
}

#[test]
fn rolling_update_with_surge() {
    let nodes = [node("n1", None), node("n2", None)];
    let d = ds(Some((0, 1)));
    // maxSurge 1: a new pod beside one old pod.
    let plan = run(
        &d,
        &nodes,
        &[dpod("o1", "n1", "old", true), dpod("o2", "n2", "old", true)],
    );
    assert_eq!((plan.create.len(), plan.delete.len()), (1, 0));
    // Once the new pod is available, its old one goes.
    let plan = run(
        &d,
        &nodes,
        &[
            dpod("o1", "n1", "old", true),
            dpod("x1", "n1", "new", true),
            dpod("o2", "n2", "old", true),
        ],
    );
    assert_eq!(names(&plan), ["o1"]);
    assert_eq!(plan.create, ["n2"]);
}

#[test]
fn daemon_pods_are_pinned_to_their_node_and_tolerate_node_problems() {
    let p = pod_from_template(&ds(Some((1, 0))), "agent-x", "n7", "h1");
    assert_eq!(target_node(&SlimPod::from(&p)).as_deref(), Some("n7"));
    let l = p.metadata.labels.as_ref().unwrap();
    assert_eq!(l[CONTROLLER_REVISION_HASH_LABEL], "h1");
    assert_eq!(l[POD_TEMPLATE_GENERATION_LABEL], "2");
    let tol = p.spec.unwrap().tolerations.unwrap();
    for key in [
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unschedulable",
    ] {
        assert!(tol.iter().any(|t| t.key.as_deref() == Some(key)), "{key}");
    }
    assert_eq!(scaled(Some(&IntOrString::String("10%".into())), 11, 1), 2);
}
