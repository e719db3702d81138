//! Node-pressure eviction (kubelet's eviction manager), the pure part:
//! hard and soft thresholds, which of them the node's observations meet,
//! the node conditions that follow, and which pod goes first.
//!
//! ```text
//!  --eviction-hard "memory.available<100Mi,nodefs.available<10%"   parse_thresholds
//!  --eviction-soft "memory.available<1Gi"                         parse_soft_thresholds
//!  --eviction-soft-grace-period "memory.available=1m30s"
//!        ▼
//!  Observations (meminfo, statvfs) ──met──► pressure (MemoryPressure, DiskPressure)
//!        │                                       │ held for the transition period
//!        ▼ GracePeriods::due (a soft threshold must have been met
//!        │                    for its whole grace period)
//!  pods + usage ──rank──► first pod ──► evict: phase Failed, reason Evicted,
//!                                       killed with eviction_grace_seconds
//! ```
//!
//! As in kubelet (`eviction_manager.go`, `synchronize`), the pressure
//! conditions follow every threshold met, soft ones included, regardless of
//! their grace period; only the eviction waits for the grace period. A pod
//! evicted for a hard threshold is killed with a 1 s grace period, one
//! evicted for a soft threshold with the smaller of its
//! `terminationGracePeriodSeconds` and `--eviction-max-pod-grace-period`.
//!
//! The signals are kubelet's `memory.available` (here `MemAvailable` of
//! `/proc/meminfo`) and `nodefs.available` (the free space of the file
//! system holding the agent's data dir). Pods are ranked as kubelet ranks
//! them: first those using more than they request, then by priority
//! (lowest first), then by usage above the request (largest first).
//! Pods at or above the system-critical priority are never evicted. The
//! I/O loop around this is [`super::evict::eviction_loop`].

use std::time::{Duration, Instant};

use crate::pod::resources::parse_value;

/// Kubelet's default `--eviction-hard` on Linux (the `imagefs` and inode
/// signals are not observed by Skiff).
pub const DEFAULT_EVICTION_HARD: &str = "memory.available<100Mi,nodefs.available<10%";

/// Kubelet's `--eviction-pressure-transition-period`: how long a pressure
/// condition stays true after its threshold was last met.
pub const DEFAULT_PRESSURE_TRANSITION_PERIOD: Duration = Duration::from_secs(300);

/// Kubelet's grace period for pods evicted by a hard threshold
/// (`immediateEvictionGracePeriodSeconds`).
pub const IMMEDIATE_EVICTION_GRACE_PERIOD_SECONDS: i64 = 1;

/// Priority from which pods are critical and never evicted
/// (`system-cluster-critical` is 2,000,000,000).
const CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// A signal the agent observes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Memory the node has left.
    MemoryAvailable,
    /// Free space of the node's file system.
    NodefsAvailable,
}

impl Signal {
    /// The signal's name in `--eviction-hard`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodefsAvailable => "nodefs.available",
        }
    }

    /// The resource kubelet names in its messages.
    pub fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory",
            Signal::NodefsAvailable => "ephemeral-storage",
        }
    }
}

/// How low a signal may go.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Limit {
    /// Bytes.
    Bytes(u64),
    /// A fraction of the capacity, e.g. 0.1 for `10%`.
    Fraction(f64),
}

/// One eviction threshold: evict when `signal` is below `limit`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Threshold {
    /// What is observed.
    pub signal: Signal,
    /// The level under which the node is under pressure.
    pub limit: Limit,
    /// `None` for a hard threshold; for a soft one, how long it must be
    /// met before pods are evicted (`--eviction-soft-grace-period`).
    pub grace_period: Option<Duration>,
}

impl Threshold {
    /// The limit in bytes for a resource of `capacity` bytes.
    pub fn bytes(&self, capacity: u64) -> u64 {
        match self.limit {
            Limit::Bytes(b) => b,
            Limit::Fraction(f) => (capacity as f64 * f) as u64,
        }
    }
}

/// Parses `--eviction-hard`: comma-separated `signal<quantity` or
/// `signal<percent%` items; an empty string means no thresholds.
pub fn parse_thresholds(text: &str) -> Result<Vec<Threshold>, String> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, value) = item.split_once('<').ok_or_else(|| {
            format!("eviction threshold {item:?}: expected SIGNAL<QUANTITY, e.g. memory.available<100Mi")
        })?;
        let signal = signal_named(name.trim()).ok_or_else(|| {
            format!(
                "eviction threshold {item:?}: unsupported signal {:?} (supported: memory.available, nodefs.available)",
                name.trim()
            )
        })?;
        let value = value.trim();
        let limit = match value.strip_suffix('%') {
            Some(p) => {
                let p: f64 = p
                    .parse()
                    .ok()
                    .filter(|p: &f64| (0.0..=100.0).contains(p))
                    .ok_or_else(|| {
                        format!("eviction threshold {item:?}: percentage must be 0–100%")
                    })?;
                Limit::Fraction(p / 100.0)
            }
            None => {
                let bytes = parse_value(value)
                    .ok()
                    .and_then(|b| u64::try_from(b).ok())
                    .ok_or_else(|| {
                        format!(
                            "eviction threshold {item:?}: {value:?} is not a quantity like 100Mi"
                        )
                    })?;
                Limit::Bytes(bytes)
            }
        };
        if out.iter().any(|t: &Threshold| t.signal == signal) {
            return Err(format!("eviction threshold {item:?}: {name} given twice"));
        }
        out.push(Threshold {
            signal,
            limit,
            grace_period: None,
        });
    }
    Ok(out)
}

/// Parses `--eviction-soft` (the syntax of `--eviction-hard`) with
/// `--eviction-soft-grace-period` (`signal=duration` items, Go durations
/// such as `1m30s`), with kubelet's messages (`ParseThresholdConfig`):
/// every soft threshold needs a grace period.
pub fn parse_soft_thresholds(soft: &str, grace_periods: &str) -> Result<Vec<Threshold>, String> {
    let mut periods = Vec::new();
    for item in grace_periods
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
    {
        let (name, value) = item
            .split_once('=')
            .ok_or("malformed pair, expect string=string")?;
        let signal = signal_named(name.trim())
            .ok_or_else(|| format!("unsupported eviction signal {}", name.trim()))?;
        let value = value.trim();
        if value.starts_with('-') {
            return Err(format!(
                "invalid eviction grace period specified: {value}, must be a positive value"
            ));
        }
        let period = skiff_api::duration::parse_duration(value)?;
        periods.push((signal, period));
    }
    let mut out = parse_thresholds(soft)?;
    for t in &mut out {
        let period = periods
            .iter()
            .rev()
            .find(|(s, _)| *s == t.signal)
            .map(|(_, p)| *p)
            .ok_or_else(|| {
                format!(
                    "grace period must be specified for the soft eviction threshold {}",
                    t.signal.name()
                )
            })?;
        t.grace_period = Some(period);
    }
    Ok(out)
}

fn signal_named(name: &str) -> Option<Signal> {
    [Signal::MemoryAvailable, Signal::NodefsAvailable]
        .into_iter()
        .find(|s| s.name() == name)
}

/// What the node has, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observations {
    /// `MemTotal`.
    pub memory_capacity: u64,
    /// `MemAvailable`.
    pub memory_available: u64,
    /// Size of the data dir's file system.
    pub nodefs_capacity: u64,
    /// Space left on it for unprivileged users.
    pub nodefs_available: u64,
}

/// A threshold the observations meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Met {
    /// The signal.
    pub signal: Signal,
    /// The threshold in bytes.
    pub threshold: u64,
    /// What is available, in bytes.
    pub available: u64,
    /// The threshold's grace period: `None` if it is a hard one.
    pub grace_period: Option<Duration>,
}

/// The thresholds that `obs` meets, in the order given.
pub fn met(thresholds: &[Threshold], obs: &Observations) -> Vec<Met> {
    thresholds
        .iter()
        .filter_map(|t| {
            let (capacity, available) = match t.signal {
                Signal::MemoryAvailable => (obs.memory_capacity, obs.memory_available),
                Signal::NodefsAvailable => (obs.nodefs_capacity, obs.nodefs_available),
            };
            let threshold = t.bytes(capacity);
            (available < threshold).then_some(Met {
                signal: t.signal,
                threshold,
                available,
                grace_period: t.grace_period,
            })
        })
        .collect()
}

/// When each met threshold was first seen met in its current run
/// (kubelet's `thresholdsFirstObservedAt`), to hold soft thresholds back
/// for their grace period.
#[derive(Debug, Default)]
pub struct GracePeriods {
    first_observed: Vec<(Signal, bool, Instant)>,
}

impl GracePeriods {
    /// Records what is met at `now` and returns the thresholds that drive
    /// eviction: hard ones at once, soft ones once they have been met
    /// without a break for their grace period. Hard thresholds come first.
    pub fn due(&mut self, met: &[Met], now: Instant) -> Vec<Met> {
        let key = |m: &Met| (m.signal, m.grace_period.is_some());
        self.first_observed
            .retain(|(s, soft, _)| met.iter().any(|m| key(m) == (*s, *soft)));
        let mut due = Vec::new();
        for m in met {
            let (signal, soft) = key(m);
            let since = match self
                .first_observed
                .iter()
                .find(|(s, f, _)| (*s, *f) == (signal, soft))
            {
                Some((_, _, at)) => *at,
                None => {
                    self.first_observed.push((signal, soft, now));
                    now
                }
            };
            let grace = m.grace_period.unwrap_or(Duration::ZERO);
            if now.saturating_duration_since(since) >= grace {
                due.push(*m);
            }
        }
        due.sort_by_key(|m| m.grace_period.is_some());
        due
    }
}

/// The grace period a pod evicted for `m` is killed with (kubelet's
/// `gracePeriodOverride`): 1 s for a hard threshold; for a soft one the
/// smaller of the pod's `terminationGracePeriodSeconds` and
/// `--eviction-max-pod-grace-period`.
pub fn eviction_grace_seconds(m: &Met, pod_grace: Option<i64>, max_pod_grace: i64) -> i64 {
    match (m.grace_period, pod_grace) {
        (None, _) => IMMEDIATE_EVICTION_GRACE_PERIOD_SECONDS,
        (Some(_), Some(pod)) => pod.min(max_pod_grace),
        (Some(_), None) => max_pod_grace,
    }
}

/// The node's pressure conditions, held true for a transition period after
/// their threshold was last met (so they do not flap).
#[derive(Debug)]
pub struct Pressure {
    transition: Duration,
    memory_since: Option<Instant>,
    disk_since: Option<Instant>,
}

/// Which pressure conditions are true.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PressureState {
    /// `MemoryPressure`.
    pub memory: bool,
    /// `DiskPressure`.
    pub disk: bool,
}

impl Pressure {
    /// Conditions held for `transition` after the last time they were met.
    pub fn new(transition: Duration) -> Pressure {
        Pressure {
            transition,
            memory_since: None,
            disk_since: None,
        }
    }

    /// Records what was met at `now`; returns the conditions.
    pub fn observe(&mut self, met: &[Met], now: Instant) -> PressureState {
        for m in met {
            match m.signal {
                Signal::MemoryAvailable => self.memory_since = Some(now),
                Signal::NodefsAvailable => self.disk_since = Some(now),
            }
        }
        let held = |at: Option<Instant>| {
            at.is_some_and(|at| now.saturating_duration_since(at) < self.transition)
        };
        PressureState {
            memory: held(self.memory_since),
            disk: held(self.disk_since),
        }
    }
}

/// One container's use of the resource under pressure.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerUse {
    /// Container name.
    pub name: String,
    /// Bytes used (memory working set, or disk).
    pub usage: u64,
    /// Bytes requested.
    pub request: u64,
}

/// A pod as the ranking sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Candidate {
    /// Pod UID.
    pub uid: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `spec.priority` (0 when unset).
    pub priority: i32,
    /// `spec.terminationGracePeriodSeconds`.
    pub grace_period_seconds: Option<i64>,
    /// Its containers' use of the resource under pressure.
    pub containers: Vec<ContainerUse>,
    /// Use by the pod itself beyond its containers (its volumes and logs
    /// for disk), in bytes.
    pub extra_usage: u64,
}

impl Candidate {
    fn usage(&self) -> u64 {
        self.containers.iter().map(|c| c.usage).sum::<u64>() + self.extra_usage
    }

    fn request(&self) -> u64 {
        self.containers.iter().map(|c| c.request).sum()
    }
}

/// The pods in eviction order (kubelet's `rankMemoryPressure` and
/// `rankDiskPressure`): above their request first, then lower priority,
/// then more use above the request. Critical pods are left out.
pub fn rank(candidates: &[Candidate]) -> Vec<&Candidate> {
    let mut out: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.priority < CRITICAL_PRIORITY)
        .collect();
    out.sort_by(|a, b| {
        let exceeds = |c: &Candidate| c.usage() > c.request();
        let above = |c: &Candidate| c.usage() as i128 - c.request() as i128;
        exceeds(b)
            .cmp(&exceeds(a))
            .then(a.priority.cmp(&b.priority))
            .then(above(b).cmp(&above(a)))
            .then_with(|| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)))
    });
    out
}

/// A byte count as Kubernetes prints a binary quantity (`100Mi`, `1536Ki`,
/// `12345`).
pub fn format_bytes(n: u64) -> String {
    for (suffix, shift) in [("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
        if n != 0 && n.is_multiple_of(1u64 << shift) {
            return format!("{}{suffix}", n >> shift);
        }
    }
    n.to_string()
}

/// The pod status message kubelet writes for an eviction, e.g.
/// `The node was low on resource: memory. Threshold quantity: 100Mi,
/// available: 51200Ki. Container c was using 1Gi, request is 0, has larger
/// consumption of memory. `
pub fn eviction_message(m: &Met, pod: &Candidate) -> String {
    let resource = m.signal.resource();
    let mut out = format!(
        "The node was low on resource: {resource}. Threshold quantity: {}, available: {}. ",
        format_bytes(m.threshold),
        format_bytes(m.available)
    );
    for c in pod.containers.iter().filter(|c| c.usage > c.request) {
        out.push_str(&format!(
            "Container {} was using {}, request is {}, has larger consumption of {resource}. ",
            c.name,
            format_bytes(c.usage),
            format_bytes(c.request)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_and_bad_ones_say_why() {
        let t = parse_thresholds(DEFAULT_EVICTION_HARD).unwrap();
        assert_eq!(
            t,
            [
                Threshold {
                    signal: Signal::MemoryAvailable,
                    limit: Limit::Bytes(100 << 20),
                    grace_period: None,
                },
                Threshold {
                    signal: Signal::NodefsAvailable,
                    limit: Limit::Fraction(0.1),
                    grace_period: None,
                },
            ]
        );
        assert_eq!(parse_thresholds("").unwrap(), []);
        for (bad, says) in [
            ("memory.available>1Gi", "expected SIGNAL<QUANTITY"),
            ("pid.available<10", "unsupported signal"),
            ("memory.available<lots", "not a quantity"),
            ("nodefs.available<120%", "0–100%"),
            ("memory.available<1Gi,memory.available<2Gi", "given twice"),
        ] {
            let err = parse_thresholds(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn met_thresholds_and_held_pressure() {
        let t = parse_thresholds("memory.available<1Gi,nodefs.available<10%").unwrap();
        let obs = Observations {
            memory_capacity: 8 << 30,
            memory_available: 512 << 20,
            nodefs_capacity: 100 << 30,
            nodefs_available: 20 << 30,
        };
        let m = met(&t, &obs);
        assert_eq!(
            m,
            [Met {
                signal: Signal::MemoryAvailable,
                threshold: 1 << 30,
                available: 512 << 20,
                grace_period: None,
            }]
        );
        let mut p = Pressure::new(Duration::from_secs(300));
        let t0 = Instant::now();
        assert_eq!(
            p.observe(&m, t0),
            PressureState {
                memory: true,
                disk: false
            }
        );
        // Still true within the transition period, false after it.
        assert!(p.observe(&[], t0 + Duration::from_secs(299)).memory);
        assert!(!p.observe(&[], t0 + Duration::from_secs(300)).memory);
    }

    fn pod(name: &str, priority: i32, usage: u64, request: u64) -> Candidate {
        Candidate {
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            name: name.into(),
            priority,
            grace_period_seconds: Some(30),
            containers: vec![ContainerUse {
                name: "c".into(),
                usage,
                request,
            }],
            extra_usage: 0,
        }
    }

    #[test]
    fn ranking_follows_kubelet() {
        let pods = [
            pod("guaranteed-under", 0, 100, 200),
            pod("besteffort-small", 0, 10, 0),
            pod("besteffort-big", 0, 50, 0),
            pod("burstable-over-high-prio", 1000, 500, 100),
            pod("critical", CRITICAL_PRIORITY, 10_000, 0),
        ];
        let order: Vec<&str> = rank(&pods).iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            order,
            [
                "besteffort-big",
                "besteffort-small",
                "burstable-over-high-prio",
                "guaranteed-under"
            ]
        );
    }

    #[test]
    fn soft_thresholds_need_grace_periods_in_kubelets_words() {
        let t = parse_soft_thresholds(
            "memory.available<1Gi,nodefs.available<15%",
            "memory.available=1m30s, nodefs.available=2m",
        )
        .unwrap();
        assert_eq!(t[0].grace_period, Some(Duration::from_secs(90)));
        assert_eq!(t[1].grace_period, Some(Duration::from_secs(120)));
        assert_eq!(t[1].limit, Limit::Fraction(0.15));
        assert_eq!(parse_soft_thresholds("", "").unwrap(), []);
        // A grace period without a soft threshold is ignored, as by kubelet.
        assert_eq!(
            parse_soft_thresholds("", "memory.available=1m").unwrap(),
            []
        );
        for (soft, grace, says) in [
            (
                "memory.available<1Gi",
                "",
                "grace period must be specified for the soft eviction threshold memory.available",
            ),
            (
                "memory.available<1Gi",
                "nodefs.available=1m",
                "grace period must be specified for the soft eviction threshold memory.available",
            ),
            (
                "memory.available<1Gi",
                "memory.available=-1s",
                "invalid eviction grace period specified: -1s, must be a positive value",
            ),
            (
                "memory.available<1Gi",
                "memory.available:1m",
                "malformed pair, expect string=string",
            ),
            (
                "memory.available<1Gi",
                "pid.available=1m",
                "unsupported eviction signal pid.available",
            ),
            (
                "memory.available<1Gi",
                "memory.available=soon",
                "time: invalid duration \"soon\"",
            ),
            (
                "memory.available>1Gi",
                "memory.available=1m",
                "expected SIGNAL<QUANTITY",
            ),
        ] {
            let err = parse_soft_thresholds(soft, grace).unwrap_err();
            assert!(err.contains(says), "{soft} / {grace}: {err}");
        }
    }

    #[test]
    fn soft_thresholds_evict_only_after_their_grace_period() {
        let mut t = parse_thresholds("memory.available<100Mi").unwrap();
        t.extend(parse_soft_thresholds("memory.available<1Gi", "memory.available=30s").unwrap());
        let low = |avail: u64| Observations {
            memory_capacity: 8 << 30,
            memory_available: avail,
            nodefs_capacity: 1 << 40,
            nodefs_available: 1 << 40,
        };
        let mut g = GracePeriods::default();
        let mut p = Pressure::new(Duration::from_secs(300));
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        // Soft threshold met: pressure at once (kubelet reports conditions
        // regardless of grace periods), but no eviction yet.
        let m = met(&t, &low(512 << 20));
        assert!(p.observe(&m, t0).memory);
        assert_eq!(g.due(&m, t0), []);
        assert_eq!(g.due(&m, s(29)), []);
        let due = g.due(&m, s(30));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].grace_period, Some(Duration::from_secs(30)));
        // A break restarts the grace period.
        assert_eq!(g.due(&met(&t, &low(2 << 30)), s(31)), []);
        assert_eq!(g.due(&m, s(32)), []);
        assert_eq!(g.due(&m, s(61)), []);
        assert_eq!(g.due(&m, s(62)).len(), 1);
        // The hard threshold is due at once, and comes first.
        let both = met(&t, &low(50 << 20));
        let due = g.due(&both, s(63));
        assert_eq!(due.len(), 2);
        assert_eq!(due[0].grace_period, None);
    }

    #[test]
    fn evicted_pods_get_kubelets_grace_period() {
        let hard = Met {
            signal: Signal::MemoryAvailable,
            threshold: 1,
            available: 0,
            grace_period: None,
        };
        let soft = Met {
            grace_period: Some(Duration::from_secs(60)),
            ..hard
        };
        assert_eq!(eviction_grace_seconds(&hard, Some(30), 120), 1);
        assert_eq!(eviction_grace_seconds(&soft, Some(30), 120), 30);
        assert_eq!(eviction_grace_seconds(&soft, Some(300), 120), 120);
        // kubelet's default --eviction-max-pod-grace-period is 0.
        assert_eq!(eviction_grace_seconds(&soft, Some(30), 0), 0);
        assert_eq!(eviction_grace_seconds(&soft, None, 45), 45);
    }

    #[test]
    fn messages_in_kubelets_words() {
        let m = Met {
            signal: Signal::MemoryAvailable,
            threshold: 100 << 20,
            available: 50 << 20,
            grace_period: None,
        };
        assert_eq!(
            eviction_message(&m, &pod("p", 0, 1 << 30, 0)),
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. Container c was using 1Gi, request is 0, has larger consumption of memory. "
        );
        assert_eq!(format_bytes(1536 << 10), "1536Ki");
        assert_eq!(format_bytes(12345), "12345");
        assert_eq!(format_bytes(0), "0");
    }
}
