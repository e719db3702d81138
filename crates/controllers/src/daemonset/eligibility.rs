//! Which nodes a DaemonSet's pod belongs on (`nodeShouldRunDaemonPod` in
//! `pkg/controller/daemon/daemon_controller.go`): the template's
//! `nodeSelector` and required node affinity must match the node, and its
//! tolerations — with the ones every daemon pod gets — must tolerate the
//! node's taints. An untolerated `NoSchedule` taint stops new pods but
//! keeps running ones; an untolerated `NoExecute` taint removes them.

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Taint, Toleration,
};

/// Whether a node should get a daemon pod, and keep one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Eligibility {
    /// A new pod may be created there.
    pub should_run: bool,
    /// An existing pod may stay.
    pub should_continue_running: bool,
}

fn toleration(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    }
}

/// The tolerations Kubernetes adds to every daemon pod
/// (`util.AddOrUpdateDaemonPodTolerations`), so daemons keep running on
/// nodes that are unhealthy, under pressure or cordoned.
pub fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let mut t = vec![
        toleration("node.kubernetes.io/not-ready", "NoExecute"),
        toleration("node.kubernetes.io/unreachable", "NoExecute"),
        toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        t.push(toleration(
            "node.kubernetes.io/network-unavailable",
            "NoSchedule",
        ));
    }
    t
}

/// `ToleratesTaint`: key, operator and effect rules of core/v1.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = t.effect.as_deref().filter(|e| !e.is_empty()) {
        if e != taint.effect {
            return false;
        }
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" => {
            !key.is_empty()
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(want)) = (
                value.and_then(number),
                values.first().and_then(|v| number(v)),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                have > want
            } else {
                have < want
            }
        }
        _ => false,
    }
}

/// Whether a node selector term matches a node (an empty term matches
/// nothing, as in Kubernetes).
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.as_ref();
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.and_then(|l| l.get(&r.key)).map(String::as_str)))
        && fields.iter().all(|r| {
            let v = node
                .metadata
                .name
                .as_deref()
                .filter(|_| r.key == "metadata.name");
            requirement_matches(r, v)
        })
}

/// Decides for one node and a DaemonSet's pod spec.
pub fn eligibility(spec: &PodSpec, node: &Node) -> Eligibility {
    let no = Eligibility {
        should_run: false,
        should_continue_running: false,
    };
    if node.metadata.deletion_timestamp.is_some() {
        return no;
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if let Some(sel) = &spec.node_selector {
        if !sel.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return no;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    if let Some(req) = required {
        if !req
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, node))
        {
            return no;
        }
    }
    let mut tolerations = spec.tolerations.clone().unwrap_or_default();
    tolerations.extend(default_tolerations(spec.host_network == Some(true)));
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let untolerated = |effect: &str| {
        taints
            .iter()
            .filter(|t| t.effect == effect)
            .any(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
    };
    let no_execute = untolerated("NoExecute");
    let no_schedule = untolerated("NoSchedule");
    Eligibility {
        should_run: !no_execute && !no_schedule,
        should_continue_running: !no_execute,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::labels;
    use k8s_openapi::api::core::v1::{Affinity, NodeAffinity, NodeSelector, NodeSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, l: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels(l)),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(
                    taints
                        .iter()
                        .map(|(k, e)| Taint {
                            key: k.to_string(),
                            effect: e.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn selectors_affinity_and_taints() {
        let plain = PodSpec::default();
        let ssd = PodSpec {
            node_selector: Some(labels(&[("disk", "ssd")])),
            ..Default::default()
        };
        let by_name = PodSpec {
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_fields: Some(vec![NodeSelectorRequirement {
                                key: "metadata.name".into(),
                                operator: "In".into(),
                                values: Some(vec!["n1".into()]),
                            }]),
                            ..Default::default()
                        }],
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let tolerates_gpu = PodSpec {
            tolerations: Some(vec![Toleration {
                key: Some("gpu".into()),
                operator: Some("Exists".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let yes = Eligibility {
            should_run: true,
            should_continue_running: true,
        };
        let no = Eligibility {
            should_run: false,
            should_continue_running: false,
        };
        let stay = Eligibility {
            should_run: false,
            should_continue_running: true,
        };
        let cases = [
            (&plain, node("n1", &[], &[]), yes),
            (&ssd, node("n1", &[("disk", "ssd")], &[]), yes),
            (&ssd, node("n1", &[("disk", "hdd")], &[]), no),
            (&by_name, node("n1", &[], &[]), yes),
            (&by_name, node("n2", &[], &[]), no),
            (&plain, node("n1", &[], &[("gpu", "NoSchedule")]), stay),
            (&plain, node("n1", &[], &[("gpu", "NoExecute")]), no),
            (
                &tolerates_gpu,
                node("n1", &[], &[("gpu", "NoExecute")]),
                yes,
            ),
            // The default daemon tolerations.
            (
                &plain,
                node(
                    "n1",
                    &[],
                    &[("node.kubernetes.io/unschedulable", "NoSchedule")],
                ),
                yes,
            ),
            (
                &plain,
                node("n1", &[], &[("node.kubernetes.io/not-ready", "NoExecute")]),
                yes,
            ),
            (
                &plain,
                node(
                    "n1",
                    &[],
                    &[("node.kubernetes.io/unreachable", "NoExecute")],
                ),
                yes,
            ),
            (
                &plain,
                node(
                    "n1",
                    &[],
                    &[("node.kubernetes.io/network-unavailable", "NoSchedule")],
                ),
                stay,
            ),
        ];
        for (i, (spec, n, want)) in cases.into_iter().enumerate() {
            assert_eq!(eligibility(spec, &n), want, "case {i}");
        }
    }
}
