//! Table-driven tests of node health and taint-based eviction.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

use super::eviction::{eviction_time, tolerates};
use super::health::*;
use crate::slim_pod::SlimPod;
use crate::test_fixtures::{time, NOW_MS};

const GRACE: i64 = 40_000;

fn node(ready: Option<&str>, taints: &[&str]) -> Node {
    Node {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("n1".into()),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: Some(
                taints
                    .iter()
                    .flat_map(|k| {
                        ["NoSchedule", "NoExecute"].map(|effect| Taint {
                            key: k.to_string(),
                            effect: effect.into(),
                            value: None,
                            time_added: Some(time(NOW_MS - 1000)),
                        })
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            conditions: ready.map(|s| {
                vec![NodeCondition {
                    type_: "Ready".into(),
                    status: s.into(),
                    last_heartbeat_time: Some(time(NOW_MS - 100_000)),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
    }
}

fn lease(renew_ms: i64) -> Lease {
    Lease {
        spec: Some(LeaseSpec {
            renew_time: Some(MicroTime(time(renew_ms).0)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn heartbeat_changes_reset_the_probe_time() {
    let n = node(Some("True"), &[]);
    let first = observe(None, &n, Some(&lease(NOW_MS - 500_000)), NOW_MS);
    assert_eq!(
        first.probe_ms, NOW_MS,
        "first sight gets a full grace period"
    );
    let same = observe(
        Some(&first),
        &n,
        Some(&lease(NOW_MS - 500_000)),
        NOW_MS + 30_000,
    );
    assert_eq!(same.probe_ms, NOW_MS);
    let renewed = observe(
        Some(&same),
        &n,
        Some(&lease(NOW_MS + 20_000)),
        NOW_MS + 30_000,
    );
    assert_eq!(renewed.probe_ms, NOW_MS + 30_000);
}

#[test]
fn conditions_and_taints_follow_health() {
    let fresh = |ms| Health {
        lease_renew_ms: None,
        ready_heartbeat_ms: None,
        probe_ms: ms,
    };
    struct Case {
        name: &'static str,
        node: Node,
        probe_ms: i64,
        ready_after: Option<&'static str>,
        taints_after: Option<Vec<&'static str>>,
        mark: bool,
    }
    let mut all_unknown = node(Some("Unknown"), &[TAINT_UNREACHABLE]);
    for type_ in &MONITORED_CONDITIONS[1..] {
        let c = NodeCondition {
            type_: type_.to_string(),
            status: "Unknown".into(),
            ..Default::default()
        };
        all_unknown
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()
            .push(c);
    }
    let cases = [
        Case {
            name: "healthy",
            node: node(Some("True"), &[]),
            probe_ms: NOW_MS - 1000,
            ready_after: None,
            taints_after: None,
            mark: false,
        },
        Case {
            name: "silent past grace",
            node: node(Some("True"), &[]),
            probe_ms: NOW_MS - GRACE - 1,
            ready_after: Some("Unknown"),
            taints_after: Some(vec![TAINT_UNREACHABLE]),
            mark: true,
        },
        Case {
            name: "already unknown and tainted",
            node: all_unknown,
            probe_ms: NOW_MS - GRACE * 3,
            ready_after: None,
            taints_after: None,
            mark: false,
        },
        Case {
            name: "agent says not ready",
            node: node(Some("False"), &[]),
            probe_ms: NOW_MS,
            ready_after: None,
            taints_after: Some(vec![TAINT_NOT_READY]),
            mark: false,
        },
        Case {
            name: "recovered: taint removed",
            node: node(Some("True"), &[TAINT_UNREACHABLE]),
            probe_ms: NOW_MS,
            ready_after: None,
            taints_after: Some(vec![]),
            mark: false,
        },
        Case {
            name: "never reported",
            node: node(None, &[]),
            probe_ms: NOW_MS - GRACE - 1,
            ready_after: Some("Unknown"),
            taints_after: Some(vec![TAINT_UNREACHABLE]),
            mark: false,
        },
    ];
    for c in cases {
        let u = decide(&c.node, &fresh(c.probe_ms), NOW_MS, GRACE);
        let ready = u
            .conditions
            .as_ref()
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone());
        assert_eq!(ready.as_deref(), c.ready_after, "{}: ready", c.name);
        let taints = u.taints.as_ref().map(|ts| {
            for t in ts {
                let pair = ts.iter().any(|o| o.key == t.key && o.effect != t.effect);
                assert!(pair, "{}: NoSchedule and NoExecute together", c.name);
            }
            let mut keys: Vec<&str> = ts.iter().map(|t| t.key.as_str()).collect();
            keys.dedup();
            keys
        });
        assert_eq!(taints, c.taints_after, "{}: taints", c.name);
        assert_eq!(u.mark_pods_not_ready, c.mark, "{}: mark", c.name);
        if let Some(cs) = &u.conditions {
            assert!(
                cs.iter().all(|c| c.status == "Unknown"),
                "{}: all monitored conditions unknown",
                c.name
            );
        }
    }
}

fn pod(tolerations: Vec<Toleration>) -> SlimPod {
    SlimPod::from(Pod {
        spec: Some(PodSpec {
            tolerations: Some(tolerations),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some("NoExecute".into()),
        toleration_seconds: seconds,
        value: None,
    }
}

#[test]
fn eviction_times() {
    let unreachable = Taint {
        key: TAINT_UNREACHABLE.into(),
        effect: "NoExecute".into(),
        value: None,
        time_added: Some(time(NOW_MS)),
    };
    let custom = Taint {
        key: "dedicated".into(),
        effect: "NoExecute".into(),
        value: Some("db".into()),
        time_added: Some(time(NOW_MS)),
    };
    let no_schedule = Taint {
        key: "x".into(),
        effect: "NoSchedule".into(),
        value: None,
        time_added: None,
    };
    let cases: Vec<(&str, SlimPod, Vec<Taint>, Option<i64>)> = vec![
        (
            "default 300 s",
            pod(vec![]),
            vec![unreachable.clone()],
            Some(NOW_MS + 300_000),
        ),
        (
            "shorter on request",
            pod(vec![toleration(TAINT_UNREACHABLE, Some(5))]),
            vec![unreachable.clone()],
            Some(NOW_MS + 5_000),
        ),
        (
            "tolerated forever",
            pod(vec![toleration(TAINT_UNREACHABLE, None)]),
            vec![unreachable.clone()],
            None,
        ),
        (
            "untolerated taint: now",
            pod(vec![]),
            vec![unreachable.clone(), custom.clone()],
            Some(NOW_MS + 1),
        ),
        (
            "NoSchedule is not for eviction",
            pod(vec![]),
            vec![no_schedule],
            None,
        ),
        ("no taints", pod(vec![]), vec![], None),
    ];
    for (name, p, taints, want) in cases {
        assert_eq!(eviction_time(&p, &taints, 300, NOW_MS + 1), want, "{name}");
    }
}

#[test]
fn toleration_matching() {
    let taint = Taint {
        key: "k".into(),
        effect: "NoExecute".into(),
        value: Some("v".into()),
        time_added: None,
    };
    let t = |key: Option<&str>, op: &str, value: Option<&str>, effect: Option<&str>| Toleration {
        key: key.map(str::to_string),
        operator: Some(op.into()),
        value: value.map(str::to_string),
        effect: effect.map(str::to_string),
        toleration_seconds: None,
    };
    assert!(tolerates(&t(Some("k"), "Equal", Some("v"), None), &taint));
    assert!(!tolerates(&t(Some("k"), "Equal", Some("w"), None), &taint));
    assert!(tolerates(&t(None, "Exists", None, None), &taint));
    assert!(!tolerates(
        &t(Some("k"), "Exists", None, Some("NoSchedule")),
        &taint
    ));
}
