//! The key-value contract every backend implements: etcd v3's data model.
//!
//! Names follow etcd's `rpc.proto` (`RangeRequest`, `Compare`, `TxnRequest`,
//! `mod_revision`, …) so that readers can move between Skiff and etcd. The API
//! server talks only to [`Kv`]; the embedded raft store (`Store`) and an
//! external etcd cluster (`RemoteStore`) implement it.

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// A cluster-wide, strictly increasing write counter. Every committed write
/// (Put, DeleteRange that deleted something, or Txn with writes) bumps it by
/// one; the API server's `resourceVersion` is this number.
pub type Revision = i64;

/// A key with its value and MVCC metadata, as etcd's `mvccpb.KeyValue`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// The value (empty for keys-only ranges).
    #[serde(with = "crate::byte_string")]
    pub value: Vec<u8>,
    /// Revision of the write that created this key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the last write to this key.
    pub mod_revision: Revision,
    /// Number of writes since the key was created; 1 after the create.
    pub version: i64,
    /// Lease attached to the key, 0 for none.
    pub lease: i64,
}

/// Range over `key` (alone) or `[key, range_end)`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeRequest {
    /// First key.
    pub key: Vec<u8>,
    /// End of the range, exclusive; empty means the single key `key`.
    /// Use [`prefix_end`] to range over a prefix.
    pub range_end: Vec<u8>,
    /// Most keys to return; 0 means no limit.
    pub limit: i64,
    /// Read at this past revision; 0 means the latest.
    pub revision: Revision,
    /// Return only the count, no keys.
    pub count_only: bool,
    /// Return keys without values.
    pub keys_only: bool,
}

/// Answer to a [`RangeRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeResponse {
    /// The store's revision when the range was served (the read's snapshot).
    pub revision: Revision,
    /// The keys, in key order.
    pub kvs: Vec<KeyValue>,
    /// True if `limit` cut the answer short.
    pub more: bool,
    /// Number of keys in the range (ignoring `limit`).
    pub count: i64,
}

/// Write `value` at `key`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutRequest {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    #[serde(with = "crate::byte_string")]
    pub value: Vec<u8>,
    /// Lease to attach, 0 for none.
    pub lease: i64,
    /// Return the previous key-value, if any.
    pub prev_kv: bool,
}

/// Answer to a [`PutRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutResponse {
    /// Revision of this write.
    pub revision: Revision,
    /// Previous key-value if asked for and present.
    pub prev_kv: Option<KeyValue>,
}

/// Delete `key` or `[key, range_end)`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRangeRequest {
    /// First key.
    pub key: Vec<u8>,
    /// End of the range, exclusive; empty means the single key.
    pub range_end: Vec<u8>,
    /// Return the deleted key-values.
    pub prev_kv: bool,
}

/// Answer to a [`DeleteRangeRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRangeResponse {
    /// The store's revision after the delete.
    pub revision: Revision,
    /// Number of keys deleted.
    pub deleted: i64,
    /// Deleted key-values if asked for.
    pub prev_kvs: Vec<KeyValue>,
}

/// What a [`Compare`] looks at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    /// The key's `version` (0 if absent).
    Version(i64),
    /// The key's `create_revision` (0 if absent).
    CreateRevision(Revision),
    /// The key's `mod_revision` (0 if absent).
    ModRevision(Revision),
    /// The key's value (an absent key never matches).
    Value(#[serde(with = "crate::byte_string")] Vec<u8>),
    /// The key's lease (0 if absent or none).
    Lease(i64),
}

/// How a [`Compare`] compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareResult {
    /// Equal.
    Equal,
    /// The key's field is greater than the target.
    Greater,
    /// The key's field is less than the target.
    Less,
    /// Not equal.
    NotEqual,
}

/// One condition of a [`TxnRequest`], on a single key (etcd's `Compare`,
/// without range compares).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    /// The key compared.
    pub key: Vec<u8>,
    /// The comparison.
    pub result: CompareResult,
    /// The field and the value it is compared with.
    pub target: CompareTarget,
}

/// One operation inside a transaction branch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestOp {
    /// A read.
    Range(RangeRequest),
    /// A write.
    Put(PutRequest),
    /// A delete.
    DeleteRange(DeleteRangeRequest),
}

/// The answer to one [`RequestOp`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseOp {
    /// Answer to a range.
    Range(RangeResponse),
    /// Answer to a put.
    Put(PutResponse),
    /// Answer to a delete.
    DeleteRange(DeleteRangeResponse),
}

/// If every compare holds, run `success`, else `failure`; atomically, as one
/// revision (etcd's `TxnRequest`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRequest {
    /// Conditions, all of which must hold.
    pub compare: Vec<Compare>,
    /// Operations run when every compare holds.
    pub success: Vec<RequestOp>,
    /// Operations run otherwise.
    pub failure: Vec<RequestOp>,
}

/// Answer to a [`TxnRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    /// The store's revision after the transaction.
    pub revision: Revision,
    /// Whether the compares held (and `success` ran).
    pub succeeded: bool,
    /// One answer per operation of the branch that ran.
    pub responses: Vec<ResponseOp>,
}

/// Watch `key` or `[key, range_end)` from `start_revision`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRequest {
    /// First key.
    pub key: Vec<u8>,
    /// End of the range, exclusive; empty means the single key.
    pub range_end: Vec<u8>,
    /// First revision to deliver; 0 means "changes after now".
    pub start_revision: Revision,
    /// Include the previous key-value in each event.
    pub prev_kv: bool,
}

/// Kind of a [`Event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    /// The key was created or changed.
    Put,
    /// The key was deleted (its `kv` carries the key and the delete's
    /// `mod_revision`, no value).
    Delete,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Put or delete.
    pub kind: EventType,
    /// The key-value after the change.
    pub kv: KeyValue,
    /// The key-value before the change, if asked for and present.
    pub prev_kv: Option<KeyValue>,
}

/// A batch of events delivered by a watch, all from one or more revisions in
/// increasing order. An empty batch is a progress notification: everything up
/// to `revision` has been delivered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchResponse {
    /// The store's revision when this batch was sent.
    pub revision: Revision,
    /// The events.
    pub events: Vec<Event>,
}

/// A stream of watch batches. It ends with `Err(StoreError::Compacted{..})` if
/// the watch asked for history that was compacted away, and may end with
/// another error if the store shuts down.
pub type WatchStream = BoxStream<'static, Result<WatchResponse, StoreError>>;

/// etcd's key-value service, as every Skiff backend offers it.
#[async_trait]
pub trait Kv: Send + Sync + 'static {
    /// Read a key or a range.
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError>;
    /// Write one key.
    async fn put(&self, req: PutRequest) -> Result<PutResponse, StoreError>;
    /// Delete a key or a range.
    async fn delete_range(
        &self,
        req: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, StoreError>;
    /// Compare, then run one branch, atomically.
    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, StoreError>;
    /// Watch for changes from a revision.
    async fn watch(&self, req: WatchRequest) -> Result<WatchStream, StoreError>;
    /// Forget history older than `revision` (reads and watches before it fail
    /// with [`StoreError::Compacted`]).
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;
    /// The latest committed revision.
    async fn current_revision(&self) -> Result<Revision, StoreError>;
}

/// The smallest key greater than every key starting with `prefix`, for use as
/// `range_end` (etcd's `clientv3.GetPrefixRangeEnd`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): etcd uses "\0", meaning "to the end of the keyspace".
    vec![0]
}

/// A lease's id (etcd's `LeaseID`); 0 means "no lease".
pub type LeaseId = i64;

/// Grant a lease (etcd's `LeaseGrantRequest`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGrantRequest {
    /// The id to give it; 0 lets the store choose.
    pub id: LeaseId,
    /// Time to live, in seconds. Raised to the store's minimum (etcd's
    /// `minLeaseTTL`) if shorter.
    pub ttl: i64,
}

/// Answer to a [`LeaseGrantRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGrantResponse {
    /// The store's revision (a grant does not change it).
    pub revision: Revision,
    /// The lease's id.
    pub id: LeaseId,
    /// The granted time to live, in seconds.
    pub ttl: i64,
}

/// Answer to a lease revoke.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRevokeResponse {
    /// The store's revision after the revoke (new if it deleted keys).
    pub revision: Revision,
}

/// Answer to a lease keep-alive.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseKeepAliveResponse {
    /// The lease's id.
    pub id: LeaseId,
    /// Seconds left after the refresh (the granted TTL).
    pub ttl: i64,
}

/// Answer to a lease time-to-live query.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseTimeToLiveResponse {
    /// The store's revision.
    pub revision: Revision,
    /// The lease's id.
    pub id: LeaseId,
    /// Seconds left before the lease expires.
    pub ttl: i64,
    /// The TTL the lease was granted with.
    pub granted_ttl: i64,
    /// The keys attached to the lease, if asked for.
    pub keys: Vec<Vec<u8>>,
}

/// etcd's lease service: keys attached to a lease are deleted when it is
/// revoked or expires.
#[async_trait]
pub trait Lease: Send + Sync + 'static {
    /// Grant a lease. Fails with [`StoreError::LeaseExists`] if the id is
    /// taken.
    async fn lease_grant(&self, req: LeaseGrantRequest) -> Result<LeaseGrantResponse, StoreError>;
    /// Revoke a lease, deleting its keys in one revision. Fails with
    /// [`StoreError::LeaseNotFound`] if there is no such lease.
    async fn lease_revoke(&self, id: LeaseId) -> Result<LeaseRevokeResponse, StoreError>;
    /// Restart the lease's TTL. Fails with [`StoreError::LeaseNotFound`] if
    /// there is no such lease.
    async fn lease_keep_alive(&self, id: LeaseId) -> Result<LeaseKeepAliveResponse, StoreError>;
    /// The lease's remaining and granted TTL, and its keys if `keys`. Fails
    /// with [`StoreError::LeaseNotFound`] if there is no such lease.
    async fn lease_time_to_live(
        &self,
        id: LeaseId,
        keys: bool,
    ) -> Result<LeaseTimeToLiveResponse, StoreError>;
    /// Every live lease's id.
    async fn lease_leases(&self) -> Result<Vec<LeaseId>, StoreError>;
}

/// A whole store: keys and leases. Implemented by every type that is both
/// (the embedded [`crate::Store`] and [`crate::RemoteStore`]), so an
/// `Arc<dyn Storage>` can be handed to a user of both services and upcast
/// to `Arc<dyn Kv>` or `Arc<dyn Lease>` where only one is needed.
pub trait Storage: Kv + Lease {}

impl<T: Kv + Lease> Storage for T {}
