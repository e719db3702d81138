//! kube-rs (what Skiff's agent, scheduler and controllers use) against the
//! server: typed CRUD, status patches, bindings, upserted leases, the
//! runtime watcher, a reflector's store, and a `kube::runtime::Controller`
//! that reconciles ConfigMaps and sees its own writes.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::with_server;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{watcher, WatchStreamExt};
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

/// How long a change may take to reach a watcher: far more than it needs.
const PROPAGATION: Duration = Duration::from_secs(30);

/// Polls `check` until it holds; panics with `what` after [`PROPAGATION`].
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PROPAGATION;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_reflector_follows_pods() {
    with_server(async |h| {
        let client = client(&h.kubeconfig).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let pod = |name: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {"app": "r"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}
            }))
            .unwrap()
        };
        // One pod before the reflector starts (its initial list), one after
        // (its watch).
        pods.create(&PostParams::default(), &pod("before"))
            .await
            .unwrap();
        let (store, writer) = reflector::store::<Pod>();
        let stream =
            reflector::reflector(writer, watcher(pods.clone(), watcher::Config::default()));
        let driver = tokio::spawn(stream.applied_objects().for_each(|_| async {}));
        tokio::time::timeout(PROPAGATION, store.wait_until_ready())
            .await
            .unwrap()
            .unwrap();
        let key = |name: &str| ObjectRef::<Pod>::new(name).within("default");
        assert!(
            store.get(&key("before")).is_some(),
            "initial list in the store"
        );

        pods.create(&PostParams::default(), &pod("after"))
            .await
            .unwrap();
        eventually("the created pod in the store", || {
            store.get(&key("after")).is_some()
        })
        .await;

        let patched = pods
            .patch(
                "after",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"v": "2"}}})),
            )
            .await
            .unwrap();
        let rv = patched.metadata.resource_version.clone();
        eventually("the update in the store", || {
            store
                .get(&key("after"))
                .is_some_and(|p| p.metadata.resource_version == rv)
        })
        .await;
        assert_eq!(
            store
                .get(&key("after"))
                .unwrap()
                .metadata
                .labels
                .as_ref()
                .unwrap()["v"],
            "2"
        );

        let zero = DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        pods.delete("before", &zero).await.unwrap();
        eventually("the deletion in the store", || {
            store.get(&key("before")).is_none()
        })
        .await;
        let names: Vec<String> = store
            .state()
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        assert_eq!(names, ["after"]);
        driver.abort();
    })
    .await;
}

/// The test controller's error (none happen unless the server misbehaves).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct ReconcileError(#[from] kube::Error);

/// What the test controller saw: per ConfigMap, the (`value`, `observed`)
/// pair of every reconcile.
#[derive(Default)]
struct Seen(Mutex<BTreeMap<String, Vec<(String, String)>>>);

const OBSERVED: &str = "skiff.test/observed";
const COUNT: &str = "skiff.test/reconciles";

/// Writes `data.value` into an annotation and counts its writes; a
/// ConfigMap that already carries its value (its own write, seen back
/// through the watch) is left alone.
async fn reconcile(
    cm: Arc<ConfigMap>,
    ctx: Arc<(Api<ConfigMap>, Seen)>,
) -> Result<Action, ReconcileError> {
    let (api, seen) = &*ctx;
    let name = cm.metadata.name.clone().unwrap();
    let annotations = cm.metadata.annotations.clone().unwrap_or_default();
    let value = cm
        .data
        .as_ref()
        .and_then(|d| d.get("value"))
        .cloned()
        .unwrap_or_default();
    let observed = annotations.get(OBSERVED).cloned().unwrap_or_default();
    seen.0
        .lock()
        .unwrap()
        .entry(name.clone())
        .or_default()
        .push((value.clone(), observed.clone()));
    if value != observed {
        let count: u32 = annotations
            .get(COUNT)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
            + 1;
        let patch =
            json!({"metadata": {"annotations": {OBSERVED: value, COUNT: count.to_string()}}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
    }
    Ok(Action::await_change())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_controller_reconciles_configmaps() {
    with_server(async |h| {
        let client = client(&h.kubeconfig).await;
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let ctx = Arc::new((cms.clone(), Seen::default()));
        let controller = Controller::new(cms.clone(), watcher::Config::default().labels("ctl=yes"))
            .run(
                reconcile,
                |_, _, _| Action::requeue(Duration::from_secs(1)),
                ctx.clone(),
            )
            .for_each(|_| async {});
        let driver = tokio::spawn(controller);

        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "counted", "labels": {"ctl": "yes"}}, "data": {"value": "1"}
        }))
        .unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
        let seen = |v: &str| {
            let ctx = ctx.clone();
            let v = v.to_string();
            move || {
                ctx.1
                     .0
                    .lock()
                    .unwrap()
                    .get("counted")
                    .is_some_and(|r| r.contains(&(v.clone(), v.clone())))
            }
        };
        // Its own write comes back through the watch: a reconcile that finds
        // the annotation already equal to the value.
        eventually("the controller seeing its own write of 1", seen("1")).await;
        let got = cms.get("counted").await.unwrap();
        let ann = got.metadata.annotations.unwrap();
        assert_eq!((ann[OBSERVED].as_str(), ann[COUNT].as_str()), ("1", "1"));

        // A change re-runs it.
        cms.patch(
            "counted",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"value": "2"}})),
        )
        .await
        .unwrap();
        eventually("the controller seeing its own write of 2", seen("2")).await;
        let ann = cms
            .get("counted")
            .await
            .unwrap()
            .metadata
            .annotations
            .unwrap();
        assert_eq!((ann[OBSERVED].as_str(), ann[COUNT].as_str()), ("2", "2"));

        // Objects outside its selector are not its business.
        let other: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "other"}, "data": {"value": "x"}}))
                .unwrap();
        cms.create(&PostParams::default(), &other).await.unwrap();
        cms.delete("counted", &DeleteParams::default())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!ctx.1 .0.lock().unwrap().contains_key("other"));
        assert!(cms
            .get("other")
            .await
            .unwrap()
            .metadata
            .annotations
            .is_none());
        // At least: 1 to write, its own write of 1, 2 to write, its own write of 2.
        let runs = ctx.1 .0.lock().unwrap()["counted"].clone();
        assert!(runs.len() >= 4, "{runs:?}");
        driver.abort();
    })
    .await;
}
