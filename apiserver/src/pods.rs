//! Pod-specific REST behaviour: binding a pod to a node (the scheduler's
//! write, `pods/binding` or the older `bindings` collection), eviction
//! (`pods/eviction`, what `kubectl drain` posts) and the grace period of a
//! pod deletion.

use chrono::Utc;
use http::Response;
use serde_json::{json, Value};

use crate::error::{ApiError, Target};
use crate::request::RequestContext;
use crate::resources::{find, ResourceInfo};
use crate::response::{self, Body};
use crate::strategy::{meta_str, timestamp};
use crate::validation::FieldError;

/// A pod's termination grace period when none is given
/// (`v1.DefaultTerminationGracePeriodSeconds`).
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;

/// How many times a binding retries a lost race with a status writer.
const MAX_BIND_ATTEMPTS: usize = 8;

fn pods() -> &'static ResourceInfo {
    // The table always serves core/v1 pods.
    find("", "v1", "pods").unwrap_or(&crate::resources::RESOURCES[0])
}

/// The grace period for deleting `pod` (Kubernetes' podStrategy
/// `CheckGracefulDelete`): the request's, else the pod's
/// `terminationGracePeriodSeconds`, else 30; but 0 — delete at once — for
/// a pod not bound to a node (no agent runs it) or one already terminal.
pub fn grace_period(pod: &Value, requested: Option<i64>) -> i64 {
    let unbound = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    let terminal = matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if unbound || terminal {
        return 0;
    }
    requested
        .or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS)
        .max(0)
}

/// Applies a binding to a pod: `spec.nodeName` and the `PodScheduled`
/// condition. Errors as kube-apiserver's `BindingREST.assignPod`.
pub fn assign(pod: &Value, node: &str, now: chrono::DateTime<Utc>) -> Result<Value, ApiError> {
    let name = meta_str(pod, "name").unwrap_or_default();
    let conflict = |detail: String| ApiError::Conflict {
        target: Target {
            resource: "pods/binding".into(),
            group: String::new(),
            name: name.to_string(),
        },
        detail,
    };
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        return Err(conflict(format!(
            "pod {name} is being deleted, cannot be assigned to a host"
        )));
    }
    if let Some(current) = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        return Err(conflict(format!(
            "pod {name} is already assigned to node {current:?}"
        )));
    }
    let mut pod = pod.clone();
    if !pod.is_object() {
        return Err(ApiError::Internal(format!(
            "stored pod {name} is not an object"
        )));
    }
    // Indexing below only touches objects (serde_json panics on others).
    if !pod.get("spec").is_some_and(Value::is_object) {
        pod["spec"] = json!({});
    }
    pod["spec"]["nodeName"] = json!(node);
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": timestamp(now)});
    match pod["status"]
        .get_mut("conditions")
        .and_then(Value::as_array_mut)
    {
        Some(conds) => match conds
            .iter_mut()
            .find(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"))
        {
            Some(c) => *c = cond,
            None => conds.push(cond),
        },
        None => pod["status"]["conditions"] = json!([cond]),
    }
    Ok(pod)
}

/// POST `pods/<name>/binding` (or `namespaces/<ns>/bindings` with the name
/// in the body): binds the pod to `target.name`; 201 with a Success Status.
pub async fn bind(
    ctx: &mut RequestContext,
    ns: &str,
    name: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let body = ctx.body_object()?;
    let pod_name = match (name, meta_str(&body, "name")) {
        (Some(n), _) => n.to_string(),
        (None, Some(n)) if !n.is_empty() => n.to_string(),
        _ => {
            return Err(ApiError::Invalid {
                kind: "Binding".into(),
                group: String::new(),
                name: String::new(),
                causes: vec![FieldError::required("metadata.name")],
            })
        }
    };
    let node = body
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = body
        .pointer("/target/kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut causes = Vec::new();
    if node.is_empty() {
        causes.push(FieldError::required("target.name"));
    }
    if !kind.is_empty() && kind != "Node" {
        causes.push(FieldError::invalid(
            "target.kind",
            format!("{kind:?}"),
            "must be empty or \"Node\"",
        ));
    }
    if !causes.is_empty() {
        return Err(ApiError::Invalid {
            kind: "Binding".into(),
            group: String::new(),
            name: pod_name,
            causes,
        });
    }
    let res = pods();
    for _ in 0..MAX_BIND_ATTEMPTS {
        let current = ctx
            .state
            .registry
            .get_required(res, Some(ns), &pod_name)
            .await?;
        let bound = assign(&current.obj, &node, Utc::now())?;
        if ctx.dry_run()? {
            return Ok(response::success(201));
        }
        if ctx
            .state
            .registry
            .update(res, Some(ns), &pod_name, bound, &current)
            .await?
            .is_some()
        {
            return Ok(response::success(201));
        }
    }
    Err(ApiError::modified(res, &pod_name))
}

/// POST `pods/<name>/eviction` with a `policy/v1` `Eviction` (Kubernetes'
/// `EvictionREST.Create`): checks the PodDisruptionBudget that selects the
/// pod ([`crate::eviction`]), spends one of its disruptions with an
/// optimistic write of its status, then deletes the pod gracefully with
/// the eviction's `deleteOptions`, answering 201 with a Success Status. A
/// budget that allows no disruption answers 429, which `kubectl drain`
/// retries every 5 s.
pub async fn evict(
    ctx: &mut RequestContext,
    ns: &str,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let body = ctx.body_object()?;
    match body.get("kind").and_then(Value::as_str) {
        None | Some("" | "Eviction") => {}
        Some(k) => {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({k}) does not match the expected kind (Eviction)"
            )))
        }
    }
    if let Some(n) = meta_str(&body, "name").filter(|n| !n.is_empty() && *n != name) {
        return Err(ApiError::BadRequest(format!(
            "name in URL does not match name in Eviction object: {name} != {n}"
        )));
    }
    let options = body.get("deleteOptions").cloned().unwrap_or(Value::Null);
    let opts = crate::delete::DeleteOptions {
        grace_period_seconds: options
            .get("gracePeriodSeconds")
            .and_then(Value::as_i64)
            .map(|g| g.max(0)),
        uid: options
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        resource_version: options
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
        ..Default::default()
    };
    spend_budget(ctx, ns, name).await?;
    crate::delete::delete_one(ctx, pods(), Some(ns), name, &opts).await?;
    Ok(response::success(201))
}

/// How many times an eviction retries a lost race on the budget's status
/// (Kubernetes' `EvictionsRetry` allows a few; each try re-reads).
const MAX_EVICTION_ATTEMPTS: usize = 8;

/// The budget half of an eviction: `Ok` once the pod may go (a disruption
/// spent and recorded, unless `dryRun`), the budget's 429 otherwise.
async fn spend_budget(ctx: &RequestContext, ns: &str, name: &str) -> Result<(), ApiError> {
    let budgets_res = find("policy", "v1", "poddisruptionbudgets")
        .ok_or_else(|| ApiError::Internal("poddisruptionbudgets are not served".into()))?;
    let dry_run = ctx.dry_run()?;
    for _ in 0..MAX_EVICTION_ATTEMPTS {
        let pod = ctx
            .state
            .registry
            .get_required(pods(), Some(ns), name)
            .await?;
        if crate::eviction::can_ignore_budget(&pod.obj) {
            return Ok(());
        }
        let page = ctx
            .state
            .registry
            .list(budgets_res, Some(ns), &Default::default(), |_| true)
            .await?;
        let budgets = page.values();
        let selecting = crate::eviction::selecting(&pod.obj, &budgets);
        let now = timestamp(Utc::now());
        let spent = match crate::eviction::decide(&pod.obj, &selecting, &now)? {
            crate::eviction::Decision::Delete => return Ok(()),
            crate::eviction::Decision::SpendAndDelete(spent) => spent,
        };
        if dry_run {
            return Ok(());
        }
        // Written only if the budget is still the one listed (its
        // resourceVersion is the key's mod_revision).
        let budget_name = meta_str(&spent, "name").unwrap_or_default().to_string();
        let listed = selecting[0];
        let current = crate::registry::Stored {
            obj: listed.clone(),
            mod_revision: meta_str(listed, "resourceVersion")
                .and_then(|rv| rv.parse().ok())
                .unwrap_or_default(),
            cached: false,
        };
        if ctx
            .state
            .registry
            .update(budgets_res, Some(ns), &budget_name, spent, &current)
            .await?
            .is_some()
        {
            return Ok(());
        }
    }
    Err(crate::eviction::too_many_requests(
        "the disruption budget kept changing; try again".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_periods() {
        let bound = json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        assert_eq!(grace_period(&bound, None), 30);
        assert_eq!(grace_period(&bound, Some(0)), 0);
        assert_eq!(grace_period(&bound, Some(5)), 5);
        let custom = json!({"spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 7}});
        assert_eq!(grace_period(&custom, None), 7);
        assert_eq!(grace_period(&json!({"spec": {}}), Some(10)), 0);
        let done = json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Succeeded"}});
        assert_eq!(grace_period(&done, None), 0);
    }

    #[test]
    fn assign_sets_node_and_condition_once() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {}, "status": {"phase": "Pending"}});
        let bound = assign(&pod, "n1", Utc::now()).unwrap();
        assert_eq!(bound["spec"]["nodeName"], "n1");
        assert_eq!(bound["status"]["conditions"][0]["type"], "PodScheduled");
        assert_eq!(bound["status"]["conditions"][0]["status"], "True");
        let e = assign(&bound, "n2", Utc::now()).unwrap_err();
        assert_eq!(e.status_code(), 409);
        assert!(
            e.to_string()
                .contains("pod p is already assigned to node \"n1\""),
            "{e}"
        );
    }
}
