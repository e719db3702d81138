//! Liveness, readiness and startup probes (kubelet `pkg/kubelet/prober`).
//!
//! The bookkeeping is pure: [`ProbeTracker`] turns single outcomes into a
//! verdict with the probe's `successThreshold`/`failureThreshold`, and says
//! when the next run is due from `initialDelaySeconds`/`periodSeconds` and
//! a clock passed in. [`ContainerProbes`] combines the three kinds as
//! kubelet does: until the startup probe has succeeded the others do not
//! run; a failed liveness or startup verdict asks for a kill; readiness
//! starts failed and decides `ready`. Running a probe (exec through CRI
//! `ExecSync`, httpGet and tcpSocket against the pod IP) is [`run_probe`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cri::Cri;

/// Kubernetes defaults for the timing fields.
pub const DEFAULT_PERIOD_SECONDS: i32 = 10;
/// Default `timeoutSeconds`.
pub const DEFAULT_TIMEOUT_SECONDS: i32 = 1;
/// Default `failureThreshold`.
pub const DEFAULT_FAILURE_THRESHOLD: i32 = 3;

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// `livenessProbe`: failure kills the container.
    Liveness,
    /// `readinessProbe`: decides `ready`.
    Readiness,
    /// `startupProbe`: gates the other two; failure kills.
    Startup,
}

impl ProbeKind {
    /// The word kubelet uses in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "liveness",
            ProbeKind::Readiness => "readiness",
            ProbeKind::Startup => "startup",
        }
    }
}

/// Timing of one probe, with Kubernetes' defaults applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// `initialDelaySeconds`.
    pub initial_delay: Duration,
    /// `periodSeconds`.
    pub period: Duration,
    /// `timeoutSeconds`.
    pub timeout: Duration,
    /// `successThreshold`.
    pub success_threshold: u32,
    /// `failureThreshold`.
    pub failure_threshold: u32,
}

fn secs(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(u64::try_from(v.unwrap_or(default).max(0)).unwrap_or(0))
}

impl Timing {
    /// Reads a probe's timing fields.
    pub fn of(p: &Probe) -> Timing {
        let n = |v: Option<i32>, d: i32| u32::try_from(v.unwrap_or(d).max(1)).unwrap_or(1);
        Timing {
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, DEFAULT_PERIOD_SECONDS).max(Duration::from_secs(1)),
            timeout: secs(p.timeout_seconds, DEFAULT_TIMEOUT_SECONDS).max(Duration::from_secs(1)),
            success_threshold: n(p.success_threshold, 1),
            failure_threshold: n(p.failure_threshold, DEFAULT_FAILURE_THRESHOLD),
        }
    }
}

/// One probe's memory: consecutive outcomes, the verdict, the last run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeTracker {
    timing: Timing,
    successes: u32,
    failures: u32,
    last_run: Option<Instant>,
    /// Current verdict: `Some(true)` success, `Some(false)` failure.
    pub verdict: Option<bool>,
    /// Message of the last failed run.
    pub last_failure: String,
}

impl ProbeTracker {
    /// A tracker with an initial verdict (kubelet: readiness starts failed,
    /// liveness succeeded, startup unknown).
    pub fn new(timing: Timing, initial: Option<bool>) -> Self {
        ProbeTracker {
            timing,
            successes: 0,
            failures: 0,
            last_run: None,
            verdict: initial,
            last_failure: String::new(),
        }
    }

    /// Whether a run is due at `now` for a container running since `started`.
    pub fn due(&self, started: Instant, now: Instant) -> bool {
        if now < started + self.timing.initial_delay {
            return false;
        }
        self.last_run.is_none_or(|t| now >= t + self.timing.period)
    }

    /// Records one outcome at `now`; the verdict flips after the
    /// threshold's worth of consecutive equal outcomes.
    pub fn record(&mut self, ok: Result<(), String>, now: Instant) {
        self.last_run = Some(now);
        match ok {
            Ok(()) => {
                self.failures = 0;
                self.successes = self.successes.saturating_add(1);
                if self.successes >= self.timing.success_threshold {
                    self.verdict = Some(true);
                }
            }
            Err(m) => {
                self.successes = 0;
                self.failures = self.failures.saturating_add(1);
                self.last_failure = m;
                if self.failures >= self.timing.failure_threshold {
                    self.verdict = Some(false);
                }
            }
        }
    }

    /// The probe's timeout.
    pub fn timeout(&self) -> Duration {
        self.timing.timeout
    }
}

/// The probes of one running container attempt.
#[derive(Clone, Debug)]
pub struct ContainerProbes {
    /// When the agent first saw it running.
    pub started: Instant,
    /// Per kind.
    pub trackers: HashMap<ProbeKind, ProbeTracker>,
}

/// What the probes say about one container attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeVerdict {
    /// `started`: the startup probe succeeded (or there is none).
    pub started: bool,
    /// `ready`: started and the readiness probe succeeds (or there is none).
    pub ready: bool,
    /// Set when liveness or startup failed: the reason to kill it.
    pub kill: Option<String>,
}

/// The probe spec of `kind` on a container.
pub fn probe_of(c: &Container, kind: ProbeKind) -> Option<&Probe> {
    match kind {
        ProbeKind::Liveness => c.liveness_probe.as_ref(),
        ProbeKind::Readiness => c.readiness_probe.as_ref(),
        ProbeKind::Startup => c.startup_probe.as_ref(),
    }
}

impl ContainerProbes {
    /// Trackers for the probes `c` declares, started at `started`.
    pub fn new(c: &Container, started: Instant) -> Self {
        let mut trackers = HashMap::new();
        for (kind, initial) in [
            (ProbeKind::Startup, None),
            (ProbeKind::Liveness, Some(true)),
            (ProbeKind::Readiness, Some(false)),
        ] {
            if let Some(p) = probe_of(c, kind) {
                trackers.insert(kind, ProbeTracker::new(Timing::of(p), initial));
            }
        }
        ContainerProbes { started, trackers }
    }

    fn started_ok(&self) -> bool {
        self.trackers
            .get(&ProbeKind::Startup)
            .is_none_or(|t| t.verdict == Some(true))
    }

    /// The probes due at `now`, startup first; the others wait for it.
    pub fn due(&self, now: Instant) -> Vec<ProbeKind> {
        let started = self.started_ok();
        [
            ProbeKind::Startup,
            ProbeKind::Liveness,
            ProbeKind::Readiness,
        ]
        .into_iter()
        .filter(|k| (*k == ProbeKind::Startup) != started)
        .filter(|k| {
            self.trackers
                .get(k)
                .is_some_and(|t| t.due(self.started, now))
        })
        .collect()
    }

    /// The combined verdict; `name` is the container name for messages.
    pub fn verdict(&self, name: &str) -> ProbeVerdict {
        let started = self.started_ok();
        let failed = |k: ProbeKind| {
            self.trackers
                .get(&k)
                .filter(|t| t.verdict == Some(false))
                .map(|t| {
                    format!(
                        "Container {name} failed {} probe, will be restarted: {}",
                        k.as_str(),
                        t.last_failure
                    )
                })
        };
        ProbeVerdict {
            started,
            ready: started
                && self
                    .trackers
                    .get(&ProbeKind::Readiness)
                    .is_none_or(|t| t.verdict == Some(true)),
            kill: failed(ProbeKind::Startup)
                .or_else(|| started.then(|| failed(ProbeKind::Liveness)).flatten()),
        }
    }
}

/// Verdicts per container id, as the planner and the status read them.
pub type ProbeResults = HashMap<String, ProbeVerdict>;

/// Where an httpGet or tcpSocket handler connects: `host` (default the pod
/// IP) and the port, a number or the name of a container port.
pub fn resolve_port(c: &Container, port: &IntOrString) -> Result<u16, String> {
    let n = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => match s.parse::<i32>() {
            Ok(n) => n,
            Err(_) => c
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(s.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| format!("couldn't find port {s:?} in container {:?}", c.name))?,
        },
    };
    u16::try_from(n)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port number: {n}"))
}

/// One HTTP/1.1 GET; success is a status in 200..400 (kubelet's rule;
/// redirects are not followed).
pub async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<(), String> {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| e.to_string())?;
        let path = if path.is_empty() { "/" } else { path };
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/skiff\r\nAccept: */*\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 512];
        let mut n = 0;
        while n < buf.len() && !buf[..n].contains(&b'\n') {
            let r = s.read(&mut buf[n..]).await.map_err(|e| e.to_string())?;
            if r == 0 {
                break;
            }
            n += r;
        }
        let line = String::from_utf8_lossy(&buf[..n]);
        let code: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| {
                format!(
                    "malformed HTTP response: {:?}",
                    line.lines().next().unwrap_or_default()
                )
            })?;
        if (200..400).contains(&code) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {code}"))
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r.map_err(|e| {
            if e.starts_with("HTTP probe") {
                e
            } else {
                format!("Get \"http://{host}:{port}{path}\": {e}")
            }
        }),
        Err(_) => Err(format!(
            "Get \"http://{host}:{port}{path}\": context deadline exceeded"
        )),
    }
}

/// The action of a probe or hook: exactly one of these is normally set.
#[derive(Clone, Copy, Debug, Default)]
pub struct Handler<'a> {
    /// `exec.command`.
    pub exec: Option<&'a Vec<String>>,
    /// `httpGet`.
    pub http: Option<&'a k8s_openapi::api::core::v1::HTTPGetAction>,
    /// `tcpSocket`.
    pub tcp: Option<&'a k8s_openapi::api::core::v1::TCPSocketAction>,
}

/// Runs one handler of a probe or hook: exec via CRI, else httpGet, else
/// tcpSocket (to `pod_ip` unless a host is given).
pub async fn run_handler(
    cri: &dyn Cri,
    container_id: &str,
    c: &Container,
    pod_ip: &str,
    handler: Handler<'_>,
    timeout: Duration,
) -> Result<(), String> {
    let Handler { exec, http, tcp } = handler;
    if let Some(cmd) = exec {
        let secs = i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX);
        return match cri.exec_sync(container_id, cmd.clone(), secs).await {
            Ok(r) if r.exit_code == 0 => Ok(()),
            Ok(r) => {
                let out = String::from_utf8_lossy(if r.stderr.is_empty() {
                    &r.stdout
                } else {
                    &r.stderr
                })
                .trim()
                .to_string();
                Err(format!(
                    "command {cmd:?} exited with {}: {out}",
                    r.exit_code
                ))
            }
            Err(e) => Err(e.message()),
        };
    }
    if let Some(h) = http {
        if h.scheme.as_deref() == Some("HTTPS") {
            return Err("HTTPS probes are not supported by Skiff".into());
        }
        let port = resolve_port(c, &h.port)?;
        let host = h
            .host
            .as_deref()
            .filter(|h| !h.is_empty())
            .unwrap_or(pod_ip);
        let headers: Vec<(String, String)> = h
            .http_headers
            .iter()
            .flatten()
            .map(|x| (x.name.clone(), x.value.clone()))
            .collect();
        return http_get(
            host,
            port,
            h.path.as_deref().unwrap_or("/"),
            &headers,
            timeout,
        )
        .await;
    }
    if let Some(t) = tcp {
        let port = resolve_port(c, &t.port)?;
        let host = t
            .host
            .as_deref()
            .filter(|h| !h.is_empty())
            .unwrap_or(pod_ip);
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port)))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {host}:{port}: {e}")),
            Err(_) => Err(format!("dial tcp {host}:{port}: i/o timeout")),
        };
    }
    Err("probe has no handler".into())
}

/// Runs probe `p` once.
pub async fn run_probe(
    cri: &dyn Cri,
    container_id: &str,
    c: &Container,
    pod_ip: &str,
    p: &Probe,
    timeout: Duration,
) -> Result<(), String> {
    run_handler(
        cri,
        container_id,
        c,
        pod_ip,
        Handler {
            exec: p.exec.as_ref().and_then(|e| e.command.as_ref()),
            http: p.http_get.as_ref(),
            tcp: p.tcp_socket.as_ref(),
        },
        timeout,
    )
    .await
}
