//! Label and field selectors, as `k8s.io/apimachinery/pkg/labels` and
//! `pkg/fields` parse and match them.
//!
//! Label selectors: comma-separated requirements, each `key`, `!key`,
//! `key=v`, `key==v`, `key!=v`, `key in (a,b)`, `key notin (a,b)`,
//! `key>n`, `key<n`. `!=` and `notin` also match objects without the key,
//! as in Kubernetes.
//!
//! Field selectors: `field=v`, `field==v`, `field!=v`, comma-separated;
//! `\,` `\=` `\!` `\\` escape. Which fields a resource supports is decided
//! by [`field_value`] (Kubernetes' per-resource `GetAttrs`/field label
//! conversion); any other field is a 400 `field label not supported: x`.

use std::borrow::Cow;

use serde_json::Value;

use crate::error::ApiError;
use crate::resources::ResourceInfo;

/// How one label requirement compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelOp {
    /// `key=v` or `key==v`.
    Equals(String),
    /// `key!=v`.
    NotEquals(String),
    /// `key in (…)`.
    In(Vec<String>),
    /// `key notin (…)`.
    NotIn(Vec<String>),
    /// `key`.
    Exists,
    /// `!key`.
    DoesNotExist,
    /// `key>n` (integer compare).
    GreaterThan(i64),
    /// `key<n`.
    LessThan(i64),
}

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelRequirement {
    /// The label key.
    pub key: String,
    /// The comparison.
    pub op: LabelOp,
}

/// A parsed label selector; empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// All must hold.
    pub requirements: Vec<LabelRequirement>,
}

fn bad_label(sel: &str, why: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "unable to parse requirement: {why} (in selector {sel:?})"
    ))
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// A label key: optional DNS prefix and `/`, then a name of at most 63
/// characters of alphanumerics, `-`, `_`, `.`, starting and ending
/// alphanumeric (Kubernetes' `IsQualifiedName`).
fn valid_key(key: &str) -> bool {
    let name = match key.rsplit_once('/') {
        Some((prefix, name)) => {
            if prefix.is_empty() || prefix.len() > 253 {
                return false;
            }
            if !prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            {
                return false;
            }
            name
        }
        None => key,
    };
    valid_value(name) && !name.is_empty()
}

/// A label value: empty, or up to 63 alphanumerics, `-`, `_`, `.`, starting
/// and ending alphanumeric.
fn valid_value(v: &str) -> bool {
    if v.is_empty() {
        return true;
    }
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn parse_set(sel: &str, rest: &str) -> Result<Vec<String>, ApiError> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| bad_label(sel, "expected a parenthesized set of values"))?;
    let values: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
    if let Some(v) = values.iter().find(|v| !valid_value(v)) {
        return Err(bad_label(sel, &format!("invalid label value: {v:?}")));
    }
    Ok(values)
}

impl LabelSelector {
    /// Parses a `labelSelector` query value.
    pub fn parse(sel: &str) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        if sel.trim().is_empty() {
            return Ok(LabelSelector { requirements });
        }
        for part in split_top_level(sel) {
            let part = part.trim();
            if part.is_empty() {
                return Err(bad_label(sel, "empty requirement"));
            }
            let (key, op) = if let Some(k) = part.strip_prefix('!') {
                (k.trim().to_string(), LabelOp::DoesNotExist)
            } else if let Some((k, v)) = part.split_once("!=") {
                (
                    k.trim().to_string(),
                    LabelOp::NotEquals(v.trim().to_string()),
                )
            } else if let Some((k, v)) = part.split_once("==") {
                (k.trim().to_string(), LabelOp::Equals(v.trim().to_string()))
            } else if let Some((k, v)) = part.split_once('=') {
                (k.trim().to_string(), LabelOp::Equals(v.trim().to_string()))
            } else if let Some((k, v)) = part.split_once('>') {
                let n = v.trim().parse().map_err(|_| {
                    bad_label(
                        sel,
                        "for 'gt', 'lt' operators, the value must be an integer",
                    )
                })?;
                (k.trim().to_string(), LabelOp::GreaterThan(n))
            } else if let Some((k, v)) = part.split_once('<') {
                let n = v.trim().parse().map_err(|_| {
                    bad_label(
                        sel,
                        "for 'gt', 'lt' operators, the value must be an integer",
                    )
                })?;
                (k.trim().to_string(), LabelOp::LessThan(n))
            } else if let Some((k, rest)) = part.split_once(" notin ") {
                (k.trim().to_string(), LabelOp::NotIn(parse_set(sel, rest)?))
            } else if let Some((k, rest)) = part.split_once(" in ") {
                (k.trim().to_string(), LabelOp::In(parse_set(sel, rest)?))
            } else {
                (part.to_string(), LabelOp::Exists)
            };
            if !valid_key(&key) {
                return Err(bad_label(sel, &format!("invalid label key {key:?}")));
            }
            if let LabelOp::Equals(v) | LabelOp::NotEquals(v) = &op {
                if !valid_value(v) {
                    return Err(bad_label(sel, &format!("invalid label value: {v:?}")));
                }
            }
            requirements.push(LabelRequirement { key, op });
        }
        Ok(LabelSelector { requirements })
    }

    /// Whether the selector matches no restriction.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, obj: &(impl Selectable + ?Sized)) -> bool {
        let get = |k: &str| obj.label(k);
        self.requirements.iter().all(|r| match &r.op {
            LabelOp::Equals(v) => get(&r.key) == Some(v.as_str()),
            LabelOp::NotEquals(v) => get(&r.key) != Some(v.as_str()),
            LabelOp::In(vs) => get(&r.key).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelOp::NotIn(vs) => get(&r.key).is_none_or(|x| !vs.iter().any(|v| v == x)),
            LabelOp::Exists => get(&r.key).is_some(),
            LabelOp::DoesNotExist => get(&r.key).is_none(),
            LabelOp::GreaterThan(n) => get(&r.key)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x > *n),
            LabelOp::LessThan(n) => get(&r.key)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x < *n),
        })
    }
}

/// One field requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field, e.g. `spec.nodeName`.
    pub field: String,
    /// The value compared with.
    pub value: String,
    /// True for `!=`.
    pub negated: bool,
}

/// A parsed field selector; empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// All must hold.
    pub requirements: Vec<FieldRequirement>,
}

/// Splits on an unescaped `sep`, unescaping `\x` into `x` in each part.
fn split_escaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                // Keep the escape so the operator split below still sees it.
                if let Some(p) = parts.last_mut() {
                    p.push('\\');
                    p.push(n);
                }
            }
        } else if c == sep {
            parts.push(String::new());
        } else if let Some(p) = parts.last_mut() {
            p.push(c);
        }
    }
    parts
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Finds the byte index of the first unescaped occurrence of `op` in `s`
/// (always on a character boundary, so slicing there is safe).
fn find_unescaped(s: &str, op: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
            continue;
        }
        if s[i..].starts_with(op) {
            return Some(i);
        }
    }
    None
}

impl FieldSelector {
    /// Parses a `fieldSelector` query value and checks every field is
    /// supported for `resource`.
    pub fn parse(sel: &str, resource: &ResourceInfo) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        if sel.trim().is_empty() {
            return Ok(FieldSelector { requirements });
        }
        for part in split_escaped(sel, ',') {
            let (field, value, negated) = if let Some(i) = find_unescaped(&part, "!=") {
                (&part[..i], &part[i + 2..], true)
            } else if let Some(i) = find_unescaped(&part, "==") {
                (&part[..i], &part[i + 2..], false)
            } else if let Some(i) = find_unescaped(&part, "=") {
                (&part[..i], &part[i + 1..], false)
            } else {
                return Err(ApiError::BadRequest(format!(
                    "invalid selector: '{sel}'; can't understand '{part}'"
                )));
            };
            let field = unescape(field.trim());
            if !field_supported(resource, &field) {
                return Err(ApiError::BadRequest(format!(
                    "field label not supported: {field}"
                )));
            }
            requirements.push(FieldRequirement {
                field,
                value: unescape(value.trim()),
                negated,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// Whether the selector restricts nothing.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The value of `metadata.name=X` if the selector pins one name (used
    /// to narrow a watch or list to a single key).
    pub fn pinned_name(&self) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == "metadata.name" && !r.negated)
            .map(|r| r.value.as_str())
    }

    /// Whether `obj` satisfies every requirement.
    pub fn matches(&self, resource: &ResourceInfo, obj: &(impl Selectable + ?Sized)) -> bool {
        self.requirements
            .iter()
            .all(|r| (obj.field(resource, &r.field) == r.value.as_str()) != r.negated)
    }
}

/// Fields each kind supports in field selectors (beyond `metadata.name`,
/// and `metadata.namespace` for namespaced kinds), from each Kubernetes
/// registry's `GetAttrs` / `AddFieldLabelConversionFunc`.
fn extra_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "Node" => &["spec.unschedulable"],
        "Namespace" => &["status.phase"],
        "Secret" => &["type"],
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        _ => &[],
    }
}

fn field_supported(resource: &ResourceInfo, field: &str) -> bool {
    field == "metadata.name"
        || (resource.namespaced && field == "metadata.namespace")
        || extra_fields(resource.kind).contains(&field)
}

/// What selectors read of an object: its labels and its field values. A
/// decoded object answers from its JSON; a
/// [`CachedObject`](crate::cached_object::CachedObject) from what it
/// recorded when it was cached.
pub trait Selectable {
    /// The value of label `key`, if set.
    fn label(&self, key: &str) -> Option<&str>;
    /// The value a field selector compares for `field`, which `resource`
    /// supports (missing → `""`).
    fn field(&self, resource: &ResourceInfo, field: &str) -> Cow<'_, str>;
}

impl Selectable for Value {
    fn label(&self, key: &str) -> Option<&str> {
        self.pointer("/metadata/labels")?.get(key)?.as_str()
    }

    fn field(&self, resource: &ResourceInfo, field: &str) -> Cow<'_, str> {
        Cow::Owned(field_value(resource, self, field).unwrap_or_default())
    }
}

/// Every field a field selector can name on an object of `kind`: the ones
/// a cached object records.
pub fn selectable_fields(kind: &str) -> impl Iterator<Item = &'static str> {
    ["metadata.name", "metadata.namespace"]
        .into_iter()
        .chain(extra_fields(kind).iter().copied())
}

/// The string value a field selector compares for `field` of `obj`
/// (missing → `""`; booleans as `true`/`false`, as Kubernetes formats them).
pub fn field_value(resource: &ResourceInfo, obj: &Value, field: &str) -> Option<String> {
    field_supported(resource, field).then(|| value_of_field(resource.kind, obj, field))
}

/// [`field_value`] for an object of `kind`, without checking that the
/// kind supports `field`.
pub fn value_of_field(kind: &str, obj: &Value, field: &str) -> String {
    let v = if kind == "Event" && field == "source" {
        // Kubernetes' event "source" is source.component, or
        // reportingController when that is empty.
        obj.pointer("/source/component")
            .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
            .or_else(|| obj.pointer("/reportingComponent"))
    } else if kind == "Event" && field == "reportingComponent" {
        obj.pointer("/reportingComponent")
    } else {
        let pointer = format!("/{}", field.replace('.', "/"));
        obj.pointer(&pointer)
    };
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        // Unset booleans read as false (spec.hostNetwork, spec.unschedulable).
        None if matches!(field, "spec.hostNetwork" | "spec.unschedulable") => "false".into(),
        _ => String::new(),
    }
}

#[cfg(test)]
#[path = "selectors_test.rs"]
mod tests;
