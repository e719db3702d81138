//! Node pressure on a real node (`skiff server` with its embedded agent,
//! containerd, runc, the stock kubectl).
//!
//! Eviction: with a `memory.available`
//! threshold just under what the host has free, a BestEffort pod that takes
//! 3 GB puts the node under memory pressure; the agent reports
//! `MemoryPressure`, evicts that pod (phase Failed, reason Evicted,
//! kubelet's message, the `DisruptionTarget` condition) and stops its
//! containers, leaves the Guaranteed pod that stays under its request
//! alone, and clears the condition after the transition period.
//!
//! Soft eviction: with a soft `memory.available` threshold, its grace
//! period and `--eviction-max-pod-grace-period`, the node reports
//! `MemoryPressure` as soon as the threshold is met (as kubelet does), the
//! pod is evicted only after the grace period, and its container, which
//! ignores SIGTERM and asks for 600 s, is killed after the 3 s maximum.
//!
//! Image garbage collection: with thresholds that make any disk "full",
//! unused images are removed through CRI and the pinned sandbox image stays.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;
use skiff_tests::{wait_until, Cluster, ClusterOptions, Kubectl};

/// Pod CIDRs `10.199.97.0/24` and `10.199.98.0/24`.
const SUBNET: u8 = 97;
/// Pod CIDR `10.199.136.0/24`.
const SOFT_SUBNET: u8 = 136;

const KEEP: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: keep
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: keep
    image: skiff.local/busybox:1
    command: ["sleep", "3600"]
    resources:
      requests: {cpu: 10m, memory: 32Mi}
      limits: {cpu: 10m, memory: 32Mi}
"#;

/// dd fills a 3000M buffer, then blocks writing it to a pipe nobody reads:
/// it holds the memory without burning cpu.
const HOG: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: hog
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: hog
    image: skiff.local/busybox:1
    command: ["sh", "-c", "dd if=/dev/zero bs=3000M count=1 | sleep 3600"]
"#;

/// The memory tests hog 3 GB each and set thresholds from what is free:
/// they take turns.
static MEMORY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn mem_available() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|kib| kib * 1024)
        .expect("MemAvailable in /proc/meminfo")
}

fn get(k: &Kubectl, args: &[&str]) -> Value {
    k.json(args).unwrap_or(Value::Null)
}

fn condition<'a>(obj: &'a Value, kind: &str) -> &'a Value {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .unwrap_or(&Value::Null)
}

#[test]
fn memory_pressure_evicts_the_pod_above_its_request() -> anyhow::Result<()> {
    let _turn = MEMORY.lock().unwrap_or_else(|e| e.into_inner());
    // 1 GiB below what is free now: the 3000M pod crosses it, the rest of
    // the machine's noise (in either direction) does not.
    let threshold = mem_available().saturating_sub(1 << 30);
    let flag = format!("memory.available<{threshold}");
    let cluster = Cluster::start_with_args(
        ClusterOptions { subnet: SUBNET },
        &[
            "--eviction-hard",
            &flag,
            "--eviction-pressure-transition-secs",
            "10",
        ],
    )?;
    let result = run(&cluster);
    cluster.log_failure(result, 150)
}

fn run(cluster: &Cluster) -> anyhow::Result<()> {
    let k = cluster.kube();
    let node = cluster.node_name();
    k.apply(KEEP)?;
    wait_until(Duration::from_secs(120), || {
        Ok(get(&k, &["get", "pod", "keep"])["status"]["phase"] == "Running")
    })
    .context("waiting for keep to run")?;
    let started = Instant::now();
    k.apply(HOG)?;
    let mut saw_pressure = false;
    wait_until(Duration::from_secs(180), || {
        let n = get(&k, &["get", "node", &node]);
        saw_pressure |= condition(&n, "MemoryPressure")["status"] == "True";
        Ok(get(&k, &["get", "pod", "hog"])["status"]["phase"] == "Failed")
    })
    .context("waiting for hog to be evicted")?;
    eprintln!("hog created → evicted: {:?}", started.elapsed());
    let hog = get(&k, &["get", "pod", "hog"]);
    assert_eq!(hog["status"]["reason"], "Evicted", "{hog}");
    let message = hog["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("The node was low on resource: memory. Threshold quantity: ")
            && message.contains("Container hog was using ")
            && message.contains("request is 0, has larger consumption of memory."),
        "{message}"
    );
    let target = condition(&hog, "DisruptionTarget");
    assert_eq!(target["status"], "True", "{hog}");
    assert_eq!(target["reason"], "TerminationByKubelet", "{hog}");
    // The Guaranteed pod under its request was not the one chosen.
    let keep = get(&k, &["get", "pod", "keep"]);
    assert_eq!(keep["status"]["phase"], "Running", "{keep}");
    // `kubectl describe` shows the reason and message.
    let described = k.ok(&["describe", "pod", "hog"])?;
    assert!(
        described.contains("Evicted")
            && described.contains("The node was low on resource: memory."),
        "{described}"
    );

    // Its container is stopped (the memory comes back).
    wait_until(Duration::from_secs(60), || {
        let p = get(&k, &["get", "pod", "hog"]);
        Ok(!p["status"]["containerStatuses"][0]["state"]["terminated"].is_null())
    })
    .context("waiting for hog's container to stop")?;
    // The agent counts it, as kubelet does, in its Prometheus metrics
    // (through the API server's node proxy, as `kubectl get --raw` reads
    // kubelet's).
    let metrics = k.ok(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{node}/proxy/metrics"),
    ])?;
    for line in [
        "kubelet_evictions{eviction_signal=\"memory.available\"} 1",
        "kubelet_runtime_operations_total{operation_type=\"run_podsandbox\"} ",
        "# TYPE kubelet_runtime_operations_duration_seconds histogram",
        "kubelet_running_pods ",
        "process_resident_memory_bytes ",
    ] {
        assert!(metrics.contains(line), "no {line:?} in\n{metrics}");
    }
    // The node said so while it lasted, and clears it after the transition
    // period once the threshold is no longer met.
    wait_until(Duration::from_secs(90), || {
        let n = get(&k, &["get", "node", &node]);
        let status = &condition(&n, "MemoryPressure")["status"];
        saw_pressure |= status == "True";
        Ok(saw_pressure && status == "False")
    })
    .with_context(|| {
        format!(
            "waiting for MemoryPressure to clear (MemAvailable now {} MiB)",
            mem_available() >> 20
        )
    })?;
    Ok(())
}

/// Ignores SIGTERM and asks for 600 s to stop.
const STUBBORN_HOG: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: hog
spec:
  terminationGracePeriodSeconds: 600
  containers:
  - name: hog
    image: skiff.local/busybox:1
    command: ["sh", "-c", "trap '' TERM; dd if=/dev/zero bs=3000M count=1 | sleep 3600"]
"#;

/// The soft threshold's grace period.
const SOFT_GRACE: Duration = Duration::from_secs(20);

#[test]
fn soft_threshold_evicts_after_its_grace_period() -> anyhow::Result<()> {
    let _turn = MEMORY.lock().unwrap_or_else(|e| e.into_inner());
    let threshold = mem_available().saturating_sub(1 << 30);
    let soft = format!("memory.available<{threshold}");
    let grace = format!("memory.available={}s", SOFT_GRACE.as_secs());
    let cluster = Cluster::start_with_args(
        ClusterOptions {
            subnet: SOFT_SUBNET,
        },
        &[
            "--eviction-soft",
            &soft,
            "--eviction-soft-grace-period",
            &grace,
            "--eviction-max-pod-grace-period",
            "3",
            "--eviction-pressure-transition-secs",
            "10",
        ],
    )?;
    let result = run_soft(&cluster);
    cluster.log_failure(result, 150)
}

fn run_soft(cluster: &Cluster) -> anyhow::Result<()> {
    let k = cluster.kube();
    let node = cluster.node_name();
    let created = Instant::now();
    k.apply(STUBBORN_HOG)?;
    // Pressure shows while the pod still runs: conditions do not wait for
    // the grace period. The agent reports `Failed` once the container is
    // killed, after min(600 s, --eviction-max-pod-grace-period 3 s): the
    // 240 s allowed here would not cover the pod's own 600 s.
    let mut pressure_at = None;
    wait_until(Duration::from_secs(240), || {
        let n = get(&k, &["get", "node", &node]);
        let phase = get(&k, &["get", "pod", "hog"])["status"]["phase"].clone();
        if pressure_at.is_none() && condition(&n, "MemoryPressure")["status"] == "True" {
            anyhow::ensure!(
                phase == "Running",
                "evicted before pressure was seen: {phase}"
            );
            pressure_at = Some(created.elapsed());
        }
        Ok(phase == "Failed")
    })
    .context("waiting for hog to be evicted")?;
    let evicted_at = created.elapsed();
    let pressure_at = pressure_at.context("MemoryPressure was never reported")?;
    eprintln!("hog created → MemoryPressure {pressure_at:?} → evicted {evicted_at:?}");
    // The threshold was met no earlier than the pod's creation, so its
    // grace period had passed (only a loaded machine makes this later).
    assert!(evicted_at >= SOFT_GRACE, "evicted after {evicted_at:?}");
    let hog = get(&k, &["get", "pod", "hog"]);
    assert_eq!(hog["status"]["reason"], "Evicted", "{hog}");
    let message = hog["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("The node was low on resource: memory."),
        "{message}"
    );
    wait_until(Duration::from_secs(60), || {
        let p = get(&k, &["get", "pod", "hog"]);
        Ok(!p["status"]["containerStatuses"][0]["state"]["terminated"].is_null())
    })
    .context("waiting for hog's container to show as terminated")?;
    Ok(())
}

/// The image names containerd holds in the CRI namespace.
fn images(cluster: &Cluster) -> anyhow::Result<String> {
    let socket = cluster.data_dir().join("agent/containerd/containerd.sock");
    let out = std::process::Command::new("ctr")
        .arg("--address")
        .arg(&socket)
        .args(["-n", "k8s.io", "images", "ls", "-q"])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "ctr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn unused_images_are_collected_when_the_disk_is_full() -> anyhow::Result<()> {
    let cluster = Cluster::start_with_args(
        ClusterOptions { subnet: SUBNET + 1 },
        &[
            "--image-gc-high-threshold",
            "0",
            "--image-gc-low-threshold",
            "0",
            "--image-minimum-gc-age-secs",
            "0",
            "--image-gc-period-secs",
            "2",
        ],
    )?;
    let result = (|| {
        wait_until(Duration::from_secs(60), || {
            Ok(!images(&cluster)?.contains("skiff.local/busybox:1"))
        })
        .context("waiting for the unused busybox image to be collected")?;
        let left = images(&cluster)?;
        assert!(left.contains("skiff.local/pause:1"), "{left}");
        anyhow::Ok(())
    })();
    cluster.log_failure(result, 80)
}
