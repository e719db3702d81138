//! Decoding Kubernetes protobuf request bodies
//! (`application/vnd.kubernetes.protobuf`) into JSON objects, for every
//! kind in [`crate::k8s_schema`].
//!
//! client-go ≥ 1.32 defaults built-in types to protobuf, so kubectl's
//! typed requests (`kubectl create deployment|job|cronjob|service|quota|
//! priorityclass|role|…`, `kubectl expose`, `kubectl autoscale`) POST
//! protobuf; apply, label, patch and the rest send JSON. The envelope
//! (apimachinery's protobuf serializer) is the 4-byte magic `k8s\0`
//! followed by a `runtime.Unknown` message: `typeMeta` (1: apiVersion,
//! kind), `raw` (2: the object encoded per its `generated.proto`),
//! `contentEncoding` (3), `contentType` (4).
//!
//! The decoder walks the raw bytes with the kind's message schema and
//! builds the JSON the Go types would marshal to:
//! - JSON names and inlined embedded structs (`Volume` ← `VolumeSource`)
//!   come from the Go struct tags;
//! - gogo-protobuf writes every non-pointer field, zero or not, so a zero
//!   scalar is dropped unless the field is a Go pointer or has no
//!   `omitempty` ([`crate::k8s_schema::Field::keep_zero`]), which is what
//!   `encoding/json` would have produced;
//! - the apimachinery types with their own JSON form: `Time` and
//!   `MicroTime` (`{seconds, nanos}` → RFC 3339), `Duration` (nanoseconds
//!   → Go's `1h2m3s`), `Quantity` (its string), `IntOrString`,
//!   `RawExtension` and `FieldsV1` (embedded JSON bytes), and named string
//!   slices such as `ExtraValue` (a message wrapping the list);
//! - unknown field numbers are skipped, as a proto decoder does.
//!
//! Caveat: Skiff never *answers* in protobuf: clients that send it also
//! accept JSON (client-go's `Accept` lists both), and the answer's
//! `Content-Type` tells them which they got.

use base64::Engine;
use serde_json::{json, Map, Number, Value};

use crate::error::ApiError;
use crate::k8s_schema::{self, Field, Message, Scalar, Type};

/// The protobuf envelope's magic prefix (`k8s` and a zero byte).
pub const MAGIC: &[u8] = b"k8s\0";

/// Deepest message nesting accepted; Kubernetes objects nest far less
/// (a CronJob's container port is ~10 deep).
const MAX_DEPTH: usize = 64;

fn bad(why: &str) -> ApiError {
    ApiError::BadRequest(format!("couldn't decode protobuf body: {why}"))
}

/// A protobuf wire-format reader.
struct Reader<'a> {
    buf: &'a [u8],
}

/// A field's raw value by wire type.
#[derive(Clone, Copy)]
enum Raw<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
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
                let b = self.take(8)?;
                Raw::Fixed64(u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| bad("length too large"))?;
                Raw::Len(self.take(n)?)
            }
            5 => {
                let b = self.take(4)?;
                Raw::Fixed32(u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
            }
            w => return Err(bad(&format!("unsupported wire type {w}"))),
        };
        Ok(Some((num, raw)))
    }
}

fn string(bytes: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| bad("string is not UTF-8"))
}

/// Reads every field of a small message into (number, value) pairs.
fn fields(bytes: &[u8]) -> Result<Vec<(u32, Raw<'_>)>, ApiError> {
    let mut r = Reader { buf: bytes };
    let mut out = Vec::new();
    while let Some(f) = r.next()? {
        out.push(f);
    }
    Ok(out)
}

fn varint_of(fs: &[(u32, Raw<'_>)], num: u32) -> i64 {
    fs.iter()
        .rev()
        .find_map(|(n, r)| match r {
            Raw::Varint(v) if *n == num => Some(*v as i64),
            _ => None,
        })
        .unwrap_or(0)
}

fn bytes_of<'a>(fs: &[(u32, Raw<'a>)], num: u32) -> &'a [u8] {
    fs.iter()
        .rev()
        .find_map(|(n, r)| match r {
            Raw::Len(b) if *n == num => Some(*b),
            _ => None,
        })
        .unwrap_or(&[])
}

/// `meta.v1.Time` / `MicroTime`; the zero time is JSON `null`.
fn time(bytes: &[u8], micro: bool) -> Result<Value, ApiError> {
    let fs = fields(bytes)?;
    let (secs, nanos) = (varint_of(&fs, 1), varint_of(&fs, 2));
    if secs == 0 && nanos == 0 {
        return Ok(Value::Null);
    }
    let nanos = u32::try_from(nanos).map_err(|_| bad("time nanos out of range"))?;
    let t =
        chrono::DateTime::from_timestamp(secs, nanos).ok_or_else(|| bad("time out of range"))?;
    Ok(json!(if micro {
        t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    } else {
        crate::strategy::timestamp(t)
    }))
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `250ms`, `0s`.
pub fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let frac = |v: u64, unit: u64| {
        let (whole, rest) = (v / unit, v % unit);
        if rest == 0 {
            whole.to_string()
        } else {
            let width = unit.to_string().len() - 1;
            let s = format!("{whole}.{rest:0width$}");
            s.trim_end_matches('0').to_string()
        }
    };
    if n < 1_000 {
        return format!("{sign}{n}ns");
    }
    if n < 1_000_000 {
        return format!("{sign}{}µs", frac(n, 1_000));
    }
    if n < 1_000_000_000 {
        return format!("{sign}{}ms", frac(n, 1_000_000));
    }
    let (h, rest) = (n / 3_600_000_000_000, n % 3_600_000_000_000);
    let (m, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let s = frac(rest, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{sign}{s}s"),
        (0, m) => format!("{sign}{m}m{s}s"),
        (h, m) => format!("{sign}{h}h{m}m{s}s"),
    }
}

/// Embedded JSON bytes (`RawExtension.raw`, `FieldsV1.Raw`).
fn embedded_json(bytes: &[u8], what: &str) -> Result<Value, ApiError> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(bytes).map_err(|e| bad(&format!("{what} is not JSON: {e}")))
}

/// The JSON of a message whose Go type marshals specially, or `None` for
/// an ordinary message.
fn special(name: &str, bytes: &[u8]) -> Result<Option<Value>, ApiError> {
    const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.";
    let v = match name.strip_prefix(META) {
        Some("Time") => time(bytes, false)?,
        Some("MicroTime") => time(bytes, true)?,
        Some("Duration") => json!(go_duration(varint_of(&fields(bytes)?, 1))),
        Some("FieldsV1") => embedded_json(bytes_of(&fields(bytes)?, 1), "FieldsV1")?,
        _ => match name {
            "k8s.io.apimachinery.pkg.api.resource.Quantity" => {
                let s = string(bytes_of(&fields(bytes)?, 1))?;
                if s.is_empty() {
                    Value::Null
                } else {
                    json!(s)
                }
            }
            "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => {
                let fs = fields(bytes)?;
                match varint_of(&fs, 1) {
                    0 => json!(varint_of(&fs, 2) as i32),
                    _ => json!(string(bytes_of(&fs, 3))?),
                }
            }
            "k8s.io.apimachinery.pkg.runtime.RawExtension" => {
                embedded_json(bytes_of(&fields(bytes)?, 1), "RawExtension")?
            }
            _ => return Ok(None),
        },
    };
    Ok(Some(v))
}

/// Is this the zero value `encoding/json`'s `omitempty` would drop?
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(_) | Value::Object(_) => false,
    }
}

fn scalar(s: Scalar, raw: Raw<'_>, field: &str) -> Result<Value, ApiError> {
    Ok(match (s, raw) {
        (Scalar::String, Raw::Len(b)) => json!(string(b)?),
        (Scalar::Bytes, Raw::Len(b)) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        (Scalar::Bool, Raw::Varint(v)) => json!(v != 0),
        // int32 negatives arrive sign-extended to 64 bits.
        (Scalar::Int, Raw::Varint(v)) => json!(v as i64),
        (Scalar::Double, Raw::Fixed64(v)) => {
            Number::from_f64(f64::from_bits(v)).map_or(Value::Null, Value::Number)
        }
        (Scalar::Float, Raw::Fixed32(v)) => {
            Number::from_f64(f64::from(f32::from_bits(v))).map_or(Value::Null, Value::Number)
        }
        _ => return Err(bad(&format!("field {field} has the wrong wire type"))),
    })
}

/// One value of a field's type (an element, for repeated fields).
fn value(ty: &Type, raw: Raw<'_>, field: &str, depth: usize) -> Result<Value, ApiError> {
    match (ty, raw) {
        (Type::Scalar(s), raw) => scalar(*s, raw, field),
        (Type::Message(name), Raw::Len(b)) => {
            if let Some(v) = special(name, b)? {
                return Ok(v);
            }
            let m = k8s_schema::message(name)
                .ok_or_else(|| bad(&format!("no schema for message {name}")))?;
            message(b, m, depth + 1)
        }
        (Type::Map(v), Raw::Len(b)) => {
            let fs = fields(b)?;
            let key = string(bytes_of(&fs, 1))?;
            let val = match fs.iter().rev().find(|(n, _)| *n == 2) {
                Some((_, raw)) => value(v, *raw, field, depth)?,
                None => match **v {
                    Type::Scalar(Scalar::Int) => json!(0),
                    Type::Scalar(Scalar::Bool) => json!(false),
                    Type::Scalar(_) => json!(""),
                    _ => json!({}),
                },
            };
            Ok(json!({ key: val }))
        }
        _ => Err(bad(&format!("field {field} has the wrong wire type"))),
    }
}

/// Decodes one message into JSON by its schema.
fn message(bytes: &[u8], m: &Message, depth: usize) -> Result<Value, ApiError> {
    if depth > MAX_DEPTH {
        return Err(bad("messages nested too deeply"));
    }
    let mut out = Map::new();
    let mut r = Reader { buf: bytes };
    while let Some((num, raw)) = r.next()? {
        let Some(f) = m.by_num(num) else { continue };
        decode_field(f, raw, &mut out, depth)?;
    }
    if m.wrap {
        // `type ExtraValue []string`: the JSON is the list itself.
        let items = m.fields.first().map_or("items", |f| f.json);
        return Ok(out.remove(items).unwrap_or_else(|| json!([])));
    }
    Ok(Value::Object(out))
}

fn decode_field(
    f: &Field,
    raw: Raw<'_>,
    out: &mut Map<String, Value>,
    depth: usize,
) -> Result<(), ApiError> {
    // Packed repeated numbers (proto3 style) arrive as one length field.
    if let (true, Type::Scalar(s @ (Scalar::Int | Scalar::Bool)), Raw::Len(b)) =
        (f.repeated, &f.ty, raw)
    {
        let mut r = Reader { buf: b };
        while !r.buf.is_empty() {
            let v = scalar(*s, Raw::Varint(r.varint()?), f.json)?;
            push(out, f.json, v);
        }
        return Ok(());
    }
    let v = value(&f.ty, raw, f.json, depth)?;
    if f.inline {
        if let Value::Object(inner) = v {
            out.extend(inner);
        }
        return Ok(());
    }
    if let Type::Map(_) = f.ty {
        if let (Some(m), Value::Object(entry)) = (
            out.entry(f.json)
                .or_insert_with(|| json!({}))
                .as_object_mut(),
            v,
        ) {
            m.extend(entry);
        }
        return Ok(());
    }
    if f.repeated {
        push(out, f.json, v);
    } else if v.is_null() || (is_zero(&v) && !f.keep_zero) {
        // What `omitempty` (or a nil pointer) would have left out.
    } else {
        out.insert(f.json.to_string(), v);
    }
    Ok(())
}

fn push(out: &mut Map<String, Value>, name: &str, v: Value) {
    if let Some(a) = out.entry(name).or_insert_with(|| json!([])).as_array_mut() {
        a.push(v);
    }
}

/// Decodes a protobuf request body into a JSON object with `apiVersion`
/// and `kind` set.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing the k8s protobuf prefix"))?;
    let envelope = fields(rest)?;
    let type_meta = fields(bytes_of(&envelope, 1))?;
    let api_version = string(bytes_of(&type_meta, 1))?;
    let kind = string(bytes_of(&type_meta, 2))?;
    if !bytes_of(&envelope, 3).is_empty() {
        return Err(bad("content encodings are not supported"));
    }
    let m = k8s_schema::kind_message(&api_version, &kind).ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!(
            "Skiff has no protobuf schema for {api_version} {kind}; send application/json"
        ))
    })?;
    let mut obj = match message(bytes_of(&envelope, 2), m, 0)? {
        Value::Object(o) => o,
        _ => Map::new(),
    };
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    Ok(Value::Object(obj))
}

#[cfg(test)]
#[path = "protobuf_test.rs"]
mod tests;
