//! The etcd v3 gRPC API, driven by the real `etcdctl` 3.4 (Debian's
//! `etcd-client` package): what etcdctl prints against Skiff must be what it
//! prints against etcd.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use skiff_store::{serve_etcd_api, Store};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const ETCDCTL: &str = "/usr/bin/etcdctl";

/// A store served on a loopback port; stops both when dropped or shut down.
struct Served {
    store: Store,
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Served {
    async fn start() -> Served {
        assert!(
            Path::new(ETCDCTL).exists(),
            "{ETCDCTL} is missing: run `make deps` (it installs Debian's etcd-client)"
        );
        let dir = tempfile::tempdir().unwrap();
        let store = common::open_store(dir.path()).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn({
            let store = store.clone();
            async move {
                serve_etcd_api(store, listener, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            }
        });
        Served {
            store,
            port,
            stop: Some(stop),
            server: Some(server),
            _dir: dir,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(ETCDCTL);
        c.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints=127.0.0.1:{}", self.port))
            .arg("--dial-timeout=5s")
            .arg("--command-timeout=10s")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// Run etcdctl; returns (success, stdout, stderr).
    async fn run_input(&self, args: &[&str], input: &str) -> (bool, String, String) {
        let mut c = self.command(args);
        c.stdin(Stdio::piped());
        let mut child = c.spawn().expect("start etcdctl");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).await.unwrap();
        drop(stdin);
        let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .expect("etcdctl hung")
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        self.run_input(args, "").await
    }

    /// Run etcdctl and expect success; returns stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args).await;
        assert!(ok, "etcdctl {args:?} failed: {err}{out}");
        out
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .expect("server did not stop")
                .unwrap();
        }
        self.store.shutdown().await;
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_delete_and_revisions() {
    let s = Served::start().await;
    assert_eq!(s.ok(&["put", "/a/1", "one"]).await, "OK\n");
    assert_eq!(s.ok(&["put", "/a/2", "two"]).await, "OK\n");
    assert_eq!(s.ok(&["put", "/b", "bee"]).await, "OK\n");
    assert_eq!(s.ok(&["get", "/a/1"]).await, "/a/1\none\n");
    assert_eq!(
        s.ok(&["get", "--prefix", "/a/"]).await,
        "/a/1\none\n/a/2\ntwo\n"
    );
    assert_eq!(
        s.ok(&["get", "--prefix", "/a/", "--keys-only"]).await,
        "/a/1\n\n/a/2\n\n"
    );
    assert_eq!(
        s.ok(&["get", "--prefix", "/", "--order=DESCEND", "--limit=2"])
            .await,
        "/b\nbee\n/a/2\ntwo\n"
    );
    let fields = s
        .ok(&["get", "--prefix", "/", "--limit=1", "-w", "fields"])
        .await;
    assert!(
        fields.contains("\"Count\" : 3") && fields.contains("\"More\" : true"),
        "{fields}"
    );

    // Revisions: /a/1 was written at revision 2 (the store starts at 1).
    assert_eq!(s.ok(&["put", "/a/1", "uno"]).await, "OK\n");
    assert_eq!(s.ok(&["get", "/a/1", "--rev=2"]).await, "/a/1\none\n");
    assert_eq!(s.ok(&["get", "/a/1"]).await, "/a/1\nuno\n");
    let fields = s.ok(&["get", "/a/1", "-w", "fields"]).await;
    for want in [
        "\"CreateRevision\" : 2",
        "\"ModRevision\" : 5",
        "\"Version\" : 2",
        "\"Revision\" : 5",
    ] {
        assert!(fields.contains(want), "{want} not in {fields}");
    }

    assert_eq!(s.ok(&["del", "/a/1"]).await, "1\n");
    assert_eq!(s.ok(&["del", "--prefix", "/"]).await, "2\n");
    assert_eq!(s.ok(&["get", "--prefix", "/"]).await, "");
    assert_eq!(s.ok(&["del", "/nothing"]).await, "0\n");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_from_stdin() {
    let s = Served::start().await;
    s.ok(&["put", "/cfg", "v1"]).await;
    // etcdctl's txn grammar: compares, blank line, success ops, blank
    // line, failure ops, blank line.
    let input = "value(\"/cfg\") = \"v1\"\nmod(\"/cfg\") > \"0\"\n\nput /cfg v2\nget /cfg\n\nput /cfg failed\n\n";
    let (ok, out, err) = s.run_input(&["txn"], input).await;
    assert!(ok, "{err}");
    assert_eq!(out, "SUCCESS\n\nOK\n\n/cfg\nv2\n");
    // The same txn again: the compare fails, the failure branch runs.
    let (ok, out, err) = s.run_input(&["txn"], input).await;
    assert!(ok, "{err}");
    assert_eq!(out, "FAILURE\n\nOK\n");
    assert_eq!(
        s.ok(&["get", "/cfg", "--print-value-only"]).await,
        "failed\n"
    );
    // The interactive form reads the same grammar, with prompts.
    let (ok, out, err) = s
        .run_input(
            &["txn", "-i"],
            "version(\"/cfg\") = \"3\"\n\ndel /cfg\n\n\n",
        )
        .await;
    assert!(ok, "{err}");
    assert!(out.contains("SUCCESS") && out.ends_with("1\n"), "{out}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_events() {
    let s = Served::start().await;
    s.ok(&["put", "/w/old", "0"]).await;
    let mut child = s
        .command(&["watch", "--prefix", "/w/", "--prev-kv", "--rev=3"])
        .spawn()
        .expect("start etcdctl watch");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Starting at the next revision (3), the watch sees every write below
    // however long etcdctl takes to connect.
    s.ok(&["put", "/w/a", "1"]).await;
    s.ok(&["put", "/w/a", "2"]).await;
    s.ok(&["put", "/other", "x"]).await;
    s.ok(&["del", "/w/a"]).await;
    let want = [
        "PUT", "/w/a", "1", //
        "PUT", "/w/a", "1", "/w/a", "2", // prev_kv first
        "DELETE", "/w/a", "2", "/w/a", "",
    ];
    let mut got = Vec::new();
    while got.len() < want.len() {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("watch printed only {got:?}"))
            .unwrap()
            .expect("watch ended");
        got.push(line);
    }
    assert_eq!(got, want);
    child.kill().await.unwrap();

    // From a past revision, history is replayed first.
    let mut child = s
        .command(&["watch", "--rev=2", "/w/old"])
        .spawn()
        .expect("start etcdctl watch");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut got = Vec::new();
    while got.len() < 3 {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .expect("watch ended");
        got.push(line);
    }
    assert_eq!(got, ["PUT", "/w/old", "0"]);
    child.kill().await.unwrap();
    s.shutdown().await;
}

/// The lease id in etcdctl's "lease 000000000000000a granted with TTL(60s)".
fn lease_id(out: &str) -> String {
    let id = out
        .strip_prefix("lease ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no lease id in {out:?}"));
    id.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases() {
    let s = Served::start().await;
    let out = s.ok(&["lease", "grant", "60"]).await;
    assert!(out.ends_with("granted with TTL(60s)\n"), "{out}");
    let id = lease_id(&out);
    assert_eq!(s.ok(&["put", "--lease", &id, "/held", "v"]).await, "OK\n");
    let out = s.ok(&["lease", "keep-alive", "--once", &id]).await;
    assert_eq!(out, format!("lease {id} keepalived with TTL(60)\n"));
    let out = s.ok(&["lease", "timetolive", "--keys", &id]).await;
    assert!(
        out.starts_with(&format!("lease {id} granted with TTL(60s), remaining(")),
        "{out}"
    );
    assert!(out.ends_with("attached keys([/held])\n"), "{out}");
    let out = s.ok(&["lease", "list"]).await;
    assert!(out.contains(&id), "{out}");

    assert_eq!(
        s.ok(&["lease", "revoke", &id]).await,
        format!("lease {id} revoked\n")
    );
    assert_eq!(s.ok(&["get", "/held"]).await, "");
    let out = s.ok(&["lease", "timetolive", &id]).await;
    assert_eq!(out, format!("lease {id} already expired\n"));

    // Unknown leases: etcd's errors.
    let (ok, _, err) = s.run(&["put", "--lease", "abcdef", "/k", "v"]).await;
    assert!(
        !ok && err.contains("etcdserver: requested lease not found"),
        "{err}"
    );
    let (ok, _, err) = s.run(&["lease", "revoke", "abcdef"]).await;
    assert!(
        !ok && err.contains("etcdserver: requested lease not found"),
        "{err}"
    );
    let (ok, out, err) = s.run(&["lease", "keep-alive", "--once", "abcdef"]).await;
    assert!(
        !ok && err.contains("requested lease not found"),
        "{out}{err}"
    );

    // A short lease expires on its own and takes its key along.
    let id = lease_id(&s.ok(&["lease", "grant", "2"]).await);
    s.ok(&["put", "--lease", &id, "/brief", "v"]).await;
    let start = std::time::Instant::now();
    while !s.ok(&["get", "/brief"]).await.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "lease did not expire"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_status_and_compaction() {
    let s = Served::start().await;
    for v in ["1", "2", "3"] {
        s.ok(&["put", "/c", v]).await;
    }
    let out = s.ok(&["endpoint", "status"]).await;
    // endpoint, member id, version, db size, is leader, is learner, raft
    // term, raft index, raft applied index, errors.
    let fields: Vec<&str> = out.trim_end_matches('\n').split(", ").collect();
    assert_eq!(fields.len(), 10, "{out}");
    assert_eq!(fields[0], format!("127.0.0.1:{}", s.port));
    assert_eq!(fields[1], "1");
    assert_eq!(fields[2], skiff_store::etcd::ETCD_API_VERSION);
    assert_eq!((fields[4], fields[5]), ("true", "false"), "{out}");
    let json = s.ok(&["endpoint", "status", "-w", "json"]).await;
    assert!(json.contains("\"revision\":4"), "{json}");

    let out = s.ok(&["compaction", "3"]).await;
    assert_eq!(out, "compacted revision 3\n");
    let (ok, _, err) = s.run(&["get", "/c", "--rev=2"]).await;
    assert!(
        !ok && err.contains("etcdserver: mvcc: required revision has been compacted"),
        "{err}"
    );
    assert_eq!(s.ok(&["get", "/c", "--rev=3"]).await, "/c\n2\n");
    let (ok, _, err) = s.run(&["get", "/c", "--rev=99"]).await;
    assert!(
        !ok && err.contains("etcdserver: mvcc: required revision is a future revision"),
        "{err}"
    );
    // A watch from a compacted revision is canceled, as by etcd.
    let (ok, out, err) = s.run(&["watch", "--rev=2", "/c"]).await;
    assert!(
        !ok && format!("{out}{err}").contains("required revision has been compacted"),
        "{out}{err}"
    );
    s.shutdown().await;
}
