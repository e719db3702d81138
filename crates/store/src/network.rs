//! The raft network, client side: openraft's RPCs to other servers over
//! gRPC (`proto/skiff/raft.proto`), one pooled HTTP/2 connection per peer.
//!
//! ```text
//!  openraft replication / election ─► PeerNetwork::new_client(target, node.addr)
//!                                        └─► PeerConn ── RaftPeer.AppendEntries / Vote / InstallSnapshot ──► peer
//!  Store (follower): write, read index, keep-alive ─► Peers::call ── RaftPeer.Call ──► leader
//! ```
//!
//! Messages are openraft's own types, bincode-encoded into `bytes` fields;
//! the answer is `bincode(Result<response, openraft error>)`, so a remote
//! raft error comes back as openraft's `RemoteError`, and a transport
//! failure as `Unreachable` (openraft backs off) or `Network` (it retries).
//! A single-node store never sends anything: it is its own quorum.
//!
//! Connections: a tonic `Channel` per peer address, created lazily and
//! shared by every caller (openraft's replication stream to that peer, the
//! forwarding path). A channel reconnects by itself after the peer
//! restarts. Every request carries the cluster token in
//! [`TOKEN_HEADER`]. openraft splits snapshots into chunks of
//! `snapshot_max_chunk_size` (set to 1 MiB in `store.rs`), so no message
//! comes near [`MAX_PEER_MESSAGE_BYTES`]; AppendEntries carry at most
//! [`APPEND_ENTRIES_BUDGET_BYTES`] of entries (plus one), the rest follows
//! in the next call (`PartialSuccess`).

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Entry, EntryPayload};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use crate::error::StoreError;
use crate::peer::pb::raft_peer_client::RaftPeerClient;
use crate::peer::pb::RaftRequest;
use crate::peer::{PeerReply, PeerRequest};
use crate::proposer::approx_bytes;
use crate::raft_types::{NodeId, TypeConfig};

/// gRPC metadata header carrying the cluster token on every peer call.
pub(crate) const TOKEN_HEADER: &str = "x-skiff-token";
/// Largest peer message: an AppendEntries of up to `max_payload_entries`
/// batched entries, or one snapshot chunk.
pub(crate) const MAX_PEER_MESSAGE_BYTES: usize = 256 << 20;
/// Most entry bytes sent in one AppendEntries (one entry is always sent,
/// whatever its size). openraft 0.9 gives the whole RPC, the follower's
/// fdatasync included, one heartbeat interval; a lagging follower sent 16
/// group-commit batches of several MiB at once would time out every time
/// and never catch up.
const APPEND_ENTRIES_BUDGET_BYTES: usize = 1 << 20;
/// How long connecting to a peer may take before the RPC counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The pool of connections to other servers, shared by openraft's network
/// and the forwarding path.
#[derive(Clone)]
pub(crate) struct Peers {
    token: Arc<str>,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

/// Why a peer call failed before an answer came back.
#[derive(Debug)]
pub(crate) enum CallError {
    /// No connection could be made (the peer is down): the request surely
    /// did not reach it.
    Unreachable(String),
    /// The call failed on the way (timeout, reset, refused token, bad
    /// reply): the peer may have received and acted on it.
    Network(String),
}

/// Whether `s` is tonic's answer to a failed connect (`ConnectError` in its
/// source chain): nothing was sent. Other `Unavailable` answers (a reset
/// or closed connection) may come after the peer got the request.
fn is_connect_error(s: &tonic::Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(s);
    while let Some(e) = source {
        if e.is::<tonic::ConnectError>() {
            return true;
        }
        source = e.source();
    }
    false
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(m) | CallError::Network(m) => f.write_str(m),
        }
    }
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, CallError> {
    bincode::serialize(v).map_err(|e| CallError::Network(format!("encoding a peer message: {e}")))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CallError> {
    bincode::deserialize(bytes)
        .map_err(|e| CallError::Network(format!("decoding a peer answer: {e}")))
}

/// Which RPC of the `RaftPeer` service to call.
#[derive(Clone, Copy, Debug)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
    Call,
}

impl Peers {
    pub(crate) fn new(token: &str) -> Peers {
        Peers {
            token: token.into(),
            channels: Arc::default(),
        }
    }

    /// The pooled channel to `addr` (an `http://host:port` URL).
    fn channel(&self, addr: &str) -> Result<Channel, CallError> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(addr.to_string())
            .map_err(|e| CallError::Unreachable(format!("bad peer address {addr:?}: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(10));
        let channel = endpoint.connect_lazy();
        map.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// Send `req` to `addr` and decode the answer.
    async fn rpc<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        rpc: Rpc,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let mut client = RaftPeerClient::new(self.channel(addr)?)
            .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES);
        let mut request = tonic::Request::new(RaftRequest { data: encode(req)? });
        request.set_timeout(timeout);
        let token = self
            .token
            .parse()
            .map_err(|_| CallError::Network("the cluster token is not valid metadata".into()))?;
        request.metadata_mut().insert(TOKEN_HEADER, token);
        let reply = match rpc {
            Rpc::AppendEntries => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::InstallSnapshot => client.install_snapshot(request).await,
            Rpc::Call => client.call(request).await,
        };
        match reply {
            Ok(r) => decode(&r.into_inner().data),
            Err(s) if is_connect_error(&s) => Err(CallError::Unreachable(format!(
                "peer {addr} unreachable: {}",
                s.message()
            ))),
            Err(s) => Err(CallError::Network(format!(
                "peer {addr}: {rpc:?} failed: {:?}: {}",
                s.code(),
                s.message()
            ))),
        }
    }

    /// Ask the server at `addr` to do something only the leader does (it
    /// passes it on to the leader if it is not).
    pub(crate) async fn call(
        &self,
        addr: &str,
        req: &PeerRequest,
        timeout: Duration,
    ) -> Result<PeerReply, CallError> {
        self.rpc(addr, Rpc::Call, req, timeout).await
    }
}

impl From<CallError> for StoreError {
    fn from(e: CallError) -> StoreError {
        // Retryable: the leader may be changing.
        StoreError::NoLeader(e.to_string())
    }
}

/// openraft's network factory: a [`PeerConn`] per target over the pool.
#[derive(Clone)]
pub(crate) struct PeerNetwork {
    pub(crate) peers: Peers,
}

/// openraft's connection to one peer.
pub(crate) struct PeerConn {
    peers: Peers,
    target: NodeId,
    addr: String,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConn;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerConn {
        PeerConn {
            peers: self.peers.clone(),
            target,
            addr: node.addr.clone(),
        }
    }
}

impl PeerConn {
    /// One raft RPC: transport failures become `Unreachable`/`Network`, a
    /// raft error on the peer becomes `RemoteError`.
    async fn send<Req, Resp, E>(
        &self,
        rpc: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        if self.addr.is_empty() {
            let e = io::Error::new(
                io::ErrorKind::NotConnected,
                format!("node {} has no peer address", self.target),
            );
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        }
        let answer: Result<Result<Resp, E>, CallError> = self
            .peers
            .rpc(&self.addr, rpc, req, option.hard_ttl())
            .await;
        match answer {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Err(CallError::Unreachable(m)) => Err(RPCError::Unreachable(Unreachable::new(
                &io::Error::new(io::ErrorKind::NotConnected, m),
            ))),
            Err(CallError::Network(m)) => {
                Err(RPCError::Network(NetworkError::new(&io::Error::other(m))))
            }
        }
    }
}

/// How many of `entries` to send in one AppendEntries: as many as fit in
/// [`APPEND_ENTRIES_BUDGET_BYTES`], and at least one.
fn entries_within_budget(entries: &[Entry<TypeConfig>]) -> usize {
    let mut bytes = 0;
    for (i, e) in entries.iter().enumerate() {
        bytes += match &e.payload {
            EntryPayload::Normal(cmd) => approx_bytes(cmd),
            _ => 64,
        };
        if i > 0 && bytes > APPEND_ENTRIES_BUDGET_BYTES {
            return i;
        }
    }
    entries.len()
}

impl RaftNetwork<TypeConfig> for PeerConn {
    /// Sends at most [`APPEND_ENTRIES_BUDGET_BYTES`] of the entries and
    /// answers `PartialSuccess` for the rest: openraft then sends the rest
    /// next. (The follower commits no further than what it received.)
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let keep = entries_within_budget(&rpc.entries);
        let cut = keep < rpc.entries.len();
        rpc.entries.truncate(keep);
        let last = rpc.entries.last().map(|e| e.log_id);
        let answer = self.send(Rpc::AppendEntries, &rpc, &option).await?;
        Ok(match answer {
            AppendEntriesResponse::Success if cut => AppendEntriesResponse::PartialSuccess(last),
            other => other,
        })
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.send(Rpc::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.send(Rpc::Vote, &rpc, &option).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::PutRequest;
    use crate::raft_types::Command;
    use openraft::{CommittedLeaderId, LogId};
    use tokio::io::AsyncReadExt;

    fn put_entry(index: u64, value_bytes: usize) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command::Put(PutRequest {
                key: b"k".to_vec(),
                value: vec![0; value_bytes],
                ..Default::default()
            })),
        }
    }

    #[test]
    fn append_entries_are_cut_to_the_budget_but_never_empty() {
        let big: Vec<_> = (1..=4).map(|i| put_entry(i, 600 << 10)).collect();
        assert_eq!(entries_within_budget(&big), 1);
        let huge = vec![put_entry(1, 3 << 20), put_entry(2, 10)];
        assert_eq!(entries_within_budget(&huge), 1);
        let small: Vec<_> = (1..=16).map(|i| put_entry(i, 1 << 10)).collect();
        assert_eq!(entries_within_budget(&small), 16);
        assert_eq!(entries_within_budget(&[]), 0);
    }

    /// A write forwarded to the leader is tried again only if it surely
    /// did not arrive: a refused connection is `Unreachable`, a connection
    /// that dies after the request went out is `Network`.
    #[tokio::test]
    async fn refused_connection_is_unreachable_and_a_dropped_call_is_not() {
        let peers = Peers::new("token");
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let r = peers
            .call(&addr, &PeerRequest::Members, Duration::from_secs(5))
            .await;
        assert!(matches!(r, Err(CallError::Unreachable(_))), "{r:?}");

        // Accepts, reads the request's first bytes, hangs up.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 64];
                let _ = conn.read(&mut buf).await;
            }
        });
        let r = peers
            .call(&addr, &PeerRequest::Members, Duration::from_secs(5))
            .await;
        assert!(matches!(r, Err(CallError::Network(_))), "{r:?}");
    }
}
