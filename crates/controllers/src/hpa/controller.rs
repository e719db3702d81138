//! The HPA controller's I/O: every 15 s per HPA, read the target's `/scale`,
//! its pods and their `metrics.k8s.io` usage, run [`core::reconcile`],
//! write the Scale, the status and the events.
//!
//! ```text
//!  HPA events ──> key (and again every RESYNC_PERIOD)
//!  reconcile(key) ──> discovery: scaleTargetRef kind → resource
//!                     GET <target>/scale ──> spec.replicas, status.selector
//!                     LIST pods, LIST metrics.k8s.io pods (labelSelector)
//!                 ──> core::reconcile ──> PATCH <target>/scale,
//!                     PATCH horizontalpodautoscalers/status, events
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use serde_json::{json, Value};

use crate::clock::Clock;
use crate::error::ControllerError;
use crate::events;
use crate::hpa::behavior::{self, History};
use crate::hpa::core::{self, Input, Scale};
use crate::hpa::replicas::{milli_value, Sample, Samples};
use crate::runtime::{informer::event_objects, key_of, split_key, Informer, Reconciler, WorkQueue};
use crate::slim_pod::SlimPod;

/// The controller's name in logs and events.
pub const NAME: &str = "horizontal-pod-autoscaler";
/// How often each HPA is evaluated (`--horizontal-pod-autoscaler-sync-period`).
pub const RESYNC_PERIOD: Duration = Duration::from_secs(15);

/// The HorizontalPodAutoscaler controller.
pub struct HpaController {
    client: Client,
    hpas: Store<HorizontalPodAutoscaler>,
    /// Recommendations and scale events per HPA key (upstream keeps them
    /// in memory too).
    history: Mutex<HashMap<String, History>>,
    clock: Clock,
}

impl HpaController {
    /// Builds the controller on the HPA informer, whose events feed `queue`.
    pub fn new(
        client: Client,
        informer: &mut Informer<HorizontalPodAutoscaler>,
        queue: &WorkQueue,
        clock: Clock,
    ) -> Arc<HpaController> {
        let queue = queue.clone();
        informer.on_event(move |e| {
            if let Some(hpa) = event_objects(e) {
                queue.add(key_of(hpa));
            }
        });
        Arc::new(HpaController {
            client,
            hpas: informer.store(),
            history: Mutex::new(HashMap::new()),
            clock,
        })
    }

    /// The target's API resource, found through discovery so that custom
    /// resources with a scale subresource work like Deployments.
    async fn target_resource(&self, hpa: &HorizontalPodAutoscaler) -> Result<ApiResource, String> {
        let target = &hpa.spec.scale_target_ref;
        let api_version = target.api_version.as_deref().unwrap_or("v1");
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, &target.kind);
        kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .map(|(ar, _)| ar)
            .map_err(|e| format!("unable to determine resource for scale target reference: {e}"))
    }

    async fn read_scale(
        &self,
        hpa: &HorizontalPodAutoscaler,
        ns: &str,
    ) -> Result<(Api<DynamicObject>, Scale), String> {
        let ar = self.target_resource(hpa).await?;
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
        let scale = api
            .get_scale(&hpa.spec.scale_target_ref.name)
            .await
            .map_err(|e| format!("{e}"))?;
        Ok((
            api,
            Scale {
                spec_replicas: scale.spec.and_then(|s| s.replicas).unwrap_or(0),
                selector: scale.status.and_then(|s| s.selector).unwrap_or_default(),
            },
        ))
    }

    /// The pods' usage per resource from `metrics.k8s.io/v1beta1`.
    async fn read_metrics(&self, ns: &str, selector: &str) -> Result<Vec<Value>, String> {
        let ar = ApiResource {
            group: "metrics.k8s.io".into(),
            version: "v1beta1".into(),
            api_version: "metrics.k8s.io/v1beta1".into(),
            kind: "PodMetrics".into(),
            plural: "pods".into(),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
        let list = api
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| format!("unable to fetch metrics from resource metrics API: {e}"))?;
        if list.items.is_empty() {
            return Err("no metrics returned from resource metrics API".into());
        }
        Ok(list
            .items
            .into_iter()
            .map(|o| {
                let mut v = o.data;
                v["name"] = json!(o.metadata.name);
                v
            })
            .collect())
    }
}

/// One resource's samples from `PodMetrics` objects (as JSON, with the
/// pod's name under `name`): the containers' usage summed per pod; pods
/// whose containers lack the resource are left out, as upstream does.
pub fn samples(metrics: &[Value], resource: &str) -> Samples {
    let mut out = Samples::new();
    for m in metrics {
        let Some(name) = m.get("name").and_then(Value::as_str) else {
            continue;
        };
        let containers = m.get("containers").and_then(Value::as_array);
        let values: Option<Vec<i64>> = containers.map(|cs| {
            cs.iter()
                .filter_map(|c| {
                    c.pointer(&format!("/usage/{resource}"))?
                        .as_str()
                        .and_then(milli_value)
                })
                .collect()
        });
        let Some(values) =
            values.filter(|v| !v.is_empty() && v.len() == containers.map_or(0, Vec::len))
        else {
            continue;
        };
        let timestamp_ms = m
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<Timestamp>().ok())
            .map_or(0, |t| t.as_millisecond());
        let window_ms = m
            .get("window")
            .and_then(Value::as_str)
            .and_then(duration_ms)
            .unwrap_or(0);
        out.insert(
            name.to_string(),
            Sample {
                value: values.iter().sum(),
                timestamp_ms,
                window_ms,
            },
        );
    }
    out
}

/// A Go duration (`30s`, `1m0s`, `500ms`) in milliseconds.
pub fn duration_ms(s: &str) -> Option<i64> {
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "h" => 3_600_000.0,
            "m" => 60_000.0,
            "s" => 1000.0,
            "ms" => 1.0,
            "us" | "µs" => 0.001,
            "ns" => 0.000_001,
            _ => return None,
        };
        total += value * unit;
        rest = &rest[unit_len..];
    }
    Some(total as i64)
}

#[async_trait::async_trait]
impl Reconciler for HpaController {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ControllerError> {
        let (ns, name) = split_key(key);
        let Some(hpa) = self.hpas.get(&ObjectRef::new(name).within(ns)) else {
            self.history
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(key);
            return Ok(None);
        };
        let scale = self.read_scale(&hpa, ns).await;
        let (pods, metrics) = match &scale {
            Ok((_, s)) if !s.selector.is_empty() => {
                let pods = Api::<SlimPod>::namespaced(self.client.clone(), ns)
                    .list(&ListParams::default().labels(&s.selector))
                    .await
                    .map_err(|e| ControllerError::api(format!("listing pods of HPA {key}"), e))?
                    .items;
                (pods, self.read_metrics(ns, &s.selector).await)
            }
            _ => (Vec::new(), Ok(Vec::new())),
        };
        let pod_refs: Vec<&SlimPod> = pods.iter().collect();
        let by_resource =
            |resource: &str| samples(metrics.as_ref().map(Vec::as_slice).unwrap_or(&[]), resource);
        let now = (self.clock)();
        let mut history = self
            .history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key)
            .unwrap_or_default();
        let plan = core::reconcile(
            &Input {
                hpa: &hpa,
                scale: scale.as_ref().map(|(_, s)| s.clone()).map_err(Clone::clone),
                pods: &pod_refs,
                metrics: metrics
                    .as_ref()
                    .map(|_| &by_resource as &dyn Fn(&str) -> Samples)
                    .map_err(Clone::clone),
                now_ms: now,
            },
            &mut history,
        );
        let mut status = plan.status.clone();
        let mut events = plan.events.clone();
        if let (Some(to), Ok((api, s))) = (plan.rescale, &scale) {
            let patch = json!({"spec": {"replicas": to}});
            match api
                .patch_scale(
                    &hpa.spec.scale_target_ref.name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => {
                    let rules = behavior::rules(hpa.spec.behavior.as_ref());
                    history.record_rescale(&rules, s.spec_replicas, to, now);
                    tracing::info!(hpa = %key, from = s.spec_replicas, to, reason = %plan.reason, "rescaled");
                    events.push((
                        "Normal",
                        "SuccessfulRescale",
                        format!("New size: {to}; reason: {}", plan.reason),
                    ));
                }
                Err(e) => {
                    status.last_scale_time =
                        hpa.status.as_ref().and_then(|s| s.last_scale_time.clone());
                    events.push(core::failed_rescale(&mut status, &e.to_string(), now));
                }
            }
        }
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), history);
        for (type_, reason, message) in &events {
            events::record(&self.client, NAME, hpa.as_ref(), type_, reason, message).await;
        }
        if hpa.status.as_ref() != Some(&status) {
            crate::status::write_status(&self.client, hpa.as_ref(), &status).await?;
        }
        Ok(Some(RESYNC_PERIOD))
    }
}
