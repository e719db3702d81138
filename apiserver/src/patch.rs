//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and a
//! subset of Kubernetes' strategic merge patch.
//!
//! Caveat (strategic merge): Kubernetes reads each field's
//! `patchStrategy`/`patchMergeKey` from the Go struct tags of the type.
//! Skiff has no such schema at runtime, so [`merge_key`] knows the lists
//! kubectl touches most by *field name* (containers/initContainers/volumes/
//! env/… by `name`, ports by `containerPort`, conditions by `type`, …) and
//! `finalizers` as a merged set; every other list is replaced, which is
//! also what Kubernetes does for lists without a strategy. The directives
//! kubectl emits are honoured: `$patch: replace|delete|merge`,
//! `$retainKeys`, `$setElementOrder/<field>` and
//! `$deleteFromPrimitiveList/<field>`. Server-side apply
//! (`application/apply-patch+yaml`) is [`crate::apply_rest`]; CBOR apply
//! patches are 415.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// The patch formats accepted, by `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`.
    Json,
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`.
    StrategicMerge,
}

impl PatchType {
    /// The patch type for a `Content-Type` value (parameters ignored).
    pub fn from_content_type(ct: &str) -> Result<Self, ApiError> {
        let base = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match base.as_str() {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::StrategicMerge),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Err(ApiError::UnsupportedMediaType(
                "server-side apply (application/apply-patch+yaml) is not supported by Skiff yet; use client-side `kubectl apply` (without --server-side)"
                    .into(),
            )),
            other => Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {other:?})"
            ))),
        }
    }
}

/// Applies `patch` (already parsed as JSON) of type `kind` to `doc`.
pub fn apply(kind: PatchType, doc: &Value, patch: &Value) -> Result<Value, ApiError> {
    let mut out = doc.clone();
    match kind {
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::BadRequest(
                    "merge patch must be a JSON object".into(),
                ));
            }
            json_patch::merge(&mut out, patch);
        }
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))?;
            // `out` is a copy that a failure throws away, so the ops need
            // no undo: json-patch's own undo (`patch`) panics when undoing
            // fails, e.g. after a copy into a list that later ops moved.
            json_patch::patch_unsafe(&mut out, &ops.0).map_err(|e| {
                ApiError::Unprocessable(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ))
            })?;
        }
        PatchType::StrategicMerge => {
            let p = patch.as_object().ok_or_else(|| {
                ApiError::BadRequest("strategic merge patch must be a JSON object".into())
            })?;
            out = strategic_merge_map(doc.as_object().cloned().unwrap_or_default(), p)
                .map(Value::Object)
                .unwrap_or(Value::Object(Map::new()));
        }
    }
    Ok(out)
}

/// The merge key of a list field, by field name (see the module caveat).
/// `Some("")` marks a merged list of primitives (a set).
pub fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates" => Some("name"),
        "ports" => {
            // Container ports merge by containerPort, service ports by port.
            let service = items
                .iter()
                .any(|i| i.get("port").is_some() && i.get("containerPort").is_none());
            Some(if service { "port" } else { "containerPort" })
        }
        "conditions" | "addresses" => Some("type"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "hostAliases" => Some("ip"),
        "ownerReferences" => Some("uid"),
        "taints" => Some("key"),
        "topologySpreadConstraints" => Some("topologyKey"),
        "finalizers" => Some(""),
        _ => None,
    }
}

/// Removes every `$…` directive from a value kubectl sent, for values that
/// land where the original had nothing to merge with.
fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter(|i| {
                    !(i.is_object()
                        && i.get("$patch").is_some()
                        && i.as_object().is_some_and(|m| m.len() == 1))
                })
                .filter(|i| i.get("$patch").and_then(Value::as_str) != Some("delete"))
                .map(strip_directives)
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Merges patch map `p` into `orig`; `None` means "delete this map"
/// (`$patch: delete`).
fn strategic_merge_map(
    mut orig: Map<String, Value>,
    p: &Map<String, Value>,
) -> Option<Map<String, Value>> {
    match p.get("$patch").and_then(Value::as_str) {
        Some("delete") => return None,
        Some("replace") => {
            return match strip_directives(&Value::Object(p.clone())) {
                Value::Object(m) => Some(m),
                _ => Some(Map::new()),
            }
        }
        _ => {}
    }
    if let Some(Value::Array(keep)) = p.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        orig.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(gone)) = (orig.get_mut(field), v) {
                list.retain(|x| !gone.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        match v {
            Value::Null => {
                orig.remove(k);
            }
            Value::Object(pm) => match orig.remove(k) {
                Some(Value::Object(om)) => {
                    if let Some(m) = strategic_merge_map(om, pm) {
                        orig.insert(k.clone(), Value::Object(m));
                    }
                }
                _ => {
                    if pm.get("$patch").and_then(Value::as_str) != Some("delete") {
                        orig.insert(k.clone(), strip_directives(v));
                    }
                }
            },
            Value::Array(pl) => {
                let merged = match (orig.remove(k), merge_key(k, pl)) {
                    (Some(Value::Array(ol)), Some(key)) => merge_list(ol, pl, key),
                    _ => match strip_directives(v) {
                        Value::Array(a) => a,
                        _ => Vec::new(),
                    },
                };
                orig.insert(k.clone(), Value::Array(merged));
            }
            other => {
                orig.insert(k.clone(), other.clone());
            }
        }
    }
    // Reorder lists the way kubectl asked, now that they are merged.
    for (k, order) in p {
        let (Some(field), Value::Array(order)) = (k.strip_prefix("$setElementOrder/"), order)
        else {
            continue;
        };
        if let Some(Value::Array(list)) = orig.get_mut(field) {
            let key = merge_key(field, list).unwrap_or("");
            let ident = |item: &Value| -> Value {
                if key.is_empty() {
                    item.clone()
                } else {
                    item.get(key).cloned().unwrap_or(Value::Null)
                }
            };
            let wanted: Vec<Value> = order
                .iter()
                .map(|o| {
                    if key.is_empty() {
                        o.clone()
                    } else {
                        o.get(key).cloned().unwrap_or(Value::Null)
                    }
                })
                .collect();
            list.sort_by_key(|item| {
                wanted
                    .iter()
                    .position(|w| *w == ident(item))
                    .unwrap_or(usize::MAX)
            });
        }
    }
    Some(orig)
}

/// Merges patch list `pl` into `ol` by `key` (`""`: a set of primitives).
fn merge_list(mut ol: Vec<Value>, pl: &[Value], key: &str) -> Vec<Value> {
    if pl
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return match strip_directives(&Value::Array(pl.to_vec())) {
            Value::Array(a) => a,
            _ => Vec::new(),
        };
    }
    for item in pl {
        if key.is_empty() || !item.is_object() {
            if !ol.contains(item) {
                ol.push(item.clone());
            }
            continue;
        }
        let id = item.get(key).cloned().unwrap_or(Value::Null);
        let pos = ol.iter().position(|o| o.get(key) == Some(&id));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                ol.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => {
                let merged = match (ol[i].as_object(), item.as_object()) {
                    (Some(om), Some(pm)) => strategic_merge_map(om.clone(), pm).map(Value::Object),
                    _ => Some(item.clone()),
                };
                match merged {
                    Some(m) => ol[i] = m,
                    None => {
                        ol.remove(i);
                    }
                }
            }
            (None, false) => ol.push(strip_directives(item)),
        }
    }
    ol
}

#[cfg(test)]
#[path = "patch_test.rs"]
mod tests;
