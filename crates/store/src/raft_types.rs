//! What the store replicates: the raft type configuration, the commands in
//! the log, and the deterministic results of applying them.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::kv::{
    DeleteRangeRequest, DeleteRangeResponse, LeaseGrantResponse, LeaseId, LeaseRevokeResponse,
    PutRequest, PutResponse, Revision, TxnRequest, TxnResponse,
};

openraft::declare_raft_types!(
    /// openraft's type configuration for the store: node ids are `u64`, node
    /// addresses are [`openraft::BasicNode`], entries carry a [`Command`].
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A raft log entry of this store.
pub type Entry = openraft::Entry<TypeConfig>;
/// The raft node id (the `node_id` of [`crate::StoreConfig`]).
pub type NodeId = u64;

/// One write, as proposed through raft and applied by every replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// etcd's Put.
    Put(PutRequest),
    /// etcd's DeleteRange.
    DeleteRange(DeleteRangeRequest),
    /// etcd's Txn.
    Txn(TxnRequest),
    /// etcd's Compact: forget history older than the revision.
    Compact(Revision),
    /// Several commands proposed together (group commit), applied in order
    /// as if they were separate entries; never nested.
    Batch(Vec<Command>),
    /// etcd's LeaseGrant. `id` 0: apply picks the next free id from a
    /// replicated counter (deterministic, unlike etcd's random ids).
    LeaseGrant {
        /// The id, or 0.
        id: LeaseId,
        /// Requested TTL in seconds (raised to the minimum by apply).
        ttl: i64,
    },
    /// etcd's LeaseRevoke, also proposed by the leader when a lease expires:
    /// delete the lease and its keys, in one revision.
    LeaseRevoke(LeaseId),
}

/// The outcome of applying one log entry. Only deterministic failures appear
/// here (they are answers to the client, identical on every replica); an I/O
/// error while applying stops the node instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// Answer to [`Command::Put`].
    Put(PutResponse),
    /// Answer to [`Command::DeleteRange`].
    DeleteRange(DeleteRangeResponse),
    /// Answer to [`Command::Txn`].
    Txn(TxnResponse),
    /// Answer to [`Command::Compact`]: the store's revision.
    Compacted(Revision),
    /// The command was refused, deterministically, on every replica.
    Failed(ApplyError),
    /// Entries without a command (blank leader entries, membership changes).
    None,
    /// Answer to [`Command::Batch`]: one answer per command, in order.
    Batch(Vec<CommandResponse>),
    /// Answer to [`Command::LeaseGrant`].
    LeaseGrant(LeaseGrantResponse),
    /// Answer to [`Command::LeaseRevoke`].
    LeaseRevoke(LeaseRevokeResponse),
}

/// A deterministic refusal found while applying a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApplyError {
    /// A read or compaction below the compaction point.
    #[error("revision {requested} is compacted (compacted at {compact_revision})")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The current compaction point.
        compact_revision: Revision,
    },
    /// A read or compaction beyond the current revision.
    #[error("revision {requested} is in the future (current {current})")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The current revision.
        current: Revision,
    },
    /// A malformed request.
    #[error("{0}")]
    InvalidRequest(String),
    /// A put or revoke names a lease that does not exist.
    #[error("requested lease not found: {0:x}")]
    LeaseNotFound(LeaseId),
    /// A grant names a lease id that is taken.
    #[error("lease already exists: {0:x}")]
    LeaseExists(LeaseId),
}

impl From<ApplyError> for StoreError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Compacted {
                requested,
                compact_revision,
            } => StoreError::Compacted {
                requested,
                compact_revision,
            },
            ApplyError::FutureRevision { requested, current } => {
                StoreError::FutureRevision { requested, current }
            }
            ApplyError::InvalidRequest(m) => StoreError::InvalidRequest(m),
            ApplyError::LeaseNotFound(id) => StoreError::LeaseNotFound(id),
            ApplyError::LeaseExists(id) => StoreError::LeaseExists(id),
        }
    }
}
