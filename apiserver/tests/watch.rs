//! Watches over HTTP: events for changes, selectors turning changes into
//! ADDED/DELETED, the initial state for resourceVersion=0, and the 410
//! ERROR event after compaction.

mod common;

use std::time::Duration;

use common::{with_server, Harness};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::ChildStdout;

struct Stream {
    child: tokio::process::Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Stream {
    fn open(h: &Harness, path: &str) -> Stream {
        let mut child = h.curl_stream(path);
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Stream { child, lines }
    }

    /// The next event as (type, name).
    async fn next(&mut self) -> (String, Value) {
        let line = tokio::time::timeout(Duration::from_secs(10), self.lines.next_line())
            .await
            .expect("an event in time")
            .unwrap()
            .expect("the stream is open");
        let ev: Value = serde_json::from_str(&line).unwrap();
        (
            ev["type"].as_str().unwrap().to_string(),
            ev["object"].clone(),
        )
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_added_modified_deleted() {
    with_server(async |h| {
        let (_, list) = h.call("GET", "/api/v1/namespaces/default/configmaps", None).await;
        let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
        let mut all = Stream::open(h, &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}"));
        let mut selected = Stream::open(h, &format!("/api/v1/configmaps?watch=1&resourceVersion={rv}&labelSelector=app%3Dweb"));

        let (code, _) = h.call("POST", "/api/v1/namespaces/default/configmaps", Some(json!({"metadata": {"name": "a", "labels": {"app": "web"}}}))).await;
        assert_eq!(code, 201);
        let (code, _, _) = h
            .curl_full("PATCH", "/api/v1/namespaces/default/configmaps/a", Some(("application/merge-patch+json", br#"{"data":{"k":"v"}}"#)), true, &[])
            .await;
        assert_eq!(code, 200);
        // Stops matching the selector: DELETED for the selective watcher.
        let (code, _, _) = h
            .curl_full("PATCH", "/api/v1/namespaces/default/configmaps/a", Some(("application/merge-patch+json", br#"{"metadata":{"labels":{"app":"db"}}}"#)), true, &[])
            .await;
        assert_eq!(code, 200);
        let (code, _) = h.call("DELETE", "/api/v1/namespaces/default/configmaps/a", None).await;
        assert_eq!(code, 200);

        let mut seen = Vec::new();
        for _ in 0..4 {
            let (t, o) = all.next().await;
            seen.push((t, name(&o).to_string()));
        }
        assert_eq!(
            seen,
            [("ADDED".into(), "a".into()), ("MODIFIED".into(), "a".into()), ("MODIFIED".into(), "a".into()), ("DELETED".into(), "a".to_string())]
        );
        let mut seen = Vec::new();
        for _ in 0..3 {
            let (t, o) = selected.next().await;
            seen.push(t);
            assert_eq!(name(&o), "a");
        }
        assert_eq!(seen, ["ADDED", "MODIFIED", "DELETED"]);

        // resourceVersion=0: the current state first.
        h.call("POST", "/api/v1/namespaces/default/configmaps", Some(json!({"metadata": {"name": "b"}}))).await;
        let mut fresh = Stream::open(h, "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=0");
        let (t, o) = fresh.next().await;
        assert_eq!((t.as_str(), name(&o)), ("ADDED", "b"));

        // sendInitialEvents: ADDED then the initial-events-end bookmark.
        let mut wl = Stream::open(
            h,
            "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
        );
        let (t, _) = wl.next().await;
        assert_eq!(t, "ADDED");
        let (t, o) = wl.next().await;
        assert_eq!(t, "BOOKMARK");
        assert_eq!(o["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");

        // kubectl get -w asks for Table events.
        let mut table = h.curl_stream_with(
            "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=0",
            &["-H", "Accept: application/json;as=Table;v=v1;g=meta.k8s.io,application/json"],
        );
        let mut tlines = BufReader::new(table.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(10), tlines.next_line()).await.unwrap().unwrap().unwrap();
        let ev: Value = serde_json::from_str(&first).unwrap();
        assert_eq!(ev["type"], "ADDED");
        assert_eq!(ev["object"]["kind"], "Table", "{ev}");
        assert_eq!(ev["object"]["rows"].as_array().map(Vec::len), Some(1), "{ev}");
        let _ = table.start_kill();

        // timeoutSeconds ends the stream.
        let mut short = Stream::open(h, "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1&resourceVersion=0");
        let _ = short.next().await;
        let end = tokio::time::timeout(Duration::from_secs(10), short.lines.next_line()).await.expect("ends in time");
        assert!(matches!(end, Ok(None)), "{end:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_watch_gets_410_expired() {
    with_server(async |h| {
        let (_, cm) = h
            .call(
                "POST",
                "/api/v1/namespaces/default/configmaps",
                Some(json!({"metadata": {"name": "c"}})),
            )
            .await;
        let old_rv: i64 = cm["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        for i in 0..3 {
            let patch = format!(r#"{{"data":{{"i":"{i}"}}}}"#);
            h.curl_full(
                "PATCH",
                "/api/v1/namespaces/default/configmaps/c",
                Some(("application/merge-patch+json", patch.as_bytes())),
                true,
                &[],
            )
            .await;
        }
        let current = skiff_store::Kv::current_revision(&h.store).await.unwrap();
        skiff_store::Kv::compact(&h.store, current).await.unwrap();

        let mut w = Stream::open(
            h,
            &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={old_rv}"),
        );
        let (t, status) = w.next().await;
        assert_eq!(t, "ERROR");
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["code"], 410);
        assert_eq!(status["reason"], "Expired");
        assert!(
            status["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("too old resource version: {old_rv}")),
            "{status}"
        );
    })
    .await;
}
