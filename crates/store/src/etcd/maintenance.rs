//! `etcdserverpb.Maintenance`: only `Status`, which `etcdctl endpoint
//! status` uses.

use tonic::{Request, Response, Status};

use super::pb::etcdserverpb as pb;
use super::pb::etcdserverpb::maintenance_server;
use super::status::{header, to_status};
use super::{EtcdApi, ETCD_API_VERSION};

#[tonic::async_trait]
impl maintenance_server::Maintenance for EtcdApi {
    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let s = self.store.status().map_err(to_status)?;
        let db_size = i64::try_from(s.db_size_bytes).unwrap_or(i64::MAX);
        Ok(Response::new(pb::StatusResponse {
            header: header(&self.store, s.revision),
            version: ETCD_API_VERSION.to_string(),
            db_size,
            leader: s.leader,
            raft_index: s.raft_index,
            raft_term: s.raft_term,
            raft_applied_index: s.raft_applied_index,
            errors: Vec::new(),
            // sled does not report free pages separately.
            db_size_in_use: db_size,
            is_learner: false,
        }))
    }
}
