//! Validation of the workload and service kinds, after defaulting
//! (kubernetes/pkg/apis/apps/validation, batch/validation,
//! core/validation `ValidateService`, autoscaling and policy validation),
//! for the rules controllers and users depend on:
//!
//! - Deployment, ReplicaSet, StatefulSet, DaemonSet: a non-empty
//!   `spec.selector` that matches `spec.template.metadata.labels`
//!   (`` `selector` does not match template `labels` ``), `replicas ≥ 0`,
//!   template `restartPolicy: Always`, and the pod template's own rules;
//! - Job: the generated selector (or, with `manualSelector`, a matching
//!   one), non-negative counts, `restartPolicy` OnFailure or Never;
//!   CronJob: a schedule and the same job-template rules;
//! - Service: type, session affinity and ports (numbers, names,
//!   protocols, target ports);
//! - HorizontalPodAutoscaler (v2): a target, `1 ≤ minReplicas ≤
//!   maxReplicas`; PodDisruptionBudget: not both `minAvailable` and
//!   `maxUnavailable`.
//!
//! - label selectors' `matchExpressions` (operators and values), and the
//!   int-or-percent counts of rolling updates and budgets (`maxSurge`,
//!   `maxUnavailable`, `minAvailable`).
//!
//! Caveats: Kubernetes checks much more (update immutability of selectors,
//! volume claim templates, the cron syntax).

use super::names::{is_dns1123_label, is_valid_port_name, quote};
use super::pod::{not_supported, validate_pod_spec};
use super::{FieldError, FieldErrorKind};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

static NULL: Value = Value::Null;

fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter()
        .fold(v, |cur, key| cur.get(key).unwrap_or(&NULL))
}

/// Go's `%#v` of a `map[string]string`, as Kubernetes prints template
/// labels in the selector error: `map[string]string{"app":"web"}`.
pub fn go_string_map(labels: &Value) -> String {
    match labels.as_object() {
        None => "map[string]string(nil)".to_string(),
        Some(m) => {
            let mut pairs: Vec<(&String, &Value)> = m.iter().collect();
            pairs.sort_by(|a, b| a.0.cmp(b.0));
            let body: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}:{}", quote(k), quote(v.as_str().unwrap_or(""))))
                .collect();
            format!("map[string]string{{{}}}", body.join(", "))
        }
    }
}

/// Whether a `metav1.LabelSelector` (JSON) selects `labels`
/// (`LabelSelectorAsSelector(...).Matches`). An empty selector matches
/// everything; an unknown operator matches nothing.
pub fn selector_matches(selector: &Value, labels: &Map<String, Value>) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let match_labels = at(selector, &["matchLabels"]).as_object();
    for (k, v) in match_labels.into_iter().flatten() {
        if label(k) != v.as_str() {
            return false;
        }
    }
    let exprs = at(selector, &["matchExpressions"]).as_array();
    for e in exprs.into_iter().flatten() {
        let key = at(e, &["key"]).as_str().unwrap_or("");
        let values: Vec<&str> = at(e, &["values"])
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let ok = match at(e, &["operator"]).as_str().unwrap_or("") {
            "In" => label(key).is_some_and(|v| values.contains(&v)),
            "NotIn" => label(key).is_none_or(|v| !values.contains(&v)),
            "Exists" => label(key).is_some(),
            "DoesNotExist" => label(key).is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

fn selector_is_empty(selector: &Value) -> bool {
    let n = |k: &str| match at(selector, &[k]) {
        Value::Object(m) => m.len(),
        Value::Array(a) => a.len(),
        _ => 0,
    };
    n("matchLabels") + n("matchExpressions") == 0
}

fn non_negative(errs: &mut Vec<FieldError>, obj: &Value, path: &[&str]) {
    if let Some(n) = at(obj, path).as_i64().filter(|n| *n < 0) {
        errs.push(FieldError::invalid(
            path.join("."),
            n.to_string(),
            "must be greater than or equal to 0",
        ));
    }
}

/// The pod template at `path` (e.g. `spec.template`): its pod spec's rules
/// with paths rebased, and the restart policies the owner allows.
fn validate_template(
    errs: &mut Vec<FieldError>,
    template: &Value,
    path: &str,
    restart_policies: &[&str],
) {
    if !template.is_object() {
        errs.push(FieldError::required(path));
        return;
    }
    let spec = at(template, &["spec"]);
    for mut e in validate_pod_spec(spec) {
        e.field = format!("{path}.{}", e.field);
        errs.push(e);
    }
    let policy = at(spec, &["restartPolicy"]).as_str().unwrap_or("");
    if spec.is_object() && !restart_policies.contains(&policy) {
        if restart_policies.len() == 1 {
            errs.push(not_supported(
                format!("{path}.spec.restartPolicy"),
                policy,
                restart_policies,
            ));
        } else {
            // Job's wording: `Required value: valid values: "OnFailure", "Never"`
            // for Always or an empty policy.
            let list: Vec<String> = restart_policies.iter().map(|p| quote(p)).collect();
            let mut e = FieldError::required(format!("{path}.spec.restartPolicy"));
            e.detail = format!("valid values: {}", list.join(", "));
            errs.push(e);
        }
    }
}

/// The selector and template of a controller (`ValidatePodTemplateSpecForReplicaSet`).
fn validate_selector_and_template(
    errs: &mut Vec<FieldError>,
    kind: &str,
    spec: &Value,
    restart_policies: &[&str],
) {
    let selector = at(spec, &["selector"]);
    let before = errs.len();
    if !selector.is_object() {
        errs.push(FieldError::required("spec.selector"));
    } else if selector_is_empty(selector) {
        errs.push(FieldError::invalid(
            "spec.selector",
            selector.to_string(),
            format!("empty selector is invalid for {}", kind.to_lowercase()),
        ));
    } else {
        validate_label_selector(errs, selector, "spec.selector");
    }
    let template = at(spec, &["template"]);
    // A selector that does not parse is not matched against the labels.
    if errs.len() == before && template.is_object() {
        let labels = at(template, &["metadata", "labels"]);
        let empty = Map::new();
        if !selector_matches(selector, labels.as_object().unwrap_or(&empty)) {
            errs.push(FieldError::invalid(
                "spec.template.metadata.labels",
                go_string_map(labels),
                "`selector` does not match template `labels`",
            ));
        }
    }
    validate_template(errs, template, "spec.template", restart_policies);
}

/// `ValidateLabelSelector`'s rules for `matchExpressions`: a known
/// operator, values for In/NotIn, none for Exists/DoesNotExist.
fn validate_label_selector(errs: &mut Vec<FieldError>, selector: &Value, path: &str) {
    let Some(exprs) = at(selector, &["matchExpressions"]).as_array() else {
        return;
    };
    for (i, expr) in exprs.iter().enumerate() {
        let here = format!("{path}.matchExpressions[{i}]");
        let values = at(expr, &["values"]).as_array().map_or(0, Vec::len);
        match at(expr, &["operator"]).as_str().unwrap_or("") {
            "In" | "NotIn" if values == 0 => {
                let mut e = FieldError::required(format!("{here}.values"));
                e.detail = "must be specified when `operator` is 'In' or 'NotIn'".into();
                errs.push(e);
            }
            "Exists" | "DoesNotExist" if values > 0 => errs.push(FieldError {
                field: format!("{here}.values"),
                kind: FieldErrorKind::Forbidden,
                value: None,
                detail: "may not be specified when `operator` is 'Exists' or 'DoesNotExist'".into(),
            }),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            op => errs.push(FieldError::invalid(
                format!("{here}.operator"),
                quote(op),
                "not a valid selector operator",
            )),
        }
    }
}

/// An int-or-string count such as `maxSurge`: a non-negative integer or
/// a percentage (`ValidatePositiveIntOrPercent`, plus
/// `IsNotMoreThan100Percent` when `at_most_100`). Returns whether it is
/// zero, for the rules that forbid two zeros.
fn validate_int_or_percent(
    errs: &mut Vec<FieldError>,
    value: &Value,
    path: &str,
    at_most_100: bool,
) -> bool {
    match value {
        Value::Number(n) => match n.as_i64() {
            Some(v) if v >= 0 => v == 0,
            _ => {
                errs.push(FieldError::invalid(
                    path,
                    n.to_string(),
                    "must be greater than or equal to 0",
                ));
                false
            }
        },
        Value::String(text) => {
            let digits = text.strip_suffix('%').unwrap_or("");
            match digits.parse::<u64>() {
                Ok(p) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                    if at_most_100 && p > 100 {
                        errs.push(FieldError::invalid(
                            path,
                            quote(text),
                            "must not be greater than 100%",
                        ));
                    }
                    p == 0
                }
                _ => {
                    errs.push(FieldError::invalid(
                        path,
                        quote(text),
                        "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                    ));
                    false
                }
            }
        }
        _ => false,
    }
}

/// A rolling update's `maxSurge`/`maxUnavailable` at `path` (Deployment's
/// `spec.strategy.rollingUpdate`, DaemonSet's and StatefulSet's
/// `spec.updateStrategy.rollingUpdate`).
fn validate_rolling_update(errs: &mut Vec<FieldError>, rolling: &Value, path: &str) {
    if !rolling.is_object() {
        return;
    }
    let surge_zero = match at(rolling, &["maxSurge"]) {
        Value::Null => None,
        v => Some(validate_int_or_percent(
            errs,
            v,
            &format!("{path}.maxSurge"),
            false,
        )),
    };
    let unavailable = at(rolling, &["maxUnavailable"]);
    if unavailable.is_null() {
        return;
    }
    let field = format!("{path}.maxUnavailable");
    let unavailable_zero = validate_int_or_percent(errs, unavailable, &field, true);
    if unavailable_zero && surge_zero == Some(true) {
        errs.push(FieldError::invalid(
            field,
            match unavailable {
                Value::String(s) => quote(s),
                v => v.to_string(),
            },
            "may not be 0 when `maxSurge` is 0",
        ));
    }
}

/// Validates the workload and service kinds; empty for other kinds.
pub fn validate(group: &str, kind: &str, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = at(obj, &["spec"]);
    match (group, kind) {
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet") => {
            non_negative(&mut errs, obj, &["spec", "replicas"]);
            validate_selector_and_template(&mut errs, kind, spec, &["Always"]);
            if kind == "Deployment" {
                non_negative(&mut errs, obj, &["spec", "revisionHistoryLimit"]);
                non_negative(&mut errs, obj, &["spec", "minReadySeconds"]);
                validate_rolling_update(
                    &mut errs,
                    at(spec, &["strategy", "rollingUpdate"]),
                    "spec.strategy.rollingUpdate",
                );
            }
            if kind == "StatefulSet" {
                let rolling = at(spec, &["updateStrategy", "rollingUpdate", "maxUnavailable"]);
                if !rolling.is_null() {
                    validate_int_or_percent(
                        &mut errs,
                        rolling,
                        "spec.updateStrategy.rollingUpdate.maxUnavailable",
                        true,
                    );
                }
            }
        }
        ("apps", "DaemonSet") => {
            validate_selector_and_template(&mut errs, kind, spec, &["Always"]);
            validate_rolling_update(
                &mut errs,
                at(spec, &["updateStrategy", "rollingUpdate"]),
                "spec.updateStrategy.rollingUpdate",
            );
        }
        ("batch", "Job") => validate_job(&mut errs, obj),
        ("batch", "CronJob") => validate_cron_job(&mut errs, spec),
        ("", "Service") => validate_service(&mut errs, spec),
        ("autoscaling", "HorizontalPodAutoscaler") => validate_hpa(&mut errs, spec),
        ("policy", "PodDisruptionBudget") => {
            let min = at(spec, &["minAvailable"]);
            let max = at(spec, &["maxUnavailable"]);
            if !min.is_null() && !max.is_null() {
                errs.push(FieldError::invalid(
                    "spec",
                    spec.to_string(),
                    "minAvailable and maxUnavailable cannot be both set",
                ));
            }
            if !min.is_null() {
                validate_int_or_percent(&mut errs, min, "spec.minAvailable", true);
            }
            if !max.is_null() {
                validate_int_or_percent(&mut errs, max, "spec.maxUnavailable", true);
            }
            if spec.get("selector").is_some_and(Value::is_object) {
                validate_label_selector(&mut errs, at(spec, &["selector"]), "spec.selector");
            }
        }
        _ => {}
    }
    errs
}

/// `ValidateJob`: counts, restart policy, and the selector (generated
/// unless `manualSelector`, see `strategy::generate_job_selector`).
fn validate_job(errs: &mut Vec<FieldError>, job: &Value) {
    let spec = at(job, &["spec"]);
    for f in [
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
    ] {
        non_negative(errs, job, &["spec", f]);
    }
    let manual = at(spec, &["manualSelector"]).as_bool() == Some(true);
    if manual {
        validate_selector_and_template(errs, "Job", spec, &["OnFailure", "Never"]);
        return;
    }
    let uid = at(job, &["metadata", "uid"]).as_str().unwrap_or("");
    let mut expected = Map::new();
    expected.insert(
        crate::strategy::JOB_CONTROLLER_UID_LABEL.into(),
        Value::from(uid),
    );
    let selector = at(spec, &["selector"]);
    if !uid.is_empty() && selector.is_object() && !selector_matches(selector, &expected) {
        errs.push(FieldError::invalid(
            "spec.selector",
            selector.to_string(),
            "`selector` not auto-generated",
        ));
    }
    let template = at(spec, &["template"]);
    let labels = at(template, &["metadata", "labels"]);
    let empty = Map::new();
    if selector.is_object() && !selector_matches(selector, labels.as_object().unwrap_or(&empty)) {
        errs.push(FieldError::invalid(
            "spec.template.metadata.labels",
            go_string_map(labels),
            "`selector` does not match template `labels`",
        ));
    }
    validate_template(errs, template, "spec.template", &["OnFailure", "Never"]);
}

/// `ValidateCronJobSpec`: a schedule, a known concurrency policy and a
/// valid job template (the cron syntax itself is not parsed here).
fn validate_cron_job(errs: &mut Vec<FieldError>, spec: &Value) {
    if at(spec, &["schedule"]).as_str().unwrap_or("").is_empty() {
        errs.push(FieldError::required("spec.schedule"));
    }
    let policy = at(spec, &["concurrencyPolicy"]).as_str().unwrap_or("");
    let allowed = ["Allow", "Forbid", "Replace"];
    if !allowed.contains(&policy) {
        errs.push(not_supported(
            "spec.concurrencyPolicy".into(),
            policy,
            &allowed,
        ));
    }
    let template = at(spec, &["jobTemplate", "spec", "template"]);
    validate_template(
        errs,
        template,
        "spec.jobTemplate.spec.template",
        &["OnFailure", "Never"],
    );
}

fn port_range_error(field: String, port: i64) -> FieldError {
    FieldError::invalid(
        field,
        port.to_string(),
        "must be between 1 and 65535, inclusive",
    )
}

/// `ValidateService`, for type, session affinity and ports.
fn validate_service(errs: &mut Vec<FieldError>, spec: &Value) {
    let ty = at(spec, &["type"]).as_str().unwrap_or("");
    let types = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
    if !types.contains(&ty) {
        errs.push(not_supported("spec.type".into(), ty, &types));
    }
    let affinity = at(spec, &["sessionAffinity"]).as_str().unwrap_or("");
    if !["ClientIP", "None"].contains(&affinity) {
        errs.push(not_supported(
            "spec.sessionAffinity".into(),
            affinity,
            &["ClientIP", "None"],
        ));
    }
    if ty == "ExternalName"
        && at(spec, &["externalName"])
            .as_str()
            .unwrap_or("")
            .is_empty()
    {
        errs.push(FieldError::required("spec.externalName"));
    }
    let ports = at(spec, &["ports"])
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let headless = at(spec, &["clusterIP"]).as_str() == Some("None");
    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required("spec.ports"));
    }
    let mut names = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        let name = at(p, &["name"]).as_str().unwrap_or("");
        if name.is_empty() {
            if ports.len() > 1 {
                errs.push(FieldError::required(format!("{path}.name")));
            }
        } else {
            for msg in is_dns1123_label(name) {
                errs.push(FieldError::invalid(
                    format!("{path}.name"),
                    quote(name),
                    msg,
                ));
            }
            if !names.insert(name.to_string()) {
                errs.push(FieldError {
                    field: format!("{path}.name"),
                    kind: FieldErrorKind::Duplicate,
                    value: Some(quote(name)),
                    detail: String::new(),
                });
            }
        }
        let port = at(p, &["port"]).as_i64().unwrap_or(0);
        if !(1..=65535).contains(&port) {
            errs.push(port_range_error(format!("{path}.port"), port));
        }
        let protocol = at(p, &["protocol"]).as_str().unwrap_or("");
        let protocols = ["SCTP", "TCP", "UDP"];
        if !protocols.contains(&protocol) {
            errs.push(not_supported(
                format!("{path}.protocol"),
                protocol,
                &protocols,
            ));
        }
        match at(p, &["targetPort"]) {
            Value::Number(n) => {
                let n = n.as_i64().unwrap_or(0);
                if !(1..=65535).contains(&n) {
                    errs.push(port_range_error(format!("{path}.targetPort"), n));
                }
            }
            Value::String(s) => {
                for msg in is_valid_port_name(s) {
                    errs.push(FieldError::invalid(
                        format!("{path}.targetPort"),
                        quote(s),
                        msg,
                    ));
                }
            }
            _ => {}
        }
        if let Some(node_port) = at(p, &["nodePort"]).as_i64().filter(|n| *n != 0) {
            if !(1..=65535).contains(&node_port) {
                errs.push(port_range_error(format!("{path}.nodePort"), node_port));
            }
        }
    }
}

/// autoscaling/v2 `ValidateHorizontalPodAutoscalerSpec`, the basics.
fn validate_hpa(errs: &mut Vec<FieldError>, spec: &Value) {
    let target = at(spec, &["scaleTargetRef"]);
    for f in ["kind", "name"] {
        if at(target, &[f]).as_str().unwrap_or("").is_empty() {
            errs.push(FieldError::required(format!("spec.scaleTargetRef.{f}")));
        }
    }
    let min = at(spec, &["minReplicas"]).as_i64().unwrap_or(1);
    let max = at(spec, &["maxReplicas"]).as_i64().unwrap_or(0);
    if min < 1 {
        errs.push(FieldError::invalid(
            "spec.minReplicas",
            min.to_string(),
            "must be greater than or equal to 1",
        ));
    }
    if max < min {
        errs.push(FieldError::invalid(
            "spec.maxReplicas",
            max.to_string(),
            "must be greater than or equal to `minReplicas`",
        ));
    }
}
