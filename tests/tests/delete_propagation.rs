//! `kubectl delete deploy --cascade=orphan|foreground|background` against a
//! real `skiff server`: the API server sets the `orphan` /
//! `foregroundDeletion` finalizers and the controllers' garbage collector
//! orphans or deletes the ReplicaSet before the Deployment goes.

use std::time::Duration;

use skiff_tests::{tail, wait_until, Cluster, ClusterOptions};

fn deployment(name: &str) -> String {
    // No replicas: the ReplicaSet is the dependent; no containers needed.
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: 0\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: c, image: \"skiff.local/busybox:1\"}}]}}\n"
    )
}

/// The ReplicaSets of deployment `name` (by label) as `name=owners` lines.
fn replicasets(c: &Cluster, name: &str) -> anyhow::Result<String> {
    Ok(c.kubectl_ok(&[
        "get",
        "rs",
        "-l",
        &format!("app={name}"),
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.metadata.ownerReferences[*].kind}{\"\\n\"}{end}",
    ])?
    .trim()
    .to_string())
}

#[test]
fn kubectl_delete_cascade_policies() -> anyhow::Result<()> {
    let c = Cluster::start(ClusterOptions { subnet: 70 })?;
    let long = Duration::from_secs(90);
    for name in ["orphan", "foreground", "background"] {
        let out = c.kubectl_stdin(&["apply", "-f", "-"], &deployment(name))?;
        anyhow::ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_until(long, || Ok(replicasets(&c, name)?.ends_with("=Deployment"))).map_err(|e| {
            anyhow::anyhow!("{name}: no ReplicaSet: {e}\n{}", tail(&c.server_log(), 40))
        })?;
        // kubectl waits until the deployment is gone.
        c.kubectl_ok(&[
            "delete",
            "deployment",
            name,
            &format!("--cascade={name}"),
            "--timeout=90s",
        ])?;
        match name {
            "orphan" => {
                // The ReplicaSet stays, without its owner reference.
                wait_until(long, || {
                    let rs = replicasets(&c, name)?;
                    Ok(!rs.is_empty() && rs.ends_with('='))
                })?;
            }
            "foreground" => {
                // Dependents went before the owner did.
                anyhow::ensure!(
                    replicasets(&c, name)?.is_empty(),
                    "rs left: {}",
                    replicasets(&c, name)?
                );
            }
            _ => wait_until(long, || Ok(replicasets(&c, name)?.is_empty()))?,
        }
    }
    Ok(())
}
