//! The walking skeleton, end to end: a real `skiff server` with its own
//! containerd runs a busybox httpd pod applied by the stock kubectl; the pod
//! answers on its IP, its logs come back, and deleting it leaves nothing in
//! containerd. Also: bad input gets Kubernetes errors, a missing image gets
//! ErrImagePull/ImagePullBackOff, and the store survives a restart.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use skiff_tests::{wait_until, Cluster, ClusterOptions};

const WEB_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  # busybox httpd as PID 1 ignores SIGTERM, so keep the grace period short.
  terminationGracePeriodSeconds: 2
  containers:
  - name: httpd
    image: skiff.local/busybox:1
    command: ["sh", "-c", "mkdir -p /www && echo hello-from-skiff > /www/index.html && echo httpd-starting && exec httpd -f -p 8080 -h /www"]
    ports:
    - containerPort: 8080
"#;

fn http_get(ip: &str, port: u16) -> anyhow::Result<String> {
    let mut s =
        TcpStream::connect_timeout(&format!("{ip}:{port}").parse()?, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    write!(s, "GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

fn containerd_containers(cluster: &Cluster) -> anyhow::Result<String> {
    let out = Command::new("ctr")
        .arg("--address")
        .arg(cluster.containerd_socket())
        .args(["-n", "k8s.io", "containers", "ls", "-q"])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "ctr failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn pod_field(cluster: &Cluster, pod: &str, jsonpath: &str) -> anyhow::Result<String> {
    Ok(cluster
        .kubectl_ok(&["get", "pod", pod, "-o", &format!("jsonpath={jsonpath}")])?
        .trim()
        .to_string())
}

#[test]
fn pod_runs_on_containerd_driven_by_kubectl() -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterOptions { subnet: 11 })?;
    let result = run_pod_lifecycle(&cluster);
    cluster.log_failure(result, 120)
}

fn run_pod_lifecycle(cluster: &Cluster) -> anyhow::Result<()> {
    let nodes = cluster.kubectl_ok(&["get", "nodes"])?;
    assert!(nodes.contains("Ready"), "kubectl get nodes: {nodes}");

    // Apply with client-side validation on (kubectl's default).
    let manifest = cluster.dir.path().join("pod.yaml");
    std::fs::write(&manifest, WEB_POD)?;
    let started = Instant::now();
    let applied = cluster.kubectl_ok(&["apply", "-f", manifest.to_str().unwrap_or_default()])?;
    assert!(applied.contains("pod/web created"), "apply said: {applied}");
    wait_until(Duration::from_secs(90), || {
        Ok(pod_field(cluster, "web", "{.status.phase}")? == "Running")
    })?;
    eprintln!("apply → Running: {:?}", started.elapsed());

    let wide = cluster.kubectl_ok(&["get", "pods", "-o", "wide"])?;
    let ip = pod_field(cluster, "web", "{.status.podIP}")?;
    assert!(ip.starts_with("10.199.11."), "pod IP {ip}");
    assert!(
        wide.contains("Running") && wide.contains(&ip) && wide.contains("1/1"),
        "get pods -o wide: {wide}"
    );

    let yaml = cluster.kubectl_ok(&["get", "pod", "web", "-o", "yaml"])?;
    assert!(
        yaml.contains("image: skiff.local/busybox:1")
            && yaml.contains("containerID: containerd://"),
        "{yaml}"
    );

    let mut page = String::new();
    wait_until(Duration::from_secs(20), || {
        page = http_get(&ip, 8080).unwrap_or_default();
        Ok(page.contains("hello-from-skiff"))
    })
    .map_err(|e| anyhow::anyhow!("pod did not answer on {ip}:8080: {e}; last answer {page:?}"))?;

    let logs = cluster.kubectl_ok(&["logs", "web"])?;
    assert!(logs.contains("httpd-starting"), "kubectl logs: {logs:?}");

    let before = containerd_containers(cluster)?;
    assert!(
        !before.trim().is_empty(),
        "containerd should hold the pod's containers"
    );
    cluster.kubectl_ok(&["delete", "pod", "web", "--timeout=60s"])?;
    let after = containerd_containers(cluster)?;
    assert!(
        after.trim().is_empty(),
        "containers left in containerd after delete: {after}"
    );
    Ok(())
}

#[test]
fn bad_input_gets_kubernetes_errors_and_missing_images_back_off() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(ClusterOptions { subnet: 12 })?;
    let result = bad_input(&mut cluster);
    cluster.log_failure(result, 120)
}

fn stderr_of(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn curl_status(cluster: &Cluster, args: &[&str]) -> anyhow::Result<(u16, String)> {
    let url_base = format!("https://127.0.0.1:{}", cluster.port);
    let mut cmd = Command::new("curl");
    cmd.args(["-sk", "-o", "-", "-w", "\n%{http_code}"]);
    for a in args {
        cmd.arg(a.replace("{base}", &url_base));
    }
    let out = cmd.output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    Ok((code.trim().parse().unwrap_or(0), body.to_string()))
}

fn bad_input(cluster: &mut Cluster) -> anyhow::Result<()> {
    // No credential: 401 with a Status.
    let (code, body) = curl_status(cluster, &["{base}/api/v1/pods"])?;
    assert_eq!(code, 401, "{body}");
    assert!(
        body.contains("\"kind\":\"Status\"") || body.contains("\"kind\": \"Status\""),
        "{body}"
    );

    let token = std::fs::read_to_string(cluster.kubeconfig())?
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("token:")
                .map(|t| t.trim().trim_matches('"').to_string())
        })
        .ok_or_else(|| anyhow::anyhow!("no token in kubeconfig"))?;
    let auth = format!("Authorization: Bearer {token}");

    // Malformed JSON: 400.
    let (code, body) = curl_status(
        cluster,
        &[
            "-X",
            "POST",
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json",
            "-d",
            "{\"kind\": \"Pod\", ",
            "{base}/api/v1/namespaces/default/pods",
        ],
    )?;
    assert_eq!(code, 400, "{body}");

    // Unknown resource: 404 from the server, and kubectl's own message.
    let (code, body) = curl_status(
        cluster,
        &["-H", &auth, "{base}/api/v1/namespaces/default/frobnicators"],
    )?;
    assert_eq!(code, 404, "{body}");
    let out = cluster.kubectl(&["get", "frobnicators"])?;
    assert!(
        !out.status.success() && stderr_of(&out).contains("doesn't have a resource type"),
        "{}",
        stderr_of(&out)
    );

    // Missing spec.containers: 422 naming the field.
    let out = cluster.kubectl_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: empty\nspec: {}\n",
    )?;
    let text = stderr_of(&out);
    assert!(
        !out.status.success() && text.contains("spec.containers"),
        "{text}"
    );
    let (code, body) = curl_status(
        cluster,
        &[
            "-X",
            "POST",
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"empty"},"spec":{}}"#,
            "{base}/api/v1/namespaces/default/pods",
        ],
    )?;
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("spec.containers"), "{body}");

    // Malformed YAML through kubectl: a clear error, no panic.
    let out = cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata: [oops\n",
    )?;
    assert!(!out.status.success(), "{}", stderr_of(&out));

    // Duplicate name: 409 AlreadyExists.
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: \"1\"\n";
    cluster
        .kubectl_stdin(&["create", "-f", "-"], cm)
        .map(|o| assert!(o.status.success(), "{}", stderr_of(&o)))?;
    let out = cluster.kubectl_stdin(&["create", "-f", "-"], cm)?;
    assert!(
        stderr_of(&out).contains("AlreadyExists") || stderr_of(&out).contains("already exists"),
        "{}",
        stderr_of(&out)
    );

    // A missing image: ErrImagePull / ImagePullBackOff, and the server lives on.
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: ghost\nspec:\n  containers:\n  - name: c\n    image: skiff.local/does-not-exist:1\n";
    cluster
        .kubectl_stdin(&["apply", "-f", "-"], pod)
        .map(|o| assert!(o.status.success(), "{}", stderr_of(&o)))?;
    wait_until(Duration::from_secs(60), || {
        let reason = pod_field(
            cluster,
            "ghost",
            "{.status.containerStatuses[0].state.waiting.reason}",
        )?;
        Ok(reason == "ErrImagePull" || reason == "ImagePullBackOff")
    })?;
    let pods = cluster.kubectl_ok(&["get", "pods"])?;
    assert!(
        pods.contains("ErrImagePull") || pods.contains("ImagePullBackOff"),
        "{pods}"
    );
    cluster.kubectl_ok(&["delete", "pod", "ghost", "--timeout=60s"])?;

    // The store survives a restart of the server.
    cluster.restart_server()?;
    let data = cluster.kubectl_ok(&["get", "configmap", "settings", "-o", "jsonpath={.data.a}"])?;
    assert_eq!(data.trim(), "1");
    Ok(())
}
