//! Integration test: a StatefulSet behind a headless Service, with the
//! controllers in-process against a real `skiff server --no-agent
//! --no-controllers`, a fake node and a fake kubelet. It reads, through the
//! controllers' slim pod cache, every pod field the two controllers need:
//! ordinals and readiness (StatefulSet), and pod IPs, `hostname` and
//! `subdomain`, named container ports and readiness (Endpoints and
//! EndpointSlices).

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;
use skiff_controllers::ControllersConfig;
use support::*;

const TIMEOUT: Duration = Duration::from_secs(60);

/// The ready addresses of Endpoints `web` as (hostname, ip), and its ports.
async fn endpoints_of(api: &Api<Endpoints>) -> anyhow::Result<(Vec<(String, String)>, Vec<i32>)> {
    let Some(ep) = api.get_opt("web").await? else {
        return Ok((Vec::new(), Vec::new()));
    };
    let subsets = ep.subsets.unwrap_or_default();
    let mut addrs: Vec<(String, String)> = subsets
        .iter()
        .flat_map(|s| s.addresses.iter().flatten())
        .map(|a| (a.hostname.clone().unwrap_or_default(), a.ip.clone()))
        .collect();
    addrs.sort();
    let ports = subsets
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .map(|p| p.port)
        .collect();
    Ok((addrs, ports))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_pods_become_named_endpoints_of_their_headless_service() -> anyhow::Result<()> {
    let server = Server::start_with(&["--no-controllers"])?;
    let client = server.client().await?;
    create_node(&client, "fake-1").await?;
    let kubelet = spawn_fake_kubelet(client.clone(), vec!["fake-1".into()]);
    // The fake node sends no heartbeats: keep node lifecycle out of this test.
    let config = ControllersConfig {
        node_monitor_grace_period: Duration::from_secs(3600),
        ..Default::default()
    };
    let (stop, controllers) = start_controllers(&client, config);

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"clusterIP": "None", "selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }))?;
    services.create(&PostParams::default(), &svc).await?;
    let sts: StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web"},
        "spec": {
            "serviceName": "web",
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox",
                    "ports": [{"name": "http", "containerPort": 8080}]}]},
            },
        },
    }))?;
    sets.create(&PostParams::default(), &sts).await?;

    // OrderedReady: web-1 only once web-0 is Running and Ready. The fake
    // kubelet sets no IP; give each pod one as an agent would (status
    // only: nothing is sent to these addresses).
    for (i, name) in ["web-0", "web-1"].iter().enumerate() {
        wait_for(&format!("{name} to run"), TIMEOUT, || async {
            let p = pods.get_opt(name).await?;
            let running = p
                .as_ref()
                .and_then(|p| p.status.as_ref())
                .and_then(|s| s.phase.as_deref())
                == Some("Running");
            Ok(running.then_some(()))
        })
        .await?;
        let ip = format!("10.0.0.{}", i + 10);
        let status = json!({"status": {"podIP": ip, "podIPs": [{"ip": ip}]}});
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
    }
    wait_for("statefulset status", TIMEOUT, || async {
        let s = sets.get("web").await?.status.unwrap_or_default();
        Ok((s.ready_replicas == Some(2)).then_some(()))
    })
    .await?;

    // Endpoints: both pods ready, named by their hostname (the Service is
    // their subdomain), the named targetPort resolved to 8080.
    let want = vec![
        ("web-0".to_string(), "10.0.0.10".to_string()),
        ("web-1".to_string(), "10.0.0.11".to_string()),
    ];
    let (addrs, ports) = wait_for("endpoints of web", TIMEOUT, || async {
        let (addrs, ports) = endpoints_of(&endpoints).await?;
        Ok((addrs == want).then_some((addrs, ports)))
    })
    .await?;
    assert_eq!((addrs, ports), (want.clone(), vec![8080]));
    let slice_hosts = wait_for("endpoint slice of web", TIMEOUT, || async {
        let list = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
            .await?;
        let mut hosts: Vec<String> = list
            .items
            .iter()
            .flat_map(|s| s.endpoints.iter().flatten())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
            .filter_map(|e| e.hostname.clone())
            .collect();
        hosts.sort();
        let port = list
            .items
            .iter()
            .flat_map(|s| s.ports.iter().flatten())
            .find_map(|p| p.port);
        Ok((hosts.len() == 2 && port == Some(8080)).then_some(hosts))
    })
    .await?;
    assert_eq!(slice_hosts, ["web-0", "web-1"]);

    // Scale down: the highest ordinal goes, and leaves the Endpoints.
    let scale = json!({"spec": {"replicas": 1}});
    sets.patch("web", &PatchParams::default(), &Patch::Merge(&scale))
        .await?;
    wait_for("web-1 out of the endpoints", TIMEOUT, || async {
        let (addrs, _) = endpoints_of(&endpoints).await?;
        Ok((addrs == want[..1]).then_some(()))
    })
    .await?;
    assert!(pods.get_opt("web-0").await?.is_some());

    sets.delete("web", &DeleteParams::background()).await?;
    let _ = stop.send(());
    controllers.await?;
    kubelet.abort();
    Ok(())
}
