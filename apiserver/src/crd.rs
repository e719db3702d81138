//! CustomResourceDefinitions (`apiextensions.k8s.io/v1`): validating a
//! CRD, the status the server gives it, and turning each served version
//! into a [`ResourceInfo`] that the generic REST code serves like a
//! built-in (kube-apiserver's apiextensions-apiserver).
//!
//! ```text
//!  CRD written ──► store ──► crd_registry (store watch) ──► served_versions()
//!                                                             │ one ResourceInfo per
//!                                                             ▼ served version, custom: Some
//!  /apis/<group>/<version>/…<plural> ──► rest.rs ──► defaults / validation / table / scale
//!                                                    consult ResourceInfo::custom
//! ```
//!
//! Contracts:
//! - a CRD is valid when `metadata.name == <plural>.<group>`, the group has
//!   a dot and is not a built-in one, names are DNS labels, scope is `Namespaced` or `Cluster`, exactly
//!   one version is the storage version, at least one is served, and each
//!   version has a structural `openAPIV3Schema` (object at the root, a
//!   `type` on every property, patterns that compile); 422 names the field;
//! - the server sets `status` on every write: `NamesAccepted` and
//!   `Established` True, `acceptedNames` = `spec.names`, `storedVersions`
//!   gaining the storage version (Kubernetes' naming and establishing
//!   controllers do this asynchronously; Skiff at once, since one request
//!   later every server serves the resource);
//! - every version of a CRD shares one store prefix,
//!   `/registry/<group>/<plural>/`.
//!
//! - versions convert with the `None` strategy ([`convert`]): an object
//!   written through one version reads through another with only its
//!   `apiVersion` changed.
//!
//! Caveats: no conversion webhooks; printer columns take simple JSONPaths (`.a.b`, `.a[0].b`);
//! [`ResourceInfo`]s are `&'static`, so each distinct served definition is
//! leaked (a few KiB; identical ones are reused) until the process ends.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::crd_schema::Schema;
use crate::resources::ResourceInfo;
use crate::table::{Column, AGE, NAME};
use crate::validation::names::quote;
use crate::validation::{FieldError, FieldErrorKind};

/// The CRD resource's group.
pub const GROUP: &str = "apiextensions.k8s.io";

/// What a custom resource adds to its [`ResourceInfo`].
#[derive(Debug, PartialEq, Eq)]
pub struct CustomResource {
    /// The CRD's name, `<plural>.<group>`.
    pub crd_name: &'static str,
    /// The version's `openAPIV3Schema`.
    pub schema: Option<Schema>,
    /// `additionalPrinterColumns`, NAME first (AGE when none are given).
    pub columns: Vec<(Column, &'static str)>,
    /// The `scale` subresource's paths, if declared.
    pub scale: Option<ScalePaths>,
}

/// `subresources.scale`: JSONPaths into the custom object.
#[derive(Debug, PartialEq, Eq)]
pub struct ScalePaths {
    /// `specReplicasPath`, e.g. `.spec.replicas`.
    pub spec_replicas: String,
    /// `statusReplicasPath`, e.g. `.status.replicas`.
    pub status_replicas: String,
    /// `labelSelectorPath` (a selector string in the object), if any.
    pub label_selector: Option<String>,
}

/// Whether `res` is the CRD resource itself.
pub fn is_crd(res: &ResourceInfo) -> bool {
    (res.group, res.kind) == (GROUP, "CustomResourceDefinition")
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

/// CRD defaults (`SetDefaults_CustomResourceDefinitionSpec`): singular
/// and listKind from the kind, conversion strategy `None`.
pub fn apply_defaults(crd: &mut Value) {
    let kind = str_at(crd, "/spec/names/kind").to_string();
    if let Some(names) = crd
        .pointer_mut("/spec/names")
        .and_then(Value::as_object_mut)
    {
        if !kind.is_empty() {
            names
                .entry("singular")
                .or_insert_with(|| json!(kind.to_lowercase()));
            names
                .entry("listKind")
                .or_insert_with(|| json!(format!("{kind}List")));
        }
    }
    if let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut) {
        spec.entry("conversion")
            .or_insert_with(|| json!({"strategy": "None"}));
    }
}

/// Sets the status the naming and establishing controllers would:
/// accepted names, `NamesAccepted` and `Established`, stored versions.
pub fn set_status(crd: &mut Value, old: Option<&Value>, now: DateTime<Utc>) {
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let mut stored: Vec<Value> = old
        .and_then(|o| o.pointer("/status/storedVersions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let storage = versions(crd)
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .and_then(|v| v.get("name").cloned());
    if let Some(s) = storage.filter(|s| !stored.contains(s)) {
        stored.push(s);
    }
    // A condition keeps its transition time while its status holds.
    let since = |ty: &str| {
        old.and_then(|o| o.pointer("/status/conditions"))
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == ty))
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(crate::strategy::timestamp(now)))
    };
    crd["status"] = json!({
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": since("NamesAccepted")},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": since("Established")},
        ],
        "acceptedNames": names,
        "storedVersions": stored,
    });
}

fn versions(crd: &Value) -> &[Value] {
    crd.pointer("/spec/versions")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Validates a (defaulted) CRD; every error names its field.
pub fn validate_crd(crd: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let group = str_at(crd, "/spec/group");
    let plural = str_at(crd, "/spec/names/plural");
    let name = str_at(crd, "/metadata/name");
    let required = |errs: &mut Vec<FieldError>, field: &str, value: &str| {
        if value.is_empty() {
            errs.push(FieldError::required(field));
            true
        } else {
            false
        }
    };
    if !required(&mut errs, "spec.group", group) && !group.contains('.') {
        errs.push(FieldError::invalid(
            "spec.group",
            quote(group),
            "should be a domain with at least one dot",
        ));
    } else if crate::resources::RESOURCES.iter().any(|r| r.group == group) {
        // The built-in resources would shadow it (Kubernetes guards its
        // own groups with the api-approved annotation instead).
        errs.push(FieldError::invalid(
            "spec.group",
            quote(group),
            "is a group this server serves itself",
        ));
    }
    for (field, pointer) in [
        ("spec.names.plural", "/spec/names/plural"),
        ("spec.names.singular", "/spec/names/singular"),
    ] {
        let v = str_at(crd, pointer);
        if !required(&mut errs, field, v) && !is_dns_label(v) {
            errs.push(FieldError::invalid(
                field,
                quote(v),
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
            ));
        }
    }
    required(
        &mut errs,
        "spec.names.kind",
        str_at(crd, "/spec/names/kind"),
    );
    let want = format!("{plural}.{group}");
    if !name.is_empty() && !plural.is_empty() && name != want {
        errs.push(FieldError::invalid(
            "metadata.name",
            quote(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let scope = str_at(crd, "/spec/scope");
    if !matches!(scope, "Namespaced" | "Cluster") {
        errs.push(FieldError {
            field: "spec.scope".into(),
            kind: FieldErrorKind::NotSupported,
            value: Some(quote(scope)),
            detail: "supported values: \"Cluster\", \"Namespaced\"".into(),
        });
    }
    validate_versions(crd, &mut errs);
    errs
}

fn validate_versions(crd: &Value, errs: &mut Vec<FieldError>) {
    let vs = versions(crd);
    let count = |flag: &str| {
        vs.iter()
            .filter(|v| v.get(flag).and_then(Value::as_bool) == Some(true))
            .count()
    };
    if vs.is_empty() {
        errs.push(FieldError::required("spec.versions"));
        return;
    }
    if count("storage") != 1 {
        errs.push(FieldError::invalid(
            "spec.versions",
            format!("{} storage versions", count("storage")),
            "must have exactly one version marked as storage version",
        ));
    }
    if count("served") == 0 {
        errs.push(FieldError::invalid(
            "spec.versions",
            "no served versions",
            "must have at least one served version",
        ));
    }
    let mut seen = Vec::new();
    for (i, v) in vs.iter().enumerate() {
        let at = format!("spec.versions[{i}]");
        let name = str_at(v, "/name");
        if !is_dns_label(name) {
            errs.push(FieldError::invalid(
                format!("{at}.name"),
                quote(name),
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-'",
            ));
        } else if seen.contains(&name) {
            errs.push(FieldError {
                field: format!("{at}.name"),
                kind: FieldErrorKind::Duplicate,
                value: Some(quote(name)),
                detail: String::new(),
            });
        }
        seen.push(name);
        let schema_at = format!("{at}.schema.openAPIV3Schema");
        match v.pointer("/schema/openAPIV3Schema") {
            None | Some(Value::Null) => {
                let mut e = FieldError::required(schema_at);
                e.detail = "schemas are required".into();
                errs.push(e);
            }
            Some(s) => {
                match s.get("type").and_then(Value::as_str) {
                    Some("object") => {}
                    None => {
                        let mut e = FieldError::required(format!("{schema_at}.type"));
                        e.detail = "must not be empty at the root".into();
                        errs.push(e);
                    }
                    Some(t) => errs.push(FieldError::invalid(
                        format!("{schema_at}.type"),
                        quote(t),
                        "must be object at the root",
                    )),
                }
                structural(s, &schema_at, errs);
            }
        }
        for (j, c) in v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let at = format!("{at}.additionalPrinterColumns[{j}]");
            for f in ["name", "type", "jsonPath"] {
                if str_at(c, &format!("/{f}")).is_empty() {
                    errs.push(FieldError::required(format!("{at}.{f}")));
                }
            }
        }
    }
}

/// Structural-schema checks below the root: every property has a `type`
/// (unless it preserves unknown fields or is int-or-string), patterns
/// compile, defaults conform.
fn structural(schema: &Value, at: &str, errs: &mut Vec<FieldError>) {
    if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
        if let Err(e) = regex::Regex::new(p) {
            errs.push(FieldError::invalid(
                format!("{at}.pattern"),
                quote(p),
                format!("must be a valid regular expression, but isn't: {e}"),
            ));
        }
    }
    if let Some(d) = schema.get("default") {
        for e in Schema(schema.clone()).validate(d) {
            errs.push(FieldError::invalid(
                format!("{at}.default"),
                d.to_string(),
                e.message(),
            ));
        }
    }
    for (key, s) in schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let child = format!("{at}.properties[{key}]");
        let free = [
            "x-kubernetes-preserve-unknown-fields",
            "x-kubernetes-int-or-string",
        ]
        .iter()
        .any(|f| s.get(*f).and_then(Value::as_bool) == Some(true));
        if s.get("type").is_none() && !free {
            let mut e = FieldError::required(format!("{child}.type"));
            e.detail = "must not be empty for specified object fields".into();
            errs.push(e);
        }
        structural(s, &child, errs);
    }
    for key in ["items", "additionalProperties"] {
        if let Some(s) = schema.get(key).filter(|s| s.is_object()) {
            structural(s, &format!("{at}.{key}"), errs);
        }
    }
}

/// Every served version of `crd` as a [`ResourceInfo`]; an identical
/// definition seen before is reused rather than leaked again.
pub fn served_versions(crd: &Value) -> Vec<&'static ResourceInfo> {
    static INTERNED: Mutex<Option<HashMap<String, &'static ResourceInfo>>> = Mutex::new(None);
    let mut out = Vec::new();
    for v in versions(crd) {
        if v.get("served").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        // The parts of the CRD that shape this version.
        let key = json!([
            crd.pointer("/metadata/name"),
            crd.pointer("/spec/group"),
            crd.pointer("/spec/names"),
            crd.pointer("/spec/scope"),
            v
        ])
        .to_string();
        let mut interned = INTERNED.lock().unwrap_or_else(|p| p.into_inner());
        let table = interned.get_or_insert_with(HashMap::new);
        let info = *table
            .entry(key)
            .or_insert_with(|| Box::leak(Box::new(version_info(crd, v))));
        out.push(info);
    }
    out
}

fn leak_list(v: Option<&Value>) -> &'static [&'static str] {
    let items: Vec<&'static str> = v
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(leak)
        .collect();
    Box::leak(items.into_boxed_slice())
}

fn version_info(crd: &Value, v: &Value) -> ResourceInfo {
    let sub = |name: &str| v.pointer(&format!("/subresources/{name}")).is_some();
    let subresources: &'static [&'static str] = match (sub("status"), sub("scale")) {
        (true, true) => &["status", "scale"],
        (true, false) => &["status"],
        (false, true) => &["scale"],
        (false, false) => &[],
    };
    let scale = v.pointer("/subresources/scale").map(|s| ScalePaths {
        spec_replicas: str_at(s, "/specReplicasPath").to_string(),
        status_replicas: str_at(s, "/statusReplicasPath").to_string(),
        label_selector: s
            .get("labelSelectorPath")
            .and_then(Value::as_str)
            .map(str::to_string),
    });
    let mut columns: Vec<(Column, &'static str)> = vec![(NAME, ".metadata.name")];
    let printer = v
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty());
    match printer {
        None => columns.push((AGE, ".metadata.creationTimestamp")),
        Some(cs) => {
            for c in cs {
                let priority = c.get("priority").and_then(Value::as_u64).unwrap_or(0);
                let column: Column = (
                    leak(str_at(c, "/name")),
                    leak(str_at(c, "/type")),
                    leak(str_at(c, "/format")),
                    u8::try_from(priority).unwrap_or(u8::MAX),
                    leak(str_at(c, "/description")),
                );
                columns.push((column, leak(str_at(c, "/jsonPath"))));
            }
        }
    }
    let custom = CustomResource {
        crd_name: leak(str_at(crd, "/metadata/name")),
        schema: v.pointer("/schema/openAPIV3Schema").cloned().map(Schema),
        columns,
        scale,
    };
    let kind = str_at(crd, "/spec/names/kind");
    let list_kind = match str_at(crd, "/spec/names/listKind") {
        "" => format!("{kind}List"),
        k => k.to_string(),
    };
    ResourceInfo {
        group: leak(str_at(crd, "/spec/group")),
        version: leak(str_at(v, "/name")),
        plural: leak(str_at(crd, "/spec/names/plural")),
        singular: leak(str_at(crd, "/spec/names/singular")),
        kind: leak(kind),
        list_kind: leak(&list_kind),
        namespaced: str_at(crd, "/spec/scope") == "Namespaced",
        short_names: leak_list(crd.pointer("/spec/names/shortNames")),
        categories: leak_list(crd.pointer("/spec/names/categories")),
        subresources,
        custom: Some(Box::leak(Box::new(custom))),
    }
}

/// A custom object as the version `res` serves it. CRD versions convert
/// with the `None` strategy (the only one without a webhook): the fields
/// stay and only `apiVersion` changes. Built-in objects pass unchanged.
pub fn convert(res: &ResourceInfo, mut obj: Value) -> Value {
    if res.custom.is_some() {
        if let Some(o) = obj.as_object_mut() {
            o.insert("apiVersion".into(), json!(res.api_version()));
        }
    }
    obj
}

/// Whether a custom object changed outside `metadata` (and `status`,
/// when it has its own subresource): what bumps its generation.
pub fn spec_changed(new: &Value, old: &Value, status_apart: bool) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("metadata");
            if status_apart {
                o.remove("status");
            }
        }
        v
    };
    strip(new) != strip(old)
}

/// The value at a simple JSONPath (`.spec.replicas`, `.a[0].b`), if any.
pub fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut cur = obj;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        let (field, indices) = match seg.find('[') {
            Some(i) => (&seg[..i], &seg[i..]),
            None => (seg, ""),
        };
        if !field.is_empty() {
            cur = cur.get(field)?;
        }
        for idx in indices.split(['[', ']']).filter(|s| !s.is_empty()) {
            cur = cur.get(idx.parse::<usize>().ok()?)?;
        }
    }
    Some(cur)
}

/// Sets the value at a simple JSONPath, creating objects on the way.
pub fn set_json_path(obj: &mut Value, path: &str, value: Value) {
    let mut cur = obj;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = &mut cur[seg];
    }
    *cur = value;
}

impl CustomResource {
    /// The Table columns.
    pub fn table_columns(&self) -> Vec<Column> {
        self.columns.iter().map(|(c, _)| *c).collect()
    }

    /// One Table row: each column's JSONPath value (`date` columns as an
    /// age, like kube-apiserver's CRD table convertor), `<none>` → null.
    pub fn table_row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        self.columns
            .iter()
            .map(|(column, path)| match json_path(obj, path) {
                None => Value::Null,
                Some(v) if column.1 == "date" || *column == AGE => {
                    json!(crate::table::duration::since(v, now))
                }
                Some(v) => v.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "crd_test.rs"]
mod tests;
