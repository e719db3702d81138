//! The review APIs: create-only resources whose answer is computed, never
//! stored (kube-apiserver's `pkg/registry/authentication` and
//! `pkg/registry/authorization`).
//!
//! | resource | asks | kubectl |
//! |---|---|---|
//! | `tokenreviews` | who is this bearer token? | (webhooks, proxies) |
//! | `selfsubjectreviews` | who am I? | `kubectl auth whoami` |
//! | `selfsubjectaccessreviews` | may I do this? | `kubectl auth can-i` |
//! | `selfsubjectrulesreviews` | what may I do in this namespace? | `kubectl auth can-i --list` |
//! | `subjectaccessreviews` | may this user do this? | |
//! | `localsubjectaccessreviews` | the same, within one namespace | |
//!
//! The answer is the request object with `status` filled in, 201 Created.

use hyper::Response;
use serde_json::{json, Map, Value};

use crate::auth::UserInfo;
use crate::error::ApiError;
use crate::rbac::{Attributes, PolicyRule, ResourceAttributes};
use crate::request::RequestContext;
use crate::resources::ResourceInfo;
use crate::response::{self, Body};

fn user_json(u: &UserInfo) -> Value {
    let mut v = json!({"username": u.name, "groups": u.groups});
    if !u.uid.is_empty() {
        v["uid"] = json!(u.uid);
    }
    if !u.extra.is_empty() {
        v["extra"] = json!(u.extra);
    }
    v
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Serves `POST` on a review resource. `namespace` is the path's (only
/// `localsubjectaccessreviews` have one).
pub async fn create(
    ctx: &mut RequestContext,
    resource: &ResourceInfo,
    namespace: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let mut review = ctx.body_object()?;
    let spec = review.get("spec").cloned().unwrap_or(json!({}));
    let status = match resource.plural {
        "tokenreviews" => token_review(ctx, &spec).await,
        "selfsubjectreviews" => json!({"userInfo": user_json(&ctx.user)}),
        "selfsubjectrulesreviews" => rules_review(ctx, &spec).await?,
        "selfsubjectaccessreviews" => {
            let user = ctx.user.clone();
            access_review(ctx, &user, &spec).await?
        }
        "subjectaccessreviews" | "localsubjectaccessreviews" => {
            if let Some(ns) = namespace {
                let asked = spec.pointer("/resourceAttributes/namespace");
                if asked.and_then(Value::as_str) != Some(ns) {
                    return Err(invalid(
                        resource,
                        "spec.resourceAttributes.namespace",
                        "must match metadata.namespace",
                    ));
                }
            }
            let user = UserInfo {
                name: str_at(&spec, "user").to_string(),
                groups: strings(spec.get("groups")),
                uid: str_at(&spec, "uid").to_string(),
                extra: serde_json::from_value(spec.get("extra").cloned().unwrap_or(json!({})))
                    .unwrap_or_default(),
            };
            if user.name.is_empty() && user.groups.is_empty() {
                return Err(invalid(
                    resource,
                    "spec.user",
                    "at least one of user or group must be specified",
                ));
            }
            access_review(ctx, &user, &spec).await?
        }
        _ => return Err(ApiError::MethodNotAllowed),
    };
    let obj = review.as_object_mut().ok_or_else(|| {
        ApiError::BadRequest(format!("the body of a {} must be an object", resource.kind))
    })?;
    obj.insert("apiVersion".into(), json!(resource.api_version()));
    obj.insert("kind".into(), json!(resource.kind));
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let (Some(m), Some(ns)) = (meta.as_object_mut(), namespace) {
        m.insert("namespace".into(), json!(ns));
    }
    obj.insert("status".into(), status);
    Ok(response::object(201, &review, ctx.output, &ctx.warnings))
}

fn invalid(resource: &ResourceInfo, field: &str, detail: &str) -> ApiError {
    ApiError::Invalid {
        kind: resource.kind.to_string(),
        group: resource.group.to_string(),
        name: String::new(),
        causes: vec![crate::validation::FieldError::invalid(field, "", detail)],
    }
}

async fn token_review(ctx: &RequestContext, spec: &Value) -> Value {
    let token = str_at(spec, "token");
    let wanted = strings(spec.get("audiences"));
    let audiences: Vec<&str> = if wanted.is_empty() {
        vec![crate::serviceaccount_token::ISSUER]
    } else {
        wanted.iter().map(String::as_str).collect()
    };
    let authn = &ctx.state.authn;
    match authn.review(&ctx.state.registry, token, &audiences).await {
        Ok(user) => {
            json!({"authenticated": true, "user": user_json(&user), "audiences": audiences})
        }
        Err(e) => json!({"authenticated": false, "user": {}, "error": e.to_string()}),
    }
}

async fn access_review(
    ctx: &RequestContext,
    user: &UserInfo,
    spec: &Value,
) -> Result<Value, ApiError> {
    let (verb, attrs);
    if let Some(r) = spec.get("resourceAttributes").filter(|r| !r.is_null()) {
        let opt = |k: &str| Some(str_at(r, k)).filter(|s| !s.is_empty());
        verb = str_at(r, "verb");
        attrs = Attributes {
            verb,
            resource: Some(ResourceAttributes {
                group: str_at(r, "group"),
                resource: str_at(r, "resource"),
                subresource: opt("subresource"),
                name: opt("name"),
                namespace: opt("namespace"),
            }),
            path: "",
        };
    } else if let Some(n) = spec.get("nonResourceAttributes").filter(|n| !n.is_null()) {
        attrs = Attributes {
            verb: str_at(n, "verb"),
            resource: None,
            path: str_at(n, "path"),
        };
    } else {
        return Err(ApiError::BadRequest(
            "exactly one of nonResourceAttributes or resourceAttributes must be specified".into(),
        ));
    }
    let allowed = ctx.state.authz.allows(user, &attrs).await?;
    Ok(if allowed {
        json!({"allowed": true, "reason": "RBAC: allowed"})
    } else {
        json!({"allowed": false})
    })
}

async fn rules_review(ctx: &RequestContext, spec: &Value) -> Result<Value, ApiError> {
    let ns = Some(str_at(spec, "namespace")).filter(|s| !s.is_empty());
    let rules = ctx.state.authz.rules_for(&ctx.user, ns).await?;
    let (non_resource, resource): (Vec<PolicyRule>, Vec<PolicyRule>) = rules
        .into_iter()
        .partition(|r| !r.non_resource_urls.is_empty());
    let resource_rules: Vec<Value> = resource
        .iter()
        .map(|r| {
            json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources,
                   "resourceNames": r.resource_names})
        })
        .collect();
    let non_resource_rules: Vec<Value> = non_resource
        .iter()
        .map(|r| json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}))
        .collect();
    Ok(json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": false,
    }))
}
