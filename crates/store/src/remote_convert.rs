//! The client side of the etcd wire format: the store's [`crate::kv`]
//! requests as etcd's protobuf messages, etcd's answers back as the store's
//! types, and etcd's gRPC errors as [`StoreError`]s. The mirror image of
//! `etcd/convert.rs` and `etcd/status.rs`, which do the same on the server
//! side.

use tonic::{Code, Status};

use crate::error::StoreError;
use crate::etcd::pb::etcdserverpb as pb;
use crate::etcd::pb::mvccpb;
use crate::etcd::status as msg;
use crate::kv::{self, Revision};

/// A request as etcd's `RangeRequest` (linearizable, like every read of the
/// embedded store).
pub(crate) fn range_to_pb(r: kv::RangeRequest) -> pb::RangeRequest {
    pb::RangeRequest {
        key: r.key,
        range_end: r.range_end,
        limit: r.limit,
        revision: r.revision,
        count_only: r.count_only,
        keys_only: r.keys_only,
        ..Default::default()
    }
}

pub(crate) fn put_to_pb(p: kv::PutRequest) -> pb::PutRequest {
    pb::PutRequest {
        key: p.key,
        value: p.value,
        lease: p.lease,
        prev_kv: p.prev_kv,
        ..Default::default()
    }
}

pub(crate) fn delete_to_pb(d: kv::DeleteRangeRequest) -> pb::DeleteRangeRequest {
    pb::DeleteRangeRequest {
        key: d.key,
        range_end: d.range_end,
        prev_kv: d.prev_kv,
    }
}

fn compare_to_pb(c: kv::Compare) -> pb::Compare {
    use pb::compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let result = match c.result {
        kv::CompareResult::Equal => R::Equal,
        kv::CompareResult::Greater => R::Greater,
        kv::CompareResult::Less => R::Less,
        kv::CompareResult::NotEqual => R::NotEqual,
    };
    let (target, union) = match c.target {
        kv::CompareTarget::Version(n) => (T::Version, U::Version(n)),
        kv::CompareTarget::CreateRevision(n) => (T::Create, U::CreateRevision(n)),
        kv::CompareTarget::ModRevision(n) => (T::Mod, U::ModRevision(n)),
        kv::CompareTarget::Lease(n) => (T::Lease, U::Lease(n)),
        kv::CompareTarget::Value(v) => (T::Value, U::Value(v)),
    };
    pb::Compare {
        result: result as i32,
        target: target as i32,
        key: c.key,
        target_union: Some(union),
        range_end: Vec::new(),
    }
}

fn op_to_pb(op: kv::RequestOp) -> pb::RequestOp {
    use pb::request_op::Request;
    let request = match op {
        kv::RequestOp::Range(r) => Request::RequestRange(range_to_pb(r)),
        kv::RequestOp::Put(p) => Request::RequestPut(put_to_pb(p)),
        kv::RequestOp::DeleteRange(d) => Request::RequestDeleteRange(delete_to_pb(d)),
    };
    pb::RequestOp {
        request: Some(request),
    }
}

pub(crate) fn txn_to_pb(t: kv::TxnRequest) -> pb::TxnRequest {
    pb::TxnRequest {
        compare: t.compare.into_iter().map(compare_to_pb).collect(),
        success: t.success.into_iter().map(op_to_pb).collect(),
        failure: t.failure.into_iter().map(op_to_pb).collect(),
    }
}

/// The revision an answer was served at (etcd puts it in the header).
pub(crate) fn revision(header: &Option<pb::ResponseHeader>) -> Revision {
    header.as_ref().map_or(0, |h| h.revision)
}

pub(crate) fn kv_from_pb(kv: mvccpb::KeyValue) -> kv::KeyValue {
    kv::KeyValue {
        key: kv.key,
        value: kv.value,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        lease: kv.lease,
    }
}

pub(crate) fn event_from_pb(ev: mvccpb::Event) -> kv::Event {
    let kind = match mvccpb::event::EventType::try_from(ev.r#type) {
        Ok(mvccpb::event::EventType::Delete) => kv::EventType::Delete,
        _ => kv::EventType::Put,
    };
    kv::Event {
        kind,
        kv: kv_from_pb(ev.kv.unwrap_or_default()),
        prev_kv: ev.prev_kv.map(kv_from_pb),
    }
}

pub(crate) fn range_from_pb(r: pb::RangeResponse) -> kv::RangeResponse {
    kv::RangeResponse {
        revision: revision(&r.header),
        kvs: r.kvs.into_iter().map(kv_from_pb).collect(),
        more: r.more,
        count: r.count,
    }
}

pub(crate) fn put_from_pb(r: pb::PutResponse) -> kv::PutResponse {
    kv::PutResponse {
        revision: revision(&r.header),
        prev_kv: r.prev_kv.map(kv_from_pb),
    }
}

pub(crate) fn delete_from_pb(r: pb::DeleteRangeResponse) -> kv::DeleteRangeResponse {
    kv::DeleteRangeResponse {
        revision: revision(&r.header),
        deleted: r.deleted,
        prev_kvs: r.prev_kvs.into_iter().map(kv_from_pb).collect(),
    }
}

pub(crate) fn txn_from_pb(t: pb::TxnResponse) -> kv::TxnResponse {
    use pb::response_op::Response;
    let responses = t
        .responses
        .into_iter()
        .filter_map(|r| {
            Some(match r.response? {
                Response::ResponseRange(r) => kv::ResponseOp::Range(range_from_pb(r)),
                Response::ResponsePut(r) => kv::ResponseOp::Put(put_from_pb(r)),
                Response::ResponseDeleteRange(r) => kv::ResponseOp::DeleteRange(delete_from_pb(r)),
                // Never asked for: the store's txns do not nest.
                Response::ResponseTxn(_) => return None,
            })
        })
        .collect();
    kv::TxnResponse {
        revision: revision(&t.header),
        succeeded: t.succeeded,
        responses,
    }
}

/// What etcd's error means, as the store's error. etcd clients recognise
/// errors by their message (clientv3's `rpctypes`), and so does this.
///
/// `Compacted` and `FutureRevision` come back with their revisions unknown
/// (0): etcd's status does not carry them; the caller fills them in.
pub(crate) fn error_from_status(s: Status) -> StoreError {
    let m = s.message();
    match s.code() {
        _ if m == msg::MSG_COMPACTED => StoreError::Compacted {
            requested: 0,
            compact_revision: 0,
        },
        _ if m == msg::MSG_FUTURE_REV => StoreError::FutureRevision {
            requested: 0,
            current: 0,
        },
        _ if m == msg::MSG_LEASE_NOT_FOUND => StoreError::LeaseNotFound(0),
        _ if m == msg::MSG_LEASE_EXIST => StoreError::LeaseExists(0),
        _ if m == msg::MSG_LEASE_TTL_TOO_LARGE => StoreError::LeaseTtlTooLarge(0),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StoreError::InvalidRequest(format!("etcd: {m}"))
        }
        // No leader, a member stopping, a connection refused or reset: all
        // worth retrying, possibly on another member.
        Code::Unavailable | Code::DeadlineExceeded => {
            StoreError::NoLeader(format!("etcd unavailable: {m}"))
        }
        _ => StoreError::Transport(format!("etcd: {s}")),
    }
}

/// [`error_from_status`] with a lease id put back into lease errors.
pub(crate) fn lease_error(s: Status, id: kv::LeaseId) -> StoreError {
    match error_from_status(s) {
        StoreError::LeaseNotFound(_) => StoreError::LeaseNotFound(id),
        StoreError::LeaseExists(_) => StoreError::LeaseExists(id),
        other => other,
    }
}
