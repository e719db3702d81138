//! An object as the watch cache and lists hold it: its JSON, encoded once
//! with `metadata.resourceVersion` set, next to the few attributes that
//! label and field selectors read (Kubernetes' cacher keeps the same pair:
//! each object with the labels and fields of its kind's `GetAttrs`).
//!
//! ```text
//!  CachedObject
//!   ├─ json     the object's bytes, written into list bodies and watch
//!   │           events as they are
//!   ├─ labels   metadata.labels, sorted by key
//!   └─ fields   metadata.name, metadata.namespace and the kind's
//!               field-selector values (spec.nodeName, status.phase, …)
//! ```
//!
//! A decoded `serde_json::Value` of a 1.3 KB pod takes about 10 KB of
//! map nodes and strings; its bytes take 1.3 KB. So the cache keeps bytes
//! and decodes only where a reader needs the whole object: Table rows,
//! YAML, custom objects served under another version, the RBAC policy.

use std::borrow::Cow;

use bytes::Bytes;
use serde_json::Value;
use skiff_store::Revision;

use crate::error::ApiError;
use crate::registry::decode_at;
use crate::resources::ResourceInfo;
use crate::selectors::{selectable_fields, value_of_field, Selectable};

/// One object, encoded. See the module doc.
#[derive(Clone, Debug)]
pub struct CachedObject {
    json: Bytes,
    labels: Box<[(Box<str>, Box<str>)]>,
    /// Only the non-empty values; a field not here reads as `""`.
    fields: Box<[(&'static str, Box<str>)]>,
}

impl CachedObject {
    /// Encodes `obj` (its resourceVersion already set), recording its
    /// labels and the field-selector values of `kind`.
    pub fn new(kind: &str, obj: &Value) -> CachedObject {
        let mut labels: Vec<(Box<str>, Box<str>)> = obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str().into(), v.as_str()?.into())))
            .collect();
        labels.sort_unstable();
        let fields: Vec<(&'static str, Box<str>)> = selectable_fields(kind)
            .map(|f| (f, value_of_field(kind, obj, f)))
            .filter(|(_, v)| !v.is_empty())
            .map(|(f, v)| (f, v.into_boxed_str()))
            .collect();
        // A Value always encodes; the boxed slice drops the spare capacity
        // the encoder's doubling left behind.
        let json = serde_json::to_vec(obj).unwrap_or_default();
        CachedObject {
            json: Bytes::from(json.into_boxed_slice()),
            labels: labels.into_boxed_slice(),
            fields: fields.into_boxed_slice(),
        }
    }

    /// Decodes an object as stored, with `resourceVersion` set to
    /// `revision`; `kind` is the kind stored under its key (`None` for
    /// custom objects: their own `kind`).
    pub fn decode(bytes: &[u8], revision: Revision, kind: Option<&str>) -> Result<Self, ApiError> {
        let obj = decode_at(bytes, revision)?;
        let kind = kind.unwrap_or_else(|| obj.get("kind").and_then(Value::as_str).unwrap_or(""));
        Ok(CachedObject::new(kind, &obj))
    }

    /// The object's JSON.
    pub fn json(&self) -> &Bytes {
        &self.json
    }

    /// The object, decoded.
    pub fn to_value(&self) -> Value {
        // The bytes were encoded from a Value, so they decode.
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }

    /// The JSON of the object with another `metadata.resourceVersion` (a
    /// deleted object is sent with the deletion's revision).
    pub fn json_at(&self, resource_version: &str) -> Bytes {
        let mut obj = self.to_value();
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert(
                "resourceVersion".into(),
                Value::String(resource_version.to_string()),
            );
        }
        Bytes::from(serde_json::to_vec(&obj).unwrap_or_default())
    }

    /// A field-selector value recorded for this object (`""` when unset).
    fn recorded_field(&self, field: &str) -> &str {
        self.fields
            .iter()
            .find(|(f, _)| *f == field)
            .map_or("", |(_, v)| v)
    }
}

impl Selectable for CachedObject {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.labels[i].1)
    }

    fn field(&self, _resource: &ResourceInfo, field: &str) -> Cow<'_, str> {
        // The selector was checked against the resource when parsed, and
        // the object recorded every field its kind supports.
        Cow::Borrowed(self.recorded_field(field))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::selectors::{FieldSelector, LabelSelector};

    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "resourceVersion": "7",
                         "labels": {"app": "web", "tier": "front"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running"}
        })
    }

    #[test]
    fn bytes_decode_to_the_object() {
        let o = CachedObject::new("Pod", &pod());
        assert_eq!(o.to_value(), pod());
        assert_eq!(o.json().as_ref(), serde_json::to_vec(&pod()).unwrap());
        let at: Value = serde_json::from_slice(&o.json_at("9")).unwrap();
        assert_eq!(at["metadata"]["resourceVersion"], "9");
        assert_eq!(at["spec"], pod()["spec"]);
    }

    #[test]
    fn a_list_body_is_the_json_of_its_value() {
        let pods = crate::resources::find("", "v1", "pods").unwrap();
        let mut other = pod();
        other["metadata"]["name"] = json!("q\"uoted\u{e9}");
        for items in [vec![], vec![pod()], vec![pod(), other]] {
            let page = crate::registry::ListPage {
                items: items
                    .iter()
                    .map(|o| std::sync::Arc::new(CachedObject::new("Pod", o)))
                    .collect(),
                revision: 42,
                continue_token: Some("tok".into()),
                remaining_item_count: Some(7),
            };
            let body = crate::registry::Registry::list_object(pods, &page);
            let value = body.to_value();
            assert_eq!(value["items"], json!(items));
            assert_eq!(value["metadata"]["remainingItemCount"], 7);
            assert_eq!(body.to_json(), serde_json::to_vec(&value).unwrap());
            // The metadata-only form: the same metadata, nothing else.
            let partial = body.metadata_only();
            let value = partial.to_value();
            assert_eq!(value["kind"], "PartialObjectMetadataList");
            assert_eq!(value["apiVersion"], "meta.k8s.io/v1");
            let metas: Vec<Value> = items
                .iter()
                .map(|o| crate::codec::partial_object_metadata(o["metadata"].clone()))
                .collect();
            assert_eq!(value["items"], json!(metas));
            assert_eq!(partial.to_json(), serde_json::to_vec(&value).unwrap());
        }
    }

    #[test]
    fn selectors_match_as_on_the_decoded_object() {
        let pods = crate::resources::find("", "v1", "pods").unwrap();
        let obj = pod();
        let cached = CachedObject::new("Pod", &obj);
        let labels = [
            "app=web",
            "app!=web",
            "tier in (front,back)",
            "tier notin (front)",
            "missing",
            "!missing",
            "app",
            "",
        ];
        for sel in labels {
            let s = LabelSelector::parse(sel).unwrap();
            assert_eq!(s.matches(&cached), s.matches(&obj), "labelSelector {sel:?}");
        }
        let fields = [
            "spec.nodeName=n1",
            "spec.nodeName=",
            "spec.nodeName!=n2",
            "status.phase=Running",
            "spec.hostNetwork=false",
            "spec.schedulerName=",
            "metadata.name=p,metadata.namespace=ns",
            "metadata.namespace!=ns",
        ];
        for sel in fields {
            let s = FieldSelector::parse(sel, pods).unwrap();
            assert_eq!(
                s.matches(pods, &cached),
                s.matches(pods, &obj),
                "fieldSelector {sel:?}"
            );
        }
    }
}
