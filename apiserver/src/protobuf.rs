//! Decoding Kubernetes protobuf request bodies
//! (`application/vnd.kubernetes.protobuf`) into JSON objects, for the few
//! kinds stock kubectl sends that way.
//!
//! kubectl's typed clientset (client-go ≥ 1.32 defaults built-in types to
//! protobuf) POSTs protobuf for `kubectl create namespace|configmap|secret|
//! serviceaccount`; everything else kubectl does (apply, get, label,
//! delete, patch) is JSON. The envelope (apimachinery's protobuf
//! serializer) is the 4-byte magic `k8s\0` followed by a `runtime.Unknown`
//! message whose `raw` field holds the typed object encoded per its
//! `generated.proto`.
//!
//! Skiff has no protobuf schema at runtime, so the field numbers of the
//! kinds above (and `ObjectMeta`) are tabled here from the Kubernetes
//! `generated.proto` files. Caveat: any other kind in protobuf is a 415
//! asking for JSON; Skiff never *answers* in protobuf (clients always
//! accept JSON too).

use base64::Engine;
use serde_json::{json, Map, Value};

use crate::error::ApiError;

/// The protobuf envelope's magic prefix (`k8s` and a zero byte).
pub const MAGIC: &[u8] = b"k8s\0";

/// A field's type, enough for the tabled kinds.
#[derive(Clone, Copy)]
enum Ty {
    Str,
    Int,
    Bool,
    /// `meta.v1.Time`: `{seconds, nanos}` → RFC 3339.
    Time,
    Msg(&'static [Field]),
    MapStr,
    MapBytes,
}

/// One field of a message: number, JSON name, type, repeated or not.
#[derive(Clone, Copy)]
struct Field(u32, &'static str, Ty, bool);

const OWNER_REFERENCE: &[Field] = &[
    Field(5, "apiVersion", Ty::Str, false),
    Field(1, "kind", Ty::Str, false),
    Field(3, "name", Ty::Str, false),
    Field(4, "uid", Ty::Str, false),
    Field(6, "controller", Ty::Bool, false),
    Field(7, "blockOwnerDeletion", Ty::Bool, false),
];

// meta/v1 ObjectMeta; managedFields (17) is server-owned and skipped.
const OBJECT_META: &[Field] = &[
    Field(1, "name", Ty::Str, false),
    Field(2, "generateName", Ty::Str, false),
    Field(3, "namespace", Ty::Str, false),
    Field(5, "uid", Ty::Str, false),
    Field(6, "resourceVersion", Ty::Str, false),
    Field(7, "generation", Ty::Int, false),
    Field(8, "creationTimestamp", Ty::Time, false),
    Field(9, "deletionTimestamp", Ty::Time, false),
    Field(10, "deletionGracePeriodSeconds", Ty::Int, false),
    Field(11, "labels", Ty::MapStr, false),
    Field(12, "annotations", Ty::MapStr, false),
    Field(13, "ownerReferences", Ty::Msg(OWNER_REFERENCE), true),
    Field(14, "finalizers", Ty::Str, true),
];

const NAMESPACE_CONDITION: &[Field] = &[
    Field(1, "type", Ty::Str, false),
    Field(2, "status", Ty::Str, false),
    Field(4, "lastTransitionTime", Ty::Time, false),
    Field(5, "reason", Ty::Str, false),
    Field(6, "message", Ty::Str, false),
];

const NAMESPACE: &[Field] = &[
    Field(1, "metadata", Ty::Msg(OBJECT_META), false),
    Field(
        2,
        "spec",
        Ty::Msg(&[Field(1, "finalizers", Ty::Str, true)]),
        false,
    ),
    Field(
        3,
        "status",
        Ty::Msg(&[
            Field(1, "phase", Ty::Str, false),
            Field(2, "conditions", Ty::Msg(NAMESPACE_CONDITION), true),
        ]),
        false,
    ),
];

const CONFIG_MAP: &[Field] = &[
    Field(1, "metadata", Ty::Msg(OBJECT_META), false),
    Field(4, "immutable", Ty::Bool, false),
    Field(2, "data", Ty::MapStr, false),
    Field(3, "binaryData", Ty::MapBytes, false),
];

const SECRET: &[Field] = &[
    Field(1, "metadata", Ty::Msg(OBJECT_META), false),
    Field(5, "immutable", Ty::Bool, false),
    Field(2, "data", Ty::MapBytes, false),
    Field(4, "stringData", Ty::MapStr, false),
    Field(3, "type", Ty::Str, false),
];

const OBJECT_REFERENCE: &[Field] = &[
    Field(1, "kind", Ty::Str, false),
    Field(2, "namespace", Ty::Str, false),
    Field(3, "name", Ty::Str, false),
    Field(4, "uid", Ty::Str, false),
    Field(5, "apiVersion", Ty::Str, false),
    Field(6, "resourceVersion", Ty::Str, false),
    Field(7, "fieldPath", Ty::Str, false),
];

const SERVICE_ACCOUNT: &[Field] = &[
    Field(1, "metadata", Ty::Msg(OBJECT_META), false),
    Field(2, "secrets", Ty::Msg(OBJECT_REFERENCE), true),
    Field(
        3,
        "imagePullSecrets",
        Ty::Msg(&[Field(1, "name", Ty::Str, false)]),
        true,
    ),
    Field(4, "automountServiceAccountToken", Ty::Bool, false),
];

const TYPE_META: &[Field] = &[
    Field(1, "apiVersion", Ty::Str, false),
    Field(2, "kind", Ty::Str, false),
];

fn bad(why: &str) -> ApiError {
    ApiError::BadRequest(format!("couldn't decode protobuf body: {why}"))
}

/// A protobuf wire-format reader.
struct Reader<'a> {
    buf: &'a [u8],
}

/// A field's raw value.
enum Raw<'a> {
    Varint(u64),
    /// A fixed32/fixed64 value: no tabled field uses one; skipped.
    Fixed,
    Len(&'a [u8]),
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ApiError> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or_else(|| bad("truncated varint"))?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad("varint too long"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ApiError> {
        if self.buf.len() < n {
            return Err(bad("truncated field"));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    /// The next (field number, value), `None` at the end.
    fn next(&mut self) -> Result<Option<(u32, Raw<'a>)>, ApiError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let num = u32::try_from(key >> 3).map_err(|_| bad("field number too large"))?;
        let raw = match key & 7 {
            0 => Raw::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Raw::Fixed
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| bad("length too large"))?;
                Raw::Len(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Raw::Fixed
            }
            w => return Err(bad(&format!("unsupported wire type {w}"))),
        };
        Ok(Some((num, raw)))
    }
}

fn string(bytes: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| bad("string is not UTF-8"))
}

fn time(bytes: &[u8]) -> Result<Value, ApiError> {
    let mut r = Reader { buf: bytes };
    let (mut secs, mut nanos) = (0i64, 0i64);
    while let Some((n, v)) = r.next()? {
        match (n, v) {
            (1, Raw::Varint(s)) => secs = s as i64,
            (2, Raw::Varint(ns)) => nanos = ns as i64,
            _ => {}
        }
    }
    if secs == 0 && nanos == 0 {
        return Ok(Value::Null);
    }
    let t = chrono::DateTime::from_timestamp(secs, 0).ok_or_else(|| bad("time out of range"))?;
    Ok(json!(crate::strategy::timestamp(t)))
}

fn map_entry(bytes: &[u8], value_bytes: bool) -> Result<(String, Value), ApiError> {
    let mut r = Reader { buf: bytes };
    let (mut k, mut v) = (String::new(), json!(""));
    while let Some((n, raw)) = r.next()? {
        match (n, raw) {
            (1, Raw::Len(b)) => k = string(b)?,
            (2, Raw::Len(b)) if value_bytes => {
                v = json!(base64::engine::general_purpose::STANDARD.encode(b))
            }
            (2, Raw::Len(b)) => v = json!(string(b)?),
            _ => {}
        }
    }
    Ok((k, v))
}

/// Decodes one message by its field table; zero values of strings and
/// times are dropped, as JSON's `omitempty` would.
fn message(bytes: &[u8], fields: &[Field]) -> Result<Map<String, Value>, ApiError> {
    let mut out = Map::new();
    let mut r = Reader { buf: bytes };
    while let Some((num, raw)) = r.next()? {
        // Unknown fields are skipped, as a proto decoder does.
        let Some(Field(_, name, ty, repeated)) = fields.iter().find(|f| f.0 == num).copied() else {
            continue;
        };
        let value = match (ty, raw) {
            (Ty::Str, Raw::Len(b)) => json!(string(b)?),
            (Ty::Int, Raw::Varint(v)) => json!(v as i64),
            (Ty::Bool, Raw::Varint(v)) => json!(v != 0),
            (Ty::Time, Raw::Len(b)) => time(b)?,
            (Ty::Msg(f), Raw::Len(b)) => Value::Object(message(b, f)?),
            (Ty::MapStr | Ty::MapBytes, Raw::Len(b)) => {
                let (k, v) = map_entry(b, matches!(ty, Ty::MapBytes))?;
                let entry = out.entry(name).or_insert_with(|| json!({}));
                if let Some(m) = entry.as_object_mut() {
                    m.insert(k, v);
                }
                continue;
            }
            _ => return Err(bad(&format!("field {name} has the wrong wire type"))),
        };
        if value.is_null() || (value.as_str() == Some("") && !repeated) {
            continue;
        }
        if repeated {
            if let Some(a) = out.entry(name).or_insert_with(|| json!([])).as_array_mut() {
                a.push(value);
            }
        } else {
            out.insert(name.to_string(), value);
        }
    }
    Ok(out)
}

/// The field table of a kind sent in protobuf.
fn schema(api_version: &str, kind: &str) -> Option<&'static [Field]> {
    match (api_version, kind) {
        ("v1", "Namespace") => Some(NAMESPACE),
        ("v1", "ConfigMap") => Some(CONFIG_MAP),
        ("v1", "Secret") => Some(SECRET),
        ("v1", "ServiceAccount") => Some(SERVICE_ACCOUNT),
        _ => None,
    }
}

/// Decodes a protobuf request body into a JSON object with `apiVersion`
/// and `kind` set.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing the k8s protobuf prefix"))?;
    let mut r = Reader { buf: rest };
    let (mut type_meta, mut raw): (Map<String, Value>, &[u8]) = (Map::new(), &[]);
    while let Some((n, v)) = r.next()? {
        match (n, v) {
            (1, Raw::Len(b)) => type_meta = message(b, TYPE_META)?,
            (2, Raw::Len(b)) => raw = b,
            (3, Raw::Len(b)) if !b.is_empty() => {
                return Err(bad("content encodings are not supported"))
            }
            _ => {}
        }
    }
    let api_version = type_meta
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = type_meta
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let fields = schema(&api_version, &kind).ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!(
            "Skiff accepts protobuf bodies only for v1 Namespace, ConfigMap, Secret and ServiceAccount (got {api_version} {kind}); send application/json"
        ))
    })?;
    let mut obj = message(raw, fields)?;
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn field(num: u32, bytes: &[u8], out: &mut Vec<u8>) {
        varint(u64::from(num) << 3 | 2, out);
        varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }

    /// What client-go sends for `kubectl create namespace demo`, built by
    /// hand: empty strings and an empty Time are encoded too (gogo
    /// protobuf writes non-pointer fields always).
    #[test]
    fn namespace_from_kubectl_create() {
        let mut meta = Vec::new();
        field(1, b"demo", &mut meta);
        field(2, b"", &mut meta);
        field(8, b"", &mut meta);
        let mut label = Vec::new();
        field(1, b"team", &mut label);
        field(2, b"a", &mut label);
        field(11, &label, &mut meta);
        let mut ns = Vec::new();
        field(1, &meta, &mut ns);
        field(2, b"", &mut ns);
        let mut status = Vec::new();
        field(1, b"", &mut status);
        field(3, &status, &mut ns);
        let mut tm = Vec::new();
        field(1, b"v1", &mut tm);
        field(2, b"Namespace", &mut tm);
        let mut unknown = Vec::new();
        field(1, &tm, &mut unknown);
        field(2, &ns, &mut unknown);
        field(3, b"", &mut unknown);
        let mut body = MAGIC.to_vec();
        body.extend(unknown);

        let v = decode(&body).unwrap();
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["kind"], "Namespace");
        assert_eq!(
            v["metadata"],
            json!({"name": "demo", "labels": {"team": "a"}})
        );
        assert_eq!(v["spec"], json!({}));
    }

    #[test]
    fn other_kinds_and_garbage() {
        let mut tm = Vec::new();
        field(1, b"v1", &mut tm);
        field(2, b"Pod", &mut tm);
        let mut unknown = Vec::new();
        field(1, &tm, &mut unknown);
        let mut body = MAGIC.to_vec();
        body.extend(unknown);
        assert_eq!(decode(&body).unwrap_err().status_code(), 415);
        assert_eq!(decode(b"nope").unwrap_err().status_code(), 400);
        assert_eq!(decode(b"k8s\0\x0a\xff").unwrap_err().status_code(), 400);
    }
}
