//! A multi-host rig on one machine: a `skiff server` and several hosts, each
//! a network namespace with its own address, its own containerd and its own
//! `skiff agent`, wired to one L2 segment. Tests use it to see what only
//! several nodes show (routes between pod CIDRs, a Service with backends on
//! two nodes, NodePorts) and to break things (kill a host, cut a link).
//!
//! ```text
//!  netns skmh<n>-out  ("outside": the user's machine and the switch)
//!    bridge skmh-br 10.196.<n>.1/24 ── kubectl, NodePort clients
//!      ├─ skmh-srv ─veth─ netns skmh<n>-srv  eth0 10.196.<n>.2   skiff server --no-agent
//!      ├─ skmh-h0  ─veth─ netns skmh<n>-h0   eth0 10.196.<n>.10  skiff agent, containerd, pods
//!      └─ skmh-h1  ─veth─ netns skmh<n>-h1   eth0 10.196.<n>.11  skiff agent …
//! ```
//!
//! Processes are started with `nsenter --net` only: they share the test's
//! mount namespace, so every mount a host makes (rootfs overlays, pod netns
//! bind mounts) lies under the rig's temporary directory where the test can
//! remove it. Each host runs a private containerd (the agent starts it under
//! `<dir>/<host>/containerd`), its own CNI bridge and nftables table, all in
//! its namespace.
//!
//! What a test can do with it: [`Rig::start`] N hosts and wait until their
//! nodes are Ready; drive the cluster with [`Rig::kube`] (kubectl in the
//! outside namespace); run commands on a host ([`Rig::on_host`]) or outside
//! ([`Rig::outside_cmd`]); inject faults: [`Rig::kill_host`] (a power cut:
//! agent, containerd, shims and pods SIGKILLed) and [`Rig::start_agent`] to
//! boot it again, [`Rig::cut_link`] / [`Rig::restore_link`] (the host's switch
//! port down/up: carrier loss, every process keeps running), the same for
//! the server ([`Rig::cut_server_link`] / [`Rig::restore_server_link`]),
//! [`Rig::kill_server`] / [`Rig::restart_server`], [`Rig::kill_agent`] (the
//! agent alone crashes; containerd and the pods stay).
//!
//! Clean-up, in [`Rig`]'s `Drop` (so also when a test panics):
//! 1. per host: every pod through CRI (while containerd runs), then the agent
//!    (SIGTERM, SIGKILL after a grace), then whatever containerd, shims and
//!    pods are left ([`skiff_agent::containerd::force_cleanup`]: SIGKILL,
//!    cgroups, mounts);
//! 2. the server;
//! 3. mounts left under the temporary directory;
//! 4. the namespaces (`ip netns del`), which takes their links, bridges,
//!    routes and nftables tables with them;
//! 5. the temporary directory.
//!
//! Addresses: the rig's segment is `10.196.<n>.0/24`; pod and service CIDRs
//! are the caller's ([`RigOptions`]), so rigs in parallel tests stay apart.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::{check, in_netns, kill_matching, skiff_bin, tail, terminate, wait_until, Kubectl};

/// The API server's port inside its namespace.
pub const API_PORT: u16 = 6443;
/// How long a started process gets to stop on SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long a fresh rig may take until every node is Ready (three processes,
/// two containerds and their image imports on a loaded 2-core machine).
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// First host address on the segment: `10.196.<n>.10`.
const FIRST_HOST_OCTET: u8 = 10;
/// `name=True name=False …`: each node's Ready condition.
const NODES_READY_JSONPATH: &str = "jsonpath={range .items[*]}{.metadata.name}=\
    {.status.conditions[?(@.type==\"Ready\")].status} {end}";
/// The server's switch port in the outside namespace.
const SERVER_PORT: &str = "skmh-srv";
/// The CNI bridge inside each host (names need not differ across namespaces).
pub const HOST_BRIDGE: &str = "skmh0";

/// What to build.
#[derive(Debug, Clone)]
pub struct RigOptions {
    /// Third octet of the segment `10.196.<n>.0/24`; also names the
    /// namespaces (`skmh<n>-…`). Distinct per test.
    pub net: u8,
    /// Number of hosts running an agent.
    pub hosts: usize,
    /// `--cluster-cidr` of the server (a /24 per node).
    pub cluster_cidr: String,
    /// `--service-cidr` of the server.
    pub service_cidr: String,
}

/// One host: a network namespace with an agent (and its containerd).
#[derive(Debug)]
pub struct Host {
    /// Node name (`skmh<n>-h<i>`, the same as the namespace's).
    pub name: String,
    /// The host's address on the segment (`--node-ip`).
    pub ip: Ipv4Addr,
    /// The switch port: the veth end in the outside namespace.
    port: String,
    dir: PathBuf,
    agent: Option<Child>,
}

impl Host {
    /// The agent's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.clone()
    }

    fn containerd_state(&self) -> PathBuf {
        self.dir.join("containerd")
    }

    /// The CRI socket of the host's containerd (the agent's private one).
    pub fn containerd_socket(&self) -> PathBuf {
        self.containerd_state().join("containerd.sock")
    }

    /// The pid of the host's containerd, from the pid file the agent writes
    /// each time it starts one (`None` before the first start).
    pub fn containerd_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.containerd_state().join("containerd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The agent's log.
    pub fn log(&self) -> String {
        crate::read_log(&self.dir.join("agent.log"))
    }
}

/// A running rig. See the module doc.
pub struct Rig {
    /// The temporary directory holding everything the rig writes.
    pub dir: tempfile::TempDir,
    /// kubectl, run in the outside namespace with the admin kubeconfig.
    pub kube: Kubectl,
    /// The hosts, in order `h0`, `h1`, …
    pub hosts: Vec<Host>,
    opts: RigOptions,
    server: Option<Child>,
    /// Namespaces created so far (deleted in Drop).
    namespaces: Vec<String>,
}

impl Rig {
    /// Builds the network, starts the server and the agents, and waits until
    /// every node is Ready.
    pub fn start(opts: RigOptions) -> anyhow::Result<Rig> {
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("skiff-rig-")
            .tempdir_in("/var/tmp")?;
        let kube = Kubectl {
            kubeconfig: dir.path().join("server/admin.kubeconfig"),
            netns: Some(format!("skmh{}-out", opts.net)),
        };
        // From here on a failure drops `rig`, which removes what exists so far.
        let mut rig = Rig {
            dir,
            kube,
            hosts: Vec::new(),
            opts,
            server: None,
            namespaces: Vec::new(),
        };
        rig.build_network()?;
        rig.start_server()?;
        for i in 0..rig.opts.hosts {
            rig.start_agent(i)?;
        }
        rig.wait_nodes_ready(READY_TIMEOUT)?;
        eprintln!(
            "rig skmh{}: {} hosts ready in {:?}",
            rig.opts.net,
            rig.hosts.len(),
            started.elapsed()
        );
        Ok(rig)
    }

    /// The outside namespace's name (kubectl and NodePort clients run there).
    pub fn outside(&self) -> String {
        format!("skmh{}-out", self.opts.net)
    }

    /// The outside namespace's address (the bridge's): what a NodePort
    /// client outside the cluster shows as its source.
    pub fn outside_ip(&self) -> Ipv4Addr {
        self.addr(1)
    }

    fn addr(&self, last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 196, self.opts.net, last)
    }

    /// The API server's address on the segment.
    pub fn server_ip(&self) -> Ipv4Addr {
        self.addr(2)
    }

    fn server_dir(&self) -> PathBuf {
        self.dir.path().join("server")
    }

    /// Runs `ip` in the root namespace and fails with its stderr.
    fn ip(&self, args: &[&str]) -> anyhow::Result<()> {
        let out = Command::new("ip")
            .args(args)
            .output()
            .context("running ip")?;
        check(&format!("ip {}", args.join(" ")), out).map(|_| ())
    }

    fn add_netns(&mut self, name: &str) -> anyhow::Result<()> {
        // A namespace of the same name left by a killed earlier run: ours by
        // its `skmh<n>-` name, so it is safe to replace.
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        self.ip(&["netns", "add", name])?;
        self.namespaces.push(name.to_string());
        self.ip(&["-n", name, "link", "set", "lo", "up"])
    }

    /// The outside namespace with the bridge, and one namespace per machine
    /// (server and hosts) with a veth to the bridge.
    fn build_network(&mut self) -> anyhow::Result<()> {
        let net = self.opts.net;
        let out = self.outside();
        self.add_netns(&out)?;
        self.ip(&["-n", &out, "link", "add", "skmh-br", "type", "bridge"])?;
        let gw = format!("{}/24", self.addr(1));
        self.ip(&["-n", &out, "addr", "add", &gw, "dev", "skmh-br"])?;
        self.ip(&["-n", &out, "link", "set", "skmh-br", "up"])?;
        self.attach(&format!("skmh{net}-srv"), SERVER_PORT, self.server_ip())?;
        for i in 0..self.opts.hosts {
            let name = format!("skmh{net}-h{i}");
            let port = format!("skmh-h{i}");
            let ip = self.addr(FIRST_HOST_OCTET + i as u8);
            self.attach(&name, &port, ip)?;
            let dir = self.dir.path().join(&name);
            std::fs::create_dir_all(&dir)?;
            self.hosts.push(Host {
                name,
                ip,
                port,
                dir,
                agent: None,
            });
        }
        Ok(())
    }

    /// Creates namespace `ns` with `eth0` = `ip`/24, plugged into the bridge
    /// as `port`; its default route goes through the outside namespace.
    fn attach(&mut self, ns: &str, port: &str, ip: Ipv4Addr) -> anyhow::Result<()> {
        self.add_netns(ns)?;
        let out = self.outside();
        // Create both ends directly in their namespaces: nothing of the rig
        // ever appears in the root namespace.
        self.ip(&[
            "-n", &out, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
        self.ip(&["-n", &out, "link", "set", port, "master", "skmh-br", "up"])?;
        self.ip(&["-n", ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
        self.ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        self.ip(&[
            "-n",
            ns,
            "route",
            "add",
            "default",
            "via",
            &self.addr(1).to_string(),
        ])
    }

    fn log_file(path: PathBuf) -> anyhow::Result<(Stdio, Stdio)> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok((log.try_clone()?.into(), log.into()))
    }

    /// Crashes the API server (SIGKILL): the control plane is gone, the
    /// hosts and their pods keep running.
    pub fn kill_server(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }

    /// Starts the API server again on its data directory (after
    /// [`Rig::kill_server`]) and waits until it answers.
    pub fn restart_server(&mut self) -> anyhow::Result<()> {
        if self.server.is_some() {
            bail!("the server is running");
        }
        self.start_server()?;
        wait_until(Duration::from_secs(60), || {
            Ok(self
                .kube
                .run(&["get", "--raw", "/readyz"])?
                .status
                .success())
        })
    }

    fn start_server(&mut self) -> anyhow::Result<()> {
        let dir = self.server_dir();
        std::fs::create_dir_all(&dir)?;
        let (out, err) = Self::log_file(self.dir.path().join("server.log"))?;
        let ip = self.server_ip().to_string();
        let child = in_netns(
            &format!("skmh{}-srv", self.opts.net),
            &skiff_bin().to_string_lossy(),
        )
        .arg("server")
        .arg("--data-dir")
        .arg(&dir)
        .args(["--listen", &format!("{ip}:{API_PORT}")])
        .args(["--tls-san", &ip])
        .args(["--etcd-listen", "127.0.0.1:0"])
        .arg("--no-agent")
        .args(["--cluster-cidr", &self.opts.cluster_cidr])
        .args(["--node-cidr-mask-size", "24"])
        .args(["--service-cidr", &self.opts.service_cidr])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting {}", skiff_bin().display()))?;
        self.server = Some(child);
        let token = dir.join("node-token");
        wait_until(Duration::from_secs(60), || {
            if let Some(Ok(Some(status))) = self.server.as_mut().map(|c| c.try_wait()) {
                bail!(
                    "skiff server exited: {status}\n{}",
                    tail(&self.server_log(), 40)
                );
            }
            Ok(token.exists() && self.kube.kubeconfig.exists())
        })
        .context("waiting for the server's node token")
    }

    /// Starts host `i`'s agent (and through it, its containerd) on its data
    /// directory; after [`Rig::kill_host`] this is the host booting again.
    pub fn start_agent(&mut self, i: usize) -> anyhow::Result<()> {
        let server = format!("https://{}:{API_PORT}", self.server_ip());
        let token = self.server_dir().join("node-token");
        let host = self.hosts.get_mut(i).context("no such host")?;
        if host.agent.is_some() {
            bail!("{} already runs an agent", host.name);
        }
        let (out, err) = Self::log_file(host.dir.join("agent.log"))?;
        let child = in_netns(&host.name, &skiff_bin().to_string_lossy())
            .arg("agent")
            .args(["--server", &server])
            .arg("--token-file")
            .arg(&token)
            .arg("--data-dir")
            .arg(&host.dir)
            .args(["--node-name", &host.name])
            .args(["--node-ip", &host.ip.to_string()])
            .args(["--cni-bridge", HOST_BRIDGE])
            .args(crate::quiet_node_flags(&[]))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting the agent of {}", host.name))?;
        host.agent = Some(child);
        Ok(())
    }

    /// Waits until every host's node is Ready.
    pub fn wait_nodes_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let result = wait_until(timeout, || {
            for host in &mut self.hosts {
                if let Some(Ok(Some(status))) = host.agent.as_mut().map(|c| c.try_wait()) {
                    bail!(
                        "agent of {} exited: {status}\n{}",
                        host.name,
                        tail(&host.log(), 40)
                    );
                }
            }
            let out = self
                .kube
                .run(&["get", "nodes", "-o", NODES_READY_JSONPATH])?;
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            Ok(out.status.success()
                && self
                    .hosts
                    .iter()
                    .all(|h| text.contains(&format!("{}=True", h.name))))
        });
        result.map_err(|e| anyhow::anyhow!("{e:#}\n{}", self.logs()))
    }

    /// The tails of the server's and every agent's log (for failure messages).
    pub fn logs(&self) -> String {
        let mut s = format!("--- server log ---\n{}\n", tail(&self.server_log(), 60));
        for h in &self.hosts {
            s.push_str(&format!(
                "--- {} agent log ---\n{}\n",
                h.name,
                tail(&h.log(), 60)
            ));
        }
        s
    }

    /// The server's log so far.
    pub fn server_log(&self) -> String {
        crate::read_log(&self.dir.path().join("server.log"))
    }

    /// Powers host `i` off: SIGKILL to its agent, its containerd, its shims
    /// and every pod process, as a crash would. Its namespace, address and
    /// link stay (the machine is dead, the cable still in); its data stays
    /// for [`Rig::start_agent`].
    pub fn kill_host(&mut self, i: usize) -> anyhow::Result<()> {
        let host = self.hosts.get_mut(i).context("no such host")?;
        if let Some(mut agent) = host.agent.take() {
            let _ = agent.kill();
            let _ = agent.wait();
        }
        skiff_agent::containerd::force_cleanup(&host.containerd_state());
        Ok(())
    }

    /// Crashes host `i`'s agent alone (SIGKILL): its containerd, the shims
    /// and the pods keep running, as when kubelet crashes or is upgraded.
    /// [`Rig::start_agent`] starts it again.
    pub fn kill_agent(&mut self, i: usize) -> anyhow::Result<()> {
        let host = self.hosts.get_mut(i).context("no such host")?;
        let mut agent = host.agent.take().context("the host runs no agent")?;
        agent.kill()?;
        agent.wait()?;
        Ok(())
    }

    /// Unplugs host `i`'s cable: its switch port goes down, so it can reach
    /// nothing and nothing reaches it, while every process keeps running.
    pub fn cut_link(&self, i: usize) -> anyhow::Result<()> {
        let host = self.hosts.get(i).context("no such host")?;
        self.set_port(&host.port, "down")
    }

    /// Plugs host `i`'s cable back in.
    pub fn restore_link(&self, i: usize) -> anyhow::Result<()> {
        let host = self.hosts.get(i).context("no such host")?;
        self.set_port(&host.port, "up")
    }

    /// Unplugs the server's cable: the hosts lose the control plane (their
    /// connections hang rather than fail), the server process keeps running.
    pub fn cut_server_link(&self) -> anyhow::Result<()> {
        self.set_port(SERVER_PORT, "down")
    }

    /// Plugs the server's cable back in.
    pub fn restore_server_link(&self) -> anyhow::Result<()> {
        self.set_port(SERVER_PORT, "up")
    }

    fn set_port(&self, port: &str, state: &str) -> anyhow::Result<()> {
        self.ip(&["-n", &self.outside(), "link", "set", port, state])
    }

    /// Runs a command in host `i`'s namespace (the host's shell, not a pod's).
    pub fn on_host(&self, i: usize, cmd: &str, args: &[&str]) -> anyhow::Result<String> {
        let host = self.hosts.get(i).context("no such host")?;
        let out = in_netns(&host.name, cmd).args(args).output()?;
        check(&format!("{cmd} on {}", host.name), out)
    }

    /// Runs a command in the outside namespace (the user's machine).
    pub fn outside_cmd(&self, cmd: &str, args: &[&str]) -> anyhow::Result<std::process::Output> {
        Ok(in_netns(&self.outside(), cmd).args(args).output()?)
    }

    fn cleanup(&mut self) {
        for host in &mut self.hosts {
            let socket = host.containerd_socket();
            if socket.exists() {
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
            if let Some(mut agent) = host.agent.take() {
                terminate(&mut agent, STOP_GRACE);
            }
            skiff_agent::containerd::force_cleanup(&host.containerd_state());
        }
        if let Some(mut server) = self.server.take() {
            terminate(&mut server, STOP_GRACE);
        }
        // Anything else still naming the rig's directory (a containerd whose
        // pid file was not written yet).
        kill_matching(&self.dir.path().to_string_lossy());
        skiff_agent::containerd::unmount_under(self.dir.path());
        for ns in self.namespaces.drain(..).rev() {
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        self.cleanup();
    }
}
