//! The generic REST verbs over any resource in the table: get, list,
//! create, update, patch, delete, deletecollection, the `status`
//! subresource and namespaces' `finalize` (kube-apiserver's
//! `registry/generic/registry.Store`), with the NamespaceLifecycle and
//! ResourceQuota ([`crate::quota`]) admission checks on creates.
//!
//! Each write runs the pipeline in order: decode → check kind and identity
//! → unknown-field check (`fieldValidation`; unknown fields dropped) → server-set fields
//! ([`crate::strategy`]) → defaults → validation → admission → store Txn.
//! Updates from patches retry on a lost race (they have no
//! resourceVersion precondition); a PUT or patch that carries a
//! resourceVersion gets 409 Conflict instead. A patch starts from the watch
//! cache's copy of the object and reads the store only after a conflict
//! (kube-apiserver's `GuaranteedUpdate` with its cached hint). A patch
//! reports unknown fields once, after its first read of the object (so a
//! patch of a missing object answers 404 whatever its body); a merge patch
//! whose body decodes on its own is checked instead of the whole patched
//! object.

use chrono::Utc;
use http::{Method, Response};
use serde_json::{json, Value};

use crate::auth::{Operation, RequestAttributes};
use crate::codec::Output;
use crate::error::ApiError;
use crate::patch::{self, PatchType};
use crate::registry::{ListOptions, Registry, Stored};
use crate::request::RequestContext;
use crate::resources::{find, ResourceInfo};
use crate::response::{self, Body};
use crate::router::ResourcePath;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::strategy::{self, meta_mut, meta_str};
use crate::{defaults, pods, table, validation, watch};

#[path = "schema_hpa_v1.rs"]
mod hpa_v1;

/// How often a write that lost a race to another writer is retried before
/// answering 409 (kube-apiserver's `GuaranteedUpdate` loops; a handful of
/// tries covers contention between a few controllers).
pub const MAX_UPDATE_ATTEMPTS: usize = 8;

/// The namespaces resource (namespace existence checks).
fn namespaces() -> &'static ResourceInfo {
    // The table always serves core/v1 namespaces.
    find("", "v1", "namespaces").unwrap_or(&crate::resources::RESOURCES[0])
}

/// The verb a request on `path` with `method` performs (for authorization).
pub fn verb(method: &Method, path: &ResourcePath, watch: bool) -> &'static str {
    match (method.as_str(), path.name.is_some()) {
        ("GET", _) if path.watch_prefix || (watch && path.name.is_none()) => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

/// Serves one resource request.
pub async fn handle(
    ctx: &mut RequestContext,
    method: &Method,
    path: &ResourcePath,
) -> Result<Response<Body>, ApiError> {
    if !std::ptr::eq(
        crate::resources::storage_version(path.resource),
        path.resource,
    ) {
        // A version stored as another one (autoscaling/v1 HPAs).
        return hpa_v1::handle(ctx, method, path).await;
    }
    handle_stored(ctx, method, path).await
}

/// Serves one request on a resource in its stored version.
async fn handle_stored(
    ctx: &mut RequestContext,
    method: &Method,
    path: &ResourcePath,
) -> Result<Response<Body>, ApiError> {
    let res = path.resource;
    let ns = path.namespace.as_deref();
    if res.namespaced && ns.is_none() && !(method == Method::GET && path.name.is_none()) {
        // Only reads of all namespaces work without a namespace.
        return Err(ApiError::MethodNotAllowed);
    }
    let wants_watch = path.watch_prefix || ctx.query.flag("watch");
    let name = path.name.as_deref();
    match (method.as_str(), name, path.subresource.as_deref()) {
        ("GET", None, None) if wants_watch => watch::serve(ctx, res, ns, None).await,
        ("GET", Some(n), None) if path.watch_prefix => watch::serve(ctx, res, ns, Some(n)).await,
        ("GET", None, None) => list(ctx, res, ns).await,
        ("GET", Some(n), None | Some("status")) => get(ctx, res, ns, n).await,
        ("GET", Some(n), Some("log")) => crate::logs::serve(ctx, ns.unwrap_or_default(), n).await,
        ("POST", None, None) => create(ctx, res, ns).await,
        ("POST", Some(n), Some("binding")) => {
            pods::bind(ctx, ns.unwrap_or_default(), Some(n)).await
        }
        ("POST", Some(n), Some("eviction")) => pods::evict(ctx, ns.unwrap_or_default(), n).await,
        ("POST", Some(n), Some("token")) => {
            let signer = ctx.state.authn.token_signer().cloned();
            let signer = signer.ok_or(ApiError::MethodNotAllowed)?;
            crate::serviceaccount_token::create_token(ctx, &signer, ns.unwrap_or_default(), n).await
        }
        (_, Some(n), Some("scale")) => crate::scale::serve(ctx, method, res, ns, n).await,
        ("PUT", Some(n), None) => update(ctx, res, ns, n, false).await,
        ("PUT", Some(n), Some("status")) => update(ctx, res, ns, n, true).await,
        ("PUT", Some(n), Some("finalize")) => crate::delete::finalize(ctx, res, n).await,
        ("PATCH", Some(n), None) => patch(ctx, res, ns, n, false).await,
        ("PATCH", Some(n), Some("status")) => patch(ctx, res, ns, n, true).await,
        ("DELETE", Some(n), None) => crate::delete::delete(ctx, res, ns, n).await,
        ("DELETE", None, None) => crate::delete::delete_collection(ctx, res, ns).await,
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// Attributes for authorizing `method` on `path`.
pub fn attributes<'a>(
    method: &Method,
    path: &'a ResourcePath,
    uri_path: &'a str,
    watch: bool,
) -> RequestAttributes<'a> {
    RequestAttributes {
        verb: verb(method, path, watch),
        resource: Some(path.resource),
        subresource: path.subresource.as_deref(),
        namespace: path.namespace.as_deref(),
        name: path.name.as_deref(),
        path: uri_path,
    }
}

/// Answers one object, as a Table when the client asked for one.
pub fn respond_object(
    ctx: &RequestContext,
    code: u16,
    res: &ResourceInfo,
    obj: &Value,
) -> Result<Response<Body>, ApiError> {
    if ctx.output == Output::Table {
        let rv = meta_str(obj, "resourceVersion")
            .unwrap_or_default()
            .to_string();
        let t = table::to_table(
            res,
            std::slice::from_ref(obj),
            json!({"resourceVersion": rv}),
            ctx.include_object()?,
            Utc::now(),
        );
        return Ok(response::object(code, &t, Output::Json, &ctx.warnings));
    }
    match ctx.output {
        Output::Metadata => {
            let meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
            let partial = crate::codec::partial_object_metadata(meta);
            Ok(response::object(
                code,
                &partial,
                Output::Json,
                &ctx.warnings,
            ))
        }
        Output::MetadataList => Err(ApiError::NotAcceptableAs(format!(
            "you requested PartialObjectMetadataList, but the requested object is not a list ({})",
            res.kind
        ))),
        output => Ok(response::object(code, obj, output, &ctx.warnings)),
    }
}

async fn get(
    ctx: &mut RequestContext,
    res: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let stored = ctx.state.registry.get_required(res, ns, name).await?;
    respond_object(ctx, 200, res, &stored.obj)
}

/// Parses `labelSelector` and `fieldSelector` into one filter.
pub fn selectors(
    ctx: &RequestContext,
    res: &'static ResourceInfo,
) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(ctx.query.get("labelSelector").unwrap_or(""))?;
    let fields = FieldSelector::parse(ctx.query.get("fieldSelector").unwrap_or(""), res)?;
    Ok((labels, fields))
}

/// The list options from `limit`, `continue`, `resourceVersion` and
/// `resourceVersionMatch`.
fn list_options(ctx: &RequestContext) -> Result<ListOptions, ApiError> {
    let limit = ctx.query.int("limit")?.unwrap_or(0).max(0);
    let continue_token = ctx
        .query
        .get("continue")
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    let rv = match ctx.query.get("resourceVersion").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(
            v.parse::<i64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid resource version: {v:?}")))?,
        ),
    };
    let mut opts = ListOptions {
        limit,
        continue_token,
        ..Default::default()
    };
    match (ctx.query.get("resourceVersionMatch").unwrap_or(""), rv) {
        ("Exact", Some(n)) if n > 0 => opts.exact_revision = Some(n),
        ("Exact", _) => {
            return Err(ApiError::BadRequest(
                "resourceVersionMatch: Exact requires a non-zero resourceVersion".into(),
            ))
        }
        ("" | "NotOlderThan", Some(n)) if n > 0 => opts.min_revision = Some(n),
        ("" | "NotOlderThan", _) => {}
        (other, _) => {
            return Err(ApiError::BadRequest(format!(
                "resourceVersionMatch: unsupported value {other:?}"
            )))
        }
    }
    Ok(opts)
}

async fn list(
    ctx: &mut RequestContext,
    res: &'static ResourceInfo,
    ns: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let (labels, fields) = selectors(ctx, res)?;
    let opts = list_options(ctx)?;
    if ctx.output == Output::Metadata {
        return Err(ApiError::NotAcceptableAs(format!(
            "you requested PartialObjectMetadata, but the requested object is a list ({})",
            res.list_kind
        )));
    }
    // Kubernetes counts the items after a page only when no selector
    // filters them (counting would mean matching the whole rest).
    let count_remaining = labels.is_empty() && fields.is_empty();
    let opts = ListOptions {
        count_remaining,
        ..opts
    };
    let page = ctx
        .state
        .registry
        .list(res, ns, &opts, |o| {
            labels.matches(o) && fields.matches(res, o)
        })
        .await?;
    let body = Registry::list_object(res, &page);
    if ctx.output == Output::Table {
        let meta = body.metadata().clone();
        let items = page.items.iter().map(|o| o.to_value());
        let t = table::to_table(res, items, meta, ctx.include_object()?, Utc::now());
        return Ok(response::object(200, &t, Output::Json, &ctx.warnings));
    }
    let body = if ctx.output == Output::MetadataList {
        body.metadata_only()
    } else {
        body
    };
    Ok(response::list(200, &body, ctx.output, &ctx.warnings))
}

/// Checks (or fills in) `apiVersion` and `kind` of a request body; 400
/// when they or `metadata` have the wrong JSON type, worded as Go's
/// decoder words it.
pub fn check_kind(res: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    let want_av = res.api_version();
    // What Go's decoder says of a wrongly typed field.
    let go_type = |v: &Value| match v {
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Null => "null",
    };
    for field in ["apiVersion", "kind"] {
        if let Some(v) = obj.get(field).filter(|v| !v.is_string() && !v.is_null()) {
            return Err(ApiError::BadRequest(format!(
                "couldn't get version/kind; json parse error: json: cannot unmarshal {} into Go struct field .{field} of type string",
                go_type(v)
            )));
        }
    }
    if let Some(m) = obj
        .get("metadata")
        .filter(|m| !m.is_object() && !m.is_null())
    {
        return Err(ApiError::BadRequest(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: json: cannot unmarshal {} into Go struct field {kind}.metadata of type v1.ObjectMeta",
            go_type(m),
            kind = res.kind,
            version = res.version,
        )));
    }
    match obj.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => obj["apiVersion"] = json!(want_av),
        Some(av) if av == want_av => {}
        Some(av) => {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({av}) does not match the expected API version ({want_av})"
            )))
        }
    }
    match obj.get("kind").and_then(Value::as_str) {
        None | Some("") => obj["kind"] = json!(res.kind),
        Some(k) if k == res.kind => {}
        Some(k) => {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                res.kind
            )))
        }
    }
    Ok(())
}

/// Sets `metadata.namespace` from the path (400 if the body disagrees).
fn check_namespace(res: &ResourceInfo, obj: &mut Value, ns: Option<&str>) -> Result<(), ApiError> {
    let meta = meta_mut(obj);
    match (res.namespaced, ns) {
        (true, Some(ns)) => {
            match meta.get("namespace").and_then(Value::as_str) {
                None | Some("") => {}
                Some(b) if b == ns => {}
                Some(_) => {
                    return Err(ApiError::BadRequest(
                        "the namespace of the provided object does not match the namespace sent on the request".into(),
                    ))
                }
            }
            meta.insert("namespace".into(), json!(ns));
        }
        _ => {
            meta.remove("namespace");
        }
    }
    Ok(())
}

/// Defaults, validates and admits an object about to be written.
async fn prepare(
    ctx: &RequestContext,
    res: &ResourceInfo,
    op: Operation,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    defaults::apply_defaults(res, obj);
    let name = meta_str(obj, "name").unwrap_or_default().to_string();
    let errors = validation::validate(res, obj, old);
    if !errors.is_empty() {
        return Err(ApiError::invalid(res, &name, errors));
    }
    if name.is_empty() {
        let mut e = validation::FieldError::required("metadata.name");
        e.detail = "name or generateName is required".into();
        return Err(ApiError::invalid(res, &name, vec![e]));
    }
    crate::rbac_escalation::check(ctx, res, obj).await?;
    ctx.state
        .admission
        .admit(&ctx.user, op, res, obj, old)
        .await
}

async fn create(
    ctx: &mut RequestContext,
    res: &'static ResourceInfo,
    ns: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let mut obj = ctx.body_object()?;
    check_kind(res, &mut obj)?;
    ctx.check_unknown_fields(res, &mut obj)?;
    create_object(ctx, res, ns, obj).await
}

/// The create pipeline for a decoded, kind-checked object (POST, and
/// server-side apply of an object that does not exist).
pub(crate) async fn create_object(
    ctx: &mut RequestContext,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    mut obj: Value,
) -> Result<Response<Body>, ApiError> {
    check_namespace(res, &mut obj, ns)?;
    strategy::expand_generate_name(&mut obj);
    strategy::prepare_for_create(res, &mut obj, Utc::now());
    prepare(ctx, res, Operation::Create, &mut obj, None).await?;
    crate::apply_rest::track(ctx, res, None, &mut obj, false);
    let name = meta_str(&obj, "name").unwrap_or_default().to_string();
    namespace_exists(ctx, res, ns, &name).await?;
    let service_accounts = ctx.state.service_account_admission;
    if let (Some(ns), ("", "pods"), true) = (ns, (res.group, res.plural), service_accounts) {
        crate::serviceaccount_admission::admit(&ctx.state.registry, ns, res, &mut obj).await?;
    }
    admit_and_store(ctx, res, ns, &name, &obj).await
}

/// The last steps of every create (POST, apply, PUT of a missing object):
/// ResourceQuota admission ([`crate::quota`], charged unless a dry run),
/// then the store write; a write that fails (409 AlreadyExists, …) gives
/// the charge back.
async fn admit_and_store(
    ctx: &RequestContext,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    obj: &Value,
) -> Result<Response<Body>, ApiError> {
    let dry_run = ctx.dry_run()?;
    let charge = crate::quota::admit(ctx, res, ns, name, obj, dry_run).await?;
    if dry_run {
        return respond_object(ctx, 201, res, obj);
    }
    let written = if crate::services::is_service(res) {
        let ranges = &ctx.state.service_ranges;
        crate::services::create(&ctx.state.registry, ranges, res, ns, name, obj).await
    } else {
        ctx.state.registry.create(res, ns, name, obj).await
    };
    match written {
        Ok(created) => respond_object(ctx, 201, res, &created),
        Err(e) => {
            charge.refund(ctx).await;
            Err(e)
        }
    }
}

/// Kubernetes' NamespaceLifecycle admission: no objects in a namespace
/// that does not exist (404 `namespaces "x" not found`) or is being
/// deleted (403 with the `NamespaceTerminating` cause).
async fn namespace_exists(
    ctx: &RequestContext,
    res: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> Result<(), ApiError> {
    let Some(ns) = ns.filter(|_| res.namespaced) else {
        return Ok(());
    };
    match ctx
        .state
        .registry
        .get_recent(namespaces(), None, ns)
        .await?
    {
        None => Err(ApiError::not_found(namespaces(), ns)),
        Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => {
            Err(ApiError::ForbiddenObject {
                target: crate::error::Target::new(res, name),
                detail: format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
                causes: vec![(
                    "NamespaceTerminating".into(),
                    format!("namespace {ns} is being terminated"),
                    "metadata.namespace".into(),
                )],
            })
        }
        Some(_) => Ok(()),
    }
}

/// Writes `new` over `current` after the shared pipeline; `Ok(None)` when
/// another writer got there first.
pub async fn write_update(
    ctx: &RequestContext,
    res: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    current: &Stored,
    mut new: Value,
    status_only: bool,
) -> Result<Option<Value>, ApiError> {
    strategy::prepare_for_update(res, &mut new, &current.obj, status_only);
    prepare(ctx, res, Operation::Update, &mut new, Some(&current.obj)).await?;
    crate::apply_rest::track(ctx, res, Some(&current.obj), &mut new, status_only);
    if ctx.dry_run()? {
        return Ok(Some(new));
    }
    // Removing the last finalizer of an object being deleted completes the
    // deletion (Kubernetes' generic registry does the same on update).
    let deleting = new.pointer("/metadata/deletionTimestamp").is_some();
    let finalizers = has_finalizers(res, &new);
    let grace = new
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if deleting && !finalizers && grace == 0 {
        return match ctx
            .state
            .registry
            .delete(res, ns, name, current.mod_revision)
            .await?
        {
            Some(_) => Ok(Some(new)),
            None => Ok(None),
        };
    }
    if crate::services::is_service(res) && !status_only {
        let ranges = &ctx.state.service_ranges;
        let registry = &ctx.state.registry;
        return crate::services::update(registry, ranges, res, ns, name, &new, current).await;
    }
    ctx.state.registry.update(res, ns, name, new, current).await
}

/// Whether anything still holds `obj` back from deletion: its
/// `metadata.finalizers`, and for a namespace also `spec.finalizers`.
pub fn has_finalizers(res: &ResourceInfo, obj: &Value) -> bool {
    let any = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
    };
    any("/metadata/finalizers") || (res.kind == "Namespace" && any("/spec/finalizers"))
}

fn body_resource_version(obj: &Value) -> Option<String> {
    meta_str(obj, "resourceVersion")
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

async fn update(
    ctx: &mut RequestContext,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    status_only: bool,
) -> Result<Response<Body>, ApiError> {
    let mut obj = ctx.body_object()?;
    check_kind(res, &mut obj)?;
    match meta_str(&obj, "name") {
        None | Some("") => {
            meta_mut(&mut obj).insert("name".into(), json!(name));
        }
        Some(n) if n == name => {}
        Some(n) => {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )))
        }
    }
    check_namespace(res, &mut obj, ns)?;
    ctx.check_unknown_fields(res, &mut obj)?;
    let precondition = body_resource_version(&obj);
    for _ in 0..MAX_UPDATE_ATTEMPTS {
        let Some(current) = ctx.state.registry.get(res, ns, name).await? else {
            if strategy::allow_create_on_update(res) && !status_only {
                // Upsert: the create path with this body.
                let mut created = obj.clone();
                strategy::prepare_for_create(res, &mut created, Utc::now());
                prepare(ctx, res, Operation::Create, &mut created, None).await?;
                namespace_exists(ctx, res, ns, name).await?;
                return admit_and_store(ctx, res, ns, name, &created).await;
            }
            return Err(ApiError::not_found(res, name));
        };
        if let Some(rv) = &precondition {
            if *rv != current.mod_revision.to_string() {
                return Err(ApiError::modified(res, name));
            }
        }
        match write_update(ctx, res, ns, name, &current, obj.clone(), status_only).await? {
            Some(updated) => return respond_object(ctx, 200, res, &updated),
            None if precondition.is_some() => return Err(ApiError::modified(res, name)),
            None => continue,
        }
    }
    Err(ApiError::modified(res, name))
}

async fn patch(
    ctx: &mut RequestContext,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    status_only: bool,
) -> Result<Response<Body>, ApiError> {
    if crate::apply_rest::is_apply(ctx.content_type.as_deref()) {
        return crate::apply_rest::apply_patch(ctx, res, ns, name, status_only).await;
    }
    let kind = PatchType::from_content_type(ctx.content_type.as_deref().unwrap_or(""))?;
    if kind == PatchType::StrategicMerge && res.custom.is_some() {
        // Custom objects have no Go struct tags to merge by (kube-apiserver: 415).
        return Err(ApiError::UnsupportedMediaType(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".into(),
        ));
    }
    let patch_body: Value = serde_json::from_slice(&ctx.body)
        .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))?;
    // A merge patch of a built-in kind brings unknown fields only where it
    // has them (stored objects have none): when its body decodes on its
    // own, it is checked once here instead of the whole patched object on
    // every attempt. Either way they are reported in the loop, after the
    // object has been read: kube-apiserver decodes strictly while it
    // applies the patch to the stored object, so a patch of a missing
    // object answers 404 whatever its body.
    let body_unknown = match kind {
        PatchType::Merge => crate::validation::unknown_fields_of_part(res, &patch_body),
        _ => None,
    };
    // A bad `fieldValidation` is refused before anything is read.
    ctx.field_validation()?;
    // Reported once: a retry after a conflict warns no second time.
    let mut reported = false;
    // The first attempt starts from the watch cache's copy; any conflict
    // reads the store (see `Registry::get_for_update`).
    let mut cached = true;
    for _ in 0..MAX_UPDATE_ATTEMPTS {
        let current = ctx
            .state
            .registry
            .get_for_update(res, ns, name, cached)
            .await?;
        cached = false;
        let mut patched = patch::apply(kind, &current.obj, &patch_body)?;
        if !patched.is_object() {
            return Err(ApiError::BadRequest(
                "the patch made the object something other than a JSON object".into(),
            ));
        }
        check_kind(res, &mut patched)?;
        // Unknown fields after the decode errors above and before the name
        // check: kube-apiserver's order (`patcher.applyPatch` decodes the
        // patched object strictly, then calls `checkName`).
        let whole;
        let unknown = match &body_unknown {
            Some(unknown) => unknown,
            None => {
                whole = crate::validation::unknown_fields(res, &patched);
                &whole
            }
        };
        if !reported {
            ctx.report_unknown_fields(res, unknown)?;
            reported = true;
        }
        if !unknown.is_empty() {
            // A no-op for a custom kind, whose schema prunes it.
            crate::validation::prune_unknown_fields(res, &mut patched);
        }
        if meta_str(&patched, "name") != Some(name) {
            return Err(ApiError::BadRequest(
                "the name of the object cannot be changed by a patch".into(),
            ));
        }
        // A patch that sets resourceVersion is a precondition on it.
        let precondition =
            body_resource_version(&patched).filter(|rv| *rv != current.mod_revision.to_string());
        if precondition.is_some() {
            if current.cached {
                continue;
            }
            return Err(ApiError::modified(res, name));
        }
        match write_update(ctx, res, ns, name, &current, patched, status_only).await? {
            Some(updated) => return respond_object(ctx, 200, res, &updated),
            None => continue,
        }
    }
    Err(ApiError::modified(res, name))
}
