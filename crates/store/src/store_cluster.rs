//! [`Store`] as one server of several: where requests go (this node, or
//! the leader), the peer `Call`s it answers, and membership (join, promote,
//! remove).
//!
//! ```text
//!  write on a follower ─► route() = Leader(addr) ─► forwarder (batches) ─► Call Write[..] ─► leader's proposer ─► raft
//!  read on a follower  ─► forwarder (batches) ─► Call ReadIndex ─► leader confirms its lead (heartbeat quorum)
//!                        ◄─ index ──────── wait until applied ≥ index, then read locally
//!  new server ─ Call Join{addr} ─► leader: add_learner(next id) ─► Joined{id, cluster id}
//!             (starts raft, catches up by log or snapshot)
//!             ─ Call Promote{id} ─► leader: wait until the learner is close, then make it a voter
//! ```
//!
//! A write is tried again only when it surely did not commit: the route
//! found no leader, the leader was unreachable (connection refused), the
//! node that proposed it was no longer the leader (openraft's
//! `ForwardToLeader`, answered before appending or when the uncommitted
//! entry is truncated), or it waited in a follower's forwarding queue past
//! its deadline without being sent. A follower batches the writes and
//! read-index requests it forwards (`forwarder.rs`); these rules hold per
//! command of a batch. A write that timed out at a leader without quorum,
//! or whose forwarding connection broke mid-call, may still commit: it
//! fails with [`StoreError::Timeout`] and is not repeated.
//!
//! Membership lives in raft itself (openraft's membership log entries, with
//! each node's peer URL as its [`BasicNode`] address), so it is persisted in
//! the log and the state machine like any write; the data directory adds
//! only `cluster.json` (the cluster token, and whether this node still has
//! to be promoted).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::{BasicNode, ChangeMembers};
use serde::{Deserialize, Serialize};

use super::{Inner, Store};
use crate::error::StoreError;
use crate::forwarder::WriteFailure;
use crate::fsutil;
use crate::network::Peers;
use crate::peer::{CallHandler, Member, PeerReply, PeerRequest, WireError};
use crate::proposer::{write_error, Proposer};
use crate::raft_types::{Command, CommandResponse, NodeId};

/// How long a request waits for a leader, a quorum, or the leader's answer
/// before failing with a retryable error (etcd's default request timeout
/// is 5 s plus election time).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);
/// How far behind the leader's log a learner may be when it is promoted
/// (it then catches up as a voter; a small gap keeps the new voter from
/// stalling commits while it replays).
const CATCH_UP_SLACK: u64 = 64;
/// How long the leader waits, per `Promote` call, for a learner to catch up.
const PROMOTE_CATCH_UP_WAIT: Duration = Duration::from_secs(20);
/// How long a joining server keeps trying to join and be promoted.
const JOIN_WAIT: Duration = Duration::from_secs(180);
/// File in the store directory holding the cluster settings.
pub(crate) const CLUSTER_FILE: &str = "cluster.json";

/// How this store takes part in a multi-server cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Where the peer protocol listens.
    pub peer_listen: SocketAddr,
    /// This server's peer URL as the others reach it (`http://host:port`).
    pub advertise: String,
    /// Join an existing cluster through this server (its peer URL), with
    /// this token. Ignored when the data directory already belongs to a
    /// cluster.
    pub join: Option<JoinConfig>,
}

/// Where and how to join.
#[derive(Clone, Debug)]
pub struct JoinConfig {
    /// Peer URL of any server of the cluster.
    pub peer: String,
    /// The cluster's join token (`DATA/join-token` on the first server).
    pub token: String,
}

/// `cluster.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ClusterFile {
    /// The cluster token every peer call carries.
    pub token: String,
    /// A joined node that is not yet a voter: it asks `join_peer` again
    /// after a restart.
    pub promote_via: Option<String>,
}

impl ClusterFile {
    pub(crate) fn load(dir: &Path) -> Result<Option<ClusterFile>, String> {
        match std::fs::read(dir.join(CLUSTER_FILE)) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| format!("{CLUSTER_FILE} is not valid: {e}")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{CLUSTER_FILE}: {e}")),
        }
    }

    pub(crate) fn save(&self, dir: &Path) -> Result<(), StoreError> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| StoreError::Storage(format!("encoding {CLUSTER_FILE}: {e}")))?;
        fsutil::write_atomic(&dir.join(CLUSTER_FILE), &json)
            .map_err(|e| StoreError::Storage(format!("writing {CLUSTER_FILE}: {e}")))
    }
}

/// What `open` needs to know before it creates the marker.
pub(crate) struct Admission {
    pub node_id: NodeId,
    pub cluster_id: Option<String>,
}

/// Ask the cluster at `join.peer` to admit a server at `advertise`;
/// retries while there is no leader.
pub(crate) async fn request_join(
    join: &JoinConfig,
    advertise: &str,
) -> Result<Admission, StoreError> {
    let peers = Peers::new(&join.token);
    let deadline = Instant::now() + JOIN_WAIT;
    let req = PeerRequest::Join {
        addr: advertise.to_string(),
    };
    loop {
        let err = match peers.call(&join.peer, &req, JOIN_CALL_TIMEOUT).await {
            Ok(PeerReply::Joined {
                node_id,
                cluster_id,
            }) => {
                tracing::info!(node_id, peer = %join.peer, "admitted to the cluster as a learner");
                return Ok(Admission {
                    node_id,
                    cluster_id: Some(cluster_id),
                });
            }
            Ok(PeerReply::Failed(WireError::NoLeader(m))) => m,
            Ok(PeerReply::Failed(e)) => return Err(join_refused(&join.peer, e)),
            Ok(other) => return Err(join_refused(&join.peer, unexpected_reply(&other))),
            Err(e) if e.to_string().contains("Unauthenticated") => {
                return Err(StoreError::InvalidRequest(format!(
                    "joining through {}: the join token was refused",
                    join.peer
                )))
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            return Err(StoreError::NoLeader(format!(
                "could not join through {}: {err}",
                join.peer
            )));
        }
        tracing::info!(peer = %join.peer, error = %err, "join: retrying");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A `Join`/`Promote` may wait for the leader's own catch-up check.
const JOIN_CALL_TIMEOUT: Duration = Duration::from_secs(30);

fn join_refused(peer: &str, e: WireError) -> StoreError {
    StoreError::InvalidRequest(format!("joining through {peer}: {}", StoreError::from(e)))
}

fn unexpected_reply(r: &PeerReply) -> WireError {
    WireError::Other(format!("unexpected answer: {r:?}"))
}

fn not_committed_in_time() -> StoreError {
    StoreError::Timeout(
        "not committed by a quorum in time (is a quorum of servers up?); \
         it may still be applied later"
            .into(),
    )
}

/// Pause before trying a write again that was not proposed (a new leader
/// is usually known within a heartbeat).
pub(crate) const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Where a request must be served.
pub(crate) enum Route {
    /// This node leads.
    Local,
    /// Another node leads; its peer URL.
    Leader(String),
}

impl Store {
    /// The leader as this node sees it, waiting up to [`REQUEST_TIMEOUT`]
    /// for one to be elected.
    pub(crate) async fn route(&self) -> Result<Route, StoreError> {
        self.route_until(Instant::now() + REQUEST_TIMEOUT).await
    }

    /// The leader as this node sees it, waiting until `deadline` for one.
    pub(crate) async fn route_until(&self, deadline: Instant) -> Result<Route, StoreError> {
        loop {
            let leader = {
                let m = self.inner.raft.metrics();
                let m = m.borrow();
                m.current_leader.map(|id| {
                    let addr = m
                        .membership_config
                        .membership()
                        .get_node(&id)
                        .map(|n| n.addr.clone())
                        .unwrap_or_default();
                    (id, addr)
                })
            };
            match leader {
                Some((id, _)) if id == self.inner.node_id => return Ok(Route::Local),
                Some((id, addr)) if addr.is_empty() => {
                    return Err(StoreError::NoLeader(format!(
                        "the leader (node {id}) has no peer address"
                    )))
                }
                Some((_, addr)) => return Ok(Route::Leader(addr)),
                None => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(StoreError::NoLeader(
                            "no leader elected in time (is a quorum of servers up?)".into(),
                        ));
                    }
                    let _ = self
                        .inner
                        .raft
                        .wait(Some(left))
                        .metrics(|m| m.current_leader.is_some(), "a leader")
                        .await;
                    self.check_running()?;
                }
            }
        }
    }

    /// Send `req` to the leader at `addr`.
    pub(crate) async fn call_leader(
        &self,
        addr: &str,
        req: &PeerRequest,
    ) -> Result<PeerReply, StoreError> {
        match self
            .inner
            .peers
            .call(addr, req, REQUEST_TIMEOUT + Duration::from_secs(1))
            .await?
        {
            PeerReply::Failed(e) => Err(e.into()),
            other => Ok(other),
        }
    }

    /// Propose on this node (the leader), giving up at `deadline`: a
    /// leader that lost its quorum cannot commit. `NoLeader` means the
    /// entry surely did not commit (openraft answers `ForwardToLeader`
    /// before appending, or when it truncates the uncommitted entry);
    /// `Timeout` that it may still commit.
    pub(crate) async fn propose_local(
        &self,
        cmd: Command,
        deadline: Instant,
    ) -> Result<CommandResponse, StoreError> {
        match tokio::time::timeout_at(deadline.into(), self.inner.proposer.propose(cmd)).await {
            Ok(r) => r,
            Err(_) => Err(not_committed_in_time()),
        }
    }

    /// [`Store::propose_local`] for each of `cmds` (a follower's batch),
    /// queued together so that they share raft entries; one result per
    /// command, in order.
    async fn propose_local_all(
        &self,
        cmds: Vec<Command>,
        deadline: Instant,
    ) -> Vec<Result<CommandResponse, StoreError>> {
        // One timer for the whole batch.
        let expiry = tokio::time::sleep_until(deadline.into());
        tokio::pin!(expiry);
        let mut pending = Vec::with_capacity(cmds.len());
        for cmd in cmds {
            pending.push(tokio::select! {
                biased;
                submitted = self.inner.proposer.submit(cmd) => submitted,
                () = &mut expiry => Err(not_committed_in_time()),
            });
        }
        let mut results = Vec::with_capacity(pending.len());
        for p in pending {
            results.push(match p {
                Ok(p) => tokio::select! {
                    biased;
                    answer = Proposer::answer(p) => answer,
                    () = &mut expiry => Err(not_committed_in_time()),
                },
                Err(e) => Err(e),
            });
        }
        results
    }

    /// Propose `cmd` on the leader, here or forwarded, once.
    async fn write_once(
        &self,
        cmd: Command,
        deadline: Instant,
    ) -> Result<CommandResponse, WriteFailure> {
        let addr = match self.route_until(deadline).await {
            Ok(Route::Local) => {
                return self
                    .propose_local(cmd, deadline)
                    .await
                    .map_err(WriteFailure::classify)
            }
            Ok(Route::Leader(addr)) => addr,
            Err(e) => return Err(WriteFailure::NotProposed(e)),
        };
        // Queued with other writes for the leader: see `forwarder.rs`.
        self.inner
            .forward_writes
            .forward(addr, cmd, deadline)
            .await
            .map_err(WriteFailure::Final)?
    }

    /// Propose `cmd` on the leader and wait for its applied result. A
    /// write that surely did not commit (this node or the one it asked had
    /// just lost the lead, the leader was unreachable, no leader yet) is
    /// tried again until [`REQUEST_TIMEOUT`]; one that may have committed
    /// is never repeated, and fails with [`StoreError::Timeout`].
    pub(crate) async fn propose(&self, cmd: Command) -> Result<CommandResponse, StoreError> {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            match self.write_once(cmd.clone(), deadline).await {
                Ok(r) => return Ok(r),
                Err(WriteFailure::NotProposed(e)) if Instant::now() + RETRY_PAUSE < deadline => {
                    tracing::debug!(error = %e, "write not proposed; trying again");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    self.check_running()?;
                }
                Err(WriteFailure::NotProposed(e) | WriteFailure::Final(e)) => return Err(e),
            }
        }
    }

    /// The read index, as the leader (Raft §6.4): confirm leadership with
    /// a heartbeat round (shared by every request queued for it,
    /// `read_index.rs`), answer the index reads must wait for.
    pub(crate) async fn read_index_local(&self) -> Result<u64, StoreError> {
        self.inner.read_indexes.read_index().await
    }

    /// Wait until this node has applied `index`.
    pub(crate) async fn wait_applied(&self, index: u64) -> Result<(), StoreError> {
        // Usually it has: look before `wait`, which clones the metrics.
        let applied = self.inner.raft.metrics().borrow().last_applied;
        if applied.is_some_and(|l| l.index >= index) {
            return Ok(());
        }
        self.inner
            .raft
            .wait(Some(REQUEST_TIMEOUT))
            .applied_index_at_least(Some(index), "read index")
            .await
            .map(|_| ())
            .map_err(|e| StoreError::NoLeader(format!("waiting to apply index {index}: {e}")))
    }

    fn leads(&self) -> bool {
        self.inner.raft.metrics().borrow().current_leader == Some(self.inner.node_id)
    }

    fn not_leader() -> PeerReply {
        PeerReply::Failed(WireError::NoLeader(
            "not the leader (leadership moved)".into(),
        ))
    }

    /// The cluster's members as this node sees them.
    pub fn members(&self) -> Vec<Member> {
        let m = self.inner.raft.metrics().borrow().membership_config.clone();
        let voters: BTreeSet<NodeId> = m.membership().voter_ids().collect();
        m.membership()
            .nodes()
            .map(|(id, n)| Member {
                id: *id,
                addr: n.addr.clone(),
                voter: voters.contains(id),
            })
            .collect()
    }

    /// Remove server `node_id` from the cluster (through the leader).
    pub async fn remove_member(&self, node_id: NodeId) -> Result<(), StoreError> {
        self.check_running()?;
        let req = PeerRequest::Remove { node_id };
        match self.clone().membership_call(req).await {
            PeerReply::Done => Ok(()),
            PeerReply::Failed(e) => Err(e.into()),
            other => Err(unexpected_reply(&other).into()),
        }
    }

    /// Join/Promote/Remove: done by the leader, passed on by others.
    async fn membership_call(self, req: PeerRequest) -> PeerReply {
        let addr = match self.route().await {
            Ok(Route::Local) => return self.membership_local(req).await,
            Ok(Route::Leader(addr)) => addr,
            Err(e) => return PeerReply::Failed(e.into()),
        };
        match self.inner.peers.call(&addr, &req, JOIN_CALL_TIMEOUT).await {
            Ok(r) => r,
            Err(e) => PeerReply::Failed(StoreError::from(e).into()),
        }
    }

    async fn membership_local(&self, req: PeerRequest) -> PeerReply {
        let r = match req {
            PeerRequest::Join { addr } => self.admit(addr).await,
            PeerRequest::Promote { node_id } => self.promote(node_id).await,
            PeerRequest::Remove { node_id } => self.remove(node_id).await,
            other => Err(StoreError::InvalidRequest(format!(
                "not a membership request: {other:?}"
            ))),
        };
        r.unwrap_or_else(|e| PeerReply::Failed(e.into()))
    }

    async fn change(&self, changes: ChangeMembers<NodeId, BasicNode>) -> Result<(), StoreError> {
        self.inner
            .raft
            .change_membership(changes, false)
            .await
            .map(|_| ())
            .map_err(|e| write_error(&e))
    }

    /// Leader: admit a new server as a learner with the next free id.
    async fn admit(&self, addr: String) -> Result<PeerReply, StoreError> {
        let _one_at_a_time = self.inner.membership_lock.lock().await;
        let m = self.inner.raft.metrics().borrow().membership_config.clone();
        let membership = m.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let mut next_id = self.inner.node_id;
        let mut same_addr = None;
        for (id, node) in membership.nodes() {
            next_id = next_id.max(*id);
            if node.addr == addr {
                same_addr = Some(*id);
            }
        }
        next_id += 1;
        if let Some(old) = same_addr {
            // The server at this address lost its data directory and joins
            // anew: its old identity (and its vote) goes first.
            if old == self.inner.node_id {
                return Err(StoreError::InvalidRequest(format!(
                    "{addr} is the leader's own address"
                )));
            }
            tracing::warn!(old, %addr, "a server joins again from a known address; replacing its old member");
            let ids = BTreeSet::from([old]);
            let change = if voters.contains(&old) {
                ChangeMembers::RemoveVoters(ids)
            } else {
                ChangeMembers::RemoveNodes(ids)
            };
            self.change(change).await?;
        }
        self.inner
            .raft
            .add_learner(next_id, BasicNode::new(&addr), false)
            .await
            .map_err(|e| write_error(&e))?;
        tracing::info!(node_id = next_id, %addr, "added a learner");
        Ok(PeerReply::Joined {
            node_id: next_id,
            cluster_id: self.inner.cluster_name.clone(),
        })
    }

    /// Leader: make a caught-up learner a voter.
    async fn promote(&self, node_id: NodeId) -> Result<PeerReply, StoreError> {
        let _one_at_a_time = self.inner.membership_lock.lock().await;
        let deadline = Instant::now() + PROMOTE_CATCH_UP_WAIT;
        loop {
            let m = self.inner.raft.metrics().borrow().clone();
            let membership = m.membership_config.membership();
            if membership.voter_ids().any(|v| v == node_id) {
                return Ok(PeerReply::Done);
            }
            if membership.get_node(&node_id).is_none() {
                return Err(StoreError::InvalidRequest(format!(
                    "node {node_id} is not a member of the cluster (was it removed?)"
                )));
            }
            let last = m.last_log_index.unwrap_or(0);
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&node_id).cloned().flatten())
                .map_or(0, |l| l.index);
            if matched + CATCH_UP_SLACK >= last {
                break;
            }
            if Instant::now() > deadline {
                return Err(StoreError::NoLeader(format!(
                    "node {node_id} is still catching up (at {matched} of {last})"
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.change(ChangeMembers::AddVoterIds(BTreeSet::from([node_id])))
            .await?;
        tracing::info!(node_id, "promoted a learner to voter");
        Ok(PeerReply::Done)
    }

    /// Leader: remove a server.
    async fn remove(&self, node_id: NodeId) -> Result<PeerReply, StoreError> {
        let _one_at_a_time = self.inner.membership_lock.lock().await;
        let m = self.inner.raft.metrics().borrow().membership_config.clone();
        let membership = m.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let ids = BTreeSet::from([node_id]);
        let change = if voters.contains(&node_id) {
            if voters.len() == 1 {
                return Err(StoreError::InvalidRequest(format!(
                    "node {node_id} is the last voter"
                )));
            }
            ChangeMembers::RemoveVoters(ids)
        } else if membership.get_node(&node_id).is_some() {
            ChangeMembers::RemoveNodes(ids)
        } else {
            return Err(StoreError::InvalidRequest(format!(
                "node {node_id} is not a member of the cluster"
            )));
        };
        self.change(change).await?;
        tracing::info!(node_id, "removed a member");
        Ok(PeerReply::Done)
    }

    /// Leader: make sure the membership has this node's current peer URL
    /// (a store that ran single-node has none; a server may move).
    pub(crate) async fn publish_own_address(&self) {
        let Some(advertise) = self.inner.advertise.clone() else {
            return;
        };
        let m = self.inner.raft.metrics().borrow().membership_config.clone();
        let current = m
            .membership()
            .get_node(&self.inner.node_id)
            .map(|n| n.addr.clone());
        if current.as_deref() == Some(advertise.as_str()) {
            return;
        }
        let nodes = BTreeMap::from([(self.inner.node_id, BasicNode::new(&advertise))]);
        match self.change(ChangeMembers::SetNodes(nodes)).await {
            Ok(()) => tracing::info!(%advertise, "published this server's peer address"),
            Err(e) => tracing::warn!(error = %e, "publishing this server's peer address"),
        }
    }

    /// A joined learner: ask (through `via`, then whoever leads) to be
    /// made a voter, until it is done or refused.
    pub(crate) async fn request_promotion(&self, via: &str) -> Result<(), StoreError> {
        let deadline = Instant::now() + JOIN_WAIT;
        let req = PeerRequest::Promote {
            node_id: self.inner.node_id,
        };
        loop {
            let reply = self.inner.peers.call(via, &req, JOIN_CALL_TIMEOUT).await;
            let err = match reply {
                Ok(PeerReply::Done) => return Ok(()),
                Ok(PeerReply::Failed(WireError::NoLeader(m))) => m,
                Ok(PeerReply::Failed(e)) => return Err(e.into()),
                Ok(other) => return Err(unexpected_reply(&other).into()),
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                return Err(StoreError::NoLeader(format!(
                    "not promoted to voter within {} s: {err}",
                    JOIN_WAIT.as_secs()
                )));
            }
            tracing::info!(error = %err, "promotion: retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

impl CallHandler for Inner {
    async fn serve_call(self: Arc<Self>, req: PeerRequest) -> PeerReply {
        let store = Store { inner: self };
        if store.check_running().is_err() {
            return PeerReply::Failed(WireError::NoLeader("the server is stopping".into()));
        }
        match req {
            PeerRequest::Write(cmds) => {
                if !store.leads() {
                    return Store::not_leader();
                }
                let results = store
                    .propose_local_all(cmds, Instant::now() + REQUEST_TIMEOUT)
                    .await;
                PeerReply::Write(
                    results
                        .into_iter()
                        .map(|r| r.map_err(WireError::from))
                        .collect(),
                )
            }
            PeerRequest::ReadIndex => match store.read_index_local().await {
                Ok(i) => PeerReply::ReadIndex(i),
                Err(e) => PeerReply::Failed(e.into()),
            },
            PeerRequest::KeepAlive(id) => {
                // Only a leader that still has its quorum extends a lease.
                if let Err(e) = store.read_index_local().await {
                    return PeerReply::Failed(e.into());
                }
                PeerReply::Ttl(store.inner.lessor.keep_alive(id))
            }
            PeerRequest::LeaseRemaining(id) => {
                if !store.leads() {
                    return Store::not_leader();
                }
                PeerReply::Ttl(store.inner.lessor.remaining(id))
            }
            PeerRequest::Members => PeerReply::Members(store.members()),
            membership => store.membership_call(membership).await,
        }
    }
}

/// Ask the cluster, through the server whose peer URL is `peer`, to remove
/// server `node_id` (`skiff server remove-member`).
pub async fn remove_member_via(peer: &str, token: &str, node_id: NodeId) -> Result<(), StoreError> {
    let reply = Peers::new(token)
        .call(peer, &PeerRequest::Remove { node_id }, JOIN_CALL_TIMEOUT)
        .await?;
    match reply {
        PeerReply::Done => Ok(()),
        PeerReply::Failed(e) => Err(e.into()),
        other => Err(unexpected_reply(&other).into()),
    }
}

/// The cluster's members as the server at `peer` sees them.
pub async fn members_via(peer: &str, token: &str) -> Result<Vec<Member>, StoreError> {
    let reply = Peers::new(token)
        .call(peer, &PeerRequest::Members, REQUEST_TIMEOUT)
        .await?;
    match reply {
        PeerReply::Members(m) => Ok(m),
        PeerReply::Failed(e) => Err(e.into()),
        other => Err(unexpected_reply(&other).into()),
    }
}
