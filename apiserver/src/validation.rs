//! Validation of objects before they are stored (Kubernetes' `validation`
//! packages, for the fields Skiff supports).
//!
//! CONTRACT (shared by the request path and the schema code): validation
//! returns every [`FieldError`] found; the HTTP boundary turns them into one
//! 422 `Invalid` Status whose `details.causes` name each field.
//!
//! [`validate`] runs after [`crate::defaults::apply_defaults`], as in
//! Kubernetes (decode → default → validate). It first decodes the body into
//! the kind's `k8s-openapi` type: a body that does not decode (a string where
//! a number belongs, a wrong `apiVersion`) is reported as one [`FieldError`]
//! with an empty `field` whose detail starts `<Kind> in version "<v>" cannot
//! be handled as a <Kind>:` (kube-apiserver answers such bodies with 400
//! BadRequest and that message; the HTTP layer may do the same).
//!
//! [`unknown_fields`] serves `fieldValidation=Strict`/`Warn`: it decodes the
//! body into the kind's type and serialises it again; keys of the input that
//! did not survive (nulls aside) are unknown. Paths are printed the way
//! Kubernetes' strict decoder does inside `unknown field "<path>"`, i.e.
//! `spec.containers[0].imagePullPolcy` with no leading dot.
//!
//! Workload, Service, HPA and PDB rules live in [`workload`]; custom
//! resources are checked against their CRD's schema
//! ([`crate::crd_schema`]) and CRDs by [`crate::crd::validate_crd`].
//!
//! Caveats: only the rules below are checked; Kubernetes has many more
//! (volume sources, probes, security contexts, affinity, …). The pod update
//! message lists the changed paths instead of Kubernetes' Go struct diff.

#[path = "schema_names.rs"]
pub mod names;
#[path = "schema_pod_validation.rs"]
mod pod;
#[path = "schema_workload_validation.rs"]
pub mod workload;

use std::borrow::Cow;

use crate::openapi::kinds::{visit_kind, KindVisitor};
use crate::resources::ResourceInfo;
use serde_json::Value;

/// What is wrong with a field (Kubernetes' `field.ErrorType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// A required field is missing ("Required value").
    Required,
    /// The value is not valid ("Invalid value").
    Invalid,
    /// The value is not one of the allowed ones ("Unsupported value").
    NotSupported,
    /// The value is given twice ("Duplicate value").
    Duplicate,
    /// The field may not be set or changed ("Forbidden").
    Forbidden,
    /// The value is too long ("Too long").
    TooLong,
    /// A list has too many items ("Too many").
    TooMany,
}

impl FieldErrorKind {
    /// The `StatusCause.reason` for this kind, e.g. `FieldValueRequired`.
    pub fn reason(&self) -> &'static str {
        match self {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::TooMany => "FieldValueTooMany",
        }
    }

    /// The words Kubernetes prints for this kind, e.g. `Required value`.
    pub fn words(&self) -> &'static str {
        match self {
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Invalid => "Invalid value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::TooLong => "Too long",
            FieldErrorKind::TooMany => "Too many",
        }
    }
}

/// One invalid field (Kubernetes' `field.Error`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field's path, e.g. `spec.containers[0].image`.
    pub field: String,
    /// What is wrong.
    pub kind: FieldErrorKind,
    /// The offending value, rendered as Kubernetes does (quoted strings), if any.
    pub value: Option<String>,
    /// Extra words, e.g. `must be no more than 63 characters`.
    pub detail: String,
}

impl FieldError {
    /// A missing required field.
    pub fn required(field: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Required,
            value: None,
            detail: String::new(),
        }
    }

    /// An invalid value.
    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Invalid,
            value: Some(value.into()),
            detail: detail.into(),
        }
    }

    /// The message Kubernetes prints, e.g.
    /// `spec.containers: Required value` or
    /// `metadata.name: Invalid value: "A": a lowercase RFC 1123 subdomain must …`.
    pub fn message(&self) -> String {
        // A whole-body error (see the module doc) has no field to name.
        let mut m = if self.field.is_empty() {
            self.kind.words().to_string()
        } else {
            format!("{}: {}", self.field, self.kind.words())
        };
        if let Some(v) = &self.value {
            m.push_str(": ");
            m.push_str(v);
        }
        if !self.detail.is_empty() {
            m.push_str(": ");
            m.push_str(&self.detail);
        }
        m
    }
}

/// Decodes a body into its kind's type and serialises it back (`None` when
/// Skiff has no Rust type for the kind).
struct RoundTrip<'a>(&'a Value);

impl KindVisitor for RoundTrip<'_> {
    type Output = Result<Value, String>;
    fn visit<T: schemars::JsonSchema + serde::de::DeserializeOwned + serde::Serialize>(
        self,
    ) -> Self::Output {
        let typed = T::deserialize(self.0).map_err(|e| e.to_string())?;
        serde_json::to_value(typed).map_err(|e| e.to_string())
    }
}

/// Whether a body decodes into its kind's type (`None` when Skiff has no
/// Rust type for the kind): [`RoundTrip`] without the way back.
struct Decodes<'a>(&'a Value);

impl KindVisitor for Decodes<'_> {
    type Output = Result<(), String>;
    fn visit<T: schemars::JsonSchema + serde::de::DeserializeOwned + serde::Serialize>(
        self,
    ) -> Self::Output {
        T::deserialize(self.0).map(drop).map_err(|e| e.to_string())
    }
}

/// The body with `apiVersion`/`kind` filled from the URL's resource when
/// absent (the request path does the same before storing).
fn with_type_meta<'a>(resource: &ResourceInfo, obj: &'a Value) -> Cow<'a, Value> {
    if obj.get("apiVersion").is_some() && obj.get("kind").is_some() {
        return Cow::Borrowed(obj);
    }
    let mut obj = obj.clone();
    if let Some(m) = obj.as_object_mut() {
        m.entry("apiVersion")
            .or_insert_with(|| Value::from(resource.api_version()));
        m.entry("kind")
            .or_insert_with(|| Value::from(resource.kind));
    }
    Cow::Owned(obj)
}

fn round_trip(resource: &ResourceInfo, obj: &Value) -> Option<Result<Value, String>> {
    visit_kind(
        resource.group,
        resource.version,
        resource.kind,
        RoundTrip(&with_type_meta(resource, obj)),
    )
}

fn decodes(resource: &ResourceInfo, obj: &Value) -> Option<Result<(), String>> {
    visit_kind(
        resource.group,
        resource.version,
        resource.kind,
        Decodes(&with_type_meta(resource, obj)),
    )
}

/// Validates `obj`, a (defaulted) `resource` object; `old` is the stored
/// object on update. Returns every problem found, empty when valid.
pub fn validate(resource: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let kind = resource.kind;
    let undecodable = |why: String| FieldError {
        field: String::new(),
        kind: FieldErrorKind::Invalid,
        value: None,
        detail: format!(
            "{kind} in version \"{}\" cannot be handled as a {kind}: {why}",
            resource.version
        ),
    };
    if !obj.is_object() {
        return vec![undecodable("the body must be a JSON object".to_string())];
    }
    if let Some(custom) = resource.custom {
        let null = Value::Null;
        let meta = obj.get("metadata").unwrap_or(&null);
        let mut errs =
            names::validate_object_meta(meta, resource.namespaced, names::NameRule::Subdomain);
        if let Some(old) = old {
            errs.extend(names::validate_object_meta_update(
                meta,
                old.get("metadata").unwrap_or(&null),
            ));
        }
        errs.extend(custom.schema.iter().flat_map(|s| s.validate(obj)));
        return errs;
    }
    if crate::crd::is_crd(resource) {
        // Before decoding, so that a missing name is a 422 naming the
        // field rather than a decode error (Go decodes it as "").
        let errs = crate::crd::validate_crd(obj);
        if !errs.is_empty() {
            return errs;
        }
    }
    if let Some(Err(why)) = decodes(resource, obj) {
        return vec![undecodable(why)];
    }
    let null = Value::Null;
    let meta = obj.get("metadata").unwrap_or(&null);
    let rule = if (resource.group, kind) == ("", "Namespace") {
        names::NameRule::Label
    } else {
        names::NameRule::Subdomain
    };
    let mut errs = names::validate_object_meta(meta, resource.namespaced, rule);
    if let Some(old) = old {
        errs.extend(names::validate_object_meta_update(
            meta,
            old.get("metadata").unwrap_or(&null),
        ));
    }
    match (resource.group, kind) {
        ("", "Pod") => {
            let spec = obj.get("spec").unwrap_or(&null);
            errs.extend(pod::validate_pod_spec(spec));
            if let Some(old_spec) = old.and_then(|o| o.get("spec")) {
                errs.extend(pod::validate_pod_update(spec, old_spec));
            }
        }
        ("", "ConfigMap") | ("", "Secret") => {
            for key in ["data", "binaryData", "stringData"] {
                for data_key in obj
                    .get(key)
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k)
                {
                    for msg in names::is_config_map_key(data_key) {
                        errs.push(FieldError::invalid(
                            format!("{key}[{data_key}]"),
                            names::quote(data_key),
                            msg,
                        ));
                    }
                }
            }
        }
        ("", "ResourceQuota") => errs.extend(crate::quota::validate(obj)),
        (group, kind) => errs.extend(workload::validate(group, kind, obj)),
    }
    errs
}

/// For `fieldValidation=Strict`: the paths of fields in `obj` that the
/// kind's schema does not have, e.g. `spec.containers[0].imagePullPolcy`.
/// Empty when all are known, when the body does not decode (validation
/// reports that), or when Skiff has no type for the kind.
pub fn unknown_fields(resource: &ResourceInfo, obj: &Value) -> Vec<String> {
    if let Some(custom) = resource.custom {
        return custom
            .schema
            .as_ref()
            .map(|s| s.unknown_fields(obj))
            .unwrap_or_default();
    }
    unknown_if_decodes(resource, obj).unwrap_or_default()
}

/// The unknown fields of a built-in `obj`, or `None` if it does not
/// decode into the kind's type (or Skiff has none).
fn unknown_if_decodes(resource: &ResourceInfo, obj: &Value) -> Option<Vec<String>> {
    let Some(Ok(known)) = round_trip(resource, obj) else {
        return None;
    };
    let mut out = Vec::new();
    missing_keys(obj, &known, "", &mut out);
    Some(out)
}

/// [`unknown_fields`] of part of an object (a merge patch's body), or
/// `None` when the part does not decode on its own (it leaves out a field
/// its type requires, or deletes with a null where the type has no
/// null): then only the whole object can be checked. Custom kinds: `None`.
pub fn unknown_fields_of_part(resource: &ResourceInfo, part: &Value) -> Option<Vec<String>> {
    if resource.custom.is_some() || !part.is_object() {
        return None;
    }
    unknown_if_decodes(resource, part)
}

/// Drops the fields of `obj` that [`unknown_fields`] reports, for a
/// built-in kind (a custom resource's schema prunes its own).
pub fn prune_unknown_fields(resource: &ResourceInfo, obj: &mut Value) {
    if resource.custom.is_some() {
        return;
    }
    if let Some(Ok(known)) = round_trip(resource, obj) {
        remove_missing_keys(obj, &known);
    }
}

/// Removes the keys of `input` (recursively) that `known` lacks: the
/// mutable twin of [`missing_keys`].
fn remove_missing_keys(input: &mut Value, known: &Value) {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            i.retain(|key, value| value.is_null() || k.contains_key(key));
            for (key, value) in i.iter_mut() {
                if let Some(kv) = k.get(key) {
                    remove_missing_keys(value, kv);
                }
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (iv, kv) in i.iter_mut().zip(k) {
                remove_missing_keys(iv, kv);
            }
        }
        _ => {}
    }
}

/// The message kube-apiserver returns (400 BadRequest) when
/// `fieldValidation=Strict` finds unknown fields, e.g. `Pod in version "v1"
/// cannot be handled as a Pod: strict decoding error: unknown field
/// "spec.foo"`. With `fieldValidation=Warn` Kubernetes instead sends one
/// `Warning: 299 - "unknown field \"spec.foo\""` header per path.
pub fn strict_decoding_message(resource: &ResourceInfo, unknown: &[String]) -> String {
    let fields: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field {}", names::quote(f)))
        .collect();
    format!(
        "{kind} in version {version} cannot be handled as a {kind}: strict decoding error: {}",
        fields.join(", "),
        kind = resource.kind,
        version = names::quote(resource.version),
    )
}

/// Collects the keys of `input` (recursively) that `known` lacks.
fn missing_keys(input: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            for (key, value) in i {
                if value.is_null() {
                    continue;
                }
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match k.get(key) {
                    Some(kv) => missing_keys(value, kv, &child, out),
                    None => out.push(child),
                }
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (n, (iv, kv)) in i.iter().zip(k).enumerate() {
                missing_keys(iv, kv, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
#[path = "schema_validation_test.rs"]
mod tests;
