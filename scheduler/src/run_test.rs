//! The loop's bookkeeping, without a server: watch events in, actions out.

use super::*;

fn node(name: &str, cpu: &str) -> Node {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]},
    }))
    .expect("valid node")
}

fn pod(name: &str, cpu: &str, extra: serde_json::Value) -> SlimPod {
    let mut v = serde_json::json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
            "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
    });
    if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), extra.as_object()) {
        for (k, x) in extra {
            spec.insert(k.clone(), x.clone());
        }
    }
    serde_json::from_value(v).expect("valid pod")
}

fn synced(nodes: Vec<Node>, pods: Vec<SlimPod>) -> State {
    let mut s = State::default();
    s.apply_node(Event::Init);
    for n in nodes {
        s.apply_node(Event::InitApply(n));
    }
    s.apply_node(Event::InitDone);
    s.apply_pod(Event::Init);
    for p in pods {
        s.apply_pod(Event::InitApply(p));
    }
    s.apply_pod(Event::InitDone);
    s
}

fn names(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::Bind { pod, node, .. } => format!("bind {pod} {node}"),
            Action::Preempt {
                pod, node, victims, ..
            } => format!("preempt {pod} {node} {victims:?}"),
            Action::Unschedulable { pod, first, .. } => {
                format!("unschedulable {pod} first={first}")
            }
        })
        .collect()
}

#[test]
fn binds_once_and_assumes_until_the_watch_confirms() {
    let mut s = synced(
        vec![node("a", "1")],
        vec![pod("p1", "600m", serde_json::json!({}))],
    );
    let actions = s.pass(&Config::default());
    assert_eq!(names(&actions), vec!["bind ns/p1 a"]);
    // In flight: not placed again, and its room is taken.
    s.apply_pod(Event::Apply(pod("p2", "600m", serde_json::json!({}))));
    let actions = s.pass(&Config::default());
    assert_eq!(names(&actions), vec!["unschedulable ns/p2 first=true"]);
    // The watch shows p1 bound: bookkeeping moves it from assumed to bound.
    s.apply_pod(Event::Apply(pod(
        "p1",
        "600m",
        serde_json::json!({"nodeName": "a"}),
    )));
    assert!(s.in_flight.is_empty() && s.assumed.is_empty());
    assert_eq!(s.cluster.nodes()[0].requested.cpu_millis, 600);
}

#[test]
fn unschedulable_pods_wait_for_a_change() {
    let mut s = synced(
        vec![node("a", "1")],
        vec![pod("big", "2", serde_json::json!({}))],
    );
    assert_eq!(
        names(&s.pass(&Config::default())),
        vec!["unschedulable ns/big first=true"]
    );
    // Nothing changed: no retry (no busy loop).
    assert!(s.pass(&Config::default()).is_empty());
    // A heartbeat-only node update is no change either.
    s.apply_node(Event::Apply(node("a", "1")));
    assert!(s.pass(&Config::default()).is_empty());
    // A bigger node: retried, no second event.
    s.apply_node(Event::Apply(node("b", "4")));
    assert_eq!(names(&s.pass(&Config::default())), vec!["bind ns/big b"]);
}

#[test]
fn a_failed_binding_is_forgotten_and_retried() {
    let mut s = synced(
        vec![node("a", "1")],
        vec![pod("p", "1", serde_json::json!({}))],
    );
    assert_eq!(names(&s.pass(&Config::default())), vec!["bind ns/p a"]);
    s.done(Done::Bound {
        pod: "ns/p".into(),
        ok: false,
    });
    assert_eq!(s.cluster.nodes()[0].requested.cpu_millis, 0);
    assert_eq!(names(&s.pass(&Config::default())), vec!["bind ns/p a"]);
}

#[test]
fn priority_class_names_resolve_and_preempt() {
    let low = pod(
        "low",
        "1",
        serde_json::json!({"nodeName": "a", "priority": 0}),
    );
    let mut s = synced(vec![node("a", "1")], vec![low]);
    let class: PriorityClass = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "high"}, "value": 1000,
    }))
    .expect("valid class");
    s.apply_class(Event::Apply(class));
    s.apply_pod(Event::Apply(pod(
        "vip",
        "1",
        serde_json::json!({"priorityClassName": "high"}),
    )));
    assert_eq!(
        names(&s.pass(&Config::default())),
        vec!["preempt ns/vip a [\"ns/low\"]"]
    );
    // The victim still counts until it is gone; then the pod is placed.
    assert_eq!(s.cluster.nodes()[0].requested.cpu_millis, 1000);
    s.done(Done::Preempted {
        pod: "ns/vip".into(),
    });
    assert!(s.pass(&Config::default()).is_empty());
    s.apply_pod(Event::Delete(pod(
        "low",
        "1",
        serde_json::json!({"nodeName": "a"}),
    )));
    assert_eq!(names(&s.pass(&Config::default())), vec!["bind ns/vip a"]);
}

#[test]
fn nothing_happens_before_both_lists_are_synced() {
    let mut s = State::default();
    s.apply_node(Event::InitApply(node("a", "1")));
    s.apply_pod(Event::Apply(pod("p", "1", serde_json::json!({}))));
    assert!(s.pass(&Config::default()).is_empty());
}

#[test]
fn volume_binding_waits_for_claims_selects_a_node_and_follows_volume_affinity() {
    let claim = |name: &str, volume: Option<&str>| -> PersistentVolumeClaim {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"storageClassName": "local-path", "volumeName": volume},
        }))
        .expect("valid claim")
    };
    let with_claim = |name: &str, c: &str| {
        pod(
            name,
            "100m",
            serde_json::json!({"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": c}}]}),
        )
    };
    let mut s = synced(
        vec![node("n1", "4"), node("n2", "4")],
        vec![with_claim("a", "data-a")],
    );
    s.apply(Change::StorageClass(Box::new(Event::Apply(
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "local-path"}, "provisioner": "skiff.io/local-path",
            "volumeBindingMode": "WaitForFirstConsumer",
        }))
        .expect("valid class"),
    ))));
    let actions = s.pass(&Config::default());
    assert_eq!(names(&actions), ["unschedulable ns/a first=true"]);
    let Action::Unschedulable { message, .. } = &actions[0] else {
        unreachable!()
    };
    assert!(
        message.contains("persistentvolumeclaim \"data-a\" not found"),
        "{message}"
    );

    // The claim appears, unbound, of a WaitForFirstConsumer class.
    s.apply(Change::Claim(Box::new(Event::Apply(claim("data-a", None)))));
    let actions = s.pass(&Config::default());
    let [Action::Bind { claims, .. }] = actions.as_slice() else {
        panic!("expected one binding, got {:?}", names(&actions))
    };
    assert_eq!(claims, &["ns/data-a"]);

    // A pod whose claim is bound to a volume pinned to n2 goes to n2.
    let pv: PersistentVolume = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "pv-b"},
        "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n2"]}]}]}}},
    }))
    .expect("valid volume");
    let mut n2 = node("n2", "4");
    n2.metadata.labels = Some([("kubernetes.io/hostname".to_string(), "n2".to_string())].into());
    s.apply_node(Event::Apply(n2));
    s.apply(Change::Volume(Box::new(Event::Apply(pv))));
    s.apply(Change::Claim(Box::new(Event::Apply(claim(
        "data-b",
        Some("pv-b"),
    )))));
    s.apply_pod(Event::Apply(with_claim("b", "data-b")));
    assert_eq!(names(&s.pass(&Config::default())), ["bind ns/b n2"]);
}
