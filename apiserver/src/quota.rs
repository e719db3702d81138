//! kube-apiserver's `ResourceQuota` admission plugin: a create that would
//! take a quota's `status.used` past its `status.hard` is refused with
//! 403, and an admitted create is charged to every quota that covers it
//! before the object is written, so that concurrent creates cannot all
//! slip under one limit. The pricing and the decision are
//! `skiff_api::quota` (shared with the controller that recomputes usage).
//!
//! ```text
//!  create_object ─> admit(obj)
//!    quotas of the namespace (watch cache; none: done)
//!    price the object (pods: requests/limits; services; claims; counts)
//!    for each quota: admission::check ─> NotCovered | Charge(used') | 403
//!    dryRun: stop here (checked, not charged)
//!    write status.used' if the quota's mod_revision is unchanged;
//!    a lost race re-reads that quota from the store and checks again
//!  ─> the object's own create Txn
//! ```
//!
//! A charge is given back when the object's own write then fails
//! (AlreadyExists, …) or a quota checked in a later round refuses it.
//!
//! Caveats: only creates are charged (upstream also charges updates that
//! raise usage: a claim's resize, a service turning NodePort); the quotas
//! are read from the watch cache, so one created a moment ago may not be
//! seen yet (upstream reads an informer's cache too).

use chrono::Utc;
use serde_json::{json, Value};
use skiff_api::quota::admission::{self, Outcome};
use skiff_api::quota::{resources, scope, usage};

use crate::error::{ApiError, Target};
use crate::registry::{ListOptions, Stored};
use crate::request::RequestContext;
use crate::resources::{find, ResourceInfo};
use crate::strategy::meta_str;
use crate::validation::FieldError;

/// How many lost races on quota writes a create retries before giving up
/// with 409. Each lost race means another create was charged, so this
/// bounds the creates racing for one quota at once.
const MAX_CHARGE_ATTEMPTS: usize = 64;

fn quotas_resource() -> Result<&'static ResourceInfo, ApiError> {
    find("", "v1", "resourcequotas")
        .ok_or_else(|| ApiError::Internal("resourcequotas are not served".into()))
}

fn stored(obj: Value) -> Stored {
    let mod_revision = meta_str(&obj, "resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .unwrap_or_default();
    Stored {
        obj,
        mod_revision,
        cached: false,
    }
}

/// What one admitted create was charged: per quota, the usage added.
#[derive(Debug, Default)]
#[must_use = "a create whose write fails must refund its charge"]
pub struct Charge {
    namespace: String,
    quotas: Vec<(String, resources::ResourceList)>,
}

impl Charge {
    /// Gives the charge back (the object's own write failed, or a later
    /// quota refused the create). Best effort: a quota that keeps changing
    /// is left to the controller's recount.
    pub async fn refund(self, ctx: &RequestContext) {
        let Ok(quotas_res) = quotas_resource() else {
            return;
        };
        let registry = &ctx.state.registry;
        for (name, charged) in &self.quotas {
            for _ in 0..MAX_CHARGE_ATTEMPTS {
                let Ok(Some(current)) = registry.get(quotas_res, Some(&self.namespace), name).await
                else {
                    break;
                };
                let left = resources::subtract(&status_used(&current.obj), charged);
                let mut refunded = current.obj.clone();
                refunded["status"]["used"] = json!(resources::to_api(&left));
                let written = registry
                    .update(quotas_res, Some(&self.namespace), name, refunded, &current)
                    .await;
                if !matches!(written, Ok(None)) {
                    break;
                }
            }
        }
    }
}

/// `status.used` of a stored quota.
fn status_used(obj: &Value) -> resources::ResourceList {
    obj.pointer("/status/used")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let q = skiff_api::quantity::Quantity::parse(v.as_str()?).ok()?;
            Some((k.clone(), q))
        })
        .collect()
}

/// Admits the creation of `obj` (`name`, a `res` in namespace `ns`):
/// refuses it if a quota would be exceeded, else charges the quotas that
/// cover it unless `dry_run`, and returns what it charged.
pub async fn admit(
    ctx: &RequestContext,
    res: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    obj: &Value,
    dry_run: bool,
) -> Result<Charge, ApiError> {
    let Some(ns) = ns.filter(|_| res.namespaced) else {
        return Ok(Charge::default());
    };
    let mut charge = Charge {
        namespace: ns.to_string(),
        quotas: Vec::new(),
    };
    let quotas_res = quotas_resource()?;
    // Any revision the cache has: a fresh consistent read would cost every
    // create a store round trip.
    let opts = ListOptions {
        min_revision: Some(1),
        ..Default::default()
    };
    let page = ctx
        .state
        .registry
        .list(quotas_res, Some(ns), &opts, |_| true)
        .await?;
    if page.items.is_empty() {
        return Ok(charge);
    }
    let priced = usage::price(res.group, res.plural, obj, Utc::now().timestamp())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let forbidden = |detail: String| ApiError::ForbiddenObject {
        target: Target::new(res, name),
        detail,
        causes: Vec::new(),
    };
    let mut pending: Vec<Stored> = page.values().into_iter().map(stored).collect();
    for _ in 0..MAX_CHARGE_ATTEMPTS {
        let mut charges = Vec::new();
        for current in pending.drain(..) {
            let quota = serde_json::from_value(current.obj.clone())
                .map_err(|e| ApiError::Internal(format!("stored resourcequota: {e}")))?;
            match admission::check(&quota, res.group, res.plural, &priced) {
                Err(refusal) => {
                    // A quota charged in an earlier round gets it back.
                    charge.refund(ctx).await;
                    return Err(forbidden(refusal.0));
                }
                Ok(Outcome::NotCovered) => {}
                Ok(Outcome::Charge(used)) => charges.push((current, used)),
            }
        }
        if dry_run {
            return Ok(charge);
        }
        for (current, used) in charges {
            let quota_name = meta_str(&current.obj, "name")
                .unwrap_or_default()
                .to_string();
            let mut charged = current.obj.clone();
            charged["status"]["used"] = json!(resources::to_api(&used));
            let registry = &ctx.state.registry;
            let written = registry
                .update(quotas_res, Some(ns), &quota_name, charged, &current)
                .await;
            let fresh = match written {
                Ok(Some(_)) => {
                    let added = resources::subtract(&used, &status_used(&current.obj));
                    charge.quotas.push((quota_name, added));
                    continue;
                }
                // Another create (or the controller) wrote it first: check
                // again against what is stored now.
                Ok(None) => registry.get(quotas_res, Some(ns), &quota_name).await,
                Err(e) => Err(e),
            };
            match fresh {
                Ok(Some(fresh)) => pending.push(fresh),
                Ok(None) => {}
                Err(e) => {
                    charge.refund(ctx).await;
                    return Err(e);
                }
            }
        }
        if pending.is_empty() {
            return Ok(charge);
        }
    }
    let stuck = meta_str(&pending[0].obj, "name")
        .unwrap_or_default()
        .to_string();
    charge.refund(ctx).await;
    Err(ApiError::Conflict {
        target: Target::new(quotas_res, &stuck),
        detail: "the quota kept changing while this create was charged to it; try again".into(),
    })
}

/// Validation of a ResourceQuota's spec beyond its schema
/// (`ValidateResourceQuotaSpec`): quantities of `spec.hard` parse and are
/// not negative; scopes and scope selectors are known and well formed.
pub fn validate(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in obj
        .pointer("/spec/hard")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let text = v
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string());
        let field = format!("spec.hard[{k}]");
        match skiff_api::quantity::Quantity::parse(&text) {
            Err(e) => errs.push(FieldError::invalid(
                field,
                format!("{text:?}"),
                e.to_string(),
            )),
            Ok(q) if q.is_negative() => errs.push(FieldError::invalid(
                field,
                format!("{text:?}"),
                "must be greater than or equal to 0",
            )),
            Ok(_) => {}
        }
    }
    let Ok(spec) = serde_json::from_value(obj.get("spec").cloned().unwrap_or(json!({}))) else {
        // The schema round trip reports undecodable specs.
        return errs;
    };
    for (field, detail) in scope::validate(&spec) {
        errs.push(FieldError::invalid(field, String::new(), detail));
    }
    errs
}

#[cfg(test)]
#[path = "quota_test.rs"]
mod tests;
