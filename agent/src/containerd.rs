//! A private containerd that the agent starts and supervises when no
//! `--containerd-socket` is given (k3s does the same: one install, no system service
//! to configure).
//!
//! ```text
//!  skiff agent ──spawn──▶ containerd --config STATE/config.toml   (own process group)
//!      │  supervisor task: restart with back-off if it exits         │ fork+exec, setpgid
//!      └── CRI over STATE/containerd.sock ──────────────────────────▶ containerd-shim-runc-v2
//!                                                                     └─ runc ─▶ pod processes
//! ```
//!
//! Everything lives under [`ContainerdOptions::state_dir`]: `config.toml`,
//! `containerd.sock` (+ `.ttrpc`), `containerd.log`, `containerd.pid`, `root/` (images,
//! snapshots, metadata) and `state/` (runtime state: task bundles, the sandboxes'
//! `/dev/shm` mounts, and with `netns_mounts_under_state_dir` the pods' network
//! namespaces at `state/io.containerd.grpc.v1.cri/netns/` instead of `/var/run/netns`).
//!
//! Process lifetime, and why:
//! - containerd runs in its own process group, so a Ctrl-C to the agent's terminal does
//!   not kill it behind the agent's back; the agent stops it in order ([`ManagedContainerd::stop`]:
//!   SIGTERM, 10 s, SIGKILL).
//! - The shims (`containerd-shim-runc-v2`) are started by containerd with `setpgid`
//!   and re-parented away from it, so they, and the pods' containers, outlive a
//!   containerd restart or an agent restart. That is the point of shims: a node update
//!   does not restart every pod. A restarted containerd with the same state dir
//!   reconnects to them.
//! - If the agent is killed, containerd keeps running; the next start finds it through
//!   `containerd.pid` (and its `--config` argument) and replaces it.
//!
//! What a test must clean up (see [`force_cleanup`], which does all of it): pods via
//! CRI StopPodSandbox + RemovePodSandbox while containerd runs (the clean way: shims
//! exit, mounts and network namespaces go); then [`ManagedContainerd::stop`]; then any
//! leftover shims whose command line names the socket, and their children; mounts
//! under the state dir (rootfs overlays, `shm`, netns bind mounts); the pods' cgroups
//! (`/sys/fs/cgroup/<controller>/k8s.io/<id>`); the CNI bridge; the temp dir. A shim
//! killed with SIGKILL also leaves its socket file in `/run/containerd/s/` (containerd
//! 1.6 puts shim sockets there whatever the state dir; names are hashes, so private
//! instances don't collide).
//!
//! Facts about containerd 1.6.20 (Debian 12) this module relies on, checked on the
//! project's machines:
//! - If the CRI plugin fails to load (e.g. a plugin it depends on is disabled; the
//!   v1 runtime `io.containerd.runtime.v1.linux` must stay enabled), containerd logs
//!   a warning and serves everything else: the CRI services are "unknown". `start`
//!   therefore waits for the CRI `Status` call, reporting
//!   [`ContainerdError::CriNotLoaded`] for `Unimplemented`.
//! - After a (re)start, CRI `Version` answers at once but other calls fail with
//!   "server is not initialized yet" for up to about a second while the plugin
//!   reloads its sandboxes; `Status` is the honest readiness probe.
//! - Timings here (debug build, 2 cores): start to CRI-ready ≈ 60–120 ms; restart
//!   after a crash ≈ 1.1 s (1 s back-off); stop ≈ 5–20 ms; RunPodSandbox ≈ 90–250
//!   ms; CreateContainer+StartContainer ≈ 70–100 ms.
//!
//! Caveats: a missing `containerd` binary is an error, not an install step; the
//! config is rewritten on every start (edits by hand are lost); `containerd.log` is
//! appended to and never rotated.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[path = "containerd_cleanup.rs"]
mod cleanup;
#[path = "containerd_config.rs"]
mod config;
pub use cleanup::{force_cleanup, kill_shims, unmount_under};
pub use config::render_config;

/// How long [`ManagedContainerd::start`] waits for containerd to answer on its socket.
/// Cold start here takes well under a second; 20 s leaves room for a loaded 2-core
/// machine and a first-boot bolt database.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Grace period between SIGTERM and SIGKILL when stopping containerd.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// First restart delay after containerd exits; doubled per crash up to
/// [`RESTART_BACKOFF_MAX`] (kubelet's CrashLoopBackOff shape, shorter).
pub const RESTART_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// Longest restart delay.
pub const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A run at least this long resets the back-off: the crash was not a crash loop.
const STABLE_RUN: Duration = Duration::from_secs(60);
/// Where Debian's `containernetworking-plugins` installs the CNI plugins.
pub const DEFAULT_CNI_BIN_DIR: &str = "/usr/lib/cni";
/// Poll interval while waiting for the socket.
const READY_POLL: Duration = Duration::from_millis(50);
/// `sun_path` is 108 bytes on Linux including the NUL; containerd also needs room for
/// the `.ttrpc` suffix.
const MAX_SOCKET_PATH: usize = 100;

/// Errors from running containerd.
#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    /// The `containerd` binary is not on `PATH`. Not retryable.
    #[error(
        "containerd not found: install it with `apt-get install containerd` (or run `make up`)"
    )]
    NotInstalled,
    /// The state dir is too deep for a unix socket path. Not retryable.
    #[error("socket path {0} is too long for a unix socket; use a shorter data dir")]
    SocketPathTooLong(PathBuf),
    /// containerd exited before its socket answered.
    #[error("containerd exited during start-up ({status}); see {log}:\n{tail}")]
    Exited {
        /// Its exit status.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of the log.
        tail: String,
    },
    /// containerd runs but its CRI plugin did not load (its log says why, e.g. a
    /// disabled plugin it depends on). Not retryable without a config change.
    #[error(
        "containerd's CRI plugin (io.containerd.grpc.v1.cri) did not load; see {log}:\n{tail}"
    )]
    CriNotLoaded {
        /// Its log file.
        log: PathBuf,
        /// The last lines of the log.
        tail: String,
    },
    /// containerd did not answer on its socket in time. Retryable.
    #[error("containerd did not answer on {socket} within {timeout:?}; see {log}:\n{tail}")]
    Timeout {
        /// The socket waited on.
        socket: PathBuf,
        /// How long was waited.
        timeout: Duration,
        /// Its log file.
        log: PathBuf,
        /// The last lines of the log.
        tail: String,
    },
    /// Creating the state dir, config or log failed, or spawning failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// How to run the private containerd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdOptions {
    /// Its directory (e.g. `DATA/containerd`); holds config, socket, log, root, state.
    pub state_dir: PathBuf,
    /// The CRI sandbox image, fully qualified (e.g. [`crate::images::PAUSE_IMAGE`]).
    pub sandbox_image: String,
    /// Where the CNI plugin binaries are (`/usr/lib/cni` on Debian).
    pub cni_bin_dir: PathBuf,
    /// Where the CNI conflist is (see [`crate::cni::write_config`]).
    pub cni_conf_dir: PathBuf,
    /// containerd's log level (`debug`, `info`, `warn`, `error`).
    pub log_level: String,
}

impl ContainerdOptions {
    /// The agent's usual layout under its data dir: state in `DATA/containerd`, CNI
    /// config in `DATA/cni/net.d`, the built-in pause image, Debian's plugin dir,
    /// log level `info`.
    pub fn with_defaults(data_dir: &Path) -> ContainerdOptions {
        ContainerdOptions {
            state_dir: data_dir.join("containerd"),
            sandbox_image: crate::images::PAUSE_IMAGE.to_string(),
            cni_bin_dir: PathBuf::from(DEFAULT_CNI_BIN_DIR),
            cni_conf_dir: data_dir.join("cni").join("net.d"),
            log_level: "info".to_string(),
        }
    }

    /// The gRPC (and CRI) socket: `state_dir/containerd.sock`.
    pub fn socket_path(&self) -> PathBuf {
        self.state_dir.join("containerd.sock")
    }
    /// The ttrpc socket (used by shims to publish events).
    pub fn ttrpc_socket_path(&self) -> PathBuf {
        self.state_dir.join("containerd.sock.ttrpc")
    }
    /// The config file written on start.
    pub fn config_path(&self) -> PathBuf {
        self.state_dir.join("config.toml")
    }
    /// containerd's stdout/stderr.
    pub fn log_path(&self) -> PathBuf {
        self.state_dir.join("containerd.log")
    }
    /// The pid of the running containerd, for finding one a killed agent left behind.
    pub fn pid_path(&self) -> PathBuf {
        self.state_dir.join("containerd.pid")
    }
    /// containerd's `root` (persistent: content, snapshots, metadata).
    pub fn root_dir(&self) -> PathBuf {
        self.state_dir.join("root")
    }
    /// containerd's `state` (ephemeral runtime state).
    pub fn runtime_state_dir(&self) -> PathBuf {
        self.state_dir.join("state")
    }
}

/// A containerd the agent started; supervised (restarted on exit) until [`stop`].
///
/// Dropping it without `stop` asks the supervisor to stop containerd gracefully if the
/// runtime is still running; if the runtime is gone too, the child is SIGKILLed
/// (`kill_on_drop`). Shims and pods survive either way (see the module doc).
///
/// [`stop`]: ManagedContainerd::stop
#[derive(Debug)]
pub struct ManagedContainerd {
    socket: PathBuf,
    stop_tx: watch::Sender<bool>,
    supervisor: Option<JoinHandle<()>>,
}

impl ManagedContainerd {
    /// Writes the config, starts containerd, waits until its socket answers, and
    /// supervises it from a task.
    pub async fn start(opts: ContainerdOptions) -> Result<ManagedContainerd, ContainerdError> {
        let socket = opts.socket_path();
        if opts.ttrpc_socket_path().as_os_str().len() > MAX_SOCKET_PATH {
            return Err(ContainerdError::SocketPathTooLong(socket));
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ContainerdError::Io { path, source }
        };
        for dir in [
            &opts.state_dir,
            &opts.root_dir(),
            &opts.runtime_state_dir(),
            &opts.cni_conf_dir,
        ] {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let config_path = opts.config_path();
        let tmp = opts.state_dir.join(".config.toml.tmp");
        std::fs::write(&tmp, render_config(&opts)).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &config_path).map_err(io(&config_path))?;

        stop_stale(&opts).await;
        let mut child = spawn(&opts)?;
        if let Err(e) = wait_ready(&opts, &mut child).await {
            terminate(&mut child).await;
            return Err(e);
        }
        tracing::info!(socket = %socket.display(), pid = ?child.id(), "containerd is up");

        let (stop_tx, stop_rx) = watch::channel(false);
        let supervisor = tokio::spawn(supervise(opts, child, stop_rx));
        Ok(ManagedContainerd {
            socket,
            stop_tx,
            supervisor: Some(supervisor),
        })
    }

    /// The containerd gRPC socket; the CRI endpoint for the agent's CRI client.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Stops supervising, then stops containerd (SIGTERM, up to [`STOP_TIMEOUT`],
    /// SIGKILL). Shims and their containers keep running.
    pub async fn stop(mut self) {
        let _ = self.stop_tx.send(true);
        if let Some(task) = self.supervisor.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ManagedContainerd {
    fn drop(&mut self) {
        // Best-effort: the supervisor stops containerd if the runtime still polls it.
        let _ = self.stop_tx.send(true);
    }
}

/// Spawns `containerd --config FILE` with its output appended to the log.
fn spawn(opts: &ContainerdOptions) -> Result<Child, ContainerdError> {
    let log_path = opts.log_path();
    let io = |source| ContainerdError::Io {
        path: log_path.clone(),
        source,
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io)?;
    let log_err = log.try_clone().map_err(io)?;
    let child = Command::new("containerd")
        .arg("--config")
        .arg(opts.config_path())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Its own process group: see the module doc.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ContainerdError::NotInstalled
            } else {
                ContainerdError::Io {
                    path: PathBuf::from("containerd"),
                    source: e,
                }
            }
        })?;
    if let Some(pid) = child.id() {
        let pid_path = opts.pid_path();
        if let Err(e) = std::fs::write(&pid_path, format!("{pid}\n")) {
            tracing::warn!(file = %pid_path.display(), error = %e, "cannot write containerd pid file");
        }
    }
    Ok(child)
}

/// Waits until containerd accepts connections on its socket (it listens only after
/// loading every plugin) and its CRI plugin answers `Status`.
async fn wait_ready(opts: &ContainerdOptions, child: &mut Child) -> Result<(), ContainerdError> {
    let socket = opts.socket_path();
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(ContainerdError::Exited {
                status: status.to_string(),
                log: opts.log_path(),
                tail: log_tail(&opts.log_path()),
            });
        }
        if tokio::net::UnixStream::connect(&socket).await.is_ok() {
            match cri_status(&socket).await {
                Ok(()) => return Ok(()),
                // containerd serves its other services even when the CRI plugin
                // failed to load (it only logs a warning): that is fatal for a node.
                Err(status) if status.code() == tonic::Code::Unimplemented => {
                    return Err(ContainerdError::CriNotLoaded {
                        log: opts.log_path(),
                        tail: log_tail(&opts.log_path()),
                    });
                }
                Err(status) => tracing::debug!(%status, "CRI not ready yet"),
            }
        }
        if Instant::now() >= deadline {
            return Err(ContainerdError::Timeout {
                socket,
                timeout: READY_TIMEOUT,
                log: opts.log_path(),
                tail: log_tail(&opts.log_path()),
            });
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

/// Asks the CRI runtime service for its status: proof that the CRI plugin is loaded,
/// initialised and serving on `socket`.
async fn cri_status(socket: &Path) -> Result<(), tonic::Status> {
    use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
    let socket = socket.to_path_buf();
    // tonic needs a URI; the connector ignores it and dials the unix socket.
    let endpoint = tonic::transport::Endpoint::from_static("http://[::]:50051")
        .connect_timeout(READY_POLL * 20);
    let channel = endpoint
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    // `Status`, not `Version`: containerd 1.6 answers `Version` while the CRI plugin
    // is still loading its state, and every other call with "server is not
    // initialized yet" until it is done.
    RuntimeServiceClient::new(channel)
        .status(k8s_cri::v1::StatusRequest { verbose: false })
        .await
        .map(|_| ())
}

/// The last few lines of containerd's log, for error messages.
fn log_tail(path: &Path) -> String {
    const LINES: usize = 10;
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LINES)..].join("\n")
}

/// SIGTERM, wait up to [`STOP_TIMEOUT`], then SIGKILL; reaps the child.
async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        if tokio::time::timeout(STOP_TIMEOUT, child.wait())
            .await
            .is_ok()
        {
            return;
        }
        tracing::warn!(pid, "containerd ignored SIGTERM; killing it");
    }
    let _ = child.kill().await;
}

/// Replaces a containerd left running by a killed agent: the pid file names a live
/// process whose command line is `containerd --config <our config>`.
async fn stop_stale(opts: &ContainerdOptions) {
    let Some(pid) = std::fs::read_to_string(opts.pid_path())
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|pid| *pid > 0)
    else {
        return;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let config = opts.config_path();
    let ours = args.first().is_some_and(|a| a.ends_with(b"containerd"))
        && args
            .iter()
            .any(|a| *a == config.as_os_str().as_encoded_bytes());
    if !ours {
        return;
    }
    tracing::warn!(pid, "stopping a containerd left over from an earlier agent");
    let pid = Pid::from_raw(pid);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if !cleanup::process_alive(pid.as_raw()) {
            return;
        }
        tokio::time::sleep(READY_POLL).await;
    }
    let _ = kill(pid, Signal::SIGKILL);
}

/// Resolves once a stop was requested (or the handle is gone). The `watch::Ref` is
/// dropped here so the supervisor future stays `Send`.
async fn stop_requested(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await.map(|_| ());
}

/// The supervisor: restart containerd whenever it exits, with back-off, until asked to
/// stop.
async fn supervise(opts: ContainerdOptions, child: Child, mut stop_rx: watch::Receiver<bool>) {
    let mut child = Some(child);
    let mut backoff = RESTART_BACKOFF_INITIAL;
    loop {
        let started = Instant::now();
        if let Some(running) = child.as_mut() {
            tokio::select! {
                status = running.wait() => {
                    tracing::error!(status = ?status, log = %opts.log_path().display(), "containerd exited; restarting");
                }
                _ = stop_requested(&mut stop_rx) => {
                    terminate(running).await;
                    return;
                }
            }
        }
        child = None;
        if started.elapsed() >= STABLE_RUN {
            backoff = RESTART_BACKOFF_INITIAL;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop_requested(&mut stop_rx) => return,
        }
        backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
        match spawn(&opts) {
            Ok(mut c) => match wait_ready(&opts, &mut c).await {
                Ok(()) => {
                    tracing::info!(pid = ?c.id(), "containerd restarted");
                    child = Some(c);
                }
                Err(e) => {
                    tracing::error!(error = %e, "containerd restart failed");
                    terminate(&mut c).await;
                }
            },
            Err(e) => tracing::error!(error = %e, "cannot restart containerd"),
        }
    }
}
