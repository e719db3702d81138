//! The node IPAM controller: gives every node a pod CIDR
//! (`spec.podCIDR`/`spec.podCIDRs`) carved from the cluster CIDR, like
//! kube-controller-manager's `nodeipam` with the `RangeAllocator`.
//!
//! ```text
//!  Node events ─> key = node name ─> reconcile:
//!    first time: mark every CIDR already on a node as used (after a
//!                restart nothing is handed out twice)
//!    node gone          ─> release its CIDR
//!    node has a CIDR    ─> mark it used
//!    node has none      ─> next free /N ─> PATCH spec.podCIDR(s)
//! ```
//!
//! The pure part is [`CidrSet`]; one worker runs the reconciles, so the
//! set needs no further locking than its mutex. Caveats: IPv4 only; a
//! CIDR outside the cluster CIDR (set by hand) is respected but not
//! tracked; no `--allocate-node-cidrs=false` beyond an empty cluster CIDR.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::config::ControllersConfig;
use crate::error::{is_status, ControllerError};
use crate::runtime::{informer::event_objects, Informer, Reconciler, WorkQueue};

/// The controller's name in logs.
pub const NAME: &str = "nodeipam";

/// The /`mask` subnets of one IPv4 cluster CIDR and which are taken.
#[derive(Clone, Debug)]
pub struct CidrSet {
    base: u32,
    prefix: u8,
    mask: u8,
    used: BTreeSet<u32>,
}

/// Parses `a.b.c.d/n` (host bits zero) into (address, prefix).
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (a, p) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not ADDRESS/PREFIX"))?;
    let addr: Ipv4Addr = a
        .parse()
        .map_err(|_| format!("{a:?} is not an IPv4 address"))?;
    let prefix: u8 = p
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or_else(|| format!("bad prefix in {s:?}"))?;
    let bits = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    if u32::from(addr) & !bits != 0 {
        return Err(format!("{s:?} has host bits set"));
    }
    Ok((addr, prefix))
}

impl CidrSet {
    /// Subnets of size /`mask` inside `cluster_cidr`.
    pub fn new(cluster_cidr: &str, mask: u8) -> Result<CidrSet, String> {
        let (addr, prefix) = parse_cidr(cluster_cidr)?;
        if mask < prefix || mask > 30 || mask - prefix > 16 {
            return Err(format!(
                "node CIDR mask /{mask} does not fit cluster CIDR {cluster_cidr} (at most 65536 subnets of at least 4 addresses)"
            ));
        }
        Ok(CidrSet {
            base: u32::from(addr),
            prefix,
            mask,
            used: BTreeSet::new(),
        })
    }

    /// How many subnets there are.
    pub fn capacity(&self) -> u32 {
        1u32 << (self.mask - self.prefix)
    }

    fn cidr(&self, index: u32) -> String {
        let addr = Ipv4Addr::from(self.base + (index << (32 - u32::from(self.mask))));
        format!("{addr}/{}", self.mask)
    }

    /// The index of `cidr` if it is exactly one of our subnets.
    pub fn index_of(&self, cidr: &str) -> Option<u32> {
        let (addr, prefix) = parse_cidr(cidr).ok()?;
        if prefix != self.mask {
            return None;
        }
        let offset = u32::from(addr).checked_sub(self.base)?;
        let index = offset >> (32 - u32::from(self.mask));
        (index < self.capacity()).then_some(index)
    }

    /// Marks `cidr` used; false if it is not one of ours.
    pub fn occupy(&mut self, cidr: &str) -> bool {
        match self.index_of(cidr) {
            Some(i) => {
                self.used.insert(i);
                true
            }
            None => false,
        }
    }

    /// Takes the lowest free subnet.
    pub fn allocate(&mut self) -> Option<String> {
        let i = (0..self.capacity()).find(|i| !self.used.contains(i))?;
        self.used.insert(i);
        Some(self.cidr(i))
    }

    /// Gives `cidr` back.
    pub fn release(&mut self, cidr: &str) {
        if let Some(i) = self.index_of(cidr) {
            self.used.remove(&i);
        }
    }
}

/// The pod CIDR a node has, if any.
pub fn pod_cidr(node: &Node) -> Option<&str> {
    let spec = node.spec.as_ref()?;
    spec.pod_cidr
        .as_deref()
        .or_else(|| spec.pod_cidrs.as_ref()?.first().map(String::as_str))
        .filter(|c| !c.is_empty())
}

struct State {
    set: CidrSet,
    /// Which node holds which CIDR (to release on deletion).
    by_node: BTreeMap<String, String>,
    initialized: bool,
}

/// The node IPAM controller.
pub struct NodeIpamController {
    client: Client,
    nodes: Store<Node>,
    state: Option<Mutex<State>>,
}

impl NodeIpamController {
    /// Builds the controller; with no cluster CIDR configured it does
    /// nothing. Errors on a CIDR or mask that does not parse.
    pub fn new(
        client: Client,
        nodes: &mut Informer<Node>,
        queue: &WorkQueue,
        config: &ControllersConfig,
    ) -> Result<Arc<NodeIpamController>, ControllerError> {
        let state = match config.cluster_cidr.as_deref().filter(|c| !c.is_empty()) {
            None => None,
            Some(cidr) => Some(Mutex::new(State {
                set: CidrSet::new(cidr, config.node_cidr_mask_size)
                    .map_err(ControllerError::Config)?,
                by_node: BTreeMap::new(),
                initialized: false,
            })),
        };
        if state.is_some() {
            let queue = queue.clone();
            nodes.on_event(move |e| {
                // Deletions too: the reconcile releases the CIDR.
                if let Some(n) = event_objects(e) {
                    queue.add(n.name_any());
                }
            });
        }
        Ok(Arc::new(NodeIpamController {
            client,
            nodes: nodes.store(),
            state,
        }))
    }
}

#[async_trait::async_trait]
impl Reconciler for NodeIpamController {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ControllerError> {
        let Some(state) = &self.state else {
            return Ok(None);
        };
        let node = self.nodes.get(&ObjectRef::new(key));
        let cidr = {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            if !st.initialized {
                for n in self.nodes.state() {
                    if let Some(c) = pod_cidr(&n) {
                        let c = c.to_string();
                        if st.set.occupy(&c) {
                            st.by_node.insert(n.name_any(), c);
                        }
                    }
                }
                st.initialized = true;
            }
            match node.as_deref() {
                None => {
                    if let Some(c) = st.by_node.remove(key) {
                        st.set.release(&c);
                        tracing::info!(node = %key, cidr = %c, "released pod CIDR");
                    }
                    return Ok(None);
                }
                Some(n) => {
                    if let Some(c) = pod_cidr(n) {
                        let c = c.to_string();
                        if st.set.occupy(&c) {
                            st.by_node.insert(key.to_string(), c);
                        }
                        return Ok(None);
                    }
                    if let Some(c) = st.by_node.get(key) {
                        // Assigned by us, not in the cache yet: write again.
                        c.clone()
                    } else {
                        let Some(c) = st.set.allocate() else {
                            tracing::warn!(node = %key, "no pod CIDR left in the cluster CIDR");
                            return Ok(Some(Duration::from_secs(30)));
                        };
                        st.by_node.insert(key.to_string(), c.clone());
                        c
                    }
                }
            }
        };
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
        match api
            .patch(key, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                tracing::info!(node = %key, %cidr, "assigned pod CIDR");
                Ok(None)
            }
            Err(e) if is_status(&e, 404) => {
                let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                st.by_node.remove(key);
                st.set.release(&cidr);
                Ok(None)
            }
            Err(e) => Err(ControllerError::api(
                format!("setting podCIDR of node {key}"),
                e,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_each_subnet_once() {
        let mut set = CidrSet::new("10.42.0.0/16", 24).unwrap();
        assert_eq!(set.capacity(), 256);
        assert!(set.occupy("10.42.0.0/24"));
        assert!(set.occupy("10.42.2.0/24"));
        assert!(!set.occupy("10.43.0.0/24"), "outside the cluster CIDR");
        assert!(!set.occupy("10.42.0.0/25"), "another size");
        assert_eq!(set.allocate().as_deref(), Some("10.42.1.0/24"));
        assert_eq!(set.allocate().as_deref(), Some("10.42.3.0/24"));
        set.release("10.42.1.0/24");
        assert_eq!(set.allocate().as_deref(), Some("10.42.1.0/24"));
    }

    #[test]
    fn full_and_bad_inputs() {
        let mut set = CidrSet::new("10.199.50.0/24", 24).unwrap();
        assert_eq!(set.allocate().as_deref(), Some("10.199.50.0/24"));
        assert_eq!(set.allocate(), None);
        let mut small = CidrSet::new("10.0.0.0/30", 30).unwrap();
        assert_eq!(small.allocate().as_deref(), Some("10.0.0.0/30"));
        assert!(CidrSet::new("10.42.0.1/16", 24).is_err());
        assert!(CidrSet::new("10.42.0.0/16", 8).is_err());
        assert!(CidrSet::new("10.0.0.0/8", 31).is_err());
        assert!(CidrSet::new("nope", 24).is_err());
    }
}
