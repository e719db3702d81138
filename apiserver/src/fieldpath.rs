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
        out.members.extend(other.members.iter().cloned());
        for (e, c) in &other.children {
            if c.is_empty() {
                continue;
            }
            let merged = match out.children.get(e) {
                Some(mine) => mine.union(c),
                None => c.clone(),
            };
            out.children.insert(e.clone(), merged);
        }
        out
    }

    /// The paths in `self` but not in `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        self.filtered(other, false)
    }

    /// The paths in both.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        self.filtered(other, true)
    }

    /// The paths of `self` that are (`keep_common`) or are not in `other`,
    /// node by node rather than path by path.
    fn filtered(&self, other: &FieldSet, keep_common: bool) -> FieldSet {
        let empty = FieldSet::default();
        let mut out = FieldSet::default();
        for e in &self.members {
            if other.members.contains(e) == keep_common {
                out.members.insert(e.clone());
            }
        }
        for (e, c) in &self.children {
            let theirs = other.children.get(e).unwrap_or(&empty);
            let kept = c.filtered(theirs, keep_common);
            if !kept.is_empty() {
                out.children.insert(e.clone(), kept);
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

/// What a write changed between two versions of an object (see
/// [`crate::apply::update`]): `changed` holds the paths the new version
/// sets with another value than the old one (or whose list item is new),
/// `removed` the paths the old version set and the new one does not.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Set by the new version, with a different value.
    pub changed: FieldSet,
    /// Set by the old version only.
    pub removed: FieldSet,
}

/// An associative list holds two items with the same key: [`Changes`]
/// compares item by key, so the caller compares path by path instead.
#[derive(Debug)]
pub struct DuplicateKey;

/// A value as a field set sees it: a member, or a container of members.
enum Node<'a> {
    Member,
    Object(&'a Map<String, Value>),
    Assoc(
        &'a [Value],
        &'static [&'static str],
        Option<&'static Message>,
    ),
    Set(&'a [Value]),
}

/// Classifies `v` as [`walk`] treats it below the root.
fn node(v: &Value, shape: Shape) -> Node<'_> {
    match (v, shape) {
        (Value::Object(m), Shape::Struct(_) | Shape::Map(_) | Shape::Untyped) if !m.is_empty() => {
            Node::Object(m)
        }
        (Value::Array(a), Shape::Assoc(keys, item)) if !a.is_empty() => Node::Assoc(a, keys, item),
        (Value::Array(a), Shape::Set) if !a.is_empty() => Node::Set(a),
        _ => Node::Member,
    }
}

impl Changes {
    /// Compares two objects' fields, `keep` choosing which of their
    /// top-level keys count, at `path`: one walk over both, visiting only
    /// what either sets (the same result as comparing [`of_object`] of
    /// each path by path, without building either set).
    pub fn of_objects(
        &mut self,
        old: Option<&Map<String, Value>>,
        new: Option<&Map<String, Value>>,
        shape: Shape,
        keep: &dyn Fn(&str) -> bool,
        path: &mut Path,
    ) -> Result<(), DuplicateKey> {
        fn set<'a>(m: Option<&'a Map<String, Value>>, k: &str) -> Option<&'a Value> {
            m.and_then(|m| m.get(k)).filter(|v| !v.is_null())
        }
        for (k, v) in new.into_iter().flatten() {
            if v.is_null() || !keep(k) {
                continue;
            }
            path.push(format!("f:{k}"));
            let r = self.of_values(set(old, k), v, child_shape(shape, k), path);
            path.pop();
            r?;
        }
        for (k, v) in old.into_iter().flatten() {
            if v.is_null() || !keep(k) || set(new, k).is_some() {
                continue;
            }
            path.push(format!("f:{k}"));
            walk(v, child_shape(shape, k), path, &mut self.removed);
            path.pop();
        }
        Ok(())
    }

    /// Compares the values at `path` (`old`: none or null there).
    fn of_values(
        &mut self,
        old: Option<&Value>,
        new: &Value,
        shape: Shape,
        path: &mut Path,
    ) -> Result<(), DuplicateKey> {
        let old_node = old.map(|o| node(o, shape));
        match (node(new, shape), old_node) {
            (Node::Member, o) => {
                if old != Some(new) {
                    self.changed.insert(path);
                }
                if let (Some(old), Some(o)) = (old, o) {
                    if !matches!(o, Node::Member) {
                        walk(old, shape, path, &mut self.removed);
                    }
                }
            }
            (Node::Object(n), Some(Node::Object(o))) => {
                self.of_objects(Some(o), Some(n), shape, &|_| true, path)?;
            }
            (Node::Assoc(n, keys, item), Some(Node::Assoc(o, _, _))) => {
                self.of_assoc(o, n, keys, item_shape(item), path)?;
            }
            (Node::Set(n), Some(Node::Set(o))) => {
                let elements =
                    |items: &[Value]| -> Vec<Element> { items.iter().map(value_element).collect() };
                let (o, n) = (elements(o), elements(n));
                for e in n.iter().filter(|e| !o.contains(e)) {
                    path.push(e.clone());
                    self.changed.insert(path);
                    path.pop();
                }
                for e in o.iter().filter(|e| !n.contains(e)) {
                    path.push(e.clone());
                    self.removed.insert(path);
                    path.pop();
                }
            }
            (_, o) => {
                // A container where there was nothing, a member, or a
                // container of another kind: all of it is new.
                walk(new, shape, path, &mut self.changed);
                match (old, o) {
                    (Some(_), Some(Node::Member)) => self.removed.insert(path),
                    (Some(old), Some(_)) => walk(old, shape, path, &mut self.removed),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Compares two associative lists item by item, by key.
    fn of_assoc<'a>(
        &mut self,
        old: &'a [Value],
        new: &'a [Value],
        keys: &[&str],
        item: Shape,
        path: &mut Path,
    ) -> Result<(), DuplicateKey> {
        type Keyed<'a> = Vec<(Element, &'a Value)>;
        let keyed = |items: &'a [Value]| -> Result<Keyed<'a>, DuplicateKey> {
            let mut out: Keyed<'a> = Vec::with_capacity(items.len());
            for it in items {
                let Some(k) = key_element(keys, it) else {
                    continue;
                };
                if out.iter().any(|(seen, _)| *seen == k) {
                    return Err(DuplicateKey);
                }
                out.push((k, it));
            }
            Ok(out)
        };
        let (old, new) = (keyed(old)?, keyed(new)?);
        fn find<'a>(items: &[(Element, &'a Value)], k: &Element) -> Option<&'a Value> {
            items.iter().find(|(e, _)| e == k).map(|(_, v)| *v)
        }
        for (k, it) in &new {
            let before = find(&old, k);
            path.push(k.clone());
            if before.is_none() {
                path.push(".".into());
                self.changed.insert(path);
                path.pop();
            }
            let r = self.of_values(before, it, item, path);
            path.pop();
            r?;
        }
        for (k, it) in &old {
            if find(&new, k).is_some() {
                continue;
            }
            path.push(k.clone());
            path.push(".".into());
            self.removed.insert(path);
            path.pop();
            walk(it, item, path, &mut self.removed);
            path.pop();
        }
        Ok(())
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
