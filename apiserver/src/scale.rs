//! The `scale` subresource of Deployments, ReplicaSets and StatefulSets
//! (kube-apiserver's `ScaleREST` in pkg/registry/apps/*/storage).
//!
//! `GET <resource>/<name>/scale` answers an `autoscaling/v1` `Scale` built
//! from the parent: `spec.replicas`, `status.replicas` and
//! `status.selector` as a label-selector string (`app=web`), with the
//! parent's name, namespace, uid, resourceVersion and creationTimestamp.
//! `PUT` with a Scale, or `PATCH` of the Scale (merge, strategic or JSON
//! patch), sets the parent's `spec.replicas` and nothing else, through the
//! parent's own update pipeline ([`crate::rest::write_update`]: generation
//! bump, defaults, validation, admission). A `resourceVersion` in the Scale
//! is a precondition on the parent (409 Conflict when it moved), as in
//! Kubernetes; without one, a lost race is retried. This is what
//! `kubectl scale` and the HorizontalPodAutoscaler controller use.
//! Custom resources whose CRD declares `subresources.scale` use its
//! `specReplicasPath`, `statusReplicasPath` and `labelSelectorPath`.

use http::{Method, Response};
use serde_json::{json, Value};

use crate::codec::Output;
use crate::error::ApiError;
use crate::patch::{self, PatchType};
use crate::registry::Stored;
use crate::request::RequestContext;
use crate::resources::ResourceInfo;
use crate::response::{self, Body};
use crate::rest::{write_update, MAX_UPDATE_ATTEMPTS};
use crate::strategy::meta_str;
use crate::validation::FieldError;

/// The API version of the `Scale` kind served for every scalable resource.
pub const SCALE_API_VERSION: &str = "autoscaling/v1";

/// Serves GET, PUT and PATCH on `<resource>/<name>/scale`.
pub async fn serve(
    ctx: &mut RequestContext,
    method: &Method,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    match method.as_str() {
        "GET" => {
            let parent = ctx.state.registry.get_required(res, ns, name).await?;
            respond(ctx, 200, &scale_of(res, &parent.obj))
        }
        "PUT" => {
            let scale = ctx.body_object()?;
            check_scale(&scale, name)?;
            let precondition = meta_str(&scale, "resourceVersion")
                .filter(|rv| !rv.is_empty())
                .map(str::to_string);
            for _ in 0..MAX_UPDATE_ATTEMPTS {
                let current = ctx.state.registry.get_required(res, ns, name).await?;
                if precondition
                    .as_deref()
                    .is_some_and(|rv| rv != current.mod_revision.to_string())
                {
                    return Err(ApiError::modified(res, name));
                }
                if let Some(updated) = set_replicas(ctx, res, ns, name, &current, &scale).await? {
                    return respond(ctx, 200, &scale_of(res, &updated));
                }
                if precondition.is_some() {
                    return Err(ApiError::modified(res, name));
                }
            }
            Err(ApiError::modified(res, name))
        }
        "PATCH" => {
            let kind = PatchType::from_content_type(ctx.content_type.as_deref().unwrap_or(""))?;
            let patch_body: Value = serde_json::from_slice(&ctx.body)
                .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))?;
            for _ in 0..MAX_UPDATE_ATTEMPTS {
                let current = ctx.state.registry.get_required(res, ns, name).await?;
                let scale = patch::apply(kind, &scale_of(res, &current.obj), &patch_body)?;
                check_scale(&scale, name)?;
                if meta_str(&scale, "resourceVersion")
                    .is_some_and(|rv| rv != current.mod_revision.to_string())
                {
                    return Err(ApiError::modified(res, name));
                }
                if let Some(updated) = set_replicas(ctx, res, ns, name, &current, &scale).await? {
                    return respond(ctx, 200, &scale_of(res, &updated));
                }
            }
            Err(ApiError::modified(res, name))
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// Where a resource keeps its replicas and selector: the built-ins'
/// fixed fields, or a custom resource's `subresources.scale` paths.
fn scale_paths(res: &ResourceInfo) -> (String, String, Option<String>) {
    match res.custom.and_then(|c| c.scale.as_ref()) {
        Some(s) => (
            s.spec_replicas.clone(),
            s.status_replicas.clone(),
            s.label_selector.clone(),
        ),
        None => (".spec.replicas".into(), ".status.replicas".into(), None),
    }
}

/// The `Scale` of a parent object.
pub fn scale_of(res: &ResourceInfo, parent: &Value) -> Value {
    let meta = |f: &str| parent.pointer(&format!("/metadata/{f}")).cloned();
    let mut metadata = serde_json::Map::new();
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta(f) {
            metadata.insert(f.into(), v);
        }
    }
    let (spec_path, status_path, selector_path) = scale_paths(res);
    let int = |p: &str| {
        crate::crd::json_path(parent, p)
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    // A custom resource's selector path holds the selector string itself.
    let selector = match (&selector_path, res.custom) {
        (Some(p), _) => crate::crd::json_path(parent, p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        (None, Some(_)) => String::new(),
        (None, None) => parent
            .pointer("/spec/selector")
            .map(crate::table::selector_string)
            .unwrap_or_default(),
    };
    json!({
        "kind": "Scale",
        "apiVersion": SCALE_API_VERSION,
        "metadata": metadata,
        "spec": {"replicas": int(&spec_path)},
        "status": {"replicas": int(&status_path), "selector": selector},
    })
}

/// Checks a Scale body: kind and version, the name, and `ValidateScale`
/// (`spec.replicas ≥ 0`).
fn check_scale(scale: &Value, name: &str) -> Result<(), ApiError> {
    let invalid = |causes: Vec<FieldError>| ApiError::Invalid {
        kind: "Scale".into(),
        group: "autoscaling".into(),
        name: name.to_string(),
        causes,
    };
    if !scale.is_object() {
        return Err(ApiError::BadRequest(
            "the body of a scale request must be a Scale object".into(),
        ));
    }
    match scale.get("kind").and_then(Value::as_str) {
        None | Some("" | "Scale") => {}
        Some(k) => {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({k}) does not match the expected kind (Scale)"
            )))
        }
    }
    match meta_str(scale, "name") {
        None | Some("") => {}
        Some(n) if n == name => {}
        Some(n) => {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )))
        }
    }
    match scale.pointer("/spec/replicas") {
        None | Some(Value::Null) => Ok(()),
        Some(v) => match v.as_i64() {
            Some(n) if n >= 0 && n <= i64::from(i32::MAX) => Ok(()),
            Some(n) => Err(invalid(vec![FieldError::invalid(
                "spec.replicas",
                n.to_string(),
                "must be greater than or equal to 0",
            )])),
            None => Err(ApiError::BadRequest(format!(
                "Scale in version \"v1\" cannot be handled as a Scale: spec.replicas: {v} is not an integer"
            ))),
        },
    }
}

/// Writes `scale.spec.replicas` into the parent; `Ok(None)` on a lost race.
async fn set_replicas(
    ctx: &RequestContext,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    current: &Stored,
    scale: &Value,
) -> Result<Option<Value>, ApiError> {
    let replicas = scale
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let mut parent = current.obj.clone();
    if !parent.is_object() {
        return Err(ApiError::Internal(format!(
            "stored {} {name} is not an object",
            res.singular
        )));
    }
    crate::crd::set_json_path(&mut parent, &scale_paths(res).0, json!(replicas));
    write_update(ctx, res, ns, name, current, parent, false).await
}

fn respond(ctx: &RequestContext, code: u16, scale: &Value) -> Result<Response<Body>, ApiError> {
    // A Scale has no table form of its own; Tables are answered as JSON.
    let output = match ctx.output {
        Output::Table => Output::Json,
        o => o,
    };
    Ok(response::object(code, scale, output, &ctx.warnings))
}
