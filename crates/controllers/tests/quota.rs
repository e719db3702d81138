//! ResourceQuota end to end with the stock kubectl: a real
//! `skiff server --no-agent` (API server with the ResourceQuota admission,
//! controllers with the quota controller), no nodes (pods stay pending and
//! delete at once).
//!
//! - `kubectl create quota q --hard=pods=2,requests.cpu=1,count/configmaps=4`
//!   gets `status.hard`/`status.used` from the controller (the namespace's
//!   `kube-root-ca.crt` counts as one configmap, as on Kubernetes);
//! - pods are admitted until the third is refused (exit code 1, stderr
//!   with kube-apiserver's "exceeded quota" message); configmaps likewise;
//! - `kubectl get quota` and `kubectl describe quota` show used/hard;
//! - a server-side dry run is checked but not charged, and a create that
//!   fails after admission (AlreadyExists) gives its charge back;
//! - deleting a pod gives its usage back;
//! - a pod without a cpu request under a cpu quota is refused with
//!   "must specify requests.cpu";
//! - 10 concurrent creates against `pods=5` never make more than 5 pods.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use kube::api::ListParams;
use kube::{Api, Client};
use support::*;

const TIMEOUT: Duration = Duration::from_secs(60);

fn pod_yaml(name: &str, cpu: Option<&str>) -> String {
    let resources = match cpu {
        Some(c) => format!("resources: {{requests: {{cpu: {c}}}}}"),
        None => "resources: {}".into(),
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n  - name: c\n    image: skiff.local/busybox:1\n    {resources}\n"
    )
}

/// `status.used[name]` of quota `q`, if set.
async fn used(client: &Client, ns: &str, q: &str, name: &str) -> anyhow::Result<Option<String>> {
    let quota = Api::<ResourceQuota>::namespaced(client.clone(), ns)
        .get(q)
        .await?;
    Ok(quota
        .status
        .and_then(|s| s.used)
        .and_then(|u| u.get(name).map(|v| v.0.clone())))
}

/// Waits until `status.used[name]` of `q` is `want`; returns how long it took.
async fn wait_used(
    client: &Client,
    ns: &str,
    q: &str,
    name: &str,
    want: &str,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    wait_for(&format!("{ns}/{q} used {name}={want}"), TIMEOUT, || async {
        Ok((used(client, ns, q, name).await?.as_deref() == Some(want)).then_some(()))
    })
    .await?;
    Ok(start.elapsed())
}

/// Waits until the root CA publisher has put `kube-root-ca.crt` in `ns`.
async fn wait_root_ca(client: &Client, ns: &str) -> anyhow::Result<()> {
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), ns);
    let start = Instant::now();
    while api.get_opt("kube-root-ca.crt").await?.is_none() {
        anyhow::ensure!(
            start.elapsed() < TIMEOUT,
            "no kube-root-ca.crt in {ns} after {TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn ok(server: &Server, args: &[&str], stdin: &str) -> anyhow::Result<String> {
    let run = kubectl_run(server, args, stdin).await?;
    anyhow::ensure!(
        run.code == 0,
        "kubectl {args:?} failed: {}{}",
        run.stdout,
        run.stderr
    );
    Ok(run.stdout)
}

/// Runs kubectl expecting a refusal: exit code 1 and `want` in stderr.
async fn refused(server: &Server, args: &[&str], stdin: &str, want: &str) -> anyhow::Result<()> {
    let run = kubectl_run(server, args, stdin).await?;
    anyhow::ensure!(
        run.code == 1 && run.stderr.contains(want),
        "kubectl {args:?}: want exit 1 and {want:?} in stderr, got {}: {}{}",
        run.code,
        run.stdout,
        run.stderr
    );
    Ok(())
}

#[tokio::test]
async fn quota_usage_and_admission_with_kubectl() -> anyhow::Result<()> {
    let server = Server::start()?;
    let client = server.client().await?;
    let ns = "quota-a";
    ok(&server, &["create", "namespace", ns], "").await?;
    wait_root_ca(&client, ns).await?;
    ok(
        &server,
        &[
            "-n",
            ns,
            "create",
            "quota",
            "q",
            "--hard=pods=2,requests.cpu=1,count/configmaps=4",
        ],
        "",
    )
    .await?;
    let synced = wait_used(&client, ns, "q", "pods", "0").await?;
    eprintln!("measured: quota created -> status.used written in {synced:?}");

    let create = ["-n", ns, "create", "-f", "-"];
    ok(&server, &create, &pod_yaml("p1", Some("500m"))).await?;
    // A create that fails after admission (the name is taken) gives its
    // charge back.
    refused(
        &server,
        &create,
        &pod_yaml("p1", Some("500m")),
        r#"pods "p1" already exists"#,
    )
    .await?;
    assert_eq!(used(&client, ns, "q", "pods").await?.as_deref(), Some("1"));
    ok(&server, &create, &pod_yaml("p2", Some("500m"))).await?;
    // Admission charged both synchronously.
    assert_eq!(used(&client, ns, "q", "pods").await?.as_deref(), Some("2"));
    assert_eq!(
        used(&client, ns, "q", "requests.cpu").await?.as_deref(),
        Some("1")
    );
    refused(
        &server,
        &create,
        &pod_yaml("p3", Some("500m")),
        r#"Error from server (Forbidden): error when creating "STDIN": pods "p3" is forbidden: exceeded quota: q, requested: pods=1,requests.cpu=500m, used: pods=2,requests.cpu=1, limited: pods=2,requests.cpu=1"#,
    )
    .await?;

    for i in 1..=3 {
        ok(
            &server,
            &["-n", ns, "create", "configmap", &format!("cm{i}")],
            "",
        )
        .await?;
    }
    refused(
        &server,
        &["-n", ns, "create", "configmap", "cm4"],
        "",
        r#"configmaps "cm4" is forbidden: exceeded quota: q, requested: count/configmaps=1, used: count/configmaps=4, limited: count/configmaps=4"#,
    )
    .await?;

    let get = ok(&server, &["-n", ns, "get", "quota", "q"], "").await?;
    assert!(
        get.contains("count/configmaps: 4/4, pods: 2/2, requests.cpu: 1/1"),
        "kubectl get quota:\n{get}"
    );
    let describe = ok(&server, &["-n", ns, "describe", "quota", "q"], "").await?;
    for row in [
        ["pods", "2", "2"],
        ["requests.cpu", "1", "1"],
        ["count/configmaps", "4", "4"],
    ] {
        assert!(
            describe
                .lines()
                .any(|l| l.split_whitespace().eq(row.iter().copied())),
            "no row {row:?} in kubectl describe quota:\n{describe}"
        );
    }

    // Deleting a pod gives its usage back.
    let start = Instant::now();
    ok(&server, &["-n", ns, "delete", "pod", "p1"], "").await?;
    wait_used(&client, ns, "q", "pods", "1").await?;
    eprintln!(
        "measured: pod deleted -> status.used lowered in {:?}",
        start.elapsed()
    );
    assert_eq!(
        used(&client, ns, "q", "requests.cpu").await?.as_deref(),
        Some("500m")
    );

    // A server-side dry run is checked but not charged.
    ok(
        &server,
        &["-n", ns, "create", "--dry-run=server", "-f", "-"],
        &pod_yaml("p4", Some("500m")),
    )
    .await?;
    assert_eq!(used(&client, ns, "q", "pods").await?.as_deref(), Some("1"));
    refused(
        &server,
        &["-n", ns, "create", "--dry-run=server", "-f", "-"],
        &pod_yaml("p4", Some("600m")),
        "exceeded quota: q, requested: requests.cpu=600m, used: requests.cpu=500m, limited: requests.cpu=1",
    )
    .await?;
    ok(&server, &create, &pod_yaml("p3", Some("500m"))).await?;

    // No cpu request under a cpu quota.
    refused(
        &server,
        &create,
        &pod_yaml("noreq", None),
        r#"pods "noreq" is forbidden: failed quota: q: must specify requests.cpu"#,
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn concurrent_creates_never_exceed_the_quota() -> anyhow::Result<()> {
    let server = Server::start()?;
    let client = server.client().await?;
    let ns = "quota-b";
    ok(&server, &["create", "namespace", ns], "").await?;
    ok(
        &server,
        &["-n", ns, "create", "quota", "c", "--hard=pods=5"],
        "",
    )
    .await?;
    wait_used(&client, ns, "c", "pods", "0").await?;

    let start = Instant::now();
    let runs = futures::future::join_all((0..10).map(|i| {
        let server = &server;
        async move {
            let name = format!("c{i}");
            kubectl_run(
                server,
                &[
                    "-n",
                    ns,
                    "run",
                    &name,
                    "--image=skiff.local/busybox:1",
                    "--restart=Never",
                ],
                "",
            )
            .await
        }
    }))
    .await;
    eprintln!(
        "measured: 10 concurrent kubectl run against pods=5 took {:?}",
        start.elapsed()
    );
    let mut admitted = 0;
    for run in runs {
        let run = run?;
        if run.code == 0 {
            admitted += 1;
        } else {
            assert!(
                run.stderr.contains(
                    "exceeded quota: c, requested: pods=1, used: pods=5, limited: pods=5"
                ),
                "a refusal other than the quota's: {}",
                run.stderr
            );
        }
    }
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?;
    assert_eq!(admitted, 5, "exactly the quota's 5 creates succeed");
    assert_eq!(pods.items.len(), 5);
    assert_eq!(used(&client, ns, "c", "pods").await?.as_deref(), Some("5"));
    Ok(())
}

/// Median latency of `n` sequential pod creates in `ns` through the API.
async fn median_create(client: &Client, ns: &str, n: usize) -> anyhow::Result<Duration> {
    let api = Api::<Pod>::namespaced(client.clone(), ns);
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let pod: Pod = pod_with_request(&format!("m{i}"))?;
        let start = Instant::now();
        api.create(&Default::default(), &pod).await?;
        took.push(start.elapsed());
    }
    took.sort();
    Ok(took[n / 2])
}

fn pod_with_request(name: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "skiff.local/busybox:1",
                                 "resources": {"requests": {"cpu": "10m"}}}]}
    }))?)
}

/// What admission costs a create: pods created one after another in a
/// namespace with a quota and in one without (printed, not asserted: the
/// machine is shared); every admitted pod is charged.
#[tokio::test]
async fn admission_cost_per_create() -> anyhow::Result<()> {
    let server = Server::start()?;
    let client = server.client().await?;
    for ns in ["plain", "quoted"] {
        ok(&server, &["create", "namespace", ns], "").await?;
    }
    ok(
        &server,
        &[
            "-n",
            "quoted",
            "create",
            "quota",
            "q",
            "--hard=pods=1000,requests.cpu=100",
        ],
        "",
    )
    .await?;
    wait_used(&client, "quoted", "q", "pods", "0").await?;
    let n = 100;
    let plain = median_create(&client, "plain", n).await?;
    let quoted = median_create(&client, "quoted", n).await?;
    eprintln!(
        "measured: median create without a quota {plain:?}, with one {quoted:?} ({n} pods each)"
    );
    assert_eq!(
        used(&client, "quoted", "q", "pods").await?.as_deref(),
        Some("100")
    );
    assert_eq!(
        used(&client, "quoted", "q", "requests.cpu")
            .await?
            .as_deref(),
        Some("1")
    );
    Ok(())
}
