//! Server-side apply and field ownership (`metadata.managedFields`): a
//! pure core over JSON objects, in the model of Kubernetes'
//! structured-merge-diff.
//!
//! ```text
//!  apply(live, config, managedFields, manager, force)
//!     applied  = fields set by config                   fieldpath::of_object
//!     merged   = live ⊕ config  (lists by their keys)   merge
//!     conflicts: fields of applied owned by another manager whose value
//!                the apply changes → 409, unless force (then they move)
//!     pruned   = fields this manager applied last time and no longer
//!                applies, owned by nobody else → removed from merged
//!     managedFields: the manager's Apply entry = applied
//!
//!  update(old, new, managedFields, manager)            (create/PUT/PATCH)
//!     changed  = fields new sets with another value than old
//!     removed  = fields old set and new does not
//!     the manager's Update entry gains changed; every entry loses removed,
//!     the others lose changed
//! ```
//!
//! `update` finds `changed` and `removed` in one walk over both versions
//! ([`fieldpath::Changes`]), visiting only what either sets, rather than
//! building both field sets and looking every path up from the root; an
//! associative list with a repeated key (which one walk cannot pair) falls
//! back to the path-by-path comparison. Every PATCH and PUT pays this, so
//! it was ~10% of a busy server's CPU.
//!
//! Lists merge as their schema says ([`crate::fieldpath::Shape`]):
//! `+listType=map` lists by their `+listMapKey`s (containers by name,
//! container ports by containerPort and protocol, env by name), lists
//! with only a `patchMergeKey` by that key, `+listType=set` by value, and
//! every other list, `+structType=atomic` struct (LabelSelector) and
//! `+mapType=atomic` map as one value.
//!
//! Not tracked, as in Kubernetes: `apiVersion`, `kind`, the server-set
//! metadata (`name`, `namespace`, `uid`, `resourceVersion`, `generation`,
//! `creationTimestamp`, `deletionTimestamp`, `managedFields`, …), and
//! `status` on the main resource (only `status` on the status
//! subresource).
//!
//! Caveats: one field set per manager and operation, with no conversion
//! between API versions (an object is served in one version, except HPAs,
//! whose v1 requests are tracked in v2 terms); no `.` members on maps
//! created by updates; a conflict's value comparison is JSON equality
//! (a Quantity written `1` vs `1000m` differs).

use serde_json::{json, Map, Value};

use crate::fieldpath::{self, child_shape, item_shape, key_element, FieldSet, Path, Shape};

/// `metadata` fields the server owns; never in a field set.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// One manager's claim that an apply would change a field it owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The manager as Kubernetes prints it: `"name"`, with `using
    /// <apiVersion>` for Update entries.
    pub manager: String,
    /// The field, as structured-merge-diff prints it (`.spec.replicas`).
    pub field: String,
}

/// The 409 message Kubernetes writes for a set of conflicts.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [one] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            one.manager, one.field
        );
    }
    let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
    managers.sort_unstable();
    managers.dedup();
    let mut lines = Vec::new();
    for m in managers {
        lines.push(format!("conflicts with {m}:"));
        for c in conflicts.iter().filter(|c| c.manager == m) {
            lines.push(format!("- {}", c.field));
        }
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// Who writes, for the `managedFields` entry.
#[derive(Clone, Debug)]
pub struct Writer<'a> {
    /// `fieldManager` (or the default derived from the User-Agent).
    pub manager: &'a str,
    /// The object's apiVersion.
    pub api_version: &'a str,
    /// The write's time (RFC 3339).
    pub time: &'a str,
    /// `Some("status")` for the status subresource.
    pub subresource: Option<&'a str>,
}

/// A parsed `managedFields` entry.
struct Entry {
    raw: Map<String, Value>,
    set: FieldSet,
}

impl Entry {
    fn parse(v: &Value) -> Option<Entry> {
        let raw = v.as_object()?.clone();
        let set = FieldSet::from_fields_v1(raw.get("fieldsV1").unwrap_or(&Value::Null));
        Some(Entry { raw, set })
    }

    fn get(&self, k: &str) -> &str {
        self.raw.get(k).and_then(Value::as_str).unwrap_or("")
    }

    fn is(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.get("manager") == manager
            && self.get("operation") == operation
            && self.get("subresource") == subresource.unwrap_or("")
    }

    /// How Kubernetes names this manager in a conflict.
    fn printed(&self) -> String {
        let mut s = format!("{:?}", self.get("manager"));
        if !self.get("subresource").is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.get("subresource")));
        }
        if self.get("operation") == "Update" {
            s.push_str(&format!(" using {}", self.get("apiVersion")));
            if !self.get("time").is_empty() {
                s.push_str(&format!(" at {}", self.get("time")));
            }
        }
        s
    }

    fn into_value(mut self) -> Value {
        self.raw.insert("fieldsType".into(), json!("FieldsV1"));
        self.raw.insert("fieldsV1".into(), self.set.to_fields_v1());
        Value::Object(self.raw)
    }
}

fn entries(managed: &[Value]) -> Vec<Entry> {
    managed.iter().filter_map(Entry::parse).collect()
}

fn new_entry(w: &Writer<'_>, operation: &str, set: FieldSet) -> Entry {
    let mut raw = Map::new();
    raw.insert("manager".into(), json!(w.manager));
    raw.insert("operation".into(), json!(operation));
    raw.insert("apiVersion".into(), json!(w.api_version));
    raw.insert("time".into(), json!(w.time));
    if let Some(s) = w.subresource {
        raw.insert("subresource".into(), json!(s));
    }
    Entry { raw, set }
}

/// The part of an object whose fields are tracked for a write to the main
/// resource or to a subresource.
pub fn tracked(obj: &Value, subresource: Option<&str>) -> Value {
    let mut t = obj.clone();
    let Some(m) = t.as_object_mut() else {
        return t;
    };
    m.remove("apiVersion");
    m.remove("kind");
    match subresource {
        Some("status") => m.retain(|k, _| k == "status"),
        _ => {
            m.remove("status");
        }
    }
    if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.retain(|k, _| !SERVER_METADATA.contains(&k.as_str()));
    }
    if m.get("metadata")
        .and_then(Value::as_object)
        .is_some_and(Map::is_empty)
    {
        m.remove("metadata");
    }
    t
}

/// What a write changed in the tracked part of an object ([`tracked`]),
/// in one walk over both versions; `None` when that cannot say (an
/// associative list with two items of one key, or a `metadata` that is
/// not an object).
fn changes(
    old: &Value,
    new: &Value,
    subresource: Option<&str>,
    shape: Shape,
) -> Option<fieldpath::Changes> {
    let (old, new) = (old.as_object()?, new.as_object()?);
    fn meta(m: &Map<String, Value>) -> Option<Option<&Map<String, Value>>> {
        match m.get("metadata") {
            None | Some(Value::Null) => Some(None),
            Some(Value::Object(meta)) => Some(Some(meta)),
            Some(_) => None,
        }
    }
    let (old_meta, new_meta) = (meta(old)?, meta(new)?);
    let status_only = subresource == Some("status");
    let top = |k: &str| match k {
        "status" => status_only,
        "apiVersion" | "kind" | "metadata" => false,
        _ => !status_only,
    };
    let mut out = fieldpath::Changes::default();
    let mut path = Path::new();
    out.of_objects(Some(old), Some(new), shape, &top, &mut path)
        .ok()?;
    if !status_only {
        // `tracked` drops an emptied `metadata`: no member of its own.
        let server_set = |k: &str| !SERVER_METADATA.contains(&k);
        path.push("f:metadata".into());
        out.of_objects(
            old_meta,
            new_meta,
            child_shape(shape, "metadata"),
            &server_set,
            &mut path,
        )
        .ok()?;
    }
    Some(out)
}

/// [`changes`] the slow way: both field sets, then every path of the new
/// one compared on its own.
fn changes_path_by_path(
    old: &Value,
    new: &Value,
    subresource: Option<&str>,
    shape: Shape,
) -> fieldpath::Changes {
    let (old_t, new_t) = (tracked(old, subresource), tracked(new, subresource));
    let (old_set, new_set) = (
        fieldpath::of_object(&old_t, shape),
        fieldpath::of_object(&new_t, shape),
    );
    let mut changed = FieldSet::default();
    for p in new_set.paths() {
        if differs(&old_t, &new_t, &p, shape) {
            changed.insert(&p);
        }
    }
    fieldpath::Changes {
        changed,
        removed: old_set.difference(&new_set),
    }
}

/// Does the write change the value at `path` (for `.`: the item's
/// existence)?
fn differs(old: &Value, new: &Value, path: &Path, shape: Shape) -> bool {
    let (a, b) = (
        fieldpath::get(old, path, shape),
        fieldpath::get(new, path, shape),
    );
    if path.last().is_some_and(|e| e == ".") {
        return a.is_some() != b.is_some();
    }
    a != b
}

/// `live` with `config` merged in, lists by their schema.
pub fn merge(live: Option<&Value>, config: &Value, shape: Shape) -> Value {
    match (config, shape) {
        (Value::Object(c), Shape::Struct(_) | Shape::Map(_) | Shape::Untyped) => {
            let mut out = live.and_then(Value::as_object).cloned().unwrap_or_default();
            for (k, v) in c {
                if v.is_null() {
                    continue;
                }
                let merged = merge(out.get(k), v, child_shape(shape, k));
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(c), Shape::Assoc(keys, item)) => {
            let mut out: Vec<Value> = live.and_then(Value::as_array).cloned().unwrap_or_default();
            for it in c {
                let key = key_element(keys, it);
                let pos = key.as_ref().and_then(|k| {
                    out.iter()
                        .position(|o| key_element(keys, o).as_ref() == Some(k))
                });
                match pos {
                    Some(p) => out[p] = merge(Some(&out[p]), it, item_shape(item)),
                    None => out.push(it.clone()),
                }
            }
            Value::Array(out)
        }
        (Value::Array(c), Shape::Set) => {
            let mut out: Vec<Value> = live.and_then(Value::as_array).cloned().unwrap_or_default();
            for it in c {
                if !out.contains(it) {
                    out.push(it.clone());
                }
            }
            Value::Array(out)
        }
        _ => config.clone(),
    }
}

/// The managed fields of an object, or none.
pub fn managed_fields(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Server-side apply of `config` to `live` (`None`: the object does not
/// exist yet) with `live`'s managed fields. Returns the merged object
/// (carrying the new `managedFields`), or the conflicts.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    writer: &Writer<'_>,
    force: bool,
    shape: Shape,
) -> Result<Value, Vec<Conflict>> {
    let empty = json!({});
    let live_obj = live.unwrap_or(&empty);
    let mut entries = entries(&managed_fields(live_obj));
    let applied = fieldpath::of_object(&tracked(config, writer.subresource), shape);
    let mut merged = merge(Some(live_obj), config, shape);

    let me = |e: &Entry| e.is(writer.manager, "Apply", writer.subresource);
    let mut conflicts = Vec::new();
    for e in entries.iter_mut().filter(|e| !me(e)) {
        let clashing: Vec<Path> = e
            .set
            .intersection(&applied)
            .paths()
            .into_iter()
            .filter(|p| differs(live_obj, &merged, p, shape))
            .collect();
        if clashing.is_empty() {
            continue;
        }
        if force {
            // The forced fields move to the applier.
            let mut taken = FieldSet::default();
            for p in &clashing {
                taken.insert(p);
            }
            e.set = e.set.difference(&taken);
        } else {
            conflicts.extend(clashing.iter().map(|p| Conflict {
                manager: e.printed(),
                field: fieldpath::display(p),
            }));
        }
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }

    // Fields this manager applied before and no longer does, and that
    // nobody else owns, are removed.
    let previous = entries
        .iter()
        .find(|e| me(e))
        .map(|e| e.set.clone())
        .unwrap_or_default();
    for p in previous.difference(&applied).paths() {
        let owned_elsewhere = entries.iter().filter(|e| !me(e)).any(|e| {
            let item = if p.last().is_some_and(|l| l == ".") {
                &p[..p.len() - 1]
            } else {
                &p[..]
            };
            e.set.contains(&p) || e.set.has_prefix(item)
        });
        if !owned_elsewhere {
            fieldpath::remove(&mut merged, &p, shape);
        }
    }

    match entries.iter_mut().find(|e| me(e)) {
        Some(e) => {
            e.set = applied;
            e.raw.insert("time".into(), json!(writer.time));
            e.raw.insert("apiVersion".into(), json!(writer.api_version));
        }
        None => entries.push(new_entry(writer, "Apply", applied)),
    }
    set_managed(&mut merged, entries);
    Ok(merged)
}

/// The managed fields after a create, update or patch by `writer` that
/// turned `old` (`None` for a create) into `new`.
pub fn update(old: Option<&Value>, new: &Value, writer: &Writer<'_>, shape: Shape) -> Vec<Value> {
    let Some(old_obj) = old else {
        // A create: the writer owns every field it set.
        let new_set = fieldpath::of_object(&tracked(new, writer.subresource), shape);
        if new_set.is_empty() {
            return Vec::new();
        }
        return vec![new_entry(writer, "Update", new_set).into_value()];
    };
    let fieldpath::Changes { changed, removed } = changes(old_obj, new, writer.subresource, shape)
        .unwrap_or_else(|| changes_path_by_path(old_obj, new, writer.subresource, shape));
    let mut entries = entries(&managed_fields(old_obj));
    let mine = |e: &Entry| e.is(writer.manager, "Update", writer.subresource);
    for e in entries.iter_mut() {
        e.set = e.set.difference(&removed);
        if !mine(e) {
            e.set = e.set.difference(&changed);
        }
    }
    match entries.iter_mut().find(|e| mine(e)) {
        Some(e) => {
            e.set = e.set.union(&changed);
            if !changed.is_empty() {
                e.raw.insert("time".into(), json!(writer.time));
            }
        }
        None => entries.push(new_entry(writer, "Update", changed)),
    }
    entries
        .into_iter()
        .filter(|e| !e.set.is_empty())
        .map(Entry::into_value)
        .collect()
}

fn set_managed(obj: &mut Value, entries: Vec<Entry>) {
    let managed: Vec<Value> = entries
        .into_iter()
        .filter(|e| !e.set.is_empty())
        .map(Entry::into_value)
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("managedFields".into(), Value::Array(managed));
    } else if let Some(o) = obj.as_object_mut() {
        o.insert("metadata".into(), json!({ "managedFields": managed }));
    }
}

#[cfg(test)]
#[path = "apply_test.rs"]
mod tests;
