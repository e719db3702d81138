//! Table-driven tests of the Endpoints and EndpointSlice plans.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Endpoints, Pod, PodCondition, PodSpec, PodStatus, Service,
    ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::core::{backends, find_port};
use super::slices::{self, MANAGED_BY, MANAGED_BY_LABEL, SERVICE_NAME_LABEL};
use super::subsets::{self, Plan};
use crate::slim_pod::SlimPod;
use crate::test_fixtures::{labels, time, NOW_MS};

fn service(target: IntOrString, publish: bool) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("svc-uid".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(labels(&[("app", "web")])),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                protocol: Some("TCP".into()),
                target_port: Some(target),
                ..Default::default()
            }]),
            publish_not_ready_addresses: Some(publish),
            cluster_ip: Some("10.43.0.10".into()),
            ..Default::default()
        }),
        status: None,
    }
}

/// A pod: `ready`, `deleting`, its IP, its `http` port number.
fn pod(name: &str, ip: &str, ready: bool, deleting: bool, http_port: i32) -> SlimPod {
    SlimPod::from(Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            labels: Some(labels(&[("app", "web")])),
            deletion_timestamp: deleting.then(|| time(NOW_MS)),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("n1".into()),
            containers: vec![Container {
                name: "c".into(),
                ports: Some(vec![ContainerPort {
                    name: Some("http".into()),
                    container_port: http_port,
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: (!ip.is_empty()).then(|| ip.to_string()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    })
}

fn ips(addrs: &Option<Vec<k8s_openapi::api::core::v1::EndpointAddress>>) -> Vec<String> {
    addrs.iter().flatten().map(|a| a.ip.clone()).collect()
}

#[test]
fn readiness_terminating_and_publish() {
    struct Case {
        name: &'static str,
        publish: bool,
        pods: Vec<SlimPod>,
        ready: &'static [&'static str],
        not_ready: &'static [&'static str],
        /// (ip, ready, serving, terminating) in the slice.
        slice: &'static [(&'static str, bool, bool, bool)],
    }
    let cases = vec![
        Case {
            name: "ready and not ready",
            publish: false,
            pods: vec![
                pod("a", "10.0.0.2", true, false, 8080),
                pod("b", "10.0.0.3", false, false, 8080),
            ],
            ready: &["10.0.0.2"],
            not_ready: &["10.0.0.3"],
            slice: &[
                ("10.0.0.2", true, true, false),
                ("10.0.0.3", false, false, false),
            ],
        },
        Case {
            name: "no IP yet: left out",
            publish: false,
            pods: vec![pod("a", "", true, false, 8080)],
            ready: &[],
            not_ready: &[],
            slice: &[],
        },
        Case {
            name: "terminating: out of Endpoints, not ready in the slice",
            publish: false,
            pods: vec![
                pod("a", "10.0.0.2", true, true, 8080),
                pod("b", "10.0.0.3", true, false, 8080),
            ],
            ready: &["10.0.0.3"],
            not_ready: &[],
            slice: &[
                ("10.0.0.2", false, true, true),
                ("10.0.0.3", true, true, false),
            ],
        },
        Case {
            name: "publishNotReadyAddresses",
            publish: true,
            pods: vec![
                pod("a", "10.0.0.2", false, false, 8080),
                pod("b", "10.0.0.3", true, true, 8080),
            ],
            ready: &["10.0.0.2", "10.0.0.3"],
            not_ready: &[],
            slice: &[
                ("10.0.0.2", true, false, false),
                ("10.0.0.3", true, true, true),
            ],
        },
    ];
    for c in cases {
        let svc = service(IntOrString::String("http".into()), c.publish);
        let pods: Vec<&SlimPod> = c.pods.iter().collect();
        let subsets = subsets::subsets("default", backends(&svc, &pods));
        let got_ready: Vec<String> = subsets.iter().flat_map(|s| ips(&s.addresses)).collect();
        let got_not: Vec<String> = subsets
            .iter()
            .flat_map(|s| ips(&s.not_ready_addresses))
            .collect();
        assert_eq!(got_ready, c.ready, "{}", c.name);
        assert_eq!(got_not, c.not_ready, "{}", c.name);

        let plan = slices::plan(
            Some(&svc),
            backends(&svc, &pods),
            &[],
            &BTreeMap::new(),
            None,
        );
        assert_eq!(plan.create.len(), 1, "{}", c.name);
        let got: Vec<(String, bool, bool, bool)> = plan.create[0]
            .endpoints
            .iter()
            .flatten()
            .map(|e| {
                let k = e.conditions.clone().unwrap_or_default();
                (
                    e.addresses[0].clone(),
                    k.ready.unwrap(),
                    k.serving.unwrap(),
                    k.terminating.unwrap(),
                )
            })
            .collect();
        let want: Vec<(String, bool, bool, bool)> = c
            .slice
            .iter()
            .map(|(i, r, s, t)| (i.to_string(), *r, *s, *t))
            .collect();
        assert_eq!(got, want, "{}", c.name);
    }
}

#[test]
fn named_target_ports_resolve_per_pod() {
    let svc = service(IntOrString::String("http".into()), false);
    let a = pod("a", "10.0.0.2", true, false, 8080);
    let b = pod("b", "10.0.0.3", true, false, 9090);
    let subsets = subsets::subsets("default", backends(&svc, &[&a, &b]));
    assert_eq!(subsets.len(), 2);
    let ports: Vec<i32> = subsets
        .iter()
        .map(|s| s.ports.as_ref().unwrap()[0].port)
        .collect();
    assert_eq!(ports, vec![8080, 9090]);
    assert_eq!(
        find_port(&a, Some(&IntOrString::Int(7)), 80, "TCP"),
        Some(7)
    );
    assert_eq!(find_port(&a, None, 80, "TCP"), Some(80));
    assert_eq!(
        find_port(&a, Some(&IntOrString::String("nope".into())), 80, "TCP"),
        None
    );
    assert_eq!(
        find_port(&a, Some(&IntOrString::String("http".into())), 80, "UDP"),
        None
    );
    // Two port sets: two slices.
    let plan = slices::plan(
        Some(&svc),
        backends(&svc, &[&a, &b]),
        &[],
        &BTreeMap::new(),
        None,
    );
    assert_eq!(plan.create.len(), 2);
    assert_eq!(
        plan.create[0].metadata.generate_name.as_deref(),
        Some("web-")
    );
    let l = plan.create[0].metadata.labels.clone().unwrap();
    assert_eq!(l[SERVICE_NAME_LABEL], "web");
    assert_eq!(l[MANAGED_BY_LABEL], MANAGED_BY);
}

#[test]
fn hostname_only_for_the_subdomain_service_and_zone_from_node() {
    let svc = service(IntOrString::Int(8080), false);
    let mut a = pod("a", "10.0.0.2", true, false, 8080);
    let spec = a.spec.as_mut().unwrap();
    spec.hostname = Some("alpha".into());
    spec.subdomain = Some("web".into());
    let mut b = pod("b", "10.0.0.3", true, false, 8080);
    b.spec.as_mut().unwrap().hostname = Some("beta".into());
    let found = backends(&svc, &[&a, &b]);
    assert_eq!(found[0].hostname.as_deref(), Some("alpha"));
    assert_eq!(found[1].hostname, None);
    let zones = BTreeMap::from([("n1".to_string(), "z1".to_string())]);
    let plan = slices::plan(Some(&svc), found, &[], &zones, None);
    let e = &plan.create[0].endpoints.as_ref().unwrap()[0];
    assert_eq!(
        (e.zone.as_deref(), e.node_name.as_deref()),
        (Some("z1"), Some("n1"))
    );
    assert_eq!(e.target_ref.as_ref().unwrap().name.as_deref(), Some("a"));
}

#[test]
fn other_namespaces_labels_and_terminal_pods_are_not_selected() {
    let svc = service(IntOrString::Int(8080), false);
    let mut other_ns = pod("a", "10.0.0.2", true, false, 8080);
    other_ns.metadata.namespace = Some("prod".into());
    let mut other_label = pod("b", "10.0.0.3", true, false, 8080);
    other_label.metadata.labels = Some(labels(&[("app", "db")]));
    let mut done = pod("c", "10.0.0.4", false, false, 8080);
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    assert!(backends(&svc, &[&other_ns, &other_label, &done]).is_empty());
}

#[test]
fn endpoints_plan() {
    let svc = service(IntOrString::Int(8080), false);
    let a = pod("a", "10.0.0.2", true, false, 8080);
    let Plan::Create(ep) = subsets::plan(Some(&svc), backends(&svc, &[&a]), None) else {
        panic!("expected create")
    };
    assert_eq!(ep.metadata.name.as_deref(), Some("web"));
    // Unchanged: keep. Changed: update. Gone: delete. No selector: keep.
    assert_eq!(
        subsets::plan(Some(&svc), backends(&svc, &[&a]), Some(&ep)),
        Plan::Keep
    );
    assert!(matches!(
        subsets::plan(Some(&svc), vec![], Some(&ep)),
        Plan::Update(_)
    ));
    assert_eq!(subsets::plan(None, vec![], Some(&ep)), Plan::Delete);
    assert_eq!(subsets::plan(None, vec![], None), Plan::Keep);
    let mut manual = svc.clone();
    manual.spec.as_mut().unwrap().selector = None;
    assert_eq!(
        subsets::plan(Some(&manual), vec![], Some(&Endpoints::default())),
        Plan::Keep
    );
}

fn existing(name: &str, plan_slice: &EndpointSlice) -> EndpointSlice {
    let mut s = plan_slice.clone();
    s.metadata.name = Some(name.into());
    s.metadata.generate_name = None;
    s
}

#[test]
fn slice_plan_reuses_updates_and_deletes() {
    let svc = service(IntOrString::Int(8080), false);
    let a = pod("a", "10.0.0.2", true, false, 8080);
    let b = pod("b", "10.0.0.3", true, false, 8080);
    let first = slices::plan(
        Some(&svc),
        backends(&svc, &[&a]),
        &[],
        &BTreeMap::new(),
        None,
    );
    let s1 = existing("web-abcde", &first.create[0]);
    // Same contents: nothing to do.
    let again = slices::plan(
        Some(&svc),
        backends(&svc, &[&a]),
        &[&s1],
        &BTreeMap::new(),
        None,
    );
    assert!(again.is_empty(), "{again:?}");
    // Scale up: the slice is updated in place.
    let up = slices::plan(
        Some(&svc),
        backends(&svc, &[&a, &b]),
        &[&s1],
        &BTreeMap::new(),
        None,
    );
    assert_eq!(
        (up.create.len(), up.update.len(), up.delete.len()),
        (0, 1, 0)
    );
    assert_eq!(up.update[0].endpoints.as_ref().unwrap().len(), 2);
    // A duplicate left by a lagging cache is deleted.
    let s2 = existing("web-zzzzz", &first.create[0]);
    let dup = slices::plan(
        Some(&svc),
        backends(&svc, &[&a]),
        &[&s1, &s2],
        &BTreeMap::new(),
        None,
    );
    assert_eq!(dup.delete, vec!["web-zzzzz".to_string()]);
    // No pods: one empty placeholder slice remains.
    let empty = slices::plan(Some(&svc), vec![], &[&s1], &BTreeMap::new(), None);
    assert_eq!(empty.delete, vec!["web-abcde".to_string()]);
    assert_eq!(empty.create.len(), 1);
    assert!(empty.create[0].endpoints.as_ref().unwrap().is_empty());
    // Service gone: every managed slice goes.
    let gone = slices::plan(None, vec![], &[&s1, &s2], &BTreeMap::new(), None);
    assert_eq!(gone.delete.len(), 2);
}

#[test]
fn slices_hold_at_most_100_endpoints() {
    let svc = service(IntOrString::Int(8080), false);
    let pods: Vec<SlimPod> = (0..250)
        .map(|i| {
            pod(
                &format!("p{i}"),
                &format!("10.1.{}.{}", i / 200, i % 200 + 1),
                true,
                false,
                8080,
            )
        })
        .collect();
    let refs: Vec<&SlimPod> = pods.iter().collect();
    let plan = slices::plan(
        Some(&svc),
        backends(&svc, &refs),
        &[],
        &BTreeMap::new(),
        None,
    );
    let sizes: Vec<usize> = plan
        .create
        .iter()
        .map(|s| s.endpoints.as_ref().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![100, 100, 50]);
}
