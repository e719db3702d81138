//! A StatefulSet with a volumeClaimTemplate on a real node (`skiff server`
//! with its embedded agent, containerd, runc, the stock kubectl): pods come
//! up in ordinal order, each with its own local-path volume; a deleted pod
//! comes back with the same name, the same claim and its data; scaling
//! down removes the highest pod but keeps its claim; `kubectl rollout
//! status|undo|history statefulset` work; pods resolve each other as
//! `<pod>.<service>.<ns>.svc.cluster.local`; deleting a claim removes its
//! volume and directory.

use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_tests::{wait_until, Cluster, ClusterOptions, Kubectl};

/// Pod CIDR `10.199.120.0/24` (this task's range: 120..124).
const SUBNET: u8 = 120;

const MANIFEST: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector:
    app: web
  ports:
  - port: 80
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      # sleep as PID 1 ignores SIGTERM: keep the grace period short.
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: skiff.local/busybox:1
        command: ["sh", "-c", "hostname >> /data/starts && exec sleep 3600"]
        volumeMounts:
        - name: data
          mountPath: /data
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: ["ReadWriteOnce"]
      resources:
        requests:
          storage: 64Mi
"#;

fn json(k: &Kubectl, args: &[&str]) -> anyhow::Result<Value> {
    k.json(args)
}

fn phase(k: &Kubectl, pod: &str) -> String {
    k.json(&["get", "pod", pod])
        .ok()
        .and_then(|p| p["status"]["phase"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The host directory of a claim's volume, once the claim is bound.
fn volume_dir(k: &Kubectl, claim: &str) -> anyhow::Result<String> {
    let c = json(k, &["get", "pvc", claim])?;
    anyhow::ensure!(c["status"]["phase"] == "Bound", "claim {claim}: {c}");
    let pv = c["spec"]["volumeName"].as_str().unwrap_or_default();
    let v = json(k, &["get", "pv", pv])?;
    Ok(v["spec"]["hostPath"]["path"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

fn starts(dir: &str) -> String {
    std::fs::read_to_string(format!("{dir}/starts")).unwrap_or_default()
}

#[test]
fn statefulset_pods_keep_their_names_claims_and_data() -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterOptions { subnet: SUBNET })?;
    let result = run(&cluster);
    cluster.log_failure(result, 150)
}

fn run(cluster: &Cluster) -> anyhow::Result<()> {
    let k = cluster.kube();
    // The claim template names no class: it gets the default, local-path.
    let started = Instant::now();
    k.apply(MANIFEST)?;
    wait_until(Duration::from_secs(180), || {
        Ok(phase(&k, "web-0") == "Running" && phase(&k, "web-1") == "Running")
    })?;
    eprintln!("apply → web-0 and web-1 Running: {:?}", started.elapsed());

    // OrderedReady: web-1 was created only once web-0 was Ready.
    let p0 = json(&k, &["get", "pod", "web-0"])?;
    let p1 = json(&k, &["get", "pod", "web-1"])?;
    let ready0 = p0["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["lastTransitionTime"].as_str())
        .unwrap_or_default()
        .to_string();
    let created1 = p1["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap_or_default();
    assert!(
        !ready0.is_empty() && ready0.as_str() <= created1,
        "web-0 ready at {ready0}, web-1 created at {created1}"
    );
    assert_eq!(p0["spec"]["hostname"], "web-0");
    assert_eq!(p0["spec"]["subdomain"], "web");
    assert_eq!(
        p0["metadata"]["labels"]["apps.kubernetes.io/pod-index"],
        "0"
    );
    assert_eq!(
        p1["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
        "web-1"
    );

    // Each pod has its own bound claim, a directory on the node.
    let dir0 = volume_dir(&k, "data-web-0")?;
    let dir1 = volume_dir(&k, "data-web-1")?;
    assert_ne!(dir0, dir1);
    assert!(
        dir0.starts_with(cluster.dir.path().to_str().unwrap_or("?")),
        "volume outside the test dir: {dir0}"
    );
    wait_until(Duration::from_secs(30), || Ok(starts(&dir0) == "web-0\n"))?;
    let pvc_uid = json(&k, &["get", "pvc", "data-web-0"])?["metadata"]["uid"].clone();

    // Delete web-0: it comes back with the same name, claim and data.
    let old_uid = p0["metadata"]["uid"].clone();
    let t = Instant::now();
    k.ok(&["delete", "pod", "web-0", "--wait=false"])?;
    wait_until(Duration::from_secs(120), || {
        let p = k.json(&["get", "pod", "web-0"]).unwrap_or(Value::Null);
        Ok(p["metadata"]["uid"] != old_uid
            && !p["metadata"]["uid"].is_null()
            && p["status"]["phase"] == "Running")
    })?;
    eprintln!("delete web-0 → new web-0 Running: {:?}", t.elapsed());
    let p0 = json(&k, &["get", "pod", "web-0"])?;
    assert_eq!(
        p0["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "data-web-0"
    );
    assert_eq!(
        json(&k, &["get", "pvc", "data-web-0"])?["metadata"]["uid"],
        pvc_uid
    );
    wait_until(Duration::from_secs(30), || {
        Ok(starts(&dir0) == "web-0\nweb-0\n")
    })
    .map_err(|e| anyhow::anyhow!("{e}: the file holds {:?}", starts(&dir0)))?;

    let status = k.ok(&["rollout", "status", "statefulset/web", "--timeout=120s"])?;
    // The API server defaults `partition: 0`, so kubectl reports a
    // partitioned roll-out, as it does against Kubernetes.
    assert!(
        status.contains("partitioned roll out complete: 2 new pods"),
        "rollout status: {status}"
    );

    // The headless Service's endpoints carry the pods' hostnames, which
    // the cluster DNS serves as web-0.web.default.svc.<domain>.
    wait_until(Duration::from_secs(30), || {
        let ep = k.json(&["get", "endpoints", "web"]).unwrap_or(Value::Null);
        let hosts: Vec<&str> = ep["subsets"][0]["addresses"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x["hostname"].as_str()).collect())
            .unwrap_or_default();
        Ok(hosts.contains(&"web-0") && hosts.contains(&"web-1"))
    })?;

    // ... and a pod resolves its peer by its stable name.
    let mut answer = String::new();
    wait_until(Duration::from_secs(30), || {
        let out = k.run(&[
            "exec",
            "web-0",
            "--",
            "nslookup",
            "web-1.web.default.svc.cluster.local",
        ])?;
        answer = String::from_utf8_lossy(&out.stdout).into_owned();
        Ok(out.status.success() && answer.contains(p1["status"]["podIP"].as_str().unwrap_or("?")))
    })
    .map_err(|e| anyhow::anyhow!("{e}: nslookup said {answer:?}"))?;

    // A rolling update replaces both pods (web-1 first) and completes;
    // undo goes back to the first template through its ControllerRevision.
    let rev1 = json(&k, &["get", "statefulset", "web"])?["status"]["currentRevision"].clone();
    let t = Instant::now();
    k.ok(&["set", "env", "statefulset/web", "ROLL=2"])?;
    k.ok(&["rollout", "status", "statefulset/web", "--timeout=180s"])?;
    let sts = json(&k, &["get", "statefulset", "web"])?;
    assert_ne!(sts["status"]["updateRevision"], rev1);
    wait_until(Duration::from_secs(60), || {
        let s = k
            .json(&["get", "statefulset", "web"])
            .unwrap_or(Value::Null);
        Ok(
            s["status"]["observedGeneration"] == s["metadata"]["generation"]
                && s["status"]["currentRevision"] == s["status"]["updateRevision"]
                && s["status"]["updatedReplicas"] == 2
                && s["status"]["readyReplicas"] == 2,
        )
    })?;
    eprintln!("rolling update of 2 pods complete: {:?}", t.elapsed());
    assert!(
        starts(&dir1).lines().count() >= 2,
        "web-1 restarted on its volume"
    );
    k.ok(&["rollout", "undo", "statefulset/web"])?;
    wait_until(Duration::from_secs(180), || {
        let s = k
            .json(&["get", "statefulset", "web"])
            .unwrap_or(Value::Null);
        let env = &s["spec"]["template"]["spec"]["containers"][0]["env"];
        // observedGeneration first: right after the undo the old status
        // (one revision, all ready) still holds for the new spec.
        Ok(env.is_null()
            && s["status"]["observedGeneration"] == s["metadata"]["generation"]
            && s["status"]["currentRevision"] == s["status"]["updateRevision"]
            && s["status"]["readyReplicas"] == 2)
    })?;
    // Settled: the controller writes the status once, not in a loop.
    let rv = json(&k, &["get", "statefulset", "web"])?["metadata"]["resourceVersion"].clone();
    std::thread::sleep(Duration::from_secs(3));
    let again = json(&k, &["get", "statefulset", "web"])?;
    assert_eq!(
        again["metadata"]["resourceVersion"], rv,
        "status keeps changing: {again}"
    );
    let history = k.ok(&["rollout", "history", "statefulset/web"])?;
    assert!(history.contains("REVISION"), "rollout history: {history}");

    // Scale down: web-1 goes, its claim stays (Retain).
    k.ok(&["scale", "statefulset", "web", "--replicas=1"])?;
    wait_until(Duration::from_secs(90), || {
        Ok(!k.run(&["get", "pod", "web-1"])?.status.success())
    })?;
    assert_eq!(phase(&k, "web-0"), "Running");
    assert_eq!(volume_dir(&k, "data-web-1")?, dir1);
    assert!(starts(&dir1).starts_with("web-1\n"));

    // Deleting the claim deletes its volume (reclaim policy Delete) and
    // the agent removes the directory.
    let t = Instant::now();
    k.ok(&["delete", "pvc", "data-web-1"])?;
    wait_until(Duration::from_secs(90), || {
        Ok(!std::path::Path::new(&dir1).exists())
    })?;
    eprintln!("delete claim → directory removed: {:?}", t.elapsed());
    assert!(
        std::path::Path::new(&dir0).exists(),
        "web-0's volume is kept"
    );
    Ok(())
}
