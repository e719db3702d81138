//! The HorizontalPodAutoscaler end to end: a real `skiff server` (its own
//! controllers and scheduler), a fake node whose "agent" is a TLS server in
//! this test answering `/stats/summary` with the cpu usage the test sets,
//! so the API server's `metrics.k8s.io` (and `kubectl top`) are fed real
//! API data; `kubectl autoscale`, `kubectl get hpa` and `kubectl describe
//! hpa` are the real kubectl.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(120);

/// cpu usage in millicores by pod-name prefix (`web-` → 200).
type Usage = Arc<Mutex<HashMap<String, u64>>>;

/// A fake agent: answers every request with a `/stats/summary` for the
/// pods bound to `node`, each container using the cpu `usage` gives its
/// pod's name prefix. Returns the port.
async fn spawn_fake_stats(client: Client, node: &'static str, usage: Usage) -> anyhow::Result<u16> {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, client, usage) = (acceptor.clone(), client.clone(), usage.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let body = summary(&client, node, &usage).await.to_string();
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Ok(port)
}

/// The summary an agent would write (kubelet's `stats/v1alpha1` shape).
async fn summary(client: &Client, node: &str, usage: &Usage) -> serde_json::Value {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let usage = usage.lock().unwrap().clone();
    let entries: Vec<serde_json::Value> = pods
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
        .filter_map(|p| {
            let name = p.name_any();
            let milli = usage
                .iter()
                .find(|(prefix, _)| name.starts_with(prefix.as_str()))?
                .1;
            let nano = milli * 1_000_000;
            Some(json!({
                "podRef": {"namespace": p.namespace(), "name": name, "uid": p.uid()},
                "containers": [{"name": "app",
                    "cpu": {"time": now, "usageNanoCores": nano},
                    "memory": {"time": now, "workingSetBytes": 32 << 20}}],
                "cpu": {"time": now, "usageNanoCores": nano},
                "memory": {"time": now, "workingSetBytes": 32 << 20},
            }))
        })
        .collect();
    json!({
        "node": {"nodeName": node, "cpu": {"time": now, "usageNanoCores": 1_000_000_000u64},
                 "memory": {"time": now, "workingSetBytes": 1u64 << 30}},
        "pods": entries,
    })
}

async fn create_deployment(
    client: &Client,
    name: &str,
    cpu_request: Option<&str>,
) -> anyhow::Result<()> {
    let resources = match cpu_request {
        Some(cpu) => json!({"requests": {"cpu": cpu}}),
        None => json!({}),
    };
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10", "resources": resources}]},
            },
        },
    }))?;
    Api::<Deployment>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &d)
        .await?;
    Ok(())
}

async fn spec_replicas(client: &Client, name: &str) -> anyhow::Result<i32> {
    let d = Api::<Deployment>::namespaced(client.clone(), "default")
        .get(name)
        .await?;
    Ok(d.spec.replicas.unwrap_or(0))
}

/// A server with node `n1` whose agent is [`spawn_fake_stats`], reporting
/// `usage` (millicores by pod-name prefix).
async fn start(initial: &[(&str, u64)]) -> anyhow::Result<(Server, Client, Usage)> {
    let server = Server::start()?;
    let client = server.client().await?;
    create_node(&client, "n1").await?;
    let usage: Usage = Arc::new(Mutex::new(
        initial.iter().map(|(p, m)| (p.to_string(), *m)).collect(),
    ));
    let port = spawn_fake_stats(client.clone(), "n1", usage.clone()).await?;
    Api::<Node>::all(client.clone())
        .patch_status(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            }})),
        )
        .await?;
    Ok((server, client, usage))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_scales_a_deployment_from_metrics_and_reports_missing_requests() -> anyhow::Result<()> {
    let (server, client, usage) = start(&[("web-", 200), ("norequest-", 50)]).await?;
    let kubelet = spawn_fake_kubelet(client.clone(), vec!["n1".into()]);

    // web: requests 100m, uses 200m → 200% against 50%: 1 → 4 replicas.
    create_deployment(&client, "web", Some("100m")).await?;
    create_deployment(&client, "norequest", None).await?;
    // Pods Ready (and their samples younger than readiness + window), so
    // the cpu readiness rule counts them.
    wait_for("web and norequest pods ready", TIMEOUT, || async {
        let pods = Api::<Pod>::namespaced(client.clone(), "default")
            .list(&ListParams::default())
            .await?;
        let ready = pods
            .items
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        Ok((ready >= 2).then_some(()))
    })
    .await?;
    let (ok, top) = kubectl(&server, &["top", "pod", "-l", "app=web"]).await?;
    assert!(ok && top.contains("200m"), "kubectl top pod: {top}");

    let started = Instant::now();
    let (ok, out) = kubectl(
        &server,
        &[
            "autoscale",
            "deployment",
            "web",
            "--cpu-percent=50",
            "--min=1",
            "--max=4",
        ],
    )
    .await?;
    assert!(ok, "kubectl autoscale: {out}");
    wait_for("web scaled to 4 by the HPA", TIMEOUT, || async {
        Ok((spec_replicas(&client, "web").await? == 4).then_some(()))
    })
    .await?;
    let scale_up = started.elapsed();
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    let hpa = wait_for("status desiredReplicas 4", TIMEOUT, || async {
        let h = hpas.get("web").await?;
        Ok(h.status
            .clone()
            .filter(|s| s.desired_replicas == 4)
            .map(|_| h))
    })
    .await?;
    let status = hpa.status.unwrap_or_default();
    assert!(status.last_scale_time.is_some());
    let current = status.current_metrics.unwrap_or_default()[0]
        .resource
        .clone()
        .unwrap()
        .current;
    assert_eq!(current.average_utilization, Some(200));

    let (ok, get) = kubectl(&server, &["get", "hpa", "web"]).await?;
    assert!(
        ok && get.contains("cpu: 200%/50%"),
        "kubectl get hpa: {get}"
    );
    let (ok, describe) = kubectl(&server, &["describe", "hpa", "web"]).await?;
    assert!(ok, "{describe}");
    for want in [
        "SuccessfulRescale",
        "New size: 4; reason: cpu resource utilization (percentage of request) above target",
        "AbleToScale",
        "ValidMetricFound",
    ] {
        assert!(
            describe.contains(want),
            "describe lacks {want:?}:\n{describe}"
        );
    }

    // Load drops to 10%: with the scale-down window set to 0 (default 300 s)
    // the HPA goes to ceil(0.2 × ready pods) = 1.
    usage.lock().unwrap().insert("web-".into(), 10);
    hpas.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(
            &json!({"spec": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}}}),
        ),
    )
    .await?;
    let started = Instant::now();
    wait_for("web scaled down to 1", TIMEOUT, || async {
        Ok((spec_replicas(&client, "web").await? == 1).then_some(()))
    })
    .await?;
    let scale_down = started.elapsed();
    let (_, describe) = kubectl(&server, &["describe", "hpa", "web"]).await?;
    assert!(
        describe.contains("New size: 1; reason: All metrics below target"),
        "{describe}"
    );

    // norequest: no cpu requests → ScalingActive False, upstream's reason
    // and message; the replica count is left alone.
    let (ok, out) = kubectl(
        &server,
        &[
            "autoscale",
            "deployment",
            "norequest",
            "--cpu-percent=50",
            "--max=3",
        ],
    )
    .await?;
    assert!(ok, "kubectl autoscale: {out}");
    let message = wait_for("ScalingActive False", TIMEOUT, || async {
        let h = hpas.get("norequest").await?;
        let c = h
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "ScalingActive" && c.status == "False");
        Ok(c.map(|c| (c.reason.unwrap_or_default(), c.message.unwrap_or_default())))
    })
    .await?;
    assert_eq!(message.0, "FailedGetResourceMetric");
    assert!(
        message.1.starts_with("the HPA was unable to compute the replica count: failed to get cpu utilization: missing request for cpu in container app of Pod norequest-"),
        "{}",
        message.1
    );
    let (_, describe) = kubectl(&server, &["describe", "hpa", "norequest"]).await?;
    assert!(describe.contains("FailedGetResourceMetric"), "{describe}");
    assert_eq!(spec_replicas(&client, "norequest").await?, 1);
    eprintln!("HPA scale-up 1 → 4 took {scale_up:?} from kubectl autoscale; scale-down 4 → 1 {scale_down:?} after the load dropped");
    kubelet.abort();
    Ok(())
}

/// A custom resource with a scale subresource: the controller finds its
/// resource through discovery, reads and writes its `/scale`, and stops at
/// `maxReplicas` with ScalingLimited TooManyReplicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_scales_a_custom_resource_through_its_scale_subresource() -> anyhow::Result<()> {
    let (_server, client, _usage) = start(&[("widget-", 300)]).await?;
    let kubelet = spawn_fake_kubelet(client.clone(), vec!["n1".into()]);
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                    "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"}}}],
        },
    }))?;
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &crd)
        .await?;
    let ar = ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let widget: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "namespace": "default"},
        "spec": {"replicas": 2},
    }))?;
    wait_for("the Widget created (CRD established)", TIMEOUT, || async {
        Ok(widgets
            .create(&PostParams::default(), &widget)
            .await
            .ok()
            .map(|_| ()))
    })
    .await?;
    widgets
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"replicas": 2, "selector": "app=widget"}})),
        )
        .await?;
    // Two pods "of" the widget, requesting 100m and using 300m each.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..2 {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("widget-{i}"), "labels": {"app": "widget"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": "100m"}}}]},
        }))?;
        pods.create(&PostParams::default(), &pod).await?;
    }
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "w", "namespace": "default"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "example.com/v1", "kind": "Widget", "name": "w"},
            "minReplicas": 1, "maxReplicas": 5,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 50}}}],
        },
    }))?;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    hpas.create(&PostParams::default(), &hpa).await?;
    // 300% against 50%: 2 → 12, first limited by the rate (max(2 × 2, 4) =
    // 4), then by maxReplicas 5.
    wait_for("the Widget scaled to 5", TIMEOUT, || async {
        let w = widgets.get("w").await?;
        Ok((w.data.pointer("/spec/replicas").and_then(|v| v.as_i64()) == Some(5)).then_some(()))
    })
    .await?;
    // The HPA writes its status after the scale, so the first step's
    // ScaleUpLimit may still show when the Widget is at 5.
    wait_for("ScalingLimited by TooManyReplicas", TIMEOUT, || async {
        let h = hpas.get("w").await?;
        Ok(h.status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .find(|c| {
                c.type_ == "ScalingLimited"
                    && c.status == "True"
                    && c.reason.as_deref() == Some("TooManyReplicas")
            }))
    })
    .await?;
    kubelet.abort();
    Ok(())
}
