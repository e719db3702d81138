//! The HTTP side of field ownership: `PATCH` with
//! `application/apply-patch+yaml` (server-side apply, `kubectl apply
//! --server-side`) and the `managedFields` bookkeeping of every create,
//! update and patch. The logic is the pure core in [`crate::apply`].
//!
//! - `fieldManager` is required for apply (422 otherwise, as Kubernetes);
//!   for other writes it defaults to the User-Agent up to its first `/`
//!   (`kubectl-client-side-apply/v1.32.4 (linux/amd64) …` →
//!   `kubectl-client-side-apply`, kube-apiserver's `prefixFromUserAgent`),
//!   and to `unknown` without one.
//! - `force=true` moves conflicting fields to the applier; without it a
//!   conflict is a 409 whose causes name each field and manager.
//! - Applying to an object that does not exist creates it.
//! - A write that sets `metadata.managedFields` to something other than
//!   the stored value replaces them as given (what kubectl's migration
//!   from client-side apply does); a write without them keeps tracking.

use chrono::Utc;
use hyper::Response;
use serde_json::{json, Value};

use crate::apply::{self, Writer};
use crate::error::ApiError;
use crate::fieldpath::kind_shape;
use crate::registry::Stored;
use crate::request::RequestContext;
use crate::resources::ResourceInfo;
use crate::response::Body;
use crate::rest::{self, MAX_UPDATE_ATTEMPTS};
use crate::strategy::{self, meta_str};
use crate::validation::FieldError;

/// Whether a PATCH `Content-Type` is server-side apply.
pub fn is_apply(content_type: Option<&str>) -> bool {
    content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case("application/apply-patch+yaml")
}

/// kube-apiserver caps a manager name taken from the User-Agent.
const MAX_USER_AGENT_MANAGER_CHARS: usize = 128;

fn manager(ctx: &RequestContext) -> String {
    if let Some(m) = ctx.query.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    default_manager(ctx.user_agent.as_deref())
}

/// The manager of a write without `fieldManager`: the User-Agent's
/// product name, or `unknown`.
fn default_manager(user_agent: Option<&str>) -> String {
    let prefix = user_agent.and_then(|ua| ua.split('/').next()).unwrap_or("");
    if prefix.is_empty() {
        return "unknown".to_string();
    }
    prefix.chars().take(MAX_USER_AGENT_MANAGER_CHARS).collect()
}

/// Sets `new`'s `managedFields` for a create (`old` `None`) or update by
/// this request's manager.
pub fn track(
    ctx: &RequestContext,
    res: &ResourceInfo,
    old: Option<&Value>,
    new: &mut Value,
    status_only: bool,
) {
    let given = new.pointer("/metadata/managedFields");
    let stored = old.and_then(|o| o.pointer("/metadata/managedFields"));
    if given.is_some() && given != stored {
        return; // The client rewrote them: keep its value.
    }
    let manager = manager(ctx);
    let api_version = res.api_version();
    let time = strategy::timestamp(Utc::now());
    let writer = Writer {
        manager: &manager,
        api_version: &api_version,
        time: &time,
        subresource: status_only.then_some("status"),
    };
    let managed = apply::update(old, new, &writer, kind_shape(&api_version, res.kind));
    let meta = strategy::meta_mut(new);
    if managed.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(managed));
    }
}

/// `PATCH` with `application/apply-patch+yaml`.
pub async fn apply_patch(
    ctx: &mut RequestContext,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    status_only: bool,
) -> Result<Response<Body>, ApiError> {
    let manager = manager(ctx);
    if ctx.query.get("fieldManager").is_none_or(str::is_empty) {
        let mut e = FieldError::required("fieldManager");
        e.detail = "is required for apply patch".into();
        return Err(ApiError::Invalid {
            kind: "PatchOptions".into(),
            group: "meta.k8s.io".into(),
            name: String::new(),
            causes: vec![e],
        });
    }
    let force = ctx.query.flag("force");
    let y: serde_yaml::Value = serde_yaml::from_slice(&ctx.body)
        .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))?;
    let mut config = serde_json::to_value(y)
        .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))?;
    if !config.is_object() {
        return Err(ApiError::BadRequest(
            "an apply patch must be an object".into(),
        ));
    }
    rest::check_kind(res, &mut config)?;
    match meta_str(&config, "name") {
        Some(n) if n == name => {}
        None | Some("") => {
            strategy::meta_mut(&mut config).insert("name".into(), json!(name));
        }
        Some(_) => {
            return Err(ApiError::BadRequest(
                "the name of the object must match the name on the URL".into(),
            ))
        }
    }
    ctx.check_unknown_fields(res, &mut config)?;
    let api_version = res.api_version();
    let shape = kind_shape(&api_version, res.kind);
    for _ in 0..MAX_UPDATE_ATTEMPTS {
        let time = strategy::timestamp(Utc::now());
        let writer = Writer {
            manager: &manager,
            api_version: &api_version,
            time: &time,
            subresource: status_only.then_some("status"),
        };
        let current: Option<Stored> = ctx.state.registry.get(res, ns, name).await?;
        let merged = apply::apply(
            current.as_ref().map(|c| &c.obj),
            &config,
            &writer,
            force,
            shape,
        )
        .map_err(|conflicts| ApiError::ApplyConflict {
            message: apply::conflict_message(&conflicts),
            causes: conflicts
                .into_iter()
                .map(|c| (format!("conflict with {}", c.manager), c.field))
                .collect(),
        })?;
        let Some(current) = current else {
            if status_only {
                return Err(ApiError::not_found(res, name));
            }
            return rest::create_object(ctx, res, ns, merged).await;
        };
        match rest::write_update(ctx, res, ns, name, &current, merged, status_only).await? {
            Some(updated) => return rest::respond_object(ctx, 200, res, &updated),
            None => continue,
        }
    }
    Err(ApiError::modified(res, name))
}

#[cfg(test)]
mod tests {
    use super::default_manager;

    #[test]
    fn default_manager_is_the_user_agent_product() {
        let cases = [
            (
                Some("kubectl-client-side-apply/v1.32.4 (linux/amd64) kubernetes/59526cd"),
                "kubectl-client-side-apply",
            ),
            (
                Some("kubectl/v1.32.4 (linux/amd64) kubernetes/59526cd"),
                "kubectl",
            ),
            (Some("kube-rs"), "kube-rs"),
            (Some("/v1"), "unknown"),
            (Some(""), "unknown"),
            (None, "unknown"),
        ];
        for (ua, want) in cases {
            assert_eq!(default_manager(ua), want, "{ua:?}");
        }
        assert_eq!(default_manager(Some(&"x".repeat(300))).len(), 128);
    }
}
