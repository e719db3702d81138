//! The PodDisruptionBudget check of `pods/eviction` (what `kubectl drain`
//! posts), as a pure decision over the pod and the budgets of its
//! namespace; [`crate::pods::evict`] does the reads and writes.
//!
//! ```text
//! pod terminal, pending or already terminating ──> delete, no budget consulted
//! no budget selects the pod                    ──> delete
//! more than one budget selects it              ──> 500
//! budget not yet observed by its controller    ──> 429
//! pod not ready (unhealthyPodEvictionPolicy)   ──> delete without spending
//! disruptionsAllowed == 0                      ──> 429 "would violate …"
//! otherwise ──> disruptionsAllowed - 1, disruptedPods[pod] = now, write the
//!               budget (optimistically), then delete the pod
//! ```
//!
//! The disruption controller (`skiff-controllers`' `disruption`) recomputes
//! the budget's status from the pods; `disruptedPods` tells it which pods
//! an eviction is already taking away, so a budget is never spent twice
//! before the deletion shows.

use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::strategy::meta_str;
use crate::validation::workload::selector_matches;

/// Kubernetes' `MaxDisruptedPodSize`: evictions not yet confirmed by the
/// disruption controller that one budget may hold.
pub const MAX_DISRUPTED_PODS: usize = 2000;

/// What an eviction does.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Delete the pod; no budget changes.
    Delete,
    /// Write this budget (its status spends one disruption), then delete.
    SpendAndDelete(Value),
}

/// Pods whose eviction needs no budget (`canIgnorePDB`): finished, never
/// started, or already being deleted.
pub fn can_ignore_budget(pod: &Value) -> bool {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    matches!(phase, Some("Succeeded" | "Failed" | "Pending"))
        || pod.pointer("/metadata/deletionTimestamp").is_some()
}

/// Whether `pod` has condition `Ready` = `True`.
pub fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The budgets (of the pod's namespace) whose selector selects `pod`. In
/// policy/v1 an empty selector selects every pod, a missing one none.
pub fn selecting<'a, B: std::borrow::Borrow<Value>>(
    pod: &Value,
    budgets: &'a [B],
) -> Vec<&'a Value> {
    let empty = Map::new();
    let labels = pod
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    budgets
        .iter()
        .map(|b| b.borrow())
        .filter(|b: &&Value| {
            b.pointer("/spec/selector")
                .filter(|s| !s.is_null())
                .is_some_and(|s| selector_matches(s, labels))
        })
        .collect()
}

/// The 429 an eviction gets when a budget blocks it, with the
/// `DisruptionBudget` cause kubectl prints.
pub fn too_many_requests(cause: String) -> ApiError {
    ApiError::TooManyRequests {
        message: "Cannot evict pod as it would violate the pod's disruption budget.".into(),
        causes: vec![("DisruptionBudget".into(), cause)],
    }
}

fn status_i64(budget: &Value, field: &str) -> i64 {
    budget
        .pointer(&format!("/status/{field}"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// Decides the eviction of `pod` (not ignorable, see
/// [`can_ignore_budget`]) against the budgets that select it; `now` is an
/// RFC 3339 timestamp for `disruptedPods`.
pub fn decide(pod: &Value, budgets: &[&Value], now: &str) -> Result<Decision, ApiError> {
    let budget = match budgets {
        [] => return Ok(Decision::Delete),
        [one] => *one,
        _ => {
            return Err(ApiError::Internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(),
            ))
        }
    };
    let name = meta_str(budget, "name").unwrap_or_default();
    if !is_ready(pod) {
        let policy = budget
            .pointer("/spec/unhealthyPodEvictionPolicy")
            .and_then(Value::as_str);
        let healthy_enough = status_i64(budget, "currentHealthy")
            >= status_i64(budget, "desiredHealthy")
            && status_i64(budget, "desiredHealthy") > 0;
        // An unready pod does not count as healthy: evicting it spends
        // nothing.
        if policy == Some("AlwaysAllow") || healthy_enough {
            return Ok(Decision::Delete);
        }
    }
    let generation = budget
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if status_i64(budget, "observedGeneration") < generation {
        return Err(too_many_requests(format!(
            "The disruption budget {name} is still being processed by the server."
        )));
    }
    let allowed = status_i64(budget, "disruptionsAllowed");
    if allowed < 0 {
        return Err(ApiError::Forbidden(
            "pdb disruptions allowed is negative".into(),
        ));
    }
    let disrupted = budget
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
        .map_or(0, Map::len);
    if disrupted > MAX_DISRUPTED_PODS {
        return Err(ApiError::Forbidden(
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller".into(),
        ));
    }
    if allowed == 0 {
        return Err(too_many_requests(format!(
            "The disruption budget {name} needs {} healthy pods and has {} currently",
            status_i64(budget, "desiredHealthy"),
            status_i64(budget, "currentHealthy")
        )));
    }
    let mut spent = budget.clone();
    let status = &mut spent["status"];
    status["disruptionsAllowed"] = json!(allowed - 1);
    let pod_name = meta_str(pod, "name").unwrap_or_default();
    match status
        .get_mut("disruptedPods")
        .and_then(Value::as_object_mut)
    {
        Some(m) => {
            m.insert(pod_name.to_string(), json!(now));
        }
        None => status["disruptedPods"] = json!({ pod_name: now }),
    }
    if allowed == 1 {
        set_disruption_allowed_false(status);
    }
    Ok(Decision::SpendAndDelete(spent))
}

/// The `DisruptionAllowed` condition turns False (`InsufficientPods`) when
/// an eviction spends the last disruption, as Kubernetes'
/// `UpdateDisruptionAllowedCondition` does.
fn set_disruption_allowed_false(status: &mut Value) {
    let Some(conds) = status.get_mut("conditions").and_then(Value::as_array_mut) else {
        return;
    };
    for c in conds
        .iter_mut()
        .filter(|c| c["type"] == "DisruptionAllowed")
    {
        if c["status"] != "False" {
            c["status"] = json!("False");
            c["reason"] = json!("InsufficientPods");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ready: bool) -> Value {
        json!({
            "metadata": {"name": "web-1", "labels": {"app": "web"}},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}
            ]}
        })
    }

    fn budget(allowed: i64, current: i64, desired: i64) -> Value {
        json!({
            "metadata": {"name": "web-pdb", "generation": 2},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": desired},
            "status": {
                "observedGeneration": 2, "disruptionsAllowed": allowed,
                "currentHealthy": current, "desiredHealthy": desired, "expectedPods": current,
                "conditions": [{"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods"}]
            }
        })
    }

    const NOW: &str = "2026-11-23T10:00:00Z";

    #[test]
    fn ignorable_pods() {
        let mut p = pod(true);
        assert!(!can_ignore_budget(&p));
        p["status"]["phase"] = json!("Succeeded");
        assert!(can_ignore_budget(&p));
        let mut p = pod(true);
        p["metadata"]["deletionTimestamp"] = json!(NOW);
        assert!(can_ignore_budget(&p));
    }

    #[test]
    fn selection_follows_policy_v1() {
        let p = pod(true);
        let mut none = budget(1, 2, 1);
        none["spec"].as_object_mut().unwrap().remove("selector");
        let mut all = budget(1, 2, 1);
        all["spec"]["selector"] = json!({});
        let mut other = budget(1, 2, 1);
        other["spec"]["selector"] = json!({"matchLabels": {"app": "db"}});
        let budgets = vec![none, all, other, budget(1, 2, 1)];
        assert_eq!(selecting(&p, &budgets).len(), 2);
    }

    #[test]
    fn spends_one_disruption_and_records_the_pod() {
        let b = budget(1, 2, 1);
        let Decision::SpendAndDelete(spent) = decide(&pod(true), &[&b], NOW).unwrap() else {
            panic!("expected a spend");
        };
        assert_eq!(spent["status"]["disruptionsAllowed"], 0);
        assert_eq!(spent["status"]["disruptedPods"]["web-1"], NOW);
        assert_eq!(spent["status"]["conditions"][0]["status"], "False");
        assert_eq!(
            spent["status"]["conditions"][0]["reason"],
            "InsufficientPods"
        );
    }

    #[test]
    fn an_exhausted_budget_answers_429_with_its_cause() {
        let b = budget(0, 1, 1);
        let e = decide(&pod(true), &[&b], NOW).unwrap_err();
        assert_eq!(e.status_code(), 429);
        assert_eq!(
            e.to_string(),
            "Cannot evict pod as it would violate the pod's disruption budget."
        );
        let status = e.to_status();
        assert_eq!(status["reason"], "TooManyRequests");
        assert_eq!(status["details"]["causes"][0]["reason"], "DisruptionBudget");
        assert_eq!(
            status["details"]["causes"][0]["message"],
            "The disruption budget web-pdb needs 1 healthy pods and has 1 currently"
        );
    }

    #[test]
    fn an_unobserved_budget_is_not_trusted() {
        let mut b = budget(3, 4, 1);
        b["metadata"]["generation"] = json!(3);
        let e = decide(&pod(true), &[&b], NOW).unwrap_err();
        assert_eq!(e.status_code(), 429);
        assert!(e.to_status()["details"]["causes"][0]["message"]
            .as_str()
            .unwrap()
            .contains("still being processed"));
    }

    #[test]
    fn unready_pods_go_without_spending_when_the_budget_is_met() {
        let b = budget(0, 2, 2);
        assert_eq!(decide(&pod(false), &[&b], NOW).unwrap(), Decision::Delete);
        let short = budget(0, 1, 2);
        assert!(decide(&pod(false), &[&short], NOW).is_err());
        let mut always = budget(0, 1, 2);
        always["spec"]["unhealthyPodEvictionPolicy"] = json!("AlwaysAllow");
        assert_eq!(
            decide(&pod(false), &[&always], NOW).unwrap(),
            Decision::Delete
        );
    }

    #[test]
    fn two_budgets_are_refused() {
        let (a, b) = (budget(1, 2, 1), budget(1, 2, 1));
        assert_eq!(
            decide(&pod(true), &[&a, &b], NOW)
                .unwrap_err()
                .status_code(),
            500
        );
        assert_eq!(decide(&pod(true), &[], NOW).unwrap(), Decision::Delete);
    }
}
