//! Field sets for server-side apply: which fields of an object a manager
//! owns, in structured-merge-diff's model and its `FieldsV1` encoding
//! (the `metadata.managedFields[].fieldsV1` JSON).
//!
//! A path is a sequence of [`Element`]s: a struct field or map key
//! (`f:name`), an item of an associative list by its key fields
//! (`k:{"name":"web"}`), an element of a set-list by value (`v:"a"`).
//! A [`FieldSet`] is a tree: at each node, the elements that are
//! *members* (owned as a whole: a scalar, an atomic value, a list item's
//! existence, written `.` inside the item) and the elements with owned
//! *children*.
//!
//! ```text
//!  {"f:spec": {"f:replicas": {},
//!              "f:template": {"f:spec": {"f:containers": {
//!                  "k:{\"name\":\"web\"}": {".": {}, "f:image": {}}}}}}}
//! ```
//!
//! [`of_object`] builds the set of every leaf an object sets, walking it
//! with the kind's schema ([`crate::k8s_schema`]) to know which values
//! are atomic and how lists are keyed.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::k8s_schema::{self, Field, Message, Type};

/// One step of a field path, spelled as in `FieldsV1` (`f:…`, `k:…`,
/// `v:…`).
pub type Element = String;

/// A set of field paths, as a tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    /// Elements owned as a whole at this level.
    pub members: std::collections::BTreeSet<Element>,
    /// Elements under which some paths are owned.
    pub children: BTreeMap<Element, FieldSet>,
}

/// A path: the elements from the object's root.
pub type Path = Vec<Element>;

impl FieldSet {
    /// No paths at all.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.values().all(FieldSet::is_empty)
    }

    /// Adds one path (a member at its end).
    pub fn insert(&mut self, path: &[Element]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// Whether `path` is a member.
    pub fn contains(&self, path: &[Element]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.contains(rest)),
        }
    }

    /// Whether any member is `path` or below it.
    pub fn has_prefix(&self, path: &[Element]) -> bool {
        match path {
            [] => !self.is_empty(),
            [first, rest @ ..] => {
                (rest.is_empty() && self.members.contains(first))
                    || self.children.get(first).is_some_and(|c| c.has_prefix(rest))
            }
        }
    }

    /// Every member path, depth first in element order.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        let mut names: Vec<&Element> = self.members.iter().chain(self.children.keys()).collect();
        names.sort();
        names.dedup();
        for e in names {
            prefix.push(e.clone());
            if self.members.contains(e) {
                out.push(prefix.clone());
            }
            if let Some(c) = self.children.get(e) {
                c.collect(prefix, out);
            }
            prefix.pop();
        }
    }

    /// The paths in `self` or `other`.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        for p in other.paths() {
            out.insert(&p);
        }
        out
    }

    /// The paths in `self` but not in `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::default();
        for p in self.paths() {
            if !other.contains(&p) {
                out.insert(&p);
            }
        }
        out
    }

    /// The paths in both.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::default();
        for p in self.paths() {
            if other.contains(&p) {
                out.insert(&p);
            }
        }
        out
    }

    /// The `FieldsV1` JSON of this set: a member is `{}`, a node with
    /// owned children is their object (with `"."` when the node itself is
    /// owned too).
    pub fn to_fields_v1(&self) -> Value {
        let mut out = Map::new();
        for (e, c) in &self.children {
            if c.is_empty() {
                continue;
            }
            let mut v = c.to_fields_v1();
            if self.members.contains(e) {
                if let Some(m) = v.as_object_mut() {
                    m.insert(".".into(), json!({}));
                }
            }
            out.insert(e.clone(), v);
        }
        for e in &self.members {
            out.entry(e.clone()).or_insert_with(|| json!({}));
        }
        Value::Object(out)
    }

    /// Parses `FieldsV1` JSON; anything but objects is ignored.
    pub fn from_fields_v1(v: &Value) -> FieldSet {
        let mut out = FieldSet::default();
        let Some(m) = v.as_object() else { return out };
        for (k, child) in m {
            match child.as_object() {
                Some(inner) if !inner.is_empty() => {
                    out.children
                        .insert(k.clone(), FieldSet::from_fields_v1(child));
                }
                _ => {
                    out.members.insert(k.clone());
                }
            }
        }
        out
    }
}

/// How a value at some place in an object is structured, from the schema.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// A struct (granular), by its message.
    Struct(&'static Message),
    /// A granular map whose values have this element shape.
    Map(Option<&'static Type>),
    /// An associative list keyed by these fields, items of this message.
    Assoc(&'static [&'static str], Option<&'static Message>),
    /// A list of scalars merged as a set.
    Set,
    /// Owned as one value.
    Atomic,
    /// No schema (unknown kind or field): objects granular, lists atomic.
    Untyped,
}

fn message_shape(name: &str) -> Shape {
    const SCALAR_LIKE: &[&str] = &[
        "k8s.io.apimachinery.pkg.apis.meta.v1.Time",
        "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime",
        "k8s.io.apimachinery.pkg.apis.meta.v1.Duration",
        "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1",
        "k8s.io.apimachinery.pkg.api.resource.Quantity",
        "k8s.io.apimachinery.pkg.util.intstr.IntOrString",
        "k8s.io.apimachinery.pkg.runtime.RawExtension",
    ];
    if SCALAR_LIKE.contains(&name) {
        return Shape::Atomic;
    }
    match k8s_schema::message(name) {
        Some(m) if m.atomic || m.wrap => Shape::Atomic,
        Some(m) => Shape::Struct(m),
        None => Shape::Untyped,
    }
}

/// The shape of one element of a type (map value or list item).
fn type_shape(ty: &'static Type) -> Shape {
    match ty {
        Type::Scalar(_) => Shape::Atomic,
        Type::Message(m) => message_shape(m),
        Type::Map(v) => Shape::Map(Some(v)),
    }
}

/// The shape of a field's value.
pub fn field_shape(f: &'static Field) -> Shape {
    if f.repeated {
        let item = match &f.ty {
            Type::Message(m) => k8s_schema::message(m),
            _ => None,
        };
        let keys: &'static [&'static str] = if !f.list_map_keys.is_empty() {
            &f.list_map_keys
        } else {
            f.merge_key.as_slice()
        };
        return match f.list_type {
            Some("map") if !keys.is_empty() => Shape::Assoc(keys, item),
            Some("set") => Shape::Set,
            None if !keys.is_empty() && item.is_some() => Shape::Assoc(keys, item),
            _ => Shape::Atomic,
        };
    }
    match &f.ty {
        Type::Map(_) if f.map_type == Some("atomic") => Shape::Atomic,
        Type::Map(v) => Shape::Map(Some(v)),
        Type::Scalar(_) => Shape::Atomic,
        Type::Message(m) => message_shape(m),
    }
}

/// The shape of a child of a value of shape `shape`, by JSON key.
pub fn child_shape(shape: Shape, key: &str) -> Shape {
    match shape {
        Shape::Struct(m) => m.by_json(key).map_or(Shape::Untyped, field_shape),
        Shape::Map(Some(t)) => type_shape(t),
        Shape::Map(None) | Shape::Untyped => Shape::Untyped,
        _ => Shape::Atomic,
    }
}

/// The shape of an item of an associative list.
pub fn item_shape(item: Option<&'static Message>) -> Shape {
    item.map_or(Shape::Untyped, |m| message_shape(m.name))
}

/// The top-level shape of a kind.
pub fn kind_shape(api_version: &str, kind: &str) -> Shape {
    k8s_schema::kind_message(api_version, kind).map_or(Shape::Untyped, Shape::Struct)
}

/// The `k:` element of an associative-list item: its key fields, sorted,
/// as compact JSON. A missing `protocol` key is Kubernetes' default TCP
/// (ports are keyed by port and protocol, and the default is in the
/// schema).
pub fn key_element(keys: &[&str], item: &Value) -> Option<Element> {
    let mut sorted: Vec<&str> = keys.to_vec();
    sorted.sort_unstable();
    let mut m = Map::new();
    for k in sorted {
        match item.get(k) {
            Some(v) if !v.is_null() => {
                m.insert(k.to_string(), v.clone());
            }
            _ if k == "protocol" => {
                m.insert(k.to_string(), json!("TCP"));
            }
            _ => {}
        }
    }
    if m.is_empty() {
        return None;
    }
    Some(format!("k:{}", Value::Object(m)))
}

/// The `v:` element of a set-list value.
pub fn value_element(v: &Value) -> Element {
    format!("v:{v}")
}

/// Every leaf `obj` sets, as a field set (structured-merge-diff's
/// `ToFieldSet`). Empty objects are members (an `emptyDir: {}` is owned).
pub fn of_object(obj: &Value, shape: Shape) -> FieldSet {
    let mut set = FieldSet::default();
    walk(obj, shape, &mut Vec::new(), &mut set);
    set
}

fn walk(v: &Value, shape: Shape, path: &mut Path, set: &mut FieldSet) {
    match (v, shape) {
        (Value::Object(m), Shape::Struct(_) | Shape::Map(_) | Shape::Untyped) => {
            if m.is_empty() && !path.is_empty() {
                set.insert(path);
            }
            for (k, child) in m {
                if child.is_null() {
                    continue;
                }
                path.push(format!("f:{k}"));
                walk(child, child_shape(shape, k), path, set);
                path.pop();
            }
        }
        (Value::Array(items), Shape::Assoc(keys, item)) => {
            if items.is_empty() {
                set.insert(path);
            }
            for it in items {
                let Some(k) = key_element(keys, it) else {
                    continue;
                };
                path.push(k);
                path.push(".".into());
                set.insert(path);
                path.pop();
                walk(it, item_shape(item), path, set);
                path.pop();
            }
        }
        (Value::Array(items), Shape::Set) => {
            if items.is_empty() {
                set.insert(path);
            }
            for it in items {
                path.push(value_element(it));
                set.insert(path);
                path.pop();
            }
        }
        _ => {
            if !path.is_empty() {
                set.insert(path);
            }
        }
    }
}

/// The value at `path` in `obj` (`.` is the item itself).
pub fn get<'a>(obj: &'a Value, path: &[Element], shape: Shape) -> Option<&'a Value> {
    let Some((first, rest)) = path.split_first() else {
        return Some(obj);
    };
    if first == "." {
        return Some(obj);
    }
    if let Some(name) = first.strip_prefix("f:") {
        let child = obj.get(name)?;
        return get(child, rest, child_shape(shape, name));
    }
    let items = obj.as_array()?;
    if first.starts_with("k:") {
        let Shape::Assoc(keys, item) = shape else {
            return None;
        };
        let it = items
            .iter()
            .find(|i| key_element(keys, i).as_deref() == Some(first.as_str()))?;
        return get(it, rest, item_shape(item));
    }
    if first.starts_with("v:") {
        return items.iter().find(|i| &value_element(i) == first);
    }
    None
}

/// Removes the value at `path` from `obj`; whether something was removed.
pub fn remove(obj: &mut Value, path: &[Element], shape: Shape) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    if let Some(name) = first.strip_prefix("f:") {
        let Some(m) = obj.as_object_mut() else {
            return false;
        };
        if rest.is_empty() {
            return m.remove(name).is_some();
        }
        let cs = child_shape(shape, name);
        return m.get_mut(name).is_some_and(|c| remove(c, rest, cs));
    }
    let Some(items) = obj.as_array_mut() else {
        return false;
    };
    if first.starts_with("v:") {
        let before = items.len();
        items.retain(|i| &value_element(i) != first);
        return items.len() != before;
    }
    let Shape::Assoc(keys, item) = shape else {
        return false;
    };
    let Some(pos) = items
        .iter()
        .position(|i| key_element(keys, i).as_deref() == Some(first.as_str()))
    else {
        return false;
    };
    if rest == ["."] {
        items.remove(pos);
        return true;
    }
    remove(&mut items[pos], rest, item_shape(item))
}

/// A path as structured-merge-diff prints it in conflict messages:
/// `.spec.template.spec.containers[name="web"].image`.
pub fn display(path: &[Element]) -> String {
    let mut out = String::new();
    for e in path {
        if let Some(f) = e.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = e.strip_prefix("k:") {
            let keys: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = e.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        }
    }
    out
}
