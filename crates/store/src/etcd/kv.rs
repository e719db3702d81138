//! `etcdserverpb.KV`: Range, Put, DeleteRange, Txn, Compact over [`Kv`].

use tonic::{Request, Response, Status};

use super::convert::{
    delete_from_pb, delete_to_pb, put_from_pb, put_to_pb, range_from_pb, range_to_pb, txn_from_pb,
    txn_to_pb,
};
use super::pb::etcdserverpb as pb;
use super::pb::etcdserverpb::kv_server;
use super::pb::etcdserverpb::range_request::{SortOrder, SortTarget};
use super::pb::mvccpb;
use super::status::{header, to_status};
use super::EtcdApi;
use crate::kv::Kv;

/// Whether the answer needs work after the store's read: a sort other than
/// ascending keys (the store's order), or revision filters.
fn needs_post_processing(r: &pb::RangeRequest) -> bool {
    let order = SortOrder::try_from(r.sort_order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(r.sort_target).unwrap_or(SortTarget::Key);
    let plain_order = match order {
        SortOrder::None | SortOrder::Ascend => target == SortTarget::Key,
        SortOrder::Descend => false,
    };
    !plain_order
        || r.min_mod_revision > 0
        || r.max_mod_revision > 0
        || r.min_create_revision > 0
        || r.max_create_revision > 0
}

/// etcd's range post-processing, in its order: revision filters, sort,
/// then `limit` (`count` stays the number of keys in the range).
fn post_process(r: &pb::RangeRequest, kvs: &mut Vec<mvccpb::KeyValue>) -> bool {
    kvs.retain(|kv| {
        (r.min_mod_revision <= 0 || kv.mod_revision >= r.min_mod_revision)
            && (r.max_mod_revision <= 0 || kv.mod_revision <= r.max_mod_revision)
            && (r.min_create_revision <= 0 || kv.create_revision >= r.min_create_revision)
            && (r.max_create_revision <= 0 || kv.create_revision <= r.max_create_revision)
    });
    let target = SortTarget::try_from(r.sort_target).unwrap_or(SortTarget::Key);
    let mut order = SortOrder::try_from(r.sort_order).unwrap_or(SortOrder::None);
    // etcd: a sort target without an order means ascending.
    if order == SortOrder::None && target != SortTarget::Key {
        order = SortOrder::Ascend;
    }
    if order != SortOrder::None {
        // Stable, so equal fields keep key order, as in etcd.
        kvs.sort_by(|a, b| match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        });
        if order == SortOrder::Descend {
            kvs.reverse();
        }
    }
    if r.limit > 0 && kvs.len() > r.limit as usize {
        kvs.truncate(r.limit as usize);
        return true;
    }
    false
}

#[tonic::async_trait]
impl kv_server::Kv for EtcdApi {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let r = request.into_inner();
        let mut q = range_from_pb(&r);
        let post = needs_post_processing(&r) && !r.count_only;
        if post {
            q.limit = 0;
        }
        // etcd: `serializable` reads skip the read index and may be stale
        // on a follower.
        let resp = if r.serializable {
            self.store.range_serializable(q).await
        } else {
            self.store.range(q).await
        }
        .map_err(to_status)?;
        let mut out = range_to_pb(&self.store, resp);
        if post {
            out.more = post_process(&r, &mut out.kvs);
        }
        Ok(Response::new(out))
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let req = put_from_pb(request.into_inner())?;
        let resp = self.store.put(req).await.map_err(to_status)?;
        Ok(Response::new(put_to_pb(&self.store, resp)))
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let req = delete_from_pb(request.into_inner())?;
        let resp = self.store.delete_range(req).await.map_err(to_status)?;
        Ok(Response::new(delete_to_pb(&self.store, resp)))
    }

    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        let req = txn_from_pb(request.into_inner())?;
        let resp = self.store.txn(req).await.map_err(to_status)?;
        Ok(Response::new(txn_to_pb(&self.store, resp)))
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let revision = request.into_inner().revision;
        self.store.compact(revision).await.map_err(to_status)?;
        let current = self.store.current_revision().await.map_err(to_status)?;
        Ok(Response::new(pb::CompactionResponse {
            header: header(&self.store, current),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::convert::kv_to_pb;
    use super::*;

    fn kv(key: &str, create: i64, modr: i64) -> mvccpb::KeyValue {
        kv_to_pb(crate::kv::KeyValue {
            key: key.as_bytes().to_vec(),
            value: Vec::new(),
            create_revision: create,
            mod_revision: modr,
            version: 1,
            lease: 0,
        })
    }

    #[test]
    fn sort_filter_limit_like_etcd() {
        let r = pb::RangeRequest {
            sort_order: SortOrder::Descend as i32,
            sort_target: SortTarget::Mod as i32,
            min_mod_revision: 3,
            limit: 2,
            ..Default::default()
        };
        assert!(needs_post_processing(&r));
        let mut kvs = vec![kv("a", 2, 2), kv("b", 3, 5), kv("c", 4, 4), kv("d", 6, 6)];
        let more = post_process(&r, &mut kvs);
        let keys: Vec<_> = kvs.iter().map(|k| k.key.clone()).collect();
        assert_eq!(keys, vec![b"d".to_vec(), b"b".to_vec()]);
        assert!(more);
        assert!(!needs_post_processing(&pb::RangeRequest::default()));
    }
}
