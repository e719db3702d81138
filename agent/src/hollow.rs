//! Hollow nodes: many fake Nodes in one process, for scale tests of the
//! control plane (Kubernetes' kubemark runs "hollow kubelets" the same way).
//!
//! A hollow node does everything the API server and scheduler can see a
//! kubelet do, and nothing else:
//! - it registers a Node (default 4 cpu, 16Gi, 110 pods; `Ready=True`) and
//!   rewrites its status every [`STATUS_PERIOD`];
//! - it renews its Lease in `kube-node-lease`, all nodes' renewals spread
//!   evenly over the renewal period and few in flight at once, so 5,000
//!   nodes cost a steady trickle of writes rather than bursts;
//! - one pod watch serves every hollow node (filtered by the node-name
//!   prefix): a pod bound to one is reported `Running` with a fake pod IP,
//!   and a pod being deleted is removed at once (kubelet's final delete,
//!   `gracePeriodSeconds: 0` with a UID precondition).
//!
//! Nothing runs: no CRI, no containers, no volumes, no probes.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use tokio::sync::Semaphore;

/// How often a hollow node's status is rewritten (kubelet's
/// `nodeStatusReportFrequency` when it has a Lease).
pub const STATUS_PERIOD: Duration = Duration::from_secs(300);
/// `leaseDurationSeconds` of hollow nodes' Leases (kubelet's default).
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// Label on every hollow node.
pub const HOLLOW_LABEL: &str = "skiff.dev/hollow";
/// API writes in flight at once, for all hollow nodes together
/// (registration, pod reports, deletions). Real kubelets write
/// independently of each other; 32 let reports fall behind bindings.
const MAX_IN_FLIGHT: usize = 128;
/// Lease renewals in flight at once, for all hollow nodes together. Real
/// kubelets renew independently of each other; with 32 at a time, 5,000
/// nodes' 200 renewals/s needed answers within 160 ms, and a loaded server
/// (p50 ~140 ms) let whole rounds of leases expire (hundreds of nodes
/// marked unreachable, their pods' scheduling stalled).
const HEARTBEATS_IN_FLIGHT: usize = 256;

/// What can stop the hollow nodes.
#[derive(Debug, thiserror::Error)]
pub enum HollowError {
    /// Registering a Node failed (not retryable here: the caller may retry).
    #[error("registering hollow node {node}: {source}")]
    Register {
        /// The node's name.
        node: String,
        /// The API error.
        source: kube::Error,
    },
    /// The pod watch ended, which only happens when the client is dropped.
    #[error("the hollow nodes' pod watch ended")]
    WatchEnded,
}

/// Shape of the hollow nodes.
#[derive(Clone, Debug)]
pub struct HollowOptions {
    /// How many nodes.
    pub count: usize,
    /// Node names are `<prefix><index, 5 digits>`.
    pub name_prefix: String,
    /// `status.capacity/allocatable.cpu`.
    pub cpu: String,
    /// `…memory`.
    pub memory: String,
    /// `…pods`.
    pub pods: String,
    /// Zones to spread the nodes over (`topology.kubernetes.io/zone`).
    pub zones: usize,
}

impl HollowOptions {
    /// `count` nodes of 4 cpu, 16Gi and 110 pods named `<prefix>00000`….
    pub fn new(count: usize, name_prefix: &str) -> HollowOptions {
        HollowOptions {
            count,
            name_prefix: name_prefix.to_string(),
            cpu: "4".into(),
            memory: "16Gi".into(),
            pods: "110".into(),
            zones: 3,
        }
    }

    /// The name of node `i`.
    pub fn node_name(&self, i: usize) -> String {
        format!("{}{i:05}", self.name_prefix)
    }

    /// Lease renewal period: kubelet's 10 s for small counts, stretched so
    /// that all nodes together renew at most about 200 times a second, but
    /// never beyond three quarters of the lease duration.
    pub fn lease_period(&self) -> Duration {
        let secs =
            (self.count as f64 / 200.0).clamp(10.0, f64::from(LEASE_DURATION_SECONDS) * 0.75);
        Duration::from_secs_f64(secs)
    }
}

fn now_time() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

fn node_object(o: &HollowOptions, i: usize) -> Node {
    let name = o.node_name(i);
    let labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), "amd64".to_string()),
        (
            "topology.kubernetes.io/zone".to_string(),
            format!("zone-{}", i % o.zones.max(1)),
        ),
        (HOLLOW_LABEL.to_string(), "true".to_string()),
    ]);
    Node {
        metadata: ObjectMeta {
            name: Some(name),
            labels: Some(labels),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn node_status(o: &HollowOptions) -> serde_json::Value {
    let resources = BTreeMap::from([
        ("cpu".to_string(), Quantity(o.cpu.clone())),
        ("memory".to_string(), Quantity(o.memory.clone())),
        ("pods".to_string(), Quantity(o.pods.clone())),
        ("ephemeral-storage".to_string(), Quantity("100Gi".into())),
    ]);
    let now = now_time();
    let cond = |type_: &str, status: &str, reason: &str| {
        serde_json::json!({"type": type_, "status": status, "reason": reason,
            "message": "hollow node", "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    serde_json::json!({"status": {
        "capacity": resources, "allocatable": resources,
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID"),
            cond("Ready", "True", "KubeletReady"),
        ],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "nodeInfo": {"kubeletVersion": "v1.32.0-skiff-hollow", "operatingSystem": "linux",
            "architecture": "amd64", "containerRuntimeVersion": "hollow://0",
            "kernelVersion": "", "osImage": "hollow", "kubeProxyVersion": "",
            "machineID": "", "systemUUID": "", "bootID": ""},
    }})
}

/// Creates (or adopts) node `i` and writes its status.
async fn register(client: &Client, o: &HollowOptions, i: usize) -> Result<(), HollowError> {
    let api: Api<Node> = Api::all(client.clone());
    let name = o.node_name(i);
    let err = |source| HollowError::Register {
        node: name.clone(),
        source,
    };
    match api.create(&PostParams::default(), &node_object(o, i)).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(err(e)),
    }
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(&node_status(o)),
    )
    .await
    .map_err(err)?;
    Ok(())
}

async fn renew_lease(client: &Client, name: &str) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let spec = LeaseSpec {
        holder_identity: Some(name.to_string()),
        lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
        renew_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
        ..Default::default()
    };
    let patch = serde_json::json!({ "spec": spec });
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    namespace: Some("kube-node-lease".into()),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            api.create(&PostParams::default(), &lease).await.map(|_| ())
        }
        Err(e) => Err(e),
    }
}

/// Renews every node's Lease once per `period`, one node every
/// `period / count`, and rewrites each status every [`STATUS_PERIOD`].
async fn heartbeat(client: Client, o: Arc<HollowOptions>, slots: Arc<Semaphore>) {
    if o.count == 0 {
        return;
    }
    let period = o.lease_period();
    let mut tick = tokio::time::interval(period / o.count as u32);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let status_every = (STATUS_PERIOD.as_secs_f64() / period.as_secs_f64())
        .ceil()
        .max(1.0) as usize;
    let mut round = 0usize;
    loop {
        for i in 0..o.count {
            tick.tick().await;
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let client = client.clone();
            let o = o.clone();
            // Status every `status_every` rounds, staggered by node.
            let with_status = (round + i).is_multiple_of(status_every);
            tokio::spawn(async move {
                let _permit = permit;
                let name = o.node_name(i);
                if let Err(e) = renew_lease(&client, &name).await {
                    tracing::debug!(node = %name, error = %e, "hollow lease renewal failed");
                }
                if with_status {
                    let api: Api<Node> = Api::all(client.clone());
                    if let Err(e) = api
                        .patch_status(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(&node_status(&o)),
                        )
                        .await
                    {
                        tracing::debug!(node = %name, error = %e, "hollow status update failed");
                    }
                }
            });
        }
        round += 1;
    }
}

/// A pod as the hollow nodes watch it: only what they report from or act
/// on (decoding whole `Pod`s for every event of 50,000 pods cost the
/// bench process as much CPU as the rest of its work).
#[derive(Clone, Debug, Default, serde::Deserialize)]
struct HollowPod {
    #[serde(
        default,
        deserialize_with = "skiff_client::slim_pod::meta_without_managed_fields"
    )]
    metadata: ObjectMeta,
    spec: Option<HollowPodSpec>,
    status: Option<HollowPodStatus>,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct HollowPodSpec {
    node_name: Option<String>,
    #[serde(default, deserialize_with = "skiff_client::slim_pod::null_as_default")]
    containers: Vec<HollowContainer>,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
struct HollowContainer {
    #[serde(default)]
    name: String,
    image: Option<String>,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
struct HollowPodStatus {
    phase: Option<String>,
}

skiff_client::impl_slim_pod!(HollowPod);

/// The status a running hollow pod reports.
fn running_status(pod: &HollowPod, ip: &str) -> serde_json::Value {
    let now = now_time();
    let cond =
        |t: &str| serde_json::json!({"type": t, "status": "True", "lastTransitionTime": now});
    let containers: Vec<serde_json::Value> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| {
            serde_json::json!({
                "name": c.name, "image": c.image.clone().unwrap_or_default(),
                "imageID": "", "containerID": format!("hollow://{}", c.name),
                "ready": true, "started": true, "restartCount": 0,
                "state": {"running": {"startedAt": now}},
            })
        })
        .collect();
    serde_json::json!({"status": {
        "phase": "Running",
        "conditions": [cond("PodReadyToStartContainers"), cond("Initialized"), cond("Ready"),
            cond("ContainersReady"), cond("PodScheduled")],
        "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": ip, "podIPs": [{"ip": ip}],
        "startTime": now, "containerStatuses": containers,
    }})
}

/// A fake pod IP in 10.128.0.0/9, unique per counter value.
fn fake_ip(n: u32) -> String {
    let n = n % (1 << 23);
    format!("10.{}.{}.{}", 128 + (n >> 16), (n >> 8) & 0xff, n & 0xff)
}

async fn handle_pod(client: Client, pod: HollowPod, ip: String) {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client, &ns);
    if pod.metadata.deletion_timestamp.is_some() {
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => tracing::debug!(pod = %name, error = %e, "hollow delete failed"),
        }
        return;
    }
    let status = running_status(&pod, &ip);
    if let Err(e) = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
    {
        tracing::debug!(pod = %name, error = %e, "hollow pod status failed");
    }
}

/// Runs `count` hollow nodes named `<name_prefix>00000`… (4 cpu, 16Gi, 110
/// pods) until `shutdown` completes. The nodes stay registered afterwards,
/// as a stopped kubelet's do; [`delete_hollow_nodes`] removes them.
pub async fn run_hollow_nodes(
    client: Client,
    count: usize,
    name_prefix: &str,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), HollowError> {
    run_hollow_nodes_with(client, HollowOptions::new(count, name_prefix), shutdown).await
}

/// [`run_hollow_nodes`] with every option.
pub async fn run_hollow_nodes_with(
    client: Client,
    options: HollowOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), HollowError> {
    let o = Arc::new(options);
    tokio::pin!(shutdown);
    // Register every node, a bounded number at a time.
    let registering = futures::stream::iter(0..o.count)
        .map(|i| {
            let client = client.clone();
            let o = o.clone();
            async move { register(&client, &o, i).await }
        })
        .buffer_unordered(MAX_IN_FLIGHT)
        .try_collect::<Vec<()>>();
    tokio::select! {
        _ = &mut shutdown => return Ok(()),
        r = registering => { r?; }
    }
    tracing::info!(count = o.count, prefix = %o.name_prefix, "hollow nodes registered");
    // Heartbeats and pod reports draw on separate budgets: when they shared
    // one, a burst of pod reports delayed lease renewals past the node
    // monitor's grace period and the node lifecycle controller marked
    // hundreds of busy hollow nodes unreachable (real kubelets do not
    // queue their heartbeats behind their pods either).
    let beat_slots = Arc::new(Semaphore::new(HEARTBEATS_IN_FLIGHT));
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let beat = tokio::spawn(heartbeat(client.clone(), o.clone(), beat_slots));
    let pods: Api<HollowPod> = Api::all(client.clone());
    let mut events = watcher::watcher(pods, watcher::Config::default())
        .default_backoff()
        .boxed();
    // Pods already handled, by uid (status reported, or deletion sent).
    let mut handled: HashSet<(String, bool)> = HashSet::new();
    let mut ips = 0u32;
    let result = loop {
        let next = tokio::select! {
            _ = &mut shutdown => break Ok(()),
            next = events.next() => next,
        };
        let pod = match next {
            None => break Err(HollowError::WatchEnded),
            Some(Err(e)) => {
                tracing::debug!(error = %e, "hollow pod watch error");
                continue;
            }
            Some(Ok(Event::Apply(p) | Event::InitApply(p))) => p,
            Some(Ok(Event::Delete(p))) => {
                if let Some(uid) = p.metadata.uid.clone() {
                    handled.remove(&(uid.clone(), false));
                    handled.remove(&(uid, true));
                }
                continue;
            }
            Some(Ok(_)) => continue,
        };
        let on_hollow = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| n.starts_with(&o.name_prefix));
        if !on_hollow {
            continue;
        }
        let deleting = pod.metadata.deletion_timestamp.is_some();
        let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if running && !deleting {
            continue;
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if !handled.insert((uid, deleting)) {
            continue;
        }
        ips = ips.wrapping_add(1);
        let ip = fake_ip(ips);
        let client = client.clone();
        // The permit is taken inside the task, so the watch is read at the
        // pace the server sends (waiting here made the server close the
        // watch as too slow, and the re-list cost it a full range read).
        // The semaphore is fair, so reports go out in arrival order.
        let slots = slots.clone();
        tokio::spawn(async move {
            let Ok(_permit) = slots.acquire_owned().await else {
                return;
            };
            handle_pod(client, pod, ip).await;
        });
    };
    beat.abort();
    result
}

/// Deletes hollow nodes `<prefix>00000`… `<prefix><count-1>` and their
/// Leases (for tests and benchmarks that clean up).
pub async fn delete_hollow_nodes(client: Client, count: usize, name_prefix: &str) {
    let o = HollowOptions::new(count, name_prefix);
    futures::stream::iter(0..count)
        .for_each_concurrent(MAX_IN_FLIGHT, |i| {
            let client = client.clone();
            let name = o.node_name(i);
            async move {
                let nodes: Api<Node> = Api::all(client.clone());
                let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
                let _ = nodes.delete(&name, &DeleteParams::default()).await;
                let _ = leases.delete(&name, &DeleteParams::default()).await;
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_ips_and_periods() {
        let o = HollowOptions::new(5000, "hollow-");
        assert_eq!(o.node_name(42), "hollow-00042");
        assert_eq!(o.lease_period(), Duration::from_secs(25));
        assert_eq!(
            HollowOptions::new(10, "h").lease_period(),
            Duration::from_secs(10)
        );
        assert_eq!(fake_ip(1), "10.128.0.1");
        assert_eq!(fake_ip(65536 + 258), "10.129.1.2");
    }

    #[test]
    fn status_reports_ready_with_resources() {
        let s = node_status(&HollowOptions::new(1, "h"));
        assert_eq!(s["status"]["allocatable"]["cpu"], "4");
        assert_eq!(s["status"]["conditions"][3]["type"], "Ready");
        assert_eq!(s["status"]["conditions"][3]["status"], "True");
    }
}
