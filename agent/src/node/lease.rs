//! The node heartbeat Lease (`coordination.k8s.io/v1`, namespace
//! `kube-node-lease`, name = node name; KEP-589). The node lifecycle
//! controller reads `renewTime` to decide whether the node is alive.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use tracing::{debug, warn};

/// Namespace of node leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// Renewal period (kubelet: leaseDuration / 4 = 10 s).
pub const LEASE_RENEW_PERIOD: Duration = Duration::from_secs(10);
/// `leaseDurationSeconds` (kubelet `--node-lease-duration-seconds` default).
pub const LEASE_DURATION_SECONDS: i32 = 40;

/// The Lease object for a node, owned by the Node so it is garbage-collected
/// with it.
pub fn node_lease(node_name: &str, node: Option<&Node>, now: Timestamp) -> Lease {
    let mut lease = Lease::default();
    lease.metadata.name = Some(node_name.into());
    lease.metadata.namespace = Some(NODE_LEASE_NAMESPACE.into());
    if let Some(uid) = node.and_then(|n| n.metadata.uid.clone()) {
        lease.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: node_name.into(),
            uid,
            ..Default::default()
        }]);
    }
    lease.spec = Some(LeaseSpec {
        holder_identity: Some(node_name.into()),
        lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
        renew_time: Some(MicroTime(now)),
        ..Default::default()
    });
    lease
}

/// Renews the lease once: patch, or create when missing.
pub async fn renew(
    client: &kube::Client,
    node_name: &str,
    node: Option<&Node>,
) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), NODE_LEASE_NAMESPACE);
    let lease = node_lease(node_name, node, Timestamp::now());
    let patch = serde_json::json!({ "spec": lease.spec });
    match api
        .patch(node_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            api.create(&PostParams::default(), &lease).await.map(|_| ())
        }
        Err(e) => Err(e),
    }
}

/// Renews the lease every [`LEASE_RENEW_PERIOD`] until dropped.
pub async fn lease_loop(client: kube::Client, node_name: String, node: Option<Node>) {
    let mut tick = tokio::time::interval(LEASE_RENEW_PERIOD);
    loop {
        tick.tick().await;
        match renew(&client, &node_name, node.as_ref()).await {
            Ok(()) => debug!(node = %node_name, "lease renewed"),
            Err(e) => warn!(node = %node_name, "lease renewal failed: {e}"),
        }
    }
}
