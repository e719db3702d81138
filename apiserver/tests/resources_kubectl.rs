//! The real kubectl against a real Skiff API server for every resource the
//! server serves: discovery (`kubectl api-resources`), apply and get with
//! Kubernetes' columns, the scale subresource (`kubectl scale`),
//! `kubectl autoscale` through autoscaling/v1 over v2 storage, generation
//! bumps, validation messages, eviction and `kubectl explain`.

mod common;

use common::{with_server, Harness};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

const WORKLOADS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: httpd, image: "busybox:1"}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: pi}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: pi, image: "busybox:1", command: [sh, -c, "echo 3.14"]}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "*/5 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: tick, image: "busybox:1"}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: "busybox:1"}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      nodeSelector: {kubernetes.io/os: linux}
      containers: [{name: agent, image: "busybox:1"}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: high}
value: 1000
description: important
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader}
rules: [{apiGroups: [""], resources: [pods], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: read-pods}
subjects: [{kind: User, name: jane}]
roleRef: {kind: Role, name: reader, apiGroup: rbac.authorization.k8s.io}
"#;

/// The header line of `kubectl get` output, words separated by one space.
fn header(out: &str) -> String {
    out.lines()
        .next()
        .unwrap_or("")
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

async fn json_of(h: &Harness, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&h.kubectl_ok(&all, None).await).expect("kubectl printed JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_resources_lists_every_served_resource() {
    with_server(async |h| {
        let out = h.kubectl_ok(&["api-resources"], None).await;
        for (name, short, version) in [
            ("namespaces", "ns", "v1"),
            ("nodes", "no", "v1"),
            ("pods", "po", "v1"),
            ("services", "svc", "v1"),
            ("endpoints", "ep", "v1"),
            ("configmaps", "cm", "v1"),
            ("secrets", "", "v1"),
            ("serviceaccounts", "sa", "v1"),
            ("events", "ev", "v1"),
            ("resourcequotas", "quota", "v1"),
            ("limitranges", "limits", "v1"),
            ("persistentvolumes", "pv", "v1"),
            ("persistentvolumeclaims", "pvc", "v1"),
            ("deployments", "deploy", "apps/v1"),
            ("replicasets", "rs", "apps/v1"),
            ("statefulsets", "sts", "apps/v1"),
            ("daemonsets", "ds", "apps/v1"),
            ("controllerrevisions", "", "apps/v1"),
            ("jobs", "", "batch/v1"),
            ("cronjobs", "cj", "batch/v1"),
            ("horizontalpodautoscalers", "hpa", "autoscaling/v2"),
            ("poddisruptionbudgets", "pdb", "policy/v1"),
            ("leases", "", "coordination.k8s.io/v1"),
            ("endpointslices", "", "discovery.k8s.io/v1"),
            ("events", "ev", "events.k8s.io/v1"),
            ("priorityclasses", "pc", "scheduling.k8s.io/v1"),
            ("roles", "", "rbac.authorization.k8s.io/v1"),
            ("rolebindings", "", "rbac.authorization.k8s.io/v1"),
            ("clusterroles", "", "rbac.authorization.k8s.io/v1"),
            ("clusterrolebindings", "", "rbac.authorization.k8s.io/v1"),
        ] {
            let found = out.lines().any(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                words.first() == Some(&name)
                    && words.contains(&version)
                    && (short.is_empty() || words.get(1) == Some(&short))
            });
            assert!(found, "{name} ({short}, {version}) missing:\n{out}");
        }
        // Both HPA versions are served; v2 is preferred.
        let (code, v1) = h.call("GET", "/apis/autoscaling/v1", None).await;
        assert_eq!(code, 200, "{v1}");
        let (_, group) = h.call("GET", "/apis/autoscaling", None).await;
        assert_eq!(group["preferredVersion"]["version"], "v2");
        // The `all` category.
        let all = h
            .kubectl_ok(&["api-resources", "--categories=all", "-o", "name"], None)
            .await;
        for r in [
            "pods",
            "services",
            "deployments.apps",
            "replicasets.apps",
            "statefulsets.apps",
            "daemonsets.apps",
            "jobs.batch",
            "cronjobs.batch",
            "horizontalpodautoscalers.autoscaling",
        ] {
            assert!(all.lines().any(|l| l == r), "{r} not in `all`:\n{all}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_and_get_every_kind_with_kubernetes_columns() {
    with_server(async |h| {
        let out = h.kubectl_ok(&["apply", "-f", "-"], Some(WORKLOADS)).await;
        assert!(out.contains("deployment.apps/web created"), "{out}");
        assert!(out.contains("rolebinding.rbac.authorization.k8s.io/read-pods created"), "{out}");

        for (what, want) in [
            ("deploy", "NAME READY UP-TO-DATE AVAILABLE AGE"),
            ("svc", "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE"),
            ("jobs", "NAME STATUS COMPLETIONS DURATION AGE"),
            ("cj", "NAME SCHEDULE TIMEZONE SUSPEND ACTIVE LAST SCHEDULE AGE"),
            ("sts", "NAME READY AGE"),
            ("ds", "NAME DESIRED CURRENT READY UP-TO-DATE AVAILABLE NODE SELECTOR AGE"),
            ("pdb", "NAME MIN AVAILABLE MAX UNAVAILABLE ALLOWED DISRUPTIONS AGE"),
            ("pc", "NAME VALUE GLOBAL-DEFAULT AGE PREEMPTIONPOLICY"),
            ("roles", "NAME CREATED AT"),
            ("rolebindings", "NAME ROLE AGE"),
        ] {
            let out = h.kubectl_ok(&["get", what], None).await;
            assert_eq!(header(&out), want, "kubectl get {what}:\n{out}");
        }
        let wide = h.kubectl_ok(&["get", "deploy", "-o", "wide"], None).await;
        assert_eq!(
            header(&wide),
            "NAME READY UP-TO-DATE AVAILABLE AGE CONTAINERS IMAGES SELECTOR"
        );
        assert!(wide.contains("busybox:1") && wide.contains("app=web"), "{wide}");
        let svc = h.kubectl_ok(&["get", "svc", "web"], None).await;
        assert!(svc.contains("ClusterIP") && svc.contains("80/TCP"), "{svc}");
        let jobs = h.kubectl_ok(&["get", "job", "pi"], None).await;
        assert!(jobs.contains("Running") && jobs.contains("0/1"), "{jobs}");
        let cj = h.kubectl_ok(&["get", "cj", "tick"], None).await;
        assert!(cj.contains("*/5 * * * *") && cj.contains("False"), "{cj}");
        let ds = h.kubectl_ok(&["get", "ds", "agent"], None).await;
        assert!(ds.contains("kubernetes.io/os=linux"), "{ds}");
        let rb = h.kubectl_ok(&["get", "rolebinding", "read-pods", "-o", "wide"], None).await;
        assert!(rb.contains("Role/reader") && rb.contains("jane"), "{rb}");

        // `kubectl get all` walks the `all` category.
        let all = h.kubectl_ok(&["get", "all"], None).await;
        for name in ["service/web", "deployment.apps/web", "statefulset.apps/db", "job.batch/pi", "cronjob.batch/tick", "daemonset.apps/agent"] {
            assert!(all.contains(name), "{name} missing from get all:\n{all}");
        }

        // Storage: a cluster-scoped volume and a namespaced claim.
        let storage = r#"
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv1}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  hostPath: {path: /tmp/pv1}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
"#;
        h.kubectl_ok(&["apply", "-f", "-"], Some(storage)).await;
        let pv = h.kubectl_ok(&["get", "pv"], None).await;
        assert_eq!(
            header(&pv),
            "NAME CAPACITY ACCESS MODES RECLAIM POLICY STATUS CLAIM STORAGECLASS VOLUMEATTRIBUTESCLASS REASON AGE"
        );
        assert!(pv.contains("1Gi") && pv.contains("RWO") && pv.contains("Retain") && pv.contains("Pending"), "{pv}");
        let pvc = h.kubectl_ok(&["get", "pvc"], None).await;
        assert!(pvc.contains("data") && pvc.contains("Pending"), "{pvc}");

        // Kubernetes' defaults.
        let d = json_of(h, &["get", "deploy", "web"]).await;
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        );
        let s = json_of(h, &["get", "svc", "web"]).await;
        assert_eq!(s["spec"]["type"], "ClusterIP");
        assert_eq!(s["spec"]["sessionAffinity"], "None");
        assert_eq!(s["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        let j = json_of(h, &["get", "job", "pi"]).await;
        assert_eq!(j["spec"]["backoffLimit"], 6);
        assert_eq!(j["spec"]["completionMode"], "NonIndexed");
        let uid = j["metadata"]["uid"].as_str().unwrap();
        assert_eq!(
            j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
            uid
        );
        let c = json_of(h, &["get", "cj", "tick"]).await;
        assert_eq!(c["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(c["spec"]["successfulJobsHistoryLimit"], 3);
        assert_eq!(c["spec"]["failedJobsHistoryLimit"], 1);
        let st = json_of(h, &["get", "sts", "db"]).await;
        assert_eq!(st["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(st["spec"]["updateStrategy"]["rollingUpdate"]["partition"], 0);
        let pc = json_of(h, &["get", "pc", "high"]).await;
        assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority");

        // HorizontalPodAutoscaler in autoscaling/v1 (what `kubectl
        // autoscale` 1.32 creates), stored as v2. (`kubectl autoscale`
        // itself sends protobuf, which Skiff does not decode for HPAs yet.)
        let hpa_v1 = r#"
apiVersion: autoscaling/v1
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 3
  targetCPUUtilizationPercentage: 50
"#;
        h.kubectl_ok(&["apply", "-f", "-"], Some(hpa_v1)).await;
        // A v1 patch applies to the v1 form.
        h.kubectl_ok(
            &["patch", "hpa.v1.autoscaling", "web", "--type=merge", "-p", r#"{"spec":{"maxReplicas":4}}"#],
            None,
        )
        .await;
        let hpa = h.kubectl_ok(&["get", "hpa"], None).await;
        assert_eq!(
            header(&hpa),
            "NAME REFERENCE TARGETS MINPODS MAXPODS REPLICAS AGE"
        );
        assert!(hpa.contains("Deployment/web") && hpa.contains("cpu: <unknown>/50%"), "{hpa}");
        let (_, v2) = h
            .call("GET", "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/web", None)
            .await;
        assert_eq!(v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 50);
        let (_, v1) = h
            .call("GET", "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/web", None)
            .await;
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
        assert_eq!(v1["spec"]["maxReplicas"], 4);
        assert!(v1["spec"].get("metrics").is_none(), "{v1}");
        // A v1 watch sees v1 objects.
        let mut watch = h.curl_stream(
            "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers?watch=1&resourceVersion=0",
        );
        let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("an event in time")
            .unwrap()
            .expect("the stream is open");
        let _ = watch.start_kill();
        let _ = watch.wait().await;
        let event: Value = serde_json::from_str(&first).unwrap();
        assert_eq!(event["type"], "ADDED", "{event}");
        assert_eq!(event["object"]["apiVersion"], "autoscaling/v1", "{event}");
        assert_eq!(event["object"]["spec"]["targetCPUUtilizationPercentage"], 50);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_generation_validation_eviction_and_explain() {
    with_server(async |h| {
        h.kubectl_ok(&["apply", "-f", "-"], Some(WORKLOADS)).await;

        // kubectl scale goes through deployments/scale.
        let out = h.kubectl_ok(&["scale", "deploy", "web", "--replicas=3"], None).await;
        assert!(out.contains("deployment.apps/web scaled"), "{out}");
        let replicas = h
            .kubectl_ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"], None)
            .await;
        assert_eq!(replicas, "3");
        let (code, scale) = h
            .call("GET", "/apis/apps/v1/namespaces/default/deployments/web/scale", None)
            .await;
        assert_eq!(code, 200, "{scale}");
        assert_eq!(scale["kind"], "Scale");
        assert_eq!(scale["apiVersion"], "autoscaling/v1");
        assert_eq!(scale["spec"]["replicas"], 3);
        assert_eq!(scale["status"]["selector"], "app=web");
        // A stale resourceVersion is a conflict.
        let mut stale = scale.clone();
        stale["metadata"]["resourceVersion"] = json!("1");
        stale["spec"]["replicas"] = json!(5);
        let (code, _) = h
            .call("PUT", "/apis/apps/v1/namespaces/default/deployments/web/scale", Some(stale))
            .await;
        assert_eq!(code, 409);
        h.kubectl_ok(&["scale", "sts", "db", "--replicas=0"], None).await;
        let sts = h
            .kubectl_ok(&["get", "sts", "db", "-o", "jsonpath={.spec.replicas}"], None)
            .await;
        assert_eq!(sts, "0");

        // generation: 1 at create, +1 for the scale (a spec change), not
        // for a label or a status write.
        let generation = async |h: &Harness| {
            h.kubectl_ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata.generation}"], None)
                .await
        };
        assert_eq!(generation(h).await, "2");
        h.kubectl_ok(&["label", "deploy", "web", "tier=front"], None).await;
        assert_eq!(generation(h).await, "2");
        let status_patch = h
            .curl_full(
                "PATCH",
                "/apis/apps/v1/namespaces/default/deployments/web/status",
                Some(("application/merge-patch+json", br#"{"status":{"replicas":3}}"#)),
                true,
                &[],
            )
            .await;
        assert_eq!(status_patch.0, 200, "{}", status_patch.1);
        assert_eq!(generation(h).await, "2");
        // Re-applying the manifest, or replacing with it (defaults left
        // out), changes no spec field.
        h.kubectl_ok(&["apply", "-f", "-"], Some(WORKLOADS)).await;
        assert_eq!(generation(h).await, "2");
        let deployment = WORKLOADS.split("---").next().unwrap();
        let replace = deployment.replace("spec:\n  selector", "spec:\n  replicas: 3\n  selector");
        h.kubectl_ok(&["replace", "-f", "-"], Some(&replace)).await;
        assert_eq!(generation(h).await, "2");
        h.kubectl_ok(&["set", "image", "deploy/web", "httpd=busybox:2"], None).await;
        assert_eq!(generation(h).await, "3");

        // Validation in Kubernetes' words.
        let bad = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: bad}
spec:
  replicas: -1
  selector: {matchLabels: {app: one}}
  template:
    metadata: {labels: {app: two}}
    spec: {containers: [{name: c, image: busybox}]}
"#;
        let out = h.kubectl(&["apply", "-f", "-"], Some(bad)).await;
        assert!(!out.ok);
        assert!(
            out.stderr.contains(
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"two\"}: `selector` does not match template `labels`"
            ),
            "{}",
            out.stderr
        );
        assert!(
            out.stderr.contains("spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
            "{}",
            out.stderr
        );
        let no_ports = "apiVersion: v1\nkind: Service\nmetadata: {name: empty}\nspec: {selector: {a: b}}\n";
        let out = h.kubectl(&["apply", "-f", "-"], Some(no_ports)).await;
        assert!(out.stderr.contains("spec.ports: Required value"), "{}", out.stderr);

        // Eviction deletes the (unbound) pod at once.
        let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: victim}\nspec: {containers: [{name: c, image: busybox}]}\n";
        h.kubectl_ok(&["apply", "-f", "-"], Some(pod)).await;
        let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "victim", "namespace": "default"}});
        let (code, status) = h
            .call("POST", "/api/v1/namespaces/default/pods/victim/eviction", Some(eviction))
            .await;
        assert_eq!(code, 201, "{status}");
        assert_eq!(status["status"], "Success");
        let (code, _) = h.call("GET", "/api/v1/namespaces/default/pods/victim", None).await;
        assert_eq!(code, 404);

        // kubectl explain renders from the apps/v1 OpenAPI document.
        let explain = h.kubectl_ok(&["explain", "deployment.spec.strategy"], None).await;
        assert!(explain.contains("rollingUpdate"), "{explain}");
        assert!(explain.contains("KIND:") && explain.contains("Deployment"), "{explain}");
    })
    .await;
}
