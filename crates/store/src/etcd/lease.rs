//! `etcdserverpb.Lease`: grant, revoke, keep-alive stream, time-to-live,
//! list, over [`Lease`].

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::pb::etcdserverpb as pb;
use super::pb::etcdserverpb::lease_server;
use super::status::{header, to_status};
use super::EtcdApi;
use crate::error::StoreError;
use crate::kv::{Kv, Lease, LeaseGrantRequest};

/// Keep-alive answers buffered per stream before the stream waits for the
/// client to read.
const KEEP_ALIVE_SEND_BUFFER: usize = 16;

impl EtcdApi {
    /// A header at the current revision (lease answers are not about a
    /// write of their own).
    async fn current_header(&self) -> Option<pb::ResponseHeader> {
        let rev = self.store.current_revision().await.unwrap_or(0);
        header(&self.store, rev)
    }
}

#[tonic::async_trait]
impl lease_server::Lease for EtcdApi {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let r = request.into_inner();
        let resp = self
            .store
            .lease_grant(LeaseGrantRequest {
                id: r.id,
                ttl: r.ttl,
            })
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::LeaseGrantResponse {
            header: header(&self.store, resp.revision),
            id: resp.id,
            ttl: resp.ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let resp = self
            .store
            .lease_revoke(request.into_inner().id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::LeaseRevokeResponse {
            header: header(&self.store, resp.revision),
        }))
    }

    type LeaseKeepAliveStream = ReceiverStream<Result<pb::LeaseKeepAliveResponse, Status>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(KEEP_ALIVE_SEND_BUFFER);
        let api = self.clone();
        tokio::spawn(async move {
            let stopped = api.stopped();
            tokio::pin!(stopped);
            loop {
                let msg = tokio::select! {
                    _ = &mut stopped => return,
                    m = inbound.message() => m,
                };
                let Ok(Some(req)) = msg else { return };
                // etcd answers an unknown lease with TTL 0 on the stream,
                // not an error (clientv3 reports "expired or revoked").
                let answer = match api.store.lease_keep_alive(req.id).await {
                    Ok(r) => Ok(pb::LeaseKeepAliveResponse {
                        header: api.current_header().await,
                        id: r.id,
                        ttl: r.ttl,
                    }),
                    Err(StoreError::LeaseNotFound(id)) => Ok(pb::LeaseKeepAliveResponse {
                        header: api.current_header().await,
                        id,
                        ttl: 0,
                    }),
                    Err(e) => Err(to_status(e)),
                };
                let failed = answer.is_err();
                if tx.send(answer).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let r = request.into_inner();
        match self.store.lease_time_to_live(r.id, r.keys).await {
            Ok(t) => Ok(Response::new(pb::LeaseTimeToLiveResponse {
                header: header(&self.store, t.revision),
                id: t.id,
                ttl: t.ttl,
                granted_ttl: t.granted_ttl,
                keys: t.keys,
            })),
            // etcd answers an unknown lease with TTL -1, not an error
            // (etcdctl prints "lease … already expired").
            Err(StoreError::LeaseNotFound(id)) => Ok(Response::new(pb::LeaseTimeToLiveResponse {
                header: self.current_header().await,
                id,
                ttl: -1,
                ..Default::default()
            })),
            Err(e) => Err(to_status(e)),
        }
    }

    async fn lease_leases(
        &self,
        _request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        let ids = self.store.lease_leases().await.map_err(to_status)?;
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: self.current_header().await,
            leases: ids.into_iter().map(|id| pb::LeaseStatus { id }).collect(),
        }))
    }
}
