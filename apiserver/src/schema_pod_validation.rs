//! Pod validation (kubernetes/pkg/apis/core/validation/validation.go:
//! `ValidatePodSpec`, `validateContainers`, `validateContainerPorts`,
//! `ValidateResourceRequirements`, `ValidatePodUpdate`) for the fields Skiff
//! runs. Runs after defaulting, like Kubernetes, so defaulted fields
//! (restartPolicy, protocol, …) are present.

use super::names::{is_dns1123_label, is_valid_port_name, quote};
use super::{FieldError, FieldErrorKind};
use crate::defaults::{parse_quantity, quantity::Quantity};
use serde_json::Value;
use std::collections::BTreeSet;

/// The fields Kubernetes lets a pod update change (the message lists them,
/// InPlacePodVerticalScaling off).
const UPDATABLE_POD_SPEC_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";
const MAX_INT32: i64 = 2_147_483_647;

pub(crate) fn not_supported(field: String, value: &str, allowed: &[&str]) -> FieldError {
    let list: Vec<String> = allowed.iter().map(|a| quote(a)).collect();
    FieldError {
        field,
        kind: FieldErrorKind::NotSupported,
        value: Some(quote(value)),
        detail: format!("supported values: {}", list.join(", ")),
    }
}

fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        kind: FieldErrorKind::Forbidden,
        value: None,
        detail: detail.into(),
    }
}

/// Checks an optional enum-like string field against its allowed values.
fn check_enum(errs: &mut Vec<FieldError>, obj: &Value, key: &str, path: &str, allowed: &[&str]) {
    match obj.get(key) {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => {}
        Some(Value::String(s)) if s.is_empty() => {
            errs.push(FieldError::required(format!("{path}.{key}")))
        }
        Some(v) => errs.push(not_supported(
            format!("{path}.{key}"),
            v.as_str().unwrap_or(&v.to_string()),
            allowed,
        )),
    }
}

/// `ValidatePodSpec` for `spec` at path `spec`.
pub fn validate_pod_spec(spec: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if !spec.is_object() {
        errs.push(FieldError::required("spec"));
        return errs;
    }
    let containers = spec
        .get("containers")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if containers.is_empty() {
        errs.push(FieldError::required("spec.containers"));
    }
    // Init and regular containers share one name space.
    let mut names = BTreeSet::new();
    for (key, list) in [
        ("initContainers", spec.get("initContainers")),
        ("containers", spec.get("containers")),
    ] {
        for (i, c) in list
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            validate_container(&mut errs, c, &format!("spec.{key}[{i}]"), &mut names);
        }
    }
    check_enum(
        &mut errs,
        spec,
        "restartPolicy",
        "spec",
        &["Always", "OnFailure", "Never"],
    );
    check_enum(
        &mut errs,
        spec,
        "dnsPolicy",
        "spec",
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
    );
    if let Some(ads) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64) {
        if !(1..=MAX_INT32).contains(&ads) {
            errs.push(FieldError::invalid(
                "spec.activeDeadlineSeconds",
                ads.to_string(),
                format!("must be between 1 and {MAX_INT32}, inclusive"),
            ));
        }
    }
    let mut volume_names = BTreeSet::new();
    for (i, v) in spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let path = format!("spec.volumes[{i}].name");
        let name = v.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            errs.push(FieldError::required(path));
        } else {
            for msg in is_dns1123_label(name) {
                errs.push(FieldError::invalid(path.clone(), quote(name), msg));
            }
            if !volume_names.insert(name.to_string()) {
                errs.push(FieldError {
                    field: path,
                    kind: FieldErrorKind::Duplicate,
                    value: Some(quote(name)),
                    detail: String::new(),
                });
            }
        }
    }
    errs
}

fn validate_container(
    errs: &mut Vec<FieldError>,
    c: &Value,
    path: &str,
    names: &mut BTreeSet<String>,
) {
    let name = c.get("name").and_then(Value::as_str).unwrap_or("");
    if name.is_empty() {
        errs.push(FieldError::required(format!("{path}.name")));
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
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    if image.is_empty() {
        errs.push(FieldError::required(format!("{path}.image")));
    } else if image.trim() != image {
        errs.push(FieldError::invalid(
            format!("{path}.image"),
            quote(image),
            "must not have leading or trailing whitespace",
        ));
    }
    check_enum(
        errs,
        c,
        "imagePullPolicy",
        path,
        &["Always", "IfNotPresent", "Never"],
    );
    check_enum(
        errs,
        c,
        "terminationMessagePolicy",
        path,
        &["File", "FallbackToLogsOnError"],
    );
    let mut port_names = BTreeSet::new();
    for (i, p) in c
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let ppath = format!("{path}.ports[{i}]");
        if let Some(pname) = p
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            for msg in is_valid_port_name(pname) {
                errs.push(FieldError::invalid(
                    format!("{ppath}.name"),
                    quote(pname),
                    msg,
                ));
            }
            if !port_names.insert(pname.to_string()) {
                errs.push(FieldError {
                    field: format!("{ppath}.name"),
                    kind: FieldErrorKind::Duplicate,
                    value: Some(quote(pname)),
                    detail: String::new(),
                });
            }
        }
        match p.get("containerPort").and_then(Value::as_i64).unwrap_or(0) {
            0 => errs.push(FieldError::required(format!("{ppath}.containerPort"))),
            n if !(1..=65535).contains(&n) => errs.push(FieldError::invalid(
                format!("{ppath}.containerPort"),
                n.to_string(),
                "must be between 1 and 65535, inclusive",
            )),
            _ => {}
        }
        let host_port = p.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
        if host_port != 0 && !(1..=65535).contains(&host_port) {
            errs.push(FieldError::invalid(
                format!("{ppath}.hostPort"),
                host_port.to_string(),
                "must be between 1 and 65535, inclusive",
            ));
        }
        check_enum(errs, p, "protocol", &ppath, &["SCTP", "TCP", "UDP"]);
    }
    validate_resources(errs, c.get("resources"), &format!("{path}.resources"));
}

/// `ValidateResourceRequirements`: quantities parse and are not negative,
/// and a request is at most its limit.
fn validate_resources(errs: &mut Vec<FieldError>, resources: Option<&Value>, path: &str) {
    let Some(resources) = resources.filter(|r| r.is_object()) else {
        return;
    };
    let mut parsed = |key: &str| -> Vec<(String, Value, Quantity)> {
        let mut out = Vec::new();
        for (name, raw) in resources
            .get(key)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let qpath = format!("{path}.{key}[{name}]");
            match parse_quantity(raw) {
                Some(q) if q.is_negative() => {
                    errs.push(FieldError::invalid(qpath, quantity_text(raw), "must be greater than or equal to 0"))
                }
                Some(q) => out.push((name.clone(), raw.clone(), q)),
                None => errs.push(FieldError::invalid(
                    qpath,
                    quantity_text(raw),
                    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                )),
            }
        }
        out
    };
    let limits = parsed("limits");
    let requests = parsed("requests");
    for (name, raw, q) in &requests {
        if let Some((_, limit_raw, limit)) = limits.iter().find(|(n, _, _)| n == name) {
            if q.cmp_value(limit).is_gt() {
                let limit_text = limit_raw
                    .as_str()
                    .map_or_else(|| limit_raw.to_string(), str::to_string);
                errs.push(FieldError::invalid(
                    format!("{path}.requests"),
                    quantity_text(raw),
                    format!("must be less than or equal to {name} limit of {limit_text}"),
                ));
            }
        }
    }
}

fn quantity_text(raw: &Value) -> String {
    match raw {
        Value::String(s) => quote(s),
        other => other.to_string(),
    }
}

/// Drops nulls and empty arrays so `[]` and absent compare equal, as
/// Kubernetes' semantic equality treats nil and empty slices.
fn normalise(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, x)| !x.is_null() && !x.as_array().is_some_and(Vec::is_empty))
                .map(|(k, x)| (k.clone(), normalise(x)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalise).collect()),
        other => other.clone(),
    }
}

/// Paths of the leaves where `a` and `b` differ (for the Forbidden message).
fn diff_paths(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let null = Value::Null;
                diff_paths(
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    &format!("{path}.{k}"),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff_paths(p, q, &format!("{path}[{i}]"), out);
            }
        }
        (p, q) if p != q => out.push(path.to_string()),
        _ => {}
    }
}

/// `ValidatePodUpdate`'s spec rules: only images, a shrinking
/// activeDeadlineSeconds, added tolerations, scheduling gates removal and a
/// negative terminationGracePeriodSeconds becoming 1 may change.
pub fn validate_pod_update(new_spec: &Value, old_spec: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let len = |s: &Value, k: &str| s.get(k).and_then(Value::as_array).map_or(0, Vec::len);
    if len(new_spec, "containers") != len(old_spec, "containers") {
        errs.push(forbidden(
            "spec.containers",
            "pod updates may not add or remove containers",
        ));
        return errs;
    }
    if len(new_spec, "initContainers") != len(old_spec, "initContainers") {
        errs.push(forbidden(
            "spec.initContainers",
            "pod updates may not add or remove containers",
        ));
        return errs;
    }
    let old_ads = old_spec
        .get("activeDeadlineSeconds")
        .and_then(Value::as_i64);
    match (
        new_spec
            .get("activeDeadlineSeconds")
            .and_then(Value::as_i64),
        old_ads,
    ) {
        (Some(new), Some(old)) if new > old => {
            errs.push(FieldError::invalid(
                "spec.activeDeadlineSeconds",
                new.to_string(),
                "must be less than or equal to previous value",
            ));
            return errs;
        }
        (None, Some(_)) => {
            errs.push(FieldError::invalid(
                "spec.activeDeadlineSeconds",
                "null",
                "must not update from a positive integer to nil value",
            ));
        }
        _ => {}
    }
    // Tolerations: every existing toleration stays (additions only).
    let tolerations = |s: &Value| {
        s.get("tolerations")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let new_tolerations = tolerations(new_spec);
    if tolerations(old_spec)
        .iter()
        .any(|t| !new_tolerations.contains(t))
    {
        errs.push(forbidden(
            "spec.tolerations",
            "existing toleration can not be modified except its tolerationSeconds",
        ));
    }

    // Munge the updatable fields of the new spec to the old values, then compare.
    let mut munged = new_spec.clone();
    for key in ["containers", "initContainers"] {
        if let (Some(new), Some(old)) = (
            munged.get_mut(key).and_then(Value::as_array_mut),
            old_spec.get(key).and_then(Value::as_array),
        ) {
            for (n, o) in new.iter_mut().zip(old) {
                if let (Some(n), Some(image)) = (n.as_object_mut(), o.get("image")) {
                    n.insert("image".into(), image.clone());
                }
            }
        }
    }
    if let Some(m) = munged.as_object_mut() {
        for key in ["activeDeadlineSeconds", "tolerations", "schedulingGates"] {
            match old_spec.get(key) {
                Some(v) => m.insert(key.into(), v.clone()),
                None => m.remove(key),
            };
        }
        let old_grace = old_spec
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64);
        let new_grace = m
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64);
        if matches!((old_grace, new_grace), (Some(o), Some(1)) if o < 0) {
            m.insert(
                "terminationGracePeriodSeconds".into(),
                old_spec["terminationGracePeriodSeconds"].clone(),
            );
        }
    }
    let (old_n, new_n) = (normalise(old_spec), normalise(&munged));
    if old_n != new_n {
        let mut changed = Vec::new();
        diff_paths(&old_n, &new_n, "spec", &mut changed);
        errs.push(forbidden(
            "spec",
            format!("pod updates may not change fields other than {UPDATABLE_POD_SPEC_FIELDS}\n  changed: {}", changed.join(", ")),
        ));
    }
    errs
}
