//! `propagationPolicy` on DELETE against the API server alone (no garbage
//! collector runs here, so the finalizers it would act on stay visible):
//! `kubectl delete --cascade=orphan|foreground|background`, the Job
//! default, and bad options. The end-to-end run with the collector is
//! `tests/tests/delete_propagation.rs`.

mod common;

use common::{with_server, Harness};
use serde_json::{json, Value};

fn cm(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{a: b}}\n")
}

async fn get(h: &Harness, path: &str) -> (u16, Value) {
    h.call("GET", path, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propagation_policy_sets_gc_finalizers() {
    with_server(async |h: &Harness| {
        for (name, cascade, finalizer) in [
            ("o", "orphan", Some("orphan")),
            ("f", "foreground", Some("foregroundDeletion")),
            ("b", "background", None),
        ] {
            h.kubectl_ok(&["apply", "-f", "-"], Some(&cm(name))).await;
            h.kubectl_ok(
                &[
                    "delete",
                    "configmap",
                    name,
                    &format!("--cascade={cascade}"),
                    "--wait=false",
                ],
                None,
            )
            .await;
            let (code, obj) =
                get(h, &format!("/api/v1/namespaces/default/configmaps/{name}")).await;
            match finalizer {
                Some(f) => {
                    assert_eq!(code, 200, "{cascade}: {obj}");
                    assert_eq!(obj["metadata"]["finalizers"], json!([f]), "{cascade}");
                    assert!(
                        obj["metadata"]["deletionTimestamp"].is_string(),
                        "{cascade}"
                    );
                    // Removing the finalizer (what the collector does) ends it.
                    h.kubectl_ok(
                        &[
                            "patch",
                            "configmap",
                            name,
                            "--type=merge",
                            "-p",
                            r#"{"metadata":{"finalizers":null}}"#,
                        ],
                        None,
                    )
                    .await;
                    let (code, _) =
                        get(h, &format!("/api/v1/namespaces/default/configmaps/{name}")).await;
                    assert_eq!(code, 404, "{cascade}");
                }
                None => assert_eq!(code, 404, "{cascade}: {obj}"),
            }
        }

        // batch/v1 Jobs default to Orphan, with Kubernetes' warning.
        let job = r#"{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"j"},
            "spec":{"template":{"spec":{"restartPolicy":"Never",
            "containers":[{"name":"c","image":"busybox:1"}]}}}}"#;
        let (code, _) = h
            .call(
                "POST",
                "/apis/batch/v1/namespaces/default/jobs",
                Some(serde_json::from_str(job).unwrap()),
            )
            .await;
        assert_eq!(code, 201);
        let (code, obj) = h
            .call("DELETE", "/apis/batch/v1/namespaces/default/jobs/j", None)
            .await;
        assert_eq!(code, 200, "{obj}");
        assert_eq!(obj["metadata"]["finalizers"], json!(["orphan"]));

        // Bad options are 422 naming the field.
        h.kubectl_ok(&["apply", "-f", "-"], Some(&cm("x"))).await;
        let (code, s) = h
            .call(
                "DELETE",
                "/api/v1/namespaces/default/configmaps/x?propagationPolicy=Sideways",
                None,
            )
            .await;
        assert_eq!(code, 422, "{s}");
        assert_eq!(s["details"]["causes"][0]["field"], "propagationPolicy");
        let (code, s) = h
            .call(
                "DELETE",
                "/api/v1/namespaces/default/configmaps/x",
                Some(json!({"propagationPolicy": "Orphan", "orphanDependents": true})),
            )
            .await;
        assert_eq!(code, 422, "{s}");
        // The deprecated orphanDependents still works.
        let (code, obj) = h
            .call(
                "DELETE",
                "/api/v1/namespaces/default/configmaps/x",
                Some(json!({"orphanDependents": true})),
            )
            .await;
        assert_eq!(code, 200, "{obj}");
        assert_eq!(obj["metadata"]["finalizers"], json!(["orphan"]));
    })
    .await;
}
