//! Namespace deletion end to end with real kubectl: a real
//! `skiff server --no-agent` (API server, scheduler, controllers) and a
//! fake kubelet that finishes the graceful deletion of bound pods.
//!
//! - `kubectl delete ns` (which waits) returns once the namespace's
//!   configmaps, Deployment (and its ReplicaSet and running pods) and a
//!   custom resource are gone, and the namespace with them;
//! - the built-in namespaces cannot be deleted;
//! - creating in a Terminating namespace is 403 with the
//!   `NamespaceTerminating` cause;
//! - an object with a finalizer keeps its namespace Terminating, with the
//!   `NamespaceContentRemaining` and `NamespaceFinalizersRemaining`
//!   conditions, until the finalizer is removed.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{ListParams, PostParams};
use kube::Api;
use serde_json::json;
use support::*;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Runs kubectl against the server; `Ok` carries (success, stdout+stderr).
async fn kubectl(
    server: &Server,
    args: &[&str],
    stdin: Option<&str>,
) -> anyhow::Result<(bool, String)> {
    let run = kubectl_run(server, args, stdin.unwrap_or("")).await?;
    Ok((run.code == 0, format!("{}{}", run.stdout, run.stderr)))
}

async fn kubectl_ok(server: &Server, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    let (ok, text) = kubectl(server, args, stdin).await?;
    anyhow::ensure!(ok, "kubectl {args:?} failed: {text}");
    Ok(text)
}

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

const CONTENT: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: team}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: team}
data: {a: "1"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: more, namespace: team}
data: {b: "2"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: team}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 30
      containers: [{name: web, image: registry.k8s.io/pause:3.10}]
"#;

const WIDGET: &str = r#"
apiVersion: example.com/v1
kind: Widget
metadata: {name: w1, namespace: team}
spec: {size: 3}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_deletion_empties_and_waits() -> anyhow::Result<()> {
    let server = Server::start()?;
    let client = server.client().await?;
    create_node(&client, "ns-node").await?;
    let kubelet = spawn_fake_kubelet(client.clone(), vec!["ns-node".into()]);

    // Built-in namespaces stay.
    let (ok, text) = kubectl(&server, &["delete", "ns", "default"], None).await?;
    assert!(!ok, "deleting default succeeded: {text}");
    assert!(
        text.contains(r#"namespaces "default" is forbidden: this namespace may not be deleted"#),
        "{text}"
    );

    kubectl_ok(&server, &["apply", "-f", "-"], Some(CRD)).await?;
    kubectl_ok(
        &server,
        &[
            "wait",
            "--for=condition=Established",
            "crd/widgets.example.com",
            "--timeout=60s",
        ],
        None,
    )
    .await?;
    kubectl_ok(&server, &["apply", "-f", "-"], Some(CONTENT)).await?;
    kubectl_ok(&server, &["apply", "-f", "-"], Some(WIDGET)).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "team");
    wait_for("two running pods", TIMEOUT, || async {
        let list = pods.list(&ListParams::default()).await?;
        let running = list
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count();
        Ok((running == 2).then_some(()))
    })
    .await?;
    let ns: Namespace = Api::all(client.clone()).get("team").await?;
    assert_eq!(
        ns.spec.and_then(|s| s.finalizers),
        Some(vec!["kubernetes".to_string()])
    );

    // `kubectl delete ns` waits until the namespace is gone.
    let started = Instant::now();
    kubectl_ok(&server, &["delete", "ns", "team"], None).await?;
    println!("kubectl delete ns team took {:?}", started.elapsed());
    let (ok, text) = kubectl(&server, &["get", "ns", "team"], None).await?;
    assert!(!ok && text.contains("not found"), "{text}");
    for kind in [
        "configmaps",
        "deployments",
        "replicasets",
        "pods",
        "widgets",
    ] {
        let out = kubectl_ok(&server, &["get", kind, "-A", "-o", "name"], None).await?;
        let left: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
        // Other namespaces hold configmaps (kube-root-ca.crt); none is in team now.
        let ns_out = kubectl_ok(&server, &["get", kind, "-n", "team", "-o", "name"], None).await?;
        assert!(
            ns_out.trim().is_empty(),
            "{kind} left in team: {ns_out} (all: {left:?})"
        );
    }

    // A finalizer holds the namespace in Terminating.
    kubectl_ok(&server, &["create", "ns", "held"], None).await?;
    let held_cm = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: pinned, namespace: held, finalizers: [example.com/block]}
"#;
    kubectl_ok(&server, &["apply", "-f", "-"], Some(held_cm)).await?;
    let out = kubectl_ok(&server, &["delete", "ns", "held", "--wait=false"], None).await?;
    assert!(out.contains("deleted"), "{out}");
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns = nss.get("held").await?;
    assert!(ns.metadata.deletion_timestamp.is_some());
    assert_eq!(
        ns.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );

    // Creating in it is refused with Kubernetes' error.
    let (ok, text) = kubectl(
        &server,
        &["create", "configmap", "late", "-n", "held"],
        None,
    )
    .await?;
    assert!(!ok, "{text}");
    assert!(
        text.contains(
            "unable to create new content in namespace held because it is being terminated"
        ),
        "{text}"
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "held");
    let late: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "late2"}}))?;
    match cms.create(&PostParams::default(), &late).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
        }
        other => panic!("create in a Terminating namespace: {other:?}"),
    }
    let (_, raw) = kubectl(
        &server,
        &["create", "configmap", "late3", "-n", "held", "-v=8"],
        None,
    )
    .await?;
    assert!(
        raw.contains("NamespaceTerminating"),
        "no NamespaceTerminating cause: {raw}"
    );

    let ns = wait_for("the ContentRemaining condition", TIMEOUT, || async {
        let ns = nss.get("held").await?;
        let conds = ns
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let remaining = conds
            .iter()
            .any(|c| c.type_ == "NamespaceContentRemaining" && c.status == "True");
        Ok(remaining.then_some(ns))
    })
    .await?;
    let conds = ns.status.and_then(|s| s.conditions).unwrap_or_default();
    let msg = |t: &str| {
        conds
            .iter()
            .find(|c| c.type_ == t)
            .and_then(|c| c.message.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        msg("NamespaceContentRemaining"),
        "Some resources are remaining: configmaps. has 1 resource instances"
    );
    assert_eq!(
        msg("NamespaceFinalizersRemaining"),
        "Some content in the namespace has finalizers remaining: example.com/block in 1 resource instances"
    );
    // Still there a while later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(nss.get_opt("held").await?.is_some());

    kubectl_ok(
        &server,
        &[
            "patch",
            "configmap",
            "pinned",
            "-n",
            "held",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
        None,
    )
    .await?;
    let started = Instant::now();
    kubectl_ok(
        &server,
        &["wait", "--for=delete", "ns/held", "--timeout=60s"],
        None,
    )
    .await?;
    println!(
        "held namespace gone {:?} after its finalizer",
        started.elapsed()
    );

    kubelet.abort();
    Ok(())
}
