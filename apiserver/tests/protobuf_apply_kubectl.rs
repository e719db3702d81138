//! The real kubectl against a real Skiff API server for the verbs that
//! send protobuf bodies (`kubectl create <kind>`, `expose`, `autoscale`)
//! and for server-side apply (`kubectl apply --server-side`).

mod common;

use common::{with_server, Harness};
use serde_json::Value;

async fn get_json(h: &Harness, args: &[&str]) -> Value {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json", "--show-managed-fields"]);
    serde_json::from_str(&h.kubectl_ok(&a, None).await).unwrap()
}

/// Each `kubectl create <kind>` (protobuf) in namespace `pb` gives the
/// same object as `kubectl create --dry-run=client -o json | kubectl
/// apply -f -` (JSON) in namespace `js`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_verbs_send_protobuf() {
    with_server(async |h: &Harness| {
        h.kubectl_ok(&["create", "namespace", "pb"], None).await;
        h.kubectl_ok(&["create", "namespace", "js"], None).await;
        let creates: &[(&str, &[&str])] = &[
            (
                "deployment/web",
                &[
                    "create",
                    "deployment",
                    "web",
                    "--image=busybox:1",
                    "--port=80",
                    "--replicas=0",
                ],
            ),
            (
                "job/pi",
                &[
                    "create",
                    "job",
                    "pi",
                    "--image=busybox:1",
                    "--",
                    "echo",
                    "3",
                ],
            ),
            (
                "cronjob/tick",
                &[
                    "create",
                    "cronjob",
                    "tick",
                    "--image=busybox:1",
                    "--schedule=*/5 * * * *",
                ],
            ),
            (
                "service/db",
                &["create", "service", "clusterip", "db", "--tcp=5432:5432"],
            ),
            (
                "resourcequota/q",
                &[
                    "create",
                    "quota",
                    "q",
                    "--hard=pods=10,requests.cpu=2,requests.memory=1Gi",
                ],
            ),
            (
                "role/reader",
                &[
                    "create",
                    "role",
                    "reader",
                    "--verb=get,list",
                    "--resource=pods",
                ],
            ),
            (
                "rolebinding/rb",
                &[
                    "create",
                    "rolebinding",
                    "rb",
                    "--role=reader",
                    "--user=alice",
                ],
            ),
            (
                "serviceaccount/robot",
                &["create", "serviceaccount", "robot"],
            ),
        ];
        for (obj, args) in creates {
            let mut pb: Vec<&str> = vec!["-n", "pb"];
            pb.extend_from_slice(args);
            h.kubectl_ok(&pb, None).await;
            let mut dry: Vec<&str> = vec!["-n", "js", "--dry-run=client", "-o", "json"];
            dry.extend_from_slice(args);
            let json = h.kubectl_ok(&dry, None).await;
            h.kubectl_ok(&["apply", "-n", "js", "-f", "-"], Some(&json))
                .await;
            let a = get_json(h, &[obj, "-n", "pb"]).await;
            let b = get_json(h, &[obj, "-n", "js"]).await;
            // Generated uids (a Job's selector) are the only difference.
            let uid = |v: &Value| v["metadata"]["uid"].as_str().unwrap_or("").to_string();
            let a: Value =
                serde_json::from_str(&a.to_string().replace(&uid(&a), &uid(&b))).unwrap();
            for part in ["spec", "data", "rules", "roleRef", "subjects"] {
                if part == "spec" && obj.starts_with("service/") {
                    // clusterIP allocation may differ between the two.
                    let strip = |v: &Value| {
                        let mut s = v["spec"].clone();
                        if let Some(o) = s.as_object_mut() {
                            o.remove("clusterIP");
                            o.remove("clusterIPs");
                        }
                        s
                    };
                    assert_eq!(strip(&a), strip(&b), "{obj} spec");
                    continue;
                }
                assert_eq!(a[part], b[part], "{obj} {part}");
            }
            assert_eq!(a["metadata"]["labels"], b["metadata"]["labels"], "{obj}");
        }
        // The deployment kept its explicit zero replicas (a Go pointer).
        let d = get_json(h, &["deployment/web", "-n", "pb"]).await;
        assert_eq!(d["spec"]["replicas"], 0);
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
            80
        );
        // The creator owns its fields.
        assert_eq!(
            d["metadata"]["managedFields"][0]["manager"],
            "kubectl-create"
        );

        // Cluster-scoped: priorityclass.
        h.kubectl_ok(
            &[
                "create",
                "priorityclass",
                "high",
                "--value=1000",
                "--description=important",
            ],
            None,
        )
        .await;
        let pc = get_json(h, &["priorityclass/high"]).await;
        assert_eq!(pc["value"], 1000);
        assert_eq!(pc["description"], "important");

        // expose and autoscale read the deployment and POST protobuf.
        h.kubectl_ok(
            &[
                "expose",
                "deployment",
                "web",
                "-n",
                "pb",
                "--port=8080",
                "--target-port=80",
            ],
            None,
        )
        .await;
        let svc = get_json(h, &["service/web", "-n", "pb"]).await;
        assert_eq!(svc["spec"]["ports"][0]["port"], 8080);
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(svc["spec"]["selector"]["app"], "web");
        h.kubectl_ok(
            &[
                "autoscale",
                "deployment",
                "web",
                "-n",
                "pb",
                "--min=1",
                "--max=4",
                "--cpu-percent=70",
            ],
            None,
        )
        .await;
        let hpa = get_json(h, &["hpa/web", "-n", "pb"]).await;
        assert_eq!(hpa["spec"]["maxReplicas"], 4);
        assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "web");
    })
    .await;
}

const DEPLOY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: busybox:1
        ports: [{containerPort: 80}]
        env: [{name: A, value: "1"}, {name: B, value: "2"}]
"#;

/// `kubectl apply --server-side`: create, re-apply that removes a field,
/// a conflict with another manager, `--force-conflicts`, and the other
/// kinds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_server_side_apply() {
    with_server(async |h: &Harness| {
        let out = h
            .kubectl_ok(&["apply", "--server-side", "-f", "-"], Some(DEPLOY))
            .await;
        assert!(out.contains("serverside-applied"), "{out}");
        let d = get_json(h, &["deployment/web"]).await;
        let mf = &d["metadata"]["managedFields"][0];
        assert_eq!(mf["manager"], "kubectl");
        assert_eq!(mf["operation"], "Apply");
        assert_eq!(d["spec"]["replicas"], 2);

        // Re-apply without env B and replicas: both go.
        let fewer = DEPLOY
            .replace(", {name: B, value: \"2\"}", "")
            .replace("  replicas: 2\n", "");
        h.kubectl_ok(&["apply", "--server-side", "-f", "-"], Some(&fewer))
            .await;
        let d = get_json(h, &["deployment/web"]).await;
        let env = &d["spec"]["template"]["spec"]["containers"][0]["env"];
        assert_eq!(env.as_array().unwrap().len(), 1, "{env}");
        // replicas is defaulted again (to 1) once nobody owns it.
        assert_eq!(d["spec"]["replicas"], 1);

        // Another manager changing the image conflicts.
        let other = fewer.replace("busybox:1", "busybox:2");
        let out = h
            .kubectl(
                &["apply", "--server-side", "--field-manager=alice", "-f", "-"],
                Some(&other),
            )
            .await;
        assert!(!out.ok);
        assert!(
            out.stderr.contains("conflict with \"kubectl\"")
                && out
                    .stderr
                    .contains(".spec.template.spec.containers[name=\"web\"].image"),
            "{}",
            out.stderr
        );
        h.kubectl_ok(
            &[
                "apply",
                "--server-side",
                "--field-manager=alice",
                "--force-conflicts",
                "-f",
                "-",
            ],
            Some(&other),
        )
        .await;
        let d = get_json(h, &["deployment/web"]).await;
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            "busybox:2"
        );

        // ConfigMap, Service and Pod.
        let others = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {a: "1", b: "2"}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers: [{name: c, image: "busybox:1"}]
"#;
        h.kubectl_ok(&["apply", "--server-side", "-f", "-"], Some(others))
            .await;
        let fewer = others.replace(", b: \"2\"", "");
        h.kubectl_ok(&["apply", "--server-side", "-f", "-"], Some(&fewer))
            .await;
        let cm = get_json(h, &["configmap/cfg"]).await;
        assert_eq!(cm["data"], serde_json::json!({"a": "1"}));
        let svc = get_json(h, &["service/web"]).await;
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
        let pod = get_json(h, &["pod/p"]).await;
        assert_eq!(pod["spec"]["containers"][0]["image"], "busybox:1");
    })
    .await;
}
