//! Test kit for Skiff's end-to-end tests: start a real `skiff server` (with
//! its own containerd) in a temporary directory, drive it with the real
//! `kubectl`, and clean everything up afterwards — also when a test fails,
//! because [`Cluster`] does it in `Drop`.
//!
//! What a server started here leaves on the host, and how it is removed:
//! - the skiff process: SIGTERM, then SIGKILL after 20 s;
//! - pods: every sandbox and container is stopped and removed through CRI
//!   before containerd goes (`skiff_agent::cleanup_all_pods`);
//! - containerd and its shims: killed by matching the socket path, which lies
//!   inside the test's temporary directory;
//! - mounts under the temporary directory (overlay rootfs, shm): unmounted;
//! - the CNI bridge, named per test: deleted; so is the agent's nftables
//!   table `ip skiff-<bridge>`;
//! - the temporary directory: removed.
//!
//! Tests that need several nodes use [`rig::Rig`] instead: a server and
//! agents in network namespaces of their own, each host with its own
//! containerd, with faults to inject (kill a host or the server, cut a link).
//! Both drive the cluster through [`Kubectl`].
//!
//! For the replicated store there is [`store_servers`] (several `skiff
//! server` processes without agents, talked to over the etcd v3 API),
//! [`kv_history`] (concurrent clients recording what they saw) and
//! [`linearizability`] (the checker for those recordings).
//!
//! The `skiff` binary is found through `SKIFF_BIN`, else in
//! `$CARGO_TARGET_DIR/debug/skiff`, else `<workspace>/target/debug/skiff`
//! (the Makefile builds it before running the tests).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Path of the `skiff` binary under test.
pub fn skiff_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SKIFF_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("debug/skiff")
}

/// A free TCP port on loopback (racy in principle, fine for tests): from
/// the range in `SKIFF_PORTS` when it is set (see
/// `skiff_store::etcd_process::PORTS_ENV`), else from
/// `skiff_store::etcd_process::PORT_RANGE`, below the kernel's ephemeral
/// range.
pub fn free_port() -> anyhow::Result<u16> {
    // Not port 0: the kernel hands those out from the ephemeral range,
    // where any outgoing connection may take a killed server's port before
    // the test restarts it there (a CI run met a restarted store server
    // that never came up).
    Ok(skiff_store::etcd_process::free_port()?)
}

/// A log file as text; a crash can cut a line inside a UTF-8 character,
/// so bytes that are not UTF-8 are replaced rather than losing the log.
pub fn read_log(path: &std::path::Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Options for a test cluster.
pub struct ClusterOptions {
    /// Third octet of the pod CIDR `10.199.<n>.0/24`, distinct per test so
    /// tests can run side by side.
    pub subnet: u8,
}

/// Agent flags that keep a test node from acting on the host's disk and
/// memory (this machine's disk is often more than 85% full, which would
/// evict test pods and garbage-collect their images; registry-less nodes
/// cannot pull them back): no eviction thresholds, no image GC. A flag the
/// test passes itself (in `extra`) wins.
pub fn quiet_node_flags(extra: &[String]) -> Vec<&'static str> {
    let given = |flag: &str| extra.iter().any(|a| a == flag);
    let mut out = Vec::new();
    if !given("--eviction-hard") {
        out.extend(["--eviction-hard", ""]);
    }
    if !given("--image-gc-high-threshold") {
        out.extend(["--image-gc-high-threshold", "100"]);
    }
    out
}

/// A running single-node cluster: `skiff server` with its embedded agent.
pub struct Cluster {
    /// The temporary directory holding everything the cluster writes.
    pub dir: tempfile::TempDir,
    /// HTTPS port of the API server.
    pub port: u16,
    bridge: String,
    subnet: u8,
    child: Option<Child>,
    /// Extra `skiff server` flags ([`Cluster::start_with_args`]).
    extra_args: Vec<String>,
}

impl Cluster {
    /// Starts a server and waits until the API answers and the node is Ready.
    pub fn start(opts: ClusterOptions) -> anyhow::Result<Cluster> {
        Self::start_with_args(opts, &[])
    }

    /// [`Cluster::start`] with extra `skiff server` flags.
    pub fn start_with_args(opts: ClusterOptions, extra: &[&str]) -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("skiff-e2e-")
            .tempdir_in("/var/tmp")?;
        let port = free_port()?;
        let mut cluster = Cluster {
            dir,
            port,
            bridge: format!("skt{}", opts.subnet),
            subnet: opts.subnet,
            child: None,
            extra_args: extra.iter().map(|a| a.to_string()).collect(),
        };
        cluster.spawn()?;
        cluster.wait_ready(Duration::from_secs(120))?;
        Ok(cluster)
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The admin kubeconfig the server wrote.
    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir().join("admin.kubeconfig")
    }

    /// The socket of the containerd the embedded agent started.
    pub fn containerd_socket(&self) -> PathBuf {
        self.data_dir().join("agent/containerd/containerd.sock")
    }

    /// The cluster's service CIDR, `10.198.<n>.0/24`.
    pub fn service_cidr(&self) -> String {
        format!("10.198.{}.0/24", self.subnet)
    }

    /// Node name used by the test cluster.
    pub fn node_name(&self) -> String {
        format!("e2e-node-{}", self.subnet)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))?;
        let child = Command::new(skiff_bin())
            .arg("server")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--etcd-listen")
            .arg("127.0.0.1:0")
            .arg("--node-name")
            .arg(self.node_name())
            .arg("--node-ip")
            .arg("127.0.0.1")
            .arg("--agent-port")
            .arg("0")
            .arg("--pod-cidr")
            .arg(format!("10.199.{}.0/24", self.subnet))
            .arg("--cni-bridge")
            .arg(&self.bridge)
            // The node IPAM hands this node exactly the test's pod CIDR, and
            // Service IPs come from a per-test range too.
            .arg("--cluster-cidr")
            .arg(format!("10.199.{}.0/24", self.subnet))
            .arg("--node-cidr-mask-size")
            .arg("24")
            .arg("--service-cidr")
            .arg(self.service_cidr())
            .args(quiet_node_flags(&self.extra_args))
            .args(&self.extra_args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", skiff_bin().display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// The server's log so far (for failure messages).
    pub fn server_log(&self) -> String {
        read_log(&self.dir.path().join("server.log"))
    }

    /// Passes a test's result through; on failure first prints the error,
    /// then the last `lines` of the server's log (the error first: CI
    /// shows only the head and the tail of a long log).
    pub fn log_failure<T>(&self, result: anyhow::Result<T>, lines: usize) -> anyhow::Result<T> {
        if let Err(e) = &result {
            eprintln!("FAILED: {e:#}");
            eprintln!("--- server log ---\n{}", tail(&self.server_log(), lines));
        }
        result
    }

    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let node = self.node_name();
        let ok = wait_until(timeout, || {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(anyhow::anyhow!("skiff server exited: {status}"));
                }
            }
            if !self.kubeconfig().exists() {
                return Ok(false);
            }
            let out = self.kubectl(&[
                "get",
                "node",
                &node,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ])?;
            Ok(out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "True")
        });
        match ok {
            Ok(()) => Ok(()),
            Err(e) => bail!(
                "cluster not ready: {e:#}\n--- server log ---\n{}",
                tail(&self.server_log(), 80)
            ),
        }
    }

    /// kubectl with this cluster's admin kubeconfig.
    pub fn kube(&self) -> Kubectl {
        Kubectl {
            kubeconfig: self.kubeconfig(),
            netns: None,
        }
    }

    /// Runs kubectl against this cluster.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.kube().run(args)
    }

    /// Runs kubectl with `stdin` fed to it.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> anyhow::Result<Output> {
        self.kube().run_stdin(args, stdin)
    }

    /// Runs kubectl and fails unless it succeeds; returns its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> anyhow::Result<String> {
        self.kube().ok(args)
    }

    /// Stops the server (SIGTERM, then SIGKILL) without cleaning up, so that
    /// it can be started again on the same data directory.
    pub fn stop_server(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(20));
        }
    }

    /// Starts the server again on the same data directory.
    pub fn restart_server(&mut self) -> anyhow::Result<()> {
        self.stop_server();
        self.spawn()?;
        self.wait_ready(Duration::from_secs(120))
    }

    fn cleanup(&mut self) {
        let socket = self.containerd_socket();
        if socket.exists() {
            // Remove every pod through CRI while containerd still runs.
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                let _ = rt.block_on(async {
                    tokio::time::timeout(
                        Duration::from_secs(60),
                        skiff_agent::cleanup_all_pods(&socket),
                    )
                    .await
                });
            }
        }
        self.stop_server();
        // containerd and shims of this cluster name its socket in their command line.
        kill_matching(&self.dir.path().to_string_lossy());
        unmount_under(self.dir.path());
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        // The embedded agent's service-proxy table (named after the bridge).
        let table = skiff_agent::net::ruleset::table_name(&self.bridge);
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &table])
            .output();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// The real `kubectl`, pointed at a kubeconfig and optionally run inside a
/// network namespace (the multi-host rig's API server is only reachable
/// from the rig's namespaces).
#[derive(Debug, Clone)]
pub struct Kubectl {
    /// The kubeconfig passed as `KUBECONFIG`.
    pub kubeconfig: PathBuf,
    /// Run kubectl in this named network namespace (`/run/netns/<name>`).
    pub netns: Option<String>,
}

impl Kubectl {
    fn command(&self) -> Command {
        let mut cmd = match &self.netns {
            Some(ns) => in_netns(ns, "kubectl"),
            None => Command::new("kubectl"),
        };
        cmd.env("KUBECONFIG", &self.kubeconfig);
        cmd
    }

    /// Runs kubectl with `args`.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running kubectl (is it installed?)")
    }

    /// Runs kubectl with `stdin` fed to it.
    pub fn run_stdin(&self, args: &[&str], stdin: &str) -> anyhow::Result<Output> {
        use std::io::Write;
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running kubectl")?;
        child
            .stdin
            .take()
            .context("kubectl stdin")?
            .write_all(stdin.as_bytes())?;
        Ok(child.wait_with_output()?)
    }

    /// Runs kubectl and fails unless it succeeds; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        check(&format!("kubectl {}", args.join(" ")), self.run(args)?)
    }

    /// `kubectl apply -f -` of a manifest.
    pub fn apply(&self, manifest: &str) -> anyhow::Result<String> {
        check(
            "kubectl apply",
            self.run_stdin(&["apply", "-f", "-"], manifest)?,
        )
    }

    /// Runs kubectl with `-o json` appended and parses its output.
    pub fn json(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        Ok(serde_json::from_str(&self.ok(&a)?)?)
    }
}

/// `cmd` run inside the named network namespace (`nsenter --net`, which
/// execs, so the child's pid is `cmd`'s). Only the network namespace changes:
/// mounts made by the child (containerd's overlays) stay visible to the test
/// and are unmounted by it.
pub fn in_netns(netns: &str, cmd: &str) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{netns}"))
        .arg("--")
        .arg(cmd);
    c
}

/// The stdout of a finished command, or an error with its output.
pub fn check(what: &str, out: Output) -> anyhow::Result<String> {
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls `f` every 250 ms until it returns true, an error, or `timeout`.
pub fn wait_until(
    timeout: Duration,
    mut f: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if f()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub(crate) fn terminate(child: &mut Child, grace: Duration) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// SIGKILLs every process whose command line contains `needle`.
pub(crate) fn kill_matching(needle: &str) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Unmounts everything mounted below `dir`, deepest first.
fn unmount_under(dir: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    let prefix = dir.to_string_lossy().to_string();
    let mut targets: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|t| t.starts_with(&prefix))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for t in targets {
        let _ = nix::mount::umount2(t, nix::mount::MntFlags::MNT_DETACH);
    }
}
pub mod kv_history;
pub mod linearizability;
pub mod rig;
pub mod store_servers;
