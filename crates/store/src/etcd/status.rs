//! Store errors as etcd's gRPC statuses, and etcd's response header.
//!
//! etcd clients recognise errors by code *and* exact message (clientv3's
//! `rpctypes` maps the message text back to typed errors, and etcdctl prints
//! it), so the messages below are etcd's own strings.

use tonic::{Code, Status};

use super::pb::etcdserverpb::ResponseHeader;
use crate::error::StoreError;
use crate::kv::Revision;
use crate::Store;

/// etcd's `ErrGRPCCompacted`.
pub(crate) const MSG_COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
/// etcd's `ErrGRPCFutureRev`.
pub(crate) const MSG_FUTURE_REV: &str = "etcdserver: mvcc: required revision is a future revision";
/// etcd's `ErrGRPCLeaseNotFound`.
pub(crate) const MSG_LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";
/// etcd's `ErrGRPCLeaseExist`.
pub(crate) const MSG_LEASE_EXIST: &str = "etcdserver: lease already exists";
/// etcd's `ErrGRPCLeaseTTLTooLarge`.
pub(crate) const MSG_LEASE_TTL_TOO_LARGE: &str = "etcdserver: too large lease TTL";
/// etcd's `ErrGRPCNoLeader`.
pub(crate) const MSG_NO_LEADER: &str = "etcdserver: no leader";
/// etcd's `ErrGRPCTimeout`.
pub(crate) const MSG_TIMEOUT: &str = "etcdserver: request timed out";
/// etcd's `ErrGRPCStopped`.
pub(crate) const MSG_STOPPED: &str = "etcdserver: server stopped";
/// etcd's `ErrGRPCEmptyKey`.
pub(crate) const MSG_EMPTY_KEY: &str = "etcdserver: key is not provided";
/// etcd's `ErrGRPCRequestTooLarge`.
pub(crate) const MSG_TOO_LARGE: &str = "etcdserver: request is too large";

/// The gRPC status etcd would answer for `e`.
pub fn to_status(e: StoreError) -> Status {
    match e {
        StoreError::Compacted { .. } => Status::new(Code::OutOfRange, MSG_COMPACTED),
        StoreError::FutureRevision { .. } => Status::new(Code::OutOfRange, MSG_FUTURE_REV),
        StoreError::LeaseNotFound(_) => Status::new(Code::NotFound, MSG_LEASE_NOT_FOUND),
        StoreError::LeaseExists(_) => Status::new(Code::FailedPrecondition, MSG_LEASE_EXIST),
        StoreError::LeaseTtlTooLarge(_) => Status::new(Code::OutOfRange, MSG_LEASE_TTL_TOO_LARGE),
        StoreError::NoLeader(_) => Status::new(Code::Unavailable, MSG_NO_LEADER),
        StoreError::Timeout(_) => Status::new(Code::Unavailable, MSG_TIMEOUT),
        StoreError::Stopped(_) => Status::new(Code::Unavailable, MSG_STOPPED),
        StoreError::InvalidRequest(m) => {
            Status::new(Code::InvalidArgument, format!("etcdserver: {m}"))
        }
        other @ (StoreError::Storage(_)
        | StoreError::BadDataDir { .. }
        | StoreError::Transport(_)) => Status::new(Code::Internal, other.to_string()),
    }
}

/// etcd's response header for an answer at `revision`.
pub(crate) fn header(store: &Store, revision: Revision) -> Option<ResponseHeader> {
    let (cluster_id, member_id, raft_term) = store.header_ids();
    Some(ResponseHeader {
        cluster_id,
        member_id,
        revision,
        raft_term,
    })
}

/// The `Unimplemented` answer for a request field Skiff does not serve.
pub(crate) fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!("skiff: {what} is not supported"))
}
