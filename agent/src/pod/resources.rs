//! Container resources: Kubernetes quantities → CRI
//! `LinuxContainerResources`, and the pod's QoS class. Pure functions after
//! kubelet's `kuberuntime_container_linux.go` (`generateLinuxContainerResources`)
//! and `pkg/apis/core/v1/helper/qos` (`GetPodQOS`).

use std::collections::BTreeMap;

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// CFS period kubelet uses (`quotaPeriod`, 100 ms in µs).
pub const CPU_PERIOD_US: i64 = 100_000;
/// Smallest `cpu.shares` the kernel accepts (kubelet `MinShares`).
pub const MIN_SHARES: i64 = 2;
/// Smallest CFS quota (kubelet `MinQuotaPeriod`, 1 ms in µs).
pub const MIN_QUOTA_US: i64 = 1_000;

/// A quantity Skiff could not read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {0:?}")]
pub struct BadQuantity(pub String);

/// A quantity as a number of units times 1000 ("milli-units"), rounded up
/// as Kubernetes rounds `MilliValue` (so `0.1m` reads as 1m); parsed by the
/// API server's `skiff_api::quantity`.
pub fn parse_milli(q: &str) -> Result<i128, BadQuantity> {
    skiff_api::quantity::Quantity::parse(q)
        .ok()
        .and_then(|v| v.scaled_ceil(1000))
        .ok_or_else(|| BadQuantity(q.to_string()))
}

/// A quantity in whole units, rounded up (Kubernetes `Value`).
pub fn parse_value(q: &str) -> Result<i128, BadQuantity> {
    let m = parse_milli(q)?;
    Ok(if m >= 0 { (m + 999) / 1000 } else { m / 1000 })
}

fn get<'a>(map: Option<&'a BTreeMap<String, Quantity>>, key: &str) -> Option<&'a str> {
    map.and_then(|m| m.get(key)).map(|q| q.0.as_str())
}

/// Requests and limits of a container, in milli-CPU and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContainerResources {
    /// `requests.cpu` in millicores.
    pub cpu_request_milli: Option<i64>,
    /// `limits.cpu` in millicores.
    pub cpu_limit_milli: Option<i64>,
    /// `requests.memory` in bytes.
    pub memory_request: Option<i64>,
    /// `limits.memory` in bytes.
    pub memory_limit: Option<i64>,
}

fn clamp(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

impl ContainerResources {
    /// Reads a container's `resources`. As the API server does, a limit
    /// without a request makes the request equal to the limit.
    pub fn of(c: &Container) -> Result<Self, BadQuantity> {
        let r = c.resources.as_ref();
        let req = r.and_then(|r| r.requests.as_ref());
        let lim = r.and_then(|r| r.limits.as_ref());
        let milli = |q: Option<&str>| q.map(parse_milli).transpose().map(|v| v.map(clamp));
        let bytes = |q: Option<&str>| q.map(parse_value).transpose().map(|v| v.map(clamp));
        let cpu_limit_milli = milli(get(lim, "cpu"))?;
        let memory_limit = bytes(get(lim, "memory"))?;
        Ok(ContainerResources {
            cpu_request_milli: milli(get(req, "cpu"))?.or(cpu_limit_milli),
            cpu_limit_milli,
            memory_request: bytes(get(req, "memory"))?.or(memory_limit),
            memory_limit,
        })
    }

    /// The CRI resources: `cpu_shares` from the CPU request (milli × 1024 /
    /// 1000, at least 2; kubelet `MilliCPUToShares`), CFS quota from the CPU
    /// limit over a 100 ms period (`MilliCPUToQuota`), the memory limit in
    /// bytes. `oom_score_adj` is left 0: containerd's
    /// `restrict_oom_score_adj` keeps whatever the VM allows.
    pub fn to_cri(self) -> cri::LinuxContainerResources {
        let shares = match self.cpu_request_milli {
            Some(m) if m > 0 => (m.saturating_mul(1024) / 1000).max(MIN_SHARES),
            _ => MIN_SHARES,
        };
        let (quota, period) = match self.cpu_limit_milli {
            Some(m) if m > 0 => (
                (m.saturating_mul(CPU_PERIOD_US) / 1000).max(MIN_QUOTA_US),
                CPU_PERIOD_US,
            ),
            _ => (0, 0),
        };
        cri::LinuxContainerResources {
            cpu_period: period,
            cpu_quota: quota,
            cpu_shares: shares,
            memory_limit_in_bytes: self.memory_limit.unwrap_or(0).max(0),
            ..Default::default()
        }
    }
}

/// The pod's QoS class (`status.qosClass`): `Guaranteed` when every
/// container has CPU and memory limits equal to its requests, `BestEffort`
/// when none has any request or limit, `Burstable` otherwise. Init
/// containers count too. Unreadable quantities count as set.
pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return "BestEffort";
    };
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    let (mut any, mut guaranteed) = (false, true);
    for c in all {
        let r = c.resources.as_ref();
        let req = r.and_then(|r| r.requests.as_ref());
        let lim = r.and_then(|r| r.limits.as_ref());
        for key in ["cpu", "memory"] {
            let l = get(lim, key).map(|q| parse_milli(q).ok());
            let rq = get(req, key).map(|q| parse_milli(q).ok());
            let nonzero = |v: Option<Option<i128>>| v.is_some_and(|v| v != Some(0));
            any |= nonzero(l) || nonzero(rq);
            // A request defaults to the limit, so only a different request
            // (or no limit) breaks Guaranteed.
            if l.is_none() || rq.is_some_and(|rq| Some(rq) != l) {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}
