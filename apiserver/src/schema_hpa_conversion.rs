//! HorizontalPodAutoscaler conversion between `autoscaling/v2` (what is
//! stored, kube-apiserver's storage version) and `autoscaling/v1`.
//!
//! v1 has one metric, `spec.targetCPUUtilizationPercentage`; it is the v2
//! metric `{type: Resource, resource: {name: cpu, target: {type:
//! Utilization, averageUtilization: N}}}` (and
//! `status.currentCPUUtilizationPercentage` the matching current metric).
//! What v1 cannot say travels in annotations, as in Kubernetes
//! (pkg/apis/autoscaling/v1/conversion.go), so a v1 read-modify-write keeps
//! it: the other metrics, `behavior`, the current metrics and the
//! conditions. Converting back to v2 removes those annotations.
//!
//! Difference: Kubernetes writes the metric annotations in v1's own
//! `MetricSpec` JSON (the older v2beta1 shape); Skiff writes the v2 shape.
//! Only Skiff reads them back, so round trips are exact either way.

use serde_json::{json, Map, Value};

/// Annotation holding the v2 metrics v1 cannot express.
pub const METRIC_SPECS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
/// Annotation holding the v2 `spec.behavior`.
pub const BEHAVIOR_SPECS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/behavior";
/// Annotation holding the v2 `status.currentMetrics`.
pub const METRIC_STATUSES_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
/// Annotation holding the v2 `status.conditions`.
pub const CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";

/// The fields v1 and v2 share, in `spec` and in `status`.
const SHARED_SPEC: [&str; 3] = ["scaleTargetRef", "minReplicas", "maxReplicas"];
const SHARED_STATUS: [&str; 4] = [
    "observedGeneration",
    "lastScaleTime",
    "currentReplicas",
    "desiredReplicas",
];

fn copy_fields(from: &Value, fields: &[&str]) -> Map<String, Value> {
    fields
        .iter()
        .filter_map(|f| from.get(*f).map(|v| (f.to_string(), v.clone())))
        .collect()
}

/// Whether a v2 metric (spec or status) is the cpu utilization one.
fn is_cpu_utilization(metric: &Value, field: &str) -> bool {
    metric.get("type").and_then(Value::as_str) == Some("Resource")
        && metric.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
        && metric
            .pointer(&format!("/resource/{field}/averageUtilization"))
            .is_some_and(Value::is_i64)
}

fn annotations_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let meta = obj.as_object_mut()?.entry("metadata").or_insert(json!({}));
    let meta = meta.as_object_mut()?;
    meta.entry("annotations")
        .or_insert(json!({}))
        .as_object_mut()
}

/// Drops `metadata.annotations` when it ended up empty.
fn tidy_annotations(obj: &mut Value) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if meta
            .get("annotations")
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
        {
            meta.remove("annotations");
        }
    }
}

/// An `autoscaling/v2` HorizontalPodAutoscaler (or list item, or watch
/// object) as `autoscaling/v1`. Only the parts present are converted.
pub fn v2_to_v1(obj: &Value) -> Value {
    let mut out = obj.clone();
    let Some(map) = out.as_object_mut() else {
        return out;
    };
    map.insert("apiVersion".into(), json!("autoscaling/v1"));
    let mut notes: Vec<(&str, String)> = Vec::new();
    if let Some(spec) = obj.get("spec").filter(|s| s.is_object()) {
        let mut v1 = copy_fields(spec, &SHARED_SPEC);
        let metrics = spec
            .get("metrics")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let cpu = metrics.iter().position(|m| is_cpu_utilization(m, "target"));
        if let Some(i) = cpu {
            let pct = metrics[i].pointer("/resource/target/averageUtilization");
            v1.insert(
                "targetCPUUtilizationPercentage".into(),
                pct.cloned().unwrap_or(Value::Null),
            );
        }
        let others: Vec<&Value> = metrics
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != cpu)
            .map(|(_, m)| m)
            .collect();
        if !others.is_empty() {
            notes.push((METRIC_SPECS_ANNOTATION, json!(others).to_string()));
        }
        if let Some(b) = spec.get("behavior").filter(|b| !b.is_null()) {
            notes.push((BEHAVIOR_SPECS_ANNOTATION, b.to_string()));
        }
        map.insert("spec".into(), Value::Object(v1));
    }
    if let Some(status) = obj.get("status").filter(|s| s.is_object()) {
        let mut v1 = copy_fields(status, &SHARED_STATUS);
        // v1 requires both replica counts.
        v1.entry("currentReplicas").or_insert(json!(0));
        v1.entry("desiredReplicas").or_insert(json!(0));
        let current = status
            .get("currentMetrics")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(pct) = current
            .iter()
            .find(|m| is_cpu_utilization(m, "current"))
            .and_then(|m| m.pointer("/resource/current/averageUtilization"))
        {
            v1.insert("currentCPUUtilizationPercentage".into(), pct.clone());
        }
        if !current.is_empty() {
            notes.push((METRIC_STATUSES_ANNOTATION, json!(current).to_string()));
        }
        if let Some(c) = status
            .get("conditions")
            .and_then(Value::as_array)
            .filter(|c| !c.is_empty())
        {
            notes.push((CONDITIONS_ANNOTATION, json!(c).to_string()));
        }
        map.insert("status".into(), Value::Object(v1));
    }
    if !notes.is_empty() {
        if let Some(annotations) = annotations_mut(&mut out) {
            for (k, v) in notes {
                annotations.insert(k.into(), json!(v));
            }
        }
    }
    out
}

/// Takes an annotation out and parses it as JSON; a value that does not
/// parse is left in place (Kubernetes does the same).
fn take_annotation(obj: &mut Value, key: &str) -> Option<Value> {
    let annotations = obj
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)?;
    let parsed: Value = serde_json::from_str(annotations.get(key)?.as_str()?).ok()?;
    annotations.remove(key);
    Some(parsed)
}

/// An `autoscaling/v1` HorizontalPodAutoscaler as `autoscaling/v2`.
pub fn v1_to_v2(obj: &Value) -> Value {
    let mut out = obj.clone();
    if !out.is_object() {
        return out;
    }
    let other_metrics = take_annotation(&mut out, METRIC_SPECS_ANNOTATION);
    let behavior = take_annotation(&mut out, BEHAVIOR_SPECS_ANNOTATION);
    let current_metrics = take_annotation(&mut out, METRIC_STATUSES_ANNOTATION);
    let conditions = take_annotation(&mut out, CONDITIONS_ANNOTATION);
    tidy_annotations(&mut out);
    let Some(map) = out.as_object_mut() else {
        return out;
    };
    map.insert("apiVersion".into(), json!("autoscaling/v2"));
    if let Some(spec) = obj.get("spec").filter(|s| s.is_object()) {
        let mut v2 = copy_fields(spec, &SHARED_SPEC);
        let mut metrics: Vec<Value> = other_metrics
            .and_then(|m| m.as_array().cloned())
            .unwrap_or_default();
        if let Some(pct) = spec
            .get("targetCPUUtilizationPercentage")
            .filter(|p| p.is_i64())
        {
            metrics.push(json!({"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": pct}}}));
        }
        if !metrics.is_empty() {
            v2.insert("metrics".into(), json!(metrics));
        }
        if let Some(b) = behavior {
            v2.insert("behavior".into(), b);
        }
        map.insert("spec".into(), Value::Object(v2));
    }
    if let Some(status) = obj.get("status").filter(|s| s.is_object()) {
        let mut v2 = copy_fields(status, &SHARED_STATUS);
        let current = match current_metrics {
            Some(m) => m.as_array().cloned().unwrap_or_default(),
            None => status
                .get("currentCPUUtilizationPercentage")
                .filter(|p| p.is_i64())
                .map(|pct| {
                    vec![json!({"type": "Resource", "resource": {"name": "cpu",
                        "current": {"averageUtilization": pct}}})]
                })
                .unwrap_or_default(),
        };
        if !current.is_empty() {
            v2.insert("currentMetrics".into(), json!(current));
        }
        if let Some(c) = conditions {
            v2.insert("conditions".into(), c);
        }
        map.insert("status".into(), Value::Object(v2));
    }
    out
}

/// Converts a response body of the v2 handler for a v1 client: an object,
/// a list (its `items`), or anything else untouched (Status, Table).
pub fn response_v2_to_v1(body: &Value) -> Value {
    match body.get("kind").and_then(Value::as_str) {
        Some("HorizontalPodAutoscaler") => v2_to_v1(body),
        Some("HorizontalPodAutoscalerList") => {
            let mut out = body.clone();
            out["apiVersion"] = json!("autoscaling/v1");
            if let Some(items) = out.get_mut("items").and_then(Value::as_array_mut) {
                for item in items.iter_mut() {
                    *item = v2_to_v1(item);
                }
            }
            out
        }
        _ => body.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2() -> Value {
        json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 3,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}
            },
            "status": {
                "currentReplicas": 2, "desiredReplicas": 2,
                "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 20}}}],
                "conditions": [{"type": "AbleToScale", "status": "True"}]
            }
        })
    }

    #[test]
    fn cpu_metric_maps_to_the_v1_field() {
        let v1 = v2_to_v1(&v2());
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
        assert_eq!(v1["spec"]["maxReplicas"], 3);
        assert!(v1["spec"].get("metrics").is_none());
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 20);
        let notes = &v1["metadata"]["annotations"];
        assert!(notes[METRIC_SPECS_ANNOTATION]
            .as_str()
            .unwrap()
            .contains("memory"));
        assert!(notes.get(BEHAVIOR_SPECS_ANNOTATION).is_some());
    }

    #[test]
    fn round_trip_is_exact() {
        let back = v1_to_v2(&v2_to_v1(&v2()));
        // Other metrics come first, the cpu one last (as Kubernetes).
        assert_eq!(back["spec"]["metrics"][1]["resource"]["name"], "cpu");
        assert_eq!(back, v2());
    }

    #[test]
    fn plain_v1_converts() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3,
                     "targetCPUUtilizationPercentage": 50}});
        let v2 = v1_to_v2(&v1);
        assert_eq!(v2["apiVersion"], "autoscaling/v2");
        assert_eq!(
            v2["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 50}}}])
        );
        assert!(v2["metadata"].get("annotations").is_none());
        let list = json!({"kind": "HorizontalPodAutoscalerList", "apiVersion": "autoscaling/v2", "items": [v2]});
        let list = response_v2_to_v1(&list);
        assert_eq!(list["apiVersion"], "autoscaling/v1");
        assert_eq!(
            list["items"][0]["spec"]["targetCPUUtilizationPercentage"],
            50
        );
    }
}
