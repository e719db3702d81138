//! The watch cache through the API (kube-rs as the client) and through its
//! own interface: consistent lists, resumption from the ring, 410 past the
//! ring, slow watchers, many watchers, selectors.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{json, Value};
use skiff_apiserver::watchcache::{WatchCache, WatchCacheConfig, WatchFilter, WatchStart};
use skiff_apiserver::{ApiServer, ApiServerConfig, Hooks};
use skiff_store::{Kv, PutRequest, Store, StoreConfig};

const WAIT: Duration = Duration::from_secs(20);

struct H {
    server: Option<ApiServer>,
    store: Store,
    client: kube::Client,
}

/// Starts a store and a server with `cache` sizes, runs `test`, and stops
/// both and removes the directory also when the test fails.
async fn with_cached_server(cache: WatchCacheConfig, test: impl AsyncFnOnce(&H)) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path().join("store")))
        .await
        .unwrap();
    let mut config = ApiServerConfig::new(dir.path().join("server"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    let server =
        ApiServer::start_with_cache(config, Arc::new(store.clone()), Hooks::default(), cache)
            .await
            .unwrap();
    let kc = Kubeconfig::read_from(server.kubeconfig_path()).unwrap();
    let kconfig = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(kconfig).unwrap();
    let h = H {
        server: Some(server),
        store,
        client,
    };
    let result = AssertUnwindSafe(test(&h)).catch_unwind().await;
    let H {
        server,
        store,
        client,
    } = h;
    drop(client);
    if let Some(s) = server {
        s.shutdown().await;
    }
    store.shutdown().await;
    drop(dir);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn cm(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .unwrap()
}

fn rv(cm: &ConfigMap) -> String {
    cm.metadata.resource_version.clone().unwrap()
}

/// The next watch event, within [`WAIT`].
async fn next<S>(s: &mut S) -> WatchEvent<ConfigMap>
where
    S: futures::Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin,
{
    tokio::time::timeout(WAIT, s.next())
        .await
        .expect("an event in time")
        .expect("the stream is open")
        .expect("a decodable event")
}

fn describe(ev: &WatchEvent<ConfigMap>) -> (String, String, String) {
    let (t, o) = match ev {
        WatchEvent::Added(o) => ("ADDED", o),
        WatchEvent::Modified(o) => ("MODIFIED", o),
        WatchEvent::Deleted(o) => ("DELETED", o),
        other => panic!("unexpected event {other:?}"),
    };
    (
        t.to_string(),
        o.metadata.name.clone().unwrap_or_default(),
        rv(o),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_list_sees_a_write_made_just_before() {
    with_cached_server(WatchCacheConfig::default(), async |h| {
        let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), "default");
        for i in 0..20 {
            // Through the API…
            let created = cms.create(&PostParams::default(), &cm(&format!("a{i}"), json!({}))).await.unwrap();
            let list = cms.list(&ListParams::default()).await.unwrap();
            assert!(list.items.iter().any(|c| c.metadata.name.as_deref() == Some(&format!("a{i}"))));
            let list_rv: i64 = list.metadata.resource_version.unwrap().parse().unwrap();
            assert!(list_rv >= rv(&created).parse::<i64>().unwrap());
            // …and straight into the store, behind the API server's back.
            let name = format!("b{i}");
            let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default", "uid": name}});
            h.store
                .put(PutRequest {
                    key: format!("/registry/core/configmaps/default/{name}").into_bytes(),
                    value: serde_json::to_vec(&obj).unwrap(),
                    ..Default::default()
                })
                .await
                .unwrap();
            let list = cms.list(&ListParams::default()).await.unwrap();
            assert!(list.items.iter().any(|c| c.metadata.name.as_deref() == Some(&name)), "a consistent list sees {name}");
        }
        // Pages from the cache read one snapshot, even while writes go on.
        let first = cms.list(&ListParams::default().limit(7)).await.unwrap();
        let snapshot = first.metadata.resource_version.clone().unwrap();
        let mut names: Vec<String> = first.items.iter().filter_map(|c| c.metadata.name.clone()).collect();
        let mut token = first.metadata.continue_.clone();
        cms.create(&PostParams::default(), &cm("zz-late", json!({}))).await.unwrap();
        while let Some(t) = token.filter(|t| !t.is_empty()) {
            let page = cms.list(&ListParams::default().limit(7).continue_token(&t)).await.unwrap();
            assert_eq!(page.metadata.resource_version.as_deref(), Some(snapshot.as_str()));
            names.extend(page.items.iter().filter_map(|c| c.metadata.name.clone()));
            token = page.metadata.continue_.clone();
        }
        assert_eq!(names.len(), 40, "{names:?}");
        assert!(!names.contains(&"zz-late".to_string()));
        // resourceVersionMatch=NotOlderThan with a revision the cache has.
        let list = cms
            .list(&ListParams::default().at(&snapshot).matching(kube::api::VersionMatch::NotOlderThan))
            .await
            .unwrap();
        assert_eq!(list.items.len(), 41);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resume_replays_exactly_the_missed_events() {
    with_cached_server(WatchCacheConfig::default(), async |h| {
        let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), "default");
        let mut written = Vec::new();
        let c = cms
            .create(&PostParams::default(), &cm("r", json!({})))
            .await
            .unwrap();
        written.push(("ADDED".to_string(), "r".to_string(), rv(&c)));
        for i in 0..10 {
            let patch = json!({"data": {"i": i.to_string()}});
            let c = cms
                .patch("r", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
            written.push(("MODIFIED".into(), "r".into(), rv(&c)));
            let other = cms
                .create(&PostParams::default(), &cm(&format!("o{i}"), json!({})))
                .await
                .unwrap();
            written.push(("ADDED".into(), format!("o{i}"), rv(&other)));
        }
        // Resume from every point: exactly what followed, in order.
        for from in [0usize, 5, 13, 20] {
            let mut w = cms
                .watch(&WatchParams::default(), &written[from].2)
                .await
                .unwrap()
                .boxed();
            let mut seen = Vec::new();
            for _ in from + 1..written.len() {
                seen.push(describe(&next(&mut w).await));
            }
            assert_eq!(
                seen,
                written[from + 1..],
                "resumed after {}",
                written[from].2
            );
            // Nothing else is pending: the next event is a new write.
            let d = cms.delete("o0", &Default::default()).await.unwrap();
            let (t, name, _) = describe(&next(&mut w).await);
            assert_eq!((t.as_str(), name.as_str()), ("DELETED", "o0"));
            let back = cms
                .create(&PostParams::default(), &cm("o0", json!({})))
                .await
                .unwrap();
            let (t, _, _) = describe(&next(&mut w).await);
            assert_eq!(t, "ADDED");
            drop((d, back));
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_older_than_the_ring_gets_410() {
    let small = WatchCacheConfig {
        events_per_resource: 8,
        ..WatchCacheConfig::default()
    };
    with_cached_server(small, async |h| {
        let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), "default");
        let first = cms
            .create(&PostParams::default(), &cm("x", json!({})))
            .await
            .unwrap();
        let mut last = first.clone();
        for i in 0..20 {
            let patch = json!({"data": {"i": i.to_string()}});
            last = cms
                .patch("x", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
        }
        let mut w = cms
            .watch(&WatchParams::default(), &rv(&first))
            .await
            .unwrap()
            .boxed();
        match next(&mut w).await {
            WatchEvent::Error(e) => {
                assert_eq!(e.code, 410, "{e:?}");
                assert_eq!(e.reason, "Expired");
                assert!(
                    e.message
                        .starts_with(&format!("too old resource version: {}", rv(&first))),
                    "{e:?}"
                );
            }
            other => panic!("expected a 410 ERROR event, got {other:?}"),
        }
        // Within the ring: served.
        let recent: i64 = rv(&last).parse::<i64>().unwrap() - 3;
        let mut w = cms
            .watch(&WatchParams::default(), &recent.to_string())
            .await
            .unwrap()
            .boxed();
        for _ in 0..3 {
            assert_eq!(describe(&next(&mut w).await).0, "MODIFIED");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_watcher_is_closed_without_hurting_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path().join("store")))
        .await
        .unwrap();
    let result = AssertUnwindSafe(async {
        let kv: Arc<dyn Kv> = Arc::new(store.clone());
        let cache = WatchCache::new(
            kv.clone(),
            WatchCacheConfig {
                events_per_resource: 100,
                watcher_buffer: 4,
            },
        );
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let task = cache.spawn(stop);
        let current = kv.current_revision().await.unwrap();
        assert!(cache.wait_for(current, WAIT).await, "the cache loads");
        let res = skiff_apiserver::resources::find("", "v1", "configmaps").unwrap();
        let filter = || WatchFilter {
            prefix: "/registry/core/configmaps/".into(),
            client: "test".into(),
            matches: Box::new(|_| true),
        };
        let mut slow = cache
            .watch(res, filter(), WatchStart::Snapshot)
            .await
            .unwrap();
        let mut fast = cache
            .watch(res, filter(), WatchStart::Snapshot)
            .await
            .unwrap();
        let reader = tokio::spawn(async move {
            let mut n = 0;
            while n < 50 {
                match tokio::time::timeout(WAIT, fast.events.recv()).await {
                    Ok(Some(_)) => n += 1,
                    _ => break,
                }
            }
            n
        });
        for i in 0..50 {
            let obj = json!({"metadata": {"name": format!("s{i}"), "namespace": "default"}});
            kv.put(PutRequest {
                key: format!("/registry/core/configmaps/default/s{i}").into_bytes(),
                value: serde_json::to_vec(&obj).unwrap(),
                ..Default::default()
            })
            .await
            .unwrap();
        }
        assert_eq!(
            reader.await.unwrap(),
            50,
            "the fast watcher got every event"
        );
        let mut got = 0;
        while tokio::time::timeout(WAIT, slow.events.recv())
            .await
            .unwrap()
            .is_some()
        {
            got += 1;
        }
        assert_eq!(
            got, 4,
            "the slow watcher got its buffer, then its stream ended"
        );
        assert_eq!(cache.watcher_count(), 0);
        let _ = stop_tx.send(true);
        task.await.unwrap();
    })
    .catch_unwind()
    .await;
    store.shutdown().await;
    drop(dir);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_watchers_each_receive_the_update() {
    const WATCHERS: usize = 1000;
    with_cached_server(WatchCacheConfig::default(), async |h| {
        let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), "default");
        let start = cms
            .create(&PostParams::default(), &cm("fan", json!({})))
            .await
            .unwrap();
        let start_rv = rv(&start);
        let mut streams = Vec::new();
        for _ in 0..WATCHERS {
            let w = cms
                .watch(&WatchParams::default().timeout(120), &start_rv)
                .await
                .unwrap()
                .boxed();
            streams.push(w);
        }
        let patch = json!({"data": {"k": "updated"}});
        let updated = cms
            .patch("fan", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        let want = rv(&updated);
        let tasks: Vec<_> = streams
            .into_iter()
            .map(|mut s| {
                let want = want.clone();
                tokio::spawn(async move {
                    let ev = next(&mut s).await;
                    let (t, _, got) = describe(&ev);
                    t == "MODIFIED" && got == want
                })
            })
            .collect();
        let mut received = 0;
        for t in tasks {
            if t.await.unwrap() {
                received += 1;
            }
        }
        assert_eq!(received, WATCHERS);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_on_cached_watches() {
    with_cached_server(WatchCacheConfig::default(), async |h| {
        let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), "default");
        cms.create(&PostParams::default(), &cm("before", json!({"app": "web"})))
            .await
            .unwrap();
        cms.create(&PostParams::default(), &cm("other", json!({"app": "db"})))
            .await
            .unwrap();
        // resourceVersion=0: the matching objects first.
        let mut w = cms
            .watch(&WatchParams::default().labels("app=web"), "0")
            .await
            .unwrap()
            .boxed();
        assert_eq!(describe(&next(&mut w).await).1, "before");
        let mut named = cms
            .watch(&WatchParams::default().fields("metadata.name=s"), "0")
            .await
            .unwrap()
            .boxed();

        cms.create(&PostParams::default(), &cm("s", json!({"app": "db"})))
            .await
            .unwrap();
        let to_web = json!({"metadata": {"labels": {"app": "web"}}});
        cms.patch("s", &PatchParams::default(), &Patch::Merge(&to_web))
            .await
            .unwrap();
        let touch = json!({"data": {"x": "1"}});
        cms.patch("s", &PatchParams::default(), &Patch::Merge(&touch))
            .await
            .unwrap();
        let to_db = json!({"metadata": {"labels": {"app": "db"}}});
        let last = cms
            .patch("s", &PatchParams::default(), &Patch::Merge(&to_db))
            .await
            .unwrap();

        let mut seen = Vec::new();
        for _ in 0..3 {
            let ev = next(&mut w).await;
            if let WatchEvent::Deleted(o) = &ev {
                // The object as it last matched, at the change's revision.
                assert_eq!(o.metadata.labels.as_ref().unwrap()["app"], "web");
                assert_eq!(rv(o), rv(&last));
            }
            seen.push(describe(&ev).0);
        }
        assert_eq!(seen, ["ADDED", "MODIFIED", "DELETED"]);
        let kinds: Vec<String> = {
            let mut v = Vec::new();
            for _ in 0..4 {
                v.push(describe(&next(&mut named).await).0);
            }
            v
        };
        assert_eq!(kinds, ["ADDED", "MODIFIED", "MODIFIED", "MODIFIED"]);
        // Lists from the cache apply selectors too.
        let web = cms
            .list(&ListParams::default().labels("app=web"))
            .await
            .unwrap();
        let names: Vec<_> = web
            .items
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            .collect();
        assert_eq!(names, ["before"]);
    })
    .await;
}
