//! Real etcd processes on loopback (Debian's `etcd-server`, 3.4), for the
//! tests that run the store's behaviour tests against etcd and for
//! `skiff bench store`, which compares the two. Not used by a running
//! Skiff cluster.
//!
//! [`EtcdCluster::start`] starts 1 or more members, each with its own data
//! directory and log file under the given directory, and returns once every
//! member answers. Dropping the cluster kills its processes (by their pid,
//! SIGKILL) and waits for them, also when a test panics.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use crate::remote::RemoteStore;

/// The binary started; Debian's `etcd-server` installs it on PATH.
pub const ETCD_BINARY: &str = "etcd";
/// The loopback ports handed out by [`free_port`] (Skiff's tests and
/// benchmarks use this range).
pub const PORT_RANGE: std::ops::Range<u16> = 24000..25000;
/// How long a member may take to answer after it is started.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// etcd's request limit: its default (1.5 MiB) counts the key and the
/// message framing, so a value of exactly the store's 1.5 MiB limit needs
/// a little more.
pub const MAX_REQUEST_BYTES: usize = 2 * 1024 * 1024;

/// Environment variable that narrows [`free_port`] to a range of its own,
/// `FIRST-LAST` inclusive (say `25300-25399`), so one engineer's benchmark
/// or test run keeps to the ports assigned to it on a shared machine.
pub const PORTS_ENV: &str = "SKIFF_PORTS";

/// The ports [`free_port`] hands out: [`PORTS_ENV`] if set, else
/// [`PORT_RANGE`].
pub fn port_range() -> io::Result<std::ops::Range<u16>> {
    let Ok(spec) = std::env::var(PORTS_ENV) else {
        return Ok(PORT_RANGE);
    };
    parse_port_range(&spec).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{PORTS_ENV}={spec:?}: expected FIRST-LAST, like 25300-25399"),
        )
    })
}

/// `FIRST-LAST` (inclusive) as a range; `None` if malformed or empty.
fn parse_port_range(spec: &str) -> Option<std::ops::Range<u16>> {
    let (first, last) = spec.trim().split_once('-')?;
    let first: u16 = first.trim().parse().ok()?;
    let last: u16 = last.trim().parse().ok()?;
    (first > 0 && first <= last && last < u16::MAX).then(|| first..last + 1)
}

/// A free loopback port from [`port_range`] (found by binding it; each
/// process starts at its own offset so parallel test binaries rarely meet).
pub fn free_port() -> io::Result<u16> {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let range = port_range()?;
    let span = range.end - range.start;
    let base = (std::process::id() % u32::from(span)) as u16;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = range.start + (base.wrapping_add(n) % span);
        if TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no free loopback port in {range:?}"),
    ))
}

/// One etcd member.
pub struct EtcdMember {
    /// `http://127.0.0.1:PORT`, its client URL.
    pub client_url: String,
    /// Its data directory (`--data-dir`).
    pub data_dir: PathBuf,
    log: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl EtcdMember {
    /// The process id (None once stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) -> io::Result<()> {
        let log = File::options().create(true).append(true).open(&self.log)?;
        let child = Command::new(ETCD_BINARY)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    io::Error::new(
                        e.kind(),
                        "etcd not found on PATH: `make deps` installs it (Debian's etcd-server)",
                    )
                } else {
                    io::Error::new(e.kind(), format!("starting etcd: {e}"))
                }
            })?;
        self.child = Some(child);
        Ok(())
    }

    /// Kill the process (SIGKILL, by its pid) and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop it cleanly (SIGTERM, then SIGKILL after 10 s) and reap it.
    pub fn stop(&mut self) {
        if let Some(child) = &mut self.child {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill();
    }

    /// The last lines of its log, for error messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Wait until it answers a linearizable read (so, has a leader).
    async fn wait_ready(&mut self) -> io::Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(io::Error::other(format!(
                    "etcd exited with {status}; log {}:\n{}",
                    self.log.display(),
                    self.log_tail()
                )));
            }
            if RemoteStore::connect(&self.client_url).await.is_ok() {
                return Ok(());
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(io::Error::other(format!(
                    "etcd at {} not ready after {READY_TIMEOUT:?}; log:\n{}",
                    self.client_url,
                    self.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Start it again on its data directory (after [`EtcdMember::stop`] or
    /// [`EtcdMember::kill`]) and wait until it answers.
    pub async fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.spawn()?;
        self.wait_ready().await
    }
}

impl Drop for EtcdMember {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A set of etcd members forming one cluster, on loopback.
pub struct EtcdCluster {
    /// The members, in start order.
    pub members: Vec<EtcdMember>,
}

impl EtcdCluster {
    /// Start `size` members under `dir` (`dir/m0`, `dir/m1`, …, and
    /// `m0.log`, …) and wait until every one answers.
    pub async fn start(dir: &Path, size: usize) -> io::Result<EtcdCluster> {
        std::fs::create_dir_all(dir)?;
        let mut ports = Vec::with_capacity(size);
        for _ in 0..size {
            ports.push((free_port()?, free_port()?));
        }
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}={}", url(*peer)))
            .collect();
        let mut members = Vec::with_capacity(size);
        for (i, (client, peer)) in ports.iter().enumerate() {
            let data_dir = dir.join(format!("m{i}"));
            let args = [
                ("--name", format!("m{i}")),
                ("--data-dir", data_dir.display().to_string()),
                ("--listen-client-urls", url(*client)),
                ("--advertise-client-urls", url(*client)),
                ("--listen-peer-urls", url(*peer)),
                ("--initial-advertise-peer-urls", url(*peer)),
                ("--initial-cluster", initial.join(",")),
                ("--initial-cluster-state", "new".to_string()),
                (
                    "--initial-cluster-token",
                    format!("skiff-test-{}", std::process::id()),
                ),
                ("--max-request-bytes", MAX_REQUEST_BYTES.to_string()),
                ("--log-level", "warn".to_string()),
                ("--logger", "zap".to_string()),
            ]
            .into_iter()
            .flat_map(|(k, v)| [k.to_string(), v])
            .collect();
            let mut m = EtcdMember {
                client_url: url(*client),
                data_dir,
                log: dir.join(format!("m{i}.log")),
                args,
                child: None,
            };
            m.spawn()?;
            members.push(m);
        }
        for m in &mut members {
            m.wait_ready().await?;
        }
        Ok(EtcdCluster { members })
    }

    /// Every member's client URL, separated by commas.
    pub fn endpoints(&self) -> String {
        let urls: Vec<&str> = self.members.iter().map(|m| m.client_url.as_str()).collect();
        urls.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::parse_port_range;

    #[test]
    fn port_ranges_parse_or_are_refused() {
        assert_eq!(parse_port_range("25300-25399"), Some(25300..25400));
        assert_eq!(parse_port_range(" 10 - 10 "), Some(10..11));
        for bad in ["", "25300", "25399-25300", "0-5", "a-b", "1-65535", "1-2-3"] {
            assert_eq!(parse_port_range(bad), None, "{bad:?}");
        }
    }
}
