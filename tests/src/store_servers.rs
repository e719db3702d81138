//! Several `skiff server` processes forming one replicated store on
//! loopback, for the store's cluster tests (`tests/tests/store_cluster.rs`).
//!
//! Each [`StoreServer`] runs `skiff server --no-agent --no-controllers`
//! (controllers optional) with its own data directory and its own loopback
//! ports (Kubernetes API, etcd v3 API, raft peer port), picked free by
//! binding port 0 unless a test gives them. The tests
//! talk to each server through its etcd v3 gRPC port with the generated
//! client types of `skiff_store::etcd::pb`.
//!
//! Cleanup: a server is SIGKILLed and reaped in `Drop` (also when a test
//! panics); [`StoreCluster`] drops its servers before its temporary
//! directory, which holds every data directory and log.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use skiff_store::etcd::pb::etcdserverpb as pb;
use tonic::transport::{Channel, Endpoint};

use crate::{free_port, skiff_bin, tail};

/// How long one etcd call from a test may take: more than the store's own
/// 7 s request timeout, so the store's answer (not ours) is what we see.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(12);
/// How long a server may take to start and see a leader (a debug build on
/// a loaded 2-core machine, joining included).
pub const START_TIMEOUT: Duration = Duration::from_secs(120);

/// An etcd v3 KV client for `endpoint` (`http://127.0.0.1:PORT`): a lazy
/// channel, so a server that is down fails each call instead of this.
pub fn kv_client(endpoint: &str) -> pb::kv_client::KvClient<Channel> {
    pb::kv_client::KvClient::new(channel(endpoint))
}

fn channel(endpoint: &str) -> Channel {
    Endpoint::from_shared(endpoint.to_string())
        .expect("a valid endpoint URL")
        .connect_timeout(Duration::from_secs(2))
        .timeout(CALL_TIMEOUT)
        .connect_lazy()
}

/// One `skiff server` of a test cluster.
pub struct StoreServer {
    /// Short name for messages (`s1`, …).
    pub name: String,
    /// The server's `--data-dir`.
    pub data_dir: PathBuf,
    /// Port of the etcd v3 API.
    pub etcd_port: u16,
    /// Port of the raft peer protocol.
    pub peer_port: u16,
    api_port: u16,
    snapshot_entries: Option<u64>,
    controllers: bool,
    log: PathBuf,
    child: Option<Child>,
}

impl StoreServer {
    /// A server named `name` with its data directory and log under `root`
    /// (not started).
    pub fn new(
        root: &Path,
        name: &str,
        snapshot_entries: Option<u64>,
    ) -> anyhow::Result<StoreServer> {
        Ok(StoreServer {
            name: name.to_string(),
            data_dir: root.join(name),
            etcd_port: free_port()?,
            peer_port: free_port()?,
            api_port: free_port()?,
            snapshot_entries,
            controllers: false,
            log: root.join(format!("{name}.log")),
            child: None,
        })
    }

    /// Uses these ports (Kubernetes API, etcd API, raft peers) instead of
    /// free ones, for tests given a fixed port range.
    pub fn with_ports(mut self, api: u16, etcd: u16, peer: u16) -> StoreServer {
        (self.api_port, self.etcd_port, self.peer_port) = (api, etcd, peer);
        self
    }

    /// Runs the server's controllers too (they are off by default).
    pub fn with_controllers(mut self) -> StoreServer {
        self.controllers = true;
        self
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The etcd API URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.etcd_port)
    }

    /// The peer URL (what `--join` takes).
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// A KV client for this server.
    pub fn kv(&self) -> pb::kv_client::KvClient<Channel> {
        kv_client(&self.endpoint())
    }

    /// The cluster's join token, as this server wrote it.
    pub fn token(&self) -> anyhow::Result<String> {
        let path = self.data_dir.join("join-token");
        Ok(std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .to_string())
    }

    /// Start the process: a new cluster (`join` None, empty data
    /// directory), a restart (None, existing directory), or a join
    /// (`Some((peer URL, token))`).
    pub fn start(&mut self, join: Option<(&str, &str)>) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("{} is already running", self.name);
        }
        std::fs::create_dir_all(&self.data_dir)?;
        let log = File::options().create(true).append(true).open(&self.log)?;
        let mut cmd = Command::new(skiff_bin());
        cmd.arg("server")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.api_port))
            .arg("--etcd-listen")
            .arg(format!("127.0.0.1:{}", self.etcd_port))
            .arg("--peer-listen")
            .arg(format!("127.0.0.1:{}", self.peer_port))
            .arg("--no-agent");
        if !self.controllers {
            cmd.arg("--no-controllers");
        }
        if let Some(n) = self.snapshot_entries {
            cmd.arg("--store-snapshot-entries").arg(n.to_string());
        }
        if let Some((peer, token)) = join {
            cmd.args(["--join", peer, "--token", token]);
        }
        cmd.env_remove("SKIFF_JOIN_TOKEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} (SKIFF_BIN)", skiff_bin().display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL the process (a crash: no shutdown, no flush) and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM the process (a clean shutdown), SIGKILL after 30 s; reap it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::terminate(&mut child, Duration::from_secs(30));
        }
    }

    /// Wait up to `timeout` for the process to exit by itself (a server
    /// that refuses to start); its exit status, or None if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Whether the process was started and has not been killed.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Remove the data directory (after [`kill`](Self::kill)): the server
    /// lost its disk.
    pub fn wipe(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("wipe {} while it runs", self.name);
        }
        std::fs::remove_dir_all(&self.data_dir)?;
        Ok(())
    }

    /// Whether the process is gone (not started, or exited and not yet
    /// reaped).
    fn exited(&self) -> bool {
        let Some(pid) = self.child.as_ref().map(Child::id) else {
            return true;
        };
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // `pid (comm) state …`; comm may hold spaces and parentheses.
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "Z"),
            Err(_) => true,
        }
    }

    /// The end of the server's log (stdout and stderr of every run).
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }

    /// The whole log.
    pub fn log(&self) -> String {
        crate::read_log(&self.log)
    }

    /// etcd's Maintenance Status of this server, if it answers within 2 s.
    pub async fn status(&self) -> Option<pb::StatusResponse> {
        let mut m = pb::maintenance_client::MaintenanceClient::new(channel(&self.endpoint()));
        let call = m.status(pb::StatusRequest {});
        match tokio::time::timeout(Duration::from_secs(2), call).await {
            Ok(Ok(r)) => Some(r.into_inner()),
            _ => None,
        }
    }

    /// This server's raft node id (from its Status header).
    pub async fn node_id(&self) -> Option<u64> {
        self.status().await?.header.map(|h| h.member_id)
    }

    /// Wait until the server serves the etcd API, knows a leader and
    /// answers a linearizable read.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut kv = self.kv();
        loop {
            if let Some(s) = self.status().await {
                if s.leader != 0 {
                    let read = kv.range(pb::RangeRequest {
                        key: b"/ready".to_vec(),
                        ..Default::default()
                    });
                    if tokio::time::timeout(CALL_TIMEOUT, read)
                        .await
                        .is_ok_and(|r| r.is_ok())
                    {
                        return Ok(());
                    }
                }
            }
            if self.exited() {
                bail!(
                    "{} exited while starting; its log ends:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready after {timeout:?}; its log ends:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for StoreServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Servers of one cluster, in one temporary directory.
pub struct StoreCluster {
    /// The servers, in start order (`s1` started the cluster).
    pub servers: Vec<StoreServer>,
    // Declared after `servers`: dropped (removed) after they are killed.
    dir: tempfile::TempDir,
}

impl StoreCluster {
    /// Start `n` servers: `s1` makes the cluster, the others join it
    /// (concurrently). Returns when every one answers reads.
    /// `snapshot_entries` sets the hidden `--store-snapshot-entries`.
    pub async fn start(n: usize, snapshot_entries: Option<u64>) -> anyhow::Result<StoreCluster> {
        let dir = tempfile::Builder::new()
            .prefix("skiff-store-cluster-")
            .tempdir_in("/var/tmp")?;
        let mut servers = Vec::new();
        for i in 1..=n {
            servers.push(StoreServer::new(
                dir.path(),
                &format!("s{i}"),
                snapshot_entries,
            )?);
        }
        let mut cluster = StoreCluster { servers, dir };
        cluster.servers[0].start(None)?;
        cluster.servers[0].wait_ready(START_TIMEOUT).await?;
        let (peer, token) = (cluster.servers[0].peer_url(), cluster.servers[0].token()?);
        for s in &mut cluster.servers[1..] {
            s.start(Some((&peer, &token)))?;
        }
        for s in &cluster.servers[1..] {
            s.wait_ready(START_TIMEOUT).await?;
        }
        Ok(cluster)
    }

    /// The temporary directory of the cluster.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Index of the server that leads, as the running servers see it
    /// (every running server that answers names the same leader, and that
    /// leader is running), or None.
    pub async fn leader(&self) -> Option<usize> {
        let mut named = None;
        let mut leader_idx = None;
        for (i, s) in self.servers.iter().enumerate() {
            if !s.is_running() {
                continue;
            }
            let st = s.status().await?;
            if st.leader == 0 || named.is_some_and(|l| l != st.leader) {
                return None;
            }
            named = Some(st.leader);
            if st.header.is_some_and(|h| h.member_id == st.leader) {
                leader_idx = Some(i);
            }
        }
        leader_idx
    }

    /// Wait until the running servers agree on a running leader.
    pub async fn wait_leader(&self, timeout: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.leader().await {
                return Ok(i);
            }
            if Instant::now() > deadline {
                bail!("no agreed leader after {timeout:?}\n{}", self.logs(20));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every server's log tail, for failure messages.
    pub fn logs(&self, lines: usize) -> String {
        let mut out = String::new();
        for s in &self.servers {
            out.push_str(&format!("--- {} ---\n{}\n", s.name, s.log_tail(lines)));
        }
        out
    }

    /// Run `skiff server ARGS… --data-dir <server i's dir>` (a membership
    /// subcommand) and return its stdout.
    pub fn server_cmd(&self, i: usize, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(skiff_bin())
            .arg("server")
            .args(args)
            .arg("--data-dir")
            .arg(&self.servers[i].data_dir)
            .output()?;
        if !out.status.success() {
            bail!(
                "skiff server {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
