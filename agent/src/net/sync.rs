//! The networking loop: watch the API, render, apply — the I/O edge around
//! the pure renderers.
//!
//! ```text
//!  reflectors: Services, EndpointSlices, Nodes, Pods, Namespaces, NetworkPolicies
//!        │ any event
//!        ▼
//!  debounce (SYNC_DEBOUNCE) ──► sync():
//!        1. own node's podCIDR changed? rewrite the CNI config
//!        2. routes to other nodes' pod CIDRs      (routes.rs)
//!        3. Ruleset = proxy::render + policy::render
//!           unchanged? nothing; else one `nft -f -` transaction: only the
//!           delta from the last applied ruleset (nft::sync_table), the whole
//!           table at start, after a failure, and every FULL_RESYNC_PERIOD
//!        4. LoadBalancer status = node addresses (on the elected node)
//! ```
//!
//! A change of endpoints reaches the kernel within the watch latency plus
//! [`SYNC_DEBOUNCE`] plus one render, delta and `nft -f -` (about 0.1 s
//! for 1,000 services × 10 endpoints on a busy 2-core machine; the first,
//! full sync about 0.7 s; see `skiff bench proxy`).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::model::{self, Ipv4Cidr, NodeInfo, SERVICE_NAME_LABEL};
use super::policy::{self, PolicyInput};
use super::proxy::{self, ProxyInput};
use super::routes;
use super::ruleset::{self, Ruleset};
use super::{nft, sysctl};
use crate::cni::{self, CniNetwork};

/// Wait after the first event of a burst before syncing, so one rollout
/// (many slice and pod updates) becomes one transaction. Small against the
/// 1 s the issue allows for an endpoint change to reach the kernel.
pub const SYNC_DEBOUNCE: Duration = Duration::from_millis(100);
/// Resync even without events, repairing routes or rules changed by hand.
pub const RESYNC_PERIOD: Duration = Duration::from_secs(30);
/// Rewrite the whole table this often even when deltas keep succeeding,
/// repairing rules changed by hand (kube-proxy's nftables mode does a full
/// sync hourly too). Between full syncs only deltas are sent.
pub const FULL_RESYNC_PERIOD: Duration = Duration::from_secs(3600);
/// Wait before retrying a sync that failed.
pub const RETRY_PERIOD: Duration = Duration::from_secs(1);

/// What the networking loop needs to know about this node.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// This node's name.
    pub node_name: String,
    /// The CNI network (its bridge, and the pod CIDR last written).
    pub cni: CniNetwork,
    /// Where the CNI conflist lives (rewritten when `node.spec.podCIDR` changes).
    pub cni_conf_dir: PathBuf,
    /// The nftables table (family `ip`) this agent owns.
    pub table: String,
}

impl NetConfig {
    /// The config for a node whose CNI network is `cni`; the table is named
    /// after the bridge ([`ruleset::table_name`]).
    pub fn new(node_name: &str, cni: &CniNetwork, cni_conf_dir: &std::path::Path) -> NetConfig {
        NetConfig {
            node_name: node_name.to_string(),
            table: ruleset::table_name(&cni.bridge),
            cni: cni.clone(),
            cni_conf_dir: cni_conf_dir.to_path_buf(),
        }
    }
}

struct Stores {
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    pods: Store<Pod>,
    namespaces: Store<Namespace>,
    policies: Store<NetworkPolicy>,
}

fn reflect<K>(
    client: &kube::Client,
    notify: &Arc<Notify>,
) -> (Store<K>, tokio::task::JoinHandle<()>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let api: Api<K> = Api::all(client.clone());
    let notify = notify.clone();
    let task = tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .boxed();
        while let Some(ev) = events.next().await {
            match ev {
                Ok(_) => notify.notify_one(),
                Err(e) => warn!(kind = %K::kind(&()), "network watch: {e}"),
            }
        }
    });
    (store, task)
}

/// Runs the node's networking until `shutdown`: routes, service proxy,
/// network policy. Leaves the rules and routes in place when it stops (pods
/// keep running, like kube-proxy's rules outliving it).
pub async fn run(client: kube::Client, mut config: NetConfig, shutdown: impl Future<Output = ()>) {
    info!(table = %config.table, node = %config.node_name, "network: starting");
    for (key, value) in [
        ("net/ipv4/ip_forward", "1"),
        // Same-node pod → ClusterIP → pod traffic is bridged; it only meets
        // the nat table when bridged IPv4 goes through netfilter.
        ("net/bridge/bridge-nf-call-iptables", "1"),
    ] {
        if let Err(e) = sysctl::set(key, value) {
            warn!("sysctl {key}={value}: {e}");
        }
    }
    let notify = Arc::new(Notify::new());
    let (services, t1) = reflect::<Service>(&client, &notify);
    let (slices, t2) = reflect::<EndpointSlice>(&client, &notify);
    let (nodes, t3) = reflect::<Node>(&client, &notify);
    let (pods, t4) = reflect::<Pod>(&client, &notify);
    let (namespaces, t5) = reflect::<Namespace>(&client, &notify);
    let (policies, t6) = reflect::<NetworkPolicy>(&client, &notify);
    let tasks = [t1, t2, t3, t4, t5, t6];
    let stores = Stores {
        services,
        slices,
        nodes,
        pods,
        namespaces,
        policies,
    };
    let mut state = SyncState::default();
    tokio::pin!(shutdown);
    let ready = async {
        // NetworkPolicy is optional: a server without it must not block the proxy.
        let _ = stores.services.wait_until_ready().await;
        let _ = stores.slices.wait_until_ready().await;
        let _ = stores.nodes.wait_until_ready().await;
    };
    tokio::select! {
        _ = &mut shutdown => { for t in tasks { t.abort(); } return; }
        _ = ready => {}
    }
    info!("network: caches synced");
    loop {
        let started = Instant::now();
        match sync(&client, &mut config, &stores, &mut state).await {
            Ok(()) => debug!(elapsed = ?started.elapsed(), "network sync"),
            Err(e) => {
                warn!("network sync: {e}");
                state.applied = None;
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(RETRY_PERIOD) => continue,
                }
            }
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = notify.notified() => {}
            _ = tokio::time::sleep(RESYNC_PERIOD) => {}
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(SYNC_DEBOUNCE) => {}
        }
    }
    for t in tasks {
        t.abort();
    }
}

#[derive(Default)]
struct SyncState {
    /// The ruleset last applied; `None` forces a full rewrite of the table.
    applied: Option<Ruleset>,
    /// When the whole table was last rewritten.
    last_full: Option<Instant>,
}

/// Why one sync failed (all retried after [`RETRY_PERIOD`]).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Rewriting the CNI config failed.
    #[error("CNI config: {0}")]
    Cni(#[source] std::io::Error),
    /// Routes could not be synced.
    #[error(transparent)]
    Routes(#[from] routes::RouteError),
    /// nft rejected the rules.
    #[error(transparent)]
    Nft(#[from] nft::NftError),
}

async fn sync(
    client: &kube::Client,
    config: &mut NetConfig,
    stores: &Stores,
    state: &mut SyncState,
) -> Result<(), SyncError> {
    let nodes: Vec<NodeInfo> = stores
        .nodes
        .state()
        .iter()
        .map(|n| model::node_info(n))
        .collect();
    let me = nodes.iter().find(|n| n.name == config.node_name);
    if let Some(cidr) = me.and_then(|n| n.pod_cidr.clone()) {
        if cidr != config.cni.pod_cidr {
            let mut net = config.cni.clone();
            net.pod_cidr = cidr.clone();
            cni::write_config(&config.cni_conf_dir, &net).map_err(SyncError::Cni)?;
            info!(%cidr, "node.spec.podCIDR changed: CNI config rewritten");
            config.cni = net;
        }
    }
    let local_cidr = Ipv4Cidr::parse(&config.cni.pod_cidr);

    let desired = routes::desired_routes(&config.node_name, &nodes);
    let ops = routes::sync(&desired).await?;
    if !ops.is_empty() {
        info!(?ops, "pod network routes updated");
    }

    let rs = render(config, &nodes, local_cidr, stores);
    let full_due = state
        .last_full
        .is_none_or(|t| t.elapsed() >= FULL_RESYNC_PERIOD);
    let started = Instant::now();
    // Taken: after a failure the kernel's state is unknown, and the next
    // sync starts over with a full rewrite.
    let prev = state.applied.take();
    let applied = if full_due {
        nft::rewrite_table(None, &config.table, prev.as_ref(), &rs).await?
    } else {
        nft::sync_table(None, &config.table, prev.as_ref(), &rs).await?
    };
    if applied != nft::Applied::Unchanged {
        debug!(rules = rs.rule_count(), elapsed = ?started.elapsed(), ?applied, "nft rules applied");
    }
    if applied.was_full() {
        state.last_full = Some(Instant::now());
    }
    state.applied = Some(rs);

    write_load_balancer_status(client, &config.node_name, &nodes, stores).await;
    Ok(())
}

fn render(
    config: &NetConfig,
    nodes: &[NodeInfo],
    local_cidr: Option<Ipv4Cidr>,
    stores: &Stores,
) -> Ruleset {
    let mut cidrs: Vec<&str> = nodes.iter().filter_map(|n| n.pod_cidr.as_deref()).collect();
    cidrs.push(&config.cni.pod_cidr);
    let pod_cidrs = proxy::pod_cidrs(cidrs.into_iter());

    let slices = stores.slices.state();
    let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
    for s in &slices {
        let (Some(ns), Some(name)) = (
            s.metadata.namespace.as_deref(),
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL)),
        ) else {
            continue;
        };
        by_service.entry((ns, name.as_str())).or_default().push(s);
    }
    let mut services = Vec::new();
    for svc in stores.services.state() {
        let key = (
            svc.metadata.namespace.as_deref().unwrap_or_default(),
            svc.metadata.name.as_deref().unwrap_or_default(),
        );
        let empty = Vec::new();
        let mine = by_service.get(&key).unwrap_or(&empty);
        services.extend(model::service_ports(&svc, mine));
    }
    services.sort_by_key(|a| a.key());

    let mut rs = Ruleset::default();
    proxy::render(
        &ProxyInput {
            node_name: &config.node_name,
            bridge: &config.cni.bridge,
            pod_cidrs: &pod_cidrs,
            services: &services,
        },
        &mut rs,
    );

    let policies: Vec<NetworkPolicy> = stores
        .policies
        .state()
        .iter()
        .map(|p| (**p).clone())
        .collect();
    let pods: Vec<model::PodInfo> = if policies.is_empty() {
        Vec::new()
    } else {
        stores
            .pods
            .state()
            .iter()
            .filter_map(|p| model::pod_info(p))
            .collect()
    };
    let namespaces: BTreeMap<String, BTreeMap<String, String>> = stores
        .namespaces
        .state()
        .iter()
        .filter_map(|n| {
            Some((
                n.metadata.name.clone()?,
                n.metadata.labels.clone().unwrap_or_default(),
            ))
        })
        .collect();
    policy::render(
        &PolicyInput {
            local_cidr,
            pods: &pods,
            namespaces: &namespaces,
            policies: &policies,
        },
        &mut rs,
    );
    rs
}

/// k3s-style service load balancer: a `LoadBalancer` Service (without a
/// `loadBalancerClass`) gets the Ready nodes' InternalIPs as its ingress. One
/// node writes it — the Ready node whose name sorts first — so agents do not
/// fight over the field.
async fn write_load_balancer_status(
    client: &kube::Client,
    me: &str,
    nodes: &[NodeInfo],
    stores: &Stores,
) {
    let mut ready: Vec<&NodeInfo> = nodes.iter().filter(|n| n.ready).collect();
    ready.sort_by(|a, b| a.name.cmp(&b.name));
    if ready.first().map(|n| n.name.as_str()) != Some(me) {
        return;
    }
    let mut ips: Vec<Ipv4Addr> = ready.iter().filter_map(|n| n.internal_ip).collect();
    ips.sort();
    ips.dedup();
    for svc in stores.services.state() {
        let Some(spec) = &svc.spec else { continue };
        if spec.type_.as_deref() != Some("LoadBalancer") || spec.load_balancer_class.is_some() {
            continue;
        }
        let (Some(ns), Some(name)) = (
            svc.metadata.namespace.as_deref(),
            svc.metadata.name.as_deref(),
        ) else {
            continue;
        };
        let current: Vec<Ipv4Addr> = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .map(|i| {
                i.iter()
                    .filter_map(|i| i.ip.as_deref()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        if current == ips {
            continue;
        }
        let key = format!("{ns}/{name}");
        let ingress: Vec<serde_json::Value> = ips
            .iter()
            .map(|ip| serde_json::json!({ "ip": ip.to_string(), "ipMode": "VIP" }))
            .collect();
        let patch = serde_json::json!({ "status": { "loadBalancer": { "ingress": ingress } } });
        let api: Api<Service> = Api::namespaced(client.clone(), ns);
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => info!(service = %key, ?ips, "load balancer ingress written"),
            Err(e) => warn!(service = %key, "writing load balancer status: {e}"),
        }
    }
}
