//! Namespace deletion against the API server alone (no namespace
//! controller runs here, so a namespace stays Terminating until the test
//! plays the controller's part through `finalize`): DELETE marks it
//! Terminating and answers 200 with the object, new content is refused
//! with Kubernetes' 403, the built-in namespaces cannot be deleted, an
//! update cannot change `spec.finalizers`, and the namespace goes once
//! `spec.finalizers` and `metadata.finalizers` are both empty. The run
//! with the controller is `crates/controllers/tests/namespace.rs`.

mod common;

use common::{with_server, Harness};
use serde_json::{json, Value};

async fn ns(h: &Harness, name: &str) -> (u16, Value) {
    h.call("GET", &format!("/api/v1/namespaces/{name}"), None)
        .await
}

async fn finalize(h: &Harness, name: &str, finalizers: Value) -> (u16, Value) {
    let (_, mut obj) = ns(h, name).await;
    obj["spec"]["finalizers"] = finalizers;
    h.call(
        "PUT",
        &format!("/api/v1/namespaces/{name}/finalize"),
        Some(obj),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_terminates_until_finalized() {
    with_server(async |h: &Harness| {
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let (code, s) = h.call("DELETE", &format!("/api/v1/namespaces/{name}"), None).await;
            assert_eq!(code, 403, "{s}");
            assert_eq!(s["reason"], "Forbidden");
            assert_eq!(
                s["message"],
                format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted")
            );
        }

        let (code, created) = h
            .call(
                "POST",
                "/api/v1/namespaces",
                Some(json!({"metadata": {"name": "t", "finalizers": ["example.com/ns-hold"]}})),
            )
            .await;
        assert_eq!(code, 201, "{created}");
        assert_eq!(created["spec"]["finalizers"], json!(["kubernetes"]));
        let cm = json!({"metadata": {"name": "c", "finalizers": ["example.com/hold"]}});
        let (code, _) = h.call("POST", "/api/v1/namespaces/t/configmaps", Some(cm)).await;
        assert_eq!(code, 201);
        // A plain update cannot drop the finalizer.
        let (_, mut obj) = ns(h, "t").await;
        obj["spec"]["finalizers"] = json!([]);
        let (code, updated) = h.call("PUT", "/api/v1/namespaces/t", Some(obj)).await;
        assert_eq!(code, 200, "{updated}");
        assert_eq!(updated["spec"]["finalizers"], json!(["kubernetes"]));

        let (code, deleted) = h.call("DELETE", "/api/v1/namespaces/t", None).await;
        assert_eq!(code, 200, "{deleted}");
        assert_eq!(deleted["status"]["phase"], "Terminating");
        assert!(deleted["metadata"]["deletionTimestamp"].is_string());
        // Again: still Terminating, same answer.
        let (code, again) = h.call("DELETE", "/api/v1/namespaces/t", None).await;
        assert_eq!(code, 200);
        assert_eq!(again["metadata"]["deletionTimestamp"], deleted["metadata"]["deletionTimestamp"]);

        let (code, s) = h
            .call("POST", "/api/v1/namespaces/t/configmaps", Some(json!({"metadata": {"name": "late"}})))
            .await;
        assert_eq!(code, 403, "{s}");
        assert_eq!(
            s["message"],
            "configmaps \"late\" is forbidden: unable to create new content in namespace t because it is being terminated"
        );
        assert_eq!(s["details"]["causes"][0]["reason"], "NamespaceTerminating");
        assert_eq!(s["details"]["causes"][0]["field"], "metadata.namespace");
        // Existing content can still change (the controller deletes it).
        let (code, _) = h.call("GET", "/api/v1/namespaces/t/configmaps/c", None).await;
        assert_eq!(code, 200);

        // `finalize` with a bad body, then the controller's call.
        let (code, _) = finalize(h, "t", json!("kubernetes")).await;
        assert_eq!(code, 400);
        let (code, fin) = finalize(h, "t", json!([])).await;
        assert_eq!(code, 200, "{fin}");
        assert_eq!(fin["spec"]["finalizers"], json!([]));
        // metadata.finalizers still holds it.
        assert_eq!(ns(h, "t").await.0, 200);
        let (_, mut obj) = ns(h, "t").await;
        obj["metadata"]["finalizers"] = json!([]);
        let (code, _) = h.call("PUT", "/api/v1/namespaces/t", Some(obj)).await;
        assert_eq!(code, 200);
        assert_eq!(ns(h, "t").await.0, 404);

        // A namespace without finalizers goes at once.
        let (code, _) = h
            .call("POST", "/api/v1/namespaces", Some(json!({"metadata": {"name": "u"}})))
            .await;
        assert_eq!(code, 201);
        let (code, _) = finalize(h, "u", json!([])).await;
        assert_eq!(code, 200);
        let (code, _) = h.call("DELETE", "/api/v1/namespaces/u", None).await;
        assert_eq!(code, 200);
        assert_eq!(ns(h, "u").await.0, 404);
    })
    .await;
}
