//! Serving `autoscaling/v1` HorizontalPodAutoscalers over the stored
//! `autoscaling/v2` objects (one storage key for both versions, as
//! kube-apiserver).
//!
//! A v1 request is run by the ordinary v2 handler with the body converted
//! on the way in and the answer converted on the way out
//! ([`crate::resources::hpa_conversion`]):
//! - create/update: the v1 body's kind and unknown fields are checked
//!   against the v1 schema, then it is converted to v2;
//! - patch: the patch applies to the v1 form of the stored object (that is
//!   what the client patched against), and the result is converted back;
//! - objects and lists in answers, and the objects of watch events, are
//!   converted to v1; Tables and Statuses pass through.

use bytes::Bytes;
use http::{header, Method, Response};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::codec::Output;
use crate::error::ApiError;
use crate::patch::{self, PatchType};
use crate::request::RequestContext;
use crate::resources::hpa_conversion::{response_v2_to_v1, v1_to_v2, v2_to_v1};
use crate::resources::{storage_version, ResourceInfo};
use crate::response::{self, Body};
use crate::router::ResourcePath;
use crate::strategy::meta_str;

use super::{check_kind, respond_object, write_update, MAX_UPDATE_ATTEMPTS};

/// How many converted watch events may wait for a slow client.
const WATCH_BUFFER_EVENTS: usize = 16;

/// Serves a request on `autoscaling/v1` horizontalpodautoscalers.
pub async fn handle(
    ctx: &mut RequestContext,
    method: &Method,
    path: &ResourcePath,
) -> Result<Response<Body>, ApiError> {
    let v1 = path.resource;
    let v2 = storage_version(v1);
    let ns = path.namespace.as_deref();
    let status_only = path.subresource.as_deref() == Some("status");
    let wants_watch = path.watch_prefix || ctx.query.flag("watch");
    match (method.as_str(), path.name.as_deref()) {
        ("PATCH", Some(name)) => return patch_v1(ctx, v1, v2, ns, name, status_only).await,
        ("POST", None) | ("PUT", Some(_)) => {
            let mut obj = ctx.body_object()?;
            check_kind(v1, &mut obj)?;
            ctx.check_unknown_fields(v1, &mut obj)?;
            let converted = serde_json::to_vec(&v1_to_v2(&obj))
                .map_err(|e| ApiError::Internal(format!("encoding a converted object: {e}")))?;
            ctx.body = Bytes::from(converted);
            ctx.content_type = Some("application/json".into());
        }
        _ => {}
    }
    let mut inner = path.clone();
    inner.resource = v2;
    let output = ctx.output;
    if output == Output::Yaml {
        ctx.output = Output::Json;
    }
    let resp = super::handle_stored(ctx, method, &inner).await;
    ctx.output = output;
    let resp = resp?;
    if wants_watch && method == Method::GET {
        return Ok(convert_watch(resp));
    }
    convert_answer(resp, output, &ctx.warnings).await
}

async fn patch_v1(
    ctx: &mut RequestContext,
    v1: &'static ResourceInfo,
    v2: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    status_only: bool,
) -> Result<Response<Body>, ApiError> {
    let kind = PatchType::from_content_type(ctx.content_type.as_deref().unwrap_or(""))?;
    let patch_body: Value = serde_json::from_slice(&ctx.body)
        .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))?;
    for _ in 0..MAX_UPDATE_ATTEMPTS {
        let current = ctx.state.registry.get_required(v2, ns, name).await?;
        let mut patched = patch::apply(kind, &v2_to_v1(&current.obj), &patch_body)?;
        if !patched.is_object() {
            return Err(ApiError::BadRequest(
                "the patch made the object something other than a JSON object".into(),
            ));
        }
        check_kind(v1, &mut patched)?;
        if meta_str(&patched, "name") != Some(name) {
            return Err(ApiError::BadRequest(
                "the name of the object cannot be changed by a patch".into(),
            ));
        }
        ctx.check_unknown_fields(v1, &mut patched)?;
        if meta_str(&patched, "resourceVersion")
            .is_some_and(|rv| !rv.is_empty() && rv != current.mod_revision.to_string())
        {
            return Err(ApiError::modified(v2, name));
        }
        let new = v1_to_v2(&patched);
        if let Some(updated) = write_update(ctx, v2, ns, name, &current, new, status_only).await? {
            return if ctx.output == Output::Table {
                respond_object(ctx, 200, v2, &updated)
            } else {
                respond_object(ctx, 200, v1, &v2_to_v1(&updated))
            };
        }
    }
    Err(ApiError::modified(v2, name))
}

fn is_json(resp: &Response<Body>) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"))
}

/// Converts a whole (non-streamed) answer; errors and non-JSON pass through.
async fn convert_answer(
    resp: Response<Body>,
    output: Output,
    warnings: &[String],
) -> Result<Response<Body>, ApiError> {
    if !resp.status().is_success() || !is_json(&resp) {
        return Ok(resp);
    }
    let (parts, body) = resp.into_parts();
    let bytes = body
        .collect()
        .await
        .map_err(|e| ApiError::Internal(format!("reading an answer to convert: {e}")))?
        .to_bytes();
    let value: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(_) => return Ok(Response::from_parts(parts, response::full(bytes))),
    };
    let output = if output == Output::Table {
        Output::Json
    } else {
        output
    };
    Ok(response::object(
        parts.status.as_u16(),
        &response_v2_to_v1(&value),
        output,
        warnings,
    ))
}

/// Converts the `object` of one watch event line.
fn convert_event_line(line: &[u8]) -> Bytes {
    let Ok(mut event) = serde_json::from_slice::<Value>(line) else {
        return Bytes::copy_from_slice(line);
    };
    if let Some(obj) = event.get_mut("object") {
        *obj = response_v2_to_v1(obj);
    }
    let mut out = serde_json::to_vec(&event).unwrap_or_else(|_| line.to_vec());
    out.push(b'\n');
    Bytes::from(out)
}

/// Re-streams a watch answer with each event's object converted. The
/// task ends when either side does: the client going away drops the inner
/// body, which ends the inner watch.
fn convert_watch(resp: Response<Body>) -> Response<Body> {
    if !resp.status().is_success() || !is_json(&resp) {
        return resp;
    }
    let (parts, mut body) = resp.into_parts();
    let (tx, rx) = mpsc::channel::<Bytes>(WATCH_BUFFER_EVENTS);
    tokio::spawn(async move {
        let mut pending: Vec<u8> = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if tx.send(convert_event_line(&line)).await.is_err() {
                    return;
                }
            }
        }
        if !pending.iter().all(u8::is_ascii_whitespace) {
            let _ = tx.send(convert_event_line(&pending)).await;
        }
    });
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    response::stream(parts.status.as_u16(), &content_type, rx)
}
