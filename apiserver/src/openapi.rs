//! OpenAPI documents: `GET /openapi/v3` (the index) and
//! `GET /openapi/v3/<api/v1 | apis/<group>/<version>>` (one document per
//! group-version), generated from `k8s-openapi`'s `schemars` schemas; and
//! `GET /openapi/v2` ([`v2`]), the same schemas as Swagger 2.0.
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
//! otherwise it validates on the client against `/openapi/v2` protobuf
//! ([`v2`], served for the create-only review kinds, which have no PATCH). `kubectl explain` (v1.27+) renders from the same document: it takes
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
//! Custom resources get a document per group-version from
//! [`custom_document`], built on each request from their CRD's schema
//! ([`crate::crd_registry`]).
//!
//! Caveats: list kinds (`PodList`) are written by hand because `k8s-openapi`
//! has a generic `List<T>`; only the operations Skiff serves are described;
//! the HTTP layer must ignore the `?hash=` query on document requests.

#[path = "schema_kinds.rs"]
pub mod kinds;
#[path = "schema_openapi_paths.rs"]
mod paths;
#[path = "schema_openapi_v2.rs"]
pub mod v2;

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
        let hash = hash(&bytes);
        Built {
            bytes: Arc::new(bytes),
            hash,
        }
    }))
}

/// The hash the index advertises for a document's bytes (hex sha256).
pub fn hash(bytes: &[u8]) -> String {
    hex::encode_upper(Sha256::digest(bytes))
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
    let (group, version) = served.first().map_or(("", "v1"), |r| (r.group, r.version));
    let mut paths = Map::new();
    for (r, name) in &kind_names {
        if !r.is_create_only() {
            schemas.insert(format!("{name}List"), list_schema(r, name));
        }
        paths::add_paths(&mut paths, r, name);
    }
    finish(schemas, paths, group, version)
}

/// The document for one custom group-version (`served` all in it): each
/// CRD version's `openAPIV3Schema` under a Kubernetes-style name
/// (`com.example.stable.v1.CronTab`), `metadata` pointing at ObjectMeta.
pub fn custom_document(served: &[&'static ResourceInfo]) -> Value {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
    let mut generator = SchemaGenerator::new(SchemaSettings::openapi3());
    generator.subschema_for::<meta::ObjectMeta>();
    generator.subschema_for::<meta::ListMeta>();
    generator.subschema_for::<meta::Status>();
    generator.subschema_for::<meta::DeleteOptions>();
    let scale = served.iter().any(|r| r.subresources.contains(&"scale"));
    let scale_name = scale
        .then(|| visit_kind("autoscaling", "v1", "Scale", Register(&mut generator)))
        .flatten();
    let mut schemas = generator.take_definitions(true);
    if let Some(Value::Object(s)) = scale_name.and_then(|n| schemas.get_mut(&n)) {
        s.insert(
            "x-kubernetes-group-version-kind".into(),
            json!([gvk("autoscaling", "v1", "Scale")]),
        );
    }
    let mut paths = Map::new();
    for r in served {
        let reversed: Vec<&str> = r.group.split('.').rev().collect();
        let name = format!("{}.{}.{}", reversed.join("."), r.version, r.kind);
        let mut schema = r
            .custom
            .and_then(|c| c.schema.as_ref())
            .map(|s| s.0.clone())
            .unwrap_or_else(|| json!({"type": "object"}));
        if let Some(props) = schema
            .as_object_mut()
            .map(|o| o.entry("properties").or_insert_with(|| json!({})))
        {
            props["apiVersion"] = json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."});
            props["kind"] = json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."});
            props["metadata"] = json!({"allOf": [schema_ref("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")], "description": "Standard object's metadata."});
        }
        schema["x-kubernetes-group-version-kind"] = json!([gvk(r.group, r.version, r.kind)]);
        schemas.insert(name.clone(), schema);
        schemas.insert(format!("{name}List"), list_schema(r, &name));
        paths::add_paths(&mut paths, r, &name);
    }
    let (group, version) = served.first().map_or(("", "v1"), |r| (r.group, r.version));
    finish(schemas, paths, group, version)
}

/// Stamps the shared kinds and wraps schemas and paths into a document.
fn finish(
    mut schemas: Map<String, Value>,
    paths: Map<String, Value>,
    group: &str,
    version: &str,
) -> Value {
    // Status and DeleteOptions are served by every group-version.
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
