//! `skiff bench store`: Skiff's replicated store against etcd 3.4, both as
//! three servers on loopback, driven through the same etcd v3 API by the
//! same load driver ([`skiff_store::etcd::EtcdLoad`]) in one run.
//!
//! ```text
//!  3 × `skiff server --no-agent --no-controllers` (raft peers, --join)  ┐  each run, each system,
//!  3 × etcd (Debian's etcd-server, one cluster)                          ├─ each client count:
//!                                                                        ┘  N clients round-robin over
//!                                                                           the 3 members: puts, then
//!                                                                           linearizable gets
//!  per phase: ops/s, p50/p99, Σ /proc/PID/stat utime+stime delta ÷ ops;
//!  per put phase: Σ /proc/PID/io write_bytes delta ÷ puts;
//!  at the end: VmRSS of every server (/proc/PID/status)
//! ```
//!
//! Every figure is the median over the runs. The Skiff servers also run the
//! API server and scheduler (idle), so their memory includes those; etcd's
//! is the store alone. Processes started here are killed by pid when the
//! benchmark ends or fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use skiff_store::etcd::{quantile_f64, EtcdLoad};
use skiff_store::etcd_process::{free_port, EtcdCluster};

/// Servers per system.
const SERVERS: usize = 3;
/// How long a Skiff cluster may take to form (joins and promotions).
const FORM_TIMEOUT: Duration = Duration::from_secs(120);

/// Settings of `skiff bench store`.
pub struct StoreBench {
    /// Concurrent clients, one row each.
    pub clients: Vec<usize>,
    /// Puts (and then gets) per phase.
    pub ops: usize,
    /// Value size in bytes.
    pub value_size: usize,
    /// Repetitions; medians are reported.
    pub runs: usize,
    /// Where the servers keep their data (a temporary directory under
    /// /var/tmp if None; kept only if given).
    pub dir: Option<PathBuf>,
}

/// Three `skiff server` processes forming one raft cluster.
struct SkiffServers {
    children: Vec<Child>,
    endpoints: Vec<String>,
}

impl Drop for SkiffServers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl SkiffServers {
    fn spawn(&mut self, dir: &Path, i: usize, join: Option<(&str, &str)>) -> anyhow::Result<()> {
        let data = dir.join(format!("s{i}"));
        std::fs::create_dir_all(&data)?;
        let (api, etcd, peer) = (free_port()?, free_port()?, free_port()?);
        let log = std::fs::File::create(dir.join(format!("s{i}.log")))?;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("server")
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen", &format!("127.0.0.1:{api}")])
            .args(["--etcd-listen", &format!("127.0.0.1:{etcd}")])
            .args(["--peer-listen", &format!("127.0.0.1:{peer}")])
            .args(["--peer-advertise", &format!("http://127.0.0.1:{peer}")])
            .args(["--no-agent", "--no-controllers"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some((peer0, token)) = join {
            cmd.args(["--join", peer0, "--token", token]);
        }
        self.children
            .push(cmd.spawn().context("starting skiff server")?);
        self.endpoints.push(format!("127.0.0.1:{etcd}"));
        if i == 0 {
            std::fs::write(dir.join("peer0"), format!("http://127.0.0.1:{peer}"))?;
        }
        Ok(())
    }

    fn check_alive(&mut self, dir: &Path) -> anyhow::Result<()> {
        for (i, c) in self.children.iter_mut().enumerate() {
            if let Some(status) = c.try_wait()? {
                bail!(
                    "skiff server {i} exited with {status}:\n{}",
                    log_tail(&dir.join(format!("s{i}.log")))
                );
            }
        }
        Ok(())
    }

    /// Start the first server, then join the others, and wait until all
    /// are voters and every etcd endpoint answers.
    async fn start(dir: &Path) -> anyhow::Result<SkiffServers> {
        let mut s = SkiffServers {
            children: Vec::new(),
            endpoints: Vec::new(),
        };
        s.spawn(dir, 0, None)?;
        let started = Instant::now();
        let token_file = dir.join("s0/join-token");
        let token = loop {
            s.check_alive(dir)?;
            if let Ok(t) = std::fs::read_to_string(&token_file) {
                if !t.trim().is_empty() {
                    break t.trim().to_string();
                }
            }
            anyhow::ensure!(started.elapsed() < FORM_TIMEOUT, "no join token");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let peer0 = std::fs::read_to_string(dir.join("peer0"))?;
        for i in 1..SERVERS {
            s.spawn(dir, i, Some((&peer0, &token)))?;
        }
        loop {
            s.check_alive(dir)?;
            let voters = match skiff_store::members_via(&peer0, &token).await {
                Ok(m) => m.iter().filter(|m| m.voter).count(),
                Err(_) => 0,
            };
            let mut answering = 0;
            for e in &s.endpoints {
                if skiff_store::RemoteStore::connect(e).await.is_ok() {
                    answering += 1;
                }
            }
            if voters == SERVERS && answering == SERVERS {
                return Ok(s);
            }
            anyhow::ensure!(
                started.elapsed() < FORM_TIMEOUT,
                "skiff cluster not formed after {FORM_TIMEOUT:?} ({voters} voters, {answering} answering)"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }
}

/// A field of `/proc/PID/<file>` (`name: value ...`), as a number.
fn proc_field(pid: u32, file: &str, name: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .with_context(|| format!("reading /proc/{pid}/{file}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {name} in /proc/{pid}/{file}"))
}

/// Bytes the processes have caused to be written to storage so far.
fn write_bytes(pids: &[u32]) -> anyhow::Result<u64> {
    pids.iter()
        .map(|p| proc_field(*p, "io", "write_bytes"))
        .sum()
}

/// CPU seconds (user + system) the processes have used so far, from
/// fields 14 and 15 of `/proc/PID/stat` (clock ticks of 1/100 s on Linux).
fn cpu_seconds(pids: &[u32]) -> anyhow::Result<f64> {
    let mut ticks = 0u64;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("reading /proc/{pid}/stat"))?;
        // The command name (field 2) may hold spaces: count from its ')'.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        for i in [11, 12] {
            ticks += fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .with_context(|| format!("no utime/stime in /proc/{pid}/stat"))?;
        }
    }
    Ok(ticks as f64 / 100.0)
}

/// What one system measured at one client count, over the runs.
#[derive(Default)]
struct Row {
    put_rate: Vec<f64>,
    put_p50_ms: Vec<f64>,
    put_p99_ms: Vec<f64>,
    range_rate: Vec<f64>,
    range_p50_ms: Vec<f64>,
    range_p99_ms: Vec<f64>,
    bytes_per_put: Vec<f64>,
    /// The servers' CPU (summed over the 3) per put and per get, in µs.
    cpu_us_per_put: Vec<f64>,
    cpu_us_per_get: Vec<f64>,
    /// Failed operations, summed over the runs.
    errors: usize,
    first_error: Option<String>,
}

fn median(xs: &mut [f64]) -> f64 {
    quantile_f64(xs, 0.5)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct System<'a> {
    name: &'static str,
    pids: Vec<u32>,
    endpoints: &'a [String],
}

async fn measure(
    sys: &System<'_>,
    clients: usize,
    prefix: &str,
    b: &StoreBench,
    row: &mut Row,
) -> anyhow::Result<()> {
    let load = EtcdLoad::connect(sys.endpoints, clients)
        .await
        .with_context(|| format!("connecting to {}", sys.name))?;
    let before = write_bytes(&sys.pids)?;
    let cpu_start = cpu_seconds(&sys.pids)?;
    let put = load.puts(prefix, b.ops, b.value_size).await?;
    let written = write_bytes(&sys.pids)?.saturating_sub(before);
    let cpu_puts = cpu_seconds(&sys.pids)?;
    let range = load.ranges(prefix, b.ops).await?;
    let cpu_gets = cpu_seconds(&sys.pids)?;
    row.cpu_us_per_put
        .push((cpu_puts - cpu_start) * 1e6 / put.ops.max(1) as f64);
    row.cpu_us_per_get
        .push((cpu_gets - cpu_puts) * 1e6 / range.ops.max(1) as f64);
    row.put_rate.push(put.ops_per_sec);
    row.put_p50_ms.push(ms(put.p50));
    row.put_p99_ms.push(ms(put.p99));
    row.range_rate.push(range.ops_per_sec);
    row.range_p50_ms.push(ms(range.p50));
    row.range_p99_ms.push(ms(range.p99));
    row.bytes_per_put
        .push(written as f64 / put.ops.max(1) as f64);
    eprintln!(
        "{:<6} {clients:>4} clients: {:>7.0} puts/s (p99 {:.2} ms), {:>7.0} gets/s, {:.0} B/put, \
         server CPU {:.0} µs/put {:.0} µs/get",
        sys.name,
        put.ops_per_sec,
        ms(put.p99),
        range.ops_per_sec,
        written as f64 / put.ops.max(1) as f64,
        row.cpu_us_per_put.last().copied().unwrap_or_default(),
        row.cpu_us_per_get.last().copied().unwrap_or_default(),
    );
    Ok(())
}

/// Run the comparison and print its table (markdown).
pub async fn run(b: StoreBench) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("skiff-bench-store-")
        .tempdir_in("/var/tmp")?;
    let dir = b.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    eprintln!(
        "starting 3 skiff servers and 3 etcd members in {}",
        dir.display()
    );
    let skiff = SkiffServers::start(&dir.join("skiff")).await?;
    let etcd = EtcdCluster::start(&dir.join("etcd"), SERVERS)
        .await
        .context("starting etcd")?;
    let etcd_endpoints: Vec<String> = etcd.members.iter().map(|m| m.client_url.clone()).collect();
    let systems = [
        System {
            name: "skiff",
            pids: skiff.pids(),
            endpoints: &skiff.endpoints,
        },
        System {
            name: "etcd",
            pids: etcd.members.iter().filter_map(|m| m.pid()).collect(),
            endpoints: &etcd_endpoints,
        },
    ];
    let mut rows: BTreeMap<(&str, usize), Row> = BTreeMap::new();
    for run in 0..b.runs {
        for sys in &systems {
            for &c in &b.clients {
                let row = rows.entry((sys.name, c)).or_default();
                measure(sys, c, &format!("/bench/{run}/{c}/"), &b, row).await?;
            }
        }
    }
    println!(
        "3 servers each on loopback, {} B values, {} puts then {} linearizable gets per row, \
         clients spread over the 3 servers; median of {} runs",
        b.value_size, b.ops, b.ops, b.runs
    );
    println!();
    println!("| system | clients | writes/s | write p50 ms | write p99 ms | gets/s | get p50 ms | get p99 ms | disk bytes/write | CPU µs/write | CPU µs/get | failed ops |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut summary: BTreeMap<(&str, usize), (f64, f64, f64)> = BTreeMap::new();
    for sys in &systems {
        for &c in &b.clients {
            let r = rows.get_mut(&(sys.name, c)).expect("measured");
            let (rate, p99, bytes) = (
                median(&mut r.put_rate),
                median(&mut r.put_p99_ms),
                median(&mut r.bytes_per_put),
            );
            summary.insert((sys.name, c), (rate, p99, bytes));
            println!(
                "| {} | {c} | {rate:.0} | {:.2} | {p99:.2} | {:.0} | {:.2} | {:.2} | {bytes:.0} | {:.0} | {:.0} | {} |",
                sys.name,
                median(&mut r.put_p50_ms),
                median(&mut r.range_rate),
                median(&mut r.range_p50_ms),
                median(&mut r.range_p99_ms),
                median(&mut r.cpu_us_per_put),
                median(&mut r.cpu_us_per_get),
                r.errors,
            );
        }
    }
    for ((name, c), r) in &rows {
        if let Some(e) = &r.first_error {
            println!("first error of {name} at {c} clients: {e}");
        }
    }
    println!();
    for sys in &systems {
        let rss: Vec<String> = sys
            .pids
            .iter()
            .map(|p| {
                proc_field(*p, "status", "VmRSS")
                    .map(|kib| format!("{:.0}", kib as f64 / 1024.0))
                    .unwrap_or_else(|_| "?".into())
            })
            .collect();
        println!(
            "resident memory of each {} server after the run (MiB): {}",
            sys.name,
            rss.join(", ")
        );
    }
    for &c in &b.clients {
        if let (Some(s), Some(e)) = (summary.get(&("skiff", c)), summary.get(&("etcd", c))) {
            println!(
                "{c} clients: skiff/etcd writes/s {:.2}x, p99 {:.2} vs {:.2} ms, bytes/write {:.0} vs {:.0}",
                s.0 / e.0.max(1e-9),
                s.1,
                e.1,
                s.2,
                e.2
            );
        }
    }
    drop(skiff);
    drop(etcd);
    if b.dir.is_some() {
        eprintln!("data kept in {}", dir.display());
    }
    Ok(())
}
