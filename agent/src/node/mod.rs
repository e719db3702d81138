//! The Node object: registration, status and heartbeat.
//!
//! Kubelet registers its Node once (`registerWithAPIServer`), then keeps two
//! heartbeats (KEP-589): a small `Lease` in `kube-node-lease` renewed every
//! 10 s, and the Node's status, rewritten when it changes or every 5 minutes
//! (`nodeStatusReportFrequency`). Skiff does the same.

pub mod evict;
pub mod eviction;
pub mod facts;
pub mod image_gc;
pub mod lease;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, NodeStatus};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use tracing::{info, warn};

use crate::cri::Cri;
pub use eviction::PressureState;
pub use facts::HostFacts;
pub use status::{node_status, NodeParams, RuntimeHealth};

/// How often the node status is checked (and written if it changed); also
/// kubelet's `nodeStatusUpdateFrequency`.
pub const NODE_STATUS_UPDATE_PERIOD: Duration = Duration::from_secs(10);
/// The status is rewritten at least this often even when nothing changed
/// (kubelet `nodeStatusReportFrequency`).
pub const NODE_STATUS_REPORT_PERIOD: Duration = Duration::from_secs(300);

/// Why talking to the API about the Node failed. All are retryable.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The API server refused or could not be reached.
    #[error("node {node}: {source}")]
    Api {
        /// Node name.
        node: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// Encoding the status failed (never expected).
    #[error("encoding node status: {0}")]
    Json(#[from] serde_json::Error),
}

/// The labels kubelet puts on its Node (`kubernetes.io/*` well-known labels).
pub fn node_labels(node_name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), node_name.to_string()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        (
            "kubernetes.io/arch".to_string(),
            facts::kube_arch().to_string(),
        ),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        (
            "beta.kubernetes.io/arch".to_string(),
            facts::kube_arch().to_string(),
        ),
    ])
}

/// The annotations the agent owns: where local-path volumes go on this
/// node (read by the provisioner).
fn node_annotations(params: &NodeParams) -> BTreeMap<String, String> {
    BTreeMap::from([(
        crate::local_path::ROOT_ANNOTATION.to_string(),
        crate::local_path::root(&params.data_dir)
            .display()
            .to_string(),
    )])
}

/// Registers the node: create it, or if it exists merge our labels into it;
/// then write its status. Returns the Node as stored (its `spec.podCIDR`
/// may have been set by a controller).
pub async fn register(
    client: &kube::Client,
    params: &NodeParams,
    status: &NodeStatus,
) -> Result<Node, NodeError> {
    let api: Api<Node> = Api::all(client.clone());
    let err = |source| NodeError::Api {
        node: params.node_name.clone(),
        source,
    };
    let mut node = Node::default();
    node.metadata.name = Some(params.node_name.clone());
    node.metadata.labels = Some(node_labels(&params.node_name));
    node.metadata.annotations = Some(node_annotations(params));
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => info!(node = %params.node_name, "node registered"),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            // Re-registration after a restart: keep what others set (taints,
            // podCIDR, extra labels), refresh ours.
            let patch = serde_json::json!({ "metadata": {
                "labels": node_labels(&params.node_name),
                "annotations": node_annotations(params),
            } });
            api.patch(
                &params.node_name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(err)?;
            info!(node = %params.node_name, "node already registered; labels refreshed");
        }
        Err(e) => return Err(err(e)),
    }
    write_status(client, &params.node_name, status).await
}

/// Writes the node's status through the status subresource.
pub async fn write_status(
    client: &kube::Client,
    node_name: &str,
    status: &NodeStatus,
) -> Result<Node, NodeError> {
    let api: Api<Node> = Api::all(client.clone());
    let patch = serde_json::json!({ "status": serde_json::to_value(status)? });
    api.patch_status(node_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| NodeError::Api {
            node: node_name.into(),
            source,
        })
}

/// Keeps the node status fresh until the future is dropped: checks the
/// runtime every [`NODE_STATUS_UPDATE_PERIOD`], writes when the status
/// changed (ignoring heartbeat times) or every [`NODE_STATUS_REPORT_PERIOD`].
pub async fn status_loop(
    client: kube::Client,
    cri: Arc<dyn Cri>,
    params: NodeParams,
    mut last: NodeStatus,
    mut pressure: tokio::sync::watch::Receiver<PressureState>,
) {
    let mut last_write = Instant::now();
    let mut tick = tokio::time::interval(NODE_STATUS_UPDATE_PERIOD);
    tick.tick().await;
    loop {
        // A pressure change is written at once, the rest on the tick.
        tokio::select! {
            _ = tick.tick() => {}
            changed = pressure.changed() => {
                if changed.is_err() {
                    // No eviction manager (it stopped): keep the last state.
                    tick.tick().await;
                }
            }
        }
        let health = match cri.version().await {
            Ok(v) => RuntimeHealth::Up {
                version: format!("{}://{}", v.runtime_name, v.runtime_version),
            },
            Err(e) => RuntimeHealth::Down {
                message: e.to_string(),
            },
        };
        let facts = HostFacts::read(&params.data_dir);
        let state = *pressure.borrow_and_update();
        let next = node_status(
            &params,
            &facts,
            &health,
            state,
            Some(&last),
            Timestamp::now(),
        );
        let due = last_write.elapsed() >= NODE_STATUS_REPORT_PERIOD;
        if !due && status::same_ignoring_heartbeat(&last, &next) {
            continue;
        }
        match write_status(&client, &params.node_name, &next).await {
            Ok(_) => {
                last = next;
                last_write = Instant::now();
            }
            Err(e) => warn!("node status: {e}"),
        }
    }
}
