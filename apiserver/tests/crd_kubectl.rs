//! CustomResourceDefinitions end to end with the real kubectl against a
//! real Skiff API server: apply a CRD, wait for Established, then
//! create/get/patch/scale/watch/delete custom objects, 422 causes from the
//! schema, `kubectl explain`, printer columns, a second server over the
//! same store serving the CRD, and CRD deletion removing the objects.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{with_server, Harness};
use serde_json::{json, Value};
use skiff_apiserver::{ApiServer, ApiServerConfig};
use skiff_store::{prefix_end, Kv, RangeRequest};
use tokio::io::{AsyncBufReadExt, BufReader};

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names: {plural: crontabs, singular: crontab, kind: CronTab, shortNames: [ct]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas, labelSelectorPath: .status.selector}
    additionalPrinterColumns:
    - {name: Spec, type: string, jsonPath: .spec.cronSpec}
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [cronSpec]
            properties:
              cronSpec: {type: string, pattern: '^(\S+ ){4}\S+$', description: The schedule in cron format.}
              image: {type: string, default: "busybox:1"}
              replicas: {type: integer, minimum: 0, default: 1}
          status:
            type: object
            properties:
              replicas: {type: integer}
              selector: {type: string}
"#;

const CR: &str = r#"
apiVersion: stable.example.com/v1
kind: CronTab
metadata: {name: cron1, labels: {app: cron}}
spec: {cronSpec: "* * * * */5"}
"#;

const CRD_PATH: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
const CRONTABS: &str = "/apis/stable.example.com/v1/namespaces/default/crontabs";

/// Polls `check` until it is true (generous deadline; returns the time taken).
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if check().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within 30 s");
}

async fn stored_crontabs(h: &Harness) -> usize {
    let key = b"/registry/stable.example.com/crontabs/".to_vec();
    h.store
        .range(RangeRequest {
            range_end: prefix_end(&key),
            key,
            count_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .count as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_lifecycle_with_kubectl() {
    if no_kubectl() {
        return;
    }
    with_server(async |h| {
        // kubectl's discovery cache is warm before the CRD exists: it must
        // still find the new resource without a restart.
        h.kubectl_ok(&["api-resources"], None).await;

        let out = h.kubectl_ok(&["apply", "-f", "-"], Some(CRD)).await;
        assert!(out.contains("created"), "{out}");
        h.kubectl_ok(
            &["wait", "--for", "condition=Established", "crd/crontabs.stable.example.com", "--timeout=30s"],
            None,
        )
        .await;
        let crd = h.kubectl_ok(&["get", "crd", "crontabs.stable.example.com", "-o", "json"], None).await;
        let crd: Value = serde_json::from_str(&crd).unwrap();
        assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
        assert_eq!(crd["status"]["acceptedNames"]["kind"], "CronTab");

        let api = h.kubectl_ok(&["api-resources", "--api-group=stable.example.com"], None).await;
        assert!(api.contains("crontabs") && api.contains("ct") && api.contains("CronTab"), "{api}");

        // kubectl get -w, started before the object exists, sees it appear.
        let mut watch = kubectl_stream(h, &["get", "crontabs", "-w"]);
        let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();

        // kubectl apply sends fieldValidation=Strict (it found the
        // parameter in the OpenAPI document): an unknown field is refused.
        let bogus = CR.replace("spec: {", "spec: {bogus: 1, ");
        let out = h.kubectl(&["apply", "-f", "-"], Some(&bogus)).await;
        assert!(!out.ok && out.stderr.contains(r#"unknown field "spec.bogus""#), "{out:?}");
        h.kubectl_ok(&["apply", "-f", "-"], Some(CR)).await;

        let seen = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(l)) = lines.next_line().await {
                if l.contains("cron1") {
                    return l;
                }
            }
            String::new()
        })
        .await
        .expect("kubectl get -w printed the new object");
        assert!(seen.contains("* * * * */5"), "{seen}");
        let _ = watch.start_kill();

        // Defaults from the schema; printer columns.
        let obj: Value = serde_json::from_str(&h.kubectl_ok(&["get", "ct", "cron1", "-o", "json"], None).await).unwrap();
        assert_eq!(obj["spec"]["replicas"], 1);
        assert_eq!(obj["spec"]["image"], "busybox:1");
        assert_eq!(obj["metadata"]["generation"], 1);
        let table = h.kubectl_ok(&["get", "crontabs"], None).await;
        let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(header, vec!["NAME", "SPEC", "REPLICAS", "AGE"], "{table}");
        assert!(table.contains("cron1") && table.contains("* * * * */5"), "{table}");

        // Selectors.
        assert!(h.kubectl_ok(&["get", "ct", "-l", "app=cron", "-o", "name"], None).await.contains("cron1"));
        assert!(!h.kubectl_ok(&["get", "ct", "-l", "app=other", "-o", "name"], None).await.contains("cron1"));
        assert!(h.kubectl_ok(&["get", "ct", "--field-selector", "metadata.name=cron1", "-o", "name"], None).await.contains("cron1"));

        // Merge patch bumps the generation; strategic merge is 415.
        h.kubectl_ok(&["patch", "ct", "cron1", "--type", "merge", "-p", r#"{"spec":{"image":"busybox:2"}}"#], None).await;
        let out = h.kubectl(&["patch", "ct", "cron1", "--type", "strategic", "-p", r#"{"spec":{"image":"x"}}"#], None).await;
        assert!(!out.ok && out.stderr.contains("unknown format"), "{out:?}");

        // The status subresource: only status changes there, and the main
        // resource ignores status; neither bumps the generation.
        h.kubectl_ok(&["patch", "ct", "cron1", "--subresource", "status", "--type", "merge",
            "-p", r#"{"status":{"replicas":2,"selector":"app=cron"},"spec":{"image":"ignored"}}"#], None).await;
        h.kubectl_ok(&["patch", "ct", "cron1", "--type", "merge", "-p", r#"{"status":{"replicas":9}}"#], None).await;
        let obj: Value = serde_json::from_str(&h.kubectl_ok(&["get", "ct", "cron1", "-o", "json"], None).await).unwrap();
        assert_eq!(obj["status"]["replicas"], 2, "{obj}");
        assert_eq!(obj["spec"]["image"], "busybox:2", "{obj}");
        assert_eq!(obj["metadata"]["generation"], 2, "{obj}");

        // The scale subresource by the CRD's paths.
        h.kubectl_ok(&["scale", "ct", "cron1", "--replicas=3"], None).await;
        let (code, scale) = h.call("GET", &format!("{CRONTABS}/cron1/scale"), None).await;
        assert_eq!(code, 200, "{scale}");
        assert_eq!(scale["spec"]["replicas"], 3);
        assert_eq!(scale["status"]["replicas"], 2);
        assert_eq!(scale["status"]["selector"], "app=cron");

        // Schema violations: 422 with one cause per field, as kube-apiserver.
        let bad = json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab",
            "metadata": {"name": "bad"}, "spec": {"cronSpec": "nope", "replicas": "three"}});
        let (code, status) = h.call("POST", CRONTABS, Some(bad)).await;
        assert_eq!(code, 422, "{status}");
        let causes = status["details"]["causes"].as_array().unwrap();
        let fields: Vec<&str> = causes.iter().filter_map(|c| c["field"].as_str()).collect();
        assert_eq!(fields, vec!["spec.cronSpec", "spec.replicas"], "{status}");
        assert!(status["message"].as_str().unwrap().contains(
            r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#), "{status}");
        let out = h.kubectl(&["apply", "-f", "-"], Some(&CR.replace("cron1", "cron2").replace("* * * * */5", "never"))).await;
        assert!(!out.ok && out.stderr.contains("spec.cronSpec in body should match"), "{out:?}");

        // A bad CRD: 422 naming the field.
        let (code, status) = h.call("POST", CRD_PATH, Some(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "wrong.stable.example.com"},
            "spec": {"group": "stable.example.com", "scope": "Namespaced",
                "names": {"plural": "things", "kind": "Thing"},
                "versions": [{"name": "v1", "served": true, "storage": true}]}}))).await;
        assert_eq!(code, 422, "{status}");
        let fields: Vec<&str> = status["details"]["causes"].as_array().unwrap().iter().filter_map(|c| c["field"].as_str()).collect();
        assert!(fields.contains(&"metadata.name") && fields.contains(&"spec.versions[0].schema.openAPIV3Schema"), "{status}");
        let (code, status) = h.call("POST", CRD_PATH, Some(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "things.stable.example.com"},
            "spec": {"group": "stable.example.com", "scope": "Namespaced", "names": {"kind": "Thing"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object"}}}]}}))).await;
        assert_eq!(code, 422, "{status}");
        assert_eq!(status["details"]["causes"][0]["field"], "spec.names.plural", "{status}");

        // kubectl explain renders the CRD's schema.
        let explain = h.kubectl_ok(&["explain", "crontabs.spec"], None).await;
        assert!(explain.contains("cronSpec") && explain.contains("The schedule in cron format"), "{explain}");

        // Delete one object, then the CRD: its objects go with it and the
        // resource is no longer served.
        h.kubectl_ok(&["delete", "ct", "cron1"], None).await;
        h.kubectl_ok(&["apply", "-f", "-"], Some(&CR.replace("cron1", "cron3"))).await;
        assert_eq!(stored_crontabs(h).await, 1);
        h.kubectl_ok(&["delete", "crd", "crontabs.stable.example.com"], None).await;
        let took = eventually("custom objects deleted with their CRD", async || stored_crontabs(h).await == 0).await;
        eprintln!("custom objects gone {took:?} after the CRD delete returned");
        let (code, _) = h.call("GET", CRONTABS, None).await;
        assert_eq!(code, 404);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crd_created_through_one_server_is_served_by_another() {
    with_server(async |h| {
        // A second server over the same store.
        let dir = tempfile::tempdir().unwrap();
        let mut config = ApiServerConfig::new(dir.path().join("server"));
        config.listen = "127.0.0.1:0".parse().unwrap();
        let other = ApiServer::start(config, Arc::new(h.store.clone()))
            .await
            .unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, other.ca_pem()).unwrap();
        let call_other = async |method: &str, path: &str, body: Option<Value>| -> (u16, Value) {
            let mut cmd = tokio::process::Command::new("curl");
            cmd.args(["-sS", "-w", "\n%{http_code}", "--cacert"])
                .arg(&ca)
                .args([
                    "-X",
                    method,
                    "-H",
                    &format!("Authorization: Bearer {}", other.admin_token()),
                ]);
            if let Some(b) = &body {
                cmd.args([
                    "-H",
                    "Content-Type: application/json",
                    "--data-binary",
                    &b.to_string(),
                ]);
            }
            let out = cmd
                .arg(format!("{}{path}", other.url()))
                .output()
                .await
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
            (
                code.trim().parse().unwrap_or(0),
                serde_json::from_str(body).unwrap_or(Value::Null),
            )
        };

        let crd: Value = serde_yaml::from_str(CRD).unwrap();
        let (code, body) = h.call("POST", CRD_PATH, Some(crd)).await;
        assert_eq!(code, 201, "{body}");
        let created = Instant::now();
        // At once, with no wait: the other server reads the CRD on a miss.
        let cr: Value = serde_yaml::from_str(CR).unwrap();
        let (code, body) = call_other("POST", CRONTABS, Some(cr)).await;
        assert_eq!(code, 201, "{body}");
        assert_eq!(
            body["spec"]["replicas"], 1,
            "defaulted by the other server: {body}"
        );
        let (code, list) = h.call("GET", CRONTABS, None).await;
        assert_eq!(code, 200, "{list}");
        assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
        // Discovery on the other server follows its watch.
        eventually("the other server's discovery lists the group", async || {
            let (_, groups) = call_other("GET", "/apis", None).await;
            groups["groups"]
                .as_array()
                .is_some_and(|g| g.iter().any(|g| g["name"] == "stable.example.com"))
        })
        .await;
        eprintln!(
            "other server: CR created and group discovered {:?} after the CRD's 201",
            created.elapsed()
        );
        // Deleting the CRD through the first stops the second serving it.
        let (code, _) = h
            .call(
                "DELETE",
                &format!("{CRD_PATH}/crontabs.stable.example.com"),
                None,
            )
            .await;
        assert_eq!(code, 200);
        eventually("the other server stops serving", async || {
            call_other("GET", CRONTABS, None).await.0 == 404
        })
        .await;
        other.shutdown().await;
    })
    .await;
}

/// The watch cache over a real store: a custom resource's prefix is
/// loaded when asked for (objects written before included) and then
/// followed, so lists come from memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_cache_loads_a_custom_resource_prefix_on_demand() {
    use skiff_apiserver::watchcache::{WatchCache, WatchCacheConfig};
    use skiff_store::PutRequest;
    let dir = tempfile::tempdir().unwrap();
    let store = skiff_store::Store::open(skiff_store::StoreConfig::new(dir.path().join("store")))
        .await
        .unwrap();
    let kv: Arc<dyn Kv> = Arc::new(store.clone());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let cache = WatchCache::new(kv.clone(), WatchCacheConfig::default());
    let task = cache.spawn(stop_rx);
    let result = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(async {
        let mut crd: Value = serde_yaml::from_str(CRD).unwrap();
        skiff_apiserver::crd::apply_defaults(&mut crd);
        let crontabs = skiff_apiserver::crd::served_versions(&crd)[0];
        let put = async |name: &str| {
            let obj = json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab",
                "metadata": {"name": name, "namespace": "default"}, "spec": {"cronSpec": "* * * * *"}});
            kv.put(PutRequest {
                key: crontabs.storage_key(Some("default"), name).into_bytes(),
                value: serde_json::to_vec(&obj).unwrap(),
                ..Default::default()
            })
            .await
            .unwrap();
        };
        put("before").await;
        let prefix = crontabs.storage_prefix();
        let names = || {
            cache
                .list(crontabs, &prefix, &prefix, 0, |_| true)
                .map(|p| p.items.iter().filter_map(|o| o.to_value()["metadata"]["name"].as_str().map(str::to_string)).collect::<Vec<_>>())
        };
        eventually("the cache loads", async || cache.is_ready()).await;
        assert_eq!(names(), None, "not cached before it is asked for");
        cache.cache_prefix(&prefix);
        let took = eventually("the prefix is cached", async || names().is_some()).await;
        eprintln!("custom prefix cached {took:?} after cache_prefix");
        assert_eq!(names(), Some(vec!["before".to_string()]));
        put("after").await;
        eventually("a later write is cached", async || names().is_some_and(|n| n.len() == 2)).await;
    }))
    .await;
    let _ = stop.send(true);
    let _ = task.await;
    drop(cache);
    drop(kv);
    store.shutdown().await;
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

const CLUSTER_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.shapes.example.com}
spec:
  group: shapes.example.com
  scope: Cluster
  names: {plural: widgets, kind: Widget}
  versions:
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        properties:
          size: {type: integer}
          tags: {type: object, additionalProperties: {type: string}}
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          size: {type: integer}
          tags: {type: object, additionalProperties: {type: string}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_scoped_crd_default_columns_server_side_apply_and_warnings() {
    if no_kubectl() {
        return;
    }
    with_server(async |h| {
        h.kubectl_ok(&["apply", "-f", "-"], Some(CLUSTER_CRD)).await;
        h.kubectl_ok(&["wait", "--for", "condition=Established", "crd/widgets.shapes.example.com", "--timeout=30s"], None).await;

        // Server-side apply, twice (the second a change), with a field manager.
        let w = "apiVersion: shapes.example.com/v1\nkind: Widget\nmetadata: {name: w1}\nsize: 1\ntags: {a: b}\n";
        h.kubectl_ok(&["apply", "--server-side", "--field-manager=tester", "-f", "-"], Some(w)).await;
        h.kubectl_ok(&["apply", "--server-side", "--field-manager=tester", "-f", "-"], Some(&w.replace("size: 1", "size: 2"))).await;
        let obj: Value = serde_json::from_str(&h.kubectl_ok(&["get", "widget", "w1", "-o", "json", "--show-managed-fields"], None).await).unwrap();
        assert_eq!(obj["size"], 2, "{obj}");
        assert!(obj["metadata"].get("namespace").is_none(), "{obj}");
        // No status subresource and no spec: any top-level change bumps the generation.
        assert_eq!(obj["metadata"]["generation"], 2, "{obj}");
        let managers: Vec<&str> = obj["metadata"]["managedFields"].as_array().unwrap().iter().filter_map(|m| m["manager"].as_str()).collect();
        assert!(managers.contains(&"tester"), "{obj}");

        // Two versions, converted by the None strategy: written through
        // v1beta1, read through either; v1 is preferred.
        let beta = json!({"apiVersion": "shapes.example.com/v1beta1", "kind": "Widget", "metadata": {"name": "wb"}, "size": 5});
        let (code, body) = h.call("POST", "/apis/shapes.example.com/v1beta1/widgets", Some(beta)).await;
        assert_eq!(code, 201, "{body}");
        let (_, v1) = h.call("GET", "/apis/shapes.example.com/v1/widgets/wb", None).await;
        assert_eq!((v1["apiVersion"].as_str(), v1["size"].as_i64()), (Some("shapes.example.com/v1"), Some(5)), "{v1}");
        let (_, list) = h.call("GET", "/apis/shapes.example.com/v1beta1/widgets", None).await;
        let versions: Vec<&str> = list["items"].as_array().unwrap().iter().filter_map(|i| i["apiVersion"].as_str()).collect();
        assert_eq!(versions, vec!["shapes.example.com/v1beta1"; 2], "{list}");
        let (_, group) = h.call("GET", "/apis/shapes.example.com", None).await;
        assert_eq!(group["preferredVersion"]["version"], "v1", "{group}");
        // A patch through v1beta1 of an object written through v1.
        let out = h.kubectl_ok(&["patch", "widgets.v1beta1.shapes.example.com", "w1", "--type", "merge", "-p", r#"{"size":3}"#, "-o", "json"], None).await;
        let patched: Value = serde_json::from_str(&out).unwrap();
        assert_eq!((patched["apiVersion"].as_str(), patched["size"].as_i64()), (Some("shapes.example.com/v1beta1"), Some(3)), "{patched}");

        // Without printer columns: NAME and AGE.
        let table = h.kubectl_ok(&["get", "widgets"], None).await;
        let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(header, vec!["NAME", "AGE"], "{table}");

        // fieldValidation=Warn: the unknown field is pruned with a warning.
        let out = h.kubectl(&["create", "--validate=warn", "-f", "-"], Some(&w.replace("w1", "w2").replace("size: 1", "size: 1\ncolour: red"))).await;
        assert!(out.ok && out.stderr.contains(r#"unknown field "colour""#), "{out:?}");
        let obj: Value = serde_json::from_str(&h.kubectl_ok(&["get", "widget", "w2", "-o", "json"], None).await).unwrap();
        assert!(obj.get("colour").is_none(), "pruned: {obj}");

        // deletecollection.
        h.kubectl_ok(&["delete", "widgets", "--all"], None).await;
        assert_eq!(h.kubectl_ok(&["get", "widgets", "-o", "name"], None).await.trim(), "");
    })
    .await;
}

/// True (and says so) when kubectl is not on PATH: the test is skipped.
fn no_kubectl() -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("kubectl").exists()));
    if !found {
        eprintln!("kubectl not on PATH; skipping");
    }
    !found
}

/// kubectl as a long-running child (for `get -w`), killed on drop.
fn kubectl_stream(h: &Harness, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&h.kubeconfig)
        .arg("--cache-dir")
        .arg(h.dir.path().join("kube-cache"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl runs")
}
