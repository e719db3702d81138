//! The resource metrics API, `metrics.k8s.io/v1beta1` (what metrics-server
//! serves through API aggregation), answered by the API server itself from
//! the agents' `/stats/summary`, so that `kubectl top node|pod` work.
//!
//! ```text
//!  kubectl top pod ─► GET /apis/metrics.k8s.io/v1beta1/namespaces/default/pods
//!     metrics.rs: every Node → its agent's /stats/summary (Bearer node token,
//!     in parallel, cached METRICS_CACHE_TTL) → PodMetrics / NodeMetrics
//! ```
//!
//! Served: the group (`/apis/metrics.k8s.io`), its resource list (`nodes`,
//! `pods`; verbs get, list), `NodeMetrics` and `PodMetrics` lists and items,
//! `labelSelector` on lists. The group is also listed in `/apis`, which is
//! what `kubectl top` checks before asking.
//!
//! Caveats: no `APIService` object (Skiff has no aggregation layer); a
//! node whose agent does not answer is left out of the lists (as
//! metrics-server does) and its item is 404; `window` is always `1s`,
//! whatever interval the agent's cpu rate covered (the agent samples twice
//! 250 ms apart when it has no recent sample); the cache is process-wide,
//! keyed by the cluster's node token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use http::Response;
use serde_json::{json, Value};

use crate::dispatch::ApiState;
use crate::error::{ApiError, Target};
use crate::logs::{agent_address, fetch};
use crate::registry::ListOptions;
use crate::request::Query;
use crate::resources::find;
use crate::response::{self, Body};
use crate::selectors::LabelSelector;

/// The API group.
pub const GROUP: &str = "metrics.k8s.io";
/// Its one version.
pub const VERSION: &str = "v1beta1";
/// How long agents' summaries are reused: `kubectl top` right after another
/// does not make every agent sample again (metrics-server scrapes every
/// 15 s; the agent's own rate window is separate).
pub const METRICS_CACHE_TTL: Duration = Duration::from_secs(5);
/// How long one agent may take to answer.
const AGENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest summary read from one agent.
const MAX_SUMMARY_BYTES: usize = 16 * 1024 * 1024;

/// Whether `path` belongs to this API.
pub fn is_metrics_path(path: &str) -> bool {
    let p = path.trim_end_matches('/');
    p == "/apis/metrics.k8s.io" || p.starts_with("/apis/metrics.k8s.io/")
}

/// The `APIGroup` entry (for `/apis` and `/apis/metrics.k8s.io`).
pub fn group_json() -> Value {
    let gv = json!({"groupVersion": format!("{GROUP}/{VERSION}"), "version": VERSION});
    json!({"name": GROUP, "versions": [gv], "preferredVersion": gv})
}

fn resource_list() -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{GROUP}/{VERSION}"),
        "resources": [
            {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
            {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]},
        ],
    })
}

/// A cpu quantity from nano-cores (`123456n`, as metrics-server writes).
pub fn cpu_quantity(nano_cores: u64) -> String {
    format!("{nano_cores}n")
}

/// A memory quantity from bytes, in Ki (as metrics-server writes).
pub fn memory_quantity(bytes: u64) -> String {
    format!("{}Ki", bytes / 1024)
}

/// Summaries by node name, with when they were fetched.
type Summaries = Arc<Vec<(String, Value)>>;

fn cache() -> &'static Mutex<HashMap<String, (Instant, Summaries)>> {
    static CACHE: OnceLock<Mutex<HashMap<String, (Instant, Summaries)>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Every reachable agent's summary, from the cache when fresh.
async fn summaries(state: &ApiState) -> Result<Summaries, ApiError> {
    let key = state.node_token.clone();
    if let Some((at, s)) = cache().lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        if at.elapsed() < METRICS_CACHE_TTL {
            return Ok(s.clone());
        }
    }
    let nodes = find("", "v1", "nodes").ok_or(ApiError::PathNotFound)?;
    let list = state
        .registry
        .list(nodes, None, &ListOptions::default(), |_| true)
        .await?;
    let nodes = list.values();
    let asks = nodes.iter().filter_map(|node| {
        let name = node.pointer("/metadata/name")?.as_str()?.to_string();
        let (host, port) = agent_address(node)?;
        let token = state.node_token.clone();
        Some(async move {
            let got = tokio::time::timeout(AGENT_TIMEOUT, async {
                let mut rx = fetch(&host, port, "/stats/summary", &token).await.ok()?;
                let mut body = Vec::new();
                while let Some(chunk) = rx.recv().await {
                    body.extend_from_slice(&chunk);
                    if body.len() > MAX_SUMMARY_BYTES {
                        return None;
                    }
                }
                serde_json::from_slice::<Value>(&body).ok()
            })
            .await;
            match got {
                Ok(Some(v)) => Some((name, v)),
                _ => {
                    tracing::debug!(node = %name, "no stats summary from the agent");
                    None
                }
            }
        })
    });
    let got: Vec<(String, Value)> = futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect();
    let got = Arc::new(got);
    cache()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, (Instant::now(), got.clone()));
    Ok(got)
}

fn usage(stats: &Value) -> Value {
    json!({
        "cpu": cpu_quantity(stats.pointer("/cpu/usageNanoCores").and_then(Value::as_u64).unwrap_or(0)),
        "memory": memory_quantity(stats.pointer("/memory/workingSetBytes").and_then(Value::as_u64).unwrap_or(0)),
    })
}

fn timestamp(stats: &Value) -> Value {
    stats.pointer("/cpu/time").cloned().unwrap_or_else(|| {
        json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    })
}

/// `NodeMetrics` from one node's summary; `None` without cpu figures.
pub fn node_metrics(name: &str, summary: &Value, labels: &Value) -> Option<Value> {
    let node = summary.get("node")?;
    node.pointer("/cpu/usageNanoCores")?;
    Some(json!({
        "kind": "NodeMetrics",
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": {"name": name, "labels": labels, "creationTimestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)},
        "timestamp": timestamp(node),
        "window": "1s",
        "usage": usage(node),
    }))
}

/// `PodMetrics` from one pod entry of a summary.
pub fn pod_metrics(pod: &Value) -> Option<Value> {
    let ns = pod.pointer("/podRef/namespace")?.as_str()?;
    let name = pod.pointer("/podRef/name")?.as_str()?;
    let containers: Vec<Value> = pod
        .get("containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| json!({"name": c.get("name").cloned().unwrap_or(Value::Null), "usage": usage(c)}))
                .collect()
        })
        .unwrap_or_default();
    Some(json!({
        "kind": "PodMetrics",
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)},
        "timestamp": timestamp(pod),
        "window": "1s",
        "containers": containers,
    }))
}

/// 404 for a missing metrics object (`nodemetrics.metrics.k8s.io "x" not found`).
fn not_found(resource: &str, name: &str) -> ApiError {
    ApiError::NotFound(Target {
        resource: resource.into(),
        group: GROUP.into(),
        name: name.into(),
    })
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({
        "kind": kind,
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": {},
        "items": items,
    })
}

/// Serves a request under `/apis/metrics.k8s.io` (already authenticated).
pub async fn serve(
    state: &ApiState,
    path: &str,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let rest = path.trim_end_matches('/')["/apis/metrics.k8s.io".len()..].trim_start_matches('/');
    let segs: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('/').collect()
    };
    let selector = LabelSelector::parse(query.get("labelSelector").unwrap_or(""))?;
    let not_found = |res: &str, name: &str| not_found(res, name);
    match segs.as_slice() {
        [] => {
            let mut g = group_json();
            g["kind"] = json!("APIGroup");
            g["apiVersion"] = json!("v1");
            Ok(response::json(200, &g))
        }
        [VERSION] => Ok(response::json(200, &resource_list())),
        [VERSION, "nodes", rest @ ..] if rest.len() <= 1 => {
            let nodes = find("", "v1", "nodes").ok_or(ApiError::PathNotFound)?;
            let all = state
                .registry
                .list(nodes, None, &ListOptions::default(), |_| true)
                .await?;
            let sums = summaries(state).await?;
            let mut items = Vec::new();
            for node in &all.values() {
                let name = node
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if rest.first().is_some_and(|n| *n != name) || !selector.matches(node) {
                    continue;
                }
                let labels = node
                    .pointer("/metadata/labels")
                    .cloned()
                    .unwrap_or(json!({}));
                if let Some(m) = sums
                    .iter()
                    .find(|(n, _)| n == name)
                    .and_then(|(_, s)| node_metrics(name, s, &labels))
                {
                    items.push(m);
                }
            }
            match rest.first() {
                Some(name) => items
                    .pop()
                    .map(|m| response::json(200, &m))
                    .ok_or_else(|| not_found("nodemetrics", name)),
                None => Ok(response::json(200, &list("NodeMetricsList", items))),
            }
        }
        [VERSION, "pods"] => pods(state, None, None, &selector).await,
        [VERSION, "namespaces", ns, "pods"] => pods(state, Some(ns), None, &selector).await,
        [VERSION, "namespaces", ns, "pods", name] => {
            pods(state, Some(ns), Some(name), &selector).await
        }
        _ => Err(ApiError::PathNotFound),
    }
}

/// Pod metrics of `ns` (all namespaces when `None`), one pod when `name`.
async fn pods(
    state: &ApiState,
    ns: Option<&str>,
    name: Option<&str>,
    selector: &LabelSelector,
) -> Result<Response<Body>, ApiError> {
    let pods_res = find("", "v1", "pods").ok_or(ApiError::PathNotFound)?;
    let existing = state
        .registry
        .list(pods_res, ns, &ListOptions::default(), |p| {
            selector.matches(p)
        })
        .await?;
    let wanted: std::collections::HashSet<(String, String)> = existing
        .values()
        .iter()
        .filter_map(|p| {
            Some((
                p.pointer("/metadata/namespace")?.as_str()?.to_string(),
                p.pointer("/metadata/name")?.as_str()?.to_string(),
            ))
        })
        .filter(|(_, n)| name.is_none_or(|want| want == n))
        .collect();
    let sums = summaries(state).await?;
    let mut items: Vec<Value> = sums
        .iter()
        .flat_map(|(_, s)| {
            s.get("pods")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|p| pod_metrics(&p))
        .filter(|m| {
            let key = (
                m.pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                m.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            );
            wanted.contains(&key)
        })
        .collect();
    items.sort_by_key(|m| {
        m["metadata"]["namespace"].to_string() + "/" + &m["metadata"]["name"].to_string()
    });
    match name {
        Some(n) => items
            .pop()
            .map(|m| response::json(200, &m))
            .ok_or_else(|| not_found("podmetrics", n)),
        None => Ok(response::json(200, &list("PodMetricsList", items))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(cpu_quantity(1_500_000), "1500000n");
        assert_eq!(memory_quantity(10 * 1024 * 1024 + 5), "10240Ki");
    }

    #[test]
    fn metrics_from_summary() {
        let summary = json!({"node": {"nodeName": "n1", "cpu": {"time": "2026-01-01T00:00:00Z", "usageNanoCores": 250_000_000u64}, "memory": {"workingSetBytes": 2048u64}},
            "pods": [{"podRef": {"namespace": "default", "name": "web"}, "containers": [{"name": "httpd", "cpu": {"usageNanoCores": 1000u64}, "memory": {"workingSetBytes": 4096u64}}]}]});
        let n = node_metrics("n1", &summary, &json!({})).unwrap();
        assert_eq!(n["usage"], json!({"cpu": "250000000n", "memory": "2Ki"}));
        assert_eq!(n["timestamp"], "2026-01-01T00:00:00Z");
        let p = pod_metrics(&summary["pods"][0]).unwrap();
        assert_eq!(p["metadata"]["name"], "web");
        assert_eq!(
            p["containers"][0],
            json!({"name": "httpd", "usage": {"cpu": "1000n", "memory": "4Ki"}})
        );
        assert!(node_metrics("n1", &json!({"node": {}}), &json!({})).is_none());
        assert!(is_metrics_path("/apis/metrics.k8s.io/v1beta1/nodes"));
        assert!(!is_metrics_path("/apis/metrics.k8s.io.evil/v1"));
    }
}
