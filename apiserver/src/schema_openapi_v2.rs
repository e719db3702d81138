//! `GET /openapi/v2`: the built-in kinds' schemas as a Swagger 2.0
//! document, in JSON or in the protobuf form kubectl asks for
//! (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`, the
//! `openapi.v2.Document` message of google/gnostic).
//!
//! Why: kubectl validates a create or apply on the server
//! (`fieldValidation=Strict`) only for kinds whose v3 document has a PATCH
//! operation. The create-only kinds (TokenReview, the access reviews,
//! SelfSubjectReview) have none, so kubectl falls back to validating on
//! the client against this document, and without it refuses to create
//! them unless given `--validate=false`.
//!
//! The definitions are the v3 documents' `components.schemas`, merged (a
//! shared type's `x-kubernetes-group-version-kind` lists are joined),
//! with `$ref`s pointing at `#/definitions/` and `allOf: [{$ref}]`
//! written back as a plain `$ref`, as Kubernetes' own v2 document has
//! them. `paths` is empty: kubectl reads only the definitions.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde_json::{json, Map, Value};

use super::{built, cache, KUBERNETES_VERSION, REF_PREFIX as V3_REF};

/// What an `Accept` asking for the protobuf form contains (kubectl sends
/// `application/com.github.proto-openapi.spec.v2@v1.0+protobuf`).
pub const PROTOBUF_ACCEPT: &str = "com.github.proto-openapi.spec.v2";
/// The answer's content type: Go's `mime` parser refuses the `@` of the
/// form kubectl asks with, so kube-apiserver answers with this one.
pub const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

const V2_REF: &str = "#/definitions/";

/// The document as JSON and as protobuf, built once.
struct Documents {
    json: Arc<Vec<u8>>,
    protobuf: Arc<Vec<u8>>,
}

fn documents() -> &'static Documents {
    static DOCS: OnceLock<Documents> = OnceLock::new();
    DOCS.get_or_init(|| {
        let doc = document();
        Documents {
            json: Arc::new(serde_json::to_vec(&doc).unwrap_or_default()),
            protobuf: Arc::new(encode_document(&doc)),
        }
    })
}

/// The JSON document.
pub fn json() -> Arc<Vec<u8>> {
    Arc::clone(&documents().json)
}

/// The protobuf document.
pub fn protobuf() -> Arc<Vec<u8>> {
    Arc::clone(&documents().protobuf)
}

/// The Swagger 2.0 document (JSON form).
fn document() -> Value {
    let mut definitions: BTreeMap<String, Value> = BTreeMap::new();
    for (path, _) in cache() {
        let Some(b) = built(path) else { continue };
        let Ok(v3) = serde_json::from_slice::<Value>(&b.bytes) else {
            continue;
        };
        let Some(schemas) = v3.pointer("/components/schemas").and_then(Value::as_object) else {
            continue;
        };
        for (name, schema) in schemas {
            let schema = to_v2(schema);
            match definitions.get_mut(name) {
                None => {
                    definitions.insert(name.clone(), schema);
                }
                Some(existing) => join_gvks(existing, &schema),
            }
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": {},
        "definitions": definitions,
    })
}

/// Adds `other`'s group-version-kinds to `into`'s (DeleteOptions is
/// stamped with each group's own).
fn join_gvks(into: &mut Value, other: &Value) {
    const KEY: &str = "x-kubernetes-group-version-kind";
    let Some(extra) = other.get(KEY).and_then(Value::as_array) else {
        return;
    };
    let Some(obj) = into.as_object_mut() else {
        return;
    };
    let list = obj.entry(KEY).or_insert_with(|| json!([]));
    if let Some(list) = list.as_array_mut() {
        for gvk in extra {
            if !list.contains(gvk) {
                list.push(gvk.clone());
            }
        }
    }
}

/// One v3 schema in v2 form (see the module doc).
fn to_v2(schema: &Value) -> Value {
    match schema {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        out.insert(k.clone(), Value::String(r.replacen(V3_REF, V2_REF, 1)));
                    }
                    ("allOf", Value::Array(items))
                        if items.len() == 1 && items[0].get("$ref").is_some() =>
                    {
                        if let Some(r) = items[0].get("$ref").and_then(Value::as_str) {
                            out.insert("$ref".into(), Value::String(r.replacen(V3_REF, V2_REF, 1)));
                        }
                    }
                    // v3 only, or not part of a v2 schema.
                    ("nullable" | "oneOf" | "anyOf" | "default", _) => {}
                    ("properties", Value::Object(props)) => {
                        let props = props.iter().map(|(n, s)| (n.clone(), to_v2(s))).collect();
                        out.insert(k.clone(), Value::Object(props));
                    }
                    ("items" | "additionalProperties", _) => {
                        out.insert(k.clone(), to_v2(v));
                    }
                    ("allOf", Value::Array(items)) => {
                        out.insert(k.clone(), Value::Array(items.iter().map(to_v2).collect()));
                    }
                    // k8s-openapi's schemas require `metadata` (a plain
                    // struct field in Rust); Kubernetes' do not, and a
                    // review sent without one is valid.
                    ("required", Value::Array(names)) => {
                        let kept: Vec<Value> =
                            names.iter().filter(|n| *n != "metadata").cloned().collect();
                        if !kept.is_empty() {
                            out.insert(k.clone(), Value::Array(kept));
                        }
                    }
                    _ => {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
            // A $ref stands alone in v2 but for its description.
            if out.contains_key("$ref") {
                out.retain(|k, _| k == "$ref" || k == "description");
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// Protobuf writing, the few wire types the document needs.
#[derive(Default)]
struct Pb(Vec<u8>);

impl Pb {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.varint((u64::from(field) << 3) | 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    fn message(&mut self, field: u32, m: Pb) {
        self.bytes(field, &m.0);
    }
}

// Field numbers of gnostic's openapi/v2 messages.
mod field {
    pub const DOC_SWAGGER: u32 = 1;
    pub const DOC_INFO: u32 = 2;
    pub const DOC_PATHS: u32 = 8;
    pub const DOC_DEFINITIONS: u32 = 9;
    pub const INFO_TITLE: u32 = 1;
    pub const INFO_VERSION: u32 = 2;
    /// Definitions, Properties: `repeated NamedSchema additional_properties`.
    pub const NAMED_ENTRIES: u32 = 1;
    pub const NAMED_NAME: u32 = 1;
    pub const NAMED_VALUE: u32 = 2;
    pub const ANY_YAML: u32 = 2;
    pub const SCHEMA_REF: u32 = 1;
    pub const SCHEMA_FORMAT: u32 = 2;
    pub const SCHEMA_TITLE: u32 = 3;
    pub const SCHEMA_DESCRIPTION: u32 = 4;
    pub const SCHEMA_REQUIRED: u32 = 19;
    pub const SCHEMA_ADDITIONAL_PROPERTIES: u32 = 21;
    pub const SCHEMA_TYPE: u32 = 22;
    pub const SCHEMA_ITEMS: u32 = 23;
    pub const SCHEMA_ALL_OF: u32 = 24;
    pub const SCHEMA_PROPERTIES: u32 = 25;
    pub const SCHEMA_VENDOR_EXTENSION: u32 = 31;
    /// AdditionalPropertiesItem's oneof; TypeItem's and ItemsItem's list.
    pub const ONEOF_SCHEMA: u32 = 1;
    pub const ONEOF_BOOLEAN: u32 = 2;
    pub const LIST_VALUE: u32 = 1;
}

fn encode_document(doc: &Value) -> Vec<u8> {
    let mut out = Pb::default();
    out.string(field::DOC_SWAGGER, "2.0");
    let mut info = Pb::default();
    info.string(field::INFO_TITLE, "Kubernetes");
    info.string(field::INFO_VERSION, KUBERNETES_VERSION);
    out.message(field::DOC_INFO, info);
    out.message(field::DOC_PATHS, Pb::default());
    let mut defs = Pb::default();
    for (name, schema) in doc["definitions"].as_object().into_iter().flatten() {
        defs.message(field::NAMED_ENTRIES, named_schema(name, schema));
    }
    out.message(field::DOC_DEFINITIONS, defs);
    out.0
}

fn named_schema(name: &str, schema: &Value) -> Pb {
    let mut n = Pb::default();
    n.string(field::NAMED_NAME, name);
    n.message(field::NAMED_VALUE, encode_schema(schema));
    n
}

fn encode_schema(schema: &Value) -> Pb {
    let mut s = Pb::default();
    let Some(m) = schema.as_object() else {
        return s;
    };
    let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("");
    s.string(field::SCHEMA_REF, text("$ref"));
    s.string(field::SCHEMA_FORMAT, text("format"));
    s.string(field::SCHEMA_TITLE, text("title"));
    s.string(field::SCHEMA_DESCRIPTION, text("description"));
    for r in m
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        s.string(field::SCHEMA_REQUIRED, r.as_str().unwrap_or(""));
    }
    match m.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            let mut a = Pb::default();
            // proto3 writes a oneof's false too: it says which case is set.
            a.varint(u64::from(field::ONEOF_BOOLEAN) << 3);
            a.varint(u64::from(*b));
            s.message(field::SCHEMA_ADDITIONAL_PROPERTIES, a);
        }
        Some(v @ Value::Object(_)) => {
            let mut a = Pb::default();
            a.message(field::ONEOF_SCHEMA, encode_schema(v));
            s.message(field::SCHEMA_ADDITIONAL_PROPERTIES, a);
        }
        _ => {}
    }
    let types: Vec<&str> = match m.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .take(1)
            .collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() {
        let mut t = Pb::default();
        for ty in types {
            t.string(field::LIST_VALUE, ty);
        }
        s.message(field::SCHEMA_TYPE, t);
    }
    if let Some(items) = m.get("items").filter(|v| v.is_object()) {
        let mut i = Pb::default();
        i.message(field::LIST_VALUE, encode_schema(items));
        s.message(field::SCHEMA_ITEMS, i);
    }
    for a in m
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        s.message(field::SCHEMA_ALL_OF, encode_schema(a));
    }
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        let mut p = Pb::default();
        for (name, prop) in props {
            p.message(field::NAMED_ENTRIES, named_schema(name, prop));
        }
        s.message(field::SCHEMA_PROPERTIES, p);
    }
    for (k, v) in m.iter().filter(|(k, _)| k.starts_with("x-")) {
        let mut any = Pb::default();
        // JSON is YAML: the extension's value as text.
        any.string(field::ANY_YAML, &v.to_string());
        let mut named = Pb::default();
        named.string(field::NAMED_NAME, k);
        named.message(field::NAMED_VALUE, any);
        s.message(field::SCHEMA_VENDOR_EXTENSION, named);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_hold_every_kind_with_v2_refs() {
        let doc = document();
        let defs = doc["definitions"].as_object().unwrap();
        let review = &defs["io.k8s.api.authentication.v1.TokenReview"];
        assert_eq!(
            review["x-kubernetes-group-version-kind"][0]["kind"],
            "TokenReview"
        );
        assert_eq!(
            review["properties"]["spec"]["$ref"],
            "#/definitions/io.k8s.api.authentication.v1.TokenReviewSpec"
        );
        assert!(!review["required"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r == "metadata"));
        let pod = &defs["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            pod["properties"]["metadata"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        // No v3 reference is left anywhere.
        let text = serde_json::to_string(&doc).unwrap();
        assert!(!text.contains(V3_REF));
        // DeleteOptions is stamped for several groups.
        let gvks = defs["io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"]
            ["x-kubernetes-group-version-kind"]
            .as_array()
            .unwrap();
        assert!(gvks.len() > 3, "{gvks:?}");
    }

    #[test]
    fn protobuf_writes_varints_and_nested_messages() {
        let mut p = Pb::default();
        p.varint(300);
        assert_eq!(p.0, [0xac, 0x02]);
        let schema = json!({"type": "object", "required": ["a"],
                            "additionalProperties": false,
                            "properties": {"a": {"type": "string"}}});
        let bytes = encode_schema(&schema).0;
        // required = 19 (tag 0x9a 0x01), "a"
        assert!(bytes.windows(4).any(|w| w == [0x9a, 0x01, 1, b'a']));
        // additionalProperties = 21 { boolean = 2: false }
        assert!(bytes.windows(5).any(|w| w == [0xaa, 0x01, 2, 0x10, 0]));
        // type = 22 { value = 1: "object" }
        assert!(bytes.windows(5).any(|w| w == [0xb2, 0x01, 8, 0x0a, 6]));
    }
}
