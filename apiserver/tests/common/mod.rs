//! A real API server over the real embedded store in a temp directory,
//! driven with the real `kubectl` and `curl`. [`with_server`] stops both
//! and removes the directory at the end of a test, also when it fails.

#![allow(dead_code)]

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use futures::FutureExt;
use serde_json::Value;
use skiff_apiserver::{ApiServer, ApiServerConfig};
use skiff_store::{Store, StoreConfig};
use tokio::io::AsyncWriteExt;

/// A running server and what clients need to reach it.
pub struct Harness {
    pub server: Option<ApiServer>,
    pub store: Store,
    pub dir: tempfile::TempDir,
    pub url: String,
    pub token: String,
    pub ca_path: PathBuf,
    pub kubeconfig: PathBuf,
}

/// Opens the store (`Store::open` itself waits for the sled lock a
/// previous store of this process may still hold after `shutdown`).
async fn open_store(dir: &std::path::Path) -> Store {
    Store::open(StoreConfig::new(dir.join("store")))
        .await
        .unwrap_or_else(|e| panic!("open store: {e}"))
}

/// What a command printed.
#[derive(Debug)]
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Harness {
    pub async fn start_in(dir: tempfile::TempDir) -> Harness {
        Self::start_configured(dir, |_| {}).await
    }

    /// [`Harness::start_in`] with the server's configuration adjusted.
    pub async fn start_configured(
        dir: tempfile::TempDir,
        configure: impl FnOnce(&mut ApiServerConfig),
    ) -> Harness {
        let store = open_store(dir.path()).await;
        let mut config = ApiServerConfig::new(dir.path().join("server"));
        config.listen = "127.0.0.1:0".parse().unwrap();
        configure(&mut config);
        let server = ApiServer::start(config, Arc::new(store.clone()))
            .await
            .expect("start server");
        let ca_path = dir.path().join("ca.crt");
        std::fs::write(&ca_path, server.ca_pem()).unwrap();
        Harness {
            url: server.url().to_string(),
            token: server.admin_token().to_string(),
            kubeconfig: server.kubeconfig_path().to_path_buf(),
            server: Some(server),
            store,
            dir,
            ca_path,
        }
    }

    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        self.store.shutdown().await;
        self.dir
    }

    /// Runs kubectl against the server (its cache inside the temp dir).
    pub async fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let cache = self.dir.path().join("kube-cache");
        let mut cmd = tokio::process::Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&cache)
            .args(args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("kubectl runs");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(input.as_bytes()).await.unwrap();
            drop(pipe);
        }
        let out =
            tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
                .await
                .expect("kubectl finished in time")
                .unwrap();
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// kubectl that must succeed; returns stdout.
    pub async fn kubectl_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin).await;
        assert!(
            out.ok,
            "kubectl {args:?} failed:\n{}\n{}",
            out.stdout, out.stderr
        );
        out.stdout
    }

    fn curl_cmd(&self, method: &str, path: &str, auth: bool) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("curl");
        cmd.args(["-sS", "--cacert"])
            .arg(&self.ca_path)
            .args(["-X", method]);
        if auth {
            cmd.arg("-H")
                .arg(format!("Authorization: Bearer {}", self.token));
        }
        cmd.arg(format!("{}{}", self.url, path));
        cmd.kill_on_drop(true);
        cmd
    }

    /// One request with curl: (HTTP status, body, response headers).
    pub async fn curl_full(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
        auth: bool,
        extra: &[&str],
    ) -> (u16, String, String) {
        let headers = self.dir.path().join(format!("headers-{}", rand_suffix()));
        let mut cmd = self.curl_cmd(method, path, auth);
        cmd.arg("-D")
            .arg(&headers)
            .args(["-w", "\n%{http_code}"])
            .args(extra);
        if let Some((ct, _)) = body {
            cmd.args(["-H", &format!("Content-Type: {ct}"), "--data-binary", "@-"]);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("curl runs");
        let mut pipe = child.stdin.take().unwrap();
        if let Some((_, b)) = body {
            pipe.write_all(b).await.unwrap();
        }
        drop(pipe);
        let out = child.wait_with_output().await.unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let hdrs = std::fs::read_to_string(&headers).unwrap_or_default();
        let _ = std::fs::remove_file(&headers);
        (code.trim().parse().unwrap_or(0), body.to_string(), hdrs)
    }

    /// A request whose answer is JSON: (status, body).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
        let (code, text, _) = self
            .curl_full(
                method,
                path,
                bytes.as_deref().map(|b| ("application/json", b)),
                true,
                &[],
            )
            .await;
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A streaming GET (watch): a child whose stdout yields lines.
    pub fn curl_stream(&self, path: &str) -> tokio::process::Child {
        self.curl_stream_with(path, &[])
    }

    /// [`Harness::curl_stream`] with extra curl arguments (headers).
    pub fn curl_stream_with(&self, path: &str, extra: &[&str]) -> tokio::process::Child {
        let mut cmd = self.curl_cmd("GET", path, true);
        cmd.args(extra);
        cmd.arg("-N")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null());
        cmd.spawn().expect("curl runs")
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst).to_string()
}

/// Runs `test` against a fresh server; always stops it afterwards.
pub async fn with_server(test: impl AsyncFnOnce(&Harness)) {
    with_server_configured(|_| {}, test).await
}

/// [`with_server`] with the server's configuration adjusted.
pub async fn with_server_configured(
    configure: impl FnOnce(&mut ApiServerConfig),
    test: impl AsyncFnOnce(&Harness),
) {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start_configured(dir, configure).await;
    let result = AssertUnwindSafe(test(&h)).catch_unwind().await;
    h.stop().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
