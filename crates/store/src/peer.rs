//! The raft network, server side: the `RaftPeer` gRPC service on the peer
//! port, and the messages of its `Call` RPC.
//!
//! ```text
//!  peer ── AppendEntries / Vote / InstallSnapshot ──► token check ──► openraft (Raft::append_entries, …)
//!  peer ── Call(PeerRequest) ─────────────────────► token check ──► Store::serve_call ──► PeerReply
//! ```
//!
//! Every request must carry the cluster token (the join token) in the
//! `x-skiff-token` header; without it the answer is `Unauthenticated`. The
//! token is the only protection of the peer port (there is no TLS yet), so
//! bind `--peer-listen` to an interface only the servers reach.
//!
//! The messages are bincode-encoded Rust enums with no versioning: a
//! changed or new [`PeerRequest`]/[`PeerReply`] variant (such as `Write`
//! carrying a batch) needs every server of the cluster upgraded together
//! (Skiff is pre-1.0 and promises no mixed-version clusters).

use std::sync::Weak;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::Raft;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::error::StoreError;
use crate::kv::LeaseId;
use crate::network::{MAX_PEER_MESSAGE_BYTES, TOKEN_HEADER};
use crate::raft_types::{Command, CommandResponse, NodeId, TypeConfig};

/// Generated code for `proto/skiff/raft.proto`.
#[allow(missing_docs, clippy::all)]
pub(crate) mod pb {
    tonic::include_proto!("skiff.raft");
}

use pb::raft_peer_server::{RaftPeer, RaftPeerServer};
use pb::{RaftReply, RaftRequest};

/// What a server asks of the leader (or of any server, for membership).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum PeerRequest {
    /// Writes proposed on a follower, batched (`forwarder.rs`): the leader
    /// proposes each through its group commit and answers once all are
    /// applied, one result per command, in order.
    Write(Vec<Command>),
    /// Raft §6.4 read index: the leader confirms it still leads and answers
    /// the index a follower must have applied before serving a read (one
    /// call serves every read the follower had queued).
    ReadIndex,
    /// A lease keep-alive: only the leader's deadlines count.
    KeepAlive(LeaseId),
    /// The time left on a lease, by the leader's clock.
    LeaseRemaining(LeaseId),
    /// A new server at `addr` (its peer URL) asks to join: the leader adds
    /// it as a learner and answers its node id.
    Join {
        /// The new server's peer URL (`http://host:port`).
        addr: String,
    },
    /// A learner asks to become a voter once it has caught up.
    Promote {
        /// The learner's node id.
        node_id: NodeId,
    },
    /// Remove a server from the cluster.
    Remove {
        /// The server's node id.
        node_id: NodeId,
    },
    /// The cluster's members, as this server sees them.
    Members,
}

/// A member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The raft node id.
    pub id: u64,
    /// Its peer URL.
    pub addr: String,
    /// Voter (true) or learner.
    pub voter: bool,
}

/// The answer to a [`PeerRequest`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum PeerReply {
    /// The applied results of forwarded writes, in the request's order;
    /// an `Err` is that command's alone.
    Write(Vec<Result<CommandResponse, WireError>>),
    /// The leader's read index.
    ReadIndex(u64),
    /// A lease's TTL (keep-alive) or time left, None if unknown.
    Ttl(Option<i64>),
    /// Answer to `Join`.
    Joined {
        /// The id the new server must use.
        node_id: NodeId,
        /// The cluster id for its data directory's marker.
        cluster_id: String,
    },
    /// Done (promote, remove).
    Done,
    /// Answer to `Members`.
    Members(Vec<Member>),
    /// The request failed.
    Failed(WireError),
}

/// A [`StoreError`] on the wire.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum WireError {
    /// Retryable: not the leader, no quorum, election. A write answered
    /// with it was not proposed.
    NoLeader(String),
    /// Not retryable: bad request.
    Invalid(String),
    /// The lease does not exist.
    LeaseNotFound(LeaseId),
    /// A write timed out on the leader; it may still be applied.
    Timeout(String),
    /// Anything else (storage, stopped).
    Other(String),
}

impl From<StoreError> for WireError {
    fn from(e: StoreError) -> WireError {
        match e {
            StoreError::NoLeader(m) => WireError::NoLeader(m),
            StoreError::InvalidRequest(m) => WireError::Invalid(m),
            StoreError::LeaseNotFound(id) => WireError::LeaseNotFound(id),
            StoreError::Timeout(m) => WireError::Timeout(m),
            other => WireError::Other(other.to_string()),
        }
    }
}

impl From<WireError> for StoreError {
    fn from(e: WireError) -> StoreError {
        match e {
            WireError::NoLeader(m) => StoreError::NoLeader(m),
            WireError::Invalid(m) => StoreError::InvalidRequest(m),
            WireError::LeaseNotFound(id) => StoreError::LeaseNotFound(id),
            WireError::Timeout(m) => StoreError::Timeout(format!("on the leader: {m}")),
            WireError::Other(m) => StoreError::Storage(format!("on the leader: {m}")),
        }
    }
}

/// Serves `Call`: implemented by the store (`store_cluster.rs`).
pub(crate) trait CallHandler: Send + Sync + 'static {
    /// Answer one request from a peer.
    fn serve_call(
        self: std::sync::Arc<Self>,
        req: PeerRequest,
    ) -> impl std::future::Future<Output = PeerReply> + Send;
}

/// The `RaftPeer` service.
pub(crate) struct PeerService<H> {
    raft: Raft<TypeConfig>,
    token: String,
    handler: Weak<H>,
}

fn check_token<T>(token: &str, req: &Request<T>) -> Result<(), Status> {
    let given = req
        .metadata()
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Compare every byte, so the time taken does not tell how much matched.
    let same = given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(Status::unauthenticated("missing or wrong cluster token"))
    }
}

fn decode<T: DeserializeOwned>(req: Request<RaftRequest>) -> Result<T, Status> {
    bincode::deserialize(&req.into_inner().data)
        .map_err(|e| Status::invalid_argument(format!("undecodable peer message: {e}")))
}

fn reply<T: Serialize>(v: &T) -> Result<Response<RaftReply>, Status> {
    let data = bincode::serialize(v)
        .map_err(|e| Status::internal(format!("encoding a peer answer: {e}")))?;
    Ok(Response::new(RaftReply { data }))
}

#[tonic::async_trait]
impl<H: CallHandler> RaftPeer for PeerService<H> {
    async fn append_entries(
        &self,
        req: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        check_token(&self.token, &req)?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode(req)?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        check_token(&self.token, &req)?;
        let rpc: VoteRequest<NodeId> = decode(req)?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        check_token(&self.token, &req)?;
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(req)?;
        reply(&self.raft.install_snapshot(rpc).await)
    }

    async fn call(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        check_token(&self.token, &req)?;
        let call: PeerRequest = decode(req)?;
        let Some(handler) = self.handler.upgrade() else {
            return Err(Status::unavailable("the store is stopping"));
        };
        reply(&handler.serve_call(call).await)
    }
}

/// Serve the peer protocol on `listener` until `stop` turns true.
pub(crate) fn spawn_server<H: CallHandler>(
    listener: TcpListener,
    raft: Raft<TypeConfig>,
    token: String,
    handler: Weak<H>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let service = PeerService {
        raft,
        token,
        handler,
    };
    let server = RaftPeerServer::new(service)
        .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES);
    tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(server)
            // `tcp_nodelay` above does not reach accepted connections of a
            // listener we bound; see `etcd::serve_etcd_api`.
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                },
            )
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "raft peer server stopped");
        }
    });
}
