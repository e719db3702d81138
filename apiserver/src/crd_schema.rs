//! A CustomResourceDefinition's `openAPIV3Schema`, applied to custom
//! objects the way kube-apiserver's apiextensions server does: prune
//! unknown fields, apply `default`s, then validate (decode → prune →
//! default → validate).
//!
//! The schema is kept as the JSON the CRD carries ([`Schema`] wraps it);
//! every function here is pure and walks the object and the schema
//! together. Paths are printed as Kubernetes' `field.Path` does
//! (`spec.ports[0].name`, map values as `spec.labels.key`), and errors
//! carry kube-openapi's words, e.g.
//! `spec.replicas: Invalid value: "string": spec.replicas in body must be
//! of type integer: "string"`.
//!
//! Supported: `type`, `nullable`, `required`, `enum`, `pattern`,
//! `minimum`/`maximum` (and `exclusive*`), `multipleOf`,
//! `minLength`/`maxLength`, `minItems`/`maxItems`, `uniqueItems`,
//! `minProperties`/`maxProperties`, `items`, `properties`,
//! `additionalProperties`, `allOf`, `format` (on strings: `date-time`,
//! `date`, `uuid`, `ipv4`, `ipv6`, `cidr`, `mac`, `hostname`, `email`,
//! `byte`, `hexcolor`), `x-kubernetes-preserve-unknown-fields`,
//! `x-kubernetes-int-or-string`, `x-kubernetes-embedded-resource` (keeps
//! `apiVersion`, `kind`, `metadata`) and `default`.
//!
//! Caveats: the other formats of kube-openapi's registry (`uri`, `isbn`,
//! `creditcard`, `duration`, …) are not checked; no `anyOf`/`oneOf`/`not`, no CEL
//! (`x-kubernetes-validations`), no list-type (`x-kubernetes-list-type`)
//! uniqueness checks; `metadata` is validated as any object's, not pruned.

use serde_json::{Map, Value};

use crate::validation::names::quote;
use crate::validation::{FieldError, FieldErrorKind};

/// Fields of the root object that the schema never prunes (kube-apiserver
/// handles them itself).
const ROOT_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// One version's `openAPIV3Schema`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schema(pub Value);

impl Schema {
    /// Removes fields the schema does not allow; returns their paths
    /// (e.g. `spec.foo`), for `fieldValidation` warnings or errors.
    pub fn prune(&self, obj: &mut Value) -> Vec<String> {
        let mut pruned = Vec::new();
        prune(&self.0, obj, "", true, &mut pruned);
        pruned
    }

    /// The paths [`Schema::prune`] would remove, without changing `obj`.
    pub fn unknown_fields(&self, obj: &Value) -> Vec<String> {
        self.prune(&mut obj.clone())
    }

    /// Fills in every `default` whose field is absent (or null and not
    /// nullable), top-down, so defaults inside defaults apply too.
    pub fn apply_defaults(&self, obj: &mut Value) {
        default(&self.0, obj);
    }

    /// Every way `obj` breaks the schema; empty when it conforms.
    pub fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        validate(&self.0, obj, "", &mut errs);
        errs
    }
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool) == Some(true)
}

/// The schema for the values of an object: `properties[key]`, else
/// `additionalProperties` when it is a schema.
fn property_schema<'a>(schema: &'a Value, key: &str) -> Option<&'a Value> {
    schema
        .get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
}

fn prune(schema: &Value, obj: &mut Value, path: &str, root: bool, out: &mut Vec<String>) {
    for sub in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        prune(sub, obj, path, root, out);
    }
    match obj {
        Value::Object(map) => {
            let keeps_all = flag(schema, "x-kubernetes-preserve-unknown-fields")
                || schema.get("additionalProperties") == Some(&Value::Bool(true));
            let embedded = root || flag(schema, "x-kubernetes-embedded-resource");
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if embedded && ROOT_FIELDS.contains(&key.as_str()) {
                    continue;
                }
                let child = child_path(path, &key);
                match property_schema(schema, &key) {
                    Some(s) => {
                        if let Some(v) = map.get_mut(&key) {
                            prune(s, v, &child, false, out);
                        }
                    }
                    None if keeps_all => {}
                    None => {
                        map.remove(&key);
                        out.push(child);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune(s, item, &format!("{path}[{i}]"), false, out);
                }
            }
        }
        _ => {}
    }
}

fn default(schema: &Value, obj: &mut Value) {
    match obj {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (key, s) in props {
                    let Some(d) = s.get("default") else { continue };
                    let absent = match map.get(key) {
                        None => true,
                        Some(Value::Null) => !flag(s, "nullable"),
                        Some(_) => false,
                    };
                    if absent {
                        map.insert(key.clone(), d.clone());
                    }
                }
            }
            for (key, v) in map.iter_mut() {
                if let Some(s) = property_schema(schema, key) {
                    default(s, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                items.iter_mut().for_each(|i| default(s, i));
            }
        }
        _ => {}
    }
}

/// The JSON type name kube-openapi reports for a value.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn has_type(v: &Value, ty: &str) -> bool {
    match ty {
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        other => type_name(v) == other,
    }
}

/// A value the way `field.Invalid` prints it: strings quoted, the rest as JSON.
fn render(v: &Value) -> String {
    match v {
        Value::String(s) => quote(s),
        other => other.to_string(),
    }
}

/// `<path>: Invalid value: "<actual>": <path> in body must be of type <expected>: "<actual>"`.
fn type_error(path: &str, expected: &str, v: &Value) -> FieldError {
    let actual = quote(type_name(v));
    FieldError::invalid(
        path,
        actual.clone(),
        in_body(path, format!("must be of type {expected}: {actual}")),
    )
}

/// `<path> in body <words>`, as kube-openapi words its errors.
fn in_body(path: &str, words: String) -> String {
    format!("{path} in body {words}")
}

fn validate(schema: &Value, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    for sub in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        validate(sub, v, path, errs);
    }
    let ty = schema.get("type").and_then(Value::as_str);
    if v.is_null() {
        if let Some(ty) = ty.filter(|_| !flag(schema, "nullable")) {
            errs.push(type_error(path, ty, v));
        }
        return;
    }
    let expected = if flag(schema, "x-kubernetes-int-or-string") {
        (!(has_type(v, "integer") || v.is_string())).then_some("integer or string")
    } else {
        ty.filter(|t| !has_type(v, t))
    };
    if let Some(expected) = expected {
        errs.push(type_error(path, expected, v));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(v) {
            let list: Vec<String> = allowed.iter().map(render).collect();
            errs.push(FieldError {
                field: path.to_string(),
                kind: FieldErrorKind::NotSupported,
                value: Some(render(v)),
                detail: format!("supported values: {}", list.join(", ")),
            });
        }
    }
    let mut invalid = |words: String| {
        errs.push(FieldError::invalid(path, render(v), in_body(path, words)));
    };
    match v {
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
                if len < min {
                    invalid(format!("should be at least {min} chars long"));
                }
            }
            if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
                // A pattern that does not compile was refused with the CRD.
                if regex::Regex::new(p).is_ok_and(|re| !re.is_match(s)) {
                    invalid(format!("should match '{p}'"));
                }
            }
            if let Some(format) = schema.get("format").and_then(Value::as_str) {
                if !format_holds(format, s) {
                    invalid(format!("must be of type {format}: {}", quote(s)));
                }
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
                if len > max {
                    errs.push(FieldError {
                        field: path.to_string(),
                        kind: FieldErrorKind::TooLong,
                        value: None,
                        detail: format!("may not be more than {max} bytes"),
                    });
                }
            }
        }
        Value::Number(n) => check_number(schema, n.as_f64().unwrap_or(0.0), &mut invalid),
        Value::Array(items) => {
            let n = items.len() as u64;
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
                if n < min {
                    invalid(format!("should have at least {min} items"));
                }
            }
            if flag(schema, "uniqueItems") {
                let dup = items
                    .iter()
                    .enumerate()
                    .any(|(i, a)| items[..i].contains(a));
                if dup {
                    invalid("shouldn't contain duplicates".to_string());
                }
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
                if n > max {
                    errs.push(FieldError {
                        field: path.to_string(),
                        kind: FieldErrorKind::TooMany,
                        value: Some(n.to_string()),
                        detail: format!("must have at most {max} items"),
                    });
                }
            }
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(s, item, &format!("{path}[{i}]"), errs);
                }
            }
        }
        Value::Object(map) => validate_object(schema, map, path, errs),
        Value::Bool(_) | Value::Null => {}
    }
}

/// Whether `s` is a `format` string of the kind kube-openapi's format
/// registry checks for custom resources; formats it does not check
/// (`password`, `int32` on a string, names Skiff does not know) hold.
fn format_holds(format: &str, s: &str) -> bool {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let hex = |part: &str, n: usize| part.len() == n && part.chars().all(|c| c.is_ascii_hexdigit());
    match format {
        "date-time" | "datetime" => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        "date" => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        "uuid" | "uuid3" | "uuid4" | "uuid5" => {
            let parts: Vec<&str> = s.split('-').collect();
            parts.len() == 5 && parts.iter().zip([8, 4, 4, 4, 12]).all(|(p, n)| hex(p, n))
        }
        "ipv4" => s.parse::<Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<Ipv6Addr>().is_ok(),
        "cidr" => s.split_once('/').is_some_and(|(ip, bits)| {
            let max = match ip.parse::<IpAddr>() {
                Ok(IpAddr::V4(_)) => 32,
                Ok(IpAddr::V6(_)) => 128,
                Err(_) => return false,
            };
            bits.parse::<u8>().is_ok_and(|b| b <= max)
        }),
        "mac" => {
            let parts: Vec<&str> = s.split([':', '-']).collect();
            matches!(parts.len(), 6 | 8 | 20) && parts.iter().all(|p| hex(p, 2))
        }
        "hostname" => {
            s.len() <= 253
                && s.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                })
        }
        "email" => s.split_once('@').is_some_and(|(user, domain)| {
            !user.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        }),
        "byte" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
        }
        "hexcolor" => s.strip_prefix('#').is_some_and(|h| hex(h, 6) || hex(h, 3)),
        _ => true,
    }
}

fn check_number(schema: &Value, x: f64, invalid: &mut impl FnMut(String)) {
    let num = |k: &str| schema.get(k).and_then(Value::as_f64);
    let show = |k: &str| schema.get(k).map(Value::to_string).unwrap_or_default();
    if let Some(min) = num("minimum") {
        if flag(schema, "exclusiveMinimum") && x <= min {
            invalid(format!("should be greater than {}", show("minimum")));
        } else if x < min {
            invalid(format!(
                "should be greater than or equal to {}",
                show("minimum")
            ));
        }
    }
    if let Some(max) = num("maximum") {
        if flag(schema, "exclusiveMaximum") && x >= max {
            invalid(format!("should be less than {}", show("maximum")));
        } else if x > max {
            invalid(format!(
                "should be less than or equal to {}",
                show("maximum")
            ));
        }
    }
    if let Some(m) = num("multipleOf").filter(|m| *m > 0.0) {
        if (x / m).fract() != 0.0 {
            invalid(format!("should be a multiple of {}", show("multipleOf")));
        }
    }
}

fn validate_object(
    schema: &Value,
    map: &Map<String, Value>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    let n = map.len() as u64;
    if let Some(min) = schema.get("minProperties").and_then(Value::as_u64) {
        if n < min {
            errs.push(FieldError::invalid(
                path,
                n.to_string(),
                in_body(path, format!("should have at least {min} properties")),
            ));
        }
    }
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64) {
        if n > max {
            errs.push(FieldError::invalid(
                path,
                n.to_string(),
                in_body(path, format!("should have at most {max} properties")),
            ));
        }
    }
    for req in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if map.get(req).is_none_or(Value::is_null) {
            errs.push(FieldError::required(child_path(path, req)));
        }
    }
    for (key, v) in map {
        if path.is_empty() && ROOT_FIELDS.contains(&key.as_str()) {
            continue;
        }
        if let Some(s) = property_schema(schema, key) {
            validate(s, v, &child_path(path, key), errs);
        }
    }
}

#[cfg(test)]
#[path = "crd_schema_test.rs"]
mod tests;
