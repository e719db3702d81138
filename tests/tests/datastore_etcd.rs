//! `skiff server --datastore-endpoint`: the API server keeps its objects in
//! a real external etcd (Debian's etcd-server, started here on loopback),
//! and kubectl create, get and watch work through it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use skiff_store::etcd_process::EtcdCluster;
use skiff_store::{Kv, RangeRequest, RemoteStore};
use skiff_tests::{free_port, skiff_bin, tail, wait_until};

/// A child process killed (by its pid) when the test ends, also on failure.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kubectl(kubeconfig: &PathBuf, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running kubectl")?;
    if !out.status.success() {
        bail!(
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn api_server_runs_on_an_external_etcd() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("skiff-e2e-etcd-")
        .tempdir_in("/var/tmp")?;
    let rt = tokio::runtime::Runtime::new()?;
    let etcd = rt
        .block_on(EtcdCluster::start(&dir.path().join("etcd"), 1))
        .context("starting etcd (`make deps` installs Debian's etcd-server)")?;
    let endpoint = etcd.endpoints();

    let data = dir.path().join("data");
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path)?;
    let port = free_port()?;
    let started = Instant::now();
    let _server = Killed(
        Command::new(skiff_bin())
            .arg("server")
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--datastore-endpoint", &endpoint])
            .args(["--no-agent", "--no-controllers"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", skiff_bin().display()))?,
    );
    let kubeconfig = data.join("admin.kubeconfig");
    let server_log = || tail(&std::fs::read_to_string(&log_path).unwrap_or_default(), 40);
    wait_until(Duration::from_secs(120), || {
        Ok(kubeconfig.exists() && kubectl(&kubeconfig, &["get", "namespaces"]).is_ok())
    })
    .with_context(|| format!("API server not up; log:\n{}", server_log()))?;
    eprintln!("API server on etcd answered after {:?}", started.elapsed());

    // Create and read back.
    kubectl(
        &kubeconfig,
        &["create", "configmap", "on-etcd", "--from-literal=a=1"],
    )?;
    let got = kubectl(
        &kubeconfig,
        &["get", "configmap", "on-etcd", "-o", "jsonpath={.data.a}"],
    )?;
    assert_eq!(got, "1");

    // A watch sees a later create.
    let mut watch = Killed(
        Command::new("kubectl")
            .env("KUBECONFIG", &kubeconfig)
            .args(["get", "configmaps", "--watch", "-o", "name"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let (tx, rx) = mpsc::channel();
    let stdout = watch.0.stdout.take().context("kubectl stdout")?;
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // The watch lists first: wait for the existing object before creating.
    let wait_line = |want: &str| -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
                if line.trim() == want {
                    return Ok(());
                }
            }
        }
        bail!("kubectl --watch never printed {want}")
    };
    wait_line("configmap/on-etcd")?;
    kubectl(&kubeconfig, &["create", "configmap", "watched"])?;
    wait_line("configmap/watched")?;

    // The objects are in etcd, and no embedded store was made.
    let keys = rt.block_on(async {
        let remote = RemoteStore::connect(&endpoint).await?;
        let prefix = b"/registry/core/configmaps/default/".to_vec();
        remote
            .range(RangeRequest {
                range_end: skiff_store::prefix_end(&prefix),
                key: prefix,
                keys_only: true,
                ..Default::default()
            })
            .await
    })?;
    let names: Vec<String> = keys
        .kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect();
    assert!(
        names.iter().any(|k| k.ends_with("/on-etcd"))
            && names.iter().any(|k| k.ends_with("/watched")),
        "keys in etcd: {names:?}"
    );
    assert!(
        !data.join("store").exists(),
        "an embedded store was created"
    );
    drop(watch);
    Ok(())
}

#[test]
fn an_unreachable_datastore_is_a_clear_error() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("skiff-e2e-etcd-")
        .tempdir_in("/var/tmp")?;
    // Nothing listens on this port (it was free a moment ago).
    let port = skiff_store::etcd_process::free_port()?;
    let out = Command::new(skiff_bin())
        .arg("server")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--listen", &format!("127.0.0.1:{}", free_port()?)])
        .args(["--datastore-endpoint", &format!("http://127.0.0.1:{port}")])
        .args(["--no-agent", "--no-controllers"])
        .stdin(Stdio::null())
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("connecting to the datastore") && err.contains(&port.to_string()),
        "{err}"
    );
    Ok(())
}
