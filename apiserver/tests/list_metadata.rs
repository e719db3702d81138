//! List metadata and metadata-only answers: `remainingItemCount` on pages
//! cut by `limit` (from the watch cache and from the store), and
//! `PartialObjectMetadata(List)` for `Accept: …;as=PartialObjectMetadata…`
//! with curl and with kube-rs's metadata API (`list_metadata`,
//! `get_metadata`, a watcher of `PartialObjectMeta`), as the garbage collector uses them.

mod common;

use std::time::Duration;

use common::{with_server, Harness};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::PartialObjectMeta;
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::{json, Value};

const METADATA_LIST: &str =
    "Accept: application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
const METADATA: &str = "Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

async fn create_configmaps(h: &Harness, names: impl IntoIterator<Item = String>) {
    for name in names {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": name, "labels": {"app": "m"}}, "data": {"big": "x".repeat(100)}});
        let (code, s) = h
            .call("POST", "/api/v1/namespaces/default/configmaps", Some(cm))
            .await;
        assert_eq!(code, 201, "{s}");
    }
}

/// A GET with extra curl arguments, its body as JSON.
async fn get_as(h: &Harness, path: &str, accept: &str) -> (u16, Value) {
    let (code, body, _) = h.curl_full("GET", path, None, true, &["-H", accept]).await;
    (
        code,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remaining_item_count_on_pages_without_selectors() {
    with_server(async |h| {
        create_configmaps(h, (0..5).map(|i| format!("cm{i}"))).await;
        let base = "/api/v1/namespaces/default/configmaps";
        // Other namespaces' objects are not under this prefix.
        let (_, all) = h.call("GET", base, None).await;
        let total = all["items"].as_array().unwrap().len() as i64;
        assert!(total >= 5, "{all}");
        let (_, first) = h.call("GET", &format!("{base}?limit=2"), None).await;
        assert_eq!(first["items"].as_array().unwrap().len(), 2, "{first}");
        assert_eq!(
            first["metadata"]["remainingItemCount"],
            total - 2,
            "{first}"
        );
        let token = first["metadata"]["continue"].as_str().unwrap().to_string();

        // The second page from the cache (nothing changed since the first).
        let (_, second) = h
            .call("GET", &format!("{base}?limit=2&continue={token}"), None)
            .await;
        assert_eq!(
            second["metadata"]["remainingItemCount"],
            total - 4,
            "{second}"
        );

        // A write to the resource makes the next page of the old snapshot
        // come from the store, which counts the same way.
        create_configmaps(h, ["later".to_string()]).await;
        let (code, again) = h
            .call("GET", &format!("{base}?limit=2&continue={token}"), None)
            .await;
        assert_eq!(code, 200, "{again}");
        assert_eq!(
            again["metadata"]["remainingItemCount"],
            total - 4,
            "{again}"
        );
        assert_eq!(again["items"], second["items"]);

        // The last page, an unlimited list and a list with a selector: none.
        let (_, last) = h.call("GET", &format!("{base}?limit=100"), None).await;
        assert!(
            last["metadata"].get("remainingItemCount").is_none(),
            "{last}"
        );
        assert!(last["metadata"].get("continue").is_none(), "{last}");
        assert!(all["metadata"].get("remainingItemCount").is_none(), "{all}");
        let (_, selected) = h
            .call(
                "GET",
                &format!("{base}?limit=2&labelSelector=app%3Dm"),
                None,
            )
            .await;
        assert!(selected["metadata"]["continue"].is_string(), "{selected}");
        assert!(
            selected["metadata"].get("remainingItemCount").is_none(),
            "{selected}"
        );
        let (_, fields) = h
            .call(
                "GET",
                &format!("{base}?limit=2&fieldSelector=metadata.namespace%3Ddefault"),
                None,
            )
            .await;
        assert!(
            fields["metadata"].get("remainingItemCount").is_none(),
            "{fields}"
        );

        // kubectl's Table pages carry it too.
        let (_, table) = get_as(
            h,
            &format!("{base}?limit=2"),
            "Accept: application/json;as=Table;v=v1;g=meta.k8s.io",
        )
        .await;
        assert_eq!(table["kind"], "Table");
        assert_eq!(
            table["metadata"]["remainingItemCount"],
            total - 1,
            "{table}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_only_lists_gets_and_watches() {
    with_server(async |h| {
        create_configmaps(h, (0..3).map(|i| format!("m{i}"))).await;
        let base = "/api/v1/namespaces/default/configmaps";

        let (code, list) = get_as(h, &format!("{base}?labelSelector=app%3Dm"), METADATA_LIST).await;
        assert_eq!(code, 200, "{list}");
        assert_eq!(
            (list["kind"].as_str(), list["apiVersion"].as_str()),
            (Some("PartialObjectMetadataList"), Some("meta.k8s.io/v1"))
        );
        assert!(list["metadata"]["resourceVersion"].is_string());
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 3);
        for (i, item) in items.iter().enumerate() {
            assert_eq!(item["kind"], "PartialObjectMetadata");
            assert_eq!(item["apiVersion"], "meta.k8s.io/v1");
            assert_eq!(item["metadata"]["name"], format!("m{i}"));
            assert_eq!(item["metadata"]["labels"]["app"], "m");
            assert!(item["metadata"]["uid"].is_string());
            assert!(item.get("data").is_none(), "only metadata: {item}");
        }
        // Pages of a metadata list keep their ListMeta.
        let (_, page) = get_as(h, &format!("{base}?limit=1"), METADATA_LIST).await;
        assert!(page["metadata"]["continue"].is_string(), "{page}");
        assert!(
            page["metadata"]["remainingItemCount"].as_i64().unwrap() >= 2,
            "{page}"
        );

        let (code, one) = get_as(h, &format!("{base}/m1"), METADATA).await;
        assert_eq!(code, 200, "{one}");
        assert_eq!(one["kind"], "PartialObjectMetadata");
        assert_eq!(one["metadata"]["name"], "m1");
        assert!(one.get("data").is_none(), "{one}");

        // The wrong form for the answer, or one Skiff does not serve: 406
        // NotAcceptable, as kube-apiserver answers.
        for (path, accept) in [
            (format!("{base}/m1"), METADATA_LIST.to_string()),
            (base.to_string(), METADATA.to_string()),
            (
                base.to_string(),
                "Accept: application/json;as=Unheard;g=meta.k8s.io;v=v1".to_string(),
            ),
            (
                base.to_string(),
                "Accept: application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v7"
                    .to_string(),
            ),
        ] {
            let (code, status) = get_as(h, &path, &accept).await;
            assert_eq!(code, 406, "{path} {accept}: {status}");
            assert_eq!(status["reason"], "NotAcceptable", "{status}");
        }
        // With a JSON fallback the whole object comes back.
        let (code, whole) = get_as(
            h,
            &format!("{base}/m1"),
            "Accept: application/json;as=Unheard;g=meta.k8s.io;v=v1, application/json",
        )
        .await;
        assert_eq!(code, 200);
        assert_eq!(whole["kind"], "ConfigMap");

        // kube-rs's metadata API.
        let kc = Kubeconfig::read_from(&h.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let listed = cms
            .list_metadata(&ListParams::default().labels("app=m"))
            .await
            .unwrap();
        let names: Vec<_> = listed
            .items
            .iter()
            .map(|m| m.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["m0", "m1", "m2"]);
        let got = cms.get_metadata("m2").await.unwrap();
        assert_eq!(got.metadata.labels.unwrap()["app"], "m");

        // A metadata watcher (list + watch: an `Api` of `PartialObjectMeta`
        // asks for metadata only) sees a new object's metadata.
        let metas: Api<PartialObjectMeta<ConfigMap>> = Api::namespaced(client, "default");
        let mut events = watcher(metas, watcher::Config::default().labels("app=m"))
            .applied_objects()
            .boxed();
        create_configmaps(h, ["m3".to_string()]).await;
        let seen = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let m = events.next().await.unwrap().unwrap();
                if m.metadata.name.as_deref() == Some("m3") {
                    break m;
                }
            }
        })
        .await
        .expect("the metadata watcher saw m3");
        assert!(seen.metadata.resource_version.is_some());

        // A raw metadata watch: each event's object is PartialObjectMetadata.
        let (code, body, _) = h
            .curl_full(
                "GET",
                &format!("{base}?watch=1&labelSelector=app%3Dm&timeoutSeconds=1"),
                None,
                true,
                &["-H", METADATA],
            )
            .await;
        assert_eq!(code, 200, "{body}");
        let events: Vec<Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len(), 4, "{body}");
        for e in &events {
            assert_eq!(e["type"], "ADDED");
            assert_eq!(e["object"]["kind"], "PartialObjectMetadata", "{e}");
            assert!(e["object"].get("data").is_none(), "{e}");
        }
    })
    .await;
}
