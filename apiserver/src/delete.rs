//! DELETE: immediate, graceful (pods) or deferred by finalizers, and
//! `deletecollection` (Kubernetes' generic registry `Delete` with the pod
//! strategy's `CheckGracefulDelete`).
//!
//! - A pod bound to a node and not terminal gets `deletionTimestamp` =
//!   now + grace and `deletionGracePeriodSeconds`; it stays until its agent
//!   deletes it again with `gracePeriodSeconds=0`. A shorter grace period
//!   may replace a longer one, never the reverse.
//! - An object with finalizers only gets `deletionTimestamp`; the update
//!   that removes its last finalizer deletes it ([`crate::rest::write_update`]).
//! - Otherwise the key is deleted by a Txn on its `mod_revision`.
//! - `propagationPolicy` (or the deprecated `orphanDependents`): `Orphan`
//!   adds the `orphan` finalizer and `Foreground` the `foregroundDeletion`
//!   finalizer, so the object only gets `deletionTimestamp` and the
//!   garbage collector (`crates/controllers/src/gc`) orphans or deletes
//!   its dependents before removing the finalizer; `Background` (the
//!   default) deletes at once and leaves the dependents to the collector.
//!   batch/v1 Jobs default to `Orphan` with Kubernetes' warning.
//! - A namespace (other than the four built-in ones, which answer 403)
//!   gets `deletionTimestamp` and phase `Terminating`; the namespace
//!   controller (`crates/controllers/src/namespace`) deletes its contents
//!   and then removes the `kubernetes` finalizer through the `finalize`
//!   subresource ([`finalize`]), which deletes the object. Creating
//!   objects in a Terminating namespace is refused
//!   (`crate::rest`'s NamespaceLifecycle check).

use chrono::Utc;
use http::Response;
use serde_json::{json, Value};

use crate::auth::Operation;
use crate::cached_object::CachedObject;
use crate::error::{ApiError, Target};
use crate::pods;
use crate::registry::{ListOptions, ListPage, Registry, Stored};
use crate::request::RequestContext;
use crate::resources::ResourceInfo;
use crate::response::{self, Body};
use crate::rest::{respond_object, selectors, MAX_UPDATE_ATTEMPTS};
use crate::selectors::Selectable;
use crate::strategy::{self, meta_mut, meta_str};

/// `DeleteOptions` from the body and the query.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`.
    pub grace_period_seconds: Option<i64>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `propagationPolicy` (`orphanDependents` folded in); `None`: the
    /// kind's default.
    pub propagation: Option<Propagation>,
}

/// How dependents are treated (`metav1.DeletionPropagation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    /// Dependents lose their owner reference; `orphan` finalizer.
    Orphan,
    /// The object is deleted now; the collector deletes dependents.
    Background,
    /// Dependents go first; `foregroundDeletion` finalizer.
    Foreground,
}

impl Propagation {
    /// The finalizer that makes the garbage collector act, if any.
    pub fn finalizer(self) -> Option<&'static str> {
        match self {
            Propagation::Orphan => Some("orphan"),
            Propagation::Foreground => Some("foregroundDeletion"),
            Propagation::Background => None,
        }
    }
}

/// `propagationPolicy` and `orphanDependents` from the query or body;
/// 422 on an unknown value or on both set, as `ValidateDeleteOptions`.
fn propagation(ctx: &RequestContext, body: &Value) -> Result<Option<Propagation>, ApiError> {
    let invalid = |field: &str, detail: String| {
        let mut e = crate::validation::FieldError::required(field);
        e.kind = crate::validation::FieldErrorKind::Forbidden;
        e.detail = detail;
        ApiError::Invalid {
            kind: "DeleteOptions".into(),
            group: "meta.k8s.io".into(),
            name: String::new(),
            causes: vec![e],
        }
    };
    let policy = ctx
        .query
        .get("propagationPolicy")
        .map(str::to_string)
        .or_else(|| {
            body.get("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .filter(|p| !p.is_empty());
    let orphan = match ctx.query.get("orphanDependents") {
        Some(v) => Some(v == "true"),
        None => body.get("orphanDependents").and_then(Value::as_bool),
    };
    let from_policy = match policy.as_deref() {
        None => None,
        Some("Orphan") => Some(Propagation::Orphan),
        Some("Background") => Some(Propagation::Background),
        Some("Foreground") => Some(Propagation::Foreground),
        Some(other) => {
            let mut e = crate::validation::FieldError::required("propagationPolicy");
            e.kind = crate::validation::FieldErrorKind::NotSupported;
            e.value = Some(format!("{other:?}"));
            e.detail = "supported values: \"Foreground\", \"Background\", \"Orphan\"".into();
            return Err(ApiError::Invalid {
                kind: "DeleteOptions".into(),
                group: "meta.k8s.io".into(),
                name: String::new(),
                causes: vec![e],
            });
        }
    };
    match (from_policy, orphan) {
        (Some(_), Some(_)) => Err(invalid(
            "propagationPolicy",
            "orphanDependents and deletionPropagation cannot be both set".into(),
        )),
        (p @ Some(_), None) => Ok(p),
        (None, Some(true)) => Ok(Some(Propagation::Orphan)),
        (None, Some(false)) => Ok(Some(Propagation::Background)),
        (None, None) => Ok(None),
    }
}

fn delete_options(ctx: &RequestContext) -> Result<DeleteOptions, ApiError> {
    let body = if ctx.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        ctx.body_object()?
    };
    let mut opts = DeleteOptions {
        grace_period_seconds: body.get("gracePeriodSeconds").and_then(Value::as_i64),
        uid: body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        resource_version: body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
        propagation: propagation(ctx, &body)?,
    };
    if let Some(g) = ctx.query.int("gracePeriodSeconds")? {
        opts.grace_period_seconds = Some(g);
    }
    if opts.grace_period_seconds.is_some_and(|g| g < 0) {
        opts.grace_period_seconds = Some(0);
    }
    Ok(opts)
}

/// DELETE on one object.
pub async fn delete(
    ctx: &mut RequestContext,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let opts = delete_options(ctx)?;
    if opts.propagation.is_none() && (res.group, res.kind) == ("batch", "Job") {
        // batch/v1 Jobs keep Kubernetes' legacy default (job strategy's
        // DefaultGarbageCollectionPolicy) and its warning.
        ctx.warnings.push("child pods are preserved by default when jobs are deleted; set propagationPolicy=Background to remove them or set propagationPolicy=Orphan to suppress this warning".into());
    }
    let obj = delete_one(ctx, res, ns, name, &opts).await?;
    respond_object(ctx, 200, res, &obj)
}

/// Deletes (or starts the graceful deletion of) one object; returns its
/// last state.
pub async fn delete_one(
    ctx: &RequestContext,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Value, ApiError> {
    let dry_run = ctx.dry_run()?;
    for _ in 0..MAX_UPDATE_ATTEMPTS {
        let current = ctx.state.registry.get_required(res, ns, name).await?;
        if let Some(uid) = &opts.uid {
            let have = meta_str(&current.obj, "uid").unwrap_or_default();
            if uid != have {
                return Err(ApiError::Conflict {
                    target: Target::new(res, name),
                    detail: format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"),
                });
            }
        }
        if let Some(rv) = &opts.resource_version {
            if *rv != current.mod_revision.to_string() {
                return Err(ApiError::Conflict {
                    target: Target::new(res, name),
                    detail: format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        current.mod_revision
                    ),
                });
            }
        }
        ctx.state
            .admission
            .admit(
                &ctx.user,
                Operation::Delete,
                res,
                &mut current.obj.clone(),
                Some(&current.obj),
            )
            .await?;

        let period = if res.kind == "Pod" {
            pods::grace_period(&current.obj, opts.grace_period_seconds)
        } else {
            0
        };
        let deleting = current.obj.pointer("/metadata/deletionTimestamp").is_some();
        let policy = opts.propagation.unwrap_or(default_propagation(res));
        let mut current = current;
        if let (Some(f), false) = (policy.finalizer(), deleting) {
            // The finalizer goes in with the deletionTimestamp below.
            let list = meta_mut(&mut current.obj)
                .entry("finalizers")
                .or_insert_with(|| json!([]));
            if let Some(a) = list.as_array_mut() {
                if !a.iter().any(|x| x == f) {
                    a.push(json!(f));
                }
            }
        }
        let finalizers = current
            .obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        let old_grace = current
            .obj
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64);
        if res.kind == "Namespace" {
            match delete_namespace(ctx, res, name, &current, dry_run).await? {
                Some(v) => return Ok(v),
                None => continue,
            }
        }

        if period > 0 || finalizers {
            if deleting && old_grace.is_some_and(|g| g <= period) {
                // Already terminating at least this fast: nothing to change.
                return Ok(current.obj);
            }
            let now = Utc::now();
            let mut next = current.obj.clone();
            let meta = meta_mut(&mut next);
            let ts = if deleting && period == 0 {
                meta.get("deletionTimestamp")
                    .cloned()
                    .unwrap_or(json!(strategy::timestamp(now)))
            } else {
                // Checked: a client may send any int64 as gracePeriodSeconds.
                let at = chrono::Duration::try_seconds(period)
                    .and_then(|d| now.checked_add_signed(d))
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!("gracePeriodSeconds {period} is out of range"))
                    })?;
                json!(strategy::timestamp(at))
            };
            meta.insert("deletionTimestamp".into(), ts);
            meta.insert("deletionGracePeriodSeconds".into(), json!(period));
            if dry_run {
                return Ok(next);
            }
            match ctx
                .state
                .registry
                .update(res, ns, name, next, &current)
                .await?
            {
                Some(v) => return Ok(v),
                None => continue,
            }
        }
        if dry_run {
            return Ok(current.obj);
        }
        if ctx
            .state
            .registry
            .delete(res, ns, name, current.mod_revision)
            .await?
            .is_some()
        {
            if crate::services::is_service(res) {
                crate::services::release(&ctx.state.registry, &current.obj).await;
            }
            return Ok(current.obj);
        }
    }
    Err(ApiError::modified(res, name))
}

/// The namespaces that always exist (the lifecycle admission plugin's
/// immortal namespaces).
pub const IMMORTAL_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// DELETE of a namespace (Kubernetes' namespace REST `Delete`): the first
/// request sets `deletionTimestamp` and phase `Terminating` and leaves the
/// contents to the namespace controller; the object goes once neither
/// `spec.finalizers` nor `metadata.finalizers` holds it. `Ok(None)`: lost
/// a race, retry.
async fn delete_namespace(
    ctx: &RequestContext,
    res: &'static ResourceInfo,
    name: &str,
    current: &Stored,
    dry_run: bool,
) -> Result<Option<Value>, ApiError> {
    if IMMORTAL_NAMESPACES.contains(&name) {
        return Err(ApiError::ForbiddenObject {
            target: Target::new(res, name),
            detail: "this namespace may not be deleted".into(),
            causes: Vec::new(),
        });
    }
    let held = crate::rest::has_finalizers(res, &current.obj);
    let deleting = current.obj.pointer("/metadata/deletionTimestamp").is_some();
    if held && deleting {
        return Ok(Some(current.obj.clone()));
    }
    if held {
        let mut next = current.obj.clone();
        meta_mut(&mut next).insert(
            "deletionTimestamp".into(),
            json!(strategy::timestamp(Utc::now())),
        );
        meta_mut(&mut next).insert("deletionGracePeriodSeconds".into(), json!(0));
        next["status"]["phase"] = json!("Terminating");
        if dry_run {
            return Ok(Some(next));
        }
        return ctx
            .state
            .registry
            .update(res, None, name, next, current)
            .await;
    }
    if dry_run {
        return Ok(Some(current.obj.clone()));
    }
    let gone = ctx
        .state
        .registry
        .delete(res, None, name, current.mod_revision)
        .await?;
    Ok(gone.map(|_| current.obj.clone()))
}

/// PUT `namespaces/<name>/finalize`: replaces `spec.finalizers` with the
/// body's (the namespace controller removes `kubernetes` when the
/// namespace is empty); a Terminating namespace left with no finalizers
/// is deleted.
pub async fn finalize(
    ctx: &mut RequestContext,
    res: &'static ResourceInfo,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let body = ctx.body_object()?;
    let finalizers = match body.pointer("/spec/finalizers") {
        None | Some(Value::Null) => json!([]),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => json!(a),
        Some(_) => {
            return Err(ApiError::BadRequest(
                "spec.finalizers must be a list of strings".into(),
            ))
        }
    };
    let dry_run = ctx.dry_run()?;
    for _ in 0..MAX_UPDATE_ATTEMPTS {
        let current = ctx.state.registry.get_required(res, None, name).await?;
        let mut next = current.obj.clone();
        next["spec"]["finalizers"] = finalizers.clone();
        let done = next.pointer("/metadata/deletionTimestamp").is_some()
            && !crate::rest::has_finalizers(res, &next);
        if dry_run {
            return respond_object(ctx, 200, res, &next);
        }
        let written = if done {
            let gone = ctx
                .state
                .registry
                .delete(res, None, name, current.mod_revision)
                .await?;
            gone.map(|_| next)
        } else {
            ctx.state
                .registry
                .update(res, None, name, next, &current)
                .await?
        };
        if let Some(obj) = written {
            return respond_object(ctx, 200, res, &obj);
        }
    }
    Err(ApiError::modified(res, name))
}

/// The propagation policy of a delete that names none: Kubernetes'
/// `DefaultGarbageCollectionPolicy` per strategy — Orphan for batch/v1
/// Jobs, Background for everything else served here.
pub fn default_propagation(res: &ResourceInfo) -> Propagation {
    match (res.group, res.kind) {
        ("batch", "Job") => Propagation::Orphan,
        _ => Propagation::Background,
    }
}

/// DELETE on a collection (`deletecollection`): deletes every object the
/// selectors match; answers the list of deleted objects.
pub async fn delete_collection(
    ctx: &mut RequestContext,
    res: &'static ResourceInfo,
    ns: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let opts = delete_options(ctx)?;
    let (labels, fields) = selectors(ctx, res)?;
    let page = ctx
        .state
        .registry
        .list(res, ns, &ListOptions::default(), |o| {
            labels.matches(o) && fields.matches(res, o)
        })
        .await?;
    let revision = page.revision;
    // Each deleted object is encoded at once and its decoded form dropped:
    // a decoded pod takes ~10x its JSON, and holding 50,000 of them until
    // the answer was written made this the server's peak (~1.8 GB). The
    // listed items are released as they are deleted, for the same reason.
    let mut deleted = Vec::new();
    for item in page.items {
        let name = item.field(res, "metadata.name").into_owned();
        let item_ns =
            Some(item.field(res, "metadata.namespace").into_owned()).filter(|n| !n.is_empty());
        drop(item);
        match delete_one(ctx, res, item_ns.as_deref(), &name, &opts).await {
            Ok(obj) => deleted.push(std::sync::Arc::new(CachedObject::new(res.kind, &obj))),
            Err(ApiError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let page = ListPage {
        items: deleted,
        revision,
        continue_token: None,
        remaining_item_count: None,
    };
    let list = Registry::list_object(res, &page);
    Ok(response::list(200, &list, ctx.output, &ctx.warnings))
}
