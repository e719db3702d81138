//! The issue's walkthrough with the real kubectl: namespaces, apply with
//! validation on, get -o wide/yaml/json, label selectors, apply again
//! (strategic merge patch), label, delete.

mod common;

use common::with_server;

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: demo
  labels:
    app: web
spec:
  containers:
  - name: app
    image: docker.io/library/busybox:1.36
    command: ["sleep", "3600"]
    ports:
    - containerPort: 8080
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_walkthrough() {
    with_server(async |h| {
        let version = h.kubectl_ok(&["version", "-o", "json"], None).await;
        let v: serde_json::Value = serde_json::from_str(&version).unwrap();
        assert_eq!(v["serverVersion"]["minor"], "32");

        let ns = h.kubectl_ok(&["get", "namespaces"], None).await;
        for want in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            assert!(ns.contains(want), "{ns}");
        }

        h.kubectl_ok(&["create", "namespace", "demo"], None).await;
        let out = h.kubectl_ok(&["apply", "-f", "-"], Some(POD)).await;
        assert!(out.contains("pod/web created"), "{out}");

        let wide = h
            .kubectl_ok(&["get", "pods", "-n", "demo", "-o", "wide"], None)
            .await;
        assert!(wide.contains("web") && wide.contains("Pending"), "{wide}");

        let yaml = h
            .kubectl_ok(&["get", "pod", "web", "-n", "demo", "-o", "yaml"], None)
            .await;
        assert!(
            yaml.contains("image: docker.io/library/busybox:1.36"),
            "{yaml}"
        );
        assert!(
            yaml.contains("uid:") && yaml.contains("resourceVersion:"),
            "{yaml}"
        );

        let json = h
            .kubectl_ok(&["get", "pod", "web", "-n", "demo", "-o", "json"], None)
            .await;
        let pod: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(pod["status"]["phase"], "Pending");
        assert_eq!(pod["metadata"]["generation"], 1);

        let sel = h
            .kubectl_ok(
                &["get", "pods", "-n", "demo", "-l", "app=web", "-o", "name"],
                None,
            )
            .await;
        assert_eq!(sel.trim(), "pod/web");
        let none = h
            .kubectl(&["get", "pods", "-n", "demo", "-l", "app in (db)"], None)
            .await;
        assert!(
            none.ok && none.stderr.contains("No resources found"),
            "{none:?}"
        );
        let all = h.kubectl_ok(&["get", "pods", "-A"], None).await;
        assert!(all.contains("demo") && all.contains("web"), "{all}");

        // Apply again with a changed label: a strategic merge patch.
        let changed = POD.replace("app: web", "app: web\n    tier: fe");
        let out = h.kubectl_ok(&["apply", "-f", "-"], Some(&changed)).await;
        assert!(out.contains("pod/web configured"), "{out}");
        let labels = h
            .kubectl_ok(
                &[
                    "get",
                    "pod",
                    "web",
                    "-n",
                    "demo",
                    "-o",
                    "jsonpath={.metadata.labels}",
                ],
                None,
            )
            .await;
        assert!(labels.contains("\"tier\":\"fe\""), "{labels}");
        let out = h
            .kubectl_ok(&["label", "pod", "web", "-n", "demo", "extra=yes"], None)
            .await;
        assert!(out.contains("labeled"), "{out}");

        // Duplicate create: 409 AlreadyExists, as kubectl prints it.
        let dup = h.kubectl(&["create", "-f", "-"], Some(POD)).await;
        assert!(
            !dup.ok
                && dup.stderr.contains("AlreadyExists")
                && dup.stderr.contains("already exists"),
            "{dup:?}"
        );

        // Missing required field: 422 naming it.
        let bad = POD.replace("  containers:", "  xcontainers:");
        let invalid = h
            .kubectl(
                &["create", "--validate=false", "-f", "-"],
                Some(&bad.replace("name: web", "name: web2")),
            )
            .await;
        assert!(
            !invalid.ok && invalid.stderr.contains("spec.containers"),
            "{invalid:?}"
        );

        let out = h
            .kubectl_ok(&["delete", "pod", "web", "-n", "demo"], None)
            .await;
        assert!(out.contains("pod \"web\" deleted"), "{out}");
        let gone = h.kubectl(&["get", "pod", "web", "-n", "demo"], None).await;
        assert!(!gone.ok && gone.stderr.contains("NotFound"), "{gone:?}");

        // kubectl's typed creates send protobuf bodies.
        let out = h
            .kubectl_ok(
                &[
                    "create",
                    "configmap",
                    "cfg",
                    "-n",
                    "demo",
                    "--from-literal=a=b",
                ],
                None,
            )
            .await;
        assert!(out.contains("configmap/cfg created"), "{out}");
        let out = h
            .kubectl_ok(
                &[
                    "create",
                    "secret",
                    "generic",
                    "sec",
                    "-n",
                    "demo",
                    "--from-literal=k=v",
                ],
                None,
            )
            .await;
        assert!(out.contains("secret/sec created"), "{out}");
        let data = h
            .kubectl_ok(
                &[
                    "get",
                    "secret",
                    "sec",
                    "-n",
                    "demo",
                    "-o",
                    "jsonpath={.data.k}",
                ],
                None,
            )
            .await;
        assert_eq!(data, "dg==");
        let out = h
            .kubectl_ok(&["create", "serviceaccount", "robot", "-n", "demo"], None)
            .await;
        assert!(out.contains("serviceaccount/robot created"), "{out}");

        // Deleting the namespace marks it Terminating; without the
        // namespace controller (not run here) its contents stay.
        let out = h
            .kubectl_ok(&["delete", "namespace", "demo", "--wait=false"], None)
            .await;
        assert!(out.contains("namespace \"demo\" deleted"), "{out}");
        let phase = h
            .kubectl_ok(
                &["get", "ns", "demo", "-o", "jsonpath={.status.phase}"],
                None,
            )
            .await;
        assert_eq!(phase, "Terminating");

        // Unknown resource type.
        let unknown = h.kubectl(&["get", "widgets"], None).await;
        assert!(!unknown.ok, "{unknown:?}");
    })
    .await;
}
