//! Columns and rows of the workload kinds beyond Deployment and ReplicaSet:
//! StatefulSet, DaemonSet, ControllerRevision, Job, CronJob,
//! HorizontalPodAutoscaler and PodDisruptionBudget, following
//! kubernetes/pkg/printers/internalversion/printers.go (`printStatefulSet`,
//! `printDaemonSet`, `printJob`, `printCronJob`,
//! `printHorizontalPodAutoscaler`, `printPodDisruptionBudget`,
//! `printControllerRevision`) as of Kubernetes 1.32.

use super::duration::{human_duration, parse_time, since};
use super::printers::{at, int, items, selector_string, text};
use super::{Column, AGE, CONTAINERS, IMAGES, NAME};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

const SELECTOR: Column = ("Selector", "string", "", 1, "Label selector for pods.");

/// The columns of a kind printed here, `None` for other kinds.
pub fn columns(group: &str, kind: &str) -> Option<Vec<Column>> {
    let cols = match (group, kind) {
        ("apps", "StatefulSet") => vec![
            NAME,
            ("Ready", "string", "", 0, "Number of the pod with ready state"),
            AGE,
            CONTAINERS,
            IMAGES,
        ],
        ("apps", "DaemonSet") => vec![
            NAME,
            ("Desired", "integer", "", 0, "The total number of nodes that should be running the daemon pod."),
            ("Current", "integer", "", 0, "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
            ("Ready", "integer", "", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
            ("Up-to-date", "integer", "", 0, "The total number of nodes that are running updated daemon pod"),
            ("Available", "integer", "", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available."),
            ("Node Selector", "string", "", 0, "NodeSelector is a selector which must be true for the pod to fit on a node."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "ControllerRevision") => vec![
            NAME,
            ("Controller", "string", "", 0, "Controller of the object"),
            ("Revision", "integer", "", 0, "Revision indicates the revision of the state represented by Data."),
            AGE,
        ],
        ("batch", "Job") => vec![
            NAME,
            ("Status", "string", "", 0, "Status of the job."),
            ("Completions", "string", "", 0, "The completion status of the job."),
            ("Duration", "string", "", 0, "Time required to complete the job."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("batch", "CronJob") => vec![
            NAME,
            ("Schedule", "string", "", 0, "The schedule in Cron format."),
            ("Timezone", "string", "", 0, "The time zone name for the given schedule."),
            ("Suspend", "boolean", "", 0, "This flag tells the controller to suspend subsequent executions."),
            ("Active", "integer", "", 0, "A list of pointers to currently running jobs."),
            ("Last Schedule", "string", "", 0, "Information when was the last time the job was successfully scheduled."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("autoscaling", "HorizontalPodAutoscaler") => vec![
            NAME,
            ("Reference", "string", "", 0, "Reference to the resource whose scale the autoscaler controls."),
            ("Targets", "string", "", 0, "Current and target values of the metrics the autoscaler uses."),
            ("MinPods", "string", "", 0, "Lower limit for the number of pods that can be set by the autoscaler, default 1."),
            ("MaxPods", "integer", "", 0, "Upper limit for the number of pods that can be set by the autoscaler."),
            ("Replicas", "integer", "", 0, "Current number of replicas of pods managed by this autoscaler."),
            AGE,
        ],
        ("policy", "PodDisruptionBudget") => vec![
            NAME,
            ("Min Available", "string", "", 0, "The minimum number of pods that must be available simultaneously."),
            ("Max Unavailable", "string", "", 0, "The maximum number of pods that may be unavailable simultaneously."),
            ("Allowed Disruptions", "integer", "", 0, "Calculated number of pod disruptions that are currently allowed."),
            AGE,
        ],
        _ => return None,
    };
    Some(cols)
}

/// The cells of one object of a kind printed here, `None` for other kinds.
pub fn row(group: &str, kind: &str, obj: &Value, now: DateTime<Utc>) -> Option<Vec<Value>> {
    let name = json!(text(obj, &["metadata", "name"]));
    let age = json!(since(at(obj, &["metadata", "creationTimestamp"]), now));
    let cells = match (group, kind) {
        ("apps", "StatefulSet") => {
            let (names, images) = container_cells(at(obj, &["spec", "template"]));
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    int(obj, &["status", "readyReplicas"]),
                    int(obj, &["spec", "replicas"])
                )),
                age,
                json!(names),
                json!(images),
            ]
        }
        ("apps", "DaemonSet") => {
            let (names, images) = container_cells(at(obj, &["spec", "template"]));
            let status = |f: &str| json!(int(obj, &["status", f]));
            vec![
                name,
                status("desiredNumberScheduled"),
                status("currentNumberScheduled"),
                status("numberReady"),
                status("updatedNumberScheduled"),
                status("numberAvailable"),
                json!(format_labels(at(
                    obj,
                    &["spec", "template", "spec", "nodeSelector"]
                ))),
                age,
                json!(names),
                json!(images),
                json!(selector_string(at(obj, &["spec", "selector"]))),
            ]
        }
        ("apps", "ControllerRevision") => vec![
            name,
            json!(controller_name(obj)),
            json!(int(obj, &["revision"])),
            age,
        ],
        ("batch", "Job") => {
            let (names, images) = container_cells(at(obj, &["spec", "template"]));
            vec![
                name,
                json!(job_status(obj)),
                json!(job_completions(obj)),
                json!(job_duration(obj, now)),
                age,
                json!(names),
                json!(images),
                json!(selector_string(at(obj, &["spec", "selector"]))),
            ]
        }
        ("batch", "CronJob") => {
            let job = at(obj, &["spec", "jobTemplate", "spec"]);
            let (names, images) = container_cells(at(job, &["template"]));
            let last = at(obj, &["status", "lastScheduleTime"]);
            let last = if parse_time(last).is_some() {
                since(last, now)
            } else {
                "<none>".to_string()
            };
            let tz = match text(obj, &["spec", "timeZone"]) {
                "" if at(obj, &["spec", "timeZone"]).is_null() => "<none>",
                tz => tz,
            };
            vec![
                name,
                json!(text(obj, &["spec", "schedule"])),
                json!(tz),
                json!(bool_ptr(at(obj, &["spec", "suspend"]))),
                json!(items(obj, &["status", "active"]).len()),
                json!(last),
                age,
                json!(names),
                json!(images),
                json!(selector_string(at(job, &["selector"]))),
            ]
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            let target = at(obj, &["spec", "scaleTargetRef"]);
            let min = match at(obj, &["spec", "minReplicas"]).as_i64() {
                Some(n) => n.to_string(),
                None => "<unset>".to_string(),
            };
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    text(target, &["kind"]),
                    text(target, &["name"])
                )),
                json!(hpa_metrics(
                    items(obj, &["spec", "metrics"]),
                    items(obj, &["status", "currentMetrics"])
                )),
                json!(min),
                json!(int(obj, &["spec", "maxReplicas"])),
                json!(int(obj, &["status", "currentReplicas"])),
                age,
            ]
        }
        ("policy", "PodDisruptionBudget") => vec![
            name,
            json!(int_or_string(at(obj, &["spec", "minAvailable"]))),
            json!(int_or_string(at(obj, &["spec", "maxUnavailable"]))),
            json!(int(obj, &["status", "disruptionsAllowed"])),
            age,
        ],
        _ => return None,
    };
    Some(cells)
}

/// `layoutContainerCells` of a pod template.
fn container_cells(template: &Value) -> (String, String) {
    let containers = items(template, &["spec", "containers"]);
    let names: Vec<&str> = containers.iter().map(|c| text(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

/// `labels.FormatLabels`: `k=v` sorted by key, `<none>` when empty.
pub(super) fn format_labels(map: &Value) -> String {
    let mut pairs: Vec<String> = at(map, &[])
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    pairs.sort();
    if pairs.is_empty() {
        "<none>".to_string()
    } else {
        pairs.join(",")
    }
}

/// `printBoolPtr`: `<unset>`, `True` or `False`.
fn bool_ptr(v: &Value) -> &'static str {
    match v.as_bool() {
        None => "<unset>",
        Some(true) => "True",
        Some(false) => "False",
    }
}

/// An IntOrString as Go prints it, `N/A` when unset.
fn int_or_string(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => "N/A".to_string(),
    }
}

/// The controller owner as `kind.group/name` (`formatResourceName` with
/// the owner's GroupKind), `<none>` without one.
fn controller_name(obj: &Value) -> String {
    let owner = items(obj, &["metadata", "ownerReferences"])
        .iter()
        .find(|o| at(o, &["controller"]).as_bool() == Some(true));
    let Some(owner) = owner else {
        return "<none>".to_string();
    };
    let api_version = text(owner, &["apiVersion"]);
    let group = api_version
        .rsplit_once('/')
        .map_or("", |(g, _)| g)
        .to_string();
    let kind = text(owner, &["kind"]);
    let gk = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    format!("{}/{}", gk.to_lowercase(), text(owner, &["name"]))
}

fn has_condition(obj: &Value, ty: &str) -> bool {
    items(obj, &["status", "conditions"])
        .iter()
        .any(|c| text(c, &["type"]) == ty && text(c, &["status"]) == "True")
}

/// The Job STATUS cell, in printJob's order of precedence.
fn job_status(job: &Value) -> &'static str {
    if has_condition(job, "Complete") {
        "Complete"
    } else if has_condition(job, "Failed") {
        "Failed"
    } else if !at(job, &["metadata", "deletionTimestamp"]).is_null() {
        "Terminating"
    } else if has_condition(job, "Suspended") {
        "Suspended"
    } else if has_condition(job, "FailureTarget") {
        "FailureTarget"
    } else if has_condition(job, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
}

/// The Job COMPLETIONS cell: `succeeded/completions`, or for a work queue
/// `succeeded/1 of parallelism`.
fn job_completions(job: &Value) -> String {
    let succeeded = int(job, &["status", "succeeded"]);
    let completions = at(job, &["spec", "completions"]).as_i64();
    let parallelism = at(job, &["spec", "parallelism"]).as_i64();
    match (completions, parallelism) {
        (Some(c), _) => format!("{succeeded}/{c}"),
        (None, Some(p)) if p > 1 => format!("{succeeded}/1 of {p}"),
        _ => format!("{succeeded}/1"),
    }
}

/// The Job DURATION cell: start to completion, or to now while running.
fn job_duration(job: &Value, now: DateTime<Utc>) -> String {
    let Some(start) = parse_time(at(job, &["status", "startTime"])) else {
        return String::new();
    };
    let end = parse_time(at(job, &["status", "completionTime"])).unwrap_or(now);
    human_duration((end - start).num_seconds())
}

/// A quantity as stored (Kubernetes prints the canonical form; Skiff
/// prints what was written, usually the same).
fn quantity(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `formatHPAMetrics`: `current/target` per metric, at most two, then
/// `+ N more...`; `<none>` without metrics.
pub(super) fn hpa_metrics(specs: &[Value], statuses: &[Value]) -> String {
    const MAX: usize = 2;
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let unknown = || "<unknown>".to_string();
    let mut list: Vec<String> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let status = statuses.get(i).unwrap_or(&Value::Null);
        let ty = text(spec, &["type"]);
        let entry = match ty {
            "External" | "Object" => {
                let key = if ty == "External" {
                    "external"
                } else {
                    "object"
                };
                let target = at(spec, &[key, "target"]);
                let current = at(status, &[key, "current"]);
                match quantity(at(target, &["averageValue"])) {
                    Some(avg) => format!(
                        "{}/{avg} (avg)",
                        quantity(at(current, &["averageValue"])).unwrap_or_else(unknown)
                    ),
                    None => format!(
                        "{}/{}",
                        quantity(at(current, &["value"])).unwrap_or_else(unknown),
                        quantity(at(target, &["value"])).unwrap_or_default()
                    ),
                }
            }
            "Pods" => format!(
                "{}/{}",
                quantity(at(status, &["pods", "current", "averageValue"])).unwrap_or_else(unknown),
                quantity(at(spec, &["pods", "target", "averageValue"])).unwrap_or_default()
            ),
            "Resource" | "ContainerResource" => {
                let key = if ty == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let resource = text(spec, &[key, "name"]);
                let target = at(spec, &[key, "target"]);
                let current = at(status, &[key, "current"]);
                match quantity(at(target, &["averageValue"])) {
                    Some(avg) => format!(
                        "{resource}: {}/{avg}",
                        quantity(at(current, &["averageValue"])).unwrap_or_else(unknown)
                    ),
                    None => {
                        let current = at(current, &["averageUtilization"])
                            .as_i64()
                            .map_or_else(unknown, |u| format!("{u}%"));
                        let target = at(target, &["averageUtilization"])
                            .as_i64()
                            .map_or_else(|| "<auto>".to_string(), |u| format!("{u}%"));
                        format!("{resource}: {current}/{target}")
                    }
                }
            }
            _ => "<unknown type>".to_string(),
        };
        list.push(entry);
    }
    let count = list.len();
    if count > MAX {
        list.truncate(MAX);
        return format!("{} + {} more...", list.join(", "), count - MAX);
    }
    list.join(", ")
}
