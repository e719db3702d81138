//! The store's error type.

use crate::kv::{LeaseId, Revision};

/// Everything the store can fail with.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The requested revision was compacted away. Not retryable at that
    /// revision; the API server turns it into 410 Gone.
    #[error("mvcc: required revision has been compacted (requested {requested}, compacted at {compact_revision})")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The oldest revision still readable is `compact_revision`.
        compact_revision: Revision,
    },
    /// The requested revision is newer than the store's (etcd's ErrFutureRev).
    #[error(
        "mvcc: required revision is a future revision (requested {requested}, current {current})"
    )]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },
    /// The request is malformed or too large (for example a value over the
    /// size limit). Not retryable.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// No leader is known right now (election in progress, or no quorum).
    /// Retryable: a write that fails with it was not committed (compare
    /// [`StoreError::Timeout`]).
    #[error("no leader: {0}")]
    NoLeader(String),
    /// A write was not answered in time and may still take effect: it
    /// reached the leader, but no quorum committed it within the request
    /// timeout (servers are down), or the connection to the leader broke
    /// while it was in flight. Retry only what is safe to repeat, or read
    /// first (etcd's `ErrTimeout`, "request timed out").
    #[error("request timed out: {0}")]
    Timeout(String),
    /// The store is shutting down or has stopped. Not retryable on this node.
    #[error("store stopped: {0}")]
    Stopped(String),
    /// A disk or database error. The node stops rather than diverge.
    #[error("storage error: {0}")]
    Storage(String),
    /// The data directory is not a Skiff store, or is damaged.
    #[error("data directory {path}: {reason}")]
    BadDataDir {
        /// The directory.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No lease has this id (never granted, revoked or expired; etcd's
    /// `ErrLeaseNotFound`). Not retryable.
    #[error("requested lease not found: {0:x}")]
    LeaseNotFound(LeaseId),
    /// A lease with this id already exists (etcd's `ErrLeaseExist`).
    #[error("lease already exists: {0:x}")]
    LeaseExists(LeaseId),
    /// The requested TTL is over etcd's `MaxLeaseTTL`.
    #[error("too large lease TTL: {0} s")]
    LeaseTtlTooLarge(i64),
    /// A network server or client failed (the etcd gRPC API).
    #[error("transport: {0}")]
    Transport(String),
}
