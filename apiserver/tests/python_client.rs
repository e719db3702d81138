//! The official Python `kubernetes` client (PyPI, pinned in the Makefile's
//! `tools` target) against a real server: `tests/python/client_matrix.py`
//! does typed CRUD with every patch type, status and scale subresources,
//! label and field selectors, pagination, watch resume, 410 Gone and
//! errors as `ApiException`. This test starts the server, runs the script
//! and answers its `@@compact` requests by compacting the store (there is
//! no HTTP call that compacts).

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::{with_server, Harness};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The whole script, generously: it takes a few seconds.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/python/client_matrix.py")
}

/// Fails with what to install when python3 or the module is missing.
async fn require_python_client() {
    let out = tokio::process::Command::new("python3")
        .args(["-c", "import kubernetes; print(kubernetes.__version__)"])
        .output()
        .await;
    match out {
        Err(e) => panic!("python3 is needed for this test ({e}); install it, then `make tools`"),
        Ok(o) if !o.status.success() => panic!(
            "the Python `kubernetes` module is missing: run `make tools` (pip install kubernetes)\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Ok(o) => eprintln!("python kubernetes {}", String::from_utf8_lossy(&o.stdout).trim()),
    }
}

/// Compacts the store at its current revision.
async fn compact(h: &Harness) {
    let current = skiff_store::Kv::current_revision(&h.store).await.unwrap();
    skiff_store::Kv::compact(&h.store, current).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_kubernetes_client_matrix() {
    require_python_client().await;
    with_server(async |h| {
        let mut child = tokio::process::Command::new("python3")
            .arg(script())
            .arg(&h.kubeconfig)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs");
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut stderr = child.stderr.take().unwrap();
        let stderr_task = tokio::spawn(async move {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s).await;
            s
        });

        let run = async {
            let mut log = Vec::new();
            let mut done = false;
            while let Some(line) = stdout.next_line().await.unwrap() {
                match line.as_str() {
                    "@@compact" => {
                        compact(h).await;
                        stdin.write_all(b"ok\n").await.unwrap();
                        stdin.flush().await.unwrap();
                    }
                    "@@done" => done = true,
                    _ => log.push(line),
                }
            }
            (done, log)
        };
        let (done, log) = tokio::time::timeout(SCRIPT_TIMEOUT, run)
            .await
            .expect("the script finished in time");
        let status = child.wait().await.unwrap();
        let stderr = stderr_task.await.unwrap();
        assert!(
            done && status.success(),
            "client_matrix.py failed ({status}); its steps:\n{}\n{stderr}",
            log.join("\n")
        );
        eprintln!("{}", log.join("\n"));
    })
    .await;
}
