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
use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::Value;
use skiff_store::Revision;

use crate::error::ApiError;
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
        let labels: Vec<(Box<str>, Box<str>)> = obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str().into(), v.as_str()?.into())))
            .collect();
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
            labels: sorted(labels),
            fields: fields.into_boxed_slice(),
        }
    }

    /// Decodes an object as stored, with `resourceVersion` set to
    /// `revision`; `kind` is the kind stored under its key (`None` for
    /// custom objects: their own `kind`).
    ///
    /// The bytes are not decoded into a `Value` and encoded again (that was
    /// ~7% of the server's CPU while pods were created): the top level and
    /// `metadata` are split into raw JSON pieces, `resourceVersion` is
    /// added among them, and only the labels and the few fields selectors
    /// read are decoded. The result is the bytes
    /// `CachedObject::new(kind, &decode_at(bytes, revision)?)` would write.
    pub fn decode(bytes: &[u8], revision: Revision, kind: Option<&str>) -> Result<Self, ApiError> {
        let top: RawMap = serde_json::from_slice(bytes).map_err(undecodable)?;
        let own_kind;
        let kind = match kind {
            Some(k) => k,
            None => {
                own_kind = top.get("kind").and_then(|r| decode_raw::<String>(r));
                own_kind.as_deref().unwrap_or("")
            }
        };
        let version = RawValue::from_string(format!("\"{revision}\""))
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let meta: Option<RawMap> = match top.get("metadata") {
            Some(raw) => Some(serde_json::from_str(raw.get()).map_err(undecodable)?),
            None => None,
        };
        let meta = meta.map(|mut m| {
            m.insert("resourceVersion".into(), &version);
            m
        });
        let labels: Vec<(Box<str>, Box<str>)> = meta
            .as_ref()
            .and_then(|m| m.get("labels"))
            .and_then(|r| decode_raw::<BTreeMap<String, Value>>(r))
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.into(), v.as_str()?.into())))
            .collect();
        // What the kind's field selectors read, decoded into a small object
        // of the same shape, so that they read it as they read any object.
        let mut selected = serde_json::Map::new();
        for field in selectable_fields(kind) {
            if let Some(v) = pick(&top, meta.as_ref(), field) {
                insert_at(&mut selected, field, v);
            }
        }
        let selected = Value::Object(selected);
        let fields: Vec<(&'static str, Box<str>)> = selectable_fields(kind)
            .map(|f| (f, value_of_field(kind, &selected, f)))
            .filter(|(_, v)| !v.is_empty())
            .map(|(f, v)| (f, v.into_boxed_str()))
            .collect();
        let mut json = Vec::with_capacity(bytes.len() + 32);
        json.push(b'{');
        for (i, (key, raw)) in top.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            serde_json::to_writer(&mut json, key).map_err(undecodable)?;
            json.push(b':');
            match (key.as_str(), &meta) {
                ("metadata", Some(m)) => {
                    serde_json::to_writer(&mut json, m).map_err(undecodable)?
                }
                _ => json.extend_from_slice(raw.get().as_bytes()),
            }
        }
        json.push(b'}');
        Ok(CachedObject {
            json: Bytes::from(json.into_boxed_slice()),
            labels: sorted(labels),
            fields: fields.into_boxed_slice(),
        })
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

/// An object's members as raw JSON, by name (the order `Value` keeps).
type RawMap<'a> = BTreeMap<String, &'a RawValue>;

fn undecodable(e: serde_json::Error) -> ApiError {
    ApiError::Internal(format!("stored object does not decode: {e}"))
}

fn decode_raw<T: serde::de::DeserializeOwned>(raw: &RawValue) -> Option<T> {
    serde_json::from_str(raw.get()).ok()
}

fn sorted(mut labels: Vec<(Box<str>, Box<str>)>) -> Box<[(Box<str>, Box<str>)]> {
    labels.sort_unstable();
    labels.into_boxed_slice()
}

/// The value at dotted `field` (`spec.nodeName`), decoding only the maps
/// on the way; `metadata` comes already split.
fn pick(top: &RawMap<'_>, meta: Option<&RawMap<'_>>, field: &str) -> Option<Value> {
    let mut segments = field.split('.');
    let first = segments.next()?;
    let mut raw: &RawValue = match first {
        "metadata" => meta?.get(segments.next()?).copied()?,
        _ => top.get(first).copied()?,
    };
    for segment in segments {
        let map: RawMap<'_> = serde_json::from_str(raw.get()).ok()?;
        raw = map.get(segment).copied()?;
    }
    decode_raw(raw)
}

/// Puts `value` at dotted `field` in `obj`, making the maps on the way.
fn insert_at(obj: &mut serde_json::Map<String, Value>, field: &str, value: Value) {
    match field.split_once('.') {
        None => {
            obj.insert(field.to_string(), value);
        }
        Some((first, rest)) => {
            let child = obj
                .entry(first.to_string())
                .or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(m) = child {
                insert_at(m, rest, value);
            }
        }
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

    /// The raw path writes what decoding into a `Value` would.
    #[test]
    fn decode_matches_the_value_path() {
        let event = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "ns", "uid": "u"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "ns"},
            "reason": "Started", "source": {"component": "kubelet"}, "type": "Normal",
            "count": 3, "ratio": 0.25
        });
        let custom = json!({
            "apiVersion": "x.io/v1", "kind": "Widget",
            "metadata": {"name": "w", "labels": {"a\"b": "c\u{e9}", "n": "1"}},
            "spec": {"deep": {"list": [1, {"x": null}], "s": "\\\n"}}
        });
        let node = json!({"kind": "Node", "metadata": {"name": "n"},
                          "spec": {"unschedulable": true},
                          "status": {"capacity": {"cpu": "2"}}});
        let cases = [
            (Some("Pod"), pod()),
            (Some("Event"), event),
            (None, custom),
            (Some("Node"), node),
            (
                Some("Pod"),
                json!({"kind": "Pod", "spec": {"nodeName": "x"}}),
            ),
            (
                Some("Secret"),
                json!({"metadata": {"name": "s"}, "type": "Opaque"}),
            ),
        ];
        for (kind, obj) in cases {
            let stored = crate::registry::encode(&obj).unwrap();
            let via_value = crate::registry::decode_at(&stored, 12).unwrap();
            let kind_of = obj["kind"].as_str().unwrap_or("").to_string();
            let expected = CachedObject::new(kind.unwrap_or(&kind_of), &via_value);
            let raw = CachedObject::decode(&stored, 12, kind).unwrap();
            assert_eq!(raw.json, expected.json, "{obj}");
            assert_eq!(raw.labels, expected.labels, "{obj}");
            assert_eq!(raw.fields, expected.fields, "{obj}");
        }
        assert!(CachedObject::decode(b"{\"a\":", 1, None).is_err());
        assert!(CachedObject::decode(b"[1]", 1, None).is_err());
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
