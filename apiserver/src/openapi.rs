//! OpenAPI v3 documents: `GET /openapi/v3` (the index) and
//! `GET /openapi/v3/<api/v1 | apis/<group>/<version>>` (one document per
//! group-version), generated from `k8s-openapi`'s `schemars` schemas.
//!
//! Why kubectl needs this: `kubectl apply`/`create` with validation on (the
//! default) asks cli-runtime's `queryParamVerifierV3` whether the server
//! supports server-side field validation. It reads the group-version's
//! document and looks, among `paths`, for a `patch` operation whose
//! `x-kubernetes-group-version-kind` (an object `{group, version, kind}`)
//! is the object's GVK, then for a query parameter named `fieldValidation`
//! in that operation's own `parameters`. The FIRST matching patch operation
//! decides, so every patch operation of a kind (item and `/status`) carries
//! the parameter. When it is found kubectl sends `fieldValidation=Strict`;
//! otherwise it falls back to `/openapi/v2` protobuf, which Skiff does not
//! serve. `kubectl explain` (v1.27+) renders from the same document: it takes
//! the GVK from the operation on `/api/v1/pods` (or the namespaced path) and
//! then looks for the `components.schemas` entry whose
//! `x-kubernetes-group-version-kind` ARRAY contains that GVK.
//!
//! Schemas are named the Kubernetes way (`io.k8s.api.core.v1.Pod`), which
//! `k8s-openapi`'s `schema_name`s already are; schemars' OpenAPI 3 settings
//! put definitions under `#/components/schemas/` and turn `$ref` siblings
//! into `allOf: [{$ref}]`, as Kubernetes' own documents do.
//!
//! Memory: each document is built lazily on first request and kept (a few
//! hundred KiB for `api/v1`); the index hashes every document, so the first
//! `GET /openapi/v3` builds them all.
//!
//! Caveats: list kinds (`PodList`) are written by hand because `k8s-openapi`
//! has a generic `List<T>`; only the operations Skiff serves are described;
//! the HTTP layer must ignore the `?hash=` query on document requests.

#[path = "schema_kinds.rs"]
pub mod kinds;
#[path = "schema_openapi_paths.rs"]
mod paths;

use crate::resources::{group_versions, ResourceInfo, RESOURCES};
use kinds::{visit_kind, KindVisitor};
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::JsonSchema;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::sync::{Arc, OnceLock};

/// The Kubernetes version the schemas describe (k8s-openapi's `latest`).
const KUBERNETES_VERSION: &str = "v1.37.0";
const REF_PREFIX: &str = "#/components/schemas/";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";

/// One built document: its bytes and the hex sha256 the index advertises.
struct Built {
    bytes: Arc<Vec<u8>>,
    hash: String,
}

/// One lazily built document per served group-version, in `group_versions()` order.
fn cache() -> &'static [(String, OnceLock<Built>)] {
    static CACHE: OnceLock<Vec<(String, OnceLock<Built>)>> = OnceLock::new();
    CACHE.get_or_init(|| {
        group_versions()
            .into_iter()
            .map(|(g, v)| (api_path(g, v), OnceLock::new()))
            .collect()
    })
}

/// `api/v1` or `apis/<group>/<version>`: the document's path under `/openapi/v3/`.
fn api_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn built(path: &str) -> Option<&'static Built> {
    let (_, cell) = cache().iter().find(|(p, _)| p == path)?;
    Some(cell.get_or_init(|| {
        let doc = build_document(path);
        // Serialising a Value cannot fail (no non-string map keys).
        let bytes = serde_json::to_vec(&doc).unwrap_or_default();
        let hash = hex::encode_upper(Sha256::digest(&bytes));
        Built {
            bytes: Arc::new(bytes),
            hash,
        }
    }))
}

/// Body of `GET /openapi/v3`: every group-version's document URL, with the
/// document's hash so clients can cache it.
pub fn v3_index() -> Value {
    let mut paths = Map::new();
    for (path, _) in cache() {
        if let Some(b) = built(path) {
            paths.insert(
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", b.hash)}),
            );
        }
    }
    json!({ "paths": paths })
}

/// Body of `GET /openapi/v3/<path>` (`api/v1` or `apis/<group>/<version>`,
/// without a leading slash or query), or `None` for an unknown path.
pub fn v3_document(path: &str) -> Option<Arc<Vec<u8>>> {
    let path = path.trim_matches('/');
    built(path).map(|b| Arc::clone(&b.bytes))
}

/// Registers `T`'s schema (and everything it references) in the generator.
struct Register<'a>(&'a mut SchemaGenerator);

impl KindVisitor for Register<'_> {
    type Output = String;
    fn visit<T: JsonSchema + serde::de::DeserializeOwned + serde::Serialize>(self) -> String {
        self.0.subschema_for::<T>();
        T::schema_name().into_owned()
    }
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("{REF_PREFIX}{name}") })
}

/// Builds the whole document for one group-version path.
fn build_document(path: &str) -> Value {
    let served: Vec<&'static ResourceInfo> = RESOURCES
        .iter()
        .filter(|r| api_path(r.group, r.version) == path)
        .collect();
    let mut generator = SchemaGenerator::new(SchemaSettings::openapi3());
    // (schema name, gvk) pairs to stamp with x-kubernetes-group-version-kind.
    let mut stamped: Vec<(String, Value)> = Vec::new();
    let mut kind_names: Vec<(&'static ResourceInfo, String)> = Vec::new();
    for r in &served {
        if let Some(name) = visit_kind(r.group, r.version, r.kind, Register(&mut generator)) {
            stamped.push((name.clone(), gvk(r.group, r.version, r.kind)));
            kind_names.push((r, name));
        }
    }
    let wants_binding = served.iter().any(|r| r.subresources.contains(&"binding"));
    if wants_binding {
        if let Some(name) = visit_kind("", "v1", "Binding", Register(&mut generator)) {
            stamped.push((name, gvk("", "v1", "Binding")));
        }
    }
    // Subresources whose kind lives in another group (`*/scale` is
    // autoscaling/v1 Scale, `pods/eviction` policy/v1 Eviction).
    for (sub, group, kind) in [
        ("scale", "autoscaling", "Scale"),
        ("eviction", "policy", "Eviction"),
        ("token", "authentication.k8s.io", "TokenRequest"),
    ] {
        if served.iter().any(|r| r.subresources.contains(&sub)) {
            if let Some(name) = visit_kind(group, "v1", kind, Register(&mut generator)) {
                stamped.push((name, gvk(group, "v1", kind)));
            }
        }
    }
    generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta>();
    generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>();
    generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions>();
    let mut schemas = generator.take_definitions(true);

    for (name, gvk) in stamped {
        if let Some(Value::Object(schema)) = schemas.get_mut(&name) {
            schema.insert("x-kubernetes-group-version-kind".into(), json!([gvk]));
        }
    }
    // Status and DeleteOptions are served by every group-version.
    let (group, version) = served.first().map_or(("", "v1"), |r| (r.group, r.version));
    if let Some(Value::Object(s)) = schemas.get_mut(STATUS) {
        s.insert(
            "x-kubernetes-group-version-kind".into(),
            json!([gvk("", "v1", "Status")]),
        );
    }
    if let Some(Value::Object(s)) = schemas.get_mut(DELETE_OPTIONS) {
        s.insert(
            "x-kubernetes-group-version-kind".into(),
            json!([gvk(group, version, "DeleteOptions")]),
        );
    }
    schemas.insert(
        PATCH.into(),
        json!({
            "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
            "type": "object",
        }),
    );
    let mut paths = Map::new();
    for (r, name) in &kind_names {
        if !r.is_create_only() {
            schemas.insert(format!("{name}List"), list_schema(r, name));
        }
        paths::add_paths(&mut paths, r, name);
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// `<Kind>List`, written by hand (k8s-openapi's `List<T>` has no schema).
fn list_schema(r: &ResourceInfo, item: &str) -> Value {
    json!({
        "description": format!("{} is a list of {} objects.", r.list_kind, r.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
            "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
            "items": {"type": "array", "items": schema_ref(item), "description": format!("List of {}.", r.plural)},
            "metadata": {"allOf": [schema_ref(LIST_META)], "default": {}, "description": "Standard list metadata."},
        },
        "x-kubernetes-group-version-kind": [gvk(r.group, r.version, r.list_kind)],
    })
}

#[cfg(test)]
#[path = "schema_openapi_test.rs"]
mod tests;
