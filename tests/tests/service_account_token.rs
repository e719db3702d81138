//! Service-account tokens on a real node (`skiff server` with its embedded
//! agent, containerd, runc, the stock kubectl).
//!
//! A plain pod gets, from the ServiceAccount admission plugin, the
//! `kube-api-access-<5 chars>` projected volume at
//! `/var/run/secrets/kubernetes.io/serviceaccount`; the agent fills it with
//! a TokenRequest token bound to the pod, the `kube-root-ca.crt` ConfigMap
//! the controllers publish, and the namespace. The test reads the three
//! files from inside the container, then calls the API server as the pod
//! would: `kubectl auth whoami` with that token, verifying the server with
//! that CA. A TokenReview accepts the token while the pod lives and refuses
//! it once the pod is deleted. `automountServiceAccountToken: false` and a
//! missing account behave as in Kubernetes.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use serde_json::{json, Value};
use skiff_tests::{check, wait_until, Cluster, ClusterOptions, Kubectl};

/// Pod CIDR `10.199.135.0/24`.
const SUBNET: u8 = 135;

const MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

const READER: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: reader
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: reader
    image: skiff.local/busybox:1
    command: ["sleep", "3600"]
"#;

#[test]
fn pods_get_a_bound_token_and_the_cluster_ca() -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterOptions { subnet: SUBNET })?;
    let result = run(&cluster);
    cluster.log_failure(result, 150)
}

fn exec_cat(k: &Kubectl, file: &str) -> anyhow::Result<String> {
    k.ok(&["exec", "reader", "--", "cat", &format!("{MOUNT}/{file}")])
}

/// The claims of a JWT (not verified: the server does that).
fn claims(token: &str) -> anyhow::Result<Value> {
    let part = token.split('.').nth(1).context("a JWT has three parts")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part)?;
    Ok(serde_json::from_slice(&bytes)?)
}

fn token_review(k: &Kubectl, token: &str) -> anyhow::Result<Value> {
    let review = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token},
    });
    let out = check(
        "kubectl create tokenreview",
        k.run_stdin(&["create", "-f", "-", "-o", "json"], &review.to_string())?,
    )?;
    Ok(serde_json::from_str(&out)?)
}

fn run(cluster: &Cluster) -> anyhow::Result<()> {
    let k = cluster.kube();
    let started = Instant::now();
    k.apply(READER)?;
    wait_until(Duration::from_secs(120), || {
        Ok(k.json(&["get", "pod", "reader"])?["status"]["phase"] == "Running")
    })
    .context("waiting for reader to run")?;
    eprintln!("reader created → Running: {:?}", started.elapsed());

    // What admission added.
    let pod = k.json(&["get", "pod", "reader"])?;
    assert_eq!(pod["spec"]["serviceAccountName"], "default", "{pod}");
    let volume = pod["spec"]["volumes"]
        .as_array()
        .and_then(|vs| vs.first())
        .cloned()
        .unwrap_or_default();
    let name = volume["name"].as_str().unwrap_or_default();
    assert!(
        name.starts_with("kube-api-access-") && name.len() == "kube-api-access-".len() + 5,
        "{volume}"
    );
    let sources = &volume["projected"]["sources"];
    assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
    assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
    assert_eq!(
        pod["spec"]["containers"][0]["volumeMounts"][0],
        json!({"name": name, "readOnly": true, "mountPath": MOUNT})
    );

    // The files, as the container sees them.
    let token = exec_cat(&k, "token")?;
    let ca = exec_cat(&k, "ca.crt")?;
    assert_eq!(exec_cat(&k, "namespace")?, "default");
    let server_ca = std::fs::read_to_string(cluster.data_dir().join("pki/ca.crt"))?;
    assert_eq!(ca.trim(), server_ca.trim(), "ca.crt is the server's CA");
    let c = claims(&token)?;
    assert_eq!(c["sub"], "system:serviceaccount:default:default", "{c}");
    assert_eq!(c["kubernetes.io"]["pod"]["name"], "reader", "{c}");
    assert_eq!(
        c["kubernetes.io"]["pod"]["uid"], pod["metadata"]["uid"],
        "bound to this pod: {c}"
    );
    assert_eq!(
        c["exp"].as_i64().unwrap_or(0) - c["iat"].as_i64().unwrap_or(0),
        3607
    );
    // The projected files are read-only for the container.
    let write = k.run(&[
        "exec",
        "reader",
        "--",
        "sh",
        "-c",
        &format!("echo x > {MOUNT}/token"),
    ])?;
    assert!(!write.status.success(), "the token volume is read-only");

    // The pod's view of the API: its token, verified with its CA.
    let ca_file = cluster.dir.path().join("pod-ca.crt");
    std::fs::write(&ca_file, &ca)?;
    let whoami = check(
        "kubectl auth whoami with the pod's token",
        Command::new("kubectl")
            .env_remove("KUBECONFIG")
            .args([
                "--kubeconfig=/dev/null",
                &format!("--server=https://127.0.0.1:{}", cluster.port),
                &format!("--certificate-authority={}", ca_file.display()),
                &format!("--token={}", token.trim()),
                "auth",
                "whoami",
                "-o",
                "json",
            ])
            .output()?,
    )?;
    let whoami: Value = serde_json::from_str(&whoami)?;
    assert_eq!(
        whoami["status"]["userInfo"]["username"], "system:serviceaccount:default:default",
        "{whoami}"
    );

    let review = token_review(&k, token.trim())?;
    assert_eq!(review["status"]["authenticated"], true, "{review}");
    assert_eq!(
        review["status"]["user"]["extra"]["authentication.kubernetes.io/pod-name"],
        json!(["reader"]),
        "{review}"
    );

    // automountServiceAccountToken: false gets no volume; a missing account
    // is refused as by kube-apiserver.
    let no_mount = k.json(&[
        "run",
        "quiet",
        "--image=skiff.local/busybox:1",
        "--dry-run=server",
        "--overrides={\"spec\":{\"automountServiceAccountToken\":false}}",
    ])?;
    assert_eq!(no_mount["spec"]["volumes"], Value::Null, "{no_mount}");
    assert_eq!(
        no_mount["spec"]["serviceAccountName"], "default",
        "{no_mount}"
    );
    let ghost = k.run(&[
        "run",
        "ghost",
        "--image=skiff.local/busybox:1",
        "--overrides={\"spec\":{\"serviceAccountName\":\"ghost\"}}",
    ])?;
    let err = String::from_utf8_lossy(&ghost.stderr);
    assert!(
        !ghost.status.success()
            && err.contains(
                "pods \"ghost\" is forbidden: error looking up service account default/ghost: serviceaccount \"ghost\" not found"
            ),
        "{err}"
    );

    // The token dies with its pod.
    k.ok(&["delete", "pod", "reader", "--wait=true", "--timeout=60s"])?;
    let review = token_review(&k, token.trim())?;
    assert_eq!(review["status"]["authenticated"], false, "{review}");
    eprintln!("token review after deletion: {}", review["status"]["error"]);
    Ok(())
}
