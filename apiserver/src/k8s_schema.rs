//! The Kubernetes message schemas: for every message of the served API
//! packages, its fields' protobuf numbers and types, JSON names, whether a
//! zero value is meaningful, inlined embedded structs, and the list
//! semantics server-side apply needs (`+listType`, `+listMapKey`,
//! `patchMergeKey`).
//!
//! The table is `k8s_schema.txt`, generated from Kubernetes'
//! `generated.proto` and `types.go` files by
//! `apiserver/examples/gen_k8s_schema.rs` (its doc explains the format and
//! how to regenerate). It is parsed once, on first use, into a map from a
//! message's full proto name (`k8s.io.api.apps.v1.Deployment`) to its
//! fields. Readers: [`crate::protobuf`] (protobuf bodies → JSON) and
//! [`crate::apply`] (server-side apply's list merging).

use std::collections::HashMap;
use std::sync::OnceLock;

const TABLE: &str = include_str!("k8s_schema.txt");

/// A scalar protobuf type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scalar {
    /// `string`.
    String,
    /// `bytes` (base64 in JSON).
    Bytes,
    /// `bool`.
    Bool,
    /// Any varint integer (`int32`, `int64`, `uint32`, `uint64`).
    Int,
    /// `double` (fixed 64 bits).
    Double,
    /// `float` (fixed 32 bits).
    Float,
}

/// A field's type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Type {
    /// A scalar.
    Scalar(Scalar),
    /// A message, by full name.
    Message(&'static str),
    /// `map<K, V>`: JSON object keyed by the (string) key.
    Map(Box<Type>),
}

/// One field of a message.
#[derive(Clone, Debug)]
pub struct Field {
    /// Protobuf field number.
    pub num: u32,
    /// JSON name.
    pub json: &'static str,
    /// Type (of each element, for repeated fields).
    pub ty: Type,
    /// `repeated`: a JSON array.
    pub repeated: bool,
    /// A zero value is meaningful (Go pointer or JSON without
    /// `omitempty`): kept when decoding.
    pub keep_zero: bool,
    /// An embedded Go struct whose fields JSON inlines into the parent.
    pub inline: bool,
    /// `patchMergeKey` (strategic merge patch).
    pub merge_key: Option<&'static str>,
    /// `+listType` (`atomic`, `set`, `map`).
    pub list_type: Option<&'static str>,
    /// `+listMapKey`s of a `map` list.
    pub list_map_keys: Vec<&'static str>,
    /// `+mapType` (`atomic` or `granular`).
    pub map_type: Option<&'static str>,
}

/// One message.
#[derive(Clone, Debug, Default)]
pub struct Message {
    /// Full proto name.
    pub name: &'static str,
    /// A Go named slice wrapped in a message (`ExtraValue`): JSON is the
    /// list in field 1.
    pub wrap: bool,
    /// `+structType=atomic`: server-side apply owns it as one value.
    pub atomic: bool,
    /// Fields in table order.
    pub fields: Vec<Field>,
}

impl Message {
    /// The field with protobuf number `num`.
    pub fn by_num(&self, num: u32) -> Option<&Field> {
        self.fields.iter().find(|f| f.num == num)
    }

    /// The field with JSON name `name`, looking into inlined structs too.
    pub fn by_json(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find_map(|f| {
            if f.inline {
                match &f.ty {
                    Type::Message(m) => message(m)?.by_json(name),
                    _ => None,
                }
            } else {
                (f.json == name).then_some(f)
            }
        })
    }
}

fn scalar(s: &str) -> Option<Scalar> {
    Some(match s {
        "string" => Scalar::String,
        "bytes" => Scalar::Bytes,
        "bool" => Scalar::Bool,
        "int32" | "int64" | "uint32" | "uint64" => Scalar::Int,
        "double" => Scalar::Double,
        "float" => Scalar::Float,
        _ => return None,
    })
}

fn parse_type(s: &'static str) -> Type {
    if let Some(kv) = s.strip_prefix("map:") {
        let value = kv.split_once(':').map_or(kv, |(_, v)| v);
        return Type::Map(Box::new(parse_type(value)));
    }
    scalar(s).map_or(Type::Message(s), Type::Scalar)
}

fn parse(table: &'static str) -> HashMap<&'static str, Message> {
    let mut out = HashMap::new();
    let mut current: Option<Message> = None;
    for line in table.lines() {
        let mut w = line.split(' ');
        match w.next() {
            Some("M") => {
                if let Some(m) = current.take() {
                    out.insert(m.name, m);
                }
                let name = w.next().unwrap_or("");
                let flags: Vec<&str> = w.collect();
                current = Some(Message {
                    name,
                    wrap: flags.contains(&"wrap"),
                    atomic: flags.contains(&"atomic"),
                    fields: Vec::new(),
                });
            }
            Some("F") => {
                let (Some(m), Some(num), Some(json), Some(ty), Some(flags)) =
                    (current.as_mut(), w.next(), w.next(), w.next(), w.next())
                else {
                    continue;
                };
                let mut f = Field {
                    num: num.parse().unwrap_or(0),
                    json,
                    ty: parse_type(ty),
                    repeated: flags.contains('r'),
                    keep_zero: flags.contains('z'),
                    inline: flags.contains('i'),
                    merge_key: None,
                    list_type: None,
                    list_map_keys: Vec::new(),
                    map_type: None,
                };
                for extra in w {
                    match extra.split_once('=') {
                        Some(("mk", k)) => f.merge_key = Some(k),
                        Some(("lt", t)) => f.list_type = Some(t),
                        Some(("lk", ks)) => f.list_map_keys = ks.split(',').collect(),
                        Some(("mt", t)) => f.map_type = Some(t),
                        _ => {}
                    }
                }
                m.fields.push(f);
            }
            _ => {}
        }
    }
    if let Some(m) = current.take() {
        out.insert(m.name, m);
    }
    out
}

fn table() -> &'static HashMap<&'static str, Message> {
    static SCHEMA: OnceLock<HashMap<&'static str, Message>> = OnceLock::new();
    SCHEMA.get_or_init(|| parse(TABLE))
}

/// The message with full proto name `name`.
pub fn message(name: &str) -> Option<&'static Message> {
    table().get(name)
}

/// The proto package of an API version (`apps/v1` →
/// `k8s.io.api.apps.v1`, `v1` → `k8s.io.api.core.v1`): the group's first
/// DNS label names the package, as in kubernetes/api's layout.
pub fn package(api_version: &str) -> String {
    match api_version.split_once('/') {
        None => format!("k8s.io.api.core.{api_version}"),
        Some((group, version)) => {
            let first = group.split('.').next().unwrap_or(group);
            format!("k8s.io.api.{first}.{version}")
        }
    }
}

/// The top-level message of a kind (`apps/v1`, `Deployment`).
pub fn kind_message(api_version: &str, kind: &str) -> Option<&'static Message> {
    message(&format!("{}.{kind}", package(api_version)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_the_served_kinds_and_their_facts() {
        let d = kind_message("apps/v1", "Deployment").unwrap();
        assert_eq!(d.by_num(1).unwrap().json, "metadata");
        let spec = message("k8s.io.api.apps.v1.DeploymentSpec").unwrap();
        let replicas = spec.by_json("replicas").unwrap();
        assert_eq!((replicas.num, replicas.keep_zero), (1, true));
        let port = message("k8s.io.api.core.v1.Container")
            .unwrap()
            .by_json("ports")
            .unwrap();
        assert_eq!(port.list_type, Some("map"));
        assert_eq!(port.list_map_keys, vec!["containerPort", "protocol"]);
        // VolumeSource is inlined into Volume's JSON.
        let vol = message("k8s.io.api.core.v1.Volume").unwrap();
        assert!(vol.by_json("emptyDir").is_some());
        assert!(kind_message("rbac.authorization.k8s.io/v1", "Role").is_some());
        assert!(kind_message("autoscaling/v2", "HorizontalPodAutoscaler").is_some());
        assert!(
            message("k8s.io.api.authentication.v1.ExtraValue")
                .unwrap()
                .wrap
        );
        assert!(kind_message("v1", "NoSuchKind").is_none());
    }
}
