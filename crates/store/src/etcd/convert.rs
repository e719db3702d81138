//! Conversions between etcd's protobuf messages and the store's [`crate::kv`]
//! types, with the request checks etcd makes before proposing.

use tonic::Status;

use super::pb::etcdserverpb as pb;
use super::pb::mvccpb;
use super::status::{header, unimplemented, MSG_EMPTY_KEY, MSG_TOO_LARGE};
use crate::kv;
use crate::mvcc::MAX_VALUE_BYTES;
use crate::Store;

/// A key-value as `mvccpb.KeyValue`.
pub(crate) fn kv_to_pb(kv: kv::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

/// An event as `mvccpb.Event`.
pub(crate) fn event_to_pb(ev: kv::Event) -> mvccpb::Event {
    let kind = match ev.kind {
        kv::EventType::Put => mvccpb::event::EventType::Put,
        kv::EventType::Delete => mvccpb::event::EventType::Delete,
    };
    mvccpb::Event {
        r#type: kind as i32,
        kv: Some(kv_to_pb(ev.kv)),
        prev_kv: ev.prev_kv.map(kv_to_pb),
    }
}

/// The store's part of a range request (sorting and revision filters are
/// applied by the KV service afterwards).
pub(crate) fn range_from_pb(r: &pb::RangeRequest) -> kv::RangeRequest {
    kv::RangeRequest {
        key: r.key.clone(),
        range_end: r.range_end.clone(),
        limit: r.limit,
        revision: r.revision,
        count_only: r.count_only,
        keys_only: r.keys_only,
    }
}

/// A range answer as etcd's.
pub(crate) fn range_to_pb(store: &Store, r: kv::RangeResponse) -> pb::RangeResponse {
    pb::RangeResponse {
        header: header(store, r.revision),
        kvs: r.kvs.into_iter().map(kv_to_pb).collect(),
        more: r.more,
        count: r.count,
    }
}

/// Check and convert a put: etcd refuses an empty key (`ErrEmptyKey`) and
/// a request over its size limit (`ErrRequestTooLarge`).
pub(crate) fn put_from_pb(p: pb::PutRequest) -> Result<kv::PutRequest, Status> {
    if p.ignore_value || p.ignore_lease {
        return Err(unimplemented("put with ignore_value or ignore_lease"));
    }
    if p.key.is_empty() {
        return Err(Status::invalid_argument(MSG_EMPTY_KEY));
    }
    if p.key.len() + p.value.len() > MAX_VALUE_BYTES {
        return Err(Status::invalid_argument(MSG_TOO_LARGE));
    }
    Ok(kv::PutRequest {
        key: p.key,
        value: p.value,
        lease: p.lease,
        prev_kv: p.prev_kv,
    })
}

/// A put answer as etcd's.
pub(crate) fn put_to_pb(store: &Store, r: kv::PutResponse) -> pb::PutResponse {
    pb::PutResponse {
        header: header(store, r.revision),
        prev_kv: r.prev_kv.map(kv_to_pb),
    }
}

/// Check and convert a delete (etcd's `ErrEmptyKey` again).
pub(crate) fn delete_from_pb(d: pb::DeleteRangeRequest) -> Result<kv::DeleteRangeRequest, Status> {
    if d.key.is_empty() {
        return Err(Status::invalid_argument(MSG_EMPTY_KEY));
    }
    Ok(kv::DeleteRangeRequest {
        key: d.key,
        range_end: d.range_end,
        prev_kv: d.prev_kv,
    })
}

/// A delete answer as etcd's.
pub(crate) fn delete_to_pb(store: &Store, r: kv::DeleteRangeResponse) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: header(store, r.revision),
        deleted: r.deleted,
        prev_kvs: r.prev_kvs.into_iter().map(kv_to_pb).collect(),
    }
}

fn compare_from_pb(c: pb::Compare) -> Result<kv::Compare, Status> {
    use pb::compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    if !c.range_end.is_empty() {
        return Err(unimplemented("a compare over a key range"));
    }
    let result = match R::try_from(c.result) {
        Ok(R::Equal) => kv::CompareResult::Equal,
        Ok(R::Greater) => kv::CompareResult::Greater,
        Ok(R::Less) => kv::CompareResult::Less,
        Ok(R::NotEqual) => kv::CompareResult::NotEqual,
        Err(_) => {
            return Err(Status::invalid_argument(
                "etcdserver: unknown compare result",
            ))
        }
    };
    let num = |u: &Option<U>| match u {
        Some(U::Version(n) | U::CreateRevision(n) | U::ModRevision(n) | U::Lease(n)) => *n,
        _ => 0,
    };
    let target = match T::try_from(c.target) {
        Ok(T::Version) => kv::CompareTarget::Version(num(&c.target_union)),
        Ok(T::Create) => kv::CompareTarget::CreateRevision(num(&c.target_union)),
        Ok(T::Mod) => kv::CompareTarget::ModRevision(num(&c.target_union)),
        Ok(T::Lease) => kv::CompareTarget::Lease(num(&c.target_union)),
        Ok(T::Value) => kv::CompareTarget::Value(match c.target_union {
            Some(U::Value(v)) => v,
            _ => Vec::new(),
        }),
        Err(_) => {
            return Err(Status::invalid_argument(
                "etcdserver: unknown compare target",
            ))
        }
    };
    Ok(kv::Compare {
        key: c.key,
        result,
        target,
    })
}

fn op_from_pb(op: pb::RequestOp) -> Result<kv::RequestOp, Status> {
    use pb::request_op::Request;
    match op.request {
        Some(Request::RequestRange(r)) => Ok(kv::RequestOp::Range(range_from_pb(&r))),
        Some(Request::RequestPut(p)) => Ok(kv::RequestOp::Put(put_from_pb(p)?)),
        Some(Request::RequestDeleteRange(d)) => Ok(kv::RequestOp::DeleteRange(delete_from_pb(d)?)),
        Some(Request::RequestTxn(_)) => Err(unimplemented("a nested txn")),
        None => Err(Status::invalid_argument("etcdserver: empty request op")),
    }
}

/// Check and convert a txn.
pub(crate) fn txn_from_pb(t: pb::TxnRequest) -> Result<kv::TxnRequest, Status> {
    Ok(kv::TxnRequest {
        compare: t
            .compare
            .into_iter()
            .map(compare_from_pb)
            .collect::<Result<_, _>>()?,
        success: t
            .success
            .into_iter()
            .map(op_from_pb)
            .collect::<Result<_, _>>()?,
        failure: t
            .failure
            .into_iter()
            .map(op_from_pb)
            .collect::<Result<_, _>>()?,
    })
}

/// A txn answer as etcd's.
pub(crate) fn txn_to_pb(store: &Store, t: kv::TxnResponse) -> pb::TxnResponse {
    use pb::response_op::Response;
    let responses = t
        .responses
        .into_iter()
        .map(|r| pb::ResponseOp {
            response: Some(match r {
                kv::ResponseOp::Range(r) => Response::ResponseRange(range_to_pb(store, r)),
                kv::ResponseOp::Put(r) => Response::ResponsePut(put_to_pb(store, r)),
                kv::ResponseOp::DeleteRange(r) => {
                    Response::ResponseDeleteRange(delete_to_pb(store, r))
                }
            }),
        })
        .collect();
    pb::TxnResponse {
        header: header(store, t.revision),
        succeeded: t.succeeded,
        responses,
    }
}
