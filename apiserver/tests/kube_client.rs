//! kube-rs (what Skiff's agent, scheduler and controllers use) against the
//! server: typed CRUD, status patches, bindings, upserted leases, and the
//! runtime watcher.

mod common;

use std::time::Duration;

use common::with_server;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use serde_json::json;

async fn client(kubeconfig: &std::path::Path) -> kube::Client {
    let kc = Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_typed_clients_and_watcher() {
    with_server(async |h| {
        let client = client(&h.kubeconfig).await;
        let version = client.apiserver_version().await.unwrap();
        assert_eq!(version.minor, "32");

        let namespaces: Api<Namespace> = Api::all(client.clone());
        let default = namespaces.get("default").await.unwrap();
        assert_eq!(default.status.unwrap().phase.as_deref(), Some("Active"));

        // The watcher: its initial list, then live events.
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let mut events = watcher(cms.clone(), watcher::Config::default()).boxed();
        let first = tokio::time::timeout(Duration::from_secs(10), events.next()).await.unwrap().unwrap().unwrap();
        assert!(matches!(first, watcher::Event::Init), "{first:?}");
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "w"}, "data": {"a": "b"}})).unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
        let applied = loop {
            let ev = tokio::time::timeout(Duration::from_secs(10), events.next()).await.unwrap().unwrap().unwrap();
            // Created while the watcher listed, or after: either way.
            if let watcher::Event::Apply(o) | watcher::Event::InitApply(o) = ev {
                break o;
            }
        };
        assert_eq!(applied.metadata.name.as_deref(), Some("w"));
        cms.delete("w", &DeleteParams::default()).await.unwrap();
        let deleted = loop {
            let ev = tokio::time::timeout(Duration::from_secs(10), events.next()).await.unwrap().unwrap().unwrap();
            if let watcher::Event::Delete(o) = ev {
                break o;
            }
        };
        assert_eq!(deleted.metadata.name.as_deref(), Some("w"));

        // Pods: create, list by label, bind, patch status, delete.
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "k", "labels": {"app": "k"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}
        }))
        .unwrap();
        let created = pods.create(&PostParams::default(), &pod).await.unwrap();
        assert!(created.metadata.uid.is_some());
        let listed = pods.list(&ListParams::default().labels("app=k")).await.unwrap();
        assert_eq!(listed.items.len(), 1);
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "k"}, "target": {"kind": "Node", "name": "n1"}});
        let _: kube::core::Status = pods
            .create_subresource("binding", "k", &PostParams::default(), &binding)
            .await
            .unwrap();
        let on_node = pods.list(&ListParams::default().fields("spec.nodeName=n1")).await.unwrap();
        assert_eq!(on_node.items.len(), 1);
        let patched = pods
            .patch_status("k", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Running", "podIP": "10.0.0.5"}})))
            .await
            .unwrap();
        assert_eq!(patched.status.unwrap().phase.as_deref(), Some("Running"));
        // Bound and running: the first delete is graceful, the agent's final
        // delete (grace 0) removes it.
        let first = pods.delete("k", &DeleteParams::default()).await.unwrap();
        assert!(first.left().unwrap().metadata.deletion_timestamp.is_some());
        pods.delete("k", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
        assert!(pods.get_opt("k").await.unwrap().is_none());

        // Leases are upserted with PUT (the node heartbeat).
        let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
        let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40}})).unwrap();
        let l = leases.replace("n1", &PostParams::default(), &lease).await.unwrap();
        assert_eq!(l.spec.unwrap().holder_identity.as_deref(), Some("n1"));
        let mut again = leases.get("n1").await.unwrap();
        again.spec.as_mut().unwrap().lease_duration_seconds = Some(30);
        leases.replace("n1", &PostParams::default(), &again).await.unwrap();
        // A stale resourceVersion is a Conflict.
        let stale = leases.replace("n1", &PostParams::default(), &again).await.unwrap_err();
        assert!(matches!(stale, kube::Error::Api(ref e) if e.code == 409), "{stale:?}");
    })
    .await;
}
