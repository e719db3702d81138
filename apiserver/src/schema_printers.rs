//! Row printers for the kinds with their own columns, following
//! kubernetes/pkg/printers/internalversion/printers.go (`printPod`,
//! `printNode`, `printEvent`, …). The server always prints the wide
//! (priority 1) cells too; kubectl hides them unless `-o wide`.

use super::duration::{parse_time, since};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

static NULL: Value = Value::Null;

/// `v[a][b]…`, or null.
pub fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter()
        .fold(v, |cur, key| cur.get(key).unwrap_or(&NULL))
}

/// `v[a][b]…` as a string, or `""`.
pub fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path).as_str().unwrap_or("")
}

pub(super) fn items<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path).as_array().map_or(&[], Vec::as_slice)
}

pub(super) fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s.to_string()
    }
}

/// The restart policy of an init container that keeps running (a sidecar).
fn is_restartable_init(init: Option<&Value>) -> bool {
    init.is_some_and(|c| text(c, &["restartPolicy"]) == "Always")
}

fn condition_true(pod: &Value, ty: &str) -> bool {
    items(pod, &["status", "conditions"])
        .iter()
        .any(|c| text(c, &["type"]) == ty && text(c, &["status"]) == "True")
}

/// The later of `latest` and the container's last termination time.
fn later_restart(latest: Option<DateTime<Utc>>, status: &Value) -> Option<DateTime<Utc>> {
    let finished = parse_time(at(status, &["lastState", "terminated", "finishedAt"]));
    match (latest, finished) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The STATUS reason for a terminated container without a reason.
fn exit_reason(terminated: &Value, prefix: &str) -> String {
    let signal = at(terminated, &["signal"]).as_i64().unwrap_or(0);
    if signal != 0 {
        format!("{prefix}Signal:{signal}")
    } else {
        format!(
            "{prefix}ExitCode:{}",
            at(terminated, &["exitCode"]).as_i64().unwrap_or(0)
        )
    }
}

/// A pod's cells and row conditions: NAME READY STATUS RESTARTS AGE | IP NODE
/// NOMINATED NODE READINESS GATES.
pub fn pod_row(pod: &Value, now: DateTime<Utc>) -> (Vec<Value>, Option<Value>) {
    let containers = items(pod, &["spec", "containers"]);
    let init_specs = items(pod, &["spec", "initContainers"]);
    let init_by_name = |name: &str| init_specs.iter().find(|c| text(c, &["name"]) == name);
    let total = containers.len()
        + init_specs
            .iter()
            .filter(|c| is_restartable_init(Some(c)))
            .count();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut last_sidecar_restart: Option<DateTime<Utc>> = None;

    let phase = text(pod, &["status", "phase"]);
    let mut reason = phase.to_string();
    let status_reason = text(pod, &["status", "reason"]);
    if !status_reason.is_empty() {
        reason = status_reason.to_string();
    }
    // A pod held back by scheduling gates shows SchedulingGated.
    if items(pod, &["status", "conditions"])
        .iter()
        .any(|c| text(c, &["type"]) == "PodScheduled" && text(c, &["reason"]) == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }
    let conditions = match phase {
        "Succeeded" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]),
        ),
        "Failed" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]),
        ),
        _ => None,
    };

    let mut initializing = false;
    let init_statuses = items(pod, &["status", "initContainerStatuses"]);
    for (i, c) in init_statuses.iter().enumerate() {
        let count = at(c, &["restartCount"]).as_i64().unwrap_or(0);
        restarts += count;
        last_restart = later_restart(last_restart, c);
        let restartable = is_restartable_init(init_by_name(text(c, &["name"])));
        if restartable {
            sidecar_restarts += count;
            last_sidecar_restart = later_restart(last_sidecar_restart, c);
        }
        let terminated = at(c, &["state", "terminated"]);
        let waiting_reason = text(c, &["state", "waiting", "reason"]);
        if terminated.is_object() && at(terminated, &["exitCode"]).as_i64().unwrap_or(0) == 0 {
            continue;
        } else if restartable && at(c, &["started"]).as_bool() == Some(true) {
            if at(c, &["ready"]).as_bool() == Some(true) {
                ready += 1;
            }
            continue;
        } else if terminated.is_object() {
            let r = text(terminated, &["reason"]);
            reason = if r.is_empty() {
                exit_reason(terminated, "Init:")
            } else {
                format!("Init:{r}")
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true(pod, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for c in items(pod, &["status", "containerStatuses"]).iter().rev() {
            restarts += at(c, &["restartCount"]).as_i64().unwrap_or(0);
            last_restart = later_restart(last_restart, c);
            let waiting = text(c, &["state", "waiting", "reason"]);
            let terminated = at(c, &["state", "terminated"]);
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if terminated.is_object() {
                let r = text(terminated, &["reason"]);
                reason = if r.is_empty() {
                    exit_reason(terminated, "")
                } else {
                    r.to_string()
                };
            } else if at(c, &["ready"]).as_bool() == Some(true)
                && at(c, &["state", "running"]).is_object()
            {
                has_running = true;
                ready += 1;
            }
        }
        // A container still running turns "Completed" back into Running/NotReady.
        if reason == "Completed" && has_running {
            reason = if condition_true(pod, "Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .to_string();
        }
    }

    let deleting = !at(pod, &["metadata", "deletionTimestamp"]).is_null();
    if deleting && status_reason == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }
    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!(
            "{restarts} ({} ago)",
            since(&Value::from(t.to_rfc3339()), now)
        ),
        _ => restarts.to_string(),
    };

    let pod_ip = items(pod, &["status", "podIPs"])
        .first()
        .map_or("", |p| text(p, &["ip"]));
    let pod_ip = if pod_ip.is_empty() {
        text(pod, &["status", "podIP"])
    } else {
        pod_ip
    };
    let gates = items(pod, &["spec", "readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let met = gates
            .iter()
            .filter(|g| condition_true(pod, text(g, &["conditionType"])))
            .count();
        format!("{met}/{}", gates.len())
    };
    let cells = vec![
        json!(text(pod, &["metadata", "name"])),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        json!(since(at(pod, &["metadata", "creationTimestamp"]), now)),
        json!(or_none(pod_ip)),
        json!(or_none(text(pod, &["spec", "nodeName"]))),
        json!(or_none(text(pod, &["status", "nominatedNodeName"]))),
        json!(readiness_gates),
    ];
    (cells, conditions)
}

/// `findNodeRoles`: `node-role.kubernetes.io/<role>` label keys and the
/// `kubernetes.io/role` label value, sorted and de-duplicated.
fn node_roles(node: &Value) -> String {
    let mut roles: Vec<String> = Vec::new();
    if let Some(labels) = at(node, &["metadata", "labels"]).as_object() {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.push(role.to_string());
                }
            } else if k == "kubernetes.io/role" {
                if let Some(v) = v.as_str().filter(|v| !v.is_empty()) {
                    roles.push(v.to_string());
                }
            }
        }
    }
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    }
}

fn node_address(node: &Value, ty: &str) -> String {
    items(node, &["status", "addresses"])
        .iter()
        .find(|a| text(a, &["type"]) == ty)
        .map_or_else(
            || "<none>".to_string(),
            |a| text(a, &["address"]).to_string(),
        )
}

fn or_unknown(s: &str) -> String {
    if s.is_empty() {
        "<unknown>".to_string()
    } else {
        s.to_string()
    }
}

/// A node's cells: NAME STATUS ROLES AGE VERSION | INTERNAL-IP EXTERNAL-IP
/// OS-IMAGE KERNEL-VERSION CONTAINER-RUNTIME.
pub fn node_row(node: &Value, now: DateTime<Utc>) -> Vec<Value> {
    // Only the Ready condition is shown (NodeAllConditions); Unknown or False is NotReady.
    let mut status: Vec<&str> = Vec::new();
    if let Some(c) = items(node, &["status", "conditions"])
        .iter()
        .find(|c| text(c, &["type"]) == "Ready")
    {
        status.push(if text(c, &["status"]) == "True" {
            "Ready"
        } else {
            "NotReady"
        });
    }
    if status.is_empty() {
        status.push("Unknown");
    }
    if at(node, &["spec", "unschedulable"]).as_bool() == Some(true) {
        status.push("SchedulingDisabled");
    }
    let info = |k: &str| or_unknown(text(node, &["status", "nodeInfo", k]));
    vec![
        json!(text(node, &["metadata", "name"])),
        json!(status.join(",")),
        json!(node_roles(node)),
        json!(since(at(node, &["metadata", "creationTimestamp"]), now)),
        json!(text(node, &["status", "nodeInfo", "kubeletVersion"])),
        json!(node_address(node, "InternalIP")),
        json!(node_address(node, "ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() {
        b
    } else {
        a
    }
}

/// An event's cells: LAST SEEN TYPE REASON OBJECT | SUBOBJECT SOURCE | MESSAGE
/// | FIRST SEEN COUNT NAME (in column order, wide cells included).
pub fn event_row(ev: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let first_ts = at(ev, &["firstTimestamp"]);
    let first_seen = if parse_time(first_ts).is_some() {
        since(first_ts, now)
    } else {
        since(at(ev, &["eventTime"]), now)
    };
    let last_ts = at(ev, &["lastTimestamp"]);
    let mut last_seen = if parse_time(last_ts).is_some() {
        since(last_ts, now)
    } else {
        first_seen.clone()
    };
    let mut count = at(ev, &["count"]).as_i64().unwrap_or(0);
    let series = at(ev, &["series"]);
    if series.is_object() {
        last_seen = since(at(series, &["lastObservedTime"]), now);
        count = at(series, &["count"]).as_i64().unwrap_or(0);
    } else if count == 0 {
        // Singleton events of the events.k8s.io API leave count unset.
        count = 1;
    }
    let kind = text(ev, &["involvedObject", "kind"]).to_lowercase();
    let name = text(ev, &["involvedObject", "name"]);
    let target = if name.is_empty() {
        kind
    } else {
        format!("{kind}/{name}")
    };
    let component = first_non_empty(
        text(ev, &["source", "component"]),
        text(ev, &["reportingComponent"]),
    );
    let host = first_non_empty(
        text(ev, &["source", "host"]),
        text(ev, &["reportingInstance"]),
    );
    let source = match (component.is_empty(), host.is_empty()) {
        (true, _) => "<unknown>".to_string(),
        (false, true) => component.to_string(),
        (false, false) => format!("{component}, {host}"),
    };
    vec![
        json!(last_seen),
        json!(text(ev, &["type"])),
        json!(text(ev, &["reason"])),
        json!(target),
        json!(text(ev, &["involvedObject", "fieldPath"])),
        json!(source),
        json!(text(ev, &["message"]).trim()),
        json!(first_seen),
        json!(count),
        json!(text(ev, &["metadata", "name"])),
    ]
}

/// `metav1.LabelSelectorAsSelector(...).String()`: requirements sorted by
/// key, `k=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`.
pub(super) fn selector_string(selector: &Value) -> String {
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(labels) = at(selector, &["matchLabels"]).as_object() {
        for (k, v) in labels {
            reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))));
        }
    }
    for e in items(selector, &["matchExpressions"]) {
        let key = text(e, &["key"]);
        let mut values: Vec<&str> = items(e, &["values"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        let req = match text(e, &["operator"]) {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => continue,
        };
        reqs.push((key.to_string(), req));
    }
    reqs.sort();
    reqs.into_iter()
        .map(|(_, r)| r)
        .collect::<Vec<_>>()
        .join(",")
}

/// `layoutContainerCells`: the template's container names and images.
pub(super) fn containers_and_images(obj: &Value) -> (String, String) {
    let containers = items(obj, &["spec", "template", "spec", "containers"]);
    let names: Vec<&str> = containers.iter().map(|c| text(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

pub(super) fn int(v: &Value, path: &[&str]) -> i64 {
    at(v, path).as_i64().unwrap_or(0)
}

/// A Deployment's cells: NAME READY UP-TO-DATE AVAILABLE AGE | CONTAINERS
/// IMAGES SELECTOR.
pub fn deployment_row(d: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = containers_and_images(d);
    vec![
        json!(text(d, &["metadata", "name"])),
        json!(format!(
            "{}/{}",
            int(d, &["status", "readyReplicas"]),
            int(d, &["spec", "replicas"])
        )),
        json!(int(d, &["status", "updatedReplicas"])),
        json!(int(d, &["status", "availableReplicas"])),
        json!(since(at(d, &["metadata", "creationTimestamp"]), now)),
        json!(containers),
        json!(images),
        json!(selector_string(at(d, &["spec", "selector"]))),
    ]
}

/// A ReplicaSet's cells: NAME DESIRED CURRENT READY AGE | CONTAINERS IMAGES
/// SELECTOR.
pub fn replica_set_row(rs: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = containers_and_images(rs);
    vec![
        json!(text(rs, &["metadata", "name"])),
        json!(int(rs, &["spec", "replicas"])),
        json!(int(rs, &["status", "replicas"])),
        json!(int(rs, &["status", "readyReplicas"])),
        json!(since(at(rs, &["metadata", "creationTimestamp"]), now)),
        json!(containers),
        json!(images),
        json!(selector_string(at(rs, &["spec", "selector"]))),
    ]
}
