//! The REST API with raw requests (curl): Status errors, pagination,
//! selectors, binding, graceful deletion, patches, HTTP/2, restart.

mod common;

use common::{with_server, Harness};
use serde_json::{json, Value};

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_kubernetes_statuses() {
    with_server(async |h| {
        // Public endpoints need no token.
        let (code, body, _) = h.curl_full("GET", "/healthz", None, false, &[]).await;
        assert_eq!((code, body.as_str()), (200, "ok"));
        let (code, body, _) = h.curl_full("GET", "/version", None, false, &[]).await;
        assert_eq!(code, 200);
        assert!(body.contains("\"gitVersion\":\"v1.32.0-skiff\""), "{body}");
        let (code, body, _) = h.curl_full("GET", "/cacerts", None, false, &[]).await;
        assert_eq!(code, 200);
        assert!(body.contains("BEGIN CERTIFICATE"));

        // 401 without a token.
        let (code, body, _) = h.curl_full("GET", "/api/v1/pods", None, false, &[]).await;
        assert_eq!(code, 401);
        let s: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (s["kind"].as_str(), s["reason"].as_str()),
            (Some("Status"), Some("Unauthorized"))
        );

        // 400 malformed JSON.
        let (code, _, _) = h
            .curl_full(
                "POST",
                "/api/v1/namespaces/default/pods",
                Some(("application/json", b"{nope")),
                true,
                &[],
            )
            .await;
        assert_eq!(code, 400);
        let (code, s) = h
            .call("POST", "/api/v1/namespaces/default/configmaps", None)
            .await;
        assert_eq!(code, 400, "{s}");

        // 404 unknown resource, missing object, missing namespace.
        let (code, s) = h
            .call("GET", "/api/v1/namespaces/default/widgets", None)
            .await;
        assert_eq!((code, s["reason"].as_str()), (404, Some("NotFound")));
        let (code, s) = h
            .call("GET", "/api/v1/namespaces/default/pods/nope", None)
            .await;
        assert_eq!(code, 404);
        assert_eq!(s["message"], "pods \"nope\" not found");
        assert_eq!(s["details"]["kind"], "pods");
        let (code, s) = h
            .call("POST", "/api/v1/namespaces/ghost/pods", Some(pod("p")))
            .await;
        assert_eq!(code, 404);
        assert_eq!(s["message"], "namespaces \"ghost\" not found");

        // Leases upsert on PUT, but not into a missing namespace.
        let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"}});
        let (code, s) = h.call("PUT", "/apis/coordination.k8s.io/v1/namespaces/ghost/leases/l", Some(lease.clone())).await;
        assert_eq!(code, 404, "{s}");
        let (code, s) = h.call("PUT", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/l", Some(lease)).await;
        assert_eq!(code, 201, "{s}");

        // 201, then 409 AlreadyExists.
        let (code, created) = h
            .call("POST", "/api/v1/namespaces/default/pods", Some(pod("p")))
            .await;
        assert_eq!(code, 201, "{created}");
        assert_eq!(created["status"]["phase"], "Pending");
        assert!(
            created["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse::<i64>()
                .unwrap()
                > 0
        );
        let (code, s) = h
            .call("POST", "/api/v1/namespaces/default/pods", Some(pod("p")))
            .await;
        assert_eq!((code, s["reason"].as_str()), (409, Some("AlreadyExists")));
        assert_eq!(s["message"], "pods \"p\" already exists");

        // 422 with the missing field named.
        let mut bad = pod("q");
        bad["spec"] = json!({});
        let (code, s) = h
            .call("POST", "/api/v1/namespaces/default/pods", Some(bad))
            .await;
        assert_eq!((code, s["reason"].as_str()), (422, Some("Invalid")), "{s}");
        let fields: Vec<&str> = s["details"]["causes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["field"].as_str())
            .collect();
        assert!(fields.contains(&"spec.containers"), "{s}");

        // 409 Conflict on a stale resourceVersion.
        let mut stale = created.clone();
        stale["metadata"]["labels"]["x"] = json!("1");
        let (code, _) = h
            .call(
                "PUT",
                "/api/v1/namespaces/default/pods/p",
                Some(stale.clone()),
            )
            .await;
        assert_eq!(code, 200);
        let (code, s) = h
            .call("PUT", "/api/v1/namespaces/default/pods/p", Some(stale))
            .await;
        assert_eq!((code, s["reason"].as_str()), (409, Some("Conflict")));
        assert!(s["message"]
            .as_str()
            .unwrap()
            .contains("the object has been modified"));

        // 422 for server-side apply without fieldManager, 405 for a verb
        // the path lacks.
        let (code, _, _) = h
            .curl_full(
                "PATCH",
                "/api/v1/namespaces/default/pods/p",
                Some(("application/apply-patch+yaml", b"{}")),
                true,
                &[],
            )
            .await;
        assert_eq!(code, 422);
        let (code, _) = h
            .call("POST", "/api/v1/namespaces/default/pods/p", Some(pod("p")))
            .await;
        assert_eq!(code, 405);

        // 413 past 3 MiB.
        let big = vec![b' '; 3 * 1024 * 1024 + 10];
        let (code, _, _) = h
            .curl_full(
                "POST",
                "/api/v1/namespaces/default/configmaps",
                Some(("application/json", &big)),
                true,
                &[],
            )
            .await;
        assert_eq!(code, 413);

        // Wrongly typed apiVersion or metadata: 400 in Go's words.
        let (code, s) = h
            .call(
                "POST",
                "/api/v1/namespaces/default/configmaps",
                Some(json!({"apiVersion": 5, "kind": "ConfigMap", "metadata": {"name": "t"}})),
            )
            .await;
        assert_eq!(code, 400, "{s}");
        assert!(
            s["message"].as_str().unwrap().contains(
                "cannot unmarshal number into Go struct field .apiVersion of type string"
            ),
            "{s}"
        );
        let (code, s) = h
            .call(
                "PUT",
                "/api/v1/namespaces/default/pods/s",
                Some(json!({"apiVersion": "v1", "kind": "Pod", "metadata": "x"})),
            )
            .await;
        assert_eq!(code, 400, "{s}");
        assert_eq!(
            s["message"],
            "Pod in version \"v1\" cannot be handled as a Pod: json: cannot unmarshal string into Go struct field Pod.metadata of type v1.ObjectMeta"
        );

        // Strict field validation names the unknown field; Warn warns.
        let mut extra = pod("s");
        extra["spec"]["foo"] = json!(1);
        let (code, s) = h
            .call(
                "POST",
                "/api/v1/namespaces/default/pods?fieldValidation=Strict",
                Some(extra.clone()),
            )
            .await;
        assert_eq!(code, 400, "{s}");
        assert!(
            s["message"]
                .as_str()
                .unwrap()
                .contains("unknown field \"spec.foo\""),
            "{s}"
        );
        let bytes = serde_json::to_vec(&extra).unwrap();
        let (code, _, headers) = h
            .curl_full(
                "POST",
                "/api/v1/namespaces/default/pods?fieldValidation=Warn",
                Some(("application/json", &bytes)),
                true,
                &[],
            )
            .await;
        assert_eq!(code, 201);
        assert!(
            headers
                .to_ascii_lowercase()
                .contains("warning: 299 - \"unknown field \\\"spec.foo\\\"\""),
            "{headers}"
        );
        // The unknown field is dropped, not stored (Warn and Ignore alike).
        let (_, stored) = h.call("GET", "/api/v1/namespaces/default/pods/s", None).await;
        assert!(stored["spec"].get("foo").is_none(), "{stored}");
        let mut ignored = pod("s2");
        ignored["spec"]["foo"] = json!(1);
        let (code, created) = h
            .call(
                "POST",
                "/api/v1/namespaces/default/pods?fieldValidation=Ignore",
                Some(ignored),
            )
            .await;
        assert_eq!(code, 201, "{created}");
        assert!(created["spec"].get("foo").is_none(), "{created}");

        // A merge patch: its own fields are checked when its body decodes
        // alone; when it does not (a label deleted with null), the patched
        // object is. Both name the field; Warn drops it from the result.
        for (body, field) in [
            (json!({"metadata": {"labels": {"a": "b"}, "foo": 1}}), "metadata.foo"),
            (json!({"metadata": {"labels": {"a": null}}, "spec": {"foo": 1}}), "spec.foo"),
        ] {
            let bytes = serde_json::to_vec(&body).unwrap();
            let (code, s, _) = h
                .curl_full(
                    "PATCH",
                    "/api/v1/namespaces/default/pods/s?fieldValidation=Strict",
                    Some(("application/merge-patch+json", &bytes)),
                    true,
                    &[],
                )
                .await;
            assert_eq!(code, 400, "{body}: {s}");
            assert!(s.contains(&format!(r#"unknown field \"{field}\""#)), "{body}: {s}");
            let (code, patched, headers) = h
                .curl_full(
                    "PATCH",
                    "/api/v1/namespaces/default/pods/s?fieldValidation=Warn",
                    Some(("application/merge-patch+json", &bytes)),
                    true,
                    &[],
                )
                .await;
            assert_eq!(code, 200, "{body}: {patched}");
            assert!(
                headers
                    .to_ascii_lowercase()
                    .contains(&format!(r#"warning: 299 - "unknown field \"{field}\"""#)),
                "{body}: {headers}"
            );
            assert!(!patched.contains("\"foo\""), "{body}: {patched}");
        }

        // Unsupported field selector: 400 as Kubernetes words it.
        let (code, s) = h
            .call("GET", "/api/v1/pods?fieldSelector=spec.foo%3Dx", None)
            .await;
        assert_eq!(code, 400);
        assert_eq!(s["message"], "field label not supported: spec.foo");
    })
    .await;
}

/// A patch with unknown fields to a pod that does not exist answers 404,
/// as kube-apiserver does (it decodes strictly while applying the patch to
/// the stored object); Skiff used to check the body first and answer 400.
/// Server-side apply still creates, so there the unknown field counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_patch_with_unknown_fields_to_a_missing_object_is_not_found() {
    with_server(async |h| {
        // A merge patch whose body decodes alone, one that does not (a
        // label deleted with null), and a strategic merge patch.
        for (content_type, body) in [
            (
                "application/merge-patch+json",
                json!({"metadata": {"labels": {"a": "b"}, "foo": 1}}),
            ),
            (
                "application/merge-patch+json",
                json!({"metadata": {"labels": {"a": null}}, "spec": {"foo": 1}}),
            ),
            (
                "application/strategic-merge-patch+json",
                json!({"spec": {"foo": 1}}),
            ),
        ] {
            let bytes = serde_json::to_vec(&body).unwrap();
            for mode in ["Strict", "Warn"] {
                let (code, s, headers) = h
                    .curl_full(
                        "PATCH",
                        &format!("/api/v1/namespaces/default/pods/ghost?fieldValidation={mode}"),
                        Some((content_type, &bytes)),
                        true,
                        &[],
                    )
                    .await;
                assert_eq!(code, 404, "{mode} {content_type} {body}: {s}");
                let s: Value = serde_json::from_str(&s).unwrap();
                assert_eq!(s["reason"], "NotFound", "{s}");
                assert_eq!(s["message"], "pods \"ghost\" not found");
                assert!(
                    !headers.to_ascii_lowercase().contains("warning:"),
                    "{mode} {content_type} {body}: {headers}"
                );
            }
        }

        // Server-side apply creates a missing object, so Strict refuses an
        // unknown field there, and a clean apply creates the pod.
        let patch_ghost = async |query: &str, content_type: &str, body: &Value| {
            let bytes = serde_json::to_vec(body).unwrap();
            let path = format!("/api/v1/namespaces/default/pods/ghost?{query}");
            let (code, s, _) = h
                .curl_full("PATCH", &path, Some((content_type, &bytes)), true, &[])
                .await;
            (code, s)
        };
        let apply = "application/apply-patch+yaml";
        let query = "fieldManager=t&fieldValidation=Strict";
        let mut extra = pod("ghost");
        extra["spec"]["foo"] = json!(1);
        let (code, s) = patch_ghost(query, apply, &extra).await;
        assert_eq!(code, 400, "{s}");
        assert!(s.contains(r#"unknown field \"spec.foo\""#), "{s}");
        let (code, created) = patch_ghost(query, apply, &pod("ghost")).await;
        assert_eq!(code, 201, "{created}");

        // Now that it exists, the strict merge patch names the field.
        let body = json!({"metadata": {"foo": 1}});
        let (code, s) = patch_ghost(
            "fieldValidation=Strict",
            "application/merge-patch+json",
            &body,
        )
        .await;
        assert_eq!(code, 400, "{s}");
        assert!(s.contains(r#"unknown field \"metadata.foo\""#), "{s}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_pages_selectors_and_yaml() {
    with_server(async |h| {
        for i in 0..5 {
            let cm = json!({"metadata": {"name": format!("cm{i}"), "labels": {"n": i.to_string(), "even": (i % 2 == 0).to_string()}}, "data": {"k": "v"}});
            let (code, s) = h.call("POST", "/api/v1/namespaces/default/configmaps", Some(cm)).await;
            assert_eq!(code, 201, "{s}");
        }
        // YAML in.
        let yaml = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fromyaml\ndata:\n  a: b\n";
        let (code, body, _) = h.curl_full("POST", "/api/v1/namespaces/default/configmaps", Some(("application/yaml", yaml)), true, &[]).await;
        assert_eq!(code, 201, "{body}");

        let (_, first) = h.call("GET", "/api/v1/namespaces/default/configmaps?limit=2", None).await;
        assert_eq!(first["kind"], "ConfigMapList");
        assert_eq!(first["items"].as_array().unwrap().len(), 2);
        let mut names: Vec<String> = first["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()).collect();
        let rv = first["metadata"]["resourceVersion"].clone();
        let mut token = first["metadata"]["continue"].as_str().unwrap().to_string();
        loop {
            let (code, page) = h.call("GET", &format!("/api/v1/namespaces/default/configmaps?limit=2&continue={token}"), None).await;
            assert_eq!(code, 200, "{page}");
            assert_eq!(page["metadata"]["resourceVersion"], rv, "pages read one snapshot");
            names.extend(page["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()));
            match page["metadata"]["continue"].as_str() {
                Some(t) => token = t.to_string(),
                None => break,
            }
        }
        assert_eq!(names, ["cm0", "cm1", "cm2", "cm3", "cm4", "fromyaml"]);

        let (_, even) = h.call("GET", "/api/v1/configmaps?labelSelector=even%3Dtrue,n%20notin%20(4)", None).await;
        // A list is sent from the items' cached bytes, its length known:
        // HTTP/1.1 gets Content-Length, not chunked encoding.
        let (code, body, headers) = h.curl_full("GET", "/api/v1/namespaces/default/configmaps", None, true, &["--http1.1"]).await;
        assert_eq!(code, 200);
        let length = headers.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()));
        assert_eq!(length, Some(body.len().to_string()), "{headers}");
        let listed: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(listed["items"].as_array().unwrap().len(), 6, "{body}");
        let even: Vec<&str> = even["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap()).collect();
        assert_eq!(even, ["cm0", "cm2"]);
        let (_, named) = h.call("GET", "/api/v1/namespaces/default/configmaps?fieldSelector=metadata.name%3Dcm3", None).await;
        assert_eq!(named["items"].as_array().unwrap().len(), 1);

        // YAML out.
        let (code, body, _) = h.curl_full("GET", "/api/v1/namespaces/default/configmaps/cm1", None, true, &["-H", "Accept: application/yaml"]).await;
        assert_eq!(code, 200);
        assert!(body.contains("name: cm1"), "{body}");

        // Patches: merge, JSON, strategic.
        let (code, _, _) = h.curl_full("PATCH", "/api/v1/namespaces/default/configmaps/cm1", Some(("application/merge-patch+json", br#"{"data":{"k":null,"x":"y"}}"#)), true, &[]).await;
        assert_eq!(code, 200);
        let (code, _, _) = h.curl_full("PATCH", "/api/v1/namespaces/default/configmaps/cm1", Some(("application/json-patch+json", br#"[{"op":"add","path":"/data/z","value":"1"}]"#)), true, &[]).await;
        assert_eq!(code, 200);
        let (_, cm) = h.call("GET", "/api/v1/namespaces/default/configmaps/cm1", None).await;
        assert_eq!(cm["data"], json!({"x": "y", "z": "1"}));

        // deletecollection with a selector.
        let (code, s) = h.call("DELETE", "/api/v1/namespaces/default/configmaps?labelSelector=even%3Dtrue", None).await;
        assert_eq!(code, 200, "{s}");
        // The answer lists what was deleted (encoded as each was deleted).
        assert_eq!(s["kind"], "ConfigMapList", "{s}");
        let gone: Vec<&str> = s["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap()).collect();
        assert_eq!(gone, ["cm0", "cm2", "cm4"]);
        let (_, left) = h.call("GET", "/api/v1/namespaces/default/configmaps", None).await;
        assert_eq!(left["items"].as_array().unwrap().len(), 3);

        // HTTP/2 is negotiated.
        let (code, _, headers) = h.curl_full("GET", "/api", None, true, &["--http2"]).await;
        assert_eq!(code, 200);
        assert!(headers.starts_with("HTTP/2"), "{headers}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_status_and_graceful_delete() {
    with_server(async |h| {
        let (code, _) = h.call("POST", "/api/v1/namespaces/default/pods", Some(pod("g"))).await;
        assert_eq!(code, 201);
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "g"}, "target": {"kind": "Node", "name": "n1"}});
        let (code, s) = h.call("POST", "/api/v1/namespaces/default/pods/g/binding", Some(binding.clone())).await;
        assert_eq!((code, s["status"].as_str()), (201, Some("Success")), "{s}");
        let (code, s) = h.call("POST", "/api/v1/namespaces/default/pods/g/binding", Some(binding)).await;
        assert_eq!(code, 409);
        assert!(s["message"].as_str().unwrap().contains("pod g is already assigned to node \"n1\""), "{s}");

        let (_, p) = h.call("GET", "/api/v1/namespaces/default/pods/g", None).await;
        assert_eq!(p["spec"]["nodeName"], "n1");
        assert_eq!(p["status"]["conditions"][0]["type"], "PodScheduled");

        // The status subresource changes only status; the main resource
        // cannot change status.
        let mut upd = p.clone();
        upd["status"]["phase"] = json!("Running");
        upd["spec"]["activeDeadlineSeconds"] = json!(5);
        let (code, s) = h.call("PUT", "/api/v1/namespaces/default/pods/g/status", Some(upd)).await;
        assert_eq!(code, 200, "{s}");
        assert_eq!(s["status"]["phase"], "Running");
        assert!(s["spec"].get("activeDeadlineSeconds").is_none());
        let mut upd = s.clone();
        upd["status"]["phase"] = json!("Failed");
        upd["metadata"]["labels"]["new"] = json!("1");
        let (code, s) = h.call("PUT", "/api/v1/namespaces/default/pods/g", Some(upd)).await;
        assert_eq!(code, 200, "{s}");
        assert_eq!(s["status"]["phase"], "Running");
        assert_eq!(s["metadata"]["labels"]["new"], "1");

        // Bound and running: graceful deletion.
        let (code, s) = h.call("DELETE", "/api/v1/namespaces/default/pods/g", None).await;
        assert_eq!(code, 200);
        assert!(s["metadata"]["deletionTimestamp"].is_string(), "{s}");
        assert_eq!(s["metadata"]["deletionGracePeriodSeconds"], 30);
        let (code, _) = h.call("GET", "/api/v1/namespaces/default/pods/g", None).await;
        assert_eq!(code, 200, "still there until the agent confirms");
        // The agent's final delete.
        let (code, _) = h.call("DELETE", "/api/v1/namespaces/default/pods/g", Some(json!({"gracePeriodSeconds": 0}))).await;
        assert_eq!(code, 200);
        let (code, _) = h.call("GET", "/api/v1/namespaces/default/pods/g", None).await;
        assert_eq!(code, 404);

        // Finalizers hold an object until removed.
        let cm = json!({"metadata": {"name": "f", "finalizers": ["example.com/hold"]}});
        let (code, _) = h.call("POST", "/api/v1/namespaces/default/configmaps", Some(cm)).await;
        assert_eq!(code, 201);
        let (code, s) = h.call("DELETE", "/api/v1/namespaces/default/configmaps/f", None).await;
        assert_eq!(code, 200);
        assert!(s["metadata"]["deletionTimestamp"].is_string());
        let (code, _, _) = h
            .curl_full("PATCH", "/api/v1/namespaces/default/configmaps/f", Some(("application/merge-patch+json", br#"{"metadata":{"finalizers":null}}"#)), true, &[])
            .await;
        assert_eq!(code, 200);
        let (code, _) = h.call("GET", "/api/v1/namespaces/default/configmaps/f", None).await;
        assert_eq!(code, 404);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reuses_pki_and_data() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start_in(dir).await;
    let (ca, admin, node) = (
        h.server.as_ref().unwrap().ca_pem().to_string(),
        h.token.clone(),
        h.server.as_ref().unwrap().node_token().to_string(),
    );
    let (code, _) = h
        .call(
            "POST",
            "/api/v1/namespaces",
            Some(json!({"metadata": {"name": "keep"}})),
        )
        .await;
    let dir = h.stop().await;
    assert_eq!(code, 201);
    assert!(node.starts_with("SK10") && skiff_apiserver::pki::ca_matches_token(&node, &ca));
    let kubeconfig = std::fs::read_to_string(dir.path().join("server/admin.kubeconfig")).unwrap();
    assert!(kubeconfig.contains(&admin));

    let h = Harness::start_in(dir).await;
    let same = h.server.as_ref().unwrap().ca_pem() == ca && h.token == admin;
    let (code, s) = h.call("GET", "/api/v1/namespaces/keep", None).await;
    h.stop().await;
    assert!(same, "PKI reused");
    assert_eq!(code, 200, "{s}");
    assert_eq!(s["status"]["phase"], "Active");
}

/// Odd and hostile input: every answer is a Status (or a success), never a
/// dropped connection, and the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_never_breaks_the_server() {
    with_server(async |h| {
        let (code, _) = h
            .call("POST", "/api/v1/namespaces/default/pods", Some(pod("odd")))
            .await;
        assert_eq!(code, 201);
        let cases: Vec<(&str, &str, &str, &[u8])> = vec![
            (
                "POST",
                "/api/v1/namespaces/default/pods",
                "application/json",
                b"[1,2]",
            ),
            (
                "POST",
                "/api/v1/namespaces/default/pods",
                "application/json",
                b"42",
            ),
            (
                "POST",
                "/api/v1/namespaces/default/pods",
                "application/json",
                br#"{"metadata":"x","spec":"y"}"#,
            ),
            (
                "POST",
                "/api/v1/namespaces/default/pods",
                "application/json",
                br#"{"metadata":{"name":7,"labels":{"a":1}},"spec":{"containers":"no"}}"#,
            ),
            (
                "POST",
                "/api/v1/namespaces/default/pods",
                "application/json",
                br#"{"kind":"Service","apiVersion":"v1","metadata":{"name":"s"}}"#,
            ),
            (
                "POST",
                "/api/v1/namespaces/default/pods",
                "application/yaml",
                b"a: [unclosed",
            ),
            (
                "POST",
                "/api/v1/namespaces/default/pods",
                "application/vnd.kubernetes.protobuf",
                b"k8s\0\xff\xff\xff",
            ),
            (
                "POST",
                "/api/v1/namespaces/default/pods",
                "text/plain",
                b"hi",
            ),
            (
                "PUT",
                "/api/v1/namespaces/default/pods/odd",
                "application/json",
                br#"{"metadata":{"name":"other"}}"#,
            ),
            (
                "PATCH",
                "/api/v1/namespaces/default/pods/odd",
                "application/merge-patch+json",
                b"[]",
            ),
            (
                "PATCH",
                "/api/v1/namespaces/default/pods/odd",
                "application/json-patch+json",
                br#"[{"op":"replace","path":"","value":[1]}]"#,
            ),
            (
                "PATCH",
                "/api/v1/namespaces/default/pods/odd",
                "application/json-patch+json",
                br#"[{"op":"remove","path":"/metadata"}]"#,
            ),
            (
                "PATCH",
                "/api/v1/namespaces/default/pods/odd",
                "application/strategic-merge-patch+json",
                br#"{"spec":{"containers":[{"$patch":"delete"}]}}"#,
            ),
            (
                "POST",
                "/api/v1/namespaces/default/pods/odd/binding",
                "application/json",
                br#"{"target":{"kind":"Pod"}}"#,
            ),
            (
                "DELETE",
                "/api/v1/namespaces/default/pods/odd",
                "application/json",
                br#"{"gracePeriodSeconds":9223372036854775807}"#,
            ),
            (
                "DELETE",
                "/api/v1/namespaces/default/pods/odd",
                "application/json",
                b"nope",
            ),
            (
                "GET",
                "/api/v1/namespaces/default/pods?labelSelector=%E2%9C%93%3D%3D",
                "application/json",
                b"",
            ),
            (
                "GET",
                "/api/v1/namespaces/default/pods?fieldSelector=%E2%9C%93",
                "application/json",
                b"",
            ),
            (
                "GET",
                "/api/v1/namespaces/default/pods?limit=-5&continue=%%%",
                "application/json",
                b"",
            ),
            (
                "GET",
                "/api/v1/namespaces/default/pods?watch=true&resourceVersion=abc",
                "application/json",
                b"",
            ),
            (
                "GET",
                "/api/v1/namespaces/default/pods/odd/log?tailLines=x",
                "application/json",
                b"",
            ),
            (
                "GET",
                "/api/v1/namespaces/default/pods/%00/status",
                "application/json",
                b"",
            ),
        ];
        for (method, path, ct, body) in cases {
            let (code, text, _) = h.curl_full(method, path, Some((ct, body)), true, &[]).await;
            assert!(
                (200..500).contains(&code),
                "{method} {path} {body:?}: {code} {text}"
            );
            if code >= 400 {
                let s: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text}"));
                assert_eq!(s["kind"], "Status", "{method} {path}: {text}");
            }
        }
        let (code, _) = h.call("GET", "/api/v1/namespaces/default/pods", None).await;
        assert_eq!(code, 200, "still serving");
    })
    .await;
}
